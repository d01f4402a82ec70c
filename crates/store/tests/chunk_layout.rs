//! The SQLite store's chunked layout against a plain model: readings of many sensors, out of
//! order, flushed in small pieces so that a sensor's chunks overlap in time and queries mix
//! chunks and landed rows; and the conversion of a data directory of the row-per-reading
//! layout (schema version 4).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashSet;

use audrey_model::{
    LocationId, LocationInput, MessageId, MetricName, Millis, Reading, ReadingId, ReadingValues,
    SensorId, SensorInput, ValidReading,
};
use audrey_store::{
    AggregateQuery, Aggregation, AppendBatch, AppendOutcome, Cursor, GroupBy, Order, ReadingQuery,
    SqliteOptions, SqliteStore, StatsQuery, Store,
};

const SENSORS: usize = 6;
const HOUR: i64 = 3_600_000;

/// A small deterministic generator: the test must fail the same way every time.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn sensor(index: usize) -> SensorId {
    SensorId::parse(&format!("s{index}")).unwrap()
}

fn location(index: usize) -> LocationId {
    LocationId::parse(&format!("loc{}", index % 3)).unwrap()
}

fn register(store: &SqliteStore) {
    for index in 0..3 {
        let place = LocationInput {
            name: format!("Place {index}"),
            latitude: 10.0 + index as f64,
            longitude: 20.0,
            country: Some(if index == 0 { "DE" } else { "FR" }.into()),
            ..Default::default()
        }
        .into_location(location(index), Millis(0), None)
        .unwrap();
        store.put_location(&place, false).unwrap();
    }
    for index in 0..SENSORS {
        let device = SensorInput {
            kind: "climate".into(),
            location_id: location(index).to_string(),
            ..Default::default()
        }
        .into_sensor(sensor(index), Millis(0), None)
        .unwrap();
        store.put_sensor(&device, false).unwrap();
    }
}

fn small_flushes(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(
        dir,
        SqliteOptions {
            flush_rows: 1,
            flush_max_rows: 40,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A store of 30 random batches, all flushed, then closed: its directory and what it holds.
fn flushed_and_closed(seed: u64) -> (tempfile::TempDir, Vec<Reading>) {
    let dir = tempfile::tempdir().unwrap();
    let store = small_flushes(dir.path());
    register(&store);
    let mut model = Vec::new();
    fill(&store, &mut Lcg(seed), 30, &mut model);
    store.flush_all().unwrap();
    (dir, model)
}

/// Appends `batches` random batches; every third batch is followed by a flush, so the
/// model's readings end up spread over many overlapping chunks and the memtable.
fn fill(store: &SqliteStore, random: &mut Lcg, batches: usize, model: &mut Vec<Reading>) {
    for batch in 0..batches {
        let readings: Vec<ValidReading> = (0..25)
            .map(|_| {
                let index = random.below(SENSORS as u64) as usize;
                // Mostly recent, some hours late, a few sharing a millisecond.
                let read_at = 1_000 * HOUR + random.below(6 * HOUR as u64) as i64 / 1000 * 1000;
                let mut values = vec![(
                    MetricName::parse("t").unwrap(),
                    random.below(1000) as f64 / 8.0,
                )];
                if random.below(3) == 0 {
                    values.push((MetricName::parse("u").unwrap(), -(random.below(50) as f64)));
                }
                values.sort_by(|left, right| left.0.cmp(&right.0));
                ValidReading {
                    sensor_id: sensor(index),
                    location_id: location(index),
                    read_at: Millis(read_at),
                    values: ReadingValues(values),
                    message_id: (random.below(2) == 0)
                        .then(|| MessageId::parse(&format!("m{}", random.next())).unwrap()),
                }
            })
            .collect();
        let received_at = Millis(2_000_000_000_000 + batch as i64);
        let outcomes = store
            .append(
                AppendBatch {
                    readings: readings.clone(),
                    ..Default::default()
                },
                received_at,
            )
            .unwrap();
        for (reading, outcome) in readings.into_iter().zip(outcomes) {
            if let AppendOutcome::Accepted(id) = outcome {
                model.push(reading.into_reading(id, received_at));
            }
        }
        if batch % 3 == 2 {
            store.maintain().unwrap();
        }
    }
}

fn sorted(mut readings: Vec<Reading>, order: Order) -> Vec<Reading> {
    readings.sort_by_key(|reading| (reading.read_at, reading.id));
    if order == Order::Newest {
        readings.reverse();
    }
    readings
}

/// Every page of the query, followed by its cursors.
fn pages(store: &SqliteStore, query: &ReadingQuery) -> Vec<Reading> {
    let mut query = query.clone();
    let mut all = Vec::new();
    loop {
        let page = store.readings(&query).unwrap();
        assert!(page.items.len() <= query.limit);
        all.extend(page.items);
        match page.next_cursor {
            Some(cursor) => query.after = Some(Cursor::decode(&cursor).unwrap()),
            None => return all,
        }
    }
}

fn check_queries(store: &SqliteStore, model: &[Reading]) {
    let from = Millis(1_000 * HOUR + 2 * HOUR + 17);
    let to = Millis(1_000 * HOUR + 4 * HOUR);
    for order in [Order::Oldest, Order::Newest] {
        for index in 0..SENSORS {
            let expected = sorted(
                model
                    .iter()
                    .filter(|reading| reading.sensor_id == sensor(index))
                    .cloned()
                    .collect(),
                order,
            );
            for limit in [1, 3, 100] {
                let query = ReadingQuery {
                    sensor: Some(sensor(index)),
                    order,
                    limit,
                    ..Default::default()
                };
                let page = store.readings(&query).unwrap().items;
                assert_eq!(
                    page,
                    expected[..limit.min(expected.len())],
                    "{order:?} {limit} of sensor {index}"
                );
            }
            let ranged = ReadingQuery {
                sensor: Some(sensor(index)),
                from: Some(from),
                to: Some(to),
                order,
                limit: 7,
                ..Default::default()
            };
            let expected_range: Vec<Reading> = expected
                .iter()
                .filter(|reading| reading.read_at >= from && reading.read_at < to)
                .cloned()
                .collect();
            assert_eq!(
                pages(store, &ranged),
                expected_range,
                "sensor range {index}"
            );
        }
        let everything = ReadingQuery {
            order,
            limit: 13,
            ..Default::default()
        };
        assert_eq!(
            pages(store, &everything),
            sorted(model.to_vec(), order),
            "every reading, {order:?}, paged"
        );
        let at_location = ReadingQuery {
            location: Some(location(1)),
            from: Some(from),
            order,
            limit: 11,
            ..Default::default()
        };
        assert_eq!(
            pages(store, &at_location),
            sorted(
                model
                    .iter()
                    .filter(|reading| reading.location_id == location(1) && reading.read_at >= from)
                    .cloned()
                    .collect(),
                order
            ),
            "location with a lower bound, {order:?}"
        );
    }
    for reading in model.iter().step_by(7) {
        assert_eq!(store.reading(reading.id).unwrap().as_ref(), Some(reading));
    }
    assert_eq!(
        store.reading(ReadingId(uuid::Uuid::now_v7())).unwrap(),
        None
    );
}

fn check_statistics(store: &SqliteStore, model: &[Reading]) {
    let from = Millis(1_000 * HOUR + HOUR + 1);
    let to = Millis(1_000 * HOUR + 5 * HOUR);
    let groups = store
        .reading_stats(&StatsQuery {
            metric: MetricName::parse("u").unwrap(),
            group_by: GroupBy::Sensor,
            from: Some(from),
            to: Some(to),
            percentiles: vec![50.0],
        })
        .unwrap();
    let mut expected_groups = 0;
    for index in 0..SENSORS {
        let mut values: Vec<f64> = model
            .iter()
            .filter(|reading| {
                reading.sensor_id == sensor(index)
                    && reading.read_at >= from
                    && reading.read_at < to
            })
            .filter_map(|reading| reading.values.get("u"))
            .collect();
        if values.is_empty() {
            continue;
        }
        expected_groups += 1;
        values.sort_by(f64::total_cmp);
        let group = groups
            .iter()
            .find(|group| group.key.as_deref() == Some(sensor(index).as_str()))
            .unwrap();
        assert_eq!(
            group.summary.count,
            values.len() as u64,
            "count of sensor {index}"
        );
        assert_eq!(group.summary.min, values[0]);
        assert_eq!(group.summary.max, values[values.len() - 1]);
        let sum: f64 = values.iter().sum();
        assert!((group.summary.mean - sum / values.len() as f64).abs() < 1e-9);
    }
    assert_eq!(groups.len(), expected_groups);
    let countries = store
        .reading_stats(&StatsQuery {
            metric: MetricName::parse("t").unwrap(),
            group_by: GroupBy::Country,
            from: None,
            to: None,
            percentiles: vec![],
        })
        .unwrap();
    let germany = model
        .iter()
        .filter(|reading| reading.location_id == location(0))
        .count() as u64;
    assert_eq!(
        countries
            .iter()
            .map(|group| (group.key.clone(), group.summary.count))
            .collect::<Vec<_>>(),
        [
            (Some("DE".to_string()), germany),
            (Some("FR".to_string()), model.len() as u64 - germany)
        ]
    );
    let buckets = store
        .aggregate_readings(&AggregateQuery {
            sensor: Some(sensor(2)),
            location: None,
            metric: MetricName::parse("t").unwrap(),
            bucket_ms: HOUR,
            aggregations: vec![Aggregation::Count, Aggregation::Max],
            from: Some(from),
            to: None,
        })
        .unwrap();
    for bucket in &buckets {
        let inside: Vec<f64> = model
            .iter()
            .filter(|reading| {
                reading.sensor_id == sensor(2)
                    && reading.read_at >= from
                    && reading.read_at.0.div_euclid(HOUR) * HOUR == bucket.start.0
            })
            .filter_map(|reading| reading.values.get("t"))
            .collect();
        assert_eq!(bucket.values[0], Some(inside.len() as f64));
        assert_eq!(
            bucket.values[1],
            inside.iter().copied().reduce(f64::max),
            "max of the bucket at {}",
            bucket.start.0
        );
    }
    let bucketed: f64 = buckets.iter().filter_map(|bucket| bucket.values[0]).sum();
    let expected = model
        .iter()
        .filter(|reading| reading.sensor_id == sensor(2) && reading.read_at >= from)
        .count();
    assert_eq!(bucketed as usize, expected);
}

/// The time ranges the summary checks use: unbounded, on hour edges, and cutting chunks at
/// both ends (the hour of `from` and of `to - 1` hold chunks that straddle the range).
fn summary_ranges() -> Vec<(Option<Millis>, Option<Millis>)> {
    let at = |hours: i64, extra: i64| Some(Millis(1_000 * HOUR + hours * HOUR + extra));
    vec![
        (None, None),
        (at(1, 0), at(5, 0)),
        (at(1, 1), at(4, 1_234_000)),
        (at(2, 1_800_000), None),
        (None, at(3, 999)),
        (at(2, 7), at(2, 2_000_000)),
    ]
}

/// Sample mean and standard deviation, computed directly (two passes) by the test.
fn mean_and_stddev(values: &[f64]) -> (f64, Option<f64>) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let stddev = (values.len() > 1).then(|| {
        let squares: f64 = values.iter().map(|value| (value - mean).powi(2)).sum();
        (squares / (values.len() as f64 - 1.0)).sqrt()
    });
    (mean, stddev)
}

fn close(left: f64, right: f64) -> bool {
    (left - right).abs() <= 1e-9 * right.abs().max(1.0)
}

/// Statistics and hour/day buckets without percentiles (answered from chunk summaries where
/// a chunk lies inside the range) against values computed here from the model, and against
/// the same questions with a percentile (every chunk decoded): count, min, max, sum, mean and
/// stddev must be the same to the last bit.
fn check_summaries(store: &SqliteStore, model: &[Reading]) {
    let in_range = |reading: &Reading, from: Option<Millis>, to: Option<Millis>| {
        from.is_none_or(|from| reading.read_at >= from) && to.is_none_or(|to| reading.read_at < to)
    };
    for metric in ["t", "u"] {
        for (from, to) in summary_ranges() {
            for group_by in [GroupBy::Sensor, GroupBy::Country] {
                let query = StatsQuery {
                    metric: MetricName::parse(metric).unwrap(),
                    group_by,
                    from,
                    to,
                    percentiles: vec![],
                };
                let summarised = store.reading_stats(&query).unwrap();
                let decoded = store
                    .reading_stats(&StatsQuery {
                        percentiles: vec![50.0],
                        ..query.clone()
                    })
                    .unwrap();
                let context = format!("{metric} {group_by:?} {from:?}..{to:?}");
                assert_eq!(summarised.len(), decoded.len(), "{context}");
                for (plain, exact) in summarised.iter().zip(&decoded) {
                    assert_eq!(plain.key, exact.key, "{context}");
                    let (left, right) = (&plain.summary, &exact.summary);
                    assert_eq!(
                        (left.count, left.min, left.max, left.mean, left.stddev),
                        (right.count, right.min, right.max, right.mean, right.stddev),
                        "summaries and decoding agree: {context} {:?}",
                        plain.key
                    );
                }
                let mut expected = std::collections::BTreeMap::<String, Vec<f64>>::new();
                for reading in model.iter().filter(|reading| in_range(reading, from, to)) {
                    let Some(value) = reading.values.get(metric) else {
                        continue;
                    };
                    let key = match group_by {
                        GroupBy::Sensor => reading.sensor_id.to_string(),
                        _ if reading.location_id == location(0) => "DE".to_string(),
                        _ => "FR".to_string(),
                    };
                    expected.entry(key).or_default().push(value);
                }
                assert_eq!(summarised.len(), expected.len(), "groups of {context}");
                for (group, (key, values)) in summarised.iter().zip(expected) {
                    assert_eq!(group.key.as_deref(), Some(key.as_str()), "{context}");
                    let summary = &group.summary;
                    assert_eq!(summary.count, values.len() as u64, "{context} {key}");
                    assert_eq!(summary.min, values.iter().copied().fold(f64::MAX, f64::min));
                    assert_eq!(summary.max, values.iter().copied().fold(f64::MIN, f64::max));
                    let (mean, stddev) = mean_and_stddev(&values);
                    assert!(close(summary.mean, mean), "mean of {context} {key}");
                    match (summary.stddev, stddev) {
                        (Some(got), Some(want)) => {
                            assert!(close(got, want), "stddev of {context} {key}: {got} {want}")
                        }
                        (got, want) => assert_eq!(got, want, "{context} {key}"),
                    }
                }
            }
            for (bucket_ms, sensor_filter) in [(HOUR, None), (24 * HOUR, None), (HOUR, Some(2))] {
                let plain = vec![
                    Aggregation::Count,
                    Aggregation::Sum,
                    Aggregation::Avg,
                    Aggregation::Min,
                    Aggregation::Max,
                    Aggregation::Stddev,
                ];
                let query = AggregateQuery {
                    sensor: sensor_filter.map(sensor),
                    location: None,
                    metric: MetricName::parse(metric).unwrap(),
                    bucket_ms,
                    aggregations: plain.clone(),
                    from,
                    to,
                };
                let summarised = store.aggregate_readings(&query).unwrap();
                let mut with_percentile = plain.clone();
                with_percentile.push(Aggregation::Percentile(50.0));
                let decoded = store
                    .aggregate_readings(&AggregateQuery {
                        aggregations: with_percentile,
                        ..query.clone()
                    })
                    .unwrap();
                let context = format!("{metric} {bucket_ms} {sensor_filter:?} {from:?}..{to:?}");
                assert_eq!(summarised.len(), decoded.len(), "{context}");
                for (left, right) in summarised.iter().zip(&decoded) {
                    assert_eq!(left.start, right.start, "{context}");
                    assert_eq!(left.values[..], right.values[..6], "{context}");
                }
                let mut expected = std::collections::BTreeMap::<i64, Vec<f64>>::new();
                for reading in model.iter().filter(|reading| {
                    in_range(reading, from, to)
                        && sensor_filter.is_none_or(|index| reading.sensor_id == sensor(index))
                }) {
                    if let Some(value) = reading.values.get(metric) {
                        expected
                            .entry(reading.read_at.0.div_euclid(bucket_ms) * bucket_ms)
                            .or_default()
                            .push(value);
                    }
                }
                assert_eq!(summarised.len(), expected.len(), "buckets of {context}");
                for (bucket, (start, values)) in summarised.iter().zip(expected) {
                    assert_eq!(bucket.start, Millis(start), "{context}");
                    let got: Vec<f64> = bucket
                        .values
                        .iter()
                        .map(|value| value.unwrap_or(-1.0))
                        .collect();
                    let (mean, stddev) = mean_and_stddev(&values);
                    assert_eq!(got[0], values.len() as f64, "count in {context} at {start}");
                    assert!(
                        close(got[1], values.iter().sum()),
                        "sum in {context} at {start}"
                    );
                    assert!(close(got[2], mean), "avg in {context} at {start}");
                    assert_eq!(got[3], values.iter().copied().fold(f64::MAX, f64::min));
                    assert_eq!(got[4], values.iter().copied().fold(f64::MIN, f64::max));
                    assert!(
                        close(got[5], stddev.unwrap_or(-1.0)),
                        "stddev in {context} at {start}"
                    );
                }
            }
        }
    }
}

#[test]
fn queries_over_overlapping_chunks_and_landed_rows_match_a_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_flushes(dir.path());
    register(&store);
    let mut random = Lcg(7);
    let mut model = Vec::new();
    fill(&store, &mut random, 40, &mut model);
    assert!(store.landed_rows() > 0, "some rows are still landed");
    check_queries(&store, &model);
    check_statistics(&store, &model);
    check_summaries(&store, &model);
    store.flush_all().unwrap();
    check_queries(&store, &model);
    check_statistics(&store, &model);
    check_summaries(&store, &model);
    drop(store);
    let reopened = small_flushes(dir.path());
    check_queries(&reopened, &model);
}

#[test]
fn retention_cuts_through_chunks_and_frees_their_dedup_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_flushes(dir.path());
    register(&store);
    let mut random = Lcg(11);
    let mut model = Vec::new();
    fill(&store, &mut random, 30, &mut model);
    store.flush_all().unwrap();
    // Not on a span boundary: some chunks straddle the cutoff and are rewritten.
    let cutoff = Millis(1_000 * HOUR + 3 * HOUR + 1_234_000);
    let mut removed = 0;
    loop {
        let step = store.retain(cutoff, 50).unwrap();
        if step == 0 {
            break;
        }
        removed += step;
    }
    let gone: Vec<Reading> = model
        .iter()
        .filter(|reading| reading.read_at < cutoff)
        .cloned()
        .collect();
    assert_eq!(removed as usize, gone.len());
    model.retain(|reading| reading.read_at >= cutoff);
    check_queries(&store, &model);
    // The chunks retention rewrote were summarised again with the readings they kept.
    check_summaries(&store, &model);
    let resent = gone
        .iter()
        .find(|reading| reading.message_id.is_some())
        .unwrap();
    let outcome = store
        .append(
            AppendBatch {
                readings: vec![ValidReading {
                    sensor_id: resent.sensor_id.clone(),
                    location_id: resent.location_id.clone(),
                    read_at: Millis(cutoff.0 + 1),
                    values: resent.values.clone(),
                    message_id: resent.message_id.clone(),
                }],
                ..Default::default()
            },
            Millis(2_100_000_000_000),
        )
        .unwrap();
    assert!(
        matches!(outcome[0], AppendOutcome::Accepted(_)),
        "a removed reading's dedup key is free again, as when rows were deleted"
    );
}

/// The schema of version 4 (three migrations of audrey.db, one of landing.db), verbatim.
const V4_MAIN: &str = r#"
    CREATE TABLE locations (id TEXT PRIMARY KEY, name TEXT NOT NULL, city TEXT, country TEXT,
        latitude REAL NOT NULL, longitude REAL NOT NULL, altitude REAL, timezone TEXT NOT NULL,
        iata TEXT, icao TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        deleted_at INTEGER);
    CREATE TABLE sensors (id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
        location_id TEXT NOT NULL REFERENCES locations(id), metrics TEXT NOT NULL,
        expected_interval_seconds INTEGER, created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, deleted_at INTEGER);
    CREATE INDEX sensors_location ON sensors(location_id);
    CREATE TABLE readings (seq INTEGER PRIMARY KEY, id BLOB NOT NULL, sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL, read_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
        message_id TEXT, vals TEXT NOT NULL);
    CREATE UNIQUE INDEX readings_id ON readings(id);
    CREATE INDEX readings_sensor_time ON readings(sensor_id, read_at, id);
    CREATE INDEX readings_location_time ON readings(location_id, read_at, id);
    CREATE INDEX readings_time ON readings(read_at, id);
    CREATE UNIQUE INDEX readings_message ON readings(sensor_id, message_id)
        WHERE message_id IS NOT NULL;
    CREATE TABLE tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        scopes TEXT NOT NULL, sensor_id TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER);
    CREATE TABLE staged_changes (id TEXT PRIMARY KEY, link_hash TEXT NOT NULL UNIQUE,
        entity TEXT NOT NULL, entity_id TEXT, action TEXT NOT NULL, body TEXT,
        created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, status TEXT NOT NULL,
        finished_at INTEGER);
    CREATE INDEX staged_changes_status ON staged_changes(status, created_at);
    ALTER TABLE locations ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX locations_icao ON locations(icao) WHERE icao IS NOT NULL;
    CREATE INDEX locations_iata ON locations(iata) WHERE iata IS NOT NULL;
    CREATE INDEX locations_position ON locations(latitude, longitude);
    PRAGMA user_version = 3;
"#;

const V4_LANDING: &str = r#"
    CREATE TABLE landing (seq INTEGER PRIMARY KEY, id BLOB NOT NULL, sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL, read_at INTEGER NOT NULL, received_at INTEGER NOT NULL,
        message_id TEXT, vals TEXT NOT NULL);
    CREATE TABLE quarantine (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL,
        sensor_id TEXT, reason TEXT NOT NULL, path TEXT NOT NULL, message TEXT NOT NULL,
        payload TEXT NOT NULL);
    CREATE INDEX quarantine_sensor ON quarantine(sensor_id, id);
    CREATE TABLE sensor_counters (sensor_id TEXT PRIMARY KEY, accepted INTEGER NOT NULL DEFAULT 0,
        duplicate INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
    PRAGMA user_version = 1;
"#;

fn insert_legacy(connection: &rusqlite::Connection, table: &str, reading: &Reading) {
    connection
        .execute(
            &format!(
                "INSERT INTO {table} (id, sensor_id, location_id, read_at, received_at,
                 message_id, vals) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            rusqlite::params![
                reading.id.as_bytes(),
                reading.sensor_id.as_str(),
                reading.location_id.as_str(),
                reading.read_at.0,
                reading.received_at.0,
                reading.message_id.as_ref().map(|message| message.as_str()),
                reading.values.to_json(),
            ],
        )
        .unwrap();
}

#[test]
fn a_data_directory_of_the_row_per_reading_layout_converts_on_open_without_losing_a_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut random = Lcg(3);
    let readings: Vec<Reading> = (0..2_500)
        .map(|index| {
            let sensor_index = random.below(SENSORS as u64) as usize;
            Reading {
                id: ReadingId(uuid::Uuid::now_v7()),
                sensor_id: sensor(sensor_index),
                location_id: location(sensor_index),
                read_at: Millis(1_000 * HOUR + random.below(3 * HOUR as u64) as i64),
                received_at: Millis(2_000_000_000_000 + index / 100),
                values: ReadingValues(vec![(
                    MetricName::parse("t").unwrap(),
                    random.below(10_000) as f64 / 3.0,
                )]),
                message_id: Some(MessageId::parse(&format!("legacy-{index}")).unwrap()),
            }
        })
        .collect();
    {
        let main = rusqlite::Connection::open(dir.path().join("audrey.db")).unwrap();
        main.execute_batch(V4_MAIN).unwrap();
        let landing = rusqlite::Connection::open(dir.path().join("landing.db")).unwrap();
        landing.execute_batch(V4_LANDING).unwrap();
        // Flushed rows, landed rows, and rows in both (a crash mid-flush of the old layout).
        for reading in &readings[..2_000] {
            insert_legacy(&main, "readings", reading);
        }
        for reading in &readings[1_900..] {
            insert_legacy(&landing, "landing", reading);
        }
    }
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert_eq!(
        store.landed_rows(),
        500,
        "the old landing rows are landed again"
    );
    register(&store);
    check_queries(&store, &readings);
    let again = store
        .append(
            AppendBatch {
                readings: vec![ValidReading {
                    sensor_id: readings[10].sensor_id.clone(),
                    location_id: readings[10].location_id.clone(),
                    read_at: readings[10].read_at,
                    values: readings[10].values.clone(),
                    message_id: readings[10].message_id.clone(),
                }],
                ..Default::default()
            },
            Millis(2_100_000_000_000),
        )
        .unwrap();
    assert_eq!(again, [AppendOutcome::Duplicate(readings[10].id)]);
    store.flush_all().unwrap();
    drop(store);
    let reopened = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    check_queries(&reopened, &readings);
    let ids: HashSet<ReadingId> = pages(
        &reopened,
        &ReadingQuery {
            limit: 1000,
            ..Default::default()
        },
    )
    .iter()
    .map(|reading| reading.id)
    .collect();
    assert_eq!(ids.len(), readings.len(), "every reading once");
    let tables: Vec<String> = rusqlite::Connection::open(dir.path().join("audrey.db"))
        .unwrap()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !tables.contains(&"readings".to_string()),
        "the old table is gone: {tables:?}"
    );
}

#[test]
fn a_paged_scan_that_a_flush_interrupts_still_returns_every_reading_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_flushes(dir.path());
    register(&store);
    let mut random = Lcg(5);
    let mut model = Vec::new();
    fill(&store, &mut random, 30, &mut model);
    for order in [Order::Oldest, Order::Newest] {
        let mut query = ReadingQuery {
            order,
            limit: 9,
            ..Default::default()
        };
        let mut seen = Vec::new();
        let mut pages_read = 0;
        loop {
            let page = store.readings(&query).unwrap();
            seen.extend(page.items);
            pages_read += 1;
            // Between pages, landed readings move into chunks (and more land) now and then:
            // the paused walk must not be continued over a changed layout.
            if pages_read % 5 == 0 {
                store.flush_all().unwrap();
            }
            match page.next_cursor {
                Some(cursor) => query.after = Some(Cursor::decode(&cursor).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, sorted(model.clone(), order), "{order:?}");
        fill(&store, &mut random, 3, &mut Vec::new()); // new rows after the scan: ignored
        model = pages(
            &store,
            &ReadingQuery {
                order: Order::Oldest,
                limit: 50,
                ..Default::default()
            },
        );
    }
}

#[test]
fn chunks_stored_before_summaries_existed_are_summarised_at_open() {
    let (dir, model) = flushed_and_closed(13);
    // Back to schema version 6 (four migrations of audrey.db): chunks without summaries,
    // and the dedup index of that version (its entries do not matter here).
    let connection = rusqlite::Connection::open(dir.path().join("audrey.db")).unwrap();
    connection
        .execute_batch(
            "DROP TABLE chunk_summaries; DROP TABLE summary_backfill; DROP TABLE dedup_keys;
             CREATE TABLE reading_keys (sensor_id TEXT NOT NULL, message_id TEXT NOT NULL,
                 id BLOB NOT NULL, PRIMARY KEY (sensor_id, message_id)) WITHOUT ROWID;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    drop(connection);
    let reopened = small_flushes(dir.path());
    check_summaries(&reopened, &model);
    let connection = rusqlite::Connection::open(dir.path().join("audrey.db")).unwrap();
    let (chunks, summarised, pending): (i64, i64, i64) = connection
        .query_row(
            "SELECT (SELECT COUNT(*) FROM chunks),
                    (SELECT COUNT(DISTINCT chunk) FROM chunk_summaries),
                    (SELECT COUNT(*) FROM summary_backfill)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert!(chunks > 0);
    assert_eq!(summarised, chunks, "every chunk has its summaries");
    assert_eq!(pending, 0, "the backfill is finished and forgotten");
}

/// Appends `readings` again as new requests would (same sensors and message ids, new times)
/// and answers the outcomes.
fn resend(store: &SqliteStore, readings: &[&Reading]) -> Vec<AppendOutcome> {
    store
        .append(
            AppendBatch {
                readings: readings
                    .iter()
                    .map(|reading| ValidReading {
                        sensor_id: reading.sensor_id.clone(),
                        location_id: reading.location_id.clone(),
                        read_at: Millis(reading.read_at.0 + 1),
                        values: reading.values.clone(),
                        message_id: reading.message_id.clone(),
                    })
                    .collect(),
                ..Default::default()
            },
            Millis(2_200_000_000_000),
        )
        .unwrap()
}

#[test]
fn a_store_of_schema_8_keeps_its_dedup_keys_when_they_move_to_hashed_keys() {
    let (dir, model) = flushed_and_closed(17);
    // Back to schema version 8 (five migrations of audrey.db): the dedup index as it was,
    // texts and id per reading, filled from what the store holds.
    let connection = rusqlite::Connection::open(dir.path().join("audrey.db")).unwrap();
    connection
        .execute_batch(
            "DROP TABLE dedup_keys;
             CREATE TABLE reading_keys (
                 sensor_id TEXT NOT NULL,
                 message_id TEXT NOT NULL,
                 id BLOB NOT NULL,
                 PRIMARY KEY (sensor_id, message_id)
             ) WITHOUT ROWID;
             PRAGMA user_version = 5;",
        )
        .unwrap();
    let keyed: Vec<&Reading> = model
        .iter()
        .filter(|reading| reading.message_id.is_some())
        .collect();
    for reading in &keyed {
        connection
            .execute(
                "INSERT INTO reading_keys (sensor_id, message_id, id) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    reading.sensor_id.as_str(),
                    reading.message_id.as_ref().unwrap().as_str(),
                    reading.id.as_bytes()
                ],
            )
            .unwrap();
    }
    drop(connection);
    assert_eq!(SqliteStore::migrate_only(dir.path()).unwrap(), 11);
    let reopened = small_flushes(dir.path());
    assert!(keyed.len() > 100);
    let outcomes = resend(&reopened, &keyed);
    for (reading, outcome) in keyed.iter().zip(&outcomes) {
        assert_eq!(
            *outcome,
            AppendOutcome::Duplicate(reading.id),
            "a packed reading's key survives the conversion"
        );
    }
    let connection = rusqlite::Connection::open(dir.path().join("audrey.db")).unwrap();
    let (old_tables, entries): (i64, i64) = connection
        .query_row(
            "SELECT (SELECT COUNT(*) FROM sqlite_master WHERE name = 'reading_keys'),
                    (SELECT COUNT(*) FROM dedup_keys)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(old_tables, 0, "reading_keys is dropped");
    assert_eq!(entries as usize, keyed.len());
    check_queries(&reopened, &model);
}

#[test]
fn a_hashed_key_that_names_a_chunk_without_the_message_is_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_flushes(dir.path());
    register(&store);
    let mut random = Lcg(19);
    let mut model = Vec::new();
    fill(&store, &mut random, 12, &mut model);
    store.flush_all().unwrap();
    drop(store);
    // An index entry for a key no stored reading has, pointing at a chunk of its sensor: what
    // a second key with the same 64-bit hash would look like.
    let stranger = model
        .iter()
        .find(|reading| reading.message_id.is_some())
        .unwrap()
        .clone();
    let connection = rusqlite::Connection::open(dir.path().join("audrey.db")).unwrap();
    // A chunk of `stranger`'s sensor holding a reading at its time (its own chunk, or one
    // overlapping it): it has message ids, just not this one.
    let chunk: i64 = connection
        .query_row(
            "SELECT chunk FROM chunks WHERE sensor_id = ?1 AND min_read_at <= ?2
             AND max_read_at >= ?2 LIMIT 1",
            rusqlite::params![stranger.sensor_id.as_str(), stranger.read_at.0],
            |row| row.get(0),
        )
        .unwrap();
    // The key of (sensor, "never-sent"), computed by the store itself: append it once to a
    // throw-away store and read its entry back.
    let scratch = tempfile::tempdir().unwrap();
    let other = small_flushes(scratch.path());
    register(&other);
    let mut never_sent = stranger.clone();
    never_sent.message_id = Some(MessageId::parse("never-sent").unwrap());
    assert!(matches!(
        resend(&other, &[&never_sent])[0],
        AppendOutcome::Accepted(_)
    ));
    other.flush_all().unwrap();
    drop(other);
    let key: i64 = rusqlite::Connection::open(scratch.path().join("audrey.db"))
        .unwrap()
        .query_row("SELECT key FROM dedup_keys", [], |row| row.get(0))
        .unwrap();
    connection
        .execute(
            "INSERT INTO dedup_keys (key, chunk) VALUES (?1, ?2)",
            rusqlite::params![key, chunk],
        )
        .unwrap();
    drop(connection);
    let reopened = small_flushes(dir.path());
    let outcomes = resend(&reopened, &[&never_sent, &stranger]);
    assert!(
        matches!(outcomes[0], AppendOutcome::Accepted(_)),
        "an index entry only says where to look: {outcomes:?}"
    );
    assert_eq!(outcomes[1], AppendOutcome::Duplicate(stranger.id));
}

#[test]
fn past_the_memtable_limit_a_commit_flushes_one_small_step_not_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path(),
        SqliteOptions {
            flush_rows: 30,
            flush_max_rows: 10_000,
            memtable_max_rows: 100,
            inline_flush_rows: 30,
            ..Default::default()
        },
    )
    .unwrap();
    register(&store);
    let mut landed_after = Vec::new();
    let mut accepted = 0;
    for batch in 0..6i64 {
        let readings: Vec<ValidReading> = (0..50i64)
            .map(|index| ValidReading {
                sensor_id: sensor(index as usize % SENSORS),
                location_id: location(index as usize % SENSORS),
                read_at: Millis(1_000 * HOUR + batch * 1_000 + index),
                values: ReadingValues(vec![(MetricName::parse("t").unwrap(), index as f64)]),
                message_id: Some(MessageId::parse(&format!("b{batch}-{index}")).unwrap()),
            })
            .collect();
        let outcomes = store
            .append(
                AppendBatch {
                    readings,
                    ..Default::default()
                },
                Millis(2_000_000_000_000 + batch),
            )
            .unwrap();
        accepted += outcomes
            .iter()
            .filter(|outcome| matches!(outcome, AppendOutcome::Accepted(_)))
            .count();
        landed_after.push(store.landed_rows());
    }
    // From the third commit on, each finds 100 landed and first flushes the oldest 30 rows,
    // extended to the whole batch they start (50), not all 100.
    assert_eq!(landed_after, vec![50, 100, 100, 100, 100, 100]);
    assert_eq!(accepted, 300);
    let all = pages(
        &store,
        &ReadingQuery {
            order: Order::Oldest,
            limit: 1_000,
            ..Default::default()
        },
    );
    assert_eq!(all.len(), 300, "flushed and landed readings are all found");
}
