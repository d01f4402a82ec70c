//! `audrey.v1.ActService`: the act API over gRPC, calling the same engine methods as the HTTP
//! routes in `http/act`, with the same scopes and the one `ApiError` → status mapping.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use audrey_act::{
    ActError, Alert, AlertFilter, AlertStatus, Command, CommandStatus, Engine, EventFilter,
    RuleInput,
};
use audrey_model::{ErrorCode, FieldError, Reason};
use audrey_proto::v1;

use super::principal;
use crate::auth::Scope;
use crate::{ApiError, AppState};

pub struct ActApi(pub(crate) AppState);

pub(super) fn limit(requested: u32, default: usize, max: usize) -> Result<usize, Status> {
    match requested as usize {
        0 => Ok(default),
        wanted if wanted <= max => Ok(wanted),
        _ => Err(ApiError::invalid(
            "the request is invalid",
            vec![FieldError::new(
                "limit",
                Reason::OutOfRange,
                format!("must be at most {max}"),
            )],
        )
        .into()),
    }
}

pub(super) fn text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// Runs `work` on the engine on a blocking thread; its error goes through the one mapping.
pub(super) async fn on_engine<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Arc<Engine>) -> Result<T, ActError> + Send + 'static,
) -> Result<T, Status> {
    let engine = state.act.clone().ok_or_else(|| {
        Status::from(ApiError::new(
            ErrorCode::Unavailable,
            "acting on data is not enabled on this server",
        ))
    })?;
    tokio::task::spawn_blocking(move || work(&engine))
        .await
        .map_err(|_| Status::internal("internal error"))?
        .map_err(|error| ApiError::from(error).into())
}

impl ActApi {
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Arc<Engine>) -> Result<T, ActError> + Send + 'static,
    ) -> Result<T, Status> {
        on_engine(&self.0, work).await
    }
}

fn alert_message(alert: Alert) -> v1::Alert {
    v1::Alert {
        id: alert.id,
        rule_id: alert.rule_id,
        sensor_id: alert.sensor_id,
        severity: alert.severity.as_str().to_string(),
        status: alert.status.as_str().to_string(),
        raised_at_ms: alert.raised_at.0,
        raised_reading_id: alert.raised_reading_id.unwrap_or_default(),
        raised_value: alert.raised_value,
        acknowledged_at_ms: alert.acknowledged_at.map(|at| at.0),
        cleared_at_ms: alert.cleared_at.map(|at| at.0),
        cleared_reading_id: alert.cleared_reading_id.unwrap_or_default(),
    }
}

fn command_message(command: Command) -> v1::DeviceCommandRecord {
    v1::DeviceCommandRecord {
        id: command.id,
        sensor_id: command.sensor_id,
        name: command.name,
        payload_json: command.payload.to_string(),
        status: command.status.as_str().to_string(),
        created_at_ms: command.created_at.0,
        expires_at_ms: command.expires_at.0,
        updated_at_ms: command.updated_at.0,
        result: command.result.unwrap_or_default(),
        alert_id: command.alert_id.unwrap_or_default(),
    }
}

fn rule_message(rule: audrey_act::Rule) -> v1::Rule {
    v1::Rule {
        rule_json: serde_json::to_string(&rule).unwrap_or_default(),
        id: rule.id,
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(field: &str, text: &str) -> Result<T, Status> {
    let value: serde_json::Value =
        serde_json::from_str(if text.is_empty() { "null" } else { text }).map_err(|error| {
            Status::from(ApiError::malformed(format!(
                "{field} is not valid JSON: {error}"
            )))
        })?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut detail = FieldError::from_serde(error);
        detail.path = format!("{field}.{}", detail.path);
        ApiError::invalid("the request is invalid", vec![detail]).into()
    })
}

#[tonic::async_trait]
impl v1::act_service_server::ActService for ActApi {
    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let request = request.into_inner();
        let limit = limit(request.limit, 100, 1000)?;
        let after = match request.cursor.as_str() {
            "" => None,
            cursor => Some(cursor.parse::<i64>().map_err(|_| {
                Status::from(ApiError::invalid(
                    "the request is invalid",
                    vec![FieldError::new(
                        "cursor",
                        Reason::InvalidFormat,
                        "is not a cursor this server gave out",
                    )],
                ))
            })?),
        };
        let filter = EventFilter {
            kind: text(&request.r#type),
            sensor_id: text(&request.sensor_id),
            after,
            limit,
        };
        let events = self.run(move |engine| engine.events(&filter)).await?;
        let next_cursor = if events.len() == limit {
            events
                .last()
                .map(|(seq, _)| seq.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListEventsResponse {
            events: events
                .into_iter()
                .map(|(_, event)| v1::Event {
                    id: event.id,
                    r#type: event.kind,
                    at_ms: event.at.0,
                    sensor_id: event.sensor_id.unwrap_or_default(),
                    data_json: event.data.to_string(),
                })
                .collect(),
            next_cursor,
        }))
    }

    async fn list_status_log(
        &self,
        request: Request<v1::ListStatusLogRequest>,
    ) -> Result<Response<v1::ListStatusLogResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let request = request.into_inner();
        let limit = limit(request.limit, 100, 10_000)?;
        let sensor = text(&request.sensor_id);
        let log = self
            .run(move |engine| engine.status_log(sensor.as_deref(), limit))
            .await?;
        Ok(Response::new(v1::ListStatusLogResponse {
            changes: log
                .into_iter()
                .map(|change| v1::StatusChange {
                    sensor_id: change.sensor_id,
                    from: change
                        .from
                        .map(|from| from.as_str().to_string())
                        .unwrap_or_default(),
                    to: change.to.as_str().to_string(),
                    reason: change.reason,
                    at_ms: change.at.0,
                })
                .collect(),
        }))
    }

    async fn set_decommissioned(
        &self,
        request: Request<v1::SetDecommissionedRequest>,
    ) -> Result<Response<v1::SensorStatus>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let request = request.into_inner();
        let sensor = request.sensor_id.clone();
        let status = self
            .run(move |engine| engine.set_decommissioned(&sensor, request.decommissioned))
            .await?;
        Ok(Response::new(v1::SensorStatus {
            sensor_id: request.sensor_id,
            status: status.as_str().to_string(),
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<v1::ListAlertsRequest>,
    ) -> Result<Response<v1::ListAlertsResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let request = request.into_inner();
        let status = match request.status.as_str() {
            "" => None,
            other => Some(AlertStatus::parse(other).ok_or_else(|| {
                Status::from(ApiError::invalid(
                    "the request is invalid",
                    vec![FieldError::new(
                        "status",
                        Reason::InvalidFormat,
                        "must be active, acknowledged or cleared",
                    )],
                ))
            })?),
        };
        let filter = AlertFilter {
            status,
            sensor_id: text(&request.sensor_id),
            rule_id: text(&request.rule_id),
            limit: limit(request.limit, 100, 10_000)?,
        };
        let alerts = self.run(move |engine| engine.alerts(&filter)).await?;
        Ok(Response::new(v1::ListAlertsResponse {
            alerts: alerts.into_iter().map(alert_message).collect(),
        }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<v1::AlertRequest>,
    ) -> Result<Response<v1::Alert>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let id = request.into_inner().id;
        let alert = self
            .run(move |engine| engine.acknowledge_alert(&id))
            .await?;
        Ok(Response::new(alert_message(alert)))
    }

    async fn create_rule(
        &self,
        request: Request<v1::RuleRequest>,
    ) -> Result<Response<v1::Rule>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let input: RuleInput = parse_json("rule_json", &request.into_inner().rule_json)?;
        let rule = self.run(move |engine| engine.create_rule(input)).await?;
        Ok(Response::new(rule_message(rule)))
    }

    async fn list_rules(
        &self,
        request: Request<v1::ListRulesRequest>,
    ) -> Result<Response<v1::ListRulesResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let rules = self.run(|engine| engine.rules()).await?;
        Ok(Response::new(v1::ListRulesResponse {
            rules: rules.into_iter().map(rule_message).collect(),
        }))
    }

    async fn delete_rule(
        &self,
        request: Request<v1::RuleIdRequest>,
    ) -> Result<Response<v1::DeleteRuleResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let id = request.into_inner().id;
        self.run(move |engine| engine.delete_rule(&id)).await?;
        Ok(Response::new(v1::DeleteRuleResponse {}))
    }

    async fn create_command(
        &self,
        request: Request<v1::CreateCommandRequest>,
    ) -> Result<Response<v1::DeviceCommandRecord>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let request = request.into_inner();
        let payload: serde_json::Value = parse_json("payload_json", &request.payload_json)?;
        let command = self
            .run(move |engine| {
                engine.create_command(
                    &request.sensor_id,
                    &request.name,
                    payload,
                    request.ttl_seconds,
                )
            })
            .await?;
        Ok(Response::new(command_message(command)))
    }

    async fn get_command(
        &self,
        request: Request<v1::CommandIdRequest>,
    ) -> Result<Response<v1::DeviceCommandRecord>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let id = request.into_inner().id;
        let command = self.run(move |engine| engine.command(&id)).await?;
        Ok(Response::new(command_message(command)))
    }

    async fn list_commands(
        &self,
        request: Request<v1::ListCommandsRequest>,
    ) -> Result<Response<v1::ListCommandsResponse>, Status> {
        principal(&self.0, &request).await?.require(Scope::Read)?;
        let request = request.into_inner();
        let status = match request.status.as_str() {
            "" => None,
            other => Some(CommandStatus::parse(other).ok_or_else(|| {
                Status::from(ApiError::invalid(
                    "the request is invalid",
                    vec![FieldError::new(
                        "status",
                        Reason::InvalidFormat,
                        "is not a command status",
                    )],
                ))
            })?),
        };
        let limit = limit(request.limit, 100, 10_000)?;
        let sensor = text(&request.sensor_id);
        let commands = self
            .run(move |engine| engine.commands(sensor.as_deref(), status, limit))
            .await?;
        Ok(Response::new(v1::ListCommandsResponse {
            commands: commands.into_iter().map(command_message).collect(),
        }))
    }

    async fn cancel_command(
        &self,
        request: Request<v1::CommandIdRequest>,
    ) -> Result<Response<v1::DeviceCommandRecord>, Status> {
        principal(&self.0, &request).await?.require(Scope::Admin)?;
        let id = request.into_inner().id;
        let command = self.run(move |engine| engine.cancel_command(&id)).await?;
        Ok(Response::new(command_message(command)))
    }
}
