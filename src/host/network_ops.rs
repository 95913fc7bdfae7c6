//! `Host::create_network`, `delete_network` and the read-only network queries.

use ipnet::IpNet;

use crate::driver::{NetworkDriver, Scope, driver_for};
use crate::error::{Error, Result};
use crate::firewall::NetworkRules;
use crate::ipam::PoolRequest;
use crate::network::{NetworkInfo, NetworkSpec};

use super::journal::{Journal, Undo};
use super::{Host, Step};

/// The firewall facts of a network, if the firewall has anything to do for it (its driver
/// says).
pub(super) fn network_rules(net: &NetworkInfo) -> Option<NetworkRules> {
    driver_for(&net.driver).firewall_rules(net)
}

/// Names only berth's predefined networks may have.
const RESERVED: &[&str] = &[
    crate::daemon_config::DEFAULT_BRIDGE,
    super::default_bridge::NONE_NETWORK,
    "host",
];

/// The record of a network about to be made from `spec` (a fresh id; no subnets, device or
/// MTU yet: IPAM and the driver fill them in).
pub(super) fn new_record(spec: &NetworkSpec, driver: &dyn NetworkDriver) -> NetworkInfo {
    NetworkInfo {
        name: spec.name.clone(),
        id: random_id(),
        driver: spec.driver.clone(),
        subnets: Vec::new(),
        aux: spec.aux.clone(),
        ipv6: spec.ipv6,
        internal: spec.internal || driver.always_internal(),
        mtu: spec.mtu.unwrap_or(0),
        device: None,
        routes: spec.routes.clone(),
        no_default_route: spec.no_default_route,
        adopted: None,
        // The embedded resolver listens on the network's gateway address: a DHCP network has
        // none of berth's (its containers use the lease's nameservers).
        dns_enabled: driver.serves_dns()
            && spec.dns != Some(false)
            && spec.ipam_driver == crate::lease::IpamDriver::Default,
        dns_servers: spec.dns_servers.clone(),
        removing: false,
        ipam_driver: spec.ipam_driver,
    }
}

fn random_id() -> String {
    let b: [u8; 32] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Host {
    /// Prefixes an automatic subnet must avoid: every address and on-link route of the host
    /// netns, and the nameservers of the host's resolv.conf.
    pub(super) async fn avoid_prefixes(&self) -> Result<Vec<IpNet>> {
        let mut v: Vec<IpNet> = self
            .nl
            .addresses(None)
            .await?
            .into_iter()
            .filter(|(_, ip, _)| !ip.is_loopback())
            .filter_map(|(_, ip, len)| IpNet::new(ip, len).ok().map(|n| n.trunc()))
            .collect();
        v.extend(self.nl.onlink_routes().await?);
        if let Ok(text) = std::fs::read_to_string(&self.resolv_conf) {
            v.extend(
                text.lines()
                    .filter_map(|l| l.trim().strip_prefix("nameserver"))
                    .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
                    .map(IpNet::from),
            );
        }
        Ok(v)
    }

    /// Creates a network (`docker network create`). All or nothing: on failure nothing of it
    /// remains (no bridge, rules, pool or record).
    ///
    /// The names of Docker's predefined networks (`bridge`, `none`, `host`) are reserved:
    /// berth makes `bridge` and `none` itself (see [`crate::DaemonConfig`]), and `host` is a
    /// mode, not a network ([`Host::use_host_netns`]).
    pub async fn create_network(&self, spec: impl Into<NetworkSpec>) -> Result<NetworkInfo> {
        let spec = spec.into();
        if let Some(name) = RESERVED.iter().find(|n| **n == spec.name) {
            return Err(Error::InvalidName {
                kind: "network",
                name: (*name).into(),
                reason: "it is reserved for Docker's predefined network of that name",
            });
        }
        self.create_network_unchecked(spec).await
    }

    /// [`Host::create_network`] without the reserved-name check (for the predefined networks).
    pub(super) async fn create_network_unchecked(
        &self,
        mut spec: NetworkSpec,
    ) -> Result<NetworkInfo> {
        spec.validate()?;
        let _lock = self.state.lock().await?;
        if let Some(old) = self.state.network(&spec.name)?
            && old.removing
        {
            // A removal that was interrupted: finish it, then the name is free.
            self.remove_network_locked(&old).await?;
        }
        let spec_driver = spec.driver.clone();
        let driver = driver_for(&spec_driver);
        if driver.scope() == Scope::Global {
            return self.create_cluster_network(spec).await;
        }
        driver.prepare(self.ctx(), &mut spec).await?;
        let others = self.state.networks()?;
        if others.iter().any(|n| n.name == spec.name) {
            return Err(Error::NetworkExists { name: spec.name });
        }
        let mut net = new_record(&spec, driver.as_ref());
        let mut journal = Journal::default();
        let r = async {
            let requests = spec.subnet_requests();
            if driver.uses_ipam() && !requests.is_empty() {
                let avoid = if requests.iter().any(|r| r.subnet.is_none()) {
                    self.avoid_prefixes().await?
                } else {
                    Vec::new()
                };
                // No record exists (we hold the lock): a pool of this name is a crash leftover.
                self.ipam.release_pool(&net.name).await?;
                let req = PoolRequest {
                    subnets: requests,
                    aux: spec.aux.clone(),
                    avoid,
                };
                net.subnets = self.ipam.reserve_pool(&net.name, req).await?;
                journal.push(Undo::IpamPool(net.name.clone()));
                self.after(Step::IpamReserve)?;
            }
            self.make_here(&mut net, &others, &mut journal).await
        }
        .await;
        match r {
            Ok(()) => {
                tracing::info!(target: "berth::host", network = %net.name, device = ?net.device, "network created");
                Ok(net)
            }
            Err(e) => Err(self.rollback(journal, e).await),
        }
    }

    /// The host side of a network whose addresses are settled: the driver's devices (it fills
    /// in the device, MTU and adopted addresses), the firewall's rules, the record — each step
    /// journaled. Shared by local creates and cluster networks imported here.
    pub(super) async fn make_here(
        &self,
        net: &mut NetworkInfo,
        others: &[NetworkInfo],
        journal: &mut Journal,
    ) -> Result<()> {
        let driver_options = net.driver.clone();
        let res = driver_for(&driver_options)
            .create_network(self.ctx_with(others), net)
            .await?;
        net.device = res.device;
        net.mtu = res.mtu;
        net.adopted = res.adopted;
        journal.push(Undo::DriverNetwork(Box::new(net.clone())));
        self.after(Step::DriverCreate)?;
        if let Some(rules) = network_rules(net) {
            self.firewall.add_network(&rules).await?;
            journal.push(Undo::FirewallNetwork(rules));
            self.after(Step::FirewallNetwork)?;
        }
        self.state.put_network(net)?;
        journal.push(Undo::NetworkRecord(net.name.clone()));
        self.after(Step::PersistNetwork)
    }

    /// Deletes a network (`docker network rm`). Refused while endpoints are attached.
    /// Resumable: the record is first marked as being removed (durably), so a process killed
    /// at any instant of the removal leaves a network that takes no endpoints and that the next
    /// `delete_network`, `create_network` of its name, or `gc` finishes removing.
    ///
    /// A cluster network is deleted cluster-wide, refused while any host has endpoints on it
    /// (naming them and their hosts); the other hosts drop their records of it when they next
    /// use or list it, or when their agent sees it go.
    pub async fn delete_network(&self, name: impl AsRef<str>) -> Result<()> {
        let name = name.as_ref();
        let _lock = self.state.lock().await?;
        let local = self.state.network(name)?;
        let global = match &local {
            Some(n) => driver_for(&n.driver).scope() == Scope::Global,
            None => true,
        };
        if global && let Some(cluster) = &self.cluster {
            match cluster.delete_network(name).await {
                Ok(()) | Err(Error::NetworkNotFound { .. }) if local.is_some() => {}
                Ok(()) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let mut net = local.ok_or_else(|| Error::NetworkNotFound { name: name.into() })?;
        let mut eps = Vec::new();
        for att in self.state.endpoints(name)? {
            if self.state.is_detaching(name, &att.container) {
                // A detach killed half-way: finish it.
                self.detach_locked(&net, &att).await?;
            } else {
                eps.push(att);
            }
        }
        if !eps.is_empty() {
            return Err(Error::NetworkInUse {
                name: name.into(),
                endpoints: eps.into_iter().map(|a| a.container).collect(),
            });
        }
        if !net.removing {
            net.removing = true;
            self.state.put_network(&net)?;
        }
        self.remove_network_locked(&net).await?;
        tracing::info!(target: "berth::host", network = %name, "network deleted");
        Ok(())
    }

    /// The steps of a removal, each idempotent (they may be running again after a crash); the
    /// caller holds the state lock and `net` is marked as being removed.
    pub(super) async fn remove_network_locked(&self, net: &NetworkInfo) -> Result<()> {
        let name = net.name.as_str();
        if let Some(rules) = network_rules(net) {
            self.firewall.remove_network(&rules).await?;
        }
        self.after(Step::DeleteFirewall)?;
        let others: Vec<NetworkInfo> = self
            .state
            .networks()?
            .into_iter()
            .filter(|n| n.name != name)
            .collect();
        driver_for(&net.driver)
            .delete_network(self.ctx_with(&others), net)
            .await?;
        self.after(Step::DeleteDriver)?;
        if driver_for(&net.driver).scope() == Scope::Local {
            self.ipam.release_pool(name).await?;
        }
        self.after(Step::DeleteIpam)?;
        self.state.remove_network(name)?;
        self.after(Step::DeleteRecord)
    }

    /// Every network, sorted by name (`docker network ls`); a network whose removal was
    /// interrupted is not listed.
    ///
    /// With a cluster, the cluster's networks are listed too (as the store has them: a host
    /// that has not used one has no record of it); a store that does not answer is an error.
    pub async fn networks(&self) -> Result<Vec<NetworkInfo>> {
        let mut v: Vec<NetworkInfo> = self
            .state
            .networks()?
            .into_iter()
            .filter(|n| !n.removing)
            .collect();
        if let Some(cluster) = &self.cluster {
            let global = cluster.networks().await?;
            v.retain(|n| {
                driver_for(&n.driver).scope() == Scope::Local || global.iter().any(|g| g.id == n.id)
            });
            for g in global {
                if !v.iter().any(|n| n.name == g.name) {
                    v.push(g);
                }
            }
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(v)
    }

    /// One network's record (`docker network inspect`).
    /// With a cluster, a cluster network this host has no record of is the store's.
    pub async fn network(&self, name: impl AsRef<str>) -> Result<NetworkInfo> {
        let name = name.as_ref();
        if let Some(n) = self.state.network(name)?.filter(|n| !n.removing) {
            return Ok(n);
        }
        if let Some(cluster) = &self.cluster
            && let Some((n, _)) = cluster.network(name).await?
        {
            return Ok(n);
        }
        Err(Error::NetworkNotFound { name: name.into() })
    }
}
