//! IPsec state for encrypted overlay networks, through xfrm netlink (`xfrmnetlink`): ESP SAs in
//! transport mode with AEAD (`rfc4106(gcm(aes))`, 256-bit key, 128-bit ICV) and extended
//! sequence numbers, and the output policies that send a pair of hosts' marked VXLAN traffic
//! through them. Everything berth makes carries [`REQID`] (SAs and policy templates) and the
//! policies match [`ESP_MARK`]: what it lists and removes is only its own.
//!
//! What the kernel should hold is decided in [`crate::cluster::encryption`]; this module only
//! reads and writes it. `ip xfrm state` / `ip xfrm policy` show the same objects.

use std::io;
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_xfrm::constants::{
    IPPROTO_ESP, XFRM_MODE_TRANSPORT, XFRM_POLICY_ALLOW, XFRM_POLICY_OUT, XFRM_STATE_ESN,
};
use netlink_packet_xfrm::{UserTemplate, XfrmAttrs};

pub use crate::firewall::ruleset::esp::ESP_MARK;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// The request id of every SA and policy template berth makes.
pub const REQID: u32 = 0x0be5;
/// The AEAD algorithm of berth's SAs.
pub const AEAD: &str = "rfc4106(gcm(aes))";
/// Key material of one SA: a 256-bit AES key and the 32-bit salt of RFC 4106.
pub const KEY_LEN: usize = 36;
/// The ICV length, in bits.
const ICV_BITS: u32 = 128;
/// The anti-replay window of inbound SAs, in packets: wide, since parallel (async) crypto
/// reorders packets of a fast flow by more than a classic 64-128 window (seen in the VM tier
/// as replay errors under a bulk transfer).
const REPLAY_WINDOW: u32 = 1024;

/// One ESP SA (either direction: inbound on the host that is `dst`).
#[derive(Clone, PartialEq, Eq)]
pub struct EspSa {
    /// Source VTEP.
    pub src: IpAddr,
    /// Destination VTEP.
    pub dst: IpAddr,
    /// Security parameter index.
    pub spi: u32,
    /// Key material ([`KEY_LEN`] bytes).
    pub key: Vec<u8>,
}

impl std::fmt::Debug for EspSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(
            f,
            "EspSa({} -> {} spi 0x{:08x})",
            self.src, self.dst, self.spi
        )
    }
}

/// One output policy: VXLAN (UDP to `port`) from `src` to `dst` carrying [`ESP_MARK`] goes
/// through the SA `src → dst` with `spi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspPolicy {
    /// This host's VTEP.
    pub src: IpAddr,
    /// The peer's VTEP.
    pub dst: IpAddr,
    /// The VXLAN UDP port.
    pub port: u16,
    /// The SPI of the SA the traffic is sent with.
    pub spi: u32,
}

/// A connection to xfrm netlink inside one netns.
#[derive(Debug, Clone)]
pub struct Xfrm {
    handle: xfrmnetlink::Handle,
    netns: String,
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn ip_of(a: &netlink_packet_xfrm::Address, family: u16) -> IpAddr {
    if family == libc::AF_INET6 as u16 {
        IpAddr::V6(a.to_ipv6())
    } else {
        IpAddr::V4(a.to_ipv4())
    }
}

/// The errno of an xfrm netlink failure.
fn to_io(e: xfrmnetlink::Error) -> io::Error {
    match e {
        xfrmnetlink::Error::NetlinkError(m) => m.code.map_or_else(
            || io::Error::other("netlink error"),
            |c| io::Error::from_raw_os_error(-c.get()),
        ),
        other => io::Error::other(other.to_string()),
    }
}

/// An error of `op` on `what`; a kernel without ESP (or without the AEAD) is
/// [`Error::Unsupported`].
fn err(op: &'static str, what: String) -> impl FnOnce(xfrmnetlink::Error) -> Error {
    move |e| {
        let source = to_io(e);
        match source.raw_os_error() {
            Some(libc::EPROTONOSUPPORT) | Some(libc::ENOSYS) | Some(libc::ENOPKG) => {
                Error::Unsupported {
                    what: format!("ESP SAs ({AEAD}) for {what}"),
                    source,
                }
            }
            _ => Error::Netlink {
                op,
                name: what,
                source,
            },
        }
    }
}

impl Xfrm {
    /// Opens an xfrm netlink socket inside `netns` (its connection task is spawned on the
    /// caller's tokio runtime).
    pub async fn open(netns: &Netns) -> Result<Xfrm> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle) = netns
            .enter(move || {
                let _enter = rt.enter();
                xfrmnetlink::new_connection().map(|(conn, handle, _)| (conn, handle))
            })
            .await?
            .map_err(|e| Error::netlink("open socket", "xfrm", e))?;
        tokio::spawn(conn);
        Ok(Xfrm {
            handle,
            netns: netns.describe(),
        })
    }

    /// berth's SAs in the netns (those with [`REQID`]).
    pub async fn sas(&self) -> Result<Vec<EspSa>> {
        let msgs: Vec<_> = self
            .handle
            .state()
            .get_dump()
            .execute()
            .try_collect()
            .await
            .map_err(err("list SAs", self.netns.clone()))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.user_sa_info.reqid == REQID && m.user_sa_info.id.proto == IPPROTO_ESP)
            .map(|m| {
                let family = m.user_sa_info.family;
                let key = m
                    .nlas
                    .iter()
                    .find_map(|a| match a {
                        XfrmAttrs::EncryptionAlgAead(k) => Some(k.alg_key.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                EspSa {
                    src: ip_of(&m.user_sa_info.saddr, family),
                    dst: ip_of(&m.user_sa_info.id.daddr, family),
                    spi: m.user_sa_info.id.spi,
                    key,
                }
            })
            .collect())
    }

    /// Adds an SA (ESN on; an inbound one checks replays over a window of 1024 packets).
    pub async fn add_sa(&self, sa: &EspSa) -> Result<()> {
        let what = format!("{sa:?}");
        self.handle
            .state()
            .add(sa.src, sa.dst)
            .protocol(IPPROTO_ESP)
            .spi(sa.spi)
            .mode(XFRM_MODE_TRANSPORT)
            .reqid(REQID)
            .flags(XFRM_STATE_ESN)
            .replay_window(REPLAY_WINDOW, 0, 0, 0, 0)
            .encryption_aead(AEAD, &sa.key, ICV_BITS)
            .map_err(err("add SA", what.clone()))?
            .execute()
            .await
            .map_err(err("add SA", what))
    }

    /// Deletes an SA; an absent one is no error.
    pub async fn del_sa(&self, sa: &EspSa) -> Result<()> {
        let r = self
            .handle
            .state()
            .delete(sa.src, sa.dst)
            .protocol(IPPROTO_ESP)
            .spi(sa.spi)
            .execute()
            .await
            .map_err(err("delete SA", format!("{sa:?}")));
        match r {
            Err(e) if e.errno() == Some(libc::ESRCH) || e.errno() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// berth's output policies in the netns (those matching [`ESP_MARK`]).
    pub async fn policies(&self) -> Result<Vec<EspPolicy>> {
        let msgs: Vec<_> = self
            .handle
            .policy()
            .get_dump()
            .execute()
            .try_collect()
            .await
            .map_err(err("list policies", self.netns.clone()))?;
        let mut v = Vec::new();
        for m in msgs {
            let info = &m.user_policy_info;
            if info.direction != XFRM_POLICY_OUT {
                continue;
            }
            let marked = m.nlas.iter().any(
                |a| matches!(a, XfrmAttrs::Mark(mk) if mk.value == ESP_MARK && mk.mask == u32::MAX),
            );
            let tmpl = m.nlas.iter().find_map(|a| match a {
                XfrmAttrs::Template(t) => t.first().cloned(),
                _ => None,
            });
            let Some(t) = tmpl.filter(|t| marked && t.reqid == REQID) else {
                continue;
            };
            let family = info.selector.family;
            v.push(EspPolicy {
                src: ip_of(&info.selector.saddr, family),
                dst: ip_of(&info.selector.daddr, family),
                port: info.selector.dport,
                spi: t.id.spi,
            });
        }
        Ok(v)
    }

    /// Adds the policy, or replaces the one with its selector (a new SPI: the switch to a new
    /// key generation).
    pub async fn put_policy(&self, p: &EspPolicy) -> Result<()> {
        let mut t = UserTemplate::default();
        t.source(&p.src);
        t.destination(&p.dst);
        t.protocol(IPPROTO_ESP);
        t.mode(XFRM_MODE_TRANSPORT);
        t.spi(p.spi);
        t.reqid(REQID);
        self.handle
            .policy()
            .update(p.src, host_len(p.src), p.dst, host_len(p.dst))
            .direction(XFRM_POLICY_OUT)
            .action(XFRM_POLICY_ALLOW)
            .mark(ESP_MARK, u32::MAX)
            .selector_protocol(libc::IPPROTO_UDP as u8)
            .selector_protocol_dst_port(p.port)
            .add_template(t)
            .execute()
            .await
            .map_err(err("put policy", format!("{} -> {}", p.src, p.dst)))
    }

    /// Deletes the policy with `p`'s selector; an absent one is no error.
    pub async fn del_policy(&self, p: &EspPolicy) -> Result<()> {
        let r = self
            .handle
            .policy()
            .delete(p.src, host_len(p.src), p.dst, host_len(p.dst))
            .direction(XFRM_POLICY_OUT)
            .mark(ESP_MARK, u32::MAX)
            .selector_protocol(libc::IPPROTO_UDP as u8)
            .selector_protocol_dst_port(p.port)
            .execute()
            .await
            .map_err(err("delete policy", format!("{} -> {}", p.src, p.dst)));
        match r {
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }
}
