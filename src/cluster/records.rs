//! The values berth keeps in the cluster store (JSON) and the keys they live at, relative to
//! the store's prefix:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `networks` | [`NetworkIndex`]: every overlay network (name, VNI, subnets …) | no |
//! | `net/NAME/config` | the network's [`crate::NetworkInfo`] | no |
//! | `net/NAME/ipam/IP` | [`Claim`]: which host and container hold an address | no |
//! | `net/NAME/ep/HOST/CONTAINER` | [`EndpointRecord`] | the host's |
//! | `hosts/HOST` | [`HostRecord`] | the host's |
//! | `dead/HOST` | [`Tombstone`]: when the reclaimer first saw the host gone | no |
//! | `reclaimer` | the elected reclaimer's host name | its host's |
//! | `encryption/keys` | [`super::encryption::KeySchedule`]: key tags and when each is sent with (never a key) | no |
//!
//! Creating or deleting a network rewrites `networks` with a compare-and-swap on its revision,
//! so names, VNIs and subnets are unique cluster-wide; an address is claimed by creating its
//! key (`version == 0`) while the network's config is unchanged, so a network being deleted
//! takes no new claims.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::network::NetworkInfo;

/// Key of the network index.
pub const NETWORKS: &str = "networks";
/// Key of the reclaimer election.
pub const RECLAIMER: &str = "reclaimer";
/// Key of the encryption key schedule.
pub const KEYS: &str = "encryption/keys";

/// `net/NAME/config`.
pub fn config(net: &str) -> String {
    format!("net/{net}/config")
}
/// `net/NAME/`: everything of one network.
pub fn network_prefix(net: &str) -> String {
    format!("net/{net}/")
}
/// `net/NAME/ipam/`.
pub fn claims(net: &str) -> String {
    format!("net/{net}/ipam/")
}
/// `net/NAME/ipam/IP`.
pub fn claim(net: &str, ip: IpAddr) -> String {
    format!("net/{net}/ipam/{ip}")
}
/// `net/NAME/ep/`.
pub fn endpoints(net: &str) -> String {
    format!("net/{net}/ep/")
}
/// `net/NAME/ep/HOST/CONTAINER`.
pub fn endpoint(net: &str, host: &str, container: &str) -> String {
    format!("net/{net}/ep/{host}/{container}")
}
/// `hosts/HOST`.
pub fn host(host: &str) -> String {
    format!("hosts/{host}")
}
/// `dead/HOST`.
pub fn tombstone(host: &str) -> String {
    format!("dead/{host}")
}

/// What a key under `net/` is, parsed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetKey<'a> {
    /// `net/NAME/config`.
    Config(&'a str),
    /// `net/NAME/ipam/IP`.
    Claim(&'a str, IpAddr),
    /// `net/NAME/ep/HOST/CONTAINER`.
    Endpoint {
        /// Network.
        network: &'a str,
        /// Host.
        host: &'a str,
        /// Container.
        container: &'a str,
    },
}

impl<'a> NetKey<'a> {
    /// Parses a key; `None` for anything else.
    pub fn parse(key: &'a str) -> Option<NetKey<'a>> {
        let rest = key.strip_prefix("net/")?;
        let (net, rest) = rest.split_once('/')?;
        if rest == "config" {
            return Some(NetKey::Config(net));
        }
        if let Some(ip) = rest.strip_prefix("ipam/") {
            return ip.parse().ok().map(|ip| NetKey::Claim(net, ip));
        }
        let (host, container) = rest.strip_prefix("ep/")?.split_once('/')?;
        Some(NetKey::Endpoint {
            network: net,
            host,
            container,
        })
    }
}

/// Every overlay network of the cluster, by name (one read lists them all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkIndex {
    /// Name → the network as created.
    pub networks: BTreeMap<String, NetworkInfo>,
}

impl NetworkIndex {
    /// The VNI of a network of the index.
    pub fn vni_of(net: &NetworkInfo) -> Option<u32> {
        match &net.driver {
            crate::options::DriverOptions::Overlay(o) => o.vni,
            _ => None,
        }
    }

    /// Every subnet of every network.
    pub fn subnets(&self) -> Vec<IpNet> {
        self.networks
            .values()
            .flat_map(|n| n.subnets.iter().map(|s| s.subnet))
            .collect()
    }
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The host.
    pub host: String,
    /// The container.
    pub container: String,
}

/// One endpoint as its host advertises it to the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The host.
    pub host: String,
    /// The container.
    pub container: String,
    /// The host's VTEP.
    pub vtep: IpAddr,
    /// The container interface's MAC.
    pub mac: MacAddr,
    /// Its IPv4 address.
    pub ipv4: Option<IpAddr>,
    /// Its IPv6 address.
    pub ipv6: Option<IpAddr>,
    /// The names it answers to on the network (container name, aliases).
    #[serde(default)]
    pub names: Vec<String>,
    /// The lease its host held when it advertised it: the host's incarnation, which the keys of
    /// encrypted networks are derived with (a host back under a new lease gets SAs with new
    /// SPIs on both ends, so no side keeps a replay window the other restarted). 0 in records
    /// written before it was kept.
    #[serde(default)]
    pub incarnation: i64,
}

/// A live host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Its VTEP.
    pub vtep: IpAddr,
    /// Its VXLAN UDP port.
    pub port: u16,
}

/// When the reclaimer first saw a host with claims but no live lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// Seconds since the epoch.
    pub since: u64,
}

/// JSON of a value.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}
