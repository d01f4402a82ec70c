//! `act.db`: the act engine's SQLite file (WAL, `synchronous=FULL`), with versioned
//! migrations recorded in `PRAGMA user_version`. One connection behind a mutex: act writes
//! are small and few compared with readings, and a single writer keeps them serial.

mod evaluated;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};

use audrey_model::{Millis, ReadingId};

use super::{ActStore, AlertFilter, Changes, EventFilter, RuleStateRow};
use crate::ActError;
use crate::records::{
    Alert, AlertStatus, Attempt, Command, CommandStatus, Delivery, DeliveryStatus, Event,
    HealthStatus, StatusChange, Subscription,
};
use crate::rules::{Rule, RuleInput};

/// Each entry moves the schema from version `index` to `index + 1`. Never edit one that has
/// shipped; add a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    sensor_id TEXT,
    at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_by_sensor ON events (sensor_id, seq);
CREATE TABLE status_log (
    seq INTEGER PRIMARY KEY,
    sensor_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX status_log_by_sensor ON status_log (sensor_id, seq);
CREATE TABLE rules (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE rule_states (
    rule_id TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    last_read_at INTEGER,
    pending_since INTEGER,
    alert_id TEXT,
    PRIMARY KEY (rule_id, sensor_id)
) WITHOUT ROWID;
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    raised_reading_id TEXT,
    raised_value REAL,
    acknowledged_at INTEGER,
    cleared_at INTEGER,
    cleared_reading_id TEXT
);
CREATE INDEX alerts_by_status ON alerts (status, raised_at);
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    consecutive_failures INTEGER NOT NULL
);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_error TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE delivery_attempts (
    seq INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX attempts_by_delivery ON delivery_attempts (delivery_id, seq);
CREATE TABLE commands (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    sensor_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    result TEXT,
    alert_id TEXT
);
CREATE INDEX commands_by_sensor ON commands (sensor_id, seq);
"#,
    r#"
CREATE TABLE evaluated_batches (
    seq INTEGER PRIMARY KEY,
    highest_id BLOB NOT NULL,
    ids BLOB NOT NULL
);
CREATE INDEX evaluated_batches_by_highest ON evaluated_batches (highest_id);
CREATE TABLE replay_floor (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    id BLOB NOT NULL
);
"#,
];

pub struct SqliteActStore {
    connection: Mutex<Connection>,
}

impl SqliteActStore {
    /// Opens (creating if needed) `<data_dir>/act.db` and runs pending migrations.
    pub fn open(data_dir: &Path) -> Result<SqliteActStore, ActError> {
        std::fs::create_dir_all(data_dir).map_err(|error| {
            ActError::Unavailable(format!("creating {}: {error}", data_dir.display()))
        })?;
        let mut connection = Connection::open(data_dir.join("act.db"))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let transaction = connection.transaction()?;
            transaction.execute_batch(migration)?;
            transaction.pragma_update(None, "user_version", index as i64 + 1)?;
            transaction.commit()?;
        }
        Ok(SqliteActStore {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, ActError>,
    ) -> Result<T, ActError> {
        let mut connection = self
            .connection
            .lock()
            .map_err(|_| ActError::Internal("act.db connection poisoned".into()))?;
        work(&mut connection)
    }
}

fn millis(row: &Row<'_>, index: usize) -> rusqlite::Result<Millis> {
    row.get::<_, i64>(index).map(Millis)
}

fn optional_millis(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Millis>> {
    row.get::<_, Option<i64>>(index)
        .map(|value| value.map(Millis))
}

fn text_enum<T>(row: &Row<'_>, index: usize, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse(&text)
        .ok_or_else(|| rusqlite::Error::InvalidColumnType(index, text, rusqlite::types::Type::Text))
}

const ALERT_COLUMNS: &str = "id, rule_id, sensor_id, severity, status, raised_at, raised_reading_id, raised_value, acknowledged_at, cleared_at, cleared_reading_id";

fn alert_from(row: &Row<'_>) -> rusqlite::Result<Alert> {
    let severity: String = row.get(3)?;
    Ok(Alert {
        id: row.get(0)?,
        rule_id: row.get(1)?,
        sensor_id: row.get(2)?,
        severity: serde_json::from_value(serde_json::Value::String(severity.clone())).map_err(
            |_| rusqlite::Error::InvalidColumnType(3, severity, rusqlite::types::Type::Text),
        )?,
        status: text_enum(row, 4, AlertStatus::parse)?,
        raised_at: millis(row, 5)?,
        raised_reading_id: row.get(6)?,
        raised_value: row.get(7)?,
        acknowledged_at: optional_millis(row, 8)?,
        cleared_at: optional_millis(row, 9)?,
        cleared_reading_id: row.get(10)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, subscription_id, event_id, event_type, body, status, attempts, next_attempt_at, created_at, last_error";

fn delivery_from(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: row.get(0)?,
        subscription_id: row.get(1)?,
        event_id: row.get(2)?,
        event_type: row.get(3)?,
        body: row.get(4)?,
        status: text_enum(row, 5, DeliveryStatus::parse)?,
        attempts: row.get(6)?,
        next_attempt_at: millis(row, 7)?,
        created_at: millis(row, 8)?,
        last_error: row.get(9)?,
    })
}

const COMMAND_COLUMNS: &str =
    "id, sensor_id, name, payload, status, created_at, expires_at, updated_at, result, alert_id";

fn command_from(row: &Row<'_>) -> rusqlite::Result<Command> {
    let payload: String = row.get(3)?;
    Ok(Command {
        id: row.get(0)?,
        sensor_id: row.get(1)?,
        name: row.get(2)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        status: text_enum(row, 4, CommandStatus::parse)?,
        created_at: millis(row, 5)?,
        expires_at: millis(row, 6)?,
        updated_at: millis(row, 7)?,
        result: row.get(8)?,
        alert_id: row.get(9)?,
    })
}

fn status_change_from(row: &Row<'_>) -> rusqlite::Result<StatusChange> {
    let from: Option<String> = row.get(1)?;
    Ok(StatusChange {
        sensor_id: row.get(0)?,
        from: from.as_deref().and_then(HealthStatus::parse),
        to: text_enum(row, 2, HealthStatus::parse)?,
        reason: row.get(3)?,
        at: millis(row, 4)?,
    })
}

fn upsert_command(connection: &Connection, command: &Command) -> Result<(), ActError> {
    connection
        .prepare_cached(
            "INSERT INTO commands (id, sensor_id, name, payload, status, created_at, expires_at, updated_at, result, alert_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at, result = excluded.result",
        )?
        .execute(params![
            command.id,
            command.sensor_id,
            command.name,
            command.payload.to_string(),
            command.status.as_str(),
            command.created_at.0,
            command.expires_at.0,
            command.updated_at.0,
            command.result,
            command.alert_id,
        ])?;
    Ok(())
}

impl ActStore for SqliteActStore {
    fn apply(&self, changes: &Changes) -> Result<(), ActError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.with(|connection| {
            let transaction = connection.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO events (id, kind, sensor_id, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for event in &changes.events {
                    insert.execute(params![event.id, event.kind, event.sensor_id, event.at.0, event.data.to_string()])?;
                }
                let mut insert = transaction.prepare_cached(
                    "INSERT INTO status_log (sensor_id, from_status, to_status, reason, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for change in &changes.status_changes {
                    insert.execute(params![
                        change.sensor_id,
                        change.from.map(HealthStatus::as_str),
                        change.to.as_str(),
                        change.reason,
                        change.at.0
                    ])?;
                }
                let mut upsert = transaction.prepare_cached(
                    "INSERT OR REPLACE INTO rule_states (rule_id, sensor_id, last_read_at, pending_since, alert_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for state in &changes.rule_states {
                    upsert.execute(params![
                        state.rule_id,
                        state.sensor_id,
                        state.last_read_at.map(|at| at.0),
                        state.pending_since.map(|at| at.0),
                        state.alert_id
                    ])?;
                }
                let mut insert = transaction.prepare_cached(&format!(
                    "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))?;
                for alert in &changes.raised {
                    insert.execute(params![
                        alert.id,
                        alert.rule_id,
                        alert.sensor_id,
                        alert.severity.as_str(),
                        alert.status.as_str(),
                        alert.raised_at.0,
                        alert.raised_reading_id,
                        alert.raised_value,
                        alert.acknowledged_at.map(|at| at.0),
                        alert.cleared_at.map(|at| at.0),
                        alert.cleared_reading_id
                    ])?;
                }
                let mut clear = transaction.prepare_cached(
                    "UPDATE alerts SET status = 'cleared', cleared_at = ?2, cleared_reading_id = ?3 WHERE id = ?1 AND status != 'cleared'",
                )?;
                for (id, at, reading) in &changes.cleared {
                    clear.execute(params![id, at.0, reading])?;
                }
                for command in &changes.commands {
                    upsert_command(&transaction, command)?;
                }
                evaluated::record(&transaction, &changes.evaluated)?;
                let mut insert = transaction.prepare_cached(&format!(
                    "INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))?;
                for delivery in &changes.deliveries {
                    insert.execute(params![
                        delivery.id,
                        delivery.subscription_id,
                        delivery.event_id,
                        delivery.event_type,
                        delivery.body,
                        delivery.status.as_str(),
                        delivery.attempts,
                        delivery.next_attempt_at.0,
                        delivery.created_at.0,
                        delivery.last_error
                    ])?;
                }
            }
            transaction.commit()?;
            Ok(())
        })
    }

    fn replay_floor(&self) -> Result<Option<ReadingId>, ActError> {
        self.with(|connection| evaluated::floor(connection))
    }

    fn set_replay_floor(&self, id: ReadingId) -> Result<(), ActError> {
        self.with(|connection| evaluated::set_floor(connection, id))
    }

    fn evaluated_readings(&self) -> Result<Vec<ReadingId>, ActError> {
        self.with(|connection| evaluated::all(connection))
    }

    fn forget_evaluated_before(&self, below: ReadingId) -> Result<(), ActError> {
        self.with(|connection| evaluated::forget_before(connection, below))
    }

    fn events(&self, filter: &EventFilter) -> Result<Vec<(i64, Event)>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT seq, id, kind, sensor_id, at, data FROM events
                 WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR sensor_id = ?2) AND seq > ?3
                 ORDER BY seq LIMIT ?4",
            )?;
            let rows = statement.query_map(
                params![
                    filter.kind,
                    filter.sensor_id,
                    filter.after.unwrap_or(0),
                    filter.limit as i64
                ],
                |row| {
                    let data: String = row.get(5)?;
                    Ok((
                        row.get::<_, i64>(0)?,
                        Event {
                            id: row.get(1)?,
                            kind: row.get(2)?,
                            sensor_id: row.get(3)?,
                            at: millis(row, 4)?,
                            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                        },
                    ))
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn status_log(
        &self,
        sensor_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StatusChange>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT sensor_id, from_status, to_status, reason, at FROM status_log
                 WHERE (?1 IS NULL OR sensor_id = ?1) ORDER BY seq LIMIT ?2",
            )?;
            let rows = statement.query_map(params![sensor_id, limit as i64], status_change_from)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn statuses(&self) -> Result<Vec<(String, HealthStatus)>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT sensor_id, to_status FROM status_log WHERE seq IN (SELECT max(seq) FROM status_log GROUP BY sensor_id)",
            )?;
            let rows = statement.query_map([], |row| Ok((row.get(0)?, text_enum(row, 1, HealthStatus::parse)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn put_rule(&self, rule: &Rule) -> Result<(), ActError> {
        let body = serde_json::to_string(&rule.input)?;
        self.with(|connection| {
            connection.execute(
                "INSERT OR REPLACE INTO rules (id, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![rule.id, body, rule.created_at.0, rule.updated_at.0],
            )?;
            Ok(())
        })
    }

    fn delete_rule(&self, id: &str) -> Result<bool, ActError> {
        self.with(|connection| {
            let transaction = connection.transaction()?;
            let deleted = transaction.execute("DELETE FROM rules WHERE id = ?1", [id])? > 0;
            transaction.execute("DELETE FROM rule_states WHERE rule_id = ?1", [id])?;
            transaction.commit()?;
            Ok(deleted)
        })
    }

    fn rules(&self) -> Result<Vec<Rule>, ActError> {
        let rows: Vec<(String, String, i64, i64)> = self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT id, body, created_at, updated_at FROM rules ORDER BY created_at, id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        rows.into_iter()
            .map(|(id, body, created_at, updated_at)| {
                let input: RuleInput = serde_json::from_str(&body)?;
                input
                    .parse(id, Millis(created_at), Millis(updated_at))
                    .map_err(|error| {
                        ActError::Internal(format!("a stored rule no longer parses: {error}"))
                    })
            })
            .collect()
    }

    fn rule_states(&self) -> Result<Vec<RuleStateRow>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT rule_id, sensor_id, last_read_at, pending_since, alert_id FROM rule_states",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(RuleStateRow {
                    rule_id: row.get(0)?,
                    sensor_id: row.get(1)?,
                    last_read_at: optional_millis(row, 2)?,
                    pending_since: optional_millis(row, 3)?,
                    alert_id: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn alert(&self, id: &str) -> Result<Option<Alert>, ActError> {
        self.with(|connection| {
            Ok(connection
                .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
                .query_row([id], alert_from)
                .optional()?)
        })
    }

    fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR sensor_id = ?2) AND (?3 IS NULL OR rule_id = ?3)
                 ORDER BY raised_at, id LIMIT ?4"
            ))?;
            let rows = statement.query_map(
                params![filter.status.map(AlertStatus::as_str), filter.sensor_id, filter.rule_id, filter.limit as i64],
                alert_from,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn acknowledge_alert(&self, id: &str, at: Millis) -> Result<Alert, ActError> {
        self.with(|connection| {
            let transaction = connection.transaction()?;
            let alert = transaction
                .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
                .query_row([id], alert_from)
                .optional()?
                .ok_or_else(|| ActError::NotFound(format!("alert {id}")))?;
            if alert.status == AlertStatus::Cleared {
                return Err(ActError::Conflict(format!("alert {id} is already cleared")));
            }
            transaction.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = coalesce(acknowledged_at, ?2) WHERE id = ?1",
                params![id, at.0],
            )?;
            let alert = transaction
                .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
                .query_row([id], alert_from)?;
            transaction.commit()?;
            Ok(alert)
        })
    }

    fn put_subscription(&self, subscription: &Subscription) -> Result<(), ActError> {
        let body = serde_json::json!({
            "id": subscription.id,
            "url": subscription.url,
            "event_types": subscription.event_types,
            "filter": subscription.filter,
            "created_at": subscription.created_at.0,
        })
        .to_string();
        self.with(|connection| {
            connection.execute(
                "INSERT OR REPLACE INTO subscriptions (id, body, secret, enabled, consecutive_failures) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![subscription.id, body, subscription.secret, subscription.enabled, subscription.consecutive_failures],
            )?;
            Ok(())
        })
    }

    fn delete_subscription(&self, id: &str) -> Result<bool, ActError> {
        self.with(|connection| {
            Ok(connection.execute("DELETE FROM subscriptions WHERE id = ?1", [id])? > 0)
        })
    }

    fn subscriptions(&self) -> Result<Vec<Subscription>, ActError> {
        let rows: Vec<(String, String, bool, u32)> = self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT body, secret, enabled, consecutive_failures FROM subscriptions ORDER BY id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        rows.into_iter()
            .map(|(body, secret, enabled, failures)| {
                #[derive(serde::Deserialize)]
                struct Stored {
                    id: String,
                    url: String,
                    event_types: Vec<String>,
                    filter: crate::records::SubscriptionFilter,
                    created_at: i64,
                }
                let stored: Stored = serde_json::from_str(&body)?;
                Ok(Subscription {
                    id: stored.id,
                    url: stored.url,
                    event_types: stored.event_types,
                    filter: stored.filter,
                    secret,
                    enabled,
                    consecutive_failures: failures,
                    created_at: Millis(stored.created_at),
                })
            })
            .collect()
    }

    fn deliveries(
        &self,
        subscription_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE (?1 IS NULL OR subscription_id = ?1) ORDER BY created_at, id LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![subscription_id, limit as i64], delivery_from)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn delivery(&self, id: &str) -> Result<Option<Delivery>, ActError> {
        self.with(|connection| {
            Ok(connection
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"
                ))?
                .query_row([id], delivery_from)
                .optional()?)
        })
    }

    fn due_deliveries(&self, now: Millis, limit: usize) -> Result<Vec<Delivery>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {} FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
                 WHERE d.status = 'pending' AND d.next_attempt_at <= ?1 AND s.enabled
                 ORDER BY d.next_attempt_at, d.id LIMIT ?2",
                DELIVERY_COLUMNS
                    .split(", ")
                    .map(|column| format!("d.{column}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
            let rows = statement.query_map(params![now.0, limit as i64], delivery_from)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn earliest_pending(&self) -> Result<Option<Millis>, ActError> {
        self.with(|connection| {
            let at: Option<i64> = connection.query_row(
                "SELECT min(d.next_attempt_at) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
                 WHERE d.status = 'pending' AND s.enabled",
                [],
                |row| row.get(0),
            )?;
            Ok(at.map(Millis))
        })
    }

    fn record_attempt(
        &self,
        attempt: &Attempt,
        delivery: &Delivery,
        succeeded: bool,
        disable_after: u32,
    ) -> Result<(), ActError> {
        self.with(|connection| {
            let transaction = connection.transaction()?;
            transaction.execute(
                "INSERT INTO delivery_attempts (delivery_id, at, status_code, latency_ms, error) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![attempt.delivery_id, attempt.at.0, attempt.status_code, attempt.latency_ms as i64, attempt.error],
            )?;
            transaction.execute(
                "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_error = ?5 WHERE id = ?1",
                params![
                    delivery.id,
                    delivery.status.as_str(),
                    delivery.attempts,
                    delivery.next_attempt_at.0,
                    delivery.last_error
                ],
            )?;
            if succeeded {
                transaction.execute(
                    "UPDATE subscriptions SET consecutive_failures = 0 WHERE id = ?1",
                    [&delivery.subscription_id],
                )?;
            } else {
                transaction.execute(
                    "UPDATE subscriptions SET consecutive_failures = consecutive_failures + 1,
                     enabled = enabled AND consecutive_failures + 1 < ?2 WHERE id = ?1",
                    params![delivery.subscription_id, disable_after],
                )?;
            }
            transaction.commit()?;
            Ok(())
        })
    }

    fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT delivery_id, at, status_code, latency_ms, error FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY seq",
            )?;
            let rows = statement.query_map([delivery_id], |row| {
                Ok(Attempt {
                    delivery_id: row.get(0)?,
                    at: millis(row, 1)?,
                    status_code: row.get(2)?,
                    latency_ms: row.get::<_, i64>(3)? as u64,
                    error: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn redeliver(&self, id: &str, now: Millis) -> Result<Delivery, ActError> {
        self.with(|connection| {
            let changed = connection.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, created_at = ?2 WHERE id = ?1",
                params![id, now.0],
            )?;
            if changed == 0 {
                return Err(ActError::NotFound(format!("delivery {id}")));
            }
            Ok(connection
                .prepare_cached(&format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"))?
                .query_row([id], delivery_from)?)
        })
    }

    fn command(&self, id: &str) -> Result<Option<Command>, ActError> {
        self.with(|connection| {
            Ok(connection
                .prepare_cached(&format!(
                    "SELECT {COMMAND_COLUMNS} FROM commands WHERE id = ?1"
                ))?
                .query_row([id], command_from)
                .optional()?)
        })
    }

    fn commands(
        &self,
        sensor_id: Option<&str>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Result<Vec<Command>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands WHERE (?1 IS NULL OR sensor_id = ?1) AND (?2 IS NULL OR status = ?2) ORDER BY seq LIMIT ?3"
            ))?;
            let rows = statement.query_map(params![sensor_id, status.map(CommandStatus::as_str), limit as i64], command_from)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn undelivered_commands(&self, sensor_id: Option<&str>) -> Result<Vec<Command>, ActError> {
        self.with(|connection| {
            let mut statement = connection.prepare_cached(&format!(
                "SELECT {COMMAND_COLUMNS} FROM commands WHERE (?1 IS NULL OR sensor_id = ?1) AND status IN ('queued', 'sent') ORDER BY seq"
            ))?;
            let rows = statement.query_map(params![sensor_id], command_from)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
