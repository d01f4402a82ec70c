//! `--rate`: an open-loop schedule for a matrix scenario.
//!
//! Without a rate every worker sends its next request the moment the last one is answered
//! (a closed loop). That measures the most the server can take, but its latency is the latency
//! of a saturated server: with `W` workers and `X` answers a second, the mean is `W / X` by
//! Little's law whatever the server does. A deployment runs at the rate its fleet sends, so
//! the question a user sizing one asks is "at this rate, what is the tail?".
//!
//! With a rate the scenario's global request `g` (request `r` of worker `w` is
//! `r * workers + w`, the order [`ScenarioLoad`](super::load::ScenarioLoad) numbers readings
//! in) is due `g / rate` seconds after the start. A worker still sends one request at a time:
//! it waits for the due time when it is early and sends at once when it is late. A late
//! request's latency runs **from its due time**, not from the moment it left: when a slow
//! answer makes a worker fall behind, the requests it could not send on time count the wait,
//! as the devices behind a real gateway would feel it. Timing from the send instead would hide
//! exactly the stalls a benchmark is for (the "coordinated omission" of a closed loop). An
//! early request is timed from when it left: tokio's timer wakes a sleeper up to a millisecond
//! after the time asked for, and that delay is the load generator's, not the server's.

use std::time::{Duration, Instant};

use anyhow::ensure;

/// Requests a second over all of a scenario's workers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace {
    requests_per_second: f64,
}

impl Pace {
    pub fn new(requests_per_second: f64) -> anyhow::Result<Pace> {
        ensure!(
            requests_per_second.is_finite() && requests_per_second > 0.0,
            "--rate must be a positive number of requests a second, not {requests_per_second}"
        );
        Ok(Pace {
            requests_per_second,
        })
    }

    pub fn requests_per_second(self) -> f64 {
        self.requests_per_second
    }

    /// When request `request` of worker `worker` (of `workers`) is due, after `start`.
    pub fn due(self, start: Instant, workers: usize, worker: usize, request: u64) -> Instant {
        let global_request = request * workers as u64 + worker as u64;
        start + Duration::from_secs_f64(global_request as f64 / self.requests_per_second)
    }
}

/// Whether a request could go out at its due time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// The sender was ready before the due time and waited for it.
    Early,
    /// The due time had passed when the sender got to it.
    Late,
}

/// Waits until `due`, when it has not passed yet.
pub async fn wait_until(due: Instant) -> Departure {
    if due > Instant::now() {
        tokio::time::sleep_until(due.into()).await;
        Departure::Early
    } else {
        Departure::Late
    }
}

/// The latency of a request due at `due`, sent as `departure` says, answered now, that took
/// `answered_in` from its send: a late request counts from its due time (never less than the
/// time it took, which can exceed `now - due` only by clock granularity), an early one from its
/// send.
pub fn paced_latency(due: Instant, departure: Departure, answered_in: Duration) -> Duration {
    match departure {
        Departure::Early => answered_in,
        Departure::Late => due.elapsed().max(answered_in),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_due_in_the_order_readings_are_numbered() {
        let pace = Pace::new(1000.0).unwrap();
        let start = Instant::now();
        // 4 workers at 1,000/s: worker 2's request 3 is global request 14, 14 ms in.
        assert_eq!(
            pace.due(start, 4, 2, 3).duration_since(start),
            Duration::from_millis(14)
        );
        assert_eq!(pace.due(start, 4, 0, 0), start);
        // Each worker's own requests are `workers / rate` apart.
        let gap = pace.due(start, 4, 1, 6) - pace.due(start, 4, 1, 5);
        assert_eq!(gap, Duration::from_millis(4));
    }

    #[test]
    fn a_rate_must_be_a_positive_number() {
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert!(Pace::new(rate).is_err(), "{rate} was accepted");
        }
        assert_eq!(Pace::new(2.5).unwrap().requests_per_second(), 2.5);
    }

    #[test]
    fn a_late_request_counts_the_time_it_waited_to_be_sent() {
        let due = Instant::now() - Duration::from_millis(30);
        let latency = paced_latency(due, Departure::Late, Duration::from_millis(2));
        assert!(latency >= Duration::from_millis(30), "{latency:?}");
        // A late request is never reported faster than it was answered.
        let just_due = Instant::now();
        let latency = paced_latency(just_due, Departure::Late, Duration::from_millis(5));
        assert!(latency >= Duration::from_millis(5), "{latency:?}");
    }

    #[test]
    fn an_early_request_counts_from_its_send_not_from_the_timer() {
        // Woken 3 ms after its due time by a coarse timer, answered 2 ms after it left.
        let due = Instant::now() - Duration::from_millis(5);
        let latency = paced_latency(due, Departure::Early, Duration::from_millis(2));
        assert_eq!(latency, Duration::from_millis(2));
    }

    #[tokio::test]
    async fn waiting_tells_an_early_sender_from_a_late_one() {
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(wait_until(soon).await, Departure::Early);
        assert!(Instant::now() >= soon);
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(wait_until(past).await, Departure::Late);
    }
}
