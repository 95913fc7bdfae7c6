//! veth helpers shared by drivers that plug a container into a host-side device.

/// The host-side veth name of `container` on network `network_id`: `veth` + 7 hex digits of a
/// stable hash (FNV-1a), 11 bytes, within IFNAMSIZ. The name is recorded, so later versions
/// may change the scheme without breaking detach.
pub fn host_ifname(network_id: &str, container: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in network_id.bytes().chain([0]).chain(container.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("veth{:07x}", h & 0x0fff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_differ() {
        let a = host_ifname("net1", "c1");
        assert!(a.len() <= 15 && a.starts_with("veth"));
        assert_eq!(a, host_ifname("net1", "c1"));
        assert_ne!(a, host_ifname("net1", "c2"));
        assert_ne!(a, host_ifname("net2", "c1"));
    }
}
