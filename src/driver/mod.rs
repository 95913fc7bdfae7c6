//! Network drivers: which links, addresses and routes a network and an endpoint need.
//!
//! A driver never talks to IPAM or the firewall: `Host` gives it the addresses it allocated and
//! calls the firewall itself, with the facts the driver names ([`NetworkDriver::firewall_rules`]).
//! `Host` never asks which driver a network has: every per-driver question (firewall facts,
//! gateways, internal or DNS by default, published ports, what gc sweeps, how a spec is
//! prepared) is a method of [`NetworkDriver`]. Each driver receives its own options type,
//! bound in the one place that maps a record's [`DriverOptions`] to its driver,
//! [`driver_for`]. Each driver undoes its own half-done work when one of its steps fails
//! (attach is all-or-nothing inside the driver too).
//!
//! Adding a driver: a module here, its options type in [`crate::options`], a line in
//! [`driver_for`].
//!
//! Cluster networks ([`Scope::Global`], the overlay driver) live in the cluster store; the
//! driver keeps each host's forwarding to the other hosts' endpoints in
//! [`NetworkDriver::sync_peers`].
//!
//! Shared pieces: [`veth`] (host-side naming and pair creation), [`lower`] (the parent link of
//! macvlan/ipvlan), [`container`] (what goes inside the container netns), [`announce`]
//! (gratuitous ARP / unsolicited NA).

pub mod announce;
pub mod bridge;
pub mod bridge_vlan;
pub mod container;
pub mod ipvlan;
pub mod lower;
pub mod macvlan;
pub mod none;
pub mod overlay;
pub mod veth;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::endpoint::Attachment;
use crate::error::Result;
use crate::firewall::NetworkRules;
use crate::mac::MacAddr;
use crate::netlink::{KernelOpener, Netlink};
use crate::netns::Netns;
use crate::network::{NetworkInfo, NetworkSpec};
use crate::options::{DriverKind, DriverOptions};

/// The host side a driver works in.
#[derive(Debug, Clone, Copy)]
pub struct DriverContext<'a> {
    /// Netlink handle of the host netns.
    pub host: &'a Netlink,
    /// The host netns.
    pub host_netns: &'a Netns,
    /// Opens handles in other namespaces (a container's, from its record's path).
    pub kernel: &'a dyn KernelOpener,
    /// The other networks (filled where a driver needs them: creating a network, to refuse a
    /// device another one has; deleting one, to tell whether a parent link is still used).
    pub networks: &'a [NetworkInfo],
    /// This host's place on the underlay, when it is in a cluster (overlay networks).
    pub underlay: Option<Underlay>,
}

/// This host's VXLAN tunnel endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underlay {
    /// The address other hosts reach it at (`--cluster-advertise`).
    pub vtep: IpAddr,
    /// The VXLAN UDP port.
    pub port: u16,
}

/// Where a driver's networks live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// On one host: its state dir has them (bridge, macvlan, ipvlan, none).
    Local,
    /// In the cluster store, on every host of the cluster (overlay): names, subnets and
    /// addresses are unique cluster-wide and `Host` needs a cluster
    /// ([`crate::HostBuilder::cluster`]).
    Global,
}

/// An endpoint on another host, as a driver forwards to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The MAC of its interface.
    pub mac: MacAddr,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
    /// Its host's VTEP.
    pub vtep: IpAddr,
}

/// What [`NetworkDriver::sync_peers`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSync {
    /// Entries added or replaced.
    pub added: usize,
    /// Stray entries removed.
    pub removed: usize,
}

/// What a driver made for a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkResources {
    /// The host-side device (bridge), if any.
    pub device: Option<String>,
    /// The MTU chosen.
    pub mtu: u32,
    /// The device existed before (the admin's bridge): the addresses berth added to it.
    pub adopted: Option<Vec<(std::net::IpAddr, u8)>>,
}

/// Everything a driver needs to plumb one endpoint.
#[derive(Debug)]
pub struct EndpointPlan<'a> {
    /// Container id.
    pub container: &'a str,
    /// The container's netns.
    pub netns: &'a Netns,
    /// A netlink handle in it (opened once by `Host`; its `lo` is up already).
    pub container_nl: &'a Netlink,
    /// Interface name inside it.
    pub ifname: &'a str,
    /// MAC of the container interface.
    pub mac: MacAddr,
    /// IPv4 address allocated by IPAM.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address allocated by IPAM.
    pub ipv6: Option<Ipv6Net>,
    /// IPv4 default gateway (none on internal networks).
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default gateway (none on internal networks).
    pub gateway6: Option<Ipv6Addr>,
    /// Static routes through this endpoint (the network's, then its own).
    pub routes: Vec<crate::route::RouteSpec>,
    /// Per family, whether this endpoint's default route replaces the container's (it wins the
    /// default-route election, decided by `Host` from the records) or is added only where the
    /// container has none.
    pub take_default: container::TakeDefault,
    /// Whether the addresses are announced once the link carries them ([`announce`]): they
    /// were handed out before on this network, so a neighbour cache may still hold an earlier
    /// holder's MAC. A first use needs none (and skips flooding every port of the bridge).
    pub announce: bool,
    /// The endpoint's access VLAN ([`crate::EndpointSpec::vlan`]), on drivers that serve them
    /// ([`NetworkDriver::check_vlan`]).
    pub vlan: Option<u16>,
}

/// What a driver made for an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointResources {
    /// Host-side interface, if any.
    pub host_ifname: Option<String>,
    /// MAC of the container interface, if it has one.
    pub mac: Option<MacAddr>,
}

/// One kind of network, bound to the options of the network it serves (see [`driver_for`]).
#[async_trait]
pub trait NetworkDriver: Send + Sync {
    /// Which driver this is.
    fn kind(&self) -> DriverKind;
    /// Whether its endpoints get addresses from IPAM.
    fn uses_ipam(&self) -> bool;
    /// Where its networks live. Default: on this host.
    fn scope(&self) -> Scope {
        Scope::Local
    }
    /// Whether its networks are internal (no route out) whatever the spec says: macvlan and
    /// ipvlan without a parent live on a dummy link, as in Docker. Default: no.
    fn always_internal(&self) -> bool {
        false
    }
    /// Whether the embedded resolver can serve its networks (it listens on a gateway address
    /// the host owns); such networks are served unless the spec says otherwise. Default: no.
    fn serves_dns(&self) -> bool {
        false
    }
    /// Whether its endpoints route through the subnet's gateway (default) rather than the
    /// device itself (ipvlan L3/L3S).
    fn endpoint_gateway(&self) -> bool {
        true
    }
    /// The firewall facts of one of its networks (NAT, isolation, ICC, anti-spoofing); `None`
    /// when the firewall has nothing to do for it — and then it publishes no ports. Default:
    /// none.
    fn firewall_rules(&self, net: &NetworkInfo) -> Option<NetworkRules> {
        let _ = net;
        None
    }
    /// The host address a published port binds when its request names none. Default: all.
    fn default_host_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
    /// The links of the host netns this network keeps while it exists, from its record: `gc`
    /// removes every link marked as berth's ([`crate::link_marks`]) that no live network or
    /// endpoint keeps. Default: the network's device.
    fn host_links(&self, net: &NetworkInfo) -> Vec<String> {
        net.device.iter().cloned().collect()
    }
    /// Whether link `name` of the host netns is one this network keeps besides
    /// [`NetworkDriver::host_links`]: links whose names its record cannot list (a GRE
    /// overlay's tunnel ports, one per remote host). `gc` keeps them too. Default: none.
    fn keeps_host_link(&self, net: &NetworkInfo, name: &str) -> bool {
        let _ = (net, name);
        false
    }
    /// A host device whose ports are all berth's endpoints (a bridge): `gc` also removes its
    /// unmarked ports that no endpoint records (made by versions that did not mark them).
    /// Default: none.
    fn endpoint_ports_of(&self, net: &NetworkInfo) -> Option<String> {
        let _ = net;
        None
    }
    /// Completes a spec from what the host netns has before the network is made (the bridge
    /// driver adopts the addresses of an admin's bridge as gateways). Default: nothing.
    async fn prepare(&self, ctx: DriverContext<'_>, spec: &mut NetworkSpec) -> Result<()> {
        let _ = (ctx, spec);
        Ok(())
    }
    /// Creates the host side of a network (all or nothing). `ctx.networks` lists the others.
    async fn create_network(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
    ) -> Result<NetworkResources>;
    /// Removes what [`NetworkDriver::create_network`] made (idempotent).
    async fn delete_network(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()>;
    /// What [`NetworkDriver::attach`] will answer for `plan`, when it is known beforehand:
    /// `Host` then writes the endpoint's records while the driver works and only renames them
    /// into place once the attach succeeded (an answer that differs is written afterwards, as
    /// without). Default: not known.
    fn expected_resources(
        &self,
        net: &NetworkInfo,
        plan: &EndpointPlan<'_>,
    ) -> Option<EndpointResources> {
        let _ = (net, plan);
        None
    }
    /// Plumbs an endpoint (all or nothing).
    async fn attach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        ep: &EndpointPlan<'_>,
    ) -> Result<EndpointResources>;
    /// Removes an endpoint's links; idempotent, works when the container netns is gone.
    async fn detach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<()>;
    /// What of the endpoint's host side is missing (empty when all is in place).
    async fn check(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<Vec<String>>;
    /// Makes this host forward to exactly `peers`, the network's endpoints on other hosts
    /// (cluster networks). Default: nothing to do.
    async fn sync_peers(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<PeerSync> {
        let _ = (ctx, net, peers);
        Ok(PeerSync::default())
    }
    /// Adds forwarding to `peers` (new or changed endpoints on other hosts) without reading
    /// what is there: the fast path of a change the agent is told of. Default: a full
    /// [`NetworkDriver::sync_peers`] would be wrong here (it removes the others), so nothing.
    async fn add_peers(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<PeerSync> {
        let _ = (ctx, net, peers);
        Ok(PeerSync::default())
    }
    /// What of the forwarding to `peers` is missing or stray here (for `check`); empty when
    /// it matches. Default: nothing to check.
    async fn check_peers(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<Vec<String>> {
        let _ = (ctx, net, peers);
        Ok(Vec::new())
    }

    /// Whether an endpoint of `net` can be in access VLAN `vlan` ([`EndpointSpec::vlan`]) on
    /// this kernel: asked before anything of the attach is made. Default: no,
    /// [`crate::Error::DriverUnsupported`] naming the driver.
    ///
    /// [`EndpointSpec::vlan`]: crate::EndpointSpec::vlan
    async fn check_vlan(&self, ctx: DriverContext<'_>, net: &NetworkInfo, vlan: u16) -> Result<()> {
        let _ = (ctx, net, vlan);
        Err(crate::Error::DriverUnsupported {
            driver: self.kind().name(),
            what: "VLAN-tagged endpoints",
        })
    }

    /// For `gc`, once the links no record keeps are gone: puts what the network's endpoints
    /// share back in line with the endpoints left (the bridge driver: its trunk carries no
    /// VLAN no endpoint has, see [`bridge_vlan`]). Returns how many things it changed.
    /// Default: nothing.
    async fn reconcile(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<usize> {
        let _ = (ctx, net);
        Ok(0)
    }
}

/// The driver registry: the one place that maps a network's options to its driver, which
/// receives its own options type.
pub fn driver_for(options: &DriverOptions) -> Box<dyn NetworkDriver + '_> {
    match options {
        DriverOptions::Bridge(o) => Box::new(bridge::BridgeDriver(o)),
        DriverOptions::None => Box::new(none::NoneDriver),
        DriverOptions::Macvlan(o) => Box::new(macvlan::MacvlanDriver(o)),
        DriverOptions::Ipvlan(o) => Box::new(ipvlan::IpvlanDriver(o)),
        DriverOptions::Overlay(o) => Box::new(overlay::OverlayDriver(o)),
    }
}
