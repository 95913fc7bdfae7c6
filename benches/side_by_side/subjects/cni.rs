//! The CNI reference plugins (Debian's `containernetworking-plugins`), driven by the CNI protocol
//! the way libcni runs a network configuration list: each plugin exec'd with `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` in its environment and its
//! configuration on stdin (with the list's `name` and `cniVersion`, `runtimeConfig` for the
//! capabilities it declares, and the previous plugin's result as `prevResult`).
//!
//! The list: `bridge` (gateway, masquerade, hairpin) with `host-local` IPAM (its `dataDir` in the
//! sandbox's temp dir), then `portmap` (SNAT for hairpin). ADD runs them in order; DEL runs them
//! in reverse, each given the cached ADD result as `prevResult` (as libcni does for CNI ≥ 0.4).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

use super::{NETWORK, Op, Ports, Subject, exec_cni};
use crate::world::{Container, GATEWAY, SUBNET, World};

/// Where Debian installs the plugins.
pub const CNI_PATH: &str = "/usr/lib/cni";
const VERSION: &str = "1.0.0";

/// The CNI plugin chain.
pub struct Cni {
    world: World,
    data_dir: PathBuf,
    /// The last ADD result per container (libcni keeps it on disk for DEL).
    results: Mutex<HashMap<u32, Value>>,
}

impl Cni {
    /// The chain over `world`'s host netns; host-local's data in the world's temp dir.
    pub fn new(world: World) -> Self {
        let data_dir = world.dir().join("cni-ipam");
        Cni {
            world,
            data_dir,
            results: Mutex::default(),
        }
    }

    /// Whether the plugins are installed.
    pub fn installed() -> bool {
        ["bridge", "host-local", "portmap"]
            .iter()
            .all(|p| Path::new(CNI_PATH).join(p).exists())
    }

    fn bridge_conf(&self) -> Value {
        json!({
            "cniVersion": VERSION,
            "name": NETWORK,
            "type": "bridge",
            "bridge": "cnibr0",
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.data_dir,
            },
        })
    }

    fn portmap_conf(ports: &Ports) -> Value {
        let maps: Vec<_> = ports
            .iter()
            .map(|(h, p)| json!({"hostPort": h, "containerPort": p, "protocol": "tcp"}))
            .collect();
        json!({
            "cniVersion": VERSION,
            "name": NETWORK,
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
            "runtimeConfig": {"portMappings": maps},
        })
    }

    /// Execs one plugin; returns its parsed result (ADD) and the process's figures.
    fn exec(
        &self,
        plugin: &str,
        cmd: &str,
        c: &Container,
        conf: &Value,
    ) -> Result<(Value, Option<u64>), String> {
        let exe = Path::new(CNI_PATH).join(plugin);
        let (v, ran) = exec_cni(&self.world, &exe, Path::new(CNI_PATH), cmd, c, conf)?;
        Ok((v, ran.maxrss_kib))
    }
}

impl Subject for Cni {
    fn key(&self) -> &'static str {
        "cni"
    }
    fn label(&self) -> &'static str {
        "CNI plugins"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// CNI has no network-create step: the bridge is made by the first ADD.
    fn create_network(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn attach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        let start = Instant::now();
        let (res, rss1) = self.exec("bridge", "ADD", c, &self.bridge_conf())?;
        let mut pm = Self::portmap_conf(ports);
        pm["prevResult"] = res;
        let (res, rss2) = match self.exec("portmap", "ADD", c, &pm) {
            Ok(x) => x,
            Err(e) => {
                // libcni deletes what the list made when a later plugin fails.
                let _ = self.detach_with(c, ports, &pm["prevResult"]);
                return Err(e);
            }
        };
        let elapsed = start.elapsed();
        self.results.lock().unwrap().insert(c.idx, res);
        Ok(Op {
            elapsed,
            maxrss_kib: rss1.max(rss2),
            steps: Vec::new(),
        })
    }

    fn detach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        let prev = self
            .results
            .lock()
            .unwrap()
            .remove(&c.idx)
            .unwrap_or(Value::Null);
        self.detach_with(c, ports, &prev)
    }
}

impl Cni {
    /// DEL through the list in reverse; every plugin runs even when one fails.
    fn detach_with(&self, c: &Container, ports: &Ports, prev: &Value) -> Result<Op, String> {
        let start = Instant::now();
        let mut pm = Self::portmap_conf(ports);
        let mut br = self.bridge_conf();
        if !prev.is_null() {
            pm["prevResult"] = prev.clone();
            br["prevResult"] = prev.clone();
        }
        let a = self.exec("portmap", "DEL", c, &pm);
        let b = self.exec("bridge", "DEL", c, &br);
        let elapsed = start.elapsed();
        let (_, rss1) = a?;
        let (_, rss2) = b?;
        Ok(Op {
            elapsed,
            maxrss_kib: rss1.max(rss2),
            steps: Vec::new(),
        })
    }
}
