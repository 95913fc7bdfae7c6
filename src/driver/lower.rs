//! The "lower device" of macvlan and ipvlan networks: finding or making the parent link, and
//! removing it with the last network that uses it — only if berth made it.
//!
//! Links berth makes for this (802.1q sub-interfaces for `BASE.ID` parents, dummies for networks
//! without a parent, macvlan shims) carry the `ifalias` [`OWNED_ALIAS`]: ownership lives on the
//! link itself, so any process over any state dir can tell a link berth made from one the admin
//! made, and nothing else needs recording.

use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::netlink::LinkInfo;
use crate::netns::Netns;
use crate::network::NetworkInfo;
use crate::options::Parent;

use super::DriverContext;

/// `ifalias` of links berth created and may delete.
pub const OWNED_ALIAS: &str = "berth-owned";

/// The dummy parent of a network without one: `dm-` + 8 hex digits of the network id.
pub fn dummy_name(net: &NetworkInfo) -> String {
    format!("dm-{}", &net.id[..8])
}

/// The parent link of `net` (named, `BASE.ID`, or the network's dummy), created when missing
/// and creatable, and up.
pub async fn ensure_parent(
    ctx: DriverContext<'_>,
    net: &NetworkInfo,
    parent: &Parent,
) -> Result<LinkInfo> {
    let (name, vlan) = match parent {
        Parent::Dummy => {
            let name = dummy_name(net);
            return match ctx.host.link_by_name(&name).await? {
                Some(l) => Ok(l),
                None => ctx.host.link().dummy(&name).alias(OWNED_ALIAS).add().await,
            };
        }
        Parent::Link(name) => (name.clone(), None),
        Parent::Vlan { base, id } => (format!("{base}.{id}"), Some((base, *id))),
    };
    if let Some(l) = ctx.host.link_by_name(&name).await? {
        if l.is_loopback || !l.is_ether {
            return Err(Error::invalid(
                "parent",
                &name,
                if l.is_loopback {
                    "is the loopback device: a parent must be an Ethernet link"
                } else {
                    "is not an Ethernet link"
                },
            ));
        }
        if !l.up {
            ctx.host.link().set(l.index, &name).up().apply().await?;
        }
        return Ok(l);
    }
    let Some((base, id)) = vlan else {
        return Err(Error::ParentNotFound { parent: name });
    };
    let b = ctx
        .host
        .link_by_name(base)
        .await?
        .ok_or_else(|| Error::ParentNotFound {
            parent: base.clone(),
        })?;
    ctx.host
        .link()
        .vlan(&name, b.index, id)
        .alias(OWNED_ALIAS)
        .add()
        .await
}

/// Deletes the network's parent if berth made it and no other network uses it. `ctx.networks`
/// must list the other networks.
pub async fn release_parent(ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()> {
    let Some(parent) = net.device.as_deref() else {
        return Ok(());
    };
    let shared = ctx
        .networks
        .iter()
        .any(|n| n.name != net.name && n.device.as_deref() == Some(parent));
    match ctx.host.link_by_name(parent).await? {
        Some(l) if l.alias.as_deref() == Some(OWNED_ALIAS) && !shared => {
            ctx.host.delete_link(parent).await.map(|_| ())
        }
        _ => Ok(()),
    }
}

/// MTU of a lower-device network: explicit, else the parent's.
pub fn mtu(net: &NetworkInfo, parent: &LinkInfo) -> u32 {
    match net.mtu {
        0 => parent.mtu.unwrap_or(1500),
        m => m,
    }
}

/// Removes an endpoint's interface inside its container netns, if that netns still exists (the
/// interface dies with the netns otherwise). Needs the netns path the attach recorded.
pub async fn delete_in_container(ctx: DriverContext<'_>, att: &Attachment) -> Result<()> {
    let Some(path) = &att.netns else {
        return Ok(());
    };
    let Ok(ns) = Netns::from_path(path) else {
        return Ok(());
    };
    ctx.kernel
        .open(&ns)
        .await?
        .delete_link(&att.ifname)
        .await
        .map(|_| ())
}

/// What of a lower-device endpoint is missing on the host side: the parent.
pub async fn check_endpoint(ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    let parent = net.device.as_deref().unwrap_or_default();
    if ctx.host.link_by_name(parent).await?.is_none() {
        missing.push(format!("parent {parent}"));
    }
    // The container side (the interface, its addresses, routes) is `Host::check`'s, for every
    // driver.
    Ok(missing)
}
