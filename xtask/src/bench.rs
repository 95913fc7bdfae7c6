//! `cargo xtask bench [--quick] [--only a,b,c,d] [--subjects k,k]`: the side-by-side benchmark
//! of issue 7.
//!
//! 1. Installs the peers and what the harness needs from Debian's packages, when missing:
//!    `netavark` and `containernetworking-plugins` (the peers), `iptables` (their firewall
//!    tool; iptables-nft), `fonts-dejavu-core` (the plot's text).
//! 2. Builds `netctl` and `berth-cni` in release (the process-per-operation sides of berth).
//! 3. Runs `cargo bench --bench side_by_side -- …` (`benches/side_by_side/`): berth in-process,
//!    berth through netctl, berth-cni, netavark and the CNI plugins on the same work (or the
//!    subjects `--subjects` names: `lib`, `netctl`, `bcni`, `netavark`, `cni`), in sandbox network
//!    namespaces only; it writes `target/bench/results.md`, `results.json` and
//!    `attach_vs_n.png`, and prints the targets and berth's per-step attach profile.

use crate::{install, run};

/// The peers and the harness's run-time needs.
const BENCH_PACKAGES: &[&str] = &[
    "netavark",
    "containernetworking-plugins",
    "iptables",
    "fonts-dejavu-core",
];

/// Flags passed through to the harness.
const FLAGS: &[&str] = &["--quick", "--only", "--subjects"];

/// Runs the benchmark with `args` (the words after `bench`).
pub fn run_bench(args: &[String]) -> Result<(), String> {
    let mut pass: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !FLAGS.contains(&a.as_str()) {
            return Err(format!(
                "unknown flag {a}; usage: cargo xtask bench [--quick] [--only a,b,c,d] \
                 [--subjects lib,netctl,bcni,netavark,cni]"
            ));
        }
        pass.push(a);
        if a == "--only" {
            pass.push(it.next().ok_or("--only needs a list, e.g. a,c")?);
        }
        if a == "--subjects" {
            pass.push(it.next().ok_or("--subjects needs a list, e.g. cni,bcni")?);
        }
    }
    install(BENCH_PACKAGES)?;
    run("cargo", &["build", "--release", "--example", "netctl"])?;
    run("cargo", &["build", "--release", "-p", "berth-cni"])?;
    let mut cmd = vec!["bench", "--bench", "side_by_side", "--"];
    cmd.extend(pass);
    run("cargo", &cmd)
}
