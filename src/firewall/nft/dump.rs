//! Reads one of berth's tables (`inet berth`, `bridge berth`) back from the kernel (netlink dumps
//! parsed by libnftnl): which chains exist with how many rules, which maps, which elements. What
//! `check` compares with the rendered ruleset. Must run on a thread inside the target netns.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;

use nftnl_sys::{self as sys, libc};
use nix::sys::socket::{MsgFlags, recv, send};

use crate::firewall::ruleset::{Family, TABLE};
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;

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

/// Reads both of berth's tables: `inet berth` and `bridge berth`.
pub(crate) fn read_both() -> io::Result<(KernelState, KernelState)> {
    Ok((read_table(Family::Inet)?, read_table(Family::Bridge)?))
}

/// Reads the whole of table `FAMILY berth` (a missing table reads as empty).
pub(crate) fn read_table(family: Family) -> io::Result<KernelState> {
    let family = super::msg::nfproto(family);
    let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let table = CString::new(TABLE).expect("no NUL");
    let mut st = KernelState::default();
    // SAFETY (all closures below): each builds into / parses from buffers sized for a maximal
    // message, with libnftnl objects allocated and freed within the call.
    let found = dump(&sock, family, libc::NFT_MSG_GETTABLE, false, |_| {}, |_| {})?;
    if !found {
        return Ok(st);
    }
    st.table = true;
    dump(
        &sock,
        family,
        libc::NFT_MSG_GETCHAIN,
        true,
        |nlh| unsafe {
            let c = sys::nftnl_chain_alloc();
            sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, table.as_ptr());
            sys::nftnl_chain_nlmsg_build_payload(nlh, c);
            sys::nftnl_chain_free(c);
        },
        |nlh| unsafe { on_chain(&mut st, nlh) },
    )?;
    dump(
        &sock,
        family,
        libc::NFT_MSG_GETRULE,
        true,
        |nlh| unsafe {
            let r = sys::nftnl_rule_alloc();
            sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
            sys::nftnl_rule_nlmsg_build_payload(nlh, r);
            sys::nftnl_rule_free(r);
        },
        |nlh| unsafe { on_rule(&mut st, nlh) },
    )?;
    dump(
        &sock,
        family,
        libc::NFT_MSG_GETSET,
        true,
        |nlh| unsafe {
            let s = sys::nftnl_set_alloc();
            sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_nlmsg_build_payload(nlh, s);
            sys::nftnl_set_free(s);
        },
        |nlh| unsafe { on_set(&mut st, nlh) },
    )?;
    for map in st.maps.clone() {
        let name = CString::new(map.as_str()).expect("no NUL");
        let keys = st.elements.entry(map).or_default();
        dump(
            &sock,
            family,
            libc::NFT_MSG_GETSETELEM,
            true,
            |nlh| unsafe {
                let s = sys::nftnl_set_alloc();
                sys::nftnl_set_set_str(s, sys::NFTNL_SET_TABLE as u16, table.as_ptr());
                sys::nftnl_set_set_str(s, sys::NFTNL_SET_NAME as u16, name.as_ptr());
                sys::nftnl_set_elems_nlmsg_build_payload(nlh, s);
                sys::nftnl_set_free(s);
            },
            |nlh| unsafe { on_elems(keys, nlh) },
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
/// Folds one dump message into `st` (elements go to map `map`).
///
/// # Safety
/// `nlh` points at a whole netlink message: `nlmsg_len` bytes, readable, 4-byte aligned.
pub(crate) unsafe fn on_message(
    st: &mut KernelState,
    reply: Reply,
    map: &str,
    nlh: *const libc::nlmsghdr,
) {
    // SAFETY: as the caller promises.
    unsafe {
        match reply {
            Reply::Chain => on_chain(st, nlh),
            Reply::Rule => on_rule(st, nlh),
            Reply::Set => on_set(st, nlh),
            Reply::Elems => on_elems(st.elements.entry(map.to_string()).or_default(), nlh),
        }
    }
}

/// What a top-level attribute of a dump message must be for libnftnl, which ends the whole
/// process (`abi_breakage()`: "nf_tables kernel ABI is broken", `exit`) on one that does not
/// validate, and `strdup`s strings without a bound.
#[derive(Clone, Copy)]
enum Attr {
    /// NUL-terminated string.
    Str,
    /// Exactly 4 bytes.
    U32,
    /// Exactly 8 bytes.
    U64,
    /// Empty, or at least one attribute header.
    Nested,
    /// Anything (binary, padding).
    Any,
}

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The top-level attributes libnftnl validates in a reply of type `NFT_MSG_NEW*` (index:
/// attribute type; types past the end are ignored by libnftnl too).
fn schema(msg_type: i32) -> &'static [Attr] {
    use Attr::*;
    match msg_type {
        // NFTA_CHAIN_*: TABLE HANDLE NAME HOOK POLICY USE TYPE COUNTERS PAD FLAGS ID USERDATA
        libc::NFT_MSG_NEWCHAIN => &[
            Any, Str, U64, Str, Nested, U32, U32, Str, Nested, Any, U32, U32, Any,
        ],
        // NFTA_RULE_*: TABLE CHAIN HANDLE EXPRESSIONS COMPAT POSITION USERDATA PAD ID POSITION_ID
        libc::NFT_MSG_NEWRULE => &[Any, Str, Str, U64, Nested, Nested, U64, Any, Any, U32, U32],
        // NFTA_SET_*: TABLE NAME FLAGS KEY_TYPE KEY_LEN DATA_TYPE DATA_LEN POLICY DESC ID
        // TIMEOUT GC_INTERVAL USERDATA PAD OBJ_TYPE HANDLE EXPR EXPRESSIONS
        libc::NFT_MSG_NEWSET => &[
            Any, Str, Str, U32, U32, U32, U32, U32, U32, Nested, U32, U64, U32, Any, Any, U32, U64,
            Nested, Nested,
        ],
        // NFTA_SET_ELEM_LIST_*: TABLE SET ELEMENTS SET_ID
        libc::NFT_MSG_NEWSETELEM => &[Any, Str, Str, Nested, U32],
        _ => &[],
    }
}

/// Whether `msg`, one whole netlink message, is a reply of type `msg_type` (`NFT_MSG_NEW*`)
/// whose top-level attributes are what libnftnl takes: anything else (another message type, a
/// string without its NUL, a number of the wrong size) is skipped rather than handed to a
/// parser that would end the process or read past the message.
pub(crate) fn well_formed(msg: &[u8], msg_type: i32) -> bool {
    let (Some(hdr), Some(mut b)) = (msg.get(..20), msg.get(20..)) else {
        return false;
    };
    let ty = u16::from_ne_bytes([hdr[4], hdr[5]]);
    if i32::from(ty) != (i32::from(NFNL_SUBSYS_NFTABLES) << 8 | msg_type) {
        return false;
    }
    let schema = schema(msg_type);
    while b.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let t = usize::from(u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK);
        if len < 4 || len > b.len() {
            return false;
        }
        let v = &b[4..len];
        let ok = match schema.get(t) {
            Some(Attr::Str) => v.last() == Some(&0),
            Some(Attr::U32) => v.len() == 4,
            Some(Attr::U64) => v.len() == 8,
            Some(Attr::Nested) => v.is_empty() || v.len() >= 4,
            Some(Attr::Any) | None => true,
        };
        if !ok {
            return false;
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    true
}

/// The bytes of the message at `nlh`. Safety: `nlh` points at a whole message.
unsafe fn bytes_of<'a>(nlh: *const libc::nlmsghdr) -> &'a [u8] {
    // SAFETY: as the caller promises: `nlmsg_len` readable bytes.
    unsafe { std::slice::from_raw_parts(nlh.cast::<u8>(), (*nlh).nlmsg_len as usize) }
}

/// A chain of a `GETCHAIN` dump. Safety: as [`on_message`].
unsafe fn on_chain(st: &mut KernelState, nlh: *const libc::nlmsghdr) {
    // SAFETY: as the caller promises.
    if !well_formed(unsafe { bytes_of(nlh) }, libc::NFT_MSG_NEWCHAIN) {
        return;
    }
    // SAFETY: the chain object is allocated and freed here; libnftnl parses within nlmsg_len.
    unsafe {
        let c = sys::nftnl_chain_alloc();
        if sys::nftnl_chain_nlmsg_parse(nlh, c) >= 0
            && is_ours(sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16))
        {
            st.chains
                .entry(cstr(sys::nftnl_chain_get_str(
                    c,
                    sys::NFTNL_CHAIN_NAME as u16,
                )))
                .or_insert(0);
        }
        sys::nftnl_chain_free(c);
    }
}

/// A rule of a `GETRULE` dump. Safety: as [`on_message`].
unsafe fn on_rule(st: &mut KernelState, nlh: *const libc::nlmsghdr) {
    // SAFETY: as the caller promises.
    if !well_formed(unsafe { bytes_of(nlh) }, libc::NFT_MSG_NEWRULE) {
        return;
    }
    // SAFETY: as in `on_chain`.
    unsafe {
        let r = sys::nftnl_rule_alloc();
        if sys::nftnl_rule_nlmsg_parse(nlh, r) >= 0
            && is_ours(sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16))
        {
            *st.chains
                .entry(cstr(sys::nftnl_rule_get_str(
                    r,
                    sys::NFTNL_RULE_CHAIN as u16,
                )))
                .or_insert(0) += 1;
        }
        sys::nftnl_rule_free(r);
    }
}

/// A set of a `GETSET` dump. Safety: as [`on_message`].
unsafe fn on_set(st: &mut KernelState, nlh: *const libc::nlmsghdr) {
    // SAFETY: as the caller promises.
    if !well_formed(unsafe { bytes_of(nlh) }, libc::NFT_MSG_NEWSET) {
        return;
    }
    // SAFETY: as in `on_chain`.
    unsafe {
        let s = sys::nftnl_set_alloc();
        if sys::nftnl_set_nlmsg_parse(nlh, s) >= 0
            && is_ours(sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16))
        {
            st.maps
                .insert(cstr(sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16)));
        }
        sys::nftnl_set_free(s);
    }
}

/// The elements of a `GETSETELEM` dump. Safety: as [`on_message`].
unsafe fn on_elems(keys: &mut HashSet<Vec<u8>>, nlh: *const libc::nlmsghdr) {
    // SAFETY: as the caller promises.
    if !well_formed(unsafe { bytes_of(nlh) }, libc::NFT_MSG_NEWSETELEM) {
        return;
    }
    // SAFETY: as in `on_chain`; each key is `len` bytes owned by its element, copied out.
    unsafe {
        let s = sys::nftnl_set_alloc();
        if sys::nftnl_set_elems_nlmsg_parse(nlh, s) >= 0 {
            let it = sys::nftnl_set_elems_iter_create(s);
            let mut e = sys::nftnl_set_elems_iter_cur(it);
            while !e.is_null() {
                let mut len = 0u32;
                let p = sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut len);
                if !p.is_null() {
                    keys.insert(std::slice::from_raw_parts(p.cast::<u8>(), len as usize).to_vec());
                }
                e = sys::nftnl_set_elems_iter_next(it);
            }
            sys::nftnl_set_elems_iter_destroy(it);
        }
        sys::nftnl_set_free(s);
    }
}

fn is_ours(table: *const libc::c_char) -> bool {
    !table.is_null() && cstr(table) == TABLE
}

fn cstr(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libnftnl returns NUL-terminated strings owned by the object, alive here.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Sends one GET request (a dump when `dump`) and feeds every answer message to `on_msg`.
/// Returns false when the kernel answered ENOENT (no such table/set).
fn dump(
    sock: &mnl::Socket,
    family: u16,
    ty: i32,
    dump: bool,
    build: impl FnOnce(*mut libc::nlmsghdr),
    mut on_msg: impl FnMut(*const libc::nlmsghdr),
) -> io::Result<bool> {
    let mut storage = vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8)];
    let buf = storage.as_mut_ptr().cast::<u8>();
    let table = CString::new(TABLE).expect("no NUL");
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
        if let Some(done) = walk(&bytes[..n], &mut on_msg) {
            return done;
        }
    }
}

/// Walks the netlink messages of one `recv` (`bytes` starts 4-byte aligned), handing each
/// answer message to `on_msg`. `Some` once the reply is complete: `Ok(true)` at DONE or an
/// ACK, `Ok(false)` for ENOENT, else the kernel's error; `None` when more is to be received.
pub(crate) fn walk(
    bytes: &[u8],
    on_msg: &mut impl FnMut(*const libc::nlmsghdr),
) -> Option<io::Result<bool>> {
    let n = bytes.len();
    let mut off = 0;
    while off + 16 <= n {
        let mlen = u32::from_ne_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        let mty = u16::from_ne_bytes(bytes[off + 4..off + 6].try_into().unwrap());
        if mlen < 16 || mlen > n - off {
            break;
        }
        match mty {
            NLMSG_DONE => return Some(Ok(true)),
            NLMSG_ERROR => {
                // An ERROR message too short to hold its code is not one the kernel sends.
                let Some(code) = bytes.get(off + 16..off + 20).filter(|_| mlen >= 20) else {
                    return Some(Err(io::Error::from_raw_os_error(libc::EBADMSG)));
                };
                let code = i32::from_ne_bytes(code.try_into().unwrap());
                return Some(match code {
                    0 => Ok(true),
                    c if c.wrapping_neg() == libc::ENOENT => Ok(false),
                    c => Err(io::Error::from_raw_os_error(c.wrapping_neg())),
                });
            }
            _ => on_msg(bytes[off..off + mlen].as_ptr().cast::<libc::nlmsghdr>()),
        }
        off += (mlen + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, ty: u16) -> Vec<u8> {
        [&len.to_ne_bytes()[..], &ty.to_ne_bytes(), &[0; 10]].concat()
    }

    #[test]
    fn replies_end_at_done_ack_enoent_or_error() {
        let mut seen = 0;
        let mut count = |_: *const libc::nlmsghdr| seen += 1;
        let err = |code: i32| [header(20, NLMSG_ERROR), code.to_ne_bytes().to_vec()].concat();
        assert!(matches!(
            walk(&header(16, NLMSG_DONE), &mut count),
            Some(Ok(true))
        ));
        assert!(matches!(walk(&err(0), &mut count), Some(Ok(true))));
        assert!(matches!(
            walk(&err(-libc::ENOENT), &mut count),
            Some(Ok(false))
        ));
        let e = walk(&err(-libc::EPERM), &mut count).unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        // Too short to hold a code (it used to be read past the message), and a code that
        // cannot be negated (it used to overflow).
        let e = walk(&header(16, NLMSG_ERROR), &mut count)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADMSG));
        assert!(walk(&err(i32::MIN), &mut count).unwrap().is_err());
        // Messages are handed on whole; a truncated one is not; then more is to be received.
        let two = [header(20, 0xa03), vec![1, 0, 0, 0], header(16, 0xa03)].concat();
        assert!(walk(&two, &mut count).is_none());
        assert!(walk(&header(32, 0xa03), &mut count).is_none());
        assert_eq!(seen, 2);
    }

    #[test]
    fn only_well_formed_replies_reach_libnftnl() {
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
        let chain = msg(
            libc::NFT_MSG_NEWCHAIN,
            &[attr(1, b"berth\0"), attr(3, b"fwd\0")],
        );
        assert!(well_formed(&chain, libc::NFT_MSG_NEWCHAIN));
        // Found by fuzz/fuzz_targets/nft_dump.rs: a chain message in a set-element dump has its
        // name where the elements' nest belongs, and libnftnl exits the process on it.
        assert!(!well_formed(&chain, libc::NFT_MSG_NEWSETELEM));
        let elems = msg(
            libc::NFT_MSG_NEWSETELEM,
            &[attr(1, b"berth\0"), attr(3, b"x\0")],
        );
        assert!(!well_formed(&elems, libc::NFT_MSG_NEWSETELEM));
        for bad in [
            msg(libc::NFT_MSG_NEWCHAIN, &[attr(1, b"berth")]),
            msg(libc::NFT_MSG_NEWCHAIN, &[attr(2, &[0; 4])]),
            msg(libc::NFT_MSG_NEWSET, &[attr(3, &[0; 2])]),
            msg(libc::NFT_MSG_NEWRULE, &[attr(1, b"")]),
        ] {
            let ty = i32::from(bad[4]);
            assert!(!well_formed(&bad, ty), "{bad:?}");
        }
        let mut st = KernelState::default();
        let aligned: Vec<u32> = chain
            .chunks(4)
            .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        // SAFETY: a whole message in an aligned copy.
        unsafe { on_chain(&mut st, aligned.as_ptr().cast()) };
        assert_eq!(
            st.chains.get("fwd"),
            Some(&0),
            "a well-formed chain is read"
        );
    }
}
