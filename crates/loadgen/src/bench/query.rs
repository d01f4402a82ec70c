//! Query latency: "the newest readings of one sensor", the question every dashboard asks.
//!
//! Each answer is checked, not just timed: a 401, an empty page or another sensor's readings come
//! back fast, and a benchmark that counted them as successes would report a fast server that
//! answers nothing. The bench fleet must hold readings first (see [`super::preload`]).

use std::time::Instant;

use anyhow::ensure;
use reqwest::StatusCode;

use crate::api_client::{ApiClient, shorten};
use crate::bench::bench_sensor_id;
use crate::bench::report::{BenchReport, Tally};
use crate::wire::ReadingPage;

#[derive(Clone, Debug)]
pub struct QueryBenchOptions {
    pub base_url: String,
    pub token: String,
    /// Concurrent tasks, each with one request in flight.
    pub workers: usize,
    pub requests: u64,
    /// Request `i` asks for sensor `bench-{i % sensors}`; use the count that was preloaded.
    pub sensors: usize,
    /// Page size (100 is a good start).
    pub limit: usize,
}

pub async fn bench_query_newest(options: QueryBenchOptions) -> anyhow::Result<BenchReport> {
    ensure!(options.workers > 0, "at least one worker is needed");
    ensure!(options.sensors > 0, "at least one bench sensor is needed");
    ensure!(options.limit > 0, "the page size must be at least 1");
    let client = ApiClient::new(&options.base_url, &options.token, options.workers)?;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..options.workers {
        let client = client.clone();
        let options = options.clone();
        workers.spawn(async move {
            let mut tally = Tally::new()?;
            for request in (worker as u64..options.requests).step_by(options.workers) {
                let sensor_id = bench_sensor_id((request % options.sensors as u64) as usize);
                let sent = Instant::now();
                match client.newest_readings(&sensor_id, options.limit).await {
                    Ok((status, body)) => {
                        let latency = sent.elapsed();
                        match check_newest_page(status, &body, &sensor_id, options.limit) {
                            Ok(count) => {
                                tally.requests += 1;
                                tally.readings += count as u64;
                                tally.record_latency(latency);
                            }
                            Err(problem) => tally.record_error(|| problem),
                        }
                    }
                    Err(error) => tally.record_error(|| error.to_string()),
                }
            }
            anyhow::Ok(tally)
        });
    }
    let mut tally = Tally::new()?;
    while let Some(joined) = workers.join_next().await {
        tally.merge(joined??);
    }
    let elapsed = started.elapsed();
    Ok(tally.into_report("query-newest", options.workers, elapsed, None))
}

/// Accepts only a page that could be right: 200, between 1 and `limit` readings, all of the
/// asked-for sensor, newest first, and no "more follow" cursor on a short page.
fn check_newest_page(
    status: StatusCode,
    body: &[u8],
    sensor_id: &str,
    limit: usize,
) -> Result<usize, String> {
    if status != StatusCode::OK {
        return Err(format!(
            "{sensor_id}: HTTP {status}: {}",
            shorten(&String::from_utf8_lossy(body))
        ));
    }
    let page: ReadingPage = serde_json::from_slice(body)
        .map_err(|error| format!("{sensor_id}: unreadable page: {error}"))?;
    if page.count != page.items.len() {
        return Err(format!(
            "{sensor_id}: count says {} but the page has {} items",
            page.count,
            page.items.len()
        ));
    }
    if page.count == 0 {
        return Err(format!(
            "{sensor_id}: no readings; preload the bench fleet before the query benchmark"
        ));
    }
    if page.count > limit {
        return Err(format!(
            "{sensor_id}: {} items for a limit of {limit}",
            page.count
        ));
    }
    if page.count < limit && page.next_cursor.is_some() {
        return Err(format!(
            "{sensor_id}: a short page of {} items claims more follow",
            page.count
        ));
    }
    if let Some(stranger) = page.items.iter().find(|item| item.sensor_id != sensor_id) {
        return Err(format!(
            "{sensor_id}: the page holds a reading of {}",
            stranger.sensor_id
        ));
    }
    if page
        .items
        .windows(2)
        .any(|pair| pair[0].read_at < pair[1].read_at)
    {
        return Err(format!("{sensor_id}: the page is not newest first"));
    }
    Ok(page.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(sensor: &str, read_ats: &[&str], cursor: Option<&str>) -> Vec<u8> {
        let items: Vec<serde_json::Value> = read_ats
            .iter()
            .map(|read_at| serde_json::json!({"id": "x", "sensor_id": sensor, "read_at": read_at, "values": {}}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "items": items, "count": items.len(), "is_empty": items.is_empty(), "next_cursor": cursor
        }))
        .unwrap()
    }

    const NEWER: &str = "2024-07-15T10:00:01.000Z";
    const OLDER: &str = "2024-07-15T10:00:00.000Z";

    #[test]
    fn a_full_newest_first_page_of_the_right_sensor_counts() {
        let body = page("bench-00001", &[NEWER, OLDER], Some("cursor"));
        assert_eq!(
            check_newest_page(StatusCode::OK, &body, "bench-00001", 2),
            Ok(2)
        );
    }

    #[test]
    fn an_empty_page_is_an_error_that_says_to_preload() {
        let body = page("bench-00001", &[], None);
        let problem = check_newest_page(StatusCode::OK, &body, "bench-00001", 100).unwrap_err();
        assert!(problem.contains("preload"), "{problem}");
    }

    #[test]
    fn wrong_status_wrong_sensor_and_wrong_order_are_errors() {
        let body = page("bench-00001", &[NEWER], None);
        assert!(check_newest_page(StatusCode::UNAUTHORIZED, b"{}", "bench-00001", 1).is_err());
        assert!(check_newest_page(StatusCode::OK, &body, "bench-00002", 1).is_err());
        let backwards = page("bench-00001", &[OLDER, NEWER], None);
        assert!(check_newest_page(StatusCode::OK, &backwards, "bench-00001", 2).is_err());
    }

    #[test]
    fn a_short_page_that_claims_more_follow_is_an_error() {
        let body = page("bench-00001", &[NEWER], Some("cursor"));
        assert!(check_newest_page(StatusCode::OK, &body, "bench-00001", 100).is_err());
    }
}
