//! Routes: `ip route add|show` as typed operations.

use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::RouteAttribute;

use super::{Netlink, to_io};
use crate::error::{Error, Result};

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

    /// The output interface of the IPv4 default route in the main table, if there is one.
    pub async fn default_route_oif_v4(&self) -> Result<Option<u32>> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<_> = self
            .handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list routes", "", to_io(e)))?;
        Ok(routes
            .into_iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                })
            }))
    }
}
