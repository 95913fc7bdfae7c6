//! The VM tier for GRE overlays (`encap=gre`): simulated hosts as in `tests/overlay.rs`
//! (`tests/common/cluster.rs`: host netns on an underlay bridge, a real etcd, each host's
//! agent running), their overlay carried by gretap ports instead of a VXLAN device. This
//! machine's kernel may have no GRE (`ip_gre`): there each test reports itself SKIPPED with the
//! reason, and the VM tier runs it on Debian's stock kernel:
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="target/debug/xtask vm-run" cargo test --test
//! vm_gre -- --nocapture` (`xtask/src/vm.rs`).

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use berth::driver::overlay::{gre_bridge_mac, gre_port_name, is_gre_port};
use berth::{Endpoint, Error, Netns, Network, NetworkSpec, OverlayEncap, OverlayOptions};
use common::cluster::*;
use common::*;

/// Ok(value), or prints SKIPPED and yields None when the kernel lacks GRE.
fn or_skip<T>(test: &str, r: berth::Result<T>) -> Option<T> {
    match r {
        Err(e @ Error::Unsupported { .. }) => {
            println!("SKIPPED: {test}: {e} (the VM tier runs it)");
            None
        }
        other => Some(other.expect("create GRE overlay")),
    }
}

fn gre(name: &str, subnet: &str) -> NetworkSpec<OverlayOptions> {
    Network::overlay(name)
        .encap(OverlayEncap::Gre)
        .subnet(subnet.parse().unwrap())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The names of the gretap ports of `vni` on host `h`.
async fn gre_ports(h: &SimHost, vni: u32) -> Vec<String> {
    let mut v: Vec<String> =
        h.nl.links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .filter(|n| is_gre_port(vni, n))
            .collect();
    v.sort();
    v
}

/// The ports host `h` should have on `vni`: one per VTEP of `others`.
fn ports_to(vni: u32, others: &[IpAddr]) -> Vec<String> {
    let mut v: Vec<String> = others.iter().map(|t| gre_port_name(vni, *t)).collect();
    v.sort();
    v
}

/// Binds UDP `0.0.0.0:port` inside `ns`.
fn udp_in(ns: &Netns, port: u16) -> UdpSocket {
    let s = ns
        .run(move || UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))))
        .unwrap()
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Every datagram `s` receives within `window`, counted by payload.
fn drain(s: &UdpSocket, window: Duration) -> BTreeMap<Vec<u8>, usize> {
    let mut got = BTreeMap::new();
    let t0 = std::time::Instant::now();
    let mut buf = [0u8; 64];
    while t0.elapsed() < window {
        if let Ok(n) = s.recv(&mut buf) {
            *got.entry(buf[..n].to_vec()).or_insert(0) += 1;
        }
    }
    got
}

/// Three hosts, four containers (two on h1): gretap ports in a full mesh, isolated and
/// neighbour-suppressing; all to all over TCP; a full-size datagram crosses and one byte more
/// is refused; check and gc know the ports; broadcasts sent once arrive exactly once on every other container (split
/// horizon: no loop in the mesh); a host that leaves the cluster loses its ports on the others,
/// a host whose last container detaches loses its devices and its ports on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gre_overlay_all_to_all_no_loop_and_leave() {
    const TEST: &str = "gre_overlay_all_to_all_no_loop_and_leave";
    let Some(mut c) = cluster("vg-all", 31, 3).await else {
        return;
    };
    let Some(net) = or_skip(
        TEST,
        c.hosts[0]
            .host
            .create_network(gre("ov", "10.210.1.0/24"))
            .await,
    ) else {
        return;
    };
    let vni = vni_of(&net);
    assert_eq!(net.mtu, 1458, "underlay 1500 − 42");
    let vteps: Vec<IpAddr> = c.hosts.iter().map(|h| h.vtep).collect();

    // a, a2 on h1; b on h2; d on h3.
    let mut eps: Vec<(usize, String, Netns, IpAddr)> = Vec::new();
    for (h, role) in [(0, "a"), (0, "a2"), (1, "b"), (2, "d")] {
        let ns = c.container(role).await;
        let att = c.hosts[h]
            .host
            .attach("ov", Endpoint::new(role, ns.clone()))
            .await
            .expect("attach");
        eps.push((h, role.to_string(), ns, att.ip().unwrap()));
    }

    // A full mesh of tunnel ports: each host one per other host, isolated, suppressing
    // neighbour discovery, on the bridge, no VXLAN device; one bridge MAC on every host.
    let br = net.device.clone().unwrap();
    for (i, h) in c.hosts.iter().enumerate() {
        let others: Vec<IpAddr> = vteps
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, v)| *v)
            .collect();
        let want = ports_to(vni, &others);
        let hs = h;
        wait_for(
            "GRE ports of the mesh",
            Duration::from_secs(10),
            async || gre_ports(hs, vni).await == want,
        )
        .await;
        let ns = ns_name(&c.sb, &h.name);
        for p in &want {
            let d = ip(&ns, &["-d", "link", "show", "dev", p]);
            assert!(d.contains("gretap"), "{d}");
            assert!(d.contains(&format!("master {br}")), "{d}");
            assert!(d.contains("isolated on"), "{d}");
            assert!(d.contains("neigh_suppress on"), "{d}");
            assert!(d.contains("mtu 1458"), "{d}");
            assert!(
                d.contains(&format!("key {}", Ipv4Addr::from(vni)))
                    || d.contains(&format!("key {vni}")),
                "{d}"
            );
            assert!(d.contains(&format!("local {}", h.vtep)), "{d}");
        }
        assert!(
            h.nl.link_by_name(&format!("vx-{vni}"))
                .await
                .unwrap()
                .is_none()
        );
        // No IPv6 link-local address on the bridge (it would be every host's).
        let a6 = ip(&ns, &["-6", "address", "show", "dev", &br]);
        assert!(!a6.contains("fe80"), "{a6}");
        let bridge = h.nl.require_link(&br).await.unwrap();
        assert_eq!(
            bridge.mac.as_deref(),
            Some(&gre_bridge_mac(&net).octets()[..]),
            "h{}: the network's bridge MAC",
            i + 1
        );
    }

    // All to all.
    for (i, (_, _, server, addr)) in eps.iter().enumerate() {
        for (k, (_, _, client, _)) in eps.iter().enumerate() {
            if i != k {
                reaches_at(server, client, &format!("{addr}:{}", 7000 + i)).await;
            }
        }
    }

    // MTU: a full-size datagram with DF set crosses h1 → h2; one byte more is refused.
    full_size_crosses(&eps[0].2, &eps[2].2, eps[2].3, 1458).await;

    // check sees nothing missing; gc keeps the ports (no record names them); a port an
    // admin deleted is named by check and remade by gc (or by the agent's reconcile, if it
    // came first).
    assert_eq!(
        c.hosts[0].host.check("ov", "a").await.unwrap(),
        Vec::<String>::new()
    );
    let report = c.hosts[0].host.gc_keeping(|_, _| true).await.unwrap();
    assert!(report.links_removed.is_empty(), "{report:?}");
    let to_h2 = gre_port_name(vni, vteps[1]);
    assert!(gre_ports(&c.hosts[0], vni).await.contains(&to_h2));
    c.hosts[0].nl.delete_link(&to_h2).await.unwrap();
    let missing = c.hosts[0].host.check("ov", "a").await.unwrap();
    let back = gre_ports(&c.hosts[0], vni).await.contains(&to_h2);
    assert!(
        back || missing.iter().any(|m| m.contains(&to_h2)),
        "check: {missing:?}"
    );
    c.hosts[0].host.gc_keeping(|_, _| true).await.unwrap();
    assert!(gre_ports(&c.hosts[0], vni).await.contains(&to_h2));
    reaches_at(&eps[2].2, &eps[0].2, &format!("{}:7050", eps[2].3)).await;

    // No loop: three broadcasts from a, each received exactly once by a2 (same host), b and
    // d (the other hosts), and never by a itself.
    let receivers: Vec<(String, UdpSocket)> = eps
        .iter()
        .map(|(_, role, ns, _)| (role.clone(), udp_in(ns, 9999)))
        .collect();
    let sender = eps[0]
        .2
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    sender.set_broadcast(true).unwrap();
    let counts = tokio::task::spawn_blocking(move || {
        for i in 0..3u8 {
            sender
                .send_to(&[b'b', i], "255.255.255.255:9999")
                .expect("broadcast");
        }
        receivers
            .into_iter()
            .map(|(role, s)| (role, drain(&s, Duration::from_millis(1500))))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let want: BTreeMap<Vec<u8>, usize> = (0..3u8).map(|i| (vec![b'b', i], 1)).collect();
    for (role, got) in &counts {
        if role == "a" {
            // The sender's own stack loops its broadcasts back once; never more.
            assert!(got.values().all(|n| *n == 1), "a: {got:?}");
            continue;
        }
        assert_eq!(got, &want, "{role}: each broadcast exactly once");
    }

    // h3 leaves the cluster (agent stopped, lease revoked): h1 and h2 lose their port to it
    // and still reach each other.
    if let Some(a) = c.hosts[2].agent.take() {
        a.abort();
    }
    c.hosts[2].host.cluster().unwrap().leave().await.unwrap();
    for i in 0..2 {
        let want = ports_to(vni, &[vteps[1 - i]]);
        let hs = &c.hosts[i];
        wait_for(
            "the leaver's port gone",
            Duration::from_secs(10),
            async || gre_ports(hs, vni).await == want,
        )
        .await;
    }
    reaches_at(&eps[2].2, &eps[0].2, &format!("{}:7100", eps[2].3)).await;

    // h2's last container detaches: its bridge and ports go, and h1's port to it.
    c.hosts[1].host.detach("ov", "b").await.unwrap();
    let links = link_names(&c.hosts[1].ns).await;
    assert!(
        !links.iter().any(|l| is_gre_port(vni, l) || *l == br),
        "h2: devices left: {links:?}"
    );
    let h1 = &c.hosts[0];
    wait_for(
        "h1's port to h2 gone",
        Duration::from_secs(10),
        async || gre_ports(h1, vni).await.is_empty(),
    )
    .await;
    // h1's two containers still talk over the bridge.
    reaches_at(&eps[1].2, &eps[0].2, &format!("{}:7101", eps[1].3)).await;
    for role in ["a", "a2"] {
        c.hosts[0].host.detach("ov", role).await.unwrap();
    }
    let links = link_names(&c.hosts[0].ns).await;
    assert!(!links.contains(&br), "h1: {links:?}");
    println!(
        "VM-TIER: GRE overlay all-to-all, MTU 1458, check and gc, no loop (each broadcast exactly once), leave and last detach proven on kernel {}",
        kernel()
    );
    drop(c);
}

/// Two GRE networks between the same two hosts stay apart (their own GRE keys, and the
/// firewall's isolation); egress is masqueraded by each container's own host; a published
/// port on host 2 reaches its container; an internal GRE network has no way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gre_overlay_isolation_and_outside() {
    const TEST: &str = "gre_overlay_isolation_and_outside";
    let Some(mut c) = cluster("vg-out", 32, 2).await else {
        return;
    };
    let n = c.n;
    let gre_spec = |name: &str, subnet: &str| gre(name, subnet).into();
    let r = outside_scenario(
        &mut c,
        gre_spec,
        ["10.210.2.0/24", "10.211.2.0/24", "10.212.2.0/24"],
    )
    .await;
    let Some(s) = or_skip(TEST, r) else {
        return;
    };
    let (ov, ov2) = (s.ov.clone(), s.ov2.clone());
    let (a_ns, b_ns) = (s.a.0.clone(), s.b.0.clone());
    let (b, o2) = (&s.b.1, &s.o2.1);
    let o2_ns = s.o2.0.clone();
    let o1_ns = c.container("o1").await;
    let o1 = c.hosts[0]
        .host
        .attach("ov2", Endpoint::new("o1", o1_ns.clone()))
        .await
        .unwrap();
    // Two tunnels h1 → h2, one per network, keyed apart.
    let (v1, v2) = (vni_of(&ov), vni_of(&ov2));
    assert_ne!(v1, v2);
    let h1 = &c.hosts[0];
    let to_h2 = c.hosts[1].vtep;
    wait_for(
        "both networks' ports",
        Duration::from_secs(10),
        async || {
            gre_ports(h1, v1).await == ports_to(v1, &[to_h2])
                && gre_ports(h1, v2).await == ports_to(v2, &[to_h2])
        },
    )
    .await;

    assert_outside_and_isolation(&c, &s, "GRE overlay").await;
    // Across hosts too: ov on h2 does not reach ov2 on h1.
    blocked_at(
        &b_ns,
        &o1_ns,
        &format!("{}:7003", b.ip().unwrap()),
        "another GRE overlay",
    )
    .await;
    // Each network across the same two hosts still flows.
    reaches_at(&o2_ns, &o1_ns, &format!("{}:7006", o2.ip().unwrap())).await;
    reaches_at(&o1_ns, &o2_ns, &format!("{}:7007", o1.ip().unwrap())).await;
    // Host 2's bridge asks the tunnels for an address (an ARP request naming the gateway
    // address as its sender, which host 1's containers see too): their gateway is still the
    // network's one bridge MAC, and egress still leaves by their own host.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h2 = c.hosts[1]
        .ns
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    h2.send_to(b"who", "10.210.2.250:9").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gw = ov.subnets[0].gateway.to_string();
    let br = ov.device.clone().unwrap();
    for (h, role) in [(0, "a"), (1, "b")] {
        let own = c.hosts[h].nl.require_link(&br).await.unwrap().mac.unwrap();
        let own = berth::MacAddr(own.try_into().unwrap());
        assert_eq!(own, gre_bridge_mac(&ov));
        let n = ip(&ns_name(&c.sb, role), &["neigh", "show", &gw]);
        assert!(
            n.contains(&format!("lladdr {own}")),
            "{role}: the gateway is not its own host's bridge ({own}): {n}"
        );
    }
    let seen = assert_reaches(
        &c.outside,
        sa("0.0.0.0:9102"),
        &a_ns,
        sa(&format!("10.99.{n}.200:9102")),
    )
    .await;
    assert_eq!(seen.ip(), c.hosts[0].vtep);
    println!(
        "VM-TIER: GRE overlay isolation (two networks keyed apart between two hosts, internal), egress masqueraded by its own host and a published port proven on kernel {}",
        kernel()
    );
    drop(c);
}

/// Over an IPv6 underlay: ip6gretap ports without the encapsulation-limit option, MTU
/// 1500 − 62, a dual-stack overlay's traffic both ways (IPv4 and IPv6) and a full-size
/// datagram across.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gre_overlay_over_an_ipv6_underlay() {
    const TEST: &str = "gre_overlay_over_an_ipv6_underlay";
    let Some(mut c) = cluster_over("vg-v6", 33, 2, true).await else {
        return;
    };
    let Some(net) = or_skip(
        TEST,
        c.hosts[0]
            .host
            .create_network(
                gre("ov", "10.210.3.0/24")
                    .ipv6(true)
                    .subnet("fd00:210:3::/64".parse().unwrap()),
            )
            .await,
    ) else {
        return;
    };
    let vni = vni_of(&net);
    assert_eq!(net.mtu, 1438, "underlay 1500 − 62");
    let a_ns = c.container("a").await;
    let b_ns = c.container("b").await;
    let a = c.hosts[0]
        .host
        .attach("ov", Endpoint::new("a", a_ns.clone()))
        .await
        .unwrap();
    let b = c.hosts[1]
        .host
        .attach("ov", Endpoint::new("b", b_ns.clone()))
        .await
        .unwrap();
    for (i, h) in c.hosts.iter().enumerate() {
        let want = ports_to(vni, &[c.hosts[1 - i].vtep]);
        wait_for("ip6gretap ports", Duration::from_secs(10), async || {
            gre_ports(h, vni).await == want
        })
        .await;
        let d = ip(
            &ns_name(&c.sb, &h.name),
            &["-d", "link", "show", "dev", &want[0]],
        );
        assert!(d.contains("ip6gretap"), "{d}");
        assert!(d.contains("encaplimit none"), "{d}");
        assert!(
            d.contains(&format!("remote {}", c.hosts[1 - i].vtep)),
            "{d}"
        );
        assert!(d.contains("isolated on"), "{d}");
        assert!(d.contains("mtu 1438"), "{d}");
    }
    reaches_at(&b_ns, &a_ns, &format!("{}:7200", b.ip().unwrap())).await;
    reaches_at(&a_ns, &b_ns, &format!("{}:7201", a.ip().unwrap())).await;
    // The overlay is dual-stack: neighbour discovery between containers crosses the tunnel.
    reaches_at(&b_ns, &a_ns, &format!("[{}]:7202", b.ip6().unwrap())).await;
    reaches_at(&a_ns, &b_ns, &format!("[{}]:7203", a.ip6().unwrap())).await;
    full_size_crosses(&a_ns, &b_ns, b.ip().unwrap(), 1438).await;
    for (h, role) in [(0, "a"), (1, "b")] {
        c.hosts[h].host.detach("ov", role).await.unwrap();
    }
    for h in &c.hosts {
        assert!(gre_ports(h, vni).await.is_empty());
    }
    println!(
        "VM-TIER: GRE dual-stack overlay over an IPv6 underlay (ip6gretap, MTU 1438) proven on kernel {}",
        kernel()
    );
    drop(c);
}
