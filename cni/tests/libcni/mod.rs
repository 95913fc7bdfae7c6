//! A small libcni for the tests: execs a plugin inside a sandbox netns (`nsenter --net`) with
//! the `CNI_*` environment and its configuration on stdin, and runs a conflist the way libcni
//! does (the list's `name` and `cniVersion` injected, `runtimeConfig` for the declared
//! capabilities, `prevResult` chained; DEL in reverse with the ADD result).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// The plugin under test.
pub fn berth_cni() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth-cni"))
}

/// Where Debian installs the reference plugins (`tuning`, `bandwidth` …).
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Whether the tests can run (root: they create namespaces).
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    println!("SKIPPED: CNI plugin tests need root");
    false
}

/// One plugin run.
#[derive(Debug)]
pub struct Outcome {
    /// Exit code.
    pub rc: i32,
    /// Parsed stdout (`Null` when empty).
    pub out: Value,
    /// Raw stdout.
    pub raw: String,
    /// stderr.
    pub stderr: String,
}

impl Outcome {
    /// Panics with the output unless the run succeeded.
    pub fn ok(self) -> Value {
        assert_eq!(self.rc, 0, "plugin failed: {} {}", self.raw, self.stderr);
        self.out
    }

    /// Panics unless the run failed with the spec's error object carrying `code`; returns the
    /// message.
    pub fn err(self, code: u64) -> String {
        assert_ne!(self.rc, 0, "plugin succeeded: {}", self.raw);
        assert_eq!(
            self.out.get("code").and_then(Value::as_u64),
            Some(code),
            "wrong code: {}",
            self.raw
        );
        assert!(self.out.get("cniVersion").is_some(), "{}", self.raw);
        self.out["msg"].as_str().unwrap_or_default().to_string()
    }
}

/// The `CNI_*` variables of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `CNI_CONTAINERID`.
    pub id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: Option<String>,
    /// Extra environment (e.g. `BERTH_CRASH_AT`).
    pub extra: Vec<(String, String)>,
}

impl Args {
    /// Container `cid-ROLE` (a prefix no hex id or file name of berth's contains) in the
    /// netns at `netns`, interface `eth0`.
    pub fn new(role: &str, netns: impl AsRef<Path>) -> Self {
        Args {
            id: format!("cid-{role}"),
            netns: netns.as_ref().display().to_string(),
            ifname: "eth0".into(),
            ..Default::default()
        }
    }
}

/// Execs `exe` with `cmd` in the netns named `host_ns` (under /run/netns).
pub fn exec(exe: &Path, host_ns: &str, cmd: &str, a: &Args, conf: &Value) -> Outcome {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{host_ns}"))
        .arg(exe)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", &a.id)
        .env("CNI_NETNS", &a.netns)
        .env("CNI_IFNAME", &a.ifname)
        .env("CNI_PATH", REFERENCE_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &a.args {
        Some(s) => c.env("CNI_ARGS", s),
        None => c.env_remove("CNI_ARGS"),
    };
    for (k, v) in &a.extra {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(conf).unwrap())
        .unwrap();
    let o = child.wait_with_output().expect("plugin output");
    let raw = String::from_utf8_lossy(&o.stdout).to_string();
    Outcome {
        rc: o.status.code().unwrap_or(-1),
        out: serde_json::from_str(raw.trim()).unwrap_or(Value::Null),
        raw,
        stderr: String::from_utf8_lossy(&o.stderr).to_string(),
    }
}

/// A conflist and how libcni runs it.
#[derive(Debug, Clone)]
pub struct ConfList {
    /// The list (`cniVersion`, `name`, `plugins`).
    pub list: Value,
    /// What the runtime passes for capabilities (`portMappings`, `ips` …).
    pub runtime: Value,
}

impl ConfList {
    /// A list of `plugins` named `name` in `version`.
    pub fn new(version: &str, name: &str, plugins: Vec<Value>) -> Self {
        ConfList {
            list: json!({"cniVersion": version, "name": name, "plugins": plugins}),
            runtime: json!({}),
        }
    }

    /// Plugin `i`'s configuration as libcni hands it over.
    pub fn plugin_conf(&self, i: usize, prev: Option<&Value>) -> Value {
        let mut p = self.list["plugins"][i].clone();
        p["name"] = self.list["name"].clone();
        p["cniVersion"] = self.list["cniVersion"].clone();
        if let Some(caps) = p.get("capabilities").and_then(Value::as_object).cloned() {
            let mut rc = serde_json::Map::new();
            for (cap, on) in caps {
                if on == Value::Bool(true)
                    && let Some(v) = self.runtime.get(&cap)
                {
                    rc.insert(cap, v.clone());
                }
            }
            if !rc.is_empty() {
                p["runtimeConfig"] = Value::Object(rc);
            }
        }
        if let Some(prev) = prev {
            p["prevResult"] = prev.clone();
        }
        p
    }

    fn exe(&self, i: usize) -> PathBuf {
        let t = self.list["plugins"][i]["type"].as_str().unwrap();
        if t == "berth-cni" {
            berth_cni()
        } else {
            Path::new(REFERENCE_DIR).join(t)
        }
    }

    fn len(&self) -> usize {
        self.list["plugins"].as_array().unwrap().len()
    }

    /// ADD through the list; the last result, or the first failure (after DEL of what was
    /// made, as libcni does).
    pub fn add(&self, host_ns: &str, a: &Args) -> Result<Value, Outcome> {
        let mut prev: Option<Value> = None;
        for i in 0..self.len() {
            let o = exec(
                &self.exe(i),
                host_ns,
                "ADD",
                a,
                &self.plugin_conf(i, prev.as_ref()),
            );
            if o.rc != 0 {
                self.del(host_ns, a, prev.as_ref());
                return Err(o);
            }
            prev = Some(o.out);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL through the list in reverse, each with `prev` (the cached ADD result).
    pub fn del(&self, host_ns: &str, a: &Args, prev: Option<&Value>) -> Vec<Outcome> {
        (0..self.len())
            .rev()
            .map(|i| exec(&self.exe(i), host_ns, "DEL", a, &self.plugin_conf(i, prev)))
            .collect()
    }

    /// CHECK through the list with the ADD result.
    pub fn check(&self, host_ns: &str, a: &Args, prev: &Value) -> Vec<Outcome> {
        (0..self.len())
            .map(|i| {
                exec(
                    &self.exe(i),
                    host_ns,
                    "CHECK",
                    a,
                    &self.plugin_conf(i, Some(prev)),
                )
            })
            .collect()
    }
}

/// `cmd` run inside the netns named `ns` (read-backs: `ip`, `nft`, `tc`); its stdout.
pub fn in_ns(ns: &str, cmd: &[&str]) -> String {
    let o = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(cmd)
        .output()
        .expect("nsenter");
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Every file under `dir` whose path or content mentions `needle`.
pub fn files_mentioning(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.to_string_lossy().contains(needle) {
                    out.push(p.clone());
                }
                stack.push(p);
            } else if p.to_string_lossy().contains(needle)
                || std::fs::read(&p)
                    .map(|b| String::from_utf8_lossy(&b).contains(needle))
                    .unwrap_or(false)
            {
                out.push(p);
            }
        }
    }
    out
}
