//! The side-by-side harness of issue 7: berth against netavark and the CNI reference plugins, on
//! the same work, in sandbox namespaces only. Run it with `cargo xtask bench [--quick]`, which
//! installs the peers from Debian's packages, builds `netctl` in release and then runs
//! `cargo bench --bench side_by_side -- [--quick]`.
//!
//! Five subjects (see [`subjects`]): berth in-process, berth through `netctl` (a process per
//! operation), berth as a CNI plugin (`berth-cni`, a process per operation), netavark 1.4 and
//! the CNI plugins (bridge + host-local + portmap); a sixth, another netavark (`--netavark`). Workloads:
//! (a) [`warm`] attach/detach on a warm network with 0 and 2 published ports; (b) [`scale`]
//! 1 → 1,000 containers; (c) [`concurrency`] 50 attaches at once on a new network; (d)
//! [`memory`] peak RSS with 1,000 endpoints. Results go to `target/bench/`: `results.md`,
//! `results.json` and `attach_vs_n.png`; the targets and berth's per-step attach profile are
//! also printed.
//!
//! Flags (after `--`): `--quick` (fewer rounds, N up to 100), `--only a,b,c,d` (a subset of the
//! workloads), `--subjects k,k` (a subset of the subjects by key: `lib`, `netctl`, `bcni`,
//! `netavark`, `nv2`, `cni`; default all), `--out DIR` (default `target/bench`), `--netctl PATH`
//! (default `target/release/examples/netctl`), `--berth-cni PATH` (default
//! `target/release/berth-cni`), `--netavark PATH` (another netavark, e.g. podman's current 2.x
//! built from its release tag: a sixth subject, `nv2`, beside Debian's 1.4; the report names
//! the version it prints and its firewall driver). Under `cargo test --all-targets` (no
//! `--bench` flag) it does nothing.
//!
//! Nothing touches the machine's own network namespace or firewall: every subject gets its own
//! sandbox host netns; peer processes are started inside it (see [`exec`]); containers are
//! anonymous namespaces that die with the harness; the named ones are removed on drop, also on
//! panic or Ctrl-C, and a later run removes any a killed run left. The machine's ruleset is read
//! before and after the run and compared.

mod concurrency;
mod exec;
mod machine;
mod memory;
mod plot;
mod report;
mod scale;
mod stats;
mod subjects;
mod warm;
mod world;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use subjects::Subject;
use subjects::berth_cni::BerthCni;
use subjects::berth_lib::BerthLib;
use subjects::cni::Cni;
use subjects::netavark::Netavark;
use subjects::netctl::Netctl;
use world::World;

static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static STOP: AtomicBool = AtomicBool::new(false);

/// The harness's tokio runtime (two workers, as a runtime on this 2-core machine would use).
pub fn rt() -> &'static tokio::runtime::Runtime {
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// `Err` once Ctrl-C (SIGINT) or SIGTERM arrived: workloads stop, and the sandboxes are
/// removed as their owners drop.
pub fn check_stop() -> Result<(), String> {
    if STOP.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Sizes of one run.
struct Plan {
    quick: bool,
    rounds: usize,
    checkpoints: Vec<u32>,
    samples: usize,
    concurrent: u32,
    hold: u32,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                rounds: 8,
                checkpoints: vec![1, 10, 50, 100],
                samples: 3,
                concurrent: 50,
                hold: 100,
            }
        } else {
            Plan {
                quick,
                rounds: 30,
                checkpoints: vec![1, 100, 500, 1000],
                samples: 7,
                concurrent: 50,
                hold: 1000,
            }
        }
    }
}

struct Args {
    quick: bool,
    only: String,
    subjects: Vec<String>,
    out: PathBuf,
    netctl: PathBuf,
    berth_cni: PathBuf,
    /// Another netavark (`--netavark PATH`, e.g. podman's current 2.x), subject `nv2`.
    netavark: Option<PathBuf>,
    hold: Option<u32>,
}

/// Every subject's key, in the order they run (`nv2` only with `--netavark`).
const SUBJECTS: [&str; 6] = ["lib", "netctl", "bcni", "netavark", "nv2", "cni"];

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        only: "abcd".into(),
        subjects: SUBJECTS.iter().map(|k| k.to_string()).collect(),
        out: PathBuf::from("target/bench"),
        netctl: PathBuf::from("target/release/examples/netctl"),
        berth_cni: PathBuf::from("target/release/berth-cni"),
        netavark: None,
        hold: None,
    };
    let mut it = argv.iter();
    while let Some(x) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{x} needs a value"));
        match x.as_str() {
            "--bench" => {}
            "--quick" => a.quick = true,
            "--only" => a.only = val()?.replace(',', ""),
            "--out" => a.out = val()?.into(),
            "--subjects" => {
                let v = val()?;
                a.subjects = v.split(',').map(str::to_string).collect();
                if let Some(k) = a.subjects.iter().find(|k| !SUBJECTS.contains(&k.as_str())) {
                    return Err(format!(
                        "--subjects: unknown subject {k:?} (known: {})",
                        SUBJECTS.join(", ")
                    ));
                }
            }
            "--netctl" => a.netctl = val()?.into(),
            "--berth-cni" => a.berth_cni = val()?.into(),
            "--netavark" => a.netavark = Some(absolute(Path::new(&val()?))),
            "--hold" => a.hold = Some(val()?.parse().map_err(|e| format!("--hold: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.netavark.is_none() {
        if argv.iter().any(|x| x == "--subjects") && a.has("nv2") {
            return Err("--subjects nv2 needs --netavark PATH (the netavark to run)".into());
        }
        a.subjects.retain(|k| k != "nv2");
    }
    Ok(a)
}

fn main() -> ExitCode {
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if raw.len() >= 3 && raw[0] == "--bench" && raw[1] == "--launch" {
        return exec::launcher(&raw[2], &raw[3..]);
    }
    let argv: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if !argv.iter().any(|a| a == "--bench") {
        println!("side_by_side: a benchmark harness; run `cargo xtask bench` (nothing to test)");
        return ExitCode::SUCCESS;
    }
    let r = parse_args(&argv).and_then(|args| {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root (it builds sandbox network namespaces)".into());
        }
        install_signal_handlers();
        match args.hold {
            Some(n) => memory::hold_child(n),
            None => run(&args),
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("side_by_side: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The selected subjects, each in a new sandbox.
fn subjects(args: &Args) -> Result<Vec<Box<dyn Subject>>, String> {
    let w = |k: &str| rt().block_on(World::new(k));
    let mut out: Vec<Box<dyn Subject>> = Vec::new();
    for k in SUBJECTS.iter().filter(|k| args.has(k)) {
        out.push(match *k {
            "lib" => Box::new(BerthLib::new(w(k)?)?),
            "netctl" => Box::new(Netctl::new(w(k)?, args.netctl.clone())),
            "bcni" => Box::new(BerthCni::new(w(k)?, absolute(&args.berth_cni))),
            "netavark" => Box::new(Netavark::new(
                w(k)?,
                "netavark",
                subjects::netavark::BIN.into(),
            )),
            "nv2" => Box::new(Netavark::new(
                w(k)?,
                "nv2",
                args.netavark
                    .clone()
                    .expect("nv2 runs only with --netavark"),
            )),
            _ => Box::new(Cni::new(w(k)?)),
        });
    }
    if out.is_empty() {
        return Err("no subject selected".into());
    }
    Ok(out)
}

impl Args {
    /// Whether subject `key` takes part.
    fn has(&self, key: &str) -> bool {
        self.subjects.iter().any(|k| k == key)
    }
}

/// `p` made absolute (berth-cni's directory is its `CNI_PATH`).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn run(args: &Args) -> Result<(), String> {
    world::remove_stale();
    let missing: Vec<String> = [
        (args.has("netavark") && !Netavark::installed())
            .then(|| subjects::netavark::BIN.to_string()),
        (args.has("cni") && !Cni::installed())
            .then(|| format!("{}/{{bridge,host-local,portmap}}", subjects::cni::CNI_PATH)),
        (args.has("netctl") && !args.netctl.exists()).then(|| args.netctl.display().to_string()),
        (args.has("bcni") && !args.berth_cni.exists())
            .then(|| args.berth_cni.display().to_string()),
        machine::own_ruleset().is_none().then(|| "nft".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing {}: run `cargo xtask bench`, which installs the peers and builds netctl and \
             berth-cni (`cargo build --release -p berth-cni`)",
            missing.join(", ")
        ));
    }
    let given = match &args.netavark {
        Some(bin) => Some(subjects::netavark::Version::probe(bin)?),
        None => None,
    };
    if let Some(v) = &given {
        println!(
            "side_by_side: subject nv2 is {} at {}",
            v.describe(),
            v.bin.display()
        );
    }
    let plan = Plan::new(args.quick);
    let t0 = Instant::now();
    let before = machine::own_ruleset();
    let mut res = report::Results {
        quick: plan.quick,
        machine: machine::Machine::now(given),
        warm: None,
        scale: None,
        conc: None,
        memory: None,
        machine_ruleset_unchanged: true,
        elapsed: Default::default(),
        errors: Vec::new(),
    };
    println!(
        "side_by_side: {} run; machine load {}",
        if plan.quick { "quick" } else { "full" },
        res.machine.load_start
    );
    let step = |name: &str, f: &mut dyn FnMut() -> Result<(), String>| {
        let t = Instant::now();
        println!("\n== {name}");
        let r = f();
        println!("   ({:.0} s)", t.elapsed().as_secs_f64());
        r.map_err(|e| format!("{name}: {e}"))
    };
    let mut errors = Vec::new();
    if args.only.contains('a') {
        let r = step(
            "(a) warm network: attach/detach, 0 and 2 ports",
            &mut || {
                let mut s = subjects(args)?;
                res.warm = Some(warm::run(&mut s, plan.rounds)?);
                Ok(())
            },
        );
        errors.extend(r.err());
    }
    if args.only.contains('b') && check_stop().is_ok() {
        let r = step("(b) scale: next attach at N", &mut || {
            let mut s = subjects(args)?;
            res.scale = Some(scale::run(&mut s, &plan.checkpoints, plan.samples)?);
            Ok(())
        });
        errors.extend(r.err());
    }
    if args.only.contains('c') && check_stop().is_ok() {
        let r = step("(c) concurrency: 50 at once on a new network", &mut || {
            let mut s = subjects(args)?;
            res.conc = Some(concurrency::run(&mut s, plan.concurrent)?);
            Ok(())
        });
        errors.extend(r.err());
    }
    if args.only.contains('d') && check_stop().is_ok() {
        let _ = step("(d) memory: a process holding N endpoints", &mut || {
            let h = memory::run(plan.hold);
            if let Ok(h) = &h {
                println!(
                    "  berth (lib) holding {} endpoints: peak RSS {:.1} MiB",
                    h.n,
                    h.hwm_kib as f64 / 1024.0
                );
            }
            res.memory = Some(h);
            Ok(())
        });
    }
    for e in &errors {
        eprintln!("side_by_side: {e}");
    }
    res.errors = errors;
    res.machine.load_end = machine::loadavg();
    res.elapsed = t0.elapsed();
    let after = machine::own_ruleset();
    res.machine_ruleset_unchanged = before == after;
    if !res.machine_ruleset_unchanged {
        eprintln!("side_by_side: WARNING: the machine's own ruleset changed during the run");
    }
    write(&res, &args.out)
}

fn write(res: &report::Results, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let md = out.join("results.md");
    let mut text = res.markdown();
    if let Some(sc) = &res.scale {
        let png = out.join("attach_vs_n.png");
        match plot::draw(sc, &png) {
            Ok(()) => {
                println!("\nplot: {}", png.display());
                text.push_str("![attach latency against N](attach_vs_n.png)\n");
            }
            Err(e) => eprintln!("side_by_side: plot: {e}"),
        }
    }
    std::fs::write(&md, text).map_err(|e| format!("{}: {e}", md.display()))?;
    let js = out.join("results.json");
    std::fs::write(&js, serde_json::to_string_pretty(&res.json()).unwrap())
        .map_err(|e| format!("{}: {e}", js.display()))?;
    println!("\n{}", res.profile_text());
    println!("targets:\n{}", res.targets_text());
    println!("report: {}  (and {})", md.display(), js.display());
    if res.errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} workload(s) did not finish", res.errors.len()))
    }
}
