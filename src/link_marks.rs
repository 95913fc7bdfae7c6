//! How berth marks the links it makes in a host netns.
//!
//! The mark is the device group (`ip link set DEV group G`), set in the very request that
//! creates the link (`IFLA_GROUP` is honoured at creation, unlike `IFLA_IFALIAS`): there is no
//! instant at which a link berth made exists unmarked, so a process killed between creating a
//! link and recording it leaves nothing `gc` cannot recognise. Any process over any state dir can
//! tell a link berth made from one the admin made, and `gc` removes marked links no record knows.
//! A bridge the admin made and berth adopts is never marked (it stays the admin's).
//!
//! The values spell `ber?` in ASCII; the port marks are also what the firewall's bridge table
//! matches (`iifgroup`/`oifgroup`): `PORT_ICC_OFF` (and `PORT_ICC_OFF_GUARDED`) for ICC off,
//! the `*_GUARDED` ones for anti-spoofing. A guarded port's mark is its unguarded mark with
//! [`GUARDED_BIT`] set, so the rules match both ICC-off marks, or both guarded marks, with one
//! masked comparison.

/// A bridge berth created for a network.
pub const BRIDGE: u32 = 0x6265_7262;
/// The host end of a container's veth on a berth bridge whose network has ICC on.
pub const PORT: u32 = 0x6265_7270;
/// The host end of a container's veth on a network with ICC off: the firewall's bridge table
/// drops frames between two ports of this group (except legacy-link flows).
pub const PORT_ICC_OFF: u32 = 0x6265_7274;
/// The host end of a container's veth on a network with ICC on and anti-spoofing: the
/// firewall's bridge table lets it send only from the container's own MAC and addresses.
pub const PORT_GUARDED: u32 = PORT | GUARDED_BIT;
/// The host end of a container's veth on a network with ICC off and anti-spoofing.
pub const PORT_ICC_OFF_GUARDED: u32 = PORT_ICC_OFF | GUARDED_BIT;
/// What sets a port mark apart from its guarded form (`PORT_GUARDED` spells `berx`).
pub const GUARDED_BIT: u32 = 0x08;
/// What sets `PORT_ICC_OFF` apart from `PORT`.
pub const ICC_OFF_BIT: u32 = PORT ^ PORT_ICC_OFF;
const _: () = assert!(ICC_OFF_BIT.count_ones() == 1 && ICC_OFF_BIT & GUARDED_BIT == 0);
const _: () = assert!(PORT & GUARDED_BIT == 0 && PORT_ICC_OFF & GUARDED_BIT == 0);
// No other mark looks like a port mark under the masks the firewall uses.
const _: () =
    assert!(BRIDGE & !GUARDED_BIT != PORT_ICC_OFF && LOWER & !GUARDED_BIT != PORT_ICC_OFF);
const _: () =
    assert!(BRIDGE & !ICC_OFF_BIT != PORT_GUARDED && LOWER & !ICC_OFF_BIT != PORT_GUARDED);
const _: () = assert!(PORT & !ICC_OFF_BIT != PORT_GUARDED);

/// A lower device berth made for macvlan/ipvlan networks: an 802.1q sub-interface, a dummy
/// parent, a macvlan shim.
pub const LOWER: u32 = 0x6265_726c;

/// The `ifb` device that shapes what one container sends ([`crate::bandwidth`]); spells `beri`.
pub const IFB: u32 = 0x6265_7269;
const _: () = assert!(IFB & !GUARDED_BIT != PORT_ICC_OFF && IFB & !ICC_OFF_BIT != PORT_GUARDED);

/// Whether `group` is one of berth's marks.
pub fn is_berth(group: u32) -> bool {
    matches!(
        group,
        BRIDGE | PORT | PORT_ICC_OFF | PORT_GUARDED | PORT_ICC_OFF_GUARDED | LOWER | IFB
    )
}

/// The mark of a container port on a network with ICC `icc` and anti-spoofing `guarded`.
pub fn port(icc: bool, guarded: bool) -> u32 {
    let m = if icc { PORT } else { PORT_ICC_OFF };
    if guarded { m | GUARDED_BIT } else { m }
}
