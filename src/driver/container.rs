//! What every driver does inside the container netns once its interface exists there:
//! `lo` up, addresses, the interface up, default routes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::Result;
use crate::netlink::{Family, Netlink, RpFilter};
use crate::route::RouteSpec;

/// `ip link set lo up` in the container netns; returns whether it was down (so a failed
/// attach can put it back down: see [`loopback_down`]).
pub async fn loopback_up(nl: &Netlink) -> Result<bool> {
    let lo = nl.require_link("lo").await?;
    if !lo.up {
        nl.link().set(lo.index, "lo").up().apply().await?;
    }
    Ok(!lo.up)
}

/// `ip link set lo down` in the container netns (undoes [`loopback_up`]).
pub async fn loopback_down(nl: &Netlink) -> Result<()> {
    let lo = nl.require_link("lo").await?;
    if lo.up {
        nl.link().set(lo.index, "lo").down().apply().await?;
    }
    Ok(())
}

/// Fails, naming the interface, when `ifname` already exists in the container netns (the kernel
/// would only say EEXIST about the veth pair).
pub async fn ensure_ifname_free(nl: &Netlink, ifname: &str) -> Result<()> {
    if nl.link_by_name(ifname).await?.is_some() {
        return Err(crate::Error::netlink(
            "add interface in container netns",
            ifname,
            std::io::Error::from_raw_os_error(libc::EEXIST),
        ));
    }
    Ok(())
}

/// Per family, whether an interface's default route replaces the container's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakeDefault {
    /// IPv4.
    pub v4: bool,
    /// IPv6.
    pub v6: bool,
}

/// Addresses and routes of one container interface.
#[derive(Debug, Clone, Copy, Default)]
pub struct InterfaceConfig<'a> {
    /// IPv4 address.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address.
    pub ipv6: Option<Ipv6Net>,
    /// IPv4 default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// Default routes through the device itself, no gateway (ipvlan L3).
    pub default_dev: bool,
    /// Static routes through the interface.
    pub routes: &'a [RouteSpec],
    /// Default routes that replace the container's; the others are added only where it has
    /// none.
    pub take_default: TakeDefault,
}

/// `ip addr add …; ip link set IF up; ip route add default via …` for both families.
/// A container already on another network keeps the default route it has unless `take_default`
/// says this interface takes it over (`ip route replace default …`).
/// With IPv6, duplicate-address detection is switched off on the interface first (it would
/// delay the link-local and global addresses by seconds) and the address is added `nodad`.
/// `arp_notify` (IPv4, in the request that brings it up) and `ndisc_notify` (IPv6) are switched
/// on, so the caller can have the kernel announce the addresses once the link can carry them
/// (see [`super::announce`]).
pub async fn configure_interface(
    nl: &Netlink,
    ifname: &str,
    cfg: InterfaceConfig<'_>,
) -> Result<()> {
    let link = nl.require_link(ifname).await?;
    if cfg.ipv6.is_some() {
        nl.write_sysctl(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0")
            .await?;
        nl.write_sysctl(&format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1")
            .await?;
    }
    // The requests go out back to back on the container's socket and the kernel answers them
    // in order, so they cost one round trip instead of one each; it applies them in this order
    // too: the addresses before the link comes up (the prefix routes appear with it), then the
    // routes through the gateways. The first failure, in this order, is returned.
    let mut reqs: Vec<Request<'_>> = Vec::new();
    for net in [cfg.ipv4.map(IpNet::V4), cfg.ipv6.map(IpNet::V6)]
        .into_iter()
        .flatten()
    {
        reqs.push(Box::pin(nl.address().add(
            link.index,
            ifname,
            net.addr(),
            net.prefix_len(),
        )));
    }
    if cfg.ipv4.is_some() {
        // Loose reverse-path filtering: on several networks, a packet may arrive on one
        // interface from a peer the default route points through another.
        reqs.push(Box::pin(
            nl.link()
                .set(link.index, ifname)
                .up()
                .rp_filter(RpFilter::Loose)
                .arp_notify()
                .apply(),
        ));
    } else {
        reqs.push(Box::pin(nl.link().set(link.index, ifname).up().apply()));
    }
    let keep_existing = |r: Result<()>| match r {
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        other => other,
    };
    if let Some(gw) = cfg.gateway {
        if cfg.take_default.v4 {
            reqs.push(Box::pin(
                nl.route()
                    .default_via(IpAddr::V4(gw))
                    .dev(link.index)
                    .replace(),
            ));
        } else {
            let add = nl.route().default_via(IpAddr::V4(gw)).add();
            reqs.push(Box::pin(async move { keep_existing(add.await) }));
        }
    }
    if let Some(gw) = cfg.gateway6 {
        if cfg.take_default.v6 {
            reqs.push(Box::pin(
                nl.route()
                    .default_via(IpAddr::V6(gw))
                    .dev(link.index)
                    .replace(),
            ));
        } else {
            let add = nl.route().default_via(IpAddr::V6(gw)).dev(link.index).add();
            reqs.push(Box::pin(async move { keep_existing(add.await) }));
        }
    }
    if cfg.default_dev {
        for (family, has) in [
            (Family::V4, cfg.ipv4.is_some()),
            (Family::V6, cfg.ipv6.is_some()),
        ] {
            if has {
                let add = nl.route().default_dev(family, link.index).add();
                reqs.push(Box::pin(async move { keep_existing(add.await) }));
            }
        }
    }
    for r in cfg.routes {
        reqs.push(Box::pin(nl.route().spec(r, link.index).add()));
    }
    futures::future::join_all(reqs)
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()
        .map(drop)
}

/// One request of [`configure_interface`]'s pipeline.
type Request<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

/// What of an endpoint's container side differs from its record: the interface (by name) in
/// the container netns, up, with the recorded MAC and addresses, and a default route of each
/// family the endpoint has a gateway for. A netns whose file is gone is reported as such; one
/// that cannot be opened (not a netns any more) too.
pub async fn check_interface(
    kernel: &dyn crate::netlink::KernelOpener,
    att: &crate::endpoint::Attachment,
) -> Result<Vec<String>> {
    let Some(path) = &att.netns else {
        return Ok(Vec::new());
    };
    let here = || format!("in {}", path.display());
    let Ok(ns) = crate::netns::Netns::from_path(path) else {
        return Ok(vec![format!("container netns {}", path.display())]);
    };
    let nl = kernel.open(&ns).await?;
    let Some(link) = nl.link_by_name(&att.ifname).await? else {
        return Ok(vec![format!("{} {}", att.ifname, here())]);
    };
    let mut missing = Vec::new();
    if !link.up {
        missing.push(format!("{} up {}", att.ifname, here()));
    }
    if let Some(mac) = &att.mac
        && link.mac.as_deref() != Some(&mac.octets()[..])
    {
        missing.push(format!("{} with MAC {mac} {}", att.ifname, here()));
    }
    let have = nl.addresses(Some(link.index)).await?;
    let recorded = [
        att.ipv4.map(|n| (IpAddr::V4(n.addr()), n.prefix_len())),
        att.ipv6.map(|n| (IpAddr::V6(n.addr()), n.prefix_len())),
    ];
    for (ip, len) in recorded.into_iter().flatten() {
        if !have.iter().any(|(_, a, l)| *a == ip && *l == len) {
            missing.push(format!("address {ip}/{len} on {} {}", att.ifname, here()));
        }
    }
    if att.gateway.is_some() || att.gateway6.is_some() {
        let routes = nl.kernel().routes().await?;
        let default = |fam: Family| {
            routes.iter().any(|r| {
                r.family == fam
                    && r.prefix_len == 0
                    && r.table == crate::netlink::kernel::RT_TABLE_MAIN
            })
        };
        if att.gateway.is_some() && !default(Family::V4) {
            missing.push(format!("IPv4 default route {}", here()));
        }
        if att.gateway6.is_some() && !default(Family::V6) {
            missing.push(format!("IPv6 default route {}", here()));
        }
    }
    Ok(missing)
}
