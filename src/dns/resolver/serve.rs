//! The listeners of one gateway address: a UDP loop and a TCP accept loop, each query handled
//! on its own task (at most [`MAX_IN_FLIGHT`] per listener; more are dropped, as a busy server
//! would).
//!
//! A message is served only when its source is a container of the network (an address of one
//! of its endpoints); from any other source it is dropped without a reply, not even FORMERR,
//! and a TCP connection from one is closed at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::{debug, trace, warn};

use super::Shared;
use super::answer::{self, Outcome};
use super::upstream;

/// Queries (UDP) or connections (TCP) handled at once per listener.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The largest UDP reply without EDNS.
const UDP_PLAIN: usize = 512;

/// Which transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// Answers `bytes` (one message from `src` on `network`'s gateway); `None`: send nothing.
async fn handle(
    shared: &Shared,
    network: &str,
    src: IpAddr,
    bytes: &[u8],
    transport: Transport,
) -> Option<Vec<u8>> {
    let table = shared.table();
    let Some(client) = table.client(network, src) else {
        trace!(target: "berth::dns", %src, network, "not a container of the network: dropped");
        return None;
    };
    let query = match Message::from_vec(bytes) {
        Ok(q) => q,
        Err(e) => {
            debug!(target: "berth::dns", %src, error = %e, "malformed query");
            return answer::formerr(bytes)?.to_vec().ok();
        }
    };
    let host = || upstream::nameservers(&shared.resolv_conf);
    let max = match transport {
        Transport::Udp => usize::from(query.max_payload()).max(UDP_PLAIN),
        Transport::Tcp => usize::from(u16::MAX),
    };
    match answer::decide(&table, network, &client, &query, host)? {
        Outcome::Reply(reply) => {
            trace!(target: "berth::dns", %src, network, query = ?query.queries, rcode = ?reply.response_code,
                   answers = reply.answers.len(), "answered");
            answer::encode(&reply, max)
        }
        Outcome::Forward(servers) => {
            drop(table);
            trace!(target: "berth::dns", %src, network, query = ?query.queries, ?servers, "forwarding");
            let wait = shared.upstream_timeout;
            let reply = match transport {
                Transport::Udp => {
                    upstream::udp(&shared.sockets, &servers, &query, bytes, wait).await
                }
                Transport::Tcp => {
                    upstream::tcp(&shared.sockets, &servers, &query, bytes, wait).await
                }
            };
            match reply {
                Some(r) => Some(r),
                None => {
                    debug!(target: "berth::dns", %src, network, ?servers, "no upstream answered: SERVFAIL");
                    answer::encode(&answer::reply(&query, ResponseCode::ServFail), max)
                }
            }
        }
    }
}

/// Serves UDP on `sock` for `network` until aborted.
pub(crate) async fn udp(shared: Arc<Shared>, network: String, sock: Arc<UdpSocket>) {
    let network: Arc<str> = network.into();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                warn!(target: "berth::dns", network = &*network, error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(target: "berth::dns", %src, "too many queries in flight: dropped");
            continue;
        };
        let bytes = buf[..n].to_vec();
        let (shared, network, sock) = (shared.clone(), network.clone(), sock.clone());
        tokio::spawn(async move {
            if let Some(reply) = handle(&shared, &network, src.ip(), &bytes, Transport::Udp).await
                && let Err(e) = sock.send_to(&reply, src).await
            {
                debug!(target: "berth::dns", %src, error = %e, "udp send failed");
            }
            drop(permit);
        });
    }
}

/// Serves TCP on `listener` for `network` until aborted.
pub(crate) async fn tcp(shared: Arc<Shared>, network: String, listener: Arc<TcpListener>) {
    let network: Arc<str> = network.into();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(target: "berth::dns", network = &*network, error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.table().client(&network, src.ip()).is_none() {
            trace!(target: "berth::dns", %src, network = &*network, "not a container of the network: closed");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(target: "berth::dns", %src, "too many connections: closed");
            continue;
        };
        let (shared, network) = (shared.clone(), network.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(&shared, &network, src, stream).await {
                trace!(target: "berth::dns", %src, error = %e, "tcp connection ended");
            }
            drop(permit);
        });
    }
}

/// Length-prefixed queries on one connection, answered in order, until the client closes it
/// or stays idle for [`TCP_IDLE`].
async fn connection(
    shared: &Shared,
    network: &str,
    src: SocketAddr,
    mut stream: TcpStream,
) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        let mut bytes = vec![0u8; usize::from(len)];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut bytes))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let Some(reply) = handle(shared, network, src.ip(), &bytes, Transport::Tcp).await else {
            continue;
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}
