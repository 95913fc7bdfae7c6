//! Multi-host networks: the cluster store and what berth keeps in it.
//!
//! - [`store`]: the [`ClusterStore`] abstraction, with [`Etcd`] (`etcd.rs`) and
//!   [`MemoryStore`] (`memory.rs`) implementations.
//! - [`records`]: the keys and JSON values berth keeps in the store.
//! - `networks.rs`: overlay networks created, listed and deleted cluster-wide (names, VNIs and
//!   subnets unique by compare-and-swap on one index key).
//! - `ipam.rs`: [`ClusterIpam`], this host's view of the cluster-wide address claims (one key
//!   per address, created with `version == 0`).
//! - `endpoints.rs`: this host's endpoints advertised under its lease.
//! - [`agent`]: the [`OverlayAgent`] a runtime spawns: keeps the lease alive, watches the
//!   store and keeps the kernel's VXLAN forwarding entries equal to it.
//!
//! A [`Cluster`] is what [`crate::HostBuilder::cluster`] gives a `Host`: the store, this host's
//! [`HostIdentity`] and its lease.

pub mod agent;
pub mod encryption;
mod endpoints;
mod etcd;
mod ipam;
mod memory;
mod networks;
pub mod records;
pub mod store;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use agent::{AgentStatus, OverlayAgent};
pub use encryption::{ClusterSecret, KeySchedule};
pub use etcd::{Etcd, EtcdConfig, EtcdTls};
pub use ipam::ClusterIpam;
pub use memory::MemoryStore;
pub use store::{ClusterStore, LeaseId};

use crate::error::{Error, Result};
use records::HostRecord;
use store::{Op, Txn};

/// Whether a store error says the lease named no longer exists (etcd: "requested lease not
/// found"): the holder must take a new one, never retry it.
pub fn lease_gone(e: &Error) -> bool {
    matches!(e, Error::Store { reason, .. } if reason.contains("lease not found"))
}

/// The default VXLAN UDP port (IANA's).
pub const VXLAN_PORT: u16 = 4789;

/// Who this host is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// Unique name in the cluster (default: the machine's host name).
    pub name: String,
    /// The underlay address other hosts reach this one's VTEP at (`--cluster-advertise`).
    pub advertise: Option<IpAddr>,
    /// The VXLAN UDP port (every host of a cluster uses the same; default 4789).
    pub port: u16,
}

impl HostIdentity {
    /// A host named `name`, with no advertise address yet.
    pub fn new(name: impl Into<String>) -> HostIdentity {
        HostIdentity {
            name: name.into(),
            advertise: None,
            port: VXLAN_PORT,
        }
    }

    /// The address of this host's VTEP on the underlay.
    pub fn advertise(mut self, addr: IpAddr) -> HostIdentity {
        self.advertise = Some(addr);
        self
    }

    /// The VXLAN UDP port.
    pub fn port(mut self, port: u16) -> HostIdentity {
        self.port = port;
        self
    }

    fn validate(&self) -> Result<()> {
        crate::validate::validate_id("host", &self.name)?;
        if self.port == 0 {
            return Err(Error::invalid("VXLAN port", 0, "a port is 1-65535"));
        }
        match self.advertise {
            Some(a) if a.is_unspecified() || a.is_multicast() || a.is_loopback() => {
                Err(Error::invalid(
                    "cluster advertise address",
                    a,
                    "it must be a unicast address other hosts reach",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Timings of the cluster layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The TTL of this host's lease: its endpoints vanish from the other hosts this long after
    /// it died (default 10 s).
    pub lease_ttl: Duration,
    /// How long a dead host's addresses stay claimed before the reclaimer frees them (default
    /// 60 s): a host back within it keeps them.
    pub reclaim_grace: Duration,
    /// How long the agent holds the removal of a peer's entries when their lease ended rather
    /// than the peer deleting them (default 1 s): a store stalled past the TTL ends every lease
    /// at once, and the hosts re-advertise within this.
    pub expiry_hold: Duration,
    /// How often the agent compares the kernel with the store in full (default 10 s); it also
    /// does on every change it is told of.
    pub reconcile_every: Duration,
    /// How often the keys of encrypted networks change (default 12 h, Docker's period).
    pub key_rotation: Duration,
    /// How long after a new key generation is announced hosts start sending with it (default
    /// 30 s): every host adds its receiving SAs meanwhile. Hosts' clocks must agree within it.
    pub key_switch_delay: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            lease_ttl: Duration::from_secs(10),
            reclaim_grace: Duration::from_secs(60),
            expiry_hold: Duration::from_secs(1),
            reconcile_every: Duration::from_secs(10),
            key_rotation: Duration::from_secs(12 * 3600),
            key_switch_delay: Duration::from_secs(30),
        }
    }
}

/// The cluster a host belongs to: the store, its identity and its lease.
#[derive(Debug, Clone)]
pub struct Cluster {
    store: Arc<dyn ClusterStore>,
    identity: HostIdentity,
    settings: ClusterSettings,
    lease: Arc<tokio::sync::Mutex<Option<LeaseId>>>,
    lease_file: Arc<std::sync::Mutex<Option<PathBuf>>>,
    secret: Option<ClusterSecret>,
    keys: Arc<std::sync::Mutex<Option<KeySchedule>>>,
}

impl Cluster {
    /// A cluster membership.
    pub fn new(
        store: impl ClusterStore + 'static,
        identity: HostIdentity,
        settings: ClusterSettings,
    ) -> Result<Cluster> {
        Cluster::from_arc(Arc::new(store), identity, settings)
    }

    /// [`Cluster::new`] with a shared store.
    pub fn from_arc(
        store: Arc<dyn ClusterStore>,
        identity: HostIdentity,
        settings: ClusterSettings,
    ) -> Result<Cluster> {
        identity.validate()?;
        if settings.lease_ttl < Duration::from_secs(1) {
            return Err(Error::invalid(
                "lease TTL",
                format!("{:?}", settings.lease_ttl),
                "etcd leases are at least 1 s",
            ));
        }
        Ok(Cluster {
            store,
            identity,
            settings,
            lease: Arc::default(),
            lease_file: Arc::default(),
            secret: None,
            keys: Arc::default(),
        })
    }

    /// The same membership with the cluster's master secret (encrypted networks need it).
    pub fn with_secret(mut self, secret: ClusterSecret) -> Cluster {
        self.secret = Some(secret);
        self
    }

    /// The master secret, if this host was given one.
    pub fn secret(&self) -> Option<&ClusterSecret> {
        self.secret.as_ref()
    }

    /// The key schedule: the one last seen, else read from the store (made there, generation
    /// 1, if the cluster has none yet).
    pub async fn key_schedule(&self) -> Result<KeySchedule> {
        if let Some(k) = self.cached_keys() {
            return Ok(k);
        }
        for _ in 0..2 {
            if let Some(kv) = self.store.get(records::KEYS).await? {
                let k: KeySchedule = self.decode(&kv)?;
                self.set_keys(k.clone());
                return Ok(k);
            }
            self.store
                .txn(Txn::new(
                    vec![store::Compare::Absent(records::KEYS.into())],
                    vec![Op::put(
                        records::KEYS,
                        records::to_json(&KeySchedule::first(encryption::unix_now())),
                    )],
                ))
                .await?;
        }
        Err(self.contended("key schedule"))
    }

    pub(crate) fn cached_keys(&self) -> Option<KeySchedule> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_keys(&self, k: KeySchedule) {
        *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some(k);
    }

    /// Rotates the keys if the schedule says it is due (compare-and-swap: one host of many
    /// doing it at once wins). Returns the new schedule when it rotated.
    pub(crate) async fn rotate_keys_if_due(&self) -> Result<Option<KeySchedule>> {
        let Some(kv) = self.store.get(records::KEYS).await? else {
            return Ok(None);
        };
        let k: KeySchedule = self.decode(&kv)?;
        let now = encryption::unix_now();
        if !k.due(now, self.settings.key_rotation.as_secs().max(1)) {
            return Ok(None);
        }
        let next = k.rotated(now, self.settings.key_switch_delay.as_secs());
        let won = self
            .store
            .txn(Txn::new(
                vec![store::Compare::ModRevision(
                    records::KEYS.into(),
                    kv.mod_revision,
                )],
                vec![Op::put(records::KEYS, records::to_json(&next))],
            ))
            .await?;
        Ok(won.then_some(next))
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ClusterStore> {
        &self.store
    }

    /// This host.
    pub fn identity(&self) -> &HostIdentity {
        &self.identity
    }

    /// The timings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Where the lease id is kept, so a restarted process re-attaches to its live lease.
    pub(crate) fn set_lease_file(&self, path: PathBuf) {
        *self.lease_file.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
    }

    fn lease_path(&self) -> Option<PathBuf> {
        self.lease_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The VTEP address, or a typed error when the host has none.
    pub fn vtep(&self) -> Result<IpAddr> {
        self.identity.advertise.ok_or_else(|| {
            Error::invalid(
                "cluster advertise address",
                "(unset)",
                "overlay networks need HostIdentity::advertise (--cluster-advertise)",
            )
        })
    }

    /// This host's lease: the one it holds, else the one its lease file names if still alive
    /// (a restart within the TTL: no churn), else a new one. The host key is (re)put with it.
    pub async fn lease(&self) -> Result<LeaseId> {
        let mut g = self.lease.lock().await;
        if let Some(l) = *g {
            return Ok(l);
        }
        let saved = self
            .lease_path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map(LeaseId);
        let lease = match saved {
            Some(l) if self.store.time_to_live(l).await?.is_some() => l,
            _ => {
                let l = self.store.grant(self.settings.lease_ttl).await?;
                if let Some(p) = self.lease_path() {
                    crate::state::write_json(&p, &l.0)?;
                }
                l
            }
        };
        self.put_host(lease).await?;
        *g = Some(lease);
        Ok(lease)
    }

    /// Forgets the lease held (it ended): the next [`Cluster::lease`] takes a new one.
    pub(crate) async fn lease_lost(&self, which: LeaseId) {
        let mut g = self.lease.lock().await;
        if *g == Some(which) {
            *g = None;
        }
    }

    /// The lease held now, if any (without asking the store).
    pub(crate) async fn current_lease(&self) -> Option<LeaseId> {
        *self.lease.lock().await
    }

    async fn put_host(&self, lease: LeaseId) -> Result<()> {
        let rec = HostRecord {
            vtep: self
                .identity
                .advertise
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: self.identity.port,
        };
        let key = records::host(&self.identity.name);
        self.store
            .txn(Txn::new(
                vec![],
                vec![
                    Op::Put {
                        key,
                        value: records::to_json(&rec),
                        lease: Some(lease),
                    },
                    Op::Delete(records::tombstone(&self.identity.name)),
                ],
            ))
            .await
            .map(drop)
    }

    /// Leaves the cluster gracefully: the lease is revoked, so every peer drops this host's
    /// endpoints at once (not after the TTL). Addresses stay claimed.
    pub async fn leave(&self) -> Result<()> {
        let mut g = self.lease.lock().await;
        if let Some(l) = g.take() {
            self.store.revoke(l).await?;
        }
        if let Some(p) = self.lease_path() {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}
