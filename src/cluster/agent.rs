//! [`OverlayAgent`]: what keeps one host in its cluster, as a future the runtime spawns (no
//! daemon, like the DNS resolver):
//!
//! - holds the host's lease (re-attached after a restart within the TTL, so peers see no
//!   churn; a new one when it ended) and renews it every TTL/3;
//! - lists the store, then watches it from the listed revision, and keeps the kernel's
//!   forwarding (the driver's [`crate::driver::NetworkDriver::sync_peers`]) equal to it:
//!   changes are applied as they come, and in full every
//!   [`super::ClusterSettings::reconcile_every`] (which also restores entries an admin removed);
//! - a compacted watch is answered by listing again, never by retrying the old revision;
//! - a peer's endpoints whose lease ended (rather than the peer deleting them) are held for
//!   [`super::ClusterSettings::expiry_hold`] unless re-advertised: a store stalled past the TTL
//!   ends every lease at once, and every host re-advertises within that (it sees its own keys
//!   go and takes a new lease at once);
//! - with a new lease, re-validates this host's addresses first (a host partitioned past the
//!   reclaim grace may have lost them): claims still free are taken again, claims another
//!   container now has are reported ([`AgentStatus::conflicts`]) and those endpoints are not
//!   re-advertised;
//! - finishes the store side of detaches made while the store was away;
//! - the elected reclaimer (one host, by a leased key) frees the addresses of hosts dead for
//!   longer than [`super::ClusterSettings::reclaim_grace`].
//!
//! While the store is away the data plane is left as it is (it keeps working) and the agent
//! retries with a backoff of at most 5 s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::Cluster;
use super::encryption::KeySchedule;
use super::records::{self, Claim, EndpointRecord, NetKey, Tombstone, to_json};
use super::store::{Compare, KeyValue, LeaseId, Op, Txn, WatchEvent, WatchItem};
use crate::error::Result;
use crate::host::Host;
use crate::ipam::Conflict;

/// The longest wait between two attempts while the store is away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the agent is doing, for the runtime to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// The lease held.
    pub lease: Option<LeaseId>,
    /// Whether the agent is watching the store now.
    pub connected: bool,
    /// How many times the kernel was synchronised with the store (one network each).
    pub syncs: u64,
    /// How many times the agent listed the store (its start, compaction, reconnections).
    pub lists: u64,
    /// Addresses this host's endpoints hold that another host's container claimed while this
    /// host was away: those endpoints are not advertised.
    pub conflicts: Vec<Conflict>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// A handle on an agent's [`AgentStatus`].
pub type StatusHandle = Arc<Mutex<AgentStatus>>;

/// The overlay agent of one host (see the module docs); from [`Host::overlay_agent`].
#[derive(Debug)]
pub struct OverlayAgent {
    host: Host,
    cluster: Cluster,
    status: StatusHandle,
}

/// The agent's copy of the store's endpoints and hosts.
#[derive(Debug, Default)]
pub(super) struct View {
    /// Network → key → endpoint.
    pub(super) endpoints: BTreeMap<String, BTreeMap<String, EndpointRecord>>,
    /// Live hosts.
    hosts: BTreeSet<String>,
    /// Held removals: key → (when, network).
    held: HashMap<String, (Instant, String)>,
}

/// What one batch of watch events changed.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Networks that need a full sync (an endpoint went).
    pub(super) networks: BTreeSet<String>,
    /// Endpoints of other hosts put, by network (applied without reading the kernel unless
    /// the network needs a full sync anyway).
    pub(super) added: BTreeMap<String, Vec<EndpointRecord>>,
    pub(super) index: bool,
    pub(super) own_lease_ended: bool,
}

impl View {
    fn from_list(cluster: &Cluster, kvs: &[KeyValue]) -> View {
        let mut v = View::default();
        for kv in kvs {
            if let Some(h) = kv.key.strip_prefix("hosts/") {
                v.hosts.insert(h.to_string());
            } else if let Some(NetKey::Endpoint { network, .. }) = NetKey::parse(&kv.key)
                && let Ok(rec) = cluster.decode::<EndpointRecord>(kv)
            {
                v.endpoints
                    .entry(network.to_string())
                    .or_default()
                    .insert(kv.key.clone(), rec);
            }
        }
        v
    }

    pub(super) fn apply(
        &mut self,
        cluster: &Cluster,
        events: Vec<WatchEvent>,
        hold: Duration,
    ) -> Changes {
        let me = cluster.identity().name.as_str();
        let mut ch = Changes::default();
        // Hosts first: an ended lease deletes a host's key and its endpoints in one revision.
        for e in &events {
            match e {
                WatchEvent::Put(kv) => {
                    if let Some(h) = kv.key.strip_prefix("hosts/") {
                        self.hosts.insert(h.to_string());
                    }
                }
                WatchEvent::Delete { key, .. } => {
                    if let Some(h) = key.strip_prefix("hosts/") {
                        self.hosts.remove(h);
                        if h == me {
                            ch.own_lease_ended = true;
                        }
                    }
                }
            }
        }
        for e in events {
            match e {
                WatchEvent::Put(kv) => {
                    if kv.key == records::NETWORKS {
                        ch.index = true;
                    }
                    if let Some(NetKey::Endpoint { network, host, .. }) = NetKey::parse(&kv.key)
                        && let Ok(rec) = cluster.decode::<EndpointRecord>(&kv)
                    {
                        self.held.remove(&kv.key);
                        let old = self
                            .endpoints
                            .entry(network.to_string())
                            .or_default()
                            .insert(kv.key.clone(), rec.clone());
                        match old {
                            // Moved (another MAC or VTEP): the old entries must go.
                            Some(o) if o.mac != rec.mac || o.vtep != rec.vtep => {
                                ch.networks.insert(network.to_string());
                            }
                            _ if host != me => {
                                ch.added.entry(network.to_string()).or_default().push(rec);
                            }
                            _ => {}
                        }
                    }
                }
                WatchEvent::Delete { key, lease, .. } => {
                    if key == records::NETWORKS {
                        ch.index = true;
                    }
                    let Some(NetKey::Endpoint { network, host, .. }) = NetKey::parse(&key) else {
                        continue;
                    };
                    if host == me {
                        // Ours, gone with our lease (not by a detach: that removes the record
                        // here first and is not seen as an ended lease).
                        if lease.is_some() && !self.hosts.contains(me) {
                            ch.own_lease_ended = true;
                        }
                        continue;
                    }
                    if self.hosts.contains(host) || hold.is_zero() {
                        if let Some(m) = self.endpoints.get_mut(network) {
                            m.remove(&key);
                        }
                        ch.networks.insert(network.to_string());
                    } else {
                        self.held
                            .insert(key.clone(), (Instant::now() + hold, network.to_string()));
                    }
                }
            }
        }
        ch
    }

    /// Ends the holds that are due; returns the networks they touched.
    pub(super) fn release_due(&mut self) -> BTreeSet<String> {
        let now = Instant::now();
        let due: Vec<String> = self
            .held
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut nets = BTreeSet::new();
        for k in due {
            if let Some((_, n)) = self.held.remove(&k) {
                if let Some(m) = self.endpoints.get_mut(&n) {
                    m.remove(&k);
                }
                nets.insert(n);
            }
        }
        nets
    }

    fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|(t, _)| *t).min()
    }
}

impl OverlayAgent {
    pub(crate) fn new(host: Host, cluster: Cluster) -> OverlayAgent {
        OverlayAgent {
            host,
            cluster,
            status: StatusHandle::default(),
        }
    }

    /// A handle on the agent's status (readable while it runs).
    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    fn update(&self, f: impl FnOnce(&mut AgentStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Runs until the future is dropped (the runtime aborts its task to stop it). Errors are
    /// logged and retried with backoff; they never end it.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) if super::lease_gone(&e) => {
                    tracing::warn!(target: "berth::cluster", error = %e, "lease gone: taking a new one");
                    if let Some(l) = self.cluster.current_lease().await {
                        self.cluster.lease_lost(l).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "berth::cluster", error = %e, retry_in = ?backoff,
                                   "overlay agent: store unavailable");
                    self.update(|s| {
                        s.connected = false;
                        s.last_error = Some(e.to_string());
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One connection: lease, list, then watch until something requires listing again.
    async fn session(&self) -> Result<()> {
        let store = self.cluster.store().clone();
        let settings = *self.cluster.settings();
        let before = self.cluster.current_lease().await;
        let lease = self.cluster.lease().await?;
        if before != Some(lease) {
            let conflicts = self.host.advertise_all().await?;
            for c in &conflicts {
                tracing::error!(target: "berth::cluster", network = %c.network, address = %c.address,
                                container = %c.recorded, claimed_by = %c.claimed_by,
                                "address claimed elsewhere while this host was away; endpoint not advertised");
            }
            self.update(|s| s.conflicts = conflicts);
        }
        self.host.finish_pending_detaches().await?;
        let (kvs, rev) = store.list("").await?;
        let mut view = View::from_list(&self.cluster, &kvs);
        let encrypting = self.cluster.secret().is_some();
        if encrypting
            && let Some(kv) = kvs.iter().find(|kv| kv.key == records::KEYS)
            && let Ok(k) = self.cluster.decode::<KeySchedule>(kv)
        {
            self.cluster.set_keys(k);
        }
        self.update(|s| {
            s.lists += 1;
            s.lease = Some(lease);
            s.connected = true;
            s.last_error = None;
        });
        self.sync_all(&view).await?;
        if encrypting {
            self.sync_encryption().await;
        }
        let mut watch = store.watch("", rev + 1).await?;
        let mut rotate = tokio::time::interval(
            (settings.key_rotation / 4).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        );
        let mut keepalive = tokio::time::interval(settings.lease_ttl / 3);
        let mut full = tokio::time::interval(settings.reconcile_every);
        let mut reclaim =
            tokio::time::interval((settings.reclaim_grace / 4).max(Duration::from_secs(1)));
        keepalive.tick().await;
        full.tick().await;
        loop {
            let due = view
                .next_due()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let switch = self.next_key_switch(encrypting);
            tokio::select! {
                item = watch.next() => match item {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(e),
                    Some(Ok(WatchItem::Compacted { compact_revision })) => {
                        tracing::info!(target: "berth::cluster", compact_revision,
                                       "watch compacted: listing again");
                        return Ok(());
                    }
                    Some(Ok(WatchItem::Events(events))) => {
                        let keys = encrypting && self.keys_changed(&events);
                        let ch = view.apply(&self.cluster, events, settings.expiry_hold);
                        if ch.own_lease_ended {
                            tracing::warn!(target: "berth::cluster", lease = lease.0,
                                           "this host's lease ended: taking a new one");
                            self.cluster.lease_lost(lease).await;
                            return Ok(());
                        }
                        if ch.index {
                            self.host.forget_deleted_networks().await?;
                        }
                        for (n, new) in &ch.added {
                            if !ch.networks.contains(n) {
                                self.add(&view, n, new).await;
                            }
                        }
                        for n in ch.networks {
                            self.sync(&view, &n).await?;
                        }
                        if keys {
                            self.sync_encryption().await;
                        }
                    }
                },
                _ = tokio::time::sleep_until(switch) => {
                    // A new key generation starts being sent with.
                    self.sync_encryption().await;
                }
                _ = rotate.tick(), if encrypting => {
                    match self.cluster.rotate_keys_if_due().await {
                        Ok(Some(k)) => {
                            tracing::info!(target: "berth::cluster",
                                           generations = ?k.generations.iter().map(|g| g.tag).collect::<Vec<_>>(),
                                           "encryption keys rotated");
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(target: "berth::cluster", error = %e, "key rotation failed"),
                    }
                }
                _ = keepalive.tick() => {
                    if store.keep_alive(lease).await?.is_none() {
                        tracing::warn!(target: "berth::cluster", lease = lease.0,
                                       "lease not found at renewal: taking a new one");
                        self.cluster.lease_lost(lease).await;
                        return Ok(());
                    }
                }
                _ = full.tick() => {
                    self.sync_all(&view).await?;
                    self.host.finish_pending_detaches().await?;
                }
                _ = reclaim.tick() => {
                    if let Err(e) = self.reclaim(lease).await {
                        tracing::warn!(target: "berth::cluster", error = %e, "reclaim failed");
                    }
                }
                _ = tokio::time::sleep_until(due) => {
                    for n in view.release_due() {
                        self.sync(&view, &n).await?;
                    }
                }
            }
        }
    }

    /// Takes a key schedule put in `events`; whether there was one.
    fn keys_changed(&self, events: &[WatchEvent]) -> bool {
        let mut changed = false;
        for e in events {
            if let WatchEvent::Put(kv) = e
                && kv.key == records::KEYS
                && let Ok(k) = self.cluster.decode::<KeySchedule>(kv)
            {
                self.cluster.set_keys(k);
                changed = true;
            }
        }
        changed
    }

    /// When the generation sent with changes next (far away when it does not).
    fn next_key_switch(&self, encrypting: bool) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        if !encrypting {
            return far;
        }
        let now = super::encryption::unix_now();
        match self.cluster.cached_keys().and_then(|k| k.next_switch(now)) {
            // Whole seconds: a little after the second starts.
            Some(t) => Instant::now() + Duration::from_secs(t - now) + Duration::from_millis(20),
            None => far,
        }
    }

    /// Makes the IPsec state match (errors are reported, the next change or reconcile retries).
    async fn sync_encryption(&self) {
        match self.host.sync_encryption().await {
            Ok(r) => {
                if r.changed() {
                    self.update(|s| s.syncs += 1);
                }
            }
            Err(e) => {
                tracing::warn!(target: "berth::cluster", error = %e, "IPsec state not synchronised");
                self.update(|s| s.last_error = Some(e.to_string()));
            }
        }
    }

    async fn sync_all(&self, view: &View) -> Result<()> {
        self.host.forget_deleted_networks().await?;
        for net in self.host.cluster_networks_here()? {
            self.sync(view, &net.name).await?;
        }
        Ok(())
    }

    /// The other hosts' endpoints of a network, as the view has them.
    fn others(&self, view: &View, network: &str) -> Vec<EndpointRecord> {
        let me = self.cluster.identity().name.as_str();
        view.endpoints
            .get(network)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|r| r.host != me)
            .cloned()
            .collect()
    }

    /// Adds forwarding to endpoints just advertised (no read of the kernel: the next full
    /// reconcile checks it all).
    async fn add(&self, view: &View, network: &str, new: &[EndpointRecord]) {
        let all = self.others(view, network);
        match self.host.add_peers(network, new, &all).await {
            Ok(_) => self.update(|s| s.syncs += 1),
            Err(e) => {
                tracing::warn!(target: "berth::cluster", network, error = %e,
                               "forwarding not added");
                self.update(|s| s.last_error = Some(e.to_string()));
            }
        }
    }

    /// Makes this host's forwarding on one network equal to the view.
    async fn sync(&self, view: &View, network: &str) -> Result<()> {
        let peers = self.others(view, network);
        match self.host.apply_peers(network, &peers).await {
            Ok(Some(r)) => {
                if r.added + r.removed > 0 {
                    tracing::debug!(target: "berth::cluster", network, added = r.added,
                                    removed = r.removed, "forwarding synchronised");
                }
                self.update(|s| s.syncs += 1);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "berth::cluster", network, error = %e,
                               "forwarding not synchronised");
                self.update(|s| s.last_error = Some(e.to_string()));
            }
        }
        Ok(())
    }

    /// The reclaimer's round, if this host is (or becomes) the reclaimer: addresses of hosts
    /// without a live lease for longer than the grace period are freed.
    async fn reclaim(&self, lease: LeaseId) -> Result<()> {
        let store = self.cluster.store();
        let me = self.cluster.identity().name.clone();
        let won = store
            .txn(Txn::new(
                vec![Compare::Absent(records::RECLAIMER.into())],
                vec![Op::Put {
                    key: records::RECLAIMER.into(),
                    value: me.clone().into_bytes(),
                    lease: Some(lease),
                }],
            ))
            .await?;
        if !won {
            let holder = store.get(records::RECLAIMER).await?;
            if holder.is_none_or(|kv| kv.value != me.as_bytes()) {
                return Ok(());
            }
        }
        let (hosts, _) = store.list("hosts/").await?;
        let alive: BTreeSet<String> = hosts
            .iter()
            .filter_map(|kv| kv.key.strip_prefix("hosts/").map(str::to_string))
            .collect();
        let (all, _) = store.list("net/").await?;
        let mut dead: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for kv in &all {
            if let Some(NetKey::Claim(..)) = NetKey::parse(&kv.key)
                && let Ok(c) = self.cluster.decode::<Claim>(kv)
                && !alive.contains(&c.host)
            {
                dead.entry(c.host).or_default().push(kv.key.clone());
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let grace = self.cluster.settings().reclaim_grace.as_secs();
        for (host, keys) in dead {
            let tomb = records::tombstone(&host);
            let since = match store.get(&tomb).await? {
                Some(kv) => self.cluster.decode::<Tombstone>(&kv)?.since,
                None => {
                    let t = Tombstone { since: now };
                    store
                        .txn(Txn::new(
                            vec![Compare::Absent(tomb.clone())],
                            vec![Op::put(tomb.clone(), to_json(&t))],
                        ))
                        .await?;
                    now
                }
            };
            if now.saturating_sub(since) < grace {
                continue;
            }
            for chunk in keys.chunks(100) {
                let ops = chunk.iter().cloned().map(Op::Delete).collect();
                // Only while the host is still gone.
                store
                    .txn(Txn::new(vec![Compare::Absent(records::host(&host))], ops))
                    .await?;
            }
            store.txn(Txn::new(vec![], vec![Op::Delete(tomb)])).await?;
            tracing::info!(target: "berth::cluster", host = %host, addresses = keys.len(),
                           "reclaimed the addresses of a dead host");
        }
        Ok(())
    }
}
