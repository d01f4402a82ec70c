//! Staged changes and purges in the store: a staged change survives reopening, finishes once,
//! and purges remove records for good. The checks take `&dyn Store`, so another backend can
//! run the same functions: SQLite here, PostgreSQL when `AUDREY_TEST_POSTGRES_URL` names a
//! server (a fresh database per test, as in the conformance suite; a notice and a pass without
//! it, a failure under `CI`).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "conformance/harness.rs"]
#[allow(dead_code)] // the conformance helpers this file does not need
mod harness;

use audrey_model::{LocationId, LocationInput, Millis, SensorId, SensorInput};
use audrey_store::{
    SqliteOptions, SqliteStore, StagedChange, StagedStatus, Store, StoreError, StoredToken,
};

fn change(id: &str, link_hash: &str) -> StagedChange {
    StagedChange {
        id: id.into(),
        link_hash: link_hash.into(),
        entity: "location".into(),
        entity_id: Some("lab".into()),
        action: "patch".into(),
        body: Some(r#"{"name": "Lab 2"}"#.into()),
        created_at: Millis(1_000),
        expires_at: Millis(901_000),
        status: StagedStatus::Pending,
        finished_at: None,
    }
}

fn a_staged_change_is_found_by_its_link_and_finishes_only_once(store: &dyn Store) {
    store.stage_change(&change("chg-1", "hash-1")).unwrap();
    store.stage_change(&change("chg-2", "hash-2")).unwrap();
    let found = store.staged_change_by_link("hash-1").unwrap().unwrap();
    assert_eq!(found, change("chg-1", "hash-1"));
    assert!(store.staged_change_by_link("hash-3").unwrap().is_none());
    let pending = store.staged_changes(StagedStatus::Pending).unwrap();
    assert_eq!(pending.len(), 2);

    assert!(
        store
            .finish_staged_change("chg-1", StagedStatus::Applied, Millis(2_000))
            .unwrap()
    );
    assert!(
        !store
            .finish_staged_change("chg-1", StagedStatus::Applied, Millis(3_000))
            .unwrap(),
        "a finished change cannot be finished again"
    );
    assert!(
        !store
            .finish_staged_change("chg-1", StagedStatus::Cancelled, Millis(3_000))
            .unwrap(),
        "nor cancelled after it was applied"
    );
    assert!(
        !store
            .finish_staged_change("chg-9", StagedStatus::Cancelled, Millis(3_000))
            .unwrap()
    );
    let applied = store.staged_change_by_link("hash-1").unwrap().unwrap();
    assert_eq!(
        (applied.status, applied.finished_at),
        (StagedStatus::Applied, Some(Millis(2_000)))
    );
    let pending: Vec<String> = store
        .staged_changes(StagedStatus::Pending)
        .unwrap()
        .into_iter()
        .map(|change| change.id)
        .collect();
    assert_eq!(pending, ["chg-2"]);
}

fn purges_remove_records_for_good_and_respect_references(store: &dyn Store) {
    let location = LocationInput {
        name: "Lab".into(),
        latitude: 1.0,
        longitude: 2.0,
        ..Default::default()
    }
    .into_location(LocationId::parse("lab").unwrap(), Millis(0), None)
    .unwrap();
    store.put_location(&location, false).unwrap();
    let sensor = SensorInput {
        kind: "climate".into(),
        location_id: "lab".into(),
        ..Default::default()
    }
    .into_sensor(SensorId::parse("dev-1").unwrap(), Millis(0), None)
    .unwrap();
    store.put_sensor(&sensor, false).unwrap();
    store.delete_sensor(&sensor.id, Millis(5)).unwrap();

    assert!(
        matches!(
            store.purge_location(&location.id),
            Err(StoreError::Conflict(_))
        ),
        "a soft-deleted sensor still names the location"
    );
    store.purge_sensor(&sensor.id).unwrap();
    assert!(store.sensor(&sensor.id).unwrap().is_none());
    assert!(
        store.cached_sensor("dev-1").is_none(),
        "the ingest cache forgets it too"
    );
    assert!(matches!(
        store.purge_sensor(&sensor.id),
        Err(StoreError::NotFound(_))
    ));
    store.purge_location(&location.id).unwrap();
    assert!(store.location(&location.id).unwrap().is_none());

    let token = StoredToken {
        id: "tok-1".into(),
        hash: "h".into(),
        name: "t".into(),
        scopes: vec!["read".into()],
        sensor_id: None,
        created_at: Millis(0),
        revoked_at: None,
    };
    store.put_token(&token).unwrap();
    store.purge_token("tok-1").unwrap();
    assert!(store.token_by_hash("h").unwrap().is_none());
    assert!(matches!(
        store.purge_token("tok-1"),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn sqlite_staged_changes_finish_once_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        a_staged_change_is_found_by_its_link_and_finishes_only_once(&store);
    }
    let reopened = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let pending = reopened.staged_changes(StagedStatus::Pending).unwrap();
    assert_eq!(
        pending,
        vec![change("chg-2", "hash-2")],
        "kept across a restart"
    );
    assert_eq!(
        reopened
            .staged_change_by_link("hash-1")
            .unwrap()
            .unwrap()
            .status,
        StagedStatus::Applied
    );
}

#[test]
fn sqlite_purges_remove_records_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    purges_remove_records_for_good_and_respect_references(&store);
}

#[test]
fn postgres_staged_changes_finish_once() {
    let Some(harness) = harness::postgres() else {
        return;
    };
    a_staged_change_is_found_by_its_link_and_finishes_only_once(&*harness.store);
    let pending = harness.store.staged_changes(StagedStatus::Pending).unwrap();
    assert_eq!(pending, vec![change("chg-2", "hash-2")]);
}

#[test]
fn postgres_purges_remove_records_for_good() {
    let Some(harness) = harness::postgres() else {
        return;
    };
    purges_remove_records_for_good_and_respect_references(&*harness.store);
}

/// Many confirmations of one link racing on separate connections: exactly one wins.
#[test]
fn postgres_a_link_races_to_one_confirmation() {
    let Some(harness) = harness::postgres() else {
        return;
    };
    harness
        .store
        .stage_change(&change("chg-1", "hash-1"))
        .unwrap();
    let wins: usize = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|index| {
                let store = &harness.store;
                scope.spawn(move || {
                    let status = if index % 2 == 0 {
                        StagedStatus::Applied
                    } else {
                        StagedStatus::Cancelled
                    };
                    store
                        .finish_staged_change("chg-1", status, Millis(2_000 + index))
                        .unwrap()
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| usize::from(racer.join().unwrap()))
            .sum()
    });
    assert_eq!(wins, 1);
    let finished = harness
        .store
        .staged_change_by_link("hash-1")
        .unwrap()
        .unwrap();
    assert_ne!(finished.status, StagedStatus::Pending);
    assert!(finished.finished_at.is_some());
}
