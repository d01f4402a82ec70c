//! A PostgreSQL store that cannot reach its server answers `Unavailable` (the variant the
//! outage spool keys off), not `Internal`, and a malformed URL is an ordinary error.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use audrey_store::{PostgresOptions, PostgresStore, StoreError};

#[test]
fn a_refused_connection_is_unavailable() {
    // Bind and drop a listener: the port is then (almost certainly) closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    match PostgresStore::open(
        &format!("postgres://postgres@127.0.0.1:{port}/audrey"),
        options,
    ) {
        Err(StoreError::Unavailable(message)) => assert!(!message.is_empty()),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("nothing listens on port {port}"),
    }
}

#[test]
fn a_malformed_url_is_not_an_outage() {
    match PostgresStore::open("postgres://host:notaport/db", PostgresOptions::default()) {
        Err(StoreError::Internal(message)) => assert!(message.contains("URL")),
        Err(other) => panic!("expected Internal, got {other:?}"),
        Ok(_) => panic!("the URL is malformed"),
    }
}
