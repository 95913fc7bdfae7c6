//! Encrypted overlay networks (see [`crate::cluster::encryption`]): two base chains of table
//! `inet berth` per encrypted network, made and removed with it.
//!
//! ```text
//! chain nw-NAME-esp-out (route, output, -150)
//!     meta l4proto udp th dport PORT @th,96,24 VNI meta mark set ESP_MARK
//! chain nw-NAME-esp-in  (filter, input, -150)
//!     meta l4proto udp th dport PORT @th,96,24 VNI meta secpath missing counter drop
//! ```
//!
//! The first marks the network's VXLAN packets as the kernel sends them; a `route` chain
//! routes a packet whose mark changed again, so the IPsec policy of the pair of hosts (which
//! matches the mark) is looked up and the packet leaves as ESP. The second drops the network's
//! VXLAN packets that arrive without having come through an SA — plaintext from a peer whose
//! policy is missing or from anyone on the underlay — and counts them. Other networks' VXLAN
//! traffic (another VNI) is untouched.

use super::facts::{EspVxlan, NetworkRules};
use super::ops::{BaseChain, ChainKind, CmpOp, Expr, Hook, MetaKey, Op, PayloadBase, REG_1};

/// The packet mark of encrypted VXLAN traffic, which the IPsec policies match.
pub const ESP_MARK: u32 = 0x0be5_0e5c;

/// Where VXLAN's VNI is: 8 bytes of UDP header, then flags (1) and reserved (3) bytes.
const VNI_OFFSET: u32 = 12;

/// The two chains of network `name`: output, input.
pub fn chains(name: &str) -> [String; 2] {
    [format!("nw-{name}-esp-out"), format!("nw-{name}-esp-in")]
}

/// `meta l4proto udp th dport PORT @th,96,24 VNI`.
fn matches_vxlan(e: EspVxlan) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![libc::IPPROTO_UDP as u8],
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: e.port.to_be_bytes().to_vec(),
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: VNI_OFFSET,
            len: 3,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: e.vni.to_be_bytes()[1..].to_vec(),
        },
    ]
}

/// What an encrypted network adds: its two chains and their rules (nothing otherwise).
pub fn network_add(n: &NetworkRules) -> Vec<Op> {
    let Some(e) = n.encrypted else {
        return Vec::new();
    };
    let [out, inp] = chains(&n.name);
    let base = |kind, hook| {
        Some(BaseChain {
            kind,
            hook,
            priority: -150,
        })
    };
    let mut mark = matches_vxlan(e);
    mark.extend([
        Expr::Load {
            dreg: REG_1,
            data: ESP_MARK.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet {
            key: MetaKey::Mark,
            sreg: REG_1,
        },
    ]);
    let mut drop = matches_vxlan(e);
    drop.extend([
        Expr::Meta {
            key: MetaKey::Secpath,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![0],
        },
        Expr::Counter,
        Expr::Drop,
    ]);
    vec![
        Op::AddChain {
            name: out.clone(),
            base: base(ChainKind::Route, Hook::Output),
        },
        Op::AddChain {
            name: inp.clone(),
            base: base(ChainKind::Filter, Hook::Input),
        },
        Op::AddRule {
            chain: out,
            exprs: mark,
        },
        Op::AddRule {
            chain: inp,
            exprs: drop,
        },
    ]
}

/// What removing an encrypted network removes (the reverse of [`network_add`]).
pub fn network_remove(n: &NetworkRules) -> Vec<Op> {
    if n.encrypted.is_none() {
        return Vec::new();
    }
    chains(&n.name)
        .into_iter()
        .flat_map(|chain| {
            [
                Op::FlushChain {
                    chain: chain.clone(),
                },
                Op::DelChain { chain },
            ]
        })
        .collect()
}
