//! Real-client tier: podman 4.3 (CNI backend) drives the plugin in a sandbox. See
//! `clients/mod.rs` (harness), `clients/podman.sh` (the scenarios).

mod clients;

/// `podman run --network berthnet` (an address from the subnet), `-p 8080:80` reached from an
/// outside netns and from the sandbox netns (127.0.0.1 and its own address), two containers
/// reaching each other, `podman rm -f` leaving nothing, 20 concurrent `podman run -d` (distinct,
/// reachable, all removed cleanly), `podman network ls/inspect`.
#[test]
fn podman_drives_the_plugin() {
    clients::run_scenario("podman.sh", &["podman", "crun", "conmon"]);
}
