//! The netlink messages of one datagram the kernel sent (nf_tables dumps and batch answers,
//! ctnetlink answers): one walk for every reader, bounds-checked, so a short or truncated
//! message ends the walk instead of being read past.

/// `NLMSG_ERROR`: an error (or, with code 0, an acknowledgement).
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
/// `struct nlmsghdr`.
const HEADER: usize = 16;

/// One message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// The end of a dump.
    Done,
    /// An error message: the kernel's code (negative errno; 0 is an acknowledgement).
    Error(i32),
    /// Any other message, header included (its payload starts at byte 16).
    Msg(&'a [u8]),
}

/// The messages of `datagram`, in order; stops at the first one whose length is short or runs
/// past the end (a well-formed datagram has none).
pub(crate) fn frames(datagram: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let rest = datagram.get(off..)?;
        let len = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(rest.get(4..6)?.try_into().ok()?);
        let msg = rest.get(..len).filter(|_| len >= HEADER)?;
        off += len.next_multiple_of(4);
        Some(match ty {
            NLMSG_DONE => Frame::Done,
            NLMSG_ERROR => Frame::Error(i32::from_ne_bytes(msg.get(16..20)?.try_into().ok()?)),
            _ => Frame::Msg(msg),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = ((HEADER + payload.len()) as u32).to_ne_bytes().to_vec();
        m.extend(ty.to_ne_bytes());
        m.extend([0; 10]);
        m.extend(payload);
        while !m.len().is_multiple_of(4) {
            m.push(0);
        }
        m
    }

    #[test]
    fn walks_messages_errors_and_done() {
        let mut d = msg(16, b"abc");
        d.extend(msg(NLMSG_ERROR, &(-2i32).to_ne_bytes()));
        d.extend(msg(NLMSG_DONE, &[0; 4]));
        let got: Vec<Frame> = frames(&d).collect();
        assert_eq!(got.len(), 3);
        assert!(matches!(got[0], Frame::Msg(m) if &m[16..] == b"abc"));
        assert_eq!(got[1], Frame::Error(-2));
        assert_eq!(got[2], Frame::Done);
    }

    #[test]
    fn short_truncated_or_tiny_messages_end_the_walk() {
        // An error message too short to hold its code.
        assert_eq!(frames(&msg(NLMSG_ERROR, &[])).count(), 0);
        // A length past the end, a length below the header, a cut header.
        let mut d = msg(16, b"abcd");
        d.truncate(18);
        assert_eq!(frames(&d).count(), 0);
        let mut d = msg(16, &[]);
        d[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(frames(&d).count(), 0);
        assert_eq!(frames(&[1, 2, 3]).count(), 0);
        // A huge length does not overflow the offset.
        let mut d = msg(16, &[]);
        d[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(frames(&d).count(), 0);
    }
}
