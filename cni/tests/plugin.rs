//! berth-cni driven as libcni drives a plugin, in sandbox namespaces: every verb of spec
//! 0.4.0/1.0.0/1.1.0, its results and error codes, proven by packets (container ↔ container,
//! a published port from outside), by read-backs of the kernel (links, nf_tables elements) and
//! of the state dir after DEL and GC, chained with the reference meta plugins, and under
//! concurrency.

mod libcni;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use berth::Netns;
use berth::sandbox::{Sandbox, tcp_probe};
use libcni::{Args, ConfList, berth_cni, exec, files_mentioning, in_ns, require_root};
use serde_json::{Value, json};

const HOST_UP: &str = "198.18.0.1";
const OUTSIDE: &str = "198.18.0.2";

struct World {
    sb: Sandbox,
    outside: Netns,
}

impl World {
    async fn new(label: &str) -> World {
        let mut sb = Sandbox::new(label).await.expect("sandbox");
        let outside = sb
            .add_outside(
                format!("{HOST_UP}/24").parse().unwrap(),
                format!("{OUTSIDE}/24").parse().unwrap(),
            )
            .await
            .expect("outside");
        World { sb, outside }
    }

    fn host(&self) -> &str {
        self.sb.host_name()
    }

    fn state(&self) -> String {
        self.sb.state_dir().join("cni").display().to_string()
    }

    /// berth-cni's plugin configuration in `version` (subnet 10.89.0.0/24, bridge `bcni0`).
    fn conf(&self, version: &str) -> Value {
        json!({"cniVersion": version, "name": "berthnet", "type": "berth-cni",
               "bridge": "bcni0", "stateDir": self.state(),
               "subnets": [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]})
    }

    async fn container(&mut self, role: &str) -> (Netns, Args) {
        let ns = self.sb.netns(role).await.expect("netns");
        let a = Args::new(role, self.sb.netns_path(role));
        (ns, a)
    }

    /// berth-cni's configuration as a member of a conflist (the list gives version and name).
    fn list_member(&self) -> Value {
        let mut c = self.conf("1.0.0");
        let o = c.as_object_mut().unwrap();
        o.remove("cniVersion");
        o.remove("name");
        c
    }

    /// CHECK and DEL of the whole list succeed, and nothing of the attachment is left (no ifb
    /// either).
    fn check_del_and_gone(&self, list: &ConfList, a: &Args, r: &Value) {
        for o in list.check(self.host(), a, r) {
            assert_eq!(o.rc, 0, "CHECK: {}", o.raw);
        }
        for o in list.del(self.host(), a, Some(r)) {
            assert_eq!(o.rc, 0, "DEL: {}", o.raw);
        }
        self.assert_gone(&a.id, r);
        assert!(in_ns(self.host(), &["ip", "-o", "link", "show", "type", "ifb"]).is_empty());
    }

    fn run(&self, cmd: &str, a: &Args, conf: &Value) -> libcni::Outcome {
        exec(&berth_cni(), self.host(), cmd, a, conf)
    }

    /// Nothing of the attachment `id` whose ADD result was `r` left: no host end, no nf_tables
    /// element naming its address, no state file naming it.
    fn assert_gone(&self, id: &str, r: &Value) {
        let veth = r["interfaces"][0]["name"].as_str().unwrap();
        let links = in_ns(self.host(), &["ip", "-o", "link", "show"]);
        assert!(
            !links.contains(&format!(" {veth}@")),
            "{veth} left: {links}"
        );
        let ip = addr_only(r).to_string();
        let rules = in_ns(self.host(), &["nft", "list", "ruleset"]);
        assert!(
            !rules.contains(&format!("{ip} ")) && !rules.contains(&format!("{ip},")),
            "{ip} still in nf_tables:\n{rules}"
        );
        let files = files_mentioning(Path::new(&self.state()), id);
        assert!(files.is_empty(), "state left for {id}: {files:?}");
    }
}

fn address(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().to_string()
}

fn addr_only(result: &Value) -> IpAddr {
    address(result).split('/').next().unwrap().parse().unwrap()
}

/// VERSION needs no netns and no root; it answers in the version asked.
#[test]
fn version_reports_what_is_spoken() {
    for asked in ["0.4.0", "1.0.0", "1.1.0"] {
        let mut child = std::process::Command::new(berth_cni())
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!(r#"{{"cniVersion":"{asked}"}}"#).as_bytes())
            .unwrap();
        let out: Value = serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
        assert_eq!(out["cniVersion"], asked);
        assert_eq!(out["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    }
}

/// ADD in each version gives that version's result; the addresses carry traffic (container ↔
/// container, a published port from outside and from the host); DEL removes everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_in_each_version_carries_traffic_and_del_leaves_nothing() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-ver").await;
    let (web_ns, web) = w.container("web").await;
    let mut conf = w.conf("1.1.0");
    conf["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]});
    let r = w.run("ADD", &web, &conf).ok();
    assert_eq!(r["cniVersion"], "1.1.0");
    assert!(r["interfaces"][1]["mtu"].as_u64().is_some(), "1.1.0: {r}");
    assert_eq!(r["interfaces"][1]["sandbox"], web.netns.as_str());
    assert!(r["ips"][0].get("version").is_none());
    let web_ip = addr_only(&r);
    for (i, v) in ["0.4.0", "1.0.0"].iter().enumerate() {
        let (ns, a) = w.container(&format!("c{i}")).await;
        let r = w.run("ADD", &a, &w.conf(v)).ok();
        assert_eq!(r["cniVersion"], *v);
        assert_eq!(
            r["ips"][0].get("version").is_some(),
            *v == "0.4.0",
            "{v}: {r}"
        );
        assert_eq!(r["ips"][0]["interface"], 1, "the container interface: {r}");
        // Container → container.
        let bind: SocketAddr = "0.0.0.0:80".parse().unwrap();
        tcp_probe(&web_ns, bind, &ns, SocketAddr::new(web_ip, 80))
            .await
            .expect("container to container");
        let del = w.run("DEL", &a, &w.conf(v));
        assert_eq!(del.rc, 0, "{}", del.raw);
        w.assert_gone(&a.id, &r);
    }
    // The published port, from outside (masqueraded in, DNAT) and from the host.
    let bind: SocketAddr = "0.0.0.0:80".parse().unwrap();
    let seen = tcp_probe(
        &web_ns,
        bind,
        &w.outside,
        format!("{HOST_UP}:8080").parse().unwrap(),
    )
    .await
    .expect("published port from outside");
    assert_eq!(seen.ip().to_string(), OUTSIDE);
    tcp_probe(
        &web_ns,
        bind,
        w.sb.host(),
        "127.0.0.1:8080".parse().unwrap(),
    )
    .await
    .expect("published port from the host");
    // CHECK with the ADD result passes.
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    w.run("CHECK", &web, &chk).ok();
    // DEL with prevResult and the netns gone.
    drop(web_ns);
    let mut gone = web.clone();
    gone.netns = String::new();
    w.run("DEL", &gone, &chk).ok();
    w.assert_gone(&web.id, &r);
    // Nothing published any more.
    assert!(
        tcp_probe(
            &w.outside,
            bind,
            &w.outside,
            format!("{HOST_UP}:8080").parse().unwrap()
        )
        .await
        .is_err()
    );
}

/// Bad input gets the spec's codes with a message naming what was wrong, and makes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_specs_codes_and_change_nothing() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-err").await;
    let (_ns, a) = w.container("c1").await;
    let conf = w.conf("1.0.0");
    let raw = |c: &Value| w.run("ADD", &a, c);
    // Unknown key → 4 naming it.
    let mut bad = conf.clone();
    bad["subnett"] = json!("10.0.0.0/8");
    assert!(raw(&bad).err(4).contains("subnett"));
    // Unsupported version → 1.
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.3.1");
    assert!(raw(&old).err(1).contains("0.3.1"));
    // Bad value → 4 naming it.
    let mut icc = conf.clone();
    icc["options"] = json!({"com.docker.network.bridge.enable_icc": "perhaps"});
    assert!(raw(&icc).err(4).contains("enable_icc"));
    // A netns that does not exist → 3.
    let mut missing = a.clone();
    missing.netns = "/run/netns/no-such-netns-berth".into();
    assert!(
        w.run("ADD", &missing, &conf)
            .err(3)
            .contains("no-such-netns")
    );
    // Missing environment → 7.
    let mut noid = a.clone();
    noid.id = String::new();
    assert!(
        w.run("ADD", &noid, &conf)
            .err(7)
            .contains("CNI_CONTAINERID")
    );
    // An unknown CNI_ARGS key → 7, accepted with IgnoreUnknown.
    let mut args = a.clone();
    args.args = Some("FOO=bar".into());
    assert!(w.run("ADD", &args, &conf).err(7).contains("FOO"));
    // CNI bridge's VLAN keys: a trunk into the container → 4 naming it; an access VLAN is
    // served where the kernel filters bridges by VLAN (the VM tier proves that path), and
    // refused naming it, before anything is made, where it does not (this machine's kernel).
    let mut trunk = conf.clone();
    trunk["vlanTrunk"] = json!([{"id": 20}]);
    assert!(raw(&trunk).err(4).contains("vlanTrunk"));
    let mut vlan = conf.clone();
    vlan["vlan"] = json!(10);
    let o = raw(&vlan);
    if o.rc == 0 {
        w.run("DEL", &a, &vlan).ok();
    } else {
        println!("berth-cni vlan on this kernel: {}", o.raw);
        assert!(o.raw.to_lowercase().contains("vlan"), "{}", o.raw);
    }
    // Nothing was made by any of them.
    assert!(in_ns(w.host(), &["ip", "-o", "link", "show", "master", "bcni0"]).is_empty());
    assert!(files_mentioning(Path::new(&w.state()), &a.id).is_empty());
    // A published port already taken → refused naming it; the attach is rolled back.
    let (_ns2, b) = w.container("c2").await;
    let mut p = conf.clone();
    p["runtimeConfig"] = json!({"portMappings": [{"hostPort": 9000, "containerPort": 80}]});
    args.args = Some("IgnoreUnknown=1;FOO=bar;IP=10.89.0.50".into());
    let r = w.run("ADD", &args, &p).ok();
    assert_eq!(address(&r), "10.89.0.50/24", "CNI_ARGS IP=");
    let msg = w.run("ADD", &b, &p).err(100);
    assert!(msg.contains("9000"), "{msg}");
    assert!(files_mentioning(Path::new(&w.state()), &b.id).is_empty());
    let links = in_ns(w.host(), &["ip", "-o", "link", "show", "master", "bcni0"]);
    assert_eq!(links.lines().count(), 1, "only c1's veth: {links}");
    // Same address twice → refused.
    let mut twice = b.clone();
    twice.args = Some("IP=10.89.0.50".into());
    let msg = w.run("ADD", &twice, &conf).err(100);
    assert!(msg.contains("10.89.0.50"), "{msg}");
}

/// DEL is idempotent: an id never seen, a netns gone, twice, and no state dir at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_is_idempotent() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-del").await;
    let conf = w.conf("1.0.0");
    let mut nostate = conf.clone();
    nostate["stateDir"] = json!(format!("{}/never-made", w.state()));
    let ghost = Args {
        id: "never-seen".into(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    w.run("DEL", &ghost, &nostate).ok();
    assert!(!Path::new(&format!("{}/never-made", w.state())).exists());
    let (ns, a) = w.container("c1").await;
    let r = w.run("ADD", &a, &conf).ok();
    // Another interface name of the same container is another attachment: untouched.
    let mut other_if = a.clone();
    other_if.ifname = "eth1".into();
    w.run("DEL", &other_if, &conf).ok();
    assert_eq!(
        in_ns(w.host(), &["ip", "-o", "link", "show", "master", "bcni0"])
            .lines()
            .count(),
        1
    );
    drop(ns);
    // The netns file still names a dead namespace until removed; remove it as a runtime would.
    let _ = Netns::remove_named(&format!(
        "{}",
        Path::new(&a.netns).file_name().unwrap().to_string_lossy()
    ));
    w.run("DEL", &a, &conf).ok();
    w.run("DEL", &a, &conf).ok();
    w.run("DEL", &ghost, &conf).ok();
    w.assert_gone(&a.id, &r);
}

/// CHECK passes on what ADD made and names what went missing behind berth's back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_drift() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-chk").await;
    let (_ns, a) = w.container("c1").await;
    let conf = w.conf("1.1.0");
    let r = w.run("ADD", &a, &conf).ok();
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    w.run("CHECK", &a, &chk).ok();
    // A prevResult with another address → 103.
    let mut lie = chk.clone();
    lie["prevResult"]["ips"][0]["address"] = json!("10.89.0.99/24");
    assert!(w.run("CHECK", &a, &lie).err(103).contains("10.89.0.99"));
    // The container side changed behind berth's back → 103 naming what.
    let cns = a.netns.rsplit('/').next().unwrap();
    in_ns(cns, &["ip", "route", "del", "default"]);
    assert!(w.run("CHECK", &a, &chk).err(103).contains("default route"));
    in_ns(cns, &["ip", "link", "set", "eth0", "down"]);
    assert!(w.run("CHECK", &a, &chk).err(103).contains("eth0 up"));
    in_ns(cns, &["ip", "addr", "flush", "dev", "eth0"]);
    let ip = address(&r);
    assert!(w.run("CHECK", &a, &chk).err(103).contains(&ip));
    // The host end removed by hand → 103 naming it.
    let veth = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    in_ns(w.host(), &["ip", "link", "del", &veth]);
    let msg = w.run("CHECK", &a, &chk).err(103);
    assert!(msg.contains(&veth) || msg.contains("eth0"), "{msg}");
    // A container never added → 3.
    let (_ns2, b) = w.container("c2").await;
    assert!(w.run("CHECK", &b, &chk).err(3).contains(&b.id));
    w.run("DEL", &a, &conf).ok();
}

/// GC removes every attachment of its network not in `cni.dev/valid-attachments` (and none of
/// another network's); no list means none is valid (cnitool's GC after its DELs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_exactly_the_valid_attachments() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-gc").await;
    let conf = w.conf("1.1.0");
    let mut other = conf.clone();
    other["name"] = json!("othernet");
    other["bridge"] = json!("bcni1");
    other["subnets"] = json!([{"subnet": "10.90.0.0/24"}]);
    let mut results = Vec::new();
    let mut keep = Vec::new();
    for i in 0..3 {
        let (ns, a) = w.container(&format!("g{i}")).await;
        results.push(w.run("ADD", &a, &conf).ok());
        keep.push(ns);
    }
    let (_ons, oa) = w.container("o1").await;
    w.run("ADD", &oa, &other).ok();
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "cid-g0", "ifname": "eth0"}]);
    w.run("GC", &Args::default(), &gc).ok();
    let eps: Vec<String> = std::fs::read_dir(format!("{}/endpoints/berthnet", w.state()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(eps, ["cid-g0.json"], "only g0 kept");
    for (i, r) in results.iter().enumerate().skip(1) {
        w.assert_gone(&format!("cid-g{i}"), r);
    }
    assert!(
        Path::new(&format!("{}/endpoints/othernet/cid-o1.json", w.state())).exists(),
        "another network's attachment is not this GC's"
    );
    // The draft name libcni also sends keeps it too.
    let mut draft = conf.clone();
    draft["cni.dev/attachments"] = json!([{"containerID": "cid-g0", "ifname": "eth0"}]);
    w.run("GC", &Args::default(), &draft).ok();
    assert!(Path::new(&format!("{}/endpoints/berthnet/cid-g0.json", w.state())).exists());
    // No list: none valid.
    w.run("GC", &Args::default(), &conf).ok();
    w.assert_gone("cid-g0", &results[0]);
    // STATUS: ready.
    let s = w.run("STATUS", &Args::default(), &conf);
    assert_eq!((s.rc, s.raw.trim()), (0, ""), "{}", s.stderr);
    // STATUS with a state dir that cannot be made → 50.
    let mut broken = conf.clone();
    broken["stateDir"] = json!("/proc/version/berth");
    assert!(
        !w.run("STATUS", &Args::default(), &broken)
            .err(50)
            .is_empty()
    );
}

/// 20 ADDs at once (20 processes): 20 distinct addresses, each reachable; 20 DELs at once
/// leave nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_hand_out_distinct_addresses() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-par").await;
    let conf = w.conf("1.0.0");
    let mut cs = Vec::new();
    for i in 0..20 {
        cs.push(w.container(&format!("p{i}")).await);
    }
    let host = w.host().to_string();
    let results: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = cs
            .iter()
            .map(|(_, a)| {
                let (host, conf) = (host.clone(), conf.clone());
                s.spawn(move || exec(&berth_cni(), &host, "ADD", a, &conf).ok())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<IpAddr> = results.iter().map(addr_only).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "distinct addresses");
    let bind: SocketAddr = "0.0.0.0:7000".parse().unwrap();
    for ((ns, _), r) in cs.iter().zip(&results) {
        tcp_probe(ns, bind, w.sb.host(), SocketAddr::new(addr_only(r), 7000))
            .await
            .expect("reachable");
    }
    std::thread::scope(|s| {
        for (_, a) in &cs {
            let (host, conf) = (host.clone(), conf.clone());
            s.spawn(move || exec(&berth_cni(), &host, "DEL", a, &conf).ok());
        }
    });
    for ((_, a), ip) in cs.iter().zip(&ips) {
        let _ = ip;
        assert!(files_mentioning(Path::new(&w.state()), &a.id).is_empty());
    }
    let links = in_ns(w.host(), &["ip", "-o", "link", "show", "master", "bcni0"]);
    assert!(links.is_empty(), "{links}");
}

/// Chained: berth-cni first, then the reference `tuning` (a sysctl in the container) and
/// `bandwidth` (a qdisc on the host end berth reported); DEL in reverse leaves nothing. And
/// after another plugin: its interfaces come first and berth's IPs point at berth's interface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_with_meta_plugins() {
    if !require_root() {
        return;
    }
    let refs = ["tuning", "bandwidth"];
    if !refs
        .iter()
        .all(|p| Path::new(libcni::REFERENCE_DIR).join(p).exists())
    {
        println!(
            "SKIPPED: chained_with_meta_plugins: Debian's containernetworking-plugins missing"
        );
        return;
    }
    let mut w = World::new("cni-chain").await;
    let (ns, a) = w.container("c1").await;
    let berth = w.list_member();
    let list = ConfList::new(
        "1.0.0",
        "berthnet",
        vec![
            berth,
            json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        ],
    );
    let mut list = list;
    list.runtime = json!({"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 100_000,
                                        "egressRate": 8_000_000, "egressBurst": 100_000}});
    let r = list.add(w.host(), &a).expect("chain ADD");
    let veth = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    let q = in_ns(w.host(), &["tc", "qdisc", "show", "dev", &veth]);
    assert!(q.contains("tbf"), "bandwidth shaped berth's host end: {q}");
    let sys = in_ns(
        a.netns.rsplit('/').next().unwrap(),
        &["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"],
    );
    assert_eq!(
        sys.trim(),
        "1",
        "tuning reached berth's container interface"
    );
    let bind: SocketAddr = "0.0.0.0:80".parse().unwrap();
    tcp_probe(&ns, bind, w.sb.host(), SocketAddr::new(addr_only(&r), 80))
        .await
        .expect("traffic through the chain");
    w.check_del_and_gone(&list, &a, &r);
    // After another plugin: its result comes first.
    let (_ns2, b) = w.container("c2").await;
    let mut conf = w.conf("1.0.0");
    conf["prevResult"] = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "lo", "sandbox": b.netns}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}],
        "dns": {"nameservers": ["192.0.2.53"]}});
    let r = w.run("ADD", &b, &conf).ok();
    assert_eq!(r["interfaces"][0]["name"], "lo");
    assert_eq!(r["ips"][0]["address"], "127.0.0.1/8");
    assert_eq!(
        r["ips"][1]["interface"], 2,
        "berth's eth0 is the third: {r}"
    );
    assert_eq!(r["dns"]["nameservers"][0], "192.0.2.53");
    w.run("DEL", &b, &conf).ok();
}

/// berth-cni's own `bandwidth` capability (what containerd fills from a pod's bandwidth
/// annotations): a `tbf` at the declared rate on the host end for what the container receives,
/// an `ifb` with a `tbf` for what it sends; traffic flows; CHECK passes; DEL leaves no qdisc and
/// no ifb. A burst that cannot hold a frame is refused with code 4 and nothing is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_capability_shapes_both_directions() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-bw").await;
    let (ns, a) = w.container("c1").await;
    let mut berth = w.list_member();
    berth["capabilities"] = json!({"bandwidth": true});
    let mut list = ConfList::new("1.0.0", "berthnet", vec![berth]);
    // 8 Mbit/s in, 4 Mbit/s out; bursts in bits, as the CNI convention has them.
    list.runtime = json!({"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 800_000,
                                        "egressRate": 4_000_000, "egressBurst": 800_000}});
    let r = list.add(w.host(), &a).expect("ADD with bandwidth");
    let veth = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    let q = in_ns(w.host(), &["tc", "qdisc", "show", "dev", &veth]);
    assert!(
        q.contains("tbf") && q.contains("rate 8Mbit") && q.contains("ingress"),
        "ingress limit and the redirect's qdisc on berth's host end: {q}"
    );
    let ifbs = in_ns(w.host(), &["ip", "-o", "link", "show", "type", "ifb"]);
    let ifb = ifbs
        .split_whitespace()
        .nth(1)
        .map(|n| n.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("an ifb for the egress limit: {ifbs}"));
    let q = in_ns(w.host(), &["tc", "qdisc", "show", "dev", &ifb]);
    assert!(
        q.contains("tbf") && q.contains("rate 4Mbit"),
        "egress limit on {ifb}: {q}"
    );
    let bind: SocketAddr = "0.0.0.0:80".parse().unwrap();
    tcp_probe(&ns, bind, w.sb.host(), SocketAddr::new(addr_only(&r), 80))
        .await
        .expect("traffic through the shaped endpoint");
    w.check_del_and_gone(&list, &a, &r);
    // A burst of 64 bits cannot hold a frame: refused by name, nothing made.
    let (_ns2, b) = w.container("c2").await;
    let links_before = in_ns(w.host(), &["ip", "-o", "link", "show"]);
    let mut conf = w.conf("1.0.0");
    conf["runtimeConfig"] = json!({"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 64}});
    let msg = w.run("ADD", &b, &conf).err(4);
    assert!(msg.contains("bandwidth") && msg.contains("burst"), "{msg}");
    assert_eq!(in_ns(w.host(), &["ip", "-o", "link", "show"]), links_before);
    println!(
        "berth-cni bandwidth capability: 8Mbit in, 4Mbit out on {veth} and {ifb}; refused: {msg}"
    );
}

/// A delegated host-local or static `ipam` section is read as berth's own IPAM; a changed
/// configuration remakes an unused network and is refused, naming the change, for a used one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipam_sections_and_configuration_changes() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-ipam").await;
    let (_ns, a) = w.container("c1").await;
    let mut conf = w.conf("1.0.0");
    conf.as_object_mut().unwrap().remove("subnets");
    conf["ipam"] = json!({"type": "host-local", "ranges": [[{"subnet": "10.91.0.0/24", "gateway": "10.91.0.1"}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.91.0.254"}]});
    let r = w.run("ADD", &a, &conf).ok();
    assert!(address(&r).starts_with("10.91.0."), "{r}");
    let routes = in_ns(a.netns.rsplit('/').next().unwrap(), &["ip", "route"]);
    assert!(routes.contains("192.0.2.0/24 via 10.91.0.254"), "{routes}");
    // Changed subnet while c1 is attached → 4 naming both.
    let mut changed = w.conf("1.0.0");
    changed["subnets"] = json!([{"subnet": "10.92.0.0/24"}]);
    let (_ns2, b) = w.container("c2").await;
    let msg = w.run("ADD", &b, &changed).err(4);
    assert!(
        msg.contains("10.91.0.0/24") && msg.contains("10.92.0.0/24"),
        "{msg}"
    );
    w.run("DEL", &a, &conf).ok();
    // Unused now: remade with the new subnet.
    let r = w.run("ADD", &b, &changed).ok();
    assert!(address(&r).starts_with("10.92.0."), "{r}");
    w.run("DEL", &b, &changed).ok();
    // static: the fixed address.
    let mut st = w.conf("1.0.0");
    st["name"] = json!("staticnet");
    st["bridge"] = json!("bcni2");
    st.as_object_mut().unwrap().remove("subnets");
    st["ipam"] = json!({"type": "static", "addresses": [{"address": "10.93.0.7/24", "gateway": "10.93.0.1"}]});
    let r = w.run("ADD", &a, &st).ok();
    assert_eq!(address(&r), "10.93.0.7/24");
    assert_eq!(r["ips"][0]["gateway"], "10.93.0.1");
    w.run("DEL", &a, &st).ok();
}

/// Dual stack: both addresses and both default routes in the result, IPv6 traffic from the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_result_and_traffic() {
    if !require_root() {
        return;
    }
    let mut w = World::new("cni-v6").await;
    let (ns, a) = w.container("c1").await;
    let mut conf = w.conf("0.4.0");
    conf["ipv6"] = json!(true);
    conf["subnets"] = json!([{"subnet": "10.89.0.0/24"}, {"subnet": "fd00:89::/64"}]);
    let r = w.run("ADD", &a, &conf).ok();
    let ips = r["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2, "{r}");
    assert_eq!(ips[1]["version"], "6");
    let v6: IpAddr = ips[1]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(v6.to_string().starts_with("fd00:89::"), "{r}");
    let dsts: Vec<&str> = r["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["dst"].as_str())
        .collect();
    assert!(dsts.contains(&"0.0.0.0/0") && dsts.contains(&"::/0"), "{r}");
    let bind: SocketAddr = "[::]:8000".parse().unwrap();
    tcp_probe(&ns, bind, w.sb.host(), SocketAddr::new(v6, 8000))
        .await
        .expect("IPv6 from the host");
    w.run("DEL", &a, &conf).ok();
    w.assert_gone(&a.id, &r);
}
