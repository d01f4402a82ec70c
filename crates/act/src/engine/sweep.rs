//! The periodic quality job. Ingest-time stuck and jump checks compare each reading with the
//! sensor's previous in-order one, so a late reading (measured before the newest one already
//! seen) is only checked for coordinates and far-out-of-order arrival. The sweep re-reads,
//! from the store in `read_at` order, the stretch of each series where late readings landed
//! (widened by the stuck window on both sides) and runs the stuck and jump checks there,
//! publishing only findings that involve a late reading and were not published before.

use audrey_model::{Millis, SensorId};
use audrey_store::{Order, ReadingQuery};

use super::Engine;
use crate::ActError;
use crate::health::{LateReadings, check_series};
use crate::persistence::Changes;
use crate::records::Event;

/// Most readings one sensor's sweep reads from the store.
const MAX_SWEEP_READINGS: usize = 5_000;
/// Most published sweep findings remembered before the memory is reset.
const MAX_SWEPT: usize = 100_000;

impl Engine {
    /// Re-checks the stretches where late readings landed; answers the findings published.
    pub fn sweep_quality(&self) -> Result<usize, ActError> {
        let now = self.clock.now();
        let options = &self.options.health;
        let pending: Vec<(String, LateReadings, i64)> = {
            let mut state = self.lock()?;
            state
                .sensors
                .iter_mut()
                .filter(|(_, health)| !health.late.ids.is_empty())
                .map(|(id, health)| {
                    (
                        id.clone(),
                        std::mem::take(&mut health.late),
                        health.interval_ms,
                    )
                })
                .collect()
        };
        let mut changes = Changes::default();
        let mut published = 0;
        for (sensor_id, mut late, interval_ms) in pending {
            late.ids.sort_unstable();
            late.ids.dedup();
            let (Some(earliest), Some(latest)) = (late.earliest, late.latest) else {
                continue;
            };
            let Ok(sensor) = SensorId::parse(&sensor_id) else {
                continue;
            };
            // Wide enough to hold a whole stuck run on either side of the late readings.
            let margin = interval_ms.saturating_mul(options.stuck_readings.max(2) as i64);
            let query = ReadingQuery {
                sensor: Some(sensor),
                from: Some(Millis(earliest.0.saturating_sub(margin))),
                to: Some(Millis(latest.0.saturating_add(margin).saturating_add(1))),
                order: Order::Oldest,
                limit: MAX_SWEEP_READINGS,
                ..ReadingQuery::default()
            };
            let series = self
                .registry
                .readings(&query)
                .map_err(|error| ActError::Unavailable(format!("reading the series: {error}")))?
                .items;
            let findings = check_series(&series, &late.ids, options);
            let mut state = self.lock()?;
            if state.swept.len() > MAX_SWEPT {
                state.swept.clear();
            }
            for finding in findings {
                let key = format!(
                    "{}|{}|{}",
                    finding.check,
                    finding.metric.as_deref().unwrap_or(""),
                    finding.reading_ids.join(",")
                );
                if !state.swept.insert(key) {
                    continue;
                }
                published += 1;
                changes.events.push(Event::new(
                    "quality.finding",
                    now,
                    Some(&sensor_id),
                    serde_json::json!({
                        "check": finding.check,
                        "metric": finding.metric,
                        "detail": finding.detail,
                        "reading_ids": finding.reading_ids,
                        "source": "sweep",
                    }),
                ));
            }
        }
        if !changes.events.is_empty() {
            let state = self.lock()?;
            super::finish_step(&state, &mut changes, now);
            drop(state);
            self.commit(&changes)?;
        }
        Ok(published)
    }
}
