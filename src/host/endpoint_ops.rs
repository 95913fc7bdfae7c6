//! `Host::attach`, `detach`, `check` and the endpoint queries.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::driver::{EndpointPlan, EndpointResources, driver_for};
use crate::endpoint::{Attachment, EndpointSpec};
use crate::error::{Error, Result};
use crate::ipam::AddressRequest;
use crate::mac::MacAddr;
use crate::netlink::Netlink;
use crate::netns::Netns;
use crate::network::NetworkInfo;
use crate::port::PortMapping;

use super::journal::{Journal, Undo};
use super::network_ops::network_rules;
use super::{Host, Step};

impl Host {
    /// Refuses a netns that cannot be a container's, naming it: not a network namespace at all,
    /// this host's netns, the machine's own (PID 1's), or any netns holding a bridge berth made
    /// (another berth host's). Attaching there would move the host's own default route into
    /// the container's plumbing and take it away on detach.
    pub(super) async fn check_container_netns(&self, ns: &Netns) -> Result<Netlink> {
        ns.validate()?;
        let refuse = |reason| Error::NotContainerNetns {
            path: ns.describe(),
            reason,
        };
        if ns.same_as(&self.netns) {
            return Err(refuse("it is this berth host's own network namespace"));
        }
        if Netns::from_path("/proc/1/ns/net").is_ok_and(|init| ns.same_as(&init)) {
            return Err(refuse(
                "it is the machine's own network namespace (PID 1's)",
            ));
        }
        let nl = self.kernel.open(ns).await?;
        if nl
            .links()
            .await?
            .iter()
            .any(|l| l.group == crate::link_marks::BRIDGE)
        {
            return Err(refuse(
                "it holds bridges berth made: it is a berth host's network namespace",
            ));
        }
        Ok(nl)
    }

    /// Attaches a container to a network (`docker network connect`), all or nothing: on failure
    /// no link, address, allocation, firewall element or record of it remains.
    pub async fn attach(&self, network: impl AsRef<str>, ep: EndpointSpec) -> Result<Attachment> {
        let network = network.as_ref();
        ep.validate()?;
        super::policy_ops::check_reachable(&ep)?;
        let container_nl = self.check_container_netns(&ep.netns).await?;
        self.ensure_predefined(network).await?;
        // Held for the whole attach, except while a DHCP server is waited for (see
        // `dhcp_lease`): that wait must not stall every other operation of the host.
        let mut lock = Some(self.state.lock().await?);
        let net = match self.state.network(network)?.filter(|n| !n.removing) {
            Some(n) => self.current_cluster_network(n).await?,
            None => self.import_cluster_network(network).await?,
        };
        if let Some(old) = self.state.endpoint(network, &ep.container)? {
            // A detach of it was killed half-way: finish it, then attach afresh.
            if self.state.is_detaching(network, &ep.container) {
                self.detach_locked(&net, &old).await?;
            } else {
                return Err(Error::EndpointExists {
                    network: network.into(),
                    container: ep.container,
                });
            }
        }
        let driver = driver_for(&net.driver);
        super::dhcp_ops::check_endpoint(&net, &ep)?;
        if !ep.ports.is_empty() && network_rules(&net).is_none() {
            return Err(Error::DriverUnsupported {
                driver: net.driver.kind().name(),
                what: "published ports",
            });
        }
        if let (Some(p), true) = (ep.ports.first(), net.internal) {
            return Err(Error::invalid(
                "port",
                p,
                "internal networks publish no ports",
            ));
        }
        if ep.bandwidth.is_some() {
            super::bandwidth_ops::check_capable(&net)?;
        }
        if (ep.ip.is_some() || ep.ip6.is_some()) && !driver.uses_ipam() {
            return Err(Error::DriverUnsupported {
                driver: net.driver.kind().name(),
                what: "static addresses",
            });
        }
        // A VLAN: a driver that has them, on a kernel that has them (read, nothing made).
        if let Some(vlan) = ep.vlan {
            driver.check_vlan(self.ctx(), &net, vlan).await?;
        }
        if let Some(rec) = self.state.sandbox(&ep.container)?
            && rec.mode != crate::names::SandboxMode::Own
        {
            return Err(Error::invalid(
                "container",
                &ep.container,
                "it uses another sandbox (host or container mode)",
            ));
        }
        for l in &ep.names.links {
            let known = l.container != ep.container
                && (self.state.sandbox(&l.container)?.is_some()
                    || !self.state.attachments_of(&l.container)?.is_empty());
            if !known {
                return Err(Error::invalid(
                    "link",
                    &l.container,
                    "no such container: a link must name a container attached to a network",
                ));
            }
        }
        let ports = self.resolve_ports(&net, &ep.ports).await?;
        let others = self.attachments_of(&ep.container)?;

        let mut journal = Journal::default();
        let r = self
            .attach_steps(
                &net,
                &ep,
                &container_nl,
                ports,
                &others,
                &mut journal,
                &mut lock,
            )
            .await;
        if lock.is_none() {
            // Lost while re-taking it after a DHCP wait: the rollback runs under it anyway.
            lock = Some(self.state.lock().await?);
        }
        let _lock = lock;
        match r {
            Ok(att) => {
                // The election is settled unless the new attachment lost a family it has a
                // gateway for (its route was then only added where none existed).
                let has = (att.gateway.is_some(), att.gateway6.is_some());
                let took = super::routes::takes_default(&others, has, att.gw_priority);
                let settled = (!has.0 || took.v4) && (!has.1 || took.v6);
                if !settled && let Err(e) = self.sync_default_routes(&att.container).await {
                    tracing::warn!(target: "berth::host", container = %att.container, error = %e, "default route not re-elected");
                }
                self.refresh_files(&att.container);
                tracing::info!(target: "berth::host", network, container = %att.container, ip = ?att.ipv4, "attached");
                Ok(att)
            }
            Err(e) => Err(self.rollback(journal, e).await),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn attach_steps(
        &self,
        net: &NetworkInfo,
        ep: &EndpointSpec,
        container_nl: &Netlink,
        ports: Vec<PortMapping>,
        others: &[Attachment],
        journal: &mut Journal,
        lock: &mut Option<crate::state::StateLock>,
    ) -> Result<Attachment> {
        let driver = driver_for(&net.driver);
        let (mut ipv4, mut ipv6) = (None, None);
        // Every endpoint gets `lo` up in its netns, whatever the driver (a failed attach puts
        // it back down): asked of the container's kernel while the IPAM works on disk.
        let allocate = async {
            if !driver.uses_ipam() || net.subnets.is_empty() {
                return Ok(None);
            }
            self.restore_lost_claims(net).await?;
            let req = AddressRequest {
                v4: ep.ip,
                v6: ep.ip6,
            };
            let ipam = self.ipam_of(net)?;
            let got = ipam.allocate(&net.name, &ep.container, req).await?;
            Ok::<_, Error>(Some((ipam, got)))
        };
        let (lo, allocated) = tokio::join!(
            crate::driver::container::loopback_up(container_nl),
            allocate
        );
        if let Ok(true) = lo {
            journal.push(Undo::LoopbackUp(container_nl.clone()));
        }
        if let Ok(Some((ipam, got))) = &allocated {
            journal.push(Undo::IpamAddress {
                ipam: ipam.clone(),
                network: net.name.clone(),
                container: ep.container.clone(),
                allocation: got.clone(),
            });
        }
        lo?;
        if let Some((_, got)) = allocated? {
            for a in got.addresses {
                match a {
                    IpNet::V4(a) => ipv4 = Some(a),
                    IpNet::V6(a) => ipv6 = Some(a),
                }
            }
            self.after(Step::IpamAllocate)?;
        }
        let gw = |v6: bool| {
            let s = if v6 { net.subnet6() } else { net.subnet4() };
            s.filter(|_| !net.internal && !net.no_default_route && driver.endpoint_gateway())
                .map(|s| s.gateway)
        };
        let gateway = gw(false).and_then(|g| match g {
            IpAddr::V4(g) if ipv4.is_some() => Some(g),
            _ => None,
        });
        let gateway6 = gw(true).and_then(|g| match g {
            IpAddr::V6(g) if ipv6.is_some() => Some(g),
            _ => None,
        });
        let mac = match (ep.mac, ipv4) {
            (Some(m), _) => m,
            (None, Some(v4)) if ep.mac_from_ipv4 => MacAddr::from_ipv4(v4.addr()),
            _ => MacAddr::random(),
        };
        // Announced once the link carries them only if handed out before on this network:
        // only then may a neighbour cache still hold an earlier holder's MAC. Marked before
        // the interface exists, so a holder after this one announces whatever happens next.
        // (Across hosts the marks of one host say nothing: cluster networks always announce.)
        let ips: Vec<IpAddr> = ipv4
            .map(|n| IpAddr::V4(n.addr()))
            .into_iter()
            .chain(ipv6.map(|n| IpAddr::V6(n.addr())))
            .collect();
        let announce = self.state.mark_seen(&net.name, &ips)?
            || driver.scope() == crate::driver::Scope::Global;
        let plan = EndpointPlan {
            container: &ep.container,
            netns: &ep.netns,
            container_nl,
            ifname: &ep.ifname,
            mac,
            ipv4,
            ipv6,
            gateway,
            gateway6,
            // On a DHCP network the routes wait for the leased address (added with it).
            routes: match net.ipam_driver {
                crate::dhcp::IpamDriver::Dhcp => Vec::new(),
                crate::dhcp::IpamDriver::Default => {
                    net.routes.iter().chain(&ep.routes).copied().collect()
                }
            },
            take_default: super::routes::takes_default(
                others,
                (gateway.is_some(), gateway6.is_some()),
                ep.gw_priority,
            ),
            announce,
            vlan: ep.vlan,
        };
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let record = |res: EndpointResources| Attachment {
            network: net.name.clone(),
            container: ep.container.clone(),
            ifname: ep.ifname.clone(),
            mac: res.mac,
            ipv4,
            ipv6,
            gateway,
            gateway6,
            netns: ep.netns.path().map(Into::into),
            ports: ports.clone(),
            ifb: ep
                .bandwidth
                .filter(|b| b.egress.is_some())
                .and(res.host_ifname.as_deref().map(crate::bandwidth::ifb_name)),
            bandwidth: ep.bandwidth,
            host_ifname: res.host_ifname,
            gw_priority: ep.gw_priority,
            seq,
            routes: plan.routes.clone(),
            aliases: ep.aliases.clone(),
            rules: ep.rules.clone(),
            vlan: ep.vlan,
            dhcp: None,
        };
        // When the driver's answer is known beforehand, the records are written and made
        // durable while it plumbs the endpoint (the slowest part of an attach on disk and in
        // the kernel, overlapped); they are renamed into place at the end.
        let expected = driver.expected_resources(net, &plan).map(record);
        let staging = async {
            let Some(att) = &expected else {
                return Ok(None);
            };
            let (prev, sandbox) = self.sandbox_update(ep, att)?;
            let (state, att) = (self.state.clone(), att.clone());
            let staged =
                tokio::task::spawn_blocking(move || state.stage_attach(&att, sandbox.as_ref()))
                    .await
                    .map_err(|e| {
                        Error::state("stage records", &ep.container, std::io::Error::other(e))
                    })??;
            Ok::<_, Error>(Some((staged, prev)))
        };
        let (res, staged) = tokio::join!(driver.attach(self.ctx(), net, &plan), staging);
        let att = record(res?);
        journal.push(Undo::DriverEndpoint(Box::new((net.clone(), att.clone()))));
        let staged = staged?;
        self.after(Step::DriverAttach)?;
        self.attach_bandwidth(&att, journal).await?;
        let att = match net.ipam_driver {
            crate::dhcp::IpamDriver::Dhcp => {
                self.dhcp_lease(net, ep, container_nl, att, others, journal, lock)
                    .await?
            }
            crate::dhcp::IpamDriver::Default => att,
        };
        if driver.scope() == crate::driver::Scope::Global {
            self.cluster_attach(net, &att, journal).await?;
        }
        let names = self
            .state
            .sandbox(&ep.container)?
            .map(|r| r.names)
            .unwrap_or_default()
            .merged(&ep.names);
        if let (Some(n), Some(e)) = (
            network_rules(net),
            self.endpoint_fw(net, &att, Some(&names))?,
        ) {
            self.firewall.add_endpoint(&n, &e).await?;
            journal.push(Undo::FirewallEndpoint(n, e));
            self.after(Step::FirewallEndpoint)?;
        }
        // Both records of the attach, made durable together (two rounds of fsyncs in all,
        // the first already done when they were staged for the answer the driver gave).
        let prev = match staged {
            Some((staged, prev)) if expected.as_ref() == Some(&att) => {
                staged.commit()?;
                prev
            }
            other => {
                drop(other);
                let (prev, sandbox) = self.sandbox_update(ep, &att)?;
                self.state.put_attach(&att, sandbox.as_ref())?;
                prev
            }
        };
        journal.push(Undo::EndpointRecord {
            network: net.name.clone(),
            container: att.container.clone(),
        });
        journal.push(Undo::SandboxRecord {
            container: att.container.clone(),
            prev: prev.map(Box::new),
        });
        self.after(Step::RecordEndpoint)?;
        // Policy routing: the rules once the record names them (see policy_ops).
        if !att.rules.is_empty() {
            super::policy_ops::add_rules(container_nl, &att.rules, journal).await?;
            self.after(Step::PolicyRules)?;
        }
        // Containers already here that link to this one may now reach its exposed ports.
        let incoming = self.links_to(net, &att)?;
        if let (Some(n), false) = (network_rules(net), incoming.is_empty()) {
            self.firewall.replace_links(&n, &[], &incoming).await?;
            journal.push(Undo::FirewallLinks(n, incoming));
        }
        self.after(Step::PersistEndpoint)?;
        Ok(att)
    }

    /// Detaches a container (`docker network disconnect`). Best-effort and idempotent: every
    /// step is tried, firewall state goes before links, and it works when the container netns is
    /// already gone. If a step fails the record is kept (so a retry can finish) and
    /// [`Error::Detach`] lists what failed. Detaching a container's last attachment also
    /// removes its sandbox record (its name settings), unless its files were written, it is in
    /// host or container mode, or another container shares its sandbox or links to it.
    pub async fn detach(&self, network: impl AsRef<str>, container: &str) -> Result<()> {
        let network = network.as_ref();
        let _lock = self.state.lock().await?;
        let net = self
            .state
            .network(network)?
            .ok_or_else(|| Error::NetworkNotFound {
                name: network.into(),
            })?;
        let Some(att) = self.state.endpoint(network, container)? else {
            // Already detached; a detach whose last step failed (or whose process died) after
            // its record went is finished here: the sandbox record goes if nothing needs it.
            self.forget_sandbox_quietly(container);
            return Ok(());
        };
        self.detach_locked(&net, &att).await
    }

    /// The steps of detach; the caller holds the state lock. The record is first marked as
    /// being detached, so a process killed at any instant of the steps leaves a detach that
    /// `gc` finishes even for a container it is told to keep.
    pub(super) async fn detach_locked(&self, net: &NetworkInfo, att: &Attachment) -> Result<()> {
        let (network, container) = (net.name.as_str(), att.container.as_str());
        self.state.mark_detaching(network, container)?;
        let mut errors = Vec::new();
        match (network_rules(net), self.endpoint_fw(net, att, None)) {
            (Some(n), Ok(Some(e))) => {
                errors.extend(self.firewall.remove_endpoint(&n, &e).await.err());
                errors.extend(self.after(Step::DetachFirewall).err());
            }
            (_, Err(e)) => errors.push(e),
            _ => {}
        }
        // The flows of containers linking to this one go with it.
        match (network_rules(net), self.links_to(net, att)) {
            (Some(n), Ok(incoming)) if !incoming.is_empty() => {
                errors.extend(self.firewall.replace_links(&n, &incoming, &[]).await.err());
            }
            (_, Err(e)) => errors.push(e),
            _ => {}
        }
        // Routing rules are not tied to the interface: deleted one by one while it exists.
        errors.extend(self.remove_policy_rules(att).await.err());
        // While the interface still has the leased address to send from.
        self.dhcp_release(att).await;
        let driver = driver_for(&net.driver);
        errors.extend(driver.detach(self.ctx(), net, att).await.err());
        // The endpoint's ifb (bandwidth limits) goes after the host end and its redirect.
        errors.extend(self.detach_bandwidth(att).await.err());
        errors.extend(self.after(Step::DetachDriver).err());
        // After the links are gone (no new flows) and before the address can be handed out
        // again: forget the container's connection-tracking entries.
        let ips: Vec<std::net::IpAddr> = att.ip().into_iter().chain(att.ip6()).collect();
        if network_rules(net).is_some() {
            errors.extend(self.firewall.forget_flows(&ips).await.err());
            errors.extend(self.after(Step::DetachConntrack).err());
        }
        if driver.scope() == crate::driver::Scope::Global {
            self.cluster_detach(net, att).await;
        } else if driver.uses_ipam() {
            errors.extend(self.ipam.release(network, container).await.err());
            errors.extend(self.after(Step::DetachIpam).err());
        }
        if errors.is_empty() {
            self.state.remove_endpoint(network, container)?;
            self.after(Step::DetachRecord)?;
            if super::encryption_ops::is_encrypted(net)
                && let Err(e) = self.sync_encryption_locked(None).await
            {
                // gc and the agent's next synchronisation finish it.
                tracing::warn!(target: "berth::host", network, error = %e, "IPsec state not synchronised after detach");
            }
            if let Err(e) = self.sync_default_routes(container).await {
                tracing::warn!(target: "berth::host", container, error = %e, "default route not re-elected");
            }
            self.refresh_files(container);
            self.forget_sandbox_quietly(container);
            tracing::info!(target: "berth::host", network, container, "detached");
            Ok(())
        } else {
            Err(Error::Detach {
                network: network.into(),
                container: container.into(),
                errors,
            })
        }
    }

    /// The attachments of a network.
    pub async fn endpoints(&self, network: impl AsRef<str>) -> Result<Vec<Attachment>> {
        self.state.endpoints(network.as_ref())
    }

    /// What of an attachment is missing from the kernel (empty: all in place).
    pub async fn check(&self, network: impl AsRef<str>, container: &str) -> Result<Vec<String>> {
        let network = network.as_ref();
        let net = self.network(network).await?;
        let Some(att) = self.state.endpoint(network, container)? else {
            return Ok(vec![format!("endpoint record {network}/{container}")]);
        };
        let mut missing = driver_for(&net.driver)
            .check(self.ctx(), &net, &att)
            .await?;
        missing
            .extend(crate::driver::container::check_interface(self.kernel.as_ref(), &att).await?);
        missing.extend(self.bandwidth_check(&att).await?);
        missing.extend(super::dhcp_ops::lost_lease(&att));
        if driver_for(&net.driver).scope() == crate::driver::Scope::Global {
            missing.extend(self.cluster_check(&net).await?);
        }
        if super::encryption_ops::is_encrypted(&net) {
            missing.extend(self.encryption_check().await?);
        }
        missing.extend(self.check_policy(&att).await?);
        if let Some(n) = network_rules(&net) {
            let eps: Vec<_> = self.endpoint_fw(&net, &att, None)?.into_iter().collect();
            missing.extend(self.firewall.check(&[n], &eps).await?);
        }
        Ok(missing)
    }
}
