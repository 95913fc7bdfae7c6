//! [`Host`]: the one object a runtime holds. It runs every operation as
//! validate → lock → IPAM → driver → firewall → persist, records each finished step in a
//! journal (`host/journal.rs`), and undoes them in reverse when a later step fails.
//!
//! Concurrency: every mutating operation holds the state dir's exclusive `flock` (see
//! [`crate::state`]), so tasks and processes sharing a state dir see one consistent world.

mod bandwidth_ops;
mod cluster_ops;
mod default_bridge;
mod dhcp_ops;
mod encryption_ops;
mod endpoint_ops;
mod files_ops;
mod firewall_ops;
mod gc;
mod journal;
mod links;
mod network_ops;
mod policy_ops;
mod ports;
mod resolver_ops;
mod routes;

pub use crate::step::Step;
pub(crate) use cluster_ops::PendingDetach;
pub use gc::GcReport;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::{
    Cluster, ClusterIpam, ClusterSecret, ClusterSettings, ClusterStore, HostIdentity,
};
use crate::daemon_config::DaemonConfig;
use crate::driver::{DriverContext, Scope, Underlay, driver_for};
use crate::error::{Error, Result};
use crate::firewall::{Firewall, NftFirewall};
use crate::ipam::{AddressPool, FileIpam, Ipam};
use crate::netlink::{KernelOpener, Netlink, RtOpener, Teardown};
use crate::netns::Netns;
use crate::state::StateDir;

/// Called after each finished step; an error makes the operation fail there and roll back.
/// Used by tests to prove that nothing leaks whatever step fails, and by benchmarks to time
/// steps. Detach is best-effort: an error after one of its steps is reported like a failed step
/// (the record is kept for a retry) and the remaining steps still run; after
/// [`Step::DetachRecord`] (the record is gone) it is only returned.
pub type FaultHook = Arc<dyn Fn(Step) -> Result<()> + Send + Sync>;

/// Builder for [`Host`]: `Host::builder().state_dir(…).netns(…).build().await`.
#[derive(Default)]
pub struct HostBuilder {
    state_dir: Option<PathBuf>,
    netns: Option<Netns>,
    firewall: Option<Arc<dyn Firewall>>,
    ipam: Option<Arc<dyn Ipam>>,
    pools4: Option<Vec<AddressPool>>,
    pools6: Option<Vec<AddressPool>>,
    resolv_conf: Option<PathBuf>,
    hosts_file: Option<PathBuf>,
    daemon: Option<DaemonConfig>,
    fault: Option<FaultHook>,
    kernel: Option<Arc<dyn KernelOpener>>,
    short_lived: bool,
    cluster: Option<(Arc<dyn ClusterStore>, HostIdentity)>,
    cluster_settings: ClusterSettings,
    cluster_secret: Option<ClusterSecret>,
    dhcp_timeout: Option<std::time::Duration>,
}

impl fmt::Debug for HostBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostBuilder")
            .field("state_dir", &self.state_dir)
            .field("netns", &self.netns)
            .finish_non_exhaustive()
    }
}

impl HostBuilder {
    /// Where records live (default `/var/lib/berth`).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The host-side netns: bridges, NAT and sysctls live here. Required, so nothing ever lands
    /// in a namespace by accident; pass `Netns::current()?` for the real host.
    pub fn netns(mut self, netns: Netns) -> Self {
        self.netns = Some(netns);
        self
    }

    /// The firewall backend (default: [`NftFirewall`] in the host netns).
    pub fn firewall(mut self, fw: impl Firewall + 'static) -> Self {
        self.firewall = Some(Arc::new(fw));
        self
    }

    /// The IPAM (default: [`FileIpam`] under the state dir).
    pub fn ipam(mut self, ipam: impl Ipam + 'static) -> Self {
        self.ipam = Some(Arc::new(ipam));
        self
    }

    /// IPv4 pools automatic subnets come from (Docker's `default-address-pools`; default
    /// 172.17-31.0.0/16 as /16s, then 192.168.0.0/16 as /20s). For the default IPAM only.
    pub fn address_pools(mut self, pools: Vec<AddressPool>) -> Self {
        self.pools4 = Some(pools);
        self
    }

    /// IPv6 pools (default: /64s of a ULA /48 derived from `/etc/machine-id`). For the default
    /// IPAM only.
    pub fn ipv6_pools(mut self, pools: Vec<AddressPool>) -> Self {
        self.pools6 = Some(pools);
        self
    }

    /// The host's resolv.conf (default `/etc/resolv.conf`): automatic subnets avoid its
    /// nameservers, containers' resolv.conf derive from it, and the embedded resolver forwards
    /// to its nameservers.
    pub fn resolv_conf(mut self, path: impl Into<PathBuf>) -> Self {
        self.resolv_conf = Some(path.into());
        self
    }

    /// The host's hosts file, which host-mode containers get (default `/etc/hosts`).
    pub fn hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.hosts_file = Some(path.into());
        self
    }

    /// Docker's daemon.json settings: the predefined `bridge` network is created (or
    /// re-created, when no container is on it) to match when the host is built, and
    /// `default-address-pools` become the IPv4 pools unless [`HostBuilder::address_pools`]
    /// names others.
    pub fn daemon_config(mut self, cfg: DaemonConfig) -> Self {
        self.daemon = Some(cfg);
        self
    }

    /// How handles on network namespaces are opened (default: [`RtOpener`], rtnetlink on the
    /// real kernel). Tests pass a [`crate::netlink::fake::FakeNet`] to run `Host` without
    /// root, recording every kernel request.
    pub fn kernel(mut self, opener: impl KernelOpener + 'static) -> Self {
        self.kernel = Some(Arc::new(opener));
        self
    }

    /// Says the process exits after each operation, or a few (a CLI like `netctl`, a CNI
    /// plugin; default `false`, a long-lived runtime). Kernel work that outlasts an operation
    /// by an RCU grace period (10–20 ms) is then left to detached child processes, so the
    /// process's exit does not wait for it: the kernel's answer to a link deletion (a deleted
    /// link is gone from its namespace when `detach` returns, and a process cannot finish
    /// exiting while a thread waits for that answer: [`crate::netlink::Teardown`]), and the
    /// last close of the firewall's netfilter socket, which waits for the destroy work of the
    /// last nf_tables transaction ([`NftFirewall::short_lived`]). Applies to the defaults
    /// ([`RtOpener`], [`NftFirewall`]), not to a kernel opener or firewall given here.
    pub fn short_lived(mut self, yes: bool) -> Self {
        self.short_lived = yes;
        self
    }

    /// Makes this host a member of a cluster: overlay networks live in `store`, this host is
    /// `identity` in it (its name, and the underlay address of its VTEP). Run
    /// [`Host::overlay_agent`] beside it.
    pub fn cluster(mut self, store: impl ClusterStore + 'static, identity: HostIdentity) -> Self {
        self.cluster = Some((Arc::new(store), identity));
        self
    }

    /// [`HostBuilder::cluster`] with a store shared with others.
    pub fn cluster_arc(mut self, store: Arc<dyn ClusterStore>, identity: HostIdentity) -> Self {
        self.cluster = Some((store, identity));
        self
    }

    /// The cluster's timings (lease TTL, reclaim grace …; default [`ClusterSettings::default`]).
    pub fn cluster_settings(mut self, settings: ClusterSettings) -> Self {
        self.cluster_settings = settings;
        self
    }

    /// The cluster's master secret, from which the keys of encrypted overlay networks are
    /// derived (every host of the cluster is given the same; it never goes to the store).
    pub fn cluster_secret(mut self, secret: ClusterSecret) -> Self {
        self.cluster_secret = Some(secret);
        self
    }

    /// How long an attach to a DHCP network ([`crate::IpamDriver::Dhcp`]) waits for the LAN's
    /// DHCP server before failing with [`Error::DhcpTimeout`] (default
    /// [`crate::dhcp::DEFAULT_TIMEOUT`], 15 s; see [`crate::dhcp`] for the retransmissions).
    /// The attach holds the state dir's lock meanwhile, as for all its steps: other operations
    /// on this state dir wait.
    pub fn dhcp_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.dhcp_timeout = Some(timeout);
        self
    }

    /// A hook called after every step (fault injection in tests).
    pub fn fault_hook(mut self, hook: FaultHook) -> Self {
        self.fault = Some(hook);
        self
    }

    /// Opens the state dir and a netlink handle in the host netns.
    pub async fn build(self) -> Result<Host> {
        let netns = self.netns.ok_or_else(|| {
            Error::invalid("host netns", "(unset)", "HostBuilder::netns is required")
        })?;
        let state = StateDir::open(self.state_dir.unwrap_or_else(|| "/var/lib/berth".into()))?;
        let teardown = if self.short_lived {
            Teardown::Child
        } else {
            Teardown::Thread
        };
        let kernel = self
            .kernel
            .unwrap_or_else(|| Arc::new(RtOpener { teardown }));
        let nl = kernel.open(&netns).await?;
        let firewall = self.firewall.unwrap_or_else(|| {
            Arc::new(NftFirewall::new(netns.clone()).short_lived(self.short_lived))
        });
        let pools4 = self.pools4.or_else(|| {
            self.daemon
                .as_ref()
                .filter(|d| !d.default_address_pools.is_empty())
                .map(|d| d.default_address_pools.clone())
        });
        let ipam = self.ipam.unwrap_or_else(|| {
            let mut f = FileIpam::new(state.root().join("ipam"));
            if let Some(p) = pools4 {
                f = f.with_ipv4_pools(p);
            }
            if let Some(p) = self.pools6 {
                f = f.with_ipv6_pools(p);
            }
            Arc::new(f)
        });
        let resolv_conf = self
            .resolv_conf
            .unwrap_or_else(|| "/etc/resolv.conf".into());
        let cluster = match self.cluster {
            Some((store, id)) => {
                let mut c = Cluster::from_arc(store, id, self.cluster_settings)?;
                if let Some(s) = self.cluster_secret.clone() {
                    c = c.with_secret(s);
                }
                c.set_lease_file(state.root().join("cluster-lease.json"));
                Some(c)
            }
            None => None,
        };
        let cluster_ipam: Option<Arc<dyn Ipam>> = cluster
            .as_ref()
            .map(|c| Arc::new(ClusterIpam::new(c.clone())) as Arc<dyn Ipam>);
        let host = Host {
            cluster,
            cluster_ipam,
            state,
            netns,
            nl,
            kernel,
            firewall,
            ipam,
            resolv_conf,
            hosts_file: self.hosts_file.unwrap_or_else(|| "/etc/hosts".into()),
            daemon: self.daemon,
            fault: self.fault,
            dhcp_timeout: self.dhcp_timeout.unwrap_or(crate::dhcp::DEFAULT_TIMEOUT),
        };
        if host.daemon.is_some() {
            host.ensure_default_bridge().await?;
        }
        Ok(host)
    }
}

/// Networks and endpoints of one host netns, backed by one state dir. Cloning is cheap and
/// the clones share everything (the state dir's lock serialises them as it does processes).
#[derive(Clone)]
pub struct Host {
    cluster: Option<Cluster>,
    cluster_ipam: Option<Arc<dyn Ipam>>,
    state: StateDir,
    netns: Netns,
    nl: Netlink,
    kernel: Arc<dyn KernelOpener>,
    firewall: Arc<dyn Firewall>,
    ipam: Arc<dyn Ipam>,
    resolv_conf: PathBuf,
    hosts_file: PathBuf,
    daemon: Option<DaemonConfig>,
    fault: Option<FaultHook>,
    dhcp_timeout: std::time::Duration,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("state", &self.state)
            .field("netns", &self.netns)
            .field("firewall", &self.firewall)
            .field("ipam", &self.ipam)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Starts a [`HostBuilder`].
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The state dir.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The host netns.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    fn ctx(&self) -> DriverContext<'_> {
        DriverContext {
            host: &self.nl,
            host_netns: &self.netns,
            kernel: self.kernel.as_ref(),
            networks: &[],
            underlay: self.cluster.as_ref().and_then(|c| {
                c.identity().advertise.map(|vtep| Underlay {
                    vtep,
                    port: c.identity().port,
                })
            }),
        }
    }

    /// The cluster this host belongs to, if any.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// The IPAM of a network: the cluster's for cluster networks, else this host's.
    fn ipam_of(&self, net: &crate::network::NetworkInfo) -> Result<Arc<dyn Ipam>> {
        match driver_for(&net.driver).scope() {
            Scope::Local => Ok(self.ipam.clone()),
            Scope::Global => self.cluster_ipam.clone().ok_or_else(|| Error::NoCluster {
                network: net.name.clone(),
                driver: net.driver.kind().name(),
            }),
        }
    }

    /// A driver context that lists `networks` (for deleting a network: shared parents).
    fn ctx_with<'a>(&'a self, networks: &'a [crate::network::NetworkInfo]) -> DriverContext<'a> {
        DriverContext {
            networks,
            ..self.ctx()
        }
    }

    fn after(&self, step: Step) -> Result<()> {
        match &self.fault {
            Some(hook) => hook(step),
            None => Ok(()),
        }
    }
}

/// Compile-time check: the futures of `Host` are `Send`, so runtimes can `tokio::spawn` them.
#[allow(dead_code)]
fn host_futures_are_send(h: &Host, ep: crate::EndpointSpec) {
    fn send<T: Send>(_: T) {}
    send(h.create_network(crate::Network::none("n")));
    send(h.attach("n", ep));
    send(h.detach("n", "c"));
    send(h.delete_network("n"));
    send(h.check("n", "c"));
    send(h.gc(&["c"]));
}
