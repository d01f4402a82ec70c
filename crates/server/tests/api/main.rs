//! Drives the real HTTP server, started in-process on an ephemeral port with a fresh data
//! directory per test, through a real HTTP client.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod auth;
mod bad_input;
mod contract;
mod geo;
mod helpers;
mod import;
mod ingest;
mod postgres;
mod queries;
mod registry;
mod rest;
mod stats;
