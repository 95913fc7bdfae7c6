//! A real etcd (Debian's `etcd-server`) for tests: started on loopback ports of its own
//! ([`EtcdServer::start`]) or inside a sandbox netns on one of its addresses
//! ([`EtcdServer::start_in`], for programs that run in other sandbox namespaces and reach it
//! over a sandbox underlay), data in a temp dir, killed and removed on drop (also on panic).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::Netns;
use berth::cluster::{ClusterStore, Etcd};

/// A real etcd on 127.0.0.1 (or in a sandbox netns), killed and its data removed on drop.
pub struct EtcdServer {
    child: Option<Child>,
    dir: PathBuf,
    /// The address it listens on.
    ip: IpAddr,
    client_port: u16,
    peer_port: u16,
    /// The netns (a name under /run/netns) it runs in; `None`: the test's own.
    netns: Option<String>,
}

/// Whether Debian's etcd is installed; prints why the test is skipped when not.
fn installed() -> bool {
    if Command::new("etcd").arg("--version").output().is_ok() {
        return true;
    }
    println!(
        "SKIPPED: etcd is not installed (apt-get install etcd-server; cargo xtask setup does)"
    );
    false
}

fn data_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-etcd-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdServer {
    /// `None` (the test is skipped, saying so) when Debian's etcd-server is not installed.
    pub fn start(label: &str) -> Option<EtcdServer> {
        if !installed() {
            return None;
        }
        let mut s = EtcdServer {
            child: None,
            dir: data_dir(label),
            ip: IpAddr::from([127, 0, 0, 1]),
            client_port: free_port(),
            peer_port: free_port(),
            netns: None,
        };
        s.spawn();
        Some(s)
    }

    /// An etcd inside the sandbox netns `netns` (its name under /run/netns), listening on
    /// `listen_ip` there (ports 2379 and 2380: the netns is the test's own), started with
    /// `ip netns exec` (which execs: the child is etcd itself, killed by its pid). Returns once
    /// etcd answers `/health` (within 60 s: a busy machine can be slow to start it); `None`
    /// (the test is skipped, saying so) without etcd.
    pub fn start_in(label: &str, netns: &str, listen_ip: IpAddr) -> Option<EtcdServer> {
        if !installed() {
            return None;
        }
        let mut s = EtcdServer {
            child: None,
            dir: data_dir(label),
            ip: listen_ip,
            client_port: 2379,
            peer_port: 2380,
            netns: Some(netns.to_string()),
        };
        s.spawn();
        s.wait_healthy(Duration::from_secs(60));
        Some(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    /// dockerd's `--cluster-store` URL of this etcd with keys under `prefix` (`/name`).
    pub fn cluster_store(&self, prefix: &str) -> String {
        format!("etcd://{}:{}{prefix}", self.ip, self.client_port)
    }

    /// Waits until etcd answers `GET /health` with `"health":"true"` (asked from the netns it
    /// runs in); panics after `limit` (or when etcd exits), with its last answer and its log.
    pub fn wait_healthy(&mut self, limit: Duration) {
        let ns = match &self.netns {
            Some(n) => Netns::from_path(Path::new(berth::netns::NETNS_RUN_DIR).join(n)).unwrap(),
            None => Netns::current().unwrap(),
        };
        let addr = SocketAddr::new(self.ip, self.client_port);
        let deadline = Instant::now() + limit;
        loop {
            let ask = move || -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"GET /health HTTP/1.0\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            };
            let last = match ns.run(ask) {
                Ok(Ok(answer)) if answer.contains(r#""health":"true""#) => return,
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
                panic!(
                    "etcd at {addr} not healthy (exited: {exited:?}; last answer: {last}); \
                     its log, last lines first:\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self) {
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
            .args(["--name", "berth-test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("berth-test={p}")])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(self.log())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    /// etcd's stderr: `etcd.log` in its dir (appended to across restarts).
    fn log(&self) -> Stdio {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .map_or_else(|_| Stdio::null(), Stdio::from)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Kills it (data kept): `restart` brings it back with its data.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub async fn store(&self, prefix: &str) -> Etcd {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(e) = Etcd::connect([self.endpoint()], prefix).await
                && e.list("").await.is_ok()
            {
                return e;
            }
            assert!(Instant::now() < deadline, "etcd did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped etcd does not die of SIGKILL until continued.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
