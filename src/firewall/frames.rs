//! The netlink messages of one datagram the kernel sent (nf_tables dumps and batch answers,
//! ctnetlink answers): one walk for every reader, bounds-checked: a short or truncated message
//! is reported as [`Frame::Malformed`] (and ends the walk) instead of being read past.
//! [`frames`] is the walk; [`reply`] reads one datagram of a request's answer with it (the
//! nf_tables dumps of `check`, conntrack cleanup).

use std::io;

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
    /// A message whose length is below its header or runs past the datagram, or an error
    /// message too short for its code: the walk ends here.
    Malformed(Fault),
}

/// What is wrong with a [`Frame::Malformed`] message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Its length is below its header or runs past the datagram (or the header itself is
    /// cut): the datagram was truncated.
    Cut,
    /// A whole error message with no room for its code: not one the kernel sends.
    ShortError,
}

impl Frame<'_> {
    /// The error a reader returns for an [`Frame::Error`] code (a negative errno) or a
    /// [`Frame::Malformed`] message: `EBADMSG` for anything that is no errno.
    pub(crate) fn error(code: i32) -> io::Error {
        let errno = code
            .checked_neg()
            .filter(|e| *e > 0)
            .unwrap_or(libc::EBADMSG);
        io::Error::from_raw_os_error(errno)
    }
}

/// The messages of `datagram`, in order; after a [`Frame::Malformed`] one, none (a
/// well-formed datagram has none).
pub(crate) fn frames(datagram: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let rest = datagram.get(off..).filter(|r| !r.is_empty())?;
        let frame = frame(rest);
        off = match frame {
            (Frame::Malformed(_), _) => datagram.len(),
            (_, len) => off + len.next_multiple_of(4),
        };
        Some(frame.0)
    })
}

/// The first message of `rest` and its length.
fn frame(rest: &[u8]) -> (Frame<'_>, usize) {
    let field = |at: usize, n: usize| rest.get(at..at + n);
    let (Some(len), Some(ty)) = (field(0, 4), field(4, 2)) else {
        return (Frame::Malformed(Fault::Cut), 0);
    };
    let len = u32::from_ne_bytes(len.try_into().expect("4 bytes")) as usize;
    let ty = u16::from_ne_bytes(ty.try_into().expect("2 bytes"));
    let Some(msg) = rest.get(..len).filter(|_| len >= HEADER) else {
        return (Frame::Malformed(Fault::Cut), 0);
    };
    let f = match ty {
        NLMSG_DONE => Frame::Done,
        NLMSG_ERROR => match msg.get(16..20) {
            Some(c) => Frame::Error(i32::from_ne_bytes(c.try_into().expect("4 bytes"))),
            None => Frame::Malformed(Fault::ShortError),
        },
        _ => Frame::Msg(msg),
    };
    (f, len)
}

/// Reads one datagram of the answer to a request (a dump or an acknowledged request), handing
/// each message, header included, to `on_msg`. `Some` once the answer is complete: `Ok` at
/// DONE or an acknowledgement, else the kernel's error ([`Frame::error`]; `EBADMSG` for an
/// error message too short for its code); `None` when more is to be received — also after a
/// cut message, which ends this datagram's walk without being handed on.
pub(crate) fn reply(datagram: &[u8], on_msg: &mut impl FnMut(&[u8])) -> Option<io::Result<()>> {
    for frame in frames(datagram) {
        match frame {
            Frame::Msg(msg) => on_msg(msg),
            Frame::Done | Frame::Error(0) => return Some(Ok(())),
            Frame::Error(code) => return Some(Err(Frame::error(code))),
            Frame::Malformed(Fault::ShortError) => return Some(Err(Frame::error(0))),
            Frame::Malformed(Fault::Cut) => return None,
        }
    }
    None
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
    fn short_truncated_or_tiny_messages_are_malformed_and_end_the_walk() {
        let malformed = |d: &[u8]| frames(d).collect::<Vec<_>>() == [Frame::Malformed(Fault::Cut)];
        // An error message too short to hold its code.
        assert_eq!(
            frames(&msg(NLMSG_ERROR, &[])).collect::<Vec<_>>(),
            [Frame::Malformed(Fault::ShortError)]
        );
        // A length past the end, a length below the header, a cut header.
        let mut d = msg(16, b"abcd");
        d.truncate(18);
        assert!(malformed(&d));
        let mut d = msg(16, &[]);
        d[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(malformed(&d));
        assert!(malformed(&[1, 2, 3]));
        // A huge length does not overflow the offset.
        let mut d = msg(16, &[]);
        d[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(malformed(&d));
        // A good message, then a bad one: the good one, then Malformed, then nothing.
        let mut d = msg(16, b"ok");
        d.extend([9, 9]);
        assert_eq!(frames(&d).count(), 2);
        assert!(frames(&[]).next().is_none());
    }

    #[test]
    fn replies_end_at_done_or_error_and_cut_messages_wait_for_more() {
        let mut seen = Vec::new();
        let mut on_msg = |m: &[u8]| seen.push(m.to_vec());
        let err = |code: i32| msg(NLMSG_ERROR, &code.to_ne_bytes());
        assert!(
            reply(&msg(NLMSG_DONE, &[0; 4]), &mut on_msg)
                .unwrap()
                .is_ok()
        );
        assert!(reply(&err(0), &mut on_msg).unwrap().is_ok());
        let e = reply(&err(-libc::ENOENT), &mut on_msg)
            .unwrap()
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        // An error message without room for its code, and codes that are no errno.
        for bad in [msg(NLMSG_ERROR, &[]), err(i32::MIN), err(5)] {
            let e = reply(&bad, &mut on_msg).unwrap().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EBADMSG));
        }
        // Messages are handed on whole and the answer goes on; a cut one is not handed on,
        // and what follows the end of the answer is not read.
        let mut d = msg(16, b"one.");
        d.extend(msg(16, b"two."));
        assert!(reply(&d, &mut on_msg).is_none());
        let mut cut = msg(16, b"cut");
        cut.truncate(17);
        assert!(reply(&cut, &mut on_msg).is_none());
        assert!(reply(&[1, 2, 3], &mut on_msg).is_none());
        let mut d = msg(NLMSG_DONE, &[0; 4]);
        d.extend(msg(16, b"after"));
        assert!(reply(&d, &mut on_msg).unwrap().is_ok());
        assert_eq!(seen, [msg(16, b"one."), msg(16, b"two.")]);
    }

    #[test]
    fn codes_that_are_no_errno_are_ebadmsg() {
        assert_eq!(Frame::error(-2).raw_os_error(), Some(2));
        for c in [i32::MIN, 0, 5] {
            assert_eq!(Frame::error(c).raw_os_error(), Some(libc::EBADMSG), "{c}");
        }
    }
}
