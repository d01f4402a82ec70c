//! The commands besides `serve`: simulate, bench, import, token, migrate.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use audrey_model::{Millis, SensorId};
use audrey_server::Scope;
use audrey_store::{SqliteOptions, SqliteStore, Store};

#[derive(Args)]
pub struct SimulateArgs {
    /// Server base URL
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "AUDREY_URL")]
    url: String,
    /// Token with admin scope (it registers the simulated fleet); default: <data-dir>/admin.token
    #[arg(long, env = "AUDREY_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value = "audrey-data")]
    data_dir: PathBuf,
    /// Simulated sensors
    #[arg(long, default_value_t = 100)]
    sensors: usize,
    /// Locations the sensors are spread across
    #[arg(long, default_value_t = 10)]
    locations: usize,
    /// Readings per second across all sensors
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long)]
    seconds: Option<u64>,
    /// Readings per request
    #[arg(long, default_value_t = 50)]
    batch: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn token_or_file(token: Option<String>, data_dir: &std::path::Path) -> anyhow::Result<String> {
    match token {
        Some(token) => Ok(token),
        None => {
            let path = data_dir.join("admin.token");
            Ok(std::fs::read_to_string(&path)
                .with_context(|| {
                    format!("no --token given and {} is not readable", path.display())
                })?
                .trim()
                .to_string())
        }
    }
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let options = audrey_loadgen::SimulateOptions {
        base_url: args.url,
        token: token_or_file(args.token, &args.data_dir)?,
        sensors: args.sensors,
        locations: args.locations,
        rate_per_second: args.rate,
        duration: args.seconds.map(Duration::from_secs),
        batch_size: args.batch,
        seed: args.seed,
        quiet: false,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = audrey_loadgen::simulate(options, stop).await?;
    println!(
        "sent {} readings in {:.1}s: {} accepted, {} duplicate, {} rejected, {} failed requests",
        report.sent,
        report.elapsed.as_secs_f64(),
        report.accepted,
        report.duplicate,
        report.rejected,
        report.failed_requests
    );
    Ok(())
}

#[derive(Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    what: ImportWhat,
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Upload a CSV of locations (OpenFlights airports layout, or any file with a header) to
    /// a running server, which adds new ones and updates changed ones; prints the report.
    Locations {
        /// The CSV file
        file: PathBuf,
        /// Server base URL
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "AUDREY_URL")]
        server: String,
        /// Token with admin scope; default: <data-dir>/admin.token
        #[arg(long, env = "AUDREY_TOKEN")]
        token: Option<String>,
        #[arg(long, default_value = "audrey-data")]
        data_dir: PathBuf,
        /// No progress bar
        #[arg(long)]
        quiet: bool,
        /// Print the whole report as JSON (every rejected row) instead of a summary
        #[arg(long)]
        json: bool,
    },
}

/// Goes through the server, not the data directory: the running server stays the only
/// writer, and the same validation and report apply as for `POST /api/v1/locations/import`.
pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let ImportWhat::Locations {
        file,
        server,
        token,
        data_dir,
        quiet,
        json,
    } = args.what;
    let token = token_or_file(token, &data_dir)?;
    let csv = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let report = audrey_loadgen::upload_locations_csv(&server, &token, csv, quiet).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} rows: {} inserted, {} updated, {} unchanged, {} rejected",
        report["rows"],
        report["inserted"],
        report["updated"],
        report["unchanged"],
        report["rejected"]
    );
    let rejections = report["rejections"].as_array().cloned().unwrap_or_default();
    for rejection in rejections.iter().take(20) {
        println!(
            "  row {} (line {}) {}: {} ({})",
            rejection["row"],
            rejection["line"],
            rejection["column"].as_str().unwrap_or(""),
            rejection["message"].as_str().unwrap_or(""),
            rejection["reason"].as_str().unwrap_or("")
        );
    }
    if rejections.len() > 20 {
        println!("  ... and {} more (see --json)", rejections.len() - 20);
    }
    Ok(())
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: BenchScenario,
    /// Print JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args, Clone)]
struct ServerTarget {
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "AUDREY_URL")]
    url: String,
    #[arg(long, env = "AUDREY_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value = "audrey-data")]
    data_dir: PathBuf,
    /// The server's process id, to report its CPU seconds
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Subcommand)]
enum BenchScenario {
    /// Register the bench fleet and install N rules over it (run before ingest-http to
    /// compare ingest with and without rules)
    ActRules {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        #[arg(long, default_value_t = 1000)]
        rules: usize,
    },
    /// Latency from a reading that raises an alert to its webhook arriving at a local
    /// receiver, under a background ingest load
    WebhookLatency {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        /// Background readings per second (use half the measured maximum)
        #[arg(long, default_value_t = 20_000.0)]
        background_rate: f64,
        #[arg(long, default_value_t = 500)]
        probes: usize,
    },
    /// HTTP batched ingest with durable acks
    IngestHttp {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        #[arg(long, default_value_t = 2_000_000)]
        readings: u64,
        /// Send no message ids (no dedup work)
        #[arg(long)]
        no_message_ids: bool,
    },
    /// The outage spool's write path: HTTP batch ingest with the database up, then with it
    /// stopped (everything spools), in one run; then the time the spool takes to empty
    IngestOutage {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        /// Readings sent in each of the two runs
        #[arg(long, default_value_t = 1_000_000)]
        readings: u64,
        /// Shell command that stops the database (e.g. "pg_ctl -D DIR -m fast stop")
        #[arg(long)]
        stop_database: String,
        /// Shell command that starts it again
        #[arg(long)]
        start_database: String,
    },
    /// Load N readings into the bench sensors (before query benchmarks)
    Preload {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        #[arg(long, default_value_t = 10_000_000)]
        readings: u64,
    },
    /// GET the newest N readings of one sensor, many times
    QueryNewest {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(long, default_value_t = 8)]
        workers: usize,
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The scenario matrix: workers x requests per worker over gRPC unary/batch/stream and
    /// HTTP single/batch
    Matrix {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "AUDREY_GRPC_URL"
        )]
        grpc_url: String,
        /// Cells as WORKERSxREQUESTS, comma-separated [default: 1x10,10x10,10x100,50x200,100x100,200x50,1x10000,10000x1]
        #[arg(long)]
        cells: Option<String>,
        /// grpc-unary, grpc-batch, grpc-stream, http-single, http-batch, or all
        #[arg(long, default_value = "all")]
        transports: String,
        /// Readings per request for batch and stream transports
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        /// Requests a second over all workers of a scenario, on a fixed schedule; latency then
        /// runs from each request's due time. Without it every worker sends as fast as it is
        /// answered
        #[arg(long)]
        rate: Option<f64>,
    },
    /// gRPC queries: oldest N, newest N, by id (100 workers), range scan rows/s
    GrpcQueries {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "AUDREY_GRPC_URL"
        )]
        grpc_url: String,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        /// N for oldest/newest N
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[arg(long, default_value_t = 8)]
        workers: usize,
        #[arg(long, default_value_t = 10_000)]
        requests: u64,
        #[arg(long, default_value_t = 20_000)]
        by_id_requests: u64,
    },
    /// Import N generated locations from CSV twice (new, then unchanged)
    Import {
        #[command(flatten)]
        target: ServerTarget,
        #[arg(long, default_value_t = 30_000)]
        rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Statistics and time-bucket queries over what the server holds (preload first)
    Stats {
        #[command(flatten)]
        target: ServerTarget,
        /// Sensors preloaded (the one-sensor aggregate asks for the middle one)
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        /// Times each query runs
        #[arg(long, default_value_t = 5)]
        requests: u64,
    },
    /// PostgreSQL: a raw binary COPY of N rows from one client, then the same rows through an
    /// in-process Audrey over HTTP (batches of 1,000, durable acks), and the ratio
    PgIngest {
        /// postgres://... of a server where scratch databases may be created
        #[arg(long, env = "AUDREY_STORE")]
        store: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 1_000)]
        sensors: usize,
        /// Concurrent HTTP clients sending to Audrey
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Committer threads (concurrent PostgreSQL transactions) in Audrey; default: the
        /// store's own choice
        #[arg(long)]
        committers: Option<usize>,
    },
    /// PostgreSQL: newest 100 readings of one sensor over HTTP, with N rows preloaded by COPY
    PgNewest {
        #[arg(long, env = "AUDREY_STORE")]
        store: String,
        #[arg(long, default_value_t = 10_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 1_000)]
        sensors: usize,
        /// Days the preloaded readings span (one partition each)
        #[arg(long, default_value_t = 10)]
        days: u32,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[arg(long, default_value_t = 5_000)]
        requests: u64,
    },
    /// In-process SQLite inserts of the same rows into the ack-path table: the raw limit
    RawSqlite {
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 2_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 10_000)]
        sensors: usize,
        #[arg(long, default_value_t = 5_000)]
        rows_per_transaction: usize,
        /// batch: one binary landing row per transaction (the server's ack path today);
        /// row: one row per reading with JSON values (the layout before it)
        #[arg(long, default_value = "batch")]
        layout: String,
    },
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let reports = match args.scenario {
        BenchScenario::ActRules {
            target,
            sensors,
            rules,
        } => {
            let token = token_or_file(target.token, &target.data_dir)?;
            let installed =
                audrey_loadgen::install_bench_rules(&target.url, &token, sensors, rules).await?;
            println!("installed {installed} rules over {sensors} bench sensors");
            return Ok(());
        }
        BenchScenario::WebhookLatency {
            target,
            sensors,
            background_rate,
            probes,
        } => {
            let options = audrey_loadgen::WebhookLatencyOptions {
                token: token_or_file(target.token, &target.data_dir)?,
                base_url: target.url,
                sensors,
                background_rate,
                probes,
            };
            let report = audrey_loadgen::bench_webhook_latency(options).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        BenchScenario::IngestHttp {
            target,
            clients,
            batch,
            sensors,
            readings,
            no_message_ids,
        } => {
            let options = audrey_loadgen::IngestBenchOptions {
                token: token_or_file(target.token, &target.data_dir)?,
                base_url: target.url,
                clients,
                batch_size: batch,
                sensors,
                total_readings: readings,
                with_message_ids: !no_message_ids,
                server_pid: target.server_pid,
            };
            vec![audrey_loadgen::bench_http_ingest(options).await?]
        }
        BenchScenario::IngestOutage {
            target,
            clients,
            batch,
            sensors,
            readings,
            stop_database,
            start_database,
        } => {
            let ingest = audrey_loadgen::IngestBenchOptions {
                token: token_or_file(target.token, &target.data_dir)?,
                base_url: target.url,
                clients,
                batch_size: batch,
                sensors,
                total_readings: readings,
                with_message_ids: true,
                server_pid: target.server_pid,
            };
            let result = audrey_loadgen::bench_spool_outage(audrey_loadgen::OutageBenchOptions {
                ingest,
                stop_database,
                start_database,
            })
            .await?;
            println!(
                "spooled / healthy ingest rate: {:.0}%; the spool emptied {:.1} s after the database was back",
                result.ratio() * 100.0,
                result.drain.as_secs_f64()
            );
            vec![result.healthy, result.spooled]
        }
        BenchScenario::Preload {
            target,
            sensors,
            readings,
        } => {
            let options = audrey_loadgen::IngestBenchOptions {
                token: token_or_file(target.token, &target.data_dir)?,
                base_url: target.url,
                clients: 4,
                batch_size: 5_000,
                sensors,
                total_readings: readings,
                with_message_ids: false,
                server_pid: target.server_pid,
            };
            vec![audrey_loadgen::preload(options, readings).await?]
        }
        BenchScenario::QueryNewest {
            target,
            workers,
            requests,
            sensors,
            limit,
        } => {
            let options = audrey_loadgen::QueryBenchOptions {
                token: token_or_file(target.token, &target.data_dir)?,
                base_url: target.url,
                workers,
                requests,
                sensors,
                limit,
            };
            vec![audrey_loadgen::bench_query_newest(options).await?]
        }
        BenchScenario::Matrix {
            target,
            grpc_url,
            cells,
            transports,
            batch,
            sensors,
            rate,
        } => {
            let token = token_or_file(target.token, &target.data_dir)?;
            let mut options = audrey_loadgen::MatrixOptions::new(&target.url, &grpc_url, &token);
            options.rate = rate;
            if let Some(cells) = cells {
                options.cells = audrey_loadgen::parse_cells(&cells)?;
            }
            options.transports = audrey_loadgen::parse_transports(&transports)?;
            options.batch_size = batch;
            options.sensors = sensors;
            options.server_pid = target.server_pid;
            audrey_loadgen::bench_matrix(options).await?
        }
        BenchScenario::GrpcQueries {
            target,
            grpc_url,
            sensors,
            limit,
            workers,
            requests,
            by_id_requests,
        } => {
            let token = token_or_file(target.token, &target.data_dir)?;
            let mut options = audrey_loadgen::GrpcQueryOptions::new(&grpc_url, &token);
            options.sensors = sensors;
            options.limit = limit;
            options.workers = workers;
            options.requests = requests;
            options.by_id_requests = by_id_requests;
            options.server_pid = target.server_pid;
            audrey_loadgen::bench_grpc_queries(options).await?
        }
        BenchScenario::Import { target, rows, seed } => {
            let token = token_or_file(target.token, &target.data_dir)?;
            audrey_loadgen::bench_import(&target.url, &token, rows, seed).await?
        }
        BenchScenario::Stats {
            target,
            sensors,
            requests,
        } => {
            let token = token_or_file(target.token, &target.data_dir)?;
            audrey_loadgen::bench_analytics(&target.url, &token, sensors, requests).await?
        }
        BenchScenario::PgIngest {
            store,
            rows,
            sensors,
            clients,
            committers,
        } => {
            let (reports, ratio) =
                crate::pg_bench::pg_ingest(&store, rows, sensors, clients, committers).await?;
            println!(
                "Audrey over HTTP reached {:.1}% of the raw COPY rate (target >= 70%)",
                ratio * 100.0
            );
            reports
        }
        BenchScenario::PgNewest {
            store,
            rows,
            sensors,
            days,
            workers,
            requests,
        } => crate::pg_bench::pg_newest(&store, rows, sensors, days, requests, workers).await?,
        BenchScenario::RawSqlite {
            dir,
            rows,
            sensors,
            rows_per_transaction,
            layout,
        } => {
            let layout = audrey_loadgen::RawLayout::parse(&layout)?;
            // Only a directory this command made itself is removed afterwards.
            let (scratch, ours) = match dir {
                Some(dir) => (dir, false),
                None => (
                    std::env::temp_dir().join(format!("audrey-raw-bench-{}", std::process::id())),
                    true,
                ),
            };
            std::fs::create_dir_all(&scratch)?;
            let result = tokio::task::spawn_blocking({
                let scratch = scratch.clone();
                move || {
                    audrey_loadgen::bench_raw_sqlite(
                        &scratch,
                        rows,
                        sensors,
                        rows_per_transaction,
                        layout,
                    )
                }
            })
            .await?;
            if ours {
                let _ = std::fs::remove_dir_all(&scratch);
            }
            vec![result?]
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!("{}", audrey_loadgen::BenchReport::table(&reports));
    }
    let errors: u64 = reports.iter().map(|report| report.errors).sum();
    if errors > 0 {
        anyhow::bail!("{errors} requests failed; the figures above are not a clean measurement");
    }
    Ok(())
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: TokenAction,
    #[arg(
        long,
        global = true,
        default_value = "audrey-data",
        env = "AUDREY_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// postgres://... to manage tokens in PostgreSQL [default: the data dir]
    #[arg(long, global = true, env = "AUDREY_STORE")]
    store: Option<String>,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token; prints the secret once
    Create {
        /// Comma-separated: admin, write, read
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Bind the token to one sensor: it may only write that sensor's readings
        #[arg(long)]
        sensor: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token by id (a running server notices within 30 seconds; the API revokes at once)
    Revoke { id: String },
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let url = audrey_store::StoreUrl::parse(args.store.as_deref(), &args.data_dir);
    let store = match &url {
        // One reader connection is plenty for a command-line tool.
        audrey_store::StoreUrl::Sqlite(directory) => std::sync::Arc::new(SqliteStore::open(
            directory,
            SqliteOptions {
                reader_connections: 1,
                ..Default::default()
            },
        )?) as std::sync::Arc<dyn Store>,
        audrey_store::StoreUrl::Postgres(_) => audrey_store::open(&url)?,
    };
    let store = &*store;
    match args.action {
        TokenAction::Create {
            scope,
            sensor,
            name,
        } => {
            let scopes = scope
                .iter()
                .map(|text| {
                    Scope::parse(text.trim())
                        .with_context(|| format!("{text:?} is not admin, write or read"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let sensor = sensor
                .as_deref()
                .map(SensorId::parse)
                .transpose()
                .map_err(|error| anyhow::anyhow!("--sensor: {}", error.message))?;
            let (record, secret) =
                audrey_server::create_token(store, &name, &scopes, sensor.as_ref())
                    .map_err(|error| anyhow::anyhow!("{error:?}"))?;
            println!(
                "token id {} (scopes {}):",
                record.id,
                record.scopes.join(",")
            );
            println!("{secret}");
        }
        TokenAction::List => {
            for token in store.tokens()? {
                let revoked = token
                    .revoked_at
                    .map(|at| format!(" revoked {at}"))
                    .unwrap_or_default();
                let sensor = token
                    .sensor_id
                    .map(|id| format!(" sensor {id}"))
                    .unwrap_or_default();
                println!(
                    "{}  {}  scopes {}{sensor}{revoked}",
                    token.id,
                    token.name,
                    token.scopes.join(",")
                );
            }
        }
        TokenAction::Revoke { id } => {
            store.revoke_token(&id, Millis::now())?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct MigrateArgs {
    #[arg(long, default_value = "audrey-data", env = "AUDREY_DATA_DIR")]
    data_dir: PathBuf,
    /// postgres://user@host:port/db, or a directory for the embedded store
    /// [default: the data dir]
    #[arg(long, env = "AUDREY_STORE")]
    store: Option<String>,
}

pub fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let url = audrey_store::StoreUrl::parse(args.store.as_deref(), &args.data_dir);
    let (version, known) =
        audrey_store::migrate(&url).with_context(|| format!("migrating {}", url.redacted()))?;
    println!(
        "schema version {version} (this Audrey knows {known}) in {}",
        url.redacted()
    );
    Ok(())
}
