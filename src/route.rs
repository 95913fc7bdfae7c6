//! Static routes for containers (what pipework users add with `ip route` inside a netns):
//! `DST[,via=GW][,metric=M][,table=N]`, IPv4 or IPv6, via a gateway or on-link, in the main
//! routing table or in another one (policy routing: see [`crate::rule`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One static route inside a container netns.
///
/// ```
/// use berth::RouteSpec;
/// let r: RouteSpec = "10.99.0.0/16,via=10.88.0.5,metric=50".parse().unwrap();
/// assert_eq!(r.via, Some("10.88.0.5".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Destination prefix.
    pub dst: IpNet,
    /// Next hop; `None`: on-link through the endpoint's interface.
    pub via: Option<IpAddr>,
    /// Metric (priority); `None`: the kernel's default.
    pub metric: Option<u32>,
    /// Routing table; `None`: main. For policy routing ([`crate::RuleSpec`]); see
    /// [`crate::rule`] for the tables allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
}

impl RouteSpec {
    /// Puts the route into routing table `table` instead of main (`ip route add … table N`).
    pub fn table(mut self, table: u32) -> Self {
        self.table = Some(table);
        self
    }

    /// Checks families match, the destination has no host bits and the table is one a route
    /// may go into.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.table {
            crate::rule::check_table("route", self, t, false)?;
        }
        if self.dst.trunc() != self.dst {
            return Err(Error::invalid(
                "route",
                self,
                "destination has host bits set",
            ));
        }
        if self
            .via
            .is_some_and(|v| v.is_ipv4() != self.dst.addr().is_ipv4())
        {
            return Err(Error::invalid(
                "route",
                self,
                "gateway and destination differ in family",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(v) = self.via {
            write!(f, ",via={v}")?;
        }
        if let Some(m) = self.metric {
            write!(f, ",metric={m}")?;
        }
        if let Some(t) = self.table {
            write!(f, ",table={t}")?;
        }
        Ok(())
    }
}

impl FromStr for RouteSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| Error::invalid("route", s, reason);
        let mut parts = s.split(',');
        let dst: IpNet = parts
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| bad("expected DST[,via=GW][,metric=M][,table=N]"))?;
        let (mut via, mut metric, mut table) = (None, None, None);
        for p in parts {
            match p.split_once('=') {
                Some(("via", v)) => {
                    via = Some(v.parse().map_err(|_| bad("via is not an address"))?)
                }
                Some(("metric", m)) => {
                    metric = Some(m.parse().map_err(|_| bad("metric is not a number"))?)
                }
                Some(("table", t)) => {
                    table = Some(t.parse().map_err(|_| bad("table is not a number"))?)
                }
                _ => return Err(bad("expected DST[,via=GW][,metric=M][,table=N]")),
            }
        }
        let r = RouteSpec {
            dst,
            via,
            metric,
            table,
        };
        r.validate()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let r: RouteSpec = "fd00:99::/64".parse().unwrap();
        assert_eq!((r.via, r.metric), (None, None));
        assert_eq!(
            "10.0.0.0/8,via=10.1.0.1,metric=5"
                .parse::<RouteSpec>()
                .unwrap()
                .to_string(),
            "10.0.0.0/8,via=10.1.0.1,metric=5"
        );
        assert!("10.0.0.1/8".parse::<RouteSpec>().is_err());
        assert!("10.0.0.0/8,via=fd00::1".parse::<RouteSpec>().is_err());
        assert!("10.0.0.0/8,dev=eth0".parse::<RouteSpec>().is_err());
    }

    #[test]
    fn routes_in_other_tables() {
        let r: RouteSpec = "0.0.0.0/0,via=10.82.0.1,table=100".parse().unwrap();
        assert_eq!(r.table, Some(100));
        assert_eq!(r.to_string(), "0.0.0.0/0,via=10.82.0.1,table=100");
        assert_eq!(r, r.to_string().parse().unwrap());
        "fd00::/64,table=4000000000".parse::<RouteSpec>().unwrap();
        for (s, why) in [
            ("10.0.0.0/8,table=0", "unspecified"),
            ("10.0.0.0/8,table=253", "default table"),
            ("10.0.0.0/8,table=254", "main"),
            ("10.0.0.0/8,table=255", "local table"),
            ("10.0.0.0/8,table=-1", "not a number"),
        ] {
            let e = s.parse::<RouteSpec>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
        // Records written before tables existed read back as routes in main.
        let old: RouteSpec =
            serde_json::from_str(r#"{"dst":"10.0.0.0/8","via":null,"metric":null}"#).unwrap();
        assert_eq!(old.table, None);
        assert!(!serde_json::to_string(&old).unwrap().contains("table"));
    }
}
