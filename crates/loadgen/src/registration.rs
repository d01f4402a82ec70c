//! Registering a fleet (locations, then sensors) with idempotent `PUT`s, several at a time.
//!
//! Every fleet is registered the same way whatever it is for, so the simulator and the benchmarks
//! describe *what* to register and this module decides *how*: in parallel, stopping at the first
//! refusal, because a fleet with holes would make every later number meaningless.

use std::sync::Arc;

use anyhow::Context;
use indicatif::ProgressBar;
use reqwest::StatusCode;

use crate::api_client::ApiClient;

/// Enough parallel `PUT`s to hide round trips on loopback without queueing inside the server.
const REGISTRATION_CONCURRENCY: usize = 16;

/// One resource to create or replace: its path under the base URL and its JSON body.
#[derive(Clone, Debug)]
pub struct Registration {
    pub path: String,
    pub body: serde_json::Value,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistrationTally {
    pub created: u64,
    pub replaced: u64,
}

impl Registration {
    pub fn location(id: &str, body: &impl serde::Serialize) -> anyhow::Result<Registration> {
        Ok(Registration {
            path: format!("/api/v1/locations/{id}"),
            body: serde_json::to_value(body).context("encoding a location")?,
        })
    }

    pub fn sensor(id: &str, body: &impl serde::Serialize) -> anyhow::Result<Registration> {
        Ok(Registration {
            path: format!("/api/v1/sensors/{id}"),
            body: serde_json::to_value(body).context("encoding a sensor")?,
        })
    }
}

/// Sends every registration and fails with the first refusal. Callers register locations before
/// sensors in two calls, because a sensor naming an unknown location is refused.
pub async fn register_all(
    client: &ApiClient,
    registrations: Vec<Registration>,
    progress: &ProgressBar,
) -> anyhow::Result<RegistrationTally> {
    let registrations = Arc::new(registrations);
    let workers = REGISTRATION_CONCURRENCY.min(registrations.len());
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let client = client.clone();
        let registrations = Arc::clone(&registrations);
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut tally = RegistrationTally::default();
            for registration in registrations.iter().skip(worker).step_by(workers) {
                match client
                    .put_json(&registration.path, &registration.body)
                    .await?
                {
                    StatusCode::CREATED => tally.created += 1,
                    _ => tally.replaced += 1,
                }
                progress.inc(1);
            }
            anyhow::Ok(tally)
        });
    }
    let mut total = RegistrationTally::default();
    while let Some(joined) = tasks.join_next().await {
        let tally = joined.context("a registration task panicked")??;
        total.created += tally.created;
        total.replaced += tally.replaced;
    }
    Ok(total)
}
