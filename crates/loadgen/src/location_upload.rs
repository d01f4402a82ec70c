//! Uploading a locations CSV to `POST /api/v1/locations/import`, with a progress bar over the
//! bytes sent and a status line while the server imports. Behind `audrey import locations`
//! and `audrey bench import`.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio_stream::StreamExt;

use crate::progress;

/// A whole file is one request; give a large one time to travel and be imported.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);
const CHUNK_BYTES: usize = 256 * 1024;

/// Sends `csv` and answers the server's import report (JSON).
pub async fn upload_locations_csv(
    base_url: &str,
    token: &str,
    csv: Vec<u8>,
    quiet: bool,
) -> anyhow::Result<serde_json::Value> {
    let base_url = base_url.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(IMPORT_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let total = csv.len() as u64;
    let bar = progress::bar(total, "uploading", quiet);
    let csv = Bytes::from(csv);
    let chunks: Vec<Bytes> = (0..csv.len())
        .step_by(CHUNK_BYTES)
        .map(|start| csv.slice(start..(start + CHUNK_BYTES).min(csv.len())))
        .collect();
    let counted = bar.clone();
    let stream = tokio_stream::iter(chunks).map(move |chunk| {
        counted.inc(chunk.len() as u64);
        Ok::<Bytes, std::io::Error>(chunk)
    });
    let request = client
        .post(format!("{base_url}/api/v1/locations/import"))
        .bearer_auth(token.trim())
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .header(reqwest::header::CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let waiting = progress::status_line(quiet);
    waiting.set_message("the server is importing");
    let response = request
        .await
        .with_context(|| format!("sending the file to {base_url}"))?;
    bar.finish_and_clear();
    waiting.finish_and_clear();
    let status = response.status();
    let body = response.text().await.context("reading the answer")?;
    if !status.is_success() {
        bail!("the server answered {status}: {body}");
    }
    serde_json::from_str(&body).context("the answer is not JSON")
}
