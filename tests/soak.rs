//! Soak: many attach/detach cycles of a churn container next to long-lived ones, with the
//! embedded resolver running, proving every few cycles that the churn container is really
//! there (a TCP connection from the outside netns reaches a listener in it through its
//! published port, and one from a long-lived container reaches it directly; a DNS query from
//! that container for its name and its alias is answered by the resolver with its address),
//! and sampling what a leak would make grow: open fds and RSS of
//! the process that serves, the sandbox's kernel objects (links of the host netns, nf_tables
//! objects and their elements; conntrack entries reported only) and the state dir's entries.
//!
//! - `library_attach_detach_soak`: one `Host` in this process, `BERTH_SOAK_CYCLES` cycles;
//!   fds and RSS are this process's.
//! - `netctl_connect_disconnect_soak`: the `netctl` binary, one process per connect and per
//!   disconnect, `BERTH_SOAK_NETCTL_CYCLES` cycles, with `netctl serve-dns` running as a child;
//!   fds and RSS are the resolver process's.
//!
//! Shape, not time: after the first sample (before the first cycle: directories made on first
//! use, the resolver's listeners), fds, kernel objects and state-dir entries equal the second
//! sample's exactly at every sample; RSS may grow from the second sample to the end by at most
//! [`RSS_SLACK_KIB`] + [`RSS_PER_CYCLE_BYTES`] per cycle; in the library soak, so may the heap
//! in use (glibc's count of what is allocated) by [`HEAP_SLACK_KIB`] + [`HEAP_PER_CYCLE_BYTES`]
//! per cycle, or by [`HEAP_SLACK_NO_TCACHE_KIB`] in all when run with
//! `GLIBC_TUNABLES=glibc.malloc.tcache_count=0` (then the count is exact). Every churn container has a name of
//! its own (`k0`, `k1`, …) as a runtime's containers do; they take turns over a few netns.
//!
//! The curve is printed as a table and written as CSV to `target/soak/`. The CI sizes are the
//! defaults; the long runs are `BERTH_SOAK_CYCLES=10000` and `BERTH_SOAK_NETCTL_CYCLES=2000`.
//! The netctl soak needs the example built (`cargo build --examples`).

mod common;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use berth::sandbox::{Sandbox, dns_probe, tcp_probe};
use berth::{Endpoint, ExtraHost, HostAddr, Netns, Network, Port};
use common::netctl::{Netctl, path_str};
use common::*;

/// Library cycles when `BERTH_SOAK_CYCLES` is not set (sized for CI).
const CI_CYCLES: usize = 1000;
/// netctl cycles when `BERTH_SOAK_NETCTL_CYCLES` is not set (sized for CI).
const CI_NETCTL_CYCLES: usize = 300;
/// Samples per run (plus the one before the first cycle).
const SAMPLES: usize = 20;
/// Churn containers take turns over this many netns.
const CHURN_NETNS: usize = 4;
/// The published port, on the host and in the churn container.
const HOST_PORT: u16 = 8080;
const CONTAINER_PORT: u16 = 80;
/// RSS may grow by this much from the second sample to the end, whatever the cycle count:
/// allocator arenas and caches, tokio's blocking pool, the probes' threads settle within it.
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// … plus this much per cycle: far below what one leaked record, task, socket or string set
/// per cycle costs once the allocator's overhead is counted (a few KiB), so a per-cycle leak
/// crosses the bound on a long run, while noise does not reach it.
const RSS_PER_CYCLE_BYTES: u64 = 512;

/// The heap in use (this process's, see [`Sample::heap_kib`]) may grow by this much from the
/// second sample to the end: glibc's per-thread caches (tcache) count as in use, and fill as
/// threads come and go (berth's netns threads, tokio's blocking pool, the probes) — measured:
/// +260 KiB over 2,000 cycles, slowing down …
const HEAP_SLACK_KIB: u64 = 1024;
/// … plus this much per cycle.
const HEAP_PER_CYCLE_BYTES: u64 = 64;
/// With the tcache off (`GLIBC_TUNABLES=glibc.malloc.tcache_count=0`) the heap in use is exact:
/// measured flat to the KiB over 1,500 cycles. Then only this much is allowed, whatever the
/// cycle count: a leak of a few bytes per cycle shows on a long run.
const HEAP_SLACK_NO_TCACHE_KIB: u64 = 16;

/// Whether this process runs with glibc's tcache off.
fn tcache_off() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|t| {
        t.split(':')
            .any(|kv| kv.trim() == "glibc.malloc.tcache_count=0")
    })
}

/// The two soaks measure one process each; run side by side they would count each other's
/// fds and memory (and share two cores), so they take turns.
static ONE_AT_A_TIME: LazyLock<tokio::sync::Mutex<()>> =
    LazyLock::new(|| tokio::sync::Mutex::new(()));

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: not a number")),
        Err(_) => default,
    }
}

/// One point of the curve, taken after a detach (no churn container attached).
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    cycle: usize,
    fds: usize,
    rss_kib: u64,
    /// Bytes the allocator has handed out and not got back (this process only): what a leak
    /// makes grow, without RSS's noise (arenas, freed-but-kept pages, thread stacks).
    heap_kib: Option<u64>,
    threads: u64,
    links: usize,
    nft_objects: usize,
    nft_elements: usize,
    conntrack: Option<u64>,
    state_entries: usize,
    elapsed: Duration,
    /// What the fds are (`readlink /proc/PID/fd/N`), to name a leaked one.
    fd_targets: Vec<String>,
    /// The state dir's entries, relative.
    state_paths: Vec<String>,
}

/// Widths of the printed table's columns (the CSV header's names).
const COLUMN_WIDTHS: [usize; 12] = [7, 5, 8, 8, 7, 5, 11, 12, 9, 13, 8, 12];

impl Sample {
    /// What must stay exactly flat.
    fn flat(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.fds,
            self.links,
            self.nft_objects,
            self.nft_elements,
            self.state_entries,
        )
    }

    const HEADER: &str = "cycle,fds,rss_kib,heap_kib,threads,links,nft_objects,nft_elements,conntrack,\
                          state_entries,secs,ms_per_cycle";

    /// One row; `ms_per_cycle` is over the cycles since `prev` (the window's mean).
    fn row(&self, prev: Option<&Sample>, sep: &str) -> String {
        let window = prev.map_or(String::from("-"), |p| {
            let n = self.cycle.saturating_sub(p.cycle).max(1) as f64;
            format!(
                "{:.1}",
                (self.elapsed - p.elapsed).as_secs_f64() * 1000.0 / n
            )
        });
        let cells = [
            self.cycle.to_string(),
            self.fds.to_string(),
            self.rss_kib.to_string(),
            self.heap_kib.map_or("-".into(), |h| h.to_string()),
            self.threads.to_string(),
            self.links.to_string(),
            self.nft_objects.to_string(),
            self.nft_elements.to_string(),
            self.conntrack.map_or("-".into(), |c| c.to_string()),
            self.state_entries.to_string(),
            format!("{:.1}", self.elapsed.as_secs_f64()),
            window,
        ];
        if sep == "," {
            return cells.join(",");
        }
        cells
            .iter()
            .zip(COLUMN_WIDTHS)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join(sep)
    }
}

/// The open fds of process `pid` and what they are (`N->TARGET`), sorted; when `pid` is this
/// process, without the one this listing holds.
fn fd_targets(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/fd");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|e| {
            // The listing's own fd is gone by the time it is read: no target.
            let t = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                t.display()
            ))
        })
        .filter(|t| !t.ends_with(&format!("->{dir}")))
        .collect();
    v.sort();
    v
}

/// Bytes in use from glibc's allocator (every arena, and its mmapped blocks), in KiB.
fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    ((m.uordblks + m.hblkhd) / 1024) as u64
}

/// A `KEY:   N …` line of `/proc/PID/status`.
fn status_field(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// Every entry under `dir`, recursively (files, directories, symlinks), relative to `root`.
fn paths(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        out.push(p.strip_prefix(root).unwrap().display().to_string());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            paths(root, &p, out);
        }
    }
}

/// What is in `a` and not in `b`, and the other way round.
fn diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let only = |x: &[String], y: &[String]| x.iter().filter(|e| !y.contains(e)).cloned().collect();
    (only(a, b), only(b, a))
}

/// nf_tables objects (tables, chains, rules, maps, sets …) and the elements of every map and
/// set, in the sandbox's host netns.
fn nft_counts(sb: &Sandbox) -> (usize, usize) {
    let rs = nft_ruleset(sb);
    let all = rs["nftables"].as_array().unwrap();
    let objects = all.iter().filter(|o| o.get("metainfo").is_none()).count();
    let elements = all
        .iter()
        .filter_map(|o| o.get("map").or_else(|| o.get("set")))
        .map(|m| m.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len))
        .sum();
    (objects, elements)
}

/// Connection-tracking entries of the host netns, when the kernel exposes the count.
fn conntrack_count(host: &Netns) -> Option<u64> {
    host.run(|| std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count"))
        .ok()?
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How long a sample first waits: what the last operation closed asynchronously (a netlink
/// connection's task ends after its handle is dropped) is gone by then. A leak stays.
const SETTLE: Duration = Duration::from_millis(200);

/// Time spent in cycles, not in sampling.
struct Clock {
    started: Instant,
    sampling: Duration,
}

impl Clock {
    fn start() -> Self {
        Clock {
            started: Instant::now(),
            sampling: Duration::ZERO,
        }
    }

    fn cycles(&self) -> Duration {
        self.started.elapsed() - self.sampling
    }

    async fn sample(&mut self, sb: &Sandbox, pid: u32, cycle: usize) -> Sample {
        let t0 = Instant::now();
        let s = sample(sb, pid, cycle, self.cycles()).await;
        self.sampling += t0.elapsed();
        s
    }
}

async fn sample(sb: &Sandbox, pid: u32, cycle: usize, elapsed: Duration) -> Sample {
    tokio::time::sleep(SETTLE).await;
    // This process's own fds first, before the read-backs below open any.
    let fd_targets = fd_targets(pid);
    let rss_kib = status_field(pid, "VmRSS");
    let heap_kib = (pid == std::process::id()).then(heap_in_use_kib);
    let threads = status_field(pid, "Threads");
    let (nft_objects, nft_elements) = nft_counts(sb);
    let mut state_paths = Vec::new();
    paths(sb.state_dir(), sb.state_dir(), &mut state_paths);
    state_paths.sort();
    Sample {
        cycle,
        fds: fd_targets.len(),
        rss_kib,
        heap_kib,
        threads,
        links: link_names(sb.host()).await.len(),
        nft_objects,
        nft_elements,
        conntrack: conntrack_count(sb.host()),
        state_entries: state_paths.len(),
        elapsed,
        fd_targets,
        state_paths,
    }
}

/// `target/soak/` (next to the profile dir this test binary lives in).
fn soak_dir() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let target = me
        .parent()
        .and_then(|deps| deps.parent())
        .and_then(|profile| profile.parent())
        .expect("test binary in target/PROFILE/deps");
    target.join("soak")
}

/// Adds a sample to the curve. From the third on, it must equal the second in fds, kernel
/// objects and state-dir entries, exactly (checked at once, naming what differs); then only its
/// numbers are kept — the lists of open fds and state entries stay with the first two samples
/// alone, so the curve does not grow the heap it measures.
fn push(name: &str, samples: &mut Vec<Sample>, mut s: Sample) {
    if let Some(base) = samples.get(1) {
        assert_eq!(
            s.flat(),
            base.flat(),
            "{name}: (fds, links, nft objects, nft elements, state entries) at cycle {} differ \
             from cycle {}; fds (new, gone): {:?}; state entries (new, gone): {:?}",
            s.cycle,
            base.cycle,
            diff(&s.fd_targets, &base.fd_targets),
            diff(&s.state_paths, &base.state_paths),
        );
        s.fd_targets = Vec::new();
        s.state_paths = Vec::new();
    }
    samples.push(s);
}

/// Prints the curve, writes it as CSV, and asserts the RSS bound (the rest was checked as the
/// samples came).
fn report(name: &str, cycles: usize, samples: &[Sample], wall: Duration) {
    let dir = soak_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join(format!("{name}-{cycles}.csv"));
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "{}", Sample::HEADER).unwrap();
    println!("\n{name}: {cycles} cycles in {wall:.1?} (sampling not counted)");
    let header: Vec<String> = Sample::HEADER
        .split(',')
        .zip(COLUMN_WIDTHS)
        .map(|(c, w)| format!("{c:>w$}"))
        .collect();
    println!("{}", header.join(" "));
    for (i, s) in samples.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| &samples[j]);
        writeln!(f, "{}", s.row(prev, ",")).unwrap();
        println!("{}", s.row(prev, " "));
    }
    let per_cycle = wall / cycles.max(1) as u32;
    println!(
        "{name}: {cycles} cycles, {wall:.1?}, {per_cycle:.1?} per cycle; curve in {}",
        csv.display()
    );

    let base = &samples[1];
    let last = samples.last().unwrap();
    let grown = last.rss_kib.saturating_sub(base.rss_kib);
    let bound = RSS_SLACK_KIB + (last.cycle - base.cycle) as u64 * RSS_PER_CYCLE_BYTES / 1024;
    println!(
        "{name}: RSS {} KiB at cycle {} -> {} KiB at cycle {}: +{grown} KiB (bound {bound} KiB)",
        base.rss_kib, base.cycle, last.rss_kib, last.cycle
    );
    assert!(
        grown <= bound,
        "{name}: RSS grew by {grown} KiB from cycle {} to {} (bound {bound} KiB)",
        base.cycle,
        last.cycle
    );
    if let (Some(from), Some(to)) = (base.heap_kib, last.heap_kib) {
        let grown = to.saturating_sub(from);
        let strict = tcache_off();
        let bound = if strict {
            HEAP_SLACK_NO_TCACHE_KIB
        } else {
            HEAP_SLACK_KIB + (last.cycle - base.cycle) as u64 * HEAP_PER_CYCLE_BYTES / 1024
        };
        println!(
            "{name}: heap in use {from} KiB at cycle {} -> {to} KiB at cycle {}: +{grown} KiB \
             (bound {bound} KiB{})",
            base.cycle,
            last.cycle,
            if strict { ", tcache off" } else { "" }
        );
        assert!(
            grown <= bound,
            "{name}: heap in use grew by {grown} KiB from cycle {} to {} (bound {bound} KiB)",
            base.cycle,
            last.cycle
        );
    }
}

/// Which cycles are sampled: 0 (before the first) and every `n / SAMPLES` after, and the last.
fn sample_every(cycles: usize) -> usize {
    cycles.div_ceil(SAMPLES).max(1)
}

/// Proves the churn container is there: the outside reaches a listener in it through the
/// published port, the long-lived `asker` reaches it directly and gets its address from the
/// resolver by name and by alias.
async fn prove(
    host: &Netns,
    churn: &Netns,
    outside: &Netns,
    asker: &Netns,
    gw: IpAddr,
    names: &[&str],
    addr: IpAddr,
) {
    tcp_probe(
        churn,
        sa(&format!("0.0.0.0:{CONTAINER_PORT}")),
        outside,
        sa(&format!("{HOST_UP}:{HOST_PORT}")),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "published port of {names:?} ({addr}) not reached from outside: {e}\n\
             neighbours of the host netns:\n{}\nlinks of the churn netns:\n{}",
            in_netns(host, &["ip", "neigh"]),
            in_netns(churn, &["ip", "-br", "link"]),
        )
    });
    // From a long-lived container straight to it (its address may have had another holder
    // moments ago: neighbour caches must follow).
    tcp_probe(
        churn,
        sa(&format!("0.0.0.0:{CONTAINER_PORT}")),
        asker,
        SocketAddr::new(addr, CONTAINER_PORT),
    )
    .await
    .unwrap_or_else(|e| panic!("{names:?} ({addr}) not reached from a long-lived container: {e}"));
    for name in names {
        let got = dns_probe(asker, SocketAddr::new(gw, 53), name)
            .await
            .unwrap_or_else(|e| panic!("resolver did not answer {name}: {e}"));
        assert_eq!(got, vec![addr], "the resolver's answer for {name}");
    }
}

/// Runs a command inside `ns` (for diagnostics), returning what it printed.
fn in_netns(ns: &Netns, cmd: &[&str]) -> String {
    let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    ns.run(move || {
        std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| e.to_string())
    })
    .unwrap_or_else(|e| e.to_string())
}

/// Asks until the resolver answers (it binds its listeners asynchronously).
async fn until_served(asker: &Netns, gw: IpAddr, name: &str) {
    let t0 = Instant::now();
    while dns_probe(asker, SocketAddr::new(gw, 53), name)
        .await
        .is_err()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the resolver never answered for {name}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SUBNET: &str = "10.93.0.0/24";
const GATEWAY: &str = "10.93.0.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_attach_detach_soak() {
    if !require_root() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let cycles = env_usize("BERTH_SOAK_CYCLES", CI_CYCLES);
    let probe_every = env_usize("BERTH_SOAK_PROBE_EVERY", 10).max(1);
    let every = sample_every(cycles);
    let (mut sb, outside) = sandbox("soak-lib").await;
    let resolv = sb.state_dir().join("resolv.conf");
    std::fs::write(
        &resolv,
        "# no upstream: the soak asks only for container names\n",
    )
    .unwrap();
    let host = berth::Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .resolv_conf(&resolv)
        .build()
        .await
        .unwrap();
    let resolver = tokio::spawn(host.dns_resolver().run());
    let net = host
        .create_network(Network::bridge("soak").subnet(SUBNET.parse().unwrap()))
        .await
        .unwrap();
    assert!(
        net.dns_enabled,
        "a bridge network is served by the resolver"
    );
    let gw: IpAddr = GATEWAY.parse().unwrap();
    let mut long_lived = Vec::new();
    for role in ["l1", "l2", "l3"] {
        let ns = sb.netns(role).await.unwrap();
        host.attach(
            &net,
            Endpoint::new(role, ns.clone()).alias(format!("{role}-svc")),
        )
        .await
        .unwrap();
        long_lived.push(ns);
    }
    let asker = long_lived[0].clone();
    until_served(&asker, gw, "l2").await;
    let mut churn = Vec::new();
    for k in 0..CHURN_NETNS {
        churn.push(sb.netns(&format!("k{k}")).await.unwrap());
    }

    let me = std::process::id();
    let mut clock = Clock::start();
    let mut samples = Vec::with_capacity(SAMPLES + 2);
    samples.push(clock.sample(&sb, me, 0).await);
    for i in 0..cycles {
        let id = format!("k{i}");
        let ns = &churn[i % CHURN_NETNS];
        let ep = Endpoint::new(&id, ns.clone())
            .publish(Port::tcp(HOST_PORT).to(CONTAINER_PORT))
            .alias("churn")
            .hostname(format!("host-{i}"))
            .dns_search("soak.example")
            .add_host(ExtraHost::new("gw", HostAddr::HostGateway));
        let att = host
            .attach(&net, ep)
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: attach: {e}"));
        if i % probe_every == 0 || i + 1 == cycles {
            let addr = att.ip().unwrap();
            prove(sb.host(), ns, &outside, &asker, gw, &[&id, "churn"], addr).await;
        }
        host.detach(&net, &id)
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: detach: {e}"));
        if (i + 1) % every == 0 || i + 1 == cycles {
            push("library", &mut samples, clock.sample(&sb, me, i + 1).await);
        }
    }
    let wall = clock.cycles();
    assert!(
        !resolver.is_finished(),
        "the resolver stopped: {resolver:?}"
    );
    resolver.abort();
    let _ = resolver.await;
    report("library", cycles, &samples, wall);

    for role in ["l1", "l2", "l3"] {
        host.detach(&net, role).await.unwrap();
    }
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&net).await.unwrap();
}

/// The address part of "10.0.0.2/24".
fn addr_of(cidr: &str) -> IpAddr {
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// Kills the child this test started (by its pid) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_connect_disconnect_soak() {
    if !require_root() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let cycles = env_usize("BERTH_SOAK_NETCTL_CYCLES", CI_NETCTL_CYCLES);
    let probe_every = env_usize("BERTH_SOAK_PROBE_EVERY", 10).max(1);
    let every = sample_every(cycles);
    let (mut sb, outside) = sandbox("soak-nc").await;
    let n = Netctl::new(&sb);
    n.ok(&["network", "create", "--subnet", SUBNET, "soak"]);
    // `ip netns exec` execs netctl: the child's pid is the resolver's.
    let server = Server(
        n.command(&["serve-dns"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let gw: IpAddr = GATEWAY.parse().unwrap();
    let mut asker = None;
    for role in ["l1", "l2", "l3"] {
        let ns = sb.netns(role).await.unwrap();
        n.connect(&sb, "soak", role, &["--alias", &format!("{role}-svc")]);
        asker.get_or_insert(ns);
    }
    let asker = asker.unwrap();
    until_served(&asker, gw, "l2").await;
    let mut churn = Vec::new();
    for k in 0..CHURN_NETNS {
        let role = format!("k{k}");
        churn.push((sb.netns(&role).await.unwrap(), sb.netns_path(&role)));
    }

    let mut clock = Clock::start();
    let mut samples = Vec::with_capacity(SAMPLES + 2);
    samples.push(clock.sample(&sb, pid, 0).await);
    for i in 0..cycles {
        let id = format!("k{i}");
        let hostname = format!("host-{i}");
        let (ns, path) = &churn[i % CHURN_NETNS];
        let port = format!("{HOST_PORT}:{CONTAINER_PORT}");
        let att = n.json(&[
            "connect",
            "--netns",
            path_str(path),
            "-p",
            &port,
            "--alias",
            "churn",
            "--hostname",
            &hostname,
            "--dns-search",
            "soak.example",
            "--add-host",
            "gw:host-gateway",
            "soak",
            &id,
        ]);
        if i % probe_every == 0 || i + 1 == cycles {
            let addr = addr_of(att["ipv4"].as_str().expect("ipv4"));
            prove(sb.host(), ns, &outside, &asker, gw, &[&id, "churn"], addr).await;
        }
        n.ok(&["disconnect", "soak", &id]);
        if (i + 1) % every == 0 || i + 1 == cycles {
            push("netctl", &mut samples, clock.sample(&sb, pid, i + 1).await);
        }
    }
    let wall = clock.cycles();
    drop(server);
    report("netctl", cycles, &samples, wall);

    for role in ["l1", "l2", "l3"] {
        n.ok(&["disconnect", "soak", role]);
    }
    n.ok(&["gc"]);
    n.ok(&["network", "rm", "soak"]);
}
