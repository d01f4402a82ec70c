//! Every HTTP route, declared once. `routes!` takes handlers that carry `#[utoipa::path]`
//! and adds each to the router and to the OpenAPI document together, so a route cannot exist
//! in one and not the other; `OPTIONS`/`Allow` are derived from the document (`allow.rs`).
//!
//! To add a route: write the handler with `#[utoipa::path(method, path = "/api/v1/...",
//! tag = ..., params(...), responses(...))]` and add one `.routes(routes!(handler))` line
//! below, grouping handlers that share a path in one `routes!` call. Never add routes with
//! plain `.route(...)`: the contract test (`tests/api/contract.rs`) fails on a route the
//! document does not describe.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::act::{commands, monitoring, webhooks};
use super::{
    geo, import, locations, openapi, operations, readings, sensors, staged, stats, tokens,
};
use crate::AppState;

pub(crate) fn declared() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(readings::list, readings::ingest))
        .routes(routes!(readings::get_one))
        .routes(routes!(stats::aggregate))
        .routes(routes!(stats::stats))
        .routes(routes!(geo::near))
        .routes(routes!(import::import))
        .routes(routes!(readings::quarantine))
        .routes(routes!(locations::list, locations::create))
        .routes(routes!(
            locations::get_one,
            locations::put,
            locations::patch,
            locations::delete
        ))
        .routes(routes!(locations::stage_delete))
        .routes(routes!(sensors::list, sensors::create))
        .routes(routes!(
            sensors::get_one,
            sensors::put,
            sensors::patch,
            sensors::delete
        ))
        .routes(routes!(sensors::stage_delete))
        .routes(routes!(readings::latest))
        .routes(routes!(sensors::counters))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::get_one, tokens::put, tokens::revoke))
        .routes(routes!(staged::list))
        .routes(routes!(staged::cancel))
        .routes(routes!(staged::preview, staged::confirm))
        .routes(routes!(monitoring::events))
        .routes(routes!(monitoring::status_log))
        .routes(routes!(monitoring::sensor_status))
        .routes(routes!(monitoring::decommission, monitoring::recommission))
        .routes(routes!(monitoring::alerts))
        .routes(routes!(monitoring::alert))
        .routes(routes!(monitoring::acknowledge))
        .routes(routes!(monitoring::rules, monitoring::create_rule))
        .routes(routes!(
            monitoring::rule,
            monitoring::replace_rule,
            monitoring::delete_rule
        ))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(
            webhooks::get_one,
            webhooks::patch,
            webhooks::delete
        ))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::all_deliveries))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::redeliver))
        .routes(routes!(commands::list_for_sensor, commands::create))
        .routes(routes!(commands::list))
        .routes(routes!(commands::get_one))
        .routes(routes!(commands::cancel))
        .routes(routes!(openapi::document))
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::readyz))
        .routes(routes!(operations::metrics))
}
