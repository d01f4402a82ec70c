use audrey_proto::v1;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::app::{GrpcApp, batch, now_millis, reading, violations};

async fn seeded(app: &GrpcApp, count: u64) {
    app.register("dev-1", "site-a").await;
    app.register("dev-2", "site-b").await;
    let mut ingest = app.ingest().await;
    for id in 0..count {
        ingest.send_batch(batch(id, "dev-1", 50)).await.unwrap();
    }
    ingest
        .send(reading("dev-2", 1, 99.0, "other"))
        .await
        .unwrap();
}

async fn collect(app: &GrpcApp, request: v1::ListReadingsRequest) -> Vec<v1::Reading> {
    let mut pages = app
        .query()
        .await
        .list_readings(request)
        .await
        .unwrap()
        .into_inner();
    let mut readings = Vec::new();
    while let Some(page) = pages.next().await {
        readings.extend(page.unwrap().readings);
    }
    readings
}

#[tokio::test]
async fn list_readings_streams_every_match_in_order_with_filters_and_limits() {
    let app = GrpcApp::spawn().await;
    seeded(&app, 100).await; // 5,000 readings of dev-1, several pages
    let all = collect(
        &app,
        v1::ListReadingsRequest {
            sensor_id: "dev-1".into(),
            order: v1::Order::Oldest as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 5000);
    assert!(
        all.windows(2)
            .all(|pair| (pair[0].read_at_ms, &pair[0].id) <= (pair[1].read_at_ms, &pair[1].id))
    );
    let newest = collect(
        &app,
        v1::ListReadingsRequest {
            sensor_id: "dev-1".into(),
            limit: 7,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(newest.len(), 7);
    assert_eq!(newest[0].read_at_ms, all.last().unwrap().read_at_ms);
    let by_location = collect(
        &app,
        v1::ListReadingsRequest {
            location_id: "site-b".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_location.len(), 1);
    assert_eq!(by_location[0].values["temperature"], 99.0);
    let now = now_millis();
    let none = collect(
        &app,
        v1::ListReadingsRequest {
            from_ms: Some(now + 3_600_000),
            to_ms: Some(now + 7_200_000),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn get_reading_and_latest_answer_or_say_not_found() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let mut ingest = app.ingest().await;
    let old = ingest
        .send(reading("dev-1", 3600, 1.0, "old"))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    ingest.send(reading("dev-1", 60, 2.0, "new")).await.unwrap();
    ingest
        .send(reading("dev-1", 7200, 3.0, "older-but-last"))
        .await
        .unwrap();
    let mut query = app.query().await;
    let found = query
        .get_reading(v1::GetReadingRequest { id: old.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            found.id,
            found.values["temperature"],
            found.message_id.as_str()
        ),
        (old.id, 1.0, "old")
    );
    let latest = query
        .latest(v1::LatestRequest {
            sensor_id: "dev-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        latest.values["temperature"], 2.0,
        "the newest measured, not the last received"
    );
    let status = query
        .get_reading(v1::GetReadingRequest {
            id: "0190a0b0-0000-7000-8000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = query
        .get_reading(v1::GetReadingRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = query
        .latest(v1::LatestRequest {
            sensor_id: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = query
        .list_readings(v1::ListReadingsRequest {
            cursor: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // An empty or backwards time range is refused naming `to`, as over HTTP.
    for (from, to) in [(2_000, 2_000), (3_000, 1_000)] {
        let status = query
            .list_readings(v1::ListReadingsRequest {
                sensor_id: "dev-1".into(),
                from_ms: Some(from),
                to_ms: Some(to),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violations(&status)[0].0, "to");
    }
    app.stop().await;
}

#[tokio::test]
async fn health_answers_serving_and_reflection_lists_the_services() {
    let app = GrpcApp::spawn().await;
    let channel = app.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in [
        "",
        "audrey.v1.IngestService",
        "audrey.v1.QueryService",
        "SensorService",
    ] {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            answer.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(listed)) = answer.message_response else {
        panic!("{answer:?}")
    };
    let names: Vec<String> = listed
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in [
        "audrey.v1.IngestService",
        "audrey.v1.QueryService",
        "audrey.v1.RegistryService",
        "audrey.v1.DeviceService",
        "audrey.v1.ActService",
        "audrey.v1.WebhookService",
        "SensorService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from {names:?}"
        );
    }
    app.stop().await;
}

/// 2,100 readings of 64 metrics with 64-character names are ~10 MB: one page of 2,000
/// would be over the 4 MiB a gRPC client (this one included) accepts by default.
#[tokio::test]
async fn list_readings_splits_pages_a_client_could_not_accept_and_each_part_resumes() {
    let app = GrpcApp::spawn().await;
    app.register("wide-1", "site-a").await;
    let names: Vec<String> = (0..64)
        .map(|index| format!("{index:02}{}", "m".repeat(62)))
        .collect();
    let mut ingest = app.ingest().await;
    for batch_id in 0..21u64 {
        let readings = (0..100u64)
            .map(|index| {
                let n = batch_id * 100 + index;
                v1::ReadingInput {
                    sensor_id: "wide-1".into(),
                    read_time: Some(v1::reading_input::ReadTime::ReadAtMs(
                        now_millis() - 3_600_000 + n as i64,
                    )),
                    values: names.iter().map(|name| (name.clone(), n as f64)).collect(),
                    message_id: format!("w{n}"),
                    ..Default::default()
                }
            })
            .collect();
        let ack = ingest
            .send_batch(v1::ReadingBatch {
                readings,
                batch_id,
                atomic: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ack.accepted, 100);
    }
    let request = v1::ListReadingsRequest {
        sensor_id: "wide-1".into(),
        order: v1::Order::Oldest as i32,
        ..Default::default()
    };
    let mut pages = app
        .query()
        .await
        .list_readings(request.clone())
        .await
        .unwrap()
        .into_inner();
    let mut parts = Vec::new();
    while let Some(page) = pages.next().await {
        parts.push(page.expect("every page fits the client's default limit"));
    }
    let all: Vec<&v1::Reading> = parts.iter().flat_map(|page| &page.readings).collect();
    assert_eq!(all.len(), 2100);
    assert!(all.iter().enumerate().all(|(n, reading)| {
        reading.values.len() == 64 && reading.values[&names[7]] == n as f64
    }));
    assert!(parts.len() > 3, "{} parts", parts.len());
    // Resuming from a part's cursor continues right after that part.
    let first = &parts[0];
    assert!(!first.next_cursor.is_empty());
    let resumed = collect(
        &app,
        v1::ListReadingsRequest {
            cursor: first.next_cursor.clone(),
            ..request
        },
    )
    .await;
    assert_eq!(resumed.len(), 2100 - first.readings.len());
    assert_eq!(resumed[0].id, all[first.readings.len()].id);
    app.stop().await;
}
