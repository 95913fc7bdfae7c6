//! The [`Kernel`] trait: what berth asks of one network namespace's kernel, as request values in
//! berth's own types (no rtnetlink type, no bare boolean), and the values it answers with.
//!
//! [`super::rt::RtKernel`] implements it over rtnetlink, [`super::fake::FakeKernel`] over an
//! in-memory namespace. Callers use the builders of [`super::Netlink`] rather than these
//! requests directly.

use std::fmt::Debug;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::mac::MacAddr;
use crate::netns::Netns;
use crate::options::{IpvlanFlag, IpvlanMode, MacvlanMode};
use crate::route::RouteSpec;

/// What `ip link show` tells about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// ifindex.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Index of its master (bridge), if enslaved.
    pub controller: Option<u32>,
    /// Whether IFF_UP is set.
    pub up: bool,
    /// Whether its operational state is up (`IF_OPER_UP`: set once the kernel has processed
    /// the carrier coming up — for a bridge port, when the bridge has enabled it).
    pub oper_up: bool,
    /// Hardware address.
    pub mac: Option<Vec<u8>>,
    /// `ifalias` (berth marks the links it creates for others to share).
    pub alias: Option<String>,
    /// Whether it is a Linux bridge.
    pub is_bridge: bool,
    /// The device group (berth marks its links with one, see [`crate::link_marks`]).
    pub group: u32,
    /// Whether it is a loopback device (`ARPHRD_LOOPBACK`).
    pub is_loopback: bool,
    /// Whether its link layer is Ethernet (`ARPHRD_ETHER`): what macvlan/ipvlan parents need.
    pub is_ether: bool,
}

/// One link to create (`ip link add …`), one variant per kind.
#[derive(Debug, Clone)]
pub enum LinkRequest {
    /// `ip link add NAME address MAC mtu MTU group BRIDGE type bridge && ip link set NAME up`,
    /// marked as berth's ([`crate::link_marks::BRIDGE`]) in the creating request.
    Bridge {
        /// Name.
        name: String,
        /// Its MAC.
        mac: MacAddr,
        /// MTU.
        mtu: u32,
    },
    /// A veth pair whose peer is born in another netns.
    Veth(VethRequest),
    /// `ip link add NAME link PARENT netns NS address MAC type macvlan mode MODE`: born inside
    /// `netns` (no move afterwards).
    MacvlanInto {
        /// Name inside `netns`.
        name: String,
        /// ifindex of the parent, in this netns.
        parent: u32,
        /// Mode.
        mode: MacvlanMode,
        /// Its MAC.
        mac: MacAddr,
        /// Where it is born.
        netns: Netns,
    },
    /// `ip link add NAME link PARENT netns NS type ipvlan mode MODE FLAG`.
    IpvlanInto {
        /// Name inside `netns`.
        name: String,
        /// ifindex of the parent, in this netns.
        parent: u32,
        /// Mode.
        mode: IpvlanMode,
        /// Flag.
        flag: IpvlanFlag,
        /// Where it is born.
        netns: Netns,
    },
    /// `ip link add NAME link PARENT group LOWER type macvlan mode MODE && ip link set NAME up`
    /// here (a host shim), marked as berth's in the creating request and with `alias`.
    MacvlanShim {
        /// Name.
        name: String,
        /// ifindex of the parent.
        parent: u32,
        /// Mode.
        mode: MacvlanMode,
        /// `ifalias`, set after the creation.
        alias: String,
    },
    /// `ip link add NAME link BASE group LOWER type vlan id ID && ip link set NAME up`, marked
    /// as berth's in the creating request and with `alias`.
    Vlan {
        /// Name.
        name: String,
        /// ifindex of the base link.
        base: u32,
        /// 802.1q id.
        id: u16,
        /// `ifalias`, set after the creation.
        alias: String,
    },
    /// `ip link add NAME group LOWER type dummy && ip link set NAME up`, marked as berth's in
    /// the creating request and with `alias`.
    Dummy {
        /// Name.
        name: String,
        /// `ifalias`, set after the creation.
        alias: String,
    },
    /// A VXLAN device, up (see [`VxlanRequest`]).
    Vxlan(VxlanRequest),
    /// A gretap (or ip6gretap) device, up (see [`GretapRequest`]).
    Gretap(GretapRequest),
}

impl LinkRequest {
    /// The name of the link to create.
    pub fn name(&self) -> &str {
        match self {
            LinkRequest::Bridge { name, .. }
            | LinkRequest::MacvlanInto { name, .. }
            | LinkRequest::IpvlanInto { name, .. }
            | LinkRequest::MacvlanShim { name, .. }
            | LinkRequest::Vlan { name, .. }
            | LinkRequest::Dummy { name, .. } => name,
            LinkRequest::Veth(v) => &v.name,
            LinkRequest::Vxlan(v) => &v.name,
            LinkRequest::Gretap(g) => &g.name,
        }
    }
}

/// A veth pair: its host end here, its peer born inside `peer_netns` — one request, no move
/// afterwards (moving costs ~20 ms more). Equivalent of
/// `ip link add HOST mtu M master BR group G type veth peer name PEER address MAC netns NS`.
///
/// With a `master`, the host end is a bridge port and needs no address: with IPv6 on, bringing
/// it up would give it a link-local address and routes in this netns (every later link change
/// walks the IPv6 routing table: O(endpoints)) and send DAD, router solicitations and MLD
/// reports that the bridge floods to every port. So IPv6 is switched off on it
/// (`net.ipv6.conf.HOST.disable_ipv6=1`) before it comes up (`ip link set HOST up`), and a
/// failure there deletes the pair again. Without a master, the host end comes up in the
/// creating request itself.
#[derive(Debug, Clone)]
pub struct VethRequest {
    /// Name of the host end.
    pub name: String,
    /// ifindex of the bridge the host end joins.
    pub master: Option<u32>,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    /// Device group of the host end (berth's mark).
    pub group: Option<u32>,
    /// Name of the peer inside `peer_netns`.
    pub peer_name: String,
    /// MAC of the peer.
    pub peer_mac: Option<MacAddr>,
    /// Where the peer is born.
    pub peer_netns: Netns,
}

/// A VXLAN device, the tunnel end (VTEP) of an overlay on this host. Equivalent of
/// `ip link add NAME address MAC mtu MTU master BR group G type vxlan id VNI local VTEP
/// dev UNDERLAY dstport PORT nolearning proxy`, then `ip link set NAME up`.
///
/// It has no remote and no multicast group: where a frame goes is what its forwarding database
/// says ([`FdbEntry`], `bridge fdb … self`), and a destination MAC without an entry is dropped,
/// not flooded. It learns nothing from what it receives (`nolearning`: the entries are all
/// programmed), and it answers ARP requests and IPv6 neighbour solicitations from the frames
/// it would send itself out of its own neighbour table (`proxy`: [`NeighbourEntry`]), so
/// neither crosses the tunnel. The kernel clamps the MTU to the underlay's minus the
/// encapsulation (50 bytes over IPv4, 70 over IPv6).
///
/// With a `master`, it is a bridge port and needs no address; unlike a veth's host end
/// ([`VethRequest`]) it keeps IPv6 on (with `disable_ipv6` the kernel refuses IPv6 neighbour
/// entries on it: "IPv6 is disabled on this device"), but generates no address
/// (`net.ipv6.conf.NAME.addr_gen_mode=1`, set before it comes up): no link-local address, so
/// no DAD, router solicitations or MLD reports of its own, and no `fe80::/64` route. A failure
/// there deletes it again. Without a master, it comes up in the creating request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanRequest {
    /// Name.
    pub name: String,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The local VTEP address, source of the encapsulated packets (`IFLA_VXLAN_LOCAL` or
    /// `IFLA_VXLAN_LOCAL6`); its family is the one of every remote VTEP.
    pub local: IpAddr,
    /// ifindex of the underlay link the tunnel packets leave by (`dev`).
    pub underlay: Option<u32>,
    /// UDP destination port (`dstport`; IANA's is 4789).
    pub port: u16,
    /// MTU.
    pub mtu: u32,
    /// ifindex of the bridge it joins at creation.
    pub master: Option<u32>,
    /// Device group (berth's mark).
    pub group: Option<u32>,
    /// Its MAC.
    pub mac: MacAddr,
}

/// A gretap device: one point-to-point Ethernet-over-GRE tunnel from this host's `local`
/// address to `remote`, keyed (`ikey` = `okey` = `key`, both directions with the GRE key flag),
/// so that several tunnels between the same two hosts stay apart. Equivalent of
/// `ip link add NAME mtu MTU master BR group G type gretap local LOCAL remote REMOTE key KEY
/// ttl TTL dev UNDERLAY` — `type ip6gretap … encaplimit none` when the addresses are IPv6 —,
/// then, with a master, `bridge link set dev NAME isolated on|off neigh_suppress on|off`,
/// then `ip link set NAME up`.
///
/// With a `master`, it is a bridge port: it is created down, IPv6 is switched off on it
/// (`net.ipv6.conf.NAME.disable_ipv6=1`: no link-local address, DAD, router solicitations or
/// MLD reports of its own), its port flags are set, and only then does it come up, so no
/// frame crosses it before it is isolated. A failure on the way deletes it again. Without a
/// master, it comes up in the creating request itself.
///
/// The kernel's own MTU for it is the underlay's less the encapsulation: outer IPv4 header,
/// GRE header and key, inner Ethernet header (20 + 4 + 4 + 14 = 42 bytes), or over IPv6
/// 40 + 4 + 4 + 14 = 62 (no encapsulation-limit option: `encaplimit none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GretapRequest {
    /// Name.
    pub name: String,
    /// This host's address, source of the tunnel packets (`IFLA_GRE_LOCAL`).
    pub local: IpAddr,
    /// The other end's address (`IFLA_GRE_REMOTE`), of the same family as `local`.
    pub remote: IpAddr,
    /// The GRE key, both directions (`IFLA_GRE_IKEY`/`IFLA_GRE_OKEY`).
    pub key: u32,
    /// The outer header's TTL (hop limit over IPv6); 0 would inherit the inner packet's.
    pub ttl: u8,
    /// ifindex of the underlay link the tunnel packets leave by (`IFLA_GRE_LINK`).
    pub underlay: Option<u32>,
    /// MTU.
    pub mtu: u32,
    /// ifindex of the bridge it joins at creation.
    pub master: Option<u32>,
    /// Device group (berth's mark).
    pub group: Option<u32>,
    /// Port isolation, with a master.
    pub isolation: PortIsolation,
    /// Neighbour suppression, with a master.
    pub neigh_suppress: NeighSuppress,
}

/// Whether a bridge port suppresses ARP and IPv6 neighbour discovery (`neigh_suppress`): the
/// bridge floods no ARP request or neighbour solicitation for an address of its own (nor
/// duplicate-address probes or gratuitous announcements) out of such a port, and answers from
/// its neighbour table for addresses it knows behind one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighSuppress {
    /// `neigh_suppress on`.
    On,
    /// `neigh_suppress off`.
    Off,
}

/// Administrative state of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// `ip link set … up`.
    Up,
    /// `ip link set … down`.
    Down,
}

/// `net.ipv4.conf.IF.rp_filter` (reverse-path filtering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpFilter {
    /// 0: off.
    Off,
    /// 1: strict.
    Strict,
    /// 2: loose (the source must be reachable through some interface).
    Loose,
}

impl RpFilter {
    /// The sysctl's value.
    pub fn value(self) -> i32 {
        match self {
            RpFilter::Off => 0,
            RpFilter::Strict => 1,
            RpFilter::Loose => 2,
        }
    }
}

/// Whether a bridge port sends frames back out the port they came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hairpin {
    /// Hairpin mode on (a container reaches itself through a published port via the host).
    On,
    /// Off.
    Off,
}

/// Whether a bridge port is isolated: isolated ports cannot exchange frames with each other,
/// only with non-isolated ports such as the bridge itself (ICC off without br_netfilter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortIsolation {
    /// `isolated on`.
    Isolated,
    /// `isolated off`.
    Open,
}

/// Whether a bridge learns source addresses from frames to IEEE link-local destinations
/// (`01:80:c2:00:00:0X`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLocalLearn {
    /// `no_linklocal_learn 0`.
    On,
    /// `no_linklocal_learn 1`.
    Off,
}

/// Attributes of one existing link to change (`ip link set dev (index) …`); `None` leaves one
/// as it is. All in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetLink {
    /// ifindex.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// Up or down.
    pub state: Option<LinkState>,
    /// `net.ipv4.conf.NAME.rp_filter`, in the same request (`IFLA_AF_SPEC`/`IFLA_INET_CONF`:
    /// no thread entering the netns to write /proc/sys).
    pub rp_filter: Option<RpFilter>,
    /// Device group (matched by nft's `iifgroup`).
    pub group: Option<u32>,
    /// `ifalias`.
    pub alias: Option<String>,
    /// `net.ipv4.conf.NAME.arp_notify=1`, in the same request (`IFLA_INET_CONF`): the kernel
    /// sends a gratuitous ARP for the link's IPv4 addresses when it comes up and whenever its
    /// address is set (see `mac`).
    pub arp_notify: bool,
    /// `address MAC`. Set to the MAC the link already has, it changes nothing but makes the
    /// kernel announce the link's addresses (`NETDEV_CHANGEADDR`: a gratuitous ARP with
    /// `arp_notify`, an unsolicited NA with `ndisc_notify`) — with no packet socket, whose
    /// close waits for an RCU grace period.
    pub mac: Option<crate::mac::MacAddr>,
}

/// A change to an existing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// `ip link set dev (index) …`.
    Set(SetLink),
    /// `bridge link set dev NAME hairpin on|off isolated on|off`.
    BridgePort {
        /// ifindex of the port.
        index: u32,
        /// Its name (for errors).
        name: String,
        /// Hairpin mode.
        hairpin: Hairpin,
        /// Port isolation.
        isolation: PortIsolation,
    },
    /// `ip link set dev NAME type bridge no_linklocal_learn 0|1`.
    Bridge {
        /// The bridge's name.
        name: String,
        /// Learning from link-local frames.
        linklocal_learn: LinkLocalLearn,
    },
}

/// A link named by name or by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRef {
    /// By name.
    Name(String),
    /// By ifindex.
    Index(u32),
}

/// One address on one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRequest {
    /// ifindex.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }
}

/// A route to add, replace or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRequest {
    /// `ip route add default via GW [dev (index)]` (the family is the gateway's).
    DefaultVia {
        /// Gateway.
        gateway: IpAddr,
        /// Output interface.
        dev: Option<u32>,
    },
    /// `ip route add default dev (index)` for one family (ipvlan L3: no gateway).
    DefaultDev {
        /// Family.
        family: Family,
        /// Output interface.
        dev: u32,
    },
    /// `ip route add ADDR/32 dev (index)` (or /128): a host route through one link.
    Host {
        /// Destination host.
        addr: IpAddr,
        /// Output interface.
        dev: u32,
    },
    /// `ip route add DST [via GW] dev (index) [metric M]`.
    Spec {
        /// The route.
        spec: RouteSpec,
        /// Output interface.
        dev: u32,
    },
}

/// What to do with a [`RouteRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOp {
    /// `ip route add` (fails with EEXIST when there is one).
    Add,
    /// `ip route replace`.
    Replace,
    /// `ip route del`; a route already gone is fine.
    Delete,
}

/// One route of the routing tables, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Family.
    pub family: Family,
    /// Destination (`None` for a default route).
    pub dst: Option<IpAddr>,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Whether it goes through a gateway (`RTA_GATEWAY` or `RTA_VIA`).
    pub has_gateway: bool,
    /// The gateway, when it is one of the route's own family.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Routing table (254 is main).
    pub table: u32,
}

/// The main routing table's id.
pub const RT_TABLE_MAIN: u32 = 254;

/// A neighbour cache entry to forget (`ip neigh del ADDR dev (index)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourRequest {
    /// ifindex.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// The neighbour's address.
    pub addr: IpAddr,
}

/// A permanent forwarding-database entry of a VXLAN device: frames to `mac` go through the
/// tunnel to the remote VTEP `dst` (`bridge fdb replace MAC dev NAME dst DST self permanent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdbEntry {
    /// ifindex of the VXLAN device.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// The destination MAC (a remote container's).
    pub mac: MacAddr,
    /// The remote VTEP's address (of the family of the device's local VTEP).
    pub dst: IpAddr,
}

/// A permanent neighbour entry: `addr` is at `mac` on link `index`
/// (`ip neigh replace ADDR lladdr MAC dev NAME nud permanent`). On a VXLAN device with
/// `proxy`, it answers ARP and neighbour solicitations for `addr` locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourEntry {
    /// ifindex.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// The neighbour's address (IPv4 or IPv6).
    pub addr: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// A link kind whose presence in the kernel can be probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// macvlan.
    Macvlan,
    /// ipvlan.
    Ipvlan,
    /// gretap (Ethernet over GRE, IPv4: `ip_gre`).
    Gretap,
    /// ip6gretap (Ethernet over GRE, IPv6: `ip6_gre`).
    Ip6Gretap,
}

/// The kernel of one network namespace, as berth uses it: links, addresses, routes,
/// neighbours and sysctls. Errors carry the operation and the interface name
/// ([`crate::Error::Netlink`]); a kind the kernel lacks is [`crate::Error::Unsupported`].
#[async_trait]
pub trait Kernel: Send + Sync + Debug {
    /// Creates a link; returns it as seen from this netns, or `None` when it was born in
    /// another one.
    async fn add_link(&self, req: LinkRequest) -> Result<Option<LinkInfo>>;
    /// Changes an existing link.
    async fn set_link(&self, change: LinkChange) -> Result<()>;
    /// `ip link del NAME`. Returns `false` when it did not exist (idempotent).
    async fn delete_link(&self, name: &str) -> Result<bool>;
    /// `ip link show`, one link; `None` when there is no such link.
    async fn link(&self, by: LinkRef) -> Result<Option<LinkInfo>>;
    /// Every link (`ip link show`).
    async fn links(&self) -> Result<Vec<LinkInfo>>;
    /// Waits until link `index` is operationally up, at most `limit`; returns whether it is.
    async fn wait_oper_up(&self, index: u32, limit: Duration) -> Result<bool>;
    /// `ip address add`.
    async fn add_address(&self, req: AddressRequest) -> Result<()>;
    /// `ip address del`; an address already gone is fine.
    async fn del_address(&self, req: AddressRequest) -> Result<()>;
    /// Addresses `(ifindex, address, prefix)` on link `index`, or on every link when `None`.
    async fn addresses(&self, index: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>>;
    /// Adds, replaces or deletes a route.
    async fn route(&self, op: RouteOp, req: RouteRequest) -> Result<()>;
    /// Every route of both families.
    async fn routes(&self) -> Result<Vec<RouteInfo>>;
    /// `ip neigh del`; returns whether there was an entry.
    async fn del_neighbour(&self, req: NeighbourRequest) -> Result<bool>;
    /// `ip neigh replace ADDR lladdr MAC dev (index) nud permanent` (either family).
    async fn add_neighbour(&self, entry: NeighbourEntry) -> Result<()>;
    /// The permanent neighbour entries of link `index`, both families (`ip neigh show dev
    /// (index) nud permanent`).
    async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>>;
    /// `bridge fdb replace MAC dev (index) dst DST self permanent`: creates the entry, or
    /// points an existing one for the MAC at `dst`.
    async fn add_fdb(&self, entry: FdbEntry) -> Result<()>;
    /// `bridge fdb del MAC dev (index) dst DST self`; returns whether there was such an entry.
    async fn del_fdb(&self, entry: FdbEntry) -> Result<bool>;
    /// The entries of link `index`'s own forwarding database that have a remote VTEP
    /// (`bridge fdb show dev (index) self` with a `dst`, permanent): what [`Kernel::add_fdb`]
    /// made, not what a bridge master learned on the port.
    async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>>;
    /// Whether the kernel has the link kind, asked without making anything; a missing kind is
    /// [`crate::Error::Unsupported`] naming it.
    async fn probe_kind(&self, kind: ProbeKind) -> Result<()>;
    /// Writes `value` to `/proc/sys/KEY` of this netns; `key` uses slashes and is under `net/`.
    async fn write_sysctl(&self, key: &str, value: &str) -> Result<()>;
    /// Adds or deletes a routing rule (`ip rule add|del …`, see [`super::rules`]); deleting
    /// one already gone is fine.
    async fn rule(&self, op: super::rules::RuleOp, rule: crate::rule::RuleSpec) -> Result<()>;
    /// Every routing rule of both families (`ip rule show; ip -6 rule show`).
    async fn rules(&self) -> Result<Vec<super::rules::RuleInfo>>;

    // Traffic control (bandwidth limits, see `crate::bandwidth` and `super::tc`).

    /// `ip link add NAME group GROUP type ifb && ip link set NAME up`, in one request; returns
    /// the link.
    async fn add_ifb(&self, name: &str, group: u32) -> Result<LinkInfo>;
    /// Puts a qdisc on a link: a root `tbf` replaces whatever root qdisc it has; an `ingress`
    /// qdisc already there is kept.
    async fn replace_qdisc(&self, req: super::tc::QdiscRequest) -> Result<()>;
    /// Removes the qdisc at `parent` of link `index` (named `name`), with its filters; returns
    /// whether there was one berth could remove (the default root qdisc is not one).
    async fn del_qdisc(
        &self,
        index: u32,
        name: &str,
        parent: super::tc::QdiscParent,
    ) -> Result<bool>;
    /// The qdiscs of link `index` (`tc qdisc show dev (index)`).
    async fn qdiscs(&self, index: u32) -> Result<Vec<super::tc::QdiscInfo>>;
    /// Adds the match-all filter redirecting what link `index` receives (see
    /// [`super::tc::RedirectRequest`]); its ingress qdisc must exist.
    async fn add_redirect(&self, req: super::tc::RedirectRequest) -> Result<()>;
    /// The filters of link `index`'s ingress qdisc (none when it has none).
    async fn ingress_filters(&self, index: u32) -> Result<Vec<super::tc::FilterInfo>>;

    // Bridge VLANs (VLAN-tagged endpoints): see `super::bridge_vlan`.

    /// Bridge `index`'s VLAN filtering (`ip -d link show`); `None` when the kernel has none.
    async fn vlan_filtering(&self, bridge: u32) -> Result<Option<super::VlanFiltering>>;
    /// `ip link set NAME type bridge vlan_filtering 0|1`; a kernel without it is
    /// [`crate::Error::Unsupported`].
    async fn set_vlan_filtering(&self, bridge: u32, name: &str, on: bool) -> Result<()>;
    /// `bridge vlan add|del dev NAME vid V [pvid] [untagged] master`.
    async fn port_vlan(&self, op: super::VlanOp, req: super::PortVlanRequest) -> Result<()>;
    /// `bridge vlan show`: the VLAN table of every bridge port and bridge.
    async fn vlan_tables(&self) -> Result<Vec<super::VlanTable>>;
    /// `ip link set NAME master BR` (`Some`) or `nomaster` (`None`).
    async fn set_master(&self, index: u32, name: &str, master: Option<u32>) -> Result<()>;
}

/// Opens a [`super::Netlink`] handle on a network namespace: the real one
/// ([`super::RtOpener`]) or a fake world's ([`super::fake::FakeNet`]).
#[async_trait]
pub trait KernelOpener: Send + Sync + Debug {
    /// A handle inside `ns`.
    async fn open(&self, ns: &Netns) -> Result<super::Netlink>;
}
