//! Folding numbers into the statistics [`audrey_model::Summary`] defines, shared by both
//! backends: values one at a time ([`Collector::push`], Welford's update) and already-folded
//! parts ([`Collector::merge`], Chan et al.'s parallel update), so a backend can answer from
//! pre-aggregated parts (SQLite chunk summaries, PostgreSQL hourly rollups) and raw values
//! alike, with the same definitions.

use std::collections::BTreeMap;

use audrey_model::{Millis, Summary, percentiles_by_selection};

use crate::{Aggregation, Bucket};

/// Folds values one at a time; keeps them only when a percentile needs them.
#[derive(Clone, Debug)]
pub(crate) struct Collector {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sum of squared deviations from the mean (Welford's M2).
    pub squares: f64,
    values: Option<Vec<f64>>,
}

impl Collector {
    pub fn new(keep_values: bool) -> Collector {
        Collector {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            squares: 0.0,
            values: keep_values.then(Vec::new),
        }
    }

    /// A collector from already-folded parts: `squares` is the sum of squared deviations
    /// from `mean`; `values` are the values themselves when a percentile needs them.
    pub fn from_parts(
        count: u64,
        min: f64,
        max: f64,
        sum: f64,
        mean: f64,
        squares: f64,
        values: Option<Vec<f64>>,
    ) -> Collector {
        Collector {
            count,
            sum,
            min,
            max,
            mean,
            squares,
            values,
        }
    }

    pub fn push(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        // Welford: numerically stable with large offsets.
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.squares += delta * (value - self.mean);
        if let Some(values) = &mut self.values {
            values.push(value);
        }
    }

    /// Adds another collector's values (Chan et al.'s parallel update). Merging into an
    /// empty collector copies the other exactly.
    pub fn merge(&mut self, other: Collector) {
        if other.count == 0 {
            return;
        }
        if let (Some(values), Some(more)) = (&mut self.values, &other.values) {
            values.extend_from_slice(more);
        }
        if self.count == 0 {
            let values = self.values.take();
            *self = other;
            self.values = values;
            return;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        let (left, right, total) = (self.count as f64, other.count as f64, count as f64);
        self.mean += delta * (right / total);
        self.squares += other.squares + delta * delta * (left * right / total);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.count = count;
    }

    fn stddev(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.squares / (self.count as f64 - 1.0)).sqrt())
    }

    /// The percentiles `ps` of the kept values, by selection (no full sort); NaN for each
    /// when no values were kept, which a caller asking for percentiles never lets happen.
    fn percentiles(&mut self, ps: &[f64]) -> Vec<f64> {
        match &mut self.values {
            Some(values) if !values.is_empty() && !ps.is_empty() => {
                percentiles_by_selection(values, ps)
            }
            _ => vec![f64::NAN; ps.len()],
        }
    }

    /// The kept values, sorted ascending, taken out of the collector.
    pub fn take_sorted_values(&mut self) -> Vec<f64> {
        let mut values = self.values.take().unwrap_or_default();
        values.sort_unstable_by(f64::total_cmp);
        values
    }

    pub fn summary(mut self, percentiles: &[f64]) -> Summary {
        let stddev = self.stddev();
        let values = self.percentiles(percentiles);
        Summary {
            count: self.count,
            min: self.min,
            max: self.max,
            mean: self.mean,
            stddev,
            percentiles: percentiles.iter().copied().zip(values).collect(),
        }
    }

    pub fn answer(&mut self, aggregations: &[Aggregation]) -> Vec<Option<f64>> {
        let stddev = self.stddev();
        let (count, sum, mean, min, max) = (self.count, self.sum, self.mean, self.min, self.max);
        let ps: Vec<f64> = aggregations
            .iter()
            .filter_map(|aggregation| match aggregation {
                Aggregation::Percentile(p) => Some(*p),
                _ => None,
            })
            .collect();
        let mut found = self.percentiles(&ps).into_iter();
        aggregations
            .iter()
            .map(|aggregation| match aggregation {
                Aggregation::Count => Some(count as f64),
                Aggregation::Sum => Some(sum),
                Aggregation::Avg => Some(mean),
                Aggregation::Min => Some(min),
                Aggregation::Max => Some(max),
                Aggregation::Stddev => stddev,
                Aggregation::Percentile(_) => found.next(),
            })
            .collect()
    }
}

/// Buckets in start order, each answering `aggregations` from its collector.
pub(crate) fn buckets(
    collectors: BTreeMap<i64, Collector>,
    aggregations: &[Aggregation],
) -> Vec<Bucket> {
    collectors
        .into_iter()
        .map(|(start, mut collector)| Bucket {
            start: Millis(start),
            values: collector.answer(aggregations),
        })
        .collect()
}
