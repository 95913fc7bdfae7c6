//! The state directory: records of networks and endpoints, written atomically, and the lock that
//! serialises mutating operations across tasks and processes.
//!
//! Layout: `networks/NAME.json`, `endpoints/NETWORK/CONTAINER.json`, `ports/PROTO-PORT/` (an
//! index of who publishes a host port: one empty file `HOSTIP,NETWORK,CONTAINER` per publisher),
//! `ipam/` (owned by [`crate::ipam::FileIpam`]), `seen/NETWORK.v4|v6` (the highest address handed
//! out on a network, so an attach knows whether to announce), `lock`. Every file with content is written as
//! tmp file + fsync + rename + fsync of the directory, so a reader (or a crash) sees the old or
//! the new file, never half of one; index entries carry no content, so creating one is atomic
//! and an fsync of its directory makes it durable. Nothing an attach writes grows with the
//! number of endpoints.

pub(crate) mod private;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use private::StateLock;
pub(crate) use private::save_corrupt;
pub(crate) use private::{create_dir, create_entry, lock_file, open_rw, read_json, write_json};
use private::{secure_root, tmp_owner, write_tmp};

use crate::endpoint::Attachment;
use crate::error::{Error, Result};
use crate::names::SandboxRecord;
use crate::network::NetworkInfo;
use crate::port::Protocol;

/// The extension of a detach mark ([`StateDir::mark_detaching`]).
const DETACHING_SUFFIX: &str = "detaching";

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

impl StateDir {
    /// Opens (creating if needed) the state dir at `root`. It is root's alone: `0700`, files
    /// `0600` (see `private`); a `root` that is a symlink or another user's directory is
    /// refused.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        secure_root(&root)?;
        for sub in [
            "networks",
            "endpoints",
            "ipam",
            "ports",
            "sandboxes",
            "files",
            "seen",
        ] {
            create_dir(&root.join(sub))?;
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

    fn detaching_path(&self, network: &str, container: &str) -> PathBuf {
        self.endpoint_dir(network)
            .join(format!("{container}.{DETACHING_SUFFIX}"))
    }

    /// The copy of a network record kept beside it (`networks/NAME.json.bak`): a record found
    /// corrupt is read from it instead, and `gc` restores the record from it.
    fn network_backup(&self, name: &str) -> PathBuf {
        self.root.join("networks").join(format!("{name}.json.bak"))
    }

    /// Where copies of corrupt records are saved (`quarantine/`).
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// Reads a record; a corrupt one is saved to `quarantine/` (once) and reported.
    fn read_record<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        read_json(path).inspect_err(|e| {
            if matches!(e, Error::StateCorrupt { .. }) {
                let saved = save_corrupt(path, &self.quarantine_dir()).ok();
                tracing::warn!(target: "berth::state", file = %path.display(), error = %e,
                               saved = ?saved, "corrupt record");
            }
        })
    }

    /// Every readable record in `dir`: corrupt ones are saved to `quarantine/` and skipped,
    /// so one damaged file never stops the rest from working.
    fn read_records<T: DeserializeOwned>(&self, dir: &Path) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for p in json_files(dir)? {
            match self.read_record(&p) {
                Ok(Some(v)) => out.push(v),
                Ok(None) | Err(Error::StateCorrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The record of network `name`, if any. A corrupt record is read from its backup; with
    /// none, the error names the file (and its copy is in `quarantine/`).
    pub fn network(&self, name: &str) -> Result<Option<NetworkInfo>> {
        match self.read_record(&self.network_path(name)) {
            Err(e @ Error::StateCorrupt { .. }) => match read_json(&self.network_backup(name)) {
                Ok(Some(n)) => Ok(Some(n)),
                _ => Err(e),
            },
            other => other,
        }
    }

    /// Every network record, sorted by name (a corrupt one is read from its backup, or
    /// skipped).
    pub fn networks(&self) -> Result<Vec<NetworkInfo>> {
        let mut v = Vec::new();
        for p in json_files(&self.root.join("networks"))? {
            let name = p.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
            match self.network(name) {
                Ok(Some(n)) => v.push(n),
                Ok(None) | Err(Error::StateCorrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Writes a network record (and its backup), and makes its endpoint directory.
    pub fn put_network(&self, n: &NetworkInfo) -> Result<()> {
        create_dir(&self.endpoint_dir(&n.name))?;
        write_json(&self.network_path(&n.name), n)?;
        write_json(&self.network_backup(&n.name), n)
    }

    /// Removes a network record, its backup and its endpoint directory with whatever records
    /// are left in it (idempotent).
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let dir = self.endpoint_dir(name);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::state("remove", &dir, e));
            }
            _ => {}
        }
        self.forget_seen(name)?;
        remove(&self.network_path(name))?;
        remove(&self.network_backup(name))
    }

    /// Records `ips` as handed out on `network`; returns whether any of them may have been
    /// handed out before (whoever talked to an earlier holder may still cache its MAC: the new
    /// holder must announce the address). Kept per family as the highest address ever handed
    /// out (`seen/NETWORK.v4`, `.v6`): the next-free cursor moves upward, so an address above
    /// it is a first use until the cursor wraps; anything at or below it counts as reused
    /// (static addresses included — announcing once too often costs a flood, never a wrong
    /// answer). Constant size whatever the churn; written in place, no fsync (after a crash of
    /// the machine no neighbour cache survives either).
    pub fn mark_seen(&self, network: &str, ips: &[IpAddr]) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let mut before = false;
        for ip in ips {
            let path = self.seen_path(network, ip.is_ipv4());
            let high: Option<IpAddr> = fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            match high {
                Some(h) if *ip <= h => before = true,
                _ => open_rw(&path)
                    .and_then(|f| f.write_all_at(format!("{ip:<40}\n").as_bytes(), 0))
                    .map_err(|e| Error::state("write", &path, e))?,
            }
        }
        Ok(before)
    }

    /// Forgets the addresses seen on `network` (its removal; idempotent).
    pub fn forget_seen(&self, network: &str) -> Result<()> {
        remove(&self.seen_path(network, true))?;
        remove(&self.seen_path(network, false))
    }

    /// The networks with addresses seen (gc drops those no record knows).
    pub fn seen_networks(&self) -> Result<Vec<String>> {
        let dir = self.root.join("seen");
        let rd = fs::read_dir(&dir).map_err(|e| Error::state("read", &dir, e))?;
        let mut out: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".v4")
                    .or_else(|| n.strip_suffix(".v6"))
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn seen_path(&self, network: &str, v4: bool) -> PathBuf {
        let fam = if v4 { "v4" } else { "v6" };
        self.root.join("seen").join(format!("{network}.{fam}"))
    }

    /// The names under `endpoints/`: networks that have (or had) endpoint records.
    pub fn endpoint_networks(&self) -> Result<Vec<String>> {
        let dir = self.root.join("endpoints");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::state("list", &dir, e)),
        };
        Ok(entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }

    /// Repairs every corrupt record (the caller holds the state lock, so no writer races it):
    /// a network record is rewritten from its backup when that is readable; any other corrupt
    /// record is removed — a copy of each is in `quarantine/` first. Returns the copies.
    pub fn repair_corrupt(&self) -> Result<Vec<PathBuf>> {
        let mut saved = Vec::new();
        let mut dirs = vec![self.root.join("networks"), self.root.join("sandboxes")];
        for n in self.endpoint_networks()? {
            dirs.push(self.endpoint_dir(&n));
        }
        for dir in dirs {
            for p in json_files(&dir)? {
                let Err(Error::StateCorrupt { .. }) = read_json::<serde_json::Value>(&p) else {
                    continue;
                };
                saved.push(
                    save_corrupt(&p, &self.quarantine_dir())
                        .map_err(|e| Error::state("save corrupt record", &p, e))?,
                );
                let backup = p.with_extension("json.bak");
                match read_json::<NetworkInfo>(&backup) {
                    Ok(Some(n)) if dir.ends_with("networks") => write_json(&p, &n)?,
                    _ => remove(&p)?,
                }
            }
        }
        Ok(saved)
    }

    /// The attachment of `container` to `network`, if any (a corrupt record is an error naming
    /// it; its copy is in `quarantine/`).
    pub fn endpoint(&self, network: &str, container: &str) -> Result<Option<Attachment>> {
        self.read_record(&self.endpoint_path(network, container))
    }

    /// How many attachment records `network` has (one directory read; none is opened).
    pub fn endpoint_count(&self, network: &str) -> Result<usize> {
        Ok(json_files(&self.endpoint_dir(network))?.len())
    }

    /// Every attachment on `network`, sorted by container.
    pub fn endpoints(&self, network: &str) -> Result<Vec<Attachment>> {
        let mut v: Vec<Attachment> = self.read_records(&self.endpoint_dir(network))?;
        v.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(v)
    }

    /// Writes an attachment record, and its published ports into the ports index first (an
    /// index entry without a record is ignored; see [`StateDir::port_owners`]).
    pub fn put_endpoint(&self, a: &Attachment) -> Result<()> {
        self.put_attach(a, None)
    }

    /// Writes the records of one attach: the attachment record (its published ports into the
    /// ports index first) and, when given, its container's sandbox record. They are made
    /// durable together, in two rounds of fsyncs whatever their number: the index entries and
    /// both records' new contents ([`StateDir::stage_attach`]), then the records are
    /// renamed into place (the attachment's first) and their directories fsynced at once
    /// ([`StagedAttach::commit`]). A reader or a crash sees each record old or new, never half
    /// of one. On failure neither record is left changed.
    pub fn put_attach(&self, a: &Attachment, sandbox: Option<&SandboxRecord>) -> Result<()> {
        self.stage_attach(a, sandbox)?.commit()
    }

    /// The first half of [`StateDir::put_attach`]: the ports-index entries and the records'
    /// new contents, written beside the records and made durable; nothing is renamed yet, so
    /// readers see no change. `Host` stages while the driver plumbs the endpoint, and commits
    /// once everything else succeeded; dropping the stage uncommitted removes what it wrote.
    pub fn stage_attach(
        &self,
        a: &Attachment,
        sandbox: Option<&SandboxRecord>,
    ) -> Result<StagedAttach> {
        create_dir(&self.endpoint_dir(&a.network))?;
        let mut st = StagedAttach::default();
        let mut stage = |path: PathBuf, bytes: Vec<u8>| -> Result<()> {
            let tmp = write_tmp(&path, &bytes).map_err(|e| Error::state("write", &path, e))?;
            st.staged.push((tmp, path));
            Ok(())
        };
        let path = self.endpoint_path(&a.network, &a.container);
        stage(
            path,
            serde_json::to_vec_pretty(a).expect("records always serialise"),
        )?;
        if let Some(r) = sandbox {
            create_dir(&self.root.join("sandboxes"))?;
            let bytes = serde_json::to_vec_pretty(r).expect("records always serialise");
            stage(self.sandbox_path(&r.container), bytes)?;
        }
        let mut durable = self.index_ports(a, &mut st.entries)?;
        durable.extend(st.staged.iter().map(|(tmp, _)| tmp.clone()));
        // One after the other: `Host` stages on a blocking thread while the driver works in
        // the kernel, and threads of their own would compete with that work for the CPU (on
        // 2 cores here the attach got no faster with them).
        for p in &durable {
            sync_path(p)?;
        }
        Ok(st)
    }

    /// Adds the index entries of `a`'s ports (their paths pushed on `entries`); returns the
    /// directories to fsync.
    fn index_ports(&self, a: &Attachment, entries: &mut Vec<PathBuf>) -> Result<Vec<PathBuf>> {
        let mut touched = Vec::new();
        for p in &a.ports {
            let dir = self.port_dir(p.proto, p.host_port);
            if private::make_dir(&dir).map_err(|e| Error::state("create dir", &dir, e))? {
                touched.push(self.root.join("ports"));
            }
            let entry = dir.join(port_entry(p.host_ip, &a.network, &a.container));
            create_entry(&entry).map_err(|e| Error::state("write", &entry, e))?;
            entries.push(entry);
            touched.push(dir);
        }
        touched.sort();
        touched.dedup();
        Ok(touched)
    }

    /// Marks the attachment of `container` to `network` as being detached
    /// (`endpoints/NETWORK/CONTAINER.detaching`, an empty entry beside the record), before the
    /// first step of a detach: a process killed in the middle leaves the mark, and `gc` (or
    /// the next detach or attach of the container) finishes the detach whatever the caller
    /// keeps. Not fsynced: it must survive a killed process, and a reboot takes the kernel
    /// objects it is about with it anyway.
    pub fn mark_detaching(&self, network: &str, container: &str) -> Result<()> {
        let path = self.detaching_path(network, container);
        create_entry(&path).map_err(|e| Error::state("write", &path, e))
    }

    /// Removes detach marks whose record is gone (a detach killed between removing the record
    /// and its mark); returns how many. The caller holds the state lock.
    pub fn remove_orphan_marks(&self) -> Result<usize> {
        let mut removed = 0;
        for network in self.endpoint_networks()? {
            let dir = self.endpoint_dir(&network);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(container) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(&format!(".{DETACHING_SUFFIX}")))
                else {
                    continue;
                };
                if !self.endpoint_path(&network, container).exists() {
                    remove(&e.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Whether a detach of `container` from `network` was started and not finished.
    pub fn is_detaching(&self, network: &str, container: &str) -> bool {
        self.detaching_path(network, container).exists()
    }

    /// Removes an attachment record, its ports-index entries and its detach mark (idempotent).
    pub fn remove_endpoint(&self, network: &str, container: &str) -> Result<()> {
        let Some(a) = self.endpoint(network, container)? else {
            return remove(&self.detaching_path(network, container));
        };
        remove(&self.endpoint_path(network, container))?;
        remove(&self.detaching_path(network, container))?;
        for p in &a.ports {
            let dir = self.port_dir(p.proto, p.host_port);
            remove(&dir.join(port_entry(p.host_ip, network, container)))?;
            // The last publisher of the port removes its directory (another's entry in it
            // makes this fail harmlessly: it is not empty).
            let _ = fs::remove_dir(&dir);
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
                touched.extend(self.index_ports(&a, &mut Vec::new())?);
            }
        }
        touched.sort();
        touched.dedup();
        touched.iter().try_for_each(|d| sync_path(d))
    }
}

/// The records of one attach, written and durable beside their final names but not in place
/// yet ([`StateDir::stage_attach`]). Dropped uncommitted, it removes its files and its
/// ports-index entries.
#[derive(Debug, Default)]
#[must_use = "commit it, or drop it to remove what it wrote"]
pub struct StagedAttach {
    /// (temporary file, record) pairs, the attachment record first.
    staged: Vec<(PathBuf, PathBuf)>,
    /// The ports-index entries it created.
    entries: Vec<PathBuf>,
    /// Records renamed into place so far.
    placed: usize,
    committed: bool,
}

impl StagedAttach {
    /// Renames the records into place, the attachment record first, and fsyncs their
    /// directories at once. On failure, a record already placed is removed again and the rest
    /// is dropped: neither record is left changed.
    pub fn commit(mut self) -> Result<()> {
        for (tmp, path) in &self.staged {
            fs::rename(tmp, path).map_err(|e| Error::state("write", path, e))?;
            self.placed += 1;
        }
        let mut dirs: Vec<PathBuf> = self
            .staged
            .iter()
            .filter_map(|(_, p)| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.dedup();
        sync_together(&dirs)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedAttach {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for (i, (tmp, path)) in self.staged.iter().enumerate() {
            if i >= self.placed {
                let _ = fs::remove_file(tmp);
            } else if i == 0 {
                // The attachment record is new (an attach refuses an existing one): it goes.
                // A sandbox record placed before a failed directory fsync keeps its new
                // content (its old one is gone): only this endpoint's names are merged in.
                let _ = fs::remove_file(path);
            }
        }
        for e in &self.entries {
            let _ = fs::remove_file(e);
        }
    }
}

/// The name of a ports-index entry.
fn port_entry(host_ip: IpAddr, network: &str, container: &str) -> String {
    format!("{host_ip},{network},{container}")
}

pub(crate) fn parse_port_entry(name: &str) -> Option<PortOwner> {
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
        let Some(pid) = tmp_owner(name) else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive && fs::remove_file(&p).is_ok() {
            n += 1;
        }
    }
    n
}

/// The `*.json` files of `dir` (none if it does not exist), sorted.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::state("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| Error::state("list", dir, e))?.path();
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if p.extension().is_some_and(|x| x == "json") && !hidden {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
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

    /// The sandbox record of `container`, if any. A corrupt one is skipped (its copy is in
    /// `quarantine/`): the container's name settings are lost, nothing else.
    pub fn sandbox(&self, container: &str) -> Result<Option<SandboxRecord>> {
        match self.read_record(&self.sandbox_path(container)) {
            Err(Error::StateCorrupt { .. }) => Ok(None),
            other => other,
        }
    }

    /// Every sandbox record, sorted by container.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        let mut v: Vec<SandboxRecord> = self.read_records(&self.root.join("sandboxes"))?;
        v.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(v)
    }

    /// Writes a sandbox record.
    pub fn put_sandbox(&self, r: &SandboxRecord) -> Result<()> {
        create_dir(&self.root.join("sandboxes"))?;
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
        create_dir(&dir)?;
        let path = dir.join(container);
        create_entry(&path).map_err(|e| Error::state("create", &path, e))
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

    fn pending_path(&self, network: &str, container: &str) -> PathBuf {
        self.root
            .join("cluster-pending")
            .join(format!("{network}@{container}.json"))
    }

    /// Records a detach whose cluster-store side is still to do.
    pub(crate) fn put_pending_detach(&self, p: &crate::host::PendingDetach) -> Result<()> {
        create_dir(&self.root.join("cluster-pending"))?;
        write_json(&self.pending_path(&p.network, &p.container), p)
    }

    /// The detaches whose cluster-store side is still to do.
    pub(crate) fn pending_detaches(&self) -> Result<Vec<crate::host::PendingDetach>> {
        self.read_records(&self.root.join("cluster-pending"))
    }

    /// Forgets one pending detach (idempotent).
    pub(crate) fn remove_pending_detach(&self, p: &crate::host::PendingDetach) -> Result<()> {
        remove(&self.pending_path(&p.network, &p.container))
    }

    fn peers_path(&self, network: &str) -> PathBuf {
        self.root
            .join("cluster-peers")
            .join(format!("{network}.json"))
    }

    /// The endpoints of a cluster network on other hosts, as this host's overlay agent last saw
    /// them in the store (what the embedded resolver answers for them).
    pub fn cluster_peers(
        &self,
        network: &str,
    ) -> Result<Vec<crate::cluster::records::EndpointRecord>> {
        match self.read_record(&self.peers_path(network)) {
            Ok(Some(v)) => Ok(v),
            Ok(None) | Err(Error::StateCorrupt { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Writes the endpoints of a cluster network on other hosts (empty: the file goes).
    pub(crate) fn put_cluster_peers(
        &self,
        network: &str,
        peers: &[crate::cluster::records::EndpointRecord],
    ) -> Result<()> {
        if peers.is_empty() {
            return remove(&self.peers_path(network));
        }
        create_dir(&self.root.join("cluster-peers"))?;
        write_json(&self.peers_path(network), &peers)
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
