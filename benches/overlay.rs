//! Overlay networks across simulated hosts (root, Debian's `etcd-server`):
//! `cargo bench --bench overlay [-- --quick]`. Writes `target/bench/overlay.md`.
//!
//! - **attach**: an overlay attach in-process against a bridge attach on the same host, and the
//!   store round trips one overlay attach makes;
//! - **convergence** at 2, 8 and 32 hosts (threads in this process, not processes): from
//!   `attach` returning on host B until a TCP connect from a container on host A succeeds;
//! - **kernel objects per host** against endpoints: FDB and neighbour entries;
//! - **a dead host**: from its agent dying until its entries are gone from a peer;
//! - **encrypted vs plain overlay** (`-o encrypted`): attach cost and TCP throughput between
//!   two hosts. ESP needs a kernel with `esp4` (Debian's): on one without, the section says so;
//!   in the VM tier's guest, `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="target/debug/xtask
//!   vm-run" cargo bench --bench overlay -- --quick --only-encrypted` measures it there (figures
//!   from an emulated machine, labelled so).
//!
//! Everything runs in sandbox namespaces (an underlay bridge joining the host netns); etcd runs
//! on a loopback port of this process's netns, its data in a temp dir, killed at the end.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth::cluster::store::{KeyValue, LeaseId, Revision, Txn, WatchStream};
use berth::cluster::{ClusterSecret, ClusterSettings, ClusterStore, Etcd, HostIdentity};
use berth::netlink::{Netlink, VethPeer};
use berth::sandbox::{EtcdServer, Sandbox};
use berth::{Endpoint, Host, MacAddr, Netns, Network};

/// A store that counts the requests it forwards (round trips).
#[derive(Debug)]
struct Counting {
    inner: Etcd,
    calls: Arc<AtomicU64>,
}

impl Counting {
    fn hit(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl ClusterStore for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, key: &str) -> berth::Result<Option<KeyValue>> {
        self.hit();
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> berth::Result<(Vec<KeyValue>, Revision)> {
        self.hit();
        self.inner.list(prefix).await
    }
    async fn txn(&self, txn: Txn) -> berth::Result<bool> {
        self.hit();
        self.inner.txn(txn).await
    }
    async fn grant(&self, ttl: Duration) -> berth::Result<LeaseId> {
        self.hit();
        self.inner.grant(ttl).await
    }
    async fn keep_alive(&self, lease: LeaseId) -> berth::Result<Option<Duration>> {
        self.hit();
        self.inner.keep_alive(lease).await
    }
    async fn time_to_live(&self, lease: LeaseId) -> berth::Result<Option<Duration>> {
        self.hit();
        self.inner.time_to_live(lease).await
    }
    async fn revoke(&self, lease: LeaseId) -> berth::Result<()> {
        self.hit();
        self.inner.revoke(lease).await
    }
    async fn watch(&self, prefix: &str, from: Revision) -> berth::Result<WatchStream> {
        self.hit();
        self.inner.watch(prefix, from).await
    }
}

struct SimHost {
    ns: Netns,
    nl: Netlink,
    host: Host,
    vtep: IpAddr,
    calls: Arc<AtomicU64>,
    agent: Option<tokio::task::JoinHandle<()>>,
}

struct World {
    sb: Sandbox,
    hosts: Vec<SimHost>,
    containers: u32,
}

fn settings() -> ClusterSettings {
    ClusterSettings {
        lease_ttl: Duration::from_secs(3),
        reclaim_grace: Duration::from_secs(60),
        expiry_hold: Duration::from_millis(500),
        reconcile_every: Duration::from_secs(10),
        ..ClusterSettings::default()
    }
}

async fn connect_store(endpoint: &str, prefix: &str) -> Etcd {
    let t0 = Instant::now();
    loop {
        if let Ok(e) = Etcd::connect([endpoint.to_string()], prefix).await
            && e.list("").await.is_ok()
        {
            return e;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "etcd did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` hosts on underlay `10.98.S.0/24`, agents running, under store prefix `/bench-S`.
async fn world(etcd: &str, s: u8, n: usize) -> World {
    let mut sb = Sandbox::new(&format!("bov{s}")).await.unwrap();
    let under = Netlink::open(sb.host()).await.unwrap();
    let br = under.link().bridge("ul").mtu(1500).add().await.unwrap();
    let mut hosts = Vec::new();
    for i in 1..=n {
        let role = format!("h{i}");
        let ns = sb.netns(&role).await.unwrap();
        let v = under
            .link()
            .veth(&format!("ul-{role}"))
            .master(br.index)
            .peer(VethPeer {
                name: "eth0",
                mac: MacAddr::random(),
                netns: &ns,
            })
            .add()
            .await
            .unwrap();
        under
            .link()
            .set(v.index, &format!("ul-{role}"))
            .up()
            .apply()
            .await
            .unwrap();
        let nl = Netlink::open(&ns).await.unwrap();
        let eth = nl.require_link("eth0").await.unwrap();
        let vtep: IpAddr = format!("10.98.{s}.{i}").parse().unwrap();
        nl.address().add(eth.index, "eth0", vtep, 24).await.unwrap();
        nl.link().set(eth.index, "eth0").up().apply().await.unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let store = Counting {
            inner: connect_store(etcd, &format!("/bench-{s}")).await,
            calls: calls.clone(),
        };
        let host = Host::builder()
            .state_dir(sb.state_dir().join(&role))
            .netns(ns.clone())
            .resolv_conf(sb.state_dir().join("none"))
            .cluster(store, HostIdentity::new(&role).advertise(vtep))
            .cluster_settings(settings())
            .cluster_secret(
                ClusterSecret::new(b"berth overlay bench: a secret of 32+ bytes".to_vec()).unwrap(),
            )
            .build()
            .await
            .unwrap();
        let agent = Some(tokio::spawn(host.overlay_agent().unwrap().run()));
        hosts.push(SimHost {
            ns,
            nl,
            host,
            vtep,
            calls,
            agent,
        });
    }
    hosts[0]
        .host
        .create_network(Network::overlay("ov").subnet(format!("10.210.{s}.0/24").parse().unwrap()))
        .await
        .unwrap();
    World {
        sb,
        hosts,
        containers: 0,
    }
}

impl World {
    async fn attach(&mut self, h: usize) -> (Netns, IpAddr, Duration) {
        self.containers += 1;
        let role = format!("c{}", self.containers);
        let ns = self.sb.netns(&role).await.unwrap();
        let t0 = Instant::now();
        let att = self.hosts[h]
            .host
            .attach("ov", Endpoint::new(&role, ns.clone()))
            .await
            .unwrap();
        (ns, att.ip().unwrap(), t0.elapsed())
    }

    async fn entries(&self, h: usize) -> (usize, usize) {
        let nl = &self.hosts[h].nl;
        let Some(vx) = nl
            .links()
            .await
            .unwrap()
            .into_iter()
            .find(|l| l.name.starts_with("vx-"))
        else {
            return (0, 0);
        };
        (
            nl.fdb(vx.index).await.unwrap().len(),
            nl.neighbours(vx.index).await.unwrap().len(),
        )
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Until a TCP connect from `client` to `target` (a listener started in the server netns)
/// succeeds: the convergence time.
async fn until_reachable(client: &Netns, target: SocketAddr, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let client = client.clone();
    tokio::task::spawn_blocking(move || {
        while t0.elapsed() < limit {
            let ok = client
                .run(move || TcpStream::connect_timeout(&target, Duration::from_millis(20)).is_ok())
                .unwrap_or(false);
            if ok {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    })
    .await
    .unwrap()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: overlay bench needs root (sandbox namespaces)");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let only_encrypted = std::env::args().any(|a| a == "--only-encrypted");
    if !EtcdServer::installed() {
        println!("SKIPPED: overlay bench needs etcd (apt-get install etcd-server)");
        return;
    }
    let etcd = EtcdServer::start("bench").expect("start etcd");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        let mut r = if only_encrypted {
            String::from("# Overlay benchmark (encrypted vs plain only)\n\n")
        } else {
            run(&etcd.endpoint(), quick).await
        };
        r += &encrypted_vs_plain(&etcd.endpoint(), quick).await;
        r
    });
    println!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("overlay.md"), &report).unwrap();
    println!("written to target/bench/overlay.md");
}

async fn run(etcd: &str, quick: bool) -> String {
    let mut out = String::from("# Overlay benchmark\n\n");
    out += &format!(
        "Lease TTL {:?}, expiry hold {:?}; etcd {} on loopback; {}.\n\n",
        settings().lease_ttl,
        settings().expiry_hold,
        String::from_utf8_lossy(
            &Command::new("etcd")
                .arg("--version")
                .output()
                .unwrap()
                .stdout
        )
        .lines()
        .next()
        .unwrap_or(""),
        if quick { "quick run" } else { "full run" }
    );

    // Attach cost: overlay vs bridge on host 1 of a 2-host cluster.
    let reps = if quick { 15 } else { 40 };
    let mut w = world(etcd, 1, 2).await;
    w.hosts[0]
        .host
        .create_network(Network::bridge("br").subnet("10.211.1.0/24".parse().unwrap()))
        .await
        .unwrap();
    let (mut ov, mut br, mut trips) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps {
        let ns = w.sb.netns(&format!("a{i}")).await.unwrap();
        let before = w.hosts[0].calls.load(Ordering::Relaxed);
        let t0 = Instant::now();
        w.hosts[0]
            .host
            .attach("ov", Endpoint::new(format!("a{i}"), ns.clone()))
            .await
            .unwrap();
        ov.push(t0.elapsed());
        trips.push(w.hosts[0].calls.load(Ordering::Relaxed) - before);
        let ns = w.sb.netns(&format!("b{i}")).await.unwrap();
        let t0 = Instant::now();
        w.hosts[0]
            .host
            .attach("br", Endpoint::new(format!("b{i}"), ns.clone()))
            .await
            .unwrap();
        br.push(t0.elapsed());
    }
    trips.sort();
    let (mo, mb) = (median(&mut ov), median(&mut br));
    out += "## Attach\n\n| | median | p90 |\n|---|---|---|\n";
    out += &format!("| overlay | {} | {} |\n", ms(mo), ms(pct(&mut ov, 90)));
    out += &format!(
        "| bridge (same host) | {} | {} |\n\n",
        ms(mb),
        ms(pct(&mut br, 90))
    );
    out += &format!(
        "Overlay/bridge: {:.2}×. Store round trips per overlay attach: median {} (min {}, max {}); \
         the agent's keep-alives and watch of the same host count in too, so the minimum is the \
         attach's own.\n\n",
        mo.as_secs_f64() / mb.as_secs_f64(),
        trips[trips.len() / 2],
        trips[0],
        trips[trips.len() - 1]
    );
    drop(w);

    // Convergence at 2, 8, 32 hosts.
    out += "## Convergence\n\nFrom `attach` returning on host B until host A's forwarding entry \
            for it is in the kernel, and until a TCP connect from a container on host A, tried \
            from that instant every few ms, succeeds (a connect whose ARP went out before the \
            entry was there waits for the container's ARP retry, 1 s).\n\n\
            | hosts | samples | entry: median | entry: p90 | TCP: median | TCP: p90 | TCP: max |\n\
            |---|---|---|---|---|---|---|\n";
    let mut dead_line = String::new();
    let mut objects = String::new();
    for (s, n) in [(2u8, 2usize), (3, 8), (4, 32)] {
        let mut w = world(etcd, s, n).await;
        let (a_ns, _, _) = w.attach(0).await;
        for h in 1..n {
            w.attach(h).await;
        }
        let samples = if quick { 8 } else { 20 };
        let (mut conv, mut fdb) = (Vec::new(), Vec::new());
        for k in 0..samples {
            let b = 1 + k % (n - 1);
            w.containers += 1;
            let role = format!("c{}", w.containers);
            let ns = w.sb.netns(&role).await.unwrap();
            let lst = ns
                .run(|| TcpListener::bind("0.0.0.0:7000"))
                .unwrap()
                .unwrap();
            let acceptor = std::thread::spawn(move || {
                let _ = lst.accept();
            });
            let att = w.hosts[b]
                .host
                .attach("ov", Endpoint::new(&role, ns.clone()))
                .await
                .unwrap();
            let t0 = Instant::now();
            let target = SocketAddr::new(att.ip().unwrap(), 7000);
            let mac = att.mac.unwrap();
            let nl = w.hosts[0].nl.clone();
            let fdb_wait = tokio::spawn(async move {
                loop {
                    if let Some(vx) = nl
                        .links()
                        .await
                        .unwrap()
                        .into_iter()
                        .find(|l| l.name.starts_with("vx-"))
                        && nl.fdb(vx.index).await.unwrap().iter().any(|e| e.mac == mac)
                    {
                        return t0.elapsed();
                    }
                    if t0.elapsed() > Duration::from_secs(10) {
                        return t0.elapsed();
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            });
            match until_reachable(&a_ns, target, Duration::from_secs(10)).await {
                Some(d) => conv.push(d),
                None => println!("convergence sample {k} at {n} hosts: not within 10 s"),
            }
            fdb.push(fdb_wait.await.unwrap());
            let _ = acceptor.join();
        }
        if !conv.is_empty() {
            let len = conv.len();
            out += &format!(
                "| {n} | {len} | {} | {} | {} | {} | {} |\n",
                ms(median(&mut fdb)),
                ms(pct(&mut fdb, 90)),
                ms(median(&mut conv)),
                ms(pct(&mut conv, 90)),
                ms(*conv.iter().max().unwrap())
            );
        }
        if n == 8 {
            // Kernel objects per host against endpoints per host.
            objects += "## Kernel objects on one host\n\n| hosts | endpoints per host | FDB entries | neighbour entries |\n|---|---|---|---|\n";
            let per_host = w.containers as usize / n;
            for extra in 0..3 {
                if extra > 0 {
                    for _ in 0..per_host * extra {
                        for h in 0..n {
                            w.attach(h).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                let e = w.entries(0).await;
                objects += &format!(
                    "| {n} | {:.1} | {} | {} |\n",
                    w.containers as f64 / n as f64,
                    e.0,
                    e.1
                );
                if quick {
                    break;
                }
            }
            objects += "\nOne FDB entry per remote endpoint's MAC and one neighbour entry per remote \
                        address: O(remote endpoints), nothing per local one.\n\n";
            // A dead host.
            let victim = n - 1;
            let vtep = w.hosts[victim].vtep;
            w.hosts[victim].agent.take().unwrap().abort();
            let t0 = Instant::now();
            loop {
                let nl = &w.hosts[0].nl;
                let vx = nl
                    .links()
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|l| l.name.starts_with("vx-"))
                    .unwrap();
                if !nl
                    .fdb(vx.index)
                    .await
                    .unwrap()
                    .iter()
                    .any(|e| e.dst == vtep)
                {
                    break;
                }
                if t0.elapsed() > Duration::from_secs(30) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            dead_line = format!(
                "## A dead host\n\nFrom its agent dying (no goodbye) until a peer's entries for \
                 it are gone: {} (TTL {:?} + hold {:?}; etcd checks expiry every ~500 ms).\n\n",
                ms(t0.elapsed()),
                settings().lease_ttl,
                settings().expiry_hold
            );
        }
        let _ = &w.hosts[0].ns;
        drop(w);
    }
    out += "\n";
    out += &objects;
    out += &dead_line;
    out
}

/// Sends `len` bytes from `client` to a listener on `server` at `to`: the throughput, Gbit/s.
fn throughput(server: &Netns, client: &Netns, to: SocketAddr, len: usize) -> f64 {
    use std::io::{Read, Write};
    let lst = server
        .run(move || TcpListener::bind(SocketAddr::new([0, 0, 0, 0].into(), to.port())))
        .unwrap()
        .unwrap();
    let rx = std::thread::spawn(move || {
        let (mut s, _) = lst.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0usize;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    });
    let mut s = client
        .run(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    let chunk = vec![0x5au8; 1 << 16];
    let t0 = Instant::now();
    let mut left = len;
    while left > 0 {
        let k = left.min(chunk.len());
        s.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = rx.join().unwrap();
    assert_eq!(got, len);
    (len as f64 * 8.0) / t0.elapsed().as_secs_f64() / 1e9
}

/// Where this runs: the kernel, and whether the machine is a QEMU guest (the VM tier's).
fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let vendor = std::fs::read_to_string("/sys/class/dmi/id/sys_vendor").unwrap_or_default();
    let guest = if vendor.trim() == "QEMU" {
        "a QEMU guest (the VM tier's: emulated machine, figures not comparable with the host's)"
    } else {
        "this machine"
    };
    format!("kernel {}, {guest}", kernel.trim())
}

/// The section when the kernel has no ESP.
fn skipped(mut out: String, e: &berth::Error) -> String {
    out += &format!(
        "SKIPPED on this kernel: {e}. Run it in the VM tier's guest (see the file's docs).\n\n"
    );
    println!("SKIPPED: encrypted vs plain overlay bench: {e}");
    out
}

/// Encrypted (ESP) against plain overlay between two hosts: attach cost (the first attach of
/// a host makes its SAs; later ones find them) and TCP throughput container to container.
async fn encrypted_vs_plain(etcd: &str, quick: bool) -> String {
    let mut out = format!("## Encrypted vs plain overlay\n\nOn {}.\n\n", machine());
    let mut w = world(etcd, 5, 2).await;
    let sec = w.hosts[0]
        .host
        .create_network(
            Network::overlay("sec")
                .encrypted(true)
                .subnet("10.213.5.0/24".parse().unwrap()),
        )
        .await
        .unwrap();
    let _ = sec;
    // The peer's endpoints first: host 1's attaches then make SAs towards host 2.
    let mut peer = std::collections::BTreeMap::new();
    for net in ["ov", "sec"] {
        let role = format!("peer-{net}");
        let ns = w.sb.netns(&role).await.unwrap();
        match w.hosts[1]
            .host
            .attach(net, Endpoint::new(&role, ns.clone()))
            .await
        {
            Ok(att) => {
                peer.insert(net, (ns, att.ip().unwrap()));
            }
            Err(e @ berth::Error::Unsupported { .. }) => return skipped(out, &e),
            Err(e) => panic!("attach to {net}: {e}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reps = if quick { 10 } else { 30 };
    let mut rows = String::new();
    for net in ["ov", "sec"] {
        let mut times = Vec::new();
        let mut first_ns = None;
        for i in 0..reps {
            let role = format!("{net}-{i}");
            let ns = w.sb.netns(&role).await.unwrap();
            let t0 = Instant::now();
            let att = match w.hosts[0]
                .host
                .attach(net, Endpoint::new(&role, ns.clone()))
                .await
            {
                Ok(att) => att,
                // The first host to make SAs finds the kernel has no ESP.
                Err(e @ berth::Error::Unsupported { .. }) => return skipped(out, &e),
                Err(e) => panic!("attach to {net}: {e}"),
            };
            times.push(t0.elapsed());
            first_ns.get_or_insert((ns, att.ip().unwrap()));
        }
        let first = times[0];
        let mut rest = times[1..].to_vec();
        let (client, _) = first_ns.unwrap();
        let (server, ip) = &peer[net];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let len = if quick { 32 << 20 } else { 128 << 20 };
        let (server, client, to) = (server.clone(), client.clone(), SocketAddr::new(*ip, 7700));
        let gbit = tokio::task::spawn_blocking(move || throughput(&server, &client, to, len))
            .await
            .unwrap();
        rows += &format!(
            "| {} | {} | {} | {} | {gbit:.2} |\n",
            if net == "sec" {
                "encrypted (ESP)"
            } else {
                "plain (VXLAN)"
            },
            ms(first),
            ms(median(&mut rest)),
            ms(pct(&mut rest, 90)),
        );
    }
    out += "| overlay | first attach on the host | attach: median | attach: p90 | TCP, Gbit/s |\n\
            |---|---|---|---|---|\n";
    out += &rows;
    out += "\nThe first attach of a host to an encrypted network makes its SAs and policy towards \
            the peer (xfrm netlink, a key derivation per SA); later attaches only check them. \
            Throughput: one TCP stream, container to container across the two hosts.\n\n";
    drop(w);
    out
}
