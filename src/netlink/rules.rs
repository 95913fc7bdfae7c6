//! Policy routing through route-netlink: routing rules (`ip rule add|del|show`, `RTM_NEWRULE`,
//! `RTM_DELRULE`, `RTM_GETRULE`) as [`crate::RuleSpec`]s, and the table of a route in a table
//! other than main (`RTA_TABLE` above 255). The request values and answers of
//! [`super::Kernel::rule`] and [`super::Kernel::rules`], their netlink encoding (used by
//! [`super::RtKernel`]) and the builders of [`Netlink::rule`].

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

use super::Netlink;
use super::kernel::Family;
use crate::error::{Error, Result};
use crate::rule::{Fwmark, RuleSpec};

/// What to do with a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOp {
    /// `ip rule add` (EEXIST when the very same rule exists).
    Add,
    /// `ip rule del`: the first rule matching every selector given (and the priority, when
    /// given); a rule already gone is fine.
    Delete,
}

/// One routing rule of a netns, as listed (`ip rule show`, `ip -6 rule show`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Its family (a rule without `from`/`to`, such as the kernel's own, has no other trace
    /// of it).
    pub family: Family,
    /// What it matches and looks up; `priority` is always set (the kernel's), a mark's mask
    /// is `None` when it is all ones, and `table` is 0 for a rule that looks up nothing.
    pub rule: RuleSpec,
    /// Whether it looks up a table (`FR_ACT_TO_TBL`), rather than e.g. `blackhole`.
    pub lookup: bool,
}

impl RuleInfo {
    /// Whether this listed rule is `spec`: same family, selectors and table, and the same
    /// priority when `spec` names one.
    pub fn is(&self, spec: &RuleSpec) -> bool {
        let mask = |m: Option<Fwmark>| m.map(|m| (m.mark, m.mask.unwrap_or(u32::MAX)));
        let any = |n: Option<IpNet>| n.filter(|n| n.prefix_len() > 0);
        let family = if spec.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        };
        self.lookup
            && self.family == family
            && any(self.rule.from) == any(spec.from)
            && any(self.rule.to) == any(spec.to)
            && mask(self.rule.fwmark) == mask(spec.fwmark)
            && self.rule.iif == spec.iif
            && self.rule.table == spec.table
            && spec.priority.is_none_or(|p| self.rule.priority == Some(p))
    }
}

/// The netlink message of `spec` (as `ip rule add|del` sends it): family and lookup action
/// in the header, the table there when below 256 and else in `FRA_TABLE`, a prefix of
/// length 0 left out (`from all`).
pub fn rule_message(spec: &RuleSpec) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = if spec.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    msg.header.action = RuleAction::ToTable;
    if spec.table < 256 {
        msg.header.table = spec.table as u8;
    } else {
        msg.header.table = 0;
        msg.attributes.push(RuleAttribute::Table(spec.table));
    }
    if let Some(n) = spec.from.filter(|n| n.prefix_len() > 0) {
        msg.header.src_len = n.prefix_len();
        msg.attributes.push(RuleAttribute::Source(n.addr()));
    }
    if let Some(n) = spec.to.filter(|n| n.prefix_len() > 0) {
        msg.header.dst_len = n.prefix_len();
        msg.attributes.push(RuleAttribute::Destination(n.addr()));
    }
    if let Some(m) = spec.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(m.mark));
        if let Some(mask) = m.mask {
            msg.attributes.push(RuleAttribute::FwMask(mask));
        }
    }
    if let Some(i) = &spec.iif {
        msg.attributes.push(RuleAttribute::Iifname(i.clone()));
    }
    if let Some(p) = spec.priority {
        msg.attributes.push(RuleAttribute::Priority(p));
    }
    msg
}

/// A listed rule message, read back.
pub fn rule_info(msg: &RuleMessage) -> RuleInfo {
    let family = if msg.header.family == AddressFamily::Inet6 {
        Family::V6
    } else {
        Family::V4
    };
    let prefix = |a: &IpAddr, len: u8| IpNet::new(*a, len).ok();
    let mut rule = RuleSpec::lookup(u32::from(msg.header.table));
    rule.priority = Some(0);
    let (mut mark, mut mask) = (None, None);
    for a in &msg.attributes {
        match a {
            RuleAttribute::Source(ip) => rule.from = prefix(ip, msg.header.src_len),
            RuleAttribute::Destination(ip) => rule.to = prefix(ip, msg.header.dst_len),
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::Iifname(i) => rule.iif = Some(i.clone()),
            RuleAttribute::Priority(p) => rule.priority = Some(*p),
            RuleAttribute::Table(t) => rule.table = *t,
            _ => {}
        }
    }
    // The kernel lists a mask whenever there is a mark (all ones for a plain one).
    if mark.is_some_and(|m| m != 0) || mask.is_some_and(|m| m != 0) {
        rule.fwmark = Some(Fwmark {
            mark: mark.unwrap_or(0),
            mask: mask.filter(|m| *m != u32::MAX),
        });
    }
    RuleInfo {
        family,
        rule,
        lookup: msg.header.action == RuleAction::ToTable,
    }
}

/// Puts a route message into routing table `table` (as `ip route … table N` does): in the
/// header when below 256, else `RT_TABLE_UNSPEC` there and the id in `RTA_TABLE`.
pub fn set_route_table(msg: &mut RouteMessage, table: u32) {
    use rtnetlink::packet_route::route::RouteAttribute;
    msg.attributes
        .retain(|a| !matches!(a, RouteAttribute::Table(_)));
    if table < 256 {
        msg.header.table = table as u8;
    } else {
        msg.header.table = 0;
        msg.attributes.push(RouteAttribute::Table(table));
    }
}

/// `ip rule add|del` over `handle` (see [`super::RtKernel`]); an error names the rule.
pub(super) async fn execute(handle: &rtnetlink::Handle, op: RuleOp, spec: &RuleSpec) -> Result<()> {
    let msg = rule_message(spec);
    let res = match op {
        RuleOp::Add => {
            let mut req = handle.rule().add();
            *req.message_mut() = msg;
            req.execute().await
        }
        RuleOp::Delete => handle.rule().del(msg).execute().await,
    };
    match res {
        Ok(()) => Ok(()),
        Err(e)
            if op == RuleOp::Delete
                && (super::rt::is_errno(&e, libc::ENOENT)
                    || super::rt::is_errno(&e, libc::ESRCH)) =>
        {
            Ok(())
        }
        Err(e) => {
            let what = match op {
                RuleOp::Add => "add rule",
                RuleOp::Delete => "delete rule",
            };
            Err(Error::netlink(what, spec.to_string(), super::rt::to_io(e)))
        }
    }
}

/// `ip rule show; ip -6 rule show` over `handle`.
pub(super) async fn dump(handle: &rtnetlink::Handle) -> Result<Vec<RuleInfo>> {
    use futures::TryStreamExt;
    let mut all = Vec::new();
    for v in [rtnetlink::IpVersion::V4, rtnetlink::IpVersion::V6] {
        let msgs: Vec<RuleMessage> = handle
            .rule()
            .get(v)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::netlink("list rules", "", super::rt::to_io(e)))?;
        all.extend(msgs.iter().map(rule_info));
    }
    Ok(all)
}

/// Rule requests of one handle ([`Netlink::rule`]).
#[derive(Debug)]
pub struct RuleOps<'a> {
    nl: &'a Netlink,
}

impl RuleOps<'_> {
    /// `ip rule add …` (EEXIST when the very same rule exists).
    pub async fn add(self, spec: &RuleSpec) -> Result<()> {
        self.nl.kernel().rule(RuleOp::Add, spec.clone()).await
    }

    /// `ip rule del …`; a rule already gone is fine.
    pub async fn del(self, spec: &RuleSpec) -> Result<()> {
        self.nl.kernel().rule(RuleOp::Delete, spec.clone()).await
    }

    /// Every rule of both families.
    pub async fn list(self) -> Result<Vec<RuleInfo>> {
        self.nl.kernel().rules().await
    }
}

impl Netlink {
    /// Routing rules (`nl.rule().add(&spec)`, `del`, `list`).
    pub fn rule(&self) -> RuleOps<'_> {
        RuleOps { nl: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_core::{Emitable, Parseable};

    /// Emits and parses back, as the kernel would see the bytes.
    fn wire(msg: &RuleMessage) -> RuleMessage {
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.emit(&mut buf);
        RuleMessage::parse(&buf[..]).unwrap()
    }

    #[test]
    fn encodes_what_ip_rule_sends() {
        let spec: RuleSpec =
            "from=10.82.0.2/32,to=10.0.0.0/8,fwmark=0x10/0xf0,iif=eth1,priority=100,table=100"
                .parse()
                .unwrap();
        let msg = rule_message(&spec);
        assert_eq!(msg.header.family, AddressFamily::Inet);
        assert_eq!(msg.header.action, RuleAction::ToTable);
        assert_eq!(
            (msg.header.table, msg.header.src_len, msg.header.dst_len),
            (100, 32, 8)
        );
        assert!(msg.attributes.contains(&RuleAttribute::FwMask(0xf0)));
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Table(_)))
        );
        let back = rule_info(&wire(&msg));
        assert_eq!(back.rule, spec);
        assert!(back.is(&spec) && back.lookup);

        // A table above 255 goes in FRA_TABLE, the header's is unspecified.
        let big = RuleSpec::lookup(70000).from("fd00:82::/64".parse().unwrap());
        let msg = rule_message(&big);
        assert_eq!(
            (msg.header.family, msg.header.table),
            (AddressFamily::Inet6, 0)
        );
        assert!(msg.attributes.contains(&RuleAttribute::Table(70000)));
        let back = rule_info(&wire(&msg));
        assert_eq!(back.family, Family::V6);
        assert_eq!(back.rule.table, 70000);
        assert!(back.is(&big), "no priority asked: any matches");
        assert!(!back.is(&big.clone().priority(5)));

        // from all: no source attribute at all.
        let all = RuleSpec::lookup(5)
            .from("0.0.0.0/0".parse().unwrap())
            .fwmark(1, None);
        let msg = rule_message(&all);
        assert_eq!(msg.header.src_len, 0);
        assert!(
            !msg.attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Source(_)))
        );
    }

    #[test]
    fn reads_the_kernels_listing() {
        // What the kernel lists for `ip rule add fwmark 7 lookup 9` (a mask of all ones) and
        // for its own `from all lookup main` at 32766.
        let mut m = RuleMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.action = RuleAction::ToTable;
        m.header.table = 9;
        m.attributes = vec![
            RuleAttribute::Table(9),
            RuleAttribute::Priority(32765),
            RuleAttribute::FwMark(7),
            RuleAttribute::FwMask(u32::MAX),
        ];
        let r = rule_info(&wire(&m));
        assert_eq!(
            r.rule.fwmark,
            Some(Fwmark {
                mark: 7,
                mask: None
            })
        );
        let spec = RuleSpec::lookup(9)
            .from("0.0.0.0/0".parse().unwrap())
            .fwmark(7, Some(u32::MAX));
        assert!(r.is(&spec), "from all and a full mask are what was asked");
        let mut main = RuleMessage::default();
        main.header.family = AddressFamily::Inet;
        main.header.action = RuleAction::ToTable;
        main.header.table = 254;
        main.attributes = vec![RuleAttribute::Table(254), RuleAttribute::Priority(32766)];
        let r = rule_info(&wire(&main));
        assert_eq!(
            (r.rule.from, r.rule.fwmark, r.rule.priority),
            (None, None, Some(32766))
        );
    }

    #[test]
    fn route_tables_above_255_go_in_rta_table() {
        use rtnetlink::packet_route::route::RouteAttribute;
        let mut msg = RouteMessage::default();
        set_route_table(&mut msg, 100);
        assert_eq!(msg.header.table, 100);
        assert!(msg.attributes.is_empty());
        set_route_table(&mut msg, 1000);
        assert_eq!(msg.header.table, 0);
        assert_eq!(msg.attributes, vec![RouteAttribute::Table(1000)]);
    }
}
