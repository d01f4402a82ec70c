use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_of, jiff_now_millis, reading};

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect()
}

fn read_ats(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["read_at"].as_str().unwrap().to_string())
        .collect()
}

/// Two sensors at two locations, readings sent out of read_at order.
async fn seeded() -> TestApp {
    let app = TestApp::spawn().await;
    app.put_sensor("dev-a", "site-1", json!([])).await;
    app.put_sensor("dev-b", "site-2", json!([])).await;
    let mut batch = Vec::new();
    for minute in [5, 1, 9, 3, 7, 2, 8, 4, 6, 10] {
        batch.push(reading("dev-a", minute * 60, minute as f64));
        batch.push(reading("dev-b", minute * 60 + 30, 100.0 + minute as f64));
    }
    let body: Value = app
        .post_readings(&Value::Array(batch))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["accepted"], 20);
    app
}

#[tokio::test]
async fn latest_is_the_newest_measured_not_the_last_received() {
    let app = seeded().await;
    // Sent last, measured an hour ago.
    app.post_readings(&reading("dev-a", 3600, -1.0)).await;
    let latest = app.get_json("/api/v1/sensors/dev-a/latest").await;
    assert_eq!(
        latest["values"]["temperature"], 1.0,
        "the reading measured 1 minute ago"
    );
    app.stop().await;
}

#[tokio::test]
async fn latest_of_a_sensor_without_readings_is_404() {
    let app = TestApp::spawn().await;
    app.put_sensor("quiet", "site-1", json!([])).await;
    let (status, _) = error_of(app.get("/api/v1/sensors/quiet/latest").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn newest_and_oldest_order_by_read_at_for_a_sensor() {
    let app = seeded().await;
    for flushed in [false, true] {
        if flushed {
            app.store.flush_all().unwrap();
        }
        let newest = app
            .get_json("/api/v1/readings?sensor=dev-a&order=newest&limit=3")
            .await;
        let values: Vec<f64> = newest["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["values"]["temperature"].as_f64().unwrap())
            .collect();
        assert_eq!(values, [1.0, 2.0, 3.0], "flushed={flushed}");
        let oldest = app
            .get_json("/api/v1/readings?sensor=dev-a&order=oldest&limit=3")
            .await;
        let values: Vec<f64> = oldest["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["values"]["temperature"].as_f64().unwrap())
            .collect();
        assert_eq!(values, [10.0, 9.0, 8.0], "flushed={flushed}");
        assert_eq!(oldest["count"], 3);
        assert_eq!(oldest["is_empty"], false);
    }
    app.stop().await;
}

#[tokio::test]
async fn location_and_time_range_filters_select_exactly_the_matching_readings() {
    let app = seeded().await;
    let by_location = app.all_readings("&location=site-2").await;
    assert_eq!(by_location.len(), 10);
    assert!(by_location.iter().all(|item| item["sensor_id"] == "dev-b"));

    let now = jiff_now_millis();
    // dev-a minutes 3..=6 ago: from is inclusive, to exclusive.
    let from = now - 6 * 60_000 - 10_000;
    let to = now - 3 * 60_000 + 10_000;
    let window = app
        .all_readings(&format!("&sensor=dev-a&from={from}&to={to}"))
        .await;
    let values: HashSet<i64> = window
        .iter()
        .map(|i| i["values"]["temperature"].as_f64().unwrap() as i64)
        .collect();
    assert_eq!(values, HashSet::from([3, 4, 5, 6]));

    let everything = app.all_readings("").await;
    assert_eq!(everything.len(), 20);
    let times = read_ats(&everything);
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "oldest first across sensors");
    app.stop().await;
}

#[tokio::test]
async fn an_empty_answer_says_so() {
    let app = seeded().await;
    let page = app
        .get_json("/api/v1/readings?sensor=dev-a&from=2001-01-01T00:00:00Z&to=2001-01-02T00:00:00Z")
        .await;
    assert_eq!(
        (page["count"].as_u64(), page["is_empty"].as_bool()),
        (Some(0), Some(true))
    );
    assert!(page["next_cursor"].is_null());
    app.stop().await;
}

#[tokio::test]
async fn bad_query_parameters_are_named_in_the_error() {
    let app = seeded().await;
    for (query, path) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("order=sideways", "order"),
        ("from=yesterday", "from"),
        ("cursor=garbage", "cursor"),
        ("sensr=dev-a", "sensr"),
        ("from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z", "to"),
    ] {
        let (status, error) = error_of(app.get(&format!("/api/v1/readings?{query}")).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(error["details"][0]["path"], path, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn pages_cover_every_reading_once_while_readings_keep_arriving() {
    let app = seeded().await;
    let before = ids(&app.all_readings("").await);
    // Page newest-first two at a time, while new (newer) readings arrive between pages.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut round = 0;
    loop {
        let mut path = "/api/v1/readings?order=newest&limit=2".to_string();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = app.get_json(&path).await;
        seen.extend(ids(page["items"].as_array().unwrap()));
        round += 1;
        app.post_readings(&json!([
            reading("dev-a", 0, round as f64),
            reading("dev-b", 0, round as f64)
        ]))
        .await;
        if round % 3 == 0 {
            app.store.flush_all().unwrap();
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no reading appears on two pages");
    // The first page may include readings sent after the listing began, never fewer.
    for id in &before {
        assert!(
            unique.contains(id),
            "reading {id} stored before the listing began was skipped"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_reading_of_an_unknown_id_is_404_and_a_malformed_id_is_422() {
    let app = seeded().await;
    let (status, _) = error_of(
        app.get("/api/v1/readings/0190a0b0-0000-7000-8000-000000000000")
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, error) = error_of(app.get("/api/v1/readings/not-a-uuid").await).await;
    assert_eq!(
        (status, error["details"][0]["path"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("id"))
    );
    app.stop().await;
}
