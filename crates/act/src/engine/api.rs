//! What the API asks of the engine: rules, alerts, events, the status log, decommissioning,
//! webhook subscriptions and deliveries. Methods block (they touch `act.db`).

use audrey_model::{FieldError, Reason};

use super::Engine;
use super::evaluate::{clear, finish_step, transition};
use crate::ActError;
use crate::health::SensorHealth;
use crate::persistence::{AlertFilter, Changes, EventFilter};
use crate::records::{
    Alert, Attempt, Delivery, EVENT_TYPES, Event, HealthStatus, StatusChange, Subscription,
    SubscriptionFilter,
};
use crate::rules::{Rule, RuleInput};

/// A subscription as the API accepts it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    pub url: String,
    pub event_types: Vec<String>,
    #[serde(default)]
    pub filter: SubscriptionFilter,
    pub secret: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

impl Engine {
    pub fn create_rule(&self, input: RuleInput) -> Result<Rule, ActError> {
        let now = self.clock.now();
        let rule = input.parse(uuid::Uuid::now_v7().to_string(), now, now)?;
        self.store.put_rule(&rule)?;
        self.lock()?.rules.insert(rule.clone());
        Ok(rule)
    }

    /// Replaces a rule's definition; its per-sensor states and open alerts carry on.
    pub fn replace_rule(&self, id: &str, input: RuleInput) -> Result<Rule, ActError> {
        let existing = self.rule(id)?;
        let rule = input.parse(id.to_string(), existing.created_at, self.clock.now())?;
        self.store.put_rule(&rule)?;
        self.lock()?.rules.insert(rule.clone());
        Ok(rule)
    }

    /// Deletes a rule and clears its open alerts.
    pub fn delete_rule(&self, id: &str) -> Result<(), ActError> {
        let now = self.clock.now();
        let mut state = self.lock()?;
        let rule = state
            .rules
            .remove(id)
            .ok_or_else(|| ActError::NotFound(format!("rule {id}")))?;
        let mut changes = Changes::default();
        state
            .rule_states
            .retain(|(rule_id, sensor_id), rule_state| {
                if rule_id != id {
                    return true;
                }
                if let Some(alert_id) = rule_state.alert_id.take() {
                    clear(&rule, sensor_id, alert_id, None, now, &mut changes);
                }
                false
            });
        finish_step(&state, &mut changes, now);
        self.commit(&changes)?;
        self.store.delete_rule(id)?;
        Ok(())
    }

    pub fn rule(&self, id: &str) -> Result<Rule, ActError> {
        self.lock()?
            .rules
            .rules
            .get(id)
            .map(|rule| (**rule).clone())
            .ok_or_else(|| ActError::NotFound(format!("rule {id}")))
    }

    pub fn rules(&self) -> Result<Vec<Rule>, ActError> {
        let mut rules: Vec<Rule> = self
            .lock()?
            .rules
            .rules
            .values()
            .map(|rule| (**rule).clone())
            .collect();
        rules.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(rules)
    }

    pub fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, ActError> {
        self.store.alerts(filter)
    }

    pub fn alert(&self, id: &str) -> Result<Alert, ActError> {
        self.store
            .alert(id)?
            .ok_or_else(|| ActError::NotFound(format!("alert {id}")))
    }

    pub fn acknowledge_alert(&self, id: &str) -> Result<Alert, ActError> {
        self.store.acknowledge_alert(id, self.clock.now())
    }

    pub fn events(&self, filter: &EventFilter) -> Result<Vec<(i64, Event)>, ActError> {
        self.store.events(filter)
    }

    pub fn status_log(
        &self,
        sensor_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StatusChange>, ActError> {
        self.store.status_log(sensor_id, limit)
    }

    /// The current status of a sensor, if the engine has seen or loaded it.
    pub fn status(&self, sensor_id: &str) -> Result<Option<HealthStatus>, ActError> {
        Ok(self
            .lock()?
            .sensors
            .get(sensor_id)
            .and_then(|health| health.status))
    }

    /// Sets or lifts the operator's `decommissioned` status.
    pub fn set_decommissioned(
        &self,
        sensor_id: &str,
        decommissioned: bool,
    ) -> Result<HealthStatus, ActError> {
        let now = self.clock.now();
        let mut state = self.lock()?;
        let interval = self
            .registry
            .cached_sensor(sensor_id)
            .ok_or_else(|| ActError::NotFound(format!("sensor {sensor_id}")))?
            .expected_interval_seconds
            .unwrap_or(self.options.health.default_interval_seconds);
        let health = state
            .sensors
            .entry(sensor_id.to_string())
            .or_insert_with(|| SensorHealth::new(None, now, interval));
        let mut changes = Changes::default();
        let is_decommissioned = health.status == Some(HealthStatus::Decommissioned);
        if decommissioned == is_decommissioned {
            return Ok(health.status.unwrap_or(HealthStatus::Online)); // nothing to change
        }
        let target = if decommissioned {
            (
                HealthStatus::Decommissioned,
                "decommissioned by an operator",
            )
        } else if health.is_silent(now, &self.options.health) {
            (
                HealthStatus::Offline,
                "returned to service by an operator; no recent reading",
            )
        } else {
            (HealthStatus::Online, "returned to service by an operator")
        };
        transition(
            health,
            sensor_id,
            target.0,
            target.1.to_string(),
            now,
            &mut changes,
        );
        finish_step(&state, &mut changes, now);
        self.commit(&changes)?;
        Ok(target.0)
    }

    pub fn create_subscription(&self, input: SubscriptionInput) -> Result<Subscription, ActError> {
        let mut errors = Vec::new();
        match reqwest::Url::parse(&input.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => errors.push(FieldError::new(
                "url",
                Reason::InvalidFormat,
                "must be an absolute http or https URL",
            )),
        }
        if input.event_types.is_empty() {
            errors.push(FieldError::new(
                "event_types",
                Reason::Empty,
                format!("name at least one of {}", EVENT_TYPES.join(", ")),
            ));
        }
        for (index, kind) in input.event_types.iter().enumerate() {
            if !EVENT_TYPES.contains(&kind.as_str()) {
                errors.push(FieldError::new(
                    format!("event_types[{index}]"),
                    Reason::InvalidFormat,
                    format!("{kind:?} is not one of {}", EVENT_TYPES.join(", ")),
                ));
            }
        }
        if input.secret.len() < 16 {
            errors.push(FieldError::new(
                "secret",
                Reason::OutOfRange,
                "must be at least 16 characters",
            ));
        }
        if !errors.is_empty() {
            return Err(ActError::Invalid(errors));
        }
        let subscription = Subscription {
            id: uuid::Uuid::now_v7().to_string(),
            url: input.url,
            event_types: input.event_types,
            filter: input.filter,
            secret: input.secret,
            enabled: input.enabled,
            consecutive_failures: 0,
            created_at: self.clock.now(),
        };
        self.store.put_subscription(&subscription)?;
        self.lock()?.subscriptions.push(subscription.clone());
        Ok(subscription)
    }

    /// Enables or disables a subscription; enabling resets its failure count.
    pub fn set_subscription_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<Subscription, ActError> {
        let mut subscription = self.subscription(id)?;
        subscription.enabled = enabled;
        if enabled {
            subscription.consecutive_failures = 0;
        }
        self.store.put_subscription(&subscription)?;
        self.reload_subscription(id)?;
        self.deliveries_ready.notify_one();
        Ok(subscription)
    }

    pub fn delete_subscription(&self, id: &str) -> Result<(), ActError> {
        if !self.store.delete_subscription(id)? {
            return Err(ActError::NotFound(format!("webhook subscription {id}")));
        }
        self.lock()?
            .subscriptions
            .retain(|subscription| subscription.id != id);
        Ok(())
    }

    pub fn subscription(&self, id: &str) -> Result<Subscription, ActError> {
        self.lock()?
            .subscriptions
            .iter()
            .find(|subscription| subscription.id == id)
            .cloned()
            .ok_or_else(|| ActError::NotFound(format!("webhook subscription {id}")))
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, ActError> {
        Ok(self.lock()?.subscriptions.clone())
    }

    /// Re-reads one subscription (its failure count and enabled flag move in `act.db`).
    pub(crate) fn reload_subscription(&self, id: &str) -> Result<(), ActError> {
        let fresh = self
            .store
            .subscriptions()?
            .into_iter()
            .find(|subscription| subscription.id == id);
        let mut state = self.lock()?;
        state
            .subscriptions
            .retain(|subscription| subscription.id != id);
        if let Some(fresh) = fresh {
            state.subscriptions.push(fresh);
        }
        Ok(())
    }

    pub fn deliveries(
        &self,
        subscription_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, ActError> {
        self.store.deliveries(subscription_id, limit)
    }

    pub fn delivery_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, ActError> {
        if self.store.delivery(delivery_id)?.is_none() {
            return Err(ActError::NotFound(format!("delivery {delivery_id}")));
        }
        self.store.attempts(delivery_id)
    }

    /// Makes a delivery pending again, due now, whatever its state.
    pub fn redeliver(&self, delivery_id: &str) -> Result<Delivery, ActError> {
        let delivery = self.store.redeliver(delivery_id, self.clock.now())?;
        self.deliveries_ready.notify_one();
        Ok(delivery)
    }
}
