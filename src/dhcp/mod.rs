//! DHCP addresses for macvlan networks (`docker network create -d macvlan --ipam-driver dhcp`,
//! pipework's `dhcp`, netavark's dhcp-proxy): the endpoint's address, prefix, default gateway and
//! nameservers come from the DHCP server of the LAN the parent link is on, not from a pool of
//! berth's.
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
//! * **Attach** ([`crate::Host::attach`]): the macvlan is made (up, no address), then
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
//!   the container and the endpoint is reported ([`DhcpEvent`]). It reads the state dir, so it
//!   follows attaches and detaches made by any process.
//! * **Detach**: DHCPRELEASE to the recorded server from whichever process detaches, before the
//!   interface goes.
//!
//! Once configured, the address is announced (gratuitous ARP, [`crate::driver::announce`]): the
//! server may have handed it to another host before.
//!
//! Not done: an ARP probe of the offered address before using it (RFC 2131 §4.4.1's SHOULD; an
//! ACK for an address the container already has is declined), re-acquiring a lost lease (the
//! endpoint stays without an address until it is detached and attached again), DHCPv6, bridge
//! networks (refused: the bridge driver's gateway and NAT belong to berth's own subnets).
//!
//! A process killed after the server's ACK and before the attach's records leaves the lease at
//! the server until it expires (gc removes the interface as for any interrupted attach).

mod client;
pub(crate) mod message;
mod renew;
mod socket;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::Digest;

pub use renew::{DhcpClient, DhcpEvent};

pub(crate) use client::{Failure, Schedule, acquire, release};
pub(crate) use message::ClientParams;
pub(crate) use socket::UdpTransport;

/// How long an attach waits for the DHCP server by default (see [`crate::HostBuilder::dhcp_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a network's endpoint addresses come from (Docker's `--ipam-driver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpamDriver {
    /// berth's own IPAM: a subnet from the pools (or `--subnet`), addresses allocated from it.
    #[default]
    Default,
    /// The LAN's DHCP server (macvlan networks with a parent link): no subnet of berth's; each
    /// endpoint leases its address, prefix, gateway and nameservers (see [`crate::dhcp`]).
    Dhcp,
}

impl IpamDriver {
    /// Docker's name for it (`default`, `dhcp`).
    pub fn name(self) -> &'static str {
        match self {
            IpamDriver::Default => "default",
            IpamDriver::Dhcp => "dhcp",
        }
    }

    /// Whether this is the default driver (for `skip_serializing_if`).
    pub fn is_default(&self) -> bool {
        *self == IpamDriver::Default
    }
}

impl std::fmt::Display for IpamDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IpamDriver {
    type Err = crate::Error;
    /// `default` or `dhcp` (Docker's names).
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "default" => Ok(IpamDriver::Default),
            "dhcp" => Ok(IpamDriver::Dhcp),
            _ => Err(crate::Error::invalid(
                "ipam driver",
                s,
                "expected default or dhcp",
            )),
        }
    }
}

/// A DHCP lease as recorded in an endpoint's [`crate::Attachment`]: enough for any process to
/// renew or release it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpLease {
    /// The leased address with the prefix of the announced subnet mask.
    pub address: Ipv4Net,
    /// The first router announced (option 3), if any.
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// Nameservers announced (option 6).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
    /// The client identifier sent (option 61), hex with colons as dnsmasq prints it.
    pub client_id: String,
    /// The hostname sent (option 12).
    pub hostname: String,
    /// When it was granted or last renewed (seconds since the epoch).
    pub obtained: u64,
    /// Lease time in seconds (option 51; `u32::MAX`: infinite).
    pub lease_secs: u32,
    /// Renewal time T1 in seconds after `obtained` (option 58, default half the lease).
    pub t1_secs: u32,
    /// Rebinding time T2 in seconds after `obtained` (option 59, default 7/8 of the lease).
    pub t2_secs: u32,
    /// The lease ran out or was refused (NAK): its address was removed from the container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

impl DhcpLease {
    /// Whether the lease never ends (lease time 0xffffffff).
    pub fn infinite(&self) -> bool {
        self.lease_secs == u32::MAX
    }

    fn at(&self, secs: u32) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.obtained) + Duration::from_secs(secs.into())
    }

    /// When renewing starts (T1).
    pub fn renew_at(&self) -> SystemTime {
        self.at(self.t1_secs)
    }

    /// When rebinding starts (T2).
    pub fn rebind_at(&self) -> SystemTime {
        self.at(self.t2_secs)
    }

    /// When the lease ends.
    pub fn expires_at(&self) -> SystemTime {
        self.at(self.lease_secs)
    }
}

/// The client identifier (DHCP option 61) of `container` on `network`: type 0 (not a hardware
/// address, RFC 2132 §9.14) followed by the first 16 bytes of SHA-256(`berth-dhcp` NUL network
/// NUL container). The same for every attach of the container to the network, different for
/// each network (a container on two DHCP networks is two clients).
pub fn client_id(network: &str, container: &str) -> Vec<u8> {
    let mut h = sha2::Sha256::new();
    h.update(b"berth-dhcp\0");
    h.update(network.as_bytes());
    h.update(b"\0");
    h.update(container.as_bytes());
    let d = h.finalize();
    let mut id = vec![0u8];
    id.extend_from_slice(&d[..16]);
    id
}

/// Bytes as dnsmasq prints a client id: lowercase hex, colon-separated.
pub fn hex_colons(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

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
