//! Statistics and time buckets in the PostgreSQL store.
//!
//! Every answer is read in one REPEATABLE READ snapshot and merged here from two kinds of
//! parts (`rollups.rs` keeps the first):
//! - **whole clean hours** from `reading_rollups`: count, sum, min, max, mean and `m2` per
//!   (hour, metric, sensor, location) row, merged per group in SQL (the group's mean first,
//!   over a window, then `m2 = Σ (m2ᵢ + nᵢ · (meanᵢ - mean)²)`, the exact decomposition of
//!   the sum of squared deviations); with percentiles the rows' sorted values are read too
//!   and merged in Rust;
//! - **raw rows** for the hours the snapshot marks dirty and for the partial hours at the
//!   range's edges, aggregated per group in SQL (with the values when a percentile needs
//!   them). The metric is extracted from the stored JSON text with
//!   `(vals::json ->> metric)::float8` (`json`, not `jsonb`: the number's text is parsed
//!   once, straight to a double); the inner query ends in `OFFSET 0`, without which the
//!   planner evaluates the extraction once per aggregate that names `v`.
//!
//! The parts of a group merge with [`Collector::merge`] (Chan et al.), as on SQLite; the
//! definitions are those of [`audrey_model::Summary`] (sample stddev, `percentile_cont`
//! percentiles over all values, exact). Buckets whose width is a whole number of hours use
//! rollups; narrower ones read raw rows. Groups are ordered by key bytewise with the `null`
//! group first, buckets by start, exactly as on SQLite; results can differ from SQLite only
//! in the last bits of `mean`/`stddev`.

use std::collections::BTreeMap;

use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{IsolationLevel, Transaction};

use audrey_model::{LocationId, Millis, SensorId};

use super::PostgresStore;
use super::errors::from_pg;
use super::rollups::{HOUR_MS, hour_of, unpack};
use crate::fold::{Collector, buckets};
use crate::{AggregateQuery, Aggregation, Bucket, GroupBy, StatsGroup, StatsQuery, StoreError};

type Parameters = Vec<Box<dyn ToSql + Sync + Send>>;

/// Appends `clause` with its `?` replaced by the next parameter number.
fn push(
    sql: &mut String,
    parameters: &mut Parameters,
    clause: &str,
    value: Box<dyn ToSql + Sync + Send>,
) {
    parameters.push(value);
    sql.push_str(&clause.replace('?', &format!("${}", parameters.len())));
}

fn borrowed(parameters: &Parameters) -> Vec<&(dyn ToSql + Sync)> {
    parameters
        .iter()
        .map(|value| &**value as &(dyn ToSql + Sync))
        .collect()
}

/// `[from, to)` cut at whole hours: `whole` is the hour range `[first, end)` rollups may
/// answer (`None` when no whole hour fits), `edges` the partial ranges only raw rows can.
#[derive(Debug, PartialEq)]
struct Split {
    whole: Option<(Option<i64>, Option<i64>)>,
    edges: Vec<(Option<i64>, Option<i64>)>,
}

fn split(from: Option<Millis>, to: Option<Millis>) -> Split {
    let first = from.map(|from| {
        let floor = hour_of(from.0);
        if floor == from.0 {
            floor
        } else {
            floor.saturating_add(HOUR_MS)
        }
    });
    let end = to.map(|to| hour_of(to.0));
    if let (Some(first), Some(end)) = (first, end)
        && first >= end
    {
        return Split {
            whole: None,
            edges: vec![(from.map(|from| from.0), to.map(|to| to.0))],
        };
    }
    let mut edges = Vec::new();
    if let (Some(from), Some(first)) = (from, first)
        && from.0 < first
    {
        edges.push((Some(from.0), Some(first)));
    }
    if let (Some(to), Some(end)) = (to, end)
        && end < to.0
    {
        edges.push((Some(end), Some(to.0)));
    }
    Split {
        whole: Some((first, end)),
        edges,
    }
}

/// Consecutive dirty hours as `[start, end)` ranges.
fn hour_ranges(hours: &[i64]) -> Vec<(Option<i64>, Option<i64>)> {
    let mut ranges: Vec<(Option<i64>, Option<i64>)> = Vec::new();
    for &hour in hours {
        match ranges.last_mut() {
            Some((_, Some(end))) if *end == hour => *end = hour + HOUR_MS,
            _ => ranges.push((Some(hour), Some(hour + HOUR_MS))),
        }
    }
    ranges
}

/// What one statistics or buckets question asks of the parts.
struct Question<'a> {
    metric: &'a str,
    sensor: Option<&'a SensorId>,
    location: Option<&'a LocationId>,
    from: Option<Millis>,
    to: Option<Millis>,
    /// Whether rollups can answer whole hours (buckets narrower than an hour cannot).
    rollups: bool,
    keep_values: bool,
    /// The group key over the table aliased `alias` (`r`: readings, `ru`: rollups, whose
    /// hour column stands for `read_at`), and the join it needs.
    key: &'a (dyn Fn(&str) -> (String, String) + Sync),
}

/// `alias.sensor_id = ..` and `alias.location_id = ..` for the question's filters.
fn owner_conditions(
    sql: &mut String,
    parameters: &mut Parameters,
    question: &Question,
    alias: &str,
) {
    if let Some(sensor) = question.sensor {
        push(
            sql,
            parameters,
            &format!(" AND {alias}.sensor_id = ?"),
            Box::new(sensor.to_string()),
        );
    }
    if let Some(location) = question.location {
        push(
            sql,
            parameters,
            &format!(" AND {alias}.location_id = ?"),
            Box::new(location.to_string()),
        );
    }
}

/// Each group's merged parts, read in one snapshot.
async fn collect<K>(
    transaction: &Transaction<'_>,
    question: &Question<'_>,
) -> Result<BTreeMap<K, Collector>, StoreError>
where
    K: for<'b> FromSql<'b> + Ord,
{
    let split = if question.rollups {
        split(question.from, question.to)
    } else {
        Split {
            whole: None,
            edges: vec![(question.from.map(|at| at.0), question.to.map(|at| at.0))],
        }
    };
    let mut groups: BTreeMap<K, Collector> = BTreeMap::new();
    let mut raw = split.edges;
    if let Some((first, end)) = split.whole {
        let dirty: Vec<i64> = transaction
            .query(
                "SELECT DISTINCT hour FROM rollup_dirty
                 WHERE ($1::int8 IS NULL OR hour >= $1) AND ($2::int8 IS NULL OR hour < $2)
                 ORDER BY hour",
                &[&first, &end],
            )
            .await
            .map_err(from_pg)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        raw.extend(hour_ranges(&dirty));
        for (key, part) in rollup_parts::<K>(transaction, question, (first, end), &dirty).await? {
            merge(&mut groups, key, part);
        }
    }
    if !raw.is_empty() {
        for (key, part) in raw_parts::<K>(transaction, question, &raw).await? {
            merge(&mut groups, key, part);
        }
    }
    Ok(groups)
}

fn merge<K: Ord>(groups: &mut BTreeMap<K, Collector>, key: K, part: Collector) {
    match groups.get_mut(&key) {
        Some(collector) => collector.merge(part),
        None => {
            groups.insert(key, part);
        }
    }
}

/// The parts of whole clean hours in `[first, end)`: one merged part per group, or, when
/// values are kept, one part per rollup row.
async fn rollup_parts<K>(
    transaction: &Transaction<'_>,
    question: &Question<'_>,
    (first, end): (Option<i64>, Option<i64>),
    dirty: &[i64],
) -> Result<Vec<(K, Collector)>, StoreError>
where
    K: for<'b> FromSql<'b> + Ord,
{
    let (key, join) = (question.key)("ru");
    let mut parameters: Parameters = vec![Box::new(question.metric.to_string())];
    let mut conditions = String::from("ru.metric = $1");
    if let Some(first) = first {
        push(
            &mut conditions,
            &mut parameters,
            " AND ru.hour >= ?",
            Box::new(first),
        );
    }
    if let Some(end) = end {
        push(
            &mut conditions,
            &mut parameters,
            " AND ru.hour < ?",
            Box::new(end),
        );
    }
    if !dirty.is_empty() {
        push(
            &mut conditions,
            &mut parameters,
            " AND ru.hour <> ALL(?::int8[])",
            Box::new(dirty.to_vec()),
        );
    }
    owner_conditions(&mut conditions, &mut parameters, question, "ru");
    let sql = if question.keep_values {
        format!(
            "SELECT {key}, ru.n, ru.low, ru.high, ru.total, ru.mean, ru.m2, ru.sorted
             FROM reading_rollups ru{join} WHERE {conditions}"
        )
    } else {
        format!(
            "SELECT key, SUM(n)::int8, MIN(low), MAX(high), SUM(total),
                    SUM(total) / SUM(n::float8),
                    SUM(m2 + n::float8 * (mean - group_mean) * (mean - group_mean))
             FROM (SELECT {key} AS key, ru.n, ru.low, ru.high, ru.total, ru.mean, ru.m2,
                          SUM(ru.total) OVER owner / SUM(ru.n::float8) OVER owner AS group_mean
                   FROM reading_rollups ru{join} WHERE {conditions}
                   WINDOW owner AS (PARTITION BY {key})) parts
             GROUP BY key"
        )
    };
    let values = question.keep_values.then_some(packed_values as ValuesOf);
    parts(transaction, &sql, &parameters, values).await
}

/// Column 7 of a rollup row: its packed values.
fn packed_values(row: &tokio_postgres::Row) -> Result<Vec<f64>, StoreError> {
    let packed: &[u8] = row.try_get(7).map_err(from_pg)?;
    unpack(packed).ok_or_else(|| {
        StoreError::Internal(format!(
            "a rollup's values are {} bytes, not whole doubles",
            packed.len()
        ))
    })
}

/// Column 7 of a raw part: `array_agg` of its values.
fn array_values(row: &tokio_postgres::Row) -> Result<Vec<f64>, StoreError> {
    row.try_get(7).map_err(from_pg)
}

/// How a part's row holds its values, when they are kept.
type ValuesOf = fn(&tokio_postgres::Row) -> Result<Vec<f64>, StoreError>;

/// Runs `sql`, whose rows are a key and the columns [`part`] reads, and, with `values`, the
/// values themselves.
async fn parts<K>(
    transaction: &Transaction<'_>,
    sql: &str,
    parameters: &Parameters,
    values: Option<ValuesOf>,
) -> Result<Vec<(K, Collector)>, StoreError>
where
    K: for<'b> FromSql<'b> + Ord,
{
    let rows = transaction
        .query(sql, &borrowed(parameters))
        .await
        .map_err(from_pg)?;
    rows.iter()
        .map(|row| {
            let values = values.map(|values| values(row)).transpose()?;
            Ok((row.try_get(0).map_err(from_pg)?, part(row, values)?))
        })
        .collect()
}

/// The parts of the raw rows in `ranges`, one per group.
async fn raw_parts<K>(
    transaction: &Transaction<'_>,
    question: &Question<'_>,
    ranges: &[(Option<i64>, Option<i64>)],
) -> Result<Vec<(K, Collector)>, StoreError>
where
    K: for<'b> FromSql<'b> + Ord,
{
    let (key, join) = (question.key)("r");
    let mut parameters: Parameters = vec![Box::new(question.metric.to_string())];
    let mut inner = format!(
        "SELECT {key} AS key, (r.vals::json ->> $1::text)::float8 AS v FROM readings r{join} WHERE (false"
    );
    for (from, to) in ranges {
        inner.push_str(" OR (true");
        if let Some(from) = from {
            push(
                &mut inner,
                &mut parameters,
                " AND r.read_at >= ?",
                Box::new(*from),
            );
        }
        if let Some(to) = to {
            push(
                &mut inner,
                &mut parameters,
                " AND r.read_at < ?",
                Box::new(*to),
            );
        }
        inner.push(')');
    }
    inner.push(')');
    owner_conditions(&mut inner, &mut parameters, question, "r");
    let values = if question.keep_values {
        ", array_agg(v)"
    } else {
        ""
    };
    let sql = format!(
        "SELECT key, count(v), min(v), max(v), sum(v), avg(v),
                COALESCE(var_pop(v), 0) * count(v){values}
         FROM ({inner} OFFSET 0) s WHERE v IS NOT NULL GROUP BY key"
    );
    let values = question.keep_values.then_some(array_values as ValuesOf);
    parts(transaction, &sql, &parameters, values).await
}

/// Columns 1-6 (count, min, max, sum, mean, m2) of a part's row.
fn part(row: &tokio_postgres::Row, values: Option<Vec<f64>>) -> Result<Collector, StoreError> {
    let count: i64 = row.try_get(1).map_err(from_pg)?;
    let squares: f64 = row.try_get(6).map_err(from_pg)?;
    Ok(Collector::from_parts(
        count as u64,
        row.try_get(2).map_err(from_pg)?,
        row.try_get(3).map_err(from_pg)?,
        row.try_get(4).map_err(from_pg)?,
        row.try_get(5).map_err(from_pg)?,
        squares.max(0.0),
        values,
    ))
}

impl PostgresStore {
    /// Runs `question` in one REPEATABLE READ, read-only snapshot.
    fn answer<K>(&self, question: &Question<'_>) -> Result<BTreeMap<K, Collector>, StoreError>
    where
        K: for<'b> FromSql<'b> + Ord + Send,
    {
        self.block_on(async {
            let mut client = self.client().await?;
            let transaction = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(from_pg)?;
            let groups = collect(&transaction, question).await?;
            transaction.commit().await.map_err(from_pg)?;
            Ok(groups)
        })
    }

    pub(super) fn compute_stats(&self, query: &StatsQuery) -> Result<Vec<StatsGroup>, StoreError> {
        let group_by = query.group_by;
        let key = move |alias: &str| match group_by {
            GroupBy::Sensor => (format!("{alias}.sensor_id"), String::new()),
            GroupBy::Location => (format!("{alias}.location_id"), String::new()),
            GroupBy::City => (
                "l.city".to_string(),
                format!(" JOIN locations l ON l.id = {alias}.location_id"),
            ),
            GroupBy::Country => (
                "l.country".to_string(),
                format!(" JOIN locations l ON l.id = {alias}.location_id"),
            ),
        };
        let question = Question {
            metric: query.metric.as_str(),
            sensor: None,
            location: None,
            from: query.from,
            to: query.to,
            rollups: true,
            keep_values: !query.percentiles.is_empty(),
            key: &key,
        };
        let groups = self.answer::<Option<String>>(&question)?;
        Ok(groups
            .into_iter()
            .map(|(key, collector)| StatsGroup {
                key,
                summary: collector.summary(&query.percentiles),
            })
            .collect())
    }

    pub(super) fn compute_buckets(
        &self,
        query: &AggregateQuery,
    ) -> Result<Vec<Bucket>, StoreError> {
        let width = query.bucket_ms.max(1);
        // Epoch-aligned even before 1970: subtract the non-negative remainder.
        let key = move |alias: &str| {
            let time = if alias == "ru" {
                "ru.hour".to_string()
            } else {
                format!("{alias}.read_at")
            };
            (
                format!("{time} - (({time} % {width}::int8) + {width}::int8) % {width}::int8"),
                String::new(),
            )
        };
        let question = Question {
            metric: query.metric.as_str(),
            sensor: query.sensor.as_ref(),
            location: query.location.as_ref(),
            from: query.from,
            to: query.to,
            rollups: width % HOUR_MS == 0,
            keep_values: Aggregation::needs_sorted_values(&query.aggregations),
            key: &key,
        };
        Ok(buckets(self.answer(&question)?, &query.aggregations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn a_range_splits_into_whole_hours_and_partial_edges() {
        let at = |millis| Some(Millis(millis));
        assert_eq!(
            split(at(10 * H + 5), at(13 * H + 7)),
            Split {
                whole: Some((Some(11 * H), Some(13 * H))),
                edges: vec![
                    (Some(10 * H + 5), Some(11 * H)),
                    (Some(13 * H), Some(13 * H + 7))
                ],
            }
        );
        assert_eq!(
            split(at(10 * H), at(12 * H)),
            Split {
                whole: Some((Some(10 * H), Some(12 * H))),
                edges: vec![],
            }
        );
        assert_eq!(
            split(None, at(2 * H + 1)),
            Split {
                whole: Some((None, Some(2 * H))),
                edges: vec![(Some(2 * H), Some(2 * H + 1))],
            }
        );
        assert_eq!(
            split(at(-H - 1), None),
            Split {
                whole: Some((Some(-H), None)),
                edges: vec![(Some(-H - 1), Some(-H))],
            }
        );
    }

    #[test]
    fn a_range_inside_one_hour_is_all_edge() {
        let at = |millis| Some(Millis(millis));
        assert_eq!(
            split(at(3 * H + 1), at(4 * H - 1)),
            Split {
                whole: None,
                edges: vec![(Some(3 * H + 1), Some(4 * H - 1))],
            }
        );
    }

    #[test]
    fn consecutive_dirty_hours_join_into_one_range() {
        assert_eq!(
            hour_ranges(&[0, H, 2 * H, 5 * H, 7 * H, 8 * H]),
            vec![
                (Some(0), Some(3 * H)),
                (Some(5 * H), Some(6 * H)),
                (Some(7 * H), Some(9 * H)),
            ]
        );
        assert!(hour_ranges(&[]).is_empty());
    }
}
