//! Serialises one [`Op`] into an nf_tables netlink message through libnftnl (nftnl-sys).
//!
//! The nftnl crate covers tables, chains and plain sets; maps, verdict maps, concatenated keys,
//! flushes and the expressions used here (lookup with a destination register, fib, nat with
//! registers) are built directly with libnftnl's attribute setters. Each message is built at
//! `write` time into the batch buffer, and every libnftnl object is freed right after.

use std::ffi::{CString, c_void};
use std::os::raw::c_char;

use nftnl::{MsgType, NlMsg};
use nftnl_sys::{self as sys, libc};

use crate::firewall::ruleset::facts::{
    MAP_FWD_FROM, MAP_FWD_TO, MAP_ISOLATE, MAP_PORTS_ANY, MAP_PORTS_IP, MAP_PORTS6_ANY,
    MAP_PORTS6_IP, MAP_POST_BY_IIF, MAP_POST_BY_OIF,
};
use crate::firewall::ruleset::icc::{SET_LINKS4, SET_LINKS6};
use crate::firewall::ruleset::ops::{
    ChainKind, CmpOp, CtKey, ElemData, Expr, Family, Hook, MapData, MetaKey, Op, PayloadBase,
};

/// The nfproto number of a table family.
pub(super) fn nfproto(family: Family) -> u16 {
    (match family {
        Family::Inet => libc::NFPROTO_INET,
        Family::Bridge | Family::Guard => libc::NFPROTO_BRIDGE,
    }) as u16
}
// Not in libc: linux/netfilter/nf_tables.h.
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFT_CT_STATE: u32 = 0;
/// nftables' `enum byteorder`: BYTEORDER_HOST_ENDIAN.
const BYTEORDER_HOST_ENDIAN: u32 = 1;
/// nft's `ifname` datatype.
const TYPE_IFNAME: u32 = 41;
const NFT_CT_STATUS: u32 = 2;

/// Set ids, so lookups can name a map created earlier in the same transaction.
fn set_id(name: &str) -> u32 {
    match name {
        MAP_PORTS_IP => 1,
        MAP_PORTS_ANY => 2,
        MAP_POST_BY_IIF => 3,
        MAP_FWD_FROM => 4,
        MAP_FWD_TO => 5,
        MAP_ISOLATE => 6,
        MAP_POST_BY_OIF => 7,
        MAP_PORTS6_IP => 8,
        MAP_PORTS6_ANY => 9,
        SET_LINKS4 => 10,
        SET_LINKS6 => 11,
        _ => 0,
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("names never contain NUL (validated)")
}

/// One op, unwrapped (see [`Op::in_family`]), as an [`NlMsg`] for [`nftnl::Batch::add`], sent to
/// the table of `family` (the `MsgType` argument is unused: the op says what it is).
pub(super) struct OpMsg<'a>(pub &'a Op, pub Family);

// SAFETY: every message is one nf_tables object or an element list of at most
// `transact::ELEMS_PER_MSG` elements, far below `nft_nlmsg_maxsize()`.
unsafe impl NlMsg for OpMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _t: MsgType) {
        let table = cstr(self.1.table());
        let ack = libc::NLM_F_ACK as u16;
        let create = libc::NLM_F_CREATE as u16;
        let family = nfproto(self.1);
        // SAFETY: `buf` has room for a maximal message (NlMsg contract); every object is
        // allocated, filled with valid C strings that outlive the build call, and freed here.
        unsafe {
            let hdr = |ty: i32, flags: u16| {
                sys::nftnl_nlmsg_build_hdr(buf.cast::<c_char>(), ty as u16, family, flags, seq)
            };
            match self.0 {
                Op::AddTable { exclusive } => {
                    let excl = if *exclusive {
                        libc::NLM_F_EXCL as u16
                    } else {
                        0
                    };
                    let nlh = hdr(libc::NFT_MSG_NEWTABLE, create | ack | excl);
                    let t = sys::nftnl_table_alloc();
                    sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, table.as_ptr());
                    sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FAMILY as u16, family as u32);
                    sys::nftnl_table_nlmsg_build_payload(nlh, t);
                    sys::nftnl_table_free(t);
                }
                Op::AddChain { name, base } => {
                    let nlh = hdr(libc::NFT_MSG_NEWCHAIN, create | ack);
                    let name = cstr(name);
                    let c = sys::nftnl_chain_alloc();
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_NAME as u16, name.as_ptr());
                    if let Some(b) = base {
                        let hook = match b.hook {
                            Hook::Prerouting => libc::NF_INET_PRE_ROUTING,
                            Hook::Output => libc::NF_INET_LOCAL_OUT,
                            Hook::Postrouting => libc::NF_INET_POST_ROUTING,
                            Hook::Forward => libc::NF_INET_FORWARD,
                            Hook::Input => libc::NF_INET_LOCAL_IN,
                        };
                        let kind = cstr(match b.kind {
                            ChainKind::Nat => "nat",
                            ChainKind::Filter => "filter",
                            ChainKind::Route => "route",
                        });
                        sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16, hook as u32);
                        sys::nftnl_chain_set_s32(c, sys::NFTNL_CHAIN_PRIO as u16, b.priority);
                        sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TYPE as u16, kind.as_ptr());
                        sys::nftnl_chain_set_u32(
                            c,
                            sys::NFTNL_CHAIN_POLICY as u16,
                            libc::NF_ACCEPT as u32,
                        );
                    }
                    sys::nftnl_chain_nlmsg_build_payload(nlh, c);
                    sys::nftnl_chain_free(c);
                }
                Op::AddMap { name, key, data } => {
                    let nlh = hdr(libc::NFT_MSG_NEWSET, create | ack);
                    let cname = cstr(name);
                    let s = sys::nftnl_set_alloc();
                    sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
                    sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, cname.as_ptr());
                    sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, family as u32);
                    sys::nftnl_set_set_u32(s, sys::NFTNL_SET_ID as u16, set_id(name));
                    if key.id == TYPE_IFNAME {
                        // nft reads a key's byte order from the set's userdata; interface
                        // names are host-endian strings. Without it `nft list` prints the
                        // keys as "" and a saved ruleset cannot be loaded back.
                        let ud = sys::nftnl_udata_buf_alloc(16);
                        sys::nftnl_udata_put_u32(
                            ud,
                            sys::NFTNL_UDATA_SET_KEYBYTEORDER as u8,
                            BYTEORDER_HOST_ENDIAN,
                        );
                        sys::nftnl_set_set_data(
                            s,
                            sys::NFTNL_SET_USERDATA as u16,
                            sys::nftnl_udata_buf_data(ud),
                            sys::nftnl_udata_buf_len(ud),
                        );
                        sys::nftnl_udata_buf_free(ud);
                    }
                    let flags = if *data == MapData::Nothing {
                        0
                    } else {
                        libc::NFT_SET_MAP as u32
                    };
                    sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FLAGS as u16, flags);
                    sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_TYPE as u16, key.id);
                    sys::nftnl_set_set_u32(s, sys::NFTNL_SET_KEY_LEN as u16, key.len);
                    match data {
                        MapData::Data(d) => {
                            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_TYPE as u16, d.id);
                            sys::nftnl_set_set_u32(s, sys::NFTNL_SET_DATA_LEN as u16, d.len);
                        }
                        MapData::Verdict => {
                            sys::nftnl_set_set_u32(
                                s,
                                sys::NFTNL_SET_DATA_TYPE as u16,
                                libc::NFT_DATA_VERDICT,
                            );
                        }
                        MapData::Nothing => {}
                    }
                    sys::nftnl_set_nlmsg_build_payload(nlh, s);
                    sys::nftnl_set_free(s);
                }
                Op::AddElems { map, elems } | Op::EnsureElems { map, elems } => {
                    let excl = if matches!(self.0, Op::AddElems { .. }) {
                        libc::NLM_F_EXCL as u16
                    } else {
                        0
                    };
                    let nlh = hdr(libc::NFT_MSG_NEWSETELEM, create | ack | excl);
                    let s = elem_set(&table, map, family);
                    let mut chains = Vec::new();
                    for (k, v) in elems {
                        let e = sys::nftnl_set_elem_alloc();
                        set_bytes(e, sys::NFTNL_SET_ELEM_KEY, k);
                        match v {
                            ElemData::Data(d) => set_bytes(e, sys::NFTNL_SET_ELEM_DATA, d),
                            ElemData::Jump(c) => {
                                let c = cstr(c);
                                sys::nftnl_set_elem_set_u32(
                                    e,
                                    sys::NFTNL_SET_ELEM_VERDICT as u16,
                                    libc::NFT_JUMP as u32,
                                );
                                sys::nftnl_set_elem_set_str(
                                    e,
                                    sys::NFTNL_SET_ELEM_CHAIN as u16,
                                    c.as_ptr(),
                                );
                                chains.push(c);
                            }
                            ElemData::Drop => sys::nftnl_set_elem_set_u32(
                                e,
                                sys::NFTNL_SET_ELEM_VERDICT as u16,
                                libc::NF_DROP as u32,
                            ),
                            ElemData::None => {}
                        }
                        sys::nftnl_set_elem_add(s, e);
                    }
                    sys::nftnl_set_elems_nlmsg_build_payload(nlh, s);
                    sys::nftnl_set_free(s);
                }
                Op::DelElems { map, keys } => {
                    let nlh = hdr(libc::NFT_MSG_DELSETELEM, ack);
                    let s = elem_set(&table, map, family);
                    for k in keys {
                        let e = sys::nftnl_set_elem_alloc();
                        set_bytes(e, sys::NFTNL_SET_ELEM_KEY, k);
                        sys::nftnl_set_elem_add(s, e);
                    }
                    sys::nftnl_set_elems_nlmsg_build_payload(nlh, s);
                    sys::nftnl_set_free(s);
                }
                Op::AddRule { chain, exprs } => {
                    let flags = create | ack | libc::NLM_F_APPEND as u16;
                    let nlh = hdr(libc::NFT_MSG_NEWRULE, flags);
                    let chain = cstr(chain);
                    let r = rule(&table, &chain, family);
                    for e in exprs {
                        sys::nftnl_rule_add_expr(r, expr(e));
                    }
                    sys::nftnl_rule_nlmsg_build_payload(nlh, r);
                    sys::nftnl_rule_free(r);
                }
                Op::FlushMap { map } => {
                    // DELSETELEM without elements flushes the set.
                    let nlh = hdr(libc::NFT_MSG_DELSETELEM, ack);
                    let s = elem_set(&table, map, family);
                    sys::nftnl_set_elems_nlmsg_build_payload(nlh, s);
                    sys::nftnl_set_free(s);
                }
                Op::FlushChain { chain } => {
                    let nlh = hdr(libc::NFT_MSG_DELRULE, ack);
                    let chain = cstr(chain);
                    let r = rule(&table, &chain, family);
                    sys::nftnl_rule_nlmsg_build_payload(nlh, r);
                    sys::nftnl_rule_free(r);
                }
                Op::DelChain { chain } => {
                    let nlh = hdr(libc::NFT_MSG_DELCHAIN, ack);
                    let name = cstr(chain);
                    let c = sys::nftnl_chain_alloc();
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_NAME as u16, name.as_ptr());
                    sys::nftnl_chain_nlmsg_build_payload(nlh, c);
                    sys::nftnl_chain_free(c);
                }
                Op::DelTable => {
                    let nlh = hdr(libc::NFT_MSG_DELTABLE, ack);
                    let t = sys::nftnl_table_alloc();
                    sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, table.as_ptr());
                    sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FAMILY as u16, family as u32);
                    sys::nftnl_table_nlmsg_build_payload(nlh, t);
                    sys::nftnl_table_free(t);
                }
                Op::Bridge(_) | Op::Guard(_) => {
                    unreachable!("ops are unwrapped before serialising")
                }
            }
        }
    }
}

/// A set object naming `map`, to carry elements.
unsafe fn elem_set(table: &CString, map: &str, family: u16) -> *mut sys::nftnl_set {
    let name = cstr(map);
    // SAFETY: fresh allocation; libnftnl copies the strings.
    unsafe {
        let s = sys::nftnl_set_alloc();
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
        sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
        sys::nftnl_set_set_u32(s, sys::NFTNL_SET_FAMILY as u16, family as u32);
        s
    }
}

unsafe fn set_bytes(e: *mut sys::nftnl_set_elem, attr: u32, b: &[u8]) {
    // SAFETY: libnftnl copies `b.len()` bytes.
    unsafe { sys::nftnl_set_elem_set(e, attr as u16, b.as_ptr().cast(), b.len() as u32) };
}

unsafe fn rule(table: &CString, chain: &CString, family: u16) -> *mut sys::nftnl_rule {
    // SAFETY: fresh allocation; libnftnl copies the strings.
    unsafe {
        let r = sys::nftnl_rule_alloc();
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
        sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, family as u32);
        r
    }
}

/// `NFT_META_SECPATH` (not in libc): the key after `NFT_META_PRANDOM`.
const NFT_META_SECPATH: u32 = libc::NFT_META_PRANDOM as u32 + 1;

fn meta_key(key: MetaKey) -> u32 {
    (match key {
        MetaKey::NfProto => libc::NFT_META_NFPROTO,
        MetaKey::Protocol => libc::NFT_META_PROTOCOL,
        MetaKey::IifGroup => libc::NFT_META_IIFGROUP,
        MetaKey::OifGroup => libc::NFT_META_OIFGROUP,
        MetaKey::L4Proto => libc::NFT_META_L4PROTO,
        MetaKey::IifName => libc::NFT_META_IIFNAME,
        MetaKey::OifName => libc::NFT_META_OIFNAME,
        MetaKey::Mark => libc::NFT_META_MARK,
        MetaKey::Secpath => return NFT_META_SECPATH,
    }) as u32
}

/// Builds one expression; the rule it is added to takes ownership.
unsafe fn expr(e: &Expr) -> *mut sys::nftnl_expr {
    let u32_ = |x: *mut sys::nftnl_expr, attr: u32, v: u32| {
        // SAFETY: `x` is a live expression of the kind that has `attr`.
        unsafe { sys::nftnl_expr_set_u32(x, attr as u16, v) }
    };
    let data = |x: *mut sys::nftnl_expr, attr: u32, d: &[u8]| {
        // SAFETY: libnftnl copies `d.len()` bytes.
        unsafe { sys::nftnl_expr_set(x, attr as u16, d.as_ptr().cast(), d.len() as u32) };
    };
    let alloc = |name: &str| {
        let n = cstr(name);
        // SAFETY: `n` is a valid C string for the call.
        unsafe { sys::nftnl_expr_alloc(n.as_ptr()) }
    };
    match e {
        Expr::Meta { key, dreg } => {
            let x = alloc("meta");
            u32_(x, sys::NFTNL_EXPR_META_KEY, meta_key(*key));
            u32_(x, sys::NFTNL_EXPR_META_DREG, *dreg);
            x
        }
        Expr::MetaSet { key, sreg } => {
            let x = alloc("meta");
            u32_(x, sys::NFTNL_EXPR_META_KEY, meta_key(*key));
            u32_(x, sys::NFTNL_EXPR_META_SREG, *sreg);
            x
        }
        Expr::Counter => alloc("counter"),
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            let x = alloc("payload");
            let base = match base {
                PayloadBase::Link => libc::NFT_PAYLOAD_LL_HEADER,
                PayloadBase::Network => libc::NFT_PAYLOAD_NETWORK_HEADER,
                PayloadBase::Transport => libc::NFT_PAYLOAD_TRANSPORT_HEADER,
            };
            u32_(x, sys::NFTNL_EXPR_PAYLOAD_BASE, base as u32);
            u32_(x, sys::NFTNL_EXPR_PAYLOAD_OFFSET, *offset);
            u32_(x, sys::NFTNL_EXPR_PAYLOAD_LEN, *len);
            u32_(x, sys::NFTNL_EXPR_PAYLOAD_DREG, *dreg);
            x
        }
        Expr::Mask { reg, mask } => {
            let x = alloc("bitwise");
            u32_(x, sys::NFTNL_EXPR_BITWISE_SREG, *reg);
            u32_(x, sys::NFTNL_EXPR_BITWISE_DREG, *reg);
            u32_(x, sys::NFTNL_EXPR_BITWISE_LEN, mask.len() as u32);
            data(x, sys::NFTNL_EXPR_BITWISE_MASK, mask);
            data(x, sys::NFTNL_EXPR_BITWISE_XOR, &vec![0; mask.len()]);
            x
        }
        Expr::Cmp { sreg, op, data: d } => {
            let x = alloc("cmp");
            let op = match op {
                CmpOp::Eq => libc::NFT_CMP_EQ,
                CmpOp::Neq => libc::NFT_CMP_NEQ,
            };
            u32_(x, sys::NFTNL_EXPR_CMP_SREG, *sreg);
            u32_(x, sys::NFTNL_EXPR_CMP_OP, op as u32);
            data(x, sys::NFTNL_EXPR_CMP_DATA, d);
            x
        }
        Expr::Lookup { set, sreg, dreg } => {
            let x = alloc("lookup");
            let name = cstr(set);
            // SAFETY: libnftnl copies the string.
            unsafe { sys::nftnl_expr_set_str(x, sys::NFTNL_EXPR_LOOKUP_SET as u16, name.as_ptr()) };
            u32_(x, sys::NFTNL_EXPR_LOOKUP_SET_ID, set_id(set));
            u32_(x, sys::NFTNL_EXPR_LOOKUP_SREG, *sreg);
            u32_(x, sys::NFTNL_EXPR_LOOKUP_DREG, *dreg);
            x
        }
        Expr::Member { set, sreg } => {
            let x = alloc("lookup");
            let name = cstr(set);
            // SAFETY: libnftnl copies the string.
            unsafe { sys::nftnl_expr_set_str(x, sys::NFTNL_EXPR_LOOKUP_SET as u16, name.as_ptr()) };
            u32_(x, sys::NFTNL_EXPR_LOOKUP_SET_ID, set_id(set));
            u32_(x, sys::NFTNL_EXPR_LOOKUP_SREG, *sreg);
            x
        }
        Expr::FibDaddrType { dreg } => {
            let x = alloc("fib");
            u32_(x, sys::NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
            u32_(x, sys::NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
            u32_(x, sys::NFTNL_EXPR_FIB_DREG, *dreg);
            x
        }
        Expr::Dnat4 { addr_reg, port_reg } => {
            let x = alloc("nat");
            u32_(x, sys::NFTNL_EXPR_NAT_TYPE, libc::NFT_NAT_DNAT as u32);
            u32_(x, sys::NFTNL_EXPR_NAT_FAMILY, libc::NFPROTO_IPV4 as u32);
            u32_(x, sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, *addr_reg);
            u32_(x, sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, *port_reg);
            x
        }
        Expr::Dnat6 { addr_reg, port_reg } => {
            let x = alloc("nat");
            u32_(x, sys::NFTNL_EXPR_NAT_TYPE, libc::NFT_NAT_DNAT as u32);
            u32_(x, sys::NFTNL_EXPR_NAT_FAMILY, libc::NFPROTO_IPV6 as u32);
            u32_(x, sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, *addr_reg);
            u32_(x, sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, *port_reg);
            x
        }
        Expr::Masquerade => alloc("masq"),
        Expr::Snat4 { addr_reg } => {
            let x = alloc("nat");
            u32_(x, sys::NFTNL_EXPR_NAT_TYPE, libc::NFT_NAT_SNAT as u32);
            u32_(x, sys::NFTNL_EXPR_NAT_FAMILY, libc::NFPROTO_IPV4 as u32);
            u32_(x, sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, *addr_reg);
            x
        }
        Expr::Load { dreg, data: d } => {
            let x = alloc("immediate");
            u32_(x, sys::NFTNL_EXPR_IMM_DREG, *dreg);
            data(x, sys::NFTNL_EXPR_IMM_DATA, d);
            x
        }
        Expr::Ct { key, dreg } => {
            let x = alloc("ct");
            let key = match key {
                CtKey::State => NFT_CT_STATE,
                CtKey::Status => NFT_CT_STATUS,
            };
            u32_(x, sys::NFTNL_EXPR_CT_KEY, key);
            u32_(x, sys::NFTNL_EXPR_CT_DREG, *dreg);
            x
        }
        Expr::Accept | Expr::Drop => {
            let x = alloc("immediate");
            let v = if *e == Expr::Accept {
                libc::NF_ACCEPT
            } else {
                libc::NF_DROP
            };
            u32_(x, sys::NFTNL_EXPR_IMM_DREG, libc::NFT_REG_VERDICT as u32);
            u32_(x, sys::NFTNL_EXPR_IMM_VERDICT, v as u32);
            x
        }
        Expr::Jump(chain) => {
            let x = alloc("immediate");
            let c = cstr(chain);
            u32_(x, sys::NFTNL_EXPR_IMM_DREG, libc::NFT_REG_VERDICT as u32);
            u32_(x, sys::NFTNL_EXPR_IMM_VERDICT, libc::NFT_JUMP as u32);
            // SAFETY: libnftnl copies the string.
            unsafe { sys::nftnl_expr_set_str(x, sys::NFTNL_EXPR_IMM_CHAIN as u16, c.as_ptr()) };
            x
        }
    }
}
