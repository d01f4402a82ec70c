use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_of, reading};

#[tokio::test]
async fn a_single_reading_is_accepted_and_can_be_read_back() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let response = app.post_readings(&reading("dev-1", 10, 21.5)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 1);
    let id = body["results"][0]["id"].as_str().unwrap().to_string();
    let stored = app.get_json(&format!("/api/v1/readings/{id}")).await;
    assert_eq!(stored["sensor_id"], "dev-1");
    assert_eq!(stored["location_id"], "site-a");
    assert_eq!(stored["values"]["temperature"], 21.5);
    assert!(stored["received_at"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn an_array_is_stored_with_one_result_per_item_in_order() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let batch: Vec<Value> = (0..25)
        .map(|index| reading("dev-1", 100 - index, index as f64))
        .collect();
    let response = app.post_readings(&Value::Array(batch)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 25);
    let results = body["results"].as_array().unwrap();
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result["index"], index);
        let stored = app
            .get_json(&format!(
                "/api/v1/readings/{}",
                result["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(stored["values"]["temperature"], index as f64);
    }
    app.stop().await;
}

#[tokio::test]
async fn ndjson_lines_are_each_a_reading() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let lines: String = (0..3)
        .map(|index| format!("{}\n", reading("dev-1", 5 + index, 1.0)))
        .collect();
    let response = app
        .post_raw(
            "/api/v1/readings",
            "application/x-ndjson",
            format!("{lines}\n"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 3);
    assert_eq!(app.all_readings("&sensor=dev-1").await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_resent_message_id_is_a_duplicate_answered_with_the_original_id() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let mut first = reading("dev-1", 10, 20.0);
    first["message_id"] = json!("m-1");
    let body: Value = app.post_readings(&first).await.json().await.unwrap();
    let original = body["results"][0]["id"].clone();
    // Once from memory (landing), once after the row moved into the indexed table.
    for flush in [false, true] {
        if flush {
            app.store.flush_all().unwrap();
        }
        let response = app.post_readings(&first).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["duplicates"], 1);
        assert_eq!(body["results"][0]["status"], "duplicate");
        assert_eq!(body["results"][0]["id"], original);
    }
    assert_eq!(app.all_readings("&sensor=dev-1").await.len(), 1);
    let counters = app.get_json("/api/v1/sensors/dev-1/counters").await;
    assert_eq!(
        (
            counters["accepted"].as_u64(),
            counters["duplicate"].as_u64()
        ),
        (Some(1), Some(2))
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_message_id_twice_in_one_batch_is_stored_once() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let mut item = reading("dev-1", 10, 20.0);
    item["message_id"] = json!("same");
    let body: Value = app
        .post_readings(&json!([item, item]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["results"][0]["status"], "accepted");
    assert_eq!(body["results"][1]["status"], "duplicate");
    assert_eq!(body["results"][0]["id"], body["results"][1]["id"]);
    assert_eq!(app.all_readings("").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_same_message_id_from_two_sensors_is_two_readings() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    app.put_sensor("dev-2", "site-a", json!([])).await;
    let mut one = reading("dev-1", 10, 20.0);
    one["message_id"] = json!("m");
    let mut two = reading("dev-2", 10, 20.0);
    two["message_id"] = json!("m");
    let body: Value = app
        .post_readings(&json!([one, two]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["accepted"], 2);
    app.stop().await;
}

#[tokio::test]
async fn a_partly_invalid_batch_stores_the_valid_and_quarantines_the_invalid() {
    let app = TestApp::spawn().await;
    app.put_sensor(
        "dev-1",
        "site-a",
        json!([{"name": "temperature", "unit": "C", "min": -40, "max": 85}]),
    )
    .await;
    let batch = json!([
        reading("dev-1", 10, 20.0),
        reading("dev-1", 9, 120.0),
        reading("ghost", 8, 20.0),
        {"sensor_id": "dev-1", "read_at": 1, "values": {"temperature": "hot"}},
        reading("dev-1", 7, 21.0),
    ]);
    let response = app.post_readings(&batch).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["accepted", "rejected", "rejected", "rejected", "accepted"]
    );
    assert_eq!(
        body["results"][1]["errors"][0]["path"],
        "values.temperature"
    );
    assert_eq!(body["results"][1]["errors"][0]["reason"], "out_of_range");
    assert_eq!(body["results"][2]["errors"][0]["reason"], "unknown_sensor");
    assert_eq!(
        body["results"][3]["errors"][0]["path"],
        "values.temperature"
    );
    assert_eq!(app.all_readings("").await.len(), 2);

    let quarantine = app.get_json("/api/v1/quarantine").await;
    assert_eq!(quarantine["count"], 3);
    let reasons: Vec<&str> = quarantine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"out_of_range")
            && reasons.contains(&"unknown_sensor")
            && reasons.contains(&"invalid_type")
    );
    let ghost = quarantine["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["reason"] == "unknown_sensor")
        .unwrap();
    assert!(
        ghost["payload"].as_str().unwrap().contains("ghost"),
        "the raw payload is kept"
    );
    let counters = app.get_json("/api/v1/sensors/dev-1/counters").await;
    assert_eq!(
        (counters["accepted"].as_u64(), counters["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    app.stop().await;
}

#[tokio::test]
async fn an_atomic_batch_with_one_bad_reading_stores_nothing() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let batch = json!([
        reading("dev-1", 10, 20.0),
        reading("ghost", 9, 1.0),
        reading("dev-1", 8, 21.0)
    ]);
    let response = app
        .client
        .post(app.url("/api/v1/readings?atomic=true"))
        .bearer_auth(&app.token)
        .json(&batch)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["details"][0]["path"], "[1].sensor_id");
    assert_eq!(error["details"][0]["reason"], "unknown_sensor");
    assert!(app.all_readings("").await.is_empty());
    assert_eq!(
        app.get_json("/api/v1/quarantine").await["count"],
        1,
        "the bad reading is still kept"
    );

    let good = json!([reading("dev-1", 10, 20.0), reading("dev-1", 8, 21.0)]);
    let response = app
        .client
        .post(app.url("/api/v1/readings?atomic=true"))
        .bearer_auth(&app.token)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.all_readings("").await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_single_rejected_reading_gets_422_with_the_field_and_reason() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    let mut mismatched = reading("dev-1", 10, 20.0);
    mismatched["location_id"] = json!("site-b");
    let (status, error) = error_of(app.post_readings(&mismatched).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["details"][0]["path"], "location_id");
    assert_eq!(error["details"][0]["reason"], "location_mismatch");

    let future = reading("dev-1", -3600, 20.0);
    let (_, error) = error_of(app.post_readings(&future).await).await;
    assert_eq!(error["details"][0]["reason"], "in_future");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_readings_by_outcome() {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-1", "site-a", json!([])).await;
    app.post_readings(&json!([
        reading("dev-1", 10, 1.0),
        reading("ghost", 10, 1.0)
    ]))
    .await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("audrey_ingest_readings_total{outcome=\"accepted\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("audrey_ingest_readings_total{outcome=\"rejected\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("audrey_ingest_commit_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("audrey_ingest_queue_readings"), "{text}");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let alive = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), StatusCode::OK);
    app.stop().await;
}
