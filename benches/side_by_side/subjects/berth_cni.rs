//! berth as a CNI plugin (`berth-cni`, the release build of the workspace's `cni/` crate),
//! driven exactly like the reference plugins in [`super::cni`]: libcni's protocol by hand, one
//! process per operation, exec'd inside the sandbox host netns with `CNI_COMMAND`,
//! `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` in its environment and its
//! configuration on stdin.
//!
//! The network configuration list holds one plugin, `berth-cni`: the same subnet and gateway as
//! the reference chain, a bridge of its own (`bcnibr0`), masquerade (berth-cni's default), its
//! `stateDir` in the sandbox's temp dir, and `capabilities.portMappings` with the ports in
//! `runtimeConfig.portMappings` (what libcni fills from the capability). ADD execs it once; DEL
//! execs it once with the cached ADD result as `prevResult` (as libcni does for CNI ≥ 0.4). Like
//! the chain, there is no create step: the first ADD makes the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::{NETWORK, Op, Ports, Subject, exec_cni};
use crate::world::{Container, GATEWAY, SUBNET, World};

const VERSION: &str = "1.0.0";

/// berth-cni, one plugin in the list.
pub struct BerthCni {
    world: World,
    bin: PathBuf,
    state_dir: PathBuf,
    /// The last ADD result per container (libcni keeps it on disk for DEL).
    results: Mutex<HashMap<u32, Value>>,
}

impl BerthCni {
    /// `bin` is the berth-cni binary; its state in `world`'s temp dir.
    pub fn new(world: World, bin: PathBuf) -> Self {
        let state_dir = world.dir().join("berth-cni");
        BerthCni {
            world,
            bin,
            state_dir,
            results: Mutex::default(),
        }
    }

    /// The plugin's configuration as libcni hands it over: the list's `name` and `cniVersion`,
    /// and `runtimeConfig` for the capability it declares.
    fn conf(&self, ports: &Ports) -> Value {
        let maps: Vec<_> = ports
            .iter()
            .map(|(h, p)| json!({"hostPort": h, "containerPort": p, "protocol": "tcp"}))
            .collect();
        json!({
            "cniVersion": VERSION,
            "name": NETWORK,
            "type": "berth-cni",
            "bridge": "bcnibr0",
            "subnets": [{"subnet": SUBNET, "gateway": GATEWAY}],
            "ipMasq": true,
            "stateDir": self.state_dir,
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": maps},
        })
    }

    /// Execs the plugin once: its parsed result (ADD) and the process's figures.
    fn exec(&self, cmd: &str, c: &Container, conf: &Value) -> Result<(Value, Op), String> {
        let dir = self.bin.parent().unwrap_or(Path::new("."));
        let (v, ran) = exec_cni(&self.world, &self.bin, dir, cmd, c, conf)?;
        Ok((
            v,
            Op {
                elapsed: ran.elapsed,
                maxrss_kib: ran.maxrss_kib,
                steps: Vec::new(),
            },
        ))
    }
}

impl Subject for BerthCni {
    fn key(&self) -> &'static str {
        "bcni"
    }
    fn label(&self) -> &'static str {
        "berth-cni"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// No create step, as with the reference chain: the first ADD makes the network.
    fn create_network(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn attach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        let (res, op) = self.exec("ADD", c, &self.conf(ports))?;
        self.results.lock().unwrap().insert(c.idx, res);
        Ok(op)
    }

    fn detach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        let prev = self.results.lock().unwrap().remove(&c.idx);
        let mut conf = self.conf(ports);
        if let Some(prev) = prev.filter(|p| !p.is_null()) {
            conf["prevResult"] = prev;
        }
        self.exec("DEL", c, &conf).map(|(_, op)| op)
    }
}
