//! The embedded DNS resolver, proven with real DNS messages: queries are sent from inside
//! container namespaces to their network's gateway, port 53; upstream servers are small
//! responders this test runs in the sandbox (on the host netns' loopback and in the outside
//! netns). Nothing here talks to a real DNS server.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth::sandbox::Sandbox;
use berth::{Endpoint, Host, Netns, Network};
use common::*;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the loopback upstream answers for `outside.example.`, and the outside one.
const LOOP_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const OUT_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// An address on the uplink where nobody answers (an upstream that times out).
const DEAD: &str = "198.18.0.9";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

/// A tiny authoritative-for-everything DNS server on UDP and TCP port 53 of `ip` in a netns:
/// `outside.example.` A → its address; `big.example.` over UDP → an empty reply with TC, over
/// TCP → its address; anything else → NXDOMAIN. It records every name it is asked.
struct Upstream {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Upstream {
    fn start(ns: &Netns, ip: IpAddr, answer: Ipv4Addr) -> Upstream {
        let addr = SocketAddr::new(ip, 53);
        let (udp, tcp) = ns
            .run(move || (UdpSocket::bind(addr), TcpListener::bind(addr)))
            .unwrap();
        let (udp, tcp) = (udp.unwrap(), tcp.unwrap());
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s1, seen1) = (stop.clone(), seen.clone());
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s1.load(Ordering::Relaxed) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                let reply = respond(&buf[..n], answer, false, &seen1);
                let _ = udp.send_to(&reply, peer);
            }
        });
        let (s2, seen2) = (stop.clone(), seen.clone());
        let tcp_thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if c.read_exact(&mut q).is_err() {
                    continue;
                }
                let reply = respond(&q, answer, true, &seen2);
                let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&reply);
                let _ = c.write_all(&out);
            }
        });
        Upstream {
            stop,
            seen,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn asked(&self, name: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|n| n == name)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn respond(bytes: &[u8], answer: Ipv4Addr, tcp: bool, seen: &Mutex<Vec<String>>) -> Vec<u8> {
    let q = Message::from_vec(bytes).unwrap();
    let query = q.queries[0].clone();
    let name = query.name().to_ascii().to_ascii_lowercase();
    seen.lock().unwrap().push(name.clone());
    let mut r = Message::response(q.id, q.op_code);
    r.add_query(query.clone());
    let record = Record::from_rdata(query.name().clone(), 60, RData::A(A(answer)));
    match name.as_str() {
        "outside.example." => {
            r.add_answer(record);
        }
        "big.example." if !tcp => r.metadata.truncation = true,
        "big.example." => {
            r.add_answer(record);
        }
        _ => r.metadata.response_code = ResponseCode::NXDomain,
    }
    r.to_vec().unwrap()
}

/// Sends one query from inside `ns` to `server` (UDP, or TCP when `tcp`) and returns the reply.
async fn ask(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
) -> std::io::Result<Message> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let bytes = q.to_vec().unwrap();
    let ns = ns.clone();
    let reply = tokio::task::spawn_blocking(move || {
        ns.run(move || -> std::io::Result<Vec<u8>> {
            if tcp {
                let mut s = TcpStream::connect_timeout(&server, CLIENT_TIMEOUT)?;
                s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&bytes);
                s.write_all(&out)?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len)?;
                let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut r)?;
                Ok(r)
            } else {
                let any: SocketAddr = if server.is_ipv4() {
                    sa("0.0.0.0:0")
                } else {
                    sa("[::]:0")
                };
                let s = UdpSocket::bind(any)?;
                s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                s.connect(server)?;
                s.send(&bytes)?;
                let mut buf = vec![0u8; 4096];
                let n = s.recv(&mut buf)?;
                buf.truncate(n);
                Ok(buf)
            }
        })
        .map_err(std::io::Error::other)?
    })
    .await
    .unwrap()?;
    let reply = Message::from_vec(&reply).map_err(std::io::Error::other)?;
    assert_eq!(reply.id, q.id);
    assert_eq!(reply.message_type, MessageType::Response);
    Ok(reply)
}

/// The A (or AAAA) addresses of a NOERROR reply.
fn addrs(m: &Message) -> Vec<IpAddr> {
    assert_eq!(m.response_code, ResponseCode::NoError, "{m:?}");
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(IpAddr::V4(*ip)),
            RData::AAAA(AAAA(ip)) => Some(IpAddr::V6(*ip)),
            _ => None,
        })
        .collect()
}

/// Asks until the resolver answers (it binds asynchronously); returns the reply and how long
/// it took.
async fn until_served(ns: &Netns, server: SocketAddr, name: &str) -> (Message, Duration) {
    let t0 = Instant::now();
    loop {
        if let Ok(m) = ask(ns, server, name, RecordType::A, false).await {
            return (m, t0.elapsed());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{server} never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct World {
    sb: Sandbox,
    host: Host,
    resolv: std::path::PathBuf,
    a: Netns,
    b: Netns,
    c: Netns,
    outside: Netns,
}

/// net1 (10.40.0.0/24 + fd40::/64): A, and B with alias `db`; net2 (10.41.0.0/24): C.
async fn world(label: &str) -> World {
    let (mut sb, outside) = sandbox(label).await;
    let resolv = sb.state_dir().join("host-resolv.conf");
    // The resolver's own gateway (skipped), a server that never answers, the loopback one.
    std::fs::write(
        &resolv,
        format!("nameserver 10.40.0.1\nnameserver {DEAD}\nnameserver 127.0.0.1\n"),
    )
    .unwrap();
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .resolv_conf(&resolv)
        .build()
        .await
        .unwrap();
    let (a, b, c) = (
        sb.netns("a").await.unwrap(),
        sb.netns("b").await.unwrap(),
        sb.netns("c").await.unwrap(),
    );
    let net1 = Network::bridge("net1")
        .subnet("10.40.0.0/24".parse().unwrap())
        .subnet("fd40::/64".parse().unwrap())
        .ipv6(true);
    host.create_network(net1).await.unwrap();
    let net2 = Network::bridge("net2").subnet("10.41.0.0/24".parse().unwrap());
    host.create_network(net2).await.unwrap();
    host.attach("net1", Endpoint::new("a", a.clone()))
        .await
        .unwrap();
    host.attach("net1", Endpoint::new("b", b.clone()).alias("db"))
        .await
        .unwrap();
    let out_up: IpAddr = OUTSIDE.parse().unwrap();
    host.attach("net2", Endpoint::new("c", c.clone()).dns(out_up))
        .await
        .unwrap();
    // Attach recorded `--dns` in C's sandbox record: that is where the resolver reads it.
    let rec = host
        .state()
        .sandbox("c")
        .unwrap()
        .expect("sandbox record of c");
    assert_eq!(rec.names.dns, vec![out_up]);
    World {
        sb,
        host,
        resolv,
        a,
        b,
        c,
        outside,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_resolve_names_of_shared_networks_and_follow_changes() {
    if !require_root() {
        return;
    }
    let w = world("bt-dns").await;
    let loop_up = Upstream::start(w.sb.host(), ip("127.0.0.1"), LOOP_ANSWER);
    let resolver = tokio::spawn(
        w.host
            .dns_resolver()
            .upstream_timeout(Duration::from_millis(300))
            .run(),
    );
    let gw1 = sa("10.40.0.1:53");
    let b_ip = w.host.state().endpoint("net1", "b").unwrap().unwrap();
    let (b4, b6) = (b_ip.ip().unwrap(), b_ip.ip6().unwrap());

    // A finds B by name and by alias, over UDP and TCP, any case, and as NAME.NETWORK.
    let (m, _) = until_served(&w.a, gw1, "b").await;
    assert_eq!(addrs(&m), vec![b4]);
    assert!(m.authoritative);
    assert_eq!(m.answers[0].ttl, 600);
    for (name, tcp) in [("db", false), ("DB.", true), ("b", true), ("b.net1", false)] {
        let m = ask(&w.a, gw1, name, RecordType::A, tcp).await.unwrap();
        assert_eq!(addrs(&m), vec![b4], "{name} tcp={tcp}");
    }
    let m = ask(&w.a, gw1, "db", RecordType::AAAA, false).await.unwrap();
    assert_eq!(addrs(&m), vec![b6]);
    // Over IPv6, to the IPv6 gateway: the querier is found by its IPv6 address.
    let m = ask(&w.a, sa("[fd40::1]:53"), "b", RecordType::A, true)
        .await
        .unwrap();
    assert_eq!(addrs(&m), vec![b4]);
    // PTR of B's address.
    let arpa = Name::from(b4).to_ascii();
    let m = ask(&w.a, gw1, &arpa, RecordType::PTR, false).await.unwrap();
    let ptr: Vec<_> = m.answers.iter().map(|r| r.data.clone()).collect();
    assert_eq!(
        ptr,
        vec![RData::PTR(PTR(Name::from_ascii("b.net1.").unwrap()))]
    );

    // C shares no network with A: not answered from the table, forwarded, NXDOMAIN.
    let m = ask(&w.a, gw1, "c", RecordType::A, false).await.unwrap();
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    assert!(loop_up.asked("c."), "the query for c went upstream");
    // C has no IPv6: AAAA is NOERROR without answers, from the table.
    let m = ask(&w.c, sa("10.41.0.1:53"), "c", RecordType::AAAA, false)
        .await
        .unwrap();
    assert_eq!(
        (m.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );

    // B detaches: its name stops resolving at once (no retry, no wait).
    w.host.detach("net1", "b").await.unwrap();
    let m = ask(&w.a, gw1, "b", RecordType::A, false).await.unwrap();
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    let m = ask(&w.a, gw1, "db", RecordType::A, true).await.unwrap();
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    // It comes back with a new static address, attached by another Host over the same state
    // dir (as another process would): A gets the new address at once.
    let other = Host::builder()
        .state_dir(w.sb.state_dir())
        .netns(w.sb.host().clone())
        .resolv_conf(&w.resolv)
        .build()
        .await
        .unwrap();
    other
        .attach(
            "net1",
            Endpoint::new("b", w.b.clone())
                .ip("10.40.0.50".parse().unwrap())
                .alias("db"),
        )
        .await
        .unwrap();
    let m = ask(&w.a, gw1, "db", RecordType::A, false).await.unwrap();
    assert_eq!(addrs(&m), vec![ip("10.40.0.50")]);

    // A network created after the resolver started is served.
    let mut sb = w.sb;
    let d = sb.netns("d").await.unwrap();
    let net3 = Network::bridge("net3").subnet("10.42.0.0/24".parse().unwrap());
    w.host.create_network(net3).await.unwrap();
    let t0 = Instant::now();
    let att = w
        .host
        .attach("net3", Endpoint::new("d", d.clone()))
        .await
        .unwrap();
    let (m, _) = until_served(&d, sa("10.42.0.1:53"), "d").await;
    println!("net3 served {:?} after its first attach", t0.elapsed());
    assert_eq!(addrs(&m), vec![att.ip().unwrap()]);
    w.host.detach("net3", "d").await.unwrap();
    w.host.delete_network("net3").await.unwrap();

    resolver.abort();
    let _ = resolver.await;
    w.host.gc::<&str>(&[]).await.unwrap();
    drop(loop_up);
    drop(sb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_are_forwarded_to_the_right_upstream() {
    if !require_root() {
        return;
    }
    let w = world("bt-dnsfw").await;
    let loop_up = Upstream::start(w.sb.host(), ip("127.0.0.1"), LOOP_ANSWER);
    let out_up = Upstream::start(&w.outside, ip(OUTSIDE), OUT_ANSWER);
    let resolver = tokio::spawn(
        w.host
            .dns_resolver()
            .upstream_timeout(Duration::from_millis(300))
            .run(),
    );
    let gw1 = sa("10.40.0.1:53");
    until_served(&w.a, gw1, "a").await;

    // A sets no --dns: the host's resolv.conf, past the resolver's own address and a server
    // that never answers, to the loopback one (the resolver forwards from the host netns).
    for tcp in [false, true] {
        let m = ask(&w.a, gw1, "Outside.Example.", RecordType::A, tcp)
            .await
            .unwrap();
        assert_eq!(addrs(&m), vec![IpAddr::V4(LOOP_ANSWER)], "tcp={tcp}");
    }
    assert!(!out_up.asked("outside.example."));
    // C's --dns is the outside server.
    let m = ask(
        &w.c,
        sa("10.41.0.1:53"),
        "outside.example",
        RecordType::A,
        false,
    )
    .await
    .unwrap();
    assert_eq!(addrs(&m), vec![IpAddr::V4(OUT_ANSWER)]);
    assert!(out_up.asked("outside.example."));
    // C asking net1's gateway is not served there: its packets arrive on net2's bridge, and
    // only net2's gateway answers it. Nothing is forwarded for it either.
    for tcp in [false, true] {
        let how = unanswered(&w.c, gw1, "b", RecordType::A, tcp).await;
        assert!(how.is_ok(), "C was answered on net1's gateway: {how:?}");
    }
    assert!(
        !out_up.asked("b."),
        "nothing forwarded for C from net1's gateway"
    );
    // A truncated upstream reply reaches the client with TC; over TCP the full answer.
    let m = ask(&w.a, gw1, "big.example", RecordType::A, false)
        .await
        .unwrap();
    assert!(m.truncation && m.answers.is_empty(), "{m:?}");
    let m = ask(&w.a, gw1, "big.example", RecordType::A, true)
        .await
        .unwrap();
    assert_eq!(addrs(&m), vec![IpAddr::V4(LOOP_ANSWER)]);
    // No upstream answers (loopback one stopped): SERVFAIL.
    drop(loop_up);
    let m = ask(&w.a, gw1, "outside.example", RecordType::A, false)
        .await
        .unwrap();
    assert_eq!(m.response_code, ResponseCode::ServFail);

    resolver.abort();
    let _ = resolver.await;
    w.host.gc::<&str>(&[]).await.unwrap();
}

/// `netctl serve-dns` in the foreground follows what other netctl processes do, and stops on
/// SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_serve_dns_follows_other_processes() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-ndns").await.unwrap();
    let (a, _b) = (sb.netns("a").await.unwrap(), sb.netns("b").await.unwrap());
    let n = common::netctl::Netctl::new(&sb);
    n.ok(&["network", "create", "--subnet", "10.42.0.0/24", "web"]);
    let mut server = n
        .command(&["serve-dns"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    n.connect(&sb, "web", "a", &[]);
    n.connect(&sb, "web", "b", &["--ip", "10.42.0.30", "--alias", "store"]);
    let gw = sa("10.42.0.1:53");
    let (m, _) = until_served(&a, gw, "store").await;
    assert_eq!(addrs(&m), vec![ip("10.42.0.30")]);
    n.ok(&["disconnect", "web", "b"]);
    let m = ask(&a, gw, "b", RecordType::A, false).await.unwrap();
    assert_ne!(
        m.response_code,
        ResponseCode::NoError,
        "gone after detach: {m:?}"
    );
    n.connect(&sb, "web", "b", &["--ip", "10.42.0.31"]);
    let m = ask(&a, gw, "b", RecordType::A, true).await.unwrap();
    assert_eq!(addrs(&m), vec![ip("10.42.0.31")]);
    // SIGTERM to the process we started: it exits cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}");
    n.ok(&["gc"]);
    n.ok(&["network", "rm", "web"]);
}

// ---------------------------------------------------------------------------------------------
// Only containers of a network are served, and no container can starve the others.

/// Sends a query that must get no DNS reply and says what happened: `Ok(how it went
/// unanswered)`, `Err(the reply)`. Over UDP it is sent from an unconnected socket, so a
/// datagram from any address would be read (an ICMP error is not); over TCP the connection
/// may be refused, reset, closed or left silent.
async fn unanswered(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    tcp: bool,
) -> Result<String, String> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let bytes = q.to_vec().unwrap();
    let ns = ns.clone();
    let got = tokio::task::spawn_blocking(move || {
        ns.run(move || -> std::io::Result<Vec<u8>> {
            if tcp {
                let mut s = TcpStream::connect_timeout(&server, CLIENT_TIMEOUT)?;
                s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&bytes);
                s.write_all(&out)?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len)?;
                let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
                s.read_exact(&mut r)?;
                Ok(r)
            } else {
                let any: SocketAddr = if server.is_ipv4() {
                    sa("0.0.0.0:0")
                } else {
                    sa("[::]:0")
                };
                let s = UdpSocket::bind(any)?;
                s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
                s.send_to(&bytes, server)?;
                let mut buf = vec![0u8; 4096];
                let (n, _) = s.recv_from(&mut buf)?;
                buf.truncate(n);
                Ok(buf)
            }
        })
        .unwrap()
    })
    .await
    .unwrap();
    match got {
        Ok(reply) => Err(match Message::from_vec(&reply) {
            Ok(m) => format!("{} {} answer(s)", m.response_code, m.answers.len()),
            Err(_) => format!("{} bytes", reply.len()),
        }),
        Err(e) => Ok(format!("{:?}", e.kind())),
    }
}

/// A neighbour of the host: netns `nb`, joined to the sandbox host by a veth (`nbr` on the
/// host side, 198.19.0.1/24 and fd99::1/64; `eth0` in nb, 198.19.0.2/24 and fd99::2/64), with
/// routes to net1's and net2's subnets via the host: a machine next to the host that reaches
/// the container networks through it.
async fn neighbour(sb: &mut Sandbox) -> Netns {
    let nb = sb
        .add_peer(
            "nb",
            "nbr",
            "198.19.0.1/24".parse().unwrap(),
            "198.19.0.2/24".parse().unwrap(),
        )
        .await
        .unwrap();
    let (host, nbn) = (sb.host_name().to_string(), ns_name(sb, "nb"));
    common::ip(&host, &["addr", "add", "fd99::1/64", "dev", "nbr", "nodad"]);
    common::ip(&nbn, &["addr", "add", "fd99::2/64", "dev", "eth0", "nodad"]);
    common::ip(&nbn, &["route", "add", "10.40.0.0/24", "via", "198.19.0.1"]);
    common::ip(&nbn, &["route", "add", "10.41.0.0/24", "via", "198.19.0.1"]);
    common::ip(&nbn, &["route", "add", "fd40::/64", "via", "fd99::1"]);
    nb
}

/// A stranger on net1's bridge: netns `st` plugged into `bridge` by a veth of its own (not a
/// berth endpoint), with addresses of net1's subnets that no endpoint has (10.40.0.200,
/// fd40::200): its queries arrive on the bridge, from sources that are not containers.
async fn stranger(sb: &mut Sandbox, bridge: &str) -> Netns {
    let st = sb.netns("st").await.unwrap();
    let (host, stn) = (sb.host_name().to_string(), ns_name(sb, "st"));
    common::ip(
        &host,
        &[
            "link", "add", "strg", "type", "veth", "peer", "name", "eth0", "netns", &stn,
        ],
    );
    common::ip(&host, &["link", "set", "strg", "master", bridge, "up"]);
    common::ip(&stn, &["addr", "add", "10.40.0.200/24", "dev", "eth0"]);
    common::ip(
        &stn,
        &["addr", "add", "fd40::200/64", "dev", "eth0", "nodad"],
    );
    common::ip(&stn, &["link", "set", "eth0", "up"]);
    st
}

/// Only containers on a network get answers from its gateway: a neighbour routed through the
/// host, a stranger plugged into the bridge and a process of the host itself get nothing, over
/// UDP and TCP, IPv4 and IPv6, for container names and for outside ones (nothing is forwarded
/// for them); a container asking the same is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_containers_of_the_network_are_answered() {
    if !require_root() {
        return;
    }
    let mut w = world("bt-dnsopen").await;
    let loop_up = Upstream::start(w.sb.host(), ip("127.0.0.1"), LOOP_ANSWER);
    let resolver = tokio::spawn(
        w.host
            .dns_resolver()
            .upstream_timeout(Duration::from_millis(300))
            .run(),
    );
    let (gw4, gw6) = (sa("10.40.0.1:53"), sa("[fd40::1]:53"));
    until_served(&w.a, gw4, "a").await;
    let bridge = w
        .host
        .state()
        .network("net1")
        .unwrap()
        .unwrap()
        .device
        .unwrap();
    let nb = neighbour(&mut w.sb).await;
    let st = stranger(&mut w.sb, &bridge).await;
    let host_ns = w.sb.host().clone();

    // Their packets do reach the gateway addresses: a probe listening there is answered.
    for client in [&nb, &st] {
        for target in [sa("10.40.0.1:5353"), sa("[fd40::1]:5353")] {
            berth::sandbox::udp_probe(w.sb.host(), target, client, target)
                .await
                .unwrap_or_else(|e| panic!("udp probe to {target}: {e}"));
            berth::sandbox::tcp_probe(w.sb.host(), target, client, target)
                .await
                .unwrap_or_else(|e| panic!("tcp probe to {target}: {e}"));
        }
    }

    // All at once (each unanswered UDP query waits for the client timeout).
    let mut asks = Vec::new();
    for (who, ns) in [("neighbour", &nb), ("stranger", &st), ("host", &host_ns)] {
        for server in [gw4, gw6] {
            for tcp in [false, true] {
                for (name, rtype) in [("b", RecordType::A), ("outside.example.", RecordType::ANY)] {
                    let ns = ns.clone();
                    asks.push(async move {
                        let what = unanswered(&ns, server, name, rtype, tcp).await;
                        let line = format!("{who} → {server} tcp={tcp} {name} {rtype}");
                        match &what {
                            Ok(how) => println!("{line}: no answer ({how})"),
                            Err(reply) => println!("{line}: ANSWERED ({reply})"),
                        }
                        what.is_err()
                    });
                }
            }
        }
    }
    let answered = futures::future::join_all(asks)
        .await
        .into_iter()
        .filter(|a| *a)
        .count();
    assert_eq!(answered, 0, "queries from non-containers were answered");
    let seen = loop_up.seen.lock().unwrap().clone();
    assert!(seen.is_empty(), "forwarded for them: {seen:?}");

    // A container of the network asking the same is answered, by the table and by upstream.
    let b4 = w
        .host
        .state()
        .endpoint("net1", "b")
        .unwrap()
        .unwrap()
        .ip()
        .unwrap();
    for server in [gw4, gw6] {
        for tcp in [false, true] {
            let m = ask(&w.a, server, "b", RecordType::A, tcp).await.unwrap();
            assert_eq!(addrs(&m), vec![b4], "{server} tcp={tcp}");
            let m = ask(&w.a, server, "outside.example.", RecordType::ANY, tcp)
                .await
                .unwrap();
            assert_eq!(
                addrs(&m),
                vec![IpAddr::V4(LOOP_ANSWER)],
                "{server} tcp={tcp}"
            );
        }
    }
    assert!(loop_up.asked("outside.example."));

    resolver.abort();
    let _ = resolver.await;
    w.host.gc::<&str>(&[]).await.unwrap();
}

/// An upstream that reads every query on UDP and TCP port 53 of `ip` in a netns and never
/// answers (TCP connections are held open); it records the names it is asked.
struct BlackHole {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl BlackHole {
    fn start(ns: &Netns, ip: IpAddr) -> BlackHole {
        let addr = SocketAddr::new(ip, 53);
        let (udp, tcp) = ns
            .run(move || (UdpSocket::bind(addr), TcpListener::bind(addr)))
            .unwrap();
        let (udp, tcp) = (udp.unwrap(), tcp.unwrap());
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = |seen: &Mutex<Vec<String>>, bytes: &[u8]| {
            if let Some(q) = Message::from_vec(bytes)
                .ok()
                .and_then(|m| m.queries.first().cloned())
            {
                seen.lock()
                    .unwrap()
                    .push(q.name().to_ascii().to_ascii_lowercase());
            }
        };
        let (s1, seen1) = (stop.clone(), seen.clone());
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s1.load(Ordering::Relaxed) {
                if let Ok((n, _)) = udp.recv_from(&mut buf) {
                    record(&seen1, &buf[..n]);
                }
            }
        });
        let (s2, seen2) = (stop.clone(), seen.clone());
        let tcp_thread = std::thread::spawn(move || {
            let mut readers = Vec::new();
            while !s2.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (s, seen) = (s2.clone(), seen2.clone());
                readers.push(std::thread::spawn(move || {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let mut len = [0u8; 2];
                    while !s.load(Ordering::Relaxed) {
                        match c.read_exact(&mut len) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(_) => return,
                        }
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if c.set_read_timeout(None).is_err() || c.read_exact(&mut q).is_err() {
                            return;
                        }
                        record(&seen, &q);
                        let _ = c.set_read_timeout(Some(Duration::from_millis(50)));
                    }
                }));
            }
            for r in readers {
                let _ = r.join();
            }
        });
        BlackHole {
            stop,
            seen,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn asked(&self, name: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|n| n == name)
    }

    /// How many names starting with `prefix` it was asked.
    fn count(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.starts_with(prefix))
            .count()
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends one UDP query for each of `names` from inside `ns` to `server`, from one socket,
/// without waiting for replies (a client that keeps asking).
async fn fire(ns: &Netns, server: SocketAddr, names: Vec<String>) {
    let ns = ns.clone();
    tokio::task::spawn_blocking(move || {
        ns.run(move || {
            let s = UdpSocket::bind(sa("0.0.0.0:0")).unwrap();
            for (i, name) in names.iter().enumerate() {
                let mut q = Message::query();
                q.metadata.id = i as u16;
                q.metadata.recursion_desired = true;
                q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
                s.send_to(&q.to_vec().unwrap(), server).unwrap();
                // Paced a little, so the kernel's receive buffer never drops any of them.
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .unwrap()
    })
    .await
    .unwrap();
}

/// One container flooding the resolver with queries for outside names, while the only upstream
/// never answers, does not starve the others: another container's local name is answered, its
/// outside name is still forwarded, and the flooder's own local names are answered too; the
/// flooder itself gets at most its own share of forwarded queries (32) in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_container_s_query_flood_does_not_starve_the_others() {
    if !require_root() {
        return;
    }
    let w = world("bt-dnsflood").await;
    std::fs::write(&w.resolv, format!("nameserver {OUTSIDE}\n")).unwrap();
    let hole = BlackHole::start(&w.outside, ip(OUTSIDE));
    let resolver = tokio::spawn(
        w.host
            .dns_resolver()
            .upstream_timeout(Duration::from_secs(5))
            .run(),
    );
    let gw = sa("10.40.0.1:53");
    until_served(&w.b, gw, "a").await;
    let ep = |c: &str| {
        w.host
            .state()
            .endpoint("net1", c)
            .unwrap()
            .unwrap()
            .ip()
            .unwrap()
    };
    let (a4, b4) = (ep("a"), ep("b"));

    let flood: Vec<String> = (0..300).map(|i| format!("flood-{i}.example.")).collect();
    fire(&w.a, gw, flood).await;
    // B's local name: answered (from the table, not waiting behind A's forwards).
    let m = ask(&w.b, gw, "a", RecordType::A, false)
        .await
        .expect("B's local query is answered during A's flood");
    assert_eq!(addrs(&m), vec![a4]);
    // B's outside name: forwarded (the black hole sees it; B's reply would be a SERVFAIL
    // after the upstream timeout, not waited for here).
    fire(&w.b, gw, vec!["b-outside.example.".into()]).await;
    let t0 = Instant::now();
    while !hole.asked("b-outside.example.") {
        assert!(
            t0.elapsed() < CLIENT_TIMEOUT,
            "B's outside query was not forwarded during A's flood"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A's own local query: answered too, though A has its forwards in flight.
    let m = ask(&w.a, gw, "b", RecordType::A, false)
        .await
        .expect("A's local query is answered");
    assert_eq!(addrs(&m), vec![b4]);
    // A had at most its own share upstream.
    let forwarded = hole.count("flood-");
    println!("of A's 300 queries, {forwarded} were forwarded");
    assert!(
        (1..=32).contains(&forwarded),
        "{forwarded} of A's queries forwarded"
    );

    resolver.abort();
    let _ = resolver.await;
    w.host.gc::<&str>(&[]).await.unwrap();
}

/// One container holding many TCP connections to the resolver does not lock the others out:
/// another container's TCP query is answered, and so is one on the holder's first connection;
/// the holder keeps at most its own share (8) of connections open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_container_s_tcp_connections_do_not_starve_the_others() {
    if !require_root() {
        return;
    }
    let w = world("bt-dnstcp").await;
    let resolver = tokio::spawn(w.host.dns_resolver().run());
    let gw = sa("10.40.0.1:53");
    until_served(&w.b, gw, "a").await;
    let ep = |c: &str| {
        w.host
            .state()
            .endpoint("net1", c)
            .unwrap()
            .unwrap()
            .ip()
            .unwrap()
    };
    let (a4, b4) = (ep("a"), ep("b"));

    // A opens 300 connections and holds them, idle.
    let a = w.a.clone();
    let conns: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        a.run(move || {
            (0..300)
                .filter_map(|_| TcpStream::connect_timeout(&gw, CLIENT_TIMEOUT).ok())
                .collect()
        })
        .unwrap()
    })
    .await
    .unwrap();
    assert!(conns.len() > 8, "only {} connections", conns.len());
    // B's TCP query is answered.
    let m = ask(&w.b, gw, "a", RecordType::A, true)
        .await
        .expect("B's TCP query is answered while A holds its connections");
    assert_eq!(addrs(&m), vec![a4]);
    // A's first connection is still served; then count what the resolver kept open.
    let (first_reply, open) = tokio::task::spawn_blocking(move || {
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(Name::from_ascii("b").unwrap(), RecordType::A));
        let bytes = q.to_vec().unwrap();
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        let mut c = &conns[0];
        c.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        let reply = c.write_all(&out).and_then(|()| {
            let mut len = [0u8; 2];
            c.read_exact(&mut len)?;
            let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
            c.read_exact(&mut r)?;
            Ok(r)
        });
        let open = conns
            .iter()
            .filter(|c| {
                c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let mut b = [0u8; 1];
                matches!((&mut &**c).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count();
        (reply, open)
    })
    .await
    .unwrap();
    let m = Message::from_vec(&first_reply.expect("A's first connection is answered")).unwrap();
    assert_eq!(addrs(&m), vec![b4]);
    println!("of A's {} connections, the resolver kept {open} open", 300);
    assert!(
        (1..=8).contains(&open),
        "{open} of A's connections kept open"
    );

    resolver.abort();
    let _ = resolver.await;
    w.host.gc::<&str>(&[]).await.unwrap();
}
