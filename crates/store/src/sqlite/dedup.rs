//! The dedup index of packed readings: `dedup_keys (key, chunk)`.
//!
//! A reading with a message id has one entry: the 64-bit [`key_of`] its `(sensor_id,
//! message_id)` and the chunk that holds it. The key is an integer so that an entry is ~12
//! bytes instead of the two texts and the id (~65 bytes in `reading_keys`, the table it
//! replaced in migration 6 of audrey.db, schema 9), and a flush's entries touch a quarter of
//! the pages with integer comparisons instead of `memcmp` of texts. Its top [`SENSOR_BITS`] bits come from the
//! sensor id alone, so a sensor's keys stay together in the B-tree (a flush of 400,000
//! readings of 10,000 sensors dirties about one leaf per sensor, not one per reading, however
//! large the index grows); the other bits from the whole key.
//!
//! Two different keys can share an integer. So an entry only says where to look: a lookup
//! reads each chunk the key names, checks that it belongs to the sensor and searches its
//! message ids, and answers the id stored with the exact message id or nothing. Dedup stays
//! exact, across restarts too: the entries are written in the flush's transaction, with the
//! chunk. Two readings of one chunk whose keys share an integer share an entry, which
//! retention keeps while either is kept.
//!
//! The hash is spelled out here, not taken from a library, because it is stored: it must
//! never change between builds.

use rusqlite::{Connection, OptionalExtension, params};

use audrey_model::ReadingId;

use super::counters::FastMap;
use super::encoding::chunk_keys;
use super::id_index;
use super::legacy::table_exists;
use crate::StoreError;

/// A stored reading's key, when it has a message id.
pub(crate) fn reading_key(reading: &audrey_model::Reading) -> Option<i64> {
    let message = reading.message_id.as_ref()?;
    Some(key_of(reading.sensor_id.as_str(), message.as_str()))
}

/// Bits of a key that come from the sensor id alone.
const SENSOR_BITS: u32 = 24;

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// MurmurHash3's 64-bit finaliser: every input bit reaches every output bit.
pub(crate) fn mix(mut value: u64) -> u64 {
    value ^= value >> 33;
    value = value.wrapping_mul(0xff51_afd7_ed55_8ccd);
    value ^= value >> 33;
    value = value.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    value ^ (value >> 33)
}

/// A stable 64-bit hash of `bytes`, eight bytes at a time, seeded with `seed`.
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut state = seed ^ (bytes.len() as u64).wrapping_mul(MULTIPLIER);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        state = (state.rotate_left(23) ^ word).wrapping_mul(MULTIPLIER);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        state = (state.rotate_left(23) ^ u64::from_le_bytes(last)).wrapping_mul(MULTIPLIER);
    }
    mix(state)
}

/// The stored key of `(sensor, message)`: the sensor's hash in the top bits, the whole
/// key's hash below.
pub(crate) fn key_of(sensor: &str, message: &str) -> i64 {
    let sensor_hash = hash_bytes(1, sensor.as_bytes());
    let key_hash = hash_bytes(sensor_hash, message.as_bytes());
    let top = sensor_hash & !(u64::MAX >> SENSOR_BITS);
    (top | (key_hash >> SENSOR_BITS)) as i64
}

/// The keys of one chunk's readings: message id → reading id.
type ChunkKeys = FastMap<String, ReadingId>;

/// Looks keys up among packed readings, remembering the chunks it decoded (a retried batch
/// finds its duplicates in few chunks).
#[derive(Default)]
pub(crate) struct Lookup {
    chunks: FastMap<i64, Option<(String, ChunkKeys)>>,
}

impl Lookup {
    /// The id stored under `(sensor, message)` among packed readings, if any.
    pub fn find(
        &mut self,
        reader: &Connection,
        sensor: &str,
        message: &str,
    ) -> Result<Option<ReadingId>, StoreError> {
        let mut candidates =
            reader.prepare_cached("SELECT chunk FROM dedup_keys WHERE key = ?1")?;
        let chunks = candidates
            .query_map([key_of(sensor, message)], |row| row.get::<_, i64>(0))?
            .collect::<Result<Vec<i64>, _>>()?;
        for chunk in chunks {
            let decoded = match self.chunks.entry(chunk) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(chunk_message_ids(reader, chunk)?)
                }
            };
            if let Some((owner, keys)) = decoded
                && owner == sensor
                && let Some(id) = keys.get(message)
            {
                return Ok(Some(*id));
            }
        }
        Ok(None)
    }
}

/// A chunk's sensor and its readings' message ids; `None` if the chunk is gone.
fn chunk_message_ids(
    reader: &Connection,
    chunk: i64,
) -> Result<Option<(String, ChunkKeys)>, StoreError> {
    let mut statement =
        reader.prepare_cached("SELECT sensor_id, body FROM chunks WHERE chunk = ?1")?;
    let found = statement
        .query_row([chunk], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    let Some((sensor, body)) = found else {
        return Ok(None);
    };
    let keys = chunk_keys(&body)?
        .into_iter()
        .filter_map(|(_, id, message)| Some((message?, id)))
        .collect();
    Ok(Some((sensor, keys)))
}

/// Moves the entries of `reading_keys` (schema 8 and earlier: texts and id per reading)
/// into `dedup_keys` and drops it, in one transaction: an interrupted conversion left
/// `reading_keys` whole and is done again at the next open. Answers how many it moved.
pub(crate) fn convert_reading_keys(main: &mut Connection) -> Result<usize, StoreError> {
    if !table_exists(main, "reading_keys")? {
        return Ok(0);
    }
    let transaction = main.transaction()?;
    let mut moved = 0usize;
    {
        // Each key's chunk through the id index: the old store's ids are in `reading_ids`,
        // but the index answers for either part.
        let mut select =
            transaction.prepare("SELECT sensor_id, message_id, id FROM reading_keys")?;
        let mut insert =
            transaction.prepare("INSERT OR IGNORE INTO dedup_keys (key, chunk) VALUES (?1, ?2)")?;
        let mut rows = select.query([])?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next()? {
            let sensor = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let message = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            let id = id_index::parse_id(row.get_ref(2)?.as_blob().map_err(rusqlite::Error::from)?)?;
            if let Some(chunk) = id_index::chunk_of(&transaction, id)? {
                entries.push((key_of(sensor, message), chunk));
            }
        }
        entries.sort_unstable();
        for (key, chunk) in entries {
            insert.execute(params![key, chunk])?;
            moved += 1;
        }
    }
    transaction.execute_batch("DROP TABLE reading_keys;")?;
    transaction.commit()?;
    if moved > 0 {
        tracing::info!(keys = moved, "converted the dedup index to hashed keys");
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_hash_never_changes() {
        // Stored keys depend on these values: a change here would break every store's dedup.
        assert_eq!(key_of("s1", "m1"), key_of("s1", "m1"));
        assert_eq!(key_of("sensor-1", "message-1"), 7_277_823_107_133_984_743);
        assert_eq!(key_of("", ""), -5_451_963_051_978_079_349);
    }

    #[test]
    fn a_sensors_keys_share_their_top_bits_and_differ_below() {
        let top = |key: i64| (key as u64) >> (64 - SENSOR_BITS);
        let first = key_of("sensor-7", "a");
        let second = key_of("sensor-7", "b");
        assert_eq!(top(first), top(second));
        assert_ne!(first, second);
        assert_ne!(top(key_of("sensor-8", "a")), top(first));
        // The separation between sensor and message is not a plain concatenation.
        assert_ne!(key_of("ab", "c"), key_of("a", "bc"));
    }
}
