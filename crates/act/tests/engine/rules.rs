use audrey_act::{AlertFilter, AlertStatus, EventFilter};

use super::helpers::{TestEngine, reading};

fn hot_rule(test: &TestEngine, for_seconds: u64) -> String {
    test.rule(serde_json::json!({
        "name": "too hot", "scope": {"type": "kind", "id": "climate"}, "metric": "temperature",
        "condition": ">", "threshold": 30, "clear_threshold": 28, "for_seconds": for_seconds, "severity": "major"
    }))
}

fn alerts(test: &TestEngine) -> Vec<audrey_act::Alert> {
    test.engine
        .alerts(&AlertFilter {
            limit: 1000,
            ..AlertFilter::default()
        })
        .unwrap()
}

fn count_events(test: &TestEngine, kind: &str) -> usize {
    test.engine
        .events(&EventFilter {
            kind: Some(kind.into()),
            limit: 100_000,
            ..EventFilter::default()
        })
        .unwrap()
        .len()
}

#[test]
fn an_alert_is_raised_only_after_the_condition_held_for_the_whole_duration() {
    let test = TestEngine::new(1);
    hot_rule(&test, 300);
    test.send(&[
        reading("s0", 0, "temperature", 31.0),
        reading("s0", 120, "temperature", 32.0),
    ]);
    assert!(alerts(&test).is_empty(), "two minutes above is not five");
    // A dip below the threshold restarts the episode.
    test.send(&[
        reading("s0", 180, "temperature", 29.0),
        reading("s0", 240, "temperature", 31.0),
    ]);
    test.send(&[reading("s0", 480, "temperature", 31.0)]);
    assert!(alerts(&test).is_empty(), "four minutes since the dip");
    let raising = reading("s0", 540, "temperature", 33.0);
    test.send(std::slice::from_ref(&raising));
    let raised = alerts(&test);
    assert_eq!(raised.len(), 1);
    assert_eq!(
        raised[0].raised_reading_id.as_deref(),
        Some(raising.id.0.to_string().as_str())
    );
    assert_eq!(raised[0].status, AlertStatus::Active);
}

#[test]
fn hysteresis_keeps_one_alert_until_the_value_falls_below_the_clear_threshold() {
    let test = TestEngine::new(1);
    hot_rule(&test, 0);
    let values = [31.0, 29.0, 30.5, 28.5, 31.0, 29.5, 27.0, 27.5, 29.0];
    let readings: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(index, value)| reading("s0", index as i64 * 60, "temperature", *value))
        .collect();
    test.send(&readings);
    let all = alerts(&test);
    assert_eq!(
        all.len(),
        1,
        "flapping around 30 must not raise again: {all:?}"
    );
    assert_eq!(all[0].status, AlertStatus::Cleared);
    assert_eq!(
        all[0].cleared_reading_id.as_deref(),
        Some(readings[6].id.0.to_string().as_str())
    );
    assert_eq!(count_events(&test, "alert.raised"), 1);
    assert_eq!(count_events(&test, "alert.cleared"), 1);
}

#[test]
fn readings_arriving_out_of_order_are_evaluated_in_read_at_order_and_late_ones_change_nothing() {
    let test = TestEngine::new(1);
    hot_rule(&test, 120);
    // One batch in scrambled order: sorted by read_at it is 31 (0 s), 31 (60 s), 31 (120 s).
    test.send(&[
        reading("s0", 120, "temperature", 31.0),
        reading("s0", 0, "temperature", 31.0),
        reading("s0", 60, "temperature", 31.0),
    ]);
    assert_eq!(alerts(&test).len(), 1);
    // A late reading measured before the newest one cannot clear the alert.
    test.send(&[reading("s0", 90, "temperature", 20.0)]);
    assert_eq!(alerts(&test)[0].status, AlertStatus::Active);
    test.send(&[reading("s0", 180, "temperature", 20.0)]);
    assert_eq!(alerts(&test)[0].status, AlertStatus::Cleared);
}

#[test]
fn a_no_data_rule_raises_after_the_silence_and_clears_on_the_next_reading() {
    let test = TestEngine::new(2);
    test.rule(serde_json::json!({
        "name": "silent", "scope": {"type": "sensor", "id": "s0"}, "no_data_seconds": 600, "severity": "critical"
    }));
    test.send(&[reading("s0", 0, "temperature", 20.0)]);
    test.advance(599);
    test.engine.tick().unwrap();
    assert!(alerts(&test).is_empty());
    test.advance(2);
    test.engine.tick().unwrap();
    test.engine.tick().unwrap();
    let raised = alerts(&test);
    assert_eq!(
        raised.len(),
        1,
        "one alert for one silence, however many ticks"
    );
    assert_eq!(raised[0].sensor_id, "s0");
    test.send(&[reading("s0", 700, "temperature", 20.0)]);
    assert_eq!(alerts(&test)[0].status, AlertStatus::Cleared);
}

#[test]
fn an_alert_can_be_acknowledged_and_then_clears() {
    let test = TestEngine::new(1);
    hot_rule(&test, 0);
    test.send(&[reading("s0", 0, "temperature", 35.0)]);
    let id = alerts(&test)[0].id.clone();
    let acknowledged = test.engine.acknowledge_alert(&id).unwrap();
    assert_eq!(acknowledged.status, AlertStatus::Acknowledged);
    assert!(acknowledged.acknowledged_at.is_some());
    test.send(&[reading("s0", 60, "temperature", 20.0)]);
    let cleared = test.engine.alert(&id).unwrap();
    assert_eq!(cleared.status, AlertStatus::Cleared);
    assert!(matches!(
        test.engine.acknowledge_alert(&id),
        Err(audrey_act::ActError::Conflict(_))
    ));
}

#[test]
fn rule_state_survives_a_restart_mid_episode() {
    let mut test = TestEngine::new(1);
    hot_rule(&test, 300);
    test.send(&[reading("s0", 0, "temperature", 31.0)]);
    test.restart();
    test.send(&[reading("s0", 300, "temperature", 31.0)]);
    assert_eq!(
        alerts(&test).len(),
        1,
        "the pending episode started before the restart"
    );
    test.restart();
    test.send(&[reading("s0", 360, "temperature", 32.0)]);
    assert_eq!(
        alerts(&test).len(),
        1,
        "still the same episode after another restart"
    );
    test.send(&[reading("s0", 420, "temperature", 20.0)]);
    assert_eq!(alerts(&test)[0].status, AlertStatus::Cleared);
    assert_eq!(count_events(&test, "alert.raised"), 1);
    assert_eq!(count_events(&test, "alert.cleared"), 1);
}

#[test]
fn many_rules_over_many_sensors_raise_and_clear_each_alert_exactly_once() {
    let test = TestEngine::new(200);
    for sensor in 0..200 {
        for threshold in [30.0, 40.0, 50.0] {
            test.rule(serde_json::json!({
                "scope": {"type": "sensor", "id": format!("s{sensor}")}, "metric": "temperature",
                "condition": ">=", "threshold": threshold, "severity": "minor"
            }));
        }
    }
    // Only the "all" rule and the three per-sensor rules see each reading.
    test.rule(serde_json::json!({"scope": {"type": "all"}, "metric": "temperature", "condition": "<", "threshold": -10, "severity": "warning"}));
    let mut batch = Vec::new();
    for step in 0..6 {
        for sensor in 0..200 {
            // 20, 45, 45, 20, 35, 20: raises 30 and 40 twice each, 50 never.
            let value = [20.0, 45.0, 45.0, 20.0, 35.0, 20.0][step];
            batch.push(reading(
                &format!("s{sensor}"),
                step as i64 * 60,
                "temperature",
                value,
            ));
        }
    }
    test.send(&batch);
    let all = alerts(&test);
    assert_eq!(all.len(), 200 * 3, "per sensor: 30 twice, 40 once");
    assert!(all.iter().all(|alert| alert.status == AlertStatus::Cleared));
    assert_eq!(count_events(&test, "alert.raised"), 600);
    assert_eq!(count_events(&test, "alert.cleared"), 600);
}

#[test]
fn a_rule_with_bad_fields_is_refused_with_each_field_named() {
    let test = TestEngine::new(1);
    let input: audrey_act::RuleInput = serde_json::from_value(serde_json::json!({
        "scope": {"type": "sensor", "id": ""}, "condition": "outside", "severity": "major"
    }))
    .unwrap();
    let Err(audrey_act::ActError::Invalid(errors)) = test.engine.create_rule(input) else {
        panic!("expected invalid")
    };
    let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
    assert_eq!(paths, ["metric", "range", "scope.id"]);
}
