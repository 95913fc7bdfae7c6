//! Pure rules about addresses, shared by the model and IPAM: which subnets a network may use
//! ([`validate_subnet`]: no host bits, no range the kernel treats specially, room for a gateway
//! and an endpoint) and what an address pool is ([`AddressPool`]). Imports nothing of berth but
//! the error type.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A pool: subnets of prefix length `size` carved out of `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    /// The range to carve from.
    pub base: IpNet,
    /// Prefix length of each subnet handed out.
    pub size: u8,
}

pub(crate) fn invalid_subnet(subnet: &IpNet, reason: &'static str) -> Error {
    Error::InvalidSubnet {
        subnet: subnet.to_string(),
        reason,
    }
}

/// Ranges no network may use, with why: what the kernel treats specially (loopback,
/// multicast, link-local, "this network", reserved/broadcast, IPv4-mapped IPv6).
const SPECIAL: &[(&str, &str)] = &[
    ("0.0.0.0/8", "overlaps 0.0.0.0/8 (\"this network\")"),
    ("127.0.0.0/8", "overlaps the loopback range 127.0.0.0/8"),
    (
        "169.254.0.0/16",
        "overlaps the link-local range 169.254.0.0/16",
    ),
    ("224.0.0.0/4", "overlaps the multicast range 224.0.0.0/4"),
    (
        "240.0.0.0/4",
        "overlaps the reserved range 240.0.0.0/4 (and broadcast)",
    ),
    ("::/128", "holds the unspecified address ::"),
    ("::1/128", "holds the loopback address ::1"),
    (
        "::ffff:0:0/96",
        "overlaps the IPv4-mapped range ::ffff:0:0/96",
    ),
    ("fe80::/10", "overlaps the link-local range fe80::/10"),
    ("ff00::/8", "overlaps the multicast range ff00::/8"),
];

/// Checks a subnet: no host bits, not a special range, room for a gateway and at least one
/// endpoint.
pub fn validate_subnet(subnet: &IpNet) -> Result<()> {
    if subnet.trunc() != *subnet {
        return Err(invalid_subnet(subnet, "host bits are set"));
    }
    for (range, why) in SPECIAL {
        let range: IpNet = range.parse().expect("literal");
        if range.contains(&subnet.network()) || subnet.contains(&range.network()) {
            return Err(Error::InvalidSubnetRange {
                subnet: subnet.to_string(),
                reason: why,
            });
        }
    }
    let max = if subnet.addr().is_ipv4() { 30 } else { 126 };
    if subnet.prefix_len() > max {
        return Err(invalid_subnet(
            subnet,
            "too small: needs room for a gateway and an endpoint",
        ));
    }
    Ok(())
}
