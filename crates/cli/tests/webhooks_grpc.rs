//! Webhook subscriptions and deliveries over gRPC (`audrey.v1.WebhookService`) against a real
//! `audrey serve` and a real receiver: create/get/list/update/delete, a delivery retried and
//! logged, a redelivery keeping its id; the secret never comes back; bad input names the
//! field; a read-only token is refused; unknown ids are NOT_FOUND.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/server_process.rs"]
mod support;
#[path = "support/webhook_receiver.rs"]
mod webhook_receiver;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message;
use serde_json::{Value, json};
use tonic_types::StatusExt;

use audrey_proto::v1;
use support::ServerProcess;
use webhook_receiver::{Receiver, SECRET, eventually, start_receiver};

type Webhooks = v1::webhook_service_client::WebhookServiceClient<tonic::transport::Channel>;

fn authorised<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

async fn http(server: &ServerProcess, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{}/api/v1{path}", server.base_url))
        .bearer_auth(&server.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

/// A location, the sensor hot-1, and a rule raising above 30 (created over gRPC).
async fn prepare(server: &ServerProcess, channel: tonic::transport::Channel) {
    http(
        server,
        reqwest::Method::PUT,
        "/locations/lab",
        json!({"name": "Lab", "latitude": 1.0, "longitude": 2.0}),
    )
    .await;
    http(
        server,
        reqwest::Method::PUT,
        "/sensors/hot-1",
        json!({"kind": "climate", "location_id": "lab"}),
    )
    .await;
    let rule = json!({"name": "hot", "scope": {"type": "sensor", "id": "hot-1"},
        "metric": "temperature", "condition": ">", "threshold": 30, "clear_threshold": 28,
        "severity": "critical"});
    v1::act_service_client::ActServiceClient::new(channel)
        .create_rule(authorised(
            v1::RuleRequest {
                rule_json: rule.to_string(),
            },
            &server.token,
        ))
        .await
        .unwrap();
}

async fn send_reading(server: &ServerProcess, value: f64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = http(
        server,
        reqwest::Method::POST,
        "/readings",
        json!({"sensor_id": "hot-1", "read_at": now, "values": {"temperature": value}}),
    )
    .await;
    assert_eq!(body["accepted"], 1, "{body}");
}

async fn attempt_codes(webhooks: &mut Webhooks, token: &str, delivery: &str) -> Vec<u32> {
    webhooks
        .list_attempts(authorised(
            v1::DeliveryIdRequest {
                id: delivery.into(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .attempts
        .iter()
        .map(|attempt| attempt.status_code.unwrap())
        .collect()
}

#[tokio::test]
async fn subscriptions_deliveries_and_redelivery_work_over_grpc() {
    let receiver = Arc::new(Receiver {
        refuse: AtomicUsize::new(1),
        ..Receiver::default()
    });
    let url = start_receiver(receiver.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with(dir.path(), &["--webhook-initial-backoff-ms", "100"]).await;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    prepare(&server, channel.clone()).await;
    let token = server.token.clone();
    let mut webhooks = Webhooks::new(channel);

    let refused = webhooks
        .create_subscription(authorised(
            v1::CreateSubscriptionRequest {
                url: "ftp://x".into(),
                event_types: vec!["alert.rasied".into()],
                secret: "short".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&refused), ["url", "event_types[0]", "secret"]);

    let created = webhooks
        .create_subscription(authorised(
            v1::CreateSubscriptionRequest {
                url: url.clone(),
                event_types: vec!["alert.raised".into()],
                filter: Some(v1::SubscriptionFilter {
                    sensor_id: "hot-1".into(),
                    severity: String::new(),
                }),
                secret: SECRET.into(),
                enabled: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.enabled, "enabled unless asked otherwise");
    assert_eq!(created.filter.as_ref().unwrap().sensor_id, "hot-1");
    let id = created.id.clone();
    let listed = webhooks
        .list_subscriptions(authorised(v1::ListSubscriptionsRequest {}, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.subscriptions, std::slice::from_ref(&created));
    let fetched = webhooks
        .get_subscription(authorised(
            v1::SubscriptionIdRequest { id: id.clone() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, created);
    for answer in [created.encode_to_vec(), listed.encode_to_vec()] {
        assert!(
            !answer
                .windows(SECRET.len())
                .any(|window| window == SECRET.as_bytes()),
            "the secret is never answered back"
        );
    }

    // A read-only token may not manage webhooks, as over HTTP.
    let reader = http(
        &server,
        reqwest::Method::POST,
        "/tokens",
        json!({"scopes": ["read"]}),
    )
    .await;
    let denied = webhooks
        .list_subscriptions(authorised(
            v1::ListSubscriptionsRequest {},
            reader["token"].as_str().unwrap(),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // A reading raises the alert; the receiver refuses the first attempt, takes the second.
    send_reading(&server, 35.0).await;
    let (delivery_id, body) = eventually("the alert.raised delivery", async || {
        receiver.accepted.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(body["type"], "alert.raised");
    let deliveries = webhooks
        .list_deliveries(authorised(
            v1::ListDeliveriesRequest {
                subscription_id: id.clone(),
                limit: 0,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].id, delivery_id);
    assert_eq!(deliveries[0].event_type, "alert.raised");
    assert_eq!(deliveries[0].status, "delivered");
    assert_eq!(deliveries[0].attempts, 2);
    let all = webhooks
        .list_deliveries(authorised(v1::ListDeliveriesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(all, deliveries);
    assert_eq!(
        attempt_codes(&mut webhooks, &token, &delivery_id).await,
        [503, 204]
    );

    // Redelivery over gRPC: the receiver sees the same idempotency id again.
    let redelivered = webhooks
        .redeliver(authorised(
            v1::DeliveryIdRequest {
                id: delivery_id.clone(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redelivered.id, delivery_id);
    assert_eq!(redelivered.status, "pending");
    let (again, _) = eventually("the redelivery", async || {
        receiver.accepted.lock().unwrap().get(1).cloned()
    })
    .await;
    assert_eq!(again, delivery_id);
    let codes = eventually("the redelivery's attempt in the log", async || {
        let codes = attempt_codes(&mut webhooks, &token, &delivery_id).await;
        (codes.len() == 3).then_some(codes)
    })
    .await;
    assert_eq!(codes, [503, 204, 204]);
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);

    // Update: `enabled` is required; disabling shows in get.
    let missing = webhooks
        .update_subscription(authorised(
            v1::UpdateSubscriptionRequest {
                id: id.clone(),
                enabled: None,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&missing), ["enabled"]);
    let disabled = webhooks
        .update_subscription(authorised(
            v1::UpdateSubscriptionRequest {
                id: id.clone(),
                enabled: Some(false),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!disabled.enabled);
    let fetched = webhooks
        .get_subscription(authorised(
            v1::SubscriptionIdRequest { id: id.clone() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!fetched.enabled);

    // Delete; afterwards the subscription and its deliveries are NOT_FOUND, as are unknown ids.
    webhooks
        .delete_subscription(authorised(
            v1::SubscriptionIdRequest { id: id.clone() },
            &token,
        ))
        .await
        .unwrap();
    let gone = webhooks
        .get_subscription(authorised(
            v1::SubscriptionIdRequest { id: id.clone() },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let gone = webhooks
        .list_deliveries(authorised(
            v1::ListDeliveriesRequest {
                subscription_id: id.clone(),
                limit: 0,
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let unknown = webhooks
        .list_attempts(authorised(
            v1::DeliveryIdRequest { id: "nope".into() },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let unknown = webhooks
        .redeliver(authorised(
            v1::DeliveryIdRequest { id: "nope".into() },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.terminate().await;
}
