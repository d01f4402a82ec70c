//! The act engine: consumes committed batches from the ingest pipeline, keeps per-sensor
//! health and per-(rule, sensor) state in memory, and writes what it decides to its
//! [`ActStore`] in one transaction per step.
//!
//! Readings reach the engine through a bounded channel fed by the committer thread after each
//! commit has been acknowledged. When the channel is full the committer waits: evaluation
//! applies backpressure to ingest instead of dropping readings, so no reading ever escapes the
//! rules. Evaluation itself is in-memory (hash look-ups through the rule index) and writes
//! only when a state changes, which is what lets it keep up.

pub(crate) mod api;
mod evaluate;
mod handoff;
mod replay;
mod sweep;

pub(crate) use evaluate::finish_step;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use audrey_ingest::CommitObserver;
use audrey_model::Millis;
use audrey_store::{SensorFilter, Store};

use crate::ActError;
use crate::clock::Clock;
use crate::commands::CommandHub;
use crate::health::{HealthOptions, SensorHealth};
use crate::persistence::{ActStore, Changes};
use crate::records::Subscription;
use crate::rules::RuleIndex;
use crate::webhooks::WebhookOptions;

#[derive(Clone, Debug)]
pub struct ActOptions {
    pub health: HealthOptions,
    pub webhooks: WebhookOptions,
    /// How often offline sensors, no-data rules and command expiry are checked.
    pub tick_interval: Duration,
    /// Committed readings waiting for evaluation before the committer is held back
    /// (engine/handoff.rs).
    pub queued_readings: usize,
    /// How far below the highest evaluated reading id the replay after a crash starts: the
    /// longest a store commit may take between minting reading ids and committing them.
    pub replay_margin: Duration,
}

impl Default for ActOptions {
    fn default() -> Self {
        ActOptions {
            health: HealthOptions::default(),
            webhooks: WebhookOptions::default(),
            tick_interval: Duration::from_secs(1),
            queued_readings: 200_000,
            replay_margin: Duration::from_secs(10),
        }
    }
}

/// One (rule, sensor) evaluation state.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct RuleState {
    pub last_read_at: Option<Millis>,
    pub pending_since: Option<Millis>,
    pub alert_id: Option<String>,
}

#[derive(Default)]
pub(crate) struct State {
    pub rules: RuleIndex,
    pub rule_states: HashMap<(String, String), RuleState>,
    /// foldhash: looked up once per sensor of every evaluated batch.
    pub sensors: HashMap<String, SensorHealth, foldhash::fast::RandomState>,
    pub subscriptions: Vec<Subscription>,
    /// Sweep findings already published (check, metric, reading ids), so a stretch re-checked
    /// by a later sweep is not reported twice.
    pub swept: std::collections::HashSet<String>,
    /// The highest reading id evaluated (the replay watermark).
    pub high_water: Option<audrey_model::ReadingId>,
}

pub struct Engine {
    pub(crate) store: Arc<dyn ActStore>,
    pub(crate) registry: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: ActOptions,
    pub(crate) state: Mutex<State>,
    pub(crate) hub: CommandHub,
    /// Woken when new deliveries are stored.
    pub(crate) deliveries_ready: tokio::sync::Notify,
    /// Test-only failpoint (`AUDREY_TEST_ACT_HOLD_BEFORE_COMMIT=<file>`): the first batch of
    /// readings is evaluated, then the engine creates the file and stops for good before
    /// writing to act.db, so a crash test can kill the process in exactly that gap.
    pub(crate) hold_before_commit: Option<std::path::PathBuf>,
}

impl Engine {
    /// Loads rules, rule states, statuses and subscriptions, and the registered sensors (each
    /// gets a grace period of its offline threshold from now).
    pub fn open(
        store: Arc<dyn ActStore>,
        registry: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        options: ActOptions,
    ) -> Result<Arc<Engine>, ActError> {
        let now = clock.now();
        let mut state = State::default();
        for rule in store.rules()? {
            state.rules.insert(rule);
        }
        for row in store.rule_states()? {
            state.rule_states.insert(
                (row.rule_id, row.sensor_id),
                RuleState {
                    last_read_at: row.last_read_at,
                    pending_since: row.pending_since,
                    alert_id: row.alert_id,
                },
            );
        }
        let statuses: HashMap<String, _> = store.statuses()?.into_iter().collect();
        let mut after = None;
        loop {
            let page = registry
                .sensors(&SensorFilter {
                    limit: 1000,
                    after: after.clone(),
                    ..SensorFilter::default()
                })
                .map_err(|error| ActError::Unavailable(format!("reading the registry: {error}")))?;
            for sensor in &page.items {
                let interval = sensor
                    .expected_interval_seconds
                    .unwrap_or(options.health.default_interval_seconds);
                let id = sensor.id.to_string();
                let status = statuses.get(&id).copied();
                state
                    .sensors
                    .insert(id, SensorHealth::new(status, now, interval));
            }
            match page.next_cursor {
                Some(cursor) if !page.items.is_empty() => after = Some(cursor),
                _ => break,
            }
        }
        for (id, status) in statuses {
            state.sensors.entry(id).or_insert_with(|| {
                SensorHealth::new(Some(status), now, options.health.default_interval_seconds)
            });
        }
        state.subscriptions = store.subscriptions()?;
        let engine = Arc::new(Engine {
            store,
            registry,
            clock,
            options,
            state: Mutex::new(state),
            hub: CommandHub::default(),
            deliveries_ready: tokio::sync::Notify::new(),
            hold_before_commit: std::env::var_os("AUDREY_TEST_ACT_HOLD_BEFORE_COMMIT")
                .map(std::path::PathBuf::from),
        });
        engine.ensure_replay_floor()?;
        Ok(engine)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, State>, ActError> {
        self.state
            .lock()
            .map_err(|_| ActError::Internal("act engine state poisoned".into()))
    }

    /// Writes a step's decisions, retrying a transient failure: the in-memory state already
    /// moved on, so giving up would make memory and disk disagree.
    pub(crate) fn commit(&self, changes: &Changes) -> Result<(), ActError> {
        let mut wait = Duration::from_millis(10);
        for _ in 0..8 {
            match self.store.apply(changes) {
                Ok(()) => {
                    if !changes.deliveries.is_empty() {
                        self.deliveries_ready.notify_one();
                    }
                    return Ok(());
                }
                Err(ActError::Unavailable(detail)) => {
                    tracing::warn!(%detail, "act.db busy; retrying");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(other) => return Err(other),
            }
        }
        self.store.apply(changes)
    }

    /// A [`CommitObserver`] for the ingest pipeline and the thread that evaluates what it
    /// receives. The thread ends when the pipeline drops the observer.
    pub fn observer(self: &Arc<Self>) -> (Arc<dyn CommitObserver>, std::thread::JoinHandle<()>) {
        let handoff = Arc::new(handoff::Handoff::new(
            self.options.queued_readings,
            handoff::STEP_INTERVAL_UNDER_LOAD,
        ));
        let queue = handoff.clone();
        let engine = self.clone();
        let worker = std::thread::Builder::new()
            .name("audrey-act".into())
            .spawn(move || {
                let mut last_step = None;
                while let Some(batch) = queue.next_step(last_step) {
                    last_step = Some(std::time::Instant::now());
                    if let Err(error) = engine.observe(&batch) {
                        tracing::error!(%error, readings = batch.readings.len(), "act evaluation failed for a batch");
                    }
                }
            })
            .expect("spawning the act engine thread");
        (Arc::new(handoff::HandoffObserver(handoff)), worker)
    }

    /// Runs the periodic checks and webhook deliveries until `shutdown` resolves.
    pub async fn run_background(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let ticker = {
            let engine = self.clone();
            async move {
                let mut interval = tokio::time::interval(engine.options.tick_interval);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    let engine = engine.clone();
                    match tokio::task::spawn_blocking(move || engine.tick()).await {
                        Ok(Err(error)) => tracing::error!(%error, "act tick failed"),
                        Err(error) => tracing::error!(%error, "act tick panicked"),
                        Ok(Ok(())) => {}
                    }
                }
            }
        };
        let sweeper = {
            let engine = self.clone();
            async move {
                let mut interval = tokio::time::interval(engine.options.health.quality_interval);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    let engine = engine.clone();
                    match tokio::task::spawn_blocking(move || engine.sweep_quality()).await {
                        Ok(Err(error)) => tracing::error!(%error, "quality sweep failed"),
                        Err(error) => tracing::error!(%error, "quality sweep panicked"),
                        Ok(Ok(_)) => {}
                    }
                }
            }
        };
        let dispatcher = crate::webhooks::dispatch(self.clone());
        tokio::select! {
            _ = shutdown => {}
            _ = ticker => {}
            _ = sweeper => {}
            _ = dispatcher => {}
        }
    }
}
