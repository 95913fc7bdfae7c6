//! The VM tier for VLAN-tagged endpoints on bridge networks (`EndpointSpec::vlan`, `connect
//! --vlan`, the trunk `-o parent=IF`). This machine's kernel may have no bridge VLAN filtering
//! (no `CONFIG_VLAN_8021Q`, so no `CONFIG_BRIDGE_VLAN_FILTERING`): there the test reports
//! itself SKIPPED with the reason (`tests/vlan.rs` proves the refusal changes nothing), and the
//! VM tier runs it on Debian's stock kernel:
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="target/debug/xtask vm-run" cargo test --test
//! vm_vlan -- --nocapture --test-threads=1` (`xtask/src/vm.rs`).
//!
//! The world: a bridge network with a trunk (`lan0`, one end of a veth whose other end is
//! `eth0` of an outside netns `lan`, with an 802.1q sub-interface `eth0.10` there: a LAN switch
//! port carrying VLAN 10), two containers in VLAN 10, one in VLAN 20, two without a VLAN.
//! `ip`/`bridge` run in the tests only (to build the LAN side and read the kernel back
//! independently of berth's own netlink reads).

mod common;

use berth::netlink::{Netlink, PortVlan};
use berth::sandbox::Sandbox;
use berth::{Endpoint, Error, Netns, Network};
use common::*;

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `bridge -n NS vlan show dev DEV` (iproute2's own read of the table).
fn bridge_vlans(ns: &str, dev: &str) -> String {
    let out = std::process::Command::new("bridge")
        .args(["-n", ns, "vlan", "show", "dev", dev])
        .output()
        .expect("run bridge");
    assert!(
        out.status.success(),
        "bridge vlan show: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The VLAN tables of every port of bridge `bridge` (its own table under its own name: the
/// kernel reports the bridge as its own master) and whether it filters, read back through
/// netlink.
async fn bridge_state(nl: &Netlink, bridge: &str) -> (bool, Vec<(String, Vec<PortVlan>)>) {
    let br = nl.require_link(bridge).await.unwrap();
    let on = nl.vlan_filtering(br.index).await.unwrap().unwrap().on;
    let mut ports = Vec::new();
    for t in nl.vlan_tables().await.unwrap() {
        if t.controller == Some(br.index) {
            let name = nl.link_by_index(t.index).await.unwrap().unwrap().name;
            ports.push((name, t.vlans));
        }
    }
    ports.sort();
    (on, ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlan_endpoints_are_their_own_segments_and_the_trunk_carries_them_tagged() {
    if !require_root() {
        return;
    }
    let test = "vlan_endpoints_are_their_own_segments_and_the_trunk_carries_them_tagged";
    let mut sb = Sandbox::new("bt-vlanep").await.unwrap();
    let host_ns = sb.host_name().to_string();
    // The LAN: lan0 in the host netns, eth0 in netns `lan`, VLAN 10 on eth0.10 there.
    let lan = sb.netns("lan").await.unwrap();
    let lan_name = ns_name(&sb, "lan");
    ip(
        &host_ns,
        &[
            "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &lan_name,
        ],
    );
    ip(&lan_name, &["link", "set", "eth0", "up"]);
    let host = host(&sb).await;
    let n = host
        .create_network(
            Network::bridge("v")
                .bridge_name("br-vlan")
                .subnet("10.50.0.0/24".parse().unwrap())
                .trunk("lan0"),
        )
        .await
        .unwrap();
    let nl = Netlink::open(sb.host()).await.unwrap();
    let br = nl.require_link("br-vlan").await.unwrap();
    assert_eq!(
        nl.require_link("lan0").await.unwrap().controller,
        Some(br.index),
        "the trunk is a port of the bridge"
    );
    let mut c: std::collections::BTreeMap<&str, Netns> = Default::default();
    for role in ["u1", "u2", "a10", "b10", "c20"] {
        c.insert(role, sb.netns(role).await.unwrap());
    }
    // Untagged endpoints first (filtering still off), then the VLAN ones.
    for (role, ip4) in [("u1", "10.50.0.11"), ("u2", "10.50.0.12")] {
        host.attach(
            &n,
            Endpoint::new(role, c[role].clone()).ip(ip4.parse().unwrap()),
        )
        .await
        .unwrap();
    }
    let first = host
        .attach(
            &n,
            Endpoint::new("a10", c["a10"].clone())
                .ip("10.50.0.21".parse().unwrap())
                .vlan(10),
        )
        .await;
    let a10 = match first {
        Err(e @ Error::Unsupported { .. }) => {
            println!("SKIPPED: {test}: {e} (the VM tier runs it)");
            for role in ["u1", "u2"] {
                host.detach(&n, role).await.unwrap();
            }
            host.delete_network(&n).await.unwrap();
            return;
        }
        other => other.unwrap(),
    };
    assert_eq!(a10.vlan, Some(10), "recorded");
    let b10 = host
        .attach(
            &n,
            Endpoint::new("b10", c["b10"].clone())
                .ip("10.50.0.22".parse().unwrap())
                .vlan(10),
        )
        .await
        .unwrap();
    let c20 = host
        .attach(
            &n,
            Endpoint::new("c20", c["c20"].clone())
                .ip("10.50.0.31".parse().unwrap())
                .vlan(20),
        )
        .await
        .unwrap();
    assert_eq!(host.endpoints(&n).await.unwrap().len(), 5);

    // The kernel, read back: filtering on; access ports of exactly their VLAN; the trunk
    // carries 10 and 20 tagged and the default VLAN untagged; untagged ports unchanged.
    let (on, ports) = bridge_state(&nl, "br-vlan").await;
    assert!(on, "filtering on with VLAN endpoints");
    let of = |name: &str| {
        ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} not a port: {ports:?}"))
    };
    let a10_if = a10.host_ifname.clone().unwrap();
    let b10_if = b10.host_ifname.clone().unwrap();
    let c20_if = c20.host_ifname.clone().unwrap();
    assert_eq!(of(&a10_if), vec![PortVlan::access(10)]);
    assert_eq!(of(&b10_if), vec![PortVlan::access(10)]);
    assert_eq!(of(&c20_if), vec![PortVlan::access(20)]);
    assert_eq!(
        of("lan0"),
        vec![
            PortVlan::access(1),
            PortVlan::tagged(10),
            PortVlan::tagged(20)
        ]
    );
    let u1_if = host.endpoints(&n).await.unwrap();
    let u1_if = u1_if
        .iter()
        .find(|a| a.container == "u1")
        .unwrap()
        .host_ifname
        .clone()
        .unwrap();
    assert_eq!(of(&u1_if), vec![PortVlan::access(1)]);
    // iproute2 reads the same.
    let shown = bridge_vlans(&host_ns, &a10_if);
    assert!(
        shown.contains("10 PVID Egress Untagged") && !shown.contains(" 1 PVID"),
        "{shown}"
    );
    let shown = bridge_vlans(&host_ns, "lan0");
    assert!(
        shown.contains("1 PVID Egress Untagged") && shown.contains("10") && shown.contains("20"),
        "{shown}"
    );
    assert!(host.check(&n, "a10").await.unwrap().is_empty());

    // Traffic: VLAN 10 reaches VLAN 10; VLAN 20 and untagged do not reach VLAN 10.
    reaches_at(&c["b10"], &c["a10"], "10.50.0.22:7000").await;
    reaches_at(&c["a10"], &c["b10"], "10.50.0.21:7001").await;
    blocked_at(&c["a10"], &c["c20"], "10.50.0.21:7002", "VLAN 20 → VLAN 10").await;
    blocked_at(&c["c20"], &c["a10"], "10.50.0.31:7003", "VLAN 10 → VLAN 20").await;
    blocked_at(&c["a10"], &c["u1"], "10.50.0.21:7004", "untagged → VLAN 10").await;
    blocked_at(&c["u1"], &c["a10"], "10.50.0.11:7005", "VLAN 10 → untagged").await;
    // Untagged endpoints, with filtering on: each other and the gateway (the host's bridge).
    reaches_at(&c["u2"], &c["u1"], "10.50.0.12:7006").await;
    reaches_at(sb.host(), &c["u1"], "10.50.0.1:7007").await;
    // …and the gateway is not a VLAN endpoint's (the host's bridge is in VLAN 1 only).
    blocked_at(
        sb.host(),
        &c["a10"],
        "10.50.0.1:7008",
        "VLAN 10 → host gateway",
    )
    .await;

    // The trunk: the LAN's VLAN 10 (tagged on the wire) reaches VLAN 10, not VLAN 20.
    ip(
        &lan_name,
        &[
            "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10",
        ],
    );
    ip(
        &lan_name,
        &["addr", "add", "10.50.0.200/24", "dev", "eth0.10"],
    );
    ip(&lan_name, &["link", "set", "eth0.10", "up"]);
    let seen = reaches_at(&c["a10"], &lan, "10.50.0.21:7010").await;
    assert_eq!(seen.ip().to_string(), "10.50.0.200");
    reaches_at(&lan, &c["b10"], "10.50.0.200:7011").await;
    blocked_at(&c["c20"], &lan, "10.50.0.31:7012", "LAN VLAN 10 → VLAN 20").await;
    blocked_at(&c["u1"], &lan, "10.50.0.11:7013", "LAN VLAN 10 → untagged").await;
    println!(
        "VM-TIER: VLAN endpoints isolated by VLAN, untagged endpoints and the gateway unaffected, the trunk carries VLAN 10 tagged (kernel {})",
        kernel()
    );

    // Drift: b10's port back in the default VLAN too is reported by check.
    let out = std::process::Command::new("bridge")
        .args([
            "-n", &host_ns, "vlan", "add", "dev", &b10_if, "vid", "1", "pvid", "untagged",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let missing = host.check(&n, "b10").await.unwrap();
    assert!(
        missing.iter().any(|m| m.contains("VLAN 10 only")),
        "{missing:?}"
    );

    // Detach: the trunk keeps a VLAN while an endpoint has it; the last one takes it away,
    // and with no VLAN endpoint left the bridge stops filtering.
    host.detach(&n, "a10").await.unwrap();
    let (_, ports) = bridge_state(&nl, "br-vlan").await;
    assert!(!ports.iter().any(|(n, _)| *n == a10_if), "port gone");
    assert!(
        ports
            .iter()
            .any(|(n, v)| n == "lan0" && v.contains(&PortVlan::tagged(10))),
        "b10 still in VLAN 10: {ports:?}"
    );
    host.detach(&n, "b10").await.unwrap();
    host.detach(&n, "c20").await.unwrap();
    let (on, ports) = bridge_state(&nl, "br-vlan").await;
    assert!(!on, "no VLAN endpoint left: filtering off again");
    for (name, vlans) in &ports {
        assert_eq!(
            vlans,
            &vec![PortVlan::access(1)],
            "{name}: nothing berth added left"
        );
    }
    assert_eq!(ports.len(), 4, "the bridge itself, lan0, u1, u2: {ports:?}");
    let shown = bridge_vlans(&host_ns, "lan0");
    assert!(!shown.contains("10") && !shown.contains("20"), "{shown}");
    reaches_at(&c["u2"], &c["u1"], "10.50.0.12:7020").await;
    println!(
        "VM-TIER: VLAN detach leaves no VLAN of berth's on the bridge or the trunk, filtering off again (kernel {})",
        kernel()
    );

    // gc after a dead attach (its record never written): a VLAN port nobody records, its
    // VLAN on the trunk, filtering on. gc removes the port, then the trunk's VLAN, then
    // filtering.
    let ghost = sb.netns("ghost").await.unwrap();
    let g = host
        .attach(&n, Endpoint::new("ghost", ghost.clone()).vlan(30))
        .await
        .unwrap();
    std::fs::remove_file(sb.state_dir().join("endpoints/v/ghost.json")).unwrap();
    let report = host.gc(&["u1", "u2"]).await.unwrap();
    assert!(
        report
            .links_removed
            .contains(g.host_ifname.as_ref().unwrap()),
        "{report:?}"
    );
    assert_eq!(
        report.vlans_fixed, 2,
        "VLAN 30 off the trunk, filtering off: {report:?}"
    );
    let (on, ports) = bridge_state(&nl, "br-vlan").await;
    assert!(
        !on && ports.iter().all(|(_, v)| v == &vec![PortVlan::access(1)]),
        "{ports:?}"
    );

    for role in ["u1", "u2"] {
        host.detach(&n, role).await.unwrap();
    }
    host.delete_network(&n).await.unwrap();
    let lan0 = nl
        .require_link("lan0")
        .await
        .expect("released, not deleted");
    assert_eq!(lan0.controller, None);
    assert!(nl.link_by_name("br-vlan").await.unwrap().is_none());
    println!(
        "VM-TIER: VLAN trunk released with its network, gc leaves no VLAN behind (kernel {})",
        kernel()
    );
}

/// The same through the `netctl` binary: `network create -o parent=IF`, `connect --vlan ID`,
/// the attachment JSON and `network inspect` showing the VLAN, traffic by VLAN, `disconnect`
/// and `network rm` leaving no VLAN and the trunk released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_connect_vlan_over_a_trunk() {
    use common::netctl::*;
    if !require_root() {
        return;
    }
    let test = "netctl_connect_vlan_over_a_trunk";
    let mut sb = Sandbox::new("bt-ncvlanvm").await.unwrap();
    let host_ns = sb.host_name().to_string();
    let lan_name = {
        sb.netns("lan").await.unwrap();
        ns_name(&sb, "lan")
    };
    ip(
        &host_ns,
        &[
            "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &lan_name,
        ],
    );
    ip(&lan_name, &["link", "set", "eth0", "up"]);
    let mut c = Vec::new();
    for role in ["a", "b", "d"] {
        c.push(sb.netns(role).await.unwrap());
    }
    let nc = Netctl::new(&sb);
    nc.ok(&words(
        "network create --subnet 10.51.0.0/24 -o parent=lan0 -o com.docker.network.bridge.name=br-ncv v",
    ));
    let path = sb.netns_path("a");
    let first = nc.run(&[
        "connect",
        "--netns",
        path_str(&path),
        "--vlan",
        "10",
        "--ip",
        "10.51.0.10",
        "v",
        "a",
    ]);
    if first.status.code() == Some(1) {
        let e = String::from_utf8_lossy(&first.stderr);
        assert!(e.contains("bridge VLAN filtering"), "{e}");
        println!("SKIPPED: {test}: {} (the VM tier runs it)", e.trim());
        nc.ok(&["network", "rm", "v"]);
        return;
    }
    assert!(first.status.success(), "{first:?}");
    let a: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(a["vlan"], 10);
    nc.connect(&sb, "v", "b", &["--vlan", "10", "--ip", "10.51.0.11"]);
    nc.connect(&sb, "v", "d", &["--vlan", "20", "--ip", "10.51.0.20"]);
    let inspect = nc.json(&["network", "inspect", "v"]);
    assert_eq!(inspect["options"]["parent"], "lan0");
    assert_eq!(inspect["endpoints"]["d"]["vlan"], 20);
    reaches_at(&c[1], &c[0], "10.51.0.11:7100").await;
    blocked_at(
        &c[0],
        &c[2],
        "10.51.0.10:7101",
        "VLAN 20 → VLAN 10 (netctl)",
    )
    .await;
    nc.ok(&["check", "v", "a"]);
    let shown = bridge_vlans(&host_ns, "lan0");
    assert!(shown.contains("10") && shown.contains("20"), "{shown}");
    for role in ["a", "b", "d"] {
        nc.ok(&["disconnect", "v", role]);
    }
    let shown = bridge_vlans(&host_ns, "lan0");
    assert!(!shown.contains("10") && !shown.contains("20"), "{shown}");
    // kill -9 right after the driver made a VLAN endpoint (its record not yet in place):
    // the port is there with VLAN 30, the trunk carries it, the bridge filters; gc removes
    // the port, takes VLAN 30 off the trunk and turns filtering off.
    let out = nc
        .command(&[
            "connect",
            "--netns",
            path_str(&path),
            "--vlan",
            "30",
            "v",
            "a",
        ])
        .env("BERTH_CRASH_AT", "driver-attach")
        .output()
        .unwrap();
    assert!(!out.status.success(), "killed: {out:?}");
    assert!(bridge_vlans(&host_ns, "lan0").contains("30"));
    let nl = Netlink::open(sb.host()).await.unwrap();
    let br = nl.require_link("br-ncv").await.unwrap();
    assert!(nl.vlan_filtering(br.index).await.unwrap().unwrap().on);
    nc.ok(&["gc"]);
    let shown = bridge_vlans(&host_ns, "lan0");
    assert!(!shown.contains("30"), "{shown}");
    assert!(!nl.vlan_filtering(br.index).await.unwrap().unwrap().on);
    for t in nl.vlan_tables().await.unwrap() {
        if t.controller == Some(br.index) {
            assert_eq!(t.vlans, vec![PortVlan::access(1)], "{t:?}");
        }
    }
    nc.ok(&["network", "rm", "v"]);
    assert_eq!(nl.require_link("lan0").await.unwrap().controller, None);
    assert!(nl.link_by_name("br-ncv").await.unwrap().is_none());
    println!(
        "VM-TIER: netctl connect --vlan over -o parent=IF proven, a kill -9 after driver-attach finished by gc (kernel {})",
        kernel()
    );
}
