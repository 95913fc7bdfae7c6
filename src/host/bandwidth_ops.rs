//! Bandwidth limits of endpoints ([`crate::bandwidth`]): put on at attach, changed in place by
//! [`Host::set_bandwidth`], checked by `check`, removed with the endpoint.
//!
//! What is made, on the endpoint's host-side veth end (`H`) in the host netns: a root `tbf` on
//! `H` (ingress: what the container receives); an `ifb` device `I` ([`ifb_name`], marked
//! [`crate::link_marks::IFB`]) with a root `tbf`, and on `H` an `ingress` qdisc whose u32
//! match-all filter redirects every frame to `I` (egress: what the container sends).
//!
//! Crash safety: the `ifb` is named in the endpoint record before it is made (attach: the
//! record is written only when the attach succeeds, so a dead attach leaves an unrecorded
//! marked `ifb` that `gc` removes; `set_bandwidth`: the record names the old and the new
//! `ifb` while the kernel is changed). The redirect goes before its `ifb`, so no filter ever
//! redirects to a device that is gone.

use crate::bandwidth::{Bandwidth, Direction, TbfParams, ifb_name};
use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::netlink::LinkInfo;
use crate::netlink::tc::{QdiscKind, QdiscParent, QdiscRequest, RedirectRequest};
use crate::network::NetworkInfo;
use crate::options::DriverKind;

use super::journal::{Journal, Undo};
use super::{Host, Step};

/// Refuses limits on a network whose driver gives endpoints no host-side end.
pub(super) fn check_capable(net: &NetworkInfo) -> Result<()> {
    match net.driver.kind() {
        DriverKind::Bridge | DriverKind::Overlay => Ok(()),
        other => Err(Error::DriverUnsupported {
            driver: other.name(),
            what: "bandwidth limits (no host-side veth end)",
        }),
    }
}

/// The kernel parameters of both directions for a link of MTU `mtu`, checked.
fn params(
    bw: Option<&Bandwidth>,
    mtu: Option<u32>,
) -> Result<(Option<TbfParams>, Option<TbfParams>)> {
    let Some(bw) = bw else {
        return Ok((None, None));
    };
    let i = bw
        .ingress
        .map(|l| l.tbf(Direction::Ingress, mtu))
        .transpose()?;
    let e = bw
        .egress
        .map(|l| l.tbf(Direction::Egress, mtu))
        .transpose()?;
    Ok((i, e))
}

/// Whether a `tbf` read back is the one asked for: the same rate and queue, the burst within
/// the kernel's rounding (it holds the burst as a duration at the rate).
fn same_tbf(have: &TbfParams, want: &TbfParams) -> bool {
    let tolerance = u64::from(want.burst) / 100 + 64;
    have.rate_bytes == want.rate_bytes
        && have.limit == want.limit
        && u64::from(have.burst).abs_diff(u64::from(want.burst)) <= tolerance
}

impl Host {
    /// The host end of an attachment, which limits need.
    async fn host_end(&self, att: &Attachment) -> Result<LinkInfo> {
        let name = att.host_ifname.as_deref().ok_or(Error::DriverUnsupported {
            driver: "(this endpoint's)",
            what: "bandwidth limits (no host-side veth end)",
        })?;
        self.nl.require_link(name).await
    }

    /// Makes the kernel match `bw` on `host` (an endpoint's host end): replaces or removes its
    /// root `tbf`, its redirect and the `ifb` `ifb` (made when missing). Every value is
    /// checked against the link's MTU before anything changes.
    async fn apply_bandwidth(
        &self,
        host: &LinkInfo,
        ifb: &str,
        bw: Option<&Bandwidth>,
    ) -> Result<()> {
        let (ingress, egress) = params(bw, host.mtu)?;
        let k = self.nl.kernel();
        match ingress {
            Some(p) => {
                k.replace_qdisc(QdiscRequest {
                    index: host.index,
                    name: host.name.clone(),
                    kind: QdiscKind::Tbf(p),
                })
                .await?
            }
            None => {
                let has = k
                    .qdiscs(host.index)
                    .await?
                    .iter()
                    .any(|q| q.kind == "tbf" && q.parent == Some(QdiscParent::Root));
                if has {
                    k.del_qdisc(host.index, &host.name, QdiscParent::Root)
                        .await?;
                }
            }
        }
        match egress {
            Some(p) => {
                let dev = match self.nl.link_by_name(ifb).await? {
                    Some(l) => l,
                    None => k.add_ifb(ifb, crate::link_marks::IFB).await?,
                };
                k.replace_qdisc(QdiscRequest {
                    index: dev.index,
                    name: dev.name.clone(),
                    kind: QdiscKind::Tbf(p),
                })
                .await?;
                let filters = k.ingress_filters(host.index).await?;
                let redirected = filters.len() == 1 && filters[0].redirect_to == Some(dev.index);
                if !redirected {
                    k.del_qdisc(host.index, &host.name, QdiscParent::Ingress)
                        .await?;
                    k.replace_qdisc(QdiscRequest {
                        index: host.index,
                        name: host.name.clone(),
                        kind: QdiscKind::Ingress,
                    })
                    .await?;
                    k.add_redirect(RedirectRequest {
                        index: host.index,
                        name: host.name.clone(),
                        to: dev.index,
                    })
                    .await?;
                }
            }
            None => {
                // The redirect goes first, then its device.
                k.del_qdisc(host.index, &host.name, QdiscParent::Ingress)
                    .await?;
                self.nl.delete_link(ifb).await?;
            }
        }
        Ok(())
    }

    /// Removes an endpoint's limits: the `ifb` (after the redirect to it, when the host end
    /// still exists) and the host end's qdiscs. Idempotent.
    pub(super) async fn remove_bandwidth(
        &self,
        host_ifname: &str,
        ifb: Option<&str>,
    ) -> Result<()> {
        if let Some(host) = self.nl.link_by_name(host_ifname).await? {
            let k = self.nl.kernel();
            k.del_qdisc(host.index, &host.name, QdiscParent::Ingress)
                .await?;
            k.del_qdisc(host.index, &host.name, QdiscParent::Root)
                .await?;
        }
        if let Some(ifb) = ifb {
            self.nl.delete_link(ifb).await?;
        }
        Ok(())
    }

    /// Attach: puts `att`'s recorded limits on its host end (journaled first, so a failure
    /// half-way is undone).
    pub(super) async fn attach_bandwidth(
        &self,
        att: &Attachment,
        journal: &mut Journal,
    ) -> Result<()> {
        let Some(bw) = &att.bandwidth else {
            return Ok(());
        };
        let host = self.host_end(att).await?;
        let ifb = att.ifb.clone().unwrap_or_else(|| ifb_name(&host.name));
        journal.push(Undo::Bandwidth {
            host_ifname: host.name.clone(),
            ifb: Some(ifb.clone()),
        });
        self.apply_bandwidth(&host, &ifb, Some(bw)).await?;
        self.after(Step::Bandwidth)
    }

    /// Detach: the endpoint's `ifb` goes (its host end's qdiscs go with the host end).
    pub(super) async fn detach_bandwidth(&self, att: &Attachment) -> Result<()> {
        match &att.ifb {
            Some(ifb) => self.nl.delete_link(ifb).await.map(drop),
            None => Ok(()),
        }
    }

    /// What of `att`'s limits is missing or changed in the kernel (for `check`).
    pub(super) async fn bandwidth_check(&self, att: &Attachment) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        let Some(name) = &att.host_ifname else {
            return Ok(missing);
        };
        let Some(host) = self.nl.link_by_name(name).await? else {
            return Ok(missing); // the driver's check reports the link
        };
        let k = self.nl.kernel();
        let (ingress, egress) = params(att.bandwidth.as_ref(), host.mtu)?;
        let qdiscs = k.qdiscs(host.index).await?;
        let root_tbf = qdiscs
            .iter()
            .find(|q| q.kind == "tbf" && q.parent == Some(QdiscParent::Root))
            .and_then(|q| q.tbf);
        match (ingress, root_tbf) {
            (Some(want), Some(have)) if !same_tbf(&have, &want) => missing.push(format!(
                "ingress limit on {name}: tbf is {} bytes/s burst {} limit {}, recorded {} bytes/s burst {} limit {}",
                have.rate_bytes, have.burst, have.limit, want.rate_bytes, want.burst, want.limit
            )),
            (Some(_), None) => missing.push(format!("ingress limit: tbf qdisc on {name}")),
            // Without a recorded limit, a qdisc there is not berth's (a chained CNI `bandwidth`
            // plugin's, an admin's `tc`): not berth's to report.
            _ => {}
        }
        let Some(want) = egress else {
            return Ok(missing);
        };
        let ifb = att.ifb.clone().unwrap_or_else(|| ifb_name(name));
        let Some(dev) = self.nl.link_by_name(&ifb).await? else {
            missing.push(format!("egress limit: ifb device {ifb}"));
            return Ok(missing);
        };
        if !qdiscs
            .iter()
            .any(|q| q.kind == "ingress" && q.parent == Some(QdiscParent::Ingress))
        {
            missing.push(format!("egress limit: ingress qdisc on {name}"));
        }
        let filters = k.ingress_filters(host.index).await?;
        if !filters.iter().any(|f| f.redirect_to == Some(dev.index)) {
            missing.push(format!(
                "egress limit: redirect filter from {name} to {ifb}"
            ));
        }
        let ifb_tbf = k
            .qdiscs(dev.index)
            .await?
            .into_iter()
            .find(|q| q.kind == "tbf" && q.parent == Some(QdiscParent::Root))
            .and_then(|q| q.tbf);
        match ifb_tbf {
            None => missing.push(format!("egress limit: tbf qdisc on {ifb}")),
            Some(have) if !same_tbf(&have, &want) => missing.push(format!(
                "egress limit on {ifb}: tbf is {} bytes/s burst {} limit {}, recorded {} bytes/s burst {} limit {}",
                have.rate_bytes, have.burst, have.limit, want.rate_bytes, want.burst, want.limit
            )),
            Some(_) => {}
        }
        Ok(missing)
    }

    /// Changes the bandwidth limits of a live endpoint in place (`None`, or an unlimited
    /// [`Bandwidth`]: removes them), all or nothing: values are checked (against the host
    /// end's MTU too) before anything changes, and a kernel failure half-way puts the old
    /// limits back. Returns the attachment as now recorded. Refused
    /// ([`Error::DriverUnsupported`]) on drivers without a host-side end.
    pub async fn set_bandwidth(
        &self,
        network: impl AsRef<str>,
        container: &str,
        bandwidth: Option<Bandwidth>,
    ) -> Result<Attachment> {
        let network = network.as_ref();
        let bandwidth = bandwidth.filter(|b| !b.is_unlimited());
        if let Some(b) = &bandwidth {
            b.validate()?;
        }
        let _lock = self.state.lock().await?;
        let net = self
            .state
            .network(network)?
            .filter(|n| !n.removing)
            .ok_or_else(|| Error::NetworkNotFound {
                name: network.into(),
            })?;
        let old = self
            .state
            .endpoint(network, container)?
            .filter(|_| !self.state.is_detaching(network, container))
            .ok_or_else(|| Error::EndpointNotFound {
                network: network.into(),
                container: container.into(),
            })?;
        check_capable(&net)?;
        let host = self.host_end(&old).await?;
        params(bandwidth.as_ref(), host.mtu)?;
        let ifb = old.ifb.clone().unwrap_or_else(|| ifb_name(&host.name));
        let has_egress = |b: &Option<Bandwidth>| b.is_some_and(|b| b.egress.is_some());
        let mut new = old.clone();
        new.bandwidth = bandwidth;
        new.ifb = has_egress(&bandwidth).then(|| ifb.clone());
        // While the kernel changes, the record names the ifb of either (gc keeps it).
        let mut during = new.clone();
        during.ifb = new.ifb.clone().or(old.ifb.clone());
        self.state.put_endpoint(&during)?;
        let applied = async {
            self.apply_bandwidth(&host, &ifb, bandwidth.as_ref())
                .await?;
            self.after(Step::Bandwidth)?;
            self.state.put_endpoint(&new)
        };
        match applied.await {
            Ok(()) => {
                tracing::info!(target: "berth::host", network, container, ?bandwidth, "bandwidth set");
                Ok(new)
            }
            Err(e) => {
                let restored = async {
                    self.apply_bandwidth(&host, &ifb, old.bandwidth.as_ref())
                        .await?;
                    self.state.put_endpoint(&old)
                };
                match restored.await {
                    Ok(()) => Err(e),
                    Err(c) => Err(Error::CleanupFailed {
                        original: Box::new(e),
                        cleanup: vec![c],
                    }),
                }
            }
        }
    }
}
