//! A thin client for the few routes of Audrey's HTTP API that the load generator drives.
//!
//! It makes exactly one HTTP request per call and classifies the answer; deciding whether and
//! when to try again belongs to [`crate::delivery`], so that the simulator and the benchmarks
//! share one retry policy instead of each growing its own.

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde::Serialize;

use crate::wire::IngestSummary;

/// Long enough for a 1000-reading batch on a loaded server, short enough that a hung server
/// turns into a counted error instead of a silent stall.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A server that says 503 without a usable `Retry-After` still deserves a pause.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// A `Retry-After` longer than this is treated as this, so a misconfigured server cannot park the
/// generator for an hour.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How often registration retries a 503 before giving up.
const REGISTRATION_OVERLOAD_RETRIES: u32 = 20;

#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    authorization: String,
}

/// What the server said to one `POST /api/v1/readings`.
#[derive(Clone, Debug, PartialEq)]
pub enum PostOutcome {
    /// The server took the request and answered for each reading.
    Answered(IngestSummary),
    /// 503: the server is shedding load; send the same body again after this pause.
    Overloaded { retry_after: Duration },
    /// Any other status: the request as a whole was refused or failed.
    Failed { status: StatusCode, body: String },
}

impl ApiClient {
    /// `connections` sizes the keep-alive pool: one idle connection per concurrent caller is
    /// kept so that no request pays for a new TCP handshake.
    pub fn new(base_url: &str, token: &str, connections: usize) -> anyhow::Result<ApiClient> {
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            bail!("base URL {base_url:?} must start with http://");
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(connections.max(1))
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            http,
            base_url,
            authorization: format!("Bearer {}", token.trim()),
        })
    }

    /// Creates or replaces a resource with `PUT`; registration is idempotent, so re-running a
    /// simulation or benchmark against the same server is harmless.
    pub async fn put_json(&self, path: &str, body: &impl Serialize) -> anyhow::Result<StatusCode> {
        let body = serde_json::to_vec(body).context("encoding the request body")?;
        let url = format!("{}{path}", self.base_url);
        let mut overloaded = 0;
        loop {
            let response = self
                .http
                .put(&url)
                .header(AUTHORIZATION, &self.authorization)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("PUT {url}"))?;
            let status = response.status();
            if status == StatusCode::SERVICE_UNAVAILABLE
                && overloaded < REGISTRATION_OVERLOAD_RETRIES
            {
                overloaded += 1;
                tokio::time::sleep(retry_after(response.headers())).await;
                continue;
            }
            if status.is_success() {
                return Ok(status);
            }
            let text = response.text().await.unwrap_or_default();
            bail!("PUT {url} answered {status}: {}", shorten(&text));
        }
    }

    /// Sends one pre-encoded JSON array of readings. `Bytes` is reference-counted, so resending
    /// the same body after a 503 copies nothing.
    pub async fn post_readings(&self, body: Bytes) -> Result<PostOutcome, reqwest::Error> {
        let response = self
            .http
            .post(format!("{}/api/v1/readings", self.base_url))
            .header(AUTHORIZATION, &self.authorization)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let pause = retry_after(response.headers());
            // Read the body so the connection can go back to the pool.
            let _ = response.bytes().await;
            return Ok(PostOutcome::Overloaded { retry_after: pause });
        }
        let bytes = response.bytes().await?;
        if status.is_success() {
            return Ok(match serde_json::from_slice::<IngestSummary>(&bytes) {
                Ok(summary) => PostOutcome::Answered(summary),
                Err(error) => PostOutcome::Failed {
                    status,
                    body: format!("unreadable answer ({error}): {}", shorten_bytes(&bytes)),
                },
            });
        }
        Ok(PostOutcome::Failed {
            status,
            body: shorten_bytes(&bytes),
        })
    }

    /// `GET /api/v1/readings?sensor=..&order=newest&limit=..`: the status and the raw body, so the
    /// caller decides how much of it to check.
    pub async fn newest_readings(
        &self,
        sensor_id: &str,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), reqwest::Error> {
        let response = self
            .http
            .get(format!(
                "{}/api/v1/readings?sensor={sensor_id}&order=newest&limit={limit}",
                self.base_url
            ))
            .header(AUTHORIZATION, &self.authorization)
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.bytes().await?))
    }
}

/// Reads `Retry-After` as whole (or fractional) seconds; the HTTP-date form is not worth parsing
/// for a loopback benchmark and falls back to the default pause.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(|seconds| Duration::from_secs_f64(seconds).min(LONGEST_RETRY_AFTER))
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// Error bodies end up in reports and logs; a whole echoed payload would drown them.
pub fn shorten(text: &str) -> String {
    const LONGEST: usize = 300;
    if text.len() <= LONGEST {
        return text.to_string();
    }
    let mut end = LONGEST;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn shorten_bytes(bytes: &[u8]) -> String {
    shorten(&String::from_utf8_lossy(bytes))
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    fn headers_with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_in_seconds_is_honoured() {
        assert_eq!(
            retry_after(&headers_with_retry_after("2")),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn an_absurd_retry_after_is_capped() {
        assert_eq!(
            retry_after(&headers_with_retry_after("3600")),
            LONGEST_RETRY_AFTER
        );
    }

    #[test]
    fn a_missing_or_dated_retry_after_falls_back_to_the_default() {
        assert_eq!(retry_after(&HeaderMap::new()), DEFAULT_RETRY_AFTER);
        assert_eq!(
            retry_after(&headers_with_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")),
            DEFAULT_RETRY_AFTER
        );
    }

    #[test]
    fn a_base_url_without_scheme_is_refused() {
        assert!(ApiClient::new("127.0.0.1:8080", "token", 1).is_err());
        assert!(ApiClient::new("http://127.0.0.1:8080/", "token", 1).is_ok());
    }

    #[test]
    fn long_error_bodies_are_shortened_on_a_character_boundary() {
        let text = "é".repeat(400);
        let short = shorten(&text);
        assert!(short.len() < text.len());
        assert!(short.ends_with('…'));
    }
}
