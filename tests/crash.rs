//! `kill -9` at any instant of every mutating command, through the `netctl` binary (one
//! process per command, in a sandbox host netns), while another process keeps connecting and
//! disconnecting on a network of its own:
//!
//! - after a kill landing right after each step of `network create`, `network rm`, `connect`,
//!   `disconnect`, `gc` and `reapply` (`BERTH_CRASH_AT=STEP`), and after kills at random
//!   instants of each of them, `gc` brings back exactly the live set: every record's network and
//!   endpoint is whole in the kernel (links, addresses, nf_tables objects, traffic), nothing
//!   else berth made remains (links, pools, allocations, elements, marks), no address is held
//!   twice, and the next create and connect work;
//! - an interrupted `rm` or `disconnect` is finished by `gc` even for a container it keeps.
//!
//! The binary is `target/debug/examples/netctl`: build it first (`cargo build --examples`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Ipam as _, Netns};
use common::netctl::*;
use common::state::*;
use common::*;
use serde_json::Value;

/// The network the other process keeps using, and its container (always kept by gc).
const BG_NET: &str = "bg";
const BG: &str = "bg0";
/// The long-lived network containers are connected to and disconnected from.
const NET: &str = "kill";

/// A sandbox with its container netns, and netctl over it.
struct World {
    sb: Sandbox,
    outside: Netns,
    nc: Netctl,
    /// Every container netns made so far, by path.
    netns: BTreeMap<PathBuf, Netns>,
    /// The host netns' links before berth made anything.
    base_links: Vec<String>,
    next_ns: usize,
    next_port: u16,
    /// Containers the runtime considers gone (left out of every gc's keep list).
    dead: BTreeSet<String>,
}

impl World {
    async fn new(label: &str) -> Self {
        let (sb, outside) = sandbox(label).await;
        let nc = Netctl::new(&sb);
        let base_links = link_names(sb.host()).await;
        let w = World {
            sb,
            outside,
            nc,
            netns: BTreeMap::new(),
            base_links,
            next_ns: 0,
            next_port: 20000,
            dead: BTreeSet::new(),
        };
        w.nc.ok(&["network", "create", "--subnet", "10.102.0.0/22", NET]);
        w.nc.ok(&["network", "create", "--subnet", "10.103.0.0/24", BG_NET]);
        w
    }

    /// A new container netns (one per attach: a killed attach may leave it half-made until gc).
    async fn fresh_netns(&mut self) -> PathBuf {
        let role = format!("c{}", self.next_ns);
        self.next_ns += 1;
        let ns = self.sb.netns(&role).await.unwrap();
        let path = self.sb.netns_path(&role);
        self.netns.insert(path.clone(), ns);
        path
    }

    fn port(&mut self) -> String {
        self.next_port += 1;
        format!("{}:80", self.next_port)
    }

    /// `connect` (not killed) of `container` on a fresh netns with a published port.
    async fn connect(&mut self, network: &str, container: &str) {
        let path = self.fresh_netns().await;
        let port = self.port();
        self.nc.json(&[
            "connect",
            "--netns",
            path_str(&path),
            "-p",
            &port,
            network,
            container,
        ]);
    }

    /// Every container that has an endpoint record and is not dead, plus the background one.
    fn live(&self) -> Vec<String> {
        let mut live = BTreeSet::from([BG.to_string()]);
        for net in network_names(self.sb.state_dir()) {
            live.extend(endpoint_records(self.sb.state_dir(), &net).into_keys());
        }
        live.retain(|c| !self.dead.contains(c));
        live.into_iter().collect()
    }

    /// `gc` keeping every recorded container; asserts it found no address held twice.
    fn gc(&self) -> Value {
        let live = self.live();
        let mut args = vec!["gc"];
        args.extend(live.iter().map(String::as_str));
        let report = self.nc.json(&args);
        assert_eq!(report["conflicts"], serde_json::json!([]), "{report}");
        report
    }

    /// The whole world against the records (run after `gc`, with nothing else running).
    async fn check(&self, when: &str) {
        let state = self.sb.state_dir();
        let host = host(&self.sb).await;
        let nets = host.networks().await.unwrap();
        let names: BTreeSet<String> = nets.iter().map(|n| n.name.clone()).collect();
        assert_eq!(
            names,
            network_names(state),
            "{when}: a network record is marked as being removed"
        );
        let mut want_links: BTreeSet<String> = self.base_links.iter().cloned().collect();
        let mut in_netns: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        let mut records = Vec::new();
        for net in &nets {
            want_links.extend(net.device.clone());
            let eps = endpoint_records(state, &net.name);
            let dir = state.join("endpoints").join(&net.name);
            let marks: Vec<_> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".json"))
                .collect();
            assert!(marks.is_empty(), "{when}: marks left in {dir:?}: {marks:?}");
            let pool = ipam_pool(state, &net.name)
                .await
                .unwrap_or_else(|| panic!("{when}: network {} has no pool", net.name));
            let held = allocations_checked(&pool);
            let recorded: BTreeMap<IpAddr, String> = eps
                .values()
                .map(|a| (a.ip().unwrap(), a.container.clone()))
                .collect();
            assert_eq!(held, recorded, "{when}: IPAM of {} vs records", net.name);
            for a in eps.values() {
                want_links.extend(a.host_ifname.clone());
                let ns = a.netns.clone().expect("netns path");
                in_netns.entry(ns).or_default().insert(a.ifname.clone());
                if let Some(other) = addresses.insert(a.ip().unwrap(), a.container.clone()) {
                    panic!(
                        "{when}: {} held by {other} and {}",
                        a.ip().unwrap(),
                        a.container
                    );
                }
                records.push(a.clone());
            }
        }
        let pools: BTreeSet<String> = berth::FileIpam::new(state.join("ipam"))
            .pools()
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(pools, names, "{when}: pools vs networks");
        let links: BTreeSet<String> = link_names(self.sb.host()).await.into_iter().collect();
        assert_eq!(links, want_links, "{when}: host links vs records");
        for (path, ns) in &self.netns {
            let mut want = in_netns.get(path).cloned().unwrap_or_default();
            want.insert("lo".into());
            let have: BTreeSet<String> = link_names(ns).await.into_iter().collect();
            assert_eq!(have, want, "{when}: links in {}", path.display());
        }
        // nf_tables: everything the records call for is there, and nothing more (the same
        // objects and element counts as a ruleset rebuilt from the records alone).
        let missing = host.check_firewall().await.unwrap();
        assert!(missing.is_empty(), "{when}: firewall lacks {missing:?}");
        let have = nft_footprint(&self.sb);
        let flush = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                self.sb.host_name(),
                "nft",
                "flush",
                "ruleset",
            ])
            .status()
            .unwrap();
        assert!(flush.success());
        host.reapply().await.unwrap();
        assert_eq!(have, nft_footprint(&self.sb), "{when}: firewall vs records");
        // Traffic: into every live container from the host, and to its published ports from
        // outside.
        for a in &records {
            let ns = &self.netns[a.netns.as_ref().unwrap()];
            let ip = a.ip().unwrap();
            let target = SocketAddr::new(ip, 7000);
            tcp_probe(ns, target, self.sb.host(), target)
                .await
                .unwrap_or_else(|e| panic!("{when}: {} at {ip}: {e}", a.container));
            for p in &a.ports {
                let outside: SocketAddr = format!("{HOST_UP}:{}", p.host_port).parse().unwrap();
                tcp_probe(ns, SocketAddr::new(ip, 80), &self.outside, outside)
                    .await
                    .unwrap_or_else(|e| panic!("{when}: {} via {outside}: {e}", a.container));
            }
        }
    }

    /// The next create and connect work after whatever happened, and leave nothing behind.
    async fn next_ones_work(&mut self, when: &str) {
        let name = format!("next{}", self.next_ns);
        self.nc.ok(&["network", "create", &name]);
        let path = self.fresh_netns().await;
        let port = self.port();
        let att = self.nc.json(&[
            "connect",
            "--netns",
            path_str(&path),
            "-p",
            &port,
            &name,
            "nextc",
        ]);
        let ip: IpAddr = att["ipv4"]
            .as_str()
            .unwrap()
            .parse::<ipnet::IpNet>()
            .unwrap()
            .addr();
        let target = SocketAddr::new(ip, 7000);
        tcp_probe(&self.netns[&path], target, self.sb.host(), target)
            .await
            .unwrap_or_else(|e| panic!("{when}: next connect carries no traffic: {e}"));
        self.nc.ok(&["disconnect", &name, "nextc"]);
        self.nc.ok(&["network", "rm", &name]);
    }
}

/// The names of the network records in the state dir (`networks/NAME.json`).
fn network_names(state: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(state.join("networks"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(String::from)
        })
        .collect()
}

/// Chains, rules per chain and element counts of every set and map of the sandbox's ruleset.
fn nft_footprint(sb: &Sandbox) -> Vec<String> {
    let mut out = Vec::new();
    for o in nft_ruleset(sb)["nftables"].as_array().unwrap() {
        if let Some(c) = o.get("chain") {
            out.push(format!(
                "chain {} {} {}",
                c["family"], c["table"], c["name"]
            ));
        } else if let Some(r) = o.get("rule") {
            out.push(format!(
                "rule {} {} {}",
                r["family"], r["table"], r["chain"]
            ));
        } else if let Some(m) = o.get("map").or_else(|| o.get("set")) {
            let n = m.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len);
            out.push(format!(
                "set {} {} {} {n}",
                m["family"], m["table"], m["name"]
            ));
        }
    }
    out.sort();
    out
}

/// Another process's work going on meanwhile: connect and disconnect on [`BG_NET`] until
/// stopped; every command must succeed (a killed process's lock dies with it).
struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Background {
    fn start(nc: &Netctl, netns: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (nc, flag) = (nc.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut cycles = 0;
            while !flag.load(Ordering::Relaxed) {
                nc.json(&[
                    "connect",
                    "--netns",
                    path_str(&netns),
                    "-p",
                    "19999:80",
                    BG_NET,
                    BG,
                ]);
                nc.ok(&["disconnect", BG_NET, BG]);
                cycles += 1;
            }
            cycles
        });
        Background {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("the background process's commands all succeed")
    }
}

/// What each kill lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Rm,
    Connect,
    Disconnect,
    Gc,
    Reapply,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::Create,
        Op::Rm,
        Op::Connect,
        Op::Disconnect,
        Op::Gc,
        Op::Reapply,
    ];

    /// The steps a [`berth::FaultHook`] sees during this command.
    fn steps(self) -> &'static [&'static str] {
        match self {
            Op::Create => &[
                "ipam-reserve",
                "driver-create",
                "firewall-network",
                "persist-network",
            ],
            Op::Rm => &[
                "delete-firewall",
                "delete-driver",
                "delete-ipam",
                "delete-record",
            ],
            Op::Connect => &[
                "ipam-allocate",
                "driver-attach",
                "firewall-endpoint",
                "record-endpoint",
                "persist-endpoint",
            ],
            Op::Disconnect => &[
                "detach-firewall",
                "detach-driver",
                "detach-conntrack",
                "detach-ipam",
                "detach-record",
            ],
            Op::Gc => &[
                "gc-repair",
                "gc-removals",
                "gc-detach",
                "gc-ipam",
                "gc-links",
                "gc-firewall",
                "gc-sandboxes",
            ],
            Op::Reapply => &["reapply"],
        }
    }
}

/// Prepares one command of `op` (doing its prerequisites unkilled) and returns its arguments
/// and what must hold once gc has run: `Some(name)` of a network or container that must be
/// gone then, whatever instant the kill landed at.
async fn prepare(w: &mut World, op: Op, i: usize) -> (Vec<String>, Option<(String, String)>) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match op {
        Op::Create => {
            let name = format!("n{i}");
            // Every other create takes a subnet from the pools (the pool-wide lock and the
            // avoid list are in play).
            if i.is_multiple_of(2) {
                (s(&["network", "create", &name]), None)
            } else {
                let subnet = format!("10.104.{}.0/24", i % 250);
                (s(&["network", "create", "--subnet", &subnet, &name]), None)
            }
        }
        Op::Rm => {
            let name = format!("r{i}");
            let subnet = format!("10.105.{}.0/24", i % 250);
            w.nc.ok(&["network", "create", "--subnet", &subnet, &name]);
            (s(&["network", "rm", &name]), Some(("network".into(), name)))
        }
        Op::Connect => {
            let path = w.fresh_netns().await;
            let port = w.port();
            let c = format!("k{i}");
            (
                s(&["connect", "--netns", path_str(&path), "-p", &port, NET, &c]),
                None,
            )
        }
        Op::Disconnect => {
            let c = format!("d{i}");
            w.connect(NET, &c).await;
            (s(&["disconnect", NET, &c]), Some(("container".into(), c)))
        }
        Op::Gc => {
            let c = format!("g{i}");
            w.connect(NET, &c).await;
            w.dead.insert(c.clone());
            let mut args = vec!["gc".to_string()];
            args.extend(w.live());
            (args, Some(("container".into(), c)))
        }
        Op::Reapply => (s(&["reapply"]), None),
    }
}

fn assert_gone(w: &World, what: &Option<(String, String)>, when: &str) {
    let state = w.sb.state_dir();
    match what {
        Some((kind, name)) if kind == "network" => {
            assert!(
                !network_names(state).contains(name),
                "{when}: network {name} survived its rm"
            );
        }
        Some((_, c)) => {
            assert!(
                !endpoint_records(state, NET).contains_key(c),
                "{when}: {c} survived its disconnect"
            );
        }
        None => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_right_after_any_step_is_finished_or_undone_by_gc() {
    if !require_root() {
        return;
    }
    let mut w = World::new("crash-step").await;
    let bg_ns = w.fresh_netns().await;
    let mut i = 0;
    for op in Op::ALL {
        for step in op.steps() {
            i += 1;
            let when = format!("{op:?} killed after {step}");
            if op == Op::Reapply {
                // A flushed ruleset being put back.
                let st = std::process::Command::new("ip")
                    .args(["netns", "exec", w.sb.host_name(), "nft", "flush", "ruleset"])
                    .status()
                    .unwrap();
                assert!(st.success());
            }
            let (args, gone) = prepare(&mut w, op, i).await;
            // (Not during a put-back of a flushed ruleset: the other process's connects need
            // the table it puts back.)
            let bg = (op != Op::Reapply).then(|| Background::start(&w.nc, bg_ns.clone()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out =
                w.nc.command(&args)
                    .env("BERTH_CRASH_AT", step)
                    .stdout(Stdio::null())
                    .output()
                    .unwrap();
            let cycles = bg.map_or(0, Background::finish);
            assert_eq!(
                out.status.signal(),
                Some(9),
                "{when}: not killed there ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let report = w.gc();
            eprintln!("{when}: background ran {cycles} cycles; gc: {report}");
            assert_gone(&w, &gone, &when);
            w.check(&when).await;
        }
    }
    w.next_ones_work("after the step kills").await;
    w.check("at the end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_at_random_instants_of_every_command_leave_what_gc_makes_whole() {
    if !require_root() {
        return;
    }
    let per_op: usize = std::env::var("BERTH_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let mut w = World::new("crash-rand").await;
    let bg_ns = w.fresh_netns().await;
    let mut rng = XorShift::from_time();
    let mut i = 1000;
    for op in Op::ALL {
        // How long the command takes here, so the kills land all along it.
        i += 1;
        let (args, gone) = prepare(&mut w, op, i).await;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t = Instant::now();
        w.nc.ok(&args);
        let took = t.elapsed();
        assert_gone(&w, &gone, &format!("{op:?} not killed"));
        let max_us = (took.as_micros() as u64 * 5 / 4).max(10_000);
        let bg = Background::start(&w.nc, bg_ns.clone());
        let (mut killed, mut finished) = (0, 0);
        let mut pending = Vec::new();
        for _ in 0..per_op {
            i += 1;
            let (args, gone) = prepare(&mut w, op, i).await;
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut child =
                w.nc.command(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
            std::thread::sleep(Duration::from_micros(rng.below(max_us)));
            let _ = child.kill(); // SIGKILL; fails only when it already exited
            let status = child.wait().unwrap();
            match status.signal() {
                Some(9) => killed += 1,
                _ => {
                    assert!(status.success(), "{op:?} {args:?}: {status}");
                    finished += 1;
                }
            }
            // A kill before an rm or disconnect marked its record leaves it whole (checked
            // below); a container a gc was told to drop is gone once gc has run.
            if op == Op::Gc {
                pending.push(gone);
            }
            if op == Op::Create {
                // The pools hold 31 automatic subnets: networks that were made go again, and
                // what killed creates left is collected now and then, as a runtime's gc would.
                let name = args.last().unwrap();
                if network_names(w.sb.state_dir()).contains(*name) {
                    w.nc.ok(&["network", "rm", name]);
                }
                if i.is_multiple_of(10) {
                    w.gc();
                }
            }
        }
        let cycles = bg.finish();
        let report = w.gc();
        let when = format!("{per_op} {op:?} at random instants");
        eprintln!(
            "{when} (one takes {took:?}): {killed} killed, {finished} finished first; \
             background ran {cycles} cycles; gc: {report}"
        );
        for gone in &pending {
            assert_gone(&w, gone, &when);
        }
        w.check(&when).await;
        w.next_ones_work(&when).await;
    }
}
