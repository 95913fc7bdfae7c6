//! Networks: the typed spec a runtime builds ([`Network`] → [`NetworkSpec`]) and the record berth
//! keeps of a created network ([`NetworkInfo`]).
//!
//! Options are typed here, once: `com.docker.network.bridge.name=…` and friends are parsed by the
//! caller (see `examples/netctl.rs`) into [`BridgeOptions`]; drivers never see strings.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The driver a network uses, with its typed options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum DriverOptions {
    /// Linux bridge + one veth per endpoint (`docker network create -d bridge`).
    Bridge(BridgeOptions),
    /// No interface but `lo` (`--network none`).
    None,
}

impl DriverOptions {
    /// The driver's name, as `docker network ls` shows it.
    pub fn kind(&self) -> DriverKind {
        match self {
            DriverOptions::Bridge(_) => DriverKind::Bridge,
            DriverOptions::None => DriverKind::None,
        }
    }
}

/// Which driver, without its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DriverKind {
    /// See [`DriverOptions::Bridge`].
    Bridge,
    /// See [`DriverOptions::None`].
    None,
}

impl DriverKind {
    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Bridge => "bridge",
            DriverKind::None => "none",
        }
    }
}

impl std::fmt::Display for DriverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of a bridge network (Docker's `com.docker.network.bridge.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeOptions {
    /// Bridge device name (`com.docker.network.bridge.name`); default `br-` + the network id.
    pub bridge_name: Option<String>,
    /// Masquerade traffic leaving the subnet (`…enable_ip_masquerade`, default true).
    pub masquerade: bool,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions {
            bridge_name: None,
            masquerade: true,
        }
    }
}

/// Entry point for building network specs: `Network::bridge("web").subnet(…)`.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// A bridge network (`docker network create -d bridge NAME`).
    pub fn bridge(name: impl Into<String>) -> NetworkSpec {
        NetworkSpec::new(name.into(), DriverOptions::Bridge(BridgeOptions::default()))
    }

    /// A network whose endpoints get only `lo` (`--network none`).
    pub fn none(name: impl Into<String>) -> NetworkSpec {
        NetworkSpec::new(name.into(), DriverOptions::None)
    }
}

/// What a runtime asks for when creating a network. Built with [`Network`], checked by
/// [`NetworkSpec::validate`] before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub(crate) name: String,
    pub(crate) driver: DriverOptions,
    pub(crate) subnet: Option<Ipv4Net>,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) internal: bool,
    pub(crate) mtu: Option<u32>,
}

impl NetworkSpec {
    fn new(name: String, driver: DriverOptions) -> Self {
        NetworkSpec {
            name,
            driver,
            subnet: None,
            gateway: None,
            internal: false,
            mtu: None,
        }
    }

    /// The subnet (`--subnet`). Bridge networks need one for now.
    pub fn subnet(mut self, subnet: Ipv4Net) -> Self {
        self.subnet = Some(subnet);
        self
    }

    /// The gateway (`--gateway`); default: the first address of the subnet.
    pub fn gateway(mut self, gateway: Ipv4Addr) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// No route out and no masquerade (`--internal`).
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }

    /// MTU of the bridge and every veth (`com.docker.network.driver.mtu`); default: the MTU of
    /// the host netns' default-route link, else 1500.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Bridge device name (`com.docker.network.bridge.name`). Ignored by other drivers.
    pub fn bridge_name(mut self, name: impl Into<String>) -> Self {
        if let DriverOptions::Bridge(o) = &mut self.driver {
            o.bridge_name = Some(name.into());
        }
        self
    }

    /// Masquerade egress (`com.docker.network.bridge.enable_ip_masquerade`). Ignored by other
    /// drivers.
    pub fn masquerade(mut self, on: bool) -> Self {
        if let DriverOptions::Bridge(o) = &mut self.driver {
            o.masquerade = on;
        }
        self
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks everything that can be checked without the kernel or the state dir.
    pub fn validate(&self) -> Result<()> {
        validate_network_name(&self.name)?;
        if let Some(mtu) = self.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(Error::invalid("mtu", mtu, "must be 68-65535"));
        }
        match &self.driver {
            DriverOptions::Bridge(o) => {
                if let Some(b) = &o.bridge_name {
                    validate_ifname("bridge", b)?;
                }
                let subnet = self.subnet.ok_or_else(|| Error::InvalidSubnet {
                    subnet: String::new(),
                    reason: "bridge networks need --subnet (automatic subnets come with the IPAM issue)",
                })?;
                validate_subnet(&subnet)?;
                if let Some(gw) = self.gateway {
                    validate_host_address(&subnet, gw)?;
                }
            }
            DriverOptions::None => {
                if self.subnet.is_some() || self.gateway.is_some() {
                    return Err(Error::DriverUnsupported {
                        driver: "none",
                        what: "subnets",
                    });
                }
            }
        }
        Ok(())
    }
}

/// One subnet of a network and its gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetInfo {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// The gateway address (on the bridge).
    pub gateway: Ipv4Addr,
}

/// A created network, as recorded in the state dir (`networks/NAME.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Unique name.
    pub name: String,
    /// Random 64-hex id (as Docker's).
    pub id: String,
    /// Driver and its options.
    pub driver: DriverOptions,
    /// Subnets with their gateways (empty for `none`).
    pub subnets: Vec<SubnetInfo>,
    /// No route out, no masquerade.
    pub internal: bool,
    /// MTU in use.
    pub mtu: u32,
    /// The host-side device (the bridge), if the driver made one.
    pub device: Option<String>,
}

impl NetworkInfo {
    /// Whether egress from this network is masqueraded.
    pub fn masquerade(&self) -> bool {
        match &self.driver {
            DriverOptions::Bridge(o) => o.masquerade && !self.internal,
            DriverOptions::None => false,
        }
    }
}

impl AsRef<str> for NetworkInfo {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

/// Network names: 1–64 of `[A-Za-z0-9_.-]`, starting with a letter or digit (Docker's rule).
pub fn validate_network_name(name: &str) -> Result<()> {
    validate_id("network", name)
}

/// Container ids follow the same rule as network names (they become file names).
pub(crate) fn validate_id(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("must be 1-64 characters"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("must start with a letter or digit"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(bad("may only contain letters, digits, '_', '.' and '-'"));
    }
    Ok(())
}

/// Interface names: 1–15 bytes (IFNAMSIZ − 1), no '/', ':', whitespace, not "." or "..".
pub fn validate_ifname(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        return Err(bad("must be 1-15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(bad("must not be . or .."));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(bad("must not contain '/', ':' or whitespace"));
    }
    Ok(())
}

/// A subnet needs zero host bits and room for a gateway and at least one endpoint.
pub fn validate_subnet(subnet: &Ipv4Net) -> Result<()> {
    if subnet.trunc() != *subnet {
        return Err(Error::InvalidSubnet {
            subnet: subnet.to_string(),
            reason: "host bits are set",
        });
    }
    if subnet.prefix_len() > 30 {
        return Err(Error::InvalidSubnet {
            subnet: subnet.to_string(),
            reason: "prefix must be /30 or shorter",
        });
    }
    Ok(())
}

/// An address usable by a host on `subnet`: inside it, neither network nor broadcast address.
pub fn validate_host_address(subnet: &Ipv4Net, addr: Ipv4Addr) -> Result<()> {
    if !subnet.contains(&addr) {
        return Err(Error::OutsideSubnet {
            address: IpAddr::V4(addr),
            subnet: subnet.to_string(),
        });
    }
    if addr == subnet.network() || addr == subnet.broadcast() {
        return Err(Error::InvalidValue {
            what: "address",
            value: addr.to_string(),
            reason: "is the network or broadcast address of its subnet",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_what_is_wrong() {
        let ok = Network::bridge("web").subnet("10.88.0.0/24".parse().unwrap());
        ok.validate().unwrap();
        let e = Network::bridge("web")
            .subnet("10.88.0.1/24".parse().unwrap())
            .validate()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidSubnet { .. }), "{e}");
        let e = ok
            .clone()
            .gateway("10.89.0.1".parse().unwrap())
            .validate()
            .unwrap_err();
        assert!(matches!(e, Error::OutsideSubnet { .. }), "{e}");
        let e = ok
            .clone()
            .bridge_name("a-very-long-bridge")
            .validate()
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidName { kind: "bridge", .. }),
            "{e}"
        );
        let e = Network::bridge("bad/name").validate().unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidName {
                    kind: "network",
                    ..
                }
            ),
            "{e}"
        );
        let e = ok.clone().mtu(10).validate().unwrap_err();
        assert!(matches!(e, Error::InvalidValue { what: "mtu", .. }), "{e}");
        assert!(
            Network::none("n")
                .subnet("10.0.0.0/24".parse().unwrap())
                .validate()
                .is_err()
        );
    }

    #[test]
    fn ifname_rules() {
        validate_ifname("interface", "eth0").unwrap();
        validate_ifname("interface", "abcdefghijklmno").unwrap();
        assert!(validate_ifname("interface", "abcdefghijklmnop").is_err());
        assert!(validate_ifname("interface", "a/b").is_err());
        assert!(validate_ifname("interface", "").is_err());
    }
}
