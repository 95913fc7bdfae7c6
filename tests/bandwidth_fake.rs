//! Bandwidth limits on the recording fake kernel ([`FakeNet`]), no root: which tc requests an
//! attach with limits makes and in which order, what detach removes, and that a kernel failure
//! half-way (attach or `set_bandwidth`) leaves things as they were.
//!
//! As in `host_sequencing.rs`, container netns handles are real namespaces held by child
//! processes (`unshare --user --map-root-user --net sleep 600`, killed by pid at the end), bound
//! to fake namespaces; where unprivileged user namespaces are not allowed the tests print
//! `SKIPPED: …` and pass.

use berth::bandwidth::{Bandwidth, RateLimit};
use berth::netlink::fake::{Call, FakeNet};
use berth::netlink::tc::{QdiscKind, QdiscParent, TcCall};
use berth::{Endpoint, Error, Host, Netns, Network, link_marks};

#[path = "common/unshared.rs"]
mod unshared;
use unshared::{Children, HostDir, spawn_netns};

struct Rig {
    fake: FakeNet,
    host: Host,
    c1: Netns,
    _dir: HostDir,
    _children: Children,
}

async fn rig() -> Option<Rig> {
    let mut children = Children::default();
    let (host_ns, c1) = match (spawn_netns(&mut children), spawn_netns(&mut children)) {
        (Ok(h), Ok(c)) => (h, c),
        (Err(e), _) | (_, Err(e)) => {
            println!("SKIPPED: no unprivileged network namespace: {e}");
            return None;
        }
    };
    let fake = FakeNet::new();
    fake.bind("host", &host_ns);
    fake.bind("c1", &c1);
    let dir = HostDir::new("bandwidth-fake");
    let host = dir
        .builder(host_ns, &fake)
        .build()
        .await
        .expect("host over the fake");
    host.create_network(Network::bridge("bw").subnet("10.77.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    Some(Rig {
        fake,
        host,
        c1,
        _dir: dir,
        _children: children,
    })
}

fn limits(ingress_mbit: u64, egress_mbit: u64) -> Bandwidth {
    Bandwidth {
        ingress: Some(RateLimit::new(ingress_mbit * 1_000_000, 64 * 1024)),
        egress: Some(RateLimit::new(egress_mbit * 1_000_000, 64 * 1024)),
    }
}

/// The tc changes made in the fake host namespace, in order.
fn tc_changes(fake: &FakeNet) -> Vec<TcCall> {
    fake.changes_in("host")
        .into_iter()
        .filter_map(|c| match c {
            Call::Tc(t) if !t.is_read() => Some(t),
            _ => None,
        })
        .collect()
}

fn link_names(fake: &FakeNet) -> Vec<String> {
    let mut v: Vec<String> = fake
        .links("host")
        .into_iter()
        .map(|l| l.info.name)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn attach_puts_a_tbf_on_the_host_end_and_redirects_to_a_shaped_ifb() {
    let Some(r) = rig().await else { return };
    r.fake.clear_log();
    let att = r
        .host
        .attach(
            "bw",
            Endpoint::new("c1", r.c1.clone()).bandwidth(limits(10, 5)),
        )
        .await
        .unwrap();
    let veth = r
        .fake
        .link("host", att.host_ifname.as_deref().unwrap())
        .unwrap();
    let ifb_name = att.ifb.clone().unwrap();
    let ifb = r.fake.link("host", &ifb_name).unwrap();
    assert_eq!(ifb.info.group, link_marks::IFB);
    assert!(ifb.info.up);
    let calls = tc_changes(&r.fake);
    let tbf = |mbit: u64| {
        RateLimit::new(mbit * 1_000_000, 65536)
            .tbf(berth::bandwidth::Direction::Ingress, Some(1500))
            .unwrap()
    };
    let kinds: Vec<String> = calls
        .iter()
        .map(|c| match c {
            TcCall::AddIfb { name, group } => {
                assert_eq!((name, *group), (&ifb_name, link_marks::IFB));
                "ifb".to_string()
            }
            TcCall::ReplaceQdisc(q) => match q.kind {
                QdiscKind::Tbf(p) if q.index == veth.info.index => {
                    assert_eq!(p, tbf(10));
                    "tbf on veth".into()
                }
                QdiscKind::Tbf(p) if q.index == ifb.info.index => {
                    assert_eq!(p, tbf(5));
                    "tbf on ifb".into()
                }
                QdiscKind::Ingress if q.index == veth.info.index => "ingress on veth".into(),
                _ => panic!("{q:?}"),
            },
            TcCall::AddRedirect(f) => {
                assert_eq!((f.index, f.to), (veth.info.index, ifb.info.index));
                "redirect".into()
            }
            TcCall::DelQdisc { index, parent } => format!("del {parent:?} on {index}"),
            other => panic!("{other:?}"),
        })
        .collect();
    // The ifb is shaped before anything is redirected to it.
    assert_eq!(
        kinds,
        [
            "tbf on veth",
            "ifb",
            "tbf on ifb",
            &format!("del {:?} on {}", QdiscParent::Ingress, veth.info.index),
            "ingress on veth",
            "redirect"
        ]
    );
    assert_eq!(
        r.host.check("bw", "c1").await.unwrap(),
        Vec::<String>::new()
    );

    // Detach removes the ifb; the veth's qdiscs go with the veth.
    r.host.detach("bw", "c1").await.unwrap();
    assert!(r.fake.link("host", &ifb_name).is_none());
    assert!(r.fake.link("host", &veth.info.name).is_none());
}

#[tokio::test]
async fn a_kernel_failure_half_way_leaves_nothing_or_the_old_limits() {
    let Some(r) = rig().await else { return };
    let before = link_names(&r.fake);
    // The redirect fails: the attach is undone, ifb and veth included.
    r.fake.fail_nth(
        1,
        |_, c| matches!(c, Call::Tc(TcCall::AddRedirect(_))),
        libc::ENOMEM,
    );
    let e = r
        .host
        .attach(
            "bw",
            Endpoint::new("c1", r.c1.clone()).bandwidth(limits(10, 5)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Netlink { .. }), "{e}");
    assert_eq!(link_names(&r.fake), before);
    assert!(r.host.endpoints("bw").await.unwrap().is_empty());

    // On a live endpoint: a failure while changing puts the old limits back.
    let att = r
        .host
        .attach(
            "bw",
            Endpoint::new("c1", r.c1.clone()).bandwidth(limits(10, 5)),
        )
        .await
        .unwrap();
    r.fake.fail_nth(
        1,
        |_, c| matches!(c, Call::Tc(TcCall::ReplaceQdisc(q)) if matches!(q.kind, QdiscKind::Tbf(_))),
        libc::ENOMEM,
    );
    // Only ingress now: the first tbf replace (the host end's) fails.
    let only_in = Bandwidth {
        ingress: Some(RateLimit::new(20_000_000, 65536)),
        egress: None,
    };
    assert!(
        r.host
            .set_bandwidth("bw", "c1", Some(only_in))
            .await
            .is_err()
    );
    let now = r.host.endpoints("bw").await.unwrap().remove(0);
    assert_eq!(now, att);
    assert_eq!(
        r.host.check("bw", "c1").await.unwrap(),
        Vec::<String>::new()
    );

    // Removing the egress limit removes the redirect before the ifb.
    r.fake.clear_log();
    let after = r
        .host
        .set_bandwidth("bw", "c1", Some(only_in))
        .await
        .unwrap();
    assert_eq!(after.ifb, None);
    let calls = tc_changes(&r.fake);
    assert!(
        matches!(
            calls.last(),
            Some(TcCall::DelQdisc {
                parent: QdiscParent::Ingress,
                ..
            })
        ),
        "{calls:?}"
    );
    let ifb = att.ifb.clone().unwrap();
    let log = r.fake.changes_in("host");
    let unredirected = log.iter().position(|c| {
        matches!(
            c,
            Call::Tc(TcCall::DelQdisc {
                parent: QdiscParent::Ingress,
                ..
            })
        )
    });
    let ifb_gone = log
        .iter()
        .position(|c| matches!(c, Call::DeleteLink(n) if *n == ifb));
    assert!(unredirected.unwrap() < ifb_gone.unwrap(), "{log:?}");
    assert!(r.fake.link("host", &ifb).is_none());
    assert_eq!(
        r.host.check("bw", "c1").await.unwrap(),
        Vec::<String>::new()
    );
}
