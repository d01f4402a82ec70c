//! Kill -9 under sustained concurrent ingest: every acknowledged reading survives exactly
//! once, and re-sending the unacknowledged ones with their message ids creates no duplicates.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/server_process.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

use support::ServerProcess;

const SENSORS: usize = 20;
const CLIENTS: usize = 4;
const BATCH: usize = 50;
const ROUNDS: usize = 5;

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn register(client: &reqwest::Client, server: &ServerProcess) {
    let location = json!({"name": "Crash lab", "latitude": 1.0, "longitude": 2.0});
    let response = client
        .put(format!("{}/api/v1/locations/lab", server.base_url))
        .bearer_auth(&server.token)
        .json(&location)
        .send()
        .await
        .expect("register location");
    assert!(response.status().is_success());
    for sensor in 0..SENSORS {
        let body = json!({"kind": "climate", "location_id": "lab"});
        let response = client
            .put(format!("{}/api/v1/sensors/crash-{sensor}", server.base_url))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
            .await
            .expect("register sensor");
        assert!(response.status().is_success());
    }
}

fn batch(client_index: usize, round: usize, number: usize) -> Vec<Value> {
    (0..BATCH)
        .map(|item| {
            json!({
                "sensor_id": format!("crash-{}", (number * BATCH + item) % SENSORS),
                "read_at": now_millis() - 1000,
                "values": {"temperature": item as f64},
                "message_id": format!("c{client_index}-r{round}-b{number}-i{item}"),
            })
        })
        .collect()
}

/// Acknowledged message ids with the reading id the server answered.
type Acked = Arc<Mutex<HashMap<String, String>>>;

/// Sends batches until the server dies; returns the batch that was in flight, if any.
async fn client_loop(
    base_url: String,
    token: String,
    client_index: usize,
    round: usize,
    acked: Acked,
) -> Option<Vec<Value>> {
    let client = reqwest::Client::new();
    for number in 0.. {
        let items = batch(client_index, round, number);
        let response = client
            .post(format!("{base_url}/api/v1/readings"))
            .bearer_auth(&token)
            .json(&items)
            .send()
            .await;
        let body: Value = match response {
            Ok(response) if response.status().is_success() => match response.json().await {
                Ok(body) => body,
                Err(_) => return Some(items),
            },
            _ => return Some(items),
        };
        let mut acked = acked.lock().expect("lock");
        for (item, result) in items
            .iter()
            .zip(body["results"].as_array().expect("results"))
        {
            assert_eq!(
                result["status"], "accepted",
                "fresh message ids are accepted"
            );
            acked.insert(
                item["message_id"].as_str().expect("message id").to_string(),
                result["id"].as_str().expect("id").to_string(),
            );
        }
    }
    None
}

/// Every stored reading's message id → the ids stored under it.
async fn stored(client: &reqwest::Client, server: &ServerProcess) -> HashMap<String, Vec<String>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    let mut cursor = String::new();
    loop {
        let page: Value = client
            .get(format!(
                "{}/api/v1/readings?order=oldest&limit=10000{cursor}",
                server.base_url
            ))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            let message = item["message_id"]
                .as_str()
                .expect("every crash-test reading has a message id");
            found
                .entry(message.to_string())
                .or_default()
                .push(item["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return found,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_sigkill_exactly_once() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let acked: Acked = Arc::default();
    let mut rng = rand::rng();
    let mut server = ServerProcess::start(data_dir.path()).await;
    register(&client, &server).await;
    for round in 0..ROUNDS {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|index| {
                tokio::spawn(client_loop(
                    server.base_url.clone(),
                    server.token.clone(),
                    index,
                    round,
                    acked.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        server.kill_hard().await;
        let mut unacknowledged = Vec::new();
        for handle in clients {
            if let Some(items) = handle.await.expect("client task") {
                unacknowledged.push(items);
            }
        }

        server = ServerProcess::start(data_dir.path()).await;
        let found = stored(&client, &server).await;
        let acked_now = acked.lock().expect("lock").clone();
        eprintln!(
            "round {round}: {} acknowledged so far, {} stored, {} batches in flight at the kill",
            acked_now.len(),
            found.len(),
            unacknowledged.len()
        );
        assert!(
            !acked_now.is_empty(),
            "round {round}: some readings were acknowledged"
        );
        for (message, id) in &acked_now {
            assert_eq!(
                found.get(message),
                Some(&vec![id.clone()]),
                "round {round}: acked {message} must be stored exactly once"
            );
        }
        for (message, ids) in &found {
            assert_eq!(
                ids.len(),
                1,
                "round {round}: {message} stored {} times",
                ids.len()
            );
        }

        // The client does not know whether its in-flight batch landed: it sends it again.
        for items in unacknowledged {
            let body: Value = client
                .post(format!("{}/api/v1/readings", server.base_url))
                .bearer_auth(&server.token)
                .json(&items)
                .send()
                .await
                .expect("resend")
                .json()
                .await
                .expect("json");
            let mut acked = acked.lock().expect("lock");
            for (item, result) in items
                .iter()
                .zip(body["results"].as_array().expect("results"))
            {
                let status = result["status"].as_str().expect("status");
                assert!(
                    status == "accepted" || status == "duplicate",
                    "resend answered {status}"
                );
                let message = item["message_id"].as_str().expect("message id").to_string();
                let id = result["id"].as_str().expect("id").to_string();
                if let Some(earlier) = found.get(&message) {
                    assert_eq!(status, "duplicate");
                    assert_eq!(
                        earlier,
                        &vec![id.clone()],
                        "a duplicate answers the original id"
                    );
                }
                acked.insert(message, id);
            }
        }
        let found = stored(&client, &server).await;
        assert!(
            found.values().all(|ids| ids.len() == 1),
            "round {round}: resending created duplicates"
        );
        assert_eq!(
            found.len(),
            acked.lock().expect("lock").len(),
            "round {round}: stored = acknowledged"
        );
    }
    let exit = server.terminate().await;
    assert!(exit.success(), "a clean SIGTERM exits 0, got {exit}");
}
