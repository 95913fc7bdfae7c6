//! Address management: the [`Ipam`] trait `Host` calls, the pure arithmetic of one subnet
//! ([`subnet`]) and of automatic subnet choice ([`pools`]), and the default on-disk
//! implementation [`FileIpam`] (`file.rs`, over the allocation entries of `store.rs`).

mod file;
pub mod pools;
pub(crate) mod store;
pub mod subnet;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use file::{FileIpam, host_id};
pub use pools::AddressPool;
pub use subnet::SubnetState;

use crate::error::Result;
use crate::network::{SubnetInfo, SubnetRequest};

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

/// What one [`Ipam::allocate`] did, so that [`Ipam::revert`] can undo exactly that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// One address per family the network has, each with its subnet's prefix length.
    pub addresses: Vec<IpNet>,
    /// The addresses this call claimed (an address the container held already is not here).
    pub claimed: Vec<IpAddr>,
    /// For each subnet whose next-free cursor this call moved, where it was before.
    pub cursors: Vec<(IpNet, Option<IpAddr>)>,
}

/// One allocation released by [`Ipam::reconcile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The network.
    pub network: String,
    /// The container that held it.
    pub container: String,
    /// The address.
    pub address: IpAddr,
}

/// What the records say one network's IPAM should hold: `Host::gc` rebuilds the IPAM from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordedPool {
    /// The network's subnets, with gateways and ranges (its record's).
    pub subnets: Vec<SubnetInfo>,
    /// Its aux addresses.
    pub aux: BTreeMap<String, IpAddr>,
    /// Container → the addresses its endpoint record holds.
    pub held: BTreeMap<String, Vec<IpAddr>>,
}

/// An address two containers claim: the records say `recorded` holds it, the IPAM says
/// `claimed_by` does. Reported, never resolved silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The network.
    pub network: String,
    /// The address.
    pub address: IpAddr,
    /// The container whose endpoint record holds it.
    pub recorded: String,
    /// The container the IPAM entry names.
    pub claimed_by: String,
}

/// What [`Ipam::reconcile`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Allocations no record holds, released.
    pub released: Vec<Released>,
    /// Allocations a record holds that the IPAM had lost, restored: (container, address).
    pub restored: Vec<(String, IpAddr)>,
    /// Addresses held by one record and claimed by another container.
    pub conflicts: Vec<Conflict>,
    /// The network's pool was missing or corrupt and was rebuilt from the record; a corrupt
    /// one was saved here first.
    pub rebuilt: Option<Option<PathBuf>>,
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
    ) -> Result<Allocation>;
    /// Undoes one [`Ipam::allocate`] exactly: the addresses it claimed are released and the
    /// cursors it moved are put back, so a failed attach leaves the IPAM as it found it.
    async fn revert(&self, network: &str, container: &str, alloc: &Allocation) -> Result<()>;
    /// Releases what `container` holds in `network` (idempotent).
    async fn release(&self, network: &str, container: &str) -> Result<()>;
    /// The pool of `network`, if it has one.
    async fn pool(&self, network: &str) -> Result<Option<NetworkPool>>;
    /// The networks that have a pool.
    async fn pools(&self) -> Result<Vec<String>>;
    /// How many addresses of `network` are claimed: a cheap count (no claim is read), which
    /// `Host` compares with its records before allocating, to notice claims lost behind its
    /// back and restore them ([`Ipam::reconcile`]) before an address could be handed out twice.
    async fn claim_count(&self, network: &str) -> Result<usize>;
    /// Makes `network`'s IPAM hold exactly what the records say: the pool rebuilt from
    /// `recorded` if missing or unreadable, every recorded address claimed for its container
    /// (restored if lost; a claim by another container is a [`Conflict`], left in place), every
    /// other allocation released.
    async fn reconcile(&self, network: &str, recorded: &RecordedPool) -> Result<Reconciled>;
}

#[cfg(test)]
mod tests;
