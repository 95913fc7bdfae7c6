//! Anti-spoofing (`Network::bridge(..).anti_spoofing(true)`), proven by traffic: container C
//! takes container A's IPv4 and IPv6 addresses, announces them (gratuitous ARP in request and
//! reply form, an unsolicited neighbour advertisement — frames built by hand on an AF_PACKET
//! socket in C's netns), sends datagrams from them, and takes A's MAC. On a network with the
//! option, B's and the gateway's connections to A's addresses still reach A, C's datagrams
//! never arrive, the host's neighbour table and the bridge's FDB never map A to C. On a network
//! without it the same attack succeeds (so the test detects it). Legitimate traffic keeps
//! flowing, and the elements follow attach, detach, `reapply` and `check`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::endpoint::Attachment;
use berth::sandbox::Sandbox;
use berth::{Endpoint, Host, Netns, Network, NetworkInfo, Port};
use common::*;

struct World {
    sb: Sandbox,
    host: Host,
    net: NetworkInfo,
    a: Netns,
    b: Netns,
    c: Netns,
    att: [Attachment; 3],
}

impl World {
    fn v4(&self, i: usize) -> Ipv4Addr {
        self.att[i].ipv4.unwrap().addr()
    }
    fn v6(&self, i: usize) -> Ipv6Addr {
        self.att[i].ipv6.unwrap().addr()
    }
    fn mac(&self, i: usize) -> [u8; 6] {
        self.att[i].mac.unwrap().octets()
    }
    fn ns(&self, role: &str) -> String {
        ns_name(&self.sb, role)
    }
}

/// A dual-stack network `10.N.0.0/24` + `fd00:N::/64` with containers a, b, c (a publishes
/// 8080:80).
async fn world(label: &str, n: u8, guard: bool) -> World {
    let (mut sb, _outside) = sandbox(label).await;
    let host = host(&sb).await;
    let spec = Network::bridge(format!("net{n}"))
        .subnet(format!("10.{n}.0.0/24").parse().unwrap())
        .ipv6(true)
        .subnet(format!("fd00:{n}::/64").parse().unwrap())
        .anti_spoofing(guard);
    let net = host.create_network(spec).await.unwrap();
    assert_eq!(net.anti_spoofing(), guard);
    let (a, b, c) = (
        sb.netns("a").await.unwrap(),
        sb.netns("b").await.unwrap(),
        sb.netns("c").await.unwrap(),
    );
    let mut att = Vec::new();
    for (name, ns) in [("a", &a), ("b", &b), ("c", &c)] {
        let mut ep = Endpoint::new(name, ns.clone());
        if name == "a" {
            ep = ep.publish(Port::tcp(8080).to(80));
        }
        att.push(host.attach(&net, ep).await.unwrap());
    }
    World {
        sb,
        host,
        net,
        a,
        b,
        c,
        att: att.try_into().unwrap(),
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Which of two listeners on one port (`a` bound to `a_bind`, `c` to `c_bind`) a TCP
/// connection from `client` to `target` reaches: "a", "c", or "none".
async fn who_answers(
    a: &Netns,
    a_bind: SocketAddr,
    c: &Netns,
    c_bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
) -> &'static str {
    let la = a.run(move || TcpListener::bind(a_bind)).unwrap().unwrap();
    let lc = c.run(move || TcpListener::bind(c_bind)).unwrap().unwrap();
    la.set_nonblocking(true).unwrap();
    lc.set_nonblocking(true).unwrap();
    let conn = client
        .run(move || {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
            s.write_all(b"x")?;
            Ok::<_, std::io::Error>(s)
        })
        .unwrap();
    if conn.is_err() {
        return "none";
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        for (l, who) in [(&la, "a"), (&lc, "c")] {
            if let Ok((mut s, _)) = l.accept() {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() {
                    return who;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    "none"
}

/// Whether a UDP datagram `from` (an address of `sender`) to `to` (bound in `receiver`) arrives.
fn datagram_arrives(sender: &Netns, from: SocketAddr, receiver: &Netns, to: SocketAddr) -> bool {
    let rx = receiver.run(move || UdpSocket::bind(to)).unwrap().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let tx = sender.run(move || UdpSocket::bind(from)).unwrap().unwrap();
    for _ in 0..3 {
        tx.send_to(b"spoofed", to).ok();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut buf = [0u8; 16];
    matches!(rx.recv_from(&mut buf), Ok((_, peer)) if peer.ip() == from.ip())
}

/// Sends `frames` on `ifname` of `ns` through an AF_PACKET socket opened inside it.
fn send_frames(ns: &Netns, ifname: &'static str, frames: Vec<Vec<u8>>) {
    ns.run(move || {
        // SAFETY: plain socket calls with valid buffers; the fd is closed at the end.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            );
            assert!(fd >= 0, "AF_PACKET socket");
            let name = std::ffi::CString::new(ifname).unwrap();
            let index = libc::if_nametoindex(name.as_ptr());
            assert!(index > 0, "no {ifname}");
            for f in &frames {
                let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                sll.sll_family = libc::AF_PACKET as u16;
                sll.sll_ifindex = index as i32;
                sll.sll_halen = 6;
                sll.sll_addr[..6].copy_from_slice(&f[..6]);
                let n = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(n, f.len() as isize, "sendto");
            }
            libc::close(fd);
        }
    })
    .unwrap();
}

/// A gratuitous ARP claiming `ip` for `mac`: request (op 1) or reply (op 2) form.
fn garp(mac: [u8; 6], ip: Ipv4Addr, op: u8) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(mac);
    f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
    f.extend(mac);
    f.extend(ip.octets());
    f.extend(if op == 1 { [0; 6] } else { [0xff; 6] });
    f.extend(ip.octets());
    f
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An unsolicited neighbour advertisement (override) from `src` that `target` is at `mac`.
fn unsolicited_na(eth_src: [u8; 6], src: Ipv6Addr, target: Ipv6Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend(target.octets());
    icmp.extend([2, 1]);
    icmp.extend(mac);
    to_all_nodes(eth_src, src, icmp)
}

/// A router advertisement from `src` (router lifetime 1800 s, source link-layer option).
fn router_advert(eth_src: [u8; 6], src: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![
        134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
    ];
    icmp.extend(eth_src);
    to_all_nodes(eth_src, src, icmp)
}

/// The ICMPv6 message `icmp` (checksum filled in) from `src` to ff02::1, hop limit 255.
fn to_all_nodes(eth_src: [u8; 6], src: Ipv6Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    let dst: Ipv6Addr = "ff02::1".parse().unwrap();
    let mut pseudo = Vec::new();
    pseudo.extend(src.octets());
    pseudo.extend(dst.octets());
    pseudo.extend((icmp.len() as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, 58]);
    pseudo.extend(&icmp);
    let c = checksum(&pseudo).to_be_bytes();
    icmp[2] = c[0];
    icmp[3] = c[1];
    let mut f = vec![0x33, 0x33, 0, 0, 0, 1];
    f.extend(eth_src);
    f.extend([0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend((icmp.len() as u16).to_be_bytes());
    f.extend([58, 255]);
    f.extend(src.octets());
    f.extend(dst.octets());
    f.extend(icmp);
    f
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the attack achieved.
#[derive(Debug, Default)]
struct Outcome {
    host_neigh4_to_c: bool,
    b_to_a4: &'static str,
    gw_to_a4: &'static str,
    spoofed_udp4_at_b: bool,
    host_neigh6_to_c: bool,
    b_to_a6: &'static str,
    gw_to_a6: &'static str,
    spoofed_udp6_at_b: bool,
    fdb_a_mac_on_c_port: bool,
    b_to_a4_after_mac_theft: &'static str,
    ll_fdb_a_mac_on_c_port: bool,
    tagged_garp_host_neigh4_to_c: bool,
    b_route_via_c: bool,
}

/// C attacks A's addresses as the module describes; returns what it achieved.
async fn attack(w: &World) -> Outcome {
    let (a4, b4, a6, b6) = (w.v4(0), w.v4(1), w.v6(0), w.v6(1));
    let (a_mac, c_mac) = (w.mac(0), w.mac(2));
    let host_ns = w.sb.host_name().to_string();
    let host = w.sb.host().clone();
    // Before: B and the host know A (their neighbour tables hold A's MAC), C knows B.
    for (client, port) in [(&w.b, 7100), (&host, 7101)] {
        assert_reaches(
            &w.a,
            SocketAddr::new(IpAddr::V4(a4), port),
            client,
            SocketAddr::new(IpAddr::V4(a4), port),
        )
        .await;
        assert_reaches(
            &w.a,
            SocketAddr::new(IpAddr::V6(a6), port),
            client,
            SocketAddr::new(IpAddr::V6(a6), port),
        )
        .await;
    }
    assert_reaches(
        &w.b,
        sa("0.0.0.0:7102"),
        &w.c,
        SocketAddr::new(b4.into(), 7102),
    )
    .await;
    assert_reaches(
        &w.b,
        sa("[::]:7102"),
        &w.c,
        SocketAddr::new(b6.into(), 7102),
    )
    .await;

    // C takes A's addresses and announces them with its own MAC.
    let cn = w.ns("c");
    ip(&cn, &["addr", "add", &format!("{a4}/32"), "dev", "eth0"]);
    ip(
        &cn,
        &[
            "-6",
            "addr",
            "add",
            &format!("{a6}/128"),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    let c6 = w.v6(2);
    for _ in 0..3 {
        send_frames(
            &w.c,
            "eth0",
            vec![
                garp(c_mac, a4, 1),
                garp(c_mac, a4, 2),
                unsolicited_na(c_mac, c6, a6, c_mac),
                unsolicited_na(c_mac, a6, a6, c_mac),
            ],
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let neigh = |fam: &str, addr: String| {
        run(
            "ip",
            &[
                "-n",
                &host_ns,
                fam,
                "neigh",
                "show",
                &addr,
                "dev",
                &w.net.device.clone().unwrap(),
            ],
        )
    };
    let mut o = Outcome {
        host_neigh4_to_c: neigh("-4", a4.to_string()).contains(&mac_text(c_mac)),
        host_neigh6_to_c: neigh("-6", a6.to_string()).contains(&mac_text(c_mac)),
        ..Outcome::default()
    };
    let any4 = sa("0.0.0.0:7200");
    let any6 = sa("[::]:7201");
    let (t4, t6) = (
        SocketAddr::new(a4.into(), 7200),
        SocketAddr::new(a6.into(), 7201),
    );
    o.b_to_a4 = who_answers(&w.a, t4, &w.c, any4, &w.b, t4).await;
    o.gw_to_a4 = who_answers(&w.a, t4, &w.c, any4, &host, t4).await;
    o.b_to_a6 = who_answers(&w.a, t6, &w.c, any6, &w.b, t6).await;
    o.gw_to_a6 = who_answers(&w.a, t6, &w.c, any6, &host, t6).await;
    o.spoofed_udp4_at_b = datagram_arrives(
        &w.c,
        SocketAddr::new(a4.into(), 0),
        &w.b,
        SocketAddr::new(b4.into(), 9000),
    );
    o.spoofed_udp6_at_b = datagram_arrives(
        &w.c,
        SocketAddr::new(a6.into(), 0),
        &w.b,
        SocketAddr::new(b6.into(), 9001),
    );

    // Frames to IEEE link-local addresses (LLDP, 01:80:c2:00:00:0e, and 01:80:c2:00:00:03),
    // which the bridge does not forward but learns the source of, from A's MAC; and a
    // priority-tagged (VLAN 0) gratuitous ARP, which the host takes as untagged.
    let c_port = w.att[2].host_ifname.clone().unwrap();
    let ll = |last: u8| {
        let mut f = vec![0x01, 0x80, 0xc2, 0, 0, last];
        f.extend(a_mac);
        f.extend([0x88, 0xcc]);
        f.extend([0u8; 46]);
        f
    };
    let mut tagged = garp(c_mac, a4, 2);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x00]);
    for _ in 0..5 {
        send_frames(&w.c, "eth0", vec![ll(0x0e), ll(0x03), tagged.clone()]);
        // Looked at at once: A's next frame teaches the bridge its MAC's right port again.
        let fdb = run("bridge", &["-n", &host_ns, "fdb", "show", "dev", &c_port]);
        o.ll_fdb_a_mac_on_c_port |= fdb.contains(&mac_text(a_mac));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    o.tagged_garp_host_neigh4_to_c = neigh("-4", a4.to_string()).contains(&mac_text(c_mac));

    // C advertises itself as a router, from its own link-local address.
    let c_ll = berth::firewall::ruleset::spoof::link_local(c_mac);
    for _ in 0..3 {
        send_frames(&w.c, "eth0", vec![router_advert(c_mac, c_ll)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let routes = ip(&w.ns("b"), &["-6", "route", "show"]);
    o.b_route_via_c = routes.contains(&c_ll.to_string());

    // C takes A's MAC too, announces A's address with it, and sends from it.
    ip(
        &cn,
        &["link", "set", "dev", "eth0", "address", &mac_text(a_mac)],
    );
    for _ in 0..3 {
        send_frames(&w.c, "eth0", vec![garp(a_mac, a4, 1), garp(a_mac, a4, 2)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    datagram_arrives(
        &w.c,
        SocketAddr::new(a4.into(), 0),
        &w.b,
        SocketAddr::new(b4.into(), 9002),
    );
    let fdb = run("bridge", &["-n", &host_ns, "fdb", "show", "dev", &c_port]);
    o.fdb_a_mac_on_c_port = fdb.contains(&mac_text(a_mac));
    let t = SocketAddr::new(a4.into(), 7203);
    o.b_to_a4_after_mac_theft = who_answers(&w.a, t, &w.c, sa("0.0.0.0:7203"), &w.b, t).await;
    // C gives everything back.
    ip(
        &cn,
        &["link", "set", "dev", "eth0", "address", &mac_text(c_mac)],
    );
    ip(&cn, &["addr", "del", &format!("{a4}/32"), "dev", "eth0"]);
    ip(
        &cn,
        &["-6", "addr", "del", &format!("{a6}/128"), "dev", "eth0"],
    );
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_cannot_take_its_neighbours_addresses_on_an_anti_spoofing_network() {
    if !require_root() {
        return;
    }
    let w = world("as-guard", 63, true).await;
    let o = attack(&w).await;
    println!("guarded: {o:?}");
    assert!(!o.host_neigh4_to_c, "host maps A's IPv4 to C's MAC: {o:?}");
    assert!(!o.host_neigh6_to_c, "host maps A's IPv6 to C's MAC: {o:?}");
    assert_eq!(o.b_to_a4, "a", "B -> A's IPv4: {o:?}");
    assert_eq!(o.gw_to_a4, "a", "gateway -> A's IPv4: {o:?}");
    assert_eq!(o.b_to_a6, "a", "B -> A's IPv6: {o:?}");
    assert_eq!(o.gw_to_a6, "a", "gateway -> A's IPv6: {o:?}");
    assert!(!o.spoofed_udp4_at_b, "C's datagram from A's IPv4 reached B");
    assert!(!o.spoofed_udp6_at_b, "C's datagram from A's IPv6 reached B");
    assert!(
        !o.fdb_a_mac_on_c_port,
        "the bridge learned A's MAC on C's port"
    );
    assert_eq!(
        o.b_to_a4_after_mac_theft, "a",
        "after C took A's MAC: {o:?}"
    );
    // C, given its own back, talks again.
    assert_reaches(
        &w.a,
        sa("0.0.0.0:7300"),
        &w.c,
        SocketAddr::new(w.v4(0).into(), 7300),
    )
    .await;
    w.host.gc::<&str>(&[]).await.unwrap();
    w.host.delete_network(&w.net).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_the_same_attack_succeeds() {
    if !require_root() {
        return;
    }
    let w = world("as-ctl", 64, false).await;
    let o = attack(&w).await;
    println!("unguarded: {o:?}");
    assert!(o.host_neigh4_to_c, "gratuitous ARP took effect: {o:?}");
    assert!(o.host_neigh6_to_c, "unsolicited NA took effect: {o:?}");
    assert_eq!(o.b_to_a4, "c", "{o:?}");
    assert_eq!(o.gw_to_a4, "c", "{o:?}");
    assert_eq!(o.b_to_a6, "c", "{o:?}");
    assert_eq!(o.gw_to_a6, "c", "{o:?}");
    assert!(o.spoofed_udp4_at_b, "{o:?}");
    assert!(o.spoofed_udp6_at_b, "{o:?}");
    assert!(o.fdb_a_mac_on_c_port, "{o:?}");
    assert!(o.ll_fdb_a_mac_on_c_port, "{o:?}");
    assert!(o.b_route_via_c, "{o:?}");
    w.host.gc::<&str>(&[]).await.unwrap();
    w.host.delete_network(&w.net).await.unwrap();
}

/// Elements of set `name` in table bridge berth.
fn set_len(sb: &Sandbox, name: &str) -> usize {
    nft_objects(sb, "set")
        .iter()
        .find(|s| s["family"] == "bridge" && s["name"] == name)
        .map_or(0, |s| {
            s.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len)
        })
}

fn nft(sb: &Sandbox, args: &[&str]) {
    let mut a = vec!["netns", "exec", sb.host_name(), "nft"];
    a.extend(args);
    run("ip", &a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_traffic_flows_and_the_elements_follow_the_endpoints() {
    if !require_root() {
        return;
    }
    let mut w = world("as-legit", 65, true).await;
    let resolver = tokio::spawn(w.host.dns_resolver().run());
    let host = w.sb.host().clone();
    let (gw4, gw6) = (w.att[0].gateway.unwrap(), w.att[0].gateway6.unwrap());
    let nss = [w.a.clone(), w.b.clone(), w.c.clone()];
    // Every container reaches the others and the gateway, over both families.
    for (i, from) in nss.iter().enumerate() {
        let to = (i + 1) % 3;
        for target in [IpAddr::V4(w.v4(to)), IpAddr::V6(w.v6(to))] {
            let t = SocketAddr::new(target, 7400 + i as u16);
            assert_reaches(&nss[to], t, from, t).await;
        }
        for target in [IpAddr::V4(gw4), IpAddr::V6(gw6)] {
            let t = SocketAddr::new(target, 7410 + i as u16);
            assert_reaches(&host, t, from, t).await;
        }
    }
    // A published port through the host's address (hairpin), from B and from A itself.
    for from in [&w.b, &w.a] {
        assert_reaches(&w.a, sa("0.0.0.0:80"), from, sa(&format!("{HOST_UP}:8080"))).await;
    }
    // DNS to the gateway.
    let t0 = Instant::now();
    let answer = loop {
        match berth::sandbox::dns_probe(&w.c, SocketAddr::new(gw4.into(), 53), "a").await {
            Ok(a) => break a,
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(10), "no DNS answer: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(answer, vec![IpAddr::V4(w.v4(0))]);
    resolver.abort();

    // The link-local the guard allows is the one the kernel gave (EUI-64, addr_gen_mode 0).
    for (i, role) in ["a", "b", "c"].iter().enumerate() {
        let ll = berth::firewall::ruleset::spoof::link_local(w.mac(i));
        let addrs = ip(
            &w.ns(role),
            &["-6", "addr", "show", "dev", "eth0", "scope", "link"],
        );
        assert!(addrs.contains(&format!("{ll}/64")), "{role}: {addrs}");
    }
    // The elements: per container its IPv4, IPv6 and link-local, each with its port and MAC.
    assert_eq!(set_len(&w.sb, "spoof4"), 3);
    assert_eq!(set_len(&w.sb, "spoof6"), 6);
    assert_eq!(w.host.check_firewall().await.unwrap(), Vec::<String>::new());
    let rules = rule_count(&w.sb);

    // `check` names a missing element.
    let port = w.att[1].host_ifname.clone().unwrap();
    let elem = format!("{port} . {} . {}", mac_text(w.mac(1)), w.v4(1));
    nft(
        &w.sb,
        &[
            "delete",
            "element",
            "bridge",
            "berth-spoof",
            "spoof4",
            "{",
            &elem,
            "}",
        ],
    );
    let missing = w.host.check(&w.net, "b").await.unwrap();
    assert_eq!(
        missing,
        vec![format!(
            "anti-spoofing of {} on port {port} ({})",
            w.v4(1),
            mac_text(w.mac(1))
        )]
    );
    // Without its element, B's IPv4 is dropped; `reapply` after a flush brings all back.
    assert_blocked(
        &w.a,
        sa("0.0.0.0:7500"),
        &w.b,
        SocketAddr::new(w.v4(0).into(), 7500),
        "B without its element",
    )
    .await;
    nft(&w.sb, &["flush", "ruleset"]);
    assert!(!w.host.check_firewall().await.unwrap().is_empty());
    w.host.reapply().await.unwrap();
    assert_eq!(w.host.check_firewall().await.unwrap(), Vec::<String>::new());
    assert_eq!(set_len(&w.sb, "spoof4"), 3);
    assert_eq!(set_len(&w.sb, "spoof6"), 6);
    assert_eq!(rule_count(&w.sb), rules);
    assert_reaches(
        &w.a,
        sa("0.0.0.0:7501"),
        &w.b,
        SocketAddr::new(w.v4(0).into(), 7501),
    )
    .await;

    // Detach removes C's elements; the rule count stays flat from 2 to 12 endpoints.
    w.host.detach(&w.net, "c").await.unwrap();
    assert_eq!(set_len(&w.sb, "spoof4"), 2);
    assert_eq!(set_len(&w.sb, "spoof6"), 4);
    assert_eq!(rule_count(&w.sb), rules);
    for i in 0..10 {
        let ns = w.sb.netns(&format!("m{i}")).await.unwrap();
        w.host
            .attach(&w.net, Endpoint::new(format!("m{i}"), ns))
            .await
            .unwrap();
    }
    assert_eq!(set_len(&w.sb, "spoof4"), 12);
    assert_eq!(set_len(&w.sb, "spoof6"), 24);
    assert_eq!(rule_count(&w.sb), rules);
    assert_eq!(w.host.check_firewall().await.unwrap(), Vec::<String>::new());
    w.host.gc::<&str>(&[]).await.unwrap();
    w.host.delete_network(&w.net).await.unwrap();
    assert_eq!(set_len(&w.sb, "spoof4") + set_len(&w.sb, "spoof6"), 0);
    // With no anti-spoofing network left, gc removes the table.
    w.host.gc::<&str>(&[]).await.unwrap();
    assert!(
        !nft_objects(&w.sb, "table")
            .iter()
            .any(|t| t["name"] == "berth-spoof"),
        "table bridge berth-spoof left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_drivers_refuse_the_option_by_name_and_nothing_changes() {
    if !require_root() {
        return;
    }
    let (sb, _outside) = sandbox("as-bad").await;
    let host = host(&sb).await;
    let before = footprint(&sb).await;
    // The typed macvlan builder has no such setter; given as Docker's `-o anti_spoofing=true`,
    // the option is refused by name before anything is made.
    for kind in [
        berth::DriverKind::Macvlan,
        berth::DriverKind::Ipvlan,
        berth::DriverKind::None,
    ] {
        let e = berth::docker_options::DockerOptions::parse(kind, [("anti_spoofing", "true")])
            .unwrap_err();
        assert!(matches!(e, berth::Error::UnknownOption { .. }), "{e}");
        assert!(e.to_string().contains("anti_spoofing"), "{e}");
    }
    let _ = &host;
    assert_eq!(footprint(&sb).await, before);
}
