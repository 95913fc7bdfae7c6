//! The typed options of every driver, and [`DriverOptions`], the one enum that holds a
//! network's driver with its options (what records keep). A driver receives its own options
//! type (see `driver::driver_for`), never the enum, and never strings: Docker's `-o KEY=VALUE`
//! are parsed once, by [`crate::docker_options`].
//!
//! Adding a driver: its options type here (implementing [`TypedOptions`]), a variant of
//! [`DriverOptions`] and [`DriverKind`], a module in `driver/`, a line in the registry.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

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
    /// A macvlan per endpoint on a host link (`docker network create -d macvlan`).
    Macvlan(MacvlanOptions),
    /// An ipvlan per endpoint on a host link (`docker network create -d ipvlan`).
    Ipvlan(IpvlanOptions),
    /// A VXLAN across hosts, kept in the cluster store (`docker network create -d overlay`).
    Overlay(OverlayOptions),
}

impl DriverOptions {
    /// Checks the options that can be checked without the kernel: interface names, VLAN ids.
    pub fn validate(&self) -> Result<()> {
        match self {
            DriverOptions::Bridge(o) => {
                if let Some(b) = &o.bridge_name {
                    crate::validate::validate_ifname("bridge", b)?;
                }
                match &o.parent {
                    Some(p) if o.bridge_name.as_ref() == Some(p) => Err(Error::invalid(
                        "parent",
                        p,
                        "is the bridge itself: a trunk is another link",
                    )),
                    Some(p) => crate::validate::validate_ifname("parent", p),
                    None => Ok(()),
                }
            }
            DriverOptions::Macvlan(o) => o.parent.validate(),
            DriverOptions::Ipvlan(o) => o.parent.validate(),
            DriverOptions::None => Ok(()),
            DriverOptions::Overlay(o) => o.validate(),
        }
    }

    /// The driver's name, as `docker network ls` shows it.
    pub fn kind(&self) -> DriverKind {
        match self {
            DriverOptions::Bridge(_) => DriverKind::Bridge,
            DriverOptions::None => DriverKind::None,
            DriverOptions::Macvlan(_) => DriverKind::Macvlan,
            DriverOptions::Ipvlan(_) => DriverKind::Ipvlan,
            DriverOptions::Overlay(_) => DriverKind::Overlay,
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
    /// See [`DriverOptions::Macvlan`].
    Macvlan,
    /// See [`DriverOptions::Ipvlan`].
    Ipvlan,
    /// See [`DriverOptions::Overlay`].
    Overlay,
}

impl DriverKind {
    /// The name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            DriverKind::Bridge => "bridge",
            DriverKind::None => "none",
            DriverKind::Macvlan => "macvlan",
            DriverKind::Ipvlan => "ipvlan",
            DriverKind::Overlay => "overlay",
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
    /// Containers of the network may talk to each other (`…enable_icc`, default true). Off:
    /// every container port of the bridge is marked with [`crate::network::ICC_OFF_PORT_GROUP`] and the
    /// firewall drops what they send each other, except legacy-link flows (no br_netfilter);
    /// egress and published ports keep working. Needs a firewall backend (as Docker's
    /// `enable_icc=false` needs its iptables rules): with `NoFirewall` it is not enforced.
    #[serde(default = "yes")]
    pub icc: bool,
    /// Let hosts outside reach container addresses directly on any port (default false: from
    /// outside, only published ports get through).
    #[serde(default)]
    pub allow_direct_access: bool,
    /// The host address `-p` publishes on when it names none
    /// (`com.docker.network.bridge.host_binding_ipv4`; default all).
    #[serde(default)]
    pub host_binding_ipv4: Option<std::net::Ipv4Addr>,
    /// SNAT egress to this host address instead of masquerading
    /// (`com.docker.network.host_ipv4`).
    #[serde(default)]
    pub outbound_ipv4: Option<std::net::Ipv4Addr>,
    /// Anti-spoofing (default off; Docker has none, CNI's bridge calls it `macspoofchk`): a
    /// container may send only from its own MAC and addresses, and ARP / IPv6 neighbour
    /// discovery only for them; everything else it sends (another source MAC or address, a
    /// gratuitous ARP or unsolicited neighbour advertisement for another container's address,
    /// VLAN-tagged frames, other ether types) is dropped at its bridge port. Enforced by the
    /// firewall's table `bridge berth` (see `firewall::ruleset::spoof`); with `NoFirewall` it
    /// is not enforced. Records written before the option existed load with it off.
    #[serde(default)]
    pub anti_spoofing: bool,
    /// A trunk (`-o parent=IF`; CNI bridge's `vlanTrunk`): an existing link of the host netns
    /// (the admin's NIC) that berth makes a port of the network's bridge, as an admin's bridge
    /// holds its NIC, and brings up. It carries the bridge's default VLAN untagged, as
    /// before, and every VLAN of the network's VLAN endpoints ([`crate::EndpointSpec::vlan`])
    /// tagged, each while an endpoint uses it. Released (`nomaster`, left up), not deleted,
    /// when the network goes. A link with addresses loses the use of them while it is a
    /// bridge port: the admin's to move to the bridge. Records written before it load
    /// without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions {
            bridge_name: None,
            masquerade: true,
            icc: true,
            allow_direct_access: false,
            host_binding_ipv4: None,
            outbound_ipv4: None,
            anti_spoofing: false,
            parent: None,
        }
    }
}

/// Options of a `none` network: there are none (the type exists so that every driver has one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoneOptions;

/// The highest VXLAN network identifier (24 bits).
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// Options of an overlay network (Docker's `com.docker.network.driver.overlay.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayOptions {
    /// The VXLAN network identifier (`…overlay.vxlanid_list`): allocated cluster-wide when
    /// unset; a VNI another overlay network has is refused. Over GRE it is the GRE key.
    pub vni: Option<u32>,
    /// ESP between the hosts of the network (Docker's `-o encrypted`): its traffic between
    /// hosts is encrypted, its plaintext dropped on input (see [`crate::cluster::encryption`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// How frames cross hosts: VXLAN (default) or GRE (`-o encap=gre`).
    #[serde(default, skip_serializing_if = "OverlayEncap::is_vxlan")]
    pub encap: OverlayEncap,
    /// The VXLAN UDP port, recorded when the network is created (the creating host's
    /// [`crate::cluster::HostIdentity::port`]; every host of a cluster uses the same). Unset
    /// in records made before it was kept: the host's own port then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// How an overlay network carries its frames between hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayEncap {
    /// VXLAN over UDP (port [`crate::cluster::VXLAN_PORT`] unless the cluster says otherwise):
    /// one VXLAN device per network per host, a static FDB entry per remote endpoint.
    #[default]
    Vxlan,
    /// GRE (IP protocol 47, key = the network's VNI): one gretap port per remote host on the
    /// network's bridge, for underlays that block UDP 4789.
    Gre,
}

impl OverlayEncap {
    /// Whether it is VXLAN (the default).
    pub fn is_vxlan(&self) -> bool {
        *self == OverlayEncap::Vxlan
    }
}

impl fmt::Display for OverlayEncap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverlayEncap::Vxlan => "vxlan",
            OverlayEncap::Gre => "gre",
        })
    }
}

impl std::str::FromStr for OverlayEncap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "vxlan" => Ok(OverlayEncap::Vxlan),
            "gre" => Ok(OverlayEncap::Gre),
            _ => Err(Error::invalid("encap", s, "expected vxlan or gre")),
        }
    }
}

impl OverlayOptions {
    /// Checks the VNI is in 1..=2^24-1.
    pub fn validate(&self) -> Result<()> {
        match self.vni {
            Some(v) if v == 0 || v > VNI_MAX => Err(Error::invalid(
                "vxlanid_list",
                v,
                "a VXLAN id is 1-16777215",
            )),
            _ if self.encrypted && self.encap == OverlayEncap::Gre => Err(Error::invalid(
                "encrypted",
                "true",
                "encryption covers VXLAN encapsulation only (use encap=vxlan)",
            )),
            _ => Ok(()),
        }
    }
}

/// The options type of one driver: what its builder ([`crate::Network`]) carries, and what
/// that driver receives. [`DriverOptions`] is the sum of them.
pub trait TypedOptions: Into<DriverOptions> + Clone + fmt::Debug {
    /// The driver these options belong to.
    const KIND: DriverKind;
}

impl TypedOptions for BridgeOptions {
    const KIND: DriverKind = DriverKind::Bridge;
}
impl TypedOptions for NoneOptions {
    const KIND: DriverKind = DriverKind::None;
}
impl TypedOptions for MacvlanOptions {
    const KIND: DriverKind = DriverKind::Macvlan;
}
impl TypedOptions for IpvlanOptions {
    const KIND: DriverKind = DriverKind::Ipvlan;
}
impl TypedOptions for OverlayOptions {
    const KIND: DriverKind = DriverKind::Overlay;
}
impl From<OverlayOptions> for DriverOptions {
    fn from(o: OverlayOptions) -> Self {
        DriverOptions::Overlay(o)
    }
}

impl From<BridgeOptions> for DriverOptions {
    fn from(o: BridgeOptions) -> Self {
        DriverOptions::Bridge(o)
    }
}
impl From<NoneOptions> for DriverOptions {
    fn from(_: NoneOptions) -> Self {
        DriverOptions::None
    }
}
impl From<MacvlanOptions> for DriverOptions {
    fn from(o: MacvlanOptions) -> Self {
        DriverOptions::Macvlan(o)
    }
}
impl From<IpvlanOptions> for DriverOptions {
    fn from(o: IpvlanOptions) -> Self {
        DriverOptions::Ipvlan(o)
    }
}

impl FromStr for DriverKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [
            DriverKind::Bridge,
            DriverKind::None,
            DriverKind::Macvlan,
            DriverKind::Ipvlan,
            DriverKind::Overlay,
        ]
        .into_iter()
        .find(|k| k.name() == s)
        .ok_or_else(|| {
            Error::invalid(
                "driver",
                s,
                "expected bridge, none, macvlan, ipvlan or overlay",
            )
        })
    }
}

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
    #[serde(default)]
    pub parent: Parent,
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
    #[serde(default)]
    pub parent: Parent,
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

/// The parent link of a macvlan or ipvlan network, parsed once from Docker's `-o parent=NAME`
/// and kept typed in the record.
///
/// Records written before it was typed held the name as a string (or `null`): they still load
/// (see the `Deserialize` impl).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Parent {
    /// No parent: an internal network on a dummy link berth owns.
    #[default]
    Dummy,
    /// An existing link of the host netns, used as it is.
    Link(String),
    /// The 802.1q sub-interface `BASE.ID` of link `base`: used if it exists, else created (and
    /// removed with the last network using it).
    Vlan {
        /// The base link.
        base: String,
        /// The VLAN id, 1-4094.
        id: u16,
    },
}

impl Parent {
    /// The parent's link name (`BASE.ID` for a VLAN), or `None` for the dummy.
    pub fn link_name(&self) -> Option<String> {
        match self {
            Parent::Dummy => None,
            Parent::Link(name) => Some(name.clone()),
            Parent::Vlan { base, id } => Some(format!("{base}.{id}")),
        }
    }
}

impl Parent {
    /// Checks a parent built by hand (parsing checks already): valid link names, a VLAN id of
    /// 1-4094.
    pub fn validate(&self) -> Result<()> {
        match self {
            Parent::Dummy => Ok(()),
            Parent::Link(name) => crate::validate::validate_ifname("parent", name),
            Parent::Vlan { base, id } => {
                crate::validate::validate_ifname("parent", base)?;
                if !(1..=4094).contains(id) {
                    return Err(Error::invalid("vlan id", id, "must be 1-4094"));
                }
                crate::validate::validate_ifname("parent", &format!("{base}.{id}"))
            }
        }
    }
}

impl FromStr for Parent {
    type Err = Error;

    /// A link name; `BASE.ID` with a numeric `ID` is a VLAN of `BASE`. The whole name must be
    /// a valid interface name.
    fn from_str(name: &str) -> Result<Self> {
        crate::validate::validate_ifname("parent", name)?;
        match name.rsplit_once('.') {
            Some((base, id))
                if !base.is_empty() && !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) =>
            {
                if id.starts_with('0') {
                    // `eth0.050` would name a link other than the `eth0.50` it creates.
                    return Err(Error::invalid(
                        "vlan id",
                        id,
                        "must be 1-4094, written without leading zeros",
                    ));
                }
                let id: u16 = id
                    .parse()
                    .ok()
                    .filter(|id| (1..=4094).contains(id))
                    .ok_or_else(|| Error::invalid("vlan id", id, "must be 1-4094"))?;
                // The base must be a link name of its own (`..1` names base `.`).
                let parent = Parent::Vlan {
                    base: base.to_string(),
                    id,
                };
                parent.validate()?;
                Ok(parent)
            }
            _ => Ok(Parent::Link(name.to_string())),
        }
    }
}

impl fmt::Display for Parent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.link_name() {
            Some(n) => f.write_str(&n),
            None => f.write_str("(dummy)"),
        }
    }
}

/// How a [`Parent`] is written: tagged, so that no link name can be mistaken for a kind.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ParentRecord {
    Dummy,
    Link { name: String },
    Vlan { base: String, id: u16 },
}

/// What a record may hold: the typed form, or the name string (or `null`) of records written
/// before the parent was typed.
#[derive(Deserialize)]
#[serde(untagged)]
enum ParentOnDisk {
    Typed(ParentRecord),
    Legacy(Option<String>),
}

impl Serialize for Parent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.clone() {
            Parent::Dummy => ParentRecord::Dummy,
            Parent::Link(name) => ParentRecord::Link { name },
            Parent::Vlan { base, id } => ParentRecord::Vlan { base, id },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Parent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match ParentOnDisk::deserialize(d)? {
            ParentOnDisk::Typed(ParentRecord::Dummy) | ParentOnDisk::Legacy(None) => Parent::Dummy,
            ParentOnDisk::Typed(ParentRecord::Link { name }) => Parent::Link(name),
            ParentOnDisk::Typed(ParentRecord::Vlan { base, id }) => Parent::Vlan { base, id },
            ParentOnDisk::Legacy(Some(name)) => name.parse().map_err(serde::de::Error::custom)?,
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
        assert_eq!(
            "eth0.50".parse::<Parent>().unwrap(),
            Parent::Vlan {
                base: "eth0".into(),
                id: 50
            }
        );
        assert_eq!(
            "eth0".parse::<Parent>().unwrap(),
            Parent::Link("eth0".into())
        );
        assert_eq!(
            "br.x".parse::<Parent>().unwrap(),
            Parent::Link("br.x".into())
        );
        assert!("eth0.5000".parse::<Parent>().is_err());
        assert!("eth0.0".parse::<Parent>().is_err());
        assert!("eth0.050".parse::<Parent>().is_err());
        assert!("..1".parse::<Parent>().is_err(), "base `.` is no link name");
        assert!("a-name-far-too-long".parse::<Parent>().is_err());
        assert!(Parent::Link("a/b".into()).validate().is_err());
        assert!(
            Parent::Vlan {
                base: "eth0".into(),
                id: 0
            }
            .validate()
            .is_err()
        );
        assert_eq!(
            Parent::Vlan {
                base: "eth0".into(),
                id: 7
            }
            .link_name()
            .as_deref(),
            Some("eth0.7")
        );
    }

    #[test]
    fn parents_are_recorded_typed_and_old_records_still_load() {
        for p in [
            Parent::Dummy,
            Parent::Link("dummy".into()),
            Parent::Vlan {
                base: "eth0".into(),
                id: 50,
            },
        ] {
            let json = serde_json::to_string(&p).unwrap();
            assert!(json.contains("\"kind\""), "{json}");
            assert_eq!(serde_json::from_str::<Parent>(&json).unwrap(), p);
        }
        // Records written before the parent was typed: the name, or null.
        let old: MacvlanOptions =
            serde_json::from_str(r#"{"parent":"eth0.50","mode":"bridge","host_shim":null}"#)
                .unwrap();
        assert_eq!(
            old.parent,
            Parent::Vlan {
                base: "eth0".into(),
                id: 50
            }
        );
        let old: IpvlanOptions =
            serde_json::from_str(r#"{"parent":null,"mode":"l3","flag":"bridge"}"#).unwrap();
        assert_eq!(old.parent, Parent::Dummy);
        assert!(serde_json::from_str::<Parent>(r#""bad/name""#).is_err());
    }

    #[test]
    fn driver_kinds_parse() {
        assert_eq!("ipvlan".parse::<DriverKind>().unwrap(), DriverKind::Ipvlan);
        assert_eq!(
            "overlay".parse::<DriverKind>().unwrap(),
            DriverKind::Overlay
        );
        assert!("weave".parse::<DriverKind>().is_err());
    }
}
