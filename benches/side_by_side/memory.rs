//! Workload (d): memory. The peak RSS of a process holding N endpoints through berth (a runtime
//! with one `Host`), measured in a fresh child process — the harness binary re-run with
//! `--hold N` — so nothing else of the harness counts. It builds its own sandbox, attaches N
//! containers with one published port each, and prints its `VmHWM` (peak RSS) and `VmRSS`.
//!
//! The other sides are a process per operation and hold nothing between operations: for them the
//! comparable figure is the peak RSS of one operation's process(es) at the largest N, taken from
//! the scale workload (`wait4`'s rusage).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::rt;
use crate::subjects::Subject;
use crate::subjects::berth_lib::BerthLib;
use crate::world::World;

/// What the child reports.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Held {
    /// Endpoints held.
    pub n: u32,
    /// RSS after the `Host` and the network were made, before any attach, KiB.
    pub baseline_kib: u64,
    /// RSS with `n` endpoints attached, KiB.
    pub rss_kib: u64,
    /// Peak RSS over the child's life, KiB.
    pub hwm_kib: u64,
    /// How long the N attaches took, s.
    pub seconds: f64,
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The child: attaches `n` endpoints and prints one JSON line (a [`Held`]).
pub fn hold_child(n: u32) -> Result<(), String> {
    let world = rt().block_on(World::new("mem"))?;
    let mut lib = BerthLib::new(world)?;
    lib.create_network()?;
    let baseline_kib = status_kib("VmRSS:");
    let t = Instant::now();
    let mut held = Vec::new();
    for i in 0..n {
        crate::check_stop()?;
        let c = rt().block_on(lib.world().container(i))?;
        lib.attach(&c, &vec![(20_000 + i as u16, 80)])?;
        held.push(c);
    }
    let h = Held {
        n,
        baseline_kib,
        rss_kib: status_kib("VmRSS:"),
        hwm_kib: status_kib("VmHWM:"),
        seconds: t.elapsed().as_secs_f64(),
    };
    println!("{}", serde_json::to_string(&h).unwrap());
    Ok(())
}

/// Runs the child for `n` endpoints and returns what it reported.
pub fn run(n: u32) -> Result<Held, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--bench", "--hold", &n.to_string()])
        .output()
        .map_err(|e| format!("memory child: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "memory child failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("memory child output {line:?}: {e}"))
}
