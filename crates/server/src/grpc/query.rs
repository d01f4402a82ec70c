//! `audrey.v1.QueryService`.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use audrey_model::{
    FieldError, LocationId, MetricName, Millis, Reading, ReadingId, Reason, SensorId,
    parse_percentiles,
};
use audrey_proto::v1;
use audrey_store::{
    AggregateQuery, Aggregation, Cursor, GroupBy, Order, ReadingQuery, StatsQuery, parse_bucket,
};

use super::{NEAR_FIELDS, blocking, convert, principal};
use crate::auth::Scope;
use crate::http::params::{Problems, circle_from};
use crate::http::stats::{check_bucket_count, check_range, required};
use crate::{ApiError, AppState};

/// The most aggregations one request asks for (as over HTTP).
const MAX_AGGREGATIONS: usize = 20;

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
    let near = circle_from(
        NEAR_FIELDS,
        [request.near_lat, request.near_lon, request.radius_km],
    )
    .map_err(|errors| Status::from(ApiError::invalid("the request is invalid", errors)))?;
    let (from, to) = (request.from_ms.map(Millis), request.to_ms.map(Millis));
    let mut problems = Problems::default();
    check_range(from, to, &mut problems);
    problems.finish("the request is invalid")?;
    Ok(ReadingQuery {
        sensor,
        location,
        from,
        to,
        order,
        limit: PAGE_ROWS,
        after,
        near,
    })
}

/// An optional text field parsed with `parse`; empty means absent. Errors name `field`.
fn typed<T>(
    field: &str,
    text: &str,
    parse: impl Fn(&str) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError> {
    if text.is_empty() {
        return Ok(None);
    }
    parse(text).map(Some).map_err(|error| FieldError {
        path: field.to_string(),
        ..error
    })
}

/// A required text field: "is required" when empty, else parsed (one error either way).
fn present<T>(
    field: &str,
    text: &str,
    parse: impl Fn(&str) -> Result<T, FieldError>,
    problems: &mut Problems,
) -> Option<T> {
    let parsed = problems.check(typed(field, text, parse)).flatten();
    if text.is_empty() {
        required(parsed, field, problems)
    } else {
        parsed
    }
}

fn group_by_name(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::Sensor => "sensor",
        GroupBy::Location => "location",
        GroupBy::City => "city",
        GroupBy::Country => "country",
    }
}

/// The same checks as `GET /api/v1/stats`, with the message's field names.
fn stats_query(request: v1::StatsRequest) -> Result<StatsQuery, ApiError> {
    let mut problems = Problems::default();
    let metric = present("metric", &request.metric, MetricName::parse, &mut problems);
    let group_by = problems
        .check(typed("group_by", &request.group_by, |text| {
            GroupBy::parse(text, "group_by")
        }))
        .flatten()
        .unwrap_or(GroupBy::Sensor);
    let (from, to) = (request.from_ms.map(Millis), request.to_ms.map(Millis));
    check_range(from, to, &mut problems);
    // The model's parser is the one rule for percentiles (range, count); it reads the list
    // as HTTP sends it. A NaN or infinity prints as text it rejects as out of range.
    let listed = request
        .percentiles
        .iter()
        .map(f64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let percentiles = problems
        .check(parse_percentiles(&listed, "percentiles"))
        .unwrap_or_default();
    problems.finish("the request is invalid")?;
    let Some(metric) = metric else {
        return Err(ApiError::invalid("the request is invalid", Vec::new()));
    };
    Ok(StatsQuery {
        metric,
        group_by,
        from,
        to,
        percentiles,
    })
}

/// The same checks as `GET /api/v1/readings/aggregate`, with the message's field names.
fn aggregate_query(request: v1::AggregateRequest) -> Result<AggregateQuery, ApiError> {
    let mut problems = Problems::default();
    let sensor = problems
        .check(typed("sensor_id", &request.sensor_id, SensorId::parse))
        .flatten();
    let location = problems
        .check(typed(
            "location_id",
            &request.location_id,
            LocationId::parse,
        ))
        .flatten();
    let metric = present("metric", &request.metric, MetricName::parse, &mut problems);
    let bucket_ms = present(
        "bucket",
        &request.bucket,
        |text| parse_bucket(text, "bucket"),
        &mut problems,
    );
    let aggregations = if request.aggregations.is_empty() {
        vec![
            Aggregation::Avg,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Count,
        ]
    } else {
        if request.aggregations.len() > MAX_AGGREGATIONS {
            problems.check::<()>(Err(FieldError::new(
                "aggregations",
                Reason::OutOfRange,
                format!("give 1 to {MAX_AGGREGATIONS} aggregations, such as avg,min,max,count,p50"),
            )));
        }
        request
            .aggregations
            .iter()
            .enumerate()
            .filter_map(|(index, text)| {
                problems.check(Aggregation::parse(
                    text.trim(),
                    &format!("aggregations[{index}]"),
                ))
            })
            .collect()
    };
    let (from, to) = (request.from_ms.map(Millis), request.to_ms.map(Millis));
    check_range(from, to, &mut problems);
    check_bucket_count(from, to, bucket_ms, &mut problems);
    problems.finish("the request is invalid")?;
    let (Some(metric), Some(bucket_ms)) = (metric, bucket_ms) else {
        return Err(ApiError::invalid("the request is invalid", Vec::new()));
    };
    Ok(AggregateQuery {
        sensor,
        location,
        metric,
        bucket_ms,
        aggregations,
        from,
        to,
    })
}

/// The most a `ListReadings` message carries, so that no page goes over the 4 MiB a gRPC
/// client accepts by default: 2,000 readings of 64 long-named metrics would be ~10 MB.
const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// One page read from the store, as one message or, when it is larger than
/// [`MAX_PAGE_BYTES`], as several; each but the last carries the cursor of its own last
/// reading, so a client that stops after any of them can resume exactly there.
fn encode_in_parts<T>(
    readings: &[Reading],
    next_cursor: Option<&str>,
    encode: fn(&[Reading], Option<&str>) -> T,
) -> Vec<T> {
    let mut messages = Vec::with_capacity(1);
    let mut start = 0;
    let mut bytes = 0;
    for (index, reading) in readings.iter().enumerate() {
        let size = super::query_encode::reading_len(reading) + 8;
        if index > start && bytes + size > MAX_PAGE_BYTES {
            let last = &readings[index - 1];
            let cursor = Cursor {
                read_at: last.read_at,
                id: last.id,
            };
            messages.push(encode(&readings[start..index], Some(&cursor.encode())));
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    messages.push(encode(&readings[start..], next_cursor));
    messages
}

/// A stream of `ListReadings` pages, each already in the form the codec sends.
pub(crate) type PageStream<T> = Pin<Box<dyn futures_util::Stream<Item = Result<T, Status>> + Send>>;

impl QueryApi {
    /// `ListReadings`: pages of [`PAGE_ROWS`] read one after another, each turned into a
    /// message by `encode` (its readings and the cursor the client sees) on the store's
    /// thread, while the previous page is being sent.
    pub(crate) async fn list_pages<T: Send + 'static>(
        &self,
        request: Request<v1::ListReadingsRequest>,
        encode: fn(&[Reading], Option<&str>) -> T,
    ) -> Result<Response<PageStream<T>>, Status> {
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
                let read = blocking(&state, move |store| {
                    let page = store.readings(&this_page)?;
                    let remaining = remaining.saturating_sub(page.items.len() as u64);
                    let next = page.next_cursor.filter(|_| remaining > 0);
                    Ok((
                        encode_in_parts(&page.items, next.as_deref(), encode),
                        remaining,
                        next,
                    ))
                })
                .await;
                let next = match read {
                    Ok((messages, left, next)) => {
                        for message in messages {
                            if pages.send(Ok(message)).await.is_err() {
                                return;
                            }
                        }
                        remaining = left;
                        next
                    }
                    Err(status) => {
                        let _ = pages.send(Err(status)).await;
                        return;
                    }
                };
                match next.as_deref().map(Cursor::decode) {
                    Some(Ok(cursor)) => query.after = Some(cursor),
                    _ => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

#[tonic::async_trait]
impl v1::query_service_server::QueryService for QueryApi {
    async fn get_reading(
        &self,
        request: Request<v1::GetReadingRequest>,
    ) -> Result<Response<v1::Reading>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let id = ReadingId::parse(&request.get_ref().id).map_err(invalid)?;
        // A point read the store can answer at once costs less than a thread hop.
        let reading = match self.0.store.reading_without_waiting(id) {
            Some(answer) => answer.map_err(ApiError::from)?,
            None => blocking(&self.0, move |store| Ok(store.reading(id)?)).await?,
        };
        match reading {
            Some(reading) => Ok(Response::new(convert::reading(&reading))),
            None => Err(Status::not_found(format!("reading {id} was not found"))),
        }
    }

    type ListReadingsStream = PageStream<v1::ReadingPage>;

    /// Used only where the generated `QueryServiceServer` is served alone: `serve_grpc`
    /// routes this method through [`super::query_encode::QueryRoutes`], which sends the same
    /// message pre-encoded.
    async fn list_readings(
        &self,
        request: Request<v1::ListReadingsRequest>,
    ) -> Result<Response<Self::ListReadingsStream>, Status> {
        self.list_pages(request, |readings, next_cursor| v1::ReadingPage {
            readings: readings.iter().map(convert::reading).collect(),
            next_cursor: next_cursor.unwrap_or_default().to_string(),
        })
        .await
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

    async fn stats(
        &self,
        request: Request<v1::StatsRequest>,
    ) -> Result<Response<v1::StatsResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let query = stats_query(request.into_inner())?;
        let (metric, group_by) = (query.metric.to_string(), query.group_by);
        let groups = blocking(&self.0, move |store| Ok(store.reading_stats(&query)?)).await?;
        Ok(Response::new(v1::StatsResponse {
            metric,
            group_by: group_by_name(group_by).to_string(),
            groups: groups.into_iter().map(convert::stats_group).collect(),
        }))
    }

    async fn aggregate(
        &self,
        request: Request<v1::AggregateRequest>,
    ) -> Result<Response<v1::AggregateResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let query = aggregate_query(request.into_inner())?;
        let (metric, bucket_ms) = (query.metric.to_string(), query.bucket_ms);
        let names: Vec<String> = query.aggregations.iter().map(Aggregation::name).collect();
        let buckets = blocking(&self.0, move |store| Ok(store.aggregate_readings(&query)?)).await?;
        Ok(Response::new(v1::AggregateResponse {
            metric,
            bucket_ms,
            buckets: buckets
                .into_iter()
                .map(|bucket| v1::AggregateBucket {
                    start_ms: bucket.start.0,
                    values: names
                        .iter()
                        .zip(bucket.values)
                        .map(|(name, value)| v1::AggregateValue {
                            aggregation: name.clone(),
                            value,
                        })
                        .collect(),
                })
                .collect(),
        }))
    }
}
