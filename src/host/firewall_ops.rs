//! `Host::reapply` and `Host::check_firewall`: the firewall from the records.

use crate::error::Result;
use crate::firewall::{EndpointRules, NetworkRules};

use super::network_ops::network_rules;
use super::{Host, Step};

impl Host {
    /// The firewall facts of every recorded network and endpoint.
    pub(super) fn recorded_rules(&self) -> Result<(Vec<NetworkRules>, Vec<EndpointRules>)> {
        let (mut nets, mut eps) = (Vec::new(), Vec::new());
        for n in self.state.networks()?.into_iter().filter(|n| !n.removing) {
            if let Some(r) = network_rules(&n) {
                nets.push(r);
                for a in self.state.endpoints(&n.name)? {
                    eps.extend(self.endpoint_fw(&n, &a, None)?);
                }
            }
        }
        Ok((nets, eps))
    }

    /// Puts back every nf_tables object berth recorded, in one transaction — after someone ran
    /// `nft flush ruleset`, or deleted part of the table. The admin's `user-forward` chain is
    /// recreated if missing but its rules are never touched.
    pub async fn reapply(&self) -> Result<()> {
        let _lock = self.state.lock().await?;
        let (nets, eps) = self.recorded_rules()?;
        if nets.is_empty() {
            return Ok(());
        }
        self.firewall.reapply(&nets, &eps).await?;
        self.after(Step::Reapply)
    }

    /// Every nf_tables object the records call for that the kernel lacks, one line each (empty:
    /// all in place).
    pub async fn check_firewall(&self) -> Result<Vec<String>> {
        let (nets, eps) = self.recorded_rules()?;
        if nets.is_empty() {
            return Ok(Vec::new());
        }
        self.firewall.check(&nets, &eps).await
    }
}
