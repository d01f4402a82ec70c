//! The PostgreSQL append's hand-made transaction (BEGIN and COMMIT pipelined with the
//! statements around them): a failed batch stores nothing and leaves its connection clean
//! for the next batch, and a partition dropped behind the store's back is recreated.
//!
//! Runs when `AUDREY_TEST_POSTGRES_URL` names a server (a fresh database per test).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "conformance/harness.rs"]
#[allow(dead_code)]
mod harness;

use audrey_store::{AppendBatch, AppendOutcome, PostgresStore, Store};

use harness::{BASE, PgFixture as Fixture, RECEIVED, fleet, reading, sql};

fn append(store: &PostgresStore, readings: Vec<audrey_model::ValidReading>) -> Vec<AppendOutcome> {
    store
        .append(
            AppendBatch {
                readings,
                ..Default::default()
            },
            RECEIVED,
        )
        .unwrap()
}

#[test]
fn a_batch_whose_commit_fails_stores_nothing_and_the_connection_serves_the_next_batch() {
    // One connection: the batch after the failure must get the very connection that failed.
    let Some(fixture) = Fixture::new(1) else {
        return;
    };
    let store = &fixture.store;
    fleet(store);
    // The counter deltas are the last statement before COMMIT; make them fail for b1.
    sql(
        &fixture.url,
        "CREATE FUNCTION refuse_b1() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.sensor_id = 'b1' THEN RAISE EXCEPTION 'refused for the test'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_b1 BEFORE INSERT ON sensor_counter_deltas
             FOR EACH ROW EXECUTE FUNCTION refuse_b1();",
    );
    let failed = store.append(
        AppendBatch {
            readings: vec![
                reading("a1", BASE + 1, Some("kept-out")),
                reading("b1", BASE + 2, None),
            ],
            ..Default::default()
        },
        RECEIVED,
    );
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        store
            .readings(&harness::everything(audrey_store::Order::Oldest))
            .unwrap()
            .items
            .len(),
        0,
        "nothing of the failed batch is stored"
    );
    // Same connection, clean: the next batch commits, and the failed one's key is free.
    let outcomes = append(store, vec![reading("a1", BASE + 3, Some("kept-out"))]);
    let AppendOutcome::Accepted(id) = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(store.reading(id).unwrap().is_some());
    let counters = store
        .counters(&audrey_model::SensorId::parse("a1").unwrap())
        .unwrap();
    assert_eq!((counters.accepted, counters.duplicate), (1, 0));

    // Now a failure in the middle (the COPY): no COMMIT is sent, the store must roll back.
    sql(
        &fixture.url,
        "CREATE FUNCTION refuse_b2() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.sensor_id = 'b2' THEN RAISE EXCEPTION 'refused for the test'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_b2 BEFORE INSERT ON readings
             FOR EACH ROW EXECUTE FUNCTION refuse_b2();",
    );
    let failed = store.append(
        AppendBatch {
            readings: vec![reading("b2", BASE + 4, None)],
            ..Default::default()
        },
        RECEIVED,
    );
    assert!(failed.is_err(), "{failed:?}");
    let outcomes = append(store, vec![reading("a2", BASE + 5, None)]);
    let AppendOutcome::Accepted(id) = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(store.reading(id).unwrap().is_some());
}

#[test]
fn a_partition_dropped_behind_the_stores_back_is_recreated_for_the_append() {
    let Some(fixture) = Fixture::new(2) else {
        return;
    };
    let store = &fixture.store;
    fleet(store);
    let first = harness::accepted(&append(store, vec![reading("a1", BASE + 10, None)]));
    // Another process's retention drops the day the store believes exists.
    sql(&fixture.url, "DROP TABLE readings_20240110");
    assert!(store.reading(first[0]).unwrap().is_none());
    let again = harness::accepted(&append(store, vec![reading("a1", BASE + 20, None)]));
    assert_eq!(again.len(), 1);
    assert!(store.reading(again[0]).unwrap().is_some());
    let counters = store
        .counters(&audrey_model::SensorId::parse("a1").unwrap())
        .unwrap();
    assert_eq!(counters.accepted, 2, "the retried batch counted once");
}
