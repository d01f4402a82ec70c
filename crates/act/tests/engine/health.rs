use audrey_act::{EventFilter, HealthStatus};

use super::helpers::{TestEngine, reading};

fn transitions(test: &TestEngine, sensor: &str) -> Vec<(Option<HealthStatus>, HealthStatus)> {
    test.engine
        .status_log(Some(sensor), 100)
        .unwrap()
        .into_iter()
        .map(|change| (change.from, change.to))
        .collect()
}

#[test]
fn a_sensor_goes_offline_after_three_missed_intervals_and_online_with_its_next_reading() {
    let test = TestEngine::new(1);
    test.send(&[reading("s0", 0, "temperature", 20.0)]);
    test.advance(180);
    test.engine.tick().unwrap();
    assert_eq!(
        test.engine.status("s0").unwrap(),
        Some(HealthStatus::Online),
        "exactly 3 intervals is not yet late"
    );
    test.advance(1);
    test.engine.tick().unwrap();
    assert_eq!(
        test.engine.status("s0").unwrap(),
        Some(HealthStatus::Offline)
    );
    test.send(&[reading("s0", 200, "temperature", 20.0)]);
    assert_eq!(
        transitions(&test, "s0"),
        [
            (None, HealthStatus::Online),
            (Some(HealthStatus::Online), HealthStatus::Offline),
            (Some(HealthStatus::Offline), HealthStatus::Online)
        ]
    );
    let events = test
        .engine
        .events(&EventFilter {
            kind: Some("sensor.status_changed".into()),
            limit: 100,
            ..EventFilter::default()
        })
        .unwrap();
    assert_eq!(events.len(), 3);
}

#[test]
fn a_sensor_whose_readings_are_mostly_rejected_is_faulty_until_they_are_good_again() {
    let test = TestEngine::new(1);
    test.send(&[reading("s0", 0, "temperature", 20.0)]);
    test.reject("s0", 10);
    assert_eq!(
        test.engine.status("s0").unwrap(),
        Some(HealthStatus::Faulty)
    );
    let good: Vec<_> = (1..=20)
        .map(|second| reading("s0", second, "temperature", 20.0 + second as f64))
        .collect();
    test.send(&good);
    assert_eq!(
        test.engine.status("s0").unwrap(),
        Some(HealthStatus::Online)
    );
}

#[test]
fn a_decommissioned_sensor_stays_so_whatever_it_sends_or_misses() {
    let mut test = TestEngine::new(1);
    test.send(&[reading("s0", 0, "temperature", 20.0)]);
    test.engine.set_decommissioned("s0", true).unwrap();
    test.send(&[reading("s0", 60, "temperature", 20.0)]);
    test.advance(10_000);
    test.engine.tick().unwrap();
    test.restart();
    test.engine.tick().unwrap();
    assert_eq!(
        test.engine.status("s0").unwrap(),
        Some(HealthStatus::Decommissioned)
    );
    assert_eq!(
        test.engine.set_decommissioned("s0", false).unwrap(),
        HealthStatus::Online
    );
}

fn findings(test: &TestEngine) -> Vec<serde_json::Value> {
    test.engine
        .events(&EventFilter {
            kind: Some("quality.finding".into()),
            limit: 100,
            ..EventFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|(_, event)| event.data)
        .collect()
}

#[test]
fn a_stuck_value_is_one_finding_naming_every_offending_reading() {
    let test = TestEngine::new(1);
    let stuck: Vec<_> = (0..12)
        .map(|second| reading("s0", second * 60, "temperature", 21.0))
        .collect();
    test.send(&stuck);
    let found = findings(&test);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["check"], "stuck_value");
    let ids: Vec<String> = stuck[..10]
        .iter()
        .map(|reading| reading.id.0.to_string())
        .collect();
    assert_eq!(found[0]["reading_ids"], serde_json::json!(ids));
}

#[test]
fn coordinates_out_of_range_and_far_out_of_order_readings_are_findings() {
    let test = TestEngine::new(2);
    test.send(&[reading("s1", 7200, "latitude", 95.0)]);
    test.send(&[reading("s1", 0, "latitude", 45.0)]);
    let checks: Vec<String> = findings(&test)
        .iter()
        .map(|data| data["check"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(checks, ["coordinates_out_of_range", "out_of_order"]);
}

#[test]
fn a_jump_larger_than_the_configured_step_names_both_readings() {
    let mut options = audrey_act::ActOptions::default();
    options.health.jump_steps.insert("temperature".into(), 5.0);
    let test = TestEngine::with_options(1, options);
    let (before, after) = (
        reading("s0", 0, "temperature", 20.0),
        reading("s0", 60, "temperature", 30.0),
    );
    test.send(&[before.clone(), after.clone()]);
    let found = findings(&test);
    assert_eq!(found[0]["check"], "jump");
    assert_eq!(
        found[0]["reading_ids"],
        serde_json::json!([before.id.0.to_string(), after.id.0.to_string()])
    );
}

#[test]
fn the_quality_sweep_finds_stuck_runs_and_jumps_that_late_readings_make_in_read_at_order() {
    let mut options = audrey_act::ActOptions::default();
    options.health.stuck_readings = 3;
    options.health.jump_steps.insert("temperature".into(), 5.0);
    let test = TestEngine::with_options(1, options);
    // In arrival order nothing is wrong: 20, 21, 22 a minute apart.
    let in_order = [
        reading("s0", 0, "temperature", 20.0),
        reading("s0", 60, "temperature", 21.0),
        reading("s0", 120, "temperature", 22.0),
    ];
    test.store_and_send(&in_order);
    // Two late readings: one repeats 20 twice just after t=0, one jumps to 40 at t=90.
    let late = [
        reading("s0", 10, "temperature", 20.0),
        reading("s0", 20, "temperature", 20.0),
        reading("s0", 90, "temperature", 40.0),
    ];
    test.store_and_send(&late);
    assert!(
        findings(&test).is_empty(),
        "ingest-time checks skip late readings"
    );

    assert_eq!(test.engine.sweep_quality().unwrap(), 3);
    let found = findings(&test);
    let id = |reading: &audrey_model::Reading| reading.id.0.to_string();
    let stuck: Vec<_> = found
        .iter()
        .filter(|data| data["check"] == "stuck_value")
        .collect();
    assert_eq!(stuck.len(), 1, "{found:?}");
    assert_eq!(
        stuck[0]["reading_ids"],
        serde_json::json!([id(&in_order[0]), id(&late[0]), id(&late[1])])
    );
    let mut jumps: Vec<serde_json::Value> = found
        .iter()
        .filter(|data| data["check"] == "jump")
        .map(|data| data["reading_ids"].clone())
        .collect();
    jumps.sort_by_key(|ids| ids.to_string());
    let mut expected = vec![
        serde_json::json!([id(&in_order[1]), id(&late[2])]),
        serde_json::json!([id(&late[2]), id(&in_order[2])]),
    ];
    expected.sort_by_key(|ids| ids.to_string());
    assert_eq!(jumps, expected);

    // Nothing new arrived: a second sweep publishes nothing, and a repeat of the same stretch
    // is not published twice.
    assert_eq!(test.engine.sweep_quality().unwrap(), 0);
    assert_eq!(findings(&test).len(), 3);
}
