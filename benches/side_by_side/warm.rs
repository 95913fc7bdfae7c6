//! Workload (a): attach and detach one container on a warm network, with 0 and 2 published
//! ports. Every subject's network already holds one container (so netavark keeps its bridge
//! and chains between rounds, as the others do). Rounds are interleaved — each round runs every
//! subject once, starting one further along each time — so machine noise hits all alike.
//!
//! Before measuring, each subject proves it did the work: a TCP connection from an outside
//! netns to the published port reaches a listener in the container.

use std::time::{Duration, Instant};

use berth::MacAddr;
use berth::netlink::Netlink;
use berth::sandbox::tcp_probe;

use crate::exec::Proc;
use crate::subjects::{Op, Ports, Subject};
use crate::world::{Container, HOST_UP, World};
use crate::{check_stop, rt};

/// One subject's figures.
pub struct WarmSubject {
    /// Subject key.
    pub key: &'static str,
    /// Subject label.
    pub label: &'static str,
    /// Whether the published port was reached from outside.
    pub probe: Result<(), String>,
    /// Attaches with 0 and with 2 published ports.
    pub attach: [Vec<Op>; 2],
    /// Detaches with 0 and with 2 published ports.
    pub detach: [Vec<Op>; 2],
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Workload (a)'s results.
pub struct Warm {
    /// Measured rounds per port count.
    pub rounds: usize,
    /// Per subject.
    pub subjects: Vec<WarmSubject>,
    /// Starting a process that does nothing (`/bin/true`) the way every process side starts.
    pub null_proc: Vec<Duration>,
    /// Deleting one veth pair (host end on a bridge, peer in a container) through rtnetlink:
    /// the kernel's floor under every detach.
    pub veth_delete: Vec<Duration>,
    /// netctl doing no networking (`network ls`: process start, `Host` build, the network
    /// records), when netctl takes part.
    pub netctl_startup: Vec<Duration>,
}

/// The two port sets: none, and two TCP ports.
pub fn port_sets() -> [Ports; 2] {
    [Vec::new(), vec![(18080, 80), (18081, 81)]]
}

/// Runs workload (a) with `rounds` measured rounds per port count.
pub fn run(subjects: &mut [Box<dyn Subject>], rounds: usize) -> Result<Warm, String> {
    let mut cs: Vec<Container> = Vec::new();
    // One container stays attached on every network, so it is warm.
    let mut holders: Vec<Container> = Vec::new();
    let mut out: Vec<WarmSubject> = Vec::new();
    for s in subjects.iter_mut() {
        s.create_network()?;
        rt().block_on(s.world_mut().add_outside())?;
        let holder = rt().block_on(s.world().container(0))?;
        s.attach(&holder, &Vec::new())
            .map_err(|e| format!("{}: holder: {e}", s.label()))?;
        holders.push(holder);
        cs.push(rt().block_on(s.world().container(1))?);
        out.push(WarmSubject {
            key: s.key(),
            label: s.label(),
            probe: Ok(()),
            attach: Default::default(),
            detach: Default::default(),
            error: None,
        });
    }
    let [none, two] = port_sets();
    for (i, s) in subjects.iter().enumerate() {
        out[i].probe = probe(s.as_ref(), &cs[i], &two);
        println!(
            "  {:<16} published port from outside: {}",
            s.label(),
            match &out[i].probe {
                Ok(()) => "reached".to_string(),
                Err(e) => format!("NOT reached ({e})"),
            }
        );
    }
    let null_ns = subjects[0].world().host().clone();
    let mut null_proc = Vec::new();
    let floor = rt().block_on(VethFloor::new(subjects[0].world()))?;
    let mut veth_delete = Vec::new();
    let mut netctl_startup = Vec::new();
    // Two unmeasured rounds, then the measured ones; each round runs both port sets on every
    // subject, so neither the port sets nor the subjects see different stretches of time.
    for r in 0..rounds + 2 {
        check_stop()?;
        let n = subjects.len();
        for k in 0..n {
            let i = (r + k) % n;
            for (pi, ports) in [&none, &two].into_iter().enumerate() {
                if out[i].error.is_some() {
                    continue;
                }
                let s = &subjects[i];
                let a = s.attach(&cs[i], ports);
                let d = a.as_ref().ok().map(|_| s.detach(&cs[i], ports));
                match (a, d) {
                    (Ok(a), Some(Ok(d))) if r >= 2 => {
                        out[i].attach[pi].push(a);
                        out[i].detach[pi].push(d);
                    }
                    (Ok(_), Some(Ok(_))) => {}
                    (Err(e), _) | (_, Some(Err(e))) => {
                        eprintln!("  {}: {e}", s.label());
                        out[i].error = Some(e);
                    }
                    (Ok(_), None) => unreachable!(),
                }
            }
        }
        if r >= 2 {
            let t = Proc::new(&null_ns, "/bin/true")
                .run()
                .map_err(|e| format!("/bin/true: {e}"))?;
            null_proc.push(t.elapsed);
            veth_delete.push(rt().block_on(floor.delete_one())?);
            for s in subjects.iter() {
                if let Some(op) = s.startup() {
                    netctl_startup.push(op?.elapsed);
                }
            }
        }
    }
    println!("  {rounds} rounds done");
    drop(holders);
    Ok(Warm {
        rounds,
        subjects: out,
        null_proc,
        veth_delete,
        netctl_startup,
    })
}

/// A bridge of its own (`floor0`) in a sandbox host netns and a container, to time the deletion
/// of one veth pair with nothing else around it.
struct VethFloor {
    nl: Netlink,
    bridge: u32,
    c: Container,
}

impl VethFloor {
    async fn new(w: &World) -> Result<VethFloor, String> {
        let nl = Netlink::open(w.host()).await.map_err(|e| e.to_string())?;
        let mac: MacAddr = "02:00:00:00:f1:00".parse().map_err(|e| format!("{e}"))?;
        let br = nl
            .link()
            .bridge("floor0")
            .mac(mac)
            .mtu(1500)
            .add()
            .await
            .map_err(|e| e.to_string())?;
        let c = w.container(9_999).await?;
        Ok(VethFloor {
            nl,
            bridge: br.index,
            c,
        })
    }

    /// Creates a veth pair (untimed), then times deleting it.
    async fn delete_one(&self) -> Result<Duration, String> {
        let mac: MacAddr = "02:00:00:00:f1:01".parse().map_err(|e| format!("{e}"))?;
        self.nl
            .link()
            .veth("flv0")
            .master(self.bridge)
            .mtu(1500)
            .group(0)
            .peer(berth::netlink::VethPeer {
                name: "eth9",
                mac,
                netns: &self.c.netns,
            })
            .add()
            .await
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        self.nl
            .delete_link("flv0")
            .await
            .map_err(|e| e.to_string())?;
        Ok(t.elapsed())
    }
}

/// Attaches `c` with `ports`, connects from the outside netns to the first published port
/// on the host's uplink address, and detaches.
fn probe(s: &dyn Subject, c: &Container, ports: &Ports) -> Result<(), String> {
    s.attach(c, ports)?;
    let outside = s.world().outside.clone().ok_or("no outside netns")?;
    let (host_port, port) = ports[0];
    let r = rt().block_on(tcp_probe(
        &c.netns,
        format!("0.0.0.0:{port}").parse().unwrap(),
        &outside,
        format!("{HOST_UP}:{host_port}").parse().unwrap(),
    ));
    s.detach(c, ports)?;
    r.map(|_| ()).map_err(|e| e.to_string())
}
