//! Running the `netctl` example binary inside a sandbox host netns, for the CLI tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth::sandbox::Sandbox;
use serde_json::Value;

/// `target/debug/examples/netctl`, next to the `deps/` dir this test binary lives in.
pub fn netctl_exe() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    let exe = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/PROFILE/deps")
        .join("examples/netctl");
    assert!(
        exe.exists(),
        "{} does not exist: run `cargo build --examples` before `cargo test --test netctl_firewall`",
        exe.display()
    );
    exe
}

/// Runs netctl in one sandbox's host netns with its state dir.
#[derive(Clone)]
pub struct Netctl {
    exe: PathBuf,
    host: String,
    state_dir: PathBuf,
    /// Global flags put before every command (`--cluster-store …`).
    global: Vec<String>,
}

impl Netctl {
    pub fn new(sb: &Sandbox) -> Self {
        Netctl {
            exe: netctl_exe(),
            host: sb.host_name().to_string(),
            state_dir: sb.state_dir().to_path_buf(),
            global: Vec::new(),
        }
    }

    /// netctl in the netns `netns` (a name under /run/netns) with state dir `state_dir`.
    pub fn in_netns(netns: &str, state_dir: &Path) -> Self {
        Netctl {
            exe: netctl_exe(),
            host: netns.to_string(),
            state_dir: state_dir.to_path_buf(),
            global: Vec::new(),
        }
    }

    /// The same, with these global flags too (before every command).
    pub fn with_flags(&self, flags: &[&str]) -> Self {
        let mut n = self.clone();
        n.global.extend(flags.iter().map(|f| f.to_string()));
        n
    }

    /// The same, over another state dir.
    pub fn state_dir(&self, dir: &Path) -> Self {
        Netctl {
            state_dir: dir.to_path_buf(),
            ..self.clone()
        }
    }

    /// The command line, not started (for running several at once).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host])
            .arg(&self.exe)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(&self.global)
            .args(args);
        c
    }

    /// Runs to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run netctl")
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "netctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that prints JSON, asserts exit 0, returns the parsed value.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("netctl {args:?}: {e}: {out}"))
    }

    /// Runs, asserts exit `code` and nothing on stdout; returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "netctl {args:?}: expected exit {code}; stderr: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "netctl {args:?} printed on failure: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// Runs an operation that must fail with exit 1 and one `error: …` line; returns that line.
    pub fn error(&self, args: &[&str]) -> String {
        let stderr = self.fails(1, args);
        assert!(
            stderr.starts_with("error: ") && stderr.lines().count() == 1,
            "netctl {args:?}: want one `error: ` line, got: {stderr:?}"
        );
        stderr.trim_end().to_string()
    }

    /// `connect --netns PATH [extra…] NETWORK CONTAINER`, asserting success; the JSON.
    pub fn connect(&self, sb: &Sandbox, network: &str, role: &str, extra: &[&str]) -> Value {
        let path = sb.netns_path(role);
        let mut args = vec!["connect", "--netns", path_str(&path)];
        args.extend_from_slice(extra);
        args.extend([network, role]);
        self.json(&args)
    }
}

/// The words of a command line written as one string (split at spaces: no quoting).
pub fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
