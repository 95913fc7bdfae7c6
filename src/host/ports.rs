//! Resolving `-p` requests into concrete mappings: the network's default host address,
//! conflicts with every other endpoint (through the ports index, O(1) per port), and free host
//! ports picked when none or a range is given — free meaning neither published by berth nor
//! bound by a socket in the host netns.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use crate::endpoint::check_distinct;
use crate::error::{Error, Result};
use crate::network::NetworkInfo;
use crate::port::{PortMapping, PortRequest, Protocol};

use super::Host;

/// Host ports tried when a request names none (the IANA dynamic range, as Docker uses).
const DYNAMIC: (u16, u16) = (49153, 65535);

impl Host {
    /// Turns the requests of one attach into mappings, or fails naming the port and its owner.
    /// The caller holds the state lock.
    pub(super) async fn resolve_ports(
        &self,
        net: &NetworkInfo,
        reqs: &[PortRequest],
    ) -> Result<Vec<PortMapping>> {
        let default_ip = crate::driver::driver_for(&net.driver).default_host_ip();
        let mut out: Vec<PortMapping> = Vec::new();
        for r in reqs {
            if r.host_ip.is_some_and(|ip| ip.is_ipv6()) && net.subnet6().is_none() {
                return Err(Error::invalid(
                    "port spec",
                    r,
                    "an IPv6 host address needs a network with IPv6",
                ));
            }
            if let Some(fixed) = r.fixed(default_ip) {
                for m in fixed {
                    self.check_port_free(&m)?;
                    out.push(m);
                }
                continue;
            }
            let (c0, c1) = r.container_ports;
            let range = r.host_ports.unwrap_or(DYNAMIC);
            for c in c0..=c1 {
                let host_ip = r.host_ip.unwrap_or(default_ip);
                let m = self.pick_free(r.proto, host_ip, range, c, &out).await?;
                out.push(m);
            }
        }
        check_distinct(&out)?;
        Ok(out)
    }

    /// Refuses a host ip:port/proto another endpoint (of any network) already publishes.
    fn check_port_free(&self, p: &PortMapping) -> Result<()> {
        for o in self.state.port_owners(p.proto, p.host_port)? {
            if crate::port::covers(o.host_ip, p.host_ip)
                || crate::port::covers(p.host_ip, o.host_ip)
            {
                return Err(Error::PortInUse {
                    proto: p.proto,
                    host_ip: o.host_ip,
                    host_port: p.host_port,
                    network: o.network,
                    container: o.container,
                });
            }
        }
        Ok(())
    }

    /// The first port of `range` that berth does not publish, that this attach has not taken,
    /// and that no socket in the host netns holds (a bind test inside it). Starts at a random
    /// offset so concurrent hosts rarely race for the same one.
    async fn pick_free(
        &self,
        proto: Protocol,
        host_ip: IpAddr,
        (lo, hi): (u16, u16),
        container_port: u16,
        taken: &[PortMapping],
    ) -> Result<PortMapping> {
        let size = u32::from(hi) - u32::from(lo) + 1;
        let start = rand::random::<u32>() % size;
        let mut candidates = Vec::new();
        for i in 0..size {
            let port = (u32::from(lo) + (start + i) % size) as u16;
            let m = PortMapping {
                proto,
                host_ip,
                host_port: port,
                container_port,
            };
            if taken.iter().any(|t| t.conflicts_with(&m)) || self.check_port_free(&m).is_err() {
                continue;
            }
            candidates.push(port);
            if candidates.len() == 64 {
                break;
            }
        }
        let bind_ip = host_ip;
        let found = self
            .netns
            .spawn(move || {
                candidates
                    .into_iter()
                    .find(|p| bindable(proto, SocketAddr::new(bind_ip, *p)))
            })
            .await?;
        match found {
            Some(port) => Ok(PortMapping {
                proto,
                host_ip,
                host_port: port,
                container_port,
            }),
            None => Err(Error::invalid(
                "port range",
                format!("{lo}-{hi}/{proto}"),
                "no free host port left in it",
            )),
        }
    }
}

/// Whether a socket could bind `addr` in the current netns (the port is not held). SCTP has no
/// socket support on every kernel; berth's own index is what counts for it.
fn bindable(proto: Protocol, addr: SocketAddr) -> bool {
    match proto {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
        Protocol::Sctp => true,
    }
}
