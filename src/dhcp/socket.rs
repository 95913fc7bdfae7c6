//! The client's UDP socket, made inside the container netns: port 68, bound to the container's
//! interface, broadcast allowed.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// The DHCP client port.
pub(crate) const CLIENT_PORT: u16 = 68;
/// The DHCP server port.
pub(crate) const SERVER_PORT: u16 = 67;

/// A UDP socket on port 68 of one interface of a container netns.
#[derive(Debug)]
pub(crate) struct UdpTransport {
    sock: tokio::net::UdpSocket,
}

fn make(ifname: &str) -> io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    // The device first, so no packet of another interface is ever queued on it; several
    // clients (one per interface, or an attach and a renewal) share port 68.
    setsockopt(&fd, sockopt::BindToDevice, &OsString::from(ifname))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Broadcast, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT)),
    )?;
    Ok(fd)
}

impl UdpTransport {
    /// Opens the socket in `netns`, on `ifname`.
    pub(crate) async fn open(netns: &Netns, ifname: &str) -> Result<Self> {
        let name = ifname.to_owned();
        let fd = netns
            .enter(move || make(&name))
            .await?
            .map_err(|e| Error::netlink("open DHCP client socket", ifname, e))?;
        let std = std::net::UdpSocket::from(fd);
        let sock = tokio::net::UdpSocket::from_std(std)
            .map_err(|e| Error::netlink("open DHCP client socket", ifname, e))?;
        Ok(UdpTransport { sock })
    }

    /// Waits (at most `limit`) until everything sent has left the interface: the kernel's
    /// count of bytes not yet transmitted (`SIOCOUTQ`) is zero. A DHCPRELEASE to a server
    /// whose MAC is not known yet waits for ARP; the interface must not go before it is sent.
    pub(crate) async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut queued: libc::c_int = 0;
            // SAFETY: SIOCOUTQ writes one int through the pointer, which outlives the call.
            let r = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
            if r != 0 || queued == 0 || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl super::client::Transport for UdpTransport {
    async fn send(&self, buf: &[u8], to: SocketAddrV4) -> io::Result<()> {
        self.sock.send_to(buf, to).await.map(drop)
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv_from(buf).await.map(|(n, _)| n)
    }
}
