//! Addresses: `ip address add|show` as typed operations.

use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};

use super::{Netlink, to_io};
use crate::error::{Error, Result};

impl Netlink {
    /// `ip address add ADDR/PREFIX dev (index)`; IPv6 addresses get `nodad` (DAD stalls
    /// container start-up for seconds).
    pub async fn add_address(
        &self,
        index: u32,
        name: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<()> {
        let mut req = self.handle.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute().await.map_err(|e| {
            Error::netlink(
                "add address",
                format!("{addr}/{prefix} on {name}"),
                to_io(e),
            )
        })
    }

    /// `ip address del ADDR/PREFIX dev (index)`; an address already gone is fine.
    pub async fn del_address(
        &self,
        index: u32,
        name: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = req
            .try_next()
            .await
            .map_err(|e| Error::netlink("list addresses", name, to_io(e)))?
        {
            let hit = m.header.prefix_len == prefix
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == addr));
            if hit {
                return self.handle.address().del(m).execute().await.map_err(|e| {
                    Error::netlink(
                        "delete address",
                        format!("{addr}/{prefix} on {name}"),
                        to_io(e),
                    )
                });
            }
        }
        Ok(())
    }

    /// Addresses on link `index` (`ip address show dev …`), or on every link when `None`.
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>> {
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        let msgs: Vec<_> = req
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list addresses", "", to_io(e)))?;
        let mut out = Vec::new();
        for m in msgs {
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    out.push((m.header.index, *ip, m.header.prefix_len));
                }
            }
        }
        Ok(out)
    }
}
