//! `audrey serve`: opens the store, starts the pipeline, serves HTTP until SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;

use audrey_ingest::spool::{SpoolOptions, SpoolingStore};
use audrey_ingest::{IngestMetrics, IngestOptions, Pipeline};
use audrey_server::{AppState, HttpOptions, Scope};
use audrey_store::Store;

use crate::config::{ServeConfig, SpoolMode};

pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let store: Arc<dyn Store> = {
        let url = config.store.clone();
        tokio::task::spawn_blocking(move || audrey_store::open(&url))
            .await?
            .with_context(|| format!("opening the store {}", config.store.redacted()))?
    };
    // The embedded store is local: an outage of its disk is an outage of the spool's too.
    let database_is_remote = matches!(config.store, audrey_store::StoreUrl::Postgres(_));
    let store = with_outage_spool(store, &config, database_is_remote).await?;
    let token_file = data_dir.join("admin.token");
    if let Some(secret) = audrey_server::bootstrap_admin_token(&*store, &data_dir)? {
        println!(
            "Created the first admin token (shown once; also saved to {}):",
            token_file.display()
        );
        println!("  {secret}");
    }
    let ingest_options = IngestOptions {
        queue_readings: config.queue_readings,
        retention: config.retention,
        ..IngestOptions::default()
    };
    let engine = {
        let (store, act_dir, options) = (store.clone(), data_dir.clone(), config.act.clone());
        tokio::task::spawn_blocking(move || {
            let act_store = Arc::new(audrey_act::SqliteActStore::open(&act_dir)?);
            let engine = audrey_act::Engine::open(
                act_store,
                store,
                Arc::new(audrey_act::SystemClock),
                options,
            )?;
            // Before live input: what a crash kept from the engine is evaluated first. A store
            // that cannot be read now (a PostgreSQL outage the spool rides out) must not keep
            // Audrey from serving; the gap is logged.
            if let Err(error) = engine.replay_unevaluated() {
                tracing::error!(%error, "could not replay committed readings the act engine missed");
            }
            Ok::<_, audrey_act::ActError>(engine)
        })
        .await?
        .with_context(|| format!("opening act.db in {}", data_dir.display()))?
    };
    let (observer, act_worker) = engine.observer();
    let pipeline = Pipeline::start_observed(
        store.clone(),
        ingest_options,
        Arc::new(IngestMetrics::default()),
        Some(observer),
    );
    let http_options = HttpOptions {
        max_body_bytes: config.max_body_bytes,
        staged_change_ttl: config.staged_change_ttl,
        ..HttpOptions::default()
    };
    let state = AppState::new(pipeline, http_options).with_act(engine.clone());
    let (stop_act, act_stopped) = tokio::sync::watch::channel(false);
    let act_background = tokio::spawn(engine.run_background(async move {
        let mut act_stopped = act_stopped;
        let _ = act_stopped.wait_for(|stop| *stop).await;
    }));
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP address {}", config.http_addr))?;
    let address = listener.local_addr()?;
    let grpc = bind_optional(config.grpc_addr, "gRPC").await?;
    let compat = bind_optional(config.compat_addr, "compatibility").await?;
    println!(
        "Audrey is serving HTTP on http://{address} (store {})",
        config.store.redacted()
    );
    if let Some(grpc) = &grpc {
        println!("Audrey is serving gRPC on http://{}", grpc.local_addr()?);
    }
    if let Some(compat) = &compat {
        println!(
            "Audrey is serving the compatibility SensorService without authentication on http://{} (trusted networks only)",
            compat.local_addr()?
        );
    }
    let listeners = audrey_server::Listeners {
        http: listener,
        grpc,
        compat,
    };

    let (stop_demo, demo_stopped) = tokio::sync::watch::channel(false);
    let demo = match config.demo {
        Some((sensors, rate)) => {
            let (_, token) =
                audrey_server::create_token(&*store, "demo simulator", &[Scope::Admin], None)?;
            Some(tokio::spawn(run_demo(
                format!("http://{address}"),
                token,
                sensors,
                rate,
                demo_stopped,
            )))
        }
        None => None,
    };
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections, committing what is in flight");
        let _ = stop_demo.send(true);
    };
    audrey_server::serve(listeners, state, shutdown).await?;
    // The pipeline is drained and its committer gone: the act thread evaluates what is left
    // in its channel and ends; then the periodic work stops.
    let _ = tokio::task::spawn_blocking(move || act_worker.join()).await;
    let _ = stop_act.send(true);
    let _ = act_background.await;
    if let Some(demo) = demo {
        let _ = demo.await;
    }
    tracing::info!("stopped; every acknowledged reading is committed");
    Ok(())
}

/// Wraps the store in the outage spool when `--spool` asks for it (`auto`: only a store whose
/// database lives elsewhere).
async fn with_outage_spool(
    store: Arc<dyn Store>,
    config: &ServeConfig,
    database_is_remote: bool,
) -> anyhow::Result<Arc<dyn Store>> {
    let wanted = match config.spool {
        SpoolMode::On => true,
        SpoolMode::Off => false,
        SpoolMode::Auto => database_is_remote,
    };
    if !wanted {
        return Ok(store);
    }
    let options = SpoolOptions {
        max_bytes: config.spool_max_bytes,
        ..SpoolOptions::new(&config.spool_dir)
    };
    let directory = config.spool_dir.clone();
    let spooling = tokio::task::spawn_blocking(move || SpoolingStore::open(store, options))
        .await?
        .with_context(|| format!("opening the outage spool in {}", directory.display()))?;
    tracing::info!(directory = %config.spool_dir.display(), max_bytes = config.spool_max_bytes, "outage spool ready");
    Ok(Arc::new(spooling))
}

async fn run_demo(
    base_url: String,
    token: String,
    sensors: usize,
    rate: f64,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let options = audrey_loadgen::SimulateOptions {
        base_url,
        token,
        sensors,
        locations: (sensors / 10).max(1),
        rate_per_second: rate,
        duration: None,
        batch_size: 10,
        seed: 7,
        quiet: false,
    };
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    if let Err(error) = audrey_loadgen::simulate(options, stop).await {
        tracing::error!(%error, "the demo simulator stopped");
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

async fn bind_optional(
    address: Option<std::net::SocketAddr>,
    what: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match address {
        Some(address) => Ok(Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the {what} address {address}"))?,
        )),
        None => Ok(None),
    }
}
