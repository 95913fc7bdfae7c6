//! What the fake-kernel suites share: a throwaway network namespace without root's help
//! (`unshare --user --map-root-user --net` in a child process that holds it: they need a real
//! `Netns` handle but make nothing in it), and a scratch directory for a `Host` over the fake
//! kernel. Included with `#[path = "common/unshared.rs"] mod unshared;`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth::netlink::fake::FakeNet;
use berth::{Host, HostBuilder, Netns, NoFirewall};

/// The state dir, resolv.conf and hosts file of a `Host` over a fake kernel, in a fresh
/// directory of its own (nothing of the machine's is read); removed on drop.
pub struct HostDir(PathBuf);

static HOST_DIRS: AtomicUsize = AtomicUsize::new(0);

impl HostDir {
    /// A fresh directory named after `label`, this process and a counter.
    pub fn new(label: &str) -> HostDir {
        let dir = std::env::temp_dir().join(format!(
            "berth-{label}-{}-{}",
            std::process::id(),
            HOST_DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        std::fs::write(dir.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        HostDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// A host builder over `fake` in netns `ns`, without a firewall, with its files here.
    pub fn builder(&self, ns: Netns, fake: &FakeNet) -> HostBuilder {
        Host::builder()
            .state_dir(self.0.join("state"))
            .netns(ns)
            .kernel(fake.clone())
            .firewall(NoFirewall)
            .resolv_conf(self.0.join("resolv.conf"))
            .hosts_file(self.0.join("hosts"))
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Child processes, each holding a new network namespace; killed (by pid) and reaped on drop,
/// also when a test panics.
#[derive(Default)]
pub struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A new network namespace held by a child process (added to `children`).
pub fn spawn_netns(children: &mut Children) -> Result<Netns, String> {
    let own = Netns::current().map_err(|e| format!("own netns: {e}"))?;
    let mut child = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sleep", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    let path = format!("/proc/{}/ns/net", child.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!("unshare {status}: {}", err.trim()));
        }
        // Until unshare has run, the child is still in our netns.
        if let Ok(ns) = Netns::from_path(&path)
            && !ns.same_as(&own)
        {
            children.0.push(child);
            return Ok(ns);
        }
        if Instant::now() > deadline {
            children.0.push(child);
            return Err("unshare did not make a netns within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
