//! Whether a series of samples is flat: the least-squares slope over the tail of a run and the
//! growth it implies, for the soak's RSS and descriptor samples. Pure arithmetic.

use serde::Serialize;

#[cfg(test)]
mod tests;

/// A least-squares line through the samples of a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Trend {
    /// Samples in the window.
    pub samples: usize,
    /// Window start and end, seconds since the first sample of the run.
    pub from_s: f64,
    pub to_s: f64,
    /// Slope in units per minute.
    pub per_minute: f64,
    /// The fitted line's value at the window's start.
    pub start: f64,
    /// The fitted change over the window relative to `start`, in percent (0 when `start` is 0).
    pub growth_percent: f64,
}

/// The trend over the samples taken in the last `tail` fraction (0..=1] of the run's time span.
/// `samples` are (seconds since start, value), in time order. `None` with fewer than two
/// samples in the window, or when they all share one time.
pub fn tail_trend(samples: &[(f64, f64)], tail: f64) -> Option<Trend> {
    let (first, last) = (samples.first()?.0, samples.last()?.0);
    let from = last - (last - first) * tail.clamp(0.0, 1.0);
    // A small tolerance keeps a sample taken exactly at the boundary in the window.
    let window: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= from - 1e-9)
        .collect();
    let (slope, intercept) = fit(&window)?;
    let (t0, t1) = (window.first()?.0, window.last()?.0);
    let start = intercept + slope * t0;
    let change = slope * (t1 - t0);
    Some(Trend {
        samples: window.len(),
        from_s: t0 - first,
        to_s: t1 - first,
        per_minute: slope * 60.0,
        start,
        growth_percent: if start == 0.0 {
            0.0
        } else {
            change / start * 100.0
        },
    })
}

/// Ordinary least squares: (slope, intercept) of value against time.
fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, v) in points {
        num += (t - mean_t) * (v - mean_v);
        den += (t - mean_t) * (t - mean_t);
    }
    if den == 0.0 {
        return None;
    }
    let slope = num / den;
    Some((slope, mean_v - slope * mean_t))
}
