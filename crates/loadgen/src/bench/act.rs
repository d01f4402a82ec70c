//! Benchmarks of acting on data: installing many rules (so `ingest-http` can be compared with
//! and without them), and the latency from a reading that raises an alert to its webhook
//! arriving at a receiver this benchmark runs, under a steady background ingest load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;

use super::{bench_location_id, bench_sensor_id, register_bench_fleet};
use crate::api_client::ApiClient;
use crate::clock::wall_clock_ms;

/// Registers the bench fleet and installs `rules` rules spread over it: nine in ten scoped to
/// one sensor each, the rest to a location, plus one for the whole bench kind. Thresholds are
/// out of reach of `ingest-http`'s values, so the rules are evaluated on every reading but
/// raise nothing: the cost measured is evaluation, not alert traffic.
pub async fn install_bench_rules(
    base_url: &str,
    token: &str,
    sensors: usize,
    rules: usize,
) -> anyhow::Result<usize> {
    let client = ApiClient::new(base_url, token, 8)?;
    register_bench_fleet(&client, sensors).await?;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/rules", base_url.trim_end_matches('/'));
    for index in 0..rules {
        let scope = if index == 0 {
            json!({"type": "kind", "id": "bench"})
        } else if index % 10 == 0 {
            json!({"type": "location", "id": bench_location_id((index * sensors / rules) % sensors)})
        } else {
            json!({"type": "sensor", "id": bench_sensor_id((index * sensors / rules) % sensors)})
        };
        let rule = json!({"name": format!("bench rule {index}"), "scope": scope, "metric": "temperature",
            "condition": ">", "threshold": 1000.0 + index as f64, "clear_threshold": 900.0, "for_seconds": 60, "severity": "minor"});
        let response = http
            .post(&url)
            .bearer_auth(token)
            .json(&rule)
            .send()
            .await
            .context("creating a bench rule")?;
        if !response.status().is_success() {
            bail!(
                "creating bench rule {index}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
    }
    Ok(rules)
}

#[derive(Clone, Debug)]
pub struct WebhookLatencyOptions {
    pub base_url: String,
    pub token: String,
    pub sensors: usize,
    /// Readings per second of background load (e.g. half the measured maximum).
    pub background_rate: f64,
    /// Alerts to raise (each followed by a reading that clears it).
    pub probes: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct WebhookLatencyReport {
    pub background_readings_per_second: f64,
    pub probes: usize,
    pub received: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

async fn receive(
    axum::extract::State(arrivals): axum::extract::State<Arrivals>,
    body: String,
) -> &'static str {
    let now = Instant::now();
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(&body)
        && event["type"] == "alert.raised"
        && let Some(value) = event["data"]["raised_value"].as_f64()
        && let Ok(mut arrivals) = arrivals.lock()
    {
        arrivals.insert(value as u64, now);
    }
    "ok"
}

pub async fn bench_webhook_latency(
    options: WebhookLatencyOptions,
) -> anyhow::Result<WebhookLatencyReport> {
    let base = options.base_url.trim_end_matches('/').to_string();
    let client = ApiClient::new(&base, &options.token, 8)?;
    register_bench_fleet(&client, options.sensors).await?;
    let arrivals: Arrivals = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(arrivals.clone());
    let receiver = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let probe_sensor = bench_sensor_id(0);
    for (path, body) in [
        (
            "/api/v1/rules",
            json!({"name": "bench probe", "scope": {"type": "sensor", "id": probe_sensor}, "metric": "probe",
            "condition": ">", "threshold": 1000, "severity": "warning"}),
        ),
        (
            "/api/v1/webhooks",
            json!({"url": receiver_url, "event_types": ["alert.raised"], "secret": "bench-secret-bench-secret"}),
        ),
    ] {
        let response = http
            .post(format!("{base}{path}"))
            .bearer_auth(&options.token)
            .json(&body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "POST {path}: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
    }

    // Background load: four senders, each a tenth of a second's share every 100 ms.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent_background = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut senders = Vec::new();
    let per_tick = ((options.background_rate / 40.0).round() as usize).max(1);
    for sender in 0..4 {
        let (client, stop, sent, sensors) = (
            client.clone(),
            stop.clone(),
            sent_background.clone(),
            options.sensors,
        );
        senders.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            let mut next = sender * 1_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ticker.tick().await;
                let now = wall_clock_ms();
                let readings: Vec<_> = (0..per_tick)
                    .map(|offset| {
                        let index = next + offset;
                        json!({"sensor_id": bench_sensor_id(1 + index % (sensors - 1).max(1)), "read_at": now,
                            "values": {"temperature": 20.0 + (index % 50) as f64 / 10.0}})
                    })
                    .collect();
                next += per_tick;
                if let Ok(body) = serde_json::to_vec(&readings)
                    && client.post_readings(Bytes::from(body)).await.is_ok()
                {
                    sent.fetch_add(per_tick as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the load settle
    let started = Instant::now();
    let background_before = sent_background.load(std::sync::atomic::Ordering::Relaxed);
    let mut sent_at = HashMap::new();
    for probe in 0..options.probes as u64 {
        let value = 2000 + probe;
        for (reading_value, raise) in [(value as f64, true), (0.0, false)] {
            let body = json!({"sensor_id": probe_sensor, "read_at": wall_clock_ms(), "values": {"probe": reading_value}});
            let before = Instant::now();
            client
                .post_readings(Bytes::from(serde_json::to_vec(&body)?))
                .await?;
            if raise {
                sent_at.insert(value, before);
                // Wait for this alert's webhook (or give up after 2 s) before clearing it.
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline
                    && !arrivals
                        .lock()
                        .map(|a| a.contains_key(&value))
                        .unwrap_or(false)
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let background = sent_background.load(std::sync::atomic::Ordering::Relaxed) - background_before;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for sender in senders {
        let _ = sender.await;
    }
    receiver.abort();
    let mut histogram = Histogram::<u64>::new(3)?;
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    let mut received = 0;
    for (value, before) in &sent_at {
        if let Some(arrived) = arrivals.get(value) {
            received += 1;
            histogram.record(arrived.saturating_duration_since(*before).as_micros() as u64)?;
        }
    }
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    Ok(WebhookLatencyReport {
        background_readings_per_second: background as f64 / elapsed.as_secs_f64(),
        probes: options.probes,
        received,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: histogram.max() as f64 / 1000.0,
    })
}
