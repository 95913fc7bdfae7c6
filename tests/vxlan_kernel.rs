//! The VXLAN overlay data plane on this kernel, built with berth's own netlink builders and
//! proven by traffic: two "host" netns joined by a veth (the underlay), in each a bridge with a
//! VXLAN device (learning off, ARP/ND proxy on, no remote) and a "container" netns on the
//! bridge. Each host is programmed with the remote container's FDB entry (MAC → remote VTEP)
//! and neighbour entries (IP → MAC); a TCP connection crosses the tunnel while the entry is
//! there and not once it is deleted. Over an IPv4 and an IPv6 underlay.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use berth::netlink::{FdbEntry, NeighbourEntry, Netlink, VethPeer};
use berth::sandbox::Sandbox;
use berth::{Error, MacAddr, Netns};
use common::*;

const VNI: u32 = 42;
const VX: &str = "vx42";
/// Device group of the VXLAN devices (any mark, read back).
const GROUP: u32 = 7;

/// One side of the overlay: a host netns with its VXLAN device and the container behind it.
struct Side {
    /// `ip -n` name of the host netns.
    host_name: String,
    nl: Netlink,
    vx: berth::netlink::LinkInfo,
    /// The local VTEP (the host's underlay address).
    vtep: IpAddr,
    container: Netns,
    mac: MacAddr,
    ip4: IpAddr,
    ip6: IpAddr,
}

/// Two hosts (the sandbox's host netns and `h2`), joined by a veth `under0` with
/// `192.168.N.1/24` and `.2/24` (and `fd00:N::1/64`, `::2/64`); VTEPs of the family of
/// `v6_underlay`. Containers `c1`/`c2` get `10.N.0.1|2/24` and `fd00:N:1::1|2/64`. Nothing is
/// programmed yet. Everything lives in the sandbox's namespaces, removed on drop.
async fn overlay(label: &str, n: u8, v6_underlay: bool) -> (Sandbox, [Side; 2]) {
    let mut sb = Sandbox::new(label).await.expect("sandbox");
    let h2 = sb.netns("h2").await.unwrap();
    let hosts = [sb.host().clone(), h2];
    let names = [sb.host_name().to_string(), ns_name(&sb, "h2")];
    let nls = [
        Netlink::open(&hosts[0]).await.unwrap(),
        Netlink::open(&hosts[1]).await.unwrap(),
    ];
    // The underlay: one veth, up at both ends.
    let under0 = nls[0]
        .link()
        .veth("under0")
        .peer_in("under0", &hosts[1])
        .add()
        .await
        .unwrap();
    let under1 = nls[1].require_link("under0").await.unwrap();
    nls[1]
        .link()
        .set(under1.index, "under0")
        .up()
        .apply()
        .await
        .unwrap();
    let mut vteps = Vec::new();
    for (i, (nl, under)) in nls.iter().zip([&under0, &under1]).enumerate() {
        let v4: IpAddr = format!("192.168.{n}.{}", i + 1).parse().unwrap();
        let v6: IpAddr = format!("fd00:{n}::{}", i + 1).parse().unwrap();
        nl.address()
            .add(under.index, "under0", v4, 24)
            .await
            .unwrap();
        nl.address()
            .add(under.index, "under0", v6, 64)
            .await
            .unwrap();
        vteps.push((if v6_underlay { v6 } else { v4 }, under.index));
    }
    let mut sides = Vec::new();
    for i in 0..2 {
        let nl = nls[i].clone();
        let (vtep, under) = vteps[i];
        let mtu = if v6_underlay { 1430 } else { 1450 };
        let br = nl.link().bridge("br0").mtu(mtu).add().await.unwrap();
        let vx = nl
            .link()
            .vxlan(VX, VNI, vtep)
            .underlay(under)
            .port(4789)
            .master(br.index)
            .group(GROUP)
            .mac(MacAddr::random())
            .add()
            .await
            .unwrap();
        assert_eq!(vx.mtu, Some(mtu), "the builder's default MTU for {vtep}");
        let role = format!("c{}", i + 1);
        let container = sb.netns(&role).await.unwrap();
        let mac = MacAddr::random();
        let veth = nl
            .link()
            .veth(&format!("veth-{role}"))
            .master(br.index)
            .mtu(mtu)
            .peer(VethPeer {
                name: "eth0",
                mac,
                netns: &container,
            })
            .add()
            .await
            .unwrap();
        let ip4: IpAddr = format!("10.{n}.0.{}", i + 1).parse().unwrap();
        let ip6: IpAddr = format!("fd00:{n}:1::{}", i + 1).parse().unwrap();
        let cnl = Netlink::open(&container).await.unwrap();
        let eth = cnl.require_link("eth0").await.unwrap();
        cnl.address().add(eth.index, "eth0", ip4, 24).await.unwrap();
        cnl.address().add(eth.index, "eth0", ip6, 64).await.unwrap();
        cnl.link()
            .set(eth.index, "eth0")
            .up()
            .apply()
            .await
            .unwrap();
        let limit = Duration::from_secs(5);
        assert!(nl.wait_oper_up(veth.index, limit).await.unwrap());
        assert!(cnl.wait_oper_up(eth.index, limit).await.unwrap());
        sides.push(Side {
            host_name: names[i].clone(),
            nl,
            vx,
            vtep,
            container,
            mac,
            ip4,
            ip6,
        });
    }
    let [a, b]: [Side; 2] = sides.try_into().ok().unwrap();
    (sb, [a, b])
}

impl Side {
    fn fdb_entry(&self, remote: &Side) -> FdbEntry {
        FdbEntry {
            index: self.vx.index,
            name: VX.to_string(),
            mac: remote.mac,
            dst: remote.vtep,
        }
    }

    fn neighbour_entries(&self, remote: &Side) -> Vec<NeighbourEntry> {
        let mut v: Vec<_> = [remote.ip4, remote.ip6]
            .into_iter()
            .map(|addr| NeighbourEntry {
                index: self.vx.index,
                name: VX.to_string(),
                addr,
                mac: remote.mac,
            })
            .collect();
        v.sort_by_key(|e| e.addr);
        v
    }

    /// Programs the route to `remote`'s container: its MAC through the tunnel to its VTEP, its
    /// addresses at its MAC (answered by the proxy).
    async fn program(&self, remote: &Side) {
        self.nl
            .replace_fdb(self.vx.index, VX, remote.mac, remote.vtep)
            .await
            .unwrap();
        for addr in [remote.ip4, remote.ip6] {
            self.nl
                .replace_neighbour(self.vx.index, VX, addr, remote.mac)
                .await
                .unwrap();
        }
    }
}

/// A TCP connection from `a`'s container to a listener in `b`'s, to `b`'s address `ip`.
async fn reaches(a: &Side, b: &Side, ip: IpAddr, port: u16) {
    let addr = std::net::SocketAddr::new(ip, port);
    let seen = assert_reaches(&b.container, addr, &a.container, addr).await;
    assert_eq!(seen.ip(), if ip.is_ipv6() { a.ip6 } else { a.ip4 });
}

async fn overlay_end_to_end(label: &str, n: u8, v6_underlay: bool) {
    if !require_root() {
        return;
    }
    let (_sb, [a, b]) = overlay(label, n, v6_underlay).await;

    // What the kernel made of the request.
    for s in [&a, &b] {
        let d = ip(&s.host_name, &["-d", "link", "show", VX]);
        let want = format!("vxlan id {VNI} local {} dev under0 ", s.vtep);
        assert!(d.contains(&want), "{want:?} not in {d}");
        let group = format!("group {GROUP} ");
        for want in [
            "dstport 4789",
            "nolearning",
            "proxy",
            "master br0",
            "UP",
            &group,
        ] {
            assert!(d.contains(want), "{want:?} not in {d}");
        }
        assert!(!d.contains(" remote "), "{d}");
        assert_eq!(s.vx.group, GROUP);
        // A bridge port without an IPv6 address of its own (addr_gen_mode none), IPv6 on.
        let a6 = ip(&s.host_name, &["-6", "address", "show", "dev", VX]);
        assert!(a6.trim().is_empty(), "{a6}");
        assert!(s.nl.fdb(s.vx.index).await.unwrap().is_empty());
        assert!(s.nl.neighbours(s.vx.index).await.unwrap().is_empty());
    }
    // The family of the remote VTEP is the one of the local VTEP.
    let other: IpAddr = if v6_underlay {
        "192.168.0.9"
    } else {
        "fd00::9"
    }
    .parse()
    .unwrap();
    let e =
        a.nl.replace_fdb(a.vx.index, VX, b.mac, other)
            .await
            .unwrap_err();
    assert_eq!(e.errno(), Some(libc::EAFNOSUPPORT), "{e}");
    assert!(
        matches!(
            e,
            Error::Netlink {
                op: "replace fdb entry",
                ..
            }
        ),
        "{e}"
    );

    a.program(&b).await;
    b.program(&a).await;

    // Traffic crosses the tunnel, both families inside, both ways.
    reaches(&a, &b, b.ip4, 7000).await;
    reaches(&b, &a, a.ip4, 7001).await;
    reaches(&a, &b, b.ip6, 7002).await;

    // Read back: exactly what was added.
    for (s, r) in [(&a, &b), (&b, &a)] {
        assert_eq!(s.nl.fdb(s.vx.index).await.unwrap(), vec![s.fdb_entry(r)]);
        let mut got = s.nl.neighbours(s.vx.index).await.unwrap();
        got.sort_by_key(|e| e.addr);
        assert_eq!(got, s.neighbour_entries(r));
    }
    // A replace with the same values keeps one entry.
    a.program(&b).await;
    assert_eq!(a.nl.fdb(a.vx.index).await.unwrap(), vec![a.fdb_entry(&b)]);

    // Without the entry, nothing goes to b's container through the tunnel.
    assert!(a.nl.del_fdb(a.vx.index, VX, b.mac, b.vtep).await.unwrap());
    assert!(!a.nl.del_fdb(a.vx.index, VX, b.mac, b.vtep).await.unwrap());
    assert!(a.nl.fdb(a.vx.index).await.unwrap().is_empty());
    let to_b = std::net::SocketAddr::new(b.ip4, 7003);
    assert_blocked(
        &b.container,
        to_b,
        &a.container,
        to_b,
        "with the FDB entry deleted",
    )
    .await;
    // The other host's entries are untouched; putting a's back lets traffic through again.
    assert_eq!(b.nl.fdb(b.vx.index).await.unwrap(), vec![b.fdb_entry(&a)]);
    a.program(&b).await;
    reaches(&a, &b, b.ip4, 7004).await;

    // The tables go with the device.
    assert!(a.nl.delete_link(VX).await.unwrap());
    assert!(a.nl.fdb(a.vx.index).await.unwrap().is_empty());
    assert!(a.nl.neighbours(a.vx.index).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_overlay_over_ipv4_underlay() {
    overlay_end_to_end("vx-v4", 61, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_overlay_over_ipv6_underlay() {
    overlay_end_to_end("vx-v6", 62, true).await;
}

/// A VXLAN device without a master comes up in the creating request; a second one with the
/// same VNI, port and family is refused; a missing underlay fails and leaves nothing; errors
/// name the device; IPv6 neighbour entries need IPv6 on the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_device_errors_name_the_device() {
    if !require_root() {
        return;
    }
    let sb = Sandbox::new("vx-err").await.expect("sandbox");
    let nl = Netlink::open(sb.host()).await.unwrap();
    let local: IpAddr = "192.168.63.1".parse().unwrap();
    let vx = nl.link().vxlan("vxa", 7, local).add().await.unwrap();
    assert!(vx.up && vx.controller.is_none() && vx.group == 0);
    let e = nl.link().vxlan("vxb", 7, local).add().await.unwrap_err();
    assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
    assert!(matches!(&e, Error::Netlink { op: "add link", name, .. } if name == "vxb"));
    let e = nl
        .link()
        .vxlan("vxc", 8, local)
        .underlay(999)
        .add()
        .await
        .unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENODEV), "{e}");
    assert!(nl.link_by_name("vxc").await.unwrap().is_none());
    // Why a bridge-port VXLAN keeps IPv6 (addr_gen_mode none instead of disable_ipv6): with
    // IPv6 disabled, the kernel refuses IPv6 neighbour entries on it.
    nl.write_sysctl("net/ipv6/conf/vxa/disable_ipv6", "1")
        .await
        .unwrap();
    let mac = MacAddr::random();
    let e = nl
        .replace_neighbour(vx.index, "vxa", "fd00::2".parse().unwrap(), mac)
        .await
        .unwrap_err();
    assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
    assert!(
        matches!(
            &e,
            Error::Netlink {
                op: "replace neighbour",
                ..
            }
        ),
        "{e}"
    );
    let v4: IpAddr = "10.63.0.2".parse().unwrap();
    nl.replace_neighbour(vx.index, "vxa", v4, mac)
        .await
        .unwrap();
    let got = nl.neighbours(vx.index).await.unwrap();
    assert_eq!(
        got.iter().map(|e| (e.addr, e.mac)).collect::<Vec<_>>(),
        [(v4, mac)]
    );
    let e = nl
        .replace_fdb(999, "nosuch", MacAddr::random(), local)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Netlink { op: "replace fdb entry", name, .. } if name.ends_with(" on nosuch")),
        "{e}"
    );
}
