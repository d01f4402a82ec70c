//! PostgreSQL hourly rollups: statistics and buckets answered from rollups plus raw rows are
//! exactly what the test computes itself from every value it stored — on random data
//! appended out of order, with rollups run at random points, while appends race the rollup,
//! after a late reading lands in an hour already rolled up, after retention drops a day,
//! and after the migration that introduced rollups on a database that already held readings.
//!
//! Runs when `AUDREY_TEST_POSTGRES_URL` names a server (a fresh database per test).
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "conformance/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;

use audrey_model::{LocationId, MetricName, Millis, ReadingValues, SensorId, ValidReading};
use audrey_store::{
    AggregateQuery, Aggregation, AppendBatch, GroupBy, PostgresOptions, PostgresStore, StatsQuery,
    Store,
};

use harness::{BASE, DAY, PgFixture, location, query_i64, sensor, sql};

const HOUR: i64 = 3_600_000;
const PERCENTILES: [f64; 5] = [0.0, 25.0, 50.0, 99.0, 100.0];

/// splitmix64: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Sites and their countries, sensors and their sites.
const SITES: [(&str, &str); 3] = [("r-berlin", "DE"), ("r-munich", "DE"), ("r-lyon", "FR")];
const SENSORS: [(&str, &str); 6] = [
    ("rs-1", "r-berlin"),
    ("rs-2", "r-berlin"),
    ("rs-3", "r-munich"),
    ("rs-4", "r-munich"),
    ("rs-5", "r-lyon"),
    ("rs-6", "r-lyon"),
];

fn register(store: &dyn Store) {
    for (site, country) in SITES {
        location(store, site, country);
    }
    for (id, site) in SENSORS {
        sensor(store, id, site);
    }
}

/// One stored reading as the test remembers it.
#[derive(Clone, Debug)]
struct Stored {
    sensor: &'static str,
    site: &'static str,
    read_at: i64,
    temperature: f64,
    /// Large offset, present on most readings only.
    pressure: Option<f64>,
}

impl Stored {
    fn random(rng: &mut Rng, hours: i64) -> Stored {
        let (sensor, site) = SENSORS[rng.below(SENSORS.len() as u64) as usize];
        let read_at = BASE + rng.below((hours * HOUR) as u64) as i64;
        let temperature = (rng.below(100_001) as f64 - 50_000.0) / 1000.0;
        let pressure = (rng.below(10) < 7).then(|| 100_000.0 + rng.below(5_000) as f64 / 7.0);
        Stored {
            sensor,
            site,
            read_at,
            temperature,
            pressure,
        }
    }

    fn value(&self, metric: &str) -> Option<f64> {
        match metric {
            "temperature" => Some(self.temperature),
            "pressure" => self.pressure,
            _ => None,
        }
    }

    fn valid(&self) -> ValidReading {
        let mut values = Vec::new();
        if let Some(pressure) = self.pressure {
            values.push((MetricName::parse("pressure").unwrap(), pressure));
        }
        values.push((MetricName::parse("temperature").unwrap(), self.temperature));
        ValidReading {
            sensor_id: SensorId::parse(self.sensor).unwrap(),
            location_id: LocationId::parse(self.site).unwrap(),
            read_at: Millis(self.read_at),
            values: ReadingValues(values),
            message_id: None,
        }
    }
}

fn append(store: &dyn Store, readings: &[Stored]) {
    store
        .append(
            AppendBatch {
                readings: readings.iter().map(Stored::valid).collect(),
                ..Default::default()
            },
            Millis(BASE + 400 * DAY),
        )
        .unwrap();
}

/// What the test expects of one group: computed here, from the values themselves.
#[derive(Debug)]
struct Expected {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
    mean: f64,
    stddev: Option<f64>,
    sorted: Vec<f64>,
}

impl Expected {
    fn of(mut values: Vec<f64>) -> Expected {
        values.sort_by(f64::total_cmp);
        let n = values.len() as f64;
        let sum: f64 = values.iter().sum();
        let mean = sum / n;
        let squares: f64 = values.iter().map(|value| (value - mean).powi(2)).sum();
        Expected {
            count: values.len() as u64,
            min: values[0],
            max: values[values.len() - 1],
            sum,
            mean,
            stddev: (values.len() > 1).then(|| (squares / (n - 1.0)).sqrt()),
            sorted: values,
        }
    }

    /// Linear interpolation between the closest ranks, as `percentile_cont`.
    fn percentile(&self, p: f64) -> f64 {
        let rank = p / 100.0 * (self.sorted.len() - 1) as f64;
        let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
        self.sorted[low] + (self.sorted[high] - self.sorted[low]) * (rank - low as f64)
    }
}

fn close(left: f64, right: f64) -> bool {
    (left - right).abs() <= 1e-9 * left.abs().max(right.abs()).max(1.0)
}

fn country_of(site: &str) -> &'static str {
    SITES.iter().find(|(id, _)| *id == site).unwrap().1
}

/// Every `reading_stats` question the test asks, checked against `stored`.
fn check_stats(store: &dyn Store, stored: &[Stored], context: &str) {
    let ranges = [
        (None, None),
        (
            Some(BASE + 5 * HOUR + HOUR / 2),
            Some(BASE + 30 * HOUR + HOUR / 4),
        ),
        (Some(BASE + 7 * HOUR), Some(BASE + 9 * HOUR)),
        (
            Some(BASE + 11 * HOUR + 10),
            Some(BASE + 11 * HOUR + 2_000_000),
        ),
    ];
    for group_by in [GroupBy::Sensor, GroupBy::Location, GroupBy::Country] {
        for metric in ["temperature", "pressure"] {
            for (from, to) in ranges {
                for percentiles in [PERCENTILES.to_vec(), Vec::new()] {
                    let query = StatsQuery {
                        metric: MetricName::parse(metric).unwrap(),
                        group_by,
                        from: from.map(Millis),
                        to: to.map(Millis),
                        percentiles: percentiles.clone(),
                    };
                    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                    for reading in stored {
                        let inside = from.is_none_or(|from| reading.read_at >= from)
                            && to.is_none_or(|to| reading.read_at < to);
                        if let (true, Some(value)) = (inside, reading.value(metric)) {
                            let key = match group_by {
                                GroupBy::Sensor => reading.sensor.to_string(),
                                GroupBy::Location => reading.site.to_string(),
                                _ => country_of(reading.site).to_string(),
                            };
                            groups.entry(key).or_default().push(value);
                        }
                    }
                    let answered = store.reading_stats(&query).unwrap();
                    let keys: Vec<String> = answered
                        .iter()
                        .map(|group| group.key.clone().unwrap())
                        .collect();
                    let expected_keys: Vec<String> = groups.keys().cloned().collect();
                    assert_eq!(keys, expected_keys, "{context}: {query:?}");
                    for (group, (_, values)) in answered.iter().zip(groups) {
                        let expected = Expected::of(values);
                        let got = &group.summary;
                        let what = format!("{context}: {query:?} group {:?}", group.key);
                        assert_eq!(
                            (got.count, got.min, got.max),
                            (expected.count, expected.min, expected.max),
                            "{what}"
                        );
                        assert!(
                            close(got.mean, expected.mean),
                            "{what}: {got:?} {expected:?}"
                        );
                        assert_eq!(got.stddev.is_some(), expected.stddev.is_some(), "{what}");
                        if let (Some(got), Some(expected)) = (got.stddev, expected.stddev) {
                            assert!(close(got, expected), "{what}: stddev {got} vs {expected}");
                        }
                        assert_eq!(got.percentiles.len(), percentiles.len(), "{what}");
                        for (p, value) in &got.percentiles {
                            let want = expected.percentile(*p);
                            assert!(close(*value, want), "{what}: p{p} {value} vs {want}");
                        }
                    }
                }
            }
        }
    }
}

/// Sensor, site, bucket width, from, to.
type BucketQuestion = (
    Option<&'static str>,
    Option<&'static str>,
    i64,
    Option<i64>,
    Option<i64>,
);

/// `aggregate_readings` in hour, day and minute buckets, checked against `stored`.
fn check_buckets(store: &dyn Store, stored: &[Stored], context: &str) {
    let every = vec![
        Aggregation::Count,
        Aggregation::Sum,
        Aggregation::Avg,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::Stddev,
        Aggregation::Percentile(50.0),
        Aggregation::Percentile(90.0),
    ];
    let questions: [BucketQuestion; 4] = [
        (None, None, HOUR, None, None),
        (Some("rs-3"), None, DAY, None, None),
        (
            None,
            Some("r-lyon"),
            3 * HOUR,
            Some(BASE + HOUR + 17),
            Some(BASE + 20 * HOUR + 5),
        ),
        (
            Some("rs-1"),
            None,
            60_000,
            Some(BASE + 2 * HOUR),
            Some(BASE + 4 * HOUR),
        ),
    ];
    for (sensor, site, width, from, to) in questions {
        for aggregations in [
            every.clone(),
            vec![Aggregation::Count, Aggregation::Avg, Aggregation::Max],
        ] {
            let query = AggregateQuery {
                sensor: sensor.map(|id| SensorId::parse(id).unwrap()),
                location: site.map(|id| LocationId::parse(id).unwrap()),
                metric: MetricName::parse("pressure").unwrap(),
                bucket_ms: width,
                aggregations: aggregations.clone(),
                from: from.map(Millis),
                to: to.map(Millis),
            };
            let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for reading in stored {
                let wanted = sensor.is_none_or(|id| reading.sensor == id)
                    && site.is_none_or(|id| reading.site == id)
                    && from.is_none_or(|from| reading.read_at >= from)
                    && to.is_none_or(|to| reading.read_at < to);
                if let (true, Some(value)) = (wanted, reading.pressure) {
                    let start = reading.read_at - reading.read_at.rem_euclid(width);
                    buckets.entry(start).or_default().push(value);
                }
            }
            let answered = store.aggregate_readings(&query).unwrap();
            let starts: Vec<i64> = answered.iter().map(|bucket| bucket.start.0).collect();
            let expected_starts: Vec<i64> = buckets.keys().copied().collect();
            assert_eq!(starts, expected_starts, "{context}: {query:?}");
            for (bucket, (_, values)) in answered.iter().zip(buckets) {
                let expected = Expected::of(values);
                for (aggregation, value) in aggregations.iter().zip(&bucket.values) {
                    let want = match aggregation {
                        Aggregation::Count => Some(expected.count as f64),
                        Aggregation::Sum => Some(expected.sum),
                        Aggregation::Avg => Some(expected.mean),
                        Aggregation::Min => Some(expected.min),
                        Aggregation::Max => Some(expected.max),
                        Aggregation::Stddev => expected.stddev,
                        Aggregation::Percentile(p) => Some(expected.percentile(*p)),
                    };
                    let what = format!(
                        "{context}: {query:?} bucket {} {aggregation:?}",
                        bucket.start.0
                    );
                    match (value, want) {
                        (Some(got), Some(want)) => {
                            assert!(close(*got, want), "{what}: {got} vs {want}")
                        }
                        (got, want) => assert_eq!(*got, want, "{what}"),
                    }
                }
            }
        }
    }
}

fn dirty_hours(url: &str) -> i64 {
    query_i64(url, "SELECT COUNT(DISTINCT hour) FROM rollup_dirty")
}

#[test]
fn random_out_of_order_data_answers_exactly_before_during_and_after_rollups() {
    let Some(fixture) = PgFixture::new(4) else {
        return;
    };
    let store = &fixture.store;
    register(store);
    let mut rng = Rng(0x5EED_0001);
    let mut stored = Vec::new();
    for batch in 0..40 {
        let size = 1 + rng.below(150) as usize;
        let readings: Vec<Stored> = (0..size).map(|_| Stored::random(&mut rng, 40)).collect();
        append(store, &readings);
        stored.extend(readings);
        // Roll up at random points: some hours get rolled up and dirtied again, others not.
        if rng.below(4) == 0 {
            store.roll_up_all().unwrap();
        }
        if batch == 20 {
            check_stats(store, &stored, "half-way");
        }
    }
    // Some hours clean, some dirty: both kinds of part in one answer.
    assert!(dirty_hours(&fixture.url) > 0);
    assert!(query_i64(&fixture.url, "SELECT COUNT(*) FROM reading_rollups") > 0);
    check_stats(store, &stored, "mixed");
    check_buckets(store, &stored, "mixed");

    assert!(store.roll_up_all().unwrap() > 0);
    assert_eq!(dirty_hours(&fixture.url), 0);
    assert_eq!(store.dirty_hours().unwrap(), 0);
    // Every value is in a rollup now, once.
    let rolled = query_i64(
        &fixture.url,
        "SELECT SUM(n)::int8 FROM reading_rollups WHERE metric = 'temperature'",
    );
    assert_eq!(rolled, stored.len() as i64);
    check_stats(store, &stored, "all rolled up");
    check_buckets(store, &stored, "all rolled up");
}

#[test]
fn a_late_reading_in_a_rolled_up_hour_counts_at_once_and_maintenance_waits_for_quiet() {
    let Some(fixture) = PgFixture::new(4) else {
        return;
    };
    let store = &fixture.store;
    register(store);
    let mut rng = Rng(0x5EED_0002);
    let mut stored: Vec<Stored> = (0..500).map(|_| Stored::random(&mut rng, 12)).collect();
    append(store, &stored);
    // Just written: maintenance leaves the hours alone until no batch has touched them for a
    // while (the ingest burst is not slowed by rollups).
    store.maintain().unwrap();
    assert_eq!(dirty_hours(&fixture.url), 12);
    store.roll_up_all().unwrap();
    assert_eq!(dirty_hours(&fixture.url), 0);

    let late = Stored {
        sensor: "rs-2",
        site: "r-berlin",
        read_at: BASE + 3 * HOUR + 1234,
        temperature: 999.5,
        pressure: Some(-7.25),
    };
    append(store, std::slice::from_ref(&late));
    stored.push(late);
    assert_eq!(dirty_hours(&fixture.url), 1);
    check_stats(store, &stored, "late, before its rollup");
    check_buckets(store, &stored, "late, before its rollup");
    assert_eq!(store.roll_up_all().unwrap(), 1);
    check_stats(store, &stored, "late, after its rollup");
}

#[test]
fn appends_racing_the_rollup_are_never_lost_from_statistics() {
    let Some(fixture) = PgFixture::new(6) else {
        return;
    };
    let store = Arc::new(fixture.store);
    register(&*store);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(0x5EED_0003);
            let mut stored = Vec::new();
            for _ in 0..60 {
                // A few hours only, so the rollup and the appends keep meeting in one hour.
                let readings: Vec<Stored> = (0..50).map(|_| Stored::random(&mut rng, 3)).collect();
                append(&*store, &readings);
                stored.extend(readings);
            }
            stored
        })
    };
    let mut passes = 0;
    while !writer.is_finished() {
        passes += store.roll_up_all().unwrap();
    }
    let stored = writer.join().unwrap();
    assert!(passes > 0, "the rollup ran while appends were running");
    store.roll_up_all().unwrap();
    assert_eq!(store.dirty_hours().unwrap(), 0);
    check_stats(&*store, &stored, "after racing appends");
}

#[test]
fn retention_drops_a_days_rollups_with_its_partition() {
    let Some(fixture) = PgFixture::new(4) else {
        return;
    };
    let store = &fixture.store;
    register(store);
    let mut rng = Rng(0x5EED_0004);
    let stored: Vec<Stored> = (0..800).map(|_| Stored::random(&mut rng, 40)).collect();
    append(store, &stored);
    store.roll_up_all().unwrap();
    let first_day = query_i64(
        &fixture.url,
        &format!(
            "SELECT COUNT(*) FROM reading_rollups WHERE hour < {}",
            BASE + DAY
        ),
    );
    assert!(first_day > 0);

    assert!(store.retain(Millis(BASE + DAY), 10_000).unwrap() > 0);
    assert_eq!(
        query_i64(
            &fixture.url,
            &format!(
                "SELECT COUNT(*) FROM reading_rollups WHERE hour < {}",
                BASE + DAY
            )
        ),
        0
    );
    let kept: Vec<Stored> = stored
        .into_iter()
        .filter(|reading| reading.read_at >= BASE + DAY)
        .collect();
    check_stats(store, &kept, "after retention");
}

#[test]
fn the_migration_marks_readings_stored_before_rollups_existed() {
    let Some(fixture) = PgFixture::new(4) else {
        return;
    };
    let store = &fixture.store;
    register(store);
    let mut rng = Rng(0x5EED_0005);
    let stored: Vec<Stored> = (0..600).map(|_| Stored::random(&mut rng, 30)).collect();
    append(store, &stored);
    // Back to schema 3: no rollup tables, the readings already there.
    sql(
        &fixture.url,
        "DROP TABLE rollup_dirty; DROP TABLE reading_rollups;
         DELETE FROM schema_migrations WHERE version = 4;",
    );
    let reopened = PostgresStore::open(
        &fixture.url,
        PostgresOptions {
            pool_size: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let hours = query_i64(
        &fixture.url,
        "SELECT COUNT(DISTINCT read_at / 3600000) FROM readings",
    );
    assert_eq!(dirty_hours(&fixture.url), hours);
    check_stats(&reopened, &stored, "migrated, not rolled up");
    assert_eq!(reopened.roll_up_all().unwrap() as i64, hours);
    check_stats(&reopened, &stored, "migrated and rolled up");
}
