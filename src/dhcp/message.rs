//! What goes into the client's DHCP messages and what is read from the server's, over
//! [`dhcproto`]'s message type (no packet is laid out by hand).

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use ipnet::Ipv4Net;

use crate::mac::MacAddr;

/// Who the client is: its interface's MAC (chaddr), client identifier and hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientParams {
    pub mac: MacAddr,
    pub client_id: Vec<u8>,
    pub hostname: String,
}

/// What an OFFER or ACK says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    pub address: Ipv4Net,
    pub server: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
}

/// A server's reply to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Offer(Offer),
    Ack(Offer),
    Nak {
        server: Option<Ipv4Addr>,
        message: Option<String>,
    },
}

/// The options the client asks for (option 55).
const WANTED: &[OptionCode] = &[
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::AddressLeaseTime,
    OptionCode::ServerIdentifier,
    OptionCode::Renewal,
    OptionCode::Rebinding,
];

fn base(p: &ClientParams, xid: u32, kind: MessageType) -> Message {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &p.mac.octets(),
    );
    m.set_opcode(Opcode::BootRequest);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ClientIdentifier(p.client_id.clone()));
    m
}

fn with_identity(mut m: Message, p: &ClientParams) -> Message {
    let o = m.opts_mut();
    if !p.hostname.is_empty() {
        o.insert(DhcpOption::Hostname(p.hostname.clone()));
    }
    o.insert(DhcpOption::ParameterRequestList(WANTED.to_vec()));
    o.insert(DhcpOption::MaxMessageSize(1500));
    m
}

/// DHCPDISCOVER, asking for broadcast replies (the interface has no address yet).
pub(crate) fn discover(p: &ClientParams, xid: u32) -> Message {
    let mut m = with_identity(base(p, xid, MessageType::Discover), p);
    m.set_flags(Flags::default().set_broadcast());
    m
}

/// DHCPREQUEST in SELECTING state: the offered address from that server, broadcast.
pub(crate) fn request_offer(p: &ClientParams, xid: u32, offer: &Offer) -> Message {
    let mut m = with_identity(base(p, xid, MessageType::Request), p);
    m.set_flags(Flags::default().set_broadcast());
    let o = m.opts_mut();
    o.insert(DhcpOption::RequestedIpAddress(offer.address.addr()));
    o.insert(DhcpOption::ServerIdentifier(offer.server));
    m
}

/// DHCPREQUEST in RENEWING (unicast to the server) or REBINDING (broadcast) state: `ciaddr` is
/// the leased address, no server identifier or requested address (RFC 2131 §4.3.2).
pub(crate) fn request_renew(p: &ClientParams, xid: u32, address: Ipv4Addr) -> Message {
    let mut m = with_identity(base(p, xid, MessageType::Request), p);
    m.set_ciaddr(address);
    m
}

/// DHCPRELEASE of `address` to `server`.
pub(crate) fn release(p: &ClientParams, xid: u32, address: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = base(p, xid, MessageType::Release);
    m.set_ciaddr(address);
    m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    m
}

/// DHCPDECLINE of `address` offered by `server` (it is in use).
pub(crate) fn decline(p: &ClientParams, xid: u32, address: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut m = base(p, xid, MessageType::Decline);
    let o = m.opts_mut();
    o.insert(DhcpOption::RequestedIpAddress(address));
    o.insert(DhcpOption::ServerIdentifier(server));
    m
}

/// The wire form of `m`.
pub(crate) fn encode(m: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(300);
    // Encoding a message built above cannot fail (every option fits its length byte).
    m.encode(&mut Encoder::new(&mut buf))
        .expect("a DHCP message berth built encodes");
    buf
}

/// The reply in `bytes` if it is one to this client (a BOOTREPLY with our `xid` and MAC) of a
/// kind the client acts on; `None` for anything else (other clients' traffic, garbage).
pub(crate) fn parse_reply(bytes: &[u8], xid: u32, mac: &MacAddr) -> Option<Reply> {
    let m = Message::decode(&mut Decoder::new(bytes)).ok()?;
    if m.opcode() != Opcode::BootReply || m.xid() != xid {
        return None;
    }
    if m.chaddr().get(..6) != Some(&mac.octets()[..]) {
        return None;
    }
    let server = match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
        _ => None,
    };
    match m.opts().msg_type()? {
        MessageType::Nak => Some(Reply::Nak {
            server,
            message: match m.opts().get(OptionCode::Message) {
                Some(DhcpOption::Message(s)) => Some(s.clone()),
                _ => None,
            },
        }),
        MessageType::Offer => offer_of(&m, server?).map(Reply::Offer),
        MessageType::Ack => offer_of(&m, server?).map(Reply::Ack),
        _ => None,
    }
}

fn offer_of(m: &Message, server: Ipv4Addr) -> Option<Offer> {
    let ip = m.yiaddr();
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return None;
    }
    let o = m.opts();
    let prefix = match o.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => {
            let bits = u32::from(*mask);
            // A mask is contiguous ones; anything else is refused.
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return None;
            }
            bits.leading_ones() as u8
        }
        // No mask: the classful one (RFC 2131 leaves it to the client).
        _ => match ip.octets()[0] {
            0..=127 => 8,
            128..=191 => 16,
            _ => 24,
        },
    };
    let address = Ipv4Net::new(ip, prefix).ok()?;
    let router = match o.get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r
            .iter()
            .copied()
            .find(|g| !g.is_unspecified() && address.contains(g)),
        _ => None,
    };
    let dns = match o.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => d.clone(),
        _ => Vec::new(),
    };
    let lease_secs = match o.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => *t,
        _ => u32::MAX,
    };
    let scaled = |num: u64, den: u64| (u64::from(lease_secs) * num / den) as u32;
    let t1 = match o.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(t)) => *t,
        _ => scaled(1, 2),
    };
    let t2 = match o.get(OptionCode::Rebinding) {
        Some(DhcpOption::Rebinding(t)) => *t,
        _ => scaled(7, 8),
    };
    // T1 < T2 < lease, as RFC 2131 §4.4.5 has them; times that break it fall back to the
    // defaults.
    let (t1, t2) = if lease_secs == u32::MAX {
        (u32::MAX, u32::MAX)
    } else if t1 < t2 && t2 <= lease_secs {
        (t1, t2)
    } else if t1 < lease_secs && t1 < scaled(7, 8) {
        (t1, scaled(7, 8))
    } else {
        (scaled(1, 2), scaled(7, 8))
    };
    Some(Offer {
        address,
        server,
        router,
        dns,
        lease_secs,
        t1_secs: t1,
        t2_secs: t2,
    })
}
