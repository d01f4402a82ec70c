//! What the committer tells an observer after each durable commit.
//!
//! The act engine (health, quality checks, rules) consumes this. The committer calls
//! [`CommitObserver::committed`] only after every request of the group has been answered, so
//! the acknowledgement never waits for it. An observer that cannot keep up must make the call
//! block (a bounded channel): the next group commit then starts later, the ingest queue fills
//! and clients get 503 `overloaded` — backpressure instead of a dropped reading. This module
//! must never do I/O itself.

use audrey_model::{Millis, Reading};

/// A reading refused by validation, as far as the observer needs it.
#[derive(Clone, Debug)]
pub struct RejectedReading {
    /// The sensor the rejected item named, when it could be read.
    pub sensor_id: Option<String>,
    pub reason: String,
    pub received_at: Millis,
}

/// What one group commit stored: accepted readings with their ids and `received_at` (never
/// duplicates), and the rejections committed to quarantine with them.
#[derive(Clone, Debug, Default)]
pub struct CommittedBatch {
    pub readings: Vec<Reading>,
    pub rejections: Vec<RejectedReading>,
}

/// Receives every committed batch exactly once, one call at a time, on a committer thread.
/// With one committer (SQLite) that is commit order; with several (PostgreSQL) batches whose
/// transactions overlapped may arrive in either order, as their reading ids may.
pub trait CommitObserver: Send + Sync + 'static {
    /// May block to apply backpressure; must never drop a batch silently.
    fn committed(&self, batch: CommittedBatch);
}
