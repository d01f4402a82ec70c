//! The spooling store over a real SQLite store behind a switch the test flips: an outage at
//! the unit level. Every acknowledged reading must end up stored exactly once, in the order
//! it was acknowledged, and the spool must be empty afterwards.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audrey_ingest::spool::{SpoolOptions, SpoolingStore};
use audrey_model::{
    GeoCircle, ImportRow, Location, LocationId, MessageId, MetricName, Millis, Reading, ReadingId,
    ReadingValues, Sensor, SensorId, ValidReading,
};
use audrey_store::{
    AggregateQuery, AppendBatch, AppendOutcome, Bucket, GroupBy, LocationFilter, NearLocation,
    Page, QuarantineEntry, QuarantineFilter, ReadingQuery, SensorCounters, SensorFilter,
    SqliteOptions, SqliteStore, StagedChange, StagedStatus, StatsGroup, StatsQuery, Store,
    StoreError, StoredToken, UpsertOutcome,
};

/// A SQLite store whose database the test can make "unreachable", and which records the ids
/// it committed, in commit order.
struct Switchable {
    store: SqliteStore,
    down: AtomicBool,
    /// Commit, then answer Unavailable anyway (a connection lost during COMMIT), this many times.
    fail_after_commit: AtomicUsize,
    committed: Mutex<Vec<ReadingId>>,
}

impl Switchable {
    fn new(directory: &std::path::Path) -> Arc<Switchable> {
        Arc::new(Switchable {
            store: SqliteStore::open(directory, SqliteOptions::default()).unwrap(),
            down: AtomicBool::new(false),
            fail_after_commit: AtomicUsize::new(0),
            committed: Mutex::new(Vec::new()),
        })
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("connection refused".into()))
        } else {
            Ok(())
        }
    }

    fn committed(&self) -> Vec<ReadingId> {
        self.committed.lock().unwrap().clone()
    }
}

impl Store for Switchable {
    fn append(
        &self,
        batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        self.check()?;
        let outcomes = self.store.append(batch, received_at)?;
        self.committed
            .lock()
            .unwrap()
            .extend(outcomes.iter().filter_map(|outcome| match outcome {
                AppendOutcome::Accepted(id) => Some(*id),
                AppendOutcome::Duplicate(_) => None,
            }));
        let failing = self.fail_after_commit.load(Ordering::SeqCst);
        if failing > 0 {
            self.fail_after_commit.store(failing - 1, Ordering::SeqCst);
            return Err(StoreError::Unavailable(
                "connection lost during COMMIT".into(),
            ));
        }
        Ok(outcomes)
    }
    fn maintain(&self) -> Result<(), StoreError> {
        self.check()?;
        self.store.maintain()
    }
    fn ready(&self) -> Result<(), StoreError> {
        self.check()?;
        self.store.ready()
    }
    fn retain(&self, older_than: Millis, max_rows: usize) -> Result<u64, StoreError> {
        self.check()?;
        self.store.retain(older_than, max_rows)
    }
    fn reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError> {
        self.check()?;
        self.store.reading(id)
    }
    fn readings(&self, query: &ReadingQuery) -> Result<Page<Reading>, StoreError> {
        self.check()?;
        self.store.readings(query)
    }
    fn readings_after_id(
        &self,
        after: Option<ReadingId>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError> {
        self.check()?;
        self.store.readings_after_id(after, limit)
    }
    fn quarantine(&self, filter: &QuarantineFilter) -> Result<Page<QuarantineEntry>, StoreError> {
        self.check()?;
        self.store.quarantine(filter)
    }
    fn counters(&self, sensor: &SensorId) -> Result<SensorCounters, StoreError> {
        self.check()?;
        self.store.counters(sensor)
    }
    fn location(&self, id: &LocationId) -> Result<Option<Location>, StoreError> {
        self.check()?;
        self.store.location(id)
    }
    fn locations(&self, filter: &LocationFilter) -> Result<Page<Location>, StoreError> {
        self.check()?;
        self.store.locations(filter)
    }
    fn put_location(&self, location: &Location, must_be_new: bool) -> Result<bool, StoreError> {
        self.check()?;
        self.store.put_location(location, must_be_new)
    }
    fn delete_location(&self, id: &LocationId, at: Millis) -> Result<(), StoreError> {
        self.check()?;
        self.store.delete_location(id, at)
    }
    fn sensor(&self, id: &SensorId) -> Result<Option<Sensor>, StoreError> {
        self.check()?;
        self.store.sensor(id)
    }
    fn sensors(&self, filter: &SensorFilter) -> Result<Page<Sensor>, StoreError> {
        self.check()?;
        self.store.sensors(filter)
    }
    fn put_sensor(&self, sensor: &Sensor, must_be_new: bool) -> Result<bool, StoreError> {
        self.check()?;
        self.store.put_sensor(sensor, must_be_new)
    }
    fn delete_sensor(&self, id: &SensorId, at: Millis) -> Result<(), StoreError> {
        self.check()?;
        self.store.delete_sensor(id, at)
    }
    fn cached_sensor(&self, id: &str) -> Option<Arc<Sensor>> {
        self.store.cached_sensor(id)
    }
    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.check()?;
        self.store.put_token(token)
    }
    fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        self.check()?;
        self.store.tokens()
    }
    fn token_by_hash(&self, hash: &str) -> Result<Option<StoredToken>, StoreError> {
        self.check()?;
        self.store.token_by_hash(hash)
    }
    fn revoke_token(&self, id: &str, at: Millis) -> Result<(), StoreError> {
        self.check()?;
        self.store.revoke_token(id, at)
    }
    fn reading_stats(&self, query: &StatsQuery) -> Result<Vec<StatsGroup>, StoreError> {
        self.check()?;
        self.store.reading_stats(query)
    }
    fn aggregate_readings(&self, query: &AggregateQuery) -> Result<Vec<Bucket>, StoreError> {
        self.check()?;
        self.store.aggregate_readings(query)
    }
    fn purge_location(&self, id: &LocationId) -> Result<(), StoreError> {
        self.check()?;
        self.store.purge_location(id)
    }
    fn upsert_locations(&self, rows: &[ImportRow]) -> Result<Vec<UpsertOutcome>, StoreError> {
        self.check()?;
        self.store.upsert_locations(rows)
    }
    fn locations_near(
        &self,
        circle: &GeoCircle,
        limit: usize,
    ) -> Result<Vec<NearLocation>, StoreError> {
        self.check()?;
        self.store.locations_near(circle, limit)
    }
    fn purge_sensor(&self, id: &SensorId) -> Result<(), StoreError> {
        self.check()?;
        self.store.purge_sensor(id)
    }
    fn replace_token(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.check()?;
        self.store.replace_token(token)
    }
    fn purge_token(&self, id: &str) -> Result<(), StoreError> {
        self.check()?;
        self.store.purge_token(id)
    }
    fn stage_change(&self, change: &StagedChange) -> Result<(), StoreError> {
        self.check()?;
        self.store.stage_change(change)
    }
    fn staged_changes(&self, status: StagedStatus) -> Result<Vec<StagedChange>, StoreError> {
        self.check()?;
        self.store.staged_changes(status)
    }
    fn staged_change_by_link(&self, link_hash: &str) -> Result<Option<StagedChange>, StoreError> {
        self.check()?;
        self.store.staged_change_by_link(link_hash)
    }
    fn finish_staged_change(
        &self,
        id: &str,
        status: StagedStatus,
        at: Millis,
    ) -> Result<bool, StoreError> {
        self.check()?;
        self.store.finish_staged_change(id, status, at)
    }
}

fn options(directory: &std::path::Path) -> SpoolOptions {
    SpoolOptions {
        segment_bytes: 16 * 1024,
        retry_interval: Duration::from_millis(5),
        max_retry_interval: Duration::from_millis(40),
        ..SpoolOptions::new(directory.join("spool"))
    }
}

fn reading(sensor: &str, read_at: i64, message: Option<String>) -> ValidReading {
    ValidReading {
        sensor_id: SensorId::parse(sensor).unwrap(),
        location_id: LocationId::parse("lab").unwrap(),
        read_at: Millis(read_at),
        values: ReadingValues(vec![(MetricName::parse("t").unwrap(), read_at as f64)]),
        message_id: message.map(|text| MessageId::parse(&text).unwrap()),
    }
}

fn append(
    store: &dyn Store,
    readings: Vec<ValidReading>,
) -> Result<Vec<AppendOutcome>, StoreError> {
    store.append(
        AppendBatch {
            readings,
            ..AppendBatch::default()
        },
        Millis::now(),
    )
}

fn wait_until_drained(spool: &SpoolingStore) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while spool.status().records > 0 {
        assert!(
            Instant::now() < deadline,
            "the spool did not drain: {:?}",
            spool.status()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(spool.status().bytes, 0, "a drained spool keeps no segment");
}

fn accepted_ids(outcomes: &[AppendOutcome]) -> Vec<ReadingId> {
    outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            AppendOutcome::Accepted(id) => Some(*id),
            AppendOutcome::Duplicate(_) => None,
        })
        .collect()
}

/// Every id stored once, and each writer's acknowledged ids committed in acknowledgement order.
fn assert_stored_once_in_order(inner: &Switchable, acknowledged: &[Vec<ReadingId>]) {
    let committed = inner.committed();
    let mut seen = HashSet::new();
    for id in &committed {
        assert!(seen.insert(*id), "{id:?} was committed twice");
    }
    let position: HashMap<ReadingId, usize> = committed
        .iter()
        .enumerate()
        .map(|(index, id)| (*id, index))
        .collect();
    for writer in acknowledged {
        let mut last = None;
        for id in writer {
            let at = *position
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged {id:?} was never committed"));
            assert!(
                last.is_none_or(|last| last < at),
                "{id:?} was committed out of order"
            );
            last = Some(at);
            assert!(inner.store.reading(*id).unwrap().is_some());
        }
    }
    let total: usize = acknowledged.iter().map(Vec::len).sum();
    assert_eq!(committed.len(), total, "nothing unacknowledged was stored");
}

#[test]
fn continuous_appends_across_an_outage_are_stored_once_in_order_and_the_spool_empties() {
    let directory = tempfile::tempdir().unwrap();
    let inner = Switchable::new(directory.path());
    let spool = Arc::new(SpoolingStore::open(inner.clone(), options(directory.path())).unwrap());
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let spool = spool.clone();
            let writing = writing.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut batch_number = 0i64;
                while writing.load(Ordering::SeqCst) {
                    let readings = (0..10)
                        .map(|index| {
                            let number = batch_number * 10 + index;
                            // Half carry a message id, half rely on the assigned id alone.
                            let message = (index % 2 == 0).then(|| format!("w{writer}-{number}"));
                            reading(
                                &format!("dev-{writer}"),
                                1_700_000_000_000 + number,
                                message,
                            )
                        })
                        .collect();
                    let outcomes = append(&*spool, readings).unwrap();
                    assert_eq!(outcomes.len(), 10);
                    acknowledged.extend(accepted_ids(&outcomes));
                    batch_number += 1;
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    inner.set_down(true);
    std::thread::sleep(Duration::from_millis(300));
    let during = spool.status();
    assert!(during.records > 0, "the outage spooled nothing: {during:?}");
    assert!(!during.inner_available);
    assert!(
        spool.ready().is_ok(),
        "ready (degraded) while the spool has room"
    );
    assert!(spool.degraded().is_some());
    match spool.readings(&ReadingQuery::default()) {
        Err(StoreError::Outage(message)) => {
            assert!(message.contains("readings are being spooled"), "{message}")
        }
        other => panic!("a read during the outage answered {other:?}"),
    }
    // The statistics, radius and staged-change methods answer the same outage message.
    let stats = spool.reading_stats(&StatsQuery {
        metric: MetricName::parse("t").unwrap(),
        group_by: GroupBy::Sensor,
        from: None,
        to: None,
        percentiles: Vec::new(),
    });
    assert!(matches!(stats, Err(StoreError::Outage(_))), "{stats:?}");
    let circle = GeoCircle::new(0.0, 0.0, 10.0, ["lat", "lon", "radius_km"]).unwrap();
    let near = spool.locations_near(&circle, 5);
    assert!(matches!(near, Err(StoreError::Outage(_))), "{near:?}");
    let finished = spool.finish_staged_change("chg", StagedStatus::Applied, Millis(1));
    assert!(
        matches!(finished, Err(StoreError::Outage(_))),
        "{finished:?}"
    );
    inner.set_down(false);
    std::thread::sleep(Duration::from_millis(300));
    writing.store(false, Ordering::SeqCst);
    let acknowledged: Vec<Vec<ReadingId>> = writers
        .into_iter()
        .map(|writer| writer.join().unwrap())
        .collect();
    wait_until_drained(&spool);
    assert!(spool.degraded().is_none());
    assert_stored_once_in_order(&inner, &acknowledged);
    let mut metrics = String::new();
    spool.render_metrics(&mut metrics);
    assert!(metrics.contains("audrey_spool_records 0"), "{metrics}");
}

#[test]
fn a_retry_during_the_outage_is_answered_duplicate_with_the_first_id_and_stored_once() {
    let directory = tempfile::tempdir().unwrap();
    let inner = Switchable::new(directory.path());
    let spool = SpoolingStore::open(inner.clone(), options(directory.path())).unwrap();
    let before =
        accepted_ids(&append(&spool, vec![reading("dev-1", 1, Some("before".into()))]).unwrap());
    inner.set_down(true);
    let first = append(
        &spool,
        vec![
            reading("dev-1", 2, Some("m-1".into())),
            reading("dev-1", 2, Some("m-1".into())),
        ],
    )
    .unwrap();
    let AppendOutcome::Accepted(id) = first[0] else {
        panic!("{first:?}")
    };
    assert_eq!(first[1], AppendOutcome::Duplicate(id));
    let retry = append(&spool, vec![reading("dev-1", 2, Some("m-1".into()))]).unwrap();
    assert_eq!(retry, vec![AppendOutcome::Duplicate(id)]);
    // A key stored before the outage is unknown to the spool; replay lets the store dedup it.
    let again = append(&spool, vec![reading("dev-1", 1, Some("before".into()))]).unwrap();
    assert!(matches!(again[0], AppendOutcome::Accepted(_)));
    inner.set_down(false);
    wait_until_drained(&spool);
    assert_eq!(inner.committed(), vec![before[0], id]);
    let counters = spool.counters(&SensorId::parse("dev-1").unwrap()).unwrap();
    assert_eq!((counters.accepted, counters.duplicate), (2, 3));
}

#[test]
fn a_full_spool_answers_unavailable_and_keeps_what_it_acknowledged() {
    let directory = tempfile::tempdir().unwrap();
    let inner = Switchable::new(directory.path());
    let spool = SpoolingStore::open(
        inner.clone(),
        SpoolOptions {
            max_bytes: 8 * 1024,
            ..options(directory.path())
        },
    )
    .unwrap();
    inner.set_down(true);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for number in 0..1000 {
        match append(&spool, vec![reading("dev-1", number, None)]) {
            Ok(outcomes) => acknowledged.extend(accepted_ids(&outcomes)),
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    match refused {
        Some(StoreError::Unavailable(message)) => {
            assert!(message.contains("spool full"), "{message}")
        }
        other => panic!("a full spool answered {other:?}"),
    }
    assert!(!acknowledged.is_empty());
    assert!(spool.status().bytes <= 8 * 1024);
    assert!(
        spool.ready().is_err(),
        "not ready while full and the database is down"
    );
    inner.set_down(false);
    wait_until_drained(&spool);
    assert_stored_once_in_order(&inner, &[acknowledged]);
    // Room again: appends go straight through.
    assert!(append(&spool, vec![reading("dev-1", 5000, None)]).is_ok());
}

#[test]
fn spooled_records_survive_a_crash_and_are_replayed_by_the_next_process() {
    let directory = tempfile::tempdir().unwrap();
    let inner = Switchable::new(directory.path());
    let mut acknowledged = Vec::new();
    let first_id;
    {
        let spool = SpoolingStore::open(inner.clone(), options(directory.path())).unwrap();
        inner.set_down(true);
        for number in 0..200 {
            let message = (number % 3 == 0).then(|| format!("m-{number}"));
            let outcomes = append(&spool, vec![reading("dev-1", number, message)]).unwrap();
            acknowledged.extend(accepted_ids(&outcomes));
        }
        first_id = acknowledged[0];
        spool.stop_forwarder(); // the process dies with everything still spooled
    }
    let spool = SpoolingStore::open(inner.clone(), options(directory.path())).unwrap();
    assert_eq!(spool.status().records, 200);
    // The dedup keys were rebuilt from the segments.
    assert_eq!(
        append(&spool, vec![reading("dev-1", 0, Some("m-0".into()))]).unwrap(),
        vec![AppendOutcome::Duplicate(first_id)]
    );
    inner.set_down(false);
    wait_until_drained(&spool);
    assert_stored_once_in_order(&inner, &[acknowledged]);
}

#[test]
fn a_replay_cut_short_after_the_database_committed_is_not_stored_twice() {
    let directory = tempfile::tempdir().unwrap();
    let inner = Switchable::new(directory.path());
    let mut acknowledged = Vec::new();
    {
        let spool = SpoolingStore::open(inner.clone(), options(directory.path())).unwrap();
        inner.set_down(true);
        for number in 0..50 {
            // No message ids: only the assigned ids can prevent a second copy.
            let outcomes = append(&spool, vec![reading("dev-1", number, None)]).unwrap();
            acknowledged.extend(accepted_ids(&outcomes));
        }
        spool.stop_forwarder();
    }
    // The next process replays; the database commits but the answer is lost, and the process
    // dies before it can record that.
    inner.fail_after_commit.store(1, Ordering::SeqCst);
    inner.set_down(false);
    {
        let spool = SpoolingStore::open(inner.clone(), options(directory.path())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while inner.fail_after_commit.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "the replay never reached the database"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        spool.stop_forwarder();
    }
    assert!(!inner.committed().is_empty());
    let spool = SpoolingStore::open(inner.clone(), options(directory.path())).unwrap();
    wait_until_drained(&spool);
    assert_stored_once_in_order(&inner, &[acknowledged]);
    let counters = inner
        .store
        .counters(&SensorId::parse("dev-1").unwrap())
        .unwrap();
    assert_eq!(counters.accepted, 50);
}

#[test]
fn an_append_whose_commit_answer_was_lost_is_spooled_and_not_stored_twice() {
    let directory = tempfile::tempdir().unwrap();
    let inner = Switchable::new(directory.path());
    let spool = SpoolingStore::open(inner.clone(), options(directory.path())).unwrap();
    inner.fail_after_commit.store(1, Ordering::SeqCst);
    let outcomes = append(
        &spool,
        vec![reading("dev-1", 1, None), reading("dev-1", 2, None)],
    )
    .unwrap();
    let ids = accepted_ids(&outcomes);
    assert_eq!(ids.len(), 2);
    let later = accepted_ids(&append(&spool, vec![reading("dev-1", 3, None)]).unwrap());
    wait_until_drained(&spool);
    assert_stored_once_in_order(&inner, &[[ids, later].concat()]);
}
