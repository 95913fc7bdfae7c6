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
    /// SCTP (IP protocol 132).
    Sctp,
}

impl Protocol {
    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        })
    }
}

impl FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(Error::invalid("protocol", s, "expected tcp, udp or sctp")),
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
    /// `0.0.0.0` stands for every address of both families, `::` for every IPv6 address.
    pub fn conflicts_with(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (covers(self.host_ip, other.host_ip) || covers(other.host_ip, self.host_ip))
    }

    /// Checks the mapping is one berth can publish.
    pub fn validate(&self) -> Result<()> {
        if self.host_port == 0 {
            return Err(Error::invalid("host port", 0, "must be 1-65535"));
        }
        if self.container_port == 0 {
            return Err(Error::invalid("container port", 0, "must be 1-65535"));
        }
        check_host_ip(self.host_ip)
    }
}

/// Refuses host addresses a published port cannot live on: `::1` (the kernel forwards no IPv6
/// loopback traffic to another host — there is no `route_localnet` for IPv6 — so such a port
/// would be unreachable even from the host), multicast and broadcast addresses.
pub fn check_host_ip(ip: IpAddr) -> Result<()> {
    let bad = |reason| Error::invalid("host ip", ip, reason);
    match ip {
        IpAddr::V6(a) if a.is_loopback() => Err(bad(
            "the kernel cannot forward IPv6 loopback (::1) to a container: publish on 127.0.0.1 or another host address",
        )),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Err(bad("use the IPv4 address, not its IPv6-mapped form"))
        }
        a if a.is_multicast() => Err(bad("a multicast address cannot be a host address")),
        IpAddr::V4(a) if a.is_broadcast() => {
            Err(bad("the broadcast address cannot be a host address"))
        }
        _ => Ok(()),
    }
}

/// Whether publishing on `a` takes address `b` too.
pub fn covers(a: IpAddr, b: IpAddr) -> bool {
    a == b || (a.is_unspecified() && (a.is_ipv4() || b.is_ipv6()))
}

/// A publish request in Docker's `-p` terms: ranges allowed, host port and address optional.
/// Resolved into [`PortMapping`]s at attach time.
///
/// ```
/// use berth::PortRequest;
/// let r: PortRequest = "127.0.0.1:8000-8010:80-90/udp".parse().unwrap();
/// assert_eq!((r.host_ports, r.container_ports), (Some((8000, 8010)), (80, 90)));
/// let r: PortRequest = "80".parse().unwrap();       // a free host port is picked
/// assert_eq!(r.host_ports, None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortRequest {
    /// Protocol.
    pub proto: Protocol,
    /// Host address; `None`: the network's default binding (`host_binding_ipv4`), else all.
    pub host_ip: Option<IpAddr>,
    /// Host port range; `None`: pick free ports.
    pub host_ports: Option<(u16, u16)>,
    /// Container port range.
    pub container_ports: (u16, u16),
}

impl From<PortMapping> for PortRequest {
    fn from(m: PortMapping) -> Self {
        PortRequest {
            proto: m.proto,
            host_ip: Some(m.host_ip),
            host_ports: Some((m.host_port, m.host_port)),
            container_ports: (m.container_port, m.container_port),
        }
    }
}

fn range_len((a, b): (u16, u16)) -> u32 {
    u32::from(b) - u32::from(a) + 1
}

impl PortRequest {
    /// Checks ports and ranges: non-zero, ordered, and a host range as long as the container
    /// range, or a host range onto one container port (one free port of it is picked).
    pub fn validate(&self) -> Result<()> {
        let bad = |reason| Error::invalid("port spec", self, reason);
        if let Some(ip) = self.host_ip {
            check_host_ip(ip)?;
        }
        for (a, b) in [Some(self.container_ports), self.host_ports]
            .into_iter()
            .flatten()
        {
            if a == 0 || b == 0 {
                return Err(bad("ports must be 1-65535"));
            }
            if a > b {
                return Err(bad("a range must go up"));
            }
        }
        if let Some(h) = self.host_ports
            && range_len(h) != range_len(self.container_ports)
            && range_len(self.container_ports) != 1
        {
            return Err(bad("host and container ranges differ in length"));
        }
        Ok(())
    }

    /// The mapping when nothing has to be picked (fixed host ports, same-length ranges).
    pub fn fixed(&self, default_host_ip: IpAddr) -> Option<Vec<PortMapping>> {
        let (h0, h1) = self.host_ports?;
        let (c0, c1) = self.container_ports;
        if range_len((h0, h1)) != range_len((c0, c1)) {
            return None;
        }
        Some(
            (0..=(c1 - c0))
                .map(|i| PortMapping {
                    proto: self.proto,
                    host_ip: self.host_ip.unwrap_or(default_host_ip),
                    host_port: h0 + i,
                    container_port: c0 + i,
                })
                .collect(),
        )
    }
}

impl fmt::Display for PortRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        let r = |(a, b): (u16, u16)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        match self.host_ports {
            Some(h) => write!(f, "{}:", r(h))?,
            // `IP::PORT`: an address without a host port keeps its empty port field.
            None if self.host_ip.is_some() => f.write_str(":")?,
            None => {}
        }
        write!(f, "{}/{}", r(self.container_ports), self.proto)
    }
}

/// Parses Docker's `-p` syntax: `[HOSTIP:][HOSTPORT[-END]:]PORT[-END][/PROTO]`, IPv6 host
/// addresses in brackets (`[::1]:8080:80`).
impl FromStr for PortRequest {
    type Err = Error;
    fn from_str(spec: &str) -> Result<Self> {
        let bad = |reason| Error::invalid("port spec", spec, reason);
        let (body, proto) = match spec.rsplit_once('/') {
            Some((b, p)) => (b, p.parse()?),
            None => (spec, Protocol::Tcp),
        };
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .map_err(|_| bad("host ip is not an address"))
        };
        let (host_ip, rest) = if let Some(r) = body.strip_prefix('[') {
            let (addr, rest) = r.split_once("]:").ok_or_else(|| bad("expected [IPV6]:…"))?;
            match ip(addr)? {
                IpAddr::V4(_) => return Err(bad("brackets are for IPv6 host addresses only")),
                a => (Some(a), rest),
            }
        } else {
            match body.split_once(':') {
                Some((addr, rest)) if rest.contains(':') => (Some(ip(addr)?), rest),
                _ => (None, body),
            }
        };
        let range = |s: &str| -> Result<(u16, u16)> {
            let p = |x: &str| x.parse::<u16>().map_err(|_| bad("ports must be 1-65535"));
            match s.split_once('-') {
                Some((a, b)) => Ok((p(a)?, p(b)?)),
                None => p(s).map(|x| (x, x)),
            }
        };
        let (host_ports, container_ports) = match rest.split(':').collect::<Vec<_>>().as_slice() {
            [c] => (None, range(c)?),
            ["", c] => (None, range(c)?),
            [h, c] => (Some(range(h)?), range(c)?),
            _ => {
                return Err(bad(
                    "expected [HOSTIP:][HOSTPORT[-END]:]PORT[-END][/tcp|udp|sctp]",
                ));
            }
        };
        let r = PortRequest {
            proto,
            host_ip,
            host_ports,
            container_ports,
        };
        r.validate()?;
        Ok(r)
    }
}

/// Parses one exact mapping: `[HOSTIP:]HOSTPORT:PORT[/PROTO]` (no ranges, host port required).
impl FromStr for PortMapping {
    type Err = Error;
    fn from_str(spec: &str) -> Result<Self> {
        let r: PortRequest = spec.parse()?;
        match r.fixed(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).as_deref() {
            Some([m]) => {
                m.validate()?;
                Ok(*m)
            }
            _ => Err(Error::invalid(
                "port spec",
                spec,
                "expected one HOSTPORT:PORT mapping",
            )),
        }
    }
}

/// A port a container offers on its own addresses (`docker run --expose PORT/PROTO`, and every
/// published port's container side): what a linked container may reach when ICC is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExposedPort {
    /// The protocol.
    pub proto: Protocol,
    /// The container port.
    pub port: u16,
}

impl fmt::Display for ExposedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

/// `PORT[/tcp|udp|sctp]` (default tcp).
impl FromStr for ExposedPort {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let port: u16 =
            port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                Error::invalid("exposed port", s, "expected PORT[/PROTO], 1-65535")
            })?;
        Ok(ExposedPort {
            proto: proto.parse()?,
            port,
        })
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
    fn parses_ranges_ipv6_and_missing_host_ports() {
        let r: PortRequest = "8000-8010:80-90".parse().unwrap();
        assert_eq!(r.fixed("0.0.0.0".parse().unwrap()).unwrap().len(), 11);
        let r: PortRequest = "8000-8010:80".parse().unwrap();
        assert!(
            r.fixed("0.0.0.0".parse().unwrap()).is_none(),
            "one of the range is picked"
        );
        let r: PortRequest = "[2001:db8::7]:8080:80/sctp".parse().unwrap();
        assert_eq!(r.host_ip, Some("2001:db8::7".parse().unwrap()));
        assert_eq!(r.proto, Protocol::Sctp);
        let e = "[::1]:8080:80".parse::<PortRequest>().unwrap_err();
        assert!(e.to_string().contains("IPv6 loopback"), "{e}");
        let e = "[127.0.0.1]:8080:80".parse::<PortRequest>().unwrap_err();
        assert!(e.to_string().contains("brackets"), "{e}");
        assert!("224.0.0.1:8080:80".parse::<PortRequest>().is_err());
        let r: PortRequest = "80-81".parse().unwrap();
        assert_eq!((r.host_ports, r.container_ports), (None, (80, 81)));
        assert_eq!(":80".parse::<PortRequest>().unwrap().host_ports, None);
        assert!("8000-8002:80-81".parse::<PortRequest>().is_err());
        assert!("90-80".parse::<PortRequest>().is_err());
        assert!("[::1:8080:80".parse::<PortRequest>().is_err());
        assert_eq!(
            "10.0.0.1:8000-8001:80-81/udp"
                .parse::<PortRequest>()
                .unwrap()
                .to_string(),
            "10.0.0.1:8000-8001:80-81/udp"
        );
    }

    #[test]
    fn an_address_without_host_port_round_trips() {
        // Found by fuzz/fuzz_targets/port_spec.rs: `0.0.0.0::80` was shown as `0.0.0.0:80/tcp`,
        // which does not parse (and would mean host port 0.0.0.0).
        for s in [
            "0.0.0.0::80",
            "[2001:db8::1]::80-81/udp",
            "192.0.2.1:8080:80/sctp",
            "80",
        ] {
            let r: PortRequest = s.parse().unwrap();
            let shown = r.to_string();
            assert_eq!(shown.parse::<PortRequest>().unwrap(), r, "{s} → {shown}");
        }
        assert_eq!(
            "0.0.0.0::80".parse::<PortRequest>().unwrap().to_string(),
            "0.0.0.0::80/tcp"
        );
    }

    #[test]
    fn wildcard_conflicts_with_specific() {
        let any = Port::tcp(80).to(80);
        let one = Port::tcp(80).on("10.0.0.1".parse().unwrap()).to(81);
        let two = Port::tcp(80).on("10.0.0.2".parse().unwrap()).to(81);
        assert!(any.conflicts_with(&one));
        assert!(!one.conflicts_with(&two));
        assert!(!Port::udp(80).to(80).conflicts_with(&any));
        let any6 = Port::tcp(80).on("::".parse().unwrap()).to(80);
        let one6 = Port::tcp(80).on("2001:db8::1".parse().unwrap()).to(80);
        assert!(any.conflicts_with(&any6) && any6.conflicts_with(&one6));
        assert!(
            !any6.conflicts_with(&one),
            "IPv6 wildcard leaves IPv4 addresses free"
        );
    }
}
