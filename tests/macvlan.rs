//! macvlan on this kernel, proven by traffic: the parent is one end of a veth pair whose other
//! end sits in a "lan" netns (the segment). ipvlan, 802.1q and dummy parents need kinds this
//! kernel lacks: here they must fail with a typed `Unsupported` naming the kind; `tests/vm.rs`
//! runs them for real.

mod common;

use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Endpoint, Error, MacvlanMode, Netns, Network};
use common::*;

/// A segment: `lanN` in the host netns (the parent) joined to `eth0` in netns `lanN`.
async fn segment(sb: &mut Sandbox, n: u8) -> Netns {
    sb.add_peer(
        &format!("lan{n}"),
        &format!("lan{n}"),
        format!("198.19.{n}.1/24").parse().unwrap(),
        format!("198.19.{n}.2/24").parse().unwrap(),
    )
    .await
    .unwrap()
}

/// A macvlan network on `parent`; the host's own address on the segment (.1) is reserved as an
/// aux address, as a Docker user would with `--aux-address`.
fn mv(
    name: &str,
    parent: &str,
    subnet: &str,
    gw: &str,
) -> berth::NetworkSpec<berth::MacvlanOptions> {
    let host_ip: std::net::IpAddr = subnet.replace(".0/24", ".1").parse().unwrap();
    Network::macvlan(name)
        .parent(parent.parse().unwrap())
        .subnet(subnet.parse().unwrap())
        .gateway(gw.parse().unwrap())
        .aux_address("host", host_ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn macvlan_bridge_private_and_host_shim() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-mv").await.unwrap();
    let (lan0, lan1, lan2) = (
        segment(&mut sb, 0).await,
        segment(&mut sb, 1).await,
        segment(&mut sb, 2).await,
    );
    let host = host(&sb).await;
    let mut c = Vec::new();
    for i in 0..6 {
        c.push(sb.netns(&format!("c{i}")).await.unwrap());
    }

    // Bridge mode: containers talk to each other and to the segment, with their own MACs.
    let a = host
        .create_network(mv("a", "lan0", "198.19.0.0/24", "198.19.0.2"))
        .await
        .unwrap();
    let a0 = host
        .attach(&a, Endpoint::new("c0", c[0].clone()))
        .await
        .unwrap();
    host.attach(&a, Endpoint::new("c1", c[1].clone()))
        .await
        .unwrap();
    assert_eq!(
        a0.ipv4.unwrap().to_string(),
        "198.19.0.3/24",
        "past the host (.1, aux) and the gateway (.2)"
    );
    assert_reaches(&c[1], sa("198.19.0.4:7000"), &c[0], sa("198.19.0.4:7000")).await;
    let seen = assert_reaches(&lan0, sa("198.19.0.2:7001"), &c[0], sa("198.19.0.2:7001")).await;
    assert_eq!(
        seen.ip().to_string(),
        "198.19.0.3",
        "the segment sees the container itself"
    );
    assert_reaches(&c[0], sa("0.0.0.0:7002"), &lan0, sa("198.19.0.3:7002")).await;
    // The parent's own netns cannot reach its macvlans (the well-known limitation).
    assert!(
        tcp_probe(&c[0], sa("0.0.0.0:7003"), sb.host(), sa("198.19.0.3:7003"))
            .await
            .is_err()
    );

    // Private mode: no container-to-container traffic, the segment still works.
    let p = host
        .create_network(
            mv("p", "lan1", "198.19.1.0/24", "198.19.1.2").macvlan_mode(MacvlanMode::Private),
        )
        .await
        .unwrap();
    host.attach(&p, Endpoint::new("c2", c[2].clone()))
        .await
        .unwrap();
    host.attach(&p, Endpoint::new("c3", c[3].clone()))
        .await
        .unwrap();
    assert!(
        tcp_probe(&c[3], sa("198.19.1.4:7000"), &c[2], sa("198.19.1.4:7000"))
            .await
            .is_err()
    );
    assert_reaches(&lan1, sa("198.19.1.2:7001"), &c[2], sa("198.19.1.2:7001")).await;

    // A host shim lets the host reach the containers; its address is never handed out.
    let s = host
        .create_network(
            mv("s", "lan2", "198.19.2.0/24", "198.19.2.2")
                .host_shim("198.19.2.250".parse().unwrap()),
        )
        .await
        .unwrap();
    let s4 = host
        .attach(
            &s,
            Endpoint::new("c4", c[4].clone()).ip("198.19.2.250".parse().unwrap()),
        )
        .await;
    assert!(matches!(s4, Err(Error::AddressReserved { .. })), "{s4:?}");
    let s4 = host
        .attach(&s, Endpoint::new("c4", c[4].clone()))
        .await
        .unwrap();
    let target = std::net::SocketAddr::new(s4.ip().unwrap(), 7004);
    let seen = assert_reaches(&c[4], sa("0.0.0.0:7004"), sb.host(), target).await;
    assert_eq!(seen.ip().to_string(), "198.19.2.250");
    let _ = lan2;

    // Detach removes the interface in the container; delete removes the shim, never the parent.
    for (n, id) in [(&a, "c0"), (&a, "c1"), (&p, "c2"), (&p, "c3"), (&s, "c4")] {
        host.detach(n, id).await.unwrap();
    }
    assert_eq!(link_names(&c[0]).await, vec!["lo".to_string()]);
    for n in [&a, &p, &s] {
        host.delete_network(n).await.unwrap();
    }
    let links = link_names(sb.host()).await;
    assert!(
        links.contains(&"lan0".to_string()) && !links.iter().any(|l| l.starts_with("ms-")),
        "{links:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_parents_and_missing_link_kinds_are_typed_errors() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-mverr").await.unwrap();
    let _lan = segment(&mut sb, 5).await;
    let host = host(&sb).await;
    let e = host
        .create_network(mv("x", "nosuch0", "198.19.9.0/24", "198.19.9.1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::ParentNotFound { parent } if parent == "nosuch0"),
        "{e}"
    );
    let e = host
        .create_network(mv("x", "nosuch0.7", "198.19.9.0/24", "198.19.9.1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::ParentNotFound { parent } if parent == "nosuch0"),
        "{e}"
    );
    // Kinds this kernel lacks: a clear Unsupported naming the kind, and nothing left behind.
    let kinds: [(berth::NetworkSpec, &str); 3] = [
        (
            Network::ipvlan("x")
                .parent("lan5".parse().unwrap())
                .subnet("198.19.5.0/24".parse().unwrap())
                .into(),
            "ipvlan",
        ),
        (
            Network::macvlan("x")
                .parent("lan5.50".parse().unwrap())
                .subnet("198.19.6.0/24".parse().unwrap())
                .into(),
            "vlan",
        ),
        (
            Network::macvlan("x")
                .subnet("198.19.7.0/24".parse().unwrap())
                .into(),
            "dummy",
        ),
    ];
    let c = sb.netns("c").await.unwrap();
    for (spec, kind) in kinds {
        let created = host.create_network(spec).await;
        let e = match created {
            // A kernel with the kind: creating works, so does attaching.
            Ok(n) => {
                let e = host
                    .attach(&n, Endpoint::new("c", c.clone()))
                    .await
                    .unwrap_err();
                assert_eq!(link_names(&c).await, vec!["lo".to_string()]);
                host.delete_network(&n).await.unwrap();
                e
            }
            Err(e) => e,
        };
        match &e {
            Error::Unsupported { what, .. } if what.contains(kind) => {
                println!(
                    "SKIPPED: {kind} traffic on this kernel ({e}); tests/vm.rs runs it in the VM tier"
                )
            }
            Error::Unsupported { .. } => panic!("wrong kind named: {e}"),
            _ => println!("note: this kernel has {kind}: {e:?}"),
        }
    }
    assert!(host.networks().await.unwrap().is_empty());
    assert_eq!(
        link_names(sb.host()).await,
        vec!["lan5".to_string(), "lo".to_string()]
    );
}
