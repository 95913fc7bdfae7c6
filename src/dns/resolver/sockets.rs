//! Sockets in the host netns. A socket belongs to the netns that was current when it was
//! created, and the resolver's tasks run on tokio workers, which must never `setns`. So one
//! dedicated thread, started inside the host netns (threads inherit their creator's netns),
//! makes every socket the resolver needs — listeners and per-query upstream sockets — and hands
//! them back; they are used from any task after that. The thread ends when the resolver is
//! dropped.
//!
//! Listeners are bound to their network's device (`SO_BINDTODEVICE`, set before `bind`): the
//! kernel delivers to them only packets that arrived on that device, so a packet for a gateway
//! address that came in on any other interface — from a neighbour routed through the host,
//! from a container of another network — never reaches the resolver (UDP: the kernel's
//! port-unreachable; TCP: a reset). Local traffic of the host is the exception: the kernel
//! files it under the device that holds the destination address, so it does reach the
//! sockets, and the resolver's source check (`serve`) drops it.

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    sockopt,
};
use tokio::sync::oneshot;

use crate::error::Result;
use crate::netns::Netns;

/// What to make.
enum Want {
    /// A UDP socket bound to the address (and to the device, if any).
    Udp(SocketAddr, Option<String>),
    /// A TCP listener on the address, bound to the device.
    Listen(SocketAddr, String),
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

    /// A UDP socket bound to `addr` (port 0: any port) and, if given, to `device`, for tokio.
    pub(crate) async fn udp(
        &self,
        addr: SocketAddr,
        device: Option<&str>,
    ) -> io::Result<tokio::net::UdpSocket> {
        match self
            .ask(Want::Udp(addr, device.map(str::to_string)))
            .await?
        {
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
        self.udp(SocketAddr::new(any, 0), None).await
    }

    /// A TCP listener on `addr`, bound to `device`, for tokio.
    pub(crate) async fn listen(
        &self,
        addr: SocketAddr,
        device: &str,
    ) -> io::Result<tokio::net::TcpListener> {
        match self.ask(Want::Listen(addr, device.to_string())).await? {
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
        Want::Udp(addr, None) => Made::Udp(std::net::UdpSocket::bind(addr)?),
        Want::Udp(addr, Some(device)) => {
            Made::Udp(bound(addr, SockType::Datagram, &device)?.into())
        }
        Want::Listen(addr, device) => {
            let fd = bound(addr, SockType::Stream, &device)?;
            listen(&fd, Backlog::MAXCONN)?;
            Made::Listen(fd.into())
        }
        Want::Stream(v6) => Made::Stream(socket(
            family(v6),
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?),
    })
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// A socket of type `ty` bound to `device` (first, so no packet from elsewhere is ever queued
/// on it), then to `addr`; TCP ones with `SO_REUSEADDR`, as std's listeners.
fn bound(addr: SocketAddr, ty: SockType, device: &str) -> io::Result<OwnedFd> {
    let fd = socket(family(addr.is_ipv6()), ty, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::BindToDevice, &OsString::from(device))?;
    if ty == SockType::Stream {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(fd)
}
