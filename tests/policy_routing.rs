//! Policy routing (issue 18, pipework's `rule`/`route`): routing rules and routes in other
//! tables per endpoint, proven by packets between sandbox namespaces. A container on two bridge
//! networks, reached from a client outside both subnets through the sandbox host (the router,
//! with strict reverse-path filtering on its bridges): without rules the replies to its second
//! address leave by its first interface and the host's source check drops them (counted); with
//! `from B/32 lookup 100` and `default via B_GW table 100` it answers on both addresses. Detach
//! leaves the container's rules and tables as they were before, read back with `ip`.

mod common;

use std::os::unix::process::ExitStatusExt;

use berth::netlink::Netlink;
use berth::sandbox::Sandbox;
use berth::{Endpoint, Netns, Network, RouteSpec, RuleSpec};
use common::netctl::Netctl;
use common::*;

/// The host's count of packets dropped by reverse-path filtering (`IPReversePathFilter`,
/// LINUX_MIB_IPRPFILTER) in netns `ns`.
fn rp_filter_drops(ns: &Netns) -> u64 {
    let text = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/netstat"))
        .unwrap()
        .unwrap();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "IPReversePathFilter")
        .expect("IPReversePathFilter in /proc/net/netstat");
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

fn route(s: &str) -> RouteSpec {
    s.parse().unwrap()
}

/// `ip -n NS ARGS…`, its lines sorted (a read-back independent of berth's netlink code).
fn ip_lines(ns: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ip(ns, args).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Everything policy routing could touch in netns `ns`: rules of both families, the routes of
/// every table, and the addresses (without IPv6 link-local ones, which the kernel adds in its
/// own time).
fn routing_state(ns: &str) -> Vec<String> {
    let mut all = ip_lines(ns, &["-4", "rule", "show"]);
    all.extend(ip_lines(ns, &["-6", "rule", "show"]));
    all.extend(ip_lines(ns, &["-4", "route", "show", "table", "all"]));
    all.extend(ip_lines(ns, &["-6", "route", "show", "table", "all"]));
    all.extend(ip_lines(ns, &["-4", "-br", "address", "show"]));
    all.retain(|l| !l.contains("fe80:"));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_on_two_networks_answers_on_both_with_a_rule_per_source() {
    let Some((mut sb, outside, host)) = setup("pr").await else {
        return;
    };
    let c = sb.netns("c").await.unwrap();
    let c_name = ns_name(&sb, "c");
    let net = |name: &str, bridge: &str, subnet: &str| {
        Network::bridge(name)
            .subnet(subnet.parse().unwrap())
            .bridge_name(bridge)
            .allow_direct_access(true)
    };
    let a = network(&host, net("a", "br-pra", "10.81.0.0/24")).await;
    let b = network(&host, net("b", "br-prb", "10.82.0.0/24")).await;

    // The client outside both subnets reaches them through the sandbox host, which checks
    // sources strictly on its bridges (sysctls of the sandbox host netns only).
    let out_nl = Netlink::open(&outside).await.unwrap();
    let eth0 = out_nl.require_link("eth0").await.unwrap();
    for dst in ["10.81.0.0/24", "10.82.0.0/24"] {
        let r: RouteSpec = format!("{dst},via={HOST_UP}").parse().unwrap();
        out_nl.route().spec(&r, eth0.index).add().await.unwrap();
    }
    let host_nl = Netlink::open(sb.host()).await.unwrap();
    for dev in ["all", "br-pra", "br-prb"] {
        host_nl
            .write_sysctl(&format!("net/ipv4/conf/{dev}/rp_filter"), "1")
            .await
            .unwrap();
    }

    // An admin's own rule in the container, which berth must leave alone.
    let c_nl = Netlink::open(&c).await.unwrap();
    let admin = RuleSpec::lookup(200)
        .from("10.81.0.99/32".parse().unwrap())
        .priority(500);
    c_nl.rule().add(&admin).await.unwrap();

    join(&host, &a.name, Endpoint::new("c", c.clone())).await;
    let before_b = routing_state(&c_name);
    join(&host, &b.name, Endpoint::new("c", c.clone()).ifname("eth1")).await;
    let (on_a, on_b) = ("10.81.0.2:7000", "10.82.0.2:7000");

    // Without rules: A answers; B's replies leave by eth0 (A's default route), and the host's
    // reverse-path filter on A's bridge drops them (counted).
    let seen = reaches_at(&c, &outside, on_a).await;
    assert_eq!(seen.ip().to_string(), OUTSIDE, "no NAT on the way");
    let drops = rp_filter_drops(sb.host());
    blocked_at(&c, &outside, on_b, "B's address without a rule").await;
    let dropped = rp_filter_drops(sb.host()) - drops;
    assert!(
        dropped > 0,
        "the replies were not dropped by the source check"
    );
    println!("without rules: B unanswered, {dropped} replies dropped by rp_filter");
    let via = ip(&c_name, &["route", "get", OUTSIDE, "from", "10.82.0.2"]);
    assert!(via.contains("dev eth0"), "replies from B leave A: {via}");
    host.detach(&b.name, "c").await.unwrap();

    // A rule that the kernel refuses (the admin's, at the same priority): the attach fails and
    // leaves nothing of the endpoint.
    let clash = Endpoint::new("c", c.clone())
        .ifname("eth1")
        .route("0.0.0.0/0,via=10.82.0.1,table=100".parse().unwrap())
        .rule(RuleSpec::lookup(100).from("10.82.0.2/32".parse().unwrap()))
        .rule(admin.clone());
    let e = host.attach(&b.name, clash).await.unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert_eq!(
        routing_state(&c_name),
        before_b,
        "a failed attach left something"
    );
    assert!(host.endpoints(&b.name).await.unwrap().is_empty());

    // With the rule and the route of table 100 (and a v6 rule and a table above 255, read back
    // only): both addresses answer, each reply leaving by the interface its request came in on.
    let ep = Endpoint::new("c", c.clone())
        .ifname("eth1")
        .ip("10.82.0.2".parse().unwrap())
        .route(route("0.0.0.0/0,via=10.82.0.1").table(100))
        .route(route("10.99.0.0/16,via=10.82.0.1").table(1000))
        .rule(RuleSpec::lookup(100).from("10.82.0.2/32".parse().unwrap()))
        .rule(
            RuleSpec::lookup(1000)
                .from("0.0.0.0/0".parse().unwrap())
                .fwmark(0x10, Some(0xf0))
                .iif("lo")
                .priority(900),
        )
        .rule(RuleSpec::lookup(100).from("fd00:82::2/128".parse().unwrap()));
    let att = join(&host, &b.name, ep).await;
    assert_eq!(att.rules.len(), 3);
    let rules = ip(&c_name, &["rule", "show"]);
    assert!(rules.contains("from 10.82.0.2 lookup 100"), "{rules}");
    assert!(
        rules.contains("900:\tfrom all fwmark 0x10/0xf0 iif lo lookup 1000"),
        "{rules}"
    );
    assert!(ip(&c_name, &["-6", "rule", "show"]).contains("from fd00:82::2 lookup 100"));
    let t100 = ip(&c_name, &["route", "show", "table", "100"]);
    assert!(t100.contains("default via 10.82.0.1 dev eth1"), "{t100}");
    let t1000 = ip(&c_name, &["route", "show", "table", "1000"]);
    assert!(
        t1000.contains("10.99.0.0/16 via 10.82.0.1 dev eth1"),
        "{t1000}"
    );
    let via = ip(&c_name, &["route", "get", OUTSIDE, "from", "10.82.0.2"]);
    assert!(
        via.contains("dev eth1") && via.contains("table 100"),
        "{via}"
    );
    let drops = rp_filter_drops(sb.host());
    let seen_a = reaches_at(&c, &outside, on_a).await;
    let seen_b = reaches_at(&c, &outside, on_b).await;
    assert_eq!(rp_filter_drops(sb.host()), drops, "nothing dropped now");
    println!("with the rule: A answered {seen_a}, B answered {seen_b}, no rp_filter drop");
    berth::sandbox::udp_probe(&c, sa(on_b), &outside, sa(on_b))
        .await
        .expect("UDP to B answered");

    // check knows them: all in place, then a rule and a table route an admin deleted.
    assert_eq!(
        host.check(&b.name, "c").await.unwrap(),
        Vec::<String>::new()
    );
    ip(
        &c_name,
        &["rule", "del", "from", "10.82.0.2", "lookup", "100"],
    );
    ip(&c_name, &["route", "del", "10.99.0.0/16", "table", "1000"]);
    let missing = host.check(&b.name, "c").await.unwrap();
    println!("check after an admin's deletions: {missing:?}");
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing[0].starts_with("rule from=10.82.0.2/32,table=100 in "));
    assert!(missing[1].starts_with("route 10.99.0.0/16,via=10.82.0.1,table=1000 in "));

    // Detach: the rules berth added and the tables' routes are gone; the admin's rule, A's
    // interface, addresses and default route are as they were.
    host.detach(&b.name, "c").await.unwrap();
    let after = routing_state(&c_name);
    assert_eq!(after, before_b, "detach left or took something");
    assert!(
        after
            .iter()
            .any(|l| l.contains("from 10.81.0.99 lookup 200"))
    );
    assert!(ip(&c_name, &["route", "show", "table", "100"]).is_empty());
    reaches_at(&c, &outside, on_a).await;

    // gc (as after a kill -9 of the runtime) removes an attachment's rules too.
    let ep = Endpoint::new("c", c.clone())
        .ifname("eth1")
        .ip("10.82.0.2".parse().unwrap())
        .route("0.0.0.0/0,via=10.82.0.1,table=100".parse().unwrap())
        .rule(RuleSpec::lookup(100).from("10.82.0.2/32".parse().unwrap()));
    join(&host, &b.name, ep).await;
    let keep_a = |net: &berth::NetworkInfo, _: &berth::Attachment| net.name == "a";
    let report = host.gc_keeping(keep_a).await.unwrap();
    assert_eq!(report.detached, vec![("b".to_string(), "c".to_string())]);
    assert_eq!(routing_state(&c_name), before_b, "gc left something");
    host.detach(&a.name, "c").await.unwrap();
    c_nl.rule().del(&admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netctl_serves_rules_refuses_bad_ones_and_gc_finishes_a_killed_connect() {
    if !require_root() {
        return;
    }
    let mut sb = Sandbox::new("prc").await.unwrap();
    sb.netns("c").await.unwrap();
    let c_name = ns_name(&sb, "c");
    let nc = Netctl::new(&sb);
    nc.ok(&["network", "create", "--subnet", "10.83.0.0/24", "a"]);
    nc.ok(&["network", "create", "--subnet", "10.84.0.0/24", "b"]);
    nc.connect(&sb, "a", "c", &[]);
    let before = routing_state(&c_name);
    let path = sb.netns_path("c");
    let connect = |extra: &[&str]| {
        let mut args = vec![
            "connect",
            "--netns",
            path.to_str().unwrap(),
            "--ifname",
            "eth1",
        ];
        args.extend_from_slice(extra);
        args.extend(["b", "c"]);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };

    // Bad specs: typed errors naming the reason, nothing made.
    for (extra, why) in [
        (vec!["--rule", "from=10.84.0.2/32,table=255"], "local table"),
        (vec!["--rule", "table=100"], "needs from= or to="),
        (
            vec!["--rule", "from=10.84.0.2/32,priority=0,table=100"],
            "priority 0",
        ),
        (
            vec!["--rule", "from=10.84.0.2/32,to=fd00::/8,table=100"],
            "differ in family",
        ),
        (
            vec!["--rule", "from=0.0.0.0/0,table=100"],
            "matches every packet",
        ),
        (
            vec![
                "--rule",
                "from=10.84.0.2,table=7",
                "--rule",
                "table=7,from=10.84.0.2/32",
            ],
            "given twice",
        ),
        (
            vec!["--route", "0.0.0.0/0,via=10.84.0.1,table=0"],
            "unspecified",
        ),
        (vec!["--route", "0.0.0.0/0,via=10.84.0.1,table=254"], "main"),
        (
            vec![
                "--route",
                "10.9.0.0/16,table=7",
                "--route",
                "10.9.0.0/16,table=7",
            ],
            "given twice in its table",
        ),
        (
            vec!["--rule", "from=10.84.0.2,iif=a/b,table=7"],
            "rule iif name",
        ),
        (
            vec!["--rule", "from=10.84.0.2,fwmark=0x100/0xff,table=7"],
            "outside its mask",
        ),
    ] {
        let args = connect(&extra);
        let line = nc.error(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            line.contains("invalid rule") || line.contains("invalid route"),
            "{extra:?}: {line}"
        );
        assert!(line.contains(why), "{extra:?}: {line}");
        assert_eq!(
            routing_state(&c_name),
            before,
            "{extra:?} changed something"
        );
    }

    // Served: recorded in the JSON, in the kernel, checked, gone with the endpoint.
    let good = connect(&[
        "--rule",
        "from=10.84.0.2/32,table=100,priority=1000",
        "--route",
        "0.0.0.0/0,via=10.84.0.1,table=100",
    ]);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let att = nc.json(&good);
    assert_eq!(
        att["rules"][0], "from=10.84.0.2/32,priority=1000,table=100",
        "{att}"
    );
    let t100 = ip(&c_name, &["route", "show", "table", "100"]);
    assert!(t100.contains("default via 10.84.0.1 dev eth1"), "{t100}");
    assert!(ip(&c_name, &["rule", "show"]).contains("1000:\tfrom 10.84.0.2 lookup 100"));
    nc.ok(&["check", "b", "c"]);
    ip(&c_name, &["rule", "del", "priority", "1000"]);
    let stderr = nc.fails(1, &["check", "b", "c"]);
    assert!(
        stderr.contains("missing: rule from=10.84.0.2/32,priority=1000,table=100 in"),
        "{stderr}"
    );
    nc.ok(&["disconnect", "b", "c"]);
    assert_eq!(routing_state(&c_name), before, "disconnect left something");

    // A failure injected right after the rules were added: the connect rolls back, rules too.
    let out = nc
        .command(&good)
        .env("BERTH_FAIL_AT", "policy-rules")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        routing_state(&c_name),
        before,
        "a failed connect left something"
    );

    // Killed right after the rules were added: gc removes them (the record names them).
    let out = nc
        .command(&good)
        .env("BERTH_CRASH_AT", "policy-rules")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "not killed at policy-rules");
    assert!(ip(&c_name, &["rule", "show"]).contains("lookup 100"));
    nc.ok(&["gc", "c"]);
    nc.ok(&["check", "b", "c"]);
    nc.ok(&["disconnect", "b", "c"]);
    assert_eq!(
        routing_state(&c_name),
        before,
        "killed connect, disconnect left something"
    );
    // Killed between the record and the rules: gc (keeping c) adds the rules the record names.
    let out = nc
        .command(&good)
        .env("BERTH_CRASH_AT", "record-endpoint")
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "not killed at record-endpoint"
    );
    assert!(!ip(&c_name, &["rule", "show"]).contains("lookup 100"));
    let report = nc.json(&["gc", "c"]);
    println!("gc after a kill between the record and the rules: {report}");
    assert_eq!(report["rules_fixed"], 1, "{report}");
    assert!(ip(&c_name, &["rule", "show"]).contains("lookup 100"));
    nc.ok(&["check", "b", "c"]);
    nc.ok(&["disconnect", "b", "c"]);
    assert_eq!(
        routing_state(&c_name),
        before,
        "killed connect, gc, disconnect left something"
    );
    nc.command(&good)
        .env("BERTH_CRASH_AT", "policy-rules")
        .output()
        .unwrap();
    nc.ok(&["gc"]);
    let rules = ip(&c_name, &["rule", "show"]);
    assert!(!rules.contains("lookup 100"), "gc left the rule: {rules}");
    assert!(ip(&c_name, &["route", "show", "table", "100"]).is_empty());
    nc.ok(&["network", "rm", "a", "b"]);
}
