//! Audrey's transports: the HTTP/JSON API, authentication, and the single mapping from error
//! codes to transport statuses.
//!
//! A transport parses requests, checks who is asking, calls the ingest pipeline or the store
//! trait, and renders answers. It must never hold business rules (those live in the model),
//! never talk SQL, and never leak internal error text to clients.

mod auth;
mod error;
mod grpc;
mod http;
mod import;
mod queries;
mod registry;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use auth::{Scope, bootstrap_admin_token, create_token};
pub use error::ApiError;
pub use grpc::{serve_compat, serve_grpc};
pub use http::{DOCS_PATH, document as openapi_document};
pub use import::{IMPORT_BATCH_ROWS, ImportError, ImportReport, Rejection, import_locations};
pub use state::{AppState, HttpOptions};

/// Where to serve: HTTP always; gRPC and the unauthenticated compatibility service when given.
pub struct Listeners {
    pub http: tokio::net::TcpListener,
    pub grpc: Option<tokio::net::TcpListener>,
    pub compat: Option<tokio::net::TcpListener>,
}

impl Listeners {
    pub fn http_only(http: tokio::net::TcpListener) -> Listeners {
        Listeners {
            http,
            grpc: None,
            compat: None,
        }
    }
}

/// Serves until `shutdown` resolves, then: stop accepting on every listener → let in-flight
/// requests finish → drain the ingest pipeline (every queued reading is committed and
/// answered) → return.
pub async fn serve(
    listeners: Listeners,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pipeline = state.pipeline.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let http = axum::serve(
        listeners.http,
        http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal());
    let http = async move { http.await };
    let grpc = {
        let (listener, state, signal) = (listeners.grpc, state.clone(), signal());
        async move {
            match listener {
                Some(listener) => grpc::serve_grpc(listener, state, signal)
                    .await
                    .map_err(std::io::Error::other),
                None => Ok(()),
            }
        }
    };
    let compat = {
        let (listener, signal) = (listeners.compat, signal());
        async move {
            match listener {
                Some(listener) => grpc::serve_compat(listener, state, signal)
                    .await
                    .map_err(std::io::Error::other),
                None => Ok(()),
            }
        }
    };
    let trigger = async move {
        shutdown.await;
        let _ = stop.send(true);
        Ok::<(), std::io::Error>(())
    };
    let served = tokio::try_join!(http, grpc, compat, trigger);
    tokio::task::spawn_blocking(move || pipeline.shutdown())
        .await
        .map_err(std::io::Error::other)?;
    served.map(|_| ())
}

/// Builds the router without serving it (for in-process tests and embedding).
pub fn router(state: AppState) -> axum::Router {
    http::router(state)
}

pub type SharedStore = Arc<dyn audrey_store::Store>;
