//! Storage for Audrey: the [`Store`] trait every backend implements, the embedded SQLite
//! backend that is the default, and the PostgreSQL backend; [`open`] picks one by URL.
//!
//! The store owns durability (a call that returns `Ok` from [`Store::append`] has committed
//! durably), deduplication on `(sensor_id, message_id)`, and the query semantics (ordering by
//! `(read_at, id)`, keyset cursors). It must never know about HTTP, gRPC or authentication
//! policy: it stores token hashes, it does not decide who may do what.

mod analysis;
mod error;
mod fold;
mod open;
mod postgres;
mod query;
mod sqlite;

pub use analysis::{
    AggregateQuery, Aggregation, Bucket, GroupBy, NearLocation, StatsGroup, StatsQuery,
    UpsertOutcome, parse_bucket,
};
pub use error::StoreError;
pub use open::{StoreUrl, migrate, open};
pub use postgres::{PostgresOptions, PostgresStore};
pub use query::{
    Cursor, LocationFilter, Order, Page, QuarantineEntry, QuarantineFilter, ReadingQuery,
    SensorCounters, SensorFilter, StagedChange, StagedStatus, StoredToken,
};
pub use sqlite::{SqliteOptions, SqliteStore};

/// Both stores' in-memory copy of the sensor registry, asked once per ingested reading:
/// foldhash, not SipHash, since the look-up is on the ingest path and its keys are
/// registered ids.
pub(crate) type SensorCache = std::collections::HashMap<
    std::sync::Arc<str>,
    std::sync::Arc<audrey_model::Sensor>,
    foldhash::fast::RandomState,
>;

/// Calls `visit` with each of `ids`' entry in `cache`, in order, under one read lock and
/// without touching the entries' reference counts: a batch of readings from many sensors costs
/// one lock, and no cache line that other threads' look-ups also write.
pub(crate) fn visit_cache(
    cache: &std::sync::RwLock<SensorCache>,
    ids: &[&str],
    visit: &mut dyn FnMut(usize, Option<&audrey_model::Sensor>),
) {
    let cache = cache.read().ok();
    for (index, id) in ids.iter().enumerate() {
        visit(
            index,
            cache
                .as_ref()
                .and_then(|cache| cache.get(*id))
                .map(|sensor| &**sensor),
        );
    }
}

use audrey_model::{
    GeoCircle, ImportRow, Location, LocationId, Millis, Reading, ReadingId, Sensor, SensorId,
    ValidReading,
};

/// What happened to one reading handed to [`Store::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored under this new id.
    Accepted(ReadingId),
    /// `(sensor_id, message_id)` was stored before under this id; nothing new was stored.
    Duplicate(ReadingId),
}

/// A batch to commit in one durable transaction.
#[derive(Debug, Default)]
pub struct AppendBatch {
    pub readings: Vec<ValidReading>,
    pub quarantine: Vec<QuarantineEntry>,
    /// Ids given out before this append (a spool replaying readings it already acknowledged):
    /// when present it holds one id per reading and the store keeps them instead of minting
    /// new ones. A reading whose dedup key is already stored is still a duplicate.
    pub assigned_ids: Option<Vec<ReadingId>>,
}

impl AppendBatch {
    /// The id the store should give the reading at `index`: the assigned one, or a new
    /// time-ordered UUIDv7.
    pub fn id_for(&self, index: usize) -> ReadingId {
        match &self.assigned_ids {
            Some(ids) => ids[index],
            None => ReadingId(uuid::Uuid::now_v7()),
        }
    }
}

/// Why a ready store is degraded, with figures for operators (`/readyz` shows them).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Degraded {
    pub reason: String,
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Everything Audrey keeps. Methods block; async callers run them on blocking threads.
pub trait Store: Send + Sync + 'static {
    /// Deduplicates and durably commits the batch in one transaction; one outcome per reading,
    /// in order. Quarantine entries are committed in the same transaction.
    fn append(
        &self,
        batch: AppendBatch,
        received_at: Millis,
    ) -> Result<Vec<AppendOutcome>, StoreError>;
    /// How many [`Store::append`] calls may usefully run at once. Concurrent appends must
    /// still deduplicate `(sensor_id, message_id)` exactly as if they ran one after another
    /// (in some order). The default, 1, means appends are serialised by the store anyway.
    fn concurrent_appends(&self) -> usize {
        1
    }
    /// Background work: moves landed readings into their indexed layout (SQLite: chunks),
    /// trims quarantine.
    fn maintain(&self) -> Result<(), StoreError>;
    /// True when the store can accept writes.
    fn ready(&self) -> Result<(), StoreError>;
    /// Set when the store accepts writes but not in its normal way (the outage spool holds
    /// readings the database has not received yet); shown by `/readyz`.
    fn degraded(&self) -> Option<Degraded> {
        None
    }
    /// Appends the store's own Prometheus metrics (text format) to `out`.
    fn render_metrics(&self, _out: &mut String) {}
    /// Retention: removes readings with `read_at` before `older_than`, doing at most about
    /// `max_rows` rows of work per call (PostgreSQL drops whole daily partitions that end at
    /// or before the cutoff, then trims dedup keys; SQLite removes whole chunks and rewrites
    /// the one straddling the cutoff). Answers how many rows it removed; the caller repeats
    /// until it answers 0.
    fn retain(&self, older_than: Millis, max_rows: usize) -> Result<u64, StoreError>;

    fn reading(&self, id: ReadingId) -> Result<Option<Reading>, StoreError>;
    /// [`Store::reading`] only when it needs no waiting (no busy connection, no network
    /// round trip), so an async caller may run it on its own thread; `None` means "call
    /// `reading` on a blocking thread". The default never answers.
    fn reading_without_waiting(
        &self,
        _id: ReadingId,
    ) -> Option<Result<Option<Reading>, StoreError>> {
        None
    }
    fn readings(&self, query: &ReadingQuery) -> Result<Page<Reading>, StoreError>;
    /// Up to `limit` stored readings whose id is above `after` (every reading when `None`), in
    /// id order. The act engine replays from here what a crash kept it from evaluating. Ids are
    /// UUIDv7 minted before the commit, so id order is commit order only up to how long a
    /// commit can take: callers that need every reading committed after a point start a
    /// margin earlier.
    fn readings_after_id(
        &self,
        after: Option<ReadingId>,
        limit: usize,
    ) -> Result<Vec<Reading>, StoreError>;
    /// Statistics of one metric per group over every stored reading in the time range
    /// (landed and flushed alike), groups ordered by key (`None` first). Readings without the
    /// metric are ignored; definitions in [`audrey_model::Summary`].
    fn reading_stats(&self, query: &StatsQuery) -> Result<Vec<StatsGroup>, StoreError>;
    /// Time buckets of one metric, ordered by start; empty buckets are absent.
    fn aggregate_readings(&self, query: &AggregateQuery) -> Result<Vec<Bucket>, StoreError>;

    fn quarantine(&self, filter: &QuarantineFilter) -> Result<Page<QuarantineEntry>, StoreError>;
    fn counters(&self, sensor: &SensorId) -> Result<SensorCounters, StoreError>;

    fn location(&self, id: &LocationId) -> Result<Option<Location>, StoreError>;
    fn locations(&self, filter: &LocationFilter) -> Result<Page<Location>, StoreError>;
    /// Inserts or replaces; answers true when it created a new record.
    fn put_location(&self, location: &Location, must_be_new: bool) -> Result<bool, StoreError>;
    fn delete_location(&self, id: &LocationId, at: Millis) -> Result<(), StoreError>;
    /// Removes the record for good (deleted or not). A location that sensors still name, even
    /// soft-deleted ones, is a conflict: purge those sensors first.
    fn purge_location(&self, id: &LocationId) -> Result<(), StoreError>;
    /// Inserts or updates imported locations in one transaction, one outcome per row in order.
    /// A row finds its stored location by its [`audrey_model::ImportKey`]: by id, or by the
    /// `icao` (else `iata`) column, preferring a live record over a soft-deleted one; a
    /// matched record keeps its id and `created_at`, is undeleted, and counts as `Unchanged`
    /// (and is not written) when every modelled field and attribute already matches.
    /// A new record takes the row's location as given.
    fn upsert_locations(&self, rows: &[ImportRow]) -> Result<Vec<UpsertOutcome>, StoreError>;
    /// Live locations within the circle (great-circle distance, [`audrey_model::distance_km`]),
    /// nearest first (ties by id), at most `limit`.
    fn locations_near(
        &self,
        circle: &GeoCircle,
        limit: usize,
    ) -> Result<Vec<NearLocation>, StoreError>;

    fn sensor(&self, id: &SensorId) -> Result<Option<Sensor>, StoreError>;
    fn sensors(&self, filter: &SensorFilter) -> Result<Page<Sensor>, StoreError>;
    fn put_sensor(&self, sensor: &Sensor, must_be_new: bool) -> Result<bool, StoreError>;
    fn delete_sensor(&self, id: &SensorId, at: Millis) -> Result<(), StoreError>;
    /// Removes the sensor record for good; its stored readings and counters stay.
    fn purge_sensor(&self, id: &SensorId) -> Result<(), StoreError>;
    /// The cached registered sensor, for validation on the ingest path (no I/O).
    fn cached_sensor(&self, id: &str) -> Option<std::sync::Arc<Sensor>>;
    /// [`Store::cached_sensor`] for each of `ids`, in order, handed to `visit`: the ingest
    /// path validates a whole batch with one look at the cache.
    fn visit_cached_sensors(&self, ids: &[&str], visit: &mut dyn FnMut(usize, Option<&Sensor>)) {
        for (index, id) in ids.iter().enumerate() {
            visit(index, self.cached_sensor(id).as_deref());
        }
    }

    fn put_token(&self, token: &StoredToken) -> Result<(), StoreError>;
    fn tokens(&self) -> Result<Vec<StoredToken>, StoreError>;
    fn token_by_hash(&self, hash: &str) -> Result<Option<StoredToken>, StoreError>;
    fn revoke_token(&self, id: &str, at: Millis) -> Result<(), StoreError>;
    /// Replaces a token's name, scopes and sensor binding; its secret, creation and
    /// revocation stay. NotFound when no token has this id.
    fn replace_token(&self, token: &StoredToken) -> Result<(), StoreError>;
    /// Removes the token record for good (revoked or not).
    fn purge_token(&self, id: &str) -> Result<(), StoreError>;

    /// Records a staged change; its id and link hash must be new.
    fn stage_change(&self, change: &StagedChange) -> Result<(), StoreError>;
    /// Every staged change in this status, oldest first.
    fn staged_changes(&self, status: StagedStatus) -> Result<Vec<StagedChange>, StoreError>;
    fn staged_change_by_link(&self, link_hash: &str) -> Result<Option<StagedChange>, StoreError>;
    /// Moves a pending change to `status` (applied or cancelled); answers false when it was no
    /// longer pending (or does not exist), so a link can be used once only.
    fn finish_staged_change(
        &self,
        id: &str,
        status: StagedStatus,
        at: Millis,
    ) -> Result<bool, StoreError>;
}
