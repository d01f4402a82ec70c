//! `TestApp`: one running server per test, and one method per endpoint.

use std::sync::Arc;

use audrey_ingest::{IngestMetrics, IngestOptions, Pipeline};
use audrey_server::{AppState, HttpOptions};
use audrey_store::{SqliteOptions, SqliteStore};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub token: String,
    pub store: Arc<SqliteStore>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(HttpOptions::default()).await
    }

    pub async fn spawn_with(http: HttpOptions) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temp dir");
        // Small flush thresholds so tests exercise both the landing rows and the indexed table.
        let options = SqliteOptions {
            flush_rows: 50,
            flush_max_rows: 40,
            ..Default::default()
        };
        let store = Arc::new(SqliteStore::open(data_dir.path(), options).expect("open store"));
        let token = audrey_server::bootstrap_admin_token(&*store, data_dir.path())
            .expect("bootstrap")
            .expect("a fresh data dir gets an admin token");
        let pipeline = Pipeline::start(
            store.clone(),
            IngestOptions::default(),
            Arc::new(IngestMetrics::default()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(audrey_server::serve(
            audrey_server::Listeners::http_only(listener),
            AppState::new(pipeline, http),
            async {
                let _ = stopped.await;
            },
        ));
        TestApp {
            address,
            client: reqwest::Client::new(),
            token,
            store,
            shutdown: Some(shutdown),
            server: Some(server),
            _data_dir: data_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.get_as(&self.token, path).await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("json")
    }

    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_readings_as(&self, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/api/v1/readings"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_readings(&self, body: &Value) -> Response {
        self.post_readings_as(&self.token, body).await
    }

    /// Posts raw bytes with a content type, for NDJSON and broken bodies.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn put_location(&self, id: &str) {
        let body = json!({"name": format!("Site {id}"), "city": "Berlin", "country": "DE",
                          "latitude": 52.52, "longitude": 13.40, "timezone": "Europe/Berlin"});
        let response = self
            .send_json(
                reqwest::Method::PUT,
                &format!("/api/v1/locations/{id}"),
                &body,
            )
            .await;
        assert!(
            response.status().is_success(),
            "PUT location {id}: {}",
            response.status()
        );
    }

    /// Registers a sensor at a location (created if needed), declaring `metrics` when given.
    pub async fn put_sensor(&self, id: &str, location: &str, metrics: Value) {
        self.put_location(location).await;
        let body = json!({"kind": "climate", "location_id": location, "metrics": metrics});
        let response = self
            .send_json(
                reqwest::Method::PUT,
                &format!("/api/v1/sensors/{id}"),
                &body,
            )
            .await;
        assert!(
            response.status().is_success(),
            "PUT sensor {id}: {}",
            response.status()
        );
    }

    pub async fn create_token(&self, scopes: &[&str], sensor: Option<&str>) -> String {
        let body = json!({"name": "test", "scopes": scopes, "sensor_id": sensor});
        let response = self
            .send_json(reqwest::Method::POST, "/api/v1/tokens", &body)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.expect("json");
        created["token"].as_str().expect("token").to_string()
    }

    /// Every reading stored, oldest first, through the paginated API.
    pub async fn all_readings(&self, filter: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/readings?order=oldest&limit=1000{filter}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self.get_json(&path).await;
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return items,
            }
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("join").expect("serve");
        }
    }
}

/// A valid reading of `sensor` measured `seconds_ago` seconds before now.
pub fn reading(sensor: &str, seconds_ago: i64, temperature: f64) -> Value {
    let read_at = jiff_now_millis() - seconds_ago * 1000;
    json!({"sensor_id": sensor, "read_at": read_at, "values": {"temperature": temperature}})
}

pub fn jiff_now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

pub async fn error_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body: Value = response.json().await.expect("error body is JSON");
    assert!(body["error"]["code"].is_string(), "error shape: {body}");
    assert!(body["error"]["message"].is_string(), "error shape: {body}");
    (status, body["error"].clone())
}
