//! The HTTP contract: the router, the OpenAPI document and OPTIONS/Allow agree, checked by
//! iterating over the served document and the router itself (never a hand-written list).

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// A concrete path for a template: every `{parameter}` becomes a plausible id.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "no-such-id"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The Allow value a path should answer, computed here from the document on its own.
fn expected_allow(item: &Value) -> BTreeSet<String> {
    let mut methods: BTreeSet<String> = ["get", "head", "post", "put", "patch", "delete"]
        .into_iter()
        .filter(|method| item.get(*method).is_some())
        .map(str::to_uppercase)
        .collect();
    if methods.contains("GET") {
        methods.insert("HEAD".into());
    }
    methods.insert("OPTIONS".into());
    methods
}

fn allow_of(response: &reqwest::Response) -> BTreeSet<String> {
    response
        .headers()
        .get("allow")
        .map(|value| value.to_str().unwrap())
        .unwrap_or("")
        .split(',')
        .map(|method| method.trim().to_string())
        .filter(|method| !method.is_empty())
        .collect()
}

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the document needs no token"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn every_documented_path_answers_options_with_exactly_its_methods_and_405_agrees() {
    let app = TestApp::spawn().await;
    let document = document(&app).await;
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "the document lists the API: {paths:?}");
    for (template, item) in paths {
        let path = concrete(template);
        let expected = expected_allow(item);
        let response = app
            .client
            .request(Method::OPTIONS, app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "OPTIONS {path}");
        assert_eq!(allow_of(&response), expected, "Allow of {path}");

        for method in METHODS {
            let response = app
                .client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&path),
                )
                .bearer_auth(&app.token)
                .send()
                .await
                .unwrap();
            if expected.contains(method) {
                assert_ne!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented, so the router must serve it"
                );
                if response.status() == StatusCode::NOT_FOUND && method != "HEAD" {
                    let body: Value = response.json().await.unwrap();
                    assert_ne!(
                        body["error"]["message"], "no such route",
                        "{method} {template} is documented but the router has no such route"
                    );
                }
            } else {
                assert_eq!(
                    response.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented, so the router must refuse it"
                );
                assert_eq!(allow_of(&response), expected, "Allow on 405 of {path}");
            }
        }
    }
    app.stop().await;
}

/// The router's paths, read from its debug rendering (axum has no other way to list them).
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let rendered = format!("{router:?}");
    // Only the routed paths: the fallback router's catch-alls come after this field.
    let routed = rendered.split("fallback_router").next().unwrap();
    let mut paths = BTreeSet::new();
    let mut rest = routed;
    while let Some(start) = rest.find("RouteId(") {
        rest = &rest[start..];
        let Some(quote) = rest.find(": \"") else {
            break;
        };
        let after = &rest[quote + 3..];
        let end = after.find('"').unwrap();
        paths.insert(after[..end].to_string());
        rest = &after[end..];
    }
    paths
        .into_iter()
        .filter(|path| !path.contains("__private__axum"))
        .collect()
}

fn a_router() -> (axum::Router, tempfile::TempDir) {
    use audrey_ingest::{IngestMetrics, IngestOptions, Pipeline};
    let data_dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(audrey_store::SqliteStore::open(data_dir.path(), Default::default()).unwrap());
    let pipeline = Pipeline::start(
        store,
        IngestOptions::default(),
        Arc::new(IngestMetrics::default()),
    );
    let state = audrey_server::AppState::new(pipeline, Default::default());
    (audrey_server::router(state), data_dir)
}

#[tokio::test]
async fn every_route_in_the_router_is_in_the_document_and_every_documented_path_is_routed() {
    let (router, _data_dir) = a_router();
    let routed = router_paths(&router);
    assert!(
        routed.contains("/api/v1/readings"),
        "the router's paths could not be read from its debug output: {routed:?}"
    );
    // The interactive docs are pages, not API operations: the one known exception.
    let docs = audrey_server::DOCS_PATH;
    let routed: BTreeSet<String> = routed
        .into_iter()
        .filter(|path| !path.starts_with(docs))
        .collect();
    let documented: BTreeSet<String> = audrey_server::openapi_document()
        .paths
        .paths
        .keys()
        .cloned()
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented paths the router does not serve: {unrouted:?}"
    );
}

fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => into.push(reference.clone()),
                    _ => collect_refs(value, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, into)),
        _ => {}
    }
}

/// True when a media type shows an example itself, through its schema, or (for a list)
/// through the schema of its items.
fn has_example(document: &Value, media: &Value) -> bool {
    if media.get("example").is_some() || media.get("examples").is_some() {
        return true;
    }
    let mut schema = &media["schema"];
    if let Some(reference) = schema["$ref"].as_str() {
        schema = resolve(document, reference).unwrap();
    }
    if schema.get("example").is_some() || schema.get("examples").is_some() {
        return true;
    }
    ["oneOf", "anyOf"].iter().any(|key| {
        schema[*key].as_array().is_some_and(|choices| {
            choices
                .iter()
                .any(|choice| has_example(document, &serde_json::json!({"schema": choice})))
        })
    }) || (schema["properties"]["items"].is_object()
        && has_example(
            document,
            &serde_json::json!({"schema": schema["properties"]["items"]["items"]}),
        ))
}

#[tokio::test]
async fn the_document_is_openapi_3_1_every_ref_resolves_and_every_body_has_an_example() {
    let app = TestApp::spawn().await;
    let document = document(&app).await;
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "OpenAPI 3.1: {}",
        document["openapi"]
    );
    assert!(document["info"]["title"].is_string());
    assert!(
        document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer",
        "bearer security is declared"
    );
    let mut references = Vec::new();
    collect_refs(&document, &mut references);
    assert!(!references.is_empty());
    for reference in &references {
        assert!(
            resolve(&document, reference).is_some(),
            "{reference} does not resolve"
        );
    }
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let mut bodies = Vec::new();
            if let Some(content) = operation["requestBody"]["content"].as_object() {
                bodies.extend(content.values());
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                assert!(
                    status.parse::<u16>().is_ok(),
                    "{method} {path}: status {status}"
                );
                if status.starts_with('2')
                    && let Some(content) = response["content"].as_object()
                {
                    bodies.extend(content.values());
                }
            }
            for media in bodies {
                assert!(
                    has_example(&document, media),
                    "{method} {path}: a body without an example: {media}"
                );
            }
            let errors = operation["responses"]["422"]["$ref"].as_str();
            if path.starts_with("/api/v1/") && !path.ends_with("openapi.json") {
                let error = resolve(&document, errors.unwrap_or("#/missing"))
                    .unwrap_or_else(|| panic!("{method} {path}: no 422 answer documented"));
                assert_eq!(
                    error["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody"
                );
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_interactive_docs_are_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let script = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script
            .text()
            .await
            .unwrap()
            .contains("/api/v1/openapi.json"),
        "the UI loads this server's document"
    );
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bundle.status(),
        StatusCode::OK,
        "assets come from the binary"
    );
    app.stop().await;
}
