//! The nf_tables ruleset berth wants, rendered as plain data by pure functions.
//!
//! Nothing here touches the kernel: every firewall operation is a list of [`Op`]s built from the
//! network/endpoint facts, applied in one transaction by [`super::nft`]. The [`std::fmt::Display`]
//! form of an op (close to `nft --debug=netlink`) is what the golden files under
//! `src/firewall/golden/` hold.
//!
//! Shape (table `inet berth`), O(networks) rules, never O(containers) or O(ports):
//! ```text
//! map pm4_ip   { ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }  (-p IP:P:C)
//! map pm4_any  { inet_proto . inet_service : ipv4_addr . inet_service }              (-p P:C)
//! map post_by_iif { ifname : verdict }         bridge → jump nw-NAME
//! chain ports        dnat ip to ip daddr . meta l4proto . th dport map @pm4_ip
//!                    fib daddr type local dnat ip to meta l4proto . th dport map @pm4_any
//! chain prerouting   (nat, dstnat)  jump ports
//! chain output       (nat, -100)    jump ports
//! chain postrouting  (nat, srcnat)  iifname vmap @post_by_iif
//! chain nw-NAME      oifname != BRIDGE ip saddr SUBNET masquerade
//! ```

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::IpNet;

use crate::port::PortMapping;

/// The table berth owns (family `inet`).
pub const TABLE: &str = "berth";
/// Published IPv4 ports bound to one host address.
pub const MAP_PORTS_IP: &str = "pm4_ip";
/// Published IPv4 ports on every host address.
pub const MAP_PORTS_ANY: &str = "pm4_any";
/// Dispatch of forwarded traffic in postrouting, keyed by input interface.
pub const MAP_POST_BY_IIF: &str = "post_by_iif";
/// Regular chain holding the port-publishing rules.
pub const CHAIN_PORTS: &str = "ports";

// nft's datatype ids, and concatenations of them (6 bits per component).
const TYPE_IPV4_ADDR: u32 = 7;
const TYPE_INET_PROTO: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
const fn concat(a: u32, b: u32) -> u32 {
    (a << 6) | b
}

/// 32-bit registers 8.. (`NFT_REG32_00`); concatenations use consecutive ones.
pub const REG32_0: u32 = 8;
/// 128-bit register 1.
pub const REG_1: u32 = 1;
/// The verdict register.
pub const REG_VERDICT: u32 = 0;

/// A netfilter hook a base chain is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// NF_INET_PRE_ROUTING.
    Prerouting,
    /// NF_INET_LOCAL_OUT.
    Output,
    /// NF_INET_POST_ROUTING.
    Postrouting,
}

/// Base-chain attributes (only `nat` chains so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// Hook.
    pub hook: Hook,
    /// Priority (dstnat = -100, srcnat = 100).
    pub priority: i32,
}

/// Key or data type of a map: nft's type id and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataType {
    /// Type id (concatenations included).
    pub id: u32,
    /// Length in bytes, each component padded to 4.
    pub len: u32,
}

/// What a map's elements map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapData {
    /// Plain data.
    Data(DataType),
    /// Verdicts (a vmap).
    Verdict,
}

/// The value of one map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemData {
    /// Plain data bytes.
    Data(Vec<u8>),
    /// `jump CHAIN`.
    Jump(String),
}

/// Meta keys used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// `meta nfproto`.
    NfProto,
    /// `meta l4proto`.
    L4Proto,
    /// `iifname`.
    IifName,
    /// `oifname`.
    OifName,
}

/// Payload bases used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The network header (IP).
    Network,
    /// The transport header (TCP/UDP).
    Transport,
}

/// Comparison operators used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`.
    Eq,
    /// `!=`.
    Neq,
}

/// One nf_tables expression, as the kernel evaluates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load a meta key into a register.
    Meta {
        /// Key.
        key: MetaKey,
        /// Destination register.
        dreg: u32,
    },
    /// Load packet bytes into a register.
    Payload {
        /// Header.
        base: PayloadBase,
        /// Offset in the header.
        offset: u32,
        /// Length.
        len: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `reg = reg & mask` (xor 0).
    Mask {
        /// Register (source and destination).
        reg: u32,
        /// Mask bytes.
        mask: Vec<u8>,
    },
    /// Compare a register with data; no match ends the rule.
    Cmp {
        /// Register.
        sreg: u32,
        /// Operator.
        op: CmpOp,
        /// Data.
        data: Vec<u8>,
    },
    /// Look the key in `sreg` up in a map; result to `dreg` (verdict register for vmaps).
    Lookup {
        /// Map name.
        set: &'static str,
        /// Source register.
        sreg: u32,
        /// Destination register.
        dreg: u32,
    },
    /// `fib daddr type` into a register.
    FibDaddrType {
        /// Destination register.
        dreg: u32,
    },
    /// IPv4 DNAT to the address in `addr_reg` and port in `port_reg`.
    Dnat4 {
        /// Address register.
        addr_reg: u32,
        /// Port register.
        port_reg: u32,
    },
    /// Masquerade.
    Masquerade,
    /// `jump CHAIN`.
    Jump(String),
}

/// One step of an nf_tables transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create the table; `exclusive` fails with EEXIST when it exists.
    AddTable {
        /// NLM_F_EXCL.
        exclusive: bool,
    },
    /// Create a chain (idempotent).
    AddChain {
        /// Name.
        name: String,
        /// Hook, for base chains.
        base: Option<BaseChain>,
    },
    /// Create a map (idempotent).
    AddMap {
        /// Name.
        name: &'static str,
        /// Key type.
        key: DataType,
        /// Data type.
        data: MapData,
    },
    /// Add elements; fails with EEXIST if one exists.
    AddElems {
        /// Map.
        map: &'static str,
        /// Key and value of each element.
        elems: Vec<(Vec<u8>, ElemData)>,
    },
    /// Delete elements by key; fails with ENOENT if one is missing.
    DelElems {
        /// Map.
        map: &'static str,
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// Append a rule.
    AddRule {
        /// Chain.
        chain: String,
        /// Expressions.
        exprs: Vec<Expr>,
    },
    /// Delete every element of a map.
    FlushMap {
        /// Map.
        map: &'static str,
    },
    /// Delete every rule of a chain.
    FlushChain {
        /// Chain.
        chain: String,
    },
    /// Delete a (flushed, unreferenced) chain.
    DelChain {
        /// Chain.
        chain: String,
    },
}

/// The firewall-relevant facts of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// Network name (its chain is `nw-NAME`).
    pub name: String,
    /// The bridge device.
    pub bridge: String,
    /// Subnets, both families.
    pub subnets: Vec<IpNet>,
    /// Masquerade egress.
    pub masquerade: bool,
}

/// The firewall-relevant facts of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRules {
    /// Container address.
    pub ip: Ipv4Addr,
    /// Published ports.
    pub ports: Vec<PortMapping>,
}

/// The chain of network `name`.
pub fn network_chain(name: &str) -> String {
    format!("nw-{name}")
}

const TYPE_PORTS_DATA: DataType = DataType {
    id: concat(TYPE_IPV4_ADDR, TYPE_INET_SERVICE),
    len: 8,
};

/// The table, maps, chains and base rules. Sent with `exclusive` so that only the first caller
/// adds the rules (the others get EEXIST and nothing of their batch is applied).
pub fn base() -> Vec<Op> {
    let ports_rule_ip = vec![
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![libc::NFPROTO_IPV4 as u8],
        },
        Expr::Payload {
            base: PayloadBase::Network,
            offset: 16,
            len: 4,
            dreg: REG32_0,
        },
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG32_0 + 1,
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: REG32_0 + 2,
        },
        Expr::Lookup {
            set: MAP_PORTS_IP,
            sreg: REG32_0,
            dreg: REG32_0,
        },
        Expr::Dnat4 {
            addr_reg: REG32_0,
            port_reg: REG32_0 + 1,
        },
    ];
    let ports_rule_any = vec![
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![libc::NFPROTO_IPV4 as u8],
        },
        Expr::FibDaddrType { dreg: REG_1 },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG32_0,
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: REG32_0 + 1,
        },
        Expr::Lookup {
            set: MAP_PORTS_ANY,
            sreg: REG32_0,
            dreg: REG32_0,
        },
        Expr::Dnat4 {
            addr_reg: REG32_0,
            port_reg: REG32_0 + 1,
        },
    ];
    let post_dispatch = vec![
        Expr::Meta {
            key: MetaKey::IifName,
            dreg: REG_1,
        },
        Expr::Lookup {
            set: MAP_POST_BY_IIF,
            sreg: REG_1,
            dreg: REG_VERDICT,
        },
    ];
    let nat = |name: &str, hook, priority| Op::AddChain {
        name: name.into(),
        base: Some(BaseChain { hook, priority }),
    };
    vec![
        Op::AddTable { exclusive: true },
        Op::AddMap {
            name: MAP_PORTS_IP,
            key: DataType {
                id: concat(concat(TYPE_IPV4_ADDR, TYPE_INET_PROTO), TYPE_INET_SERVICE),
                len: 12,
            },
            data: MapData::Data(TYPE_PORTS_DATA),
        },
        Op::AddMap {
            name: MAP_PORTS_ANY,
            key: DataType {
                id: concat(TYPE_INET_PROTO, TYPE_INET_SERVICE),
                len: 8,
            },
            data: MapData::Data(TYPE_PORTS_DATA),
        },
        Op::AddMap {
            name: MAP_POST_BY_IIF,
            key: DataType {
                id: TYPE_IFNAME,
                len: IFNAMSIZ as u32,
            },
            data: MapData::Verdict,
        },
        Op::AddChain {
            name: CHAIN_PORTS.into(),
            base: None,
        },
        nat("prerouting", Hook::Prerouting, -100),
        nat("output", Hook::Output, -100),
        nat("postrouting", Hook::Postrouting, 100),
        Op::AddRule {
            chain: CHAIN_PORTS.into(),
            exprs: ports_rule_ip,
        },
        Op::AddRule {
            chain: CHAIN_PORTS.into(),
            exprs: ports_rule_any,
        },
        Op::AddRule {
            chain: "prerouting".into(),
            exprs: vec![Expr::Jump(CHAIN_PORTS.into())],
        },
        Op::AddRule {
            chain: "output".into(),
            exprs: vec![Expr::Jump(CHAIN_PORTS.into())],
        },
        Op::AddRule {
            chain: "postrouting".into(),
            exprs: post_dispatch,
        },
    ]
}

/// RTN_LOCAL, the `fib daddr type local` result.
const RTN_LOCAL: u32 = 2;
const IFNAMSIZ: usize = 16;

/// What a new network adds: its chain, its masquerade rule(s), its dispatch element.
pub fn network_add(n: &NetworkRules) -> Vec<Op> {
    let chain = network_chain(&n.name);
    let mut ops = vec![Op::AddChain {
        name: chain.clone(),
        base: None,
    }];
    if n.masquerade {
        for subnet in &n.subnets {
            ops.push(Op::AddRule {
                chain: chain.clone(),
                exprs: masquerade_rule(&n.bridge, subnet),
            });
        }
    }
    ops.push(Op::AddElems {
        map: MAP_POST_BY_IIF,
        elems: vec![(ifname_key(&n.bridge), ElemData::Jump(chain))],
    });
    ops
}

/// What deleting a network removes (the reverse of [`network_add`]).
pub fn network_remove(n: &NetworkRules) -> Vec<Op> {
    let chain = network_chain(&n.name);
    vec![
        Op::DelElems {
            map: MAP_POST_BY_IIF,
            keys: vec![ifname_key(&n.bridge)],
        },
        Op::FlushChain {
            chain: chain.clone(),
        },
        Op::DelChain { chain },
    ]
}

/// `meta nfproto ipv4 oifname != BRIDGE ip saddr SUBNET masquerade` (or `ip6 saddr`).
fn masquerade_rule(bridge: &str, subnet: &IpNet) -> Vec<Expr> {
    let (proto, offset, mask, net) = match subnet {
        IpNet::V4(n) => (
            libc::NFPROTO_IPV4,
            12,
            n.netmask().octets().to_vec(),
            n.network().octets().to_vec(),
        ),
        IpNet::V6(n) => (
            libc::NFPROTO_IPV6,
            8,
            n.netmask().octets().to_vec(),
            n.network().octets().to_vec(),
        ),
    };
    vec![
        Expr::Meta {
            key: MetaKey::NfProto,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: vec![proto as u8],
        },
        Expr::Meta {
            key: MetaKey::OifName,
            dreg: REG_1,
        },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Neq,
            data: ifname_key(bridge),
        },
        Expr::Payload {
            base: PayloadBase::Network,
            offset,
            len: mask.len() as u32,
            dreg: REG_1,
        },
        Expr::Mask { reg: REG_1, mask },
        Expr::Cmp {
            sreg: REG_1,
            op: CmpOp::Eq,
            data: net,
        },
        Expr::Masquerade,
    ]
}

/// The elements an endpoint's published ports add.
pub fn endpoint_add(e: &EndpointRules) -> Vec<Op> {
    let (mut any, mut ip) = (Vec::new(), Vec::new());
    for p in &e.ports {
        let data = ElemData::Data(addr_port(e.ip, p.container_port));
        match p.host_ip {
            std::net::IpAddr::V4(h) if !h.is_unspecified() => ip.push((port_key_ip(h, p), data)),
            _ => any.push((port_key_any(p), data)),
        }
    }
    let mut ops = Vec::new();
    if !ip.is_empty() {
        ops.push(Op::AddElems {
            map: MAP_PORTS_IP,
            elems: ip,
        });
    }
    if !any.is_empty() {
        ops.push(Op::AddElems {
            map: MAP_PORTS_ANY,
            elems: any,
        });
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

/// Replaces the published-port elements with exactly those of `endpoints` (one transaction):
/// what `gc` uses to drop elements a dead attach left behind.
pub fn endpoints_sync(endpoints: &[EndpointRules]) -> Vec<Op> {
    let mut ops = vec![
        Op::FlushMap { map: MAP_PORTS_IP },
        Op::FlushMap { map: MAP_PORTS_ANY },
    ];
    ops.extend(endpoints.iter().flat_map(endpoint_add));
    ops
}

/// An interface name as nft compares it: 16 bytes, zero padded.
pub fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = vec![0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    k[..n].copy_from_slice(&name.as_bytes()[..n]);
    k
}

/// `meta l4proto . th dport`, each in a 4-byte register.
fn port_key_any(p: &PortMapping) -> Vec<u8> {
    let port = p.host_port.to_be_bytes();
    vec![p.proto.number(), 0, 0, 0, port[0], port[1], 0, 0]
}

/// `ip daddr . meta l4proto . th dport`.
fn port_key_ip(host: Ipv4Addr, p: &PortMapping) -> Vec<u8> {
    let mut k = host.octets().to_vec();
    k.extend(port_key_any(p));
    k
}

/// `ADDR . PORT` as DNAT reads it from two registers.
fn addr_port(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    let p = port.to_be_bytes();
    let mut d = ip.octets().to_vec();
    d.extend([p[0], p[1], 0, 0]);
    d
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Meta { key, dreg } => write!(f, "[ meta load {key:?} => reg {dreg} ]"),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                write!(
                    f,
                    "[ payload load {len}b @ {base:?} header + {offset} => reg {dreg} ]"
                )
            }
            Expr::Mask { reg, mask } => {
                write!(f, "[ bitwise reg {reg} = (reg {reg} & 0x{}) ]", hex(mask))
            }
            Expr::Cmp { sreg, op, data } => write!(f, "[ cmp {op:?} reg {sreg} 0x{} ]", hex(data)),
            Expr::Lookup { set, sreg, dreg } => {
                write!(f, "[ lookup reg {sreg} set {set} dreg {dreg} ]")
            }
            Expr::FibDaddrType { dreg } => write!(f, "[ fib daddr type => reg {dreg} ]"),
            Expr::Dnat4 { addr_reg, port_reg } => {
                write!(
                    f,
                    "[ nat dnat ip addr_min reg {addr_reg} proto_min reg {port_reg} ]"
                )
            }
            Expr::Masquerade => write!(f, "[ masq ]"),
            Expr::Jump(c) => write!(f, "[ immediate reg 0 jump -> {c} ]"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddTable { exclusive } => {
                write!(
                    f,
                    "add table inet {TABLE}{}",
                    if *exclusive { " (excl)" } else { "" }
                )
            }
            Op::AddChain { name, base: None } => write!(f, "add chain inet {TABLE} {name}"),
            Op::AddChain {
                name,
                base: Some(b),
            } => write!(
                f,
                "add chain inet {TABLE} {name} {{ type nat hook {:?} priority {} }}",
                b.hook, b.priority
            ),
            Op::AddMap { name, key, data } => {
                write!(
                    f,
                    "add map inet {TABLE} {name} {{ key 0x{:x}/{} : ",
                    key.id, key.len
                )?;
                match data {
                    MapData::Data(d) => write!(f, "0x{:x}/{} }}", d.id, d.len),
                    MapData::Verdict => write!(f, "verdict }}"),
                }
            }
            Op::AddElems { map, elems } => {
                write!(f, "add element inet {TABLE} {map} {{")?;
                for (k, v) in elems {
                    match v {
                        ElemData::Data(d) => write!(f, " {} : {}", hex(k), hex(d))?,
                        ElemData::Jump(c) => write!(f, " {} : jump {c}", hex(k))?,
                    }
                }
                write!(f, " }}")
            }
            Op::DelElems { map, keys } => {
                write!(f, "delete element inet {TABLE} {map} {{")?;
                for k in keys {
                    write!(f, " {}", hex(k))?;
                }
                write!(f, " }}")
            }
            Op::AddRule { chain, exprs } => {
                write!(f, "add rule inet {TABLE} {chain}")?;
                for e in exprs {
                    write!(f, " {e}")?;
                }
                Ok(())
            }
            Op::FlushMap { map } => write!(f, "flush map inet {TABLE} {map}"),
            Op::FlushChain { chain } => write!(f, "flush chain inet {TABLE} {chain}"),
            Op::DelChain { chain } => write!(f, "delete chain inet {TABLE} {chain}"),
        }
    }
}

/// Renders ops one per line (the golden-file form).
pub fn render(ops: &[Op]) -> String {
    ops.iter().map(|o| format!("{o}\n")).collect()
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
        let mut n = web();
        n.masquerade = false;
        assert_eq!(
            network_add(&n).len(),
            2,
            "no masquerade rule without masquerade"
        );
        let e = EndpointRules {
            ip: "10.88.0.2".parse().unwrap(),
            ports: vec![Port::tcp(80).to(8080)],
        };
        golden("endpoints_sync", &endpoints_sync(&[e]));
    }

    #[test]
    fn endpoint_ports_are_map_elements() {
        let e = EndpointRules {
            ip: "10.88.0.2".parse().unwrap(),
            ports: vec![
                Port::tcp(8080).to(80),
                Port::udp(5353).to(53),
                Port::tcp(8443).on("198.18.0.1".parse().unwrap()).to(443),
            ],
        };
        golden("endpoint_add", &endpoint_add(&e));
        golden("endpoint_remove", &endpoint_remove(&e));
        assert!(
            endpoint_add(&EndpointRules {
                ip: e.ip,
                ports: vec![]
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
            ports: (1..=500).map(|p| Port::tcp(10000 + p).to(p)).collect(),
        };
        assert_eq!(rules(&endpoint_add(&e)), 0);
        assert_eq!(
            rules(&network_add(&web())),
            2,
            "one masquerade rule per subnet"
        );
    }
}
