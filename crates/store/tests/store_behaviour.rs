//! The SQLite store on its own: reopen after unflushed appends, flush, dedup across the two
//! layouts.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use audrey_model::{
    LocationId, LocationInput, MessageId, MetricName, Millis, ReadingValues, SensorId, SensorInput,
    ValidReading,
};
use audrey_store::{
    AppendBatch, AppendOutcome, Order, ReadingQuery, SqliteOptions, SqliteStore, Store,
};

fn registered(dir: &std::path::Path) -> SqliteStore {
    registered_with(dir, SqliteOptions::default())
}

fn registered_with(dir: &std::path::Path, options: SqliteOptions) -> SqliteStore {
    let store = SqliteStore::open(dir, options).unwrap();
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
    store
}

fn valid(read_at: i64, message: Option<&str>) -> ValidReading {
    ValidReading {
        sensor_id: SensorId::parse("dev-1").unwrap(),
        location_id: LocationId::parse("lab").unwrap(),
        read_at: Millis(read_at),
        values: ReadingValues(vec![(MetricName::parse("t").unwrap(), read_at as f64)]),
        message_id: message.map(|text| MessageId::parse(text).unwrap()),
    }
}

fn append(store: &SqliteStore, readings: Vec<ValidReading>) -> Vec<AppendOutcome> {
    append_received(store, readings, Millis(2_000_000_000_000))
}

fn append_received(
    store: &SqliteStore,
    readings: Vec<ValidReading>,
    received_at: Millis,
) -> Vec<AppendOutcome> {
    store
        .append(
            AppendBatch {
                readings,
                quarantine: vec![],
                assigned_ids: None,
            },
            received_at,
        )
        .unwrap()
}

/// `(accepted, duplicate, rejected)` of dev-1.
fn counted(store: &SqliteStore) -> (u64, u64, u64) {
    let counters = store.counters(&SensorId::parse("dev-1").unwrap()).unwrap();
    (counters.accepted, counters.duplicate, counters.rejected)
}

fn newest(store: &SqliteStore, limit: usize) -> Vec<i64> {
    let query = ReadingQuery {
        sensor: Some(SensorId::parse("dev-1").unwrap()),
        limit,
        order: Order::Newest,
        ..Default::default()
    };
    store
        .readings(&query)
        .unwrap()
        .items
        .iter()
        .map(|reading| reading.read_at.0)
        .collect()
}

#[test]
fn landed_readings_are_back_after_reopening_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = registered(dir.path());
        append(
            &store,
            (1..=5)
                .map(|at| valid(at * 1000, Some(&format!("m{at}"))))
                .collect(),
        );
        assert_eq!(store.landed_rows(), 5);
    }
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(store.landed_rows(), 5, "landing is reloaded into memory");
    assert_eq!(newest(&store, 10), [5000, 4000, 3000, 2000, 1000]);
    let again = append(&store, vec![valid(3000, Some("m3"))]);
    assert!(
        matches!(again[0], AppendOutcome::Duplicate(_)),
        "dedup survives the restart"
    );
}

#[test]
fn a_query_merges_flushed_and_landed_rows_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = registered(dir.path());
    append(&store, vec![valid(1000, None), valid(5000, None)]);
    assert_eq!(store.flush_all().unwrap(), 2);
    assert_eq!(store.landed_rows(), 0);
    append(&store, vec![valid(3000, None), valid(7000, None)]);
    assert_eq!(newest(&store, 10), [7000, 5000, 3000, 1000]);
    assert_eq!(newest(&store, 2), [7000, 5000]);
}

#[test]
fn dedup_finds_the_original_in_either_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = registered(dir.path());
    let first = append(&store, vec![valid(1000, Some("a"))]);
    let AppendOutcome::Accepted(original) = first[0] else {
        panic!("accepted")
    };
    assert_eq!(
        append(&store, vec![valid(1000, Some("a"))]),
        [AppendOutcome::Duplicate(original)]
    );
    store.flush_all().unwrap();
    assert_eq!(
        append(&store, vec![valid(9999, Some("a"))]),
        [AppendOutcome::Duplicate(original)]
    );
    assert_eq!(newest(&store, 10), [1000]);
}

#[test]
fn schema_migrations_report_their_version_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        SqliteStore::migrate_only(dir.path()).unwrap(),
        SqliteStore::schema_version()
    );
    assert_eq!(
        SqliteStore::migrate_only(dir.path()).unwrap(),
        SqliteStore::schema_version()
    );
    drop(registered(dir.path()));
}

/// Copies `landing.db` and its WAL (the store must be closed).
fn copy_landing(from: &std::path::Path, to: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let source = from.join(format!("landing.db{suffix}"));
        let target = to.join(format!("landing.db{suffix}"));
        let _ = std::fs::remove_file(&target);
        if source.exists() {
            std::fs::copy(&source, &target).unwrap();
        }
    }
}

#[test]
fn rows_left_in_both_files_by_a_crash_mid_flush_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    {
        let store = registered(dir.path());
        append(
            &store,
            (1..=3)
                .map(|at| valid(at * 1000, Some(&format!("m{at}"))))
                .collect(),
        );
        // A commit of nothing but a duplicate: its count lives in its own landing row.
        append(&store, vec![valid(1000, Some("m1"))]);
        assert_eq!(counted(&store), (3, 1, 0));
    }
    copy_landing(dir.path(), saved.path());
    {
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        assert_eq!(store.flush_all().unwrap(), 3);
    }
    // What a crash after the flush's commit but before the landing delete leaves behind:
    // the readings are in chunks and their batch is still in landing.db.
    copy_landing(saved.path(), dir.path());

    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(
        newest(&store, 10),
        [3000, 2000, 1000],
        "each reading once while in both files"
    );
    assert_eq!(
        store.landed_rows(),
        0,
        "the batch the flush had stored is not landed again"
    );
    assert_eq!(store.flush_all().unwrap(), 0);
    assert_eq!(
        newest(&store, 10),
        [3000, 2000, 1000],
        "and still each reading once"
    );
    assert!(matches!(
        append(&store, vec![valid(2000, Some("m2"))])[0],
        AppendOutcome::Duplicate(_)
    ));
    assert_eq!(
        counted(&store),
        (3, 2, 0),
        "the repair folded the packed batches' counts once"
    );
    drop(store);
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(counted(&store), (3, 2, 0));
}

/// Puts the counters of `audrey.db` back into `landing.db`, where stores from before main
/// migration 8 keep them. With `unmoved`, also takes them out of `audrey.db` and clears the
/// flag, as before the move; without, leaves both copies and the flag, as a crash right after
/// the move's commit would.
fn counters_back_in_landing(dir: &std::path::Path, unmoved: bool) {
    let main = rusqlite::Connection::open(dir.join("audrey.db")).unwrap();
    main.execute(
        &format!(
            "ATTACH DATABASE '{}' AS landing",
            dir.join("landing.db").display()
        ),
        [],
    )
    .unwrap();
    let copied = main
        .execute(
            "INSERT OR REPLACE INTO landing.sensor_counters SELECT * FROM main.sensor_counters",
            [],
        )
        .unwrap();
    assert!(copied > 0);
    if unmoved {
        main.execute_batch(
            "DELETE FROM main.sensor_counters;
             DELETE FROM main.counters_moved;",
        )
        .unwrap();
    }
}

#[test]
fn counters_kept_in_landing_by_an_older_store_move_to_the_main_file_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = registered(dir.path());
        append(&store, vec![valid(1000, Some("a")), valid(2000, None)]);
        append(&store, vec![valid(1000, Some("a"))]);
        store.flush_all().unwrap();
        append(&store, vec![valid(3000, Some("b")), valid(3000, Some("b"))]);
        assert_eq!(counted(&store), (3, 2, 0));
    }
    // Folded counts in landing.db, as an older store keeps them; a landed batch beside them.
    counters_back_in_landing(dir.path(), true);
    {
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        assert_eq!(
            counted(&store),
            (3, 2, 0),
            "moved, and the landed batch added"
        );
        store.flush_all().unwrap();
        assert_eq!(counted(&store), (3, 2, 0));
    }
    let in_landing: i64 = rusqlite::Connection::open(dir.path().join("landing.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM sensor_counters", [], |row| row.get(0))
        .unwrap();
    assert_eq!(in_landing, 0, "the moved copy is gone from landing.db");
    // A crash right after the move's commit: both files hold the counters, the flag is set.
    counters_back_in_landing(dir.path(), false);
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(counted(&store), (3, 2, 0), "not moved a second time");
    drop(store);
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(counted(&store), (3, 2, 0));
}

#[test]
fn counters_stay_exact_across_flushes_reopens_and_rows_counted_before_migration_3() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = registered(dir.path());
        append(&store, vec![valid(1000, Some("a")), valid(2000, None)]);
        append(&store, vec![valid(1000, Some("a"))]);
        assert_eq!(
            counted(&store),
            (2, 1, 0),
            "counted at once, before any flush"
        );
        store.flush_all().unwrap();
        assert_eq!(
            counted(&store),
            (2, 1, 0),
            "and after the flush folded them"
        );
        append(&store, vec![valid(3000, Some("b")), valid(3000, Some("b"))]);
        assert_eq!(counted(&store), (3, 2, 0));
    }
    {
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        assert_eq!(
            counted(&store),
            (3, 2, 0),
            "landed and folded counts after reopening"
        );
        append(&store, vec![valid(4000, Some("c"))]);
    }
    // Make the last landed row look like one written before landing migration 3: its reading
    // was counted in `sensor_counters` when it was committed, and it has no counters blob.
    // Such a store also predates main migration 8, so its counters are in landing.db.
    counters_back_in_landing(dir.path(), true);
    {
        let landing = rusqlite::Connection::open(dir.path().join("landing.db")).unwrap();
        let changed = landing
            .execute(
                "UPDATE landing_batches SET counters = NULL
                 WHERE seq = (SELECT MAX(seq) FROM landing_batches)",
                [],
            )
            .unwrap();
        assert_eq!(changed, 1);
        landing
            .execute(
                "UPDATE sensor_counters SET accepted = accepted + 1 WHERE sensor_id = 'dev-1'",
                [],
            )
            .unwrap();
    }
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(
        counted(&store),
        (4, 2, 0),
        "an old row is not counted twice"
    );
    store.flush_all().unwrap();
    assert_eq!(counted(&store), (4, 2, 0));
    drop(store);
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(counted(&store), (4, 2, 0), "nor after its batch was folded");
}

#[test]
fn an_idle_store_answers_point_reads_without_waiting_from_memory_and_from_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = registered(dir.path());
    let ids: Vec<_> = append(&store, vec![valid(1_000, None), valid(2_000, None)])
        .into_iter()
        .map(|outcome| match outcome {
            AppendOutcome::Accepted(id) => id,
            other => panic!("{other:?}"),
        })
        .collect();
    let at_once = |id| store.reading_without_waiting(id).unwrap().unwrap();
    assert_eq!(at_once(ids[0]).unwrap().read_at, Millis(1_000));
    store.flush_all().unwrap();
    assert_eq!(at_once(ids[1]).unwrap().read_at, Millis(2_000));
    assert_eq!(at_once(audrey_model::ReadingId(uuid::Uuid::now_v7())), None);
}

/// The idle trigger: once nothing has landed for `idle_flush_after`, maintenance flushes a
/// memtable of at least `idle_flush_rows`, long before `flush_age`; a smaller one, or one
/// still growing, waits for the age.
#[test]
fn maintenance_flushes_a_memtable_once_its_load_stops() {
    let idle = |rows, after| SqliteOptions {
        flush_age: std::time::Duration::from_secs(3600),
        idle_flush_rows: rows,
        idle_flush_after: after,
        ..Default::default()
    };
    let short = std::time::Duration::from_millis(50);
    let three = || (1..=3).map(|second| valid(second * 1000, None)).collect();
    let (stopped, few, growing) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let stopped = registered_with(stopped.path(), idle(3, short));
    let few = registered_with(few.path(), idle(4, short));
    let growing = registered_with(
        growing.path(),
        idle(3, std::time::Duration::from_secs(3600)),
    );
    for store in [&stopped, &few, &growing] {
        append_received(store, three(), Millis::now());
    }
    std::thread::sleep(short * 4);
    for store in [&stopped, &few, &growing] {
        store.maintain().unwrap();
    }
    assert_eq!(stopped.landed_rows(), 0, "idle and large enough: flushed");
    assert_eq!(newest(&stopped, 10), [3000, 2000, 1000]);
    assert_eq!(
        few.landed_rows(),
        3,
        "below idle_flush_rows: waits for the age"
    );
    assert_eq!(
        growing.landed_rows(),
        3,
        "landed within idle_flush_after: waits"
    );
}
