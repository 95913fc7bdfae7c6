//! DHCP networks (`--ipam-driver dhcp`) on this kernel, proven by packets: dnsmasq, in a "lan"
//! netns joined to the sandbox host netns by a veth (the host end, `lan0`, is the macvlan
//! parent), is the LAN's DHCP server. A container gets a lease (address in the range, default
//! route via the announced router, the announced nameserver in resolv.conf), talks to the LAN,
//! renews (T1 = 3 s), and releases on detach; hostname and client id reach the server. With the
//! server gone, an attach fails with `Error::DhcpTimeout` after the bounded wait, making
//! nothing. The same through netctl.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::netlink::Netlink;
use berth::sandbox::Sandbox;
use berth::{DhcpEvent, Endpoint, Error, Host, IpamDriver, Netns, Network};
use common::netctl::{Netctl, words};
use common::*;

const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const ROUTER: &str = "198.19.40.2";
const DNS: &str = "198.19.40.53";
const RANGE: &str = "198.19.40.100,198.19.40.150";

/// dnsmasq as the LAN's DHCP server (no DNS), in the sandbox netns `ns`; killed by its pid.
struct Dnsmasq {
    child: Option<Child>,
    dir: PathBuf,
}

impl Dnsmasq {
    /// Serving `range` (`FIRST,LAST`) from `dir` (its lease file and log), announcing
    /// nameserver `dns`.
    fn start(ns: &str, dir: &Path, range: &str, dns: &str) -> Dnsmasq {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
        // `ip netns exec` execs dnsmasq in place: the child's pid is dnsmasq's.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, DNSMASQ])
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--port=0",
                "--interface=eth0",
                "--user=root",
                "--pid-file=",
                "--dhcp-authoritative",
                // No ICMP check of an address before offering it (it delays the offer by 3 s).
                "--no-ping",
            ])
            .arg(format!("--dhcp-range={range},255.255.255.0,2m"))
            .arg(format!("--dhcp-option=option:router,{ROUTER}"))
            .arg(format!("--dhcp-option=option:dns-server,{dns}"))
            // T1 3 s, T2 5 s (dnsmasq's shortest lease is 2 min).
            .args(["--dhcp-option=58,3", "--dhcp-option=59,5"])
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .args(["--log-dhcp", "--log-facility=-"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dnsmasq");
        let d = Dnsmasq {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !d.log().contains("DHCP, IP range") {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not start: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// The lease file's line for `ip`: `EXPIRY MAC IP HOSTNAME CLIENT-ID`.
    fn lease(&self, ip: Ipv4Addr) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(self.dir.join("leases")).unwrap_or_default();
        text.lines()
            .map(|l| l.split(' ').map(String::from).collect::<Vec<_>>())
            .find(|w| w.get(2).map(String::as_str) == Some(&ip.to_string()))
    }

    /// Kills it (by pid) and reaps it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("dnsmasq's log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Root, dnsmasq installed; else skipped, saying why.
fn runnable(test: &str) -> bool {
    if !require_root() {
        return false;
    }
    if !Path::new(DNSMASQ).exists() {
        println!(
            "SKIPPED: {test}: dnsmasq is not installed (apt-get install dnsmasq-base; cargo xtask setup does)"
        );
        return false;
    }
    true
}

/// The sandbox's LAN: `lan0` in the host netns (no address of its own in the range) joined
/// to `eth0` of netns `lan` (the router and DHCP server, 198.19.40.2), and dnsmasq there.
async fn lan(label: &str) -> (Sandbox, Netns, Dnsmasq) {
    let mut sb = Sandbox::new(label).await.unwrap();
    let lan = sb
        .add_peer(
            "lan",
            "lan0",
            "198.19.41.1/24".parse().unwrap(),
            format!("{ROUTER}/24").parse().unwrap(),
        )
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("{label}-dnsmasq-{}", std::process::id()));
    let server = Dnsmasq::start(&ns_name(&sb, "lan"), &dir, RANGE, DNS);
    (sb, lan, server)
}

/// A host over the sandbox whose DHCP attaches wait 3 s for a server.
async fn dhcp_host(sb: &Sandbox) -> Host {
    Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .dhcp_timeout(Duration::from_secs(3))
        .build()
        .await
        .unwrap()
}

/// The leased IPv4 address of an attachment.
fn leased(att: &berth::Attachment) -> Ipv4Addr {
    let ip = att.ipv4.expect("a leased address").addr();
    assert!(
        (Ipv4Addr::new(198, 19, 40, 100)..=Ipv4Addr::new(198, 19, 40, 150)).contains(&ip),
        "{ip} in the range"
    );
    ip
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_traffic_renewal_release_and_server_gone() {
    if !runnable("lease_traffic_renewal_release_and_server_gone") {
        return;
    }
    let (mut sb, lan, mut server) = lan("bt-dhcp").await;
    let host = dhcp_host(&sb).await;
    let net = host
        .create_network(
            Network::macvlan("lan")
                .parent("lan0".parse().unwrap())
                .dhcp(),
        )
        .await
        .unwrap();
    assert_eq!(net.ipam_driver, IpamDriver::Dhcp);
    assert!(net.subnets.is_empty(), "no pool of berth's");
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let keeper = tokio::spawn(host.dhcp_client().events(tx).run());

    // The lease.
    let c1 = sb.netns("c1").await.unwrap();
    let att = host
        .attach("lan", Endpoint::new("c1", c1.clone()).hostname("web-1"))
        .await
        .unwrap();
    let lease = att.dhcp.clone().expect("a lease recorded");
    let ip = leased(&att);
    println!(
        "leased {ip}/{} from {}",
        att.ipv4.unwrap().prefix_len(),
        lease.server
    );
    assert_eq!(att.ipv4.unwrap().prefix_len(), 24);
    assert_eq!(att.gateway, Some(ROUTER.parse().unwrap()));
    assert_eq!(lease.server.to_string(), ROUTER);
    assert_eq!(lease.dns, vec![DNS.parse::<Ipv4Addr>().unwrap()]);
    assert_eq!(
        (lease.lease_secs, lease.t1_secs, lease.t2_secs),
        (120, 3, 5)
    );
    let routes = Netlink::open(&c1)
        .await
        .unwrap()
        .route()
        .list()
        .await
        .unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r.prefix_len == 0 && r.gateway == Some(ROUTER.parse().unwrap())),
        "default route via the announced router: {routes:?}"
    );
    let files = host.sandbox_files("c1").await.unwrap();
    assert!(
        files.resolv_conf.contains(&format!("nameserver {DNS}")),
        "the announced nameserver: {}",
        files.resolv_conf
    );
    // Hostname and client id reached the server.
    let line = server.lease(ip).expect("dnsmasq lists the lease");
    println!("dnsmasq lease: {}", line.join(" "));
    assert_eq!(line[1], att.mac.unwrap().to_string());
    assert_eq!(line[3], "web-1");
    let id = berth::dhcp::hex_colons(&berth::dhcp::client_id("lan", "c1"));
    assert_eq!(line[4], id);
    assert_eq!(lease.client_id, id);

    // Traffic both ways between the container and the LAN.
    let seen = assert_reaches(
        &lan,
        sa(&format!("{ROUTER}:7000")),
        &c1,
        sa(&format!("{ROUTER}:7000")),
    )
    .await;
    assert_eq!(seen.ip(), IpAddr::V4(ip), "the LAN sees the leased address");
    assert_reaches(&c1, sa("0.0.0.0:7001"), &lan, sa(&format!("{ip}:7001"))).await;

    // Renewal at T1: the keeper's REQUEST is ACKed, the record and dnsmasq's expiry move on.
    let expiry0: u64 = line[0].parse().unwrap();
    let renewed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Some(DhcpEvent::Renewed {
                    container, lease, ..
                }) if container == "c1" => {
                    return lease;
                }
                Some(DhcpEvent::Lost { reason, .. }) => panic!("lease lost: {reason}"),
                Some(_) => {}
                None => panic!("keeper ended"),
            }
        }
    })
    .await
    .expect("renewed within 15 s");
    assert!(renewed.obtained >= lease.obtained);
    let recorded = host.endpoints("lan").await.unwrap()[0]
        .dhcp
        .clone()
        .unwrap();
    assert!(recorded.obtained > lease.obtained || recorded == renewed);
    wait_until("dnsmasq's expiry to move", Duration::from_secs(5), || {
        server
            .lease(ip)
            .is_some_and(|l| l[0].parse::<u64>().unwrap() > expiry0)
    })
    .await;
    let acks = server.log().matches(&format!("DHCPACK(eth0) {ip}")).count();
    println!(
        "dnsmasq acked {ip} {acks} times; expiry {expiry0} -> {}",
        server.lease(ip).unwrap()[0]
    );
    assert!(acks >= 2, "{}", server.log());
    assert!(host.check("lan", "c1").await.unwrap().is_empty());

    // Detach: DHCPRELEASE, the server forgets the lease; nothing left in the container.
    host.detach("lan", "c1").await.unwrap();
    wait_until("dnsmasq to drop the lease", Duration::from_secs(5), || {
        server.lease(ip).is_none()
    })
    .await;
    assert!(server.log().contains(&format!("DHCPRELEASE(eth0) {ip}")));
    assert_eq!(link_names(&c1).await, ["lo"]);
    assert!(host.endpoints("lan").await.unwrap().is_empty());

    // A lease the server no longer grants: dnsmasq restarted without its lease file and with
    // another range NAKs the renewal; the keeper removes the address and default route and
    // reports the endpoint, then seeks and puts in place a new lease, and rewrites the
    // container's files for it (the new server announces another nameserver).
    let c4 = sb.netns("c4").await.unwrap();
    let a4 = host
        .attach("lan", Endpoint::new("c4", c4.clone()))
        .await
        .unwrap();
    let ip4 = a4.ipv4.unwrap();
    let files4 = sb.state_dir().with_extension("c4-files");
    host.write_files("c4", &files4).await.unwrap();
    let written = |name: &str| std::fs::read_to_string(files4.join(name)).unwrap();
    assert!(written("resolv.conf").contains(&format!("nameserver {DNS}")));
    server.stop();
    let dir2 = server.dir.with_extension("2");
    let mut server = Dnsmasq::start(
        &ns_name(&sb, "lan"),
        &dir2,
        "198.19.40.200,198.19.40.250",
        "198.19.40.54",
    );
    let (address, reason) = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Some(DhcpEvent::Lost {
                    container,
                    address,
                    reason,
                    ..
                }) if container == "c4" => return (address, reason),
                Some(_) => {}
                None => panic!("keeper ended"),
            }
        }
    })
    .await
    .expect("the lost lease reported within 15 s");
    println!("c4 lost {address}: {reason}");
    assert_eq!(address, ip4);
    assert!(reason.contains("DHCPNAK"), "{reason}");
    let nl4 = Netlink::open(&c4).await.unwrap();
    assert!(
        nl4.addresses(None)
            .await
            .unwrap()
            .iter()
            .all(|(_, a, _)| *a != IpAddr::V4(ip4.addr())),
        "the address is gone"
    );
    assert!(
        !nl4.route()
            .list()
            .await
            .unwrap()
            .iter()
            .any(|r| r.prefix_len == 0 && r.family == berth::netlink::Family::V4),
        "and the default route"
    );
    let missing = host.check("lan", "c4").await.unwrap();
    assert!(
        missing.iter().any(|m| m.contains("DHCP lease")),
        "check reports the lost lease: {missing:?}"
    );
    let rec = host.endpoints("lan").await.unwrap();
    let rec4 = rec.iter().find(|a| a.container == "c4").unwrap();
    assert!(rec4.dhcp.as_ref().unwrap().expired && rec4.ipv4.is_none());
    // The keeper then seeks a new lease (DISCOVER again): the new server grants one from its
    // range, the address and default route are back and `check` is satisfied.
    let lease = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await {
                Some(DhcpEvent::Acquired {
                    container, lease, ..
                }) if container == "c4" => return lease,
                Some(_) => {}
                None => panic!("keeper ended"),
            }
        }
    })
    .await
    .expect("a new lease for c4 within 30 s");
    let new_ip = lease.address.addr();
    println!("c4 acquired {} after the loss", lease.address);
    assert!(
        (Ipv4Addr::new(198, 19, 40, 200)..=Ipv4Addr::new(198, 19, 40, 250)).contains(&new_ip),
        "from the new server's range: {new_ip}"
    );
    assert!(
        nl4.addresses(None)
            .await
            .unwrap()
            .iter()
            .any(|(_, a, _)| *a == IpAddr::V4(new_ip)),
        "the new address is on the interface"
    );
    assert!(
        nl4.route()
            .list()
            .await
            .unwrap()
            .iter()
            .any(|r| r.prefix_len == 0 && r.family == berth::netlink::Family::V4),
        "and the default route is back"
    );
    assert!(host.check("lan", "c4").await.unwrap().is_empty());
    let (resolv, hosts) = (written("resolv.conf"), written("hosts"));
    println!("c4's written resolv.conf after the new lease: {resolv:?}");
    assert!(
        resolv.contains("nameserver 198.19.40.54") && !resolv.contains(DNS),
        "{resolv}"
    );
    assert!(
        hosts.contains(&new_ip.to_string()) && !hosts.contains(&ip4.addr().to_string()),
        "{hosts}"
    );
    let _ = std::fs::remove_dir_all(&files4);
    wait_until(
        "dnsmasq to list the new lease",
        Duration::from_secs(5),
        || server.lease(new_ip).is_some(),
    )
    .await;
    host.detach("lan", "c4").await.unwrap();
    assert_eq!(link_names(&c4).await, ["lo"]);

    // Two attaches of one container to the network at once (two interface names): the host is
    // not held while each waits for its lease, so both may get one; exactly one is recorded,
    // the other fails by name, releases its lease and leaves no interface.
    let c6 = sb.netns("c6").await.unwrap();
    let (r0, r1) = tokio::join!(
        host.attach("lan", Endpoint::new("c6", c6.clone())),
        host.attach("lan", Endpoint::new("c6", c6.clone()).ifname("eth1")),
    );
    let (won, lost) = match (r0, r1) {
        (Ok(a), Err(e)) | (Err(e), Ok(a)) => (a, e),
        other => panic!("exactly one attach of c6 must win: {other:?}"),
    };
    assert!(matches!(lost, Error::EndpointExists { .. }), "{lost:?}");
    // Both asked as the same client (one client id per container and network): the loser's
    // rollback must not have released the winner's lease.
    let won_ip = won.ipv4.expect("leased").addr();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.lease(won_ip).is_some(),
        "the winner's lease is still granted: {}",
        server.log()
    );
    let mut names = link_names(&c6).await;
    names.sort();
    let mut want = vec!["lo".to_string(), won.ifname.clone()];
    want.sort();
    assert_eq!(names, want);
    let recorded = host.endpoints("lan").await.unwrap();
    assert_eq!(
        recorded.iter().filter(|a| a.container == "c6").count(),
        1,
        "one record"
    );
    host.detach("lan", "c6").await.unwrap();
    assert_eq!(link_names(&c6).await, ["lo"]);

    // A failure after the lease (injected after the records): rolled back, the lease released.
    let (faulty, fail_at) = faulty_host(&sb).await;
    *fail_at.lock().unwrap() = Some(berth::Step::PersistEndpoint);
    let c3 = sb.netns("c3").await.unwrap();
    let err = faulty
        .attach("lan", Endpoint::new("c3", c3.clone()).hostname("doomed"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Injected { .. }), "{err:?}");
    assert!(server.log().contains("DHCPACK(eth0)") && server.log().contains("doomed"));
    wait_until(
        "the rolled-back lease released",
        Duration::from_secs(5),
        || {
            !std::fs::read_to_string(server.dir.join("leases"))
                .unwrap_or_default()
                .contains("doomed")
        },
    )
    .await;
    assert_eq!(link_names(&c3).await, ["lo"]);
    assert!(host.endpoints("lan").await.unwrap().is_empty());

    // The server gone: the attach fails after the bounded wait, typed, making nothing. It does
    // not hold the host meanwhile: an attach to another network, begun while it waits, is
    // done before it gives up.
    server.stop();
    host.create_network(Network::bridge("side").subnet("10.77.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let c5 = sb.netns("c5").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let start = Instant::now();
    let waiting = async {
        let r = host.attach("lan", Endpoint::new("c2", c2.clone())).await;
        (r, Instant::now())
    };
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let a = host.attach("side", Endpoint::new("c5", c5.clone())).await;
        (a, Instant::now())
    };
    let ((err, lan_done), (side, side_done)) = tokio::join!(waiting, meanwhile);
    let err = err.unwrap_err();
    side.expect("the attach to another network");
    assert!(
        side_done < lan_done,
        "the other attach finished while the DHCP one still waited for its server"
    );
    println!(
        "another attach done {:?} after the DHCP attach began, which gave up after {:?}",
        side_done - start,
        lan_done - start
    );
    host.detach("side", "c5").await.unwrap();
    host.delete_network("side").await.unwrap();
    println!("server gone after {:?}: {err}", start.elapsed());
    assert!(
        matches!(&err, Error::DhcpTimeout { network, container, .. } if network == "lan" && container == "c2"),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(link_names(&c2).await, ["lo"]);
    assert!(host.endpoints("lan").await.unwrap().is_empty());
    assert!(host.state().attachments_of("c2").unwrap().is_empty());

    keeper.abort();
    host.delete_network("lan").await.unwrap();
    assert!(
        link_names(sb.host()).await.contains(&"lan0".to_string()),
        "the admin's parent stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_dhcp_network() {
    if !runnable("netctl_dhcp_network") {
        return;
    }
    let (mut sb, lan, server) = lan("bt-dhcpn").await;
    let n = Netctl::new(&sb).with_flags(&["--dhcp-timeout", "3"]);
    // What a DHCP network cannot have: typed errors, nothing made.
    let e = n.error(&words(
        "network create -d macvlan --ipam-driver dhcp --subnet 10.9.0.0/24 -o parent=lan0 x",
    ));
    assert!(e.contains("ipam driver") && e.contains("--subnet"), "{e}");
    let e = n.error(&words("network create --ipam-driver dhcp y"));
    assert!(e.contains("bridge") && e.contains("dhcp"), "{e}");
    let e = n.error(&words("network create -d macvlan --ipam-driver dhcp z"));
    assert!(e.contains("parent"), "{e}");
    n.fails(
        2,
        &words("network create -d macvlan --ipam-driver pool -o parent=lan0 w"),
    );
    assert_eq!(n.ok(&["network", "ls"]), "");

    n.ok(&words(
        "network create -d macvlan --ipam-driver dhcp -o parent=lan0 lan",
    ));
    let inspect = n.json(&["network", "inspect", "lan"]);
    assert_eq!(inspect["ipam_driver"], "dhcp");
    sb.netns("c1").await.unwrap();
    let att = n.connect(&sb, "lan", "c1", &["--hostname", "api"]);
    println!("netctl connect: {att}");
    let ip: Ipv4Addr = att["ipv4"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(att["gateway"], ROUTER);
    assert_eq!(att["dhcp"]["server"], ROUTER);
    assert_eq!(att["dhcp"]["hostname"], "api");
    let c1 = Netns::from_path(sb.netns_path("c1")).unwrap();
    assert_reaches(&c1, sa("0.0.0.0:7002"), &lan, sa(&format!("{ip}:7002"))).await;
    assert_eq!(server.lease(ip).unwrap()[3], "api");
    n.ok(&["check", "lan", "c1"]);
    // `serve` keeps the lease: a second DHCPACK for it once T1 (3 s) has passed.
    let mut serve = n
        .command(&["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start netctl serve");
    let acked = format!("DHCPACK(eth0) {ip}");
    wait_until("netctl serve to renew", Duration::from_secs(15), || {
        server.log().matches(&acked).count() >= 2
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serve.wait().unwrap().success(), "serve exits 0 on SIGTERM");
    n.ok(&["disconnect", "lan", "c1"]);
    wait_until("dnsmasq to drop the lease", Duration::from_secs(5), || {
        server.lease(ip).is_none()
    })
    .await;
    assert_eq!(link_names(&c1).await, ["lo"]);
    n.ok(&["network", "rm", "lan"]);

    // A bridge network with the LAN's link as its trunk, the same way.
    let e = n.error(&words(
        "network create --ipam-driver dhcp -o com.docker.network.bridge.enable_icc=false -o parent=lan0 x",
    ));
    assert!(e.contains("enable_icc=false"), "{e}");
    n.ok(&words(
        "network create --ipam-driver dhcp -o parent=lan0 lanb",
    ));
    sb.netns("c2").await.unwrap();
    let att = n.connect(&sb, "lanb", "c2", &[]);
    println!("netctl connect on a bridge: {att}");
    assert_eq!(att["dhcp"]["server"], ROUTER);
    sb.netns("c3").await.unwrap();
    let p3 = sb.netns_path("c3");
    let e = n.error(&[
        "connect",
        "--netns",
        p3.to_str().unwrap(),
        "-p",
        "8080:80",
        "lanb",
        "c3",
    ]);
    assert!(e.contains("publishes no ports"), "{e}");
    n.ok(&["disconnect", "lanb", "c2"]);
    n.ok(&["network", "rm", "lanb"]);
}

/// DHCP on bridge networks (pipework's `pipework br0 C dhcp`): a bridge berth makes with the
/// LAN's link as its trunk, and an admin's bridge that holds the LAN's link and the host's own
/// LAN address. Containers lease from the LAN's server and are hosts of the LAN (seen at their
/// leased addresses, no NAT); berth puts no firewall rules on such a bridge, so the host's own
/// traffic and another network's NATed traffic still cross the admin's bridge; the trunk is
/// released and the admin's bridge left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_networks_on_the_lan_lease_from_its_server() {
    if !runnable("bridge_networks_on_the_lan_lease_from_its_server") {
        return;
    }
    let (mut sb, lan, server) = lan("bt-dhcpb").await;
    let host = dhcp_host(&sb).await;
    let before = footprint(&sb).await;

    // A named bridge that does not exist, without a trunk, reaches no DHCP server: refused,
    // nothing made.
    let err = host
        .create_network(Network::bridge("nope").bridge_name("brnope").dhcp())
        .await
        .unwrap_err();
    println!("refused: {err}");
    assert!(
        matches!(&err, Error::InvalidValue { what: "bridge", value, .. } if value == "brnope"),
        "{err:?}"
    );
    assert_eq!(footprint(&sb).await, before);

    // 1. A bridge of berth's with the LAN's link as its trunk.
    let net = host
        .create_network(Network::bridge("lanbr").trunk("lan0").dhcp())
        .await
        .unwrap();
    assert_eq!(net.ipam_driver, IpamDriver::Dhcp);
    assert!(net.subnets.is_empty(), "no pool of berth's");
    assert!(
        !net.dns_enabled,
        "no embedded resolver without a gateway address"
    );
    assert!(
        !chain_names(&sb).iter().any(|c| c.contains("lanbr")),
        "no firewall chains for a bridge of the LAN: {:?}",
        chain_names(&sb)
    );
    let c1 = sb.netns("c1").await.unwrap();
    let c2 = sb.netns("c2").await.unwrap();
    let a1 = host
        .attach("lanbr", Endpoint::new("c1", c1.clone()).hostname("br-1"))
        .await
        .unwrap();
    let a2 = host
        .attach("lanbr", Endpoint::new("c2", c2.clone()))
        .await
        .unwrap();
    let (ip1, ip2) = (leased(&a1), leased(&a2));
    println!("on the trunk's bridge: c1 leased {ip1}, c2 leased {ip2}");
    assert_ne!(ip1, ip2);
    assert_eq!(a1.gateway, Some(ROUTER.parse().unwrap()));
    assert_eq!(server.lease(ip1).expect("dnsmasq lists it")[3], "br-1");
    let files = host.sandbox_files("c1").await.unwrap();
    assert!(
        files.resolv_conf.contains(&format!("nameserver {DNS}")),
        "{}",
        files.resolv_conf
    );
    // The LAN sees the leased address (no NAT), both ways; the two containers reach each other.
    let seen = assert_reaches(
        &lan,
        sa(&format!("{ROUTER}:7010")),
        &c1,
        sa(&format!("{ROUTER}:7010")),
    )
    .await;
    assert_eq!(
        seen.ip(),
        IpAddr::V4(ip1),
        "the LAN sees the leased address"
    );
    assert_reaches(&c1, sa("0.0.0.0:7011"), &lan, sa(&format!("{ip1}:7011"))).await;
    assert_reaches(&c2, sa("0.0.0.0:7012"), &c1, sa(&format!("{ip2}:7012"))).await;
    assert_eq!(
        host.check("lanbr", "c1").await.unwrap(),
        Vec::<String>::new()
    );
    // A published port is refused by name, nothing made.
    let c3 = sb.netns("c3").await.unwrap();
    let err = host
        .attach(
            "lanbr",
            Endpoint::new("c3", c3.clone()).publish_request("8080:80".parse().unwrap()),
        )
        .await
        .unwrap_err();
    println!("refused: {err}");
    assert!(
        matches!(err, Error::InvalidValue { what: "port", .. }),
        "{err:?}"
    );
    assert_eq!(link_names(&c3).await, ["lo"]);
    // Detach releases; the network's delete releases the trunk (not deleted, no master).
    host.detach("lanbr", "c1").await.unwrap();
    host.detach("lanbr", "c2").await.unwrap();
    wait_until(
        "dnsmasq to drop both leases",
        Duration::from_secs(5),
        || server.lease(ip1).is_none() && server.lease(ip2).is_none(),
    )
    .await;
    host.delete_network("lanbr").await.unwrap();
    let nl = Netlink::open(sb.host()).await.unwrap();
    let trunk = nl.require_link("lan0").await.unwrap();
    assert_eq!(trunk.controller, None, "the trunk released");
    assert!(
        !link_names(sb.host())
            .await
            .iter()
            .any(|l| l.starts_with("br-"))
    );

    // 2. The admin's bridge: it holds lan0 and the host's own LAN address (198.19.40.1).
    let h = sb.host_name().to_string();
    ip(&h, &["link", "add", "brlan", "type", "bridge"]);
    ip(&h, &["link", "set", "lan0", "master", "brlan"]);
    ip(&h, &["address", "add", "198.19.40.1/24", "dev", "brlan"]);
    ip(&h, &["link", "set", "brlan", "up"]);
    let admins = |sb: &Sandbox| {
        let out = ip(sb.host_name(), &["-br", "address", "show", "dev", "brlan"]);
        let ports = ip(sb.host_name(), &["-br", "link", "show", "master", "brlan"]);
        (
            out.split_whitespace().nth(2).map(String::from),
            ports
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(|n| n.split('@').next().unwrap().to_string())
                .filter(|n| !n.starts_with("veth"))
                .collect::<Vec<_>>(),
        )
    };
    let admin_before = admins(&sb);
    assert_eq!(
        admin_before,
        (Some("198.19.40.1/24".to_string()), vec!["lan0".to_string()])
    );
    let lan2 = host
        .create_network(Network::bridge("lan2").bridge_name("brlan").dhcp())
        .await
        .unwrap();
    assert_eq!(lan2.adopted, Some(Vec::new()), "adopted, nothing added");
    // A NATed network beside it, whose traffic the host routes out through the admin's bridge.
    host.create_network(Network::bridge("inner").subnet("10.79.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    let c4 = sb.netns("c4").await.unwrap();
    let c5 = sb.netns("c5").await.unwrap();
    host.attach("inner", Endpoint::new("c4", c4.clone()))
        .await
        .unwrap();
    let a5 = host
        .attach("lan2", Endpoint::new("c5", c5.clone()))
        .await
        .unwrap();
    let ip5 = leased(&a5);
    println!("on the admin's bridge: c5 leased {ip5}");
    let seen = assert_reaches(
        &lan,
        sa(&format!("{ROUTER}:7020")),
        &c5,
        sa(&format!("{ROUTER}:7020")),
    )
    .await;
    assert_eq!(seen.ip(), IpAddr::V4(ip5));
    // The host reaches the container at its LAN address, and the LAN as before.
    assert_reaches(
        &c5,
        sa("0.0.0.0:7021"),
        sb.host(),
        sa(&format!("{ip5}:7021")),
    )
    .await;
    let seen = assert_reaches(
        &lan,
        sa(&format!("{ROUTER}:7022")),
        sb.host(),
        sa(&format!("{ROUTER}:7022")),
    )
    .await;
    assert_eq!(seen.ip().to_string(), "198.19.40.1");
    // The NATed network's container reaches the LAN and the DHCP container through the host:
    // no rule of berth's on the admin's bridge isolates or drops it.
    let seen = assert_reaches(
        &lan,
        sa(&format!("{ROUTER}:7023")),
        &c4,
        sa(&format!("{ROUTER}:7023")),
    )
    .await;
    assert_eq!(seen.ip().to_string(), "198.19.40.1", "masqueraded");
    let seen = assert_reaches(&c5, sa("0.0.0.0:7024"), &c4, sa(&format!("{ip5}:7024"))).await;
    println!(
        "inner's c4 reached c5 on the admin's bridge as {}",
        seen.ip()
    );
    // gc keeps the admin's bridge, its ports and address, and the live endpoint.
    let report = host.gc(&["c4", "c5"]).await.unwrap();
    println!("gc: {report:?}");
    assert_eq!(admins(&sb), admin_before);
    assert_eq!(
        host.check("lan2", "c5").await.unwrap(),
        Vec::<String>::new()
    );
    host.detach("lan2", "c5").await.unwrap();
    wait_until("dnsmasq to drop the lease", Duration::from_secs(5), || {
        server.lease(ip5).is_none()
    })
    .await;
    assert!(server.log().contains(&format!("DHCPRELEASE(eth0) {ip5}")));
    host.delete_network("lan2").await.unwrap();
    assert_eq!(admins(&sb), admin_before, "the admin's bridge as it was");
    assert_reaches(
        &lan,
        sa(&format!("{ROUTER}:7025")),
        &c4,
        sa(&format!("{ROUTER}:7025")),
    )
    .await;
    host.detach("inner", "c4").await.unwrap();
    host.delete_network("inner").await.unwrap();
}
