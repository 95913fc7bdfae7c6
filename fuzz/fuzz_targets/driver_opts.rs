//! `-o KEY=VALUE` driver options, as `examples/netctl.rs` turns them into a network spec: the
//! library parsers it calls (`MacvlanMode`, `IpvlanMode`, `IpvlanFlag` `FromStr`, the parent
//! name through `ParentSpec::parse`, MTU, bridge name, host binding) and then the spec's
//! validation. Input: the first byte picks the driver, the rest is `-o` values, one a line.
#![no_main]

use std::net::IpAddr;

use berth::options::ParentSpec;
use berth::{IpvlanFlag, IpvlanMode, MacvlanMode, Network};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&driver, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut spec = match driver % 3 {
        0 => Network::bridge("fuzz"),
        1 => Network::macvlan("fuzz"),
        _ => Network::ipvlan("fuzz"),
    };
    for opt in text.lines().take(16) {
        // netctl's clap value parser: KEY=VALUE, KEY not empty.
        let Some((key, value)) = opt.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            continue;
        };
        if let Ok(m) = value.parse::<MacvlanMode>() {
            assert_eq!(m.to_string(), value);
        }
        if let Ok(m) = value.parse::<IpvlanMode>() {
            assert_eq!(m.to_string(), value);
        }
        if let Ok(f) = value.parse::<IpvlanFlag>() {
            assert_eq!(f.to_string(), value);
        }
        if let Ok(ParentSpec::Link { name, vlan }) = ParentSpec::parse(Some(value)) {
            assert_eq!(name, value);
            if let Some((base, id)) = vlan {
                // `eth0.050` is VLAN 50 on eth0 (as Docker's Atoi), named as written.
                let rest = value.strip_prefix(&format!("{base}.")).expect("BASE.ID");
                assert_eq!(rest.parse::<u16>().ok(), Some(id));
                assert!((1..=4094).contains(&id));
            }
        }
        spec = match key {
            "parent" if driver % 3 != 0 => spec.parent(value),
            "macvlan_mode" if driver % 3 == 1 => match value.parse() {
                Ok(m) => spec.macvlan_mode(m),
                Err(_) => return,
            },
            "ipvlan_mode" if driver % 3 == 2 => match value.parse() {
                Ok(m) => spec.ipvlan_mode(m),
                Err(_) => return,
            },
            "ipvlan_flag" if driver % 3 == 2 => match value.parse() {
                Ok(f) => spec.ipvlan_flag(f),
                Err(_) => return,
            },
            "com.docker.network.driver.mtu" => match value.parse() {
                Ok(m) => spec.mtu(m),
                Err(_) => return,
            },
            "com.docker.network.bridge.name" if driver % 3 == 0 => spec.bridge_name(value),
            "com.docker.network.bridge.enable_ip_masquerade" if driver % 3 == 0 => {
                spec.masquerade(value == "true")
            }
            "com.docker.network.bridge.enable_icc" if driver % 3 == 0 => spec.icc(value == "true"),
            "com.docker.network.bridge.host_binding_ipv4" if driver % 3 == 0 => {
                match value.parse::<IpAddr>() {
                    Ok(IpAddr::V4(ip)) => spec.host_binding_ipv4(ip),
                    _ => return,
                }
            }
            _ => return,
        };
    }
    let _ = spec.validate();
});
