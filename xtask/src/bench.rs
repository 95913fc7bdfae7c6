//! `cargo xtask bench [--quick] [--only a,b,c,d] [--subjects k,k] [--netavark PATH]`: the
//! side-by-side benchmark of issue 7.
//!
//! 1. Installs the peers and what the harness needs from Debian's packages, when missing:
//!    `netavark` and `containernetworking-plugins` (the peers), `iptables` (their firewall
//!    tool; iptables-nft), `fonts-dejavu-core` (the plot's text).
//! 2. Builds `netctl` and `berth-cni` in release (the process-per-operation sides of berth).
//! 3. Runs `cargo bench --bench side_by_side -- …` (`benches/side_by_side/`): berth in-process,
//!    berth through netctl, berth-cni, netavark and the CNI plugins on the same work (or the
//!    subjects `--subjects` names: `lib`, `netctl`, `bcni`, `netavark`, `nv2`, `cni`), in sandbox
//!    network namespaces only; it writes `target/bench/results.md`, `results.json` and
//!    `attach_vs_n.png`, and prints the targets and berth's per-step attach profile.
//!    `--netavark PATH` adds another netavark (podman's current 2.x, built from its release tag
//!    wherever you like: it is never built here) as subject `nv2`; the report names the version
//!    it prints and its firewall driver.

use crate::{install, run};

/// The peers and the harness's run-time needs.
const BENCH_PACKAGES: &[&str] = &[
    "netavark",
    "containernetworking-plugins",
    "iptables",
    "fonts-dejavu-core",
];

/// Flags passed through to the harness.
const FLAGS: &[&str] = &["--quick", "--only", "--subjects", "--netavark"];
/// The flags of [`FLAGS`] that take a value, with an example of it.
const VALUED: &[(&str, &str)] = &[
    ("--only", "a list, e.g. a,c"),
    ("--subjects", "a list, e.g. cni,bcni"),
    ("--netavark", "the path of a netavark binary"),
];

/// Runs the benchmark with `args` (the words after `bench`).
pub fn run_bench(args: &[String]) -> Result<(), String> {
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !FLAGS.contains(&a.as_str()) {
            return Err(format!(
                "unknown flag {a}; usage: cargo xtask bench [--quick] [--only a,b,c,d] \
                 [--subjects lib,netctl,bcni,netavark,nv2,cni] [--netavark PATH]"
            ));
        }
        pass.push(a.clone());
        if let Some((_, what)) = VALUED.iter().find(|(f, _)| f == a) {
            let v = it.next().ok_or(format!("{a} needs {what}"))?;
            if a == "--netavark" {
                // The harness runs from the package root: a relative path is made absolute.
                let p = std::path::absolute(v).map_err(|e| format!("--netavark {v}: {e}"))?;
                if !p.is_file() {
                    return Err(format!("--netavark {v}: no such file"));
                }
                pass.push(p.display().to_string());
            } else {
                pass.push(v.clone());
            }
        }
    }
    install(BENCH_PACKAGES)?;
    run("cargo", &["build", "--release", "--example", "netctl"])?;
    run("cargo", &["build", "--release", "-p", "berth-cni"])?;
    let mut cmd = vec!["bench", "--bench", "side_by_side", "--"];
    cmd.extend(pass.iter().map(String::as_str));
    run("cargo", &cmd)
}
