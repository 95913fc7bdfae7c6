//! `/etc/hosts` of a container, rendered from plain facts (no I/O).
//!
//! Order, as Docker writes it: the localhost lines (IPv4 and IPv6), the `--add-host` entries,
//! the `--link` entries, then the container's own addresses with its hostname. glibc takes the
//! first match, so an `--add-host` naming the container's own hostname wins, as in Docker.

use std::fmt::Write;
use std::net::IpAddr;

/// The lines every container's hosts file starts with.
pub const LOCALHOST: &str = "127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// One line: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    /// The address.
    pub ip: IpAddr,
    /// Its names, the canonical one first.
    pub names: Vec<String>,
}

impl HostsEntry {
    /// `ip → names`.
    pub fn new(ip: IpAddr, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        HostsEntry {
            ip,
            names: names.into_iter().map(Into::into).collect(),
        }
    }
}

/// Everything a container's hosts file is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsInput {
    /// The container's hostname.
    pub hostname: String,
    /// Its domain name (`host.domain host` on its own lines).
    pub domainname: Option<String>,
    /// Its own addresses, in attach order (each gets the hostname).
    pub own: Vec<IpAddr>,
    /// `--add-host` entries, resolved (`host-gateway` already replaced by the gateway).
    pub extra: Vec<HostsEntry>,
    /// `--link` entries: the linked container's address → alias and name.
    pub links: Vec<HostsEntry>,
}

/// Renders the hosts file.
pub fn render(input: &HostsInput) -> String {
    let mut out = String::from(LOCALHOST);
    for e in input.extra.iter().chain(&input.links) {
        line(&mut out, e);
    }
    let names: Vec<String> = match &input.domainname {
        Some(d) => vec![format!("{}.{d}", input.hostname), input.hostname.clone()],
        None => vec![input.hostname.clone()],
    };
    for ip in &input.own {
        line(&mut out, &HostsEntry::new(*ip, names.clone()));
    }
    out
}

fn line(out: &mut String, e: &HostsEntry) {
    let mut names: Vec<&str> = Vec::new();
    for n in &e.names {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let _ = writeln!(out, "{}\t{}", e.ip, names.join(" "));
}

/// The host's own hosts file in host mode: as it is, with the `--add-host` entries appended.
pub fn render_host_mode(host_hosts: &str, extra: &[HostsEntry]) -> String {
    let mut out = host_hosts.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for e in extra {
        line(&mut out, e);
    }
    out
}
