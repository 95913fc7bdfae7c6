//! The state directory: records of networks and endpoints, written atomically, and the lock that
//! serialises mutating operations across tasks and processes.
//!
//! Layout: `networks/NAME.json`, `endpoints/NETWORK/CONTAINER.json`, `ports/PROTO-PORT/` (an
//! index of who publishes a host port: one empty file `HOSTIP,NETWORK,CONTAINER` per publisher),
//! `ipam/` (owned by [`crate::ipam::FileIpam`]), `lock`. Every file with content is written as
//! tmp file + fsync + rename + fsync of the directory, so a reader (or a crash) sees the old or
//! the new file, never half of one; index entries carry no content, so creating one is atomic
//! and an fsync of its directory makes it durable. Nothing an attach writes grows with the
//! number of endpoints.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::names::SandboxRecord;
use crate::network::NetworkInfo;
use crate::port::Protocol;

/// Handle on a state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// One publisher of a host port, in the ports index (`ports/PROTO-PORT/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortOwner {
    /// Host address it is published on (unspecified: all).
    pub host_ip: IpAddr,
    /// Network of the endpoint.
    pub network: String,
    /// Container.
    pub container: String,
}

/// An exclusive `flock` on the state dir, released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateDir {
    /// Opens (creating if needed) the state dir at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["networks", "endpoints", "ipam", "ports"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).map_err(|e| Error::state("create dir", &d, e))?;
        }
        Ok(StateDir { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the exclusive lock (waits for other tasks and processes), off the executor.
    pub async fn lock(&self) -> Result<StateLock> {
        let path = self.root.join("lock");
        tokio::task::spawn_blocking(move || lock_file(&path))
            .await
            .map_err(|e| Error::state("lock", "lock", io::Error::other(e)))?
    }

    fn network_path(&self, name: &str) -> PathBuf {
        self.root.join("networks").join(format!("{name}.json"))
    }

    fn endpoint_dir(&self, network: &str) -> PathBuf {
        self.root.join("endpoints").join(network)
    }

    fn endpoint_path(&self, network: &str, container: &str) -> PathBuf {
        self.endpoint_dir(network).join(format!("{container}.json"))
    }

    /// The record of network `name`, if any.
    pub fn network(&self, name: &str) -> Result<Option<NetworkInfo>> {
        read_json(&self.network_path(name))
    }

    /// Every network record, sorted by name.
    pub fn networks(&self) -> Result<Vec<NetworkInfo>> {
        let mut v: Vec<NetworkInfo> = read_dir_json(&self.root.join("networks"))?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Writes a network record.
    pub fn put_network(&self, n: &NetworkInfo) -> Result<()> {
        write_json(&self.network_path(&n.name), n)
    }

    /// Removes a network record and its (empty) endpoint directory.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let _ = fs::remove_dir(self.endpoint_dir(name));
        remove(&self.network_path(name))
    }

    /// The attachment of `container` to `network`, if any.
    pub fn endpoint(&self, network: &str, container: &str) -> Result<Option<Attachment>> {
        read_json(&self.endpoint_path(network, container))
    }

    /// Every attachment on `network`, sorted by container.
    pub fn endpoints(&self, network: &str) -> Result<Vec<Attachment>> {
        let mut v: Vec<Attachment> = read_dir_json(&self.endpoint_dir(network))?;
        v.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(v)
    }

    /// Writes an attachment record, and its published ports into the ports index first (an
    /// index entry without a record is ignored; see [`StateDir::port_owners`]). The index
    /// entries are durable before the record is: they and the record's new content are
    /// fsynced together, then the record is renamed into place and its directory fsynced.
    pub fn put_endpoint(&self, a: &Attachment) -> Result<()> {
        let dir = self.endpoint_dir(&a.network);
        fs::create_dir_all(&dir).map_err(|e| Error::state("create dir", &dir, e))?;
        let path = self.endpoint_path(&a.network, &a.container);
        let bytes = serde_json::to_vec_pretty(a).expect("records always serialise");
        let tmp = write_tmp(&path, &bytes).map_err(|e| Error::state("write", &path, e))?;
        let mut durable = self.index_ports(a)?;
        durable.push(tmp.clone());
        sync_together(&durable)?;
        fs::rename(&tmp, &path).map_err(|e| Error::state("write", &path, e))?;
        sync_path(&dir)
    }

    /// Adds the index entries of `a`'s ports; returns the directories to fsync.
    fn index_ports(&self, a: &Attachment) -> Result<Vec<PathBuf>> {
        let mut touched = Vec::new();
        for p in &a.ports {
            let dir = self.port_dir(p.proto, p.host_port);
            match fs::create_dir(&dir) {
                Ok(()) => touched.push(self.root.join("ports")),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::state("create dir", &dir, e)),
            }
            let entry = dir.join(port_entry(p.host_ip, &a.network, &a.container));
            File::create(&entry).map_err(|e| Error::state("write", &entry, e))?;
            touched.push(dir);
        }
        touched.sort();
        touched.dedup();
        Ok(touched)
    }

    /// Removes an attachment record and its ports-index entries (idempotent).
    pub fn remove_endpoint(&self, network: &str, container: &str) -> Result<()> {
        let Some(a) = self.endpoint(network, container)? else {
            return Ok(());
        };
        remove(&self.endpoint_path(network, container))?;
        for p in &a.ports {
            let dir = self.port_dir(p.proto, p.host_port);
            // The directory stays (so publishing the port again need not make and fsync it
            // anew); gc's rebuild of the index drops empty ones.
            remove(&dir.join(port_entry(p.host_ip, network, container)))?;
        }
        Ok(())
    }

    fn port_dir(&self, proto: Protocol, port: u16) -> PathBuf {
        self.root.join("ports").join(format!("{proto}-{port}"))
    }

    /// Who publishes host port `port`/`proto` (on any host address): one small directory read,
    /// so the conflict check does not grow with the number of endpoints. Entries whose record
    /// is gone (a crash between the two writes) are ignored.
    pub fn port_owners(&self, proto: Protocol, port: u16) -> Result<Vec<PortOwner>> {
        let dir = self.port_dir(proto, port);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::state("list", &dir, e)),
        };
        let mut live = Vec::new();
        for e in entries {
            let name = e.map_err(|e| Error::state("list", &dir, e))?.file_name();
            let Some(o) = name.to_str().and_then(parse_port_entry) else {
                continue;
            };
            if self.endpoint(&o.network, &o.container)?.is_some_and(|a| {
                a.ports
                    .iter()
                    .any(|p| p.proto == proto && p.host_port == port)
            }) {
                live.push(o);
            }
        }
        Ok(live)
    }

    /// Rebuilds the ports index from the endpoint records (gc).
    pub fn rebuild_ports(&self) -> Result<()> {
        let dir = self.root.join("ports");
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path();
                let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(|e| Error::state("remove", &p, e))?;
            }
        }
        let mut touched = vec![dir];
        for n in self.networks()? {
            for a in self.endpoints(&n.name)? {
                touched.extend(self.index_ports(&a)?);
            }
        }
        touched.sort();
        touched.dedup();
        touched.iter().try_for_each(|d| sync_path(d))
    }
}

/// The name of a ports-index entry.
fn port_entry(host_ip: IpAddr, network: &str, container: &str) -> String {
    format!("{host_ip},{network},{container}")
}

fn parse_port_entry(name: &str) -> Option<PortOwner> {
    let mut parts = name.splitn(3, ',');
    Some(PortOwner {
        host_ip: parts.next()?.parse().ok()?,
        network: parts.next()?.to_string(),
        container: parts.next()?.to_string(),
    })
}

/// fsync of a file (its content is durable) or a directory (what was created or renamed in it
/// is durable).
fn sync_path(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::state("fsync", dir, e))
}

/// fsyncs files and directories all at once, one thread each: the block layer merges flushes
/// issued together, so several cost about one (measured here under I/O load: three
/// directories 8 ms one after the other, 1.2-4 ms together).
fn sync_together(paths: &[PathBuf]) -> Result<()> {
    let Some((first, rest)) = paths.split_first() else {
        return Ok(());
    };
    std::thread::scope(|s| {
        let others: Vec<_> = rest.iter().map(|p| s.spawn(move || sync_path(p))).collect();
        let mut r = sync_path(first);
        for h in others {
            let done = h.join().unwrap_or_else(|_| {
                Err(Error::state("fsync", first, io::Error::other("panicked")))
            });
            r = r.and(done);
        }
        r
    })
}

/// Removes temporary files (`.NAME.PID.tmp`) that a writer killed mid-write left anywhere under
/// `dir`, when process PID is gone. Returns how many were removed.
pub(crate) fn remove_stale_tmp(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        // Not following symlinks: IPAM entries are symlinks.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            n += remove_stale_tmp(&p);
            continue;
        }
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(pid) = name
            .strip_suffix(".tmp")
            .and_then(|s| s.rsplit('.').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if name.starts_with('.') && !alive && fs::remove_file(&p).is_ok() {
            n += 1;
        }
    }
    n
}

/// Opens `path` (creating it) and takes an exclusive flock on it, blocking.
pub(crate) fn lock_file(path: &Path) -> Result<StateLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::state("open lock", path, e))?;
    file.lock().map_err(|e| Error::state("flock", path, e))?;
    Ok(StateLock { _file: file })
}

/// Reads and parses a JSON file; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| Error::StateCorrupt {
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::state("read", path, e)),
    }
}

fn read_dir_json<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::state("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| Error::state("list", dir, e))?.path();
        if p.extension().is_some_and(|x| x == "json")
            && let Some(v) = read_json(&p)?
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// Serialises `value` and replaces `path` atomically (tmp + fsync + rename + fsync dir).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("records always serialise");
    write_atomic(path, &bytes).map_err(|e| Error::state("write", path, e))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_tmp(path, bytes)?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Writes `bytes` to the temporary file `path` is later renamed from (`.NAME.PID.tmp`), not
/// fsynced yet.
fn write_tmp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    File::create(&tmp)?.write_all(bytes)?;
    Ok(tmp)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::state("remove", path, e)),
    }
}

/// Sandbox records (`sandboxes/CONTAINER.json`): a container's name settings, its netns mode
/// and where its files were written (see [`crate::names`]).
impl StateDir {
    fn sandbox_path(&self, container: &str) -> PathBuf {
        self.root
            .join("sandboxes")
            .join(format!("{container}.json"))
    }

    /// The sandbox record of `container`, if any.
    pub fn sandbox(&self, container: &str) -> Result<Option<SandboxRecord>> {
        read_json(&self.sandbox_path(container))
    }

    /// Every sandbox record, sorted by container.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        let mut v: Vec<SandboxRecord> = read_dir_json(&self.root.join("sandboxes"))?;
        v.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(v)
    }

    /// Writes a sandbox record.
    pub fn put_sandbox(&self, r: &SandboxRecord) -> Result<()> {
        let dir = self.root.join("sandboxes");
        fs::create_dir_all(&dir).map_err(|e| Error::state("create dir", &dir, e))?;
        write_json(&self.sandbox_path(&r.container), r)
    }

    /// Removes a sandbox record (idempotent), and its mark in the written-files index.
    pub fn remove_sandbox(&self, container: &str) -> Result<()> {
        remove(&self.root.join("files").join(container))?;
        remove(&self.sandbox_path(container))
    }

    /// Marks `container` as having written files (`files/CONTAINER`, empty): the index that
    /// lets an attach find the files to rewrite without reading every sandbox record.
    pub fn mark_files_written(&self, container: &str) -> Result<()> {
        let dir = self.root.join("files");
        fs::create_dir_all(&dir).map_err(|e| Error::state("create dir", &dir, e))?;
        let path = dir.join(container);
        File::create(&path).map_err(|e| Error::state("create", &path, e))?;
        Ok(())
    }

    /// The containers marked by [`StateDir::mark_files_written`].
    pub fn files_written(&self) -> Result<Vec<String>> {
        let dir = self.root.join("files");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::state("list", &dir, e)),
        };
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect())
    }

    /// Every attachment of `container`, on any network, in attach order.
    pub fn attachments_of(&self, container: &str) -> Result<Vec<Attachment>> {
        let mut atts = Vec::new();
        for n in self.networks()? {
            atts.extend(self.endpoint(&n.name, container)?);
        }
        atts.sort_by_key(|a| a.seq);
        Ok(atts)
    }
}
