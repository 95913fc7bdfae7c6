//! Legacy links on a network with ICC off, in the kernel: a linked container reaches exactly the
//! exposed ports of the one it links to and gets the answers; nothing else passes between any two
//! containers. The firewall is driven directly with the `NetworkRules`/`EndpointRules` Host
//! passes (Host's own link bookkeeping is not part of this test), over containers attached
//! through `Host`.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use berth::firewall::{EndpointRules, LinkRule, NetworkRules};
use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Endpoint, Firewall, Host, Network, NftFirewall, Port, Protocol};
use common::*;

/// The firewall facts of network `name`, as Host builds them.
async fn network_rules(host: &Host, name: &str) -> NetworkRules {
    let net = host.network(name).await.unwrap();
    NetworkRules {
        name: net.name.clone(),
        bridge: net.device.clone().unwrap(),
        subnets: net.subnets.iter().map(|s| s.subnet).collect(),
        masquerade: true,
        internal: false,
        allow_direct_access: false,
        outbound_ipv4: None,
        icc: net.icc(),
        anti_spoofing: false,
        encrypted: None,
    }
}

fn tcp(from: &str, to: &str, port: u16) -> LinkRule {
    LinkRule {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        proto: Protocol::Tcp,
        port,
    }
}

/// What Host passes for an endpoint without published ports that has `links`.
fn endpoint(ip: &str, links: Vec<LinkRule>) -> EndpointRules {
    EndpointRules {
        ip: ip.parse().unwrap(),
        ip6: None,
        ports: vec![],
        links,
        guard: None,
    }
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

fn unspecified(ip: &str, port: u16) -> SocketAddr {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(_) => sa(&format!("0.0.0.0:{port}")),
        IpAddr::V6(_) => sa(&format!("[::]:{port}")),
    }
}

/// Every probe (server netns, server address, client netns, port, what) must fail; they run
/// together (a blocked one waits for the probe timeout).
async fn all_blocked(probes: &[(&berth::Netns, &str, &berth::Netns, u16, &str)]) {
    let results = futures::future::join_all(
        probes
            .iter()
            .map(|(s, ip, c, port, _)| tcp_probe(s, unspecified(ip, *port), c, addr(ip, *port))),
    )
    .await;
    for (r, p) in results.iter().zip(probes) {
        assert!(r.is_err(), "{} must be blocked", p.4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_container_reaches_only_the_exposed_ports_of_the_one_it_links_to() {
    let Some((mut sb, outside, host)) = setup("bt-links").await else {
        return;
    };
    let fw = NftFirewall::new(sb.host().clone());
    let (x, y, z) = (
        sb.netns("x").await.unwrap(),
        sb.netns("y").await.unwrap(),
        sb.netns("z").await.unwrap(),
    );
    let net = network(
        &host,
        Network::bridge("noicc")
            .subnet("10.81.0.0/24".parse().unwrap())
            .ipv6(true)
            .subnet("fd00:81::/64".parse().unwrap())
            .icc(false),
    )
    .await;
    join(&host, &net, Endpoint::new("x", x.clone())).await;
    join(
        &host,
        &net,
        Endpoint::new("y", y.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await;
    join(&host, &net, Endpoint::new("z", z.clone())).await;
    let (xa, ya, za) = ("10.81.0.2", "10.81.0.3", "10.81.0.4");
    let (xa6, ya6) = ("fd00:81::2", "fd00:81::3");
    let n = network_rules(&host, "noicc").await;
    assert!(!n.icc);

    // No link yet: ICC off as always.
    all_blocked(&[(&y, ya, &x, 80, "x -> y:80 before the link")]).await;

    // x --link y, y exposing 80/tcp (both families): x's endpoint rules carry the flows.
    let mut ex = endpoint(xa, vec![tcp(xa, ya, 80), tcp(xa6, ya6, 80)]);
    ex.ip6 = Some(xa6.parse().unwrap());
    fw.add_endpoint(&n, &ex).await.unwrap();
    tcp_probe(&y, unspecified(ya, 80), &x, addr(ya, 80))
        .await
        .expect("x -> y:80 (linked, exposed)");
    tcp_probe(&y, unspecified(ya6, 80), &x, addr(ya6, 80))
        .await
        .expect("x -> [y]:80 over IPv6 (neighbour discovery passes)");
    all_blocked(&[
        (&y, ya, &x, 81, "x -> y:81 (not exposed)"),
        (&x, xa, &y, 80, "y -> x:80 (the link is one way)"),
        (&x, xa6, &y, 7000, "y -> [x]:7000"),
        (&y, ya6, &z, 80, "z -> [y]:80 (not linked)"),
        (&z, za, &y, 7001, "y -> z:7001"),
    ])
    .await;
    // Separate round: y and x listen on 80 above.
    all_blocked(&[
        (&y, ya, &z, 80, "z -> y:80 (not linked)"),
        (&x, xa, &z, 80, "z -> x:80"),
    ])
    .await;
    // The gateway still answers every container (traffic to the bridge is not between ports),
    // and y's published port answers outside.
    tcp_probe(sb.host(), sa("10.81.0.1:7002"), &z, sa("10.81.0.1:7002"))
        .await
        .expect("z -> gateway");
    tcp_probe(
        &y,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await
    .expect("outside -> y's published port");

    // y detaches (or gets a new address): the flows towards it go, in one transaction;
    // removing them again is no error.
    let gone = [tcp(xa, ya, 80), tcp(xa6, ya6, 80)];
    fw.replace_links(&n, &gone, &[]).await.unwrap();
    fw.replace_links(&n, &gone, &[]).await.unwrap();
    all_blocked(&[(&y, ya, &x, 80, "x -> y:80 after the link is removed")]).await;
    // Re-attached with the same address: back in the same call shape.
    fw.replace_links(&n, &[], &gone[..1]).await.unwrap();
    tcp_probe(&y, unspecified(ya, 80), &x, addr(ya, 80))
        .await
        .expect("x -> y:80 again");
    // Removing and adding in one call (an address change: here the same address).
    fw.replace_links(&n, &gone[..1], &gone[..1]).await.unwrap();
    tcp_probe(&y, unspecified(ya, 80), &x, addr(ya, 80))
        .await
        .expect("x -> y:80 after remove+add in one transaction");

    ex.links = gone[..1].to_vec();
    fw.remove_endpoint(&n, &ex).await.unwrap();
    fw.remove_endpoint(&n, &ex).await.unwrap();
    all_blocked(&[(
        &y,
        ya,
        &x,
        80,
        "x -> y:80 after x's endpoint rules are removed",
    )])
    .await;
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&net).await.unwrap();
}

fn set_len(sb: &Sandbox, name: &str) -> usize {
    nft_objects(sb, "set")
        .iter()
        .find(|m| m["family"] == "bridge" && m["name"] == name)
        .map(|m| {
            m.get("elem")
                .and_then(|e| e.as_array())
                .map_or(0, |a| a.len())
        })
        .unwrap_or(0)
}

fn bridge_table(sb: &Sandbox) -> bool {
    nft_objects(sb, "table")
        .iter()
        .any(|t| t["family"] == "bridge" && t["name"] == "berth")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_elements_are_flat_checked_restored_and_collected() {
    let Some((mut sb, _outside, host)) = setup("bt-linkfw").await else {
        return;
    };
    let fw = NftFirewall::new(sb.host().clone());
    let (x, y, z) = (
        sb.netns("x").await.unwrap(),
        sb.netns("y").await.unwrap(),
        sb.netns("z").await.unwrap(),
    );
    // A network with ICC on makes no bridge table (nothing hooks bridged traffic).
    let on = network(
        &host,
        Network::bridge("on").subnet("10.82.0.0/24".parse().unwrap()),
    )
    .await;
    assert!(!bridge_table(&sb));
    let net = network(
        &host,
        Network::bridge("noicc")
            .subnet("10.81.0.0/24".parse().unwrap())
            .icc(false),
    )
    .await;
    assert!(bridge_table(&sb));
    for (c, ns) in [("x", &x), ("y", &y), ("z", &z)] {
        join(&host, &net, Endpoint::new(c, ns.clone())).await;
    }
    let (xa, ya) = ("10.81.0.2", "10.81.0.3");
    let n = network_rules(&host, "noicc").await;
    let nets = [network_rules(&host, "on").await, n.clone()];
    let link = tcp(xa, ya, 80);
    let eps = [endpoint(xa, vec![link])];
    fw.add_endpoint(&n, &eps[0]).await.unwrap();
    assert_eq!(fw.check(&nets, &eps).await.unwrap(), Vec::<String>::new());
    assert_eq!(host.check_firewall().await.unwrap(), Vec::<String>::new());

    // Shape: rules do not grow with links; elements do. Each add is timed.
    let rules = rule_count(&sb);
    let mut timings = Vec::new();
    for batch in 0..5u16 {
        let links: Vec<LinkRule> = (0..200)
            .map(|i| tcp("10.81.0.4", ya, 1000 + batch * 200 + i))
            .collect();
        let t = Instant::now();
        fw.replace_links(&n, &[], &links).await.unwrap();
        timings.push((set_len(&sb, "links4"), t.elapsed()));
        assert_eq!(
            rule_count(&sb),
            rules,
            "rule count must not grow with links"
        );
    }
    let t = Instant::now();
    fw.replace_links(&n, &[], &[tcp("10.81.0.4", xa, 9)])
        .await
        .unwrap();
    let one = t.elapsed();
    eprintln!(
        "links4 elements after each 200-link call, and its time: {timings:?}; one more link at 1,002: {one:?}"
    );
    assert_eq!(set_len(&sb, "links4"), 1002);
    let extra: Vec<LinkRule> = (0..1000)
        .map(|i| tcp("10.81.0.4", ya, 1000 + i))
        .chain([tcp("10.81.0.4", xa, 9)])
        .collect();
    fw.replace_links(&n, &extra, &[]).await.unwrap();
    assert_eq!(set_len(&sb, "links4"), 1);

    // Someone deletes the link element: check names it; replace_links puts it back.
    nft(
        &sb,
        "delete element bridge berth links4 { 10.81.0.2 . 10.81.0.3 . tcp . 80 }",
    );
    assert_eq!(
        fw.check(&nets, &eps).await.unwrap(),
        vec!["link 10.81.0.2 -> 10.81.0.3:80/tcp".to_string()]
    );
    all_blocked(&[(&y, ya, &x, 80, "x -> y:80 without its element")]).await;
    fw.replace_links(&n, &[], &[link]).await.unwrap();
    assert_eq!(fw.check(&nets, &eps).await.unwrap(), Vec::<String>::new());

    // An admin's save and restore keeps it working.
    let saved = nft_save_restore(&sb);
    assert!(
        saved.contains("10.81.0.2 . 10.81.0.3 . tcp . 80"),
        "link elements are readable:\n{saved}"
    );
    assert_eq!(fw.check(&nets, &eps).await.unwrap(), Vec::<String>::new());
    tcp_probe(&y, unspecified(ya, 80), &x, addr(ya, 80))
        .await
        .expect("x -> y:80 after save/restore");
    all_blocked(&[(&y, ya, &z, 80, "z -> y:80 after save/restore")]).await;

    // Someone flushes the ruleset: check lists the bridge table; reapply restores link traffic
    // and ICC off.
    nft(&sb, "flush ruleset");
    let missing = fw.check(&nets, &eps).await.unwrap();
    assert!(
        missing.contains(&"table bridge berth".to_string()),
        "{missing:?}"
    );
    assert!(
        missing.contains(&"link 10.81.0.2 -> 10.81.0.3:80/tcp".to_string()),
        "{missing:?}"
    );
    fw.replace_links(&n, &[link], &[])
        .await
        .expect("removing from a missing table is no error");
    fw.reapply(&nets, &eps).await.unwrap();
    assert_eq!(fw.check(&nets, &eps).await.unwrap(), Vec::<String>::new());
    assert_eq!(rule_count(&sb), rules);
    tcp_probe(&y, unspecified(ya, 80), &x, addr(ya, 80))
        .await
        .expect("x -> y:80 after reapply");
    all_blocked(&[
        (&y, ya, &z, 80, "z -> y:80 after reapply"),
        (&x, xa, &y, 7000, "y -> x:7000 after reapply"),
    ])
    .await;

    // The network goes: gc drops the bridge table once no network has ICC off.
    for c in ["x", "y", "z"] {
        host.detach(&net, c).await.unwrap();
    }
    host.delete_network(&net).await.unwrap();
    assert!(bridge_table(&sb), "kept until gc");
    host.gc::<&str>(&[]).await.unwrap();
    assert!(!bridge_table(&sb));
    assert_eq!(host.check_firewall().await.unwrap(), Vec::<String>::new());
    host.delete_network(&on).await.unwrap();
}
