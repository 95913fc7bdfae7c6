//! The model of DHCP networks ([`crate::dhcp`] is the client): where a network's addresses come
//! from ([`IpamDriver`]), a lease as an endpoint's record holds it ([`DhcpLease`]), and the
//! client identifier of a container on a network ([`client_id`]).

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// Where a network's endpoint addresses come from (Docker's `--ipam-driver`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpamDriver {
    /// berth's own IPAM: a subnet from the pools (or `--subnet`), addresses allocated from it.
    #[default]
    Default,
    /// The LAN's DHCP server (macvlan networks with a parent link, bridge networks on the
    /// LAN): no subnet of berth's; each endpoint leases its address, prefix, gateway and
    /// nameservers (see [`crate::dhcp`]).
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
