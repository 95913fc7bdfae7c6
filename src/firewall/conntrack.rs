//! Conntrack cleanup over ctnetlink (`conntrack -D` without the binary): after a detach, the
//! flows of the container's addresses are deleted, so a new container that gets the same
//! address never inherits stale flows (a DNATed UDP stream would otherwise keep reaching it).
//! Runs over the firewall's netfilter socket, made inside the target netns.
//!
//! How: a filtered flush per address and direction (`conntrack -D -s IP` and `--reply-src IP`),
//! done by the kernel: it returns at once when the netns tracks no flow, and otherwise walks the
//! table without copying it out. Kernels before filtered flushes (6.4 and older) reject the
//! filter (EINVAL): then the whole table is dumped and matching entries are deleted one by one.
//! The dump walks every bucket of the (global) conntrack hash: ~12 ms here with 262,144
//! buckets, even for a netns with no flow.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use nix::sys::socket::{MsgFlags, recv, send};

use super::frames;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_FILTER: u16 = 25;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
/// `CTA_FILTER_F_CTA_IP_SRC` (kernel-internal, stable ABI of the filter flags).
const FILTER_IP_SRC: u32 = 1;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V6_SRC: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// One conntrack entry: its family and the raw `CTA_TUPLE_ORIG` attribute (to delete it by).
struct Entry {
    family: u8,
    orig: Vec<u8>,
    addrs: Vec<IpAddr>,
}

/// Deletes every conntrack entry whose original or reply tuple holds one of `ips`, over the
/// netfilter socket `fd`. Returns how many were deleted when that is known (a filtered flush
/// does not say: 0).
pub(crate) fn forget(fd: RawFd, ips: &[IpAddr]) -> io::Result<usize> {
    for ip in ips {
        for reply in [false, true] {
            match flush_by_source(fd, *ip, reply) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return forget_by_dump(fd, ips),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(0)
}

/// `conntrack -D -s IP` (or `--reply-src IP`): one filtered flush, done by the kernel.
fn flush_by_source(fd: RawFd, ip: IpAddr, reply: bool) -> io::Result<()> {
    let (family, addr) = match ip {
        IpAddr::V4(a) => (libc::AF_INET as u8, nla(CTA_IP_V4_SRC, &a.octets())),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, nla(CTA_IP_V6_SRC, &a.octets())),
    };
    let tuple_ip = nla(CTA_TUPLE_IP | NLA_F_NESTED, &addr);
    let tuple = if reply {
        CTA_TUPLE_REPLY
    } else {
        CTA_TUPLE_ORIG
    };
    let (orig_flags, reply_flags) = if reply {
        (0, FILTER_IP_SRC)
    } else {
        (FILTER_IP_SRC, 0)
    };
    let filter = [
        nla(CTA_FILTER_ORIG_FLAGS, &orig_flags.to_ne_bytes()),
        nla(CTA_FILTER_REPLY_FLAGS, &reply_flags.to_ne_bytes()),
    ]
    .concat();
    let attrs = [
        nla(tuple | NLA_F_NESTED, &tuple_ip),
        nla(CTA_FILTER | NLA_F_NESTED, &filter),
    ]
    .concat();
    request(fd, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, family, &attrs, |_| {})
}

/// One netlink attribute, padded to 4 bytes.
fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut v = Vec::with_capacity((len + 3) & !3);
    v.extend((len as u16).to_ne_bytes());
    v.extend(ty.to_ne_bytes());
    v.extend(value);
    v.resize((len + 3) & !3, 0);
    v
}

/// The fallback for kernels without filtered flushes: dump every entry of the netns, delete
/// those that hold one of `ips`.
fn forget_by_dump(fd: RawFd, ips: &[IpAddr]) -> io::Result<usize> {
    let want: HashSet<IpAddr> = ips.iter().copied().collect();
    let mut entries = Vec::new();
    request(fd, IPCTNL_MSG_CT_GET, NLM_F_DUMP, 0, &[], |msg| {
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
            fd,
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
    fd: RawFd,
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
    send(fd, &buf, MsgFlags::empty())?;
    let mut storage = vec![0u64; 8192];
    loop {
        // SAFETY: the u64 buffer is reinterpreted as bytes of the same length.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(storage.as_mut_ptr().cast::<u8>(), storage.len() * 8)
        };
        let n = recv(fd, bytes, MsgFlags::empty())?;
        if let Some(done) = frames::reply(&bytes[..n], &mut |msg| on_msg(payload(msg))) {
            return done;
        }
    }
}

/// The payload of one whole message of an answer (after the nlmsghdr; [`frames::reply`]
/// hands on no message shorter than that).
fn payload(msg: &[u8]) -> &[u8] {
    msg.get(16..).unwrap_or_default()
}

#[cfg(feature = "fuzzing")]
/// One whole `IPCTNL_MSG_CT_NEW` message of a dump, as `request` reads it (its payload): its
/// family, the raw `CTA_TUPLE_ORIG` attribute and the addresses of both tuples (`None`: not an
/// entry).
pub(crate) fn parse_entry(msg: &[u8]) -> Option<(u8, Vec<u8>, Vec<IpAddr>)> {
    parse(payload(msg)).map(|e| (e.family, e.orig, e.addrs))
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
