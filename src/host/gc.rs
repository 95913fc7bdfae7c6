//! `Host::gc`: remove everything berth made for containers that are gone, and whatever a dead
//! operation (a process killed at any instant of a create, attach, detach or delete) or a
//! damaged state dir left behind.
//!
//! The order: repair corrupt records (saved to `quarantine/` first) → finish interrupted network
//! removals → forget endpoint records of networks no record knows → detach every container not
//! kept, and finish every interrupted detach → rebuild each network's IPAM from the endpoint
//! records (lost claims restored, stray ones released, duplicates reported) → drop pools of unknown networks → rebuild the ports
//! index → remove berth's marked links no record keeps (and unrecorded veths on berth's
//! bridges), the kept attachments' missing routing rules added → the firewall from the records → sandbox records and temporary files. Every step
//! runs even when an earlier one failed; all errors are returned together.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use crate::driver::driver_for;
use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::ipam::{Conflict, RecordedPool, Released};
use crate::network::NetworkInfo;

use super::{Host, Step};

/// What [`Host::gc`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Attachments detached: (network, container).
    pub detached: Vec<(String, String)>,
    /// Addresses released that no attachment held (dead attaches).
    pub released: Vec<Released>,
    /// Addresses an attachment's record holds that the IPAM had lost, claimed again:
    /// (network, container, address).
    pub restored: Vec<(String, String, IpAddr)>,
    /// Addresses two records hold (never resolved silently: one of the containers must go).
    pub conflicts: Vec<Conflict>,
    /// Host-side links removed that no record keeps (dead creates and attaches, deleted
    /// records).
    pub links_removed: Vec<String>,
    /// Address pools of networks that have no record (dead network creates).
    pub pools_removed: Vec<String>,
    /// Networks whose interrupted removal was finished.
    pub removals_finished: Vec<String>,
    /// Endpoint records of networks that have no record, forgotten: (network, container).
    pub endpoints_forgotten: Vec<(String, String)>,
    /// Copies of corrupt records (under `quarantine/`): a network record was restored from its
    /// backup where it had one, any other was removed.
    pub quarantined: Vec<PathBuf>,
    /// Sandbox records (name settings, host/container mode) of containers that are gone.
    pub sandboxes_removed: Vec<String>,
    /// Temporary files of writers killed mid-write, and detach marks of detaches killed
    /// after their record was removed.
    pub tmp_files_removed: usize,
    /// This host's endpoints in the cluster store that no record here keeps (an attach killed
    /// after advertising), withdrawn with their addresses: (network, container).
    pub cluster_withdrawn: Vec<(String, String)>,
    /// Forwarding entries to other hosts' endpoints added or removed so that the kernel
    /// matches the store (cluster networks).
    pub forwarding_fixed: usize,
    /// ESP SAs and IPsec policies added, switched or removed so that the kernel matches the
    /// hosts this one shares encrypted networks with.
    pub ipsec_fixed: usize,
    /// Bridge VLAN state put back in line with the endpoints left (a trunk's VLAN no endpoint
    /// has any more, a bridge's filtering with no VLAN endpoint left): after a dead attach.
    pub vlans_fixed: usize,
    /// Routing rules a kept attachment's record names, added back in its container netns (an
    /// attach killed after its record, before its rules).
    pub rules_fixed: usize,
}

/// What `net`'s IPAM must hold: its subnets and aux addresses, and `held` (container → its
/// recorded addresses).
pub(super) fn recorded_pool(
    net: &NetworkInfo,
    held: BTreeMap<String, Vec<IpAddr>>,
) -> RecordedPool {
    RecordedPool {
        subnets: net.subnets.clone(),
        aux: net.aux.clone(),
        held,
    }
}

impl Host {
    /// Before an allocation on `net` (the caller holds the state lock): when the IPAM claims
    /// fewer addresses than the endpoint records hold, claims were lost behind berth's back (a
    /// damaged state dir); they are restored from the records first, so no address a
    /// container holds is handed out again. Costs two directory reads.
    pub(super) async fn restore_lost_claims(&self, net: &NetworkInfo) -> Result<()> {
        let families = net
            .subnets
            .iter()
            .filter(|s| s.subnet.addr().is_ipv4())
            .count()
            .min(1)
            + net
                .subnets
                .iter()
                .filter(|s| s.subnet.addr().is_ipv6())
                .count()
                .min(1);
        let expected = self.state.endpoint_count(&net.name)? * families;
        let ipam = self.ipam_of(net)?;
        if ipam.claim_count(&net.name).await? >= expected {
            return Ok(());
        }
        let mut held: BTreeMap<String, Vec<IpAddr>> = self
            .state
            .endpoints(&net.name)?
            .into_iter()
            .map(|a| {
                (
                    a.container.clone(),
                    a.ip().into_iter().chain(a.ip6()).collect(),
                )
            })
            .collect();
        // Claims no record holds stay (a dead attach's: its link may still carry the address
        // until gc removes both together); only lost ones are restored.
        if let Some(pool) = ipam.pool(&net.name).await? {
            for (ip, c) in pool.allocations() {
                let ips = held.entry(c.clone()).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        let r = ipam.reconcile(&net.name, &recorded_pool(net, held)).await?;
        tracing::warn!(target: "berth::host", network = %net.name, restored = ?r.restored,
                       released = r.released.len(), conflicts = ?r.conflicts,
                       "address claims were lost; restored from the endpoint records");
        Ok(())
    }

    /// Keeps the attachments of the `valid` containers and removes everything else berth made:
    /// other attachments are detached; then, reconciling the kernel and the IPAM against the
    /// records, everything no record keeps is removed (see the module docs for the steps). Holds
    /// the state lock, so it is safe while other processes attach. Equivalent of the CNI `GC`
    /// command. Every step is tried; if some failed, [`Error::Incomplete`] lists them all.
    pub async fn gc<S: AsRef<str>>(&self, valid: &[S]) -> Result<GcReport> {
        let valid: HashSet<String> = valid.iter().map(|s| s.as_ref().to_string()).collect();
        self.gc_with(|_, att| valid.contains(&att.container), &valid)
            .await
    }

    /// [`Host::gc`] with the kept attachments chosen by `keep` (called under the state lock for
    /// every recorded attachment): e.g. the CNI `GC` of one network keeps every attachment of
    /// the other networks and those of its own in `cni.dev/valid-attachments`. The
    /// reconciliation that follows is the same, host-wide.
    pub async fn gc_keeping<F>(&self, keep: F) -> Result<GcReport>
    where
        F: Fn(&NetworkInfo, &Attachment) -> bool + Send + Sync,
    {
        self.gc_with(keep, &HashSet::new()).await
    }

    /// The gc: attachments kept by `keep`; sandbox records kept for attached containers and
    /// for those in `valid` (containers `Host::gc` was told are alive).
    async fn gc_with<F>(&self, keep: F, valid: &HashSet<String>) -> Result<GcReport>
    where
        F: Fn(&NetworkInfo, &Attachment) -> bool + Send + Sync,
    {
        let _lock = self.state.lock().await?;
        let mut report = GcReport::default();
        let mut errors = Vec::new();
        match self.state.repair_corrupt() {
            Ok(saved) => report.quarantined = saved,
            Err(e) => errors.push(e),
        }
        errors.extend(self.after(Step::GcRepair).err());
        let mut networks = Vec::new();
        for net in self.state.networks()? {
            if net.removing {
                match self.remove_network_locked(&net).await {
                    Ok(()) => report.removals_finished.push(net.name),
                    Err(e) => errors.push(e),
                }
            } else {
                networks.push(net);
            }
        }
        self.forget_unknown_endpoints(&networks, &mut report, &mut errors)
            .await;
        errors.extend(self.after(Step::GcRemovals).err());
        for net in &networks {
            for att in self.state.endpoints(&net.name)? {
                let unfinished = self.state.is_detaching(&net.name, &att.container);
                if keep(net, &att) && !unfinished {
                    continue;
                }
                match self.detach_locked(net, &att).await {
                    Ok(()) => report
                        .detached
                        .push((net.name.clone(), att.container.clone())),
                    Err(e) => errors.push(e),
                }
            }
        }
        errors.extend(self.after(Step::GcDetach).err());
        // Reconcile with what the records say now.
        let mut keep: HashSet<String> = HashSet::new();
        let mut recorded_links = HashSet::new();
        for net in &networks {
            let eps = self.state.endpoints(&net.name)?;
            let mut held: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
            for att in &eps {
                keep.insert(att.container.clone());
                recorded_links.extend(att.host_ifname.clone());
                recorded_links.extend(att.ifb.clone());
                held.insert(
                    att.container.clone(),
                    att.ip().into_iter().chain(att.ip6()).collect(),
                );
            }
            if !driver_for(&net.driver).uses_ipam() || net.subnets.is_empty() {
                continue;
            }
            let ipam = match self.ipam_of(net) {
                Ok(i) => i,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if driver_for(&net.driver).scope() == crate::driver::Scope::Global {
                let live: HashSet<&str> = eps.iter().map(|a| a.container.as_str()).collect();
                match self.cluster_gc(net, &live).await {
                    Ok((withdrawn, fixed)) => {
                        report
                            .cluster_withdrawn
                            .extend(withdrawn.into_iter().map(|c| (net.name.clone(), c)));
                        report.forwarding_fixed += fixed;
                    }
                    Err(e) => errors.push(e),
                }
            }
            match ipam.reconcile(&net.name, &recorded_pool(net, held)).await {
                Ok(r) => {
                    report.released.extend(r.released);
                    report.restored.extend(
                        r.restored
                            .into_iter()
                            .map(|(c, ip)| (net.name.clone(), c, ip)),
                    );
                    report.conflicts.extend(r.conflicts);
                }
                Err(e) => errors.push(e),
            }
        }
        if self.cluster.is_some() {
            match self.sync_encryption_locked(None).await {
                Ok(r) => {
                    report.ipsec_fixed +=
                        r.sas_added + r.sas_removed + r.policies_put + r.policies_removed
                }
                Err(e) => errors.push(e),
            }
        }
        for c in &report.conflicts {
            tracing::error!(target: "berth::host", network = %c.network, address = %c.address,
                            recorded = %c.recorded, claimed_by = %c.claimed_by,
                            "an address is held by two containers");
        }
        let names: HashSet<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        match self.ipam.pools().await {
            Ok(pools) => {
                for pool in pools {
                    if names.contains(pool.as_str()) {
                        continue;
                    }
                    match self.ipam.release_pool(&pool).await {
                        Ok(()) => report.pools_removed.push(pool),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        errors.extend(self.state.rebuild_ports().err());
        errors.extend(self.after(Step::GcIpam).err());
        if let Err(e) = self
            .sweep_links(&networks, &recorded_links, &mut report)
            .await
        {
            errors.push(e);
        }
        // With stray ports gone: what networks share (a trunk's VLANs) follows what is left.
        for net in &networks {
            match driver_for(&net.driver).reconcile(self.ctx(), net).await {
                Ok(n) => report.vlans_fixed += n,
                Err(e) => errors.push(e),
            }
        }
        // The kept attachments' routing rules (an attach killed between its record and them).
        for net in &networks {
            for att in self.state.endpoints(&net.name).unwrap_or_default() {
                match self.restore_policy_rules(&att).await {
                    Ok(n) => report.rules_fixed += n,
                    Err(e) => errors.push(e),
                }
            }
        }
        errors.extend(self.after(Step::GcLinks).err());
        // The firewall from the records: also drops what a dead attach left (port elements) and
        // the chains of networks no record knows; their bridges (named in berth's dispatch
        // maps, so berth made them) go too.
        match self.recorded_rules() {
            Ok((nets, eps)) => match self.firewall.gc(&nets, &eps).await {
                Ok(bridges) => {
                    for bridge in bridges {
                        match self.nl.delete_link(&bridge).await {
                            Ok(true) => report.links_removed.push(bridge),
                            Ok(false) => {}
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(e),
        }
        errors.extend(self.after(Step::GcFirewall).err());
        match self.state.sandboxes() {
            Ok(recs) => {
                for rec in &recs {
                    // A live container's record stays while something needs it, as after a
                    // detach (one cut short after its endpoint record went is finished here).
                    let live = keep.contains(&rec.container) || valid.contains(&rec.container);
                    if live && !self.sandbox_unused(rec, Some(&recs)).unwrap_or(false) {
                        continue;
                    }
                    match self.state.remove_sandbox(&rec.container) {
                        Ok(()) => report.sandboxes_removed.push(rec.container.clone()),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        report.tmp_files_removed = crate::state::remove_stale_tmp(self.state.root());
        match self.state.remove_orphan_marks() {
            Ok(n) => report.tmp_files_removed += n,
            Err(e) => errors.push(e),
        }
        errors.extend(self.after(Step::GcSandboxes).err());
        tracing::info!(target: "berth::host", ?report, errors = errors.len(), "gc");
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(Error::Incomplete { op: "gc", errors })
        }
    }

    /// Endpoint records under a network that has no record (it was deleted, or its record was
    /// lost): their links go with the sweep, their addresses with the pool; here their
    /// connection-tracking entries and the records themselves go.
    async fn forget_unknown_endpoints(
        &self,
        networks: &[NetworkInfo],
        report: &mut GcReport,
        errors: &mut Vec<Error>,
    ) {
        let known: HashSet<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        let dirs = match self.state.endpoint_networks() {
            Ok(d) => d,
            Err(e) => return errors.push(e),
        };
        for network in dirs.into_iter().filter(|n| !known.contains(n.as_str())) {
            let eps = self.state.endpoints(&network).unwrap_or_default();
            let ips: Vec<IpAddr> = eps
                .iter()
                .flat_map(|a| a.ip().into_iter().chain(a.ip6()))
                .collect();
            if !ips.is_empty() {
                errors.extend(self.firewall.forget_flows(&ips).await.err());
            }
            for a in &eps {
                report
                    .endpoints_forgotten
                    .push((network.clone(), a.container.clone()));
            }
            errors.extend(self.state.remove_network(&network).err());
        }
        // Addresses seen on networks no record knows (a network removed by a killed delete).
        match self.state.seen_networks() {
            Ok(seen) => {
                for network in seen.into_iter().filter(|n| !known.contains(n.as_str())) {
                    errors.extend(self.state.forget_seen(&network).err());
                }
            }
            Err(e) => errors.push(e),
        }
    }

    /// Removes every link of the host netns marked as berth's that no live network or endpoint
    /// keeps, and unmarked ports of the bridges berth made that no endpoint recorded (veths
    /// made by earlier versions, which did not mark ports). An admin's bridge that a network
    /// adopted is not berth's: its unmarked ports (the admin's NIC, the admin's own veths) are
    /// never touched.
    async fn sweep_links(
        &self,
        networks: &[NetworkInfo],
        recorded: &HashSet<String>,
        report: &mut GcReport,
    ) -> Result<()> {
        let mut keep: HashSet<String> = recorded.clone();
        for net in networks {
            keep.extend(driver_for(&net.driver).host_links(net));
        }
        let bridges: Vec<String> = networks
            .iter()
            .filter(|n| n.adopted.is_none())
            .filter_map(|n| driver_for(&n.driver).endpoint_ports_of(n))
            .collect();
        let links = self.nl.links().await?;
        let ours: HashSet<u32> = links
            .iter()
            .filter(|l| bridges.contains(&l.name))
            .map(|l| l.index)
            .collect();
        let mut errors = Vec::new();
        for l in links {
            let kept_by = |n: &NetworkInfo| driver_for(&n.driver).keeps_host_link(n, &l.name);
            if keep.contains(&l.name) || networks.iter().any(kept_by) {
                continue;
            }
            let marked = crate::link_marks::is_berth(l.group);
            let stray_port = l.controller.is_some_and(|c| ours.contains(&c));
            if !(marked || stray_port) {
                continue;
            }
            match self.nl.delete_link(&l.name).await {
                Ok(true) => report.links_removed.push(l.name),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Incomplete {
                op: "remove stray links",
                errors,
            }),
        }
    }
}
