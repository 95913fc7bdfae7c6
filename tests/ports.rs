//! Port publishing in Docker's full `-p` syntax, proven by traffic: ranges, a host range onto
//! one container port, free host ports picked around listeners and other publications, and a
//! network's default host address.

mod common;

use std::net::TcpListener;

use berth::sandbox::{tcp_probe, udp_probe};
use berth::{Endpoint, Network, PortRequest};
use common::*;

fn req(s: &str) -> PortRequest {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_picked_ports_and_default_host_address() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-ports").await;
    let host = host(&sb).await;
    let (c1, c2, c3) = (
        sb.netns("c1").await.unwrap(),
        sb.netns("c2").await.unwrap(),
        sb.netns("c3").await.unwrap(),
    );
    let n = host
        .create_network(Network::bridge("p").subnet("10.45.0.0/24".parse().unwrap()))
        .await
        .unwrap();

    // A range maps one to one.
    let a1 = host
        .attach(
            &n,
            Endpoint::new("c1", c1.clone())
                .publish_request(req("8000-8002:80-82"))
                .publish_request(req("40002:90")),
        )
        .await
        .unwrap();
    assert_eq!(a1.ports.len(), 4);
    assert_reaches(
        &c1,
        sa("0.0.0.0:81"),
        &outside,
        sa(&format!("{HOST_UP}:8001")),
    )
    .await;
    assert_reaches(
        &c1,
        sa("0.0.0.0:82"),
        &outside,
        sa(&format!("{HOST_UP}:8002")),
    )
    .await;

    // A host range onto one port skips a port held by a listener in the host netns and one
    // berth already publishes.
    let held = sb
        .host()
        .run(|| TcpListener::bind("0.0.0.0:40000"))
        .unwrap()
        .unwrap();
    let a2 = host
        .attach(
            &n,
            Endpoint::new("c2", c2.clone())
                .publish_request(req("40000-40003:80"))
                .publish_request(req("53/udp")),
        )
        .await
        .unwrap();
    let tcp = a2
        .ports
        .iter()
        .find(|p| p.proto == berth::Protocol::Tcp)
        .unwrap();
    assert!(
        tcp.host_port == 40001 || tcp.host_port == 40003,
        "got {}",
        tcp.host_port
    );
    assert_reaches(
        &c2,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:{}", tcp.host_port)),
    )
    .await;
    // No host port at all: a free one from the dynamic range, reported back.
    let udp = a2
        .ports
        .iter()
        .find(|p| p.proto == berth::Protocol::Udp)
        .unwrap();
    assert!(udp.host_port >= 49153, "{udp:?}");
    udp_probe(
        &c2,
        sa("0.0.0.0:53"),
        &outside,
        sa(&format!("{HOST_UP}:{}", udp.host_port)),
    )
    .await
    .unwrap();
    drop(held);
    // A range with no free port left is a typed error, and nothing is left behind.
    let e = host
        .attach(
            &n,
            Endpoint::new("c3", c3.clone()).publish_request(req("8000-8002:80")),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("8000-8002"), "{e}");
    assert_eq!(link_names(&c3).await, vec!["lo".to_string()]);

    // host_binding_ipv4: ports without an address land on the network's default one only.
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .arg("-n")
            .arg(sb.host_name())
            .args(args)
            .status()
            .unwrap();
        assert!(st.success());
    };
    ip(&["addr", "add", "198.18.0.3/24", "dev", "uplink"]);
    let b = host
        .create_network(
            Network::bridge("b")
                .subnet("10.46.0.0/24".parse().unwrap())
                .host_binding_ipv4("198.18.0.3".parse().unwrap()),
        )
        .await
        .unwrap();
    let a3 = host
        .attach(
            &b,
            Endpoint::new("c3", c3.clone()).publish_request(req("9000:80")),
        )
        .await
        .unwrap();
    assert_eq!(a3.ports[0].host_ip.to_string(), "198.18.0.3");
    assert_reaches(&c3, sa("0.0.0.0:80"), &outside, sa("198.18.0.3:9000")).await;
    assert!(
        tcp_probe(
            &c3,
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:9000"))
        )
        .await
        .is_err()
    );
    assert_eq!(map_len(&sb, "pm4_ip"), 1);

    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&n).await.unwrap();
    host.delete_network(&b).await.unwrap();
    assert_eq!(map_len(&sb, "pm4_any") + map_len(&sb, "pm4_ip"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_published_ports() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("bt-ports6").await;
    let run = |ns: &str, args: &[&str]| {
        let st = std::process::Command::new("ip")
            .arg("-n")
            .arg(ns)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    };
    run(
        sb.host_name(),
        &["addr", "add", "2001:db8:1::1/64", "dev", "uplink", "nodad"],
    );
    let out_name = sb
        .netns_path("outside")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    run(
        &out_name,
        &["addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad"],
    );
    let host = host(&sb).await;
    let (c1, c2) = (sb.netns("c1").await.unwrap(), sb.netns("c2").await.unwrap());
    let n = host
        .create_network(
            Network::bridge("d")
                .subnet("10.47.0.0/24".parse().unwrap())
                .ipv6(true)
                .subnet("fd00:47::/64".parse().unwrap()),
        )
        .await
        .unwrap();
    // -p 8080:80 publishes on both families; [addr]:9090:90 only on that IPv6 address.
    host.attach(
        &n,
        Endpoint::new("c1", c1.clone())
            .publish_request(req("8080:80"))
            .publish_request(req("[2001:db8:1::1]:9090:90")),
    )
    .await
    .unwrap();
    let retry = || async {
        for _ in 0..10 {
            if tcp_probe(&c1, sa("[::]:80"), &outside, sa("[2001:db8:1::1]:8080"))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        false
    };
    assert!(retry().await, "IPv6 wildcard publication");
    assert_reaches(
        &c1,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
    let seen = assert_reaches(&c1, sa("[::]:90"), &outside, sa("[2001:db8:1::1]:9090")).await;
    assert_eq!(
        seen.ip().to_string(),
        "2001:db8:1::2",
        "published traffic keeps its source"
    );
    assert_blocked(
        &c1,
        sa("0.0.0.0:90"),
        &outside,
        sa(&format!("{HOST_UP}:9090")),
        "IPv4 not published",
    )
    .await;
    assert_blocked(
        &c1,
        sa("[::]:91"),
        &outside,
        sa("[2001:db8:1::1]:9091"),
        "unpublished",
    )
    .await;
    assert_eq!((map_len(&sb, "pm6_any"), map_len(&sb, "pm6_ip")), (1, 1));
    // IPv6-only publication on an IPv4-only network is refused.
    let v4 = host
        .create_network(Network::bridge("v4").subnet("10.48.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let e = host
        .attach(
            &v4,
            Endpoint::new("c2", c2.clone()).publish_request(req("[::]:7070:70")),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("IPv6"), "{e}");
    host.detach(&n, "c1").await.unwrap();
    assert_eq!((map_len(&sb, "pm6_any"), map_len(&sb, "pm6_ip")), (0, 0));
    host.delete_network(&n).await.unwrap();
    host.delete_network(&v4).await.unwrap();
}
