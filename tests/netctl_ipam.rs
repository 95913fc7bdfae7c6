//! The IPAM issue's process-level proofs, through the `netctl` binary: every command is its own
//! process, run as `ip netns exec SANDBOX netctl --state-dir DIR …` inside a sandbox host netns.
//!
//! - many processes connecting and disconnecting at once never hold one address together;
//! - attaches killed (SIGKILL) at random instants never make two containers share an address,
//!   and `netctl gc` brings the state back to exactly the live attachments;
//! - `--subnet`/`--gateway`/`--ip-range`/`--aux-address`/`--ipv6`/`--ip6` and automatic subnets
//!   end to end, with IPv6 traffic, and failed commands that change nothing.
//!
//! The binary is `target/debug/examples/netctl`: build it first (`cargo build --examples`).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth::sandbox::{Sandbox, tcp_probe};
use common::netctl::*;
use common::state::*;
use common::*;
use ipnet::IpNet;
use serde_json::json;

/// The address part of "10.0.0.2/24".
fn addr_of(cidr: &str) -> IpAddr {
    cidr.parse::<IpNet>()
        .unwrap_or_else(|e| panic!("{cidr:?}: {e}"))
        .addr()
}

/// Every record file of the state dir (networks, endpoints, ipam) with its content.
fn state_snapshot(state_dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.insert(p.clone(), std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(state_dir, &mut out);
    out
}

/// One connect/disconnect cycle of a worker: the address it got, when `connect` had returned,
/// and when `disconnect` was about to start.
#[derive(Debug, Clone, Copy)]
struct Hold {
    ip: IpAddr,
    from: Instant,
    to: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_fifty_cycles_never_share_an_address() {
    if !require_root() {
        return;
    }
    const WORKERS: usize = 8;
    const CYCLES: usize = 50;
    let mut sb = Sandbox::new("nci-cyc").await.unwrap();
    let mut paths = Vec::new();
    for w in 0..WORKERS {
        sb.netns(&format!("w{w}")).await.unwrap();
        paths.push(sb.netns_path(&format!("w{w}")));
    }
    let nc = Netctl::new(&sb);
    nc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "-o",
        "com.docker.network.bridge.name=br-cyc",
        "net",
    ]);

    let started = Instant::now();
    let nc2 = nc.clone();
    let holds: Vec<Vec<Hold>> = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let handles: Vec<_> = paths
                .iter()
                .enumerate()
                .map(|(w, path)| {
                    let nc = &nc2;
                    s.spawn(move || {
                        let id = format!("w{w}");
                        let mut holds = Vec::with_capacity(CYCLES);
                        for _ in 0..CYCLES {
                            let att = nc.json(&["connect", "--netns", path_str(path), "net", &id]);
                            let from = Instant::now();
                            let ip = addr_of(att["ipv4"].as_str().expect("ipv4"));
                            let to = Instant::now();
                            nc.ok(&["disconnect", "net", &id]);
                            holds.push(Hold { ip, from, to });
                        }
                        holds
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker panicked"))
                .collect()
        })
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "{} connect/disconnect cycles by {WORKERS} workers in {elapsed:?}",
        WORKERS * CYCLES
    );

    // No two workers held one address in overlapping intervals.
    let mut by_ip: BTreeMap<IpAddr, Vec<(usize, Hold)>> = BTreeMap::new();
    for (w, hs) in holds.iter().enumerate() {
        assert_eq!(hs.len(), CYCLES);
        for h in hs {
            by_ip.entry(h.ip).or_default().push((w, *h));
        }
    }
    let mut shared_addresses = 0;
    for (ip, hs) in &by_ip {
        if hs.iter().any(|(w, _)| *w != hs[0].0) {
            shared_addresses += 1;
        }
        for (i, (wa, a)) in hs.iter().enumerate() {
            for (wb, b) in &hs[i + 1..] {
                if wa != wb {
                    assert!(
                        !(a.from < b.to && b.from < a.to),
                        "{ip} held by w{wa} and w{wb} at the same time"
                    );
                }
            }
        }
    }
    eprintln!(
        "{} distinct addresses used, {shared_addresses} of them by several workers (in turn)",
        by_ip.len()
    );

    // Nothing is left: no allocation, no record, no veth.
    let pool = ipam_pool(sb.state_dir(), "net")
        .await
        .expect("ipam pool of net");
    assert_eq!(allocations_checked(&pool), BTreeMap::new());
    assert_eq!(endpoint_records(sb.state_dir(), "net"), BTreeMap::new());
    assert_eq!(
        nc.json(&["network", "inspect", "net"])["endpoints"],
        json!({})
    );
    assert_eq!(link_names(sb.host()).await, vec!["br-cyc", "lo"]);
    for w in 0..WORKERS {
        let ns = berth::Netns::from_path(sb.netns_path(&format!("w{w}"))).unwrap();
        assert_eq!(link_names(&ns).await, vec!["lo"], "w{w}");
    }
    nc.ok(&["network", "rm", "net"]);
    assert!(ipam_pool(sb.state_dir(), "net").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_attaches_never_duplicate_and_gc_restores_the_live_set() {
    if !require_root() {
        return;
    }
    const ITERATIONS: usize = 200;
    // One container netns per attach: a netns that already has a default route (from an
    // earlier attach to this network) makes the next attach fail with EEXIST, see the report.
    const NETNS: usize = ITERATIONS;
    let mut sb = Sandbox::new("nci-kill").await.unwrap();
    let mut nss = Vec::new();
    for i in 0..NETNS {
        nss.push(sb.netns(&format!("k{i}")).await.unwrap());
    }
    let paths: Vec<PathBuf> = (0..NETNS)
        .map(|i| sb.netns_path(&format!("k{i}")))
        .collect();
    let spare = sb.netns("spare").await.unwrap();
    let spare_path = sb.netns_path("spare");
    let nc = Netctl::new(&sb);
    nc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.78.0.0/24",
        "-o",
        "com.docker.network.bridge.name=br-kill",
        "kill",
    ]);

    // How long one attach takes here, so the kills land all along it.
    let t = Instant::now();
    nc.ok(&["connect", "--netns", path_str(&spare_path), "kill", "probe"]);
    let attach_time = t.elapsed();
    nc.ok(&["disconnect", "kill", "probe"]);
    assert_eq!(link_names(&spare).await, vec!["lo"]);
    let max_delay_us = (attach_time.as_micros() as u64 * 5 / 4).max(15_000);
    eprintln!("one attach takes {attach_time:?}; kills land within 0-{max_delay_us} us");

    let mut rng = XorShift::from_time();
    let started = Instant::now();
    let mut finished_anyway = 0;
    for n in 0..ITERATIONS {
        let path = path_str(&paths[n % NETNS]);
        let ifname = format!("e{n}");
        if n % 10 == 9 {
            // A live one, connected normally.
            let c = format!("L{n}");
            nc.json(&["connect", "--netns", path, "--ifname", &ifname, "kill", &c]);
            continue;
        }
        let c = format!("k{n}");
        let mut child = nc
            .command(&["connect", "--netns", path, "--ifname", &ifname, "kill", &c])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(max_delay_us)));
        let _ = child.kill(); // SIGKILL; fails only if it already exited
        let status = child.wait().unwrap();
        if status.success() {
            finished_anyway += 1;
        }
    }
    eprintln!(
        "{ITERATIONS} attaches ({} killed at random, {finished_anyway} of those finished first) in {:?}",
        ITERATIONS - ITERATIONS / 10,
        started.elapsed()
    );

    // Whatever the kills left: no address twice, nobody holding two.
    let state = sb.state_dir();
    let before = allocations_checked(&ipam_pool(state, "kill").await.expect("pool"));
    let records = endpoint_records(state, "kill");
    for (c, att) in &records {
        let ip = att.ip().expect("recorded address");
        assert_eq!(
            before.get(&ip),
            Some(c),
            "record of {c} says {ip}, the IPAM disagrees"
        );
    }
    for n in (9..ITERATIONS).step_by(10) {
        assert!(records.contains_key(&format!("L{n}")), "live L{n} lost");
    }
    let leaked_allocations = before.len() - records.len();

    // gc keeping every container that has a record.
    let live: Vec<&str> = records.keys().map(String::as_str).collect();
    let mut args = vec!["gc"];
    args.extend(&live);
    let report = nc.json(&args);
    eprintln!(
        "{} live, {leaked_allocations} leaked allocations; gc released {}, removed links {}",
        records.len(),
        report["released"].as_array().unwrap().len(),
        report["links_removed"]
    );
    assert_eq!(report["detached"], json!([]), "{report}");
    assert_eq!(report["pools_removed"], json!([]), "{report}");
    let released = report["released"].as_array().unwrap();
    assert_eq!(released.len(), leaked_allocations, "{report}");
    for r in released {
        let c = r["container"].as_str().unwrap();
        assert_eq!(r["network"], "kill");
        assert!(!records.contains_key(c), "gc released live {c}: {report}");
        let ip: IpAddr = r["address"].as_str().unwrap().parse().unwrap();
        assert_eq!(before.get(&ip).map(String::as_str), Some(c), "{report}");
    }

    // Temp files of writes a kill interrupted (tmp + rename): harmless, but nobody removes them.
    let mut stray_tmp = Vec::new();
    for sub in ["ipam", "endpoints/kill", "networks"] {
        for e in std::fs::read_dir(state.join(sub)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".tmp") {
                stray_tmp.push(format!("{sub}/{name}"));
            }
        }
    }
    eprintln!("temp files left by killed writes: {stray_tmp:?}");

    // The IPAM holds exactly the live set, each at the address its record says.
    let after = allocations_checked(&ipam_pool(state, "kill").await.expect("pool"));
    let want: BTreeMap<IpAddr, String> = records
        .iter()
        .map(|(c, a)| (a.ip().unwrap(), c.clone()))
        .collect();
    assert_eq!(after, want);
    assert_eq!(
        endpoint_records(state, "kill"),
        records,
        "gc kept the records"
    );

    // Only the live veths remain, on the host and in the containers.
    let mut want_host: Vec<String> = records
        .values()
        .map(|a| a.host_ifname.clone().expect("host_ifname"))
        .chain(["br-kill".to_string(), "lo".to_string()])
        .collect();
    want_host.sort();
    assert_eq!(link_names(sb.host()).await, want_host);
    for (i, ns) in nss.iter().enumerate() {
        let mut want: Vec<String> = records
            .values()
            .filter(|a| a.netns.as_deref() == Some(paths[i].as_path()))
            .map(|a| a.ifname.clone())
            .chain(["lo".to_string()])
            .collect();
        want.sort();
        assert_eq!(link_names(ns).await, want, "container netns k{i}");
    }

    // Every live attachment still carries traffic: host netns -> container.
    for att in records.values() {
        let ip = att.ip().unwrap();
        let i = paths
            .iter()
            .position(|p| att.netns.as_deref() == Some(p.as_path()))
            .unwrap();
        let target = std::net::SocketAddr::new(ip, 7000);
        tcp_probe(&nss[i], target, sb.host(), target)
            .await
            .unwrap_or_else(|e| panic!("{} at {ip}: {e}", att.container));
    }

    // gc without one of them detaches it.
    let (gone, rest) = live.split_last().unwrap();
    let mut args = vec!["gc"];
    args.extend(rest);
    let report = nc.json(&args);
    assert_eq!(report["detached"], json!([["kill", gone]]), "{report}");
    assert_eq!(report["released"], json!([]), "{report}");
    assert_eq!(report["links_removed"], json!([]), "{report}");
    assert!(!endpoint_records(state, "kill").contains_key(*gone));

    for c in rest {
        nc.ok(&["disconnect", "kill", c]);
    }
    nc.ok(&["network", "rm", "kill"]);
    assert!(ipam_pool(state, "kill").await.is_none());
    assert_eq!(link_names(sb.host()).await, vec!["lo"]);
    for ns in &nss {
        assert_eq!(link_names(ns).await, vec!["lo"]);
    }
}

/// Retries a probe for up to ~2 s (a fresh IPv6 address may still be settling).
async fn tcp_probe_retry(
    server: &berth::Netns,
    bind: std::net::SocketAddr,
    client: &berth::Netns,
    target: std::net::SocketAddr,
) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match tcp_probe(server, bind, client, target).await {
            Ok(peer) => return peer,
            Err(e) if Instant::now() < deadline => {
                eprintln!("probe {target}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("probe {target}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipam_flags_end_to_end() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("nci-flags").await.unwrap();
    // The sandbox host netns uses 172.17.0.0/24: automatic subnets must avoid it.
    sb.add_outside(
        "172.17.0.1/24".parse().unwrap(),
        "172.17.0.2/24".parse().unwrap(),
    )
    .await
    .unwrap();
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let c3 = sb.netns("c3").await.unwrap();
    let (p1, p2, p3) = (
        sb.netns_path("c1"),
        sb.netns_path("c2"),
        sb.netns_path("c3"),
    );
    let nc = Netctl::new(&sb);

    nc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.79.0.0/16",
        "--ip-range",
        "10.79.5.0/24",
        "--aux-address",
        "router=10.79.5.1",
        "--ipv6",
        "--subnet",
        "fd00:79::/64",
        "--gateway",
        "fd00:79::fe",
        "-o",
        "com.docker.network.bridge.name=br-dual",
        "dual",
    ]);
    assert_eq!(
        nc.ok(&["network", "ls"]),
        "dual bridge 10.79.0.0/16,fd00:79::/64\n"
    );
    let net = nc.json(&["network", "inspect", "dual"]);
    assert_eq!(
        net["subnets"],
        json!([
            {"subnet": "10.79.0.0/16", "gateway": "10.79.0.1", "ip_range": "10.79.5.0/24",
             "aux_addresses": {"router": "10.79.5.1"}},
            {"subnet": "fd00:79::/64", "gateway": "fd00:79::fe", "ip_range": null},
        ])
    );
    assert_eq!(net["ipv6"], json!(true));
    assert_eq!(net["internal"], json!(false));
    assert_eq!(net["endpoints"], json!({}));

    // c1: next free in the range (never the aux address), plus an IPv6 address.
    let a1 = nc.json(&["connect", "--netns", path_str(&p1), "dual", "c1"]);
    let ip1 = addr_of(a1["ipv4"].as_str().unwrap());
    let range: IpNet = "10.79.5.0/24".parse().unwrap();
    assert!(
        range.contains(&ip1) && a1["ipv4"].as_str().unwrap().ends_with("/16"),
        "{a1}"
    );
    assert_ne!(
        ip1.to_string(),
        "10.79.5.1",
        "the aux address was handed out"
    );
    // Docker's rule: the range's first address is a host address of the /16 and is handed out
    // (moby's addrset: AddAnyInRange("10.20.30.40/24") gives 10.20.30.0); .1 is the aux one.
    assert_eq!(a1["ipv4"], "10.79.5.0/16", "{a1}");
    assert_eq!(a1["gateway"], "10.79.0.1");
    let v6_1: IpNet = a1["ipv6"].as_str().expect("ipv6").parse().unwrap();
    let subnet6: IpNet = "fd00:79::/64".parse().unwrap();
    assert!(
        subnet6.contains(&v6_1.addr()) && v6_1.prefix_len() == 64,
        "{a1}"
    );
    assert_ne!(v6_1.addr().to_string(), "fd00:79::fe");
    assert_eq!(a1["gateway6"], "fd00:79::fe");

    // c2: a static IPv6 address.
    let a2 = nc.json(&[
        "connect",
        "--netns",
        path_str(&p2),
        "--ip6",
        "fd00:79::99",
        "dual",
        "c2",
    ]);
    assert_eq!(a2["ipv6"], "fd00:79::99/64");
    assert_eq!(a2["gateway6"], "fd00:79::fe");
    let ip2 = addr_of(a2["ipv4"].as_str().unwrap());
    assert!(range.contains(&ip2) && ip2 != ip1, "{a2}");
    let net = nc.json(&["network", "inspect", "dual"]);
    assert_eq!(net["endpoints"]["c1"]["ipv6"], a1["ipv6"]);
    assert_eq!(net["endpoints"]["c2"]["ipv6"], "fd00:79::99/64");

    // IPv6 and IPv4 traffic c1 -> c2.
    let t6 = sa("[fd00:79::99]:7000");
    let seen = tcp_probe_retry(&c2, t6, &c1, t6).await;
    assert_eq!(seen.ip(), v6_1.addr());
    let t4 = std::net::SocketAddr::new(ip2, 7000);
    let seen = tcp_probe_retry(&c2, t4, &c1, t4).await;
    assert_eq!(seen.ip(), ip1);

    // Automatic subnets: from the private pools, avoiding the host netns' 172.17.0.0/24; with
    // --ipv6 a ULA /64 too.
    nc.ok(&["network", "create", "auto"]);
    nc.ok(&["network", "create", "--ipv6", "auto6"]);
    let private: [IpNet; 2] = [
        "172.16.0.0/12".parse().unwrap(),
        "192.168.0.0/16".parse().unwrap(),
    ];
    let used: IpNet = "172.17.0.0/24".parse().unwrap();
    let mut autos = Vec::new();
    for name in ["auto", "auto6"] {
        let net = nc.json(&["network", "inspect", name]);
        let subnets = net["subnets"].as_array().unwrap();
        let v4: IpNet = subnets[0]["subnet"].as_str().unwrap().parse().unwrap();
        assert!(private.iter().any(|p| p.contains(&v4)), "{name}: {net}");
        assert!(
            !v4.contains(&used.network()) && !used.contains(&v4.network()),
            "{name} overlaps the host netns' subnet: {net}"
        );
        autos.push(v4);
        if name == "auto6" {
            assert_eq!(subnets.len(), 2, "{net}");
            let v6: IpNet = subnets[1]["subnet"].as_str().unwrap().parse().unwrap();
            assert!(
                v6.prefix_len() == 64 && v6.to_string().starts_with("fd"),
                "ULA /64 expected: {net}"
            );
            assert_eq!(net["ipv6"], json!(true));
        } else {
            assert_eq!(subnets.len(), 1, "{net}");
            assert_eq!(net["ipv6"], json!(false));
        }
    }
    assert!(
        !autos[0].contains(&autos[1].network()) && !autos[1].contains(&autos[0].network()),
        "two automatic subnets overlap: {autos:?}"
    );
    eprintln!("automatic subnets: {autos:?}");
    let a3 = nc.json(&["connect", "--netns", path_str(&p3), "auto6", "c3"]);
    assert!(
        autos[1].contains(&addr_of(a3["ipv4"].as_str().unwrap())),
        "{a3}"
    );
    assert!(a3["ipv6"].is_string() && a3["gateway6"].is_string(), "{a3}");
    nc.ok(&["disconnect", "auto6", "c3"]);

    // Failures name what is wrong and change nothing.
    let ls = nc.ok(&["network", "ls"]);
    let snapshot = state_snapshot(sb.state_dir());
    let host_links = link_names(sb.host()).await;
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.80.0.0/24",
                "--ip-range",
                "10.81.0.0/28",
                "bad",
            ],
            vec!["10.81.0.0/28"],
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.80.0.0/24",
                "--aux-address",
                "r=10.81.0.1",
                "bad",
            ],
            vec!["10.81.0.1"],
        ),
        (
            vec!["network", "create", "--subnet", "10.79.200.0/24", "bad"],
            vec!["10.79.200.0/24", "overlaps", "dual"],
        ),
        (
            vec![
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "10.80.0.0/24",
                "--subnet",
                "fd00:79::/56",
                "bad",
            ],
            vec!["fd00:79::/56", "overlaps", "dual"],
        ),
        (
            vec![
                "connect",
                "--netns",
                path_str(&p3),
                "--ip6",
                "fd00:79::99",
                "dual",
                "c3",
            ],
            vec!["fd00:79::99", "c2"],
        ),
        (
            vec![
                "connect",
                "--netns",
                path_str(&p3),
                "--ip6",
                "fd00:79::fe",
                "dual",
                "c3",
            ],
            vec!["fd00:79::fe", "gateway"],
        ),
        (
            vec![
                "connect",
                "--netns",
                path_str(&p3),
                "--ip",
                "10.79.5.1",
                "dual",
                "c3",
            ],
            vec!["10.79.5.1", "aux"],
        ),
        (
            vec![
                "connect",
                "--netns",
                path_str(&p3),
                "--ip6",
                "fd00:80::1",
                "dual",
                "c3",
            ],
            vec!["fd00:80::1"],
        ),
        (
            vec![
                "connect",
                "--netns",
                path_str(&p3),
                "--ip6",
                "10.79.5.9",
                "dual",
                "c3",
            ],
            vec!["10.79.5.9"],
        ),
    ];
    for (args, needles) in &cases {
        let e = nc.error(args);
        for n in needles {
            assert!(e.contains(n), "netctl {args:?}: {e:?} should name {n:?}");
        }
        assert_eq!(nc.ok(&["network", "ls"]), ls, "netctl {args:?} changed ls");
        assert_eq!(
            state_snapshot(sb.state_dir()),
            snapshot,
            "netctl {args:?} changed the state dir"
        );
        assert_eq!(link_names(sb.host()).await, host_links, "{args:?}");
        assert_eq!(link_names(&c3).await, vec!["lo"], "{args:?}");
    }

    nc.ok(&["disconnect", "dual", "c1"]);
    nc.ok(&["disconnect", "dual", "c2"]);
    nc.ok(&["network", "rm", "dual", "auto", "auto6"]);
    assert_eq!(nc.ok(&["network", "ls"]), "");
    assert!(ipam_pool(sb.state_dir(), "dual").await.is_none());
    assert_eq!(link_names(sb.host()).await, vec!["lo", "uplink"]);
}
