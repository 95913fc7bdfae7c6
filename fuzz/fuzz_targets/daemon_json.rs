//! daemon.json: `DaemonConfig::from_json` (Docker's keys, types, validation), then what berth
//! makes of an accepted config: the default bridge's spec and a subnet from its address pools.
#![no_main]

use berth::DaemonConfig;
use berth::ipam::pools;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = DaemonConfig::from_json(text) else {
        return;
    };
    let spec = cfg
        .bridge_network()
        .expect("an accepted config has a bridge spec");
    spec.validate()
        .expect("an accepted config's bridge spec is valid");
    let avoid = [
        "172.17.0.0/16".parse().unwrap(),
        "10.0.0.0/8".parse().unwrap(),
    ];
    let _ = pools::choose(&cfg.default_address_pools, &avoid);
});
