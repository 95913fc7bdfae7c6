//! Announcing a container's addresses when its interface comes up: a gratuitous ARP for its
//! IPv4 address and an unsolicited neighbour advertisement (override flag set) for its IPv6
//! address, broadcast from the interface inside the container netns.
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
//! Best effort: a failure to send is logged, never fails the attach.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::netlink::{Announcement, Frame, Netlink};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// Broadcasts the announcements for the addresses of interface `ifname` of the container
/// netns (`nl` is a handle there), whose addresses are `ipv4` / `ipv6`.
pub async fn announce_interface(
    nl: &Netlink,
    ifname: &str,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) {
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
    announce(nl, link.index, mac, ipv4, ipv6).await;
}

/// Broadcasts the announcements for `ipv4` / `ipv6` on interface `index` (whose MAC is `mac`)
/// of the netns of `nl` (the kernel sends them from a packet socket there: see
/// [`crate::netlink::Kernel::announce`]).
pub async fn announce(
    nl: &Netlink,
    index: u32,
    mac: [u8; 6],
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) {
    let frames = frames(mac, ipv4, ipv6);
    if frames.is_empty() {
        return;
    }
    if let Err(e) = nl.announce(Announcement { index, frames }).await {
        tracing::debug!(target: "berth::driver", index, error = %e, "address announcement not sent")
    }
}

/// The frames announcing `ipv4` / `ipv6` from `mac`: a gratuitous ARP, an unsolicited NA.
pub fn frames(mac: [u8; 6], ipv4: Option<Ipv4Addr>, ipv6: Option<Ipv6Addr>) -> Vec<Frame> {
    let mut frames = Vec::new();
    if let Some(ip) = ipv4 {
        frames.push(Frame {
            dst: [0xff; 6],
            ethertype: ETH_P_ARP,
            payload: gratuitous_arp(mac, ip),
        });
    }
    if let Some(ip) = ipv6 {
        frames.push(Frame {
            dst: [0x33, 0x33, 0, 0, 0, 1],
            ethertype: ETH_P_IPV6,
            payload: unsolicited_na(mac, ip),
        });
    }
    frames
}

/// An ARP request for `ip` from `ip` (RFC 5227's announcement).
pub(crate) fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut p = Vec::with_capacity(28);
    p.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    p.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    p.extend_from_slice(&[6, 4]);
    p.extend_from_slice(&1u16.to_be_bytes()); // request
    p.extend_from_slice(&mac);
    p.extend_from_slice(&ip.octets());
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&ip.octets());
    p
}

/// An IPv6 packet from `ip` to ff02::1, hop limit 255, carrying a neighbour advertisement for
/// `ip` with the override flag and `mac` as target link-layer address (RFC 4861 §7.2.6).
pub(crate) fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let dst: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // type NA, code, checksum (below)
    icmp.extend_from_slice(&0x2000_0000u32.to_be_bytes()); // O (override)
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(ip, dst, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut p = Vec::with_capacity(40 + icmp.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]); // version 6
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 255]); // next header ICMPv6, hop limit 255
    p.extend_from_slice(&ip.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&icmp);
    p
}

fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + msg.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(msg);
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_arp_names_the_address_twice() {
        let mac = [2, 0x42, 10, 0, 0, 9];
        let p = gratuitous_arp(mac, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(p.len(), 28);
        assert_eq!(&p[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &mac);
        assert_eq!(&p[14..18], &[10, 0, 0, 9]);
        assert_eq!(&p[24..28], &[10, 0, 0, 9]);
    }

    #[test]
    fn neighbour_advertisement_checksums_to_zero() {
        let ip: Ipv6Addr = "fd00::9".parse().unwrap();
        let p = unsolicited_na([2, 0, 0, 0, 0, 9], ip);
        assert_eq!(p.len(), 72);
        assert_eq!(p[40], 136, "an NA");
        assert_eq!(p[7], 255, "hop limit 255, or receivers drop it");
        // The checksum over the pseudo-header and the message, checksum included, is 0.
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(icmpv6_checksum(ip, dst, &p[40..]), 0);
    }
}
