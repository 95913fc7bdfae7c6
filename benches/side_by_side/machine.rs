//! The machine a run measured on, and the versions of what it compared, for the report. Also a
//! snapshot of the machine's *own* ruleset (read only), compared before and after the run to
//! prove the harness left it alone.

use std::process::Command;

use serde::Serialize;

/// Where and with what a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// UTC date and time of the start.
    pub date: String,
    /// berth's git commit (short), or `unknown`.
    pub commit: String,
    /// CPU model.
    pub cpu: String,
    /// Cores available.
    pub cores: usize,
    /// Memory, GiB.
    pub mem_gib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Debian version.
    pub debian: String,
    /// `/proc/loadavg`'s first three figures at the start.
    pub load_start: String,
    /// The same at the end.
    pub load_end: String,
    /// Package versions.
    pub netavark: String,
    /// The netavark given with `--netavark`, as it describes itself.
    pub netavark_given: Option<crate::subjects::netavark::Version>,
    /// containernetworking-plugins' version.
    pub cni: String,
    /// iptables' version (netavark's and the plugins' firewall tool).
    pub iptables: String,
    /// nftables' version.
    pub nftables: String,
}

fn cmd(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The current load average (1, 5, 15 min).
pub fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn package(name: &str) -> String {
    cmd("dpkg-query", &["-W", "-f=${Version}", name])
}

impl Machine {
    /// Reads it now; `netavark_given` is the `--netavark` build's description.
    pub fn now(netavark_given: Option<crate::subjects::netavark::Version>) -> Machine {
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let mem_kib: u64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        Machine {
            date: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            commit: cmd("git", &["rev-parse", "--short", "HEAD"]),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            mem_gib: (mem_kib as f64 / 1048576.0).round() as u64,
            kernel: read("/proc/sys/kernel/osrelease"),
            debian: read("/etc/debian_version"),
            load_start: loadavg(),
            load_end: String::new(),
            netavark: package("netavark"),
            netavark_given,
            cni: package("containernetworking-plugins"),
            iptables: package("iptables"),
            nftables: package("nftables"),
        }
    }
}

/// The machine's own ruleset, as `nft list ruleset` prints it in the harness's netns (read
/// only; `None` when `nft` cannot run).
pub fn own_ruleset() -> Option<String> {
    let o = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}
