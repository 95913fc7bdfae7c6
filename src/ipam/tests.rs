//! Unit tests of [`super::FileIpam`] (files in a temp dir, no root).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::*;
use crate::error::Error;
use crate::state::{read_json, write_json};

fn ipam(label: &str) -> FileIpam {
    let dir = std::env::temp_dir().join(format!("berth-ipam-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    FileIpam::new(dir)
}

fn subnets(s: &[&str]) -> PoolRequest {
    PoolRequest {
        subnets: s
            .iter()
            .map(|s| SubnetRequest {
                subnet: Some(s.parse().unwrap()),
                ipv6: s.contains(':'),
                gateway: None,
                ip_range: None,
            })
            .collect(),
        ..PoolRequest::default()
    }
}

async fn next(i: &FileIpam, c: &str) -> Result<Vec<IpNet>> {
    i.allocate("n", c, AddressRequest::default())
        .await
        .map(|a| a.addresses)
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    Some(s.parse().unwrap())
}

#[tokio::test]
async fn allocations_are_entries_round_robin_idempotent_and_all_or_nothing() {
    let i = ipam("rr");
    i.reserve_pool("n", subnets(&["10.9.0.0/29", "fd00:9::/64"]))
        .await
        .unwrap();
    let a = next(&i, "a").await.unwrap();
    assert_eq!(a[0].to_string(), "10.9.0.2/29");
    assert_eq!(a[1].to_string(), "fd00:9::2/64");
    assert_eq!(
        next(&i, "a").await.unwrap(),
        a,
        "a retried attach gets its addresses"
    );
    i.release("n", "a").await.unwrap();
    // Released, but round robin goes on past it.
    assert_eq!(next(&i, "b").await.unwrap()[0].to_string(), "10.9.0.3/29");
    let taken = i.allocate(
        "n",
        "c",
        AddressRequest {
            v4: v4("10.9.0.3"),
            v6: None,
        },
    );
    assert!(matches!(taken.await, Err(Error::AddressInUse { container, .. }) if container == "b"));
    // The IPv6 request fails: the IPv4 address taken first is given back.
    let bad = AddressRequest {
        v4: v4("10.9.0.6"),
        v6: Some("fd01::1".parse().unwrap()),
    };
    assert!(i.allocate("n", "c", bad).await.is_err());
    let pool = i.pool("n").await.unwrap().unwrap();
    assert_eq!(pool.allocations().len(), 2, "{pool:?}");
    assert!(pool.allocations().values().all(|c| c == "b"));
    // 10.9.0.2..6 usable: b holds .3, so four more, then exhaustion.
    for c in ["c", "d", "e", "f"] {
        next(&i, c).await.unwrap();
    }
    assert!(matches!(
        next(&i, "g").await,
        Err(Error::PoolExhausted { .. })
    ));
    let b_holds = i.pool("n").await.unwrap().unwrap().allocations();
    let held = b_holds
        .iter()
        .filter(|(_, c)| *c == "b")
        .map(|(ip, _)| *ip)
        .collect();
    let recorded = RecordedPool {
        held: BTreeMap::from([("b".to_string(), held)]),
        ..RecordedPool::default()
    };
    let released = i.reconcile("n", &recorded).await.unwrap().released;
    assert_eq!(released.len(), 8, "c-f, both families: {released:?}");
    assert_eq!(i.pool("n").await.unwrap().unwrap().allocations().len(), 2);
    i.release_pool("n").await.unwrap();
    assert!(i.pool("n").await.unwrap().is_none());
    assert!(!i.dir().join("n.d").exists());
    let _ = std::fs::remove_dir_all(i.dir());
}

#[tokio::test]
async fn a_crowded_cursor_falls_back_to_listing_and_legacy_pools_are_moved_to_entries() {
    let i = ipam("crowd");
    i.reserve_pool("n", subnets(&["10.8.0.0/22"]))
        .await
        .unwrap();
    // 200 static addresses right where next-free starts looking.
    for n in 0..200u32 {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 8, 0, 2)) + n);
        let req = AddressRequest {
            v4: Some(ip),
            v6: None,
        };
        i.allocate("n", &format!("s{n}"), req).await.unwrap();
    }
    assert_eq!(next(&i, "x").await.unwrap()[0].to_string(), "10.8.0.202/22");

    // A pool file as an earlier berth wrote it: allocations inline.
    let mut legacy = read_json::<NetworkPool>(&i.dir().join("n.json"))
        .unwrap()
        .unwrap();
    legacy.subnets[0]
        .allocations
        .insert("10.8.3.3".parse().unwrap(), "old".into());
    legacy.subnets[0].last = Some("10.8.3.3".parse().unwrap());
    write_json(&i.dir().join("n.json"), &legacy).unwrap();
    assert_eq!(next(&i, "y").await.unwrap()[0].to_string(), "10.8.3.4/22");
    let pool = i.pool("n").await.unwrap().unwrap();
    assert_eq!(
        pool.allocations()
            .get(&"10.8.3.3".parse().unwrap())
            .unwrap(),
        "old"
    );
    assert_eq!(pool.allocations().len(), 203);
    let on_disk = read_json::<NetworkPool>(&i.dir().join("n.json"))
        .unwrap()
        .unwrap();
    assert!(on_disk.subnets[0].allocations.is_empty());
    let _ = std::fs::remove_dir_all(i.dir());
}

#[tokio::test]
async fn a_reverted_allocation_leaves_the_ipam_as_it_was() {
    let i = ipam("revert");
    i.reserve_pool("n", subnets(&["10.7.0.0/24"]))
        .await
        .unwrap();
    next(&i, "a").await.unwrap();
    let listing = |i: &FileIpam| {
        let mut v: Vec<(String, String)> = std::fs::read_dir(i.dir().join("n.d"))
            .unwrap()
            .flatten()
            .map(|e| {
                let p = e.path();
                let what = std::fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| std::fs::read_to_string(&p).unwrap());
                (e.file_name().into_string().unwrap(), what)
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(&i);
    let alloc = i
        .allocate("n", "b", AddressRequest::default())
        .await
        .unwrap();
    assert_eq!(alloc.claimed.len(), 1);
    assert_ne!(listing(&i), before);
    i.revert("n", "b", &alloc).await.unwrap();
    assert_eq!(
        listing(&i),
        before,
        "claim, holder entry and cursor are back"
    );
    assert_eq!(
        next(&i, "c").await.unwrap()[0].to_string(),
        "10.7.0.3/24",
        "the next container gets what b would have had"
    );
    let _ = std::fs::remove_dir_all(i.dir());
}

#[tokio::test]
async fn reconcile_rebuilds_a_lost_pool_and_lost_claims_and_reports_conflicts() {
    let i = ipam("reconcile");
    let info = i
        .reserve_pool("n", subnets(&["10.6.0.0/24"]))
        .await
        .unwrap();
    let a = next(&i, "a").await.unwrap()[0].addr();
    let b = next(&i, "b").await.unwrap()[0].addr();
    // An admin (or a bad disk) loses a's claim and corrupts the pool file.
    std::fs::remove_file(i.dir().join("n.d").join(a.to_string())).unwrap();
    std::fs::write(i.dir().join("n.json"), b"{ not json").unwrap();
    assert!(
        i.allocate("n", "x", AddressRequest::default())
            .await
            .is_err()
    );
    let recorded = RecordedPool {
        subnets: info,
        aux: BTreeMap::new(),
        held: BTreeMap::from([
            ("a".to_string(), vec![a]),
            ("b".to_string(), vec![b]),
            // A second record claiming b's address: a duplicate, reported.
            ("d".to_string(), vec![b]),
        ]),
    };
    let r = i.reconcile("n", &recorded).await.unwrap();
    assert!(
        matches!(&r.rebuilt, Some(Some(saved)) if saved.exists()),
        "the corrupt pool was saved and rebuilt: {r:?}"
    );
    assert_eq!(r.restored, vec![("a".to_string(), a)]);
    assert_eq!(r.conflicts.len(), 1, "{r:?}");
    assert_eq!(r.conflicts[0].address, b);
    // a's address is not handed out again.
    let req = AddressRequest {
        v4: match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        },
        v6: None,
    };
    assert!(matches!(
        i.allocate("n", "y", req).await,
        Err(Error::AddressInUse { container, .. }) if container == "a"
    ));
    let _ = std::fs::remove_dir_all(i.dir());
}
