//! The `bridge` driver (`docker network create -d bridge`): a Linux bridge in the host netns
//! holding the gateway address, and one veth per endpoint whose peer is born in the container
//! netns.
//!
//! Kernel quirks this encodes:
//! - The bridge's MAC is pinned at creation. Left alone, a bridge takes the lowest MAC of its
//!   ports and changes it as ports come and go, which makes neighbours' ARP entries stale
//!   (netavark measured stalls of up to 100 s).
//! - A new container's addresses are announced (gratuitous ARP, unsolicited NA) once the
//!   bridge has enabled its port, and the host forgets a detached container's neighbour
//!   entries: addresses are reused, MACs are random (see `announce`).
//! - The veth peer is created directly in the container netns (`IFLA_NET_NS_FD` in the create
//!   request): creating then moving it costs ~20 ms more.

use async_trait::async_trait;

use super::{
    DriverContext, EndpointPlan, EndpointResources, NetworkDriver, NetworkResources, announce,
    bridge_vlan, container, veth,
};
use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::firewall::NetworkRules;
use crate::lease::IpamDriver;
use crate::link_marks;
use crate::mac::MacAddr;
use crate::netlink::{Hairpin, Netlink, PortIsolation, VethPeer};
use crate::network::{NetworkInfo, NetworkSpec};
use crate::options::{BridgeOptions, DriverKind};

/// How long attach waits for the bridge to enable a new port before announcing the
/// container's addresses (it takes microseconds to milliseconds; skipped past this).
const PORT_UP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// See the module docs; bound to the network's options.
#[derive(Debug, Clone, Copy)]
pub struct BridgeDriver<'a>(pub &'a BridgeOptions);

/// The bridge device name of a network: the option, else `br-` + 12 hex digits of the id.
pub fn bridge_name(o: &BridgeOptions, net: &NetworkInfo) -> String {
    match &o.bridge_name {
        Some(name) => name.clone(),
        None => format!("br-{}", &net.id[..12]),
    }
}

pub(super) fn device(net: &NetworkInfo) -> Result<&str> {
    net.device
        .as_deref()
        .ok_or_else(|| Error::invalid("network record", &net.name, "bridge network without device"))
}

/// The MTU of the host netns' default-route link, if there is one.
async fn default_route_mtu(host: &Netlink) -> Result<Option<u32>> {
    let Some(oif) = host.default_route_oif_v4().await? else {
        return Ok(None);
    };
    Ok(host.link_by_index(oif).await?.and_then(|l| l.mtu))
}

#[async_trait]
impl NetworkDriver for BridgeDriver<'_> {
    fn kind(&self) -> DriverKind {
        DriverKind::Bridge
    }

    fn uses_ipam(&self) -> bool {
        true
    }

    fn serves_dns(&self) -> bool {
        true
    }

    /// None for a DHCP network: its bridge is on the LAN (often the admin's, carrying the
    /// host's own uplink), its containers are hosts there, and berth neither routes, NATs nor
    /// isolates what crosses it (rules keyed on the bridge would catch the host's traffic).
    fn firewall_rules(&self, net: &NetworkInfo) -> Option<NetworkRules> {
        if net.ipam_driver == IpamDriver::Dhcp {
            return None;
        }
        let o = self.0;
        Some(NetworkRules {
            name: net.name.clone(),
            bridge: net.device.clone()?,
            subnets: net.subnets.iter().map(|s| s.subnet).collect(),
            masquerade: o.masquerade && !net.internal,
            internal: net.internal,
            allow_direct_access: o.allow_direct_access,
            outbound_ipv4: o.outbound_ipv4,
            icc: o.icc,
            anti_spoofing: o.anti_spoofing,
            encrypted: None,
        })
    }

    fn default_host_ip(&self) -> std::net::IpAddr {
        match self.0.host_binding_ipv4 {
            Some(ip) => ip.into(),
            None => std::net::Ipv4Addr::UNSPECIFIED.into(),
        }
    }

    fn endpoint_ports_of(&self, net: &NetworkInfo) -> Option<String> {
        net.device.clone()
    }

    /// The bridge, and the trunk (the admin's link: never a stray port for `gc`).
    fn host_links(&self, net: &NetworkInfo) -> Vec<String> {
        net.device.iter().chain(&self.0.parent).cloned().collect()
    }

    async fn check_vlan(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        _vlan: u16,
    ) -> Result<()> {
        bridge_vlan::check_vlan(ctx, self.0, net).await
    }

    async fn reconcile(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<usize> {
        bridge_vlan::release(ctx, self.0, net, None).await
    }

    /// A bridge the admin made keeps its addresses: one inside a subnet that names no gateway
    /// becomes that subnet's gateway (Docker's `-b bridge0` with `bip`).
    async fn prepare(&self, ctx: DriverContext<'_>, spec: &mut NetworkSpec) -> Result<()> {
        let Some(name) = &self.0.bridge_name else {
            return Ok(());
        };
        let Some(link) = ctx
            .host
            .link_by_name(name)
            .await?
            .filter(|l| l.is_bridge && l.group != link_marks::BRIDGE)
        else {
            return Ok(());
        };
        for (_, ip, _) in ctx.host.addresses(Some(link.index)).await? {
            let Some(subnet) = spec.subnets.iter().find(|s| s.contains(&ip)).copied() else {
                continue;
            };
            if !spec.gateways.iter().any(|g| subnet.contains(g)) {
                spec.gateways.push(ip);
            }
        }
        Ok(())
    }

    async fn create_network(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
    ) -> Result<NetworkResources> {
        let name = bridge_name(self.0, net);
        if let Some(n) = ctx
            .networks
            .iter()
            .find(|n| n.name != net.name && n.device.as_deref() == Some(&name))
        {
            return Err(Error::InterfaceInUse {
                ifname: name,
                network: n.name.clone(),
            });
        }
        // A bridge the admin made (`-b bridge0`): used as it is, never recreated.
        let existing = match ctx.host.link_by_name(&name).await? {
            // A bridge berth made for a network whose create died before its record was
            // written (no record names it: `Host` checked): not the admin's, so not adopted.
            Some(l) if l.is_bridge && l.group == link_marks::BRIDGE => {
                ctx.host.delete_link(&name).await?;
                None
            }
            other => other,
        };
        let trunk = match &self.0.parent {
            Some(p) => Some(
                bridge_vlan::check_trunk(
                    ctx,
                    net,
                    p,
                    &name,
                    existing.as_ref().filter(|l| l.is_bridge),
                )
                .await?,
            ),
            None => None,
        };
        let adopted = match &existing {
            Some(l) if l.is_bridge => true,
            Some(_) => {
                return Err(Error::netlink(
                    "add bridge",
                    &name,
                    std::io::Error::from_raw_os_error(libc::EEXIST),
                ));
            }
            None => false,
        };
        // A DHCP network's bridge must be on the LAN: the admin's (holding the NIC) or one
        // with a trunk. A new bridge without one would reach no DHCP server.
        let dhcp = net.ipam_driver == IpamDriver::Dhcp;
        if dhcp && !adopted && trunk.is_none() {
            return Err(Error::InvalidValue {
                what: "bridge",
                value: name,
                reason: "a DHCP network needs a bridge on the LAN: no such bridge exists, and a new one without a trunk (-o parent=IF) reaches no DHCP server",
            });
        }
        let (link, mtu) = match existing {
            Some(l) => {
                let mtu = l.mtu.unwrap_or(1500);
                (l, mtu)
            }
            None => {
                let mtu = match net.mtu {
                    0 => default_route_mtu(ctx.host).await?.unwrap_or(1500),
                    m => m,
                };
                (
                    ctx.host
                        .link()
                        .bridge(&name)
                        .mac(MacAddr::random())
                        .mtu(mtu)
                        .add()
                        .await?,
                    mtu,
                )
            }
        };
        let present: Vec<std::net::IpAddr> = if adopted {
            ctx.host
                .addresses(Some(link.index))
                .await?
                .into_iter()
                .map(|(_, ip, _)| ip)
                .collect()
        } else {
            Vec::new()
        };
        let mut added = Vec::new();
        let configured = async {
            if self.0.anti_spoofing {
                // Frames to IEEE link-local addresses are learned from before any netfilter
                // hook: see `firewall::ruleset::spoof`.
                ctx.host.link().bridge_no_linklocal_learn(&name).await?;
            }
            if net.subnet6().is_some() {
                // The bridge's own link-local and gateway addresses skip DAD too.
                ctx.host
                    .write_sysctl(&format!("net/ipv6/conf/{name}/accept_dad"), "0")
                    .await?;
            }
            for s in &net.subnets {
                if !present.contains(&s.gateway) {
                    ctx.host
                        .address()
                        .add(link.index, &name, s.gateway, s.subnet.prefix_len())
                        .await?;
                    added.push((s.gateway, s.subnet.prefix_len()));
                }
            }
            // A DHCP network's containers are hosts of the LAN: the host routes nothing of
            // theirs, and publishes no port to them.
            if !net.internal && !dhcp {
                ctx.host.write_sysctl("net/ipv4/ip_forward", "1").await?;
                // Lets DNATed packets from 127.0.0.1 (published ports reached via localhost)
                // leave through the bridge; they are masqueraded in postrouting.
                ctx.host
                    .write_sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")
                    .await?;
                if net.subnet6().is_some() {
                    ctx.host
                        .write_sysctl("net/ipv6/conf/all/forwarding", "1")
                        .await?;
                }
            }
            // Last: a bridge berth made takes the trunk (deleting the bridge on a failure
            // releases it); an admin's holds it already.
            if let (Some(t), false) = (&trunk, adopted) {
                bridge_vlan::attach_trunk(ctx, t, &link).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = configured {
            if adopted {
                for (ip, len) in &added {
                    let _ = ctx.host.address().del(link.index, &name, *ip, *len).await;
                }
            } else {
                let _ = ctx.host.delete_link(&name).await;
            }
            return Err(e);
        }
        Ok(NetworkResources {
            device: Some(name),
            mtu,
            adopted: adopted.then_some(added),
        })
    }

    async fn delete_network(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()> {
        let name = device(net)?;
        let Some(added) = &net.adopted else {
            // The trunk is released (not deleted) before its bridge goes.
            if let (Some(p), Some(b)) = (&self.0.parent, ctx.host.link_by_name(name).await?) {
                bridge_vlan::release_trunk(ctx, p, &b).await?;
            }
            return ctx.host.delete_link(name).await.map(|_| ());
        };
        // The admin's bridge stays, with what it had; only what berth added goes.
        if let Some(l) = ctx.host.link_by_name(name).await? {
            for (ip, len) in added {
                ctx.host.address().del(l.index, name, *ip, *len).await?;
            }
        }
        Ok(())
    }

    /// The host end's name is derived from the network and the container; the MAC is the
    /// plan's.
    fn expected_resources(
        &self,
        net: &NetworkInfo,
        ep: &EndpointPlan<'_>,
    ) -> Option<EndpointResources> {
        Some(EndpointResources {
            host_ifname: Some(veth::host_ifname(&net.id, ep.container)),
            mac: Some(ep.mac),
        })
    }

    async fn attach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        ep: &EndpointPlan<'_>,
    ) -> Result<EndpointResources> {
        let host_if = veth::host_ifname(&net.id, ep.container);
        let nl = ep.container_nl;
        // Two sockets, two questions at once.
        let (bridge, free) = tokio::join!(
            ctx.host.require_link(device(net)?),
            container::ensure_ifname_free(nl, ep.ifname)
        );
        let bridge = bridge?;
        free?;
        // The port's device group is berth's mark and, with ICC off, what the firewall's
        // bridge table matches (per-pair link exceptions are impossible with port isolation):
        // see `link_marks` and `firewall::ruleset::icc`.
        let link = ctx
            .host
            .link()
            .veth(&host_if)
            .master(bridge.index)
            .mtu(net.mtu)
            .group(link_marks::port(self.0.icc, self.0.anti_spoofing))
            .peer(VethPeer {
                name: ep.ifname,
                mac: ep.mac,
                netns: ep.netns,
            })
            .add()
            .await?;
        // A VLAN endpoint's port is an access port before the container's end comes up (no
        // frame of it is ever in the default VLAN).
        if let Some(vlan) = ep.vlan
            && let Err(e) = bridge_vlan::configure_port(ctx, self.0, &bridge, &link, vlan).await
        {
            let _ = ctx.host.delete_link(&host_if).await;
            return Err(e);
        }
        // The port's settings (host socket) and the interface's (container socket) at once.
        let port = ctx
            .host
            .link()
            .bridge_port(link.index, &host_if)
            .hairpin(Hairpin::On)
            .isolation(PortIsolation::Open)
            .apply();
        let inside = async {
            let cfg = container::InterfaceConfig {
                ipv4: ep.ipv4,
                ipv6: ep.ipv6,
                gateway: ep.gateway,
                gateway6: ep.gateway6,
                default_dev: false,
                routes: &ep.routes,
                take_default: ep.take_default,
            };
            container::configure_interface(nl, ep.ifname, cfg).await
        };
        let (port, inside) = tokio::join!(port, inside);
        if let Err(e) = port.and(inside) {
            // Deleting the host end removes the peer in the container netns too.
            let _ = ctx.host.delete_link(&host_if).await;
            if ep.vlan.is_some() {
                let _ = bridge_vlan::release(ctx, self.0, net, ep.vlan).await;
            }
            return Err(e);
        }
        // An announcement sent before the bridge has enabled the port is dropped there: wait
        // for it (the kernel does it as soon as it sees the carrier; bounded all the same).
        if ep.announce
            && let Ok(true) = ctx.host.wait_oper_up(link.index, PORT_UP_WAIT).await
        {
            announce::announce_interface(nl, ep.ifname).await;
        }
        Ok(EndpointResources {
            host_ifname: Some(host_if),
            mac: Some(ep.mac),
        })
    }

    async fn detach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<()> {
        // Works when the container netns is gone: the host end is deleted by name (and if the
        // netns died first, the kernel already removed the pair).
        if let Some(h) = &att.host_ifname {
            ctx.host.delete_link(h).await?;
        }
        // Its VLAN went with the port; the trunk keeps it while another endpoint has it.
        if att.vlan.is_some() {
            bridge_vlan::release(ctx, self.0, net, att.vlan).await?;
        }
        forget_neighbours(ctx, net, att).await
    }

    async fn check(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        let name = device(net)?;
        let bridge = ctx.host.link_by_name(name).await?;
        if bridge.is_none() {
            missing.push(format!("bridge {name}"));
        }
        if let (Some(p), Some(b)) = (&self.0.parent, &bridge)
            && ctx
                .host
                .link_by_name(p)
                .await?
                .is_none_or(|l| l.controller != Some(b.index))
        {
            missing.push(format!("trunk {p} on bridge {name}"));
        }
        if let Some(h) = &att.host_ifname {
            let port = ctx.host.link_by_name(h).await?;
            if let (Some(vlan), Some(b)) = (att.vlan, &bridge) {
                missing.extend(bridge_vlan::check(ctx, self.0, b, port.as_ref(), vlan).await?);
            }
            match port {
                None => missing.push(format!("veth {h}")),
                Some(l)
                    if bridge
                        .as_ref()
                        .is_some_and(|b| l.controller != Some(b.index)) =>
                {
                    missing.push(format!("veth {h} on bridge {name}"))
                }
                Some(_) => {}
            }
        }
        Ok(missing)
    }
}

/// The host's neighbour entries for a detached container's addresses (on the bridge) go with
/// it. Left there, they keep the container's random MAC for as long as the entry stays
/// reachable (30 s or more): a container that gets the address next within that time is
/// unreachable from the host — published ports, the host's own connections — until the kernel
/// finds out (what the soak met when addresses were reused).
async fn forget_neighbours(
    ctx: DriverContext<'_>,
    net: &NetworkInfo,
    att: &Attachment,
) -> Result<()> {
    let Some(name) = net.device.as_deref() else {
        return Ok(());
    };
    let Some(bridge) = ctx.host.link_by_name(name).await? else {
        return Ok(());
    };
    for ip in att.ip().into_iter().chain(att.ip6()) {
        ctx.host.del_neighbour(bridge.index, name, ip).await?;
    }
    Ok(())
}
