//! Webhook deliveries: signing, the at-least-once dispatcher, and retry timing.
//!
//! A delivery row is written in the same transaction as the event it carries, before any
//! attempt. The dispatcher picks due pending deliveries, POSTs them, and records every attempt
//! (status, latency, error) together with the delivery's new state in one transaction. A
//! failure is retried with exponential backoff and jitter until the delivery is older than the
//! maximum age; a subscription is disabled after N consecutive failed attempts. Because rows
//! are stored first, a delivery pending when Audrey dies is made after it restarts.
//!
//! Each POST carries:
//! - `Audrey-Signature: t=<unix milliseconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! - `Audrey-Delivery-Id: <delivery id>` — the idempotency id; retries repeat it
//! - `Audrey-Event-Type: <event type>`

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use audrey_model::Millis;

use crate::engine::Engine;
use crate::records::{Attempt, Delivery, DeliveryStatus, Event, Subscription};

pub const SIGNATURE_HEADER: &str = "audrey-signature";
pub const DELIVERY_ID_HEADER: &str = "audrey-delivery-id";
pub const EVENT_TYPE_HEADER: &str = "audrey-event-type";

#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// First retry delay; doubles per attempt, with jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A delivery still failing this long after it was created is given up (`failed`).
    pub max_age: Duration,
    /// Consecutive failed attempts after which a subscription is disabled.
    pub disable_after_failures: u32,
    pub request_timeout: Duration,
    /// Deliveries attempted at once.
    pub concurrency: usize,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            disable_after_failures: 20,
            request_timeout: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The `Audrey-Signature` value for a body sent at `timestamp_ms`.
pub fn signature(secret: &str, timestamp_ms: i64, body: &str) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={timestamp_ms},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Checks a received `Audrey-Signature` header (in constant time), as a receiver would.
pub fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut timestamp = None;
    let mut given = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => given = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(given)) = (timestamp, given) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.verify_slice(&given).is_ok()
}

pub(crate) fn new_delivery(subscription: &Subscription, event: &Event, now: Millis) -> Delivery {
    Delivery {
        id: uuid::Uuid::now_v7().to_string(),
        subscription_id: subscription.id.clone(),
        event_id: event.id.clone(),
        event_type: event.kind.clone(),
        body: serde_json::to_string(event).unwrap_or_default(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: now,
        created_at: now,
        last_error: None,
    }
}

fn backoff(options: &WebhookOptions, attempts: u32) -> Duration {
    let exponential = options
        .initial_backoff
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(options.max_backoff);
    // Full jitter over the upper half: retries of many deliveries spread out.
    exponential.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Runs forever: picks due deliveries and attempts them, at most `concurrency` at once.
pub(crate) async fn dispatch(engine: Arc<Engine>) {
    let client = match reqwest::Client::builder()
        .timeout(engine.options.webhooks.request_timeout)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are off");
            return std::future::pending().await;
        }
    };
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(
        engine.options.webhooks.concurrency.max(1),
    ));
    loop {
        let due = {
            let engine = engine.clone();
            tokio::task::spawn_blocking(move || {
                let now = engine.clock.now();
                Ok::<_, crate::ActError>((
                    engine.store.due_deliveries(now, 256)?,
                    engine.store.earliest_pending()?,
                    now,
                ))
            })
            .await
        };
        let (due, earliest, now) = match due {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::error!(%error, "reading due webhook deliveries failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => return,
        };
        let mut started = 0;
        for delivery in due {
            let fresh = in_flight
                .lock()
                .map(|mut set| set.insert(delivery.id.clone()))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            started += 1;
            let (engine, client, in_flight) = (engine.clone(), client.clone(), in_flight.clone());
            tokio::spawn(async move {
                let id = delivery.id.clone();
                attempt(&engine, &client, delivery).await;
                if let Ok(mut set) = in_flight.lock() {
                    set.remove(&id);
                }
                drop(slot);
                engine.deliveries_ready.notify_one();
            });
        }
        if started > 0 {
            continue;
        }
        let wait = earliest.map_or(Duration::from_secs(1), |at| {
            Duration::from_millis((at.0 - now.0).clamp(5, 1000) as u64)
        });
        let _ = tokio::time::timeout(wait, engine.deliveries_ready.notified()).await;
    }
}

async fn attempt(engine: &Arc<Engine>, client: &reqwest::Client, mut delivery: Delivery) {
    let subscription = engine.lock().ok().and_then(|state| {
        state
            .subscriptions
            .iter()
            .find(|s| s.id == delivery.subscription_id)
            .cloned()
    });
    let Some(subscription) = subscription else {
        return;
    };
    let options = &engine.options.webhooks;
    let sent_at = engine.clock.now();
    let started = Instant::now();
    let result = client
        .post(&subscription.url)
        .header("content-type", "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(&subscription.secret, Millis::now().0, &delivery.body),
        )
        .header(DELIVERY_ID_HEADER, &delivery.id)
        .header(EVENT_TYPE_HEADER, &delivery.event_type)
        .body(delivery.body.clone())
        .send()
        .await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (status_code, error) = match result {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => (
            Some(response.status().as_u16()),
            Some(format!("HTTP {}", response.status())),
        ),
        Err(error) => (None, Some(error.to_string())),
    };
    let succeeded = error.is_none();
    delivery.attempts += 1;
    delivery.last_error = error.clone();
    let now = engine.clock.now();
    if succeeded {
        delivery.status = DeliveryStatus::Delivered;
    } else if now.0 - delivery.created_at.0 > options.max_age.as_millis() as i64 {
        delivery.status = DeliveryStatus::Failed;
    } else {
        delivery.next_attempt_at =
            Millis(now.0 + backoff(options, delivery.attempts).as_millis() as i64);
    }
    let attempt = Attempt {
        delivery_id: delivery.id.clone(),
        at: sent_at,
        status_code,
        latency_ms,
        error,
    };
    let disable_after = options.disable_after_failures.max(1);
    let engine_for_write = engine.clone();
    let subscription_id = delivery.subscription_id.clone();
    let written = tokio::task::spawn_blocking(move || {
        engine_for_write
            .store
            .record_attempt(&attempt, &delivery, succeeded, disable_after)?;
        engine_for_write.reload_subscription(&subscription_id)
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::error!(%error, "recording a webhook attempt failed; it will be retried")
        }
        Err(error) => tracing::error!(%error, "recording a webhook attempt panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_right_secret_only() {
        let header = signature("s3cret", 1_700_000_000_000, r#"{"a":1}"#);
        assert!(header.starts_with("t=1700000000000,v1="));
        assert!(verify("s3cret", &header, r#"{"a":1}"#));
        assert!(!verify("other", &header, r#"{"a":1}"#));
        assert!(!verify("s3cret", &header, r#"{"a":2}"#));
    }

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let options = WebhookOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..WebhookOptions::default()
        };
        assert!(backoff(&options, 1) <= Duration::from_millis(100));
        assert!(backoff(&options, 3) >= Duration::from_millis(200));
        assert!(backoff(&options, 30) <= Duration::from_secs(1));
    }
}
