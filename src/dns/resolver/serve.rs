//! The listeners of one gateway address: a UDP loop and a TCP accept loop.
//!
//! Each message is first matched to its client, the container whose endpoint on the network
//! has the message's source address; from any other source it is dropped without a reply (not
//! even FORMERR). Then:
//! - what the resolver answers itself (from the name table, REFUSED, FORMERR, NOTIMP) is
//!   answered at once by the loop that received it: no slot, no task, never behind a forwarded
//!   query;
//! - a forwarded query runs on a task of its own while it holds a share of [`FORWARDS`]
//!   (at most [`FORWARDS_PER_CLIENT`] per client), counted over UDP and TCP and every listener
//!   together; a client at its share has its new forwarded query dropped, as a busy server
//!   would — everyone else's still go out;
//! - a TCP connection is served while it holds a share of [`CONNECTIONS`] (at most
//!   [`CONNECTIONS_PER_CLIENT`] per client); a client at its share has its new connection
//!   closed at once — everyone else's are kept.
//!
//! The client is the container (by name), so all its addresses, IPv4 and IPv6 on every
//! network, share one budget.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tracing::{debug, trace, warn};

use super::Shared;
use super::answer::{self, Outcome};
use super::limit::Permit;
use super::table::NameTable;
use super::upstream;

/// Forwarded queries in flight per client: enough for any real workload (with upstreams
/// answering in milliseconds, thousands of queries a second), a small part of [`FORWARDS`].
pub(crate) const FORWARDS_PER_CLIENT: usize = 32;

/// Forwarded queries in flight in all. Each holds one upstream socket: with
/// [`CONNECTIONS`], the resolver stays well under the common 1024 open-file limit.
pub(crate) const FORWARDS: usize = 512;

/// TCP connections open per client (a stub resolver uses one at a time).
pub(crate) const CONNECTIONS_PER_CLIENT: usize = 8;

/// TCP connections open in all.
pub(crate) const CONNECTIONS: usize = 256;

// A client's share is a small part of the whole: many clients fit before anyone is turned away.
const _: () = assert!(FORWARDS_PER_CLIENT * 8 <= FORWARDS);
const _: () = assert!(CONNECTIONS_PER_CLIENT * 8 <= CONNECTIONS);

/// How long an idle TCP connection is kept.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The largest UDP reply without EDNS.
const UDP_PLAIN: usize = 512;

/// Which transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// UDP: one message per datagram.
    Udp,
    /// TCP: length-prefixed messages on a stream.
    Tcp,
}

/// What to do with one received message.
enum Step {
    /// Nothing: not from a client, not a query, or over the client's share of forwards.
    Drop,
    /// Send this now.
    Reply(Vec<u8>),
    /// Forward it, on a task of its own.
    Forward(Box<Forward>),
}

/// A query on its way upstream, with the share it holds.
struct Forward {
    servers: Vec<IpAddr>,
    query: Message,
    bytes: Vec<u8>,
    transport: Transport,
    /// The largest reply the client's transport takes.
    max: usize,
    src: IpAddr,
    network: Arc<str>,
    /// Released when the forward is done.
    _share: Permit,
}

/// What the name table, the message and the transport decide, before any share is taken.
pub(crate) enum Decision {
    /// Nothing: not from a client of the network, or not a query.
    Drop,
    /// Send this now.
    Reply(Vec<u8>),
    /// Forward `query` to `servers` in turn; the reply may be `max` bytes long.
    Forward {
        /// The client that asked.
        container: String,
        /// The parsed query.
        query: Message,
        /// Upstream servers, in order.
        servers: Vec<IpAddr>,
        /// The largest reply the client's transport takes.
        max: usize,
    },
}

/// Decides what to do with `bytes`, one message from `src` on `network`'s gateway, against
/// `table` (`host`: the host's nameservers, read only when needed). Pure: no socket, no share.
pub(crate) fn decide(
    table: &NameTable,
    network: &str,
    src: IpAddr,
    bytes: &[u8],
    transport: Transport,
    host: impl FnOnce() -> Vec<IpAddr>,
) -> Decision {
    let Some(client) = table.client(network, src) else {
        trace!(target: "berth::dns", %src, network, "not a container of the network: dropped");
        return Decision::Drop;
    };
    let query = match Message::from_vec(bytes) {
        Ok(q) => q,
        Err(e) => {
            debug!(target: "berth::dns", %src, error = %e, "malformed query");
            return answer::formerr(bytes)
                .and_then(|m| m.to_vec().ok())
                .map_or(Decision::Drop, Decision::Reply);
        }
    };
    let max = match transport {
        Transport::Udp => usize::from(query.max_payload()).max(UDP_PLAIN),
        Transport::Tcp => usize::from(u16::MAX),
    };
    match answer::decide(table, network, &client, &query, host) {
        None => Decision::Drop,
        Some(Outcome::Reply(reply)) => {
            trace!(target: "berth::dns", %src, network, query = ?query.queries, rcode = ?reply.response_code,
                   answers = reply.answers.len(), "answered");
            answer::encode(&reply, max).map_or(Decision::Drop, Decision::Reply)
        }
        Some(Outcome::Forward(servers)) => Decision::Forward {
            container: client.container,
            query,
            servers,
            max,
        },
    }
}

/// Decides what to do with `bytes`, one message from `src` on `network`'s gateway. Does not
/// wait for anything (a reload of changed records reads a few small files).
fn step(
    shared: &Shared,
    network: &Arc<str>,
    src: IpAddr,
    bytes: &[u8],
    transport: Transport,
) -> Step {
    let table = shared.table();
    let host = || upstream::nameservers(&shared.resolv_conf);
    match decide(&table, network, src, bytes, transport, host) {
        Decision::Drop => Step::Drop,
        Decision::Reply(reply) => Step::Reply(reply),
        Decision::Forward {
            container,
            query,
            servers,
            max,
        } => {
            let Some(share) = shared.forwards.try_acquire(&container) else {
                debug!(target: "berth::dns", %src, %container,
                       "forwarded queries at their bound (this client's or all): dropped");
                return Step::Drop;
            };
            trace!(target: "berth::dns", %src, network = &**network, query = ?query.queries, ?servers, "forwarding");
            Step::Forward(Box::new(Forward {
                servers,
                query,
                bytes: bytes.to_vec(),
                transport,
                max,
                src,
                network: network.clone(),
                _share: share,
            }))
        }
    }
}

impl Forward {
    /// The upstream's reply, or SERVFAIL when no upstream answered.
    async fn run(self, shared: &Shared) -> Option<Vec<u8>> {
        let wait = shared.upstream_timeout;
        let (servers, query, bytes) = (&self.servers, &self.query, &self.bytes);
        let reply = match self.transport {
            Transport::Udp => upstream::udp(&shared.sockets, servers, query, bytes, wait).await,
            Transport::Tcp => upstream::tcp(&shared.sockets, servers, query, bytes, wait).await,
        };
        match reply {
            Some(r) => Some(r),
            None => {
                debug!(target: "berth::dns", src = %self.src, network = &*self.network, ?servers,
                       "no upstream answered: SERVFAIL");
                answer::encode(&answer::reply(query, ResponseCode::ServFail), self.max)
            }
        }
    }
}

/// Serves UDP on `sock` for `network` until aborted.
pub(crate) async fn udp(shared: Arc<Shared>, network: String, sock: Arc<UdpSocket>) {
    let network: Arc<str> = network.into();
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
        match step(&shared, &network, src.ip(), &buf[..n], Transport::Udp) {
            Step::Drop => {}
            Step::Reply(reply) => send(&sock, &reply, src).await,
            Step::Forward(f) => {
                let (shared, sock) = (shared.clone(), sock.clone());
                tokio::spawn(async move {
                    if let Some(reply) = f.run(&shared).await {
                        send(&sock, &reply, src).await;
                    }
                });
            }
        }
    }
}

async fn send(sock: &UdpSocket, reply: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(reply, to).await {
        debug!(target: "berth::dns", %to, error = %e, "udp send failed");
    }
}

/// Serves TCP on `listener` for `network` until aborted.
pub(crate) async fn tcp(shared: Arc<Shared>, network: String, listener: Arc<TcpListener>) {
    let network: Arc<str> = network.into();
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(target: "berth::dns", network = &*network, error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(client) = shared.table().client(&network, src.ip()) else {
            trace!(target: "berth::dns", %src, network = &*network, "not a container of the network: closed");
            continue;
        };
        let Some(share) = shared.connections.try_acquire(&client.container) else {
            debug!(target: "berth::dns", %src, container = %client.container,
                   "tcp connections at their bound (this client's or all): closed");
            continue;
        };
        let (shared, network) = (shared.clone(), network.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(&shared, &network, src, stream).await {
                trace!(target: "berth::dns", %src, error = %e, "tcp connection ended");
            }
            drop(share);
        });
    }
}

/// Length-prefixed queries on one connection, until the client closes it (then the replies
/// still due are sent) or it stays idle for [`TCP_IDLE`] with nothing in flight. What the
/// resolver answers itself is written at once; forwarded queries run side by side and their
/// replies are written as they come — out of order, as RFC 7766 (6.2.1.1) allows: clients
/// match replies by id.
async fn connection(
    shared: &Arc<Shared>,
    network: &Arc<str>,
    src: SocketAddr,
    mut stream: TcpStream,
) -> io::Result<()> {
    let (mut rd, mut wr) = stream.split();
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut forwards: JoinSet<Option<Vec<u8>>> = JoinSet::new();
    let mut open = true;
    loop {
        while let Some(bytes) = frame(&mut pending) {
            match step(shared, network, src.ip(), &bytes, Transport::Tcp) {
                Step::Drop => {}
                Step::Reply(reply) => write_frame(&mut wr, &reply).await?,
                Step::Forward(f) => {
                    let shared = shared.clone();
                    forwards.spawn(async move { f.run(&shared).await });
                }
            }
        }
        if !open && forwards.is_empty() {
            return Ok(());
        }
        tokio::select! {
            r = tokio::time::timeout(TCP_IDLE, rd.read(&mut chunk)), if open => match r {
                Ok(Ok(0)) => open = false,
                Ok(Ok(n)) => pending.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(e),
                Err(_) if forwards.is_empty() => return Ok(()),
                Err(_) => {}
            },
            Some(done) = forwards.join_next() => {
                if let Ok(Some(reply)) = done {
                    write_frame(&mut wr, &reply).await?;
                }
            }
        }
    }
}

/// Takes the first whole length-prefixed message out of `pending`, if there is one.
pub(crate) fn frame(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*pending.first()?, *pending.get(1)?]));
    if pending.len() < 2 + len {
        return None;
    }
    let bytes = pending[2..2 + len].to_vec();
    pending.drain(..2 + len);
    Some(bytes)
}

/// Writes `reply` with its length prefix; a client that does not read it for [`TCP_IDLE`]
/// loses the connection.
async fn write_frame(wr: &mut (impl AsyncWrite + Unpin), reply: &[u8]) -> io::Result<()> {
    let Ok(n) = u16::try_from(reply.len()) else {
        return Ok(());
    };
    let mut out = Vec::with_capacity(reply.len() + 2);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(reply);
    tokio::time::timeout(TCP_IDLE, wr.write_all(&out))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_from_the_stream() {
        let mut p = vec![0, 2, b'a', b'b', 0, 0, 0, 3, b'x'];
        assert_eq!(frame(&mut p), Some(b"ab".to_vec()));
        assert_eq!(frame(&mut p), Some(Vec::new()));
        assert_eq!(frame(&mut p), None, "an incomplete one waits");
        assert_eq!(p, vec![0, 3, b'x']);
        p.extend_from_slice(b"yz");
        assert_eq!(frame(&mut p), Some(b"xyz".to_vec()));
        assert!(p.is_empty() && frame(&mut p).is_none());
        let mut one = vec![0];
        assert_eq!(frame(&mut one), None);
    }
}
