//! The three files of one container's `/etc` together, and writing them.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
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

    /// Writes `hosts`, `resolv.conf` and `hostname` into `dir` (created if missing; files mode
    /// 0644), each atomically (tmp + fsync + rename): a process reading them sees the old or
    /// the new file, never half of one. Because a rename gives the file a new inode, a runtime
    /// that wants updates (links, networks attached later) to show inside a running container
    /// bind-mounts the *directory* (or symlinks `/etc/hosts` … into it); a bind mount of a
    /// single file keeps showing the version it was mounted with.
    ///
    /// The directory's contents belong to the container, which may plant anything there, so
    /// nothing in it is followed: `dir` itself is opened with `O_NOFOLLOW` (a symlink in its
    /// place is refused), every file is made relative to that directory handle under an
    /// unpredictable name with `O_CREAT | O_EXCL | O_NOFOLLOW`, and `renameat` replaces what
    /// carries the final name (a symlink planted as `hosts` is replaced, its target untouched).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        let d = open_dir(dir)?;
        for (name, text) in self.entries() {
            write_at(&d, name, text.as_bytes())
                .map_err(|e| Error::state("write", dir.join(name), e))?;
        }
        nix::unistd::fsync(&d).map_err(|e| Error::state("fsync", dir, e.into()))
    }
}

/// Opens `dir` (creating it if missing, 0755) as a directory handle, refusing a symlink in its
/// place.
fn open_dir(dir: &Path) -> Result<OwnedFd> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::state("create dir", parent, e))?;
    }
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(Error::state("create dir", dir, e));
        }
        _ => {}
    }
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
    open(dir, flags, Mode::empty()).map_err(|e| {
        let e = if e == nix::errno::Errno::ELOOP || e == nix::errno::Errno::ENOTDIR {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symlink or not a directory: files are written only into a real directory",
            )
        } else {
            e.into()
        };
        Error::state("open dir", dir, e)
    })
}

/// Writes `bytes` to `name` in the directory `d`: a new file under a random name, fsynced, then
/// renamed over `name`. On failure the new file is removed.
fn write_at(d: &OwnedFd, name: &str, bytes: &[u8]) -> io::Result<()> {
    use nix::fcntl::{OFlag, openat, renameat};
    use nix::sys::stat::{Mode, fchmod};
    use nix::unistd::{UnlinkatFlags, unlinkat};
    let tmp = format!(".{name}.berth-{:016x}", rand::random::<u64>());
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o644);
    let fd = openat(d, tmp.as_str(), flags, mode)?;
    let written = (|| {
        fchmod(&fd, mode)?;
        let mut f = fs::File::from(fd);
        f.write_all(bytes)?;
        f.sync_all()?;
        renameat(d, tmp.as_str(), d, name)?;
        Ok::<_, io::Error>(())
    })();
    if written.is_err() {
        let _ = unlinkat(d, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    written
}
