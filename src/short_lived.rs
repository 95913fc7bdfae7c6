//! What a short-lived process (`netctl`, a CNI plugin: one operation, then exit) leaves to
//! children of its own, so that its exit does not wait for the kernel
//! ([`crate::HostBuilder::short_lived`]).
//!
//! Two kinds of kernel work outlast an operation by an RCU grace period (10–20 ms here):
//! - the answer to a link deletion (`RTM_DELLINK` returns after an RCU barrier, once the link
//!   has left its namespace): a process cannot finish exiting while one of its threads waits
//!   for it ([`crate::netlink::Teardown::Child`] sends it from a child);
//! - the last close of a netfilter netlink socket after an nf_tables transaction: the kernel
//!   waits there for the transaction's destroy work, an RCU grace period
//!   (`nft_rcv_nl_event` → `nf_tables_trans_destroy_flush_work`), and a process's exit closes
//!   its sockets. [`hold_past_exit`] gives a child a copy of the socket that it closes only
//!   after this process has gone, so the wait happens there.
//!
//! The children are forked twice (reparented to init, or the nearest subreaper, which reaps
//! them; the intermediate is reaped at once) and close every inherited descriptor but the ones
//! they need: the caller's state lock, pipes and stdout are never held up by them. Between fork
//! and `_exit` they make raw, async-signal-safe syscalls only, on memory allocated before the
//! fork.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Which side of [`detach`] returned.
pub(crate) enum Forked {
    /// The calling process, after the intermediate child was reaped.
    Caller,
    /// The detached grandchild: it must end with `libc::_exit` and may only make
    /// async-signal-safe calls.
    Worker,
}

/// Forks a worker that nobody waits for: twice, the intermediate exiting at once. An error
/// (either fork failed) means no worker runs.
///
/// # Safety
/// The caller's [`Forked::Worker`] branch may only make async-signal-safe calls on memory
/// allocated before this call, and must end with `libc::_exit`.
pub(crate) unsafe fn detach() -> io::Result<Forked> {
    // SAFETY: fork has no preconditions; the child's obligations are the caller's.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above.
        match unsafe { libc::fork() } {
            0 => return Ok(Forked::Worker),
            // SAFETY: ending the intermediate; status 1 tells the caller no worker runs.
            p => unsafe { libc::_exit(if p > 0 { 0 } else { 1 }) },
        }
    }
    let mut status = 0;
    // SAFETY: plain syscall on our own child.
    let r = loop {
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break r;
        }
    };
    // A caller that reaps every child itself may have taken it first (ECHILD): the status is
    // then unknown, and the worker most likely runs.
    if r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other("could not fork the worker"));
    }
    Ok(Forked::Caller)
}

/// Closes every descriptor of this process except those in `keep` (`close_range` over the gaps).
///
/// # Safety
/// Only in a forked worker ([`detach`]): the descriptors closed are that process's copies.
pub(crate) unsafe fn close_all_but(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut first: u32 = 0;
    for &fd in keep.iter() {
        let fd = fd as u32;
        if fd > first {
            // SAFETY: closing descriptors of this process only.
            unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0) };
        }
        first = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
}

/// A connected pair of `kind` sockets (`SOCK_STREAM`, `SOCK_SEQPACKET`), close-on-exec: how a
/// worker answers, or what a test holds.
pub(crate) fn socket_pair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors the kernel returns.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
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

/// The calling thread's `errno`.
///
/// # Safety
/// None beyond reading a thread-local; async-signal-safe.
pub(crate) unsafe fn errno() -> i32 {
    // SAFETY: errno is this thread's.
    unsafe { *libc::__errno_location() }
}

/// Gives a detached child a copy of `fd`, which it closes only once this process has exited
/// (it waits for the end of a pipe whose other end only this process holds). Used for a
/// netfilter socket, whose last close waits for an RCU grace period: that wait then happens in
/// the child.
pub(crate) fn hold_past_exit(fd: RawFd) -> io::Result<()> {
    let mut ends = [0 as RawFd; 2];
    // SAFETY: `ends` has room for the two descriptors.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and belong to nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    let r = read_end.as_raw_fd();
    // SAFETY: the worker branch below makes raw syscalls only and ends with `_exit`.
    match unsafe { detach() }? {
        Forked::Worker => unsafe {
            close_all_but(&mut [fd, r]);
            let mut byte = 0u8;
            // Returns 0 (end of file) once every copy of the write end is closed: this
            // process has exited (or closed it).
            while libc::read(r, (&mut byte as *mut u8).cast(), 1) < 0 && errno() == libc::EINTR {}
            libc::close(fd);
            libc::_exit(0)
        },
        Forked::Caller => {
            drop(read_end);
            // Kept open for the rest of this process's life; close-on-exec, so programs it
            // starts do not hold the child up.
            std::mem::forget(write_end);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket given to the keeper stays open when this process closes its own copy: the
    /// other end of the pair sees no end of file. (The keeper closes it when this test binary
    /// exits.)
    #[test]
    fn a_held_socket_outlives_its_close_here() {
        let (held, peer) = socket_pair(libc::SOCK_STREAM).unwrap();
        hold_past_exit(held.as_raw_fd()).unwrap();
        drop(held);
        let mut byte = 0u8;
        // SAFETY: reads into a one-byte buffer.
        let n = unsafe {
            libc::recv(
                peer.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_DONTWAIT,
            )
        };
        assert_eq!(n, -1, "end of file: nobody holds the other end");
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN)
        );
    }
}
