//! ICC off and legacy links: table `bridge berth`, which filters frames bridged between the
//! ports of one bridge.
//!
//! On a network with ICC off, containers do not reach each other — except that a container
//! linked to another (`--link`) may open connections to the other's exposed ports, and the
//! answers come back (Docker's two stateless rules per exposed port). The kernel's bridge-port
//! isolation cannot make such per-pair exceptions, so ICC off is a firewall matter here:
//!
//! - the bridge driver gives every container port of an ICC-off network the device group
//!   [`ICC_OFF_PORT_GROUP`] (instead of the `isolated` flag; with anti-spoofing too, its
//!   guarded form, which the rule matches by masking the guard bit);
//! - the base chain jumps to `icc-off` for frames between two such ports — exactly the pairs
//!   isolation used to separate; frames to or from the bridge itself (the gateway, the host,
//!   published ports, hairpin) never pass the bridge `forward` hook, and ports the admin added
//!   to the bridge keep group 0, as they were not isolated either;
//! - `icc-off` lets ARP and IPv6 neighbour discovery through (neither carries data), then the
//!   link flows, found in one set per address family, and drops everything else.
//!
//! ```text
//! table bridge berth                    created with the first ICC-off network (no hook before)
//! set links4 { ipv4_addr . ipv4_addr . inet_proto . inet_service }   FROM . TO . PROTO . PORT
//! set links6 { ipv6_addr . ipv6_addr . inet_proto . inet_service }
//! chain forward (filter, forward, 0)   iifgroup G oifgroup G jump icc-off
//! chain icc-off
//!   meta protocol arp accept
//!   ip saddr . ip daddr . meta l4proto . th dport @links4 accept     FROM → TO:PORT
//!   ip daddr . ip saddr . meta l4proto . th sport @links4 accept     TO:PORT → FROM (answers)
//!   ip6 … @links6 accept (both directions)
//!   icmpv6 type nd-neighbor-solicit accept
//!   icmpv6 type nd-neighbor-advert accept
//!   drop
//! ```
//!
//! The answer direction looks the *same* element up with the addresses swapped and the source
//! port, so one element per (from, to, proto, port) carries both directions. The rule count is
//! fixed: links are set elements (one per exposed port of a linked container), networks add
//! nothing to this table. The chain is stateless like Docker's rules, so non-first IP fragments
//! of a link flow (no transport header) are dropped.

use std::net::IpAddr;

use super::facts::{LinkRule, NetworkRules};
use super::ops::*;
use crate::network::ICC_OFF_PORT_GROUP;

/// Link flows between IPv4 addresses.
pub const SET_LINKS4: &str = "links4";
/// Link flows between IPv6 addresses.
pub const SET_LINKS6: &str = "links6";
/// The bridge family's base chain.
pub const CHAIN_BRIDGE_FORWARD: &str = "forward";
/// Frames between two ports of ICC-off networks.
pub const CHAIN_ICC_OFF: &str = "icc-off";

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;

fn links_key(v6: bool) -> DataType {
    let addr = if v6 { TYPE_IPV6_ADDR } else { TYPE_IPV4_ADDR };
    DataType {
        id: concat(
            concat(concat(addr, addr), TYPE_INET_PROTO),
            TYPE_INET_SERVICE,
        ),
        len: if v6 { 40 } else { 16 },
    }
}

fn cmp(sreg: u32, data: Vec<u8>) -> Expr {
    Expr::Cmp {
        sreg,
        op: CmpOp::Eq,
        data,
    }
}

fn protocol(ethertype: u16) -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::Protocol,
            dreg: REG_1,
        },
        cmp(REG_1, ethertype.to_be_bytes().to_vec()),
    ]
}

/// `ip saddr . ip daddr . meta l4proto . th dport @links4 accept`, or with the addresses
/// swapped and `th sport` (`answer`): the answers of a link flow.
fn link_flow(v6: bool, answer: bool) -> Vec<Expr> {
    let (ethertype, saddr, alen, set) = if v6 {
        (ETH_P_IPV6, 8, 16, SET_LINKS6)
    } else {
        (ETH_P_IP, 12, 4, SET_LINKS4)
    };
    let (first, second) = if answer {
        (saddr + alen, saddr)
    } else {
        (saddr, saddr + alen)
    };
    let regs = alen / 4;
    let mut v = protocol(ethertype).to_vec();
    v.extend([
        Expr::Payload {
            base: PayloadBase::Network,
            offset: first,
            len: alen,
            dreg: REG32_0,
        },
        Expr::Payload {
            base: PayloadBase::Network,
            offset: second,
            len: alen,
            dreg: REG32_0 + regs,
        },
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG32_0 + 2 * regs,
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: if answer { 0 } else { 2 },
            len: 2,
            dreg: REG32_0 + 2 * regs + 1,
        },
        Expr::Member { set, sreg: REG32_0 },
        Expr::Accept,
    ]);
    v
}

/// `icmpv6 type TYPE accept`.
fn neighbour_discovery(icmp_type: u8) -> Vec<Expr> {
    let mut v = protocol(ETH_P_IPV6).to_vec();
    v.extend([
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG_1,
        },
        cmp(REG_1, vec![IPPROTO_ICMPV6]),
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 0,
            len: 1,
            dreg: REG_1,
        },
        cmp(REG_1, vec![icmp_type]),
        Expr::Accept,
    ]);
    v
}

/// The rules of chain `icc-off`.
pub(super) fn icc_off_rules() -> Vec<Vec<Expr>> {
    let mut arp = protocol(ETH_P_ARP).to_vec();
    arp.push(Expr::Accept);
    vec![
        arp,
        link_flow(false, false),
        link_flow(false, true),
        link_flow(true, false),
        link_flow(true, true),
        neighbour_discovery(ND_NEIGHBOR_SOLICIT),
        neighbour_discovery(ND_NEIGHBOR_ADVERT),
        vec![Expr::Drop],
    ]
}

/// Table `bridge berth`: its sets, chains and rules. Sent with `exclusive`, like
/// [`super::base`], so that only the first caller adds the rules.
pub fn bridge_base() -> Vec<Op> {
    // A port of an ICC-off network that also has anti-spoofing carries the guarded form of
    // the mark: compare without that bit.
    let group = |key| {
        [
            Expr::Meta { key, dreg: REG_1 },
            Expr::Mask {
                reg: REG_1,
                mask: (!crate::link_marks::GUARDED_BIT).to_ne_bytes().to_vec(),
            },
            cmp(REG_1, ICC_OFF_PORT_GROUP.to_ne_bytes().to_vec()),
        ]
    };
    let mut forward = group(MetaKey::IifGroup).to_vec();
    forward.extend(group(MetaKey::OifGroup));
    forward.push(Expr::Jump(CHAIN_ICC_OFF.into()));
    let mut ops = vec![
        Op::AddTable { exclusive: true },
        Op::AddMap {
            name: SET_LINKS4,
            key: links_key(false),
            data: MapData::Nothing,
        },
        Op::AddMap {
            name: SET_LINKS6,
            key: links_key(true),
            data: MapData::Nothing,
        },
        Op::AddChain {
            name: CHAIN_ICC_OFF.into(),
            base: None,
        },
        Op::AddChain {
            name: CHAIN_BRIDGE_FORWARD.into(),
            base: Some(BaseChain {
                kind: ChainKind::Filter,
                hook: Hook::Forward,
                priority: 0,
            }),
        },
    ];
    ops.extend(
        icc_off_rules()
            .into_iter()
            .map(|exprs| Op::AddRule {
                chain: CHAIN_ICC_OFF.into(),
                exprs,
            })
            .chain([Op::AddRule {
                chain: CHAIN_BRIDGE_FORWARD.into(),
                exprs: forward,
            }]),
    );
    ops.into_iter().map(Op::bridge).collect()
}

/// Whether table `bridge berth` is needed for `nets`: some network has ICC off.
pub fn needed(nets: &[NetworkRules]) -> bool {
    nets.iter().any(|n| !n.icc)
}

/// The set and key of a link, or `None` when its two addresses are of different families.
pub fn link_key(l: &LinkRule) -> Option<(&'static str, Vec<u8>)> {
    let tail = {
        let p = l.port.to_be_bytes();
        [l.proto.number(), 0, 0, 0, p[0], p[1], 0, 0]
    };
    let (set, mut k) = match (l.from, l.to) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (SET_LINKS4, [a.octets(), b.octets()].concat()),
        (IpAddr::V6(a), IpAddr::V6(b)) => (SET_LINKS6, [a.octets(), b.octets()].concat()),
        _ => return None,
    };
    k.extend(tail);
    Some((set, k))
}

/// The links of `links` the firewall enforces, with their set and key, without duplicates:
/// those whose two addresses are in the subnets of one ICC-off network of `nets` (on a network
/// with ICC on everything is allowed anyway, and no `bridge berth` table may exist).
pub fn link_elements<'a>(
    nets: &[NetworkRules],
    links: impl IntoIterator<Item = &'a LinkRule>,
) -> Vec<(&'static str, Vec<u8>, &'a LinkRule)> {
    let icc_off: Vec<&NetworkRules> = nets.iter().filter(|n| !n.icc).collect();
    let mut seen = std::collections::HashSet::new();
    let mut v = Vec::new();
    for l in links {
        let enforced = icc_off.iter().any(|n| {
            n.subnets.iter().any(|s| s.contains(&l.from))
                && n.subnets.iter().any(|s| s.contains(&l.to))
        });
        if let (true, Some((set, k))) = (enforced, link_key(l))
            && seen.insert(k.clone())
        {
            v.push((set, k, l));
        }
    }
    v
}

/// Adds the elements of `links` (idempotent: present ones stay), one op per set.
pub fn links_add(nets: &[NetworkRules], links: &[LinkRule]) -> Vec<Op> {
    let elems = link_elements(nets, links);
    [SET_LINKS4, SET_LINKS6]
        .into_iter()
        .filter_map(|set| {
            let elems: Vec<(Vec<u8>, ElemData)> = elems
                .iter()
                .filter(|(s, ..)| *s == set)
                .map(|(_, k, _)| (k.clone(), ElemData::None))
                .collect();
            (!elems.is_empty()).then(|| Op::bridge(Op::EnsureElems { map: set, elems }))
        })
        .collect()
}

/// Removes the elements of `links`; absent ones are no error (each is ensured, then deleted,
/// in the same transaction).
pub fn links_remove(nets: &[NetworkRules], links: &[LinkRule]) -> Vec<Op> {
    let mut ops = links_add(nets, links);
    let dels: Vec<Op> = ops
        .iter()
        .filter_map(|op| match op.in_family().1 {
            Op::EnsureElems { map, elems } => Some(Op::bridge(Op::DelElems {
                map,
                keys: elems.iter().map(|(k, _)| k.clone()).collect(),
            })),
            _ => None,
        })
        .collect();
    ops.extend(dels);
    ops
}

/// How `check` names a link element.
pub fn describe(l: &LinkRule) -> String {
    let to = match l.to {
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("link {} -> {to}:{}/{}", l.from, l.port, l.proto)
}
