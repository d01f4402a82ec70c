//! Fresh stores for the conformance cases, and small helpers to fill them.

use std::sync::Arc;

use audrey_model::{
    LocationId, LocationInput, MessageId, MetricName, Millis, Reading, ReadingValues, SensorId,
    SensorInput, ValidReading,
};
use audrey_store::{
    AppendBatch, AppendOutcome, Order, PostgresOptions, PostgresStore, ReadingQuery, SqliteOptions,
    SqliteStore, Store,
};

/// A store under test, plus how to make its background work happen now.
pub struct Harness {
    pub store: Arc<dyn Store>,
    settle: Box<dyn Fn() + Send + Sync>,
    /// Dropped after the store: removes the directory or database.
    _cleanup: Cleanup,
}

impl Harness {
    /// Runs what the maintenance thread would eventually do (SQLite: flush every landed row
    /// into the indexed layout; PostgreSQL: partition upkeep, folding counter deltas and
    /// rolling up every dirty hour).
    pub fn settle(&self) {
        (self.settle)();
    }
}

enum Cleanup {
    Directory(#[allow(dead_code)] tempfile::TempDir),
    Database { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Database { admin_url, name } = self {
            let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(error) = admin_execute(admin_url, &statement) {
                eprintln!("could not drop test database {name}: {error}");
            }
        }
    }
}

pub fn sqlite() -> Harness {
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(directory.path(), SqliteOptions::default()).unwrap());
    let flushing = store.clone();
    Harness {
        store,
        settle: Box::new(move || {
            flushing.flush_all().unwrap();
        }),
        _cleanup: Cleanup::Directory(directory),
    }
}

/// A store on a fresh database, or `None` (with a notice) when no server is configured.
pub fn postgres() -> Option<Harness> {
    let PgFixture {
        store, _cleanup, ..
    } = PgFixture::new(4)?;
    let store = Arc::new(store);
    let maintaining = store.clone();
    Some(Harness {
        store,
        settle: Box::new(move || {
            maintaining.maintain().unwrap();
            // Maintenance folds counters and rolls up hours at its own pace; settle means
            // "now".
            maintaining.fold_counters().unwrap();
            maintaining.roll_up_all().unwrap();
        }),
        _cleanup,
    })
}

/// A fresh database with a PostgreSQL store on it, for tests that also run SQL beside the
/// store (`url`); the database is dropped with the fixture. `None` (with a notice) when no
/// server is configured.
#[allow(dead_code)] // `url` is for the test files beside the conformance suite
pub struct PgFixture {
    pub store: PostgresStore,
    pub url: String,
    _cleanup: Cleanup,
}

impl PgFixture {
    pub fn new(pool_size: usize) -> Option<PgFixture> {
        let Ok(admin_url) = std::env::var("AUDREY_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but AUDREY_TEST_POSTGRES_URL is not: the PostgreSQL cases must run \
                 in CI"
            );
            eprintln!("skipping the PostgreSQL cases: AUDREY_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!("audrey_test_{}", uuid::Uuid::now_v7().simple());
        sql(&admin_url, &format!("CREATE DATABASE {name}"));
        let cleanup = Cleanup::Database {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = with_database(&admin_url, &name);
        let store = PostgresStore::open(
            &url,
            PostgresOptions {
                pool_size,
                ..Default::default()
            },
        )
        .unwrap();
        Some(PgFixture {
            store,
            url,
            _cleanup: cleanup,
        })
    }
}

/// Runs `statement` (one or several, no results) on the database `url` names.
#[allow(dead_code)] // for the test files beside the conformance suite
pub fn sql(url: &str, statement: &str) {
    admin_execute(url, statement).unwrap();
}

/// The first column of the one row `query` answers, as an integer.
#[allow(dead_code)] // for the test files beside the conformance suite
pub fn query_i64(url: &str, query: &str) -> i64 {
    with_client(url, async |client| {
        let row = client.query_one(query, &[]).await;
        row.map(|row| row.get(0)).map_err(|error| error.to_string())
    })
    .unwrap()
}

/// The same server URL pointing at another database.
pub fn with_database(url: &str, database: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = without_query.find("://").map_or(0, |at| at + 3);
    let base = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    format!("{base}/{database}{query}")
}

fn admin_execute(url: &str, statement: &str) -> Result<(), String> {
    with_client(url, async |client| {
        let done = client.batch_execute(statement).await;
        done.map_err(|error| error.to_string())
    })
}

/// Runs `work` on a connection of its own to `url`, closed afterwards.
fn with_client<T>(
    url: &str,
    work: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, String>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|error| error.to_string())?;
        let driver = tokio::spawn(connection);
        let result = work(&client).await;
        drop(client);
        let _ = driver.await;
        result
    })
}

/// 2024-01-10T00:00:00Z, a day boundary.
pub const BASE: i64 = 1_704_844_800_000;
pub const DAY: i64 = 86_400_000;
pub const RECEIVED: Millis = Millis(1_704_844_800_000 + 30 * 86_400_000);

pub fn location(store: &dyn Store, id: &str, country: &str) {
    let location = LocationInput {
        name: format!("Place {id}"),
        country: Some(country.into()),
        city: Some("Town".into()),
        latitude: 1.0,
        longitude: 2.0,
        ..Default::default()
    }
    .into_location(LocationId::parse(id).unwrap(), Millis(0), None)
    .unwrap();
    store.put_location(&location, false).unwrap();
}

pub fn sensor(store: &dyn Store, id: &str, location: &str) {
    let sensor = SensorInput {
        kind: "climate".into(),
        location_id: location.into(),
        ..Default::default()
    }
    .into_sensor(SensorId::parse(id).unwrap(), Millis(0), None)
    .unwrap();
    store.put_sensor(&sensor, false).unwrap();
}

/// Two locations with two sensors each: `a1`, `a2` at `site-a`; `b1`, `b2` at `site-b`.
pub fn fleet(store: &dyn Store) {
    location(store, "site-a", "DE");
    location(store, "site-b", "FR");
    for (sensor_id, location_id) in [
        ("a1", "site-a"),
        ("a2", "site-a"),
        ("b1", "site-b"),
        ("b2", "site-b"),
    ] {
        sensor(store, sensor_id, location_id);
    }
}

pub fn reading(sensor: &str, read_at: i64, message: Option<&str>) -> ValidReading {
    let location = if sensor.starts_with('a') {
        "site-a"
    } else {
        "site-b"
    };
    ValidReading {
        sensor_id: SensorId::parse(sensor).unwrap(),
        location_id: LocationId::parse(location).unwrap(),
        read_at: Millis(read_at),
        // Sorted by name, as validation hands them to the store.
        values: ReadingValues(vec![
            (MetricName::parse("humidity").unwrap(), 40.5),
            (
                MetricName::parse("temperature").unwrap(),
                read_at as f64 / 1e9,
            ),
        ]),
        message_id: message.map(|text| MessageId::parse(text).unwrap()),
    }
}

pub fn append(store: &dyn Store, readings: Vec<ValidReading>) -> Vec<AppendOutcome> {
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

pub fn accepted(outcomes: &[AppendOutcome]) -> Vec<audrey_model::ReadingId> {
    outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            AppendOutcome::Accepted(id) => Some(*id),
            AppendOutcome::Duplicate(_) => None,
        })
        .collect()
}

/// Every reading the query matches, page by page (`page` readings at a time).
pub fn all_pages(store: &dyn Store, query: &ReadingQuery, page: usize) -> Vec<Reading> {
    let mut found = Vec::new();
    let mut query = ReadingQuery {
        limit: page,
        ..query.clone()
    };
    loop {
        let result = store.readings(&query).unwrap();
        assert!(result.items.len() <= page);
        found.extend(result.items);
        match result.next_cursor {
            Some(cursor) => query.after = Some(audrey_store::Cursor::decode(&cursor).unwrap()),
            None => return found,
        }
    }
}

pub fn read_ats(readings: &[Reading]) -> Vec<i64> {
    readings.iter().map(|reading| reading.read_at.0).collect()
}

pub fn everything(order: Order) -> ReadingQuery {
    ReadingQuery {
        order,
        limit: 10_000,
        ..Default::default()
    }
}
