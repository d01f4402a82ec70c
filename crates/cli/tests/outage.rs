//! A real database outage: `audrey serve --store postgres://...` on a private PostgreSQL
//! instance under continuous HTTP ingest. PostgreSQL is stopped for more than 10 s mid-load and
//! started again; afterwards every acknowledged reading is in PostgreSQL exactly once and the
//! spool is empty. Then the same with Audrey killed (SIGKILL) while it holds spooled readings.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/private_postgres.rs"]
mod private_postgres;
#[path = "support/server_process.rs"]
mod server_process;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use private_postgres::PrivatePostgres;
use server_process::ServerProcess;

const SENSORS: usize = 10;
const CLIENTS: usize = 4;
const BATCH: usize = 50;

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn register(client: &reqwest::Client, server: &ServerProcess) {
    let location = json!({"name": "Outage lab", "latitude": 1.0, "longitude": 2.0});
    let response = client
        .put(format!("{}/api/v1/locations/lab", server.base_url))
        .bearer_auth(&server.token)
        .json(&location)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    for sensor in 0..SENSORS {
        let response = client
            .put(format!(
                "{}/api/v1/sensors/outage-{sensor}",
                server.base_url
            ))
            .bearer_auth(&server.token)
            .json(&json!({"kind": "climate", "location_id": "lab"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }
}

/// Reading ids the server acknowledged as accepted.
type Acked = Arc<Mutex<Vec<String>>>;

/// Clients that keep sending batches (half the readings with a message id, half without)
/// until `running` turns false; only accepted readings of answered requests are recorded.
fn start_clients(
    base_url: &str,
    token: &str,
    phase: &str,
    running: &Arc<AtomicBool>,
    acked: &Acked,
    refused: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|client_index| {
            let url = format!("{base_url}/api/v1/readings");
            let token = token.to_string();
            let phase = phase.to_string();
            let running = running.clone();
            let acked = acked.clone();
            let refused = refused.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap();
                let mut number = 0usize;
                while running.load(Ordering::SeqCst) {
                    let items: Vec<Value> = (0..BATCH)
                        .map(|item| {
                            let mut reading = json!({
                                "sensor_id": format!("outage-{}", (number * BATCH + item) % SENSORS),
                                "read_at": now_millis() - 1000,
                                "values": {"temperature": item as f64},
                            });
                            if item % 2 == 0 {
                                reading["message_id"] =
                                    json!(format!("{phase}-c{client_index}-b{number}-i{item}"));
                            }
                            reading
                        })
                        .collect();
                    number += 1;
                    let answer = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&items)
                        .send()
                        .await;
                    let Ok(response) = answer else {
                        refused.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if !response.status().is_success() {
                        refused.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let Ok(body) = response.json::<Value>().await else {
                        continue;
                    };
                    let mut acked = acked.lock().unwrap();
                    for result in body["results"].as_array().unwrap() {
                        assert_eq!(result["status"], "accepted", "{result}");
                        acked.push(result["id"].as_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect()
}

async fn metric(client: &reqwest::Client, server: &ServerProcess, name: &str) -> f64 {
    let text = client
        .get(format!("{}/metrics", server.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn wait_until_spool_empty(client: &reqwest::Client, server: &ServerProcess) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if metric(client, server, "audrey_spool_records").await == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the spool did not empty within 180 s of the database coming back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged id is in PostgreSQL exactly once, and no id is stored twice.
fn assert_stored_once(postgres: &PrivatePostgres, acked: &[String]) {
    let doubled = postgres.query("SELECT id::text FROM readings GROUP BY id HAVING count(*) > 1");
    assert!(doubled.is_empty(), "readings stored twice: {doubled:?}");
    let stored: HashSet<String> = postgres
        .query("SELECT id::text FROM readings")
        .into_iter()
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged readings are missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "the server gave one id twice");
}

async fn readyz(client: &reqwest::Client, server: &ServerProcess) -> (u16, Value) {
    let response = client
        .get(format!("{}/readyz", server.base_url))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_private_postgres_stops_and_starts_on_demand() {
    let Some(postgres) =
        PrivatePostgres::start_new("a_private_postgres_stops_and_starts_on_demand")
    else {
        return;
    };
    assert_eq!(postgres.query("SELECT 41 + 1"), vec!["42"]);
    postgres.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", postgres.port)).is_err(),
        "nothing listens while it is stopped"
    );
    postgres.start();
    assert_eq!(postgres.query("SELECT 1"), vec!["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_under_load_loses_and_doubles_nothing_even_across_a_sigkill() {
    let Some(postgres) = PrivatePostgres::start_new(
        "a_database_outage_under_load_loses_and_doubles_nothing_even_across_a_sigkill",
    ) else {
        return;
    };
    let data_dir = tempfile::tempdir().unwrap();
    let url = postgres.url();
    let serve_args = ["--store", url.as_str()];
    let client = reqwest::Client::new();
    let server = ServerProcess::start_with(data_dir.path(), &serve_args).await;
    register(&client, &server).await;
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU64::new(0));

    // Phase 1: an outage of more than 10 s under continuous ingest.
    let running = Arc::new(AtomicBool::new(true));
    let clients = start_clients(
        &server.base_url,
        &server.token,
        "one",
        &running,
        &acked,
        &refused,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_outage = acked.lock().unwrap().len();
    assert!(
        before_outage > 0,
        "nothing was acknowledged before the outage"
    );
    postgres.stop();
    let outage_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = readyz(&client, &server).await;
    assert_eq!(status, 200, "ready (degraded) during the outage: {body}");
    assert!(body["degraded"].is_string(), "{body}");
    assert!(metric(&client, &server, "audrey_spool_records").await > 0.0);
    let query = client
        .get(format!(
            "{}/api/v1/readings?sensor=outage-1",
            server.base_url
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status().as_u16(), 503);
    let message = query.text().await.unwrap();
    assert!(message.contains("being spooled"), "{message}");
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(outage_started.elapsed())).await;
    let during_outage = acked.lock().unwrap().len() - before_outage;
    assert!(
        during_outage > 0,
        "nothing was acknowledged during the outage"
    );
    postgres.start();
    let outage = outage_started.elapsed();
    assert!(outage >= Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    wait_until_spool_empty(&client, &server).await;
    assert_eq!(metric(&client, &server, "audrey_spool_bytes").await, 0.0);
    let phase_one = acked.lock().unwrap().clone();
    assert_stored_once(&postgres, &phase_one);
    eprintln!(
        "outage phase: {} acknowledged ({} during the {:.1} s outage), {} requests refused",
        phase_one.len(),
        during_outage,
        outage.as_secs_f64(),
        refused.load(Ordering::SeqCst)
    );

    // Phase 2: SIGKILL while the spool holds readings, restart, replay.
    let running = Arc::new(AtomicBool::new(true));
    let clients = start_clients(
        &server.base_url,
        &server.token,
        "two",
        &running,
        &acked,
        &refused,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spooled = metric(&client, &server, "audrey_spool_records").await;
    assert!(spooled > 0.0, "the spool holds nothing to lose");
    server.kill_hard().await;
    running.store(false, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    postgres.start();
    let server = ServerProcess::start_with(data_dir.path(), &serve_args).await;
    wait_until_spool_empty(&client, &server).await;
    let all = acked.lock().unwrap().clone();
    assert!(all.len() > phase_one.len());
    assert_stored_once(&postgres, &all);
    let mut per_id: HashMap<&String, usize> = HashMap::new();
    for id in &all {
        *per_id.entry(id).or_default() += 1;
    }
    assert!(per_id.values().all(|count| *count == 1));
    let status = server.terminate().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_with_the_spool_on_reports_its_figures_and_stores_through_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let spool_dir = data_dir.path().join("elsewhere");
    let server = ServerProcess::start_with(
        data_dir.path(),
        &[
            "--spool",
            "on",
            "--spool-dir",
            spool_dir.to_str().unwrap(),
            "--spool-max-bytes",
            "2097152",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    register(&client, &server).await;
    let acked: Acked = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicU64::new(0));
    let clients = start_clients(
        &server.base_url,
        &server.token,
        "on",
        &running,
        &acked,
        &refused,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    assert!(!acked.lock().unwrap().is_empty());
    assert_eq!(metric(&client, &server, "audrey_spool_records").await, 0.0);
    assert_eq!(
        metric(&client, &server, "audrey_spool_database_available").await,
        1.0
    );
    let (status, body) = readyz(&client, &server).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    assert!(body.get("degraded").is_none(), "{body}");
    assert!(
        spool_dir.join("replay.cursor").exists(),
        "the spool lives where it was told"
    );
    let first = acked.lock().unwrap()[0].clone();
    let stored = client
        .get(format!("{}/api/v1/readings/{first}", server.base_url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status().as_u16(), 200);
    assert!(server.terminate().await.success());
}

#[test]
fn a_spool_limit_below_one_mebibyte_is_refused_naming_the_setting() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_audrey"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "off"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--spool-max-bytes", "1000"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("spool_max_bytes"), "{stderr}");
}
