//! A throwaway network namespace without root's help: `unshare --user --map-root-user --net`
//! in a child process that holds it (for the fake-kernel suites, which need a real `Netns`
//! handle but make nothing in it). Included with `#[path = "common/unshared.rs"] mod unshared;`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::Netns;

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
