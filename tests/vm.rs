//! The VM tier: tests that need kernel features this host's kernel lacks (SCTP sockets here;
//! ipvlan, 802.1q and dummy links come with the macvlan/ipvlan issue). `cargo xtask test` runs
//! this binary a second time inside a throwaway VM with Debian's stock kernel, through
//! `../shared/tools/run-in-vm.sh` as the cargo runner:
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=../shared/tools/run-in-vm.sh cargo test --test vm`.
//! On a kernel without the feature each test reports itself SKIPPED, with the reason.

mod common;

use berth::sandbox::{sctp_probe, sctp_supported};
use berth::{Endpoint, Network, PortRequest};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sctp_published_port_reaches_the_container() {
    if !require_root() {
        return;
    }
    if !sctp_supported() {
        println!(
            "SKIPPED: sctp_published_port_reaches_the_container: this kernel has no SCTP sockets (the VM tier runs it)"
        );
        return;
    }
    let (mut sb, outside) = sandbox("bt-sctp").await;
    let host = host(&sb).await;
    let c = sb.netns("c").await.unwrap();
    let n = host
        .create_network(Network::bridge("s").subnet("10.44.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let req: PortRequest = "9999:99/sctp".parse().unwrap();
    host.attach(&n, Endpoint::new("c", c.clone()).publish_request(req))
        .await
        .unwrap();
    let seen = sctp_probe(
        &c,
        sa("0.0.0.0:99"),
        &outside,
        sa(&format!("{HOST_UP}:9999")),
    )
    .await
    .unwrap();
    assert_eq!(seen.ip().to_string(), OUTSIDE);
    // Blocked: an unpublished SCTP port, and the container address directly.
    assert!(
        sctp_probe(
            &c,
            sa("0.0.0.0:98"),
            &outside,
            sa(&format!("{HOST_UP}:9998"))
        )
        .await
        .is_err()
    );
    assert!(
        sctp_probe(&c, sa("0.0.0.0:99"), &outside, sa("10.44.0.2:99"))
            .await
            .is_err()
    );
    host.detach(&n, "c").await.unwrap();
    assert!(
        sctp_probe(
            &c,
            sa("0.0.0.0:99"),
            &outside,
            sa(&format!("{HOST_UP}:9999"))
        )
        .await
        .is_err()
    );
    host.delete_network(&n).await.unwrap();
    eprintln!(
        "VM-TIER: sctp published port proven on kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
}
