//! `/api/v1/stats` and `/api/v1/readings/aggregate` on random, out-of-order readings, part
//! of them still landed (in memory) and part flushed, checked against values computed here.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{Value, json};

use audrey_store::Store;

use crate::helpers::{TestApp, error_of, jiff_now_millis};

struct Sample {
    sensor: &'static str,
    read_at: i64,
    temperature: Option<f64>,
}

const SENSORS: [(&str, &str); 4] = [
    ("s-1", "berlin-a"),
    ("s-2", "berlin-b"),
    ("s-3", "munich"),
    ("s-4", "nowhere"),
];

fn place(location: &str) -> (Option<&'static str>, Option<&'static str>) {
    match location {
        "berlin-a" | "berlin-b" => (Some("Berlin"), Some("DE")),
        "munich" => (Some("Munich"), Some("DE")),
        _ => (None, Some("FR")),
    }
}

fn location_of(sensor: &str) -> &'static str {
    SENSORS.iter().find(|(id, _)| *id == sensor).unwrap().1
}

/// Registers the sensors and posts 1,500 readings in shuffled time order. Values around
/// 1000 with a spread of a few units test that the spread is not lost to cancellation.
async fn seeded_app(seed: u64) -> (TestApp, Vec<Sample>) {
    let app = TestApp::spawn().await;
    for (sensor, location) in SENSORS {
        let (city, country) = place(location);
        let body = json!({"name": location, "city": city, "country": country,
                          "latitude": 50.0, "longitude": 10.0});
        let response = app
            .send_json(
                reqwest::Method::PUT,
                &format!("/api/v1/locations/{location}"),
                &body,
            )
            .await;
        assert!(response.status().is_success());
        let body = json!({"kind": "climate", "location_id": location});
        let response = app
            .send_json(
                reqwest::Method::PUT,
                &format!("/api/v1/sensors/{sensor}"),
                &body,
            )
            .await;
        assert!(response.status().is_success());
    }
    let mut random = StdRng::seed_from_u64(seed);
    let now = jiff_now_millis();
    let samples: Vec<Sample> = (0..1_500)
        .map(|_| Sample {
            sensor: SENSORS[random.random_range(0..SENSORS.len())].0,
            read_at: now - random.random_range(60_000..2 * 86_400_000),
            // One in ten readings carries only humidity: it has no temperature to count.
            temperature: (random.random_range(0..10) > 0)
                .then(|| 1000.0 + random.random_range(-5.0..5.0f64)),
        })
        .collect();
    for (index, chunk) in samples.chunks(100).enumerate() {
        if index == 5 {
            // Move some rows into the indexed table now, whatever the background does.
            for _ in 0..5 {
                app.store.maintain().unwrap();
            }
        }
        let batch: Vec<Value> = chunk
            .iter()
            .map(|sample| match sample.temperature {
                Some(value) => json!({"sensor_id": sample.sensor, "read_at": sample.read_at,
                                      "values": {"temperature": value, "humidity": 40.0}}),
                None => json!({"sensor_id": sample.sensor, "read_at": sample.read_at,
                               "values": {"humidity": 40.0}}),
            })
            .collect();
        let response = app.post_readings(&json!(batch)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    (app, samples)
}

/// `(count, min, max, mean, sample stddev, percentiles)` by sorting and closest-rank
/// interpolation, computed the plain way.
fn expected_summary(
    mut values: Vec<f64>,
    percentiles: &[f64],
) -> (usize, f64, f64, f64, Option<f64>, Vec<f64>) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let stddev = (n > 1).then(|| {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
    });
    let percentile = |p: f64| {
        let rank = p / 100.0 * (n as f64 - 1.0);
        let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
        values[low] + (values[high] - values[low]) * (rank - low as f64)
    };
    (
        n,
        values[0],
        values[n - 1],
        mean,
        stddev,
        percentiles.iter().map(|p| percentile(*p)).collect(),
    )
}

fn close(got: &Value, want: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what} missing"));
    assert!(
        (got - want).abs() <= 1e-9 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

fn check_group(group: &Value, values: Vec<f64>, percentiles: &[f64], what: &str) {
    let (count, min, max, mean, stddev, expected_percentiles) =
        expected_summary(values, percentiles);
    assert_eq!(group["count"], count as u64, "{what} count");
    close(&group["min"], min, what);
    close(&group["max"], max, what);
    close(&group["mean"], mean, what);
    match stddev {
        Some(stddev) => close(&group["stddev"], stddev, what),
        None => assert_eq!(group["stddev"], Value::Null),
    }
    for (p, want) in percentiles.iter().zip(expected_percentiles) {
        close(
            &group["percentiles"][format!("p{p}")],
            want,
            &format!("{what} p{p}"),
        );
    }
}

#[tokio::test]
async fn statistics_per_group_match_values_computed_independently() {
    let (app, samples) = seeded_app(7).await;
    assert!(
        app.store.landed_rows() > 0,
        "some readings are still in memory, so the merge is exercised"
    );
    assert!(
        app.store.landed_rows() < samples.len(),
        "and some are flushed"
    );
    let percentiles = [50.0, 75.0, 99.0, 12.5];
    for group_by in ["sensor", "location", "city", "country"] {
        let mut expected: BTreeMap<Option<String>, Vec<f64>> = BTreeMap::new();
        for sample in &samples {
            let Some(value) = sample.temperature else {
                continue;
            };
            let location = location_of(sample.sensor);
            let key = match group_by {
                "sensor" => Some(sample.sensor.to_string()),
                "location" => Some(location.to_string()),
                "city" => place(location).0.map(str::to_string),
                _ => place(location).1.map(str::to_string),
            };
            expected.entry(key).or_default().push(value);
        }
        let body = app
            .get_json(&format!(
                "/api/v1/stats?metric=temperature&group_by={group_by}&percentiles=50,75,99,12.5"
            ))
            .await;
        let groups = body["groups"].as_array().unwrap();
        let keys: Vec<Option<String>> = groups
            .iter()
            .map(|group| group["key"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            keys,
            expected.keys().cloned().collect::<Vec<_>>(),
            "{group_by}"
        );
        for (group, (key, values)) in groups.iter().zip(expected) {
            check_group(group, values, &percentiles, &format!("{group_by} {key:?}"));
        }
    }

    // A time window: from inclusive, to exclusive.
    let from = samples[10].read_at;
    let to = samples[20].read_at.max(from + 3_600_000);
    let values: Vec<f64> = samples
        .iter()
        .filter(|s| s.sensor == "s-1" && s.read_at >= from && s.read_at < to)
        .filter_map(|s| s.temperature)
        .collect();
    let body = app
        .get_json(&format!(
            "/api/v1/stats?metric=temperature&group_by=sensor&from={from}&to={to}&percentiles=50"
        ))
        .await;
    let group = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["key"] == "s-1");
    match group {
        Some(group) => check_group(group, values, &[50.0], "window"),
        None => assert!(values.is_empty()),
    }
    app.stop().await;
}

#[tokio::test]
async fn time_buckets_match_values_computed_independently() {
    let (app, samples) = seeded_app(11).await;
    for (bucket, width) in [("1h", 3_600_000i64), ("1d", 86_400_000), ("15m", 900_000)] {
        let mut expected: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for sample in samples.iter().filter(|s| s.sensor == "s-2") {
            if let Some(value) = sample.temperature {
                let start = sample.read_at - sample.read_at.rem_euclid(width);
                expected.entry(start).or_default().push(value);
            }
        }
        let body = app
            .get_json(&format!(
                "/api/v1/readings/aggregate?sensor=s-2&metric=temperature&bucket={bucket}&agg=avg,min,max,count,p50,p90,stddev,sum"
            ))
            .await;
        let buckets = body["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), expected.len(), "{bucket}");
        for (got, (start, values)) in buckets.iter().zip(expected) {
            let start_text = jiff::Timestamp::from_millisecond(start).unwrap();
            assert_eq!(
                got["start"]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .unwrap(),
                start_text
            );
            let sum: f64 = values.iter().sum();
            let (count, min, max, mean, stddev, percentiles) =
                expected_summary(values, &[50.0, 90.0]);
            assert_eq!(got["count"], count as u64);
            close(&got["avg"], mean, "avg");
            close(&got["min"], min, "min");
            close(&got["max"], max, "max");
            close(&got["sum"], sum, "sum");
            close(&got["p50"], percentiles[0], "p50");
            close(&got["p90"], percentiles[1], "p90");
            match stddev {
                Some(stddev) => close(&got["stddev"], stddev, "stddev"),
                None => assert_eq!(got["stddev"], Value::Null),
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_statistics_parameters_are_named() {
    let app = TestApp::spawn().await;
    let cases = [
        ("/api/v1/stats?group_by=sensor", "metric"),
        ("/api/v1/stats?metric=t&group_by=planet", "group_by"),
        ("/api/v1/stats?metric=t&percentiles=50,101", "percentiles"),
        (
            "/api/v1/stats?metric=t&from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z",
            "to",
        ),
        ("/api/v1/readings/aggregate?metric=t", "bucket"),
        ("/api/v1/readings/aggregate?metric=t&bucket=7w", "bucket"),
        (
            "/api/v1/readings/aggregate?metric=t&bucket=1h&agg=avg,median",
            "agg",
        ),
        (
            "/api/v1/readings/aggregate?metric=t&bucket=1s&from=2000-01-01T00:00:00Z&to=2024-01-01T00:00:00Z",
            "bucket",
        ),
    ];
    for (path, field) in cases {
        let (status, error) = error_of(app.get(path).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(error["details"][0]["path"], field, "{path}: {error}");
    }
    app.stop().await;
}
