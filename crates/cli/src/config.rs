//! Server settings: command-line flags, then `AUDREY_*` environment variables, then
//! `audrey.toml`, then defaults — the first that names a setting wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address of the HTTP API [default: 127.0.0.1:8080]
    #[arg(long, env = "AUDREY_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Address of the gRPC API [default: 127.0.0.1:50051]; "off" disables it
    #[arg(long, env = "AUDREY_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Serve the compatibility SensorService WITHOUT authentication on this address
    /// (trusted networks only) [default: off]
    #[arg(long, env = "AUDREY_COMPAT_ADDR")]
    pub compat_addr: Option<SocketAddr>,
    /// Directory holding the embedded store and the admin token [default: ./audrey-data]
    #[arg(long, env = "AUDREY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where readings live: postgres://user@host:port/db for PostgreSQL, otherwise the
    /// embedded SQLite store in --data-dir [default: the data dir]
    #[arg(long, env = "AUDREY_STORE")]
    pub store: Option<String>,
    /// Remove readings older than this many days (whole daily partitions on PostgreSQL)
    /// [default: keep everything]
    #[arg(long, env = "AUDREY_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Settings file [default: ./audrey.toml when it exists]
    #[arg(long, env = "AUDREY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest request body in bytes [default: 33554432]
    #[arg(long, env = "AUDREY_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most readings queued for commit before callers are told to retry [default: 200000]
    #[arg(long, env = "AUDREY_QUEUE_READINGS")]
    pub queue_readings: Option<usize>,
    /// Seconds a staged change's confirmation link stays valid [default: 900]
    #[arg(long, env = "AUDREY_STAGED_CHANGE_TTL_SECONDS")]
    pub staged_change_ttl_seconds: Option<u64>,
    /// Outage spool: "auto" wraps a store whose database lives elsewhere (PostgreSQL), "on"
    /// wraps any store, "off" never [default: auto]
    #[arg(long, env = "AUDREY_SPOOL")]
    pub spool: Option<SpoolMode>,
    /// Directory of the outage spool [default: <data-dir>/spool]
    #[arg(long, env = "AUDREY_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the outage spool may take on disk; when full, ingest answers 503 and retry
    /// [default: 1073741824]
    #[arg(long, env = "AUDREY_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Webhooks: first retry delay in milliseconds; doubles per attempt, with jitter
    /// [default: 1000]
    #[arg(long, env = "AUDREY_WEBHOOK_INITIAL_BACKOFF_MS")]
    pub webhook_initial_backoff_ms: Option<u64>,
    /// Webhooks: give a delivery up when it still fails this many seconds after it was
    /// created [default: 86400]
    #[arg(long, env = "AUDREY_WEBHOOK_MAX_AGE_SECONDS")]
    pub webhook_max_age_seconds: Option<u64>,
    /// Webhooks: disable a subscription after this many consecutive failed attempts
    /// [default: 20]
    #[arg(long, env = "AUDREY_WEBHOOK_DISABLE_AFTER")]
    pub webhook_disable_after: Option<u32>,
    /// How often offline sensors, no-data rules and command expiry are checked, in
    /// milliseconds [default: 1000]
    #[arg(long, env = "AUDREY_ACT_TICK_MS")]
    pub act_tick_ms: Option<u64>,
    /// How often the quality job re-checks, in read_at order, where late readings landed, in
    /// seconds [default: 60]
    #[arg(long, env = "AUDREY_QUALITY_INTERVAL_SECONDS")]
    pub quality_interval_seconds: Option<u64>,
    /// Start with a demo registry and an in-process simulator sending readings.
    #[arg(long)]
    pub demo: bool,
    /// Demo: how many simulated sensors [default: 50]
    #[arg(long, default_value_t = 50)]
    pub demo_sensors: usize,
    /// Demo: readings per second across all simulated sensors [default: 20]
    #[arg(long, default_value_t = 20.0)]
    pub demo_rate: f64,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<String>,
    compat_addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    retention_days: Option<u32>,
    max_body_bytes: Option<usize>,
    queue_readings: Option<usize>,
    staged_change_ttl_seconds: Option<u64>,
    spool: Option<SpoolMode>,
    spool_dir: Option<PathBuf>,
    spool_max_bytes: Option<u64>,
    webhook_initial_backoff_ms: Option<u64>,
    webhook_max_age_seconds: Option<u64>,
    webhook_disable_after: Option<u32>,
    act_tick_ms: Option<u64>,
    quality_interval_seconds: Option<u64>,
}

/// When the outage spool wraps the store.
#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpoolMode {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub compat_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub store: audrey_store::StoreUrl,
    pub retention: Option<std::time::Duration>,
    pub max_body_bytes: usize,
    pub queue_readings: usize,
    pub staged_change_ttl: std::time::Duration,
    pub demo: Option<(usize, f64)>,
    pub spool: SpoolMode,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub act: audrey_act::ActOptions,
}

impl ServeConfig {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => read_settings(path)?,
            None if std::path::Path::new("audrey.toml").exists() => {
                read_settings("audrey.toml".as_ref())?
            }
            None => FileSettings::default(),
        };
        let http_defaults = audrey_server::HttpOptions::default();
        let grpc_addr = match args.grpc_addr.or(file.grpc_addr).as_deref() {
            Some("off") => None,
            Some(text) => Some(
                text.parse()
                    .with_context(|| format!("--grpc-addr {text:?} is not host:port or off"))?,
            ),
            None => Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("audrey-data"));
        let spool_max_bytes = args
            .spool_max_bytes
            .or(file.spool_max_bytes)
            .unwrap_or(1 << 30);
        anyhow::ensure!(
            spool_max_bytes >= 1 << 20,
            "spool_max_bytes: must be at least 1048576 (1 MiB), got {spool_max_bytes}"
        );
        let store = audrey_store::StoreUrl::parse(args.store.or(file.store).as_deref(), &data_dir);
        let retention = match args.retention_days.or(file.retention_days) {
            Some(0) => {
                anyhow::bail!("--retention-days must be at least 1 (omit it to keep everything)")
            }
            Some(days) => Some(std::time::Duration::from_secs(u64::from(days) * 86_400)),
            None => None,
        };
        let mut act = audrey_act::ActOptions::default();
        if let Some(ms) = args
            .webhook_initial_backoff_ms
            .or(file.webhook_initial_backoff_ms)
        {
            act.webhooks.initial_backoff = std::time::Duration::from_millis(ms.max(1));
        }
        if let Some(seconds) = args
            .webhook_max_age_seconds
            .or(file.webhook_max_age_seconds)
        {
            act.webhooks.max_age = std::time::Duration::from_secs(seconds);
        }
        if let Some(count) = args.webhook_disable_after.or(file.webhook_disable_after) {
            act.webhooks.disable_after_failures = count.max(1);
        }
        if let Some(ms) = args.act_tick_ms.or(file.act_tick_ms) {
            act.tick_interval = std::time::Duration::from_millis(ms.max(10));
        }
        if let Some(seconds) = args
            .quality_interval_seconds
            .or(file.quality_interval_seconds)
        {
            act.health.quality_interval = std::time::Duration::from_secs(seconds.max(1));
        }
        Ok(ServeConfig {
            act,
            spool: args.spool.or(file.spool).unwrap_or_default(),
            spool_dir: args
                .spool_dir
                .or(file.spool_dir)
                .unwrap_or_else(|| data_dir.join("spool")),
            spool_max_bytes,
            store,
            retention,
            grpc_addr,
            compat_addr: args.compat_addr.or(file.compat_addr),
            http_addr: args
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir,
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(http_defaults.max_body_bytes),
            queue_readings: args
                .queue_readings
                .or(file.queue_readings)
                .unwrap_or(audrey_ingest::IngestOptions::default().queue_readings),
            staged_change_ttl: args
                .staged_change_ttl_seconds
                .or(file.staged_change_ttl_seconds)
                .map(std::time::Duration::from_secs)
                .unwrap_or(http_defaults.staged_change_ttl),
            demo: args.demo.then_some((args.demo_sensors, args.demo_rate)),
        })
    }
}

fn read_settings(path: &std::path::Path) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
