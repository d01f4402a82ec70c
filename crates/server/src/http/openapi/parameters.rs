//! Query parameters of the HTTP API as OpenAPI parameter lists. Handlers read the query
//! string themselves (strictly: an unknown parameter is a 422 naming it); these types only
//! describe it and are never built.
#![allow(dead_code)]

use utoipa::IntoParams;

/// Paging and visibility of every registry list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RegistryListQuery {
    /// Also list soft-deleted records.
    include_deleted: Option<bool>,
    /// Most items in one page.
    #[param(minimum = 1, maximum = 10000, example = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LocationFilters {
    /// Only locations in this country (exact match).
    #[param(example = "DE")]
    country: Option<String>,
    /// Only locations in this city (exact match).
    #[param(example = "Berlin")]
    city: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SensorFilters {
    /// Only sensors at this location.
    #[param(example = "hangar-1")]
    location: Option<String>,
    /// Only sensors of this kind.
    #[param(example = "climate")]
    kind: Option<String>,
}

/// Visibility of a single record.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VisibilityQuery {
    /// Answer a soft-deleted record too (otherwise it is 404).
    include_deleted: Option<bool>,
}

/// Whether to stage the change instead of applying it.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StageQuery {
    /// Record the change and answer a confirmation link (202) instead of applying it.
    stage: Option<bool>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// Delete the record for real instead of marking it deleted (admin scope).
    purge: Option<bool>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IngestQuery {
    /// All or nothing: one invalid reading rejects the whole request and stores none.
    atomic: Option<bool>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadingListQuery {
    /// Only this sensor's readings.
    #[param(example = "th-0001")]
    sensor: Option<String>,
    /// Only readings taken at this location.
    #[param(example = "hangar-1")]
    location: Option<String>,
    /// Measured at or after (RFC 3339 or epoch milliseconds).
    #[param(example = "2026-05-01T00:00:00Z")]
    from: Option<String>,
    /// Measured before (RFC 3339 or epoch milliseconds); must be later than `from`.
    #[param(example = "2026-05-02T00:00:00Z")]
    to: Option<String>,
    /// newest (default) or oldest first, by measurement time.
    #[param(inline)]
    order: Option<OrderName>,
    #[param(minimum = 1, maximum = 10000, example = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum OrderName {
    Newest,
    Oldest,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QuarantineQuery {
    /// Only entries of this sensor id (as sent, even if unknown).
    sensor: Option<String>,
    #[param(minimum = 1, maximum = 10000, example = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The radius filter on sensor and reading lists: all three parameters or none.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NearFilter {
    /// Latitude of the circle's centre, degrees.
    #[param(minimum = -90, maximum = 90, example = 52.36)]
    near_lat: Option<f64>,
    /// Longitude of the circle's centre, degrees.
    #[param(minimum = -180, maximum = 180, example = 13.5)]
    near_lon: Option<f64>,
    /// Radius in kilometres (great-circle distance).
    #[param(minimum = 0, example = 25)]
    radius_km: Option<f64>,
}

/// A radius search over locations.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NearQuery {
    /// Latitude of the centre, degrees.
    #[param(minimum = -90, maximum = 90, example = 52.36)]
    lat: f64,
    /// Longitude of the centre, degrees.
    #[param(minimum = -180, maximum = 180, example = 13.5)]
    lon: f64,
    /// Radius in kilometres (great-circle distance on a sphere of radius 6371.0088 km).
    #[param(minimum = 0, example = 25)]
    radius_km: f64,
    /// Most locations answered, nearest first.
    #[param(minimum = 1, maximum = 10000, example = 10)]
    limit: Option<u32>,
}

/// Statistics per group over one metric.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsQuery {
    /// The metric to summarise.
    #[param(example = "temperature")]
    metric: String,
    /// How to group: `sensor` (default), `location`, `city` or `country`.
    #[param(example = "sensor")]
    group_by: Option<String>,
    /// Earliest `read_at` (inclusive): RFC 3339 or epoch milliseconds.
    #[param(example = "2026-05-01T00:00:00Z")]
    from: Option<String>,
    /// Latest `read_at` (exclusive): RFC 3339 or epoch milliseconds.
    #[param(example = "2026-05-02T00:00:00Z")]
    to: Option<String>,
    /// Comma-separated percentiles in (0, 100], exact (linear interpolation between ranks).
    #[param(example = "50,75,99")]
    percentiles: Option<String>,
}

/// A time series of buckets over one metric.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AggregateQuery {
    /// Only this sensor's readings.
    #[param(example = "th-0001")]
    sensor: Option<String>,
    /// Only readings at this location.
    #[param(example = "hangar-1")]
    location: Option<String>,
    /// The metric to aggregate.
    #[param(example = "temperature")]
    metric: String,
    /// Bucket width: `1m`, `1h` or `1d` (aligned to the Unix epoch, UTC).
    #[param(example = "1h")]
    bucket: String,
    /// Comma-separated aggregations: avg, min, max, count, sum, stddev, pNN.
    #[param(example = "avg,min,max,count,p50")]
    agg: Option<String>,
    /// Earliest `read_at` (inclusive).
    #[param(example = "2026-05-01T00:00:00Z")]
    from: Option<String>,
    /// Latest `read_at` (exclusive).
    #[param(example = "2026-05-02T00:00:00Z")]
    to: Option<String>,
}

/// The size of a list that has no other filter.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LimitQuery {
    /// Most items answered.
    #[param(minimum = 1, maximum = 10000, example = 100)]
    limit: Option<u32>,
}

/// Events, filtered and paged.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only events of this type (e.g. `alert.raised`).
    #[param(rename = "type", example = "alert.raised")]
    kind: Option<String>,
    /// Only events about this sensor.
    #[param(example = "th-0001")]
    sensor: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    #[param(minimum = 1, maximum = 1000, example = 100)]
    limit: Option<u32>,
}

/// The status log, optionally of one sensor.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatusLogQuery {
    /// Only this sensor's changes.
    #[param(example = "th-0001")]
    sensor: Option<String>,
    #[param(minimum = 1, maximum = 10000, example = 100)]
    limit: Option<u32>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum AlertStatusName {
    Active,
    Acknowledged,
    Cleared,
}

/// Alerts, filtered.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertsQuery {
    #[param(inline)]
    status: Option<AlertStatusName>,
    /// Only this sensor's alerts.
    #[param(example = "th-0001")]
    sensor: Option<String>,
    /// Only alerts this rule raised.
    rule: Option<String>,
    #[param(minimum = 1, maximum = 10000, example = 100)]
    limit: Option<u32>,
}

#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum CommandStatusName {
    Queued,
    Sent,
    Delivered,
    Succeeded,
    Failed,
    Expired,
    Cancelled,
}

/// Commands, filtered.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CommandsQuery {
    #[param(inline)]
    status: Option<CommandStatusName>,
    #[param(minimum = 1, maximum = 10000, example = 100)]
    limit: Option<u32>,
}
