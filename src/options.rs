//! Typed options of the drivers that put containers straight on a host link: macvlan and
//! ipvlan (Docker's `-o parent=… -o macvlan_mode=… -o ipvlan_mode=… -o ipvlan_flag=…`).
//! Parsed once from strings (`FromStr`), never carried as strings into drivers.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// macvlan modes (`-o macvlan_mode=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacvlanMode {
    /// Containers on one parent reach each other directly (the default).
    #[default]
    Bridge,
    /// No traffic between containers of the parent, even through the external switch.
    Private,
    /// Container-to-container traffic goes out to the switch (802.1Qbg).
    Vepa,
    /// One container takes over the parent.
    Passthru,
}

/// ipvlan modes (`-o ipvlan_mode=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanMode {
    /// Layer 2: the parent switches frames (the default).
    #[default]
    L2,
    /// Layer 3: the parent routes; the container's default route is the device itself.
    L3,
    /// Layer 3 with netfilter on the host side.
    L3s,
}

/// ipvlan flags (`-o ipvlan_flag=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpvlanFlag {
    /// Slaves talk to each other (the default).
    #[default]
    Bridge,
    /// Slaves do not talk to each other.
    Private,
    /// Slave traffic goes out to the switch.
    Vepa,
}

/// Options of a macvlan network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacvlanOptions {
    /// Parent link (`-o parent=`): an existing link, `BASE.VLAN` (created if missing), or none
    /// (an internal network on a dummy link berth owns).
    pub parent: Option<String>,
    /// Mode.
    pub mode: MacvlanMode,
    /// An address for a host-side macvlan ("shim") on the parent, so the host itself can reach
    /// the containers (a macvlan parent cannot talk to its own macvlans). Reserved in IPAM.
    pub host_shim: Option<IpAddr>,
}

/// Options of an ipvlan network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvlanOptions {
    /// Parent link, as for macvlan.
    pub parent: Option<String>,
    /// Mode.
    pub mode: IpvlanMode,
    /// Flag.
    pub flag: IpvlanFlag,
}

macro_rules! names {
    ($t:ty, $what:literal, $expected:literal, $($v:ident = $s:literal),+) => {
        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($s => Ok(<$t>::$v),)+
                    _ => Err(Error::invalid($what, s, $expected)),
                }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(<$t>::$v => $s,)+ })
            }
        }
    };
}

names!(
    MacvlanMode,
    "macvlan_mode",
    "expected bridge, private, vepa or passthru",
    Bridge = "bridge",
    Private = "private",
    Vepa = "vepa",
    Passthru = "passthru"
);
names!(
    IpvlanMode,
    "ipvlan_mode",
    "expected l2, l3 or l3s",
    L2 = "l2",
    L3 = "l3",
    L3s = "l3s"
);
names!(
    IpvlanFlag,
    "ipvlan_flag",
    "expected bridge, private or vepa",
    Bridge = "bridge",
    Private = "private",
    Vepa = "vepa"
);

/// A parent link as named: an existing link, or `BASE.ID` for an 802.1q sub-interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentSpec {
    /// No parent: a dummy link berth owns.
    Dummy,
    /// A link name; `vlan` is `Some((base, id))` when it has the `BASE.ID` form.
    Link {
        /// The name.
        name: String,
        /// Base link and VLAN id of a `BASE.ID` name.
        vlan: Option<(String, u16)>,
    },
}

impl ParentSpec {
    /// Parses and validates an optional parent name.
    pub fn parse(parent: Option<&str>) -> Result<Self> {
        let Some(name) = parent else {
            return Ok(ParentSpec::Dummy);
        };
        crate::validate::validate_ifname("parent", name)?;
        let vlan = match name.rsplit_once('.') {
            Some((base, id))
                if !base.is_empty() && id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty() =>
            {
                let id: u16 = id
                    .parse()
                    .map_err(|_| Error::invalid("vlan id", id, "must be 1-4094"))?;
                if !(1..=4094).contains(&id) {
                    return Err(Error::invalid("vlan id", id, "must be 1-4094"));
                }
                Some((base.to_string(), id))
            }
            _ => None,
        };
        Ok(ParentSpec::Link {
            name: name.to_string(),
            vlan,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_refuse_unknowns() {
        for m in ["bridge", "private", "vepa", "passthru"] {
            assert_eq!(m.parse::<MacvlanMode>().unwrap().to_string(), m);
        }
        assert_eq!("l3s".parse::<IpvlanMode>().unwrap(), IpvlanMode::L3s);
        assert!("l4".parse::<IpvlanMode>().is_err());
        assert!("source".parse::<MacvlanMode>().is_err());
        assert_eq!(
            "private".parse::<IpvlanFlag>().unwrap(),
            IpvlanFlag::Private
        );
    }

    #[test]
    fn parents_and_vlans() {
        assert_eq!(ParentSpec::parse(None).unwrap(), ParentSpec::Dummy);
        assert_eq!(
            ParentSpec::parse(Some("eth0.50")).unwrap(),
            ParentSpec::Link {
                name: "eth0.50".into(),
                vlan: Some(("eth0".into(), 50))
            }
        );
        assert_eq!(
            ParentSpec::parse(Some("eth0")).unwrap(),
            ParentSpec::Link {
                name: "eth0".into(),
                vlan: None
            }
        );
        assert!(ParentSpec::parse(Some("eth0.5000")).is_err());
        assert!(ParentSpec::parse(Some("a-name-far-too-long")).is_err());
    }
}
