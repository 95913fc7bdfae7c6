//! Per-endpoint bandwidth limits (issue 18, `pipework tc`), proven by bulk TCP transfers between
//! sandbox namespaces: a container on a bridge network and a peer container on the same
//! network, measured in each direction within ±15 % of the configured rate (goodput compared
//! with the rate less the Ethernet/IP/TCP headers of full-size segments), unlimited without
//! limits, changed in place, and nothing left in the kernel after detach (qdiscs, filters and
//! the ifb read back). Also: refused values and drivers (typed errors, nothing made), a failure
//! at the bandwidth step rolled back, and a `kill -9` there cleaned up by `gc` (through
//! netctl: build it first, `cargo build --examples`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::bandwidth::{Bandwidth, RateLimit, RateLimitProblem};
use berth::netlink::Netlink;
use berth::netlink::tc::QdiscParent;
use berth::{Endpoint, Error, Netns, Network, Step};
use common::netctl::Netctl;
use common::*;

/// Goodput of a TCP stream of full-size segments relative to the link-layer rate a `tbf`
/// counts: 1448 payload bytes (MSS with timestamps) per 1514-byte frame.
const GOODPUT: f64 = 1448.0 / 1514.0;

/// Bits per second `rx` receives from `tx` on a TCP connection to `addr` (a listener of `rx`),
/// `tx` sending as fast as it can: counted from `warmup` on (so the burst does not dominate)
/// for `span`.
async fn throughput(
    rx: &Netns,
    tx: &Netns,
    addr: SocketAddr,
    warmup: Duration,
    span: Duration,
) -> f64 {
    let listener = rx
        .enter(move || TcpListener::bind(addr))
        .await
        .unwrap()
        .unwrap();
    let stream = tx
        .enter(move || TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .await
        .unwrap()
        .unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut stream = stream;
        std::thread::spawn(move || {
            stream
                .set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let buf = vec![0x5au8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match stream.write(&buf) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
        })
    };
    let bits = tokio::task::spawn_blocking(move || {
        server
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        // Reads what has arrived, then what keeps arriving until the receive queue is empty:
        // the instants the count is taken at have nothing waiting in it (a reader thread
        // starved for a while would otherwise count earlier arrivals in the window).
        let mut drain = |server: &mut TcpStream, total: &mut u64| {
            server.set_nonblocking(true).unwrap();
            loop {
                match server.read(&mut buf) {
                    Ok(0) => panic!("the sender stopped"),
                    Ok(n) => *total += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
            server.set_nonblocking(false).unwrap();
            Instant::now()
        };
        std::thread::sleep(warmup);
        let t0 = drain(&mut server, &mut total);
        let n0 = total;
        while t0.elapsed() < span {
            std::thread::sleep(Duration::from_millis(50));
            drain(&mut server, &mut total);
        }
        let t1 = drain(&mut server, &mut total);
        (total - n0) as f64 * 8.0 / (t1 - t0).as_secs_f64()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    bits
}

/// Measures `rx` receiving from `tx` on TCP port `port` of `rx_ip` and asserts the goodput is
/// within ±15 % of what `rate_bits` allows.
///
/// Above the band on any attempt fails at once: a limiter never lets more through, however
/// loaded the machine is. Below it is retried (up to [`ATTEMPTS`] transfers, each on its own
/// port): a receiver or sender starved of CPU by whatever else runs on the machine measures
/// low through no fault of the limiter, so one transfer inside the band is the proof.
async fn assert_rate(what: &str, rx: &Netns, tx: &Netns, rx_ip: &str, port: u16, rate_bits: u64) {
    let expected = rate_bits as f64 * GOODPUT;
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        let addr = sa(&format!("{rx_ip}:{}", port + 100 * attempt));
        let measured = throughput(rx, tx, addr, WARMUP, SPAN).await;
        let ratio = measured / expected;
        println!(
            "{what}: {:.2} Mbit/s measured, {:.2} Mbit/s expected (limit {:.2} Mbit/s): {:+.1} %",
            measured / 1e6,
            expected / 1e6,
            rate_bits as f64 / 1e6,
            (ratio - 1.0) * 100.0
        );
        assert!(
            ratio <= 1.15,
            "{what}: {measured:.0} bit/s is more than 15 % above {expected:.0}: the limit does not hold"
        );
        if ratio >= 0.85 {
            return;
        }
        seen.push(format!("{:.0}", measured));
    }
    panic!(
        "{what}: no transfer within 15 % of {expected:.0} bit/s in {ATTEMPTS} attempts: {}",
        seen.join(", ")
    );
}

/// Asserts a measured goodput is well above `rate_bits` (no limit in force).
fn assert_unlimited(what: &str, measured: f64, rate_bits: u64) {
    println!(
        "{what}: {:.1} Mbit/s measured without limits ({:.1}x the {:.0} Mbit/s limit)",
        measured / 1e6,
        measured / rate_bits as f64,
        rate_bits as f64 / 1e6
    );
    assert!(
        measured > 3.0 * rate_bits as f64,
        "{what}: {measured:.0} bit/s without limits"
    );
}

/// Every qdisc other than the kernel's defaults, and every ingress filter, on every link of
/// `ns`, and the names of its ifb links: what limits leave behind.
async fn tc_leftovers(ns: &Netns) -> Vec<String> {
    let nl = Netlink::open(ns).await.unwrap();
    let k = nl.kernel();
    let mut left = Vec::new();
    for l in nl.links().await.unwrap() {
        if l.name.starts_with("bifb") || l.group == berth::link_marks::IFB {
            left.push(format!("ifb link {}", l.name));
        }
        for q in k.qdiscs(l.index).await.unwrap() {
            if q.kind == "tbf" || q.kind == "ingress" {
                left.push(format!("qdisc {} on {}", q.kind, l.name));
            }
        }
        for f in k.ingress_filters(l.index).await.unwrap() {
            left.push(format!("filter {} on {}", f.kind, l.name));
        }
    }
    left
}

fn limits(ingress_mbit: u64, egress_mbit: u64) -> Bandwidth {
    Bandwidth {
        ingress: Some(RateLimit::new(ingress_mbit * 1_000_000, 64 * 1024)),
        egress: Some(RateLimit::new(egress_mbit * 1_000_000, 64 * 1024)),
    }
}

const WARMUP: Duration = Duration::from_millis(600);
const SPAN: Duration = Duration::from_millis(2400);
/// Transfers [`assert_rate`] makes before it calls a measurement below the band a failure.
const ATTEMPTS: u16 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_each_way_change_in_place_and_leave_nothing_after_detach() {
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
