//! Per-sensor health and quality tracking: what the engine remembers about each sensor
//! between readings, and the pure decisions made from it (status, quality findings).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use audrey_model::{MetricName, Millis, Reading, ReadingId};

use crate::records::HealthStatus;

/// Health and quality thresholds.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Offline after `offline_factor` × the expected interval without a reading.
    pub offline_factor: u32,
    /// Used when a sensor declares no expected interval.
    pub default_interval_seconds: u32,
    /// How many recent outcomes (accepted or rejected readings) decide "faulty".
    pub faulty_window: usize,
    /// Faulty when the rejected share of the window is above this.
    pub faulty_rejected_share: f64,
    /// Faulty when this many readings of the window had a quality finding.
    pub faulty_findings: usize,
    /// A value unchanged for this many consecutive readings is "stuck".
    pub stuck_readings: usize,
    /// Largest allowed change between consecutive readings, per metric name.
    pub jump_steps: HashMap<String, f64>,
    /// A reading measured this long before the sensor's newest is "far out of order".
    pub out_of_order_ms: i64,
    /// How often the periodic quality job re-checks, in `read_at` order from the store, the
    /// stretches of series where late (out-of-order) readings landed.
    pub quality_interval: std::time::Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            offline_factor: 3,
            default_interval_seconds: 60,
            faulty_window: 20,
            faulty_rejected_share: 0.5,
            faulty_findings: 3,
            stuck_readings: 10,
            jump_steps: HashMap::new(),
            out_of_order_ms: 3_600_000,
            quality_interval: std::time::Duration::from_secs(60),
        }
    }
}

/// What the stuck and jump checks remember of one metric. Ids are kept as [`ReadingId`]s
/// (16 bytes, no allocation) and turned into text only when a finding reports them: this is
/// done for every metric of every accepted reading.
#[derive(Debug)]
struct MetricTrack {
    name: MetricName,
    last_value: f64,
    last_reading: Option<ReadingId>,
    /// Ids of the readings in the current run of one unchanged value.
    run: Vec<ReadingId>,
    stuck_reported: bool,
}

fn texts(ids: &[ReadingId]) -> Vec<String> {
    ids.iter().map(|id| id.0.to_string()).collect()
}

/// One quality problem: the check that found it and the readings involved.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub check: &'static str,
    pub metric: Option<String>,
    pub detail: String,
    pub reading_ids: Vec<String>,
}

#[derive(Debug)]
pub struct SensorHealth {
    pub status: Option<HealthStatus>,
    /// Engine-clock time the last reading was taken in.
    pub last_seen: Millis,
    pub newest_read_at: Option<Millis>,
    pub interval_ms: i64,
    /// Recent readings: (rejected, had a quality finding).
    window: VecDeque<(bool, bool)>,
    /// One entry per metric name seen in order: a sensor sends a handful, so a linear search
    /// by name beats hashing it.
    metrics: Vec<MetricTrack>,
    /// Late readings since the last quality sweep: their ids and the read_at span they cover.
    /// Ingest-time stuck/jump checks see only in-order readings; the sweep re-checks these.
    pub(crate) late: LateReadings,
}

/// Readings that arrived after a newer one of the same sensor, waiting for the quality sweep.
#[derive(Debug, Default)]
pub(crate) struct LateReadings {
    /// In arrival order (a push per late reading, no hashing); the sweep sorts them.
    pub ids: Vec<ReadingId>,
    pub earliest: Option<Millis>,
    pub latest: Option<Millis>,
}

/// Most late reading ids remembered per sensor between sweeps.
const MAX_LATE_IDS: usize = 10_000;

impl SensorHealth {
    pub fn new(
        status: Option<HealthStatus>,
        last_seen: Millis,
        interval_seconds: u32,
    ) -> SensorHealth {
        SensorHealth {
            status,
            last_seen,
            newest_read_at: None,
            interval_ms: i64::from(interval_seconds.max(1)) * 1000,
            window: VecDeque::new(),
            metrics: Vec::new(),
            late: LateReadings::default(),
        }
    }

    fn remember(&mut self, rejected: bool, finding: bool, options: &HealthOptions) {
        self.window.push_back((rejected, finding));
        while self.window.len() > options.faulty_window.max(1) {
            self.window.pop_front();
        }
    }

    pub fn record_rejection(&mut self, now: Millis, options: &HealthOptions) {
        self.last_seen = now;
        self.remember(true, false, options);
    }

    /// Runs the quality checks on an accepted reading and remembers it.
    pub fn record_reading(
        &mut self,
        reading: &Reading,
        gps_sensor: bool,
        now: Millis,
        options: &HealthOptions,
    ) -> Vec<Finding> {
        let id = reading.id;
        let mut findings = Vec::new();
        if let Some(newest) = self.newest_read_at
            && newest.0 - reading.read_at.0 > options.out_of_order_ms
        {
            findings.push(Finding {
                check: "out_of_order",
                metric: None,
                detail: format!(
                    "measured {} ms before the newest reading of this sensor",
                    newest.0 - reading.read_at.0
                ),
                reading_ids: texts(&[id]),
            });
        }
        let in_order = self
            .newest_read_at
            .is_none_or(|newest| reading.read_at >= newest);
        for (metric, value) in &reading.values.0 {
            let name = metric.as_str();
            let limit = match name {
                "latitude" | "lat" => Some(90.0),
                "longitude" | "lon" | "lng" if gps_sensor || name == "longitude" => Some(180.0),
                _ => None,
            };
            if let Some(limit) = limit
                && !(-limit..=limit).contains(value)
            {
                findings.push(Finding {
                    check: "coordinates_out_of_range",
                    metric: Some(name.to_string()),
                    detail: format!("{value} is outside [-{limit}, {limit}]"),
                    reading_ids: texts(&[id]),
                });
            }
            // Stuck and jump compare consecutive readings, so only in-order ones feed them.
            if !in_order {
                continue;
            }
            let track = match self
                .metrics
                .iter()
                .position(|track| track.name.as_str() == name)
            {
                Some(index) => &mut self.metrics[index],
                None => {
                    self.metrics.push(MetricTrack {
                        name: metric.clone(),
                        last_value: 0.0,
                        last_reading: None,
                        run: Vec::new(),
                        stuck_reported: false,
                    });
                    let last = self.metrics.len() - 1;
                    &mut self.metrics[last]
                }
            };
            if let Some(last_reading) = track.last_reading {
                if let Some(step) = options.jump_steps.get(name)
                    && (value - track.last_value).abs() > *step
                {
                    findings.push(Finding {
                        check: "jump",
                        metric: Some(name.to_string()),
                        detail: format!(
                            "changed by {} (allowed step {step})",
                            value - track.last_value
                        ),
                        reading_ids: texts(&[last_reading, id]),
                    });
                }
                if *value != track.last_value {
                    track.run.clear();
                    track.stuck_reported = false;
                }
            }
            track.run.push(id);
            if track.run.len() >= options.stuck_readings.max(2) && !track.stuck_reported {
                track.stuck_reported = true;
                findings.push(Finding {
                    check: "stuck_value",
                    metric: Some(name.to_string()),
                    detail: format!("{value} for {} consecutive readings", track.run.len()),
                    reading_ids: texts(&track.run),
                });
                track.run.clear();
            }
            if track.stuck_reported {
                // Keep the run counting without holding every id of a long run.
                track.run.truncate(1);
            }
            track.last_value = *value;
            track.last_reading = Some(id);
        }
        if in_order {
            self.newest_read_at = Some(reading.read_at);
        } else if self.late.ids.len() < MAX_LATE_IDS {
            self.late.ids.push(id);
            self.late.earliest = Some(
                self.late
                    .earliest
                    .map_or(reading.read_at, |at| at.min(reading.read_at)),
            );
            self.late.latest = Some(
                self.late
                    .latest
                    .map_or(reading.read_at, |at| at.max(reading.read_at)),
            );
        }
        self.last_seen = now;
        self.remember(false, !findings.is_empty(), options);
        findings
    }

    /// The status the recent window asks for (never decides decommissioned or offline), and
    /// why. The reason is text only when the status is faulty: this runs for every reading,
    /// and the common answer needs no allocation.
    pub fn fitness(&self, options: &HealthOptions) -> (HealthStatus, Cow<'static, str>) {
        let total = self.window.len();
        let rejected = self.window.iter().filter(|(rejected, _)| *rejected).count();
        let findings = self.window.iter().filter(|(_, finding)| *finding).count();
        if total >= 5 && rejected as f64 / total as f64 > options.faulty_rejected_share {
            return (
                HealthStatus::Faulty,
                Cow::Owned(format!(
                    "{rejected} of the last {total} readings were rejected"
                )),
            );
        }
        if findings >= options.faulty_findings.max(1) {
            return (
                HealthStatus::Faulty,
                Cow::Owned(format!(
                    "{findings} of the last {total} readings failed quality checks"
                )),
            );
        }
        (HealthStatus::Online, Cow::Borrowed("readings arrive"))
    }

    pub fn is_silent(&self, now: Millis, options: &HealthOptions) -> bool {
        now.0 - self.last_seen.0 > self.interval_ms * i64::from(options.offline_factor)
    }
}

/// The stuck and jump checks over a stored series in `read_at` order, reporting only findings
/// that involve at least one of the `late` readings (the in-order ones were checked on ingest).
/// `late` must be sorted.
pub(crate) fn check_series(
    series: &[Reading],
    late: &[ReadingId],
    options: &HealthOptions,
) -> Vec<Finding> {
    let mut metrics: Vec<&str> = Vec::new();
    for reading in series {
        for (name, _) in &reading.values.0 {
            if !metrics.contains(&name.as_str()) {
                metrics.push(name.as_str());
            }
        }
    }
    debug_assert!(late.is_sorted(), "late reading ids must be sorted");
    let is_late = |id: &ReadingId| late.binary_search(id).is_ok();
    let mut findings = Vec::new();
    for metric in metrics {
        let points: Vec<(ReadingId, f64)> = series
            .iter()
            .filter_map(|reading| {
                reading
                    .values
                    .0
                    .iter()
                    .find(|(name, _)| name.as_str() == metric)
                    .map(|(_, value)| (reading.id, *value))
            })
            .collect();
        if let Some(step) = options.jump_steps.get(metric) {
            for pair in points.windows(2) {
                let ((before, a), (after, b)) = (&pair[0], &pair[1]);
                if (b - a).abs() > *step && (is_late(before) || is_late(after)) {
                    findings.push(Finding {
                        check: "jump",
                        metric: Some(metric.to_string()),
                        detail: format!(
                            "changed by {} (allowed step {step}), found in read_at order",
                            b - a
                        ),
                        reading_ids: texts(&[*before, *after]),
                    });
                }
            }
        }
        let need = options.stuck_readings.max(2);
        let mut start = 0;
        while start < points.len() {
            let mut end = start + 1;
            while end < points.len() && points[end].1 == points[start].1 {
                end += 1;
            }
            let run = &points[start..end];
            if run.len() >= need && run.iter().any(|(id, _)| is_late(id)) {
                findings.push(Finding {
                    check: "stuck_value",
                    metric: Some(metric.to_string()),
                    detail: format!(
                        "{} for {} consecutive readings, found in read_at order",
                        run[0].1,
                        run.len()
                    ),
                    reading_ids: run.iter().map(|(id, _)| id.0.to_string()).collect(),
                });
            }
            start = end;
        }
    }
    findings
}
