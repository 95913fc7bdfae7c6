//! The multi-host demo: one overlay network across two simulated hosts, etcd as the store.
//!
//! Everything lives in sandbox namespaces ([`berth::sandbox::Sandbox`]): an "underlay" netns
//! with a bridge at `10.99.0.254/24` joins two host netns `h1` (`10.99.0.1`) and `h2`
//! (`10.99.0.2`), each with one container netns to attach. Debian's etcd runs inside the
//! underlay netns on `10.99.0.254:2379` (started with `ip netns exec`, data in a temp dir,
//! killed and removed at the end, also on error). The demo's own work runs on a thread inside
//! the underlay netns, so its etcd client reaches the store over the underlay as a host's
//! would; each `Host` works on its own host netns through its netlink handle, as berth always
//! does. Nothing touches the machine's own namespace.
//!
//! It creates an overlay network on h1, attaches a container on each host, runs both hosts'
//! overlay agents, opens TCP connections between the containers across the hosts, prints how
//! long each step took and the VXLAN forwarding (FDB) entries read back from the kernel, then
//! removes everything. Without etcd it says so and exits 1.
//!
//! ```text
//! cargo run --example overlay      # as root; apt-get install etcd-server
//! ```

use std::error::Error;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth::cluster::{ClusterStore, Etcd, HostIdentity};
use berth::netlink::{Netlink, VethPeer};
use berth::sandbox::{EtcdServer, Sandbox, tcp_probe};
use berth::{Endpoint, Host, MacAddr, Netns, Network};

type BoxError = Box<dyn Error + Send + Sync>;

/// The underlay's own address: etcd listens here.
const STORE_IP: &str = "10.99.0.254";
/// The overlay network's VXLAN id.
const VNI: u32 = 4242;

/// Runs `f`, prints how long it took, and returns its value and the time.
async fn timed<T>(what: &str, f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let v = f.await;
    let d = t.elapsed();
    println!("  {:<48} {:>9.2} ms", what, ms(d));
    (v, d)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the demo thread is given: the namespaces made beforehand.
struct World {
    /// (name, netns, underlay address) of each host.
    hosts: Vec<(String, Netns, IpAddr)>,
    /// One container netns per host.
    containers: Vec<Netns>,
    state_dir: PathBuf,
}

fn main() -> ExitCode {
    if !EtcdServer::installed() {
        eprintln!(
            "overlay demo: `etcd` is not installed, and overlay networks need it as their cluster \
             store (apt-get install etcd-server; `cargo xtask setup` does)"
        );
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlay demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BoxError> {
    println!("berth overlay demo: two hosts, one overlay network, etcd as the store\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The sandbox is dropped after etcd and the demo thread are done (also on error).
    let (sb, world) = rt.block_on(build_world())?;
    println!(
        "sandbox: underlay netns /run/netns/{} (bridge ul {STORE_IP}/24), hosts h1 h2, containers \
         h1c1 h2c1",
        sb.host_name()
    );
    // Debian's etcd in the underlay netns, killed and its data removed on drop.
    let etcd = EtcdServer::start_in("overlay-demo", sb.host_name(), STORE_IP.parse()?)?;
    println!(
        "etcd: pid {} in the underlay netns, {}, data in {}\n",
        etcd.pid().unwrap_or(0),
        etcd.endpoint(),
        etcd.dir().display()
    );
    // The demo thread enters the underlay netns: its etcd client reaches STORE_IP there.
    let r = sb
        .host()
        .run(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(demo(world)).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    drop(etcd);
    r?;
    println!("\nremoved: endpoints, network, devices; etcd killed; (on exit) the namespaces.");
    Ok(())
}

/// The underlay, the two hosts plugged into it, a container netns per host.
async fn build_world() -> Result<(Sandbox, World), BoxError> {
    let mut sb = Sandbox::new("overlay-demo").await?;
    let under = Netlink::open(sb.host()).await?;
    let br = under.link().bridge("ul").mtu(1500).add().await?;
    under
        .address()
        .add(br.index, "ul", STORE_IP.parse()?, 24)
        .await?;
    under.link().set(br.index, "ul").up().apply().await?;
    let mut hosts = Vec::new();
    let mut containers = Vec::new();
    for i in 1..=2u8 {
        let name = format!("h{i}");
        let ns = sb.netns(&name).await?;
        let outer = format!("ul-{name}");
        let v = under
            .link()
            .veth(&outer)
            .master(br.index)
            .peer(VethPeer {
                name: "eth0",
                mac: MacAddr::random(),
                netns: &ns,
            })
            .add()
            .await?;
        under.link().set(v.index, &outer).up().apply().await?;
        let nl = Netlink::open(&ns).await?;
        let eth = nl.require_link("eth0").await?;
        let vtep: IpAddr = format!("10.99.0.{i}").parse()?;
        nl.address().add(eth.index, "eth0", vtep, 24).await?;
        nl.link().set(eth.index, "eth0").up().apply().await?;
        hosts.push((name.clone(), ns, vtep));
        containers.push(sb.netns(&format!("{name}c1")).await?);
    }
    let state_dir = sb.state_dir().to_path_buf();
    Ok((
        sb,
        World {
            hosts,
            containers,
            state_dir,
        },
    ))
}

/// Connects to etcd, retrying until it answers (it elects itself leader after starting).
async fn store() -> Result<Etcd, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = Etcd::connect([format!("http://{STORE_IP}:2379")], "/berth-demo").await;
        match e {
            Ok(e) if e.list("").await.is_ok() => return Ok(e),
            Err(err) if Instant::now() >= deadline => return Err(err.into()),
            _ if Instant::now() >= deadline => return Err("etcd did not come up".into()),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The demo proper, on a thread inside the underlay netns.
async fn demo(w: World) -> Result<(), BoxError> {
    println!("steps:");
    let (store, _) = timed("etcd ready (connect, first list)", store()).await;
    let store = store?;
    let mut hosts = Vec::new();
    let mut agents = Vec::new();
    for (name, ns, vtep) in &w.hosts {
        let (host, _) = timed(
            &format!("Host::build {name} (cluster member, VTEP {vtep})"),
            Host::builder()
                .state_dir(w.state_dir.join(name))
                .netns(ns.clone())
                .cluster(store.clone(), HostIdentity::new(name).advertise(*vtep))
                .build(),
        )
        .await;
        let host = host?;
        // The runtime spawns each host's agent beside it: lease, watch, forwarding.
        let agent = host.overlay_agent().ok_or("a cluster host has an agent")?;
        agents.push(tokio::spawn(agent.run()));
        hosts.push(host);
    }
    let (h1, h2) = (&hosts[0], &hosts[1]);
    let (c1, c2) = (&w.containers[0], &w.containers[1]);

    let (net, t_create) = timed(
        "create_network ov (overlay, VNI 4242) on h1",
        h1.create_network(
            Network::overlay("ov")
                .vni(VNI)
                .subnet("10.200.0.0/24".parse()?),
        ),
    )
    .await;
    let net = net?;
    let seen = h2.networks().await?;
    if !seen.iter().any(|n| n.id == net.id) {
        return Err("h2 does not see ov in the store".into());
    }
    let (a1, t_attach1) = timed(
        "attach h1c1 on h1",
        h1.attach("ov", Endpoint::new("h1c1", c1.clone())),
    )
    .await;
    let a1 = a1?;
    let (a2, t_attach2) = timed(
        "attach h2c1 on h2",
        h2.attach("ov", Endpoint::new("h2c1", c2.clone())),
    )
    .await;
    let a2 = a2?;
    let ip1 = a1.ip().ok_or("h1c1 has an address")?;
    let ip2 = a2.ip().ok_or("h2c1 has an address")?;

    // h2's attach programmed h2 itself (it saw h1c1 in the store); h1 learns of h2c1 only
    // through its agent's watch.
    let h1_nl = Netlink::open(&w.hosts[0].1).await?;
    let vx_name = berth::driver::overlay::vxlan_name(VNI);
    let (learned, t_learn) = timed("h1's agent: FDB entry for h2c1", async {
        let t0 = Instant::now();
        loop {
            let vx = h1_nl.require_link(&vx_name).await?;
            let fdb = h1_nl.fdb(vx.index).await?;
            if fdb.iter().any(|e| Some(e.mac) == a2.mac) {
                return Ok::<_, BoxError>(());
            }
            if t0.elapsed() > Duration::from_secs(15) {
                return Err("h1's agent did not add h2c1 within 15 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    learned?;
    let target = SocketAddr::new(ip2, 7000);
    let (r, t_tcp) = timed(
        "first TCP connect h1c1 -> h2c1 (across hosts)",
        tcp_probe(c2, target, c1, target),
    )
    .await;
    let seen_from = r.map_err(|e| format!("h1c1 -> h2c1 {target}: {e}"))?;
    let back = SocketAddr::new(ip1, 7001);
    let (r, _) = timed("TCP h2c1 -> h1c1", tcp_probe(c1, back, c2, back)).await;
    let seen_back = r?;

    println!("\nVXLAN forwarding read back (FDB of vx-{VNI}: remote MAC -> remote VTEP):");
    for (name, ns, _) in &w.hosts {
        let nl = Netlink::open(ns).await?;
        let vx = nl.require_link(&vx_name).await?;
        for e in nl.fdb(vx.index).await? {
            let who = [&a1, &a2]
                .into_iter()
                .find(|a| a.mac == Some(e.mac))
                .map_or("?", |a| a.container.as_str());
            println!("  {name}: {} -> {} ({who})", e.mac, e.dst);
        }
    }

    println!("\ntraffic:");
    println!("  h1c1 ({ip1}) -> h2c1 {target}: h2c1 saw {seen_from}");
    println!("  h2c1 ({ip2}) -> h1c1 {back}: h1c1 saw {seen_back}");

    println!("\nteardown:");
    timed("detach h1c1", h1.detach("ov", "h1c1")).await.0?;
    timed("detach h2c1", h2.detach("ov", "h2c1")).await.0?;
    timed("delete_network ov (cluster-wide)", h1.delete_network("ov"))
        .await
        .0?;
    for a in agents {
        a.abort();
    }
    for h in &hosts {
        if let Some(c) = h.cluster() {
            c.leave().await?;
        }
    }

    println!(
        "\nsummary (ms): create network {:.2}, attach h1 {:.2}, attach h2 {:.2}, \
         h1 learns h2c1 {:.2}, first TCP connect {:.2}",
        ms(t_create),
        ms(t_attach1),
        ms(t_attach2),
        ms(t_learn),
        ms(t_tcp)
    );
    Ok(())
}
