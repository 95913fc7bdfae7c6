//! resolv.conf: `ResolvConf::parse` (the host's file, and what the resolver reads for its
//! upstreams), the container's file derived from it, and the round trip through `render`.
#![no_main]

use berth::NameOptions;
use berth::dns::resolv::{self, ResolvConf, ResolvInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let rc = ResolvConf::parse(&text);
    let names = NameOptions::default();
    for ipv6 in [false, true] {
        let c = resolv::for_container(
            &rc,
            ResolvInput {
                names: &names,
                resolver: &[],
                network_dns: &[],
                ipv6,
            },
        );
        assert!(!c.nameservers.is_empty());
        assert!(c.nameservers.iter().all(|ip| !ip.is_loopback()));
    }
    let _ = resolv::for_host_mode(&rc, &names);
    // What berth renders, it reads back the same (words without whitespace or comments).
    let clean = |v: &[String]| v.iter().all(|w| !w.is_empty() && !w.contains(['#', ';']));
    if clean(&rc.search) && clean(&rc.options) {
        let again = ResolvConf::parse(&rc.render());
        assert_eq!(again, rc, "{text:?}");
    }
});
