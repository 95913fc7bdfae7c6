//! Reads one of berth's tables (`inet berth`, `bridge berth`) back from the kernel (netlink
//! dumps: requests built by libnftnl, replies read here): which chains exist with how many
//! rules, which maps, which elements. What `check` compares with the rendered ruleset. Must run on a thread inside the target netns.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

use nftnl_sys::{self as sys, libc};
use nix::sys::socket::{MsgFlags, recv, send};

use crate::firewall::frames;
use crate::firewall::ruleset::Family;
const NLM_F_DUMP: u16 = 0x300;

/// What the kernel holds of one of berth's tables.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KernelState {
    /// The table exists.
    pub table: bool,
    /// Chain name → number of rules.
    pub chains: HashMap<String, usize>,
    /// Map names.
    pub maps: HashSet<String>,
    /// Map name → element keys.
    pub elements: HashMap<String, HashSet<Vec<u8>>>,
}

/// Reads all three of berth's tables: `inet berth`, `bridge berth`, `bridge berth-spoof`.
pub(crate) fn read_all() -> io::Result<[KernelState; 3]> {
    Ok([
        read_table(Family::Inet)?,
        read_table(Family::Bridge)?,
        read_table(Family::Guard)?,
    ])
}

/// Reads the whole of table `FAMILY berth` (a missing table reads as empty).
pub(crate) fn read_table(family: Family) -> io::Result<KernelState> {
    let name = family.table();
    let family = super::msg::nfproto(family);
    let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let table = CString::new(name).expect("no NUL");
    let mut st = KernelState::default();
    // SAFETY (all closures below): each builds into / parses from buffers sized for a maximal
    // message, with libnftnl objects allocated and freed within the call.
    let found = dump(
        &sock,
        name,
        family,
        libc::NFT_MSG_GETTABLE,
        false,
        |_| {},
        |_| {},
    )?;
    if !found {
        return Ok(st);
    }
    st.table = true;
    dump(
        &sock,
        name,
        family,
        libc::NFT_MSG_GETCHAIN,
        true,
        |nlh| unsafe {
            let c = sys::nftnl_chain_alloc();
            sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_nlmsg_build_payload(nlh, c);
            sys::nftnl_chain_free(c);
        },
        |msg| on_chain(&mut st, name, msg),
    )?;
    dump(
        &sock,
        name,
        family,
        libc::NFT_MSG_GETRULE,
        true,
        |nlh| unsafe {
            let r = sys::nftnl_rule_alloc();
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
            sys::nftnl_rule_nlmsg_build_payload(nlh, r);
            sys::nftnl_rule_free(r);
        },
        |msg| on_rule(&mut st, name, msg),
    )?;
    dump(
        &sock,
        name,
        family,
        libc::NFT_MSG_GETSET,
        true,
        |nlh| unsafe {
            let s = sys::nftnl_set_alloc();
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_nlmsg_build_payload(nlh, s);
            sys::nftnl_set_free(s);
        },
        |msg| on_set(&mut st, name, msg),
    )?;
    for map in st.maps.clone() {
        let set_name = CString::new(map.as_str()).expect("no NUL");
        let keys = st.elements.entry(map).or_default();
        dump(
            &sock,
            name,
            family,
            libc::NFT_MSG_GETSETELEM,
            true,
            |nlh| unsafe {
                let s = sys::nftnl_set_alloc();
                sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
                sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, set_name.as_ptr());
                sys::nftnl_set_elems_nlmsg_build_payload(nlh, s);
                sys::nftnl_set_free(s);
            },
            |msg| on_elems(keys, msg),
        )?;
    }
    Ok(st)
}

#[cfg(feature = "fuzzing")]
/// Which reply a message of a dump is, for [`on_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `NFT_MSG_NEWCHAIN`.
    Chain,
    /// `NFT_MSG_NEWRULE`.
    Rule,
    /// `NFT_MSG_NEWSET`.
    Set,
    /// `NFT_MSG_NEWSETELEM` of map `name` (its keys go to `elements[name]`).
    Elems,
}

#[cfg(feature = "fuzzing")]
/// Folds one whole dump message into `st` (elements go to map `map`).
pub(crate) fn on_message(st: &mut KernelState, reply: Reply, map: &str, msg: &[u8]) {
    match reply {
        Reply::Chain => on_chain(st, "berth", msg),
        Reply::Rule => on_rule(st, "berth", msg),
        Reply::Set => on_set(st, "berth", msg),
        Reply::Elems => on_elems(st.elements.entry(map.to_string()).or_default(), msg),
    }
}

// The replies are read here, not by libnftnl: `check` needs only names and keys, and
// libnftnl ends the whole process (`abi_breakage()`: "nf_tables kernel ABI is broken", `exit`)
// on an attribute it does not expect, dereferences NULL on an expression without a name and
// `strdup`s strings without a bound.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;

/// The attributes of `b` (type without flags, value); stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let ty = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let v = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((ty, v))
    })
}

/// The value of attribute `ty` of `b`, if present.
fn attr(b: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(b).find_map(|(t, v)| (t == ty).then_some(v))
}

/// A string attribute's text (up to its NUL).
fn text(v: &[u8]) -> String {
    let v = v.split(|&c| c == 0).next().unwrap_or_default();
    String::from_utf8_lossy(v).into_owned()
}

/// The attributes of `msg`, one whole message, when it is an nf_tables message of type
/// `msg_type` (`NFT_MSG_NEW*`): what follows the nlmsghdr and the nfgenmsg.
fn body(msg: &[u8], msg_type: i32) -> Option<&[u8]> {
    let ty = u16::from_ne_bytes([*msg.get(4)?, *msg.get(5)?]);
    (i32::from(ty) == (i32::from(NFNL_SUBSYS_NFTABLES) << 8 | msg_type)).then_some(())?;
    msg.get(20..)
}

/// The name of a chain, rule or set message of table `want`.
fn ours(msg: &[u8], want: &str, msg_type: i32, table: u16, name: u16) -> Option<String> {
    let b = body(msg, msg_type)?;
    (text(attr(b, table)?) == want).then_some(())?;
    Some(text(attr(b, name)?))
}

/// A chain of a `GETCHAIN` dump.
fn on_chain(st: &mut KernelState, want: &str, msg: &[u8]) {
    if let Some(name) = ours(
        msg,
        want,
        libc::NFT_MSG_NEWCHAIN,
        NFTA_CHAIN_TABLE,
        NFTA_CHAIN_NAME,
    ) {
        st.chains.entry(name).or_insert(0);
    }
}

/// A rule of a `GETRULE` dump: one more rule in its chain.
fn on_rule(st: &mut KernelState, want: &str, msg: &[u8]) {
    if let Some(chain) = ours(
        msg,
        want,
        libc::NFT_MSG_NEWRULE,
        NFTA_RULE_TABLE,
        NFTA_RULE_CHAIN,
    ) {
        *st.chains.entry(chain).or_insert(0) += 1;
    }
}

/// A set of a `GETSET` dump.
fn on_set(st: &mut KernelState, want: &str, msg: &[u8]) {
    if let Some(name) = ours(
        msg,
        want,
        libc::NFT_MSG_NEWSET,
        NFTA_SET_TABLE,
        NFTA_SET_NAME,
    ) {
        st.maps.insert(name);
    }
}

/// The elements of a `GETSETELEM` dump: each element's key.
fn on_elems(keys: &mut HashSet<Vec<u8>>, msg: &[u8]) {
    let Some(list) =
        body(msg, libc::NFT_MSG_NEWSETELEM).and_then(|b| attr(b, NFTA_SET_ELEM_LIST_ELEMENTS))
    else {
        return;
    };
    for (ty, elem) in attrs(list) {
        if ty == NFTA_LIST_ELEM
            && let Some(key) = attr(elem, NFTA_SET_ELEM_KEY).and_then(|k| attr(k, NFTA_DATA_VALUE))
        {
            keys.insert(key.to_vec());
        }
    }
}

/// Sends one GET request (a dump when `dump`) and feeds every answer message to `on_msg`.
/// Returns false when the kernel answered ENOENT (no such table/set).
fn dump(
    sock: &mnl::Socket,
    table: &str,
    family: u16,
    ty: i32,
    dump: bool,
    build: impl FnOnce(*mut libc::nlmsghdr),
    mut on_msg: impl FnMut(&[u8]),
) -> io::Result<bool> {
    let mut storage = vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8)];
    let buf = storage.as_mut_ptr().cast::<u8>();
    let table = CString::new(table).expect("no NUL");
    let flags = libc::NLM_F_ACK as u16 | if dump { NLM_F_DUMP } else { 0 };
    // SAFETY: the buffer is large and aligned; the header and payload are built inside it.
    let len = unsafe {
        let nlh =
            sys::nftnl_nlmsg_build_hdr(buf.cast::<libc::c_char>(), ty as u16, family, flags, 1);
        if dump {
            build(nlh);
        } else {
            let t = sys::nftnl_table_alloc();
            sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, table.as_ptr());
            sys::nftnl_table_nlmsg_build_payload(nlh, t);
            sys::nftnl_table_free(t);
        }
        (*nlh).nlmsg_len as usize
    };
    // SAFETY: `len` bytes of the buffer were written above.
    send(
        sock.as_raw_fd(),
        unsafe { std::slice::from_raw_parts(buf, len) },
        MsgFlags::empty(),
    )?;
    loop {
        // SAFETY: the u64 buffer is reinterpreted as bytes of the same length.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buf, storage.len() * 8) };
        let n = recv(sock.as_raw_fd(), bytes, MsgFlags::empty())?;
        if let Some(done) = frames::reply(&bytes[..n], &mut on_msg) {
            return found(done);
        }
    }
}

/// Whether the answer to a GET request found what it asked for: false when the kernel
/// answered ENOENT (no such table/set), else the answer's outcome.
pub(crate) fn found(answer: io::Result<()>) -> io::Result<bool> {
    match answer {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, ty: u16) -> Vec<u8> {
        [&len.to_ne_bytes()[..], &ty.to_ne_bytes(), &[0; 10]].concat()
    }

    #[test]
    fn enoent_is_not_found_and_other_errors_stay_errors() {
        let err = |c: i32| Err(io::Error::from_raw_os_error(c));
        assert!(found(Ok(())).unwrap());
        assert!(!found(err(libc::ENOENT)).unwrap());
        let e = found(err(libc::EPERM)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn names_and_keys_are_read_from_well_formed_replies_only() {
        let attr = |t: u16, v: &[u8]| {
            let mut a = [
                &((4 + v.len()) as u16).to_ne_bytes()[..],
                &t.to_ne_bytes(),
                v,
            ]
            .concat();
            a.resize((a.len() + 3) & !3, 0);
            a
        };
        let msg = |ty: i32, attrs: &[Vec<u8>]| {
            let body = [vec![1, 0, 0, 0], attrs.concat()].concat();
            let ty = (10u16 << 8) | ty as u16;
            [header(16 + body.len() as u32, ty), body].concat()
        };
        let mut st = KernelState::default();
        let chain = msg(
            libc::NFT_MSG_NEWCHAIN,
            &[attr(1, b"berth\0"), attr(3, b"fwd\0")],
        );
        let rule = msg(
            libc::NFT_MSG_NEWRULE,
            &[attr(1, b"berth\0"), attr(2, b"fwd\0")],
        );
        let other = msg(
            libc::NFT_MSG_NEWRULE,
            &[attr(1, b"filter\0"), attr(2, b"x\0")],
        );
        let set = msg(
            libc::NFT_MSG_NEWSET,
            &[attr(1, b"berth"), attr(2, b"ports")],
        );
        on_chain(&mut st, "berth", &chain);
        on_rule(&mut st, "berth", &rule);
        on_rule(&mut st, "berth", &rule);
        on_rule(&mut st, "berth", &other);
        on_set(&mut st, "berth", &set);
        assert_eq!(st.chains, HashMap::from([("fwd".to_string(), 2)]));
        assert_eq!(st.maps, HashSet::from(["ports".to_string()]));
        let key = |k: &[u8]| attr(1 | 0x8000, &attr(1 | 0x8000, &attr(1, k)));
        let list = [key(b"\x06\0\0\0\x1f\x90"), key(b"\x11")].concat();
        let elems = msg(
            libc::NFT_MSG_NEWSETELEM,
            &[attr(1, b"berth\0"), attr(3 | 0x8000, &list)],
        );
        let mut keys = HashSet::new();
        on_elems(&mut keys, &elems);
        assert_eq!(keys.len(), 2);
        // Found by fuzz/fuzz_targets/nft_dump.rs, when libnftnl parsed these: a chain message
        // in a set-element dump (its name where the elements' nest belongs) made libnftnl exit
        // the process; a rule whose expression has no name made it dereference NULL.
        let mut st2 = KernelState::default();
        on_elems(&mut keys, &chain);
        on_chain(&mut st2, "berth", &elems);
        let nameless = msg(
            libc::NFT_MSG_NEWRULE,
            &[
                attr(1, b"berth\0"),
                attr(2, b"fwd\0"),
                attr(4 | 0x8000, &attr(1 | 0x8000, &attr(2 | 0x8000, &[]))),
            ],
        );
        on_rule(&mut st2, "berth", &nameless);
        assert_eq!(keys.len(), 2);
        assert_eq!(st2.chains, HashMap::from([("fwd".to_string(), 1)]));
        // Truncated and malformed attributes end the walk, never read past the message.
        for cut in 0..elems.len() {
            on_elems(&mut keys, &elems[..cut]);
        }
    }
}
