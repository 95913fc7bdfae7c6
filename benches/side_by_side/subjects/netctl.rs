//! berth through `netctl` (the release build of `examples/netctl.rs`), one process per operation
//! run inside the sandbox host netns: the like-for-like comparison with the CLI peers.

use std::path::PathBuf;

use super::{NETWORK, Op, Ports, Subject};
use crate::exec::Proc;
use crate::world::{Container, SUBNET, World};

/// berth through its example CLI.
pub struct Netctl {
    world: World,
    bin: PathBuf,
    state: PathBuf,
}

impl Netctl {
    /// `bin` is the netctl binary.
    pub fn new(world: World, bin: PathBuf) -> Self {
        let state = world.dir().join("state");
        Netctl { world, bin, state }
    }

    fn run(&self, args: &[&str], what: &str) -> Result<Op, String> {
        let ran = Proc::new(self.world.host(), &self.bin)
            .args([std::ffi::OsStr::new("--state-dir"), self.state.as_os_str()])
            .args(args)
            .run()
            .map_err(|e| format!("{what}: {e}"))?
            .check(what)?;
        Ok(Op {
            elapsed: ran.elapsed,
            maxrss_kib: ran.maxrss_kib,
            steps: Vec::new(),
        })
    }
}

impl Subject for Netctl {
    fn key(&self) -> &'static str {
        "netctl"
    }
    fn label(&self) -> &'static str {
        "berth (netctl)"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    fn create_network(&mut self) -> Result<(), String> {
        self.run(
            &["network", "create", "--subnet", SUBNET, NETWORK],
            "netctl network create",
        )
        .map(|_| ())
    }

    fn attach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        let specs: Vec<String> = ports.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        let mut args = vec!["connect", "--netns", &c.path];
        for s in &specs {
            args.extend(["-p", s]);
        }
        args.extend([NETWORK, &c.id]);
        self.run(&args, &format!("netctl connect {}", c.id))
    }

    fn startup(&self) -> Option<Result<Op, String>> {
        Some(self.run(&["network", "ls"], "netctl network ls"))
    }

    fn detach(&self, c: &Container, _ports: &Ports) -> Result<Op, String> {
        self.run(
            &["disconnect", NETWORK, &c.id],
            &format!("netctl disconnect {}", c.id),
        )
    }
}
