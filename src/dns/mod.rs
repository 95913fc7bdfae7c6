//! Name resolution for containers: the files a container's `/etc` gets (`hosts`, `resolv.conf`,
//! `hostname`), rendered by pure functions from the records, and written atomically.
//!
//! - [`hosts`] — `/etc/hosts`: localhost, the container's own names, `--add-host`, `--link`
//! - [`resolv`] — `/etc/resolv.conf`: the host's minus loopback, overrides, the resolver
//! - [`files`] — the three files of one container together, and writing them
//! - [`resolver`] — the embedded DNS resolver: container names and aliases per network, the
//!   rest forwarded; served on each DNS-enabled network's gateway
//!
//! What goes into them is gathered by `Host` (`src/host/files_ops.rs`) from the attachments,
//! the networks and the container's [`crate::names::SandboxRecord`].

pub mod files;
pub mod hosts;
pub mod resolv;
pub mod resolver;

#[cfg(test)]
mod tests;

pub use files::SandboxFiles;
