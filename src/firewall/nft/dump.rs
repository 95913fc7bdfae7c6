//! Reads one of berth's tables (`inet berth`, `bridge berth`) back from the kernel (netlink dumps
//! parsed by libnftnl): which chains exist with how many rules, which maps, which elements. What
//! `check` compares with the rendered ruleset. Must run on a thread inside the target netns.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;

use nftnl_sys::{self as sys, libc};
use nix::sys::socket::{MsgFlags, recv, send};

use crate::firewall::frames::{Frame, frames};
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
        |nlh| unsafe {
            let c = sys::nftnl_chain_alloc();
            if sys::nftnl_chain_nlmsg_parse(nlh, c) >= 0
                && is_ours(
                    sys::nftnl_chain_get_str(c, sys::NFTNL_CHAIN_TABLE as u16),
                    name,
                )
            {
                st.chains
                    .entry(cstr(sys::nftnl_chain_get_str(
                        c,
                        sys::NFTNL_CHAIN_NAME as u16,
                    )))
                    .or_insert(0);
            }
            sys::nftnl_chain_free(c);
        },
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
        |nlh| unsafe {
            let r = sys::nftnl_rule_alloc();
            if sys::nftnl_rule_nlmsg_parse(nlh, r) >= 0
                && is_ours(
                    sys::nftnl_rule_get_str(r, sys::NFTNL_RULE_TABLE as u16),
                    name,
                )
            {
                *st.chains
                    .entry(cstr(sys::nftnl_rule_get_str(
                        r,
                        sys::NFTNL_RULE_CHAIN as u16,
                    )))
                    .or_insert(0) += 1;
            }
            sys::nftnl_rule_free(r);
        },
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
        |nlh| unsafe {
            let s = sys::nftnl_set_alloc();
            if sys::nftnl_set_nlmsg_parse(nlh, s) >= 0
                && is_ours(sys::nftnl_set_get_str(s, sys::NFTNL_SET_TABLE as u16), name)
            {
                st.maps
                    .insert(cstr(sys::nftnl_set_get_str(s, sys::NFTNL_SET_NAME as u16)));
            }
            sys::nftnl_set_free(s);
        },
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
            |nlh| unsafe {
                let s = sys::nftnl_set_alloc();
                if sys::nftnl_set_elems_nlmsg_parse(nlh, s) >= 0 {
                    let it = sys::nftnl_set_elems_iter_create(s);
                    let mut e = sys::nftnl_set_elems_iter_cur(it);
                    while !e.is_null() {
                        let mut len = 0u32;
                        let p =
                            sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut len);
                        if !p.is_null() {
                            keys.insert(
                                std::slice::from_raw_parts(p.cast::<u8>(), len as usize).to_vec(),
                            );
                        }
                        e = sys::nftnl_set_elems_iter_next(it);
                    }
                    sys::nftnl_set_elems_iter_destroy(it);
                }
                sys::nftnl_set_free(s);
            },
        )?;
    }
    Ok(st)
}

fn is_ours(table: *const libc::c_char, name: &str) -> bool {
    !table.is_null() && cstr(table) == name
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
    table: &str,
    family: u16,
    ty: i32,
    dump: bool,
    build: impl FnOnce(*mut libc::nlmsghdr),
    mut on_msg: impl FnMut(*const libc::nlmsghdr),
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
        for frame in frames(&bytes[..n]) {
            match frame {
                Frame::Done | Frame::Error(0) => return Ok(true),
                Frame::Error(c) if c == -libc::ENOENT => return Ok(false),
                Frame::Error(c) => return Err(Frame::error(c)),
                Frame::Malformed => return Err(Frame::error(0)),
                // Messages start 4-aligned in a u64-aligned buffer: aligned for `nlmsghdr`.
                Frame::Msg(m) => on_msg(m.as_ptr().cast::<libc::nlmsghdr>()),
            }
        }
    }
}
