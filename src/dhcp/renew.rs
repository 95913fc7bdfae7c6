//! [`DhcpClient`]: keeps the leases of every DHCP endpoint of a host's state dir alive.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;

use super::client::{self, Failure, Schedule};
use super::message::{ClientParams, Offer};
use super::socket::UdpTransport;
use super::{DhcpLease, IpamDriver, now_secs, parse_hex_colons};
use crate::endpoint::Attachment;
use crate::error::Result;
use crate::netlink::{KernelOpener, RpFilter};
use crate::netns::Netns;
use crate::state::StateDir;

/// What happened to a lease, for a runtime that wants to know ([`DhcpClient::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DhcpEvent {
    /// The server renewed the lease (its record holds the new times).
    Renewed {
        /// The network.
        network: String,
        /// The container.
        container: String,
        /// The lease as now recorded.
        lease: DhcpLease,
    },
    /// The lease ran out or was refused: its address and default route were removed from the
    /// container and its record says `expired`. The endpoint stays (detach it, and attach again
    /// for a new lease).
    Lost {
        /// The network.
        network: String,
        /// The container.
        container: String,
        /// The address it had.
        address: Ipv4Net,
        /// Why: "expired", or the server's refusal.
        reason: String,
    },
    /// A lost lease was replaced by a new one (DISCOVER again, as a client in INIT does): its
    /// address is on the container's interface again, with the default route when the container
    /// had none, and its record holds the new lease.
    Acquired {
        /// The network.
        network: String,
        /// The container.
        container: String,
        /// The lease as now recorded.
        lease: DhcpLease,
    },
}

/// The DHCP lease keeper of a host (see [`crate::dhcp`]): spawn [`DhcpClient::run`] (or
/// [`DhcpClient::run_until`]) on the runtime, as the DNS resolver. Every second it reads the
/// endpoint records of DHCP networks from the state dir (so it follows attaches and detaches
/// made by any process) and, for each lease past T1, sends a REQUEST: unicast to the server
/// that granted it until T2, broadcast after. An ACK moves the recorded lease forward; without
/// an answer it tries again after half the time left to T2 (or to expiry), at least one
/// second and at most a minute later (RFC 2131 §4.4.5); at expiry, or on a NAK, the address is
/// removed from the container and [`DhcpEvent::Lost`] reported. A lost lease is sought again
/// (DISCOVER, as RFC 2131's INIT state) [`DhcpClient::reacquire_after`] later, then again after
/// twice that (a minute at most) while no server answers, until a server grants one
/// ([`DhcpEvent::Acquired`]) or the endpoint is detached.
///
/// A new lease after a lost one, and a renewal that names other nameservers, rewrite the
/// container's files where the runtime had them written ([`crate::Host::write_files`]): its
/// resolv.conf gets the lease's nameservers, its /etc/hosts (and those of containers linking
/// to it) the new address.
pub struct DhcpClient {
    state: StateDir,
    kernel: Arc<dyn KernelOpener>,
    tick: Duration,
    wait: Duration,
    reacquire_after: Duration,
    events: Option<tokio::sync::mpsc::UnboundedSender<DhcpEvent>>,
    files: Option<FilesHook>,
}

/// Rewrites the written files of the container named (and of those its change affects).
pub(crate) type FilesHook = Arc<dyn Fn(&str) + Send + Sync>;

/// How long an acquisition by the keeper may wait for a server.
const REACQUIRE_WAIT: Duration = Duration::from_secs(10);
/// The longest pause between two acquisitions of a lost lease.
const REACQUIRE_MAX_PAUSE: Duration = Duration::from_secs(60);

impl std::fmt::Debug for DhcpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhcpClient")
            .field("state", &self.state)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

/// Per endpoint and lease: when the next attempt may be made.
type Pacing = HashMap<(String, String, u64), SystemTime>;

enum Outcome {
    Renewed,
    Retry(SystemTime),
    Lost(String),
    Skip,
}

impl DhcpClient {
    pub(crate) fn new(state: StateDir, kernel: Arc<dyn KernelOpener>) -> Self {
        DhcpClient {
            state,
            kernel,
            tick: Duration::from_secs(1),
            wait: Duration::from_secs(3),
            reacquire_after: Duration::from_secs(5),
            events: None,
            files: None,
        }
    }

    /// What rewrites a container's files when its lease's address or nameservers change
    /// (called with the state lock held, as an attach calls it).
    pub(crate) fn files_hook(mut self, hook: FilesHook) -> Self {
        self.files = Some(hook);
        self
    }

    fn refresh_files(&self, container: &str) {
        if let Some(hook) = &self.files {
            hook(container);
        }
    }

    /// How long after a lease is lost the keeper asks for a new one (default 5 s; later
    /// attempts back off to a minute).
    pub fn reacquire_after(mut self, pause: Duration) -> Self {
        self.reacquire_after = pause.max(self.tick);
        self
    }

    /// Where to report renewals and lost leases.
    pub fn events(mut self, tx: tokio::sync::mpsc::UnboundedSender<DhcpEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// Runs until this future is dropped. Returns only when the state dir cannot be read at
    /// start; later failures (a netns gone, a socket that cannot be made) are logged and the
    /// endpoint is retried on the next pass.
    pub async fn run(self) -> Result<()> {
        self.state.networks()?;
        let mut pacing = Pacing::new();
        loop {
            if let Err(e) = self.pass(&mut pacing).await {
                tracing::warn!(target: "berth::dhcp", error = %e, "reading the state dir");
            }
            tokio::time::sleep(self.tick).await;
        }
    }

    /// Runs until `shutdown` completes (then returns `Ok`).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            r = self.run() => r,
            () = shutdown => Ok(()),
        }
    }

    /// One pass: every lease due is renewed (or lost) now.
    async fn pass(&self, pacing: &mut Pacing) -> Result<()> {
        let now = SystemTime::now();
        let mut due = Vec::new();
        let mut lost = Vec::new();
        let mut recorded = std::collections::HashSet::new();
        for net in self.state.networks()? {
            if net.ipam_driver != IpamDriver::Dhcp || net.removing {
                continue;
            }
            for a in self.state.endpoints(&net.name)? {
                let Some(lease) = a.dhcp.clone() else {
                    continue;
                };
                let key = (a.network.clone(), a.container.clone(), lease.obtained);
                recorded.insert(key.clone());
                if lease.expired && !self.state.is_detaching(&a.network, &a.container) {
                    match pacing.get(&key) {
                        None => {
                            pacing.insert(key, now + self.reacquire_after);
                        }
                        Some(t) if now >= *t => lost.push((key, a, lease, net.clone())),
                        Some(_) => {}
                    }
                    continue;
                }
                if lease.expired
                    || lease.infinite()
                    || now < lease.renew_at()
                    || pacing.get(&key).is_some_and(|t| now < *t)
                    || self.state.is_detaching(&a.network, &a.container)
                {
                    continue;
                }
                due.push((key, a, lease));
            }
        }
        // Forget the pacing of leases no longer recorded (detached, or renewed by another).
        pacing.retain(|k, _| recorded.contains(k));
        let outcomes = futures::future::join_all(
            due.iter()
                .map(|(_, a, lease)| self.renew_one(a, lease, now)),
        )
        .await;
        let found = futures::future::join_all(
            lost.iter()
                .map(|(_, a, lease, net)| self.reacquire_one(a, lease, net)),
        )
        .await;
        for ((key, a, _, _), got) in lost.into_iter().zip(found) {
            match got {
                Ok(true) => {
                    pacing.remove(&key);
                }
                Ok(false) => {
                    let next = (self.reacquire_after * 2).min(REACQUIRE_MAX_PAUSE);
                    pacing.insert(key, SystemTime::now() + next);
                }
                Err(e) => {
                    tracing::warn!(target: "berth::dhcp", network = %a.network, container = %a.container, error = %e, "seeking a new lease");
                    pacing.insert(key, now + REACQUIRE_MAX_PAUSE);
                }
            }
        }
        for ((key, a, lease), outcome) in due.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Renewed | Outcome::Skip => {
                    pacing.remove(&key);
                }
                Outcome::Retry(at) => {
                    pacing.insert(key, at);
                }
                Outcome::Lost(reason) => {
                    pacing.remove(&key);
                    if let Err(e) = self.lose(&a, &lease, &reason).await {
                        tracing::warn!(target: "berth::dhcp", network = %a.network, container = %a.container, error = %e, "removing a lost lease");
                    }
                }
            }
        }
        Ok(())
    }

    async fn renew_one(&self, a: &Attachment, lease: &DhcpLease, now: SystemTime) -> Outcome {
        if now >= lease.expires_at() {
            return Outcome::Lost("expired".into());
        }
        let rebinding = now >= lease.rebind_at();
        let next_boundary = if rebinding {
            lease.expires_at()
        } else {
            lease.rebind_at()
        };
        let left = next_boundary.duration_since(now).unwrap_or_default();
        let retry_at = now + (left / 2).clamp(self.tick, Duration::from_secs(60));
        let (Some(path), Some(mac), Some(client_id)) =
            (&a.netns, a.mac, parse_hex_colons(&lease.client_id))
        else {
            return Outcome::Skip;
        };
        let Ok(ns) = Netns::from_path(path) else {
            // The container is gone; gc detaches it.
            return Outcome::Retry(retry_at);
        };
        let transport = match UdpTransport::open(&ns, &a.ifname).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(target: "berth::dhcp", network = %a.network, container = %a.container, error = %e, "no socket for the renewal");
                return Outcome::Retry(retry_at);
            }
        };
        let params = ClientParams {
            mac,
            client_id,
            hostname: lease.hostname.clone(),
        };
        let wait = self
            .wait
            .min(lease.expires_at().duration_since(now).unwrap_or_default());
        let server = (!rebinding).then_some(lease.server);
        tracing::debug!(target: "berth::dhcp", network = %a.network, container = %a.container, rebinding, "renewing");
        match client::renew(
            &transport,
            &params,
            lease.address.addr(),
            server,
            wait,
            Schedule::default(),
        )
        .await
        {
            Ok(ack) if ack.address.addr() == lease.address.addr() => {
                match self.record_renewal(a, lease, &ack).await {
                    Ok(true) => Outcome::Renewed,
                    Ok(false) => Outcome::Skip,
                    Err(e) => {
                        tracing::warn!(target: "berth::dhcp", network = %a.network, container = %a.container, error = %e, "recording a renewal");
                        Outcome::Retry(retry_at)
                    }
                }
            }
            Ok(ack) => Outcome::Lost(format!(
                "the server acknowledged another address ({})",
                ack.address
            )),
            Err(Failure::Refused { message }) => Outcome::Lost(format!(
                "the server refused the renewal (DHCPNAK{})",
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
            Err(Failure::Timeout { .. }) => Outcome::Retry(retry_at),
            Err(Failure::Io(e)) => {
                tracing::warn!(target: "berth::dhcp", network = %a.network, container = %a.container, error = %e, "renewal");
                Outcome::Retry(retry_at)
            }
        }
    }

    /// Writes the renewed lease into the record, if the record still holds the lease renewed
    /// (a detach or another renewal may have come in between).
    async fn record_renewal(&self, a: &Attachment, old: &DhcpLease, ack: &Offer) -> Result<bool> {
        let Some((_lock, mut cur)) = self.still_holding(a, old).await? else {
            return Ok(false);
        };
        let lease = DhcpLease {
            server: ack.server,
            dns: ack.dns.clone(),
            obtained: now_secs(),
            lease_secs: ack.lease_secs,
            t1_secs: ack.t1_secs,
            t2_secs: ack.t2_secs,
            ..old.clone()
        };
        cur.dhcp = Some(lease.clone());
        self.state.put_endpoint(&cur)?;
        if lease.dns != old.dns {
            self.refresh_files(&a.container);
        }
        tracing::info!(target: "berth::dhcp", network = %a.network, container = %a.container, address = %lease.address, lease_secs = lease.lease_secs, "lease renewed");
        self.report(DhcpEvent::Renewed {
            network: a.network.clone(),
            container: a.container.clone(),
            lease,
        });
        Ok(true)
    }

    /// Removes a lost lease's address and default route from the container and marks the
    /// record's lease expired.
    async fn lose(&self, a: &Attachment, lease: &DhcpLease, reason: &str) -> Result<()> {
        let Some((_lock, mut cur)) = self.still_holding(a, lease).await? else {
            return Ok(());
        };
        if let Some(ns) = a.netns.as_ref().and_then(|p| Netns::from_path(p).ok()) {
            let nl = self.kernel.open(&ns).await?;
            if let Some(link) = nl.link_by_name(&a.ifname).await? {
                if let Some(gw) = cur.gateway {
                    let r = nl.route().default_via(IpAddr::V4(gw)).dev(link.index);
                    already(r.del().await, &[libc::ESRCH, libc::ENOENT])?;
                }
                let (ip, len) = (IpAddr::V4(lease.address.addr()), lease.address.prefix_len());
                let r = nl.address().del(link.index, &a.ifname, ip, len).await;
                already(r, &[libc::EADDRNOTAVAIL, libc::ENOENT])?;
                // Without an address or route, loose reverse-path filtering would drop the
                // servers' answers when the keeper seeks a new lease: off until it has one.
                // (A zero cannot go in a link request's device settings: the sysctl.)
                nl.write_sysctl(&format!("net/ipv4/conf/{}/rp_filter", a.ifname), "0")
                    .await?;
            }
        }
        cur.ipv4 = None;
        cur.gateway = None;
        if let Some(l) = &mut cur.dhcp {
            l.expired = true;
        }
        self.state.put_endpoint(&cur)?;
        tracing::warn!(target: "berth::dhcp", network = %a.network, container = %a.container, address = %lease.address, reason, "lease lost: address removed");
        self.report(DhcpEvent::Lost {
            network: a.network.clone(),
            container: a.container.clone(),
            address: lease.address,
            reason: reason.into(),
        });
        Ok(())
    }

    /// Seeks a new lease for an endpoint whose lease was lost: `Ok(true)` when one was granted
    /// and put in place, `Ok(false)` when no server answered (try again later).
    async fn reacquire_one(
        &self,
        a: &Attachment,
        old: &DhcpLease,
        net: &crate::network::NetworkInfo,
    ) -> Result<bool> {
        let (Some(path), Some(mac), Some(client_id)) =
            (&a.netns, a.mac, parse_hex_colons(&old.client_id))
        else {
            return Ok(false);
        };
        let Ok(ns) = Netns::from_path(path) else {
            return Ok(false);
        };
        // The container's addresses on its other networks are declined.
        let taken: Vec<IpAddr> = self
            .state
            .attachments_of(&a.container)?
            .iter()
            .filter(|o| o.network != a.network)
            .filter_map(Attachment::ip)
            .collect();
        let transport = UdpTransport::open(&ns, &a.ifname).await?;
        let params = ClientParams {
            mac,
            client_id: client_id.clone(),
            hostname: old.hostname.clone(),
        };
        tracing::debug!(target: "berth::dhcp", network = %a.network, container = %a.container, "seeking a new lease");
        let offer = match client::acquire(
            &transport,
            &params,
            REACQUIRE_WAIT,
            Schedule::default(),
            |o| !taken.contains(&IpAddr::V4(o.address.addr())),
        )
        .await
        {
            Ok(o) => o,
            Err(Failure::Io(e)) => {
                return Err(crate::error::Error::netlink("DHCP exchange", &a.ifname, e));
            }
            Err(_) => return Ok(false),
        };
        let Some((_lock, mut cur)) = self.still_holding(a, old).await? else {
            return Ok(false);
        };
        let lease = DhcpLease {
            address: offer.address,
            router: offer.router,
            dns: offer.dns.clone(),
            server: offer.server,
            obtained: super::now_secs(),
            lease_secs: offer.lease_secs,
            t1_secs: offer.t1_secs,
            t2_secs: offer.t2_secs,
            expired: false,
            ..old.clone()
        };
        let gateway = offer
            .router
            .filter(|_| !net.internal && !net.no_default_route);
        let nl = self.kernel.open(&ns).await?;
        let Some(link) = nl.link_by_name(&a.ifname).await? else {
            return Ok(false);
        };
        let (ip, len) = (IpAddr::V4(offer.address.addr()), offer.address.prefix_len());
        let r = nl.address().add(link.index, &a.ifname, ip, len).await;
        already(r, &[libc::EEXIST])?;
        nl.link()
            .set(link.index, &a.ifname)
            .rp_filter(RpFilter::Loose)
            .apply()
            .await?;
        // The default route, unless another network of the container holds it now.
        if let Some(gw) = gateway {
            let has_default = nl
                .route()
                .list()
                .await?
                .iter()
                .any(|r| r.prefix_len == 0 && r.family == crate::netlink::Family::V4);
            if !has_default {
                let r = nl.route().default_via(IpAddr::V4(gw)).dev(link.index);
                already(r.add().await, &[libc::EEXIST])?;
            }
        }
        cur.ipv4 = Some(offer.address);
        cur.gateway = gateway;
        cur.dhcp = Some(lease.clone());
        self.state.put_endpoint(&cur)?;
        self.refresh_files(&a.container);
        tracing::info!(target: "berth::dhcp", network = %a.network, container = %a.container, address = %lease.address, server = %lease.server, "new lease after a lost one");
        self.report(DhcpEvent::Acquired {
            network: a.network.clone(),
            container: a.container.clone(),
            lease,
        });
        Ok(true)
    }

    /// Under the state lock (held as long as the guard returned): the endpoint's record, if
    /// it still holds `lease` and is not being detached (a detach, a renewal or another
    /// process may have come in between).
    async fn still_holding(
        &self,
        a: &Attachment,
        lease: &DhcpLease,
    ) -> Result<Option<(crate::state::StateLock, Attachment)>> {
        let lock = self.state.lock().await?;
        let cur = self
            .state
            .endpoint(&a.network, &a.container)?
            .filter(|cur| {
                cur.dhcp.as_ref() == Some(lease)
                    && !self.state.is_detaching(&a.network, &a.container)
            });
        Ok(cur.map(|c| (lock, c)))
    }

    fn report(&self, e: DhcpEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }
}

/// `r`, with the errnos that mean the kernel is already as asked (an address or route already
/// there, or already gone) taken as success.
fn already(r: Result<()>, errnos: &[i32]) -> Result<()> {
    match r {
        Err(e) if e.errno().is_some_and(|n| errnos.contains(&n)) => Ok(()),
        r => r,
    }
}
