//! The OpenAPI 3.1 document: its frame (info, tags, security, shared schemas) and the
//! finishing pass that adds the error answers every operation can give.
//!
//! Operations are not listed here: each handler carries `#[utoipa::path]` and is registered
//! with `routes!` in `http/routes.rs`, which adds it to the router and to this document in one
//! step. This module must never list paths by hand.

pub(crate) mod act_schemas;
pub(crate) mod parameters;
pub(crate) mod schemas;

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

/// Where the document is served.
pub(crate) const OPENAPI_PATH: &str = "/api/v1/openapi.json";
/// Where the interactive documentation (Swagger UI, served from the binary) lives. Its pages
/// are not API operations, so they are the one part of the router not in the document.
pub const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Audrey",
        description = "Audrey's HTTP API: ingest readings, query them, manage the registry of \
            locations and sensors, tokens and staged changes; act on data with rules, alerts, \
            webhooks and device commands. Every route under /api/v1 needs \
            `Authorization: Bearer <token>` (scopes: admin implies write and read). Every path \
            answers OPTIONS with an Allow header. Single records carry an ETag; send it back in \
            If-Match to write safely (412 on a lost update) or in If-None-Match to read cheaply \
            (304). Errors share one body: {\"error\": {\"code\", \"message\", \"details\"}}.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerSecurity),
    security(("bearer" = [])),
    components(schemas(schemas::ErrorBody)),
    tags(
        (name = "readings", description = "Ingest and query readings"),
        (name = "locations", description = "The places sensors are installed at"),
        (name = "sensors", description = "Registered devices"),
        (name = "tokens", description = "Bearer tokens (admin)"),
        (name = "statistics", description = "Summaries per group and time buckets over readings"),
        (name = "health", description = "Sensor status (online, offline, faulty, decommissioned) and its log"),
        (name = "events", description = "What the act engine decided: alerts raised and cleared, status changes, quality findings, command updates"),
        (name = "alerts", description = "Alerts raised by rules, acknowledged by operators, cleared by readings"),
        (name = "rules", description = "Threshold and no-data rules the engine checks every reading against"),
        (name = "webhooks", description = "Webhook subscriptions, their signed deliveries and attempts (admin)"),
        (name = "commands", description = "Commands queued for devices, with a time to live"),
        (name = "staged", description = "Two-step changes applied by following a confirmation link"),
        (name = "operations", description = "Health, readiness, metrics and this document; no token needed"),
    )
)]
pub(crate) struct ApiDoc;

struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        let components = document
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("aud_<43 characters>")
                    .build(),
            ),
        );
    }
}

/// The error answers added to operations that do not describe them themselves.
const ERROR_RESPONSES: &[(&str, &str, &str)] = &[
    (
        "400",
        "Malformed",
        "The body could not be read (not UTF-8, not JSON, too deep)",
    ),
    ("401", "Unauthenticated", "No valid bearer token"),
    (
        "403",
        "PermissionDenied",
        "The token lacks the scope this operation needs",
    ),
    ("404", "NotFound", "No such record"),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than the server accepts",
    ),
    (
        "422",
        "Invalid",
        "A parameter or field is invalid; details name each one and why",
    ),
    (
        "503",
        "Unavailable",
        "Storage is unavailable or the server is overloaded; retry after Retry-After",
    ),
];

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// Adds the shared error responses (one component per status, all with the error body) to
/// every operation, by what the operation can meet: authenticated routes 401/403/422/503,
/// routes with a path parameter 404, routes with a body 400/413.
pub(crate) fn finish(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = document
        .components
        .get_or_insert_with(utoipa::openapi::Components::new);
    for (_, name, description) in ERROR_RESPONSES {
        components.responses.insert(
            (*name).to_string(),
            RefOr::T(
                ResponseBuilder::new()
                    .description(*description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            ),
        );
    }
    for (path, item) in document.paths.paths.iter_mut() {
        let authenticated = path.starts_with("/api/v1/") && path != OPENAPI_PATH;
        let has_path_parameter = path.contains('{');
        for operation in operations_mut(item) {
            let has_body = operation.request_body.is_some();
            for (status, name, _) in ERROR_RESPONSES {
                let applies = match *status {
                    "401" | "403" | "422" | "503" => authenticated,
                    "404" => has_path_parameter,
                    "400" | "413" => has_body,
                    _ => false,
                };
                if applies {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
                }
            }
            if !authenticated {
                // An empty requirement: no token needed.
                operation.security = Some(vec![Default::default()]);
            }
        }
    }
    document
}

/// The rendered document, shared by every request.
#[derive(Clone)]
pub(crate) struct DocumentJson(pub Arc<str>);

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object,
        example = json!({"openapi": "3.1.0", "info": {"title": "Audrey"}, "paths": {}})))
)]
pub(crate) async fn document(Extension(document): Extension<DocumentJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.0.to_string(),
    )
        .into_response()
}
