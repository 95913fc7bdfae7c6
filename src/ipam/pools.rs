//! Automatic subnets: pick a free subnet from address pools (Docker's `default-address-pools`),
//! avoiding every prefix that is already in use. Pure: the caller gathers what to avoid (other
//! networks, host-netns addresses and on-link routes, resolv.conf nameservers).

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

pub use crate::address::AddressPool;

/// Docker's default IPv4 pools: 172.17.0.0/16 … 172.31.0.0/16 as /16s, then 192.168.0.0/16 as
/// /20s.
pub fn default_ipv4_pools() -> Vec<AddressPool> {
    let mut v: Vec<AddressPool> = (17..=31)
        .map(|b| AddressPool {
            base: format!("172.{b}.0.0/16").parse().expect("literal"),
            size: 16,
        })
        .collect();
    v.push(AddressPool {
        base: "192.168.0.0/16".parse().expect("literal"),
        size: 20,
    });
    v
}

/// A ULA /48 (`fdXX:XXXX:XXXX::/48`) derived stably from a host identifier (e.g. the bytes of
/// `/etc/machine-id`), as RFC 4193 suggests: 40 bits of a hash of it.
pub fn ula_prefix(host_id: &[u8]) -> Ipv6Net {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let g = h & 0xff_ffff_ffff;
    let a = Ipv6Addr::new(
        0xfd00 | ((g >> 32) as u16 & 0xff),
        (g >> 16) as u16,
        g as u16,
        0,
        0,
        0,
        0,
        0,
    );
    Ipv6Net::new(a, 48).expect("48 is a valid prefix")
}

/// The default IPv6 pool: /64s out of the host's ULA /48.
pub fn default_ipv6_pools(host_id: &[u8]) -> Vec<AddressPool> {
    vec![AddressPool {
        base: IpNet::V6(ula_prefix(host_id)),
        size: 64,
    }]
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of the pools (in order) that overlaps none of `avoid`. Whole blocks that
/// overlap are skipped at once, so the cost is O(pools × avoid), not O(subnets in the pools).
pub fn choose(pools: &[AddressPool], avoid: &[IpNet]) -> Option<IpNet> {
    for pool in pools {
        if pool.size < pool.base.prefix_len() || pool.size > pool.base.max_prefix_len() {
            continue;
        }
        let Ok(subnets) = pool.base.subnets(pool.size) else {
            continue;
        };
        // Walk candidates; when one collides with a larger avoided prefix, jump past that prefix.
        let mut next = Some(subnets.into_iter().next()?);
        while let Some(cand) = next {
            if !pool.base.contains(&cand.network()) {
                break;
            }
            match avoid
                .iter()
                .filter(|a| overlaps(a, &cand))
                .max_by_key(|a| a.broadcast())
            {
                None => return Some(cand),
                Some(a) => {
                    let end = if a.prefix_len() < cand.prefix_len() {
                        a.broadcast()
                    } else {
                        cand.broadcast()
                    };
                    next = successor(end, pool.size);
                }
            }
        }
    }
    None
}

/// The subnet of prefix `size` that starts right after address `end`.
fn successor(end: std::net::IpAddr, size: u8) -> Option<IpNet> {
    let next = match end {
        std::net::IpAddr::V4(a) => std::net::IpAddr::V4(u32::from(a).checked_add(1)?.into()),
        std::net::IpAddr::V6(a) => std::net::IpAddr::V6(u128::from(a).checked_add(1)?.into()),
    };
    IpNet::new(next, size).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn picks_docker_defaults_in_order_and_skips_what_is_used() {
        let pools = default_ipv4_pools();
        assert_eq!(choose(&pools, &[]), Some(n("172.17.0.0/16")));
        let used = [n("172.17.0.0/16"), n("172.18.5.0/24"), n("172.19.0.1/32")];
        assert_eq!(choose(&pools, &used), Some(n("172.20.0.0/16")));
        // A big avoided prefix skips every pool inside it at once.
        assert_eq!(
            choose(&pools, &[n("172.16.0.0/12")]),
            Some(n("192.168.0.0/20"))
        );
        assert_eq!(
            choose(&pools, &[n("172.16.0.0/12"), n("192.168.0.0/19")]),
            Some(n("192.168.32.0/20"))
        );
        assert_eq!(
            choose(&pools, &[n("172.16.0.0/12"), n("192.168.0.0/16")]),
            None
        );
    }

    #[test]
    fn ula_is_stable_and_unique_local() {
        let a = ula_prefix(b"machine-a");
        assert_eq!(a, ula_prefix(b"machine-a"));
        assert_ne!(a, ula_prefix(b"machine-b"));
        assert_eq!(a.prefix_len(), 48);
        assert_eq!(a.addr().segments()[0] & 0xff00, 0xfd00);
        let pools = default_ipv6_pools(b"machine-a");
        let first = choose(&pools, &[]).unwrap();
        assert_eq!(first.prefix_len(), 64);
        let second = choose(&pools, &[first]).unwrap();
        assert_ne!(first, second);
        assert!(pools[0].base.contains(&second));
    }
}
