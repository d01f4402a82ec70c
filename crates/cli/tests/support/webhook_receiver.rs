// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

//! A real HTTP receiver for webhook tests: refuses attempts on demand, verifies every
//! signature and records what it accepted; and `eventually`, the polling wait they share.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

pub const SECRET: &str = "a-shared-secret-of-some-length";

#[derive(Default)]
pub struct Receiver {
    /// Attempts still to refuse with 503.
    pub refuse: AtomicUsize,
    /// Refuse everything while set.
    pub down: AtomicBool,
    pub attempts: AtomicUsize,
    pub bad_signatures: AtomicUsize,
    /// (delivery id, body) of each accepted delivery.
    pub accepted: Mutex<Vec<(String, Value)>>,
}

async fn receive(
    axum::extract::State(receiver): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    receiver.attempts.fetch_add(1, Ordering::SeqCst);
    let signature = headers
        .get("audrey-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !audrey_act::verify(SECRET, signature, &body) {
        receiver.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    if receiver.down.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if receiver
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let id = headers
        .get("audrey-delivery-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    receiver
        .accepted
        .lock()
        .unwrap()
        .push((id, serde_json::from_str(&body).unwrap()));
    StatusCode::NO_CONTENT
}

pub async fn start_receiver(receiver: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/hook")
}

pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
