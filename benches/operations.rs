//! berth's per-operation latency in a sandbox (root): attach + detach of one container on a warm
//! bridge network, with 0 and 2 published ports, and where attach and detach time goes per step (timed
//! through the `FaultHook`, called after each step). `cargo bench --bench operations`.
//! The side-by-side comparison with netavark and the CNI plugins is the benchmark issue's work.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::sandbox::Sandbox;
use berth::{Endpoint, Host, Network, Port, Step};

use criterion::{Criterion, criterion_group, criterion_main};

type Marks = Arc<Mutex<Vec<(Step, Instant)>>>;

struct World {
    rt: tokio::runtime::Runtime,
    _sb: Sandbox,
    host: Host,
    c: berth::Netns,
    marks: Marks,
}

fn world() -> Option<World> {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: operations bench needs root (sandbox namespaces)");
        return None;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let marks: Marks = Arc::default();
    let (sb, host, c) = rt.block_on(async {
        let mut sb = Sandbox::new("bench-ops").await.unwrap();
        let host = Host::builder()
            .state_dir(sb.state_dir())
            .netns(sb.host().clone())
            .fault_hook(hook(&marks))
            .build()
            .await
            .unwrap();
        host.create_network(Network::bridge("bench").subnet("10.200.0.0/16".parse().unwrap()))
            .await
            .unwrap();
        let c = sb.netns("c").await.unwrap();
        (sb, host, c)
    });
    Some(World {
        rt,
        _sb: sb,
        host,
        c,
        marks,
    })
}

fn spec(w: &World, ports: u16) -> berth::EndpointSpec {
    (0..ports).fold(Endpoint::new("c", w.c.clone()), |e, i| {
        e.publish(Port::tcp(18080 + i).to(80 + i))
    })
}

fn operations(cr: &mut Criterion) {
    let Some(w) = world() else { return };
    for ports in [0u16, 2] {
        cr.bench_function(&format!("attach, {ports} published ports"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    w.rt.block_on(w.host.attach("bench", spec(&w, ports)))
                        .unwrap();
                    total += t.elapsed();
                    w.rt.block_on(w.host.detach("bench", "c")).unwrap();
                }
                total
            })
        });
        cr.bench_function(&format!("detach, {ports} published ports"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    w.rt.block_on(w.host.attach("bench", spec(&w, ports)))
                        .unwrap();
                    let t = Instant::now();
                    w.rt.block_on(w.host.detach("bench", "c")).unwrap();
                    total += t.elapsed();
                }
                total
            })
        });
    }
    profile(&w);
    if let Ok(sizes) = std::env::var("BERTH_BENCH_SCALE") {
        scale(&w, &sizes);
    }
}

/// Median time of each attach and detach step (from the previous step's end), over 20 rounds;
/// the last line of each is what follows the record write (re-electing the container's default
/// route).
fn profile(w: &World) {
    let (mut attach, mut detach) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        timed(w, &mut attach, || {
            w.rt.block_on(w.host.attach("bench", spec(w, 2))).map(drop)
        });
        timed(w, &mut detach, || {
            w.rt.block_on(w.host.detach("bench", "c"))
        });
    }
    for (what, per_step) in [("attach", attach), ("detach", detach)] {
        println!(
            "{what} profile (2 published ports, median of 20; each step from the previous one's end):"
        );
        for (label, mut v) in per_step {
            v.sort();
            println!(
                "  {label:<45} {:>8.3} ms",
                v[v.len() / 2].as_secs_f64() * 1e3
            );
        }
    }
}

/// Attach latency as the network fills: at each size N of `sizes` (`1,100,500,1000`), N-1
/// other containers each publishing one port are attached, then the median of 31
/// attach+detach cycles of one more container (one published port) is printed, with its steps.
/// Before measuring it flushes the fill's writes (`sync`: else the probes' fsyncs wait for
/// them) and waits `BERTH_BENCH_SETTLE` seconds (default 10): new container interfaces send
/// IPv6 DAD, router solicitations and MLD reports for a few seconds, and the bridge floods each
/// to every port, which loads the CPUs for a while after a burst of attaches.
/// Opt-in: `BERTH_BENCH_SCALE=1,100,500,1000 cargo bench --bench operations`.
fn scale(w: &World, sizes: &str) {
    let mut sb = w.rt.block_on(Sandbox::new("bench-scale")).unwrap();
    let host =
        w.rt.block_on(
            Host::builder()
                .state_dir(sb.state_dir())
                .netns(sb.host().clone())
                .fault_hook(hook(&w.marks))
                .build(),
        )
        .unwrap();
    let net = Network::bridge("scale").subnet("10.201.0.0/20".parse().unwrap());
    w.rt.block_on(host.create_network(net)).unwrap();
    let probe = w.rt.block_on(sb.netns("probe")).unwrap();
    let settle = std::env::var("BERTH_BENCH_SETTLE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut filled = 0u16;
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<u16>().ok())
    {
        while filled + 1 < n {
            let ns = w.rt.block_on(sb.netns(&format!("f{filled}"))).unwrap();
            let ep =
                Endpoint::new(format!("f{filled}"), ns).publish(Port::tcp(20000 + filled).to(80));
            w.rt.block_on(host.attach("scale", ep)).unwrap();
            filled += 1;
        }
        nix::unistd::sync();
        std::thread::sleep(Duration::from_secs(settle));
        let (mut per_step, mut total) = (PerStep::new(), Vec::new());
        for _ in 0..31 {
            let ep = Endpoint::new("probe", probe.clone()).publish(Port::tcp(19999).to(80));
            let t = Instant::now();
            timed(w, &mut per_step, || {
                w.rt.block_on(host.attach("scale", ep)).map(drop)
            });
            total.push(t.elapsed());
            w.rt.block_on(host.detach("scale", "probe")).unwrap();
        }
        total.sort();
        println!(
            "next attach at N={n} (1 published port, median of 31): {:.3} ms (min {:.3})",
            total[total.len() / 2].as_secs_f64() * 1e3,
            total[0].as_secs_f64() * 1e3
        );
        for (label, mut v) in per_step {
            v.sort();
            println!(
                "  {label:<45} {:>8.3} ms",
                v[v.len() / 2].as_secs_f64() * 1e3
            );
        }
    }
}

fn hook(marks: &Marks) -> berth::FaultHook {
    let m = marks.clone();
    Arc::new(move |step| {
        m.lock().unwrap().push((step, Instant::now()));
        Ok(())
    })
}

type PerStep = Vec<(String, Vec<Duration>)>;

/// Runs `op` once and adds the time of each step the `FaultHook` saw to `per_step`.
fn timed(w: &World, per_step: &mut PerStep, op: impl FnOnce() -> berth::Result<()>) {
    w.marks.lock().unwrap().clear();
    let start = Instant::now();
    op().unwrap();
    let end = Instant::now();
    let mut marks: Vec<(String, Instant)> = w
        .marks
        .lock()
        .unwrap()
        .iter()
        .map(|(s, t)| (s.to_string(), *t))
        .collect();
    marks.push(("after persist (default-route election)".into(), end));
    let mut prev = start;
    for (label, at) in marks {
        let d = at.duration_since(prev);
        prev = at;
        match per_step.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(d),
            None => per_step.push((label, vec![d])),
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = operations
}
criterion_main!(benches);
