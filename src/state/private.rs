//! Files of the state dir: root's alone, whatever the umask, and never reached through a
//! symlink someone else planted.
//!
//! Directories are made `0700`, files `0600`, both set explicitly after creation (a umask can
//! only take bits away, and `0777` would take all of them). Files are opened with `O_NOFOLLOW`
//! and new ones with `O_EXCL`, so a symlink in place of a lock file or a temporary file makes the
//! open fail instead of creating or truncating its target. A state dir that is not a directory
//! owned by the caller (a symlink, another user's directory) is refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Mode of every directory of the state dir.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file of the state dir.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Makes `dir` (and missing parents) with mode `0700`; an existing `dir` gets that mode too.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::state("create dir", dir, e))?;
    restrict(dir, DIR_MODE)
}

/// Makes one directory `dir`, `0700` whatever the umask; `Ok(false)` when it exists already.
pub(crate) fn make_dir(dir: &Path) -> io::Result<bool> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Checks that the state dir `root` is a directory (not a symlink) owned by this process's
/// user, and makes it `0700`.
pub(crate) fn secure_root(root: &Path) -> Result<()> {
    create_dir(root)?;
    let md = fs::symlink_metadata(root).map_err(|e| Error::state("inspect", root, e))?;
    let bad = |reason: &str| {
        Error::state(
            "open",
            root,
            io::Error::new(io::ErrorKind::PermissionDenied, reason.to_string()),
        )
    };
    if !md.file_type().is_dir() {
        return Err(bad("the state dir is not a directory (a symlink?)"));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(bad(&format!(
            "the state dir is owned by uid {}, not by this process's uid {me}",
            md.uid()
        )));
    }
    restrict(root, DIR_MODE)
}

/// Sets `path`'s permission bits to `mode` unless they are already that.
fn restrict(path: &Path, mode: u32) -> Result<()> {
    let md = fs::symlink_metadata(path).map_err(|e| Error::state("inspect", path, e))?;
    if md.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::state("chmod", path, e))?;
    }
    Ok(())
}

/// Options opening a state file: never through a symlink, mode `0600` for new files.
fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Creates an empty file `path` (an index entry) if missing, `0600`, not through a symlink.
pub(crate) fn create_entry(path: &Path) -> io::Result<()> {
    let f = options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
}

/// Opens (creating) a file to write in place: `0600`, not through a symlink.
pub(crate) fn open_rw(path: &Path) -> io::Result<File> {
    let f = options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// An exclusive `flock` on a lock file, released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Opens `path` (creating it, `0600`, never through a symlink) and takes an exclusive flock on
/// it, blocking.
pub(crate) fn lock_file(path: &Path) -> Result<StateLock> {
    let file = open_rw(path).map_err(|e| Error::state("open lock", path, e))?;
    file.lock().map_err(|e| Error::state("flock", path, e))?;
    Ok(StateLock { _file: file })
}

/// Reads and parses a JSON file (not through a symlink); `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match options().read(true).open(path) {
        Ok(mut f) => {
            let mut b = Vec::new();
            io::Read::read_to_end(&mut f, &mut b).map_err(|e| Error::state("read", path, e))?;
            b
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::state("read", path, e)),
    };
    decode_json(path, &bytes).map(Some)
}

/// Parses the bytes of record `path` (what [`read_json`] does once it has read them).
pub(crate) fn decode_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::StateCorrupt {
        path: path.into(),
        source,
    })
}

/// Serialises `value` and replaces `path` atomically (tmp + fsync + rename + fsync dir).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("records always serialise");
    write_atomic(path, &bytes).map_err(|e| Error::state("write", path, e))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_tmp(path, bytes)?;
    let done = File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Writes `bytes` to a new temporary file beside `path` (`.NAME.PID.rRANDOM.tmp`, made
/// exclusively, `0600`), not fsynced yet; returns its path. On failure nothing is left.
pub(crate) fn write_tmp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.r{:08x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
            f.write_all(bytes)
        });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Saves a copy of a corrupt record `path` into the directory `into` (made if missing), named
/// `NAME.HASH` after its content so that reading the same damage again saves nothing new;
/// returns the copy's path. The original is left where it is: only an operation holding the
/// state lock removes or replaces it (a reader could otherwise race a writer's rename).
pub(crate) fn save_corrupt(path: &Path, into: &Path) -> io::Result<PathBuf> {
    let bytes = fs::read(path)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("record");
    let copy = into.join(format!("{name}.{h:016x}"));
    if fs::symlink_metadata(&copy).is_ok() {
        return Ok(copy);
    }
    make_dir(into)?;
    let tmp = write_tmp(&copy, &bytes)?;
    fs::rename(&tmp, &copy)?;
    Ok(copy)
}

/// The writer's pid of a temporary file name made by [`write_tmp`] (or by earlier versions:
/// `.NAME.PID.tmp`), if it is one.
pub(crate) fn tmp_owner(name: &str) -> Option<i32> {
    let stem = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = stem.rsplit('.');
    let last = parts.next()?;
    if let Ok(pid) = last.parse::<i32>() {
        return Some(pid);
    }
    // `.NAME.PID.rRANDOM.tmp`: RANDOM is 8 hex digits.
    if let Some(r) = last.strip_prefix('r')
        && r.len() == 8
        && r.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return parts.next()?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_carry_the_writer() {
        assert_eq!(tmp_owner(".web.json.4242.r0a1b2c3d.tmp"), Some(4242));
        assert_eq!(tmp_owner(".web.json.4242.tmp"), Some(4242));
        assert_eq!(tmp_owner("web.json"), None);
        assert_eq!(tmp_owner(".web.json.x.tmp"), None);
    }
}
