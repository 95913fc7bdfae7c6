//! Forward filtering: isolation between networks, internal networks, direct-access protection.
//!
//! Base chain `forward` (filter, priority 0, policy accept — the host's own policy is not ours):
//! ```text
//! jump user-forward                       the admin's chain: berth creates it, never touches it
//! ct state established,related accept
//! iifname vmap @fwd_from                  leaving a berth network  → nw-NAME-from
//! oifname vmap @fwd_to                    entering one from outside → nw-NAME-to
//! ```
//! `nw-NAME-from`: `oifname BRIDGE accept` (same network, routed); internal: `drop`;
//! `oifname vmap @isolate` (every berth bridge → drop); `accept`.
//! `nw-NAME-to`: `ct status dnat accept` (published ports); then `drop`, or `accept` when direct
//! access is allowed.
//!
//! Traffic between two containers of one network is bridged, not routed, so it never reaches
//! this chain (berth needs no br_netfilter): ICC off and its link exceptions live in table
//! `bridge berth` ([`super::icc`]).

use super::facts::{MAP_FWD_FROM, MAP_FWD_TO, MAP_ISOLATE, ifname_key};
use super::ops::*;

/// The admin's hook chain, evaluated first in forward; berth never adds, flushes or deletes
/// rules there.
pub const CHAIN_USER: &str = "user-forward";

const CT_ESTABLISHED_RELATED: u32 = 2 | 4;
const CT_STATUS_DNAT: u32 = 0x20;

fn ct_bits(key: CtKey, bits: u32) -> [Expr; 3] {
    [
        Expr::Ct { key, dreg: REG_1 },
        Expr::Mask {
            reg: REG_1,
            mask: bits.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: vec![0; 4],
        },
    ]
}

/// The base chain in prerouting at raw priority (before conntrack and DNAT) that guards the
/// host's loopback addresses: a packet for `127.0.0.0/8` or `::1` that did not come in on `lo`
/// is dropped (the kube-proxy CVE-2020-8558 class). Without it, DNAT in prerouting runs before
/// the kernel's martian check, so a neighbour routing `127.0.0.1` to the host (with
/// `route_localnet` in its own netns) reaches ports published on `127.0.0.1`, and a container
/// could reach the host's loopback services through its bridge (which has `route_localnet`
/// on). Replies to the host's own localhost connections arrive addressed to the bridge (they
/// were masqueraded), so they pass.
pub const CHAIN_GUARD: &str = "prerouting-guard";

/// `iifname != "lo" ip daddr 127.0.0.0/8 drop` and `iifname != "lo" ip6 daddr ::1 drop`.
pub(super) fn guard_rules() -> Vec<Vec<Expr>> {
    let not_lo = [
        Expr::Meta {
            key: MetaKey::IifName,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: ifname_key("lo"),
        },
    ];
    let family = |proto: i32| {
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
    };
    let mut v4 = family(libc::NFPROTO_IPV4).to_vec();
    v4.extend(not_lo.clone());
    v4.extend([
        Expr::Payload {
            base: PayloadBase::Network,
            offset: 16,
            len: 1,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![127],
        },
        Expr::Drop,
    ]);
    let mut v6 = family(libc::NFPROTO_IPV6).to_vec();
    v6.extend(not_lo);
    v6.extend([
        Expr::Payload {
            base: PayloadBase::Network,
            offset: 24,
            len: 16,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: std::net::Ipv6Addr::LOCALHOST.octets().to_vec(),
        },
        Expr::Drop,
    ]);
    vec![v4, v6]
}

/// The base forward chain's rules.
pub(super) fn forward_rules() -> Vec<Vec<Expr>> {
    let mut est = ct_bits(CtKey::State, CT_ESTABLISHED_RELATED).to_vec();
    est.push(Expr::Accept);
    vec![
        vec![Expr::Jump(CHAIN_USER.into())],
        est,
        vec![
            Expr::Meta {
                key: MetaKey::IifName,
                dreg: REG_1,
            },
            Expr::Lookup {
                set: MAP_FWD_FROM,
                sreg: REG_1,
                dreg: REG_VERDICT,
            },
        ],
        vec![
            Expr::Meta {
                key: MetaKey::OifName,
                dreg: REG_1,
            },
            Expr::Lookup {
                set: MAP_FWD_TO,
                sreg: REG_1,
                dreg: REG_VERDICT,
            },
        ],
    ]
}

/// Rules of `nw-NAME-from`.
pub(super) fn from_rules(bridge: &str, internal: bool) -> Vec<Vec<Expr>> {
    let mut v = vec![vec![
        Expr::Meta {
            key: MetaKey::OifName,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: ifname_key(bridge),
        },
        Expr::Accept,
    ]];
    if internal {
        v.push(vec![Expr::Drop]);
        return v;
    }
    v.push(vec![
        Expr::Meta {
            key: MetaKey::OifName,
            dreg: REG_1,
        },
        Expr::Lookup {
            set: MAP_ISOLATE,
            sreg: REG_1,
            dreg: REG_VERDICT,
        },
    ]);
    v.push(vec![Expr::Accept]);
    v
}

/// Rules of `nw-NAME-to` (reached only from interfaces that are not berth bridges).
pub(super) fn to_rules(allow_direct_access: bool) -> Vec<Vec<Expr>> {
    let mut dnat = ct_bits(CtKey::Status, CT_STATUS_DNAT).to_vec();
    dnat.push(Expr::Accept);
    vec![
        dnat,
        vec![if allow_direct_access {
            Expr::Accept
        } else {
            Expr::Drop
        }],
    ]
}
