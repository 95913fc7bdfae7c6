//! `netctl`: `docker network` plus the per-container network flags of `docker run`, over berth.
//!
//! A thin CLI: it parses strings into the library's typed builders and prints what the library
//! returns. The contract it follows is `docs/netctl.md`, every flag of it served.
//!
//! It works on the network namespace it runs in (the "host"); state lives in `--state-dir`
//! (default `/var/lib/berth`), so several invocations, also at once, see one world. With
//! `--cluster-store etcd://…` the host is a member of a cluster (dockerd's flags): overlay
//! networks live in etcd, and `netctl serve` runs the host's overlay agent beside the resolver.
//!
//! ```text
//! cargo build --example netctl
//! ip netns add demo-host && ip netns add c1 && ip netns add c2 && ip netns add c3
//! alias netctl='ip netns exec demo-host target/debug/examples/netctl --state-dir /tmp/demo'
//! netctl network create --subnet 10.88.0.0/24 -o com.docker.network.bridge.name=br-web web
//! netctl connect -p 8080:80 -p 9000-9001:90-91 -p 53/udp web c1
//!                                            # netns /run/netns/c1; prints the attachment JSON,
//!                                            # with the host port picked for 53/udp
//! netctl connect --ip 10.88.0.9 --ifname net0 --mac 02:42:0a:58:00:09 web c2
//! netctl network create --ipv6 --subnet 10.89.0.0/16 --ip-range 10.89.5.0/24 \
//!     --aux-address router=10.89.5.1 --subnet fd00:89::/64 --gateway fd00:89::fe dual
//! netctl connect --ip6 fd00:89::9 dual c3    # dual stack: 10.89.5.0/16 and fd00:89::9/64
//! netctl network create auto                 # no --subnet: a free one, 172.17.0.0/16 onward
//! netctl network ls                          # auto bridge 172.17.0.0/16, dual … , web …
//! netctl network inspect dual                # JSON: subnets, range, aux address, endpoints
//! netctl network create -o com.docker.network.bridge.enable_icc=false \
//!     -o com.docker.network.bridge.host_binding_ipv4=192.0.2.10 locked
//! netctl network create --internal backend   # no way out, no published ports
//! netctl check web c1                        # exit 0: everything attach made is in place
//! netctl connect --ingress-rate 10mbit --ingress-burst 64kb \
//!     --egress-rate 5mbit --egress-burst 32kb web c7   # rate limits (tc on the host end)
//! netctl bandwidth --egress-rate 20mbit --egress-burst 64kb web c7  # changed in place
//! netctl reapply                             # after `nft flush ruleset`: berth's rules are back
//! netctl connect --hostname api --alias db --add-host gw:host-gateway --dns-search corp.example \
//!     --link c2:cache web c4                 # names: files and the embedded resolver
//! netctl connect --ifname eth1 --rule from=10.88.0.5/32,table=100 \
//!     --route 0.0.0.0/0,via=10.88.0.1,table=100 web c3   # replies from 10.88.0.5 leave eth1
//! netctl files c4 /tmp/c4-etc                # hosts, resolv.conf, hostname (kept current)
//! netctl serve-dns &                         # the resolver on each bridge gateway, port 53
//! netctl connect host h1                     # host mode; `connect container:c4 c5`: c4's netns
//! netctl --daemon-config daemon.json connect bridge c6   # the default bridge, daemon.json's
//! netctl gc c1 c2                            # keep c1's and c2's attachments: detaches c3
//! netctl network create -d macvlan --ipam-driver dhcp -o parent=eth1 lan
//! netctl connect --hostname web lan c7       # address, gateway, DNS from the LAN's DHCP server
//! netctl serve &                             # renews the leases (and serves DNS)
//! netctl disconnect web c1 && netctl disconnect web c2 && netctl network rm web dual auto
//!
//! # Two hosts, one overlay network (etcd at 10.99.0.254:2379, reached over the underlay)
//! alias netctl1='ip netns exec h1 target/debug/examples/netctl --state-dir /tmp/h1 \
//!     --cluster-store etcd://10.99.0.254:2379/berth --cluster-advertise eth0 --cluster-host h1'
//! # netctl2: the same in netns h2, --state-dir /tmp/h2 --cluster-host h2
//! netctl1 network create -d overlay --subnet 10.200.0.0/24 \
//!     -o com.docker.network.driver.overlay.vxlanid_list=4242 ov
//! netctl2 network ls                         # ov overlay 10.200.0.0/24 (from the store)
//! netctl1 serve & netctl2 serve &            # each host's overlay agent + resolver
//! netctl1 connect ov c1 && netctl2 connect ov c2   # c1 and c2 talk across the hosts
//! ```
//!
//! Exit status: 0 on success, 1 when the operation failed (one `error: …` line on stderr),
//! 2 on a usage error. `RUST_LOG=berth=debug` shows the library's log on stderr.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

use berth::cluster::{ClusterSettings, Etcd, EtcdConfig, HostIdentity};
use berth::docker_options::DockerOptions;
use berth::host::GcReport;
use berth::{
    Attachment, DaemonConfig, DriverKind, Endpoint, ExposedPort, ExtraHost, Host, IpamDriver, Link,
    MacAddr, NameOptions, Netns, NetworkInfo, NetworkSpec, PortRequest, RouteSpec, RuleSpec,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "netctl",
    about = "Docker-style container networking over berth"
)]
struct Cli {
    /// Where berth keeps its records.
    #[arg(long, global = true, default_value = "/var/lib/berth")]
    state_dir: PathBuf,
    /// Settings of the predefined `bridge` network, Docker's daemon.json (bip, fixed-cidr,
    /// mtu, dns, icc, ip-masq, ipv6, default-address-pools …).
    #[arg(long, global = true, value_name = "FILE")]
    daemon_config: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// How long `connect` to a `--ipam-driver dhcp` network waits for the LAN's DHCP server
    /// (default 15).
    #[arg(long, global = true, value_name = "SECS")]
    dhcp_timeout: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

/// dockerd's cluster flags: with `--cluster-store`, every command's host is a cluster member.
#[derive(Args, Debug, Clone)]
struct ClusterArgs {
    /// The cluster store overlay networks live in: etcd://HOST:PORT[,HOST:PORT…][/PREFIX]
    /// (prefix default /berth).
    #[arg(long, global = true, value_name = "URL")]
    cluster_store: Option<String>,
    /// This host's underlay address other hosts reach its VXLAN endpoint at: an IP address, or
    /// an interface whose first IPv4 address it is (in the netns netctl runs in).
    #[arg(
        long,
        global = true,
        value_name = "ADDR|IFACE",
        requires = "cluster_store"
    )]
    cluster_advertise: Option<String>,
    /// This host's unique name in the cluster (default: the machine's hostname).
    #[arg(long, global = true, value_name = "NAME", requires = "cluster_store")]
    cluster_host: Option<String>,
    /// TTL of this host's lease: its endpoints vanish from the other hosts this long after it
    /// died (default 10).
    #[arg(long, global = true, value_name = "SECS", requires = "cluster_store")]
    cluster_ttl: Option<u64>,
    /// A file holding the cluster's master secret (at least 32 bytes; mode 0600, owned by the
    /// caller): encrypted overlay networks (`-o encrypted`) derive their keys from it. Never
    /// given as a value on the command line.
    #[arg(long, global = true, value_name = "FILE", requires = "cluster_store")]
    cluster_secret_file: Option<PathBuf>,
    /// How often the keys of encrypted networks change, in seconds (default 43200, 12 h).
    #[arg(long, global = true, value_name = "SECS", requires = "cluster_store")]
    cluster_key_rotation: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, remove, list and inspect networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Attach a container's netns to a network; prints the attachment as JSON.
    Connect(Box<ConnectArgs>),
    /// Detach a container from a network.
    Disconnect { network: String, container: String },
    /// Exit 0 when everything `connect` made is still in place, else list what is missing.
    Check { network: String, container: String },
    /// Remove everything berth made except these containers' attachments; prints what it
    /// removed as JSON.
    Gc { containers: Vec<String> },
    /// Put back every nf_tables object berth recorded (after a ruleset flush).
    Reapply,
    /// Write hosts, resolv.conf and hostname for a container into DIR (rewritten there when
    /// they change).
    Files { container: String, dir: PathBuf },
    /// Run the embedded DNS resolver for every DNS-enabled network, in the foreground, until
    /// SIGINT/SIGTERM.
    ServeDns,
    /// Replace a live endpoint's rate limits (no limit flags: remove them); prints the
    /// attachment as JSON.
    Bandwidth {
        #[command(flatten)]
        limits: LimitArgs,
        network: String,
        container: String,
    },
    /// Run this host's agents in the foreground until SIGINT/SIGTERM: the embedded DNS
    /// resolver (as `serve-dns`) and, with `--cluster-store`, the overlay agent (lease,
    /// watch of the store, VXLAN forwarding entries).
    Serve,
}

#[derive(Subcommand, Debug)]
enum NetworkCmd {
    /// Create a network; prints its id.
    Create(CreateArgs),
    /// Remove networks (refused while containers are attached).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// One line per network: NAME DRIVER SUBNET[,SUBNET].
    Ls,
    /// A network and its endpoints as JSON.
    Inspect { name: String },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DriverArg {
    Bridge,
    None,
    Macvlan,
    Ipvlan,
    Overlay,
}

/// `--ipam-driver`: Docker's names.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum IpamDriverArg {
    Default,
    Dhcp,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Network driver (overlay needs --cluster-store).
    #[arg(short, long, value_enum, default_value = "bridge")]
    driver: DriverArg,
    /// Where endpoint addresses come from: berth's IPAM, or the LAN's DHCP server (macvlan
    /// with -o parent= only; no --subnet, --gateway, --ip-range, --aux-address, --ipv6).
    #[arg(long, value_enum, default_value = "default")]
    ipam_driver: IpamDriverArg,
    /// Subnet in CIDR form, IPv4 or IPv6 (repeatable; default: a free one from the pools).
    #[arg(long, value_name = "CIDR")]
    subnet: Vec<String>,
    /// Gateway address, of the subnet that contains it (default: the subnet's first address).
    #[arg(long, value_name = "IP")]
    gateway: Vec<String>,
    /// Range to allocate from, inside the subnet that contains it.
    #[arg(long, value_name = "CIDR")]
    ip_range: Vec<String>,
    /// A named address never handed out (repeatable).
    #[arg(long, value_name = "NAME=IP")]
    aux_address: Vec<String>,
    /// Dual stack: an IPv6 subnet too (given with --subnet, else a ULA /64 is chosen).
    #[arg(long)]
    ipv6: bool,
    /// No route out and no masquerade.
    #[arg(long)]
    internal: bool,
    /// Extra routes for endpoints (not supported yet).
    #[arg(long, value_name = "DST[,via=GW][,metric=M]")]
    route: Vec<String>,
    /// No default route in endpoints (not supported yet).
    #[arg(long)]
    no_default_route: bool,
    /// Driver option (com.docker.network.bridge.name, …bridge.enable_icc,
    /// …bridge.enable_ip_masquerade, …bridge.host_binding_ipv4, …driver.mtu, anti_spoofing,
    /// parent: a trunk for --vlan endpoints).
    #[arg(short, long = "opt", value_name = "KEY=VALUE", value_parser = key_value)]
    opt: Vec<(String, String)>,
    /// The network's name.
    name: String,
}

#[derive(Args, Debug)]
struct ConnectArgs {
    /// The container's netns (default /run/netns/CONTAINER).
    #[arg(long, value_name = "PATH")]
    netns: Option<PathBuf>,
    /// Static IPv4 address (default: the next free one).
    #[arg(long, value_name = "IP")]
    ip: Option<String>,
    /// Static IPv6 address (default: the next free one on dual-stack networks).
    #[arg(long, value_name = "IP")]
    ip6: Option<String>,
    /// MAC address of the container interface (default: random).
    #[arg(long, value_name = "MAC")]
    mac: Option<String>,
    /// Interface name inside the container (default eth0).
    #[arg(long, value_name = "NAME")]
    ifname: Option<String>,
    /// Network-scoped DNS alias (repeatable).
    #[arg(long, value_name = "NAME")]
    alias: Vec<String>,
    /// Publish ports: [HOSTIP:][HOSTPORT[-END]:]PORT[-END][/tcp|udp|sctp]; IPv6 host addresses
    /// in brackets. No HOSTPORT: a free one is picked (and reported).
    #[arg(short, long, value_name = "SPEC")]
    publish: Vec<String>,
    /// Container hostname.
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
    /// DNS server (repeatable).
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// DNS search domain (repeatable; `.` for none).
    #[arg(long, value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// Resolver option (repeatable), e.g. ndots:2.
    #[arg(long, value_name = "OPT")]
    dns_option: Vec<String>,
    /// Extra hosts entry (repeatable); IP may be host-gateway.
    #[arg(long, value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// Legacy link (repeatable): its name in /etc/hosts; on an ICC-off network, access to its
    /// exposed ports.
    #[arg(long, value_name = "CONTAINER[:ALIAS]")]
    link: Vec<String>,
    /// Expose a port without publishing it (repeatable), for linked containers.
    #[arg(long, value_name = "PORT[/PROTO]")]
    expose: Vec<String>,
    /// Default-gateway priority (not supported yet).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    gw_priority: Option<i64>,
    /// Static route inside the container through this endpoint (repeatable); `table=N`
    /// puts it into routing table N instead of main (policy routing, with --rule).
    #[arg(long, value_name = "DST[,via=GW][,metric=M][,table=N]")]
    route: Vec<String>,
    /// Routing rule inside the container (repeatable; `ip rule add … lookup N`), removed at
    /// disconnect.
    #[arg(
        long,
        value_name = "from=CIDR,table=N[,priority=P][,to=CIDR][,fwmark=M[/MASK]][,iif=NAME]"
    )]
    rule: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Access VLAN of the endpoint's bridge port (2-4094; bridge networks; the trunk is the
    /// network's `-o parent=IF`).
    #[arg(long, value_name = "ID")]
    vlan: Option<String>,
    /// The network; `host` for the host's netns, `container:OTHER` to share OTHER's sandbox.
    network: String,
    /// The container id.
    container: String,
}

/// Rate limits (`connect`, `bandwidth`): tc's units; each rate needs its burst and back
/// (a usage error otherwise).
#[derive(Args, Debug, Default)]
struct LimitArgs {
    /// Rate of what the container receives: bit, kbit, mbit, gbit (×1000) or bps, kbps, mbps.
    #[arg(long, value_name = "RATE", requires = "ingress_burst")]
    ingress_rate: Option<String>,
    /// Burst of what the container receives: b, kb, mb (×1024), or kbit, mbit.
    #[arg(long, value_name = "SIZE", requires = "ingress_rate")]
    ingress_burst: Option<String>,
    /// Rate of what the container sends (units as --ingress-rate).
    #[arg(long, value_name = "RATE", requires = "egress_burst")]
    egress_rate: Option<String>,
    /// Burst of what the container sends (units as --ingress-burst).
    #[arg(long, value_name = "SIZE", requires = "egress_rate")]
    egress_burst: Option<String>,
}

/// `--ingress-*`/`--egress-*` → [`berth::Bandwidth`]; `None` without any.
fn bandwidth_of(l: &LimitArgs) -> Result<Option<berth::Bandwidth>, Failure> {
    let pair = |r: &Option<String>, b: &Option<String>| -> Result<_, Failure> {
        match (r, b) {
            (Some(r), Some(b)) => Ok(Some(berth::RateLimit::parse(r, b)?)),
            _ => Ok(None),
        }
    };
    let bw = berth::Bandwidth {
        ingress: pair(&l.ingress_rate, &l.ingress_burst)?,
        egress: pair(&l.egress_rate, &l.egress_burst)?,
    };
    if bw.is_unlimited() {
        return Ok(None);
    }
    bw.validate()?;
    Ok(Some(bw))
}

/// Host and container mode have no endpoint of their own to limit.
fn no_limits(l: &LimitArgs, mode: &'static str) -> Result<(), Failure> {
    match bandwidth_of(l)? {
        Some(_) => Err(Failure::Berth(berth::Error::DriverUnsupported {
            driver: mode,
            what: "bandwidth limits (no host-side veth end)",
        })),
        None => Ok(()),
    }
}

/// Why a command failed; `main` prints it and exits 1.
#[derive(Debug)]
enum Failure {
    /// The library refused or failed: printed as `error: <its Display>`.
    Berth(berth::Error),
    /// Something netctl itself reports (a partial `network rm`, a missing hostname …).
    Msg(String),
    /// `check` found things missing: one `missing: …` line each.
    Missing(Vec<String>),
}

impl From<berth::Error> for Failure {
    fn from(e: berth::Error) -> Self {
        Failure::Berth(e)
    }
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> Failure {
    Failure::Berth(berth::Error::InvalidValue {
        what,
        value: value.to_string(),
        reason,
    })
}

/// clap value parser for `-o KEY=VALUE`.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors: clap prints them and exits 2
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Berth(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(Failure::Msg(m)) => {
            eprintln!("error: {m}");
            ExitCode::FAILURE
        }
        Err(Failure::Missing(things)) => {
            for t in things {
                eprintln!("missing: {t}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let daemon = cli
        .daemon_config
        .as_deref()
        .map(DaemonConfig::load)
        .transpose()?;
    let cluster = cluster_member(&cli.cluster).await?;
    let dir = &cli.state_dir;
    let dhcp_timeout = cli.dhcp_timeout.map(std::time::Duration::from_secs);
    let open_host = |dir: &Path| {
        open_host(
            dir.to_path_buf(),
            daemon.clone(),
            cluster.clone(),
            dhcp_timeout,
        )
    };
    // Flags are parsed and checked before the host is opened.
    match cli.command {
        Command::Network(NetworkCmd::Create(a)) => {
            let spec = network_spec(a)?;
            let net = open_host(dir).await?.create_network(spec).await?;
            println!("{}", net.id);
        }
        Command::Network(NetworkCmd::Rm { names }) => {
            let host = open_host(dir).await?;
            let mut errors = Vec::new();
            for name in names {
                match host.delete_network(&name).await {
                    Ok(()) => println!("{name}"),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            if !errors.is_empty() {
                return Err(Failure::Msg(errors.join("; ")));
            }
        }
        Command::Network(NetworkCmd::Ls) => {
            for net in open_host(dir).await?.networks().await? {
                let subnets: Vec<String> =
                    net.subnets.iter().map(|s| s.subnet.to_string()).collect();
                let line = format!("{} {} {}", net.name, net.driver.kind(), subnets.join(","));
                println!("{}", line.trim_end());
            }
        }
        Command::Network(NetworkCmd::Inspect { name }) => {
            let host = open_host(dir).await?;
            let net = host.network(&name).await?;
            let endpoints = host.endpoints(&name).await?;
            println!("{}", network_json(&net, &endpoints));
        }
        Command::Connect(a) if a.network == "host" => {
            no_limits(&a.limits, "host")?;
            let names = name_options(&a)?;
            let host = open_host(dir).await?;
            host.use_host_netns(&a.container, names).await?;
            let view = SandboxView {
                network: "host",
                container: &a.container,
                netns: None,
            };
            println!("{}", to_json(&view));
        }
        Command::Connect(a) if a.network.starts_with("container:") => {
            let owner = &a.network["container:".len()..];
            no_limits(&a.limits, "container")?;
            let host = open_host(dir).await?;
            host.share_sandbox(&a.container, owner).await?;
            let netns = host.sandbox_netns(&a.container).await?;
            let view = SandboxView {
                network: &a.network,
                container: &a.container,
                netns: opt_str(netns.as_ref().map(|p| p.display())),
            };
            println!("{}", to_json(&view));
        }
        Command::Connect(a) => {
            let network = a.network.clone();
            let ep = endpoint_spec(*a)?;
            let att = open_host(dir).await?.attach(&network, ep).await?;
            println!("{}", attachment_json(&att));
        }
        Command::Bandwidth {
            limits,
            network,
            container,
        } => {
            let bw = bandwidth_of(&limits)?;
            let att = open_host(dir)
                .await?
                .set_bandwidth(&network, &container, bw)
                .await?;
            println!("{}", attachment_json(&att));
        }
        Command::Disconnect { network, container } => {
            open_host(dir).await?.detach(&network, &container).await?;
        }
        Command::Check { network, container } => {
            let missing = open_host(dir).await?.check(&network, &container).await?;
            if !missing.is_empty() {
                return Err(Failure::Missing(missing));
            }
        }
        Command::Gc { containers } => {
            let report = open_host(dir).await?.gc(&containers).await?;
            println!("{}", gc_json(&report));
        }
        Command::Reapply => open_host(dir).await?.reapply().await?,
        Command::Files {
            container,
            dir: out,
        } => {
            open_host(dir).await?.write_files(&container, &out).await?;
        }
        Command::ServeDns => {
            let host = open_host(dir).await?;
            let stop = stop_signal()?;
            eprintln!("serving DNS; SIGINT or SIGTERM stops");
            host.dns_resolver().run_until(stop).await?;
        }
        Command::Serve => {
            let host = open_host(dir).await?;
            let stop = stop_signal()?;
            match host.overlay_agent() {
                Some(agent) => {
                    eprintln!("serving DNS and the overlay agent; SIGINT or SIGTERM stops");
                    // The agent never returns (it retries while the store is away); the
                    // resolver returns on a stop signal or a fatal error, which ends both.
                    tokio::select! {
                        () = agent.run() => {}
                        r = host.dhcp_client().run() => r?,
                        r = host.dns_resolver().run_until(stop) => r?,
                    }
                }
                None => {
                    eprintln!(
                        "serving DNS (no --cluster-store: no overlay agent); SIGINT or SIGTERM stops"
                    );
                    tokio::select! {
                        r = host.dhcp_client().run() => r?,
                        r = host.dns_resolver().run_until(stop) => r?,
                    }
                }
            }
        }
    }
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM (the handlers are installed now).
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, Failure> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::Msg(format!("SIGTERM handler: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}

/// What `--cluster-*` make of this host: the store (connected), its identity and timings.
#[derive(Clone)]
struct Member {
    store: Etcd,
    identity: HostIdentity,
    settings: ClusterSettings,
    secret: Option<berth::cluster::ClusterSecret>,
}

/// `--cluster-store`/`--cluster-advertise`/`--cluster-host`/`--cluster-ttl` → the membership
/// every command's host gets (`None` without `--cluster-store`).
async fn cluster_member(a: &ClusterArgs) -> Result<Option<Member>, Failure> {
    let Some(url) = &a.cluster_store else {
        return Ok(None);
    };
    let cfg = EtcdConfig::parse(url)?;
    let name = match &a.cluster_host {
        Some(n) => n.clone(),
        None => nix::unistd::gethostname()
            .map_err(|e| Failure::Msg(format!("--cluster-host not given and no hostname: {e}")))?
            .to_string_lossy()
            .into_owned(),
    };
    let mut identity = HostIdentity::new(name);
    if let Some(adv) = &a.cluster_advertise {
        identity = identity.advertise(advertise_address(adv).await?);
    }
    let mut settings = ClusterSettings::default();
    if let Some(secs) = a.cluster_ttl {
        settings.lease_ttl = std::time::Duration::from_secs(secs);
    }
    if let Some(secs) = a.cluster_key_rotation {
        settings.key_rotation = std::time::Duration::from_secs(secs.max(1));
        settings.key_switch_delay = settings.key_switch_delay.min(settings.key_rotation / 2);
    }
    let secret = a
        .cluster_secret_file
        .as_deref()
        .map(berth::cluster::ClusterSecret::from_file)
        .transpose()?;
    let store = Etcd::with_config(cfg).await?;
    Ok(Some(Member {
        store,
        identity,
        settings,
        secret,
    }))
}

/// `--cluster-advertise`: an IP address as given, else an interface of this netns whose first
/// IPv4 address is taken (as dockerd does).
async fn advertise_address(s: &str) -> Result<IpAddr, Failure> {
    if let Ok(ip) = IpAddr::from_str(s) {
        return Ok(ip);
    }
    let nl = berth::netlink::Netlink::open(&Netns::current()?).await?;
    let Some(link) = nl.link_by_name(s).await? else {
        return Err(invalid(
            "cluster advertise",
            s,
            "neither an IP address nor an interface of this network namespace",
        ));
    };
    nl.addresses(Some(link.index))
        .await?
        .into_iter()
        .find_map(|(_, ip, _)| ip.is_ipv4().then_some(ip))
        .ok_or_else(|| invalid("cluster advertise", s, "the interface has no IPv4 address"))
}

/// The host is the netns netctl runs in.
async fn open_host(
    state_dir: PathBuf,
    daemon: Option<DaemonConfig>,
    cluster: Option<Member>,
    dhcp_timeout: Option<std::time::Duration>,
) -> Result<Host, Failure> {
    // One operation per process: a deleted link's tail is left to a child (see short_lived).
    let mut b = Host::builder()
        .state_dir(state_dir)
        .netns(Netns::current()?)
        .short_lived(true);
    if let Some(t) = dhcp_timeout {
        b = b.dhcp_timeout(t);
    }
    if let Some(cfg) = daemon {
        b = b.daemon_config(cfg);
    }
    if let Some(m) = cluster {
        b = b.cluster(m.store, m.identity).cluster_settings(m.settings);
        if let Some(s) = m.secret {
            b = b.cluster_secret(s);
        }
    }
    if let Some(hook) = crash_hook()? {
        b = b.fault_hook(hook);
    }
    Ok(b.build().await?)
}

/// Testing aids for the crash and fault campaigns (`tests/netctl_crash.rs`):
/// `BERTH_CRASH_AT=STEP` kills this process with SIGKILL right after STEP (as a `kill -9` landing
/// there would), `BERTH_FAIL_AT=STEP` makes STEP fail. STEP is a [`berth::Step`] name
/// (`driver-attach`, `delete-ipam`, `gc-links` …).
fn crash_hook() -> Result<Option<berth::FaultHook>, Failure> {
    let step = |var: &str| -> Result<Option<berth::Step>, Failure> {
        std::env::var(var)
            .ok()
            .map(|s| s.parse().map_err(Failure::Berth))
            .transpose()
    };
    let (crash, fail) = (step("BERTH_CRASH_AT")?, step("BERTH_FAIL_AT")?);
    if crash.is_none() && fail.is_none() {
        return Ok(None);
    }
    Ok(Some(std::sync::Arc::new(move |s: berth::Step| {
        if Some(s) == crash {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        if Some(s) == fail {
            return Err(berth::Error::Injected { step: s });
        }
        Ok(())
    })))
}

/// `--hostname --dns --dns-search --dns-option --add-host --link` → [`NameOptions`].
fn name_options(a: &ConnectArgs) -> Result<NameOptions, Failure> {
    let names = NameOptions {
        hostname: a.hostname.clone(),
        domainname: None,
        dns: a
            .dns
            .iter()
            .map(|s| parse_ip("dns server", s))
            .collect::<Result<_, _>>()?,
        dns_search: a.dns_search.clone(),
        dns_options: a.dns_option.clone(),
        extra_hosts: a
            .add_host
            .iter()
            .map(|s| ExtraHost::from_str(s))
            .collect::<Result<_, _>>()?,
        links: a
            .link
            .iter()
            .map(|s| Link::from_str(s))
            .collect::<Result<_, _>>()?,
    };
    names.validate()?;
    Ok(names)
}

/// `network create` flags → [`NetworkSpec`].
fn network_spec(a: CreateArgs) -> Result<NetworkSpec, Failure> {
    let routes = a
        .route
        .iter()
        .map(|s| RouteSpec::from_str(s))
        .collect::<Result<Vec<_>, _>>()?;
    let driver = match a.driver {
        DriverArg::Bridge => DriverKind::Bridge,
        DriverArg::None => DriverKind::None,
        DriverArg::Macvlan => DriverKind::Macvlan,
        DriverArg::Ipvlan => DriverKind::Ipvlan,
        DriverArg::Overlay => DriverKind::Overlay,
    };
    // Docker's `-o` keys are the library's to parse (berth::docker_options).
    let mut spec =
        DockerOptions::parse(driver, a.opt.iter().map(|(k, v)| (k, v)))?.into_spec(&a.name);
    // The library pairs each gateway and ip-range with the subnet that contains it.
    for s in &a.subnet {
        spec = spec.subnet(parse_cidr("subnet", s)?);
    }
    for g in &a.gateway {
        spec = spec.gateway(parse_ip("gateway", g)?);
    }
    for r in &a.ip_range {
        spec = spec.ip_range(parse_cidr("ip-range", r)?);
    }
    let mut aux_names = std::collections::HashSet::new();
    for x in &a.aux_address {
        let (name, ip) = x
            .split_once('=')
            .ok_or_else(|| invalid("aux address", x, "expected NAME=IP"))?;
        if !aux_names.insert(name) {
            return Err(invalid("aux address", x, "its name is given twice"));
        }
        spec = spec.aux_address(name, parse_ip("aux address", ip)?);
    }
    spec = spec
        .ipv6(a.ipv6)
        .internal(a.internal)
        .no_default_route(a.no_default_route)
        .ipam_driver(match a.ipam_driver {
            IpamDriverArg::Default => IpamDriver::Default,
            IpamDriverArg::Dhcp => IpamDriver::Dhcp,
        });
    for r in routes {
        spec = spec.route(r);
    }
    Ok(spec)
}

/// `connect` flags → [`berth::EndpointSpec`].
fn endpoint_spec(a: ConnectArgs) -> Result<berth::EndpointSpec, Failure> {
    let names = name_options(&a)?;
    let exposed = a
        .expose
        .iter()
        .map(|s| ExposedPort::from_str(s))
        .collect::<Result<Vec<_>, _>>()?;
    let ip =
        a.ip.as_deref()
            .map(|s| parse_ipv4("ip address", s))
            .transpose()?;
    let ip6 = a
        .ip6
        .as_deref()
        .map(|s| parse_ipv6("ip6 address", s))
        .transpose()?;
    let mac = a.mac.as_deref().map(MacAddr::from_str).transpose()?;
    let routes = a
        .route
        .iter()
        .map(|s| RouteSpec::from_str(s))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = a
        .rule
        .iter()
        .map(|s| RuleSpec::from_str(s))
        .collect::<Result<Vec<_>, _>>()?;
    let gw_priority = a
        .gw_priority
        .map(|p| {
            i32::try_from(p).map_err(|_| invalid("gw-priority", &p.to_string(), "out of range"))
        })
        .transpose()?;
    let ports = a
        .publish
        .iter()
        .map(|s| PortRequest::from_str(s))
        .collect::<Result<Vec<_>, _>>()?;
    let bandwidth = bandwidth_of(&a.limits)?;
    let vlan = a
        .vlan
        .as_deref()
        .map(|s| {
            s.parse::<u16>()
                .map_err(|_| invalid("vlan", s, "a VLAN id is 2-4094"))
        })
        .transpose()?;
    // The netns is opened last, once every flag has parsed.
    let path = a
        .netns
        .unwrap_or_else(|| PathBuf::from(berth::netns::NETNS_RUN_DIR).join(&a.container));
    let mut ep = Endpoint::new(&a.container, Netns::from_path(&path)?);
    if let Some(ip) = ip {
        ep = ep.ip(ip);
    }
    if let Some(ip6) = ip6 {
        ep = ep.ip6(ip6);
    }
    if let Some(mac) = mac {
        ep = ep.mac(mac);
    }
    if let Some(ifname) = a.ifname {
        ep = ep.ifname(ifname);
    }
    for port in ports {
        ep = ep.publish_request(port);
    }
    for r in routes {
        ep = ep.route(r);
    }
    for r in rules {
        ep = ep.rule(r);
    }
    if let Some(p) = gw_priority {
        ep = ep.gw_priority(p);
    }
    for alias in a.alias {
        ep = ep.alias(alias);
    }
    for p in exposed {
        ep = ep.expose(p);
    }
    if let Some(b) = bandwidth {
        ep = ep.bandwidth(b);
    }
    if let Some(v) = vlan {
        ep = ep.vlan(v);
    }
    Ok(ep.names(names))
}

/// A CIDR (`--subnet`, `--ip-range`), IPv4 or IPv6; host bits are checked by the library.
fn parse_cidr(what: &'static str, s: &str) -> Result<IpNet, Failure> {
    IpNet::from_str(s).map_err(|_| {
        Failure::Berth(berth::Error::InvalidSubnet {
            subnet: s.to_string(),
            reason: if what == "subnet" {
                "expected a CIDR such as 10.88.0.0/24 or fd00:88::/64"
            } else {
                "ip-range: expected a CIDR such as 10.88.5.0/24"
            },
        })
    })
}

fn parse_ip(what: &'static str, s: &str) -> Result<IpAddr, Failure> {
    IpAddr::from_str(s).map_err(|_| invalid(what, s, "not an IP address"))
}

fn parse_ipv4(what: &'static str, s: &str) -> Result<Ipv4Addr, Failure> {
    match IpAddr::from_str(s) {
        Ok(IpAddr::V4(a)) => Ok(a),
        Ok(IpAddr::V6(_)) => Err(invalid(what, s, "is IPv6: use --ip6")),
        Err(_) => Err(invalid(what, s, "not an IPv4 address")),
    }
}

fn parse_ipv6(what: &'static str, s: &str) -> Result<Ipv6Addr, Failure> {
    match IpAddr::from_str(s) {
        Ok(IpAddr::V6(a)) => Ok(a),
        Ok(IpAddr::V4(_)) => Err(invalid(what, s, "is IPv4: use --ip")),
        Err(_) => Err(invalid(what, s, "not an IPv6 address")),
    }
}

/// An optional value as a JSON string or null.
fn opt_str<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

/// One published port in `connect`'s output.
#[derive(Serialize)]
struct PortView {
    proto: String,
    host_ip: String,
    host_port: u16,
    container_port: u16,
}

/// `connect`'s output: the attachment.
#[derive(Serialize)]
struct AttachmentView<'a> {
    network: &'a str,
    container: &'a str,
    ifname: &'a str,
    mac: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    gateway: Option<String>,
    gateway6: Option<String>,
    netns: Option<String>,
    ports: Vec<PortView>,
    /// Routing rules (`--rule`), in the flag's syntax; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<String>,
    /// Rate limits, when it has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    bandwidth: Option<berth::Bandwidth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
    /// The DHCP lease, on a `--ipam-driver dhcp` network.
    #[serde(skip_serializing_if = "Option::is_none")]
    dhcp: Option<LeaseView>,
}

/// A DHCP lease in `connect`'s output.
#[derive(Serialize)]
struct LeaseView {
    server: String,
    dns: Vec<String>,
    lease_secs: u32,
    client_id: String,
    hostname: String,
}

fn attachment_json(att: &Attachment) -> String {
    let ports = att
        .ports
        .iter()
        .map(|p| PortView {
            proto: p.proto.to_string(),
            host_ip: p.host_ip.to_string(),
            host_port: p.host_port,
            container_port: p.container_port,
        })
        .collect();
    to_json(&AttachmentView {
        network: &att.network,
        container: &att.container,
        ifname: &att.ifname,
        mac: opt_str(att.mac),
        ipv4: opt_str(att.ipv4),
        ipv6: opt_str(att.ipv6),
        gateway: opt_str(att.gateway),
        gateway6: opt_str(att.gateway6),
        netns: opt_str(att.netns.as_ref().map(|p| p.display())),
        ports,
        rules: att.rules.iter().map(ToString::to_string).collect(),
        bandwidth: att.bandwidth,
        vlan: att.vlan,
        dhcp: att.dhcp.as_ref().map(|l| LeaseView {
            server: l.server.to_string(),
            dns: l.dns.iter().map(ToString::to_string).collect(),
            lease_secs: l.lease_secs,
            client_id: l.client_id.clone(),
            hostname: l.hostname.clone(),
        }),
    })
}

/// One subnet in `network inspect`'s output.
#[derive(Serialize)]
struct SubnetView {
    subnet: String,
    gateway: String,
    ip_range: Option<String>,
    /// Docker shows AuxiliaryAddresses per IPAM config entry, only when there are some.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    aux_addresses: BTreeMap<String, String>,
}

/// One endpoint in `network inspect`'s output.
#[derive(Serialize)]
struct EndpointView<'a> {
    ifname: &'a str,
    mac: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
}

/// `network inspect`'s output.
#[derive(Serialize)]
struct NetworkView<'a> {
    name: &'a str,
    driver: &'static str,
    subnets: Vec<SubnetView>,
    /// The options in effect, under Docker's keys (values as strings, as Docker shows them).
    options: BTreeMap<&'static str, String>,
    internal: bool,
    ipv6: bool,
    /// `dhcp` on a `--ipam-driver dhcp` network (absent for berth's own IPAM).
    #[serde(skip_serializing_if = "Option::is_none")]
    ipam_driver: Option<&'static str>,
    endpoints: BTreeMap<&'a str, EndpointView<'a>>,
}

fn network_json(net: &NetworkInfo, endpoints: &[Attachment]) -> String {
    let subnets = net
        .subnets
        .iter()
        .map(|s| SubnetView {
            subnet: s.subnet.to_string(),
            gateway: s.gateway.to_string(),
            ip_range: opt_str(s.ip_range),
            aux_addresses: net
                .aux
                .iter()
                .filter(|(_, ip)| s.subnet.contains(*ip))
                .map(|(name, ip)| (name.clone(), ip.to_string()))
                .collect(),
        })
        .collect();
    let endpoints = endpoints
        .iter()
        .map(|a| {
            let v = EndpointView {
                ifname: &a.ifname,
                mac: opt_str(a.mac),
                ipv4: opt_str(a.ipv4),
                ipv6: opt_str(a.ipv6),
                vlan: a.vlan,
            };
            (a.container.as_str(), v)
        })
        .collect();
    to_json(&NetworkView {
        name: &net.name,
        driver: net.driver.kind().name(),
        subnets,
        options: DockerOptions::effective(net),
        internal: net.internal,
        ipv6: net.ipv6,
        ipam_driver: (!net.ipam_driver.is_default()).then(|| net.ipam_driver.name()),
        endpoints,
    })
}

/// An address gc released or restored.
#[derive(Serialize)]
struct AddressView<'a> {
    network: &'a str,
    container: &'a str,
    address: String,
}

/// An address two containers claim.
#[derive(Serialize)]
struct ConflictView<'a> {
    network: &'a str,
    address: String,
    recorded: &'a str,
    claimed_by: &'a str,
}

/// `gc`'s output: what it removed, restored and found.
#[derive(Serialize)]
struct GcView<'a> {
    detached: &'a [(String, String)],
    released: Vec<AddressView<'a>>,
    restored: Vec<AddressView<'a>>,
    conflicts: Vec<ConflictView<'a>>,
    links_removed: &'a [String],
    pools_removed: &'a [String],
    removals_finished: &'a [String],
    endpoints_forgotten: &'a [(String, String)],
    quarantined: &'a [PathBuf],
    sandboxes_removed: &'a [String],
    tmp_files_removed: usize,
    cluster_withdrawn: &'a [(String, String)],
    forwarding_fixed: usize,
    ipsec_fixed: usize,
    vlans_fixed: usize,
    rules_fixed: usize,
}

fn gc_json(r: &GcReport) -> String {
    to_json(&GcView {
        detached: &r.detached,
        released: r
            .released
            .iter()
            .map(|x| AddressView {
                network: &x.network,
                container: &x.container,
                address: x.address.to_string(),
            })
            .collect(),
        restored: r
            .restored
            .iter()
            .map(|(n, c, a)| AddressView {
                network: n,
                container: c,
                address: a.to_string(),
            })
            .collect(),
        conflicts: r
            .conflicts
            .iter()
            .map(|c| ConflictView {
                network: &c.network,
                address: c.address.to_string(),
                recorded: &c.recorded,
                claimed_by: &c.claimed_by,
            })
            .collect(),
        links_removed: &r.links_removed,
        pools_removed: &r.pools_removed,
        removals_finished: &r.removals_finished,
        endpoints_forgotten: &r.endpoints_forgotten,
        quarantined: &r.quarantined,
        sandboxes_removed: &r.sandboxes_removed,
        tmp_files_removed: r.tmp_files_removed,
        cluster_withdrawn: &r.cluster_withdrawn,
        forwarding_fixed: r.forwarding_fixed,
        ipsec_fixed: r.ipsec_fixed,
        vlans_fixed: r.vlans_fixed,
        rules_fixed: r.rules_fixed,
    })
}

/// `host`/`container:` connect output.
#[derive(Serialize)]
struct SandboxView<'a> {
    network: &'a str,
    container: &'a str,
    netns: Option<String>,
}

fn to_json(v: &impl Serialize) -> String {
    serde_json::to_string(v).expect("plain data serializes")
}
