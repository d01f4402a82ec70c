//! The records the act engine keeps and the API answers: events, status changes, alerts,
//! webhook subscriptions and deliveries, commands. Plain data; no I/O.

use serde::{Deserialize, Serialize};

use audrey_model::Millis;

use crate::rules::Severity;

/// Event types a webhook can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "alert.raised",
    "alert.cleared",
    "sensor.status_changed",
    "quality.finding",
    "command.updated",
];

/// Something the engine decided; stored, queryable, and delivered to subscribed webhooks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: Millis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(kind: &str, at: Millis, sensor_id: Option<&str>, data: serde_json::Value) -> Event {
        Event {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_string(),
            at,
            sensor_id: sensor_id.map(str::to_string),
            data,
        }
    }

    pub fn severity(&self) -> Option<&str> {
        self.data
            .get("severity")
            .and_then(serde_json::Value::as_str)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Online,
    Offline,
    Faulty,
    Decommissioned,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Online => "online",
            HealthStatus::Offline => "offline",
            HealthStatus::Faulty => "faulty",
            HealthStatus::Decommissioned => "decommissioned",
        }
    }

    pub fn parse(text: &str) -> Option<HealthStatus> {
        Some(match text {
            "online" => HealthStatus::Online,
            "offline" => HealthStatus::Offline,
            "faulty" => HealthStatus::Faulty,
            "decommissioned" => HealthStatus::Decommissioned,
            _ => return None,
        })
    }
}

/// One line of the status log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusChange {
    pub sensor_id: String,
    pub from: Option<HealthStatus>,
    pub to: HealthStatus,
    pub reason: String,
    pub at: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Active,
    Acknowledged,
    Cleared,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Active => "active",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Cleared => "cleared",
        }
    }

    pub fn parse(text: &str) -> Option<AlertStatus> {
        Some(match text {
            "active" => AlertStatus::Active,
            "acknowledged" => AlertStatus::Acknowledged,
            "cleared" => AlertStatus::Cleared,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub id: String,
    pub rule_id: String,
    pub sensor_id: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub raised_at: Millis,
    /// The reading that raised it; none for a no-data alert.
    pub raised_reading_id: Option<String>,
    pub raised_value: Option<f64>,
    pub acknowledged_at: Option<Millis>,
    pub cleared_at: Option<Millis>,
    pub cleared_reading_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Subscription {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    /// Exact-match filters on the event: `sensor_id`, `severity`.
    #[serde(default)]
    pub filter: SubscriptionFilter,
    #[serde(skip_serializing)]
    pub secret: String,
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub created_at: Millis,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

impl Subscription {
    pub fn wants(&self, event: &Event) -> bool {
        self.enabled
            && self.event_types.contains(&event.kind)
            && self
                .filter
                .sensor_id
                .as_deref()
                .is_none_or(|sensor| event.sensor_id.as_deref() == Some(sensor))
            && self
                .filter
                .severity
                .as_deref()
                .is_none_or(|severity| event.severity() == Some(severity))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Some(match text {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }
}

/// One event to one subscription. Stored before the first attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Delivery {
    /// Also the idempotency id the receiver sees.
    pub id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub event_type: String,
    #[serde(skip)]
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    pub created_at: Millis,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attempt {
    pub delivery_id: String,
    pub at: Millis,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandStatus {
    Queued,
    Sent,
    Delivered,
    Succeeded,
    Failed,
    Expired,
    Cancelled,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Queued => "queued",
            CommandStatus::Sent => "sent",
            CommandStatus::Delivered => "delivered",
            CommandStatus::Succeeded => "succeeded",
            CommandStatus::Failed => "failed",
            CommandStatus::Expired => "expired",
            CommandStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<CommandStatus> {
        Some(match text {
            "queued" => CommandStatus::Queued,
            "sent" => CommandStatus::Sent,
            "delivered" => CommandStatus::Delivered,
            "succeeded" => CommandStatus::Succeeded,
            "failed" => CommandStatus::Failed,
            "expired" => CommandStatus::Expired,
            "cancelled" => CommandStatus::Cancelled,
            _ => return None,
        })
    }

    /// Not yet in the device's hands: may still be sent, expire or be cancelled.
    pub fn is_undelivered(self) -> bool {
        matches!(self, CommandStatus::Queued | CommandStatus::Sent)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Command {
    pub id: String,
    pub sensor_id: String,
    pub name: String,
    pub payload: serde_json::Value,
    pub status: CommandStatus,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub updated_at: Millis,
    /// The device's reported result detail, if any.
    pub result: Option<String>,
    /// Set when a rule issued it.
    pub alert_id: Option<String>,
}
