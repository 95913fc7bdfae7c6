//! Encrypted overlay networks without Swarm (Docker's `-o encrypted`): ESP in transport mode
//! between every pair of hosts that share an encrypted network, over that network's VXLAN
//! traffic only.
//!
//! - **Keys.** The runtime gives each host the cluster's master secret ([`ClusterSecret`]; never
//!   written to the store, never logged). The key and SPI of the SA from host A to host B in
//!   key generation `g` are derived from it by HKDF-SHA256 over (g, A, B): both ends compute
//!   the same, each direction and generation has its own key (an AES-GCM nonce is never reused
//!   under one key), and nothing secret crosses the network. The store holds only the
//!   [`KeySchedule`] (`encryption/keys`): generation tags and when each starts being sent with.
//! - **Kernel state** of a host ([`desired`]): for every peer sharing an encrypted network and
//!   every generation in the schedule, an inbound and an outbound SA; per peer one output
//!   policy (VXLAN to the cluster's port, marked [`ESP_MARK`] by the network's nf_tables rule)
//!   whose template names the SPI of the generation being sent with. Plaintext VXLAN of an
//!   encrypted network is dropped on input by nf_tables
//!   ([`crate::firewall::ruleset::esp`]), so a peer without its policy cannot downgrade it.
//! - **Rotation** ([`KeySchedule::rotated`]), every [`super::ClusterSettings::key_rotation`],
//!   by the host that holds the reclaimer election: a new generation is announced with a
//!   start [`super::ClusterSettings::key_switch_delay`] ahead. Every host adds its inbound (and
//!   outbound) SAs of the new generation as soon as it sees it, switches its policies to the
//!   new SAs at the start, and removes the old generation's SAs at the next rotation: receive
//!   SA first, then the send SA and the policy, then removal of the old — no packet is sent
//!   with a key its receiver lacks, as long as hosts' clocks agree within the delay.
//! - **ESN** is on for every SA (a 64-bit sequence number: no silent drop after 2^32 packets,
//!   unlike Docker's, moby#52005).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
pub use crate::netlink::xfrm::ESP_MARK;
use crate::netlink::xfrm::{EspPolicy, EspSa, KEY_LEN, Xfrm};

/// The shortest master secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The cluster's master secret, from which every pair key is derived. Its `Debug` never shows
/// it.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// A secret of at least [`MIN_SECRET_LEN`] bytes (e.g. 32 random bytes, or their hex).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<ClusterSecret> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(Error::invalid(
                "cluster secret",
                format!("{} bytes", bytes.len()),
                "it must be at least 32 bytes (MIN_SECRET_LEN)",
            ));
        }
        Ok(ClusterSecret(bytes.into()))
    }

    /// Reads the secret from a file the caller owns that no one else may read or write (mode
    /// 0600 or stricter; a symlink is refused): its bytes, without a trailing newline.
    pub fn from_file(path: &Path) -> Result<ClusterSecret> {
        use std::io::Read;
        let shown = path.display().to_string();
        let bad = |detail: String, why: &'static str| {
            Error::invalid("cluster secret file", format!("{shown} ({detail})"), why)
        };
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| bad(e.to_string(), "cannot open it (a symlink is refused)"))?;
        let meta = f
            .metadata()
            .map_err(|e| bad(e.to_string(), "cannot stat it"))?;
        if !meta.is_file() {
            return Err(bad("not a file".into(), "it must be a regular file"));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(bad(
                format!("mode {:04o}", meta.mode() & 0o7777),
                "group and others must have no access (chmod 600)",
            ));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(bad(
                format!("owner uid {}", meta.uid()),
                "it must belong to the user reading it",
            ));
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)
            .map_err(|e| bad(e.to_string(), "cannot read it"))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        let n = bytes.len();
        ClusterSecret::new(bytes).map_err(|_| {
            bad(
                format!("{n} bytes"),
                "it must hold at least 32 bytes (e.g. `head -c 32 /dev/urandom | xxd -p -c 64 > FILE`)",
            )
        })
    }

    /// The SPI and key of the SA from `src` to `dst` in generation `tag`.
    pub(crate) fn pair_key(&self, tag: u32, src: &PairHost, dst: &PairHost) -> (u32, Vec<u8>) {
        let mut info = b"berth overlay esp v1".to_vec();
        info.extend_from_slice(&tag.to_be_bytes());
        for h in [src, dst] {
            let name = h.name.as_bytes();
            info.extend_from_slice(&(name.len() as u16).to_be_bytes());
            info.extend_from_slice(name);
            let vtep = h.vtep.to_string();
            info.push(vtep.len() as u8);
            info.extend_from_slice(vtep.as_bytes());
            info.extend_from_slice(&h.incarnation.to_be_bytes());
        }
        let hk = Hkdf::<Sha256>::new(Some(b"berth cluster secret"), &self.0);
        let mut okm = [0u8; KEY_LEN + 4];
        hk.expand(&info, &mut okm)
            .expect("40 bytes is a valid HKDF-SHA256 output length");
        let raw = u32::from_be_bytes(okm[KEY_LEN..].try_into().expect("4 bytes"));
        // SPIs 0-255 are reserved (RFC 4303).
        let spi = raw.max(256);
        (spi, okm[..KEY_LEN].to_vec())
    }
}

/// One key generation: its tag and the time (UNIX seconds) from which hosts send with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGeneration {
    /// The tag keys are derived with.
    pub tag: u32,
    /// From when it is sent with; receiving SAs exist as soon as it is listed.
    pub send_from: u64,
}

/// The key schedule of a cluster (`encryption/keys` in the store): no key, only tags and times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySchedule {
    /// The generations in use, oldest first (the one sent with, and the next one once
    /// announced).
    pub generations: Vec<KeyGeneration>,
}

impl KeySchedule {
    /// The schedule of a cluster's first encrypted network, made at `now`: generation 1, sent
    /// with at once.
    pub fn first(now: u64) -> KeySchedule {
        KeySchedule {
            generations: vec![KeyGeneration {
                tag: 1,
                send_from: now,
            }],
        }
    }

    /// The generation sent with at `now`: the newest that has started (the oldest if none has).
    pub fn sending(&self, now: u64) -> Option<KeyGeneration> {
        self.generations
            .iter()
            .filter(|g| g.send_from <= now)
            .max_by_key(|g| g.tag)
            .or_else(|| self.generations.iter().min_by_key(|g| g.tag))
            .copied()
    }

    /// The next time after `now` at which the generation sent with changes.
    pub fn next_switch(&self, now: u64) -> Option<u64> {
        self.generations
            .iter()
            .map(|g| g.send_from)
            .filter(|t| *t > now)
            .min()
    }

    /// Whether a rotation is due at `now`: the newest generation has been sent with for
    /// `period` (none is announced and pending).
    pub fn due(&self, now: u64, period: u64) -> bool {
        self.generations
            .iter()
            .max_by_key(|g| g.tag)
            .is_none_or(|g| g.send_from <= now && now - g.send_from >= period)
    }

    /// The schedule after a rotation at `now`: the generation sent with now, and a new one sent
    /// with from `now + delay`. Older generations (nobody sends with them any more) go.
    pub fn rotated(&self, now: u64, delay: u64) -> KeySchedule {
        let next = self.generations.iter().map(|g| g.tag).max().unwrap_or(0) + 1;
        let mut generations: Vec<KeyGeneration> = self.sending(now).into_iter().collect();
        generations.push(KeyGeneration {
            tag: next,
            send_from: now + delay,
        });
        KeySchedule { generations }
    }
}

/// A host at one end of a pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairHost {
    /// Its name in the cluster.
    pub name: String,
    /// Its VTEP.
    pub vtep: IpAddr,
    /// Its incarnation: the lease it advertises under (see
    /// [`super::records::EndpointRecord::incarnation`]).
    pub incarnation: i64,
}

/// What the kernel of one host should hold for encryption.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Inbound and outbound SAs.
    pub sas: Vec<EspSa>,
    /// One output policy per peer.
    pub policies: Vec<EspPolicy>,
    /// Outbound SAs kept if present, never made: towards hosts that still have endpoints on an
    /// encrypted network this host knows while this one has none there. Their sequence
    /// numbers must go on: a peer that still holds the inbound SA (it has not yet seen this
    /// host go, or sees it leave and come back in one batch) would take a restarted one for
    /// replays and drop everything.
    pub keep: Vec<EspSa>,
}

/// The SAs and policies host `me` needs towards `peers` (the hosts sharing an encrypted
/// network with it), under `schedule` at `now`; VXLAN is on UDP `port`. `others` are hosts
/// with endpoints on an encrypted network this host knows but does not share now: their
/// outbound SAs are kept if present ([`Desired::keep`]).
pub fn desired(
    secret: &ClusterSecret,
    me: &PairHost,
    peers: &BTreeSet<PairHost>,
    others: &BTreeSet<PairHost>,
    schedule: &KeySchedule,
    now: u64,
    port: u16,
) -> Desired {
    let mut d = Desired::default();
    let sending = schedule.sending(now);
    let not_me = |p: &&PairHost| p.name != me.name && p.vtep != me.vtep;
    for p in others.iter().filter(not_me).filter(|p| !peers.contains(p)) {
        for g in schedule.generations.iter().filter(|g| g.send_from <= now) {
            let (spi, key) = secret.pair_key(g.tag, me, p);
            d.keep.push(EspSa {
                src: me.vtep,
                dst: p.vtep,
                spi,
                key,
            });
        }
    }
    for p in peers.iter().filter(not_me) {
        for g in &schedule.generations {
            let (spi, key) = secret.pair_key(g.tag, p, me);
            d.sas.push(EspSa {
                src: p.vtep,
                dst: me.vtep,
                spi,
                key,
            });
            // The outbound SA only once its generation has started: the kernel may prefer the
            // newest SA of a pair over the policy's SPI, and the peer may not have the
            // receiving one yet before then.
            let is_sending = Some(g.tag) == sending.map(|s| s.tag);
            if !is_sending && g.send_from > now {
                continue;
            }
            let (spi, key) = secret.pair_key(g.tag, me, p);
            if is_sending {
                d.policies.push(EspPolicy {
                    src: me.vtep,
                    dst: p.vtep,
                    port,
                    spi,
                });
            }
            d.sas.push(EspSa {
                src: me.vtep,
                dst: p.vtep,
                spi,
                key,
            });
        }
    }
    d
}

/// What [`apply`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionSync {
    /// SAs added.
    pub sas_added: usize,
    /// SAs removed.
    pub sas_removed: usize,
    /// Policies added or switched to another SA.
    pub policies_put: usize,
    /// Policies removed.
    pub policies_removed: usize,
}

impl EncryptionSync {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.sas_added + self.sas_removed + self.policies_put + self.policies_removed > 0
    }
}

/// Makes berth's SAs and policies in the kernel exactly `want`, in the order that loses no
/// packet: missing SAs first (a receiver has its SA before anyone sends with it), then the
/// policies (added, or switched to the new SA), then stray policies, then stray SAs.
pub async fn apply(xfrm: &Xfrm, want: &Desired) -> Result<EncryptionSync> {
    let mut out = EncryptionSync::default();
    let have_sas = xfrm.sas().await?;
    let key = |s: &EspSa| (s.src, s.dst, s.spi);
    let have: BTreeMap<_, &EspSa> = have_sas.iter().map(|s| (key(s), s)).collect();
    let wanted: BTreeMap<_, &EspSa> = want.sas.iter().map(|s| (key(s), s)).collect();
    // An SA is known by its addresses and SPI: the SPI comes from the same derivation as the
    // key, so another secret or generation gives another SPI (an SA is never rewritten in
    // place, which would drop what is in flight and restart its sequence numbers).
    for (k, sa) in &wanted {
        if !have.contains_key(k) {
            xfrm.add_sa(sa).await?;
            out.sas_added += 1;
        }
    }
    let have_pol = xfrm.policies().await?;
    for p in &want.policies {
        if !have_pol.contains(p) {
            xfrm.put_policy(p).await?;
            out.policies_put += 1;
        }
    }
    for p in &have_pol {
        if !want
            .policies
            .iter()
            .any(|w| (w.src, w.dst, w.port) == (p.src, p.dst, p.port))
        {
            xfrm.del_policy(p).await?;
            out.policies_removed += 1;
        }
    }
    let kept: BTreeSet<_> = want.keep.iter().map(key).collect();
    for (k, sa) in &have {
        if !wanted.contains_key(k) && !kept.contains(k) {
            xfrm.del_sa(sa).await?;
            out.sas_removed += 1;
        }
    }
    Ok(out)
}

/// What of `want` the kernel lacks, and what it holds beyond it (for `check`).
pub async fn missing(xfrm: &Xfrm, want: &Desired) -> Result<Vec<String>> {
    let have_sas = xfrm.sas().await?;
    let have_pol = xfrm.policies().await?;
    let mut v = Vec::new();
    let key = |s: &EspSa| (s.src, s.dst, s.spi);
    for sa in &want.sas {
        if !have_sas.iter().any(|h| key(h) == key(sa)) {
            v.push(format!(
                "ESP SA {} -> {} spi 0x{:08x}",
                sa.src, sa.dst, sa.spi
            ));
        }
    }
    for p in &want.policies {
        if !have_pol.contains(p) {
            v.push(format!(
                "IPsec policy {} -> {} udp dport {} spi 0x{:08x}",
                p.src, p.dst, p.port, p.spi
            ));
        }
    }
    for sa in have_sas.iter().filter(|s| {
        !want.sas.iter().any(|w| key(w) == key(s)) && !want.keep.iter().any(|w| key(w) == key(s))
    }) {
        v.push(format!(
            "stray ESP SA {} -> {} spi 0x{:08x}",
            sa.src, sa.dst, sa.spi
        ));
    }
    for p in have_pol.iter().filter(|p| !want.policies.contains(p)) {
        v.push(format!("stray IPsec policy {} -> {}", p.src, p.dst));
    }
    Ok(v)
}

/// Seconds since the UNIX epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new(vec![7u8; 32]).unwrap()
    }

    fn h(name: &str, ip: &str) -> PairHost {
        PairHost {
            name: name.into(),
            vtep: ip.parse().unwrap(),
            incarnation: 7,
        }
    }

    #[test]
    fn both_ends_derive_the_same_keys_and_each_direction_and_generation_its_own() {
        let s = secret();
        let (a, b) = (h("a", "10.0.0.1"), h("b", "10.0.0.2"));
        let ab1 = s.pair_key(1, &a, &b);
        assert_eq!(ab1, s.pair_key(1, &a, &b));
        let ba1 = s.pair_key(1, &b, &a);
        let ab2 = s.pair_key(2, &a, &b);
        assert_ne!(ab1.1, ba1.1);
        assert_ne!(ab1.1, ab2.1);
        assert_ne!(ab1.0, ab2.0, "distinct SPIs across generations");
        assert_eq!(ab1.1.len(), KEY_LEN);
        assert!(ab1.0 >= 256);
        let mut a2 = a.clone();
        a2.incarnation = 8;
        assert_ne!(s.pair_key(1, &a2, &b).0, ab1.0, "a new lease: a new SPI");
        let other = ClusterSecret::new(vec![8u8; 32]).unwrap();
        assert_ne!(other.pair_key(1, &a, &b).1, ab1.1);
    }

    #[test]
    fn short_secrets_are_refused_and_debug_redacts() {
        assert!(ClusterSecret::new(vec![1u8; 31]).is_err());
        assert_eq!(format!("{:?}", secret()), "ClusterSecret(<redacted>)");
    }

    #[test]
    fn the_schedule_sends_with_the_newest_started_generation() {
        let s = KeySchedule::first(0);
        assert_eq!(s.sending(100).unwrap().tag, 1);
        assert!(s.due(100, 50));
        let r = s.rotated(100, 10);
        assert_eq!(r.generations.len(), 2);
        assert_eq!(r.sending(105).unwrap().tag, 1);
        assert_eq!(r.sending(110).unwrap().tag, 2);
        assert_eq!(r.next_switch(105), Some(110));
        assert!(!r.due(105, 1), "a generation is pending");
        assert!(!r.due(120, 50));
        let r2 = r.rotated(200, 10);
        assert_eq!(
            r2.generations.iter().map(|g| g.tag).collect::<Vec<_>>(),
            vec![2, 3],
            "generation 1 is gone"
        );
    }

    #[test]
    fn desired_has_both_directions_per_generation_and_one_policy_per_peer() {
        let s = secret();
        let me = h("a", "10.0.0.1");
        let peers: BTreeSet<PairHost> = [h("b", "10.0.0.2"), h("c", "10.0.0.3"), me.clone()]
            .into_iter()
            .collect();
        let sched = KeySchedule::first(0).rotated(100, 10);
        let d = desired(&s, &me, &peers, &BTreeSet::new(), &sched, 105, 4789);
        assert_eq!(
            d.sas.len(),
            2 * 3,
            "2 peers x (2 generations in, the started one out)"
        );
        assert_eq!(d.policies.len(), 2);
        let (spi1, _) = s.pair_key(1, &me, &h("b", "10.0.0.2"));
        assert!(d.policies.iter().any(|p| p.spi == spi1));
        let later = desired(&s, &me, &peers, &BTreeSet::new(), &sched, 110, 4789);
        let (spi2, _) = s.pair_key(2, &me, &h("b", "10.0.0.2"));
        assert!(later.policies.iter().any(|p| p.spi == spi2));
        assert_eq!(
            later.sas.len(),
            2 * 4,
            "the new outbound SAs come at the switch"
        );
        assert!(d.sas.iter().all(|s| later.sas.contains(s)));
        // A host not shared any more: its outbound SAs are kept if present, nothing else.
        let only_b: BTreeSet<PairHost> = [h("b", "10.0.0.2")].into_iter().collect();
        let c: BTreeSet<PairHost> = [h("c", "10.0.0.3")].into_iter().collect();
        let d = desired(&s, &me, &only_b, &c, &sched, 110, 4789);
        assert_eq!(d.policies.len(), 1);
        assert_eq!(d.keep.len(), 2, "both started generations towards c");
        assert!(d.keep.iter().all(|k| k.dst == h("c", "10.0.0.3").vtep));
    }
}
