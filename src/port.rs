//! Published ports: `docker run -p [HOSTIP:]HOSTPORT:PORT[/PROTO]`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A transport protocol a port can be published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(Error::invalid("protocol", s, "expected tcp or udp")),
        }
    }
}

/// One published port: traffic to `host_ip:host_port` is sent to the container's `container_port`.
///
/// Equivalent of `docker run -p HOST_IP:HOST_PORT:CONTAINER_PORT/PROTO`.
/// ```
/// use berth::Port;
/// let p = Port::tcp(8080).to(80);
/// assert_eq!((p.host_port, p.container_port), (8080, 80));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Protocol.
    pub proto: Protocol,
    /// Host address it is published on; `0.0.0.0` means every address of the host netns.
    pub host_ip: IpAddr,
    /// Port on the host.
    pub host_port: u16,
    /// Port inside the container.
    pub container_port: u16,
}

/// Entry point for building a [`PortMapping`]: `Port::tcp(8080).to(80)`.
#[derive(Debug, Clone, Copy)]
pub struct Port {
    proto: Protocol,
    host_port: u16,
    host_ip: IpAddr,
}

impl Port {
    /// A TCP port published on `host_port` (all host addresses).
    pub fn tcp(host_port: u16) -> Self {
        Port {
            proto: Protocol::Tcp,
            host_port,
            host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// A UDP port published on `host_port` (all host addresses).
    pub fn udp(host_port: u16) -> Self {
        Port {
            proto: Protocol::Udp,
            ..Port::tcp(host_port)
        }
    }

    /// Publish only on this host address.
    pub fn on(mut self, host_ip: IpAddr) -> Self {
        self.host_ip = host_ip;
        self
    }

    /// The container port traffic is forwarded to.
    pub fn to(self, container_port: u16) -> PortMapping {
        PortMapping {
            proto: self.proto,
            host_ip: self.host_ip,
            host_port: self.host_port,
            container_port,
        }
    }
}

impl PortMapping {
    /// Whether two mappings claim the same host socket (wildcard overlaps every address).
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip == other.host_ip
                || self.host_ip.is_unspecified()
                || other.host_ip.is_unspecified())
    }

    /// Checks the mapping is one berth can publish.
    pub fn validate(&self) -> Result<()> {
        if self.host_port == 0 {
            return Err(Error::invalid("host port", 0, "must be 1-65535"));
        }
        if self.container_port == 0 {
            return Err(Error::invalid("container port", 0, "must be 1-65535"));
        }
        if !self.host_ip.is_ipv4() {
            return Err(Error::invalid(
                "host ip",
                self.host_ip,
                "only IPv4 host addresses are supported so far",
            ));
        }
        Ok(())
    }
}

/// Parses Docker's `-p` syntax: `[HOSTIP:]HOSTPORT:PORT[/PROTO]`.
///
/// A host port is required here; picking a free one is the firewall issue's work.
impl FromStr for PortMapping {
    type Err = Error;
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason| Error::invalid("port spec", spec, reason);
        let (body, proto) = match spec.rsplit_once('/') {
            Some((b, p)) => (b, p.parse()?),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = body.rsplitn(3, ':').collect();
        let port = |s: &str| s.parse::<u16>().map_err(|_| bad("ports must be 1-65535"));
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [c, h] => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port(h)?, port(c)?),
            [c, h, ip] => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip = ip.parse().map_err(|_| bad("host ip is not an address"))?;
                (ip, port(h)?, port(c)?)
            }
            _ => return Err(bad("expected [HOSTIP:]HOSTPORT:PORT[/tcp|udp]")),
        };
        let m = PortMapping {
            proto,
            host_ip,
            host_port,
            container_port,
        };
        m.validate()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_syntax() {
        let m: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(m, Port::tcp(8080).to(80));
        let m: PortMapping = "127.0.0.1:53:5353/udp".parse().unwrap();
        assert_eq!(m, Port::udp(53).on("127.0.0.1".parse().unwrap()).to(5353));
        assert!("80".parse::<PortMapping>().is_err());
        assert!("0:80".parse::<PortMapping>().is_err());
        assert!("8080:80/icmp".parse::<PortMapping>().is_err());
        assert!("x:80:80".parse::<PortMapping>().is_err());
    }

    #[test]
    fn wildcard_conflicts_with_specific() {
        let any = Port::tcp(80).to(80);
        let one = Port::tcp(80).on("10.0.0.1".parse().unwrap()).to(81);
        let two = Port::tcp(80).on("10.0.0.2".parse().unwrap()).to(81);
        assert!(any.conflicts_with(&one));
        assert!(!one.conflicts_with(&two));
        assert!(!Port::udp(80).to(80).conflicts_with(&any));
    }
}
