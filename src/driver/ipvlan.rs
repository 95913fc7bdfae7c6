//! The `ipvlan` driver (`docker network create -d ipvlan -o ipvlan_mode=l2|l3|l3s`): each
//! endpoint is an ipvlan of the parent, born inside the container netns, sharing the parent's
//! MAC. In L3 and L3S modes the parent routes: the container's default route is the device
//! itself, no gateway needed.

use async_trait::async_trait;

use super::{
    DriverContext, EndpointPlan, EndpointResources, NetworkDriver, NetworkResources, container,
    lower,
};
use crate::endpoint::Attachment;
use crate::error::Result;
use crate::netlink::ProbeKind;
use crate::network::NetworkInfo;
use crate::options::{DriverKind, IpvlanMode, IpvlanOptions, Parent};

/// See the module docs; bound to the network's options.
#[derive(Debug, Clone, Copy)]
pub struct IpvlanDriver<'a>(pub &'a IpvlanOptions);

#[async_trait]
impl NetworkDriver for IpvlanDriver<'_> {
    fn kind(&self) -> DriverKind {
        DriverKind::Ipvlan
    }

    fn uses_ipam(&self) -> bool {
        true
    }

    fn always_internal(&self) -> bool {
        self.0.parent == Parent::Dummy
    }

    /// In L3 and L3S modes the parent routes: the default route is the device itself.
    fn endpoint_gateway(&self) -> bool {
        self.0.mode == IpvlanMode::L2
    }

    async fn create_network(
        &self,
        ctx: DriverContext<'_>,
        net: &NetworkInfo,
    ) -> Result<NetworkResources> {
        ctx.host.probe(ProbeKind::Ipvlan).await?;
        let parent = lower::ensure_parent(ctx, net, &self.0.parent).await?;
        Ok(NetworkResources {
            mtu: lower::mtu(net, &parent),
            device: Some(parent.name),
            adopted: None,
        })
    }

    async fn delete_network(&self, ctx: DriverContext<'_>, net: &NetworkInfo) -> Result<()> {
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
            .ipvlan(ep.ifname, parent.index)
            .mode(o.mode)
            .flag(o.flag)
            .netns(ep.netns)
            .add()
            .await?;
        let routed = o.mode != IpvlanMode::L2;
        let inside = async {
            let cfg = container::InterfaceConfig {
                ipv4: ep.ipv4,
                ipv6: ep.ipv6,
                // `Host` gave no gateway when `endpoint_gateway` says so.
                gateway: ep.gateway,
                gateway6: ep.gateway6,
                default_dev: routed && !net.internal && !net.no_default_route,
                routes: &ep.routes,
                take_default: ep.take_default,
            };
            container::configure_interface(nl, ep.ifname, cfg).await
        }
        .await;
        if let Err(e) = inside {
            let _ = nl.delete_link(ep.ifname).await;
            return Err(e);
        }
        Ok(EndpointResources {
            host_ifname: None,
            mac: None,
        })
    }

    async fn detach(
        &self,
        ctx: DriverContext<'_>,
        _: &NetworkInfo,
        att: &Attachment,
    ) -> Result<()> {
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
