//! `Host::gc`: remove everything berth made for containers that are gone, and whatever a dead
//! operation (a process killed mid-attach) left behind.

use std::collections::HashSet;

use crate::error::Result;
use crate::ipam::Released;
use crate::network::DriverKind;

use super::Host;

/// What [`Host::gc`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Attachments detached: (network, container).
    pub detached: Vec<(String, String)>,
    /// Addresses released that no attachment held (dead attaches).
    pub released: Vec<Released>,
    /// Host-side links removed that no attachment recorded (dead attaches).
    pub links_removed: Vec<String>,
    /// Address pools of networks that have no record (dead network creates).
    pub pools_removed: Vec<String>,
    /// Sandbox records (name settings, host/container mode) of containers that are gone.
    pub sandboxes_removed: Vec<String>,
    /// Temporary files of writers killed mid-write.
    pub tmp_files_removed: usize,
}

impl Host {
    /// Keeps the attachments of the `valid` containers and removes everything else berth made:
    /// other attachments are detached; then, reconciling against the records, stray address
    /// allocations and pools, stray veths on berth's bridges, and stray published-port elements
    /// are removed. Holds the state lock, so it is safe while other processes attach.
    /// Equivalent of the CNI `GC` command.
    pub async fn gc<S: AsRef<str>>(&self, valid: &[S]) -> Result<GcReport> {
        let valid: HashSet<String> = valid.iter().map(|s| s.as_ref().to_string()).collect();
        let _lock = self.state.lock().await?;
        let mut report = GcReport::default();
        let mut errors = Vec::new();
        let networks = self.state.networks()?;
        for net in &networks {
            for att in self.state.endpoints(&net.name)? {
                if valid.contains(&att.container) {
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
        // Reconcile with what the records say now.
        let mut keep = valid;
        let mut recorded_links = HashSet::new();
        for net in &networks {
            for att in self.state.endpoints(&net.name)? {
                keep.insert(att.container.clone());
                recorded_links.extend(att.host_ifname.clone());
            }
        }
        report.released = self.ipam.gc(&keep).await?;
        self.state.rebuild_ports()?;
        let names: HashSet<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        for (pool, _) in self.pool_names().await? {
            if !names.contains(pool.as_str()) {
                self.ipam.release_pool(&pool).await?;
                report.pools_removed.push(pool);
            }
        }
        let bridges: Vec<&str> = networks
            .iter()
            .filter(|n| n.driver.kind() == DriverKind::Bridge)
            .filter_map(|n| n.device.as_deref())
            .collect();
        if !bridges.is_empty() {
            let links = self.nl.links().await?;
            let ours: HashSet<u32> = links
                .iter()
                .filter(|l| bridges.contains(&l.name.as_str()))
                .map(|l| l.index)
                .collect();
            for l in links {
                if l.controller.is_some_and(|c| ours.contains(&c))
                    && !recorded_links.contains(&l.name)
                {
                    self.nl.delete_link(&l.name).await?;
                    report.links_removed.push(l.name);
                }
            }
        }
        // The firewall from the records: also drops what a dead attach left (port elements) and
        // the chains of networks no record knows; their bridges (named in berth's dispatch
        // maps, so berth made them) go too.
        let (nets, eps) = self.recorded_rules()?;
        for bridge in self.firewall.gc(&nets, &eps).await? {
            if self.nl.delete_link(&bridge).await? {
                report.links_removed.push(bridge);
            }
        }
        for rec in self.state.sandboxes()? {
            if !keep.contains(&rec.container) {
                self.state.remove_sandbox(&rec.container)?;
                report.sandboxes_removed.push(rec.container);
            }
        }
        report.tmp_files_removed = crate::state::remove_stale_tmp(self.state.root());
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        tracing::info!(target: "berth::host", ?report, "gc");
        Ok(report)
    }

    /// Names of the networks the IPAM holds a pool for.
    async fn pool_names(&self) -> Result<Vec<(String, ())>> {
        let dir = self.state.root().join("ipam");
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json")
                    && let Some(n) = p.file_stem().and_then(|n| n.to_str())
                {
                    out.push((n.to_string(), ()));
                }
            }
        }
        Ok(out)
    }
}
