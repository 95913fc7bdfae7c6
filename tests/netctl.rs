//! The `netctl` example CLI end to end: every command runs as its own process inside a sandbox
//! host netns (`ip netns exec SANDBOX netctl --state-dir DIR …`), and what it reports is proven by
//! traffic between sandbox namespaces.
//!
//! The binary is `target/debug/examples/netctl`: build it first (`cargo build --examples`).

mod common;

use std::process::{Command, Output};

use berth::sandbox::{Sandbox, tcp_probe};
use common::netctl::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_end_to_end() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("nc-e2e").await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let (p1, p2) = (sb.netns_path("c1"), sb.netns_path("c2"));
    let nc = Netctl::new(&sb);

    // create + ls
    let id = nc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.89.0.0/24",
        "-o",
        "com.docker.network.bridge.name=br-nc",
        "web",
    ]);
    let id = id.trim();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "create prints the network id, got {id:?}"
    );
    assert!(link_names(sb.host()).await.contains(&"br-nc".to_string()));
    let ls = nc.ok(&["network", "ls"]);
    assert_eq!(ls, "web bridge 10.89.0.0/24\n");

    // Failed creates name what is wrong and change nothing.
    let e = nc.error(&["network", "create", "--subnet", "10.90.0.0/24", "web"]);
    assert!(e.contains("web") && e.contains("exists"), "{e}");
    let e = nc.error(&["network", "create", "--subnet", "10.90.0.0/33", "bad"]);
    assert!(e.contains("10.90.0.0/33"), "{e}");
    let e = nc.error(&["network", "create", "--subnet", "10.90.0.1/24", "bad"]);
    assert!(e.contains("10.90.0.1/24") && e.contains("host bits"), "{e}");
    let e = nc.error(&["network", "create", "--subnet", "10.89.0.128/25", "bad"]);
    assert!(e.contains("overlaps") && e.contains("web"), "{e}");
    let e = nc.error(&[
        "network",
        "create",
        "--subnet",
        "10.90.0.0/24",
        "-o",
        "foo.bar=1",
        "bad",
    ]);
    assert!(e.contains("foo.bar"), "unknown option must be named: {e}");
    let e = nc.error(&[
        "network",
        "create",
        "--subnet",
        "10.90.0.0/24",
        "--route",
        "10.91.0.1/24,via=10.90.0.254",
        "bad",
    ]);
    assert!(e.contains("10.91.0.1/24") && e.contains("host bits"), "{e}");
    // An IPv6 subnet needs --ipv6.
    let e = nc.error(&["network", "create", "--subnet", "fd00:90::/64", "bad"]);
    assert!(e.contains("fd00:90::/64") && e.contains("--ipv6"), "{e}");
    let e = nc.error(&[
        "network",
        "create",
        "--subnet",
        "10.90.0.0/24",
        "-d",
        "overlay",
        "bad",
    ]);
    assert!(e.contains("overlay") && e.contains("cluster store"), "{e}");
    let e = nc.fails(2, &["network", "create", "--bogus", "bad"]);
    assert!(e.contains("--bogus"), "{e}");
    nc.fails(2, &["network", "create"]); // NAME missing
    nc.fails(2, &["frobnicate"]);
    assert_eq!(
        nc.ok(&["network", "ls"]),
        ls,
        "failed creates changed nothing"
    );
    assert!(
        !link_names(sb.host())
            .await
            .iter()
            .any(|l| l.starts_with("br-") && l != "br-nc")
    );

    // connect c1 with a published port
    let a1 = nc.json(&[
        "connect",
        "--netns",
        path_str(&p1),
        "-p",
        "8080:80",
        "web",
        "c1",
    ]);
    let mac1 = a1["mac"].as_str().expect("mac").to_string();
    assert!(mac1.parse::<berth::MacAddr>().is_ok(), "{mac1}");
    assert_eq!(
        a1,
        json!({
            "network": "web", "container": "c1", "ifname": "eth0", "mac": mac1,
            "ipv4": "10.89.0.2/24", "ipv6": null, "gateway": "10.89.0.1", "gateway6": null,
            "netns": path_str(&p1),
            "ports": [{"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8080, "container_port": 80}],
        })
    );

    // Failed connects name what is wrong and leave c2's netns untouched.
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p2),
        "-p",
        "8080:81",
        "web",
        "c2",
    ]);
    assert!(
        e.contains("8080") && e.contains("c1"),
        "owner must be named: {e}"
    );
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p2),
        "--ifname",
        "abcdefghijklmnop",
        "web",
        "c2",
    ]);
    assert!(e.contains("abcdefghijklmnop"), "{e}");
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p2),
        "--alias",
        "d b",
        "web",
        "c2",
    ]);
    assert!(e.contains("alias") && e.contains("d b"), "{e}");
    let e = nc.error(&["connect", "--netns", path_str(&p2), "web", "c1"]);
    assert!(e.contains("c1") && e.contains("already attached"), "{e}");
    let e = nc.error(&["connect", "--netns", path_str(&p2), "nosuch", "c2"]);
    assert!(e.contains("nosuch"), "{e}");
    nc.fails(2, &["connect", "--bogus", "web", "c2"]);
    assert_eq!(link_names(&c2).await, vec!["lo".to_string()]);

    let a2 = nc.json(&["connect", "--netns", path_str(&p2), "web", "c2"]);
    assert_eq!(a2["ipv4"], "10.89.0.3/24");
    assert_eq!(a2["ports"], json!([]));

    // container <-> container, both ways
    let seen = assert_reaches(&c2, sa("10.89.0.3:7000"), &c1, sa("10.89.0.3:7000")).await;
    assert_eq!(seen.ip().to_string(), "10.89.0.2");
    let seen = assert_reaches(&c1, sa("10.89.0.2:7000"), &c2, sa("10.89.0.2:7000")).await;
    assert_eq!(seen.ip().to_string(), "10.89.0.3");
    // outside -> published port -> c1:80
    let seen = assert_reaches(
        &c1,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await;
    assert_eq!(seen.ip().to_string(), OUTSIDE);
    // c2 publishes nothing
    assert!(
        tcp_probe(
            &c2,
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:8081"))
        )
        .await
        .is_err()
    );

    // inspect
    let net = nc.json(&["network", "inspect", "web"]);
    assert_eq!(net["name"], "web");
    assert_eq!(net["driver"], "bridge");
    assert_eq!(
        net["subnets"],
        json!([{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1", "ip_range": null}])
    );
    assert_eq!(net["options"]["com.docker.network.bridge.name"], "br-nc");
    assert_eq!(
        net["options"]["com.docker.network.bridge.enable_ip_masquerade"],
        "true"
    );
    assert_eq!(
        net["options"]["com.docker.network.bridge.enable_icc"],
        "true"
    );
    assert!(
        net["options"]
            .get("com.docker.network.bridge.host_binding_ipv4")
            .is_none(),
        "no binding was set: {net}"
    );
    assert_eq!(
        (&net["internal"], &net["ipv6"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(
        net["endpoints"],
        json!({
            "c1": {"ifname": "eth0", "mac": mac1, "ipv4": "10.89.0.2/24", "ipv6": null},
            "c2": {"ifname": "eth0", "mac": a2["mac"], "ipv4": "10.89.0.3/24", "ipv6": null},
        })
    );
    nc.error(&["network", "inspect", "nosuch"]);

    // check: all in place for c1; after c2's veth is deleted behind berth's back, it says so.
    assert_eq!(nc.ok(&["check", "web", "c1"]), "");
    let c2_name = p2.file_name().unwrap().to_str().unwrap();
    let del = Command::new("ip")
        .args(["-n", c2_name, "link", "del", "eth0"])
        .status()
        .unwrap();
    assert!(del.success());
    let missing = nc.fails(1, &["check", "web", "c2"]);
    // Both ends are named: the host's veth and the container's interface.
    assert!(
        missing.lines().all(|l| l.starts_with("missing: "))
            && missing.lines().any(|l| l.contains("veth"))
            && missing.lines().any(|l| l.contains("eth0 in ")),
        "{missing}"
    );
    nc.ok(&["check", "web", "c1"]);

    // Removing a network in use is refused, naming the endpoints.
    let e = nc.error(&["network", "rm", "web"]);
    assert!(e.contains("c1") && e.contains("c2"), "{e}");

    // disconnect, rm: the bridge is gone, the port closed.
    nc.ok(&["disconnect", "web", "c1"]);
    nc.ok(&["disconnect", "web", "c2"]);
    nc.ok(&["disconnect", "web", "c2"]); // idempotent
    assert_eq!(link_names(&c1).await, vec!["lo".to_string()]);
    assert!(
        tcp_probe(
            &c1,
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:8080"))
        )
        .await
        .is_err()
    );
    assert_eq!(
        nc.json(&["network", "inspect", "web"])["endpoints"],
        json!({})
    );
    assert_eq!(nc.ok(&["network", "rm", "web"]), "web\n");
    assert!(!link_names(sb.host()).await.contains(&"br-nc".to_string()));
    assert_eq!(nc.ok(&["network", "ls"]), "");
    let e = nc.error(&["network", "rm", "web"]);
    assert!(e.contains("web") && e.contains("not found"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_parallel_connects_get_distinct_addresses() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("nc-par").await.unwrap();
    let c3 = sb.netns("c3").await.unwrap();
    let c4 = sb.netns("c4").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&["network", "create", "--subnet", "10.89.0.0/24", "web"]);

    // Both processes start before either finishes; the state dir lock serialises them.
    let spawn = |role: &str| {
        let path = sb.netns_path(role);
        nc.command(&["connect", "--netns", path_str(&path), "web", role])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (h3, h4) = (spawn("c3"), spawn("c4"));
    let parse = |out: Output| -> Value {
        assert!(
            out.status.success(),
            "parallel connect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let a3 = parse(h3.wait_with_output().unwrap());
    let a4 = parse(h4.wait_with_output().unwrap());
    let (ip3, ip4) = (a3["ipv4"].as_str().unwrap(), a4["ipv4"].as_str().unwrap());
    assert_ne!(ip3, ip4);
    let mut ips = [ip3, ip4];
    ips.sort();
    assert_eq!(ips, ["10.89.0.2/24", "10.89.0.3/24"]);

    let net = nc.json(&["network", "inspect", "web"]);
    assert_eq!(net["endpoints"]["c3"]["ipv4"], ip3);
    assert_eq!(net["endpoints"]["c4"]["ipv4"], ip4);
    // Both are really plumbed: they reach each other.
    let ip4 = ip4.split('/').next().unwrap();
    assert_reaches(
        &c4,
        sa(&format!("{ip4}:7000")),
        &c3,
        sa(&format!("{ip4}:7000")),
    )
    .await;

    nc.ok(&["disconnect", "web", "c3"]);
    nc.ok(&["disconnect", "web", "c4"]);
    nc.ok(&["network", "rm", "web"]);
    assert_eq!(nc.ok(&["network", "ls"]), "");
}
