//! Statistics over readings:
//! - `GET /api/v1/stats?metric=&group_by=sensor|location|city|country&from=&to=&percentiles=`
//! - `GET /api/v1/readings/aggregate?metric=&bucket=1m|1h|1d&agg=avg,min,max,count,p50&
//!   sensor=&location=&from=&to=`
//!
//! Definitions (the store computes; see `audrey_model::Summary`): `stddev` is the sample
//! standard deviation (n − 1), absent for one value; percentiles are exact, linear
//! interpolation between closest ranks like PostgreSQL's `percentile_cont`. Buckets are
//! `[start, start + width)` aligned to the Unix epoch (UTC), by `read_at`.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use audrey_model::{
    FieldError, LocationId, MetricName, Millis, Reason, SensorId, parse_percentiles,
};
use audrey_store::{
    AggregateQuery, Aggregation, Bucket, GroupBy, StatsGroup, StatsQuery, parse_bucket,
};

use super::params::{Problems, QueryParams};
use super::readings::blocking;
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

/// The most buckets one aggregate answers.
pub(crate) const MAX_BUCKETS: i64 = 100_000;

pub(crate) fn required<T>(value: Option<T>, name: &str, problems: &mut Problems) -> Option<T> {
    if value.is_none() {
        problems.check::<()>(Err(FieldError::new(
            name,
            Reason::MissingField,
            "is required",
        )));
    }
    value
}

pub(crate) fn check_range(from: Option<Millis>, to: Option<Millis>, problems: &mut Problems) {
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        problems.check::<()>(Err(FieldError::new(
            "to",
            Reason::OutOfRange,
            "must be later than from",
        )));
    }
}

/// An aggregate answers at most [`MAX_BUCKETS`] buckets: a wider span needs a wider bucket.
pub(crate) fn check_bucket_count(
    from: Option<Millis>,
    to: Option<Millis>,
    bucket_ms: Option<i64>,
    problems: &mut Problems,
) {
    if let (Some(from), Some(to), Some(width)) = (from, to, bucket_ms)
        && (to.0 - from.0) / width > MAX_BUCKETS
    {
        problems.check::<()>(Err(FieldError::new(
            "bucket",
            Reason::OutOfRange,
            format!("from..to spans more than {MAX_BUCKETS} buckets; widen the bucket"),
        )));
    }
}

#[derive(Serialize)]
struct StatsBody {
    metric: String,
    group_by: GroupBy,
    groups: Vec<Map<String, Value>>,
}

fn group_json(group: StatsGroup) -> Map<String, Value> {
    let summary = group.summary;
    let mut percentiles = Map::new();
    for (p, value) in summary.percentiles {
        percentiles.insert(Aggregation::Percentile(p).name(), Value::from(value));
    }
    let mut object = Map::new();
    object.insert("key".into(), group.key.map_or(Value::Null, Value::from));
    object.insert("count".into(), Value::from(summary.count));
    object.insert("min".into(), Value::from(summary.min));
    object.insert("max".into(), Value::from(summary.max));
    object.insert("mean".into(), Value::from(summary.mean));
    object.insert(
        "stddev".into(),
        summary.stddev.map_or(Value::Null, Value::from),
    );
    object.insert("percentiles".into(), Value::Object(percentiles));
    object
}

#[utoipa::path(get, path = "/api/v1/stats", tag = "statistics",
    params(super::openapi::parameters::StatsQuery),
    responses((status = 200, description = "Count, min, max, mean, stddev and percentiles per group",
        body = super::openapi::schemas::StatsAnswer)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(
        query.as_deref(),
        &["metric", "group_by", "from", "to", "percentiles"],
    )?;
    let mut problems = Problems::default();
    let metric = problems
        .check(params.typed("metric", MetricName::parse))
        .flatten();
    let metric = required(metric, "metric", &mut problems);
    let group_by = problems
        .check(params.typed("group_by", |text| GroupBy::parse(text, "group_by")))
        .flatten()
        .unwrap_or(GroupBy::Sensor);
    let from = problems.check(params.instant("from")).flatten();
    let to = problems.check(params.instant("to")).flatten();
    check_range(from, to, &mut problems);
    let percentiles = problems
        .check(params.typed("percentiles", |text| parse_percentiles(text, "percentiles")))
        .flatten()
        .unwrap_or_default();
    problems.finish("the query is invalid")?;
    let Some(metric) = metric else {
        return Err(ApiError::invalid("the query is invalid", Vec::new()));
    };
    let query = StatsQuery {
        metric: metric.clone(),
        group_by,
        from,
        to,
        percentiles,
    };
    let groups = blocking(&state, move |store| Ok(store.reading_stats(&query)?)).await?;
    Ok(Json(StatsBody {
        metric: metric.to_string(),
        group_by,
        groups: groups.into_iter().map(group_json).collect(),
    })
    .into_response())
}

#[derive(Serialize)]
struct AggregateBody {
    metric: String,
    bucket_ms: i64,
    buckets: Vec<Map<String, Value>>,
}

fn bucket_json(bucket: Bucket, aggregations: &[Aggregation]) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("start".into(), Value::from(bucket.start.to_rfc3339()));
    for (aggregation, value) in aggregations.iter().zip(bucket.values) {
        let value = match (aggregation, value) {
            (Aggregation::Count, Some(count)) => Value::from(count as u64),
            (_, Some(value)) => Value::from(value),
            (_, None) => Value::Null,
        };
        object.insert(aggregation.name(), value);
    }
    object
}

pub(crate) fn parse_aggregations(text: &str) -> Result<Vec<Aggregation>, FieldError> {
    let list = text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| Aggregation::parse(part, "agg"))
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() || list.len() > 20 {
        return Err(FieldError::new(
            "agg",
            Reason::OutOfRange,
            "give 1 to 20 aggregations, such as avg,min,max,count,p50",
        ));
    }
    Ok(list)
}

#[utoipa::path(get, path = "/api/v1/readings/aggregate", tag = "statistics",
    params(super::openapi::parameters::AggregateQuery),
    responses((status = 200, description = "Time buckets by read_at",
        body = super::openapi::schemas::AggregateAnswer)))]
pub(crate) async fn aggregate(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require(Scope::Read)?;
    let params = QueryParams::parse(
        query.as_deref(),
        &[
            "sensor", "location", "metric", "bucket", "agg", "from", "to",
        ],
    )?;
    let mut problems = Problems::default();
    let sensor = problems
        .check(params.typed("sensor", SensorId::parse))
        .flatten();
    let location = problems
        .check(params.typed("location", LocationId::parse))
        .flatten();
    let metric = problems
        .check(params.typed("metric", MetricName::parse))
        .flatten();
    let metric = required(metric, "metric", &mut problems);
    let bucket_ms = problems
        .check(params.typed("bucket", |text| parse_bucket(text, "bucket")))
        .flatten();
    let bucket_ms = required(bucket_ms, "bucket", &mut problems);
    let aggregations = problems
        .check(params.typed("agg", parse_aggregations))
        .flatten()
        .unwrap_or_else(|| {
            vec![
                Aggregation::Avg,
                Aggregation::Min,
                Aggregation::Max,
                Aggregation::Count,
            ]
        });
    let from = problems.check(params.instant("from")).flatten();
    let to = problems.check(params.instant("to")).flatten();
    check_range(from, to, &mut problems);
    check_bucket_count(from, to, bucket_ms, &mut problems);
    problems.finish("the query is invalid")?;
    let (Some(metric), Some(bucket_ms)) = (metric, bucket_ms) else {
        return Err(ApiError::invalid("the query is invalid", Vec::new()));
    };
    let query = AggregateQuery {
        sensor,
        location,
        metric: metric.clone(),
        bucket_ms,
        aggregations: aggregations.clone(),
        from,
        to,
    };
    let buckets = blocking(&state, move |store| Ok(store.aggregate_readings(&query)?)).await?;
    Ok(Json(AggregateBody {
        metric: metric.to_string(),
        bucket_ms,
        buckets: buckets
            .into_iter()
            .map(|bucket| bucket_json(bucket, &aggregations))
            .collect(),
    })
    .into_response())
}
