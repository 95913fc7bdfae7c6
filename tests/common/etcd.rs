//! The sandbox's etcd ([`berth::sandbox::EtcdServer`]) as tests use it: a test without etcd is
//! skipped visibly, and failures panic.

use std::net::IpAddr;
use std::ops::{Deref, DerefMut};

use berth::cluster::Etcd;
use berth::sandbox::EtcdServer as Inner;

/// See the module docs.
pub struct EtcdServer(Inner);

fn installed() -> bool {
    if Inner::installed() {
        return true;
    }
    println!(
        "SKIPPED: etcd is not installed (apt-get install etcd-server; cargo xtask setup does)"
    );
    false
}

impl EtcdServer {
    /// On loopback; `None` (the test is skipped, saying so) without etcd.
    pub fn start(label: &str) -> Option<EtcdServer> {
        installed().then(|| EtcdServer(Inner::start(label).expect("start etcd")))
    }

    /// In the sandbox netns `netns` on `listen_ip`; `None` (skipped, saying so) without etcd.
    pub fn start_in(label: &str, netns: &str, listen_ip: IpAddr) -> Option<EtcdServer> {
        installed().then(|| EtcdServer(Inner::start_in(label, netns, listen_ip).expect("etcd")))
    }

    pub fn pid(&self) -> i32 {
        self.0.pid().expect("etcd running")
    }

    pub fn restart(&mut self) {
        self.0.restart().expect("restart etcd");
    }

    pub async fn store(&self, prefix: &str) -> Etcd {
        self.0.store(prefix).await.expect("etcd answers")
    }
}

impl Deref for EtcdServer {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl DerefMut for EtcdServer {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.0
    }
}
