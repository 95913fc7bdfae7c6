//! netctl's name flags, `files`, host and container modes, and `--daemon-config`, run as a user
//! would (`ip netns exec SANDBOX netctl …`).

mod common;

use berth::sandbox::Sandbox;
use common::netctl::{Netctl, path_str};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_flags_files_and_modes() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-nnames").await.unwrap();
    for role in ["c1", "c2", "c3"] {
        sb.netns(role).await.unwrap();
    }
    let n = Netctl::new(&sb);
    n.ok(&["network", "create", "--subnet", "10.40.0.0/24", "web"]);
    n.connect(&sb, "web", "c2", &["--ip", "10.40.0.9", "--alias", "db"]);
    let att = n.connect(
        &sb,
        "web",
        "c1",
        &[
            "--hostname",
            "front",
            "--add-host",
            "mirror:192.0.2.80",
            "--add-host",
            "gw:host-gateway",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "corp.example",
            "--link",
            "c2:store",
        ],
    );
    let dir = sb.state_dir().join("etc-c1");
    n.ok(&["files", "c1", path_str(&dir)]);
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    let me = att["ipv4"].as_str().unwrap().split('/').next().unwrap();
    for line in [
        "192.0.2.80\tmirror".to_string(),
        "10.40.0.1\tgw".into(),
        "10.40.0.9\tstore c2".into(),
        format!("{me}\tfront"),
    ] {
        assert!(hosts.lines().any(|l| l == line), "{line:?} in:\n{hosts}");
    }
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 10.40.0.1\n"), "{resolv}");
    assert!(resolv.contains("search corp.example\n"), "{resolv}");
    assert_eq!(
        std::fs::read_to_string(dir.join("hostname")).unwrap(),
        "front\n"
    );
    // The link target moves: the written hosts file follows (another netctl process did it).
    n.ok(&["disconnect", "web", "c2"]);
    n.connect(&sb, "web", "c2", &["--ip", "10.40.0.99"]);
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    assert!(hosts.contains("10.40.0.99\tstore c2"), "{hosts}");

    // Container mode: the JSON names the owner's netns; files are the owner's.
    let shared = n.json(&["connect", "container:c1", "side"]);
    assert_eq!(shared["netns"], path_str(&sb.netns_path("c1")));
    let sdir = sb.state_dir().join("etc-side");
    n.ok(&["files", "side", path_str(&sdir)]);
    assert_eq!(
        std::fs::read_to_string(sdir.join("hosts")).unwrap(),
        std::fs::read_to_string(dir.join("hosts")).unwrap()
    );
    // Host mode: the host's hosts file plus the extra entries, the given hostname.
    let hm = n.json(&[
        "connect",
        "--hostname",
        "hostmode",
        "--add-host",
        "db:192.0.2.10",
        "host",
        "hm",
    ]);
    assert_eq!(hm["network"], "host");
    let hdir = sb.state_dir().join("etc-hm");
    n.ok(&["files", "hm", path_str(&hdir)]);
    let hosts = std::fs::read_to_string(hdir.join("hosts")).unwrap();
    let machine = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    assert!(hosts.starts_with(machine.trim_end()), "{hosts}");
    assert!(hosts.ends_with("192.0.2.10\tdb\n"), "{hosts}");
    assert_eq!(
        std::fs::read_to_string(hdir.join("hostname")).unwrap(),
        "hostmode\n"
    );

    // The predefined `none` network: made on first use; only `lo`, up.
    let none = n.connect(&sb, "none", "c3", &[]);
    assert!(none["ipv4"].is_null(), "{none}");
    let links = ip(&ns_name(&sb, "c3"), &["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");

    // Bad input: one clear error line, nothing changed.
    let e = n.error(&["connect", "--add-host", "nocolon", "web", "c9"]);
    assert!(e.contains("add-host"), "{e}");
    let e = n.error(&["connect", "container:nobody", "x"]);
    assert!(e.contains("nobody"), "{e}");
    let e = n.error(&["files", "ghost", path_str(&sdir)]);
    assert!(e.contains("ghost"), "{e}");
    n.ok(&["gc"]);
    n.ok(&["network", "rm", "web"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_config_makes_the_default_bridge() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-ndjson").await.unwrap();
    sb.netns("c1").await.unwrap();
    let cfg = sb.state_dir().join("daemon.json");
    std::fs::write(
        &cfg,
        r#"{"bip": "10.41.0.1/24", "fixed-cidr": "10.41.0.64/26", "mtu": 1380, "dns": ["192.0.2.99"]}"#,
    )
    .unwrap();
    let n = Netctl::new(&sb);
    let c = path_str(&cfg);
    let att = n.connect(&sb, "bridge", "c1", &[]);
    // Without a config the first connect to `bridge` made it with Docker's defaults…
    assert!(
        att["ipv4"].as_str().unwrap().starts_with("172.17."),
        "{att}"
    );
    n.ok(&["disconnect", "bridge", "c1"]);
    // …and with one, the bridge is re-made as it says.
    let att = n.json(&[
        "--daemon-config",
        c,
        "connect",
        "--netns",
        path_str(&sb.netns_path("c1")),
        "bridge",
        "c1",
    ]);
    let v4 = att["ipv4"].as_str().unwrap();
    assert!(v4.starts_with("10.41.0.") && v4.ends_with("/24"), "{att}");
    let last: u8 = v4.split(['.', '/']).nth(3).unwrap().parse().unwrap();
    assert!((64..128).contains(&last), "from fixed-cidr: {v4}");
    let inspect = n.json(&["--daemon-config", c, "network", "inspect", "bridge"]);
    assert_eq!(inspect["subnets"][0]["subnet"], "10.41.0.0/24");
    assert!(ip(&ns_name(&sb, "c1"), &["link", "show", "eth0"]).contains("mtu 1380"));
    let dir = sb.state_dir().join("etc-c1");
    n.ok(&["files", "c1", path_str(&dir)]);
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 192.0.2.99\n")
            && resolv
                .lines()
                .filter(|l| l.starts_with("nameserver"))
                .count()
                == 1,
        "daemon.json's dns, no resolver: {resolv}"
    );
    // A broken config is named.
    std::fs::write(&cfg, r#"{"bip": "not an address"}"#).unwrap();
    let e = n.error(&["--daemon-config", c, "network", "ls"]);
    assert!(e.contains("daemon.json"), "{e}");
    n.ok(&["gc"]);
    n.ok(&["network", "rm", "bridge"]);
}
