use std::time::Duration;

use audrey_proto::v1;
use audrey_proto::v1::reading_result::Status as Outcome;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::app::{GrpcApp, batch, reading, violations};

#[tokio::test]
async fn send_acknowledges_a_stored_reading_and_a_resend_is_a_duplicate() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let mut ingest = app.ingest().await;
    let first = ingest
        .send(reading("dev-1", 5, 21.5, "m-1"))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(first.status, Outcome::Accepted as i32);
    let again = ingest
        .send(reading("dev-1", 5, 21.5, "m-1"))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap();
    assert_eq!(
        (again.status, again.id.clone()),
        (Outcome::Duplicate as i32, first.id.clone())
    );
    let stored = app.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id.to_string(), first.id);
    assert_eq!(stored[0].values.get("temperature"), Some(21.5));
    app.stop().await;
}

#[tokio::test]
async fn send_with_an_invalid_reading_is_invalid_argument_naming_the_field() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let mut ingest = app.ingest().await;
    let status = ingest.send(reading("ghost", 5, 1.0, "")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields = violations(&status);
    assert_eq!(fields[0].0, "sensor_id");
    assert!(fields[0].1.starts_with("unknown_sensor"), "{fields:?}");
    let mut no_time = reading("dev-1", 0, 1.0, "");
    no_time.read_time = None;
    let status = ingest.send(no_time).await.unwrap_err();
    assert_eq!(violations(&status)[0].0, "read_at");
    let mut mismatched = reading("dev-1", 5, 1.0, "");
    mismatched.location_id = "elsewhere".into();
    assert!(
        violations(&ingest.send(mismatched).await.unwrap_err())[0]
            .1
            .starts_with("location_mismatch")
    );
    assert!(app.stored().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn send_batch_answers_one_result_per_reading_and_atomic_stores_all_or_none() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let mut ingest = app.ingest().await;
    let mixed = v1::ReadingBatch {
        batch_id: 7,
        readings: vec![
            reading("dev-1", 5, 1.0, "a"),
            reading("ghost", 5, 1.0, "b"),
            reading("dev-1", 4, 2.0, "c"),
        ],
        atomic: false,
    };
    let ack = ingest.send_batch(mixed.clone()).await.unwrap().into_inner();
    assert_eq!((ack.batch_id, ack.accepted, ack.rejected), (7, 2, 1));
    let statuses: Vec<i32> = ack.results.iter().map(|result| result.status).collect();
    assert_eq!(
        statuses,
        [
            Outcome::Accepted as i32,
            Outcome::Rejected as i32,
            Outcome::Accepted as i32
        ]
    );
    assert_eq!(ack.results[1].errors[0].reason, "unknown_sensor");

    let atomic = v1::ReadingBatch {
        atomic: true,
        readings: vec![reading("dev-1", 3, 1.0, "d"), reading("ghost", 3, 1.0, "e")],
        batch_id: 8,
    };
    let status = ingest.send_batch(atomic).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status)[0].0, "[1].sensor_id");
    assert_eq!(app.stored().len(), 2, "the atomic batch stored nothing");
    app.stop().await;
}

#[tokio::test]
async fn a_stream_acknowledges_every_batch_in_order() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let mut ingest = app.ingest().await;
    let batches: Vec<v1::ReadingBatch> = (0..40).map(|id| batch(id, "dev-1", 25)).collect();
    let mut acks = ingest
        .stream(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut order = Vec::new();
    while let Some(ack) = acks.next().await {
        let ack = ack.unwrap();
        assert_eq!(ack.accepted, 25);
        order.push(ack.batch_id);
    }
    assert_eq!(
        order,
        (0..40).collect::<Vec<_>>(),
        "acks come back in the order batches were sent"
    );
    assert_eq!(app.stored().len(), 1000);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_acks_cannot_make_the_server_take_every_batch() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    // A client with small HTTP/2 receive windows, so unread acks fill them quickly.
    let channel = tonic::transport::Endpoint::from_shared(app.grpc_url.clone())
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    let mut ingest = v1::ingest_service_client::IngestServiceClient::with_interceptor(
        channel,
        crate::app::Bearer(Some(app.token.clone())),
    );
    let batches = 2000u64;
    let outgoing = tokio_stream::iter((0..batches).map(|id| batch(id, "dev-1", 10)));
    let mut acks = ingest.stream(outgoing).await.unwrap().into_inner();
    // Read no ack: once the server's window of 8 batches, its 8-ack queue and the client's
    // 16 KiB receive window are full, the server stops taking batches instead of buffering.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first_look = app.stored().len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second_look = app.stored().len();
    assert_eq!(
        first_look, second_look,
        "ingest stopped while no ack was read"
    );
    // 16 KiB holds about 36 acks of 10 results; with both windows, well under 100 batches.
    assert!(
        second_look < 100 * 10,
        "{second_look} of {} readings taken without an ack read",
        batches * 10
    );
    let mut acknowledged = 0;
    while let Some(ack) = acks.next().await {
        acknowledged += ack.unwrap().accepted;
    }
    assert_eq!(
        acknowledged as u64,
        batches * 10,
        "once acks are read, every batch completes"
    );
    assert_eq!(app.stored().len() as u64, batches * 10);
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_stream_keeps_acknowledged_batches_and_never_half_stores_one() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let mut ingest = app.ingest().await;
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let response = ingest
        .stream(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap();
    let mut acks = response.into_inner();
    let producer = tokio::spawn(async move {
        for id in 0..1000 {
            if sender.send(batch(id, "dev-1", 20)).await.is_err() {
                return;
            }
        }
    });
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 5 {
        acknowledged.push(acks.next().await.unwrap().unwrap().batch_id);
    }
    drop(acks); // cancel mid-stream
    producer.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = app.stored();
    let mut per_batch = std::collections::HashMap::<String, usize>::new();
    for reading in &stored {
        let message = reading.message_id.as_ref().unwrap().as_str();
        let batch_id = message.split('-').next().unwrap().to_string();
        *per_batch.entry(batch_id).or_default() += 1;
    }
    for id in &acknowledged {
        assert_eq!(
            per_batch.get(&format!("b{id}")),
            Some(&20),
            "acknowledged batch {id} is stored whole"
        );
    }
    for (batch_id, count) in &per_batch {
        assert_eq!(*count, 20, "batch {batch_id} is half-stored");
    }
    app.stop().await;
}

#[tokio::test]
async fn missing_unknown_or_underprivileged_tokens_are_refused() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let status = app
        .ingest_as(None)
        .await
        .send(reading("dev-1", 1, 1.0, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app
        .ingest_as(Some("aud_wrong"))
        .await
        .send(reading("dev-1", 1, 1.0, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let reader = audrey_server::create_token(&*app.store, "r", &[audrey_server::Scope::Read], None)
        .unwrap()
        .1;
    let status = app
        .ingest_as(Some(&reader))
        .await
        .send(reading("dev-1", 1, 1.0, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .registry_as(Some(&reader))
        .await
        .delete_sensor(v1::DeleteRequest { id: "dev-1".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    app.register("dev-2", "site-a").await;
    let device = app.sensor_token("dev-1", &[audrey_server::Scope::Write]);
    let status = app
        .ingest_as(Some(&device))
        .await
        .send(reading("dev-2", 1, 1.0, ""))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "a sensor-bound token writes only its sensor"
    );
    assert!(app.stored().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_token_revoked_over_http_is_refused_over_grpc_at_once_though_it_was_cached() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let (record, writer) =
        audrey_server::create_token(&*app.store, "w", &[audrey_server::Scope::Write], None)
            .unwrap();
    let mut ingest = app.ingest_as(Some(&writer)).await;
    // Two calls: the second is answered from the token cache.
    for message in ["one", "two"] {
        ingest
            .send(reading("dev-1", 1, 1.0, message))
            .await
            .unwrap();
    }
    let revoked = reqwest::Client::new()
        .delete(format!("{}/api/v1/tokens/{}", app.http_url, record.id))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    let status = ingest
        .send(reading("dev-1", 1, 1.0, "three"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(app.stored().len(), 2);
    app.stop().await;
}
