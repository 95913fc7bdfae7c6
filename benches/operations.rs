//! berth's per-operation latency in a sandbox (root): attach + detach of one container on a warm
//! bridge network, with 0 and 2 published ports, and where attach time goes per step (timed
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
    let m = marks.clone();
    let (sb, host, c) = rt.block_on(async {
        let mut sb = Sandbox::new("bench-ops").await.unwrap();
        let host = Host::builder()
            .state_dir(sb.state_dir())
            .netns(sb.host().clone())
            .fault_hook(Arc::new(move |step| {
                m.lock().unwrap().push((step, Instant::now()));
                Ok(())
            }))
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
}

/// Median time of each attach step (from the previous step's end), over 20 attaches; the last
/// line is what follows the record write (re-electing the container's default route).
fn profile(w: &World) {
    let mut per_step: Vec<(String, Vec<Duration>)> = Vec::new();
    for _ in 0..20 {
        w.marks.lock().unwrap().clear();
        let start = Instant::now();
        w.rt.block_on(w.host.attach("bench", spec(w, 2))).unwrap();
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
        w.rt.block_on(w.host.detach("bench", "c")).unwrap();
    }
    println!(
        "attach profile (2 published ports, median of 20; each step from the previous one's end):"
    );
    for (label, mut v) in per_step {
        v.sort();
        println!(
            "  {label:<45} {:>8.3} ms",
            v[v.len() / 2].as_secs_f64() * 1e3
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = operations
}
criterion_main!(benches);
