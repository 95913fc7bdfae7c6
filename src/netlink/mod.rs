//! Kernel access, one handle per network namespace.
//!
//! - [`kernel`]: the [`Kernel`] trait (what berth asks of one netns's kernel, as request values
//!   in berth's own types), its request and answer types, and [`KernelOpener`].
//! - [`rt`]: [`RtKernel`], the real one over rtnetlink (plus `/proc/sys`).
//! - [`deletion`]: [`Teardown`], who waits out the kernel's answer to a link deletion (a thread,
//!   or a child process for processes that exit after the operation).
//! - [`fake`]: [`fake::FakeNet`], a recording in-memory fake for tests without root.
//! - [`builders`]: the request builders of [`Netlink`] (`nl.link().veth(…)…add()`).
//! - [`rules`]: policy routing (routing rules, routes in other tables) and [`Netlink::rule`].
//!
//! [`Netlink`] is a cheap clonable handle over an `Arc<dyn Kernel>`. [`Netlink::open`] opens the
//! real kernel of a netns: the route-netlink socket is created on a dedicated thread that entered
//! the target namespace (the socket stays bound to it), registered with the caller's tokio
//! runtime, and its connection task spawned there; the handle is then used from any task.

pub mod bridge_vlan;
pub mod builders;
pub mod deletion;
pub mod fake;
pub mod kernel;
pub mod rt;
pub mod rules;
pub mod tc;
pub mod xfrm;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;

pub use builders::{AddressOps, GRE_OVERHEAD_V4, GRE_OVERHEAD_V6, LinkOps, RouteOps, VethPeer};
pub use deletion::Teardown;
pub use kernel::{
    Family, FdbEntry, Hairpin, Kernel, KernelOpener, LinkInfo, LinkLocalLearn, LinkRef, LinkState,
    NeighSuppress, NeighbourEntry, PortIsolation, ProbeKind, RouteInfo, RouteOp, RouteRequest,
    RpFilter,
};
pub use rt::RtKernel;
pub use rules::{RuleInfo, RuleOp, RuleOps};
// Bridge VLANs.
pub use bridge_vlan::{PortVlan, PortVlanRequest, VlanFiltering, VlanOp, VlanTable};

use crate::error::{Error, Result};
use crate::mac::MacAddr;
use crate::netns::Netns;

/// A handle on the kernel of one network namespace (real or fake).
#[derive(Clone, Debug)]
pub struct Netlink {
    kernel: Arc<dyn Kernel>,
}

impl Netlink {
    /// Opens a handle on the real kernel inside `netns`. Must be called within a tokio runtime.
    pub async fn open(netns: &Netns) -> Result<Self> {
        Self::open_with(netns, Teardown::Thread).await
    }

    /// As [`Netlink::open`], with link deletions finished as `teardown` says.
    pub async fn open_with(netns: &Netns, teardown: Teardown) -> Result<Self> {
        Ok(Self::from_kernel(Arc::new(
            RtKernel::open_with(netns, teardown).await?,
        )))
    }

    /// A handle over any [`Kernel`].
    pub fn from_kernel(kernel: Arc<dyn Kernel>) -> Self {
        Netlink { kernel }
    }

    /// The kernel behind the handle.
    pub fn kernel(&self) -> &Arc<dyn Kernel> {
        &self.kernel
    }

    /// Links: create (`nl.link().bridge(…)…add()`), change (`nl.link().set(…)…apply()`).
    pub fn link(&self) -> LinkOps<'_> {
        LinkOps::new(self)
    }

    /// Addresses (`nl.address().add(…)`).
    pub fn address(&self) -> AddressOps<'_> {
        AddressOps::new(self)
    }

    /// Routes (`nl.route().default_via(gw).dev(i).replace()`).
    pub fn route(&self) -> RouteOps<'_> {
        RouteOps::new(self)
    }

    /// `ip link show NAME`; `None` when there is no such link.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>> {
        self.kernel.link(LinkRef::Name(name.to_string())).await
    }

    /// `ip link show` by index; `None` when there is no such link.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>> {
        self.kernel.link(LinkRef::Index(index)).await
    }

    /// Like [`Netlink::link_by_name`], but a missing link is an error naming it.
    pub async fn require_link(&self, name: &str) -> Result<LinkInfo> {
        self.link_by_name(name).await?.ok_or_else(|| {
            Error::netlink(
                "get link",
                name,
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })
    }

    /// Every link (`ip link show`).
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        self.kernel.links().await
    }

    /// `ip link del NAME`. Returns `false` when it did not exist (idempotent); returns once
    /// the link has left the netns (see [`RtKernel`]'s `delete_link`).
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        self.kernel.delete_link(name).await
    }

    /// Waits until link `index` is operationally up, at most `limit`; returns whether it is.
    pub async fn wait_oper_up(&self, index: u32, limit: Duration) -> Result<bool> {
        self.kernel.wait_oper_up(index, limit).await
    }

    /// Addresses `(ifindex, address, prefix)` on link `index` (`ip address show dev …`), or on
    /// every link when `None`.
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>> {
        self.kernel.addresses(index).await
    }

    /// `ip neigh del ADDR dev (index)`: forgets the link-layer address cached for `addr` on
    /// link `index` (named `name`). Returns whether there was an entry.
    pub async fn del_neighbour(&self, index: u32, name: &str, addr: IpAddr) -> Result<bool> {
        self.kernel
            .del_neighbour(kernel::NeighbourRequest {
                index,
                name: name.to_string(),
                addr,
            })
            .await
    }

    /// `ip neigh replace ADDR lladdr MAC dev (index) nud permanent` on link `index` (named
    /// `name`), either family: on a VXLAN device, it answers ARP and neighbour solicitations
    /// for `addr` (see [`kernel::VxlanRequest`]).
    pub async fn replace_neighbour(
        &self,
        index: u32,
        name: &str,
        addr: IpAddr,
        mac: MacAddr,
    ) -> Result<()> {
        self.kernel
            .add_neighbour(NeighbourEntry {
                index,
                name: name.to_string(),
                addr,
                mac,
            })
            .await
    }

    /// The permanent neighbour entries of link `index`, both families (`ip neigh show dev
    /// (index) nud permanent`).
    pub async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>> {
        self.kernel.neighbours(index).await
    }

    /// `bridge fdb replace MAC dev (index) dst DST self permanent` on VXLAN device `index`
    /// (named `name`): frames to `mac` go through the tunnel to the remote VTEP `dst`.
    pub async fn replace_fdb(
        &self,
        index: u32,
        name: &str,
        mac: MacAddr,
        dst: IpAddr,
    ) -> Result<()> {
        self.kernel
            .add_fdb(FdbEntry {
                index,
                name: name.to_string(),
                mac,
                dst,
            })
            .await
    }

    /// `bridge fdb del MAC dev (index) dst DST self` on VXLAN device `index` (named `name`).
    /// Returns whether there was such an entry.
    pub async fn del_fdb(&self, index: u32, name: &str, mac: MacAddr, dst: IpAddr) -> Result<bool> {
        self.kernel
            .del_fdb(FdbEntry {
                index,
                name: name.to_string(),
                mac,
                dst,
            })
            .await
    }

    /// The forwarding-database entries of VXLAN device `index` with a remote VTEP (see
    /// [`Kernel::fdb`]).
    pub async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>> {
        self.kernel.fdb(index).await
    }

    /// Whether the kernel has link kind `kind` (see [`Kernel::probe_kind`]).
    pub async fn probe(&self, kind: ProbeKind) -> Result<()> {
        self.kernel.probe_kind(kind).await
    }

    /// Writes `value` to `/proc/sys/KEY` of this netns (`key` with slashes, under `net/`):
    /// `ip netns exec NS sysctl -w KEY=VALUE`.
    pub async fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.kernel.write_sysctl(key, value).await
    }

    /// The output interface of the IPv4 default route, if there is one.
    pub async fn default_route_oif_v4(&self) -> Result<Option<u32>> {
        Ok(self
            .kernel
            .routes()
            .await?
            .into_iter()
            .filter(|r| r.prefix_len == 0 && r.family == Family::V4)
            .find_map(|r| r.oif))
    }

    /// Destinations of on-link routes (no gateway, not default) in the main table, both
    /// families (`ip route show scope link`), without loopback, link-local and multicast ones.
    pub async fn onlink_routes(&self) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        for r in self.kernel.routes().await? {
            if r.prefix_len == 0 || r.table != kernel::RT_TABLE_MAIN || r.has_gateway {
                continue;
            }
            if let Some(d) = r.dst
                && let Ok(n) = IpNet::new(d, r.prefix_len)
                && !d.is_loopback()
                && !matches!(d, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.segments()[0] & 0xff00 == 0xff00)
            {
                out.push(n.trunc());
            }
        }
        Ok(out)
    }
}

/// Opens real handles ([`Netlink::open_with`]), their link deletions finished as
/// [`RtOpener::teardown`] says (default: by a thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct RtOpener {
    /// Who waits out the kernel's answer to a link deletion.
    pub teardown: Teardown,
}

#[async_trait]
impl KernelOpener for RtOpener {
    async fn open(&self, ns: &Netns) -> Result<Netlink> {
        Netlink::open_with(ns, self.teardown).await
    }
}
