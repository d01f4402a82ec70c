//! The SQLite store's own costs, without a server or a network: how long a flush of landed
//! readings into chunks takes, and a by-id look-up of flushed readings.
//!
//! `cargo bench -p audrey-store --bench sqlite_store`. The load is shaped like `audrey bench
//! matrix`'s fleet: 10,000 sensors interleaved, two metrics and a message id per reading,
//! landed in commits of 1,000. Figures and what they were used for: docs/benchmarks.md.
#![allow(clippy::unwrap_used)] // a benchmark that cannot set up has nothing to measure

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use audrey_model::{
    LocationId, MessageId, MetricName, Millis, ReadingId, ReadingValues, SensorId, ValidReading,
};
use audrey_store::{AppendBatch, AppendOutcome, SqliteOptions, SqliteStore, Store};

const SENSORS: u64 = 10_000;
const PER_COMMIT: u64 = 1_000;
const FLUSHED: u64 = 100_000;
const LOOKUPS: usize = 1_000;

fn reading(number: u64) -> ValidReading {
    ValidReading {
        sensor_id: SensorId::parse(&format!("bench-{:05}", number % SENSORS)).unwrap(),
        location_id: LocationId::parse(&format!("site-{:03}", number % SENSORS / 10)).unwrap(),
        read_at: Millis(1_700_000_000_000 + number as i64),
        values: ReadingValues(vec![
            (
                MetricName::parse("humidity").unwrap(),
                (number % 100) as f64,
            ),
            (
                MetricName::parse("temperature").unwrap(),
                (number % 40) as f64 / 2.0,
            ),
        ]),
        message_id: Some(MessageId::parse(&format!("m-{number}")).unwrap()),
    }
}

/// A store in a fresh directory holding `readings` landed (not flushed) readings, and their ids.
/// Nothing flushes by itself: only `maintain` or `flush_all` would, and neither is called here.
fn landed(readings: u64) -> (tempfile::TempDir, SqliteStore, Vec<ReadingId>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path(),
        SqliteOptions {
            flush_rows: usize::MAX,
            memtable_max_rows: 1_000_000,
            ..Default::default()
        },
    )
    .unwrap();
    let mut ids = Vec::with_capacity(readings as usize);
    for first in (0..readings).step_by(PER_COMMIT as usize) {
        let batch = AppendBatch {
            readings: (first..first + PER_COMMIT).map(reading).collect(),
            ..Default::default()
        };
        for outcome in store.append(batch, Millis(1_700_000_100_000)).unwrap() {
            let AppendOutcome::Accepted(id) = outcome else {
                panic!("a fresh store took a reading for a duplicate");
            };
            ids.push(id);
        }
    }
    (dir, store, ids)
}

fn flush(c: &mut Criterion) {
    let mut group = c.benchmark_group("sqlite_flush");
    group.sample_size(10);
    group.throughput(Throughput::Elements(FLUSHED));
    group.bench_function("100k readings of 10k sensors", |b| {
        b.iter_batched(
            || landed(FLUSHED),
            |(dir, store, _)| {
                assert_eq!(store.flush_all().unwrap(), FLUSHED as usize);
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

fn get_by_id(c: &mut Criterion) {
    let (_dir, store, ids) = landed(2 * FLUSHED);
    store.flush_all().unwrap();
    // Every 197th id, wrapping: spread over all blocks and chunks, the same each run.
    let wanted: Vec<ReadingId> = (0..LOOKUPS).map(|n| ids[n * 197 % ids.len()]).collect();
    let mut group = c.benchmark_group("sqlite_get_by_id");
    group.throughput(Throughput::Elements(LOOKUPS as u64));
    group.bench_function("flushed, 200k stored", |b| {
        b.iter(|| {
            for id in &wanted {
                black_box(store.reading(*id).unwrap().unwrap());
            }
        });
    });
    group.finish();
}

criterion_group!(benches, flush, get_by_id);
criterion_main!(benches);
