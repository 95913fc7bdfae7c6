//! Address management: the [`Ipam`] trait `Host` calls, the pure per-subnet arithmetic
//! ([`pool`]), and the default on-disk implementation [`FileIpam`].

pub mod pool;
pub mod pools;
pub mod subnet;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use async_trait::async_trait;
use ipnet::Ipv4Net;

pub use pool::PoolState;

use crate::error::{Error, Result};
use crate::network::SubnetInfo;
use crate::state::{lock_file, read_json, write_json};

/// What berth needs from address management.
#[async_trait]
pub trait Ipam: Send + Sync + std::fmt::Debug {
    /// Reserves `subnet` for `network` (gateway: given, or the first host address).
    async fn reserve_pool(
        &self,
        network: &str,
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<SubnetInfo>;
    /// Forgets the network's pool and every allocation in it (idempotent).
    async fn release_pool(&self, network: &str) -> Result<()>;
    /// Allocates an address for `container` (static `request` or next free); returns it with
    /// the subnet's prefix length.
    async fn allocate(
        &self,
        network: &str,
        container: &str,
        request: Option<Ipv4Addr>,
    ) -> Result<Ipv4Net>;
    /// Releases what `container` holds in `network` (idempotent).
    async fn release(&self, network: &str, container: &str) -> Result<()>;
    /// The pool of `network` with its allocations, if it has one.
    async fn pool(&self, network: &str) -> Result<Option<PoolState>>;
}

/// IPAM stored under `STATE/ipam/`: one JSON file per network, each change under an exclusive
/// `flock` of `NETWORK.lock` and written atomically, so tasks and processes can share it.
#[derive(Debug, Clone)]
pub struct FileIpam {
    dir: PathBuf,
}

impl FileIpam {
    /// IPAM state in `dir` (normally `STATE/ipam`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileIpam { dir: dir.into() }
    }

    /// Runs `f` on the network's pool under its lock, off the executor, and saves the result.
    async fn with_pool<T: Send + 'static>(
        &self,
        network: &str,
        f: impl FnOnce(&mut Option<PoolState>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let file = self.dir.join(format!("{network}.json"));
        let lock = self.dir.join(format!("{network}.lock"));
        tokio::task::spawn_blocking(move || {
            let _guard = lock_file(&lock)?;
            let mut pool: Option<PoolState> = read_json(&file)?;
            let before = pool.clone();
            let out = f(&mut pool)?;
            if pool != before {
                match &pool {
                    Some(p) => write_json(&file, p)?,
                    None => {
                        let _ = std::fs::remove_file(&file);
                        let _ = std::fs::remove_file(&lock);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::state("ipam task", "ipam", std::io::Error::other(e)))?
    }
}

#[async_trait]
impl Ipam for FileIpam {
    async fn reserve_pool(
        &self,
        network: &str,
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<SubnetInfo> {
        let name = network.to_string();
        self.with_pool(network, move |pool| {
            if pool.is_some() {
                return Err(Error::NetworkExists { name });
            }
            let p = PoolState::new(subnet, gateway)?;
            let info = SubnetInfo {
                subnet: p.subnet,
                gateway: p.gateway,
            };
            *pool = Some(p);
            Ok(info)
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
        request: Option<Ipv4Addr>,
    ) -> Result<Ipv4Net> {
        let (name, c) = (network.to_string(), container.to_string());
        self.with_pool(network, move |pool| {
            let p = pool
                .as_mut()
                .ok_or_else(|| Error::NetworkNotFound { name: name.clone() })?;
            let ip = p.allocate(&name, &c, request)?;
            Ok(Ipv4Net::new(ip, p.subnet.prefix_len()).expect("prefix from a valid subnet"))
        })
        .await
    }

    async fn release(&self, network: &str, container: &str) -> Result<()> {
        let c = container.to_string();
        self.with_pool(network, move |pool| {
            if let Some(p) = pool.as_mut() {
                p.release(&c);
            }
            Ok(())
        })
        .await
    }

    async fn pool(&self, network: &str) -> Result<Option<PoolState>> {
        self.with_pool(network, |pool| Ok(pool.clone())).await
    }
}
