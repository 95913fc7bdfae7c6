//! The default route of a container on several networks: per address family, the attachment
//! with the highest `gw_priority` holds it (ties: the earliest attach); re-elected after every
//! detach, so it moves to the next network when its holder is detached, and after an attach
//! unless the new attachment won every family it has a gateway for (then its driver step
//! already replaced the container's default routes: see [`takes_default`]).

use std::net::IpAddr;

use crate::driver::container::TakeDefault;
use crate::endpoint::Attachment;
use crate::error::Result;
use crate::netlink::Netlink;
use crate::netns::Netns;

use super::Host;

/// The default gateway of `a` in one family.
fn gateway(a: &Attachment, v6: bool) -> Option<IpAddr> {
    if v6 {
        a.gateway6.map(IpAddr::V6)
    } else {
        a.gateway.map(IpAddr::V4)
    }
}

/// Per family, whether an attachment with these gateways and `gw_priority`, made after
/// `others`, wins the election: it has a gateway and a strictly higher priority than every
/// other holder of one (ties go to the earliest attach).
pub(super) fn takes_default(
    others: &[Attachment],
    gateways: (bool, bool),
    gw_priority: i32,
) -> TakeDefault {
    let wins = |v6: bool, has: bool| {
        has && others
            .iter()
            .filter(|a| gateway(a, v6).is_some())
            .all(|a| gw_priority > a.gw_priority)
    };
    TakeDefault {
        v4: wins(false, gateways.0),
        v6: wins(true, gateways.1),
    }
}

impl Host {
    /// Every attachment of `container`, on any network.
    pub(super) fn attachments_of(&self, container: &str) -> Result<Vec<Attachment>> {
        let mut atts: Vec<Attachment> = Vec::new();
        for n in self.state.networks()? {
            atts.extend(self.state.endpoint(&n.name, container)?);
        }
        Ok(atts)
    }

    /// Puts each family's default route of `container` on its elected attachment. Attachments
    /// whose netns was not opened by path cannot be reached again and are left as they are.
    pub(super) async fn sync_default_routes(&self, container: &str) -> Result<()> {
        let atts = self.attachments_of(container)?;
        for v6 in [false, true] {
            let gw = |a: &Attachment| gateway(a, v6);
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
