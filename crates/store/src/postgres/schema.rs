//! Versioned migrations of the PostgreSQL schema, applied in order at open. The
//! `schema_migrations` table records each applied version; an advisory lock keeps two
//! processes opening the same database from applying one migration twice.

use tokio_postgres::Client;

use super::errors::from_pg;
use crate::StoreError;

/// Each entry is one migration; never edit one that has shipped, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the registry, partitioned readings, dedup keys, quarantine, counters and tokens.
    r#"
    -- "C" collation: registry pages are ordered bytewise, as on SQLite.
    CREATE TABLE locations (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT NOT NULL,
        city TEXT,
        country TEXT,
        latitude DOUBLE PRECISION NOT NULL,
        longitude DOUBLE PRECISION NOT NULL,
        altitude DOUBLE PRECISION,
        timezone TEXT NOT NULL,
        iata TEXT,
        icao TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT
    );
    CREATE TABLE sensors (
        id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        location_id TEXT NOT NULL REFERENCES locations(id),
        metrics TEXT NOT NULL,
        expected_interval_seconds BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        deleted_at BIGINT
    );
    CREATE INDEX sensors_location ON sensors(location_id);

    -- One partition per UTC day, created by Audrey (see partitions.rs).
    CREATE TABLE readings (
        id UUID NOT NULL,
        sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        read_at BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        message_id TEXT,
        vals TEXT NOT NULL,
        PRIMARY KEY (id, read_at)
    ) PARTITION BY RANGE (read_at);
    CREATE INDEX readings_sensor_time ON readings (sensor_id, read_at, id);
    CREATE INDEX readings_location_time ON readings (location_id, read_at, id);
    CREATE INDEX readings_time ON readings (read_at, id);

    -- The dedup key of every stored reading that has a message id.
    CREATE TABLE reading_keys (
        sensor_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        id UUID NOT NULL,
        read_at BIGINT NOT NULL,
        PRIMARY KEY (sensor_id, message_id)
    );
    CREATE INDEX reading_keys_time ON reading_keys (read_at);

    CREATE TABLE quarantine (
        id BIGSERIAL PRIMARY KEY,
        received_at BIGINT NOT NULL,
        sensor_id TEXT,
        reason TEXT NOT NULL,
        path TEXT NOT NULL,
        message TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX quarantine_sensor ON quarantine (sensor_id, id);
    CREATE INDEX quarantine_received ON quarantine (received_at);

    CREATE TABLE sensor_counters (
        sensor_id TEXT PRIMARY KEY,
        accepted BIGINT NOT NULL DEFAULT 0,
        duplicate BIGINT NOT NULL DEFAULT 0,
        rejected BIGINT NOT NULL DEFAULT 0
    );

    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        sensor_id TEXT,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    );
    "#,
    // 2: location attributes (an import's extra columns, JSON object text as on SQLite), the
    // indexes imports (by code) and radius searches (by a latitude/longitude box) use, and
    // registry changes waiting for someone to follow their confirmation link.
    r#"
    ALTER TABLE locations ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX locations_icao ON locations(icao) WHERE icao IS NOT NULL;
    CREATE INDEX locations_iata ON locations(iata) WHERE iata IS NOT NULL;
    CREATE INDEX locations_position ON locations(latitude, longitude);

    CREATE TABLE staged_changes (
        id TEXT COLLATE "C" PRIMARY KEY,
        link_hash TEXT NOT NULL UNIQUE,
        entity TEXT NOT NULL,
        entity_id TEXT,
        action TEXT NOT NULL,
        body TEXT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        status TEXT NOT NULL,
        finished_at BIGINT
    );
    CREATE INDEX staged_changes_status ON staged_changes(status, created_at, id);
    "#,
    // 3: per-sensor counter deltas. Each ingest transaction appends one row per sensor it
    // touched instead of updating the shared `sensor_counters` row, so concurrent committers
    // never wait on each other's row locks; maintenance folds the deltas into
    // `sensor_counters`, and a read sums both (see `counters.rs`).
    r#"
    CREATE TABLE sensor_counter_deltas (
        sensor_id TEXT NOT NULL,
        accepted BIGINT NOT NULL,
        duplicate BIGINT NOT NULL,
        rejected BIGINT NOT NULL
    );
    CREATE INDEX sensor_counter_deltas_sensor ON sensor_counter_deltas (sensor_id);
    "#,
    // 4: hourly rollups (see `rollups.rs`). Every ingest transaction that stores readings
    // appends one `rollup_dirty` row per UTC hour it wrote into; maintenance recomputes a
    // dirty hour's `reading_rollups` rows from the readings and deletes the markers it
    // covered. The readings already stored are marked dirty here, so they are rolled up too.
    r#"
    CREATE TABLE rollup_dirty (
        id BIGSERIAL PRIMARY KEY,
        hour BIGINT NOT NULL,
        first_marked_at BIGINT NOT NULL,
        marked_at BIGINT NOT NULL
    );
    CREATE INDEX rollup_dirty_hour ON rollup_dirty (hour);
    CREATE TABLE reading_rollups (
        metric TEXT COLLATE "C" NOT NULL,
        hour BIGINT NOT NULL,
        sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        n BIGINT NOT NULL,
        total DOUBLE PRECISION NOT NULL,
        low DOUBLE PRECISION NOT NULL,
        high DOUBLE PRECISION NOT NULL,
        mean DOUBLE PRECISION NOT NULL,
        m2 DOUBLE PRECISION NOT NULL,
        -- The values ascending, as big-endian IEEE 754 doubles (float8's binary form), 8
        -- bytes each: read back with a copy, where a float8[] costs a conversion per element.
        sorted BYTEA NOT NULL,
        PRIMARY KEY (metric, hour, sensor_id, location_id)
    );
    CREATE INDEX reading_rollups_sensor ON reading_rollups (sensor_id, metric, hour);
    CREATE INDEX reading_rollups_location ON reading_rollups (location_id, metric, hour);
    INSERT INTO rollup_dirty (hour, first_marked_at, marked_at)
    SELECT DISTINCT read_at - ((read_at % 3600000) + 3600000) % 3600000, 0, 0 FROM readings;
    "#,
];

/// An arbitrary constant naming Audrey's migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x4155_4452_4559; // "AUDREY"

pub(crate) fn latest_version() -> usize {
    MIGRATIONS.len()
}

/// Applies the migrations this database has not seen; answers the resulting version.
pub(crate) async fn migrate(client: &mut Client) -> Result<usize, StoreError> {
    let transaction = client.transaction().await.map_err(from_pg)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(from_pg)?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(from_pg)?;
    let current: i32 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(from_pg)?
        .get(0);
    let current = current as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "the database has schema version {current}, newer than this Audrey knows ({}); \
             upgrade Audrey",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        transaction
            .batch_execute(migration)
            .await
            .map_err(from_pg)?;
        let version = index as i32 + 1;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(from_pg)?;
        tracing::info!(version, "applied PostgreSQL schema migration");
    }
    transaction.commit().await.map_err(from_pg)?;
    Ok(MIGRATIONS.len())
}
