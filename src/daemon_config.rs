//! The default bridge, configured like Docker's `daemon.json`.
//!
//! [`DaemonConfig`] reads Docker's keys (`bip`, `fixed-cidr`, `fixed-cidr-v6`, `mtu`,
//! `default-gateway`, `default-gateway-v6`, `dns`, `icc`, `ip-masq`, `ipv6`,
//! `default-address-pools`, `bridge`) and ignores the others (a real daemon.json holds many).
//! [`DaemonConfig::bridge_network`] turns it into the spec of the predefined network
//! [`DEFAULT_BRIDGE`]; [`crate::HostBuilder::daemon_config`] makes the host keep that network as
//! configured. As in Docker, the default bridge has no embedded resolver: its containers get
//! the configured `dns` servers (else the host's) in their resolv.conf.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::address::AddressPool;
use crate::error::{Error, Result};
use crate::network::{Network, NetworkSpec};
use crate::options::BridgeOptions;
use crate::route::RouteSpec;

/// The predefined network's name (`docker run` without `--network`).
pub const DEFAULT_BRIDGE: &str = "bridge";
/// Its bridge device when daemon.json names none. Not `docker0`, so that berth never adopts a
/// Docker daemon's bridge by accident.
pub const DEFAULT_BRIDGE_DEVICE: &str = "berth0";

/// Docker's `daemon.json`, the keys berth uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DaemonConfig {
    /// The bridge's address and prefix, e.g. `192.168.1.5/24` (gateway 192.168.1.5, subnet
    /// 192.168.1.0/24). Default: a free subnet from the pools.
    pub bip: Option<IpNet>,
    /// Allocate container addresses only from this range of the subnet.
    pub fixed_cidr: Option<Ipv4Net>,
    /// The IPv6 subnet (with `ipv6: true`).
    pub fixed_cidr_v6: Option<Ipv6Net>,
    /// MTU of the bridge and container interfaces.
    pub mtu: Option<u32>,
    /// Containers' IPv4 default route goes via this address instead of the bridge.
    pub default_gateway: Option<Ipv4Addr>,
    /// Containers' IPv6 default route goes via this address instead of the bridge.
    pub default_gateway_v6: Option<Ipv6Addr>,
    /// Nameservers for the default bridge's containers.
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// Inter-container communication on the default bridge (default true).
    pub icc: Option<bool>,
    /// Masquerade traffic leaving the default bridge (default true).
    pub ip_masq: Option<bool>,
    /// IPv6 on the default bridge (default false).
    pub ipv6: Option<bool>,
    /// Pools automatic IPv4 subnets come from (all networks of the host).
    #[serde(default)]
    pub default_address_pools: Vec<AddressPool>,
    /// An existing bridge to use (default [`DEFAULT_BRIDGE_DEVICE`], created).
    pub bridge: Option<String>,
}

impl DaemonConfig {
    /// Parses daemon.json text; unknown keys are ignored, known ones must have Docker's types
    /// (a wrong one is named: `key "mtu": invalid type: string "x", expected u32`).
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |reason: String| Error::Config {
            what: "daemon.json".into(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let serde_json::Value::Object(keys) = &value else {
            return Err(bad("expected a JSON object".into()));
        };
        for (key, v) in keys {
            let one = serde_json::Value::Object([(key.clone(), v.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<DaemonConfig>(one) {
                return Err(bad(format!("key {key:?}: {e}")));
            }
        }
        let cfg: DaemonConfig = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a daemon.json file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::state("read", path, e))?;
        DaemonConfig::from_json(&text).map_err(|e| match e {
            Error::Config { reason, .. } => Error::Config {
                what: path.display().to_string(),
                reason,
            },
            e => e,
        })
    }

    /// Checks what the network spec cannot: `bip` is a host address of its subnet.
    pub fn validate(&self) -> Result<()> {
        if let Some(bip) = self.bip {
            if !bip.addr().is_ipv4() {
                return Err(Error::invalid("bip", bip, "must be an IPv4 address/prefix"));
            }
            if bip.addr() == bip.network() || bip.prefix_len() >= 31 {
                return Err(Error::invalid(
                    "bip",
                    bip,
                    "must be a host address with its prefix, e.g. 192.168.1.5/24",
                ));
            }
        }
        for p in &self.default_address_pools {
            if p.size < p.base.prefix_len() || p.size > p.base.max_prefix_len() {
                return Err(Error::invalid(
                    "default-address-pools",
                    format!("{}/{}", p.base, p.size),
                    "size must be at least the base's prefix length",
                ));
            }
        }
        self.bridge_network()?.validate()
    }

    /// The spec of the predefined [`DEFAULT_BRIDGE`] network this config describes.
    pub fn bridge_network(&self) -> Result<NetworkSpec<BridgeOptions>> {
        let mut spec = Network::bridge(DEFAULT_BRIDGE)
            .bridge_name(self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE_DEVICE))
            .dns(false);
        if let Some(bip) = self.bip {
            spec = spec.subnet(bip.trunc()).gateway(bip.addr());
        }
        if let Some(r) = self.fixed_cidr {
            spec = spec.ip_range(IpNet::V4(r));
        }
        let ipv6 = self.ipv6.unwrap_or(false);
        if ipv6 {
            spec = spec.ipv6(true);
            if let Some(s) = self.fixed_cidr_v6 {
                spec = spec.subnet(IpNet::V6(s));
            }
        }
        if let Some(mtu) = self.mtu {
            spec = spec.mtu(mtu);
        }
        if let Some(on) = self.icc {
            spec = spec.icc(on);
        }
        if let Some(on) = self.ip_masq {
            spec = spec.masquerade(on);
        }
        for d in &self.dns {
            spec = spec.dns_server(*d);
        }
        let gws: Vec<IpAddr> = self
            .default_gateway
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.default_gateway_v6.map(IpAddr::V6).filter(|_| ipv6))
            .collect();
        if !gws.is_empty() {
            if gws.len() == 1 && gws[0].is_ipv6() {
                return Err(Error::invalid(
                    "default-gateway-v6",
                    gws[0],
                    "berth can only replace both default routes or the IPv4 one",
                ));
            }
            spec = spec.no_default_route(true);
            for gw in gws {
                let dst = match gw {
                    IpAddr::V4(_) => "0.0.0.0/0",
                    IpAddr::V6(_) => "::/0",
                };
                spec = spec.route(RouteSpec {
                    dst: dst.parse().expect("literal"),
                    via: Some(gw),
                    metric: None,
                    table: None,
                });
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "bip": "192.168.200.1/24",
        "fixed-cidr": "192.168.200.128/25",
        "mtu": 1400,
        "dns": ["192.0.2.53", "192.0.2.54"],
        "icc": false,
        "log-driver": "json-file",
        "default-address-pools": [{"base": "10.210.0.0/16", "size": 24}]
    }"#;

    #[test]
    fn docker_keys_become_the_bridge_spec() {
        let cfg = DaemonConfig::from_json(SAMPLE).unwrap();
        assert_eq!(cfg.default_address_pools[0].size, 24);
        let spec = cfg.bridge_network().unwrap();
        assert_eq!(spec.name, "bridge");
        assert_eq!(spec.subnets, vec!["192.168.200.0/24".parse().unwrap()]);
        assert_eq!(
            spec.gateways,
            vec!["192.168.200.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(spec.ip_ranges, vec!["192.168.200.128/25".parse().unwrap()]);
        assert_eq!(spec.mtu, Some(1400));
        assert_eq!(spec.dns, Some(false));
        assert_eq!(spec.dns_servers.len(), 2);
        let o = &spec.driver;
        assert!(!o.icc);
        assert_eq!(o.bridge_name.as_deref(), Some(DEFAULT_BRIDGE_DEVICE));
    }

    #[test]
    fn default_gateway_replaces_the_default_route() {
        let cfg =
            DaemonConfig::from_json(r#"{"bip": "10.1.0.1/24", "default-gateway": "10.1.0.254"}"#)
                .unwrap();
        let spec = cfg.bridge_network().unwrap();
        assert!(spec.no_default_route);
        assert_eq!(spec.routes[0].to_string(), "0.0.0.0/0,via=10.1.0.254");
    }

    #[test]
    fn bad_values_are_named() {
        for (json, what) in [
            (r#"{"bip": "192.168.1.0/24"}"#, "bip"),
            (r#"{"bip": "fd00::1/64"}"#, "bip"),
            (r#"{"mtu": 10}"#, "mtu"),
            (
                r#"{"fixed-cidr": "10.9.0.0/24", "bip": "10.1.0.1/24"}"#,
                "ip-range",
            ),
        ] {
            let e = DaemonConfig::from_json(json).unwrap_err().to_string();
            assert!(e.contains(what), "{json}: {e}");
        }
        let e = DaemonConfig::from_json(r#"{"mtu": "big"}"#).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }
}
