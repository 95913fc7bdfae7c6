//! netavark (Debian's package), driven as podman drives it: `netavark --config DIR setup NETNS`
//! and `teardown NETNS`, the network options as JSON on stdin, inside the sandbox host netns,
//! with its default firewall driver (iptables, here iptables-nft) working on that netns' ruleset.
//!
//! netavark does no IPAM: podman picks each container's address and passes it as `static_ips`.
//! The harness does the same, so netavark's figures leave out the caller's allocation.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{NETWORK, Op, PEER_PATH, Ports, Subject};
use crate::exec::Proc;
use crate::world::{Container, GATEWAY, SUBNET, World};

/// Where Debian installs netavark.
pub const BIN: &str = "/usr/lib/podman/netavark";

/// A fixed 64-hex network id (podman gives one per network).
const NETWORK_ID: &str = "be47b0e1c4a5d6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1";

/// netavark.
pub struct Netavark {
    world: World,
    config: PathBuf,
}

impl Netavark {
    /// netavark over `world`'s host netns; its config dir in the world's temp dir.
    pub fn new(world: World) -> Self {
        let config = world.dir().join("netavark");
        Netavark { world, config }
    }

    /// Whether the binary is installed.
    pub fn installed() -> bool {
        Path::new(BIN).exists()
    }

    fn options(c: &Container, ports: &Ports) -> Vec<u8> {
        let mappings: Vec<_> = ports
            .iter()
            .map(|(h, p)| {
                json!({"host_ip": "", "container_port": p, "host_port": h, "range": 1,
                       "protocol": "tcp"})
            })
            .collect();
        let v = json!({
            "container_id": format!("{:064x}", 0xbe47_0000_0000u64 + u64::from(c.idx)),
            "container_name": c.id,
            "networks": { NETWORK: {
                "interface_name": "eth0",
                "static_ips": [c.static_ip().to_string()],
            }},
            "network_info": { NETWORK: {
                "name": NETWORK,
                "id": NETWORK_ID,
                "driver": "bridge",
                "network_interface": "navbr0",
                "subnets": [{"subnet": SUBNET, "gateway": GATEWAY}],
                "ipv6_enabled": false,
                "internal": false,
                "dns_enabled": false,
                "ipam_options": {"driver": "host-local"},
            }},
            "port_mappings": if mappings.is_empty() { serde_json::Value::Null } else { mappings.into() },
        });
        serde_json::to_vec(&v).unwrap()
    }

    fn run(&self, cmd: &str, c: &Container, ports: &Ports) -> Result<Op, String> {
        let ran = Proc::new(self.world.host(), BIN)
            .env("PATH", PEER_PATH)
            .args([std::ffi::OsStr::new("--config"), self.config.as_os_str()])
            .args([cmd, &c.path])
            .stdin(Self::options(c, ports))
            .run()
            .map_err(|e| format!("netavark {cmd}: {e}"))?
            .check(&format!("netavark {cmd} {}", c.id))?;
        Ok(Op {
            elapsed: ran.elapsed,
            maxrss_kib: ran.maxrss_kib,
            steps: Vec::new(),
        })
    }
}

impl Subject for Netavark {
    fn key(&self) -> &'static str {
        "netavark"
    }
    fn label(&self) -> &'static str {
        "netavark"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// netavark has no network-create step: the network's definition comes with every setup.
    fn create_network(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.config).map_err(|e| format!("netavark config dir: {e}"))
    }

    fn attach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        self.run("setup", c, ports)
    }

    fn detach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        self.run("teardown", c, ports)
    }
}
