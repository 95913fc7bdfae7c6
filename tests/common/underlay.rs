//! Simulated hosts on one underlay, as in `tests/overlay.rs`: the sandbox's host netns is the
//! "underlay", with a bridge `ul` holding `PREFIX.254/24`; each simulated host is a netns of
//! its own joined to that bridge by a veth (`eth0` there, `PREFIX.I/24`, up). Programs in any
//! host netns reach `PREFIX.254` (e.g. an etcd started there with
//! [`super::etcd::EtcdServer::start_in`]) and each other over it.

use std::net::IpAddr;

use berth::netlink::{Netlink, VethPeer};
use berth::sandbox::Sandbox;
use berth::{MacAddr, Netns};

/// The underlay and its sandbox (removed on drop, with every host netns).
pub struct Underlay {
    pub sb: Sandbox,
    nl: Netlink,
    bridge: u32,
    prefix: String,
}

impl Underlay {
    /// A sandbox whose host netns has bridge `ul` (up) with `PREFIX.254/24` (`prefix` is the
    /// first three octets, e.g. `"10.98.1"`).
    pub async fn new(label: &str, prefix: &str) -> Underlay {
        let sb = Sandbox::new(label).await.expect("sandbox");
        let nl = Netlink::open(sb.host()).await.unwrap();
        let br = nl.link().bridge("ul").mtu(1500).add().await.unwrap();
        nl.address()
            .add(br.index, "ul", format!("{prefix}.254").parse().unwrap(), 24)
            .await
            .unwrap();
        nl.link().set(br.index, "ul").up().apply().await.unwrap();
        Underlay {
            sb,
            nl,
            bridge: br.index,
            prefix: prefix.to_string(),
        }
    }

    /// The underlay's own address (`PREFIX.254`), on the bridge.
    pub fn gateway(&self) -> IpAddr {
        self.addr(254)
    }

    /// `PREFIX.I`.
    pub fn addr(&self, i: u8) -> IpAddr {
        format!("{}.{i}", self.prefix).parse().unwrap()
    }

    /// The name (under /run/netns) of the underlay netns itself.
    pub fn netns_name(&self) -> &str {
        self.sb.host_name()
    }

    /// A new netns `ROLE` joined to the bridge: `eth0` with `PREFIX.I/24`, up. Returns it,
    /// a netlink handle in it, and its name under /run/netns.
    pub async fn plug(&mut self, role: &str, i: u8) -> (Netns, Netlink, String) {
        let ns = self.sb.netns(role).await.unwrap();
        let outer = format!("ul-{role}");
        let v = self
            .nl
            .link()
            .veth(&outer)
            .master(self.bridge)
            .peer(VethPeer {
                name: "eth0",
                mac: MacAddr::random(),
                netns: &ns,
            })
            .add()
            .await
            .unwrap();
        self.nl
            .link()
            .set(v.index, &outer)
            .up()
            .apply()
            .await
            .unwrap();
        let nl = Netlink::open(&ns).await.unwrap();
        let eth = nl.require_link("eth0").await.unwrap();
        nl.address()
            .add(eth.index, "eth0", self.addr(i), 24)
            .await
            .unwrap();
        nl.link().set(eth.index, "eth0").up().apply().await.unwrap();
        let name = super::ns_name(&self.sb, role);
        (ns, nl, name)
    }
}
