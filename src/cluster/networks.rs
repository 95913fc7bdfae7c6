//! Overlay networks in the store: created, listed and deleted cluster-wide. The index key
//! (`networks`) is rewritten by compare-and-swap on its revision, so two hosts creating the
//! same name at once make one network, and two creating different ones get distinct VNIs and
//! subnets. A deletion first rewrites the network's config (so in-flight address claims, which
//! require the config unchanged, fail), then refuses while any host has endpoints or claims.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::Cluster;
use super::records::{self, Claim, EndpointRecord, NetKey, NetworkIndex, to_json};
use super::store::{Compare, KeyValue, Op, Revision, Txn};
use crate::error::{Error, Result};
use crate::ipam::{AddressPool, SubnetState, pools};
use crate::network::{NetworkInfo, SubnetInfo, SubnetRequest};
use crate::options::{DriverOptions, VNI_MAX};

/// The first VNI handed out automatically (Docker's overlay starts at 4096 too).
const FIRST_VNI: u32 = 4096;
/// How many times a compare-and-swap is retried against concurrent writers.
const CAS_TRIES: usize = 64;

/// The default pool of automatic overlay subnets: 10.0.0.0/8 as /24s (Docker's overlay default
/// is a /24 of 10.0.0.0/8).
pub fn default_overlay_pool() -> Vec<AddressPool> {
    vec![AddressPool {
        base: "10.0.0.0/8".parse().expect("literal"),
        size: 24,
    }]
}

/// The IPv6 pool of automatic overlay subnets: /64s of a ULA /48 fixed for every cluster.
pub fn default_overlay_pool6() -> Vec<AddressPool> {
    pools::default_ipv6_pools(b"berth overlay networks")
}

impl Cluster {
    pub(crate) async fn index(&self) -> Result<(NetworkIndex, Option<Revision>)> {
        match self.store.get(records::NETWORKS).await? {
            None => Ok((NetworkIndex::default(), None)),
            Some(kv) => Ok((self.decode(&kv)?, Some(kv.mod_revision))),
        }
    }

    pub(crate) fn decode<T: serde::de::DeserializeOwned>(&self, kv: &KeyValue) -> Result<T> {
        serde_json::from_slice(&kv.value).map_err(|e| Error::Store {
            store: self.store.describe(),
            op: "decode",
            reason: format!("key {}: {e}", kv.key),
        })
    }

    /// Every overlay network of the cluster, by name.
    pub async fn networks(&self) -> Result<Vec<NetworkInfo>> {
        Ok(self
            .index()
            .await?
            .0
            .networks
            .into_values()
            .filter(|n| !n.removing)
            .collect())
    }

    /// One overlay network and the revision of its config (address claims require it
    /// unchanged); `None` when there is none (or it is being deleted).
    pub async fn network(&self, name: &str) -> Result<Option<(NetworkInfo, Revision)>> {
        let Some(kv) = self.store.get(&records::config(name)).await? else {
            return Ok(None);
        };
        let net: NetworkInfo = self.decode(&kv)?;
        Ok((!net.removing).then_some((net, kv.mod_revision)))
    }

    /// Creates an overlay network cluster-wide: its name unique, its VNI (given or the lowest
    /// free) and subnets (given or chosen from the pools, avoiding every other overlay network
    /// and `avoid`) distinct from every other overlay network's. All or nothing.
    pub(crate) async fn create_network(
        &self,
        mut net: NetworkInfo,
        requests: &[SubnetRequest],
        avoid: &[IpNet],
    ) -> Result<NetworkInfo> {
        let template = net.clone();
        for _ in 0..CAS_TRIES {
            net = template.clone();
            let (mut index, rev) = self.index().await?;
            if index.networks.contains_key(&net.name) {
                // A deletion killed after it marked the network: finish it (refused, and the
                // mark undone, if a host holds it), then the name is free.
                if self.store.get(&records::config(&net.name)).await?.is_some()
                    && self.network(&net.name).await?.is_none()
                {
                    self.delete_network(&net.name).await?;
                    continue;
                }
                return Err(Error::NetworkExists { name: net.name });
            }
            let vni = choose_vni(&index, &net)?;
            if let DriverOptions::Overlay(o) = &mut net.driver {
                o.vni = Some(vni);
            }
            net.subnets = choose_subnets(&index, &net, requests, avoid)?;
            index.networks.insert(net.name.clone(), net.clone());
            let mut when = vec![Compare::Absent(records::config(&net.name))];
            when.push(match rev {
                Some(r) => Compare::ModRevision(records::NETWORKS.into(), r),
                None => Compare::Absent(records::NETWORKS.into()),
            });
            let txn = Txn::new(
                when,
                // No key of the name can be left: a deletion removes them all in one txn (and
                // etcd refuses a txn that deletes and puts one key).
                vec![
                    Op::put(records::NETWORKS, to_json(&index)),
                    Op::put(records::config(&net.name), to_json(&net)),
                ],
            );
            if self.store.txn(txn).await? {
                return Ok(net);
            }
        }
        Err(self.contended("create network"))
    }

    pub(crate) fn contended(&self, op: &'static str) -> Error {
        Error::Store {
            store: self.store.describe(),
            op,
            reason: format!("still contended after {CAS_TRIES} compare-and-swap attempts"),
        }
    }

    /// Who holds the network: every endpoint and every address claim, as (host, container).
    pub async fn holders(&self, name: &str) -> Result<Vec<(String, String)>> {
        let (kvs, _) = self.store.list(&records::network_prefix(name)).await?;
        let mut v = Vec::new();
        for kv in &kvs {
            match NetKey::parse(&kv.key) {
                Some(NetKey::Endpoint {
                    host, container, ..
                }) => v.push((host.to_string(), container.to_string())),
                Some(NetKey::Claim(..)) => {
                    let c: Claim = self.decode(kv)?;
                    v.push((c.host, c.container));
                }
                _ => {}
            }
        }
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// Deletes an overlay network cluster-wide; refused (changing nothing) while any host has
    /// an endpoint or an address on it, naming them.
    pub(crate) async fn delete_network(&self, name: &str) -> Result<()> {
        let Some(kv) = self.store.get(&records::config(name)).await? else {
            return Err(Error::NetworkNotFound { name: name.into() });
        };
        let mut net: NetworkInfo = self.decode(&kv)?;
        // Claims require the config unchanged: rewriting it stops every claim in flight.
        net.removing = true;
        let marked = Txn::new(
            vec![Compare::ModRevision(records::config(name), kv.mod_revision)],
            vec![Op::put(records::config(name), to_json(&net))],
        );
        if !self.store.txn(marked).await? {
            return Err(self.contended("delete network"));
        }
        let holders = self.holders(name).await;
        let held = match holders {
            Ok(h) => h,
            Err(e) => {
                self.unmark(name, &net).await;
                return Err(e);
            }
        };
        if !held.is_empty() {
            self.unmark(name, &net).await;
            return Err(Error::NetworkInUseOnHosts {
                name: name.into(),
                endpoints: held,
            });
        }
        for _ in 0..CAS_TRIES {
            let (mut index, rev) = self.index().await?;
            index.networks.remove(name);
            let Some(rev) = rev else { break };
            let txn = Txn::new(
                vec![Compare::ModRevision(records::NETWORKS.into(), rev)],
                vec![
                    Op::DeletePrefix(records::network_prefix(name)),
                    Op::put(records::NETWORKS, to_json(&index)),
                ],
            );
            if self.store.txn(txn).await? {
                return Ok(());
            }
        }
        Err(self.contended("delete network"))
    }

    async fn unmark(&self, name: &str, net: &NetworkInfo) {
        let mut n = net.clone();
        n.removing = false;
        if let Err(e) = self
            .store
            .txn(Txn::new(
                vec![],
                vec![Op::put(records::config(name), to_json(&n))],
            ))
            .await
        {
            tracing::warn!(target: "berth::cluster", network = name, error = %e, "refused delete not undone");
        }
    }

    /// Every endpoint of a network, on every host.
    pub async fn endpoint_records(&self, name: &str) -> Result<Vec<EndpointRecord>> {
        let (kvs, _) = self.store.list(&records::endpoints(name)).await?;
        kvs.iter().map(|kv| self.decode(kv)).collect()
    }
}

fn choose_vni(index: &NetworkIndex, net: &NetworkInfo) -> Result<u32> {
    let used: BTreeMap<u32, &str> = index
        .networks
        .values()
        .filter_map(|n| NetworkIndex::vni_of(n).map(|v| (v, n.name.as_str())))
        .collect();
    match NetworkIndex::vni_of(net) {
        Some(v) => match used.get(&v) {
            Some(other) => Err(Error::VniInUse {
                vni: v,
                network: (*other).into(),
            }),
            None => Ok(v),
        },
        None => (FIRST_VNI..=VNI_MAX)
            .find(|v| !used.contains_key(v))
            .ok_or_else(|| Error::invalid("vxlanid_list", "(automatic)", "every VNI is in use")),
    }
}

fn choose_subnets(
    index: &NetworkIndex,
    net: &NetworkInfo,
    requests: &[SubnetRequest],
    avoid: &[IpNet],
) -> Result<Vec<SubnetInfo>> {
    let mut taken: Vec<IpNet> = index.subnets();
    taken.extend_from_slice(avoid);
    let mut out = Vec::new();
    for r in requests {
        let subnet = match r.subnet {
            Some(s) => {
                for n in index.networks.values() {
                    if let Some(x) = n.subnets.iter().find(|x| overlap(&x.subnet, &s)) {
                        return Err(Error::SubnetOverlap {
                            subnet: s.to_string(),
                            other: x.subnet.to_string(),
                            network: n.name.clone(),
                        });
                    }
                }
                s
            }
            None => {
                let pool = if r.ipv6 {
                    default_overlay_pool6()
                } else {
                    default_overlay_pool()
                };
                pools::choose(&pool, &taken).ok_or_else(|| Error::NoFreeSubnet {
                    network: net.name.clone(),
                    ipv6: r.ipv6,
                })?
            }
        };
        taken.push(subnet);
        let aux = net
            .aux
            .iter()
            .filter(|(_, ip)| subnet.contains(*ip))
            .map(|(k, v)| (k.clone(), *v))
            .collect::<BTreeMap<String, IpAddr>>();
        let st = SubnetState::new(subnet, r.gateway, r.ip_range, aux)?;
        out.push(SubnetInfo {
            subnet,
            gateway: st.gateway,
            ip_range: r.ip_range,
        });
    }
    Ok(out)
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
