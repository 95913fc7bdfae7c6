//! Routes: `ip route add|show` as typed operations.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use super::{Netlink, to_io};
use crate::error::{Error, Result};

fn host_route(addr: IpAddr, index: u32) -> RouteMessage {
    match addr {
        IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(a, 32)
            .output_interface(index)
            .scope(rtnetlink::packet_route::route::RouteScope::Link)
            .build(),
        IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(a, 128)
            .output_interface(index)
            .build(),
    }
}

impl Netlink {
    /// `ip route add default via GW`.
    pub async fn add_default_route_v4(&self, gateway: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink("add default route", format!("via {gateway}"), to_io(e)))
    }

    /// `ip -6 route add default via GW dev (index)`.
    pub async fn add_default_route_v6(&self, gateway: Ipv6Addr, index: u32) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink("add default route", format!("via {gateway}"), to_io(e)))
    }

    /// `ip route add default dev (index)` for one family (ipvlan L3: no gateway).
    pub async fn add_default_route_dev(&self, index: u32, v6: bool) -> Result<()> {
        let msg = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new()
                .output_interface(index)
                .build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new()
                .output_interface(index)
                .build()
        };
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink("add default route", format!("dev {index}"), to_io(e)))
    }

    /// `ip route add ADDR/32 dev (index)` (or /128): a host route through one link.
    pub async fn add_host_route(&self, addr: IpAddr, index: u32) -> Result<()> {
        self.handle
            .route()
            .add(host_route(addr, index))
            .execute()
            .await
            .map_err(|e| Error::netlink("add route", format!("{addr} dev {index}"), to_io(e)))
    }

    /// `ip route del ADDR/32 dev (index)`; a route already gone is fine.
    pub async fn del_host_route(&self, addr: IpAddr, index: u32) -> Result<()> {
        match self
            .handle
            .route()
            .del(host_route(addr, index))
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if super::is_errno(&e, libc::ESRCH) || super::is_errno(&e, libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(Error::netlink(
                "delete route",
                format!("{addr} dev {index}"),
                to_io(e),
            )),
        }
    }

    /// `ip route add DST [via GW] dev (index) [metric M]`.
    pub async fn add_route(&self, r: &crate::route::RouteSpec, index: u32) -> Result<()> {
        let mut msg = match (r.dst, r.via) {
            (IpNet::V4(d), via) => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(d.addr(), d.prefix_len())
                    .output_interface(index);
                if let Some(IpAddr::V4(g)) = via {
                    b = b.gateway(g);
                }
                b.build()
            }
            (IpNet::V6(d), via) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(d.addr(), d.prefix_len())
                    .output_interface(index);
                if let Some(IpAddr::V6(g)) = via {
                    b = b.gateway(g);
                }
                b.build()
            }
        };
        if let Some(m) = r.metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }
        self.handle
            .route()
            .add(msg)
            .execute()
            .await
            .map_err(|e| Error::netlink("add route", r.to_string(), to_io(e)))
    }

    /// `ip route replace default via GW dev (index)`: moves the default route of GW's family.
    pub async fn replace_default_route(&self, gateway: IpAddr, index: u32) -> Result<()> {
        let msg = match gateway {
            IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(g)
                .output_interface(index)
                .build(),
            IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(g)
                .output_interface(index)
                .build(),
        };
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                Error::netlink("replace default route", format!("via {gateway}"), to_io(e))
            })
    }

    async fn routes_v4_and_v6(&self) -> Result<Vec<RouteMessage>> {
        let mut all = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut v: Vec<RouteMessage> = self
                .handle
                .route()
                .get(msg)
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::netlink("list routes", "", to_io(e)))?;
            all.append(&mut v);
        }
        Ok(all)
    }

    /// The output interface of the IPv4 default route in the main table, if there is one.
    pub async fn default_route_oif_v4(&self) -> Result<Option<u32>> {
        let routes = self.routes_v4_and_v6().await?;
        Ok(routes
            .into_iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .filter(|r| r.header.address_family == rtnetlink::packet_route::AddressFamily::Inet)
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                })
            }))
    }

    /// Destinations of on-link routes (no gateway, not default) in the main table, both
    /// families (`ip route show scope link`).
    pub async fn onlink_routes(&self) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        for r in self.routes_v4_and_v6().await? {
            let len = r.header.destination_prefix_length;
            if len == 0
                || r.header.table != rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN
            {
                continue;
            }
            let mut dst = None;
            let mut via = false;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                        dst = Some(IpAddr::V4(*ip))
                    }
                    RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                        dst = Some(IpAddr::V6(*ip))
                    }
                    RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => via = true,
                    _ => {}
                }
            }
            if let (Some(d), false) = (dst, via)
                && let Ok(n) = IpNet::new(d, len)
                && !d.is_loopback()
                && !matches!(d, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.segments()[0] & 0xff00 == 0xff00)
            {
                out.push(n.trunc());
            }
        }
        Ok(out)
    }
}
