//! Address management: the [`Ipam`] trait `Host` calls, the pure arithmetic of one subnet
//! ([`subnet`]) and of automatic subnet choice ([`pools`]), and the default on-disk
//! implementation [`FileIpam`].

pub mod pools;
mod store;
pub mod subnet;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use pools::AddressPool;
use store::Claims;
pub use subnet::SubnetState;

use crate::error::{Error, Result};
use crate::network::{SubnetInfo, SubnetRequest};
use crate::state::{lock_file, read_json, write_json};

/// The address state of one network: its subnets and their allocations (`ipam/NETWORK.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPool {
    /// The subnets, in the order they were reserved.
    pub subnets: Vec<SubnetState>,
}

impl NetworkPool {
    /// Every allocation of every subnet: address → container.
    pub fn allocations(&self) -> BTreeMap<IpAddr, String> {
        self.subnets
            .iter()
            .flat_map(|s| s.allocations.clone())
            .collect()
    }
}

/// What to reserve for a network.
#[derive(Debug, Clone, Default)]
pub struct PoolRequest {
    /// The subnets, explicit or automatic (see [`crate::NetworkSpec::subnet_requests`]).
    pub subnets: Vec<SubnetRequest>,
    /// Named addresses never handed out; each belongs to the subnet that contains it.
    pub aux: BTreeMap<String, IpAddr>,
    /// Prefixes an automatic subnet must not overlap (host addresses, on-link routes,
    /// nameservers); other networks of this IPAM are avoided anyway.
    pub avoid: Vec<IpNet>,
}

/// Static addresses asked for by an endpoint (`--ip`, `--ip6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressRequest {
    /// IPv4 address.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 address.
    pub v6: Option<Ipv6Addr>,
}

/// One allocation released by [`Ipam::gc`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The network.
    pub network: String,
    /// The container that held it.
    pub container: String,
    /// The address.
    pub address: IpAddr,
}

/// What berth needs from address management.
#[async_trait]
pub trait Ipam: Send + Sync + std::fmt::Debug {
    /// Reserves the subnets of `network`: explicit ones must not overlap another network's,
    /// automatic ones are chosen from the pools. All or nothing.
    async fn reserve_pool(&self, network: &str, req: PoolRequest) -> Result<Vec<SubnetInfo>>;
    /// Forgets the network's subnets and allocations (idempotent).
    async fn release_pool(&self, network: &str) -> Result<()>;
    /// Allocates one address per family the network has (static or next free), each with its
    /// subnet's prefix length. All or nothing.
    async fn allocate(
        &self,
        network: &str,
        container: &str,
        req: AddressRequest,
    ) -> Result<Vec<IpNet>>;
    /// Releases what `container` holds in `network` (idempotent).
    async fn release(&self, network: &str, container: &str) -> Result<()>;
    /// The pool of `network`, if it has one.
    async fn pool(&self, network: &str) -> Result<Option<NetworkPool>>;
    /// Releases every allocation whose container is not in `valid` (CNI GC semantics).
    async fn gc(&self, valid: &HashSet<String>) -> Result<Vec<Released>>;
}

/// IPAM stored under `STATE/ipam/`: per network, its subnets in `NETWORK.json` (written
/// atomically: tmp + fsync + rename) and one directory entry per allocated address in
/// `NETWORK.d/` (see `store`), so an allocation costs the same however many addresses are in
/// use. Each change holds an exclusive `flock` of `NETWORK.lock`, so tasks and processes can
/// share it, and a crash at any instant leaves the old or the new state. Choosing or checking
/// subnets also holds `pools.lock`, so two networks never get overlapping subnets.
#[derive(Debug, Clone)]
pub struct FileIpam {
    dir: PathBuf,
    pools4: Vec<AddressPool>,
    pools6: Vec<AddressPool>,
}

/// The bytes of `/etc/machine-id` (the ULA prefix is derived from them), else the hostname.
pub fn host_id() -> Vec<u8> {
    std::fs::read("/etc/machine-id")
        .or_else(|_| std::fs::read("/etc/hostname"))
        .unwrap_or_else(|_| b"berth".to_vec())
}

impl FileIpam {
    /// IPAM state in `dir` (normally `STATE/ipam`) with Docker's default pools and a ULA /48
    /// derived from [`host_id`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileIpam {
            dir: dir.into(),
            pools4: pools::default_ipv4_pools(),
            pools6: pools::default_ipv6_pools(&host_id()),
        }
    }

    /// Replaces the IPv4 pools (Docker's `default-address-pools`).
    pub fn with_ipv4_pools(mut self, pools: Vec<AddressPool>) -> Self {
        self.pools4 = pools;
        self
    }

    /// Replaces the IPv6 pools.
    pub fn with_ipv6_pools(mut self, pools: Vec<AddressPool>) -> Self {
        self.pools6 = pools;
        self
    }

    fn file(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.json"))
    }

    /// The pool file, lock file and allocation entries of `network`.
    fn paths(&self, network: &str) -> (PathBuf, PathBuf, Claims) {
        (
            self.file(network),
            self.dir.join(format!("{network}.lock")),
            Claims::new(&self.dir, network),
        )
    }

    /// Runs `f` on the network's pool under its lock, off the executor, and saves the result.
    async fn with_pool<T: Send + 'static>(
        &self,
        network: &str,
        f: impl FnOnce(&mut Option<NetworkPool>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (file, lock) = (self.file(network), self.dir.join(format!("{network}.lock")));
        blocking(move || update(&file, &lock, f)).await
    }

    /// Every network's pool, by name.
    fn all_pools(dir: &Path) -> Result<Vec<(String, NetworkPool)>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::state("list", dir, e)),
        };
        for e in entries {
            let p = e.map_err(|e| Error::state("list", dir, e))?.path();
            let name = p
                .file_stem()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if p.extension().is_some_and(|x| x == "json")
                && !name.starts_with('.')
                && let Some(pool) = read_json::<NetworkPool>(&p)?
            {
                out.push((name, pool));
            }
        }
        Ok(out)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::state("ipam task", "ipam", std::io::Error::other(e)))?
}

/// Read-modify-write of one pool file under its lock; written only when changed.
fn update<T>(
    file: &Path,
    lock: &Path,
    f: impl FnOnce(&mut Option<NetworkPool>) -> Result<T>,
) -> Result<T> {
    let _guard = lock_file(lock)?;
    let mut pool: Option<NetworkPool> = read_json(file)?;
    let before = pool.clone();
    let out = f(&mut pool)?;
    if pool != before {
        match &pool {
            Some(p) => write_json(file, p)?,
            None => {
                let _ = std::fs::remove_file(file);
            }
        }
    }
    Ok(out)
}

/// Reads a network's pool; the caller holds its lock. A pool written by an earlier berth with
/// its allocations inline has them moved into entries first.
fn load(file: &Path, claims: &Claims) -> Result<Option<NetworkPool>> {
    let Some(mut pool) = read_json::<NetworkPool>(file)? else {
        return Ok(None);
    };
    if pool
        .subnets
        .iter()
        .any(|s| !s.allocations.is_empty() || s.last.is_some())
    {
        claims.create()?;
        let mut held: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for s in &mut pool.subnets {
            for (ip, c) in std::mem::take(&mut s.allocations) {
                held.entry(c).or_default().push(ip);
            }
            if let Some(last) = s.last.take() {
                claims.set_cursor(&s.subnet, last)?;
            }
        }
        for (c, ips) in &held {
            claims.set_held(c, ips)?;
            for ip in ips {
                claims.claim(*ip, c)?;
            }
        }
        claims.sync()?;
        write_json(file, &pool)?;
    }
    Ok(Some(pool))
}

/// Candidates tried next to the round-robin cursor before the entries are listed.
const QUICK_PROBES: usize = 64;

/// The next free address of `s`: the first candidates after the cursor are probed one entry
/// each; only where they are all taken is the subnet's list of entries read.
fn next_free(s: &SubnetState, claims: &Claims) -> Result<Option<IpAddr>> {
    let mut probe = s.clone();
    probe.last = claims.cursor(&s.subnet);
    if let Some(ip) = probe
        .candidates()
        .take(QUICK_PROBES)
        .find(|ip| !claims.exists(*ip))
    {
        return Ok(Some(ip));
    }
    probe.allocations = claims
        .all()?
        .into_iter()
        .filter(|(ip, _)| s.subnet.contains(ip))
        .collect();
    Ok(probe.next_free())
}

/// One allocation in progress: what `container` held before and holds now, and the claims made
/// (undone if the allocation fails).
struct Taking<'a> {
    claims: &'a Claims,
    network: &'a str,
    container: &'a str,
    held: Vec<IpAddr>,
    new: Vec<IpAddr>,
}

impl Taking<'_> {
    /// Lists `ip` in the container's entry, then claims it.
    fn take(&mut self, ip: IpAddr) -> Result<()> {
        self.held.push(ip);
        self.claims.set_held(self.container, &self.held)?;
        if !self.claims.claim(ip, self.container)? {
            // Only a writer that does not take the lock can get here.
            self.held.pop();
            return Err(Error::AddressInUse {
                address: ip,
                network: self.network.into(),
                container: self.claims.owner(ip)?.unwrap_or_default(),
            });
        }
        self.new.push(ip);
        Ok(())
    }

    /// Allocates in the first subnet of one family that has room (or the one holding
    /// `request`); an address the container holds already is given back.
    fn family(
        &mut self,
        pool: &NetworkPool,
        v6: bool,
        request: Option<IpAddr>,
    ) -> Result<Option<IpNet>> {
        let fam: Vec<&SubnetState> = pool
            .subnets
            .iter()
            .filter(|s| s.subnet.addr().is_ipv6() == v6)
            .collect();
        let net = |s: &SubnetState, a| IpNet::new(a, s.subnet.prefix_len()).expect("valid prefix");
        if fam.is_empty() {
            return match request {
                Some(address) => Err(Error::OutsideSubnet {
                    address,
                    subnet: String::from("(no subnet of that family)"),
                }),
                None => Ok(None),
            };
        }
        if let Some(ip) = request {
            let Some(s) = fam.iter().find(|s| s.subnet.contains(&ip)) else {
                let subnets: Vec<String> = fam.iter().map(|s| s.subnet.to_string()).collect();
                return Err(Error::OutsideSubnet {
                    address: ip,
                    subnet: subnets.join(","),
                });
            };
            if !self.held.contains(&ip) {
                s.check_request(self.network, ip)?;
                match self.claims.owner(ip)? {
                    Some(o) if o == self.container => {
                        self.held.push(ip);
                        self.claims.set_held(self.container, &self.held)?;
                    }
                    Some(o) => {
                        return Err(Error::AddressInUse {
                            address: ip,
                            network: self.network.into(),
                            container: o,
                        });
                    }
                    None => self.take(ip)?,
                }
            }
            return Ok(Some(net(s, ip)));
        }
        let held = self.held.iter().find_map(|ip| {
            fam.iter()
                .find(|s| s.subnet.contains(ip))
                .map(|s| (*s, *ip))
        });
        if let Some((s, ip)) = held {
            return Ok(Some(net(s, ip)));
        }
        for s in fam {
            if let Some(ip) = next_free(s, self.claims)? {
                self.take(ip)?;
                self.claims.set_cursor(&s.subnet, ip)?;
                return Ok(Some(net(s, ip)));
            }
        }
        Err(Error::PoolExhausted {
            network: self.network.into(),
        })
    }
}

#[async_trait]
impl Ipam for FileIpam {
    async fn reserve_pool(&self, network: &str, req: PoolRequest) -> Result<Vec<SubnetInfo>> {
        let (dir, name) = (self.dir.clone(), network.to_string());
        let (pools4, pools6) = (self.pools4.clone(), self.pools6.clone());
        let (file, lock, claims) = self.paths(network);
        blocking(move || {
            let _all = lock_file(&dir.join("pools.lock"))?;
            let others: Vec<(String, NetworkPool)> = FileIpam::all_pools(&dir)?
                .into_iter()
                .filter(|(n, _)| *n != name)
                .collect();
            let mut used: Vec<(IpNet, String)> = others
                .iter()
                .flat_map(|(n, p)| p.subnets.iter().map(move |s| (s.subnet, n.clone())))
                .collect();
            let mut states = Vec::new();
            for r in &req.subnets {
                let subnet = match r.subnet {
                    Some(s) => {
                        if let Some((o, owner)) = used
                            .iter()
                            .find(|(u, _)| u.contains(&s.network()) || s.contains(&u.network()))
                        {
                            return Err(Error::SubnetOverlap {
                                subnet: s.to_string(),
                                other: o.to_string(),
                                network: owner.clone(),
                            });
                        }
                        s
                    }
                    None => {
                        let avoid: Vec<IpNet> = used
                            .iter()
                            .map(|(u, _)| *u)
                            .chain(req.avoid.iter().copied())
                            .collect();
                        let pools = if r.ipv6 { &pools6 } else { &pools4 };
                        pools::choose(pools, &avoid).ok_or_else(|| Error::NoFreeSubnet {
                            network: name.clone(),
                            ipv6: r.ipv6,
                        })?
                    }
                };
                let aux = req
                    .aux
                    .iter()
                    .filter(|(_, a)| subnet.contains(*a))
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                states.push(SubnetState::new(subnet, r.gateway, r.ip_range, aux)?);
                used.push((subnet, name.clone()));
            }
            let info = states
                .iter()
                .map(|s| SubnetInfo {
                    subnet: s.subnet,
                    gateway: s.gateway,
                    ip_range: s.ip_range,
                })
                .collect();
            update(&file, &lock, move |pool| {
                if pool.is_some() {
                    return Err(Error::NetworkExists { name });
                }
                // Entries a release interrupted by a crash left behind.
                claims.remove_all()?;
                *pool = Some(NetworkPool { subnets: states });
                Ok(info)
            })
        })
        .await
    }

    async fn release_pool(&self, network: &str) -> Result<()> {
        let claims = Claims::new(&self.dir, network);
        self.with_pool(network, move |pool| {
            claims.remove_all()?;
            *pool = None;
            Ok(())
        })
        .await
    }

    async fn allocate(
        &self,
        network: &str,
        container: &str,
        req: AddressRequest,
    ) -> Result<Vec<IpNet>> {
        let (file, lock, claims) = self.paths(network);
        let (network, container) = (network.to_string(), container.to_string());
        blocking(move || {
            let _guard = lock_file(&lock)?;
            let pool = load(&file, &claims)?.ok_or_else(|| Error::NetworkNotFound {
                name: network.clone(),
            })?;
            claims.create()?;
            let before = claims.held(&container)?;
            let mut t = Taking {
                claims: &claims,
                network: &network,
                container: &container,
                held: Vec::new(),
                new: Vec::new(),
            };
            for ip in &before {
                if claims.owner(*ip)?.as_deref() == Some(container.as_str()) {
                    t.held.push(*ip);
                }
            }
            let mut done = || {
                let mut out = Vec::new();
                out.extend(t.family(&pool, false, req.v4.map(IpAddr::V4))?);
                out.extend(t.family(&pool, true, req.v6.map(IpAddr::V6))?);
                if !t.new.is_empty() {
                    claims.sync()?;
                }
                Ok(out)
            };
            let r = done();
            if r.is_err() {
                for ip in &t.new {
                    let _ = claims.unclaim(*ip);
                }
                let _ = claims.set_held(&container, &before);
            }
            r
        })
        .await
    }

    async fn release(&self, network: &str, container: &str) -> Result<()> {
        let (file, lock, claims) = self.paths(network);
        let c = container.to_string();
        blocking(move || {
            let _guard = lock_file(&lock)?;
            load(&file, &claims)?;
            for ip in claims.held(&c)? {
                if claims.owner(ip)?.as_deref() == Some(c.as_str()) {
                    claims.unclaim(ip)?;
                }
            }
            claims.set_held(&c, &[])
        })
        .await
    }

    async fn pool(&self, network: &str) -> Result<Option<NetworkPool>> {
        let (file, _, claims) = self.paths(network);
        blocking(move || {
            let Some(mut pool) = read_json::<NetworkPool>(&file)? else {
                return Ok(None);
            };
            let all = claims.all()?;
            for s in &mut pool.subnets {
                let mine = all.iter().filter(|(ip, _)| s.subnet.contains(*ip));
                s.allocations.extend(mine.map(|(ip, c)| (*ip, c.clone())));
                s.last = s.last.or_else(|| claims.cursor(&s.subnet));
            }
            Ok(Some(pool))
        })
        .await
    }

    async fn gc(&self, valid: &HashSet<String>) -> Result<Vec<Released>> {
        let dir = self.dir.clone();
        let valid = valid.clone();
        blocking(move || {
            let mut released = Vec::new();
            for (network, _) in FileIpam::all_pools(&dir)? {
                let claims = Claims::new(&dir, &network);
                let _guard = lock_file(&dir.join(format!("{network}.lock")))?;
                if load(&dir.join(format!("{network}.json")), &claims)?.is_none() {
                    continue;
                }
                for (ip, c) in claims.all()? {
                    if !valid.contains(&c) {
                        claims.unclaim(ip)?;
                        released.push(Released {
                            network: network.clone(),
                            container: c,
                            address: ip,
                        });
                    }
                }
                for c in claims.holders()?.into_keys() {
                    if !valid.contains(&c) {
                        claims.set_held(&c, &[])?;
                    }
                }
            }
            Ok(released)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(label: &str) -> FileIpam {
        let dir = std::env::temp_dir().join(format!("berth-ipam-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        FileIpam::new(dir)
    }

    fn subnets(s: &[&str]) -> PoolRequest {
        PoolRequest {
            subnets: s
                .iter()
                .map(|s| SubnetRequest {
                    subnet: Some(s.parse().unwrap()),
                    ipv6: s.contains(':'),
                    gateway: None,
                    ip_range: None,
                })
                .collect(),
            ..PoolRequest::default()
        }
    }

    async fn next(i: &FileIpam, c: &str) -> Result<Vec<IpNet>> {
        i.allocate("n", c, AddressRequest::default()).await
    }

    fn v4(s: &str) -> Option<Ipv4Addr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test]
    async fn allocations_are_entries_round_robin_idempotent_and_all_or_nothing() {
        let i = ipam("rr");
        i.reserve_pool("n", subnets(&["10.9.0.0/29", "fd00:9::/64"]))
            .await
            .unwrap();
        let a = next(&i, "a").await.unwrap();
        assert_eq!(a[0].to_string(), "10.9.0.2/29");
        assert_eq!(a[1].to_string(), "fd00:9::2/64");
        assert_eq!(
            next(&i, "a").await.unwrap(),
            a,
            "a retried attach gets its addresses"
        );
        i.release("n", "a").await.unwrap();
        // Released, but round robin goes on past it.
        assert_eq!(next(&i, "b").await.unwrap()[0].to_string(), "10.9.0.3/29");
        let taken = i.allocate(
            "n",
            "c",
            AddressRequest {
                v4: v4("10.9.0.3"),
                v6: None,
            },
        );
        assert!(
            matches!(taken.await, Err(Error::AddressInUse { container, .. }) if container == "b")
        );
        // The IPv6 request fails: the IPv4 address taken first is given back.
        let bad = AddressRequest {
            v4: v4("10.9.0.6"),
            v6: Some("fd01::1".parse().unwrap()),
        };
        assert!(i.allocate("n", "c", bad).await.is_err());
        let pool = i.pool("n").await.unwrap().unwrap();
        assert_eq!(pool.allocations().len(), 2, "{pool:?}");
        assert!(pool.allocations().values().all(|c| c == "b"));
        // 10.9.0.2..6 usable: b holds .3, so four more, then exhaustion.
        for c in ["c", "d", "e", "f"] {
            next(&i, c).await.unwrap();
        }
        assert!(matches!(
            next(&i, "g").await,
            Err(Error::PoolExhausted { .. })
        ));
        let released = i.gc(&HashSet::from(["b".to_string()])).await.unwrap();
        assert_eq!(released.len(), 8, "c-f, both families: {released:?}");
        assert_eq!(i.pool("n").await.unwrap().unwrap().allocations().len(), 2);
        i.release_pool("n").await.unwrap();
        assert!(i.pool("n").await.unwrap().is_none());
        assert!(!i.dir.join("n.d").exists());
        let _ = std::fs::remove_dir_all(&i.dir);
    }

    #[tokio::test]
    async fn a_crowded_cursor_falls_back_to_listing_and_legacy_pools_are_moved_to_entries() {
        let i = ipam("crowd");
        i.reserve_pool("n", subnets(&["10.8.0.0/22"]))
            .await
            .unwrap();
        // 200 static addresses right where next-free starts looking.
        for n in 0..200u32 {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 8, 0, 2)) + n);
            let req = AddressRequest {
                v4: Some(ip),
                v6: None,
            };
            i.allocate("n", &format!("s{n}"), req).await.unwrap();
        }
        assert_eq!(next(&i, "x").await.unwrap()[0].to_string(), "10.8.0.202/22");

        // A pool file as an earlier berth wrote it: allocations inline.
        let mut legacy = read_json::<NetworkPool>(&i.file("n")).unwrap().unwrap();
        legacy.subnets[0]
            .allocations
            .insert("10.8.3.3".parse().unwrap(), "old".into());
        legacy.subnets[0].last = Some("10.8.3.3".parse().unwrap());
        write_json(&i.file("n"), &legacy).unwrap();
        assert_eq!(next(&i, "y").await.unwrap()[0].to_string(), "10.8.3.4/22");
        let pool = i.pool("n").await.unwrap().unwrap();
        assert_eq!(
            pool.allocations()
                .get(&"10.8.3.3".parse().unwrap())
                .unwrap(),
            "old"
        );
        assert_eq!(pool.allocations().len(), 203);
        let on_disk = read_json::<NetworkPool>(&i.file("n")).unwrap().unwrap();
        assert!(on_disk.subnets[0].allocations.is_empty());
        let _ = std::fs::remove_dir_all(&i.dir);
    }
}
