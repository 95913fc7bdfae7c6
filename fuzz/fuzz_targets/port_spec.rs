//! `-p` / `--expose` specs: `PortRequest`, `PortMapping`, `ExposedPort`, `Protocol` (`FromStr`),
//! with their round trips through `Display` and the expansion of a request into mappings.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use berth::{ExposedPort, PortMapping, PortRequest, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = s.parse::<PortRequest>() {
        let shown = r.to_string();
        let again: PortRequest = shown
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} shown as {shown:?} does not parse: {e}"));
        assert_eq!(again, r, "{s:?} → {shown:?}");
        r.validate().expect("a parsed request is valid");
        if let Some(maps) = r.fixed(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
            assert!(maps.len() <= 65536);
            for m in &maps {
                assert_eq!(m.proto, r.proto);
                let _ = m.validate();
            }
        }
    }
    if let Ok(m) = s.parse::<PortMapping>() {
        m.validate().expect("a parsed mapping is valid");
        let back = PortRequest::from(m);
        assert_eq!(
            back.to_string().parse::<PortMapping>().ok(),
            Some(m),
            "{s:?}"
        );
    }
    if let Ok(e) = s.parse::<ExposedPort>() {
        let shown = e.to_string();
        assert_eq!(
            shown.parse::<ExposedPort>().ok(),
            Some(e),
            "{s:?} → {shown:?}"
        );
    }
    if let Ok(p) = s.parse::<Protocol>() {
        assert_eq!(p.to_string().parse::<Protocol>().ok(), Some(p));
    }
});
