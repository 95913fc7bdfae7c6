//! Neighbour (ARP / NDP) cache entries.

use std::net::IpAddr;

use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};

use super::{Netlink, is_errno, to_io};
use crate::error::{Error, Result};

impl Netlink {
    /// `ip neigh del ADDR dev (index)`: forgets the link-layer address cached for `addr` on
    /// link `index`. Returns whether there was an entry.
    pub async fn del_neighbour(&self, index: u32, name: &str, addr: IpAddr) -> Result<bool> {
        let mut msg = NeighbourMessage::default();
        msg.header.ifindex = index;
        let (family, dst) = match addr {
            IpAddr::V4(a) => (AddressFamily::Inet, NeighbourAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, NeighbourAddress::Inet6(a)),
        };
        msg.header.family = family;
        msg.attributes.push(NeighbourAttribute::Destination(dst));
        match self.handle.neighbours().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(e) => Err(Error::netlink(
                "delete neighbour",
                format!("{addr} on {name}"),
                to_io(e),
            )),
        }
    }
}
