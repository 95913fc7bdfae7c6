//! A damaged state dir and a full disk, through the `netctl` binary (the probe's defects 8 and
//! 12): one corrupt or missing record never stops the rest from working; the damaged one is
//! quarantined and named, and gc rebuilds what can be derived; no address is ever handed out
//! twice; a failed command leaves nothing behind, on disk or in the kernel.
//!
//! The binary is `target/debug/examples/netctl`: build it first (`cargo build --examples`).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use berth::sandbox::{Sandbox, tcp_probe};
use common::netctl::*;
use common::state::*;
use common::*;
use serde_json::Value;

fn addr(att: &Value) -> IpAddr {
    att["ipv4"]
        .as_str()
        .unwrap()
        .parse::<ipnet::IpNet>()
        .unwrap()
        .addr()
}

/// Host → container TCP at the container's address.
async fn reaches(sb: &Sandbox, role: &str, ip: IpAddr) {
    let ns = berth::Netns::from_path(sb.netns_path(role)).unwrap();
    let target = SocketAddr::new(ip, 7000);
    tcp_probe(&ns, target, sb.host(), target)
        .await
        .unwrap_or_else(|e| panic!("{role} at {ip}: {e}"));
}

fn names(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {report}"))
        .iter()
        .map(|v| v.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_corrupt_record_never_stops_the_rest_and_gc_repairs_it() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("cr-rec").await;
    for role in ["a1", "a2", "b1", "b2"] {
        sb.netns(role).await.unwrap();
    }
    let nc = Netctl::new(&sb);
    let state = sb.state_dir().to_path_buf();
    nc.ok(&["network", "create", "--subnet", "10.93.0.0/24", "a"]);
    nc.ok(&["network", "create", "--subnet", "10.94.0.0/24", "b"]);
    let a1 = addr(&nc.connect(&sb, "a", "a1", &["-p", "8081:80"]));
    let b1 = addr(&nc.connect(&sb, "b", "b1", &[]));

    for damage in [&b"{ \"name\": \"a\", "[..], b""] {
        // The record of network a cut short (a crash of a file system, a careless admin).
        std::fs::write(state.join("networks/a.json"), damage).unwrap();
        let ls = nc.ok(&["network", "ls"]);
        assert!(ls.contains('b'), "ls still lists b: {ls}");
        nc.ok(&["reapply"]);
        nc.connect(&sb, "b", "b2", &[]);
        nc.ok(&["disconnect", "b", "b2"]);
        let report = nc.json(&["gc", "a1", "b1"]);
        let saved = names(&report, "quarantined");
        assert!(
            saved.iter().any(|p| p.contains("a.json")),
            "the damaged record is named: {report}"
        );
        // Restored from its backup: network a works again, a1 kept its address and traffic.
        assert_eq!(nc.json(&["network", "inspect", "a"])["name"], "a");
        assert!(names(&report, "detached").is_empty(), "{report}");
        reaches(&sb, "a1", a1).await;
        reaches(&sb, "b1", b1).await;
    }
    let quarantined = std::fs::read_dir(state.join("quarantine")).unwrap().count();
    assert!(quarantined >= 2, "copies kept for the admin");

    // A corrupt endpoint record, sandbox record and IPAM pool file: gc still works for every
    // network, names each, and the other containers keep working.
    nc.connect(&sb, "a", "a2", &[]);
    std::fs::write(state.join("endpoints/a/a2.json"), b"\x00garbage").unwrap();
    std::fs::write(state.join("sandboxes/b1.json"), b"[").unwrap();
    std::fs::write(state.join("ipam/b.json"), b"{\"subnets\": 7}").unwrap();
    let ls = nc.ok(&["network", "ls"]);
    assert!(ls.contains('a') && ls.contains('b'), "{ls}");
    let report = nc.json(&["gc", "a1", "a2", "b1"]);
    let saved = names(&report, "quarantined").join(" ");
    assert!(saved.contains("a2.json"), "{report}");
    assert!(saved.contains("b1.json"), "{report}");
    // a2's record is gone, so its veth and its address go too (nothing else knew of them).
    assert!(endpoint_records(&state, "a").keys().eq(["a1"]), "{report}");
    assert!(!names(&report, "links_removed").is_empty(), "{report}");
    // The pool of b is rebuilt from its record and b1's endpoint record.
    let pool = allocations_checked(&ipam_pool(&state, "b").await.expect("pool b rebuilt"));
    assert_eq!(pool.get(&b1).map(String::as_str), Some("b1"), "{report}");
    let pool = allocations_checked(&ipam_pool(&state, "a").await.unwrap());
    assert_eq!(pool.keys().copied().collect::<Vec<_>>(), vec![a1]);
    reaches(&sb, "a1", a1).await;
    reaches(&sb, "b1", b1).await;
    // And a second gc has nothing left to do.
    let again = nc.json(&["gc", "a1", "b1"]);
    for key in [
        "quarantined",
        "released",
        "restored",
        "links_removed",
        "detached",
    ] {
        assert!(names(&again, key).is_empty(), "{key}: {again}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ipam_entry_never_lets_an_address_be_handed_out_twice() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("cr-ipam").await;
    for role in ["c1", "c2", "c3"] {
        sb.netns(role).await.unwrap();
    }
    let nc = Netctl::new(&sb);
    let state = sb.state_dir().to_path_buf();
    nc.ok(&["network", "create", "--subnet", "10.95.0.0/24", "n"]);
    let ip = addr(&nc.connect(&sb, "n", "c1", &[]));
    // Remove c1's claim from the IPAM behind berth's back.
    let lose_claim = || {
        let entries = state.join("ipam/n.d");
        let mut removed = 0;
        for e in std::fs::read_dir(&entries).unwrap().flatten() {
            if e.file_name().to_string_lossy() == ip.to_string() {
                std::fs::remove_file(e.path()).unwrap();
                removed += 1;
            }
        }
        assert_eq!(removed, 1, "c1's claim in {}", entries.display());
    };
    // gc restores the claim from c1's record.
    lose_claim();
    let report = nc.json(&["gc", "c1"]);
    assert_eq!(report["restored"][0]["address"], ip.to_string(), "{report}");
    let pool = allocations_checked(&ipam_pool(&state, "n").await.unwrap());
    assert_eq!(pool.get(&ip).map(String::as_str), Some("c1"));
    // Without a gc in between: asking for c1's address is refused, naming it …
    lose_claim();
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&sb.netns_path("c2")),
        "--ip",
        &ip.to_string(),
        "n",
        "c2",
    ]);
    assert!(e.contains(&ip.to_string()), "{e}");
    // … and so is any next-free allocation landing on it.
    lose_claim();
    let c3 = addr(&nc.connect(&sb, "n", "c3", &[]));
    assert_ne!(c3, ip, "handed out twice");
    let pool = allocations_checked(&ipam_pool(&state, "n").await.unwrap());
    assert_eq!(pool.get(&ip).map(String::as_str), Some("c1"));
    reaches(&sb, "c1", ip).await;
    reaches(&sb, "c3", c3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_network_record_makes_gc_remove_all_of_the_network() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("cr-lost").await;
    sb.netns("c1").await.unwrap();
    let nc = Netctl::new(&sb);
    let state = sb.state_dir().to_path_buf();
    let before = link_names(sb.host()).await;
    nc.ok(&["network", "create", "--subnet", "10.96.0.0/24", "n"]);
    nc.connect(&sb, "n", "c1", &["-p", "8090:80"]);
    std::fs::remove_file(state.join("networks/n.json")).unwrap();
    std::fs::remove_file(state.join("networks/n.json.bak")).unwrap();
    let report = nc.json(&["gc", "c1"]);
    assert_eq!(link_names(sb.host()).await, before, "{report}");
    let c1 = berth::Netns::from_path(sb.netns_path("c1")).unwrap();
    assert_eq!(link_names(&c1).await, vec!["lo"], "{report}");
    assert!(endpoint_records(&state, "n").is_empty(), "{report}");
    assert!(ipam_pool(&state, "n").await.is_none(), "{report}");
    assert!(!state.join("endpoints/n").exists());
    assert_eq!(std::fs::read_dir(state.join("ports")).unwrap().count(), 0);
    assert_eq!(map_len(&sb, "pm4_any"), 0, "{report}");
    // The subnet is free again.
    nc.ok(&["network", "create", "--subnet", "10.96.0.0/24", "n2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_finished_commands_leave_no_files_behind() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("cr-left").await;
    sb.netns("c1").await.unwrap();
    let nc = Netctl::new(&sb);
    let state = sb.state_dir().to_path_buf();
    // Networks that fail to be made, and ones made and removed: no lock file or directory
    // of theirs stays.
    nc.ok(&["network", "create", "--subnet", "10.97.0.0/24", "taken"]);
    for i in 0..5 {
        let name = format!("f{i}");
        nc.error(&["network", "create", "--subnet", "10.97.0.0/24", &name]);
        nc.ok(&["network", "create", &name]);
        nc.ok(&["network", "rm", &name]);
    }
    nc.ok(&["network", "rm", "taken"]);
    let mut left = Vec::new();
    for sub in ["ipam", "networks", "endpoints", "ports"] {
        for e in std::fs::read_dir(state.join(sub)).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n != "lock" {
                left.push(format!("{sub}/{n}"));
            }
        }
    }
    assert!(left.is_empty(), "left behind: {left:?}");
    // Disconnect takes its ports-index directories with it.
    nc.ok(&["network", "create", "--subnet", "10.97.0.0/24", "n"]);
    nc.connect(&sb, "n", "c1", &["-p", "8091:80", "-p", "8092:80/udp"]);
    assert_eq!(std::fs::read_dir(state.join("ports")).unwrap().count(), 2);
    nc.ok(&["disconnect", "n", "c1"]);
    assert_eq!(std::fs::read_dir(state.join("ports")).unwrap().count(), 0);
}

/// Runs `script` with `sh` in a private mount namespace inside the sandbox's host netns (so a
/// tmpfs mounted there is seen by nobody else and goes with it); returns stdout.
fn in_private_mounts(sb: &Sandbox, script: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", sb.host_name()])
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_on_a_full_disk_changes_nothing() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("cr-full").await;
    sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    // As a runtime's new netns is: lo down.
    ip(&ns_name(&sb, "c2"), &["link", "set", "lo", "down"]);
    let exe = netctl_exe();
    let dir = sb.state_dir().join("full");
    std::fs::create_dir_all(&dir).unwrap();
    let nc = format!("{} --state-dir {}/st", exe.display(), dir.display());
    let (c1_path, c2_path) = (sb.netns_path("c1"), sb.netns_path("c2"));
    let listing = |d: &Path| {
        format!(
            "find {}/st -path '*/quarantine' -prune -o -print | sort; cat {}/st/ipam/n.d/~* 2>/dev/null; echo",
            d.display(),
            d.display()
        )
    };
    // On a small tmpfs: make a network and one container, fill the disk, try a second
    // connect, and list the state dir (with the IPAM cursor) before and after.
    let script = format!(
        "set -e
         mount -t tmpfs -o size=512k tmpfs {dir}
         {nc} network create --subnet 10.98.0.0/24 n >/dev/null
         {nc} connect --netns {c1} -p 8093:80 n warm >/dev/null
         {nc} disconnect n warm
         dd if=/dev/zero of={dir}/fill bs=4k 2>/dev/null || true
         echo BEFORE; {list}
         if err=$({nc} connect --netns {c2} -p 8094:80 n c2 2>&1 >/dev/null); then echo CONNECTED; fi
         echo ERROR; echo \"$err\"
         echo AFTER; {list}",
        dir = dir.display(),
        c1 = c1_path.display(),
        c2 = c2_path.display(),
        list = listing(&dir),
    );
    let out = in_private_mounts(&sb, &script);
    assert!(!out.contains("CONNECTED"), "{out}");
    let (before, rest) = out
        .split_once("BEFORE\n")
        .unwrap()
        .1
        .split_once("ERROR\n")
        .unwrap();
    let (error, after) = rest.split_once("AFTER\n").unwrap();
    assert!(
        error.contains("No space left on device"),
        "a named disk error: {error}"
    );
    assert_eq!(after, before, "the state dir changed:\n{out}");
    // The container is as it was: only lo, and still down.
    assert_eq!(link_names(&c2).await, vec!["lo"], "{out}");
    let lo = ip(&ns_name(&sb, "c2"), &["-o", "link", "show", "lo"]);
    assert!(lo.contains("<LOOPBACK>"), "lo brought up and left so: {lo}");
    eprintln!("{out}");
    assert_eq!(map_len(&sb, "pm4_any"), 0, "no port element left: {out}");
}
