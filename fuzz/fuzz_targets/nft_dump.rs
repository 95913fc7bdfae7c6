//! nf_tables dump replies read back by `check` (`src/firewall/nft/dump.rs`): the netlink
//! message walk every reader of the kernel's answers shares (`src/firewall/frames.rs`) and the
//! parse of each chain, rule, set or set-element message into the kernel state berth compares.
//! Input: byte 0 picks the dump, the rest is one `recv`.
#![no_main]

use berth::fuzzing::{self, NftReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let reply = match sel % 4 {
        0 => NftReply::Chain,
        1 => NftReply::Rule,
        2 => NftReply::Set,
        _ => NftReply::Elems,
    };
    let (st, _done) = fuzzing::nft_dump(reply, rest);
    assert!(st.chains.len() + st.maps.len() <= rest.len() / 16 + 1);
});
