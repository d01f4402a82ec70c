//! The replay cursor file: how far the forwarder has committed, and how far the replay that
//! is in flight reaches. Rewritten in place (36 bytes, one sector) and fsynced.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::segment::Position;

const CURSOR_BYTES: usize = 36;

/// What the file says. `committed ≤ in_flight_until`; frames in `[committed, in_flight_until)`
/// may or may not have been committed by the inner store when the process stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayCursor {
    pub committed: Position,
    pub in_flight_until: Position,
}

/// What opening the file found.
#[derive(Debug, PartialEq, Eq)]
pub enum CursorState {
    /// No file: nothing was ever replayed from these segments.
    Fresh,
    Intact(ReplayCursor),
    /// The file exists but does not check out: every frame must be treated as uncertain.
    Damaged,
}

pub struct CursorFile {
    file: File,
}

impl CursorFile {
    pub fn open(path: &Path) -> io::Result<(CursorFile, CursorState)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let state = if !existed {
            CursorState::Fresh
        } else {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            match decode(&bytes) {
                Some(cursor) => CursorState::Intact(cursor),
                None if bytes.is_empty() => CursorState::Fresh,
                None => CursorState::Damaged,
            }
        };
        Ok((CursorFile { file }, state))
    }

    pub fn write(&mut self, cursor: ReplayCursor) -> io::Result<()> {
        debug_assert!(
            cursor.committed <= cursor.in_flight_until,
            "the in-flight replay starts at the committed position"
        );
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        for value in [
            cursor.committed.segment,
            cursor.committed.offset,
            cursor.in_flight_until.segment,
            cursor.in_flight_until.offset,
        ] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        let checksum = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&bytes)?;
        self.file.set_len(CURSOR_BYTES as u64)?;
        self.file.sync_data()
    }
}

fn decode(bytes: &[u8]) -> Option<ReplayCursor> {
    if bytes.len() != CURSOR_BYTES {
        return None;
    }
    let (body, checksum) = bytes.split_at(32);
    if crc32c::crc32c(body).to_le_bytes() != checksum {
        return None;
    }
    let number = |index: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            body.get(index * 8..index * 8 + 8)?.try_into().ok()?,
        ))
    };
    Some(ReplayCursor {
        committed: Position {
            segment: number(0)?,
            offset: number(1)?,
        },
        in_flight_until: Position {
            segment: number(2)?,
            offset: number(3)?,
        },
    })
}
