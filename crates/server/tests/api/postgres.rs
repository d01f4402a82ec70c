//! The HTTP API on a PostgreSQL store: registry, ingest (with dedup), queries, radius
//! searches, statistics and staged changes through a real client, on a fresh database per test. Runs when `AUDREY_TEST_POSTGRES_URL` is set;
//! otherwise prints a notice and passes, except under `CI`, where it fails.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use audrey_ingest::{IngestMetrics, IngestOptions, Pipeline};
use audrey_server::{AppState, HttpOptions};
use audrey_store::{PostgresOptions, PostgresStore, Store};

use crate::helpers::reading;

struct PostgresApp {
    address: String,
    client: reqwest::Client,
    token: String,
    admin_url: String,
    database: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _data_dir: tempfile::TempDir,
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

fn with_database(url: &str, database: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    let base = match url[scheme_end..].find('/') {
        Some(slash) => &url[..scheme_end + slash],
        None => url,
    };
    format!("{base}/{database}")
}

impl PostgresApp {
    async fn spawn() -> Option<PostgresApp> {
        let Ok(admin_url) = std::env::var("AUDREY_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but AUDREY_TEST_POSTGRES_URL is not"
            );
            eprintln!("skipping PostgreSQL API smoke test: AUDREY_TEST_POSTGRES_URL not set");
            return None;
        };
        let database = format!("audrey_api_{}", uuid::Uuid::now_v7().simple());
        admin(&admin_url, &format!("CREATE DATABASE {database}")).await;
        let url = with_database(&admin_url, &database);
        let store: Arc<dyn Store> = Arc::new(
            tokio::task::spawn_blocking(move || {
                PostgresStore::open(&url, PostgresOptions::default())
            })
            .await
            .unwrap()
            .unwrap(),
        );
        let data_dir = tempfile::tempdir().unwrap();
        let token = audrey_server::bootstrap_admin_token(&*store, data_dir.path())
            .unwrap()
            .unwrap();
        let pipeline = Pipeline::start(
            store,
            IngestOptions::default(),
            Arc::new(IngestMetrics::default()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(audrey_server::serve(
            audrey_server::Listeners::http_only(listener),
            AppState::new(pipeline, HttpOptions::default()),
            async {
                let _ = stopped.await;
            },
        ));
        Some(PostgresApp {
            address,
            client: reqwest::Client::new(),
            token,
            admin_url,
            database,
            shutdown,
            server,
            _data_dir: data_dir,
        })
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let response = self.send(Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.server.await.unwrap().unwrap();
        admin(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        )
        .await;
    }
}

#[tokio::test]
async fn registry_ingest_and_queries_work_on_postgresql() {
    let Some(app) = PostgresApp::spawn().await else {
        return;
    };
    let location = json!({"name": "Site", "country": "DE", "latitude": 52.5, "longitude": 13.4,
                          "timezone": "Europe/Berlin"});
    let created = app
        .send(Method::PUT, "/api/v1/locations/site-1", Some(&location))
        .await;
    assert!(created.status().is_success(), "{}", created.status());
    for sensor in ["dev-a", "dev-b"] {
        let body = json!({"kind": "climate", "location_id": "site-1"});
        let response = app
            .send(
                Method::PUT,
                &format!("/api/v1/sensors/{sensor}"),
                Some(&body),
            )
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    let sensors = app.json("/api/v1/sensors").await;
    assert_eq!(sensors["items"].as_array().unwrap().len(), 2);

    let mut batch = Vec::new();
    for minute in [5, 1, 9, 3, 7] {
        let mut item = reading("dev-a", minute * 60, minute as f64);
        item["message_id"] = json!(format!("m{minute}"));
        batch.push(item);
        batch.push(reading("dev-b", minute * 60 + 30, 100.0));
    }
    let response = app
        .send(
            Method::POST,
            "/api/v1/readings",
            Some(&Value::Array(batch.clone())),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 10, "{body}");
    // The same batch again: the keyed half is recognised, the rest stored anew.
    let again: Value = app
        .send(Method::POST, "/api/v1/readings", Some(&Value::Array(batch)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["duplicates"], 5, "{again}");

    let latest = app.json("/api/v1/sensors/dev-a/latest").await;
    assert_eq!(latest["values"]["temperature"], 1.0);
    let newest = app
        .json("/api/v1/readings?sensor=dev-a&order=newest&limit=2")
        .await;
    let temperatures: Vec<f64> = newest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["values"]["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(temperatures, [1.0, 3.0]);
    let cursor = newest["next_cursor"].as_str().unwrap();
    let rest = app
        .json(&format!(
            "/api/v1/readings?sensor=dev-a&order=newest&limit=10&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    let id = rest["items"][0]["id"].as_str().unwrap();
    let by_id = app.json(&format!("/api/v1/readings/{id}")).await;
    assert_eq!(by_id["values"]["temperature"], 5.0);
    let everything = app.json("/api/v1/readings?limit=100").await;
    assert_eq!(everything["items"].as_array().unwrap().len(), 15);

    let deleted = app
        .send(Method::DELETE, "/api/v1/sensors/dev-b", None)
        .await;
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let sensors = app.json("/api/v1/sensors").await;
    assert_eq!(sensors["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn radius_statistics_and_staged_changes_work_on_postgresql() {
    let Some(app) = PostgresApp::spawn().await else {
        return;
    };
    // Potsdam ~27 km from Berlin, Hamburg ~255 km, Munich ~505 km.
    let places = [
        ("potsdam", 52.39, 13.06, "Potsdam"),
        ("hamburg", 53.55, 9.99, "Hamburg"),
        ("munich", 48.14, 11.58, "Munich"),
    ];
    for (id, latitude, longitude, city) in places {
        let body = json!({"name": city, "city": city, "country": "DE", "latitude": latitude,
                          "longitude": longitude, "timezone": "Europe/Berlin"});
        let response = app
            .send(Method::PUT, &format!("/api/v1/locations/{id}"), Some(&body))
            .await;
        assert!(response.status().is_success(), "{}", response.status());
        let sensor = json!({"kind": "climate", "location_id": id});
        let response = app
            .send(
                Method::PUT,
                &format!("/api/v1/sensors/dev-{id}"),
                Some(&sensor),
            )
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    let mut batch = Vec::new();
    for (index, (id, ..)) in places.iter().enumerate() {
        for step in 1..=4i64 {
            let value = (index as f64 + 1.0) * 10.0 + step as f64;
            batch.push(reading(&format!("dev-{id}"), step * 60, value));
        }
    }
    let response = app
        .send(Method::POST, "/api/v1/readings", Some(&Value::Array(batch)))
        .await;
    assert!(response.status().is_success(), "{}", response.status());

    let near = app
        .json("/api/v1/locations/near?lat=52.52&lon=13.40&radius_km=300")
        .await;
    let ids: Vec<&str> = near["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["potsdam", "hamburg"], "nearest first: {near}");
    let distance = near["items"][0]["distance_km"].as_f64().unwrap();
    assert!((distance - 27.0).abs() < 2.0, "{distance}");
    let nearby = app
        .json("/api/v1/readings?near_lat=52.52&near_lon=13.40&radius_km=30&limit=100")
        .await;
    let sensors: std::collections::BTreeSet<&str> = nearby["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["sensor_id"].as_str().unwrap())
        .collect();
    assert_eq!(sensors.into_iter().collect::<Vec<_>>(), ["dev-potsdam"]);
    let near_sensors = app
        .json("/api/v1/sensors?near_lat=52.52&near_lon=13.40&radius_km=300")
        .await;
    assert_eq!(near_sensors["items"].as_array().unwrap().len(), 2);

    let stats = app
        .json("/api/v1/stats?metric=temperature&group_by=city&percentiles=50")
        .await;
    let groups = stats["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups
        .iter()
        .map(|group| group["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["Hamburg", "Munich", "Potsdam"], "{stats}");
    // Hamburg holds 21..=24: mean 22.5, median 22.5.
    assert_eq!(groups[0]["count"], 4, "{stats}");
    assert_eq!(groups[0]["mean"], 22.5, "{stats}");
    let buckets = app
        .json("/api/v1/readings/aggregate?sensor=dev-munich&metric=temperature&bucket=1d&agg=count,max")
        .await;
    let counted: u64 = buckets["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bucket| bucket["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 4, "{buckets}");

    // A staged delete applies once; its link is gone afterwards.
    let removed = app
        .send(Method::DELETE, "/api/v1/sensors/dev-munich", None)
        .await;
    assert!(removed.status().is_success(), "{}", removed.status());
    let staged = app
        .send(Method::GET, "/api/v1/locations/munich/delete", None)
        .await;
    assert_eq!(staged.status(), StatusCode::ACCEPTED);
    let staged: Value = staged.json().await.unwrap();
    let link = staged["confirm_url"].as_str().unwrap().to_string();
    assert_eq!(app.json("/api/v1/staged").await["count"], 1);
    let applied = app.send(Method::POST, &link, None).await;
    assert_eq!(applied.status(), StatusCode::OK);
    let again = app.send(Method::POST, &link, None).await;
    assert_eq!(again.status(), StatusCode::GONE);
    assert_eq!(app.json("/api/v1/staged").await["count"], 0);
    app.stop().await;
}
