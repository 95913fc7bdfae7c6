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

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::netlink::Netlink;
use crate::netns::Netns;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;

/// Broadcasts the announcements for the addresses of interface `ifname` of the container
/// netns (`nl` is a handle there), whose addresses are `ipv4` / `ipv6`.
pub async fn announce_interface(
    nl: &Netlink,
    netns: &Netns,
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
    announce(netns, link.index, mac, ipv4, ipv6).await;
}

/// Broadcasts the announcements for `ipv4` / `ipv6` on interface `index` (whose MAC is `mac`)
/// of `netns`.
pub async fn announce(
    netns: &Netns,
    index: u32,
    mac: [u8; 6],
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) {
    let mut frames = Vec::new();
    if let Some(ip) = ipv4 {
        frames.push(([0xff; 6], ETH_P_ARP, gratuitous_arp(mac, ip)));
    }
    if let Some(ip) = ipv6 {
        let all_nodes = [0x33, 0x33, 0, 0, 0, 1];
        frames.push((all_nodes, ETH_P_IPV6, unsolicited_na(mac, ip)));
    }
    if frames.is_empty() {
        return;
    }
    let sent = netns
        .enter(move || -> io::Result<()> {
            let sock = packet_socket()?;
            for (dst, proto, frame) in &frames {
                send(&sock, index, *dst, *proto, frame)?;
            }
            Ok(())
        })
        .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(target: "berth::driver", index, error = %e, "address announcement not sent")
        }
        Err(e) => {
            tracing::debug!(target: "berth::driver", index, error = %e, "address announcement not sent")
        }
    }
}

/// An `AF_PACKET` socket that only sends (protocol 0: it receives nothing).
fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned by the OwnedFd on success.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `payload` (the frame after the Ethernet header, which the kernel builds for a
/// `SOCK_DGRAM` packet socket) to `dst` with EtherType `proto` on interface `index`.
fn send(sock: &OwnedFd, index: u32, dst: [u8; 6], proto: u16, payload: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto.to_be();
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst);
    // SAFETY: the buffer and the address are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
