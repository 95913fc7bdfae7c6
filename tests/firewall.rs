//! The nf_tables firewall in the kernel: isolation between networks, ICC off, internal networks,
//! direct-access protection and the admin's hook chain — each shown allowed and blocked by
//! traffic.

mod common;

use std::process::Command;

use berth::sandbox::tcp_probe;
use berth::{Endpoint, Error, Network, Port};
use common::*;

fn net(name: &str, subnet: &str) -> berth::NetworkSpec<berth::BridgeOptions> {
    Network::bridge(name).subnet(subnet.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_isolated_from_each_other_but_reach_the_outside() {
    let Some((mut sb, outside, host)) = setup("bt-iso").await else {
        return;
    };
    let (a1, b1) = (sb.netns("a1").await.unwrap(), sb.netns("b1").await.unwrap());
    let a = network(&host, net("a", "10.50.0.0/24")).await;
    let b = network(&host, net("b", "10.51.0.0/24")).await;
    join(&host, &a, Endpoint::new("a1", a1.clone())).await;
    join(&host, &b, Endpoint::new("b1", b1.clone())).await;
    blocked_at(&b1, &a1, "10.51.0.2:7000", "a -> b must be blocked").await;
    blocked_at(&a1, &b1, "10.50.0.2:7000", "b -> a must be blocked").await;
    for c in [&a1, &b1] {
        reaches_outside(&outside, c, 7001).await;
    }
    reaches_at(sb.host(), &a1, "10.50.0.1:7002").await;
    // Deleting a network removes its isolation element and chains; the other keeps working.
    host.detach(&b, "b1").await.unwrap();
    host.delete_network(&b).await.unwrap();
    assert_eq!(map_len(&sb, "isolate"), 1);
    assert!(!chain_names(&sb).iter().any(|c| c.starts_with("nw-b-")));
    reaches_outside(&outside, &a1, 7003).await;
    host.detach(&a, "a1").await.unwrap();
    host.delete_network(&a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icc_off_blocks_container_to_container_but_not_egress_or_published_ports() {
    let Some((mut sb, outside, host)) = setup("bt-icc").await else {
        return;
    };
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let n = network(&host, net("noicc", "10.52.0.0/24").icc(false)).await;
    join(
        &host,
        &n,
        Endpoint::new("c1", c1.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await;
    join(&host, &n, Endpoint::new("c2", c2.clone())).await;
    blocked_at(&c2, &c1, "10.52.0.3:7000", "c1 -> c2 blocked").await;
    blocked_at(&c1, &c2, "10.52.0.2:7000", "c2 -> c1 blocked").await;
    reaches_outside(&outside, &c1, 7001).await;
    reaches_published(&c1, 80, &outside, 8080).await;
    reaches_at(sb.host(), &c2, "10.52.0.1:7002").await;
    // With ICC on (the default) the same pair talks.
    let (d1, d2) = (sb.netns("d1").await.unwrap(), sb.netns("d2").await.unwrap());
    let m = network(&host, net("icc", "10.53.0.0/24")).await;
    join(&host, &m, Endpoint::new("d1", d1.clone())).await;
    join(&host, &m, Endpoint::new("d2", d2.clone())).await;
    reaches_at(&d2, &d1, "10.53.0.3:7000").await;
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&n).await.unwrap();
    host.delete_network(&m).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_networks_have_no_way_out_and_publish_nothing() {
    let Some((mut sb, outside, host)) = setup("bt-int").await else {
        return;
    };
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let n = network(&host, net("int", "10.54.0.0/24").internal(true)).await;
    let a1 = host
        .attach(&n, Endpoint::new("c1", c1.clone()))
        .await
        .unwrap();
    assert!(
        a1.gateway.is_none(),
        "no default route on an internal network"
    );
    join(&host, &n, Endpoint::new("c2", c2.clone())).await;
    reaches_at(&c2, &c1, "10.54.0.3:7000").await;
    // Even with a route out added by hand in the container, the host does not forward it.
    ip(
        &ns_name(&sb, "c1"),
        &["route", "add", "default", "via", "10.54.0.1"],
    );
    assert!(
        tcp_probe(
            &outside,
            sa("0.0.0.0:7001"),
            &c1,
            sa(&format!("{OUTSIDE}:7001"))
        )
        .await
        .is_err()
    );
    let e = host
        .attach(
            &n,
            Endpoint::new("c3", sb.netns("c3").await.unwrap()).publish(Port::tcp(8080).to(80)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::DriverUnsupported { .. } | Error::InvalidValue { .. }
        ),
        "{e}"
    );
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_hosts_reach_only_published_ports_unless_direct_access_is_allowed() {
    let Some((mut sb, outside, host)) = setup("bt-direct").await else {
        return;
    };
    let out = ns_name(&sb, "outside");
    ip(&out, &["route", "add", "10.55.0.0/24", "via", HOST_UP]);
    ip(&out, &["route", "add", "10.56.0.0/24", "via", HOST_UP]);
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let p = network(&host, net("protected", "10.55.0.0/24")).await;
    let o = network(&host, net("open", "10.56.0.0/24").allow_direct_access(true)).await;
    join(
        &host,
        &p,
        Endpoint::new("c1", c1.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await;
    join(&host, &o, Endpoint::new("c2", c2.clone())).await;
    assert_blocked(
        &c1,
        sa("0.0.0.0:81"),
        &outside,
        sa("10.55.0.2:81"),
        "unpublished: blocked",
    )
    .await;
    assert_blocked(
        &c1,
        sa("0.0.0.0:80"),
        &outside,
        sa("10.55.0.2:80"),
        "by address: blocked",
    )
    .await;
    reaches_published(&c1, 80, &outside, 8080).await;
    assert_reaches(&c2, sa("0.0.0.0:81"), &outside, sa("10.56.0.2:81")).await;
    // Direct access is from outside only: the other berth network stays isolated.
    assert!(
        tcp_probe(&c2, sa("0.0.0.0:82"), &c1, sa("10.56.0.2:82"))
            .await
            .is_err()
    );
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&p).await.unwrap();
    host.delete_network(&o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admins_hook_chain_survives_every_operation_and_is_in_force() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-user").await;
    let allowed = sb
        .add_peer(
            "allowed",
            "uplink2",
            "192.0.2.1/24".parse().unwrap(),
            "192.0.2.10/24".parse().unwrap(),
        )
        .await
        .unwrap();
    let host = host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    let d = sb.netns("d").await.unwrap();
    let n = network(&host, net("web", "10.57.0.0/24")).await;
    join(
        &host,
        &n,
        Endpoint::new("c", c.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await;
    // The DOCKER-USER use case: only 192.0.2.0/24 may reach published ports.
    nft(
        &sb,
        "add rule inet berth user-forward ct state new ip saddr != 192.0.2.0/24 ct status dnat drop",
    );
    let check = || async {
        blocked_published(&c, 80, &outside, 8080, "198.18.0.2 is refused").await;
        assert_reaches(&c, sa("0.0.0.0:80"), &allowed, sa("192.0.2.1:8080")).await;
        let rules = nft_objects(&sb, "rule");
        assert_eq!(
            rules
                .iter()
                .filter(|r| r["chain"] == "user-forward")
                .count(),
            1,
            "the admin's rule is still there"
        );
    };
    check().await;
    // Every berth operation leaves it alone.
    let m = network(&host, net("other", "10.58.0.0/24")).await;
    join(
        &host,
        &m,
        Endpoint::new("d", d.clone()).publish(Port::tcp(9090).to(90)),
    )
    .await;
    check().await;
    host.detach(&m, "d").await.unwrap();
    host.delete_network(&m).await.unwrap();
    host.gc(&["c"]).await.unwrap();
    check().await;
    host.reapply().await.unwrap();
    check().await;
    host.detach(&n, "c").await.unwrap();
    host.delete_network(&n).await.unwrap();
    assert_eq!(
        nft_objects(&sb, "rule")
            .iter()
            .filter(|r| r["chain"] == "user-forward")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapply_after_a_ruleset_flush_restores_published_ports_and_check_flags_them_before() {
    let Some((mut sb, outside, host)) = setup("bt-reapply").await else {
        return;
    };
    let c = sb.netns("c").await.unwrap();
    let n = network(&host, net("web", "10.59.0.0/24")).await;
    join(
        &host,
        &n,
        Endpoint::new("c", c.clone())
            .publish(Port::tcp(8080).to(80))
            .publish(Port::udp(5353).to(53)),
    )
    .await;
    assert_eq!(host.check_firewall().await.unwrap(), Vec::<String>::new());
    assert_eq!(host.check(&n, "c").await.unwrap(), Vec::<String>::new());
    let rules_before = rule_count(&sb);

    // Someone deletes one element: check names exactly that one.
    nft(&sb, "delete element inet berth pm4_any { tcp . 8080 }");
    let missing = host.check(&n, "c").await.unwrap();
    assert_eq!(
        missing,
        vec!["published port tcp/0.0.0.0:8080 -> 10.59.0.2:80".to_string()],
        "{missing:?}"
    );

    // Someone flushes the whole ruleset: traffic stops, check lists what is missing.
    nft(&sb, "flush ruleset");
    assert!(
        tcp_probe(
            &c,
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:8080"))
        )
        .await
        .is_err()
    );
    let missing = host.check_firewall().await.unwrap();
    assert!(
        missing.contains(&"table inet berth".to_string()),
        "{missing:?}"
    );
    assert!(
        missing.iter().any(|m| m.contains("udp/0.0.0.0:5353")),
        "{missing:?}"
    );
    assert!(!host.check(&n, "c").await.unwrap().is_empty());

    host.reapply().await.unwrap();
    assert_eq!(host.check_firewall().await.unwrap(), Vec::<String>::new());
    assert_eq!(rule_count(&sb), rules_before);
    reaches_published(&c, 80, &outside, 8080).await;
    berth::sandbox::udp_probe(
        &c,
        sa("0.0.0.0:53"),
        &outside,
        sa(&format!("{HOST_UP}:5353")),
    )
    .await
    .unwrap();
    assert_blocked(
        &c,
        sa("0.0.0.0:7000"),
        &outside,
        sa("10.59.0.2:7000"),
        "protection is back too",
    )
    .await;
    // reapply on an intact ruleset changes nothing.
    host.reapply().await.unwrap();
    assert_eq!(rule_count(&sb), rules_before);
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ports_answer_on_localhost_and_to_containers_through_the_host_address() {
    let Some((mut sb, _outside, host)) = setup("bt-hairpin").await else {
        return;
    };
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let n = network(&host, net("hp", "10.43.0.0/24")).await;
    join(
        &host,
        &n,
        Endpoint::new("c1", c1.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await;
    join(&host, &n, Endpoint::new("c2", c2.clone())).await;
    // From the host netns through 127.0.0.1 (route_localnet + masquerade).
    let seen = assert_reaches(&c1, sa("0.0.0.0:80"), sb.host(), sa("127.0.0.1:8080")).await;
    assert_eq!(
        seen.ip().to_string(),
        "10.43.0.1",
        "loopback-sourced traffic is masqueraded"
    );
    // Hairpin: another container, and the container itself, through the host's address.
    // With br_netfilter on (the default in new namespaces of this kernel) the DNATed packet is
    // bridged back and conntrack un-NATs the answer; without it the packet is routed and the
    // hairpin masquerade rule makes the answer return through the host. Either way it works.
    let br_nf = sb
        .host()
        .run(|| {
            std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
                .unwrap_or_default()
        })
        .unwrap();
    let seen = reaches_published(&c1, 80, &c2, 8080).await;
    let expected = if br_nf.trim() == "1" {
        ["10.43.0.3", "10.43.0.1"]
    } else {
        ["10.43.0.1", "10.43.0.1"]
    };
    assert!(expected.contains(&seen.ip().to_string().as_str()), "{seen}");
    reaches_published(&c1, 80, &c1, 8080).await;
    // An unpublished port stays closed on localhost.
    assert!(
        tcp_probe(&c1, sa("0.0.0.0:81"), sb.host(), sa("127.0.0.1:8081"))
            .await
            .is_err()
    );
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_can_leave_from_a_chosen_host_address_instead_of_masquerade() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-snat").await;
    let st = Command::new("ip")
        .args([
            "-n",
            sb.host_name(),
            "addr",
            "add",
            "198.18.0.3/24",
            "dev",
            "uplink",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let host = host(&sb).await;
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let a = network(
        &host,
        net("snat", "10.42.0.0/24").outbound_ipv4("198.18.0.3".parse().unwrap()),
    )
    .await;
    let b = network(&host, net("masq", "10.41.0.0/24")).await;
    join(&host, &a, Endpoint::new("c1", c1.clone())).await;
    join(&host, &b, Endpoint::new("c2", c2.clone())).await;
    let seen = reaches_outside(&outside, &c1, 7000).await;
    assert_eq!(seen.ip().to_string(), "198.18.0.3");
    let seen = reaches_outside(&outside, &c2, 7001).await;
    assert_eq!(seen.ip().to_string(), HOST_UP);
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&a).await.unwrap();
    host.delete_network(&b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_udp_flow_does_not_reach_a_new_container_with_the_old_address() {
    let Some((mut sb, outside, host)) = setup("bt-ct").await else {
        return;
    };
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let n = network(&host, net("ct", "10.39.0.0/24")).await;
    let ip: std::net::Ipv4Addr = "10.39.0.7".parse().unwrap();
    join(
        &host,
        &n,
        Endpoint::new("c1", c1.clone())
            .ip(ip)
            .publish(Port::udp(5353).to(53)),
    )
    .await;
    // One UDP "stream" from a fixed source port, as a DNS client or a game would keep.
    let client = outside
        .run(|| std::net::UdpSocket::bind("0.0.0.0:40404"))
        .unwrap()
        .unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let target = sa(&format!("{HOST_UP}:5353"));
    let s1 = c1
        .run(|| std::net::UdpSocket::bind("0.0.0.0:53"))
        .unwrap()
        .unwrap();
    s1.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    client.send_to(b"one", target).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(s1.recv(&mut buf).unwrap(), 3, "the published port works");

    // c1 goes away; c2 gets the same address but publishes nothing.
    host.detach(&n, "c1").await.unwrap();
    join(&host, &n, Endpoint::new("c2", c2.clone()).ip(ip)).await;
    let s2 = c2
        .run(|| std::net::UdpSocket::bind("0.0.0.0:53"))
        .unwrap()
        .unwrap();
    s2.set_read_timeout(Some(std::time::Duration::from_millis(1500)))
        .unwrap();
    client.send_to(b"two", target).unwrap();
    assert!(
        s2.recv(&mut buf).is_err(),
        "the old flow must not reach the new container"
    );
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_nft_save_and_restore_keeps_berths_ruleset_working() {
    let Some((mut sb, outside, host)) = setup("bt-save").await else {
        return;
    };
    let c = sb.netns("c").await.unwrap();
    let n = network(&host, net("web", "10.38.0.0/24").bridge_name("br-save")).await;
    join(
        &host,
        &n,
        Endpoint::new("c", c.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await;
    let saved = nft_save_restore(&sb);
    assert!(
        saved.contains("\"br-save\" : jump nw-web-from"),
        "interface keys are readable:\n{saved}"
    );
    assert_eq!(host.check_firewall().await.unwrap(), Vec::<String>::new());
    reaches_published(&c, 80, &outside, 8080).await;
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_the_firewall_objects_and_bridge_of_a_network_berth_no_longer_knows() {
    let Some((mut sb, outside, host)) = setup("bt-fwgc").await else {
        return;
    };
    let c = sb.netns("c").await.unwrap();
    let keep = network(&host, net("keep", "10.36.0.0/24")).await;
    join(
        &host,
        &keep,
        Endpoint::new("c", c.clone()).publish(Port::tcp(8080).to(80)),
    )
    .await;
    let lost = network(&host, net("lost", "10.35.0.0/24").bridge_name("br-lost")).await;
    // A crash lost the record (and pool) of "lost"; the kernel still holds its objects.
    std::fs::remove_file(sb.state_dir().join("networks/lost.json")).unwrap();
    assert!(chain_names(&sb).iter().any(|c| c.starts_with("nw-lost-")));
    let report = host.gc(&["c"]).await.unwrap();
    assert!(
        report.links_removed.contains(&"br-lost".to_string()),
        "{report:?}"
    );
    assert!(
        report.pools_removed.contains(&"lost".to_string()),
        "{report:?}"
    );
    assert!(!chain_names(&sb).iter().any(|c| c.starts_with("nw-lost-")));
    assert!(!link_names(sb.host()).await.contains(&"br-lost".to_string()));
    assert_eq!(map_len(&sb, "fwd_from"), 1);
    assert_eq!(host.check_firewall().await.unwrap(), Vec::<String>::new());
    reaches_published(&c, 80, &outside, 8080).await;
    let _ = lost;
    host.detach(&keep, "c").await.unwrap();
    host.delete_network(&keep).await.unwrap();
}
