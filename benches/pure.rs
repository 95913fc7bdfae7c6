//! Micro-benchmarks of berth's pure parts: IPAM allocation in a large network, nf_tables ruleset
//! rendering, and option parsing. `cargo bench --bench pure`. (The side-by-side comparison with
//! netavark and the CNI plugins is `benches/side_by_side/`, run by `cargo xtask bench`.)

use std::hint::black_box;

use berth::firewall::ruleset::{self, EndpointRules, NetworkRules};
use std::collections::BTreeMap;

use berth::ipam::SubnetState;
use berth::ipam::pools::{self, default_ipv4_pools};
use berth::{MacAddr, MacvlanMode, Port, PortMapping, PortRequest, RouteSpec};
use criterion::{Criterion, criterion_group, criterion_main};

fn ipam(c: &mut Criterion) {
    // A /16 with 60,000 addresses taken: the next free one is found past `last`.
    let mut full =
        SubnetState::new("10.0.0.0/16".parse().unwrap(), None, None, BTreeMap::new()).unwrap();
    // Filled directly (allocate() per address would make the set-up quadratic).
    for i in 0..60_000u32 {
        let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 2)) + i);
        full.allocations.insert(ip.into(), format!("c{i}"));
    }
    full.last = full.allocations.keys().next_back().copied();
    c.bench_function("ipam allocate+release in a /16 with 60k used", |b| {
        b.iter(|| {
            let ip = full.allocate("n", "bench", None).unwrap();
            full.release("bench");
            black_box(ip)
        })
    });
    // The side-by-side harness's scale: a /16 with 1,000 containers.
    let mut k = SubnetState::new(
        "10.201.0.0/16".parse().unwrap(),
        None,
        None,
        BTreeMap::new(),
    )
    .unwrap();
    for i in 0..1_000 {
        k.allocate("n", &format!("c{i}"), None).unwrap();
    }
    c.bench_function("ipam allocate+release in a /16 with 1k used", |b| {
        b.iter(|| {
            let ip = k.allocate("n", "bench", None).unwrap();
            k.release("bench");
            black_box(ip)
        })
    });
}

fn pool_choice(c: &mut Criterion) {
    // 200 networks already hold 192.168.x.0/20s and every 172.x /16 is taken.
    let mut used: Vec<ipnet::IpNet> = (16..32)
        .map(|b| format!("172.{b}.0.0/16").parse().unwrap())
        .collect();
    used.extend((0..15).map(|i| {
        format!("192.168.{}.0/20", i * 16)
            .parse::<ipnet::IpNet>()
            .unwrap()
    }));
    let pools = default_ipv4_pools();
    c.bench_function("choose a subnet past 31 used prefixes", |b| {
        b.iter(|| black_box(pools::choose(&pools, black_box(&used))))
    });
}

fn render(c: &mut Criterion) {
    let e = EndpointRules {
        ip: "10.88.0.2".parse().unwrap(),
        ip6: None,
        ports: (0..8).map(|p| Port::tcp(8000 + p).to(80 + p)).collect(),
        links: vec![],
        guard: None,
    };
    c.bench_function("render endpoint with 8 ports", |b| {
        b.iter(|| black_box(ruleset::endpoint_add(black_box(&e))))
    });
    c.bench_function("render base ruleset", |b| {
        b.iter(|| black_box(ruleset::base()))
    });
    let n = NetworkRules {
        name: "bench".into(),
        bridge: "br-bench".into(),
        subnets: vec!["10.201.0.0/16".parse().unwrap()],
        masquerade: true,
        internal: false,
        allow_direct_access: false,
        outbound_ipv4: None,
        icc: true,
        anti_spoofing: false,
        encrypted: None,
    };
    c.bench_function("render network rules", |b| {
        b.iter(|| black_box(ruleset::network_add(black_box(&n))))
    });
    c.bench_function("render endpoint with 8 ports as nft text", |b| {
        b.iter(|| black_box(ruleset::render(&ruleset::endpoint_add(black_box(&e)))))
    });
    // What `reapply` renders for a host with 1,000 endpoints of one port each.
    let eps: Vec<EndpointRules> = (0..1_000u32)
        .map(|i| EndpointRules {
            ip: std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 201, 0, 2)) + i),
            ip6: None,
            ports: vec![Port::tcp(20_000 + i as u16).to(80)],
            links: Vec::new(),
            guard: None,
        })
        .collect();
    c.bench_function("render reapply: 1 network, 1k endpoints", |b| {
        b.iter(|| black_box(ruleset::reapply(std::slice::from_ref(&n), black_box(&eps))))
    });
}

fn parse(c: &mut Criterion) {
    c.bench_function("parse -p 127.0.0.1:8080:80/udp", |b| {
        b.iter(|| {
            black_box("127.0.0.1:8080:80/udp")
                .parse::<PortMapping>()
                .unwrap()
        })
    });
    c.bench_function("parse -p [2001:db8::1]:8000-8010:80-90/tcp", |b| {
        b.iter(|| {
            black_box("[2001:db8::1]:8000-8010:80-90/tcp")
                .parse::<PortRequest>()
                .unwrap()
        })
    });
    c.bench_function("parse --route 10.0.0.0/8,via=10.88.0.1,metric=100", |b| {
        b.iter(|| {
            black_box("10.0.0.0/8,via=10.88.0.1,metric=100")
                .parse::<RouteSpec>()
                .unwrap()
        })
    });
    c.bench_function("parse --mac and -o macvlan_mode", |b| {
        b.iter(|| {
            let m: MacAddr = black_box("02:42:0a:58:00:09").parse().unwrap();
            let mode: MacvlanMode = black_box("vepa").parse().unwrap();
            black_box((m, mode))
        })
    });
}

criterion_group!(benches, ipam, pool_choice, render, parse);
criterion_main!(benches);
