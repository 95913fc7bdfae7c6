//! Links: `ip link add|del|set|show` as typed operations.

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, InfoData, InfoVeth, LinkAttribute, LinkMessage,
};
use rtnetlink::packet_route::link::{IpVlanFlags, IpVlanMode, MacVlanMode};
use rtnetlink::{
    LinkBridge, LinkBridgePort, LinkDummy, LinkIpVlan, LinkMacVlan, LinkMessageBuilder, LinkUnspec,
    LinkVeth, LinkVlan,
};

use super::{Netlink, is_errno, to_io};
use crate::error::{Error, Result};
use crate::mac::MacAddr;
use crate::netns::Netns;
use std::os::fd::AsRawFd;

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

fn info(msg: LinkMessage) -> LinkInfo {
    let mut l = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        mtu: None,
        controller: None,
        up: msg
            .header
            .flags
            .contains(rtnetlink::packet_route::link::LinkFlags::Up),
        oper_up: false,
        mac: None,
        alias: None,
        is_bridge: false,
        group: 0,
        is_loopback: msg.header.link_layer_type
            == rtnetlink::packet_route::link::LinkLayerType::Loopback,
        is_ether: msg.header.link_layer_type == rtnetlink::packet_route::link::LinkLayerType::Ether,
    };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n,
            LinkAttribute::Mtu(m) => l.mtu = Some(m),
            LinkAttribute::Controller(c) => l.controller = Some(c),
            LinkAttribute::Address(a) => l.mac = Some(a),
            LinkAttribute::IfAlias(a) => l.alias = Some(a),
            LinkAttribute::Group(g) => l.group = g,
            LinkAttribute::OperState(st) => {
                l.oper_up = st == rtnetlink::packet_route::link::State::Up
            }
            LinkAttribute::LinkInfo(infos) => {
                l.is_bridge |= infos.iter().any(|i| {
                    matches!(
                        i,
                        rtnetlink::packet_route::link::LinkInfo::Kind(
                            rtnetlink::packet_route::link::InfoKind::Bridge
                        )
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

impl Netlink {
    /// `ip link show NAME`; `None` when there is no such link.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(m) => Ok(m.map(info)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(Error::netlink("get link", name, to_io(e))),
        }
    }

    /// `ip link show` by index; `None` when there is no such link.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkInfo>> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.try_next().await {
            Ok(m) => Ok(m.map(info)),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(Error::netlink("get link", index.to_string(), to_io(e))),
        }
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

    /// `ip link add NAME address MAC mtu MTU group BRIDGE type bridge && ip link set NAME up`,
    /// marked as berth's ([`crate::link_marks::BRIDGE`]) in the creating request.
    pub async fn add_bridge(&self, name: &str, mac: MacAddr, mtu: u32) -> Result<LinkInfo> {
        let msg = LinkBridge::new(name)
            .address(mac.octets().to_vec())
            .mtu(mtu)
            .link_group(crate::link_marks::BRIDGE)
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| add_err("bridge", name, e))?;
        self.require_link(name).await
    }

    /// Creates a veth pair whose host end `host` is enslaved to `master`, in device group
    /// `group` (berth's mark, set in the creating request) and up, and whose peer is
    /// born inside `peer_netns` as `peer_name` with `peer_mac` — one request, no move afterwards
    /// (moving costs ~20 ms more). Equivalent of
    /// `ip link add HOST mtu M master BR group G type veth peer name PEER address MAC netns NS`,
    /// then `sysctl net.ipv6.conf.HOST.disable_ipv6=1` and `ip link set HOST up`.
    ///
    /// The host end, a bridge port, needs no address: with IPv6 on, bringing it up would give it
    /// a link-local address and routes in this netns (every later link change walks the IPv6
    /// routing table: O(endpoints)) and send DAD, router solicitations and MLD reports that the
    /// bridge floods to every port. So IPv6 is switched off before it comes up.
    pub async fn add_veth_into(
        &self,
        host: &str,
        master: u32,
        mtu: u32,
        group: u32,
        peer: VethPeer<'_>,
    ) -> Result<LinkInfo> {
        let VethPeer {
            name: peer_name,
            mac: peer_mac,
            netns: peer_netns,
        } = peer;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.to_string())
            .address(peer_mac.octets().to_vec())
            .mtu(mtu)
            .setns_by_fd(peer_netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer_name)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(mtu)
            .controller(master)
            .link_group(group)
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| add_err("veth", host, e))?;
        let link = self.require_link(host).await?;
        let up = async {
            let key = format!("net/ipv6/conf/{host}/disable_ipv6");
            crate::sysctl::write(&self.netns, &key, "1").await?;
            self.set_up(link.index, host).await
        };
        if let Err(e) = up.await {
            let _ = self.delete_link(host).await;
            return Err(e);
        }
        Ok(LinkInfo { up: true, ..link })
    }

    /// A link of `kind` created in this netns, or — with `into` — born inside another netns,
    /// then returned as seen from where it lives.
    async fn add_link(&self, kind: &'static str, msg: LinkMessage, name: &str) -> Result<()> {
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| add_err(kind, name, e))
    }

    /// `ip link add NAME link PARENT netns NS address MAC type macvlan mode MODE`: the macvlan
    /// is born inside `netns` (no move afterwards).
    pub async fn add_macvlan_into(
        &self,
        name: &str,
        parent: u32,
        mode: MacVlanMode,
        mac: MacAddr,
        netns: &Netns,
    ) -> Result<()> {
        let msg = LinkMacVlan::new(name, parent, mode)
            .address(mac.octets().to_vec())
            .setns_by_fd(netns.as_raw_fd())
            .build();
        self.add_link("macvlan", msg, name).await
    }

    /// `ip link add NAME link PARENT netns NS type ipvlan mode MODE FLAG`.
    pub async fn add_ipvlan_into(
        &self,
        name: &str,
        parent: u32,
        mode: IpVlanMode,
        flags: IpVlanFlags,
        netns: &Netns,
    ) -> Result<()> {
        let msg = LinkIpVlan::new(name, parent, mode)
            .flag(flags)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        self.add_link("ipvlan", msg, name).await
    }

    /// Whether the kernel has the link kind of `msg` (a create request for such a link on
    /// parent ifindex 0), asked without making anything: the kernel looks the kind up before
    /// the parent, so an unknown kind answers `EOPNOTSUPP` (→ [`Error::Unsupported`] naming it)
    /// and a known one the kind's own complaint about the missing parent (`ENODEV`/`EINVAL`).
    /// Network creation probes this, as Docker checks for the module, so that a kernel without
    /// ipvlan is refused at create, not at the first connect.
    pub async fn probe_kind(&self, kind: &'static str, msg: LinkMessage) -> Result<()> {
        let name = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_default();
        match self.handle.link().add(msg).execute().await {
            Err(e) if is_errno(&e, libc::EOPNOTSUPP) => Err(add_err(kind, &name, e)),
            Err(_) => Ok(()),
            // Not expected (no parent); never leave it behind.
            Ok(()) => self.delete_link(&name).await.map(drop),
        }
    }

    /// [`Netlink::probe_kind`] for macvlan.
    pub async fn probe_macvlan(&self) -> Result<()> {
        let msg = LinkMacVlan::new("berth-probe", 0, MacVlanMode::Bridge).build();
        self.probe_kind("macvlan", msg).await
    }

    /// [`Netlink::probe_kind`] for ipvlan.
    pub async fn probe_ipvlan(&self) -> Result<()> {
        let msg = LinkIpVlan::new("berth-probe", 0, IpVlanMode::L2).build();
        self.probe_kind("ipvlan", msg).await
    }

    /// `ip link add NAME link PARENT group LOWER type macvlan mode MODE && ip link set NAME up`
    /// here, marked as berth's in the creating request and with `alias`.
    pub async fn add_macvlan(
        &self,
        name: &str,
        parent: u32,
        mode: MacVlanMode,
        alias: &str,
    ) -> Result<LinkInfo> {
        let msg = LinkMacVlan::new(name, parent, mode)
            .link_group(crate::link_marks::LOWER)
            .up()
            .build();
        self.add_link("macvlan", msg, name).await?;
        self.set_alias(name, alias).await
    }

    /// `ip link add NAME link BASE group LOWER type vlan id ID && ip link set NAME up`, marked
    /// as berth's in the creating request and with `alias`.
    pub async fn add_vlan(&self, name: &str, base: u32, id: u16, alias: &str) -> Result<LinkInfo> {
        let msg = LinkVlan::new(name, base, id)
            .link_group(crate::link_marks::LOWER)
            .up()
            .build();
        self.add_link("vlan (802.1q)", msg, name).await?;
        self.set_alias(name, alias).await
    }

    /// `ip link add NAME group LOWER type dummy && ip link set NAME up`, marked as berth's in the
    /// creating request and with `alias`.
    pub async fn add_dummy(&self, name: &str, alias: &str) -> Result<LinkInfo> {
        let msg = LinkDummy::new(name)
            .link_group(crate::link_marks::LOWER)
            .up()
            .build();
        self.add_link("dummy", msg, name).await?;
        self.set_alias(name, alias).await
    }

    /// `ip link set dev NAME alias ALIAS` (the kernel ignores IFLA_IFALIAS in a create request);
    /// on failure the new link is deleted again. Returns the link.
    async fn set_alias(&self, name: &str, alias: &str) -> Result<LinkInfo> {
        let l = self.require_link(name).await?;
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
        self.require_link(name).await
    }

    /// `ip link set dev (index) up`.
    pub async fn set_up(&self, index: u32, name: &str) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("set link up", name, to_io(e)))
    }

    /// `ip link set dev (index) down`.
    pub async fn set_down(&self, index: u32, name: &str) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(|e| Error::netlink("set link down", name, to_io(e)))
    }

    /// `ip link set dev (index) up` with `net.ipv4.conf.NAME.rp_filter=MODE` in the same request
    /// (`IFLA_AF_SPEC`/`IFLA_INET_CONF`: no thread entering the netns to write /proc/sys).
    pub async fn set_up_with_rp_filter(&self, index: u32, name: &str, mode: i32) -> Result<()> {
        let mut conf = InetDevConf::default();
        conf.rp_filter = mode;
        let af = LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConfRequest(conf),
        ])]);
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .up()
                    .append_extra_attribute(af)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink("set link up", name, to_io(e)))
    }

    /// `bridge link set dev NAME hairpin on|off isolated on|off`. Hairpin lets a container
    /// reach itself through a published port via the host; isolated ports cannot exchange
    /// frames with each other, only with non-isolated ports such as the bridge itself (ICC off
    /// without br_netfilter).
    pub async fn set_bridge_port(
        &self,
        index: u32,
        name: &str,
        hairpin: bool,
        isolated: bool,
    ) -> Result<()> {
        self.handle
            .link()
            .set_port(
                LinkBridgePort::new(index)
                    .hairpin(hairpin)
                    .isolated(isolated)
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| Error::netlink("set bridge port flags", name, to_io(e)))
    }

    /// `ip link set dev NAME type bridge no_linklocal_learn 1`: bridge `name` learns no source
    /// address from frames to IEEE link-local destinations (`01:80:c2:00:00:0X`). It learns
    /// from some of those (LLDP's, and the STP group's with STP on) before any netfilter hook,
    /// so without this a port could claim another's MAC past an anti-spoofing firewall.
    pub async fn set_bridge_no_linklocal_learn(&self, name: &str) -> Result<()> {
        use rtnetlink::packet_route::link::{
            BridgeBooleanOptionFlags, BridgeBooleanOptions, InfoBridge,
        };
        let flag = BridgeBooleanOptionFlags::NoLinkLocalLearn;
        let msg = LinkBridge::new(name)
            .append_info_data(InfoBridge::MultiBoolOpt(BridgeBooleanOptions {
                value: flag,
                mask: flag,
            }))
            .build();
        self.handle
            .link()
            .change(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink("set bridge no_linklocal_learn", name, to_io(e)))
    }

    /// `ip link set dev NAME group GROUP` (the device group, matched by nft's `iifgroup`).
    pub async fn set_group(&self, index: u32, name: &str, group: u32) -> Result<()> {
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes.push(LinkAttribute::Group(group));
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink("set link group", name, to_io(e)))
    }

    /// `ip link del NAME`. Returns `false` when it did not exist (idempotent).
    ///
    /// Returns as soon as the link has left the netns (its name and index are free, and so are
    /// a veth peer's), not when the kernel acknowledges the request: unregistering a device ends
    /// with an RCU barrier after the kernel has released the rtnl lock (~20 ms here, whatever
    /// the API), and the acknowledgement waits for it. So the request is sent from a thread of
    /// its own, which sits out that wait in the background, while this polls for the link to
    /// disappear; an error the kernel reports first is returned. A process may exit meanwhile:
    /// the kernel finishes the deletion regardless.
    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(l) = self.link_by_name(name).await? else {
            return Ok(false);
        };
        let index = l.index;
        let request = self.netns.spawn(move || del_link_blocking(index));
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

    /// Waits until link `index` is operationally up, at most `limit`; returns whether it is.
    pub async fn wait_oper_up(&self, index: u32, limit: std::time::Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.link_by_index(index).await?.is_some_and(|l| l.oper_up) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Resolves once no link has `index` (polled; a lookup by index takes no rtnl lock).
    async fn until_gone(&self, index: u32) {
        loop {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
            if let Ok(None) = self.link_by_index(index).await {
                return;
            }
        }
    }

    /// Every link (`ip link show`).
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        let s = self.handle.link().get().execute();
        s.map_ok(info)
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list links", "", to_io(e)))
    }
}

/// Sends `RTM_DELLINK` for `index` on a new blocking socket of the calling thread's netns and
/// waits for the kernel's answer (see [`Netlink::delete_link`] for why on a thread of its own).
fn del_link_blocking(index: u32) -> std::io::Result<()> {
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::RouteNetlinkMessage;
    use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut link = LinkMessage::default();
    link.header.index = index;
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::DelLink(link));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;
    loop {
        let (reply, _) = socket.recv_from_full()?;
        let mut off = 0;
        while off < reply.len() {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[off..])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let len = m.header.length as usize;
            if let NetlinkPayload::Error(e) = m.payload {
                return match e.code {
                    None => Ok(()),
                    Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
                };
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

/// The container end of a veth made by [`Netlink::add_veth_into`]: born inside `netns` as
/// `name` with `mac`.
#[derive(Debug, Clone, Copy)]
pub struct VethPeer<'a> {
    /// Its name inside the container netns.
    pub name: &'a str,
    /// Its MAC.
    pub mac: MacAddr,
    /// The container netns.
    pub netns: &'a Netns,
}
