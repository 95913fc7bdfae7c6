//! Sends one batch of ops as a single nf_tables transaction and collects the kernel's answer.
//!
//! Pitfalls handled: all batch pages go out in one `sendmsg` (page by page the
//! kernel rejects the batch with EINVAL); on a failed batch the batch end is never acknowledged,
//! so after the first error the remaining answers are drained without blocking; the receive
//! buffer is aligned for `nlmsghdr`; element lists are sent [`ELEMS_PER_MSG`] elements per message
//! (one message must fit `nft_nlmsg_maxsize()`, 64 KiB + a page). The socket is the firewall's
//! long-lived one ([`crate::firewall::socket`]): it was made inside the target netns.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use nftnl::{Batch, MsgType};
use nix::sys::socket::{MsgFlags, recv, sendmsg, setsockopt, sockopt};

use super::msg::OpMsg;
use crate::firewall::frames::{Frame, frames};
use crate::firewall::ruleset::Op;

/// Elements per set-element message: 512 of the largest (an IPv6 link key, or an IPv6 port key
/// with its data, ~70 bytes with attribute headers) take ~36 KiB.
pub(crate) const ELEMS_PER_MSG: usize = 512;

/// `op` (unwrapped) with its element list split into messages of at most [`ELEMS_PER_MSG`];
/// `None` when it fits one.
fn split(op: &Op) -> Option<Vec<Op>> {
    match op {
        Op::AddElems { map, elems } if elems.len() > ELEMS_PER_MSG => Some(
            elems
                .chunks(ELEMS_PER_MSG)
                .map(|c| Op::AddElems {
                    map,
                    elems: c.to_vec(),
                })
                .collect(),
        ),
        Op::EnsureElems { map, elems } if elems.len() > ELEMS_PER_MSG => Some(
            elems
                .chunks(ELEMS_PER_MSG)
                .map(|c| Op::EnsureElems {
                    map,
                    elems: c.to_vec(),
                })
                .collect(),
        ),
        Op::DelElems { map, keys } if keys.len() > ELEMS_PER_MSG => Some(
            keys.chunks(ELEMS_PER_MSG)
                .map(|c| Op::DelElems {
                    map,
                    keys: c.to_vec(),
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Applies `ops` atomically over `fd`: all of them or none. Returns the first errno the kernel
/// reported.
pub(crate) fn transact(fd: RawFd, ops: &[Op]) -> io::Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new();
    for op in ops {
        let (family, op) = op.in_family();
        match split(op) {
            None => batch.add(&OpMsg(op, family), MsgType::Add),
            Some(parts) => {
                for op in &parts {
                    batch.add(&OpMsg(op, family), MsgType::Add);
                }
            }
        }
    }
    let batch = batch.finalize();
    let pages: Vec<IoSlice<'_>> = batch.iter().map(IoSlice::new).collect();
    let total: usize = pages.iter().map(|p| p.len()).sum();
    if total > 128 * 1024 {
        // A batch must go in one sendmsg, which fails with EMSGSIZE past the send buffer
        // (~200 KiB by default; 10,000 link elements take ~600 KiB). Root may exceed wmem_max.
        // SAFETY: `fd` is the socket's, alive for this borrow.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if setsockopt(&sock, sockopt::SndBufForce, &total).is_err() {
            setsockopt(&sock, sockopt::SndBuf, &total)?;
        }
    }
    let sent = sendmsg::<()>(fd, &pages, &[], MsgFlags::empty(), None)?;
    if sent != total {
        return Err(io::Error::other("nf_tables batch sent partially"));
    }
    let mut expected = batch.sequence_numbers().len();
    // u64 storage keeps the buffer aligned for nlmsghdr.
    let mut storage = vec![0u64; (nftnl::nft_nlmsg_maxsize() as usize).div_ceil(8)];
    let mut first_err: Option<io::Error> = None;
    while expected > 0 {
        let flags = if first_err.is_some() {
            MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::empty()
        };
        // SAFETY: the u64 buffer is reinterpreted as bytes of the same total length.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(storage.as_mut_ptr().cast::<u8>(), storage.len() * 8)
        };
        let n = match recv(fd, buf, flags) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) if first_err.is_some() => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for frame in frames(&buf[..n]) {
            match frame {
                Frame::Error(code) => {
                    expected = expected.saturating_sub(1);
                    if code != 0 && first_err.is_none() {
                        first_err = Some(Frame::error(code));
                    }
                }
                // Nothing more can be read from this answer: no acknowledgement will come.
                Frame::Malformed(_) => return Err(first_err.unwrap_or(Frame::error(0))),
                Frame::Done | Frame::Msg(_) => {}
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
