//! One subject's sandbox: a named "host" netns (from `berth::sandbox::Sandbox`, removed on drop,
//! also on panic), an optional "outside" netns joined to it by a veth, a private temp dir, and
//! container namespaces.
//!
//! Containers are *anonymous* namespaces: the harness holds their fds and hands programs the
//! path `/proc/PID/fd/N`. So 4,000 of them add no mount to the machine's mount table (which every
//! `unshare(CLONE_NEWNS)` copies), and a killed harness leaves none behind: they die with it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use berth::Netns;
use berth::netlink::Netlink;
use berth::sandbox::Sandbox;

use crate::exec::Proc;

/// Host uplink address and the outside netns' address (benchmark range, sandbox only).
pub const HOST_UP: &str = "198.18.0.1";
/// The outside netns' address.
pub const OUTSIDE: &str = "198.18.0.2";
/// The one bridge network every subject builds (a /16, so 1,000 containers fit).
pub const SUBNET: &str = "10.201.0.0/16";
/// Its gateway.
pub const GATEWAY: &str = "10.201.0.1";
/// Label prefix of every netns the harness names (`bbench-<subject>-PID-N-…`).
pub const LABEL: &str = "bbench";

/// A container: its netns, held open by the harness, and how programs name it.
pub struct Container {
    /// Index: container id `c<idx>`, netavark's address `10.201.0.0 + 2 + idx`.
    pub idx: u32,
    /// The container id.
    pub id: String,
    /// Its network namespace.
    pub netns: Netns,
    /// `/proc/<harness pid>/fd/<fd>`: valid while the harness holds `netns`.
    pub path: String,
}

impl Container {
    /// The address netavark is told to use (netavark does no IPAM: podman, its caller,
    /// chooses addresses).
    pub fn static_ip(&self) -> Ipv4Addr {
        let base = u32::from(Ipv4Addr::new(10, 201, 0, 0));
        Ipv4Addr::from(base + 2 + self.idx)
    }
}

/// A subject's sandbox.
pub struct World {
    sb: Sandbox,
    /// The outside netns, when made.
    pub outside: Option<Netns>,
}

impl World {
    /// A sandbox labelled `bbench-<key>`.
    pub async fn new(key: &str) -> Result<World, String> {
        let sb = Sandbox::new(&format!("{LABEL}-{key}"))
            .await
            .map_err(|e| format!("sandbox: {e}"))?;
        Ok(World { sb, outside: None })
    }

    /// Adds the outside netns (`198.18.0.2`) joined to the host (`198.18.0.1`).
    pub async fn add_outside(&mut self) -> Result<(), String> {
        let ns = self
            .sb
            .add_outside(
                format!("{HOST_UP}/24").parse().unwrap(),
                format!("{OUTSIDE}/24").parse().unwrap(),
            )
            .await
            .map_err(|e| format!("outside netns: {e}"))?;
        self.outside = Some(ns);
        Ok(())
    }

    /// The host netns.
    pub fn host(&self) -> &Netns {
        self.sb.host()
    }

    /// A temp dir private to this sandbox (removed with it).
    pub fn dir(&self) -> &Path {
        self.sb.state_dir()
    }

    /// A new container netns with `lo` up.
    pub async fn container(&self, idx: u32) -> Result<Container, String> {
        let netns = Netns::new_anonymous().map_err(|e| format!("container netns: {e}"))?;
        let nl = Netlink::open(&netns).await.map_err(|e| e.to_string())?;
        berth::driver::container::loopback_up(&nl)
            .await
            .map_err(|e| e.to_string())?;
        let path = format!("/proc/{}/fd/{}", std::process::id(), netns.as_raw_fd());
        Ok(Container {
            idx,
            id: format!("c{idx}"),
            netns,
            path,
        })
    }

    /// What the host netns' ruleset holds now (`nft -j list ruleset` inside it).
    pub fn nft(&self) -> Result<NftCounts, String> {
        let ran = Proc::new(self.host(), "nft")
            .args(["-j", "list", "ruleset"])
            .run()
            .map_err(|e| format!("nft: {e}"))?
            .check("nft -j list ruleset")?;
        let v: serde_json::Value =
            serde_json::from_slice(&ran.stdout).map_err(|e| format!("nft json: {e}"))?;
        let mut c = NftCounts {
            text: String::from_utf8_lossy(&ran.stdout).into_owned(),
            ..NftCounts::default()
        };
        for o in v["nftables"].as_array().into_iter().flatten() {
            if o.get("rule").is_some() {
                c.rules += 1;
            } else if o.get("chain").is_some() {
                c.chains += 1;
            } else if let Some(s) = o.get("set").or_else(|| o.get("map")) {
                c.elements += s["elem"].as_array().map_or(0, |a| a.len());
            }
        }
        Ok(c)
    }

    /// Links enslaved to a bridge in the host netns (one per attached container, for every
    /// subject here).
    pub async fn bridge_ports(&self) -> Result<usize, String> {
        let nl = Netlink::open(self.host())
            .await
            .map_err(|e| e.to_string())?;
        let links = nl.links().await.map_err(|e| e.to_string())?;
        Ok(links.iter().filter(|l| l.controller.is_some()).count())
    }
}

/// Counts of nf_tables objects in one netns.
#[derive(Debug, Default, Clone)]
pub struct NftCounts {
    /// Rules, in every table.
    pub rules: usize,
    /// Chains, in every table.
    pub chains: usize,
    /// Set and map elements.
    pub elements: usize,
    /// The JSON dump, to look for leftovers.
    pub text: String,
}

/// The IPv4 addresses (other than loopback) inside each container netns.
pub async fn container_addresses(cs: &[Container]) -> BTreeMap<u32, Vec<Ipv4Addr>> {
    let mut out = BTreeMap::new();
    for c in cs {
        let mut v = Vec::new();
        if let Ok(nl) = Netlink::open(&c.netns).await
            && let Ok(addrs) = nl.addresses(None).await
        {
            for (_, ip, _) in addrs {
                if let std::net::IpAddr::V4(ip) = ip
                    && !ip.is_loopback()
                {
                    v.push(ip);
                }
            }
        }
        out.insert(c.idx, v);
    }
    out
}

/// Interfaces other than `lo` inside each container netns.
pub async fn container_links(cs: &[Container]) -> usize {
    let mut n = 0;
    for c in cs {
        if let Ok(nl) = Netlink::open(&c.netns).await
            && let Ok(links) = nl.links().await
        {
            n += links.iter().filter(|l| l.name != "lo").count();
        }
    }
    n
}

/// Removes namespaces that an earlier harness run left under `/run/netns` when it was killed
/// (named `bbench-…-PID-…` with PID no longer alive). Only the harness's own label is touched.
pub fn remove_stale() {
    let Ok(dir) = std::fs::read_dir(berth::netns::NETNS_RUN_DIR) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{LABEL}-")) else {
            continue;
        };
        // bbench-<key>-<pid>-<n>-<role>
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            match Netns::remove_named(&name) {
                Ok(()) => eprintln!("harness: removed stale netns {name}"),
                Err(e) => eprintln!("harness: could not remove stale netns {name}: {e}"),
            }
        }
    }
    let tmp = std::env::temp_dir();
    if let Ok(dir) = std::fs::read_dir(&tmp) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&format!("berth-{LABEL}-")) else {
                continue;
            };
            let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && pid != std::process::id()
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
