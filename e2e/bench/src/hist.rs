//! A log-linear latency histogram (HDR-style): exact below 128, then 64 linear buckets per
//! power of two, so any percentile is within 1.6% of the true value at fixed, small memory,
//! and histograms from many processes merge by adding counts.

use serde::{Deserialize, Serialize};

/// Linear buckets per power of two are `1 << (SUB_BITS - 1)`.
const SUB_BITS: u32 = 7;
const LINEAR: u64 = 1 << SUB_BITS;
const HALF: usize = 1 << (SUB_BITS - 1);
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * HALF + LINEAR as usize;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// (bucket index, count) for non-empty buckets, kept sparse so it travels well as JSON.
    #[serde(with = "sparse")]
    counts: Vec<u64>,
    count: u64,
    max: u64,
    sum: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - (SUB_BITS - 1);
    shift as usize * HALF + (v >> shift) as usize
}

/// The largest value that lands in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let shift = (i / HALF - 1) as u32;
    let m = (i - shift as usize * HALF) as u64;
    ((m + 1) << shift).wrapping_sub(1)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    pub fn record_n(&mut self, v: u64, n: u64) {
        self.counts[index(v)] += n;
        self.count += n;
        self.max = self.max.max(v);
        self.sum = self.sum.saturating_add(v.saturating_mul(n));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.sum = self.sum.saturating_add(other.sum);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1): the smallest bucket bound with at least
    /// `ceil(q * count)` values at or below it, capped at the recorded maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }
}

mod sparse {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::BUCKETS;

    pub fn serialize<S: Serializer>(counts: &[u64], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(usize, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
            .collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let pairs = Vec::<(usize, u64)>::deserialize(d)?;
        let mut counts = vec![0; BUCKETS];
        for (i, c) in pairs {
            if let Some(slot) = counts.get_mut(i) {
                *slot += c;
            }
        }
        Ok(counts)
    }
}
