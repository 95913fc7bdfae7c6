//! A delegated `ipam` section (`host-local` or `static`, the reference plugins' shapes),
//! translated into berth's own IPAM: berth never execs an IPAM plugin, it reads what the section
//! asks for — subnets, gateways, routes, fixed addresses — and allocates itself (one claim file
//! per address, locked, so concurrent invocations never hand an address out twice).

use std::net::IpAddr;

use berth::RouteSpec;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{RouteConf, SubnetConf};
use crate::protocol::CniError;

/// What a section translates to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translated {
    /// The network's subnets.
    pub subnets: Vec<SubnetConf>,
    /// Routes for every container.
    pub routes: Vec<RouteSpec>,
    /// Fixed addresses (`static`).
    pub addresses: Vec<IpAddr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostLocal {
    #[serde(default)]
    ranges: Vec<Vec<Range>>,
    #[serde(flatten)]
    single: Option<Range>,
    #[serde(default)]
    routes: Vec<RouteConf>,
    // host-local's own files: berth keeps its own state.
    #[serde(default)]
    #[allow(dead_code)]
    data_dir: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    resolv_conf: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Range {
    subnet: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    range_start: Option<IpAddr>,
    #[serde(default)]
    range_end: Option<IpAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Static {
    #[serde(rename = "type")]
    _kind: String,
    #[serde(default)]
    addresses: Vec<StaticAddress>,
    #[serde(default)]
    routes: Vec<RouteConf>,
    #[serde(default)]
    #[allow(dead_code)]
    dns: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticAddress {
    address: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

fn bad(kind: &str, e: impl std::fmt::Display) -> CniError {
    CniError::config(format!("ipam ({kind}): {e}"))
}

/// A section's routes as berth's; a default route without a gateway is dropped (the default
/// route is berth's own, through the network's gateway).
fn routes(rs: &[RouteConf]) -> Vec<RouteSpec> {
    rs.iter()
        .filter(|r| !(r.dst.prefix_len() == 0 && r.gw.is_none()))
        .map(RouteConf::spec)
        .collect()
}

/// Translates an `ipam` section; any other `type` is refused naming the two accepted.
pub fn translate(ipam: &Value) -> Result<Translated, CniError> {
    let kind = ipam.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "host-local" => {
            let h: HostLocal = serde_json::from_value(ipam.clone()).map_err(|e| bad(kind, e))?;
            let mut out = Translated::default();
            let ranges = h.ranges.into_iter().flatten().chain(h.single);
            for r in ranges {
                if r.range_start.is_some() || r.range_end.is_some() {
                    return Err(bad(
                        kind,
                        "rangeStart/rangeEnd are not supported: give the sub-range as \
                         berth's ipRange (a CIDR) in `subnets`",
                    ));
                }
                if out
                    .subnets
                    .iter()
                    .any(|s| s.subnet.addr().is_ipv4() == r.subnet.addr().is_ipv4())
                {
                    return Err(bad(
                        kind,
                        "more than one range per address family: berth networks have one \
                         IPv4 and one IPv6 subnet",
                    ));
                }
                out.subnets.push(SubnetConf {
                    subnet: r.subnet.trunc(),
                    gateway: r.gateway,
                    ip_range: None,
                });
            }
            out.routes = routes(&h.routes);
            Ok(out)
        }
        "static" => {
            let s: Static = serde_json::from_value(ipam.clone()).map_err(|e| bad(kind, e))?;
            let mut out = Translated::default();
            for a in s.addresses {
                out.addresses.push(a.address.addr());
                out.subnets.push(SubnetConf {
                    subnet: a.address.trunc(),
                    gateway: a.gateway,
                    ip_range: None,
                });
            }
            out.routes = routes(&s.routes);
            Ok(out)
        }
        other => Err(CniError::config(format!(
            "ipam type {other:?}: berth-cni does its own IPAM and reads only host-local and \
             static sections"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_local_ranges_become_subnets() {
        let t = translate(&json!({"type":"host-local","ranges":[[{"subnet":"10.7.0.0/24","gateway":"10.7.0.1"}],
            [{"subnet":"fd00:7::/64"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"192.0.2.0/24","gw":"10.7.0.9"}],
            "dataDir":"/x"}))
        .unwrap();
        assert_eq!(t.subnets.len(), 2);
        assert_eq!(t.routes.len(), 1);
        let t = translate(&json!({"type":"host-local","subnet":"10.8.0.0/16"})).unwrap();
        assert_eq!(t.subnets[0].subnet, "10.8.0.0/16".parse::<IpNet>().unwrap());
    }

    #[test]
    fn static_addresses_and_refusals() {
        let t = translate(
            &json!({"type":"static","addresses":[{"address":"10.6.0.5/24","gateway":"10.6.0.1"}]}),
        )
        .unwrap();
        assert_eq!(t.addresses, vec!["10.6.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(t.subnets[0].subnet, "10.6.0.0/24".parse::<IpNet>().unwrap());
        let e = translate(&json!({"type":"dhcp"})).unwrap_err();
        assert!(e.msg.contains("dhcp"), "{e}");
        let e = translate(&json!({"type":"host-local","ranges":[[{"subnet":"10.7.0.0/24","rangeStart":"10.7.0.9"}]]}))
            .unwrap_err();
        assert!(e.msg.contains("rangeStart"), "{e}");
    }
}
