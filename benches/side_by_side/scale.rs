//! Workload (b): scale. Each subject's network grows from 0 to the last checkpoint (1,000 in a
//! full run), one container at a time, each with one published TCP port; the subjects take
//! turns container by container, so they grow together and share the machine's noise. Every
//! one of those attaches is timed (the curve in the plot). At each checkpoint N the next attach
//! is sampled a few times (attach one more container, detach it again, subjects interleaved)
//! and the host netns' nf_tables objects are counted.

use std::time::{Duration, Instant};

use berth::MacAddr;
use berth::netlink::Netlink;

use crate::subjects::{Op, Subject};
use crate::world::{Container, NftCounts, World};
use crate::{check_stop, rt};

/// Figures at one checkpoint.
pub struct AtN {
    /// Containers attached.
    pub n: u32,
    /// The sampled next attaches.
    pub samples: Vec<Op>,
    /// nf_tables objects in the host netns with `n` containers attached.
    pub nft: NftCounts,
    /// Peak RSS of the process(es) of one more attach (process sides; untimed, run through
    /// the launcher), KiB.
    pub rss_kib: Option<u64>,
    /// berth (lib) only: creating one veth pair with its host end on berth's bridge (holding
    /// `n` ports) through rtnetlink — the kernel's share of the netlink step at this N.
    pub veth_floor: Vec<Duration>,
}

/// One subject's figures.
pub struct ScaleSubject {
    /// Subject key.
    pub key: &'static str,
    /// Subject label.
    pub label: &'static str,
    /// `(N before the attach, its time)` for every growing attach.
    pub fill: Vec<(u32, Duration)>,
    /// Per checkpoint.
    pub at: Vec<AtN>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Workload (b)'s results.
pub struct Scale {
    /// The checkpoints.
    pub checkpoints: Vec<u32>,
    /// Per subject.
    pub subjects: Vec<ScaleSubject>,
    /// Peak RSS the launcher reports for `/bin/true`: the floor of the process sides' figures.
    pub launcher_floor_kib: Option<u64>,
}

/// Runs workload (b) up to the last of `checkpoints`, `samples` next-attaches at each.
pub fn run(
    subjects: &mut [Box<dyn Subject>],
    checkpoints: &[u32],
    samples: usize,
) -> Result<Scale, String> {
    let mut out: Vec<ScaleSubject> = Vec::new();
    for s in subjects.iter_mut() {
        s.create_network()?;
        out.push(ScaleSubject {
            key: s.key(),
            label: s.label(),
            fill: Vec::new(),
            at: Vec::new(),
            error: None,
        });
    }
    let launcher_floor_kib = crate::exec::measure_rss(|| {
        crate::exec::Proc::new(subjects[0].world().host(), "/bin/true").run()
    })
    .ok()
    .and_then(|r| r.maxrss_kib);
    let n_subj = subjects.len();
    let mut held: Vec<Vec<Container>> = (0..n_subj).map(|_| Vec::new()).collect();
    let max = checkpoints.iter().copied().max().unwrap_or(0);
    let t0 = Instant::now();
    for i in 0..max {
        check_stop()?;
        for k in 0..n_subj {
            let si = (i as usize + k) % n_subj;
            if out[si].error.is_some() {
                continue;
            }
            let s = &subjects[si];
            let c = rt().block_on(s.world().container(i))?;
            match s.attach(&c, &vec![(20000 + i as u16, 80)]) {
                Ok(op) => out[si].fill.push((i, op.elapsed)),
                Err(e) => {
                    eprintln!("  {} failed at N={i}: {e}", s.label());
                    out[si].error = Some(format!("failed at N={i}: {e}"));
                }
            }
            held[si].push(c);
        }
        let n = i + 1;
        if n % 50 == 0 || checkpoints.contains(&n) {
            let last: Vec<String> = out
                .iter()
                .map(|o| match o.fill.last() {
                    Some((_, d)) if o.error.is_none() => {
                        format!("{} {:.1} ms", o.key, d.as_secs_f64() * 1e3)
                    }
                    _ => format!("{} —", o.key),
                })
                .collect();
            println!(
                "  N={n:>5} ({:>4.0} s): last attach {}",
                t0.elapsed().as_secs_f64(),
                last.join(", ")
            );
        }
        if let Some(ci) = checkpoints.iter().position(|&c| c == n) {
            checkpoint(subjects, &mut out, n, ci as u32, samples)?;
        }
    }
    drop(held);
    Ok(Scale {
        checkpoints: checkpoints.to_vec(),
        subjects: out,
        launcher_floor_kib,
    })
}

fn checkpoint(
    subjects: &[Box<dyn Subject>],
    out: &mut [ScaleSubject],
    n: u32,
    ci: u32,
    samples: usize,
) -> Result<(), String> {
    let n_subj = subjects.len();
    let mut at: Vec<AtN> = (0..n_subj)
        .map(|_| AtN {
            n,
            samples: Vec::new(),
            nft: NftCounts::default(),
            rss_kib: None,
            veth_floor: Vec::new(),
        })
        .collect();
    for (si, s) in subjects.iter().enumerate() {
        if out[si].error.is_some() {
            continue;
        }
        at[si].nft = s.world().nft()?;
        if s.key() == "lib" {
            at[si].veth_floor =
                rt().block_on(veth_floor(s.world(), 40_000 + ci * 100 + 98, samples))?;
        }
        // One more attach (and detach), untimed, for the peak RSS of its process(es).
        let idx = 40_000 + ci * 100 + 99;
        let x = rt().block_on(s.world().container(idx))?;
        let ports = vec![(30_000 + (ci * 100 + 99) as u16, 80)];
        let op = crate::exec::measure_rss(|| {
            let a = s.attach(&x, &ports)?;
            s.detach(&x, &ports)?;
            Ok::<_, String>(a)
        });
        match op {
            Ok(a) => at[si].rss_kib = a.maxrss_kib,
            Err(e) => eprintln!("  {} at N={n} (RSS run): {e}", s.label()),
        }
    }
    for j in 0..samples as u32 {
        check_stop()?;
        for k in 0..n_subj {
            let si = (j as usize + k) % n_subj;
            if out[si].error.is_some() {
                continue;
            }
            let s = &subjects[si];
            let idx = 40_000 + ci * 100 + j;
            let x = rt().block_on(s.world().container(idx))?;
            let ports = vec![(30_000 + (ci * 100 + j) as u16, 80)];
            match s
                .attach(&x, &ports)
                .and_then(|a| s.detach(&x, &ports).map(|_| a))
            {
                Ok(a) => at[si].samples.push(a),
                Err(e) => {
                    eprintln!("  {} failed at N={n} (sample): {e}", s.label());
                    out[si].error = Some(format!("failed at N={n}: {e}"));
                }
            }
        }
    }
    for (si, a) in at.into_iter().enumerate() {
        if !a.samples.is_empty() || a.rss_kib.is_some() {
            out[si].at.push(a);
        }
    }
    Ok(())
}

/// Times creating a veth pair whose host end joins the (only) bridge in `w`'s host netns and
/// whose peer is born in a container netns, `k` times (each deleted again, untimed).
async fn veth_floor(w: &World, idx: u32, k: usize) -> Result<Vec<Duration>, String> {
    let nl = Netlink::open(w.host()).await.map_err(|e| e.to_string())?;
    let links = nl.links().await.map_err(|e| e.to_string())?;
    let bridge = links
        .iter()
        .find(|l| l.is_bridge)
        .ok_or("no bridge in the host netns")?
        .index;
    let c = w.container(idx).await?;
    let mac: MacAddr = "02:00:00:00:f1:02".parse().map_err(|e| format!("{e}"))?;
    let mut out = Vec::new();
    for _ in 0..k {
        let t = Instant::now();
        nl.link()
            .veth("flr0")
            .master(bridge)
            .mtu(1500)
            .group(0)
            .peer(berth::netlink::VethPeer {
                name: "eth9",
                mac,
                netns: &c.netns,
            })
            .add()
            .await
            .map_err(|e| e.to_string())?;
        out.push(t.elapsed());
        nl.delete_link("flr0").await.map_err(|e| e.to_string())?;
    }
    Ok(out)
}
