//! `ListReadings` pages written as protobuf bytes straight from stored readings.
//!
//! A range scan streams every reading, and building a prost `v1::Reading` for each one (the id
//! formatted into a new `String`, the sensor and location ids copied, a `HashMap` of values
//! with `String` keys) and then encoding and dropping it cost more than reading the rows. So
//! `ListReadings` is served by [`QueryRoutes`]: it routes that one method to a codec that
//! sends bytes encoded here, and every other method to the generated `QueryServiceServer`.
//!
//! The bytes are exactly an `audrey.v1.ReadingPage`, so any gRPC client (prost, Python,
//! reflection-driven tools) decodes them as before; a test decodes them with the generated
//! types and compares with [`super::convert::reading`]. Fields equal to their proto3 default
//! are left out as prost leaves them out, except metric values, which are always written so
//! that `-0.0` keeps its sign. Map entries come in the stored (name) order.

use std::convert::Infallible;
use std::sync::Arc;

use prost::Message;
use prost::bytes::BufMut;
use prost::encoding::{encode_varint, encoded_len_varint};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService};
use tonic::{Request, Response, Status};

use audrey_model::Reading;
use audrey_proto::v1;
use audrey_proto::v1::query_service_server::QueryServiceServer;

use super::query::{PageStream, QueryApi};

/// Wire types of the fields written here.
const LENGTH_DELIMITED: u32 = 2;
const VARINT: u32 = 0;
const FIXED64: u32 = 1;

const LIST_READINGS_PATH: &str = "/audrey.v1.QueryService/ListReadings";

/// One `audrey.v1.ReadingPage`, already encoded.
pub(crate) struct EncodedPage(pub Vec<u8>);

fn key(field: u32, wire_type: u32) -> u64 {
    u64::from((field << 3) | wire_type)
}

fn text_len(field_text: &str) -> usize {
    match field_text.len() {
        0 => 0,
        length => 1 + encoded_len_varint(length as u64) + length,
    }
}

fn put_text(out: &mut Vec<u8>, field: u32, text: &str) {
    if text.is_empty() {
        return;
    }
    encode_varint(key(field, LENGTH_DELIMITED), out);
    encode_varint(text.len() as u64, out);
    out.put_slice(text.as_bytes());
}

fn int64_len(value: i64) -> usize {
    match value {
        0 => 0,
        value => 1 + encoded_len_varint(value as u64),
    }
}

fn put_int64(out: &mut Vec<u8>, field: u32, value: i64) {
    if value != 0 {
        encode_varint(key(field, VARINT), out);
        // proto3 int64: two's complement as a 64-bit varint.
        encode_varint(value as u64, out);
    }
}

/// A map entry's own length: key (field 1) and value (field 2, always written).
fn value_entry_len(name: &str) -> usize {
    text_len(name) + 1 + 8
}

/// The length of one `audrey.v1.Reading` without its tag and length prefix.
pub(crate) fn reading_len(reading: &Reading) -> usize {
    let values: usize = reading
        .values
        .0
        .iter()
        .map(|(name, _)| {
            let entry = value_entry_len(name.as_str());
            1 + encoded_len_varint(entry as u64) + entry
        })
        .sum();
    text_len(UUID_TEXT_SAMPLE)
        + text_len(reading.sensor_id.as_str())
        + text_len(reading.location_id.as_str())
        + int64_len(reading.read_at.0)
        + int64_len(reading.received_at.0)
        + values
        + reading
            .message_id
            .as_ref()
            .map_or(0, |id| text_len(id.as_str()))
}

/// Any hyphenated UUID: they all have the same length.
const UUID_TEXT_SAMPLE: &str = "00000000-0000-0000-0000-000000000000";

fn put_reading(out: &mut Vec<u8>, reading: &Reading) {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    put_text(out, 1, reading.id.0.hyphenated().encode_lower(&mut id));
    put_text(out, 2, reading.sensor_id.as_str());
    put_text(out, 3, reading.location_id.as_str());
    put_int64(out, 4, reading.read_at.0);
    put_int64(out, 5, reading.received_at.0);
    for (name, value) in &reading.values.0 {
        encode_varint(key(6, LENGTH_DELIMITED), out);
        encode_varint(value_entry_len(name.as_str()) as u64, out);
        put_text(out, 1, name.as_str());
        encode_varint(key(2, FIXED64), out);
        out.put_f64_le(*value);
    }
    if let Some(message_id) = &reading.message_id {
        put_text(out, 7, message_id.as_str());
    }
}

/// The readings and cursor of one page as an encoded `audrey.v1.ReadingPage`.
pub(crate) fn encode_page(readings: &[Reading], next_cursor: Option<&str>) -> EncodedPage {
    let lengths: Vec<usize> = readings.iter().map(reading_len).collect();
    let total: usize = lengths
        .iter()
        .map(|length| 1 + encoded_len_varint(*length as u64) + length)
        .sum::<usize>()
        + next_cursor.map_or(0, text_len);
    let mut out = Vec::with_capacity(total);
    for (reading, length) in readings.iter().zip(lengths) {
        encode_varint(key(1, LENGTH_DELIMITED), &mut out);
        encode_varint(length as u64, &mut out);
        let start = out.len();
        put_reading(&mut out, reading);
        debug_assert_eq!(out.len() - start, length, "reading_len matches put_reading");
    }
    if let Some(cursor) = next_cursor {
        put_text(&mut out, 2, cursor);
    }
    debug_assert_eq!(out.len(), total);
    EncodedPage(out)
}

/// Sends [`EncodedPage`]s as they are and decodes `ListReadingsRequest`s with prost.
#[derive(Clone, Copy, Default)]
struct PageCodec;

impl Codec for PageCodec {
    type Encode = EncodedPage;
    type Decode = v1::ListReadingsRequest;
    type Encoder = PageCodec;
    type Decoder = PageCodec;

    fn encoder(&mut self) -> Self::Encoder {
        PageCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        PageCodec
    }
}

impl Encoder for PageCodec {
    type Item = EncodedPage;
    type Error = Status;

    fn encode(&mut self, page: EncodedPage, destination: &mut EncodeBuf<'_>) -> Result<(), Status> {
        destination.put_slice(&page.0);
        Ok(())
    }
}

impl Decoder for PageCodec {
    type Item = v1::ListReadingsRequest;
    type Error = Status;

    fn decode(
        &mut self,
        source: &mut DecodeBuf<'_>,
    ) -> Result<Option<v1::ListReadingsRequest>, Status> {
        v1::ListReadingsRequest::decode(source)
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

struct ListPages(Arc<QueryApi>);

impl ServerStreamingService<v1::ListReadingsRequest> for ListPages {
    type Response = EncodedPage;
    type ResponseStream = PageStream<EncodedPage>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<v1::ListReadingsRequest>) -> Self::Future {
        let api = Arc::clone(&self.0);
        Box::pin(async move { api.list_pages(request, encode_page).await })
    }
}

/// `audrey.v1.QueryService`: `ListReadings` through [`PageCodec`], the rest generated.
#[derive(Clone)]
pub(crate) struct QueryRoutes {
    api: Arc<QueryApi>,
    generated: QueryServiceServer<QueryApi>,
}

impl QueryRoutes {
    pub(crate) fn new(api: QueryApi) -> QueryRoutes {
        let api = Arc::new(api);
        QueryRoutes {
            generated: QueryServiceServer::from_arc(Arc::clone(&api)),
            api,
        }
    }
}

impl NamedService for QueryRoutes {
    const NAME: &'static str = <QueryServiceServer<QueryApi> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for QueryRoutes
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != LIST_READINGS_PATH {
            return self.generated.call(request);
        }
        let api = Arc::clone(&self.api);
        Box::pin(async move {
            let mut grpc = Grpc::new(PageCodec);
            Ok(grpc.server_streaming(ListPages(api), request).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audrey_model::{
        LocationId, MessageId, MetricName, Millis, ReadingId, ReadingValues, SensorId,
    };

    fn reading(
        read_at: i64,
        received_at: i64,
        message: Option<&str>,
        values: &[(&str, f64)],
    ) -> Reading {
        Reading {
            id: ReadingId(uuid::Uuid::now_v7()),
            sensor_id: SensorId::parse("sensor-1").unwrap(),
            location_id: LocationId::parse("loc-1").unwrap(),
            read_at: Millis(read_at),
            received_at: Millis(received_at),
            values: ReadingValues(
                values
                    .iter()
                    .map(|(name, value)| (MetricName::parse(name).unwrap(), *value))
                    .collect(),
            ),
            message_id: message.map(|text| MessageId::parse(text).unwrap()),
        }
    }

    #[test]
    fn an_encoded_page_decodes_as_the_generated_reading_page() {
        // Long enough for two-byte lengths: a message id of 128 bytes, a reading of 12 values.
        let long_message = format!("é{}", "x".repeat(126));
        let names: Vec<String> = (0..12).map(|index| format!("metric_{index:02}")).collect();
        let many: Vec<(&str, f64)> = names
            .iter()
            .enumerate()
            .map(|(index, name)| (name.as_str(), index as f64 - 5.5))
            .collect();
        let readings = vec![
            reading(
                1_700_000_000_000,
                1_700_000_000_123,
                Some("msg-1"),
                &[("humidity", 0.25), ("temperature", -3.5)],
            ),
            reading(0, -1, None, &[]),
            reading(
                -5,
                i64::MIN,
                Some(&long_message),
                &[("max", f64::MAX), ("zero", 0.0)],
            ),
            reading(i64::MAX, 7, None, &many),
        ];
        for cursor in [None, Some("some-cursor")] {
            let bytes = encode_page(&readings, cursor).0;
            let decoded = v1::ReadingPage::decode(bytes.as_slice()).unwrap();
            let expected = v1::ReadingPage {
                readings: readings
                    .iter()
                    .map(super::super::convert::reading)
                    .collect(),
                next_cursor: cursor.unwrap_or_default().to_string(),
            };
            assert_eq!(decoded, expected);
        }
    }

    #[test]
    fn an_empty_page_is_an_empty_message() {
        assert!(encode_page(&[], None).0.is_empty());
    }
}
