//! The embedded DNS resolver: Docker's per-network name service, without a daemon. A runtime
//! gets a [`Resolver`] from [`crate::Host::dns_resolver`] and spawns [`Resolver::run`] on its
//! own executor; it serves until that future is dropped (abort the task) or, with
//! [`Resolver::run_until`], until a shutdown future completes.
//!
//! ```no_run
//! # async fn demo(host: &berth::Host) -> berth::Result<()> {
//! let resolver = tokio::spawn(host.dns_resolver().run());
//! // … networks and containers come and go, in this process or others …
//! resolver.abort();
//! # Ok(()) }
//! ```
//!
//! # Where it listens
//! UDP and TCP port 53 on every gateway address (IPv4 and IPv6) of every network whose record
//! says `dns_enabled` (bridge networks by default), in the **host netns**. Sockets are made by
//! one thread that lives inside the host netns (`sockets`), never by a tokio worker.
//!
//! # What it answers
//! A query that arrives on network N's gateway from source address S comes from the container
//! whose endpoint on N has address S — or, if none, whose endpoint on another network has it:
//! a container that asks another network's gateway keeps its own scope, so the resolver never
//! bridges networks the firewall isolates. Its **scope** is the set of DNS-enabled networks
//! that container is attached to (just N when S is no container's address: a process of the
//! host). In scope, the resolver answers:
//! - **A / AAAA** (and ANY) for container names and their network-scoped aliases, and for
//!   `NAME.NETWORK`: case-insensitive, with or without the trailing dot; every matching
//!   address; a known name without an address of the asked family (or asked for another type)
//!   gets NOERROR with no answers, and is not forwarded;
//! - **PTR** for container addresses, as `CONTAINER.NETWORK.` (Docker's form);
//!
//! with TTL 600 (Docker's) and the AA bit. Names of containers that share no network with the
//! querier are not in scope: the query goes upstream like any other name, which in general
//! answers NXDOMAIN.
//!
//! # Where everything else goes
//! The query is forwarded unchanged, over the transport it came on (UDP → UDP, TCP → TCP), to
//! the **upstream servers** of the querier: its own `--dns` ([`crate::NameOptions::dns`] in its
//! sandbox record) if set, else network N's `dns_servers`, else every `nameserver` of the
//! host's resolv.conf ([`crate::HostBuilder::resolv_conf`], re-read per forwarded query),
//! loopback ones included — the resolver lives in the host netns, as Docker's forwards from
//! the host's namespace. Servers are tried in order; each gets
//! [`Resolver::upstream_timeout`] (2 s by default). An upstream's truncated UDP reply is
//! relayed as it is, so its TC bit makes the client ask again over TCP. Addresses the
//! resolver itself serves on are never used as upstreams (no loops).
//! - no upstream answered: **SERVFAIL**;
//! - no upstream configured (or only the resolver's own addresses): **REFUSED**, so the
//!   client's stub resolver moves on to its next nameserver at once;
//! - every network in scope is `internal`: **REFUSED** too — nothing leaves the host from an
//!   internal network, not even a DNS query (as Docker);
//! - the querier is a container on no DNS-enabled network: **REFUSED**.
//!
//! # Following changes
//! The resolver reads only the state dir, so changes made by any process are seen. An inotify
//! watch (`watch`) covers `networks/`, `endpoints/`, each `endpoints/NETWORK/` and `sandboxes/`.
//! Before each query the pending events are read without blocking and, if records changed, the
//! name table is rebuilt from the records (`table`): an attach, detach or re-attach that
//! finished before a query was sent is always reflected in its answer. A background task also
//! wakes on those events (and once a second, to retry failed binds) and binds or unbinds the
//! listeners, so a new network is served within milliseconds.

mod answer;
mod serve;
mod sockets;
mod table;
mod upstream;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::state::StateDir;

use sockets::HostSockets;
use table::NameTable;
use watch::Watch;

/// How often listeners that failed to bind are retried when nothing else happens.
const RETRY: Duration = Duration::from_secs(1);

/// The embedded DNS resolver of one host netns and state dir. Built by
/// [`crate::Host::dns_resolver`] (or [`Resolver::new`]); does nothing until [`Resolver::run`].
#[derive(Debug, Clone)]
pub struct Resolver {
    state: StateDir,
    netns: Netns,
    resolv_conf: PathBuf,
    upstream_timeout: Duration,
}

impl Resolver {
    /// A resolver for the networks recorded in `state`, serving in `netns` (the host netns),
    /// forwarding by default to the nameservers of `resolv_conf` (the host's).
    pub fn new(state: StateDir, netns: Netns, resolv_conf: impl Into<PathBuf>) -> Self {
        Resolver {
            state,
            netns,
            resolv_conf: resolv_conf.into(),
            upstream_timeout: upstream::DEFAULT_TIMEOUT,
        }
    }

    /// How long each upstream server gets to answer before the next one is tried (default 2 s).
    pub fn upstream_timeout(mut self, timeout: Duration) -> Self {
        self.upstream_timeout = timeout;
        self
    }

    /// Serves until this future is dropped (e.g. its task aborted); listeners and the socket
    /// thread go with it. Must run inside a tokio runtime (any flavour). Returns only on an
    /// error: the state dir cannot be watched or read at start, the socket thread cannot be
    /// started in the host netns, or the watch fails later. A listener that cannot bind (the
    /// address is not there yet, port 53 is taken) is logged and retried, not an error.
    pub async fn run(self) -> Result<()> {
        let watch_err = |source| Error::state("watch", self.state.root(), source);
        let watch = Watch::new(self.state.root()).map_err(watch_err)?;
        let table = NameTable::load(&self.state)?;
        let sockets = HostSockets::start(&self.netns)?;
        let shared = Arc::new(Shared {
            state: self.state.clone(),
            watch,
            current: Mutex::new(Current {
                table: Arc::new(table),
                dirty: false,
            }),
            sockets,
            resolv_conf: self.resolv_conf.clone(),
            upstream_timeout: self.upstream_timeout,
        });
        info!(target: "berth::dns", state = %self.state.root().display(), "resolver started");
        let mut listeners = Listeners::default();
        loop {
            let table = shared.table();
            listeners.reconcile(&shared, &table).await;
            drop(table);
            match tokio::time::timeout(RETRY, shared.watch.wait()).await {
                Ok(r) => r.map_err(watch_err)?,
                Err(_) => continue,
            }
        }
    }

    /// As [`Resolver::run`], until `shutdown` completes (then `Ok(())`).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::select! {
            r = self.run() => r,
            () = shutdown => Ok(()),
        }
    }
}

/// The current table and whether the last reload failed (then it is retried).
struct Current {
    table: Arc<NameTable>,
    dirty: bool,
}

/// What the serving tasks share.
pub(crate) struct Shared {
    state: StateDir,
    watch: Watch,
    current: Mutex<Current>,
    sockets: HostSockets,
    resolv_conf: PathBuf,
    upstream_timeout: Duration,
}

impl Shared {
    /// The name table, rebuilt first if records changed since the last call.
    fn table(&self) -> Arc<NameTable> {
        let mut cur = self.current.lock().expect("resolver table lock");
        match self.watch.changed() {
            Ok(changed) => cur.dirty |= changed,
            Err(e) => {
                warn!(target: "berth::dns", error = %e, "reading state dir events failed: reloading");
                cur.dirty = true;
            }
        }
        if cur.dirty {
            // A few small files: cheaper than a hop to a blocking thread.
            match NameTable::load(&self.state) {
                Ok(t) => {
                    debug!(target: "berth::dns", "records changed: name table reloaded");
                    *cur = Current {
                        table: Arc::new(t),
                        dirty: false,
                    };
                }
                Err(e) => {
                    warn!(target: "berth::dns", error = %e, "reloading records failed; keeping the last table")
                }
            }
        }
        cur.table.clone()
    }
}

/// A served address: its UDP and TCP tasks, aborted on drop.
struct Listener {
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The listeners, by network and gateway; and the last bind error of each address that failed
/// (logged once per distinct error).
#[derive(Default)]
struct Listeners {
    bound: HashMap<(String, IpAddr), Listener>,
    failed: HashMap<(String, IpAddr), String>,
}

impl Listeners {
    /// Binds what the table serves and is not bound; drops what it no longer serves.
    async fn reconcile(&mut self, shared: &Arc<Shared>, table: &NameTable) {
        let want: Vec<(String, IpAddr)> = table.listen_addrs();
        self.bound.retain(|k, _| {
            let keep = want.contains(k);
            if !keep {
                info!(target: "berth::dns", network = %k.0, addr = %k.1, "stopped serving");
            }
            keep
        });
        self.failed.retain(|k, _| want.contains(k));
        for key in want {
            if self.bound.contains_key(&key) {
                continue;
            }
            match bind(shared, &key.0, key.1).await {
                Ok(l) => {
                    info!(target: "berth::dns", network = %key.0, addr = %key.1, "serving");
                    self.failed.remove(&key);
                    self.bound.insert(key, l);
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.failed.get(&key) != Some(&msg) {
                        warn!(target: "berth::dns", network = %key.0, addr = %key.1, error = %msg,
                              "cannot serve (retrying)");
                    }
                    self.failed.insert(key, msg);
                }
            }
        }
    }
}

/// Binds UDP and TCP port 53 on `ip` and starts serving `network` there.
async fn bind(shared: &Arc<Shared>, network: &str, ip: IpAddr) -> std::io::Result<Listener> {
    let addr = SocketAddr::new(ip, 53);
    let udp = shared.sockets.udp(addr).await?;
    let tcp = shared.sockets.listen(addr).await?;
    Ok(Listener {
        tasks: [
            tokio::spawn(serve::udp(shared.clone(), network.to_string(), udp)),
            tokio::spawn(serve::tcp(shared.clone(), network.to_string(), tcp)),
        ],
    })
}

/// Compile-time check: the resolver's future is `Send`, so runtimes can `tokio::spawn` it.
#[allow(dead_code)]
fn resolver_future_is_send(r: Resolver) {
    fn send<T: Send>(_: T) {}
    send(r.clone().run());
    send(r.run_until(async {}));
}
