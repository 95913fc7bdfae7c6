//! Shape, not speed: the number of nf_tables rules does not grow with endpoints or ports; only
//! map elements do. 1, 100 and 1,000 endpoints, each publishing a port, proven by traffic to the
//! first and the last.

mod common;

use berth::sandbox::tcp_probe;
use berth::{Endpoint, Network, Port};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_count_is_flat_from_1_to_1000_endpoints() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-scale").await;
    let host = host(&sb).await;
    let net = host
        .create_network(Network::bridge("big").subnet("10.40.0.0/22".parse().unwrap()))
        .await
        .unwrap();
    let mut counts = Vec::new();
    let mut first = None;
    let mut attached = 0u16;
    let (mut t_ns, mut t_attach) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for target in [1u16, 100, 1000] {
        while attached < target {
            let t = std::time::Instant::now();
            let ns = sb.netns(&format!("e{attached}")).await.unwrap();
            t_ns += t.elapsed();
            let t = std::time::Instant::now();
            let port = Port::tcp(20000 + attached).to(80);
            host.attach(
                &net,
                Endpoint::new(format!("e{attached}"), ns.clone()).publish(port),
            )
            .await
            .unwrap();
            t_attach += t.elapsed();
            first.get_or_insert(ns);
            attached += 1;
        }
        counts.push((target, rule_count(&sb), map_len(&sb, "pm4_any")));
    }
    eprintln!(
        "(endpoints, rules, port elements): {counts:?}; netns creation {t_ns:?}, attaches {t_attach:?}"
    );
    assert!(
        counts.iter().all(|c| c.1 == counts[0].1),
        "rule count must not grow: {counts:?}"
    );
    assert_eq!(
        counts.iter().map(|c| c.2).collect::<Vec<_>>(),
        vec![1, 100, 1000]
    );
    // The first and the last published ports both work. Right after 1,000 attaches the new
    // interfaces' IPv6 start-up chatter is still flooded to every bridge port and can load the
    // CPUs for seconds, so a probe gets three tries before the port counts as broken.
    let first = first.unwrap();
    let last = berth::Netns::from_path(sb.netns_path("e999")).unwrap();
    for (ns, port) in [(&first, 20000), (&last, 20999)] {
        let mut result = Err(std::io::Error::other("not tried"));
        for _ in 0..3 {
            result = tcp_probe(
                ns,
                sa("0.0.0.0:80"),
                &outside,
                sa(&format!("{HOST_UP}:{port}")),
            )
            .await;
            if result.is_ok() {
                break;
            }
        }
        result.unwrap_or_else(|e| panic!("published port {port}: {e}"));
    }
    // Namespaces, veths and the table go with the sandbox.
}
