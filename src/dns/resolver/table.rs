//! The name table: what the resolver knows, built from one reading of the records, and the pure
//! rules that turn a query's network and source address into a scope, answers and upstreams.
//!
//! Only DNS-enabled networks are in the table. Names are compared in ASCII lower case, without
//! the trailing dot.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::cluster::records::EndpointRecord;
use crate::endpoint::Attachment;
use crate::error::Result;
use crate::names::SandboxRecord;
use crate::network::NetworkInfo;
use crate::state::StateDir;

/// One container's entry on one network.
#[derive(Debug, Clone)]
struct Entry {
    container: String,
    /// The container name and its aliases on this network, lower case.
    names: Vec<String>,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

/// A DNS-enabled network as the resolver sees it.
#[derive(Debug, Clone, Default)]
struct Net {
    internal: bool,
    /// The host-side device of the network (its bridge): the listeners are bound to it.
    device: Option<String>,
    gateways: Vec<IpAddr>,
    dns_servers: Vec<IpAddr>,
    entries: Vec<Entry>,
}

/// Who asked: the container behind a query's source address and the networks whose names it
/// may resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Client {
    /// The container whose endpoint on the query's network has the query's source address.
    pub container: String,
    /// The DNS-enabled networks that container is on (the query's network among them), sorted.
    pub scope: Vec<String>,
}

/// One address the resolver serves on: a gateway of a DNS-enabled network, on its device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ListenAddr {
    /// The network.
    pub network: String,
    /// One of its gateway addresses.
    pub ip: IpAddr,
    /// Its host-side device (the bridge): only packets that arrived there reach the sockets.
    pub device: String,
}

/// Addresses a name has in a scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Found {
    /// IPv4 addresses, in table order, without duplicates.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses, in table order, without duplicates.
    pub v6: Vec<Ipv6Addr>,
}

/// Where a query that is not answered from the table goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// These servers, in order (never one the resolver serves on).
    Servers(Vec<IpAddr>),
    /// No server is configured (or every configured one is the resolver itself).
    NoneConfigured,
    /// Every network in scope is internal: nothing leaves the host (Docker does the same).
    Internal,
}

/// Every DNS-enabled network with its endpoints, and each container's `--dns`.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameTable {
    nets: BTreeMap<String, Net>,
    /// The container of each endpoint address, per DNS-enabled network: the resolver's only
    /// clients.
    clients: HashMap<String, HashMap<IpAddr, String>>,
    /// The DNS-enabled networks of each container on one, sorted.
    scopes: HashMap<String, Vec<String>>,
    dns_of: HashMap<String, Vec<IpAddr>>,
}

/// `name` in lower case without a trailing dot.
pub(crate) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl NameTable {
    /// Builds the table from records: networks (only DNS-enabled ones are kept), attachments
    /// (those of other networks are ignored) and sandbox records (for `--dns`).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn from_records(
        networks: &[NetworkInfo],
        attachments: &[Attachment],
        sandboxes: &[SandboxRecord],
    ) -> Self {
        Self::with_peers(networks, attachments, sandboxes, &[])
    }

    /// `NameTable::from_records` plus the endpoints of cluster networks on other hosts
    /// (`(network, endpoint)`): their names resolve like local ones; they are never clients
    /// (their queries go to their own host's resolver).
    pub(crate) fn with_peers(
        networks: &[NetworkInfo],
        attachments: &[Attachment],
        sandboxes: &[SandboxRecord],
        peers: &[(String, EndpointRecord)],
    ) -> Self {
        let mut nets: BTreeMap<String, Net> = networks
            .iter()
            .filter(|n| n.dns_enabled)
            .map(|n| {
                let net = Net {
                    internal: n.internal,
                    device: n.device.clone(),
                    gateways: n.subnets.iter().map(|s| s.gateway).collect(),
                    dns_servers: n.dns_servers.clone(),
                    entries: Vec::new(),
                };
                (n.name.clone(), net)
            })
            .collect();
        let mut clients: HashMap<String, HashMap<IpAddr, String>> = HashMap::new();
        let mut scopes: HashMap<String, Vec<String>> = HashMap::new();
        for a in attachments {
            let Some(net) = nets.get_mut(&a.network) else {
                continue;
            };
            let by_addr = clients.entry(a.network.clone()).or_default();
            for ip in a.ip().into_iter().chain(a.ip6()) {
                by_addr.insert(ip, a.container.clone());
            }
            let scope = scopes.entry(a.container.clone()).or_default();
            if !scope.contains(&a.network) {
                scope.push(a.network.clone());
            }
            let mut names = vec![normalize(&a.container)];
            for alias in &a.aliases {
                let alias = normalize(alias);
                if !names.contains(&alias) {
                    names.push(alias);
                }
            }
            net.entries.push(Entry {
                container: a.container.clone(),
                names,
                v4: a.ipv4.map(|n| n.addr()),
                v6: a.ipv6.map(|n| n.addr()),
            });
        }
        for (network, p) in peers {
            let Some(net) = nets.get_mut(network) else {
                continue;
            };
            let mut names: Vec<String> = Vec::new();
            for n in &p.names {
                let n = normalize(n);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            net.entries.push(Entry {
                container: p.container.clone(),
                names,
                v4: match p.ipv4 {
                    Some(IpAddr::V4(a)) => Some(a),
                    _ => None,
                },
                v6: match p.ipv6 {
                    Some(IpAddr::V6(a)) => Some(a),
                    _ => None,
                },
            });
        }
        let dns_of = sandboxes
            .iter()
            .filter(|s| !s.names.dns.is_empty())
            .map(|s| (s.container.clone(), s.names.dns.clone()))
            .collect();
        for scope in scopes.values_mut() {
            scope.sort();
        }
        NameTable {
            nets,
            clients,
            scopes,
            dns_of,
        }
    }

    /// Reads every record of `state` (networks, their endpoints, sandboxes) into a table.
    pub(crate) fn load(state: &StateDir) -> Result<Self> {
        let networks = state.networks()?;
        let mut attachments = Vec::new();
        let mut peers = Vec::new();
        for n in &networks {
            attachments.extend(state.endpoints(&n.name)?);
            peers.extend(
                state
                    .cluster_peers(&n.name)?
                    .into_iter()
                    .map(|p| (n.name.clone(), p)),
            );
        }
        let sandboxes = state.sandboxes()?;
        Ok(Self::with_peers(
            &networks,
            &attachments,
            &sandboxes,
            &peers,
        ))
    }

    /// The addresses to serve on: each DNS-enabled network's gateways, on its device. A
    /// network without a device in its record is not served: nothing could tell its
    /// containers' packets from anyone else's.
    pub(crate) fn listen_addrs(&self) -> Vec<ListenAddr> {
        self.nets
            .iter()
            .filter_map(|(name, n)| Some((name, n, n.device.clone()?)))
            .flat_map(|(name, n, device)| {
                n.gateways.iter().map(move |g| ListenAddr {
                    network: name.clone(),
                    ip: *g,
                    device: device.clone(),
                })
            })
            .collect()
    }

    /// Whether the resolver serves on `ip` (a forward there would loop).
    pub(crate) fn serves_on(&self, ip: IpAddr) -> bool {
        self.nets.values().any(|n| n.gateways.contains(&ip))
    }

    /// The client behind a query that arrived on `network`'s gateway from `src`: the container
    /// whose endpoint on `network` has that address. `None` for any other source (a host
    /// process, a neighbour, a spoofed or unassigned address): it is not served at all.
    pub(crate) fn client(&self, network: &str, src: IpAddr) -> Option<Client> {
        let container = self.clients.get(network)?.get(&src)?;
        Some(Client {
            container: container.clone(),
            scope: self.scopes.get(container).cloned().unwrap_or_default(),
        })
    }

    /// The addresses of `name` (a container name or alias, or `NAME.NETWORK`) on the networks
    /// of `scope`; `None` when the name is unknown there.
    pub(crate) fn lookup(&self, scope: &[String], name: &str) -> Option<Found> {
        let name = normalize(name);
        let mut found = None;
        for net in scope {
            let Some(n) = self.nets.get(net) else {
                continue;
            };
            // `NAME.NETWORK` names NAME on that network only (as Docker's resolver).
            let short = name
                .strip_suffix(&normalize(net))
                .and_then(|s| s.strip_suffix('.'));
            for e in &n.entries {
                if e.names
                    .iter()
                    .any(|x| *x == name || Some(x.as_str()) == short)
                {
                    let f: &mut Found = found.get_or_insert_with(Found::default);
                    if let Some(ip) = e.v4.filter(|ip| !f.v4.contains(ip)) {
                        f.v4.push(ip);
                    }
                    if let Some(ip) = e.v6.filter(|ip| !f.v6.contains(ip)) {
                        f.v6.push(ip);
                    }
                }
            }
        }
        found
    }

    /// The names of address `ip` on the networks of `scope`, as `CONTAINER.NETWORK` (Docker's
    /// form).
    pub(crate) fn reverse(&self, scope: &[String], ip: IpAddr) -> Vec<String> {
        let mut out = Vec::new();
        for net in scope {
            let Some(n) = self.nets.get(net) else {
                continue;
            };
            for e in &n.entries {
                if e.v4.map(IpAddr::V4) == Some(ip) || e.v6.map(IpAddr::V6) == Some(ip) {
                    out.push(format!("{}.{net}", e.container));
                }
            }
        }
        out
    }

    /// Where `client`'s query on `network` goes when the table cannot answer it: the
    /// container's `--dns`, else the network's `dns_servers`, else `host()` (the nameservers of
    /// the host's resolv.conf, read only when needed); never an address the resolver serves on.
    pub(crate) fn upstreams(
        &self,
        network: &str,
        client: &Client,
        host: impl FnOnce() -> Vec<IpAddr>,
    ) -> Upstream {
        let internal = |net: &String| self.nets.get(net).is_none_or(|n| n.internal);
        if client.scope.iter().all(internal) {
            return Upstream::Internal;
        }
        let own = self.dns_of.get(&client.container).cloned();
        let net = self
            .nets
            .get(network)
            .map(|n| n.dns_servers.clone())
            .filter(|s| !s.is_empty());
        let mut servers = own.or(net).unwrap_or_else(host);
        servers.retain(|ip| !self.serves_on(*ip));
        let mut seen = Vec::new();
        servers.retain(|ip| {
            let new = !seen.contains(ip);
            seen.push(*ip);
            new
        });
        if servers.is_empty() {
            Upstream::NoneConfigured
        } else {
            Upstream::Servers(servers)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::network::SubnetInfo;
    use crate::options::{BridgeOptions, DriverOptions};

    pub(crate) fn net(name: &str, subnets: &[(&str, &str)]) -> NetworkInfo {
        NetworkInfo {
            removing: false,
            ipam_driver: crate::lease::IpamDriver::Default,
            name: name.into(),
            id: "0".repeat(64),
            driver: DriverOptions::Bridge(BridgeOptions::default()),
            subnets: subnets
                .iter()
                .map(|(s, g)| SubnetInfo {
                    subnet: s.parse().unwrap(),
                    gateway: g.parse().unwrap(),
                    ip_range: None,
                })
                .collect(),
            aux: Default::default(),
            ipv6: subnets.len() > 1,
            internal: false,
            mtu: 1500,
            device: Some(format!("br-{name}")),
            routes: Vec::new(),
            no_default_route: false,
            adopted: None,
            dns_enabled: true,
            dns_servers: Vec::new(),
        }
    }

    pub(crate) fn att(
        net: &str,
        c: &str,
        v4: &str,
        v6: Option<&str>,
        aliases: &[&str],
    ) -> Attachment {
        Attachment {
            network: net.into(),
            container: c.into(),
            ifname: "eth0".into(),
            mac: None,
            ipv4: Some(format!("{v4}/24").parse().unwrap()),
            ipv6: v6.map(|a| format!("{a}/64").parse().unwrap()),
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
        }
    }

    /// net1 (dual stack): a, b (alias db); net2: c, and a again; net3 has DNS off: d.
    pub(crate) fn table() -> NameTable {
        let mut n3 = net("net3", &[("10.3.0.0/24", "10.3.0.1")]);
        n3.dns_enabled = false;
        let mut n2 = net("net2", &[("10.2.0.0/24", "10.2.0.1")]);
        n2.dns_servers = vec!["192.0.2.2".parse().unwrap()];
        let nets = [
            net(
                "net1",
                &[("10.1.0.0/24", "10.1.0.1"), ("fd01::/64", "fd01::1")],
            ),
            n2,
            n3,
        ];
        let mut sb = SandboxRecord::new("c");
        sb.names.dns = vec!["192.0.2.9".parse().unwrap()];
        NameTable::from_records(
            &nets,
            &[
                att("net1", "a", "10.1.0.2", Some("fd01::2"), &[]),
                att("net1", "b", "10.1.0.3", None, &["DB", "web"]),
                att("net2", "c", "10.2.0.2", None, &[]),
                att("net2", "a", "10.2.0.3", None, &["web"]),
                att("net3", "d", "10.3.0.2", None, &[]),
            ],
            &[sb],
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn scope(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn listen(network: &str, addr: &str) -> ListenAddr {
        ListenAddr {
            network: network.into(),
            ip: ip(addr),
            device: format!("br-{network}"),
        }
    }

    #[test]
    fn listens_on_gateways_of_dns_networks_only() {
        let t = table();
        let l = t.listen_addrs();
        assert_eq!(
            l,
            vec![
                listen("net1", "10.1.0.1"),
                listen("net1", "fd01::1"),
                listen("net2", "10.2.0.1"),
            ]
        );
        assert!(t.serves_on(ip("fd01::1")) && !t.serves_on(ip("10.3.0.1")));
        // Without a device, nothing tells its containers from strangers: not served.
        let mut n = net("nodev", &[("10.8.0.0/24", "10.8.0.1")]);
        n.device = None;
        assert!(
            NameTable::from_records(&[n], &[], &[])
                .listen_addrs()
                .is_empty()
        );
    }

    #[test]
    fn the_scope_is_the_querier_s_dns_networks() {
        let t = table();
        let a = t.client("net1", ip("fd01::2")).unwrap();
        assert_eq!(a.container, "a");
        assert_eq!(a.scope, scope(&["net1", "net2"]));
        let a = t.client("net2", ip("10.2.0.3")).unwrap();
        assert_eq!(
            (a.container.as_str(), a.scope),
            ("a", scope(&["net1", "net2"]))
        );
        assert_eq!(
            t.client("net2", ip("10.2.0.2")).unwrap().scope,
            scope(&["net2"])
        );
    }

    #[test]
    fn only_endpoints_of_the_network_are_clients() {
        let t = table();
        // b's address, but on net2's gateway: b has no endpoint there.
        assert_eq!(t.client("net2", ip("10.1.0.3")), None);
        // a's net1 address on net2's gateway (a is on net2 with another address).
        assert_eq!(t.client("net2", ip("10.1.0.2")), None);
        // An address of the subnet that no endpoint has; the gateway itself (a host process).
        assert_eq!(t.client("net2", ip("10.2.0.99")), None);
        assert_eq!(t.client("net1", ip("10.1.0.1")), None);
        assert_eq!(t.client("net1", ip("198.51.100.7")), None);
        // A container on a network without DNS; a network the table does not serve.
        assert_eq!(t.client("net1", ip("10.3.0.2")), None);
        assert_eq!(t.client("net3", ip("10.3.0.2")), None);
    }

    #[test]
    fn names_resolve_in_scope_only() {
        let t = table();
        let s1 = scope(&["net1"]);
        let f = t.lookup(&s1, "B.").unwrap();
        assert_eq!(f.v4, vec!["10.1.0.3".parse::<Ipv4Addr>().unwrap()]);
        assert!(
            f.v6.is_empty(),
            "b has no IPv6: no AAAA, but the name exists"
        );
        assert_eq!(t.lookup(&s1, "db"), Some(f.clone()));
        assert_eq!(t.lookup(&s1, "b.net1."), Some(f));
        assert_eq!(
            t.lookup(&s1, "c"),
            None,
            "c shares no network with the querier"
        );
        assert_eq!(t.lookup(&s1, "b.net2"), None);
        assert_eq!(t.lookup(&scope(&["net1", "net2", "net3"]), "d"), None);
        // Several containers with one alias: every address.
        let web = t.lookup(&scope(&["net1", "net2"]), "WEB").unwrap();
        assert_eq!(web.v4.len(), 2);
        let a = t.lookup(&scope(&["net1", "net2"]), "a").unwrap();
        assert_eq!((a.v4.len(), a.v6.len()), (2, 1));
    }

    #[test]
    fn reverse_names_are_container_dot_network() {
        let t = table();
        assert_eq!(
            t.reverse(&scope(&["net1"]), ip("10.1.0.3")),
            vec!["b.net1".to_string()]
        );
        assert_eq!(t.reverse(&scope(&["net1"]), ip("fd01::2")), vec!["a.net1"]);
        assert!(t.reverse(&scope(&["net1"]), ip("10.2.0.2")).is_empty());
    }

    #[test]
    fn upstreams_prefer_the_container_then_the_network_then_the_host() {
        let t = table();
        let host = || vec![ip("127.0.0.53"), ip("10.1.0.1"), ip("127.0.0.53")];
        let c = t.client("net2", ip("10.2.0.2")).unwrap();
        assert_eq!(
            t.upstreams("net2", &c, host),
            Upstream::Servers(vec![ip("192.0.2.9")])
        );
        let a = t.client("net2", ip("10.2.0.3")).unwrap();
        assert_eq!(
            t.upstreams("net2", &a, host),
            Upstream::Servers(vec![ip("192.0.2.2")])
        );
        // The host's, loopback included, without the resolver's own addresses or duplicates.
        let a = t.client("net1", ip("10.1.0.2")).unwrap();
        assert_eq!(
            t.upstreams("net1", &a, host),
            Upstream::Servers(vec![ip("127.0.0.53")])
        );
        assert_eq!(
            t.upstreams("net1", &a, || vec![ip("fd01::1")]),
            Upstream::NoneConfigured
        );
    }

    #[test]
    fn internal_networks_do_not_forward() {
        let mut n = net("int", &[("10.9.0.0/24", "10.9.0.1")]);
        n.internal = true;
        let t = NameTable::from_records(&[n], &[att("int", "x", "10.9.0.2", None, &[])], &[]);
        let x = t.client("int", ip("10.9.0.2")).unwrap();
        assert_eq!(
            t.upstreams("int", &x, || vec![ip("192.0.2.1")]),
            Upstream::Internal
        );
        assert!(t.lookup(&x.scope, "x").is_some());
    }
}
