//! The five sides of the comparison, behind one trait: berth in-process (what a runtime gets),
//! berth through `netctl` (a process per operation), berth as a CNI plugin (`berth-cni`, exec'd
//! once per ADD/DEL like the reference chain), netavark (`setup`/`teardown` with its JSON
//! options on stdin) and the CNI reference plugins (bridge + host-local, then portmap, exec'd
//! with `CNI_*` in the environment and `prevResult` chained).
//!
//! All five do the same work: one bridge network `10.201.0.0/16` in their own sandbox host netns,
//! each container a veth into its own netns, an address, a default route, masquerade, and its
//! published TCP ports.

pub mod berth_cni;
pub mod berth_lib;
pub mod cni;
pub mod netavark;
pub mod netctl;

use std::sync::Barrier;
use std::time::Duration;

use crate::world::{Container, World};

/// The network every subject creates.
pub const NETWORK: &str = "bench";

/// Published ports of one container: `(host port, container port)`, TCP.
pub type Ports = Vec<(u16, u16)>;

/// One timed operation.
#[derive(Debug, Clone, Default)]
pub struct Op {
    /// Wall time of the operation (process sides: from fork to reaping the last process).
    pub elapsed: Duration,
    /// Peak RSS of the process(es) that did it, KiB (process sides only).
    pub maxrss_kib: Option<u64>,
    /// In-process attach: time per step (label, duration), from the `FaultHook`.
    pub steps: Vec<(String, Duration)>,
}

/// One side of the comparison.
pub trait Subject: Sync {
    /// Short key (`lib`, `netctl`, `bcni`, `netavark`, `cni`): file names, netns labels.
    fn key(&self) -> &'static str;
    /// How tables name it.
    fn label(&self) -> &'static str;
    /// Its sandbox.
    fn world(&self) -> &World;
    /// Its sandbox, mutably.
    fn world_mut(&mut self) -> &mut World;
    /// Creates the bridge network, where the subject has such a step (untimed).
    fn create_network(&mut self) -> Result<(), String>;
    /// Attaches `c` with `ports` published.
    fn attach(&self, c: &Container, ports: &Ports) -> Result<Op, String>;
    /// Detaches `c` (which was attached with `ports`: netavark and CNI are told them again).
    fn detach(&self, c: &Container, ports: &Ports) -> Result<Op, String>;

    /// A process side's fixed cost, timed doing no networking at all (netctl: `network ls`,
    /// which starts the process, builds the `Host` and reads the network records). Default:
    /// none.
    fn startup(&self) -> Option<OpResult> {
        None
    }

    /// Attaches all of `cs` at once. Default: one thread per container, released together,
    /// each running [`Subject::attach`] — separate processes for the process sides.
    fn attach_all(&self, cs: &[Container], ports: &PortsOf) -> Vec<OpResult> {
        at_once(cs, |c| self.attach(c, &ports(c)))
    }

    /// Detaches all of `cs` at once (as [`Subject::attach_all`]).
    fn detach_all(&self, cs: &[Container], ports: &PortsOf) -> Vec<OpResult> {
        at_once(cs, |c| self.detach(c, &ports(c)))
    }
}

/// Execs one CNI plugin `exe` with `cmd` for container `c` inside `world`'s host netns, as
/// libcni does (`CNI_*` in the environment, `conf` on stdin, `CNI_PATH` = `cni_path`): its
/// parsed result (`Null` when it printed nothing) and the process's figures.
pub fn exec_cni(
    world: &World,
    exe: &std::path::Path,
    cni_path: &std::path::Path,
    cmd: &str,
    c: &Container,
    conf: &serde_json::Value,
) -> Result<(serde_json::Value, crate::exec::Ran), String> {
    let name = exe.file_name().unwrap_or_default().to_string_lossy();
    let ran = crate::exec::Proc::new(world.host(), exe)
        .env("PATH", PEER_PATH)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", &c.id)
        .env("CNI_NETNS", &c.path)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .stdin(serde_json::to_vec(conf).unwrap())
        .run()
        .map_err(|e| format!("{name} {cmd}: {e}"))?
        .check(&format!("{name} {cmd} {}", c.id))?;
    let v = if ran.stdout.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&ran.stdout).map_err(|e| format!("{name} result: {e}"))?
    };
    Ok((v, ran))
}

/// Which ports each container publishes.
pub type PortsOf = dyn Fn(&Container) -> Ports + Sync;

/// The outcome of one operation.
pub type OpResult = Result<Op, String>;

/// Runs `f` for every container on its own thread, all released by one barrier.
pub fn at_once<F>(cs: &[Container], f: F) -> Vec<OpResult>
where
    F: Fn(&Container) -> OpResult + Sync,
{
    let barrier = Barrier::new(cs.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = cs
            .iter()
            .map(|c| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(c)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    })
}

/// `PATH` for the peers' processes: they run `iptables` (netavark, portmap, bridge's ipMasq).
pub const PEER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
