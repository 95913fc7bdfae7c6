//! Firewall policy: the [`Firewall`] trait `Host` calls, the pure [`ruleset`] renderer, the
//! nf_tables backend [`NftFirewall`], and [`NoFirewall`] for hosts that manage their own.

pub mod conntrack;
pub(crate) mod frames;
pub mod nft;
pub mod ruleset;
mod socket;

use async_trait::async_trait;

pub use nft::NftFirewall;
pub use ruleset::{EndpointRules, EspVxlan, LinkRule, NetworkRules};

use crate::error::Result;

/// What berth needs from a firewall backend. Each call is atomic: it applies fully or not at all.
#[async_trait]
pub trait Firewall: Send + Sync + std::fmt::Debug {
    /// Network-level rules (masquerade of the subnet leaving through other interfaces).
    async fn add_network(&self, network: &NetworkRules) -> Result<()>;
    /// Removes what [`Firewall::add_network`] added.
    async fn remove_network(&self, network: &NetworkRules) -> Result<()>;
    /// Endpoint rules: its published ports, its link flows (on a network with ICC off), and
    /// its port . MAC . address elements (on a network with anti-spoofing).
    async fn add_endpoint(&self, network: &NetworkRules, endpoint: &EndpointRules) -> Result<()>;
    /// Removes what [`Firewall::add_endpoint`] added; succeeds when it is already gone.
    async fn remove_endpoint(&self, network: &NetworkRules, endpoint: &EndpointRules)
    -> Result<()>;
    /// What of the ruleset for `nets`/`eps` is missing in the kernel, one line per object.
    async fn check(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<Vec<String>>;
    /// Puts back everything `nets`/`eps` need (after `nft flush ruleset`), in one transaction,
    /// keeping the admin's chain.
    async fn reapply(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<()>;
    /// Replaces link flows of `network` in one transaction: removes `remove` (absent ones are no
    /// error), then adds `add` (present ones are no error). For a linked container that
    /// detaches (the flows towards it go) or re-attaches with a new address. Flows on a network
    /// with ICC on are ignored (everything passes there).
    async fn replace_links(
        &self,
        network: &NetworkRules,
        remove: &[LinkRule],
        add: &[LinkRule],
    ) -> Result<()>;
    /// Deletes the connection-tracking entries of these (detached) addresses, so a container
    /// that gets one of them next inherits no stale flow. Returns how many were deleted.
    async fn forget_flows(&self, ips: &[std::net::IpAddr]) -> Result<usize>;
    /// Makes the kernel hold exactly what `nets`/`eps` need (one transaction, as
    /// [`Firewall::reapply`]) and removes the objects of networks berth no longer knows.
    /// Returns the interface names of those unknown networks' bridges (for the caller to remove).
    async fn gc(&self, nets: &[NetworkRules], eps: &[EndpointRules]) -> Result<Vec<String>>;
}

/// A firewall that does nothing: no NAT, no published ports, no isolation, ICC off and
/// anti-spoofing not enforced.
/// For hosts whose firewall is managed elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFirewall;

#[async_trait]
impl Firewall for NoFirewall {
    async fn add_network(&self, _: &NetworkRules) -> Result<()> {
        Ok(())
    }
    async fn remove_network(&self, _: &NetworkRules) -> Result<()> {
        Ok(())
    }
    async fn add_endpoint(&self, _: &NetworkRules, _: &EndpointRules) -> Result<()> {
        Ok(())
    }
    async fn remove_endpoint(&self, _: &NetworkRules, _: &EndpointRules) -> Result<()> {
        Ok(())
    }
    async fn gc(&self, _: &[NetworkRules], _: &[EndpointRules]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn check(&self, _: &[NetworkRules], _: &[EndpointRules]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn reapply(&self, _: &[NetworkRules], _: &[EndpointRules]) -> Result<()> {
        Ok(())
    }
    async fn replace_links(&self, _: &NetworkRules, _: &[LinkRule], _: &[LinkRule]) -> Result<()> {
        Ok(())
    }
    async fn forget_flows(&self, _: &[std::net::IpAddr]) -> Result<usize> {
        Ok(0)
    }
}
