//! Throwaway network namespaces and traffic probes, for tests, demos and benchmarks.
//!
//! A [`Sandbox`] is a set of uniquely named (iproute2-compatible) namespaces — a "host" netns to
//! give to [`crate::Host`], container namespaces, an "outside" netns joined to the host by a veth
//! — plus a private state dir. Everything is removed on drop, also when a test panics, so nothing
//! ever touches the machine's own namespace. The probes prove connectivity with real packets:
//! a listener in one netns, a client in another. [`EtcdServer`] is a throwaway cluster store
//! (Debian's etcd) for multi-host set-ups.

mod etcd;

pub use etcd::EtcdServer;

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::netns::Netns;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A set of sandbox namespaces and a state dir, removed on drop.
#[derive(Debug)]
pub struct Sandbox {
    prefix: String,
    host: Netns,
    names: Vec<String>,
    state_dir: PathBuf,
}

impl Sandbox {
    /// A new sandbox whose names start with `label-PID-N`; its host netns has `lo` up.
    pub async fn new(label: &str) -> Result<Self> {
        let prefix = format!(
            "{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let host_name = format!("{prefix}-host");
        let host = Netns::create_named(&host_name)?;
        let state_dir = std::env::temp_dir().join(format!("berth-{prefix}"));
        let sb = Sandbox {
            prefix,
            host,
            names: vec![host_name],
            state_dir,
        };
        lo_up(&sb.host).await?;
        std::fs::create_dir_all(&sb.state_dir)
            .map_err(|e| Error::state("create dir", &sb.state_dir, e))?;
        Ok(sb)
    }

    /// The "host" netns (give it to [`crate::HostBuilder::netns`]).
    pub fn host(&self) -> &Netns {
        &self.host
    }

    /// Name of the host netns under `/run/netns` (for `ip netns exec NAME …`).
    pub fn host_name(&self) -> &str {
        &self.names[0]
    }

    /// A state dir private to this sandbox.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// A new named netns `PREFIX-ROLE` with `lo` up (a "container").
    pub async fn netns(&mut self, role: &str) -> Result<Netns> {
        let name = format!("{}-{role}", self.prefix);
        let ns = Netns::create_named(&name)?;
        self.names.push(name);
        lo_up(&ns).await?;
        Ok(ns)
    }

    /// Path of the named netns `PREFIX-ROLE`.
    pub fn netns_path(&self, role: &str) -> PathBuf {
        Path::new(crate::netns::NETNS_RUN_DIR).join(format!("{}-{role}", self.prefix))
    }

    /// An "outside" netns joined to the host netns by a veth: `host_addr` on the host end
    /// (named `uplink`), `outside_addr` on the outside end (`eth0`), both up. The outside netns
    /// gets no route back to container subnets, so replies only work through the host's NAT.
    pub async fn add_outside(
        &mut self,
        host_addr: Ipv4Net,
        outside_addr: Ipv4Net,
    ) -> Result<Netns> {
        self.add_peer("outside", "uplink", host_addr, outside_addr)
            .await
    }

    /// A netns `PREFIX-ROLE` joined to the host netns by a veth: `host_ifname` with `host_addr`
    /// on the host side, `eth0` with `peer_addr` on the peer side, both up.
    pub async fn add_peer(
        &mut self,
        role: &str,
        host_ifname: &str,
        host_addr: Ipv4Net,
        peer_addr: Ipv4Net,
    ) -> Result<Netns> {
        let peer_ns = self.netns(role).await?;
        let host_nl = Netlink::open(&self.host).await?;
        let up = host_nl
            .link()
            .veth(host_ifname)
            .peer_in("eth0", &peer_ns)
            .add()
            .await?;
        host_nl
            .address()
            .add(
                up.index,
                host_ifname,
                IpAddr::V4(host_addr.addr()),
                host_addr.prefix_len(),
            )
            .await?;
        let nl = Netlink::open(&peer_ns).await?;
        let eth = nl.require_link("eth0").await?;
        nl.address()
            .add(
                eth.index,
                "eth0",
                IpAddr::V4(peer_addr.addr()),
                peer_addr.prefix_len(),
            )
            .await?;
        nl.link().set(eth.index, "eth0").up().apply().await?;
        Ok(peer_ns)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for n in &self.names {
            if let Err(e) = Netns::remove_named(n) {
                eprintln!("sandbox: could not remove netns {n}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

async fn lo_up(ns: &Netns) -> Result<()> {
    let nl = Netlink::open(ns).await?;
    crate::driver::container::loopback_up(&nl).await.map(drop)
}

/// How long a probe waits for a connection or an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Listens on `bind` in `server`, connects from `client` to `target`, exchanges a line both ways.
/// Returns the client address the server saw (shows masquerading). An error means no connection.
pub async fn tcp_probe(
    server: &Netns,
    bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
) -> io::Result<SocketAddr> {
    stream_probe(server, bind, client, target, false).await
}

/// As [`tcp_probe`], over SCTP (one-to-one sockets). Fails with `EPROTONOSUPPORT` (or
/// `ESOCKTNOSUPPORT`) on kernels without SCTP sockets; see [`sctp_supported`].
pub async fn sctp_probe(
    server: &Netns,
    bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
) -> io::Result<SocketAddr> {
    stream_probe(server, bind, client, target, true).await
}

/// Whether this kernel offers SCTP sockets.
pub fn sctp_supported() -> bool {
    sctp_socket(true, false).is_ok()
}

fn sctp_socket(v4: bool, nonblocking: bool) -> io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
    let fam = if v4 {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let flags = if nonblocking {
        SockFlag::SOCK_NONBLOCK
    } else {
        SockFlag::empty()
    };
    Ok(socket(fam, SockType::Stream, flags, SockProtocol::Sctp)?)
}

fn sctp_listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use nix::sys::socket::{Backlog, SockaddrStorage, bind, listen, setsockopt, sockopt};
    use std::os::fd::AsRawFd;
    let fd = sctp_socket(addr.is_ipv4(), false)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(16).map_err(io::Error::other)?)?;
    // A one-to-one SCTP socket takes accept/read/write like a TCP one.
    Ok(TcpListener::from(fd))
}

fn sctp_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::sys::socket::{SockaddrStorage, connect, getsockopt, sockopt};
    use std::os::fd::{AsFd, AsRawFd};
    let fd = sctp_socket(addr.is_ipv4(), true)?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let ms = PROBE_TIMEOUT.as_millis() as u16;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    if poll(&mut fds, PollTimeout::from(ms))? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "sctp connect timed out",
        ));
    }
    match getsockopt(&fd, sockopt::SocketError)? {
        0 => {}
        e => return Err(io::Error::from_raw_os_error(e)),
    }
    let s = TcpStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

async fn stream_probe(
    server: &Netns,
    bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
    sctp: bool,
) -> io::Result<SocketAddr> {
    let listener = server
        .run(move || {
            if sctp {
                sctp_listen(bind)
            } else {
                TcpListener::bind(bind)
            }
        })
        .map_err(io::Error::other)??;
    listener.set_nonblocking(true)?;
    let client = client.clone();
    tokio::task::spawn_blocking(move || {
        // The server stops as soon as the client gives up, so its port is free again when the
        // probe returns (a blocked probe must not leave a listener behind).
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let server = std::thread::spawn(move || -> io::Result<SocketAddr> {
            let deadline = std::time::Instant::now() + PROBE_TIMEOUT;
            let (mut s, peer) = loop {
                match listener.accept() {
                    Ok(x) => break x,
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            && std::time::Instant::now() < deadline
                            && !stop2.load(Ordering::Relaxed) =>
                    {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => return Err(e),
                }
            };
            drop(listener);
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(PROBE_TIMEOUT))?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            s.write_all(b"pong")?;
            Ok(peer)
        });
        let talk = || -> io::Result<[u8; 4]> {
            let mut c = client
                .run(move || {
                    if sctp {
                        sctp_connect(target)
                    } else {
                        TcpStream::connect_timeout(&target, PROBE_TIMEOUT)
                    }
                })
                .map_err(io::Error::other)??;
            c.set_read_timeout(Some(PROBE_TIMEOUT))?;
            c.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf)?;
            Ok(buf)
        };
        let answer = talk();
        stop.store(true, Ordering::Relaxed);
        let peer = server
            .join()
            .map_err(|_| io::Error::other("probe server panicked"))?;
        let buf = answer?;
        if &buf != b"pong" {
            return Err(io::Error::other("unexpected answer"));
        }
        peer
    })
    .await
    .map_err(io::Error::other)?
}

/// Binds UDP `bind` in `server`, sends a datagram from `client` to `target`, and waits for the
/// server's answer. Returns the client address the server saw.
pub async fn udp_probe(
    server: &Netns,
    bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
) -> io::Result<SocketAddr> {
    let srv = server
        .run(move || UdpSocket::bind(bind))
        .map_err(io::Error::other)??;
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let cli = client
        .run(move || UdpSocket::bind(any))
        .map_err(io::Error::other)??;
    tokio::task::spawn_blocking(move || {
        srv.set_read_timeout(Some(PROBE_TIMEOUT))?;
        cli.set_read_timeout(Some(PROBE_TIMEOUT))?;
        cli.send_to(b"ping", target)?;
        let mut buf = [0u8; 16];
        let (_, peer) = srv.recv_from(&mut buf)?;
        srv.send_to(b"pong", peer)?;
        let (n, _) = cli.recv_from(&mut buf)?;
        if &buf[..n] != b"pong" {
            return Err(io::Error::other("unexpected answer"));
        }
        Ok(peer)
    })
    .await
    .map_err(io::Error::other)?
}

/// Asks `server` (UDP) from inside `client` for the A records of `name`, as a program in a
/// container would. Returns the addresses (empty: the name has none); an error means no answer
/// or an error code (NXDOMAIN, SERVFAIL, REFUSED …, in the error's text).
pub async fn dns_probe(client: &Netns, server: SocketAddr, name: &str) -> io::Result<Vec<IpAddr>> {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    let qname = Name::from_ascii(name).map_err(io::Error::other)?;
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(qname, RecordType::A));
    let bytes = q.to_vec().map_err(io::Error::other)?;
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = client
        .run(move || UdpSocket::bind(any))
        .map_err(io::Error::other)??;
    let reply = tokio::task::spawn_blocking(move || {
        sock.set_read_timeout(Some(PROBE_TIMEOUT))?;
        sock.connect(server)?;
        sock.send(&bytes)?;
        let mut buf = vec![0u8; 4096];
        let n = sock.recv(&mut buf)?;
        buf.truncate(n);
        Ok::<_, io::Error>(buf)
    })
    .await
    .map_err(io::Error::other)??;
    let m = Message::from_vec(&reply).map_err(io::Error::other)?;
    if m.response_code != ResponseCode::NoError {
        return Err(io::Error::other(format!("{name}: {}", m.response_code)));
    }
    Ok(m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect())
}
