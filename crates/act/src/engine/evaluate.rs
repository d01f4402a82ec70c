//! One evaluation step: a committed batch (`observe`) or the passing of time (`tick`).
//!
//! Rules are evaluated per sensor in `read_at` order. A batch is sorted by
//! `(sensor, read_at, id)` first; a reading measured before the newest one a (rule, sensor)
//! state has already seen is late: it is stored and quality-checked, but it cannot raise or
//! clear an alert, because the episode it belongs to has already been decided. That keeps
//! each episode to one alert, raised once and cleared once, whatever order readings arrive in.

use std::collections::HashMap;

use audrey_ingest::CommittedBatch;
use audrey_model::{Millis, Reading};

use super::{Engine, RuleState, State};
use crate::ActError;
use crate::health::{HealthOptions, SensorHealth};
use crate::persistence::{Changes, RuleStateRow};
use crate::records::{
    Alert, AlertStatus, Command, CommandStatus, Event, HealthStatus, StatusChange,
};
use crate::rules::{Check, Rule};

impl Engine {
    /// Evaluates one committed batch.
    pub fn observe(&self, batch: &CommittedBatch) -> Result<(), ActError> {
        self.evaluate_batch(batch, true)
    }

    /// `live` is false for a batch the replay found in the store; the test failpoint only
    /// holds live ones.
    pub(crate) fn evaluate_batch(
        &self,
        batch: &CommittedBatch,
        live: bool,
    ) -> Result<(), ActError> {
        let now = self.clock.now();
        let mut changes = Changes::default();
        let mut new_commands = Vec::new();
        {
            let mut state = self.lock()?;
            let state = &mut *state;
            let options = &self.options.health;
            for rejection in &batch.rejections {
                let Some(sensor_id) = rejection.sensor_id.as_deref() else {
                    continue;
                };
                let Some(sensor) = self.registry.cached_sensor(sensor_id) else {
                    continue;
                };
                let health = health_of(
                    &mut state.sensors,
                    sensor_id,
                    sensor.expected_interval_seconds,
                    now,
                    options,
                );
                health.record_rejection(now, options);
                update_fitness(health, sensor_id, now, options, &mut changes);
            }
            let mut readings: Vec<&Reading> = batch.readings.iter().collect();
            readings.sort_by(|a, b| {
                (&a.sensor_id, a.read_at, a.id.0).cmp(&(&b.sensor_id, b.read_at, b.id.0))
            });
            let State {
                rules,
                rule_states,
                sensors,
                ..
            } = &mut *state;
            // Sorted by sensor: the registry and the health map are asked once per sensor of
            // the batch, not once per reading.
            for run in readings.chunk_by(|a, b| a.sensor_id == b.sensor_id) {
                let sensor_id = run[0].sensor_id.as_str();
                let sensor = self.registry.cached_sensor(sensor_id);
                let kind = sensor.as_ref().map(|sensor| sensor.kind.as_str());
                let gps = kind.is_some_and(names_gps);
                let interval = sensor
                    .as_ref()
                    .and_then(|sensor| sensor.expected_interval_seconds);
                let health = health_of(sensors, sensor_id, interval, now, options);
                for reading in run {
                    let findings = health.record_reading(reading, gps, now, options);
                    for finding in findings {
                        changes.events.push(Event::new(
                            "quality.finding",
                            now,
                            Some(sensor_id),
                            serde_json::json!({
                                "check": finding.check,
                                "metric": finding.metric,
                                "detail": finding.detail,
                                "reading_ids": finding.reading_ids,
                            }),
                        ));
                    }
                    update_fitness(health, sensor_id, now, options, &mut changes);
                    if rules.is_empty() {
                        continue;
                    }
                    let location = reading.location_id.as_str();
                    for rule in rules.matching(sensor_id, location, kind) {
                        let key = (rule.id.clone(), sensor_id.to_string());
                        let rule_state = rule_states.entry(key).or_default();
                        let before = (rule_state.pending_since, rule_state.alert_id.is_some());
                        evaluate(
                            rule,
                            rule_state,
                            reading,
                            now,
                            &mut changes,
                            &mut new_commands,
                        );
                        // Written when the episode moves, not for every reading's read_at:
                        // after a restart last_read_at may be older, so a late reading may
                        // count once more.
                        if (rule_state.pending_since, rule_state.alert_id.is_some()) != before {
                            changes
                                .rule_states
                                .push(row(&rule.id, sensor_id, rule_state));
                        }
                    }
                }
            }
            finish_step(state, &mut changes, now);
            changes.evaluated = batch.readings.iter().map(|reading| reading.id).collect();
            if let Some(highest) = changes.evaluated.iter().max() {
                state.high_water = state.high_water.max(Some(*highest));
            }
            if let Some(marker) = &self.hold_before_commit
                && live
                && !changes.evaluated.is_empty()
            {
                hold_forever(marker);
            }
            self.commit(&changes)?;
        }
        self.offer_commands(new_commands);
        Ok(())
    }

    /// Offline sensors, no-data rules, command expiry and re-offering queued commands.
    pub fn tick(&self) -> Result<(), ActError> {
        let now = self.clock.now();
        let mut changes = Changes::default();
        {
            let mut state = self.lock()?;
            let state = &mut *state;
            let options = &self.options.health;
            let no_data = state.rules.has_no_data_rules();
            let State {
                rules,
                rule_states,
                sensors,
                ..
            } = state;
            for (sensor_id, health) in sensors.iter_mut() {
                if matches!(health.status, Some(HealthStatus::Decommissioned)) {
                    continue;
                }
                if health.is_silent(now, options) && health.status != Some(HealthStatus::Offline) {
                    let silent = now.0 - health.last_seen.0;
                    transition(
                        health,
                        sensor_id,
                        HealthStatus::Offline,
                        format!("no reading for {} s", silent / 1000),
                        now,
                        &mut changes,
                    );
                }
                if !no_data {
                    continue;
                }
                let sensor = self.registry.cached_sensor(sensor_id);
                let location = sensor
                    .as_ref()
                    .map_or("", |sensor| sensor.location_id.as_str());
                let kind = sensor.as_ref().map(|sensor| sensor.kind.as_str());
                for rule in rules.matching(sensor_id, location, kind) {
                    let Check::NoData { for_ms } = rule.check else {
                        continue;
                    };
                    if now.0 - health.last_seen.0 < for_ms {
                        continue;
                    }
                    let rule_state = rule_states
                        .entry((rule.id.clone(), sensor_id.clone()))
                        .or_default();
                    if rule_state.alert_id.is_some() {
                        continue;
                    }
                    let alert = raise(rule, sensor_id, None, None, now, &mut changes);
                    rule_state.alert_id = Some(alert);
                    changes
                        .rule_states
                        .push(row(&rule.id, sensor_id, rule_state));
                }
            }
            finish_step(state, &mut changes, now);
            self.commit(&changes)?;
        }
        self.forget_old_evaluations()?;
        self.expire_and_reoffer_commands(now)
    }
}

/// The test failpoint: announce, then never write this batch's decisions.
fn hold_forever(marker: &std::path::Path) -> ! {
    if let Err(error) = std::fs::write(marker, b"held") {
        tracing::error!(%error, "writing the act failpoint marker");
    }
    loop {
        std::thread::park();
    }
}

/// A sensor kind naming GPS in any letter case ("gps", "GPS-tracker", ...).
fn names_gps(kind: &str) -> bool {
    kind.as_bytes()
        .windows(3)
        .any(|window| window.eq_ignore_ascii_case(b"gps"))
}

fn health_of<'a>(
    sensors: &'a mut HashMap<String, SensorHealth, foldhash::fast::RandomState>,
    sensor_id: &str,
    interval: Option<u32>,
    now: Millis,
    options: &HealthOptions,
) -> &'a mut SensorHealth {
    // Looked up by `&str` first: the owned key is made only for a sensor seen the first time,
    // not for every reading.
    if !sensors.contains_key(sensor_id) {
        sensors.insert(
            sensor_id.to_string(),
            SensorHealth::new(
                None,
                now,
                interval.unwrap_or(options.default_interval_seconds),
            ),
        );
    }
    sensors
        .get_mut(sensor_id)
        .expect("the sensor's health was just inserted")
}

fn update_fitness(
    health: &mut SensorHealth,
    sensor_id: &str,
    now: Millis,
    options: &HealthOptions,
    changes: &mut Changes,
) {
    if health.status == Some(HealthStatus::Decommissioned) {
        return;
    }
    let (wanted, reason) = health.fitness(options);
    if health.status != Some(wanted) {
        let reason = match health.status {
            Some(HealthStatus::Offline) if wanted == HealthStatus::Online => {
                "a reading arrived".to_string()
            }
            None => "first reading".to_string(),
            _ => reason.into_owned(),
        };
        transition(health, sensor_id, wanted, reason, now, changes);
    }
}

pub(crate) fn transition(
    health: &mut SensorHealth,
    sensor_id: &str,
    to: HealthStatus,
    reason: String,
    now: Millis,
    changes: &mut Changes,
) {
    let from = health.status;
    health.status = Some(to);
    changes.events.push(Event::new(
        "sensor.status_changed",
        now,
        Some(sensor_id),
        serde_json::json!({ "from": from.map(HealthStatus::as_str), "to": to.as_str(), "reason": reason }),
    ));
    changes.status_changes.push(StatusChange {
        sensor_id: sensor_id.to_string(),
        from,
        to,
        reason,
        at: now,
    });
}

fn row(rule_id: &str, sensor_id: &str, state: &RuleState) -> RuleStateRow {
    RuleStateRow {
        rule_id: rule_id.to_string(),
        sensor_id: sensor_id.to_string(),
        last_read_at: state.last_read_at,
        pending_since: state.pending_since,
        alert_id: state.alert_id.clone(),
    }
}

/// Moves one (rule, sensor) state forward by one reading.
fn evaluate(
    rule: &Rule,
    state: &mut RuleState,
    reading: &Reading,
    now: Millis,
    changes: &mut Changes,
    new_commands: &mut Vec<Command>,
) {
    // Text only when an alert is raised or cleared, not for every evaluation.
    let reading_id = || Some(reading.id.0.to_string());
    match &rule.check {
        Check::NoData { .. } => {
            if state
                .last_read_at
                .is_none_or(|last| reading.read_at >= last)
            {
                state.last_read_at = Some(reading.read_at);
            }
            if let Some(alert_id) = state.alert_id.take() {
                clear(
                    rule,
                    reading.sensor_id.as_str(),
                    alert_id,
                    reading_id(),
                    now,
                    changes,
                );
            }
        }
        Check::Threshold { metric, for_ms, .. } => {
            let Some(value) = reading.values.get(metric) else {
                return;
            };
            if state
                .last_read_at
                .is_some_and(|last| reading.read_at < last)
            {
                return; // late: see the module comment
            }
            state.last_read_at = Some(reading.read_at);
            match state.alert_id.take() {
                Some(alert_id) => {
                    if rule.check.clears(value) {
                        clear(
                            rule,
                            reading.sensor_id.as_str(),
                            alert_id,
                            reading_id(),
                            now,
                            changes,
                        );
                    } else {
                        state.alert_id = Some(alert_id);
                    }
                }
                None => {
                    if !rule.check.raises(value) {
                        state.pending_since = None;
                        return;
                    }
                    let since = *state.pending_since.get_or_insert(reading.read_at);
                    if reading.read_at.0 - since.0 >= *for_ms {
                        state.pending_since = None;
                        let sensor_id = reading.sensor_id.as_str();
                        let alert_id =
                            raise(rule, sensor_id, reading_id(), Some(value), now, changes);
                        if let Some(action) = &rule.input.action {
                            let command = Command {
                                id: uuid::Uuid::now_v7().to_string(),
                                sensor_id: sensor_id.to_string(),
                                name: action.name.clone(),
                                payload: action.payload.clone(),
                                status: CommandStatus::Queued,
                                created_at: now,
                                expires_at: Millis(now.0 + action.ttl_seconds as i64 * 1000),
                                updated_at: now,
                                result: None,
                                alert_id: Some(alert_id.clone()),
                            };
                            changes
                                .events
                                .push(crate::commands::updated_event(&command));
                            changes.commands.push(command.clone());
                            new_commands.push(command);
                        }
                        state.alert_id = Some(alert_id);
                    }
                }
            }
        }
    }
}

fn raise(
    rule: &Rule,
    sensor_id: &str,
    reading_id: Option<String>,
    value: Option<f64>,
    now: Millis,
    changes: &mut Changes,
) -> String {
    let alert = Alert {
        id: uuid::Uuid::now_v7().to_string(),
        rule_id: rule.id.clone(),
        sensor_id: sensor_id.to_string(),
        severity: rule.input.severity,
        status: AlertStatus::Active,
        raised_at: now,
        raised_reading_id: reading_id,
        raised_value: value,
        acknowledged_at: None,
        cleared_at: None,
        cleared_reading_id: None,
    };
    let mut data = serde_json::to_value(&alert).unwrap_or_default();
    data["rule_name"] = serde_json::Value::String(rule.input.name.clone());
    changes
        .events
        .push(Event::new("alert.raised", now, Some(sensor_id), data));
    let id = alert.id.clone();
    changes.raised.push(alert);
    id
}

pub(crate) fn clear(
    rule: &Rule,
    sensor_id: &str,
    alert_id: String,
    reading_id: Option<String>,
    now: Millis,
    changes: &mut Changes,
) {
    changes.events.push(Event::new(
        "alert.cleared",
        now,
        Some(sensor_id),
        serde_json::json!({
            "id": alert_id,
            "rule_id": rule.id,
            "rule_name": rule.input.name,
            "sensor_id": sensor_id,
            "severity": rule.input.severity.as_str(),
            "cleared_at": now,
            "cleared_reading_id": reading_id,
        }),
    ));
    changes.cleared.push((alert_id, now, reading_id));
}

/// Turns each event into one stored delivery per subscription that wants it.
pub(crate) fn finish_step(state: &State, changes: &mut Changes, now: Millis) {
    for event in &changes.events {
        for subscription in state
            .subscriptions
            .iter()
            .filter(|subscription| subscription.wants(event))
        {
            changes
                .deliveries
                .push(crate::webhooks::new_delivery(subscription, event, now));
        }
    }
}
