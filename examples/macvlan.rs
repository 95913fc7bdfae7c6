//! A macvlan network on an 802.1q parent (`parent=lan0.50`), in a sandbox — what it proves, by
//! traffic: berth makes the VLAN sub-interface (it was missing), a container on it talks to a
//! machine of the LAN over VLAN 50 with its own MAC, and the sub-interface goes with the last
//! network that uses it.
//!
//! Needs a kernel with 802.1q (`8021q`): `cargo xtask vm-run target/debug/examples/macvlan`
//! runs it on Debian's stock kernel (the VM tier does); elsewhere it says why it cannot run.
//!
//! ```text
//! cargo run --example macvlan       # as root; never touches the machine's own namespace
//! ```

use std::net::SocketAddr;
use std::process::{Command, ExitCode};

use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Endpoint, Error, Host, Network};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut sb = Sandbox::new("ex-macvlan").await?;
    // The LAN: a machine joined to the host by a veth (`lan0` on the host side).
    let lan = sb
        .add_peer(
            "lan",
            "lan0",
            "198.31.0.1/24".parse()?,
            "198.31.0.2/24".parse()?,
        )
        .await?;
    let c = sb.netns("c").await?;
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .build()
        .await?;
    let net = match host
        .create_network(
            Network::macvlan("vlan50")
                .parent("lan0.50".parse()?)
                .subnet("198.32.0.0/24".parse()?),
        )
        .await
    {
        Err(e @ Error::Unsupported { .. }) => {
            println!(
                "cannot run here: {e} (run it in the VM: cargo xtask vm-run target/debug/examples/macvlan)"
            );
            return Ok(ExitCode::from(77));
        }
        r => r?,
    };
    println!(
        "network vlan50: macvlan on {} (made by berth)",
        net.device.as_deref().unwrap_or("lan0.50")
    );
    // The LAN router's end of VLAN 50 (the network's gateway, .1).
    let lan_ns = sb.netns_path("lan");
    let lan_name = lan_ns.file_name().unwrap().to_string_lossy();
    for args in [
        &[
            "link", "add", "link", "eth0", "name", "eth0.50", "type", "vlan", "id", "50",
        ][..],
        &["addr", "add", "198.32.0.1/24", "dev", "eth0.50"],
        &["link", "set", "eth0.50", "up"],
    ] {
        let st = Command::new("ip")
            .arg("-n")
            .arg(&*lan_name)
            .args(args)
            .status()?;
        assert!(st.success(), "ip {args:?} in the LAN netns");
    }
    let att = host.attach(&net, Endpoint::new("c", c.clone())).await?;
    let seen = tcp_probe(&lan, sa("198.32.0.1:7000"), &c, sa("198.32.0.1:7000")).await?;
    println!(
        "proved: c ({}, MAC {}) reached the LAN machine over VLAN 50; it saw {}",
        att.ip().unwrap(),
        att.mac.map(|m| m.to_string()).unwrap_or_default(),
        seen.ip()
    );
    host.detach(&net, "c").await?;
    host.delete_network(&net).await?;
    let left = Command::new("ip")
        .args(["-n", sb.host_name(), "link", "show", "lan0.50"])
        .output()?;
    assert!(
        !left.status.success(),
        "lan0.50 removed with its last network"
    );
    println!("proved: lan0.50 went with the last network that used it");
    Ok(ExitCode::SUCCESS)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}
