//! The security defects an independent probe found, reproduced as the probe did — through the
//! `netctl` binary in sandbox namespaces — and proven closed by packets and by reading back what
//! an attacker could have touched: a port published on 127.0.0.1 reached by a neighbour,
//! `files` writing through a container's symlinks, `--netns` given the host's own namespace,
//! state files others could read or plant links in.
//!
//! The binary is `target/debug/examples/netctl`: build it first (`cargo build --examples`).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth::sandbox::{tcp_probe, udp_probe};
use common::netctl::*;
use common::*;

/// A scratch directory of this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Self {
        let p = std::env::temp_dir().join(format!("berth-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A neighbour on the host's LAN (the sandbox's outside netns) that routes `127.0.0.1` to the
/// host, as the kube-proxy CVE-2020-8558 attacker does: `route_localnet` in its own netns and a
/// policy route for 127.0.0.1 via the host ahead of its local table.
async fn route_localhost_to_host(sb: &berth::sandbox::Sandbox, outside: &berth::Netns) {
    let ns = ns_name(sb, "outside");
    for key in [
        "net/ipv4/conf/all/route_localnet",
        "net/ipv4/conf/eth0/route_localnet",
    ] {
        berth::sysctl::write(outside, key, "1").await.unwrap();
    }
    ip(&ns, &["rule", "add", "pref", "100", "lookup", "local"]);
    ip(&ns, &["rule", "del", "pref", "0"]);
    ip(
        &ns,
        &[
            "route",
            "add",
            "127.0.0.1/32",
            "via",
            HOST_UP,
            "dev",
            "eth0",
            "table",
            "100",
        ],
    );
    ip(
        &ns,
        &[
            "rule",
            "add",
            "pref",
            "10",
            "to",
            "127.0.0.1",
            "lookup",
            "100",
        ],
    );
    let r = ip(&ns, &["route", "get", "127.0.0.1"]);
    assert!(r.contains("via 198.18.0.1 dev eth0"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_published_on_localhost_is_not_reachable_from_a_neighbour() {
    if !require_root() {
        return;
    }
    let (mut sb, outside) = sandbox("sf-lo").await;
    let c1 = sb.netns("c1").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&["network", "create", "--subnet", "10.81.0.0/24", "web"]);
    nc.connect(
        &sb,
        "web",
        "c1",
        &[
            "-p",
            "127.0.0.1:18081:80",
            "-p",
            "127.0.0.1:18082:81/udp",
            "-p",
            "18090:82",
        ],
    );
    // The host itself reaches them through 127.0.0.1, and the neighbour the one on all addresses.
    tcp_probe(&c1, sa("0.0.0.0:80"), sb.host(), sa("127.0.0.1:18081"))
        .await
        .expect("host reaches 127.0.0.1:18081");
    udp_probe(&c1, sa("0.0.0.0:81"), sb.host(), sa("127.0.0.1:18082"))
        .await
        .expect("host reaches 127.0.0.1:18082/udp");
    tcp_probe(&c1, sa("0.0.0.0:82"), &outside, sa("198.18.0.1:18090"))
        .await
        .expect("the neighbour reaches a port published on every address");

    route_localhost_to_host(&sb, &outside).await;
    let tcp = tcp_probe(&c1, sa("0.0.0.0:80"), &outside, sa("127.0.0.1:18081")).await;
    assert!(
        tcp.is_err(),
        "a neighbour reached 127.0.0.1:18081 over TCP: {tcp:?}"
    );
    let udp = udp_probe(&c1, sa("0.0.0.0:81"), &outside, sa("127.0.0.1:18082")).await;
    assert!(
        udp.is_err(),
        "a neighbour reached 127.0.0.1:18082 over UDP: {udp:?}"
    );
    // Still fine from the host after the neighbour's attempts.
    tcp_probe(&c1, sa("0.0.0.0:80"), sb.host(), sa("127.0.0.1:18081"))
        .await
        .expect("host still reaches 127.0.0.1:18081");

    // `::1` cannot be forwarded to a container at all: refused, naming it.
    let p = sb.netns_path("c1");
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p),
        "-p",
        "[::1]:18083:80",
        "web",
        "c9",
    ]);
    assert!(e.contains("::1") && e.contains("loopback"), "{e}");
    let e = nc.error(&[
        "connect",
        "--netns",
        path_str(&p),
        "-p",
        "[127.0.0.1]:18084:80",
        "web",
        "c9",
    ]);
    assert!(e.contains("brackets"), "{e}");
}

/// The last pid the kernel handed out (the next processes get the ones after it).
fn last_pid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// What a container controlling its bind-mounted `/etc` directory plants there: symlinks at the
/// final names and at every temporary name an earlier berth would have used for the next
/// processes (`NAME.berth-tmp-PID`), all pointing at root-owned 0600 files elsewhere.
fn plant(dir: &Path, victims: &Path) -> Vec<PathBuf> {
    let mut targets = Vec::new();
    for (i, name) in ["hosts", "resolv.conf", "hostname"].iter().enumerate() {
        let victim = victims.join(format!("victim{i}"));
        std::fs::write(&victim, "secret\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        symlink(&victim, dir.join(name)).unwrap();
        let stem = Path::new(name).with_extension("");
        let from = last_pid();
        for pid in from..from + 400 {
            let tmp = dir.join(format!("{}.berth-tmp-{pid}", stem.display()));
            let _ = symlink(&victim, tmp);
        }
        targets.push(victim);
    }
    targets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_never_write_through_links_a_container_planted() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("sf-files").await;
    sb.netns("c1").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&["network", "create", "--subnet", "10.82.0.0/24", "web"]);
    nc.ok(&["network", "create", "--subnet", "10.83.0.0/24", "db"]);
    nc.connect(&sb, "web", "c1", &["--hostname", "api"]);
    let scratch = Scratch::new("sf-files");
    let (etc, victims) = (scratch.0.join("etc"), scratch.0.join("victims"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&victims).unwrap();
    let targets = plant(&etc, &victims);

    nc.ok(&["files", "c1", path_str(&etc)]);
    let check = |when: &str| {
        for t in &targets {
            assert_eq!(
                std::fs::read_to_string(t).unwrap(),
                "secret\n",
                "{when}: {} was written through a planted link",
                t.display()
            );
            assert_eq!(
                std::fs::metadata(t).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        for name in ["hosts", "resolv.conf", "hostname"] {
            let md = std::fs::symlink_metadata(etc.join(name)).unwrap();
            assert!(md.file_type().is_file(), "{when}: {name} is a regular file");
        }
        let hostname = std::fs::read_to_string(etc.join("hostname")).unwrap();
        assert_eq!(hostname, "api\n", "{when}");
    };
    check("files");
    // The rewrite after a later connect: the container plants again.
    for name in ["hosts", "resolv.conf", "hostname"] {
        std::fs::remove_file(etc.join(name)).unwrap();
    }
    plant(&etc, &victims);
    for t in &targets {
        std::fs::write(t, "secret\n").unwrap();
    }
    nc.connect(&sb, "db", "c1", &["--ifname", "eth1"]);
    check("rewrite after connect");
    let hosts = std::fs::read_to_string(etc.join("hosts")).unwrap();
    assert!(
        hosts.contains("10.83.0."),
        "rewritten with db's address: {hosts}"
    );

    // The directory itself replaced by a symlink: refused, nothing written at its target.
    let elsewhere = scratch.0.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let linked = scratch.0.join("linked-etc");
    symlink(&elsewhere, &linked).unwrap();
    let e = nc.error(&["files", "c1", path_str(&linked)]);
    assert!(e.contains("symlink"), "{e}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_must_be_a_container_network_namespace() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("sf-ns").await;
    let c1 = sb.netns("c1").await.unwrap();
    let host = ns_name(&sb, "host");
    ip(&host, &["route", "add", "default", "via", OUTSIDE]);
    let nc = Netctl::new(&sb);
    nc.ok(&["network", "create", "--subnet", "10.84.0.0/24", "web"]);
    let pool = || std::fs::read_dir(sb.state_dir().join("ipam/web.d")).map(|d| d.count());
    let before = pool().unwrap();

    // Inside `ip netns exec HOST`, /proc/self/ns/net is the host netns itself.
    let e = nc.error(&["connect", "--netns", "/proc/self/ns/net", "web", "x"]);
    assert!(
        e.contains("/proc/self/ns/net") && e.contains("host's own"),
        "{e}"
    );
    let routes = ip(&host, &["route", "show", "default"]);
    assert!(
        routes.contains(OUTSIDE),
        "the host keeps its default route: {routes}"
    );

    // Another berth host's netns (it holds a berth bridge) is no container either.
    let (sb2, _o2) = sandbox("sf-ns2").await;
    let nc2 = Netctl::new(&sb2);
    nc2.ok(&["network", "create", "--subnet", "10.85.0.0/24", "other"]);
    let other = format!("/run/netns/{}", sb2.host_name());
    let e = nc.error(&["connect", "--netns", &other, "web", "x"]);
    assert!(e.contains(&other) && e.contains("berth"), "{e}");

    // Not a network namespace: the path is named, and nothing is allocated first.
    let scratch = Scratch::new("sf-ns");
    let file = scratch.0.join("file");
    std::fs::write(&file, "x").unwrap();
    for (path, what) in [
        (path_str(&file), "regular file"),
        (path_str(&scratch.0), "directory"),
        ("/dev/null", "device"),
        ("/proc/self/ns/mnt", "mount namespace"),
    ] {
        let e = nc.error(&["connect", "--netns", path, "web", "x"]);
        assert!(e.contains(path) && e.contains(what), "{path}: {e}");
    }
    assert_eq!(pool().unwrap(), before, "no address was allocated");
    drop(c1);
}

/// Every directory and file under `dir`: (path, mode, owner).
fn walk(dir: &Path, out: &mut Vec<(PathBuf, u32, u32, bool)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            continue; // IPAM claims: symlinks carry no permissions of their own
        }
        out.push((p.clone(), md.mode() & 0o7777, md.uid(), md.is_dir()));
        if md.is_dir() {
            walk(&p, out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_roots_alone_whatever_the_umask_and_locks_follow_no_link() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("sf-perm").await;
    sb.netns("c1").await.unwrap();
    let nc = Netctl::new(&sb);
    let state = sb.state_dir().join("st");
    let umask0 = |args: &[&str]| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("umask 0; exec \"$@\"")
            .arg("sh")
            .args(["ip", "netns", "exec", sb.host_name()])
            .arg(netctl_exe())
            .arg("--state-dir")
            .arg(&state)
            .args(args);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    umask0(&["network", "create", "--subnet", "10.86.0.0/24", "web"]);
    let p = sb.netns_path("c1");
    umask0(&[
        "connect",
        "--netns",
        path_str(&p),
        "-p",
        "8080:80",
        "web",
        "c1",
    ]);
    let mut all = Vec::new();
    all.push((
        state.clone(),
        std::fs::metadata(&state).unwrap().mode() & 0o7777,
        0,
        true,
    ));
    walk(&state, &mut all);
    assert!(all.len() > 10, "{all:?}");
    for (path, mode, uid, dir) in &all {
        let want = if *dir { 0o700 } else { 0o600 };
        assert_eq!(
            *mode,
            want,
            "{} has mode {mode:o} under umask 0",
            path.display()
        );
        assert_eq!(*uid, 0, "{} is root's", path.display());
    }

    // A lock file replaced by a symlink: the open fails, nothing is created at its target.
    let scratch = Scratch::new("sf-perm");
    let target = scratch.0.join("created-by-berth");
    std::fs::remove_file(state.join("lock")).unwrap();
    symlink(&target, state.join("lock")).unwrap();
    let out = nc.state_dir(&state).run(&["disconnect", "web", "c1"]);
    assert!(!out.status.success());
    assert!(!target.exists(), "a lock was opened through a symlink");
    // A state dir that is another user's is refused.
    let theirs = scratch.0.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let e = nc.state_dir(&theirs).error(&["network", "ls"]);
    assert!(e.contains("owned by uid 65534"), "{e}");
}
