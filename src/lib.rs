//! # berth — Docker-grade container networking as a library
//!
//! A container runtime creates networks and plugs container network namespaces into them, inside
//! its own process: bridge + veth, IPAM, NAT and published ports in nf_tables — no daemon, no
//! `ip`/`nft`/`iptables` binaries.
//!
//! ```no_run
//! # async fn demo() -> berth::Result<()> {
//! use berth::{Endpoint, Host, Netns, Network, Port};
//! let host = Host::builder()
//!     .state_dir("/var/lib/berth")
//!     .netns(Netns::current()?)      // tests and the demo pass a sandbox netns here
//!     .build()
//!     .await?;
//! let web = host
//!     .create_network(Network::bridge("web").subnet("10.88.0.0/24".parse().unwrap()))
//!     .await?;
//! let att = host
//!     .attach(&web, Endpoint::new("c0ffee", Netns::from_pid(4242)?).publish(Port::tcp(8080).to(80)))
//!     .await?;
//! println!("{} has {:?}", att.container, att.ipv4);
//! tokio::spawn(host.dns_resolver().run());         // names on DNS-enabled networks
//! host.write_files("c0ffee", "/run/c0ffee/etc").await?;  // hosts, resolv.conf, hostname
//! host.detach(&web, "c0ffee").await?;
//! host.delete_network(&web).await?;
//! # Ok(()) }
//! ```
//!
//! ## Layers (an import only ever points down)
//! | layer | modules |
//! |---|---|
//! | face | [`host`]: [`Host`], validate → lock → IPAM → driver → firewall → persist, with rollback |
//! | drivers | [`driver`]: `bridge`, `none`, `macvlan`, `ipvlan`, shared `veth`, `lower`, `container`, `announce`; every per-driver answer `Host` needs is a [`driver::NetworkDriver`] method, and [`driver::driver_for`] binds a record's options to its driver |
//! | policy | [`ipam`], [`dhcp`] (the DHCP client and lease keeper), [`firewall`] (pure [`firewall::ruleset`] + nf_tables backend), [`dns`] (files + embedded resolver), [`state`] |
//! | kernel | [`netns`], [`netlink`] (the [`netlink::Kernel`] trait with request builders on [`netlink::Netlink`]; the rtnetlink implementation; [`netlink::fake::FakeNet`], a recording fake injected with [`HostBuilder::kernel`]), [`sysctl`], `short_lived` (the children a process-per-operation caller leaves the kernel's slow tails to: [`HostBuilder::short_lived`]) |
//! | model | [`network`], [`options`], [`docker_options`], [`endpoint`], [`names`], [`port`], [`route`], [`mac`], [`address`], [`lease`], [`daemon_config`], [`link_marks`], [`validate`], [`step`], [`error`] |
//! | tooling | [`sandbox`]: throwaway namespaces and probe traffic, for tests, examples and benchmarks (uses every layer; nothing uses it) |
//!
//! The model imports nothing of berth outside the model, with one deliberate exception: an
//! [`EndpointSpec`] holds the container's [`Netns`] handle (a kernel object the caller opened),
//! so `endpoint` names the `netns` type.

#![deny(missing_docs)]

pub mod address;
pub mod bandwidth;
pub mod cluster;
pub mod daemon_config;
pub mod dhcp;
pub mod dns;
pub mod docker_options;
pub mod driver;
pub mod endpoint;
pub mod error;
pub mod firewall;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod ipam;
pub mod lease;
pub mod link_marks;
pub mod mac;
pub mod names;
pub mod netlink;
pub mod netns;
pub mod network;
pub mod options;
pub mod port;
pub mod route;
pub mod rule;
pub mod sandbox;
mod short_lived;
pub mod state;
pub mod step;
pub mod sysctl;
pub mod validate;

pub use cluster::{ClusterSettings, ClusterStore, Etcd, EtcdConfig, HostIdentity, MemoryStore};
pub use daemon_config::DaemonConfig;
pub use dhcp::{DhcpClient, DhcpEvent};
pub use endpoint::{Attachment, Endpoint, EndpointSpec};
pub use error::{Error, Result};
pub use firewall::{Firewall, NftFirewall, NoFirewall};
pub use host::{FaultHook, Host, HostBuilder, Step};
pub use ipam::{FileIpam, Ipam};
pub use lease::{DhcpLease, IpamDriver};
pub use mac::MacAddr;
pub use names::{ExtraHost, HostAddr, Link, NameOptions, SandboxMode, SandboxRecord};
pub use netns::Netns;
pub use network::{Network, NetworkInfo, NetworkSpec, SubnetInfo};
pub use options::{
    BridgeOptions, DriverKind, DriverOptions, IpvlanFlag, IpvlanMode, IpvlanOptions, MacvlanMode,
    MacvlanOptions, NoneOptions, OverlayEncap, OverlayOptions, Parent,
};
pub use port::{ExposedPort, Port, PortMapping, PortRequest, Protocol};
pub use route::RouteSpec;
pub use rule::{Fwmark, RuleSpec};
// Per-endpoint bandwidth limits (issue 18).
pub use bandwidth::{Bandwidth, RateLimit};
