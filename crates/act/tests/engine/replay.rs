//! The replay after a crash between a readings commit and the act.db transaction: committed
//! readings the engine has no record of evaluating are evaluated at start, once.

use audrey_act::{AlertFilter, EventFilter};

use super::helpers::{TestEngine, reading};

fn hot_rule(test: &TestEngine) {
    test.rule(serde_json::json!({
        "name": "too hot", "scope": {"type": "all"}, "metric": "temperature",
        "condition": ">", "threshold": 30, "clear_threshold": 28, "severity": "major"
    }));
}

/// `(sensor, raising reading id)` of every alert.
fn alerts(test: &TestEngine) -> Vec<(String, String)> {
    let mut alerts: Vec<_> = test
        .engine
        .alerts(&AlertFilter {
            limit: 1000,
            ..AlertFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|alert| (alert.sensor_id, alert.raised_reading_id.unwrap()))
        .collect();
    alerts.sort();
    alerts
}

fn findings(test: &TestEngine) -> usize {
    test.engine
        .events(&EventFilter {
            kind: Some("quality.finding".into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .unwrap()
        .len()
}

#[test]
fn a_batch_committed_below_the_watermark_is_replayed_and_nothing_evaluated_is_repeated() {
    let mut test = TestEngine::new(2);
    hot_rule(&test);
    // Two committers: `lower` minted its ids first but its evaluation was lost in the crash;
    // `higher` minted later, committed, and was evaluated (it is the watermark). Each reading
    // also has out-of-range coordinates, a finding a second evaluation would repeat.
    let lower = reading("s0", 1, "temperature", 35.0);
    let higher = reading("s1", 1, "temperature", 35.0);
    assert!(lower.id < higher.id);
    let mut lower_coordinates = reading("s0", 1, "latitude", 95.0);
    lower_coordinates.id = lower.id;
    lower_coordinates.values.0.extend(lower.values.0.clone());
    let mut higher_coordinates = reading("s1", 1, "latitude", 95.0);
    higher_coordinates.id = higher.id;
    higher_coordinates.values.0.extend(higher.values.0.clone());
    test.store(std::slice::from_ref(&lower_coordinates));
    test.store_and_send(std::slice::from_ref(&higher_coordinates));
    assert_eq!(alerts(&test), [("s1".into(), higher.id.0.to_string())]);
    assert_eq!(findings(&test), 1);

    test.restart();
    assert_eq!(test.engine.replay_unevaluated().unwrap(), 1);
    assert_eq!(
        alerts(&test),
        [
            ("s0".into(), lower.id.0.to_string()),
            ("s1".into(), higher.id.0.to_string())
        ]
    );
    assert_eq!(findings(&test), 2, "one finding per reading, none repeated");

    test.restart();
    assert_eq!(test.engine.replay_unevaluated().unwrap(), 0);
    assert_eq!(alerts(&test).len(), 2);
    assert_eq!(findings(&test), 2);
}

#[test]
fn readings_stored_before_the_engine_first_ran_are_not_replayed() {
    let before = reading("s0", 1, "temperature", 35.0);
    let mut test = TestEngine::new(1);
    hot_rule(&test);
    test.store(std::slice::from_ref(&before));
    test.restart();
    assert_eq!(test.engine.replay_unevaluated().unwrap(), 0);
    assert!(alerts(&test).is_empty());
    // A reading stored after the floor and never evaluated is.
    let after = reading("s0", 2, "temperature", 36.0);
    test.store(std::slice::from_ref(&after));
    test.restart();
    assert_eq!(test.engine.replay_unevaluated().unwrap(), 1);
    assert_eq!(alerts(&test), [("s0".into(), after.id.0.to_string())]);
}

#[test]
fn readings_further_below_the_watermark_than_the_margin_are_left_alone() {
    let mut test = TestEngine::with_options(
        2,
        audrey_act::ActOptions {
            replay_margin: std::time::Duration::from_millis(1),
            ..audrey_act::ActOptions::default()
        },
    );
    hot_rule(&test);
    let old = reading("s0", 1, "temperature", 35.0);
    std::thread::sleep(std::time::Duration::from_millis(20)); // ids carry real milliseconds
    let newer = reading("s1", 1, "temperature", 35.0);
    test.store(std::slice::from_ref(&old));
    test.store_and_send(std::slice::from_ref(&newer));
    test.restart();
    assert_eq!(
        test.engine.replay_unevaluated().unwrap(),
        0,
        "a commit cannot take longer than the margin, so nothing that old is missing"
    );
}
