//! The pipeline over the real SQLite store, with a gate in front of `append` so a test can hold
//! a commit open and see what queues behind it.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use audrey_ingest::{
    IncomingItem, IngestError, IngestMetrics, IngestOptions, ItemOutcome, Payload, Pipeline,
};
use audrey_model::{
    Location, LocationId, LocationInput, Millis, RawReading, ReadAtInput, Reading, ReadingId,
    Sensor, SensorId, SensorInput,
};
use audrey_store::{
    AppendBatch, AppendOutcome, LocationFilter, Page, QuarantineEntry, QuarantineFilter,
    ReadingQuery, SensorCounters, SensorFilter, SqliteOptions, SqliteStore, Store, StoreError,
    StoredToken,
};

/// The real store; `append` waits while the gate is closed and counts its calls.
struct GatedStore {
    inner: SqliteStore,
    open: Mutex<bool>,
    changed: Condvar,
    appends: AtomicUsize,
    /// Appends that entered and have not returned yet (waiting at the gate or storing).
    in_flight: AtomicUsize,
    /// What `concurrent_appends` answers (the pipeline starts this many committers).
    concurrent: usize,
}

impl GatedStore {
    fn set_open(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.changed.notify_all();
    }
}

impl Store for GatedStore {
    fn append(
        &self,
        batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
        drop(open);
        self.appends.fetch_add(1, Ordering::SeqCst);
        let outcome = self.inner.append(batch, received_at);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
    fn concurrent_appends(&self) -> usize {
        self.concurrent
    }
    fn maintain(&self) -> Result<(), StoreError> {
        self.inner.maintain()
    }
    fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready()
    }
    fn retain(&self, older_than: Millis, max_rows: usize) -> Result<u64, StoreError> {
        self.inner.retain(older_than, max_rows)
    }
    fn reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError> {
        self.inner.reading(id)
    }
    fn readings(&self, query: &ReadingQuery) -> Result<Page<Reading>, StoreError> {
        self.inner.readings(query)
    }
    fn readings_after_id(
        &self,
        after: Option<ReadingId>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.inner.readings_after_id(after, limit)
    }
    fn quarantine(&self, filter: &QuarantineFilter) -> Result<Page<QuarantineEntry>, StoreError> {
        self.inner.quarantine(filter)
    }
    fn counters(&self, sensor: &SensorId) -> Result<SensorCounters, StoreError> {
        self.inner.counters(sensor)
    }
    fn location(&self, id: &LocationId) -> Result<Option<Location>, StoreError> {
        self.inner.location(id)
    }
    fn locations(&self, filter: &LocationFilter) -> Result<Page<Location>, StoreError> {
        self.inner.locations(filter)
    }
    fn put_location(&self, location: &Location, new: bool) -> Result<bool, StoreError> {
        self.inner.put_location(location, new)
    }
    fn delete_location(&self, id: &LocationId, at: Millis) -> Result<(), StoreError> {
        self.inner.delete_location(id, at)
    }
    fn upsert_locations(
        &self,
        rows: &[audrey_model::ImportRow],
    ) -> Result<Vec<audrey_store::UpsertOutcome>, StoreError> {
        self.inner.upsert_locations(rows)
    }
    fn locations_near(
        &self,
        circle: &audrey_model::GeoCircle,
        limit: usize,
    ) -> Result<Vec<audrey_store::NearLocation>, StoreError> {
        self.inner.locations_near(circle, limit)
    }
    fn reading_stats(
        &self,
        query: &audrey_store::StatsQuery,
    ) -> Result<Vec<audrey_store::StatsGroup>, StoreError> {
        self.inner.reading_stats(query)
    }
    fn aggregate_readings(
        &self,
        query: &audrey_store::AggregateQuery,
    ) -> Result<Vec<audrey_store::Bucket>, StoreError> {
        self.inner.aggregate_readings(query)
    }
    fn sensor(&self, id: &SensorId) -> Result<Option<Sensor>, StoreError> {
        self.inner.sensor(id)
    }
    fn sensors(&self, filter: &SensorFilter) -> Result<Page<Sensor>, StoreError> {
        self.inner.sensors(filter)
    }
    fn put_sensor(&self, sensor: &Sensor, new: bool) -> Result<bool, StoreError> {
        self.inner.put_sensor(sensor, new)
    }
    fn delete_sensor(&self, id: &SensorId, at: Millis) -> Result<(), StoreError> {
        self.inner.delete_sensor(id, at)
    }
    fn cached_sensor(&self, id: &str) -> Option<Arc<Sensor>> {
        self.inner.cached_sensor(id)
    }
    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.inner.put_token(token)
    }
    fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        self.inner.tokens()
    }
    fn token_by_hash(&self, hash: &str) -> Result<Option<StoredToken>, StoreError> {
        self.inner.token_by_hash(hash)
    }
    fn revoke_token(&self, id: &str, at: Millis) -> Result<(), StoreError> {
        self.inner.revoke_token(id, at)
    }
    fn purge_location(&self, id: &LocationId) -> Result<(), StoreError> {
        self.inner.purge_location(id)
    }
    fn purge_sensor(&self, id: &SensorId) -> Result<(), StoreError> {
        self.inner.purge_sensor(id)
    }
    fn replace_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.inner.replace_token(token)
    }
    fn purge_token(&self, id: &str) -> Result<(), StoreError> {
        self.inner.purge_token(id)
    }
    fn stage_change(&self, change: &audrey_store::StagedChange) -> Result<(), StoreError> {
        self.inner.stage_change(change)
    }
    fn staged_changes(
        &self,
        status: audrey_store::StagedStatus,
    ) -> Result<Vec<audrey_store::StagedChange>, StoreError> {
        self.inner.staged_changes(status)
    }
    fn staged_change_by_link(
        &self,
        link_hash: &str,
    ) -> Result<Option<audrey_store::StagedChange>, StoreError> {
        self.inner.staged_change_by_link(link_hash)
    }
    fn finish_staged_change(
        &self,
        id: &str,
        status: audrey_store::StagedStatus,
        at: Millis,
    ) -> Result<bool, StoreError> {
        self.inner.finish_staged_change(id, status, at)
    }
}

fn gated_store(dir: &std::path::Path) -> Arc<GatedStore> {
    gated_store_with(dir, 1)
}

fn gated_store_with(dir: &std::path::Path, concurrent: usize) -> Arc<GatedStore> {
    let inner = SqliteStore::open(dir, SqliteOptions::default()).unwrap();
    let location = LocationInput {
        name: "Lab".into(),
        latitude: 1.0,
        longitude: 2.0,
        ..Default::default()
    }
    .into_location(LocationId::parse("lab").unwrap(), Millis(0), None)
    .unwrap();
    inner.put_location(&location, false).unwrap();
    let sensor = SensorInput {
        kind: "climate".into(),
        location_id: "lab".into(),
        ..Default::default()
    }
    .into_sensor(SensorId::parse("dev-1").unwrap(), Millis(0), None)
    .unwrap();
    inner.put_sensor(&sensor, false).unwrap();
    Arc::new(GatedStore {
        inner,
        open: Mutex::new(true),
        changed: Condvar::new(),
        appends: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        concurrent,
    })
}

/// Waits (bounded) until `condition` holds; answers whether it did.
async fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}

/// Collects what the pipeline hands its observer.
#[derive(Default)]
struct Collecting(Mutex<Vec<audrey_ingest::CommittedBatch>>);

impl audrey_ingest::CommitObserver for Collecting {
    fn committed(&self, batch: audrey_ingest::CommittedBatch) {
        self.0.lock().unwrap().push(batch);
    }
}

fn items(count: usize) -> Vec<IncomingItem> {
    (0..count)
        .map(|index| IncomingItem {
            parsed: Ok(RawReading::new(
                "dev-1".into(),
                None,
                ReadAtInput::EpochMillis(Millis::now().0 - 1000 - index as i64),
                [("t".to_string(), 1.0)],
                None,
            )),
            payload: Payload::whole(""),
        })
        .collect()
}

fn options(queue_readings: usize) -> IngestOptions {
    IngestOptions {
        queue_readings,
        enqueue_timeout: Duration::from_millis(200),
        ..IngestOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_arrive_during_a_commit_share_the_next_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = gated_store(dir.path());
    let pipeline = Pipeline::start(
        store.clone(),
        options(10_000),
        Arc::new(IngestMetrics::default()),
    );
    store.set_open(false);
    let first = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.submit(items(1), false, None).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The first commit is held open; these ten queue up behind it.
    let waiting: Vec<_> = (0..10)
        .map(|_| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { pipeline.submit(items(5), false, None).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.set_open(true);
    assert!(matches!(
        first.await.unwrap().unwrap()[0],
        ItemOutcome::Accepted(_)
    ));
    for request in waiting {
        let outcomes = request.await.unwrap().unwrap();
        assert_eq!(outcomes.len(), 5);
        assert!(
            outcomes
                .iter()
                .all(|outcome| matches!(outcome, ItemOutcome::Accepted(_)))
        );
    }
    assert_eq!(
        store.appends.load(Ordering::SeqCst),
        2,
        "one commit for the first, one for all ten behind it"
    );
    pipeline.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_overloaded_after_the_wait_bound_and_stores_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = gated_store(dir.path());
    let pipeline = Pipeline::start(
        store.clone(),
        options(10),
        Arc::new(IngestMetrics::default()),
    );
    store.set_open(false);
    let holding = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.submit(items(10), false, None).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let refused = pipeline.submit(items(1), false, None).await;
    assert!(
        matches!(refused, Err(IngestError::Overloaded { .. })),
        "{refused:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waited for room first"
    );
    store.set_open(true);
    assert_eq!(holding.await.unwrap().unwrap().len(), 10);
    let stored = store
        .readings(&ReadingQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(stored.items.len(), 10, "the refused reading was not stored");
    // Room is back: the same request now succeeds.
    assert!(pipeline.submit(items(1), false, None).await.is_ok());
    pipeline.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_was_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = gated_store(dir.path());
    let pipeline = Pipeline::start(
        store.clone(),
        options(10_000),
        Arc::new(IngestMetrics::default()),
    );
    store.set_open(false);
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { pipeline.submit(items(2), false, None).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = std::thread::spawn({
        let pipeline = pipeline.clone();
        move || pipeline.shutdown()
    });
    std::thread::sleep(Duration::from_millis(50));
    store.set_open(true);
    stopping.join().unwrap();
    for request in queued {
        assert_eq!(
            request.await.unwrap().unwrap().len(),
            2,
            "queued work is answered, not dropped"
        );
    }
    assert!(matches!(
        pipeline.submit(items(1), false, None).await,
        Err(IngestError::ShuttingDown)
    ));
    let stored = store
        .readings(&ReadingQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(stored.items.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_takes_concurrent_appends_gets_overlapping_commits_each_observed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = gated_store_with(dir.path(), 3);
    let observer = Arc::new(Collecting::default());
    let pipeline = Pipeline::start_observed(
        store.clone(),
        options(10_000),
        Arc::new(IngestMetrics::default()),
        Some(observer.clone()),
    );
    store.set_open(false);
    // Each request waits at the closed gate inside its own append: with one committer the
    // second would queue behind the first and never reach the store.
    let mut requests = Vec::new();
    for started in 1..=3 {
        requests.push(tokio::spawn({
            let pipeline = pipeline.clone();
            async move { pipeline.submit(items(4), false, None).await }
        }));
        assert!(
            eventually(|| store.in_flight.load(Ordering::SeqCst) == started).await,
            "append {started} runs beside the ones before it"
        );
    }
    store.set_open(true);
    let mut acknowledged = Vec::new();
    for request in requests {
        for outcome in request.await.unwrap().unwrap() {
            let ItemOutcome::Accepted(id) = outcome else {
                panic!("{outcome:?}")
            };
            acknowledged.push(id);
        }
    }
    pipeline.shutdown();
    let observed: Vec<ReadingId> = observer
        .0
        .lock()
        .unwrap()
        .iter()
        .flat_map(|batch| batch.readings.iter().map(|reading| reading.id))
        .collect();
    assert_eq!(
        observer.0.lock().unwrap().len(),
        3,
        "one observed batch per commit"
    );
    let (mut acknowledged, mut observed) = (acknowledged, observed);
    acknowledged.sort();
    observed.sort();
    assert_eq!(acknowledged.len(), 12);
    assert_eq!(
        observed, acknowledged,
        "every committed reading observed exactly once"
    );
}
