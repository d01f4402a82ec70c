//! Drives the real gRPC server, started in-process on ephemeral ports with a fresh data
//! directory per test, through real tonic clients.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod app;
mod ingest;
mod parity;
mod queries;
mod registry;
mod sessions;
