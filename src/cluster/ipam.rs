//! [`ClusterIpam`]: the [`Ipam`] of overlay networks, as one host sees it. An address is
//! claimed by creating its key (`net/NAME/ipam/IP`, `version == 0`) while the network's config
//! is unchanged; candidates are tried from a start that depends on the host and container, so
//! hosts allocating at once rarely try the same address (the prototype measured ~70× fewer
//! compare-and-swap retries than first-free order). What this host holds is the claims naming
//! it; `Host::gc` reconciles them with its endpoint records like the file IPAM's.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use async_trait::async_trait;
use ipnet::IpNet;

use super::Cluster;
use super::records::{self, Claim, NetKey, to_json};
use super::store::{Compare, Op, Revision, Txn};
use crate::error::{Error, Result};
use crate::ipam::{
    AddressRequest, Allocation, Conflict, Ipam, NetworkPool, PoolRequest, Reconciled, RecordedPool,
    Released, SubnetState,
};
use crate::network::{NetworkInfo, SubnetInfo};

/// How many claims one allocation tries before listing again.
const TRIES_PER_LIST: usize = 8;
/// How many lists one allocation makes before giving up.
const LISTS: usize = 16;

/// Cluster-wide address claims, seen from one host (see the module docs).
#[derive(Debug, Clone)]
pub struct ClusterIpam {
    cluster: Cluster,
}

impl ClusterIpam {
    /// The IPAM of `cluster`'s overlay networks for this host.
    pub fn new(cluster: Cluster) -> ClusterIpam {
        ClusterIpam { cluster }
    }

    fn me(&self) -> &str {
        &self.cluster.identity.name
    }

    async fn config(&self, network: &str) -> Result<(NetworkInfo, Revision)> {
        self.cluster
            .network(network)
            .await?
            .ok_or_else(|| Error::NetworkNotFound {
                name: network.into(),
            })
    }

    /// Every claim of a network: address → claim.
    async fn claims(&self, network: &str) -> Result<BTreeMap<IpAddr, Claim>> {
        let (kvs, _) = self.cluster.store.list(&records::claims(network)).await?;
        let mut m = BTreeMap::new();
        for kv in &kvs {
            if let Some(NetKey::Claim(_, ip)) = NetKey::parse(&kv.key) {
                m.insert(ip, self.cluster.decode::<Claim>(kv)?);
            }
        }
        Ok(m)
    }

    async fn try_claim(
        &self,
        network: &str,
        cfg_rev: Revision,
        ip: IpAddr,
        container: &str,
    ) -> Result<bool> {
        let claim = Claim {
            host: self.me().into(),
            container: container.into(),
        };
        self.cluster
            .store
            .txn(Txn::new(
                vec![
                    Compare::Absent(records::claim(network, ip)),
                    Compare::ModRevision(records::config(network), cfg_rev),
                ],
                vec![Op::put(records::claim(network, ip), to_json(&claim))],
            ))
            .await
    }

    /// Claims one address of `subnet` for `container`: `want` if given, else a free one.
    async fn claim_one(
        &self,
        net: &NetworkInfo,
        cfg_rev: Revision,
        subnet: &SubnetInfo,
        container: &str,
        want: Option<IpAddr>,
    ) -> Result<IpAddr> {
        let mut state = SubnetState::new(
            subnet.subnet,
            Some(subnet.gateway),
            subnet.ip_range,
            net.aux
                .iter()
                .filter(|(_, ip)| subnet.subnet.contains(*ip))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        )?;
        for _ in 0..LISTS {
            let claims = self.claims(&net.name).await?;
            state.allocations = claims
                .iter()
                .filter(|(ip, _)| subnet.subnet.contains(*ip))
                .map(|(ip, c)| (*ip, format!("{}/{}", c.host, c.container)))
                .collect();
            if let Some(ip) = want {
                state.check_request(&net.name, ip)?;
                if let Some(c) = claims.get(&ip) {
                    return Err(Error::AddressInUse {
                        address: ip,
                        network: net.name.clone(),
                        container: format!("{} on {}", c.container, c.host),
                    });
                }
                if self.try_claim(&net.name, cfg_rev, ip, container).await? {
                    return Ok(ip);
                }
                continue;
            }
            state.last = Some(start_of(&state, self.me(), container));
            let candidates: Vec<IpAddr> = state
                .candidates()
                .filter(|ip| !state.allocations.contains_key(ip))
                .take(TRIES_PER_LIST)
                .collect();
            if candidates.is_empty() {
                return Err(Error::PoolExhausted {
                    network: net.name.clone(),
                });
            }
            for ip in candidates {
                if self.try_claim(&net.name, cfg_rev, ip, container).await? {
                    return Ok(ip);
                }
            }
            // The network may be being deleted: its config changed.
            if self.cluster.network(&net.name).await?.map(|(_, r)| r) != Some(cfg_rev) {
                return Err(Error::NetworkNotFound {
                    name: net.name.clone(),
                });
            }
        }
        Err(self.cluster.contended("claim address"))
    }

    async fn delete_claims(&self, network: &str, ips: &[IpAddr]) -> Result<()> {
        if ips.is_empty() {
            return Ok(());
        }
        let ops = ips
            .iter()
            .map(|ip| Op::Delete(records::claim(network, *ip)))
            .collect();
        self.cluster
            .store
            .txn(Txn::new(vec![], ops))
            .await
            .map(drop)
    }

    fn mine<'a>(
        &'a self,
        claims: &'a BTreeMap<IpAddr, Claim>,
    ) -> impl Iterator<Item = (&'a IpAddr, &'a Claim)> + 'a {
        claims.iter().filter(move |(_, c)| c.host == self.me())
    }
}

/// A start for the round robin that depends on who asks, so concurrent allocators spread.
fn start_of(state: &SubnetState, host: &str, container: &str) -> IpAddr {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (host, container).hash(&mut h);
    let span: u128 = match state.subnet {
        IpNet::V4(n) => 1u128 << (32 - n.prefix_len()).min(31),
        IpNet::V6(n) => 1u128 << (128 - n.prefix_len()).min(64),
    };
    let off = u128::from(h.finish()) % span.max(1);
    match state.subnet.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(off as u32)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(off)).into()),
    }
}

#[async_trait]
impl Ipam for ClusterIpam {
    /// Overlay subnets are reserved when the network is created in the store.
    async fn reserve_pool(&self, network: &str, _: PoolRequest) -> Result<Vec<SubnetInfo>> {
        Ok(self.config(network).await?.0.subnets)
    }

    /// The pool goes with the network's keys when it is deleted cluster-wide.
    async fn release_pool(&self, _: &str) -> Result<()> {
        Ok(())
    }

    async fn allocate(
        &self,
        network: &str,
        container: &str,
        req: AddressRequest,
    ) -> Result<Allocation> {
        let (net, rev) = self.config(network).await?;
        let mut alloc = Allocation::default();
        for s in &net.subnets {
            let want = match s.subnet {
                IpNet::V4(_) => req.v4.map(IpAddr::V4),
                IpNet::V6(_) => req.v6.map(IpAddr::V6),
            };
            match self.claim_one(&net, rev, s, container, want).await {
                Ok(ip) => {
                    alloc.claimed.push(ip);
                    alloc
                        .addresses
                        .push(IpNet::new(ip, s.subnet.prefix_len()).expect("prefix of a subnet"));
                }
                Err(e) => {
                    let _ = self.delete_claims(network, &alloc.claimed).await;
                    return Err(e);
                }
            }
        }
        Ok(alloc)
    }

    async fn revert(&self, network: &str, _: &str, alloc: &Allocation) -> Result<()> {
        self.delete_claims(network, &alloc.claimed).await
    }

    async fn release(&self, network: &str, container: &str) -> Result<()> {
        let claims = self.claims(network).await?;
        let ips: Vec<IpAddr> = self
            .mine(&claims)
            .filter(|(_, c)| c.container == container)
            .map(|(ip, _)| *ip)
            .collect();
        self.delete_claims(network, &ips).await
    }

    async fn pool(&self, network: &str) -> Result<Option<NetworkPool>> {
        let Some((net, _)) = self.cluster.network(network).await? else {
            return Ok(None);
        };
        let claims = self.claims(network).await?;
        let mut subnets = Vec::new();
        for s in &net.subnets {
            let mut st = SubnetState::new(s.subnet, Some(s.gateway), s.ip_range, BTreeMap::new())?;
            st.allocations = self
                .mine(&claims)
                .filter(|(ip, _)| s.subnet.contains(*ip))
                .map(|(ip, c)| (*ip, c.container.clone()))
                .collect();
            subnets.push(st);
        }
        Ok(Some(NetworkPool { subnets }))
    }

    /// None: overlay pools live as long as their network in the store, not this host's.
    async fn pools(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn claim_count(&self, network: &str) -> Result<usize> {
        Ok(self.mine(&self.claims(network).await?).count())
    }

    async fn reconcile(&self, network: &str, recorded: &RecordedPool) -> Result<Reconciled> {
        let mut out = Reconciled::default();
        let Some((_, rev)) = self.cluster.network(network).await? else {
            return Ok(out);
        };
        let claims = self.claims(network).await?;
        let mut stray = Vec::new();
        for (ip, c) in self.mine(&claims) {
            if !recorded
                .held
                .get(&c.container)
                .is_some_and(|v| v.contains(ip))
            {
                stray.push(*ip);
                out.released.push(Released {
                    network: network.into(),
                    container: c.container.clone(),
                    address: *ip,
                });
            }
        }
        self.delete_claims(network, &stray).await?;
        for (container, ips) in &recorded.held {
            for ip in ips {
                match claims.get(ip) {
                    Some(c) if c.host == self.me() && &c.container == container => {}
                    Some(c) => out.conflicts.push(Conflict {
                        network: network.into(),
                        address: *ip,
                        recorded: container.clone(),
                        claimed_by: format!("{} on {}", c.container, c.host),
                    }),
                    None => {
                        if self.try_claim(network, rev, *ip, container).await? {
                            out.restored.push((container.clone(), *ip));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
