//! Medians, percentiles and pairwise ratios over the samples of a run.

use std::time::Duration;

/// One sample: named durations in milliseconds, the headline first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample(pub Vec<(&'static str, f64)>);

impl Sample {
    pub fn push(&mut self, name: &'static str, d: Duration) {
        self.0.push((name, ms(d)));
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|(n, _)| *n).collect()
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn summary(values: &[f64]) -> Option<Summary> {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(Summary {
        median: median_sorted(&v)?,
        min: *v.first()?,
        max: *v.last()?,
    })
}

fn median_sorted(v: &[f64]) -> Option<f64> {
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    summary(values).map(|s| s.median)
}

/// Nearest-rank percentile (`p` in 0..=100): the smallest value with at
/// least p % of the values at or below it, so p99 of 50 is the maximum.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// `a[i] / b[i]` pair by pair (run i of A against run i of B).
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let s = summary(&[5.0, 1.0, 9.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 5.0, 9.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(25.0));
        assert_eq!(percentile(&v, 99.0), Some(50.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        let h: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&h, 99.0), Some(198.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn ratios_pair_by_pair() {
        assert_eq!(ratios(&[1.0, 4.0, 9.0], &[2.0, 2.0]), vec![0.5, 2.0]);
    }

    #[test]
    fn samples_keep_their_order() {
        let mut s = Sample::default();
        s.push("total", Duration::from_millis(30));
        s.push("run", Duration::from_micros(1500));
        assert_eq!(s.names(), ["total", "run"]);
        assert_eq!(s.get("run"), Some(1.5));
        assert_eq!(s.get("none"), None);
    }
}
