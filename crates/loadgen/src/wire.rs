//! The JSON shapes the load generator sends and reads back.
//!
//! These are written here rather than borrowed from the model crate on purpose: the load generator
//! is an outside client, and a client that shares the server's types would never notice when the
//! wire format drifts. Request shapes borrow their strings so that building millions of them for a
//! benchmark costs no allocation beyond the output buffer.

use serde::{Deserialize, Serialize};

/// `PUT /api/v1/locations/{id}`.
#[derive(Clone, Debug, Serialize)]
pub struct LocationBody<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
    pub latitude: f64,
    pub longitude: f64,
    /// Metres above sea level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<&'a str>,
}

/// `PUT /api/v1/sensors/{id}`.
#[derive(Clone, Debug, Serialize)]
pub struct SensorBody<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub location_id: &'a str,
    /// Empty means "any metric is accepted", which the benchmarks rely on.
    pub metrics: &'a [MetricBody],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_interval_seconds: Option<u32>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricBody {
    pub name: &'static str,
    pub unit: &'static str,
    pub min: f64,
    pub max: f64,
}

/// `read_at` as a device sends it: the simulator sends RFC 3339 text like a typical gateway, the
/// benchmarks send epoch milliseconds because formatting text would cost generator CPU.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ReadAt {
    EpochMillis(i64),
    Rfc3339(String),
}

/// One element of the array posted to `POST /api/v1/readings`.
#[derive(Clone, Debug, Serialize)]
pub struct ReadingBody<'a, Values: Serialize> {
    pub sensor_id: &'a str,
    pub read_at: ReadAt,
    pub values: Values,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<&'a str>,
    /// Optional on the wire; when sent, the server checks it against the sensor's location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<&'a str>,
}

/// The totals of a batch answer; the per-item `results` are skipped by serde without being kept.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

impl IngestSummary {
    pub fn answered(&self) -> u64 {
        self.accepted + self.duplicates + self.rejected
    }
}

/// The part of a `GET /api/v1/readings` page the query benchmark checks.
#[derive(Clone, Debug, Deserialize)]
pub struct ReadingPage {
    pub items: Vec<ReadingPageItem>,
    pub count: usize,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ReadingPageItem {
    pub sensor_id: String,
    /// RFC 3339 text in one fixed format, so text order is time order.
    pub read_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_without_message_id_leaves_the_field_out() {
        let body = ReadingBody {
            sensor_id: "bench-00001",
            read_at: ReadAt::EpochMillis(1_700_000_000_000),
            values: serde_json::json!({"temperature": 21.5}),
            message_id: None,
            location_id: None,
        };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            r#"{"sensor_id":"bench-00001","read_at":1700000000000,"values":{"temperature":21.5}}"#
        );
    }

    #[test]
    fn a_batch_answer_with_results_parses_to_its_totals() {
        let answer = r#"{"accepted":2,"duplicates":1,"rejected":1,"results":[
            {"index":0,"status":"accepted","id":"0190f0c4-0000-7000-8000-000000000000"},
            {"index":3,"status":"rejected","errors":[{"path":"values.temperature",
             "reason":"out_of_range","message":"too hot"}]}]}"#;
        let summary: IngestSummary = serde_json::from_str(answer).unwrap();
        assert_eq!(summary.answered(), 4);
        assert_eq!(summary.duplicates, 1);
    }
}
