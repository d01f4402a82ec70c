//! Importing locations from CSV: parse (the model's rules), write in batches (the store's
//! bulk upsert), and report. Transport-free: the HTTP handler and any other caller share it.

use serde::Serialize;

use audrey_model::{FieldError, Millis, RowRejection, parse_locations_csv};
use audrey_store::{Store, StoreError, UpsertOutcome};

/// Rows per store transaction: large enough that commits (each an fsync) are few, small
/// enough that a writer never holds the database for long.
pub const IMPORT_BATCH_ROWS: usize = 2_000;

/// What an import did, row by row.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ImportReport {
    /// Whether the first line was read as a header (else: the OpenFlights column order).
    pub header: bool,
    /// Data rows read.
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// One entry per rejected row, in file order.
    pub rejections: Vec<Rejection>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Rejection {
    /// Data row number: 1 is the first row after any header.
    pub row: u64,
    /// Line in the file where the row starts (a header is line 1).
    pub line: u64,
    /// The column's header name; empty when the whole row is at fault.
    pub column: String,
    pub reason: &'static str,
    pub message: String,
}

impl From<RowRejection> for Rejection {
    fn from(rejection: RowRejection) -> Rejection {
        Rejection {
            row: rejection.row,
            line: rejection.line,
            column: rejection.column,
            reason: rejection.reason.as_str(),
            message: rejection.message,
        }
    }
}

/// Why a whole import failed (as opposed to single rows).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not CSV: {}", .0.message)]
    Unreadable(FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports `csv` into the store. Batches commit one by one: when a later batch fails, the
/// earlier ones stay (re-running the import is safe, it is idempotent). `progress` is called
/// after each batch with the rows done so far.
pub fn import_locations(
    store: &dyn Store,
    csv: &[u8],
    now: Millis,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport, ImportError> {
    let parsed = parse_locations_csv(csv, now).map_err(ImportError::Unreadable)?;
    let mut report = ImportReport {
        header: parsed.header_present,
        rows: parsed.records,
        rejected: parsed.rejected.len() as u64,
        rejections: parsed.rejected.into_iter().map(Rejection::from).collect(),
        ..ImportReport::default()
    };
    let mut done = report.rejected;
    for batch in parsed.rows.chunks(IMPORT_BATCH_ROWS) {
        for outcome in store.upsert_locations(batch)? {
            match outcome {
                UpsertOutcome::Inserted => report.inserted += 1,
                UpsertOutcome::Updated => report.updated += 1,
                UpsertOutcome::Unchanged => report.unchanged += 1,
            }
        }
        done += batch.len() as u64;
        progress(done);
    }
    report.rejections.sort_by_key(|rejection| rejection.row);
    Ok(report)
}
