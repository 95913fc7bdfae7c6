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
//! says `dns_enabled` (bridge networks by default), in the **host netns**, each socket bound
//! to that network's device (its bridge, with `SO_BINDTODEVICE`; a network without a device
//! in its record is not served). Sockets are made by one thread that lives inside the host
//! netns (`sockets`), never by a tokio worker. When a network's device is removed and made
//! again under the same name, its sockets are made again too.
//!
//! # Who is answered
//! Only the containers of the network: a message on network N's gateway is served only when
//! its source address is the address of an endpoint on N; from anyone else it is **dropped
//! without any reply** (no answer, no error code, nothing forwarded). Two fences:
//! - the binding to the bridge: a packet that did not arrive on N's bridge never reaches N's
//!   sockets — a neighbour routed to the gateway through the host gets the kernel's
//!   port-unreachable (UDP) or a reset (TCP), and so does a container of another network:
//!   a container's packets only reach its own networks' sockets;
//! - the source check: a packet that did arrive on the bridge from an address that is no
//!   endpoint of N (something else plugged into the bridge, a spoofed or unassigned address)
//!   is dropped; this also covers the processes of the host itself, whose packets the kernel
//!   files under the device that holds the gateway address: they are not answered either.
//!
//! # What it answers
//! The querier is the container whose endpoint on N has the query's source address. Its
//! **scope** is the set of DNS-enabled networks that container is attached to. In scope, the
//! resolver answers:
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
//!   internal network, not even a DNS query (as Docker).
//!
//! # Fair shares
//! No container can starve the others (`serve`, `limit`). What the resolver answers itself
//! (from the name table, REFUSED, FORMERR) is answered at once by the loop that received it:
//! it never waits for, nor competes with, forwarded queries. Forwarded queries are bounded per
//! client (the container: all its addresses together) and in all — at most 32 per client and
//! 512 overall in flight, over UDP and TCP and every network together — and TCP connections
//! likewise, at most 8 per client and 256 overall. A client at its bound has its *new*
//! forwarded query dropped (its stub resolver retries) or its *new* connection closed; what
//! others hold is never touched. Pipelined TCP queries are served side by side, their replies
//! written as they come (RFC 7766 lets them come out of order).
//!
//! # Following changes
//! The resolver reads only the state dir, so changes made by any process are seen. An inotify
//! watch (`watch`) covers `networks/`, `endpoints/`, each `endpoints/NETWORK/` and `sandboxes/`.
//! Before each query the pending events are read without blocking and, if records changed, the
//! name table is rebuilt from the records (`table`): an attach, detach or re-attach that
//! finished before a query was sent is always reflected in its answer. A background task also
//! wakes on those events (and once a second, to retry failed binds) and binds or unbinds the
//! listeners, so a new network is served within milliseconds.

pub(crate) mod answer;
mod limit;
pub(crate) mod serve;
mod sockets;
pub(crate) mod table;
pub(crate) mod upstream;
mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::netns::Netns;
use crate::state::StateDir;

use limit::Limit;
use sockets::HostSockets;
use table::{ListenAddr, NameTable};
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
            forwards: Limit::new(serve::FORWARDS_PER_CLIENT, serve::FORWARDS),
            connections: Limit::new(serve::CONNECTIONS_PER_CLIENT, serve::CONNECTIONS),
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
    /// Forwarded queries in flight, per client and in all.
    forwards: Arc<Limit>,
    /// TCP connections open, per client and in all.
    connections: Arc<Limit>,
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

/// A served address: its sockets and their UDP and TCP tasks, aborted on drop.
struct Listener {
    udp: Arc<UdpSocket>,
    tcp: Arc<TcpListener>,
    tasks: [JoinHandle<()>; 2],
}

impl Listener {
    /// Whether both sockets are still bound to a live device named `device`. A socket is bound
    /// to a device's index: when the device is removed and made again (same name, new index),
    /// the old sockets would never receive again, so they must be made anew.
    fn on_device(&self, device: &str) -> bool {
        let named = |name: nix::Result<std::ffi::OsString>| name.is_ok_and(|n| n == device);
        named(getsockopt(&*self.udp, sockopt::BindToDevice))
            && named(getsockopt(&*self.tcp, sockopt::BindToDevice))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The listeners, by network, gateway and device; and the last bind error of each address that
/// failed (logged once per distinct error).
#[derive(Default)]
struct Listeners {
    bound: HashMap<ListenAddr, Listener>,
    failed: HashMap<ListenAddr, String>,
}

impl Listeners {
    /// Binds what the table serves and is not bound; drops what it no longer serves, and
    /// rebinds what lost its device.
    async fn reconcile(&mut self, shared: &Arc<Shared>, table: &NameTable) {
        let want: Vec<ListenAddr> = table.listen_addrs();
        self.bound.retain(|k, l| {
            if !want.contains(k) {
                info!(target: "berth::dns", network = %k.network, addr = %k.ip, "stopped serving");
                false
            } else if !l.on_device(&k.device) {
                info!(target: "berth::dns", network = %k.network, addr = %k.ip, device = %k.device,
                      "device was replaced: binding again");
                false
            } else {
                true
            }
        });
        self.failed.retain(|k, _| want.contains(k));
        for key in want {
            if self.bound.contains_key(&key) {
                continue;
            }
            match bind(shared, &key).await {
                Ok(l) => {
                    info!(target: "berth::dns", network = %key.network, addr = %key.ip, device = %key.device, "serving");
                    self.failed.remove(&key);
                    self.bound.insert(key, l);
                }
                Err(e) => {
                    let msg = e.to_string();
                    if self.failed.get(&key) != Some(&msg) {
                        warn!(target: "berth::dns", network = %key.network, addr = %key.ip, device = %key.device,
                              error = %msg, "cannot serve (retrying)");
                    }
                    self.failed.insert(key, msg);
                }
            }
        }
    }
}

/// Binds UDP and TCP port 53 on the address, to its device, and starts serving its network.
async fn bind(shared: &Arc<Shared>, at: &ListenAddr) -> std::io::Result<Listener> {
    let addr = SocketAddr::new(at.ip, 53);
    let udp = Arc::new(shared.sockets.udp(addr, Some(&at.device)).await?);
    let tcp = Arc::new(shared.sockets.listen(addr, &at.device).await?);
    Ok(Listener {
        tasks: [
            tokio::spawn(serve::udp(shared.clone(), at.network.clone(), udp.clone())),
            tokio::spawn(serve::tcp(shared.clone(), at.network.clone(), tcp.clone())),
        ],
        udp,
        tcp,
    })
}

/// Compile-time check: the resolver's future is `Send`, so runtimes can `tokio::spawn` it.
#[allow(dead_code)]
fn resolver_future_is_send(r: Resolver) {
    fn send<T: Send>(_: T) {}
    send(r.clone().run());
    send(r.run_until(async {}));
}
