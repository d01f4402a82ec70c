//! The walk over chunks that answers a reading list: a k-way merge of overlapping chunks in
//! `(read_at, id)` order, which can be resumed by the next page.
//!
//! Chunks are visited in the query's order of their near edge (oldest first: `min_read_at`
//! ascending; newest first: `max_read_at` descending; ties by chunk number), and each decoded
//! chunk joins a merge as a run (its readings are stored in order). A heap holds each run's
//! next reading; the best one is emitted once the next chunk cannot hold anything before it
//! (its near edge lies beyond it), so the output is exactly ordered although a sensor's
//! chunks overlap when data arrives out of order. The merge holds only readings of chunks
//! that overlap the current position: memory is bounded by that overlap, not by the data.
//!
//! A list of every reading is read page by page, and each page's walk would otherwise
//! decode again every chunk that overlaps the cursor (with 10,000 sensors that is one chunk
//! per sensor). So a page that ends with a cursor leaves its walk behind ([`SavedWalk`]):
//! the decoded readings after the cursor and the last chunk it opened. The page that comes
//! with that cursor and the same filters continues from there, unless a flush or retention
//! changed the chunks in between (the layout generation moved), in which case it walks
//! afresh. A handful of walks are kept, the oldest dropped first.

use std::collections::{BinaryHeap, HashSet, VecDeque};

use rusqlite::types::Value;

use audrey_model::{LocationId, Millis, Reading};

use super::encoding::decode_chunk;
use super::flush::{CHUNK_SPAN_MS, span_start};
use super::memtable::is_after;
use super::readings::parse_chunk_owner;
use crate::{Cursor, Order, ReadingQuery, StoreError};

/// How many paused walks are kept, and the most readings one may hold.
const SAVED_WALKS: usize = 8;
const SAVED_READINGS: usize = 2_000_000;

/// Where a reading ranks in a walk, as a run's head: the heap's top is the best one (next
/// in the query's order). `BinaryHeap` is a max-heap, so the best reading gets the largest
/// rank; oldest first inverts the bits of `read_at` and id (an order-reversing map without
/// overflow). Kept to 32 bytes: a scan over 10,000 sensors sifts through 10,000 of them.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Head {
    read_at: i64,
    id: u128,
    run: u32,
}

impl Head {
    fn of(reading: &Reading, order: Order, run: u32) -> Head {
        let (read_at, id) = (reading.read_at.0, reading.id.0.as_u128());
        match order {
            Order::Newest => Head { read_at, id, run },
            Order::Oldest => Head {
                read_at: !read_at,
                id: !id,
                run,
            },
        }
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Ids are unique, so `run` never decides; it keeps the order total.
        (self.read_at, self.id, self.run).cmp(&(other.read_at, other.id, other.run))
    }
}

/// A k-way merge of runs: each run holds readings already in the query's order (one
/// chunk's readings past the position, or what a page read beyond its end). The heap holds
/// one entry per run, its next reading's rank, so a reading costs one heap step among the
/// open runs and is moved only when it is handed out.
#[derive(Default)]
struct Merge {
    heap: BinaryHeap<Head>,
    runs: Vec<std::vec::IntoIter<Reading>>,
    /// Slots of `runs` that ran out, to be reused.
    free: Vec<usize>,
    /// Readings not handed out yet, over all runs.
    len: usize,
}

impl Merge {
    /// Adds readings that are in the query's order.
    fn push_run(&mut self, readings: Vec<Reading>, order: Order) {
        debug_assert!(
            readings
                .windows(2)
                .all(|pair| Head::of(&pair[0], order, 0) > Head::of(&pair[1], order, 0)),
            "a run is in the query's order"
        );
        if readings.is_empty() {
            return;
        }
        self.len += readings.len();
        let run = match self.free.pop() {
            Some(slot) => {
                self.runs[slot] = readings.into_iter();
                slot
            }
            None => {
                self.runs.push(readings.into_iter());
                self.runs.len() - 1
            }
        };
        let first = &self.runs[run].as_slice()[0];
        // More runs than u32 can count would need more memory than any walk may hold.
        self.heap.push(Head::of(first, order, run as u32));
    }

    /// The best reading, not handed out yet.
    fn peek(&self) -> Option<&Reading> {
        self.runs[self.heap.peek()?.run as usize].as_slice().first()
    }

    fn pop(&mut self, order: Order) -> Option<Reading> {
        let mut head = self.heap.peek_mut()?;
        let slot = head.run as usize;
        let run = &mut self.runs[slot];
        let reading = run.next();
        debug_assert!(reading.is_some(), "a run in the heap is never empty");
        match run.as_slice().first() {
            // The changed head sifts down when `head` goes out of scope.
            Some(next) => *head = Head::of(next, order, head.run),
            None => {
                std::collections::binary_heap::PeekMut::pop(head);
                self.runs[slot] = Vec::new().into_iter();
                self.free.push(slot);
            }
        }
        self.len -= usize::from(reading.is_some());
        reading
    }
}

/// The filters of a list, without its cursor and limit: what a continued walk must share.
#[derive(Clone, Debug, PartialEq)]
struct Shape {
    sensor: Option<audrey_model::SensorId>,
    location: Option<LocationId>,
    near: Option<Vec<LocationId>>,
    from: Option<Millis>,
    to: Option<Millis>,
    order: Order,
}

impl Shape {
    fn of(query: &ReadingQuery, near: Option<&HashSet<LocationId>>) -> Shape {
        Shape {
            sensor: query.sensor.clone(),
            location: query.location.clone(),
            near: near.map(|ids| {
                let mut ids: Vec<LocationId> = ids.iter().cloned().collect();
                ids.sort();
                ids
            }),
            from: query.from,
            to: query.to,
            order: query.order,
        }
    }
}

/// A walk paused at the end of a page.
pub(crate) struct SavedWalk {
    shape: Shape,
    /// The cursor the page handed out: the next page carries it.
    cursor: Cursor,
    generation: u64,
    /// Decoded readings after the cursor, not handed out yet.
    pending: Merge,
    /// The near edge and number of the last chunk opened.
    walked: Option<(i64, i64)>,
}

#[derive(Default)]
pub(crate) struct SavedWalks(VecDeque<SavedWalk>);

impl SavedWalks {
    fn take(&mut self, shape: &Shape, cursor: Cursor, generation: u64) -> Option<SavedWalk> {
        self.0.retain(|walk| walk.generation == generation);
        let index = self
            .0
            .iter()
            .position(|walk| walk.cursor == cursor && walk.shape == *shape)?;
        self.0.remove(index)
    }

    fn keep(&mut self, walk: SavedWalk) {
        if walk.pending.len > SAVED_READINGS {
            return;
        }
        if self.0.len() >= SAVED_WALKS {
            // The oldest paused walk is the least likely to be continued.
            self.0.pop_front();
        }
        self.0.push_back(walk);
    }
}

/// A walk's result: up to `want` readings in order, and what to keep if the page ends with
/// a cursor.
pub(crate) struct Walked {
    pub readings: Vec<Reading>,
    shape: Shape,
    generation: u64,
    order: Order,
    merge: Merge,
    walked: Option<(i64, i64)>,
}

impl Walked {
    /// Keeps the walk for the page that will come with `cursor`. `rest` is what the page
    /// read beyond its last reading (from chunks or the memtable: a reading the next page
    /// also finds in the memtable is merged by id).
    pub fn pause(mut self, cursor: Cursor, rest: Vec<Reading>, saved: &mut SavedWalks) {
        let order = self.order;
        // `rest` is in the query's order, so it is one more run.
        let rest = rest
            .into_iter()
            .filter(|reading| is_after(reading, cursor, order))
            .collect();
        self.merge.push_run(rest, order);
        saved.keep(SavedWalk {
            shape: self.shape,
            cursor,
            generation: self.generation,
            pending: self.merge,
            walked: self.walked,
        });
    }
}

/// The first `want` readings in chunks that match the query, in its order; continues a
/// saved walk when one fits.
pub(crate) fn walk_chunks(
    reader: &rusqlite::Connection,
    query: &ReadingQuery,
    near: Option<&HashSet<LocationId>>,
    want: usize,
    generation: u64,
    saved: &std::sync::Mutex<SavedWalks>,
) -> Result<Walked, StoreError> {
    let shape = Shape::of(query, near);
    let resumed = match query.after {
        Some(cursor) => saved
            .lock()
            .map_err(super::poisoned)?
            .take(&shape, cursor, generation),
        None => None,
    };
    let (mut merge, mut walked) = match resumed {
        Some(walk) => (walk.pending, walk.walked),
        None => (Merge::default(), None),
    };
    let (sql, values, lower, upper) = walk_sql(query, near, walked)?;
    let mut readings = Vec::with_capacity(want.min(1 << 16));
    if lower < upper {
        let mut statement = reader.prepare_cached(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(values))?;
        loop {
            let Some(row) = rows.next()? else { break };
            let chunk: i64 = row.get(0)?;
            let near_edge: i64 = row.get(3)?;
            // Everything merged before this chunk's near edge is final.
            while readings.len() < want
                && let Some(best) = merge.peek()
                && match query.order {
                    Order::Oldest => best.read_at.0 < near_edge,
                    Order::Newest => best.read_at.0 > near_edge,
                }
            {
                if let Some(best) = merge.pop(query.order) {
                    readings.push(best);
                }
            }
            if readings.len() >= want {
                break;
            }
            let (sensor, location) = parse_chunk_owner(
                row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
                row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?,
            )?;
            let body = row.get_ref(4)?.as_blob().map_err(rusqlite::Error::from)?;
            let mut run = decode_chunk(body, &sensor, &location)?;
            run.retain(|reading| {
                reading.read_at >= lower
                    && reading.read_at < upper
                    && query
                        .after
                        .is_none_or(|cursor| is_after(reading, cursor, query.order))
            });
            // A chunk is stored oldest first.
            if query.order == Order::Newest {
                run.reverse();
            }
            merge.push_run(run, query.order);
            walked = Some((near_edge, chunk));
        }
    }
    while readings.len() < want
        && let Some(best) = merge.pop(query.order)
    {
        readings.push(best);
    }
    Ok(Walked {
        readings,
        shape,
        generation,
        order: query.order,
        merge,
        walked,
    })
}

/// The walk's SQL and parameters, and the `read_at` bounds readings must meet.
fn walk_sql(
    query: &ReadingQuery,
    near: Option<&HashSet<LocationId>>,
    walked: Option<(i64, i64)>,
) -> Result<(String, Vec<Value>, Millis, Millis), StoreError> {
    let near_edge = match query.order {
        Order::Oldest => "min_read_at",
        Order::Newest => "max_read_at",
    };
    let mut sql =
        format!("SELECT chunk, sensor_id, location_id, {near_edge}, body FROM chunks WHERE 1 = 1");
    let mut values: Vec<Value> = Vec::new();
    if let Some(locations) = near {
        let ids: Vec<&str> = locations.iter().map(LocationId::as_str).collect();
        // Unary plus: filter by the set, but walk a time index so the walk can stop early.
        sql.push_str(" AND +location_id IN (SELECT value FROM json_each(?))");
        values.push(Value::Text(
            serde_json::to_string(&ids).map_err(|error| StoreError::Internal(error.to_string()))?,
        ));
    }
    if let Some(sensor) = &query.sensor {
        sql.push_str(" AND sensor_id = ?");
        values.push(Value::Text(sensor.to_string()));
    }
    if let Some(location) = &query.location {
        // With a sensor given, its index is the narrower one.
        sql.push_str(if query.sensor.is_some() {
            " AND +location_id = ?"
        } else {
            " AND location_id = ?"
        });
        values.push(Value::Text(location.to_string()));
    }
    // A cursor narrows the time range itself, so each page starts where the last one ended.
    let (mut from, mut to) = (query.from, query.to);
    match (query.after, query.order) {
        (Some(cursor), Order::Oldest) => from = from.max(Some(cursor.read_at)),
        (Some(cursor), Order::Newest) => {
            let through_cursor = Millis(cursor.read_at.0.saturating_add(1));
            to = Some(to.map_or(through_cursor, |to| to.min(through_cursor)));
        }
        (None, _) => {}
    }
    // A chunk lies within one span, so these bounds are exact for overlap and let the walk
    // start at the right place of either time index. Each column gets at most one lower and
    // one upper bound: given two, SQLite seeks its index to the first one written and only
    // filters by the other, and every page of a scan re-walked the index from the span's
    // start up to where the walk had got.
    let mut min_read_at = (None::<i64>, None::<i64>);
    let mut max_read_at = (None::<i64>, None::<i64>);
    if let Some(from) = from {
        max_read_at.0 = Some(from.0);
        min_read_at.0 = Some(span_start(from.0));
    }
    if let Some(to) = to {
        min_read_at.1 = Some(to.0);
        max_read_at.1 = Some(span_start(to.0.saturating_sub(1)).saturating_add(CHUNK_SPAN_MS));
    }
    // A continued walk starts after the last chunk it opened.
    let mut after_walked = None;
    if let Some((edge, chunk)) = walked {
        match query.order {
            Order::Oldest => {
                min_read_at.0 = Some(min_read_at.0.map_or(edge, |low| low.max(edge)));
                after_walked = Some((" AND (min_read_at > ? OR chunk > ?)", edge, chunk));
            }
            Order::Newest => {
                let through = edge.saturating_add(1);
                max_read_at.1 = Some(max_read_at.1.map_or(through, |high| high.min(through)));
                after_walked = Some((" AND (max_read_at < ? OR chunk < ?)", edge, chunk));
            }
        }
    }
    for (column, (low, high)) in [("min_read_at", min_read_at), ("max_read_at", max_read_at)] {
        if let Some(low) = low {
            sql.push_str(&format!(" AND {column} >= ?"));
            values.push(Value::Integer(low));
        }
        if let Some(high) = high {
            sql.push_str(&format!(" AND {column} < ?"));
            values.push(Value::Integer(high));
        }
    }
    if let Some((condition, edge, chunk)) = after_walked {
        sql.push_str(condition);
        values.extend([Value::Integer(edge), Value::Integer(chunk)]);
    }
    sql.push_str(match query.order {
        Order::Oldest => " ORDER BY min_read_at ASC, chunk ASC",
        Order::Newest => " ORDER BY max_read_at DESC, chunk DESC",
    });
    Ok((
        sql,
        values,
        from.unwrap_or(Millis(i64::MIN)),
        to.unwrap_or(Millis(i64::MAX)),
    ))
}
