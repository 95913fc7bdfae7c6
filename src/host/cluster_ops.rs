//! What `Host` does for cluster networks ([`Scope::Global`]): create and delete them in the
//! cluster store, import them into this host's records when it first uses one, advertise its
//! endpoints, and finish in the store what a detach could not while the store was away.

use std::net::IpAddr;

use crate::cluster::OverlayAgent;
use crate::cluster::records::EndpointRecord;
use crate::driver::{Peer, Scope, driver_for};
use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::network::{NetworkInfo, NetworkSpec};
use crate::options::DriverOptions;

use super::journal::{Journal, Undo};
use super::network_ops::network_rules;
use super::{Host, Step};

/// A detach whose store side waits for the store (`cluster-pending/NETWORK@CONTAINER.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct PendingDetach {
    pub network: String,
    pub container: String,
}

impl Host {
    fn need_cluster(&self, net: &str) -> Result<&crate::cluster::Cluster> {
        self.cluster.as_ref().ok_or_else(|| Error::NoCluster {
            network: net.into(),
            driver: "overlay",
        })
    }

    /// The overlay agent of this host, to spawn beside it (`tokio::spawn(agent.run())`):
    /// keeps its lease alive and its forwarding equal to the store. `None` without a cluster.
    pub fn overlay_agent(&self) -> Option<OverlayAgent> {
        self.cluster
            .clone()
            .map(|c| OverlayAgent::new(self.clone(), c))
    }

    /// Creates a cluster network (the caller validated the spec and holds the state lock):
    /// in the store first (names, VNI, subnets unique cluster-wide), then imported here.
    pub(super) async fn create_cluster_network(&self, spec: NetworkSpec) -> Result<NetworkInfo> {
        let cluster = self.need_cluster(&spec.name)?;
        cluster.vtep()?;
        if self.state.network(&spec.name)?.is_some() {
            return Err(Error::NetworkExists { name: spec.name });
        }
        let driver = driver_for(&spec.driver);
        let requests = spec.subnet_requests();
        let avoid = if requests.iter().any(|r| r.subnet.is_none()) {
            self.avoid_prefixes().await?
        } else {
            Vec::new()
        };
        let mut template = super::network_ops::new_record(&spec, driver.as_ref());
        if let DriverOptions::Overlay(o) = &mut template.driver {
            if o.encrypted && cluster.secret().is_none() {
                return Err(Error::NoClusterSecret { network: spec.name });
            }
            o.port = Some(cluster.identity().port);
        }
        let net = cluster.create_network(template, &requests, &avoid).await?;
        let imported = match self.after(Step::IpamReserve) {
            Ok(()) => self.import_locked(&net).await,
            Err(e) => Err(e),
        };
        match imported {
            Ok(local) => {
                tracing::info!(target: "berth::host", network = %net.name, "cluster network created");
                Ok(local)
            }
            Err(e) => {
                let mut j = Journal::default();
                j.push(Undo::ClusterNetwork(net.name.clone()));
                Err(self.rollback(j, e).await)
            }
        }
    }

    /// Makes this host's record (and firewall) of a cluster network (the caller holds the
    /// lock): the driver fills in what is per host (device, MTU). All or nothing.
    async fn import_locked(&self, cluster_net: &NetworkInfo) -> Result<NetworkInfo> {
        let mut net = cluster_net.clone();
        let mut journal = Journal::default();
        let r = async {
            let others = self.state.networks()?;
            self.make_here(&mut net, &others, &mut journal).await
        }
        .await;
        match r {
            Ok(()) => Ok(net),
            Err(e) => Err(self.rollback(journal, e).await),
        }
    }

    /// A network this host has no record of: imported from the cluster if it has one there
    /// (the caller holds the lock), else not found.
    pub(super) async fn import_cluster_network(&self, name: &str) -> Result<NetworkInfo> {
        let not_found = || Error::NetworkNotFound { name: name.into() };
        let Some(cluster) = &self.cluster else {
            return Err(not_found());
        };
        let (net, _) = cluster.network(name).await?.ok_or_else(not_found)?;
        self.import_locked(&net).await
    }

    /// This host's record of a network, checked against the store when it is a cluster
    /// network: one deleted there (or re-created with another id) is dropped here (it has no
    /// endpoint here, or the store would have refused) and the current one imported.
    pub(super) async fn current_cluster_network(&self, local: NetworkInfo) -> Result<NetworkInfo> {
        if driver_for(&local.driver).scope() != Scope::Global {
            return Ok(local);
        }
        let cluster = self.need_cluster(&local.name)?;
        match cluster.network(&local.name).await? {
            Some((n, _)) if n.id == local.id => Ok(local),
            other => {
                if !self.state.endpoints(&local.name)?.is_empty() {
                    return Ok(local);
                }
                self.drop_local_record(&local).await?;
                match other {
                    Some((n, _)) => self.import_locked(&n).await,
                    None => Err(Error::NetworkNotFound { name: local.name }),
                }
            }
        }
    }

    /// Removes this host's record, rules and devices of a cluster network (no endpoint here).
    pub(super) async fn drop_local_record(&self, net: &NetworkInfo) -> Result<()> {
        if let Some(rules) = network_rules(net) {
            self.firewall.remove_network(&rules).await?;
        }
        let others = self.state.networks()?;
        driver_for(&net.driver)
            .delete_network(self.ctx_with(&others), net)
            .await?;
        self.state.put_cluster_peers(&net.name, &[])?;
        self.state.remove_network(&net.name)
    }

    /// After the driver plumbed an endpoint of a cluster network: this host forwards to the
    /// network's other endpoints at once (no wait for the agent), and advertises the new one
    /// under its lease.
    pub(super) async fn cluster_attach(
        &self,
        net: &NetworkInfo,
        att: &Attachment,
        journal: &mut Journal,
    ) -> Result<()> {
        let cluster = self.need_cluster(&net.name)?;
        self.require_secret(net)?;
        let records = self.peer_records(net).await?;
        self.publish_peers(&net.name, &records)?;
        let peers: Vec<Peer> = records.iter().map(peer_of).collect();
        driver_for(&net.driver)
            .sync_peers(self.ctx(), net, &peers)
            .await?;
        if super::encryption_ops::is_encrypted(net) {
            // Before the endpoint is advertised: the peers that see it find this host's SAs.
            journal.push(Undo::Encryption);
            self.sync_encryption_locked(Some(&net.name)).await?;
            self.after(Step::ClusterEncryption)?;
        }
        let rec = self.endpoint_record(net, att)?;
        cluster.register(&net.name, &rec).await?;
        journal.push(Undo::ClusterEndpoint {
            network: net.name.clone(),
            container: att.container.clone(),
        });
        self.after(Step::ClusterAdvertise)
    }

    /// What this host advertises of one of its endpoints.
    pub(crate) fn endpoint_record(
        &self,
        net: &NetworkInfo,
        att: &Attachment,
    ) -> Result<EndpointRecord> {
        let cluster = self.need_cluster(&net.name)?;
        // What the embedded resolver answers for it on this network: its name and aliases.
        let mut names = vec![att.container.clone()];
        names.extend(att.aliases.iter().cloned());
        names.dedup();
        Ok(EndpointRecord {
            host: cluster.identity().name.clone(),
            container: att.container.clone(),
            vtep: cluster.vtep()?,
            mac: att.mac.ok_or_else(|| {
                Error::invalid("endpoint", &att.container, "overlay endpoint without a MAC")
            })?,
            ipv4: att.ip(),
            ipv6: att.ip6(),
            names,
            incarnation: 0,
        })
    }

    /// The endpoints of a cluster network on other hosts, as the store has them.
    pub(crate) async fn peer_records(&self, net: &NetworkInfo) -> Result<Vec<EndpointRecord>> {
        let cluster = self.need_cluster(&net.name)?;
        let me = cluster.identity().name.clone();
        Ok(cluster
            .endpoint_records(&net.name)
            .await?
            .into_iter()
            .filter(|r| r.host != me)
            .collect())
    }

    /// The endpoints of a cluster network on other hosts, as the driver forwards to them.
    pub(crate) async fn peers_of(&self, net: &NetworkInfo) -> Result<Vec<Peer>> {
        Ok(self.peer_records(net).await?.iter().map(peer_of).collect())
    }

    /// The store side of a detach: withdraw the endpoint, release its addresses. With the
    /// store away, the local side is done all the same and this is kept for the agent to
    /// finish when the store is back.
    pub(super) async fn cluster_detach(&self, net: &NetworkInfo, att: &Attachment) {
        if let Err(e) = self.finish_store_detach(&net.name, &att.container).await {
            tracing::warn!(target: "berth::host", network = %net.name, container = %att.container,
                           error = %e, "store side of detach deferred until the store is back");
            let p = PendingDetach {
                network: net.name.clone(),
                container: att.container.clone(),
            };
            if let Err(e) = self.state.put_pending_detach(&p) {
                tracing::error!(target: "berth::host", error = %e, "pending detach not recorded");
            }
        }
    }

    /// Withdraws an endpoint and releases its addresses in the store.
    pub(crate) async fn finish_store_detach(&self, network: &str, container: &str) -> Result<()> {
        self.need_cluster(network)?
            .withdraw(network, container)
            .await
    }

    /// Detaches whose store side is still to do: finished now if the store answers.
    pub(crate) async fn finish_pending_detaches(&self) -> Result<usize> {
        let mut done = 0;
        for p in self.state.pending_detaches()? {
            // Re-attached since: the endpoint is live again, nothing to withdraw.
            if self.state.endpoint(&p.network, &p.container)?.is_none() {
                self.finish_store_detach(&p.network, &p.container).await?;
            }
            self.state.remove_pending_detach(&p)?;
            done += 1;
        }
        Ok(done)
    }

    /// gc of one cluster network (the caller holds the lock): this host's endpoints in the
    /// store that no record keeps are withdrawn with their addresses, the forwarding is made
    /// to match the store, and with no endpoint here the network's devices go. Returns (withdrawn containers, entries fixed).
    pub(super) async fn cluster_gc(
        &self,
        net: &NetworkInfo,
        live: &std::collections::HashSet<&str>,
    ) -> Result<(Vec<String>, usize)> {
        let cluster = self.need_cluster(&net.name)?;
        let me = cluster.identity().name.clone();
        let mut withdrawn = Vec::new();
        for r in cluster.endpoint_records(&net.name).await? {
            if r.host == me && !live.contains(r.container.as_str()) {
                cluster.withdraw(&net.name, &r.container).await?;
                withdrawn.push(r.container);
            }
        }
        let driver = driver_for(&net.driver);
        if live.is_empty() {
            // No endpoint here: no device either (an attach killed after making them).
            driver.delete_network(self.ctx(), net).await?;
            return Ok((withdrawn, 0));
        }
        let peers = self.peers_of(net).await?;
        let fixed = driver.sync_peers(self.ctx(), net, &peers).await?;
        Ok((withdrawn, fixed.added + fixed.removed))
    }

    /// What of a cluster network's forwarding is missing here (for `check`).
    pub(super) async fn cluster_check(&self, net: &NetworkInfo) -> Result<Vec<String>> {
        let peers = self.peers_of(net).await?;
        driver_for(&net.driver)
            .check_peers(self.ctx(), net, &peers)
            .await
    }

    /// Every local network of cluster scope.
    pub(crate) fn cluster_networks_here(&self) -> Result<Vec<NetworkInfo>> {
        Ok(self
            .state
            .networks()?
            .into_iter()
            .filter(|n| !n.removing && driver_for(&n.driver).scope() == Scope::Global)
            .collect())
    }
}

/// A peer from its record.
pub(crate) fn peer_of(r: &EndpointRecord) -> Peer {
    Peer {
        mac: r.mac,
        addresses: r.ipv4.into_iter().chain(r.ipv6).collect::<Vec<IpAddr>>(),
        vtep: r.vtep,
    }
}

impl Host {
    /// Makes this host's forwarding on one cluster network equal to `peers`; `None` when this
    /// host has no record of it.
    pub(crate) async fn apply_peers(
        &self,
        network: &str,
        records: &[EndpointRecord],
    ) -> Result<Option<crate::driver::PeerSync>> {
        // Under the state lock: an attach or detach does not make or remove the devices
        // meanwhile.
        let _lock = self.state.lock().await?;
        let Some(net) = self.state.network(network)?.filter(|n| !n.removing) else {
            return Ok(None);
        };
        let peers: Vec<Peer> = records.iter().map(peer_of).collect();
        let r = driver_for(&net.driver)
            .sync_peers(self.ctx(), &net, &peers)
            .await?;
        // The kernel first (that is what the peers wait for), then the names.
        self.publish_peers(network, records)?;
        if super::encryption_ops::is_encrypted(&net) {
            self.sync_encryption_locked(None).await?;
        }
        Ok(Some(r))
    }

    /// Adds forwarding to `new` endpoints of other hosts without reading the kernel (the
    /// agent's fast path for an endpoint just advertised); `all` is every other host's
    /// endpoint now, for the names. `None` when this host has no record of the network.
    pub(crate) async fn add_peers(
        &self,
        network: &str,
        new: &[EndpointRecord],
        all: &[EndpointRecord],
    ) -> Result<Option<crate::driver::PeerSync>> {
        let _lock = self.state.lock().await?;
        let Some(net) = self.state.network(network)?.filter(|n| !n.removing) else {
            return Ok(None);
        };
        let peers: Vec<Peer> = new.iter().map(peer_of).collect();
        let r = driver_for(&net.driver)
            .add_peers(self.ctx(), &net, &peers)
            .await?;
        self.publish_peers(network, all)?;
        if super::encryption_ops::is_encrypted(&net) {
            self.sync_encryption_locked(None).await?;
        }
        Ok(Some(r))
    }

    /// Writes the other hosts' endpoints of a network for the embedded resolver, when they
    /// changed (an unchanged file would make it reload for nothing).
    fn publish_peers(&self, network: &str, records: &[EndpointRecord]) -> Result<()> {
        let mut sorted = records.to_vec();
        sorted.sort_by(|a, b| (&a.host, &a.container).cmp(&(&b.host, &b.container)));
        if self.state.cluster_peers(network)? != sorted {
            self.state.put_cluster_peers(network, &sorted)?;
        }
        Ok(())
    }

    /// With a new lease: re-validates this host's address claims against its records
    /// (restoring claims still free, reporting those another container has now) and
    /// re-advertises every endpoint not in conflict.
    pub(crate) async fn advertise_all(&self) -> Result<Vec<crate::ipam::Conflict>> {
        let _lock = self.state.lock().await?;
        let Some(cluster) = &self.cluster else {
            return Ok(Vec::new());
        };
        let mut conflicts = Vec::new();
        for net in self.cluster_networks_here()? {
            if cluster.network(&net.name).await?.is_none() {
                continue;
            }
            let atts = self.state.endpoints(&net.name)?;
            let held = atts
                .iter()
                .map(|a| {
                    (
                        a.container.clone(),
                        a.ip().into_iter().chain(a.ip6()).collect(),
                    )
                })
                .collect();
            let ipam = self.ipam_of(&net)?;
            let r = ipam
                .reconcile(&net.name, &super::gc::recorded_pool(&net, held))
                .await?;
            for att in &atts {
                if r.conflicts.iter().any(|c| c.recorded == att.container) {
                    continue;
                }
                let rec = self.endpoint_record(&net, att)?;
                cluster.register(&net.name, &rec).await?;
            }
            conflicts.extend(r.conflicts);
        }
        Ok(conflicts)
    }

    /// Drops this host's records of cluster networks deleted from the store (they have no
    /// endpoint here: the store refuses to delete a network that has).
    pub(crate) async fn forget_deleted_networks(&self) -> Result<()> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let here = self.cluster_networks_here()?;
        if here.is_empty() {
            return Ok(());
        }
        let live = cluster.networks().await?;
        let _lock = self.state.lock().await?;
        for net in here {
            if live.iter().any(|g| g.id == net.id) || !self.state.endpoints(&net.name)?.is_empty() {
                continue;
            }
            self.drop_local_record(&net).await?;
            if super::encryption_ops::is_encrypted(&net) {
                // Its peers are gone with it: outbound SAs kept for them go too.
                self.sync_encryption_locked(None).await?;
            }
            tracing::info!(target: "berth::host", network = %net.name, "cluster network deleted elsewhere: dropped here");
        }
        Ok(())
    }
}
