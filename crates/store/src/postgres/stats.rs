//! Statistics and time buckets in the PostgreSQL store, computed by the server.
//!
//! Count, minimum, maximum, mean and standard deviation come from mergeable parts (count,
//! sum, min, max, `m2`): the hourly rollups and the rollup deltas not merged yet
//! (`rollups.rs`) for every whole hour inside the range, and the raw rows only for the partial
//! hours at its edges. The parts of a group merge in one statement: the group's mean first
//! (a window over its parts), then `m2 = Σ (m2ᵢ + nᵢ · (meanᵢ - mean)²)`, the exact
//! decomposition of the sum of squared deviations, stable where a sum of squares is not;
//! `stddev = sqrt(m2 / (n - 1))` (NULL for one value, as [`audrey_model::Summary`] says).
//! Every part is read in one statement, so one snapshot: a late reading is in its hour's
//! delta from the moment it is acknowledged, and in exactly one of delta or rollup.
//!
//! Percentiles need the values themselves: `percentile_cont(fractions) WITHIN GROUP (ORDER
//! BY v)` over the raw rows, the definition SQLite's Rust fold copies, read in the same
//! REPEATABLE READ snapshot as the summary. Buckets whose width is not a whole number of hours,
//! or that ask for a percentile, are computed from raw rows as well.
//!
//! Raw rows: the metric is extracted from the stored JSON text with
//! `(vals::json ->> metric)::float8` (`json`, not `jsonb`: the number's text is parsed once,
//! straight to a double, so values are the very doubles SQLite reads). The inner query ends in
//! `OFFSET 0`: without that fence the planner evaluates the extraction once per aggregate
//! that names `v`. Groups are ordered by key bytewise (`COLLATE "C"`) with the `null` group
//! first, buckets by start, exactly as on SQLite. Results can differ from SQLite only in the
//! last bits of `mean`/`stddev`.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use audrey_model::{LocationId, Millis, SensorId, Summary};

use super::PostgresStore;
use super::errors::from_pg;
use super::rollups::{HOUR_MS, hour_of};
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

/// Key and time conditions shared by both queries.
fn conditions(
    sql: &mut String,
    parameters: &mut Parameters,
    sensor: Option<&SensorId>,
    location: Option<&LocationId>,
    from: Option<Millis>,
    to: Option<Millis>,
) {
    if let Some(sensor) = sensor {
        push(
            sql,
            parameters,
            " AND r.sensor_id = ?",
            Box::new(sensor.to_string()),
        );
    }
    if let Some(location) = location {
        push(
            sql,
            parameters,
            " AND r.location_id = ?",
            Box::new(location.to_string()),
        );
    }
    if let Some(from) = from {
        push(sql, parameters, " AND r.read_at >= ?", Box::new(from.0));
    }
    if let Some(to) = to {
        push(sql, parameters, " AND r.read_at < ?", Box::new(to.0));
    }
}

/// Percentiles (0..=100) as the fractions `percentile_cont` takes.
fn fractions(percentiles: impl Iterator<Item = f64>) -> Vec<f64> {
    percentiles.map(|p| p / 100.0).collect()
}

/// The merged summary columns of `weighted` (see [`parts_sql`]): count, min, max, mean, sum
/// and the merged `m2`.
const MERGED: &str = "sum(n)::int8, min(low), max(high), sum(total) / sum(n::float8), sum(total),
     sum(m2 + n::float8 * (total / n::float8 - mean) * (total / n::float8 - mean))";

/// One group's merged summary.
struct Merged {
    count: i64,
    min: f64,
    max: f64,
    mean: f64,
    sum: f64,
    m2: f64,
}

impl Merged {
    fn from_row(row: &tokio_postgres::Row, first: usize) -> Result<Merged, StoreError> {
        Ok(Merged {
            count: row.try_get(first).map_err(from_pg)?,
            min: row.try_get(first + 1).map_err(from_pg)?,
            max: row.try_get(first + 2).map_err(from_pg)?,
            mean: row.try_get(first + 3).map_err(from_pg)?,
            sum: row.try_get(first + 4).map_err(from_pg)?,
            m2: row.try_get(first + 5).map_err(from_pg)?,
        })
    }

    /// Sample standard deviation; `None` for a single value.
    fn stddev(&self) -> Option<f64> {
        (self.count > 1).then(|| (self.m2.max(0.0) / (self.count - 1) as f64).sqrt())
    }
}

struct Filters<'a> {
    sensor: Option<&'a SensorId>,
    location: Option<&'a LocationId>,
    from: Option<Millis>,
    to: Option<Millis>,
}

/// `[from, to)` split at whole hours: `whole` is the hour range `[first, end)` rollups answer
/// (`None` when no whole hour fits), `raw` the partial ranges raw rows answer.
#[derive(Debug, PartialEq)]
struct Split {
    whole: Option<(Option<i64>, Option<i64>)>,
    raw: Vec<(Option<i64>, Option<i64>)>,
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
            raw: vec![(from.map(|from| from.0), to.map(|to| to.0))],
        };
    }
    let mut raw = Vec::new();
    if let (Some(from), Some(first)) = (from, first)
        && from.0 < first
    {
        raw.push((Some(from.0), Some(first)));
    }
    if let (Some(to), Some(end)) = (to, end)
        && end < to.0
    {
        raw.push((Some(end), Some(to.0)));
    }
    Split {
        whole: Some((first, end)),
        raw,
    }
}

/// `WITH parts(key, n, total, low, high, m2) AS (..), weighted AS (..)`: the mergeable parts
/// of every group of `filters`' readings of the metric `$1`, each with its group's mean.
/// `grouping(alias)` names the key expression and any join for the table aliased `alias`:
/// `ru` (rollups, hour column `hour`), `d` (unmerged deltas, `hour`), `r` (raw readings,
/// `read_at`).
fn parts_sql(
    parameters: &mut Parameters,
    grouping: &dyn Fn(&str) -> (String, String),
    filters: &Filters,
) -> String {
    let split = split(filters.from, filters.to);
    let keyed = |parameters: &mut Parameters, sql: &mut String, alias: &str| {
        if let Some(sensor) = filters.sensor {
            push(
                sql,
                parameters,
                &format!(" AND {alias}.sensor_id = ?"),
                Box::new(sensor.to_string()),
            );
        }
        if let Some(location) = filters.location {
            push(
                sql,
                parameters,
                &format!(" AND {alias}.location_id = ?"),
                Box::new(location.to_string()),
            );
        }
    };
    let mut selects = Vec::new();
    if let Some((first, end)) = split.whole {
        let hours = |parameters: &mut Parameters, sql: &mut String, alias: &str| {
            if let Some(first) = first {
                push(
                    sql,
                    parameters,
                    &format!(" AND {alias}.hour >= ?"),
                    Box::new(first),
                );
            }
            if let Some(end) = end {
                push(
                    sql,
                    parameters,
                    &format!(" AND {alias}.hour < ?"),
                    Box::new(end),
                );
            }
        };
        let (key, join) = grouping("ru");
        let mut rollups = format!(
            "SELECT {key}, ru.n, ru.total, ru.low, ru.high, ru.m2
             FROM reading_rollups ru{join} WHERE ru.metric = $1::text"
        );
        hours(parameters, &mut rollups, "ru");
        keyed(parameters, &mut rollups, "ru");
        selects.push(rollups);
        let (key, join) = grouping("d");
        let mut deltas = format!(
            "SELECT {key}, d.n, d.total, d.low, d.high, d.m2
             FROM reading_rollup_deltas x CROSS JOIN LATERAL
                  unnest(x.sensors, x.hours, x.locations, x.metrics, x.n, x.total, x.low,
                         x.high, x.m2)
                  AS d(sensor_id, hour, location_id, metric, n, total, low, high, m2){join}
             WHERE d.metric = $1::text"
        );
        hours(parameters, &mut deltas, "d");
        keyed(parameters, &mut deltas, "d");
        selects.push(deltas);
    }
    if !split.raw.is_empty() {
        let (key, join) = grouping("r");
        let mut ranges = Vec::new();
        for (from, to) in &split.raw {
            let mut range = "true".to_string();
            if let Some(from) = from {
                push(
                    &mut range,
                    parameters,
                    " AND r.read_at >= ?",
                    Box::new(*from),
                );
            }
            if let Some(to) = to {
                push(&mut range, parameters, " AND r.read_at < ?", Box::new(*to));
            }
            ranges.push(format!("({range})"));
        }
        let mut inner = format!(
            "SELECT {key} AS key, (r.vals::json ->> $1::text)::float8 AS v
             FROM readings r{join} WHERE ({})",
            ranges.join(" OR ")
        );
        keyed(parameters, &mut inner, "r");
        selects.push(format!(
            "SELECT key, count(v), sum(v), min(v), max(v), var_pop(v) * count(v)::float8
             FROM ({inner} OFFSET 0) s WHERE v IS NOT NULL GROUP BY key"
        ));
    }
    format!(
        "WITH parts(key, n, total, low, high, m2) AS ({}),
         weighted AS (
            SELECT key, n, total, low, high, m2,
                   sum(total) OVER w / sum(n::float8) OVER w AS mean
            FROM parts WINDOW w AS (PARTITION BY key))",
        selects.join(" UNION ALL ")
    )
}

async fn run(
    client: &impl tokio_postgres::GenericClient,
    sql: &str,
    parameters: &Parameters,
) -> Result<Vec<tokio_postgres::Row>, StoreError> {
    let borrowed: Vec<&(dyn ToSql + Sync)> = parameters
        .iter()
        .map(|value| &**value as &(dyn ToSql + Sync))
        .collect();
    client.query(sql, &borrowed).await.map_err(from_pg)
}

impl PostgresStore {
    pub(super) fn compute_stats(&self, query: &StatsQuery) -> Result<Vec<StatsGroup>, StoreError> {
        let grouping = |alias: &str| match query.group_by {
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
        let mut parameters: Parameters = vec![Box::new(query.metric.as_str().to_string())];
        let parts = parts_sql(
            &mut parameters,
            &grouping,
            &Filters {
                sensor: None,
                location: None,
                from: query.from,
                to: query.to,
            },
        );
        let summary_sql = format!(
            "{parts} SELECT key, {MERGED} FROM weighted
             GROUP BY key ORDER BY key COLLATE \"C\" NULLS FIRST"
        );
        let percentile_query = (!query.percentiles.is_empty()).then(|| {
            let (key, join) = grouping("r");
            let mut parameters: Parameters = vec![
                Box::new(query.metric.as_str().to_string()),
                Box::new(fractions(query.percentiles.iter().copied())),
            ];
            let mut inner = format!(
                "SELECT {key} AS key, (r.vals::json ->> $1::text)::float8 AS v
                 FROM readings r{join} WHERE true"
            );
            conditions(
                &mut inner,
                &mut parameters,
                None,
                None,
                query.from,
                query.to,
            );
            let sql = format!(
                "SELECT key, percentile_cont($2::float8[]) WITHIN GROUP (ORDER BY v)
                 FROM ({inner} OFFSET 0) s WHERE v IS NOT NULL GROUP BY key"
            );
            (sql, parameters)
        });
        let (summaries, percentiles) = self.block_on(async {
            let mut client = self.client().await?;
            let Some((percentile_sql, percentile_parameters)) = &percentile_query else {
                return Ok((run(&**client, &summary_sql, &parameters).await?, Vec::new()));
            };
            // One snapshot for both statements: the counts and the percentiles agree.
            let transaction = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(from_pg)?;
            let summaries = run(&*transaction, &summary_sql, &parameters).await?;
            let percentiles = run(&*transaction, percentile_sql, percentile_parameters).await?;
            transaction.commit().await.map_err(from_pg)?;
            Ok::<_, StoreError>((summaries, percentiles))
        })?;
        let mut by_key: HashMap<Option<String>, Vec<f64>> = HashMap::new();
        for row in &percentiles {
            by_key.insert(
                row.try_get(0).map_err(from_pg)?,
                row.try_get(1).map_err(from_pg)?,
            );
        }
        summaries
            .iter()
            .map(|row| {
                let key: Option<String> = row.try_get(0).map_err(from_pg)?;
                let merged = Merged::from_row(row, 1)?;
                let values = if query.percentiles.is_empty() {
                    Vec::new()
                } else {
                    by_key.remove(&key).ok_or_else(|| {
                        StoreError::Internal(format!("no percentiles for the group {key:?}"))
                    })?
                };
                Ok(StatsGroup {
                    key,
                    summary: Summary {
                        count: merged.count as u64,
                        min: merged.min,
                        max: merged.max,
                        mean: merged.mean,
                        stddev: merged.stddev(),
                        percentiles: query.percentiles.iter().copied().zip(values).collect(),
                    },
                })
            })
            .collect()
    }

    pub(super) fn compute_buckets(
        &self,
        query: &AggregateQuery,
    ) -> Result<Vec<Bucket>, StoreError> {
        let width = query.bucket_ms.max(1);
        let any_percentile = query
            .aggregations
            .iter()
            .any(|aggregation| matches!(aggregation, Aggregation::Percentile(_)));
        if any_percentile || width % HOUR_MS != 0 {
            return self.compute_buckets_raw(query);
        }
        // Whole-hour buckets: every hour lies in exactly one bucket.
        let mut parameters: Parameters =
            vec![Box::new(query.metric.as_str().to_string()), Box::new(width)];
        let grouping = |alias: &str| {
            let column = if alias == "r" { "read_at" } else { "hour" };
            (
                format!(
                    "{alias}.{column} - (({alias}.{column} % $2::bigint) + $2::bigint) % $2::bigint"
                ),
                String::new(),
            )
        };
        let parts = parts_sql(
            &mut parameters,
            &grouping,
            &Filters {
                sensor: query.sensor.as_ref(),
                location: query.location.as_ref(),
                from: query.from,
                to: query.to,
            },
        );
        let sql = format!("{parts} SELECT key, {MERGED} FROM weighted GROUP BY key ORDER BY key");
        let rows = self.block_on(async {
            let client = self.client().await?;
            run(&**client, &sql, &parameters).await
        })?;
        rows.iter()
            .map(|row| {
                let start: i64 = row.try_get(0).map_err(from_pg)?;
                let merged = Merged::from_row(row, 1)?;
                let values = query
                    .aggregations
                    .iter()
                    .map(|aggregation| match aggregation {
                        Aggregation::Count => Some(merged.count as f64),
                        Aggregation::Sum => Some(merged.sum),
                        Aggregation::Avg => Some(merged.mean),
                        Aggregation::Min => Some(merged.min),
                        Aggregation::Max => Some(merged.max),
                        Aggregation::Stddev => merged.stddev(),
                        Aggregation::Percentile(_) => None,
                    })
                    .collect();
                Ok(Bucket {
                    start: Millis(start),
                    values,
                })
            })
            .collect()
    }

    fn compute_buckets_raw(&self, query: &AggregateQuery) -> Result<Vec<Bucket>, StoreError> {
        let width = query.bucket_ms.max(1);
        let mut parameters: Parameters =
            vec![Box::new(query.metric.as_str().to_string()), Box::new(width)];
        let percentiles: Vec<f64> = query
            .aggregations
            .iter()
            .filter_map(|aggregation| match aggregation {
                Aggregation::Percentile(p) => Some(*p),
                _ => None,
            })
            .collect();
        // Column 1 is the start; then one column per non-percentile aggregation and, last, the
        // array of every percentile.
        let mut columns = String::new();
        for aggregation in &query.aggregations {
            let column = match aggregation {
                Aggregation::Count => "count(v)::float8",
                Aggregation::Sum => "sum(v)",
                Aggregation::Avg => "avg(v)",
                Aggregation::Min => "min(v)",
                Aggregation::Max => "max(v)",
                Aggregation::Stddev => "stddev_samp(v)",
                Aggregation::Percentile(_) => continue,
            };
            columns.push_str(", ");
            columns.push_str(column);
        }
        if !percentiles.is_empty() {
            parameters.push(Box::new(fractions(percentiles.iter().copied())));
            columns.push_str(&format!(
                ", percentile_cont(${}::float8[]) WITHIN GROUP (ORDER BY v)",
                parameters.len()
            ));
        }
        // Epoch-aligned even before 1970: subtract the non-negative remainder.
        let mut inner =
            "SELECT r.read_at - ((r.read_at % $2::bigint) + $2::bigint) % $2::bigint AS start,
                    (r.vals::json ->> $1::text)::float8 AS v
             FROM readings r WHERE true"
                .to_string();
        conditions(
            &mut inner,
            &mut parameters,
            query.sensor.as_ref(),
            query.location.as_ref(),
            query.from,
            query.to,
        );
        let sql = format!(
            "SELECT start{columns} FROM ({inner} OFFSET 0) s WHERE v IS NOT NULL
             GROUP BY start ORDER BY start"
        );
        let rows = self.block_on(async {
            let client = self.client().await?;
            run(&**client, &sql, &parameters).await
        })?;
        let percentile_column = 1 + query.aggregations.len() - percentiles.len();
        rows.iter()
            .map(|row| {
                let start: i64 = row.try_get(0).map_err(from_pg)?;
                let found: Vec<f64> = if percentiles.is_empty() {
                    Vec::new()
                } else {
                    row.try_get(percentile_column).map_err(from_pg)?
                };
                let mut found = found.into_iter();
                let mut column = 1;
                let mut values = Vec::with_capacity(query.aggregations.len());
                for aggregation in &query.aggregations {
                    values.push(match aggregation {
                        Aggregation::Percentile(_) => found.next(),
                        _ => {
                            column += 1;
                            row.try_get::<_, Option<f64>>(column - 1).map_err(from_pg)?
                        }
                    });
                }
                Ok(Bucket {
                    start: Millis(start),
                    values,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn an_open_range_is_all_whole_hours() {
        assert_eq!(
            split(None, None),
            Split {
                whole: Some((None, None)),
                raw: vec![]
            }
        );
    }

    #[test]
    fn partial_edge_hours_go_to_raw_rows() {
        assert_eq!(
            split(Some(Millis(H + 1)), Some(Millis(5 * H + 7))),
            Split {
                whole: Some((Some(2 * H), Some(5 * H))),
                raw: vec![(Some(H + 1), Some(2 * H)), (Some(5 * H), Some(5 * H + 7))]
            }
        );
        assert_eq!(
            split(Some(Millis(2 * H)), Some(Millis(5 * H))),
            Split {
                whole: Some((Some(2 * H), Some(5 * H))),
                raw: vec![]
            }
        );
    }

    #[test]
    fn a_range_inside_one_or_two_hours_is_all_raw() {
        for (from, to) in [(H + 1, H + 9), (H + 1, 2 * H + 5), (-H + 3, 7)] {
            assert_eq!(
                split(Some(Millis(from)), Some(Millis(to))),
                Split {
                    whole: None,
                    raw: vec![(Some(from), Some(to))]
                }
            );
        }
    }
}
