//! Median, min, max of a set of timings, and how tables print them.

use std::time::Duration;

/// Summary of one set of samples.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median, ms.
    pub median: f64,
    /// Minimum, ms.
    pub min: f64,
    /// Maximum, ms.
    pub max: f64,
}

impl Summary {
    /// Summary of `v` (all zero when empty).
    pub fn of(v: &[Duration]) -> Summary {
        if v.is_empty() {
            return Summary::default();
        }
        let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let median = if n % 2 == 1 {
            ms[n / 2]
        } else {
            (ms[n / 2 - 1] + ms[n / 2]) / 2.0
        };
        Summary {
            n,
            median,
            min: ms[0],
            max: ms[n - 1],
        }
    }

    /// `median (min–max)` in ms, or `—` without samples.
    pub fn cell(&self) -> String {
        if self.n == 0 {
            return "—".into();
        }
        format!("{} ({}–{})", ms(self.median), ms(self.min), ms(self.max))
    }
}

/// A millisecond figure with sensible precision.
pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `peer / ours` as `12.3×`, or `—`.
pub fn ratio(peer: &Summary, ours: &Summary) -> String {
    match ratio_value(peer, ours) {
        Some(r) => format!("{r:.1}×"),
        None => "—".into(),
    }
}

/// `peer / ours` of the medians, when both have samples.
pub fn ratio_value(peer: &Summary, ours: &Summary) -> Option<f64> {
    (peer.n > 0 && ours.n > 0 && ours.median > 0.0).then(|| peer.median / ours.median)
}
