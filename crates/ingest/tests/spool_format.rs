//! Property tests of the spool's segment format against a simple model (a list of payloads):
//! whatever a crash or a damaged tail leaves, reopening recovers exactly the intact prefix, in
//! order, and appending afterwards works.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use audrey_ingest::spool::{Position, SegmentLog};
use proptest::prelude::*;

/// Where the log put each frame of the model.
struct Written {
    start: Position,
    end: Position,
}

fn segment_files(directory: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "segment"))
        .collect();
    files.sort();
    files
}

fn sequence_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

fn read_all(log: &SegmentLog) -> Vec<Vec<u8>> {
    log.snapshot()
        .read(log.start(), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|frame| frame.payload)
        .collect()
}

fn write(log: &mut SegmentLog, payloads: &[Vec<u8>]) -> Vec<Written> {
    payloads
        .iter()
        .map(|payload| {
            let (start, end) = log.append(payload).unwrap();
            Written { start, end }
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Damage {
    /// Cut the byte stream (all segments laid end to end) at this fraction of its length and
    /// remove every later segment: a crash while appending.
    Truncate(f64),
    /// Change one byte of the last segment past its header, at this fraction of its frames.
    Flip(f64, u8),
}

fn damage_strategy() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0f64..=1.0).prop_map(Damage::Truncate),
        ((0.0f64..1.0), 1u8..=255).prop_map(|(at, xor)| Damage::Flip(at, xor)),
    ]
}

/// Applies the damage and answers how many of the written frames are intact afterwards.
fn apply(directory: &Path, written: &[Written], damage: &Damage) -> usize {
    let files = segment_files(directory);
    match damage {
        Damage::Truncate(fraction) => {
            let lengths: Vec<u64> = files
                .iter()
                .map(|file| std::fs::metadata(file).unwrap().len())
                .collect();
            let total: u64 = lengths.iter().sum();
            let mut cut = (total as f64 * fraction) as u64;
            let mut cut_at = None;
            for (file, length) in files.iter().zip(&lengths) {
                if cut_at.is_some() {
                    std::fs::remove_file(file).unwrap();
                } else if cut < *length {
                    let handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
                    handle.set_len(cut).unwrap();
                    cut_at = Some(Position {
                        segment: sequence_of(file),
                        offset: cut,
                    });
                } else {
                    cut -= length;
                }
            }
            match cut_at {
                None => written.len(),
                Some(cut) => written
                    .iter()
                    .take_while(|frame| {
                        frame.end.segment < cut.segment
                            || (frame.end.segment == cut.segment
                                && frame.end.offset <= cut.offset
                                && cut.offset >= 12)
                    })
                    .count(),
            }
        }
        Damage::Flip(fraction, xor) => {
            let Some(last) = files.last() else {
                return written.len();
            };
            let sequence = sequence_of(last);
            let in_last: Vec<&Written> = written
                .iter()
                .filter(|frame| frame.start.segment == sequence)
                .collect();
            let (Some(first), Some(end)) = (in_last.first(), in_last.last()) else {
                return written.len();
            };
            let span = end.end.offset - first.start.offset;
            let at = first.start.offset + ((span as f64 * fraction) as u64).min(span - 1);
            let mut bytes = std::fs::read(last).unwrap();
            bytes[at as usize] ^= xor;
            std::fs::write(last, bytes).unwrap();
            written
                .iter()
                .take_while(|frame| {
                    frame.start.segment < sequence
                        || (frame.start.segment == sequence && frame.end.offset <= at)
                })
                .count()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn reopening_after_damage_recovers_exactly_the_intact_prefix(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..40),
        later in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 1..5),
        segment_bytes in 64u64..2048,
        damage in damage_strategy(),
    ) {
        let directory = tempfile::tempdir().unwrap();
        let written = {
            let (mut log, recovery) = SegmentLog::open(directory.path(), segment_bytes, 1).unwrap();
            prop_assert_eq!(recovery.frames, 0);
            let written = write(&mut log, &payloads);
            prop_assert_eq!(read_all(&log), payloads.clone());
            written
        };
        let intact = apply(directory.path(), &written, &damage);
        let (mut log, _) = SegmentLog::open(directory.path(), segment_bytes, 1).unwrap();
        let expected: Vec<Vec<u8>> = payloads[..intact].to_vec();
        prop_assert_eq!(read_all(&log), expected.clone());
        prop_assert_eq!(log.frames(), intact as u64);

        // Appending after recovery works, and survives another reopen.
        write(&mut log, &later);
        drop(log);
        let (log, recovery) = SegmentLog::open(directory.path(), segment_bytes, 1).unwrap();
        prop_assert_eq!(recovery.truncated_bytes, 0);
        let mut all = expected;
        all.extend(later);
        prop_assert_eq!(read_all(&log), all);
    }

    #[test]
    fn segments_roll_over_at_their_bound_and_reading_resumes_anywhere(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..200), 1..60),
        segment_bytes in 64u64..1024,
        resume_at in 0usize..60,
    ) {
        let directory = tempfile::tempdir().unwrap();
        let (mut log, _) = SegmentLog::open(directory.path(), segment_bytes, 1).unwrap();
        let written = write(&mut log, &payloads);
        for file in segment_files(directory.path()) {
            let length = std::fs::metadata(&file).unwrap().len();
            let frames = written.iter().filter(|frame| frame.start.segment == sequence_of(&file)).count();
            prop_assert!(length <= segment_bytes || frames == 1, "{} bytes with {} frames", length, frames);
        }
        let resume = resume_at.min(payloads.len() - 1);
        let from_there: Vec<Vec<u8>> = log
            .snapshot()
            .read(written[resume].start, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|frame| frame.payload)
            .collect();
        prop_assert_eq!(from_there, payloads[resume..].to_vec());
        // Deleting what lies before a frame keeps that frame and everything after it.
        log.delete_before(written[resume].start).unwrap();
        prop_assert_eq!(
            log.snapshot().read(written[resume].start, usize::MAX).unwrap().len(),
            payloads.len() - resume
        );
        prop_assert!(log.start() <= written[resume].start);
    }
}

#[test]
fn a_segment_without_a_whole_header_is_removed_and_the_log_starts_fresh() {
    let directory = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = SegmentLog::open(directory.path(), 1 << 20, 1).unwrap();
        log.append(b"one").unwrap();
    }
    let file = segment_files(directory.path()).pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(5)
        .unwrap();
    let (mut log, recovery) = SegmentLog::open(directory.path(), 1 << 20, 1).unwrap();
    assert_eq!(recovery.frames, 0);
    assert!(segment_files(directory.path()).is_empty());
    log.append(b"two").unwrap();
    assert_eq!(read_all(&log), vec![b"two".to_vec()]);
}

#[test]
fn a_file_that_is_not_a_spool_segment_is_refused_not_replayed() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("00000000000000000001.segment"),
        b"NOTASPOOL-garbage-garbage",
    )
    .unwrap();
    let error = SegmentLog::open(directory.path(), 1 << 20, 1)
        .err()
        .unwrap();
    assert!(error.to_string().contains("not an Audrey spool segment"));
}
