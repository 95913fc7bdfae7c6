//! [`EtcdServer`]: Debian's etcd as a throwaway cluster store for tests, demos and benchmarks —
//! on loopback ports of its own ([`EtcdServer::start`]) or inside a sandbox netns on one of its
//! addresses ([`EtcdServer::start_in`], for programs in other sandbox namespaces that reach it
//! over a sandbox underlay). Its data lives in a temp dir; it is killed (by its pid) and the
//! dir removed on drop, also when a test panics.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{ClusterStore, Etcd};
use crate::error::{Error, Result};
use crate::netns::Netns;

/// A running etcd (see the module docs).
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: PathBuf,
    ip: IpAddr,
    client_port: u16,
    peer_port: u16,
    /// The netns (a name under /run/netns) it runs in; `None`: the caller's own.
    netns: Option<String>,
}

fn io_err(op: &'static str, path: &Path, e: io::Error) -> Error {
    Error::state(op, path, e)
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| io_err("bind a free port", Path::new("127.0.0.1"), e))?;
    Ok(l.local_addr()
        .map_err(|e| io_err("bind a free port", Path::new("127.0.0.1"), e))?
        .port())
}

impl EtcdServer {
    /// Whether Debian's etcd (`etcd` on the `PATH`) is installed.
    pub fn installed() -> bool {
        Command::new("etcd").arg("--version").output().is_ok()
    }

    fn new(label: &str, ip: IpAddr, ports: (u16, u16), netns: Option<&str>) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("berth-etcd-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create dir", &dir, e))?;
        let mut s = EtcdServer {
            child: None,
            dir,
            ip,
            client_port: ports.0,
            peer_port: ports.1,
            netns: netns.map(str::to_string),
        };
        s.spawn()?;
        Ok(s)
    }

    /// An etcd on `127.0.0.1`, on two free ports; [`EtcdServer::store`] waits for it.
    pub fn start(label: &str) -> Result<EtcdServer> {
        let ports = (free_port()?, free_port()?);
        EtcdServer::new(label, IpAddr::from([127, 0, 0, 1]), ports, None)
    }

    /// An etcd inside the sandbox netns `netns` (its name under /run/netns), listening on
    /// `listen_ip` there (ports 2379 and 2380: the netns is the caller's own), started with
    /// `ip netns exec` (which execs: the child is etcd itself). Returns once etcd answers
    /// `/health` (within 60 s: a busy machine can be slow to start it).
    pub fn start_in(label: &str, netns: &str, listen_ip: IpAddr) -> Result<EtcdServer> {
        let mut s = EtcdServer::new(label, listen_ip, (2379, 2380), Some(netns))?;
        s.wait_healthy(Duration::from_secs(60))?;
        Ok(s)
    }

    /// Its client URL (`http://IP:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    /// dockerd's `--cluster-store` URL of it with keys under `prefix` (`/name`).
    pub fn cluster_store(&self, prefix: &str) -> String {
        format!("etcd://{}:{}{prefix}", self.ip, self.client_port)
    }

    /// Its data dir (and `etcd.log`, its stderr).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until etcd answers `GET /health` with `"health":"true"` (asked from the netns it
    /// runs in); an error after `limit` (or when etcd exits) carries its last answer and the
    /// last lines of its log.
    pub fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        let ns = match &self.netns {
            Some(n) => Netns::from_path(Path::new(crate::netns::NETNS_RUN_DIR).join(n))?,
            None => Netns::current()?,
        };
        let addr = SocketAddr::new(self.ip, self.client_port);
        let deadline = Instant::now() + limit;
        loop {
            let ask = move || -> io::Result<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"GET /health HTTP/1.0\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            };
            let last = match ns.run(ask) {
                Ok(Ok(answer)) if answer.contains(r#""health":"true""#) => return Ok(()),
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(Error::Store {
                    store: format!("etcd {}", self.endpoint()),
                    op: "start",
                    reason: format!(
                        "not healthy (exited: {exited:?}; last answer: {last}); its log, last \
                         lines first:\n{}",
                        tail.join("\n")
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let c = self.endpoint();
        let p = format!("http://{}:{}", self.ip, self.peer_port);
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        let child = cmd
            .args(["--name", "berth-sandbox", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("berth-sandbox={p}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(self.log())
            .spawn()
            .map_err(|e| io_err("start etcd", Path::new("etcd"), e))?;
        self.child = Some(child);
        Ok(())
    }

    /// etcd's stderr: `etcd.log` in its dir (appended to across restarts).
    fn log(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    /// Its pid (to stop and continue it); `None` once killed.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Kills it (its data stays: [`EtcdServer::restart`] brings it back with it).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped etcd does not die of SIGKILL until continued.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills it and starts it again on the same data and ports.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// A client with keys under `prefix`, once etcd answers (within 20 s).
    pub async fn store(&self, prefix: &str) -> Result<Etcd> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let last = match Etcd::connect([self.endpoint()], prefix).await {
                Ok(e) => match e.list("").await {
                    Ok(_) => return Ok(e),
                    Err(err) => err,
                },
                Err(err) => err,
            };
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
