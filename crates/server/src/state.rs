use std::sync::Arc;

use audrey_ingest::Pipeline;
use audrey_store::Store;

use crate::auth::TokenCache;

#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Largest request body accepted; larger ones are answered 413.
    pub max_body_bytes: usize,
    /// Most readings in one request.
    pub max_readings_per_request: usize,
    /// How long a staged change's confirmation link stays valid.
    pub staged_change_ttl: std::time::Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_body_bytes: 32 * 1024 * 1024,
            max_readings_per_request: 100_000,
            staged_change_ttl: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    pub options: Arc<HttpOptions>,
    /// The act engine (rules, alerts, webhooks, commands), when enabled.
    pub act: Option<Arc<audrey_act::Engine>>,
    pub(crate) tokens: Arc<TokenCache>,
}

impl AppState {
    pub fn new(pipeline: Arc<Pipeline>, options: HttpOptions) -> AppState {
        AppState {
            store: pipeline.store().clone(),
            pipeline,
            options: Arc::new(options),
            act: None,
            tokens: Arc::new(TokenCache::default()),
        }
    }

    /// Serves the act API and delivers commands on device sessions through `engine`.
    pub fn with_act(mut self, engine: Arc<audrey_act::Engine>) -> AppState {
        self.act = Some(engine);
        self
    }
}
