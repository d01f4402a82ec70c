//! Commands to devices: the live sessions a command can be handed to, and the lifecycle
//! queued → sent → delivered → succeeded | failed, or expired | cancelled.
//!
//! A command is stored before it is offered to a session. It is offered when created (if the
//! device is connected), when the device connects (every unexpired undelivered command, in
//! creation order), and by the periodic tick (anything still queued). Expiry is checked at
//! the moment of sending, so a stale command is never handed to a device. A device may see a
//! command twice (sent, then Audrey restarted before it acknowledged); it deduplicates by id.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use audrey_model::{FieldError, Millis, Reason};

use crate::ActError;
use crate::engine::Engine;
use crate::persistence::Changes;
use crate::records::{Command, CommandStatus, Event};

/// Commands waiting in one session's outgoing queue before `try_send` refuses more (the tick
/// offers the rest later).
const SESSION_QUEUE: usize = 64;

#[derive(Default)]
pub(crate) struct CommandHub {
    sessions: Mutex<HashMap<String, (u64, mpsc::Sender<Command>)>>,
    next_session: std::sync::atomic::AtomicU64,
    /// Held while a command is checked and handed over, so two offers of one command (a tick's
    /// snapshot racing a create or a connect) cannot both send it.
    offering: Mutex<()>,
}

/// A device's open session: commands arrive on `commands`; dropping it disconnects.
pub struct DeviceSession {
    pub commands: mpsc::Receiver<Command>,
    sensor_id: String,
    number: u64,
    engine: std::sync::Weak<Engine>,
}

impl Drop for DeviceSession {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.upgrade()
            && let Ok(mut sessions) = engine.hub.sessions.lock()
            && sessions
                .get(&self.sensor_id)
                .is_some_and(|(number, _)| *number == self.number)
        {
            sessions.remove(&self.sensor_id);
        }
    }
}

pub(crate) fn updated_event(command: &Command) -> Event {
    Event::new(
        "command.updated",
        command.updated_at,
        Some(&command.sensor_id),
        serde_json::to_value(command).unwrap_or_default(),
    )
}

impl Engine {
    /// Creates and stores a command, then offers it to the device if it is connected.
    pub fn create_command(
        &self,
        sensor_id: &str,
        name: &str,
        payload: serde_json::Value,
        ttl_seconds: u64,
    ) -> Result<Command, ActError> {
        let mut errors = Vec::new();
        if name.is_empty() || name.len() > 128 {
            errors.push(FieldError::new(
                "name",
                Reason::Empty,
                "must be 1 to 128 characters",
            ));
        }
        if ttl_seconds == 0 || ttl_seconds > 30 * 86_400 {
            errors.push(FieldError::new(
                "ttl",
                Reason::OutOfRange,
                "must be 1 to 2592000 seconds",
            ));
        }
        if !errors.is_empty() {
            return Err(ActError::Invalid(errors));
        }
        if self.registry.cached_sensor(sensor_id).is_none() {
            return Err(ActError::NotFound(format!("sensor {sensor_id}")));
        }
        let now = self.clock.now();
        let command = Command {
            id: uuid::Uuid::now_v7().to_string(),
            sensor_id: sensor_id.to_string(),
            name: name.to_string(),
            payload,
            status: CommandStatus::Queued,
            created_at: now,
            expires_at: Millis(now.0 + ttl_seconds as i64 * 1000),
            updated_at: now,
            result: None,
            alert_id: None,
        };
        self.record_commands(vec![command.clone()])?;
        self.offer_commands(vec![command.clone()]);
        Ok(self.store.command(&command.id)?.unwrap_or(command))
    }

    fn record_commands(&self, commands: Vec<Command>) -> Result<(), ActError> {
        let state = self.lock()?;
        let mut changes = Changes::default();
        for command in commands {
            changes.events.push(updated_event(&command));
            changes.commands.push(command);
        }
        crate::engine::finish_step(&state, &mut changes, self.clock.now());
        self.commit(&changes)
    }

    fn change_status(
        &self,
        mut command: Command,
        status: CommandStatus,
        result: Option<String>,
    ) -> Result<Command, ActError> {
        command.status = status;
        command.updated_at = self.clock.now();
        if result.is_some() {
            command.result = result;
        }
        self.record_commands(vec![command.clone()])?;
        Ok(command)
    }

    /// Hands each command, in order, to its device's session if it has one and it is not
    /// stale; marks those handed over `sent`.
    pub(crate) fn offer_commands(&self, commands: Vec<Command>) {
        let now = self.clock.now();
        for command in commands {
            if let Err(error) = self.offer(command, now) {
                tracing::error!(%error, "offering a command failed; the tick retries");
            }
        }
    }

    fn offer(&self, command: Command, now: Millis) -> Result<(), ActError> {
        let _offering = self
            .hub
            .offering
            .lock()
            .map_err(|_| ActError::Internal("command hub poisoned".into()))?;
        // The caller's copy may be a stale snapshot (a tick racing a create or a connect that
        // already sent it): offer only what is still as the caller saw it.
        let Some(stored) = self.store.command(&command.id)? else {
            return Ok(());
        };
        if stored.status != command.status {
            return Ok(());
        }
        let command = stored;
        if !command.status.is_undelivered() {
            return Ok(());
        }
        if command.expires_at <= now {
            self.change_status(command, CommandStatus::Expired, None)?;
            return Ok(());
        }
        let sender = match self.hub.sessions.lock() {
            Ok(sessions) => sessions
                .get(&command.sensor_id)
                .map(|(_, sender)| sender.clone()),
            Err(_) => None,
        };
        let Some(sender) = sender else { return Ok(()) };
        if command.status == CommandStatus::Queued {
            // Stored as sent before it leaves, so the command.updated order is queued → sent →
            // delivered even when the device answers at once.
            let sent = self.change_status(command, CommandStatus::Sent, None)?;
            if sender.try_send(sent.clone()).is_err() {
                self.change_status(sent, CommandStatus::Queued, None)?;
            }
        } else {
            let _ = sender.try_send(command);
        }
        Ok(())
    }

    pub(crate) fn expire_and_reoffer_commands(&self, now: Millis) -> Result<(), ActError> {
        let waiting = self.store.undelivered_commands(None)?;
        let mut offer = Vec::new();
        for command in waiting {
            if command.expires_at <= now {
                self.change_status(command, CommandStatus::Expired, None)?;
            } else if command.status == CommandStatus::Queued {
                offer.push(command);
            }
        }
        self.offer_commands(offer);
        Ok(())
    }

    /// Registers a device's live session and offers it every unexpired undelivered command,
    /// oldest first. A newer session of the same sensor replaces an older one.
    pub fn connect_device(
        self: &std::sync::Arc<Self>,
        sensor_id: &str,
    ) -> Result<DeviceSession, ActError> {
        let (sender, receiver) = mpsc::channel(SESSION_QUEUE);
        let number = self
            .hub
            .next_session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.hub
            .sessions
            .lock()
            .map_err(|_| ActError::Internal("command hub poisoned".into()))?
            .insert(sensor_id.to_string(), (number, sender));
        let waiting = self.store.undelivered_commands(Some(sensor_id))?;
        self.offer_commands(waiting);
        Ok(DeviceSession {
            commands: receiver,
            sensor_id: sensor_id.to_string(),
            number,
            engine: std::sync::Arc::downgrade(self),
        })
    }

    fn owned_command(&self, sensor_id: &str, id: &str) -> Result<Command, ActError> {
        match self.store.command(id)? {
            Some(command) if command.sensor_id == sensor_id => Ok(command),
            _ => Err(ActError::NotFound(format!(
                "command {id} of sensor {sensor_id}"
            ))),
        }
    }

    /// The device acknowledged receipt.
    pub fn command_delivered(&self, sensor_id: &str, id: &str) -> Result<Command, ActError> {
        let command = self.owned_command(sensor_id, id)?;
        if !command.status.is_undelivered() {
            return Ok(command); // a repeated acknowledgement changes nothing
        }
        if command.expires_at <= self.clock.now() {
            return self.change_status(command, CommandStatus::Expired, None);
        }
        self.change_status(command, CommandStatus::Delivered, None)
    }

    /// The device reported the outcome.
    pub fn command_result(
        &self,
        sensor_id: &str,
        id: &str,
        succeeded: bool,
        detail: Option<String>,
    ) -> Result<Command, ActError> {
        let command = self.owned_command(sensor_id, id)?;
        match command.status {
            CommandStatus::Sent | CommandStatus::Delivered => {
                let status = if succeeded {
                    CommandStatus::Succeeded
                } else {
                    CommandStatus::Failed
                };
                self.change_status(command, status, detail)
            }
            CommandStatus::Succeeded | CommandStatus::Failed => Ok(command),
            other => Err(ActError::Conflict(format!(
                "command {id} is {} and cannot take a result",
                other.as_str()
            ))),
        }
    }

    pub fn cancel_command(&self, id: &str) -> Result<Command, ActError> {
        let command = self
            .store
            .command(id)?
            .ok_or_else(|| ActError::NotFound(format!("command {id}")))?;
        if !command.status.is_undelivered() {
            return Err(ActError::Conflict(format!(
                "command {id} is {}; only queued or sent commands can be cancelled",
                command.status.as_str()
            )));
        }
        self.change_status(command, CommandStatus::Cancelled, None)
    }

    pub fn command(&self, id: &str) -> Result<Command, ActError> {
        self.store
            .command(id)?
            .ok_or_else(|| ActError::NotFound(format!("command {id}")))
    }

    pub fn commands(
        &self,
        sensor_id: Option<&str>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Result<Vec<Command>, ActError> {
        self.store.commands(sensor_id, status, limit)
    }
}
