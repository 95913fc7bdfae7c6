//! MAC addresses: parsing, validation, random locally administered ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random unicast, locally administered address (`x2:…`), as Docker and the kernel make.
    pub fn random() -> Self {
        let mut b: [u8; 6] = rand::random();
        b[0] = (b[0] & 0xfe) | 0x02;
        MacAddr(b)
    }

    /// Docker's derived MAC: `02:42` followed by the four bytes of the IPv4 address.
    pub fn from_ipv4(ip: std::net::Ipv4Addr) -> Self {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// The six bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Checks the address can be given to an interface (unicast, not all zero).
    pub fn validate(&self) -> Result<()> {
        if self.0[0] & 1 == 1 {
            return Err(Error::invalid("mac address", self, "multicast bit is set"));
        }
        if self.0 == [0; 6] {
            return Err(Error::invalid("mac address", self, "all zero"));
        }
        Ok(())
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "mac address",
                s,
                "expected six hex bytes like 02:42:ac:11:00:02",
            )
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            // Exactly two hex digits: `from_str_radix` alone also takes a sign (`+2`).
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_local_unicast() {
        for _ in 0..100 {
            let m = MacAddr::random();
            assert_eq!(m.0[0] & 3, 2);
            m.validate().unwrap();
        }
    }

    #[test]
    fn derived_from_ipv4_like_docker() {
        let m = MacAddr::from_ipv4("172.17.0.2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        m.validate().unwrap();
    }

    #[test]
    fn a_sign_is_not_a_hex_digit() {
        // Found by fuzz/fuzz_targets/mac.rs: `u8::from_str_radix("+2", 16)` is Ok(2).
        for s in [
            "+2:aa:bb:cc:dd:e2",
            "02:+a:bb:cc:dd:e2",
            "02:aa:bb:cc:dd:+2",
            "-2:aa:bb:cc:dd:e2",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s}");
        }
    }

    #[test]
    fn parse_round_trip_and_errors() {
        let m: MacAddr = "02:42:ac:11:00:02".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert!("02:42:ac:11:00".parse::<MacAddr>().is_err());
        assert!("02:42:ac:11:00:02:03".parse::<MacAddr>().is_err());
        assert!("zz:42:ac:11:00:02".parse::<MacAddr>().is_err());
        assert!(
            "01:00:5e:00:00:01"
                .parse::<MacAddr>()
                .unwrap()
                .validate()
                .is_err()
        );
    }
}
