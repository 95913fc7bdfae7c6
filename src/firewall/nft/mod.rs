//! The nf_tables backend: [`NftFirewall`] turns firewall calls into [`ruleset`] ops and applies
//! each call as one transaction (nftnl + mnl) inside the host netns.
//!
//! [`ruleset`]: crate::firewall::ruleset

pub mod dump;
mod msg;
mod transact;

use async_trait::async_trait;

use super::Firewall;
use super::ruleset::{self, EndpointRules, NetworkRules, Op};
use super::socket::NfSocket;
use crate::error::{Error, Result};
use crate::netns::Netns;

/// nf_tables firewall in one table, `inet berth`, of the host netns it is given.
#[derive(Debug, Clone)]
pub struct NftFirewall {
    netns: Netns,
    sock: NfSocket,
}

impl NftFirewall {
    /// A firewall that programs the nf_tables of `netns`.
    pub fn new(netns: Netns) -> Self {
        NftFirewall {
            sock: NfSocket::new(netns.clone()),
            netns,
        }
    }

    /// Applies `ops` in one transaction inside the host netns.
    async fn apply(&self, what: String, ops: Vec<Op>) -> Result<()> {
        tracing::debug!(target: "berth::firewall", "{what}:\n{}", ruleset::render(&ops));
        self.sock
            .run(&what, move |fd| transact::transact(fd, &ops))
            .await
    }

    /// Creates table, maps, base chains and their rules unless the table exists already.
    async fn ensure_base(&self) -> Result<()> {
        match self
            .apply("create table inet berth".into(), ruleset::base())
            .await
        {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }
}

#[async_trait]
impl Firewall for NftFirewall {
    async fn add_network(&self, n: &NetworkRules) -> Result<()> {
        self.ensure_base().await?;
        self.apply(format!("add network {}", n.name), ruleset::network_add(n))
            .await
    }

    async fn remove_network(&self, n: &NetworkRules) -> Result<()> {
        self.apply(
            format!("remove network {}", n.name),
            ruleset::network_remove(n),
        )
        .await
    }

    async fn add_endpoint(&self, n: &NetworkRules, e: &EndpointRules) -> Result<()> {
        self.apply(
            format!("add endpoint {} on {}", e.ip, n.name),
            ruleset::endpoint_add(e),
        )
        .await
    }

    async fn remove_endpoint(&self, n: &NetworkRules, e: &EndpointRules) -> Result<()> {
        let what = format!("remove endpoint {} on {}", e.ip, n.name);
        match self.apply(what.clone(), ruleset::endpoint_remove(e)).await {
            // Some element is already gone (a retried detach): remove the rest one by one.
            Err(err) if err.errno() == Some(libc::ENOENT) => {
                for op in ruleset::endpoint_remove(e) {
                    let Op::DelElems { map, keys } = op else {
                        continue;
                    };
                    for k in keys {
                        let one = vec![Op::DelElems { map, keys: vec![k] }];
                        match self.apply(what.clone(), one).await {
                            Err(e) if e.errno() != Some(libc::ENOENT) => return Err(e),
                            _ => {}
                        }
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    async fn gc(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<Vec<String>> {
        let have = self
            .netns
            .spawn(dump::read)
            .await?
            .map_err(|source| Error::Nftables {
                op: "read table inet berth".into(),
                source,
            })?;
        if !have.table {
            return Ok(Vec::new());
        }
        let chains: std::collections::HashSet<String> = nets
            .iter()
            .flat_map(|n| ruleset::network_chains(&n.name))
            .collect();
        let bridges: std::collections::HashSet<Vec<u8>> = nets
            .iter()
            .map(|n| ruleset::ifname_key(&n.bridge))
            .collect();
        let mut ops = ruleset::reapply(nets, eps);
        for c in have
            .chains
            .keys()
            .filter(|c| c.starts_with("nw-") && !chains.contains(*c))
        {
            ops.push(Op::FlushChain { chain: c.clone() });
            ops.push(Op::DelChain { chain: c.clone() });
        }
        let stale_bridges = have
            .elements
            .get(ruleset::MAP_FWD_FROM)
            .into_iter()
            .flatten()
            .filter(|k| !bridges.contains(*k))
            .map(|k| {
                String::from_utf8_lossy(k)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        self.apply("gc".into(), ops).await?;
        Ok(stale_bridges)
    }

    async fn check(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<Vec<String>> {
        let want = ruleset::expected(nets, eps);
        let have = self
            .netns
            .spawn(dump::read)
            .await?
            .map_err(|source| Error::Nftables {
                op: "read table inet berth".into(),
                source,
            })?;
        let mut missing = Vec::new();
        if !have.table {
            missing.push(format!("table inet {}", ruleset::TABLE));
        }
        for (chain, rules) in &want.chains {
            match (have.chains.get(chain), rules) {
                (None, _) => missing.push(format!("chain {chain}")),
                (Some(got), Some(n)) if got < n => {
                    missing.push(format!("rules of chain {chain}: {got} of {n}"))
                }
                _ => {}
            }
        }
        for map in &want.maps {
            if !have.maps.contains(*map) {
                missing.push(format!("map {map}"));
            }
        }
        for (map, key, what) in &want.elements {
            if !have.elements.get(*map).is_some_and(|k| k.contains(key)) {
                missing.push(what.clone());
            }
        }
        Ok(missing)
    }

    async fn reapply(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<()> {
        self.apply("reapply".into(), ruleset::reapply(nets, eps))
            .await
    }

    async fn forget_flows(&self, ips: &[std::net::IpAddr]) -> Result<usize> {
        let ips = ips.to_vec();
        self.sock
            .run("delete conntrack entries", move |fd| {
                crate::firewall::conntrack::forget(fd, &ips)
            })
            .await
    }
}
