//! Appends: read-back, counters, dedup in every position, quarantine, assigned ids.

use audrey_model::{ReadingId, SensorId};
use audrey_store::{AppendBatch, AppendOutcome, Order, QuarantineEntry, QuarantineFilter};

use crate::harness::{
    BASE, Harness, RECEIVED, accepted, all_pages, append, everything, fleet, reading,
};

fn sensor(id: &str) -> SensorId {
    SensorId::parse(id).unwrap()
}

pub fn appended_readings_read_back_by_id_with_counters(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let outcomes = append(
        store,
        vec![
            reading("a1", BASE + 1_000, Some("m1")),
            reading("a1", BASE + 2_000, None),
            reading("b1", BASE + 3_000, Some("m1")),
        ],
    );
    let ids = accepted(&outcomes);
    assert_eq!(ids.len(), 3, "{outcomes:?}");
    let stored = store.reading(ids[0]).unwrap().unwrap();
    assert_eq!(stored.id, ids[0]);
    assert_eq!(stored.sensor_id.as_str(), "a1");
    assert_eq!(stored.location_id.as_str(), "site-a");
    assert_eq!(stored.read_at.0, BASE + 1_000);
    assert_eq!(stored.received_at, RECEIVED);
    assert_eq!(stored.message_id.as_ref().unwrap().as_str(), "m1");
    assert_eq!(stored.values, reading("a1", BASE + 1_000, None).values);
    assert!(
        store
            .reading(ReadingId(uuid::Uuid::now_v7()))
            .unwrap()
            .is_none()
    );
    harness.settle();
    assert_eq!(
        store.reading(ids[2]).unwrap().unwrap().sensor_id.as_str(),
        "b1"
    );
    assert_eq!(store.counters(&sensor("a1")).unwrap().accepted, 2);
    assert_eq!(store.counters(&sensor("b1")).unwrap().accepted, 1);
    assert_eq!(store.counters(&sensor("b2")).unwrap().accepted, 0);
}

/// `reading_without_waiting` may decline (`None`), but whatever it answers is what `reading`
/// answers: in memory, after maintenance moved the rows, and for an unknown id.
pub fn a_reading_answered_without_waiting_is_the_one_reading_answers(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let ids = accepted(&append(
        store,
        vec![
            reading("a1", BASE + 1_000, Some("w1")),
            reading("b1", BASE + 2_000, None),
        ],
    ));
    let unknown = ReadingId(uuid::Uuid::now_v7());
    let check = || {
        for id in [ids[0], ids[1], unknown] {
            if let Some(answer) = store.reading_without_waiting(id) {
                assert_eq!(answer.unwrap(), store.reading(id).unwrap(), "{id}");
            }
        }
    };
    check();
    harness.settle();
    store.maintain().unwrap();
    check();
}

pub fn a_message_id_repeated_in_one_batch_is_stored_once(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let outcomes = append(
        store,
        vec![
            reading("a1", BASE, Some("same")),
            reading("a1", BASE + 5, Some("same")),
            reading("a2", BASE, Some("same")),
        ],
    );
    let AppendOutcome::Accepted(first) = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(outcomes[1], AppendOutcome::Duplicate(first));
    assert!(
        matches!(outcomes[2], AppendOutcome::Accepted(_)),
        "another sensor's key"
    );
    assert_eq!(all_pages(store, &everything(Order::Oldest), 100).len(), 2);
    let counters = store.counters(&sensor("a1")).unwrap();
    assert_eq!((counters.accepted, counters.duplicate), (1, 1));
}

pub fn a_message_id_repeated_in_a_later_batch_is_a_duplicate(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let first = accepted(&append(store, vec![reading("a1", BASE, Some("k"))]));
    let again = append(
        store,
        vec![
            reading("a1", BASE + 99, Some("k")),
            reading("a1", BASE, Some("k2")),
        ],
    );
    assert_eq!(again[0], AppendOutcome::Duplicate(first[0]));
    assert!(matches!(again[1], AppendOutcome::Accepted(_)));
    assert_eq!(all_pages(store, &everything(Order::Oldest), 100).len(), 2);
}

pub fn dedup_holds_after_maintenance_moved_the_original(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let first = accepted(&append(store, vec![reading("b2", BASE, Some("late"))]));
    harness.settle();
    store.maintain().unwrap();
    let again = append(store, vec![reading("b2", BASE, Some("late"))]);
    assert_eq!(again, [AppendOutcome::Duplicate(first[0])]);
    assert_eq!(store.counters(&sensor("b2")).unwrap().duplicate, 1);
}

pub fn readings_without_message_ids_are_never_deduplicated(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let outcomes = append(
        store,
        vec![reading("a1", BASE, None), reading("a1", BASE, None)],
    );
    assert_eq!(accepted(&outcomes).len(), 2);
    assert_eq!(
        accepted(&append(store, vec![reading("a1", BASE, None)])).len(),
        1
    );
    assert_eq!(all_pages(store, &everything(Order::Newest), 100).len(), 3);
}

fn quarantined(sensor: Option<&str>, message: &str) -> QuarantineEntry {
    QuarantineEntry {
        id: 0,
        received_at: RECEIVED,
        sensor_id: sensor.map(str::to_string),
        reason: "out_of_range".into(),
        path: "values.temperature".into(),
        message: message.into(),
        payload: format!("{{\"note\":\"{message}\"}}"),
    }
}

pub fn quarantine_lists_newest_first_by_sensor_and_counts_rejections(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    store
        .append(
            AppendBatch {
                readings: vec![reading("a1", BASE, None)],
                quarantine: vec![
                    quarantined(Some("a1"), "first"),
                    quarantined(None, "second"),
                    quarantined(Some("a1"), "third"),
                    quarantined(Some("ghost"), "fourth"),
                ],
                assigned_ids: None,
            },
            RECEIVED,
        )
        .unwrap();
    let all = store
        .quarantine(&QuarantineFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let messages: Vec<&str> = all.items.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["fourth", "third", "second", "first"]);
    assert_eq!(all.items[0].payload, "{\"note\":\"fourth\"}");
    assert_eq!(all.items[0].received_at, RECEIVED);
    let a1 = store
        .quarantine(&QuarantineFilter {
            sensor: Some("a1".into()),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(a1.items[0].message, "third");
    let before = a1.next_cursor.unwrap().parse().unwrap();
    let rest = store
        .quarantine(&QuarantineFilter {
            sensor: Some("a1".into()),
            limit: 1,
            before: Some(before),
        })
        .unwrap();
    assert_eq!(rest.items[0].message, "first");
    assert!(rest.next_cursor.is_none());
    let counters = store.counters(&sensor("a1")).unwrap();
    assert_eq!((counters.accepted, counters.rejected), (1, 2));
    assert_eq!(
        store.counters(&sensor("ghost")).unwrap().rejected,
        0,
        "unregistered"
    );
}

pub fn assigned_ids_are_kept(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let ids: Vec<ReadingId> = (0..3).map(|_| ReadingId(uuid::Uuid::now_v7())).collect();
    let outcomes = store
        .append(
            AppendBatch {
                readings: vec![
                    reading("a1", BASE, Some("x")),
                    reading("a1", BASE + 1, None),
                    reading("b1", BASE + 2, None),
                ],
                quarantine: vec![],
                assigned_ids: Some(ids.clone()),
            },
            RECEIVED,
        )
        .unwrap();
    assert_eq!(accepted(&outcomes), ids);
    for id in &ids {
        assert_eq!(store.reading(*id).unwrap().unwrap().id, *id);
    }
    // A reading whose dedup key is stored stays a duplicate even with an assigned id.
    let later = store
        .append(
            AppendBatch {
                readings: vec![reading("a1", BASE, Some("x"))],
                quarantine: vec![],
                assigned_ids: Some(vec![ReadingId(uuid::Uuid::now_v7())]),
            },
            RECEIVED,
        )
        .unwrap();
    assert_eq!(later, [AppendOutcome::Duplicate(ids[0])]);
}

pub fn replaying_a_batch_with_its_assigned_ids_stores_nothing_twice(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let ids: Vec<ReadingId> = (0..4).map(|_| ReadingId(uuid::Uuid::now_v7())).collect();
    let batch = || AppendBatch {
        readings: vec![
            reading("a1", BASE, Some("keyed")),
            reading("a1", BASE + 1, None),
            reading("b2", BASE - 3 * 86_400_000, None),
            reading("b2", BASE + 2, None),
        ],
        quarantine: vec![],
        assigned_ids: Some(ids.clone()),
    };
    let first = store.append(batch(), RECEIVED).unwrap();
    assert_eq!(accepted(&first), ids);
    // The spool replays after a crash: once before and once after background maintenance.
    let replayed = store.append(batch(), RECEIVED).unwrap();
    assert_eq!(
        replayed,
        ids.iter()
            .map(|id| AppendOutcome::Duplicate(*id))
            .collect::<Vec<_>>()
    );
    harness.settle();
    let replayed_again = store.append(batch(), RECEIVED).unwrap();
    assert!(accepted(&replayed_again).is_empty(), "{replayed_again:?}");
    let stored = all_pages(store, &everything(Order::Oldest), 2);
    assert_eq!(stored.len(), 4, "every reading exactly once");
    let mut stored_ids: Vec<ReadingId> = stored.iter().map(|reading| reading.id).collect();
    stored_ids.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(stored_ids, expected);
    assert_eq!(store.counters(&sensor("a1")).unwrap().accepted, 2);
}

/// Two batches carrying the same dedup keys (in opposite orders) appended at the same time,
/// for several rounds: each key is stored once, the other batch answers it as a duplicate
/// of exactly that reading, neither append fails (no deadlock), and the counters add up
/// both before and after maintenance folds them.
pub fn concurrent_batches_with_the_same_keys_store_each_key_once(harness: &Harness) {
    let store = &*harness.store;
    fleet(store);
    let rounds = 5;
    let keys_per_round = 150;
    for round in 0..rounds {
        let batch = |reversed: bool| {
            let mut readings: Vec<_> = (0..keys_per_round)
                .flat_map(|key| {
                    let message = format!("r{round}-k{key}");
                    let at = BASE + (round * keys_per_round + key) as i64;
                    [
                        reading("a1", at, Some(&message)),
                        reading("b1", at, Some(&message)),
                    ]
                })
                .collect();
            if reversed {
                readings.reverse();
            }
            readings
        };
        let start = std::sync::Barrier::new(2);
        let (forward, backward) = std::thread::scope(|scope| {
            let run = |readings| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    append(store, readings)
                })
            };
            let forward = run(batch(false));
            let backward = run(batch(true));
            (forward.join().unwrap(), backward.join().unwrap())
        });
        // Line the second batch's outcomes up with the first's keys.
        let backward: Vec<AppendOutcome> = backward.into_iter().rev().collect();
        for (one, other) in forward.iter().zip(&backward) {
            match (one, other) {
                (AppendOutcome::Accepted(id), AppendOutcome::Duplicate(of))
                | (AppendOutcome::Duplicate(of), AppendOutcome::Accepted(id)) => {
                    assert_eq!(id, of, "the duplicate names the stored reading")
                }
                _ => panic!("round {round}: one of {one:?} / {other:?} must be the duplicate"),
            }
        }
    }
    let stored = all_pages(store, &everything(Order::Oldest), 1000);
    assert_eq!(stored.len(), rounds * keys_per_round * 2);
    let expected = (rounds * keys_per_round) as u64;
    for _ in 0..2 {
        for id in ["a1", "b1"] {
            let counters = store.counters(&sensor(id)).unwrap();
            assert_eq!(
                (counters.accepted, counters.duplicate),
                (expected, expected)
            );
        }
        harness.settle();
    }
}
