//! A crash between a readings commit and the act engine's act.db transaction: the readings
//! are durable, and after a restart the engine evaluates them before taking live input — the
//! alert the lost batch should raise is raised exactly once and its webhook delivered once,
//! and readings already evaluated are not evaluated again (no duplicate quality finding).
//!
//! The gap is made exact with the test-only failpoint `AUDREY_TEST_ACT_HOLD_BEFORE_COMMIT`:
//! the engine evaluates the first batch, creates the named file and never writes act.db; the
//! test SIGKILLs the server once the file exists. Runs on SQLite and, when
//! `AUDREY_TEST_POSTGRES_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/server_process.rs"]
mod support;
#[path = "support/webhook_receiver.rs"]
mod webhook_receiver;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use support::ServerProcess;
use webhook_receiver::{Receiver, SECRET, eventually, start_receiver};

async fn call(server: &ServerProcess, method: reqwest::Method, path: &str, body: Value) -> Value {
    let mut request = reqwest::Client::new()
        .request(method.clone(), format!("{}/api/v1{path}", server.base_url))
        .bearer_auth(&server.token);
    if method != reqwest::Method::GET {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn get(server: &ServerProcess, path: &str) -> Value {
    call(server, reqwest::Method::GET, path, Value::Null).await
}

/// Posts one reading of hot-1 and answers its id.
async fn send(server: &ServerProcess, values: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = call(
        server,
        reqwest::Method::POST,
        "/readings",
        json!({"sensor_id": "hot-1", "read_at": now, "values": values}),
    )
    .await;
    assert_eq!(body["accepted"], 1, "{body}");
    body["results"][0]["id"].as_str().unwrap().to_string()
}

fn count(list: &Value) -> usize {
    list["items"].as_array().unwrap().len()
}

async fn a_batch_lost_between_the_commits_is_evaluated_once_after_restart(
    dir: &Path,
    store_args: &[&str],
) {
    let receiver = Arc::new(Receiver::default());
    let url = start_receiver(receiver.clone()).await;

    // 1. Set up, and one reading evaluated normally: its coordinates are out of range, which
    //    gives one quality finding that a second evaluation would repeat.
    let server = ServerProcess::start_with(dir, store_args).await;
    call(
        &server,
        reqwest::Method::PUT,
        "/locations/lab",
        json!({"name": "Lab", "latitude": 1.0, "longitude": 2.0}),
    )
    .await;
    call(
        &server,
        reqwest::Method::PUT,
        "/sensors/hot-1",
        json!({"kind": "climate", "location_id": "lab"}),
    )
    .await;
    call(
        &server,
        reqwest::Method::POST,
        "/rules",
        json!({"name": "hot", "scope": {"type": "sensor", "id": "hot-1"}, "metric": "temperature",
            "condition": ">", "threshold": 30, "clear_threshold": 28, "severity": "critical"}),
    )
    .await;
    call(
        &server,
        reqwest::Method::POST,
        "/webhooks",
        json!({"url": url, "event_types": ["alert.raised"], "secret": SECRET}),
    )
    .await;
    send(&server, json!({"temperature": 20.0, "latitude": 95.0})).await;
    eventually("the first reading's quality finding", async || {
        let found = get(&server, "/events?type=quality.finding").await;
        (count(&found) == 1).then_some(())
    })
    .await;
    server.kill_hard().await;

    // 2. The raising reading is committed and acknowledged; the engine evaluates it and is
    //    stopped before its act.db transaction; SIGKILL in exactly that gap.
    let marker = dir.join("act-held");
    let server = ServerProcess::start_with_env(
        dir,
        store_args,
        &[(
            "AUDREY_TEST_ACT_HOLD_BEFORE_COMMIT",
            marker.to_str().unwrap(),
        )],
    )
    .await;
    let raising = send(&server, json!({"temperature": 35.0})).await;
    eventually("the engine to stop before writing act.db", async || {
        marker.exists().then_some(())
    })
    .await;
    server.kill_hard().await;
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 0);

    // 3. Restart: the replay runs before the server listens, so the alert is there at once.
    let server = ServerProcess::start_with(dir, store_args).await;
    let alerts = get(&server, "/alerts").await;
    assert_eq!(count(&alerts), 1, "{alerts}");
    assert_eq!(alerts["items"][0]["raised_reading_id"], raising.as_str());
    let (_, body) = eventually("the alert.raised delivery", async || {
        receiver.accepted.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(body["data"]["raised_reading_id"], raising.as_str());
    // Webhooks are delivered at least once: a kill after the receiver answered but before
    // act.db recorded it would send it again. Kill only once the delivery is recorded.
    eventually("the delivery recorded as delivered", async || {
        let deliveries = get(&server, "/deliveries").await;
        (deliveries["items"][0]["status"] == "delivered").then_some(())
    })
    .await;
    let findings = get(&server, "/events?type=quality.finding").await;
    assert_eq!(
        count(&findings),
        1,
        "the evaluated reading is not evaluated again: {findings}"
    );
    server.kill_hard().await;

    // 4. Another crash and restart replays the same window and finds everything evaluated.
    let server = ServerProcess::start_with(dir, store_args).await;
    assert_eq!(count(&get(&server, "/alerts").await), 1);
    assert_eq!(count(&get(&server, "/deliveries").await), 1);
    assert_eq!(
        count(&get(&server, "/events?type=quality.finding").await),
        1
    );
    assert_eq!(count(&get(&server, "/events?type=alert.raised").await), 1);
    server.terminate().await;
    assert_eq!(receiver.accepted.lock().unwrap().len(), 1);
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_lost_act_batch_is_replayed_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_batch_lost_between_the_commits_is_evaluated_once_after_restart(dir.path(), &[]).await;
}

#[tokio::test]
async fn a_lost_act_batch_is_replayed_once_on_postgres() {
    let Ok(admin_url) = std::env::var("AUDREY_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs AUDREY_TEST_POSTGRES_URL"
        );
        eprintln!("skipping the PostgreSQL act replay test: AUDREY_TEST_POSTGRES_URL not set");
        return;
    };
    let database = format!("audrey_replay_{}", std::process::id());
    admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    )
    .await;
    admin(&admin_url, &format!("CREATE DATABASE {database}")).await;
    let base = admin_url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{database}");
    let dir = tempfile::tempdir().unwrap();
    a_batch_lost_between_the_commits_is_evaluated_once_after_restart(
        dir.path(),
        &["--store", &url],
    )
    .await;
    admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    )
    .await;
}

async fn admin(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await.unwrap();
    drop(client);
    let _ = driver.await;
}
