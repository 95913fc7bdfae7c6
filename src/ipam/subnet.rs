//! Address arithmetic of one subnet, IPv4 or IPv6: pure, no I/O, property-tested.
//!
//! Never handed out: the subnet's network address, its broadcast address (IPv4), the gateway,
//! and reserved (aux) addresses; with an ip-range, only addresses inside it. The range's own
//! first and last addresses are ordinary host addresses of the subnet and are handed out, as
//! Docker's allocator does. The next free address
//! is searched from just after the last one handed out (round robin), so an address released a
//! moment ago is not reused at once (stale ARP/NDP and conntrack entries would hit the new
//! container). The search costs O(addresses in use), never O(subnet size), so a /64 is as cheap
//! as a /24.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::address::{invalid_subnet, validate_subnet};
use crate::error::{Error, Result};

/// The allocation state of one subnet of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetState {
    /// The subnet.
    pub subnet: IpNet,
    /// Its gateway (never handed out).
    pub gateway: IpAddr,
    /// Only addresses inside this range are handed out (`--ip-range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
    /// Addresses never handed out (`--aux-address`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, IpAddr>,
    /// Address → container holding it.
    #[serde(default)]
    pub allocations: BTreeMap<IpAddr, String>,
    /// The last address handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<IpAddr>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

impl SubnetState {
    /// A fresh subnet. Gateway: given, or the first host address. The gateway, ip-range and aux
    /// addresses are checked against the subnet.
    pub fn new(
        subnet: IpNet,
        gateway: Option<IpAddr>,
        ip_range: Option<IpNet>,
        aux: BTreeMap<String, IpAddr>,
    ) -> Result<Self> {
        validate_subnet(&subnet)?;
        let mut s = SubnetState {
            subnet,
            gateway: subnet.network(),
            ip_range,
            aux,
            allocations: BTreeMap::new(),
            last: None,
        };
        let (lo, _) = s.host_bounds();
        s.gateway = gateway.unwrap_or(from_u128(subnet.addr().is_ipv4(), lo));
        s.check_host_address(s.gateway)?;
        if let Some(r) = ip_range {
            if r.trunc() != r {
                return Err(invalid_subnet(&r, "ip-range has host bits set"));
            }
            if !subnet.contains(&r) {
                return Err(Error::InvalidSubnet {
                    subnet: r.to_string(),
                    reason: "ip-range is not inside its subnet",
                });
            }
            if s.bounds().is_none() {
                return Err(invalid_subnet(&r, "ip-range holds no usable address"));
            }
        }
        for ip in s.aux.values() {
            s.check_host_address(*ip)?;
        }
        Ok(s)
    }

    fn v4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    /// First and last host address of the subnet.
    fn host_bounds(&self) -> (u128, u128) {
        let lo = to_u128(self.subnet.network()) + 1;
        let hi = to_u128(self.subnet.broadcast()) - u128::from(self.v4());
        (lo, hi)
    }

    /// The addresses next-free allocation may hand out: the host range, narrowed by ip-range.
    fn bounds(&self) -> Option<(u128, u128)> {
        let (mut lo, mut hi) = self.host_bounds();
        if let Some(r) = self.ip_range {
            lo = lo.max(to_u128(r.network()));
            hi = hi.min(to_u128(r.broadcast()));
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// An address a host on this subnet may use: inside, not network or (IPv4) broadcast.
    pub fn check_host_address(&self, ip: IpAddr) -> Result<()> {
        if !self.subnet.contains(&ip) {
            return Err(Error::OutsideSubnet {
                address: ip,
                subnet: self.subnet.to_string(),
            });
        }
        let (lo, hi) = self.host_bounds();
        if !(lo..=hi).contains(&to_u128(ip)) {
            return Err(Error::InvalidValue {
                what: "address",
                value: ip.to_string(),
                reason: "is the network or broadcast address of its subnet",
            });
        }
        Ok(())
    }

    /// Checks a static request for `ip` (in use or not): a host address of the subnet, neither
    /// the gateway nor an aux address.
    pub fn check_request(&self, network: &str, ip: IpAddr) -> Result<()> {
        self.check_host_address(ip)?;
        match self.reserved_reason(ip) {
            Some(reason) => Err(Error::AddressReserved {
                address: ip,
                network: network.into(),
                reason,
            }),
            None => Ok(()),
        }
    }

    fn reserved_reason(&self, ip: IpAddr) -> Option<&'static str> {
        if ip == self.gateway {
            Some("it is the gateway")
        } else if self.aux.values().any(|a| *a == ip) {
            Some("it is an aux address")
        } else {
            None
        }
    }

    /// The address `container` holds here, if any.
    pub fn held_by(&self, container: &str) -> Option<IpAddr> {
        self.allocations
            .iter()
            .find(|(_, c)| *c == container)
            .map(|(ip, _)| *ip)
    }

    /// Allocates for `container`: `request` if given (anywhere in the subnet, as Docker allows
    /// outside the ip-range) and free, else the next free address in range after `last`. A
    /// container that already holds an address gets it back (a retried attach) unless it asks
    /// for another.
    pub fn allocate(
        &mut self,
        network: &str,
        container: &str,
        request: Option<IpAddr>,
    ) -> Result<IpAddr> {
        if let Some(held) = self.held_by(container)
            && request.is_none_or(|r| r == held)
        {
            return Ok(held);
        }
        let ip = match request {
            Some(ip) => {
                self.check_request(network, ip)?;
                if let Some(owner) = self.allocations.get(&ip) {
                    return Err(Error::AddressInUse {
                        address: ip,
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

    /// Releases what `container` holds; returns whether it held something.
    pub fn release(&mut self, container: &str) -> bool {
        let before = self.allocations.len();
        self.allocations.retain(|_, c| c != container);
        before != self.allocations.len()
    }

    /// The addresses next-free allocation tries, in order: round robin from just after `last`
    /// to the end of the range, then from its start; never the gateway or an aux address.
    /// Lazy: taking the first few of a /64 costs what is taken.
    pub fn candidates(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.v4();
        let (lo, hi) = self.bounds().unwrap_or((1, 0));
        let start = self
            .last
            .map(to_u128)
            .filter(|l| (lo..hi).contains(l))
            .map_or(lo, |l| l + 1);
        (start..=hi)
            .chain(lo..start)
            .map(move |n| from_u128(v4, n))
            .filter(|ip| self.reserved_reason(*ip).is_none())
    }

    /// The first candidate not allocated: among `allocations.len() + 1` candidates one is free
    /// if any is, so this costs O(addresses in use), never O(subnet size).
    pub fn next_free(&self) -> Option<IpAddr> {
        self.candidates()
            .take(self.allocations.len() + 1)
            .find(|ip| !self.allocations.contains_key(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn range_aux_and_gateway_are_honoured() {
        let aux = BTreeMap::from([("router".to_string(), ip("10.0.1.0"))]);
        let mut s =
            SubnetState::new(net("10.0.0.0/16"), None, Some(net("10.0.1.0/30")), aux).unwrap();
        assert_eq!(s.gateway, ip("10.0.0.1"));
        let got: Vec<_> = (0..3)
            .map(|i| s.allocate("n", &format!("c{i}"), None).unwrap())
            .collect();
        assert_eq!(got, vec![ip("10.0.1.1"), ip("10.0.1.2"), ip("10.0.1.3")]);
        assert!(matches!(
            s.allocate("n", "c9", None),
            Err(Error::PoolExhausted { .. })
        ));
        // A static address outside the range but inside the subnet is allowed (Docker's rule).
        assert_eq!(
            s.allocate("n", "c9", Some(ip("10.0.5.5"))).unwrap(),
            ip("10.0.5.5")
        );
        assert!(matches!(
            s.allocate("n", "x", Some(ip("10.0.1.0"))),
            Err(Error::AddressReserved { .. })
        ));
    }

    #[test]
    fn special_ranges_are_refused_by_name() {
        for (s, word) in [
            ("127.0.0.0/8", "loopback"),
            ("127.1.0.0/16", "loopback"),
            ("224.1.0.0/16", "multicast"),
            ("0.0.0.0/8", "this network"),
            ("240.0.0.0/24", "reserved"),
            ("169.254.0.0/24", "link-local"),
            ("::/64", "unspecified"),
            ("fe80::/64", "link-local"),
            ("ff02::/64", "multicast"),
            ("::ffff:0:0/112", "IPv4-mapped"),
        ] {
            let e = validate_subnet(&net(s)).unwrap_err();
            assert!(e.to_string().contains(word), "{s}: {e}");
        }
        validate_subnet(&net("10.0.0.0/8")).unwrap();
        validate_subnet(&net("fd00::/64")).unwrap();
    }

    #[test]
    fn bad_ranges_gateways_and_aux_are_refused() {
        let none = BTreeMap::new;
        assert!(SubnetState::new(net("10.0.0.0/24"), Some(ip("10.0.1.1")), None, none()).is_err());
        assert!(
            SubnetState::new(net("10.0.0.0/24"), None, Some(net("10.0.1.0/28")), none()).is_err()
        );
        let aux = BTreeMap::from([("r".to_string(), ip("10.9.0.1"))]);
        assert!(SubnetState::new(net("10.0.0.0/24"), None, None, aux).is_err());
        assert!(SubnetState::new(net("10.0.0.1/24"), None, None, none()).is_err());
        assert!(SubnetState::new(net("fd00::/127"), None, None, none()).is_err());
    }

    #[test]
    fn ipv6_allocation_is_cheap_in_a_slash_64() {
        let mut s = SubnetState::new(net("fd00:1:2:3::/64"), None, None, BTreeMap::new()).unwrap();
        assert_eq!(s.gateway, ip("fd00:1:2:3::1"));
        assert_eq!(s.allocate("n", "a", None).unwrap(), ip("fd00:1:2:3::2"));
        assert_eq!(
            s.allocate("n", "b", Some(ip("fd00:1:2:3::ffff"))).unwrap(),
            ip("fd00:1:2:3::ffff")
        );
        assert_eq!(s.allocate("n", "c", None).unwrap(), ip("fd00:1:2:3::1:0"));
    }

    proptest! {
        /// Any sequence of allocations and releases: no duplicates; never network, broadcast,
        /// gateway or aux; next-free only inside the range; released addresses come back.
        #[test]
        fn allocation_invariants(ops in proptest::collection::vec((0u8..24, any::<bool>()), 1..300),
                                 prefix in 26u8..30, range_len in 0u8..3) {
            let subnet = IpNet::new(ip("10.1.0.0"), prefix).unwrap();
            let range = (range_len > 0).then(|| IpNet::new(ip("10.1.0.0"), prefix + range_len).unwrap());
            let aux = BTreeMap::from([("aux".to_string(), ip("10.1.0.2"))]);
            let mut s = SubnetState::new(subnet, None, range, aux).unwrap();
            for (c, release) in ops {
                let c = format!("c{c}");
                if release {
                    s.release(&c);
                    continue;
                }
                let free_before = s.clone().next_free();
                match s.allocate("n", &c, None) {
                    Ok(a) => {
                        prop_assert!(a != s.gateway && a != ip("10.1.0.2"));
                        prop_assert!(a != subnet.network() && a != subnet.broadcast());
                        prop_assert!(range.is_none_or(|r| r.contains(&a)) || s.held_by(&c) == Some(a));
                    }
                    Err(Error::PoolExhausted { .. }) => prop_assert!(free_before.is_none()),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
                let mut seen = BTreeSet::new();
                for owner in s.allocations.values() {
                    prop_assert!(seen.insert(owner.clone()), "{owner} holds two addresses");
                }
            }
            // Releasing everything makes every address allocatable again.
            let owners: Vec<String> = s.allocations.values().cloned().collect();
            for o in owners { s.release(&o); }
            let usable = s.candidates().count();
            for i in 0..usable {
                let name = format!("z{i}");
                prop_assert!(s.allocate("n", &name, None).is_ok());
            }
            prop_assert!(s.allocate("n", "one-too-many", None).is_err());
        }
    }
}
