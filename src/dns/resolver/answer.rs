//! What to do with one query: answer it from the name table, or forward it (and where). Pure:
//! no sockets, no files; the host's nameservers come in through a closure.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::table::{Client, NameTable, Upstream};

/// TTL of the answers from the table (Docker's).
pub(crate) const TTL: u32 = 600;

/// The UDP payload size the resolver advertises in its EDNS answers.
const EDNS_PAYLOAD: u16 = 1232;

/// The decision for one query.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this reply.
    Reply(Message),
    /// Forward the query, as it came, to these servers in turn.
    Forward(Vec<IpAddr>),
}

/// Decides what to do with `query`, which arrived on `network`'s gateway from `client` (a
/// container of that network: nobody else gets this far). `None`: drop it (it is not a query).
pub(crate) fn decide(
    table: &NameTable,
    network: &str,
    client: &Client,
    query: &Message,
    host_servers: impl FnOnce() -> Vec<IpAddr>,
) -> Option<Outcome> {
    if query.message_type != MessageType::Query {
        return None;
    }
    if query.op_code != OpCode::Query {
        return Some(Outcome::Reply(reply(query, ResponseCode::NotImp)));
    }
    let [q] = query.queries.as_slice() else {
        return Some(Outcome::Reply(reply(query, ResponseCode::FormErr)));
    };
    if q.query_class() == DNSClass::IN
        && let Some(answers) = from_table(table, &client.scope, q)
    {
        let mut ok = reply(query, ResponseCode::NoError);
        ok.metadata.authoritative = true;
        ok.add_answers(answers);
        return Some(Outcome::Reply(ok));
    }
    Some(match table.upstreams(network, client, host_servers) {
        Upstream::Servers(s) => Outcome::Forward(s),
        Upstream::NoneConfigured | Upstream::Internal => {
            Outcome::Reply(reply(query, ResponseCode::Refused))
        }
    })
}

/// The table's answers to `q` in `scope`: `None` when the table does not know the name (the
/// query is forwarded), `Some(empty)` for a known name without records of that type.
fn from_table(table: &NameTable, scope: &[String], q: &Query) -> Option<Vec<Record>> {
    let name = q.name();
    if q.query_type() == RecordType::PTR {
        let ip = reverse_ip(name)?;
        let names = table.reverse(scope, ip);
        if names.is_empty() {
            return None;
        }
        let records = names
            .iter()
            .filter_map(|n| Name::from_ascii(format!("{n}.")).ok())
            .map(|n| Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(n))))
            .collect();
        return Some(records);
    }
    let found = table.lookup(scope, &name.to_ascii())?;
    let (a, aaaa) = match q.query_type() {
        RecordType::A => (true, false),
        RecordType::AAAA => (false, true),
        RecordType::ANY => (true, true),
        _ => (false, false),
    };
    let mut records = Vec::new();
    if a {
        records.extend(
            found
                .v4
                .iter()
                .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(*ip)))),
        );
    }
    if aaaa {
        records.extend(
            found
                .v6
                .iter()
                .map(|ip| Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(*ip)))),
        );
    }
    Some(records)
}

/// The address a `*.in-addr.arpa.` / `*.ip6.arpa.` name stands for, if it names a whole one.
fn reverse_ip(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// An empty reply to `query` with `code` (also the error replies): its id, opcode, RD and CD, its question, and an OPT
/// record when the query had one.
pub(crate) fn reply(query: &Message, code: ResponseCode) -> Message {
    let mut m = Message::response(query.id, query.op_code);
    m.metadata = Metadata::response_from_request(&query.metadata);
    m.metadata.recursion_available = true;
    m.metadata.response_code = code;
    m.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(edns);
    }
    m
}

/// A FORMERR for bytes that did not parse, if they hold at least a header's id.
pub(crate) fn formerr(bytes: &[u8]) -> Option<Message> {
    let id = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]);
    Some(Message::error_msg(id, OpCode::Query, ResponseCode::FormErr))
}

/// Encodes `reply` for a transport that carries at most `max` bytes: when it does not fit,
/// the answers are dropped and TC is set, so the client asks again over TCP; when even its
/// questions do not fit (a query may carry many, and error replies echo them all), they go
/// too. Never longer than `max` (`None` when not even a header fits).
pub(crate) fn encode(reply: &Message, max: usize) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= max {
        return Some(bytes);
    }
    let mut cut = reply.truncate();
    let bytes = cut.to_vec().ok()?;
    if bytes.len() <= max {
        return Some(bytes);
    }
    cut.queries.clear();
    cut.to_vec().ok().filter(|b| b.len() <= max)
}

#[cfg(test)]
mod tests {
    use super::super::table::tests::table;
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn q(name: &str, t: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m
    }

    fn client(src: &str) -> Client {
        table()
            .client("net1", ip(src))
            .expect("a container of net1")
    }

    fn answer(src: &str, m: &Message) -> Message {
        match decide(&table(), "net1", &client(src), m, Vec::new).unwrap() {
            Outcome::Reply(r) => r,
            o => panic!("expected a reply, got {o:?}"),
        }
    }

    #[test]
    fn a_and_aaaa_from_the_table() {
        let m = q("DB.", RecordType::A);
        let r = answer("10.1.0.2", &m);
        assert_eq!(r.id, m.id);
        assert_eq!(r.response_code, ResponseCode::NoError);
        assert!(r.recursion_desired && r.recursion_available && r.authoritative);
        assert_eq!(r.queries, m.queries);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, TTL);
        assert_eq!(r.answers[0].data, RData::A(A("10.1.0.3".parse().unwrap())));
        // No IPv6 for b: NOERROR, no answers, not forwarded.
        let r = answer("10.1.0.2", &q("b", RecordType::AAAA));
        assert_eq!(
            (r.response_code, r.answers.len()),
            (ResponseCode::NoError, 0)
        );
        let r = answer("10.1.0.3", &q("a", RecordType::AAAA));
        assert_eq!(
            r.answers[0].data,
            RData::AAAA(AAAA("fd01::2".parse().unwrap()))
        );
        // Another type of a known name: the name exists, nothing of that type.
        let r = answer("10.1.0.2", &q("b", RecordType::MX));
        assert_eq!(
            (r.response_code, r.answers.len()),
            (ResponseCode::NoError, 0)
        );
    }

    #[test]
    fn ptr_from_the_table() {
        let name: Name = IpAddr::from([10, 1, 0, 3]).into();
        let r = answer("10.1.0.2", &q(&name.to_ascii(), RecordType::PTR));
        assert_eq!(
            r.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("b.net1.").unwrap()))
        );
    }

    #[test]
    fn unknown_names_are_forwarded_or_refused() {
        let t = table();
        let m = q("c.", RecordType::A);
        let host = || vec![ip("192.0.2.53")];
        // b (only on net1) does not share a network with c.
        match decide(&t, "net1", &client("10.1.0.3"), &m, host).unwrap() {
            Outcome::Forward(s) => assert_eq!(s, vec![ip("192.0.2.53")]),
            o => panic!("{o:?}"),
        }
        // Nothing configured: REFUSED.
        let r = answer("10.1.0.3", &m);
        assert_eq!(r.response_code, ResponseCode::Refused);
        // An out-of-scope PTR is forwarded too.
        let name: Name = IpAddr::from([10, 2, 0, 2]).into();
        let m = q(&name.to_ascii(), RecordType::PTR);
        assert!(matches!(
            decide(&t, "net1", &client("10.1.0.3"), &m, host),
            Some(Outcome::Forward(_))
        ));
    }

    #[test]
    fn malformed_and_odd_messages() {
        let mut m = q("b", RecordType::A);
        m.add_query(Query::query(Name::from_ascii("a").unwrap(), RecordType::A));
        assert_eq!(answer("10.1.0.2", &m).response_code, ResponseCode::FormErr);
        let mut m = q("b", RecordType::A);
        m.metadata.op_code = OpCode::Status;
        assert_eq!(answer("10.1.0.2", &m).response_code, ResponseCode::NotImp);
        let mut m = q("b", RecordType::A);
        m.metadata.message_type = MessageType::Response;
        assert!(decide(&table(), "net1", &client("10.1.0.2"), &m, Vec::new).is_none());
        let f = formerr(&[0x12, 0x34, 0xff]).unwrap();
        assert_eq!((f.id, f.response_code), (0x1234, ResponseCode::FormErr));
        assert!(formerr(&[1]).is_none());
    }

    #[test]
    fn edns_is_answered_and_big_replies_are_truncated() {
        let mut m = q("web.", RecordType::A);
        m.set_edns(Edns::new());
        let r = answer("10.1.0.2", &m);
        assert!(r.edns.is_some());
        let full = encode(&r, 65535).unwrap();
        let cut = Message::from_vec(&encode(&r, full.len() - 1).unwrap()).unwrap();
        assert!(cut.truncation && cut.answers.is_empty());
        assert_eq!(cut.queries, m.queries);
    }

    #[test]
    fn a_reply_never_exceeds_the_transport() {
        // Found by fuzz/fuzz_targets/dns_message.rs: a UDP query with five long questions got
        // a FORMERR echoing them all, 517 bytes even truncated, over the 512 a plain UDP
        // client takes.
        let long = |i: usize| {
            format!(
                "{i}{}.{i}{}.{i}{}.",
                "a".repeat(62),
                "b".repeat(62),
                "c".repeat(62)
            )
        };
        let mut m = q(&long(0), RecordType::A);
        for i in 1..5 {
            m.add_query(Query::query(
                Name::from_ascii(long(i)).unwrap(),
                RecordType::A,
            ));
        }
        let r = answer("10.1.0.2", &m);
        assert_eq!(r.response_code, ResponseCode::FormErr);
        let bytes = encode(&r, 512).unwrap();
        assert!(bytes.len() <= 512, "{} bytes", bytes.len());
        let cut = Message::from_vec(&bytes).unwrap();
        assert!(cut.truncation);
        assert_eq!((cut.id, cut.response_code), (m.id, ResponseCode::FormErr));
        assert!(
            encode(&r, 65535).unwrap().len() > 512,
            "over TCP it is whole"
        );
        assert!(encode(&r, 4).is_none(), "not even a header fits");
    }
}
