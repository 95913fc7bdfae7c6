//! rtnetlink access, one handle per network namespace.
//!
//! [`Netlink::open`] creates the route-netlink socket on a dedicated thread that entered the
//! target namespace (the socket stays bound to it), registers it with the caller's tokio runtime,
//! and spawns the connection task there. The handle is then used from any task. Typed operations
//! live in one file per object kind ([`link`], [`addr`], [`route`], [`neigh`]); each maps the kernel's errno
//! into [`crate::Error`] with the operation and interface name.

pub mod addr;
pub mod link;
pub mod neigh;
pub mod route;
pub use link::VethPeer;

use std::io;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// A route-netlink handle bound to one network namespace.
#[derive(Clone, Debug)]
pub struct Netlink {
    pub(crate) handle: rtnetlink::Handle,
    netns: Netns,
}

impl Netlink {
    /// Opens a handle inside `netns`. Must be called within a tokio runtime.
    pub async fn open(netns: &Netns) -> Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle) = netns
            .enter(move || {
                let _enter = rt.enter();
                rtnetlink::new_connection().map(|(conn, handle, _)| (conn, handle))
            })
            .await?
            .map_err(|e| Error::netlink("open socket", "rtnetlink", e))?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            netns: netns.clone(),
        })
    }
}

/// The errno of an rtnetlink error as an `io::Error` (ENOENT … ), or a generic one.
pub(crate) fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(msg) => match msg.code {
            Some(code) => io::Error::from_raw_os_error(-code.get()),
            None => io::Error::other("netlink ack without error"),
        },
        other => io::Error::other(other.to_string()),
    }
}

/// Whether an rtnetlink error carries `errno`.
pub(crate) fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| -c.get()) == Some(errno))
}
