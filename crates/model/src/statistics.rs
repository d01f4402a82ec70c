//! Summary statistics over a set of numbers, with one documented definition for every backend.
//!
//! - `stddev` is the **sample** standard deviation (divides by n − 1, like PostgreSQL's
//!   `stddev`/`stddev_samp`); it is absent for fewer than two values.
//! - Percentiles are exact and continuous: linear interpolation between the closest ranks,
//!   the same as PostgreSQL's `percentile_cont` (p in 0..=100; rank = p/100 · (n − 1)).
//! - The mean is computed by a compensated (Welford) pass, so large offsets do not cancel.
//!
//! Pure arithmetic: no I/O.

use serde::Serialize;

use crate::{FieldError, Reason};

/// The statistics of one group of values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation; `None` for fewer than two values.
    pub stddev: Option<f64>,
    /// `(p, value)` for each requested percentile, in the order requested.
    pub percentiles: Vec<(f64, f64)>,
}

impl Summary {
    /// Summarises `values`, sorting them in place. `None` when there are none.
    pub fn of(values: &mut [f64], percentiles: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        let (mean, stddev) = mean_and_stddev(values);
        Some(Summary {
            count: values.len() as u64,
            min: values[0],
            max: values[values.len() - 1],
            mean,
            stddev,
            percentiles: percentiles
                .iter()
                .map(|p| (*p, percentile_of_sorted(values, *p)))
                .collect(),
        })
    }
}

/// Welford's single pass: the mean and the sample standard deviation.
pub fn mean_and_stddev(values: &[f64]) -> (f64, Option<f64>) {
    let mut mean = 0.0;
    let mut squares = 0.0;
    for (index, value) in values.iter().enumerate() {
        let delta = value - mean;
        mean += delta / (index as f64 + 1.0);
        squares += delta * (value - mean);
    }
    let stddev = (values.len() > 1).then(|| (squares / (values.len() as f64 - 1.0)).sqrt());
    (mean, stddev)
}

/// The continuous percentile `p` (0..=100) of sorted, non-empty `values`.
pub fn percentile_of_sorted(values: &[f64], p: f64) -> f64 {
    debug_assert!(!values.is_empty());
    debug_assert!(values.windows(2).all(|pair| pair[0] <= pair[1]));
    let rank = p / 100.0 * (values.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = rank.ceil() as usize;
    let fraction = rank - lower as f64;
    values[lower] + (values[upper] - values[lower]) * fraction
}

/// The continuous percentiles `ps` (each 0..=100) of non-empty `values`, which are reordered
/// but not sorted: each answer needs only the values at two ranks, found by selection
/// (`select_nth_unstable`, linear on average) instead of a full sort. The same ranks and
/// interpolation as [`percentile_of_sorted`], so the answers are the same bits.
pub fn percentiles_by_selection(values: &mut [f64], ps: &[f64]) -> Vec<f64> {
    debug_assert!(!values.is_empty());
    let last = values.len() - 1;
    let ranks: Vec<(usize, usize, f64)> = ps
        .iter()
        .map(|p| {
            let rank = p / 100.0 * last as f64;
            (
                rank.floor() as usize,
                rank.ceil() as usize,
                rank - rank.floor(),
            )
        })
        .collect();
    let mut needed: Vec<usize> = ranks
        .iter()
        .flat_map(|(lower, upper, _)| [*lower, *upper])
        .collect();
    needed.sort_unstable();
    needed.dedup();
    // Ascending: after selecting `index`, every later rank lies to its right.
    let mut start = 0;
    for index in needed {
        values[start..].select_nth_unstable_by(index - start, f64::total_cmp);
        start = index + 1;
    }
    ranks
        .iter()
        .map(|(lower, upper, fraction)| {
            values[*lower] + (values[*upper] - values[*lower]) * fraction
        })
        .collect()
}

/// Parses a comma-separated list of percentiles such as `50,75,99.9`.
pub fn parse_percentiles(text: &str, field: &str) -> Result<Vec<f64>, FieldError> {
    let mut list = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let p: f64 = part.parse().map_err(|_| {
            FieldError::new(
                field,
                Reason::InvalidFormat,
                format!("{part:?} is not a number; give percentiles like 50,75,99"),
            )
        })?;
        if !(0.0..=100.0).contains(&p) {
            return Err(FieldError::new(
                field,
                Reason::OutOfRange,
                format!("percentiles must be between 0 and 100, got {part}"),
            ));
        }
        list.push(p);
    }
    if list.len() > 20 {
        return Err(FieldError::new(
            field,
            Reason::TooLong,
            "at most 20 percentiles",
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_closest_ranks_like_percentile_cont() {
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_of_sorted(&values, 50.0), 2.5);
        assert_eq!(percentile_of_sorted(&values, 0.0), 1.0);
        assert_eq!(percentile_of_sorted(&values, 100.0), 4.0);
        assert!((percentile_of_sorted(&values, 90.0) - 3.7).abs() < 1e-12);
    }

    #[test]
    fn selection_answers_the_same_bits_as_sorting() {
        // A deterministic, irregular sequence with repeats and negatives.
        let mut state = 0x1234_5678_u64;
        for length in [1usize, 2, 3, 10, 101, 1000, 4099] {
            let values: Vec<f64> = (0..length)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    ((state >> 33) % 2001) as f64 / 8.0 - 125.0
                })
                .collect();
            let ps = [0.0, 0.1, 25.0, 50.0, 66.6, 90.0, 99.0, 99.9, 100.0];
            let mut sorted = values.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let by_sorting: Vec<f64> = ps
                .iter()
                .map(|p| percentile_of_sorted(&sorted, *p))
                .collect();
            let mut scratch = values.clone();
            assert_eq!(
                percentiles_by_selection(&mut scratch, &ps),
                by_sorting,
                "{length} values"
            );
        }
    }

    #[test]
    fn the_standard_deviation_is_the_sample_one() {
        let (mean, stddev) = mean_and_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(mean, 5.0);
        assert!((stddev.unwrap() - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_and_stddev(&[3.0]).1, None);
    }

    #[test]
    fn large_offsets_do_not_cancel() {
        let (_, stddev) = mean_and_stddev(&[1e9 + 4.0, 1e9 + 7.0, 1e9 + 13.0, 1e9 + 16.0]);
        assert!((stddev.unwrap() - 30f64.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn a_percentile_above_100_is_refused_by_name() {
        let error = parse_percentiles("50,101", "percentiles").unwrap_err();
        assert_eq!(error.path, "percentiles");
        assert_eq!(error.reason, Reason::OutOfRange);
    }
}
