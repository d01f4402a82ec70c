//! `audrey.v1.QueryService`.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use audrey_model::{LocationId, Millis, ReadingId, SensorId};
use audrey_proto::v1;
use audrey_store::{Cursor, Order, ReadingQuery};

use super::{blocking, convert, principal};
use crate::auth::Scope;
use crate::{ApiError, AppState};

pub struct QueryApi(pub(crate) AppState);

/// Rows read and sent per page of a streamed answer.
const PAGE_ROWS: usize = 2_000;

fn invalid(error: audrey_model::FieldError) -> Status {
    ApiError::invalid("the request is invalid", vec![error]).into()
}

fn list_query(request: &v1::ListReadingsRequest) -> Result<ReadingQuery, Status> {
    let optional = |text: &str| (!text.is_empty()).then(|| text.to_string());
    let sensor = optional(&request.sensor_id)
        .map(|id| SensorId::parse(&id))
        .transpose()
        .map_err(invalid)?;
    let location = optional(&request.location_id)
        .map(|id| LocationId::parse(&id))
        .transpose()
        .map_err(invalid)?;
    let after = optional(&request.cursor)
        .map(|cursor| Cursor::decode(&cursor))
        .transpose()
        .map_err(invalid)?;
    let order = match v1::Order::try_from(request.order) {
        Ok(v1::Order::Oldest) => Order::Oldest,
        _ => Order::Newest,
    };
    Ok(ReadingQuery {
        sensor,
        location,
        from: request.from_ms.map(Millis),
        to: request.to_ms.map(Millis),
        order,
        limit: PAGE_ROWS,
        after,
        near: None,
    })
}

#[tonic::async_trait]
impl v1::query_service_server::QueryService for QueryApi {
    async fn get_reading(
        &self,
        request: Request<v1::GetReadingRequest>,
    ) -> Result<Response<v1::Reading>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let id = ReadingId::parse(&request.get_ref().id).map_err(invalid)?;
        let reading = blocking(&self.0, move |store| Ok(store.reading(id)?)).await?;
        match reading {
            Some(reading) => Ok(Response::new(convert::reading(&reading))),
            None => Err(Status::not_found(format!("reading {id} was not found"))),
        }
    }

    type ListReadingsStream =
        Pin<Box<dyn futures_util::Stream<Item = Result<v1::ReadingPage, Status>> + Send>>;

    async fn list_readings(
        &self,
        request: Request<v1::ListReadingsRequest>,
    ) -> Result<Response<Self::ListReadingsStream>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let mut query = list_query(request.get_ref())?;
        let mut remaining = match request.get_ref().limit {
            0 => u64::MAX,
            limit => limit,
        };
        let (pages, receiver) = mpsc::channel(4);
        let state = self.0.clone();
        // Pages are read and sent one at a time; a slow reader holds back the next read.
        tokio::spawn(async move {
            while remaining > 0 {
                query.limit = PAGE_ROWS.min(remaining.min(usize::MAX as u64) as usize);
                let this_page = query.clone();
                let page =
                    match blocking(&state, move |store| Ok(store.readings(&this_page)?)).await {
                        Ok(page) => page,
                        Err(status) => {
                            let _ = pages.send(Err(status)).await;
                            return;
                        }
                    };
                remaining = remaining.saturating_sub(page.items.len() as u64);
                let next = page.next_cursor.clone().filter(|_| remaining > 0);
                let message = v1::ReadingPage {
                    readings: page.items.iter().map(convert::reading).collect(),
                    next_cursor: next.clone().unwrap_or_default(),
                };
                if pages.send(Ok(message)).await.is_err() {
                    return;
                }
                match next.as_deref().map(Cursor::decode) {
                    Some(Ok(cursor)) => query.after = Some(cursor),
                    _ => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn latest(
        &self,
        request: Request<v1::LatestRequest>,
    ) -> Result<Response<v1::Reading>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let sensor = SensorId::parse(&request.get_ref().sensor_id).map_err(invalid)?;
        let reading = blocking(&self.0, move |store| {
            crate::queries::latest_reading(store, sensor)
        })
        .await?;
        Ok(Response::new(convert::reading(&reading)))
    }
}
