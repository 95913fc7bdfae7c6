//! The facts the ruleset is rendered from — what `Host` knows of a network and an endpoint
//! ([`NetworkRules`], [`EndpointRules`], [`LinkRule`], [`PortGuard`]) — and the names of
//! berth's table, maps and chains. Plain data: every renderer (`nat`, `filter`, `icc`,
//! `spoof`, the composition in `mod.rs`) imports it; it imports none of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::port::{PortMapping, Protocol};

/// The table berth owns (family `inet`).
pub const TABLE: &str = "berth";
/// Published IPv4 ports bound to one host address.
pub const MAP_PORTS_IP: &str = "pm4_ip";
/// Published IPv4 ports on every host address.
pub const MAP_PORTS_ANY: &str = "pm4_any";
/// Published IPv6 ports bound to one host address.
pub const MAP_PORTS6_IP: &str = "pm6_ip";
/// Published IPv6 ports on every host address.
pub const MAP_PORTS6_ANY: &str = "pm6_any";
/// Dispatch of forwarded traffic in postrouting, keyed by input interface.
pub const MAP_POST_BY_IIF: &str = "post_by_iif";
/// Dispatch in postrouting keyed by output interface: reaches the hairpin rule also when
/// br_netfilter bridges a DNATed packet back (no input interface in postrouting then).
pub const MAP_POST_BY_OIF: &str = "post_by_oif";
/// Forward dispatch of traffic leaving a berth network, keyed by input interface.
pub const MAP_FWD_FROM: &str = "fwd_from";
/// Forward dispatch of traffic entering a berth network, keyed by output interface.
pub const MAP_FWD_TO: &str = "fwd_to";
/// Every berth bridge → drop: isolation between networks.
pub const MAP_ISOLATE: &str = "isolate";
/// Regular chain holding the port-publishing rules.
pub const CHAIN_PORTS: &str = "ports";
pub(crate) const IFNAMSIZ: usize = 16;

/// The firewall-relevant facts of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// Network name (its chains are `nw-NAME-*`).
    pub name: String,
    /// The bridge device.
    pub bridge: String,
    /// Subnets, both families.
    pub subnets: Vec<IpNet>,
    /// Masquerade egress.
    pub masquerade: bool,
    /// No traffic out of the network.
    pub internal: bool,
    /// Outside hosts may reach container addresses on any port.
    pub allow_direct_access: bool,
    /// SNAT IPv4 egress to this host address instead of masquerading.
    pub outbound_ipv4: Option<Ipv4Addr>,
    /// Containers may talk to each other. Off: only [`LinkRule`] flows pass between them (table
    /// `bridge berth`, see [`super::icc`]); the bridge driver marks the ports.
    pub icc: bool,
    /// Containers may send only from their own MAC and addresses (table `bridge berth`, see
    /// [`super::spoof`]); the bridge driver marks the ports.
    pub anti_spoofing: bool,
    /// The network's VXLAN traffic between hosts is ESP (an encrypted overlay network): it is
    /// marked for the IPsec policy on output, and dropped on input when it arrives in
    /// plaintext (see [`super::esp`]).
    pub encrypted: Option<EspVxlan>,
}

/// The VXLAN traffic of one encrypted overlay network: UDP to `port` carrying VNI `vni`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspVxlan {
    /// The VXLAN UDP port of the cluster.
    pub port: u16,
    /// The network's VNI.
    pub vni: u32,
}

/// What a container port of an anti-spoofing network may send from: its host-side interface
/// (the veth end on the bridge) and the container's MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGuard {
    /// The host-side interface (`iifname` on the bridge).
    pub port: String,
    /// The container interface's MAC.
    pub mac: [u8; 6],
}

/// A legacy link flow (`--link`) on a network with ICC off: `from` may open connections to
/// `to` on `port`/`proto` (an exposed port of `to`); the answers may come back. Nothing else
/// passes between the two. Both addresses must be of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkRule {
    /// The container that opens connections (has the `--link`).
    pub from: IpAddr,
    /// The linked container.
    pub to: IpAddr,
    /// Transport protocol of the exposed port.
    pub proto: Protocol,
    /// The exposed port.
    pub port: u16,
}

/// The firewall-relevant facts of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRules {
    /// Container IPv4 address.
    pub ip: Ipv4Addr,
    /// Container IPv6 address, on dual-stack networks.
    pub ip6: Option<Ipv6Addr>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// The link flows this endpoint opens ([`LinkRule::from`] is one of its addresses);
    /// enforced on networks with ICC off, ignored elsewhere.
    pub links: Vec<LinkRule>,
    /// On an anti-spoofing network: the port and MAC its addresses are bound to (elements of
    /// `spoof4`/`spoof6`, see [`super::spoof`]); `None` elsewhere.
    pub guard: Option<PortGuard>,
}

/// An interface name as nft compares it: 16 bytes, zero padded.
pub fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = vec![0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    k[..n].copy_from_slice(&name.as_bytes()[..n]);
    k
}
