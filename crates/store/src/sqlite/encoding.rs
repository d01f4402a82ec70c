//! Compact binary encodings of readings: the landing batch (row-wise, one per group commit)
//! and the chunk (column-wise, one sensor's readings at one location).
//!
//! Both are private to this store and versioned by their first byte, so a later layout can
//! read an older one. Integers are LEB128 varints (signed ones zig-zag encoded), floats are
//! their 8 little-endian IEEE bytes (exact round trip), strings are a varint length and bytes.
//!
//! Landing batch, version 1:
//! `1, count, then per reading: id (16 bytes), sensor, location, read_at, message (0 for
//! none, else 1 + length then bytes), value count, then per value: name, f64`.
//! `received_at` is the same for the whole group commit and lives in the row, not here.
//!
//! Landing counter deltas, version 1 (the `counters` column of a landing row, see
//! `counters.rs`): `1, count, then per sensor: sensor, duplicates, rejections` — only sensors
//! with a duplicate or a rejection in that commit; accepted readings are counted from the body.
//!
//! Chunk, version 1 (invariants checked by `debug_assert!` in [`encode_chunk`]):
//! readings sorted by `(read_at, id)`, all of one sensor at one location.
//! `1, count, read_at section, id section, received_at section, message section, metric
//! count, then per metric: name, section length, presence bitmap (count bits), the present
//! values as f64`. Each variable-size section is prefixed with its byte length so a reader
//! after one column (statistics want `read_at` and one metric) skips the rest unread.
//! `read_at` is stored as deltas from the previous reading (never negative: sorted), and
//! `received_at` as zig-zag deltas.

use audrey_model::{LocationId, MessageId, MetricName, Millis, Reading, ReadingId, ReadingValues};

use crate::StoreError;

const BATCH_VERSION: u8 = 1;
const COUNTERS_VERSION: u8 = 1;
const CHUNK_VERSION: u8 = 1;

fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("stored readings are corrupt: {what}"))
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_signed(out: &mut Vec<u8>, value: i64) {
    put_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Reads the encodings back; every read checks bounds and answers a corruption error.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, at: 0 }
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .at
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(corrupt("varint too long"))
    }

    fn signed(&mut self) -> Result<i64, StoreError> {
        let raw = self.varint()?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn length(&mut self) -> Result<usize, StoreError> {
        usize::try_from(self.varint()?).map_err(|_| corrupt("length"))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        let length = self.length()?;
        std::str::from_utf8(self.take(length)?).map_err(|_| corrupt("text"))
    }

    fn float(&mut self) -> Result<f64, StoreError> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| corrupt("float"))?;
        Ok(f64::from_le_bytes(bytes))
    }

    fn id(&mut self) -> Result<ReadingId, StoreError> {
        let bytes: [u8; 16] = self.take(16)?.try_into().map_err(|_| corrupt("id"))?;
        Ok(ReadingId(uuid::Uuid::from_bytes(bytes)))
    }

    fn section(&mut self) -> Result<Cursor<'a>, StoreError> {
        let length = self.length()?;
        Ok(Cursor::new(self.take(length)?))
    }
}

fn parse_field<T>(
    parsed: Result<T, audrey_model::FieldError>,
    what: &str,
) -> Result<T, StoreError> {
    parsed.map_err(|_| corrupt(what))
}

/// One group commit's accepted readings, as the landing row stores them.
pub(crate) fn encode_batch<'r>(
    readings: impl ExactSizeIterator<Item = (&'r ReadingId, &'r audrey_model::ValidReading)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + readings.len() * 96);
    out.push(BATCH_VERSION);
    put_varint(&mut out, readings.len() as u64);
    for (id, reading) in readings {
        out.extend_from_slice(id.as_bytes());
        put_text(&mut out, reading.sensor_id.as_str());
        put_text(&mut out, reading.location_id.as_str());
        put_signed(&mut out, reading.read_at.0);
        match &reading.message_id {
            None => out.push(0),
            Some(message) => {
                put_varint(&mut out, message.as_str().len() as u64 + 1);
                out.extend_from_slice(message.as_str().as_bytes());
            }
        }
        put_varint(&mut out, reading.values.0.len() as u64);
        for (name, value) in &reading.values.0 {
            put_text(&mut out, name.as_str());
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out
}

/// The duplicate and rejected counts of one group commit, as its landing row stores them.
pub(crate) fn encode_counter_deltas<'s>(
    deltas: impl ExactSizeIterator<Item = (&'s str, u64, u64)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + deltas.len() * 16);
    out.push(COUNTERS_VERSION);
    put_varint(&mut out, deltas.len() as u64);
    for (sensor, duplicate, rejected) in deltas {
        put_text(&mut out, sensor);
        put_varint(&mut out, duplicate);
        put_varint(&mut out, rejected);
    }
    out
}

/// Calls `visit(sensor, duplicate, rejected)` for each entry of [`encode_counter_deltas`].
pub(crate) fn for_each_counter_delta(
    bytes: &[u8],
    mut visit: impl FnMut(&str, u64, u64),
) -> Result<(), StoreError> {
    let mut cursor = Cursor::new(bytes);
    if cursor.byte()? != COUNTERS_VERSION {
        return Err(corrupt("unknown landing counters version"));
    }
    for _ in 0..cursor.length()? {
        let sensor = cursor.text()?;
        let duplicate = cursor.varint()?;
        let rejected = cursor.varint()?;
        visit(sensor, duplicate, rejected);
    }
    if cursor.at != bytes.len() {
        return Err(corrupt("trailing bytes after landing counters"));
    }
    Ok(())
}

pub(crate) fn decode_batch(bytes: &[u8], received_at: Millis) -> Result<Vec<Reading>, StoreError> {
    let mut cursor = Cursor::new(bytes);
    if cursor.byte()? != BATCH_VERSION {
        return Err(corrupt("unknown landing batch version"));
    }
    let count = cursor.length()?;
    let mut readings = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let id = cursor.id()?;
        let sensor_id = parse_field(audrey_model::SensorId::parse(cursor.text()?), "sensor")?;
        let location_id = parse_field(LocationId::parse(cursor.text()?), "location")?;
        let read_at = Millis(cursor.signed()?);
        let message_id = match cursor.length()? {
            0 => None,
            length => {
                let text = std::str::from_utf8(cursor.take(length - 1)?)
                    .map_err(|_| corrupt("message id"))?;
                Some(parse_field(MessageId::parse(text), "message id")?)
            }
        };
        let value_count = cursor.length()?;
        let mut values = Vec::with_capacity(value_count.min(64));
        for _ in 0..value_count {
            let name = parse_field(MetricName::parse_interned(cursor.text()?), "metric")?;
            values.push((name, cursor.float()?));
        }
        readings.push(Reading {
            id,
            sensor_id,
            location_id,
            read_at,
            received_at,
            values: ReadingValues(values),
            message_id,
        });
    }
    Ok(readings)
}

/// Packs readings of one sensor at one location, already sorted by `(read_at, id)`.
pub(crate) fn encode_chunk(readings: &[&Reading]) -> Vec<u8> {
    debug_assert!(!readings.is_empty());
    debug_assert!(
        readings
            .windows(2)
            .all(|pair| (pair[0].read_at, pair[0].id) < (pair[1].read_at, pair[1].id)),
        "a chunk is sorted by (read_at, id) without repeats"
    );
    debug_assert!(readings.iter().all(|reading| {
        reading.sensor_id == readings[0].sensor_id && reading.location_id == readings[0].location_id
    }));
    let count = readings.len();
    let mut out = Vec::with_capacity(32 + count * 40);
    out.push(CHUNK_VERSION);
    put_varint(&mut out, count as u64);
    let mut section = Vec::with_capacity(count * 2);
    let mut previous = readings[0].read_at.0;
    put_signed(&mut section, previous);
    for reading in &readings[1..] {
        put_varint(&mut section, (reading.read_at.0 - previous) as u64);
        previous = reading.read_at.0;
    }
    put_varint(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    for reading in readings {
        out.extend_from_slice(reading.id.as_bytes());
    }
    section.clear();
    let mut previous = 0i64;
    for reading in readings {
        put_signed(&mut section, reading.received_at.0.wrapping_sub(previous));
        previous = reading.received_at.0;
    }
    put_varint(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    section.clear();
    for reading in readings {
        match &reading.message_id {
            None => section.push(0),
            Some(message) => {
                put_varint(&mut section, message.as_str().len() as u64 + 1);
                section.extend_from_slice(message.as_str().as_bytes());
            }
        }
    }
    put_varint(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    // Metric columns, in name order (each reading's values are sorted by name).
    let mut names: Vec<&MetricName> = readings
        .iter()
        .flat_map(|reading| reading.values.0.iter().map(|(name, _)| name))
        .collect();
    names.sort_unstable();
    names.dedup();
    put_varint(&mut out, names.len() as u64);
    let bitmap_bytes = count.div_ceil(8);
    for name in names {
        put_text(&mut out, name.as_str());
        section.clear();
        section.resize(bitmap_bytes, 0);
        for (index, reading) in readings.iter().enumerate() {
            if let Some(value) = reading.values.get(name.as_str()) {
                section[index / 8] |= 1 << (index % 8);
                section.extend_from_slice(&value.to_le_bytes());
            }
        }
        put_varint(&mut out, section.len() as u64);
        out.extend_from_slice(&section);
    }
    out
}

/// The parts of a chunk every reader needs: its readings' times.
struct ChunkHead<'a> {
    count: usize,
    read_at: Vec<i64>,
    rest: Cursor<'a>,
}

fn chunk_head(bytes: &[u8]) -> Result<ChunkHead<'_>, StoreError> {
    let mut cursor = Cursor::new(bytes);
    if cursor.byte()? != CHUNK_VERSION {
        return Err(corrupt("unknown chunk version"));
    }
    let count = cursor.length()?;
    let mut section = cursor.section()?;
    let mut read_at = Vec::with_capacity(count.min(1 << 20));
    if count > 0 {
        let mut previous = section.signed()?;
        read_at.push(previous);
        for _ in 1..count {
            previous = previous
                .checked_add(i64::try_from(section.varint()?).map_err(|_| corrupt("read_at"))?)
                .ok_or_else(|| corrupt("read_at"))?;
            read_at.push(previous);
        }
    }
    Ok(ChunkHead {
        count,
        read_at,
        rest: cursor,
    })
}

/// Every reading of a chunk, in `(read_at, id)` order.
pub(crate) fn decode_chunk(
    bytes: &[u8],
    sensor_id: &audrey_model::SensorId,
    location_id: &LocationId,
) -> Result<Vec<Reading>, StoreError> {
    let ChunkHead {
        count,
        read_at,
        rest: mut cursor,
    } = chunk_head(bytes)?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(cursor.id()?);
    }
    let mut received = cursor.section()?;
    let mut messages = cursor.section()?;
    let mut readings = Vec::with_capacity(count);
    let mut previous = 0i64;
    for (index, id) in ids.into_iter().enumerate() {
        previous = previous.wrapping_add(received.signed()?);
        let message_id = match messages.length()? {
            0 => None,
            length => {
                let text = std::str::from_utf8(messages.take(length - 1)?)
                    .map_err(|_| corrupt("message id"))?;
                Some(parse_field(MessageId::parse(text), "message id")?)
            }
        };
        readings.push(Reading {
            id,
            sensor_id: sensor_id.clone(),
            location_id: location_id.clone(),
            read_at: Millis(read_at[index]),
            received_at: Millis(previous),
            values: ReadingValues(Vec::new()),
            message_id,
        });
    }
    let metrics = cursor.length()?;
    for _ in 0..metrics {
        let name = parse_field(MetricName::parse_interned(cursor.text()?), "metric")?;
        let mut column = cursor.section()?;
        let bitmap = column.take(count.div_ceil(8))?;
        for (index, reading) in readings.iter_mut().enumerate() {
            if bitmap[index / 8] & (1 << (index % 8)) != 0 {
                // Columns come in name order, so each reading's values stay sorted by name.
                reading.values.0.push((name.clone(), column.float()?));
            }
        }
    }
    Ok(readings)
}

/// The one reading of a chunk with this id, decoding only its own fields (GetReading).
pub(crate) fn decode_one(
    bytes: &[u8],
    sensor_id: &audrey_model::SensorId,
    location_id: &LocationId,
    wanted: ReadingId,
) -> Result<Option<Reading>, StoreError> {
    let ChunkHead {
        count,
        read_at,
        rest: mut cursor,
    } = chunk_head(bytes)?;
    let ids = cursor.take(count * 16)?;
    let Some(index) = ids
        .chunks_exact(16)
        .position(|id| id == wanted.as_bytes().as_slice())
    else {
        return Ok(None);
    };
    let mut received = cursor.section()?;
    let mut received_at = 0i64;
    for _ in 0..=index {
        received_at = received_at.wrapping_add(received.signed()?);
    }
    let mut messages = cursor.section()?;
    let mut message_id = None;
    for position in 0..=index {
        let length = messages.length()?;
        let text = match length {
            0 => None,
            length => Some(messages.take(length - 1)?),
        };
        if position == index
            && let Some(text) = text
        {
            let text = std::str::from_utf8(text).map_err(|_| corrupt("message id"))?;
            message_id = Some(parse_field(MessageId::parse(text), "message id")?);
        }
    }
    let mut values = Vec::new();
    let metrics = cursor.length()?;
    for _ in 0..metrics {
        let name = cursor.text()?;
        let mut column = cursor.section()?;
        let bitmap = column.take(count.div_ceil(8))?;
        if bitmap[index / 8] & (1 << (index % 8)) == 0 {
            continue;
        }
        // The value's place among the present ones: the set bits before it.
        let before: usize = (0..index)
            .filter(|position| bitmap[position / 8] & (1 << (position % 8)) != 0)
            .count();
        column.take(before * 8)?;
        values.push((
            parse_field(MetricName::parse_interned(name), "metric")?,
            column.float()?,
        ));
    }
    Ok(Some(Reading {
        id: wanted,
        sensor_id: sensor_id.clone(),
        location_id: location_id.clone(),
        read_at: Millis(read_at[index]),
        received_at: Millis(received_at),
        values: ReadingValues(values),
        message_id,
    }))
}

/// The ids and dedup keys of a chunk, in its order (retention removes them with the chunk).
pub(crate) fn chunk_keys(
    bytes: &[u8],
) -> Result<Vec<(i64, ReadingId, Option<String>)>, StoreError> {
    let ChunkHead {
        count,
        read_at,
        rest: mut cursor,
    } = chunk_head(bytes)?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ids.push(cursor.id()?);
    }
    cursor.section()?;
    let mut messages = cursor.section()?;
    let mut keys = Vec::with_capacity(count);
    for (index, id) in ids.into_iter().enumerate() {
        let message = match messages.length()? {
            0 => None,
            length => Some(
                std::str::from_utf8(messages.take(length - 1)?)
                    .map_err(|_| corrupt("message id"))?
                    .to_string(),
            ),
        };
        keys.push((read_at[index], id, message));
    }
    Ok(keys)
}

/// One metric's values in a chunk with their times and ids; what statistics fold.
pub(crate) struct MetricColumn {
    pub read_at: Vec<i64>,
    pub ids: Vec<ReadingId>,
    /// `(index into read_at/ids, value)` for each reading that has the metric.
    pub values: Vec<(usize, f64)>,
}

/// Reads one metric column without decoding messages or other metrics; `None` when no
/// reading of the chunk has the metric. Ids are decoded only when `with_ids`.
pub(crate) fn metric_column(
    bytes: &[u8],
    metric: &str,
    with_ids: bool,
) -> Result<Option<MetricColumn>, StoreError> {
    let ChunkHead {
        count,
        read_at,
        rest: mut cursor,
    } = chunk_head(bytes)?;
    let id_bytes = cursor.take(count * 16)?;
    cursor.section()?;
    cursor.section()?;
    let metrics = cursor.length()?;
    for _ in 0..metrics {
        let name = cursor.text()?;
        let mut column = cursor.section()?;
        if name != metric {
            continue;
        }
        let bitmap = column.take(count.div_ceil(8))?;
        let mut values = Vec::with_capacity(count);
        for index in 0..count {
            if bitmap[index / 8] & (1 << (index % 8)) != 0 {
                values.push((index, column.float()?));
            }
        }
        let ids = if with_ids {
            id_bytes
                .chunks_exact(16)
                .map(|bytes| {
                    uuid::Uuid::from_slice(bytes)
                        .map(ReadingId)
                        .map_err(|_| corrupt("id"))
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        return Ok(Some(MetricColumn {
            read_at,
            ids,
            values,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use audrey_model::{SensorId, ValidReading};

    fn reading(
        read_at: i64,
        received_at: i64,
        message: Option<&str>,
        values: &[(&str, f64)],
    ) -> Reading {
        Reading {
            id: ReadingId(uuid::Uuid::now_v7()),
            sensor_id: SensorId::parse("s-1").unwrap(),
            location_id: LocationId::parse("loc-1").unwrap(),
            read_at: Millis(read_at),
            received_at: Millis(received_at),
            values: ReadingValues(
                values
                    .iter()
                    .map(|(name, value)| (MetricName::parse(name).unwrap(), *value))
                    .collect(),
            ),
            message_id: message.map(|text| MessageId::parse(text).unwrap()),
        }
    }

    #[test]
    fn a_chunk_reads_back_exactly_what_was_packed() {
        let mut readings = vec![
            reading(
                -5,
                1_700_000_000_000,
                Some("m1"),
                &[("humidity", 0.1), ("temperature", -3.25)],
            ),
            reading(1_000, 1_700_000_000_007, None, &[("temperature", f64::MAX)]),
            reading(1_000, 1_699_999_999_000, Some("é"), &[]),
            reading(
                i64::MAX / 4,
                5,
                Some("x"),
                &[("humidity", f64::MIN_POSITIVE)],
            ),
        ];
        readings.sort_by_key(|reading| (reading.read_at, reading.id));
        let refs: Vec<&Reading> = readings.iter().collect();
        let bytes = encode_chunk(&refs);
        let back = decode_chunk(&bytes, &readings[0].sensor_id, &readings[0].location_id).unwrap();
        assert_eq!(back, readings);
        for reading in &readings {
            let one = decode_one(&bytes, &reading.sensor_id, &reading.location_id, reading.id);
            assert_eq!(one.unwrap().as_ref(), Some(reading));
        }
        let absent = ReadingId(uuid::Uuid::now_v7());
        assert_eq!(
            decode_one(
                &bytes,
                &readings[0].sensor_id,
                &readings[0].location_id,
                absent
            )
            .unwrap(),
            None
        );
        let column = metric_column(&bytes, "humidity", true).unwrap().unwrap();
        assert_eq!(column.values, vec![(0, 0.1), (3, f64::MIN_POSITIVE)]);
        assert_eq!(column.ids[3], readings[3].id);
        assert!(metric_column(&bytes, "pressure", false).unwrap().is_none());
        let keys = chunk_keys(&bytes).unwrap();
        assert_eq!(
            keys[2].2.as_deref(),
            readings[2].message_id.as_ref().map(|m| m.as_str())
        );
    }

    #[test]
    fn a_landing_batch_reads_back_exactly_what_was_committed() {
        let readings = [
            reading(17, 0, Some("m1"), &[("a", 1.5), ("b", -0.0)]),
            reading(-17, 0, None, &[]),
        ];
        let valid: Vec<(ReadingId, ValidReading)> = readings
            .iter()
            .map(|reading| {
                (
                    reading.id,
                    ValidReading {
                        sensor_id: reading.sensor_id.clone(),
                        location_id: reading.location_id.clone(),
                        read_at: reading.read_at,
                        values: reading.values.clone(),
                        message_id: reading.message_id.clone(),
                    },
                )
            })
            .collect();
        let bytes = encode_batch(valid.iter().map(|(id, reading)| (id, reading)));
        let back = decode_batch(&bytes, Millis(0)).unwrap();
        assert_eq!(back, readings);
    }

    #[test]
    fn truncated_bytes_are_reported_as_corrupt_not_a_panic() {
        let readings = [reading(1, 2, Some("m"), &[("t", 1.0)])];
        let refs: Vec<&Reading> = readings.iter().collect();
        let bytes = encode_chunk(&refs);
        for end in 0..bytes.len() {
            assert!(
                decode_chunk(
                    &bytes[..end],
                    &readings[0].sensor_id,
                    &readings[0].location_id
                )
                .is_err()
            );
        }
    }
}
