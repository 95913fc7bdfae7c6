//! The `overlay` driver (`docker network create -d overlay`): one L2 segment across hosts.
//!
//! On each host that has endpoints on the network: a bridge (`ov-` + 12 hex of the network id)
//! holding the subnet's gateway, and a VXLAN device (`vx-VNI`, `nolearning proxy`, local = this
//! host's VTEP) enslaved to it. Endpoints are veths on the bridge, exactly as on bridge networks
//! (this driver hands them to [`super::bridge::BridgeDriver`]). Every remote endpoint is a
//! static FDB entry on the VXLAN device (its MAC → its host's VTEP) plus a permanent neighbour
//! entry (its addresses → its MAC, answered locally by `proxy`), kept equal to the cluster store
//! by [`NetworkDriver::sync_peers`] (see [`crate::cluster::agent`]). No flooding crosses hosts:
//! there is no all-zero FDB entry, so broadcasts and unknown unicast stay on their host.
//!
//! Every host's bridge holds the same gateway address: a container's traffic to the outside
//! goes through its own host (masqueraded there), and `-p` publishes on its own host. The
//! gateway's ARP is answered by the local bridge only, since broadcasts do not cross hosts.
//!
//! Devices exist on a host only while it has endpoints on the network: the first attach makes
//! them, the last detach removes them.

use std::net::IpAddr;

use async_trait::async_trait;

use super::bridge::BridgeDriver;
use super::{
    DriverContext, EndpointPlan, EndpointResources, NetworkDriver, NetworkResources, Peer,
    PeerSync, Scope,
};
use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::firewall::{EspVxlan, NetworkRules};
use crate::link_marks;
use crate::mac::MacAddr;
use crate::netlink::{FdbEntry, NeighbourEntry};
use crate::network::NetworkInfo;
use crate::options::{BridgeOptions, DriverKind, OverlayOptions};

/// What VXLAN adds to an IPv4 underlay packet (outer IPv4 + UDP + VXLAN + inner Ethernet).
pub const VXLAN_OVERHEAD_V4: u32 = 50;
/// The same over an IPv6 underlay.
pub const VXLAN_OVERHEAD_V6: u32 = 70;
/// What ESP in transport mode adds on top on an encrypted network, at most: SPI and sequence
/// number (8), the explicit IV of `rfc4106(gcm(aes))` (8), up to 3 bytes of padding, the pad
/// length and next header (2) and the 16-byte ICV — 37, rounded up to 40.
pub const ESP_OVERHEAD: u32 = 40;

/// See the module docs; bound to the network's options.
#[derive(Debug, Clone, Copy)]
pub struct OverlayDriver<'a>(pub &'a OverlayOptions);

/// The bridge of an overlay network on a host.
pub fn bridge_name(net: &NetworkInfo) -> String {
    format!("ov-{}", &net.id[..12.min(net.id.len())])
}

/// The VXLAN device of an overlay network on a host.
pub fn vxlan_name(vni: u32) -> String {
    format!("vx-{vni}")
}

impl OverlayDriver<'_> {
    fn vni(&self, net: &NetworkInfo) -> Result<u32> {
        self.0.vni.ok_or_else(|| {
            Error::invalid("network record", &net.name, "overlay network without a VNI")
        })
    }

    /// The bridge options the endpoints' veths are made with: ICC on, no anti-spoofing, the
    /// bridge named by [`bridge_name`].
    fn bridge_options(net: &NetworkInfo) -> BridgeOptions {
        BridgeOptions {
            bridge_name: Some(bridge_name(net)),
            ..BridgeOptions::default()
        }
    }

    /// Makes the bridge and the VXLAN device if they are missing.
    async fn ensure_devices(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()> {
        let vni = self.vni(net)?;
        let underlay = ctx.underlay.ok_or_else(|| Error::NoCluster {
            network: net.name.clone(),
            driver: "overlay",
        })?;
        let br = bridge_name(net);
        let vx = vxlan_name(vni);
        let bridge = match ctx.host.link_by_name(&br).await? {
            Some(l) => l,
            None => {
                let opts = Self::bridge_options(net);
                BridgeDriver(&opts).create_network(ctx, net).await?;
                ctx.host.require_link(&br).await?
            }
        };
        if ctx.host.link_by_name(&vx).await?.is_some() {
            return Ok(());
        }
        let dev = underlay_link(ctx, underlay.vtep).await?;
        let made = ctx
            .host
            .link()
            .vxlan(&vx, vni, underlay.vtep)
            .underlay(dev)
            .port(self.0.port.unwrap_or(underlay.port))
            .mtu(net.mtu)
            .master(bridge.index)
            .group(link_marks::LOWER)
            .mac(MacAddr::random())
            .add()
            .await;
        if let Err(e) = made {
            let _ = ctx.host.delete_link(&br).await;
            return Err(e);
        }
        Ok(())
    }

    /// Removes the devices when no endpoint is left on the bridge.
    async fn remove_if_unused(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()> {
        let br = bridge_name(net);
        let Some(bridge) = ctx.host.link_by_name(&br).await? else {
            return Ok(());
        };
        let vx = vxlan_name(self.vni(net)?);
        let ports = ctx
            .host
            .links()
            .await?
            .into_iter()
            .filter(|l| l.controller == Some(bridge.index) && l.name != vx)
            .count();
        if ports == 0 {
            ctx.host.delete_link(&vx).await?;
            ctx.host.delete_link(&br).await?;
        }
        Ok(())
    }
}

/// The ifindex of the link holding `vtep` in the host netns.
async fn underlay_link(ctx: DriverContext<'_>, vtep: IpAddr) -> Result<u32> {
    ctx.host
        .addresses(None)
        .await?
        .into_iter()
        .find(|(_, ip, _)| *ip == vtep)
        .map(|(i, _, _)| i)
        .ok_or_else(|| {
            Error::invalid(
                "cluster advertise address",
                vtep,
                "no link of the host netns has this address",
            )
        })
}

#[async_trait]
impl NetworkDriver for OverlayDriver<'_> {
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
    }

    fn uses_ipam(&self) -> bool {
        true
    }

    fn scope(&self) -> Scope {
        Scope::Global
    }

    fn serves_dns(&self) -> bool {
        true
    }

    fn firewall_rules(&self, net: &NetworkInfo) -> Option<NetworkRules> {
        Some(NetworkRules {
            name: net.name.clone(),
            bridge: net.device.clone()?,
            subnets: net.subnets.iter().map(|s| s.subnet).collect(),
            masquerade: !net.internal,
            internal: net.internal,
            allow_direct_access: false,
            outbound_ipv4: None,
            icc: true,
            anti_spoofing: false,
            encrypted: self.0.encrypted.then(|| EspVxlan {
                port: self.0.port.unwrap_or(crate::cluster::VXLAN_PORT),
                vni: self.0.vni.unwrap_or_default(),
            }),
        })
    }

    fn host_links(&self, net: &NetworkInfo) -> Vec<String> {
        let mut v: Vec<String> = net.device.iter().cloned().collect();
        v.extend(self.0.vni.map(vxlan_name));
        v
    }

    fn endpoint_ports_of(&self, net: &NetworkInfo) -> Option<String> {
        net.device.clone()
    }

    /// Nothing is made in the kernel (devices come with the first endpoint); the MTU is the
    /// underlay link's less the VXLAN overhead unless the network names one.
    async fn create_network(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
    ) -> Result<NetworkResources> {
        self.vni(net)?;
        let mtu = match (net.mtu, ctx.underlay) {
            (0, Some(u)) => {
                let dev = underlay_link(ctx, u.vtep).await?;
                let link_mtu = ctx
                    .host
                    .link_by_index(dev)
                    .await?
                    .and_then(|l| l.mtu)
                    .unwrap_or(1500);
                let overhead = if u.vtep.is_ipv6() {
                    VXLAN_OVERHEAD_V6
                } else {
                    VXLAN_OVERHEAD_V4
                };
                let esp = if self.0.encrypted { ESP_OVERHEAD } else { 0 };
                link_mtu.saturating_sub(overhead + esp)
            }
            (0, None) if self.0.encrypted => 1500 - VXLAN_OVERHEAD_V4 - ESP_OVERHEAD,
            (0, None) => 1500 - VXLAN_OVERHEAD_V4,
            (m, _) => m,
        };
        Ok(NetworkResources {
            device: Some(bridge_name(net)),
            mtu,
            adopted: None,
        })
    }

    async fn delete_network(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()> {
        if let Some(v) = self.0.vni {
            ctx.host.delete_link(&vxlan_name(v)).await?;
        }
        ctx.host.delete_link(&bridge_name(net)).await.map(drop)
    }

    async fn attach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        ep: &EndpointPlan<'_>,
    ) -> Result<EndpointResources> {
        self.ensure_devices(ctx, net).await?;
        let opts = Self::bridge_options(net);
        match BridgeDriver(&opts).attach(ctx, net, ep).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = self.remove_if_unused(ctx, net).await;
                Err(e)
            }
        }
    }

    async fn detach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<()> {
        let opts = Self::bridge_options(net);
        BridgeDriver(&opts).detach(ctx, net, att).await?;
        self.remove_if_unused(ctx, net).await
    }

    async fn check(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<Vec<String>> {
        let opts = Self::bridge_options(net);
        let mut missing = BridgeDriver(&opts).check(ctx, net, att).await?;
        let vx = vxlan_name(self.vni(net)?);
        if ctx.host.link_by_name(&vx).await?.is_none() {
            missing.push(format!("vxlan {vx}"));
        }
        Ok(missing)
    }

    /// Makes the VXLAN device's FDB and neighbour entries exactly `peers`: adds the missing,
    /// replaces the changed, removes the stray (also entries an admin removed or added).
    async fn sync_peers(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<PeerSync> {
        let vx = vxlan_name(self.vni(net)?);
        let mut out = PeerSync::default();
        let Some(link) = ctx.host.link_by_name(&vx).await? else {
            return Ok(out);
        };
        let (want_fdb, want_neigh) = wanted(link.index, &vx, peers);
        let have_fdb = ctx.host.fdb(link.index).await?;
        for e in &have_fdb {
            if !want_fdb.contains(e) {
                ctx.host.del_fdb(e.index, &e.name, e.mac, e.dst).await?;
                out.removed += 1;
            }
        }
        for e in &want_fdb {
            if !have_fdb.contains(e) {
                ctx.host.replace_fdb(e.index, &e.name, e.mac, e.dst).await?;
                out.added += 1;
            }
        }
        let have_neigh = ctx.host.neighbours(link.index).await?;
        for e in &have_neigh {
            if !want_neigh.contains(e) {
                ctx.host.del_neighbour(link.index, &vx, e.addr).await?;
                out.removed += 1;
            }
        }
        for e in &want_neigh {
            if !have_neigh.contains(e) {
                ctx.host
                    .replace_neighbour(e.index, &e.name, e.addr, e.mac)
                    .await?;
                out.added += 1;
            }
        }
        Ok(out)
    }

    async fn add_peers(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<PeerSync> {
        let vx = vxlan_name(self.vni(net)?);
        let mut out = PeerSync::default();
        let Some(link) = ctx.host.link_by_name(&vx).await? else {
            return Ok(out);
        };
        let (fdb, neigh) = wanted(link.index, &vx, peers);
        // Neighbours first: the FDB entry makes frames flow, the neighbour entry lets the
        // proxy answer the ARP/ND that precedes them.
        for e in &neigh {
            ctx.host
                .replace_neighbour(e.index, &e.name, e.addr, e.mac)
                .await?;
            out.added += 1;
        }
        for e in &fdb {
            ctx.host.replace_fdb(e.index, &e.name, e.mac, e.dst).await?;
            out.added += 1;
        }
        Ok(out)
    }

    async fn check_peers(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<Vec<String>> {
        let vx = vxlan_name(self.vni(net)?);
        let Some(link) = ctx.host.link_by_name(&vx).await? else {
            // No endpoint here: nothing to forward (`check` names the device if one should
            // be there).
            return Ok(Vec::new());
        };
        let (want_fdb, want_neigh) = wanted(link.index, &vx, peers);
        let have_fdb = ctx.host.fdb(link.index).await?;
        let have_neigh = ctx.host.neighbours(link.index).await?;
        let mut v = Vec::new();
        for e in want_fdb.iter().filter(|e| !have_fdb.contains(e)) {
            v.push(format!("fdb entry {} dst {} on {vx}", e.mac, e.dst));
        }
        for e in want_neigh.iter().filter(|e| !have_neigh.contains(e)) {
            v.push(format!("neighbour {} lladdr {} on {vx}", e.addr, e.mac));
        }
        for e in have_fdb.iter().filter(|e| !want_fdb.contains(e)) {
            v.push(format!("stray fdb entry {} dst {} on {vx}", e.mac, e.dst));
        }
        Ok(v)
    }
}

/// The FDB and neighbour entries that forward to `peers` on VXLAN device `index`.
fn wanted(index: u32, vx: &str, peers: &[Peer]) -> (Vec<FdbEntry>, Vec<NeighbourEntry>) {
    let fdb = peers
        .iter()
        .map(|p| FdbEntry {
            index,
            name: vx.to_string(),
            mac: p.mac,
            dst: p.vtep,
        })
        .collect();
    let neigh = peers
        .iter()
        .flat_map(|p| {
            p.addresses.iter().map(|ip| NeighbourEntry {
                index,
                name: vx.to_string(),
                addr: *ip,
                mac: p.mac,
            })
        })
        .collect();
    (fdb, neigh)
}
