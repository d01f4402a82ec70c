//! Getting one batch of readings answered: the retry policy shared by the simulator and the
//! benchmarks.
//!
//! A 503 means "the server is healthy but shedding load": we wait as long as `Retry-After` says and
//! resend the very same bytes, message ids included, so a batch that did land before the 503 is
//! answered as duplicates rather than stored twice. A connection error or a 5xx is a failed
//! attempt: it is counted, we back off exponentially and try again. A 4xx other than 429 is final,
//! because sending the same bytes again cannot fix them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use tokio::sync::watch;

use crate::api_client::{ApiClient, PostOutcome, shorten};
use crate::wire::IngestSummary;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);
/// 429 has no agreed `Retry-After` here; pause as for a 503 without one.
const TOO_MANY_REQUESTS_PAUSE: Duration = Duration::from_secs(1);

/// How long to keep trying one batch.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Failed attempts (connection errors, 5xx) after which the batch is given up; `None` keeps
    /// trying until the stop signal, as a gateway with a disk buffer would.
    pub failed_attempts_allowed: Option<u64>,
}

/// What became of one batch.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// The server's totals, when it answered at all.
    pub summary: Option<IngestSummary>,
    /// How long the attempt that got the answer took, from send to the last byte of the answer.
    pub answered_in: Option<Duration>,
    pub overloaded_retries: u64,
    pub failed_attempts: u64,
    /// The last failure, kept so a report can say why rather than only how often.
    pub last_failure: Option<String>,
}

/// Raised once to ask every running delivery to stop waiting and give up.
#[derive(Debug)]
pub struct StopSwitch(watch::Sender<bool>);

#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<bool>);

pub fn stop_pair() -> (StopSwitch, StopSignal) {
    let (sender, receiver) = watch::channel(false);
    (StopSwitch(sender), StopSignal(receiver))
}

impl StopSwitch {
    pub fn raise(&self) {
        self.0.send_replace(true);
    }
}

impl StopSignal {
    pub fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the switch is raised; never, if the switch was dropped unraised.
    pub async fn raised(&mut self) {
        if self.0.wait_for(|raised| *raised).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps, or returns `false` early if the stop signal is raised meanwhile.
    async fn pause(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.raised() => false,
        }
    }
}

/// Sends `body` until the server answers it, the policy gives up, or `stop` is raised. A batch
/// always gets its first attempt, even after the stop: stopping means "no more waiting and
/// retrying", so a run that ends still delivers what it has cut, if the server is there.
pub async fn deliver(
    client: &ApiClient,
    body: Bytes,
    policy: RetryPolicy,
    stop: &mut StopSignal,
) -> Delivery {
    let mut delivery = Delivery::default();
    loop {
        let started = Instant::now();
        let pause = match client.post_readings(body.clone()).await {
            Ok(PostOutcome::Answered(summary)) => {
                delivery.summary = Some(summary);
                delivery.answered_in = Some(started.elapsed());
                return delivery;
            }
            Ok(PostOutcome::Overloaded { retry_after }) => {
                delivery.overloaded_retries += 1;
                retry_after
            }
            Ok(PostOutcome::Failed { status, .. }) if status == StatusCode::TOO_MANY_REQUESTS => {
                delivery.overloaded_retries += 1;
                TOO_MANY_REQUESTS_PAUSE
            }
            Ok(PostOutcome::Failed { status, body }) => {
                delivery.failed_attempts += 1;
                delivery.last_failure = Some(format!("HTTP {status}: {body}"));
                if status.is_client_error() {
                    return delivery;
                }
                backoff(delivery.failed_attempts)
            }
            Err(error) => {
                delivery.failed_attempts += 1;
                delivery.last_failure = Some(shorten(&describe(&error)));
                backoff(delivery.failed_attempts)
            }
        };
        if policy
            .failed_attempts_allowed
            .is_some_and(|allowed| delivery.failed_attempts >= allowed)
        {
            return delivery;
        }
        if !stop.pause(pause).await {
            return delivery;
        }
    }
}

/// 100 ms, 200 ms, 400 ms, … up to 5 s: quick recovery from a blip, no hammering of a dead server.
pub(crate) fn backoff(failed_attempts: u64) -> Duration {
    let doublings = failed_attempts.saturating_sub(1).min(16) as u32;
    FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(LONGEST_BACKOFF)
}

/// reqwest's top-level message ("error sending request") hides the useful cause.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_then_stays_at_the_ceiling() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(50), LONGEST_BACKOFF);
    }

    #[tokio::test]
    async fn a_stop_signal_whose_switch_was_dropped_never_fires() {
        let (switch, mut signal) = stop_pair();
        drop(switch);
        assert!(!signal.is_raised());
        let waited = tokio::time::timeout(Duration::from_millis(10), signal.raised()).await;
        assert!(waited.is_err());
    }

    #[tokio::test]
    async fn a_raised_stop_signal_ends_a_pause_early() {
        let (switch, mut signal) = stop_pair();
        switch.raise();
        assert!(!signal.pause(Duration::from_secs(3600)).await);
    }
}
