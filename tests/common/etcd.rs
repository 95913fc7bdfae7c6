//! A real etcd (Debian's `etcd-server`) for tests: started on loopback ports of its own, data
//! in a temp dir, killed and removed on drop (also on panic).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::cluster::{ClusterStore, Etcd};

/// A real etcd on 127.0.0.1, killed and its data removed on drop.
pub struct EtcdServer {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
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
        if Command::new("etcd").arg("--version").output().is_err() {
            println!(
                "SKIPPED: etcd is not installed (apt-get install etcd-server; cargo xtask setup does)"
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!("berth-etcd-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = EtcdServer {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
        };
        s.spawn();
        Some(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let c = self.endpoint();
        let p = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
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
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
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
