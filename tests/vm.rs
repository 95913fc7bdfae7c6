//! The VM tier: tests that need kernel features this host's kernel lacks (SCTP sockets, ipvlan,
//! 802.1q and dummy links). `cargo xtask test` runs this binary a second time inside a throwaway
//! VM with Debian's stock kernel, with the project's own harness as the cargo runner:
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="target/debug/xtask vm-run" cargo test --test vm`
//! (`xtask/src/vm.rs`).
//! On a kernel without the feature each test reports itself SKIPPED, with the reason.

mod common;

use berth::sandbox::{sctp_probe, sctp_supported};
use berth::{Endpoint, Network, PortRequest};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sctp_published_port_reaches_the_container() {
    if !require_root() {
        return;
    }
    if !sctp_supported() {
        println!(
            "SKIPPED: sctp_published_port_reaches_the_container: this kernel has no SCTP sockets (the VM tier runs it)"
        );
        return;
    }
    let (mut sb, outside) = sandbox("bt-sctp").await;
    let host = host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    let n = host
        .create_network(Network::bridge("s").subnet("10.44.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let req: PortRequest = "9999:99/sctp".parse().unwrap();
    host.attach(&n, Endpoint::new("c", c.clone()).publish_request(req))
        .await
        .unwrap();
    let seen = sctp_probe(
        &c,
        sa("0.0.0.0:99"),
        &outside,
        sa(&format!("{HOST_UP}:9999")),
    )
    .await
    .unwrap();
    assert_eq!(seen.ip().to_string(), OUTSIDE);
    // Blocked: an unpublished SCTP port, and the container address directly.
    assert!(
        sctp_probe(
            &c,
            sa("0.0.0.0:98"),
            &outside,
            sa(&format!("{HOST_UP}:9998"))
        )
        .await
        .is_err()
    );
    assert!(
        sctp_probe(&c, sa("0.0.0.0:99"), &outside, sa("10.44.0.2:99"))
            .await
            .is_err()
    );
    host.detach(&n, "c").await.unwrap();
    assert!(
        sctp_probe(
            &c,
            sa("0.0.0.0:99"),
            &outside,
            sa(&format!("{HOST_UP}:9999"))
        )
        .await
        .is_err()
    );
    host.delete_network(&n).await.unwrap();
    eprintln!(
        "VM-TIER: sctp published port proven on kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
}

use berth::sandbox::Sandbox;
use berth::{Error, IpvlanMode, Netns};

/// A segment: `lanN` in the host netns joined to `eth0` in netns `lanN` (no address on the
/// host side, the parent is a plain L2 port).
async fn segment(sb: &mut Sandbox, n: u8) -> Netns {
    sb.add_peer(
        &format!("lan{n}"),
        &format!("lan{n}"),
        format!("198.31.{n}.1/24").parse().unwrap(),
        format!("198.31.{n}.2/24").parse().unwrap(),
    )
    .await
    .unwrap()
}

/// Ok(value), or prints SKIPPED and yields None when the kernel lacks a link kind.
fn or_skip<T>(test: &str, r: berth::Result<T>) -> Option<T> {
    match r {
        Err(e @ Error::Unsupported { .. }) => {
            println!("SKIPPED: {test}: {e} (the VM tier runs it)");
            None
        }
        other => Some(other.unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipvlan_l2_and_l3_carry_traffic() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-ipv").await.unwrap();
    let lan0 = segment(&mut sb, 0).await;
    let _lan1 = segment(&mut sb, 1).await;
    let host = host(&sb).await;
    let mut c = Vec::new();
    for i in 0..4 {
        c.push(sb.netns(&format!("c{i}")).await.unwrap());
    }
    // A kernel without ipvlan refuses at create (probed there, as Docker does).
    let Some(l2) = or_skip(
        "ipvlan_l2_and_l3_carry_traffic",
        host.create_network(
            Network::ipvlan("l2")
                .parent("lan0".parse().unwrap())
                .subnet("198.31.0.0/24".parse().unwrap())
                .gateway("198.31.0.2".parse().unwrap())
                .aux_address("host", "198.31.0.1".parse().unwrap()),
        )
        .await,
    ) else {
        return;
    };
    let Some(a0) = or_skip(
        "ipvlan_l2_and_l3_carry_traffic",
        host.attach(&l2, Endpoint::new("c0", c[0].clone())).await,
    ) else {
        host.delete_network(&l2).await.unwrap();
        return;
    };
    host.attach(&l2, Endpoint::new("c1", c[1].clone()))
        .await
        .unwrap();
    assert!(a0.mac.is_none(), "ipvlan shares the parent's MAC");
    assert_reaches(&c[1], sa("198.31.0.4:7000"), &c[0], sa("198.31.0.4:7000")).await;
    let seen = assert_reaches(&lan0, sa("198.31.0.2:7001"), &c[0], sa("198.31.0.2:7001")).await;
    assert_eq!(seen.ip().to_string(), "198.31.0.3");

    let l3 = host
        .create_network(
            Network::ipvlan("l3")
                .parent("lan1".parse().unwrap())
                .ipvlan_mode(IpvlanMode::L3)
                .subnet("10.33.0.0/24".parse().unwrap()),
        )
        .await
        .unwrap();
    let a2 = host
        .attach(&l3, Endpoint::new("c2", c[2].clone()))
        .await
        .unwrap();
    host.attach(&l3, Endpoint::new("c3", c[3].clone()))
        .await
        .unwrap();
    assert!(
        a2.gateway.is_none(),
        "L3: no gateway; the device is the default route"
    );
    assert_reaches(&c[3], sa("10.33.0.3:7002"), &c[2], sa("10.33.0.3:7002")).await;
    let routes = ip(
        &sb.netns_path("c2").file_name().unwrap().to_string_lossy(),
        &["route", "show", "default"],
    );
    assert!(
        routes.contains("default dev eth0"),
        "L3: the default route is the device: {routes}"
    );
    for (n, id) in [(&l2, "c0"), (&l2, "c1"), (&l3, "c2"), (&l3, "c3")] {
        host.detach(n, id).await.unwrap();
    }
    assert_eq!(link_names(&c[0]).await, vec!["lo".to_string()]);
    host.delete_network(&l2).await.unwrap();
    host.delete_network(&l3).await.unwrap();
    println!("VM-TIER: ipvlan l2 and l3 proven");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8021q_parent_is_made_when_missing_and_removed_with_its_last_network() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-vlan").await.unwrap();
    let lan = segment(&mut sb, 0).await;
    let lan_name = sb
        .netns_path("lan0")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let host = host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    let spec = |name: &str, parent: &str, subnet: &str| {
        Network::macvlan(name)
            .parent(parent.parse().unwrap())
            .subnet(subnet.parse().unwrap())
    };
    let Some(a) = or_skip(
        "an_8021q_parent…",
        host.create_network(spec("a", "lan0.50", "198.32.0.0/24"))
            .await,
    ) else {
        return;
    };
    assert!(link_names(sb.host()).await.contains(&"lan0.50".to_string()));
    // The segment's end of VLAN 50.
    ip(
        &lan_name,
        &[
            "link", "add", "link", "eth0", "name", "eth0.50", "type", "vlan", "id", "50",
        ],
    );
    ip(
        &lan_name,
        &["addr", "add", "198.32.0.2/24", "dev", "eth0.50"],
    );
    ip(&lan_name, &["link", "set", "eth0.50", "up"]);
    let att = host
        .attach(
            &a,
            Endpoint::new("c", c.clone()).ip("198.32.0.10".parse().unwrap()),
        )
        .await
        .unwrap();
    let seen = assert_reaches(&lan, sa("198.32.0.2:7000"), &c, sa("198.32.0.2:7000")).await;
    assert_eq!(
        seen.ip(),
        att.ip().unwrap(),
        "tagged traffic crosses VLAN 50"
    );
    host.detach(&a, "c").await.unwrap();
    // A second network on the same parent keeps it alive; the last one removes it.
    let b = host
        .create_network(spec("b", "lan0.50", "198.33.0.0/24"))
        .await
        .unwrap();
    host.delete_network(&a).await.unwrap();
    assert!(
        link_names(sb.host()).await.contains(&"lan0.50".to_string()),
        "still used by b"
    );
    host.delete_network(&b).await.unwrap();
    assert!(
        !link_names(sb.host()).await.contains(&"lan0.50".to_string()),
        "berth made it, the last user removed it"
    );
    // A parent the admin made stays.
    ip(
        sb.host_name(),
        &[
            "link", "add", "link", "lan0", "name", "lan0.60", "type", "vlan", "id", "60",
        ],
    );
    let m = host
        .create_network(spec("m", "lan0.60", "198.34.0.0/24"))
        .await
        .unwrap();
    host.delete_network(&m).await.unwrap();
    assert!(
        link_names(sb.host()).await.contains(&"lan0.60".to_string()),
        "not berth's to remove"
    );
    println!("VM-TIER: 802.1q parent create/remove proven");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_without_parent_is_internal_on_a_dummy_berth_owns() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-dummy").await.unwrap();
    let host = host(&sb).await;
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let Some(n) = or_skip(
        "a_network_without_parent…",
        host.create_network(Network::macvlan("d").subnet("10.34.0.0/24".parse().unwrap()))
            .await,
    ) else {
        return;
    };
    assert!(n.internal, "no parent: internal");
    let dummy = n.device.clone().unwrap();
    assert!(dummy.starts_with("dm-") && link_names(sb.host()).await.contains(&dummy));
    let a1 = host
        .attach(&n, Endpoint::new("c1", c1.clone()))
        .await
        .unwrap();
    assert!(a1.gateway.is_none());
    host.attach(&n, Endpoint::new("c2", c2.clone()))
        .await
        .unwrap();
    assert_reaches(&c2, sa("10.34.0.3:7000"), &c1, sa("10.34.0.3:7000")).await;
    host.detach(&n, "c1").await.unwrap();
    host.detach(&n, "c2").await.unwrap();
    host.delete_network(&n).await.unwrap();
    assert!(!link_names(sb.host()).await.contains(&dummy));
    println!("VM-TIER: dummy parent proven");
}
