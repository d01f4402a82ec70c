//! `OPTIONS` and the `Allow` header for every path, derived from the OpenAPI document that
//! the router is built from (`routes!` declares both at once), so they cannot drift.
//!
//! OPTIONS on a documented path answers 200 with `Allow`; a 405 gets the same `Allow`. HEAD is
//! listed wherever GET is, because the router answers HEAD with the GET handler.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi;

/// Path templates (split into segments, `{name}` matching any one segment) and their methods.
#[derive(Debug)]
pub(crate) struct AllowTable {
    routes: Vec<(Vec<String>, HeaderValue)>,
}

/// The methods the document declares for each path, in a stable order.
pub(crate) fn documented_methods(document: &OpenApi) -> Vec<(String, Vec<Method>)> {
    document
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let declared = [
                (Method::GET, item.get.is_some()),
                (Method::HEAD, item.get.is_some() || item.head.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::DELETE, item.delete.is_some()),
                (Method::OPTIONS, true),
            ];
            let methods = declared
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

impl AllowTable {
    pub fn from_document(document: &OpenApi) -> AllowTable {
        let routes = documented_methods(document)
            .into_iter()
            .filter_map(|(path, methods)| {
                let allow = methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                let segments = path.split('/').map(str::to_string).collect();
                HeaderValue::from_str(&allow)
                    .ok()
                    .map(|value| (segments, value))
            })
            .collect();
        AllowTable { routes }
    }

    /// The `Allow` value of the template matching `path`; a literal segment beats a
    /// parameter, as in the router (`/locations/import` before `/locations/{id}`).
    pub fn allow_for(&self, path: &str) -> Option<&HeaderValue> {
        let segments: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|(template, _)| template.len() == segments.len())
            .filter_map(|(template, allow)| {
                let mut literal = 0usize;
                for (expected, actual) in template.iter().zip(&segments) {
                    if expected.starts_with('{') && expected.ends_with('}') {
                        if actual.is_empty() {
                            return None;
                        }
                    } else if expected == actual {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, allow))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, allow)| allow)
    }
}

/// Answers OPTIONS itself and adds `Allow` to every 405.
pub(crate) async fn allow_layer(
    State(table): State<Arc<AllowTable>>,
    request: Request,
    next: Next,
) -> Response {
    let allow = table.allow_for(request.uri().path()).cloned();
    if request.method() == Method::OPTIONS
        && let Some(allow) = allow
    {
        return (StatusCode::OK, [(header::ALLOW, allow)]).into_response();
    }
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allow
    {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}
