//! The in-memory mirror of the landed batches.
//!
//! Every reading in `landing_batches` is also here, found by id (a binary search), by sensor
//! and by dedup key, so queries and duplicate checks never read landing.db. Readings of one
//! group commit share its landing seq, and a flush takes whole batches. Readings leave the
//! memtable only after the flush that packed them into chunks has committed; a query that
//! reads the memtable first and the chunks second therefore never misses a reading (it may
//! see one twice, which the merge removes).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use audrey_model::{LocationId, MessageId, Millis, Reading, ReadingId, SensorId};

use super::counters::FastMap;
use super::dedup::reading_key;
use crate::{Cursor, Order, ReadingQuery};

/// One sensor's landed readings by `(read_at, id)`, each with its landing seq.
type Series = BTreeMap<(Millis, ReadingId), (i64, Arc<Reading>)>;

/// A landed row: its landing seq, its id (kept beside the reading so that a binary search by
/// id touches only this array) and the reading.
type Row = (i64, ReadingId, Arc<Reading>);

#[derive(Default)]
pub(crate) struct Memtable {
    /// In landing order, every reading whose id is above the id of the row before it: ids
    /// are minted in commit order (UUIDv7, monotonic in this process), so this is nearly
    /// every reading, and finding one by id is a binary search here, with no per-reading
    /// index to insert into and remove from.
    rows: VecDeque<Row>,
    /// In landing order, the readings whose id is not above the last of `rows` when they
    /// landed: a replay's assigned ids, or ids minted after the clock stepped back. Found
    /// through `misplaced_ids`.
    misplaced: VecDeque<Row>,
    misplaced_ids: FastMap<ReadingId, Arc<Reading>>,
    // foldhash, not SipHash: these maps take an insert per reading on the commit path, and
    // their keys come from validated input (no DoS concern beyond what any hash map has;
    // foldhash is still randomly seeded per map).
    // Each entry carries its reading's landing seq, so a flush's removal can be one
    // sequential pass over an index instead of a hashed removal per reading.
    /// May still hold readings a flush moved out (seq ≤ `flushed_through`) of the sensors in
    /// `to_purge`; every reader skips those.
    by_sensor: FastMap<SensorId, Series>,
    /// Sensors whose series a flush has not yet cleared of what it moved out. A large flush
    /// touches most sensors, and clearing them all under one write lock held the commit
    /// path for 7-10 ms (10,000 sensors); [`Memtable::purge_step`] clears a slice at a time.
    to_purge: Vec<SensorId>,
    /// Dedup keys by their 64-bit hash (`dedup::key_of`, computed once per reading by the
    /// committer): an integer key, no copies of the two texts. The reading is kept to check
    /// the texts, since two keys may share a hash; the later of two such keys goes to
    /// `colliding`, which is nearly always empty.
    by_message: FastMap<i64, (i64, Arc<Reading>)>,
    colliding: FastMap<(SensorId, MessageId), (i64, ReadingId)>,
    /// When the oldest row in the memtable was received.
    oldest_received: Option<Millis>,
    /// The landing seq of the last batch a flush moved out (0 before the first).
    flushed_through: i64,
}

fn same_key(reading: &Reading, sensor: &str, message: &str) -> bool {
    reading.sensor_id.as_str() == sensor
        && reading
            .message_id
            .as_ref()
            .is_some_and(|id| id.as_str() == message)
}

/// The most rows [`Memtable::with_capacity`] reserves. Reserving the whole limit (session 6)
/// spared the commit path the map's doublings, but a dedup map of millions of mostly empty
/// buckets spreads a small memtable's inserts over ~100 MB: the first unary requests after a
/// start stalled up to 274-321 ms against 48-73 ms with 16,384 rows reserved, and the
/// committer spent more time in page faults (docs/benchmarks.md, session 7).
const RESERVED_AT_MOST: usize = 65_536;

impl Memtable {
    /// Room for up to [`RESERVED_AT_MOST`] landed readings reserved up front; past that the
    /// row array and the dedup map grow by doubling, under the commit path's write lock, once
    /// per size the process reaches (they keep their room after a flush).
    pub fn with_capacity(rows: usize) -> Memtable {
        let rows = rows.min(RESERVED_AT_MOST);
        Memtable {
            rows: VecDeque::with_capacity(rows),
            by_message: FastMap::with_capacity_and_hasher(rows, Default::default()),
            ..Memtable::default()
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len() + self.misplaced.len()
    }

    pub fn oldest_received(&self) -> Option<Millis> {
        self.oldest_received
    }

    /// When the newest row was received: both arrays are in landing order, so it is the
    /// later of their last rows.
    pub fn newest_received(&self) -> Option<Millis> {
        let last = |rows: &VecDeque<Row>| rows.back().map(|(_, _, reading)| reading.received_at);
        last(&self.rows).max(last(&self.misplaced))
    }

    /// Every landed row, in no particular order.
    fn all(&self) -> impl Iterator<Item = &Arc<Reading>> {
        self.rows
            .iter()
            .chain(self.misplaced.iter())
            .map(|(_, _, reading)| reading)
    }

    /// Adds one group commit's readings, in the order their ids were minted. Each comes
    /// with `dedup::key_of` its sensor and message id, when it has a message id.
    pub fn insert_batch(&mut self, seq: i64, readings: Vec<(Reading, Option<i64>)>) {
        // A commit of only duplicates or rejections lands nothing (and may have no seq).
        if readings.is_empty() {
            return;
        }
        debug_assert!(
            self.rows.back().is_none_or(|(last, _, _)| *last <= seq)
                && self
                    .misplaced
                    .back()
                    .is_none_or(|(last, _, _)| *last <= seq),
            "landing seq must not go back (one seq per group commit)"
        );
        let mut landed = Vec::with_capacity(readings.len());
        for (reading, key) in readings {
            let reading = Arc::new(reading);
            if let (Some(key), Some(message)) = (key, &reading.message_id) {
                match self.by_message.entry(key) {
                    std::collections::hash_map::Entry::Vacant(vacant) => {
                        vacant.insert((seq, reading.clone()));
                    }
                    std::collections::hash_map::Entry::Occupied(_) => {
                        self.colliding.insert(
                            (reading.sensor_id.clone(), message.clone()),
                            (seq, reading.id),
                        );
                    }
                }
            }
            self.oldest_received.get_or_insert(reading.received_at);
            landed.push(reading.clone());
            if self
                .rows
                .back()
                .is_none_or(|(_, last, _)| *last < reading.id)
            {
                self.rows.push_back((seq, reading.id, reading));
            } else {
                self.misplaced_ids.insert(reading.id, reading.clone());
                self.misplaced.push_back((seq, reading.id, reading));
            }
        }
        // The sensor index takes one look-up per sensor of the commit, not one per reading:
        // the readings are put in order of where their sensor id's text lives (a registered
        // sensor's readings share its id), which compares no text and hashes nothing.
        landed.sort_unstable_by_key(|reading| reading.sensor_id.as_str().as_ptr() as usize);
        for run in landed
            .chunk_by(|left, right| std::ptr::eq(left.sensor_id.as_str(), right.sensor_id.as_str()))
        {
            let series = self.by_sensor.entry(run[0].sensor_id.clone()).or_default();
            for reading in run {
                series.insert((reading.read_at, reading.id), (seq, reading.clone()));
            }
        }
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
        let count = count.min(self.len());
        if count == 0 {
            return None;
        }
        // The seq of the `count`-th row in landing order, merging the two arrays by seq.
        let (mut in_order, mut out_of_order) = (0, 0);
        let mut last_seq = 0;
        for _ in 0..count {
            let next_in_order = self.rows.get(in_order).map(|(seq, _, _)| *seq);
            let next_out_of_order = self.misplaced.get(out_of_order).map(|(seq, _, _)| *seq);
            match (next_in_order, next_out_of_order) {
                (Some(left), Some(right)) if right < left => {
                    last_seq = right;
                    out_of_order += 1;
                }
                (Some(left), _) => {
                    last_seq = left;
                    in_order += 1;
                }
                (None, Some(right)) => {
                    last_seq = right;
                    out_of_order += 1;
                }
                (None, None) => break,
            }
        }
        let through = |rows: &VecDeque<Row>| rows.partition_point(|(seq, _, _)| *seq <= last_seq);
        let rows = self
            .rows
            .iter()
            .take(through(&self.rows))
            .chain(self.misplaced.iter().take(through(&self.misplaced)))
            .map(|(_, _, reading)| reading.clone())
            .collect();
        Some((last_seq, rows))
    }

    /// Forgets every row with landing seq ≤ `up_to` (they are now in chunks).
    pub fn remove_through(&mut self, up_to: i64) {
        let leaving = self.rows.partition_point(|(seq, _, _)| *seq <= up_to);
        let leaving_misplaced = self.misplaced.partition_point(|(seq, _, _)| *seq <= up_to);
        let mut gone: Vec<Row> = self.misplaced.drain(..leaving_misplaced).collect();
        for (_, id, _) in &gone {
            self.misplaced_ids.remove(id);
        }
        // A flush takes a large share (100,000-400,000 of up to 1,200,000 rows): one pass
        // over each index, keeping what is newer, costs less than a hashed removal (a cache
        // miss or two) per reading, and holds the write lock that the commit path waits for
        // a shorter time. A small share is removed reading by reading.
        if leaving >= self.rows.len() / 8 {
            self.rows.drain(..leaving);
            self.by_message.retain(|_, (seq, _)| *seq > up_to);
            self.to_purge.clear();
            self.to_purge.extend(self.by_sensor.keys().cloned());
        } else {
            gone.extend(self.rows.drain(..leaving));
            for (_, _, reading) in gone {
                self.forget(&reading);
            }
        }
        self.colliding.retain(|_, (seq, _)| *seq > up_to);
        self.oldest_received = match (self.rows.front(), self.misplaced.front()) {
            (Some(left), Some(right)) => Some(left.2.received_at.min(right.2.received_at)),
            (Some(row), None) | (None, Some(row)) => Some(row.2.received_at),
            (None, None) => None,
        };
        self.flushed_through = self.flushed_through.max(up_to);
    }

    /// Clears up to `sensors` series of the readings flushed out; answers whether any are
    /// left to clear.
    pub fn purge_step(&mut self, sensors: usize) -> bool {
        let flushed = self.flushed_through;
        let from = self.to_purge.len().saturating_sub(sensors);
        for sensor in self.to_purge.drain(from..) {
            if let Some(series) = self.by_sensor.get_mut(&sensor) {
                series.retain(|_, (seq, _)| *seq > flushed);
                if series.is_empty() {
                    self.by_sensor.remove(&sensor);
                }
            }
        }
        !self.to_purge.is_empty()
    }

    /// Removes one reading's entries from the sensor and dedup indexes.
    fn forget(&mut self, reading: &Reading) {
        if let Some(key) = reading_key(reading)
            && self
                .by_message
                .get(&key)
                .is_some_and(|(_, landed)| landed.id == reading.id)
        {
            self.by_message.remove(&key);
        }
        if let Some(series) = self.by_sensor.get_mut(&reading.sensor_id) {
            series.remove(&(reading.read_at, reading.id));
            if series.is_empty() {
                self.by_sensor.remove(&reading.sensor_id);
            }
        }
    }

    /// Calls `visit` with every landed dedup key; answers how many.
    pub fn for_each_key(&self, mut visit: impl FnMut(&str, &str)) -> usize {
        let mut count = 0;
        for reading in self.all() {
            if let Some(message) = &reading.message_id {
                visit(reading.sensor_id.as_str(), message.as_str());
                count += 1;
            }
        }
        count
    }

    /// The id landed under the dedup key `(sensor, message)`, whose `dedup::key_of` is `key`.
    pub fn duplicate_of(&self, key: i64, sensor: &str, message: &str) -> Option<ReadingId> {
        if let Some((_, reading)) = self.by_message.get(&key)
            && same_key(reading, sensor, message)
        {
            return Some(reading.id);
        }
        // The map may have lost the hash's first key to a flush while a later one stays.
        if self.colliding.is_empty() {
            return None;
        }
        self.colliding
            .iter()
            .find(|((left, right), _)| left.as_str() == sensor && right.as_str() == message)
            .map(|(_, (_, id))| *id)
    }

    fn find(&self, id: ReadingId) -> Option<&Arc<Reading>> {
        match self.rows.binary_search_by_key(&id, |(_, id, _)| *id) {
            Ok(index) => Some(&self.rows[index].2),
            Err(_) => self.misplaced_ids.get(&id),
        }
    }

    pub fn contains(&self, id: ReadingId) -> bool {
        self.find(id).is_some()
    }

    /// True when some landed reading was read before `at` (retention must reach it).
    pub fn has_read_before(&self, at: Millis) -> bool {
        self.all().any(|reading| reading.read_at < at)
    }

    /// Every landed reading whose id is above `after`, in no order.
    pub fn ids_after(&self, after: Option<ReadingId>) -> Vec<Arc<Reading>> {
        self.all()
            .filter(|reading| after.is_none_or(|after| reading.id > after))
            .cloned()
            .collect()
    }

    pub fn get(&self, id: ReadingId) -> Option<Reading> {
        self.find(id).map(|reading| (**reading).clone())
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
        self.all()
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
                let flushed = self.flushed_through;
                let range = series
                    .range((lower, ReadingId(uuid::Uuid::nil()))..)
                    .filter(move |(_, (seq, _))| *seq > flushed);
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
            // A location filter matches few sensors: picking the page's readings out of the
            // matching ones is cheaper than merging every sensor's series past readings the
            // filter drops.
            None if query.location.is_some() || locations.is_some() => {
                let mut found: Vec<&Reading> = self
                    .all()
                    .map(|reading| &**reading)
                    .filter(|reading| matches(reading))
                    .collect();
                if found.len() > query.limit {
                    found.select_nth_unstable_by(query.limit, |left, right| {
                        in_order(query.order, left, right)
                    });
                    found.truncate(query.limit);
                }
                sort_readings(&mut found, query.order);
                found.into_iter().cloned().collect()
            }
            // Every sensor's series is in `(read_at, id)` order: merge them from where the
            // page starts. Collecting and sorting every matching reading instead made a paged
            // scan of all sensors quadratic in the memtable's size (each page sorted what
            // was left), which showed once the memtable held a few hundred thousand readings.
            None => {
                let nil = ReadingId(uuid::Uuid::nil());
                // `read_at < upper` is `key < (upper, nil)`: nil is the lowest id.
                let (mut first, mut end) = ((lower, nil), (upper, nil));
                let mut after_first = false;
                match (query.order, query.after) {
                    (Order::Oldest, Some(cursor)) if (cursor.read_at, cursor.id) >= first => {
                        (first, after_first) = ((cursor.read_at, cursor.id), true);
                    }
                    (Order::Newest, Some(cursor)) => end = end.min((cursor.read_at, cursor.id)),
                    _ => {}
                }
                if first >= end {
                    return Vec::new();
                }
                let start = if after_first {
                    Bound::Excluded(first)
                } else {
                    Bound::Included(first)
                };
                let flushed = self.flushed_through;
                let ranges = self.by_sensor.values().map(move |series| {
                    series
                        .range((start, Bound::Excluded(end)))
                        .filter(move |(_, (seq, _))| *seq > flushed)
                });
                match query.order {
                    Order::Oldest => merge(ranges, std::cmp::Reverse, &matches, query.limit),
                    Order::Newest => {
                        merge(ranges.map(Iterator::rev), |key| key, &matches, query.limit)
                    }
                }
            }
        }
    }
}

/// The first `limit` readings that `keep` accepts from `series` (each in the order `rank`
/// puts highest first), merged in that order.
fn merge<'a, I, R: Ord>(
    series: impl Iterator<Item = I>,
    rank: impl Fn((Millis, ReadingId)) -> R,
    keep: &dyn Fn(&Reading) -> bool,
    limit: usize,
) -> Vec<Reading>
where
    I: Iterator<Item = (&'a (Millis, ReadingId), &'a (i64, Arc<Reading>))>,
{
    let mut heads: Vec<std::iter::Peekable<I>> = Vec::new();
    let mut heap = std::collections::BinaryHeap::new();
    for one in series {
        let mut one = one.peekable();
        if let Some((key, _)) = one.peek() {
            heap.push((rank(**key), heads.len()));
            heads.push(one);
        }
    }
    let mut found = Vec::new();
    while found.len() < limit {
        let Some((_, index)) = heap.pop() else { break };
        let head = &mut heads[index];
        if let Some((_, (_, reading))) = head.next()
            && keep(reading)
        {
            found.push((**reading).clone());
        }
        if let Some((key, _)) = head.peek() {
            heap.push((rank(**key), index));
        }
    }
    found
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

/// How two readings compare in a query's order.
fn in_order(order: Order, left: &Reading, right: &Reading) -> std::cmp::Ordering {
    match order {
        Order::Oldest => key(left).cmp(&key(right)),
        Order::Newest => key(right).cmp(&key(left)),
    }
}

pub(crate) fn sort_readings<R: AsReading>(readings: &mut [R], order: Order) {
    readings.sort_by(|left, right| in_order(order, left.as_reading(), right.as_reading()));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sqlite::dedup::key_of;
    use audrey_model::ReadingValues;

    fn reading(id: u128, sensor: &str, message: Option<&str>, read_at: i64) -> Reading {
        Reading {
            id: ReadingId(uuid::Uuid::from_u128(id)),
            sensor_id: SensorId::parse(sensor).unwrap(),
            location_id: LocationId::parse("loc-1").unwrap(),
            read_at: Millis(read_at),
            received_at: Millis(1_000 + read_at),
            values: ReadingValues::default(),
            message_id: message.map(|text| MessageId::parse(text).unwrap()),
        }
    }

    fn id(value: u128) -> ReadingId {
        ReadingId(uuid::Uuid::from_u128(value))
    }

    /// Queries across all sensors (the merge of their series; with a location, the pick among
    /// the matching readings) against sorting every reading:
    /// readings of 7 sensors at 2 locations with shared times, and every order, time bound,
    /// location filter, cursor and limit.
    #[test]
    fn queries_across_sensors_merge_to_what_a_full_sort_gives() {
        let mut memtable = Memtable::with_capacity(512);
        let mut all = Vec::new();
        let mut state = 7u64;
        for number in 1..=300u128 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut one = reading(
                number,
                &format!("s{}", (state >> 33) % 7),
                None,
                ((state >> 40) % 60) as i64,
            );
            one.location_id = LocationId::parse(&format!("loc-{}", (state >> 50) % 2)).unwrap();
            all.push(one.clone());
            insert(&mut memtable, number as i64, one);
        }
        let cursors: Vec<Option<Cursor>> = [None, Some(0), Some(17), Some(150), Some(299)]
            .into_iter()
            .map(|at| {
                at.map(|at: usize| Cursor {
                    read_at: all[at].read_at,
                    id: all[at].id,
                })
            })
            .collect();
        for order in [Order::Oldest, Order::Newest] {
            for (from, to) in [
                (None, None),
                (Some(10), None),
                (None, Some(45)),
                (Some(20), Some(21)),
            ] {
                for location in [None, Some(LocationId::parse("loc-1").unwrap())] {
                    for after in &cursors {
                        for limit in [1, 5, 1000] {
                            let query = ReadingQuery {
                                from: from.map(Millis),
                                to: to.map(Millis),
                                location: location.clone(),
                                after: *after,
                                order,
                                limit,
                                ..Default::default()
                            };
                            let mut expected: Vec<Reading> = all
                                .iter()
                                .filter(|one| {
                                    from.is_none_or(|from| one.read_at.0 >= from)
                                        && to.is_none_or(|to| one.read_at.0 < to)
                                        && location.as_ref().is_none_or(|at| *at == one.location_id)
                                        && after.is_none_or(|cursor| is_after(one, cursor, order))
                                })
                                .cloned()
                                .collect();
                            sort_readings(&mut expected, order);
                            expected.truncate(limit);
                            assert_eq!(memtable.query(&query, None), expected, "{query:?}");
                        }
                    }
                }
            }
        }
    }

    fn insert(memtable: &mut Memtable, seq: i64, reading: Reading) {
        let key = reading_key(&reading);
        memtable.insert_batch(seq, vec![(reading, key)]);
    }

    #[test]
    fn an_unbounded_limit_reserves_a_bounded_room() {
        let memtable = Memtable::with_capacity(usize::MAX);
        assert!(memtable.rows.capacity() <= RESERVED_AT_MOST + 1);
        assert!(memtable.by_message.capacity() >= RESERVED_AT_MOST);
    }

    #[test]
    fn readings_whose_ids_arrive_out_of_order_are_found_flushed_and_forgotten() {
        let mut memtable = Memtable::with_capacity(16);
        insert(&mut memtable, 1, reading(50, "s-1", Some("a"), 10));
        // A replay's assigned id, below the last one landed.
        insert(&mut memtable, 1, reading(30, "s-1", Some("b"), 20));
        insert(&mut memtable, 2, reading(70, "s-2", Some("a"), 30));
        insert(&mut memtable, 3, reading(60, "s-2", None, 40));
        insert(&mut memtable, 3, reading(80, "s-1", None, 50));
        assert_eq!(memtable.len(), 5);
        for value in [30, 50, 60, 70, 80] {
            assert!(memtable.contains(id(value)), "id {value}");
            assert_eq!(memtable.get(id(value)).unwrap().id, id(value));
        }
        assert!(!memtable.contains(id(40)));
        assert_eq!(
            memtable.duplicate_of(key_of("s-1", "b"), "s-1", "b"),
            Some(id(30))
        );
        let mut after: Vec<ReadingId> = memtable
            .ids_after(Some(id(50)))
            .iter()
            .map(|reading| reading.id)
            .collect();
        after.sort();
        assert_eq!(after, vec![id(60), id(70), id(80)]);

        // The oldest two rows in landing order reach into seq 1 only, which holds both the
        // in-order and the misplaced reading: the whole batch is taken.
        let (through, oldest) = memtable.oldest(1).unwrap();
        assert_eq!(through, 1);
        let mut taken: Vec<ReadingId> = oldest.iter().map(|reading| reading.id).collect();
        taken.sort();
        assert_eq!(taken, vec![id(30), id(50)]);

        memtable.remove_through(1);
        assert_eq!(memtable.len(), 3);
        assert!(!memtable.contains(id(30)) && !memtable.contains(id(50)));
        assert_eq!(memtable.duplicate_of(key_of("s-1", "b"), "s-1", "b"), None);
        assert_eq!(memtable.duplicate_of(key_of("s-1", "a"), "s-1", "a"), None);
        assert_eq!(
            memtable.duplicate_of(key_of("s-2", "a"), "s-2", "a"),
            Some(id(70))
        );
        let sensor = SensorId::parse("s-1").unwrap();
        let left: Vec<ReadingId> = memtable
            .scan(Some(&sensor), None, None, None)
            .iter()
            .map(|reading| reading.id)
            .collect();
        assert_eq!(left, vec![id(80)]);
        assert_eq!(memtable.oldest_received(), Some(Millis(1_030)));
    }

    /// A large flush leaves the sensors' series to be cleared a slice at a time: in between,
    /// no query may answer a reading the flush moved out (the chunks answer it now).
    #[test]
    fn series_not_yet_purged_never_answer_flushed_readings() {
        let mut memtable = Memtable::with_capacity(64);
        let sensors = ["s-1", "s-2", "s-3"];
        for seq in 1..=6i64 {
            for (index, sensor) in sensors.iter().enumerate() {
                let number = (seq as u128) * 10 + index as u128;
                insert(
                    &mut memtable,
                    seq,
                    reading(number, sensor, None, number as i64),
                );
            }
        }
        let ids_of = |memtable: &Memtable, sensor: Option<&str>, order: Order| -> Vec<u128> {
            let query = ReadingQuery {
                sensor: sensor.map(|sensor| SensorId::parse(sensor).unwrap()),
                order,
                limit: 100,
                ..ReadingQuery::default()
            };
            memtable
                .query(&query, None)
                .iter()
                .map(|reading| reading.id.0.as_u128())
                .collect()
        };
        // Seqs 1-4 leave: a large share, so the series wait for purge steps.
        memtable.remove_through(4);
        assert_eq!(memtable.to_purge.len(), 3);
        let left = |sensor: Option<&str>| -> Vec<u128> {
            let mut left: Vec<u128> = (5..=6u128)
                .flat_map(|seq| (0..3u128).map(move |index| seq * 10 + index))
                .filter(|number| {
                    sensor.is_none_or(|sensor| sensors[(number % 10) as usize] == sensor)
                })
                .collect();
            left.sort();
            left
        };
        for step in 0..3 {
            for sensor in [None, Some("s-1"), Some("s-2"), Some("s-3")] {
                assert_eq!(
                    ids_of(&memtable, sensor, Order::Oldest),
                    left(sensor),
                    "step {step}"
                );
                let mut newest = left(sensor);
                newest.reverse();
                assert_eq!(
                    ids_of(&memtable, sensor, Order::Newest),
                    newest,
                    "step {step}"
                );
            }
            let more = memtable.purge_step(1);
            assert_eq!(more, step < 2, "step {step}");
        }
        assert!(memtable.to_purge.is_empty());
        for series in memtable.by_sensor.values() {
            assert!(series.values().all(|(seq, _)| *seq > 4));
            assert_eq!(series.len(), 2);
        }
        // Everything leaves: the emptied series go too.
        memtable.remove_through(6);
        while memtable.purge_step(2) {}
        assert!(memtable.by_sensor.is_empty());
    }

    #[test]
    fn a_small_share_removed_reading_by_reading_leaves_no_entry_behind() {
        let mut memtable = Memtable::with_capacity(64);
        // Seq 1 holds a misplaced reading (id below seq 1's first); then 39 later rows, so
        // removing seq 1 is a small share and takes the reading-by-reading path.
        insert(&mut memtable, 1, reading(1_000, "s-1", Some("m-0"), 0));
        insert(&mut memtable, 1, reading(500, "s-2", Some("m-x"), 1));
        for number in 1..40u128 {
            let message = format!("m-{number}");
            insert(
                &mut memtable,
                1 + number as i64,
                reading(1_000 + number, "s-1", Some(&message), number as i64),
            );
        }
        memtable.remove_through(1);
        assert_eq!(memtable.len(), 39);
        assert!(!memtable.contains(id(1_000)) && !memtable.contains(id(500)));
        assert_eq!(
            memtable.duplicate_of(key_of("s-1", "m-0"), "s-1", "m-0"),
            None
        );
        assert_eq!(
            memtable.duplicate_of(key_of("s-2", "m-x"), "s-2", "m-x"),
            None
        );
        let gone = SensorId::parse("s-2").unwrap();
        assert!(memtable.scan(Some(&gone), None, None, None).is_empty());
        assert_eq!(memtable.for_each_key(|_, _| {}), 39);
    }

    #[test]
    fn two_keys_sharing_a_hash_are_both_answered_exactly() {
        let mut memtable = Memtable::with_capacity(4);
        // The same integer for two different keys, as two texts may hash alike.
        memtable.insert_batch(1, vec![(reading(10, "s-1", Some("a"), 0), Some(7))]);
        memtable.insert_batch(2, vec![(reading(20, "s-2", Some("b"), 0), Some(7))]);
        assert_eq!(memtable.duplicate_of(7, "s-1", "a"), Some(id(10)));
        assert_eq!(memtable.duplicate_of(7, "s-2", "b"), Some(id(20)));
        assert_eq!(memtable.duplicate_of(7, "s-3", "c"), None);
        memtable.remove_through(1);
        assert_eq!(memtable.duplicate_of(7, "s-1", "a"), None);
        assert_eq!(memtable.duplicate_of(7, "s-2", "b"), Some(id(20)));
        memtable.remove_through(2);
        assert_eq!(memtable.duplicate_of(7, "s-2", "b"), None);
    }

    #[test]
    fn a_commit_of_one_sensor_under_separate_id_copies_forms_one_series() {
        let mut memtable = Memtable::with_capacity(8);
        // Each reading parses its own copy of the sensor id, as after a registry reload.
        let batch = vec![
            reading(1, "s-1", None, 30),
            reading(2, "s-2", None, 10),
            reading(3, "s-1", None, 10),
            reading(4, "s-1", None, 20),
        ];
        memtable.insert_batch(
            1,
            batch.into_iter().map(|reading| (reading, None)).collect(),
        );
        let query = ReadingQuery {
            sensor: Some(SensorId::parse("s-1").unwrap()),
            order: Order::Oldest,
            limit: 10,
            ..ReadingQuery::default()
        };
        let found: Vec<ReadingId> = memtable
            .query(&query, None)
            .iter()
            .map(|reading| reading.id)
            .collect();
        assert_eq!(found, vec![id(3), id(4), id(1)]);
    }

    #[test]
    fn a_commit_that_landed_nothing_changes_nothing() {
        let mut memtable = Memtable::with_capacity(4);
        insert(&mut memtable, 5, reading(1, "s-1", Some("a"), 0));
        // A commit of only duplicates has no landing row: seq 0, no readings.
        memtable.insert_batch(0, Vec::new());
        assert_eq!(memtable.len(), 1);
        insert(&mut memtable, 6, reading(2, "s-1", Some("b"), 1));
        assert_eq!(memtable.oldest(2).unwrap().0, 6);
    }
}
