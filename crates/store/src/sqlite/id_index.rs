//! Where each flushed reading's id lives: the chunk that holds it.
//!
//! Ids are UUIDv7 minted in commit order, so a flush's ids, sorted, lie above every id flushed
//! before, except the few minted out of order (a replay's assigned ids, a clock stepped
//! back). The index has two parts:
//! - `reading_id_blocks`: the sorted ids of a flush cut into blocks of [`BLOCK_IDS`], one row
//!   each, keyed by the block's first id and covering up to its last. Each block's range lies
//!   above every id stored when it was written, so the ranges never overlap and a look-up is
//!   one index seek (the last block starting at or before the id) and a binary search.
//! - `reading_ids`: one row per id, for ids at or below the highest id already stored when
//!   their flush ran (out of order, or packed a second time), and every entry of stores
//!   flushed before blocks existed.
//!
//! One row per block instead of one per reading: a by-id look-up of a flushed reading is
//! about 38 % faster and the index a quarter smaller (docs/benchmarks.md, session 7). The
//! flush itself is no faster: its per-reading inserts had been B-tree appends.
//!
//! A block's body: one format byte, the lowest chunk number (i64, little-endian), the ids
//! (16 bytes each, ascending), then each id's chunk as an offset from the lowest (u32,
//! little-endian). Retention rewrites a block without the ids it removes, keeping its range,
//! and deletes it once empty.

use rusqlite::{Connection, OptionalExtension, params};

use audrey_model::ReadingId;

use super::counters::FastMap;
use crate::StoreError;

/// Ids per block: a block's row (about 3.97 KB) fills one 4 KB page of `audrey.db` without
/// spilling into an overflow page. Rows never share a page at this size, so a smaller block
/// wastes the rest of its page: 128 ids (2.6 KB) made the index 32 bytes per reading on disk
/// instead of about 21.
pub(crate) const BLOCK_IDS: usize = 196;

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 8;
const ENTRY: usize = 16 + 4;

fn corrupt() -> StoreError {
    StoreError::Internal("a block of reading_id_blocks is corrupt".into())
}

/// How many ids a block's body holds, checking its shape.
fn entry_count(body: &[u8]) -> Result<usize, StoreError> {
    if body.len() < HEADER || body[0] != FORMAT || !(body.len() - HEADER).is_multiple_of(ENTRY) {
        return Err(corrupt());
    }
    Ok((body.len() - HEADER) / ENTRY)
}

/// A block's ids, ascending, each with its chunk.
fn decode(body: &[u8]) -> Result<Vec<(ReadingId, i64)>, StoreError> {
    let count = entry_count(body)?;
    let base = i64::from_le_bytes(body[1..9].try_into().map_err(|_| corrupt())?);
    let (ids, offsets) = body[HEADER..].split_at(count * 16);
    let (ids, offsets) = (ids.as_chunks::<16>().0, offsets.as_chunks::<4>().0);
    Ok(ids
        .iter()
        .zip(offsets)
        .map(|(id, offset)| {
            (
                ReadingId(uuid::Uuid::from_bytes(*id)),
                base + i64::from(u32::from_le_bytes(*offset)),
            )
        })
        .collect())
}

/// The chunk of `id`, reading only what the binary search touches.
fn find(body: &[u8], id: ReadingId) -> Result<Option<i64>, StoreError> {
    let count = entry_count(body)?;
    let (ids, _) = body[HEADER..HEADER + count * 16].as_chunks::<16>();
    let Ok(at) = ids.binary_search(id.as_bytes()) else {
        return Ok(None);
    };
    let base = i64::from_le_bytes(body[1..9].try_into().map_err(|_| corrupt())?);
    let (offsets, _) = body[HEADER + count * 16..].as_chunks::<4>();
    Ok(Some(base + i64::from(u32::from_le_bytes(offsets[at]))))
}

fn encode(entries: &[(ReadingId, i64)]) -> Result<Vec<u8>, StoreError> {
    let base = entries.iter().map(|(_, chunk)| *chunk).min().unwrap_or(0);
    let mut body = Vec::with_capacity(HEADER + entries.len() * ENTRY);
    body.push(FORMAT);
    body.extend_from_slice(&base.to_le_bytes());
    for (id, _) in entries {
        body.extend_from_slice(id.as_bytes());
    }
    for (_, chunk) in entries {
        let offset = u32::try_from(chunk - base).map_err(|_| {
            StoreError::Internal("a block's chunks span more than 2^32 numbers".into())
        })?;
        body.extend_from_slice(&offset.to_le_bytes());
    }
    Ok(body)
}

/// Calls `read` with the first id, last id and body of the block whose range holds `id`,
/// if there is one.
fn block_holding<T>(
    connection: &Connection,
    id: ReadingId,
    read: impl FnOnce(&[u8], &[u8], &[u8]) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = connection.prepare_cached(
        "SELECT first_id, last_id, body FROM reading_id_blocks
         WHERE first_id <= ?1 ORDER BY first_id DESC LIMIT 1",
    )?;
    let mut rows = statement.query([id.as_bytes()])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let blob = |index| -> Result<&[u8], StoreError> {
        Ok(row
            .get_ref(index)?
            .as_blob()
            .map_err(rusqlite::Error::from)?)
    };
    let last = blob(1)?;
    if last < &id.as_bytes()[..] {
        return Ok(None);
    }
    read(blob(0)?, last, blob(2)?).map(Some)
}

/// The chunk of `id` in the blocks, if it is there.
fn chunk_in_blocks(connection: &Connection, id: ReadingId) -> Result<Option<i64>, StoreError> {
    Ok(block_holding(connection, id, |_, _, body| find(body, id))?.flatten())
}

/// The chunk holding the flushed reading `id`, if one does.
pub(crate) fn chunk_of(connection: &Connection, id: ReadingId) -> Result<Option<i64>, StoreError> {
    if let Some(chunk) = chunk_in_blocks(connection, id)? {
        return Ok(Some(chunk));
    }
    let mut single = connection.prepare_cached("SELECT chunk FROM reading_ids WHERE id = ?1")?;
    Ok(single
        .query_row([id.as_bytes()], |row| row.get(0))
        .optional()?)
}

/// A reading id stored as a 16-byte blob.
pub(crate) fn parse_id(bytes: &[u8]) -> Result<ReadingId, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(|id| ReadingId(uuid::Uuid::from_bytes(id)))
        .map_err(|_| StoreError::Internal("a stored reading id is corrupt".into()))
}

/// The highest id stored in either part: new blocks start above it.
fn highest(connection: &Connection) -> Result<Option<ReadingId>, StoreError> {
    let block: Option<Vec<u8>> = connection
        .prepare_cached("SELECT last_id FROM reading_id_blocks ORDER BY first_id DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    let single: Option<Vec<u8>> = connection
        .prepare_cached("SELECT MAX(id) FROM reading_ids")?
        .query_row([], |row| row.get(0))?;
    let mut highest = None;
    for bytes in [block, single].into_iter().flatten() {
        highest = highest.max(Some(parse_id(&bytes)?));
    }
    Ok(highest)
}

/// Records where each of `entries` (ascending by id) lives, in the caller's transaction.
/// Answers the ids that were already stored: those keep their place and the caller skips
/// their readings.
pub(crate) fn insert(
    connection: &Connection,
    entries: &[(ReadingId, i64)],
) -> Result<FastMap<ReadingId, ()>, StoreError> {
    debug_assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
    let mut already_stored = FastMap::default();
    let highest = highest(connection)?;
    let split = highest.map_or(0, |highest| {
        entries.partition_point(|(id, _)| *id <= highest)
    });
    let (low, high) = entries.split_at(split);
    if !low.is_empty() {
        let mut insert_single = connection
            .prepare_cached("INSERT OR IGNORE INTO reading_ids (id, chunk) VALUES (?1, ?2)")?;
        for (id, chunk) in low {
            let in_block = chunk_in_blocks(connection, *id)?.is_some();
            if in_block || insert_single.execute(params![id.as_bytes(), chunk])? == 0 {
                already_stored.insert(*id, ());
            }
        }
    }
    let mut insert_block = connection.prepare_cached(
        "INSERT INTO reading_id_blocks (first_id, last_id, body) VALUES (?1, ?2, ?3)",
    )?;
    for block in high.chunks(BLOCK_IDS) {
        insert_block.execute(params![
            block[0].0.as_bytes(),
            block[block.len() - 1].0.as_bytes(),
            encode(block)?
        ])?;
    }
    Ok(already_stored)
}

/// A block retention changes: its first id, last id and body, and the ids it loses.
type Touched = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<ReadingId>);

/// Forgets `ids`, in the caller's transaction (retention).
pub(crate) fn remove(connection: &Connection, ids: &mut [ReadingId]) -> Result<(), StoreError> {
    ids.sort_unstable();
    let mut delete_single = connection.prepare_cached("DELETE FROM reading_ids WHERE id = ?1")?;
    // Ids not in `reading_ids`, by the block holding them. Ranges never overlap, so
    // ascending ids meet each block once.
    let mut by_block: Vec<Touched> = Vec::new();
    for &id in ids.iter() {
        if delete_single.execute([id.as_bytes()])? > 0 {
            continue;
        }
        if let Some((_, last, _, gone)) = by_block.last_mut()
            && &id.as_bytes()[..] <= last.as_slice()
        {
            gone.push(id);
            continue;
        }
        if let Some(block) = block_holding(connection, id, |first, last, body| {
            Ok((first.to_vec(), last.to_vec(), body.to_vec(), vec![id]))
        })? {
            by_block.push(block);
        }
    }
    let mut rewrite =
        connection.prepare_cached("UPDATE reading_id_blocks SET body = ?2 WHERE first_id = ?1")?;
    let mut delete_block =
        connection.prepare_cached("DELETE FROM reading_id_blocks WHERE first_id = ?1")?;
    for (first, _, body, gone) in by_block {
        let mut entries = decode(&body)?;
        entries.retain(|(id, _)| gone.binary_search(id).is_err());
        if entries.is_empty() {
            delete_block.execute([first])?;
        } else {
            rewrite.execute(params![first, encode(&entries)?])?;
        }
    }
    Ok(())
}

/// Up to `limit` flushed ids above `after`, ascending, each with its chunk.
pub(crate) fn after(
    connection: &Connection,
    after: Option<ReadingId>,
    limit: usize,
) -> Result<Vec<(ReadingId, i64)>, StoreError> {
    let lowest = after.map_or_else(Vec::new, |after| after.as_bytes().to_vec());
    let mut found: Vec<(ReadingId, i64)> = Vec::new();
    {
        let mut singles = connection.prepare_cached(
            "SELECT id, chunk FROM reading_ids WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = singles.query_map(params![lowest, limit as i64], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (id, chunk) = row?;
            found.push((parse_id(&id)?, chunk));
        }
    }
    // Blocks in id order from the one holding `after`: their ranges never overlap, so the
    // walk stops once `limit` ids above `after` came from them.
    let start: Vec<u8> = match after {
        Some(after) => block_holding(connection, after, |first, _, _| Ok(first.to_vec()))?
            .unwrap_or_else(|| lowest.clone()),
        None => Vec::new(),
    };
    let mut blocks = connection.prepare_cached(
        "SELECT body FROM reading_id_blocks WHERE first_id >= ?1 ORDER BY first_id",
    )?;
    let mut rows = blocks.query([start])?;
    let mut from_blocks = 0;
    while from_blocks < limit {
        let Some(row) = rows.next()? else { break };
        let body = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
        for (id, chunk) in decode(body)? {
            if after.is_none_or(|after| id > after) && from_blocks < limit {
                found.push((id, chunk));
                from_blocks += 1;
            }
        }
    }
    found.sort_unstable_by_key(|(id, _)| *id);
    found.truncate(limit);
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id(n: u128) -> ReadingId {
        ReadingId(uuid::Uuid::from_u128(n))
    }

    fn index() -> Connection {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::sqlite::schema::migrate(&mut connection, crate::sqlite::schema::MAIN).unwrap();
        connection
    }

    fn count(connection: &Connection, table: &str) -> i64 {
        connection
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get(0)
            })
            .unwrap()
    }

    /// Ids 1000, 1002, … (even), each in chunk 7 + its number mod 5.
    fn flush_of(from: u128, count: usize) -> Vec<(ReadingId, i64)> {
        (0..count as u128)
            .map(|n| (id(from + 2 * n), 7 + (n % 5) as i64))
            .collect()
    }

    #[test]
    fn a_flush_goes_into_blocks_and_every_id_is_found_with_its_chunk() {
        let connection = index();
        let entries = flush_of(1000, BLOCK_IDS * 2 + 3);
        assert!(insert(&connection, &entries).unwrap().is_empty());
        assert_eq!(count(&connection, "reading_id_blocks"), 3);
        assert_eq!(count(&connection, "reading_ids"), 0);
        for (id, chunk) in &entries {
            assert_eq!(chunk_of(&connection, *id).unwrap(), Some(*chunk), "{id:?}");
        }
        // Ids inside a block's range, before the first block and after the last are absent.
        for absent in [
            id(1001),
            id(1000 + 2 * BLOCK_IDS as u128 + 1),
            id(5),
            id(1 << 100),
        ] {
            assert_eq!(chunk_of(&connection, absent).unwrap(), None, "{absent:?}");
        }
    }

    #[test]
    fn ids_at_or_below_the_highest_stored_go_one_by_one_and_a_second_packing_is_reported() {
        let connection = index();
        insert(&connection, &flush_of(1000, 300)).unwrap();
        // A later flush with ids minted out of order (below 1598, the highest) and new ones.
        let mut later = vec![(id(999), 40), (id(1001), 41), (id(1500), 42)];
        later.extend(flush_of(2000, 10).into_iter().map(|(id, _)| (id, 43)));
        let again = insert(&connection, &later).unwrap();
        // 1500 is stored already (in a block, chunk 7 + 250 mod 5); 999 and 1001 are new.
        assert_eq!(again.keys().copied().collect::<Vec<_>>(), vec![id(1500)]);
        assert_eq!(count(&connection, "reading_ids"), 2);
        assert_eq!(chunk_of(&connection, id(999)).unwrap(), Some(40));
        assert_eq!(chunk_of(&connection, id(1001)).unwrap(), Some(41));
        assert_eq!(chunk_of(&connection, id(1500)).unwrap(), Some(7));
        assert_eq!(chunk_of(&connection, id(2018)).unwrap(), Some(43));
        // Packing the whole later flush again stores nothing twice.
        let mut all: Vec<ReadingId> = insert(&connection, &later).unwrap().into_keys().collect();
        all.sort_unstable();
        assert_eq!(all, later.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    }

    #[test]
    fn ids_after_merge_blocks_and_single_entries_in_order() {
        let connection = index();
        insert(&connection, &flush_of(1000, 300)).unwrap();
        insert(&connection, &[(id(1001), 50), (id(1403), 51)]).unwrap();
        insert(&connection, &flush_of(5000, 20)).unwrap();
        let mut model: Vec<(ReadingId, i64)> = flush_of(1000, 300);
        model.extend([(id(1001), 50), (id(1403), 51)]);
        model.extend(flush_of(5000, 20));
        model.sort_unstable();
        for start in [
            None,
            Some(id(0)),
            Some(id(1000)),
            Some(id(1001)),
            Some(id(1402)),
            Some(id(1599)),
            Some(id(5019)),
        ] {
            for limit in [1, 3, 129, 1000] {
                let expected: Vec<_> = model
                    .iter()
                    .filter(|(id, _)| start.is_none_or(|start| *id > start))
                    .take(limit)
                    .copied()
                    .collect();
                assert_eq!(
                    after(&connection, start, limit).unwrap(),
                    expected,
                    "{start:?} {limit}"
                );
            }
        }
    }

    #[test]
    fn removed_ids_are_gone_from_blocks_and_single_entries_and_empty_blocks_go() {
        let connection = index();
        let entries = flush_of(1000, BLOCK_IDS * 2);
        insert(&connection, &entries).unwrap();
        insert(&connection, &[(id(1001), 50)]).unwrap();
        // The whole first block, every other id of the second, and the single entry.
        let mut gone: Vec<ReadingId> = entries[..BLOCK_IDS].iter().map(|(id, _)| *id).collect();
        gone.extend(entries[BLOCK_IDS..].iter().step_by(2).map(|(id, _)| *id));
        gone.push(id(1001));
        gone.reverse();
        remove(&connection, &mut gone).unwrap();
        assert_eq!(count(&connection, "reading_id_blocks"), 1);
        assert_eq!(count(&connection, "reading_ids"), 0);
        for (index, (id, chunk)) in entries.iter().enumerate() {
            let kept = index >= BLOCK_IDS && (index - BLOCK_IDS) % 2 == 1;
            assert_eq!(
                chunk_of(&connection, *id).unwrap(),
                kept.then_some(*chunk),
                "{id:?}"
            );
        }
        assert_eq!(chunk_of(&connection, id(1001)).unwrap(), None);
        assert_eq!(after(&connection, None, 1000).unwrap().len(), BLOCK_IDS / 2);
    }

    #[test]
    fn a_damaged_block_is_an_error_not_a_wrong_answer() {
        let connection = index();
        insert(&connection, &flush_of(1000, 10)).unwrap();
        connection
            .execute(
                "UPDATE reading_id_blocks SET body = substr(body, 1, 30)",
                [],
            )
            .unwrap();
        assert!(chunk_of(&connection, id(1002)).is_err());
        assert!(after(&connection, None, 5).is_err());
    }
}
