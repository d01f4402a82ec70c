//! The in-memory mirror of the landed batches.
//!
//! Every reading in `landing_batches` is also here, indexed by id, by sensor and by dedup
//! key, so queries and duplicate checks never read landing.db. Readings of one group commit
//! share its landing seq, and a flush takes whole batches. Readings leave the memtable only
//! after the flush that packed them into chunks has committed; a query that reads the
//! memtable first and the chunks second therefore never misses a reading (it may see one
//! twice, which the merge removes).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use audrey_model::{LocationId, MessageId, Millis, Reading, ReadingId, SensorId};

use super::counters::FastMap;
use crate::{Cursor, Order, ReadingQuery};

/// One sensor's landed readings by `(read_at, id)`, each with its landing seq.
type Series = BTreeMap<(Millis, ReadingId), (i64, Arc<Reading>)>;

#[derive(Default)]
pub(crate) struct Memtable {
    /// In landing order: `(landing seq, reading)`.
    rows: VecDeque<(i64, Arc<Reading>)>,
    // foldhash, not SipHash: these maps take three inserts and three removals per reading on
    // the commit and flush paths, and their keys come from validated input (no DoS concern
    // beyond what any hash map has; foldhash is still randomly seeded per map).
    // Each entry carries its reading's landing seq, so a flush's removal can be one
    // sequential pass over an index instead of a hashed removal per reading.
    by_id: FastMap<ReadingId, (i64, Arc<Reading>)>,
    by_sensor: FastMap<SensorId, Series>,
    by_message: FastMap<(SensorId, MessageId), (i64, ReadingId)>,
    /// When the oldest row in the memtable was received.
    oldest_received: Option<Millis>,
    /// The landing seq of the last batch a flush moved out (0 before the first).
    flushed_through: i64,
}

impl Memtable {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn oldest_received(&self) -> Option<Millis> {
        self.oldest_received
    }

    pub fn insert(&mut self, seq: i64, reading: Reading) {
        debug_assert!(
            self.rows.back().is_none_or(|(last, _)| *last <= seq),
            "landing seq must not go back (one seq per group commit)"
        );
        let reading = Arc::new(reading);
        if let Some(message) = &reading.message_id {
            self.by_message.insert(
                (reading.sensor_id.clone(), message.clone()),
                (seq, reading.id),
            );
        }
        self.by_id.insert(reading.id, (seq, reading.clone()));
        self.by_sensor
            .entry(reading.sensor_id.clone())
            .or_default()
            .insert((reading.read_at, reading.id), (seq, reading.clone()));
        self.oldest_received.get_or_insert(reading.received_at);
        self.rows.push_back((seq, reading));
    }

    /// The landing seq of the last batch flushed out: every row still here has a larger one.
    pub fn flushed_through(&self) -> i64 {
        self.flushed_through
    }

    /// Starts the seq count after a reopen, where earlier batches were flushed before.
    pub fn set_flushed_through(&mut self, seq: i64) {
        self.flushed_through = self.flushed_through.max(seq);
    }

    /// The oldest `count` rows, extended to the end of the last group commit they reach (a
    /// landing row holds a whole batch and is deleted whole), and the seq of that commit.
    pub fn oldest(&self, count: usize) -> Option<(i64, Vec<Arc<Reading>>)> {
        let mut count = count.min(self.rows.len());
        if count == 0 {
            return None;
        }
        let last_seq = self.rows[count - 1].0;
        while count < self.rows.len() && self.rows[count].0 == last_seq {
            count += 1;
        }
        let rows = self
            .rows
            .iter()
            .take(count)
            .map(|(_, reading)| reading.clone())
            .collect();
        Some((self.rows[count - 1].0, rows))
    }

    /// Forgets every row with landing seq ≤ `up_to` (they are now in chunks).
    pub fn remove_through(&mut self, up_to: i64) {
        let leaving = self.rows.partition_point(|(seq, _)| *seq <= up_to);
        // A flush takes a large share (100,000-400,000 of up to 1,200,000 rows): one pass
        // over each index, keeping what is newer, costs less than a hashed removal (a cache
        // miss or three) per reading, and holds the write lock that the commit path waits for
        // a shorter time. A small share is removed reading by reading.
        if leaving >= self.rows.len() / 8 {
            self.rows.drain(..leaving);
            self.by_id.retain(|_, (seq, _)| *seq > up_to);
            self.by_message.retain(|_, (seq, _)| *seq > up_to);
            self.by_sensor.retain(|_, series| {
                series.retain(|_, (seq, _)| *seq > up_to);
                !series.is_empty()
            });
            self.oldest_received = self.rows.front().map(|(_, reading)| reading.received_at);
            self.flushed_through = self.flushed_through.max(up_to);
            return;
        }
        while let Some((seq, _)) = self.rows.front() {
            if *seq > up_to {
                break;
            }
            let Some((_, reading)) = self.rows.pop_front() else {
                break;
            };
            self.by_id.remove(&reading.id);
            if let Some(message) = &reading.message_id {
                self.by_message
                    .remove(&(reading.sensor_id.clone(), message.clone()));
            }
            if let Some(series) = self.by_sensor.get_mut(&reading.sensor_id) {
                series.remove(&(reading.read_at, reading.id));
                if series.is_empty() {
                    self.by_sensor.remove(&reading.sensor_id);
                }
            }
        }
        self.oldest_received = self.rows.front().map(|(_, reading)| reading.received_at);
        self.flushed_through = self.flushed_through.max(up_to);
    }

    /// Calls `visit` with every landed dedup key; answers how many.
    pub fn for_each_key(&self, mut visit: impl FnMut(&str, &str)) -> usize {
        for (sensor, message) in self.by_message.keys() {
            visit(sensor.as_str(), message.as_str());
        }
        self.by_message.len()
    }

    pub fn duplicate_of(&self, key: &(SensorId, MessageId)) -> Option<ReadingId> {
        self.by_message.get(key).map(|(_, id)| *id)
    }

    pub fn contains(&self, id: ReadingId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// True when some landed reading was read before `at` (retention must reach it).
    pub fn has_read_before(&self, at: Millis) -> bool {
        self.rows.iter().any(|(_, reading)| reading.read_at < at)
    }

    /// Every landed reading whose id is above `after`, in no order.
    pub fn ids_after(&self, after: Option<ReadingId>) -> Vec<Arc<Reading>> {
        self.rows
            .iter()
            .map(|(_, reading)| reading)
            .filter(|reading| after.is_none_or(|after| reading.id > after))
            .cloned()
            .collect()
    }

    pub fn get(&self, id: ReadingId) -> Option<Reading> {
        self.by_id.get(&id).map(|(_, reading)| (**reading).clone())
    }

    /// Every row with `from <= read_at < to` of the sensor and location given, in no order.
    pub fn scan(
        &self,
        sensor: Option<&SensorId>,
        location: Option<&LocationId>,
        from: Option<Millis>,
        to: Option<Millis>,
    ) -> Vec<Arc<Reading>> {
        let lower = from.unwrap_or(Millis(i64::MIN));
        let upper = to.unwrap_or(Millis(i64::MAX));
        self.rows
            .iter()
            .map(|(_, reading)| reading)
            .filter(|reading| {
                reading.read_at >= lower
                    && reading.read_at < upper
                    && sensor.is_none_or(|sensor| *sensor == reading.sensor_id)
                    && location.is_none_or(|location| *location == reading.location_id)
            })
            .cloned()
            .collect()
    }

    /// The first `query.limit` matching rows in the query's order, only at `locations` when
    /// given (a radius filter resolved to location ids).
    pub fn query(
        &self,
        query: &ReadingQuery,
        locations: Option<&HashSet<LocationId>>,
    ) -> Vec<Reading> {
        let lower = query.from.unwrap_or(Millis(i64::MIN));
        let upper = query.to.unwrap_or(Millis(i64::MAX));
        let matches = |reading: &Reading| {
            reading.read_at >= lower
                && reading.read_at < upper
                && query
                    .location
                    .as_ref()
                    .is_none_or(|location| *location == reading.location_id)
                && query
                    .after
                    .is_none_or(|cursor| is_after(reading, cursor, query.order))
                && locations.is_none_or(|locations| locations.contains(&reading.location_id))
        };
        match &query.sensor {
            Some(sensor) => {
                let Some(series) = self.by_sensor.get(sensor) else {
                    return Vec::new();
                };
                let range = series.range((lower, ReadingId(uuid::Uuid::nil()))..);
                let take = |iter: &mut dyn Iterator<Item = &Arc<Reading>>| {
                    iter.filter(|reading| matches(reading))
                        .take(query.limit)
                        .map(|reading| (**reading).clone())
                        .collect()
                };
                match query.order {
                    Order::Oldest => take(&mut range.map(|(_, (_, reading))| reading)),
                    Order::Newest => take(&mut range.rev().map(|(_, (_, reading))| reading)),
                }
            }
            None => {
                let mut found: Vec<&Reading> = self
                    .rows
                    .iter()
                    .map(|(_, reading)| &**reading)
                    .filter(|reading| matches(reading))
                    .collect();
                sort_readings(&mut found, query.order);
                found.into_iter().take(query.limit).cloned().collect()
            }
        }
    }
}

fn key(reading: &Reading) -> (Millis, ReadingId) {
    (reading.read_at, reading.id)
}

pub(crate) fn is_after(reading: &Reading, cursor: Cursor, order: Order) -> bool {
    match order {
        Order::Oldest => key(reading) > (cursor.read_at, cursor.id),
        Order::Newest => key(reading) < (cursor.read_at, cursor.id),
    }
}

pub(crate) fn sort_readings<R: AsReading>(readings: &mut [R], order: Order) {
    match order {
        Order::Oldest => readings.sort_by_key(|reading| key(reading.as_reading())),
        Order::Newest => {
            readings.sort_by_key(|reading| std::cmp::Reverse(key(reading.as_reading())))
        }
    }
}

pub(crate) trait AsReading {
    fn as_reading(&self) -> &Reading;
}

impl AsReading for Reading {
    fn as_reading(&self) -> &Reading {
        self
    }
}

impl AsReading for &Reading {
    fn as_reading(&self) -> &Reading {
        self
    }
}
