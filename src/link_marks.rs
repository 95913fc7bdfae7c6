//! How berth marks the links it makes in a host netns.
//!
//! The mark is the device group (`ip link set DEV group G`), set in the very request that
//! creates the link (`IFLA_GROUP` is honoured at creation, unlike `IFLA_IFALIAS`): there is no
//! instant at which a link berth made exists unmarked, so a process killed between creating a
//! link and recording it leaves nothing `gc` cannot recognise. Any process over any state dir can
//! tell a link berth made from one the admin made, and `gc` removes marked links no record knows.
//! A bridge the admin made and berth adopts is never marked (it stays the admin's).
//!
//! The values spell `ber?` in ASCII; `PORT_ICC_OFF` is also what the firewall's bridge table
//! matches (`iifgroup`/`oifgroup`) for ICC off.

/// A bridge berth created for a network.
pub const BRIDGE: u32 = 0x6265_7262;
/// The host end of a container's veth on a berth bridge whose network has ICC on.
pub const PORT: u32 = 0x6265_7270;
/// The host end of a container's veth on a network with ICC off: the firewall's bridge table
/// drops frames between two ports of this group (except legacy-link flows).
pub const PORT_ICC_OFF: u32 = 0x6265_7274;
/// A lower device berth made for macvlan/ipvlan networks: an 802.1q sub-interface, a dummy
/// parent, a macvlan shim.
pub const LOWER: u32 = 0x6265_726c;

/// Whether `group` is one of berth's marks.
pub fn is_berth(group: u32) -> bool {
    matches!(group, BRIDGE | PORT | PORT_ICC_OFF | LOWER)
}

/// The mark of a container port on a network with ICC `icc`.
pub fn port(icc: bool) -> u32 {
    if icc { PORT } else { PORT_ICC_OFF }
}
