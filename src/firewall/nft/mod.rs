//! The nf_tables backend: [`NftFirewall`] turns firewall calls into [`ruleset`] ops and applies
//! each call as one transaction (nftnl + mnl) inside the host netns. Table `bridge berth` (ICC
//! off, links) is created with the first network that has ICC off, table `bridge berth-spoof`
//! (anti-spoofing) with the first network that has anti-spoofing; `gc` removes each when no
//! network needs it.
//!
//! [`ruleset`]: crate::firewall::ruleset

pub mod dump;
mod msg;
mod transact;

use async_trait::async_trait;

use super::Firewall;
use super::ruleset::{self, EndpointRules, LinkRule, NetworkRules, Op, icc, spoof};
use super::socket::NfSocket;
use crate::error::{Error, Result};
use crate::netns::Netns;

/// nf_tables firewall in table `inet berth` (and, for ICC off, `bridge berth`) of the host
/// netns it is given.
#[derive(Debug, Clone)]
pub struct NftFirewall {
    netns: Netns,
    sock: NfSocket,
}

impl NftFirewall {
    /// A firewall that programs the nf_tables of `netns`.
    pub fn new(netns: Netns) -> Self {
        NftFirewall {
            sock: NfSocket::new(netns.clone(), false),
            netns,
        }
    }

    /// Says the process exits after each operation (see
    /// [`crate::HostBuilder::short_lived`], which sets it on the default firewall): the last
    /// close of its netfilter socket, which waits for the destroy work of the last
    /// transaction (an RCU grace period), is left to a child.
    pub fn short_lived(mut self, yes: bool) -> Self {
        self.sock = NfSocket::new(self.netns.clone(), yes);
        self
    }

    /// Applies `ops` in one transaction inside the host netns.
    async fn apply(&self, what: String, ops: Vec<Op>) -> Result<()> {
        tracing::debug!(target: "berth::firewall", "{what}:\n{}", ruleset::render(&ops));
        let deletes = ops.iter().any(Op::deletes);
        self.sock
            .run(&what, deletes, move |fd| transact::transact(fd, &ops))
            .await
    }

    /// Creates table, maps, base chains and their rules unless the table exists already.
    async fn ensure_base(&self) -> Result<()> {
        self.ensure("create table inet berth", ruleset::base())
            .await
    }

    /// Applies the `exclusive` creation of a table; it existing already is no error.
    async fn ensure(&self, what: &str, ops: Vec<Op>) -> Result<()> {
        match self.apply(what.into(), ops).await {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Creates table `bridge berth` for a network with ICC off, unless it exists.
    async fn ensure_bridge(&self, n: &NetworkRules) -> Result<()> {
        if n.icc {
            return Ok(());
        }
        self.ensure("create table bridge berth", icc::bridge_base())
            .await
    }

    /// Creates table `bridge berth-spoof` for a network with anti-spoofing, unless it exists.
    async fn ensure_guard(&self, n: &NetworkRules) -> Result<()> {
        if !n.anti_spoofing {
            return Ok(());
        }
        self.ensure("create table bridge berth-spoof", spoof::base())
            .await
    }

    /// Reads the three tables back: inet berth, bridge berth, bridge berth-spoof.
    async fn read(&self) -> Result<[dump::KernelState; 3]> {
        self.netns
            .spawn(dump::read_all)
            .await?
            .map_err(|source| Error::Nftables {
                op: "read tables berth".into(),
                source,
            })
    }
}

#[async_trait]
impl Firewall for NftFirewall {
    async fn add_network(&self, n: &NetworkRules) -> Result<()> {
        self.ensure_base().await?;
        self.ensure_bridge(n).await?;
        self.ensure_guard(n).await?;
        self.apply(format!("add network {}", n.name), ruleset::network_add(n))
            .await
    }

    async fn remove_network(&self, n: &NetworkRules) -> Result<()> {
        let what = format!("remove network {}", n.name);
        match self.apply(what.clone(), ruleset::network_remove(n)).await {
            // Part of it is gone already (a removal resumed after a crash, a flushed ruleset):
            // remove what is still there.
            Err(e) if e.errno() == Some(libc::ENOENT) => {
                let [have, ..] = self.read().await?;
                let ops = ruleset::network_remove(n)
                    .into_iter()
                    .filter(|op| match op {
                        Op::DelElems { map, keys } => have
                            .elements
                            .get(*map)
                            .is_some_and(|k| keys.iter().all(|key| k.contains(key))),
                        Op::FlushChain { chain } | Op::DelChain { chain } => {
                            have.chains.contains_key(chain)
                        }
                        _ => true,
                    })
                    .collect::<Vec<_>>();
                if ops.is_empty() {
                    return Ok(());
                }
                self.apply(what, ops).await
            }
            other => other,
        }
    }

    async fn add_endpoint(&self, n: &NetworkRules, e: &EndpointRules) -> Result<()> {
        let mut ops = ruleset::endpoint_add(e);
        let links = icc::links_add(std::slice::from_ref(n), &e.links);
        if !links.is_empty() {
            // A network made by a berth without table `bridge berth` gets it here.
            self.ensure_bridge(n).await?;
        }
        ops.extend(links);
        let guard = spoof::endpoints_add([e]);
        if !guard.is_empty() {
            self.ensure_guard(n).await?;
        }
        ops.extend(guard);
        self.apply(format!("add endpoint {} on {}", e.ip, n.name), ops)
            .await
    }

    async fn remove_endpoint(&self, n: &NetworkRules, e: &EndpointRules) -> Result<()> {
        let what = format!("remove endpoint {} on {}", e.ip, n.name);
        let links = icc::links_remove(std::slice::from_ref(n), &e.links);
        let guard = spoof::endpoint_remove(e);
        let mut ops = ruleset::endpoint_remove(e);
        ops.extend(links.iter().cloned());
        ops.extend(guard.iter().cloned());
        match self.apply(what.clone(), ops).await {
            // Some element is already gone (a retried detach), or a table: remove the links and
            // the anti-spoofing elements (a missing table has none) and the rest one by one.
            Err(err) if err.errno() == Some(libc::ENOENT) => {
                for batch in [links, guard] {
                    match self.apply(what.clone(), batch).await {
                        Err(e) if e.errno() != Some(libc::ENOENT) => return Err(e),
                        _ => {}
                    }
                }
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
        let [have, have_bridge, have_guard] = self.read().await?;
        let drop_bridge = have_bridge.table && !icc::needed(nets);
        let drop_guard = have_guard.table && !spoof::needed(nets);
        let drops: Vec<Op> = [
            drop_bridge.then(|| Op::bridge(Op::DelTable)),
            drop_guard.then(|| Op::guard(Op::DelTable)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !have.table {
            if !drops.is_empty() {
                self.apply("gc".into(), drops).await?;
            }
            return Ok(Vec::new());
        }
        let chains: std::collections::HashSet<String> = nets
            .iter()
            .flat_map(|n| {
                let esp = n.encrypted.map(|_| ruleset::esp::chains(&n.name));
                ruleset::network_chains(&n.name)
                    .into_iter()
                    .chain(esp.into_iter().flatten())
            })
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
        ops.extend(drops);
        self.apply("gc".into(), ops).await?;
        Ok(stale_bridges)
    }

    async fn check(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<Vec<String>> {
        let want = ruleset::expected(nets, eps);
        let [have, have_bridge, have_guard] = self.read().await?;
        let mut missing = compare(&want, &have, "inet", ruleset::TABLE, "");
        if let Some(want) = &want.bridge {
            missing.extend(compare(
                want,
                &have_bridge,
                "bridge",
                ruleset::TABLE,
                "bridge ",
            ));
        }
        if let Some(want) = &want.guard {
            missing.extend(compare(
                want,
                &have_guard,
                "bridge",
                spoof::TABLE_GUARD,
                "bridge berth-spoof ",
            ));
        }
        Ok(missing)
    }

    async fn reapply(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<()> {
        self.apply("reapply".into(), ruleset::reapply(nets, eps))
            .await
    }

    async fn replace_links(
        &self,
        n: &NetworkRules,
        remove: &[LinkRule],
        add: &[LinkRule],
    ) -> Result<()> {
        let nets = std::slice::from_ref(n);
        let mut ops = icc::links_remove(nets, remove);
        let adds = icc::links_add(nets, add);
        if !adds.is_empty() {
            self.ensure_bridge(n).await?;
        }
        ops.extend(adds);
        match self
            .apply(format!("replace links on {}", n.name), ops)
            .await
        {
            // No table, so nothing to remove (after a flush; `reapply` brings the adds back).
            Err(e) if e.errno() == Some(libc::ENOENT) && add.is_empty() => Ok(()),
            other => other,
        }
    }

    async fn forget_flows(&self, ips: &[std::net::IpAddr]) -> Result<usize> {
        let ips = ips.to_vec();
        self.sock
            .run("delete conntrack entries", false, move |fd| {
                crate::firewall::conntrack::forget(fd, &ips)
            })
            .await
    }
}

/// What of `want` table `FAMILY TABLE` (`have`) lacks, one line each; chains and maps are
/// named with `prefix`.
fn compare(
    want: &ruleset::Expected,
    have: &dump::KernelState,
    family: &str,
    table: &str,
    prefix: &str,
) -> Vec<String> {
    let mut missing = Vec::new();
    if !have.table {
        missing.push(format!("table {family} {table}"));
    }
    for (chain, rules) in &want.chains {
        match (have.chains.get(chain), rules) {
            (None, _) => missing.push(format!("{prefix}chain {chain}")),
            (Some(got), Some(n)) if got < n => {
                missing.push(format!("rules of {prefix}chain {chain}: {got} of {n}"))
            }
            _ => {}
        }
    }
    for map in &want.maps {
        if !have.maps.contains(*map) {
            missing.push(format!("{prefix}map {map}"));
        }
    }
    for (map, key, what) in &want.elements {
        if !have.elements.get(*map).is_some_and(|k| k.contains(key)) {
            missing.push(what.clone());
        }
    }
    missing
}
