//! One spool record: an acknowledged append batch in a compact little-endian binary form.
//!
//! ```text
//! flags u8 (bit 0: the inner store may already have committed it)
//! received_at i64
//! readings u32, then per reading:
//!   id [16] | sensor_id str | location_id str | read_at i64 | values u16 (name str, value f64)*
//!   | message_id: u8 0 or 1, then str
//! quarantine u32, then per entry:
//!   received_at i64 | sensor_id: u8 0 or 1, then str | reason str | path str | message str | payload str
//! str = len u32 | UTF-8 bytes
//! ```

use audrey_model::{
    LocationId, MessageId, MetricName, Millis, ReadingId, ReadingValues, SensorId, ValidReading,
};
use audrey_store::QuarantineEntry;

const FLAG_UNCERTAIN: u8 = 1;

/// A decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct SpooledBatch {
    pub received_at: Millis,
    /// The inner store answered an error while committing it, so it may have committed it
    /// anyway; replay checks before sending it again.
    pub uncertain: bool,
    pub readings: Vec<ValidReading>,
    pub ids: Vec<ReadingId>,
    pub quarantine: Vec<QuarantineEntry>,
}

/// Why a payload could not be decoded (only a bug or a disk fault: checksums passed).
#[derive(Debug, thiserror::Error)]
#[error("spool record is malformed: {0}")]
pub struct DecodeError(String);

pub fn encode(
    received_at: Millis,
    uncertain: bool,
    readings: &[ValidReading],
    ids: &[ReadingId],
    quarantine: &[QuarantineEntry],
    out: &mut Vec<u8>,
) {
    debug_assert_eq!(readings.len(), ids.len(), "one id per reading");
    out.push(if uncertain { FLAG_UNCERTAIN } else { 0 });
    out.extend_from_slice(&received_at.0.to_le_bytes());
    out.extend_from_slice(&(readings.len() as u32).to_le_bytes());
    for (reading, id) in readings.iter().zip(ids) {
        out.extend_from_slice(id.as_bytes());
        put_str(out, reading.sensor_id.as_str());
        put_str(out, reading.location_id.as_str());
        out.extend_from_slice(&reading.read_at.0.to_le_bytes());
        out.extend_from_slice(&(reading.values.0.len() as u16).to_le_bytes());
        for (name, value) in &reading.values.0 {
            put_str(out, name.as_str());
            out.extend_from_slice(&value.to_le_bytes());
        }
        put_optional_str(out, reading.message_id.as_ref().map(MessageId::as_str));
    }
    out.extend_from_slice(&(quarantine.len() as u32).to_le_bytes());
    for entry in quarantine {
        out.extend_from_slice(&entry.received_at.0.to_le_bytes());
        put_optional_str(out, entry.sensor_id.as_deref());
        put_str(out, &entry.reason);
        put_str(out, &entry.path);
        put_str(out, &entry.message);
        put_str(out, &entry.payload);
    }
}

/// The received_at of an encoded record, read without decoding the rest.
pub fn received_at_of(payload: &[u8]) -> Option<Millis> {
    let bytes: [u8; 8] = payload.get(1..9)?.try_into().ok()?;
    Some(Millis(i64::from_le_bytes(bytes)))
}

pub fn decode(payload: &[u8]) -> Result<SpooledBatch, DecodeError> {
    let mut reader = Reader { rest: payload };
    let flags = reader.u8()?;
    let received_at = Millis(reader.i64()?);
    let count = reader.u32()? as usize;
    let mut readings = Vec::with_capacity(count.min(payload.len() / 16));
    let mut ids = Vec::with_capacity(count.min(payload.len() / 16));
    for _ in 0..count {
        let id_bytes: [u8; 16] = reader
            .take(16)?
            .try_into()
            .map_err(|_| DecodeError("id".into()))?;
        ids.push(ReadingId(uuid::Uuid::from_bytes(id_bytes)));
        let sensor_id = SensorId::parse(reader.str()?).map_err(field)?;
        let location_id = LocationId::parse(reader.str()?).map_err(field)?;
        let read_at = Millis(reader.i64()?);
        let value_count = reader.u16()? as usize;
        let mut values = Vec::with_capacity(value_count);
        for _ in 0..value_count {
            let name = MetricName::parse_interned(reader.str()?).map_err(field)?;
            values.push((name, reader.f64()?));
        }
        let message_id = match reader.optional_str()? {
            Some(text) => Some(MessageId::parse(text).map_err(field)?),
            None => None,
        };
        readings.push(ValidReading {
            sensor_id,
            location_id,
            read_at,
            values: ReadingValues(values),
            message_id,
        });
    }
    let count = reader.u32()? as usize;
    let mut quarantine = Vec::with_capacity(count.min(payload.len() / 24));
    for _ in 0..count {
        quarantine.push(QuarantineEntry {
            id: 0,
            received_at: Millis(reader.i64()?),
            sensor_id: reader.optional_str()?.map(str::to_string),
            reason: reader.str()?.to_string(),
            path: reader.str()?.to_string(),
            message: reader.str()?.to_string(),
            payload: reader.str()?.to_string(),
        });
    }
    if !reader.rest.is_empty() {
        return Err(DecodeError(format!(
            "{} bytes after the last field",
            reader.rest.len()
        )));
    }
    Ok(SpooledBatch {
        received_at,
        uncertain: flags & FLAG_UNCERTAIN != 0,
        readings,
        ids,
        quarantine,
    })
}

fn field(error: audrey_model::FieldError) -> DecodeError {
    DecodeError(error.to_string())
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_optional_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            put_str(out, text);
        }
        None => out.push(0),
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < count {
            return Err(DecodeError(format!(
                "wanted {count} bytes, {} left",
                self.rest.len()
            )));
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError("short field".into()))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let length = self.u32()? as usize;
        std::str::from_utf8(self.take(length)?).map_err(|error| DecodeError(error.to_string()))
    }

    fn optional_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            other => Err(DecodeError(format!("presence byte {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_batch_reads_back_as_it_was_written() {
        let reading = ValidReading {
            sensor_id: SensorId::parse("th-1").unwrap(),
            location_id: LocationId::parse("hangar").unwrap(),
            read_at: Millis(1_700_000_000_123),
            values: ReadingValues(vec![
                (MetricName::parse("humidity").unwrap(), 40.5),
                (MetricName::parse("temperature").unwrap(), -3.25),
            ]),
            message_id: Some(MessageId::parse("m-1").unwrap()),
        };
        let mut second = reading.clone();
        second.message_id = None;
        let entry = QuarantineEntry {
            id: 0,
            received_at: Millis(5),
            sensor_id: Some("th-1".into()),
            reason: "out_of_range".into(),
            path: "values.temperature".into(),
            message: "too hot".into(),
            payload: "{\"x\": \"é\"}".into(),
        };
        let ids = vec![
            ReadingId(uuid::Uuid::now_v7()),
            ReadingId(uuid::Uuid::now_v7()),
        ];
        let mut out = Vec::new();
        let readings = vec![reading, second];
        encode(
            Millis(42),
            true,
            &readings,
            &ids,
            std::slice::from_ref(&entry),
            &mut out,
        );
        let decoded = decode(&out).unwrap();
        assert_eq!(
            decoded,
            SpooledBatch {
                received_at: Millis(42),
                uncertain: true,
                readings,
                ids,
                quarantine: vec![entry],
            }
        );
        assert_eq!(received_at_of(&out), Some(Millis(42)));
        assert!(decode(&out[..out.len() - 1]).is_err());
    }
}
