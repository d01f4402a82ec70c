//! `audrey.v1.IngestService`.

use std::pin::Pin;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use audrey_ingest::ItemOutcome;
use audrey_proto::v1;

use super::{acknowledge_batches, convert, principal};
use crate::auth::{Principal, Scope};
use crate::{ApiError, AppState};

pub struct IngestApi(pub(crate) AppState);

/// Validates, stores and acknowledges one batch for an authorised caller.
pub(crate) async fn submit_batch(
    state: AppState,
    principal: Principal,
    batch: v1::ReadingBatch,
) -> Result<v1::BatchAck, Status> {
    let items = batch.readings.into_iter().map(convert::incoming).collect();
    let outcomes = state
        .pipeline
        .submit(items, batch.atomic, principal.sensor.as_ref())
        .await
        .map_err(ApiError::from)?;
    Ok(convert::batch_ack(batch.batch_id, outcomes))
}

#[tonic::async_trait]
impl v1::ingest_service_server::IngestService for IngestApi {
    async fn send(&self, request: Request<v1::ReadingInput>) -> Result<Response<v1::Ack>, Status> {
        let principal = principal(&self.0, &request).await?;
        principal.require(Scope::Write)?;
        let item = convert::incoming(request.into_inner());
        let outcomes = self
            .0
            .pipeline
            .submit(vec![item], false, principal.sensor.as_ref())
            .await
            .map_err(ApiError::from)?;
        match outcomes.into_iter().next() {
            // One invalid reading is an invalid request, as over HTTP; it is quarantined.
            Some(ItemOutcome::Rejected(errors)) => Err(ApiError::invalid(
                "the reading was rejected and kept in quarantine",
                errors,
            )
            .into()),
            Some(outcome) => Ok(Response::new(v1::Ack {
                result: Some(convert::result(outcome)),
            })),
            None => Err(Status::internal("no outcome")),
        }
    }

    async fn send_batch(
        &self,
        request: Request<v1::ReadingBatch>,
    ) -> Result<Response<v1::BatchAck>, Status> {
        let principal = principal(&self.0, &request).await?;
        principal.require(Scope::Write)?;
        Ok(Response::new(
            submit_batch(self.0.clone(), principal, request.into_inner()).await?,
        ))
    }

    type StreamStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<v1::BatchAck, Status>> + Send>>;

    async fn stream(
        &self,
        request: Request<Streaming<v1::ReadingBatch>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let principal = principal(&self.0, &request).await?;
        principal.require(Scope::Write)?;
        let acks = acknowledge_batches(self.0.clone(), principal, request.into_inner());
        Ok(Response::new(Box::pin(ReceiverStream::new(acks))))
    }
}
