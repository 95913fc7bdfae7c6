//! What every driver does inside the container netns once its interface exists there:
//! `lo` up, the address, the interface up, the default route.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::error::Result;
use crate::netlink::Netlink;

/// `ip link set lo up` in the container netns.
pub async fn loopback_up(nl: &Netlink) -> Result<()> {
    let lo = nl.require_link("lo").await?;
    if !lo.up {
        nl.set_up(lo.index, "lo").await?;
    }
    Ok(())
}

/// `ip addr add ADDR dev IF && ip link set IF up && ip route add default via GW`.
pub async fn configure_interface(
    nl: &Netlink,
    ifname: &str,
    ipv4: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
) -> Result<()> {
    let link = nl.require_link(ifname).await?;
    if let Some(net) = ipv4 {
        nl.add_address(link.index, ifname, IpAddr::V4(net.addr()), net.prefix_len())
            .await?;
    }
    nl.set_up(link.index, ifname).await?;
    if let Some(gw) = gateway {
        nl.add_default_route_v4(gw).await?;
    }
    Ok(())
}
