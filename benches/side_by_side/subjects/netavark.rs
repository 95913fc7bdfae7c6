//! netavark, driven as podman drives it: `netavark --config DIR setup NETNS` and `teardown
//! NETNS`, the network options as JSON on stdin, inside the sandbox host netns, with the binary's
//! default firewall driver working on that netns' ruleset. Two of them can take part: Debian's
//! package (1.4, iptables, here iptables-nft) as `netavark`, and any other build given with
//! `--netavark PATH` (podman's current 2.x, nftables) as `nv2`. Each run names the version the
//! binary prints and its firewall driver ([`Version::probe`]).
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

/// What a netavark binary says of itself (`netavark version`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    /// The binary.
    pub bin: PathBuf,
    /// Its version, e.g. `2.1.0`.
    pub version: String,
    /// Its default firewall driver: `default_fw_driver` of its version output; 1.x prints
    /// none, and its default is `iptables`.
    pub firewall: String,
}

impl Version {
    /// Runs `bin version` and reads its JSON.
    pub fn probe(bin: &Path) -> Result<Version, String> {
        let out = std::process::Command::new(bin)
            .arg("version")
            .output()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!("{} version: {}", bin.display(), out.status));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{} version: {e}", bin.display()))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Ok(Version {
            bin: bin.to_path_buf(),
            version: field("version").ok_or(format!("{} version: no version", bin.display()))?,
            firewall: field("default_fw_driver").unwrap_or_else(|| "iptables".into()),
        })
    }

    /// How tables name it: `netavark 2.1.0 (nftables)`.
    pub fn describe(&self) -> String {
        format!("netavark {} ({})", self.version, self.firewall)
    }
}

/// netavark.
pub struct Netavark {
    world: World,
    config: PathBuf,
    key: &'static str,
    bin: PathBuf,
}

impl Netavark {
    /// netavark `bin` over `world`'s host netns as subject `key` (`netavark` or `nv2`); its
    /// config dir in the world's temp dir.
    pub fn new(world: World, key: &'static str, bin: PathBuf) -> Self {
        let config = world.dir().join("netavark");
        Netavark {
            world,
            config,
            key,
            bin,
        }
    }

    /// Whether Debian's binary is installed.
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
        let ran = Proc::new(self.world.host(), &self.bin)
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
        self.key
    }
    fn label(&self) -> &'static str {
        crate::report::label(self.key)
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
