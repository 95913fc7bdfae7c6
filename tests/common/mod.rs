//! Shared helpers for kernel tests: a sandbox with an outside world, a Host over it, and
//! read-backs of kernel state (links through netlink, nf_tables through `nft -j` in the sandbox).
#![allow(dead_code)]

pub mod cluster;
pub mod etcd;
pub mod netctl;
pub mod rate;
pub mod state;
pub mod underlay;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth::netlink::Netlink;
use berth::sandbox::Sandbox;
use berth::{Attachment, EndpointSpec, Host, Netns, Step};

/// Host uplink address and the outside netns' address (benchmark range, sandbox only).
pub const HOST_UP: &str = "198.18.0.1";
pub const OUTSIDE: &str = "198.18.0.2";

/// Skips (visibly) when not root: kernel tests need CAP_NET_ADMIN and CAP_SYS_ADMIN.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    println!("SKIPPED: kernel test needs root");
    false
}

/// A sandbox with an outside netns joined to the host netns.
pub async fn sandbox(label: &str) -> (Sandbox, Netns) {
    let mut sb = Sandbox::new(label).await.expect("sandbox");
    let outside = sb
        .add_outside(
            format!("{HOST_UP}/24").parse().unwrap(),
            format!("{OUTSIDE}/24").parse().unwrap(),
        )
        .await
        .expect("outside netns");
    (sb, outside)
}

/// For a kernel test: `None` (skipped) when not root, else a [`sandbox`] with its outside
/// netns and a [`host`] over it.
pub async fn setup(label: &str) -> Option<(Sandbox, Netns, Host)> {
    if !require_root() {
        return None;
    }
    let (sb, outside) = sandbox(label).await;
    let host = host(&sb).await;
    Some((sb, outside, host))
}

/// Creates the network `spec`; panics on failure.
pub async fn network(host: &Host, spec: impl Into<berth::NetworkSpec>) -> berth::NetworkInfo {
    host.create_network(spec).await.expect("create network")
}

pub async fn host(sb: &Sandbox) -> Host {
    Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .build()
        .await
        .expect("host")
}

/// A TCP connection from `client` to `target` reaches a listener on `bind` in `server` and
/// carries a line both ways; panics naming the target otherwise. Returns the source address the
/// server saw (shows masquerading).
pub async fn assert_reaches(
    server: &Netns,
    bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
) -> SocketAddr {
    berth::sandbox::tcp_probe(server, bind, client, target)
        .await
        .unwrap_or_else(|e| panic!("{target} (listener on {bind}) not reached: {e}"))
}

/// No TCP connection from `client` to `target` reaches a listener on `bind` in `server`
/// (refused or timed out); panics with `what` otherwise.
pub async fn assert_blocked(
    server: &Netns,
    bind: SocketAddr,
    client: &Netns,
    target: SocketAddr,
    what: &str,
) {
    if let Ok(seen) = berth::sandbox::tcp_probe(server, bind, client, target).await {
        panic!("{what}: {target} was reached (the server saw {seen})");
    }
}

/// [`assert_reaches`] to an address of `server` itself: its listener binds `addr` (`IP:PORT`)
/// and `client` dials the same.
pub async fn reaches_at(server: &Netns, client: &Netns, addr: &str) -> SocketAddr {
    assert_reaches(server, sa(addr), client, sa(addr)).await
}

/// [`assert_blocked`] to an address of `server` itself (`addr`, as in [`reaches_at`]).
pub async fn blocked_at(server: &Netns, client: &Netns, addr: &str, what: &str) {
    assert_blocked(server, sa(addr), client, sa(addr), what).await
}

/// [`assert_reaches`] from `client` to the outside netns (a listener on `0.0.0.0:PORT` there,
/// dialled at [`OUTSIDE`]); returns the source address the outside saw.
pub async fn reaches_outside(outside: &Netns, client: &Netns, port: u16) -> SocketAddr {
    assert_reaches(
        outside,
        sa(&format!("0.0.0.0:{port}")),
        client,
        sa(&format!("{OUTSIDE}:{port}")),
    )
    .await
}

/// [`assert_reaches`] from `client` to a published port: dialled at [`HOST_UP`]`:HOST_PORT`,
/// answered by a listener on `0.0.0.0:PORT` in `container`.
pub async fn reaches_published(
    container: &Netns,
    port: u16,
    client: &Netns,
    host_port: u16,
) -> SocketAddr {
    assert_reaches(
        container,
        sa(&format!("0.0.0.0:{port}")),
        client,
        sa(&format!("{HOST_UP}:{host_port}")),
    )
    .await
}

/// [`assert_blocked`] for a published port (as in [`reaches_published`]).
pub async fn blocked_published(
    container: &Netns,
    port: u16,
    client: &Netns,
    host_port: u16,
    what: &str,
) {
    assert_blocked(
        container,
        sa(&format!("0.0.0.0:{port}")),
        client,
        sa(&format!("{HOST_UP}:{host_port}")),
        what,
    )
    .await
}

/// Attaches `ep` to `network`; panics (naming the network) on failure.
pub async fn join(host: &Host, network: impl AsRef<str>, ep: EndpointSpec) -> Attachment {
    let name = network.as_ref().to_string();
    host.attach(network, ep)
        .await
        .unwrap_or_else(|e| panic!("attach to {name}: {e}"))
}

/// Runs `nft ARGS…` (split at spaces) in the sandbox's host netns, asserting success.
pub fn nft(sb: &Sandbox, args: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", sb.host_name(), "nft"])
        .args(args.split(' '))
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An admin's `nft list ruleset > FILE && nft flush ruleset && nft -f FILE` in the sandbox's
/// host netns, asserting success; returns the saved ruleset.
pub fn nft_save_restore(sb: &Sandbox) -> String {
    let file = sb.state_dir().join("ruleset.nft");
    let script = format!(
        "nft list ruleset > {f} && nft flush ruleset && nft -f {f}",
        f = file.display()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", sb.host_name(), "sh", "-c", &script])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "save/restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&file).unwrap()
}

/// A Host whose operations fail after the step set in the returned switch.
pub async fn faulty_host(sb: &Sandbox) -> (Host, Arc<Mutex<Option<Step>>>) {
    let fail_at: Arc<Mutex<Option<Step>>> = Arc::default();
    let f = fail_at.clone();
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .fault_hook(Arc::new(move |step| match *f.lock().unwrap() {
            Some(s) if s == step => Err(berth::Error::Injected { step }),
            _ => Ok(()),
        }))
        .build()
        .await
        .unwrap();
    (host, fail_at)
}

/// Runs `ip -n NS ARGS…` (NS a name under /run/netns), asserting success; returns stdout.
pub fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -n {ns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The /run/netns name of the sandbox netns ROLE (for `ip -n`).
pub fn ns_name(sb: &Sandbox, role: &str) -> String {
    sb.netns_path(role)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Names of the links in `ns`.
pub async fn link_names(ns: &Netns) -> Vec<String> {
    let nl = Netlink::open(ns).await.unwrap();
    let mut v: Vec<String> = nl
        .links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    v.sort();
    v
}

/// `nft -j list ruleset` inside the sandbox's host netns, parsed.
pub fn nft_ruleset(sb: &Sandbox) -> serde_json::Value {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            sb.host_name(),
            "nft",
            "-j",
            "list",
            "ruleset",
        ])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("nft json")
}

/// Objects of one kind ("chain", "rule", "map", "set", "element" …) in the ruleset.
pub fn nft_objects(sb: &Sandbox, kind: &str) -> Vec<serde_json::Value> {
    nft_ruleset(sb)["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind).cloned())
        .collect()
}

/// Number of elements in map `name` of table inet berth.
pub fn map_len(sb: &Sandbox, name: &str) -> usize {
    nft_objects(sb, "map")
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| {
            m.get("elem")
                .and_then(|e| e.as_array())
                .map_or(0, |a| a.len())
        })
        .unwrap_or(0)
}

pub fn chain_names(sb: &Sandbox) -> Vec<String> {
    nft_objects(sb, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn rule_count(sb: &Sandbox) -> usize {
    nft_objects(sb, "rule").len()
}

/// Everything berth owns in a sandbox, for before/after comparisons: the host's links, the
/// nf_tables objects of its tables (chains with rule counts, maps and sets with element counts),
/// and the state dir's files with their contents (IPAM claims as their targets). Leaves out
/// what an operation may legitimately leave changed: IPAM round-robin cursors (`~…`) and the
/// contents of `seen/` (the highest address handed out), the `quarantine/` copies, and the lock
/// files' existence.
pub async fn footprint(sb: &Sandbox) -> String {
    let mut out = format!("links {:?}\n", link_names(sb.host()).await);
    for o in nft_ruleset(sb)["nftables"].as_array().unwrap() {
        if let Some(c) = o.get("chain") {
            out += &format!("chain {} {}\n", c["family"], c["name"]);
        } else if let Some(r) = o.get("rule") {
            out += &format!("rule {} {}\n", r["family"], r["chain"]);
        } else if let Some(m) = o.get("map").or_else(|| o.get("set")) {
            let n = m.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len);
            out += &format!("map {} {} {n}\n", m["family"], m["name"]);
        }
    }
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('~') || rel.starts_with("quarantine") || name == "lock" {
                continue;
            }
            // The highest address handed out moves like the cursors: its existence counts.
            if rel.starts_with("seen/") {
                out.push(rel);
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else if md.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&p).unwrap().display()
                ));
            } else {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                out.push(format!("{rel}: {}", text.replace('\n', " ")));
            }
        }
    }
    let mut files = Vec::new();
    walk(sb.state_dir(), sb.state_dir(), &mut files);
    files.sort();
    out + &files.join("\n")
}

/// A datagram of `mtu` bytes (IPv4, DF set) from `client` reaches `server` at `addr`; one
/// byte more is refused to the sender (EMSGSIZE), not lost silently.
pub async fn full_size_crosses(client: &Netns, server: &Netns, addr: std::net::IpAddr, mtu: usize) {
    let target = SocketAddr::new(addr, 7777);
    let srv = server
        .run(move || std::net::UdpSocket::bind(target))
        .unwrap()
        .unwrap();
    srv.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let cli = client
        .run(|| std::net::UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    let on: libc::c_int = libc::IP_PMTUDISC_DO;
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&cli),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let got = tokio::task::spawn_blocking(move || {
        cli.send_to(&vec![7u8; mtu - 28], target).unwrap();
        let mut buf = vec![0u8; 2000];
        let n = srv.recv(&mut buf).expect("the full-size datagram crossed");
        let e = cli
            .send_to(&vec![7u8; mtu - 28 + 1], target)
            .expect_err("one byte more must be refused");
        (n, e)
    })
    .await
    .unwrap();
    assert_eq!(got.0, mtu - 28);
    assert_eq!(got.1.raw_os_error(), Some(libc::EMSGSIZE), "{}", got.1);
}
