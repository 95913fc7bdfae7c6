//! The nf_tables ruleset berth wants, rendered as plain data by pure functions.
//!
//! Nothing here touches the kernel: every firewall operation is a list of [`Op`]s built from the
//! network/endpoint facts, applied in one transaction by [`super::nft`]. The text form of an op
//! (close to `nft --debug=netlink`) is what the golden files under `src/firewall/golden/` hold.
//! [`facts`] holds the facts and the names of the table, maps and chains, [`ops`] is the
//! vocabulary (both import nothing of the others), [`nat`] and [`filter`] build the rules, [`icc`] the table
//! `bridge berth` for ICC off and legacy links, [`spoof`] the table `bridge berth-spoof` for
//! anti-spoofing; this file composes them (base, network, endpoint, reapply, expected).
//!
//! Shape (table `inet berth`): O(networks) rules, never O(containers) or O(ports). Published
//! ports are map elements; per-network behaviour is reached through verdict maps keyed by the
//! bridge name. Table `bridge berth` (only while a network has ICC off; see [`icc`]) has a fixed
//! number of rules; each link flow is one element of `links4`/`links6`. So has table
//! `bridge berth-spoof` (only while a network has anti-spoofing; see [`spoof`]): each guarded
//! container is three elements of `spoof4`/`spoof6` (port . MAC . address).
//! ```text
//! map pm4_ip      { ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }  -p IP:P:C
//! map pm4_any     { inet_proto . inet_service : ipv4_addr . inet_service }              -p P:C
//! map post_by_iif { ifname : verdict }   bridge → jump nw-NAME-post
//! map fwd_from    { ifname : verdict }   bridge → jump nw-NAME-from
//! map fwd_to      { ifname : verdict }   bridge → jump nw-NAME-to
//! map isolate     { ifname : verdict }   bridge → drop
//! chain ports        dnat via @pm4_ip; fib daddr type local dnat via @pm4_any
//! chain prerouting   (nat, dstnat)  jump ports
//! chain output       (nat, -100)    jump ports
//! chain postrouting  (nat, srcnat)  iifname vmap @post_by_iif
//! chain forward      (filter, 0)    see [`filter`]
//! chain prerouting-guard (filter, -300) iifname != lo ip daddr 127.0.0.0/8 drop; same for ::1
//! chain user-forward                the admin's; never touched by berth
//! chain nw-NAME-post oifname != BRIDGE ip saddr SUBNET masquerade   (per subnet)
//! chain nw-NAME-esp-out, nw-NAME-esp-in   encrypted overlay networks only, see [`esp`]
//!
//! table bridge berth
//! set links4 { ipv4_addr . ipv4_addr . inet_proto . inet_service }   FROM . TO . PROTO . PORT
//! set links6 { ipv6_addr . ipv6_addr . inet_proto . inet_service }
//! chain forward (filter, forward, 0)  iifgroup G oifgroup G jump icc-off (both ports ICC off)
//! chain icc-off   arp, neighbour discovery, link flows (@links4/@links6, both ways) accept; drop
//!
//! table bridge berth-spoof
//! set spoof4 { ifname . ether_addr . ipv4_addr }   PORT . MAC . IPv4
//! set spoof6 { ifname . ether_addr . ipv6_addr }   PORT . MAC . IPv6 (and link-local)
//! chain spoof-pre (filter, prerouting, -300)  guarded port → jump anti-spoof
//! chain spoof-in  (filter, input, -300)       guarded port, IEEE link-local dst → jump anti-spoof
//! chain anti-spoof  own source (IPv4, ARP, IPv6, ND target/lladdr) accept; RA, redirect, rest drop
//! ```

pub mod esp;
pub mod facts;
pub mod filter;
pub mod icc;
pub mod nat;
pub mod ops;
pub mod spoof;

use std::net::IpAddr;

use ipnet::IpNet;

use facts::IFNAMSIZ;
pub use facts::{
    CHAIN_PORTS, EndpointRules, EspVxlan, LinkRule, MAP_FWD_FROM, MAP_FWD_TO, MAP_ISOLATE,
    MAP_PORTS_ANY, MAP_PORTS_IP, MAP_PORTS6_ANY, MAP_PORTS6_IP, MAP_POST_BY_IIF, MAP_POST_BY_OIF,
    NetworkRules, PortGuard, TABLE, ifname_key,
};
pub use filter::CHAIN_USER;
use ops::{
    BaseChain, ChainKind, DataType, ElemData, Expr, Hook, MapData, MetaKey, REG_1, REG_VERDICT,
    TYPE_IFNAME, TYPE_INET_PROTO, TYPE_INET_SERVICE, TYPE_IPV4_ADDR, TYPE_IPV6_ADDR, concat,
};
pub use ops::{Family, Op, render};

use crate::port::PortMapping;

/// The chains of network `name`: postrouting, forward-from, forward-to.
pub fn network_chains(name: &str) -> [String; 3] {
    [
        format!("nw-{name}-post"),
        format!("nw-{name}-from"),
        format!("nw-{name}-to"),
    ]
}

fn rules(chain: &str, rules: Vec<Vec<Expr>>) -> impl Iterator<Item = Op> + '_ {
    rules.into_iter().map(move |exprs| Op::AddRule {
        chain: chain.into(),
        exprs,
    })
}

/// The table, maps, chains and base rules. Sent with `exclusive` so that only the first caller
/// adds the rules (the others get EEXIST and nothing of their batch is applied).
pub fn base() -> Vec<Op> {
    let base = |name: &str, kind, hook, priority| Op::AddChain {
        name: name.into(),
        base: Some(BaseChain {
            kind,
            hook,
            priority,
        }),
    };
    let vmap = |name| Op::AddMap {
        name,
        key: DataType {
            id: TYPE_IFNAME,
            len: IFNAMSIZ as u32,
        },
        data: MapData::Verdict,
    };
    let mut ops = vec![
        Op::AddTable { exclusive: true },
        Op::AddMap {
            name: MAP_PORTS_IP,
            key: DataType {
                id: concat(concat(TYPE_IPV4_ADDR, TYPE_INET_PROTO), TYPE_INET_SERVICE),
                len: 12,
            },
            data: MapData::Data(nat::TYPE_PORTS_DATA),
        },
        Op::AddMap {
            name: MAP_PORTS_ANY,
            key: DataType {
                id: concat(TYPE_INET_PROTO, TYPE_INET_SERVICE),
                len: 8,
            },
            data: MapData::Data(nat::TYPE_PORTS_DATA),
        },
        Op::AddMap {
            name: MAP_PORTS6_IP,
            key: DataType {
                id: concat(concat(TYPE_IPV6_ADDR, TYPE_INET_PROTO), TYPE_INET_SERVICE),
                len: 24,
            },
            data: MapData::Data(nat::TYPE_PORTS6_DATA),
        },
        Op::AddMap {
            name: MAP_PORTS6_ANY,
            key: DataType {
                id: concat(TYPE_INET_PROTO, TYPE_INET_SERVICE),
                len: 8,
            },
            data: MapData::Data(nat::TYPE_PORTS6_DATA),
        },
        vmap(MAP_POST_BY_IIF),
        vmap(MAP_POST_BY_OIF),
        vmap(MAP_FWD_FROM),
        vmap(MAP_FWD_TO),
        vmap(MAP_ISOLATE),
        Op::AddChain {
            name: CHAIN_PORTS.into(),
            base: None,
        },
        Op::AddChain {
            name: CHAIN_USER.into(),
            base: None,
        },
        base("prerouting", ChainKind::Nat, Hook::Prerouting, -100),
        base("output", ChainKind::Nat, Hook::Output, -100),
        base("postrouting", ChainKind::Nat, Hook::Postrouting, 100),
        base("forward", ChainKind::Filter, Hook::Forward, 0),
        base(
            filter::CHAIN_GUARD,
            ChainKind::Filter,
            Hook::Prerouting,
            -300,
        ),
    ];
    ops.extend(rules(
        CHAIN_PORTS,
        vec![
            nat::ports_by_address(nat::Family::V4),
            nat::ports_on_any_address(nat::Family::V4),
            nat::ports_by_address(nat::Family::V6),
            nat::ports_on_any_address(nat::Family::V6),
        ],
    ));
    ops.extend(rules(
        "prerouting",
        vec![vec![Expr::Jump(CHAIN_PORTS.into())]],
    ));
    ops.extend(rules("output", vec![vec![Expr::Jump(CHAIN_PORTS.into())]]));
    ops.extend(rules(
        "postrouting",
        vec![
            nat::localhost(),
            vec![
                Expr::Meta {
                    key: MetaKey::IifName,
                    dreg: REG_1,
                },
                Expr::Lookup {
                    set: MAP_POST_BY_IIF,
                    sreg: REG_1,
                    dreg: REG_VERDICT,
                },
            ],
            vec![
                Expr::Meta {
                    key: MetaKey::OifName,
                    dreg: REG_1,
                },
                Expr::Lookup {
                    set: MAP_POST_BY_OIF,
                    sreg: REG_1,
                    dreg: REG_VERDICT,
                },
            ],
        ],
    ));
    ops.extend(rules("forward", filter::forward_rules()));
    ops.extend(rules(filter::CHAIN_GUARD, filter::guard_rules()));
    ops
}

/// What a new network adds: its chains and their rules, and its elements in the dispatch maps.
pub fn network_add(n: &NetworkRules) -> Vec<Op> {
    let [post, from, to] = network_chains(&n.name);
    let mut ops: Vec<Op> = [&post, &from, &to]
        .iter()
        .map(|c| Op::AddChain {
            name: (*c).clone(),
            base: None,
        })
        .collect();
    if !n.internal {
        ops.extend(rules(
            &post,
            n.subnets
                .iter()
                .map(|s| nat::hairpin(&n.bridge, s))
                .collect(),
        ));
    }
    if n.masquerade && !n.internal {
        let egress = |s: &IpNet| match (s, n.outbound_ipv4) {
            (IpNet::V4(_), Some(to)) => nat::snat(&n.bridge, s, to),
            _ => nat::masquerade(&n.bridge, s),
        };
        ops.extend(rules(&post, n.subnets.iter().map(egress).collect()));
    }
    ops.extend(rules(&from, filter::from_rules(&n.bridge, n.internal)));
    ops.extend(rules(
        &to,
        filter::to_rules(n.allow_direct_access && !n.internal),
    ));
    let key = ifname_key(&n.bridge);
    for (map, data) in [
        (MAP_POST_BY_IIF, ElemData::Jump(post.clone())),
        (MAP_POST_BY_OIF, ElemData::Jump(post)),
        (MAP_FWD_FROM, ElemData::Jump(from)),
        (MAP_FWD_TO, ElemData::Jump(to)),
        (MAP_ISOLATE, ElemData::Drop),
    ] {
        ops.push(Op::AddElems {
            map,
            elems: vec![(key.clone(), data)],
        });
    }
    ops.extend(esp::network_add(n));
    ops
}

/// What deleting a network removes (the reverse of [`network_add`]).
pub fn network_remove(n: &NetworkRules) -> Vec<Op> {
    let key = ifname_key(&n.bridge);
    let mut ops: Vec<Op> = [
        MAP_POST_BY_IIF,
        MAP_POST_BY_OIF,
        MAP_FWD_FROM,
        MAP_FWD_TO,
        MAP_ISOLATE,
    ]
    .into_iter()
    .map(|map| Op::DelElems {
        map,
        keys: vec![key.clone()],
    })
    .collect();
    for chain in network_chains(&n.name) {
        ops.push(Op::FlushChain {
            chain: chain.clone(),
        });
        ops.push(Op::DelChain { chain });
    }
    ops.extend(esp::network_remove(n));
    ops
}

/// Every element an endpoint's published ports need: (map, key, data, the mapping). A port on
/// a specific address goes to that family's `*_ip` map; on `0.0.0.0` it is published on every
/// address of both families (IPv6 only if the container has an IPv6 address), on `::` on every
/// IPv6 address.
pub fn endpoint_elements(e: &EndpointRules) -> Vec<(&'static str, Vec<u8>, Vec<u8>, PortMapping)> {
    let mut v = Vec::new();
    for p in &e.ports {
        let d4 = nat::addr_port(e.ip, p.container_port);
        let d6 = e.ip6.map(|ip6| nat::addr6_port(ip6, p.container_port));
        match p.host_ip {
            IpAddr::V4(h) if !h.is_unspecified() => {
                v.push((MAP_PORTS_IP, nat::port_key_ip(h, p), d4, *p))
            }
            IpAddr::V6(h) if !h.is_unspecified() => {
                if let Some(d6) = d6 {
                    v.push((MAP_PORTS6_IP, nat::port_key_ip6(h, p), d6, *p));
                }
            }
            IpAddr::V4(_) => {
                v.push((MAP_PORTS_ANY, nat::port_key_any(p), d4, *p));
                if let Some(d6) = d6 {
                    v.push((MAP_PORTS6_ANY, nat::port_key_any(p), d6, *p));
                }
            }
            IpAddr::V6(_) => {
                if let Some(d6) = d6 {
                    v.push((MAP_PORTS6_ANY, nat::port_key_any(p), d6, *p));
                }
            }
        }
    }
    v
}

/// The elements an endpoint's published ports add, one op per map.
pub fn endpoint_add(e: &EndpointRules) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    for map in [MAP_PORTS_IP, MAP_PORTS_ANY, MAP_PORTS6_IP, MAP_PORTS6_ANY] {
        let elems: Vec<(Vec<u8>, ElemData)> = endpoint_elements(e)
            .into_iter()
            .filter(|(m, ..)| *m == map)
            .map(|(_, k, d, _)| (k, ElemData::Data(d)))
            .collect();
        if !elems.is_empty() {
            ops.push(Op::AddElems { map, elems });
        }
    }
    ops
}

/// The reverse of [`endpoint_add`].
pub fn endpoint_remove(e: &EndpointRules) -> Vec<Op> {
    endpoint_add(e)
        .into_iter()
        .filter_map(|op| match op {
            Op::AddElems { map, elems } => Some(Op::DelElems {
                map,
                keys: elems.into_iter().map(|(k, _)| k).collect(),
            }),
            _ => None,
        })
        .collect()
}

/// Everything berth's ruleset should hold for these networks and endpoints, as `check`
/// compares it with what the kernel holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Chain → number of rules (`None`: any, for the admin's chain).
    pub chains: std::collections::BTreeMap<String, Option<usize>>,
    /// Map names.
    pub maps: Vec<&'static str>,
    /// (map, key, what it is) of every element.
    pub elements: Vec<(&'static str, Vec<u8>, String)>,
    /// What table `bridge berth` should hold, when some network has ICC off.
    pub bridge: Option<Box<Expected>>,
    /// What table `bridge berth-spoof` should hold, when some network has anti-spoofing.
    pub guard: Option<Box<Expected>>,
}

impl Expected {
    /// Counts a declaration: a chain, a rule of it, a map.
    fn declare(&mut self, op: &Op) {
        match op {
            Op::AddChain { name, .. } => {
                let any = name == CHAIN_USER;
                self.chains
                    .insert(name.clone(), if any { None } else { Some(0) });
            }
            Op::AddRule { chain, .. } => {
                if let Some(Some(n)) = self.chains.get_mut(chain) {
                    *n += 1;
                }
            }
            Op::AddMap { name, .. } => self.maps.push(name),
            _ => {}
        }
    }
}

/// What [`check`](crate::Host::check_firewall) expects for `nets` and `eps`.
pub fn expected(nets: &[NetworkRules], eps: &[EndpointRules]) -> Expected {
    let mut x = Expected::default();
    let net_ops = nets
        .iter()
        .flat_map(|n| network_add(n).into_iter().map(move |op| (op, Some(n))));
    for (op, net) in base().into_iter().map(|op| (op, None)).chain(net_ops) {
        x.declare(&op);
        if let Op::AddElems { map, elems } = op {
            let what = format!(
                "dispatch of bridge {} in {map}",
                net.map_or("", |n| n.bridge.as_str())
            );
            x.elements
                .extend(elems.into_iter().map(|(k, _)| (map, k, what.clone())));
        }
    }
    for e in eps {
        for (map, k, _, p) in endpoint_elements(e) {
            let to = if map == MAP_PORTS6_IP || map == MAP_PORTS6_ANY {
                e.ip6.map_or(String::new(), |ip| format!("[{ip}]"))
            } else {
                e.ip.to_string()
            };
            let what = format!(
                "published port {}/{}:{} -> {to}:{}",
                p.proto, p.host_ip, p.host_port, p.container_port
            );
            x.elements.push((map, k, what));
        }
    }
    if icc::needed(nets) {
        let mut b = Expected::default();
        for op in icc::bridge_base() {
            b.declare(op.in_family().1);
        }
        for (set, k, l) in icc::link_elements(nets, eps.iter().flat_map(|e| &e.links)) {
            b.elements.push((set, k, icc::describe(l)));
        }
        x.bridge = Some(Box::new(b));
    }
    if spoof::needed(nets) {
        let mut g = Expected::default();
        for op in spoof::base() {
            g.declare(op.in_family().1);
        }
        g.elements
            .extend(eps.iter().flat_map(spoof::endpoint_elements));
        x.guard = Some(Box::new(g));
    }
    x
}

/// Every link flow of `eps` enforced on `nets`, as ops adding them.
fn all_links(nets: &[NetworkRules], eps: &[EndpointRules]) -> Vec<Op> {
    let links: Vec<LinkRule> = eps.iter().flat_map(|e| e.links.iter().copied()).collect();
    icc::links_add(nets, &links)
}

/// Restores everything `nets` and `eps` need, in one transaction, whatever is left in the
/// kernel (after `nft flush ruleset`, or a partial loss): declares every table, map and chain
/// (idempotent), empties berth's maps and chains — never the admin's `user-forward` — and
/// fills them again. Table `bridge berth` is included when some network has ICC off, table
/// `bridge berth-spoof` when some network has anti-spoofing.
pub fn reapply(nets: &[NetworkRules], eps: &[EndpointRules]) -> Vec<Op> {
    let (mut decl, mut flush, mut fill) = (Vec::new(), Vec::new(), Vec::new());
    let bridge = if icc::needed(nets) {
        let mut ops = icc::bridge_base();
        ops.extend(all_links(nets, eps));
        ops
    } else {
        Vec::new()
    };
    let guard = if spoof::needed(nets) {
        let mut ops = spoof::base();
        ops.extend(spoof::endpoints_add(eps));
        ops
    } else {
        Vec::new()
    };
    let all = base()
        .into_iter()
        .chain(nets.iter().flat_map(network_add))
        .chain(eps.iter().flat_map(endpoint_add))
        .chain(bridge)
        .chain(guard);
    for op in all {
        let (family, inner) = op.in_family();
        let wrap = |o: Op| Op::in_table(family, o);
        match inner {
            Op::AddTable { .. } => decl.push(wrap(Op::AddTable { exclusive: false })),
            Op::AddMap { name, .. } => {
                flush.push(wrap(Op::FlushMap { map: name }));
                decl.push(op);
            }
            Op::AddChain { name, .. } => {
                if name != CHAIN_USER {
                    flush.push(wrap(Op::FlushChain {
                        chain: name.clone(),
                    }));
                }
                decl.push(op);
            }
            _ => fill.push(op),
        }
    }
    decl.extend(flush);
    decl.extend(fill);
    decl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::Port;

    /// Compares with `src/firewall/golden/NAME.txt`; `BERTH_UPDATE_GOLDEN=1` rewrites it.
    fn golden(name: &str, ops: &[Op]) {
        let path = format!(
            "{}/src/firewall/golden/{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let got = render(ops);
        if std::env::var_os("BERTH_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            got, want,
            "golden file {path} differs (BERTH_UPDATE_GOLDEN=1 to accept)"
        );
    }

    fn web() -> NetworkRules {
        NetworkRules {
            name: "web".into(),
            bridge: "br-web".into(),
            subnets: vec![
                "10.88.0.0/24".parse().unwrap(),
                "fd00:88::/64".parse().unwrap(),
            ],
            masquerade: true,
            internal: false,
            allow_direct_access: false,
            outbound_ipv4: None,
            icc: true,
            anti_spoofing: false,
            encrypted: None,
        }
    }

    fn noicc() -> NetworkRules {
        NetworkRules {
            name: "noicc".into(),
            bridge: "br-noicc".into(),
            icc: false,
            ..web()
        }
    }

    fn link(from: &str, to: &str, port: u16) -> LinkRule {
        LinkRule {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            proto: crate::port::Protocol::Tcp,
            port,
        }
    }

    #[test]
    fn base_ruleset() {
        golden("base", &base());
    }

    #[test]
    fn network_add_and_remove() {
        golden("network_add", &network_add(&web()));
        golden("network_remove", &network_remove(&web()));
        let masq = |ops: &[Op]| {
            ops.iter()
                .filter(
                    |o| matches!(o, Op::AddRule { exprs, .. } if exprs.contains(&Expr::Masquerade)),
                )
                .count()
        };
        let mut n = web();
        assert_eq!(
            masq(&network_add(&n)),
            4,
            "a hairpin and a masquerade rule per subnet"
        );
        n.masquerade = false;
        assert_eq!(
            masq(&network_add(&n)),
            2,
            "only hairpin rules without masquerade"
        );
        n.masquerade = true;
        n.internal = true;
        assert_eq!(
            masq(&network_add(&n)),
            0,
            "internal networks are not masqueraded"
        );
        golden("network_add_internal", &network_add(&n));
    }

    #[test]
    fn reapply_restores_everything_but_never_flushes_the_admin_chain() {
        let e = EndpointRules {
            ip: "10.88.0.2".parse().unwrap(),
            ip6: None,
            ports: vec![Port::tcp(8080).to(80)],
            links: vec![link("10.88.0.2", "10.88.0.3", 80)],
            guard: None,
        };
        let ops = reapply(&[web()], std::slice::from_ref(&e));
        golden("reapply", &ops);
        assert!(
            !ops.iter()
                .any(|o| matches!(o, Op::FlushChain { chain } if chain == CHAIN_USER))
        );
        assert!(
            ops.iter()
                .any(|o| matches!(o, Op::AddChain { name, .. } if name == CHAIN_USER))
        );
        assert!(
            !ops.iter().any(|o| matches!(o, Op::Bridge(_))),
            "no bridge table and no link elements without a network with ICC off"
        );
        let x = expected(&[web()], &[e]);
        assert!(x.bridge.is_none());
        assert_eq!(x.chains.get(CHAIN_USER), Some(&None));
        assert_eq!(x.chains.get("forward"), Some(&Some(4)));
        assert!(
            x.elements
                .iter()
                .any(|(m, _, w)| *m == MAP_PORTS_ANY
                    && w.contains("tcp/0.0.0.0:8080 -> 10.88.0.2:80"))
        );
    }

    #[test]
    fn endpoint_ports_are_map_elements() {
        let e = EndpointRules {
            ip: "10.88.0.2".parse().unwrap(),
            ip6: Some("fd00:88::2".parse().unwrap()),
            ports: vec![
                Port::tcp(8080).to(80),
                Port::udp(5353).to(53),
                Port::tcp(8443).on("198.18.0.1".parse().unwrap()).to(443),
            ],
            links: vec![],
            guard: None,
        };
        golden("endpoint_add", &endpoint_add(&e));
        golden("endpoint_remove", &endpoint_remove(&e));
        assert!(
            endpoint_add(&EndpointRules {
                ip: e.ip,
                ip6: None,
                ports: vec![],
                links: vec![],
                guard: None,
            })
            .is_empty()
        );
    }

    #[test]
    fn rule_count_is_flat_in_endpoints_and_ports() {
        let rules = |ops: &[Op]| {
            ops.iter()
                .filter(|o| matches!(o, Op::AddRule { .. }))
                .count()
        };
        let e = EndpointRules {
            ip: "10.88.0.9".parse().unwrap(),
            ip6: None,
            ports: (1..=500).map(|p| Port::tcp(10000 + p).to(p)).collect(),
            links: vec![],
            guard: None,
        };
        assert_eq!(rules(&endpoint_add(&e)), 0);
        // A network's rules depend on its subnets only: 2 hairpin + 2 masquerade + 3 from + 2 to.
        assert_eq!(rules(&network_add(&web())), 9);
    }

    #[test]
    fn anti_spoofing_table() {
        golden("spoof_base", &spoof::base());
    }

    #[test]
    fn icc_off_table_and_link_elements() {
        golden("bridge_base", &icc::bridge_base());
        let n = noicc();
        let links = [
            link("10.88.0.2", "10.88.0.3", 80),
            link("10.88.0.2", "10.88.0.3", 80),
            LinkRule {
                proto: crate::port::Protocol::Udp,
                ..link("10.88.0.2", "10.88.0.3", 53)
            },
            link("fd00:88::2", "fd00:88::3", 443),
            // Not enforced: mixed families, an address outside the network.
            link("10.88.0.2", "fd00:88::3", 80),
            link("10.88.0.2", "10.99.0.3", 80),
        ];
        let add = icc::links_add(std::slice::from_ref(&n), &links);
        golden("links_add", &add);
        golden(
            "links_remove",
            &icc::links_remove(std::slice::from_ref(&n), &links),
        );
        let elems = |ops: &[Op]| -> usize {
            ops.iter()
                .map(|o| match o.in_family() {
                    (Family::Bridge, Op::EnsureElems { elems, .. }) => elems.len(),
                    _ => 0,
                })
                .sum()
        };
        assert_eq!(elems(&add), 3, "duplicates and unenforced links dropped");
        assert!(
            icc::links_add(&[web()], &links).is_empty(),
            "nothing on a network with ICC on"
        );
        // Adding a network with ICC off adds nothing to the bridge table: ports are marked.
        assert_eq!(
            network_add(&n),
            network_add(&NetworkRules {
                icc: true,
                ..n.clone()
            })
        );
    }

    #[test]
    fn reapply_and_check_cover_the_bridge_table_when_icc_is_off() {
        let e = EndpointRules {
            ip: "10.88.0.2".parse().unwrap(),
            ip6: None,
            ports: vec![],
            links: vec![link("10.88.0.2", "10.88.0.3", 80)],
            guard: None,
        };
        let ops = reapply(&[web(), noicc()], std::slice::from_ref(&e));
        golden("reapply_icc_off", &ops);
        let x = expected(&[web(), noicc()], &[e]);
        let b = x.bridge.expect("bridge table expected");
        assert_eq!(b.chains.get(icc::CHAIN_ICC_OFF), Some(&Some(8)));
        assert_eq!(b.chains.get(icc::CHAIN_BRIDGE_FORWARD), Some(&Some(1)));
        assert_eq!(b.maps, vec![icc::SET_LINKS4, icc::SET_LINKS6]);
        assert!(
            x.guard.is_none(),
            "no anti-spoofing table without such a network"
        );
        assert_eq!(
            b.elements
                .iter()
                .map(|(s, _, w)| format!("{s}: {w}"))
                .collect::<Vec<_>>(),
            vec!["links4: link 10.88.0.2 -> 10.88.0.3:80/tcp".to_string()]
        );
    }

    #[test]
    fn rule_count_is_flat_in_links() {
        let rules = |ops: &[Op]| {
            ops.iter()
                .filter(|o| matches!(o.in_family().1, Op::AddRule { .. }))
                .count()
        };
        let few = EndpointRules {
            ip: "10.88.0.2".parse().unwrap(),
            ip6: None,
            ports: vec![],
            links: vec![link("10.88.0.2", "10.88.0.3", 80)],
            guard: None,
        };
        let many = EndpointRules {
            links: (1..=1000)
                .map(|p| link("10.88.0.2", "10.88.0.3", p))
                .collect(),
            ..few.clone()
        };
        let nets = [noicc()];
        assert_eq!(
            rules(&reapply(&nets, &[few])),
            rules(&reapply(&nets, &[many]))
        );
    }

    fn spoofguard() -> NetworkRules {
        NetworkRules {
            name: "guarded".into(),
            bridge: "br-guarded".into(),
            anti_spoofing: true,
            encrypted: None,
            ..web()
        }
    }

    fn guarded(i: u32) -> EndpointRules {
        EndpointRules {
            ip: std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 88, 0, 2)) + i),
            ip6: Some(std::net::Ipv6Addr::from(
                u128::from("fd00:88::2".parse::<std::net::Ipv6Addr>().unwrap()) + u128::from(i),
            )),
            ports: vec![],
            links: vec![],
            guard: Some(PortGuard {
                port: format!("veth{i:08x}"),
                mac: [0x02, 0x42, 0x0a, 0x58, (i >> 8) as u8, i as u8],
            }),
        }
    }

    #[test]
    fn anti_spoofing_is_its_own_table_with_three_elements_per_endpoint() {
        let n = spoofguard();
        // The network adds nothing to the bridge table: its ports are marked.
        assert_eq!(
            network_add(&n),
            network_add(&NetworkRules {
                anti_spoofing: false,
                encrypted: None,
                ..n.clone()
            })
        );
        let e = guarded(0);
        let ops = reapply(&[web(), n.clone()], std::slice::from_ref(&e));
        golden("reapply_anti_spoofing", &ops);
        assert!(
            !icc::needed(std::slice::from_ref(&n)),
            "no ICC table needed"
        );
        assert!(
            !ops.iter().any(|o| matches!(o, Op::Bridge(_))),
            "nothing in table bridge berth"
        );
        let x = expected(&[web(), n.clone()], std::slice::from_ref(&e));
        assert!(x.bridge.is_none());
        let b = x.guard.expect("anti-spoofing table expected");
        assert_eq!(b.maps, vec![spoof::SET_SPOOF4, spoof::SET_SPOOF6]);
        assert_eq!(
            b.chains.get(spoof::CHAIN_ANTI_SPOOF),
            Some(&Some(spoof::anti_spoof_rules().len()))
        );
        assert_eq!(b.chains.get(spoof::CHAIN_SPOOF_PRE), Some(&Some(1)));
        assert_eq!(b.chains.get(spoof::CHAIN_SPOOF_IN), Some(&Some(1)));
        assert_eq!(
            b.elements
                .iter()
                .map(|(s, _, w)| format!("{s}: {w}"))
                .collect::<Vec<_>>(),
            vec![
                "spoof4: anti-spoofing of 10.88.0.2 on port veth00000000 (02:42:0a:58:00:00)"
                    .to_string(),
                "spoof6: anti-spoofing of fd00:88::2 on port veth00000000 (02:42:0a:58:00:00)"
                    .to_string(),
                "spoof6: anti-spoofing of fe80::42:aff:fe58:0 on port veth00000000 (02:42:0a:58:00:00)"
                    .to_string(),
            ]
        );
        // Removal is idempotent: each element is ensured, then deleted.
        let rm = spoof::endpoint_remove(&e);
        assert_eq!(rm.len(), 4);
        // Without a guard, an endpoint adds nothing to the bridge table.
        assert!(spoof::endpoints_add([&guarded_none()]).is_empty());
    }

    fn guarded_none() -> EndpointRules {
        EndpointRules {
            guard: None,
            ..guarded(1)
        }
    }

    #[test]
    fn link_local_is_the_eui64_of_the_mac() {
        assert_eq!(
            spoof::link_local([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]),
            "fe80::42:acff:fe11:2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
        );
    }

    #[test]
    fn rule_count_is_flat_in_guarded_endpoints() {
        let rules = |ops: &[Op]| {
            ops.iter()
                .filter(|o| matches!(o.in_family().1, Op::AddRule { .. }))
                .count()
        };
        let nets = [spoofguard()];
        let one = [guarded(0)];
        let many: Vec<EndpointRules> = (0..1000).map(guarded).collect();
        assert_eq!(rules(&reapply(&nets, &one)), rules(&reapply(&nets, &many)));
        let elems: usize = reapply(&nets, &many)
            .iter()
            .map(|o| match o.in_family() {
                (Family::Guard, Op::EnsureElems { elems, .. }) => elems.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(elems, 3000, "IPv4, IPv6 and link-local per endpoint");
    }
}
