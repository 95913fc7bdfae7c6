//! ctnetlink replies read by conntrack cleanup (`src/firewall/conntrack.rs`): the shared netlink
//! message walk (`src/firewall/frames.rs`), and each dump message parsed as a conntrack entry
//! (family, original tuple, addresses of both tuples). Input: one `recv`.
#![no_main]

use berth::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (entries, _done) = fuzzing::conntrack_dump(data);
    for (_, orig, addrs) in &entries {
        assert!(!orig.is_empty());
        assert!(orig.len() <= data.len());
        assert!(addrs.len() <= data.len() / 8);
    }
});
