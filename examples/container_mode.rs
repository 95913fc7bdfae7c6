//! Container mode (`docker run --network container:OTHER`): a second container shares the
//! first one's netns and name files — what it proves: a process of the sharer, listening in
//! the shared netns, is reached at the owner's address by a third container; the sharer's
//! hosts file carries the owner's address.
//!
//! ```text
//! cargo run --example container_mode   # as root; in a sandbox
//! ```

use std::net::SocketAddr;

use berth::sandbox::{Sandbox, tcp_probe};
use berth::{Endpoint, Host, Netns, Network};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sb = Sandbox::new("ex-cmode").await?;
    let (app, client) = (sb.netns("app").await?, sb.netns("client").await?);
    let host = Host::builder()
        .state_dir(sb.state_dir())
        .netns(sb.host().clone())
        .build()
        .await?;
    let net = host
        .create_network(Network::bridge("pod").subnet("10.87.0.0/24".parse()?))
        .await?;
    let owner = host.attach(&net, Endpoint::new("app", app.clone())).await?;
    host.attach(&net, Endpoint::new("client", client.clone()))
        .await?;
    // "sidecar" joins app's sandbox: no interface of its own.
    host.share_sandbox("sidecar", "app").await?;
    let path = host
        .sandbox_netns("sidecar")
        .await?
        .expect("app's netns, opened by path");
    let shared = Netns::from_path(&path)?;
    println!("sidecar shares app's netns {}", path.display());

    let at = SocketAddr::new(owner.ip().unwrap(), 9000);
    tcp_probe(&shared, at, &client, at).await?;
    println!(
        "proved: a listener of sidecar (in the shared netns) is reached at app's address {at}"
    );
    let files = host
        .write_files("sidecar", sb.state_dir().join("sidecar-etc"))
        .await?;
    assert!(files.hosts.contains(&owner.ip().unwrap().to_string()));
    println!(
        "proved: sidecar's /etc/hosts names app's address:\n{}",
        files.hosts.trim_end()
    );

    host.detach(&net, "app").await?;
    host.detach(&net, "client").await?;
    host.delete_network(&net).await?;
    println!("removed: endpoints and network");
    Ok(())
}
