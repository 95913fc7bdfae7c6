//! Announcing a container's addresses once its interface can carry them: a gratuitous ARP for
//! its IPv4 address and an unsolicited neighbour advertisement (override flag set) for its IPv6
//! address, sent by the kernel from the interface inside the container netns.
//!
//! Container MACs are random, and IPAM hands an address out again once its holder has left (at
//! once for a static `--ip`, after one round for the next-free cursor). Whoever talked to the
//! previous holder — the host, the other containers of the network — may still have its MAC in
//! a reachable neighbour entry, which the kernel trusts for 30 s or more without asking again:
//! until then, their packets for the address go to a MAC nobody has. An announcement makes
//! every such entry take the new MAC at once (Linux updates an existing entry from a
//! gratuitous ARP or an NA with the override flag; it creates none for it). Docker sends the
//! same (`com.docker.network.advertise_addr_nmsgs`).
//!
//! How: the interface is configured with `arp_notify` (IPv4, in the request that brings it up)
//! and `ndisc_notify` (IPv6) on ([`super::container::configure_interface`]); once the bridge
//! port forwards, its MAC is set to the MAC it already has, and the kernel's
//! `NETDEV_CHANGEADDR` handlers send both announcements. No packet socket: closing an
//! `AF_PACKET` socket waits for an RCU grace period (`synchronize_net()` in `packet_release`),
//! 8–20 ms here, which was most of an attach's wall time and all of a CNI ADD's excess.
//!
//! Best effort: a failure is logged, never fails the attach.

use crate::netlink::Netlink;

/// Has the kernel announce the addresses of interface `ifname` of the container netns (`nl` is
/// a handle there), configured by [`super::container::configure_interface`].
pub async fn announce_interface(nl: &Netlink, ifname: &str) {
    let link = match nl.link_by_name(ifname).await {
        Ok(Some(l)) => l,
        _ => return,
    };
    let Some(mac) = link
        .mac
        .as_deref()
        .and_then(|m| <[u8; 6]>::try_from(m).ok())
    else {
        return;
    };
    let r = nl
        .link()
        .set(link.index, ifname)
        .mac(crate::mac::MacAddr(mac))
        .apply()
        .await;
    if let Err(e) = r {
        tracing::debug!(target: "berth::driver", ifname, error = %e, "address announcement not sent")
    }
}
