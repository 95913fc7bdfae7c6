//! Docker's driver options (`docker network create -d DRIVER -o KEY=VALUE …`), parsed once into
//! berth's typed options — as [`crate::daemon_config`] does for daemon.json — so every runtime
//! accepts Docker's names, and shown back under those names (`docker network inspect`'s
//! `Options`).
//!
//! ```
//! use berth::docker_options::DockerOptions;
//! use berth::{DriverKind, DriverOptions};
//! let o = DockerOptions::parse(
//!     DriverKind::Bridge,
//!     [("com.docker.network.bridge.enable_icc", "false"), ("com.docker.network.driver.mtu", "1400")],
//! )?;
//! assert!(matches!(&o.driver, DriverOptions::Bridge(b) if !b.icc));
//! let spec = o.into_spec("locked").subnet("10.9.0.0/24".parse().unwrap());
//! assert!(spec.validate().is_ok());
//! assert!(DockerOptions::parse(DriverKind::Macvlan, [("com.docker.network.bridge.enable_icc", "false")]).is_err());
//! # Ok::<(), berth::Error>(())
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::error::{Error, Result};
use crate::network::{Network, NetworkInfo, NetworkSpec};
use crate::options::{
    BridgeOptions, DriverKind, DriverOptions, IpvlanOptions, MacvlanOptions, OverlayOptions,
};

/// `com.docker.network.bridge.name`: the bridge device.
pub const BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// `com.docker.network.bridge.enable_ip_masquerade`: masquerade egress (true/false).
pub const MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// `com.docker.network.bridge.enable_icc`: containers may talk to each other (true/false).
pub const ICC: &str = "com.docker.network.bridge.enable_icc";
/// `com.docker.network.bridge.host_binding_ipv4`: the default host address of published ports.
pub const HOST_BINDING_IPV4: &str = "com.docker.network.bridge.host_binding_ipv4";
/// `com.docker.network.host_ipv4`: SNAT egress to this address instead of masquerading.
pub const HOST_IPV4: &str = "com.docker.network.host_ipv4";
/// `com.docker.network.driver.mtu`: the MTU (every driver).
pub const MTU: &str = "com.docker.network.driver.mtu";
/// `anti_spoofing` (berth's; CNI's bridge calls it `macspoofchk`): true/false.
pub const ANTI_SPOOFING: &str = "anti_spoofing";
/// `parent`: the parent link of a macvlan/ipvlan network (`eth0`, `eth0.50`).
pub const PARENT: &str = "parent";
/// `macvlan_mode`: bridge, private, vepa or passthru.
pub const MACVLAN_MODE: &str = "macvlan_mode";
/// `ipvlan_mode`: l2, l3 or l3s.
pub const IPVLAN_MODE: &str = "ipvlan_mode";
/// `ipvlan_flag`: bridge, private or vepa.
pub const IPVLAN_FLAG: &str = "ipvlan_flag";
/// `encrypted`: an overlay network whose traffic between hosts is ESP (Docker's key; an empty
/// value means true).
pub const ENCRYPTED: &str = "encrypted";
/// `encap`: how an overlay network crosses hosts, `vxlan` (default) or `gre` (berth's key).
pub const ENCAP: &str = "encap";
/// `com.docker.network.driver.overlay.vxlanid_list`: the VXLAN id of an overlay network.
pub const VXLANID_LIST: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// What one `docker network create -d DRIVER -o …` asked for: the driver with its typed options,
/// and the driver-independent options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    /// The driver and its options.
    pub driver: DriverOptions,
    /// [`MTU`], if given.
    pub mtu: Option<u32>,
}

impl DockerOptions {
    /// Parses `KEY=VALUE` pairs for `driver`; a later pair overrides an earlier one (as Docker's
    /// map does). A key the driver does not have is refused with [`Error::UnknownOption`]
    /// naming it and the driver's keys; a bad value with an error naming the key and value.
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(
        driver: DriverKind,
        opts: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut out = DockerOptions {
            driver: match driver {
                DriverKind::Bridge => BridgeOptions::default().into(),
                DriverKind::Macvlan => MacvlanOptions::default().into(),
                DriverKind::Ipvlan => IpvlanOptions::default().into(),
                DriverKind::Overlay => OverlayOptions::default().into(),
                _ => DriverOptions::None,
            },
            mtu: None,
        };
        for (k, v) in opts {
            out.set(k.as_ref(), v.as_ref())?;
        }
        out.driver.validate()?;
        Ok(out)
    }

    /// Parses `KEY=VALUE` strings (the words after each `-o`).
    pub fn parse_flags<S: AsRef<str>>(
        driver: DriverKind,
        flags: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let pairs = flags
            .into_iter()
            .map(|f| {
                let f = f.as_ref();
                match f.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    _ => Err(Error::invalid("driver option", f, "expected KEY=VALUE")),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Self::parse(driver, pairs)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if key == MTU {
            let mtu = value
                .parse()
                .map_err(|_| Error::invalid("mtu", value, "not a number"))?;
            self.mtu = Some(mtu);
            return Ok(());
        }
        let unknown = |driver: DriverKind, known: &'static str| Error::UnknownOption {
            driver: driver.name(),
            option: key.to_string(),
            known,
        };
        match &mut self.driver {
            DriverOptions::Bridge(o) => match key {
                BRIDGE_NAME => o.bridge_name = Some(value.to_string()),
                MASQUERADE => o.masquerade = parse_bool(MASQUERADE, value)?,
                ICC => o.icc = parse_bool(ICC, value)?,
                ANTI_SPOOFING => o.anti_spoofing = parse_bool(ANTI_SPOOFING, value)?,
                HOST_BINDING_IPV4 => o.host_binding_ipv4 = Some(parse_ipv4(key, value)?),
                HOST_IPV4 => o.outbound_ipv4 = Some(parse_ipv4(key, value)?),
                // A trunk for VLAN endpoints (berth's; CNI bridge's `vlanTrunk`).
                PARENT => {
                    crate::validate::validate_ifname("parent", value)?;
                    o.parent = Some(value.to_string());
                }
                _ => return Err(unknown(DriverKind::Bridge, BRIDGE_KEYS)),
            },
            DriverOptions::Macvlan(o) => match key {
                PARENT => o.parent = value.parse()?,
                MACVLAN_MODE => o.mode = value.parse()?,
                _ => return Err(unknown(DriverKind::Macvlan, MACVLAN_KEYS)),
            },
            DriverOptions::Ipvlan(o) => match key {
                PARENT => o.parent = value.parse()?,
                IPVLAN_MODE => o.mode = value.parse()?,
                IPVLAN_FLAG => o.flag = value.parse()?,
                _ => return Err(unknown(DriverKind::Ipvlan, IPVLAN_KEYS)),
            },
            DriverOptions::Overlay(o) => match key {
                // Docker takes a list (one VNI per subnet); berth's overlay has one VNI.
                VXLANID_LIST => {
                    o.vni = Some(value.parse().map_err(|_| {
                        Error::invalid(VXLANID_LIST, value, "expected one VXLAN id (1-16777215)")
                    })?)
                }
                // Docker's key; an empty value (`-o encrypted`) means on.
                ENCRYPTED => {
                    o.encrypted = value.is_empty() || parse_bool(ENCRYPTED, value)?;
                }
                ENCAP => o.encap = value.parse()?,
                _ => return Err(unknown(DriverKind::Overlay, OVERLAY_KEYS)),
            },
            other => return Err(unknown(other.kind(), MTU)),
        }
        Ok(())
    }

    /// A spec of network `name` with these options (add subnets and the like to it).
    pub fn into_spec(self, name: impl Into<String>) -> NetworkSpec {
        let spec = Network::with_options(name, self.driver);
        match self.mtu {
            Some(m) => spec.mtu(m),
            None => spec,
        }
    }

    /// The options in effect on a network, under Docker's keys, with values as Docker shows
    /// them (strings): the bridge name and MTU in use, the parent link, the modes.
    pub fn effective(net: &NetworkInfo) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        match &net.driver {
            DriverOptions::Bridge(o) => {
                if let Some(name) = o.bridge_name.clone().or_else(|| net.device.clone()) {
                    m.insert(BRIDGE_NAME, name);
                }
                m.insert(MASQUERADE, o.masquerade.to_string());
                m.insert(ICC, o.icc.to_string());
                m.insert(ANTI_SPOOFING, o.anti_spoofing.to_string());
                if let Some(p) = &o.parent {
                    m.insert(PARENT, p.clone());
                }
                if let Some(ip) = o.host_binding_ipv4 {
                    m.insert(HOST_BINDING_IPV4, ip.to_string());
                }
                if let Some(ip) = o.outbound_ipv4 {
                    m.insert(HOST_IPV4, ip.to_string());
                }
                m.insert(MTU, net.mtu.to_string());
            }
            DriverOptions::Macvlan(o) => {
                m.extend(net.device.clone().map(|d| (PARENT, d)));
                m.insert(MACVLAN_MODE, o.mode.to_string());
            }
            DriverOptions::Ipvlan(o) => {
                m.extend(net.device.clone().map(|d| (PARENT, d)));
                m.insert(IPVLAN_MODE, o.mode.to_string());
                m.insert(IPVLAN_FLAG, o.flag.to_string());
            }
            DriverOptions::Overlay(o) => {
                m.extend(o.vni.map(|v| (VXLANID_LIST, v.to_string())));
                if o.encrypted {
                    m.insert(ENCRYPTED, String::new());
                }
                m.insert(ENCAP, o.encap.to_string());
                m.insert(MTU, net.mtu.to_string());
            }
            DriverOptions::None => {}
        }
        m
    }
}

const BRIDGE_KEYS: &str = "com.docker.network.bridge.name, …bridge.enable_ip_masquerade, \
                           …bridge.enable_icc, …bridge.host_binding_ipv4, \
                           com.docker.network.host_ipv4, com.docker.network.driver.mtu, \
                           anti_spoofing, parent";
const MACVLAN_KEYS: &str = "parent, macvlan_mode, com.docker.network.driver.mtu";
const IPVLAN_KEYS: &str = "parent, ipvlan_mode, ipvlan_flag, com.docker.network.driver.mtu";
const OVERLAY_KEYS: &str = "com.docker.network.driver.overlay.vxlanid_list, encrypted, encap, \
                            com.docker.network.driver.mtu";

fn parse_bool(what: &'static str, s: &str) -> Result<bool> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::invalid(what, s, "expected true or false")),
    }
}

fn parse_ipv4(what: &str, s: &str) -> Result<Ipv4Addr> {
    let what = if what == HOST_IPV4 {
        HOST_IPV4
    } else {
        HOST_BINDING_IPV4
    };
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => Ok(ip),
        Ok(IpAddr::V6(_)) => Err(Error::invalid(what, s, "must be an IPv4 address")),
        Err(_) => Err(Error::invalid(what, s, "not an IPv4 address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{IpvlanMode, MacvlanMode, Parent};

    #[test]
    fn docker_keys_become_typed_options() {
        let o = DockerOptions::parse(
            DriverKind::Bridge,
            [
                (BRIDGE_NAME, "br-x"),
                (MASQUERADE, "false"),
                (ANTI_SPOOFING, "true"),
                (HOST_BINDING_IPV4, "192.0.2.10"),
                (MTU, "1400"),
            ],
        )
        .unwrap();
        let DriverOptions::Bridge(b) = &o.driver else {
            panic!("{o:?}")
        };
        assert_eq!(b.bridge_name.as_deref(), Some("br-x"));
        assert!(!b.masquerade && b.anti_spoofing && b.icc);
        assert_eq!(b.host_binding_ipv4, Some(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!(o.mtu, Some(1400));

        let o = DockerOptions::parse_flags(
            DriverKind::Macvlan,
            ["parent=eth0.50", "macvlan_mode=private"],
        )
        .unwrap();
        assert_eq!(
            o.driver,
            DriverOptions::Macvlan(MacvlanOptions {
                parent: Parent::Vlan {
                    base: "eth0".into(),
                    id: 50
                },
                mode: MacvlanMode::Private,
                host_shim: None,
            })
        );
        let o = DockerOptions::parse(DriverKind::Ipvlan, [(IPVLAN_MODE, "l3")]).unwrap();
        assert!(matches!(&o.driver, DriverOptions::Ipvlan(i) if i.mode == IpvlanMode::L3));
    }

    #[test]
    fn refusals_name_the_key_and_the_value() {
        let e = DockerOptions::parse(DriverKind::Macvlan, [(ANTI_SPOOFING, "true")]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::UnknownOption {
                    driver: "macvlan",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("anti_spoofing"), "{e}");
        let e = DockerOptions::parse(DriverKind::Bridge, [("foo.bar", "1")]).unwrap_err();
        assert!(e.to_string().contains("foo.bar"), "{e}");
        let e = DockerOptions::parse(DriverKind::Bridge, [(ICC, "maybe")]).unwrap_err();
        assert!(e.to_string().contains("maybe"), "{e}");
        let e = DockerOptions::parse(DriverKind::Bridge, [(HOST_BINDING_IPV4, "::1")]).unwrap_err();
        assert!(e.to_string().contains("IPv4"), "{e}");
        assert!(DockerOptions::parse(DriverKind::Ipvlan, [(PARENT, "eth0.9999")]).is_err());
        assert!(
            DockerOptions::parse(DriverKind::Bridge, [(BRIDGE_NAME, "a-far-too-long-name")])
                .is_err()
        );
        assert!(DockerOptions::parse_flags(DriverKind::Bridge, ["novalue"]).is_err());
        let e = DockerOptions::parse(DriverKind::None, [(PARENT, "eth0")]).unwrap_err();
        assert!(
            matches!(e, Error::UnknownOption { driver: "none", .. }),
            "{e}"
        );
    }
}
