//! A bridge network with a published port and ICC off, in a sandbox — what it proves, by
//! traffic: the published port is reached from outside, egress is masqueraded, and two
//! containers of the network cannot reach each other (ICC off), though both reach the outside.
//!
//! ```text
//! cargo run --example bridge        # as root; never touches the machine's own namespace
//! ```

use std::net::SocketAddr;

use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Endpoint, Host, Network, Port};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sb = Sandbox::new("ex-bridge").await?;
    let outside = sb
        .add_outside("198.18.0.1/24".parse()?, "198.18.0.2/24".parse()?)
        .await?;
    let (c1, c2) = (sb.netns("c1").await?, sb.netns("c2").await?);
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .build()
        .await?;
    let net = host
        .create_network(
            Network::bridge("web")
                .subnet("10.88.0.0/24".parse()?)
                .icc(false),
        )
        .await?;
    let a1 = host
        .attach(
            &net,
            Endpoint::new("c1", c1.clone()).publish(Port::tcp(8080).to(80)),
        )
        .await?;
    let a2 = host.attach(&net, Endpoint::new("c2", c2.clone())).await?;
    let (ip1, ip2) = (a1.ip().unwrap(), a2.ip().unwrap());
    println!(
        "network web: bridge {}, ICC off; c1 {ip1} -p 8080:80, c2 {ip2}",
        net.device.as_deref().unwrap_or("-")
    );

    let seen = tcp_probe(&c1, sa("0.0.0.0:80"), &outside, sa("198.18.0.1:8080")).await?;
    println!(
        "proved: outside -> 198.18.0.1:8080 reached c1:80 (c1 saw {})",
        seen.ip()
    );
    let seen = tcp_probe(&outside, sa("0.0.0.0:7001"), &c2, sa("198.18.0.2:7001")).await?;
    println!(
        "proved: c2 -> outside is masqueraded (the outside saw {})",
        seen.ip()
    );
    let blocked = tcp_probe(
        &c1,
        SocketAddr::new(ip1, 7000),
        &c2,
        SocketAddr::new(ip1, 7000),
    )
    .await;
    assert!(blocked.is_err(), "ICC off: c2 must not reach c1");
    println!("proved: c2 -> c1:7000 is blocked (ICC off)");

    host.detach(&net, "c1").await?;
    host.detach(&net, "c2").await?;
    host.delete_network(&net).await?;
    println!("removed: endpoints and network");
    Ok(())
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}
