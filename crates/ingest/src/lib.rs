//! The ingest pipeline: validate → dedupe → group commit → acknowledge.
//!
//! Every transport (HTTP, gRPC, later brokers) hands parsed items to [`Pipeline::submit`] and
//! gets one outcome per item back, only after the store committed durably. One committer
//! thread takes everything that queued up while the previous commit ran and commits it as one
//! transaction, so throughput rises with concurrency while each acknowledgement stays durable.
//! The queue is bounded in readings; a caller that cannot get room within a bound is told to
//! retry. The outage spool ([`spool::SpoolingStore`]) keeps acknowledging while the database
//! behind the store is unreachable. This crate must never parse transport formats or talk SQL.

mod observer;
mod pipeline;
pub mod spool;
mod telemetry;

pub use observer::{CommitObserver, CommittedBatch, RejectedReading};
pub use pipeline::{IncomingItem, IngestError, IngestOptions, ItemOutcome, Payload, Pipeline};
pub use telemetry::IngestMetrics;
