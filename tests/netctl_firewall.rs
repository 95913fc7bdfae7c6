//! The firewall through the `netctl` binary: published ports in Docker's full `-p` syntax,
//! `enable_icc=false`, `--internal`, `reapply` after a ruleset flush and `host_binding_ipv4` —
//! each proven by traffic between sandbox namespaces. Every command is its own process, run as
//! `ip netns exec SANDBOX netctl --state-dir DIR …` inside a sandbox host netns.
//!
//! The binary is `target/debug/examples/netctl`: build it first (`cargo build --examples`).

mod common;

use std::process::Command;

use berth::sandbox::{tcp_probe, udp_probe};
use common::netctl::*;
use common::*;
use serde_json::{Value, json};

/// Runs `ip ARGS…`, asserting success.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The address part of `10.0.0.2/24`.
fn addr(cidr: &Value) -> String {
    let s = cidr
        .as_str()
        .unwrap_or_else(|| panic!("no address: {cidr}"));
    s.split('/').next().unwrap().to_string()
}

/// `-p 8000-8001:80-81`, `-p 80` (a picked host port), `-p 198.18.0.1:…`, a host range onto one
/// port and UDP: each reached from the outside netns; unpublished ports are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_publish_full_syntax() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ncf-pub").await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&["network", "create", "--subnet", "10.91.0.0/24", "web"]);

    let a1 = nc.connect(
        &sb,
        "web",
        "c1",
        &[
            "-p",
            "8000-8001:80-81",
            "-p",
            "80",
            "-p",
            &format!("{HOST_UP}:8200:82"),
            "-p",
            "8300-8310:84",
            "--publish",
            "9053:53/udp",
        ],
    );
    let ports = a1["ports"].as_array().expect("ports").clone();
    assert_eq!(ports.len(), 6, "{a1}");
    let port = |i: usize| ports[i]["host_port"].as_u64().unwrap() as u16;
    assert_eq!(
        ports[..2],
        [
            json!({"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8000, "container_port": 80}),
            json!({"proto": "tcp", "host_ip": "0.0.0.0", "host_port": 8001, "container_port": 81}),
        ]
    );
    let picked = port(2);
    assert_eq!(
        (
            &ports[2]["proto"],
            &ports[2]["host_ip"],
            &ports[2]["container_port"]
        ),
        (&json!("tcp"), &json!("0.0.0.0"), &json!(80)),
    );
    assert!(
        picked >= 49153,
        "a picked port comes from 49153-65535: {picked}"
    );
    assert_eq!(
        ports[3],
        json!({"proto": "tcp", "host_ip": HOST_UP, "host_port": 8200, "container_port": 82})
    );
    let ranged = port(4);
    assert!((8300..=8310).contains(&ranged), "{ranged} not in 8300-8310");
    assert_eq!(ports[4]["container_port"], 84);
    assert_eq!(
        ports[5],
        json!({"proto": "udp", "host_ip": "0.0.0.0", "host_port": 9053, "container_port": 53})
    );

    // Allowed: each published port, from outside, to the right container port.
    for (host_port, container_port) in [
        (8000, 80),
        (8001, 81),
        (picked, 80),
        (8200, 82),
        (ranged, 84),
    ] {
        let seen = tcp_probe(
            &c1,
            sa(&format!("0.0.0.0:{container_port}")),
            &outside,
            sa(&format!("{HOST_UP}:{host_port}")),
        )
        .await
        .unwrap_or_else(|e| panic!("{HOST_UP}:{host_port} -> c1:{container_port}: {e}"));
        assert_eq!(seen.ip().to_string(), OUTSIDE, "no SNAT on the way in");
    }
    let seen = udp_probe(
        &c1,
        sa("0.0.0.0:53"),
        &outside,
        sa(&format!("{HOST_UP}:9053")),
    )
    .await
    .expect("udp 9053 -> c1:53");
    assert_eq!(seen.ip().to_string(), OUTSIDE);

    // Blocked: a port not published (nothing listens on the host; the container's listener is
    // not reached), the UDP port over TCP, and container ports straight to the container
    // address even with a route to it.
    for host_port in [8002, 9053] {
        assert_blocked(
            &c1,
            sa(&format!("0.0.0.0:{host_port}")),
            &outside,
            sa(&format!("{HOST_UP}:{host_port}")),
            "tcp {host_port} is not published",
        )
        .await;
    }
    let ip1 = addr(&a1["ipv4"]);
    ip(&[
        "-n",
        &ns_name(&sb, "outside"),
        "route",
        "add",
        "10.91.0.0/24",
        "via",
        HOST_UP,
    ]);
    assert_blocked(
        &c1,
        sa("0.0.0.0:85"),
        &outside,
        sa(&format!("{ip1}:85")),
        "direct access to an unpublished container port",
    )
    .await;

    // A second container cannot take a published host port; the error names the owner.
    let p2 = sb.netns_path("c2");
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p2),
        "-p",
        "8001-8002:90-91",
        "web",
        "c2",
    ]);
    assert!(e.contains("8001") && e.contains("c1"), "{e}");
    // The library's refusals pass through: an IPv6 host address on an IPv4-only network, bad specs.
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p2),
        "-p",
        "[2001:db8::1]:8080:80",
        "web",
        "c2",
    ]);
    assert!(
        e.contains("2001:db8::1") && e.contains("needs a network with IPv6"),
        "{e}"
    );
    for bad in [
        "8000-8002:80-81",
        "90-80",
        "8080:80/icmp",
        "0:80",
        "x:80:80",
    ] {
        let e = nc.error(&["connect", "--netns", path_str(&p2), "-p", bad, "web", "c2"]);
        assert!(e.contains(bad) || e.contains("icmp"), "{bad}: {e}");
    }
    assert_eq!(link_names(&c2).await, vec!["lo".to_string()]);
    // c2 with its own picked port: it is not c1's.
    let a2 = nc.connect(&sb, "web", "c2", &["-p", "80"]);
    let picked2 = a2["ports"][0]["host_port"].as_u64().unwrap() as u16;
    assert_ne!(picked2, picked);
    tcp_probe(
        &c2,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:{picked2}")),
    )
    .await
    .expect("c2's picked port");
    nc.ok(&["check", "web", "c1"]);
    nc.ok(&["check", "web", "c2"]);

    nc.ok(&["disconnect", "web", "c1"]);
    assert_blocked(
        &c1,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8000")),
        "closed on disconnect",
    )
    .await;
    nc.ok(&["disconnect", "web", "c2"]);
    nc.ok(&["network", "rm", "web"]);
    assert_eq!(nc.ok(&["network", "ls"]), "");
}

/// `enable_icc=false`: containers of the network do not reach each other; egress and published
/// ports still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_icc_off() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ncf-icc").await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let nc = Netctl::new(&sb);
    let e = nc.error(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=maybe",
        "bad",
    ]);
    assert!(e.contains("enable_icc") && e.contains("maybe"), "{e}");
    nc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.92.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "locked",
    ]);
    let net = nc.json(&["network", "inspect", "locked"]);
    assert_eq!(
        net["options"]["com.docker.network.bridge.enable_icc"], "false",
        "{net}"
    );
    let a1 = nc.connect(&sb, "locked", "c1", &[]);
    let a2 = nc.connect(&sb, "locked", "c2", &["-p", "8080:80"]);
    let (ip1, ip2) = (addr(&a1["ipv4"]), addr(&a2["ipv4"]));

    // Blocked: container to container, both ways.
    assert_blocked(
        &c2,
        sa(&format!("{ip2}:7000")),
        &c1,
        sa(&format!("{ip2}:7000")),
        "c1 -> c2 with icc off",
    )
    .await;
    assert_blocked(
        &c1,
        sa(&format!("{ip1}:7000")),
        &c2,
        sa(&format!("{ip1}:7000")),
        "c2 -> c1 with icc off",
    )
    .await;
    // Allowed: egress, masqueraded behind the host's uplink address.
    let seen = tcp_probe(
        &outside,
        sa(&format!("{OUTSIDE}:7000")),
        &c1,
        sa(&format!("{OUTSIDE}:7000")),
    )
    .await
    .expect("c1 -> outside");
    assert_eq!(seen.ip().to_string(), HOST_UP);
    // Allowed: the published port from outside.
    let seen = tcp_probe(
        &c2,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:8080")),
    )
    .await
    .expect("outside -> 8080 -> c2:80");
    assert_eq!(seen.ip().to_string(), OUTSIDE);
    nc.ok(&["check", "locked", "c1"]);
    nc.ok(&["check", "locked", "c2"]);

    // A network with icc on (the default) in the same host: its containers do talk.
    nc.ok(&["network", "create", "--subnet", "10.92.1.0/24", "open"]);
    let net = nc.json(&["network", "inspect", "open"]);
    assert_eq!(
        net["options"]["com.docker.network.bridge.enable_icc"],
        "true"
    );
    let c3 = sb.netns("c3").await.unwrap();
    let c4 = sb.netns("c4").await.unwrap();
    nc.connect(&sb, "open", "c3", &[]);
    let a4 = nc.connect(&sb, "open", "c4", &[]);
    let ip4 = addr(&a4["ipv4"]);
    tcp_probe(
        &c4,
        sa(&format!("{ip4}:7000")),
        &c3,
        sa(&format!("{ip4}:7000")),
    )
    .await
    .expect("c3 -> c4 with icc on");

    let report = nc.json(&["gc"]);
    assert_eq!(report["detached"].as_array().unwrap().len(), 4, "{report}");
    nc.ok(&["network", "rm", "locked", "open"]);
    assert_eq!(nc.ok(&["network", "ls"]), "");
}

/// `--internal`: containers talk to each other, nothing gets out (not even with a default
/// route added by hand), nothing gets in, and no port can be published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_internal() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ncf-int").await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let c3 = sb.netns("c3").await.unwrap();
    sb.netns("c4").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.93.0.0/24",
        "back",
    ]);
    // A regular network beside it: proves the host forwards at all.
    nc.ok(&["network", "create", "--subnet", "10.93.1.0/24", "front"]);
    let net = nc.json(&["network", "inspect", "back"]);
    assert_eq!(net["internal"], json!(true), "{net}");
    let gateway = net["subnets"][0]["gateway"].as_str().unwrap().to_string();
    assert_eq!(gateway, "10.93.0.1");
    assert_eq!(
        nc.json(&["network", "inspect", "front"])["internal"],
        json!(false)
    );

    let a1 = nc.connect(&sb, "back", "c1", &[]);
    assert_eq!(a1["gateway"], Value::Null, "no default route: {a1}");
    let a2 = nc.connect(&sb, "back", "c2", &[]);
    let (ip1, ip2) = (addr(&a1["ipv4"]), addr(&a2["ipv4"]));
    let ip3 = addr(&nc.connect(&sb, "front", "c3", &[])["ipv4"]);

    // Allowed: inside the internal network, both ways.
    tcp_probe(
        &c2,
        sa(&format!("{ip2}:7000")),
        &c1,
        sa(&format!("{ip2}:7000")),
    )
    .await
    .expect("c1 -> c2");
    tcp_probe(
        &c1,
        sa(&format!("{ip1}:7000")),
        &c2,
        sa(&format!("{ip1}:7000")),
    )
    .await
    .expect("c2 -> c1");
    // Control: the regular network's container gets out.
    tcp_probe(
        &outside,
        sa(&format!("{OUTSIDE}:7000")),
        &c3,
        sa(&format!("{OUTSIDE}:7000")),
    )
    .await
    .expect("front c3 -> outside");

    // Blocked: out of the internal network, even with a default route by hand and a route back
    // from outside (so only the firewall stands in the way), and in from outside.
    ip(&[
        "-n",
        &ns_name(&sb, "c1"),
        "route",
        "add",
        "default",
        "via",
        &gateway,
    ]);
    ip(&[
        "-n",
        &ns_name(&sb, "outside"),
        "route",
        "add",
        "10.93.0.0/24",
        "via",
        HOST_UP,
    ]);
    assert_blocked(
        &outside,
        sa(&format!("{OUTSIDE}:7000")),
        &c1,
        sa(&format!("{OUTSIDE}:7000")),
        "internal c1 -> outside",
    )
    .await;
    assert_blocked(
        &c1,
        sa("0.0.0.0:7000"),
        &outside,
        sa(&format!("{ip1}:7000")),
        "outside -> internal c1",
    )
    .await;
    // Blocked: between the internal and the regular network.
    assert_blocked(
        &c3,
        sa("0.0.0.0:7000"),
        &c1,
        sa(&format!("{ip3}:7000")),
        "internal c1 -> front c3",
    )
    .await;

    // Publishing on an internal network is refused, and changes nothing.
    let p4 = sb.netns_path("c4");
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p4),
        "-p",
        "8080:80",
        "back",
        "c4",
    ]);
    assert!(e.contains("internal") && e.contains("80"), "{e}");
    let eps = nc.json(&["network", "inspect", "back"])["endpoints"].clone();
    assert!(eps.get("c4").is_none(), "{eps}");
    nc.ok(&["check", "back", "c1"]);

    nc.ok(&["disconnect", "back", "c1"]);
    nc.ok(&["disconnect", "back", "c2"]);
    nc.ok(&["disconnect", "front", "c3"]);
    nc.ok(&["network", "rm", "back", "front"]);
    assert_eq!(nc.ok(&["network", "ls"]), "");
}

/// `nft flush ruleset` in the host netns: `check` lists what is missing and the published port
/// is dead; `reapply` puts it all back, once (a second reapply adds nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_reapply_after_flush() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ncf-rea").await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&["reapply"]); // nothing recorded: nothing to do
    nc.ok(&["network", "create", "--subnet", "10.94.0.0/24", "web"]);
    nc.connect(&sb, "web", "c1", &["-p", "8080:80"]);
    nc.connect(&sb, "web", "c2", &[]);
    let works = || async {
        tcp_probe(
            &c1,
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:8080")),
        )
        .await
    };
    let egress = || async {
        tcp_probe(
            &outside,
            sa(&format!("{OUTSIDE}:7000")),
            &c2,
            sa(&format!("{OUTSIDE}:7000")),
        )
        .await
    };
    works().await.expect("published port before the flush");
    assert_eq!(egress().await.unwrap().ip().to_string(), HOST_UP);
    assert_eq!(nc.ok(&["check", "web", "c1"]), "");
    let rules = rule_count(&sb);
    assert!(rules > 0);

    let flush = Command::new("ip")
        .args(["netns", "exec", sb.host_name(), "nft", "flush", "ruleset"])
        .status()
        .unwrap();
    assert!(flush.success());
    assert_eq!(rule_count(&sb), 0);

    let missing = nc.fails(1, &["check", "web", "c1"]);
    assert!(
        missing.lines().count() >= 2 && missing.lines().all(|l| l.starts_with("missing: ")),
        "{missing}"
    );
    assert!(missing.contains("table inet berth"), "{missing}");
    assert!(
        missing
            .lines()
            .any(|l| l.contains("8080") && l.contains(":80")),
        "the published port is named: {missing}"
    );
    let missing2 = nc.fails(1, &["check", "web", "c2"]);
    assert!(missing2.contains("table inet berth"), "{missing2}");
    assert!(
        !missing2.contains("8080"),
        "c2 publishes nothing: {missing2}"
    );
    assert!(works().await.is_err(), "the port is dead after the flush");
    assert!(
        egress().await.is_err(),
        "no masquerade after the flush: the outside has no route back"
    );

    nc.ok(&["reapply"]);
    assert_eq!(nc.ok(&["check", "web", "c1"]), "");
    assert_eq!(nc.ok(&["check", "web", "c2"]), "");
    assert_eq!(rule_count(&sb), rules, "the same ruleset as before");
    works().await.expect("published port after reapply");
    assert_eq!(egress().await.unwrap().ip().to_string(), HOST_UP);
    nc.ok(&["reapply"]);
    assert_eq!(rule_count(&sb), rules, "reapply twice adds nothing");
    works()
        .await
        .expect("published port after a second reapply");

    // The ports keep being managed: disconnect closes the port reapply put back.
    nc.ok(&["disconnect", "web", "c1"]);
    assert!(works().await.is_err(), "closed on disconnect");
    nc.ok(&["disconnect", "web", "c2"]);
    nc.ok(&["network", "rm", "web"]);
    nc.ok(&["reapply"]);
    assert_eq!(nc.ok(&["network", "ls"]), "");
}

/// `host_binding_ipv4`: `-p 9000:80` publishes on that address only; an explicit HOSTIP still
/// wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_host_binding_ipv4() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("ncf-bind").await;
    let c1 = sb.netns("c1").await.unwrap();
    let nc = Netctl::new(&sb);
    const SECOND: &str = "198.18.0.3";
    ip(&[
        "-n",
        sb.host_name(),
        "addr",
        "add",
        &format!("{SECOND}/24"),
        "dev",
        "uplink",
    ]);
    for bad in ["nope", "fd00::1"] {
        let e = nc.error(&[
            "network",
            "create",
            "-o",
            &format!("com.docker.network.bridge.host_binding_ipv4={bad}"),
            "bad",
        ]);
        assert!(e.contains("host_binding_ipv4") && e.contains(bad), "{e}");
    }
    nc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.95.0.0/24",
        "-o",
        &format!("com.docker.network.bridge.host_binding_ipv4={SECOND}"),
        "bound",
    ]);
    let net = nc.json(&["network", "inspect", "bound"]);
    assert_eq!(
        net["options"]["com.docker.network.bridge.host_binding_ipv4"], SECOND,
        "{net}"
    );
    let a1 = nc.connect(
        &sb,
        "bound",
        "c1",
        &["-p", "9000:80", "-p", &format!("{HOST_UP}:9001:81")],
    );
    assert_eq!(
        a1["ports"],
        json!([
            {"proto": "tcp", "host_ip": SECOND, "host_port": 9000, "container_port": 80},
            {"proto": "tcp", "host_ip": HOST_UP, "host_port": 9001, "container_port": 81},
        ])
    );

    // Allowed: the binding address; blocked: the host's other address.
    let seen = tcp_probe(
        &c1,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{SECOND}:9000")),
    )
    .await
    .expect("198.18.0.3:9000 -> c1:80");
    assert_eq!(seen.ip().to_string(), OUTSIDE);
    assert_blocked(
        &c1,
        sa("0.0.0.0:80"),
        &outside,
        sa(&format!("{HOST_UP}:9000")),
        "{HOST_UP}:9000 is not published",
    )
    .await;
    // The explicit address: the other way round.
    tcp_probe(
        &c1,
        sa("0.0.0.0:81"),
        &outside,
        sa(&format!("{HOST_UP}:9001")),
    )
    .await
    .expect("198.18.0.1:9001 -> c1:81");
    assert_blocked(
        &c1,
        sa("0.0.0.0:81"),
        &outside,
        sa(&format!("{SECOND}:9001")),
        "{SECOND}:9001 is not published",
    )
    .await;
    nc.ok(&["check", "bound", "c1"]);

    let report = nc.json(&["gc"]);
    assert_eq!(report["detached"], json!([["bound", "c1"]]), "{report}");
    nc.ok(&["network", "rm", "bound"]);
    assert_eq!(nc.ok(&["network", "ls"]), "");
}

/// `-o anti_spoofing=true`: shown by `network inspect`, enforced (the port is guarded, the
/// container's own traffic flows); refused by name on another driver or with a bad value,
/// creating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_anti_spoofing() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("ncf-spoof").await;
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let nc = Netctl::new(&sb);
    let e = nc.error(&["network", "create", "-o", "anti_spoofing=maybe", "bad"]);
    assert!(e.contains("anti_spoofing") && e.contains("maybe"), "{e}");
    let e = nc.error(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "anti_spoofing=true",
        "lan",
    ]);
    assert!(e.contains("anti_spoofing"), "{e}");
    assert_eq!(nc.ok(&["network", "ls"]), "");
    nc.ok(&[
        "network",
        "create",
        "--subnet",
        "10.93.0.0/24",
        "-o",
        "anti_spoofing=true",
        "guarded",
    ]);
    let net = nc.json(&["network", "inspect", "guarded"]);
    assert_eq!(net["options"]["anti_spoofing"], "true", "{net}");
    nc.connect(&sb, "guarded", "c1", &[]);
    nc.connect(&sb, "guarded", "c2", &[]);
    assert_reaches(&c2, sa("10.93.0.3:7000"), &c1, sa("10.93.0.3:7000")).await;
    // A datagram c1 sends from an address not its own is dropped at its port; from its own
    // address it arrives.
    common::ip(
        &ns_name(&sb, "c1"),
        &["addr", "add", "10.93.0.9/32", "dev", "eth0"],
    );
    let rx = c2
        .run(|| std::net::UdpSocket::bind("10.93.0.3:9000"))
        .unwrap()
        .unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_millis(1500)))
        .unwrap();
    for (from, arrives) in [("10.93.0.9:0", false), ("10.93.0.2:0", true)] {
        let tx = c1
            .run(move || std::net::UdpSocket::bind(from))
            .unwrap()
            .unwrap();
        tx.send_to(b"x", "10.93.0.3:9000").unwrap();
        let mut buf = [0u8; 4];
        let got = rx.recv_from(&mut buf).map(|(_, p)| p.ip().to_string());
        assert_eq!(got.is_ok(), arrives, "from {from}: {got:?}");
    }
    nc.ok(&["disconnect", "guarded", "c1"]);
    nc.ok(&["disconnect", "guarded", "c2"]);
    nc.ok(&["network", "rm", "guarded"]);
}
