//! Traffic control through netlink (no `tc` binary): what [`crate::bandwidth`] asks of a
//! kernel — `tbf` and `ingress` qdiscs, a u32 match-all filter redirecting to an `ifb`
//! device with a `mirred` action, the `ifb` itself — as request values ([`QdiscRequest`],
//! [`RedirectRequest`]), the answers read back ([`QdiscInfo`], [`FilterInfo`]), and the
//! netlink messages of each (built and parsed here, sent by [`super::rt::RtKernel`]).
//!
//! netlink-packet-route has no typed `tbf` options: they are encoded here as the kernel reads
//! them (`net/sched/sch_tbf.c`): `TCA_TBF_PARMS` (`struct tc_tbf_qopt`: two `tc_ratespec`s,
//! `limit`, `buffer`, `mtu`), `TCA_TBF_RATE64` from 2^32 bytes/s on, and `TCA_TBF_BURST`. The
//! rate's link layer is Ethernet (`TC_LINKLAYER_ETHERNET`), so the kernel needs no rate
//! table (`TCA_TBF_RTAB`): it computes transmission times itself.

use rtnetlink::packet_core::{DefaultNla, Emitable, NlaBuffer, NlasIterator};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{InfoKind, LinkMessage};
use rtnetlink::packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcMirror,
    TcMirrorActionType, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

use crate::bandwidth::TbfParams;

/// Where a qdisc hangs on its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QdiscParent {
    /// The root of the link's egress (`root`, handle `1:`).
    Root,
    /// The ingress hook (`ingress`, handle `ffff:`).
    Ingress,
}

/// What a qdisc is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QdiscKind {
    /// A token bucket filter (at the root).
    Tbf(TbfParams),
    /// The ingress qdisc (filters on what the link receives).
    Ingress,
}

impl QdiscKind {
    /// Where it hangs.
    pub fn parent(&self) -> QdiscParent {
        match self {
            QdiscKind::Tbf(_) => QdiscParent::Root,
            QdiscKind::Ingress => QdiscParent::Ingress,
        }
    }
}

/// `tc qdisc replace dev NAME root handle 1: tbf rate … burst … limit …`, or
/// `tc qdisc add dev NAME ingress` (an existing one is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdiscRequest {
    /// ifindex.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// The qdisc.
    pub kind: QdiscKind,
}

/// `tc filter add dev NAME parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred
/// egress redirect dev (to)`: every frame the link receives goes out of link `to` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRequest {
    /// ifindex of the link whose ingress qdisc holds the filter.
    pub index: u32,
    /// Its name (for errors).
    pub name: String,
    /// ifindex of the link the frames are redirected to (an `ifb`).
    pub to: u32,
}

/// One qdisc of a link, as the kernel dumps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QdiscInfo {
    /// Its kind (`tbf`, `ingress`, `noqueue` …).
    pub kind: String,
    /// Where it hangs; `None` for a qdisc under a class or an inner one.
    pub parent: Option<QdiscParent>,
    /// A `tbf`'s parameters as the kernel holds them: rate (bytes/s), `limit`, and `buffer`
    /// (ticks); `burst` is derived from them (rounded).
    pub tbf: Option<TbfParams>,
}

/// One filter of a link's ingress qdisc, as the kernel dumps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterInfo {
    /// The classifier (`u32` …).
    pub kind: String,
    /// The ifindex a `mirred` egress-redirect action of it sends frames to.
    pub redirect_to: Option<u32>,
}

/// A tc request made of a fake kernel (see [`super::fake::Call::Tc`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcCall {
    /// [`super::Kernel::add_ifb`].
    AddIfb {
        /// Name.
        name: String,
        /// Device group.
        group: u32,
    },
    /// [`super::Kernel::replace_qdisc`].
    ReplaceQdisc(QdiscRequest),
    /// [`super::Kernel::del_qdisc`].
    DelQdisc {
        /// ifindex.
        index: u32,
        /// Where.
        parent: QdiscParent,
    },
    /// [`super::Kernel::qdiscs`].
    Qdiscs(u32),
    /// [`super::Kernel::add_redirect`].
    AddRedirect(RedirectRequest),
    /// [`super::Kernel::ingress_filters`].
    Filters(u32),
}

impl TcCall {
    /// Whether it only reads.
    pub fn is_read(&self) -> bool {
        matches!(self, TcCall::Qdiscs(_) | TcCall::Filters(_))
    }
}

/// `TCA_TBF_PARMS`.
pub const TCA_TBF_PARMS: u16 = 1;
/// `TCA_TBF_RATE64`.
pub const TCA_TBF_RATE64: u16 = 4;
/// `TCA_TBF_BURST`.
pub const TCA_TBF_BURST: u16 = 6;
/// `TC_LINKLAYER_ETHERNET`.
pub const TC_LINKLAYER_ETHERNET: u8 = 1;
/// `ETH_P_ALL` in network byte order, as a filter's protocol.
pub const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();
/// The priority of the redirect filter.
pub const REDIRECT_PRIO: u16 = 1;
/// The handle of a root `tbf` (`1:`).
pub const TBF_HANDLE: TcHandle = TcHandle { major: 1, minor: 0 };
/// The handle of the ingress qdisc (`ffff:`).
pub const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

/// `struct tc_tbf_qopt` (36 bytes, host byte order): `rate` (`tc_ratespec`: `cell_log` u8,
/// `linklayer` u8, `overhead` u16, `cell_align` i16, `mpu` u16, `rate` u32), `peakrate`
/// (zero: none), `limit`, `buffer`, `mtu` (0: no peak rate).
pub fn tbf_qopt(p: &TbfParams) -> [u8; 36] {
    let mut b = [0u8; 36];
    b[1] = TC_LINKLAYER_ETHERNET;
    let rate32 = u32::try_from(p.rate_bytes).unwrap_or(u32::MAX);
    b[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // peakrate (12..24) stays zero: no peak rate.
    b[24..28].copy_from_slice(&p.limit.to_ne_bytes());
    b[28..32].copy_from_slice(&p.buffer_ticks.to_ne_bytes());
    b
}

/// The `TCA_OPTIONS` of a `tbf`.
pub fn tbf_options(p: &TbfParams) -> Vec<TcOption> {
    let mut v = vec![TcOption::Other(DefaultNla::new(
        TCA_TBF_PARMS,
        tbf_qopt(p).to_vec(),
    ))];
    if p.rate_bytes > u64::from(u32::MAX) {
        v.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            p.rate_bytes.to_ne_bytes().to_vec(),
        )));
    }
    v.push(TcOption::Other(DefaultNla::new(
        TCA_TBF_BURST,
        p.burst.to_ne_bytes().to_vec(),
    )));
    v
}

/// The `RTM_NEWQDISC` message of `req` (flags are the sender's).
pub fn qdisc_message(req: &QdiscRequest) -> TcMessage {
    let mut m = TcMessage::with_index(req.index as i32);
    match &req.kind {
        QdiscKind::Tbf(p) => {
            m.header.parent = TcHandle::ROOT;
            m.header.handle = TBF_HANDLE;
            m.attributes.push(TcAttribute::Kind("tbf".into()));
            m.attributes.push(TcAttribute::Options(tbf_options(p)));
        }
        QdiscKind::Ingress => {
            m.header.parent = TcHandle::INGRESS;
            m.header.handle = INGRESS_HANDLE;
            m.attributes.push(TcAttribute::Kind("ingress".into()));
        }
    }
    m
}

/// The `RTM_DELQDISC` message of the qdisc at `parent` of link `index`.
pub fn del_qdisc_message(index: u32, parent: QdiscParent) -> TcMessage {
    let mut m = TcMessage::with_index(index as i32);
    match parent {
        QdiscParent::Root => m.header.parent = TcHandle::ROOT,
        QdiscParent::Ingress => {
            m.header.parent = TcHandle::INGRESS;
            m.header.handle = INGRESS_HANDLE;
        }
    }
    m
}

/// The `RTM_NEWTFILTER` message of `req`: u32, one key matching everything (`match u32 0 0`,
/// terminal), a `mirred` action with `TCA_EGRESS_REDIR` and `TC_ACT_STOLEN`, in the ingress
/// qdisc (`parent ffff:`), protocol all, priority [`REDIRECT_PRIO`].
pub fn redirect_message(req: &RedirectRequest) -> TcMessage {
    let mut m = TcMessage::with_index(req.index as i32);
    m.header.parent = INGRESS_HANDLE;
    m.header.info = u32::from(TcHandle {
        major: REDIRECT_PRIO,
        minor: ETH_P_ALL_BE,
    });
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = 1;
    sel.keys = vec![TcU32Key::default()];
    let mut generic = TcActionGeneric::default();
    generic.action = TcActionType::Stolen;
    let mut mirror = TcMirror::default();
    mirror.generic = generic;
    mirror.eaction = TcMirrorActionType::EgressRedir;
    mirror.ifindex = req.to;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            mirror,
        ))]),
    ];
    m.attributes.push(TcAttribute::Kind("u32".into()));
    m.attributes.push(TcAttribute::Options(vec![
        TcOption::U32(TcFilterU32Option::Selector(sel)),
        TcOption::U32(TcFilterU32Option::Action(vec![action])),
    ]));
    m
}

/// The `RTM_NEWLINK` message of an `ifb` named `name` in device group `group`, up.
pub fn ifb_message(name: &str, group: u32) -> LinkMessage {
    LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Ifb)
        .name(name.to_string())
        .link_group(group)
        .up()
        .build()
}

/// A `tbf`'s parameters from the value of its `TCA_OPTIONS` (the nested attributes).
fn tbf_from_options(nested: &[u8]) -> Option<TbfParams> {
    let mut qopt = None;
    let mut rate64 = None;
    for nla in NlasIterator::new(nested) {
        let nla = nla.ok()?;
        match nla.kind() {
            TCA_TBF_PARMS if nla.value().len() >= 36 => qopt = Some(nla.value()[..36].to_vec()),
            TCA_TBF_RATE64 if nla.value().len() >= 8 => {
                rate64 = Some(u64::from_ne_bytes(nla.value()[..8].try_into().ok()?));
            }
            _ => {}
        }
    }
    let q = qopt?;
    let u32_at = |i: usize| u32::from_ne_bytes(q[i..i + 4].try_into().unwrap_or_default());
    let rate_bytes = rate64.unwrap_or(u64::from(u32_at(8)));
    let limit = u32_at(24);
    let buffer_ticks = u32_at(28);
    let burst = u128::from(buffer_ticks)
        * u128::from(crate::bandwidth::PSCHED_TICK_NS)
        * u128::from(rate_bytes)
        / 1_000_000_000;
    Some(TbfParams {
        rate_bytes,
        burst: u32::try_from(burst).unwrap_or(u32::MAX),
        buffer_ticks,
        limit,
    })
}

/// A dumped qdisc message, read.
pub fn qdisc_info(m: &TcMessage) -> QdiscInfo {
    let mut kind = String::new();
    let mut tbf = None;
    for a in &m.attributes {
        match a {
            TcAttribute::Kind(k) => kind = k.clone(),
            TcAttribute::Options(opts) if kind == "tbf" => {
                // Unknown kinds are parsed as one attribute holding the whole TCA_OPTIONS.
                for o in opts {
                    let mut buf = vec![0u8; o.buffer_len()];
                    o.emit(&mut buf);
                    if let Ok(nla) = NlaBuffer::new_checked(&buf[..]) {
                        tbf = tbf_from_options(nla.value());
                    }
                }
            }
            _ => {}
        }
    }
    let parent = if m.header.parent == TcHandle::ROOT {
        Some(QdiscParent::Root)
    } else if m.header.parent == TcHandle::INGRESS {
        Some(QdiscParent::Ingress)
    } else {
        None
    };
    QdiscInfo { kind, parent, tbf }
}

/// A dumped filter message, read; `None` for one that is only a u32 hash table (no key, no
/// action).
pub fn filter_info(m: &TcMessage) -> Option<FilterInfo> {
    let mut kind = String::new();
    let mut redirect_to = None;
    let mut rule = false;
    for a in &m.attributes {
        match a {
            TcAttribute::Kind(k) => kind = k.clone(),
            TcAttribute::Options(opts) => {
                for o in opts {
                    match o {
                        TcOption::U32(TcFilterU32Option::Selector(_)) => rule = true,
                        TcOption::U32(TcFilterU32Option::Action(actions)) => {
                            rule = true;
                            redirect_to = redirect_to.or_else(|| mirred_target(actions));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    rule.then_some(FilterInfo { kind, redirect_to })
}

/// The ifindex an egress-redirect `mirred` action among `actions` sends to.
fn mirred_target(actions: &[TcAction]) -> Option<u32> {
    actions.iter().find_map(|a| {
        a.attributes.iter().find_map(|at| match at {
            TcActionAttribute::Options(os) => os.iter().find_map(|o| match o {
                TcActionOption::Mirror(TcActionMirrorOption::Parms(p))
                    if p.eaction == TcMirrorActionType::EgressRedir =>
                {
                    Some(p.ifindex)
                }
                _ => None,
            }),
            _ => None,
        })
    })
}

/// Sends `msg` with `flags` (plus `NLM_F_REQUEST`, and `NLM_F_ACK` unless a dump) and
/// collects the messages answered; a dump the socket is busy with (`EBUSY`: another task's
/// dump on this handle) is asked again.
pub(super) async fn request(
    handle: &rtnetlink::Handle,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> std::result::Result<Vec<RouteNetlinkMessage>, rtnetlink::Error> {
    use futures::StreamExt;
    use rtnetlink::packet_core::{
        NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    };
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut tries = 0;
    'again: loop {
        let mut req = NetlinkMessage::from(msg.clone());
        req.header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        let mut answers = handle.clone().request(req)?;
        let mut out = Vec::new();
        while let Some(m) = answers.next().await {
            match m.payload {
                NetlinkPayload::InnerMessage(i) => out.push(i),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let busy = e.code.map(|c| -c.get()) == Some(libc::EBUSY);
                    if dump && busy && tries < 100 {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        continue 'again;
                    }
                    return Err(rtnetlink::Error::NetlinkError(e));
                }
                _ => {}
            }
        }
        return Ok(out);
    }
}

/// Parses a whole `TcMessage` from its bytes (for tests of the encoding).
#[cfg(test)]
fn reparse(m: &TcMessage) -> TcMessage {
    use rtnetlink::packet_core::Parseable;
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf);
    TcMessage::parse(&buf[..]).unwrap()
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::Nla;

    use super::*;

    fn params() -> TbfParams {
        crate::bandwidth::RateLimit::new(10_000_000, 65536)
            .tbf(crate::bandwidth::Direction::Ingress, Some(1500))
            .unwrap()
    }

    /// The bytes the kernel reads: `tc_tbf_qopt` with an Ethernet rate and no peak rate, and
    /// the burst as its own attribute.
    #[test]
    fn a_tbf_request_is_what_sch_tbf_reads() {
        let req = QdiscRequest {
            index: 7,
            name: "veth0".into(),
            kind: QdiscKind::Tbf(params()),
        };
        let m = qdisc_message(&req);
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        // tcmsg: family, pad, ifindex 7, handle 1:0, parent root.
        assert_eq!(&buf[..4], &[0, 0, 0, 0]);
        assert_eq!(&buf[4..8], &7i32.to_ne_bytes());
        assert_eq!(&buf[8..12], &0x0001_0000u32.to_ne_bytes());
        assert_eq!(&buf[12..16], &0xffff_ffffu32.to_ne_bytes());
        // TCA_KIND "tbf\0".
        assert_eq!(&buf[20..24], &[8, 0, 1, 0]);
        assert_eq!(&buf[24..28], b"tbf\0");
        // TCA_OPTIONS: PARMS (4 + 36) + BURST (4 + 4).
        let opts_len = u16::from_ne_bytes([buf[28], buf[29]]);
        assert_eq!(opts_len, 4 + 40 + 8);
        assert_eq!(u16::from_ne_bytes([buf[30], buf[31]]) & 0x3fff, 2);
        let parms = &buf[32..72];
        assert_eq!(&parms[..4], &[40, 0, 1, 0]);
        let q = &parms[4..];
        assert_eq!(q[0], 0, "cell_log");
        assert_eq!(q[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(&q[8..12], &1_250_000u32.to_ne_bytes(), "rate, bytes/s");
        assert!(q[12..24].iter().all(|b| *b == 0), "no peak rate");
        assert_eq!(&q[24..28], &(31_250u32 + 65536).to_ne_bytes(), "limit");
        assert_eq!(&q[28..32], &819_200u32.to_ne_bytes(), "buffer, ticks");
        assert_eq!(&q[32..36], &[0; 4], "mtu");
        assert_eq!(&buf[72..76], &[8, 0, 6, 0], "TCA_TBF_BURST");
        assert_eq!(&buf[76..80], &65536u32.to_ne_bytes());
        // And read back as a dump would be.
        let info = qdisc_info(&reparse(&m));
        assert_eq!(info.kind, "tbf");
        assert_eq!(info.parent, Some(QdiscParent::Root));
        assert_eq!(info.tbf, Some(params()));
    }

    #[test]
    fn rates_beyond_32_bits_go_in_rate64() {
        let p = crate::bandwidth::RateLimit::new(40_000_000_000, 1 << 20)
            .tbf(crate::bandwidth::Direction::Egress, None)
            .unwrap();
        assert_eq!(p.rate_bytes, 5_000_000_000);
        let opts = tbf_options(&p);
        assert_eq!(opts.len(), 3);
        assert_eq!(opts[1].kind(), TCA_TBF_RATE64);
        let qopt = tbf_qopt(&p);
        assert_eq!(&qopt[8..12], &u32::MAX.to_ne_bytes());
        let m = qdisc_message(&QdiscRequest {
            index: 3,
            name: "x".into(),
            kind: QdiscKind::Tbf(p),
        });
        assert_eq!(
            qdisc_info(&reparse(&m)).tbf.unwrap().rate_bytes,
            5_000_000_000
        );
    }

    #[test]
    fn the_ingress_qdisc_is_ffff() {
        let m = qdisc_message(&QdiscRequest {
            index: 4,
            name: "v".into(),
            kind: QdiscKind::Ingress,
        });
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        assert_eq!(&buf[8..12], &0xffff_0000u32.to_ne_bytes());
        assert_eq!(&buf[12..16], &0xffff_fff1u32.to_ne_bytes());
        let info = qdisc_info(&reparse(&m));
        assert_eq!(
            (info.kind.as_str(), info.parent),
            ("ingress", Some(QdiscParent::Ingress))
        );
    }

    /// u32 match-all in `ffff:`, protocol all, a mirred egress redirect to the ifb.
    #[test]
    fn the_redirect_filter_sends_everything_to_the_ifb() {
        let m = redirect_message(&RedirectRequest {
            index: 5,
            name: "veth0".into(),
            to: 9,
        });
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        assert_eq!(&buf[12..16], &0xffff_0000u32.to_ne_bytes(), "parent ffff:");
        // tcm_info: prio 1 << 16 | htons(ETH_P_ALL).
        assert_eq!(&buf[16..20], &(0x0001_0000u32 | 0x0300).to_ne_bytes());
        let back = reparse(&m);
        let f = filter_info(&back).unwrap();
        assert_eq!(f.kind, "u32");
        assert_eq!(f.redirect_to, Some(9));
        // The key matches everything: mask 0, value 0, terminal.
        let sel = back
            .attributes
            .iter()
            .find_map(|a| match a {
                TcAttribute::Options(o) => o.iter().find_map(|o| match o {
                    TcOption::U32(TcFilterU32Option::Selector(s)) => Some(s.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .unwrap();
        assert_eq!(sel.nkeys, 1);
        assert_eq!((sel.keys[0].mask, sel.keys[0].val), (0, 0));
        assert!(sel.flags.contains(TcU32SelectorFlags::Terminal));
    }

    #[test]
    fn an_ifb_is_marked_and_up_at_creation() {
        use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo};
        let m = ifb_message("bifb1234567", crate::link_marks::IFB);
        assert!(m.header.flags.contains(LinkFlags::Up));
        assert!(
            m.attributes
                .contains(&LinkAttribute::Group(crate::link_marks::IFB))
        );
        assert!(
            m.attributes
                .contains(&LinkAttribute::IfName("bifb1234567".into()))
        );
        assert!(
            m.attributes
                .contains(&LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                    InfoKind::Ifb
                )]))
        );
    }
}
