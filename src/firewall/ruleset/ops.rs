//! The vocabulary of a ruleset: nf_tables objects ([`Op`]) and expressions ([`Expr`]) as plain
//! data, and their text form (close to `nft --debug=netlink`) used by the golden files.
//!
//! An op addresses table `inet berth` unless wrapped in [`Op::Bridge`], which addresses table
//! `bridge berth` (ICC off and links, see [`super::icc`]).

use std::fmt;

use super::facts::TABLE;

// nft's datatype ids, and concatenations of them (6 bits per component).
pub(super) const TYPE_IPV4_ADDR: u32 = 7;
pub(super) const TYPE_IPV6_ADDR: u32 = 8;
pub(super) const TYPE_INET_PROTO: u32 = 12;
pub(super) const TYPE_INET_SERVICE: u32 = 13;
pub(super) const TYPE_IFNAME: u32 = 41;
pub(super) const fn concat(a: u32, b: u32) -> u32 {
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
    /// NF_INET_FORWARD.
    Forward,
    /// NF_INET_LOCAL_IN (the bridge family's `input`: frames for the bridge itself).
    Input,
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// `type nat`.
    Nat,
    /// `type filter` (policy accept: berth never owns the host's forward policy).
    Filter,
    /// `type route`: a packet whose mark a rule changed is routed again (and its IPsec
    /// policy looked up again), on the output hook.
    Route,
}

/// Base-chain attributes (only `nat` chains so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseChain {
    /// Chain type.
    pub kind: ChainKind,
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
    /// No data: a plain set, used for membership tests ([`Expr::Member`]).
    Nothing,
}

/// The value of one map element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElemData {
    /// Plain data bytes.
    Data(Vec<u8>),
    /// `jump CHAIN`.
    Jump(String),
    /// `drop`.
    Drop,
    /// No value: an element of a plain set.
    None,
}

/// Meta keys used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// `meta protocol` (the EtherType, 2 bytes big endian).
    Protocol,
    /// `iifgroup` (device group of the input interface).
    IifGroup,
    /// `oifgroup`.
    OifGroup,
    /// `meta nfproto`.
    NfProto,
    /// `meta l4proto`.
    L4Proto,
    /// `iifname`.
    IifName,
    /// `oifname`.
    OifName,
    /// `meta mark` (the packet mark, 4 bytes host order).
    Mark,
    /// `meta secpath` (1: the packet came through an IPsec SA).
    Secpath,
}

/// Payload bases used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    /// The link-layer header (Ethernet; a VLAN tag the NIC stripped is put back).
    Link,
    /// The network header (IP).
    Network,
    /// The transport header (TCP/UDP).
    Transport,
}

/// Conntrack keys used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtKey {
    /// `ct state` (bits: established 2, related 4, new 8).
    State,
    /// `ct status` (bit 0x20: the connection was DNATed).
    Status,
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
    /// Is the key in `sreg` an element of the plain set `set`? No: the rule ends.
    Member {
        /// Set name.
        set: &'static str,
        /// Source register.
        sreg: u32,
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
    /// IPv6 DNAT to the address in `addr_reg` (4 registers) and port in `port_reg`.
    Dnat6 {
        /// First address register.
        addr_reg: u32,
        /// Port register.
        port_reg: u32,
    },
    /// IPv4 SNAT to the address in `addr_reg`.
    Snat4 {
        /// Address register.
        addr_reg: u32,
    },
    /// Load constant data into a register (`immediate`).
    Load {
        /// Destination register.
        dreg: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Load a conntrack key into a register.
    Ct {
        /// Key.
        key: CtKey,
        /// Destination register.
        dreg: u32,
    },
    /// Set a meta key from a register (`meta mark set`).
    MetaSet {
        /// Key.
        key: MetaKey,
        /// Source register.
        sreg: u32,
    },
    /// `counter`: counts the packets and bytes that reach it.
    Counter,
    /// Masquerade.
    Masquerade,
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
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
    /// Add elements unless they exist (no NLM_F_EXCL): idempotent. Followed by a
    /// [`Op::DelElems`] of the same keys it makes a delete that succeeds when they are absent,
    /// on every kernel (`destroy element` needs 6.3).
    EnsureElems {
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
    /// Delete the table and everything in it.
    DelTable,
    /// The op addresses table `bridge berth` instead of `inet berth`.
    Bridge(Box<Op>),
    /// The op addresses table `bridge berth-spoof` (anti-spoofing, see [`super::spoof`]).
    Guard(Box<Op>),
}

impl Op {
    /// Whether it deletes something (elements, rules, a chain or the table).
    pub fn deletes(&self) -> bool {
        match self {
            Op::DelElems { .. }
            | Op::FlushMap { .. }
            | Op::FlushChain { .. }
            | Op::DelChain { .. }
            | Op::DelTable => true,
            Op::Bridge(op) | Op::Guard(op) => op.deletes(),
            _ => false,
        }
    }

    /// `op`, addressed to table `bridge berth`.
    pub fn bridge(op: Op) -> Op {
        Op::Bridge(Box::new(op))
    }

    /// `op`, addressed to table `bridge berth-spoof`.
    pub fn guard(op: Op) -> Op {
        Op::Guard(Box::new(op))
    }

    /// The family of the table the op addresses, and the op itself without the wrapper.
    pub fn in_family(&self) -> (Family, &Op) {
        match self {
            Op::Bridge(op) => (Family::Bridge, op.in_family().1),
            Op::Guard(op) => (Family::Guard, op.in_family().1),
            op => (Family::Inet, op),
        }
    }

    /// `op` addressed to the table of `family`.
    pub fn in_table(family: Family, op: Op) -> Op {
        match family {
            Family::Inet => op,
            Family::Bridge => Op::bridge(op),
            Family::Guard => Op::guard(op),
        }
    }
}

/// One of berth's three tables: `inet berth`, `bridge berth` and `bridge berth-spoof`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `inet berth`: NAT, published ports, routed filtering.
    Inet,
    /// `bridge berth`: frames bridged between the ports of one bridge (ICC off, links).
    Bridge,
    /// `bridge berth-spoof`: what ports of anti-spoofing networks may send (a table of its
    /// own, made only while such a network exists: `nft` 1.0.6 cannot print its ND-target
    /// lookups in a form it reads back, and other networks keep an `nft list ruleset > f;
    /// nft -f f` round trip).
    Guard,
}

impl Family {
    /// The family as nft names it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge | Family::Guard => "bridge",
        }
    }

    /// The name of berth's table of this kind.
    pub fn table(self) -> &'static str {
        match self {
            Family::Inet | Family::Bridge => TABLE,
            Family::Guard => super::spoof::TABLE_GUARD,
        }
    }
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
            Expr::Member { set, sreg } => write!(f, "[ lookup reg {sreg} set {set} ]"),
            Expr::FibDaddrType { dreg } => write!(f, "[ fib daddr type => reg {dreg} ]"),
            Expr::Dnat4 { addr_reg, port_reg } => {
                write!(
                    f,
                    "[ nat dnat ip addr_min reg {addr_reg} proto_min reg {port_reg} ]"
                )
            }
            Expr::Dnat6 { addr_reg, port_reg } => {
                write!(
                    f,
                    "[ nat dnat ip6 addr_min reg {addr_reg} proto_min reg {port_reg} ]"
                )
            }
            Expr::MetaSet { key, sreg } => write!(f, "[ meta set {key:?} with reg {sreg} ]"),
            Expr::Counter => write!(f, "[ counter ]"),
            Expr::Masquerade => write!(f, "[ masq ]"),
            Expr::Snat4 { addr_reg } => write!(f, "[ nat snat ip addr_min reg {addr_reg} ]"),
            Expr::Load { dreg, data } => write!(f, "[ immediate reg {dreg} 0x{} ]", hex(data)),
            Expr::Ct { key, dreg } => write!(f, "[ ct load {key:?} => reg {dreg} ]"),
            Expr::Accept => write!(f, "[ immediate reg 0 accept ]"),
            Expr::Drop => write!(f, "[ immediate reg 0 drop ]"),
            Expr::Jump(c) => write!(f, "[ immediate reg 0 jump -> {c} ]"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (family, op) = self.in_family();
        op.fmt_in(f, family.name(), family.table())
    }
}

impl Op {
    /// The text form of an unwrapped op addressing table `FAMILY TABLE`.
    fn fmt_in(&self, f: &mut fmt::Formatter<'_>, family: &str, table: &str) -> fmt::Result {
        match self {
            Op::AddTable { exclusive } => {
                write!(
                    f,
                    "add table {family} {table}{}",
                    if *exclusive { " (excl)" } else { "" }
                )
            }
            Op::AddChain { name, base: None } => write!(f, "add chain {family} {table} {name}"),
            Op::AddChain {
                name,
                base: Some(b),
            } => write!(
                f,
                "add chain {family} {table} {name} {{ type {:?} hook {:?} priority {} }}",
                b.kind, b.hook, b.priority
            ),
            Op::AddMap { name, key, data } => {
                let kind = if *data == MapData::Nothing {
                    "set"
                } else {
                    "map"
                };
                write!(
                    f,
                    "add {kind} {family} {table} {name} {{ key 0x{:x}/{}",
                    key.id, key.len
                )?;
                match data {
                    MapData::Data(d) => write!(f, " : 0x{:x}/{} }}", d.id, d.len),
                    MapData::Verdict => write!(f, " : verdict }}"),
                    MapData::Nothing => write!(f, " }}"),
                }
            }
            Op::AddElems { map, elems } | Op::EnsureElems { map, elems } => {
                let verb = if matches!(self, Op::AddElems { .. }) {
                    "add"
                } else {
                    "ensure"
                };
                write!(f, "{verb} element {family} {table} {map} {{")?;
                for (k, v) in elems {
                    match v {
                        ElemData::Data(d) => write!(f, " {} : {}", hex(k), hex(d))?,
                        ElemData::Jump(c) => write!(f, " {} : jump {c}", hex(k))?,
                        ElemData::Drop => write!(f, " {} : drop", hex(k))?,
                        ElemData::None => write!(f, " {}", hex(k))?,
                    }
                }
                write!(f, " }}")
            }
            Op::DelElems { map, keys } => {
                write!(f, "delete element {family} {table} {map} {{")?;
                for k in keys {
                    write!(f, " {}", hex(k))?;
                }
                write!(f, " }}")
            }
            Op::AddRule { chain, exprs } => {
                write!(f, "add rule {family} {table} {chain}")?;
                for e in exprs {
                    write!(f, " {e}")?;
                }
                Ok(())
            }
            Op::FlushMap { map } => write!(f, "flush map {family} {table} {map}"),
            Op::FlushChain { chain } => write!(f, "flush chain {family} {table} {chain}"),
            Op::DelChain { chain } => write!(f, "delete chain {family} {table} {chain}"),
            Op::DelTable => write!(f, "delete table {family} {table}"),
            Op::Bridge(op) | Op::Guard(op) => op.fmt_in(f, family, table),
        }
    }
}

/// Renders ops one per line (the golden-file form).
pub fn render(ops: &[Op]) -> String {
    ops.iter().map(|o| format!("{o}\n")).collect()
}
