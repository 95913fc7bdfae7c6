//! Per-endpoint bandwidth limits (issue 18, `pipework tc`), proven by bulk TCP transfers between
//! sandbox namespaces: a container on a bridge network and a peer container on the same
//! network, measured in each direction within ±15 % of the configured rate (goodput compared
//! with the rate less the Ethernet/IP/TCP headers of full-size segments), unlimited without
//! limits, changed in place, and nothing left in the kernel after detach (qdiscs, filters and
//! the ifb read back). Also: refused values and drivers (typed errors, nothing made), a failure
//! at the bandwidth step rolled back, and a `kill -9` there cleaned up by `gc` (through
//! netctl: build it first, `cargo build --examples`). And an overlay endpoint's limits across two
//! simulated hosts (etcd as the store, see `tests/overlay.rs`).

mod common;

use std::time::Duration;

use berth::bandwidth::{Bandwidth, RateLimit, RateLimitProblem};
use berth::netlink::Netlink;
use berth::netlink::tc::QdiscParent;
use berth::{Endpoint, Error, Network, Step};
use common::cluster::cluster;
use common::netctl::Netctl;
use common::rate::*;
use common::*;

/// The tests of this file run one at a time: a measured transfer shares the machine's two
/// cores with nothing of this binary (the other tests' netctl runs, gc, a second cluster),
/// so a starved sender or receiver does not pass for a limiter that is too tight.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn limits(ingress_mbit: u64, egress_mbit: u64) -> Bandwidth {
    Bandwidth {
        ingress: Some(RateLimit::new(ingress_mbit * 1_000_000, 64 * 1024)),
        egress: Some(RateLimit::new(egress_mbit * 1_000_000, 64 * 1024)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_each_way_change_in_place_and_leave_nothing_after_detach() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((mut sb, _outside, host)) = setup("bw-rate").await else {
        return;
    };
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let net = network(
        &host,
        Network::bridge("bw").subnet("10.77.0.0/24".parse().unwrap()),
    )
    .await;
    let a1 = join(
        &host,
        &net.name,
        Endpoint::new("c1", c1.clone()).bandwidth(limits(10, 10)),
    )
    .await;
    join(&host, &net.name, Endpoint::new("c2", c2.clone())).await;
    assert_eq!(a1.bandwidth, Some(limits(10, 10)));
    let ifb = a1.ifb.clone().expect("an ifb for the egress limit");
    assert!(link_names(sb.host()).await.contains(&ifb));
    assert_eq!(host.check("bw", "c1").await.unwrap(), Vec::<String>::new());
    let (c1_ip, c2_ip) = ("10.77.0.2", "10.77.0.3");
    let at = |ip: &str, port: u16| sa(&format!("{ip}:{port}"));

    // Attached with 10 mbit each way: c1 receives (from c2) and sends (to c2) at the rate.
    assert_rate(
        "ingress 10mbit (c2 -> c1)",
        &c1,
        &c2,
        c1_ip,
        5001,
        10_000_000,
    )
    .await;
    assert_rate(
        "egress 10mbit (c1 -> c2)",
        &c2,
        &c1,
        c2_ip,
        5002,
        10_000_000,
    )
    .await;

    // Changed in place: 20 mbit in, 8 mbit out.
    let a1 = host
        .set_bandwidth("bw", "c1", Some(limits(20, 8)))
        .await
        .unwrap();
    assert_eq!(a1.bandwidth, Some(limits(20, 8)));
    assert_eq!(a1.ifb.as_deref(), Some(ifb.as_str()));
    assert_eq!(host.check("bw", "c1").await.unwrap(), Vec::<String>::new());
    assert_rate(
        "ingress 20mbit after set_bandwidth",
        &c1,
        &c2,
        c1_ip,
        5003,
        20_000_000,
    )
    .await;
    assert_rate(
        "egress 8mbit after set_bandwidth",
        &c2,
        &c1,
        c2_ip,
        5004,
        8_000_000,
    )
    .await;

    // A refused value changes nothing.
    let bad = Bandwidth {
        ingress: Some(RateLimit::new(0, 65536)),
        egress: None,
    };
    assert!(matches!(
        host.set_bandwidth("bw", "c1", Some(bad)).await,
        Err(Error::InvalidRateLimit {
            problem: RateLimitProblem::ZeroRate,
            ..
        })
    ));
    assert_eq!(
        host.endpoints("bw").await.unwrap()[0].bandwidth,
        Some(limits(20, 8))
    );
    assert_eq!(host.check("bw", "c1").await.unwrap(), Vec::<String>::new());

    // check reports a qdisc removed behind berth's back.
    let nl = Netlink::open(sb.host()).await.unwrap();
    let dev = nl.require_link(&ifb).await.unwrap();
    assert!(
        nl.kernel()
            .del_qdisc(dev.index, &ifb, QdiscParent::Root)
            .await
            .unwrap()
    );
    let missing = host.check("bw", "c1").await.unwrap();
    println!("check after the ifb's tbf was removed: {missing:?}");
    assert!(
        missing
            .iter()
            .any(|m| m.contains("tbf") && m.contains(&ifb)),
        "{missing:?}"
    );
    // Setting it again repairs it.
    host.set_bandwidth("bw", "c1", Some(limits(20, 8)))
        .await
        .unwrap();
    assert_eq!(host.check("bw", "c1").await.unwrap(), Vec::<String>::new());

    // Removed in place: unlimited both ways, no ifb.
    let a1 = host.set_bandwidth("bw", "c1", None).await.unwrap();
    assert_eq!((a1.bandwidth, a1.ifb), (None, None));
    assert_eq!(tc_leftovers(sb.host()).await, Vec::<String>::new());
    assert_eq!(host.check("bw", "c1").await.unwrap(), Vec::<String>::new());
    let short = Duration::from_millis(200);
    let span = Duration::from_millis(800);
    let got = throughput(&c1, &c2, at(c1_ip, 5005), short, span).await;
    assert_unlimited("ingress without limits", got, 20_000_000);
    let got = throughput(&c2, &c1, at(c2_ip, 5006), short, span).await;
    assert_unlimited("egress without limits", got, 20_000_000);

    // Limits again, then detach: nothing of them is left.
    host.set_bandwidth("bw", "c1", Some(limits(10, 10)))
        .await
        .unwrap();
    assert!(!tc_leftovers(sb.host()).await.is_empty());
    host.detach("bw", "c1").await.unwrap();
    let left = tc_leftovers(sb.host()).await;
    println!("after detach: tc leftovers {left:?}");
    assert_eq!(left, Vec::<String>::new());
    assert!(!link_names(sb.host()).await.contains(&ifb));
    host.detach("bw", "c2").await.unwrap();
    host.delete_network("bw").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_values_and_drivers_make_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((mut sb, _outside, host)) = setup("bw-refuse").await else {
        return;
    };
    let c1 = sb.netns("c1").await.unwrap();
    network(
        &host,
        Network::bridge("bw").subnet("10.78.0.0/24".parse().unwrap()),
    )
    .await;
    // A macvlan parent: one end of a veth pair into a "lan" netns.
    sb.add_peer(
        "lan1",
        "lan1",
        "198.19.1.1/24".parse().unwrap(),
        "198.19.1.2/24".parse().unwrap(),
    )
    .await
    .unwrap();
    network(
        &host,
        Network::macvlan("mv")
            .parent("lan1".parse().unwrap())
            .subnet("10.79.0.0/24".parse().unwrap()),
    )
    .await;
    network(&host, Network::none("nn")).await;
    let before = link_names(sb.host()).await;
    let one = |l: RateLimit| Bandwidth {
        ingress: None,
        egress: Some(l),
    };
    let cases = [
        (one(RateLimit::new(0, 65536)), RateLimitProblem::ZeroRate),
        (
            one(RateLimit::new(10_000_000, 0)),
            RateLimitProblem::ZeroBurst,
        ),
        (
            one(RateLimit::new(10_000_000, 100)),
            RateLimitProblem::BurstBelowFrame { min: 1514 },
        ),
        (
            one(RateLimit::new(10_000_000, 1 << 30)),
            RateLimitProblem::BurstAboveCap {
                max: berth::bandwidth::MAX_BURST_BYTES,
            },
        ),
        (
            one(RateLimit::new(8, 64 << 20)),
            RateLimitProblem::Overflow { field: "buffer" },
        ),
    ];
    for (bw, want) in cases {
        let r = host
            .attach("bw", Endpoint::new("c1", c1.clone()).bandwidth(bw))
            .await;
        match r {
            Err(Error::InvalidRateLimit { problem, .. }) if problem == want => {
                println!("refused: {}", r.unwrap_err())
            }
            other => panic!("{bw:?}: expected {want:?}, got {other:?}"),
        }
    }
    for network in ["mv", "nn"] {
        let r = host
            .attach(
                network,
                Endpoint::new("c1", c1.clone()).bandwidth(limits(10, 10)),
            )
            .await;
        match r {
            Err(e @ Error::DriverUnsupported { .. }) => println!("refused on {network}: {e}"),
            other => panic!("{network}: {other:?}"),
        }
    }
    assert_eq!(
        link_names(sb.host()).await,
        before,
        "a refused attach made a link"
    );
    assert_eq!(link_names(&c1).await, vec!["lo".to_string()]);
    for network in ["bw", "mv", "nn"] {
        assert!(host.endpoints(network).await.unwrap().is_empty());
    }
    assert_eq!(tc_leftovers(sb.host()).await, Vec::<String>::new());
}

/// A failure right after the limits were put on rolls the attach back (ifb included); a
/// `kill -9` there leaves an unrecorded ifb that `gc` removes. Through netctl: its flags, the
/// usage error of an unpaired one, and the `bandwidth` command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_roll_back_and_gc_removes_a_dead_attachs_ifb() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some((mut sb, _outside, host)) = setup("bw-crash").await else {
        return;
    };
    let c1 = sb.netns("c1").await.unwrap();
    network(
        &host,
        Network::bridge("bw").subnet("10.80.0.0/24".parse().unwrap()),
    )
    .await;
    let before = link_names(sb.host()).await;

    let (faulty, fail_at) = faulty_host(&sb).await;
    *fail_at.lock().unwrap() = Some(Step::Bandwidth);
    let r = faulty
        .attach(
            "bw",
            Endpoint::new("c1", c1.clone()).bandwidth(limits(10, 10)),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Injected {
                step: Step::Bandwidth
            })
        ),
        "{r:?}"
    );
    assert_eq!(link_names(sb.host()).await, before);
    assert_eq!(tc_leftovers(sb.host()).await, Vec::<String>::new());
    *fail_at.lock().unwrap() = None;

    let nc = Netctl::new(&sb);
    let p1 = sb.netns_path("c1");
    let p1 = p1.to_str().unwrap();
    let e = nc.fails(
        2,
        &[
            "connect",
            "--netns",
            p1,
            "--ingress-rate",
            "10mbit",
            "bw",
            "c1",
        ],
    );
    assert!(e.contains("--ingress-burst"), "{e}");
    let e = nc.fails(
        1,
        &[
            "connect",
            "--netns",
            p1,
            "--egress-rate",
            "0mbit",
            "--egress-burst",
            "64kb",
            "bw",
            "c1",
        ],
    );
    assert!(e.starts_with("error: ") && e.contains("egress"), "{e}");
    let e = nc.fails(
        1,
        &[
            "connect",
            "--ingress-rate",
            "1mbit",
            "--ingress-burst",
            "64kb",
            "host",
            "h1",
        ],
    );
    assert!(e.contains("host") && e.contains("bandwidth"), "{e}");
    assert_eq!(link_names(sb.host()).await, before);

    // kill -9 right after the limits were put on: the ifb is there, unrecorded.
    let out = nc
        .command(&[
            "connect",
            "--netns",
            p1,
            "--egress-rate",
            "10mbit",
            "--egress-burst",
            "64kb",
            "bw",
            "c1",
        ])
        .env("BERTH_CRASH_AT", "bandwidth")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.signal() == Some(9) || out.status.code() == Some(137),
        "{:?}",
        out.status
    );
    let ifbs: Vec<String> = link_names(sb.host())
        .await
        .into_iter()
        .filter(|l| l.starts_with("bifb"))
        .collect();
    assert_eq!(ifbs.len(), 1, "the dead attach's ifb");
    let report = nc.json(&["gc"]);
    println!("gc after kill -9: {report}");
    assert_eq!(link_names(sb.host()).await, before);
    assert_eq!(tc_leftovers(sb.host()).await, Vec::<String>::new());

    // netctl connect with limits, changed with `bandwidth`, checked, disconnected.
    let att = nc.json(&[
        "connect",
        "--netns",
        p1,
        "--ingress-rate",
        "10mbit",
        "--ingress-burst",
        "64kb",
        "--egress-rate",
        "5mbit",
        "--egress-burst",
        "32kb",
        "bw",
        "c1",
    ]);
    assert_eq!(att["bandwidth"]["ingress"]["rate_bits_per_sec"], 10_000_000);
    assert_eq!(att["bandwidth"]["egress"]["burst_bytes"], 32 * 1024);
    nc.ok(&["check", "bw", "c1"]);
    let att = nc.json(&[
        "bandwidth",
        "--egress-rate",
        "20mbit",
        "--egress-burst",
        "64kb",
        "bw",
        "c1",
    ]);
    assert!(att["bandwidth"]["ingress"].is_null());
    assert_eq!(att["bandwidth"]["egress"]["rate_bits_per_sec"], 20_000_000);
    nc.ok(&["check", "bw", "c1"]);
    assert_eq!(
        host.endpoints("bw").await.unwrap()[0].bandwidth,
        Some(Bandwidth {
            ingress: None,
            egress: Some(RateLimit::new(20_000_000, 65536)),
        })
    );
    nc.ok(&["disconnect", "bw", "c1"]);
    assert_eq!(link_names(sb.host()).await, before);
    assert_eq!(tc_leftovers(sb.host()).await, Vec::<String>::new());
}

/// Bandwidth limits on an overlay endpoint hold across hosts (the same `tbf` and ifb on its
/// host-side veth end as on a bridge network), put on the live endpoint, measured in both
/// directions by bulk TCP transfers between containers on two hosts, and leave nothing on the
/// host after detach.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlay_limits_hold_across_hosts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(mut c) = cluster("ov-bw", 11, 2).await else {
        return;
    };
    let (_, eps) = c.one_per_host("10.200.11.0/24").await;
    let [(a_ns, a_ip), (b_ns, b_ip)] = [eps[0].clone(), eps[1].clone()];
    let (a_ip, b_ip) = (a_ip.to_string(), b_ip.to_string());
    // Put on the live endpoint h1c (the same step as an attach with limits).
    let limits = Bandwidth {
        ingress: Some(RateLimit::new(10_000_000, 64 * 1024)),
        egress: Some(RateLimit::new(8_000_000, 64 * 1024)),
    };
    let h1 = &c.hosts[0].host;
    h1.set_bandwidth("ov", "h1c", Some(limits)).await.unwrap();
    assert_rate(
        "overlay ingress 10mbit (h2c -> h1c)",
        &a_ns,
        &b_ns,
        &a_ip,
        5301,
        10_000_000,
    )
    .await;
    assert_rate(
        "overlay egress 8mbit (h1c -> h2c)",
        &b_ns,
        &a_ns,
        &b_ip,
        5302,
        8_000_000,
    )
    .await;
    assert_eq!(h1.check("ov", "h1c").await.unwrap(), Vec::<String>::new());
    h1.detach("ov", "h1c").await.unwrap();
    assert_eq!(tc_leftovers(&c.hosts[0].ns).await, Vec::<String>::new());
    c.hosts[1].host.detach("ov", "h2c").await.unwrap();
    drop(c);
}
