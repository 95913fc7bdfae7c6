//! The client's messages and state machine against a fake server (no sockets).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Mutex;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder};
use tokio::sync::mpsc;

use super::client::{self, Failure, Schedule, Transport};
use super::message::{self, ClientParams, Reply};
use super::*;
use crate::mac::MacAddr;

fn params() -> ClientParams {
    ClientParams {
        mac: "02:42:c0:a8:00:05".parse().unwrap(),
        client_id: client_id("lan", "c0ffee"),
        hostname: "web-1".into(),
    }
}

fn decode(b: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(b)).unwrap()
}

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A server reply of `kind` to `req`, with the usual options.
fn reply(req: &Message, kind: MessageType, yiaddr: Ipv4Addr) -> Vec<u8> {
    let mut m = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        yiaddr,
        SERVER,
        Ipv4Addr::UNSPECIFIED,
        &req.chaddr()[..6],
    );
    m.set_opcode(Opcode::BootReply);
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(SERVER));
    if kind != MessageType::Nak {
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(192, 0, 2, 254)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            192, 0, 2, 53,
        )]));
        o.insert(DhcpOption::AddressLeaseTime(120));
        o.insert(DhcpOption::Renewal(3));
        o.insert(DhcpOption::Rebinding(5));
    }
    message::encode(&m)
}

type Script = Box<dyn FnMut(&Message, SocketAddrV4) -> Vec<Vec<u8>> + Send>;

/// A transport whose "server" answers each message sent by a script.
struct Fake {
    script: Mutex<Script>,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
    sent: Mutex<Vec<(MessageType, SocketAddrV4, Message)>>,
}

impl Fake {
    fn new(script: impl FnMut(&Message, SocketAddrV4) -> Vec<Vec<u8>> + Send + 'static) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Fake {
            script: Mutex::new(Box::new(script)),
            tx,
            rx: tokio::sync::Mutex::new(rx),
            sent: Mutex::new(Vec::new()),
        }
    }

    fn kinds(&self) -> Vec<MessageType> {
        self.sent.lock().unwrap().iter().map(|s| s.0).collect()
    }
}

impl Transport for Fake {
    async fn send(&self, buf: &[u8], to: SocketAddrV4) -> io::Result<()> {
        let m = decode(buf);
        let kind = m.opts().msg_type().unwrap();
        self.sent.lock().unwrap().push((kind, to, m.clone()));
        for r in (self.script.lock().unwrap())(&m, to) {
            let _ = self.tx.send(r);
        }
        Ok(())
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.rx.lock().await.recv().await.unwrap();
        buf[..r.len()].copy_from_slice(&r);
        Ok(r.len())
    }
}

fn fast() -> Schedule {
    Schedule {
        first: Duration::from_millis(20),
        max: Duration::from_millis(40),
    }
}

/// A well-behaved server: OFFER to DISCOVER, ACK to REQUEST.
fn good(addr: Ipv4Addr) -> impl FnMut(&Message, SocketAddrV4) -> Vec<Vec<u8>> + Send {
    move |m, _| match m.opts().msg_type() {
        Some(MessageType::Discover) => vec![reply(m, MessageType::Offer, addr)],
        Some(MessageType::Request) => vec![reply(m, MessageType::Ack, addr)],
        _ => vec![],
    }
}

#[test]
fn client_id_is_stable_per_container_and_network() {
    let a = client_id("lan", "c1");
    assert_eq!(a, client_id("lan", "c1"));
    assert_ne!(a, client_id("lan", "c2"));
    assert_ne!(a, client_id("lan2", "c1"));
    assert_eq!(a.len(), 17);
    assert_eq!(a[0], 0, "type 0: not a hardware address");
    assert_eq!(parse_hex_colons(&hex_colons(&a)), Some(a));
}

#[test]
fn discover_asks_for_broadcast_and_carries_identity() {
    let p = params();
    let m = decode(&message::encode(&message::discover(&p, 7)));
    assert_eq!(m.xid(), 7);
    assert!(m.flags().broadcast(), "no address yet: replies broadcast");
    assert_eq!(&m.chaddr()[..6], &p.mac.octets());
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    assert_eq!(
        m.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("web-1".into()))
    );
    assert_eq!(
        m.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(p.client_id.clone()))
    );
    assert!(matches!(
        m.opts().get(OptionCode::ParameterRequestList),
        Some(DhcpOption::ParameterRequestList(l)) if l.contains(&OptionCode::Router)
            && l.contains(&OptionCode::DomainNameServer)
    ));
}

#[test]
fn renew_release_and_decline_fill_the_right_fields() {
    let p = params();
    let ip = Ipv4Addr::new(192, 0, 2, 9);
    let r = decode(&message::encode(&message::request_renew(&p, 1, ip)));
    assert_eq!(r.ciaddr(), ip);
    assert!(!r.flags().broadcast());
    assert!(r.opts().get(OptionCode::ServerIdentifier).is_none());
    assert!(r.opts().get(OptionCode::RequestedIpAddress).is_none());
    let rel = decode(&message::encode(&message::release(&p, 2, ip, SERVER)));
    assert_eq!(rel.opts().msg_type(), Some(MessageType::Release));
    assert_eq!(rel.ciaddr(), ip);
    assert_eq!(
        rel.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    let d = decode(&message::encode(&message::decline(&p, 3, ip, SERVER)));
    assert_eq!(d.opts().msg_type(), Some(MessageType::Decline));
    assert_eq!(d.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        d.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(ip))
    );
}

#[test]
fn replies_to_others_are_ignored_and_times_are_read() {
    let p = params();
    let req = message::discover(&p, 42);
    let ip = Ipv4Addr::new(192, 0, 2, 9);
    let bytes = reply(&req, MessageType::Offer, ip);
    let Some(Reply::Offer(o)) = message::parse_reply(&bytes, 42, &p.mac) else {
        panic!("our offer")
    };
    assert_eq!(o.address.to_string(), "192.0.2.9/24");
    assert_eq!(o.router, Some(Ipv4Addr::new(192, 0, 2, 254)));
    assert_eq!(o.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!((o.lease_secs, o.t1_secs, o.t2_secs), (120, 3, 5));
    assert_eq!(message::parse_reply(&bytes, 43, &p.mac), None, "other xid");
    let other: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    assert_eq!(message::parse_reply(&bytes, 42, &other), None, "other MAC");
    assert_eq!(message::parse_reply(b"garbage", 42, &p.mac), None);
    // Our own broadcast request, looped back, is not a reply.
    let own = message::encode(&req);
    assert_eq!(message::parse_reply(&own, 42, &p.mac), None);
}

#[tokio::test]
async fn acquire_discover_offer_request_ack() {
    let ip = Ipv4Addr::new(192, 0, 2, 9);
    let t = Fake::new(good(ip));
    let got = client::acquire(&t, &params(), Duration::from_secs(2), fast(), |_| true)
        .await
        .unwrap();
    assert_eq!(got.address.addr(), ip);
    assert_eq!(t.kinds(), [MessageType::Discover, MessageType::Request]);
    let sent = t.sent.lock().unwrap();
    let req = &sent[1].2;
    assert!(sent.iter().all(|s| s.1.ip().is_broadcast()));
    assert_eq!(
        req.opts().get(OptionCode::RequestedIpAddress),
        Some(&DhcpOption::RequestedIpAddress(ip))
    );
    assert_eq!(
        req.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SERVER))
    );
    assert_eq!(req.xid(), sent[0].2.xid(), "one transaction");
}

#[tokio::test]
async fn a_lost_discover_is_retransmitted() {
    let ip = Ipv4Addr::new(192, 0, 2, 9);
    let mut inner = good(ip);
    let mut first = true;
    let t = Fake::new(move |m, to| {
        if std::mem::take(&mut first) {
            return vec![];
        }
        inner(m, to)
    });
    client::acquire(&t, &params(), Duration::from_secs(2), fast(), |_| true)
        .await
        .unwrap();
    assert_eq!(
        t.kinds(),
        [
            MessageType::Discover,
            MessageType::Discover,
            MessageType::Request
        ]
    );
}

#[tokio::test]
async fn nak_starts_over_and_an_address_in_use_is_declined() {
    let ip = Ipv4Addr::new(192, 0, 2, 9);
    let ip2 = Ipv4Addr::new(192, 0, 2, 10);
    let mut requests = 0;
    let t = Fake::new(move |m, _| match m.opts().msg_type() {
        Some(MessageType::Discover) => {
            vec![reply(
                m,
                MessageType::Offer,
                if requests < 2 { ip } else { ip2 },
            )]
        }
        Some(MessageType::Request) => {
            requests += 1;
            match requests {
                1 => vec![reply(m, MessageType::Nak, Ipv4Addr::UNSPECIFIED)],
                2 => vec![reply(m, MessageType::Ack, ip)],
                _ => vec![reply(m, MessageType::Ack, ip2)],
            }
        }
        _ => vec![],
    });
    // .9 is the container's already (another network): declined.
    let got = client::acquire(&t, &params(), Duration::from_secs(2), fast(), |o| {
        o.address.addr() != ip
    })
    .await
    .unwrap();
    assert_eq!(got.address.addr(), ip2);
    use MessageType::*;
    assert_eq!(
        t.kinds(),
        [
            Discover, Request, Discover, Request, Decline, Discover, Request
        ]
    );
}

#[tokio::test]
async fn no_server_times_out_within_the_bound() {
    let t = Fake::new(|_, _| vec![]);
    let start = std::time::Instant::now();
    let r = client::acquire(&t, &params(), Duration::from_millis(300), fast(), |_| true).await;
    assert!(matches!(r, Err(Failure::Timeout { .. })), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(t.kinds().len() >= 3, "retransmitted: {:?}", t.kinds());
}

#[tokio::test]
async fn renew_is_unicast_and_rebind_broadcast_nak_refuses() {
    let ip = Ipv4Addr::new(192, 0, 2, 9);
    let t = Fake::new(good(ip));
    let p = params();
    let a = client::renew(&t, &p, ip, Some(SERVER), Duration::from_secs(1), fast())
        .await
        .unwrap();
    assert_eq!(a.address.addr(), ip);
    client::renew(&t, &p, ip, None, Duration::from_secs(1), fast())
        .await
        .unwrap();
    {
        let sent = t.sent.lock().unwrap();
        assert_eq!(sent[0].1, SocketAddrV4::new(SERVER, 67));
        assert!(sent[1].1.ip().is_broadcast());
    }
    let nak = Fake::new(|m, _| vec![reply(m, MessageType::Nak, Ipv4Addr::UNSPECIFIED)]);
    let r = client::renew(&nak, &p, ip, Some(SERVER), Duration::from_secs(1), fast()).await;
    assert!(matches!(r, Err(Failure::Refused { .. })), "{r:?}");
}

#[test]
fn lease_times_and_ipam_driver_names() {
    let l = DhcpLease {
        address: "192.0.2.9/24".parse().unwrap(),
        router: None,
        dns: vec![],
        server: SERVER,
        client_id: "00:01".into(),
        hostname: "h".into(),
        obtained: 1000,
        lease_secs: 120,
        t1_secs: 60,
        t2_secs: 105,
        expired: false,
    };
    let at = |s| std::time::UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(l.renew_at(), at(1060));
    assert_eq!(l.rebind_at(), at(1105));
    assert_eq!(l.expires_at(), at(1120));
    assert_eq!("dhcp".parse::<IpamDriver>().unwrap(), IpamDriver::Dhcp);
    assert_eq!(IpamDriver::Dhcp.to_string(), "dhcp");
    assert!("pool".parse::<IpamDriver>().is_err());
}

#[test]
fn macvlan_with_a_parent_and_bridges_on_the_lan_take_dhcp() {
    use crate::network::Network;
    let ok = Network::macvlan("lan")
        .parent("eth1".parse().unwrap())
        .dhcp();
    ok.validate().unwrap();
    assert!(
        crate::NetworkSpec::from(ok.clone())
            .subnet_requests()
            .is_empty()
    );
    let invalid = |e: crate::Error| match e {
        crate::Error::InvalidValue { what, reason, .. } => {
            assert_eq!(what, "ipam driver");
            reason
        }
        other => panic!("{other:?}"),
    };
    let r = ok.clone().subnet("10.9.0.0/24".parse().unwrap()).validate();
    assert!(invalid(r.unwrap_err()).contains("--subnet"));
    let r = ok.clone().ipv6(true).validate();
    assert!(invalid(r.unwrap_err()).contains("--ipv6"));
    let r = ok.clone().host_shim("10.9.0.2".parse().unwrap()).validate();
    assert!(matches!(r, Err(crate::Error::InvalidValue { .. })));
    let r = Network::macvlan("lan").dhcp().validate();
    assert!(invalid(r.unwrap_err()).contains("parent"));
    // A bridge without a way to the LAN has no DHCP server either.
    let bridge = Network::with_options(
        "b",
        crate::options::DriverOptions::Bridge(Default::default()),
    )
    .ipam_driver(IpamDriver::Dhcp);
    assert!(invalid(bridge.validate().unwrap_err()).contains("bridge on the LAN"));
    Network::bridge("b")
        .trunk("eth0")
        .dhcp()
        .validate()
        .unwrap();
    Network::bridge("b")
        .bridge_name("br0")
        .dhcp()
        .validate()
        .unwrap();
    let r = Network::bridge("b")
        .trunk("eth0")
        .anti_spoofing(true)
        .dhcp()
        .validate();
    assert!(invalid(r.unwrap_err()).contains("anti-spoofing"));
    let r = Network::bridge("b")
        .trunk("eth0")
        .dhcp()
        .subnet("10.9.0.0/24".parse().unwrap())
        .validate();
    assert!(invalid(r.unwrap_err()).contains("--subnet"));
    let ipvlan = Network::with_options(
        "i",
        crate::options::DriverOptions::Ipvlan(Default::default()),
    )
    .ipam_driver(IpamDriver::Dhcp);
    assert!(matches!(
        ipvlan.validate(),
        Err(crate::Error::DriverUnsupported {
            driver: "ipvlan",
            ..
        })
    ));
}
