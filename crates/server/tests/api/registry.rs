use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_of, reading};

fn location(name: &str) -> Value {
    json!({"name": name, "city": "Oslo", "country": "NO", "latitude": 59.91, "longitude": 10.75,
           "altitude": 23.0, "timezone": "Europe/Oslo", "iata": "OSL"})
}

#[tokio::test]
async fn locations_are_created_read_replaced_patched_and_soft_deleted() {
    let app = TestApp::spawn().await;
    let mut body = location("Depot");
    body["id"] = json!("depot");
    let response = app
        .send_json(Method::POST, "/api/v1/locations", &body)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, _) = error_of(
        app.send_json(Method::POST, "/api/v1/locations", &body)
            .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "creating an existing id conflicts"
    );

    let stored = app.get_json("/api/v1/locations/depot").await;
    assert_eq!(
        (stored["name"].as_str(), stored["iata"].as_str()),
        (Some("Depot"), Some("OSL"))
    );

    let response = app
        .send_json(Method::PUT, "/api/v1/locations/depot", &location("Depot 2"))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "PUT on an existing id replaces"
    );
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(
        replaced["created_at"], stored["created_at"],
        "replacing keeps created_at"
    );

    let patched: Value = app
        .send_json(
            Method::PATCH,
            "/api/v1/locations/depot",
            &json!({"city": null, "name": "Depot 3"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(patched["name"], "Depot 3");
    assert!(
        patched["city"].is_null(),
        "null removes a field (JSON Merge Patch)"
    );
    assert_eq!(patched["country"], "NO", "fields not named are kept");

    let response = app
        .send_json(Method::DELETE, "/api/v1/locations/depot", &json!(null))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let hidden = app.get("/api/v1/locations/depot").await;
    assert_eq!(
        hidden.status(),
        StatusCode::NOT_FOUND,
        "a soft-deleted record is hidden from a plain GET"
    );
    let deleted = app
        .get_json("/api/v1/locations/depot?include_deleted=true")
        .await;
    assert!(
        deleted["deleted_at"].is_string(),
        "soft delete keeps the record, marked"
    );
    let listed = app.get_json("/api/v1/locations").await;
    assert_eq!(
        listed["count"], 0,
        "deleted locations are hidden from lists"
    );
    let listed = app.get_json("/api/v1/locations?include_deleted=true").await;
    assert_eq!(listed["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn a_location_without_an_id_gets_a_generated_one() {
    let app = TestApp::spawn().await;
    let response = app
        .send_json(Method::POST, "/api/v1/locations", &location("Anywhere"))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        app.get_json(&format!("/api/v1/locations/{id}")).await["name"],
        "Anywhere"
    );
    app.stop().await;
}

#[tokio::test]
async fn deleting_a_location_that_still_has_sensors_conflicts() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let (status, error) = error_of(
        app.send_json(Method::DELETE, "/api/v1/locations/site-a", &json!(null))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(error["message"].as_str().unwrap().contains("sensor"));
    assert_eq!(
        app.send_json(Method::DELETE, "/api/v1/sensors/dev-1", &json!(null))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send_json(Method::DELETE, "/api/v1/locations/site-a", &json!(null))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_sensor_can_no_longer_report() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    assert_eq!(
        app.post_readings(&reading("dev-1", 1, 1.0)).await.status(),
        StatusCode::CREATED
    );
    app.send_json(Method::DELETE, "/api/v1/sensors/dev-1", &json!(null))
        .await;
    let (status, error) = error_of(app.post_readings(&reading("dev-1", 1, 1.0)).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["details"][0]["reason"], "unknown_sensor");
    assert_eq!(
        app.all_readings("").await.len(),
        1,
        "its earlier reading is kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn sensors_are_listed_with_filters_and_pages() {
    let app = TestApp::spawn().await;
    for index in 0..5 {
        app.put_sensor(&format!("north-{index}"), "north", json!([]))
            .await;
    }
    app.put_sensor("south-0", "south", json!([])).await;
    let north = app.get_json("/api/v1/sensors?location=north&limit=2").await;
    assert_eq!(north["count"], 2);
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get_json(&format!("/api/v1/sensors?location=north&limit=2{cursor}"))
            .await;
        all.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(all, ["north-0", "north-1", "north-2", "north-3", "north-4"]);
    assert_eq!(
        app.get_json("/api/v1/sensors?kind=climate").await["count"],
        6
    );
    assert_eq!(app.get_json("/api/v1/sensors?kind=door").await["count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_sensor_at_an_unknown_location_is_rejected() {
    let app = TestApp::spawn().await;
    let body = json!({"id": "dev-9", "kind": "climate", "location_id": "nowhere"});
    let (status, error) =
        error_of(app.send_json(Method::POST, "/api/v1/sensors", &body).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["details"][0]["path"], "location_id");
    assert_eq!(error["details"][0]["reason"], "unknown_location");
    app.stop().await;
}

#[tokio::test]
async fn invalid_registry_bodies_name_every_bad_field() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "", "latitude": 91.0, "longitude": 10.0, "timezone": "Nowhere/City"});
    let (status, error) = error_of(
        app.send_json(Method::PUT, "/api/v1/locations/x", &body)
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = error["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["name", "latitude", "timezone"]);
    let (status, error) = error_of(
        app.send_json(
            Method::PUT,
            "/api/v1/locations/x",
            &json!({"name": "a", "latitude": 1, "longitude": 1, "colour": 1}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        (
            error["details"][0]["path"].as_str(),
            error["details"][0]["reason"].as_str()
        ),
        (Some("colour"), Some("unknown_field"))
    );
    app.stop().await;
}
