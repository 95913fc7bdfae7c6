//! Sockets in the host netns. A socket belongs to the netns that was current when it was
//! created, and the resolver's tasks run on tokio workers, which must never `setns`. So one
//! dedicated thread, started inside the host netns (threads inherit their creator's netns),
//! makes every socket the resolver needs — listeners and per-query upstream sockets — and hands
//! them back; they are used from any task after that. The thread ends when the resolver is
//! dropped.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::mpsc;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use tokio::sync::oneshot;

use crate::error::Result;
use crate::netns::Netns;

/// What to make.
enum Want {
    /// A UDP socket bound to the address.
    Udp(SocketAddr),
    /// A TCP listener on the address.
    Listen(SocketAddr),
    /// An unconnected TCP socket of the family (IPv6 when true).
    Stream(bool),
}

/// What was made.
enum Made {
    Udp(std::net::UdpSocket),
    Listen(std::net::TcpListener),
    Stream(OwnedFd),
}

type Request = (Want, oneshot::Sender<io::Result<Made>>);

/// Handle on the socket-making thread of one netns.
#[derive(Debug, Clone)]
pub(crate) struct HostSockets {
    tx: mpsc::Sender<Request>,
}

impl HostSockets {
    /// Starts the thread inside `netns`.
    pub(crate) fn start(netns: &Netns) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        netns
            .run(move || {
                std::thread::Builder::new()
                    .name("berth-dns-sockets".into())
                    .spawn(move || {
                        while let Ok((want, reply)) = rx.recv() {
                            let _ = reply.send(make(want));
                        }
                    })
                    .map(drop)
            })?
            .map_err(|e| crate::error::Error::Netns {
                op: "spawn resolver socket thread",
                path: netns
                    .path()
                    .map_or("(handle)".into(), |p| p.display().to_string()),
                source: e,
            })?;
        Ok(HostSockets { tx })
    }

    async fn ask(&self, want: Want) -> io::Result<Made> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((want, tx))
            .map_err(|_| io::Error::other("resolver socket thread is gone"))?;
        rx.await
            .map_err(|_| io::Error::other("resolver socket thread is gone"))?
    }

    /// A UDP socket bound to `addr` (port 0: any port), for tokio.
    pub(crate) async fn udp(&self, addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
        match self.ask(Want::Udp(addr)).await? {
            Made::Udp(s) => {
                s.set_nonblocking(true)?;
                tokio::net::UdpSocket::from_std(s)
            }
            _ => unreachable!("asked for UDP"),
        }
    }

    /// A UDP socket on an ephemeral port of the family of `peer`.
    pub(crate) async fn udp_client(&self, peer: IpAddr) -> io::Result<tokio::net::UdpSocket> {
        let any = match peer {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        self.udp(SocketAddr::new(any, 0)).await
    }

    /// A TCP listener on `addr`, for tokio.
    pub(crate) async fn listen(&self, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
        match self.ask(Want::Listen(addr)).await? {
            Made::Listen(l) => {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            }
            _ => unreachable!("asked for a listener"),
        }
    }

    /// A TCP connection to `peer` (the connect itself runs on the caller's task).
    pub(crate) async fn connect(&self, peer: SocketAddr) -> io::Result<tokio::net::TcpStream> {
        match self.ask(Want::Stream(peer.is_ipv6())).await? {
            Made::Stream(fd) => {
                let s = std::net::TcpStream::from(fd);
                s.set_nonblocking(true)?;
                tokio::net::TcpSocket::from_std_stream(s)
                    .connect(peer)
                    .await
            }
            _ => unreachable!("asked for a stream"),
        }
    }
}

/// Runs on the netns thread.
fn make(want: Want) -> io::Result<Made> {
    Ok(match want {
        Want::Udp(addr) => Made::Udp(std::net::UdpSocket::bind(addr)?),
        Want::Listen(addr) => Made::Listen(std::net::TcpListener::bind(addr)?),
        Want::Stream(v6) => {
            let family = if v6 {
                AddressFamily::Inet6
            } else {
                AddressFamily::Inet
            };
            Made::Stream(socket(
                family,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?)
        }
    })
}
