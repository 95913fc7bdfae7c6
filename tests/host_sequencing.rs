//! Host's sequencing (validate → lock → IPAM → driver → firewall → persist, undone in reverse
//! on failure) on the recording fake kernel ([`FakeNet`]): no root, no configured namespace.
//!
//! Host refuses a container netns that is not a real, distinct network namespace handle, so
//! each test holds a few: child processes `unshare --user --map-root-user --net sleep 600`
//! (killed by pid when the test ends), whose `/proc/PID/ns/net` are bound to fake namespaces.
//! Nothing is configured in them: every kernel request goes to the fake. Where unprivileged
//! user namespaces are not allowed, the tests print `SKIPPED: …` and pass.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use berth::netlink::fake::{Call, FakeNet, Recorded};
use berth::netlink::kernel::{LinkChange, LinkRequest, LinkState, SetLink};
use berth::netlink::{RouteOp, RouteRequest};
use berth::{Endpoint, Error, Host, Netns, Network, Step, link_marks};

// ---------------------------------------------------------------------------------------------
// Namespaces, a Host over the fake, snapshots.

#[path = "common/unshared.rs"]
mod unshared;
use unshared::{Children, HostDir, spawn_netns};

/// Which steps ran (`seen`), and which to make fail (`fail`).
#[derive(Debug, Default)]
struct Faults {
    seen: Vec<Step>,
    fail: Vec<Step>,
}

/// A Host over a FakeNet: its netns is fake namespace "host", containers are "c1", "c2" …
struct Rig {
    fake: FakeNet,
    host: Host,
    containers: Vec<Netns>,
    faults: Arc<Mutex<Faults>>,
    dir: HostDir,
    _children: Children,
}

/// A rig with `n` container namespaces; `None` (after printing `SKIPPED: …`) when namespaces
/// cannot be made here.
async fn rig(n: usize) -> Option<Rig> {
    let mut children = Children::default();
    let mut spawn = || match spawn_netns(&mut children) {
        Ok(ns) => Some(ns),
        Err(e) => {
            println!("SKIPPED: no unprivileged network namespace: {e}");
            None
        }
    };
    let host_ns = spawn()?;
    let mut containers = Vec::new();
    for _ in 0..n {
        containers.push(spawn()?);
    }
    let fake = FakeNet::new();
    fake.bind("host", &host_ns);
    for (i, c) in containers.iter().enumerate() {
        fake.bind(&format!("c{}", i + 1), c);
    }
    let dir = HostDir::new("host-sequencing");
    let faults: Arc<Mutex<Faults>> = Arc::default();
    let f = faults.clone();
    let host = dir
        .builder(host_ns, &fake)
        .fault_hook(Arc::new(move |step| {
            let mut f = f.lock().unwrap();
            f.seen.push(step);
            if f.fail.contains(&step) {
                Err(Error::Injected { step })
            } else {
                Ok(())
            }
        }))
        .build()
        .await
        .expect("host over the fake");
    Some(Rig {
        fake,
        host,
        containers,
        faults,
        dir,
        _children: children,
    })
}

impl Rig {
    fn container(&self, i: usize) -> Netns {
        self.containers[i - 1].clone()
    }

    /// Starts recording the steps of the next operation, failing at `fail`.
    fn arm(&self, fail: &[Step]) {
        let mut f = self.faults.lock().unwrap();
        f.seen.clear();
        f.fail = fail.to_vec();
    }

    fn seen(&self) -> Vec<Step> {
        self.faults.lock().unwrap().seen.clone()
    }

    /// Links, addresses and routes of the fake namespaces `labels`.
    fn kernel(&self, labels: &[&str]) -> String {
        labels
            .iter()
            .map(|l| {
                format!(
                    "[{l}]\nlinks {:#?}\naddresses {:?}\nroutes {:#?}\n",
                    self.fake.links(l),
                    self.fake.addresses(l),
                    self.fake.routes(l)
                )
            })
            .collect()
    }

    /// Every file of the state dir, with its contents (lock files aside).
    fn files(&self) -> BTreeMap<String, String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                // `seen/` (the highest address handed out) only ever moves up, by design: an
                // address a failed attach held counts as handed out (it may have been cached).
                if rel.starts_with("seen") {
                    continue;
                }
                if p.is_dir() {
                    out.insert(format!("{rel}/"), String::new());
                    walk(root, &p, out);
                } else if e.file_name() != "lock" {
                    let text = std::fs::read(&p).unwrap_or_default();
                    out.insert(rel, String::from_utf8_lossy(&text).into_owned());
                }
            }
        }
        let root = self.dir.path().join("state");
        let mut out = BTreeMap::new();
        walk(&root, &root, &mut out);
        out
    }

    fn link_names(&self, label: &str) -> Vec<String> {
        self.fake
            .links(label)
            .into_iter()
            .map(|l| l.info.name)
            .collect()
    }
}

fn web() -> berth::NetworkSpec<berth::BridgeOptions> {
    Network::bridge("web").subnet("10.91.0.0/24".parse().unwrap())
}

// ---------------------------------------------------------------------------------------------
// 1. The journal's undo order.

/// What a change does, as a key shared with what undoes it: a link added (undone by deleting
/// it) or a link set up (undone by setting it down).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    Link(String, String),
    Up(String, String),
}

/// The do-effects and undo-effects of `log`, in order (injected failures left out).
fn effects(log: &[Recorded]) -> (Vec<Effect>, Vec<Effect>) {
    let (mut done, mut undone) = (Vec::new(), Vec::new());
    for r in log.iter().filter(|r| !r.failed) {
        let ns = r.ns.clone();
        match &r.call {
            Call::AddLink(req) => done.push(Effect::Link(ns, req.name().into())),
            Call::DeleteLink(name) => undone.push(Effect::Link(ns, name.clone())),
            Call::SetLink(LinkChange::Set(SetLink {
                name,
                state: Some(s),
                ..
            })) => {
                // Bringing up an interface born with its veth is part of adding it.
                let born_here = log.iter().any(|x| {
                    matches!(&x.call, Call::AddLink(LinkRequest::Veth(v)) if v.peer_name == *name)
                });
                let e = Effect::Up(ns, name.clone());
                match s {
                    LinkState::Up if !born_here => done.push(e),
                    LinkState::Down => undone.push(e),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    (done, undone)
}

/// Runs `op` once without faults to learn its steps (then `reset` undoes it), then once failing
/// at each step: the error is the injected one, links, addresses and routes of `labels` and the
/// state dir (records, IPAM claims and cursors) are as before the failed run, and the undo calls
/// undo the do calls in reverse order.
async fn fail_at_every_step<Op, Reset, Fut, Fut2>(
    rig: &Rig,
    labels: &[&str],
    what: &str,
    op: Op,
    reset: Reset,
) -> Vec<Step>
where
    Op: Fn() -> Fut,
    Fut: std::future::Future<Output = berth::Result<()>>,
    Reset: Fn() -> Fut2,
    Fut2: std::future::Future<Output = ()>,
{
    rig.arm(&[]);
    op().await
        .unwrap_or_else(|e| panic!("{what} without faults: {e}"));
    let steps = rig.seen();
    assert!(!steps.is_empty(), "{what} ran no step");
    reset().await;
    for &step in &steps {
        let files_before = rig.files();
        let kernel_before = rig.kernel(labels);
        rig.arm(&[step]);
        rig.fake.clear_log();
        let e = op().await.expect_err(&format!("{what} failing at {step}"));
        assert!(
            matches!(e, Error::Injected { step: s } if s == step),
            "{what} failing at {step} returned {e:?}, not the injected error"
        );
        assert_eq!(
            rig.seen().last(),
            Some(&step),
            "{what}: no step after the failing one"
        );
        assert_eq!(
            rig.kernel(labels),
            kernel_before,
            "{what} failing at {step}: the fake kernel is not as before"
        );
        assert_eq!(
            rig.files(),
            files_before,
            "{what} failing at {step}: the state dir is not as before"
        );
        let (done, undone) = effects(&rig.fake.log());
        let mut expected = done.clone();
        expected.reverse();
        assert_eq!(
            undone, expected,
            "{what} failing at {step}: the undo calls are not the do calls in reverse \
             (done: {done:?})"
        );
    }
    rig.arm(&[]);
    steps
}

#[tokio::test]
async fn a_failed_create_network_is_undone_in_reverse_whatever_step_fails() {
    let Some(rig) = rig(0).await else { return };
    let steps = fail_at_every_step(
        &rig,
        &["host"],
        "create_network",
        || async { rig.host.create_network(web()).await.map(drop) },
        || async { rig.host.delete_network("web").await.unwrap() },
    )
    .await;
    assert_eq!(
        steps,
        [
            Step::IpamReserve,
            Step::DriverCreate,
            Step::FirewallNetwork,
            Step::PersistNetwork
        ]
    );
    assert!(rig.host.state().network("web").unwrap().is_none());
    assert_eq!(rig.link_names("host"), ["lo"]);
    // The bridge was made, then removed, in every run that got past the driver.
    let log = rig.fake.log();
    let added: Vec<_> = log
        .iter()
        .filter_map(|r| match &r.call {
            Call::AddLink(LinkRequest::Bridge { name, .. }) => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(added.len(), 1, "the last run made one bridge: {added:?}");
    assert!(
        log.iter()
            .any(|r| matches!(&r.call, Call::DeleteLink(n) if *n == added[0]))
    );
}

#[tokio::test]
async fn a_failed_attach_is_undone_in_reverse_whatever_step_fails() {
    let Some(rig) = rig(1).await else { return };
    rig.host.create_network(web()).await.unwrap();
    let c1 = rig.container(1);
    let steps = fail_at_every_step(
        &rig,
        &["host", "c1"],
        "attach",
        || async {
            rig.host
                .attach("web", Endpoint::new("c1", c1.clone()).alias("svc"))
                .await
                .map(drop)
        },
        || async {
            rig.host.detach("web", "c1").await.unwrap();
            // Detach leaves `lo` up (the container may use it): put it back as it was.
            let nl = rig.fake.handle("c1");
            let lo = nl.require_link("lo").await.unwrap();
            nl.link().set(lo.index, "lo").down().apply().await.unwrap();
        },
    )
    .await;
    assert_eq!(
        steps,
        [
            Step::IpamAllocate,
            Step::DriverAttach,
            Step::RecordEndpoint,
            Step::PersistEndpoint
        ]
    );
    // The run failing at the last step made the veth (and `lo` up) and undid both, veth first.
    let log = rig.fake.log();
    let (done, undone) = effects(&log);
    assert!(
        matches!(&done[..], [Effect::Up(c, lo), Effect::Link(h, _)] if c == "c1" && lo == "lo" && h == "host"),
        "{done:?}"
    );
    assert_eq!(undone.len(), 2);
    assert!(rig.host.state().endpoint("web", "c1").unwrap().is_none());
    assert!(rig.host.state().sandbox("c1").unwrap().is_none());
    assert_eq!(rig.link_names("c1"), ["lo"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Default-route election and hand-over.

/// The default IPv4 routes of fake namespace `label`: (gateway, name of the output link).
fn default_routes(fake: &FakeNet, label: &str) -> Vec<(Option<IpAddr>, Option<String>)> {
    let links = fake.links(label);
    fake.routes(label)
        .into_iter()
        .filter(|r| r.dst.is_none() && r.prefix_len == 0 && r.family == berth::netlink::Family::V4)
        .map(|r| {
            let dev = r.oif.and_then(|i| {
                links
                    .iter()
                    .find(|l| l.info.index == i)
                    .map(|l| l.info.name.clone())
            });
            (r.gateway, dev)
        })
        .collect()
}

#[tokio::test]
async fn the_default_route_goes_to_the_highest_priority_and_is_handed_over_on_detach() {
    let Some(rig) = rig(2).await else { return };
    let low = rig
        .host
        .create_network(Network::bridge("low").subnet("10.92.1.0/24".parse().unwrap()))
        .await
        .unwrap();
    let high = rig
        .host
        .create_network(Network::bridge("high").subnet("10.92.2.0/24".parse().unwrap()))
        .await
        .unwrap();
    let gw_low = low.subnet4().unwrap().gateway;
    let gw_high = high.subnet4().unwrap().gateway;
    let via_low = vec![(Some(gw_low), Some("eth-low".to_string()))];
    let via_high = vec![(Some(gw_high), Some("eth-high".to_string()))];
    let ep = |c: &str, i: usize, net: &str, prio: i32| {
        Endpoint::new(c, rig.container(i))
            .ifname(format!("eth-{net}"))
            .gw_priority(prio)
    };
    // c1: the low-priority network first, then the high one takes the route over.
    rig.host.attach("low", ep("c1", 1, "low", 1)).await.unwrap();
    assert_eq!(default_routes(&rig.fake, "c1"), via_low);
    rig.host
        .attach("high", ep("c1", 1, "high", 10))
        .await
        .unwrap();
    assert_eq!(default_routes(&rig.fake, "c1"), via_high, "c1: high won");
    // c2: the high-priority network first; the low one does not take the route.
    rig.host
        .attach("high", ep("c2", 2, "high", 10))
        .await
        .unwrap();
    rig.host.attach("low", ep("c2", 2, "low", 1)).await.unwrap();
    assert_eq!(default_routes(&rig.fake, "c2"), via_high, "c2: high kept");
    // Detaching the holder hands the route to the other network, by a replace.
    for (label, c) in [("c1", "c1"), ("c2", "c2")] {
        rig.fake.clear_log();
        rig.host.detach("high", c).await.unwrap();
        assert_eq!(
            default_routes(&rig.fake, label),
            via_low,
            "{c}: handed over"
        );
        let eth_low = rig.fake.link(label, "eth-low").unwrap().info.index;
        let replaces: Vec<_> = rig
            .fake
            .changes_in(label)
            .into_iter()
            .filter(|c| matches!(c, Call::Route(..)))
            .collect();
        assert!(
            matches!(&replaces[..], [Call::Route(RouteOp::Replace, RouteRequest::DefaultVia { gateway, dev: Some(d) })] if *gateway == gw_low && *d == eth_low),
            "{c}: the hand-over is one replace via the low gateway: {replaces:?}"
        );
        // And the last network leaves no default route behind.
        rig.host.detach("low", c).await.unwrap();
        assert_eq!(default_routes(&rig.fake, label), []);
        assert_eq!(rig.link_names(label), ["lo"]);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Detach collects every error.

#[tokio::test]
async fn detach_reports_every_failed_step_keeps_the_record_and_a_retry_finishes() {
    let Some(rig) = rig(1).await else { return };
    rig.host.create_network(web()).await.unwrap();
    let host_before = rig.kernel(&["host"]);
    let files_before = rig.files();
    let att = rig
        .host
        .attach("web", Endpoint::new("c1", rig.container(1)))
        .await
        .unwrap();
    let veth = att.host_ifname.clone().unwrap();
    let v = veth.clone();
    rig.fake.fail_nth(
        1,
        move |ns, c| ns == "host" && matches!(c, Call::DeleteLink(n) if *n == v),
        libc::EBUSY,
    );
    rig.arm(&[Step::DetachIpam]);
    let e = rig.host.detach("web", "c1").await.unwrap_err();
    let Error::Detach { errors, .. } = &e else {
        panic!("not Error::Detach: {e:?}")
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].errno(), Some(libc::EBUSY), "{errors:?}");
    assert!(
        matches!(
            errors[1],
            Error::Injected {
                step: Step::DetachIpam
            }
        ),
        "{errors:?}"
    );
    // Every step still ran.
    let seen = rig.seen();
    for s in [Step::DetachDriver, Step::DetachConntrack, Step::DetachIpam] {
        assert!(seen.contains(&s), "{s} did not run: {seen:?}");
    }
    assert!(!seen.contains(&Step::DetachRecord));
    assert!(rig.host.state().endpoint("web", "c1").unwrap().is_some());
    assert!(rig.fake.link("host", &veth).is_some(), "the veth stays");
    // A retry without faults finishes: nothing of the endpoint is left.
    rig.arm(&[]);
    rig.host.detach("web", "c1").await.unwrap();
    assert!(rig.host.state().endpoint("web", "c1").unwrap().is_none());
    assert_eq!(rig.kernel(&["host"]), host_before);
    assert_eq!(rig.link_names("c1"), ["lo"]);
    assert_eq!(rig.fake.routes("c1"), []);
    // The IPAM's round-robin cursor (`~SUBNET`) stays where the attach moved it, by design.
    let records = |files: BTreeMap<String, String>| {
        files
            .into_iter()
            .filter(|(k, _)| !k.rsplit('/').next().unwrap().starts_with('~'))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(records(rig.files()), records(files_before));
}

// ---------------------------------------------------------------------------------------------
// 4. gc's decisions about links.

#[tokio::test]
async fn gc_removes_exactly_the_links_no_record_keeps_and_berth_made() {
    let Some(rig) = rig(2).await else { return };
    let net = rig.host.create_network(web()).await.unwrap();
    let bridge = net.device.clone().unwrap();
    let att = rig
        .host
        .attach("web", Endpoint::new("c1", rig.container(1)))
        .await
        .unwrap();
    let live_veth = att.host_ifname.clone().unwrap();
    let nl = rig.fake.handle("host");
    let c2 = rig.container(2);
    let br = nl.require_link(&bridge).await.unwrap();
    // berth's, no record: a bridge (a dead create) and a port (a dead attach).
    nl.link().bridge("br-dead").add().await.unwrap();
    nl.link()
        .veth("veth-dead")
        .group(link_marks::PORT)
        .peer_in("dead0", &c2)
        .add()
        .await
        .unwrap();
    // Unmarked but on berth's bridge, no record: a port made by an older berth.
    nl.link()
        .veth("veth-stray")
        .master(br.index)
        .peer_in("stray0", &c2)
        .add()
        .await
        .unwrap();
    // The admin's: an uplink, and a bridge of theirs with an unmarked port.
    rig.fake.add_ether("host", "eth0");
    let admin = nl.link().bridge("br-admin").add().await.unwrap();
    nl.link()
        .set(admin.index, "br-admin")
        .group(0)
        .apply()
        .await
        .unwrap();
    nl.link()
        .veth("veth-admin")
        .master(admin.index)
        .peer_in("admin0", &c2)
        .add()
        .await
        .unwrap();
    rig.fake.clear_log();

    let report = rig.host.gc(&["c1"]).await.unwrap();
    let mut removed = report.links_removed.clone();
    removed.sort();
    assert_eq!(removed, ["br-dead", "veth-dead", "veth-stray"]);
    assert_eq!(
        report,
        berth::host::GcReport {
            links_removed: report.links_removed.clone(),
            ..Default::default()
        },
        "gc did nothing else"
    );
    let mut left = rig.link_names("host");
    left.sort();
    let mut expected = vec![
        "br-admin".to_string(),
        bridge,
        "eth0".into(),
        "lo".into(),
        live_veth,
        "veth-admin".into(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    // The peers of removed veths went with them; the admin's stayed.
    assert_eq!(rig.link_names("c2"), ["lo", "admin0"]);
    assert_eq!(rig.link_names("c1"), ["lo", "eth0"]);
    // Exactly the reported links were deleted.
    let mut deleted: Vec<String> = rig
        .fake
        .changes_in("host")
        .into_iter()
        .filter_map(|c| match c {
            Call::DeleteLink(n) => Some(n),
            _ => None,
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, removed);
    assert!(rig.host.state().endpoint("web", "c1").unwrap().is_some());
}
