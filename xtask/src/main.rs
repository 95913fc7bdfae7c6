//! Project tasks: `cargo xtask setup | demo | test | bench`.
//!
//! - `setup`: installs the Debian packages berth needs to build and test (when missing).
//! - `demo`:  setup, then runs `examples/quickstart.rs` (the README demo, in a sandbox) and
//!   `examples/overlay.rs` (two simulated hosts on one overlay network, etcd as the store).
//! - `test`:  setup, then fmt, clippy, build of examples, and every test tier, then a short
//!   run of every fuzz target in `fuzz/` (one test each), and ends with one summary line
//!   `tests: N passed, N failed, N skipped`.
//! - `fuzz`:  setup, then only the short run of every fuzz target (as in `test`).
//! - `vm-run EXE [ARGS…]`: runs EXE as root in a throwaway VM with Debian's stock kernel (see
//!   [`vm`]); the VM tier's cargo runner.
//! - `bench [--quick] [--only a,b,c,d] [--subjects k,k] [--netavark PATH]`: setup plus the peers
//!   (netavark, the CNI plugins), then the side-by-side harness (see [`bench`](mod@bench));
//!   results under `target/bench/`.
//!
//! Must run as root: the kernel tests and the demo create network namespaces (sandboxes only;
//! nothing is configured in the machine's own namespace).

mod bench;
mod vm;

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

/// Build: libnftnl/libmnl headers + pkg-config. Tests: nft (read rulesets back), ip (netns exec).
const PACKAGES: &[&str] = &[
    "libnftnl-dev",
    "libmnl-dev",
    "pkg-config",
    "nftables",
    "iproute2",
    // etcd-client's build script compiles etcd's protobuf definitions.
    "protobuf-compiler",
    // The cluster store of the overlay tests and demo (started by them, on loopback or inside
    // a sandbox netns).
    "etcd-server",
    // The real-client tier of berth-cni (cni/tests/podman.rs, containerd.rs): podman 4.3 with
    // its CNI backend and crun, containerd 1.6 (`ctr run --cni`, runc), a busybox rootfs for
    // the containers (no image registry), jq for the scenario scripts' JSON.
    "podman",
    "crun",
    "containerd",
    "busybox-static",
    "jq",
    // The meta plugins berth-cni is chained with in cni/tests/plugin.rs (`tuning`, `bandwidth`).
    "containernetworking-plugins",
    // The LAN's DHCP server of tests/dhcp.rs (`--ipam-driver dhcp`), run inside a sandbox netns.
    "dnsmasq-base",
];

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let r = match task.as_str() {
        "setup" => setup(),
        "demo" => setup()
            .and_then(|()| run("cargo", &["run", "--example", "quickstart"]))
            .and_then(|()| run("cargo", &["run", "--example", "overlay"])),
        "test" => setup().and_then(|()| test()),
        "vm-run" => {
            let argv: Vec<String> = std::env::args().skip(2).collect();
            return match vm::vm_run(&argv) {
                Ok(rc) => ExitCode::from(u8::try_from(rc).unwrap_or(1)),
                Err(e) => {
                    eprintln!("xtask vm-run: {e}");
                    ExitCode::from(125)
                }
            };
        }
        "fuzz" => setup().and_then(|()| {
            let mut totals = [0u64; 3];
            let r = fuzz_tier(&mut totals);
            println!("fuzz: {} passed, {} failed", totals[0], totals[1]);
            r
        }),
        "bench" => {
            setup().and_then(|()| bench::run_bench(&std::env::args().skip(2).collect::<Vec<_>>()))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask setup|demo|test|fuzz|vm-run EXE [ARGS…]|bench [--quick] [--only a,b,c,d] [--subjects k,k] [--netavark PATH]"
            );
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok installed"))
}

fn setup() -> Result<(), String> {
    install(PACKAGES)
}

/// Installs those of `packages` that are missing (Debian, `apt-get`); must run as root.
fn install(packages: &[&str]) -> Result<(), String> {
    if !is_root() {
        return Err("must run as root (the tests and the demo create network namespaces)".into());
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing {}", missing.join(" "));
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    let st = Command::new("apt-get")
        .args(&args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("apt-get: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("apt-get install failed: {st}"))
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    println!("xtask: {cmd} {}", args.join(" "));
    let st = Command::new(cmd)
        .args(args)
        .status()
        .map_err(|e| format!("{cmd}: {e}"))?;
    st.success()
        .then_some(())
        .ok_or_else(|| format!("`{cmd} {}` failed: {st}", args.join(" ")))
}

/// Runs `cargo test` with its output passed through, adding up its `test result:` lines and
/// counting `SKIPPED:` lines (tests print them, with the reason, when they cannot run).
fn cargo_test(args: &[&str], totals: &mut [u64; 3]) -> Result<(), String> {
    cargo_test_with(args, &[], totals).map(|_| ())
}

/// As [`cargo_test`] with extra environment; returns the output lines and whether a `test
/// result:` line was seen (the test binary ran at all).
fn cargo_test_with(
    args: &[&str],
    env: &[(&str, String)],
    totals: &mut [u64; 3],
) -> Result<(Vec<String>, bool), String> {
    println!("xtask: cargo test {}", args.join(" "));
    let mut child = Command::new("cargo")
        .arg("test")
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: {e}"))?;
    let (mut lines, mut ran) = (Vec::new(), false);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| e.to_string())?;
        println!("{line}");
        lines.push(line.clone());
        ran |= line.starts_with("test result: ");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split([';', '.']) {
                let mut w = part.split_whitespace();
                if let (Some(n), Some(kind)) =
                    (w.next().and_then(|n| n.parse::<u64>().ok()), w.next())
                {
                    match kind {
                        "passed" => totals[0] += n,
                        "failed" => totals[1] += n,
                        _ => {}
                    }
                }
            }
        }
        if line.contains("SKIPPED:") {
            totals[2] += 1;
        }
    }
    let st = child.wait().map_err(|e| e.to_string())?;
    if st.success() || !ran {
        Ok((lines, ran))
    } else {
        Err(format!("cargo test failed: {st}"))
    }
}

/// The test binaries the VM tier runs, by package (each also runs on this kernel, where what
/// needs Debian's kernel says SKIPPED): link kinds and SCTP, encrypted and GRE overlay
/// networks, VLAN endpoints, berth-cni's `vlan`.
const VM_TESTS: &[(&str, &str)] = &[
    ("berth", "vm"),
    ("berth", "vm_encrypted"),
    ("berth", "vm_gre"),
    ("berth", "vm_vlan"),
    ("berth-cni", "vm_vlan"),
];

/// The VM tier: `tests/vm.rs` again, inside a throwaway VM with Debian's stock kernel
/// (`cargo xtask vm-run`, this binary, as the cargo runner). A machine where the VM cannot start
/// reports the tier as skipped, loudly, with the reason; a test failing inside the VM fails.
fn vm_tier(totals: &mut [u64; 3]) -> Result<String, String> {
    let me = std::env::current_exe().map_err(|e| format!("this xtask's path: {e}"))?;
    let env = [(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
        format!("{} vm-run", me.display()),
    )];
    // One VM per test binary; the tests of one binary run one after the other (each builds
    // several simulated hosts and an etcd: the guest's memory is small).
    let mut lines = Vec::new();
    let mut ran = Vec::new();
    for (package, t) in VM_TESTS {
        let (l, r) = cargo_test_with(
            &[
                "-p",
                package,
                "--test",
                t,
                "--",
                "--nocapture",
                "--test-threads=1",
            ],
            &env,
            totals,
        )?;
        lines.extend(l);
        ran.push((format!("{package}/{t}"), r));
    }
    // The VM did not start when no binary ran; one that ran no test while others did was
    // killed or timed out in the guest: a failure, never a skip.
    let silent: Vec<&str> = ran
        .iter()
        .filter(|(_, r)| !r)
        .map(|(t, _)| t.as_str())
        .collect();
    if silent.len() < ran.len() && !silent.is_empty() {
        totals[1] += silent.len() as u64;
        return Err(format!(
            "VM tier: {} ran no test to the end in the guest (killed or timed out)",
            silent.join(", ")
        ));
    }
    if silent.is_empty() {
        let proven = lines.iter().filter(|l| l.contains("VM-TIER:")).count();
        return Ok(format!(
            "VM tier ran in the VM: {proven} proof(s) on Debian's kernel"
        ));
    }
    totals[2] += 1;
    let reason: Vec<&str> = lines.iter().rev().take(5).map(String::as_str).collect();
    Ok(format!(
        "VM tier SKIPPED: the VM did not start ({})",
        reason.join(" | ")
    ))
}

/// The per-driver examples, each proving its driver by traffic in a sandbox: those this kernel
/// can run here, those needing Debian's kernel (802.1q, ipvlan) in the VM. Each counts as one
/// test; exit 77 means the kernel lacks what it needs (skipped).
const EXAMPLES_HERE: &[&str] = &["bridge", "none", "container_mode"];
const EXAMPLES_IN_VM: &[&str] = &["macvlan", "ipvlan"];

fn run_examples(names: &[&str], in_vm: bool, totals: &mut [u64; 3]) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for name in names {
        let exe = format!("target/debug/examples/{name}");
        println!(
            "xtask: example {name}{}",
            if in_vm { " (in the VM)" } else { "" }
        );
        let mut cmd = if in_vm {
            let mut c = Command::new(&me);
            c.args(["vm-run", &exe]);
            c
        } else {
            Command::new(&exe)
        };
        let st = cmd.status().map_err(|e| format!("{exe}: {e}"))?;
        match st.code() {
            Some(0) => totals[0] += 1,
            Some(77) => {
                println!("SKIPPED: example {name}: this kernel lacks what it needs");
                totals[2] += 1;
            }
            _ => {
                totals[1] += 1;
                failed.push(format!("{name} ({st})"));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("examples failed: {}", failed.join(", ")))
    }
}

/// The fuzz targets of `fuzz/` (cargo-fuzz, nightly), each run briefly by `cargo xtask test`.
const FUZZ_TARGETS: &[&str] = &[
    "port_spec",
    "route",
    "mac",
    "names",
    "driver_opts",
    "daemon_json",
    "resolv_conf",
    "state_record",
    "dns_message",
    "nft_dump",
    "conntrack",
];

/// Seconds each fuzz target runs in `cargo xtask test`.
const FUZZ_SECONDS: u32 = 6;

/// The fuzz tier: installs cargo-fuzz (and the nightly toolchain it needs) when missing,
/// builds every target once (AddressSanitizer: `nft_dump` runs libnftnl's C parser), then
/// runs each for [`FUZZ_SECONDS`] over its committed corpus (`fuzz/corpus/TARGET`, read only:
/// new inputs go to `fuzz/target/xtask-corpus/TARGET`) plus what it generates. Each target
/// counts as one test: passed when it ran without a crash, hang, leak or OOM.
fn fuzz_tier(totals: &mut [u64; 3]) -> Result<(), String> {
    let nightly = Command::new("cargo")
        .args(["+nightly", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nightly {
        run(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    let have_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_fuzz {
        run("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    println!("xtask: cargo fuzz build (every target)");
    let st = Command::new("cargo")
        .current_dir("fuzz")
        .args(["+nightly", "fuzz", "build"])
        .status()
        .map_err(|e| format!("cargo fuzz build: {e}"))?;
    if !st.success() {
        totals[1] += FUZZ_TARGETS.len() as u64;
        return Err(format!("cargo fuzz build failed: {st}"));
    }
    let mut failed = Vec::new();
    for t in FUZZ_TARGETS {
        let new = format!("target/xtask-corpus/{t}");
        std::fs::create_dir_all(format!("fuzz/{new}")).map_err(|e| format!("fuzz/{new}: {e}"))?;
        let time = format!("-max_total_time={FUZZ_SECONDS}");
        let out = Command::new("cargo")
            .current_dir("fuzz")
            .args(["+nightly", "fuzz", "run", t, &new, &format!("corpus/{t}")])
            .args(["--", &time, "-timeout=5", "-rss_limit_mb=1024"])
            .args(["-malloc_limit_mb=256", "-print_final_stats=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cargo fuzz run {t}: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stat = |key: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(key))
                .map_or("?".to_string(), |v| v.trim().to_string())
        };
        let (execs, rate) = (
            stat("stat::number_of_executed_units:"),
            stat("stat::average_exec_per_sec:"),
        );
        if out.status.success() {
            totals[0] += 1;
            println!("fuzz {t}: {execs} executions ({rate}/s) in {FUZZ_SECONDS} s: ok");
        } else {
            totals[1] += 1;
            println!("{log}");
            println!("fuzz {t}: {execs} executions: FAILED ({})", out.status);
            failed.push(*t);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")))
    }
}

fn test() -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--check"])?;
    run(
        "cargo",
        &["clippy", "--all-targets", "--", "-D", "warnings"],
    )?;
    run("cargo", &["build", "--examples"])?;
    let mut totals = [0u64; 3];
    // Unit tier (pure, no root needed) and kernel tier (sandbox namespaces on this kernel).
    // `--nocapture` so a test's SKIPPED line (with its reason) is visible and counted.
    let r = cargo_test(
        &["--workspace", "--all-targets", "--", "--nocapture"],
        &mut totals,
    )
    .and_then(|()| cargo_test(&["--doc"], &mut totals))
    .and_then(|()| run_examples(EXAMPLES_HERE, false, &mut totals))
    .and_then(|()| fuzz_tier(&mut totals));
    let vm = match r {
        Ok(()) => vm_tier(&mut totals).and_then(|s| {
            if !s.contains("SKIPPED") {
                run_examples(EXAMPLES_IN_VM, true, &mut totals)?;
            }
            Ok(s)
        }),
        Err(_) => Ok("VM tier not run (earlier tiers failed)".into()),
    };
    println!();
    println!("tiers: unit + kernel ran on this kernel");
    match &vm {
        Ok(s) if s.contains("SKIPPED") => println!("!!!!! {s} !!!!!"),
        Ok(s) => println!("{s}"),
        Err(e) => println!("VM tier FAILED: {e}"),
    }
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals[0], totals[1], totals[2]
    );
    r.and(vm.map(|_| ()))
}
