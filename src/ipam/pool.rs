//! Address arithmetic of one subnet: pure, no I/O, unit- and property-tested.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::validate_host_address;

/// The allocation state of one network's subnet (what `ipam/NETWORK.json` holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// Its gateway (never handed out).
    pub gateway: Ipv4Addr,
    /// Address → container holding it.
    pub allocations: BTreeMap<Ipv4Addr, String>,
    /// The last address handed out; the next search starts after it (round robin), so a just
    /// released address is not reused at once.
    pub last: Option<Ipv4Addr>,
}

impl PoolState {
    /// A fresh pool; the gateway defaults to the first host address.
    pub fn new(subnet: Ipv4Net, gateway: Option<Ipv4Addr>) -> Result<Self> {
        crate::network::validate_subnet(&subnet)?;
        let gateway = gateway.unwrap_or_else(|| first_host(&subnet));
        validate_host_address(&subnet, gateway)?;
        Ok(PoolState {
            subnet,
            gateway,
            allocations: BTreeMap::new(),
            last: None,
        })
    }

    /// Allocates an address for `container`: `request` if given and free, else the next free
    /// one after `last`. A container that already holds an address gets it back (a retried
    /// attach), unless it asks for a different one.
    pub fn allocate(
        &mut self,
        network: &str,
        container: &str,
        request: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        if let Some((&held, _)) = self.allocations.iter().find(|(_, c)| *c == container)
            && request.is_none_or(|r| r == held)
        {
            return Ok(held);
        }
        let ip = match request {
            Some(ip) => {
                validate_host_address(&self.subnet, ip)?;
                if ip == self.gateway {
                    return Err(Error::AddressReserved {
                        address: IpAddr::V4(ip),
                        network: network.into(),
                        reason: "it is the gateway",
                    });
                }
                if let Some(owner) = self.allocations.get(&ip) {
                    return Err(Error::AddressInUse {
                        address: IpAddr::V4(ip),
                        network: network.into(),
                        container: owner.clone(),
                    });
                }
                ip
            }
            None => self.next_free().ok_or_else(|| Error::PoolExhausted {
                network: network.into(),
            })?,
        };
        self.allocations.insert(ip, container.to_string());
        self.last = Some(ip);
        Ok(ip)
    }

    /// Releases whatever `container` holds; returns whether it held something.
    pub fn release(&mut self, container: &str) -> bool {
        let before = self.allocations.len();
        self.allocations.retain(|_, c| c != container);
        before != self.allocations.len()
    }

    fn next_free(&self) -> Option<Ipv4Addr> {
        let lo = u32::from(self.subnet.network()) + 1;
        let hi = u32::from(self.subnet.broadcast()) - 1;
        let size = hi - lo + 1;
        let start = self
            .last
            .map(u32::from)
            .filter(|l| (lo..=hi).contains(l))
            .map_or(lo, |l| if l == hi { lo } else { l + 1 });
        (0..size)
            .map(|i| Ipv4Addr::from(lo + (start - lo + i) % size))
            .find(|ip| *ip != self.gateway && !self.allocations.contains_key(ip))
    }
}

fn first_host(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str) -> PoolState {
        PoolState::new(s.parse().unwrap(), None).unwrap()
    }

    #[test]
    fn next_free_skips_gateway_and_wraps_round_robin() {
        let mut p = pool("10.0.0.0/29"); // hosts .1-.6, gateway .1
        let got: Vec<_> = (0..5)
            .map(|i| p.allocate("n", &format!("c{i}"), None).unwrap())
            .collect();
        assert_eq!(got[0], Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 0, 0, 6));
        assert!(matches!(
            p.allocate("n", "c9", None),
            Err(Error::PoolExhausted { .. })
        ));
        assert!(p.release("c1"));
        assert_eq!(
            p.allocate("n", "c9", None).unwrap(),
            Ipv4Addr::new(10, 0, 0, 3)
        );
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut p = pool("10.0.0.0/24");
        let a = p.allocate("n", "a", None).unwrap();
        p.release("a");
        let b = p.allocate("n", "b", None).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn static_requests_are_checked() {
        let mut p = pool("10.0.0.0/24");
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            p.allocate("n", "a", ip("10.0.0.50")).unwrap(),
            Ipv4Addr::new(10, 0, 0, 50)
        );
        assert!(matches!(
            p.allocate("n", "b", ip("10.0.0.50")),
            Err(Error::AddressInUse { .. })
        ));
        assert!(matches!(
            p.allocate("n", "b", ip("10.0.1.5")),
            Err(Error::OutsideSubnet { .. })
        ));
        assert!(matches!(
            p.allocate("n", "b", ip("10.0.0.1")),
            Err(Error::AddressReserved { .. })
        ));
        assert!(p.allocate("n", "b", ip("10.0.0.255")).is_err());
        assert!(p.allocate("n", "b", ip("10.0.0.0")).is_err());
        // A retried attach gets its address back.
        assert_eq!(
            p.allocate("n", "a", None).unwrap(),
            Ipv4Addr::new(10, 0, 0, 50)
        );
    }

    #[test]
    fn gateway_must_be_inside() {
        assert!(
            PoolState::new(
                "10.0.0.0/24".parse().unwrap(),
                Some("10.0.1.1".parse().unwrap())
            )
            .is_err()
        );
    }
}
