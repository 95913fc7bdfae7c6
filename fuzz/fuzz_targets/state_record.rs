//! Records read from the state dir, through the loaders' decoder (`berth::fuzzing`): network,
//! endpoint and sandbox records, IPAM pool files, IPAM `@CONTAINER` entries and ports-index
//! entry names. Each decoded record must serialise (the writers `expect` it) and read back the
//! same; decoded network, endpoint and sandbox records then build the resolver's name table.
//! Input: the first byte picks the record kind, the rest is the file.
#![no_main]

use std::net::IpAddr;

use berth::fuzzing;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = serde_json::to_vec_pretty(v).expect("records always serialise");
    let again: T = serde_json::from_slice(&bytes).expect("a written record reads back");
    assert_eq!(&again, v);
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let ip: IpAddr = "10.1.0.2".parse().unwrap();
    match kind % 6 {
        0 => {
            if let Ok(n) = fuzzing::network_record(bytes) {
                round_trip(&n);
                let _ = n.icc();
                let _ = n.masquerade();
                fuzzing::name_table(&[n], &[], &[], "a", ip);
            }
        }
        1 => {
            if let Ok(a) = fuzzing::endpoint_record(bytes) {
                round_trip(&a);
                let net = fuzzing::network_record(
                    br#"{"name":"n","id":"0","driver":{"kind":"bridge","masquerade":true},"subnets":[],"internal":false,"mtu":1500,"device":"br-n","dns_enabled":true}"#,
                )
                .expect("a valid record");
                let mut net = net;
                net.name = a.network.clone();
                fuzzing::name_table(&[net], std::slice::from_ref(&a), &[], &a.container, ip);
            }
        }
        2 => {
            if let Ok(s) = fuzzing::sandbox_record(bytes) {
                round_trip(&s);
                let _ = s.names.validate();
            }
        }
        3 => {
            if let Ok(p) = fuzzing::pool_record(bytes) {
                round_trip(&p);
                let _ = p.allocations();
            }
        }
        4 => {
            let s = String::from_utf8_lossy(bytes);
            let held = fuzzing::held_list(&s);
            let joined: Vec<String> = held.iter().map(ToString::to_string).collect();
            assert_eq!(fuzzing::held_list(&joined.join(",")), held);
        }
        _ => {
            let s = String::from_utf8_lossy(bytes);
            if let Some(o) = fuzzing::port_entry(&s) {
                let name = format!("{},{},{}", o.host_ip, o.network, o.container);
                let again = fuzzing::port_entry(&name).expect("an entry name reads back");
                assert_eq!(
                    (again.host_ip, again.network, again.container),
                    (o.host_ip, o.network, o.container)
                );
            }
        }
    }
});
