//! Networks: the typed spec a runtime builds ([`Network`] → [`NetworkSpec`]) and the record berth
//! keeps of a created network ([`NetworkInfo`]).
//!
//! Options are typed here, once: `com.docker.network.bridge.name=…` and friends are parsed by the
//! caller (see `examples/netctl.rs`) into [`BridgeOptions`]; drivers never see strings.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::options::{
    BridgeOptions, DriverOptions, IpvlanFlag, IpvlanMode, IpvlanOptions, MacvlanMode,
    MacvlanOptions, NoneOptions, OverlayOptions, Parent, TypedOptions,
};
use crate::route::RouteSpec;
pub(crate) use crate::validate::validate_id;
pub use crate::validate::{validate_ifname, validate_network_name};

/// The device group (`ip link set … group G`) the bridge driver gives every container port of a
/// network with ICC off; the firewall's bridge table drops frames between two ports of this
/// group (except link flows). See [`crate::link_marks`]. (On a network that also has
/// anti-spoofing, ports carry its guarded form, `PORT_ICC_OFF_GUARDED`, which the rule matches
/// too.)
pub const ICC_OFF_PORT_GROUP: u32 = crate::link_marks::PORT_ICC_OFF;

/// Entry point for building network specs, one builder type per driver:
/// `Network::bridge("web").subnet(…).icc(false)`. An option exists only on the builder of the
/// driver it applies to (`Network::macvlan("lan").icc(false)` does not compile):
///
/// ```compile_fail
/// let spec = berth::Network::macvlan("lan").icc(false);
/// ```
#[derive(Debug)]
pub struct Network;

impl Network {
    /// A bridge network (`docker network create -d bridge NAME`).
    pub fn bridge(name: impl Into<String>) -> NetworkSpec<BridgeOptions> {
        NetworkSpec::new(name.into(), BridgeOptions::default())
    }

    /// A network whose endpoints get only `lo` (`--network none`).
    pub fn none(name: impl Into<String>) -> NetworkSpec<NoneOptions> {
        NetworkSpec::new(name.into(), NoneOptions)
    }

    /// A macvlan network (`docker network create -d macvlan`); set the parent with
    /// [`NetworkSpec::parent`] (none: an internal network on a dummy link).
    pub fn macvlan(name: impl Into<String>) -> NetworkSpec<MacvlanOptions> {
        NetworkSpec::new(name.into(), MacvlanOptions::default())
    }

    /// An ipvlan network (`docker network create -d ipvlan`).
    pub fn ipvlan(name: impl Into<String>) -> NetworkSpec<IpvlanOptions> {
        NetworkSpec::new(name.into(), IpvlanOptions::default())
    }

    /// An overlay network across the hosts of a cluster (`docker network create -d overlay`);
    /// the host creating it needs a cluster ([`crate::HostBuilder::cluster`]).
    pub fn overlay(name: impl Into<String>) -> NetworkSpec<OverlayOptions> {
        NetworkSpec::new(name.into(), OverlayOptions::default())
    }

    /// A network of any driver with options given already typed — for options parsed from
    /// Docker's `-o KEY=VALUE` ([`crate::docker_options::DockerOptions`]), or copied from
    /// another network's record. Only the driver-independent setters apply to it.
    pub fn with_options(name: impl Into<String>, driver: DriverOptions) -> NetworkSpec {
        NetworkSpec::new(name.into(), driver)
    }
}

/// What a runtime asks for when creating a network: the driver-independent settings and the
/// driver's options `O` (one of [`crate::options`]' types; [`DriverOptions`] once erased,
/// which is what [`crate::Host::create_network`] takes — every typed spec converts into it).
/// Built with [`Network`], checked by [`NetworkSpec::validate`] before anything is touched.
///
/// Subnets: each [`NetworkSpec::subnet`] adds one (IPv4 or IPv6); gateways and ip-ranges attach
/// to the subnet that contains them. With no IPv4 subnet, one is chosen from the host's address
/// pools; with [`NetworkSpec::ipv6`] and no IPv6 subnet, a ULA /64 is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec<O = DriverOptions> {
    pub(crate) name: String,
    pub(crate) driver: O,
    pub(crate) subnets: Vec<IpNet>,
    pub(crate) gateways: Vec<IpAddr>,
    pub(crate) ip_ranges: Vec<IpNet>,
    pub(crate) aux: BTreeMap<String, IpAddr>,
    pub(crate) ipv6: bool,
    pub(crate) internal: bool,
    pub(crate) mtu: Option<u32>,
    pub(crate) routes: Vec<RouteSpec>,
    pub(crate) no_default_route: bool,
    /// Set only through [`NetworkSpec::dns`] of drivers whose networks the resolver can serve.
    pub(crate) dns: Option<bool>,
    pub(crate) dns_servers: Vec<IpAddr>,
    pub(crate) ipam_driver: crate::lease::IpamDriver,
}

impl<O: TypedOptions> From<NetworkSpec<O>> for NetworkSpec {
    fn from(s: NetworkSpec<O>) -> Self {
        s.erase()
    }
}

/// One subnet as asked for: the subnet (or `None`: choose one of this family from the pools),
/// its gateway and its ip-range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetRequest {
    /// The subnet, or `None` for an automatic one.
    pub subnet: Option<IpNet>,
    /// IPv6 (for automatic subnets).
    pub ipv6: bool,
    /// The gateway; default: the first host address.
    pub gateway: Option<IpAddr>,
    /// Allocate only from this range.
    pub ip_range: Option<IpNet>,
}

/// The settings every driver has.
impl<O> NetworkSpec<O> {
    fn new(name: String, driver: O) -> Self {
        NetworkSpec {
            name,
            driver,
            subnets: Vec::new(),
            gateways: Vec::new(),
            ip_ranges: Vec::new(),
            aux: BTreeMap::new(),
            ipv6: false,
            internal: false,
            mtu: None,
            routes: Vec::new(),
            no_default_route: false,
            dns: None,
            dns_servers: Vec::new(),
            ipam_driver: crate::lease::IpamDriver::Default,
        }
    }

    /// A nameserver for containers on this network that set none (repeatable).
    pub fn dns_server(mut self, ip: IpAddr) -> Self {
        self.dns_servers.push(ip);
        self
    }

    /// Adds a subnet (`--subnet`, repeatable: one IPv4 and one IPv6 for dual stack).
    pub fn subnet(mut self, subnet: IpNet) -> Self {
        self.subnets.push(subnet);
        self
    }

    /// A gateway (`--gateway`, repeatable); it belongs to the subnet that contains it.
    pub fn gateway(mut self, gateway: IpAddr) -> Self {
        self.gateways.push(gateway);
        self
    }

    /// Allocate only from this range (`--ip-range`, repeatable), inside one of the subnets.
    pub fn ip_range(mut self, range: IpNet) -> Self {
        self.ip_ranges.push(range);
        self
    }

    /// A named address that is never handed out (`--aux-address NAME=IP`).
    pub fn aux_address(mut self, name: impl Into<String>, ip: IpAddr) -> Self {
        self.aux.insert(name.into(), ip);
        self
    }

    /// Enables IPv6 (`--ipv6`): with no IPv6 subnet given, a ULA /64 is chosen.
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// No route out and no masquerade (`--internal`).
    pub fn internal(mut self, internal: bool) -> Self {
        self.internal = internal;
        self
    }

    /// MTU of the network's links (`com.docker.network.driver.mtu`); default: for a bridge,
    /// the MTU of the host netns' default-route link, else 1500; for macvlan/ipvlan, the
    /// parent's.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// A static route every endpoint of the network gets (`network create --route`).
    pub fn route(mut self, route: RouteSpec) -> Self {
        self.routes.push(route);
        self
    }

    /// Endpoints get no default route from this network, only its subnet and routes
    /// (`--no-default-route`).
    pub fn no_default_route(mut self, on: bool) -> Self {
        self.no_default_route = on;
        self
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver's options.
    pub fn driver(&self) -> &O {
        &self.driver
    }

    /// Checks everything that can be checked without the kernel or the state dir (as
    /// [`NetworkSpec::validate`] of the erased spec).
    pub fn validate(&self) -> Result<()>
    where
        O: Clone + Into<DriverOptions>,
    {
        self.clone().erase().check()
    }

    /// The same spec with its options as [`DriverOptions`].
    fn erase(self) -> NetworkSpec
    where
        O: Into<DriverOptions>,
    {
        NetworkSpec {
            name: self.name,
            driver: self.driver.into(),
            subnets: self.subnets,
            gateways: self.gateways,
            ip_ranges: self.ip_ranges,
            aux: self.aux,
            ipv6: self.ipv6,
            internal: self.internal,
            mtu: self.mtu,
            routes: self.routes,
            no_default_route: self.no_default_route,
            dns: self.dns,
            dns_servers: self.dns_servers,
            ipam_driver: self.ipam_driver,
        }
    }
}

/// Options of bridge networks (`com.docker.network.bridge.*`).
impl NetworkSpec<BridgeOptions> {
    /// Serve this network with the embedded resolver (default on).
    pub fn dns(mut self, on: bool) -> Self {
        self.dns = Some(on);
        self
    }

    /// Bridge device name (`com.docker.network.bridge.name`).
    pub fn bridge_name(mut self, name: impl Into<String>) -> Self {
        self.driver.bridge_name = Some(name.into());
        self
    }

    /// Masquerade egress (`com.docker.network.bridge.enable_ip_masquerade`).
    pub fn masquerade(mut self, on: bool) -> Self {
        self.driver.masquerade = on;
        self
    }

    /// Inter-container communication (`com.docker.network.bridge.enable_icc`).
    pub fn icc(mut self, on: bool) -> Self {
        self.driver.icc = on;
        self
    }

    /// Anti-spoofing (default off): each container may send only from its own MAC and
    /// addresses, and ARP / IPv6 neighbour discovery only for them, so a container that takes
    /// a neighbour's address, MAC, or answers ARP / ND for it cannot take its traffic. See
    /// [`BridgeOptions::anti_spoofing`]. Bridge networks only:
    ///
    /// ```compile_fail
    /// let spec = berth::Network::macvlan("lan").anti_spoofing(true);
    /// ```
    pub fn anti_spoofing(mut self, on: bool) -> Self {
        self.driver.anti_spoofing = on;
        self
    }

    /// Allow direct access to container addresses from outside (default off).
    pub fn allow_direct_access(mut self, on: bool) -> Self {
        self.driver.allow_direct_access = on;
        self
    }

    /// Default host address for published ports
    /// (`com.docker.network.bridge.host_binding_ipv4`).
    pub fn host_binding_ipv4(mut self, ip: std::net::Ipv4Addr) -> Self {
        self.driver.host_binding_ipv4 = Some(ip);
        self
    }

    /// SNAT egress to this host address instead of masquerading
    /// (`com.docker.network.host_ipv4`).
    pub fn outbound_ipv4(mut self, ip: std::net::Ipv4Addr) -> Self {
        self.driver.outbound_ipv4 = Some(ip);
        self
    }
}

/// The trunk of a bridge network (VLAN-tagged endpoints).
impl NetworkSpec<BridgeOptions> {
    /// A trunk (`-o parent=IF`): existing link `name` of the host netns becomes a port of the
    /// bridge, carrying every VLAN of the network's VLAN endpoints tagged
    /// ([`crate::EndpointSpec::vlan`]); released, not deleted, with the network. See
    /// [`BridgeOptions::parent`].
    pub fn trunk(mut self, name: impl Into<String>) -> Self {
        self.driver.parent = Some(name.into());
        self
    }
}

/// Options of macvlan networks.
impl NetworkSpec<MacvlanOptions> {
    /// Parent link (`-o parent=`), see [`Parent`]: `"eth0".parse()?`, or
    /// `Parent::Vlan { base: "eth0".into(), id: 50 }` (the 802.1q sub-interface `eth0.50`,
    /// created if missing and removed with the last network using it, if berth created it).
    pub fn parent(mut self, parent: Parent) -> Self {
        self.driver.parent = parent;
        self
    }

    /// macvlan mode (`-o macvlan_mode=`).
    pub fn macvlan_mode(mut self, mode: MacvlanMode) -> Self {
        self.driver.mode = mode;
        self
    }

    /// A host-side macvlan shim with this address, so the host can reach the containers (the
    /// address is reserved as the aux address `host-shim`).
    pub fn host_shim(mut self, ip: IpAddr) -> Self {
        self.driver.host_shim = Some(ip);
        self.aux.insert("host-shim".into(), ip);
        self
    }
}

/// DHCP on macvlan networks.
impl NetworkSpec<MacvlanOptions> {
    /// Endpoint addresses from the LAN's DHCP server (`--ipam-driver dhcp`, see
    /// [`crate::dhcp`]): the network needs a parent link and takes no subnet, gateway,
    /// ip-range, aux address, IPv6 or host shim. Macvlan and bridge networks (on the LAN)
    /// have it; others do not:
    ///
    /// ```compile_fail
    /// let spec = berth::Network::ipvlan("lan").dhcp();
    /// ```
    pub fn dhcp(mut self) -> Self {
        self.ipam_driver = crate::lease::IpamDriver::Dhcp;
        self
    }
}

/// DHCP on bridge networks (pipework's `pipework br0 C dhcp`).
impl NetworkSpec<BridgeOptions> {
    /// Endpoint addresses from the LAN's DHCP server (`--ipam-driver dhcp`, see
    /// [`crate::dhcp`]), for a bridge on the LAN: an admin's bridge that holds the LAN's NIC
    /// (`-o com.docker.network.bridge.name=br0`, the bridge existing), or a bridge berth
    /// makes with the NIC as its trunk ([`NetworkSpec::trunk`], `-o parent=IF`). The containers are then hosts of the LAN: no subnet, gateway address,
    /// NAT, published ports or embedded resolver of berth's (the lease's router and
    /// nameservers serve them); no IPv6 and no anti-spoofing (the guard needs each address
    /// before the container sends, a lease comes after).
    ///
    /// ```
    /// let spec = berth::Network::bridge("lan").trunk("eth0").dhcp();
    /// assert!(spec.validate().is_ok());
    /// ```
    pub fn dhcp(mut self) -> Self {
        self.ipam_driver = crate::lease::IpamDriver::Dhcp;
        self
    }
}

/// Options of ipvlan networks.
impl NetworkSpec<IpvlanOptions> {
    /// Parent link (`-o parent=`), as for macvlan.
    pub fn parent(mut self, parent: Parent) -> Self {
        self.driver.parent = parent;
        self
    }

    /// ipvlan mode (`-o ipvlan_mode=`).
    pub fn ipvlan_mode(mut self, mode: IpvlanMode) -> Self {
        self.driver.mode = mode;
        self
    }

    /// ipvlan flag (`-o ipvlan_flag=`).
    pub fn ipvlan_flag(mut self, flag: IpvlanFlag) -> Self {
        self.driver.flag = flag;
        self
    }
}

/// Options of overlay networks.
impl NetworkSpec<OverlayOptions> {
    /// The VXLAN id (`-o com.docker.network.driver.overlay.vxlanid_list=`): refused if another
    /// overlay network has it; default: the lowest free one from 4096.
    pub fn vni(mut self, vni: u32) -> Self {
        self.driver.vni = Some(vni);
        self
    }

    /// Encrypts the network's traffic between hosts (ESP; Docker's `-o encrypted`). The
    /// hosts need the cluster's master secret ([`crate::cluster::ClusterSecret`]).
    pub fn encrypted(mut self, on: bool) -> Self {
        self.driver.encrypted = on;
        self
    }

    /// How frames cross hosts (`-o encap=vxlan|gre`).
    pub fn encap(mut self, encap: crate::options::OverlayEncap) -> Self {
        self.driver.encap = encap;
        self
    }
}

impl NetworkSpec {
    /// The IPAM driver (Docker's `--ipam-driver`), for a spec built from strings
    /// ([`Network::with_options`]): checked by [`NetworkSpec::validate`] (only macvlan
    /// networks with a parent and bridge networks on the LAN take
    /// [`crate::IpamDriver::Dhcp`]).
    pub fn ipam_driver(mut self, driver: crate::lease::IpamDriver) -> Self {
        self.ipam_driver = driver;
        self
    }

    /// The subnets to reserve, in order: those given (with the gateway and ip-range inside
    /// each), then an automatic IPv4 one if none was given, then an automatic IPv6 one if IPv6
    /// is on and none was given. Empty for drivers without addresses.
    pub fn subnet_requests(&self) -> Vec<SubnetRequest> {
        if self.driver == DriverOptions::None || self.ipam_driver == crate::lease::IpamDriver::Dhcp
        {
            return Vec::new();
        }
        let mut v: Vec<SubnetRequest> = self
            .subnets
            .iter()
            .map(|s| SubnetRequest {
                subnet: Some(*s),
                ipv6: s.addr().is_ipv6(),
                gateway: self.gateways.iter().copied().find(|g| s.contains(g)),
                ip_range: self.ip_ranges.iter().copied().find(|r| s.contains(r)),
            })
            .collect();
        let auto = |ipv6| SubnetRequest {
            subnet: None,
            ipv6,
            gateway: None,
            ip_range: None,
        };
        if !v.iter().any(|r| !r.ipv6) {
            v.insert(0, auto(false));
        }
        if self.ipv6 && !v.iter().any(|r| r.ipv6) {
            v.push(auto(true));
        }
        v
    }

    /// A DHCP network: macvlan with a parent, or a bridge on the LAN (an admin's, named, or
    /// one with a trunk); nothing of berth's IPAM.
    fn check_dhcp(&self) -> Result<()> {
        let refuse = |reason| Error::InvalidValue {
            what: "ipam driver",
            value: "dhcp".into(),
            reason,
        };
        match &self.driver {
            DriverOptions::Macvlan(o) => {
                if o.parent == crate::options::Parent::Dummy {
                    return Err(refuse(
                        "needs a parent link on the LAN (-o parent=…): a macvlan network without one has no DHCP server",
                    ));
                }
                if o.host_shim.is_some() {
                    return Err(refuse(
                        "takes no host shim (its address would be berth's, not the server's)",
                    ));
                }
            }
            DriverOptions::Bridge(o) => {
                if o.bridge_name.is_none() && o.parent.is_none() {
                    return Err(refuse(
                        "needs a bridge on the LAN: an admin's bridge holding the LAN's NIC (-o com.docker.network.bridge.name=BR) or a trunk (-o parent=IF)",
                    ));
                }
                if o.anti_spoofing {
                    return Err(refuse(
                        "takes no anti-spoofing: the guard needs each container's address before it sends, a lease comes after",
                    ));
                }
                if !o.icc {
                    return Err(refuse(
                        "takes no enable_icc=false: berth has no firewall rules on a bridge of the LAN",
                    ));
                }
                if o.outbound_ipv4.is_some() || o.host_binding_ipv4.is_some() {
                    return Err(refuse(
                        "takes no host_ipv4 or host_binding_ipv4: its containers are hosts of the LAN, neither NATed nor published",
                    ));
                }
            }
            other => {
                return Err(Error::DriverUnsupported {
                    driver: other.kind().name(),
                    what: "the dhcp IPAM driver (macvlan and bridge networks only)",
                });
            }
        }
        if !(self.subnets.is_empty()
            && self.gateways.is_empty()
            && self.ip_ranges.is_empty()
            && self.aux.is_empty())
        {
            return Err(refuse(
                "takes no --subnet, --gateway, --ip-range or --aux-address: the LAN's DHCP server hands out the addresses",
            ));
        }
        if self.ipv6 {
            return Err(refuse("is IPv4 only (no DHCPv6): --ipv6 cannot be set"));
        }
        Ok(())
    }

    /// Checks everything that can be checked without the kernel or the state dir.
    fn check(&self) -> Result<()> {
        validate_network_name(&self.name)?;
        if let Some(mtu) = self.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(Error::invalid("mtu", mtu, "must be 68-65535"));
        }
        self.driver.validate()?;
        if self.ipam_driver == crate::lease::IpamDriver::Dhcp {
            return self.check_dhcp();
        }
        if self.driver == DriverOptions::None {
            if !(self.subnets.is_empty()
                && self.gateways.is_empty()
                && self.ip_ranges.is_empty()
                && self.aux.is_empty())
            {
                return Err(Error::DriverUnsupported {
                    driver: "none",
                    what: "subnets",
                });
            }
            return Ok(());
        }
        for (i, s) in self.subnets.iter().enumerate() {
            crate::address::validate_subnet(s)?;
            if let Some(o) = self.subnets[..i]
                .iter()
                .find(|o| o.contains(&s.network()) || s.contains(&o.network()))
            {
                return Err(Error::SubnetOverlap {
                    subnet: s.to_string(),
                    other: o.to_string(),
                    network: self.name.clone(),
                });
            }
            if s.addr().is_ipv6() && !self.ipv6 {
                return Err(Error::InvalidSubnet {
                    subnet: s.to_string(),
                    reason: "an IPv6 subnet needs IPv6 enabled (--ipv6)",
                });
            }
        }
        let outside = |address: IpAddr| Error::OutsideSubnet {
            address,
            subnet: self
                .subnets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        };
        for (i, g) in self.gateways.iter().enumerate() {
            let Some(s) = self.subnets.iter().find(|s| s.contains(g)) else {
                return Err(outside(*g));
            };
            if let Some(other) = self.gateways[..i].iter().find(|o| s.contains(*o)) {
                return Err(Error::InvalidValue {
                    what: "gateway",
                    value: g.to_string(),
                    reason: if other == g {
                        "given twice"
                    } else {
                        "its subnet has another gateway already: one gateway per subnet"
                    },
                });
            }
        }
        for (i, r) in self.ip_ranges.iter().enumerate() {
            if let Some(s) = self.subnets.iter().find(|s| s.contains(r))
                && self.ip_ranges[..i].iter().any(|o| s.contains(o))
            {
                return Err(Error::invalid(
                    "ip-range",
                    r,
                    "its subnet has another ip-range already: one range per subnet",
                ));
            }
        }
        for r in &self.ip_ranges {
            if !self.subnets.iter().any(|s| s.contains(r)) {
                return Err(Error::InvalidSubnet {
                    subnet: r.to_string(),
                    reason: "ip-range is not inside any --subnet",
                });
            }
        }
        for (name, a) in &self.aux {
            validate_id("aux address", name)?;
            if !self.subnets.iter().any(|s| s.contains(a)) {
                return Err(outside(*a));
            }
        }
        Ok(())
    }
}

/// One subnet of a network, its gateway and ip-range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetInfo {
    /// The subnet.
    pub subnet: IpNet,
    /// The gateway address (on the bridge).
    pub gateway: IpAddr,
    /// The range addresses are allocated from, if narrowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
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
    /// Named addresses never handed out.
    #[serde(default)]
    pub aux: BTreeMap<String, IpAddr>,
    /// IPv6 enabled.
    #[serde(default)]
    pub ipv6: bool,
    /// No route out, no masquerade.
    pub internal: bool,
    /// MTU in use.
    pub mtu: u32,
    /// The host-side device (the bridge), if the driver made one.
    pub device: Option<String>,
    /// Static routes for every endpoint.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Endpoints get no default route from this network.
    #[serde(default)]
    pub no_default_route: bool,
    /// The bridge existed before (the admin's): berth leaves it in place on delete and removes
    /// only the addresses it added, listed here.
    #[serde(default)]
    pub adopted: Option<Vec<(IpAddr, u8)>>,
    /// The embedded resolver serves this network (on its gateway addresses).
    #[serde(default)]
    pub dns_enabled: bool,
    /// Nameservers for containers on this network that set none of their own (daemon.json's
    /// `dns` on the default bridge).
    #[serde(default)]
    pub dns_servers: Vec<IpAddr>,
    /// A removal was started (`docker network rm`) and may not have finished: the network takes
    /// no endpoints, is not listed, and the next `delete_network`, `create_network` of its
    /// name or `gc` finishes removing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removing: bool,
    /// Where endpoint addresses come from (`--ipam-driver`): berth's IPAM, or the LAN's DHCP
    /// server (then `subnets` is empty and each endpoint records its lease).
    #[serde(default, skip_serializing_if = "crate::lease::IpamDriver::is_default")]
    pub ipam_driver: crate::lease::IpamDriver,
}

impl NetworkInfo {
    /// Whether containers of this network may talk to each other.
    pub fn icc(&self) -> bool {
        match &self.driver {
            DriverOptions::Bridge(o) => o.icc,
            _ => true,
        }
    }

    /// Whether containers of this network may send only from their own MAC and addresses
    /// ([`BridgeOptions::anti_spoofing`]; always false for other drivers).
    pub fn anti_spoofing(&self) -> bool {
        matches!(&self.driver, DriverOptions::Bridge(o) if o.anti_spoofing)
    }

    /// Whether outside hosts may reach container addresses on unpublished ports.
    pub fn allow_direct_access(&self) -> bool {
        matches!(&self.driver, DriverOptions::Bridge(o) if o.allow_direct_access)
    }

    /// Whether egress from this network is masqueraded.
    pub fn masquerade(&self) -> bool {
        match &self.driver {
            DriverOptions::Bridge(o) => o.masquerade && !self.internal,
            _ => false,
        }
    }

    /// The first IPv4 subnet.
    pub fn subnet4(&self) -> Option<&SubnetInfo> {
        self.subnets.iter().find(|s| s.subnet.addr().is_ipv4())
    }

    /// The first IPv6 subnet.
    pub fn subnet6(&self) -> Option<&SubnetInfo> {
        self.subnets.iter().find(|s| s.subnet.addr().is_ipv6())
    }
}

impl AsRef<str> for NetworkInfo {
    fn as_ref(&self) -> &str {
        &self.name
    }
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
        let gw: IpAddr = "10.89.0.1".parse().unwrap();
        let e = ok.clone().gateway(gw).validate().unwrap_err();
        assert!(matches!(e, Error::OutsideSubnet { .. }), "{e}");
        let e = ok
            .clone()
            .ip_range("10.89.0.0/28".parse().unwrap())
            .validate()
            .unwrap_err();
        assert!(matches!(e, Error::InvalidSubnet { .. }), "{e}");
        let e = ok.clone().aux_address("router", gw).validate().unwrap_err();
        assert!(matches!(e, Error::OutsideSubnet { .. }), "{e}");
        let e = ok
            .clone()
            .subnet("10.88.0.0/16".parse().unwrap())
            .validate()
            .unwrap_err();
        assert!(matches!(e, Error::SubnetOverlap { .. }), "{e}");
        let e = ok
            .clone()
            .subnet("fd00::/64".parse().unwrap())
            .validate()
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidSubnet { .. }),
            "IPv6 needs --ipv6: {e}"
        );
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
    fn subnet_requests_pair_gateways_and_add_automatic_ones() {
        let s = Network::bridge("n")
            .subnet("fd00:1::/64".parse().unwrap())
            .gateway("fd00:1::fe".parse().unwrap())
            .ipv6(true);
        let r = NetworkSpec::from(s).subnet_requests();
        assert_eq!(r.len(), 2);
        assert!(r[0].subnet.is_none() && !r[0].ipv6, "automatic IPv4 first");
        assert_eq!(r[1].gateway, Some("fd00:1::fe".parse().unwrap()));
        let r = NetworkSpec::from(Network::bridge("n").ipv6(true)).subnet_requests();
        assert_eq!((r.len(), r[1].ipv6, r[1].subnet), (2, true, None));
        assert!(
            NetworkSpec::from(Network::none("n"))
                .subnet_requests()
                .is_empty()
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

    #[test]
    fn anti_spoofing_is_a_bridge_option() {
        let spec = Network::bridge("web").anti_spoofing(true);
        spec.validate().unwrap();
        assert!(spec.driver().anti_spoofing);
        let erased: NetworkSpec = spec.into();
        assert!(matches!(erased.driver(), DriverOptions::Bridge(o) if o.anti_spoofing));
    }

    #[test]
    fn typed_specs_erase_with_their_options() {
        let spec: NetworkSpec = Network::macvlan("lan")
            .parent("eth0.50".parse().unwrap())
            .host_shim("10.0.0.2".parse().unwrap())
            .subnet("10.0.0.0/24".parse().unwrap())
            .into();
        let DriverOptions::Macvlan(o) = spec.driver() else {
            panic!("{spec:?}")
        };
        assert_eq!(o.parent.link_name().as_deref(), Some("eth0.50"));
        assert!(spec.aux.contains_key("host-shim"));
        let e = Network::ipvlan("lan")
            .parent(Parent::Link("a/b".into()))
            .validate()
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidName { kind: "parent", .. }),
            "{e}"
        );
    }

    #[test]
    fn bridge_options_written_before_anti_spoofing_load_with_it_off() {
        let old = r#"{"bridge_name":null,"masquerade":true,"icc":true}"#;
        let o: BridgeOptions = serde_json::from_str(old).unwrap();
        assert!(!o.anti_spoofing);
        let on = BridgeOptions {
            anti_spoofing: true,
            ..BridgeOptions::default()
        };
        let back: BridgeOptions =
            serde_json::from_str(&serde_json::to_string(&on).unwrap()).unwrap();
        assert!(back.anti_spoofing);
    }
}
