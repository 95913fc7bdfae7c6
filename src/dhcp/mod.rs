//! DHCP addresses for macvlan and bridge networks (`docker network create -d macvlan
//! --ipam-driver dhcp`, pipework's `dhcp`, netavark's dhcp-proxy): the endpoint's address,
//! prefix, default gateway and nameservers come from the DHCP server of the LAN the parent link
//! is on, not from a pool of berth's.
//!
//! A bridge network takes it when its bridge is on the LAN: an admin's bridge that holds the
//! LAN's NIC (`-o com.docker.network.bridge.name=br0`, pipework's `pipework br0 C dhcp`), or a
//! bridge berth makes with the NIC as its trunk (`-o parent=eth0`). Its containers are then
//! hosts of the LAN: berth gives the bridge no address and no firewall rules (it routes, NATs
//! and isolates nothing there, publishes no port, and the bridge may carry the host's own
//! uplink), and serves them no embedded resolver (the lease's router and nameservers do);
//! bandwidth limits and VLANs work as on any bridge network. ICC off and anti-spoofing are
//! refused.
//!
//! # The client
//! Packets are built and parsed by the [`dhcproto`] crate; berth only decides what goes in them.
//! Every exchange runs inside the container netns, on a UDP socket made there (see
//! [`crate::netns::Netns::enter`]) bound to port 68 and to the container's interface
//! (`SO_BINDTODEVICE`). Before the interface has an address, the kernel cannot deliver a unicast
//! reply to such a socket, so the client sets the BOOTP **broadcast flag** in DISCOVER and
//! REQUEST and the server broadcasts OFFER and ACK (RFC 2131 §4.1): no packet socket, no
//! hand-made Ethernet or IP headers. Once the address is configured, renewals are ordinary
//! unicast (RFC 2131 §4.4.5).
//!
//! * **Attach** ([`crate::Host::attach`]): the macvlan or veth is made (up, no address), then
//!   DISCOVER → OFFER → REQUEST → ACK. A message is retransmitted after 1 s, then 2 s, then every
//!   4 s, and the whole exchange is bounded by the host's DHCP timeout
//!   ([`crate::HostBuilder::dhcp_timeout`], default [`DEFAULT_TIMEOUT`]): no answer in time →
//!   [`crate::Error::DhcpTimeout`] and the attach is rolled back (no link, no record). A NAK
//!   restarts from DISCOVER (within the same bound). An ACK whose address the container
//!   already has on another network is DECLINEd (RFC 2131 §3.1.5) and the client starts over.
//!   The leased address, prefix and router are configured through netlink as for any endpoint,
//!   the nameservers go into the container's resolv.conf, and the lease
//!   ([`DhcpLease`]) is recorded in the attachment.
//! * **Identity**: the container's hostname is sent as option 12 and a client identifier
//!   (option 61, [`client_id`]) derived from the network name and the container id, so a
//!   container that detaches and attaches again is the same client to the server (and usually
//!   gets the same address back), whatever MAC its new interface has.
//! * **Lifetime** ([`DhcpClient`], spawned by the runtime like the DNS resolver, see
//!   [`crate::Host::dhcp_client`]): every DHCP endpoint recorded in the host's state dir is
//!   renewed — REQUEST unicast to the server from T1, broadcast from T2 — and the record's lease
//!   is updated on ACK; at expiry (or on a NAK) the address and default route are removed from
//!   the container and the endpoint is reported ([`DhcpEvent`]), then a new lease is sought as a
//!   client in INIT does (DISCOVER again, reverse-path filtering off on the bare interface so the
//!   servers' broadcasts get in) and put in place ([`DhcpEvent::Acquired`]). It reads the state
//!   dir, so it follows attaches and detaches made by any process. A new lease, or a renewal
//!   naming other nameservers, rewrites the container's written files (resolv.conf, hosts).
//! * **Detach**: DHCPRELEASE to the recorded server from whichever process detaches, before the
//!   interface goes.
//!
//! Once configured, the address is announced (gratuitous ARP, [`crate::driver::announce`]): the
//! server may have handed it to another host before.
//!
//! Not done: an ARP probe of the offered address before using it (RFC 2131 §4.4.1's SHOULD; an
//! ACK for an address the container already has is declined), DHCPv6.
//!
//! A process killed after the server's ACK and before the attach's records leaves the lease at
//! the server until it expires (gc removes the interface as for any interrupted attach).

mod client;
pub(crate) mod message;
mod renew;
mod socket;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::lease::{DhcpLease, IpamDriver, client_id, hex_colons};
pub use renew::{DhcpClient, DhcpEvent};

pub(crate) use client::{Failure, Schedule, acquire, release};
pub(crate) use message::ClientParams;
pub(crate) use socket::UdpTransport;

/// How long an attach waits for the DHCP server by default (see [`crate::HostBuilder::dhcp_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn parse_hex_colons(s: &str) -> Option<Vec<u8>> {
    s.split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
