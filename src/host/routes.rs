//! The default route of a container on several networks: per address family, the attachment
//! with the highest `gw_priority` holds it (ties: the earliest attach); re-elected after every
//! attach and detach, so it moves to the next network when its holder is detached.

use std::net::IpAddr;

use crate::endpoint::Attachment;
use crate::error::Result;
use crate::netlink::Netlink;
use crate::netns::Netns;

use super::Host;

impl Host {
    /// Puts each family's default route of `container` on its elected attachment. Attachments
    /// whose netns was not opened by path cannot be reached again and are left as they are.
    pub(super) async fn sync_default_routes(&self, container: &str) -> Result<()> {
        let mut atts: Vec<Attachment> = Vec::new();
        for n in self.state.networks()? {
            atts.extend(self.state.endpoint(&n.name, container)?);
        }
        for v6 in [false, true] {
            let gw = |a: &Attachment| {
                if v6 {
                    a.gateway6.map(IpAddr::V6)
                } else {
                    a.gateway.map(IpAddr::V4)
                }
            };
            let winner = atts
                .iter()
                .filter(|a| gw(a).is_some())
                .max_by(|x, y| x.gw_priority.cmp(&y.gw_priority).then(y.seq.cmp(&x.seq)));
            let Some(a) = winner else { continue };
            let (Some(path), Some(gateway)) = (&a.netns, gw(a)) else {
                continue;
            };
            let Ok(ns) = Netns::from_path(path) else {
                continue;
            };
            let nl = Netlink::open(&ns).await?;
            let Some(link) = nl.link_by_name(&a.ifname).await? else {
                continue;
            };
            nl.replace_default_route(gateway, link.index).await?;
        }
        Ok(())
    }
}
