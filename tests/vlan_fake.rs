//! VLAN-tagged endpoints on the recording fake kernel ([`FakeNet`], which models bridge VLAN
//! filtering and port VLAN tables): the request sequence, and all-or-nothing when a step of a
//! VLAN attach fails — the steps the VM tier cannot make fail. No root: Host is given
//! distinct netns handles held by `unshare --user --net` children (killed by pid at the end),
//! with nothing configured in them (as in `tests/host_sequencing.rs`).

use std::sync::{Arc, Mutex};

use berth::netlink::fake::{Call, FakeNet};
use berth::netlink::{Netlink, PortVlan, VlanOp};
use berth::{Endpoint, Error, Host, Netns, Network, Step};

#[path = "common/unshared.rs"]
mod unshared;
use unshared::{Children, HostDir, spawn_netns};

struct Rig {
    fake: FakeNet,
    host: Host,
    nl: Netlink,
    c: Vec<Netns>,
    fail: Arc<Mutex<Option<Step>>>,
    _dir: HostDir,
    _children: Children,
}

async fn rig(test: &str) -> Option<Rig> {
    let mut children = Children::default();
    let mut ns = Vec::new();
    for _ in 0..4 {
        match spawn_netns(&mut children) {
            Ok(n) => ns.push(n),
            Err(e) => {
                println!("SKIPPED: {test}: no unprivileged network namespace here ({e})");
                return None;
            }
        }
    }
    let fake = FakeNet::new();
    fake.bind("host", &ns[0]);
    for (i, c) in ns[1..].iter().enumerate() {
        fake.bind(&format!("c{}", i + 1), c);
    }
    fake.add_ether("host", "lan0");
    let dir = HostDir::new(&format!("vlan-fake-{test}"));
    let fail: Arc<Mutex<Option<Step>>> = Arc::default();
    let f = fail.clone();
    let host = dir
        .builder(ns[0].clone(), &fake)
        .fault_hook(Arc::new(move |step| match *f.lock().unwrap() {
            Some(s) if s == step => Err(Error::Injected { step }),
            _ => Ok(()),
        }))
        .build()
        .await
        .expect("host over the fake");
    Some(Rig {
        nl: fake.handle("host"),
        fake,
        host,
        c: ns[1..].to_vec(),
        fail,
        _dir: dir,
        _children: children,
    })
}

impl Rig {
    async fn vlans(&self, name: &str) -> Vec<PortVlan> {
        let l = self.nl.require_link(name).await.unwrap();
        self.nl.port_vlans(l.index).await.unwrap()
    }

    async fn filtering(&self) -> bool {
        let b = self.nl.require_link("br-v").await.unwrap();
        self.nl.vlan_filtering(b.index).await.unwrap().unwrap().on
    }

    fn links(&self) -> Vec<String> {
        self.fake
            .links("host")
            .into_iter()
            .map(|l| l.info.name)
            .collect()
    }
}

fn spec() -> berth::NetworkSpec<berth::BridgeOptions> {
    Network::bridge("v")
        .bridge_name("br-v")
        .subnet("10.60.0.0/24".parse().unwrap())
        .trunk("lan0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vlan_attach_is_all_or_nothing_at_every_step() {
    let Some(r) = rig("steps").await else {
        return;
    };
    let n = r.host.create_network(spec()).await.unwrap();
    assert_eq!(r.vlans("lan0").await, vec![PortVlan::access(1)]);
    r.fake.clear_log();
    let a = r
        .host
        .attach(&n, Endpoint::new("c1", r.c[0].clone()).vlan(10))
        .await
        .unwrap();
    let port = a.host_ifname.clone().unwrap();
    // The requests, in order: filtering on, the access VLAN, the default VLAN off the port,
    // the VLAN tagged on the trunk.
    let vlan_calls: Vec<Call> = r
        .fake
        .changes_in("host")
        .into_iter()
        .filter(|c| matches!(c, Call::SetVlanFiltering(..) | Call::PortVlan(..)))
        .collect();
    assert_eq!(vlan_calls.len(), 4, "{vlan_calls:#?}");
    assert!(matches!(vlan_calls[0], Call::SetVlanFiltering(_, true)));
    assert!(
        matches!(&vlan_calls[1], Call::PortVlan(VlanOp::Add, q) if q.name == port && q.vlan == PortVlan::access(10))
    );
    assert!(
        matches!(&vlan_calls[2], Call::PortVlan(VlanOp::Delete, q) if q.name == port && q.vlan.vid == 1)
    );
    assert!(
        matches!(&vlan_calls[3], Call::PortVlan(VlanOp::Add, q) if q.name == "lan0" && q.vlan == PortVlan::tagged(10))
    );
    assert_eq!(r.vlans(&port).await, vec![PortVlan::access(10)]);
    assert!(r.host.check(&n, "c1").await.unwrap().is_empty());

    // A second VLAN's attach failing after the driver, or at the record: nothing of it stays.
    let before = (r.links(), r.vlans("lan0").await);
    for step in [Step::DriverAttach, Step::PersistEndpoint] {
        *r.fail.lock().unwrap() = Some(step);
        let e = r
            .host
            .attach(&n, Endpoint::new("c2", r.c[1].clone()).vlan(20))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Injected { .. }), "{step}: {e:?}");
        assert_eq!((r.links(), r.vlans("lan0").await), before, "{step}");
        assert!(r.filtering().await, "c1 keeps filtering on");
    }
    *r.fail.lock().unwrap() = None;

    // The first VLAN endpoint's attach failing at the trunk: filtering goes back off.
    r.host.detach(&n, "c1").await.unwrap();
    assert!(!r.filtering().await, "no VLAN endpoint left");
    assert_eq!(r.vlans("lan0").await, vec![PortVlan::access(1)]);
    let before = r.links();
    r.fake.fail_nth(
        1,
        |_, c| matches!(c, Call::PortVlan(VlanOp::Add, q) if q.name == "lan0"),
        libc::ENOBUFS,
    );
    let e = r
        .host
        .attach(&n, Endpoint::new("c3", r.c[2].clone()).vlan(30))
        .await
        .unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOBUFS), "{e}");
    assert_eq!(r.links(), before);
    assert!(!r.filtering().await, "turned back off");
    assert_eq!(r.vlans("lan0").await, vec![PortVlan::access(1)]);
    r.host.delete_network(&n).await.unwrap();
    let lan0 = r.nl.require_link("lan0").await.unwrap();
    assert_eq!(lan0.controller, None, "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_vlan_filtering_the_attach_changes_nothing() {
    let Some(r) = rig("none").await else {
        return;
    };
    let n = r.host.create_network(spec()).await.unwrap();
    r.fake.without_vlan_filtering();
    r.fake.clear_log();
    let e = r
        .host
        .attach(&n, Endpoint::new("c1", r.c[0].clone()).vlan(10))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    let changes: Vec<Call> = r
        .fake
        .log()
        .into_iter()
        .filter(|x| !x.call.is_read())
        .map(|x| x.call)
        .collect();
    assert!(changes.is_empty(), "{changes:#?}");
    assert!(r.host.endpoints(&n).await.unwrap().is_empty());
}
