//! What `Host` does for encrypted overlay networks (see [`crate::cluster::encryption`]): keeps
//! this host's ESP SAs and IPsec policies equal to the hosts it shares an encrypted network
//! with, under the cluster's key schedule. Called with the state lock held by attach (before
//! the endpoint is advertised), detach, the agent's synchronisations, key changes and gc.

use std::collections::BTreeSet;

use crate::cluster::encryption::{self, Desired, EncryptionSync, PairHost};
use crate::error::{Error, Result};
use crate::netlink::xfrm::Xfrm;
use crate::network::NetworkInfo;
use crate::options::DriverOptions;

use super::Host;

/// Whether a network is an encrypted overlay network.
pub(crate) fn is_encrypted(net: &NetworkInfo) -> bool {
    matches!(&net.driver, DriverOptions::Overlay(o) if o.encrypted)
}

impl Host {
    /// Fails with [`Error::NoClusterSecret`] when `net` is encrypted and this host has no
    /// secret (before anything is made for an attach).
    pub(super) fn require_secret(&self, net: &NetworkInfo) -> Result<()> {
        if is_encrypted(net) && self.cluster.as_ref().and_then(|c| c.secret()).is_none() {
            return Err(Error::NoClusterSecret {
                network: net.name.clone(),
            });
        }
        Ok(())
    }

    /// What the kernel should hold: SAs and policies towards every host with endpoints on an
    /// encrypted network this host has endpoints on (or is attaching to: `include`).
    async fn desired_encryption(&self, include: Option<&str>) -> Result<Option<Desired>> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let Some(secret) = cluster.secret() else {
            return Ok(None);
        };
        let Some(vtep) = cluster.identity().advertise else {
            return Ok(Some(Desired::default()));
        };
        // Hosts sharing an encrypted network with this one (SAs both ways, a policy), and
        // hosts on one this host knows but has no endpoint on now (outbound SAs kept).
        let (mut peers, mut others) = (BTreeSet::new(), BTreeSet::new());
        let mut port = cluster.identity().port;
        for net in self.cluster_networks_here()? {
            let DriverOptions::Overlay(o) = &net.driver else {
                continue;
            };
            if !o.encrypted {
                continue;
            }
            let here =
                include == Some(net.name.as_str()) || !self.state.endpoints(&net.name)?.is_empty();
            port = o.port.unwrap_or(port);
            for r in self.state.cluster_peers(&net.name)? {
                let p = PairHost {
                    name: r.host,
                    vtep: r.vtep,
                    incarnation: r.incarnation,
                };
                if here {
                    peers.insert(p);
                } else {
                    others.insert(p);
                }
            }
        }
        if peers.is_empty() && others.is_empty() {
            return Ok(Some(Desired::default()));
        }
        let me = PairHost {
            name: cluster.identity().name.clone(),
            vtep,
            incarnation: cluster.lease().await?.0,
        };
        let schedule = cluster.key_schedule().await?;
        Ok(Some(encryption::desired(
            secret,
            &me,
            &peers,
            &others,
            &schedule,
            encryption::unix_now(),
            port,
        )))
    }

    /// Makes this host's SAs and policies what its encrypted networks need (the caller holds
    /// the state lock). Nothing to do on a host without a cluster secret.
    pub(crate) async fn sync_encryption_locked(
        &self,
        include: Option<&str>,
    ) -> Result<EncryptionSync> {
        let Some(want) = self.desired_encryption(include).await? else {
            return Ok(EncryptionSync::default());
        };
        let xfrm = Xfrm::open(&self.netns).await?;
        let r = encryption::apply(&xfrm, &want).await?;
        if r.changed() {
            let host = self.cluster.as_ref().map(|c| c.identity().name.as_str());
            tracing::debug!(target: "berth::cluster", host, sas_added = r.sas_added,
                            sas_removed = r.sas_removed, policies_put = r.policies_put,
                            policies_removed = r.policies_removed, "IPsec state synchronised");
        }
        Ok(r)
    }

    /// [`Host::sync_encryption_locked`] under the state lock (the agent, on a key change or a
    /// switch to a new generation).
    pub(crate) async fn sync_encryption(&self) -> Result<EncryptionSync> {
        let _lock = self.state.lock().await?;
        self.sync_encryption_locked(None).await
    }

    /// What of the IPsec state is missing or stray (for `check`).
    pub(super) async fn encryption_check(&self) -> Result<Vec<String>> {
        let Some(want) = self.desired_encryption(None).await? else {
            return Ok(Vec::new());
        };
        let xfrm = Xfrm::open(&self.netns).await?;
        encryption::missing(&xfrm, &want).await
    }
}
