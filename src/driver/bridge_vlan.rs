//! VLAN-tagged endpoints of the bridge driver (`connect --vlan ID`; pipework's `MAC@VLAN`, CNI
//! bridge's `vlan`/`vlanTrunk`) and the trunk (`-o parent=IF`).
//!
//! What the kernel holds:
//! - The network's bridge filters by VLAN (`vlan_filtering 1`) from the first VLAN endpoint
//!   on; on a bridge berth made it is turned off again when the last one leaves (an admin's
//!   bridge keeps what it had: berth never turns its filtering off). Every port without a VLAN
//!   of berth's (the endpoints without one, the bridge itself with the gateway) is in the
//!   bridge's default VLAN (1), PVID and untagged, as the kernel made it: filtering changes
//!   nothing for them.
//! - A VLAN endpoint's port (the host end of its veth) is an access port: its VLAN as PVID,
//!   untagged, and nothing else (the default VLAN is removed from it). It goes with the veth.
//! - The trunk, when the network has one, carries the default VLAN untagged (as the kernel
//!   made it) and each VLAN some endpoint port of the bridge has, tagged; a VLAN leaves it when
//!   its last endpoint leaves (read back from the bridge's ports, so gc after a crash can tell
//!   too, see `NetworkDriver::reconcile`; on an admin's bridge, whose trunk may carry VLANs of
//!   the admin's, gc leaves a dead attach's VLAN there: only a detach, knowing its VLAN, takes
//!   one off).
//!
//! The semantic: VLAN endpoints are their own L2 segments (the endpoints of one VLAN, and the
//! trunk, tagged). The host's bridge, with the gateway address, is in the default VLAN only,
//! so a VLAN endpoint's gateway address must be answered by a router on its VLAN across the
//! trunk (as on a LAN whose router has an interface in each VLAN); the host's gateway,
//! masquerading, published ports and the embedded resolver serve the untagged endpoints.

use super::DriverContext;
use crate::error::{Error, Result};
use crate::link_marks;
use crate::netlink::bridge_vlan::NO_VLAN_FILTERING;
use crate::netlink::{LinkInfo, PortVlan, VlanFiltering};
use crate::network::NetworkInfo;
use crate::options::BridgeOptions;

fn unsupported() -> Error {
    Error::Unsupported {
        what: NO_VLAN_FILTERING.to_string(),
        source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
    }
}

/// The bridge's filtering, or [`Error::Unsupported`] when the kernel has none.
async fn filtering(ctx: DriverContext<'_>, bridge: &LinkInfo) -> Result<VlanFiltering> {
    ctx.host
        .vlan_filtering(bridge.index)
        .await?
        .ok_or_else(unsupported)
}

/// Whether an endpoint of `net` can be in a VLAN here: the bridge exists and the kernel has
/// VLAN filtering (read, nothing changed), and the trunk, if any, is in place.
pub(super) async fn check_vlan(
    ctx: DriverContext<'_>,
    o: &BridgeOptions,
    net: &NetworkInfo,
) -> Result<()> {
    let bridge = ctx.host.require_link(super::bridge::device(net)?).await?;
    filtering(ctx, &bridge).await?;
    trunk(ctx, o, &bridge).await.map(drop)
}

/// The trunk of a network that has one: it must exist and be a port of the bridge.
async fn trunk(
    ctx: DriverContext<'_>,
    o: &BridgeOptions,
    bridge: &LinkInfo,
) -> Result<Option<LinkInfo>> {
    let Some(p) = &o.parent else {
        return Ok(None);
    };
    let Some(l) = ctx.host.link_by_name(p).await? else {
        return Err(Error::ParentNotFound { parent: p.clone() });
    };
    if l.controller != Some(bridge.index) {
        return Err(Error::invalid(
            "parent",
            p,
            "is no longer a port of the network's bridge",
        ));
    }
    Ok(Some(l))
}

/// Makes `port` (a new endpoint's veth host end, its container end still down) an access port
/// of VLAN `vlan`: filtering on, the VLAN as PVID untagged, the default VLAN removed, the VLAN
/// tagged on the trunk. All or nothing: on failure what it changed is undone (the caller
/// deletes the port, which takes the port's VLANs with it).
pub(super) async fn configure_port(
    ctx: DriverContext<'_>,
    o: &BridgeOptions,
    bridge: &LinkInfo,
    port: &LinkInfo,
    vlan: u16,
) -> Result<()> {
    let f = filtering(ctx, bridge).await?;
    let trunk = trunk(ctx, o, bridge).await?;
    let mut turned_on = false;
    let trunk_had = match &trunk {
        Some(t) => ctx
            .host
            .port_vlans(t.index)
            .await?
            .iter()
            .any(|v| v.vid == vlan),
        None => false,
    };
    let r = async {
        if !f.on {
            ctx.host
                .set_vlan_filtering(bridge.index, &bridge.name, true)
                .await?;
            turned_on = true;
        }
        ctx.host
            .add_port_vlan(port.index, &port.name, PortVlan::access(vlan))
            .await?;
        if f.default_pvid != 0 && f.default_pvid != vlan {
            ctx.host
                .del_port_vlan(port.index, &port.name, f.default_pvid)
                .await?;
        }
        if let Some(t) = &trunk
            && !trunk_had
        {
            ctx.host
                .add_port_vlan(t.index, &t.name, PortVlan::tagged(vlan))
                .await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = r {
        if turned_on {
            let _ = ctx
                .host
                .set_vlan_filtering(bridge.index, &bridge.name, false)
                .await;
        }
        return Err(e);
    }
    Ok(())
}

/// After an endpoint of VLAN `Some(vlan)` left (its port is gone): the trunk drops that VLAN
/// if no other port of the bridge (nor the bridge itself) has it any more, and a bridge berth
/// made stops filtering when no port has a VLAN. What the other ports have is read back from
/// the kernel. With `None` (gc, after a dead attach whose VLAN no record names): every VLAN
/// of the trunk no other port has goes — on a bridge berth made only (an admin's trunk may
/// carry VLANs of the admin's; there a dead attach's VLAN stays).
pub(super) async fn release(
    ctx: DriverContext<'_>,
    o: &BridgeOptions,
    net: &NetworkInfo,
    only: Option<u16>,
) -> Result<usize> {
    let Some(name) = net.device.as_deref() else {
        return Ok(0);
    };
    let Some(bridge) = ctx.host.link_by_name(name).await? else {
        return Ok(0);
    };
    // Off (or none): no VLAN of berth's can be on the bridge.
    let Some(f) = ctx
        .host
        .vlan_filtering(bridge.index)
        .await?
        .filter(|f| f.on)
    else {
        return Ok(0);
    };
    let trunk = match &o.parent {
        Some(p) => ctx
            .host
            .link_by_name(p)
            .await?
            .filter(|l| l.controller == Some(bridge.index)),
        None => None,
    };
    let tables = ctx.host.vlan_tables().await?;
    // The VLANs every port but the trunk has (the bridge reports itself as its own master:
    // its own table counts too, as an admin's VLAN interface on it needs the trunk), default
    // VLAN aside.
    let used: Vec<u16> = tables
        .iter()
        .filter(|t| t.controller == Some(bridge.index))
        .filter(|t| trunk.as_ref().is_none_or(|tr| tr.index != t.index))
        .flat_map(|t| t.vlans.iter().map(|v| v.vid))
        .filter(|vid| *vid != f.default_pvid)
        .collect();
    let ours = bridge.group == link_marks::BRIDGE;
    let mut fixed = 0;
    if let Some(t) = trunk.as_ref().filter(|_| ours || only.is_some()) {
        let carried = tables
            .iter()
            .find(|tb| tb.index == t.index)
            .map(|tb| tb.vlans.clone())
            .unwrap_or_default();
        for v in carried {
            if v.vid != f.default_pvid
                && !v.pvid
                && !used.contains(&v.vid)
                && only.is_none_or(|o| o == v.vid)
            {
                ctx.host.del_port_vlan(t.index, &t.name, v.vid).await?;
                fixed += 1;
            }
        }
    }
    if f.on && used.is_empty() && ours {
        ctx.host
            .set_vlan_filtering(bridge.index, &bridge.name, false)
            .await?;
        fixed += 1;
    }
    Ok(fixed)
}

/// What of an endpoint's VLAN is not in place: the bridge filtering, its port an access port
/// of exactly its VLAN, the trunk carrying it tagged.
pub(super) async fn check(
    ctx: DriverContext<'_>,
    o: &BridgeOptions,
    bridge: &LinkInfo,
    port: Option<&LinkInfo>,
    vlan: u16,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    match ctx.host.vlan_filtering(bridge.index).await? {
        None => {
            missing.push(format!(
                "VLAN {vlan}: the kernel has no bridge VLAN filtering"
            ));
            return Ok(missing);
        }
        Some(f) if !f.on => missing.push(format!("vlan_filtering on bridge {}", bridge.name)),
        Some(_) => {}
    }
    if let Some(p) = port {
        let have = ctx.host.port_vlans(p.index).await?;
        if have != [PortVlan::access(vlan)] {
            let list: Vec<String> = have.iter().map(ToString::to_string).collect();
            missing.push(format!(
                "veth {} in VLAN {vlan} only (pvid untagged), has [{}]",
                p.name,
                list.join(", ")
            ));
        }
    }
    if let Some(t) = &o.parent {
        match ctx.host.link_by_name(t).await? {
            Some(l) if l.controller == Some(bridge.index) => {
                let have = ctx.host.port_vlans(l.index).await?;
                if !have.contains(&PortVlan::tagged(vlan)) {
                    missing.push(format!("VLAN {vlan} tagged on trunk {t}"));
                }
            }
            _ => {}
        }
    }
    Ok(missing)
}

/// A new network's trunk: `parent` must exist, be no bridge, no other network's trunk, and on
/// a bridge berth makes be a port of no bridge (berth enslaves it, [`attach_trunk`]); on an
/// admin's bridge it must be a port of that bridge already (as the admin's NIC is: berth does
/// not move it).
pub(super) async fn check_trunk(
    ctx: DriverContext<'_>,
    net: &NetworkInfo,
    parent: &str,
    bridge: &str,
    admins: Option<&LinkInfo>,
) -> Result<LinkInfo> {
    if let Some(n) = ctx.networks.iter().find(|n| {
        n.name != net.name
            && matches!(&n.driver, crate::options::DriverOptions::Bridge(b)
                if b.parent.as_deref() == Some(parent))
    }) {
        return Err(Error::InterfaceInUse {
            ifname: parent.to_string(),
            network: n.name.clone(),
        });
    }
    let Some(l) = ctx.host.link_by_name(parent).await? else {
        return Err(Error::ParentNotFound {
            parent: parent.to_string(),
        });
    };
    if l.is_bridge || l.is_loopback || !l.is_ether {
        return Err(Error::invalid(
            "parent",
            parent,
            "a trunk is an Ethernet link (not a bridge or loopback)",
        ));
    }
    match (admins, l.controller) {
        (Some(b), Some(c)) if c == b.index => Ok(l),
        (Some(_), _) => Err(Error::invalid(
            "parent",
            parent,
            "on an admin's bridge the trunk must be a port of it already",
        )),
        (None, Some(_)) => Err(Error::invalid(
            "parent",
            parent,
            "is a port of another bridge",
        )),
        (None, None) if l.name == bridge => {
            Err(Error::invalid("parent", parent, "is the network's bridge"))
        }
        (None, None) => Ok(l),
    }
}

/// `ip link set PARENT master BR up`.
pub(super) async fn attach_trunk(
    ctx: DriverContext<'_>,
    trunk: &LinkInfo,
    bridge: &LinkInfo,
) -> Result<()> {
    ctx.host
        .set_master(trunk.index, &trunk.name, Some(bridge.index))
        .await?;
    let up = ctx
        .host
        .link()
        .set(trunk.index, &trunk.name)
        .up()
        .apply()
        .await;
    if let Err(e) = up {
        let _ = ctx.host.set_master(trunk.index, &trunk.name, None).await;
        return Err(e);
    }
    Ok(())
}

/// `ip link set PARENT nomaster` when it is still a port of bridge `bridge` (left up).
pub(super) async fn release_trunk(
    ctx: DriverContext<'_>,
    parent: &str,
    bridge: &LinkInfo,
) -> Result<()> {
    match ctx.host.link_by_name(parent).await? {
        Some(l) if l.controller == Some(bridge.index) => {
            ctx.host.set_master(l.index, &l.name, None).await
        }
        _ => Ok(()),
    }
}
