//! Audrey's wire protocol: messages and service stubs generated from `proto/` at build time.
//!
//! This crate owns nothing but the generated code and the descriptor set for reflection. It
//! must never hold logic: conversions to domain types live with the transport.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// `audrey.v1`: ingest, queries, registry and device sessions.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/audrey.v1.rs"));
}

/// The package-less `SensorService` that existing Python clients speak.
pub mod compat {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// The encoded `FileDescriptorSet` of every proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
