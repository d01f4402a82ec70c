//! The outage spool's write path: the same HTTP batch ingest against a healthy server, then
//! against the same server while its database is stopped (every acknowledged batch goes to the
//! spool), in one run; then how long the forwarder takes to empty the spool once the database
//! is back. The database is stopped and started by shell commands the operator gives, so the
//! benchmark works for any backend and never manages a database itself.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::bench::http_ingest::timed_http_ingest;
use crate::bench::{BenchReport, IngestBenchOptions};

#[derive(Clone, Debug)]
pub struct OutageBenchOptions {
    pub ingest: IngestBenchOptions,
    /// Shell command that makes the database unreachable (e.g. `pg_ctl -D ... stop -m fast`).
    pub stop_database: String,
    /// Shell command that brings it back.
    pub start_database: String,
}

/// What one run measured.
#[derive(Debug)]
pub struct OutageBenchResult {
    pub healthy: BenchReport,
    pub spooled: BenchReport,
    /// From the start command returning until `/metrics` showed an empty spool.
    pub drain: Duration,
}

impl OutageBenchResult {
    /// Spooled readings per second as a share of healthy ones.
    pub fn ratio(&self) -> f64 {
        if self.healthy.readings_per_second > 0.0 {
            self.spooled.readings_per_second / self.healthy.readings_per_second
        } else {
            0.0
        }
    }
}

pub async fn bench_spool_outage(options: OutageBenchOptions) -> anyhow::Result<OutageBenchResult> {
    let metrics_url = format!("{}/metrics", options.ingest.base_url.trim_end_matches('/'));
    let http = reqwest::Client::new();
    ensure!(
        spool_records(&http, &metrics_url).await? == 0.0,
        "the server's spool must be empty before the benchmark starts"
    );
    let healthy =
        timed_http_ingest(options.ingest.clone(), true, "http-ingest (database up)").await?;
    run_shell(&options.stop_database).await?;
    let spooled = timed_http_ingest(
        options.ingest.clone(),
        false,
        "http-ingest (database down, spooled)",
    )
    .await;
    // Whatever happened, the database is started again before anything is reported.
    run_shell(&options.start_database).await?;
    let spooled = spooled?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    while spool_records(&http, &metrics_url).await? > 0.0 {
        ensure!(
            Instant::now() < deadline,
            "the spool did not empty within 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(OutageBenchResult {
        healthy,
        spooled,
        drain: started.elapsed(),
    })
}

async fn run_shell(command: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh")
        .args(["-c", command])
        .status()
        .await
        .with_context(|| format!("running {command:?}"))?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

async fn spool_records(http: &reqwest::Client, url: &str) -> anyhow::Result<f64> {
    let text = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?
        .text()
        .await?;
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("audrey_spool_records "))
        .context("the server reports no audrey_spool_records: is it running with the outage spool (--spool on, or a PostgreSQL store)?")?;
    value
        .trim()
        .parse()
        .with_context(|| format!("audrey_spool_records {value:?} is not a number"))
}
