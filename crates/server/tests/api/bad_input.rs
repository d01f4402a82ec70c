//! Hostile and broken requests: each gets the documented status and error shape, the server
//! keeps serving, and nothing already stored changes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use audrey_server::HttpOptions;

use crate::helpers::{TestApp, error_of, reading};

async fn app_with_data() -> (TestApp, Vec<Value>) {
    let app = TestApp::spawn_with(HttpOptions {
        max_body_bytes: 64 * 1024,
        ..HttpOptions::default()
    })
    .await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    app.post_readings(&json!([
        reading("dev-1", 20, 1.0),
        reading("dev-1", 10, 2.0)
    ]))
    .await;
    let stored = app.all_readings("").await;
    assert_eq!(stored.len(), 2);
    (app, stored)
}

async fn assert_untouched(app: &TestApp, before: &[Value]) {
    assert_eq!(
        app.all_readings("").await,
        before,
        "stored readings changed"
    );
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn broken_bodies_get_400_and_change_nothing() {
    let (app, before) = app_with_data().await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated JSON",
            br#"{"sensor_id": "dev-1", "read_at": 1"#.to_vec(),
        ),
        ("not JSON", b"hello".to_vec()),
        ("invalid UTF-8", b"{\"sensor_id\": \"\xff\xfe\"}".to_vec()),
        (
            "NaN literal",
            br#"{"sensor_id": "dev-1", "read_at": 1, "values": {"t": NaN}}"#.to_vec(),
        ),
        (
            "Infinity literal",
            br#"[{"sensor_id": "dev-1", "read_at": 1, "values": {"t": Infinity}}]"#.to_vec(),
        ),
        ("deep nesting", deep.into_bytes()),
        ("a bare number", b"42".to_vec()),
    ];
    for (name, body) in cases {
        let response = app
            .post_raw("/api/v1/readings", "application/json", body)
            .await;
        let (status, error) = error_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(error["code"], "malformed", "{name}");
    }
    assert_untouched(&app, &before).await;
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let (app, before) = app_with_data().await;
    let big: Vec<Value> = (0..2000).map(|_| reading("dev-1", 5, 3.0)).collect();
    let (status, error) = error_of(app.post_readings(&Value::Array(big)).await).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    // Without a Content-Length header the limit still holds while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = app
        .post_raw("/api/v1/readings", "application/json", stream)
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_untouched(&app, &before).await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_422_naming_the_field() {
    let (app, before) = app_with_data().await;
    let cases = [
        (
            json!({"sensor_id": 7, "read_at": 1, "values": {"t": 1}}),
            "sensor_id",
            "invalid_type",
        ),
        (
            json!({"sensor_id": "dev-1", "read_at": true, "values": {"t": 1}}),
            "read_at",
            "invalid_type",
        ),
        (
            json!({"sensor_id": "dev-1", "read_at": 1, "values": [1, 2]}),
            "values",
            "invalid_type",
        ),
        (
            json!({"sensor_id": "dev-1", "read_at": 1, "values": {"t": 1}, "extra": 1}),
            "extra",
            "unknown_field",
        ),
        (
            json!({"sensor_id": "dev-1", "values": {"t": 1}}),
            "read_at",
            "missing_field",
        ),
        (
            json!({"sensor_id": "dev-1", "read_at": 1, "values": {"t": null}}),
            "values.t",
            "invalid_type",
        ),
    ];
    for (body, path, reason) in cases {
        let (status, error) = error_of(app.post_readings(&body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            (
                error["details"][0]["path"].as_str(),
                error["details"][0]["reason"].as_str()
            ),
            (Some(path), Some(reason)),
            "{body}"
        );
    }
    assert_untouched(&app, &before).await;
    app.stop().await;
}

#[tokio::test]
async fn an_unsupported_content_type_or_empty_batch_is_refused() {
    let (app, before) = app_with_data().await;
    let (status, _) = error_of(
        app.post_raw("/api/v1/readings", "text/csv", "a,b\n1,2")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = error_of(app.post_readings(&json!([])).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_untouched(&app, &before).await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let (app, before) = app_with_data().await;
    let (status, _) = error_of(app.get("/api/v1/nothing-here").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = app
        .client
        .delete(app.url("/api/v1/readings"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_untouched(&app, &before).await;
    app.stop().await;
}
