//! Where [`super::FileIpam`] keeps a network's allocations: one directory entry per address,
//! so that allocating costs the same with 10 or 10,000 addresses in use (the earlier single
//! JSON file was read, rewritten and fsynced whole on every attach: ~12 ms at 1,000 endpoints).
//!
//! In `ipam/NETWORK.d/`:
//! - `ADDRESS` → `CONTAINER`: a symlink per allocated address, the claim. Creating a symlink is
//!   atomic and fails when the name exists, so no address is ever claimed twice, whichever
//!   process tries; a crash leaves it whole or absent.
//! - `@CONTAINER` → `ADDRESS[,ADDRESS]`: what a container holds, to release it without a scan.
//!   It is written before the claim it lists, so no claim is ever left that its holder's entry
//!   does not know (an entry listing an address its holder never claimed is harmless: only
//!   claims whose target is the container count).
//! - `~SUBNET`: a small file holding the last address handed out in a subnet (round robin),
//!   overwritten in place. A hint: unreadable, it is ignored.
//!
//! An allocation fsyncs the directory once; releases are not fsynced (a release lost to a power
//! cut leaves an address nobody holds, which `gc` releases; never one held twice). Replacing an
//! entry is a new symlink renamed over it (`.NAME.PID.tmp`, removed by `gc` if a writer died).
//! Few inodes are made per allocation: on a journal-less ext4 (like this project's test
//! machine) each new inode costs a scan past recently deleted ones.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::error::{Error, Result};

/// The allocation entries of one network.
#[derive(Debug, Clone)]
pub(super) struct Claims {
    dir: PathBuf,
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::state(op, path, e)
}

impl Claims {
    /// The entries of the network whose pool file is `DIR/NETWORK.json`.
    pub(super) fn new(ipam_dir: &Path, network: &str) -> Self {
        Claims {
            dir: ipam_dir.join(format!("{network}.d")),
        }
    }

    /// Creates the directory if needed (`0700`).
    pub(super) fn create(&self) -> Result<()> {
        crate::state::create_dir(&self.dir)
    }

    /// Removes every entry and the directory (idempotent).
    pub(super) fn remove_all(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::state("remove", &self.dir, e))
            }
            _ => Ok(()),
        }
    }

    /// Claims `ip` for `container`; `false` when someone holds it already.
    pub(super) fn claim(&self, ip: IpAddr, container: &str) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        match symlink(container, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::state("claim address", &path, e)),
        }
    }

    /// Whether `ip` is claimed (by anyone).
    pub(super) fn exists(&self, ip: IpAddr) -> bool {
        fs::symlink_metadata(self.dir.join(ip.to_string())).is_ok()
    }

    /// Who holds `ip`, if anyone.
    pub(super) fn owner(&self, ip: IpAddr) -> Result<Option<String>> {
        self.read(&ip.to_string())
    }

    /// Drops the claim on `ip` (idempotent).
    pub(super) fn unclaim(&self, ip: IpAddr) -> Result<()> {
        self.remove(&ip.to_string())
    }

    /// The addresses the `@` entry of `container` lists.
    pub(super) fn held(&self, container: &str) -> Result<Vec<IpAddr>> {
        Ok(parse_list(
            &self.read(&format!("@{container}"))?.unwrap_or_default(),
        ))
    }

    /// Replaces the `@` entry of `container` (removes it when `ips` is empty).
    pub(super) fn set_held(&self, container: &str, ips: &[IpAddr]) -> Result<()> {
        let name = format!("@{container}");
        if ips.is_empty() {
            return self.remove(&name);
        }
        let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
        self.replace(&name, &list.join(","))
    }

    /// The last address handed out in `subnet`.
    pub(super) fn cursor(&self, subnet: &IpNet) -> Option<IpAddr> {
        let s = fs::read_to_string(self.dir.join(cursor_name(subnet))).ok()?;
        s.trim().parse().ok()
    }

    /// Records the last address handed out in `subnet` (`None`: none yet, the file goes): one
    /// write of a fixed width at offset 0, so the file never needs truncating or replacing.
    pub(super) fn set_cursor(&self, subnet: &IpNet, ip: Option<IpAddr>) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let name = cursor_name(subnet);
        let Some(ip) = ip else {
            return self.remove(&name);
        };
        let path = self.dir.join(name);
        crate::state::open_rw(&path)
            .and_then(|f| f.write_all_at(format!("{ip:<40}\n").as_bytes(), 0))
            .map_err(err("write", &path))
    }

    /// Every claim: address → holder (a scan; for listing and gc, not for allocating).
    pub(super) fn all(&self) -> Result<BTreeMap<IpAddr, String>> {
        let mut out = BTreeMap::new();
        for name in self.names()? {
            if let Ok(ip) = name.parse::<IpAddr>() {
                out.insert(ip, self.read(&name)?.unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// How many addresses are claimed (one directory read; no entry is opened).
    pub(super) fn count(&self) -> Result<usize> {
        Ok(self
            .names()?
            .iter()
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .count())
    }

    /// Every `@` entry: container → addresses it lists.
    pub(super) fn holders(&self) -> Result<BTreeMap<String, Vec<IpAddr>>> {
        let mut out = BTreeMap::new();
        for name in self.names()? {
            if let Some(c) = name.strip_prefix('@') {
                out.insert(
                    c.to_string(),
                    parse_list(&self.read(&name)?.unwrap_or_default()),
                );
            }
        }
        Ok(out)
    }

    /// Makes the entries created so far durable (one fsync of the directory).
    pub(super) fn sync(&self) -> Result<()> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err("fsync", &self.dir))
    }

    fn names(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::state("list", &self.dir, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(err("list", &self.dir))?;
            out.extend(e.file_name().into_string().ok());
        }
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Option<String>> {
        let path = self.dir.join(name);
        match fs::read_link(&path) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::state("read", &path, e)),
        }
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::state("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// Points `name` at `target` atomically: made directly when it does not exist yet, else a
    /// new symlink renamed over the old one.
    fn replace(&self, name: &str, target: &str) -> Result<()> {
        let path = self.dir.join(name);
        match symlink(target, &path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => return r.map_err(err("write", &path)),
        }
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(target, &tmp)
            .and_then(|()| fs::rename(&tmp, self.dir.join(name)))
            .map_err(err("write", &tmp))
    }
}

fn cursor_name(subnet: &IpNet) -> String {
    format!("~{}", subnet.to_string().replace('/', "_"))
}

pub(crate) fn parse_list(s: &str) -> Vec<IpAddr> {
    s.split(',').filter_map(|a| a.parse().ok()).collect()
}
