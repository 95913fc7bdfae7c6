//! The README demo: a bridge network end to end, in a sandbox.
//!
//! With no arguments it builds its own sandbox — a "host" netns, two container netns and an
//! "outside" netns joined to the host by a veth — creates a bridge network, attaches both
//! containers (one with a published port), proves container-to-container TCP, masqueraded
//! egress and the published port reached from outside with real connections, prints what it
//! made and how long each step took, then removes everything. It never touches the machine's
//! own namespace.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use berth::sandbox::{Sandbox, dns_probe, tcp_probe};
use berth::{Endpoint, Host, Network, Port};

const HOST_UP: &str = "198.18.0.1";
const OUTSIDE: &str = "198.18.0.2";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}

/// Runs `f`, prints how long it took, and returns its value.
async fn timed<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let v = f.await;
    println!("  {:<44} {:>8.2} ms", what, t.elapsed().as_secs_f64() * 1e3);
    v
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("berth quickstart: a bridge network in a sandbox\n");
    let mut sb = Sandbox::new("quickstart").await?;
    let outside = sb
        .add_outside(
            format!("{HOST_UP}/24").parse()?,
            format!("{OUTSIDE}/24").parse()?,
        )
        .await?;
    let c1 = sb.netns("c1").await?;
    let c2 = sb.netns("c2").await?;
    println!(
        "sandbox: host netns /run/netns/{} (uplink {HOST_UP}), outside {OUTSIDE}, containers c1 c2",
        sb.host_name()
    );
    println!("state dir: {}\n", sb.state_dir().display());

    println!("steps:");
    let host = timed(
        "Host::build",
        Host::builder()
            .state_dir(sb.state_dir())
            .netns(sb.host().clone())
            .build(),
    )
    .await?;
    let net = timed(
        "create_network web 10.88.0.0/24",
        host.create_network(Network::bridge("web").subnet("10.88.0.0/24".parse()?)),
    )
    .await?;
    let a1 = timed(
        "attach c1 -p 8080:80",
        host.attach(
            &net,
            Endpoint::new("c1", c1.clone()).publish(Port::tcp(8080).to(80)),
        ),
    )
    .await?;
    let a2 = timed(
        "attach c2 --alias db",
        host.attach(&net, Endpoint::new("c2", c2.clone()).alias("db")),
    )
    .await?;
    // The embedded resolver: a task on our runtime, no daemon.
    let resolver = tokio::spawn(host.dns_resolver().run());
    let files = timed(
        "write_files c1 (hosts, resolv.conf, hostname)",
        host.write_files("c1", sb.state_dir().join("c1-etc")),
    )
    .await?;

    let ip1 = a1.ipv4.expect("bridge endpoints have an address").addr();
    let ip2 = a2.ipv4.expect("bridge endpoints have an address").addr();
    let c2c = timed(
        "TCP c1 -> c2",
        tcp_probe(
            &c2,
            sa(&format!("{ip2}:7000")),
            &c1,
            sa(&format!("{ip2}:7000")),
        ),
    )
    .await?;
    let egress = timed(
        "TCP c1 -> outside (masqueraded)",
        tcp_probe(
            &outside,
            sa("0.0.0.0:7001"),
            &c1,
            sa(&format!("{OUTSIDE}:7001")),
        ),
    )
    .await?;
    let published = timed(
        "TCP outside -> host:8080 -> c1:80",
        tcp_probe(
            &c1,
            sa("0.0.0.0:80"),
            &outside,
            sa(&format!("{HOST_UP}:8080")),
        ),
    )
    .await?;

    let gw = net.subnets[0].gateway;
    let mut db = Vec::new();
    for _ in 0..50 {
        // The resolver binds asynchronously: ask until it answers.
        match dns_probe(&c1, SocketAddr::new(gw, 53), "db").await {
            Ok(ips) => {
                db = ips;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    resolver.abort();

    timed("detach c1", host.detach(&net, "c1")).await?;
    timed("detach c2", host.detach(&net, "c2")).await?;
    timed("delete_network web", host.delete_network(&net)).await?;

    println!("\nwhat it made:");
    println!(
        "  network web: bridge {}, gateway {}, mtu {}",
        net.device.as_deref().unwrap_or("-"),
        net.subnets[0].gateway,
        net.mtu
    );
    for a in [&a1, &a2] {
        println!(
            "  {}: {} {} mac {} (host side {}), ports {:?}",
            a.container,
            a.ifname,
            a.ipv4.map(|n| n.to_string()).unwrap_or_default(),
            a.mac.map(|m| m.to_string()).unwrap_or_default(),
            a.host_ifname.as_deref().unwrap_or("-"),
            a.ports
                .iter()
                .map(|p| format!(
                    "{}:{}->{}/{}",
                    p.host_ip, p.host_port, p.container_port, p.proto
                ))
                .collect::<Vec<_>>()
        );
    }
    println!("\ntraffic:");
    println!(
        "  c1 -> c2:        c2 saw the connection from {} (c1 is {ip1})",
        c2c.ip()
    );
    println!(
        "  c1 -> outside:   the outside saw {} (the host's address: masqueraded)",
        egress.ip()
    );
    println!(
        "  outside -> 8080: c1 saw {} (published port, source kept)",
        published.ip()
    );
    println!("  c1 asks {gw}:53 for db: {db:?} (c2's alias, answered by the embedded resolver)");
    println!("\nc1's /etc/resolv.conf:\n{}", files.resolv_conf.trim_end());
    println!("\nremoved: endpoints, network, and (on exit) the sandbox namespaces.");
    Ok(())
}
