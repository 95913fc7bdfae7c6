//! Request builders on [`Netlink`], rtnetlink-style: each names its arguments, then `add()`,
//! `apply()`, `replace()` … sends one [`Kernel`] request.
//!
//! ```no_run
//! # async fn f(nl: &berth::netlink::Netlink, peer_ns: &berth::netns::Netns) -> berth::Result<()> {
//! use berth::mac::MacAddr;
//! use berth::netlink::{Hairpin, PortIsolation, RpFilter, VethPeer};
//! let br = nl.link().bridge("br0").mac(MacAddr::random()).mtu(1500).add().await?;
//! let peer = VethPeer { name: "eth0", mac: MacAddr::random(), netns: peer_ns };
//! let v = nl.link().veth("veth0").master(br.index).mtu(1500).peer(peer).add().await?;
//! nl.link().bridge_port(v.index, "veth0").hairpin(Hairpin::On)
//!     .isolation(PortIsolation::Open).apply().await?;
//! nl.link().set(v.index, "veth0").up().rp_filter(RpFilter::Loose).apply().await?;
//! nl.route().default_via("10.0.0.1".parse().unwrap()).dev(v.index).replace().await?;
//! # Ok(()) }
//! ```

use std::net::IpAddr;

use super::Netlink;
use super::kernel::*;
use crate::error::{Error, Result};
use crate::mac::MacAddr;
use crate::netns::Netns;
use crate::options::{IpvlanFlag, IpvlanMode, MacvlanMode};
use crate::route::RouteSpec;

/// The container end of a veth made by [`LinkOps::veth`]: born inside `netns` as `name` with
/// `mac`.
#[derive(Debug, Clone, Copy)]
pub struct VethPeer<'a> {
    /// Its name inside the container netns.
    pub name: &'a str,
    /// Its MAC.
    pub mac: MacAddr,
    /// The container netns.
    pub netns: &'a Netns,
}

/// Link requests of one handle ([`Netlink::link`]).
#[derive(Debug, Clone, Copy)]
pub struct LinkOps<'a> {
    nl: &'a Netlink,
}

impl<'a> LinkOps<'a> {
    pub(super) fn new(nl: &'a Netlink) -> Self {
        LinkOps { nl }
    }

    /// A bridge `name` (see [`LinkRequest::Bridge`]); a random MAC and MTU 1500 unless given.
    pub fn bridge(self, name: &str) -> BridgeBuilder<'a> {
        BridgeBuilder {
            nl: self.nl,
            name: name.to_string(),
            mac: None,
            mtu: 1500,
        }
    }

    /// A veth pair with host end `name` (see [`VethRequest`]); needs a peer.
    pub fn veth(self, name: &str) -> VethBuilder<'a> {
        VethBuilder {
            nl: self.nl,
            name: name.to_string(),
            master: None,
            mtu: None,
            group: None,
            peer: None,
        }
    }

    /// A macvlan `name` on `parent`, born inside another netns (see
    /// [`LinkRequest::MacvlanInto`]); needs [`MacvlanBuilder::netns`].
    pub fn macvlan(self, name: &str, parent: u32) -> MacvlanBuilder<'a> {
        MacvlanBuilder {
            nl: self.nl,
            name: name.to_string(),
            parent,
            mode: MacvlanMode::default(),
            mac: None,
            netns: None,
        }
    }

    /// A macvlan `name` on `parent` in this netns, up and marked (a host shim: see
    /// [`LinkRequest::MacvlanShim`]), mode bridge.
    pub fn macvlan_shim(self, name: &str, parent: u32) -> LowerBuilder<'a> {
        LowerBuilder {
            nl: self.nl,
            kind: LowerKind::Shim {
                parent,
                mode: MacvlanMode::Bridge,
            },
            name: name.to_string(),
            alias: String::new(),
        }
    }

    /// An ipvlan `name` on `parent`, born inside another netns (see
    /// [`LinkRequest::IpvlanInto`]); needs [`IpvlanBuilder::netns`].
    pub fn ipvlan(self, name: &str, parent: u32) -> IpvlanBuilder<'a> {
        IpvlanBuilder {
            nl: self.nl,
            name: name.to_string(),
            parent,
            mode: IpvlanMode::default(),
            flag: IpvlanFlag::default(),
            netns: None,
        }
    }

    /// An 802.1q vlan `name` with `id` on `base` (see [`LinkRequest::Vlan`]).
    pub fn vlan(self, name: &str, base: u32, id: u16) -> LowerBuilder<'a> {
        LowerBuilder {
            nl: self.nl,
            kind: LowerKind::Vlan { base, id },
            name: name.to_string(),
            alias: String::new(),
        }
    }

    /// A dummy link `name` (see [`LinkRequest::Dummy`]).
    pub fn dummy(self, name: &str) -> LowerBuilder<'a> {
        LowerBuilder {
            nl: self.nl,
            kind: LowerKind::Dummy,
            name: name.to_string(),
            alias: String::new(),
        }
    }

    /// A VXLAN device `name` with `vni`, its local VTEP `local` (see [`VxlanRequest`]): UDP
    /// port 4789, a random MAC, MTU 1450 (1430 with an IPv6 `local`: 1500 less the
    /// encapsulation), no underlay, master or group unless given.
    pub fn vxlan(self, name: &str, vni: u32, local: IpAddr) -> VxlanBuilder<'a> {
        VxlanBuilder {
            nl: self.nl,
            req: VxlanRequest {
                name: name.to_string(),
                vni,
                local,
                underlay: None,
                port: VXLAN_PORT,
                mtu: if local.is_ipv6() { 1430 } else { 1450 },
                master: None,
                group: None,
                mac: MacAddr::random(),
            },
        }
    }

    /// A gretap device `name` from `local` to `remote` with GRE key `key` (see
    /// [`GretapRequest`]; ip6gretap when the addresses are IPv6): TTL 64, MTU 1458 (1438 over
    /// IPv6: 1500 less the encapsulation), no underlay, master or group, not isolated and no
    /// neighbour suppression unless given.
    pub fn gretap(self, name: &str, local: IpAddr, remote: IpAddr, key: u32) -> GretapBuilder<'a> {
        GretapBuilder {
            nl: self.nl,
            req: GretapRequest {
                name: name.to_string(),
                local,
                remote,
                key,
                ttl: 64,
                underlay: None,
                mtu: if local.is_ipv6() {
                    1500 - GRE_OVERHEAD_V6
                } else {
                    1500 - GRE_OVERHEAD_V4
                },
                master: None,
                group: None,
                isolation: PortIsolation::Open,
                neigh_suppress: NeighSuppress::Off,
            },
        }
    }

    /// Changes attributes of link `index` (named `name`): `ip link set dev … ` (see
    /// [`SetLink`]).
    pub fn set(self, index: u32, name: &str) -> SetLinkBuilder<'a> {
        SetLinkBuilder {
            nl: self.nl,
            req: SetLink {
                index,
                name: name.to_string(),
                state: None,
                rp_filter: None,
                group: None,
                alias: None,
                arp_notify: false,
                mac: None,
            },
        }
    }

    /// Bridge-port flags of port `index` (named `name`): `bridge link set dev NAME hairpin …
    /// isolated …`; hairpin off and not isolated unless given.
    pub fn bridge_port(self, index: u32, name: &str) -> BridgePortBuilder<'a> {
        BridgePortBuilder {
            nl: self.nl,
            index,
            name: name.to_string(),
            hairpin: Hairpin::Off,
            isolation: PortIsolation::Open,
        }
    }

    /// `ip link set dev NAME type bridge no_linklocal_learn 1`: bridge `name` learns no source
    /// address from frames to IEEE link-local destinations (`01:80:c2:00:00:0X`). It learns
    /// from some of those (LLDP's, and the STP group's with STP on) before any netfilter hook,
    /// so without this a port could claim another's MAC past an anti-spoofing firewall.
    pub async fn bridge_no_linklocal_learn(self, name: &str) -> Result<()> {
        self.nl
            .kernel
            .set_link(LinkChange::Bridge {
                name: name.to_string(),
                linklocal_learn: LinkLocalLearn::Off,
            })
            .await
    }
}

/// Builds a [`LinkRequest::Bridge`].
#[derive(Debug)]
#[must_use = "send it with add()"]
pub struct BridgeBuilder<'a> {
    nl: &'a Netlink,
    name: String,
    mac: Option<MacAddr>,
    mtu: u32,
}

impl BridgeBuilder<'_> {
    /// Its MAC.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Its MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }
    /// Creates it; returns the new bridge.
    pub async fn add(self) -> Result<LinkInfo> {
        let req = LinkRequest::Bridge {
            name: self.name.clone(),
            mac: self.mac.unwrap_or_else(MacAddr::random),
            mtu: self.mtu,
        };
        created(self.nl, req, &self.name).await
    }
}

/// A link created here, as the kernel answered, or looked up.
async fn created(nl: &Netlink, req: LinkRequest, name: &str) -> Result<LinkInfo> {
    match nl.kernel.add_link(req).await? {
        Some(l) => Ok(l),
        None => nl.require_link(name).await,
    }
}

/// Builds a [`VethRequest`].
#[derive(Debug)]
#[must_use = "send it with add()"]
pub struct VethBuilder<'a> {
    nl: &'a Netlink,
    name: String,
    master: Option<u32>,
    mtu: Option<u32>,
    group: Option<u32>,
    peer: Option<(String, Option<MacAddr>, Netns)>,
}

impl VethBuilder<'_> {
    /// The bridge the host end joins (it then comes up with IPv6 off: see [`VethRequest`]).
    pub fn master(mut self, index: u32) -> Self {
        self.master = Some(index);
        self
    }
    /// MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
    /// Device group of the host end.
    pub fn group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }
    /// The peer, born in another netns with a given MAC.
    pub fn peer(mut self, peer: VethPeer<'_>) -> Self {
        self.peer = Some((peer.name.to_string(), Some(peer.mac), peer.netns.clone()));
        self
    }
    /// The peer, born in `netns` as `name` with a MAC of the kernel's choosing.
    pub fn peer_in(mut self, name: &str, netns: &Netns) -> Self {
        self.peer = Some((name.to_string(), None, netns.clone()));
        self
    }
    /// Creates the pair; returns the host end.
    pub async fn add(self) -> Result<LinkInfo> {
        let Some((peer_name, peer_mac, peer_netns)) = self.peer else {
            return Err(Error::invalid("veth", &self.name, "has no peer"));
        };
        let req = LinkRequest::Veth(VethRequest {
            name: self.name.clone(),
            master: self.master,
            mtu: self.mtu,
            group: self.group,
            peer_name,
            peer_mac,
            peer_netns,
        });
        created(self.nl, req, &self.name).await
    }
}

/// IANA's UDP port for VXLAN.
pub const VXLAN_PORT: u16 = 4789;

/// Builds a [`VxlanRequest`].
#[derive(Debug)]
#[must_use = "send it with add()"]
pub struct VxlanBuilder<'a> {
    nl: &'a Netlink,
    req: VxlanRequest,
}

impl VxlanBuilder<'_> {
    /// The underlay link the tunnel packets leave by (`dev`).
    pub fn underlay(mut self, index: u32) -> Self {
        self.req.underlay = Some(index);
        self
    }
    /// UDP destination port (`dstport`).
    pub fn port(mut self, port: u16) -> Self {
        self.req.port = port;
        self
    }
    /// Its MTU (the kernel clamps it to the underlay's minus the encapsulation).
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.req.mtu = mtu;
        self
    }
    /// The bridge it joins (it then comes up without an IPv6 address: see [`VxlanRequest`]).
    pub fn master(mut self, index: u32) -> Self {
        self.req.master = Some(index);
        self
    }
    /// Device group (berth's mark).
    pub fn group(mut self, group: u32) -> Self {
        self.req.group = Some(group);
        self
    }
    /// Its MAC.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.req.mac = mac;
        self
    }
    /// Creates it, up; returns the new device.
    pub async fn add(self) -> Result<LinkInfo> {
        let name = self.req.name.clone();
        created(self.nl, LinkRequest::Vxlan(self.req), &name).await
    }
}

/// What a gretap device adds to an IPv4 underlay packet: outer IPv4 header, GRE header with
/// its key, inner Ethernet header (20 + 4 + 4 + 14).
pub const GRE_OVERHEAD_V4: u32 = 42;
/// The same for ip6gretap over IPv6 without the encapsulation-limit option (40 + 4 + 4 + 14).
pub const GRE_OVERHEAD_V6: u32 = 62;

/// Builds a [`GretapRequest`].
#[derive(Debug)]
#[must_use = "send it with add()"]
pub struct GretapBuilder<'a> {
    nl: &'a Netlink,
    req: GretapRequest,
}

impl GretapBuilder<'_> {
    /// The underlay link the tunnel packets leave by (`dev`).
    pub fn underlay(mut self, index: u32) -> Self {
        self.req.underlay = Some(index);
        self
    }
    /// The outer header's TTL (hop limit).
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.req.ttl = ttl;
        self
    }
    /// Its MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.req.mtu = mtu;
        self
    }
    /// The bridge it joins (it then comes up with IPv6 off and its port flags set: see
    /// [`GretapRequest`]).
    pub fn master(mut self, index: u32) -> Self {
        self.req.master = Some(index);
        self
    }
    /// Device group (berth's mark).
    pub fn group(mut self, group: u32) -> Self {
        self.req.group = Some(group);
        self
    }
    /// Port isolation on its bridge: isolated ports exchange no frame with each other.
    pub fn isolation(mut self, i: PortIsolation) -> Self {
        self.req.isolation = i;
        self
    }
    /// Neighbour suppression on its bridge (see [`NeighSuppress`]).
    pub fn neigh_suppress(mut self, n: NeighSuppress) -> Self {
        self.req.neigh_suppress = n;
        self
    }
    /// Creates it, up; returns the new device. Addresses of two families are refused.
    pub async fn add(self) -> Result<LinkInfo> {
        if self.req.local.is_ipv6() != self.req.remote.is_ipv6() {
            return Err(Error::invalid(
                "gretap remote",
                self.req.remote,
                "not of the local address's family",
            ));
        }
        let name = self.req.name.clone();
        created(self.nl, LinkRequest::Gretap(self.req), &name).await
    }
}

/// Builds a [`LinkRequest::MacvlanInto`].
#[derive(Debug)]
#[must_use = "send it with add()"]
pub struct MacvlanBuilder<'a> {
    nl: &'a Netlink,
    name: String,
    parent: u32,
    mode: MacvlanMode,
    mac: Option<MacAddr>,
    netns: Option<Netns>,
}

impl MacvlanBuilder<'_> {
    /// Mode (bridge unless given).
    pub fn mode(mut self, mode: MacvlanMode) -> Self {
        self.mode = mode;
        self
    }
    /// Its MAC (random unless given).
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }
    /// Where it is born.
    pub fn netns(mut self, netns: &Netns) -> Self {
        self.netns = Some(netns.clone());
        self
    }
    /// Creates it.
    pub async fn add(self) -> Result<()> {
        let Some(netns) = self.netns else {
            return Err(Error::invalid("macvlan", &self.name, "has no netns"));
        };
        let req = LinkRequest::MacvlanInto {
            name: self.name,
            parent: self.parent,
            mode: self.mode,
            mac: self.mac.unwrap_or_else(MacAddr::random),
            netns,
        };
        self.nl.kernel.add_link(req).await.map(drop)
    }
}

/// Builds a [`LinkRequest::IpvlanInto`].
#[derive(Debug)]
#[must_use = "send it with add()"]
pub struct IpvlanBuilder<'a> {
    nl: &'a Netlink,
    name: String,
    parent: u32,
    mode: IpvlanMode,
    flag: IpvlanFlag,
    netns: Option<Netns>,
}

impl IpvlanBuilder<'_> {
    /// Mode (L2 unless given).
    pub fn mode(mut self, mode: IpvlanMode) -> Self {
        self.mode = mode;
        self
    }
    /// Flag (bridge unless given).
    pub fn flag(mut self, flag: IpvlanFlag) -> Self {
        self.flag = flag;
        self
    }
    /// Where it is born.
    pub fn netns(mut self, netns: &Netns) -> Self {
        self.netns = Some(netns.clone());
        self
    }
    /// Creates it.
    pub async fn add(self) -> Result<()> {
        let Some(netns) = self.netns else {
            return Err(Error::invalid("ipvlan", &self.name, "has no netns"));
        };
        let req = LinkRequest::IpvlanInto {
            name: self.name,
            parent: self.parent,
            mode: self.mode,
            flag: self.flag,
            netns,
        };
        self.nl.kernel.add_link(req).await.map(drop)
    }
}

#[derive(Debug)]
enum LowerKind {
    Shim { parent: u32, mode: MacvlanMode },
    Vlan { base: u32, id: u16 },
    Dummy,
}

/// Builds a link berth makes here for networks to share: a macvlan shim, a vlan, a dummy
/// (up, in device group [`crate::link_marks::LOWER`], with an alias).
#[derive(Debug)]
#[must_use = "send it with add()"]
pub struct LowerBuilder<'a> {
    nl: &'a Netlink,
    kind: LowerKind,
    name: String,
    alias: String,
}

impl LowerBuilder<'_> {
    /// Its `ifalias` (set after the creation; empty unless given).
    pub fn alias(mut self, alias: &str) -> Self {
        self.alias = alias.to_string();
        self
    }
    /// A shim's macvlan mode (bridge unless given; ignored for other kinds).
    pub fn mode(mut self, m: MacvlanMode) -> Self {
        if let LowerKind::Shim { mode, .. } = &mut self.kind {
            *mode = m;
        }
        self
    }
    /// Creates it; returns the new link.
    pub async fn add(self) -> Result<LinkInfo> {
        let name = self.name.clone();
        let req = match self.kind {
            LowerKind::Shim { parent, mode } => LinkRequest::MacvlanShim {
                name: self.name,
                parent,
                mode,
                alias: self.alias,
            },
            LowerKind::Vlan { base, id } => LinkRequest::Vlan {
                name: self.name,
                base,
                id,
                alias: self.alias,
            },
            LowerKind::Dummy => LinkRequest::Dummy {
                name: self.name,
                alias: self.alias,
            },
        };
        created(self.nl, req, &name).await
    }
}

/// Builds a [`SetLink`].
#[derive(Debug)]
#[must_use = "send it with apply()"]
pub struct SetLinkBuilder<'a> {
    nl: &'a Netlink,
    req: SetLink,
}

impl SetLinkBuilder<'_> {
    /// `up`.
    pub fn up(mut self) -> Self {
        self.req.state = Some(LinkState::Up);
        self
    }
    /// `down`.
    pub fn down(mut self) -> Self {
        self.req.state = Some(LinkState::Down);
        self
    }
    /// `net.ipv4.conf.NAME.rp_filter`, in the same request.
    pub fn rp_filter(mut self, mode: RpFilter) -> Self {
        self.req.rp_filter = Some(mode);
        self
    }
    /// `group GROUP` (the device group, matched by nft's `iifgroup`).
    pub fn group(mut self, group: u32) -> Self {
        self.req.group = Some(group);
        self
    }
    /// `alias ALIAS`.
    pub fn alias(mut self, alias: &str) -> Self {
        self.req.alias = Some(alias.to_string());
        self
    }
    /// `net.ipv4.conf.NAME.arp_notify=1`, in the same request (see [`SetLink::arp_notify`]).
    pub fn arp_notify(mut self) -> Self {
        self.req.arp_notify = true;
        self
    }
    /// `address MAC` (see [`SetLink::mac`]: set to the link's own MAC, the kernel announces
    /// its addresses).
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.req.mac = Some(mac);
        self
    }
    /// Sends the change.
    pub async fn apply(self) -> Result<()> {
        self.nl.kernel.set_link(LinkChange::Set(self.req)).await
    }
}

/// Builds a [`LinkChange::BridgePort`].
#[derive(Debug)]
#[must_use = "send it with apply()"]
pub struct BridgePortBuilder<'a> {
    nl: &'a Netlink,
    index: u32,
    name: String,
    hairpin: Hairpin,
    isolation: PortIsolation,
}

impl BridgePortBuilder<'_> {
    /// Hairpin mode: lets a container reach itself through a published port via the host.
    pub fn hairpin(mut self, h: Hairpin) -> Self {
        self.hairpin = h;
        self
    }
    /// Isolation: isolated ports cannot exchange frames with each other, only with
    /// non-isolated ports such as the bridge itself (ICC off without br_netfilter).
    pub fn isolation(mut self, i: PortIsolation) -> Self {
        self.isolation = i;
        self
    }
    /// Sends the change.
    pub async fn apply(self) -> Result<()> {
        self.nl
            .kernel
            .set_link(LinkChange::BridgePort {
                index: self.index,
                name: self.name,
                hairpin: self.hairpin,
                isolation: self.isolation,
            })
            .await
    }
}

/// Address requests of one handle ([`Netlink::address`]).
#[derive(Debug, Clone, Copy)]
pub struct AddressOps<'a> {
    nl: &'a Netlink,
}

impl<'a> AddressOps<'a> {
    pub(super) fn new(nl: &'a Netlink) -> Self {
        AddressOps { nl }
    }

    /// `ip address add ADDR/PREFIX dev (index)` on link `name`; IPv6 addresses get `nodad`
    /// (DAD stalls container start-up for seconds).
    pub async fn add(self, index: u32, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        self.nl
            .kernel
            .add_address(AddressRequest {
                index,
                name: name.to_string(),
                addr,
                prefix,
            })
            .await
    }

    /// `ip address del ADDR/PREFIX dev (index)`; an address already gone is fine.
    pub async fn del(self, index: u32, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        self.nl
            .kernel
            .del_address(AddressRequest {
                index,
                name: name.to_string(),
                addr,
                prefix,
            })
            .await
    }
}

/// Route requests of one handle ([`Netlink::route`]).
#[derive(Debug, Clone, Copy)]
pub struct RouteOps<'a> {
    nl: &'a Netlink,
}

impl<'a> RouteOps<'a> {
    pub(super) fn new(nl: &'a Netlink) -> Self {
        RouteOps { nl }
    }

    /// `default via GW` (the gateway's family); add a device with [`RouteBuilder::dev`].
    pub fn default_via(self, gateway: IpAddr) -> RouteBuilder<'a> {
        RouteBuilder {
            nl: self.nl,
            req: RouteRequest::DefaultVia { gateway, dev: None },
        }
    }

    /// `default dev (index)` for one family (ipvlan L3: no gateway).
    pub fn default_dev(self, family: Family, dev: u32) -> RouteBuilder<'a> {
        RouteBuilder {
            nl: self.nl,
            req: RouteRequest::DefaultDev { family, dev },
        }
    }

    /// `ADDR/32 dev (index)` (or /128): a host route through one link.
    pub fn host(self, addr: IpAddr, dev: u32) -> RouteBuilder<'a> {
        RouteBuilder {
            nl: self.nl,
            req: RouteRequest::Host { addr, dev },
        }
    }

    /// `DST [via GW] dev (index) [metric M]`.
    pub fn spec(self, spec: &RouteSpec, dev: u32) -> RouteBuilder<'a> {
        RouteBuilder {
            nl: self.nl,
            req: RouteRequest::Spec { spec: *spec, dev },
        }
    }

    /// Every route of both families.
    pub async fn list(self) -> Result<Vec<RouteInfo>> {
        self.nl.kernel.routes().await
    }
}

/// Builds a [`RouteRequest`]; send it with `add`, `replace` or `del`.
#[derive(Debug)]
#[must_use = "send it with add(), replace() or del()"]
pub struct RouteBuilder<'a> {
    nl: &'a Netlink,
    req: RouteRequest,
}

impl RouteBuilder<'_> {
    /// The output interface of a default route via a gateway (ignored for the others, which
    /// name theirs).
    pub fn dev(mut self, index: u32) -> Self {
        if let RouteRequest::DefaultVia { dev, .. } = &mut self.req {
            *dev = Some(index);
        }
        self
    }
    /// `ip route add` (EEXIST when there is one).
    pub async fn add(self) -> Result<()> {
        self.nl.kernel.route(RouteOp::Add, self.req).await
    }
    /// `ip route replace`.
    pub async fn replace(self) -> Result<()> {
        self.nl.kernel.route(RouteOp::Replace, self.req).await
    }
    /// `ip route del`; a route already gone is fine.
    pub async fn del(self) -> Result<()> {
        self.nl.kernel.route(RouteOp::Delete, self.req).await
    }
}
