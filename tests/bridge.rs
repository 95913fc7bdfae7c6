//! Bridge networks end to end, proven by traffic between sandbox namespaces.

mod common;

use berth::sandbox::{tcp_probe, udp_probe};
use berth::{Endpoint, Network, Port};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_network_end_to_end() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-e2e").await;
    let host = host(&sb).await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();

    let net = host
        .create_network(Network::bridge("web").subnet("10.88.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let bridge = net.device.clone().unwrap();
    assert!(link_names(sb.host()).await.contains(&bridge));

    let a1 = host
        .attach(
            &net,
            Endpoint::new("c1", c1.clone())
                .publish(Port::tcp(8080).to(80))
                .publish(Port::udp(5353).to(53)),
        )
        .await
        .unwrap();
    let a2 = host
        .attach(&net, Endpoint::new("c2", c2.clone()).ifname("net0"))
        .await
        .unwrap();
    assert_eq!(a1.ipv4.unwrap().to_string(), "10.88.0.2/24");
    assert_eq!(a2.ipv4.unwrap().to_string(), "10.88.0.3/24");
    assert_eq!(a1.gateway.unwrap().to_string(), "10.88.0.1");
    assert!(link_names(&c2).await.contains(&"net0".to_string()));

    // container <-> container, both ways
    let seen = assert_reaches(&c2, sa("10.88.0.3:7000"), &c1, sa("10.88.0.3:7000")).await;
    assert_eq!(seen.ip().to_string(), "10.88.0.2");
    let seen = assert_reaches(&c1, sa("10.88.0.2:7000"), &c2, sa("10.88.0.2:7000")).await;
    assert_eq!(seen.ip().to_string(), "10.88.0.3");
    // container -> gateway (a listener in the host netns on the bridge address)
    assert_reaches(sb.host(), sa("10.88.0.1:7001"), &c1, sa("10.88.0.1:7001")).await;
    // container -> outside: masqueraded to the host's outside address
    let seen = assert_reaches(
        &outside,
        sa("0.0.0.0:7002"),
        &c1,
        sa(&format!("{OUTSIDE}:7002")),
    )
    .await;
    assert_eq!(seen.ip().to_string(), HOST_UP, "egress must be masqueraded");
    // outside -> published ports (TCP and UDP)
    let seen = assert_reaches(
        &c1,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
    assert_eq!(
        seen.ip().to_string(),
        OUTSIDE,
        "published traffic keeps its source"
    );
    udp_probe(
        &c1,
        sa("0.0.0.0:53"),
        &outside,
        sa(&format!("{HOST_UP}:5353")),
    )
    .await
    .unwrap();
    // host netns -> published port on the host's own address
    assert_reaches(
        &c1,
        sa("0.0.0.0:80"),
        sb.host(),
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
    // an unpublished port is not forwarded
    assert!(
        tcp_probe(
            &c1,
            sa("0.0.0.0:81"),
            &outside,
            sa(&format!("{HOST_UP}:8081"))
        )
        .await
        .is_err()
    );

    // The ruleset is O(networks): ports are map elements.
    assert_eq!(map_len(&sb, "pm4_any"), 2);
    let rules = rule_count(&sb);

    // Detach c1: veth, allocation, map elements and record are gone; the port is closed.
    host.detach(&net, "c1").await.unwrap();
    assert!(
        !link_names(sb.host())
            .await
            .contains(a1.host_ifname.as_ref().unwrap())
    );
    assert_eq!(link_names(&c1).await, vec!["lo".to_string()]);
    assert_eq!(map_len(&sb, "pm4_any"), 0);
    assert_eq!(rule_count(&sb), rules);
    let pool = berth::FileIpam::new(sb.state_dir().join("ipam"));
    let allocs = berth::Ipam::pool(&pool, "web")
        .await
        .unwrap()
        .unwrap()
        .allocations();
    assert_eq!(allocs.values().collect::<Vec<_>>(), vec!["c2"]);
    assert!(
        host.endpoints(&net)
            .await
            .unwrap()
            .iter()
            .all(|a| a.container != "c1")
    );
    assert!(
        tcp_probe(
            &c1,
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:8080"))
        )
        .await
        .is_err()
    );
    // detach is idempotent
    host.detach(&net, "c1").await.unwrap();

    // Deleting a network with endpoints is refused, naming them.
    let e = host.delete_network(&net).await.unwrap_err();
    assert!(
        matches!(&e, berth::Error::NetworkInUse { endpoints, .. } if endpoints == &["c2"]),
        "{e}"
    );

    host.detach(&net, "c2").await.unwrap();
    host.delete_network(&net).await.unwrap();
    assert!(!link_names(sb.host()).await.contains(&bridge));
    assert!(!chain_names(&sb).iter().any(|c| c.starts_with("nw-")));
    assert_eq!(map_len(&sb, "post_by_iif"), 0);
    assert!(host.networks().await.unwrap().is_empty());
    assert!(!sb.state_dir().join("ipam/web.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_network_gives_only_loopback() {
    if !require_root() {
        return;
    }
    let mut sb = berth::sandbox::Sandbox::new("bt-none").await.unwrap();
    let host = host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    host.create_network(Network::none("isolated"))
        .await
        .unwrap();
    let att = host
        .attach("isolated", Endpoint::new("c", c.clone()))
        .await
        .unwrap();
    assert!(att.ipv4.is_none());
    assert_eq!(link_names(&c).await, vec!["lo".to_string()]);
    // lo is up: a loopback connection works
    assert_reaches(&c, sa("127.0.0.1:9000"), &c, sa("127.0.0.1:9000")).await;
    let e = host
        .attach(
            "isolated",
            Endpoint::new("d", c).publish(Port::tcp(80).to(80)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, berth::Error::DriverUnsupported { .. }), "{e}");
    host.detach("isolated", "c").await.unwrap();
    host.delete_network("isolated").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtu_is_explicit_or_taken_from_the_default_route_link() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-mtu").await;
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .arg("-n")
            .arg(sb.host_name())
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    ip(&["link", "set", "uplink", "mtu", "1400"]);
    ip(&["route", "add", "default", "via", OUTSIDE]);
    let host = host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    let nl = berth::netlink::Netlink::open(&c).await.unwrap();

    let net = host
        .create_network(Network::bridge("a").subnet("10.88.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(net.mtu, 1400, "from the default-route link");
    host.attach(&net, Endpoint::new("c", c.clone()))
        .await
        .unwrap();
    assert_eq!(nl.require_link("eth0").await.unwrap().mtu, Some(1400));
    host.detach(&net, "c").await.unwrap();

    let net2 = host
        .create_network(
            Network::bridge("b")
                .subnet("10.89.0.0/24".parse().unwrap())
                .mtu(1300)
                .bridge_name("br-b"),
        )
        .await
        .unwrap();
    assert_eq!(net2.mtu, 1300);
    assert_eq!(net2.device.as_deref(), Some("br-b"));
    host.attach(&net2, Endpoint::new("c", c.clone()).ifname("e1"))
        .await
        .unwrap();
    assert_eq!(nl.require_link("e1").await.unwrap().mtu, Some(1300));
    let br = berth::netlink::Netlink::open(sb.host())
        .await
        .unwrap()
        .require_link("br-b")
        .await
        .unwrap();
    assert_eq!(br.mtu, Some(1300));
    host.detach(&net2, "c").await.unwrap();
    host.delete_network(&net).await.unwrap();
    host.delete_network(&net2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_on_two_networks_keeps_one_default_route_and_reaches_both() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-two").await;
    let host = host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    let p1 = sb.netns("p1").await.unwrap();
    let p2 = sb.netns("p2").await.unwrap();
    let a = host
        .create_network(Network::bridge("a").subnet("10.60.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let b = host
        .create_network(Network::bridge("b").subnet("10.61.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    host.attach(&a, Endpoint::new("c", c.clone()))
        .await
        .unwrap();
    // The interface name is taken: the error names it, and nothing is left behind.
    let e = host
        .attach(&b, Endpoint::new("c", c.clone()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("eth0") && e.errno() == Some(libc::EEXIST),
        "{e}"
    );
    assert_eq!(
        link_names(&c).await,
        vec!["eth0".to_string(), "lo".to_string()]
    );
    host.attach(&b, Endpoint::new("c", c.clone()).ifname("eth1"))
        .await
        .unwrap();
    let ip1 = host
        .attach(&a, Endpoint::new("p1", p1.clone()))
        .await
        .unwrap()
        .ip()
        .unwrap();
    let ip2 = host
        .attach(&b, Endpoint::new("p2", p2.clone()))
        .await
        .unwrap()
        .ip()
        .unwrap();
    let to = |ip| std::net::SocketAddr::new(ip, 7000);
    assert_reaches(&p1, to(ip1), &c, to(ip1)).await;
    assert_reaches(&p2, to(ip2), &c, to(ip2)).await;
    let routes = std::process::Command::new("ip")
        .args([
            "-n",
            &sb.netns_path("c").file_name().unwrap().to_string_lossy(),
            "route",
            "show",
            "default",
        ])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).to_string();
    assert_eq!(routes.lines().count(), 1, "{routes}");
    assert!(
        routes.contains("via 10.60.0.1"),
        "the first network keeps the default route: {routes}"
    );
    for (n, c) in [(&a, "c"), (&b, "c"), (&a, "p1"), (&b, "p2")] {
        host.detach(n, c).await.unwrap();
    }
    host.delete_network(&a).await.unwrap();
    host.delete_network(&b).await.unwrap();
}

/// An address handed to the next container at once (as IPAM does when it wraps around, or a
/// static `--ip`) is reached at once, through its published port and from another container,
/// over IPv4 and IPv6: the host forgets the detached container's MAC with it, and the new one
/// announces its addresses. Before, neighbour entries kept the old random MAC while they
/// stayed reachable (30 s or more) and the new container was unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_address_is_reached_at_once() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-reuse").await;
    let host = host(&sb).await;
    let (a, b) = (sb.netns("a").await.unwrap(), sb.netns("b").await.unwrap());
    let net = host
        .create_network(
            Network::bridge("reuse")
                .subnet("10.46.0.0/24".parse().unwrap())
                .subnet("fd46::/64".parse().unwrap())
                .ipv6(true),
        )
        .await
        .unwrap();
    // Another container keeps the bridge's carrier up: a bridge with no port left loses it,
    // and the kernel flushes its neighbours then (which hid this with one container).
    let keeper = sb.netns("keeper").await.unwrap();
    host.attach(&net, Endpoint::new("keeper", keeper.clone()))
        .await
        .unwrap();
    let ip = "10.46.0.9".parse().unwrap();
    let published = sa(&format!("{HOST_UP}:8080"));
    let mut left = Vec::new();
    for (id, ns) in [("a", &a), ("b", &b), ("a2", &a)] {
        let att = host
            .attach(
                &net,
                Endpoint::new(id, ns.clone())
                    .ip(ip)
                    .ip6("fd46::9".parse().unwrap())
                    .publish(Port::tcp(8080).to(80)),
            )
            .await
            .unwrap();
        tcp_probe(ns, sa("0.0.0.0:80"), &outside, published)
            .await
            .unwrap_or_else(|e| panic!("{id} ({:?}) not reached on {published}: {e}", att.mac));
        tcp_probe(ns, sa("0.0.0.0:80"), &keeper, sa("10.46.0.9:80"))
            .await
            .unwrap_or_else(|e| panic!("{id} ({:?}) not reached from keeper: {e}", att.mac));
        tcp_probe(ns, sa("[::]:81"), &keeper, sa("[fd46::9]:81"))
            .await
            .unwrap_or_else(|e| panic!("{id} ({:?}) not reached from keeper (v6): {e}", att.mac));
        host.detach(&net, id).await.unwrap();
        let neigh = ip_neigh(&sb);
        left.push((id, neigh));
    }
    for (id, neigh) in left {
        assert!(
            !neigh.contains("10.46.0.9 ") && !neigh.contains("fd46::9 "),
            "the host forgot {id}'s address with it:\n{neigh}"
        );
    }
    host.detach(&net, "keeper").await.unwrap();
    host.delete_network(&net).await.unwrap();
}

/// An address handed out for the first time on a network is not announced (nobody can cache
/// a MAC for it; the gratuitous ARP would be flooded to every port for nothing), one handed out
/// again is: read back in a neighbour's ARP cache, where a planted entry for the address stays
/// after the first attach and takes the new holder's MAC after the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_reused_address_is_announced() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-ann").await;
    let host = host(&sb).await;
    let net = host
        .create_network(Network::bridge("ann").subnet("10.47.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let keeper = sb.netns("keeper").await.unwrap();
    host.attach(&net, Endpoint::new("keeper", keeper.clone()))
        .await
        .unwrap();
    let kname = sb.netns_path("keeper");
    let kname = kname.file_name().unwrap().to_str().unwrap().to_string();
    let plant = || {
        ip(
            &kname,
            &[
                "neigh",
                "replace",
                "10.47.0.20",
                "lladdr",
                "02:00:00:00:00:99",
                "dev",
                "eth0",
                "nud",
                "stale",
            ],
        );
    };
    let cached = || ip(&kname, &["neigh", "show", "10.47.0.20"]);
    let a = sb.netns("a").await.unwrap();
    plant();
    let att = host
        .attach(
            &net,
            Endpoint::new("a", a.clone()).ip("10.47.0.20".parse().unwrap()),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        cached().contains("02:00:00:00:00:99"),
        "first use: not announced: {}",
        cached()
    );
    host.detach(&net, "a").await.unwrap();
    let b = sb.netns("b").await.unwrap();
    plant();
    let att2 = host
        .attach(
            &net,
            Endpoint::new("b", b.clone()).ip("10.47.0.20".parse().unwrap()),
        )
        .await
        .unwrap();
    let mac = att2.mac.unwrap().to_string();
    let mut seen = String::new();
    for _ in 0..20 {
        seen = cached();
        if seen.contains(&mac) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        seen.contains(&mac),
        "reuse: announced ({mac}, first was {:?}): {seen}",
        att.mac
    );
    host.detach(&net, "b").await.unwrap();
    host.detach(&net, "keeper").await.unwrap();
    host.delete_network(&net).await.unwrap();
    assert!(
        !sb.state_dir().join("seen/ann").exists(),
        "the marks go with the network"
    );
}

fn ip_neigh(sb: &berth::sandbox::Sandbox) -> String {
    ip(sb.host_name(), &["neigh", "show"])
}

/// A host built `short_lived` (netctl, berth-cni) leaves the tail of a link deletion to a child
/// process: when `detach` returns, both ends are gone from their namespaces, the state lock is
/// free (the child closed its copy), and the same container attaches again at once, with the
/// same interface name, and carries traffic. The child's own answer (a kernel error relayed) is
/// covered by the unit test of `netlink::deletion`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_host_finishes_link_deletions_in_a_child() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-short").await;
    let host = berth::Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .short_lived(true)
        .build()
        .await
        .unwrap();
    let (c, peer) = (sb.netns("c").await.unwrap(), sb.netns("p").await.unwrap());
    let net = host
        .create_network(Network::bridge("short").subnet("10.47.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    host.attach(&net, Endpoint::new("p", peer.clone()))
        .await
        .unwrap();
    for round in 0..3 {
        let att = host
            .attach(
                &net,
                Endpoint::new("c", c.clone()).ip("10.47.0.9".parse().unwrap()),
            )
            .await
            .unwrap_or_else(|e| panic!("attach, round {round}: {e}"));
        reaches_at(&c, &peer, "10.47.0.9:7000").await;
        host.detach(&net, "c").await.unwrap();
        let host_end = att.host_ifname.clone().unwrap();
        assert!(
            !link_names(sb.host()).await.contains(&host_end),
            "round {round}: {host_end} still in the host netns"
        );
        assert!(
            !link_names(&c).await.contains(&"eth0".to_string()),
            "round {round}: eth0 still in the container"
        );
        let lock = std::fs::File::open(sb.state_dir().join("lock")).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        let r = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        assert_eq!(
            r, 0,
            "round {round}: the state lock is still held after detach"
        );
    }
    host.detach(&net, "p").await.unwrap();
    host.delete_network(&net).await.unwrap();
}
