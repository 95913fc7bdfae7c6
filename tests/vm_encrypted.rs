//! The VM tier's encrypted overlay networks (`-o encrypted`): ESP needs Debian's kernel (this
//! machine's has no `esp4`). `cargo xtask test` runs this binary inside the throwaway VM, as
//! `tests/vm.rs`; on a kernel without ESP each test says SKIPPED, with the reason.
//!
//! Three simulated hosts on one underlay (`tests/common/cluster.rs`), etcd in the guest, each
//! host given the same cluster secret. Proven by packets: TCP across hosts; a capture on the
//! underlay bridge sees only ESP for the encrypted network and plain VXLAN for a plain network
//! beside it; 2 MiB cross intact; key rotations during a running transfer lose nothing; a host
//! whose policy an admin removed cannot talk in plaintext (dropped and counted by the
//! receiver); a host that leaves takes its SAs with it.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth::cluster::{ClusterSecret, ClusterSettings, ClusterStore, KeySchedule};
use berth::netlink::xfrm::Xfrm;
use berth::{Endpoint, Error, Netns, Network};
use common::cluster::*;
use common::*;
use sha2::{Digest, Sha256};

fn secret() -> ClusterSecret {
    ClusterSecret::new(b"berth vm tier cluster secret, 32+ bytes long".to_vec()).unwrap()
}

/// Timings for these tests: keys rotate every `rotation` (2 s of switch delay), and the full
/// reconcile is rare (a policy removed by hand stays removed until the test repairs it).
fn enc_settings(rotation: Duration) -> ClusterSettings {
    ClusterSettings {
        key_rotation: rotation,
        key_switch_delay: Duration::from_secs(2),
        reconcile_every: Duration::from_secs(120),
        // The guest may be emulated and slow: a 3 s lease can lapse under load, and a host
        // back under a new lease starts new SAs (a handful of packets meet the other end
        // before it has them; TCP resends them). Not what these tests measure.
        lease_ttl: Duration::from_secs(10),
        ..settings()
    }
}

/// Ok(value), or prints SKIPPED and yields None when the kernel lacks ESP.
fn or_skip<T>(test: &str, r: berth::Result<T>) -> Option<T> {
    match r {
        Err(e @ Error::Unsupported { .. }) => {
            println!("SKIPPED: {test}: {e} (the VM tier runs it)");
            None
        }
        other => Some(other.unwrap()),
    }
}

/// What crossed the underlay bridge while capturing.
#[derive(Debug, Default, Clone)]
struct Seen {
    esp: usize,
    /// VXLAN frames by VNI.
    vxlan: BTreeMap<u32, usize>,
}

/// A packet capture on interface `ifname` of `netns` (AF_PACKET), until stopped.
struct Capture {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Seen>,
}

impl Capture {
    fn start(netns: &Netns, ifname: &str, vxlan_port: u16) -> Capture {
        let name = std::ffi::CString::new(ifname).unwrap();
        let fd = netns
            .run(move || {
                // SAFETY: plain socket calls on a descriptor this closure owns.
                unsafe {
                    let proto = (libc::ETH_P_ALL as u16).to_be();
                    let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
                    assert!(fd >= 0, "packet socket");
                    let index = libc::if_nametoindex(name.as_ptr());
                    let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                    addr.sll_family = libc::AF_PACKET as u16;
                    addr.sll_protocol = proto;
                    addr.sll_ifindex = index as i32;
                    let r = libc::bind(
                        fd,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    assert_eq!(r, 0, "bind packet socket");
                    let tv = libc::timeval {
                        tv_sec: 0,
                        tv_usec: 100_000,
                    };
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        (&tv as *const libc::timeval).cast(),
                        std::mem::size_of::<libc::timeval>() as u32,
                    );
                    OwnedFd::from_raw_fd(fd)
                }
            })
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                // SAFETY: reads into a buffer of its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 14 {
                    continue;
                }
                let f = &buf[..n as usize];
                // IPv4 only (the underlay of these tests).
                if f[12..14] != [0x08, 0x00] {
                    continue;
                }
                let ip = &f[14..];
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                match ip[9] {
                    50 => seen.esp += 1,
                    17 if ip.len() >= ihl + 16 => {
                        let udp = &ip[ihl..];
                        if u16::from_be_bytes([udp[2], udp[3]]) == vxlan_port {
                            let vni = u32::from_be_bytes([0, udp[12], udp[13], udp[14]]);
                            *seen.vxlan.entry(vni).or_default() += 1;
                        }
                    }
                    _ => {}
                }
            }
            seen
        });
        Capture { stop, thread }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The IPsec error counters of the netns (`/proc/net/xfrm_stat`) that a lost or rejected
/// packet raises: no SA for an SPI, a sequence or replay error, a failed decryption, no SA or
/// policy on output.
fn xfrm_errors(ns: &Netns) -> BTreeMap<String, u64> {
    ns.run(|| {
        std::fs::read_to_string("/proc/thread-self/net/xfrm_stat")
            .unwrap()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let (k, v) = (w.next()?, w.next()?.parse::<u64>().ok()?);
                [
                    "XfrmInError",
                    "XfrmInNoStates",
                    "XfrmInStateProtoError",
                    "XfrmInStateSeqError",
                    "XfrmInStateExpired",
                    "XfrmInStateInvalid",
                    "XfrmInTmplMismatch",
                    "XfrmInNoPols",
                    "XfrmOutError",
                    "XfrmOutNoStates",
                    "XfrmOutStateSeqError",
                    "XfrmOutPolBlock",
                    "XfrmOutStateInvalid",
                ]
                .contains(&k)
                .then(|| (k.to_string(), v))
            })
            .collect()
    })
    .unwrap()
}

/// Sends `len` pseudo-random bytes from `client` to `to` (a listener on `server`), at most
/// `chunk` bytes every `pace`; returns (sent digest, received digest, TCP segments the
/// client's netns retransmitted meanwhile).
async fn transfer(
    server: &Netns,
    client: &Netns,
    to: SocketAddr,
    len: usize,
    chunk: usize,
    pace: Duration,
) -> ([u8; 32], [u8; 32], u64) {
    let listener = server
        .run(move || TcpListener::bind(SocketAddr::new([0, 0, 0, 0].into(), to.port())))
        .unwrap()
        .unwrap();
    let rx = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        // A stalled data plane fails the test instead of hanging it.
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        <[u8; 32]>::from(h.finalize())
    });
    let retrans = || {
        client
            .run(|| {
                let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
                let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
                let keys: Vec<&str> = tcp[0].split_whitespace().collect();
                let vals: Vec<&str> = tcp[1].split_whitespace().collect();
                let i = keys.iter().position(|k| *k == "RetransSegs").unwrap();
                vals[i].parse::<u64>().unwrap()
            })
            .unwrap()
    };
    let before = retrans();
    let stream = client
        .run(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let sent = tokio::task::spawn_blocking(move || {
        let mut s = stream;
        let mut h = Sha256::new();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk);
            let data: Vec<u8> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            s.write_all(&data).unwrap();
            h.update(&data);
            left -= n;
            std::thread::sleep(pace);
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        <[u8; 32]>::from(h.finalize())
    })
    .await
    .unwrap();
    let got = tokio::task::spawn_blocking(move || rx.join().unwrap())
        .await
        .unwrap();
    (sent, got, retrans() - before)
}

/// Encrypted overlay network `sec` with `subnet`, made on h1.
async fn encrypted_net(c: &Cluster, subnet: &str) -> berth::NetworkInfo {
    c.hosts[0]
        .host
        .create_network(
            Network::overlay("sec")
                .encrypted(true)
                .subnet(subnet.parse().unwrap()),
        )
        .await
        .unwrap()
}

/// One container `hN{suffix}` per host of the first `hosts`, attached to `net`: (netns,
/// address). The first error is returned (a kernel without ESP refuses the first attach).
async fn one_each(
    c: &mut Cluster,
    net: &str,
    hosts: usize,
    suffix: &str,
) -> berth::Result<Vec<(Netns, IpAddr)>> {
    let mut eps = Vec::new();
    for h in 0..hosts {
        let role = format!("h{}{suffix}", h + 1);
        let ns = c.container(&role).await;
        let att = c.hosts[h]
            .host
            .attach(net, Endpoint::new(&role, ns.clone()))
            .await?;
        eps.push((ns, att.ip().unwrap()));
    }
    Ok(eps)
}

/// Waits until every host holds at least `n_sas` SAs and `n_policies` policies (a peer's agent sees
/// an attach within milliseconds), naming what a host holds if not.
async fn wait_for_ipsec(c: &Cluster, n_sas: usize, n_policies: usize) {
    for h in &c.hosts {
        let t0 = std::time::Instant::now();
        loop {
            let (s, p) = (sas(&h.ns).await, policies(&h.ns).await);
            if s.len() >= n_sas && p.len() == n_policies {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{n_sas} SAs and {n_policies} policies on {}: {s:?} {p:?}",
                h.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn sas(ns: &Netns) -> Vec<berth::netlink::xfrm::EspSa> {
    Xfrm::open(ns).await.unwrap().sas().await.unwrap()
}

async fn policies(ns: &Netns) -> Vec<berth::netlink::xfrm::EspPolicy> {
    Xfrm::open(ns).await.unwrap().policies().await.unwrap()
}

/// The packets counted by the drop rule of network `net` in the host netns `ns`.
fn plaintext_dropped(ns: &str, net: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "-j", "list", "chain", "inet", "berth",
        ])
        .arg(format!("nw-{net}-esp-in"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .flat_map(|r| r["expr"].as_array().unwrap().iter())
        .filter_map(|e| e.get("counter"))
        .map(|c| c["packets"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_overlay_carries_only_esp_and_drops_plaintext() {
    const TEST: &str = "encrypted_overlay_carries_only_esp_and_drops_plaintext";
    let Some(mut c) = cluster_with("vm-enc", 1, 3, false, |_, b| {
        b.cluster_secret(secret())
            .cluster_settings(enc_settings(Duration::from_secs(3600)))
    })
    .await
    else {
        return;
    };
    let h1 = c.hosts[0].host.clone();
    let sec = encrypted_net(&c, "10.210.0.0/24").await;
    let plain = h1
        .create_network(Network::overlay("plain").subnet("10.211.0.0/24".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(sec.mtu, 1500 - 50 - 40, "MTU accounts for VXLAN and ESP");
    let Some(eps) = or_skip(TEST, one_each(&mut c, "sec", 3, "c").await) else {
        return;
    };
    let pl = one_each(&mut c, "plain", 2, "p").await.unwrap();
    // Every host has SAs both ways with both others, one policy per peer.
    wait_for_ipsec(&c, 4, 2).await;
    // All to all on the encrypted network, captured on the underlay: ESP only.
    let cap = Capture::start(c.sb.host(), "ul-h1", 4789);
    for (i, (server, ip)) in eps.iter().enumerate() {
        for (k, (client, _)) in eps.iter().enumerate() {
            if i != k {
                reaches_at(server, client, &format!("{ip}:{}", 7000 + i)).await;
            }
        }
    }
    let (sent, got, _) = transfer(
        &eps[1].0,
        &eps[0].0,
        SocketAddr::new(eps[1].1, 7100),
        2 << 20,
        64 << 10,
        Duration::ZERO,
    )
    .await;
    assert_eq!(sent, got, "2 MiB across, checksum equal");
    // The MTU leaves room for ESP: a full-size datagram crosses, one byte more is refused.
    full_size_crosses(&eps[0].0, &eps[1].0, eps[1].1, sec.mtu as usize).await;
    let enc_seen = cap.finish();
    let seen = enc_seen.clone();
    let vni_sec = vni_of(&sec);
    let vni_plain = vni_of(&plain);
    assert!(seen.esp > 100, "ESP on the underlay: {seen:?}");
    assert_eq!(
        seen.vxlan.get(&vni_sec),
        None,
        "no plaintext VXLAN of the encrypted network: {seen:?}"
    );
    // The plain network beside it: plain VXLAN.
    let cap = Capture::start(c.sb.host(), "ul-h1", 4789);
    reaches_at(&pl[1].0, &pl[0].0, &format!("{}:7200", pl[1].1)).await;
    let seen = cap.finish();
    assert!(
        seen.vxlan.get(&vni_plain).copied().unwrap_or(0) > 0,
        "plain network: VXLAN {seen:?}"
    );
    println!(
        "VM-TIER: encrypted overlay: ESP only on the underlay ({} ESP frames), 2 MiB intact, a full-size datagram at MTU {} crosses, plain VXLAN beside it",
        enc_seen.esp, sec.mtu
    );

    // An admin removes h1's policies: h1 sends plaintext, h2 drops and counts it.
    let h1_ns = ns_name(&c.sb, "h1");
    let h2_ns = ns_name(&c.sb, "h2");
    let before = plaintext_dropped(&h2_ns, "sec");
    ip(&h1_ns, &["xfrm", "policy", "deleteall"]);
    assert!(policies(&c.hosts[0].ns).await.is_empty());
    let blocked = berth::sandbox::tcp_probe(
        &eps[1].0,
        SocketAddr::new([0, 0, 0, 0].into(), 7300),
        &eps[0].0,
        SocketAddr::new(eps[1].1, 7300),
    )
    .await;
    assert!(blocked.is_err(), "plaintext from h1 must not reach h2");
    let after = plaintext_dropped(&h2_ns, "sec");
    assert!(after > before, "dropped and counted: {before} -> {after}");
    // check names what is missing; gc puts it back; traffic flows again.
    let missing = c.hosts[0].host.check("sec", "h1c").await.unwrap();
    assert!(
        missing.iter().any(|m| m.starts_with("IPsec policy")),
        "{missing:?}"
    );
    let report = c.hosts[0].host.gc(&["h1c", "h1p"]).await.unwrap();
    assert_eq!(report.ipsec_fixed, 2, "{report:?}");
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7301", eps[1].1)).await;
    println!(
        "VM-TIER: a host without its IPsec policy cannot talk in plaintext ({} packets dropped and counted); gc repairs it",
        after - before
    );

    // h2 comes back under a new lease (as after an etcd stall past the TTL): SAs with new SPIs
    // on both ends, and traffic both ways again — no side keeps a replay window the other
    // restarted.
    let old: Vec<u32> = sas(&c.hosts[1].ns).await.iter().map(|s| s.spi).collect();
    c.hosts[1].host.cluster().unwrap().leave().await.unwrap();
    let h2s = &c.hosts[1].ns;
    wait_for("h2's new SAs", Duration::from_secs(15), async || {
        let now = sas(h2s).await;
        now.len() == 4 && now.iter().all(|s| !old.contains(&s.spi))
    })
    .await;
    wait_for_ipsec(&c, 4, 2).await;
    reaches_at(&eps[1].0, &eps[0].0, &format!("{}:7310", eps[1].1)).await;
    reaches_at(&eps[0].0, &eps[1].0, &format!("{}:7311", eps[0].1)).await;

    // h3 leaves the network: its SAs go on h1 and h2; h3 keeps only its idle outbound SAs
    // (no inbound SA, no policy) while they are on the network.
    let h3_vtep = c.hosts[2].vtep;
    c.hosts[2].host.detach("sec", "h3c").await.unwrap();
    assert!(policies(&c.hosts[2].ns).await.is_empty());
    let left = sas(&c.hosts[2].ns).await;
    assert!(
        left.len() == 2 && left.iter().all(|s| s.src == h3_vtep),
        "{left:?}"
    );
    for h in &c.hosts[..2] {
        let hs = &h.ns;
        wait_for("h3's SAs gone", Duration::from_secs(10), async || {
            let s = sas(hs).await;
            s.len() == 2 && s.iter().all(|sa| sa.src != h3_vtep && sa.dst != h3_vtep)
        })
        .await;
    }
    // Back at once: its outbound SAs go on where they were, the others make fresh inbound
    // ones; traffic both ways.
    let ns3 = c.container("h3c2").await;
    let a3 = c.hosts[2]
        .host
        .attach("sec", Endpoint::new("h3c2", ns3.clone()))
        .await
        .unwrap();
    wait_for_ipsec(&c, 4, 2).await;
    reaches_at(&ns3, &eps[0].0, &format!("{}:7320", a3.ip().unwrap())).await;
    reaches_at(&eps[0].0, &ns3, &format!("{}:7321", eps[0].1)).await;
    c.hosts[2].host.detach("sec", "h3c2").await.unwrap();
    // Everything detached and deleted: no SA, no policy, no ESP chain anywhere.
    for (h, role) in [(0, "h1c"), (1, "h2c")] {
        c.hosts[h].host.detach("sec", role).await.unwrap();
    }
    for (h, role) in [(0, "h1p"), (1, "h2p")] {
        c.hosts[h].host.detach("plain", role).await.unwrap();
    }
    h1.delete_network("sec").await.unwrap();
    h1.delete_network("plain").await.unwrap();
    for h in &c.hosts {
        let hs = &h.ns;
        wait_for("no SA, no policy", Duration::from_secs(10), async || {
            sas(hs).await.is_empty() && policies(hs).await.is_empty()
        })
        .await;
    }
    println!(
        "VM-TIER: a host back under a new lease gets fresh SAs both ways; a host leaving an encrypted network removes its SAs on the others and can come back at once; none left after detach and delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_during_a_transfer_loses_nothing() {
    const TEST: &str = "key_rotation_during_a_transfer_loses_nothing";
    let period: u64 = std::env::var("ROT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // The guest's agents can be seconds late under load (two cold-clone runs met 16 and 22
    // packets with no receiving SA at a 2 s and a 3 s delay): the switch waits 5 s after an
    // announcement (receiving SAs in place), and the old generation goes 5 s after the switch.
    // Production's default is 30 s.
    let settings = ClusterSettings {
        key_switch_delay: Duration::from_secs(5),
        ..enc_settings(Duration::from_secs(period))
    };
    let Some(mut c) = cluster_with("vm-rot", 2, 2, false, |_, b| {
        b.cluster_secret(secret()).cluster_settings(settings)
    })
    .await
    else {
        return;
    };
    encrypted_net(&c, "10.212.0.0/24").await;
    let Some(eps) = or_skip(TEST, one_each(&mut c, "sec", 2, "c").await) else {
        return;
    };
    wait_for_ipsec(&c, 2, 1).await;
    let store = c.etcd.store("/berth-vm-rot").await;
    let generation = async || -> u32 {
        let kv = store.get("encryption/keys").await.unwrap().unwrap();
        let k: KeySchedule = serde_json::from_slice(&kv.value).unwrap();
        k.generations.iter().map(|g| g.tag).max().unwrap()
    };
    let first = generation().await;
    let errs_before: Vec<_> = c.hosts.iter().map(|h| xfrm_errors(&h.ns)).collect();
    let spi_before: Vec<u32> = policies(&c.hosts[0].ns)
        .await
        .iter()
        .map(|p| p.spi)
        .collect();
    // ~27 s of paced traffic: at least two rotations (every 10 s, switch 5 s later) happen
    // under it.
    let (sent, got, retrans) = transfer(
        &eps[1].0,
        &eps[0].0,
        SocketAddr::new(eps[1].1, 7400),
        14 << 20,
        64 << 10,
        Duration::from_millis(120),
    )
    .await;
    assert_eq!(sent, got, "14 MiB across rotations, checksum equal");
    let errs_after: Vec<_> = c.hosts.iter().map(|h| xfrm_errors(&h.ns)).collect();
    let last = generation().await;
    assert!(
        last >= first + 2,
        "rotated at least twice: {first} -> {last}"
    );
    let spi_after: Vec<u32> = policies(&c.hosts[0].ns)
        .await
        .iter()
        .map(|p| p.spi)
        .collect();
    assert_ne!(spi_before, spi_after, "the policy sends with a new SA");
    // No packet met a missing SA or policy, a wrong key or a replay check on either host.
    let errors: u64 = errs_after
        .iter()
        .zip(&errs_before)
        .flat_map(|(a, b)| {
            a.iter()
                .map(move |(k, v)| v - b.get(k).copied().unwrap_or(0))
        })
        .sum();
    assert_eq!(
        errors, 0,
        "IPsec errors during the rotations: {errs_after:?}"
    );
    // Old generations' SAs are gone: at most two generations per direction.
    assert!(sas(&c.hosts[0].ns).await.len() <= 4);
    println!(
        "VM-TIER: key rotation during a transfer: generations {first} -> {last}, one connection, 14 MiB intact, {errors} IPsec errors on either host ({retrans} TCP retransmissions)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_the_secret_is_refused_by_name() {
    let Some(mut c) = cluster_with("vm-nosec", 3, 2, false, |name, b| {
        if name == "h1" {
            b.cluster_secret(secret())
        } else {
            b
        }
    })
    .await
    else {
        return;
    };
    encrypted_net(&c, "10.213.0.0/24").await;
    // The network's nf_tables rules (this kernel has them too): marking on output, plaintext
    // dropped on input.
    let rules = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns_name(&c.sb, "h1"),
            "nft",
            "list",
            "table",
            "inet",
            "berth",
        ])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains("udp dport 4789 @th,96,24 0x1000")
            && rules.contains("meta mark set 0x0be50e5c"),
        "{rules}"
    );
    assert!(rules.contains("meta ipsec missing counter"), "{rules}");
    let e = c.hosts[1]
        .host
        .create_network(Network::overlay("sec2").encrypted(true))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoClusterSecret { .. }), "{e}");
    let ns = c.container("h2c").await;
    let e = c.hosts[1]
        .host
        .attach("sec", Endpoint::new("h2c", ns.clone()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoClusterSecret { .. }), "{e}");
    assert_eq!(
        link_names(&ns).await,
        vec!["lo".to_string()],
        "nothing made"
    );
}
