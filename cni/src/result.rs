//! The ADD result (CNI spec "Success"), built from berth's [`Attachment`] and rendered in the
//! version the configuration asks for: 0.4.0 (each IP with `version`), 1.0.0 and 1.1.0 (no
//! `version`; 1.1.0 interfaces may carry `mtu`). Chained after another plugin, berth's
//! interfaces and addresses are appended to the previous result's.

use std::net::IpAddr;

use berth::{Attachment, NetworkInfo};
use serde_json::{Value, json};

use crate::config::DnsConf;
use crate::protocol::{CniError, version_triple};

/// Builds the result of an ADD.
pub struct ResultBuilder<'a> {
    /// The attachment berth made.
    pub att: &'a Attachment,
    /// Its network.
    pub net: &'a NetworkInfo,
    /// The netns path the runtime gave.
    pub sandbox: &'a str,
    /// DNS to report (configuration and runtime).
    pub dns: Option<DnsConf>,
    /// The previous plugin's result, when chained.
    pub prev: Option<&'a Value>,
}

impl ResultBuilder<'_> {
    /// The result in `version`.
    pub fn render(&self, version: &str) -> Result<Value, CniError> {
        let legacy = version_triple(version).is_some_and(|v| v < (1, 0, 0));
        let with_mtu = version_triple(version).is_some_and(|v| v >= (1, 1, 0));
        let (mut interfaces, mut ips, mut routes, prev_dns) = match self.prev {
            Some(p) => prev_parts(p)?,
            None => Default::default(),
        };
        let base = interfaces.len();
        let mut container_idx = base;
        if let Some(h) = &self.att.host_ifname {
            interfaces.push(json!({"name": h}));
            container_idx += 1;
        }
        let mut cif = json!({"name": self.att.ifname, "sandbox": self.sandbox});
        if let Some(mac) = &self.att.mac {
            cif["mac"] = json!(mac.to_string());
        }
        if with_mtu && self.net.mtu > 0 {
            cif["mtu"] = json!(self.net.mtu);
        }
        interfaces.push(cif);
        let mut push_ip = |addr: String, gw: Option<IpAddr>, v4: bool| {
            let mut ip = json!({"address": addr, "interface": container_idx});
            if let Some(gw) = gw {
                ip["gateway"] = json!(gw.to_string());
            }
            if legacy {
                ip["version"] = json!(if v4 { "4" } else { "6" });
            }
            ips.push(ip);
        };
        if let Some(a) = self.att.ipv4 {
            push_ip(a.to_string(), self.att.gateway.map(IpAddr::V4), true);
        }
        if let Some(a) = self.att.ipv6 {
            push_ip(a.to_string(), self.att.gateway6.map(IpAddr::V6), false);
        }
        if let Some(gw) = self.att.gateway {
            routes.push(json!({"dst": "0.0.0.0/0", "gw": gw.to_string()}));
        }
        if let Some(gw) = self.att.gateway6 {
            routes.push(json!({"dst": "::/0", "gw": gw.to_string()}));
        }
        for r in &self.att.routes {
            let mut rt = json!({"dst": r.dst.to_string()});
            if let Some(via) = r.via {
                rt["gw"] = json!(via.to_string());
            }
            if with_mtu && let Some(m) = r.metric {
                rt["priority"] = json!(m);
            }
            routes.push(rt);
        }
        let mut out = json!({
            "cniVersion": version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
        });
        let dns = self.dns.clone().or(prev_dns);
        if let Some(dns) = dns.filter(|d| *d != DnsConf::default()) {
            out["dns"] = serde_json::to_value(dns).expect("plain struct");
        }
        Ok(out)
    }
}

type Parts = (Vec<Value>, Vec<Value>, Vec<Value>, Option<DnsConf>);

/// The previous result's interfaces, IPs (without 0.4.0's `version`), routes and DNS.
fn prev_parts(prev: &Value) -> Result<Parts, CniError> {
    let list = |k: &str| -> Result<Vec<Value>, CniError> {
        match prev.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(CniError::config(format!(
                "prevResult.{k}: {other} is not a list"
            ))),
        }
    };
    let mut ips = list("ips")?;
    for ip in &mut ips {
        if let Some(o) = ip.as_object_mut() {
            o.remove("version");
        }
    }
    let dns = match prev.get("dns") {
        None | Some(Value::Null) => None,
        Some(d) => Some(
            serde_json::from_value(d.clone())
                .map_err(|e| CniError::config(format!("prevResult.dns: {e}")))?,
        ),
    };
    Ok((list("interfaces")?, ips, list("routes")?, dns))
}

/// The container-side addresses a previous (ADD) result lists for `ifname` in `sandbox`,
/// for CHECK.
pub fn prev_addresses(prev: &Value, ifname: &str) -> Vec<String> {
    let ifaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let idx: Vec<usize> = ifaces
        .iter()
        .enumerate()
        .filter(|(_, i)| {
            i.get("name").and_then(Value::as_str) == Some(ifname)
                && i.get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })
        .map(|(n, _)| n)
        .collect();
    prev.get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|ip| {
            ip.get("interface")
                .and_then(Value::as_u64)
                .is_some_and(|i| idx.contains(&(i as usize)))
        })
        .filter_map(|ip| {
            ip.get("address")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}
