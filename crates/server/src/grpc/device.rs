//! `audrey.v1.DeviceService`: a device's long-lived session: readings up, acks and commands
//! down, command acknowledgements and results up.

use std::pin::Pin;

use futures_util::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use audrey_act::{Command, Engine};
use audrey_proto::v1;
use audrey_proto::v1::{device_message, server_message};

use super::{acknowledge_batches, principal};
use crate::auth::Scope;
use crate::{ApiError, AppState};

pub struct DeviceApi(pub(crate) AppState);

type ServerStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<v1::ServerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::device_service_server::DeviceService for DeviceApi {
    type SessionStream = ServerStream;

    async fn session(
        &self,
        request: Request<Streaming<v1::DeviceMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let principal = principal(&self.0, &request).await?;
        principal.require(Scope::Write)?;
        let Some(sensor) = principal.sensor.clone() else {
            return Err(Status::permission_denied(
                "a device session needs a token bound to its sensor",
            ));
        };
        let engine = self.0.act.clone();
        // Registered before the first reply, so no command created from now on is missed.
        let commands: ServerStream = match &engine {
            Some(engine) => {
                let (engine, sensor_id) = (engine.clone(), sensor.to_string());
                let session =
                    tokio::task::spawn_blocking(move || engine.connect_device(&sensor_id))
                        .await
                        .map_err(|_| Status::internal("internal error"))?
                        .map_err(|error| Status::from(ApiError::from(error)))?;
                Box::pin(futures_util::stream::unfold(
                    session,
                    |mut session| async move {
                        let command = session.commands.recv().await?;
                        Some((Ok(command_message(command)), session))
                    },
                ))
            }
            None => Box::pin(futures_util::stream::empty()),
        };
        let sensor_id = sensor.to_string();
        let batches = request.into_inner().filter_map(move |message| {
            let (engine, sensor_id) = (engine.clone(), sensor_id.clone());
            async move {
                match message {
                    Ok(v1::DeviceMessage {
                        message: Some(device_message::Message::Readings(batch)),
                    }) => Some(Ok(batch)),
                    Ok(v1::DeviceMessage {
                        message: Some(device_message::Message::CommandAck(ack)),
                    }) => {
                        report(engine, move |engine| {
                            engine.command_delivered(&sensor_id, &ack.command_id)
                        })
                        .await
                    }
                    Ok(v1::DeviceMessage {
                        message: Some(device_message::Message::CommandResult(result)),
                    }) => {
                        report(engine, move |engine| {
                            let detail = (!result.detail.is_empty()).then_some(result.detail);
                            engine.command_result(
                                &sensor_id,
                                &result.command_id,
                                result.success,
                                detail,
                            )
                        })
                        .await
                    }
                    // Unknown members from newer devices are skipped, not fatal.
                    Ok(v1::DeviceMessage { message: None }) => None,
                    Err(status) => Some(Err(status)),
                }
            }
        });
        let acks = acknowledge_batches(self.0.clone(), principal, Box::pin(batches));
        let opened = v1::ServerMessage {
            message: Some(server_message::Message::Opened(v1::SessionOpened {
                sensor_id: sensor.to_string(),
            })),
        };
        let acks = ReceiverStream::new(acks).map(|ack| {
            ack.map(|ack| v1::ServerMessage {
                message: Some(server_message::Message::Ack(ack)),
            })
        });
        // The session ends when the device stops sending (as before commands existed), not
        // when it stops being able to receive commands: a shutdown never waits on it.
        let (inbound_done, inbound_finished) = tokio::sync::oneshot::channel::<()>();
        let acks = acks.chain(
            futures_util::stream::once(async move {
                let _ = inbound_done.send(());
                None
            })
            .filter_map(
                |nothing: Option<Result<v1::ServerMessage, Status>>| async move { nothing },
            ),
        );
        let commands = commands.take_until(inbound_finished);
        let replies = futures_util::stream::once(async move { Ok(opened) })
            .chain(futures_util::stream::select(acks, commands));
        Ok(Response::new(Box::pin(replies)))
    }
}

fn command_message(command: Command) -> v1::ServerMessage {
    v1::ServerMessage {
        message: Some(server_message::Message::Command(v1::DeviceCommand {
            id: command.id,
            name: command.name,
            payload_json: command.payload.to_string(),
            expires_at_ms: command.expires_at.0,
        })),
    }
}

/// Records a device's command acknowledgement or result. A problem with one (an unknown
/// command id) ends the session with the mapped status, like a bad batch would.
async fn report(
    engine: Option<std::sync::Arc<Engine>>,
    work: impl FnOnce(&Engine) -> Result<Command, audrey_act::ActError> + Send + 'static,
) -> Option<Result<v1::ReadingBatch, Status>> {
    let engine = engine?;
    match tokio::task::spawn_blocking(move || work(&engine)).await {
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(Err(Status::from(ApiError::from(error)))),
        Err(_) => Some(Err(Status::internal("internal error"))),
    }
}
