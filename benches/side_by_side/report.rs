//! The markdown report (`target/bench/results.md`), its JSON twin (`results.json`), and the
//! targets of the benchmark issue checked against what was measured.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::concurrency::ConcSubject;
use crate::machine::Machine;
use crate::memory::Held;
use crate::scale::Scale;
use crate::stats::{Summary, ms, ratio, ratio_value};
use crate::subjects::Op;
use crate::warm::Warm;

/// Everything one run measured.
pub struct Results {
    /// `--quick` run.
    pub quick: bool,
    /// Where it ran.
    pub machine: Machine,
    /// Workload (a).
    pub warm: Option<Warm>,
    /// Workload (b).
    pub scale: Option<Scale>,
    /// Workload (c).
    pub conc: Option<Vec<ConcSubject>>,
    /// Workload (d), berth in-process.
    pub memory: Option<Result<Held, String>>,
    /// Whether the machine's own ruleset was the same after the run as before.
    pub machine_ruleset_unchanged: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Errors of workloads that could not finish.
    pub errors: Vec<String>,
}

const PEERS: [(&str, &str); 3] = [
    ("netavark", "netavark 1.x"),
    ("nv2", "netavark 2.x"),
    ("cni", "CNI"),
];
const KEYS: [&str; 6] = ["lib", "netctl", "bcni", "netavark", "nv2", "cni"];
/// The ratio columns of the warm table: (ours, peer, header). berth-cni is compared with its
/// like-for-like peer, the reference plugins.
const RATIOS: [(&str, &str, &str); 7] = [
    ("lib", "netavark", "netavark 1.x ÷ lib"),
    ("lib", "nv2", "netavark 2.x ÷ lib"),
    ("lib", "cni", "CNI ÷ lib"),
    ("netctl", "netavark", "netavark 1.x ÷ netctl"),
    ("netctl", "nv2", "netavark 2.x ÷ netctl"),
    ("netctl", "cni", "CNI ÷ netctl"),
    ("bcni", "cni", "CNI plugins ÷ berth-cni"),
];

/// The keys of [`KEYS`] that `present` holds, in [`KEYS`]' order.
fn present<'a>(present: impl Iterator<Item = &'a str> + Clone) -> Vec<&'static str> {
    KEYS.into_iter()
        .filter(|k| present.clone().any(|p| p == *k))
        .collect()
}

fn times(ops: &[Op]) -> Vec<Duration> {
    ops.iter().map(|o| o.elapsed).collect()
}

impl Warm {
    /// The keys of the subjects that took part, in [`KEYS`]' order.
    pub fn keys(&self) -> Vec<&'static str> {
        present(self.subjects.iter().map(|s| s.key))
    }

    /// Summary of subject `key`'s attaches (`detach = false`) or detaches with `pi` port set.
    pub fn summary(&self, key: &str, detach: bool, pi: usize) -> Summary {
        self.subjects
            .iter()
            .find(|s| s.key == key)
            .map(|s| Summary::of(&times(if detach { &s.detach[pi] } else { &s.attach[pi] })))
            .unwrap_or_default()
    }
}

impl Scale {
    /// Summary of the kernel's veth creation on berth's bridge at `n`.
    pub fn veth_floor(&self, n: u32) -> Summary {
        self.subjects
            .iter()
            .find(|s| s.key == "lib")
            .and_then(|s| s.at.iter().find(|a| a.n == n))
            .map(|a| Summary::of(&a.veth_floor))
            .unwrap_or_default()
    }

    /// Summary of subject `key`'s sampled next attaches at `n`.
    pub fn summary(&self, key: &str, n: u32) -> Summary {
        self.subjects
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| s.at.iter().find(|a| a.n == n))
            .map(|a| Summary::of(&times(&a.samples)))
            .unwrap_or_default()
    }
}

/// Per-step medians (label, ms) over attaches that carry steps, in first-seen order.
pub fn profile(ops: &[Op]) -> Vec<(String, f64)> {
    let mut per: Vec<(String, Vec<Duration>)> = Vec::new();
    for o in ops {
        for (l, d) in &o.steps {
            match per.iter_mut().find(|(x, _)| x == l) {
                Some((_, v)) => v.push(*d),
                None => per.push((l.clone(), vec![*d])),
            }
        }
    }
    per.into_iter()
        .map(|(l, v)| (l, Summary::of(&v).median))
        .collect()
}

/// How tables name subject `key`.
pub fn label(key: &str) -> &'static str {
    match key {
        "lib" => "berth (lib)",
        "netctl" => "berth (netctl)",
        "bcni" => "berth-cni",
        "netavark" => "netavark 1.x",
        "nv2" => "netavark 2.x",
        _ => "CNI plugins",
    }
}

/// One line of the targets table.
struct Target {
    what: String,
    want: String,
    got: String,
    met: Option<bool>,
    note: String,
}

impl Results {
    /// The markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "# berth side by side with netavark and the CNI plugins\n"
        );
        let _ = writeln!(
            s,
            "Run: {} ({} run, {:.0} s), berth {}.  \nMachine: {}, {} cores, {} GiB RAM, kernel \
             {}, Debian {}.  \nLoad average at start / end: {} / {}.  \nPeers: netavark 1.x = \
             Debian's netavark {} (firewall: iptables-nft {}){}, containernetworking-plugins {} \
             (bridge + host-local + portmap); nftables {}.  \nEvery subject works in its own \
             sandbox host netns; the machine's own ruleset was {} after the run.\n",
            m.date,
            if self.quick { "quick" } else { "full" },
            self.elapsed.as_secs_f64(),
            m.commit,
            m.cpu,
            m.cores,
            m.mem_gib,
            m.kernel,
            m.debian,
            m.load_start,
            m.load_end,
            m.netavark,
            m.iptables,
            m.netavark_given.as_ref().map_or(String::new(), |v| format!(
                ", netavark 2.x = {} as `netavark version` prints it (`{}`)",
                v.describe(),
                v.bin.display()
            )),
            m.cni,
            m.nftables,
            if self.machine_ruleset_unchanged {
                "unchanged"
            } else {
                "CHANGED (see the harness output)"
            }
        );
        for e in &self.errors {
            let _ = writeln!(s, "**Did not finish:** {e}\n");
        }
        if let Some(w) = &self.warm {
            self.warm_md(&mut s, w);
        }
        let _ = writeln!(s, "{}", self.targets_md());
        if let Some(sc) = &self.scale {
            scale_md(&mut s, sc);
        }
        if let Some(c) = &self.conc {
            conc_md(&mut s, c);
        }
        self.memory_md(&mut s);
        self.profile_md(&mut s);
        s
    }

    fn warm_md(&self, s: &mut String, w: &Warm) {
        let _ = writeln!(
            s,
            "## (a) One container on a warm network\n\nms, median (min–max) of {} interleaved \
             rounds; ratios are the peer's median over berth's (how many times faster berth \
             is). Each network already holds one container. For scale: starting a process that \
             does nothing, the way every process side starts (fork, enter the sandbox netns, \
             exec), takes {} ms; deleting one veth pair through rtnetlink, the kernel's floor \
             under any detach, takes {} ms.\n",
            w.rounds,
            ms(Summary::of(&w.null_proc).median),
            ms(Summary::of(&w.veth_delete).median)
        );
        let keys = w.keys();
        let ratios: Vec<_> = RATIOS
            .iter()
            .filter(|(o, p, _)| keys.contains(o) && keys.contains(p))
            .collect();
        let mut head = String::from("| operation |");
        let mut sep = String::from("|---|");
        for k in &keys {
            let _ = write!(head, " {} |", label(k));
            sep.push_str("---|");
        }
        for (_, _, h) in &ratios {
            let _ = write!(head, " {h} |");
            sep.push_str("---|");
        }
        let _ = writeln!(s, "{head}\n{sep}");
        for (detach, op) in [(false, "attach"), (true, "detach")] {
            for (pi, ports) in [(0, 0), (1, 2)] {
                let peer_op = match (detach, op) {
                    (false, _) => "setup / ADD",
                    (true, _) => "teardown / DEL",
                };
                let _ = write!(s, "| {op}, {ports} ports ({peer_op}) |");
                for k in &keys {
                    let _ = write!(s, " {} |", w.summary(k, detach, pi).cell());
                }
                for (o, p, _) in &ratios {
                    let _ = write!(
                        s,
                        " {} |",
                        ratio(&w.summary(p, detach, pi), &w.summary(o, detach, pi))
                    );
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s);
        for sub in &w.subjects {
            let probe = match &sub.probe {
                Ok(()) => "reached".to_string(),
                Err(e) => format!("**not reached**: {e}"),
            };
            let _ = write!(
                s,
                "- {}: published port from the outside netns {probe}",
                sub.label
            );
            if let Some(e) = &sub.error {
                let _ = write!(s, "; **stopped**: {e}");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        let dominant = self.dominant_step();
        if let Some(w) = &self.warm {
            let keys = w.keys();
            let has = |k: &str| keys.contains(&k);
            for (ours, want, what) in [
                ("lib", 15.0, "attach, 2 ports, in-process"),
                ("netctl", 3.0, "attach, 2 ports, netctl"),
            ] {
                let o = w.summary(ours, false, 1);
                for (p, pl) in PEERS {
                    if !has(ours) || !has(p) {
                        continue;
                    }
                    let ps = w.summary(p, false, 1);
                    t.push(ratio_target(
                        format!("{what} vs {pl} setup"),
                        want,
                        &ps,
                        &o,
                        &match ours {
                            "lib" => dominant.clone(),
                            _ => format!(
                                "netctl costs {} ms more than the library call; starting any \
                                 process here costs {} ms",
                                ms(o.median - w.summary("lib", false, 1).median),
                                ms(Summary::of(&w.null_proc).median)
                            ),
                        },
                    ));
                }
            }
            let floor = Summary::of(&w.veth_delete).median;
            for pi in [1usize, 0] {
                let o = w.summary("lib", true, pi);
                let note = format!(
                    "detach has no per-step hook; deleting one veth pair alone takes {} ms here, \
                     so {} ms of berth's detach is its own work",
                    ms(floor),
                    ms(o.median - floor)
                );
                for (p, pl) in PEERS {
                    if !has("lib") || !has(p) {
                        continue;
                    }
                    t.push(ratio_target(
                        format!(
                            "detach, {} ports, in-process vs {pl} teardown",
                            if pi == 1 { 2 } else { 0 }
                        ),
                        4.0,
                        &w.summary(p, true, pi),
                        &o,
                        &note,
                    ));
                }
            }
            if has("bcni") && has("cni") {
                t.extend(self.bcni_targets(w));
            }
            t.extend(self.issue16_targets(w));
        }
        if let Some(sc) = &self.scale
            && let (Some(&first), Some(&last)) = (sc.checkpoints.first(), sc.checkpoints.last())
        {
            let keys = present(sc.subjects.iter().map(|s| s.key));
            for k in ["lib", "netctl", "bcni"] {
                if !keys.contains(&k) {
                    continue;
                }
                let (a, b) = (sc.summary(k, first), sc.summary(k, last));
                let r = ratio_value(&b, &a);
                t.push(Target {
                    what: format!("{} attach at N={last} vs N={first}", label(k)),
                    want: "≤ 1.2×".into(),
                    got: r.map_or("—".into(), |r| {
                        format!("{r:.2}× ({} vs {} ms)", ms(b.median), ms(a.median))
                    }),
                    met: r.map(|r| r <= 1.2),
                    note: if k == "lib" {
                        self.scale_note(sc, first, last)
                    } else {
                        String::new()
                    },
                });
            }
        }
        if let Some(c) = &self.conc {
            for sub in c.iter().filter(|s| s.label.starts_with("berth")) {
                let bad = sub.attach_failures.len()
                    + sub.detach_failures.len()
                    + sub.duplicates
                    + sub.leaks.total();
                t.push(Target {
                    what: format!("{}: 50 concurrent attaches ({})", sub.label, sub.mode),
                    want: "0 failures, duplicates, leaks".into(),
                    got: format!(
                        "{} failures, {} duplicates, {} leaked",
                        sub.attach_failures.len() + sub.detach_failures.len(),
                        sub.duplicates,
                        sub.leaks.total()
                    ),
                    met: Some(bad == 0),
                    note: String::new(),
                });
            }
        }
        t
    }

    /// The targets of issue 16: against netavark 2.x (`nv2`) where it ran, and absolute ones
    /// (in-process attach with 2 ports ≤ 2.0 ms, a process-per-operation detach ≤ 8 ms, netctl's
    /// overhead over the library call halved from ~5 ms).
    fn issue16_targets(&self, w: &Warm) -> Vec<Target> {
        let keys = w.keys();
        let has = |k: &str| keys.contains(&k);
        let mut t = Vec::new();
        let dominant = self.dominant_step();
        let at_most = |what: String, want: f64, got: &Summary, note: String| Target {
            what,
            want: format!("≤ {} ms", ms(want)),
            got: format!("{} ms", ms(got.median)),
            met: (got.n > 0).then_some(got.median <= want),
            note,
        };
        if has("lib") {
            t.push(at_most(
                "attach, 2 ports, in-process (median)".into(),
                2.0,
                &w.summary("lib", false, 1),
                dominant,
            ));
        }
        for k in ["netctl", "bcni"] {
            if !has(k) {
                continue;
            }
            for pi in [0usize, 1] {
                let ports = if pi == 1 { 2 } else { 0 };
                let o = w.summary(k, true, pi);
                t.push(at_most(
                    format!("detach, {ports} ports, {} (a process)", label(k)),
                    8.0,
                    &o,
                    format!(
                        "starting any process here costs {} ms",
                        ms(Summary::of(&w.null_proc).median)
                    ),
                ));
                if has("nv2") {
                    t.push(ratio_target(
                        format!(
                            "detach, {ports} ports, {} vs netavark 2.x teardown",
                            label(k)
                        ),
                        3.0,
                        &w.summary("nv2", true, pi),
                        &o,
                        "",
                    ));
                }
            }
        }
        if has("lib") && has("netctl") {
            let over = w.summary("netctl", false, 1).median - w.summary("lib", false, 1).median;
            let start = Summary::of(&w.netctl_startup).median;
            let null = Summary::of(&w.null_proc).median;
            t.push(Target {
                what: "netctl attach (2 ports) over the library call".into(),
                want: "≤ 2.50 ms (half of ~5 ms)".into(),
                got: format!("{} ms", ms(over)),
                met: Some(over <= 2.5),
                note: format!(
                    "starting any process: {} ms; netctl doing no networking (`network ls`: \
                     process start, Host build, network records): {} ms",
                    ms(null),
                    ms(start)
                ),
            });
        }
        t
    }

    /// berth-cni against the reference plugins, ADD and DEL with 2 ports (want ≥ 5×).
    fn bcni_targets(&self, w: &Warm) -> Vec<Target> {
        let null = Summary::of(&w.null_proc).median;
        let lib_present = w.subjects.iter().any(|s| s.key == "lib");
        [(false, "attach", "ADD"), (true, "detach", "DEL")]
            .into_iter()
            .map(|(detach, op, verb)| {
                let o = w.summary("bcni", detach, 1);
                let lib = if lib_present {
                    format!(
                        "berth-cni costs {} ms more than the library call; ",
                        ms(o.median - w.summary("lib", detach, 1).median)
                    )
                } else {
                    String::new()
                };
                ratio_target(
                    format!("{op}, 2 ports, berth-cni vs CNI plugins {verb}"),
                    5.0,
                    &w.summary("cni", detach, 1),
                    &o,
                    &format!("{lib}starting any process here costs {} ms", ms(null)),
                )
            })
            .collect()
    }

    /// The biggest step of berth's in-process attach with 2 ports, as a sentence.
    fn dominant_step(&self) -> String {
        let Some(w) = &self.warm else {
            return String::new();
        };
        let Some(lib) = w.subjects.iter().find(|s| s.key == "lib") else {
            return String::new();
        };
        let p = profile(&lib.attach[1]);
        let total: f64 = p.iter().map(|(_, v)| v).sum();
        match p.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            Some((l, v)) if total > 0.0 => format!(
                "largest step: {l}, {} ms of {} ms ({:.0}%)",
                ms(*v),
                ms(total),
                v / total * 100.0
            ),
            _ => String::new(),
        }
    }

    fn scale_note(&self, sc: &Scale, first: u32, last: u32) -> String {
        let Some(lib) = sc.subjects.iter().find(|s| s.key == "lib") else {
            return String::new();
        };
        let at = |n| {
            lib.at
                .iter()
                .find(|a| a.n == n)
                .map(|a| profile(&a.samples))
        };
        let (Some(a), Some(b)) = (at(first), at(last)) else {
            return String::new();
        };
        let grew = b
            .iter()
            .map(|(l, v)| {
                let before = a.iter().find(|(x, _)| x == l).map_or(0.0, |x| x.1);
                (l.clone(), v - before)
            })
            .max_by(|x, y| x.1.total_cmp(&y.1));
        let (fa, fb) = (sc.veth_floor(first), sc.veth_floor(last));
        let kernel = if fa.n > 0 && fb.n > 0 {
            format!(
                "; the kernel alone, creating one veth onto the bridge: {} → {} ms",
                ms(fa.median),
                ms(fb.median)
            )
        } else {
            String::new()
        };
        match grew {
            Some((l, d)) if d > 0.0 => format!("grew most: {l}, +{} ms{kernel}", ms(d)),
            _ => kernel,
        }
    }

    fn targets_md(&self) -> String {
        let mut s = String::from(
            "## Targets (issues 7 and 16)\n\n| target | wanted | measured | met | what dominates / \
             note |\n|---|---|---|---|---|\n",
        );
        for t in self.targets() {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {met} | {} |",
                t.what, t.want, t.got, t.note
            );
        }
        s
    }

    fn memory_md(&self, s: &mut String) {
        if self.memory.is_none() && self.scale.is_none() {
            return;
        }
        let _ = writeln!(
            s,
            "## (d) Memory\n\n| subject | what | peak RSS |\n|---|---|---|"
        );
        match &self.memory {
            Some(Ok(h)) => {
                let _ = writeln!(
                    s,
                    "| berth (lib) | a process holding {} endpoints (one `Host`; {:.1} MiB \
                     before the attaches, {:.1} MiB after) | {:.1} MiB |",
                    h.n,
                    h.baseline_kib as f64 / 1024.0,
                    h.rss_kib as f64 / 1024.0,
                    h.hwm_kib as f64 / 1024.0
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(s, "| berth (lib) | failed: {e} | — |");
            }
            None => {}
        }
        if let Some(sc) = &self.scale {
            let last = sc.checkpoints.last().copied().unwrap_or(0);
            for sub in sc.subjects.iter().filter(|s| s.key != "lib") {
                let rss = |n: u32| {
                    sub.at
                        .iter()
                        .find(|a| a.n == n)
                        .and_then(|a| a.rss_kib)
                        .map_or("—".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
                };
                let what = match sub.key {
                    "netctl" => "one `connect` process",
                    "bcni" => "one `berth-cni` ADD process",
                    "netavark" | "nv2" => "one `setup` process",
                    _ => "the largest plugin process of one ADD",
                };
                let by_n: Vec<String> = sc
                    .checkpoints
                    .iter()
                    .map(|&n| format!("N={n}: {}", rss(n)))
                    .collect();
                let _ = writeln!(
                    s,
                    "| {} | {what} at N={last}; it holds nothing between operations ({}) | {} |",
                    sub.label,
                    by_n.join(", "),
                    rss(last)
                );
            }
            let _ = writeln!(
                s,
                "\nProcess sides: `ru_maxrss` of the program, started through a small launcher \
                 (a fresh process) so the harness's own memory does not count; the launcher \
                 reports {} for `/bin/true`, the floor of these figures.",
                sc.launcher_floor_kib
                    .map_or("—".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
            );
        }
        let _ = writeln!(s);
    }

    fn profile_md(&self, s: &mut String) {
        let mut cols: Vec<(String, Vec<(String, f64)>)> = Vec::new();
        if let Some(w) = &self.warm
            && let Some(lib) = w.subjects.iter().find(|s| s.key == "lib")
        {
            cols.push(("warm, 2 ports".into(), profile(&lib.attach[1])));
        }
        if let Some(sc) = &self.scale
            && let Some(lib) = sc.subjects.iter().find(|s| s.key == "lib")
        {
            for a in &lib.at {
                cols.push((format!("N={}, 1 port", a.n), profile(&a.samples)));
            }
        }
        if cols.is_empty() {
            return;
        }
        let _ = writeln!(
            s,
            "## Where berth's attach time goes (in-process, per step, median ms)\n\nEach step \
             runs from the end of the previous one (timed through `HostBuilder::fault_hook`).\n"
        );
        let _ = write!(s, "{}", profile_table(&cols));
    }

    /// The JSON twin of the report: the summaries, for tools.
    pub fn json(&self) -> serde_json::Value {
        let mut v = json!({
            "quick": self.quick,
            "machine": self.machine,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "machine_ruleset_unchanged": self.machine_ruleset_unchanged,
            "errors": self.errors,
        });
        if let Some(w) = &self.warm {
            let mut o = serde_json::Map::new();
            for k in w.keys() {
                o.insert(
                    k.into(),
                    json!({
                        "attach0": w.summary(k, false, 0), "attach2": w.summary(k, false, 1),
                        "detach0": w.summary(k, true, 0), "detach2": w.summary(k, true, 1),
                    }),
                );
            }
            o.insert("null_process".into(), json!(Summary::of(&w.null_proc)));
            o.insert("veth_delete".into(), json!(Summary::of(&w.veth_delete)));
            o.insert(
                "netctl_startup".into(),
                json!(Summary::of(&w.netctl_startup)),
            );
            v["warm"] = o.into();
        }
        if let Some(sc) = &self.scale {
            let subs: Vec<_> = sc
                .subjects
                .iter()
                .map(|sub| {
                    json!({
                        "key": sub.key,
                        "error": sub.error,
                        "at": sub.at.iter().map(|a| json!({
                            "n": a.n,
                            "attach": Summary::of(&times(&a.samples)),
                            "rules": a.nft.rules, "chains": a.nft.chains,
                            "elements": a.nft.elements,
                            "maxrss_kib": a.rss_kib,
                            "veth_floor": Summary::of(&a.veth_floor),
                        })).collect::<Vec<_>>(),
                        "fill_ms": sub.fill.iter().map(|(n, d)| (n, d.as_secs_f64() * 1e3))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            v["scale"] = subs.into();
        }
        if let Some(c) = &self.conc {
            v["concurrency"] = c
                .iter()
                .map(|s| {
                    json!({
                        "subject": s.label, "mode": s.mode,
                        "attach_failures": s.attach_failures, "detach_failures": s.detach_failures,
                        "duplicates": s.duplicates, "without_address": s.without_address,
                        "leaks": {"bridge_ports": s.leaks.bridge_ports,
                                  "container_links": s.leaks.container_links,
                                  "nft": s.leaks.nft, "ipam": s.leaks.ipam},
                        "attach_wall_ms": s.attach_wall.as_secs_f64() * 1e3,
                        "detach_wall_ms": s.detach_wall.as_secs_f64() * 1e3,
                    })
                })
                .collect::<Vec<_>>()
                .into();
        }
        if let Some(Ok(h)) = &self.memory {
            v["memory"] = json!(h);
        }
        v
    }

    /// The targets, one line each, for the terminal.
    pub fn targets_text(&self) -> String {
        let mut s = String::new();
        for t in self.targets() {
            let met = match t.met {
                Some(true) => "met   ",
                Some(false) => "MISSED",
                None => "n/a   ",
            };
            let _ = writeln!(s, "  {met} {} (want {}): {}", t.what, t.want, t.got);
            if !t.note.is_empty() && t.met == Some(false) {
                let _ = writeln!(s, "         {}", t.note);
            }
        }
        s
    }

    /// The per-step profile, for the terminal.
    pub fn profile_text(&self) -> String {
        let mut s = String::new();
        self.profile_md(&mut s);
        s
    }
}

fn ratio_target(what: String, want: f64, peer: &Summary, ours: &Summary, note: &str) -> Target {
    let r = ratio_value(peer, ours);
    let mut note = note.to_string();
    if let Some(r) = r
        && r < want
    {
        let need = peer.median / want;
        note = format!(
            "short by {:.0}%: berth would need ≤ {} ms, is {} ms; {note}",
            (1.0 - r / want) * 100.0,
            ms(need),
            ms(ours.median)
        );
    } else if r.is_some() {
        note.clear();
    }
    Target {
        what,
        want: format!("≥ {want}×"),
        got: r.map_or("—".into(), |r| {
            format!("{r:.1}× ({} vs {} ms)", ms(peer.median), ms(ours.median))
        }),
        met: r.map(|r| r >= want),
        note,
    }
}

fn profile_table(cols: &[(String, Vec<(String, f64)>)]) -> String {
    let mut s = String::from("| step |");
    let mut sep = String::from("|---|");
    for (c, _) in cols {
        let _ = write!(s, " {c} |");
        sep.push_str("---:|");
    }
    let _ = writeln!(s, "\n{sep}");
    let mut steps: Vec<String> = Vec::new();
    for (_, p) in cols {
        for (l, _) in p {
            if !steps.contains(l) {
                steps.push(l.clone());
            }
        }
    }
    for l in &steps {
        let _ = write!(s, "| {l} |");
        for (_, p) in cols {
            let v = p.iter().find(|(x, _)| x == l).map(|x| x.1);
            let _ = write!(s, " {} |", v.map_or("—".into(), ms));
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "| **sum** |");
    for (_, p) in cols {
        let _ = write!(s, " {} |", ms(p.iter().map(|x| x.1).sum()));
    }
    let _ = writeln!(s, "\n");
    s
}

fn scale_md(s: &mut String, sc: &Scale) {
    let _ = writeln!(
        s,
        "## (b) Scale: the next attach with N containers attached (one published port each)\n\n\
         ms, median (min–max) of the sampled next attaches; the plot (`attach_vs_n.png`) also \
         shows every attach of the growing phase.\n"
    );
    let keys = present(sc.subjects.iter().map(|s| s.key));
    // berth-cni's like-for-like peer, when both ran.
    let vs_cni = keys.contains(&"bcni") && keys.contains(&"cni");
    let mut head = String::from("| N |");
    let mut sep = String::from("|---|");
    for k in &keys {
        let _ = write!(head, " {} |", label(k));
        sep.push_str("---|");
    }
    let extra = if vs_cni {
        " CNI plugins ÷ berth-cni |"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "{head}{extra} kernel: one veth onto the bridge |\n{sep}{}---|",
        if vs_cni { "---|" } else { "" }
    );
    for &n in &sc.checkpoints {
        let _ = write!(s, "| {n} |");
        for k in &keys {
            let _ = write!(s, " {} |", sc.summary(k, n).cell());
        }
        if vs_cni {
            let _ = write!(
                s,
                " {} |",
                ratio(&sc.summary("cni", n), &sc.summary("bcni", n))
            );
        }
        let _ = writeln!(s, " {} |", sc.veth_floor(n).cell());
    }
    if let (Some(&a), Some(&b)) = (sc.checkpoints.first(), sc.checkpoints.last()) {
        let _ = write!(s, "| N={b} ÷ N={a} |");
        for k in &keys {
            let r = ratio_value(&sc.summary(k, b), &sc.summary(k, a));
            let _ = write!(s, " {} |", r.map_or("—".into(), |r| format!("{r:.2}×")));
        }
        if vs_cni {
            let _ = write!(s, " |");
        }
        let r = ratio_value(&sc.veth_floor(b), &sc.veth_floor(a));
        let _ = writeln!(s, " {} |", r.map_or("—".into(), |r| format!("{r:.2}×")));
    }
    let _ = writeln!(
        s,
        "\nThe last column times creating one veth pair with its host end on berth's bridge \
         (holding N ports) through rtnetlink, with nothing else around it: the kernel's share \
         of berth's netlink step at that N.\n\nnf_tables objects in each host netns with N containers attached (rules; chains; set \
         and map elements):\n"
    );
    let _ = writeln!(s, "{head}\n{sep}");
    for &n in &sc.checkpoints {
        let _ = write!(s, "| {n} |");
        for k in &keys {
            let cell = sc
                .subjects
                .iter()
                .find(|x| x.key == *k)
                .and_then(|x| x.at.iter().find(|a| a.n == n))
                .map_or("—".into(), |a| {
                    format!(
                        "{} rules; {} chains; {} elements",
                        a.nft.rules, a.nft.chains, a.nft.elements
                    )
                });
            let _ = write!(s, " {cell} |");
        }
        let _ = writeln!(s);
    }
    for sub in sc.subjects.iter().filter(|x| x.error.is_some()) {
        let _ = writeln!(
            s,
            "\n- {}: **{}**",
            sub.label,
            sub.error.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(s);
}

fn conc_md(s: &mut String, c: &[ConcSubject]) {
    let _ = writeln!(
        s,
        "## (c) Concurrency: 50 attaches at once on a new network, then 50 detaches at once\n\n\
         Leaked = after the detaches: links still on the bridge / interfaces still in the \
         containers / nf_tables rules or elements naming a container's address / address \
         reservations still in IPAM state (netavark keeps none: its caller assigns addresses).\n\n\
         | subject | how | attach failures | detach failures | duplicate addresses | left without \
         address | leaked | 50 attaches took | 50 detaches took |\n|---|---|---|---|---|---|---|---|---|"
    );
    for x in c {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} ms | {} ms |",
            x.label,
            x.mode,
            x.attach_failures.len(),
            x.detach_failures.len(),
            x.duplicates,
            x.without_address,
            x.leaks.bridge_ports,
            x.leaks.container_links,
            x.leaks.nft,
            x.leaks.ipam,
            ms(x.attach_wall.as_secs_f64() * 1e3),
            ms(x.detach_wall.as_secs_f64() * 1e3),
        );
    }
    let wall = |l: &str| c.iter().find(|x| x.label == l);
    if let (Some(p), Some(o)) = (wall("CNI plugins"), wall("berth-cni")) {
        let r = |p: std::time::Duration, o: std::time::Duration| {
            if o.is_zero() {
                "—".to_string()
            } else {
                format!("{:.1}×", p.as_secs_f64() / o.as_secs_f64())
            }
        };
        let _ = writeln!(
            s,
            "\nCNI plugins ÷ berth-cni (wall time, 50 processes at once): attaches {}, \
             detaches {}.",
            r(p.attach_wall, o.attach_wall),
            r(p.detach_wall, o.detach_wall)
        );
    }
    for x in c {
        if let Some(e) = x.attach_failures.first().or(x.detach_failures.first()) {
            let e: String = e.chars().take(300).collect();
            let _ = writeln!(
                s,
                "\n- {}, first failure: `{}`",
                x.label,
                e.replace('`', "'")
            );
        }
    }
    let _ = writeln!(s);
}
