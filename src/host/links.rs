//! Legacy links on networks with ICC off: which flows the firewall must let through.
//!
//! Container X with `--link Y` may open connections to Y's exposed ports (its `--expose` ports
//! and the container side of its published ports) when both are on the same ICC-off network.
//! The flows live in X's [`EndpointRules::links`] (added and removed with X's endpoint, and
//! restored by `reapply`/`gc` from the records); when Y attaches, detaches or comes back with
//! another address, the flows towards it are replaced with [`crate::Firewall::replace_links`].

use crate::endpoint::Attachment;
use crate::error::Result;
use crate::firewall::ruleset::PortGuard;
use crate::firewall::{EndpointRules, LinkRule};
use crate::names::NameOptions;
use crate::network::NetworkInfo;
use crate::port::ExposedPort;

use super::Host;
use super::network_ops::network_rules;

/// `from` → `to` on each of `exposed`, per family both have.
fn flows(from: &Attachment, to: &Attachment, exposed: &[ExposedPort]) -> Vec<LinkRule> {
    let pairs = [(from.ip(), to.ip()), (from.ip6(), to.ip6())];
    let mut out = Vec::new();
    for (f, t) in pairs {
        let (Some(f), Some(t)) = (f, t) else { continue };
        out.extend(exposed.iter().map(|p| LinkRule {
            from: f,
            to: t,
            proto: p.proto,
            port: p.port,
        }));
    }
    out
}

impl Host {
    /// What `container` exposes: its recorded `--expose` ports and published container ports.
    fn exposed(&self, att: &Attachment) -> Result<Vec<ExposedPort>> {
        let mut v = self
            .state
            .sandbox(&att.container)?
            .map(|r| r.exposed)
            .unwrap_or_default();
        for p in &att.ports {
            let e = ExposedPort {
                proto: p.proto,
                port: p.container_port,
            };
            if !v.contains(&e) {
                v.push(e);
            }
        }
        Ok(v)
    }

    /// The flows `att`'s container opens on `net` to the containers `names` links to.
    pub(super) fn links_from(
        &self,
        net: &NetworkInfo,
        att: &Attachment,
        names: &NameOptions,
    ) -> Result<Vec<LinkRule>> {
        let mut out = Vec::new();
        if !icc_off(net) {
            return Ok(out);
        }
        for l in &names.links {
            if let Some(target) = self.state.endpoint(&net.name, &l.container)? {
                out.extend(flows(att, &target, &self.exposed(&target)?));
            }
        }
        Ok(out)
    }

    /// The flows into `att`'s container from the containers on `net` that link to it.
    pub(super) fn links_to(&self, net: &NetworkInfo, att: &Attachment) -> Result<Vec<LinkRule>> {
        let mut out = Vec::new();
        if !icc_off(net) {
            return Ok(out);
        }
        let exposed = self.exposed(att)?;
        for other in self.state.endpoints(&net.name)? {
            if other.container == att.container {
                continue;
            }
            let links = self
                .state
                .sandbox(&other.container)?
                .map(|r| r.names.links)
                .unwrap_or_default();
            if links.iter().any(|l| l.container == att.container) {
                out.extend(flows(&other, att, &exposed));
            }
        }
        Ok(out)
    }

    /// The endpoint's firewall facts from the records: published ports, the link flows it
    /// opens and, on an anti-spoofing network, its port and MAC (`None` when it has none of
    /// these, or no IPv4 address).
    pub(super) fn endpoint_fw(
        &self,
        net: &NetworkInfo,
        att: &Attachment,
        names: Option<&NameOptions>,
    ) -> Result<Option<EndpointRules>> {
        let recorded;
        let names = match names {
            Some(n) => n,
            None => {
                recorded = self
                    .state
                    .sandbox(&att.container)?
                    .map(|r| r.names)
                    .unwrap_or_default();
                &recorded
            }
        };
        let links = self.links_from(net, att, names)?;
        let Some(ip) = att.ipv4.map(|n| n.addr()) else {
            return Ok(None);
        };
        let anti_spoofing = network_rules(net).is_some_and(|r| r.anti_spoofing);
        let guard = match (anti_spoofing, &att.host_ifname, att.mac) {
            (true, Some(port), Some(mac)) => Some(PortGuard {
                port: port.clone(),
                mac: mac.octets(),
            }),
            _ => None,
        };
        Ok(
            (!att.ports.is_empty() || !links.is_empty() || guard.is_some()).then(|| {
                EndpointRules {
                    ip,
                    ip6: att.ipv6.map(|n| n.addr()),
                    ports: att.ports.clone(),
                    links,
                    guard,
                }
            }),
        )
    }
}

/// Whether the firewall isolates the containers of `net` from each other (so legacy links
/// need flows of their own).
fn icc_off(net: &NetworkInfo) -> bool {
    network_rules(net).is_some_and(|r| !r.icc)
}
