//! Anti-spoofing (opt-in per bridge network): a container may send only from its own MAC and
//! addresses, and ARP / IPv6 neighbour discovery only for them. Table `bridge berth`.
//!
//! Frames a container sends to the gateway or the host never pass the bridge `forward` hook,
//! so the guard sits on `prerouting` (every frame a port receives, before the bridge learns
//! its source or decides where it goes) and on `input` for the IEEE link-local destinations
//! (`01:80:c2:00:00:0X`), which the bridge hands to its input hook without prerouting and
//! learns the source of.
//!
//! The rules depend on nothing but the table; which ports are guarded is their device group,
//! and per-container facts are elements:
//!
//! ```text
//! set spoof4 { ifname . ether_addr . ipv4_addr }            PORT . MAC . IPv4 of each container
//! set spoof6 { ifname . ether_addr . ipv6_addr }            PORT . MAC . IPv6 and link-local
//! chain spoof-pre (filter, prerouting, -300)
//!   iifgroup & ~ICC_OFF_BIT == PORT_GUARDED jump anti-spoof
//! chain spoof-in (filter, input, -300)
//!   iifgroup & ~ICC_OFF_BIT == PORT_GUARDED
//!     ether daddr & ff:ff:ff:ff:ff:f0 == 01:80:c2:00:00:00 jump anti-spoof
//! chain anti-spoof
//!   ether type ip   iifname . ether saddr . ip saddr @spoof4 accept
//!   ether type arp  arp htype 1 ptype ip hlen 6 plen 4
//!                   iifname . ether saddr . arp saddr ip @spoof4
//!                   iifname . arp saddr ether . arp saddr ip @spoof4 accept
//!   ether type ip6 icmpv6 nd-neighbor-advert  (source own) target own, no option          accept
//!   ether type ip6 icmpv6 nd-neighbor-advert  (source own) target own, TLLA own MAC only   accept
//!   ether type ip6 icmpv6 nd-neighbor-advert  drop
//!   ether type ip6 icmpv6 nd-neighbor-solicit ip6 saddr :: target own                      accept
//!   ether type ip6 icmpv6 nd-neighbor-solicit (source own), no option                      accept
//!   ether type ip6 icmpv6 nd-neighbor-solicit (source own), SLLA own MAC only              accept
//!   ether type ip6 icmpv6 nd-neighbor-solicit drop
//!   ether type ip6 icmpv6 nd-router-advert | nd-redirect drop
//!   ether type ip6  iifname . ether saddr . ip6 saddr @spoof6 accept
//!   drop
//! ```
//!
//! Which ports: the bridge driver gives each container port of an anti-spoofing network the
//! guarded form of berth's port mark as device group (`PORT_GUARDED`, or
//! `PORT_ICC_OFF_GUARDED` with ICC off; see [`crate::link_marks`]), in the request that
//! creates the veth. So a port is guarded from the instant it exists — before its elements
//! are added it can send nothing — no per-network element is needed, and ports the admin
//! added to a bridge berth adopted (group 0) are never guarded.
//! The ether type is read from the frame (`ether type`, which sees a VLAN tag even when the
//! NIC stripped it), so VLAN-tagged frames and every other ether type are dropped.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::facts::{EndpointRules, NetworkRules, PortGuard, ifname_key};
use super::ops::*;
use crate::link_marks;

/// The table of the guard (family bridge), made only while an anti-spoofing network exists.
pub const TABLE_GUARD: &str = "berth-spoof";
/// `PORT . MAC . IPv4` of each guarded container port.
pub const SET_SPOOF4: &str = "spoof4";
/// `PORT . MAC . IPv6` of each guarded container port (its address and its link-local).
pub const SET_SPOOF6: &str = "spoof6";
/// The prerouting base chain of the guard.
pub const CHAIN_SPOOF_PRE: &str = "spoof-pre";
/// The input base chain of the guard (IEEE link-local destinations).
pub const CHAIN_SPOOF_IN: &str = "spoof-in";
/// What a guarded port may send.
pub const CHAIN_ANTI_SPOOF: &str = "anti-spoof";

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
const ND_ROUTER_ADVERT: u8 = 134;
const ND_NEIGHBOR_SOLICIT: u8 = 135;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_REDIRECT: u8 = 137;
const TYPE_ETHER_ADDR: u32 = 9;

fn key(v6: bool) -> DataType {
    let addr = if v6 { TYPE_IPV6_ADDR } else { TYPE_IPV4_ADDR };
    DataType {
        id: concat(concat(TYPE_IFNAME, TYPE_ETHER_ADDR), addr),
        len: if v6 { 40 } else { 28 },
    }
}

fn cmp(sreg: u32, data: Vec<u8>) -> Expr {
    Expr::Cmp {
        sreg,
        op: CmpOp::Eq,
        data,
    }
}

fn load(base: PayloadBase, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr::Payload {
        base,
        offset,
        len,
        dreg,
    }
}

/// `ether type T`, read from the frame (a stripped VLAN tag is put back by the kernel).
fn ether_type(t: u16) -> Vec<Expr> {
    vec![
        load(PayloadBase::Link, 12, 2, REG_1),
        cmp(REG_1, t.to_be_bytes().to_vec()),
    ]
}

/// `iifname . MAC . ADDR @set`, the MAC and address read from the given places.
fn member(mac: (PayloadBase, u32), addr: (PayloadBase, u32), v6: bool) -> Vec<Expr> {
    let (alen, set) = if v6 {
        (16, SET_SPOOF6)
    } else {
        (4, SET_SPOOF4)
    };
    vec![
        Expr::Meta {
            key: MetaKey::IifName,
            dreg: REG32_0,
        },
        load(mac.0, mac.1, 6, REG32_0 + 4),
        load(addr.0, addr.1, alen, REG32_0 + 6),
        Expr::Member { set, sreg: REG32_0 },
    ]
}

const ETHER_SADDR: (PayloadBase, u32) = (PayloadBase::Link, 6);
const IP_SADDR: (PayloadBase, u32) = (PayloadBase::Network, 12);
const IP6_SADDR: (PayloadBase, u32) = (PayloadBase::Network, 8);
const ND_TARGET: (PayloadBase, u32) = (PayloadBase::Transport, 8);
const ND_OPTION_LLADDR: (PayloadBase, u32) = (PayloadBase::Transport, 26);

/// `ether type ip6 meta l4proto icmpv6 icmpv6 type T`.
fn icmpv6(t: u8) -> Vec<Expr> {
    let mut v = ether_type(ETH_P_IPV6);
    v.extend([
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG_1,
        },
        cmp(REG_1, vec![IPPROTO_ICMPV6]),
        load(PayloadBase::Transport, 0, 1, REG_1),
        cmp(REG_1, vec![t]),
    ]);
    v
}

/// `ip6 length N` (the payload length: the ND message and its options, no extension header).
fn ip6_length(n: u16) -> Vec<Expr> {
    vec![
        load(PayloadBase::Network, 4, 2, REG_1),
        cmp(REG_1, n.to_be_bytes().to_vec()),
    ]
}

/// The first ND option is a link-layer address option of `kind` (1 source, 2 target).
fn lladdr_option(kind: u8) -> Vec<Expr> {
    vec![
        load(PayloadBase::Transport, 24, 2, REG_1),
        cmp(REG_1, vec![kind, 1]),
    ]
}

fn with(mut a: Vec<Expr>, parts: impl IntoIterator<Item = Vec<Expr>>) -> Vec<Expr> {
    for p in parts {
        a.extend(p);
    }
    a
}

/// The rules of chain `anti-spoof`.
pub(super) fn anti_spoof_rules() -> Vec<Vec<Expr>> {
    let accept = || vec![Expr::Accept];
    let drop = || vec![Expr::Drop];
    let own6 = || member(ETHER_SADDR, IP6_SADDR, true);
    let arp_header = vec![
        load(PayloadBase::Network, 0, 6, REG_1),
        cmp(REG_1, vec![0, 1, 8, 0, 6, 4]),
    ];
    vec![
        with(
            ether_type(ETH_P_IP),
            [member(ETHER_SADDR, IP_SADDR, false), accept()],
        ),
        with(
            ether_type(ETH_P_ARP),
            [
                arp_header,
                member(ETHER_SADDR, (PayloadBase::Network, 14), false),
                member((PayloadBase::Network, 8), (PayloadBase::Network, 14), false),
                accept(),
            ],
        ),
        with(
            icmpv6(ND_NEIGHBOR_ADVERT),
            [
                ip6_length(24),
                own6(),
                member(ETHER_SADDR, ND_TARGET, true),
                accept(),
            ],
        ),
        with(
            icmpv6(ND_NEIGHBOR_ADVERT),
            [
                ip6_length(32),
                lladdr_option(2),
                own6(),
                member(ND_OPTION_LLADDR, ND_TARGET, true),
                accept(),
            ],
        ),
        with(icmpv6(ND_NEIGHBOR_ADVERT), [drop()]),
        with(
            icmpv6(ND_NEIGHBOR_SOLICIT),
            [
                vec![
                    load(PayloadBase::Network, 8, 16, REG_1),
                    cmp(REG_1, vec![0; 16]),
                ],
                member(ETHER_SADDR, ND_TARGET, true),
                accept(),
            ],
        ),
        with(
            icmpv6(ND_NEIGHBOR_SOLICIT),
            [ip6_length(24), own6(), accept()],
        ),
        with(
            icmpv6(ND_NEIGHBOR_SOLICIT),
            [
                ip6_length(32),
                lladdr_option(1),
                own6(),
                member(ND_OPTION_LLADDR, IP6_SADDR, true),
                accept(),
            ],
        ),
        with(icmpv6(ND_NEIGHBOR_SOLICIT), [drop()]),
        with(icmpv6(ND_ROUTER_ADVERT), [drop()]),
        with(icmpv6(ND_REDIRECT), [drop()]),
        with(ether_type(ETH_P_IPV6), [own6(), accept()]),
        drop(),
    ]
}

/// `iifgroup & ~ICC_OFF_BIT == PORT_GUARDED`: a container port of an anti-spoofing network
/// (ICC on or off).
fn guarded_port() -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::IifGroup,
            dreg: REG_1,
        },
        Expr::Mask {
            reg: REG_1,
            mask: (!link_marks::ICC_OFF_BIT).to_ne_bytes().to_vec(),
        },
        cmp(REG_1, link_marks::PORT_GUARDED.to_ne_bytes().to_vec()),
    ]
}

/// Table `bridge berth-spoof`: its sets, chains and rules. Sent with `exclusive`, like
/// [`super::base`], so that only the first caller adds the rules.
pub fn base() -> Vec<Op> {
    let mut ops = vec![
        Op::AddTable { exclusive: true },
        Op::AddMap {
            name: SET_SPOOF4,
            key: key(false),
            data: MapData::Nothing,
        },
        Op::AddMap {
            name: SET_SPOOF6,
            key: key(true),
            data: MapData::Nothing,
        },
        Op::AddChain {
            name: CHAIN_ANTI_SPOOF.into(),
            base: None,
        },
        Op::AddChain {
            name: CHAIN_SPOOF_PRE.into(),
            base: Some(BaseChain {
                kind: ChainKind::Filter,
                hook: Hook::Prerouting,
                priority: -300,
            }),
        },
        Op::AddChain {
            name: CHAIN_SPOOF_IN.into(),
            base: Some(BaseChain {
                kind: ChainKind::Filter,
                hook: Hook::Input,
                priority: -300,
            }),
        },
    ];
    ops.extend(anti_spoof_rules().into_iter().map(|exprs| Op::AddRule {
        chain: CHAIN_ANTI_SPOOF.into(),
        exprs,
    }));
    let jump = || Expr::Jump(CHAIN_ANTI_SPOOF.into());
    ops.push(Op::AddRule {
        chain: CHAIN_SPOOF_PRE.into(),
        exprs: with(guarded_port(), [vec![jump()]]),
    });
    ops.push(Op::AddRule {
        chain: CHAIN_SPOOF_IN.into(),
        exprs: with(
            guarded_port(),
            [vec![
                load(PayloadBase::Link, 0, 6, REG_1),
                Expr::Mask {
                    reg: REG_1,
                    mask: vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xf0],
                },
                cmp(REG_1, vec![0x01, 0x80, 0xc2, 0, 0, 0]),
                jump(),
            ]],
        ),
    });
    ops.into_iter().map(Op::guard).collect()
}

/// Whether the guard is needed for `nets`: some network has anti-spoofing on.
pub fn needed(nets: &[NetworkRules]) -> bool {
    nets.iter().any(|n| n.anti_spoofing)
}

/// The IPv6 link-local address the kernel gives an interface with this MAC (EUI-64,
/// `addr_gen_mode` 0, the default).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 2,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

fn elem_key(g: &PortGuard, addr: &[u8]) -> Vec<u8> {
    let mut k = ifname_key(&g.port);
    k.extend(g.mac);
    k.extend([0, 0]);
    k.extend(addr);
    k
}

/// The elements of a guarded endpoint: (set, key, what `check` calls it). Its IPv4 address,
/// its IPv6 address and its link-local, each with its port and MAC.
pub fn endpoint_elements(e: &EndpointRules) -> Vec<(&'static str, Vec<u8>, String)> {
    let Some(g) = &e.guard else {
        return Vec::new();
    };
    let what = |ip: &dyn std::fmt::Display| {
        format!(
            "anti-spoofing of {} on port {} ({})",
            ip,
            g.port,
            crate::mac::MacAddr(g.mac)
        )
    };
    let v4 = |ip: Ipv4Addr| (SET_SPOOF4, elem_key(g, &ip.octets()), what(&ip));
    let v6 = |ip: Ipv6Addr| (SET_SPOOF6, elem_key(g, &ip.octets()), what(&ip));
    let mut v = vec![v4(e.ip)];
    v.extend(e.ip6.map(v6));
    v.push(v6(link_local(g.mac)));
    v
}

/// Adds the elements of `eps` (idempotent), one op per set.
pub fn endpoints_add<'a>(eps: impl IntoIterator<Item = &'a EndpointRules>) -> Vec<Op> {
    let all: Vec<_> = eps.into_iter().flat_map(endpoint_elements).collect();
    [SET_SPOOF4, SET_SPOOF6]
        .into_iter()
        .filter_map(|set| {
            let elems: Vec<(Vec<u8>, ElemData)> = all
                .iter()
                .filter(|(s, ..)| *s == set)
                .map(|(_, k, _)| (k.clone(), ElemData::None))
                .collect();
            (!elems.is_empty()).then(|| Op::guard(Op::EnsureElems { map: set, elems }))
        })
        .collect()
}

/// Removes the elements of `e`; absent ones are no error (ensured, then deleted, in one
/// transaction).
pub fn endpoint_remove(e: &EndpointRules) -> Vec<Op> {
    let mut ops = endpoints_add([e]);
    let dels: Vec<Op> = ops
        .iter()
        .filter_map(|op| match op.in_family().1 {
            Op::EnsureElems { map, elems } => Some(Op::guard(Op::DelElems {
                map,
                keys: elems.iter().map(|(k, _)| k.clone()).collect(),
            })),
            _ => None,
        })
        .collect();
    ops.extend(dels);
    ops
}
