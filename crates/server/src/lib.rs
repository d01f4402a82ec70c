//! Audrey's transports: the HTTP/JSON API, authentication, and the single mapping from error
//! codes to transport statuses.
//!
//! A transport parses requests, checks who is asking, calls the ingest pipeline or the store
//! trait, and renders answers. It must never hold business rules (those live in the model),
//! never talk SQL, and never leak internal error text to clients.

mod auth;
mod error;
mod http;
mod registry;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::{Scope, bootstrap_admin_token, create_token};
pub use error::ApiError;
pub use state::{AppState, HttpOptions};

/// Serves the HTTP API on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish, drains the ingest pipeline (every queued reading is committed or
/// answered) and returns. Shutdown order: stop accepting → drain requests → drain pipeline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pipeline = state.pipeline.clone();
    let router = http::router(state);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    tokio::task::spawn_blocking(move || pipeline.shutdown())
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

/// Builds the router without serving it (for in-process tests and embedding).
pub fn router(state: AppState) -> axum::Router {
    http::router(state)
}

pub type SharedStore = Arc<dyn audrey_store::Store>;
