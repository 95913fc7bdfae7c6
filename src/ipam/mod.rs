//! Address management: the [`Ipam`] trait `Host` calls, the pure arithmetic of one subnet
//! ([`subnet`]) and of automatic subnet choice ([`pools`]), and the default on-disk
//! implementation [`FileIpam`].

pub mod pools;
pub mod subnet;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use pools::AddressPool;
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

/// IPAM stored under `STATE/ipam/`: one JSON file per network, each change under an exclusive
/// `flock` of `NETWORK.lock` and written atomically (tmp + fsync + rename), so tasks and
/// processes can share it and a crash at any instant leaves the old or the new state. Choosing
/// or checking subnets also holds `pools.lock`, so two networks never get overlapping subnets.
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

/// Allocates in the first subnet of one family that has room (or the one holding `request`).
fn allocate_family(
    pool: &mut NetworkPool,
    network: &str,
    container: &str,
    v6: bool,
    request: Option<IpAddr>,
) -> Result<Option<IpNet>> {
    let mut fam: Vec<&mut SubnetState> = pool
        .subnets
        .iter_mut()
        .filter(|s| s.subnet.addr().is_ipv6() == v6)
        .collect();
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
        let Some(s) = fam.iter_mut().find(|s| s.subnet.contains(&ip)) else {
            let subnets: Vec<String> = fam.iter().map(|s| s.subnet.to_string()).collect();
            return Err(Error::OutsideSubnet {
                address: ip,
                subnet: subnets.join(","),
            });
        };
        let a = s.allocate(network, container, Some(ip))?;
        return Ok(Some(
            IpNet::new(a, s.subnet.prefix_len()).expect("valid prefix"),
        ));
    }
    let mut last_err = None;
    for s in fam {
        match s.allocate(network, container, None) {
            Ok(a) => {
                return Ok(Some(
                    IpNet::new(a, s.subnet.prefix_len()).expect("valid prefix"),
                ));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(Error::PoolExhausted {
        network: network.into(),
    }))
}

#[async_trait]
impl Ipam for FileIpam {
    async fn reserve_pool(&self, network: &str, req: PoolRequest) -> Result<Vec<SubnetInfo>> {
        let (dir, name) = (self.dir.clone(), network.to_string());
        let (pools4, pools6) = (self.pools4.clone(), self.pools6.clone());
        let (file, lock) = (self.file(network), self.dir.join(format!("{network}.lock")));
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
                *pool = Some(NetworkPool { subnets: states });
                Ok(info)
            })
        })
        .await
    }

    async fn release_pool(&self, network: &str) -> Result<()> {
        self.with_pool(network, |pool| {
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
        let (name, c) = (network.to_string(), container.to_string());
        self.with_pool(network, move |pool| {
            let p = pool
                .as_mut()
                .ok_or_else(|| Error::NetworkNotFound { name: name.clone() })?;
            let mut out = Vec::new();
            out.extend(allocate_family(
                p,
                &name,
                &c,
                false,
                req.v4.map(IpAddr::V4),
            )?);
            out.extend(allocate_family(p, &name, &c, true, req.v6.map(IpAddr::V6))?);
            Ok(out)
        })
        .await
    }

    async fn release(&self, network: &str, container: &str) -> Result<()> {
        let c = container.to_string();
        self.with_pool(network, move |pool| {
            if let Some(p) = pool.as_mut() {
                for s in &mut p.subnets {
                    s.release(&c);
                }
            }
            Ok(())
        })
        .await
    }

    async fn pool(&self, network: &str) -> Result<Option<NetworkPool>> {
        let file = self.file(network);
        blocking(move || read_json(&file)).await
    }

    async fn gc(&self, valid: &HashSet<String>) -> Result<Vec<Released>> {
        let dir = self.dir.clone();
        let valid = valid.clone();
        blocking(move || {
            let mut released = Vec::new();
            for (network, _) in FileIpam::all_pools(&dir)? {
                let (file, lock) = (
                    dir.join(format!("{network}.json")),
                    dir.join(format!("{network}.lock")),
                );
                let mut r = update(&file, &lock, |pool| {
                    let mut out = Vec::new();
                    for s in pool.iter_mut().flat_map(|p| p.subnets.iter_mut()) {
                        s.allocations.retain(|ip, c| {
                            let keep = valid.contains(c);
                            if !keep {
                                out.push(Released {
                                    network: network.clone(),
                                    container: c.clone(),
                                    address: *ip,
                                });
                            }
                            keep
                        });
                    }
                    Ok(out)
                })?;
                released.append(&mut r);
            }
            Ok(released)
        })
        .await
    }
}
