//! berth-cni killed with SIGKILL after every step of an ADD (network creation included) and of
//! a DEL: a GC (what containerd and cnitool send) or the runtime's DEL retry restores exactly
//! the live set — the kernel, nf_tables and the state dir read back equal to before — and the
//! next ADD works.

mod libcni;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use berth::sandbox::{Sandbox, tcp_probe};
use libcni::{Args, berth_cni, exec, in_ns, require_root};
use serde_json::{Value, json};

const ADD_STEPS: &[&str] = &[
    "ipam-allocate",
    "driver-attach",
    "firewall-endpoint",
    "record-endpoint",
    "persist-endpoint",
];
const CREATE_STEPS: &[&str] = &[
    "ipam-reserve",
    "driver-create",
    "firewall-network",
    "persist-network",
];
const DEL_STEPS: &[&str] = &[
    "detach-firewall",
    "detach-driver",
    "detach-conntrack",
    "detach-ipam",
    "detach-record",
];

fn conf(sb: &Sandbox) -> Value {
    json!({"cniVersion": "1.1.0", "name": "crashnet", "type": "berth-cni", "bridge": "bcrash0",
           "stateDir": sb.state_dir().join("cni"),
           "subnets": [{"subnet": "10.94.0.0/24"}],
           "runtimeConfig": {"portMappings": [{"hostPort": 8443, "containerPort": 443}]}})
}

/// What the kernel and the state dir hold: link names, the ruleset without counters, the
/// state files (locks and backups aside).
fn snapshot(sb: &Sandbox) -> (BTreeSet<String>, String, BTreeSet<String>) {
    let links = in_ns(sb.host_name(), &["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect();
    let rules: String = in_ns(sb.host_name(), &["nft", "list", "ruleset"])
        .lines()
        .map(|l| match l.find(" counter packets") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut files = BTreeSet::new();
    let mut stack = vec![sb.state_dir().join("cni")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if name != "lock" && !name.ends_with(".bak") {
                files.insert(p.display().to_string());
            }
        }
    }
    (links, rules, files)
}

fn crashing(a: &Args, step: &str) -> Args {
    let mut a = a.clone();
    a.extra = vec![("BERTH_CRASH_AT".into(), step.into())];
    a
}

fn gc_keeping(sb: &Sandbox, keep: &[&Args]) {
    let mut gc = conf(sb);
    gc["cni.dev/valid-attachments"] = keep
        .iter()
        .map(|a| json!({"containerID": a.id, "ifname": a.ifname}))
        .collect();
    let o = exec(&berth_cni(), sb.host_name(), "GC", &Args::default(), &gc);
    assert_eq!(o.rc, 0, "GC: {} {}", o.raw, o.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_add_leaves_nothing_gc_cannot_clean() {
    if !require_root() {
        return;
    }
    for step in ADD_STEPS {
        let mut sb = Sandbox::new("cni-crash").await.unwrap();
        let live_ns = sb.netns("live").await.unwrap();
        let live = Args::new("live", sb.netns_path("live"));
        let r = exec(&berth_cni(), sb.host_name(), "ADD", &live, &conf(&sb)).ok();
        let before = snapshot(&sb);
        sb.netns("victim").await.unwrap();
        let victim = Args::new("victim", sb.netns_path("victim"));
        let mut vconf = conf(&sb);
        vconf["runtimeConfig"] =
            json!({"portMappings": [{"hostPort": 9443, "containerPort": 443}]});
        let o = exec(
            &berth_cni(),
            sb.host_name(),
            "ADD",
            &crashing(&victim, step),
            &vconf,
        );
        assert_eq!(o.rc, -1, "{step}: the plugin was killed ({})", o.raw);
        gc_keeping(&sb, &[&live]);
        assert_eq!(snapshot(&sb), before, "after a kill at {step} and GC");
        // The live container is untouched; the victim's next ADD works.
        let ip: std::net::IpAddr = r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let bind: SocketAddr = "0.0.0.0:443".parse().unwrap();
        tcp_probe(&live_ns, bind, sb.host(), SocketAddr::new(ip, 443))
            .await
            .unwrap_or_else(|e| panic!("{step}: live container unreachable: {e}"));
        exec(&berth_cni(), sb.host_name(), "ADD", &victim, &vconf).ok();
        exec(&berth_cni(), sb.host_name(), "DEL", &victim, &vconf).ok();
        assert_eq!(snapshot(&sb), before, "{step}: ADD + DEL after the GC");
        println!("killed at {step}: GC restored the live set");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_first_add_leaves_a_working_network() {
    if !require_root() {
        return;
    }
    for step in CREATE_STEPS {
        let mut sb = Sandbox::new("cni-crcr").await.unwrap();
        let ns = sb.netns("c1").await.unwrap();
        let a = Args::new("c1", sb.netns_path("c1"));
        let o = exec(
            &berth_cni(),
            sb.host_name(),
            "ADD",
            &crashing(&a, step),
            &conf(&sb),
        );
        assert_eq!(o.rc, -1, "{step}: killed ({})", o.raw);
        gc_keeping(&sb, &[]);
        let r = exec(&berth_cni(), sb.host_name(), "ADD", &a, &conf(&sb)).ok();
        assert_eq!(r["ips"][0]["address"], "10.94.0.2/24", "{step}: {r}");
        let bind: SocketAddr = "0.0.0.0:443".parse().unwrap();
        tcp_probe(&ns, bind, sb.host(), "10.94.0.2:443".parse().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{step}: unreachable after the GC: {e}"));
        exec(&berth_cni(), sb.host_name(), "DEL", &a, &conf(&sb)).ok();
        let links = in_ns(
            sb.host_name(),
            &["ip", "-o", "link", "show", "master", "bcrash0"],
        );
        assert!(links.is_empty(), "{step}: {links}");
        assert!(!Path::new(&sb.state_dir().join("cni/endpoints/crashnet/cid-c1.json")).exists());
        println!("first ADD killed at {step}: GC, then ADD works");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_del_is_finished_by_its_retry_or_by_gc() {
    if !require_root() {
        return;
    }
    for (i, step) in DEL_STEPS.iter().enumerate() {
        let mut sb = Sandbox::new("cni-crdel").await.unwrap();
        sb.netns("c0").await.unwrap();
        let seed = Args::new("c0", sb.netns_path("c0"));
        exec(&berth_cni(), sb.host_name(), "ADD", &seed, &conf(&sb)).ok();
        exec(&berth_cni(), sb.host_name(), "DEL", &seed, &conf(&sb)).ok();
        let before = snapshot(&sb);
        sb.netns("c1").await.unwrap();
        let a = Args::new("c1", sb.netns_path("c1"));
        exec(&berth_cni(), sb.host_name(), "ADD", &a, &conf(&sb)).ok();
        let o = exec(
            &berth_cni(),
            sb.host_name(),
            "DEL",
            &crashing(&a, step),
            &conf(&sb),
        );
        assert_eq!(o.rc, -1, "{step}: killed ({})", o.raw);
        // Alternate: the runtime retries DEL, or a GC comes instead.
        if i % 2 == 0 {
            exec(&berth_cni(), sb.host_name(), "DEL", &a, &conf(&sb)).ok();
        } else {
            gc_keeping(&sb, &[]);
        }
        assert_eq!(snapshot(&sb), before, "after a DEL killed at {step}");
        println!("DEL killed at {step}: finished");
    }
}
