//! Overlay networks across simulated hosts, proven by traffic and read back from the kernel
//! and the store. An "underlay" netns (the sandbox's host netns) with a bridge joins N host
//! netns by veths (`10.99.N.I/24`); each host netns has its own berth `Host` (own state dir,
//! own firewall) in one cluster, whose store is a real etcd (Debian's `etcd-server`) started by
//! the test on a loopback port of its own, with its data dir in a temp dir, stopped and removed
//! at the end (also on panic). Each host runs its overlay agent.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::cluster::{ClusterStore, HostIdentity};
use berth::sandbox::dns_probe;
use berth::{Endpoint, Error, Host, MacAddr, Netns, Network};
use common::cluster::*;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_hosts_all_to_all_names_and_teardown() {
    let Some(mut c) = cluster("ov-all", 1, 4).await else {
        return;
    };
    let net = c.hosts[0]
        .host
        .create_network(
            Network::overlay("ov")
                .subnet("10.200.1.0/24".parse().unwrap())
                .ipv6(true)
                .subnet("fd00:200:1::/64".parse().unwrap()),
        )
        .await
        .expect("create overlay");
    let vni = vni_of(&net);
    assert!(vni >= 4096);
    // Made on h1, listed on h4 (which has never used it).
    let on4 = c.hosts[3].host.networks().await.unwrap();
    assert!(
        on4.iter().any(|n| n.name == "ov" && n.id == net.id),
        "{on4:?}"
    );
    // The same name again, from another host: one network.
    let again = c.hosts[2]
        .host
        .create_network(Network::overlay("ov"))
        .await
        .unwrap_err();
    assert!(matches!(again, Error::NetworkExists { .. }), "{again}");

    let mut eps: Vec<(usize, Netns, IpAddr, IpAddr)> = Vec::new();
    for h in 0..4 {
        for j in 0..3 {
            let role = format!("h{}c{j}", h + 1);
            let ns = c.container(&role).await;
            let att = c.hosts[h]
                .host
                .attach(
                    "ov",
                    Endpoint::new(&role, ns.clone()).alias(format!("alias-{role}")),
                )
                .await
                .expect("attach");
            eps.push((h, ns, att.ip().unwrap(), att.ip6().unwrap()));
        }
    }
    let distinct: BTreeSet<IpAddr> = eps.iter().map(|e| e.2).collect();
    assert_eq!(distinct.len(), 12, "addresses are distinct cluster-wide");
    // Every host forwards to the 9 endpoints of the others.
    for h in &c.hosts {
        let hs = h;
        wait_for("FDB complete", Duration::from_secs(5), async || {
            fdb_vteps(hs, vni).await.len() == 9
        })
        .await;
        assert!(!fdb_vteps(hs, vni).await.contains(&hs.vtep));
    }
    // All to all, IPv4; a ring over IPv6.
    for (i, (_, server, ip4, ip6)) in eps.iter().enumerate() {
        for (k, (_, client, _, _)) in eps.iter().enumerate() {
            if i != k {
                reaches_at(server, client, &format!("{ip4}:{}", 7000 + i)).await;
            }
        }
        let (_, client, _, _) = &eps[(i + 4) % eps.len()];
        reaches_at(server, client, &format!("[{ip6}]:{}", 7100 + i)).await;
    }
    // Names and aliases across hosts, from every host's embedded resolver.
    let resolvers: Vec<_> = c
        .hosts
        .iter()
        .map(|h| tokio::spawn(h.host.dns_resolver().run()))
        .collect();
    let dns: SocketAddr = "10.200.1.1:53".parse().unwrap();
    for (h, (_, ns, _, _)) in eps.iter().enumerate().step_by(3) {
        let other = (h / 3 + 1) % 4;
        let name = format!("h{}c2", other + 1);
        let want = eps[other * 3 + 2].2;
        for q in [name.clone(), format!("alias-{name}")] {
            wait_for(
                &format!("{q} from h{}", h / 3 + 1),
                Duration::from_secs(5),
                async || dns_probe(ns, dns, &q).await.is_ok_and(|v| v == vec![want]),
            )
            .await;
        }
    }
    for r in resolvers {
        r.abort();
    }
    // In the store: 12 endpoints, 24 claims.
    let store = c.etcd.store("/berth-ov-all").await;
    assert_eq!(store.list("net/ov/ep/").await.unwrap().0.len(), 12);
    assert_eq!(store.list("net/ov/ipam/").await.unwrap().0.len(), 24);

    // Delete refused while endpoints exist, naming them and their hosts.
    let e = c.hosts[3].host.delete_network("ov").await.unwrap_err();
    assert!(
        matches!(&e, Error::NetworkInUseOnHosts { endpoints, .. } if endpoints.len() == 12),
        "{e}"
    );

    // Teardown: after every detach and the delete, nothing of it anywhere.
    for h in 0..4 {
        for j in 0..3 {
            c.hosts[h]
                .host
                .detach("ov", &format!("h{}c{j}", h + 1))
                .await
                .expect("detach");
        }
        let links = link_names(&c.hosts[h].ns).await;
        assert!(
            !links
                .iter()
                .any(|l| l.starts_with("vx-") || l.starts_with("ov-")),
            "h{}: devices left: {links:?}",
            h + 1
        );
    }
    c.hosts[1].host.delete_network("ov").await.expect("delete");
    assert!(store.list("net/ov/").await.unwrap().0.is_empty());
    for h in &c.hosts {
        assert!(
            h.host
                .networks()
                .await
                .unwrap()
                .iter()
                .all(|n| n.name != "ov")
        );
    }
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_host_vanishes_within_the_ttl_and_a_restarted_agent_causes_no_churn() {
    let Some(mut c) = cluster("ov-dead", 2, 3).await else {
        return;
    };
    let (vni, eps) = c.one_per_host("10.200.2.0/24").await;
    for h in &c.hosts {
        wait_for("FDB complete", Duration::from_secs(5), async || {
            fdb_vteps(h, vni).await.len() == 2
        })
        .await;
    }
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7001", eps[1].1)).await;
    // Names across hosts: h1's resolver answers for h3's container.
    let resolvers: Vec<_> = c
        .hosts
        .iter()
        .map(|h| tokio::spawn(h.host.dns_resolver().run()))
        .collect();
    let dns: SocketAddr = "10.200.2.1:53".parse().unwrap();
    let h3c = eps[2].1;
    wait_for("h3c resolves on h1", Duration::from_secs(5), async || {
        dns_probe(&eps[0].0, dns, "h3c")
            .await
            .is_ok_and(|v| v == vec![h3c])
    })
    .await;

    // h2's runtime restarted within the TTL (a new Host over the same state dir, as a new
    // process would build): it re-attaches to its live lease (the lease id is in the state
    // dir), so peers see no delete (h1's FDB keeps h2's entry throughout).
    c.hosts[1].agent.take().unwrap().abort();
    let lease_before = std::fs::read_to_string(c.sb.state_dir().join("h2/cluster-lease.json"))
        .expect("the lease id is kept in the state dir");
    let restarted = Host::builder()
        .state_dir(c.sb.state_dir().join("h2"))
        .netns(c.hosts[1].ns.clone())
        .resolv_conf(c.sb.state_dir().join("no-resolv.conf"))
        .cluster(
            c.etcd.store("/berth-ov-dead").await,
            HostIdentity::new("h2").advertise(c.hosts[1].vtep),
        )
        .cluster_settings(settings())
        .build()
        .await
        .unwrap();
    let again = restarted.overlay_agent().unwrap();
    let status = again.status();
    c.hosts[1].agent = Some(tokio::spawn(again.run()));
    c.hosts[1].host = restarted;
    let t0 = Instant::now();
    while t0.elapsed() < settings().lease_ttl * 2 {
        assert!(
            fdb_vteps(&c.hosts[0], vni).await.contains(&c.hosts[1].vtep),
            "h1 dropped h2 although h2's agent came back within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(status.lock().unwrap().connected);
    let lease_after =
        std::fs::read_to_string(c.sb.state_dir().join("h2/cluster-lease.json")).unwrap();
    assert_eq!(lease_before, lease_after, "the same lease, re-attached");

    // h3's agent killed (no goodbye): gone from h1 and h2 within TTL + hold (+ 1 s of etcd's
    // own expiry granularity), and its container unreachable.
    c.hosts[2].agent.take().unwrap().abort();
    let h3 = c.hosts[2].vtep;
    let limit = settings().lease_ttl + settings().expiry_hold + Duration::from_secs(2);
    for h in 0..2 {
        let hs = &c.hosts[h];
        let took = wait_for("dead host's entries gone", limit, async || {
            !fdb_vteps(hs, vni).await.contains(&h3)
        })
        .await;
        println!(
            "h{}: h3's entries gone {took:?} after its agent died",
            h + 1
        );
    }
    blocked_at(
        &eps[2].0,
        &eps[0].0,
        &format!("{}:7002", eps[2].1),
        "a dead host",
    )
    .await;
    // … and its name is no longer answered.
    wait_for(
        "h3c no longer resolves on h1",
        Duration::from_secs(2),
        async || dns_probe(&eps[0].0, dns, "h3c").await.is_err(),
    )
    .await;
    for r in resolvers {
        r.abort();
    }
    // Its address stays claimed (grace), then the reclaimer frees it.
    let store = c.etcd.store("/berth-ov-dead").await;
    let claims_of_h3 = async || {
        store
            .list("net/ov/ipam/")
            .await
            .unwrap()
            .0
            .iter()
            .filter(|kv| String::from_utf8_lossy(&kv.value).contains("\"h3\""))
            .count()
    };
    assert_eq!(claims_of_h3().await, 1, "claimed during the grace period");
    wait_for(
        "reclaimed after the grace period",
        settings().reclaim_grace * 4,
        async || claims_of_h3().await == 0,
    )
    .await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_down_refuses_attach_cleanly_and_the_data_plane_keeps_working() {
    let Some(mut c) = cluster("ov-down", 3, 2).await else {
        return;
    };
    let (_, eps) = c.one_per_host("10.200.3.0/24").await;
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7001", eps[1].1)).await;
    let before = link_names(&c.hosts[0].ns).await;

    c.etcd.kill();
    // The data plane keeps working.
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7002", eps[1].1)).await;
    // Attach fails fast with the typed error naming the store, and makes nothing.
    let ns = c.container("late").await;
    let t0 = Instant::now();
    let e = c.hosts[0]
        .host
        .attach("ov", Endpoint::new("late", ns))
        .await
        .unwrap_err();
    println!("attach with etcd down failed after {:?}: {e}", t0.elapsed());
    assert!(
        matches!(&e, Error::Store { store, .. } if store.contains("etcd"))
            || e.to_string().contains("etcd"),
        "{e}"
    );
    assert_eq!(link_names(&c.hosts[0].ns).await, before, "nothing made");
    assert!(c.hosts[0].host.endpoints("ov").await.unwrap().len() == 1);
    // Detach completes locally; the store side when etcd is back.
    c.hosts[1]
        .host
        .detach("ov", "h2c")
        .await
        .expect("detach while the store is down");
    c.etcd.restart();
    let store = c.etcd.store("/berth-ov-down").await;
    wait_for(
        "pending detach finished",
        Duration::from_secs(15),
        async || {
            store
                .list("net/ov/ep/")
                .await
                .map(|l| l.0.len())
                .unwrap_or(9)
                == 1
        },
    )
    .await;
    let claims = store.list("net/ov/ipam/").await.unwrap().0;
    assert_eq!(
        claims.len(),
        1,
        "h2c's address released once the store was back"
    );
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attaches_and_creates_stay_unique() {
    let Some(mut c) = cluster("ov-race", 4, 4).await else {
        return;
    };
    // Two hosts creating different networks at once: distinct VNIs and subnets.
    let (a, b) = tokio::join!(
        c.hosts[0].host.create_network(Network::overlay("ova")),
        c.hosts[1].host.create_network(Network::overlay("ovb")),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(vni_of(&a), vni_of(&b));
    assert_ne!(a.subnets[0].subnet, b.subnets[0].subnet);
    // Two hosts creating the same name at once: one network.
    let (x, y) = tokio::join!(
        c.hosts[2].host.create_network(Network::overlay("same")),
        c.hosts[3].host.create_network(Network::overlay("same")),
    );
    assert!(x.is_ok() != y.is_ok(), "{x:?} {y:?}");

    // 4 hosts × 50 attaches at once → 200 distinct addresses.
    const PER_HOST: usize = 50;
    let mut nss = Vec::new();
    for h in 0..4 {
        for j in 0..PER_HOST {
            nss.push((
                h,
                format!("r{h}x{j}"),
                c.container(&format!("r{h}x{j}")).await,
            ));
        }
    }
    let hosts: Vec<Host> = c.hosts.iter().map(|h| h.host.clone()).collect();
    let hosts = Arc::new(hosts);
    let tasks: Vec<_> = nss
        .iter()
        .map(|(h, role, ns)| {
            let hosts = hosts.clone();
            let (h, role, ns) = (*h, role.clone(), ns.clone());
            tokio::spawn(async move { hosts[h].attach("ova", Endpoint::new(&role, ns)).await })
        })
        .collect();
    let mut ips = BTreeSet::new();
    for t in tasks {
        ips.insert(t.await.unwrap().expect("attach").ip().unwrap());
    }
    assert_eq!(ips.len(), 4 * PER_HOST, "every address distinct");
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_stalled_past_the_ttl_or_restarted_converges() {
    let Some(mut c) = cluster("ov-stall", 5, 2).await else {
        return;
    };
    let (vni, eps) = c.one_per_host("10.200.5.0/24").await;
    let converged = async |c: &Cluster| {
        for (i, h) in c.hosts.iter().enumerate() {
            let other = c.hosts[1 - i].vtep;
            wait_for(
                &format!("{} forwards to the other host", h.name),
                Duration::from_secs(20),
                async || fdb_vteps(h, vni).await == vec![other],
            )
            .await;
        }
    };
    converged(&c).await;
    // SIGSTOP past the TTL: on resume etcd ends every lease at once; the hosts re-advertise.
    let pid = nix::unistd::Pid::from_raw(c.etcd.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    tokio::time::sleep(settings().lease_ttl * 2).await;
    // The data plane kept working meanwhile.
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7001", eps[1].1)).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    tokio::time::sleep(settings().lease_ttl).await;
    converged(&c).await;
    let store = c.etcd.store("/berth-ov-stall").await;
    wait_for(
        "both endpoints advertised again",
        Duration::from_secs(20),
        async || {
            store
                .list("net/ov/ep/")
                .await
                .map(|l| l.0.len())
                .unwrap_or(0)
                == 2
        },
    )
    .await;
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7002", eps[1].1)).await;
    // A restart keeps the leases: convergence again, traffic flows.
    c.etcd.restart();
    let _ = c.etcd.store("/berth-ov-stall").await;
    converged(&c).await;
    reaches_at(&eps[0].0, &eps[1].0, &format!("{}:7003", eps[0].1)).await;
    // An FDB entry an admin removed by hand is restored by the periodic reconcile.
    let h = &c.hosts[0];
    let vx =
        h.nl.link_by_name(&format!("vx-{vni}"))
            .await
            .unwrap()
            .unwrap();
    for e in h.nl.fdb(vx.index).await.unwrap() {
        h.nl.del_fdb(e.index, &e.name, e.mac, e.dst).await.unwrap();
    }
    blocked_at(
        &eps[1].0,
        &eps[0].0,
        &format!("{}:7004", eps[1].1),
        "FDB entry removed",
    )
    .await;
    converged(&c).await;
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7005", eps[1].1)).await;
    drop(c);
}

/// Outside world and isolation: an overlay container reaches an outside netns, masqueraded by
/// its own host; a port published on host 2 is reached from outside at host 2's address; two
/// overlay networks do not reach each other; an internal overlay has no way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_published_ports_and_isolation() {
    let Some(mut c) = cluster("ov-out", 6, 2).await else {
        return;
    };
    let vxlan = |name: &str, subnet: &str| {
        Network::overlay(name)
            .subnet(subnet.parse().unwrap())
            .into()
    };
    let s = outside_scenario(
        &mut c,
        vxlan,
        ["10.200.6.0/24", "10.201.6.0/24", "10.202.6.0/24"],
    )
    .await
    .unwrap();
    assert_outside_and_isolation(&c, &s, "overlay").await;
    drop(c);
}

/// MTU: a full-size datagram with DF set crosses hosts; one byte more is refused to the sender
/// (EMSGSIZE), not lost silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_size_packets_cross_and_one_byte_more_is_refused() {
    let Some(mut c) = cluster("ov-mtu", 7, 2).await else {
        return;
    };
    let net = c.hosts[0]
        .host
        .create_network(Network::overlay("ov").subnet("10.200.7.0/24".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(net.mtu, 1450, "underlay 1500 − 50");
    let a_ns = c.container("a").await;
    let b_ns = c.container("b").await;
    c.hosts[0]
        .host
        .attach("ov", Endpoint::new("a", a_ns.clone()))
        .await
        .unwrap();
    let b = c.hosts[1]
        .host
        .attach("ov", Endpoint::new("b", b_ns.clone()))
        .await
        .unwrap();
    full_size_crosses(&a_ns, &b_ns, b.ip().unwrap(), 1450).await;
    drop(c);
}

/// Attach made to fail after each step of an overlay attach: nothing of it remains — no
/// endpoint key or address claim in the store, no device on the host, no record — and the
/// next attach works. Then gc: an endpoint key no record keeps (an attach killed after
/// advertising) is withdrawn with its claim, and a stray FDB entry is named by `check` and
/// removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_attaches_leave_nothing_and_gc_repairs_the_rest() {
    let Some(mut c) = cluster("ov-fault", 8, 2).await else {
        return;
    };
    c.hosts[0]
        .host
        .create_network(Network::overlay("ov").subnet("10.200.8.0/24".parse().unwrap()))
        .await
        .unwrap();
    let b_ns = c.container("b").await;
    let a_ns = c.container("a").await;
    c.hosts[1]
        .host
        .attach("ov", Endpoint::new("b", b_ns.clone()))
        .await
        .unwrap();
    let store = c.etcd.store("/berth-ov-fault").await;
    let fail_at: Arc<std::sync::Mutex<Option<berth::Step>>> = Arc::default();
    let f = fail_at.clone();
    let h1 = &c.hosts[0];
    let faulty = Host::builder()
        .state_dir(c.sb.state_dir().join("h1"))
        .netns(h1.ns.clone())
        .resolv_conf(c.sb.state_dir().join("no-resolv.conf"))
        .cluster(
            c.etcd.store("/berth-ov-fault").await,
            HostIdentity::new("h1").advertise(h1.vtep),
        )
        .cluster_settings(settings())
        .fault_hook(Arc::new(move |step| match *f.lock().unwrap() {
            Some(s) if s == step => Err(Error::Injected { step }),
            _ => Ok(()),
        }))
        .build()
        .await
        .unwrap();
    let links_before = link_names(&h1.ns).await;
    // A create made to fail after each of its steps: no network in the store or here.
    for step in [
        berth::Step::IpamReserve,
        berth::Step::DriverCreate,
        berth::Step::FirewallNetwork,
        berth::Step::PersistNetwork,
    ] {
        *fail_at.lock().unwrap() = Some(step);
        let e = faulty
            .create_network(Network::overlay("ov2").subnet("10.201.8.0/24".parse().unwrap()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Injected { step: s } if s == step),
            "{step}: {e}"
        );
        assert!(
            store.get("net/ov2/config").await.unwrap().is_none(),
            "{step}"
        );
        let names: Vec<String> = c.hosts[1]
            .host
            .networks()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect();
        assert!(!names.contains(&"ov2".to_string()), "{step}: {names:?}");
        assert!(faulty.state().network("ov2").unwrap().is_none(), "{step}");
    }
    for step in [
        berth::Step::IpamAllocate,
        berth::Step::DriverAttach,
        berth::Step::ClusterAdvertise,
        berth::Step::PersistEndpoint,
    ] {
        *fail_at.lock().unwrap() = Some(step);
        let e = faulty
            .attach("ov", Endpoint::new("a", a_ns.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Injected { step: s } if s == step),
            "{step}: {e}"
        );
        let keys: Vec<String> = store
            .list("net/ov/")
            .await
            .unwrap()
            .0
            .into_iter()
            .map(|kv| kv.key)
            .filter(|k| k.contains("/h1/") || k.contains("ipam/"))
            .collect();
        assert_eq!(keys.len(), 1, "{step}: only b's claim is left: {keys:?}");
        assert_eq!(link_names(&h1.ns).await, links_before, "{step}: links left");
        assert!(faulty.endpoints("ov").await.unwrap().is_empty());
    }
    *fail_at.lock().unwrap() = None;
    let a = faulty
        .attach("ov", Endpoint::new("a", a_ns.clone()))
        .await
        .unwrap();
    let b_ip = c.hosts[1].host.endpoints("ov").await.unwrap()[0]
        .ip()
        .unwrap();
    reaches_at(&b_ns, &a_ns, &format!("{b_ip}:7001")).await;

    // A ghost endpoint of h1 in the store (its attach died after advertising), with a claim.
    let ghost = berth::cluster::records::EndpointRecord {
        host: "h1".into(),
        container: "ghost".into(),
        vtep: h1.vtep,
        mac: MacAddr::random(),
        ipv4: Some("10.200.8.250".parse().unwrap()),
        ipv6: None,
        names: vec![],
        incarnation: 0,
    };
    let claim = berth::cluster::records::Claim {
        host: "h1".into(),
        container: "ghost".into(),
    };
    use berth::cluster::store::{Op, Txn};
    store
        .txn(Txn::new(
            vec![],
            vec![
                Op::put("net/ov/ep/h1/ghost", serde_json::to_vec(&ghost).unwrap()),
                Op::put(
                    "net/ov/ipam/10.200.8.250",
                    serde_json::to_vec(&claim).unwrap(),
                ),
            ],
        ))
        .await
        .unwrap();
    // A stray FDB entry on h1's VXLAN device.
    let vx = h1
        .nl
        .links()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.name.starts_with("vx-"))
        .unwrap();
    let stray = MacAddr::random();
    h1.nl
        .replace_fdb(vx.index, &vx.name, stray, "10.99.8.99".parse().unwrap())
        .await
        .unwrap();
    let missing = faulty.check("ov", "a").await.unwrap();
    assert!(
        missing.iter().any(|m| m.starts_with("stray fdb entry")),
        "{missing:?}"
    );
    let report = faulty.gc(&["a"]).await.unwrap();
    assert_eq!(
        report.cluster_withdrawn,
        vec![("ov".to_string(), "ghost".to_string())]
    );
    assert!(report.forwarding_fixed >= 1, "{report:?}");
    assert!(store.get("net/ov/ep/h1/ghost").await.unwrap().is_none());
    assert!(
        store
            .get("net/ov/ipam/10.200.8.250")
            .await
            .unwrap()
            .is_none()
    );
    assert!(faulty.check("ov", "a").await.unwrap().is_empty());
    assert!(a.ip().is_some());
    drop(c);
}

/// A store whose client can be cut off (a network partition between one host and etcd).
#[derive(Debug)]
struct Partitionable {
    inner: berth::cluster::Etcd,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl Partitionable {
    fn check(&self) -> berth::Result<()> {
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Store {
                store: self.inner.describe(),
                op: "connect",
                reason: "partitioned (test)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ClusterStore for Partitionable {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn get(&self, key: &str) -> berth::Result<Option<berth::cluster::store::KeyValue>> {
        self.check()?;
        self.inner.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> berth::Result<(Vec<berth::cluster::store::KeyValue>, i64)> {
        self.check()?;
        self.inner.list(prefix).await
    }
    async fn txn(&self, txn: berth::cluster::store::Txn) -> berth::Result<bool> {
        self.check()?;
        self.inner.txn(txn).await
    }
    async fn grant(&self, ttl: Duration) -> berth::Result<berth::cluster::LeaseId> {
        self.check()?;
        self.inner.grant(ttl).await
    }
    async fn keep_alive(&self, l: berth::cluster::LeaseId) -> berth::Result<Option<Duration>> {
        self.check()?;
        self.inner.keep_alive(l).await
    }
    async fn time_to_live(&self, l: berth::cluster::LeaseId) -> berth::Result<Option<Duration>> {
        self.check()?;
        self.inner.time_to_live(l).await
    }
    async fn revoke(&self, l: berth::cluster::LeaseId) -> berth::Result<()> {
        self.check()?;
        self.inner.revoke(l).await
    }
    async fn watch(
        &self,
        prefix: &str,
        from: i64,
    ) -> berth::Result<berth::cluster::store::WatchStream> {
        self.check()?;
        let cut = self.cut.clone();
        let desc = self.inner.describe();
        let s = self.inner.watch(prefix, from).await?;
        // The stream breaks when the partition starts, as a TCP connection would.
        Ok(Box::pin(futures::StreamExt::take_while(
            futures::StreamExt::map(s, move |item| {
                if cut.load(std::sync::atomic::Ordering::SeqCst) {
                    Err(Error::Store {
                        store: desc.clone(),
                        op: "watch",
                        reason: "partitioned (test)".into(),
                    })
                } else {
                    item
                }
            }),
            |_| std::future::ready(true),
        )))
    }
}

/// A host cut off from the store past the reclaim grace: its peers drop its endpoints, the
/// reclaimer frees its addresses, another container takes one; the store is compacted
/// meanwhile. Back, the host re-validates: the endpoint whose address was taken is reported as
/// a conflict and not advertised; the other is claimed and advertised again, and forwarding
/// converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_partitioned_past_the_grace_reports_conflicts_on_return() {
    let Some(mut c) = cluster("ov-part", 9, 2).await else {
        return;
    };
    let net = c.hosts[0]
        .host
        .create_network(Network::overlay("ov").subnet("10.200.9.0/24".parse().unwrap()))
        .await
        .unwrap();
    let vni = vni_of(&net);
    // Host 3, whose store can be cut off.
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (h3_ns, h3_nl, h3_vtep) = c.add_host("h3", 3).await;
    let store3 = Partitionable {
        inner: c.etcd.store("/berth-ov-part").await,
        cut: cut.clone(),
    };
    let h3 = Host::builder()
        .state_dir(c.sb.state_dir().join("h3"))
        .netns(h3_ns.clone())
        .resolv_conf(c.sb.state_dir().join("no-resolv.conf"))
        .cluster(store3, HostIdentity::new("h3").advertise(h3_vtep))
        .cluster_settings(settings())
        .build()
        .await
        .unwrap();
    let agent3 = h3.overlay_agent().unwrap();
    let status3 = agent3.status();
    let agent3 = tokio::spawn(agent3.run());
    let a_ns = c.container("a").await;
    let x_ns = c.container("x").await;
    let y_ns = c.container("y").await;
    c.hosts[0]
        .host
        .attach("ov", Endpoint::new("a", a_ns.clone()))
        .await
        .unwrap();
    let x = h3
        .attach("ov", Endpoint::new("x", x_ns.clone()))
        .await
        .unwrap();
    let y = h3
        .attach("ov", Endpoint::new("y", y_ns.clone()))
        .await
        .unwrap();
    let t_ns = c.container("t").await;
    let (x_ip, y_ip) = (x.ip().unwrap(), y.ip().unwrap());
    reaches_at(&y_ns, &a_ns, &format!("{y_ip}:7001")).await;

    cut.store(true, std::sync::atomic::Ordering::SeqCst);
    // Its endpoints vanish from h1 within the TTL, and its addresses are reclaimed.
    let store = c.etcd.store("/berth-ov-part").await;
    let h1 = &c.hosts[0];
    wait_for(
        "h3's entries gone from h1",
        Duration::from_secs(10),
        async || !fdb_vteps(h1, vni).await.contains(&h3_vtep),
    )
    .await;
    wait_for(
        "h3's addresses reclaimed",
        Duration::from_secs(30),
        async || {
            store
                .get(&format!("net/ov/ipam/{x_ip}"))
                .await
                .unwrap()
                .is_none()
        },
    )
    .await;
    // Another container takes x's address; the store is compacted meanwhile.
    let x4 = match x_ip {
        IpAddr::V4(a) => a,
        _ => unreachable!(),
    };
    c.hosts[0]
        .host
        .attach("ov", Endpoint::new("thief", t_ns.clone()).ip(x4))
        .await
        .expect("x's address is free after the grace period");
    let mut raw = etcd_client::Client::connect([c.etcd.endpoint()], None)
        .await
        .unwrap();
    let rev = raw
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    raw.compact(rev, None).await.unwrap();

    cut.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for(
        "h3 reports the conflict",
        Duration::from_secs(20),
        async || {
            let s = status3.lock().unwrap().clone();
            s.connected
                && s.conflicts
                    .iter()
                    .any(|k| k.address == x_ip && k.recorded == "x")
        },
    )
    .await;
    // y is back (claimed again, advertised, forwarded to); x is not advertised.
    wait_for(
        "y forwarded to again from h1",
        Duration::from_secs(10),
        async || fdb_vteps(h1, vni).await.contains(&h3_vtep),
    )
    .await;
    reaches_at(&y_ns, &a_ns, &format!("{y_ip}:7002")).await;
    assert!(
        store.get("net/ov/ep/h3/x").await.unwrap().is_none(),
        "x not re-advertised"
    );
    assert!(store.get("net/ov/ep/h3/y").await.unwrap().is_some());
    let claim_y = store
        .get(&format!("net/ov/ipam/{y_ip}"))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&claim_y.value).contains("\"h3\""));
    agent3.abort();
    drop(h3_nl);
    drop(c);
}

/// An IPv6 underlay: VTEPs are IPv6 addresses, the MTU is the underlay's less 70, and a
/// dual-stack overlay carries TCP over both families across the hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ipv6_underlay_carries_a_dual_stack_overlay() {
    let Some(mut c) = cluster_over("ov-v6", 10, 2, true).await else {
        return;
    };
    let net = c.hosts[0]
        .host
        .create_network(
            Network::overlay("ov")
                .subnet("10.200.10.0/24".parse().unwrap())
                .ipv6(true)
                .subnet("fd00:200:10::/64".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(net.mtu, 1430, "IPv6 underlay 1500 − 70");
    let vni = vni_of(&net);
    let a_ns = c.container("a").await;
    let b_ns = c.container("b").await;
    c.hosts[0]
        .host
        .attach("ov", Endpoint::new("a", a_ns.clone()))
        .await
        .unwrap();
    let b = c.hosts[1]
        .host
        .attach("ov", Endpoint::new("b", b_ns.clone()))
        .await
        .unwrap();
    let h2 = c.hosts[1].vtep;
    let h1 = &c.hosts[0];
    wait_for(
        "h1 forwards to h2's IPv6 VTEP",
        Duration::from_secs(5),
        async || fdb_vteps(h1, vni).await == vec![h2],
    )
    .await;
    reaches_at(&b_ns, &a_ns, &format!("{}:7001", b.ip().unwrap())).await;
    reaches_at(&b_ns, &a_ns, &format!("[{}]:7002", b.ip6().unwrap())).await;
    drop(c);
}
