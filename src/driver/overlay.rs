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
//!
//! **Over GRE** (`encap=gre`, [`OverlayEncap::Gre`]) there is no VXLAN device: the bridge has
//! one gretap port per remote host (a distinct VTEP among the peers), named by
//! [`gre_port_name`] (`g` + 6 hex digits of the VNI + 8 of the remote VTEP), from this host's
//! VTEP to that one with GRE key = the VNI both ways (several networks between the same two
//! hosts stay apart), TTL 64, in device group [`link_marks::LOWER`]. Where a frame goes is what
//! the bridge learns, as on any bridge; broadcasts and unknown unicast flood to every tunnel
//! port once. The tunnel ports are **isolated** (split horizon: a frame that came in by one
//! tunnel never leaves by another, so a full mesh cannot loop) and **suppress neighbour
//! discovery** (`neigh_suppress`: the ARP/ND of a container for the gateway address, which every
//! host's bridge holds, and duplicate-address probes stay on their host). Every host's bridge of
//! the network has one MAC, [`gre_bridge_mac`], derived from the network id: the ARP requests a
//! host itself floods through the tunnels then cannot point another host's containers at it
//! as their gateway; the bridge generates no IPv6 link-local address (`addr_gen_mode` none:
//! with one MAC, it would be every host's). [`NetworkDriver::sync_peers`] keeps the tunnel
//! ports equal to the peers' VTEPs. The MTU is the underlay's less 42 bytes (20 outer IPv4 +
//! 4 GRE + 4 key + 14 inner Ethernet), 62 over an IPv6 underlay (ip6gretap without the
//! encapsulation-limit option).

use std::collections::BTreeMap;
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
use crate::netlink::{
    FdbEntry, GRE_OVERHEAD_V4, GRE_OVERHEAD_V6, LinkInfo, NeighSuppress, NeighbourEntry,
    PortIsolation, ProbeKind,
};
use crate::network::NetworkInfo;
use crate::options::{BridgeOptions, DriverKind, OverlayEncap, OverlayOptions};

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

/// The gretap port of a GRE overlay network (VNI `vni`) towards the host at `remote`: `g`, the
/// VNI in 6 hex digits, then 8 hex digits of the remote VTEP — an IPv4 address itself
/// (`g0010000a630102`: VNI 4096 to 10.99.1.2), an IPv6 one hashed (FNV-1a, 32 bits) — 15
/// characters, the most a link name has.
pub fn gre_port_name(vni: u32, remote: IpAddr) -> String {
    let tag = match remote {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => a.octets().iter().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        }),
    };
    format!("g{vni:06x}{tag:08x}")
}

/// Whether `name` is a gretap port of the GRE overlay network with `vni` (see
/// [`gre_port_name`]).
pub fn is_gre_port(vni: u32, name: &str) -> bool {
    name.len() == 15
        && name.starts_with(&format!("g{vni:06x}"))
        && name[7..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The MAC of a GRE overlay network's bridge, the same on every host: derived from the network
/// id (FNV-1a, 64 bits), unicast and locally administered. Every host's bridge holds the
/// gateway address, and the ARP requests and neighbour solicitations a host's bridge sends
/// flood through the tunnels to the other hosts' containers, whose kernels take the sender's
/// MAC for the gateway's: with one MAC, that changes nothing, and each container's traffic to
/// the gateway still stops at its own host's bridge.
pub fn gre_bridge_mac(net: &NetworkInfo) -> MacAddr {
    let h = net.id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut m: [u8; 6] = h.to_be_bytes()[..6]
        .try_into()
        .unwrap_or([2, 0, 0, 0, 0, 1]);
    m[0] = (m[0] & 0xfe) | 0x02;
    MacAddr(m)
}

/// The tunnel ports a GRE overlay network needs on a host at `local` for `peers`: name →
/// remote VTEP, one per distinct VTEP (never `local`). Two VTEPs whose port names collide
/// (IPv6 ones hashed alike) are refused.
fn gre_ports(vni: u32, local: IpAddr, peers: &[Peer]) -> Result<BTreeMap<String, IpAddr>> {
    let mut out = BTreeMap::new();
    for p in peers.iter().filter(|p| p.vtep != local) {
        if p.vtep.is_ipv6() != local.is_ipv6() {
            return Err(Error::invalid(
                "peer VTEP",
                p.vtep,
                "not of this host's VTEP's address family",
            ));
        }
        let name = gre_port_name(vni, p.vtep);
        match out.insert(name, p.vtep) {
            Some(other) if other != p.vtep => {
                return Err(Error::invalid(
                    "peer VTEP",
                    p.vtep,
                    "its GRE port name is another VTEP's (IPv6 addresses hashed alike)",
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Whether a GRE port of the network is as [`OverlayDriver`] makes it: on the bridge, up.
fn gre_port_ok(l: &LinkInfo, bridge: u32) -> bool {
    l.controller == Some(bridge) && l.up
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
        let (bridge, made) = match ctx.host.link_by_name(&br).await? {
            Some(l) => (l, false),
            None => {
                let opts = Self::bridge_options(net);
                BridgeDriver(&opts).create_network(ctx, net).await?;
                (ctx.host.require_link(&br).await?, true)
            }
        };
        if self.0.encap == OverlayEncap::Gre {
            // The tunnel ports come with the peers (`sync_peers`); the bridge's MAC is the
            // network's (see `gre_bridge_mac`), and it makes no IPv6 link-local address (it
            // would be every host's, derived from that MAC: its duplicate-address detection,
            // router solicitations and MLD reports would cross the tunnels). Set before it has
            // a port, hence a carrier, hence an address.
            let mac = gre_bridge_mac(net);
            let set = async {
                if made {
                    let key = format!("net/ipv6/conf/{br}/addr_gen_mode");
                    ctx.host.write_sysctl(&key, "1").await?;
                }
                if bridge.mac.as_deref() != Some(&mac.octets()[..]) {
                    ctx.host
                        .link()
                        .set(bridge.index, &br)
                        .mac(mac)
                        .apply()
                        .await?;
                }
                Ok::<_, Error>(())
            };
            if let Err(e) = set.await {
                let _ = ctx.host.delete_link(&br).await;
                return Err(e);
            }
            return Ok(());
        }
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
        let vni = self.vni(net)?;
        let ports = ctx
            .host
            .links()
            .await?
            .into_iter()
            .filter(|l| l.controller == Some(bridge.index) && !self.is_tunnel(vni, &l.name))
            .count();
        if ports == 0 {
            self.delete_tunnels(ctx, vni).await?;
            ctx.host.delete_link(&br).await?;
        }
        Ok(())
    }

    /// Whether `name` is one of the network's tunnel devices (the VXLAN device, or a gretap
    /// port).
    fn is_tunnel(&self, vni: u32, name: &str) -> bool {
        match self.0.encap {
            OverlayEncap::Vxlan => name == vxlan_name(vni),
            OverlayEncap::Gre => is_gre_port(vni, name),
        }
    }

    /// Deletes the network's tunnel devices on this host.
    async fn delete_tunnels(&self, ctx: DriverContext<'_>, vni: u32) -> Result<()> {
        match self.0.encap {
            OverlayEncap::Vxlan => ctx.host.delete_link(&vxlan_name(vni)).await.map(drop),
            OverlayEncap::Gre => {
                for l in ctx.host.links().await? {
                    if is_gre_port(vni, &l.name) {
                        ctx.host.delete_link(&l.name).await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes the bridge's gretap ports those `peers` need: adds the missing and, with
    /// `remove_stray`, removes the others and remakes the broken (off the bridge, or down).
    async fn sync_gre_ports(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
        remove_stray: bool,
    ) -> Result<PeerSync> {
        let vni = self.vni(net)?;
        let mut out = PeerSync::default();
        let Some(bridge) = ctx.host.link_by_name(&bridge_name(net)).await? else {
            return Ok(out);
        };
        let underlay = ctx.underlay.ok_or_else(|| Error::NoCluster {
            network: net.name.clone(),
            driver: "overlay",
        })?;
        let want = gre_ports(vni, underlay.vtep, peers)?;
        let mut have = Vec::new();
        for l in ctx.host.links().await? {
            if !is_gre_port(vni, &l.name) {
                continue;
            }
            let stray = !want.contains_key(&l.name) || !gre_port_ok(&l, bridge.index);
            if remove_stray && stray {
                ctx.host.delete_link(&l.name).await?;
                out.removed += 1;
            } else {
                have.push(l.name);
            }
        }
        let missing: Vec<_> = want.iter().filter(|(n, _)| !have.contains(n)).collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let dev = underlay_link(ctx, underlay.vtep).await?;
        for (name, remote) in missing {
            ctx.host
                .link()
                .gretap(name, underlay.vtep, *remote, vni)
                .underlay(dev)
                .mtu(net.mtu)
                .master(bridge.index)
                .group(link_marks::LOWER)
                .isolation(PortIsolation::Isolated)
                .neigh_suppress(NeighSuppress::On)
                .add()
                .await?;
            out.added += 1;
        }
        Ok(out)
    }

    /// What of the gretap ports `peers` need is missing or stray (for `check`).
    async fn check_gre_ports(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<Vec<String>> {
        let vni = self.vni(net)?;
        let br = bridge_name(net);
        let Some(bridge) = ctx.host.link_by_name(&br).await? else {
            return Ok(Vec::new());
        };
        let Some(underlay) = ctx.underlay else {
            return Ok(Vec::new());
        };
        let want = gre_ports(vni, underlay.vtep, peers)?;
        let links = ctx.host.links().await?;
        let mut v = Vec::new();
        for (name, remote) in &want {
            match links.iter().find(|l| &l.name == name) {
                None => v.push(format!("gretap {name} to {remote} on {br}")),
                Some(l) if !gre_port_ok(l, bridge.index) => {
                    v.push(format!("gretap {name} to {remote} up on {br}"))
                }
                Some(_) => {}
            }
        }
        for l in links.iter().filter(|l| is_gre_port(vni, &l.name)) {
            if !want.contains_key(&l.name) {
                v.push(format!("stray gretap {}", l.name));
            }
        }
        Ok(v)
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
        if self.0.encap == OverlayEncap::Vxlan {
            v.extend(self.0.vni.map(vxlan_name));
        }
        v
    }

    /// A GRE network's tunnel ports (one per remote host: their names are not in the record).
    fn keeps_host_link(&self, net: &NetworkInfo, name: &str) -> bool {
        let _ = net;
        self.0.encap == OverlayEncap::Gre && self.0.vni.is_some_and(|v| is_gre_port(v, name))
    }

    fn endpoint_ports_of(&self, net: &NetworkInfo) -> Option<String> {
        net.device.clone()
    }

    /// Nothing is made in the kernel (devices come with the first endpoint); the MTU is the
    /// underlay link's less the encapsulation's overhead unless the network names one. Over
    /// GRE, a kernel without gretap (ip6gretap over an IPv6 underlay) is refused here
    /// ([`Error::Unsupported`]), as Docker checks for the module.
    async fn create_network(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
    ) -> Result<NetworkResources> {
        self.vni(net)?;
        let gre = self.0.encap == OverlayEncap::Gre;
        if gre {
            let v6 = ctx.underlay.is_some_and(|u| u.vtep.is_ipv6());
            let kind = if v6 {
                ProbeKind::Ip6Gretap
            } else {
                ProbeKind::Gretap
            };
            ctx.host.probe(kind).await?;
        }
        let mtu = match (net.mtu, ctx.underlay) {
            (0, Some(u)) => {
                let dev = underlay_link(ctx, u.vtep).await?;
                let link_mtu = ctx
                    .host
                    .link_by_index(dev)
                    .await?
                    .and_then(|l| l.mtu)
                    .unwrap_or(1500);
                let overhead = match (gre, u.vtep.is_ipv6()) {
                    (false, false) => VXLAN_OVERHEAD_V4,
                    (false, true) => VXLAN_OVERHEAD_V6,
                    (true, false) => GRE_OVERHEAD_V4,
                    (true, true) => GRE_OVERHEAD_V6,
                };
                let esp = if self.0.encrypted { ESP_OVERHEAD } else { 0 };
                link_mtu.saturating_sub(overhead + esp)
            }
            (0, None) if self.0.encrypted => 1500 - VXLAN_OVERHEAD_V4 - ESP_OVERHEAD,
            (0, None) if gre => 1500 - GRE_OVERHEAD_V4,
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
            self.delete_tunnels(ctx, v).await?;
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
        // A GRE network's tunnel ports depend on the peers: `check_peers` names them.
        if self.0.encap == OverlayEncap::Vxlan && ctx.host.link_by_name(&vx).await?.is_none() {
            missing.push(format!("vxlan {vx}"));
        }
        Ok(missing)
    }

    /// Makes the VXLAN device's FDB and neighbour entries exactly `peers`: adds the missing,
    /// replaces the changed, removes the stray (also entries an admin removed or added). Over
    /// GRE: makes the bridge's gretap ports exactly one per distinct VTEP of `peers` (also
    /// ports an admin removed, added, took off the bridge or set down).
    async fn sync_peers(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        peers: &[Peer],
    ) -> Result<PeerSync> {
        if self.0.encap == OverlayEncap::Gre {
            return self.sync_gre_ports(ctx, net, peers, true).await;
        }
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
        if self.0.encap == OverlayEncap::Gre {
            // The ports the new peers' hosts need, if missing; nothing removed.
            return self.sync_gre_ports(ctx, net, peers, false).await;
        }
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
        if self.0.encap == OverlayEncap::Gre {
            return self.check_gre_ports(ctx, net, peers).await;
        }
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::netlink::Netlink;
    use crate::netlink::fake::{Call, FakeNet};
    use crate::netlink::kernel::GretapRequest;
    use crate::netns::Netns;
    use crate::options::VNI_MAX;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn record(opts: OverlayOptions) -> NetworkInfo {
        NetworkInfo {
            name: "ov".into(),
            id: "0123456789abcdef0123456789abcdef".into(),
            driver: opts.into(),
            subnets: Vec::new(),
            aux: Default::default(),
            ipv6: false,
            internal: false,
            mtu: 0,
            device: None,
            routes: Vec::new(),
            no_default_route: false,
            adopted: None,
            dns_enabled: true,
            dns_servers: Vec::new(),
            removing: false,
            ipam_driver: crate::lease::IpamDriver::Default,
        }
    }

    fn gre(vni: u32) -> OverlayOptions {
        OverlayOptions {
            vni: Some(vni),
            encrypted: false,
            port: None,
            encap: OverlayEncap::Gre,
        }
    }

    fn peer(vtep: &str) -> Peer {
        Peer {
            mac: MacAddr::random(),
            addresses: Vec::new(),
            vtep: ip(vtep),
        }
    }

    /// A fake host netns with `eth0` holding `vtep`/24 (or /64).
    async fn host(net: &FakeNet, vtep: IpAddr) -> (Netlink, u32) {
        let nl = net.handle("host");
        let eth = net.add_ether("host", "eth0");
        let len = if vtep.is_ipv6() { 64 } else { 24 };
        nl.address().add(eth, "eth0", vtep, len).await.unwrap();
        (nl, eth)
    }

    fn ctx<'a>(
        nl: &'a Netlink,
        ns: &'a Netns,
        fake: &'a FakeNet,
        vtep: IpAddr,
    ) -> DriverContext<'a> {
        DriverContext {
            host: nl,
            host_netns: ns,
            kernel: fake,
            networks: &[],
            underlay: Some(super::super::Underlay {
                vtep,
                port: crate::netlink::builders::VXLAN_PORT,
            }),
        }
    }

    fn ports(fake: &FakeNet) -> Vec<String> {
        let mut v: Vec<String> = fake
            .links("host")
            .into_iter()
            .filter(|l| l.gretap.is_some())
            .map(|l| l.info.name)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn gre_port_names_are_deterministic_and_fit_in_15_characters() {
        assert_eq!(gre_port_name(4096, ip("10.99.1.2")), "g0010000a630102");
        for (vni, vtep) in [
            (1, "0.0.0.1"),
            (VNI_MAX, "255.255.255.255"),
            (VNI_MAX, "fd00:99:1::2"),
            (4096, "::1"),
        ] {
            let n = gre_port_name(vni, ip(vtep));
            assert_eq!(n.len(), 15, "{n}");
            assert!(is_gre_port(vni, &n), "{n}");
            assert!(!is_gre_port(vni ^ 1, &n), "{n}");
            assert_eq!(n, gre_port_name(vni, ip(vtep)));
        }
        assert_ne!(
            gre_port_name(7, ip("fd00::1")),
            gre_port_name(7, ip("fd00::2"))
        );
        assert!(!is_gre_port(4096, "vx-4096"));
        assert!(!is_gre_port(4096, "g0010000a63010"));
        assert!(!is_gre_port(4096, "g0010000a6301zz"));
        // The bridge MAC: the network's, unicast, locally administered.
        let a = record(gre(4096));
        let mut b = record(gre(4096));
        assert_eq!(gre_bridge_mac(&a), gre_bridge_mac(&b));
        b.id = "fedcba9876543210fedcba9876543210".into();
        assert_ne!(gre_bridge_mac(&a), gre_bridge_mac(&b));
        let m = gre_bridge_mac(&a).octets();
        assert_eq!(m[0] & 0x03, 0x02, "{m:?}");
    }

    /// One isolated, neighbour-suppressing gretap port per distinct remote VTEP, kept equal to
    /// the peers by `sync_peers`, added by `add_peers`, named by `check_peers`, kept by gc, and
    /// gone with the last local port.
    #[tokio::test]
    async fn gre_ports_follow_the_peers_and_go_with_the_last_endpoint() {
        let fake = FakeNet::new();
        let me = ip("10.0.0.1");
        let (nl, eth) = host(&fake, me).await;
        let ns = Netns::current().unwrap();
        let c = ctx(&nl, &ns, &fake, me);
        let opts = gre(4096);
        let drv = OverlayDriver(&opts);
        let mut net = record(opts);
        let res = drv.create_network(c, &net).await.unwrap();
        assert_eq!(res.mtu, 1458, "1500 − 42");
        assert!(
            fake.log()
                .iter()
                .any(|r| matches!(r.call, Call::Probe(ProbeKind::Gretap)))
        );
        net.mtu = res.mtu;
        net.device = res.device.clone();
        let br = bridge_name(&net);
        assert_eq!(net.device.as_deref(), Some(br.as_str()));

        // Before any endpoint: no device, nothing to sync.
        let p = [peer("10.0.0.2"), peer("10.0.0.2"), peer("10.0.0.3")];
        assert_eq!(
            drv.sync_peers(c, &net, &p).await.unwrap(),
            PeerSync::default()
        );
        assert!(ports(&fake).is_empty());

        drv.ensure_devices(c, &net).await.unwrap();
        let bridge = fake.link("host", &br).unwrap();
        assert_eq!(
            bridge.info.mac.as_deref(),
            Some(&gre_bridge_mac(&net).octets()[..])
        );
        assert!(fake.link("host", "vx-4096").is_none(), "no VXLAN device");
        assert_eq!(
            fake.sysctl("host", &format!("net/ipv6/conf/{br}/addr_gen_mode"))
                .as_deref(),
            Some("1"),
            "no IPv6 link-local address on the bridge"
        );

        // Two hosts among three peers: two ports.
        let s = drv.sync_peers(c, &net, &p).await.unwrap();
        assert_eq!((s.added, s.removed), (2, 0));
        assert_eq!(ports(&fake), ["g0010000a000002", "g0010000a000003"]);
        for name in ports(&fake) {
            let l = fake.link("host", &name).unwrap();
            assert_eq!(l.info.controller, Some(bridge.info.index));
            assert_eq!(l.info.group, link_marks::LOWER);
            assert_eq!(l.info.mtu, Some(1458));
            assert!(l.info.up);
            assert_eq!(l.isolation, PortIsolation::Isolated);
            assert_eq!(l.neigh_suppress, NeighSuppress::On);
            let g: GretapRequest = l.gretap.unwrap();
            assert_eq!((g.local, g.key, g.ttl), (me, 4096, 64));
            assert_eq!(g.underlay, Some(eth));
            assert_eq!(name, gre_port_name(4096, g.remote));
            assert_eq!(
                fake.sysctl("host", &format!("net/ipv6/conf/{name}/disable_ipv6"))
                    .as_deref(),
                Some("1")
            );
        }
        assert!(drv.check_peers(c, &net, &p).await.unwrap().is_empty());
        // Idempotent.
        assert_eq!(
            drv.sync_peers(c, &net, &p).await.unwrap(),
            PeerSync::default()
        );

        // A host leaves, another joins.
        let p = [peer("10.0.0.2"), peer("10.0.0.4")];
        let s = drv.sync_peers(c, &net, &p).await.unwrap();
        assert_eq!((s.added, s.removed), (1, 1));
        assert_eq!(ports(&fake), ["g0010000a000002", "g0010000a000004"]);

        // An admin deletes one and adds a stray one: check names both, add_peers only adds,
        // sync removes the stray.
        nl.delete_link("g0010000a000004").await.unwrap();
        nl.link()
            .gretap("g0010000a000009", me, ip("10.0.0.9"), 4096)
            .master(bridge.info.index)
            .add()
            .await
            .unwrap();
        let issues = drv.check_peers(c, &net, &p).await.unwrap();
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(
            issues
                .iter()
                .any(|i| i.contains("gretap g0010000a000004 to 10.0.0.4"))
        );
        assert!(issues.iter().any(|i| i == "stray gretap g0010000a000009"));
        let s = drv.add_peers(c, &net, &p[1..]).await.unwrap();
        assert_eq!((s.added, s.removed), (1, 0));
        assert_eq!(ports(&fake).len(), 3);
        let s = drv.sync_peers(c, &net, &p).await.unwrap();
        assert_eq!((s.added, s.removed), (0, 1));
        assert_eq!(ports(&fake), ["g0010000a000002", "g0010000a000004"]);
        // A port taken off the bridge is remade by sync.
        let off = fake.link("host", "g0010000a000002").unwrap();
        nl.delete_link("g0010000a000002").await.unwrap();
        nl.link()
            .gretap("g0010000a000002", me, ip("10.0.0.2"), 4096)
            .add()
            .await
            .unwrap();
        assert_eq!(drv.check_peers(c, &net, &p).await.unwrap().len(), 1);
        let s = drv.sync_peers(c, &net, &p).await.unwrap();
        assert_eq!((s.added, s.removed), (1, 1));
        let again = fake.link("host", "g0010000a000002").unwrap();
        assert_eq!(again.info.controller, off.info.controller);

        // gc keeps the ports (the record cannot name them), and no other network's.
        assert_eq!(drv.host_links(&net), vec![br.clone()]);
        assert!(drv.keeps_host_link(&net, "g0010000a000002"));
        assert!(!drv.keeps_host_link(&net, "g0010010a000002"));
        assert!(!drv.keeps_host_link(&net, &br));

        // A container port keeps the devices; without it they go, ports first.
        let cns = Netns::current().unwrap();
        fake.bind("c", &cns);
        nl.link()
            .veth("vethc")
            .master(bridge.info.index)
            .peer_in("eth0", &cns)
            .add()
            .await
            .unwrap();
        drv.remove_if_unused(c, &net).await.unwrap();
        assert_eq!(ports(&fake).len(), 2);
        nl.delete_link("vethc").await.unwrap();
        drv.remove_if_unused(c, &net).await.unwrap();
        assert!(ports(&fake).is_empty());
        assert!(fake.link("host", &br).is_none());

        // delete_network removes the ports too.
        drv.ensure_devices(c, &net).await.unwrap();
        drv.sync_peers(c, &net, &p).await.unwrap();
        assert_eq!(ports(&fake).len(), 2);
        drv.delete_network(c, &net).await.unwrap();
        assert!(ports(&fake).is_empty());
        assert!(fake.link("host", &br).is_none());
        assert!(fake.link("host", "eth0").is_some());
    }

    /// Over an IPv6 underlay: ip6gretap ports, MTU 1500 − 62; a peer of the other family is
    /// refused.
    #[tokio::test]
    async fn gre_over_ipv6_uses_ip6gretap_and_refuses_mixed_families() {
        let fake = FakeNet::new();
        let me = ip("fd00:99::1");
        let (nl, _) = host(&fake, me).await;
        let ns = Netns::current().unwrap();
        let c = ctx(&nl, &ns, &fake, me);
        let opts = gre(5000);
        let drv = OverlayDriver(&opts);
        let mut net = record(opts);
        let res = drv.create_network(c, &net).await.unwrap();
        assert_eq!(res.mtu, 1438, "1500 − 62");
        assert!(
            fake.log()
                .iter()
                .any(|r| matches!(r.call, Call::Probe(ProbeKind::Ip6Gretap)))
        );
        net.mtu = res.mtu;
        net.device = res.device;
        drv.ensure_devices(c, &net).await.unwrap();
        let p = [peer("fd00:99::2"), peer("fd00:99::3")];
        assert_eq!(drv.sync_peers(c, &net, &p).await.unwrap().added, 2);
        let names = ports(&fake);
        assert_eq!(names.len(), 2);
        for n in &names {
            let g = fake.link("host", n).unwrap().gretap.unwrap();
            assert!(g.remote.is_ipv6());
            assert_eq!(g.local, me);
            assert_eq!(n, &gre_port_name(5000, g.remote));
        }
        let mixed = [peer("fd00:99::2"), peer("10.0.0.2")];
        let e = drv.sync_peers(c, &net, &mixed).await.unwrap_err();
        assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
        let e = nl
            .link()
            .gretap("g1", me, IpAddr::V4(Ipv4Addr::LOCALHOST), 1)
            .add()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
    }

    /// VXLAN networks are as before: their device is a host link, no gretap is made.
    #[tokio::test]
    async fn vxlan_networks_make_no_gretap() {
        let fake = FakeNet::new();
        let me = ip("10.0.0.1");
        let (nl, _) = host(&fake, me).await;
        let ns = Netns::current().unwrap();
        let c = ctx(&nl, &ns, &fake, me);
        let opts = OverlayOptions {
            vni: Some(4097),
            ..OverlayOptions::default()
        };
        let drv = OverlayDriver(&opts);
        let mut net = record(opts);
        let res = drv.create_network(c, &net).await.unwrap();
        assert_eq!(res.mtu, 1450);
        net.mtu = res.mtu;
        net.device = res.device;
        drv.ensure_devices(c, &net).await.unwrap();
        drv.sync_peers(c, &net, &[peer("10.0.0.2")]).await.unwrap();
        assert!(ports(&fake).is_empty());
        assert!(fake.link("host", "vx-4097").is_some());
        assert!(drv.host_links(&net).contains(&"vx-4097".to_string()));
        assert!(!drv.keeps_host_link(&net, &gre_port_name(4097, ip("10.0.0.2"))));
        assert!(!fake.log().iter().any(|r| matches!(r.call, Call::Probe(_))));
    }
}
