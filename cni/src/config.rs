//! The network configuration berth-cni reads on stdin (one plugin of a conflist, with the
//! list's `name` and `cniVersion` and what the runtime adds), parsed into berth's typed
//! builders. Its vocabulary is Docker's where Docker has a word (`driver`, `options` with
//! `docker network create -o` keys, `subnets` with `subnet`/`gateway`/`ipRange`,
//! `auxAddresses`, `internal`, `icc`) and the CNI conventions' elsewhere (`ipMasq`, `mtu`,
//! `routes` with `dst`/`gw`, capabilities under `runtimeConfig`). Unknown keys are refused,
//! naming the key, so a typo never silently changes a network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use berth::docker_options::DockerOptions;
use berth::{
    Bandwidth, DriverKind, DriverOptions, MacAddr, NetworkSpec, PortRequest, Protocol, RateLimit,
    RouteSpec,
};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::CniError;

/// Where berth-cni keeps its records when the configuration names no `stateDir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/berth";

/// One plugin's configuration as delivered on stdin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetConf {
    /// The spec version to answer in.
    pub cni_version: String,
    /// The network's name (the conflist's `name`): berth's network of that name.
    pub name: String,
    /// The plugin (`berth-cni`, or whatever name it is installed under).
    #[serde(rename = "type")]
    #[allow(dead_code)]
    pub plugin: String,
    /// `bridge` (default), `macvlan` or `ipvlan`.
    #[serde(default)]
    pub driver: Option<String>,
    /// Driver options under Docker's `-o` keys (`com.docker.network.bridge.name`, `parent`,
    /// `macvlan_mode`, `ipvlan_mode`, `com.docker.network.bridge.enable_icc` …); booleans and
    /// numbers may be JSON values.
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    /// The bridge device (CNI bridge's word for `com.docker.network.bridge.name`).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Subnets (one IPv4 and one IPv6 at most); none: picked from berth's pools.
    #[serde(default)]
    pub subnets: Vec<SubnetConf>,
    /// Addresses never handed out (`--aux-address name=ip`).
    #[serde(default)]
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// IPv6 on (an automatic ULA /64 when no IPv6 subnet is given).
    #[serde(default)]
    pub ipv6: bool,
    /// No route out and no published ports (`--internal`).
    #[serde(default)]
    pub internal: bool,
    /// Containers may talk to each other (default true).
    #[serde(default)]
    pub icc: Option<bool>,
    /// Masquerade egress (default true).
    #[serde(default)]
    pub ip_masq: Option<bool>,
    /// MTU of the network's interfaces.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Routes every container on the network gets (`dst`, optional `gw`).
    #[serde(default)]
    pub routes: Vec<RouteConf>,
    /// CNI bridge's `vlan`: each container's bridge port is an access port of this VLAN
    /// (berth's `EndpointSpec::vlan`: PVID untagged, out of the default VLAN); the bridge's
    /// trunk to the LAN is `options.parent`. Bridge networks only.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// CNI bridge's `preserveDefaultVlan`: a VLAN port of berth's leaves the default VLAN, so
    /// only `false` is served (`true` with `vlan` is refused by name).
    #[serde(default)]
    pub preserve_default_vlan: Option<bool>,
    /// CNI bridge's `vlanTrunk` (VLANs tagged into the container): refused by name; berth's
    /// trunk is the bridge's uplink (`options.parent`).
    #[serde(default)]
    pub vlan_trunk: Option<Value>,
    /// berth's state dir for this network (default [`DEFAULT_STATE_DIR`]). Every network
    /// sharing a state dir shares its address pools, ports index and firewall.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// `false`: berth leaves the firewall alone (no NAT, no published ports, no isolation).
    #[serde(default)]
    pub firewall: Option<bool>,
    /// A delegated IPAM section: `host-local` (its `ranges`/`subnet`, `gateway`, `routes`) and
    /// `static` (`addresses`, `routes`) are translated into berth's own IPAM.
    #[serde(default)]
    pub ipam: Option<Value>,
    /// DNS settings returned in the result (the spec's well-known `dns`).
    #[serde(default)]
    pub dns: Option<DnsConf>,
    /// The capabilities the conflist declares (the runtime fills `runtimeConfig` from them).
    #[serde(default)]
    #[allow(dead_code)]
    pub capabilities: Option<Value>,
    /// What the runtime passes for the declared capabilities.
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    /// The previous plugin's result (chaining; DEL and CHECK get the ADD result).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// Conventional `args` (e.g. `args.cni.ips`); accepted, only `ips` and `mac` are used.
    #[serde(default)]
    pub args: Option<Value>,
    /// `GC`: the attachments still valid.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    /// `GC`: the same list under the name an earlier draft of spec 1.1 used (libcni sends
    /// both); read when `cni.dev/valid-attachments` is absent.
    #[serde(default, rename = "cni.dev/attachments")]
    pub attachments: Option<Vec<ValidAttachment>>,
}

/// One subnet of the network.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetConf {
    /// The subnet (CIDR).
    pub subnet: IpNet,
    /// Its gateway (default: the first address).
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// Hand out addresses only from this sub-range (`--ip-range`).
    #[serde(default)]
    pub ip_range: Option<IpNet>,
}

/// A route (`dst`, optional `gw`), CNI's shape.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteConf {
    /// Destination.
    pub dst: IpNet,
    /// Next hop.
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

/// The spec's DNS object.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConf {
    /// Nameservers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `cni.dev/valid-attachments` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ValidAttachment {
    /// `CNI_CONTAINERID` of the attachment.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` of the attachment.
    pub ifname: String,
}

/// `runtimeConfig`: what the runtime passes for the capabilities the conflist declares.
/// Unknown capabilities are ignored (a runtime sends only what was declared).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// `portMappings` (`-p`).
    #[serde(default)]
    pub port_mappings: Vec<PortMappingConf>,
    /// `ips`: requested addresses (`10.88.0.5` or `10.88.0.5/24`).
    #[serde(default)]
    pub ips: Vec<String>,
    /// `mac`: requested MAC.
    #[serde(default)]
    pub mac: Option<String>,
    /// `dns`: the runtime's DNS settings for the container.
    #[serde(default)]
    pub dns: Option<RuntimeDns>,
    /// `aliases`: network name → names of the container on it.
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// `bandwidth`: rate limits of the container's interface (the CNI `bandwidth` plugin's
    /// capability, which containerd fills from a pod's `kubernetes.io/*-bandwidth`
    /// annotations).
    #[serde(default)]
    pub bandwidth: Option<BandwidthConf>,
}

/// The `bandwidth` capability's shape (as the CNI `bandwidth` plugin reads it): rates in bits
/// per second, bursts in bits; ingress is what the container receives. A direction whose rate
/// and burst are both 0 (or absent) is not limited.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthConf {
    /// What the container receives, bit/s.
    #[serde(default)]
    pub ingress_rate: u64,
    /// Its burst, in bits.
    #[serde(default)]
    pub ingress_burst: u64,
    /// What the container sends, bit/s.
    #[serde(default)]
    pub egress_rate: u64,
    /// Its burst, in bits.
    #[serde(default)]
    pub egress_burst: u64,
}

impl BandwidthConf {
    /// As berth's limits (validated by the library: a rate without a burst, or a burst that
    /// cannot hold a frame, is refused by name).
    pub fn limits(&self) -> Result<Option<Bandwidth>, CniError> {
        let one = |dir: &str, rate: u64, burst_bits: u64| -> Result<Option<RateLimit>, CniError> {
            if rate == 0 && burst_bits == 0 {
                return Ok(None);
            }
            let burst = u32::try_from(burst_bits.div_ceil(8)).map_err(|_| {
                CniError::config(format!(
                    "bandwidth: {dir}Burst {burst_bits} bits is more than 4 GiB"
                ))
            })?;
            Ok(Some(RateLimit::new(rate, burst)))
        };
        let b = Bandwidth {
            ingress: one("ingress", self.ingress_rate, self.ingress_burst)?,
            egress: one("egress", self.egress_rate, self.egress_burst)?,
        };
        if b.is_unlimited() {
            return Ok(None);
        }
        b.validate()
            .map_err(|e| CniError::from(e).prefixed("bandwidth"))?;
        Ok(Some(b))
    }
}

/// The `dns` capability's shape (CNI conventions).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeDns {
    /// Nameservers.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Search domains.
    #[serde(default)]
    pub searches: Vec<String>,
    /// Options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// The `portMappings` capability's entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PortMappingConf {
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// `tcp` (default), `udp` or `sctp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Host address; empty or absent: every address.
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
}

impl NetConf {
    /// Parses stdin. A decoding error names the field (code 6, or 4 for an unknown key).
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        serde_json::from_slice(stdin).map_err(|e| {
            let msg = e.to_string();
            let code = if msg.contains("unknown field") || e.is_data() {
                crate::protocol::code::INVALID_CONFIG
            } else {
                crate::protocol::code::DECODE_FAILURE
            };
            CniError::new(code, format!("network configuration: {msg}"))
        })
    }

    /// The driver kind the configuration asks for.
    fn driver_kind(&self) -> Result<DriverKind, CniError> {
        match self.driver.as_deref().unwrap_or("bridge") {
            "bridge" => Ok(DriverKind::Bridge),
            "macvlan" => Ok(DriverKind::Macvlan),
            "ipvlan" => Ok(DriverKind::Ipvlan),
            other => Err(CniError::config(format!(
                "driver {other:?}: berth-cni drives bridge, macvlan or ipvlan networks"
            ))),
        }
    }

    /// The berth network this configuration describes (validated).
    pub fn network_spec(&self) -> Result<NetworkSpec, CniError> {
        let kind = self.driver_kind()?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.options {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(CniError::config(format!(
                        "options.{k}: {other} is not a string, boolean or number"
                    )));
                }
            };
            pairs.push((k.clone(), v));
        }
        let mut opts =
            DockerOptions::parse(kind, pairs).map_err(|e| CniError::from(e).prefixed("options"))?;
        let bridge_only = |field: &str| {
            CniError::config(format!(
                "{field} applies to bridge networks, not {}",
                kind.name()
            ))
        };
        match &mut opts.driver {
            DriverOptions::Bridge(b) => {
                if let Some(name) = &self.bridge {
                    b.bridge_name = Some(name.clone());
                }
                if let Some(icc) = self.icc {
                    b.icc = icc;
                }
                if let Some(m) = self.ip_masq {
                    b.masquerade = m;
                }
            }
            _ => {
                if self.bridge.is_some() {
                    return Err(bridge_only("bridge"));
                }
                if self.icc.is_some() {
                    return Err(bridge_only("icc"));
                }
                if self.ip_masq.is_some() {
                    return Err(bridge_only("ipMasq"));
                }
            }
        }
        if let Some(mtu) = self.mtu {
            opts.mtu = Some(mtu);
        }
        let mut spec = opts.into_spec(self.name.clone());
        let (subnets, routes) = self.subnets_and_routes()?;
        for s in subnets {
            spec = spec.subnet(s.subnet);
            if let Some(gw) = s.gateway {
                spec = spec.gateway(gw);
            }
            if let Some(r) = s.ip_range {
                spec = spec.ip_range(r);
            }
        }
        for (name, ip) in &self.aux_addresses {
            spec = spec.aux_address(name.clone(), *ip);
        }
        for r in routes {
            spec = spec.route(r);
        }
        spec = spec.ipv6(self.ipv6).internal(self.internal);
        spec.validate()
            .map_err(|e| CniError::from(e).prefixed("network"))?;
        Ok(spec)
    }

    /// The subnets and routes: the top-level ones plus a translated `ipam` section.
    fn subnets_and_routes(&self) -> Result<(Vec<SubnetConf>, Vec<RouteSpec>), CniError> {
        let mut subnets = self.subnets.clone();
        let mut routes: Vec<RouteSpec> = self.routes.iter().map(RouteConf::spec).collect();
        if let Some(ipam) = &self.ipam {
            let t = crate::delegated_ipam::translate(ipam)?;
            if !subnets.is_empty() && !t.subnets.is_empty() {
                return Err(CniError::config(
                    "subnets are given both at the top level and in ipam: give them once",
                ));
            }
            subnets.extend(t.subnets);
            routes.extend(t.routes);
        }
        Ok((subnets, routes))
    }

    /// Addresses the `static` IPAM section asks for (every container gets them: one container
    /// per such network, as with CNI's static plugin).
    pub fn static_addresses(&self) -> Result<Vec<IpAddr>, CniError> {
        match &self.ipam {
            Some(ipam) => Ok(crate::delegated_ipam::translate(ipam)?.addresses),
            None => Ok(Vec::new()),
        }
    }

    /// The attachment's requested addresses: `runtimeConfig.ips`, then `args.cni.ips`, then
    /// `CNI_ARGS` `IP=` (comma-separated), then a static IPAM section's.
    pub fn requested_ips(&self, cni_args_ip: Option<&str>) -> Result<Vec<IpAddr>, CniError> {
        let mut raw: Vec<String> = self.runtime_config.ips.clone();
        if raw.is_empty()
            && let Some(ips) = self.args_cni("ips").and_then(Value::as_array)
        {
            raw = ips
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        }
        if raw.is_empty()
            && let Some(ip) = cni_args_ip
        {
            raw = ip.split(',').map(str::to_string).collect();
        }
        let mut out = Vec::new();
        for s in &raw {
            let addr = s.split('/').next().unwrap_or(s);
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| CniError::config(format!("requested ip {s:?} is not an address")))?;
            out.push(ip);
        }
        if out.is_empty() {
            out = self.static_addresses()?;
        }
        Ok(out)
    }

    /// The requested MAC: `runtimeConfig.mac`, then `args.cni.mac`, then `CNI_ARGS` `MAC=`.
    pub fn requested_mac(&self, cni_args_mac: Option<&str>) -> Result<Option<MacAddr>, CniError> {
        let raw = self
            .runtime_config
            .mac
            .clone()
            .or_else(|| {
                self.args_cni("mac")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .or_else(|| cni_args_mac.map(str::to_string));
        raw.map(|m| {
            m.parse::<MacAddr>()
                .map_err(|e| CniError::from(e).prefixed("mac"))
        })
        .transpose()
    }

    fn args_cni(&self, key: &str) -> Option<&Value> {
        self.args.as_ref()?.get("cni")?.get(key)
    }

    /// The published ports (`runtimeConfig.portMappings`), each its own request.
    pub fn port_requests(&self) -> Result<Vec<PortRequest>, CniError> {
        self.runtime_config
            .port_mappings
            .iter()
            .map(PortMappingConf::request)
            .collect()
    }

    /// The access VLAN of the container's port (`vlan`), with what berth cannot serve of CNI
    /// bridge's VLAN keys refused by name. Its range and the driver are checked by the library.
    pub fn endpoint_vlan(&self) -> Result<Option<u16>, CniError> {
        if self.vlan_trunk.is_some() {
            return Err(CniError::config(
                "vlanTrunk: a trunk into the container is not served; berth's trunk is the bridge's uplink (options.parent)",
            ));
        }
        if self.vlan.is_some() && self.preserve_default_vlan == Some(true) {
            return Err(CniError::config(
                "preserveDefaultVlan: true is not served: a VLAN port of berth's leaves the default VLAN",
            ));
        }
        Ok(self.vlan)
    }

    /// The names of the container on this network (`runtimeConfig.aliases[name]`).
    pub fn aliases(&self) -> &[String] {
        self.runtime_config
            .aliases
            .get(&self.name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

impl RouteConf {
    /// As berth's route.
    pub fn spec(&self) -> RouteSpec {
        RouteSpec {
            dst: self.dst,
            via: self.gw,
            metric: None,
            table: None,
        }
    }
}

impl PortMappingConf {
    /// As berth's request (validated).
    pub fn request(&self) -> Result<PortRequest, CniError> {
        let proto: Protocol = self
            .protocol
            .as_deref()
            .unwrap_or("tcp")
            .to_ascii_lowercase()
            .parse()
            .map_err(|e: berth::Error| CniError::from(e).prefixed("portMappings"))?;
        let host_ip = match self.host_ip.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
                CniError::config(format!("portMappings: hostIP {s:?} is not an address"))
            })?),
        };
        let req = PortRequest {
            proto,
            host_ip,
            host_ports: Some((self.host_port, self.host_port)),
            container_ports: (self.container_port, self.container_port),
        };
        req.validate()
            .map_err(|e| CniError::from(e).prefixed("portMappings"))?;
        Ok(req)
    }
}

impl CniError {
    /// The same error with `what: ` before its message, code 4 when berth called it bad input.
    pub fn prefixed(mut self, what: &str) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::code;

    fn conf(extra: &str) -> Result<NetConf, CniError> {
        NetConf::parse(
            format!(r#"{{"cniVersion":"1.0.0","name":"n1","type":"berth-cni"{extra}}}"#).as_bytes(),
        )
    }

    #[test]
    fn bridge_with_docker_words() {
        let c = conf(
            r#","bridge":"br9","subnets":[{"subnet":"10.9.0.0/24","gateway":"10.9.0.1","ipRange":"10.9.0.128/25"}],
               "options":{"com.docker.network.bridge.enable_icc":false,"com.docker.network.driver.mtu":1400},
               "ipMasq":false,"auxAddresses":{"router":"10.9.0.2"}"#,
        )
        .unwrap();
        let spec = c.network_spec().unwrap();
        match spec.driver() {
            DriverOptions::Bridge(b) => {
                assert_eq!(b.bridge_name.as_deref(), Some("br9"));
                assert!(!b.icc && !b.masquerade);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = conf(r#","subnett":"10.0.0.0/8""#).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("subnett"), "{e}");
        let e = conf(r#","driver":"overlay2""#)
            .unwrap()
            .network_spec()
            .unwrap_err();
        assert!(e.msg.contains("overlay2"), "{e}");
        let e = conf(r#","options":{"com.docker.network.bridge.enable_icc":"perhaps"}"#)
            .unwrap()
            .network_spec()
            .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("enable_icc"), "{e}");
        let e = conf(r#","driver":"macvlan","bridge":"b0","options":{"parent":"eth0"}"#)
            .unwrap()
            .network_spec()
            .unwrap_err();
        assert!(e.msg.contains("bridge"), "{e}");
        assert_eq!(NetConf::parse(b"{").unwrap_err().code, code::DECODE_FAILURE);
    }

    #[test]
    fn runtime_config_ports_ips_mac_aliases() {
        let c = conf(
            r#","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
               {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}],
               "ips":["10.9.0.7/24"],"mac":"02:00:00:00:00:07","aliases":{"n1":["web"],"other":["x"]},
               "bandwidth":{"ingressRate":1}}"#,
        )
        .unwrap();
        let ports = c.port_requests().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1].proto, Protocol::Udp);
        assert_eq!(ports[1].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            c.requested_ips(None).unwrap(),
            vec!["10.9.0.7".parse::<IpAddr>().unwrap()]
        );
        assert!(c.requested_mac(None).unwrap().is_some());
        assert_eq!(c.aliases(), ["web".to_string()]);
        let bad = conf(r#","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}"#)
            .unwrap();
        assert_eq!(bad.port_requests().unwrap_err().code, code::INVALID_CONFIG);
    }

    #[test]
    fn vlan_keys() {
        assert_eq!(conf("").unwrap().endpoint_vlan().unwrap(), None);
        let c = conf(r#","vlan":10,"preserveDefaultVlan":false"#).unwrap();
        assert_eq!(c.endpoint_vlan().unwrap(), Some(10));
        let e = conf(r#","vlan":10,"preserveDefaultVlan":true"#)
            .unwrap()
            .endpoint_vlan()
            .unwrap_err();
        assert!(e.msg.contains("preserveDefaultVlan"), "{e}");
        let e = conf(r#","vlanTrunk":[{"id":20}]"#)
            .unwrap()
            .endpoint_vlan()
            .unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("vlanTrunk"), "{e}");
        assert_eq!(
            conf(r#","vlan":70000"#).unwrap_err().code,
            code::INVALID_CONFIG
        );
    }

    #[test]
    fn cni_args_ip_and_mac() {
        let c = conf("").unwrap();
        assert_eq!(
            c.requested_ips(Some("10.9.0.9")).unwrap(),
            vec!["10.9.0.9".parse::<IpAddr>().unwrap()]
        );
        assert!(c.requested_mac(Some("zz")).is_err());
    }
}
