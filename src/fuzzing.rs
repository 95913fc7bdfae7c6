//! Entry points for the `cargo fuzz` targets in `fuzz/` (feature `fuzzing`; not part of the
//! stable API). Each function hands outside bytes to the parser berth really uses on them — the
//! state dir's decoders, the embedded resolver's request path, the readers of netlink replies —
//! and returns what that parser made. Public parsers (`FromStr` of ports, routes, MACs, names
//! and options, [`crate::DaemonConfig::from_json`], [`crate::dns::resolv::ResolvConf::parse`])
//! are fuzzed directly and have no entry here.

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use crate::dns::resolver::serve::{self, Decision, Transport};
use crate::dns::resolver::table::NameTable;
use crate::endpoint::Attachment;
use crate::error::Result;
use crate::firewall::frames;
use crate::firewall::nft::dump::{self, KernelState};
use crate::ipam::NetworkPool;
use crate::names::SandboxRecord;
use crate::network::{NetworkInfo, SubnetInfo};
use crate::options::{BridgeOptions, DriverOptions};

/// A network record (`networks/NAME.json`), decoded as the state dir's loader does.
pub fn network_record(bytes: &[u8]) -> Result<NetworkInfo> {
    crate::state::private::decode_json(Path::new("networks/fuzz.json"), bytes)
}

/// An endpoint record (`endpoints/NETWORK/CONTAINER.json`), decoded as the loader does.
pub fn endpoint_record(bytes: &[u8]) -> Result<Attachment> {
    crate::state::private::decode_json(Path::new("endpoints/n/fuzz.json"), bytes)
}

/// A sandbox record (`sandboxes/CONTAINER.json`), decoded as the loader does.
pub fn sandbox_record(bytes: &[u8]) -> Result<SandboxRecord> {
    crate::state::private::decode_json(Path::new("sandboxes/fuzz.json"), bytes)
}

/// An IPAM pool file (`ipam/NETWORK.json`), decoded as `FileIpam` does.
pub fn pool_record(bytes: &[u8]) -> Result<NetworkPool> {
    crate::state::private::decode_json(Path::new("ipam/fuzz.json"), bytes)
}

/// The addresses of an IPAM `@CONTAINER` entry's target (a comma-separated list).
pub fn held_list(target: &str) -> Vec<IpAddr> {
    crate::ipam::store::parse_list(target)
}

/// A ports-index entry's name (`HOST_IP,NETWORK,CONTAINER`) as its owner.
pub fn port_entry(name: &str) -> Option<crate::state::PortOwner> {
    crate::state::parse_port_entry(name)
}

/// What the resolver's name table, built from these records, serves: its listen addresses,
/// and for each endpoint address its client, the lookup of `name` and the reverse of `ip` in
/// that client's scope. Exercises the table the resolver builds from whatever the state dir
/// holds.
pub fn name_table(
    networks: &[NetworkInfo],
    attachments: &[Attachment],
    sandboxes: &[SandboxRecord],
    name: &str,
    ip: IpAddr,
) -> usize {
    let t = NameTable::from_records(networks, attachments, sandboxes);
    let mut seen = t.listen_addrs().len();
    for a in attachments {
        for src in a.ip().into_iter().chain(a.ip6()) {
            if let Some(c) = t.client(&a.network, src) {
                seen += t
                    .lookup(&c.scope, name)
                    .map_or(0, |f| f.v4.len() + f.v6.len());
                seen += t.reverse(&c.scope, ip).len();
                seen += usize::from(t.serves_on(src));
            }
        }
    }
    seen
}

/// What the resolver does with one message (`DnsStep`).
#[derive(Debug)]
pub enum DnsStep {
    /// Dropped: no reply.
    Drop,
    /// This reply is sent at once.
    Reply(Vec<u8>),
    /// Forwarded to these servers; their reply may be `max` bytes long.
    Forward {
        /// Upstream servers, in order.
        servers: Vec<IpAddr>,
        /// The largest reply the transport takes.
        max: usize,
    },
}

/// The fixed table the DNS entry points answer from: network `net1` (dual stack: `a`
/// 10.1.0.2/fd01::2, `b` 10.1.0.3 with aliases `db`, `web`), `net2` (`c` 10.2.0.2, `a`
/// 10.2.0.3 alias `web`; servers 192.0.2.2) and `int` (internal: `i` 10.4.0.2); `c` has
/// `--dns 192.0.2.9`.
fn dns_table() -> &'static NameTable {
    static TABLE: OnceLock<NameTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
        let net =
            |name: &str, subnets: &[(&str, &str)], servers: &[&str], internal: bool| NetworkInfo {
                removing: false,
                ipam_driver: crate::lease::IpamDriver::Default,
                name: name.into(),
                id: "0".repeat(64),
                driver: DriverOptions::Bridge(BridgeOptions::default()),
                subnets: subnets
                    .iter()
                    .map(|(s, g)| SubnetInfo {
                        subnet: s.parse().expect("a subnet"),
                        gateway: ip(g),
                        ip_range: None,
                    })
                    .collect(),
                aux: Default::default(),
                ipv6: subnets.len() > 1,
                internal,
                mtu: 1500,
                device: Some(format!("br-{name}")),
                routes: Vec::new(),
                no_default_route: false,
                adopted: None,
                dns_enabled: true,
                dns_servers: servers.iter().map(|s| ip(s)).collect(),
            };
        let att =
            |network: &str, c: &str, v4: &str, v6: Option<&str>, aliases: &[&str]| Attachment {
                network: network.into(),
                container: c.into(),
                ifname: "eth0".into(),
                mac: None,
                ipv4: Some(format!("{v4}/24").parse().expect("an address")),
                ipv6: v6.map(|a| format!("{a}/64").parse().expect("an address")),
                gateway: None,
                gateway6: None,
                netns: None,
                ports: Vec::new(),
                host_ifname: None,
                gw_priority: 0,
                seq: 0,
                routes: Vec::new(),
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
                rules: Vec::new(),
                bandwidth: None,
                ifb: None,
                vlan: None,
                dhcp: None,
            };
        let mut sb = SandboxRecord::new("c");
        sb.names.dns = vec![ip("192.0.2.9")];
        NameTable::from_records(
            &[
                net(
                    "net1",
                    &[("10.1.0.0/24", "10.1.0.1"), ("fd01::/64", "fd01::1")],
                    &[],
                    false,
                ),
                net(
                    "net2",
                    &[("10.2.0.0/24", "10.2.0.1")],
                    &["192.0.2.2"],
                    false,
                ),
                net("int", &[("10.4.0.0/24", "10.4.0.1")], &[], true),
            ],
            &[
                att("net1", "a", "10.1.0.2", Some("fd01::2"), &[]),
                att("net1", "b", "10.1.0.3", None, &["DB", "web"]),
                att("net2", "c", "10.2.0.2", None, &[]),
                att("net2", "a", "10.2.0.3", None, &["web"]),
                att("int", "i", "10.4.0.2", None, &[]),
            ],
            &[sb],
        )
    })
}

/// The clients [`dns_message`] can ask as: `(network, source address)` — `a` on net1 over
/// IPv4 and IPv6, `c` on net2, `i` on the internal network, and a stranger on net1.
pub const DNS_CLIENTS: [(&str, &str); 5] = [
    ("net1", "10.1.0.2"),
    ("net1", "fd01::2"),
    ("net2", "10.2.0.2"),
    ("int", "10.4.0.2"),
    ("net1", "10.1.0.99"),
];

/// The resolver's request path for one message `bytes` from client `DNS_CLIENTS[client % 5]`
/// (over TCP when `tcp`): exactly what its UDP and TCP loops decide before sending a reply or
/// forwarding (the host's resolv.conf names 198.51.100.1).
pub fn dns_message(client: usize, tcp: bool, bytes: &[u8]) -> DnsStep {
    let (network, src) = DNS_CLIENTS[client % DNS_CLIENTS.len()];
    let src: IpAddr = src.parse().expect("an address");
    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
    let host = || vec![IpAddr::from([198, 51, 100, 1])];
    match serve::decide(dns_table(), network, src, bytes, transport, host) {
        Decision::Drop => DnsStep::Drop,
        Decision::Reply(r) => DnsStep::Reply(r),
        Decision::Forward { servers, max, .. } => DnsStep::Forward { servers, max },
    }
}

/// Cuts the next length-prefixed message out of a TCP stream's pending bytes, as the
/// resolver's TCP loop does (`None`: not whole yet).
pub fn dns_tcp_frame(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    serve::frame(pending)
}

/// Whether `reply` (an upstream's bytes) answers the query `query` (`None`: the query does
/// not parse, so it would never have been forwarded).
pub fn dns_upstream_answers(query: &[u8], reply: &[u8]) -> Option<bool> {
    let q = hickory_proto::op::Message::from_vec(query).ok()?;
    Some(crate::dns::resolver::upstream::answers(&q, reply))
}

/// Which kind of dump reply [`nft_dump`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NftReply {
    /// A `GETCHAIN` dump.
    Chain,
    /// A `GETRULE` dump.
    Rule,
    /// A `GETSET` dump.
    Set,
    /// A `GETSETELEM` dump (of map `map`).
    Elems,
}

/// Reads one `recv` of an nf_tables dump reply, as `check` does: the netlink walk every reader
/// of the kernel's answers shares, and every message read as a `reply` and folded into a
/// [`KernelState`]. Returns the state and how the walk ended (`None`: more to receive;
/// `Some(Ok(false))`: ENOENT).
pub fn nft_dump(reply: NftReply, bytes: &[u8]) -> (KernelState, Option<std::io::Result<bool>>) {
    let mut st = KernelState::default();
    let reply = match reply {
        NftReply::Chain => dump::Reply::Chain,
        NftReply::Rule => dump::Reply::Rule,
        NftReply::Set => dump::Reply::Set,
        NftReply::Elems => dump::Reply::Elems,
    };
    let done = frames::reply(bytes, &mut |msg| {
        dump::on_message(&mut st, reply, "map", msg)
    });
    (st, done.map(dump::found))
}

/// Reads one `recv` of a ctnetlink reply, as conntrack cleanup does: the shared netlink walk,
/// and each message's payload parsed as a conntrack entry (family, raw `CTA_TUPLE_ORIG`,
/// addresses). Returns the entries and how the walk ended (`None`: more to receive).
pub fn conntrack_dump(bytes: &[u8]) -> (Vec<ConntrackEntry>, Option<std::io::Result<()>>) {
    let mut out = Vec::new();
    let done = frames::reply(bytes, &mut |msg| {
        out.extend(crate::firewall::conntrack::parse_entry(msg));
    });
    (out, done)
}

/// A conntrack entry as read from a dump: family, raw `CTA_TUPLE_ORIG`, addresses of both
/// tuples.
pub type ConntrackEntry = (u8, Vec<u8>, Vec<IpAddr>);
