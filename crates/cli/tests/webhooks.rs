//! Webhooks end to end: a real `audrey serve` process, a real HTTP receiver started by the
//! test that refuses the first attempts, verifies every signature and records what arrives;
//! a SIGKILL while a delivery is pending; a subscription disabled after repeated failures.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/server_process.rs"]
mod support;
#[path = "support/webhook_receiver.rs"]
mod webhook_receiver;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use support::ServerProcess;
use webhook_receiver::{Receiver, SECRET, eventually, start_receiver};

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(server: &ServerProcess) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: format!("{}/api/v1", server.base_url),
            token: server.token.clone(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, body) = self.send(reqwest::Method::POST, path, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await;
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    async fn register(&self) {
        let (status, _) = self
            .send(
                reqwest::Method::PUT,
                "/locations/lab",
                Some(json!({"name": "Lab", "latitude": 1.0, "longitude": 2.0})),
            )
            .await;
        assert!(status.is_success());
        let (status, _) = self
            .send(
                reqwest::Method::PUT,
                "/sensors/hot-1",
                Some(json!({"kind": "climate", "location_id": "lab"})),
            )
            .await;
        assert!(status.is_success());
    }

    async fn reading(&self, value: f64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let body = self
            .post(
                "/readings",
                json!({"sensor_id": "hot-1", "read_at": now, "values": {"temperature": value}}),
            )
            .await;
        assert_eq!(body["accepted"], 1, "{body}");
    }
}

#[tokio::test]
async fn a_refused_delivery_is_retried_signed_logged_and_made_after_a_sigkill() {
    let receiver = Arc::new(Receiver {
        refuse: AtomicUsize::new(2),
        ..Receiver::default()
    });
    let url = start_receiver(receiver.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--webhook-initial-backoff-ms", "200"];
    let server = ServerProcess::start_with(dir.path(), &flags).await;
    let api = Api::new(&server);
    api.register().await;
    api.post(
        "/rules",
        json!({"name": "hot", "scope": {"type": "sensor", "id": "hot-1"}, "metric": "temperature",
        "condition": ">", "threshold": 30, "clear_threshold": 28, "severity": "critical"}),
    )
    .await;
    let subscription = api
        .post(
            "/webhooks",
            json!({"url": url, "event_types": ["alert.raised", "alert.cleared"], "secret": SECRET}),
        )
        .await;
    let subscription_id = subscription["id"].as_str().unwrap().to_string();
    assert!(
        subscription.get("secret").is_none(),
        "the secret is never answered back"
    );

    api.reading(35.0).await;
    let (delivery_id, body) = eventually("the alert.raised delivery", async || {
        receiver.accepted.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(body["type"], "alert.raised");
    assert_eq!(body["data"]["severity"], "critical");
    assert_eq!(
        receiver.attempts.load(Ordering::SeqCst),
        3,
        "two refusals, then accepted"
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);

    let deliveries = api
        .get(&format!("/webhooks/{subscription_id}/deliveries"))
        .await;
    assert_eq!(deliveries["count"], 1);
    assert_eq!(deliveries["items"][0]["id"], delivery_id.as_str());
    assert_eq!(deliveries["items"][0]["status"], "delivered");
    assert_eq!(deliveries["items"][0]["attempts"], 3);
    let attempts = api
        .get(&format!("/deliveries/{delivery_id}/attempts"))
        .await;
    let codes: Vec<i64> = attempts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [503, 503, 204]);
    let times: Vec<&str> = attempts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] < pair[1]),
        "attempts are logged in time order: {times:?}"
    );

    // The receiver goes down; the clearing delivery stays pending while Audrey is killed.
    receiver.down.store(true, Ordering::SeqCst);
    api.reading(20.0).await;
    eventually("a failed attempt of the clearing delivery", async || {
        (receiver.attempts.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    server.kill_hard().await;
    receiver.down.store(false, Ordering::SeqCst);
    let server = ServerProcess::start_with(dir.path(), &flags).await;
    let (_, cleared) = eventually("the alert.cleared delivery after the restart", async || {
        receiver.accepted.lock().unwrap().get(1).cloned()
    })
    .await;
    assert_eq!(cleared["type"], "alert.cleared");
    assert_eq!(
        cleared["data"]["id"], body["data"]["id"],
        "the same alert is cleared"
    );

    // Manual redelivery sends the first delivery again, with the same idempotency id.
    let api = Api::new(&server);
    api.post(&format!("/deliveries/{delivery_id}/redeliver"), json!({}))
        .await;
    let (again, _) = eventually("the redelivery", async || {
        receiver.accepted.lock().unwrap().get(2).cloned()
    })
    .await;
    assert_eq!(again, delivery_id);
    server.terminate().await;
}

#[tokio::test]
async fn a_subscription_that_keeps_failing_is_disabled_and_can_be_enabled_again() {
    let receiver = Arc::new(Receiver::default());
    receiver.down.store(true, Ordering::SeqCst);
    let url = start_receiver(receiver.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        dir.path(),
        &[
            "--webhook-initial-backoff-ms",
            "20",
            "--webhook-disable-after",
            "3",
        ],
    )
    .await;
    let api = Api::new(&server);
    api.register().await;
    let subscription = api
        .post(
            "/webhooks",
            json!({"url": url, "event_types": ["sensor.status_changed"], "secret": SECRET}),
        )
        .await;
    let id = subscription["id"].as_str().unwrap().to_string();
    api.reading(20.0).await; // first reading: the sensor becomes online
    let disabled = eventually("the subscription to be disabled", async || {
        let subscription = api.get(&format!("/webhooks/{id}")).await;
        (subscription["enabled"] == false).then_some(subscription)
    })
    .await;
    assert_eq!(disabled["consecutive_failures"], 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.attempts.load(Ordering::SeqCst),
        3,
        "no attempts once disabled"
    );

    receiver.down.store(false, Ordering::SeqCst);
    let (status, _) = api
        .send(
            reqwest::Method::PATCH,
            &format!("/webhooks/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = eventually("the pending delivery after re-enabling", async || {
        receiver.accepted.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(body["type"], "sensor.status_changed");
    assert_eq!(body["data"]["to"], "online");
    server.terminate().await;
}

#[tokio::test]
async fn a_subscription_with_bad_fields_is_refused_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let api = Api::new(&server);
    let (status, body) = api
        .send(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": "ftp://x", "event_types": ["alert.rasied"], "secret": "short"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["url", "event_types[0]", "secret"]);
    server.terminate().await;
}
