//! The real-client tier's shared harness: podman and containerd (`ctr run --cni`) drive the CNI
//! plugin under test inside a sandbox (`unshare --net --mount --propagation private`, see
//! `run.sh` and `sandbox.sh`), never in this machine's own network namespace.
//!
//! Each test makes a work dir under the temp dir (removed at the end; kept with
//! `BERTH_CNI_CLIENTS_KEEP=1`) holding a plugin dir of *logging shims* named like the plugins
//! (`shim.sh`: every call's `CNI_*` environment, stdin, stdout and exit code go to `shim.log`),
//! the `berthnet` conflist and the plugin's state dir, then runs the scenario script and asserts
//! that it exited 0 with no `FAIL:` line. At the end it prints what the client sent (the shim
//! log's summary).
//!
//! The plugin under test is `berth-cni`; with `BERTH_CNI_CLIENTS_REFERENCE=1` the same scenarios
//! run against Debian's reference plugins (`/usr/lib/cni`: bridge + host-local + portmap), the
//! baseline the scripts were written against.
//!
//! Run (root; `cargo xtask setup` installs podman, crun, containerd, busybox-static, jq):
//! ```text
//! cargo test -p berth-cni --test podman --test containerd -- --nocapture
//! BERTH_CNI_CLIENTS_REFERENCE=1 cargo test -p berth-cni --test podman --test containerd -- --nocapture
//! ```
//! Each scenario script is bounded (every wait has a timeout; the whole run 240 s) and cleans
//! up on a signal: containers removed, containerd and its shims ended by pid, the mount points
//! it made (`/var/lib/cni`, `/etc/cni/net.d` when missing) removed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The plugin the scenarios drive.
enum Plugin {
    Berth(PathBuf),
    Reference,
}

fn plugin_under_test() -> Plugin {
    if std::env::var("BERTH_CNI_CLIENTS_REFERENCE").is_ok_and(|v| v == "1") {
        Plugin::Reference
    } else {
        Plugin::Berth(PathBuf::from(env!("CARGO_BIN_EXE_berth-cni")))
    }
}

const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The work dir; removed on drop (also when the test panics) unless `BERTH_CNI_CLIENTS_KEEP=1`.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::env::var("BERTH_CNI_CLIENTS_KEEP").is_ok_and(|v| v == "1") {
            println!("clients: work dir kept: {}", self.0.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.0) {
            println!("clients: removing {}: {e}", self.0.display());
        }
    }
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Why the tier cannot run here, if it cannot: not root, or a missing command.
fn missing(client: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("the real-client tier needs root (it creates namespaces)".into());
    }
    let tools = ["unshare", "nft", "ip", "jq", "flock", "timeout", "busybox"];
    let gone: Vec<&str> = client
        .iter()
        .chain(&tools)
        .copied()
        .filter(|c| !on_path(c))
        .collect();
    (!gone.is_empty()).then(|| format!("not installed: {} (`cargo xtask setup`)", gone.join(", ")))
}

/// A logging shim named `name` in `dir` around the plugin binary `real`.
fn write_shim(dir: &Path, name: &str, real: &Path, log: &Path) {
    let body = format!(
        "#!/bin/sh\nREAL='{}'\nLOG='{}'\n{}",
        real.display(),
        log.display(),
        include_str!("shim.sh")
    );
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The `berthnet` conflist: the berth-cni contract, or the reference equivalent.
fn conflist(plugin: &Plugin, state: &Path) -> String {
    let v = match plugin {
        Plugin::Berth(_) => serde_json::json!({
            "cniVersion": "1.0.0", "name": "berthnet",
            "plugins": [{
                "type": "berth-cni", "bridge": "berth0",
                "subnets": [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}],
                "stateDir": state,
                "capabilities": {"portMappings": true, "ips": true, "mac": true, "dns": true, "aliases": true}
            }]
        }),
        Plugin::Reference => serde_json::json!({
            "cniVersion": "1.0.0", "name": "berthnet",
            "plugins": [
                {
                    "type": "bridge", "bridge": "berth0", "isGateway": true, "ipMasq": true,
                    "hairpinMode": true, "capabilities": {"ips": true, "mac": true},
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": state.join("ipam")
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        }),
    };
    serde_json::to_string_pretty(&v).unwrap()
}

/// Runs `tests/clients/<scenario>` (podman.sh, containerd.sh) against the plugin under test;
/// `client` lists the commands it needs (a missing one skips the test, visibly).
pub fn run_scenario(scenario: &str, client: &[&str]) {
    if let Some(why) = missing(client) {
        println!("SKIPPED: {scenario}: {why}");
        return;
    }
    let plugin = plugin_under_test();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = scenario.trim_end_matches(".sh");
    let w = std::env::temp_dir().join(format!("berth-cni-{name}-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&w).unwrap();
    let w = WorkDir(w);
    let (plugins, confs, log, state) = (
        w.0.join("plugins"),
        w.0.join("net.d"),
        w.0.join("shim.log"),
        w.0.join("berth-state"),
    );
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&confs).unwrap();
    let mode = match &plugin {
        Plugin::Berth(exe) => {
            write_shim(&plugins, "berth-cni", exe, &log);
            "berth"
        }
        Plugin::Reference => {
            for e in std::fs::read_dir(REFERENCE_DIR).unwrap() {
                let e = e.unwrap();
                write_shim(&plugins, &e.file_name().to_string_lossy(), &e.path(), &log);
            }
            "reference"
        }
    };
    std::fs::write(confs.join("berthnet.conflist"), conflist(&plugin, &state)).unwrap();
    println!(
        "clients: {scenario} with the {} plugin{}, work dir {}",
        mode,
        if mode == "reference" { "s" } else { "" },
        w.0.display()
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    // The whole scenario is bounded (each wait inside it is too); `timeout` signals the process
    // group, so the scenario's trap removes its containers and ends its daemons.
    let mut child = Command::new("timeout")
        .args(["-k", "20", "240", "bash"])
        .arg(dir.join("run.sh"))
        .arg(dir.join(scenario))
        .env("W", &w.0)
        .env("PLUGIN_DIR", &plugins)
        .env("CONF_DIR", &confs)
        .env("SHIM_LOG", &log)
        .env("STATE_DIR", &state)
        .env("MODE", mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn timeout/bash");
    let mut lines = Vec::new();
    for l in BufReader::new(child.stdout.take().unwrap()).lines() {
        let l = l.unwrap_or_default();
        println!("{l}");
        lines.push(l);
    }
    let status = child.wait().unwrap();

    print_summary(&log);

    let failed: Vec<&String> = lines.iter().filter(|l| l.starts_with("FAIL:")).collect();
    assert!(
        failed.is_empty(),
        "{scenario} ({mode}): {} check(s) failed:\n{}",
        failed.len(),
        failed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(status.success(), "{scenario} ({mode}) exited with {status}");
    assert!(
        lines.iter().any(|l| l.starts_with("PASS:")),
        "{scenario} ({mode}) checked nothing"
    );
}

/// One plugin call from the shim log.
#[derive(Default)]
struct Call {
    plugin: String,
    env: BTreeMap<String, String>,
    stdin: String,
    stdout: String,
    rc: String,
}

fn parse_log(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut cur: Option<Call> = None;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("@@ begin ") {
            cur = Some(Call {
                plugin: rest.split(' ').next().unwrap_or("").to_string(),
                ..Call::default()
            });
        } else if l == "@@ end" {
            calls.extend(cur.take());
        } else if let Some(c) = cur.as_mut() {
            if let Some(kv) = l.strip_prefix("env ") {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                c.env.insert(k.to_string(), v.to_string());
            } else if let Some(s) = l.strip_prefix("stdin ") {
                c.stdin = s.to_string();
            } else if let Some(s) = l.strip_prefix("stdout ") {
                c.stdout = s.to_string();
            } else if let Some(s) = l.strip_prefix("rc ") {
                c.rc = s.to_string();
            }
        }
    }
    calls
}

/// What the client sent: the count of each verb per plugin, then one line per call but
/// VERSION (CNI_* environment, stdin's cniVersion, runtimeConfig and whether a prevResult came),
/// with the output of every failed call.
fn print_summary(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let calls = parse_log(&text);
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for c in &calls {
        let verb = c.env.get("CNI_COMMAND").cloned().unwrap_or_default();
        *counts.entry((verb, c.plugin.clone())).or_default() += 1;
    }
    println!("---- shim log summary ({} calls) ----", calls.len());
    println!(
        "calls: {}",
        counts
            .iter()
            .map(|((v, p), n)| format!("{v} {p} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(v) = calls
        .iter()
        .find(|c| c.env.get("CNI_COMMAND").is_some_and(|v| v == "VERSION"))
    {
        println!("VERSION (e.g.): env {} stdin {}", env_line(v), v.stdin);
    }
    for c in calls
        .iter()
        .filter(|c| c.env.get("CNI_COMMAND").is_none_or(|v| v != "VERSION"))
    {
        let verb = c.env.get("CNI_COMMAND").map_or("?", String::as_str);
        let stdin: Value = serde_json::from_str(&c.stdin).unwrap_or(Value::Null);
        let mut extra = format!(
            "cniVersion={}",
            stdin
                .get("cniVersion")
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
        if let Some(rc) = stdin.get("runtimeConfig") {
            extra += &format!(" runtimeConfig={rc}");
        }
        if stdin.get("prevResult").is_some() {
            extra += " prevResult=yes";
        }
        if let Some(v) = stdin.get("cni.dev/valid-attachments") {
            extra += &format!(" cni.dev/valid-attachments={v}");
        }
        println!("{verb} {} rc={} {} | {extra}", c.plugin, c.rc, env_line(c));
        if c.rc != "0" {
            println!("    output: {}", c.stdout);
        }
    }
    println!("---- end of shim log summary ----");
}

fn env_line(c: &Call) -> String {
    c.env
        .iter()
        .filter(|(k, _)| k.as_str() != "CNI_COMMAND")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
