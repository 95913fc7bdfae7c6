//! The embedded resolver's request path (`berth::fuzzing::dns_message`): a client's bytes in,
//! the reply (or the decision to drop or forward) out, against a fixed name table — over UDP,
//! and over TCP through the resolver's own length-prefix framing; and the check an upstream's
//! reply must pass before it is relayed. Input: byte 0 picks the client and the transport,
//! the rest is a datagram or a TCP stream; for a forwarded UDP query, the bytes after the
//! first 0xff 0x00 0xff marker are the upstream's reply.
#![no_main]

use berth::fuzzing::{self, DnsStep};
use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;

/// Checks one step's outcome; for a forward, the upstream reply check on `upstream`.
fn check(step: DnsStep, query: &[u8], tcp: bool, upstream: &[u8]) {
    match step {
        DnsStep::Drop => {}
        DnsStep::Reply(r) => {
            let m = Message::from_vec(&r).expect("the resolver's replies parse");
            assert_eq!(m.message_type, MessageType::Response);
            assert_eq!(&r[..2], &query[..2], "a reply carries the query's id");
            if !tcp {
                let max = Message::from_vec(query)
                    .map(|q| usize::from(q.max_payload()).max(512))
                    .unwrap_or(512);
                assert!(r.len() <= max, "UDP reply of {} bytes over {max}", r.len());
            } else {
                assert!(r.len() <= usize::from(u16::MAX));
            }
        }
        DnsStep::Forward { servers, max } => {
            assert!(!servers.is_empty());
            assert!(max >= 512);
            let answered =
                fuzzing::dns_upstream_answers(query, upstream).expect("a forwarded query parses");
            if answered {
                let r = Message::from_vec(upstream).expect("an accepted reply parses");
                assert_eq!(r.message_type, MessageType::Response);
            }
            // Its own query is never taken for an answer.
            assert_eq!(fuzzing::dns_upstream_answers(query, query), Some(false));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let client = usize::from(sel & 0x7);
    let tcp = sel & 0x80 != 0;
    if tcp {
        let mut pending = rest.to_vec();
        let mut n = 0;
        while let Some(msg) = fuzzing::dns_tcp_frame(&mut pending) {
            let step = fuzzing::dns_message(client, true, &msg);
            if msg.len() >= 2 {
                check(step, &msg, true, &[]);
            }
            n += 1;
            assert!(
                n <= data.len(),
                "every frame takes at least its 2-byte prefix"
            );
        }
        assert!(
            pending.len() < 2
                || pending.len() < 2 + usize::from(u16::from_be_bytes([pending[0], pending[1]]))
        );
    } else {
        let (query, upstream) = match rest.windows(3).position(|w| w == [0xff, 0x00, 0xff]) {
            Some(i) => (&rest[..i], &rest[i + 3..]),
            None => (rest, &[][..]),
        };
        let step = fuzzing::dns_message(client, false, query);
        if query.len() >= 2 {
            check(step, query, false, upstream);
        } else {
            assert!(
                matches!(step, DnsStep::Drop),
                "nothing answers under 2 bytes"
            );
        }
    }
});
