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

use audrey_proto::v1;
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

#[derive(Clone, Copy, Debug)]
enum Transport {
    HttpBatch,
    GrpcStream,
}

fn record(acked: &Acked, items: &[Value], results: &[(String, String)]) {
    let mut acked = acked.lock().expect("lock");
    for (item, (status, id)) in items.iter().zip(results) {
        assert_eq!(status, "accepted", "fresh message ids are accepted");
        acked.insert(
            item["message_id"].as_str().expect("message id").to_string(),
            id.clone(),
        );
    }
}

fn proto_batch(items: &[Value]) -> v1::ReadingBatch {
    v1::ReadingBatch {
        readings: items
            .iter()
            .map(|item| v1::ReadingInput {
                sensor_id: item["sensor_id"].as_str().expect("sensor").to_string(),
                read_time: Some(v1::reading_input::ReadTime::ReadAtMs(
                    item["read_at"].as_i64().expect("read_at"),
                )),
                values: [(
                    "temperature".to_string(),
                    item["values"]["temperature"].as_f64().expect("value"),
                )]
                .into(),
                message_id: item["message_id"].as_str().expect("message id").to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn ack_results(ack: &v1::BatchAck) -> Vec<(String, String)> {
    use v1::reading_result::Status;
    ack.results
        .iter()
        .map(|result| {
            let status = match Status::try_from(result.status) {
                Ok(Status::Accepted) => "accepted",
                Ok(Status::Duplicate) => "duplicate",
                _ => "rejected",
            };
            (status.to_string(), result.id.clone())
        })
        .collect()
}

async fn grpc_ingest(
    server: &ServerProcess,
) -> Option<v1::ingest_service_client::IngestServiceClient<tonic::transport::Channel>> {
    let channel = tonic::transport::Channel::from_shared(server.grpc_url.clone())
        .ok()?
        .connect()
        .await
        .ok()?;
    Some(v1::ingest_service_client::IngestServiceClient::new(channel))
}

fn authorised<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("metadata"),
    );
    request
}

/// Sends batches until the server dies; returns the batches that were sent but not
/// acknowledged.
async fn client_loop(
    transport: Transport,
    server: (String, String, String),
    client_index: usize,
    round: usize,
    acked: Acked,
) -> Vec<Vec<Value>> {
    let (base_url, grpc_url, token) = server;
    match transport {
        Transport::HttpBatch => {
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
                        Err(_) => return vec![items],
                    },
                    _ => return vec![items],
                };
                let results: Vec<(String, String)> = body["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .map(|result| {
                        (
                            result["status"].as_str().expect("status").to_string(),
                            result["id"].as_str().expect("id").to_string(),
                        )
                    })
                    .collect();
                record(&acked, &items, &results);
            }
            Vec::new()
        }
        Transport::GrpcStream => {
            use tokio_stream::StreamExt;
            let Ok(channel) = tonic::transport::Channel::from_shared(grpc_url)
                .expect("url")
                .connect()
                .await
            else {
                return Vec::new();
            };
            let mut client = v1::ingest_service_client::IngestServiceClient::new(channel);
            let in_flight: Arc<Mutex<std::collections::VecDeque<Vec<Value>>>> = Arc::default();
            // Like a real device: a bounded number of batches sent but not yet acknowledged.
            let window = Arc::new(tokio::sync::Semaphore::new(8));
            let (sender, receiver) = tokio::sync::mpsc::channel::<v1::ReadingBatch>(4);
            let producer = {
                let in_flight = in_flight.clone();
                let window = window.clone();
                tokio::spawn(async move {
                    for number in 0.. {
                        let Ok(permit) = window.acquire().await else {
                            return;
                        };
                        permit.forget();
                        let items = batch(client_index, round, number);
                        let message = proto_batch(&items);
                        in_flight.lock().expect("lock").push_back(items);
                        if sender.send(message).await.is_err() {
                            return;
                        }
                    }
                })
            };
            let request = authorised(
                tokio_stream::wrappers::ReceiverStream::new(receiver),
                &token,
            );
            if let Ok(response) = client.stream(request).await {
                let mut acks = response.into_inner();
                while let Some(Ok(ack)) = acks.next().await {
                    let items = in_flight
                        .lock()
                        .expect("lock")
                        .pop_front()
                        .expect("an ack answers a sent batch");
                    record(&acked, &items, &ack_results(&ack));
                    window.add_permits(1);
                }
            }
            producer.abort();
            let _ = producer.await;
            in_flight.lock().expect("lock").drain(..).collect()
        }
    }
}

/// Sends a batch again after a restart, over the same transport; answers (status, id) each.
async fn resend(
    transport: Transport,
    client: &reqwest::Client,
    server: &ServerProcess,
    items: &[Value],
) -> Vec<(String, String)> {
    match transport {
        Transport::HttpBatch => {
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
            body["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|result| {
                    (
                        result["status"].as_str().expect("status").to_string(),
                        result["id"].as_str().expect("id").to_string(),
                    )
                })
                .collect()
        }
        Transport::GrpcStream => {
            let mut ingest = grpc_ingest(server).await.expect("gRPC after restart");
            let ack = ingest
                .send_batch(authorised(proto_batch(items), &server.token))
                .await
                .expect("resend")
                .into_inner();
            ack_results(&ack)
        }
    }
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

/// The sum of every crash sensor's `accepted` counter.
async fn accepted_total(client: &reqwest::Client, server: &ServerProcess) -> u64 {
    let mut total = 0;
    for sensor in 0..SENSORS {
        let counters: Value = client
            .get(format!(
                "{}/api/v1/sensors/crash-{sensor}/counters",
                server.base_url
            ))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("counters")
            .json()
            .await
            .expect("json");
        total += counters["accepted"].as_u64().expect("accepted");
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_sigkill_exactly_once_over_http() {
    survive_sigkill(Transport::HttpBatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_readings_survive_sigkill_exactly_once_over_a_grpc_stream() {
    survive_sigkill(Transport::GrpcStream).await;
}

async fn survive_sigkill(transport: Transport) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let acked: Acked = Arc::default();
    let mut rng = rand::rng();
    let mut server = ServerProcess::start(data_dir.path()).await;
    register(&client, &server).await;
    for round in 0..ROUNDS {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|index| {
                let addresses = (
                    server.base_url.clone(),
                    server.grpc_url.clone(),
                    server.token.clone(),
                );
                tokio::spawn(client_loop(
                    transport,
                    addresses,
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
            unacknowledged.extend(handle.await.expect("client task"));
        }

        server = ServerProcess::start(data_dir.path()).await;
        let found = stored(&client, &server).await;
        let acked_now = acked.lock().expect("lock").clone();
        eprintln!(
            "{transport:?} round {round}: {} acknowledged so far, {} stored, {} batches in flight at the kill",
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
        // Counters are folded into their table lazily (at each landing trim); after a kill
        // they must still count every stored reading once.
        assert_eq!(
            accepted_total(&client, &server).await,
            found.len() as u64,
            "round {round}: accepted counters = readings stored, after the kill"
        );

        // The client does not know whether its in-flight batch landed: it sends it again.
        for items in unacknowledged {
            let results = resend(transport, &client, &server, &items).await;
            let mut acked = acked.lock().expect("lock");
            for (item, (status, id)) in items.iter().zip(results) {
                assert!(
                    status == "accepted" || status == "duplicate",
                    "resend answered {status}"
                );
                let message = item["message_id"].as_str().expect("message id").to_string();
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
        assert_eq!(
            accepted_total(&client, &server).await,
            found.len() as u64,
            "round {round}: accepted counters = readings stored, after the resend"
        );
    }
    let exit = server.terminate().await;
    assert!(exit.success(), "a clean SIGTERM exits 0, got {exit}");
}
