//! Who sits out the tail of a link deletion.
//!
//! The kernel answers `RTM_DELLINK` only after an RCU barrier that runs once the link has already
//! left its namespace (~20 ms here, whatever the API). [`super::RtKernel::delete_link`] returns
//! as soon as the link is gone from the namespace; the request itself is sent by someone who
//! waits for that answer in the background ([`Teardown`]):
//!
//! - [`Teardown::Thread`] (the default): a thread of the caller's process. Right for a long-lived
//!   process, a container runtime: the thread ends on its own a few ms later.
//! - [`Teardown::Child`]: a child process of its own (forked twice, so nobody has to reap it).
//!   Right for a process that exits after the operation (`netctl`, a CNI plugin): a process
//!   cannot finish exiting while one of its threads is inside a syscall, so with a thread its
//!   caller would wait out the barrier on its exit, ~20 ms of every process-per-operation detach.
//!   The child shares nothing but the netlink socket it sends on and the pipe it answers on: it
//!   closes every other inherited descriptor first (the state lock, the caller's stdout), so
//!   neither a lock nor a reader of the caller's output waits for it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
            Teardown::Child => delete_in_child(&socket, &request),
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

/// Forks twice: the grandchild (reparented to init, or the nearest subreaper, which reaps it)
/// sends `request` on `socket`, waits for the kernel's answer and writes its errno (0: done) on
/// a socket pair; this thread reaps the intermediate child at once and reads that errno.
fn delete_in_child(socket: &Socket, request: &[u8]) -> io::Result<()> {
    let (ours, theirs) = answer_pair()?;
    let nl = socket.as_raw_fd();
    // SAFETY: between fork and `_exit` the children call only async-signal-safe functions
    // (raw syscalls: fork, close_range, send, recv, _exit) on memory allocated before the
    // fork; they never return into Rust code that could allocate or take a lock.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above.
        unsafe { child(nl, theirs.as_raw_fd(), request) }
    }
    drop(theirs);
    reap(pid);
    let mut errno = [0u8; 4];
    loop {
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::recv(ours.as_raw_fd(), errno.as_mut_ptr().cast(), 4, 0) };
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
    match i32::from_ne_bytes(errno) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// A connected `SOCK_SEQPACKET` pair, close-on-exec: the answer of the deleting process.
fn answer_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors the kernel returns.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for the intermediate child, which exits right after forking (a caller that reaps
/// every child itself may have taken it first: `ECHILD` is fine).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: plain syscall on our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// The children's side of [`delete_in_child`]; never returns.
///
/// # Safety
/// Only to be called right after `fork` in the child, with `nl` and `answer` open and
/// `request` readable.
unsafe fn child(nl: RawFd, answer: RawFd, request: &[u8]) -> ! {
    // SAFETY (whole body): raw async-signal-safe syscalls only; see `delete_in_child`.
    unsafe {
        // The intermediate exits at once, so nobody waits for (or has to reap) the worker.
        // If this fork fails, the intermediate does the work itself (its parent just waits).
        let pid = libc::fork();
        if pid > 0 {
            libc::_exit(0);
        }
        close_all_but(nl, answer);
        let errno = loop {
            let n = libc::send(nl, request.as_ptr().cast(), request.len(), 0);
            if n >= 0 {
                break read_ack(nl);
            }
            let e = *libc::__errno_location();
            if e != libc::EINTR {
                break e;
            }
        };
        let bytes = errno.to_ne_bytes();
        libc::send(answer, bytes.as_ptr().cast(), 4, libc::MSG_NOSIGNAL);
        libc::_exit(0)
    }
}

/// Closes every descriptor except `a` and `b` (`close_range`, three spans).
///
/// # Safety
/// Only in the forked child: the descriptors closed are that process's copies.
unsafe fn close_all_but(a: RawFd, b: RawFd) {
    let (lo, hi) = (a.min(b) as u32, a.max(b) as u32);
    let close = |first: u32, last: u32| {
        if first <= last {
            // SAFETY: closing descriptors of this process only.
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        }
    };
    if lo > 0 {
        close(0, lo - 1);
    }
    if hi > lo + 1 {
        close(lo + 1, hi - 1);
    }
    close(hi + 1, u32::MAX);
}

/// Reads netlink answers on `nl` (into a stack buffer) until an `NLMSG_ERROR`: its errno, 0 for
/// an acknowledgement.
///
/// # Safety
/// Only in the forked child (raw syscalls on `nl`).
unsafe fn read_ack(nl: RawFd) -> i32 {
    const NLMSG_ERROR: u16 = 2;
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: reads into a stack buffer of the length given.
        let n = unsafe { libc::recv(nl, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            // SAFETY: reading this thread's errno.
            let e = unsafe { *libc::__errno_location() };
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
