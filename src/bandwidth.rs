//! Per-endpoint bandwidth limits (`pipework tc`, CNI's `bandwidth` plugin): a rate and a burst
//! for what the container receives ([`Bandwidth::ingress`]) and for what it sends
//! ([`Bandwidth::egress`]), as CNI's plugin defines the two directions.
//!
//! How the kernel enforces them, on the endpoint's host-side veth end (so only drivers that
//! have one: bridge and overlay), made through netlink tc (no `tc` binary):
//! - ingress: a token bucket filter (`tbf`) as the host end's root qdisc — what the host end
//!   sends is what the container receives;
//! - egress: an `ingress` qdisc on the host end with a u32 match-all filter whose `mirred`
//!   action redirects every frame the container sends to an `ifb` device of the endpoint's own
//!   ([`ifb_name`]), whose root qdisc is a `tbf` — exactly what CNI's plugin does.
//!
//! The `tbf` is the kernel's: rate in bytes per second (rate linklayer Ethernet, no rate
//! table), burst (`TCA_TBF_BURST`) in bytes, and a queue of what the rate sends in
//! [`LATENCY_US`] plus the burst (CNI's `limit`). Every value is checked before anything is
//! made ([`RateLimit::validate`], [`RateLimit::tbf`]); a refused one is
//! [`crate::Error::InvalidRateLimit`], naming the direction and the problem.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The smallest burst accepted: one full-size Ethernet frame of a 1500-byte MTU (1514 bytes).
/// A burst below the endpoint's own MTU plus its Ethernet header is refused as well when the
/// limit is applied: the bucket could never hold a full-size frame.
pub const MIN_BURST_BYTES: u32 = 1514;

/// The largest burst accepted: 256 MiB. Beyond it a "limit" no longer limits (CNI's plugin
/// takes bursts in bits in a `u32`, i.e. at most 512 MiB).
pub const MAX_BURST_BYTES: u32 = 256 * 1024 * 1024;

/// How long a frame may wait in a `tbf`'s queue at the configured rate (CNI's 25 ms): the
/// queue holds `rate × LATENCY_US + burst` bytes; more is dropped.
pub const LATENCY_US: u64 = 25_000;

/// The kernel's packet-scheduler clock: one tick is 64 ns (`PSCHED_SHIFT` 6).
pub const PSCHED_TICK_NS: u64 = 64;

/// One direction's limit: a sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Sustained rate, bits per second (what the kernel gets is this divided by 8, in bytes).
    pub rate_bits_per_sec: u64,
    /// Bucket size, bytes: how much may pass at once above the rate.
    pub burst_bytes: u32,
}

/// An endpoint's limits; `None` leaves a direction unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bandwidth {
    /// What the container receives.
    #[serde(default)]
    pub ingress: Option<RateLimit>,
    /// What the container sends.
    #[serde(default)]
    pub egress: Option<RateLimit>,
}

/// Which way a [`RateLimit`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// What the container receives.
    Ingress,
    /// What the container sends.
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// Why a [`RateLimit`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitProblem {
    /// The rate is below one byte per second (0 included).
    ZeroRate,
    /// The burst is 0.
    ZeroBurst,
    /// The burst cannot hold one full-size frame (`min`: [`MIN_BURST_BYTES`], or the link's
    /// MTU plus the 14-byte Ethernet header).
    BurstBelowFrame {
        /// The smallest burst that would be accepted.
        min: u32,
    },
    /// The burst is larger than [`MAX_BURST_BYTES`].
    BurstAboveCap {
        /// The cap.
        max: u32,
    },
    /// A field of the kernel's `tc_tbf_qopt` (32 bits) cannot hold the value: `buffer` (the
    /// burst's duration at the rate, in 64 ns ticks) or `limit` (queue bytes).
    Overflow {
        /// Which field.
        field: &'static str,
    },
}

impl fmt::Display for RateLimitProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitProblem::ZeroRate => f.write_str("the rate is below 8 bit/s (one byte/s)"),
            RateLimitProblem::ZeroBurst => f.write_str("the burst is 0"),
            RateLimitProblem::BurstBelowFrame { min } => write!(
                f,
                "the burst cannot hold a full-size frame (at least {min} bytes)"
            ),
            RateLimitProblem::BurstAboveCap { max } => {
                write!(f, "the burst is larger than {max} bytes")
            }
            RateLimitProblem::Overflow { field } => write!(
                f,
                "the kernel's 32-bit tbf field {field} overflows (burst too large for so low a rate, or rate too high)"
            ),
        }
    }
}

/// What the kernel's `tbf` is given for one [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TbfParams {
    /// Rate, bytes per second (`tc_ratespec.rate`, or `TCA_TBF_RATE64` from 2^32 on).
    pub rate_bytes: u64,
    /// Burst, bytes (`TCA_TBF_BURST`).
    pub burst: u32,
    /// The burst's duration at the rate, 64 ns ticks (`tc_tbf_qopt.buffer`).
    pub buffer_ticks: u32,
    /// Queue length, bytes (`tc_tbf_qopt.limit`).
    pub limit: u32,
}

impl RateLimit {
    /// A limit of `rate_bits_per_sec` with a burst of `burst_bytes`.
    pub fn new(rate_bits_per_sec: u64, burst_bytes: u32) -> Self {
        RateLimit {
            rate_bits_per_sec,
            burst_bytes,
        }
    }

    /// From tc-style strings: `RateLimit::parse("10mbit", "64kb")` (see [`parse_rate`],
    /// [`parse_size`]).
    pub fn parse(rate: &str, burst: &str) -> Result<Self> {
        Ok(RateLimit::new(parse_rate(rate)?, parse_size(burst)?))
    }

    /// Checks it without a link: a rate of at least one byte per second, a burst between
    /// [`MIN_BURST_BYTES`] and [`MAX_BURST_BYTES`], and kernel fields that hold the values.
    pub fn validate(&self, direction: Direction) -> Result<()> {
        self.tbf(direction, None).map(drop)
    }

    /// The kernel's parameters, for a link of MTU `mtu` when known (the burst must hold one
    /// frame of it).
    pub fn tbf(&self, direction: Direction, mtu: Option<u32>) -> Result<TbfParams> {
        let refuse = |problem| Error::InvalidRateLimit {
            direction,
            limit: *self,
            problem,
        };
        let rate_bytes = self.rate_bits_per_sec / 8;
        if rate_bytes == 0 {
            return Err(refuse(RateLimitProblem::ZeroRate));
        }
        if self.burst_bytes == 0 {
            return Err(refuse(RateLimitProblem::ZeroBurst));
        }
        let min = mtu.map_or(MIN_BURST_BYTES, |m| {
            m.saturating_add(14).max(MIN_BURST_BYTES)
        });
        if self.burst_bytes < min {
            return Err(refuse(RateLimitProblem::BurstBelowFrame { min }));
        }
        if self.burst_bytes > MAX_BURST_BYTES {
            return Err(refuse(RateLimitProblem::BurstAboveCap {
                max: MAX_BURST_BYTES,
            }));
        }
        let ticks = u128::from(self.burst_bytes) * 1_000_000_000
            / u128::from(rate_bytes)
            / u128::from(PSCHED_TICK_NS);
        let buffer_ticks = u32::try_from(ticks)
            .map_err(|_| refuse(RateLimitProblem::Overflow { field: "buffer" }))?;
        let limit = u128::from(rate_bytes) * u128::from(LATENCY_US) / 1_000_000
            + u128::from(self.burst_bytes);
        let limit = u32::try_from(limit)
            .map_err(|_| refuse(RateLimitProblem::Overflow { field: "limit" }))?;
        Ok(TbfParams {
            rate_bytes,
            burst: self.burst_bytes,
            buffer_ticks,
            limit,
        })
    }
}

impl Bandwidth {
    /// No limit either way (the same as no [`Bandwidth`] at all).
    pub fn is_unlimited(&self) -> bool {
        self.ingress.is_none() && self.egress.is_none()
    }

    /// Checks both directions ([`RateLimit::validate`]).
    pub fn validate(&self) -> Result<()> {
        if let Some(l) = &self.ingress {
            l.validate(Direction::Ingress)?;
        }
        if let Some(l) = &self.egress {
            l.validate(Direction::Egress)?;
        }
        Ok(())
    }
}

/// The `ifb` device that shapes what the container behind host-side link `host_ifname` sends:
/// `bifb` + 7 hex digits of a stable hash (FNV-1a) of the host end's name, 11 bytes. It is
/// marked as berth's ([`crate::link_marks::IFB`]) in the request that creates it and recorded
/// in the attachment; `gc` removes one no record keeps.
pub fn ifb_name(host_ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host_ifname.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("bifb{:07x}", h & 0x0fff_ffff)
}

/// Splits `s` into its number (decimals allowed) and its unit, lowercased.
fn number_unit(what: &'static str, s: &str) -> Result<(f64, String)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::invalid(what, s, "not a number with a unit"))?;
    if !n.is_finite() {
        return Err(Error::invalid(what, s, "not a number with a unit"));
    }
    Ok((n, unit.to_ascii_lowercase()))
}

/// A rate as tc writes it, in bits per second: a number (decimals allowed) and a unit `bit`,
/// `kbit`, `mbit`, `gbit`, `tbit` (powers of 1000; no unit: bits), or `bps`, `kbps`, `mbps`,
/// `gbps` (bytes per second, powers of 1000).
pub fn parse_rate(s: &str) -> Result<u64> {
    const WHAT: &str = "rate";
    let (n, unit) = number_unit(WHAT, s)?;
    let mult: f64 = match unit.as_str() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => {
            return Err(Error::invalid(
                WHAT,
                s,
                "unknown unit (bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps)",
            ));
        }
    };
    let v = (n * mult).round();
    if v >= u64::MAX as f64 {
        return Err(Error::invalid(WHAT, s, "too large"));
    }
    Ok(v as u64)
}

/// A size as tc writes it, in bytes: a number (decimals allowed) and a unit `b`, `k`/`kb`,
/// `m`/`mb`, `g`/`gb` (powers of 1024, as tc; no unit: bytes), or `kbit`, `mbit`, `gbit`
/// (powers of 1000 bits, divided by 8).
pub fn parse_size(s: &str) -> Result<u32> {
    const WHAT: &str = "size";
    let (n, unit) = number_unit(WHAT, s)?;
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "bit" => 1.0 / 8.0,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        _ => {
            return Err(Error::invalid(
                WHAT,
                s,
                "unknown unit (b, kb, mb, gb, kbit, mbit, gbit)",
            ));
        }
    };
    let v = (n * mult).round();
    if v > f64::from(u32::MAX) {
        return Err(Error::invalid(WHAT, s, "larger than 4 GiB"));
    }
    Ok(v as u32)
}

impl FromStr for RateLimit {
    type Err = Error;
    /// `RATE,BURST` (e.g. `10mbit,64kb`).
    fn from_str(s: &str) -> Result<Self> {
        let (r, b) = s
            .split_once(',')
            .ok_or_else(|| Error::invalid("rate limit", s, "expected RATE,BURST"))?;
        RateLimit::parse(r, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_tcs() {
        assert_eq!(parse_rate("10mbit").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1.5kbit").unwrap(), 1500);
        assert_eq!(parse_rate("800").unwrap(), 800);
        assert_eq!(parse_rate("1mbps").unwrap(), 8_000_000);
        assert_eq!(parse_rate("2Gbit").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("64kb").unwrap(), 65536);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1mb").unwrap(), 1 << 20);
        assert_eq!(parse_size("1500b").unwrap(), 1500);
        assert_eq!(parse_size("80kbit").unwrap(), 10_000);
        for bad in ["", "mbit", "10 furlongs", "1e3bit", "-1mbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert!(parse_size("5gb").is_err());
    }

    fn problem(e: Error) -> RateLimitProblem {
        match e {
            Error::InvalidRateLimit { problem, .. } => problem,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn values_are_checked() {
        let d = Direction::Ingress;
        assert_eq!(
            problem(RateLimit::new(0, 65536).validate(d).unwrap_err()),
            RateLimitProblem::ZeroRate
        );
        assert_eq!(
            problem(RateLimit::new(7, 65536).validate(d).unwrap_err()),
            RateLimitProblem::ZeroRate
        );
        assert_eq!(
            problem(RateLimit::new(1_000_000, 0).validate(d).unwrap_err()),
            RateLimitProblem::ZeroBurst
        );
        assert_eq!(
            problem(RateLimit::new(1_000_000, 100).validate(d).unwrap_err()),
            RateLimitProblem::BurstBelowFrame { min: 1514 }
        );
        assert_eq!(
            problem(
                RateLimit::new(1_000_000, 9000)
                    .tbf(d, Some(9000))
                    .unwrap_err()
            ),
            RateLimitProblem::BurstBelowFrame { min: 9014 }
        );
        assert_eq!(
            problem(
                RateLimit::new(1_000_000, MAX_BURST_BYTES + 1)
                    .validate(d)
                    .unwrap_err()
            ),
            RateLimitProblem::BurstAboveCap {
                max: MAX_BURST_BYTES
            }
        );
        // 64 MiB at 8 bit/s: 2^26 s of burst, far beyond 2^32 ticks of 64 ns.
        assert_eq!(
            problem(RateLimit::new(8, 64 << 20).validate(d).unwrap_err()),
            RateLimitProblem::Overflow { field: "buffer" }
        );
        // 2 Pbit/s: 25 ms of it is more than 4 GiB.
        assert_eq!(
            problem(
                RateLimit::new(2_000_000_000_000_000, 65536)
                    .validate(d)
                    .unwrap_err()
            ),
            RateLimitProblem::Overflow { field: "limit" }
        );
    }

    #[test]
    fn kernel_parameters() {
        let p = RateLimit::new(10_000_000, 65536)
            .tbf(Direction::Egress, Some(1500))
            .unwrap();
        assert_eq!(p.rate_bytes, 1_250_000);
        assert_eq!(p.burst, 65536);
        // 65536 B at 1.25 MB/s = 52.4288 ms = 819200 ticks of 64 ns.
        assert_eq!(p.buffer_ticks, 819_200);
        // 25 ms at 1.25 MB/s = 31250 B, plus the burst.
        assert_eq!(p.limit, 31_250 + 65536);
    }

    #[test]
    fn ifb_names_fit_and_differ() {
        let a = ifb_name("veth1234567");
        assert!(a.len() <= 15 && a.starts_with("bifb"));
        assert_eq!(a, ifb_name("veth1234567"));
        assert_ne!(a, ifb_name("veth1234568"));
    }
}
