//! An ipvlan network in L3 mode, in a sandbox — what it proves, by traffic: containers on it
//! reach each other and a machine of the LAN (routed by the host, which the LAN knows as the
//! way to the container subnet), share the parent's MAC, and have the device itself as their
//! default route (no gateway).
//!
//! Needs a kernel with ipvlan: `cargo xtask vm-run target/debug/examples/ipvlan` runs it on
//! Debian's stock kernel (the VM tier does); elsewhere it says why it cannot run.
//!
//! ```text
//! cargo run --example ipvlan        # as root; never touches the machine's own namespace
//! ```

use std::net::SocketAddr;
use std::process::{Command, ExitCode};

use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Endpoint, Error, Host, IpvlanMode, Network};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut sb = Sandbox::new("ex-ipvlan").await?;
    let lan = sb
        .add_peer(
            "lan",
            "lan0",
            "198.31.1.1/24".parse()?,
            "198.31.1.2/24".parse()?,
        )
        .await?;
    let (c1, c2) = (sb.netns("c1").await?, sb.netns("c2").await?);
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .build()
        .await?;
    let net = match host
        .create_network(
            Network::ipvlan("l3")
                .parent("lan0".parse()?)
                .ipvlan_mode(IpvlanMode::L3)
                .subnet("10.33.0.0/24".parse()?),
        )
        .await
    {
        Err(e @ Error::Unsupported { .. }) => {
            println!(
                "cannot run here: {e} (run it in the VM: cargo xtask vm-run target/debug/examples/ipvlan)"
            );
            return Ok(ExitCode::from(77));
        }
        r => r?,
    };
    let a1 = host.attach(&net, Endpoint::new("c1", c1.clone())).await?;
    let a2 = host.attach(&net, Endpoint::new("c2", c2.clone())).await?;
    assert!(a1.mac.is_none() && a1.gateway.is_none());
    println!(
        "network l3: ipvlan L3 on lan0; c1 {}, c2 {} (no gateway: the device is the route)",
        a1.ip().unwrap(),
        a2.ip().unwrap()
    );
    let at = SocketAddr::new(a2.ip().unwrap(), 7000);
    tcp_probe(&c2, at, &c1, at).await?;
    println!("proved: c1 -> c2 over ipvlan L3");
    // The LAN machine routes the container subnet through the host.
    let lan_ns = sb.netns_path("lan");
    let st = Command::new("ip")
        .arg("-n")
        .arg(lan_ns.file_name().unwrap())
        .args(["route", "add", "10.33.0.0/24", "via", "198.31.1.1"])
        .status()?;
    assert!(st.success());
    let seen = tcp_probe(&lan, sa("198.31.1.2:7001"), &c1, sa("198.31.1.2:7001")).await?;
    println!(
        "proved: c1 -> the LAN machine, which saw {} (routed, not NATed)",
        seen.ip()
    );
    host.detach(&net, "c1").await?;
    host.detach(&net, "c2").await?;
    host.delete_network(&net).await?;
    println!("removed: endpoints and network");
    Ok(ExitCode::SUCCESS)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}
