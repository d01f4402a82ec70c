//! The wire shapes of the act API (events, the status log, alerts, rules, webhook
//! subscriptions, deliveries, commands) as OpenAPI schemas, each with an example.
//!
//! They mirror the serde types of `audrey_act` (`records.rs`, `rules.rs`,
//! `engine/api.rs`) and the handlers' request types field for field: a field the act type
//! skips when `None` is optional here, a field it always writes is required (nullable when
//! it is an `Option`). They only describe JSON and are never built; the act crate stays free
//! of documentation machinery. The schemathesis run checks every answer against them.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// The kinds of event (and what a webhook subscribes to).
#[derive(Serialize, ToSchema)]
pub(crate) enum EventType {
    #[serde(rename = "alert.raised")]
    AlertRaised,
    #[serde(rename = "alert.cleared")]
    AlertCleared,
    #[serde(rename = "sensor.status_changed")]
    SensorStatusChanged,
    #[serde(rename = "quality.finding")]
    QualityFinding,
    #[serde(rename = "command.updated")]
    CommandUpdated,
}

/// Something the engine decided (an alert raised or cleared, a status change, a quality
/// finding, a command update); `data` depends on the type.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "type": "alert.raised",
    "at": "2026-05-01T12:00:00Z", "sensor_id": "th-0001",
    "data": {"alert_id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a60", "severity": "major", "value": 31.5}}))]
pub(crate) struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: EventType,
    #[schema(format = DateTime)]
    at: String,
    /// Absent for events that concern no single sensor.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sensor_id: Option<String>,
    data: serde_json::Value,
}

/// A sensor's health as the engine sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HealthStatus {
    Online,
    Offline,
    Faulty,
    Decommissioned,
}

/// One line of the status log.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sensor_id": "th-0001", "from": "online", "to": "offline",
    "reason": "no reading for 180 s (expected every 60 s)", "at": "2026-05-01T12:03:00Z"}))]
pub(crate) struct StatusChange {
    sensor_id: String,
    /// Null for the first status the engine gave the sensor.
    from: Option<HealthStatus>,
    to: HealthStatus,
    reason: String,
    #[schema(format = DateTime)]
    at: String,
}

/// A sensor's current status (null until the engine has seen it) and its last 100 changes.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sensor_id": "th-0001", "status": "online", "log": [{"sensor_id": "th-0001",
    "from": null, "to": "online", "reason": "first reading", "at": "2026-05-01T12:00:00Z"}]}))]
pub(crate) struct SensorStatus {
    sensor_id: String,
    status: Option<HealthStatus>,
    log: Vec<StatusChange>,
}

/// A sensor's status after (de)commissioning.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sensor_id": "th-0001", "status": "decommissioned"}))]
pub(crate) struct CommissionStatus {
    sensor_id: String,
    status: HealthStatus,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    Warning,
    Minor,
    Major,
    Critical,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AlertStatus {
    Active,
    Acknowledged,
    Cleared,
}

/// An alert a rule raised for one sensor.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a60",
    "rule_id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a61", "sensor_id": "th-0001", "severity": "major",
    "status": "active", "raised_at": "2026-05-01T12:00:00Z",
    "raised_reading_id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "raised_value": 31.5,
    "acknowledged_at": null, "cleared_at": null, "cleared_reading_id": null}))]
pub(crate) struct Alert {
    id: String,
    rule_id: String,
    sensor_id: String,
    severity: Severity,
    status: AlertStatus,
    #[schema(format = DateTime)]
    raised_at: String,
    /// The reading that raised it; null for a no-data alert.
    raised_reading_id: Option<String>,
    raised_value: Option<f64>,
    #[schema(format = DateTime)]
    acknowledged_at: Option<String>,
    #[schema(format = DateTime)]
    cleared_at: Option<String>,
    cleared_reading_id: Option<String>,
}

/// What a rule applies to: one sensor, every sensor at a location, every sensor of a kind,
/// or all sensors (`{"type": "all"}`, no id).
#[derive(Serialize, ToSchema)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub(crate) enum RuleScope {
    Sensor(String),
    Location(String),
    Kind(String),
    All,
}

/// How a threshold rule compares a value with its threshold (`outside` uses `range`).
#[derive(Serialize, ToSchema)]
pub(crate) enum Condition {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = "==")]
    Equal,
    #[serde(rename = "outside")]
    Outside,
}

/// A command a rule sends to the sensor when it raises an alert.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "fan_on", "payload": {"speed": 3}, "ttl_seconds": 300}))]
pub(crate) struct CommandAction {
    name: String,
    /// Any JSON value handed to the device as is (null when absent).
    #[serde(default)]
    payload: serde_json::Value,
    /// 1 s to 30 days.
    #[schema(minimum = 1, maximum = 2592000)]
    ttl_seconds: u64,
}

/// A rule as sent: a threshold rule (`metric`, `condition`, `threshold` or `range`, optional
/// `for_seconds` and `clear_threshold`) or a no-data rule (`no_data_seconds` only).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "hot hangar", "scope": {"type": "location", "id": "hangar-1"},
    "metric": "temperature", "condition": ">", "threshold": 30, "for_seconds": 120,
    "clear_threshold": 28, "severity": "major",
    "action": {"name": "fan_on", "payload": {"speed": 3}, "ttl_seconds": 300}}))]
pub(crate) struct RuleInput {
    #[serde(default)]
    name: String,
    scope: RuleScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    condition: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    /// `[low, high]` for `outside`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    range: Option<[f64; 2]>,
    /// How long the condition must hold before an alert is raised; at most one year.
    #[serde(default)]
    #[schema(maximum = 31536000)]
    for_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clear_threshold: Option<f64>,
    severity: Severity,
    /// Makes this a "no data for D" rule: no metric, condition or threshold; 1 s to one year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 31536000)]
    no_data_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<CommandAction>,
}

/// A stored rule: the fields of a rule as sent (absent optional fields stay absent) plus its
/// id and times.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a61", "name": "hot hangar",
    "scope": {"type": "location", "id": "hangar-1"}, "metric": "temperature", "condition": ">",
    "threshold": 30, "for_seconds": 120, "clear_threshold": 28, "severity": "major",
    "created_at": "2026-05-01T12:00:00Z", "updated_at": "2026-05-01T12:00:00Z"}))]
pub(crate) struct Rule {
    id: String,
    // The fields of `RuleInput`, repeated: flattening it would carry its
    // `additionalProperties: false` into this answer and forbid `id` and the times.
    name: String,
    scope: RuleScope,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    condition: Option<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    range: Option<[f64; 2]>,
    for_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    clear_threshold: Option<f64>,
    severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    no_data_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    action: Option<CommandAction>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// Exact-match filters on an event; absent members match everything.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"sensor_id": "th-0001", "severity": "critical"}))]
pub(crate) struct SubscriptionFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sensor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<String>,
}

/// A webhook subscription as sent. The secret signs every delivery (HMAC-SHA256) and is never
/// shown again.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://ops.example.com/audrey", "event_types": ["alert.raised", "alert.cleared"],
    "filter": {"severity": "critical"}, "secret": "a-long-shared-secret-0123456789", "enabled": true}))]
pub(crate) struct SubscriptionInput {
    /// An absolute http or https URL.
    url: String,
    /// At least one.
    #[schema(min_items = 1)]
    event_types: Vec<EventType>,
    #[serde(default)]
    filter: SubscriptionFilter,
    /// At least 16 characters.
    #[schema(min_length = 16)]
    secret: String,
    #[serde(default)]
    #[schema(default = true)]
    enabled: bool,
}

/// A webhook subscription (without its secret).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a62", "url": "https://ops.example.com/audrey",
    "event_types": ["alert.raised", "alert.cleared"], "filter": {"severity": "critical"}, "enabled": true,
    "consecutive_failures": 0, "created_at": "2026-05-01T12:00:00Z"}))]
pub(crate) struct Subscription {
    id: String,
    url: String,
    event_types: Vec<EventType>,
    filter: SubscriptionFilter,
    /// False after too many failed deliveries in a row (or when created disabled).
    enabled: bool,
    consecutive_failures: u32,
    #[schema(format = DateTime)]
    created_at: String,
}

/// Enables or disables a subscription; enabling resets its failure count.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true}))]
pub(crate) struct SubscriptionPatch {
    enabled: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

/// One event to one subscription; its id is also the idempotency id the receiver sees.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a63",
    "subscription_id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a62",
    "event_id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "event_type": "alert.raised",
    "status": "pending", "attempts": 1, "next_attempt_at": "2026-05-01T12:00:30Z",
    "created_at": "2026-05-01T12:00:00Z", "last_error": "HTTP 503"}))]
pub(crate) struct Delivery {
    id: String,
    subscription_id: String,
    event_id: String,
    event_type: String,
    status: DeliveryStatus,
    attempts: u32,
    #[schema(format = DateTime)]
    next_attempt_at: String,
    #[schema(format = DateTime)]
    created_at: String,
    last_error: Option<String>,
}

/// One attempt to deliver: the receiver's status code (null when it could not be reached).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"delivery_id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a63",
    "at": "2026-05-01T12:00:00Z", "status_code": 503, "latency_ms": 42, "error": "HTTP 503"}))]
pub(crate) struct Attempt {
    delivery_id: String,
    #[schema(format = DateTime)]
    at: String,
    status_code: Option<u16>,
    latency_ms: u64,
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CommandStatus {
    Queued,
    Sent,
    Delivered,
    Succeeded,
    Failed,
    Expired,
    Cancelled,
}

/// A command to a device.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": "0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a64", "sensor_id": "th-0001",
    "name": "fan_on", "payload": {"speed": 3}, "status": "queued", "created_at": "2026-05-01T12:00:00Z",
    "expires_at": "2026-05-01T12:05:00Z", "updated_at": "2026-05-01T12:00:00Z", "result": null,
    "alert_id": null}))]
pub(crate) struct Command {
    id: String,
    sensor_id: String,
    name: String,
    /// Any JSON value, as sent.
    payload: serde_json::Value,
    status: CommandStatus,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// The device's reported result detail.
    result: Option<String>,
    /// Set when a rule issued it.
    alert_id: Option<String>,
}

/// A command to queue for a sensor.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "reboot", "payload": {"delay_s": 5}, "ttl": 300}))]
pub(crate) struct CommandRequest {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    /// Any JSON value handed to the device as is (null when absent).
    #[serde(default)]
    payload: serde_json::Value,
    /// Seconds the command may wait for delivery: 1 s to 30 days.
    #[schema(minimum = 1, maximum = 2592000)]
    ttl: u64,
}

/// A list of `$item` in the shape every list route uses.
macro_rules! list_schema {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("A list of ", $what, "; `next_cursor` (when not null) is passed back as `cursor` for the next page.")]
        #[derive(Serialize, ToSchema)]
        pub(crate) struct $name {
            items: Vec<$item>,
            count: usize,
            is_empty: bool,
            next_cursor: Option<String>,
        }
    };
}

list_schema!(EventList, Event, "events");
list_schema!(StatusChangeList, StatusChange, "status changes");
list_schema!(AlertList, Alert, "alerts");
list_schema!(RuleList, Rule, "rules");
list_schema!(SubscriptionList, Subscription, "webhook subscriptions");
list_schema!(DeliveryList, Delivery, "webhook deliveries");
list_schema!(AttemptList, Attempt, "delivery attempts");
list_schema!(CommandList, Command, "commands");
