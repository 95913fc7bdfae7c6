//! `Host::create_network`, `delete_network` and the read-only network queries.

use crate::driver::driver_for;
use crate::error::{Error, Result};
use crate::firewall::NetworkRules;
use crate::network::{DriverKind, NetworkInfo, NetworkSpec};

use super::journal::{Journal, Undo};
use super::{Host, Step};

/// The firewall facts of a network, if the firewall has anything to do for it.
pub(super) fn network_rules(net: &NetworkInfo) -> Option<NetworkRules> {
    let device = net.device.clone()?;
    (net.driver.kind() == DriverKind::Bridge).then(|| NetworkRules {
        name: net.name.clone(),
        bridge: device,
        subnets: net.subnets.iter().map(|s| s.subnet).collect(),
        masquerade: net.masquerade(),
    })
}

fn random_id() -> String {
    let b: [u8; 32] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Host {
    /// Creates a network (`docker network create`). All or nothing: on failure nothing of it
    /// remains (no bridge, rules, pool or record).
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<NetworkInfo> {
        spec.validate()?;
        let _lock = self.state.lock().await?;
        let others = self.state.networks()?;
        if others.iter().any(|n| n.name == spec.name) {
            return Err(Error::NetworkExists { name: spec.name });
        }
        if let Some(subnet) = spec.subnet {
            for n in &others {
                if let Some(s) = n.subnets.iter().find(|s| {
                    s.subnet.contains(&subnet.network()) || subnet.contains(&s.subnet.network())
                }) {
                    return Err(Error::SubnetOverlap {
                        subnet: subnet.to_string(),
                        other: s.subnet.to_string(),
                        network: n.name.clone(),
                    });
                }
            }
        }
        let mut net = NetworkInfo {
            name: spec.name.clone(),
            id: random_id(),
            driver: spec.driver.clone(),
            subnets: Vec::new(),
            internal: spec.internal,
            mtu: spec.mtu.unwrap_or(0),
            device: None,
        };
        let driver = driver_for(net.driver.kind());
        if net.driver.kind() == DriverKind::Bridge {
            let dev = crate::driver::bridge::bridge_name(&net);
            if let Some(n) = others.iter().find(|n| n.device.as_deref() == Some(&dev)) {
                return Err(Error::InterfaceInUse {
                    ifname: dev,
                    network: n.name.clone(),
                });
            }
        }
        let mut journal = Journal::default();
        let r = async {
            if driver.uses_ipam()
                && let Some(subnet) = spec.subnet
            {
                // No record exists (we hold the lock): a pool of this name is a crash leftover.
                self.ipam.release_pool(&net.name).await?;
                let s = self
                    .ipam
                    .reserve_pool(&net.name, subnet, spec.gateway)
                    .await?;
                journal.push(Undo::IpamPool(net.name.clone()));
                net.subnets.push(s);
                self.after(Step::IpamReserve)?;
            }
            let res = driver.create_network(self.ctx(), &net).await?;
            net.device = res.device;
            net.mtu = res.mtu;
            journal.push(Undo::DriverNetwork(net.clone()));
            self.after(Step::DriverCreate)?;
            if let Some(rules) = network_rules(&net) {
                self.firewall.add_network(&rules).await?;
                journal.push(Undo::FirewallNetwork(rules));
                self.after(Step::FirewallNetwork)?;
            }
            self.state.put_network(&net)?;
            journal.push(Undo::NetworkRecord(net.name.clone()));
            self.after(Step::PersistNetwork)?;
            Ok(())
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

    /// Deletes a network (`docker network rm`). Refused while endpoints are attached.
    pub async fn delete_network(&self, name: impl AsRef<str>) -> Result<()> {
        let name = name.as_ref();
        let _lock = self.state.lock().await?;
        let net = self
            .state
            .network(name)?
            .ok_or_else(|| Error::NetworkNotFound { name: name.into() })?;
        let eps = self.state.endpoints(name)?;
        if !eps.is_empty() {
            return Err(Error::NetworkInUse {
                name: name.into(),
                endpoints: eps.into_iter().map(|a| a.container).collect(),
            });
        }
        if let Some(rules) = network_rules(&net) {
            self.firewall.remove_network(&rules).await?;
        }
        driver_for(net.driver.kind())
            .delete_network(self.ctx(), &net)
            .await?;
        self.ipam.release_pool(name).await?;
        self.state.remove_network(name)?;
        tracing::info!(target: "berth::host", network = %name, "network deleted");
        Ok(())
    }

    /// Every network, sorted by name (`docker network ls`).
    pub async fn networks(&self) -> Result<Vec<NetworkInfo>> {
        self.state.networks()
    }

    /// One network's record (`docker network inspect`).
    pub async fn network(&self, name: impl AsRef<str>) -> Result<NetworkInfo> {
        let name = name.as_ref();
        self.state
            .network(name)?
            .ok_or_else(|| Error::NetworkNotFound { name: name.into() })
    }
}
