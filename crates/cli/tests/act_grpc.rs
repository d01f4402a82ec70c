//! The act API over gRPC against a real `audrey serve`: rules, alerts, commands, events, the
//! status log; bad input is refused naming the field, like over HTTP.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/server_process.rs"]
mod support;

use serde_json::json;

use audrey_proto::v1;
use support::ServerProcess;

fn authorised<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn rules_alerts_and_commands_work_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let http = reqwest::Client::new();
    let api = format!("{}/api/v1", server.base_url);
    for (path, body) in [
        (
            "/locations/lab",
            json!({"name": "Lab", "latitude": 1.0, "longitude": 2.0}),
        ),
        (
            "/sensors/hot-1",
            json!({"kind": "climate", "location_id": "lab"}),
        ),
    ] {
        let response = http
            .put(format!("{api}{path}"))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let channel = tonic::transport::Channel::from_shared(server.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut act = v1::act_service_client::ActServiceClient::new(channel);
    let token = server.token.clone();

    let refused = act
        .create_rule(authorised(v1::RuleRequest { rule_json: r#"{"scope": {"type": "all"}, "metric": "t", "condition": ">", "severity": "loud"}"#.into() }, &token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("invalid"),
        "{}",
        refused.message()
    );

    let rule = act
        .create_rule(authorised(
            v1::RuleRequest { rule_json: json!({"scope": {"type": "sensor", "id": "hot-1"}, "metric": "temperature", "condition": ">", "threshold": 30, "severity": "major"}).to_string() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let response = http
        .post(format!("{api}/readings"))
        .bearer_auth(&token)
        .json(&json!({"sensor_id": "hot-1", "read_at": now, "values": {"temperature": 31.5}}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let alerts = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let alerts = act
                .list_alerts(authorised(
                    v1::ListAlertsRequest {
                        rule_id: rule.id.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
                .alerts;
            if !alerts.is_empty() {
                return alerts;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].raised_value, Some(31.5));
    let acknowledged = act
        .acknowledge_alert(authorised(
            v1::AlertRequest {
                id: alerts[0].id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acknowledged.status, "acknowledged");

    let command = act
        .create_command(authorised(
            v1::CreateCommandRequest {
                sensor_id: "hot-1".into(),
                name: "fan_on".into(),
                payload_json: r#"{"speed": 1}"#.into(),
                ttl_seconds: 60,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(command.status, "queued");
    let cancelled = act
        .cancel_command(authorised(
            v1::CommandIdRequest {
                id: command.id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, "cancelled");
    let missing = act
        .get_command(authorised(
            v1::CommandIdRequest { id: "nope".into() },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let events = act
        .list_events(authorised(
            v1::ListEventsRequest {
                r#type: "alert.raised".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    let log = act
        .list_status_log(authorised(
            v1::ListStatusLogRequest {
                sensor_id: "hot-1".into(),
                limit: 0,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log.changes[0].to, "online");
    server.terminate().await;
}
