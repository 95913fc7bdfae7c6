//! What an operation has done so far, and how to undo it.

use crate::endpoint::Attachment;
use crate::error::Error;
use crate::firewall::{EndpointRules, LinkRule, NetworkRules};
use crate::names::SandboxRecord;
use crate::network::NetworkInfo;

use super::Host;

/// One finished step and what undoes it.
#[derive(Debug)]
pub(super) enum Undo {
    IpamPool(String),
    IpamAddress {
        ipam: std::sync::Arc<dyn crate::ipam::Ipam>,
        network: String,
        container: String,
        allocation: crate::ipam::Allocation,
    },
    DriverNetwork(Box<NetworkInfo>),
    /// A network created in the cluster store.
    ClusterNetwork(String),
    /// An endpoint advertised in the cluster store.
    ClusterEndpoint {
        network: String,
        container: String,
    },
    /// IPsec state was synchronised for an attach to an encrypted network: synchronised
    /// again without it.
    Encryption,
    /// A DHCP lease was granted for the endpoint (released on rollback).
    DhcpLease(Box<Attachment>),
    /// `lo` of the container netns was down and was brought up.
    LoopbackUp(crate::netlink::Netlink),
    DriverEndpoint(Box<(NetworkInfo, Attachment)>),
    FirewallNetwork(NetworkRules),
    FirewallEndpoint(NetworkRules, EndpointRules),
    /// Link flows added towards an attaching container.
    FirewallLinks(NetworkRules, Vec<LinkRule>),
    NetworkRecord(String),
    EndpointRecord {
        network: String,
        container: String,
    },
    /// Bandwidth limits put on an endpoint's host end: its qdiscs and its `ifb` are removed.
    Bandwidth {
        host_ifname: String,
        ifb: Option<String>,
    },
    /// The sandbox record as it was before (none: remove it).
    SandboxRecord {
        container: String,
        prev: Option<Box<SandboxRecord>>,
    },
    /// Routing rules added in a container netns (policy routing): deleted again.
    PolicyRules(crate::netlink::Netlink, Vec<crate::rule::RuleSpec>),
}

/// Finished steps, in order.
#[derive(Debug, Default)]
pub(super) struct Journal(pub(super) Vec<Undo>);

impl Journal {
    pub(super) fn push(&mut self, u: Undo) {
        self.0.push(u);
    }
}

impl Host {
    /// Undoes `journal` in reverse and returns `original`, or [`Error::CleanupFailed`] carrying
    /// it and every cleanup error.
    pub(super) async fn rollback(&self, journal: Journal, original: Error) -> Error {
        let mut cleanup = Vec::new();
        for undo in journal.0.into_iter().rev() {
            tracing::debug!(target: "berth::host", ?undo, "rolling back");
            let r = match &undo {
                Undo::IpamPool(n) => self.ipam.release_pool(n).await,
                Undo::IpamAddress {
                    ipam,
                    network,
                    container,
                    allocation,
                } => ipam.revert(network, container, allocation).await,
                Undo::ClusterNetwork(name) => match &self.cluster {
                    Some(c) => c.delete_network(name).await,
                    None => Ok(()),
                },
                Undo::Encryption => self.sync_encryption_locked(None).await.map(drop),
                Undo::ClusterEndpoint { network, container } => match &self.cluster {
                    Some(c) => c.unregister(network, container).await,
                    None => Ok(()),
                },
                Undo::DriverNetwork(net) => match self.state.networks() {
                    Ok(others) => {
                        crate::driver::driver_for(&net.driver)
                            .delete_network(self.ctx_with(&others), net)
                            .await
                    }
                    Err(e) => Err(e),
                },
                Undo::DriverEndpoint(b) => {
                    let (net, att) = &**b;
                    crate::driver::driver_for(&net.driver)
                        .detach(self.ctx(), net, att)
                        .await
                }
                Undo::DhcpLease(att) => {
                    self.dhcp_release(att).await;
                    Ok(())
                }
                Undo::LoopbackUp(nl) => crate::driver::container::loopback_down(nl).await,
                Undo::FirewallNetwork(r) => self.firewall.remove_network(r).await,
                Undo::FirewallEndpoint(n, e) => self.firewall.remove_endpoint(n, e).await,
                Undo::FirewallLinks(n, l) => self.firewall.replace_links(n, l, &[]).await,
                Undo::NetworkRecord(n) => self.state.remove_network(n),
                Undo::EndpointRecord { network, container } => {
                    self.state.remove_endpoint(network, container)
                }
                Undo::Bandwidth { host_ifname, ifb } => {
                    self.remove_bandwidth(host_ifname, ifb.as_deref()).await
                }
                Undo::SandboxRecord { container, prev } => match prev {
                    Some(p) => self.state.put_sandbox(p),
                    None => self.state.remove_sandbox(container),
                },
                Undo::PolicyRules(nl, rules) => super::policy_ops::delete_rules(nl, rules).await,
            };
            if let Err(e) = r {
                tracing::error!(target: "berth::host", ?undo, error = %e, "rollback step failed");
                cleanup.push(e);
            }
        }
        if cleanup.is_empty() {
            original
        } else {
            Error::CleanupFailed {
                original: Box::new(original),
                cleanup,
            }
        }
    }
}
