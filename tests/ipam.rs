//! IPAM in the kernel: dual stack proven by traffic, automatic subnets that avoid what the host
//! netns uses, ranges and aux addresses, gc, and bad input that changes nothing.

mod common;

use std::net::IpAddr;
use std::process::Command;

use berth::ipam::AddressPool;
use berth::sandbox::tcp_probe;
use berth::{Endpoint, Error, FileIpam, Host, Ipam, MacAddr, Network};
use common::*;

/// Retries a probe for up to ~2 s (an IPv6 neighbour entry may take a moment).
async fn retry<T, F: std::future::Future<Output = std::io::Result<T>>>(
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..10 {
        if let Ok(v) = f().await {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    f().await.expect("probe failed after retries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_containers_talk_over_ipv6_and_egress_is_masqueraded() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-v6").await;
    ip(
        sb.host_name(),
        &["addr", "add", "2001:db8:1::1/64", "dev", "uplink", "nodad"],
    );
    let outside_name = sb
        .netns_path("outside")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    ip(
        &outside_name,
        &["addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad"],
    );
    let host = host(&sb).await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let net = host
        .create_network(
            Network::bridge("dual")
                .subnet("10.70.0.0/24".parse().unwrap())
                .ipv6(true)
                .subnet("fd00:70::/64".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(net.subnets.len(), 2);
    let a1 = host
        .attach(&net, Endpoint::new("c1", c1.clone()))
        .await
        .unwrap();
    let a2 = host
        .attach(
            &net,
            Endpoint::new("c2", c2.clone()).ip6("fd00:70::99".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(a1.ipv6.unwrap().to_string(), "fd00:70::2/64");
    assert_eq!(a1.gateway6.unwrap().to_string(), "fd00:70::1");
    assert_eq!(a2.ipv6.unwrap().addr().to_string(), "fd00:70::99");
    assert!(a1.ipv4.is_some() && a1.gateway.is_some());

    // IPv6 container <-> container, both ways; and IPv4 still works.
    let seen =
        retry(|| tcp_probe(&c2, sa("[fd00:70::99]:7000"), &c1, sa("[fd00:70::99]:7000"))).await;
    assert_eq!(seen.ip().to_string(), "fd00:70::2");
    retry(|| tcp_probe(&c1, sa("[fd00:70::2]:7000"), &c2, sa("[fd00:70::2]:7000"))).await;
    assert_reaches(&c1, sa("10.70.0.2:7001"), &c2, sa("10.70.0.2:7001")).await;
    // IPv6 egress is masqueraded: the outside sees the host's uplink address.
    let seen =
        retry(|| tcp_probe(&outside, sa("[::]:7002"), &c1, sa("[2001:db8:1::2]:7002"))).await;
    assert_eq!(seen.ip().to_string(), "2001:db8:1::1");
    // Both default routes exist, DAD is off on the container interface.
    let routes = Command::new("ip")
        .args([
            "-n",
            &sb.netns_path("c1").file_name().unwrap().to_string_lossy(),
            "-6",
            "route",
            "show",
            "default",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&routes.stdout).contains("via fd00:70::1"));
    let dad = c1
        .run(|| std::fs::read_to_string("/proc/sys/net/ipv6/conf/eth0/accept_dad"))
        .unwrap()
        .unwrap();
    assert_eq!(dad.trim(), "0");

    host.detach(&net, "c1").await.unwrap();
    host.detach(&net, "c2").await.unwrap();
    host.delete_network(&net).await.unwrap();
    assert!(!chain_names(&sb).iter().any(|c| c.starts_with("nw-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_subnets_avoid_host_addresses_routes_nameservers_and_other_networks() {
    if !require_root() {
        return;
    }
    let (sb, _outside) = sandbox("bt-pool").await;
    ip(
        sb.host_name(),
        &["addr", "add", "172.17.0.5/16", "dev", "uplink"],
    );
    ip(
        sb.host_name(),
        &["route", "add", "172.18.0.0/16", "dev", "uplink"],
    );
    let resolv = sb.state_dir().join("resolv.conf");
    std::fs::write(
        &resolv,
        "search example\nnameserver 172.19.0.53\nnameserver ::1\n",
    )
    .unwrap();
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .resolv_conf(&resolv)
        .build()
        .await
        .unwrap();
    let a = host.create_network(Network::bridge("a")).await.unwrap();
    assert_eq!(a.subnets[0].subnet.to_string(), "172.20.0.0/16");
    assert_eq!(a.subnets[0].gateway.to_string(), "172.20.0.1");
    let b = host
        .create_network(Network::bridge("b").ipv6(true))
        .await
        .unwrap();
    assert_eq!(b.subnets[0].subnet.to_string(), "172.21.0.0/16");
    let v6 = b.subnets[1].subnet;
    assert!(
        v6.to_string().starts_with("fd") && v6.prefix_len() == 64,
        "{v6}"
    );
    let c = host
        .create_network(Network::bridge("c").ipv6(true))
        .await
        .unwrap();
    assert_ne!(
        c.subnets[1].subnet, v6,
        "two networks never share a ULA /64"
    );
    // An explicit subnet overlapping another network is refused, naming it.
    let e = host
        .create_network(Network::bridge("d").subnet("172.20.1.0/24".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::SubnetOverlap { network, .. } if network == "a"),
        "{e}"
    );
    for n in ["a", "b", "c"] {
        host.delete_network(n).await.unwrap();
    }

    // Exhausted pools give a clear error and change nothing.
    let small = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .resolv_conf(&resolv)
        .address_pools(vec![AddressPool {
            base: "172.17.0.0/16".parse().unwrap(),
            size: 17,
        }])
        .build()
        .await
        .unwrap();
    let e = small
        .create_network(Network::bridge("x"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoFreeSubnet { ipv6: false, .. }), "{e}");
    assert!(small.networks().await.unwrap().is_empty());
    assert_eq!(
        link_names(sb.host()).await,
        vec!["lo".to_string(), "uplink".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_range_aux_addresses_and_derived_macs() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-range").await;
    let host = host(&sb).await;
    let net = host
        .create_network(
            Network::bridge("r")
                .subnet("10.71.0.0/16".parse().unwrap())
                .ip_range("10.71.5.0/24".parse().unwrap())
                .aux_address("router", "10.71.5.0".parse().unwrap())
                .aux_address("printer", "10.71.5.1".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(net.subnets[0].ip_range.unwrap().to_string(), "10.71.5.0/24");
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let a1 = host
        .attach(&net, Endpoint::new("c1", c1.clone()).mac_from_ipv4(true))
        .await
        .unwrap();
    // The range's own first address is a host address of the /16 (as in Docker); here it and
    // the next one are aux addresses, so allocation starts after them.
    assert_eq!(
        a1.ipv4.unwrap().to_string(),
        "10.71.5.2/16",
        "range start, past the aux addresses"
    );
    assert_eq!(
        a1.mac,
        Some(MacAddr::from_ipv4("10.71.5.2".parse().unwrap()))
    );
    let nl = berth::netlink::Netlink::open(&c1).await.unwrap();
    assert_eq!(
        nl.require_link("eth0").await.unwrap().mac.unwrap(),
        a1.mac.unwrap().octets().to_vec()
    );
    let e = host
        .attach(
            &net,
            Endpoint::new("c2", c2.clone()).ip("10.71.5.0".parse().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AddressReserved { .. }), "{e}");
    // Static addresses may lie outside the range (Docker's rule), and traffic flows.
    let a2 = host
        .attach(
            &net,
            Endpoint::new("c2", c2.clone()).ip("10.71.9.9".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_reaches(&c2, sa("10.71.9.9:7000"), &c1, sa("10.71.9.9:7000")).await;
    assert_eq!(a2.gateway.unwrap().to_string(), "10.71.0.1");
    host.detach(&net, "c1").await.unwrap();
    host.detach(&net, "c2").await.unwrap();
    host.delete_network(&net).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_listed_containers_and_removes_everything_else() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-gc").await;
    let host = host(&sb).await;
    let net = host
        .create_network(Network::bridge("g").subnet("10.72.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let mut ns = Vec::new();
    for (i, c) in ["a", "b", "c"].iter().enumerate() {
        let n = sb.netns(c).await.unwrap();
        let port = berth::Port::tcp(8080 + i as u16).to(80);
        host.attach(&net, Endpoint::new(*c, n.clone()).publish(port))
            .await
            .unwrap();
        ns.push(n);
    }
    // What a process killed mid-attach leaves: an allocation, a veth on the bridge and a port
    // element, but no record.
    let ipam = FileIpam::new(sb.state_dir().join("ipam"));
    ipam.allocate("g", "ghost", Default::default())
        .await
        .unwrap();
    let ghost_ns = sb.netns("ghost").await.unwrap();
    let nl = berth::netlink::Netlink::open(sb.host()).await.unwrap();
    let bridge = nl
        .require_link(net.device.as_deref().unwrap())
        .await
        .unwrap();
    nl.link()
        .veth("vethghost")
        .master(bridge.index)
        .mtu(1500)
        .group(berth::link_marks::PORT)
        .peer(berth::netlink::VethPeer {
            name: "eth0",
            mac: MacAddr::random(),
            netns: &ghost_ns,
        })
        .add()
        .await
        .unwrap();
    let fw = berth::NftFirewall::new(sb.host().clone());
    let rules = berth::firewall::NetworkRules {
        name: "g".into(),
        bridge: bridge.name.clone(),
        subnets: vec![],
        masquerade: true,
        internal: false,
        allow_direct_access: false,
        outbound_ipv4: None,
        icc: true,
        anti_spoofing: false,
        encrypted: None,
    };
    let ghost_port = berth::firewall::EndpointRules {
        ip: "10.72.0.99".parse().unwrap(),
        ip6: None,
        ports: vec![berth::Port::tcp(9999).to(80)],
        links: vec![],
        guard: None,
    };
    berth::Firewall::add_endpoint(&fw, &rules, &ghost_port)
        .await
        .unwrap();
    assert_eq!(map_len(&sb, "pm4_any"), 4);

    let report = host.gc(&["a"]).await.unwrap();
    let mut detached: Vec<_> = report.detached.iter().map(|(_, c)| c.as_str()).collect();
    detached.sort();
    assert_eq!(detached, vec!["b", "c"]);
    assert_eq!(
        report
            .released
            .iter()
            .map(|r| r.container.as_str())
            .collect::<Vec<_>>(),
        vec!["ghost"]
    );
    assert_eq!(report.links_removed, vec!["vethghost".to_string()]);
    // Exactly the live set remains: one record, one allocation, one veth, one port element.
    let eps = host.endpoints(&net).await.unwrap();
    assert_eq!(
        eps.iter().map(|a| a.container.as_str()).collect::<Vec<_>>(),
        vec!["a"]
    );
    let allocs = ipam.pool("g").await.unwrap().unwrap().allocations();
    assert_eq!(allocs.values().collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(allocs.keys().next().copied(), eps[0].ip());
    let veths: Vec<String> = link_names(sb.host())
        .await
        .into_iter()
        .filter(|l| l.starts_with("veth"))
        .collect();
    assert_eq!(veths, vec![eps[0].host_ifname.clone().unwrap()]);
    assert_eq!(map_len(&sb, "pm4_any"), 1);
    assert_reaches(
        &ns[0],
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
    assert!(
        tcp_probe(
            &ns[1],
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:8081"))
        )
        .await
        .is_err()
    );
    // gc is idempotent.
    assert_eq!(host.gc(&["a"]).await.unwrap(), Default::default());
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&net).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ipam_input_gets_typed_errors_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("bt-ipambad").await;
    let host = host(&sb).await;
    let net = host
        .create_network(
            Network::bridge("n")
                .subnet("10.73.0.0/24".parse().unwrap())
                .ip_range("10.73.0.8/30".parse().unwrap()),
        )
        .await
        .unwrap();
    let mut nss = Vec::new();
    for i in 0..5 {
        nss.push(sb.netns(&format!("c{i}")).await.unwrap());
    }
    let before_nets = host.networks().await.unwrap();
    let spec = |s: &str| Network::bridge("m").subnet(s.parse().unwrap());
    let e = host
        .create_network(spec("10.74.0.0/24").gateway("10.75.0.1".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OutsideSubnet { .. }), "{e}");
    let e = host
        .create_network(spec("10.74.0.0/24").ip_range("10.75.0.0/28".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidSubnet { .. }), "{e}");
    let e = host
        .create_network(spec("10.74.0.0/24").aux_address("r", "10.75.0.1".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::OutsideSubnet { .. }), "{e}");
    let e = host
        .create_network(spec("10.73.0.128/25"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::SubnetOverlap { network, .. } if network == "n"),
        "{e}"
    );
    let e = host.create_network(spec("fd00:74::/64")).await.unwrap_err();
    assert!(
        matches!(e, Error::InvalidSubnet { .. }),
        "IPv6 without --ipv6: {e}"
    );
    assert_eq!(host.networks().await.unwrap(), before_nets);
    assert_eq!(
        link_names(sb.host()).await.len(),
        3,
        "lo, uplink, the bridge"
    );

    // The /30 range holds 4 addresses; the fifth attach is refused and leaves nothing.
    for (i, n) in nss.iter().take(4).enumerate() {
        let a = host
            .attach(&net, Endpoint::new(format!("c{i}"), n.clone()))
            .await
            .unwrap();
        assert!(
            "10.73.0.8/30"
                .parse::<ipnet::IpNet>()
                .unwrap()
                .contains(&a.ip().unwrap())
        );
    }
    let e = host
        .attach(&net, Endpoint::new("c4", nss[4].clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::PoolExhausted { .. }), "{e}");
    assert_eq!(link_names(&nss[4]).await, vec!["lo".to_string()]);
    let taken: IpAddr = "10.73.0.8".parse().unwrap();
    let IpAddr::V4(t4) = taken else {
        unreachable!()
    };
    let e = host
        .attach(&net, Endpoint::new("c4", nss[4].clone()).ip(t4))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::AddressInUse { container, .. } if container == "c0"),
        "{e}"
    );
    assert_eq!(host.endpoints(&net).await.unwrap().len(), 4);
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&net).await.unwrap();
}
