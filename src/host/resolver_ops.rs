//! The embedded DNS resolver of a host: see [`crate::dns::resolver`].

use super::Host;
use crate::dns::resolver::Resolver;

impl Host {
    /// The embedded DNS resolver for this host's networks: it serves in the host netns, reads
    /// this host's state dir (so it follows changes made by any process) and forwards to the
    /// nameservers of the host's resolv.conf by default. Spawn [`Resolver::run`] on the
    /// runtime's executor; it serves until aborted.
    pub fn dns_resolver(&self) -> Resolver {
        Resolver::new(
            self.state.clone(),
            self.netns.clone(),
            self.resolv_conf.clone(),
        )
    }
}
