//! [`FileIpam`]: the default [`Ipam`], on disk under `STATE/ipam/`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ipnet::IpNet;

use super::store::Claims;
use super::{
    AddressRequest, Allocation, Conflict, Ipam, NetworkPool, PoolRequest, Reconciled, RecordedPool,
    Released, SubnetState, pools,
};
use crate::error::{Error, Result};
use crate::network::SubnetInfo;
use crate::state::{StateLock, lock_file, read_json, save_corrupt, write_json};

/// IPAM stored under `STATE/ipam/`: per network, its subnets in `NETWORK.json` (written
/// atomically: tmp + fsync + rename) and one directory entry per allocated address in
/// `NETWORK.d/` (see `store`), so an allocation costs the same however many addresses are in
/// use. Every change holds an exclusive `flock` of `ipam/lock` (one lock for all networks: it
/// also makes subnet choice race-free, so two networks never get overlapping subnets, and it
/// leaves no per-network file behind), so tasks and processes can share it, and a crash at any
/// instant leaves the old or the new state. A pool file that cannot be read is saved into
/// `ipam/quarantine/` and skipped; [`Ipam::reconcile`] rebuilds it from the network's record.
#[derive(Debug, Clone)]
pub struct FileIpam {
    dir: PathBuf,
    pools4: Vec<pools::AddressPool>,
    pools6: Vec<pools::AddressPool>,
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
    pub fn with_ipv4_pools(mut self, pools: Vec<pools::AddressPool>) -> Self {
        self.pools4 = pools;
        self
    }

    /// Replaces the IPv6 pools.
    pub fn with_ipv6_pools(mut self, pools: Vec<pools::AddressPool>) -> Self {
        self.pools6 = pools;
        self
    }

    /// Where this IPAM keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The paths of one network under an IPAM dir.
#[derive(Debug, Clone)]
struct Paths {
    dir: PathBuf,
    network: String,
}

impl Paths {
    fn new(dir: &Path, network: &str) -> Self {
        Paths {
            dir: dir.to_path_buf(),
            network: network.to_string(),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.network))
    }

    fn claims(&self) -> Claims {
        Claims::new(&self.dir, &self.network)
    }

    /// The per-network lock file earlier versions made (removed with the pool).
    fn legacy_lock(&self) -> PathBuf {
        self.dir.join(format!("{}.lock", self.network))
    }
}

/// Takes the IPAM lock (`DIR/lock`).
fn lock(dir: &Path) -> Result<StateLock> {
    crate::state::create_dir(dir)?;
    lock_file(&dir.join("lock"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::state("ipam task", "ipam", std::io::Error::other(e)))?
}

/// Names of the networks with a pool file in `dir`.
fn pool_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::state("list", dir, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let p = e.map_err(|e| Error::state("list", dir, e))?.path();
        if p.extension().is_some_and(|x| x == "json")
            && let Some(name) = p.file_stem().and_then(|n| n.to_str())
            && !name.starts_with('.')
        {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// A pool file, or `Err(saved copy)` when it is unreadable (saved to `DIR/quarantine/`).
fn read_pool(dir: &Path, file: &Path) -> Result<Option<NetworkPool>, Option<PathBuf>> {
    match read_json::<NetworkPool>(file) {
        Ok(p) => Ok(p),
        Err(e) => {
            let saved = save_corrupt(file, &dir.join("quarantine")).ok();
            tracing::warn!(target: "berth::ipam", file = %file.display(), error = %e, saved = ?saved,
                           "unreadable pool file skipped");
            Err(saved)
        }
    }
}

/// Every readable pool but `except`'s, by name (unreadable ones are skipped: their network's
/// subnets are still avoided through the host's addresses and routes).
fn other_pools(dir: &Path, except: &str) -> Result<Vec<(String, NetworkPool)>> {
    let mut out = Vec::new();
    for name in pool_names(dir)? {
        if name == except {
            continue;
        }
        if let Ok(Some(p)) = read_pool(dir, &Paths::new(dir, &name).file()) {
            out.push((name, p));
        }
    }
    Ok(out)
}

/// Reads a network's pool; the caller holds the lock. A pool written by an earlier berth with
/// its allocations inline has them moved into entries first. An unreadable pool is an error
/// naming the file (reconcile rebuilds it).
fn load(p: &Paths) -> Result<Option<NetworkPool>> {
    let file = p.file();
    let claims = p.claims();
    let Some(mut pool) = read_json::<NetworkPool>(&file)? else {
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
                claims.set_cursor(&s.subnet, Some(last))?;
            }
        }
        for (c, ips) in &held {
            claims.set_held(c, ips)?;
            for ip in ips {
                claims.claim(*ip, c)?;
            }
        }
        claims.sync()?;
        write_json(&file, &pool)?;
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

/// One allocation in progress: what `container` held before and holds now, the claims made
/// and the cursors moved (undone if the allocation fails).
struct Taking<'a> {
    claims: &'a Claims,
    network: &'a str,
    container: &'a str,
    held: Vec<IpAddr>,
    done: Allocation,
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
        self.done.claimed.push(ip);
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
                let before = self.claims.cursor(&s.subnet);
                self.claims.set_cursor(&s.subnet, Some(ip))?;
                self.done.cursors.push((s.subnet, before));
                return Ok(Some(net(s, ip)));
            }
        }
        Err(Error::PoolExhausted {
            network: self.network.into(),
        })
    }
}

/// Undoes `alloc` for `container`: drops the claims it made (if still the container's), takes
/// them off its `@` entry, and puts the cursors back (each only if still where `alloc` left
/// it). The caller holds the lock.
fn undo(claims: &Claims, container: &str, alloc: &Allocation) -> Result<()> {
    for ip in &alloc.claimed {
        if claims.owner(*ip)?.as_deref() == Some(container) {
            claims.unclaim(*ip)?;
        }
    }
    let held: Vec<IpAddr> = claims
        .held(container)?
        .into_iter()
        .filter(|ip| !alloc.claimed.contains(ip))
        .collect();
    claims.set_held(container, &held)?;
    for (subnet, before) in &alloc.cursors {
        let now = claims.cursor(subnet);
        if alloc.claimed.iter().any(|ip| Some(*ip) == now) {
            claims.set_cursor(subnet, *before)?;
        }
    }
    Ok(())
}

#[async_trait]
impl Ipam for FileIpam {
    async fn reserve_pool(&self, network: &str, req: PoolRequest) -> Result<Vec<SubnetInfo>> {
        let (dir, name) = (self.dir.clone(), network.to_string());
        let (pools4, pools6) = (self.pools4.clone(), self.pools6.clone());
        blocking(move || {
            let _lock = lock(&dir)?;
            let _ = std::fs::remove_file(dir.join("pools.lock"));
            let paths = Paths::new(&dir, &name);
            let others = other_pools(&dir, &name)?;
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
            if read_json::<NetworkPool>(&paths.file())?.is_some() {
                return Err(Error::NetworkExists { name });
            }
            // Entries a release interrupted by a crash left behind.
            let claims = paths.claims();
            claims.remove_all()?;
            claims.create()?;
            write_json(&paths.file(), &NetworkPool { subnets: states })?;
            Ok(info)
        })
        .await
    }

    async fn release_pool(&self, network: &str) -> Result<()> {
        let (dir, paths) = (self.dir.clone(), Paths::new(&self.dir, network));
        blocking(move || {
            let _lock = lock(&dir)?;
            paths.claims().remove_all()?;
            for f in [paths.file(), paths.legacy_lock()] {
                match std::fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::state("remove", &f, e));
                    }
                    _ => {}
                }
            }
            Ok(())
        })
        .await
    }

    async fn allocate(
        &self,
        network: &str,
        container: &str,
        req: AddressRequest,
    ) -> Result<Allocation> {
        let (dir, paths) = (self.dir.clone(), Paths::new(&self.dir, network));
        let (network, container) = (network.to_string(), container.to_string());
        blocking(move || {
            let _lock = lock(&dir)?;
            let pool = load(&paths)?.ok_or_else(|| Error::NetworkNotFound {
                name: network.clone(),
            })?;
            let claims = paths.claims();
            claims.create()?;
            let mut t = Taking {
                claims: &claims,
                network: &network,
                container: &container,
                held: Vec::new(),
                done: Allocation::default(),
            };
            for ip in claims.held(&container)? {
                if claims.owner(ip)?.as_deref() == Some(container.as_str()) {
                    t.held.push(ip);
                }
            }
            let mut run = || {
                let mut out = Vec::new();
                out.extend(t.family(&pool, false, req.v4.map(IpAddr::V4))?);
                out.extend(t.family(&pool, true, req.v6.map(IpAddr::V6))?);
                if !t.done.claimed.is_empty() {
                    claims.sync()?;
                }
                Ok(out)
            };
            match run() {
                Ok(addresses) => Ok(Allocation {
                    addresses,
                    ..t.done
                }),
                Err(e) => {
                    let _ = undo(&claims, &container, &t.done);
                    Err(e)
                }
            }
        })
        .await
    }

    async fn revert(&self, network: &str, container: &str, alloc: &Allocation) -> Result<()> {
        let (dir, paths) = (self.dir.clone(), Paths::new(&self.dir, network));
        let (container, alloc) = (container.to_string(), alloc.clone());
        blocking(move || {
            let _lock = lock(&dir)?;
            undo(&paths.claims(), &container, &alloc)
        })
        .await
    }

    async fn release(&self, network: &str, container: &str) -> Result<()> {
        let (dir, paths) = (self.dir.clone(), Paths::new(&self.dir, network));
        let c = container.to_string();
        blocking(move || {
            let _lock = lock(&dir)?;
            load(&paths)?;
            let claims = paths.claims();
            for ip in claims.held(&c)? {
                if claims.owner(ip)?.as_deref() == Some(c.as_str()) {
                    claims.unclaim(ip)?;
                }
            }
            claims.set_held(&c, &[])
        })
        .await
    }

    async fn claim_count(&self, network: &str) -> Result<usize> {
        let claims = Paths::new(&self.dir, network).claims();
        blocking(move || claims.count()).await
    }

    async fn pool(&self, network: &str) -> Result<Option<NetworkPool>> {
        let paths = Paths::new(&self.dir, network);
        blocking(move || {
            let Some(mut pool) = read_json::<NetworkPool>(&paths.file())? else {
                return Ok(None);
            };
            let claims = paths.claims();
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

    async fn pools(&self) -> Result<Vec<String>> {
        let dir = self.dir.clone();
        blocking(move || pool_names(&dir)).await
    }

    async fn reconcile(&self, network: &str, recorded: &RecordedPool) -> Result<Reconciled> {
        let (dir, paths) = (self.dir.clone(), Paths::new(&self.dir, network));
        let (network, recorded) = (network.to_string(), recorded.clone());
        blocking(move || {
            let _lock = lock(&dir)?;
            let _ = std::fs::remove_file(paths.legacy_lock());
            let mut out = Reconciled::default();
            let claims = paths.claims();
            let readable = match read_pool(&dir, &paths.file()) {
                Ok(Some(_)) => true,
                Ok(None) => {
                    out.rebuilt = Some(None);
                    false
                }
                Err(saved) => {
                    out.rebuilt = Some(saved);
                    false
                }
            };
            if !readable {
                let mut subnets = Vec::new();
                for s in &recorded.subnets {
                    let aux = recorded
                        .aux
                        .iter()
                        .filter(|(_, a)| s.subnet.contains(*a))
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    subnets.push(SubnetState::new(
                        s.subnet,
                        Some(s.gateway),
                        s.ip_range,
                        aux,
                    )?);
                }
                claims.create()?;
                write_json(&paths.file(), &NetworkPool { subnets })?;
            }
            load(&paths)?;
            claims.create()?;
            for (ip, c) in claims.all()? {
                let held = recorded.held.get(&c).is_some_and(|ips| ips.contains(&ip));
                if !held {
                    claims.unclaim(ip)?;
                    out.released.push(Released {
                        network: network.clone(),
                        container: c,
                        address: ip,
                    });
                }
            }
            for c in claims.holders()?.into_keys() {
                if !recorded.held.contains_key(&c) {
                    claims.set_held(&c, &[])?;
                }
            }
            for (c, ips) in &recorded.held {
                let mut listed = claims.held(c)?;
                for ip in ips {
                    if !listed.contains(ip) {
                        listed.push(*ip);
                        claims.set_held(c, &listed)?;
                    }
                    match claims.owner(*ip)? {
                        Some(o) if o == *c => {}
                        Some(o) => out.conflicts.push(Conflict {
                            network: network.clone(),
                            address: *ip,
                            recorded: c.clone(),
                            claimed_by: o,
                        }),
                        None => {
                            claims.claim(*ip, c)?;
                            out.restored.push((c.clone(), *ip));
                        }
                    }
                }
            }
            claims.sync()?;
            Ok(out)
        })
        .await
    }
}
