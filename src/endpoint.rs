//! Endpoints: what a runtime asks for when attaching a container ([`Endpoint`] →
//! [`EndpointSpec`]) and what it gets back, which is also what berth records ([`Attachment`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mac::MacAddr;
use crate::names::{ExtraHost, Link, NameOptions, validate_hostname};
use crate::netns::Netns;
use crate::port::{ExposedPort, PortMapping, PortRequest};
use crate::route::RouteSpec;
use crate::rule::RuleSpec;
use crate::validate::{validate_container_id, validate_ifname};

/// Entry point: `Endpoint::new("c0ffee", netns).ifname("eth0").publish(Port::tcp(8080).to(80))`.
#[derive(Debug)]
pub struct Endpoint;

impl Endpoint {
    /// An endpoint for `container` whose interface goes into `netns`. Both are required.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(container: impl Into<String>, netns: Netns) -> EndpointSpec {
        EndpointSpec {
            container: container.into(),
            netns,
            ifname: "eth0".into(),
            ip: None,
            ip6: None,
            mac: None,
            mac_from_ipv4: false,
            gw_priority: 0,
            routes: Vec::new(),
            ports: Vec::new(),
            aliases: Vec::new(),
            exposed: Vec::new(),
            names: NameOptions::default(),
            rules: Vec::new(),
            bandwidth: None,
            vlan: None,
        }
    }
}

/// An attach request. Built with [`Endpoint::new`].
#[derive(Debug)]
pub struct EndpointSpec {
    pub(crate) container: String,
    pub(crate) netns: Netns,
    pub(crate) ifname: String,
    pub(crate) ip: Option<Ipv4Addr>,
    pub(crate) ip6: Option<Ipv6Addr>,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) mac_from_ipv4: bool,
    pub(crate) gw_priority: i32,
    pub(crate) routes: Vec<RouteSpec>,
    pub(crate) ports: Vec<PortRequest>,
    pub(crate) aliases: Vec<String>,
    pub(crate) exposed: Vec<ExposedPort>,
    pub(crate) names: NameOptions,
    pub(crate) rules: Vec<RuleSpec>,
    pub(crate) bandwidth: Option<crate::bandwidth::Bandwidth>,
    pub(crate) vlan: Option<u16>,
}

impl EndpointSpec {
    /// Interface name inside the container (default `eth0`).
    pub fn ifname(mut self, name: impl Into<String>) -> Self {
        self.ifname = name.into();
        self
    }

    /// A static IPv4 address (`--ip`); default: the next free one.
    pub fn ip(mut self, ip: Ipv4Addr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// A static IPv6 address (`--ip6`); default: the next free one on dual-stack networks.
    pub fn ip6(mut self, ip: Ipv6Addr) -> Self {
        self.ip6 = Some(ip);
        self
    }

    /// A fixed MAC (`--mac-address`); default: random, locally administered.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Priority of this network's default route for the container (`--gw-priority`): the
    /// attachment with the highest one holds the default route of each family; ties go to the
    /// earliest attach. When it is detached, the next one takes over.
    pub fn gw_priority(mut self, priority: i32) -> Self {
        self.gw_priority = priority;
        self
    }

    /// A static route inside the container through this endpoint (`--route`).
    pub fn route(mut self, route: RouteSpec) -> Self {
        self.routes.push(route);
        self
    }

    /// Derive the MAC from the IPv4 address, as Docker did: `02:42` + its four bytes.
    pub fn mac_from_ipv4(mut self, on: bool) -> Self {
        self.mac_from_ipv4 = on;
        self
    }

    /// Publish a port (`-p HOSTPORT:PORT`). May be called several times.
    pub fn publish(mut self, port: PortMapping) -> Self {
        self.ports.push(port.into());
        self
    }

    /// Publish by a request in Docker's full `-p` syntax: ranges, no host port (a free one is
    /// picked), a host range onto one container port (one free port of it is picked).
    pub fn publish_request(mut self, req: PortRequest) -> Self {
        self.ports.push(req);
        self
    }

    /// A network-scoped DNS alias (`--network-alias`, repeatable): the embedded resolver
    /// answers it, besides the container name, to containers on this network.
    pub fn alias(mut self, name: impl Into<String>) -> Self {
        self.aliases.push(name.into());
        self
    }

    /// A port the container offers without publishing it (`--expose`), reachable by linked
    /// containers on a network with ICC off.
    pub fn expose(mut self, port: ExposedPort) -> Self {
        self.exposed.push(port);
        self
    }

    /// The container's hostname (`--hostname`) in `/etc/hostname` and `/etc/hosts`.
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.names.hostname = Some(name.into());
        self
    }

    /// The container's domain name (`--domainname`): its hosts entry becomes `host.domain host`.
    pub fn domainname(mut self, name: impl Into<String>) -> Self {
        self.names.domainname = Some(name.into());
        self
    }

    /// A nameserver (`--dns`, repeatable), replacing the host's in `resolv.conf`; with the
    /// embedded resolver, where it forwards this container's outside names.
    pub fn dns(mut self, server: IpAddr) -> Self {
        self.names.dns.push(server);
        self
    }

    /// A search domain (`--dns-search`, repeatable; `.` alone: none).
    pub fn dns_search(mut self, domain: impl Into<String>) -> Self {
        self.names.dns_search.push(domain.into());
        self
    }

    /// A resolver option (`--dns-option`, repeatable), e.g. `ndots:2`.
    pub fn dns_option(mut self, option: impl Into<String>) -> Self {
        self.names.dns_options.push(option.into());
        self
    }

    /// An `/etc/hosts` entry (`--add-host`, repeatable).
    pub fn add_host(mut self, entry: ExtraHost) -> Self {
        self.names.extra_hosts.push(entry);
        self
    }

    /// A legacy link (`--link`, repeatable).
    pub fn link(mut self, link: Link) -> Self {
        self.names.links.push(link);
        self
    }

    /// All name settings at once (replacing those set before).
    pub fn names(mut self, names: NameOptions) -> Self {
        self.names = names;
        self
    }

    /// A routing rule in the container netns (`--rule`, repeatable; policy routing, see
    /// [`crate::rule`]): added once the interface and its addresses and routes exist (routes
    /// of other tables through [`RouteSpec::table`]), removed at detach.
    pub fn rule(mut self, rule: RuleSpec) -> Self {
        self.rules.push(rule);
        self
    }

    /// Rate limits for what the container receives and sends ([`crate::bandwidth`]; netctl's
    /// `--ingress-rate`/`--egress-rate`): tc on the endpoint's host-side veth end, so only on
    /// drivers that have one (bridge, overlay); others refuse it at attach. An unlimited
    /// [`crate::Bandwidth`] is the same as none.
    pub fn bandwidth(mut self, limits: crate::bandwidth::Bandwidth) -> Self {
        self.bandwidth = (!limits.is_unlimited()).then_some(limits);
        self
    }

    /// The container id.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// An access VLAN (`--vlan`; pipework's `MAC@VLAN`, CNI bridge's `vlan`), bridge networks
    /// only: the endpoint's bridge port carries VLAN `id` (2-4094) as its PVID, untagged, and
    /// nothing else, so it reaches only the endpoints of the same VLAN on the network and,
    /// tagged, the network's trunk ([`crate::BridgeOptions::parent`]). VLAN 1 is the bridge's
    /// default VLAN, the one every endpoint without a VLAN (and the host's gateway on the
    /// bridge) is in: refused, attach without a VLAN instead.
    ///
    /// The endpoint gets the network's address and gateway address like any other, but the
    /// host's bridge serves the untagged default VLAN only: the gateway (and so the way out,
    /// published ports and the embedded resolver) must be a router on that VLAN across the
    /// trunk. Published ports are refused. The bridge's VLAN filtering is turned on at the
    /// first VLAN endpoint (endpoints without one stay in VLAN 1 and keep working); a kernel
    /// without bridge VLAN filtering refuses the attach with [`Error::Unsupported`] before
    /// anything is made.
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }

    /// Checks everything that can be checked without the kernel or the state dir.
    pub fn validate(&self) -> Result<()> {
        validate_container_id("container", &self.container)?;
        validate_ifname("interface", &self.ifname)?;
        if let Some(mac) = &self.mac {
            mac.validate()?;
            if self.mac_from_ipv4 {
                return Err(Error::invalid(
                    "mac address",
                    mac,
                    "given together with mac_from_ipv4",
                ));
            }
        }
        for r in &self.ports {
            r.validate()?;
        }
        for r in &self.routes {
            r.validate()?;
        }
        for r in &self.rules {
            r.validate()?;
        }
        crate::rule::check_distinct(&self.rules)?;
        for (i, r) in self.routes.iter().enumerate() {
            if r.table.is_some()
                && self.routes[..i]
                    .iter()
                    .any(|q| q.dst == r.dst && q.table == r.table && q.metric == r.metric)
            {
                return Err(Error::invalid("route", r, "given twice in its table"));
            }
        }
        for a in &self.aliases {
            validate_hostname("alias", a)?;
        }
        self.names.validate()?;
        if let Some(b) = &self.bandwidth {
            b.validate()?;
        }
        validate_vlan(self.vlan)?;
        if let (Some(_), Some(p)) = (self.vlan, self.ports.first()) {
            return Err(Error::invalid(
                "port",
                p,
                "a VLAN endpoint is not reachable through the host's bridge (it serves the untagged VLAN only): no published ports",
            ));
        }
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let fixed: Vec<PortMapping> = self
            .ports
            .iter()
            .filter_map(|r| r.fixed(unspecified))
            .flatten()
            .collect();
        check_distinct(&fixed)
    }
}

/// Checks an access VLAN: 2-4094 (0 and 4095 are reserved by 802.1Q; 1 is the bridge's default
/// VLAN, where endpoints without a VLAN are).
pub(crate) fn validate_vlan(vlan: Option<u16>) -> Result<()> {
    match vlan {
        None => Ok(()),
        Some(1) => Err(Error::invalid(
            "vlan",
            1,
            "VLAN 1 is the bridge's default VLAN, where endpoints without a VLAN are: attach without one",
        )),
        Some(id) if !(2..=4094).contains(&id) => {
            Err(Error::invalid("vlan", id, "a VLAN id is 2-4094"))
        }
        Some(_) => Ok(()),
    }
}

/// Refuses two mappings of one endpoint that claim the same host port.
pub(crate) fn check_distinct(ports: &[PortMapping]) -> Result<()> {
    {
        for (i, p) in ports.iter().enumerate() {
            p.validate()?;
            if let Some(q) = ports[..i].iter().find(|q| q.conflicts_with(p)) {
                return Err(Error::invalid(
                    "port",
                    format!("{}:{}/{}", p.host_ip, p.host_port, p.proto),
                    if q == p {
                        "given twice"
                    } else {
                        "overlaps another -p of this endpoint"
                    },
                ));
            }
        }
        Ok(())
    }
}

/// A container's attachment to a network: returned by `attach`, recorded in
/// `endpoints/NETWORK/CONTAINER.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network.
    pub network: String,
    /// The container id.
    pub container: String,
    /// Interface name inside the container.
    pub ifname: String,
    /// The container interface's MAC, if it has one.
    pub mac: Option<MacAddr>,
    /// IPv4 address with the subnet's prefix length.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address with the subnet's prefix length.
    #[serde(default)]
    pub ipv6: Option<Ipv6Net>,
    /// IPv4 default gateway inside the container.
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 default gateway inside the container.
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
    /// The container netns path, when it was opened by path.
    pub netns: Option<PathBuf>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// The host-side interface (the veth end on the bridge), if the driver made one.
    pub host_ifname: Option<String>,
    /// Default-route priority among the container's attachments.
    #[serde(default)]
    pub gw_priority: i32,
    /// Attach order (nanoseconds since the epoch): breaks priority ties.
    #[serde(default)]
    pub seq: u64,
    /// Static routes added in the container through this endpoint (the network's and its own).
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Network-scoped DNS aliases ([`EndpointSpec::alias`]).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Routing rules berth added in the container netns for this endpoint
    /// ([`EndpointSpec::rule`]): exactly these are removed at detach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
    /// Bandwidth limits in force ([`EndpointSpec::bandwidth`], [`crate::Host::set_bandwidth`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<crate::bandwidth::Bandwidth>,
    /// The `ifb` device shaping what the container sends, when it has an egress limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifb: Option<String>,
    /// The access VLAN of its bridge port ([`EndpointSpec::vlan`]); none: the bridge's
    /// default (untagged) VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// The DHCP lease of an endpoint of a DHCP network ([`crate::IpamDriver::Dhcp`]): its
    /// address, server and times, renewed by [`crate::DhcpClient`], released on detach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<crate::lease::DhcpLease>,
}

impl Attachment {
    /// The container's IPv4 address without prefix.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ipv4.map(|n| IpAddr::V4(n.addr()))
    }

    /// The container's IPv6 address without prefix.
    pub fn ip6(&self) -> Option<IpAddr> {
        self.ipv6.map(|n| IpAddr::V6(n.addr()))
    }
}
