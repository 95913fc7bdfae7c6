//! [`RtKernel`]: the real [`Kernel`], over a route-netlink socket bound to one network namespace,
//! `/proc/sys` written from a thread inside it.
//!
//! Each operation maps the kernel's errno into [`crate::Error`] with the operation and
//! interface name.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, GreIOFlags, InetDevConf, InfoData, InfoGre, InfoGre6, InfoVeth,
    IpVlanFlags, IpVlanMode, LinkAttribute, LinkFlags, LinkMessage, MacVlanMode,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{
    LinkBridge, LinkBridgePort, LinkDummy, LinkGre, LinkGre6, LinkIpVlan, LinkMacVlan,
    LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVlan, LinkVxlan, RouteMessageBuilder,
};

use super::deletion::Teardown;
use super::kernel::*;
use crate::error::{Error, Result};
use crate::mac::MacAddr;
use crate::netns::Netns;
use crate::options::{IpvlanFlag, IpvlanMode, MacvlanMode};

/// The real kernel of one network namespace.
#[derive(Clone, Debug)]
pub struct RtKernel {
    handle: rtnetlink::Handle,
    netns: Netns,
    teardown: Teardown,
}

impl RtKernel {
    /// Opens the route-netlink socket inside `netns`: created on a dedicated thread that entered
    /// the namespace (the socket stays bound to it), registered with the caller's tokio runtime,
    /// its connection task spawned there. Must be called within a tokio runtime. Link
    /// deletions are finished by a thread ([`Teardown::Thread`]).
    pub async fn open(netns: &Netns) -> Result<Self> {
        Self::open_with(netns, Teardown::Thread).await
    }

    /// As [`RtKernel::open`], with link deletions finished as `teardown` says.
    pub async fn open_with(netns: &Netns, teardown: Teardown) -> Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle) = netns
            .enter(move || {
                let _enter = rt.enter();
                rtnetlink::new_connection().map(|(conn, handle, _)| (conn, handle))
            })
            .await?
            .map_err(|e| Error::netlink("open socket", "rtnetlink", e))?;
        tokio::spawn(conn);
        Ok(RtKernel {
            handle,
            netns: netns.clone(),
            teardown,
        })
    }
}

/// The errno of an rtnetlink error as an `io::Error` (ENOENT … ), or a generic one.
pub(super) fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => match msg.code {
            Some(code) => io::Error::from_raw_os_error(-code.get()),
            None => io::Error::other("netlink ack without error"),
        },
        other => io::Error::other(other.to_string()),
    }
}

/// Whether an rtnetlink error carries `errno`.
pub(super) fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| -c.get()) == Some(errno))
}

fn info(msg: LinkMessage) -> LinkInfo {
    use rtnetlink::packet_route::link::{InfoKind, LinkFlags, LinkLayerType, State};
    let mut l = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mtu: None,
        controller: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        oper_up: false,
        mac: None,
        alias: None,
        is_bridge: false,
        group: 0,
        is_loopback: msg.header.link_layer_type == LinkLayerType::Loopback,
        is_ether: msg.header.link_layer_type == LinkLayerType::Ether,
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(m) => l.mtu = Some(m),
            LinkAttribute::Controller(c) => l.controller = Some(c),
            LinkAttribute::Address(a) => l.mac = Some(a),
            LinkAttribute::IfAlias(a) => l.alias = Some(a),
            LinkAttribute::Group(g) => l.group = g,
            LinkAttribute::OperState(st) => l.oper_up = st == State::Up,
            LinkAttribute::LinkInfo(infos) => {
                l.is_bridge |= infos.iter().any(|i| {
                    matches!(
                        i,
                        rtnetlink::packet_route::link::LinkInfo::Kind(InfoKind::Bridge)
                    )
                });
            }
            _ => {}
        }
    }
    l
}

/// Link creation failing with EOPNOTSUPP means the kernel lacks the kind.
fn add_err(kind: &'static str, name: &str, e: rtnetlink::Error) -> Error {
    if is_errno(&e, libc::EOPNOTSUPP) {
        return Error::Unsupported {
            what: format!("link kind {kind}"),
            source: to_io(e),
        };
    }
    Error::netlink("add link", name, to_io(e))
}

fn macvlan_mode(m: MacvlanMode) -> MacVlanMode {
    match m {
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

fn ipvlan_mode(m: IpvlanMode) -> IpVlanMode {
    match m {
        IpvlanMode::L2 => IpVlanMode::L2,
        IpvlanMode::L3 => IpVlanMode::L3,
        IpvlanMode::L3s => IpVlanMode::L3S,
    }
}

fn ipvlan_flags(f: IpvlanFlag) -> IpVlanFlags {
    match f {
        IpvlanFlag::Bridge => IpVlanFlags::empty(),
        IpvlanFlag::Private => IpVlanFlags::Private,
        IpvlanFlag::Vepa => IpVlanFlags::Vepa,
    }
}

impl RtKernel {
    async fn get_link(&self, by: &LinkRef) -> Result<Option<LinkInfo>> {
        let req = self.handle.link().get();
        let (mut s, what) = match by {
            LinkRef::Name(n) => (req.match_name(n.clone()).execute(), n.clone()),
            LinkRef::Index(i) => (req.match_index(*i).execute(), i.to_string()),
        };
        match s.try_next().await {
            Ok(m) => Ok(m.map(info)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(Error::netlink("get link", what, to_io(e))),
        }
    }

    async fn require(&self, name: &str) -> Result<LinkInfo> {
        self.get_link(&LinkRef::Name(name.to_string()))
            .await?
            .ok_or_else(|| {
                Error::netlink("get link", name, io::Error::from_raw_os_error(libc::ENODEV))
            })
    }

    /// A link of `kind` created in this netns, or born inside another one.
    async fn create(&self, kind: &'static str, msg: LinkMessage, name: &str) -> Result<()> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| add_err(kind, name, e))
    }

    /// As [`RtKernel::create`], with the kernel asked to echo the new link (`NLM_F_ECHO`):
    /// returns it, which saves the lookup a create otherwise needs. `None` when the kernel
    /// echoed nothing of that name (before 6.3 it ignores the flag here).
    async fn create_echoed(
        &self,
        kind: &'static str,
        msg: LinkMessage,
        name: &str,
    ) -> Result<Option<LinkInfo>> {
        use rtnetlink::packet_core::{
            NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage,
            NetlinkPayload,
        };
        use rtnetlink::packet_route::RouteNetlinkMessage;
        let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
        let mut answers = self
            .handle
            .clone()
            .request(req)
            .map_err(|e| add_err(kind, name, e))?;
        let mut echoed = None;
        while let Some(m) = answers.next().await {
            match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    let l = info(l);
                    if l.name == name {
                        echoed = Some(l);
                    }
                }
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(add_err(kind, name, rtnetlink::Error::NetlinkError(e)));
                }
                _ => {}
            }
        }
        Ok(echoed)
    }

    /// `ip link set dev NAME alias ALIAS` (the kernel ignores IFLA_IFALIAS in a create request);
    /// on failure the new link is deleted again. Returns the link.
    async fn set_alias_after_create(&self, name: &str, alias: &str) -> Result<LinkInfo> {
        let l = self.require(name).await?;
        let set = self
            .handle
            .link()
            .set(LinkUnspec::new_with_index(l.index).alias(alias).build())
            .execute()
            .await;
        if let Err(e) = set {
            let _ = self.delete_link(name).await;
            return Err(Error::netlink("set alias", name, to_io(e)));
        }
        self.require(name).await
    }

    /// See [`VethRequest`] for the order of things.
    async fn add_veth(&self, v: VethRequest) -> Result<LinkInfo> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new().name(v.peer_name.clone());
        if let Some(mac) = v.peer_mac {
            peer = peer.address(mac.octets().to_vec());
        }
        if let Some(mtu) = v.mtu {
            peer = peer.mtu(mtu);
        }
        let peer = peer.setns_by_fd(v.peer_netns.as_raw_fd()).build();
        let mut msg = LinkVeth::new(&v.name, &v.peer_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
        if let Some(mtu) = v.mtu {
            msg = msg.mtu(mtu);
        }
        if let Some(master) = v.master {
            msg = msg.controller(master);
        }
        if let Some(group) = v.group {
            msg = msg.link_group(group);
        }
        if v.master.is_none() {
            msg = msg.up();
        }
        let link = match self.create_echoed("veth", msg.build(), &v.name).await? {
            Some(l) => l,
            None => self.require(&v.name).await?,
        };
        if v.master.is_none() {
            return Ok(link);
        }
        self.port_up(link, "disable_ipv6").await
    }

    /// See [`VxlanRequest`] for the order of things.
    async fn add_vxlan(&self, v: VxlanRequest) -> Result<LinkInfo> {
        let mut b = LinkVxlan::new(&v.name, v.vni)
            .port(v.port)
            .learning(false)
            .proxy(true);
        b = match v.local {
            IpAddr::V4(a) => b.local(a),
            IpAddr::V6(a) => b.local6(a),
        };
        if let Some(dev) = v.underlay {
            b = b.dev(dev);
        }
        let mut msg = b.address(v.mac.octets().to_vec()).mtu(v.mtu);
        if let Some(master) = v.master {
            msg = msg.controller(master);
        }
        if let Some(group) = v.group {
            msg = msg.link_group(group);
        }
        if v.master.is_none() {
            msg = msg.up();
        }
        self.create("vxlan", msg.build(), &v.name).await?;
        let link = self.require(&v.name).await?;
        if v.master.is_none() {
            return Ok(link);
        }
        self.port_up(link, "addr_gen_mode").await
    }

    /// See [`GretapRequest`] for the order of things.
    async fn add_gretap(&self, g: GretapRequest) -> Result<LinkInfo> {
        let (kind, mut msg) = gretap_message(&g, GreIOFlags::Key);
        if let Some(dev) = g.underlay {
            msg = with_gre_info(msg, InfoGre::Link(dev), InfoGre6::Link(dev));
        }
        if let Some(master) = g.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        } else {
            msg.header.flags |= LinkFlags::Up;
            msg.header.change_mask |= LinkFlags::Up;
        }
        if let Some(group) = g.group {
            msg.attributes.push(LinkAttribute::Group(group));
        }
        msg.attributes.push(LinkAttribute::Mtu(g.mtu));
        self.create(kind, msg, &g.name).await?;
        let link = self.require(&g.name).await?;
        if g.master.is_none() {
            return Ok(link);
        }
        let port = async {
            let key = format!("net/ipv6/conf/{}/disable_ipv6", g.name);
            crate::sysctl::write(&self.netns, &key, "1").await?;
            self.handle
                .link()
                .set_port(
                    LinkBridgePort::new(link.index)
                        .hairpin(false)
                        .isolated(g.isolation == PortIsolation::Isolated)
                        .neigh_suppress(g.neigh_suppress == NeighSuppress::On)
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| Error::netlink("set bridge port flags", &g.name, to_io(e)))
        };
        if let Err(e) = port.await {
            let _ = self.delete_link(&g.name).await;
            return Err(e);
        }
        // IPv6 is off already: only the link comes up.
        self.port_up(link, "disable_ipv6").await
    }

    /// Brings up a new bridge port after setting `net.ipv6.conf.NAME.KNOB=1` (`disable_ipv6`,
    /// `addr_gen_mode` none): no IPv6 address of its own, so no DAD, router solicitations or
    /// MLD reports flooded to the other ports. On failure the link is deleted again.
    async fn port_up(&self, link: LinkInfo, knob: &str) -> Result<LinkInfo> {
        let name = &link.name;
        let up = async {
            let key = format!("net/ipv6/conf/{name}/{knob}");
            crate::sysctl::write(&self.netns, &key, "1").await?;
            self.set_link(LinkChange::Set(SetLink {
                index: link.index,
                name: name.clone(),
                state: Some(LinkState::Up),
                rp_filter: None,
                group: None,
                alias: None,
                arp_notify: false,
                mac: None,
            }))
            .await
        };
        if let Err(e) = up.await {
            let _ = self.delete_link(name).await;
            return Err(e);
        }
        Ok(LinkInfo { up: true, ..link })
    }

    /// Every neighbour message of `family` (a dump) on link `index`.
    async fn neighbour_dump(
        &self,
        family: AddressFamily,
        index: u32,
        op: &'static str,
    ) -> Result<Vec<NeighbourMessage>> {
        // The kernel runs one dump per socket at a time: another task's dump on this handle
        // answers EBUSY, which passes once it is done.
        let mut tries = 0;
        let msgs: Vec<NeighbourMessage> = loop {
            let r = self
                .handle
                .neighbours()
                .get()
                .set_address_family(family)
                .execute()
                .try_collect()
                .await;
            match r {
                Err(e) if is_errno(&e, libc::EBUSY) && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                r => break r.map_err(|e| Error::netlink(op, index.to_string(), to_io(e)))?,
            }
        };
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.ifindex == index)
            .collect())
    }

    /// The name of link `index`, for the entries read back from it (`None` once it is gone).
    async fn name_of(&self, index: u32) -> Result<Option<String>> {
        Ok(self.get_link(&LinkRef::Index(index)).await?.map(|l| l.name))
    }

    /// Resolves once no link has `index` (polled; a lookup by index takes no rtnl lock).
    async fn until_gone(&self, index: u32) {
        loop {
            tokio::time::sleep(Duration::from_micros(200)).await;
            if let Ok(None) = self.get_link(&LinkRef::Index(index)).await {
                return;
            }
        }
    }

    fn route_message(req: &RouteRequest) -> RouteMessage {
        match req {
            RouteRequest::DefaultVia { gateway, dev } => match gateway {
                IpAddr::V4(g) => {
                    let mut b = RouteMessageBuilder::<Ipv4Addr>::new().gateway(*g);
                    if let Some(i) = dev {
                        b = b.output_interface(*i);
                    }
                    b.build()
                }
                IpAddr::V6(g) => {
                    let mut b = RouteMessageBuilder::<Ipv6Addr>::new().gateway(*g);
                    if let Some(i) = dev {
                        b = b.output_interface(*i);
                    }
                    b.build()
                }
            },
            RouteRequest::DefaultDev { family, dev } => match family {
                Family::V6 => RouteMessageBuilder::<Ipv6Addr>::new()
                    .output_interface(*dev)
                    .build(),
                Family::V4 => RouteMessageBuilder::<Ipv4Addr>::new()
                    .output_interface(*dev)
                    .build(),
            },
            RouteRequest::Host { addr, dev } => match addr {
                IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(*a, 32)
                    .output_interface(*dev)
                    .scope(rtnetlink::packet_route::route::RouteScope::Link)
                    .build(),
                IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(*a, 128)
                    .output_interface(*dev)
                    .build(),
            },
            RouteRequest::Spec { spec: r, dev } => {
                let mut msg = match (r.dst, r.via) {
                    (IpNet::V4(d), via) => {
                        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                            .destination_prefix(d.addr(), d.prefix_len())
                            .output_interface(*dev);
                        if let Some(IpAddr::V4(g)) = via {
                            b = b.gateway(g);
                        }
                        b.build()
                    }
                    (IpNet::V6(d), via) => {
                        let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                            .destination_prefix(d.addr(), d.prefix_len())
                            .output_interface(*dev);
                        if let Some(IpAddr::V6(g)) = via {
                            b = b.gateway(g);
                        }
                        b.build()
                    }
                };
                if let Some(m) = r.metric {
                    msg.attributes.push(RouteAttribute::Priority(m));
                }
                if let Some(t) = r.table {
                    super::rules::set_route_table(&mut msg, t);
                }
                msg
            }
        }
    }
}

/// The operation and object named in a route error.
fn route_what(op: RouteOp, req: &RouteRequest) -> (&'static str, String) {
    let verb = match op {
        RouteOp::Add => "add",
        RouteOp::Replace => "replace",
        RouteOp::Delete => "delete",
    };
    match req {
        RouteRequest::DefaultVia { gateway, .. } => (
            match op {
                RouteOp::Add => "add default route",
                RouteOp::Replace => "replace default route",
                RouteOp::Delete => "delete default route",
            },
            format!("via {gateway}"),
        ),
        RouteRequest::DefaultDev { dev, .. } => (
            match op {
                RouteOp::Add => "add default route",
                RouteOp::Replace => "replace default route",
                RouteOp::Delete => "delete default route",
            },
            format!("dev {dev}"),
        ),
        RouteRequest::Host { addr, dev } => (route_verb(verb), format!("{addr} dev {dev}")),
        RouteRequest::Spec { spec, .. } => (route_verb(verb), spec.to_string()),
    }
}

fn route_verb(verb: &str) -> &'static str {
    match verb {
        "add" => "add route",
        "replace" => "replace route",
        _ => "delete route",
    }
}

#[async_trait]
impl Kernel for RtKernel {
    async fn add_link(&self, req: LinkRequest) -> Result<Option<LinkInfo>> {
        match req {
            LinkRequest::Bridge { name, mac, mtu } => {
                let msg = LinkBridge::new(&name)
                    .address(mac.octets().to_vec())
                    .mtu(mtu)
                    .link_group(crate::link_marks::BRIDGE)
                    .up()
                    .build();
                self.create("bridge", msg, &name).await?;
                self.require(&name).await.map(Some)
            }
            LinkRequest::Veth(v) => self.add_veth(v).await.map(Some),
            LinkRequest::Vxlan(v) => self.add_vxlan(v).await.map(Some),
            LinkRequest::Gretap(g) => self.add_gretap(g).await.map(Some),
            LinkRequest::MacvlanInto {
                name,
                parent,
                mode,
                mac,
                netns,
            } => {
                let msg = LinkMacVlan::new(&name, parent, macvlan_mode(mode))
                    .address(mac.octets().to_vec())
                    .setns_by_fd(netns.as_raw_fd())
                    .build();
                self.create("macvlan", msg, &name).await.map(|()| None)
            }
            LinkRequest::IpvlanInto {
                name,
                parent,
                mode,
                flag,
                netns,
            } => {
                let msg = LinkIpVlan::new(&name, parent, ipvlan_mode(mode))
                    .flag(ipvlan_flags(flag))
                    .setns_by_fd(netns.as_raw_fd())
                    .build();
                self.create("ipvlan", msg, &name).await.map(|()| None)
            }
            LinkRequest::MacvlanShim {
                name,
                parent,
                mode,
                alias,
            } => {
                let msg = LinkMacVlan::new(&name, parent, macvlan_mode(mode))
                    .link_group(crate::link_marks::LOWER)
                    .up()
                    .build();
                self.create("macvlan", msg, &name).await?;
                self.set_alias_after_create(&name, &alias).await.map(Some)
            }
            LinkRequest::Vlan {
                name,
                base,
                id,
                alias,
            } => {
                let msg = LinkVlan::new(&name, base, id)
                    .link_group(crate::link_marks::LOWER)
                    .up()
                    .build();
                self.create("vlan (802.1q)", msg, &name).await?;
                self.set_alias_after_create(&name, &alias).await.map(Some)
            }
            LinkRequest::Dummy { name, alias } => {
                let msg = LinkDummy::new(&name)
                    .link_group(crate::link_marks::LOWER)
                    .up()
                    .build();
                self.create("dummy", msg, &name).await?;
                self.set_alias_after_create(&name, &alias).await.map(Some)
            }
        }
    }

    async fn set_link(&self, change: LinkChange) -> Result<()> {
        match change {
            LinkChange::Set(s) => {
                let mut b = LinkUnspec::new_with_index(s.index);
                let mut op = "set link";
                match s.state {
                    Some(LinkState::Up) => {
                        b = b.up();
                        op = "set link up";
                    }
                    Some(LinkState::Down) => {
                        b = b.down();
                        op = "set link down";
                    }
                    None => {}
                }
                if s.rp_filter.is_some() || s.arp_notify {
                    // net.ipv4.conf.NAME.{rp_filter,arp_notify} in the same request
                    // (IFLA_AF_SPEC / IFLA_INET_CONF): no thread entering the netns to write
                    // /proc/sys. Only non-zero values are sent.
                    let mut conf = InetDevConf::default();
                    if let Some(mode) = s.rp_filter {
                        conf.rp_filter = mode.value();
                    }
                    conf.arp_notify = i32::from(s.arp_notify);
                    b = b.append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![
                        AfSpecUnspec::Inet(vec![AfSpecInet::DevConfRequest(conf)]),
                    ]));
                }
                if let Some(mac) = s.mac {
                    b = b.address(mac.octets().to_vec());
                    op = "set link address";
                }
                if let Some(alias) = &s.alias {
                    b = b.alias(alias);
                    op = "set alias";
                }
                let mut msg = b.build();
                if let Some(g) = s.group {
                    msg.attributes.push(LinkAttribute::Group(g));
                    if s.state.is_none() && s.alias.is_none() {
                        op = "set link group";
                    }
                }
                self.handle
                    .link()
                    .set(msg)
                    .execute()
                    .await
                    .map_err(|e| Error::netlink(op, &s.name, to_io(e)))
            }
            LinkChange::BridgePort {
                index,
                name,
                hairpin,
                isolation,
            } => self
                .handle
                .link()
                .set_port(
                    LinkBridgePort::new(index)
                        .hairpin(hairpin == Hairpin::On)
                        .isolated(isolation == PortIsolation::Isolated)
                        .build(),
                )
                .execute()
                .await
                .map_err(|e| Error::netlink("set bridge port flags", &name, to_io(e))),
            LinkChange::Bridge {
                name,
                linklocal_learn,
            } => {
                use rtnetlink::packet_route::link::{
                    BridgeBooleanOptionFlags, BridgeBooleanOptions, InfoBridge,
                };
                let flag = BridgeBooleanOptionFlags::NoLinkLocalLearn;
                let value = match linklocal_learn {
                    LinkLocalLearn::Off => flag,
                    LinkLocalLearn::On => BridgeBooleanOptionFlags::empty(),
                };
                let msg = LinkBridge::new(&name)
                    .append_info_data(InfoBridge::MultiBoolOpt(BridgeBooleanOptions {
                        value,
                        mask: flag,
                    }))
                    .build();
                self.handle
                    .link()
                    .change(msg)
                    .execute()
                    .await
                    .map_err(|e| Error::netlink("set bridge no_linklocal_learn", &name, to_io(e)))
            }
        }
    }

    /// Returns as soon as the link has left the netns (its name and index are free, and so are
    /// a veth peer's), not when the kernel acknowledges the request: unregistering a device ends
    /// with an RCU barrier after the kernel has released the rtnl lock (~20 ms here, whatever
    /// the API), and the acknowledgement waits for it. So the request is sent by someone who
    /// sits out that wait in the background (a thread, or a child process: [`Teardown`]), while
    /// this polls for the link to disappear; an error the kernel reports first is returned.
    async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(l) = self.get_link(&LinkRef::Name(name.to_string())).await? else {
            return Ok(false);
        };
        let (index, teardown) = (l.index, self.teardown);
        let request = self.netns.spawn(move || teardown.delete_link(index));
        tokio::pin!(request);
        tokio::select! {
            r = &mut request => match r? {
                Ok(()) => Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
                Err(e) => Err(Error::netlink("delete link", name, e)),
            },
            () = self.until_gone(index) => Ok(true),
        }
    }

    async fn link(&self, by: LinkRef) -> Result<Option<LinkInfo>> {
        self.get_link(&by).await
    }

    async fn links(&self) -> Result<Vec<LinkInfo>> {
        let s = self.handle.link().get().execute();
        s.map_ok(info)
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list links", "", to_io(e)))
    }

    async fn wait_oper_up(&self, index: u32, limit: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self
                .get_link(&LinkRef::Index(index))
                .await?
                .is_some_and(|l| l.oper_up)
            {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// IPv6 addresses get `nodad` (DAD stalls container start-up for seconds).
    async fn add_address(&self, r: AddressRequest) -> Result<()> {
        let mut req = self.handle.address().add(r.index, r.addr, r.prefix);
        if r.addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().await.map_err(|e| {
            Error::netlink(
                "add address",
                format!("{}/{} on {}", r.addr, r.prefix, r.name),
                to_io(e),
            )
        })
    }

    async fn del_address(&self, r: AddressRequest) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(r.index)
            .execute();
        while let Some(m) = req
            .try_next()
            .await
            .map_err(|e| Error::netlink("list addresses", &r.name, to_io(e)))?
        {
            let hit = m.header.prefix_len == r.prefix
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == r.addr));
            if hit {
                return self.handle.address().del(m).execute().await.map_err(|e| {
                    Error::netlink(
                        "delete address",
                        format!("{}/{} on {}", r.addr, r.prefix, r.name),
                        to_io(e),
                    )
                });
            }
        }
        Ok(())
    }

    async fn addresses(&self, index: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>> {
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        let msgs: Vec<_> = req
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list addresses", "", to_io(e)))?;
        let mut out = Vec::new();
        for m in msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    out.push((m.header.index, *ip, m.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    async fn route(&self, op: RouteOp, req: RouteRequest) -> Result<()> {
        let msg = Self::route_message(&req);
        let res = match op {
            RouteOp::Add => self.handle.route().add(msg).execute().await,
            RouteOp::Replace => self.handle.route().add(msg).replace().execute().await,
            RouteOp::Delete => self.handle.route().del(msg).execute().await,
        };
        match res {
            Ok(()) => Ok(()),
            Err(e)
                if op == RouteOp::Delete
                    && (is_errno(&e, libc::ESRCH) || is_errno(&e, libc::ENOENT)) =>
            {
                Ok(())
            }
            Err(e) => {
                let (what, obj) = route_what(op, &req);
                Err(Error::netlink(what, obj, to_io(e)))
            }
        }
    }

    async fn routes(&self) -> Result<Vec<RouteInfo>> {
        let mut all = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let v: Vec<RouteMessage> = self
                .handle
                .route()
                .get(msg)
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::netlink("list routes", "", to_io(e)))?;
            for r in v {
                let family = if r.header.address_family == AddressFamily::Inet6 {
                    Family::V6
                } else {
                    Family::V4
                };
                let mut info = RouteInfo {
                    family,
                    dst: None,
                    prefix_len: r.header.destination_prefix_length,
                    has_gateway: false,
                    gateway: None,
                    oif: None,
                    table: u32::from(r.header.table),
                };
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                            info.dst = Some(IpAddr::V4(*ip))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                            info.dst = Some(IpAddr::V6(*ip))
                        }
                        RouteAttribute::Gateway(g) => {
                            info.has_gateway = true;
                            info.gateway = match g {
                                RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
                                RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
                                _ => None,
                            };
                        }
                        RouteAttribute::Via(_) => info.has_gateway = true,
                        RouteAttribute::Oif(i) => {
                            info.oif.get_or_insert(*i);
                        }
                        RouteAttribute::Table(t) => info.table = *t,
                        _ => {}
                    }
                }
                all.push(info);
            }
        }
        Ok(all)
    }

    async fn del_neighbour(&self, r: NeighbourRequest) -> Result<bool> {
        let mut msg = NeighbourMessage::default();
        msg.header.ifindex = r.index;
        let (family, dst) = match r.addr {
            IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(a)),
        };
        msg.header.family = family;
        msg.attributes.push(NeighbourAttribute::Destination(dst));
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::netlink(
                "delete neighbour",
                format!("{} on {}", r.addr, r.name),
                to_io(e),
            )),
        }
    }

    async fn add_neighbour(&self, e: NeighbourEntry) -> Result<()> {
        self.handle
            .neighbours()
            .add(e.index, e.addr)
            .link_layer_address(&e.mac.octets())
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|err| {
                Error::netlink(
                    "replace neighbour",
                    format!("{} lladdr {} on {}", e.addr, e.mac, e.name),
                    to_io(err),
                )
            })
    }

    /// Two dumps (`AF_INET`, `AF_INET6`: an `AF_UNSPEC` one would also list the forwarding
    /// databases), kept to link `index` and `NUD_PERMANENT`.
    async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>> {
        let mut msgs = self
            .neighbour_dump(AddressFamily::Inet, index, "list neighbours")
            .await?;
        msgs.extend(
            self.neighbour_dump(AddressFamily::Inet6, index, "list neighbours")
                .await?,
        );
        let found: Vec<(IpAddr, MacAddr)> = msgs
            .iter()
            .filter(|m| m.header.state == NeighbourState::Permanent)
            .filter_map(|m| Some((neighbour_dst(m)?, neighbour_mac(m)?)))
            .collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let Some(name) = self.name_of(index).await? else {
            return Ok(Vec::new());
        };
        Ok(found
            .into_iter()
            .map(|(addr, mac)| NeighbourEntry {
                index,
                name: name.clone(),
                addr,
                mac,
            })
            .collect())
    }

    /// `NTF_SELF` (the device's own database, not its bridge master's), `NUD_PERMANENT`,
    /// `NLM_F_CREATE | NLM_F_REPLACE`.
    async fn add_fdb(&self, e: FdbEntry) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(e.index, &e.mac.octets())
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .destination(e.dst)
            .replace()
            .execute()
            .await
            .map_err(|err| {
                Error::netlink(
                    "replace fdb entry",
                    format!("{} dst {} on {}", e.mac, e.dst, e.name),
                    to_io(err),
                )
            })
    }

    async fn del_fdb(&self, e: FdbEntry) -> Result<bool> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = e.index;
        msg.header.flags = NeighbourFlags::Own;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(
            e.mac.octets().to_vec(),
        ));
        msg.attributes
            .push(NeighbourAttribute::Destination(e.dst.into()));
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(err) if is_errno(&err, libc::ENOENT) => Ok(false),
            Err(err) => Err(Error::netlink(
                "delete fdb entry",
                format!("{} dst {} on {}", e.mac, e.dst, e.name),
                to_io(err),
            )),
        }
    }

    /// A dump of `AF_BRIDGE` neighbours (every bridge port's and VXLAN device's), kept to link
    /// `index`, `NTF_SELF`, `NUD_PERMANENT` and a destination (`NDA_DST`).
    async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>> {
        let msgs = self
            .neighbour_dump(AddressFamily::Bridge, index, "list fdb")
            .await?;
        let found: Vec<(MacAddr, IpAddr)> = msgs
            .iter()
            .filter(|m| {
                m.header.flags.contains(NeighbourFlags::Own)
                    && m.header.state == NeighbourState::Permanent
            })
            .filter_map(|m| Some((neighbour_mac(m)?, neighbour_dst(m)?)))
            .collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let Some(name) = self.name_of(index).await? else {
            return Ok(Vec::new());
        };
        Ok(found
            .into_iter()
            .map(|(mac, dst)| FdbEntry {
                index,
                name: name.clone(),
                mac,
                dst,
            })
            .collect())
    }

    /// Asks with a create request for such a link on parent ifindex 0: the kernel looks the
    /// kind up before the parent, so an unknown kind answers `EOPNOTSUPP` (→
    /// [`Error::Unsupported`] naming it) and a known one the kind's own complaint about the
    /// missing parent (`ENODEV`/`EINVAL`). Network creation probes this, as Docker checks for
    /// the module, so that a kernel without ipvlan is refused at create, not at the first
    /// connect.
    async fn probe_kind(&self, kind: ProbeKind) -> Result<()> {
        let name = "berth-probe";
        let (kind, msg) = match kind {
            ProbeKind::Macvlan => (
                "macvlan",
                LinkMacVlan::new(name, 0, MacVlanMode::Bridge).build(),
            ),
            ProbeKind::Ipvlan => ("ipvlan", LinkIpVlan::new(name, 0, IpVlanMode::L2).build()),
            // No parent here: the GRE routing flag, which every GRE kind refuses (EINVAL)
            // while validating the request, before making anything.
            ProbeKind::Gretap | ProbeKind::Ip6Gretap => {
                let any: IpAddr = match kind {
                    ProbeKind::Gretap => Ipv4Addr::UNSPECIFIED.into(),
                    _ => Ipv6Addr::UNSPECIFIED.into(),
                };
                let g = GretapRequest {
                    name: name.to_string(),
                    local: any,
                    remote: any,
                    key: 0,
                    ttl: 0,
                    underlay: None,
                    mtu: 0,
                    master: None,
                    group: None,
                    isolation: PortIsolation::Open,
                    neigh_suppress: NeighSuppress::Off,
                };
                gretap_message(&g, GreIOFlags::Routing)
            }
        };
        match self.handle.link().add(msg).execute().await {
            Err(e) if is_errno(&e, libc::EOPNOTSUPP) => Err(add_err(kind, name, e)),
            Err(_) => Ok(()),
            // Not expected (no parent); never leave it behind.
            Ok(()) => self.delete_link(name).await.map(drop),
        }
    }

    async fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        crate::sysctl::write(&self.netns, key, value).await
    }

    async fn rule(&self, op: super::rules::RuleOp, rule: crate::rule::RuleSpec) -> Result<()> {
        super::rules::execute(&self.handle, op, &rule).await
    }

    async fn rules(&self) -> Result<Vec<super::rules::RuleInfo>> {
        super::rules::dump(&self.handle).await
    }

    // Traffic control: messages built and read in `super::tc`.

    async fn add_ifb(&self, name: &str, group: u32) -> Result<LinkInfo> {
        self.create("ifb", super::tc::ifb_message(name, group), name)
            .await?;
        self.require(name).await
    }

    async fn replace_qdisc(&self, req: super::tc::QdiscRequest) -> Result<()> {
        use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
        use rtnetlink::packet_route::RouteNetlinkMessage as M;
        let (flags, kind) = match req.kind {
            super::tc::QdiscKind::Tbf(_) => (NLM_F_CREATE | NLM_F_REPLACE, "tbf"),
            super::tc::QdiscKind::Ingress => (NLM_F_CREATE | NLM_F_EXCL, "ingress"),
        };
        let msg = M::NewQueueDiscipline(super::tc::qdisc_message(&req));
        match super::tc::request(&self.handle, msg, flags).await {
            Ok(_) => Ok(()),
            Err(e) if kind == "ingress" && is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::EOPNOTSUPP) => {
                Err(Error::Unsupported {
                    what: format!("qdisc {kind}"),
                    source: to_io(e),
                })
            }
            Err(e) => Err(Error::netlink("replace qdisc", &req.name, to_io(e))),
        }
    }

    async fn del_qdisc(
        &self,
        index: u32,
        name: &str,
        parent: super::tc::QdiscParent,
    ) -> Result<bool> {
        use rtnetlink::packet_route::RouteNetlinkMessage as M;
        let msg = M::DelQueueDiscipline(super::tc::del_qdisc_message(index, parent));
        match super::tc::request(&self.handle, msg, 0).await {
            Ok(_) => Ok(true),
            // No such qdisc, or only the default one ("handle of zero"), or no link.
            Err(e)
                if is_errno(&e, libc::ENOENT)
                    || is_errno(&e, libc::EINVAL)
                    || is_errno(&e, libc::ENODEV) =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::netlink("delete qdisc", name, to_io(e))),
        }
    }

    async fn qdiscs(&self, index: u32) -> Result<Vec<super::tc::QdiscInfo>> {
        use rtnetlink::packet_core::NLM_F_DUMP;
        use rtnetlink::packet_route::RouteNetlinkMessage as M;
        let mut q = rtnetlink::packet_route::tc::TcMessage::default();
        q.header.index = index as i32;
        let got = super::tc::request(&self.handle, M::GetQueueDiscipline(q), NLM_F_DUMP)
            .await
            .map_err(|e| Error::netlink("list qdiscs", index.to_string(), to_io(e)))?;
        Ok(got
            .iter()
            .filter_map(|m| match m {
                M::NewQueueDiscipline(t) if t.header.index == index as i32 => {
                    Some(super::tc::qdisc_info(t))
                }
                _ => None,
            })
            .collect())
    }

    async fn add_redirect(&self, req: super::tc::RedirectRequest) -> Result<()> {
        use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
        use rtnetlink::packet_route::RouteNetlinkMessage as M;
        let msg = M::NewTrafficFilter(super::tc::redirect_message(&req));
        match super::tc::request(&self.handle, msg, NLM_F_CREATE | NLM_F_EXCL).await {
            Ok(_) => Ok(()),
            Err(e) if is_errno(&e, libc::ENOENT) || is_errno(&e, libc::EOPNOTSUPP) => {
                Err(Error::Unsupported {
                    what: "tc filter u32 with action mirred".into(),
                    source: to_io(e),
                })
            }
            Err(e) => Err(Error::netlink("add redirect filter", &req.name, to_io(e))),
        }
    }

    async fn ingress_filters(&self, index: u32) -> Result<Vec<super::tc::FilterInfo>> {
        use rtnetlink::packet_core::NLM_F_DUMP;
        use rtnetlink::packet_route::RouteNetlinkMessage as M;
        let mut q = rtnetlink::packet_route::tc::TcMessage::with_index(index as i32);
        q.header.parent = super::tc::INGRESS_HANDLE;
        match super::tc::request(&self.handle, M::GetTrafficFilter(q), NLM_F_DUMP).await {
            Ok(got) => Ok(got
                .iter()
                .filter_map(|m| match m {
                    M::NewTrafficFilter(t) if t.header.index == index as i32 => {
                        super::tc::filter_info(t)
                    }
                    _ => None,
                })
                .collect()),
            // No ingress qdisc (or no link): no filters.
            Err(e)
                if is_errno(&e, libc::EINVAL)
                    || is_errno(&e, libc::ENOENT)
                    || is_errno(&e, libc::ENODEV) =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(Error::netlink("list filters", index.to_string(), to_io(e))),
        }
    }

    // Bridge VLANs: the requests are built in `super::bridge_vlan`.

    async fn vlan_filtering(&self, bridge: u32) -> Result<Option<super::VlanFiltering>> {
        super::bridge_vlan::rt_vlan_filtering(&self.handle, bridge).await
    }

    async fn set_vlan_filtering(&self, bridge: u32, name: &str, on: bool) -> Result<()> {
        let _ = bridge;
        super::bridge_vlan::rt_set_vlan_filtering(&self.handle, name, on).await
    }

    async fn port_vlan(&self, op: super::VlanOp, req: super::PortVlanRequest) -> Result<()> {
        super::bridge_vlan::rt_port_vlan(&self.handle, op, &req).await
    }

    async fn vlan_tables(&self) -> Result<Vec<super::VlanTable>> {
        super::bridge_vlan::rt_vlan_tables(&self.handle).await
    }

    async fn set_master(&self, index: u32, name: &str, master: Option<u32>) -> Result<()> {
        super::bridge_vlan::rt_set_master(&self.handle, index, name, master).await
    }
}

/// The create request of a gretap (ip6gretap for IPv6 addresses) from `g`'s addresses, key and
/// TTL, with `flags` both ways (`GRE_KEY`), and the kind's name. Over IPv6 without the
/// encapsulation-limit option (`IFLA_GRE_FLAGS` = `IP6_TNL_F_IGN_ENCAP_LIMIT`, which the
/// crate has no typed attribute for).
fn gretap_message(g: &GretapRequest, flags: GreIOFlags) -> (&'static str, LinkMessage) {
    match (g.local, g.remote) {
        (IpAddr::V4(l), IpAddr::V4(r)) => {
            let msg = LinkGre::new_gretap(&g.name)
                .local(l)
                .remote(r)
                .ikey(g.key)
                .okey(g.key)
                .iflags(flags)
                .oflags(flags)
                .ttl(g.ttl)
                .build();
            ("gretap", msg)
        }
        (l, r) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            let msg = LinkGre6::new_gretap6(&g.name)
                .local(v6(l))
                .remote(v6(r))
                .ikey(g.key)
                .okey(g.key)
                .iflags(flags)
                .oflags(flags)
                .ttl(g.ttl)
                .build();
            const IFLA_GRE_FLAGS: u16 = 13;
            const IP6_TNL_F_IGN_ENCAP_LIMIT: u32 = 0x1;
            let flags = rtnetlink::packet_core::DefaultNla::new(
                IFLA_GRE_FLAGS,
                IP6_TNL_F_IGN_ENCAP_LIMIT.to_ne_bytes().to_vec(),
            );
            let msg = with_gre_info(msg, InfoGre::Other(flags.clone()), InfoGre6::Other(flags));
            ("ip6gretap", msg)
        }
    }
}

/// `msg` (a gretap's or an ip6gretap's create request) with one more GRE attribute: `v4` or
/// `v6`, whichever its kind takes.
fn with_gre_info(mut msg: LinkMessage, v4: InfoGre, v6: InfoGre6) -> LinkMessage {
    use rtnetlink::packet_route::link::LinkInfo as Info;
    for a in &mut msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos.iter_mut() {
                match i {
                    Info::Data(InfoData::GreTap(v)) => v.push(v4.clone()),
                    Info::Data(InfoData::GreTap6(v)) => v.push(v6.clone()),
                    _ => {}
                }
            }
        }
    }
    msg
}

/// The `NDA_DST` of a neighbour message: typed for `AF_INET`/`AF_INET6`, raw bytes (4 or 16)
/// for `AF_BRIDGE`.
fn neighbour_dst(m: &NeighbourMessage) -> Option<IpAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            if let Ok(o) = <[u8; 4]>::try_from(b.as_slice()) {
                Some(IpAddr::V4(Ipv4Addr::from(o)))
            } else {
                <[u8; 16]>::try_from(b.as_slice())
                    .ok()
                    .map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            }
        }
        _ => None,
    })
}

/// The `NDA_LLADDR` of a neighbour message, when an Ethernet address.
fn neighbour_mac(m: &NeighbourMessage) -> Option<MacAddr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => {
            <[u8; 6]>::try_from(b.as_slice()).ok().map(MacAddr)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::Nla;
    use rtnetlink::packet_route::link::{InfoKind, LinkInfo as Info};

    use super::*;

    fn request(local: &str, remote: &str) -> GretapRequest {
        GretapRequest {
            name: "g0010000a000002".into(),
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            key: 4096,
            ttl: 64,
            underlay: None,
            mtu: 1458,
            master: None,
            group: None,
            isolation: PortIsolation::Isolated,
            neigh_suppress: NeighSuppress::On,
        }
    }

    fn infos(msg: &LinkMessage) -> (Option<InfoKind>, Option<InfoData>) {
        let mut kind = None;
        let mut data = None;
        for a in &msg.attributes {
            if let LinkAttribute::LinkInfo(infos) = a {
                for i in infos {
                    match i {
                        Info::Kind(k) => kind = Some(k.clone()),
                        Info::Data(d) => data = Some(d.clone()),
                        _ => {}
                    }
                }
            }
        }
        (kind, data)
    }

    /// gretap local/remote, key both ways with the key flag (network byte order on the wire),
    /// the TTL and the underlay link.
    #[test]
    fn a_gretap_request_carries_the_key_both_ways() {
        let g = request("10.0.0.1", "10.0.0.2");
        let (kind, msg) = gretap_message(&g, GreIOFlags::Key);
        let msg = with_gre_info(msg, InfoGre::Link(7), InfoGre6::Link(7));
        assert_eq!(kind, "gretap");
        let (k, data) = infos(&msg);
        assert_eq!(k, Some(InfoKind::GreTap));
        let Some(InfoData::GreTap(v)) = data else {
            panic!("{data:?}")
        };
        for want in [
            InfoGre::Local("10.0.0.1".parse().unwrap()),
            InfoGre::Remote("10.0.0.2".parse().unwrap()),
            InfoGre::IKey(4096),
            InfoGre::OKey(4096),
            InfoGre::IFlags(GreIOFlags::Key),
            InfoGre::OFlags(GreIOFlags::Key),
            InfoGre::Ttl(64),
            InfoGre::Link(7),
        ] {
            assert!(v.contains(&want), "{want:?} missing from {v:?}");
        }
        let mut buf = [0u8; 2];
        InfoGre::IFlags(GreIOFlags::Key).emit_value(&mut buf);
        assert_eq!(buf, [0x20, 0x00], "GRE_KEY, big-endian");
        let mut buf = [0u8; 4];
        InfoGre::IKey(4096).emit_value(&mut buf);
        assert_eq!(buf, [0, 0, 0x10, 0], "the key, big-endian");
    }

    /// ip6gretap for IPv6 addresses, without the encapsulation-limit option.
    #[test]
    fn an_ipv6_gretap_request_is_ip6gretap_without_encapsulation_limit() {
        let g = request("fd00::1", "fd00::2");
        let (kind, msg) = gretap_message(&g, GreIOFlags::Key);
        assert_eq!(kind, "ip6gretap");
        let (k, data) = infos(&msg);
        assert_eq!(k, Some(InfoKind::GreTap6));
        let Some(InfoData::GreTap6(v)) = data else {
            panic!("{data:?}")
        };
        assert!(v.contains(&InfoGre6::Remote("fd00::2".parse().unwrap())));
        assert!(v.contains(&InfoGre6::IKey(4096)));
        let flags = v.iter().find(|i| i.kind() == 13).expect("IFLA_GRE_FLAGS");
        let mut buf = [0u8; 4];
        flags.emit_value(&mut buf);
        assert_eq!(u32::from_ne_bytes(buf), 1, "IP6_TNL_F_IGN_ENCAP_LIMIT");
    }
}
