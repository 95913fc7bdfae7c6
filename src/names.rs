//! Name-resolution settings of a container (`docker run --hostname --dns --dns-search
//! --dns-option --add-host --link`) and the record of its *sandbox*: which netns it uses
//! (its own, the host's, or another container's) and where its files were written.
//!
//! These are per container, not per network: a container on three networks has one
//! `/etc/hosts`. They arrive with an attach ([`crate::EndpointSpec::hostname`] …) or with
//! [`crate::Host::use_host_netns`] / [`crate::Host::share_sandbox`], and are kept in the state dir as a
//! [`SandboxRecord`]. Rendering them into files is [`crate::dns`]'s job. A record lives while
//! its container has an attachment; when the last one is detached it goes too, unless the
//! container's files were written, it is in host or container mode, or another container
//! shares its sandbox or links to it — those are removed by [`crate::Host::gc`] once the
//! container is gone.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The address of an `--add-host` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostAddr {
    /// A fixed address.
    Ip(IpAddr),
    /// Docker's special value `host-gateway`: the gateway of the container's network (the
    /// host's address on it), per family.
    HostGateway,
}

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAddr::Ip(ip) => ip.fmt(f),
            HostAddr::HostGateway => f.write_str("host-gateway"),
        }
    }
}

/// One `--add-host NAME:ADDR` entry of `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExtraHost {
    /// The host name (several names may share an address: one entry each).
    pub name: String,
    /// Its address.
    pub addr: HostAddr,
}

impl ExtraHost {
    /// An entry `name → addr`.
    pub fn new(name: impl Into<String>, addr: HostAddr) -> Self {
        ExtraHost {
            name: name.into(),
            addr,
        }
    }
}

/// `NAME:IP`, `NAME:[IPv6]`, `NAME=IP` or `NAME:host-gateway`, as `docker run --add-host`.
impl FromStr for ExtraHost {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| Error::invalid("add-host", s, reason);
        let (name, addr) = s
            .split_once('=')
            .or_else(|| s.split_once(':'))
            .ok_or_else(|| bad("expected NAME:IP"))?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let addr = if addr == "host-gateway" {
            HostAddr::HostGateway
        } else {
            HostAddr::Ip(
                addr.parse()
                    .map_err(|_| bad("not an IP address or host-gateway"))?,
            )
        };
        validate_hostname("add-host name", name)?;
        Ok(ExtraHost::new(name, addr))
    }
}

/// A legacy link (`--link CONTAINER[:ALIAS]`): the linked container's name (and the alias)
/// resolve to its address in this container's `/etc/hosts`, and on a network with ICC off
/// this container may reach the linked one's exposed ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    /// The linked container.
    pub container: String,
    /// The name this container knows it by (default: its container name).
    pub alias: Option<String>,
}

impl Link {
    /// A link to `container`, known by its own name.
    pub fn new(container: impl Into<String>) -> Self {
        Link {
            container: container.into(),
            alias: None,
        }
    }

    /// Known by `alias` too.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }
}

/// `CONTAINER[:ALIAS]`.
impl FromStr for Link {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (c, alias) = match s.split_once(':') {
            Some((c, a)) => (c, Some(a)),
            None => (s, None),
        };
        crate::validate::validate_container_id("linked container", c)?;
        let mut l = Link::new(c);
        if let Some(a) = alias {
            validate_hostname("link alias", a)?;
            l = l.alias(a);
        }
        Ok(l)
    }
}

/// What a container's name-resolution files are made of, besides its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameOptions {
    /// `--hostname` (default: the container id, truncated to 63 bytes; in host mode the
    /// host's name).
    pub hostname: Option<String>,
    /// `--domainname`.
    pub domainname: Option<String>,
    /// `--dns`: nameservers, replacing the host's.
    pub dns: Vec<IpAddr>,
    /// `--dns-search`: search domains, replacing the host's (`.` alone: none).
    pub dns_search: Vec<String>,
    /// `--dns-option`: resolver options, replacing the host's.
    pub dns_options: Vec<String>,
    /// `--add-host` entries.
    pub extra_hosts: Vec<ExtraHost>,
    /// `--link` entries.
    pub links: Vec<Link>,
}

impl NameOptions {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == NameOptions::default()
    }

    /// Checks every name; changes nothing.
    pub fn validate(&self) -> Result<()> {
        if let Some(h) = &self.hostname {
            validate_hostname("hostname", h)?;
        }
        if let Some(d) = &self.domainname {
            validate_domain("domainname", d)?;
        }
        for d in &self.dns_search {
            if d != "." {
                validate_domain("dns-search", d)?;
            }
        }
        for o in &self.dns_options {
            if o.is_empty() || o.chars().any(char::is_whitespace) {
                return Err(Error::invalid(
                    "dns-option",
                    o,
                    "must be one word, e.g. ndots:2",
                ));
            }
        }
        for h in &self.extra_hosts {
            validate_hostname("add-host name", &h.name)?;
        }
        for l in &self.links {
            crate::validate::validate_container_id("linked container", &l.container)?;
            if let Some(a) = &l.alias {
                validate_hostname("link alias", a)?;
            }
        }
        Ok(())
    }

    /// `other`'s settings where it has any, ours elsewhere (a later attach refines the
    /// container's settings; lists given again replace the old ones).
    pub fn merged(&self, other: &NameOptions) -> NameOptions {
        fn pick<T: Clone>(a: &[T], b: &[T]) -> Vec<T> {
            if b.is_empty() { a.to_vec() } else { b.to_vec() }
        }
        NameOptions {
            hostname: other.hostname.clone().or_else(|| self.hostname.clone()),
            domainname: other.domainname.clone().or_else(|| self.domainname.clone()),
            dns: pick(&self.dns, &other.dns),
            dns_search: pick(&self.dns_search, &other.dns_search),
            dns_options: pick(&self.dns_options, &other.dns_options),
            extra_hosts: pick(&self.extra_hosts, &other.extra_hosts),
            links: pick(&self.links, &other.links),
        }
    }
}

/// Which network namespace a container uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "of")]
pub enum SandboxMode {
    /// Its own netns, attached to networks (the usual case, and `none`).
    Own,
    /// The host's netns (`--network host`): the host's files, the container's hostname.
    Host,
    /// Another container's sandbox (`--network container:OTHER`, pods): its netns and files.
    Container(String),
}

/// A container's sandbox as berth records it (`sandboxes/<container>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// The container.
    pub container: String,
    /// Whose netns it uses.
    pub mode: SandboxMode,
    /// Its name-resolution settings.
    pub names: NameOptions,
    /// Exposed ports (`--expose`; published ports are exposed too): what linked containers
    /// may reach on a network with ICC off.
    #[serde(default)]
    pub exposed: Vec<crate::port::ExposedPort>,
    /// Where [`crate::Host::write_files`] last wrote its files: rewritten when they change
    /// (a linked container moved, a network was attached or detached).
    pub files_dir: Option<PathBuf>,
}

impl SandboxRecord {
    /// A record for a container with its own netns.
    pub fn new(container: impl Into<String>) -> Self {
        SandboxRecord {
            container: container.into(),
            mode: SandboxMode::Own,
            names: NameOptions::default(),
            exposed: Vec::new(),
            files_dir: None,
        }
    }
}

/// A host name or alias: 1–63-byte labels of letters, digits, '-' and '_', joined by '.',
/// 253 bytes at most.
pub fn validate_hostname(kind: &'static str, name: &str) -> Result<()> {
    validate_domain(kind, name)
}

fn validate_domain(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason| Error::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err(bad("must be 1-253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label must be 1-63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("may only contain letters, digits, '-', '_' and '.'"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_host_forms() {
        let h: ExtraHost = "db:10.0.0.5".parse().unwrap();
        assert_eq!(h.addr, HostAddr::Ip("10.0.0.5".parse().unwrap()));
        let h: ExtraHost = "db6:[fd00::5]".parse().unwrap();
        assert_eq!(h.addr, HostAddr::Ip("fd00::5".parse().unwrap()));
        let h: ExtraHost = "db6=fd00::5".parse().unwrap();
        assert_eq!(h.name, "db6");
        let h: ExtraHost = "gw:host-gateway".parse().unwrap();
        assert_eq!(h.addr, HostAddr::HostGateway);
        assert!(matches!(
            "db".parse::<ExtraHost>(),
            Err(Error::InvalidValue { .. })
        ));
        assert!("db:nope".parse::<ExtraHost>().is_err());
        assert!("bad name:10.0.0.1".parse::<ExtraHost>().is_err());
    }

    #[test]
    fn link_forms() {
        assert_eq!("web".parse::<Link>().unwrap(), Link::new("web"));
        assert_eq!(
            "web:db".parse::<Link>().unwrap(),
            Link::new("web").alias("db")
        );
        assert!("web:bad alias".parse::<Link>().is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_hostname("hostname", "api.example.com").is_ok());
        assert!(validate_hostname("hostname", "-api").is_err());
        assert!(validate_hostname("hostname", &"a".repeat(64)).is_err());
        assert!(validate_hostname("hostname", "a..b").is_err());
        let o = NameOptions {
            dns_options: vec!["ndots 2".into()],
            ..Default::default()
        };
        assert!(o.validate().is_err());
    }

    #[test]
    fn later_settings_refine() {
        let a = NameOptions {
            hostname: Some("a".into()),
            dns: vec!["192.0.2.1".parse().unwrap()],
            ..Default::default()
        };
        let b = NameOptions {
            dns_search: vec!["example.com".into()],
            ..Default::default()
        };
        let m = a.merged(&b);
        assert_eq!(m.hostname.as_deref(), Some("a"));
        assert_eq!(m.dns, a.dns);
        assert_eq!(m.dns_search, b.dns_search);
    }
}
