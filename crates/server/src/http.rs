//! The HTTP/JSON API under `/api/v1`, plus `/healthz`, `/readyz`, `/metrics`, the OpenAPI
//! document at `/api/v1/openapi.json` and interactive documentation at `/docs`.
//!
//! Routes are declared in `routes.rs` (router and document from the same declarations);
//! this module assembles the router: shared error fallbacks, OPTIONS/Allow, the docs UI.

mod act;
mod allow;
mod conditional;
mod geo;
mod import;
mod locations;
mod openapi;
mod operations;
pub(crate) mod params;
mod readings;
mod registry;
mod routes;
mod sensors;
mod staged;
pub(crate) mod stats;
mod tokens;

use std::sync::Arc;

use axum::{Extension, Router};

use audrey_model::ErrorCode;

pub use openapi::DOCS_PATH;
pub(crate) use readings::blocking;

use crate::{ApiError, AppState};

/// The OpenAPI document of this server, as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(routes::declared().into_openapi())
}

pub(crate) fn router(state: AppState) -> Router {
    let (router, document) = routes::declared().split_for_parts();
    let document = openapi::finish(document);
    let allow = Arc::new(allow::AllowTable::from_document(&document));
    let rendered = serde_json::to_string(&document).unwrap_or_else(|error| {
        tracing::error!(%error, "cannot render the OpenAPI document");
        "{}".to_string()
    });
    let docs = utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .config(utoipa_swagger_ui::Config::from(openapi::OPENAPI_PATH));
    router
        .merge(docs)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(openapi::DocumentJson(Arc::from(rendered))))
        .layer(axum::middleware::from_fn_with_state(
            allow,
            allow::allow_layer,
        ))
        // Bodies are read with our own limit so an oversize body gets our error shape.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this method is not allowed on this route",
    )
}
