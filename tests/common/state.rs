//! Reading berth's records back for the process-level tests: IPAM pools, endpoint records, and
//! a seeded PRNG for random kill instants.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use berth::Attachment;
use berth::ipam::NetworkPool;

/// The IPAM state of `network` as netctl left it on disk (`STATE/ipam/`), read through
/// `FileIpam` (the pool file and one entry per allocated address).
pub async fn ipam_pool(state_dir: &Path, network: &str) -> Option<NetworkPool> {
    use berth::Ipam as _;
    berth::FileIpam::new(state_dir.join("ipam"))
        .pool(network)
        .await
        .unwrap_or_else(|e| panic!("ipam pool {network}: {e}"))
}

/// address → container, over every subnet of the pool; asserts no address is listed twice and
/// no container holds two addresses of one family.
pub fn allocations_checked(pool: &NetworkPool) -> BTreeMap<IpAddr, String> {
    let mut all = BTreeMap::new();
    let mut owners = BTreeSet::new();
    for s in &pool.subnets {
        for (ip, c) in &s.allocations {
            assert!(s.subnet.contains(ip), "{ip} allocated outside {}", s.subnet);
            if let Some(other) = all.insert(*ip, c.clone()) {
                panic!("{ip} allocated twice: to {other} and {c}");
            }
            assert!(
                owners.insert((c.clone(), ip.is_ipv6())),
                "{c} holds two addresses: {:?}",
                pool.allocations()
                    .iter()
                    .filter(|(_, o)| *o == c)
                    .collect::<Vec<_>>()
            );
        }
    }
    all
}

/// The endpoint records of `network` (`STATE/endpoints/NETWORK/CONTAINER.json`), by container.
pub fn endpoint_records(state_dir: &Path, network: &str) -> BTreeMap<String, Attachment> {
    let dir = state_dir.join("endpoints").join(network);
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with('.') || p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let att: Attachment = serde_json::from_slice(&std::fs::read(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(format!("{}.json", att.container), name);
        out.insert(att.container.clone(), att);
    }
    out
}

/// A small xorshift PRNG (no extra crates); the seed is printed so a run can be replayed.
pub struct XorShift(u64);

impl XorShift {
    pub fn from_time() -> Self {
        let seed = std::env::var("BERTH_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("xorshift seed {seed} (replay with BERTH_TEST_SEED={seed})");
        XorShift(seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in 0..=max.
    pub fn below(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}
