//! The `none` driver: a container netns with only `lo`, up — what it proves: loopback traffic
//! inside the container works, and it has no other interface (no way in or out).
//!
//! ```text
//! cargo run --example none          # as root; in a sandbox
//! ```

use berth::netlink::Netlink;
use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Endpoint, Host, Network};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sb = Sandbox::new("ex-none").await?;
    let c = sb.netns("c").await?;
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .build()
        .await?;
    let net = host.create_network(Network::none("isolated")).await?;
    let att = host.attach(&net, Endpoint::new("c", c.clone())).await?;
    let links: Vec<String> = Netlink::open(&c)
        .await?
        .links()
        .await?
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(links, ["lo"], "only lo");
    println!(
        "attached c to 'isolated' (none): interfaces {links:?}, address {:?}",
        att.ipv4
    );
    let local = "127.0.0.1:7000".parse()?;
    tcp_probe(&c, local, &c, local).await?;
    println!("proved: 127.0.0.1 inside the container carries TCP; it has no other interface");
    host.detach(&net, "c").await?;
    host.delete_network(&net).await?;
    println!("removed: endpoint and network");
    Ok(())
}
