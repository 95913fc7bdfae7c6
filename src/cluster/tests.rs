//! Root-free tests of the cluster layer on the in-memory store: the store's etcd semantics
//! berth relies on, cluster-wide networks and address claims under concurrency, and the agent's
//! view (held expiry deletes, own lease ended).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use futures::StreamExt;

use super::agent::View;
use super::records::{self, EndpointRecord, to_json};
use super::store::{Compare, Op, Txn, WatchEvent, WatchItem};
use super::*;
use crate::error::Error;
use crate::ipam::{AddressRequest, Ipam};
use crate::network::{Network, NetworkInfo, NetworkSpec};

fn cluster(store: &MemoryStore, name: &str) -> Cluster {
    Cluster::new(
        store.clone(),
        HostIdentity::new(name).advertise(IpAddr::from([10, 0, 0, 1])),
        ClusterSettings::default(),
    )
    .unwrap()
}

fn template(spec: impl Into<NetworkSpec>) -> (NetworkInfo, Vec<crate::network::SubnetRequest>) {
    let spec: NetworkSpec = spec.into();
    let net = NetworkInfo {
        name: spec.name.clone(),
        id: "0123456789abcdef0123".into(),
        driver: spec.driver.clone(),
        subnets: Vec::new(),
        aux: spec.aux.clone(),
        ipv6: spec.ipv6,
        internal: spec.internal,
        mtu: 0,
        device: None,
        routes: Vec::new(),
        no_default_route: false,
        adopted: None,
        dns_enabled: true,
        dns_servers: Vec::new(),
        removing: false,
        ipam_driver: crate::lease::IpamDriver::Default,
    };
    (net, spec.subnet_requests())
}

#[tokio::test]
async fn store_txn_leases_watch_and_compaction() {
    let s = MemoryStore::new("t");
    assert!(
        s.txn(Txn::new(
            vec![Compare::Absent("a".into())],
            vec![Op::put("a", "1")]
        ))
        .await
        .unwrap()
    );
    assert!(
        !s.txn(Txn::new(
            vec![Compare::Absent("a".into())],
            vec![Op::put("a", "2")]
        ))
        .await
        .unwrap(),
        "a create over an existing key fails"
    );
    let rev = s.revision();
    let l = s.grant(Duration::from_secs(60)).await.unwrap();
    s.txn(Txn::new(
        vec![],
        vec![Op::Put {
            key: "leased".into(),
            value: b"x".to_vec(),
            lease: Some(l),
        }],
    ))
    .await
    .unwrap();
    let mut w = s.watch("", rev + 1).await.unwrap();
    s.expire(l);
    assert!(
        s.get("leased").await.unwrap().is_none(),
        "an ended lease deletes its keys"
    );
    assert_eq!(s.keep_alive(l).await.unwrap(), None, "and is gone");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match w.next().await.unwrap().unwrap() {
            WatchItem::Events(e) => seen.extend(e),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(&seen[0], WatchEvent::Put(kv) if kv.key == "leased"));
    assert!(
        matches!(&seen[1], WatchEvent::Delete { key, lease: Some(x), .. } if key == "leased" && *x == l)
    );
    s.compact(s.revision());
    let mut w = s.watch("", rev).await.unwrap();
    assert!(matches!(
        w.next().await.unwrap().unwrap(),
        WatchItem::Compacted { .. }
    ));
    s.set_reachable(false);
    let e = s.get("a").await.unwrap_err();
    assert!(
        matches!(&e, Error::Store { store, .. } if store.contains("memory store t")),
        "{e}"
    );
}

#[tokio::test]
async fn networks_are_unique_cluster_wide_and_delete_is_refused_while_held() {
    let s = MemoryStore::default();
    let (h1, h2) = (cluster(&s, "h1"), cluster(&s, "h2"));
    let (a, ra) = template(Network::overlay("a"));
    let (b, rb) = template(Network::overlay("b"));
    let (a, b) = tokio::join!(
        h1.create_network(a, &ra, &[]),
        h2.create_network(b, &rb, &[])
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(
        records::NetworkIndex::vni_of(&a),
        records::NetworkIndex::vni_of(&b)
    );
    assert_ne!(a.subnets[0].subnet, b.subnets[0].subnet);
    let (dup, rd) = template(Network::overlay("a"));
    assert!(matches!(
        h2.create_network(dup, &rd, &[]).await,
        Err(Error::NetworkExists { .. })
    ));
    let (v, rv) = template(Network::overlay("c").vni(records::NetworkIndex::vni_of(&a).unwrap()));
    assert!(matches!(
        h2.create_network(v, &rv, &[]).await,
        Err(Error::VniInUse { .. })
    ));
    let (o, ro) = template(Network::overlay("d").subnet(a.subnets[0].subnet));
    assert!(matches!(
        h2.create_network(o, &ro, &[]).await,
        Err(Error::SubnetOverlap { .. })
    ));
    // Held by a claim of h2: refused, naming it; nothing changed.
    let ipam = ClusterIpam::new(h2.clone());
    ipam.allocate("a", "c1", AddressRequest::default())
        .await
        .unwrap();
    let e = h1.delete_network("a").await.unwrap_err();
    assert!(
        matches!(&e, Error::NetworkInUseOnHosts { endpoints, .. }
            if endpoints == &[("h2".to_string(), "c1".to_string())]),
        "{e}"
    );
    assert!(h1.network("a").await.unwrap().is_some(), "still there");
    ipam.release("a", "c1").await.unwrap();
    h1.delete_network("a").await.unwrap();
    assert!(h2.network("a").await.unwrap().is_none());
    assert!(s.list("net/a/").await.unwrap().0.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_from_many_hosts_are_distinct() {
    let s = MemoryStore::default();
    let h = cluster(&s, "h0");
    let (n, r) = template(Network::overlay("n").subnet("10.1.0.0/24".parse().unwrap()));
    h.create_network(n, &r, &[]).await.unwrap();
    let mut tasks = Vec::new();
    for host in 0..4 {
        let ipam = ClusterIpam::new(cluster(&s, &format!("h{host}")));
        for c in 0..50 {
            let ipam = ipam.clone();
            tasks.push(tokio::spawn(async move {
                ipam.allocate("n", &format!("c{c}"), AddressRequest::default())
                    .await
                    .unwrap()
                    .claimed[0]
            }));
        }
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        assert!(got.insert(t.await.unwrap()), "an address handed out twice");
    }
    assert_eq!(got.len(), 200);
    assert!(
        !got.contains(&"10.1.0.1".parse::<IpAddr>().unwrap()),
        "never the gateway"
    );
    // A static request for a taken address names its holder and host.
    let ipam = ClusterIpam::new(cluster(&s, "h9"));
    let taken = *got.iter().next().unwrap();
    let IpAddr::V4(v4) = taken else {
        unreachable!()
    };
    let e = ipam
        .allocate(
            "n",
            "x",
            AddressRequest {
                v4: Some(v4),
                v6: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::AddressInUse { address, .. } if address == taken),
        "{e}"
    );
}

fn ep(host: &str, c: &str) -> EndpointRecord {
    EndpointRecord {
        host: host.into(),
        container: c.into(),
        vtep: IpAddr::from([10, 0, 0, 2]),
        mac: crate::MacAddr::random(),
        ipv4: Some(IpAddr::from([10, 1, 0, 9])),
        ipv6: None,
        names: vec![c.into()],
        incarnation: 0,
    }
}

fn put(key: &str, v: &impl serde::Serialize) -> WatchEvent {
    WatchEvent::Put(store::KeyValue {
        key: key.into(),
        value: to_json(v),
        mod_revision: 1,
        lease: Some(LeaseId(7)),
    })
}

fn del(key: &str) -> WatchEvent {
    WatchEvent::Delete {
        key: key.into(),
        revision: 2,
        lease: Some(LeaseId(7)),
    }
}

#[tokio::test]
async fn the_view_holds_expiry_deletes_and_applies_graceful_ones() {
    let s = MemoryStore::default();
    let me = cluster(&s, "h1");
    let hold = Duration::from_millis(100);
    let host2 = records::HostRecord {
        vtep: IpAddr::from([10, 0, 0, 2]),
        port: 4789,
    };
    let mut v = View::default();
    let ch = v.apply(
        &me,
        vec![
            put("hosts/h2", &host2),
            put("net/n/ep/h2/c", &ep("h2", "c")),
        ],
        hold,
    );
    assert_eq!(
        ch.added.get("n").map(Vec::len),
        Some(1),
        "a new peer is added at once"
    );
    // Graceful: the host is alive, the endpoint goes at once.
    let ch = v.apply(&me, vec![del("net/n/ep/h2/c")], hold);
    assert!(ch.networks.contains("n") && v.endpoints["n"].is_empty());
    // Expiry: host and endpoint go in one revision: held, then re-put within the hold.
    v.apply(&me, vec![put("net/n/ep/h2/c", &ep("h2", "c"))], hold);
    let ch = v.apply(&me, vec![del("net/n/ep/h2/c"), del("hosts/h2")], hold);
    assert!(
        ch.networks.is_empty() && v.endpoints["n"].len() == 1,
        "held"
    );
    v.apply(
        &me,
        vec![
            put("hosts/h2", &host2),
            put("net/n/ep/h2/c", &ep("h2", "c")),
        ],
        hold,
    );
    tokio::time::sleep(hold * 2).await;
    assert!(v.release_due().is_empty(), "a re-put cancels the hold");
    assert_eq!(v.endpoints["n"].len(), 1);
    // Expiry not superseded: gone once the hold is over.
    v.apply(&me, vec![del("net/n/ep/h2/c"), del("hosts/h2")], hold);
    tokio::time::sleep(hold * 2).await;
    assert_eq!(
        v.release_due().into_iter().collect::<Vec<_>>(),
        vec!["n".to_string()]
    );
    assert!(v.endpoints["n"].is_empty());
    // Our own host key gone: our lease ended.
    let ch = v.apply(&me, vec![del("hosts/h1")], hold);
    assert!(ch.own_lease_ended);
}

#[tokio::test]
async fn a_deletion_killed_after_marking_is_finished_by_the_next_create() {
    let s = MemoryStore::default();
    let h1 = cluster(&s, "h1");
    let (a, ra) = template(Network::overlay("a"));
    let mut made = h1.create_network(a.clone(), &ra, &[]).await.unwrap();
    // What delete_network writes first, then the process dies.
    made.removing = true;
    s.txn(Txn::new(
        vec![],
        vec![Op::put(records::config("a"), to_json(&made))],
    ))
    .await
    .unwrap();
    assert!(
        h1.network("a").await.unwrap().is_none(),
        "hidden while being removed"
    );
    let again = h1
        .create_network(a, &ra, &[])
        .await
        .expect("the name is free again");
    assert!(!again.removing);
    assert_eq!(h1.networks().await.unwrap().len(), 1);
}
