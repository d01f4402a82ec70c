//! The outage spool: while the database behind the store is unreachable, acknowledged batches
//! are written durably to local segment files, and a forwarder replays them in order when it is
//! back. [`SpoolingStore`] wraps any `Arc<dyn Store>`; it owns the spool directory and must
//! never drop, reorder or silently alter an acknowledged reading, nor hold readings in memory
//! only.
//!
//! # On-disk format (version 1)
//!
//! A directory (default `<data-dir>/spool`) holds segment files `<sequence:020>.segment` and one
//! `replay.cursor` file.
//!
//! ```text
//! segment  = "AUDSPOOL" | version: u32 LE = 1 | frame*
//! frame    = length: u32 LE | crc32c(length bytes ++ payload): u32 LE | payload[length]
//! payload  = one acknowledged append batch (see `spool/record.rs`): flags, received_at,
//!            readings with their assigned ids and dedup keys, quarantine entries
//! cursor   = committed (segment u64, offset u64) | in_flight_until (segment u64, offset u64)
//!            | crc32c of those 32 bytes: u32        (all little-endian, 36 bytes)
//! ```
//!
//! # Invariants
//!
//! 1. A frame is appended and `fdatasync`ed before the batch it holds is acknowledged; a new
//!    segment's header is fsynced and then its directory before any frame goes into it.
//! 2. Only the last segment is ever appended to; a segment is at most `segment_bytes` long
//!    unless a single frame is larger (it then sits alone in its segment).
//! 3. Opening scans every segment and cuts it at the first frame whose length runs past the
//!    file or whose checksum fails: a torn write or corrupt tail is never replayed. Frames
//!    before the cut are intact and in the order they were acknowledged.
//! 4. Frames are replayed in order. Everything before `committed` is in the inner store. A
//!    replay writes `in_flight_until` before sending and `committed` after the inner store
//!    committed; a segment is deleted only when every frame in it is before `committed`.
//! 5. After a crash, frames in `[committed, in_flight_until)` — and frames flagged *uncertain*
//!    because the inner store failed while committing them — are checked before they are sent
//!    again: a frame commits whole, so if its first reading without a message id is stored the
//!    frame was committed and is skipped (a frame whose readings all carry message ids is probed
//!    by its first and otherwise resent: dedup keeps its readings single, but its quarantine
//!    entries and duplicate counts may then be recorded twice). A damaged cursor file makes
//!    every frame uncertain.
//! 6. Every reading carries its id from the moment it is acknowledged
//!    ([`audrey_store::AppendBatch::assigned_ids`]), so a frame sent twice cannot create a second row for a
//!    reading without a message id in a store that honours assigned ids; readings with a
//!    message id are also deduplicated by `(sensor_id, message_id)`.
//! 7. While the spool holds a frame not yet committed, every append goes to the spool, so the
//!    inner store receives batches in the order they were acknowledged. Several committers may
//!    append straight to the inner store at once, but a frame is written only while none of
//!    them is in flight, so every batch acknowledged before a spooled one was committed first.
//!
//! # What the inner store must guarantee
//!
//! `append` commits a batch atomically (all or nothing) and keeps `assigned_ids`;
//! it deduplicates `(sensor_id, message_id)` against everything stored before; `reading(id)`
//! finds a reading as soon as the `append` that stored it returned; it reports an unreachable
//! or write-refusing database as [`audrey_store::StoreError::Unavailable`] (anything else is not spooled).

mod cursor;
mod record;
mod segment;
mod spooling_store;

pub use record::{SpooledBatch, decode as decode_record, encode as encode_record};
pub use segment::{Frame, Position, Recovery, SegmentLog, Snapshot};
pub use spooling_store::{SpoolOptions, SpoolStatus, SpoolingStore};
