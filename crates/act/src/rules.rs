//! Rules: what an operator asks Audrey to watch, parsed from JSON into typed values, and the
//! index that finds the rules applying to one reading without looking at the others.
//!
//! A rule is either a threshold rule (metric, condition, threshold, `for`, clear threshold) or
//! a "no data for D" rule. The index keys rules by scope (sensor, location, kind, all), so a
//! reading costs four hash look-ups plus the rules that really apply to it, however many rules
//! exist for other sensors.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use audrey_model::{FieldError, Millis, Reason};

use crate::ActError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Scope {
    Sensor(String),
    Location(String),
    Kind(String),
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Condition {
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

/// A command a rule issues to the sensor when it raises an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    pub name: String,
    #[serde(default)]
    pub payload: serde_json::Value,
    pub ttl_seconds: u64,
}

/// The longest `for_seconds` or `no_data_seconds` a rule may ask for: one year.
pub const MAX_DURATION_SECONDS: u64 = 365 * 86_400;
/// The longest time to live of a command a rule issues (the same bound as the API's).
pub const MAX_COMMAND_TTL_SECONDS: u64 = 30 * 86_400;

/// Seconds as milliseconds, saturating (callers bound the input first).
fn duration_ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// A rule as the API accepts and answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    #[serde(default)]
    pub name: String,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `[low, high]` for `outside`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
    #[serde(default)]
    pub for_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_threshold: Option<f64>,
    pub severity: Severity,
    /// Makes this a "no data for D" rule: no metric, no condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<CommandAction>,
}

/// What a rule checks.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    Threshold {
        metric: String,
        condition: Condition,
        threshold: f64,
        high: f64,
        clear: Option<f64>,
        for_ms: i64,
    },
    NoData {
        for_ms: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    #[serde(flatten)]
    pub input: RuleInput,
    pub created_at: Millis,
    pub updated_at: Millis,
    #[serde(skip)]
    pub check: Check,
}

impl RuleInput {
    /// Checks every field and answers each problem with its path and reason.
    pub fn parse(self, id: String, created_at: Millis, now: Millis) -> Result<Rule, ActError> {
        let mut errors = Vec::new();
        let missing = |errors: &mut Vec<FieldError>, path: &str| {
            errors.push(FieldError::new(
                path,
                Reason::MissingField,
                "is required for a threshold rule",
            ));
        };
        let check = match self.no_data_seconds {
            Some(seconds) => {
                if seconds == 0 || seconds > MAX_DURATION_SECONDS {
                    errors.push(FieldError::new(
                        "no_data_seconds",
                        Reason::OutOfRange,
                        "must be between 1 and 31536000 (one year)",
                    ));
                }
                for (path, present) in [
                    ("metric", self.metric.is_some()),
                    ("condition", self.condition.is_some()),
                    ("threshold", self.threshold.is_some()),
                ] {
                    if present {
                        errors.push(FieldError::new(
                            path,
                            Reason::UnknownField,
                            "a no-data rule has no metric, condition or threshold",
                        ));
                    }
                }
                Check::NoData {
                    for_ms: duration_ms(seconds),
                }
            }
            None => {
                if self.metric.as_deref().is_none_or(str::is_empty) {
                    missing(&mut errors, "metric");
                }
                let condition = self.condition.unwrap_or(Condition::Above);
                if self.condition.is_none() {
                    missing(&mut errors, "condition");
                }
                let (threshold, high) = match (condition, self.range, self.threshold) {
                    (Condition::Outside, Some([low, high]), _) => {
                        if !(low.is_finite() && high.is_finite() && low <= high) {
                            errors.push(FieldError::new(
                                "range",
                                Reason::OutOfRange,
                                "must be [low, high] with low <= high, both finite",
                            ));
                        }
                        (low, high)
                    }
                    (Condition::Outside, None, _) => {
                        errors.push(FieldError::new(
                            "range",
                            Reason::MissingField,
                            "is required for condition outside",
                        ));
                        (0.0, 0.0)
                    }
                    (_, _, Some(threshold)) if threshold.is_finite() => (threshold, threshold),
                    (_, _, Some(_)) => {
                        errors.push(FieldError::new(
                            "threshold",
                            Reason::NonFiniteValue,
                            "must be a finite number",
                        ));
                        (0.0, 0.0)
                    }
                    (_, _, None) => {
                        missing(&mut errors, "threshold");
                        (0.0, 0.0)
                    }
                };
                if let Some(clear) = self.clear_threshold {
                    let wrong_side = match condition {
                        Condition::Above | Condition::AtLeast => clear > threshold,
                        Condition::Below | Condition::AtMost => clear < threshold,
                        Condition::Equal | Condition::Outside => true,
                    };
                    if !clear.is_finite() || wrong_side {
                        errors.push(FieldError::new(
                            "clear_threshold",
                            Reason::OutOfRange,
                            "must lie on the clearing side of the threshold (below it for > and >=, above it for < and <=; not used with == or outside)",
                        ));
                    }
                }
                Check::Threshold {
                    metric: self.metric.clone().unwrap_or_default(),
                    condition,
                    threshold,
                    high,
                    clear: self.clear_threshold,
                    for_ms: duration_ms(self.for_seconds),
                }
            }
        };
        match &self.scope {
            Scope::Sensor(id) | Scope::Location(id) | Scope::Kind(id) if id.is_empty() => {
                errors.push(FieldError::new(
                    "scope.id",
                    Reason::Empty,
                    "must name the sensor, location or kind",
                ));
            }
            _ => {}
        }
        if self.for_seconds > MAX_DURATION_SECONDS {
            errors.push(FieldError::new(
                "for_seconds",
                Reason::OutOfRange,
                "must be at most 31536000 (one year)",
            ));
        }
        if let Some(action) = &self.action {
            if action.name.is_empty() {
                errors.push(FieldError::new(
                    "action.name",
                    Reason::Empty,
                    "must name the command",
                ));
            }
            if action.ttl_seconds == 0 || action.ttl_seconds > MAX_COMMAND_TTL_SECONDS {
                errors.push(FieldError::new(
                    "action.ttl_seconds",
                    Reason::OutOfRange,
                    "must be between 1 and 2592000 (30 days)",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(ActError::Invalid(errors));
        }
        Ok(Rule {
            id,
            input: self,
            created_at,
            updated_at: now,
            check,
        })
    }
}

impl Check {
    /// True when the value is in alarm.
    pub fn raises(&self, value: f64) -> bool {
        match *self {
            Check::Threshold {
                condition,
                threshold,
                high,
                ..
            } => match condition {
                Condition::Above => value > threshold,
                Condition::AtLeast => value >= threshold,
                Condition::Below => value < threshold,
                Condition::AtMost => value <= threshold,
                Condition::Equal => value == threshold,
                Condition::Outside => value < threshold || value > high,
            },
            Check::NoData { .. } => false,
        }
    }

    /// True when an active alert may clear: past the clear threshold when one is set
    /// (hysteresis), otherwise as soon as the condition no longer holds.
    pub fn clears(&self, value: f64) -> bool {
        match *self {
            Check::Threshold {
                condition,
                clear: Some(clear),
                ..
            } => match condition {
                Condition::Above | Condition::AtLeast => value < clear,
                Condition::Below | Condition::AtMost => value > clear,
                Condition::Equal | Condition::Outside => !self.raises(value),
            },
            _ => !self.raises(value),
        }
    }
}

/// Rules keyed by scope.
#[derive(Default)]
pub struct RuleIndex {
    by_sensor: HashMap<String, Vec<Arc<Rule>>>,
    by_location: HashMap<String, Vec<Arc<Rule>>>,
    by_kind: HashMap<String, Vec<Arc<Rule>>>,
    all: Vec<Arc<Rule>>,
    pub(crate) rules: HashMap<String, Arc<Rule>>,
}

impl RuleIndex {
    pub fn insert(&mut self, rule: Rule) {
        self.remove(&rule.id);
        let rule = Arc::new(rule);
        match &rule.input.scope {
            Scope::Sensor(id) => self
                .by_sensor
                .entry(id.clone())
                .or_default()
                .push(rule.clone()),
            Scope::Location(id) => self
                .by_location
                .entry(id.clone())
                .or_default()
                .push(rule.clone()),
            Scope::Kind(id) => self
                .by_kind
                .entry(id.clone())
                .or_default()
                .push(rule.clone()),
            Scope::All => self.all.push(rule.clone()),
        }
        self.rules.insert(rule.id.clone(), rule);
    }

    pub fn remove(&mut self, id: &str) -> Option<Arc<Rule>> {
        let rule = self.rules.remove(id)?;
        let list = match &rule.input.scope {
            Scope::Sensor(key) => self.by_sensor.get_mut(key),
            Scope::Location(key) => self.by_location.get_mut(key),
            Scope::Kind(key) => self.by_kind.get_mut(key),
            Scope::All => Some(&mut self.all),
        };
        if let Some(list) = list {
            list.retain(|other| other.id != id);
        }
        Some(rule)
    }

    /// Every rule whose scope covers a sensor of this location and kind.
    pub fn matching<'a>(
        &'a self,
        sensor: &str,
        location: &str,
        kind: Option<&str>,
    ) -> impl Iterator<Item = &'a Arc<Rule>> + 'a {
        let empty: &[Arc<Rule>] = &[];
        let pick = |map: &'a HashMap<String, Vec<Arc<Rule>>>, key: Option<&str>| {
            key.and_then(|key| map.get(key))
                .map_or(empty, Vec::as_slice)
        };
        pick(&self.by_sensor, Some(sensor))
            .iter()
            .chain(pick(&self.by_location, Some(location)))
            .chain(pick(&self.by_kind, kind))
            .chain(self.all.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn has_no_data_rules(&self) -> bool {
        self.rules
            .values()
            .any(|rule| matches!(rule.check, Check::NoData { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> RuleInput {
        serde_json::from_value(json).expect("rule json")
    }

    #[test]
    fn a_clear_threshold_above_a_greater_than_threshold_is_refused() {
        let rule = input(
            serde_json::json!({"scope": {"type": "all"}, "metric": "t", "condition": ">", "threshold": 30, "clear_threshold": 31, "severity": "major"}),
        );
        let Err(ActError::Invalid(errors)) = rule.parse("r".into(), Millis(0), Millis(0)) else {
            panic!("expected invalid");
        };
        assert_eq!(errors[0].path, "clear_threshold");
    }

    #[test]
    fn durations_beyond_their_bounds_are_refused_by_field_not_overflowed() {
        let paths = |json: serde_json::Value| -> Vec<String> {
            match input(json).parse("r".into(), Millis(0), Millis(0)) {
                Err(ActError::Invalid(errors)) => errors.into_iter().map(|e| e.path).collect(),
                other => panic!("expected invalid, got {other:?}"),
            }
        };
        assert_eq!(
            paths(
                serde_json::json!({"scope": {"type": "all"}, "no_data_seconds": u64::MAX, "severity": "major"})
            ),
            ["no_data_seconds"]
        );
        assert_eq!(
            paths(
                serde_json::json!({"scope": {"type": "all"}, "metric": "t", "condition": ">", "threshold": 1,
                "for_seconds": u64::MAX, "severity": "major",
                "action": {"name": "fan_on", "ttl_seconds": MAX_COMMAND_TTL_SECONDS + 1}})
            ),
            ["for_seconds", "action.ttl_seconds"]
        );
        let longest = input(serde_json::json!({"scope": {"type": "all"}, "no_data_seconds": MAX_DURATION_SECONDS, "severity": "major"}))
            .parse("r".into(), Millis(0), Millis(0))
            .expect("one year is allowed");
        assert_eq!(
            longest.check,
            Check::NoData {
                for_ms: MAX_DURATION_SECONDS as i64 * 1000
            }
        );
    }

    #[test]
    fn hysteresis_clears_only_below_the_clear_threshold() {
        let rule = input(serde_json::json!({"scope": {"type": "all"}, "metric": "t", "condition": ">", "threshold": 30, "clear_threshold": 28, "severity": "major"}))
            .parse("r".into(), Millis(0), Millis(0))
            .expect("valid");
        assert!(rule.check.raises(30.5));
        assert!(!rule.check.clears(29.0));
        assert!(rule.check.clears(27.9));
    }

    #[test]
    fn outside_raises_beyond_either_bound() {
        let rule = input(serde_json::json!({"scope": {"type": "kind", "id": "climate"}, "metric": "t", "condition": "outside", "range": [0, 10], "severity": "minor"}))
            .parse("r".into(), Millis(0), Millis(0))
            .expect("valid");
        assert!(rule.check.raises(-1.0) && rule.check.raises(11.0) && !rule.check.raises(5.0));
    }

    #[test]
    fn the_index_finds_only_rules_whose_scope_covers_the_sensor() {
        let mut index = RuleIndex::default();
        for (id, scope) in [
            ("a", serde_json::json!({"type": "sensor", "id": "s1"})),
            ("b", serde_json::json!({"type": "location", "id": "l1"})),
            ("c", serde_json::json!({"type": "kind", "id": "climate"})),
            ("d", serde_json::json!({"type": "all"})),
            ("e", serde_json::json!({"type": "sensor", "id": "s2"})),
        ] {
            let rule = input(serde_json::json!({"scope": scope, "metric": "t", "condition": ">", "threshold": 1, "severity": "minor"}))
                .parse(id.into(), Millis(0), Millis(0))
                .expect("valid");
            index.insert(rule);
        }
        let mut found: Vec<&str> = index
            .matching("s1", "l1", Some("climate"))
            .map(|rule| rule.id.as_str())
            .collect();
        found.sort();
        assert_eq!(found, ["a", "b", "c", "d"]);
        index.remove("d");
        assert_eq!(index.matching("s9", "l9", None).count(), 0);
    }
}
