use audrey_proto::v1;
use audrey_proto::v1::{device_message, server_message};
use audrey_server::Scope;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::app::{GrpcApp, batch};

fn readings(batch_id: u64, sensor: &str) -> v1::DeviceMessage {
    v1::DeviceMessage {
        message: Some(device_message::Message::Readings(batch(
            batch_id, sensor, 5,
        ))),
    }
}

#[tokio::test]
async fn a_device_session_opens_then_acknowledges_each_batch() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    let token = app.sensor_token("dev-1", &[Scope::Write]);
    let mut devices = app.devices_as(&token).await;
    let outgoing = tokio_stream::iter((0..3).map(|id| readings(id, "dev-1")));
    let mut replies = devices.session(outgoing).await.unwrap().into_inner();
    let first = replies.next().await.unwrap().unwrap();
    let Some(server_message::Message::Opened(opened)) = first.message else {
        panic!("{first:?}")
    };
    assert_eq!(opened.sensor_id, "dev-1");
    let mut acked = Vec::new();
    while let Some(reply) = replies.next().await {
        let Some(server_message::Message::Ack(ack)) = reply.unwrap().message else {
            panic!("an ack")
        };
        assert_eq!(ack.accepted, 5);
        acked.push(ack.batch_id);
    }
    assert_eq!(acked, [0, 1, 2]);
    assert_eq!(app.stored().len(), 15);
    app.stop().await;
}

#[tokio::test]
async fn a_session_needs_a_sensor_bound_token_and_writes_only_that_sensor() {
    let app = GrpcApp::spawn().await;
    app.register("dev-1", "site-a").await;
    app.register("dev-2", "site-a").await;
    let unbound = app.token.clone();
    let status = app
        .devices_as(&unbound)
        .await
        .session(tokio_stream::iter(vec![readings(0, "dev-1")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let token = app.sensor_token("dev-1", &[Scope::Write]);
    let mut replies = app
        .devices_as(&token)
        .await
        .session(tokio_stream::iter(vec![readings(0, "dev-2")]))
        .await
        .unwrap()
        .into_inner();
    let _opened = replies.next().await.unwrap().unwrap();
    let status = replies.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(app.stored().is_empty());
    app.stop().await;
}
