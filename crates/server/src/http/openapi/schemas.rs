//! The wire shapes of the HTTP API as OpenAPI schemas, each with an example.
//!
//! These types only describe JSON that other types produce (the model's records, the
//! handlers' answers); they are never built. Keeping them here keeps the model crate free of
//! documentation machinery. The schemathesis run (`crates/cli/tests/api_fuzz.rs`) checks every
//! answer against them, so a shape that drifts from what the server sends fails a test.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// Every error: a stable code, a readable message and, for bad input, one entry per field.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid", "message": "the location is invalid",
    "details": [{"path": "latitude", "reason": "out_of_range", "message": "must be between -90 and 90"}]}}))]
pub(crate) struct ErrorBody {
    error: ErrorDescription,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDescription {
    /// One of: malformed, invalid, not_found, method_not_allowed, conflict,
    /// precondition_failed, gone, payload_too_large, unauthenticated, permission_denied,
    /// overloaded, unavailable, internal.
    code: String,
    message: String,
    details: Vec<FieldProblem>,
}

/// One refused field: where (a JSON path or parameter name), why (a stable reason) and a
/// readable message.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"path": "values.temperature", "reason": "out_of_range", "message": "above the sensor's max 85"}))]
pub(crate) struct FieldProblem {
    path: String,
    reason: String,
    message: String,
}

/// A place sensors are installed at.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "hangar-1", "name": "Hangar 1", "city": "Berlin", "country": "DE",
    "latitude": 52.36, "longitude": 13.5, "altitude": 48.0, "timezone": "Europe/Berlin",
    "iata": null, "icao": null, "attributes": {"type": "airport"},
    "created_at": "2026-05-01T12:00:00Z", "updated_at": "2026-05-01T12:00:00Z", "deleted_at": null}))]
pub(crate) struct Location {
    id: String,
    name: String,
    city: Option<String>,
    country: Option<String>,
    latitude: f64,
    longitude: f64,
    /// Metres above sea level.
    altitude: Option<f64>,
    /// An IANA time zone name.
    timezone: String,
    iata: Option<String>,
    icao: Option<String>,
    /// Columns of an import that Audrey does not model, kept as given.
    attributes: BTreeMap<String, serde_json::Value>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Set when the location is soft-deleted.
    #[schema(format = DateTime)]
    deleted_at: Option<String>,
}

/// What a client sends to create or replace a location. Without `id` a POST generates one.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Hangar 1", "city": "Berlin", "country": "DE", "latitude": 52.36,
    "longitude": 13.5, "altitude": 48, "timezone": "Europe/Berlin"}))]
pub(crate) struct LocationInput {
    id: Option<String>,
    name: String,
    city: Option<String>,
    country: Option<String>,
    #[schema(minimum = -90.0, maximum = 90.0)]
    latitude: f64,
    #[schema(minimum = -180.0, maximum = 180.0)]
    longitude: f64,
    altitude: Option<f64>,
    /// An IANA time zone name; derived from the coordinates when absent.
    timezone: Option<String>,
    iata: Option<String>,
    icao: Option<String>,
    /// Extra attributes kept with the location (a JSON object).
    attributes: Option<BTreeMap<String, serde_json::Value>>,
}

/// One metric a sensor reports, with its valid range.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "temperature", "unit": "C", "min": -40, "max": 85}))]
pub(crate) struct MetricSpec {
    name: String,
    unit: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
}

/// A registered device.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "th-0001", "name": "Door climate", "kind": "climate",
    "location_id": "hangar-1", "metrics": [{"name": "temperature", "unit": "C", "min": -40, "max": 85}],
    "expected_interval_seconds": 60, "created_at": "2026-05-01T12:00:00Z",
    "updated_at": "2026-05-01T12:00:00Z", "deleted_at": null}))]
pub(crate) struct Sensor {
    id: String,
    name: String,
    kind: String,
    location_id: String,
    metrics: Vec<MetricSpec>,
    expected_interval_seconds: Option<u32>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(format = DateTime)]
    deleted_at: Option<String>,
}

/// What a client sends to create or replace a sensor; `id` (the device serial) is required
/// on POST and taken from the path on PUT.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "th-0001", "name": "Door climate", "kind": "climate", "location_id": "hangar-1",
    "expected_interval_seconds": 60, "metrics": [{"name": "temperature", "unit": "C", "min": -40, "max": 85}]}))]
pub(crate) struct SensorInput {
    id: Option<String>,
    name: Option<String>,
    kind: String,
    location_id: String,
    metrics: Option<Vec<MetricSpec>>,
    expected_interval_seconds: Option<u32>,
}

/// A JSON Merge Patch (RFC 7396): named fields are replaced, `null` removes a field.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "Hangar 1 (north)", "city": null}))]
pub(crate) struct MergePatch(BTreeMap<String, serde_json::Value>);

/// A measurement time: RFC 3339 text or epoch milliseconds.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ReadAt {
    Text(String),
    EpochMillis(i64),
}

/// One reading as sent.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sensor_id": "th-0001", "read_at": "2026-05-01T12:00:00Z",
    "values": {"temperature": 21.5, "humidity": 40}, "message_id": "th-0001-1"}))]
pub(crate) struct ReadingInput {
    sensor_id: String,
    location_id: Option<String>,
    read_at: ReadAt,
    values: BTreeMap<String, f64>,
    /// The sender's id for this reading: a resend with the same id is a duplicate.
    message_id: Option<String>,
}

/// One reading, or a batch of them.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ReadingsBody {
    One(ReadingInput),
    Batch(Vec<ReadingInput>),
}

/// A stored reading.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "sensor_id": "th-0001",
    "location_id": "hangar-1", "read_at": "2026-05-01T12:00:00Z", "received_at": "2026-05-01T12:00:00.120Z",
    "values": {"temperature": 21.5}, "message_id": "th-0001-1"}))]
pub(crate) struct Reading {
    #[schema(format = Uuid)]
    id: String,
    sensor_id: String,
    location_id: String,
    #[schema(format = DateTime)]
    read_at: String,
    #[schema(format = DateTime)]
    received_at: String,
    values: BTreeMap<String, f64>,
    message_id: Option<String>,
}

/// What happened to each reading of an ingest request, in order.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"accepted": 1, "duplicates": 0, "rejected": 1, "results": [
    {"index": 0, "status": "accepted", "id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"},
    {"index": 1, "status": "rejected", "errors": [{"path": "values.temperature", "reason": "out_of_range", "message": "above the sensor's max 85"}]}]}))]
pub(crate) struct IngestResult {
    accepted: usize,
    duplicates: usize,
    rejected: usize,
    results: Vec<ItemResult>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemStatus {
    Accepted,
    Duplicate,
    Rejected,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ItemResult {
    index: usize,
    status: ItemStatus,
    /// The stored id (for a duplicate: the id stored the first time).
    #[schema(format = Uuid)]
    id: Option<String>,
    errors: Option<Vec<FieldProblem>>,
}

/// A rejected reading kept with its raw payload.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "received_at": "2026-05-01T12:00:00Z", "sensor_id": "th-0001",
    "reason": "out_of_range", "path": "values.temperature", "message": "above the sensor's max 85",
    "payload": "{\"sensor_id\": \"th-0001\", \"values\": {\"temperature\": 130}}"}))]
pub(crate) struct QuarantineEntry {
    id: i64,
    #[schema(format = DateTime)]
    received_at: String,
    sensor_id: Option<String>,
    reason: String,
    path: String,
    message: String,
    payload: String,
}

/// Readings of one sensor since it was registered.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"accepted": 1440, "duplicate": 3, "rejected": 1}))]
pub(crate) struct SensorCounters {
    accepted: u64,
    duplicate: u64,
    rejected: u64,
}

/// A bearer token's record; the secret is never shown again after creation.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0a1b2c3d4e5f", "name": "th-0001", "scopes": ["write"],
    "sensor_id": "th-0001", "created_at": "2026-05-01T12:00:00Z", "revoked_at": null}))]
pub(crate) struct Token {
    id: String,
    name: String,
    scopes: Vec<String>,
    sensor_id: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
}

/// A token request: scopes from admin, write, read; optionally bound to one sensor.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "th-0001", "scopes": ["write"], "sensor_id": "th-0001"}))]
pub(crate) struct TokenRequest {
    name: Option<String>,
    scopes: Vec<String>,
    sensor_id: Option<String>,
}

/// A new token with its secret, shown this once.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0a1b2c3d4e5f", "name": "th-0001", "scopes": ["write"],
    "sensor_id": "th-0001", "created_at": "2026-05-01T12:00:00Z", "revoked_at": null,
    "token": "aud_3q2-7wEXAMPLEexampleEXAMPLEexampleEXAMPLEex"}))]
pub(crate) struct CreatedToken {
    id: String,
    name: String,
    scopes: Vec<String>,
    sensor_id: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    revoked_at: Option<String>,
    token: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StagedStatus {
    Pending,
    Applied,
    Cancelled,
}

/// A registry change waiting for its confirmation link.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "chg_0196a1b2c3d47e5f8a9b0c1d2e3f4a5b", "entity": "location",
    "entity_id": "hangar-1", "action": "delete", "body": null, "created_at": "2026-05-01T12:00:00Z",
    "expires_at": "2026-05-01T12:15:00Z", "status": "pending", "finished_at": null}))]
pub(crate) struct StagedChange {
    id: String,
    /// location or sensor.
    entity: String,
    entity_id: Option<String>,
    /// create, replace, patch or delete.
    action: String,
    /// The request body to apply, as JSON text.
    body: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    status: StagedStatus,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
}

/// A staged change and the single-use link that applies it (POST to it).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"staged": {"id": "chg_0196a1b2c3d47e5f8a9b0c1d2e3f4a5b", "entity": "location",
    "entity_id": "hangar-1", "action": "delete", "body": null, "created_at": "2026-05-01T12:00:00Z",
    "expires_at": "2026-05-01T12:15:00Z", "status": "pending", "finished_at": null},
    "confirm_url": "/api/v1/staged/confirm/stg_EXAMPLEexampleEXAMPLEexampleEXAMPLEexample"}))]
pub(crate) struct Staged {
    staged: StagedChange,
    confirm_url: String,
}

/// An applied staged change and the record it produced (`null` after a delete).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"staged": {"id": "chg_0196a1b2c3d47e5f8a9b0c1d2e3f4a5b", "entity": "location",
    "entity_id": "hangar-1", "action": "delete", "body": null, "created_at": "2026-05-01T12:00:00Z",
    "expires_at": "2026-05-01T12:15:00Z", "status": "applied", "finished_at": "2026-05-01T12:03:00Z"},
    "result": null}))]
pub(crate) struct ConfirmedChange {
    staged: StagedChange,
    result: Option<serde_json::Value>,
}

/// A page of a list of `$item`: `next_cursor` is passed back as `cursor` for the next page.
macro_rules! list_schema {
    ($name:ident, $item:ty) => {
        #[doc = concat!("A page of ", stringify!($item), " items; pass `next_cursor` back as `cursor` for the next page.")]
        #[derive(Serialize, ToSchema)]
        pub(crate) struct $name {
            items: Vec<$item>,
            count: usize,
            is_empty: bool,
            next_cursor: Option<String>,
        }
    };
}

list_schema!(LocationList, Location);
list_schema!(SensorList, Sensor);
list_schema!(ReadingList, Reading);
list_schema!(QuarantineList, QuarantineEntry);
list_schema!(TokenList, Token);
list_schema!(StagedChangeList, StagedChange);

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub(crate) struct Health {
    status: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready"}))]
pub(crate) struct Readiness {
    /// ready or not_ready.
    status: String,
    reason: Option<String>,
    /// Present while ready but degraded: why (a database outage with readings spooled).
    degraded: Option<String>,
    /// The spool's figures while degraded: bytes, records, oldest record's age.
    details: Option<BTreeMap<String, serde_json::Value>>,
}

/// A location with its great-circle distance from the search centre.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "hangar-1", "name": "Hangar 1", "city": "Berlin", "country": "DE",
    "latitude": 52.36, "longitude": 13.5, "altitude": 48.0, "timezone": "Europe/Berlin",
    "iata": null, "icao": null, "attributes": {}, "created_at": "2026-05-01T12:00:00Z",
    "updated_at": "2026-05-01T12:00:00Z", "deleted_at": null, "distance_km": 3.2}))]
pub(crate) struct NearLocation {
    #[serde(flatten)]
    location: Location,
    distance_km: f64,
}

/// Locations within a radius, nearest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct NearList {
    items: Vec<NearLocation>,
    count: usize,
}

/// The summary of one group.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"key": "th-0001", "count": 1440, "min": 12.5, "max": 31.0, "mean": 21.7,
    "stddev": 3.9, "percentiles": {"p50": 21.5, "p99": 30.2}}))]
pub(crate) struct StatsGroup {
    /// The group's sensor, location, city or country; null for readings without one.
    key: Option<String>,
    count: u64,
    min: f64,
    max: f64,
    mean: f64,
    /// Sample standard deviation (n − 1); null for a single value.
    stddev: Option<f64>,
    /// Exact percentiles by name (`p50`, `p99.9`), linear interpolation between ranks.
    percentiles: BTreeMap<String, f64>,
}

/// Statistics per group.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"metric": "temperature", "group_by": "sensor", "groups": [{"key": "th-0001",
    "count": 1440, "min": 12.5, "max": 31.0, "mean": 21.7, "stddev": 3.9, "percentiles": {"p50": 21.5}}]}))]
pub(crate) struct StatsAnswer {
    metric: String,
    /// `sensor`, `location`, `city` or `country`.
    group_by: String,
    groups: Vec<StatsGroup>,
}

/// A time series of buckets; each bucket has `start` and one member per requested aggregation
/// (null where a bucket has no value for it).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"metric": "temperature", "bucket_ms": 3600000, "buckets": [
    {"start": "2026-05-01T12:00:00Z", "avg": 21.7, "min": 20.1, "max": 23.0, "count": 60}]}))]
pub(crate) struct AggregateAnswer {
    metric: String,
    bucket_ms: i64,
    buckets: Vec<BTreeMap<String, serde_json::Value>>,
}

/// One rejected row of an import.
#[derive(Serialize, ToSchema)]
pub(crate) struct ImportRejection {
    /// Data row number: 1 is the first row after any header.
    row: u64,
    /// Line in the file where the row starts.
    line: u64,
    /// The column's header name; empty when the whole row is at fault.
    column: String,
    reason: String,
    message: String,
}

/// What an import did.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"header": false, "rows": 7698, "inserted": 7288, "updated": 0, "unchanged": 0,
    "rejected": 410, "rejections": [{"row": 12, "line": 12, "column": "tz", "reason": "invalid_format",
    "message": "no time zone and no whole-hour offset"}]}))]
pub(crate) struct ImportReport {
    /// Whether the first line was read as a header (else: the OpenFlights column order).
    header: bool,
    rows: u64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
    rejections: Vec<ImportRejection>,
}
