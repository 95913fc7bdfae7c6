//! The default route of a container on several networks: per address family, the attachment
//! with the highest `gw_priority` holds it (ties: the earliest attach); re-elected after every
//! detach, so it moves to the next network when its holder is detached, and after an attach
//! unless the new attachment won every family it has a gateway for (then its driver step
//! already replaced the container's default routes: see [`takes_default`]).

use std::net::IpAddr;

use crate::driver::container::TakeDefault;
use crate::endpoint::Attachment;
use crate::error::Result;
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

/// Per family, the attachment that holds the default route: among those with a gateway in
/// that family, the highest `gw_priority`, ties to the earliest attach (lowest `seq`).
pub(super) fn elect(atts: &[Attachment], v6: bool) -> Option<&Attachment> {
    atts.iter()
        .filter(|a| gateway(a, v6).is_some())
        .max_by(|x, y| x.gw_priority.cmp(&y.gw_priority).then(y.seq.cmp(&x.seq)))
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
            let Some(a) = elect(&atts, v6) else { continue };
            let (Some(path), Some(gateway)) = (&a.netns, gateway(a, v6)) else {
                continue;
            };
            let Ok(ns) = Netns::from_path(path) else {
                continue;
            };
            let nl = self.kernel.open(&ns).await?;
            let Some(link) = nl.link_by_name(&a.ifname).await? else {
                continue;
            };
            nl.route()
                .default_via(gateway)
                .dev(link.index)
                .replace()
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attachment to `network` with an IPv4 gateway (and an IPv6 one when `v6`).
    fn att(network: &str, prio: i32, seq: u64, v6: bool) -> Attachment {
        Attachment {
            network: network.into(),
            container: "c".into(),
            ifname: format!("eth-{network}"),
            mac: None,
            ipv4: Some("10.0.0.2/24".parse().unwrap()),
            ipv6: None,
            gateway: Some("10.0.0.1".parse().unwrap()),
            gateway6: v6.then(|| "fd00::1".parse().unwrap()),
            netns: None,
            ports: Vec::new(),
            host_ifname: None,
            gw_priority: prio,
            seq,
            routes: Vec::new(),
            aliases: Vec::new(),
            rules: Vec::new(),
            bandwidth: None,
            ifb: None,
            vlan: None,
            dhcp: None,
        }
    }

    #[test]
    fn the_highest_priority_holds_the_route_ties_to_the_earliest() {
        let atts = [
            att("a", 0, 1, false),
            att("b", 5, 2, true),
            att("c", 5, 3, true),
        ];
        assert_eq!(elect(&atts, false).unwrap().network, "b");
        assert_eq!(elect(&atts, true).unwrap().network, "b");
        // b detached: the route moves to c (same priority, next in attach order) in both
        // families; c detached too: IPv4 falls back to a, IPv6 has no holder left.
        let rest = [att("a", 0, 1, false), att("c", 5, 3, true)];
        assert_eq!(elect(&rest, false).unwrap().network, "c");
        assert_eq!(elect(&rest, true).unwrap().network, "c");
        let last = [att("a", 0, 1, false)];
        assert_eq!(elect(&last, false).unwrap().network, "a");
        assert!(elect(&last, true).is_none());
    }

    #[test]
    fn a_new_attachment_takes_the_route_only_with_a_strictly_higher_priority() {
        let others = [att("a", 5, 1, false)];
        let t = takes_default(&others, (true, true), 5);
        assert!(!t.v4, "a tie stays with the earlier attachment");
        assert!(t.v6, "no other IPv6 holder: the new one takes it");
        let t = takes_default(&others, (true, false), 6);
        assert!(t.v4 && !t.v6, "no IPv6 gateway, no IPv6 route");
        let t = takes_default(&[], (false, false), 0);
        assert!(!t.v4 && !t.v6);
    }
}
