//! Where the act engine keeps its state: the [`ActStore`] trait and its SQLite backend
//! (`<data-dir>/act.db`).
//!
//! The act engine owns its own database, separate from the one holding readings, whatever
//! backend that is: the ack path never waits on an act write, and a PostgreSQL version of
//! this trait can be added without touching the readings store. Everything the engine
//! decides for one committed batch (events, status log lines, rule states, alerts, commands,
//! webhook deliveries) is written by [`ActStore::apply`] in one transaction, so a crash never
//! leaves an event without its deliveries or an alert without its rule state.

mod sqlite;

pub use sqlite::SqliteActStore;

use audrey_model::{Millis, ReadingId};

use crate::ActError;
use crate::records::{
    Alert, AlertStatus, Attempt, Command, CommandStatus, Delivery, Event, HealthStatus,
    StatusChange, Subscription,
};
use crate::rules::Rule;

/// The persisted part of one (rule, sensor) evaluation state.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleStateRow {
    pub rule_id: String,
    pub sensor_id: String,
    pub last_read_at: Option<Millis>,
    pub pending_since: Option<Millis>,
    pub alert_id: Option<String>,
}

/// Everything one engine step decided, committed together.
#[derive(Debug, Default)]
pub struct Changes {
    pub events: Vec<Event>,
    pub status_changes: Vec<StatusChange>,
    pub rule_states: Vec<RuleStateRow>,
    pub raised: Vec<Alert>,
    /// `(alert id, at, clearing reading)`.
    pub cleared: Vec<(String, Millis, Option<String>)>,
    pub commands: Vec<Command>,
    pub deliveries: Vec<Delivery>,
    /// The readings this step evaluated: recorded with its decisions, so after a crash the
    /// replay knows exactly which committed readings still need evaluating.
    pub evaluated: Vec<ReadingId>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.status_changes.is_empty()
            && self.rule_states.is_empty()
            && self.raised.is_empty()
            && self.cleared.is_empty()
            && self.commands.is_empty()
            && self.deliveries.is_empty()
            && self.evaluated.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub sensor_id: Option<String>,
    /// Events with a sequence number above this (the cursor).
    pub after: Option<i64>,
    pub limit: usize,
}

#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    pub sensor_id: Option<String>,
    pub rule_id: Option<String>,
    pub limit: usize,
}

/// The act engine's storage. Methods block; async callers use `spawn_blocking`.
pub trait ActStore: Send + Sync + 'static {
    fn apply(&self, changes: &Changes) -> Result<(), ActError>;

    /// Replay never goes below this id: readings stored before the engine first ran with
    /// this act.db are not its to evaluate. Set once.
    fn replay_floor(&self) -> Result<Option<ReadingId>, ActError>;
    fn set_replay_floor(&self, id: ReadingId) -> Result<(), ActError>;
    /// Every reading id recorded by [`Changes::evaluated`] and not yet forgotten.
    fn evaluated_readings(&self) -> Result<Vec<ReadingId>, ActError>;
    /// Forgets the records of batches whose highest id is below `below` (older than any
    /// replay can reach).
    fn forget_evaluated_before(&self, below: ReadingId) -> Result<(), ActError>;

    fn events(&self, filter: &EventFilter) -> Result<Vec<(i64, Event)>, ActError>;
    fn status_log(
        &self,
        sensor_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StatusChange>, ActError>;
    /// The last status of every sensor that has one.
    fn statuses(&self) -> Result<Vec<(String, HealthStatus)>, ActError>;

    fn put_rule(&self, rule: &Rule) -> Result<(), ActError>;
    fn delete_rule(&self, id: &str) -> Result<bool, ActError>;
    fn rules(&self) -> Result<Vec<Rule>, ActError>;
    fn rule_states(&self) -> Result<Vec<RuleStateRow>, ActError>;

    fn alert(&self, id: &str) -> Result<Option<Alert>, ActError>;
    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, ActError>;
    /// active → acknowledged; answers the alert as it is afterwards.
    fn acknowledge_alert(&self, id: &str, at: Millis) -> Result<Alert, ActError>;

    fn put_subscription(&self, subscription: &Subscription) -> Result<(), ActError>;
    fn delete_subscription(&self, id: &str) -> Result<bool, ActError>;
    fn subscriptions(&self) -> Result<Vec<Subscription>, ActError>;
    fn deliveries(
        &self,
        subscription_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, ActError>;
    fn delivery(&self, id: &str) -> Result<Option<Delivery>, ActError>;
    /// Pending deliveries due at `now`, oldest first, of enabled subscriptions.
    fn due_deliveries(&self, now: Millis, limit: usize) -> Result<Vec<Delivery>, ActError>;
    fn earliest_pending(&self) -> Result<Option<Millis>, ActError>;
    /// Logs an attempt and updates the delivery and its subscription's failure count in one
    /// transaction; disables the subscription when `disable` is set.
    fn record_attempt(
        &self,
        attempt: &Attempt,
        delivery: &Delivery,
        succeeded: bool,
        disable_after: u32,
    ) -> Result<(), ActError>;
    fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, ActError>;
    /// Back to pending, due now.
    fn redeliver(&self, id: &str, now: Millis) -> Result<Delivery, ActError>;

    fn command(&self, id: &str) -> Result<Option<Command>, ActError>;
    fn commands(
        &self,
        sensor_id: Option<&str>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Result<Vec<Command>, ActError>;
    /// Queued or sent commands of a sensor, oldest first.
    fn undelivered_commands(&self, sensor_id: Option<&str>) -> Result<Vec<Command>, ActError>;
}
