//! Forwarding to upstream servers: UDP for UDP queries, TCP for TCP ones, one server after the
//! other until one answers; and the host's nameservers from its resolv.conf.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::debug;

use super::sockets::HostSockets;
use crate::dns::resolv::ResolvConf;

/// Default time one upstream server gets to answer before the next is tried.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The `nameserver` addresses of a resolv.conf, in order (parsed by [`ResolvConf::parse`]:
/// link-local IPv6 servers with a zone, `fe80::1%eth0`, are skipped). A missing or unreadable
/// file has none.
pub(crate) fn nameservers(path: &Path) -> Vec<IpAddr> {
    std::fs::read_to_string(path)
        .map(|t| ResolvConf::parse(&t).nameservers)
        .unwrap_or_default()
}

/// Whether `reply` answers `query`: a response with its id and question.
pub(crate) fn answers(query: &Message, reply: &[u8]) -> bool {
    Message::from_vec(reply).is_ok_and(|r| {
        r.message_type == MessageType::Response && r.id == query.id && r.queries == query.queries
    })
}

/// Sends `bytes` (the client's query, unchanged) over UDP to each server in turn, from a fresh
/// socket on an ephemeral port; returns the first reply that answers it (also a truncated one:
/// its TC bit tells the client to ask again over TCP). `None`: nobody answered in time.
pub(crate) async fn udp(
    sockets: &HostSockets,
    servers: &[IpAddr],
    query: &Message,
    bytes: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; usize::from(query.max_payload()).max(512)];
    for &server in servers {
        let peer = SocketAddr::new(server, 53);
        let attempt = async {
            let sock = sockets.udp_client(server).await?;
            sock.connect(peer).await?;
            sock.send(bytes).await?;
            let deadline = Instant::now() + wait;
            loop {
                let n = match timeout_at(deadline, sock.recv(&mut buf)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                };
                if answers(query, &buf[..n]) {
                    return Ok(buf[..n].to_vec());
                }
            }
        };
        match attempt.await {
            Ok(reply) => return Some(reply),
            Err(e) => {
                debug!(target: "berth::dns", %peer, error = %e, "upstream (udp) did not answer")
            }
        }
    }
    None
}

/// Sends `bytes` over TCP to each server in turn; returns the first reply that answers it.
pub(crate) async fn tcp(
    sockets: &HostSockets,
    servers: &[IpAddr],
    query: &Message,
    bytes: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let len = u16::try_from(bytes.len()).ok()?;
    for &server in servers {
        let peer = SocketAddr::new(server, 53);
        let attempt = async {
            let mut s = sockets.connect(peer).await?;
            let mut out = Vec::with_capacity(bytes.len() + 2);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
            s.write_all(&out).await?;
            let n = s.read_u16().await?;
            let mut reply = vec![0u8; usize::from(n)];
            s.read_exact(&mut reply).await?;
            if answers(query, &reply) {
                Ok(reply)
            } else {
                Err(std::io::Error::other("reply does not match the query"))
            }
        };
        match timeout(wait, attempt).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => debug!(target: "berth::dns", %peer, error = %e, "upstream (tcp) failed"),
            Err(_) => debug!(target: "berth::dns", %peer, "upstream (tcp) timed out"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn resolv_conf_nameservers() {
        let path = std::env::temp_dir().join(format!("berth-resolv-{}", std::process::id()));
        std::fs::write(
            &path,
            "# comment\nnameserver 127.0.0.53\nsearch example.com\n nameserver  ::1 \n\
             nameserver fe80::1%eth0\nnameserver\noptions ndots:2\n",
        )
        .unwrap();
        let ips: Vec<IpAddr> = vec!["127.0.0.53".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(nameservers(&path), ips);
        std::fs::remove_file(&path).unwrap();
        assert!(nameservers(Path::new("/nonexistent/resolv.conf")).is_empty());
    }

    #[test]
    fn a_reply_must_match_the_query() {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii("x.").unwrap(), RecordType::A));
        let mut r = q.clone().into_response();
        assert!(answers(&q, &r.to_vec().unwrap()));
        assert!(!answers(&q, &q.to_vec().unwrap()), "not a response");
        r.metadata.id = q.id.wrapping_add(1);
        assert!(!answers(&q, &r.to_vec().unwrap()), "another id");
        assert!(!answers(&q, b"junk"));
    }
}
