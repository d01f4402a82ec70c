//! The segment files: checksummed, length-prefixed frames, appended and fsynced, recovered by
//! cutting whatever does not check out at the tail. Knows nothing of what a frame holds.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Every segment file starts with these 8 bytes and a little-endian u32 format version.
pub const MAGIC: &[u8; 8] = b"AUDSPOOL";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_BYTES: u64 = 12;
/// `len: u32 | crc32c: u32` before every payload.
pub const FRAME_HEADER_BYTES: u64 = 8;
/// No frame is longer than this, whatever the segment size: a length above it is corruption.
pub const MAX_PAYLOAD_BYTES: u64 = 512 * 1024 * 1024;

/// A place in the log: a segment's sequence number and a byte offset inside it. Ordered
/// first by segment, then by offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One frame read back: where it starts, where the next one starts, and its payload.
#[derive(Debug)]
pub struct Frame {
    pub start: Position,
    pub end: Position,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Segment {
    sequence: u64,
    path: PathBuf,
    /// Bytes of intact frames plus the header: where the next frame goes.
    length: u64,
    frames: u64,
}

/// What opening found and repaired.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub frames: u64,
    /// Bytes cut from segment tails because a length or checksum did not check out.
    pub truncated_bytes: u64,
}

/// The segment files of one directory.
pub struct SegmentLog {
    directory: PathBuf,
    max_segment_bytes: u64,
    segments: VecDeque<Segment>,
    /// Open for appending on the last segment, when there is one.
    writer: Option<File>,
    next_sequence: u64,
}

fn segment_path(directory: &Path, sequence: u64) -> PathBuf {
    directory.join(format!("{sequence:020}.segment"))
}

fn frame_checksum(length: u32, payload: &[u8]) -> u32 {
    let checksum = crc32c::crc32c(&length.to_le_bytes());
    crc32c::crc32c_append(checksum, payload)
}

fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

impl SegmentLog {
    /// Opens (creating) the directory, checks every segment and cuts each at its first frame
    /// whose length or checksum does not check out. `first_sequence` is the lowest sequence a
    /// new segment may take (the replay cursor may name segments already deleted).
    pub fn open(
        directory: &Path,
        max_segment_bytes: u64,
        first_sequence: u64,
    ) -> io::Result<(SegmentLog, Recovery)> {
        std::fs::create_dir_all(directory)?;
        let mut sequences = Vec::new();
        for entry in std::fs::read_dir(directory)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(number) = name.strip_suffix(".segment")
                && let Ok(sequence) = number.parse::<u64>()
            {
                sequences.push(sequence);
            }
        }
        sequences.sort_unstable();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        for sequence in sequences {
            let path = segment_path(directory, sequence);
            let (length, frames, file_length) = scan_segment(&path)?;
            if length < HEADER_BYTES {
                // Not even a whole header: the crash came while creating it. Nothing was
                // acknowledged from it.
                tracing::warn!(path = %path.display(), "removing a spool segment with no header");
                std::fs::remove_file(&path)?;
                recovery.truncated_bytes += file_length;
                continue;
            }
            if length < file_length {
                tracing::warn!(
                    path = %path.display(),
                    kept = length,
                    cut = file_length - length,
                    "cutting a torn or corrupt spool tail"
                );
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(length)?;
                file.sync_all()?;
                recovery.truncated_bytes += file_length - length;
            }
            recovery.frames += frames;
            segments.push_back(Segment {
                sequence,
                path,
                length,
                frames,
            });
        }
        recovery.segments = segments.len();
        let next_sequence = segments
            .back()
            .map_or(first_sequence, |last| last.sequence + 1)
            .max(first_sequence)
            .max(1);
        let writer = match segments.back() {
            Some(last) => Some(OpenOptions::new().append(true).open(&last.path)?),
            None => None,
        };
        sync_directory(directory)?;
        Ok((
            SegmentLog {
                directory: directory.to_path_buf(),
                max_segment_bytes,
                segments,
                writer,
                next_sequence,
            },
            recovery,
        ))
    }

    /// The bytes one frame of `payload_bytes` takes on disk.
    pub fn frame_bytes(payload_bytes: usize) -> u64 {
        FRAME_HEADER_BYTES + payload_bytes as u64
    }

    /// Appends one frame and fsyncs it (and the directory when a segment was created) before
    /// returning. Answers where the frame starts and where the next one will.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<(Position, Position)> {
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|length| u64::from(*length) <= MAX_PAYLOAD_BYTES)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "spool record too large"))?;
        let frame_bytes = Self::frame_bytes(payload.len());
        let needs_new = match self.segments.back() {
            None => true,
            // A frame larger than a whole segment still goes alone into a fresh one.
            Some(last) => last.frames > 0 && last.length + frame_bytes > self.max_segment_bytes,
        };
        if needs_new {
            self.create_segment()?;
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the spool has no open segment"))?;
        let last = self
            .segments
            .back_mut()
            .ok_or_else(|| io::Error::other("the spool has no open segment"))?;
        let mut frame = Vec::with_capacity(frame_bytes as usize);
        frame.extend_from_slice(&length.to_le_bytes());
        frame.extend_from_slice(&frame_checksum(length, payload).to_le_bytes());
        frame.extend_from_slice(payload);
        let start = Position {
            segment: last.sequence,
            offset: last.length,
        };
        if let Err(error) = writer.write_all(&frame).and_then(|()| writer.sync_data()) {
            // Whatever part reached the file is cut so the next frame starts clean.
            let _ = writer.set_len(last.length);
            return Err(error);
        }
        last.length += frame_bytes;
        last.frames += 1;
        debug_assert_eq!(
            writer
                .metadata()
                .map(|meta| meta.len())
                .unwrap_or(last.length),
            last.length,
            "the segment file ends where the log thinks it does"
        );
        Ok((
            start,
            Position {
                segment: last.sequence,
                offset: last.length,
            },
        ))
    }

    fn create_segment(&mut self) -> io::Result<()> {
        let sequence = self.next_sequence;
        let path = segment_path(&self.directory, sequence);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let mut header = Vec::with_capacity(HEADER_BYTES as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        file.write_all(&header)?;
        file.sync_all()?;
        sync_directory(&self.directory)?;
        self.next_sequence += 1;
        self.segments.push_back(Segment {
            sequence,
            path,
            length: HEADER_BYTES,
            frames: 0,
        });
        self.writer = Some(file);
        Ok(())
    }

    /// Where the first frame is (or where the next segment's first frame will be).
    pub fn start(&self) -> Position {
        self.segments.front().map_or(
            Position {
                segment: self.next_sequence,
                offset: HEADER_BYTES,
            },
            |first| Position {
                segment: first.sequence,
                offset: HEADER_BYTES,
            },
        )
    }

    /// Where the next appended frame will start if it fits the last segment.
    pub fn end(&self) -> Position {
        self.segments.back().map_or(self.start(), |last| Position {
            segment: last.sequence,
            offset: last.length,
        })
    }

    /// Bytes of every segment file.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.length).sum()
    }

    pub fn frames(&self) -> u64 {
        self.segments.iter().map(|segment| segment.frames).sum()
    }

    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Deletes every segment that lies wholly before `position` (its frames are all
    /// consumed). With `position` at or past the end, deletes them all.
    pub fn delete_before(&mut self, position: Position) -> io::Result<usize> {
        let end = self.end();
        let mut deleted = 0;
        while let Some(first) = self.segments.front() {
            let wholly_before = first.sequence < position.segment
                || (position >= end && first.sequence <= end.segment);
            if !wholly_before {
                break;
            }
            std::fs::remove_file(&first.path)?;
            self.segments.pop_front();
            deleted += 1;
        }
        if self.segments.is_empty() {
            self.writer = None;
        }
        if deleted > 0 {
            sync_directory(&self.directory)?;
        }
        Ok(deleted)
    }

    /// A view of the frames written so far, readable without holding the log.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            segments: self
                .segments
                .iter()
                .map(|segment| (segment.sequence, segment.path.clone(), segment.length))
                .collect(),
        }
    }
}

/// The segments and their lengths at one moment. Frames before those lengths never change
/// (appends only add after them, and only the forwarder deletes), so reading them needs no lock.
#[derive(Clone, Debug)]
pub struct Snapshot {
    segments: Vec<(u64, PathBuf, u64)>,
}

impl Snapshot {
    /// Reads frames from `from` on, stopping after `max_bytes` of payload (at least one frame
    /// is read when there is one) or at the end of the snapshot.
    pub fn read(&self, from: Position, max_bytes: usize) -> io::Result<Vec<Frame>> {
        let mut frames = Vec::new();
        let mut taken = 0usize;
        for (sequence, path, length) in &self.segments {
            if *sequence < from.segment {
                continue;
            }
            let mut offset = if *sequence == from.segment {
                from.offset.max(HEADER_BYTES)
            } else {
                HEADER_BYTES
            };
            if offset >= *length {
                continue;
            }
            let mut file = File::open(path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut reader = io::BufReader::with_capacity(1 << 20, file);
            while offset < *length {
                if taken >= max_bytes && !frames.is_empty() {
                    return Ok(frames);
                }
                let mut header = [0u8; FRAME_HEADER_BYTES as usize];
                reader.read_exact(&mut header)?;
                let (length_bytes, checksum_bytes) = header.split_at(4);
                let payload_length =
                    u32::from_le_bytes(length_bytes.try_into().map_err(io::Error::other)?);
                let checksum =
                    u32::from_le_bytes(checksum_bytes.try_into().map_err(io::Error::other)?);
                let mut payload = vec![0u8; payload_length as usize];
                reader.read_exact(&mut payload)?;
                if frame_checksum(payload_length, &payload) != checksum {
                    // Checked at open and written by us since: only the disk can cause this.
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("spool frame at {}:{offset} fails its checksum", sequence),
                    ));
                }
                let end = offset + FRAME_HEADER_BYTES + u64::from(payload_length);
                debug_assert!(end <= *length, "a frame never reaches past its segment");
                taken += payload.len();
                frames.push(Frame {
                    start: Position {
                        segment: *sequence,
                        offset,
                    },
                    end: Position {
                        segment: *sequence,
                        offset: end,
                    },
                    payload,
                });
                offset = end;
            }
        }
        Ok(frames)
    }
}

/// Reads a segment's frames to find where the intact ones end. Answers (intact length,
/// intact frames, file length); an intact length below the header size means no usable header.
fn scan_segment(path: &Path) -> io::Result<(u64, u64, u64)> {
    let file = File::open(path)?;
    let file_length = file.metadata()?.len();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    let mut header = [0u8; HEADER_BYTES as usize];
    if file_length < HEADER_BYTES || reader.read_exact(&mut header).is_err() {
        return Ok((0, 0, file_length));
    }
    if &header[..8] != MAGIC || header[8..12] != FORMAT_VERSION.to_le_bytes() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not an Audrey spool segment of format {FORMAT_VERSION}",
                path.display()
            ),
        ));
    }
    let mut intact = HEADER_BYTES;
    let mut frames = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut frame_header = [0u8; FRAME_HEADER_BYTES as usize];
        if intact + FRAME_HEADER_BYTES > file_length
            || reader.read_exact(&mut frame_header).is_err()
        {
            break;
        }
        let payload_length = u64::from(u32::from_le_bytes([
            frame_header[0],
            frame_header[1],
            frame_header[2],
            frame_header[3],
        ]));
        let checksum = u32::from_le_bytes([
            frame_header[4],
            frame_header[5],
            frame_header[6],
            frame_header[7],
        ]);
        let end = intact + FRAME_HEADER_BYTES + payload_length;
        if payload_length > MAX_PAYLOAD_BYTES || end > file_length {
            break;
        }
        payload.resize(payload_length as usize, 0);
        if reader.read_exact(&mut payload).is_err()
            || frame_checksum(payload_length as u32, &payload) != checksum
        {
            break;
        }
        intact = end;
        frames += 1;
    }
    Ok((intact, frames, file_length))
}
