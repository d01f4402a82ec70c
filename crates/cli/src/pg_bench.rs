//! `audrey bench pg-ingest` and `audrey bench pg-newest`: the PostgreSQL benchmarks. Each run
//! makes its own scratch databases on the server the URL names, starts an in-process Audrey on
//! them (HTTP on a loopback port, the real pipeline and store), measures, and drops them.

use std::sync::Arc;

use anyhow::Context;

use audrey_ingest::{IngestMetrics, IngestOptions, Pipeline};
use audrey_loadgen::{BenchReport, ScratchDatabase};
use audrey_server::{AppState, HttpOptions, Scope};
use audrey_store::{PostgresOptions, PostgresStore, Store};

/// An Audrey serving HTTP on a loopback port until [`RunningAudrey::stop`].
struct RunningAudrey {
    base_url: String,
    token: String,
    store: Arc<PostgresStore>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningAudrey {
    async fn start(url: &str, options: PostgresOptions) -> anyhow::Result<RunningAudrey> {
        let url = url.to_string();
        let store = Arc::new(
            tokio::task::spawn_blocking(move || PostgresStore::open(&url, options)).await??,
        );
        let dyn_store: Arc<dyn Store> = store.clone();
        let (_, token) = audrey_server::create_token(&*dyn_store, "bench", &[Scope::Admin], None)
            .map_err(|error| anyhow::anyhow!("creating the bench token: {error:?}"))?;
        let pipeline = Pipeline::start(
            dyn_store,
            IngestOptions::default(),
            Arc::new(IngestMetrics::default()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(audrey_server::serve(
            audrey_server::Listeners::http_only(listener),
            AppState::new(pipeline, HttpOptions::default()),
            async {
                let _ = stopped.await;
            },
        ));
        Ok(RunningAudrey {
            base_url,
            token,
            store,
            shutdown,
            server,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.server.await??;
        drop(self.store);
        Ok(())
    }
}

/// Raw COPY and ingest through Audrey of the same rows, from one run; answers both reports
/// and the ratio Audrey / raw.
pub async fn pg_ingest(
    admin_url: &str,
    rows: u64,
    sensors: usize,
    clients: usize,
    committers: Option<usize>,
) -> anyhow::Result<(Vec<BenchReport>, f64)> {
    let raw_database = ScratchDatabase::create(admin_url, "raw").await?;
    let result = async {
        // Audrey's own migrations and partitions, then the store is closed again.
        let url = raw_database.url.clone();
        tokio::task::spawn_blocking(move || PostgresStore::open(&url, PostgresOptions::default()))
            .await??;
        audrey_loadgen::bench_raw_postgres_copy(&raw_database.url, rows, sensors).await
    }
    .await;
    raw_database.drop_now().await?;
    let raw = result.context("raw COPY")?;

    let audrey_database = ScratchDatabase::create(admin_url, "audrey").await?;
    let result = async {
        let defaults = PostgresOptions::default();
        let options = PostgresOptions {
            concurrent_appends: committers.unwrap_or(defaults.concurrent_appends),
            ..defaults
        };
        let audrey = RunningAudrey::start(&audrey_database.url, options).await?;
        let report = audrey_loadgen::bench_http_ingest(audrey_loadgen::IngestBenchOptions {
            base_url: audrey.base_url.clone(),
            token: audrey.token.clone(),
            clients,
            batch_size: 1_000,
            sensors,
            total_readings: rows,
            with_message_ids: false,
            server_pid: None,
        })
        .await;
        audrey.stop().await?;
        report
    }
    .await;
    audrey_database.drop_now().await?;
    let through_audrey = result.context("ingest through Audrey")?;
    let ratio = through_audrey.readings_per_second / raw.readings_per_second.max(f64::MIN_POSITIVE);
    Ok((vec![raw, through_audrey], ratio))
}

/// Newest `limit` readings of one sensor over HTTP with `rows` readings preloaded by COPY.
pub async fn pg_newest(
    admin_url: &str,
    rows: u64,
    sensors: usize,
    days: u32,
    requests: u64,
    workers: usize,
) -> anyhow::Result<Vec<BenchReport>> {
    let database = ScratchDatabase::create(admin_url, "newest").await?;
    let result = async {
        let audrey = RunningAudrey::start(&database.url, PostgresOptions::default()).await?;
        let now = audrey_model::Millis::now();
        let from = audrey_model::Millis(now.0 - i64::from(days + 1) * 86_400_000);
        let store = audrey.store.clone();
        tokio::task::spawn_blocking(move || store.prepare_partitions(from, now)).await??;
        let took =
            audrey_loadgen::preload_postgres_copy(&database.url, rows, sensors, days).await?;
        eprintln!(
            "preloaded {rows} readings by COPY in {:.1} s",
            took.as_secs_f64()
        );
        let report = audrey_loadgen::bench_query_newest(audrey_loadgen::QueryBenchOptions {
            base_url: audrey.base_url.clone(),
            token: audrey.token.clone(),
            workers,
            requests,
            sensors,
            limit: 100,
        })
        .await;
        audrey.stop().await?;
        report
    }
    .await;
    database.drop_now().await?;
    Ok(vec![result?])
}
