//! Bridge VLANs: a bridge's VLAN filtering (`ip link set BR type bridge vlan_filtering 1`), the
//! VLAN tables of its ports (`bridge vlan add|del|show`), and moving a link in and out of a
//! bridge (`ip link set IF master BR` / `nomaster`): the request types of the [`super::Kernel`]
//! methods that serve VLAN-tagged endpoints, the builders on [`Netlink`], and the rtnetlink
//! requests [`super::RtKernel`] sends for them.
//!
//! On the wire (netlink-packet-route has every attribute typed):
//! - filtering is `IFLA_BR_VLAN_FILTERING` in the bridge's `IFLA_LINKINFO` data, changed with
//!   `RTM_NEWLINK`; read back with `RTM_GETLINK`. A kernel built without
//!   `CONFIG_BRIDGE_VLAN_FILTERING` (which needs `CONFIG_VLAN_8021Q`) still reports
//!   `vlan_filtering 0` but no `IFLA_BR_VLAN_DEFAULT_PVID`, and refuses to turn it on with
//!   `EOPNOTSUPP`: the absent default PVID is how berth tells, without changing anything.
//! - a port's VLAN is `RTM_SETLINK` (add) or `RTM_DELLINK` (delete) with family `AF_BRIDGE` on
//!   the port, `IFLA_AF_SPEC` → `IFLA_BRIDGE_VLAN_INFO {flags, vid}` (flags `PVID`, `UNTAGGED`).
//!   An `RTM_DELLINK` of family `AF_BRIDGE` deletes VLAN entries only, never the link (the
//!   kernel routes it to the bridge's own handler); berth builds it in one place,
//!   `vlan_message`, which always sets that family.
//! - the tables are a dump of `RTM_GETLINK` with family `AF_BRIDGE` and `IFLA_EXT_MASK` =
//!   `RTEXT_FILTER_BRVLAN`: one message per bridge port (and one per bridge, its own table).

use std::io;

use futures::TryStreamExt;
use rtnetlink::LinkBridgeVlan;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{
    AfSpecBridge, BridgeVlanInfoFlags, InfoBridge, InfoData, LinkAttribute, LinkExtentMask,
    LinkMessage,
};

use super::Netlink;
use crate::error::{Error, Result};

/// What [`crate::Error::Unsupported`] names when the kernel has no bridge VLAN filtering.
pub const NO_VLAN_FILTERING: &str =
    "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING, which needs CONFIG_VLAN_8021Q)";

/// A bridge's VLAN filtering, as read back (`ip -d link show BR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanFiltering {
    /// Whether it filters by VLAN (`vlan_filtering 1`).
    pub on: bool,
    /// The VLAN every new port joins untagged, as its PVID (`vlan_default_pvid`, 1 unless the
    /// admin changed it; 0: none).
    pub default_pvid: u16,
}

/// One VLAN of a VLAN table (`bridge vlan show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortVlan {
    /// The VLAN id, 1-4094.
    pub vid: u16,
    /// Untagged frames arriving on the port go into this VLAN (`pvid`).
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged (`untagged`).
    pub untagged: bool,
}

impl PortVlan {
    /// An access port's VLAN: its PVID, sent untagged (`bridge vlan add … vid V pvid
    /// untagged`).
    pub fn access(vid: u16) -> Self {
        PortVlan {
            vid,
            pvid: true,
            untagged: true,
        }
    }

    /// A trunk's VLAN: carried tagged (`bridge vlan add … vid V`).
    pub fn tagged(vid: u16) -> Self {
        PortVlan {
            vid,
            pvid: false,
            untagged: false,
        }
    }
}

impl std::fmt::Display for PortVlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "vid {}", self.vid)?;
        if self.pvid {
            f.write_str(" pvid")?;
        }
        if self.untagged {
            f.write_str(" untagged")?;
        }
        Ok(())
    }
}

/// The VLAN table of one link: a bridge port's, or a bridge's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanTable {
    /// ifindex of the link.
    pub index: u32,
    /// Its bridge, when it is a port (`None`: the bridge's own table).
    pub controller: Option<u32>,
    /// Its VLANs.
    pub vlans: Vec<PortVlan>,
}

/// Whether a [`PortVlanRequest`] adds or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanOp {
    /// `bridge vlan add` (replaces the flags of a VLAN the port has).
    Add,
    /// `bridge vlan del`; a VLAN the port does not have is fine.
    Delete,
}

/// One VLAN of one bridge port to add or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortVlanRequest {
    /// ifindex of the port.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// The VLAN.
    pub vlan: PortVlan,
}

impl Netlink {
    /// `ip -d link show BR`: bridge `index`'s VLAN filtering; `None` when the kernel has none
    /// (see the module docs).
    pub async fn vlan_filtering(&self, bridge: u32) -> Result<Option<VlanFiltering>> {
        self.kernel.vlan_filtering(bridge).await
    }

    /// `ip link set NAME type bridge vlan_filtering 0|1` on bridge `index`; a kernel without
    /// it is [`Error::Unsupported`] naming [`NO_VLAN_FILTERING`].
    pub async fn set_vlan_filtering(&self, bridge: u32, name: &str, on: bool) -> Result<()> {
        self.kernel.set_vlan_filtering(bridge, name, on).await
    }

    /// `bridge vlan add dev NAME vid V [pvid] [untagged] master` on port `index`.
    pub async fn add_port_vlan(&self, index: u32, name: &str, vlan: PortVlan) -> Result<()> {
        let req = PortVlanRequest {
            index,
            name: name.to_string(),
            vlan,
        };
        self.kernel.port_vlan(VlanOp::Add, req).await
    }

    /// `bridge vlan del dev NAME vid V master` on port `index` (a VLAN it lacks is fine).
    pub async fn del_port_vlan(&self, index: u32, name: &str, vid: u16) -> Result<()> {
        let req = PortVlanRequest {
            index,
            name: name.to_string(),
            vlan: PortVlan::tagged(vid),
        };
        self.kernel.port_vlan(VlanOp::Delete, req).await
    }

    /// `bridge vlan show`: the VLAN table of every bridge port and bridge.
    pub async fn vlan_tables(&self) -> Result<Vec<VlanTable>> {
        self.kernel.vlan_tables().await
    }

    /// The VLANs of link `index` (empty when it has no table: not a bridge port).
    pub async fn port_vlans(&self, index: u32) -> Result<Vec<PortVlan>> {
        Ok(self
            .vlan_tables()
            .await?
            .into_iter()
            .find(|t| t.index == index)
            .map(|t| t.vlans)
            .unwrap_or_default())
    }

    /// `ip link set NAME master BR` (`Some(bridge index)`) or `nomaster` (`None`).
    pub async fn set_master(&self, index: u32, name: &str, master: Option<u32>) -> Result<()> {
        self.kernel.set_master(index, name, master).await
    }
}

/// The errno of an rtnetlink error.
fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => match msg.code {
            Some(code) => io::Error::from_raw_os_error(-code.get()),
            None => io::Error::other("netlink ack without error"),
        },
        other => io::Error::other(other.to_string()),
    }
}

/// A kernel error, or [`Error::Unsupported`] when it answered `EOPNOTSUPP`.
fn vlan_err(op: &'static str, name: &str, e: rtnetlink::Error) -> Error {
    let e = to_io(e);
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return Error::Unsupported {
            what: NO_VLAN_FILTERING.to_string(),
            source: e,
        };
    }
    Error::netlink(op, name, e)
}

/// The `AF_BRIDGE` message of one port VLAN (for `RTM_SETLINK` or `RTM_DELLINK`).
pub(super) fn vlan_message(index: u32, vlan: PortVlan) -> LinkMessage {
    let mut flags = BridgeVlanInfoFlags::empty();
    if vlan.pvid {
        flags |= BridgeVlanInfoFlags::Pvid;
    }
    if vlan.untagged {
        flags |= BridgeVlanInfoFlags::Untagged;
    }
    let msg = LinkBridgeVlan::new(index).vlan(vlan.vid, flags).build();
    debug_assert_eq!(msg.header.interface_family, AddressFamily::Bridge);
    msg
}

/// The filtering state in a bridge's link message (see the module docs).
pub(super) fn filtering_of(msg: &LinkMessage) -> Option<VlanFiltering> {
    use rtnetlink::packet_route::link::LinkInfo as Info;
    let (mut on, mut pvid) = (false, None);
    for a in &msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos {
                if let Info::Data(InfoData::Bridge(v)) = i {
                    for b in v {
                        match b {
                            InfoBridge::VlanFiltering(f) => on = *f,
                            InfoBridge::VlanDefaultPvid(p) => pvid = Some(*p),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    pvid.map(|default_pvid| VlanFiltering { on, default_pvid })
}

/// The VLAN table in one message of an `AF_BRIDGE` dump.
pub(super) fn table_of(msg: &LinkMessage) -> VlanTable {
    let mut t = VlanTable {
        index: msg.header.index,
        controller: None,
        vlans: Vec::new(),
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::Controller(c) => t.controller = Some(*c),
            LinkAttribute::AfSpecBridge(specs) => {
                for s in specs {
                    if let AfSpecBridge::VlanInfo(v) = s {
                        t.vlans.push(PortVlan {
                            vid: v.vid,
                            pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                            untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    t.vlans.sort();
    t
}

/// [`super::Kernel::vlan_filtering`] over rtnetlink.
pub(super) async fn rt_vlan_filtering(
    handle: &rtnetlink::Handle,
    bridge: u32,
) -> Result<Option<VlanFiltering>> {
    let mut s = handle.link().get().match_index(bridge).execute();
    match s.try_next().await {
        Ok(Some(m)) => Ok(filtering_of(&m)),
        Ok(None) => Ok(None),
        Err(e) => Err(Error::netlink(
            "get bridge vlan filtering",
            bridge.to_string(),
            to_io(e),
        )),
    }
}

/// [`super::Kernel::set_vlan_filtering`] over rtnetlink.
pub(super) async fn rt_set_vlan_filtering(
    handle: &rtnetlink::Handle,
    name: &str,
    on: bool,
) -> Result<()> {
    let msg = rtnetlink::LinkBridge::new(name).vlan_filtering(on).build();
    handle
        .link()
        .change(msg)
        .execute()
        .await
        .map_err(|e| vlan_err("set bridge vlan_filtering", name, e))
}

/// [`super::Kernel::port_vlan`] over rtnetlink.
pub(super) async fn rt_port_vlan(
    handle: &rtnetlink::Handle,
    op: VlanOp,
    req: &PortVlanRequest,
) -> Result<()> {
    let msg = vlan_message(req.index, req.vlan);
    let what = format!("{} on {}", req.vlan, req.name);
    match op {
        VlanOp::Add => handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| vlan_err("add bridge vlan", &what, e)),
        VlanOp::Delete => match handle.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(()),
            // The VLAN (or the port) is gone already.
            Err(e) if matches!(to_io_ref(&e), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
            Err(e) => Err(vlan_err("delete bridge vlan", &what, e)),
        },
    }
}

fn to_io_ref(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// [`super::Kernel::vlan_tables`] over rtnetlink.
pub(super) async fn rt_vlan_tables(handle: &rtnetlink::Handle) -> Result<Vec<VlanTable>> {
    let msgs: Vec<LinkMessage> = handle
        .link()
        .get()
        .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
        .execute()
        .try_collect()
        .await
        .map_err(|e| Error::netlink("list bridge vlans", "", to_io(e)))?;
    Ok(msgs.iter().map(table_of).collect())
}

/// [`super::Kernel::set_master`] over rtnetlink.
pub(super) async fn rt_set_master(
    handle: &rtnetlink::Handle,
    index: u32,
    name: &str,
    master: Option<u32>,
) -> Result<()> {
    let b = rtnetlink::LinkUnspec::new_with_index(index);
    let (op, b) = match master {
        Some(m) => ("set master", b.controller(m)),
        None => ("set nomaster", b.nocontroller()),
    };
    handle
        .link()
        .set(b.build())
        .execute()
        .await
        .map_err(|e| Error::netlink(op, name, to_io(e)))
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::{Emitable, Nla};

    use super::*;

    /// An access VLAN is `AF_BRIDGE` + `IFLA_AF_SPEC` { `IFLA_BRIDGE_VLAN_INFO` flags
    /// PVID|UNTAGGED (0x6), vid } on the port's index: what `bridge vlan add … pvid untagged`
    /// sends.
    #[test]
    fn an_access_vlan_is_an_af_bridge_message_with_pvid_and_untagged() {
        let msg = vlan_message(7, PortVlan::access(10));
        assert_eq!(msg.header.interface_family, AddressFamily::Bridge);
        assert_eq!(msg.header.index, 7);
        let spec = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::AfSpecBridge(s) => Some(s.clone()),
                _ => None,
            })
            .expect("IFLA_AF_SPEC");
        assert_eq!(spec.len(), 1);
        assert_eq!(spec[0].kind(), 2, "IFLA_BRIDGE_VLAN_INFO");
        let mut buf = [0u8; 4];
        spec[0].emit_value(&mut buf);
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), 0x6, "PVID|UNTAGGED");
        assert_eq!(u16::from_ne_bytes([buf[2], buf[3]]), 10);
        // Nothing else: no link kind, no name (the message names the port by index only).
        assert_eq!(msg.attributes.len(), 1);
        let mut wire = vec![0u8; msg.buffer_len()];
        msg.emit(&mut wire);
        assert_eq!(wire[0], libc::AF_BRIDGE as u8);
        // A trunk's VLAN: no flags.
        let t = vlan_message(7, PortVlan::tagged(20));
        let Some(LinkAttribute::AfSpecBridge(s)) = t.attributes.first() else {
            panic!("{t:?}")
        };
        s[0].emit_value(&mut buf);
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), 0);
    }

    /// Read back: a table from a dump message, and filtering known only with a default PVID.
    #[test]
    fn tables_and_filtering_read_back() {
        let mut m = vlan_message(9, PortVlan::access(10));
        m.attributes.push(LinkAttribute::Controller(3));
        let t = table_of(&m);
        assert_eq!(t.index, 9);
        assert_eq!(t.controller, Some(3));
        assert_eq!(t.vlans, vec![PortVlan::access(10)]);
        let no = rtnetlink::LinkBridge::new("br0")
            .vlan_filtering(false)
            .build();
        assert_eq!(
            filtering_of(&no),
            None,
            "no default PVID: no VLAN filtering"
        );
        let yes = rtnetlink::LinkBridge::new("br0")
            .vlan_filtering(true)
            .vlan_default_pvid(1)
            .build();
        assert_eq!(
            filtering_of(&yes),
            Some(VlanFiltering {
                on: true,
                default_pvid: 1
            })
        );
    }
}
