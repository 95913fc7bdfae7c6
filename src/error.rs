//! The one error type of the crate.
//!
//! Variants carry what failed — the operation, the network, container or interface involved — and,
//! for kernel failures, the errno as `#[source]` (an [`std::io::Error`] built from the raw errno),
//! so a caller can match on `EEXIST`, `EBUSY`, `EOPNOTSUPP` through [`Error::errno`].

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::port::Protocol;
use crate::step::Step;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in berth.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name (network, container, interface, bridge) is not acceptable.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What the name is for: "network", "container", "interface", "bridge".
        kind: &'static str,
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A subnet is not usable (host bits set, too small, wrong family).
    #[error("invalid subnet {subnet}: {reason}")]
    InvalidSubnet {
        /// The subnet as given.
        subnet: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A subnet lies in a range the kernel treats specially (loopback, multicast …).
    #[error("invalid subnet {subnet}: it {reason}")]
    InvalidSubnetRange {
        /// The subnet as given.
        subnet: String,
        /// Which special range it overlaps.
        reason: &'static str,
    },
    /// A gateway or static address lies outside its subnet.
    #[error("address {address} is outside subnet {subnet}")]
    OutsideSubnet {
        /// The address given.
        address: IpAddr,
        /// The subnet it should belong to.
        subnet: String,
    },
    /// A static address is one that is never handed out (network, broadcast, gateway).
    #[error("address {address} is reserved in network {network}: {reason}")]
    AddressReserved {
        /// The address requested.
        address: IpAddr,
        /// The network.
        network: String,
        /// Which reservation it hits.
        reason: &'static str,
    },
    /// A static address is already allocated.
    #[error("address {address} in network {network} is already used by container {container}")]
    AddressInUse {
        /// The address requested.
        address: IpAddr,
        /// The network.
        network: String,
        /// The container that holds it.
        container: String,
    },
    /// No free address left.
    #[error("no free address left in network {network}")]
    PoolExhausted {
        /// The network.
        network: String,
    },
    /// No subnet of the pools is free.
    #[error("no free {} subnet left in the address pools for network {network}", if *ipv6 { "IPv6" } else { "IPv4" })]
    NoFreeSubnet {
        /// The network.
        network: String,
        /// Which family was asked for.
        ipv6: bool,
    },
    /// A value other than names and subnets is invalid (MTU, MAC, port …).
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue {
        /// What the value is ("mtu", "mac address", "port" …).
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A network of that name already exists.
    #[error("network {name} already exists")]
    NetworkExists {
        /// The name.
        name: String,
    },
    /// No network of that name.
    #[error("network {name} not found")]
    NetworkNotFound {
        /// The name.
        name: String,
    },
    /// The network still has endpoints.
    #[error("network {name} has active endpoints: {}", endpoints.join(", "))]
    NetworkInUse {
        /// The network.
        name: String,
        /// Containers still attached.
        endpoints: Vec<String>,
    },
    /// The subnet overlaps one of another network.
    #[error("subnet {subnet} overlaps subnet {other} of network {network}")]
    SubnetOverlap {
        /// The subnet requested.
        subnet: String,
        /// The overlapping subnet.
        other: String,
        /// The network that owns it.
        network: String,
    },
    /// Another network already uses that bridge or device name.
    #[error("interface {ifname} is already used by network {network}")]
    InterfaceInUse {
        /// The interface name.
        ifname: String,
        /// The network using it.
        network: String,
    },
    /// The parent link of a macvlan/ipvlan network does not exist (and cannot be created).
    #[error("parent link {parent} does not exist")]
    ParentNotFound {
        /// The name.
        parent: String,
    },
    /// The container is already attached to the network.
    #[error("container {container} is already attached to network {network}")]
    EndpointExists {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// A configuration file (daemon.json) could not be read as one.
    #[error("invalid {what}: {reason}")]
    Config {
        /// Which file.
        what: String,
        /// What was wrong, as the parser says it.
        reason: String,
    },
    /// berth knows nothing of this container: no attachment and no sandbox record.
    #[error(
        "container {container} has no sandbox: attach it to a network first (or use host mode)"
    )]
    SandboxNotFound {
        /// The container.
        container: String,
    },
    /// The host address/port/protocol is already published.
    #[error(
        "{proto} port {host_ip}:{host_port} is already published by container {container} on network {network}"
    )]
    PortInUse {
        /// Protocol.
        proto: Protocol,
        /// Host address (`0.0.0.0` for all).
        host_ip: IpAddr,
        /// Host port.
        host_port: u16,
        /// Network of the owner.
        network: String,
        /// Container that owns it.
        container: String,
    },
    /// The driver cannot do what was asked (e.g. ports on a `none` network).
    #[error("driver {driver} does not support {what}")]
    DriverUnsupported {
        /// The driver.
        driver: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// A bandwidth limit ([`crate::RateLimit`]) the kernel cannot be given (0, an absurd burst,
    /// a value its 32-bit fields cannot hold).
    #[error("invalid {direction} rate limit ({} bit/s, burst {} bytes): {problem}", limit.rate_bits_per_sec, limit.burst_bytes)]
    InvalidRateLimit {
        /// Which way it applies.
        direction: crate::bandwidth::Direction,
        /// The limit given.
        limit: crate::bandwidth::RateLimit,
        /// What is wrong with it.
        problem: crate::bandwidth::RateLimitProblem,
    },
    /// No attachment of that container to that network (e.g. for
    /// [`crate::Host::set_bandwidth`]).
    #[error("container {container} is not attached to network {network}")]
    EndpointNotFound {
        /// The network.
        network: String,
        /// The container.
        container: String,
    },
    /// A driver option (Docker's `-o KEY=VALUE`) that the driver does not have.
    #[error("unknown option {option} for driver {driver} (its options: {known})")]
    UnknownOption {
        /// The driver.
        driver: &'static str,
        /// The key given.
        option: String,
        /// The driver's options, comma-separated.
        known: &'static str,
    },
    /// The kernel lacks a feature (e.g. a link kind).
    #[error("the kernel does not support {what}")]
    Unsupported {
        /// What is missing.
        what: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A netlink (rtnetlink) request failed.
    #[error("netlink {op} {name}: {source}")]
    Netlink {
        /// What was being done ("add veth", "add address" …).
        op: &'static str,
        /// The interface or object.
        name: String,
        /// The kernel errno.
        #[source]
        source: io::Error,
    },
    /// An nf_tables transaction failed (nothing of it was applied).
    #[error("nf_tables {op}: {source}")]
    Nftables {
        /// Which firewall operation.
        op: String,
        /// The kernel errno.
        #[source]
        source: io::Error,
    },
    /// A namespace given as a container's cannot hold one: it is the host's, the machine's own,
    /// or one where berth keeps networks.
    #[error("netns {path} cannot be a container's: {reason}")]
    NotContainerNetns {
        /// The namespace, as given (its path, or `fd N`).
        path: String,
        /// What it is instead.
        reason: &'static str,
    },
    /// Opening, creating or entering a network namespace failed.
    #[error("netns {op} {path}: {source}")]
    Netns {
        /// What was being done.
        op: &'static str,
        /// Path or name of the namespace.
        path: String,
        /// The kernel errno.
        #[source]
        source: io::Error,
    },
    /// Writing a sysctl failed.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        /// The key under /proc/sys.
        key: String,
        /// The kernel errno.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the state directory failed.
    #[error("state {op} {}: {source}", path.display())]
    State {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A record in the state directory cannot be parsed.
    #[error("state file {} is corrupt: {source}", path.display())]
    StateCorrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A failure injected by a [`crate::FaultHook`] (tests).
    #[error("injected failure at step {step}")]
    Injected {
        /// The step that was made to fail.
        step: Step,
    },
    /// An operation failed and undoing its finished steps failed too.
    #[error("{original} (and cleanup failed: {})", join(cleanup))]
    CleanupFailed {
        /// The error that stopped the operation.
        original: Box<Error>,
        /// What went wrong while undoing.
        cleanup: Vec<Error>,
    },
    /// An operation that tries every step (`gc`) finished with some of them failed.
    #[error("{op} did not finish: {}", join(errors))]
    Incomplete {
        /// The operation.
        op: &'static str,
        /// Every step that failed.
        errors: Vec<Error>,
    },
    /// Detach could not remove everything; the record is kept so a retry or gc can finish.
    #[error("detach {container} from {network}: {}", join(errors))]
    Detach {
        /// The network.
        network: String,
        /// The container.
        container: String,
        /// Every step that failed.
        errors: Vec<Error>,
    },
    /// The cluster store did not answer or refused a request: nothing of the operation was
    /// made (or, for detach, the local side was removed and the store side is finished when
    /// the store is back).
    #[error("cluster store {store}: {op}: {reason}")]
    Store {
        /// The store (`etcd http://10.0.0.1:2379 /berth`).
        store: String,
        /// What was asked.
        op: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A network needs a cluster store (overlay) and this host has none
    /// ([`crate::HostBuilder::cluster`]).
    #[error(
        "network {network}: the {driver} driver needs a cluster store (HostBuilder::cluster, netctl --cluster-store)"
    )]
    NoCluster {
        /// The network.
        network: String,
        /// The driver.
        driver: &'static str,
    },
    /// An encrypted overlay network on a host that was not given the cluster's secret (what
    /// Docker says as "encryption keys not present").
    #[error(
        "network {network} is encrypted and this host has no cluster secret (HostBuilder::cluster_secret, netctl --cluster-secret-file)"
    )]
    NoClusterSecret {
        /// The network.
        network: String,
    },
    /// A VXLAN id another overlay network has.
    #[error("VXLAN id {vni} is in use by overlay network {network}")]
    VniInUse {
        /// The VNI.
        vni: u32,
        /// The network that has it.
        network: String,
    },
    /// Endpoints on other hosts keep a cluster network in use.
    #[error("network {name} has endpoints: {}", endpoints.iter().map(|(h, c)| format!("{c} on {h}")).collect::<Vec<_>>().join(", "))]
    NetworkInUseOnHosts {
        /// The network.
        name: String,
        /// (host, container) of every endpoint.
        endpoints: Vec<(String, String)>,
    },
    /// No DHCP server answered an attach to a DHCP network in time (the host's DHCP timeout,
    /// [`crate::HostBuilder::dhcp_timeout`]); the attach made nothing.
    #[error(
        "no DHCP lease for container {container} on network {network}: no {waiting_for} within {waited:?} (is the LAN's DHCP server reachable on the parent link?)"
    )]
    DhcpTimeout {
        /// The network.
        network: String,
        /// The container.
        container: String,
        /// What the client was waiting for when time ran out.
        waiting_for: &'static str,
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// The DHCP client's socket failed during an attach (the attach made nothing).
    #[error("DHCP for container {container} on network {network}: {source}")]
    Dhcp {
        /// The network.
        network: String,
        /// The container.
        container: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// The kernel errno behind this error, if it came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Unsupported { source, .. }
            | Error::Netlink { source, .. }
            | Error::Nftables { source, .. }
            | Error::Netns { source, .. }
            | Error::Sysctl { source, .. }
            | Error::State { source, .. } => source.raw_os_error(),
            Error::CleanupFailed { original, .. } => original.errno(),
            _ => None,
        }
    }

    pub(crate) fn netlink(op: &'static str, name: impl Into<String>, source: io::Error) -> Self {
        Error::Netlink {
            op,
            name: name.into(),
            source,
        }
    }

    pub(crate) fn state(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::State {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, value: impl ToString, reason: &'static str) -> Self {
        Error::InvalidValue {
            what,
            value: value.to_string(),
            reason,
        }
    }
}
