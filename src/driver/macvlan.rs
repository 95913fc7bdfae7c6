//! The `macvlan` driver (`docker network create -d macvlan -o parent=eth0.50`): each endpoint
//! is a macvlan of the parent, born inside the container netns with its own MAC, so containers
//! appear directly on the parent's segment. The parent itself cannot talk to its macvlans; an
//! optional host-side macvlan "shim" with an address of the subnet lets the host reach them.

use async_trait::async_trait;

use super::{
    DriverContext, EndpointPlan, EndpointResources, NetworkDriver, NetworkResources, container,
    lower,
};
use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::netlink::ProbeKind;
use crate::network::NetworkInfo;
use crate::options::{DriverKind, MacvlanMode, MacvlanOptions, Parent};

/// See the module docs; bound to the network's options.
#[derive(Debug, Clone, Copy)]
pub struct MacvlanDriver<'a>(pub &'a MacvlanOptions);

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
        ctx.host.probe(ProbeKind::Macvlan).await?;
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
                    .link()
                    .macvlan_shim(&name, parent.index)
                    .mode(MacvlanMode::Bridge)
                    .alias(lower::OWNED_ALIAS)
                    .add()
                    .await?;
                ctx.host
                    .address()
                    .add(l.index, &name, ip, subnet.subnet.prefix_len())
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
            .link()
            .macvlan(ep.ifname, parent.index)
            .mode(o.mode)
            .mac(ep.mac)
            .netns(ep.netns)
            .add()
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
            container::configure_interface(nl, ep.ifname, cfg).await
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
                    ctx.host.route().host(ip, shim.index).add().await?;
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
                    let _ = ctx.host.route().host(ip, shim.index).del().await;
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
                ctx.host.route().host(ip, shim.index).del().await?;
            }
        }
        lower::delete_in_container(ctx, att).await
    }

    async fn check(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
        _att: &Attachment,
    ) -> Result<Vec<String>> {
        lower::check_endpoint(ctx, net).await
    }
}
