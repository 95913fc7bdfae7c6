//! A container on several networks, static routes, and a bridge the admin made — proven by
//! traffic between sandbox namespaces.

mod common;

use berth::sandbox::Sandbox;
use berth::{Endpoint, Network, RouteSpec};
use common::*;

fn net(name: &str, subnet: &str) -> berth::NetworkSpec<berth::BridgeOptions> {
    Network::bridge(name).subnet(subnet.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_route_follows_priority_and_moves_when_its_network_goes() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-gwp").await.unwrap();
    let host = host(&sb).await;
    let (c, p1, p2) = (
        sb.netns("c").await.unwrap(),
        sb.netns("p1").await.unwrap(),
        sb.netns("p2").await.unwrap(),
    );
    let a = host.create_network(net("a", "10.20.0.0/24")).await.unwrap();
    let b = host.create_network(net("b", "10.21.0.0/24")).await.unwrap();
    host.attach(&a, Endpoint::new("c", c.clone()))
        .await
        .unwrap();
    host.attach(
        &b,
        Endpoint::new("c", c.clone()).ifname("eth1").gw_priority(10),
    )
    .await
    .unwrap();
    let i1 = host
        .attach(&a, Endpoint::new("p1", p1.clone()))
        .await
        .unwrap()
        .ip()
        .unwrap();
    let i2 = host
        .attach(&b, Endpoint::new("p2", p2.clone()))
        .await
        .unwrap()
        .ip()
        .unwrap();
    let default = || ip(&ns_name(&sb, "c"), &["route", "show", "default"]);
    let d = default();
    assert!(
        d.contains("via 10.21.0.1 dev eth1") && d.lines().count() == 1,
        "priority 10 wins: {d}"
    );
    // Both networks reachable, both ways; replies to the second network's peer leave eth1.
    let to = |ip| std::net::SocketAddr::new(ip, 7000);
    assert_reaches(&p1, to(i1), &c, to(i1)).await;
    assert_reaches(&p2, to(i2), &c, to(i2)).await;
    let c_b: std::net::IpAddr = "10.21.0.2".parse().unwrap();
    let seen = assert_reaches(&c, to(c_b), &p2, to(c_b)).await;
    assert_eq!(seen.ip(), i2);
    let rp = c
        .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth1/rp_filter"))
        .unwrap()
        .unwrap();
    assert_eq!(rp.trim(), "2", "loose reverse-path filtering");
    // Detaching the default network moves the default route to the other one.
    host.detach(&b, "c").await.unwrap();
    let d = default();
    assert!(d.contains("via 10.20.0.1 dev eth0"), "moved to a: {d}");
    // Equal priorities: the earliest attach keeps it.
    host.attach(&b, Endpoint::new("c", c.clone()).ifname("eth1"))
        .await
        .unwrap();
    assert!(default().contains("dev eth0"), "{}", default());
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&a).await.unwrap();
    host.delete_network(&b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_route_sends_traffic_through_a_gateway_container() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-route").await.unwrap();
    let host = host(&sb).await;
    let (c, gw, z) = (
        sb.netns("c").await.unwrap(),
        sb.netns("gw").await.unwrap(),
        sb.netns("z").await.unwrap(),
    );
    let a = host.create_network(net("a", "10.22.0.0/24")).await.unwrap();
    // The far network only carries its subnet and its routes: no default route.
    let far = host
        .create_network(net("far", "10.23.0.0/24").no_default_route(true))
        .await
        .unwrap();
    let gw_a = host
        .attach(
            &a,
            Endpoint::new("gw", gw.clone()).ip("10.22.0.254".parse().unwrap()),
        )
        .await
        .unwrap();
    host.attach(
        &far,
        Endpoint::new("gw", gw.clone())
            .ifname("eth1")
            .ip("10.23.0.254".parse().unwrap()),
    )
    .await
    .unwrap();
    gw.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
        .unwrap()
        .unwrap();
    let via_gw: RouteSpec = "10.23.0.0/24,via=10.22.0.254,metric=5".parse().unwrap();
    let back: RouteSpec = "10.22.0.0/24,via=10.23.0.254".parse().unwrap();
    let ac = host
        .attach(&a, Endpoint::new("c", c.clone()).route(via_gw))
        .await
        .unwrap();
    let az = host
        .attach(&far, Endpoint::new("z", z.clone()).route(back))
        .await
        .unwrap();
    assert!(
        az.gateway.is_none(),
        "no default route from a no-default-route network"
    );
    assert_eq!(gw_a.ip().unwrap().to_string(), "10.22.0.254");
    let routes = ip(&ns_name(&sb, "c"), &["route"]);
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("10.23.0.0/24 via 10.22.0.254 dev eth0")
                && l.contains("metric 5")),
        "{routes}"
    );
    let target = std::net::SocketAddr::new(az.ip().unwrap(), 7000);
    let seen = assert_reaches(&z, target, &c, target).await;
    assert_eq!(
        seen.ip(),
        ac.ip().unwrap(),
        "routed through the gateway container, not NATed"
    );
    // Removing the endpoint removes its routes.
    host.detach(&a, "c").await.unwrap();
    assert!(!ip(&ns_name(&sb, "c"), &["route"]).contains("10.23.0.0"));
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&a).await.unwrap();
    host.delete_network(&far).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_the_admin_made_is_used_and_left_in_place() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-adopt").await.unwrap();
    let h = sb.host_name().to_string();
    ip(&h, &["link", "add", "bridge0", "type", "bridge"]);
    ip(&h, &["addr", "add", "192.168.5.1/24", "dev", "bridge0"]);
    ip(&h, &["link", "set", "bridge0", "up"]);
    let host = host(&sb).await;
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let before_rules = rule_count(&sb);
    let n = host
        .create_network(net("seed", "192.168.5.0/24").bridge_name("bridge0"))
        .await
        .unwrap();
    assert_eq!(
        n.subnets[0].gateway.to_string(),
        "192.168.5.1",
        "the bridge's address is the gateway"
    );
    let a1 = host
        .attach(&n, Endpoint::new("c1", c1.clone()))
        .await
        .unwrap();
    host.attach(&n, Endpoint::new("c2", c2.clone()))
        .await
        .unwrap();
    assert_eq!(
        (
            a1.ipv4.unwrap().to_string(),
            a1.gateway.unwrap().to_string()
        ),
        ("192.168.5.2/24".into(), "192.168.5.1".into())
    );
    assert_reaches(&c2, sa("192.168.5.3:7000"), &c1, sa("192.168.5.3:7000")).await;
    assert_reaches(
        sb.host(),
        sa("192.168.5.1:7001"),
        &c1,
        sa("192.168.5.1:7001"),
    )
    .await;
    // The admin's own port on the bridge (an unmarked veth, as the admin's NIC would be) is
    // not berth's: gc keeps it, beside the live endpoints.
    ip(
        &h,
        &[
            "link", "add", "adm0", "type", "veth", "peer", "name", "adm1",
        ],
    );
    ip(&h, &["link", "set", "adm0", "master", "bridge0"]);
    let report = host.gc(&["c1", "c2"]).await.unwrap();
    assert_eq!(report.links_removed, Vec::<String>::new());
    assert!(link_names(sb.host()).await.contains(&"adm0".to_string()));
    host.detach(&n, "c1").await.unwrap();
    host.detach(&n, "c2").await.unwrap();
    host.delete_network(&n).await.unwrap();
    // The bridge, its address and the admin's port stay; nothing berth added remains.
    let show = ip(&h, &["addr", "show", "dev", "bridge0"]);
    assert!(show.contains("192.168.5.1/24"), "{show}");
    assert!(
        !link_names(sb.host())
            .await
            .iter()
            .any(|l| l.starts_with("veth"))
    );
    assert!(ip(&h, &["link", "show", "adm0"]).contains("master bridge0"));
    ip(&h, &["link", "del", "adm0"]);
    assert!(!chain_names(&sb).iter().any(|c| c.starts_with("nw-")));
    assert_eq!(map_len(&sb, "fwd_from"), 0);
    let _ = before_rules;
    // A bridge without an address in the subnet gets the gateway added, and loses it again.
    let n = host
        .create_network(net("seed2", "10.24.0.0/24").bridge_name("bridge0"))
        .await
        .unwrap();
    assert!(ip(&h, &["addr", "show", "dev", "bridge0"]).contains("10.24.0.1/24"));
    host.delete_network(&n).await.unwrap();
    let show = ip(&h, &["addr", "show", "dev", "bridge0"]);
    assert!(
        !show.contains("10.24.0.1") && show.contains("192.168.5.1/24"),
        "{show}"
    );
}
