//! One long-lived `NETLINK_NETFILTER` socket per firewall, for nf_tables transactions and
//! ctnetlink requests.
//!
//! Why it is kept open: closing any netfilter netlink socket makes the kernel wait for the
//! pending nf_tables destroy work (`nft_rcv_nl_event` → `nf_tables_trans_destroy_flush_work`),
//! which after a transaction that deleted something (a detach's map elements) is an RCU grace
//! period: measured here ~13–15 ms per close, most of what a detach with published ports cost.
//! Kept open, the destroy work runs in the background and nobody waits for it. It also saves the
//! thread that enters the netns for every request: the socket is made there once and used from
//! the blocking pool afterwards (a socket stays bound to the netns it was made in).
//!
//! Requests are serialised by a mutex (the answers of two requests must not interleave). Before
//! each request, answers a failed earlier one left unread are drained; after an I/O error the
//! socket is dropped and the next request opens a new one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, setsockopt, socket, sockopt,
};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// A lazily opened netfilter netlink socket inside one netns.
#[derive(Debug, Clone)]
pub(crate) struct NfSocket {
    netns: Netns,
    fd: Arc<Mutex<Option<Opened>>>,
    short_lived: bool,
}

/// The open socket, and whether a child holds a copy of it past this process's exit.
#[derive(Debug)]
struct Opened {
    fd: OwnedFd,
    held: bool,
}

impl NfSocket {
    /// A socket for `netns`, opened on first use. In a `short_lived` process, a socket that
    /// committed a deleting transaction is also given to a child that closes it only after the
    /// process has exited ([`crate::short_lived::hold_past_exit`]): the process's own exit then
    /// does not wait for that transaction's destroy work (an RCU grace period).
    pub(crate) fn new(netns: Netns, short_lived: bool) -> Self {
        NfSocket {
            netns,
            fd: Arc::default(),
            short_lived,
        }
    }

    /// Runs `f` with the socket on the blocking pool; `what` names the operation in errors.
    /// `leaves_work`: `f` commits an nf_tables transaction that deletes something, whose
    /// destroy work the socket's last close waits for (in a short-lived process the socket is
    /// then first given to a child that closes it after the process has gone).
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        what: &str,
        leaves_work: bool,
        f: impl FnOnce(RawFd) -> io::Result<R> + Send + 'static,
    ) -> Result<R> {
        let err = |source| Error::Nftables {
            op: what.to_string(),
            source,
        };
        let have = self.fd.lock().expect("not poisoned").is_some();
        if !have {
            let fd = self.netns.enter(open).await?.map_err(err)?;
            self.fd
                .lock()
                .expect("not poisoned")
                .get_or_insert(Opened { fd, held: false });
        }
        let (slot, short_lived) = (self.fd.clone(), self.short_lived);
        tokio::task::spawn_blocking(move || {
            let mut slot = slot.lock().expect("not poisoned");
            let opened = slot.as_mut().expect("opened above");
            let fd = opened.fd.as_raw_fd();
            if short_lived && leaves_work && !opened.held {
                crate::short_lived::hold_past_exit(fd)?;
                opened.held = true;
            }
            drain(fd)?;
            let r = f(fd);
            if r.as_ref()
                .is_err_and(|e| e.raw_os_error().is_none_or(is_socket_errno))
            {
                *slot = None;
            }
            r
        })
        .await
        .map_err(|e| err(io::Error::other(e)))?
        .map_err(err)
    }
}

/// Errors that say the socket itself is unusable (rather than a kernel answer to a request).
fn is_socket_errno(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOBUFS | libc::EBADF | libc::ENOTSOCK | libc::EPIPE
    )
}

/// Opens the socket in the calling thread's netns, with generous buffers (large batches and
/// their acknowledgements).
fn open() -> io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )?;
    let _ = setsockopt(&fd, sockopt::SndBuf, &(4 << 20));
    let _ = setsockopt(&fd, sockopt::RcvBuf, &(4 << 20));
    Ok(fd)
}

/// Discards whatever is queued (answers of an earlier request that stopped reading early).
fn drain(fd: RawFd) -> io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        match recv(fd, &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => continue,
            Err(nix::errno::Errno::EAGAIN) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
