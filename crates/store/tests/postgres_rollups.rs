//! The PostgreSQL store's hourly rollups: statistics and whole-hour buckets stay exact while
//! readings arrive late into hours already rolled up, across partial edge hours, across a
//! restart before maintenance merged anything, after retention, and after upgrading a
//! database written before rollups existed. Every answer is checked against values computed
//! here from the readings themselves.
//!
//! Runs when `AUDREY_TEST_POSTGRES_URL` names a server (a fresh database per test).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "conformance/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeMap;

use audrey_model::{LocationId, MessageId, MetricName, Millis, ReadingValues, SensorId};
use audrey_model::{Summary, ValidReading};
use audrey_store::{
    AggregateQuery, Aggregation, AppendBatch, GroupBy, PostgresOptions, PostgresStore, StatsQuery,
    Store,
};

use harness::{BASE, DAY, RECEIVED, fleet};

const HOUR: i64 = 3_600_000;

struct Fixture {
    url: String,
    admin_url: String,
    name: String,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        let Ok(admin_url) = std::env::var("AUDREY_TEST_POSTGRES_URL") else {
            eprintln!("skipping: AUDREY_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!("audrey_test_{}", uuid::Uuid::now_v7().simple());
        sql(&admin_url, &format!("CREATE DATABASE {name}"));
        Some(Fixture {
            url: harness::with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }

    fn open(&self) -> PostgresStore {
        PostgresStore::open(
            &self.url,
            PostgresOptions {
                pool_size: 3,
                ..Default::default()
            },
        )
        .unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        sql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn sql(url: &str, statement: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        client.batch_execute(statement).await.unwrap();
        drop(client);
        let _ = driver.await;
    });
}

fn count_rows(url: &str, table: &str) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        let count: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        drop(client);
        let _ = driver.await;
        count
    })
}

/// A small deterministic generator (no dependency): values with a large offset, so a naive
/// sum of squares would lose the variance.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn reading(sensor: &str, read_at: i64, value: f64, message: Option<&str>) -> ValidReading {
    let location = if sensor.starts_with('a') {
        "site-a"
    } else {
        "site-b"
    };
    let mut values = vec![(MetricName::parse("t").unwrap(), value)];
    if read_at % 3 != 0 {
        values.push((MetricName::parse("u").unwrap(), -value / 7.0));
    }
    ValidReading {
        sensor_id: SensorId::parse(sensor).unwrap(),
        location_id: LocationId::parse(location).unwrap(),
        read_at: Millis(read_at),
        values: ReadingValues(values),
        message_id: message.map(|text| MessageId::parse(text).unwrap()),
    }
}

/// `count` readings of the four fleet sensors spread over `hours` hours from `start`.
fn generate(random: &mut Lcg, start: i64, hours: i64, count: usize) -> Vec<ValidReading> {
    let sensors = ["a1", "a2", "b1", "b2"];
    (0..count)
        .map(|_| {
            let sensor = sensors[(random.next() % 4) as usize];
            let read_at = start + (random.next() as i64) % (hours * HOUR);
            let value = 1.0e6 + (random.next() % 100_000) as f64 * 0.013;
            reading(sensor, read_at, value, None)
        })
        .collect()
}

fn append(store: &dyn Store, readings: &[ValidReading]) {
    for part in readings.chunks(97) {
        store
            .append(
                AppendBatch {
                    readings: part.to_vec(),
                    ..Default::default()
                },
                RECEIVED,
            )
            .unwrap();
    }
}

fn close(left: f64, right: f64) -> bool {
    left == right || (left - right).abs() <= 1e-9 * left.abs().max(right.abs()).max(1.0)
}

/// Count, min, max, mean, sample stddev of `values`, two-pass.
fn expected(values: &[f64]) -> (u64, f64, f64, f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let m2: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let stddev = (values.len() > 1).then(|| (m2 / (n - 1.0)).sqrt());
    (values.len() as u64, min, max, mean, stddev)
}

fn value_of(reading: &ValidReading, metric: &str) -> Option<f64> {
    reading
        .values
        .0
        .iter()
        .find(|(name, _)| name.as_str() == metric)
        .map(|(_, value)| *value)
}

fn in_range(read_at: i64, from: Option<i64>, to: Option<i64>) -> bool {
    from.is_none_or(|from| read_at >= from) && to.is_none_or(|to| read_at < to)
}

fn check_summary(summary: &Summary, values: &[f64], what: &str) {
    let (count, min, max, mean, stddev) = expected(values);
    assert_eq!(
        (summary.count, summary.min, summary.max),
        (count, min, max),
        "{what}"
    );
    assert!(
        close(summary.mean, mean),
        "{what}: {} vs {mean}",
        summary.mean
    );
    match (summary.stddev, stddev) {
        (Some(got), Some(want)) => assert!(close(got, want), "{what}: {got} vs {want}"),
        (None, None) => {}
        other => panic!("{what}: stddev {other:?}"),
    }
}

/// Statistics by sensor and by country, with and without percentiles, and hourly and daily
/// buckets, for `from..to`, against `model`.
fn check(store: &dyn Store, model: &[ValidReading], from: Option<i64>, to: Option<i64>) {
    for metric in ["t", "u"] {
        for (group_by, percentiles) in [
            (GroupBy::Sensor, vec![]),
            (GroupBy::Sensor, vec![50.0]),
            (GroupBy::Country, vec![]),
            (GroupBy::Location, vec![0.0, 100.0]),
        ] {
            let query = StatsQuery {
                metric: MetricName::parse(metric).unwrap(),
                group_by,
                from: from.map(Millis),
                to: to.map(Millis),
                percentiles: percentiles.clone(),
            };
            let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for reading in model {
                if !in_range(reading.read_at.0, from, to) {
                    continue;
                }
                let Some(value) = value_of(reading, metric) else {
                    continue;
                };
                let key = match group_by {
                    GroupBy::Sensor => reading.sensor_id.as_str().to_string(),
                    GroupBy::Location => reading.location_id.as_str().to_string(),
                    _ if reading.location_id.as_str() == "site-a" => "DE".to_string(),
                    _ => "FR".to_string(),
                };
                groups.entry(key).or_default().push(value);
            }
            let answer = store.reading_stats(&query).unwrap();
            let keys: Vec<&str> = answer
                .iter()
                .map(|group| group.key.as_deref().unwrap())
                .collect();
            let want: Vec<&str> = groups.keys().map(String::as_str).collect();
            assert_eq!(keys, want, "{query:?}");
            for (group, values) in answer.iter().zip(groups.values_mut()) {
                let what = format!("{query:?} group {:?}", group.key);
                check_summary(&group.summary, values, &what);
                values.sort_by(f64::total_cmp);
                assert_eq!(group.summary.percentiles.len(), percentiles.len(), "{what}");
                for (p, got) in &group.summary.percentiles {
                    // percentile_cont: linear between the two closest ranks.
                    let rank = p / 100.0 * (values.len() - 1) as f64;
                    let low = values[rank.floor() as usize];
                    let high = values[rank.ceil() as usize];
                    let want = low + (high - low) * (rank - rank.floor());
                    assert!(close(*got, want), "{what} p{p}: {got} vs {want}");
                }
            }
        }
        for (bucket_ms, sensor) in [(HOUR, None), (DAY, Some("b1")), (2 * HOUR, None)] {
            let query = AggregateQuery {
                sensor: sensor.map(|id| SensorId::parse(id).unwrap()),
                location: None,
                metric: MetricName::parse(metric).unwrap(),
                bucket_ms,
                aggregations: vec![
                    Aggregation::Count,
                    Aggregation::Sum,
                    Aggregation::Avg,
                    Aggregation::Min,
                    Aggregation::Max,
                    Aggregation::Stddev,
                ],
                from: from.map(Millis),
                to: to.map(Millis),
            };
            let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for reading in model {
                if !in_range(reading.read_at.0, from, to)
                    || sensor.is_some_and(|id| reading.sensor_id.as_str() != id)
                {
                    continue;
                }
                if let Some(value) = value_of(reading, metric) {
                    let at = reading.read_at.0;
                    buckets
                        .entry(at - at.rem_euclid(bucket_ms))
                        .or_default()
                        .push(value);
                }
            }
            let answer = store.aggregate_readings(&query).unwrap();
            let starts: Vec<i64> = answer.iter().map(|bucket| bucket.start.0).collect();
            assert_eq!(
                starts,
                buckets.keys().copied().collect::<Vec<_>>(),
                "{query:?}"
            );
            for (bucket, values) in answer.iter().zip(buckets.values()) {
                let (count, min, max, mean, stddev) = expected(values);
                let got: Vec<Option<f64>> = bucket.values.clone();
                let what = format!("{query:?} bucket {}", bucket.start.0);
                assert_eq!(got[0], Some(count as f64), "{what}");
                assert!(close(got[1].unwrap(), values.iter().sum()), "{what}");
                assert!(close(got[2].unwrap(), mean), "{what}");
                assert_eq!((got[3], got[4]), (Some(min), Some(max)), "{what}");
                match (got[5], stddev) {
                    (Some(got), Some(want)) => assert!(close(got, want), "{what}"),
                    (None, None) => {}
                    other => panic!("{what}: stddev {other:?}"),
                }
            }
        }
    }
}

/// Ranges with open ends, whole hours only, partial edge hours, and inside one hour.
fn ranges(start: i64) -> Vec<(Option<i64>, Option<i64>)> {
    vec![
        (None, None),
        (Some(start + HOUR), Some(start + 4 * HOUR)),
        (Some(start + HOUR + 1_234), Some(start + 4 * HOUR - 77)),
        (Some(start + 2 * HOUR + 17), None),
        (None, Some(start + 3 * HOUR + 5)),
        (Some(start + 30_000), Some(start + 900_000)),
    ]
}

#[test]
fn late_readings_into_rolled_up_hours_count_at_once_and_after_the_merge() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let store = fixture.open();
    fleet(&store);
    let mut random = Lcg(7);
    let start = BASE + 5 * HOUR;
    let mut model = generate(&mut random, start, 6, 600);
    append(&store, &model);
    check(&store, &model, None, None);
    store.fold_rollups().unwrap();
    assert_eq!(count_rows(&fixture.url, "reading_rollup_deltas"), 0);
    assert!(count_rows(&fixture.url, "reading_rollups") > 0);
    for (from, to) in ranges(start) {
        check(&store, &model, from, to);
    }
    // Late and out of order: into hours already merged, a new minimum and maximum.
    let late = vec![
        reading("a1", start + HOUR + 5, -3.5e6, None),
        reading("b2", start + 2 * HOUR + 1, 9.0e9, None),
        reading("a2", start + 5 * HOUR + 59 * 60_000, 1.0e6 + 0.5, None),
    ];
    append(&store, &late);
    model.extend(late);
    for (from, to) in ranges(start) {
        check(&store, &model, from, to);
    }
    store.fold_rollups().unwrap();
    for (from, to) in ranges(start) {
        check(&store, &model, from, to);
    }
}

#[test]
fn duplicates_are_not_rolled_up() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let store = fixture.open();
    fleet(&store);
    let keyed = |message: &str, value: f64| reading("a1", BASE + 10, value, Some(message));
    append(&store, &[keyed("m1", 1.0), keyed("m1", 5.0)]);
    append(&store, &[keyed("m1", 7.0), keyed("m2", 3.0)]);
    let model = vec![keyed("m1", 1.0), keyed("m2", 3.0)];
    check(&store, &model, None, None);
    store.fold_rollups().unwrap();
    check(&store, &model, None, None);
}

#[test]
fn unmerged_deltas_survive_a_restart() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let mut random = Lcg(11);
    let start = BASE + 20 * HOUR;
    let model = generate(&mut random, start, 5, 300);
    {
        let store = fixture.open();
        fleet(&store);
        append(&store, &model[..150]);
        store.fold_rollups().unwrap();
        append(&store, &model[150..]);
    }
    assert!(count_rows(&fixture.url, "reading_rollup_deltas") > 0);
    let store = fixture.open();
    for (from, to) in ranges(start) {
        check(&store, &model, from, to);
    }
    store.maintain().unwrap();
    store.fold_rollups().unwrap();
    assert_eq!(count_rows(&fixture.url, "reading_rollup_deltas"), 0);
    for (from, to) in ranges(start) {
        check(&store, &model, from, to);
    }
}

#[test]
fn a_database_from_before_rollups_is_rolled_up_by_the_migration() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let mut random = Lcg(13);
    let start = BASE + 30 * HOUR;
    let model = generate(&mut random, start, 7, 400);
    {
        let store = fixture.open();
        fleet(&store);
        append(&store, &model);
    }
    // Back to schema version 3, exactly as a database written by the previous Audrey.
    sql(
        &fixture.url,
        "DROP TABLE reading_rollups, reading_rollup_deltas;
         DELETE FROM schema_migrations WHERE version = 4",
    );
    assert_eq!(PostgresStore::migrate_only(&fixture.url).unwrap(), 4);
    assert!(count_rows(&fixture.url, "reading_rollups") > 0);
    assert_eq!(count_rows(&fixture.url, "reading_rollup_deltas"), 0);
    let store = fixture.open();
    for (from, to) in ranges(start) {
        check(&store, &model, from, to);
    }
}

#[test]
fn retention_forgets_the_rollups_of_dropped_days() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let store = fixture.open();
    fleet(&store);
    let mut random = Lcg(17);
    let old = generate(&mut random, BASE, 3, 200);
    let kept = generate(&mut random, BASE + 2 * DAY, 3, 200);
    append(&store, &old);
    store.fold_rollups().unwrap();
    append(&store, &kept);
    // Deltas of the old day still waiting when retention runs: merged, then forgotten.
    append(&store, &[reading("b1", BASE + HOUR, 42.0, None)]);
    while store.retain(Millis(BASE + DAY), 1_000).unwrap() > 0 {}
    check(&store, &kept, None, None);
    store.fold_rollups().unwrap();
    check(&store, &kept, None, None);
}

#[test]
fn a_backlog_of_many_batches_is_merged_over_several_fold_transactions() {
    let Some(fixture) = Fixture::new() else {
        return;
    };
    let store = fixture.open();
    fleet(&store);
    let mut random = Lcg(19);
    let start = BASE + 40 * HOUR;
    let model = generate(&mut random, start, 3, 500);
    // 250 batches: more delta rows than one fold transaction takes.
    for part in model.chunks(2) {
        append(&store, part);
    }
    assert_eq!(count_rows(&fixture.url, "reading_rollup_deltas"), 250);
    store.fold_rollups().unwrap();
    assert_eq!(count_rows(&fixture.url, "reading_rollup_deltas"), 0);
    for (from, to) in ranges(start) {
        check(&store, &model, from, to);
    }
}
