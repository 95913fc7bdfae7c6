//! Conntrack cleanup over ctnetlink (`conntrack -D` without the binary): after a detach, the
//! flows of the container's addresses are deleted, so a new container that gets the same
//! address never inherits stale flows (a DNATed UDP stream would otherwise keep reaching it).
//! Must run on a thread inside the target netns.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, recv, send};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One conntrack entry: its family and the raw `CTA_TUPLE_ORIG` attribute (to delete it by).
struct Entry {
    family: u8,
    orig: Vec<u8>,
    addrs: Vec<IpAddr>,
}

/// Deletes every conntrack entry whose original or reply tuple holds one of `ips`. Returns how
/// many were deleted.
pub(crate) fn forget(ips: &[IpAddr]) -> io::Result<usize> {
    if ips.is_empty() {
        return Ok(0);
    }
    let want: HashSet<IpAddr> = ips.iter().copied().collect();
    let sock = mnl::Socket::new(mnl::Bus::Netfilter)?;
    let mut entries = Vec::new();
    request(&sock, IPCTNL_MSG_CT_GET, NLM_F_DUMP, 0, &[], |msg| {
        if let Some(e) = parse(msg) {
            entries.push(e);
        }
    })?;
    let mut n = 0;
    for e in entries
        .into_iter()
        .filter(|e| e.addrs.iter().any(|a| want.contains(a)))
    {
        // ENOENT: it expired meanwhile.
        match request(
            &sock,
            IPCTNL_MSG_CT_DELETE,
            NLM_F_ACK,
            e.family,
            &e.orig,
            |_| {},
        ) {
            Ok(()) => n += 1,
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(n)
}

/// Attributes of a netlink payload: (type without flags, value bytes, whole attribute bytes).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8], &[u8])> {
    let mut v = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            break;
        }
        v.push((ty, &b[4..len], &b[..len]));
        let step = (len + 3) & !3;
        b = &b[step.min(b.len())..];
    }
    v
}

/// Addresses of a `CTA_TUPLE_*` attribute.
fn tuple_addrs(tuple: &[u8], out: &mut Vec<IpAddr>) {
    for (ty, val, _) in attrs(tuple) {
        if ty != CTA_TUPLE_IP {
            continue;
        }
        for (_, ip, _) in attrs(val) {
            match ip.len() {
                4 => out.push(IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(ip).expect("len 4"),
                ))),
                16 => out.push(IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(ip).expect("len 16"),
                ))),
                _ => {}
            }
        }
    }
}

/// One `IPCTNL_MSG_CT_NEW` message of a dump (header stripped).
fn parse(msg: &[u8]) -> Option<Entry> {
    let family = *msg.first()?;
    let mut e = Entry {
        family,
        orig: Vec::new(),
        addrs: Vec::new(),
    };
    for (ty, val, whole) in attrs(msg.get(4..)?) {
        match ty {
            CTA_TUPLE_ORIG => {
                e.orig = whole.to_vec();
                tuple_addrs(val, &mut e.addrs);
            }
            CTA_TUPLE_REPLY => tuple_addrs(val, &mut e.addrs),
            _ => {}
        }
    }
    (!e.orig.is_empty()).then_some(e)
}

/// Sends one ctnetlink request and feeds each answer's payload (after the nlmsghdr) to
/// `on_msg`; returns the kernel's error, if any.
fn request(
    sock: &mnl::Socket,
    msg: u16,
    flags: u16,
    family: u8,
    attrs: &[u8],
    mut on_msg: impl FnMut(&[u8]),
) -> io::Result<()> {
    let ty = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
    let len = 16 + 4 + attrs.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend((len as u32).to_ne_bytes());
    buf.extend(ty.to_ne_bytes());
    buf.extend((NLM_F_REQUEST | flags).to_ne_bytes());
    buf.extend(1u32.to_ne_bytes()); // seq
    buf.extend(0u32.to_ne_bytes()); // pid
    buf.extend([family, 0, 0, 0]); // nfgenmsg: family, version, res_id
    buf.extend(attrs);
    send(sock.as_raw_fd(), &buf, MsgFlags::empty())?;
    let mut storage = vec![0u64; 8192];
    loop {
        // SAFETY: the u64 buffer is reinterpreted as bytes of the same length.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(storage.as_mut_ptr().cast::<u8>(), storage.len() * 8)
        };
        let n = recv(sock.as_raw_fd(), bytes, MsgFlags::empty())?;
        let mut off = 0;
        while off + 16 <= n {
            let mlen =
                u32::from_ne_bytes(bytes[off..off + 4].try_into().expect("4 bytes")) as usize;
            let mty = u16::from_ne_bytes(bytes[off + 4..off + 6].try_into().expect("2 bytes"));
            if mlen < 16 || off + mlen > n {
                break;
            }
            match mty {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code =
                        i32::from_ne_bytes(bytes[off + 16..off + 20].try_into().expect("4 bytes"));
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                _ => on_msg(&bytes[off + 16..off + mlen]),
            }
            off += (mlen + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tuples_of_a_dump_message() {
        // nfgenmsg + CTA_TUPLE_ORIG { CTA_TUPLE_IP { SRC 10.0.0.2, DST 198.18.0.1 } }
        let ip = |ty: u16, a: [u8; 4]| [&8u16.to_ne_bytes()[..], &ty.to_ne_bytes(), &a].concat();
        let inner = [ip(1, [10, 0, 0, 2]), ip(2, [198, 18, 0, 1])].concat();
        let tip = [
            &((4 + inner.len()) as u16).to_ne_bytes()[..],
            &(CTA_TUPLE_IP | 0x8000).to_ne_bytes(),
            &inner,
        ]
        .concat();
        let orig = [
            &((4 + tip.len()) as u16).to_ne_bytes()[..],
            &(CTA_TUPLE_ORIG | 0x8000).to_ne_bytes(),
            &tip,
        ]
        .concat();
        let msg = [&[2u8, 0, 0, 0][..], &orig].concat();
        let e = parse(&msg).unwrap();
        assert_eq!(e.family, 2);
        assert_eq!(e.orig, orig);
        assert_eq!(
            e.addrs,
            vec![IpAddr::from([10, 0, 0, 2]), IpAddr::from([198, 18, 0, 1])]
        );
    }
}
