//! Commands end to end: a real `audrey serve` process and a device played by a real gRPC
//! client. Queued while the device is away, kept across a SIGKILL, delivered in order when it
//! connects, acknowledged, its result reported; a command whose ttl passed is never delivered.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/server_process.rs"]
mod support;

use std::time::Duration;

use serde_json::{Value, json};
use tokio_stream::StreamExt;

use audrey_proto::v1;
use audrey_proto::v1::{device_message, server_message};
use support::ServerProcess;

async fn call(
    server: &ServerProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", server.base_url))
        .bearer_auth(&server.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null),
    )
}

async fn command_status(server: &ServerProcess, id: &str) -> String {
    let (status, body) = call(
        server,
        reqwest::Method::GET,
        &format!("/commands/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["status"].as_str().unwrap().to_string()
}

async fn wait_for_status(server: &ServerProcess, id: &str, wanted: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = command_status(server, id).await;
        if status == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "command {id} stayed {status}, wanted {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Device {
    outgoing: tokio::sync::mpsc::Sender<v1::DeviceMessage>,
    replies: tonic::Streaming<v1::ServerMessage>,
}

impl Device {
    async fn connect(server: &ServerProcess, token: &str) -> Device {
        let channel = tonic::transport::Channel::from_shared(server.grpc_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = v1::device_service_client::DeviceServiceClient::new(channel);
        let (outgoing, receiver) = tokio::sync::mpsc::channel(8);
        let mut request =
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let mut replies = client.session(request).await.unwrap().into_inner();
        let opened = replies.next().await.unwrap().unwrap();
        assert!(matches!(
            opened.message,
            Some(server_message::Message::Opened(_))
        ));
        Device { outgoing, replies }
    }

    async fn next_command(&mut self) -> v1::DeviceCommand {
        let reply = tokio::time::timeout(Duration::from_secs(20), self.replies.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match reply.message {
            Some(server_message::Message::Command(command)) => command,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    async fn send(&self, message: device_message::Message) {
        self.outgoing
            .send(v1::DeviceMessage {
                message: Some(message),
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn commands_wait_for_the_device_survive_a_kill_and_are_never_delivered_stale() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(dir.path(), &["--act-tick-ms", "100"]).await;
    let (status, _) = call(
        &server,
        reqwest::Method::PUT,
        "/locations/lab",
        Some(json!({"name": "Lab", "latitude": 1.0, "longitude": 2.0})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &server,
        reqwest::Method::PUT,
        "/sensors/fan-1",
        Some(json!({"kind": "fan", "location_id": "lab"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, token) = call(
        &server,
        reqwest::Method::POST,
        "/tokens",
        Some(json!({"name": "fan-1", "scopes": ["write"], "sensor_id": "fan-1"})),
    )
    .await;
    let device_token = token["token"].as_str().unwrap().to_string();

    let mut ids = Vec::new();
    for (name, ttl) in [("fan_on", 600), ("reboot", 1), ("fan_speed", 600)] {
        let (status, created) = call(
            &server,
            reqwest::Method::POST,
            "/sensors/fan-1/commands",
            Some(json!({"name": name, "payload": {"n": ttl}, "ttl": ttl})),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["status"], "queued");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let (status, refused) = call(
        &server,
        reqwest::Method::POST,
        "/sensors/fan-1/commands",
        Some(json!({"name": "", "ttl": 0})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(refused["error"]["details"][0]["path"], "name");

    server.kill_hard().await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the 1 s command goes stale
    let server = ServerProcess::start_with(dir.path(), &["--act-tick-ms", "100"]).await;

    let mut device = Device::connect(&server, &device_token).await;
    let first = device.next_command().await;
    let second = device.next_command().await;
    assert_eq!(
        (first.id.as_str(), second.id.as_str()),
        (ids[0].as_str(), ids[2].as_str()),
        "in order, the stale one skipped"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&first.payload_json).unwrap(),
        json!({"n": 600})
    );
    wait_for_status(&server, &ids[1], "expired").await;
    assert_eq!(command_status(&server, &ids[0]).await, "sent");

    device
        .send(device_message::Message::CommandAck(v1::CommandAck {
            command_id: first.id.clone(),
        }))
        .await;
    wait_for_status(&server, &first.id, "delivered").await;
    device
        .send(device_message::Message::CommandResult(v1::CommandResult {
            command_id: first.id.clone(),
            success: true,
            detail: "running".into(),
        }))
        .await;
    wait_for_status(&server, &first.id, "succeeded").await;
    device
        .send(device_message::Message::CommandResult(v1::CommandResult {
            command_id: second.id.clone(),
            success: false,
            detail: "no such speed".into(),
        }))
        .await;
    wait_for_status(&server, &second.id, "failed").await;

    // Created while connected: handed over at once on the live session.
    let (_, live) = call(
        &server,
        reqwest::Method::POST,
        "/sensors/fan-1/commands",
        Some(json!({"name": "fan_off", "ttl": 60})),
    )
    .await;
    assert_eq!(device.next_command().await.id, live["id"].as_str().unwrap());

    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        &format!("/commands/{}/cancel", ids[0]),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 409, "a finished command cannot be cancelled");
    let (_, listed) = call(
        &server,
        reqwest::Method::GET,
        "/sensors/fan-1/commands",
        None,
    )
    .await;
    let statuses: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "expired", "failed", "sent"]);
    let (_, events) = call(
        &server,
        reqwest::Method::GET,
        "/events?type=command.updated&limit=1000",
        None,
    )
    .await;
    assert!(events["count"].as_u64().unwrap() >= 10, "{events}");
    drop(device);
    server.terminate().await;
}
