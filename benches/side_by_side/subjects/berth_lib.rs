//! berth in-process: one `Host` over the sandbox host netns, called the way a runtime calls it.
//! A `FaultHook` that never fails timestamps the end of every attach step, which gives the
//! per-step profile (the same approach as `benches/operations.rs`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth::{Endpoint, Host, Network, Port, Step};

use super::{NETWORK, Op, OpResult, Ports, PortsOf, Subject};
use crate::rt;
use crate::world::{Container, SUBNET, World};

type Marks = Arc<Mutex<Vec<(Step, Instant)>>>;

/// berth through the library.
pub struct BerthLib {
    world: World,
    host: Arc<Host>,
    marks: Marks,
}

impl BerthLib {
    /// A `Host` over `world`'s host netns, state in its temp dir.
    pub fn new(world: World) -> Result<Self, String> {
        let marks: Marks = Arc::default();
        let m = marks.clone();
        let host = rt()
            .block_on(
                Host::builder()
                    .state_dir(world.dir().join("state"))
                    .netns(world.host().clone())
                    .fault_hook(Arc::new(move |step| {
                        m.lock().unwrap().push((step, Instant::now()));
                        Ok(())
                    }))
                    .build(),
            )
            .map_err(|e| format!("berth host: {e}"))?;
        Ok(BerthLib {
            world,
            host: Arc::new(host),
            marks,
        })
    }
}

fn spec(c: &Container, ports: &Ports) -> berth::EndpointSpec {
    ports
        .iter()
        .fold(Endpoint::new(c.id.clone(), c.netns.clone()), |e, (h, p)| {
            e.publish(Port::tcp(*h).to(*p))
        })
}

/// What the segment of attach that ends at `step` does.
pub fn step_label(step: &str) -> String {
    match step {
        "ipam-allocate" => "lock + records + IPAM allocate (disk)".into(),
        "driver-attach" => "veth, address, routes (netlink)".into(),
        "firewall-endpoint" => "published ports (nf_tables)".into(),
        "persist-endpoint" => "endpoint record (disk)".into(),
        "end" => "after the record: default-route election (netlink)".into(),
        other => other.into(),
    }
}

impl Subject for BerthLib {
    fn key(&self) -> &'static str {
        "lib"
    }
    fn label(&self) -> &'static str {
        "berth (lib)"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    fn create_network(&mut self) -> Result<(), String> {
        rt().block_on(
            self.host
                .create_network(Network::bridge(NETWORK).subnet(SUBNET.parse().unwrap())),
        )
        .map(|_| ())
        .map_err(|e| format!("create network: {e}"))
    }

    fn attach(&self, c: &Container, ports: &Ports) -> Result<Op, String> {
        self.marks.lock().unwrap().clear();
        let spec = spec(c, ports);
        let start = Instant::now();
        rt().block_on(self.host.attach(NETWORK, spec))
            .map_err(|e| format!("attach {}: {e}", c.id))?;
        let end = Instant::now();
        let mut prev = start;
        let mut steps = Vec::new();
        let marks: Vec<(String, Instant)> = self
            .marks
            .lock()
            .unwrap()
            .drain(..)
            .map(|(s, t)| (s.to_string(), t))
            .chain([("end".to_string(), end)])
            .collect();
        for (s, t) in marks {
            steps.push((step_label(&s), t.duration_since(prev)));
            prev = t;
        }
        Ok(Op {
            elapsed: end - start,
            maxrss_kib: None,
            steps,
        })
    }

    fn detach(&self, c: &Container, _ports: &Ports) -> Result<Op, String> {
        let start = Instant::now();
        rt().block_on(self.host.detach(NETWORK, &c.id))
            .map_err(|e| format!("detach {}: {e}", c.id))?;
        Ok(Op {
            elapsed: start.elapsed(),
            ..Op::default()
        })
    }

    /// Tasks in one process: one tokio task per container on the runtime's workers.
    fn attach_all(&self, cs: &[Container], ports: &PortsOf) -> Vec<OpResult> {
        let tasks: Vec<_> = cs
            .iter()
            .map(|c| {
                let (host, spec, id) = (self.host.clone(), spec(c, &ports(c)), c.id.clone());
                async move {
                    let t = Instant::now();
                    host.attach(NETWORK, spec)
                        .await
                        .map(|_| Op {
                            elapsed: t.elapsed(),
                            ..Op::default()
                        })
                        .map_err(|e| format!("attach {id}: {e}"))
                }
            })
            .collect();
        spawn_all(tasks)
    }

    fn detach_all(&self, cs: &[Container], _ports: &PortsOf) -> Vec<OpResult> {
        let tasks: Vec<_> = cs
            .iter()
            .map(|c| {
                let (host, id) = (self.host.clone(), c.id.clone());
                async move {
                    let t = Instant::now();
                    host.detach(NETWORK, &id)
                        .await
                        .map(|_| Op {
                            elapsed: t.elapsed(),
                            ..Op::default()
                        })
                        .map_err(|e| format!("detach {id}: {e}"))
                }
            })
            .collect();
        spawn_all(tasks)
    }
}

fn spawn_all<F>(tasks: Vec<F>) -> Vec<OpResult>
where
    F: std::future::Future<Output = OpResult> + Send + 'static,
{
    rt().block_on(async {
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
        }
        out
    })
}
