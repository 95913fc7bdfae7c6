//! The `macvlan` driver (`docker network create -d macvlan -o parent=eth0.50`): each endpoint
//! is a macvlan of the parent, born inside the container netns with its own MAC, so containers
//! appear directly on the parent's segment. The parent itself cannot talk to its macvlans; an
//! optional host-side macvlan "shim" with an address of the subnet lets the host reach them.

use async_trait::async_trait;
use rtnetlink::packet_route::link::MacVlanMode;

use super::{
    DriverContext, EndpointPlan, EndpointResources, NetworkDriver, NetworkResources, container,
    lower,
};
use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::network::NetworkInfo;
use crate::options::{DriverKind, MacvlanMode, MacvlanOptions, Parent};

/// See the module docs; bound to the network's options.
#[derive(Debug, Clone, Copy)]
pub struct MacvlanDriver<'a>(pub &'a MacvlanOptions);

fn kernel_mode(m: MacvlanMode) -> MacVlanMode {
    match m {
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

/// The host-side shim of a network: `ms-` + 8 hex digits of the id.
pub fn shim_name(net: &NetworkInfo) -> String {
    format!("ms-{}", &net.id[..8])
}

#[async_trait]
impl NetworkDriver for MacvlanDriver<'_> {
    fn kind(&self) -> DriverKind {
        DriverKind::Macvlan
    }

    fn uses_ipam(&self) -> bool {
        true
    }

    fn always_internal(&self) -> bool {
        self.0.parent == Parent::Dummy
    }

    fn host_links(&self, net: &NetworkInfo) -> Vec<String> {
        net.device.iter().cloned().chain([shim_name(net)]).collect()
    }

    async fn create_network(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
    ) -> Result<NetworkResources> {
        let o = self.0;
        ctx.host.probe_macvlan().await?;
        let parent = lower::ensure_parent(ctx, net, &o.parent).await?;
        let shim = async {
            if let Some(ip) = o.host_shim {
                let subnet = net
                    .subnets
                    .iter()
                    .find(|s| s.subnet.contains(&ip))
                    .ok_or_else(|| Error::OutsideSubnet {
                        address: ip,
                        subnet: net
                            .subnets
                            .iter()
                            .map(|s| s.subnet.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                    })?;
                let name = shim_name(net);
                let l = ctx
                    .host
                    .add_macvlan(&name, parent.index, MacVlanMode::Bridge, lower::OWNED_ALIAS)
                    .await?;
                ctx.host
                    .add_address(l.index, &name, ip, subnet.subnet.prefix_len())
                    .await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = shim {
            let _ = ctx.host.delete_link(&shim_name(net)).await;
            let mut made = net.clone();
            made.device = Some(parent.name.clone());
            let _ = lower::release_parent(ctx, &made).await;
            return Err(e);
        }
        Ok(NetworkResources {
            mtu: lower::mtu(net, &parent),
            device: Some(parent.name),
            adopted: None,
        })
    }

    async fn delete_network(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()> {
        ctx.host.delete_link(&shim_name(net)).await?;
        lower::release_parent(ctx, net).await
    }

    async fn attach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        ep: &EndpointPlan<'_>,
    ) -> Result<EndpointResources> {
        let o = self.0;
        let parent = ctx
            .host
            .require_link(net.device.as_deref().unwrap_or_default())
            .await?;
        let nl = ep.container_nl;
        container::ensure_ifname_free(nl, ep.ifname).await?;
        ctx.host
            .add_macvlan_into(
                ep.ifname,
                parent.index,
                kernel_mode(o.mode),
                ep.mac,
                ep.netns,
            )
            .await?;
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
            container::configure_interface(nl, ep.netns, ep.ifname, cfg).await
        }
        .await;
        // With a shim, a host route to each container through it: more specific than any route
        // the parent itself may have to the subnet (a parent cannot reach its own macvlans).
        let routed = async {
            if o.host_shim.is_some() {
                let shim = ctx.host.require_link(&shim_name(net)).await?;
                for ip in ep
                    .ipv4
                    .map(|n| n.addr().into())
                    .into_iter()
                    .chain(ep.ipv6.map(|n| n.addr().into()))
                {
                    ctx.host.add_host_route(ip, shim.index).await?;
                }
            }
            Ok::<_, Error>(())
        };
        let done = match inside {
            Ok(()) => routed.await,
            Err(e) => Err(e),
        };
        if let Err(e) = done {
            let _ = nl.delete_link(ep.ifname).await;
            if let Ok(Some(shim)) = ctx.host.link_by_name(&shim_name(net)).await {
                for ip in ep
                    .ipv4
                    .map(|n| n.addr().into())
                    .into_iter()
                    .chain(ep.ipv6.map(|n| n.addr().into()))
                {
                    let _ = ctx.host.del_host_route(ip, shim.index).await;
                }
            }
            return Err(e);
        }
        Ok(EndpointResources {
            host_ifname: None,
            mac: Some(ep.mac),
        })
    }

    async fn detach(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<()> {
        if let Some(shim) = ctx.host.link_by_name(&shim_name(net)).await? {
            for ip in att.ip().into_iter().chain(att.ip6()) {
                ctx.host.del_host_route(ip, shim.index).await?;
            }
        }
        lower::delete_in_container(att).await
    }

    async fn check(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<Vec<String>> {
        lower::check_endpoint(ctx, net, att).await
    }
}
