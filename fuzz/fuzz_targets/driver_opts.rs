//! `-o KEY=VALUE` driver options through the library's parser, `DockerOptions::parse_flags`
//! (what netctl and every runtime call): an accepted set must give options that validate, a
//! spec that validates (unless its MTU is out of range); a parent accepted as `BASE.ID` is a
//! VLAN whose name is what was written. Input: the first byte picks
//! the driver, the rest is `-o` words, one a line.
#![no_main]

use berth::docker_options::DockerOptions;
use berth::{DriverKind, Parent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&driver, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = [
        DriverKind::Bridge,
        DriverKind::Macvlan,
        DriverKind::Ipvlan,
        DriverKind::None,
    ][usize::from(driver % 4)];
    let words: Vec<&str> = text.lines().take(16).collect();
    for w in &words {
        if let Some(("parent", value)) = w.split_once('=')
            && let Ok(p) = value.parse::<Parent>()
        {
            assert_eq!(p.link_name().as_deref(), Some(value), "named as written");
            p.validate().expect("a parsed parent is valid");
            if let Parent::Vlan { id, .. } = p {
                assert!((1..=4094).contains(&id));
            }
        }
    }
    let Ok(opts) = DockerOptions::parse_flags(kind, &words) else {
        return;
    };
    assert_eq!(opts.driver.kind(), kind);
    opts.driver.validate().expect("accepted options validate");
    let mtu_ok = opts.mtu.is_none_or(|m| (68..=65535).contains(&m));
    let spec = opts.into_spec("fuzz");
    assert_eq!(spec.validate().is_ok(), mtu_ok, "only the MTU's range is left to check");
});
