//! Test tooling: [`FakeNet`], a recording in-memory stand-in for the kernels of several network
//! namespaces, so that code above [`Netlink`] runs without root.
//!
//! Each namespace (named by a label: "host", "c1" …, or keyed by a real [`Netns`] through
//! [`KernelOpener`]) holds a link table (indices, names, master, group, up, MAC, alias, a VXLAN or
//! gretap device's attributes), its addresses (each with its prefix route), routes, sysctls, permanent
//! neighbour entries and VXLAN forwarding databases (both removed with their link). Every call, from any namespace,
//! is appended to one shared log ([`FakeNet::log`]) as a [`Call`] carrying the request, with the
//! label of the namespace it ran in. [`FakeNet::fail_nth`] makes the n-th call matching a
//! predicate fail.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use berth::netlink::fake::{Call, FakeNet};
//! let net = FakeNet::new();
//! let host = net.handle("host");
//! net.fail_nth(1, |_, c| matches!(c, Call::AddLink(_)), libc::EEXIST);
//! assert!(host.link().dummy("d0").add().await.is_err());
//! host.link().dummy("d0").add().await.unwrap();
//! assert_eq!(net.log().iter().filter(|r| r.failed).count(), 1);
//! # });
//! ```

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;

use super::Netlink;
use super::kernel::*;
use crate::error::{Error, Result};
use crate::netns::Netns;

/// One request made of a fake kernel.
#[derive(Debug, Clone)]
pub enum Call {
    /// [`Kernel::add_link`].
    AddLink(LinkRequest),
    /// [`Kernel::set_link`].
    SetLink(LinkChange),
    /// [`Kernel::delete_link`].
    DeleteLink(String),
    /// [`Kernel::link`].
    GetLink(LinkRef),
    /// [`Kernel::links`].
    Links,
    /// [`Kernel::wait_oper_up`].
    WaitOperUp(u32),
    /// [`Kernel::add_address`].
    AddAddress(AddressRequest),
    /// [`Kernel::del_address`].
    DelAddress(AddressRequest),
    /// [`Kernel::addresses`].
    Addresses(Option<u32>),
    /// [`Kernel::route`].
    Route(RouteOp, RouteRequest),
    /// [`Kernel::routes`].
    Routes,
    /// [`Kernel::del_neighbour`].
    DelNeighbour(NeighbourRequest),
    /// [`Kernel::add_neighbour`].
    AddNeighbour(NeighbourEntry),
    /// [`Kernel::neighbours`].
    Neighbours(u32),
    /// [`Kernel::add_fdb`].
    AddFdb(FdbEntry),
    /// [`Kernel::del_fdb`].
    DelFdb(FdbEntry),
    /// [`Kernel::fdb`].
    Fdb(u32),
    /// [`Kernel::probe_kind`].
    Probe(ProbeKind),
    /// [`Kernel::rule`].
    Rule(super::rules::RuleOp, crate::rule::RuleSpec),
    /// [`Kernel::rules`].
    Rules,
    /// A traffic-control request ([`Kernel::add_ifb`], [`Kernel::replace_qdisc`] …).
    Tc(super::tc::TcCall),
    /// [`Kernel::write_sysctl`].
    WriteSysctl {
        /// Key (slashes).
        key: String,
        /// Value.
        value: String,
    },
    /// [`Kernel::vlan_filtering`].
    VlanFilteringOf(u32),
    /// [`Kernel::set_vlan_filtering`]: (bridge index, on).
    SetVlanFiltering(u32, bool),
    /// [`Kernel::port_vlan`].
    PortVlan(super::VlanOp, super::PortVlanRequest),
    /// [`Kernel::vlan_tables`].
    VlanTables,
    /// [`Kernel::set_master`]: (index, master).
    SetMaster(u32, Option<u32>),
}

impl Call {
    /// Whether the call only reads (a lookup or a listing).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Call::GetLink(_)
                | Call::Links
                | Call::WaitOperUp(_)
                | Call::Addresses(_)
                | Call::Routes
                | Call::Neighbours(_)
                | Call::Fdb(_)
                | Call::Rules
                | Call::VlanFilteringOf(_)
                | Call::VlanTables
        ) || matches!(self, Call::Tc(t) if t.is_read())
    }
}

/// One entry of the log.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Label of the namespace the call ran in.
    pub ns: String,
    /// The call.
    pub call: Call,
    /// Whether it failed by injection ([`FakeNet::fail_nth`]).
    pub failed: bool,
}

/// A link of a fake namespace.
#[derive(Debug, Clone)]
pub struct FakeLink {
    /// What `ip link show` says.
    pub info: LinkInfo,
    /// Hairpin mode, when a bridge port.
    pub hairpin: Hairpin,
    /// Port isolation, when a bridge port.
    pub isolation: PortIsolation,
    /// Learning from link-local frames, when a bridge.
    pub linklocal_learn: LinkLocalLearn,
    /// The other end of a veth: (namespace label, ifindex).
    pub peer: Option<(String, u32)>,
    /// What a VXLAN device was created with (its `mtu` as asked, before the clamp).
    pub vxlan: Option<VxlanRequest>,
    /// What a gretap device was created with.
    pub gretap: Option<GretapRequest>,
    /// Neighbour suppression, when a bridge port.
    pub neigh_suppress: NeighSuppress,
}

type Pred = Box<dyn Fn(&str, &Call) -> bool + Send + Sync>;
type MakeErr = Box<dyn Fn(&Call) -> Error + Send + Sync>;

struct Rule {
    pred: Pred,
    /// Matches still to let through before the failing one.
    skip: usize,
    make: MakeErr,
}

#[derive(Debug, Default)]
struct Ns {
    label: String,
    netns: Option<Netns>,
    links: Vec<FakeLink>,
    addrs: Vec<(u32, IpAddr, u8)>,
    routes: Vec<RouteInfo>,
    sysctls: BTreeMap<String, String>,
    neighbours: Vec<NeighbourEntry>,
    fdb: Vec<FdbEntry>,
    /// Routing rules (none of the kernel's own): not tied to any link.
    rules: Vec<super::rules::RuleInfo>,
    /// Qdiscs (root `tbf`s and `ingress` ones), removed with their link.
    qdiscs: Vec<super::tc::QdiscRequest>,
    /// Redirect filters of ingress qdiscs, removed with the qdisc or their link.
    filters: Vec<super::tc::RedirectRequest>,
    /// Bridge VLANs: each bridge's filtering, and the VLAN tables changed from the default
    /// (a port absent here has the default: VLAN 1, PVID, untagged).
    vlan_filtering: BTreeMap<u32, bool>,
    vlan_tables: BTreeMap<u32, Vec<super::PortVlan>>,
}

#[derive(Default)]
struct World {
    log: Vec<Recorded>,
    rules: Vec<Rule>,
    nss: Vec<Ns>,
    next_index: u32,
    /// The kernel lacks bridge VLAN filtering ([`FakeNet::without_vlan_filtering`]).
    no_vlan_filtering: bool,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("log", &self.log.len())
            .field("rules", &self.rules.len())
            .field("nss", &self.nss)
            .finish()
    }
}

fn errno(op: &'static str, name: impl Into<String>, e: i32) -> Error {
    Error::netlink(op, name, io::Error::from_raw_os_error(e))
}

impl World {
    fn ns_index(&mut self, label: &str) -> usize {
        if let Some(i) = self.nss.iter().position(|n| n.label == label) {
            return i;
        }
        self.nss.push(Ns {
            label: label.to_string(),
            ..Ns::default()
        });
        let i = self.nss.len() - 1;
        self.nss[i].links.push(FakeLink {
            info: LinkInfo {
                index: 1,
                name: "lo".into(),
                mtu: Some(65536),
                controller: None,
                up: false,
                oper_up: false,
                mac: Some(vec![0; 6]),
                alias: None,
                is_bridge: false,
                group: 0,
                is_loopback: true,
                is_ether: false,
            },
            hairpin: Hairpin::Off,
            isolation: PortIsolation::Open,
            linklocal_learn: LinkLocalLearn::On,
            peer: None,
            vxlan: None,
            gretap: None,
            neigh_suppress: NeighSuppress::Off,
        });
        i
    }

    fn ns_of(&mut self, netns: &Netns) -> usize {
        if let Some(i) = self
            .nss
            .iter()
            .position(|n| n.netns.as_ref().is_some_and(|m| m.same_as(netns)))
        {
            return i;
        }
        let label = format!("netns{}", self.nss.len());
        let i = self.ns_index(&label);
        self.nss[i].netns = Some(netns.clone());
        i
    }

    fn new_link(&mut self, name: &str) -> FakeLink {
        self.next_index = self.next_index.max(1) + 1;
        FakeLink {
            info: LinkInfo {
                index: self.next_index,
                name: name.to_string(),
                mtu: Some(1500),
                controller: None,
                up: false,
                oper_up: false,
                mac: Some(crate::mac::MacAddr::random().octets().to_vec()),
                alias: None,
                is_bridge: false,
                group: 0,
                is_loopback: false,
                is_ether: true,
            },
            hairpin: Hairpin::Off,
            isolation: PortIsolation::Open,
            linklocal_learn: LinkLocalLearn::On,
            peer: None,
            vxlan: None,
            gretap: None,
            neigh_suppress: NeighSuppress::Off,
        }
    }

    /// Records `call` in namespace `ns`; returns the injected failure, if any.
    fn record(&mut self, ns: usize, call: &Call) -> Option<Error> {
        let label = self.nss[ns].label.clone();
        let mut failure = None;
        let mut spent = None;
        for (i, r) in self.rules.iter_mut().enumerate() {
            if (r.pred)(&label, call) {
                if r.skip == 0 {
                    failure = Some((r.make)(call));
                    spent = Some(i);
                    break;
                }
                r.skip -= 1;
            }
        }
        if let Some(i) = spent {
            self.rules.remove(i);
        }
        self.log.push(Recorded {
            ns: label,
            call: call.clone(),
            failed: failure.is_some(),
        });
        failure
    }
}

impl Ns {
    fn by_name(&self, name: &str) -> Option<&FakeLink> {
        self.links.iter().find(|l| l.info.name == name)
    }
    fn by_index_mut(&mut self, index: u32) -> Option<&mut FakeLink> {
        self.links.iter_mut().find(|l| l.info.index == index)
    }
    fn has_index(&self, index: u32) -> bool {
        self.links.iter().any(|l| l.info.index == index)
    }
    fn insert(&mut self, mut l: FakeLink, up: bool) -> LinkInfo {
        l.info.up = up;
        l.info.oper_up = up;
        self.links.push(l.clone());
        l.info
    }
}

/// A world of fake namespaces sharing one call log and one set of failure rules. Cheap to
/// clone (all clones are the same world).
#[derive(Debug, Clone, Default)]
pub struct FakeNet {
    world: Arc<Mutex<World>>,
}

/// The [`Kernel`] of one namespace of a [`FakeNet`].
#[derive(Debug, Clone)]
pub struct FakeKernel {
    world: Arc<Mutex<World>>,
    label: String,
}

impl FakeNet {
    /// An empty world.
    pub fn new() -> Self {
        FakeNet::default()
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kernel of namespace `label` (made, with only `lo`, on first use).
    pub fn kernel(&self, label: &str) -> FakeKernel {
        self.lock().ns_index(label);
        FakeKernel {
            world: self.world.clone(),
            label: label.to_string(),
        }
    }

    /// A handle on namespace `label`.
    pub fn handle(&self, label: &str) -> Netlink {
        Netlink::from_kernel(Arc::new(self.kernel(label)))
    }

    /// Makes namespace `label` the one [`KernelOpener::open`] answers for `netns` (and veth or
    /// macvlan peers born "inside `netns`" land in).
    pub fn bind(&self, label: &str, netns: &Netns) {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].netns = Some(netns.clone());
    }

    /// Adds an existing Ethernet link `name`, up, to namespace `label` (a parent for macvlan,
    /// an uplink …); returns its index.
    pub fn add_ether(&self, label: &str, name: &str) -> u32 {
        let mut w = self.lock();
        let i = w.ns_index(label);
        let l = w.new_link(name);
        w.nss[i].insert(l, true).index
    }

    /// Every call so far, in order, from every namespace.
    pub fn log(&self) -> Vec<Recorded> {
        self.lock().log.clone()
    }

    /// The calls made in namespace `label` that change something (no lookups), in order.
    pub fn changes_in(&self, label: &str) -> Vec<Call> {
        self.lock()
            .log
            .iter()
            .filter(|r| r.ns == label && !r.call.is_read())
            .map(|r| r.call.clone())
            .collect()
    }

    /// Empties the log.
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    /// Makes the `n`-th (from 1) call from now on for which `pred(namespace label, call)` holds
    /// fail with `errno` (as [`Error::Netlink`] naming the fake operation). Once.
    pub fn fail_nth<P>(&self, n: usize, pred: P, errno_value: i32)
    where
        P: Fn(&str, &Call) -> bool + Send + Sync + 'static,
    {
        self.fail_nth_with(n, pred, move |c| {
            errno("fake", format!("{c:?}"), errno_value)
        });
    }

    /// Like [`FakeNet::fail_nth`], with the error `make(call)`.
    pub fn fail_nth_with<P, E>(&self, n: usize, pred: P, make: E)
    where
        P: Fn(&str, &Call) -> bool + Send + Sync + 'static,
        E: Fn(&Call) -> Error + Send + Sync + 'static,
    {
        self.lock().rules.push(Rule {
            pred: Box::new(pred),
            skip: n.saturating_sub(1),
            make: Box::new(make),
        });
    }

    /// The links of namespace `label`.
    pub fn links(&self, label: &str) -> Vec<FakeLink> {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].links.clone()
    }

    /// Link `name` of namespace `label`.
    pub fn link(&self, label: &str, name: &str) -> Option<FakeLink> {
        self.links(label).into_iter().find(|l| l.info.name == name)
    }

    /// The addresses `(ifindex, address, prefix)` of namespace `label`.
    pub fn addresses(&self, label: &str) -> Vec<(u32, IpAddr, u8)> {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].addrs.clone()
    }

    /// The routing rules of namespace `label` (berth's: the fake has none of the kernel's).
    pub fn rules(&self, label: &str) -> Vec<super::rules::RuleInfo> {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].rules.clone()
    }

    /// The routes of namespace `label`.
    pub fn routes(&self, label: &str) -> Vec<RouteInfo> {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].routes.clone()
    }

    /// The permanent neighbour entries of namespace `label`, every link's.
    pub fn neighbours(&self, label: &str) -> Vec<NeighbourEntry> {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].neighbours.clone()
    }

    /// The forwarding-database entries of namespace `label`, every VXLAN device's.
    pub fn fdb(&self, label: &str) -> Vec<FdbEntry> {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].fdb.clone()
    }

    /// Sysctl `key` of namespace `label`, if written.
    pub fn sysctl(&self, label: &str, key: &str) -> Option<String> {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i].sysctls.get(key).cloned()
    }
}

#[async_trait]
impl KernelOpener for FakeNet {
    /// The namespace bound to `ns` ([`FakeNet::bind`]), else a new one labelled `netnsN`.
    async fn open(&self, ns: &Netns) -> Result<Netlink> {
        let label = {
            let mut w = self.lock();
            let i = w.ns_of(ns);
            w.nss[i].label.clone()
        };
        Ok(self.handle(&label))
    }
}

impl FakeKernel {
    /// Label of its namespace.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Records `call`, then runs `f` on the world and this namespace's index unless a failure
    /// was injected.
    fn run<T>(&self, call: Call, f: impl FnOnce(&mut World, usize) -> Result<T>) -> Result<T> {
        let mut w = self.world.lock().unwrap_or_else(|e| e.into_inner());
        let ns = w.ns_index(&self.label);
        if let Some(e) = w.record(ns, &call) {
            return Err(e);
        }
        f(&mut w, ns)
    }
}

fn prefix_route(addr: IpAddr, prefix: u8, dev: u32) -> Option<RouteInfo> {
    let net = IpNet::new(addr, prefix).ok()?.trunc();
    Some(RouteInfo {
        family: Family::of(addr),
        dst: Some(net.addr()),
        prefix_len: prefix,
        has_gateway: false,
        gateway: None,
        oif: Some(dev),
        table: RT_TABLE_MAIN,
    })
}

fn route_info(req: &RouteRequest) -> RouteInfo {
    let (family, dst, prefix_len, gateway, oif) = match req {
        RouteRequest::DefaultVia { gateway, dev } => {
            (Family::of(*gateway), None, 0, Some(*gateway), *dev)
        }
        RouteRequest::DefaultDev { family, dev } => (*family, None, 0, None, Some(*dev)),
        RouteRequest::Host { addr, dev } => (
            Family::of(*addr),
            Some(*addr),
            if addr.is_ipv6() { 128 } else { 32 },
            None,
            Some(*dev),
        ),
        RouteRequest::Spec { spec, dev } => (
            Family::of(spec.dst.addr()),
            Some(spec.dst.addr()),
            spec.dst.prefix_len(),
            spec.via,
            Some(*dev),
        ),
    };
    let table = match req {
        RouteRequest::Spec { spec, .. } => spec.table.unwrap_or(RT_TABLE_MAIN),
        _ => RT_TABLE_MAIN,
    };
    RouteInfo {
        family,
        dst,
        prefix_len,
        has_gateway: gateway.is_some(),
        gateway,
        oif,
        table,
    }
}

fn same_dst(a: &RouteInfo, b: &RouteInfo) -> bool {
    a.family == b.family && a.dst == b.dst && a.prefix_len == b.prefix_len && a.table == b.table
}

/// As the kernel: the underlay and the master must exist, one device per VNI, port and
/// family, the MTU clamped to the underlay's minus the encapsulation, and a bridge port gets
/// `addr_gen_mode` none before it comes up.
fn add_vxlan(n: &mut Ns, mut l: FakeLink, v: VxlanRequest) -> Result<LinkInfo> {
    let mut mtu = v.mtu;
    if let Some(dev) = v.underlay {
        let Some(under) = n.by_index_mut(dev) else {
            return Err(errno("add link", &v.name, libc::ENODEV));
        };
        let overhead = if v.local.is_ipv6() { 70 } else { 50 };
        if let Some(max) = under.info.mtu.map(|m| m.saturating_sub(overhead).max(68)) {
            mtu = mtu.min(max);
        }
    }
    if let Some(m) = v.master
        && !n.has_index(m)
    {
        return Err(errno("add link", &v.name, libc::ENODEV));
    }
    let taken = n
        .links
        .iter()
        .filter_map(|o| o.vxlan.as_ref())
        .any(|o| o.vni == v.vni && o.port == v.port && o.local.is_ipv6() == v.local.is_ipv6());
    if taken {
        return Err(errno("add link", &v.name, libc::EEXIST));
    }
    l.info.mac = Some(v.mac.octets().to_vec());
    l.info.mtu = Some(mtu);
    l.info.controller = v.master;
    l.info.group = v.group.unwrap_or(0);
    if v.master.is_some() {
        n.sysctls.insert(
            format!("net/ipv6/conf/{}/addr_gen_mode", v.name),
            "1".into(),
        );
    }
    l.vxlan = Some(v);
    Ok(n.insert(l, true))
}

/// As the kernel: the underlay and the master must exist, one tunnel per local, remote and
/// key; a bridge port gets `disable_ipv6` and its port flags before it comes up.
fn add_gretap(n: &mut Ns, mut l: FakeLink, g: GretapRequest) -> Result<LinkInfo> {
    if g.underlay.is_some_and(|dev| !n.has_index(dev)) {
        return Err(errno("add link", &g.name, libc::ENODEV));
    }
    if g.master.is_some_and(|m| !n.has_index(m)) {
        return Err(errno("add link", &g.name, libc::ENODEV));
    }
    let taken = n
        .links
        .iter()
        .filter_map(|o| o.gretap.as_ref())
        .any(|o| o.local == g.local && o.remote == g.remote && o.key == g.key);
    if taken {
        return Err(errno("add link", &g.name, libc::EEXIST));
    }
    l.info.mtu = Some(g.mtu);
    l.info.controller = g.master;
    l.info.group = g.group.unwrap_or(0);
    if g.master.is_some() {
        n.sysctls
            .insert(format!("net/ipv6/conf/{}/disable_ipv6", g.name), "1".into());
        l.isolation = g.isolation;
        l.neigh_suppress = g.neigh_suppress;
    }
    l.gretap = Some(g);
    Ok(n.insert(l, true))
}

fn remove_link(w: &mut World, ns: usize, index: u32) {
    let n = &mut w.nss[ns];
    let Some(pos) = n.links.iter().position(|l| l.info.index == index) else {
        return;
    };
    let gone = n.links.remove(pos);
    n.addrs.retain(|a| a.0 != index);
    n.routes.retain(|r| r.oif != Some(index));
    n.neighbours.retain(|e| e.index != index);
    n.fdb.retain(|e| e.index != index);
    n.qdiscs.retain(|q| q.index != index);
    n.filters.retain(|f| f.index != index);
    n.vlan_tables.remove(&index);
    n.vlan_filtering.remove(&index);
    for l in &mut n.links {
        if l.info.controller == Some(index) {
            l.info.controller = None;
        }
    }
    if let Some((label, peer)) = gone.peer
        && let Some(p) = w.nss.iter().position(|n| n.label == label)
    {
        remove_link(w, p, peer);
    }
}

#[async_trait]
impl Kernel for FakeKernel {
    async fn add_link(&self, req: LinkRequest) -> Result<Option<LinkInfo>> {
        self.run(Call::AddLink(req.clone()), |w, ns| {
            let name = req.name().to_string();
            let exists = |w: &World, n: usize, name: &str| w.nss[n].by_name(name).is_some();
            let here_target = match &req {
                LinkRequest::MacvlanInto { netns, .. } | LinkRequest::IpvlanInto { netns, .. } => {
                    w.ns_of(netns)
                }
                _ => ns,
            };
            if exists(w, here_target, &name) {
                return Err(errno("add link", name, libc::EEXIST));
            }
            let mut l = w.new_link(&name);
            match req {
                LinkRequest::Bridge { mac, mtu, .. } => {
                    l.info.mac = Some(mac.octets().to_vec());
                    l.info.mtu = Some(mtu);
                    l.info.is_bridge = true;
                    l.info.group = crate::link_marks::BRIDGE;
                    Ok(Some(w.nss[ns].insert(l, true)))
                }
                LinkRequest::Veth(v) => {
                    let p = w.ns_of(&v.peer_netns);
                    if exists(w, p, &v.peer_name) {
                        return Err(errno("add link", name, libc::EEXIST));
                    }
                    if let Some(m) = v.master
                        && !w.nss[ns].has_index(m)
                    {
                        return Err(errno("add link", name, libc::ENODEV));
                    }
                    let mut peer = w.new_link(&v.peer_name);
                    if let Some(mac) = v.peer_mac {
                        peer.info.mac = Some(mac.octets().to_vec());
                    }
                    l.info.mtu = v.mtu.or(l.info.mtu);
                    peer.info.mtu = l.info.mtu;
                    l.info.controller = v.master;
                    l.info.group = v.group.unwrap_or(0);
                    peer.peer = Some((w.nss[ns].label.clone(), l.info.index));
                    l.peer = Some((w.nss[p].label.clone(), peer.info.index));
                    if v.master.is_some() {
                        w.nss[ns]
                            .sysctls
                            .insert(format!("net/ipv6/conf/{name}/disable_ipv6"), "1".into());
                    }
                    w.nss[p].insert(peer, false);
                    Ok(Some(w.nss[ns].insert(l, true)))
                }
                LinkRequest::MacvlanInto { parent, mac, .. } => {
                    if !w.nss[ns].has_index(parent) {
                        return Err(errno("add link", name, libc::ENODEV));
                    }
                    l.info.mac = Some(mac.octets().to_vec());
                    w.nss[here_target].insert(l, false);
                    Ok(None)
                }
                LinkRequest::IpvlanInto { parent, .. } => {
                    let Some(pl) = w.nss[ns].by_index_mut(parent) else {
                        return Err(errno("add link", name, libc::ENODEV));
                    };
                    l.info.mac = pl.info.mac.clone();
                    w.nss[here_target].insert(l, false);
                    Ok(None)
                }
                LinkRequest::MacvlanShim { parent, alias, .. }
                | LinkRequest::Vlan {
                    base: parent,
                    alias,
                    ..
                } => {
                    if !w.nss[ns].has_index(parent) {
                        return Err(errno("add link", name, libc::ENODEV));
                    }
                    l.info.group = crate::link_marks::LOWER;
                    l.info.alias = Some(alias);
                    Ok(Some(w.nss[ns].insert(l, true)))
                }
                LinkRequest::Dummy { alias, .. } => {
                    l.info.group = crate::link_marks::LOWER;
                    l.info.alias = Some(alias);
                    Ok(Some(w.nss[ns].insert(l, true)))
                }
                LinkRequest::Vxlan(v) => add_vxlan(&mut w.nss[ns], l, v).map(Some),
                LinkRequest::Gretap(g) => add_gretap(&mut w.nss[ns], l, g).map(Some),
            }
        })
    }

    async fn set_link(&self, change: LinkChange) -> Result<()> {
        self.run(Call::SetLink(change.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            match change {
                LinkChange::Set(s) => {
                    let Some(l) = n.by_index_mut(s.index) else {
                        return Err(errno("set link", s.name, libc::ENODEV));
                    };
                    if let Some(st) = s.state {
                        l.info.up = st == LinkState::Up;
                        l.info.oper_up = l.info.up;
                    }
                    if let Some(g) = s.group {
                        l.info.group = g;
                    }
                    if let Some(a) = s.alias {
                        l.info.alias = Some(a);
                    }
                    if let Some(mac) = s.mac {
                        l.info.mac = Some(mac.octets().to_vec());
                    }
                    let name = l.info.name.clone();
                    if let Some(rp) = s.rp_filter {
                        let key = format!("net/ipv4/conf/{name}/rp_filter");
                        n.sysctls.insert(key, rp.value().to_string());
                    }
                    if s.arp_notify {
                        n.sysctls
                            .insert(format!("net/ipv4/conf/{name}/arp_notify"), "1".into());
                    }
                    Ok(())
                }
                LinkChange::BridgePort {
                    index,
                    name,
                    hairpin,
                    isolation,
                } => {
                    let Some(l) = n.by_index_mut(index) else {
                        return Err(errno("set bridge port flags", name, libc::ENODEV));
                    };
                    l.hairpin = hairpin;
                    l.isolation = isolation;
                    Ok(())
                }
                LinkChange::Bridge {
                    name,
                    linklocal_learn,
                } => {
                    let Some(l) = n.links.iter_mut().find(|l| l.info.name == name) else {
                        return Err(errno("set bridge no_linklocal_learn", name, libc::ENODEV));
                    };
                    l.linklocal_learn = linklocal_learn;
                    Ok(())
                }
            }
        })
    }

    async fn delete_link(&self, name: &str) -> Result<bool> {
        self.run(Call::DeleteLink(name.to_string()), |w, ns| {
            let Some(index) = w.nss[ns].by_name(name).map(|l| l.info.index) else {
                return Ok(false);
            };
            remove_link(w, ns, index);
            Ok(true)
        })
    }

    async fn link(&self, by: LinkRef) -> Result<Option<LinkInfo>> {
        self.run(Call::GetLink(by.clone()), |w, ns| {
            Ok(w.nss[ns]
                .links
                .iter()
                .find(|l| match &by {
                    LinkRef::Name(n) => &l.info.name == n,
                    LinkRef::Index(i) => l.info.index == *i,
                })
                .map(|l| l.info.clone()))
        })
    }

    async fn links(&self) -> Result<Vec<LinkInfo>> {
        self.run(Call::Links, |w, ns| {
            Ok(w.nss[ns].links.iter().map(|l| l.info.clone()).collect())
        })
    }

    async fn wait_oper_up(&self, index: u32, _limit: Duration) -> Result<bool> {
        self.run(Call::WaitOperUp(index), |w, ns| {
            Ok(w.nss[ns]
                .links
                .iter()
                .any(|l| l.info.index == index && l.info.oper_up))
        })
    }

    async fn add_address(&self, r: AddressRequest) -> Result<()> {
        self.run(Call::AddAddress(r.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            let what = format!("{}/{} on {}", r.addr, r.prefix, r.name);
            if !n.has_index(r.index) {
                return Err(errno("add address", what, libc::ENODEV));
            }
            if n.addrs.iter().any(|a| a.0 == r.index && a.1 == r.addr) {
                return Err(errno("add address", what, libc::EEXIST));
            }
            n.addrs.push((r.index, r.addr, r.prefix));
            if let Some(route) = prefix_route(r.addr, r.prefix, r.index) {
                n.routes.push(route);
            }
            Ok(())
        })
    }

    async fn del_address(&self, r: AddressRequest) -> Result<()> {
        self.run(Call::DelAddress(r.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            let key = (r.index, r.addr, r.prefix);
            if let Some(pos) = n.addrs.iter().position(|a| *a == key) {
                n.addrs.remove(pos);
                if let Some(route) = prefix_route(r.addr, r.prefix, r.index)
                    && let Some(p) = n.routes.iter().position(|x| *x == route)
                {
                    n.routes.remove(p);
                }
            }
            Ok(())
        })
    }

    async fn addresses(&self, index: Option<u32>) -> Result<Vec<(u32, IpAddr, u8)>> {
        self.run(Call::Addresses(index), |w, ns| {
            Ok(w.nss[ns]
                .addrs
                .iter()
                .filter(|a| index.is_none_or(|i| a.0 == i))
                .copied()
                .collect())
        })
    }

    async fn route(&self, op: RouteOp, req: RouteRequest) -> Result<()> {
        self.run(Call::Route(op, req.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            let r = route_info(&req);
            if let Some(dev) = r.oif
                && !n.has_index(dev)
                && op != RouteOp::Delete
            {
                return Err(errno("add route", format!("dev {dev}"), libc::ENODEV));
            }
            let pos = n.routes.iter().position(|x| same_dst(x, &r));
            match (op, pos) {
                (RouteOp::Add, Some(_)) => {
                    Err(errno("add route", format!("{req:?}"), libc::EEXIST))
                }
                (RouteOp::Add, None) => {
                    n.routes.push(r);
                    Ok(())
                }
                (RouteOp::Replace, p) => {
                    if let Some(p) = p {
                        n.routes.remove(p);
                    }
                    n.routes.push(r);
                    Ok(())
                }
                (RouteOp::Delete, p) => {
                    if let Some(p) = p {
                        n.routes.remove(p);
                    }
                    Ok(())
                }
            }
        })
    }

    async fn routes(&self) -> Result<Vec<RouteInfo>> {
        self.run(Call::Routes, |w, ns| Ok(w.nss[ns].routes.clone()))
    }

    /// The fake keeps only the permanent entries made with [`Kernel::add_neighbour`]; no
    /// other entry is ever there.
    async fn del_neighbour(&self, req: NeighbourRequest) -> Result<bool> {
        self.run(Call::DelNeighbour(req.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            let before = n.neighbours.len();
            n.neighbours
                .retain(|e| !(e.index == req.index && e.addr == req.addr));
            Ok(n.neighbours.len() < before)
        })
    }

    /// As the kernel, an IPv6 entry on a link with `disable_ipv6` is refused (EINVAL).
    async fn add_neighbour(&self, e: NeighbourEntry) -> Result<()> {
        self.run(Call::AddNeighbour(e.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            let what = || format!("{} lladdr {} on {}", e.addr, e.mac, e.name);
            let Some(link) = n.links.iter().find(|l| l.info.index == e.index) else {
                return Err(errno("replace neighbour", what(), libc::ENODEV));
            };
            let key = format!("net/ipv6/conf/{}/disable_ipv6", link.info.name);
            if e.addr.is_ipv6() && n.sysctls.get(&key).is_some_and(|v| v == "1") {
                return Err(errno("replace neighbour", what(), libc::EINVAL));
            }
            match n
                .neighbours
                .iter_mut()
                .find(|x| x.index == e.index && x.addr == e.addr)
            {
                Some(x) => x.mac = e.mac,
                None => n.neighbours.push(e),
            }
            Ok(())
        })
    }

    async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>> {
        self.run(Call::Neighbours(index), |w, ns| {
            Ok(w.nss[ns]
                .neighbours
                .iter()
                .filter(|e| e.index == index)
                .cloned()
                .collect())
        })
    }

    /// As the kernel: one entry per MAC (a replace points it at the new VTEP), whose
    /// destination is of the family of the device's local VTEP (else EAFNOSUPPORT). The fake
    /// keeps forwarding databases for VXLAN devices only (EOPNOTSUPP for other links).
    async fn add_fdb(&self, e: FdbEntry) -> Result<()> {
        self.run(Call::AddFdb(e.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            let what = || format!("{} dst {} on {}", e.mac, e.dst, e.name);
            let Some(link) = n.links.iter().find(|l| l.info.index == e.index) else {
                return Err(errno("replace fdb entry", what(), libc::ENODEV));
            };
            let Some(vx) = &link.vxlan else {
                return Err(errno("replace fdb entry", what(), libc::EOPNOTSUPP));
            };
            if vx.local.is_ipv6() != e.dst.is_ipv6() {
                return Err(errno("replace fdb entry", what(), libc::EAFNOSUPPORT));
            }
            match n
                .fdb
                .iter_mut()
                .find(|x| x.index == e.index && x.mac == e.mac)
            {
                Some(x) => x.dst = e.dst,
                None => n.fdb.push(e),
            }
            Ok(())
        })
    }

    /// As the kernel: an entry for the MAC with another destination is not deleted (`false`).
    async fn del_fdb(&self, e: FdbEntry) -> Result<bool> {
        self.run(Call::DelFdb(e.clone()), |w, ns| {
            let n = &mut w.nss[ns];
            if !n.has_index(e.index) {
                let what = format!("{} dst {} on {}", e.mac, e.dst, e.name);
                return Err(errno("delete fdb entry", what, libc::ENODEV));
            }
            let before = n.fdb.len();
            n.fdb
                .retain(|x| !(x.index == e.index && x.mac == e.mac && x.dst == e.dst));
            Ok(n.fdb.len() < before)
        })
    }

    async fn fdb(&self, index: u32) -> Result<Vec<FdbEntry>> {
        self.run(Call::Fdb(index), |w, ns| {
            Ok(w.nss[ns]
                .fdb
                .iter()
                .filter(|e| e.index == index)
                .cloned()
                .collect())
        })
    }

    /// The fake has every kind.
    async fn probe_kind(&self, kind: ProbeKind) -> Result<()> {
        self.run(Call::Probe(kind), |_, _| Ok(()))
    }

    async fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let call = Call::WriteSysctl {
            key: key.to_string(),
            value: value.to_string(),
        };
        self.run(call, |w, ns| {
            if key.contains("..") || !key.starts_with("net/") {
                return Err(Error::invalid("sysctl key", key, "must be under net/"));
            }
            w.nss[ns].sysctls.insert(key.to_string(), value.to_string());
            Ok(())
        })
    }

    /// As the kernel: the very same rule twice is EEXIST; without a priority one just before
    /// the lowest non-zero one is picked (32765 when there is none); a delete removes the
    /// first rule that is the spec and is fine when there is none.
    async fn rule(&self, op: super::rules::RuleOp, spec: crate::rule::RuleSpec) -> Result<()> {
        use super::rules::{RuleInfo, RuleOp};
        self.run(Call::Rule(op, spec.clone()), |w, ns| {
            let rules = &mut w.nss[ns].rules;
            let pos = rules.iter().position(|r| r.is(&spec));
            match op {
                RuleOp::Add if pos.is_some() && spec.priority.is_some() => {
                    Err(errno("add rule", spec.to_string(), libc::EEXIST))
                }
                RuleOp::Add => {
                    let first = rules
                        .iter()
                        .filter_map(|r| r.rule.priority)
                        .filter(|p| *p > 0)
                        .min()
                        .unwrap_or(32766);
                    let mut rule = spec.clone();
                    rule.priority = Some(spec.priority.unwrap_or(first - 1));
                    rules.push(RuleInfo {
                        family: if spec.is_ipv6() {
                            Family::V6
                        } else {
                            Family::V4
                        },
                        rule,
                        lookup: true,
                    });
                    Ok(())
                }
                RuleOp::Delete => {
                    if let Some(p) = pos {
                        rules.remove(p);
                    }
                    Ok(())
                }
            }
        })
    }

    async fn rules(&self) -> Result<Vec<super::rules::RuleInfo>> {
        self.run(Call::Rules, |w, ns| Ok(w.nss[ns].rules.clone()))
    }

    async fn add_ifb(&self, name: &str, group: u32) -> Result<LinkInfo> {
        use super::tc::TcCall;
        let call = Call::Tc(TcCall::AddIfb {
            name: name.to_string(),
            group,
        });
        self.run(call, |w, ns| {
            if w.nss[ns].by_name(name).is_some() {
                return Err(errno("add link", name, libc::EEXIST));
            }
            let mut l = w.new_link(name);
            l.info.group = group;
            Ok(w.nss[ns].insert(l, true))
        })
    }

    async fn replace_qdisc(&self, req: super::tc::QdiscRequest) -> Result<()> {
        use super::tc::TcCall;
        self.run(Call::Tc(TcCall::ReplaceQdisc(req.clone())), |w, ns| {
            let n = &mut w.nss[ns];
            if !n.has_index(req.index) {
                return Err(errno("replace qdisc", &req.name, libc::ENODEV));
            }
            let parent = req.kind.parent();
            let existing = n
                .qdiscs
                .iter()
                .position(|q| q.index == req.index && q.kind.parent() == parent);
            match existing {
                Some(_) if parent == super::tc::QdiscParent::Ingress => {}
                Some(i) => n.qdiscs[i] = req,
                None => n.qdiscs.push(req),
            }
            Ok(())
        })
    }

    async fn del_qdisc(
        &self,
        index: u32,
        _name: &str,
        parent: super::tc::QdiscParent,
    ) -> Result<bool> {
        use super::tc::TcCall;
        self.run(Call::Tc(TcCall::DelQdisc { index, parent }), |w, ns| {
            let n = &mut w.nss[ns];
            let before = n.qdiscs.len();
            n.qdiscs
                .retain(|q| !(q.index == index && q.kind.parent() == parent));
            if parent == super::tc::QdiscParent::Ingress {
                n.filters.retain(|f| f.index != index);
            }
            Ok(n.qdiscs.len() != before)
        })
    }

    async fn qdiscs(&self, index: u32) -> Result<Vec<super::tc::QdiscInfo>> {
        use super::tc::{QdiscInfo, QdiscKind, TcCall};
        self.run(Call::Tc(TcCall::Qdiscs(index)), |w, ns| {
            Ok(w.nss[ns]
                .qdiscs
                .iter()
                .filter(|q| q.index == index)
                .map(|q| QdiscInfo {
                    kind: match q.kind {
                        QdiscKind::Tbf(_) => "tbf".into(),
                        QdiscKind::Ingress => "ingress".into(),
                    },
                    parent: Some(q.kind.parent()),
                    tbf: match q.kind {
                        QdiscKind::Tbf(p) => Some(p),
                        QdiscKind::Ingress => None,
                    },
                })
                .collect())
        })
    }

    async fn add_redirect(&self, req: super::tc::RedirectRequest) -> Result<()> {
        use super::tc::{QdiscKind, TcCall};
        self.run(Call::Tc(TcCall::AddRedirect(req.clone())), |w, ns| {
            let n = &mut w.nss[ns];
            let has_ingress = n
                .qdiscs
                .iter()
                .any(|q| q.index == req.index && q.kind == QdiscKind::Ingress);
            if !has_ingress || !n.has_index(req.to) {
                return Err(errno("add redirect filter", &req.name, libc::EINVAL));
            }
            n.filters.push(req);
            Ok(())
        })
    }

    async fn ingress_filters(&self, index: u32) -> Result<Vec<super::tc::FilterInfo>> {
        use super::tc::{FilterInfo, TcCall};
        self.run(Call::Tc(TcCall::Filters(index)), |w, ns| {
            Ok(w.nss[ns]
                .filters
                .iter()
                .filter(|f| f.index == index)
                .map(|f| FilterInfo {
                    kind: "u32".into(),
                    redirect_to: Some(f.to),
                })
                .collect())
        })
    }

    // Bridge VLANs.

    async fn vlan_filtering(&self, bridge: u32) -> Result<Option<super::VlanFiltering>> {
        self.run(Call::VlanFilteringOf(bridge), |w, ns| {
            if w.no_vlan_filtering {
                return Ok(None);
            }
            let n = &w.nss[ns];
            Ok(n.links
                .iter()
                .find(|l| l.info.index == bridge && l.info.is_bridge)
                .map(|_| super::VlanFiltering {
                    on: n.vlan_filtering.get(&bridge).copied().unwrap_or(false),
                    default_pvid: 1,
                }))
        })
    }

    async fn set_vlan_filtering(&self, bridge: u32, name: &str, on: bool) -> Result<()> {
        self.run(Call::SetVlanFiltering(bridge, on), |w, ns| {
            if w.no_vlan_filtering {
                return Err(Error::Unsupported {
                    what: super::bridge_vlan::NO_VLAN_FILTERING.to_string(),
                    source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                });
            }
            let n = &mut w.nss[ns];
            if !n
                .links
                .iter()
                .any(|l| l.info.index == bridge && l.info.is_bridge)
            {
                return Err(errno("set bridge vlan_filtering", name, libc::ENODEV));
            }
            n.vlan_filtering.insert(bridge, on);
            Ok(())
        })
    }

    async fn port_vlan(&self, op: super::VlanOp, req: super::PortVlanRequest) -> Result<()> {
        self.run(Call::PortVlan(op, req.clone()), |w, ns| {
            if w.no_vlan_filtering {
                return Err(Error::Unsupported {
                    what: super::bridge_vlan::NO_VLAN_FILTERING.to_string(),
                    source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                });
            }
            let n = &mut w.nss[ns];
            let port = n.links.iter().find(|l| l.info.index == req.index);
            if port.and_then(|l| l.info.controller).is_none() {
                return Err(errno("bridge vlan", req.name, libc::EINVAL));
            }
            let table = n
                .vlan_tables
                .entry(req.index)
                .or_insert_with(|| vec![super::PortVlan::access(1)]);
            table.retain(|v| v.vid != req.vlan.vid);
            if op == super::VlanOp::Add {
                if req.vlan.pvid {
                    for v in table.iter_mut() {
                        v.pvid = false;
                    }
                }
                table.push(req.vlan);
                table.sort();
            }
            Ok(())
        })
    }

    async fn vlan_tables(&self) -> Result<Vec<super::VlanTable>> {
        self.run(Call::VlanTables, |w, ns| {
            if w.no_vlan_filtering {
                return Ok(Vec::new());
            }
            let n = &w.nss[ns];
            let bridges: Vec<u32> = n
                .links
                .iter()
                .filter(|l| l.info.is_bridge)
                .map(|l| l.info.index)
                .collect();
            Ok(n.links
                .iter()
                .filter(|l| {
                    l.info.is_bridge || l.info.controller.is_some_and(|c| bridges.contains(&c))
                })
                .map(|l| super::VlanTable {
                    index: l.info.index,
                    controller: l.info.controller,
                    vlans: n
                        .vlan_tables
                        .get(&l.info.index)
                        .cloned()
                        .unwrap_or_else(|| vec![super::PortVlan::access(1)]),
                })
                .collect())
        })
    }

    async fn set_master(&self, index: u32, name: &str, master: Option<u32>) -> Result<()> {
        self.run(Call::SetMaster(index, master), |w, ns| {
            let n = &mut w.nss[ns];
            if let Some(m) = master
                && !n
                    .links
                    .iter()
                    .any(|l| l.info.index == m && l.info.is_bridge)
            {
                return Err(errno("set master", name, libc::ENODEV));
            }
            let Some(l) = n.by_index_mut(index) else {
                return Err(errno("set master", name, libc::ENODEV));
            };
            l.info.controller = master;
            n.vlan_tables.remove(&index);
            Ok(())
        })
    }
}

/// Bridge VLANs of the fake world.
impl FakeNet {
    /// From now on the fake kernel has no bridge VLAN filtering (as a kernel without
    /// `CONFIG_BRIDGE_VLAN_FILTERING`): filtering reads as unknown, changes are
    /// [`Error::Unsupported`].
    pub fn without_vlan_filtering(&self) {
        self.lock().no_vlan_filtering = true;
    }

    /// Whether bridge `index` of namespace `label` filters by VLAN.
    pub fn vlan_filtering_on(&self, label: &str, index: u32) -> bool {
        let mut w = self.lock();
        let i = w.ns_index(label);
        w.nss[i]
            .vlan_filtering
            .get(&index)
            .copied()
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::mac::MacAddr;
    use crate::netlink::{RpFilter, VethPeer};

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn builders_record_named_requests() {
        let net = FakeNet::new();
        let host = net.handle("host");
        let br = host.link().bridge("br0").mtu(1400).add().await.unwrap();
        assert!(br.is_bridge && br.up && br.group == crate::link_marks::BRIDGE);
        host.link()
            .set(br.index, "br0")
            .group(7)
            .apply()
            .await
            .unwrap();
        host.link()
            .bridge_port(br.index, "br0")
            .hairpin(Hairpin::On)
            .isolation(PortIsolation::Isolated)
            .apply()
            .await
            .unwrap();
        host.address()
            .add(br.index, "br0", v4("10.0.0.1"), 24)
            .await
            .unwrap();
        host.route()
            .default_via(v4("10.0.0.254"))
            .dev(br.index)
            .replace()
            .await
            .unwrap();
        let changes = net.changes_in("host");
        assert!(matches!(
            &changes[0],
            Call::AddLink(LinkRequest::Bridge { name, mtu: 1400, .. }) if name == "br0"
        ));
        assert!(matches!(
            &changes[1],
            Call::SetLink(LinkChange::Set(SetLink {
                group: Some(7),
                state: None,
                ..
            }))
        ));
        assert!(matches!(
            &changes[2],
            Call::SetLink(LinkChange::BridgePort {
                hairpin: Hairpin::On,
                isolation: PortIsolation::Isolated,
                ..
            })
        ));
        assert!(matches!(
            &changes[3],
            Call::AddAddress(AddressRequest { prefix: 24, name, .. }) if name == "br0"
        ));
        assert!(matches!(
            &changes[4],
            Call::Route(
                RouteOp::Replace,
                RouteRequest::DefaultVia { dev: Some(_), .. }
            )
        ));
        assert_eq!(changes.len(), 5);
        let l = net.link("host", "br0").unwrap();
        assert_eq!((l.info.group, l.hairpin), (7, Hairpin::On));
        assert_eq!(
            host.onlink_routes().await.unwrap(),
            vec!["10.0.0.0/24".parse().unwrap()]
        );
        assert!(matches!(
            net.routes("host").last(),
            Some(RouteInfo { gateway: Some(g), oif: Some(i), .. }) if *g == v4("10.0.0.254") && *i == br.index
        ));
    }

    #[tokio::test]
    async fn veth_peer_is_born_in_the_other_namespace_and_dies_with_its_host_end() {
        let net = FakeNet::new();
        let ns = Netns::current().unwrap();
        net.bind("c1", &ns);
        let host = net.handle("host");
        let br = host.link().bridge("br0").add().await.unwrap();
        let mac = MacAddr::random();
        let v = host
            .link()
            .veth("veth1")
            .master(br.index)
            .mtu(1400)
            .group(3)
            .peer(VethPeer {
                name: "eth0",
                mac,
                netns: &ns,
            })
            .add()
            .await
            .unwrap();
        assert_eq!((v.controller, v.group, v.up), (Some(br.index), 3, true));
        assert_eq!(
            net.sysctl("host", "net/ipv6/conf/veth1/disable_ipv6")
                .as_deref(),
            Some("1")
        );
        // The opener finds the namespace by the netns.
        let c1 = net.open(&ns).await.unwrap();
        let eth0 = c1.require_link("eth0").await.unwrap();
        assert_eq!(eth0.mac, Some(mac.octets().to_vec()));
        assert_eq!(eth0.mtu, Some(1400));
        c1.link()
            .set(eth0.index, "eth0")
            .up()
            .rp_filter(RpFilter::Loose)
            .apply()
            .await
            .unwrap();
        assert_eq!(
            net.sysctl("c1", "net/ipv4/conf/eth0/rp_filter").as_deref(),
            Some("2")
        );
        assert!(host.delete_link("veth1").await.unwrap());
        assert!(c1.link_by_name("eth0").await.unwrap().is_none());
        assert!(!host.delete_link("veth1").await.unwrap());
        let log = net.log();
        assert!(
            log.iter()
                .any(|r| r.ns == "c1" && matches!(r.call, Call::SetLink(_)))
        );
    }

    #[tokio::test]
    async fn the_nth_matching_call_fails_once() {
        let net = FakeNet::new();
        let host = net.handle("host");
        let eth = net.add_ether("host", "eth0");
        net.fail_nth(
            2,
            |ns, c| ns == "host" && matches!(c, Call::Route(RouteOp::Add, _)),
            libc::ENETUNREACH,
        );
        let gw = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        host.route().host(gw, eth).add().await.unwrap();
        let e = host
            .route()
            .default_dev(Family::V4, eth)
            .add()
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENETUNREACH));
        host.route()
            .default_dev(Family::V4, eth)
            .add()
            .await
            .unwrap();
        assert_eq!(host.default_route_oif_v4().await.unwrap(), Some(eth));
        // A real route that exists already: EEXIST, as from the kernel.
        let e = host
            .route()
            .default_dev(Family::V4, eth)
            .add()
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        let failed: Vec<_> = net.log().into_iter().filter(|r| r.failed).collect();
        assert_eq!(failed.len(), 1);
        net.fail_nth_with(
            1,
            |_, c| matches!(c, Call::AddLink(_)),
            |_| Error::invalid("test", "x", "injected"),
        );
        assert!(matches!(
            host.link().dummy("d0").add().await,
            Err(Error::InvalidValue { .. })
        ));
    }

    #[tokio::test]
    async fn vxlan_is_a_bridge_port_with_fdb_and_neighbours_that_die_with_it() {
        let net = FakeNet::new();
        let host = net.handle("host");
        let eth = net.add_ether("host", "eth0");
        let br = host.link().bridge("br0").add().await.unwrap();
        let mac = MacAddr::random();
        let local = v4("192.168.7.1");
        let vx = host
            .link()
            .vxlan("vx0", 42, local)
            .underlay(eth)
            .port(4790)
            .mtu(9000)
            .master(br.index)
            .group(9)
            .mac(mac)
            .add()
            .await
            .unwrap();
        assert_eq!(
            (vx.controller, vx.group, vx.up, vx.mtu),
            (Some(br.index), 9, true, Some(1450))
        );
        assert_eq!(vx.mac, Some(mac.octets().to_vec()));
        assert_eq!(
            net.sysctl("host", "net/ipv6/conf/vx0/addr_gen_mode")
                .as_deref(),
            Some("1")
        );
        let attrs = net.link("host", "vx0").unwrap().vxlan.unwrap();
        assert_eq!(
            (attrs.vni, attrs.local, attrs.underlay, attrs.port),
            (42, local, Some(eth), 4790)
        );
        // One device per VNI, port and family; an IPv6 VTEP is another family.
        let e = host
            .link()
            .vxlan("vx1", 42, v4("192.168.7.9"))
            .port(4790)
            .add()
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        let vx6 = host
            .link()
            .vxlan("vx6", 42, v4("fd00:7::1"))
            .underlay(eth)
            .port(4790)
            .add()
            .await
            .unwrap();
        assert_eq!((vx6.mtu, vx6.up, vx6.controller), (Some(1430), true, None));
        assert!(
            net.sysctl("host", "net/ipv6/conf/vx6/addr_gen_mode")
                .is_none()
        );
        let e = host
            .link()
            .vxlan("vx2", 43, local)
            .underlay(99)
            .add()
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENODEV));

        // FDB: one entry per MAC, replaced in place; the family of the local VTEP.
        let (m1, m2) = (MacAddr::random(), MacAddr::random());
        let (vtep2, vtep3) = (v4("192.168.7.2"), v4("192.168.7.3"));
        host.replace_fdb(vx.index, "vx0", m1, vtep2).await.unwrap();
        host.replace_fdb(vx.index, "vx0", m1, vtep3).await.unwrap();
        host.replace_fdb(vx.index, "vx0", m2, vtep2).await.unwrap();
        let e = host
            .replace_fdb(vx.index, "vx0", m2, v4("fd00:7::2"))
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EAFNOSUPPORT));
        let e = host
            .replace_fdb(br.index, "br0", m2, vtep2)
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EOPNOTSUPP));
        let entry = |mac, dst| FdbEntry {
            index: vx.index,
            name: "vx0".into(),
            mac,
            dst,
        };
        assert_eq!(
            host.fdb(vx.index).await.unwrap(),
            vec![entry(m1, vtep3), entry(m2, vtep2)]
        );
        assert!(host.fdb(vx6.index).await.unwrap().is_empty());
        assert!(!host.del_fdb(vx.index, "vx0", m1, vtep2).await.unwrap());
        assert!(host.del_fdb(vx.index, "vx0", m1, vtep3).await.unwrap());
        assert!(!host.del_fdb(vx.index, "vx0", m1, vtep3).await.unwrap());
        assert_eq!(host.fdb(vx.index).await.unwrap(), vec![entry(m2, vtep2)]);

        // Neighbours: both families, replaced in place, forgotten by del_neighbour.
        let (a4, a6) = (v4("10.7.0.3"), v4("fd00:a::3"));
        host.replace_neighbour(vx.index, "vx0", a4, m1)
            .await
            .unwrap();
        host.replace_neighbour(vx.index, "vx0", a4, m2)
            .await
            .unwrap();
        host.replace_neighbour(vx.index, "vx0", a6, m2)
            .await
            .unwrap();
        let got = host.neighbours(vx.index).await.unwrap();
        let pairs: Vec<_> = got.iter().map(|e| (e.addr, e.mac)).collect();
        assert_eq!(pairs, vec![(a4, m2), (a6, m2)]);
        assert!(host.del_neighbour(vx.index, "vx0", a6).await.unwrap());
        assert!(!host.del_neighbour(vx.index, "vx0", a6).await.unwrap());
        assert_eq!(host.neighbours(vx.index).await.unwrap().len(), 1);

        // An injected failure changes nothing and is logged.
        net.fail_nth(1, |_, c| matches!(c, Call::AddFdb(_)), libc::ENOBUFS);
        let e = host
            .replace_fdb(vx.index, "vx0", m1, vtep2)
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOBUFS));
        assert_eq!(net.fdb("host").len(), 1);
        assert!(
            net.log()
                .iter()
                .any(|r| r.failed && matches!(&r.call, Call::AddFdb(e) if e.mac == m1))
        );
        assert!(matches!(
            net.changes_in("host").first(),
            Some(Call::AddLink(LinkRequest::Bridge { .. }))
        ));

        // Both tables go with the device.
        assert!(host.delete_link("vx0").await.unwrap());
        assert!(net.fdb("host").is_empty());
        assert!(net.neighbours("host").is_empty());
    }

    #[tokio::test]
    async fn no_ipv6_neighbour_on_a_link_with_ipv6_disabled() {
        let net = FakeNet::new();
        let ns = Netns::current().unwrap();
        net.bind("c1", &ns);
        let host = net.handle("host");
        let br = host.link().bridge("br0").add().await.unwrap();
        let v = host
            .link()
            .veth("veth1")
            .master(br.index)
            .peer_in("eth0", &ns)
            .add()
            .await
            .unwrap();
        let mac = MacAddr::random();
        host.replace_neighbour(v.index, "veth1", v4("10.0.0.2"), mac)
            .await
            .unwrap();
        let e = host
            .replace_neighbour(v.index, "veth1", v4("fd00::2"), mac)
            .await
            .unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert_eq!(net.neighbours("host").len(), 1);
    }

    #[tokio::test]
    async fn configure_interface_sends_what_a_container_needs() {
        let net = FakeNet::new();
        let c = net.handle("c");
        let idx = net.add_ether("c", "eth0");
        net.clear_log();
        let routes = [crate::route::RouteSpec {
            dst: "192.168.0.0/16".parse().unwrap(),
            via: None,
            metric: Some(5),
            table: None,
        }];
        let cfg = crate::driver::container::InterfaceConfig {
            ipv4: Some("10.1.0.2/24".parse().unwrap()),
            ipv6: Some("fd00::2/64".parse().unwrap()),
            gateway: Some("10.1.0.1".parse().unwrap()),
            gateway6: None,
            default_dev: false,
            routes: &routes,
            take_default: Default::default(),
        };
        crate::driver::container::configure_interface(&c, "eth0", cfg)
            .await
            .unwrap();
        let changes = net.changes_in("c");
        assert!(
            matches!(&changes[0], Call::WriteSysctl { key, value } if key == "net/ipv6/conf/eth0/accept_dad" && value == "0")
        );
        // The kernel announces the addresses later (see driver::announce).
        assert!(
            matches!(&changes[1], Call::WriteSysctl { key, value } if key == "net/ipv6/conf/eth0/ndisc_notify" && value == "1")
        );
        assert!(matches!(&changes[2], Call::AddAddress(a) if a.index == idx && a.prefix == 24));
        assert!(matches!(&changes[3], Call::AddAddress(a) if a.addr.is_ipv6()));
        assert!(matches!(
            &changes[4],
            Call::SetLink(LinkChange::Set(SetLink {
                state: Some(LinkState::Up),
                rp_filter: Some(RpFilter::Loose),
                arp_notify: true,
                ..
            }))
        ));
        assert!(matches!(
            &changes[5],
            Call::Route(RouteOp::Add, RouteRequest::DefaultVia { dev: None, .. })
        ));
        assert!(matches!(
            &changes[6],
            Call::Route(RouteOp::Add, RouteRequest::Spec { .. })
        ));
        assert_eq!(changes.len(), 7);
    }
}
