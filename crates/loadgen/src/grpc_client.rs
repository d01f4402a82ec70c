//! A thin gRPC client for the load generator: a bounded pool of HTTP/2 channels to the server,
//! the bearer token on every call, and one way of turning a call's outcome into a [`Delivery`].
//!
//! HTTP/2 multiplexes many calls over one connection, so thousands of concurrent workers share a
//! handful of channels ([`WORKERS_PER_CHANNEL`] each) instead of opening a TCP connection apiece:
//! ten thousand connections would measure the kernel's accept queue, not the server. Like
//! [`crate::api_client`], it makes calls and classifies answers; it never decides what to send.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use audrey_proto::v1::ingest_service_client::IngestServiceClient;
use audrey_proto::v1::query_service_client::QueryServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::api_client::shorten;
use crate::delivery::{Delivery, backoff};

/// How many workers share one channel (one HTTP/2 connection). Well under the server's usual
/// limit on concurrent streams per connection, so no worker queues inside the client.
pub const WORKERS_PER_CHANNEL: usize = 100;
/// Same reasoning as the HTTP client's timeout: a hung server becomes a counted error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A range scan can stream millions of readings; pages are small, but the default 4 MB cap on
/// one message is a limit we do not want to discover in the middle of a benchmark.
const LARGEST_ANSWER_BYTES: usize = 256 * 1024 * 1024;
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How often one call is resent after the server said it is overloaded before it counts as lost.
const OVERLOADED_RETRIES_ALLOWED: u64 = 20;

pub type IngestClient = IngestServiceClient<InterceptedService<Channel, BearerToken>>;
pub type QueryClient = QueryServiceClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone, Debug)]
pub struct BearerToken(MetadataValue<Ascii>);

impl BearerToken {
    pub fn new(token: &str) -> anyhow::Result<BearerToken> {
        let value = format!("Bearer {}", token.trim())
            .parse::<MetadataValue<Ascii>>()
            .context("the token holds characters that cannot go in a gRPC header")?;
        Ok(BearerToken(value))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Connected channels, and clients handed out so that neighbouring workers share a channel.
#[derive(Clone, Debug)]
pub struct GrpcConnections {
    channels: Vec<Channel>,
    token: BearerToken,
}

/// How many channels `workers` concurrent workers need.
pub fn channels_for(workers: usize) -> usize {
    workers.div_ceil(WORKERS_PER_CHANNEL).max(1)
}

impl GrpcConnections {
    /// Opens enough channels for `workers` and waits until each is connected, so connecting is
    /// never part of a timed run.
    pub async fn connect(url: &str, token: &str, workers: usize) -> anyhow::Result<Self> {
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("gRPC URL {url:?} must start with http://");
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("{url:?} is not a usable gRPC URL"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let mut channels = Vec::with_capacity(channels_for(workers));
        for _ in 0..channels_for(workers) {
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to the gRPC server at {url}"))?;
            channels.push(channel);
        }
        Ok(GrpcConnections {
            channels,
            token: BearerToken::new(token)?,
        })
    }

    fn channel_of(&self, worker: usize) -> Channel {
        let index = (worker / WORKERS_PER_CHANNEL) % self.channels.len();
        self.channels[index].clone()
    }

    pub fn ingest(&self, worker: usize) -> IngestClient {
        IngestServiceClient::with_interceptor(self.channel_of(worker), self.token.clone())
            .max_decoding_message_size(LARGEST_ANSWER_BYTES)
    }

    pub fn query(&self, worker: usize) -> QueryClient {
        QueryServiceClient::with_interceptor(self.channel_of(worker), self.token.clone())
            .max_decoding_message_size(LARGEST_ANSWER_BYTES)
    }
}

/// A status that means "healthy but shedding load": the same request may be resent. The server
/// says so with a `RetryInfo` detail; `UNAVAILABLE` without one is taken the same way unless it
/// is the client's own "could not reach the server". `RESOURCE_EXHAUSTED` without `RetryInfo` is a
/// request that is too large, and resending it cannot help.
pub fn is_overloaded(status: &Status) -> bool {
    retry_after(status).is_some()
        || (status.code() == Code::Unavailable && !status.message().contains("transport error"))
}
/// How long to wait before resending after `status`, or `None` when resending cannot help (the
/// status is not an overload, or `retries_so_far` resends were already refused).
pub fn overload_pause(status: &Status, retries_so_far: u64) -> Option<Duration> {
    if !is_overloaded(status) || retries_so_far >= OVERLOADED_RETRIES_ALLOWED {
        return None;
    }
    Some(retry_after(status).unwrap_or(backoff(retries_so_far + 1)))
}

/// A status in one line, e.g. `UNAUTHENTICATED: no token`, shortened for reports.
pub fn describe_status(status: &Status) -> String {
    let mut text = format!("gRPC {:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    shorten(&text)
}

/// The pause the server asked for in a `RetryInfo` detail, capped so a misconfigured server cannot
/// park the generator for an hour.
fn retry_after(status: &Status) -> Option<Duration> {
    let delay = status.get_details_retry_info()?.retry_delay?;
    Some(delay.min(LONGEST_RETRY_AFTER))
}

/// One unary call, resent while the server says it is overloaded. `call` builds a fresh request
/// each time (the load plans are deterministic, so it is the same request, message ids and all),
/// and `judge` turns the answer into a delivery summary or explains why the answer is wrong.
pub async fn call_until_answered<Answer, Call, Pending>(
    mut call: Call,
    judge: impl FnOnce(Answer) -> Result<crate::wire::IngestSummary, String>,
) -> Delivery
where
    Call: FnMut() -> Pending,
    Pending: Future<Output = Result<tonic::Response<Answer>, Status>>,
{
    let mut delivery = Delivery::default();
    loop {
        let started = Instant::now();
        let status = match tokio::time::timeout(CALL_TIMEOUT, call()).await {
            Ok(Ok(response)) => {
                let answered_in = started.elapsed();
                match judge(response.into_inner()) {
                    Ok(summary) => {
                        delivery.summary = Some(summary);
                        delivery.answered_in = Some(answered_in);
                    }
                    Err(problem) => {
                        delivery.failed_attempts += 1;
                        delivery.last_failure = Some(problem);
                    }
                }
                return delivery;
            }
            Ok(Err(status)) => status,
            Err(_) => {
                delivery.failed_attempts += 1;
                delivery.last_failure =
                    Some(format!("no answer within {} s", CALL_TIMEOUT.as_secs()));
                return delivery;
            }
        };
        if let Some(pause) = overload_pause(&status, delivery.overloaded_retries) {
            delivery.overloaded_retries += 1;
            tokio::time::sleep(pause).await;
            continue;
        }
        delivery.failed_attempts += 1;
        delivery.last_failure = Some(describe_status(&status));
        return delivery;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hundred_workers_share_one_channel() {
        assert_eq!(channels_for(1), 1);
        assert_eq!(channels_for(100), 1);
        assert_eq!(channels_for(101), 2);
        assert_eq!(channels_for(10_000), 100);
    }

    #[test]
    fn the_token_goes_into_the_authorization_header() {
        let mut token = BearerToken::new(" secret \n").unwrap();
        let request = token.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer secret"
        );
        assert!(BearerToken::new("bad\u{7}token").is_err());
    }

    fn asking_to_retry_after(delay: Duration, code: Code) -> Status {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_retry_info(Some(delay));
        Status::with_error_details(code, "the server is overloaded", details)
    }

    #[test]
    fn overload_is_told_apart_from_a_dead_connection_and_a_large_request() {
        assert!(is_overloaded(&asking_to_retry_after(
            Duration::from_secs(1),
            Code::ResourceExhausted
        )));
        assert!(is_overloaded(&Status::unavailable(
            "storage is unavailable"
        )));
        assert!(!is_overloaded(&Status::unavailable(
            "error trying to connect: transport error"
        )));
        assert!(!is_overloaded(&Status::resource_exhausted(
            "at most 10000 readings in one request"
        )));
        assert!(!is_overloaded(&Status::unauthenticated("no token")));
    }

    #[test]
    fn the_retry_delay_is_read_from_retry_info_and_capped() {
        let status = asking_to_retry_after(Duration::from_millis(500), Code::ResourceExhausted);
        assert_eq!(retry_after(&status), Some(Duration::from_millis(500)));
        let status = asking_to_retry_after(Duration::from_secs(3600), Code::ResourceExhausted);
        assert_eq!(retry_after(&status), Some(LONGEST_RETRY_AFTER));
        assert_eq!(retry_after(&Status::unavailable("busy")), None);
    }

    #[test]
    fn an_overload_is_waited_out_a_bounded_number_of_times() {
        let busy = Status::unavailable("busy");
        assert_eq!(overload_pause(&busy, 0), Some(backoff(1)));
        assert_eq!(overload_pause(&busy, OVERLOADED_RETRIES_ALLOWED), None);
        assert_eq!(overload_pause(&Status::invalid_argument("bad"), 0), None);
    }

    #[tokio::test]
    async fn an_overloaded_call_is_resent_and_a_refused_one_is_not() {
        let mut attempts = 0;
        let delivery = call_until_answered(
            || {
                attempts += 1;
                let answer = if attempts == 1 {
                    Err(asking_to_retry_after(
                        Duration::ZERO,
                        Code::ResourceExhausted,
                    ))
                } else {
                    Ok(tonic::Response::new(3_u32))
                };
                std::future::ready(answer)
            },
            |accepted| {
                Ok(crate::wire::IngestSummary {
                    accepted: u64::from(accepted),
                    ..Default::default()
                })
            },
        )
        .await;
        assert_eq!(delivery.overloaded_retries, 1);
        assert_eq!(delivery.summary.map(|summary| summary.accepted), Some(3));

        let refused = call_until_answered(
            || {
                std::future::ready(Err::<tonic::Response<u32>, _>(Status::unauthenticated(
                    "no",
                )))
            },
            |_| Ok(crate::wire::IngestSummary::default()),
        )
        .await;
        assert_eq!(refused.failed_attempts, 1);
        assert!(refused.last_failure.unwrap().contains("Unauthenticated"));
    }
}
