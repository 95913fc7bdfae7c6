//! Workload (c): concurrency. On a new network, 50 containers attach at once (berth in-process:
//! 50 tokio tasks in one process; the others: 50 processes), then all detach at once. Counted:
//! failed operations, addresses held by more than one container (read from the container
//! namespaces), containers left without an address, and what is left afterwards — ports still
//! on the bridge, interfaces still in the containers, nf_tables objects and IPAM files that still
//! name one of the containers' addresses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::subjects::{Ports, Subject};
use crate::world::{Container, container_addresses, container_links};
use crate::{check_stop, rt};

/// What was left after everything was detached.
#[derive(Debug, Default, Clone, Copy)]
pub struct Leaks {
    /// Links still enslaved to a bridge in the host netns.
    pub bridge_ports: usize,
    /// Interfaces other than `lo` still inside the containers.
    pub container_links: usize,
    /// nf_tables rules/elements (JSON objects) still naming a container address.
    pub nft: usize,
    /// Address reservations still held in the subject's IPAM state.
    pub ipam: usize,
}

impl Leaks {
    /// Sum of everything left.
    pub fn total(&self) -> usize {
        self.bridge_ports + self.container_links + self.nft + self.ipam
    }
}

/// One subject's figures.
pub struct ConcSubject {
    /// Subject label.
    pub label: &'static str,
    /// How the operations ran at once.
    pub mode: &'static str,
    /// Failed attaches (their errors).
    pub attach_failures: Vec<String>,
    /// Failed detaches (their errors).
    pub detach_failures: Vec<String>,
    /// Wall time of the 50 attaches.
    pub attach_wall: Duration,
    /// Wall time of the 50 detaches.
    pub detach_wall: Duration,
    /// Addresses held by more than one container.
    pub duplicates: usize,
    /// Containers without an IPv4 address after the attaches.
    pub without_address: usize,
    /// What was left.
    pub leaks: Leaks,
}

/// Runs workload (c) with `n` containers on each subject.
pub fn run(subjects: &mut [Box<dyn Subject>], n: u32) -> Result<Vec<ConcSubject>, String> {
    let mut out = Vec::new();
    for s in subjects.iter_mut() {
        check_stop()?;
        s.create_network()?;
        let cs: Vec<Container> = (0..n)
            .map(|i| rt().block_on(s.world().container(i)))
            .collect::<Result<_, _>>()?;
        let ports = |c: &Container| -> Ports { vec![(21_000 + c.idx as u16, 80)] };
        let t = Instant::now();
        let attached = s.attach_all(&cs, &ports);
        let attach_wall = t.elapsed();
        let addrs = rt().block_on(container_addresses(&cs));
        let t = Instant::now();
        let detached = s.detach_all(&cs, &ports);
        let detach_wall = t.elapsed();
        let all: Vec<Ipv4Addr> = addrs.values().flatten().copied().collect();
        let leaks = Leaks {
            bridge_ports: rt().block_on(s.world().bridge_ports())?,
            container_links: rt().block_on(container_links(&cs)),
            nft: nft_mentions(&s.world().nft()?.text, &all),
            ipam: ipam_leftovers(s.world().dir(), &all),
        };
        let r = ConcSubject {
            label: s.label(),
            mode: if s.key() == "lib" {
                "tasks in one process"
            } else {
                "separate processes"
            },
            attach_failures: attached.into_iter().filter_map(Result::err).collect(),
            detach_failures: detached.into_iter().filter_map(Result::err).collect(),
            attach_wall,
            detach_wall,
            duplicates: duplicates(&addrs),
            without_address: addrs.values().filter(|v| v.is_empty()).count(),
            leaks,
        };
        println!(
            "  {:<16} attach failures {}, detach failures {}, duplicate addresses {}, \
             left without address {}, leaked {:?}",
            r.label,
            r.attach_failures.len(),
            r.detach_failures.len(),
            r.duplicates,
            r.without_address,
            r.leaks
        );
        for e in r.attach_failures.iter().chain(&r.detach_failures).take(3) {
            println!("    e.g. {e}");
        }
        out.push(r);
    }
    Ok(out)
}

/// Addresses that more than one container holds.
fn duplicates(addrs: &BTreeMap<u32, Vec<Ipv4Addr>>) -> usize {
    let mut seen: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for ip in addrs.values().flatten() {
        *seen.entry(*ip).or_default() += 1;
    }
    seen.values().filter(|&&k| k > 1).count()
}

/// Whether `text` names `ip` as a whole address (`10.201.0.5` but not `10.201.0.50`).
pub fn mentions(text: &str, ip: &str) -> bool {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(p) = text[from..].find(ip) {
        let at = from + p;
        let end = at + ip.len();
        let before_ok = at == 0 || !(b[at - 1].is_ascii_digit() || b[at - 1] == b'.');
        let after_ok = end >= b.len() || !(b[end].is_ascii_digit() || b[end] == b'.');
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

/// nf_tables JSON objects (one per line of `nft -j` output's array) naming one of `ips`.
fn nft_mentions(json: &str, ips: &[Ipv4Addr]) -> usize {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return 0;
    };
    let ips: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
    let mut n = 0;
    for o in v["nftables"].as_array().into_iter().flatten() {
        if o.get("rule").is_some() {
            let t = o.to_string();
            n += usize::from(ips.iter().any(|ip| mentions(&t, ip)));
        } else if let Some(s) = o.get("set").or_else(|| o.get("map")) {
            for e in s["elem"].as_array().into_iter().flatten() {
                let t = e.to_string();
                n += usize::from(ips.iter().any(|ip| mentions(&t, ip)));
            }
        }
    }
    n
}

/// Address reservations still held under `dir` for one of `ips`: host-local's one file per
/// address (named by it), and the `allocations` maps in berth's IPAM files. Cursors (host-local's
/// `last_reserved_ip`, berth's `last`) are not reservations and are not counted.
fn ipam_leftovers(dir: &Path, ips: &[Ipv4Addr]) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.parse::<Ipv4Addr>().is_ok_and(|ip| ips.contains(&ip)) {
                n += 1;
            } else if name.ends_with(".json")
                && let Ok(b) = std::fs::read(&p)
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b)
            {
                n += allocations(&v, ips);
            }
        }
    }
    n
}

/// Keys of every `allocations` object in `v` that are one of `ips`.
fn allocations(v: &serde_json::Value, ips: &[Ipv4Addr]) -> usize {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("allocations", serde_json::Value::Object(a)) => a
                    .keys()
                    .filter(|ip| ip.parse::<Ipv4Addr>().is_ok_and(|ip| ips.contains(&ip)))
                    .count(),
                _ => allocations(v, ips),
            })
            .sum(),
        serde_json::Value::Array(a) => a.iter().map(|v| allocations(v, ips)).sum(),
        _ => 0,
    }
}
