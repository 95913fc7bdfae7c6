//! A container's name-resolution files (hosts, resolv.conf, hostname) from what berth
//! recorded, following links and shared sandboxes; host and container modes; the default bridge
//! from a daemon.json — read back from the files and the kernel, in sandbox namespaces.

mod common;

use std::net::IpAddr;
use std::path::Path;

use berth::sandbox::Sandbox;
use berth::{
    DaemonConfig, Endpoint, Error, ExtraHost, Host, HostAddr, Link, NameOptions, Network,
    SandboxMode,
};
use common::*;

const HOST_RESOLV: &str = "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.example\n";
const HOST_HOSTS: &str = "127.0.0.1\tlocalhost\n192.0.2.7\tbuildbox\n";

/// A host over the sandbox whose resolv.conf and hosts files are test files.
async fn host_with_files(sb: &Sandbox, daemon: Option<DaemonConfig>) -> Host {
    let resolv = sb.state_dir().join("host-resolv.conf");
    let hosts = sb.state_dir().join("host-hosts");
    std::fs::write(&resolv, HOST_RESOLV).unwrap();
    std::fs::write(&hosts, HOST_HOSTS).unwrap();
    let mut b = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .resolv_conf(resolv)
        .hosts_file(hosts);
    if let Some(cfg) = daemon {
        b = b.daemon_config(cfg);
    }
    b.build().await.expect("host")
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn ipa(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_say_who_is_who_and_follow_a_linked_container() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-files").await.unwrap();
    let host = host_with_files(&sb, None).await;
    let (a, b) = (sb.netns("a").await.unwrap(), sb.netns("b").await.unwrap());
    let web = Network::bridge("web").subnet("10.30.0.0/24".parse().unwrap());
    let web = host.create_network(web).await.unwrap();
    host.attach(
        &web,
        Endpoint::new("b", b.clone()).ip("10.30.0.20".parse().unwrap()),
    )
    .await
    .unwrap();
    let ep = Endpoint::new("a", a.clone())
        .hostname("api")
        .domainname("corp.example")
        .add_host(ExtraHost::new("db", HostAddr::Ip(ipa("192.0.2.10"))))
        .add_host(ExtraHost::new("host.internal", HostAddr::HostGateway))
        .link(Link::new("b").alias("cache"))
        .dns_search("svc.example");
    let att = host.attach(&web, ep).await.unwrap();
    let dir = sb.state_dir().join("etc-a");
    host.write_files("a", &dir).await.unwrap();

    let hosts = read(&dir, "hosts");
    let me = att.ip().unwrap();
    for line in [
        "127.0.0.1\tlocalhost".to_string(),
        "::1\tlocalhost ip6-localhost ip6-loopback".into(),
        "192.0.2.10\tdb".into(),
        "10.30.0.1\thost.internal".into(),
        "10.30.0.20\tcache b".into(),
        format!("{me}\tapi.corp.example api"),
    ] {
        assert!(hosts.lines().any(|l| l == line), "{line:?} in:\n{hosts}");
    }
    let resolv = read(&dir, "resolv.conf");
    assert!(
        resolv.contains("nameserver 10.30.0.1\n") && !resolv.contains("192.0.2.53"),
        "the embedded resolver's address, not the host's servers: {resolv}"
    );
    assert!(resolv.contains("search svc.example\n"), "{resolv}");
    assert!(resolv.contains("options ndots:0\n"), "{resolv}");
    assert_eq!(read(&dir, "hostname"), "api\n");

    // The linked container re-attaches with a new address: a's hosts file follows.
    host.detach(&web, "b").await.unwrap();
    assert!(
        !read(&dir, "hosts").contains("cache"),
        "a detached link target has no line"
    );
    host.attach(
        &web,
        Endpoint::new("b", b.clone()).ip("10.30.0.77".parse().unwrap()),
    )
    .await
    .unwrap();
    let hosts = read(&dir, "hosts");
    assert!(
        hosts.lines().any(|l| l == "10.30.0.77\tcache b"),
        "rewritten with the new address:\n{hosts}"
    );
    assert_eq!(host.sandbox_files("a").await.unwrap().hosts, hosts);

    // gc forgets the sandboxes of containers that are gone.
    let report = host.gc(&["b"]).await.unwrap();
    assert_eq!(report.sandboxes_removed, vec!["a".to_string()]);
    assert!(host.sandbox("a").await.unwrap().is_none());
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&web).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_and_container_mode() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-modes").await.unwrap();
    let host = host_with_files(&sb, None).await;
    let owner = sb.netns("owner").await.unwrap();
    let net = Network::bridge("pod").subnet("10.31.0.0/24".parse().unwrap());
    let net = host.create_network(net).await.unwrap();

    // Host mode: the host's files, the container's hostname and extra hosts; nothing created.
    let links_before = link_names(sb.host()).await;
    let names = NameOptions {
        hostname: Some("hm".into()),
        extra_hosts: vec![ExtraHost::new("db", HostAddr::Ip(ipa("192.0.2.10")))],
        ..Default::default()
    };
    let rec = host.use_host_netns("hm", names).await.unwrap();
    assert_eq!(rec.mode, SandboxMode::Host);
    assert_eq!(link_names(sb.host()).await, links_before);
    let f = host.sandbox_files("hm").await.unwrap();
    assert_eq!(f.hosts, format!("{HOST_HOSTS}192.0.2.10\tdb\n"));
    assert!(
        f.resolv_conf.contains("nameserver 127.0.0.53\n"),
        "host mode keeps loopback"
    );
    assert_eq!(f.hostname, "hm\n");
    assert!(host.sandbox_netns("hm").await.unwrap().is_none());
    // A host-mode container cannot also be attached: refused, nothing changes.
    let other = sb.netns("other").await.unwrap();
    let e = host
        .attach(&net, Endpoint::new("hm", other.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidValue { .. }), "{e}");
    assert!(host.endpoints(&net).await.unwrap().is_empty());

    // Container mode: files and netns are the owner's, and follow the owner's changes.
    assert!(matches!(
        host.share_sandbox("side", "nobody").await.unwrap_err(),
        Error::SandboxNotFound { .. }
    ));
    host.attach(&net, Endpoint::new("owner", owner.clone()).hostname("ownr"))
        .await
        .unwrap();
    host.share_sandbox("side", "owner").await.unwrap();
    assert_eq!(
        host.sandbox_netns("side").await.unwrap(),
        Some(sb.netns_path("owner"))
    );
    let dir = sb.state_dir().join("etc-side");
    let side = host.write_files("side", &dir).await.unwrap();
    assert_eq!(side, host.sandbox_files("owner").await.unwrap());
    assert_eq!(read(&dir, "hostname"), "ownr\n");
    let net2 = Network::bridge("pod2").subnet("10.32.0.0/24".parse().unwrap());
    let net2 = host.create_network(net2).await.unwrap();
    let att2 = host
        .attach(&net2, Endpoint::new("owner", owner.clone()).ifname("eth1"))
        .await
        .unwrap();
    let hosts = read(&dir, "hosts");
    assert!(
        hosts.contains(&format!("{}\townr", att2.ip().unwrap())),
        "the sharer's files follow the owner's new network:\n{hosts}"
    );
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&net).await.unwrap();
    host.delete_network(&net2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_bridge_is_made_from_daemon_json() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-djson").await.unwrap();
    let cfg = DaemonConfig::from_json(
        r#"{
            "bip": "10.123.0.1/24",
            "fixed-cidr": "10.123.0.128/25",
            "mtu": 1400,
            "dns": ["192.0.2.53", "192.0.2.54"],
            "log-level": "info"
        }"#,
    )
    .unwrap();
    let host = host_with_files(&sb, Some(cfg.clone())).await;
    let bridge = host.network("bridge").await.unwrap();
    assert!(
        !bridge.dns_enabled,
        "no embedded resolver on the default bridge"
    );
    let dev = bridge.device.clone().unwrap();
    let sbh = sb.host_name().to_string();
    let addr = ip(&sbh, &["-o", "-4", "addr", "show", "dev", &dev]);
    assert!(
        addr.contains("inet 10.123.0.1/24"),
        "bip on the bridge: {addr}"
    );
    let link = ip(&sbh, &["link", "show", "dev", &dev]);
    assert!(link.contains("mtu 1400"), "{link}");

    let c = sb.netns("c").await.unwrap();
    let att = host
        .attach("bridge", Endpoint::new("c", c.clone()))
        .await
        .unwrap();
    let v4 = att.ipv4.unwrap();
    assert!(
        "10.123.0.128/25"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&v4.addr()),
        "from fixed-cidr: {v4}"
    );
    assert_eq!(v4.prefix_len(), 24);
    assert_eq!(att.gateway, Some("10.123.0.1".parse().unwrap()));
    let cn = ns_name(&sb, "c");
    assert!(ip(&cn, &["link", "show", "dev", "eth0"]).contains("mtu 1400"));
    assert!(ip(&cn, &["route", "show", "default"]).contains("via 10.123.0.1"));
    let f = host.sandbox_files("c").await.unwrap();
    assert_eq!(
        f.resolv_conf,
        "# Generated by berth.\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example\n"
    );

    // The same config again changes nothing; another one while a container is on the bridge
    // is refused, and once it is empty the bridge is re-made.
    let again = host_with_files(&sb, Some(cfg)).await;
    assert_eq!(again.network("bridge").await.unwrap().id, bridge.id);
    let other = DaemonConfig::from_json(r#"{"bip": "10.124.0.1/24"}"#).unwrap();
    let b = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .daemon_config(other.clone())
        .build()
        .await;
    assert!(matches!(b.unwrap_err(), Error::NetworkInUse { .. }));
    host.detach("bridge", "c").await.unwrap();
    let h2 = host_with_files(&sb, Some(other)).await;
    let addr = ip(&sbh, &["-o", "-4", "addr", "show", "dev", &dev]);
    assert!(addr.contains("inet 10.124.0.1/24"), "re-made: {addr}");
    h2.delete_network("bridge").await.unwrap();
    assert!(!link_names(sb.host()).await.contains(&dev));
}

/// `--link` on a network with ICC off: the linking container reaches the linked one's exposed
/// port, nothing else passes, and the allowance follows the linked container to a new address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_open_exposed_ports_through_icc_off() {
    if !require_root() {
        return;
    }
    use berth::sandbox::tcp_probe;
    use std::net::SocketAddr;
    let mut sb = Sandbox::new("bt-links").await.unwrap();
    let host = host_with_files(&sb, None).await;
    let (x, y, z) = (
        sb.netns("x").await.unwrap(),
        sb.netns("y").await.unwrap(),
        sb.netns("z").await.unwrap(),
    );
    let net = Network::bridge("locked")
        .subnet("10.33.0.0/24".parse().unwrap())
        .icc(false);
    let net = host.create_network(net).await.unwrap();
    let expose80 = "80/tcp".parse().unwrap();
    host.attach(
        &net,
        Endpoint::new("y", y.clone())
            .ip("10.33.0.10".parse().unwrap())
            .expose(expose80),
    )
    .await
    .unwrap();
    host.attach(
        &net,
        Endpoint::new("x", x.clone()).link(Link::new("y").alias("web")),
    )
    .await
    .unwrap();
    host.attach(&net, Endpoint::new("z", z.clone()))
        .await
        .unwrap();
    let to = |ip: &str, port: u16| SocketAddr::new(ipa(ip), port);
    let any = |port: u16| SocketAddr::new(ipa("0.0.0.0"), port);
    tcp_probe(&y, any(80), &x, to("10.33.0.10", 80))
        .await
        .expect("x reaches y's exposed port through the link");
    let blocked = [
        tcp_probe(&y, any(81), &x, to("10.33.0.10", 81)).await,
        tcp_probe(&y, any(80), &z, to("10.33.0.10", 80)).await,
    ];
    for (i, r) in blocked.iter().enumerate() {
        assert!(r.is_err(), "probe {i} must be blocked");
    }
    let xa = host.endpoints(&net).await.unwrap()[0].ip().unwrap();
    assert_blocked(
        &x,
        any(80),
        &y,
        SocketAddr::new(xa, 80),
        "y -> x is not part of the link",
    )
    .await;
    // y comes back with another address: the allowance follows it; the old one is gone.
    host.detach(&net, "y").await.unwrap();
    let gone = host.check_firewall().await.unwrap();
    assert!(
        gone.is_empty(),
        "no flow towards a detached container is expected: {gone:?}"
    );
    host.attach(
        &net,
        Endpoint::new("y", y.clone()).ip("10.33.0.50".parse().unwrap()),
    )
    .await
    .unwrap();
    tcp_probe(&y, any(80), &x, to("10.33.0.50", 80))
        .await
        .expect("the link follows y's new address");
    assert!(host.check_firewall().await.unwrap().is_empty());
    // gc keeps the link flows of live containers, and removes x's with x.
    host.gc(&["x", "y", "z"]).await.unwrap();
    tcp_probe(&y, any(80), &x, to("10.33.0.50", 80))
        .await
        .expect("gc kept the link");
    host.gc(&["y", "z"]).await.unwrap();
    host.gc::<&str>(&[]).await.unwrap();
    host.delete_network(&net).await.unwrap();
}

/// A container's sandbox record goes with its last attachment (a runtime's containers come and
/// go with ids of their own: without this, `sandboxes/` grew by one record per container ever
/// attached, until gc), and stays while something needs it: another attachment, written files,
/// a container sharing its sandbox or linking to it. Its name settings come again with its next
/// attach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_records_go_with_the_last_detach_unless_needed() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("bt-sbgone").await.unwrap();
    let host = host_with_files(&sb, None).await;
    let (x, y, o) = (
        sb.netns("x").await.unwrap(),
        sb.netns("y").await.unwrap(),
        sb.netns("o").await.unwrap(),
    );
    let one = host
        .create_network(Network::bridge("one").subnet("10.33.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let two = host
        .create_network(Network::bridge("two").subnet("10.34.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let records = || {
        let mut v: Vec<String> = std::fs::read_dir(sb.state_dir().join("sandboxes"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };

    // Two networks: the record stays until the second detach, then goes.
    let named = || {
        Endpoint::new("x", x.clone())
            .hostname("ex")
            .add_host(ExtraHost::new("db", HostAddr::Ip(ipa("192.0.2.10"))))
    };
    host.attach(&one, named()).await.unwrap();
    host.attach(&two, Endpoint::new("x", x.clone()).ifname("eth1"))
        .await
        .unwrap();
    host.detach(&one, "x").await.unwrap();
    assert_eq!(
        host.sandbox("x").await.unwrap().unwrap().names.hostname,
        Some("ex".into()),
        "still attached to two"
    );
    host.detach(&two, "x").await.unwrap();
    assert!(host.sandbox("x").await.unwrap().is_none());
    assert_eq!(records(), Vec::<String>::new());
    // Attached again, with its settings again: a record like the first.
    host.attach(&one, named()).await.unwrap();
    let f = host.sandbox_files("x").await.unwrap();
    assert_eq!(f.hostname, "ex\n");
    assert!(f.hosts.contains("192.0.2.10\tdb\n"), "{}", f.hosts);
    host.detach(&one, "x").await.unwrap();
    assert_eq!(records(), Vec::<String>::new());

    // Written files: kept current after the last detach, so the record stays (until gc).
    host.attach(&one, Endpoint::new("y", y.clone()).hostname("why"))
        .await
        .unwrap();
    let dir = sb.state_dir().join("etc-y");
    host.write_files("y", &dir).await.unwrap();
    host.detach(&one, "y").await.unwrap();
    assert_eq!(records(), vec!["y.json".to_string()]);
    assert!(
        !read(&dir, "resolv.conf").contains("10.33.0.1"),
        "rewritten without the resolver of the network it left"
    );

    // Shared by another container: the owner's record stays.
    host.attach(&one, Endpoint::new("o", o.clone()).hostname("ownr"))
        .await
        .unwrap();
    host.share_sandbox("side", "o").await.unwrap();
    host.detach(&one, "o").await.unwrap();
    assert_eq!(
        host.sandbox("o").await.unwrap().unwrap().names.hostname,
        Some("ownr".into())
    );
    assert_eq!(host.sandbox_files("side").await.unwrap().hostname, "ownr\n");

    // Linked to by another container: stays, its exposed ports are what the link lets through.
    host.attach(
        &one,
        Endpoint::new("x", x.clone()).expose("80/tcp".parse().unwrap()),
    )
    .await
    .unwrap();
    host.attach(&two, Endpoint::new("y2", y.clone()).link(Link::new("x")))
        .await
        .unwrap();
    host.detach(&one, "x").await.unwrap();
    assert_eq!(host.sandbox("x").await.unwrap().unwrap().exposed.len(), 1);
    host.detach(&two, "y2").await.unwrap();

    // A record left by a detach cut short after its endpoint record went (a process killed
    // there): gc removes it even for a live container, as the detach would have; so it does
    // x's, which y2 no longer links to (y2's record went with y2).
    host.state()
        .put_sandbox(&berth::SandboxRecord::new("cut"))
        .unwrap();
    let report = host.gc(&["cut", "o", "side", "x", "y"]).await.unwrap();
    assert_eq!(report.sandboxes_removed, vec!["cut", "x"]);

    let report = host.gc::<&str>(&[]).await.unwrap();
    assert_eq!(report.sandboxes_removed, vec!["o", "side", "y"]);
    assert_eq!(records(), Vec::<String>::new());
    host.delete_network(&one).await.unwrap();
    host.delete_network(&two).await.unwrap();
}
