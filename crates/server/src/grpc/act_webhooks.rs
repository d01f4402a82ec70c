//! `audrey.v1.WebhookService`: webhook subscriptions and deliveries over gRPC, calling the
//! same engine methods as the HTTP routes in `http/act/webhooks.rs`, with the same admin
//! scope and the one `ApiError` → status mapping. The secret is taken on create and never
//! answered back (the record type has no field for it).

use tonic::{Request, Response, Status};

use audrey_act::{Attempt, Delivery, Subscription, SubscriptionFilter, SubscriptionInput};
use audrey_model::{FieldError, Reason};
use audrey_proto::v1;

use super::act::{limit, on_engine, text};
use super::principal;
use crate::auth::Scope;
use crate::{ApiError, AppState};

pub struct WebhookApi(pub(crate) AppState);

fn filter_message(filter: SubscriptionFilter) -> v1::SubscriptionFilter {
    v1::SubscriptionFilter {
        sensor_id: filter.sensor_id.unwrap_or_default(),
        severity: filter.severity.unwrap_or_default(),
    }
}

fn subscription_message(subscription: Subscription) -> v1::Subscription {
    v1::Subscription {
        id: subscription.id,
        url: subscription.url,
        event_types: subscription.event_types,
        filter: Some(filter_message(subscription.filter)),
        enabled: subscription.enabled,
        consecutive_failures: subscription.consecutive_failures,
        created_at_ms: subscription.created_at.0,
    }
}

fn delivery_message(delivery: Delivery) -> v1::Delivery {
    v1::Delivery {
        id: delivery.id,
        subscription_id: delivery.subscription_id,
        event_id: delivery.event_id,
        event_type: delivery.event_type,
        status: delivery.status.as_str().to_string(),
        attempts: delivery.attempts,
        next_attempt_at_ms: delivery.next_attempt_at.0,
        created_at_ms: delivery.created_at.0,
        last_error: delivery.last_error.unwrap_or_default(),
    }
}

fn attempt_message(attempt: Attempt) -> v1::Attempt {
    v1::Attempt {
        delivery_id: attempt.delivery_id,
        at_ms: attempt.at.0,
        status_code: attempt.status_code.map(u32::from),
        latency_ms: attempt.latency_ms,
        error: attempt.error.unwrap_or_default(),
    }
}

fn missing(field: &str) -> Status {
    ApiError::invalid(
        "the request is invalid",
        vec![FieldError::new(field, Reason::MissingField, "is required")],
    )
    .into()
}

#[tonic::async_trait]
impl v1::webhook_service_server::WebhookService for WebhookApi {
    async fn create_subscription(
        &self,
        request: Request<v1::CreateSubscriptionRequest>,
    ) -> Result<Response<v1::Subscription>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let request = request.into_inner();
        let filter = request.filter.unwrap_or_default();
        let input = SubscriptionInput {
            url: request.url,
            event_types: request.event_types,
            filter: SubscriptionFilter {
                sensor_id: text(&filter.sensor_id),
                severity: text(&filter.severity),
            },
            secret: request.secret,
            enabled: request.enabled.unwrap_or(true),
        };
        let created = on_engine(&self.0, move |engine| engine.create_subscription(input)).await?;
        Ok(Response::new(subscription_message(created)))
    }

    async fn get_subscription(
        &self,
        request: Request<v1::SubscriptionIdRequest>,
    ) -> Result<Response<v1::Subscription>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let id = request.into_inner().id;
        let subscription = on_engine(&self.0, move |engine| engine.subscription(&id)).await?;
        Ok(Response::new(subscription_message(subscription)))
    }

    async fn list_subscriptions(
        &self,
        request: Request<v1::ListSubscriptionsRequest>,
    ) -> Result<Response<v1::ListSubscriptionsResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let subscriptions = on_engine(&self.0, |engine| engine.subscriptions()).await?;
        Ok(Response::new(v1::ListSubscriptionsResponse {
            subscriptions: subscriptions
                .into_iter()
                .map(subscription_message)
                .collect(),
        }))
    }

    async fn update_subscription(
        &self,
        request: Request<v1::UpdateSubscriptionRequest>,
    ) -> Result<Response<v1::Subscription>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let request = request.into_inner();
        let enabled = request.enabled.ok_or_else(|| missing("enabled"))?;
        let id = request.id;
        let subscription = on_engine(&self.0, move |engine| {
            engine.set_subscription_enabled(&id, enabled)
        })
        .await?;
        Ok(Response::new(subscription_message(subscription)))
    }

    async fn delete_subscription(
        &self,
        request: Request<v1::SubscriptionIdRequest>,
    ) -> Result<Response<v1::DeleteSubscriptionResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let id = request.into_inner().id;
        on_engine(&self.0, move |engine| engine.delete_subscription(&id)).await?;
        Ok(Response::new(v1::DeleteSubscriptionResponse {}))
    }

    async fn list_deliveries(
        &self,
        request: Request<v1::ListDeliveriesRequest>,
    ) -> Result<Response<v1::ListDeliveriesResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let request = request.into_inner();
        let limit = limit(request.limit, 100, 10_000)?;
        let subscription = text(&request.subscription_id);
        let deliveries = on_engine(&self.0, move |engine| {
            if let Some(id) = &subscription {
                engine.subscription(id)?;
            }
            engine.deliveries(subscription.as_deref(), limit)
        })
        .await?;
        Ok(Response::new(v1::ListDeliveriesResponse {
            deliveries: deliveries.into_iter().map(delivery_message).collect(),
        }))
    }

    async fn list_attempts(
        &self,
        request: Request<v1::DeliveryIdRequest>,
    ) -> Result<Response<v1::ListAttemptsResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let id = request.into_inner().id;
        let attempts = on_engine(&self.0, move |engine| engine.delivery_attempts(&id)).await?;
        Ok(Response::new(v1::ListAttemptsResponse {
            attempts: attempts.into_iter().map(attempt_message).collect(),
        }))
    }

    async fn redeliver(
        &self,
        request: Request<v1::DeliveryIdRequest>,
    ) -> Result<Response<v1::Delivery>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let id = request.into_inner().id;
        let delivery = on_engine(&self.0, move |engine| engine.redeliver(&id)).await?;
        Ok(Response::new(delivery_message(delivery)))
    }
}
