//! Versioned migrations of the two SQLite databases, applied in order at open;
//! `PRAGMA user_version` records how many each has had.

use rusqlite::Connection;

use crate::StoreError;

/// Migrations of `audrey.db`: the registry, tokens and the indexed readings. Each entry is
/// one migration; never edit one that has shipped, append a new one.
pub(crate) const MAIN: &[&str] = &[
    r#"
    CREATE TABLE locations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        city TEXT,
        country TEXT,
        latitude REAL NOT NULL,
        longitude REAL NOT NULL,
        altitude REAL,
        timezone TEXT NOT NULL,
        iata TEXT,
        icao TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER
    );
    CREATE TABLE sensors (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        location_id TEXT NOT NULL REFERENCES locations(id),
        metrics TEXT NOT NULL,
        expected_interval_seconds INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER
    );
    CREATE INDEX sensors_location ON sensors(location_id);

    -- The indexed layout that the background flush fills in large sorted batches.
    CREATE TABLE readings (
        seq INTEGER PRIMARY KEY,
        id BLOB NOT NULL,
        sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        read_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        message_id TEXT,
        vals TEXT NOT NULL
    );
    CREATE UNIQUE INDEX readings_id ON readings(id);
    CREATE INDEX readings_sensor_time ON readings(sensor_id, read_at, id);
    CREATE INDEX readings_location_time ON readings(location_id, read_at, id);
    CREATE INDEX readings_time ON readings(read_at, id);
    CREATE UNIQUE INDEX readings_message ON readings(sensor_id, message_id)
        WHERE message_id IS NOT NULL;

    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        sensor_id TEXT,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    "#,
    r#"
    -- Registry changes waiting for someone to follow their confirmation link.
    CREATE TABLE staged_changes (
        id TEXT PRIMARY KEY,
        link_hash TEXT NOT NULL UNIQUE,
        entity TEXT NOT NULL,
        entity_id TEXT,
        action TEXT NOT NULL,
        body TEXT,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        finished_at INTEGER
    );
    CREATE INDEX staged_changes_status ON staged_changes(status, created_at);
    "#,
    // 3: location attributes (an import's extra columns) and the indexes that imports (by
    // code) and radius searches (by a latitude/longitude box) use.
    r#"
    ALTER TABLE locations ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX locations_icao ON locations(icao) WHERE icao IS NOT NULL;
    CREATE INDEX locations_iata ON locations(iata) WHERE iata IS NOT NULL;
    CREATE INDEX locations_position ON locations(latitude, longitude);
    "#,
    // 4: readings packed into per-sensor chunks (the layout is described in sqlite.rs and
    // encoding.rs). The rows of `readings` are converted at open (legacy.rs), then it is
    // dropped.
    r#"
    CREATE TABLE chunks (
        chunk INTEGER PRIMARY KEY,
        sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        min_read_at INTEGER NOT NULL,
        max_read_at INTEGER NOT NULL,
        count INTEGER NOT NULL,
        -- The landing seq the flush that wrote this chunk went up to (0: converted).
        flushed_through INTEGER NOT NULL,
        body BLOB NOT NULL
    );
    CREATE INDEX chunks_sensor_min ON chunks(sensor_id, min_read_at);
    CREATE INDEX chunks_sensor_max ON chunks(sensor_id, max_read_at);
    CREATE INDEX chunks_location_min ON chunks(location_id, min_read_at);
    CREATE INDEX chunks_location_max ON chunks(location_id, max_read_at);
    CREATE INDEX chunks_min ON chunks(min_read_at);
    CREATE INDEX chunks_max ON chunks(max_read_at);
    CREATE TABLE reading_ids (
        id BLOB PRIMARY KEY,
        chunk INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE reading_keys (
        sensor_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        id BLOB NOT NULL,
        PRIMARY KEY (sensor_id, message_id)
    ) WITHOUT ROWID;
    CREATE TABLE flush_state (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        landed_through INTEGER NOT NULL
    );
    INSERT INTO flush_state (singleton, landed_through) VALUES (1, 0);
    "#,
    // 5: per-chunk, per-metric summaries (summary.rs), which statistics and hour/day buckets
    // without percentiles read instead of decoding values. Keyed by metric and time so a
    // range scan never touches `chunks`. Chunks stored before this migration are summarised
    // at open, by chunk number up to `last_chunk` (summary.rs, `backfill`).
    r#"
    CREATE TABLE chunk_summaries (
        metric TEXT NOT NULL,
        min_read_at INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        max_read_at INTEGER NOT NULL,
        sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        flushed_through INTEGER NOT NULL,
        count INTEGER NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        sum REAL NOT NULL,
        mean REAL NOT NULL,
        -- Sum of squared deviations from the mean.
        m2 REAL NOT NULL,
        PRIMARY KEY (metric, min_read_at, chunk)
    ) WITHOUT ROWID;
    CREATE INDEX chunk_summaries_sensor ON chunk_summaries(metric, sensor_id, min_read_at);
    CREATE INDEX chunk_summaries_chunk ON chunk_summaries(chunk);
    CREATE TABLE summary_backfill (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        done_through INTEGER NOT NULL,
        last_chunk INTEGER NOT NULL
    );
    INSERT INTO summary_backfill (singleton, done_through, last_chunk)
        SELECT 1, 0, MAX(chunk) FROM chunks HAVING COUNT(*) > 0;
    "#,
    // 6: the dedup index of packed readings keyed by a 64-bit hash of (sensor_id, message_id)
    // with the chunk holding the reading (dedup.rs), instead of both texts and the id per
    // reading. The entries of `reading_keys` are moved here at open
    // (`dedup::convert_reading_keys`), which then drops it.
    r#"
    CREATE TABLE dedup_keys (
        key INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        PRIMARY KEY (key, chunk)
    ) WITHOUT ROWID;
    "#,
    // 7: the ids of a flush in blocks of sorted ids, one row per block instead of one
    // `reading_ids` row per reading (id_index.rs). `reading_ids` keeps its entries and takes
    // the ids minted out of order. IF NOT EXISTS: the conversion tests turn a store's
    // version back by hand and keep its blocks, which hold the ids they convert.
    r#"
    CREATE TABLE IF NOT EXISTS reading_id_blocks (
        first_id BLOB PRIMARY KEY,
        last_id BLOB NOT NULL,
        body BLOB NOT NULL
    );
    "#,
    // 8: per-sensor counters live here, folded by the flush's own transaction instead of the
    // landing trim's (counters.rs). Open moves the rows of landing.db's table here once and
    // puts the row of `counters_moved` in the same transaction. IF NOT EXISTS for the same
    // reason as 7.
    r#"
    CREATE TABLE IF NOT EXISTS sensor_counters (
        sensor_id TEXT PRIMARY KEY,
        accepted INTEGER NOT NULL DEFAULT 0,
        duplicate INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS counters_moved (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1)
    );
    "#,
];

/// Migrations of `landing.db`: everything the acknowledgement path writes in one transaction.
pub(crate) const LANDING: &[&str] = &[
    r#"
    -- Append-only: the acknowledgement path writes here and nowhere else.
    CREATE TABLE landing (
        seq INTEGER PRIMARY KEY,
        id BLOB NOT NULL,
        sensor_id TEXT NOT NULL,
        location_id TEXT NOT NULL,
        read_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        message_id TEXT,
        vals TEXT NOT NULL
    );
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        received_at INTEGER NOT NULL,
        sensor_id TEXT,
        reason TEXT NOT NULL,
        path TEXT NOT NULL,
        message TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX quarantine_sensor ON quarantine(sensor_id, id);
    CREATE TABLE sensor_counters (
        sensor_id TEXT PRIMARY KEY,
        accepted INTEGER NOT NULL DEFAULT 0,
        duplicate INTEGER NOT NULL DEFAULT 0,
        rejected INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    "#,
    // 2: one row per group commit, the batch in the binary encoding of encoding.rs.
    // AUTOINCREMENT: a seq is never reused, even after the table was emptied, because
    // audrey.db remembers the highest seq it has flushed.
    r#"
    CREATE TABLE landing_batches (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at INTEGER NOT NULL,
        body BLOB NOT NULL
    );
    "#,
    // 3: per-sensor counters leave the commit path (counters.rs): a landing row carries its
    // commit's duplicate and rejected counts, and `sensor_counters` is brought up to date
    // when its batch is trimmed. NULL marks a row written before this migration, already
    // counted; open converts those.
    r#"
    ALTER TABLE landing_batches ADD COLUMN counters BLOB;
    "#,
];

/// The schema version of this build: the sum over both databases.
pub(crate) fn latest_version() -> usize {
    MAIN.len() + LANDING.len()
}

/// Applies the migrations this database has not seen; answers the resulting version.
pub(crate) fn migrate(
    connection: &mut Connection,
    migrations: &[&str],
) -> Result<usize, StoreError> {
    let current: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let current = current as usize;
    if current > migrations.len() {
        return Err(StoreError::Internal(format!(
            "the database has schema version {current}, newer than this Audrey knows ({}); \
             upgrade Audrey",
            migrations.len()
        )));
    }
    for (index, migration) in migrations.iter().enumerate().skip(current) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
        tracing::info!(version = index + 1, "applied schema migration");
    }
    Ok(migrations.len())
}
