//! DHCP networks on the host: the lease of an attach, its release on detach, and the lease
//! keeper ([`Host::dhcp_client`]). See [`crate::dhcp`].

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::dhcp::{self, ClientParams, DhcpClient, DhcpLease, Failure, IpamDriver, UdpTransport};
use crate::driver::container::{InterfaceConfig, configure_interface};
use crate::endpoint::{Attachment, EndpointSpec};
use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::netns::Netns;
use crate::network::NetworkInfo;

use super::Host;
use super::journal::{Journal, Undo};

/// How long a DHCPRELEASE may wait to leave the interface (ARP for the server) before the
/// interface goes.
const RELEASE_DRAIN: Duration = Duration::from_secs(1);

/// Refuses what a DHCP network's endpoint cannot have: a static address (the server chooses)
/// or a published port.
pub(super) fn check_endpoint(net: &NetworkInfo, ep: &EndpointSpec) -> Result<()> {
    if net.ipam_driver != IpamDriver::Dhcp {
        return Ok(());
    }
    let refuse = |what, value: String| Error::InvalidValue {
        what,
        value,
        reason: "a DHCP network's addresses come from its DHCP server",
    };
    if let Some(ip) = ep.ip {
        return Err(refuse("ip address", ip.to_string()));
    }
    if let Some(ip) = ep.ip6 {
        return Err(refuse("ip6 address", ip.to_string()));
    }
    if ep.mac_from_ipv4 {
        return Err(refuse("mac address", "from the IPv4 address".into()));
    }
    // The LAN reaches a leased address directly: berth has no firewall rules on a DHCP
    // network (nor would a DNAT follow a renewal to another address).
    if let Some(p) = ep.ports.first() {
        return Err(Error::InvalidValue {
            what: "port",
            value: p.to_string(),
            reason: "a DHCP network publishes no ports: its containers are hosts of the LAN, reached at their leased addresses",
        });
    }
    Ok(())
}

/// For `check`: an endpoint whose DHCP lease was lost (its address removed) lacks its address.
pub(super) fn lost_lease(att: &Attachment) -> Option<String> {
    att.dhcp.as_ref().filter(|l| l.expired).map(|l| {
        format!(
            "DHCP lease of {} on {} (lost: the address was removed; detach and attach again)",
            l.address, att.ifname
        )
    })
}

impl Host {
    /// The DHCP lease keeper of this host (see [`DhcpClient`]): spawn
    /// [`DhcpClient::run`] or [`DhcpClient::run_until`] on the runtime's executor, beside the
    /// DNS resolver. It reads this host's state dir, so it renews the leases of endpoints
    /// attached by any process; it rewrites the files of a container whose lease changed
    /// address or nameservers, as an attach does.
    pub fn dhcp_client(&self) -> DhcpClient {
        let host = self.clone();
        DhcpClient::new(self.state.clone(), self.kernel.clone())
            .files_hook(std::sync::Arc::new(move |c: &str| host.refresh_files(c)))
    }

    /// The lease of a new endpoint on a DHCP network, configured on its interface (made by the
    /// driver, up, without address): the attachment record with the address, gateway and
    /// lease in it. Journaled: a later failure releases the lease.
    ///
    /// The host's state `lock` is let go while the server is waited for (seconds when it pings
    /// an address before offering it, up to the DHCP timeout when it is gone), so other
    /// attaches, detaches and gc of the host go on meanwhile. Taken again, it is checked that
    /// the network is still the same and not being removed, and that no other attach of this
    /// container to it was recorded in between; the container's other attachments are read
    /// afresh for the default-route election. Nothing of this attach is recorded before then:
    /// its interface lives in the container netns, where no other operation looks.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn dhcp_lease(
        &self,
        net: &NetworkInfo,
        ep: &EndpointSpec,
        container_nl: &Netlink,
        mut att: Attachment,
        others: &[Attachment],
        journal: &mut Journal,
        lock: &mut Option<crate::state::StateLock>,
    ) -> Result<Attachment> {
        let hostname = self
            .state
            .sandbox(&ep.container)?
            .map(|r| r.names)
            .unwrap_or_default()
            .merged(&ep.names)
            .hostname
            .unwrap_or_else(|| ep.container.chars().take(63).collect());
        let client_id = dhcp::client_id(&net.name, &ep.container);
        let Some(mac) = att.mac else {
            return Err(Error::DriverUnsupported {
                driver: net.driver.kind().name(),
                what: "the dhcp IPAM driver (its interfaces have no MAC)",
            });
        };
        let params = ClientParams {
            mac,
            client_id: client_id.clone(),
            hostname: hostname.clone(),
        };
        let dhcp_err = |source| Error::Dhcp {
            network: net.name.clone(),
            container: ep.container.clone(),
            source,
        };
        let transport = UdpTransport::open(&ep.netns, &ep.ifname).await?;
        // An address the container has on another network is declined.
        let taken: Vec<IpAddr> = others.iter().filter_map(Attachment::ip).collect();
        let timeout = self.dhcp_timeout;
        drop(lock.take());
        let got = dhcp::acquire(
            &transport,
            &params,
            timeout,
            dhcp::Schedule::default(),
            |o| !taken.contains(&IpAddr::V4(o.address.addr())),
        )
        .await;
        *lock = Some(self.state.lock().await?);
        let offer = got.map_err(|f| match f {
            Failure::Timeout { waiting_for } => Error::DhcpTimeout {
                network: net.name.clone(),
                container: ep.container.clone(),
                waiting_for,
                waited: timeout,
            },
            Failure::Io(e) => dhcp_err(e),
            Failure::Refused { message } => dhcp_err(std::io::Error::other(format!(
                "refused: {}",
                message.unwrap_or_default()
            ))),
        })?;
        let lease = DhcpLease {
            address: offer.address,
            router: offer.router,
            dns: offer.dns.clone(),
            server: offer.server,
            client_id: dhcp::hex_colons(&client_id),
            hostname,
            obtained: dhcp::now_secs(),
            lease_secs: offer.lease_secs,
            t1_secs: offer.t1_secs,
            t2_secs: offer.t2_secs,
            expired: false,
        };
        att.ipv4 = Some(lease.address);
        att.dhcp = Some(lease.clone());
        // What may have changed while the lock was let go: another attach of this container
        // to the network recorded meanwhile is the same DHCP client (same client id) and may
        // hold this very lease, which must then not be released.
        let existing = self.state.endpoint(&net.name, &ep.container)?;
        let theirs = existing
            .as_ref()
            .and_then(|e| e.dhcp.as_ref())
            .is_some_and(|l| l.address.addr() == offer.address.addr());
        if !theirs {
            // Granted: journaled at once, so whatever fails from here on releases it.
            journal.push(Undo::DhcpLease(Box::new(att.clone())));
        }
        if !self
            .state
            .network(&net.name)?
            .is_some_and(|n| n.id == net.id && !n.removing)
        {
            return Err(Error::NetworkNotFound {
                name: net.name.clone(),
            });
        }
        if existing.is_some() {
            return Err(Error::EndpointExists {
                network: net.name.clone(),
                container: ep.container.clone(),
            });
        }
        let others = &self.attachments_of(&ep.container)?;
        att.ipv4 = Some(lease.address);
        att.gateway = lease
            .router
            .filter(|_| !net.internal && !net.no_default_route);
        att.routes = net.routes.iter().chain(&ep.routes).copied().collect();
        let cfg = InterfaceConfig {
            ipv4: att.ipv4,
            ipv6: None,
            gateway: att.gateway,
            gateway6: None,
            default_dev: false,
            routes: &att.routes,
            take_default: super::routes::takes_default(
                others,
                (att.gateway.is_some(), false),
                ep.gw_priority,
            ),
        };
        configure_interface(container_nl, &ep.ifname, cfg).await?;
        // A LAN's server hands addresses out again: a neighbour may still hold the previous
        // holder's MAC. Announced always (best effort).
        crate::driver::announce::announce_interface(container_nl, &ep.ifname).await;
        tracing::info!(target: "berth::dhcp", network = %net.name, container = %ep.container, address = %offer.address, server = %offer.server, lease_secs = offer.lease_secs, "lease granted");
        Ok(att)
    }

    /// Sends DHCPRELEASE for the endpoint's lease, if it has one still valid; best-effort (a
    /// netns already gone cannot send it: the lease then runs out at the server).
    pub(super) async fn dhcp_release(&self, att: &Attachment) {
        let Some(lease) = att.dhcp.as_ref().filter(|l| !l.expired) else {
            return;
        };
        let r = async {
            let (Some(path), Some(mac), Some(client_id)) = (
                &att.netns,
                att.mac,
                dhcp::parse_hex_colons(&lease.client_id),
            ) else {
                return Ok(false);
            };
            let Ok(ns) = Netns::from_path(path) else {
                return Ok(false);
            };
            let t = UdpTransport::open(&ns, &att.ifname).await?;
            let params = ClientParams {
                mac,
                client_id,
                hostname: lease.hostname.clone(),
            };
            let server: Ipv4Addr = lease.server;
            dhcp::release(&t, &params, lease.address.addr(), server)
                .await
                .map_err(|e| Error::netlink("send DHCPRELEASE", &att.ifname, e))?;
            t.drain(RELEASE_DRAIN).await;
            Ok::<_, Error>(true)
        }
        .await;
        match r {
            Ok(true) => {
                tracing::info!(target: "berth::dhcp", network = %att.network, container = %att.container, address = %lease.address, server = %lease.server, "lease released");
            }
            Ok(false) => {
                tracing::info!(target: "berth::dhcp", network = %att.network, container = %att.container, "container netns gone: lease not released (it runs out at the server)");
            }
            Err(e) => {
                tracing::warn!(target: "berth::dhcp", network = %att.network, container = %att.container, error = %e, "lease not released");
            }
        }
    }
}
