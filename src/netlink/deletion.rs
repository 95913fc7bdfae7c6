//! Who sits out the tail of a link deletion.
//!
//! The kernel answers `RTM_DELLINK` only after an RCU barrier that runs once the link has already
//! left its namespace (~20 ms here, whatever the API). `RtKernel::delete_link` (a [`super::Kernel`] method) returns
//! as soon as the link is gone from the namespace; the request itself is sent by someone who
//! waits for that answer in the background ([`Teardown`]):
//!
//! - [`Teardown::Thread`] (the default): a thread of the caller's process. Right for a long-lived
//!   process, a container runtime: the thread ends on its own a few ms later.
//! - [`Teardown::Child`]: a detached child process (`short_lived`). Right for a process
//!   that exits after the operation (`netctl`, a CNI plugin): a process cannot finish exiting
//!   while one of its threads is inside a syscall, so with a thread its caller would wait out
//!   the barrier on its exit, ~20 ms of every process-per-operation detach. The child keeps
//!   only the netlink socket it sends on and the socket pair it answers on.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Who waits for the kernel's answer to a link deletion (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Teardown {
    /// A thread of this process (for long-lived processes).
    #[default]
    Thread,
    /// A child process of its own (for processes that exit after the operation).
    Child,
}

impl Teardown {
    /// Sends `RTM_DELLINK` for `index` on a new socket of the calling thread's netns and returns
    /// the kernel's answer, waited for on this thread, which blocks ([`Teardown::Child`]: the
    /// child's answer, relayed; the thread still blocks, but in an interruptible read that
    /// does not hold up the process's exit).
    pub(super) fn delete_link(self, index: u32) -> io::Result<()> {
        let request = del_link_request(index);
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        match self {
            Teardown::Thread => {
                socket.send(&request, 0)?;
                await_ack(&mut socket)
            }
            Teardown::Child => delete_in_child(&mut socket, &request),
        }
    }
}

/// The serialised `RTM_DELLINK` request for `index`, acknowledged, sequence number 1.
fn del_link_request(index: u32) -> Vec<u8> {
    let mut link = LinkMessage::default();
    link.header.index = index;
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::DelLink(link));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Reads answers on `socket` until the acknowledgement (or error) of the request.
fn await_ack(socket: &mut Socket) -> io::Result<()> {
    loop {
        let (reply, _) = socket.recv_from_full()?;
        let mut off = 0;
        while off < reply.len() {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[off..])
                .map_err(|e| io::Error::other(e.to_string()))?;
            let len = m.header.length as usize;
            if let NetlinkPayload::Error(e) = m.payload {
                return match e.code {
                    None => Ok(()),
                    Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                };
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

/// Sends `request` on `socket` from a detached child ([`crate::short_lived::detach`]), which
/// waits for the kernel's answer and writes its errno (0: done) on a socket pair; this thread
/// reads that errno. When no child can be forked, the request is sent from this thread.
fn delete_in_child(socket: &mut Socket, request: &[u8]) -> io::Result<()> {
    use crate::short_lived::{Forked, close_all_but, detach, errno};
    let (ours, theirs) = crate::short_lived::socket_pair(libc::SOCK_SEQPACKET)?;
    let (nl, answer) = (socket.as_raw_fd(), theirs.as_raw_fd());
    // SAFETY: the worker makes raw syscalls only (close_range, send, recv, _exit) on memory
    // allocated before the fork, and never returns into Rust code that could allocate or lock.
    match unsafe { detach() } {
        Ok(Forked::Worker) => unsafe {
            close_all_but(&mut [nl, answer]);
            let code = loop {
                if libc::send(nl, request.as_ptr().cast(), request.len(), 0) >= 0 {
                    break read_ack(nl);
                }
                if errno() != libc::EINTR {
                    break errno();
                }
            };
            let bytes = code.to_ne_bytes();
            libc::send(answer, bytes.as_ptr().cast(), 4, libc::MSG_NOSIGNAL);
            libc::_exit(0)
        },
        Ok(Forked::Caller) => {}
        Err(_) => {
            socket.send(request, 0)?;
            return await_ack(socket);
        }
    }
    drop(theirs);
    let mut code = [0u8; 4];
    loop {
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::recv(ours.as_raw_fd(), code.as_mut_ptr().cast(), 4, 0) };
        match n {
            4 => break,
            n if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            n if n < 0 => return Err(io::Error::last_os_error()),
            _ => {
                return Err(io::Error::other(
                    "the process deleting the link ended without an answer",
                ));
            }
        }
    }
    match i32::from_ne_bytes(code) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Reads netlink answers on `nl` (into a stack buffer) until an `NLMSG_ERROR`: its errno, 0 for
/// an acknowledgement.
///
/// # Safety
/// Only in the forked worker (raw syscalls on `nl`).
unsafe fn read_ack(nl: RawFd) -> i32 {
    const NLMSG_ERROR: u16 = 2;
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: reads into a stack buffer of the length given.
        let n = unsafe { libc::recv(nl, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            // SAFETY: reading this thread's errno.
            let e = unsafe { crate::short_lived::errno() };
            if e == libc::EINTR {
                continue;
            }
            return e;
        }
        let n = n as usize;
        let mut off = 0;
        while off + 20 <= n {
            let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]);
            let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes([
                    buf[off + 16],
                    buf[off + 17],
                    buf[off + 18],
                    buf[off + 19],
                ]);
                return -code;
            }
            if len < 16 {
                break;
            }
            off += (len as usize + 3) & !3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without root: deleting an index that does not exist reports the kernel's answer
    /// (`ENODEV`, or `EPERM` for a user without `CAP_NET_ADMIN`) both ways, relayed intact by
    /// the child.
    #[test]
    fn both_ways_relay_the_kernel_answer() {
        let index = 0x7fff_fff0;
        let a = Teardown::Thread.delete_link(index).unwrap_err();
        let b = Teardown::Child.delete_link(index).unwrap_err();
        assert_eq!(a.raw_os_error(), b.raw_os_error());
        assert!(matches!(
            a.raw_os_error(),
            Some(libc::ENODEV) | Some(libc::EPERM)
        ));
    }
}
