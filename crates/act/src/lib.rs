//! Acting on data: device health, quality checks, rules and alerts, webhooks, and commands to
//! devices.
//!
//! This crate owns every decision Audrey takes about readings after they are stored, and its
//! own state in `<data-dir>/act.db` behind the [`ActStore`] trait. It consumes committed
//! batches from the ingest pipeline through [`audrey_ingest::CommitObserver`] and reads the
//! registry through [`audrey_store::Store`]. It must never sit on the acknowledgement path,
//! never write readings, and never know HTTP or gRPC (it is an HTTP *client* for webhooks
//! only): the server crate adapts its API.

mod clock;
mod commands;
mod engine;
mod error;
mod health;
mod persistence;
mod records;
mod rules;
mod webhooks;

pub use clock::{Clock, ManualClock, SystemClock};
pub use commands::DeviceSession;
pub use engine::api::SubscriptionInput;
pub use engine::{ActOptions, Engine};
pub use error::ActError;
pub use health::HealthOptions;
pub use persistence::{ActStore, AlertFilter, EventFilter, SqliteActStore};
pub use records::{
    Alert, AlertStatus, Attempt, Command, CommandStatus, Delivery, DeliveryStatus, EVENT_TYPES,
    Event, HealthStatus, StatusChange, Subscription, SubscriptionFilter,
};
pub use rules::{CommandAction, Condition, Rule, RuleInput, Scope, Severity};
pub use webhooks::{
    DELIVERY_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER, WebhookOptions, signature, verify,
};
