//! Simulated hosts of one cluster, for `tests/overlay.rs` and the VM tier's overlay tests: an
//! "underlay" netns (the sandbox's host netns) with a bridge `ul` joins N host netns by veths
//! (`10.99.N.I/24`, or `fd00:99:N::I/64`); each host netns has its own berth `Host` (own state
//! dir, own firewall) in one cluster whose store is a real etcd started by the test, and runs
//! its overlay agent. An outside netns sits on the underlay at `.200`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use berth::cluster::{ClusterSettings, HostIdentity};
use berth::netlink::{Netlink, VethPeer};
use berth::sandbox::{Sandbox, tcp_probe};
use berth::{
    Attachment, Endpoint, Host, HostBuilder, MacAddr, Netns, Network, NetworkInfo, NetworkSpec,
};

use super::etcd::EtcdServer;
use super::{assert_reaches, blocked_at, reaches_at, require_root, sa};

/// One simulated host.
pub struct SimHost {
    pub name: String,
    pub ns: Netns,
    pub nl: Netlink,
    pub host: Host,
    pub vtep: IpAddr,
    pub agent: Option<tokio::task::JoinHandle<()>>,
}

/// Fields drop in order: the hosts (their agents aborted first, see `Drop`) and etcd before the
/// sandbox, whose drop removes the state dirs — an agent still running after it would write
/// them again (`cluster-peers/`, records) and leave them in the temp dir.
pub struct Cluster {
    pub hosts: Vec<SimHost>,
    pub etcd: EtcdServer,
    pub outside: Netns,
    pub n: u8,
    pub sb: Sandbox,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(a) = h.agent.take() {
                a.abort();
            }
        }
    }
}

pub fn settings() -> ClusterSettings {
    ClusterSettings {
        lease_ttl: Duration::from_secs(3),
        reclaim_grace: Duration::from_secs(4),
        expiry_hold: Duration::from_millis(500),
        reconcile_every: Duration::from_secs(2),
        ..ClusterSettings::default()
    }
}

/// A netns `role` plugged into the underlay bridge `ul` (of the sandbox's host netns) by a
/// veth, with `ip`/24 on its `eth0`.
pub async fn plug(sb: &mut Sandbox, role: &str, ip: IpAddr) -> (Netns, Netlink) {
    let under = Netlink::open(sb.host()).await.unwrap();
    let br = under.require_link("ul").await.unwrap();
    let ns = sb.netns(role).await.unwrap();
    let v = under
        .link()
        .veth(&format!("ul-{role}"))
        .master(br.index)
        .peer(VethPeer {
            name: "eth0",
            mac: MacAddr::random(),
            netns: &ns,
        })
        .add()
        .await
        .unwrap();
    under
        .link()
        .set(v.index, &format!("ul-{role}"))
        .up()
        .apply()
        .await
        .unwrap();
    let nl = Netlink::open(&ns).await.unwrap();
    let eth = nl.require_link("eth0").await.unwrap();
    let len = if ip.is_ipv6() {
        // Usable at once (no duplicate address detection on the sandbox's underlay).
        nl.write_sysctl("net/ipv6/conf/eth0/accept_dad", "0")
            .await
            .unwrap();
        64
    } else {
        24
    };
    nl.address().add(eth.index, "eth0", ip, len).await.unwrap();
    nl.link().set(eth.index, "eth0").up().apply().await.unwrap();
    (ns, nl)
}

/// `hosts` simulated hosts on underlay `10.99.N.0/24`, an outside netns at `10.99.N.200`.
pub async fn cluster(label: &str, n: u8, hosts: usize) -> Option<Cluster> {
    cluster_over(label, n, hosts, false).await
}

/// [`cluster`] over an IPv6 underlay (`fd00:99:N::I/64`) when `v6`.
pub async fn cluster_over(label: &str, n: u8, hosts: usize, v6: bool) -> Option<Cluster> {
    cluster_with(label, n, hosts, v6, |_, b| b).await
}

/// [`cluster_over`], each host's builder passed through `configure` (with the host's name)
/// before it is built.
pub async fn cluster_with(
    label: &str,
    n: u8,
    hosts: usize,
    v6: bool,
    configure: impl Fn(&str, HostBuilder) -> HostBuilder,
) -> Option<Cluster> {
    if !require_root() {
        return None;
    }
    // `RUST_LOG=berth::cluster=debug` shows what the agents do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let etcd = EtcdServer::start(label)?;
    let mut sb = Sandbox::new(label).await.expect("sandbox");
    let under = Netlink::open(sb.host()).await.unwrap();
    under.link().bridge("ul").mtu(1500).add().await.unwrap();
    let (outside, _) = plug(&mut sb, "out", format!("10.99.{n}.200").parse().unwrap()).await;
    let mut sims = Vec::new();
    for i in 1..=hosts {
        let name = format!("h{i}");
        let vtep: IpAddr = if v6 {
            format!("fd00:99:{n}::{i}").parse().unwrap()
        } else {
            format!("10.99.{n}.{i}").parse().unwrap()
        };
        let (ns, nl) = plug(&mut sb, &name, vtep).await;
        let store = etcd.store(&format!("/berth-{label}")).await;
        let state = sb.state_dir().join(&name);
        let builder = Host::builder()
            .state_dir(&state)
            .netns(ns.clone())
            .resolv_conf(sb.state_dir().join("no-resolv.conf"))
            .cluster(store, HostIdentity::new(&name).advertise(vtep))
            .cluster_settings(settings());
        let host = configure(&name, builder).build().await.expect("host");
        let agent = Some(tokio::spawn(host.overlay_agent().unwrap().run()));
        sims.push(SimHost {
            name,
            ns,
            nl,
            host,
            vtep,
            agent,
        });
    }
    Some(Cluster {
        sb,
        etcd,
        hosts: sims,
        outside,
        n,
    })
}

impl Cluster {
    pub async fn container(&mut self, role: &str) -> Netns {
        self.sb.netns(role).await.unwrap()
    }

    /// Overlay network `ov` made on h1 with `subnet`, and one container `hNc` attached on
    /// each host: (VNI, [(container netns, its address)]).
    pub async fn one_per_host(&mut self, subnet: &str) -> (u32, Vec<(Netns, IpAddr)>) {
        let net = self.hosts[0]
            .host
            .create_network(Network::overlay("ov").subnet(subnet.parse().unwrap()))
            .await
            .unwrap();
        let mut eps = Vec::new();
        for h in 0..self.hosts.len() {
            let role = format!("h{}c", h + 1);
            let ns = self.container(&role).await;
            let att = self.hosts[h]
                .host
                .attach("ov", Endpoint::new(&role, ns.clone()))
                .await
                .unwrap();
            eps.push((ns, att.ip().unwrap()));
        }
        (vni_of(&net), eps)
    }

    /// Another host netns `role` on the underlay at `10.99.N.i`, without a berth `Host` (the
    /// test builds its own): (netns, netlink handle, VTEP).
    pub async fn add_host(&mut self, role: &str, i: u8) -> (Netns, Netlink, IpAddr) {
        let vtep: IpAddr = format!("10.99.{}.{i}", self.n).parse().unwrap();
        let (ns, nl) = plug(&mut self.sb, role, vtep).await;
        (ns, nl, vtep)
    }
}

/// The FDB destinations (VTEPs) on host `h`'s VXLAN device of `vni`.
pub async fn fdb_vteps(h: &SimHost, vni: u32) -> Vec<IpAddr> {
    let Some(vx) = h.nl.link_by_name(&format!("vx-{vni}")).await.unwrap() else {
        return Vec::new();
    };
    h.nl.fdb(vx.index)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.dst)
        .collect()
}

pub fn vni_of(net: &berth::NetworkInfo) -> u32 {
    match &net.driver {
        berth::DriverOptions::Overlay(o) => o.vni.unwrap(),
        _ => panic!("not overlay"),
    }
}

pub async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f().await {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The outside-world scenario of an overlay kind (`tests/overlay.rs` for VXLAN,
/// `tests/vm_gre.rs` for GRE): the hosts' default route goes to the outside netns (as a LAN
/// router would); networks `ov` and `ov2`, and `ovi` (internal), made on h1 by `spec(name,
/// subnet)` with `subnets`; container `a` on h1 and `b` on h2 (publishing 8080:80) on `ov`, `o2`
/// on h2 on `ov2`, `i` on h1 on `ovi`. The first create's error is returned (a kernel without
/// the encapsulation refuses there); anything later panics.
pub struct Outside {
    pub ov: NetworkInfo,
    pub ov2: NetworkInfo,
    pub a: (Netns, Attachment),
    pub b: (Netns, Attachment),
    pub o2: (Netns, Attachment),
    pub i: Netns,
}

pub async fn outside_scenario(
    c: &mut Cluster,
    spec: impl Fn(&str, &str) -> NetworkSpec,
    subnets: [&str; 3],
) -> berth::Result<Outside> {
    let n = c.n;
    for h in &c.hosts {
        h.nl.route()
            .default_via(format!("10.99.{n}.200").parse().unwrap())
            .replace()
            .await
            .unwrap();
    }
    let host0 = c.hosts[0].host.clone();
    let ov = host0.create_network(spec("ov", subnets[0])).await?;
    let ov2 = host0.create_network(spec("ov2", subnets[1])).await.unwrap();
    host0
        .create_network(spec("ovi", subnets[2]).internal(true))
        .await
        .unwrap();
    let mut join = async |h: usize, net: &str, role: &str, port: Option<&str>| {
        let ns = c.container(role).await;
        let mut ep = Endpoint::new(role, ns.clone());
        if let Some(p) = port {
            ep = ep.publish_request(p.parse().unwrap());
        }
        let att = c.hosts[h].host.attach(net, ep).await.unwrap();
        (ns, att)
    };
    let a = join(0, "ov", "a", None).await;
    let b = join(1, "ov", "b", Some("8080:80/tcp")).await;
    let o2 = join(1, "ov2", "o2", None).await;
    let (i, _) = join(0, "ovi", "i", None).await;
    Ok(Outside {
        ov,
        ov2,
        a,
        b,
        o2,
        i,
    })
}

/// What every overlay kind must do in the [`outside_scenario`]: egress masqueraded by each
/// container's own host; the port published on h2 reached from outside at h2's address;
/// `ov` and `ov2` refused both ways; the internal network has no way out; `ov` across the two
/// hosts still flows. `what` names the overlay kind in failures.
pub async fn assert_outside_and_isolation(c: &Cluster, s: &Outside, what: &str) {
    let out = format!("10.99.{}.200", c.n);
    let ip = |a: &Attachment| a.ip().unwrap();
    for (h, (ns, _), port) in [(0, &s.a, 9100), (1, &s.b, 9101)] {
        let seen = assert_reaches(
            &c.outside,
            sa(&format!("0.0.0.0:{port}")),
            ns,
            sa(&format!("{out}:{port}")),
        )
        .await;
        assert_eq!(
            seen.ip(),
            c.hosts[h].vtep,
            "{what}: masqueraded by its own host"
        );
    }
    let target = SocketAddr::new(c.hosts[1].vtep, 8080);
    tcp_probe(&s.b.0, "0.0.0.0:80".parse().unwrap(), &c.outside, target)
        .await
        .unwrap_or_else(|e| panic!("{what}: published port on host 2: {e}"));
    let other = format!("another {what}");
    blocked_at(&s.o2.0, &s.a.0, &format!("{}:7001", ip(&s.o2.1)), &other).await;
    blocked_at(&s.a.0, &s.o2.0, &format!("{}:7002", ip(&s.a.1)), &other).await;
    let internal = format!("internal {what}");
    blocked_at(&c.outside, &s.i, &format!("{out}:7003"), &internal).await;
    reaches_at(&s.b.0, &s.a.0, &format!("{}:7004", ip(&s.b.1))).await;
}
