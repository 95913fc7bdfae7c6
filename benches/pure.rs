//! Micro-benchmarks of berth's pure parts: IPAM allocation in a large network, nf_tables ruleset
//! rendering, and option parsing. `cargo bench --bench pure`.

use std::hint::black_box;

use berth::firewall::ruleset::{self, EndpointRules};
use berth::ipam::PoolState;
use berth::{Port, PortMapping};
use criterion::{Criterion, criterion_group, criterion_main};

fn ipam(c: &mut Criterion) {
    // A /16 with 60,000 addresses taken: the next free one is found past `last`.
    let mut full = PoolState::new("10.0.0.0/16".parse().unwrap(), None).unwrap();
    for i in 0..60_000 {
        full.allocate("n", &format!("c{i}"), None).unwrap();
    }
    c.bench_function("ipam allocate+release in a /16 with 60k used", |b| {
        b.iter(|| {
            let ip = full.allocate("n", "bench", None).unwrap();
            full.release("bench");
            black_box(ip)
        })
    });
}

fn render(c: &mut Criterion) {
    let e = EndpointRules {
        ip: "10.88.0.2".parse().unwrap(),
        ports: (0..8).map(|p| Port::tcp(8000 + p).to(80 + p)).collect(),
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

criterion_group!(benches, ipam, render, parse);
criterion_main!(benches);
