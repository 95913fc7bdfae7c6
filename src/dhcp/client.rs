//! The client's exchanges (RFC 2131 §4.4): acquiring a lease (INIT → SELECTING → REQUESTING →
//! BOUND), renewing or rebinding one, releasing one — over any [`Transport`], so the state
//! machine is tested against a fake server.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tokio::time::Instant;

use super::message::{self, ClientParams, Offer, Reply};
use super::socket::SERVER_PORT;

/// How the client sends and receives DHCP messages.
pub(crate) trait Transport {
    /// Sends one datagram.
    fn send(&self, buf: &[u8], to: SocketAddrV4) -> impl Future<Output = io::Result<()>> + Send;
    /// Receives one datagram.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// Retransmission: the first wait, doubled after each retransmission up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schedule {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Schedule {
    /// 1 s, 2 s, then every 4 s (RFC 2131 suggests 4 s doubling to 64 s, randomised: far longer
    /// than an attach may block; a LAN server answers in milliseconds).
    fn default() -> Self {
        Schedule {
            first: Duration::from_secs(1),
            max: Duration::from_secs(4),
        }
    }
}

/// Why an exchange ended without a lease.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No usable answer in time; what the client was waiting for.
    Timeout { waiting_for: &'static str },
    /// The server refused (NAK) a renewal.
    Refused { message: Option<String> },
    /// The socket failed.
    Io(io::Error),
}

const BROADCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);

/// One transaction: its id, the client, the retransmission schedule and the deadline.
#[derive(Clone, Copy)]
struct Round<'a> {
    xid: u32,
    p: &'a ClientParams,
    schedule: Schedule,
    deadline: Instant,
}

/// Sends `msg` to `to`, then waits for a reply `pick` accepts, retransmitting on the round's
/// schedule until its deadline.
async fn exchange<T: Transport, R>(
    t: &T,
    msg: &[u8],
    to: SocketAddrV4,
    round: Round<'_>,
    mut pick: impl FnMut(Reply) -> Option<R>,
) -> Result<Option<R>, io::Error> {
    let Round {
        xid,
        p,
        schedule,
        deadline,
    } = round;
    let mut wait = schedule.first;
    let mut buf = vec![0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        t.send(msg, to).await?;
        let resend = (now + wait).min(deadline);
        loop {
            match tokio::time::timeout_at(resend, t.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => {
                    if let Some(r) = message::parse_reply(&buf[..n], xid, &p.mac)
                        && let Some(out) = pick(r)
                    {
                        return Ok(Some(out));
                    }
                }
            }
        }
        wait = (wait * 2).min(schedule.max);
    }
}

/// DISCOVER → OFFER → REQUEST → ACK within `timeout`. A NAK, or an ACK that `usable` rejects
/// (then the address is DECLINEd), starts over from DISCOVER with a new transaction id.
pub(crate) async fn acquire<T: Transport>(
    t: &T,
    p: &ClientParams,
    timeout: Duration,
    schedule: Schedule,
    usable: impl Fn(&Offer) -> bool,
) -> Result<Offer, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let xid: u32 = rand::random();
        let round = Round {
            xid,
            p,
            schedule,
            deadline,
        };
        let discover = message::encode(&message::discover(p, xid));
        let offer = exchange(t, &discover, BROADCAST, round, |r| match r {
            Reply::Offer(o) => Some(o),
            _ => None,
        })
        .await
        .map_err(Failure::Io)?
        .ok_or(Failure::Timeout {
            waiting_for: "offer (DHCPOFFER)",
        })?;
        tracing::debug!(target: "berth::dhcp", address = %offer.address, server = %offer.server, "offer");
        let request = message::encode(&message::request_offer(p, xid, &offer));
        let answer = exchange(t, &request, BROADCAST, round, |r| match r {
            Reply::Ack(a) if a.address.addr() == offer.address.addr() => Some(Ok(a)),
            Reply::Nak { server, message } if server.is_none_or(|s| s == offer.server) => {
                Some(Err(message))
            }
            _ => None,
        })
        .await
        .map_err(Failure::Io)?
        .ok_or(Failure::Timeout {
            waiting_for: "acknowledgement (DHCPACK)",
        })?;
        match answer {
            Ok(ack) if usable(&ack) => return Ok(ack),
            Ok(ack) => {
                tracing::warn!(target: "berth::dhcp", address = %ack.address, server = %ack.server, "address in use: declined");
                let d = message::decline(p, xid, ack.address.addr(), ack.server);
                t.send(&message::encode(&d), BROADCAST)
                    .await
                    .map_err(Failure::Io)?;
            }
            Err(message) => {
                tracing::warn!(target: "berth::dhcp", ?message, server = %offer.server, "request refused (DHCPNAK): starting over");
            }
        }
    }
}

/// REQUEST with the leased `address`, unicast to `server` (RENEWING) or broadcast (REBINDING,
/// `server` None), answered within `wait`: the new lease, or why not.
pub(crate) async fn renew<T: Transport>(
    t: &T,
    p: &ClientParams,
    address: Ipv4Addr,
    server: Option<Ipv4Addr>,
    wait: Duration,
    schedule: Schedule,
) -> Result<Offer, Failure> {
    let xid: u32 = rand::random();
    let msg = message::encode(&message::request_renew(p, xid, address));
    let to = server.map_or(BROADCAST, |s| SocketAddrV4::new(s, SERVER_PORT));
    let round = Round {
        xid,
        p,
        schedule,
        deadline: Instant::now() + wait,
    };
    let answer = exchange(t, &msg, to, round, |r| match r {
        Reply::Ack(a) => Some(Ok(a)),
        Reply::Nak { message, .. } => Some(Err(message)),
        Reply::Offer(_) => None,
    })
    .await
    .map_err(Failure::Io)?
    .ok_or(Failure::Timeout {
        waiting_for: "acknowledgement of the renewal (DHCPACK)",
    })?;
    answer.map_err(|message| Failure::Refused { message })
}

/// DHCPRELEASE of `address`, unicast to `server` (no answer comes).
pub(crate) async fn release<T: Transport>(
    t: &T,
    p: &ClientParams,
    address: Ipv4Addr,
    server: Ipv4Addr,
) -> io::Result<()> {
    let msg = message::release(p, rand::random(), address, server);
    t.send(
        &message::encode(&msg),
        SocketAddrV4::new(server, SERVER_PORT),
    )
    .await
}
