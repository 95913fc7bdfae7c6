//! Renderer tests: golden files under `src/dns/golden/` (`BERTH_UPDATE_GOLDEN=1` rewrites them).

use std::net::IpAddr;

use super::hosts::{self, HostsEntry, HostsInput};
use super::resolv::{self, ResolvConf, ResolvInput};
use crate::names::NameOptions;

fn golden(name: &str, got: &str) {
    let path = format!("{}/src/dns/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "golden file {path} differs (BERTH_UPDATE_GOLDEN=1 to accept)"
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const HOST_RESOLV: &str = "# from the host
nameserver 127.0.0.53
nameserver 192.0.2.53
nameserver 2001:db8::53
nameserver fe80::1%eth0
search corp.example lab.example
options edns0 trust-ad
";

#[test]
fn hosts_plain() {
    let input = HostsInput {
        hostname: "api".into(),
        own: vec![ip("10.88.0.2")],
        ..Default::default()
    };
    golden("hosts-plain", &hosts::render(&input));
}

#[test]
fn hosts_every_entry_kind() {
    let input = HostsInput {
        hostname: "api".into(),
        domainname: Some("corp.example".into()),
        own: vec![ip("10.88.0.2"), ip("fd00:88::2"), ip("10.89.0.7")],
        extra: vec![
            HostsEntry::new(ip("192.0.2.10"), ["db"]),
            HostsEntry::new(ip("2001:db8::10"), ["db6"]),
            HostsEntry::new(ip("10.88.0.1"), ["host.internal"]),
        ],
        links: vec![HostsEntry::new(ip("10.88.0.3"), ["cache", "redis-1"])],
    };
    golden("hosts-full", &hosts::render(&input));
}

#[test]
fn hosts_host_mode_appends() {
    let host = "127.0.0.1 localhost\n192.0.2.1 gateway";
    let extra = [HostsEntry::new(ip("192.0.2.10"), ["db"])];
    golden("hosts-host-mode", &hosts::render_host_mode(host, &extra));
}

#[test]
fn parse_keeps_what_glibc_reads() {
    let rc = ResolvConf::parse(HOST_RESOLV);
    assert_eq!(
        rc.nameservers,
        vec![ip("127.0.0.53"), ip("192.0.2.53"), ip("2001:db8::53")]
    );
    assert_eq!(rc.search, vec!["corp.example", "lab.example"]);
    assert_eq!(rc.options, vec!["edns0", "trust-ad"]);
    let rc = ResolvConf::parse("domain a.example\nsearch b.example ; comment\n");
    assert_eq!(rc.search, vec!["b.example"]);
}

fn container(names: &NameOptions, resolver: &[IpAddr], net: &[IpAddr], v6: bool) -> String {
    let host = ResolvConf::parse(HOST_RESOLV);
    let input = ResolvInput {
        names,
        resolver,
        network_dns: net,
        ipv6: v6,
    };
    resolv::for_container(&host, input).render()
}

#[test]
fn resolv_from_host_drops_loopback() {
    let n = NameOptions::default();
    golden("resolv-host-v4", &container(&n, &[], &[], false));
    golden("resolv-host-v6", &container(&n, &[], &[], true));
}

#[test]
fn resolv_fallback_when_nothing_is_left() {
    let host = ResolvConf::parse("nameserver 127.0.0.53\nsearch x.example\n");
    let n = NameOptions::default();
    for v6 in [false, true] {
        let input = ResolvInput {
            names: &n,
            resolver: &[],
            network_dns: &[],
            ipv6: v6,
        };
        let name = if v6 {
            "resolv-fallback-v6"
        } else {
            "resolv-fallback"
        };
        golden(name, &resolv::for_container(&host, input).render());
    }
}

#[test]
fn resolv_overrides() {
    let n = NameOptions {
        dns: vec![ip("198.51.100.1"), ip("2001:db8::1")],
        dns_search: vec!["svc.example".into()],
        dns_options: vec!["ndots:2".into(), "timeout:1".into()],
        ..Default::default()
    };
    golden("resolv-overrides", &container(&n, &[], &[], true));
    let none = NameOptions {
        dns_search: vec![".".into()],
        ..Default::default()
    };
    golden("resolv-no-search", &container(&none, &[], &[], false));
    golden(
        "resolv-network-dns",
        &container(&NameOptions::default(), &[], &[ip("203.0.113.53")], false),
    );
}

#[test]
fn resolv_with_the_embedded_resolver() {
    // The resolver's addresses win over --dns (it forwards there); ndots:0 is added.
    let n = NameOptions {
        dns: vec![ip("198.51.100.1")],
        ..Default::default()
    };
    golden(
        "resolv-resolver",
        &container(&n, &[ip("10.88.0.1"), ip("fd00:88::1")], &[], true),
    );
    let ndots = NameOptions {
        dns_options: vec!["ndots:3".into()],
        ..Default::default()
    };
    let got = container(&ndots, &[ip("10.88.0.1")], &[], false);
    assert!(got.contains("options ndots:3\n") && !got.contains("ndots:0"));
}

#[test]
fn resolv_host_mode_keeps_loopback() {
    let host = ResolvConf::parse(HOST_RESOLV);
    let got = resolv::for_host_mode(&host, &NameOptions::default()).render();
    golden("resolv-host-mode", &got);
}
