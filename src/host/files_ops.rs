//! Sandboxes and their files: `Host::sandbox_files`, `write_files`, host mode
//! (`use_host_netns`), container mode (`share_sandbox`), and keeping written files current when
//! what they say changes (an attach, a detach, a linked container moving).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::dns::SandboxFiles;
use crate::dns::hosts::{self, HostsEntry, HostsInput};
use crate::dns::resolv::{self, ResolvConf, ResolvInput};
use crate::endpoint::{Attachment, EndpointSpec};
use crate::error::{Error, Result};
use crate::names::{HostAddr, NameOptions, SandboxMode, SandboxRecord};
use crate::network::NetworkInfo;

use super::Host;

/// How deep `container:` sharing may chain (A shares B's, which shares C's …).
const MAX_SHARE_DEPTH: usize = 8;

impl Host {
    /// The sandbox record of `container`, if berth knows it.
    pub async fn sandbox(&self, container: &str) -> Result<Option<SandboxRecord>> {
        self.state.sandbox(container)
    }

    /// The netns path `container` uses: its own (from its attachments), its owner's in
    /// container mode, `None` in host mode or when no attachment recorded a path.
    pub async fn sandbox_netns(&self, container: &str) -> Result<Option<PathBuf>> {
        let owner = self.sandbox_owner(container)?;
        if matches!(owner.mode, SandboxMode::Host) {
            return Ok(None);
        }
        Ok(self
            .state
            .attachments_of(&owner.container)?
            .into_iter()
            .find_map(|a| a.netns))
    }

    /// Renders `container`'s `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` from what
    /// berth recorded (its attachments, its name settings, its links' addresses). In container
    /// mode these are the owner's files; in host mode the host's, with the container's name.
    pub async fn sandbox_files(&self, container: &str) -> Result<SandboxFiles> {
        self.render_files(container)
    }

    /// Renders `container`'s files and writes them into `dir` (see [`SandboxFiles::write_to`]),
    /// and remembers `dir`: later attaches, detaches and moves of linked containers rewrite
    /// them there.
    pub async fn write_files(
        &self,
        container: &str,
        dir: impl AsRef<Path>,
    ) -> Result<SandboxFiles> {
        let dir = dir.as_ref();
        let _lock = self.state.lock().await?;
        let files = self.render_files(container)?;
        files.write_to(dir)?;
        let mut rec = self
            .state
            .sandbox(container)?
            .unwrap_or_else(|| SandboxRecord::new(container));
        rec.files_dir = Some(dir.to_path_buf());
        self.state.put_sandbox(&rec)?;
        self.state.mark_files_written(container)?;
        Ok(files)
    }

    /// Host mode (`--network host`): `container` uses the host's netns; nothing is created.
    /// Its files are the host's, with its own hostname and `--add-host` entries.
    pub async fn use_host_netns(
        &self,
        container: &str,
        names: NameOptions,
    ) -> Result<SandboxRecord> {
        crate::validate::validate_container_id("container", container)?;
        names.validate()?;
        let _lock = self.state.lock().await?;
        self.refuse_if_attached(container)?;
        let prev = self.state.sandbox(container)?;
        let rec = SandboxRecord {
            mode: SandboxMode::Host,
            names,
            files_dir: prev.and_then(|p| p.files_dir),
            ..SandboxRecord::new(container)
        };
        self.state.put_sandbox(&rec)?;
        self.refresh_files(container);
        Ok(rec)
    }

    /// Container mode (`--network container:OWNER`, pods): `container` shares `owner`'s
    /// sandbox, its netns and its files; its files follow the owner's from then on.
    pub async fn share_sandbox(&self, container: &str, owner: &str) -> Result<SandboxRecord> {
        crate::validate::validate_container_id("container", container)?;
        crate::validate::validate_container_id("container", owner)?;
        if container == owner {
            return Err(Error::invalid(
                "container mode",
                owner,
                "a container cannot share its own sandbox",
            ));
        }
        let _lock = self.state.lock().await?;
        self.refuse_if_attached(container)?;
        if self.state.sandbox(owner)?.is_none() && self.state.attachments_of(owner)?.is_empty() {
            return Err(Error::SandboxNotFound {
                container: owner.into(),
            });
        }
        let mut seen = vec![container.to_string()];
        let mut next = owner.to_string();
        while let Some(SandboxRecord {
            mode: SandboxMode::Container(o),
            ..
        }) = self.state.sandbox(&next)?
        {
            if seen.contains(&o) || seen.len() > MAX_SHARE_DEPTH {
                return Err(Error::invalid(
                    "container mode",
                    owner,
                    "sharing would form a cycle",
                ));
            }
            seen.push(next);
            next = o;
        }
        let prev = self.state.sandbox(container)?;
        let rec = SandboxRecord {
            mode: SandboxMode::Container(owner.into()),
            files_dir: prev.and_then(|p| p.files_dir),
            ..SandboxRecord::new(container)
        };
        self.state.put_sandbox(&rec)?;
        self.refresh_files(container);
        Ok(rec)
    }

    fn refuse_if_attached(&self, container: &str) -> Result<()> {
        if let Some(a) = self.state.attachments_of(container)?.first() {
            return Err(Error::EndpointExists {
                network: a.network.clone(),
                container: container.into(),
            });
        }
        Ok(())
    }

    /// At attach: the container's sandbox record with the endpoint's name settings and exposed
    /// ports merged in. Returns the record as it was before (for rollback) and the new one when
    /// it differs (to be written with the endpoint record: [`crate::state::StateDir::put_attach`]).
    pub(super) fn sandbox_update(
        &self,
        ep: &EndpointSpec,
        att: &Attachment,
    ) -> Result<(Option<SandboxRecord>, Option<SandboxRecord>)> {
        let prev = self.state.sandbox(&ep.container)?;
        let mut rec = prev
            .clone()
            .unwrap_or_else(|| SandboxRecord::new(&ep.container));
        if rec.mode != SandboxMode::Own {
            return Err(Error::invalid(
                "container",
                &ep.container,
                "it uses another sandbox (host or container mode)",
            ));
        }
        rec.names = rec.names.merged(&ep.names);
        for p in
            ep.exposed
                .iter()
                .copied()
                .chain(att.ports.iter().map(|p| crate::port::ExposedPort {
                    proto: p.proto,
                    port: p.container_port,
                }))
        {
            if !rec.exposed.contains(&p) {
                rec.exposed.push(p);
            }
        }
        let changed = (prev.as_ref() != Some(&rec)).then_some(rec);
        Ok((prev, changed))
    }

    /// After a detach: when `container` has no attachment left, its sandbox record goes too,
    /// unless something still needs it — its files were written (they are kept current until
    /// `gc` is told the container is gone), it is in host or container mode, another container
    /// shares its sandbox, or another container links to it (its exposed ports are what the
    /// link lets through when it comes back). Without this, every container ever attached would leave
    /// a record behind until `gc`: the state dir would grow with each one, and so would every
    /// reload of the resolver's name table, which reads all sandbox records. Its name settings
    /// come again with its next attach, as they came with its first. Returns whether it went.
    pub(super) fn forget_sandbox_if_unused(&self, container: &str) -> Result<bool> {
        let Some(rec) = self.state.sandbox(container)? else {
            return Ok(false);
        };
        if !self.sandbox_unused(&rec, None)? {
            return Ok(false);
        }
        self.state.remove_sandbox(container)?;
        Ok(true)
    }

    /// [`Host::forget_sandbox_if_unused`], logging a failure (detach has succeeded; gc removes
    /// the record later).
    pub(super) fn forget_sandbox_quietly(&self, container: &str) {
        if let Err(e) = self.forget_sandbox_if_unused(container) {
            tracing::warn!(target: "berth::host", container, error = %e, "sandbox record of a detached container not removed (gc removes it)");
        }
    }

    /// Whether nothing needs `rec` any more (see [`Host::forget_sandbox_if_unused`]); `all`:
    /// every sandbox record, when the caller has read them (else they are read here, only if
    /// the cheaper checks pass).
    pub(super) fn sandbox_unused(
        &self,
        rec: &SandboxRecord,
        all: Option<&[SandboxRecord]>,
    ) -> Result<bool> {
        if rec.mode != SandboxMode::Own || rec.files_dir.is_some() {
            return Ok(false);
        }
        let container = rec.container.as_str();
        if !self.state.attachments_of(container)?.is_empty() {
            return Ok(false);
        }
        let owner = SandboxMode::Container(container.to_string());
        let needs = |r: &SandboxRecord| {
            r.mode == owner || r.names.links.iter().any(|l| l.container == container)
        };
        Ok(match all {
            Some(all) => !all.iter().any(needs),
            None => !self.state.sandboxes()?.iter().any(needs),
        })
    }

    /// Rewrites the written files of `changed` and of every container whose files mention it
    /// (links to it, sandboxes shared from it). Best effort: a failure is logged, never fails
    /// the operation that changed the facts.
    pub(super) fn refresh_files(&self, changed: &str) {
        // Only containers whose files were written are looked at (an index, not every sandbox
        // record: attach must not read O(containers) files).
        let Ok(written) = self.state.files_written() else {
            return;
        };
        let all: Vec<SandboxRecord> = written
            .iter()
            .filter_map(|c| self.state.sandbox(c).ok().flatten())
            .collect();
        for rec in &all {
            let Some(dir) = &rec.files_dir else { continue };
            let affected = rec.container == changed
                || rec.names.links.iter().any(|l| l.container == changed)
                || self.owner_chain(rec).iter().any(|o| o == changed);
            if !affected {
                continue;
            }
            let r = self
                .render_files(&rec.container)
                .and_then(|f| f.write_to(dir));
            if let Err(e) = r {
                tracing::warn!(target: "berth::dns", container = %rec.container, error = %e, "files not rewritten");
            }
        }
    }

    /// The containers whose sandbox `rec` uses, nearest first.
    fn owner_chain(&self, rec: &SandboxRecord) -> Vec<String> {
        let mut chain = Vec::new();
        let mut mode = rec.mode.clone();
        while let SandboxMode::Container(o) = mode {
            if chain.contains(&o) || chain.len() > MAX_SHARE_DEPTH {
                break;
            }
            mode = match self.state.sandbox(&o) {
                Ok(Some(r)) => r.mode,
                _ => SandboxMode::Own,
            };
            chain.push(o);
        }
        chain
    }

    /// The record whose netns `container` uses (its own, or the end of its sharing chain).
    fn sandbox_owner(&self, container: &str) -> Result<SandboxRecord> {
        let rec = match self.state.sandbox(container)? {
            Some(r) => r,
            None if !self.state.attachments_of(container)?.is_empty() => {
                SandboxRecord::new(container)
            }
            None => {
                return Err(Error::SandboxNotFound {
                    container: container.into(),
                });
            }
        };
        match self.owner_chain(&rec).last() {
            Some(o) => Ok(self
                .state
                .sandbox(o)?
                .unwrap_or_else(|| SandboxRecord::new(o))),
            None => Ok(rec),
        }
    }

    fn render_files(&self, container: &str) -> Result<SandboxFiles> {
        let owner = self.sandbox_owner(container)?;
        let host_resolv = ResolvConf::parse(&read_or_empty(&self.resolv_conf));
        if owner.mode == SandboxMode::Host {
            let hostname = owner.names.hostname.clone().unwrap_or_else(host_hostname);
            let extra = extra_hosts(&owner.names, None, None);
            return Ok(SandboxFiles {
                hosts: hosts::render_host_mode(&read_or_empty(&self.hosts_file), &extra),
                resolv_conf: resolv::for_host_mode(&host_resolv, &owner.names).render(),
                hostname: format!("{hostname}\n"),
            });
        }
        let nets: BTreeMap<String, NetworkInfo> = self
            .state
            .networks()?
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let atts = self.state.attachments_of(&owner.container)?;
        let mut own = Vec::new();
        let mut resolver = Vec::new();
        let mut network_dns: Vec<IpAddr> = Vec::new();
        let (mut gw4, mut gw6) = (None, None);
        for a in &atts {
            own.extend(a.ip());
            own.extend(a.ip6());
            // A DHCP lease's router and nameservers, as a network's gateway and dns servers.
            if let Some(l) = a.dhcp.as_ref().filter(|l| !l.expired) {
                gw4 = gw4.or(a.gateway.map(IpAddr::V4));
                for d in l.dns.iter().map(|d| IpAddr::V4(*d)) {
                    if !network_dns.contains(&d) {
                        network_dns.push(d);
                    }
                }
            }
            let Some(net) = nets.get(&a.network) else {
                continue;
            };
            let g4 = net
                .subnet4()
                .map(|s| s.gateway)
                .filter(|_| a.ipv4.is_some());
            let g6 = net
                .subnet6()
                .map(|s| s.gateway)
                .filter(|_| a.ipv6.is_some());
            gw4 = gw4.or(g4);
            gw6 = gw6.or(g6);
            if net.dns_enabled && crate::driver::driver_for(&net.driver).serves_dns() {
                resolver.extend(g4);
                resolver.extend(g6);
            }
            for d in &net.dns_servers {
                if !network_dns.contains(d) {
                    network_dns.push(*d);
                }
            }
        }
        let names = &owner.names;
        let hostname = names
            .hostname
            .clone()
            .unwrap_or_else(|| default_hostname(&owner.container));
        let mut links = Vec::new();
        for l in &names.links {
            let target = self.state.attachments_of(&l.container)?;
            let shared = target
                .iter()
                .find(|t| atts.iter().any(|a| a.network == t.network))
                .or(target.first());
            if let Some(ip) = shared.and_then(|t| t.ip().or(t.ip6())) {
                let mut n: Vec<String> = l.alias.iter().cloned().collect();
                n.push(l.container.clone());
                links.push(HostsEntry::new(ip, n));
            }
        }
        let input = HostsInput {
            hostname: hostname.clone(),
            domainname: names.domainname.clone(),
            own,
            extra: extra_hosts(names, gw4, gw6),
            links,
        };
        let rc = resolv::for_container(
            &host_resolv,
            ResolvInput {
                names,
                resolver: &resolver,
                network_dns: &network_dns,
                ipv6: atts.iter().any(|a| a.ipv6.is_some()),
            },
        );
        Ok(SandboxFiles {
            hosts: hosts::render(&input),
            resolv_conf: rc.render(),
            hostname: format!("{hostname}\n"),
        })
    }
}

/// `--add-host` entries with `host-gateway` replaced by the gateways (one line per family;
/// none when the container has no gateway, e.g. host mode or only a `none` network).
fn extra_hosts(names: &NameOptions, gw4: Option<IpAddr>, gw6: Option<IpAddr>) -> Vec<HostsEntry> {
    let mut out = Vec::new();
    for h in &names.extra_hosts {
        match h.addr {
            HostAddr::Ip(ip) => out.push(HostsEntry::new(ip, [h.name.clone()])),
            HostAddr::HostGateway => {
                for gw in [gw4, gw6].into_iter().flatten() {
                    out.push(HostsEntry::new(gw, [h.name.clone()]));
                }
            }
        }
    }
    out
}

/// Docker's default hostname is the container id, cut to a DNS label.
fn default_hostname(container: &str) -> String {
    container.chars().take(63).collect()
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn read_or_empty(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
