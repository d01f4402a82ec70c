//! The wall clock, in the epoch milliseconds the API speaks.
//!
//! `read_at` must be close to the server's clock, so it comes from the system clock; durations
//! and rates are measured with `Instant`, which never jumps.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}
