//! VLAN-tagged endpoints on this kernel: what is checked before anything is made (VLAN ids,
//! drivers, published ports), a kernel without bridge VLAN filtering refused with a typed error
//! that changes nothing, and the trunk (`-o parent=IF`): enslaved with its network, carrying
//! the untagged default VLAN, kept by gc, released (not deleted) with the network. The traffic
//! proof of VLANs themselves is the VM tier's (`tests/vm_vlan.rs`); `netctl connect --vlan` and
//! `-o parent=` through the binary are here too.

mod common;

use berth::netlink::Netlink;
use berth::sandbox::Sandbox;
use berth::{Endpoint, Error, Network, Port};
use common::netctl::*;
use common::*;

/// A veth `lan0` (host netns) ↔ `eth0` (netns `lan`, up, with `addr` if given): the LAN a
/// trunk leads to.
async fn lan(sb: &mut Sandbox, addr: Option<&str>) -> berth::Netns {
    let ns = sb.netns("lan").await.unwrap();
    let name = ns_name(sb, "lan");
    ip(
        sb.host_name(),
        &[
            "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &name,
        ],
    );
    if let Some(a) = addr {
        ip(&name, &["addr", "add", a, "dev", "eth0"]);
    }
    ip(&name, &["link", "set", "eth0", "up"]);
    ns
}

/// Whether this kernel has bridge VLAN filtering (asked of bridge `name`, nothing changed).
async fn has_vlan_filtering(sb: &Sandbox, name: &str) -> bool {
    let nl = Netlink::open(sb.host()).await.unwrap();
    let br = nl.require_link(name).await.unwrap();
    nl.vlan_filtering(br.index).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_without_bridge_vlan_filtering_refuses_a_vlan_and_nothing_changes() {
    let test = "a_kernel_without_bridge_vlan_filtering_refuses_a_vlan_and_nothing_changes";
    let Some((mut sb, _outside, host)) = setup("bt-novlan").await else {
        return;
    };
    let _lan = lan(&mut sb, None).await;
    let n = network(
        &host,
        Network::bridge("v")
            .bridge_name("br-nv")
            .subnet("10.52.0.0/24".parse().unwrap())
            .trunk("lan0"),
    )
    .await;
    if has_vlan_filtering(&sb, "br-nv").await {
        println!(
            "SKIPPED: {test}: this kernel has bridge VLAN filtering (the refusal is proven where it lacks it; tests/vm_vlan.rs proves VLANs)"
        );
        return;
    }
    let u1 = sb.netns("u1").await.unwrap();
    let c = sb.netns("c").await.unwrap();
    join(&host, &n, Endpoint::new("u1", u1.clone())).await;
    let before = footprint(&sb).await;
    let e = host
        .attach(&n, Endpoint::new("c", c.clone()).vlan(10))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
    assert!(e.to_string().contains("bridge VLAN filtering"), "{e}");
    assert_eq!(footprint(&sb).await, before, "nothing changed");
    assert_eq!(link_names(&c).await, vec!["lo".to_string()]);
    assert!(host.endpoints(&n).await.unwrap().len() == 1);
    // The untagged endpoint is as it was.
    reaches_at(sb.host(), &u1, "10.52.0.1:7000").await;
    host.detach(&n, "u1").await.unwrap();
    host.delete_network(&n).await.unwrap();
    println!("proven: {test}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlan_ids_drivers_and_ports_are_checked_before_anything_is_made() {
    let Some((mut sb, _outside, host)) = setup("bt-vlanchk").await else {
        return;
    };
    let _lan = lan(&mut sb, None).await;
    let n = network(
        &host,
        Network::bridge("b").subnet("10.53.0.0/24".parse().unwrap()),
    )
    .await;
    let mv = network(
        &host,
        Network::macvlan("m")
            .parent("lan0".parse().unwrap())
            .subnet("10.54.0.0/24".parse().unwrap()),
    )
    .await;
    let c = sb.netns("c").await.unwrap();
    let before = footprint(&sb).await;
    for (id, says) in [(0u16, "2-4094"), (1, "default VLAN"), (4095, "2-4094")] {
        let e = host
            .attach(&n, Endpoint::new("c", c.clone()).vlan(id))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidValue { what: "vlan", .. }) && e.to_string().contains(says),
            "{id}: {e}"
        );
    }
    let e = host
        .attach(
            &n,
            Endpoint::new("c", c.clone())
                .vlan(10)
                .publish(Port::tcp(8080).to(80)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidValue { what: "port", .. }) && e.to_string().contains("VLAN"),
        "{e}"
    );
    let e = host
        .attach(&mv, Endpoint::new("c", c.clone()).vlan(10))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::DriverUnsupported {
                driver: "macvlan",
                what: "VLAN-tagged endpoints"
            }
        ),
        "{e:?}"
    );
    assert_eq!(footprint(&sb).await, before, "nothing made");
    assert_eq!(link_names(&c).await, vec!["lo".to_string()]);
    host.delete_network(&mv).await.unwrap();
    host.delete_network(&n).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_is_enslaved_kept_by_gc_and_released_not_deleted() {
    let Some((mut sb, _outside, host)) = setup("bt-trunk").await else {
        return;
    };
    let lan_ns = lan(&mut sb, Some("10.55.0.200/24")).await;
    let nl = Netlink::open(sb.host()).await.unwrap();
    // Refused before anything is made: a missing link, the bridge itself.
    let e = host
        .create_network(
            Network::bridge("x")
                .subnet("10.56.0.0/24".parse().unwrap())
                .trunk("nosuch0"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ParentNotFound { .. }), "{e:?}");
    let e = host
        .create_network(
            Network::bridge("x")
                .bridge_name("br-x")
                .trunk("br-x")
                .subnet("10.56.0.0/24".parse().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("parent"), "{e}");
    assert!(nl.link_by_name("br-x").await.unwrap().is_none());

    let n = network(
        &host,
        Network::bridge("t")
            .bridge_name("br-t")
            .subnet("10.55.0.0/24".parse().unwrap())
            .trunk("lan0"),
    )
    .await;
    let br = nl.require_link("br-t").await.unwrap();
    let lan0 = nl.require_link("lan0").await.unwrap();
    assert_eq!(lan0.controller, Some(br.index), "a port of the bridge");
    assert!(lan0.up);
    // Another network cannot take it.
    let e = host
        .create_network(
            Network::bridge("t2")
                .subnet("10.57.0.0/24".parse().unwrap())
                .trunk("lan0"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InterfaceInUse { network, .. } if network == "t"),
        "{e:?}"
    );
    // Untagged endpoints and the LAN behind the trunk share the default VLAN.
    let u1 = sb.netns("u1").await.unwrap();
    join(
        &host,
        &n,
        Endpoint::new("u1", u1.clone()).ip("10.55.0.11".parse().unwrap()),
    )
    .await;
    reaches_at(&lan_ns, &u1, "10.55.0.200:7000").await;
    reaches_at(&u1, &lan_ns, "10.55.0.11:7001").await;
    assert!(host.check(&n, "u1").await.unwrap().is_empty());
    // gc keeps the admin's link (a port of berth's bridge no endpoint records).
    let report = host.gc(&["u1"]).await.unwrap();
    assert!(
        !report.links_removed.contains(&"lan0".to_string()),
        "{report:?}"
    );
    assert_eq!(
        nl.require_link("lan0").await.unwrap().controller,
        Some(br.index)
    );
    // Taken off the bridge behind berth's back: check says so.
    nl.set_master(lan0.index, "lan0", None).await.unwrap();
    let missing = host.check(&n, "u1").await.unwrap();
    assert!(
        missing.iter().any(|m| m.contains("trunk lan0")),
        "{missing:?}"
    );
    nl.set_master(lan0.index, "lan0", Some(br.index))
        .await
        .unwrap();
    host.detach(&n, "u1").await.unwrap();
    host.delete_network(&n).await.unwrap();
    let lan0 = nl
        .require_link("lan0")
        .await
        .expect("released, not deleted");
    assert_eq!(lan0.controller, None);
    assert!(nl.link_by_name("br-t").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_connect_vlan_and_parent() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-ncvlan").await.unwrap();
    let _lan = lan(&mut sb, None).await;
    let _c = sb.netns("c1").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&words(
        "network create --subnet 10.58.0.0/24 -o parent=lan0 -o com.docker.network.bridge.name=br-nc v",
    ));
    let inspect = nc.json(&["network", "inspect", "v"]);
    assert_eq!(inspect["options"]["parent"], "lan0");
    for (vlan, says) in [("1", "default VLAN"), ("4095", "2-4094"), ("ten", "2-4094")] {
        let netns = sb.netns_path("c1");
        let e = nc.error(&[
            "connect",
            "--netns",
            path_str(&netns),
            "--vlan",
            vlan,
            "v",
            "c1",
        ]);
        assert!(e.contains("vlan") && e.contains(says), "{vlan}: {e}");
    }
    let netns = sb.netns_path("c1");
    let args = [
        "connect",
        "--netns",
        path_str(&netns),
        "--vlan",
        "10",
        "v",
        "c1",
    ];
    if has_vlan_filtering(&sb, "br-nc").await {
        let att = nc.json(&args);
        assert_eq!(att["vlan"], 10);
        nc.ok(&["disconnect", "v", "c1"]);
    } else {
        let e = nc.error(&args);
        assert!(e.contains("bridge VLAN filtering"), "{e}");
    }
    // A bridge-only option elsewhere is refused, naming the driver's keys.
    nc.ok(&["network", "rm", "v"]);
    assert!(
        Netlink::open(sb.host())
            .await
            .unwrap()
            .link_by_name("lan0")
            .await
            .unwrap()
            .is_some_and(|l| l.controller.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_admins_bridge_the_trunk_is_the_admins_port_and_stays() {
    let Some((mut sb, _outside, host)) = setup("bt-trunkadm").await else {
        return;
    };
    let _lan = lan(&mut sb, None).await;
    let host_ns = sb.host_name().to_string();
    ip(&host_ns, &["link", "add", "br-adm", "type", "bridge"]);
    ip(&host_ns, &["link", "set", "br-adm", "up"]);
    let spec = || {
        Network::bridge("a")
            .bridge_name("br-adm")
            .subnet("10.59.0.0/24".parse().unwrap())
            .trunk("lan0")
    };
    // Not the admin's port yet: berth does not move a link into the admin's bridge.
    let e = host.create_network(spec()).await.unwrap_err();
    assert!(e.to_string().contains("admin's bridge"), "{e}");
    ip(&host_ns, &["link", "set", "lan0", "master", "br-adm"]);
    let n = network(&host, spec()).await;
    let nl = Netlink::open(sb.host()).await.unwrap();
    let br = nl.require_link("br-adm").await.unwrap();
    let u1 = sb.netns("u1").await.unwrap();
    join(&host, &n, Endpoint::new("u1", u1.clone())).await;
    assert!(host.check(&n, "u1").await.unwrap().is_empty());
    host.detach(&n, "u1").await.unwrap();
    host.delete_network(&n).await.unwrap();
    assert_eq!(
        nl.require_link("lan0").await.unwrap().controller,
        Some(br.index),
        "the admin's bridge keeps its port"
    );
    assert!(nl.link_by_name("br-adm").await.unwrap().is_some());
}
