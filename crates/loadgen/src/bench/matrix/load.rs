//! Which readings each request of one matrix scenario carries, as protobuf or as JSON.
//!
//! Request `r` of worker `w` is global request `r * workers + w` (the workers interleave in
//! measurement time); it carries the readings numbered `request * readings_per_request ..`
//! onwards. Reading `i` goes to bench sensor
//! `i % sensors`, is read one millisecond after reading `i - 1` (all ending a minute before the
//! scenario starts, so every one is valid) and carries the message id `{prefix}-{i}`. The prefix
//! names the run and the scenario, so ids are unique per run and no scenario's readings are ever
//! answered as another's duplicates. Everything is computed from the numbers alone, so a request
//! that must be resent is simply built again, identical down to its message ids.
//!
//! Batched requests of a scenario with at most [`PREPARED_READINGS_AT_MOST`] readings are built
//! before its clock starts ([`ScenarioLoad::prepare`]): the load generator shares the cores with
//! the server, so building them while timed would take CPU from the server being measured. A
//! larger scenario (the largest default cells hold ten million readings, more than fits
//! comfortably in memory) builds each request just before it is sent, as does a request sent
//! again after an overload.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use anyhow::Context;
use audrey_proto::v1::reading_input::ReadTime;
use audrey_proto::v1::{ReadingBatch, ReadingInput};
use bytes::Bytes;
use serde::Serialize;

use crate::wire::{ReadAt, ReadingBody};

/// Readings end this long before the scenario starts, comfortably inside the accepted window.
const READ_AT_MARGIN_MS: i64 = 60_000;

/// Most readings a scenario builds before its clock starts: 2,000,000 readings are ~250 MB as
/// JSON bodies and ~600 MB as protobuf messages.
pub const PREPARED_READINGS_AT_MOST: u64 = 2_000_000;

/// One worker's requests, built before the clock; `None` where a request must be built when
/// sent (a batch already handed over, or a scenario too large to prepare).
#[derive(Debug, Default)]
pub struct PreparedRequests {
    batches: Vec<Option<ReadingBatch>>,
    bodies: Vec<Bytes>,
}

impl PreparedRequests {
    /// Request `request`'s protobuf batch, given up to the caller (it is sent once; a resend
    /// builds it again, identical).
    pub fn take_batch(&mut self, request: u64) -> Option<ReadingBatch> {
        self.batches
            .get_mut(request as usize)
            .and_then(Option::take)
    }

    /// Request `request`'s JSON body (a cheap shared handle: a retry sends the same bytes).
    pub fn body(&self, request: u64) -> Option<Bytes> {
        self.bodies.get(request as usize).cloned()
    }
}

#[derive(Clone, Debug)]
pub struct ScenarioLoad {
    sensor_ids: Arc<Vec<String>>,
    workers: u64,
    requests_per_worker: u64,
    readings_per_request: u64,
    first_read_at_ms: i64,
    message_id_prefix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
struct BenchValues {
    temperature: f64,
    humidity: f64,
}

impl BenchValues {
    /// Cheap, deterministic and varied enough that values do not compress to nothing.
    fn of_reading(index: u64) -> BenchValues {
        BenchValues {
            temperature: 15.0 + (index * 37 % 2000) as f64 / 100.0,
            humidity: 30.0 + (index * 53 % 4000) as f64 / 100.0,
        }
    }
}

impl ScenarioLoad {
    pub fn new(
        sensor_ids: Arc<Vec<String>>,
        workers: usize,
        requests_per_worker: u64,
        readings_per_request: usize,
        now_ms: i64,
        message_id_prefix: String,
    ) -> ScenarioLoad {
        let total_readings = workers as u64 * requests_per_worker * readings_per_request as u64;
        ScenarioLoad {
            sensor_ids,
            workers: workers as u64,
            requests_per_worker,
            readings_per_request: readings_per_request as u64,
            first_read_at_ms: now_ms - READ_AT_MARGIN_MS - total_readings as i64,
            message_id_prefix,
        }
    }

    pub fn readings_per_request(&self) -> usize {
        self.readings_per_request as usize
    }

    /// The workers' requests interleave in measurement time (request r of worker w is the
    /// global request r x workers + w), as concurrent gateways of one fleet do: each sensor's
    /// readings arrive in `read_at` order give or take the workers' lag. Giving each worker a
    /// contiguous block of time instead made a long run's readings arrive hours out of order,
    /// and the act engine rightly reported every one of them as an `out_of_order` finding.
    fn readings_of(&self, worker: usize, request: u64) -> Range<u64> {
        let global_request = request * self.workers + worker as u64;
        let first = global_request * self.readings_per_request;
        first..first + self.readings_per_request
    }

    fn sensor_of(&self, reading: u64) -> &str {
        &self.sensor_ids[(reading % self.sensor_ids.len() as u64) as usize]
    }

    fn message_id_of(&self, reading: u64) -> String {
        format!("{}-{reading}", self.message_id_prefix)
    }

    fn proto_reading_numbered(&self, reading: u64) -> ReadingInput {
        let values = BenchValues::of_reading(reading);
        ReadingInput {
            sensor_id: self.sensor_of(reading).to_string(),
            location_id: String::new(),
            values: HashMap::from([
                ("temperature".to_string(), values.temperature),
                ("humidity".to_string(), values.humidity),
            ]),
            message_id: self.message_id_of(reading),
            read_time: Some(ReadTime::ReadAtMs(self.first_read_at_ms + reading as i64)),
        }
    }

    /// The one reading of a unary request (a scenario with one reading per request).
    pub fn proto_reading(&self, worker: usize, request: u64) -> ReadingInput {
        self.proto_reading_numbered(self.readings_of(worker, request).start)
    }

    pub fn proto_batch(&self, worker: usize, request: u64, batch_id: u64) -> ReadingBatch {
        ReadingBatch {
            readings: self
                .readings_of(worker, request)
                .map(|reading| self.proto_reading_numbered(reading))
                .collect(),
            atomic: false,
            batch_id,
        }
    }

    /// Builds one worker's batched requests before the clock starts, when the scenario is
    /// small enough (see [`PREPARED_READINGS_AT_MOST`]); single-reading requests are not
    /// prepared (building one costs little next to its round trip).
    pub fn prepare(
        &self,
        worker: usize,
        workers: usize,
        grpc: bool,
    ) -> anyhow::Result<PreparedRequests> {
        let total = workers as u64 * self.requests_per_worker * self.readings_per_request;
        if self.readings_per_request < 2 || total > PREPARED_READINGS_AT_MOST {
            return Ok(PreparedRequests::default());
        }
        let requests = 0..self.requests_per_worker;
        Ok(if grpc {
            PreparedRequests {
                batches: requests
                    .map(|request| Some(self.proto_batch(worker, request, request)))
                    .collect(),
                bodies: Vec::new(),
            }
        } else {
            PreparedRequests {
                batches: Vec::new(),
                bodies: requests
                    .map(|request| self.json_body(worker, request, false))
                    .collect::<anyhow::Result<_>>()?,
            }
        })
    }

    /// The body of `POST /api/v1/readings`: one JSON object when `single`, else an array.
    pub fn json_body(&self, worker: usize, request: u64, single: bool) -> anyhow::Result<Bytes> {
        let message_ids: Vec<String> = self
            .readings_of(worker, request)
            .map(|reading| self.message_id_of(reading))
            .collect();
        let readings: Vec<ReadingBody<'_, BenchValues>> = self
            .readings_of(worker, request)
            .zip(&message_ids)
            .map(|(reading, message_id)| ReadingBody {
                sensor_id: self.sensor_of(reading),
                read_at: ReadAt::EpochMillis(self.first_read_at_ms + reading as i64),
                values: BenchValues::of_reading(reading),
                message_id: Some(message_id),
                location_id: None,
            })
            .collect();
        let body = match (single, readings.first()) {
            (true, Some(reading)) => serde_json::to_vec(reading),
            _ => serde_json::to_vec(&readings),
        };
        Ok(Bytes::from(body.context("encoding a bench request")?))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::bench::bench_sensor_id;

    const NOW_MS: i64 = 1_800_000_000_000;

    fn load(workers: usize, requests: u64, per_request: usize) -> ScenarioLoad {
        let sensors = Arc::new((0..7).map(bench_sensor_id).collect());
        ScenarioLoad::new(
            sensors,
            workers,
            requests,
            per_request,
            NOW_MS,
            "m1-3".to_string(),
        )
    }

    #[test]
    fn every_reading_of_a_scenario_has_its_own_message_id_and_time() {
        let load = load(3, 4, 5);
        let mut message_ids = HashSet::new();
        let mut read_times = HashSet::new();
        for worker in 0..3 {
            for request in 0..4 {
                let batch = load.proto_batch(worker, request, request);
                assert_eq!(batch.readings.len(), 5);
                assert_eq!(batch.batch_id, request);
                for reading in batch.readings {
                    assert!(message_ids.insert(reading.message_id));
                    let Some(ReadTime::ReadAtMs(read_at)) = reading.read_time else {
                        panic!("read_at is missing");
                    };
                    assert!(read_at < NOW_MS - READ_AT_MARGIN_MS);
                    read_times.insert(read_at);
                }
            }
        }
        assert_eq!(message_ids.len(), 60);
        assert_eq!(read_times.len(), 60);
    }

    #[test]
    fn the_workers_requests_of_one_round_are_close_in_measurement_time() {
        let (workers, requests, per_request) = (8, 1000, 1000);
        let load = load(workers, requests, per_request);
        let read_at =
            |worker: usize, request: u64| match load.proto_batch(worker, request, 0).readings[0]
                .read_time
            {
                Some(ReadTime::ReadAtMs(at)) => at,
                _ => panic!("read_at is missing"),
            };
        for request in [0, 500, 999] {
            let times: Vec<i64> = (0..workers)
                .map(|worker| read_at(worker, request))
                .collect();
            let spread = times.iter().max().unwrap() - times.iter().min().unwrap();
            assert!(spread < (workers * per_request) as i64, "{spread} ms apart");
        }
    }

    #[test]
    fn readings_go_round_robin_over_the_sensors() {
        let load = load(2, 10, 1);
        assert_eq!(load.proto_reading(0, 0).sensor_id, "bench-00000");
        // Worker 0's request 4 is reading 8 (two workers interleave): sensor 8 % 7.
        assert_eq!(load.proto_reading(0, 4).sensor_id, "bench-00001");
        // Requests interleave over the workers: worker 1's first request is reading 1.
        let reading = load.proto_reading(1, 0);
        assert_eq!(reading.sensor_id, "bench-00001");
        assert_eq!(reading.message_id, "m1-3-1");
        assert_eq!(reading.values.len(), 2);
    }

    #[test]
    fn a_single_http_body_is_an_object_and_a_batch_an_array() {
        let load = load(1, 2, 3);
        let single: serde_json::Value =
            serde_json::from_slice(&load.json_body(0, 1, true).unwrap()).unwrap();
        assert_eq!(single["message_id"], "m1-3-3");
        assert!(single["read_at"].is_i64());
        let batch: serde_json::Value =
            serde_json::from_slice(&load.json_body(0, 1, false).unwrap()).unwrap();
        let items = batch.as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2]["message_id"], "m1-3-5");
    }

    #[test]
    fn prepared_requests_are_the_ones_built_when_sent() {
        let load = load(2, 3, 10);
        let mut batches = load.prepare(1, 2, true).unwrap();
        assert_eq!(batches.take_batch(2), Some(load.proto_batch(1, 2, 2)));
        assert_eq!(
            batches.take_batch(2),
            None,
            "a prepared batch is handed over once"
        );
        let bodies = load.prepare(1, 2, false).unwrap();
        assert_eq!(
            bodies.body(0).unwrap(),
            load.json_body(1, 0, false).unwrap()
        );
        assert_eq!(bodies.body(0), bodies.body(0), "a body is kept for a retry");
        let single = ScenarioLoad::new(Arc::new(vec!["s".into()]), 1, 3, 1, NOW_MS, "p".into());
        assert!(single.prepare(0, 1, false).unwrap().body(0).is_none());
    }

    #[test]
    fn the_same_request_built_twice_is_identical() {
        let load = load(4, 4, 10);
        assert_eq!(load.proto_batch(2, 3, 9), load.proto_batch(2, 3, 9));
        assert_eq!(
            load.json_body(2, 3, false).unwrap(),
            load.json_body(2, 3, false).unwrap()
        );
    }
}
