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

use super::ops::*;
use super::{MAP_FWD_FROM, MAP_FWD_TO, MAP_ISOLATE, ifname_key};

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
