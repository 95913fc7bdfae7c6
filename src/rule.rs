//! Policy routing for containers (what pipework users add with `ip rule` inside a netns):
//! typed routing rules ([`RuleSpec`]: `from`/`to`/`fwmark`/`iif`/`priority` → `table`) that
//! send some of a container's traffic to another routing table, whose routes are
//! [`crate::RouteSpec`]s with a [`crate::RouteSpec::table`]. A container on two networks sends
//! each source address out of its own interface with one rule and one route per network:
//!
//! ```
//! use berth::{RouteSpec, RuleSpec};
//! // ip rule add from 10.82.0.2/32 lookup 100; ip route add default via 10.82.0.1 table 100
//! let rule: RuleSpec = "from=10.82.0.2/32,table=100".parse().unwrap();
//! let route: RouteSpec = "0.0.0.0/0,via=10.82.0.1,table=100".parse().unwrap();
//! assert_eq!(rule, RuleSpec::lookup(100).from("10.82.0.2/32".parse().unwrap()));
//! assert_eq!(route.table, Some(100));
//! ```
//!
//! Tables: a rule may look up a table of its own (1–252 or 256 and above) or the main table
//! (254, e.g. to exempt a destination ahead of other rules); a route goes into a table of its
//! own (1–252 or 256 and above) or, without a table, into main. Refused: 0 (unspecified), 253
//! (`default`), 255 (`local`, the kernel's own), and 254 for a route (leave the table out).
//! Priority 0 is the kernel's rule for the local table and is refused; without a priority the
//! kernel picks one just before the first rule after it (as `ip rule add` does).

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::validate::validate_ifname;

/// The kernel's `default` routing table (`RT_TABLE_DEFAULT`).
pub const TABLE_DEFAULT: u32 = 253;
/// The main routing table (`RT_TABLE_MAIN`): routes without a table go there.
pub const TABLE_MAIN: u32 = 254;
/// The kernel's `local` routing table (`RT_TABLE_LOCAL`).
pub const TABLE_LOCAL: u32 = 255;

/// Refuses a table a rule may not look up (`main_ok`) or a route may not go into.
pub(crate) fn check_table(
    what: &'static str,
    value: &dyn fmt::Display,
    table: u32,
    main_ok: bool,
) -> Result<()> {
    let reason = match table {
        0 => "table 0 is unspecified: name a table of 1-252 or 256 and above",
        TABLE_DEFAULT => {
            "table 253 is the kernel's default table: use one of 1-252 or 256 and above"
        }
        TABLE_LOCAL => "table 255 is the kernel's local table: use one of 1-252 or 256 and above",
        TABLE_MAIN if !main_ok => "table 254 is main: leave the table out for a route in main",
        _ => return Ok(()),
    };
    Err(Error::invalid(what, value, reason))
}

/// A firewall mark to match (`fwmark MARK[/MASK]`); without a mask every bit of the mark
/// counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fwmark {
    /// The mark.
    pub mark: u32,
    /// The bits of the packet's mark compared (`None`: all, `0xffffffff`).
    pub mask: Option<u32>,
}

impl fmt::Display for Fwmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.mark)?;
        if let Some(m) = self.mask {
            write!(f, "/{m:#x}")?;
        }
        Ok(())
    }
}

/// One routing rule inside a container netns (`ip rule add [from CIDR] [to CIDR]
/// [fwmark M[/MASK]] [iif NAME] [priority P] lookup TABLE`). Its address family is the one of
/// `from` and `to`, so at least one of them is required; built with [`RuleSpec::lookup`] or
/// parsed from `from=CIDR[,to=CIDR][,fwmark=M[/MASK]][,iif=NAME][,priority=P],table=N`.
///
/// ```
/// use berth::RuleSpec;
/// let r = RuleSpec::lookup(100)
///     .from("10.82.0.0/24".parse().unwrap())
///     .fwmark(0x10, Some(0xff))
///     .priority(1000);
/// assert_eq!(r.to_string(), "from=10.82.0.0/24,fwmark=0x10/0xff,priority=1000,table=100");
/// assert_eq!(r, r.to_string().parse().unwrap());
/// assert!("table=100".parse::<RuleSpec>().is_err(), "no from or to: no family");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Source prefix matched (`from`); `None`: any.
    #[serde(default)]
    pub from: Option<IpNet>,
    /// Destination prefix matched (`to`); `None`: any.
    #[serde(default)]
    pub to: Option<IpNet>,
    /// Firewall mark matched.
    #[serde(default)]
    pub fwmark: Option<Fwmark>,
    /// Input interface matched (`iif`, a name inside the container netns; `lo` for what the
    /// container sends itself).
    #[serde(default)]
    pub iif: Option<String>,
    /// Priority (`pref`); `None`: the kernel picks one.
    #[serde(default)]
    pub priority: Option<u32>,
    /// The routing table looked up.
    pub table: u32,
}

impl RuleSpec {
    /// A rule that looks up `table`; add its selectors with [`RuleSpec::from`] and the others.
    pub fn lookup(table: u32) -> Self {
        RuleSpec {
            from: None,
            to: None,
            fwmark: None,
            iif: None,
            priority: None,
            table,
        }
    }

    /// Matches packets from `prefix` (`from`).
    pub fn from(mut self, prefix: IpNet) -> Self {
        self.from = Some(prefix);
        self
    }

    /// Matches packets to `prefix` (`to`).
    pub fn to(mut self, prefix: IpNet) -> Self {
        self.to = Some(prefix);
        self
    }

    /// Matches packets whose firewall mark, under `mask` (default all bits), is `mark`.
    pub fn fwmark(mut self, mark: u32, mask: Option<u32>) -> Self {
        self.fwmark = Some(Fwmark { mark, mask });
        self
    }

    /// Matches packets that came in on interface `name` of the container netns.
    pub fn iif(mut self, name: impl Into<String>) -> Self {
        self.iif = Some(name.into());
        self
    }

    /// The rule's priority (lower first); 0 is refused (the local table's rule).
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Whether the rule is an IPv6 one (the family of `from`/`to`; IPv4 when neither is set,
    /// which [`RuleSpec::validate`] refuses).
    pub fn is_ipv6(&self) -> bool {
        self.from.or(self.to).is_some_and(|n| n.addr().is_ipv6())
    }

    /// Checks the table, the family of `from` and `to`, host bits, the mark and mask, the
    /// interface name and the priority; refuses a rule that would match every packet.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason| Err(Error::invalid("rule", self, reason));
        check_table("rule", self, self.table, true)?;
        let Some(first) = self.from.or(self.to) else {
            return bad("needs from= or to= (they give the rule its address family)");
        };
        for n in [self.from, self.to].into_iter().flatten() {
            if n.addr().is_ipv6() != first.addr().is_ipv6() {
                return bad("from and to differ in family");
            }
            if n.trunc() != n {
                return bad("a prefix has host bits set");
            }
        }
        if let Some(m) = self.fwmark {
            match m.mask {
                Some(0) => return bad("fwmark mask 0 matches every packet"),
                Some(mask) if m.mark & !mask != 0 => {
                    return bad("fwmark has bits outside its mask");
                }
                None if m.mark == 0 => {
                    return bad("fwmark 0 without a mask: give one (fwmark=0/MASK)");
                }
                _ => {}
            }
        }
        if let Some(i) = &self.iif {
            validate_ifname("rule iif", i)?;
        }
        if self.priority == Some(0) {
            return bad("priority 0 is the kernel's rule for the local table");
        }
        let everything = |n: Option<IpNet>| n.is_none_or(|n| n.prefix_len() == 0);
        if everything(self.from)
            && everything(self.to)
            && self.fwmark.is_none()
            && self.iif.is_none()
        {
            return bad("matches every packet: narrow it with from, to, fwmark or iif");
        }
        Ok(())
    }
}

/// Refuses a rule given twice among `rules` (the kernel would refuse the second, or keep two
/// that differ only in the priority it picked).
pub(crate) fn check_distinct(rules: &[RuleSpec]) -> Result<()> {
    for (i, r) in rules.iter().enumerate() {
        if rules[..i].contains(r) {
            return Err(Error::invalid("rule", r, "given twice"));
        }
    }
    Ok(())
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.from {
            write!(f, "from={n},")?;
        }
        if let Some(n) = self.to {
            write!(f, "to={n},")?;
        }
        if let Some(m) = self.fwmark {
            write!(f, "fwmark={m},")?;
        }
        if let Some(i) = &self.iif {
            write!(f, "iif={i},")?;
        }
        if let Some(p) = self.priority {
            write!(f, "priority={p},")?;
        }
        write!(f, "table={}", self.table)
    }
}

/// A number in decimal or `0x` hexadecimal.
fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A CIDR, or an address alone (a host prefix).
fn prefix(s: &str) -> Option<IpNet> {
    s.parse()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

impl FromStr for RuleSpec {
    type Err = Error;
    /// `from=CIDR[,to=CIDR][,fwmark=M[/MASK]][,iif=NAME][,priority=P],table=N` (keys in any
    /// order, each once; an address without a prefix length is a host prefix; marks in decimal
    /// or `0x` hex), validated.
    fn from_str(s: &str) -> Result<Self> {
        const SYNTAX: &str =
            "expected from=CIDR[,to=CIDR][,fwmark=M[/MASK]][,iif=NAME][,priority=P],table=N";
        let bad = |reason| Error::invalid("rule", s, reason);
        let mut r = RuleSpec::lookup(0);
        let mut table = None;
        let mut seen: Vec<&str> = Vec::new();
        for p in s.split(',') {
            let Some((k, v)) = p.split_once('=') else {
                return Err(bad(SYNTAX));
            };
            if seen.contains(&k) {
                return Err(bad("a key is given twice"));
            }
            seen.push(k);
            match k {
                "from" => r.from = Some(prefix(v).ok_or_else(|| bad("from is not a CIDR"))?),
                "to" => r.to = Some(prefix(v).ok_or_else(|| bad("to is not a CIDR"))?),
                "fwmark" => {
                    let (m, mask) = match v.split_once('/') {
                        Some((m, mask)) => (m, Some(mask)),
                        None => (v, None),
                    };
                    let mark = number(m).ok_or_else(|| bad("fwmark is not a number"))?;
                    let mask = mask
                        .map(|x| number(x).ok_or_else(|| bad("fwmark mask is not a number")))
                        .transpose()?;
                    r.fwmark = Some(Fwmark { mark, mask });
                }
                "iif" => r.iif = Some(v.to_string()),
                "priority" => {
                    r.priority = Some(v.parse().map_err(|_| bad("priority is not a number"))?)
                }
                "table" => table = Some(v.parse().map_err(|_| bad("table is not a number"))?),
                _ => return Err(bad(SYNTAX)),
            }
        }
        r.table = table.ok_or_else(|| bad("table= is required"))?;
        r.validate()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        match s.parse::<RuleSpec>() {
            Ok(r) => panic!("{s} accepted as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_selector_and_prints_it_back() {
        let r: RuleSpec =
            "iif=eth1,table=300,from=10.0.0.0/8,to=10.1.0.0/16,fwmark=16/0xf0,priority=7"
                .parse()
                .unwrap();
        assert_eq!(r.from, Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(r.to, Some("10.1.0.0/16".parse().unwrap()));
        assert_eq!(
            r.fwmark,
            Some(Fwmark {
                mark: 16,
                mask: Some(0xf0)
            })
        );
        assert_eq!(
            (r.iif.as_deref(), r.priority, r.table),
            (Some("eth1"), Some(7), 300)
        );
        assert_eq!(r, r.to_string().parse().unwrap());
        let host: RuleSpec = "from=fd00::5,table=100".parse().unwrap();
        assert_eq!(host.from, Some("fd00::5/128".parse().unwrap()));
        assert!(host.is_ipv6());
        // main may be looked up (an exemption ahead of other rules); a mark alone with a family.
        "to=10.0.0.0/8,table=254,priority=100"
            .parse::<RuleSpec>()
            .unwrap();
        "from=0.0.0.0/0,fwmark=0x1,table=5"
            .parse::<RuleSpec>()
            .unwrap();
        "from=0.0.0.0/0,fwmark=0/0xff,table=5"
            .parse::<RuleSpec>()
            .unwrap();
        "from=0.0.0.0/0,iif=lo,table=5".parse::<RuleSpec>().unwrap();
    }

    #[test]
    fn refuses_with_the_reason() {
        for (s, why) in [
            ("from=10.0.0.2/32,table=0", "unspecified"),
            ("from=10.0.0.2/32,table=253", "default table"),
            ("from=10.0.0.2/32,table=255", "local table"),
            ("from=10.0.0.2/32", "table= is required"),
            ("table=100", "needs from= or to="),
            ("fwmark=1,table=100", "needs from= or to="),
            ("from=10.0.0.0/8,to=fd00::/64,table=100", "differ in family"),
            ("from=10.0.0.1/8,table=100", "host bits"),
            ("from=10.0.0.2/32,priority=0,table=100", "priority 0"),
            ("from=0.0.0.0/0,table=100", "matches every packet"),
            ("from=::/0,to=::/0,table=100", "matches every packet"),
            (
                "from=0.0.0.0/0,fwmark=0,table=100",
                "fwmark 0 without a mask",
            ),
            ("from=0.0.0.0/0,fwmark=1/0,table=100", "mask 0"),
            (
                "from=0.0.0.0/0,fwmark=0x100/0xff,table=100",
                "outside its mask",
            ),
            ("from=10.0.0.2,iif=a/b,table=100", "rule iif name"),
            ("from=10.0.0.2,from=10.0.0.3,table=100", "twice"),
            ("from=10.0.0.2,lookup=100", "expected from="),
            ("from=10.0.0.2,table=x", "not a number"),
            ("from=nowhere,table=100", "not a CIDR"),
            ("from=10.0.0.2,fwmark=z,table=100", "not a number"),
            ("from=10.0.0.2,table=100,", "expected from="),
        ] {
            let e = err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn a_rule_given_twice_is_refused() {
        let a = RuleSpec::lookup(100).from("10.0.0.2/32".parse().unwrap());
        let b = a.clone().priority(5);
        check_distinct(&[a.clone(), b.clone()]).unwrap();
        let e = check_distinct(&[a.clone(), b, a]).unwrap_err().to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn old_records_and_new_ones_read_back() {
        let r = RuleSpec::lookup(100)
            .from("10.0.0.2/32".parse().unwrap())
            .iif("eth1");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<RuleSpec>(&json).unwrap(), r);
        let minimal: RuleSpec = serde_json::from_str(r#"{"to":"10.0.0.0/8","table":7}"#).unwrap();
        assert_eq!(
            minimal,
            RuleSpec::lookup(7).to("10.0.0.0/8".parse().unwrap())
        );
    }
}
