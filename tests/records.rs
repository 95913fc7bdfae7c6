//! Records written by an earlier berth still load: `tests/fixtures/state-0.1/` is a state dir
//! written by berth 0.1 (bridge, macvlan, none networks made by its netctl; ipvlan and a
//! parentless macvlan record in its format), when a macvlan/ipvlan parent was kept as a string.
//! Loading it gives the typed options, and a record written back is in the typed form.

use std::path::{Path, PathBuf};

use berth::options::{DriverOptions, IpvlanFlag, IpvlanMode, MacvlanMode, Parent};
use berth::state::StateDir;

/// A private copy of the fixture (the state dir must be root's alone: `0700`, files `0600`).
fn fixture_copy(tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-0.1");
    let dst = std::env::temp_dir().join(format!("berth-records-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    for sub in ["networks", "ipam"] {
        std::fs::create_dir_all(dst.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join(sub).join(e.file_name())).unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    for p in walk(&dst) {
        let mode = if p.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dst
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_state_dir_of_berth_0_1_loads_with_typed_options() {
    let dir = fixture_copy("load");
    let state = StateDir::open(&dir).unwrap();
    let nets = state.networks().unwrap();
    let names: Vec<&str> = nets.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["inner", "l3", "lan", "nonet", "web"]);
    let get = |name: &str| state.network(name).unwrap().unwrap().driver;

    let DriverOptions::Bridge(web) = get("web") else {
        panic!("web is a bridge network")
    };
    assert!(!web.icc && web.masquerade && !web.anti_spoofing);
    assert_eq!(web.host_binding_ipv4, Some("192.0.2.10".parse().unwrap()));

    let DriverOptions::Macvlan(lan) = get("lan") else {
        panic!("lan is a macvlan network")
    };
    assert_eq!(lan.parent, Parent::Link("lan0".into()));
    assert_eq!(lan.mode, MacvlanMode::Private);

    let DriverOptions::Macvlan(inner) = get("inner") else {
        panic!("inner is a macvlan network")
    };
    assert_eq!(inner.parent, Parent::Dummy, "a null parent is the dummy");

    let DriverOptions::Ipvlan(l3) = get("l3") else {
        panic!("l3 is an ipvlan network")
    };
    assert_eq!(
        l3.parent,
        Parent::Vlan {
            base: "lan0".into(),
            id: 50
        },
        "a BASE.ID string is a VLAN parent"
    );
    assert_eq!((l3.mode, l3.flag), (IpvlanMode::L3, IpvlanFlag::Private));
    assert_eq!(get("nonet"), DriverOptions::None);

    // Written back, the record holds the typed parent, and reads back the same.
    let rec = state.network("l3").unwrap().unwrap();
    state.put_network(&rec).unwrap();
    let raw = std::fs::read_to_string(dir.join("networks/l3.json")).unwrap();
    assert!(raw.contains(r#""kind": "vlan""#), "{raw}");
    assert_eq!(state.network("l3").unwrap().unwrap(), rec);
    std::fs::remove_dir_all(&dir).unwrap();
}
