//! Input the probe found accepted though wrong, or refused without naming what was wrong —
//! through the `netctl` binary. Each is refused with one `error:` line naming the culprit, and
//! changes nothing (the state dir's files and the host's links are the same before and after).

mod common;

use std::path::Path;

use common::netctl::*;
use common::*;

/// The state dir's file names and contents (symlink targets for IPAM claims), sorted.
fn state_tree(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.push((rel.clone() + "/", String::new()));
                walk(root, &p, out);
            } else if md.file_type().is_symlink() {
                out.push((rel, std::fs::read_link(&p).unwrap().display().to_string()));
            } else {
                out.push((rel, std::fs::read_to_string(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_input_is_refused_by_name_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let (mut sb, _outside) = sandbox("in-bad").await;
    sb.netns("c1").await.unwrap();
    let c4 = sb.netns("c4").await.unwrap();
    let nc = Netctl::new(&sb);
    nc.ok(&["network", "create", "--subnet", "10.87.0.0/24", "web"]);
    nc.connect(&sb, "web", "c1", &[]);
    let p4 = sb.netns_path("c4");
    sb.netns("c5").await.unwrap();
    let p5 = sb.netns_path("c5");
    let before = (state_tree(sb.state_dir()), link_names(sb.host()).await);

    let cases: &[(&[&str], &[&str])] = &[
        // Docker's predefined names are reserved.
        (&["network", "create", "none"], &["none", "reserved"]),
        (&["network", "create", "bridge"], &["bridge", "reserved"]),
        (&["network", "create", "host"], &["host", "reserved"]),
        // Special ranges.
        (
            &["network", "create", "--subnet", "127.0.0.0/8", "n1"],
            &["127.0.0.0/8", "loopback"],
        ),
        (
            &["network", "create", "--subnet", "224.0.0.0/24", "n2"],
            &["224.0.0.0/24", "multicast"],
        ),
        (
            &["network", "create", "--subnet", "169.254.0.0/24", "n3"],
            &["link-local"],
        ),
        (
            &[
                "network",
                "create",
                "--ipv6",
                "--subnet",
                "10.88.0.0/24",
                "--subnet",
                "ff02::/64",
                "n4",
            ],
            &["ff02::/64", "multicast"],
        ),
        // Two gateways for one subnet.
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.89.0.0/24",
                "--gateway",
                "10.89.0.1",
                "--gateway",
                "10.89.0.2",
                "n5",
            ],
            &["10.89.0.2", "gateway"],
        ),
        // A macvlan parent that is the loopback device.
        (
            &[
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                "parent=lo",
                "--subnet",
                "10.90.0.0/24",
                "n6",
            ],
            &["lo", "loopback"],
        ),
        // A link to a container berth does not know.
        (
            &[
                "connect",
                "--netns",
                path_str(&p4),
                "--link",
                "ghost",
                "web",
                "c4",
            ],
            &["ghost", "no such container"],
        ),
        // Brackets around an IPv4 host address.
        (
            &[
                "connect",
                "--netns",
                path_str(&p5),
                "-p",
                "[127.0.0.1]:8080:80",
                "web",
                "c5",
            ],
            &["brackets"],
        ),
    ];
    // Every case is tried before failing, so a regression names all it lets through.
    let mut wrong = Vec::new();
    for (args, words) in cases {
        let out = nc.run(args);
        let e = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
        let one_line = e.starts_with("error: ") && e.lines().count() == 1;
        if out.status.code() != Some(1) || !one_line || !words.iter().all(|w| e.contains(w)) {
            wrong.push(format!("netctl {args:?}: {} {e:?}", out.status));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused by name:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        (state_tree(sb.state_dir()), link_names(sb.host()).await),
        before,
        "a refused command changed something"
    );
    assert_eq!(link_names(&c4).await, vec!["lo".to_string()]);

    // `connect none` gives only `lo`, as Docker's `--network none`.
    nc.ok(&["connect", "--netns", path_str(&p4), "none", "c4"]);
    assert_eq!(link_names(&c4).await, vec!["lo".to_string()]);

    // daemon.json type errors name the key.
    let cfg = sb.state_dir().join("daemon.json");
    std::fs::write(&cfg, r#"{"log-level": "debug", "mtu": "big"}"#).unwrap();
    let e = nc.error(&["--daemon-config", path_str(&cfg), "network", "ls"]);
    assert!(e.contains("\"mtu\"") && e.contains("daemon.json"), "{e}");
}
