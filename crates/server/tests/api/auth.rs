use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, error_of, reading};

#[tokio::test]
async fn a_request_without_a_token_is_401() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/api/v1/readings"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, error) = error_of(response).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_token_is_401() {
    let app = TestApp::spawn().await;
    let (status, _) = error_of(app.get_as("aud_not-a-real-token", "/api/v1/readings").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn a_read_token_cannot_write_and_a_write_token_cannot_read_or_administer() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let reader = app.create_token(&["read"], None).await;
    let writer = app.create_token(&["write"], None).await;
    let (status, error) = error_of(
        app.post_readings_as(&reader, &reading("dev-1", 1, 1.0))
            .await,
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("permission_denied"))
    );
    assert_eq!(
        app.post_readings_as(&writer, &reading("dev-1", 1, 1.0))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.get_as(&reader, "/api/v1/readings").await.status(),
        StatusCode::OK
    );
    let (status, _) = error_of(app.get_as(&writer, "/api/v1/readings").await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let response = app
        .client
        .put(app.url("/api/v1/locations/x"))
        .bearer_auth(&writer)
        .json(&json!({"name": "x", "latitude": 1, "longitude": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "registry writes need admin"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_sensor_bound_token_may_write_only_its_sensor() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    app.put_sensor("dev-2", "site-a", json!([])).await;
    let device = app.create_token(&["write"], Some("dev-1")).await;
    assert_eq!(
        app.post_readings_as(&device, &reading("dev-1", 1, 1.0))
            .await
            .status(),
        StatusCode::CREATED
    );
    let (status, _) = error_of(
        app.post_readings_as(&device, &reading("dev-2", 1, 1.0))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mixed = json!([reading("dev-1", 2, 1.0), reading("dev-2", 2, 1.0)]);
    let (status, _) = error_of(app.post_readings_as(&device, &mixed).await).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a batch naming another sensor is refused whole"
    );
    assert_eq!(app.all_readings("").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let response = app
        .send_json(Method::POST, "/api/v1/tokens", &json!({"scopes": ["read"]}))
        .await;
    let created: serde_json::Value = response.json().await.unwrap();
    let secret = created["token"].as_str().unwrap();
    assert_eq!(
        app.get_as(secret, "/api/v1/readings").await.status(),
        StatusCode::OK
    );
    let listed = app.get_json("/api/v1/tokens").await;
    assert!(listed.to_string().contains(created["id"].as_str().unwrap()));
    assert!(
        !listed.to_string().contains(secret),
        "secrets are never listed"
    );
    let path = format!("/api/v1/tokens/{}", created["id"].as_str().unwrap());
    assert_eq!(
        app.send_json(Method::DELETE, &path, &json!(null))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_as(secret, "/api/v1/readings").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

#[tokio::test]
async fn token_requests_with_unknown_scopes_or_sensors_are_rejected() {
    let app = TestApp::spawn().await;
    let (status, error) = error_of(
        app.send_json(Method::POST, "/api/v1/tokens", &json!({"scopes": ["root"]}))
            .await,
    )
    .await;
    assert_eq!(
        (status, error["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("scopes[0]"))
    );
    let (status, error) = error_of(
        app.send_json(
            Method::POST,
            "/api/v1/tokens",
            &json!({"scopes": ["write"], "sensor_id": "ghost"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, error["details"][0]["reason"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_sensor"))
    );
    app.stop().await;
}
