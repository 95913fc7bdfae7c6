//! Following the state dir: one inotify instance watches `networks/`, `endpoints/`, every
//! `endpoints/NETWORK/`, `sandboxes/` and `cluster-peers/` (and the root, for directories that appear), so a
//! record written or removed by any process — atomically, by rename — is seen at once.
//!
//! The resolver asks [`Watch::changed`] before answering each query (one non-blocking `read`):
//! a change that happened before the query was sent is always seen by it. A background task
//! also waits for events ([`Watch::wait`]) to bind and unbind listeners.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The directories under the root that hold records.
const RECORD_DIRS: [&str; 4] = ["networks", "endpoints", "sandboxes", "cluster-peers"];

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// An inotify watch over a state dir's records.
pub(crate) struct Watch {
    fd: AsyncFd<Fd>,
    root: PathBuf,
    dirs: Mutex<HashMap<WatchDescriptor, PathBuf>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("root", &self.root).finish()
    }
}

impl Watch {
    /// Watches the state dir at `root` (within a tokio runtime).
    pub(crate) fn new(root: &Path) -> io::Result<Self> {
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: `Fd` owns the inotify descriptor, which stays open, and is the one
        // `as_raw_fd` returns, for as long as the `AsyncFd` holds it.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(ino), Interest::READABLE)? };
        let w = Watch {
            fd,
            root: root.to_path_buf(),
            dirs: Mutex::new(HashMap::new()),
        };
        w.sync(&mut w.dirs.lock().expect("watch lock"))?;
        Ok(w)
    }

    /// Adds a watch on every record directory that has none yet.
    fn sync(&self, dirs: &mut HashMap<WatchDescriptor, PathBuf>) -> io::Result<()> {
        let mut want = vec![self.root.clone()];
        want.extend(RECORD_DIRS.iter().map(|d| self.root.join(d)));
        if let Ok(entries) = std::fs::read_dir(self.root.join("endpoints")) {
            want.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_ONLYDIR;
        for dir in want {
            if dirs.values().any(|d| *d == dir) {
                continue;
            }
            match self.fd.get_ref().0.add_watch(&dir, mask) {
                Ok(wd) => {
                    dirs.insert(wd, dir);
                }
                // Not there (yet): the root's watch reports it when it appears.
                Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads every pending event (without blocking); true when a record may have changed. New
    /// directories are watched before this returns, so a reload after it misses nothing.
    pub(crate) fn changed(&self) -> io::Result<bool> {
        let mut dirs = self.dirs.lock().expect("watch lock");
        let mut changed = false;
        loop {
            let events = match self.fd.get_ref().0.read_events() {
                Ok(ev) => ev,
                Err(Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            };
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    changed = true;
                    continue;
                }
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // The directory went away (a network was removed).
                    dirs.remove(&ev.wd);
                    changed = true;
                    continue;
                }
                let Some(dir) = dirs.get(&ev.wd) else {
                    continue;
                };
                let name = ev.name.as_deref().and_then(|n| n.to_str()).unwrap_or("");
                // Temporary files of atomic writes, and the root's lock file, are noise.
                let relevant =
                    !name.starts_with('.') && (*dir != self.root || RECORD_DIRS.contains(&name));
                changed |= relevant;
            }
        }
        if changed {
            self.sync(&mut dirs)?;
        }
        Ok(changed)
    }

    /// Waits until events are pending (they are read by [`Watch::changed`]).
    pub(crate) async fn wait(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        // Cleared before anyone reads: an event that arrives after this wakes the next wait.
        guard.clear_ready();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sees_records_appear_and_go_also_in_new_directories() {
        let root = std::env::temp_dir().join(format!("berth-watch-{}", std::process::id()));
        let state = crate::state::StateDir::open(&root).unwrap();
        let w = Watch::new(&root).unwrap();
        assert!(!w.changed().unwrap());
        std::fs::write(root.join("lock"), "").unwrap();
        assert!(!w.changed().unwrap(), "the lock file is noise");
        let net = crate::dns::resolver::table::tests::net("n", &[("10.1.0.0/24", "10.1.0.1")]);
        state.put_network(&net).unwrap();
        assert!(w.changed().unwrap());
        // A new endpoint directory, then a record in it: both seen.
        let a = crate::dns::resolver::table::tests::att("n", "a", "10.1.0.2", None, &[]);
        state.put_endpoint(&a).unwrap();
        assert!(w.changed().unwrap());
        std::fs::write(root.join("endpoints/n/.x.1.tmp"), "").unwrap();
        assert!(!w.changed().unwrap(), "temporary files are noise");
        state.remove_endpoint("n", "a").unwrap();
        assert!(w.changed().unwrap());
        state
            .put_sandbox(&crate::names::SandboxRecord::new("a"))
            .unwrap();
        assert!(w.changed().unwrap(), "sandboxes/ appeared with a record");
        state
            .put_sandbox(&crate::names::SandboxRecord::new("b"))
            .unwrap();
        assert!(w.changed().unwrap(), "sandboxes/ is watched now");
        state.remove_network("n").unwrap();
        assert!(w.changed().unwrap());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
