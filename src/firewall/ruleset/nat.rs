//! NAT rules: published ports (DNAT through maps) and masquerade.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use super::ops::*;
use std::net::Ipv6Addr;

use super::facts::{MAP_PORTS_ANY, MAP_PORTS_IP, MAP_PORTS6_ANY, MAP_PORTS6_IP, ifname_key};
use crate::port::PortMapping;

/// RTN_LOCAL, the `fib daddr type local` result.
const RTN_LOCAL: u32 = 2;

pub(super) const TYPE_PORTS_DATA: DataType = DataType {
    id: concat(TYPE_IPV4_ADDR, TYPE_INET_SERVICE),
    len: 8,
};

fn nfproto(proto: i32) -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![proto as u8],
        },
    ]
}

/// An address family of the published-port rules: where the destination address sits in
/// the header, how many registers it takes, which maps and which DNAT it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    fn nfproto(self) -> i32 {
        match self {
            Family::V4 => libc::NFPROTO_IPV4,
            Family::V6 => libc::NFPROTO_IPV6,
        }
    }

    /// Offset and length of the destination address in the network header.
    fn daddr(self) -> (u32, u32) {
        match self {
            Family::V4 => (16, 4),
            Family::V6 => (24, 16),
        }
    }

    /// 4-byte registers an address takes.
    fn addr_regs(self) -> u32 {
        self.daddr().1 / 4
    }

    /// The maps of ports published on one address and on all of them.
    fn maps(self) -> (&'static str, &'static str) {
        match self {
            Family::V4 => (MAP_PORTS_IP, MAP_PORTS_ANY),
            Family::V6 => (MAP_PORTS6_IP, MAP_PORTS6_ANY),
        }
    }

    /// DNAT to the address in `REG32_0…` and the port after it.
    fn dnat(self) -> Expr {
        let (addr_reg, port_reg) = (REG32_0, REG32_0 + self.addr_regs());
        match self {
            Family::V4 => Expr::Dnat4 { addr_reg, port_reg },
            Family::V6 => Expr::Dnat6 { addr_reg, port_reg },
        }
    }
}

/// `meta l4proto` into register `reg`, `th dport` into the next one.
fn l4proto_dport(reg: u32) -> [Expr; 2] {
    [
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: reg,
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: reg + 1,
        },
    ]
}

/// `dnat ip to ip daddr . meta l4proto . th dport map @pm4_ip` (IPv6: `ip6`, `@pm6_ip`, the
/// address in four registers).
pub(super) fn ports_by_address(family: Family) -> Vec<Expr> {
    let (offset, len) = family.daddr();
    let mut v = nfproto(family.nfproto()).to_vec();
    v.push(Expr::Payload {
        base: PayloadBase::Network,
        offset,
        len,
        dreg: REG32_0,
    });
    v.extend(l4proto_dport(REG32_0 + family.addr_regs()));
    v.extend([
        Expr::Lookup {
            set: family.maps().0,
            sreg: REG32_0,
            dreg: REG32_0,
        },
        family.dnat(),
    ]);
    v
}

/// `fib daddr type local dnat ip to meta l4proto . th dport map @pm4_any` (IPv6: `ip6`,
/// `@pm6_any`).
pub(super) fn ports_on_any_address(family: Family) -> Vec<Expr> {
    let mut v = nfproto(family.nfproto()).to_vec();
    v.extend([
        Expr::FibDaddrType { dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
    ]);
    v.extend(l4proto_dport(REG32_0));
    v.extend([
        Expr::Lookup {
            set: family.maps().1,
            sreg: REG32_0,
            dreg: REG32_0,
        },
        family.dnat(),
    ]);
    v
}

/// `ct status dnat` as three expressions.
fn ct_dnat() -> [Expr; 3] {
    [
        Expr::Ct {
            key: CtKey::Status,
            dreg: REG_1,
        },
        Expr::Mask {
            reg: REG_1,
            mask: 0x20u32.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
    ]
}

/// Hairpin: `oifname BRIDGE ip saddr SUBNET ct status dnat masquerade`. A container reaching
/// a published port of its own network through a host address is DNATed back into the bridge;
/// without this the answer would not return through the host's NAT (and a container reaching
/// itself would answer itself). The source must be of this network: DNATed traffic from
/// outside keeps its source.
pub(super) fn hairpin(bridge: &str, subnet: &IpNet) -> Vec<Expr> {
    let mut v = masquerade(bridge, subnet);
    v.pop();
    for e in &mut v {
        if let Expr::Cmp { op, data, .. } = e
            && *data == ifname_key(bridge)
        {
            *op = CmpOp::Eq;
        }
    }
    v.extend(ct_dnat());
    v.push(Expr::Masquerade);
    v
}

/// Published ports reached through `127.0.0.1` from the host: `ip saddr 127.0.0.0/8 ct status
/// dnat masquerade` (the bridges have `route_localnet` on so such packets may leave at all).
pub(super) fn localhost() -> Vec<Expr> {
    let mut v = nfproto(libc::NFPROTO_IPV4).to_vec();
    v.extend([
        Expr::Payload {
            base: PayloadBase::Network,
            offset: 12,
            len: 1,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![127],
        },
    ]);
    v.extend(ct_dnat());
    v.push(Expr::Masquerade);
    v
}

/// Egress of an IPv4 subnet SNATed to a fixed host address instead of masqueraded.
pub(super) fn snat(bridge: &str, subnet: &IpNet, to: Ipv4Addr) -> Vec<Expr> {
    let mut v = masquerade(bridge, subnet);
    v.pop();
    v.extend([
        Expr::Load {
            dreg: REG_1,
            data: to.octets().to_vec(),
        },
        Expr::Snat4 { addr_reg: REG_1 },
    ]);
    v
}

pub(super) const TYPE_PORTS6_DATA: DataType = DataType {
    id: concat(TYPE_IPV6_ADDR, TYPE_INET_SERVICE),
    len: 20,
};

/// `ip6 daddr . meta l4proto . th dport`.
pub(super) fn port_key_ip6(host: Ipv6Addr, p: &PortMapping) -> Vec<u8> {
    let mut k = host.octets().to_vec();
    k.extend(port_key_any(p));
    k
}

/// `ADDR6 . PORT` as DNAT reads it from five registers.
pub(super) fn addr6_port(ip: Ipv6Addr, port: u16) -> Vec<u8> {
    let p = port.to_be_bytes();
    let mut d = ip.octets().to_vec();
    d.extend([p[0], p[1], 0, 0]);
    d
}

/// `meta nfproto ipv4 oifname != BRIDGE ip saddr SUBNET masquerade` (or `ip6 saddr`).
pub(super) fn masquerade(bridge: &str, subnet: &IpNet) -> Vec<Expr> {
    let (proto, offset, mask, net) = match subnet {
        IpNet::V4(n) => (
            libc::NFPROTO_IPV4,
            12,
            n.netmask().octets().to_vec(),
            n.network().octets().to_vec(),
        ),
        IpNet::V6(n) => (
            libc::NFPROTO_IPV6,
            8,
            n.netmask().octets().to_vec(),
            n.network().octets().to_vec(),
        ),
    };
    let mut v = nfproto(proto).to_vec();
    v.extend([
        Expr::Meta {
            key: MetaKey::OifName,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: ifname_key(bridge),
        },
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len: mask.len() as u32,
            dreg: REG_1,
        },
        Expr::Mask { reg: REG_1, mask },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: net,
        },
        Expr::Masquerade,
    ]);
    v
}

/// `meta l4proto . th dport`, each in a 4-byte register.
pub(super) fn port_key_any(p: &PortMapping) -> Vec<u8> {
    let port = p.host_port.to_be_bytes();
    vec![p.proto.number(), 0, 0, 0, port[0], port[1], 0, 0]
}

/// `ip daddr . meta l4proto . th dport`.
pub(super) fn port_key_ip(host: Ipv4Addr, p: &PortMapping) -> Vec<u8> {
    let mut k = host.octets().to_vec();
    k.extend(port_key_any(p));
    k
}

/// `ADDR . PORT` as DNAT reads it from two registers.
pub(super) fn addr_port(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    let p = port.to_be_bytes();
    let mut d = ip.octets().to_vec();
    d.extend([p[0], p[1], 0, 0]);
    d
}
