//! The three files of one container's `/etc` together, and writing them.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// A container's name-resolution files, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxFiles {
    /// `/etc/hosts`.
    pub hosts: String,
    /// `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// `/etc/hostname` (the name and a newline).
    pub hostname: String,
}

impl SandboxFiles {
    /// File names and contents, as written by [`SandboxFiles::write_to`].
    pub fn entries(&self) -> [(&'static str, &str); 3] {
        [
            ("hosts", &self.hosts),
            ("resolv.conf", &self.resolv_conf),
            ("hostname", &self.hostname),
        ]
    }

    /// Writes `hosts`, `resolv.conf` and `hostname` into `dir` (created if missing; mode 0644),
    /// each atomically (tmp + fsync + rename): a process reading them sees the old or the new
    /// file, never half of one. Because a rename gives the file a new inode, a runtime that
    /// wants updates (links, networks attached later) to show inside a running container
    /// bind-mounts the *directory* (or symlinks `/etc/hosts` … into it); a bind mount of a
    /// single file keeps showing the version it was mounted with.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::state("create dir", dir, e))?;
        for (name, text) in self.entries() {
            let path = dir.join(name);
            write_atomic(&path, text.as_bytes()).map_err(|e| Error::state("write", &path, e))?;
        }
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("berth-tmp-{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}
