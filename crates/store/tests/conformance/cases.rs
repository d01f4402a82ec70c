//! The conformance cases, grouped by what they exercise. Each takes a fresh [`Harness`].
//!
//! [`Harness`]: crate::harness::Harness

mod ingest;
mod queries;
mod registry;
mod retention;

pub use ingest::*;
pub use queries::*;
pub use registry::*;
pub use retention::*;
