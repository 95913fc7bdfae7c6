//! netctl on overlay networks across two simulated hosts (kernel tier), driven as a user would:
//! `--cluster-store`, `--cluster-advertise`, `--cluster-host`, `network create -d overlay`,
//! `network ls`/`inspect`, `serve` in the background on each host, `connect` and `disconnect`.
//!
//! Topology (`common::underlay`): an underlay netns with a bridge at `10.98.1.254` joins host
//! netns `h1` (`10.98.1.1`) and `h2` (`10.98.1.2`). etcd runs inside the underlay netns on
//! `10.98.1.254:2379` (`EtcdServer::start_in`): netctl runs in a host netns under
//! `ip netns exec`, whose loopback is not the test's, so the store must be reached over the
//! underlay. Every process the test starts (etcd, the two `netctl serve`) is killed by its pid
//! at the end, also on panic.

mod common;

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use berth::netlink::Netlink;
use common::etcd::EtcdServer;
use common::netctl::{Netctl, path_str};
use common::underlay::Underlay;
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `netctl serve` processes started, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Default)]
struct Servers(Vec<Child>);

impl Servers {
    fn start(&mut self, nc: &Netctl) {
        let child = nc
            .command(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start netctl serve");
        self.0.push(child);
    }

    /// SIGTERM to each, then waits; returns whether each exited 0 within 10 s.
    fn stop(&mut self) -> Vec<bool> {
        let mut clean = Vec::new();
        for mut c in self.0.drain(..) {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            let status = loop {
                match c.try_wait() {
                    Ok(Some(st)) => break Some(st),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => break None,
                }
            };
            if status.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
            clean.push(status.is_some_and(|s| s.success()));
        }
        clean
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The VTEPs host `nl`'s `vx-VNI` forwards to (empty: no such device).
async fn fdb_vteps(nl: &Netlink, vni: u32) -> Vec<IpAddr> {
    let Some(vx) = nl.link_by_name(&format!("vx-{vni}")).await.unwrap() else {
        return Vec::new();
    };
    nl.fdb(vx.index)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.dst)
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const VNI: u32 = 4242;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_overlay_through_netctl() {
    if !require_root() {
        return;
    }
    let mut ul = Underlay::new("nc-ov", "10.98.1").await;
    let Some(etcd) = EtcdServer::start_in("nc-ov", ul.netns_name(), ul.gateway()) else {
        return;
    };
    let store = etcd.cluster_store("/nc-ov");
    let mut hosts = Vec::new();
    for i in 1..=2u8 {
        let name = format!("h{i}");
        let (_, nl, ns) = ul.plug(&name, i).await;
        let state = ul.sb.state_dir().join(&name);
        // --cluster-advertise by interface on h1, by address on h2: both forms.
        let advertise = if i == 1 {
            "eth0".to_string()
        } else {
            ul.addr(i).to_string()
        };
        let nc = Netctl::in_netns(&ns, &state).with_flags(&[
            "--cluster-store",
            &store,
            "--cluster-advertise",
            &advertise,
            "--cluster-host",
            &name,
            "--cluster-ttl",
            "5",
        ]);
        hosts.push((nc, nl));
    }
    let (nc1, nl1) = &hosts[0];
    let (nc2, nl2) = &hosts[1];

    // Created on h1; on h2 (which never used it) it is listed and inspected from the store.
    let vni = VNI.to_string();
    let id = nc1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.210.0.0/24",
        "-o",
        &format!("com.docker.network.driver.overlay.vxlanid_list={vni}"),
        "ov",
    ]);
    assert!(!id.trim().is_empty());
    let ls2 = nc2.ok(&["network", "ls"]);
    assert!(
        ls2.lines().any(|l| l == "ov overlay 10.210.0.0/24"),
        "{ls2}"
    );
    let inspect = nc2.json(&["network", "inspect", "ov"]);
    assert_eq!(inspect["driver"], "overlay", "{inspect}");
    assert_eq!(
        inspect["options"]["com.docker.network.driver.overlay.vxlanid_list"], vni,
        "{inspect}"
    );
    // The same name from h2: refused, naming it.
    let e = nc2.error(&["network", "create", "-d", "overlay", "ov"]);
    assert!(e.contains("ov"), "{e}");

    // Each host's agent (and resolver) in the background.
    let mut servers = Servers::default();
    servers.start(nc1);
    servers.start(nc2);

    let c1 = ul.sb.netns("c1").await.unwrap();
    let c2 = ul.sb.netns("c2").await.unwrap();
    let p1 = ul.sb.netns_path("c1");
    let p2 = ul.sb.netns_path("c2");
    let a1 = nc1.json(&["connect", "--netns", path_str(&p1), "ov", "c1"]);
    let a2 = nc2.json(&["connect", "--netns", path_str(&p2), "ov", "c2"]);
    let ip = |a: &serde_json::Value| -> String {
        let cidr = a["ipv4"].as_str().unwrap();
        cidr.split('/').next().unwrap().to_string()
    };
    let (ip1, ip2) = (ip(&a1), ip(&a2));
    assert_ne!(ip1, ip2, "addresses are claimed cluster-wide");
    assert_eq!(a1["gateway"], "10.210.0.1", "{a1}");

    // h2's connect synced its peers itself; h1 learns of c2 only through its agent (`serve`).
    wait_for("h1 forwards to h2", Duration::from_secs(10), async || {
        fdb_vteps(nl1, VNI).await == [ul.addr(2)]
    })
    .await;
    assert_eq!(fdb_vteps(nl2, VNI).await, [ul.addr(1)]);
    reaches_at(&c2, &c1, &format!("{ip2}:7000")).await;
    reaches_at(&c1, &c2, &format!("{ip1}:7001")).await;
    let inspect1 = nc1.json(&["network", "inspect", "ov"]);
    assert!(inspect1["endpoints"]["c1"].is_object(), "{inspect1}");

    // Disconnect on h2: h1's agent drops c2's entry; then the network goes, from h2.
    nc2.ok(&["disconnect", "ov", "c2"]);
    wait_for("h1 forgets c2", Duration::from_secs(10), async || {
        fdb_vteps(nl1, VNI).await.is_empty()
    })
    .await;
    let e = nc2.error(&["network", "rm", "ov"]);
    assert!(e.contains("c1"), "in use by c1 on h1: {e}");
    nc1.ok(&["disconnect", "ov", "c1"]);
    assert_eq!(nc2.ok(&["network", "rm", "ov"]).trim(), "ov");
    assert!(!nc1.ok(&["network", "ls"]).contains("ov overlay"));
    for nl in [nl1, nl2] {
        assert!(
            nl.link_by_name(&format!("vx-{VNI}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(servers.stop(), [true, true], "serve exits 0 on SIGTERM");
    drop(etcd);
}

/// Without a cluster store an overlay network is refused with exit 1, naming the store; the
/// cluster flags need `--cluster-store` (usage error); an advertise interface that does not
/// exist is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_needs_a_cluster_store() {
    let Some((sb, _out, _host)) = setup("nc-ov-none").await else {
        return;
    };
    let nc = Netctl::new(&sb);
    let e = nc.error(&["network", "create", "-d", "overlay", "ov"]);
    assert!(e.contains("ov") && e.contains("cluster store"), "{e}");
    assert!(nc.ok(&["network", "ls"]).trim().is_empty());
    let e = nc.fails(2, &["--cluster-advertise", "eth0", "network", "ls"]);
    assert!(e.contains("--cluster-store"), "{e}");
    let e = nc.error(&[
        "--cluster-store",
        "etcd://10.98.9.1:2379",
        "--cluster-advertise",
        "nosuch0",
        "network",
        "ls",
    ]);
    assert!(e.contains("nosuch0"), "{e}");
    let e = nc.error(&["--cluster-store", "zookeeper://h:1", "network", "ls"]);
    assert!(e.contains("zookeeper://h:1"), "{e}");
}
