//! Micro-benchmarks of berth's pure parts: IPAM allocation in a large network, nf_tables ruleset
//! rendering, and option parsing. `cargo bench --bench pure`.

use std::hint::black_box;

use berth::firewall::ruleset::{self, EndpointRules};
use std::collections::BTreeMap;

use berth::ipam::SubnetState;
use berth::ipam::pools::{self, default_ipv4_pools};
use berth::{Port, PortMapping};
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
    };
    c.bench_function("render endpoint with 8 ports", |b| {
        b.iter(|| black_box(ruleset::endpoint_add(black_box(&e))))
    });
    c.bench_function("render base ruleset", |b| {
        b.iter(|| black_box(ruleset::base()))
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
}

criterion_group!(benches, ipam, pool_choice, render, parse);
criterion_main!(benches);
