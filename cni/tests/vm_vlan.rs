//! The VM tier for berth-cni's `vlan` (CNI bridge's key): each container's bridge port an
//! access port of the configured VLAN, proven by packets. This machine's kernel may have no
//! bridge VLAN filtering (no `CONFIG_VLAN_8021Q`): there ADD is refused naming it, the test
//! says SKIPPED, and the VM tier runs it on Debian's stock kernel
//! (`CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="target/debug/xtask vm-run" cargo test -p
//! berth-cni --test vm_vlan -- --nocapture --test-threads=1`).
//!
//! One network (`vnet`, bridge `bvlan0`) configured twice, as two conflists naming the same
//! network would: with `"vlan": 10` for two containers and `"vlan": 20` for a third. The two in
//! VLAN 10 reach each other; the one in VLAN 20 reaches neither; `bridge vlan show` reads the
//! ports back; DEL leaves no port and the bridge's filtering off again.

mod libcni;

use std::net::SocketAddr;

use berth::sandbox::{Sandbox, tcp_probe};
use libcni::{Args, berth_cni, exec, in_ns, require_root};
use serde_json::{Value, json};

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The leased address of an ADD result, without its prefix.
fn address(r: &Value) -> String {
    let a = r["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_vlan_ports_are_access_ports_of_their_vlan() {
    if !require_root() {
        return;
    }
    let test = "cni_vlan_ports_are_access_ports_of_their_vlan";
    let mut sb = Sandbox::new("cni-vlan").await.expect("sandbox");
    let host = sb.host_name().to_string();
    let state = sb.state_dir().join("cni").display().to_string();
    let conf = |vlan: u16| {
        json!({"cniVersion": "1.0.0", "name": "vnet", "type": "berth-cni",
               "bridge": "bvlan0", "stateDir": state,
               "subnets": [{"subnet": "10.91.0.0/24", "gateway": "10.91.0.1"}],
               "vlan": vlan})
    };
    let mut ns = Vec::new();
    let mut results = Vec::new();
    for (role, vlan) in [("a", 10), ("b", 10), ("c", 20)] {
        let n = sb.netns(role).await.expect("netns");
        let args = Args::new(role, sb.netns_path(role));
        let o = exec(&berth_cni(), &host, "ADD", &args, &conf(vlan));
        if o.rc != 0 && o.raw.contains("does not support bridge VLAN filtering") {
            println!(
                "SKIPPED: {test}: kernel {} has no bridge VLAN filtering: {} (the VM tier runs it)",
                kernel(),
                o.raw.trim()
            );
            return;
        }
        assert_eq!(o.rc, 0, "ADD {role} in VLAN {vlan}: {}", o.raw);
        ns.push(n);
        results.push((args, vlan, o.out));
    }
    let (a_ip, b_ip) = (address(&results[0].2), address(&results[1].2));
    // Each port: its VLAN as PVID, untagged, and no other (the default VLAN left).
    for (args, vlan, r) in &results {
        let veth = r["interfaces"][0]["name"].as_str().unwrap();
        let shown = in_ns(&host, &["bridge", "vlan", "show", "dev", veth]);
        let vlans: Vec<&str> = shown
            .lines()
            .flat_map(|l| l.split_whitespace())
            .filter(|w| w.parse::<u16>().is_ok())
            .collect();
        assert_eq!(vlans, [vlan.to_string()], "{}: {shown}", args.id);
        assert!(
            shown.contains("PVID") && shown.contains("Untagged"),
            "{}: {shown}",
            args.id
        );
    }
    // VLAN 10 to VLAN 10 flows; VLAN 20 reaches neither.
    let bind: SocketAddr = "0.0.0.0:7000".parse().unwrap();
    tcp_probe(
        &ns[1],
        bind,
        &ns[0],
        format!("{b_ip}:7000").parse().unwrap(),
    )
    .await
    .expect("a -> b, both in VLAN 10");
    tcp_probe(
        &ns[0],
        bind,
        &ns[1],
        format!("{a_ip}:7000").parse().unwrap(),
    )
    .await
    .expect("b -> a, both in VLAN 10");
    for (ip, i) in [(&a_ip, 0), (&b_ip, 1)] {
        assert!(
            tcp_probe(&ns[i], bind, &ns[2], format!("{ip}:7000").parse().unwrap())
                .await
                .is_err(),
            "c in VLAN 20 reached {ip} in VLAN 10"
        );
    }
    // DEL: no port left on the bridge, its filtering off again.
    for (args, vlan, _) in &results {
        let o = exec(&berth_cni(), &host, "DEL", args, &conf(*vlan));
        assert_eq!(o.rc, 0, "DEL {}: {}", args.id, o.raw);
    }
    let ports = in_ns(&host, &["ip", "-o", "link", "show", "master", "bvlan0"]);
    assert!(ports.is_empty(), "ports left: {ports}");
    let details = in_ns(&host, &["ip", "-d", "link", "show", "bvlan0"]);
    assert!(
        details.contains("vlan_filtering 0"),
        "filtering still on: {details}"
    );
    println!(
        "VM-TIER: berth-cni vlan: two containers in VLAN 10 reach each other, one in VLAN 20 neither; ports PVID untagged, nothing left after DEL (kernel {})",
        kernel()
    );
}
