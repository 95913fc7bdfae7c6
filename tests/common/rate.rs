//! Measured TCP goodput between sandbox namespaces, for bandwidth limits (`tests/bandwidth.rs`,
//! the overlay's limits in `tests/overlay.rs`), and what limits leave in a netns.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::Netns;
use berth::netlink::Netlink;

use super::sa;

/// Goodput of a TCP stream of full-size segments relative to the link-layer rate a `tbf`
/// counts: 1448 payload bytes (MSS with timestamps) per 1514-byte frame.
pub const GOODPUT: f64 = 1448.0 / 1514.0;

/// Bits per second `rx` receives from `tx` on a TCP connection to `addr` (a listener of `rx`),
/// `tx` sending as fast as it can: counted from `warmup` on (so the burst does not dominate)
/// for `span`.
pub async fn throughput(
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
pub async fn assert_rate(
    what: &str,
    rx: &Netns,
    tx: &Netns,
    rx_ip: &str,
    port: u16,
    rate_bits: u64,
) {
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
pub fn assert_unlimited(what: &str, measured: f64, rate_bits: u64) {
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
pub async fn tc_leftovers(ns: &Netns) -> Vec<String> {
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

/// What a transfer runs before it is counted. The first connection to an address starts
/// without the ssthresh the kernel caches per destination: its slow start overshoots the
/// limiter's queue and the loss recovery that follows can take most of a second (what made
/// the first measurement of a run come out low).
pub const WARMUP: Duration = Duration::from_millis(1500);
pub const SPAN: Duration = Duration::from_millis(3000);
/// Transfers [`assert_rate`] makes before it calls a measurement below the band a failure.
pub const ATTEMPTS: u16 = 3;
