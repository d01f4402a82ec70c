//! Import, statistics and time-bucket benchmarks.
//!
//! - import: a generated OpenFlights-layout file of N locations, uploaded as one request; then
//!   the same file again (every row unchanged). The report's `readings` are rows.
//! - stats / aggregate: each query `requests` times, one at a time, over whatever the server
//!   holds (run `bench preload` first); `readings` are the readings the answers summarise.
//!
//! Every answer is checked (status, row counts) before it is timed as a success.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::api_client::shorten;
use crate::bench::bench_sensor_id;
use crate::bench::report::{BenchReport, Tally};
use crate::location_upload::upload_locations_csv;

const ZONES: [&str; 6] = [
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Africa/Nairobi",
    "UTC",
];

/// `rows` headerless OpenFlights rows with ids `bench-import-{i}` and random places.
pub fn generated_locations_csv(rows: usize, seed: u64) -> Vec<u8> {
    let mut random = StdRng::seed_from_u64(seed);
    let mut text = String::with_capacity(rows * 140);
    for index in 0..rows {
        let latitude: f64 = random.random_range(-89.0..89.0);
        let longitude: f64 = random.random_range(-179.9..179.9);
        let feet: i32 = random.random_range(-100..12_000);
        let zone = ZONES[index % ZONES.len()];
        text.push_str(&format!(
            "bench-import-{index},\"Bench Station {index}\",\"City {}\",\"Country {}\",\\N,\\N,\
             {latitude:.6},{longitude:.6},{feet},1,\"E\",\"{zone}\",\"station\",\"bench\"\n",
            index % 500,
            index % 40
        ));
    }
    text.into_bytes()
}

/// Imports `rows` generated locations twice: new, then unchanged.
pub async fn bench_import(
    base_url: &str,
    token: &str,
    rows: usize,
    seed: u64,
) -> anyhow::Result<Vec<BenchReport>> {
    let file = generated_locations_csv(rows, seed);
    let mut reports = Vec::new();
    for (label, field) in [
        (format!("import {rows} locations (new)"), "inserted"),
        (
            format!("import {rows} locations (again, unchanged)"),
            "unchanged",
        ),
    ] {
        let mut tally = Tally::new()?;
        let started = Instant::now();
        let answer = upload_locations_csv(base_url, token, file.clone(), true).await;
        let elapsed = started.elapsed();
        match answer {
            Ok(report) if report[field].as_u64() == Some(rows as u64) => {
                tally.requests += 1;
                tally.readings += rows as u64;
                tally.record_latency(elapsed);
            }
            Ok(report) => tally.record_error(|| {
                shorten(&format!(
                    "expected {rows} rows {field}, the report says {report}"
                ))
            }),
            Err(error) => tally.record_error(|| error.to_string()),
        }
        reports.push(tally.into_report(&label, 1, elapsed, None));
    }
    Ok(reports)
}

/// The queries `bench stats` times, as `(label, path)`.
pub fn analytics_queries(sensors: usize) -> Vec<(String, String)> {
    let sensor = bench_sensor_id(sensors / 2);
    vec![
        (
            "stats by sensor, p50+p99".into(),
            "/api/v1/stats?metric=temperature&group_by=sensor&percentiles=50,99".into(),
        ),
        (
            "stats by sensor, no percentiles".into(),
            "/api/v1/stats?metric=temperature&group_by=sensor".into(),
        ),
        (
            "stats by country (join), no percentiles".into(),
            "/api/v1/stats?metric=temperature&group_by=country".into(),
        ),
        (
            "aggregate 1 sensor, 1m buckets, avg,min,max,count,p50".into(),
            format!(
                "/api/v1/readings/aggregate?sensor={sensor}&metric=temperature&bucket=1m&agg=avg,min,max,count,p50"
            ),
        ),
        (
            "aggregate all sensors, 1h buckets, avg,count,p99".into(),
            "/api/v1/readings/aggregate?metric=temperature&bucket=1h&agg=avg,count,p99".into(),
        ),
        (
            "aggregate all sensors, 1h buckets, avg,count,min,max".into(),
            "/api/v1/readings/aggregate?metric=temperature&bucket=1h&agg=avg,count,min,max".into(),
        ),
    ]
}

/// Readings an answer summarises: the sum of `count` over groups or buckets.
fn summarised(answer: &serde_json::Value) -> Option<u64> {
    let rows = answer
        .get("groups")
        .or_else(|| answer.get("buckets"))?
        .as_array()?;
    rows.iter().map(|row| row["count"].as_u64()).sum()
}

pub async fn bench_analytics(
    base_url: &str,
    token: &str,
    sensors: usize,
    requests: u64,
) -> anyhow::Result<Vec<BenchReport>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let base_url = base_url.trim_end_matches('/');
    let mut reports = Vec::new();
    for (label, path) in analytics_queries(sensors) {
        let mut tally = Tally::new()?;
        let started = Instant::now();
        for _ in 0..requests {
            let sent = Instant::now();
            let answer = client
                .get(format!("{base_url}{path}"))
                .bearer_auth(token.trim())
                .send()
                .await;
            let answer = match answer {
                Ok(response) if response.status().is_success() => {
                    response.json::<serde_json::Value>().await.ok()
                }
                Ok(response) => {
                    let status = response.status();
                    tally.record_error(|| format!("{path}: {status}"));
                    continue;
                }
                Err(error) => {
                    tally.record_error(|| error.to_string());
                    continue;
                }
            };
            let latency = sent.elapsed();
            match answer.as_ref().and_then(summarised) {
                Some(count) if count > 0 => {
                    tally.requests += 1;
                    tally.readings += count;
                    tally.record_latency(latency);
                }
                _ => tally.record_error(|| format!("{path}: an empty or unreadable answer")),
            }
        }
        reports.push(tally.into_report(&label, 1, started.elapsed(), None));
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_file_has_one_line_per_row_in_the_openflights_layout() {
        let file = String::from_utf8(generated_locations_csv(3, 1)).unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("bench-import-2,"));
        assert_eq!(lines[0].split(',').count(), 14);
    }
}
