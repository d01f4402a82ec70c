//! REST semantics of the registry: PUT 201/200, soft delete and purge, include_deleted,
//! ETag/If-Match/If-None-Match, and staged changes with single-use, expiring links.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_of};

fn place(name: &str) -> Value {
    json!({"name": name, "city": "Oslo", "country": "NO", "latitude": 59.91, "longitude": 10.75,
           "timezone": "Europe/Oslo"})
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .bearer_auth(&app.token);
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("an ETag header")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn put_creates_with_201_then_replaces_with_200_for_locations_and_sensors() {
    let app = TestApp::spawn().await;
    let created = send(
        &app,
        Method::PUT,
        "/api/v1/locations/pier",
        Some(&place("Pier")),
        &[],
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let replaced = send(
        &app,
        Method::PUT,
        "/api/v1/locations/pier",
        Some(&place("Pier 2")),
        &[],
    )
    .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    assert_eq!(replaced.json::<Value>().await.unwrap()["name"], "Pier 2");

    let sensor = json!({"kind": "climate", "location_id": "pier"});
    let created = send(&app, Method::PUT, "/api/v1/sensors/s-1", Some(&sensor), &[]).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let replaced = send(&app, Method::PUT, "/api/v1/sensors/s-1", Some(&sensor), &[]).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn purge_needs_the_admin_scope_and_removes_the_record_for_good() {
    let app = TestApp::spawn().await;
    app.put_sensor("s-1", "pier", json!([])).await;
    let writer = app.create_token(&["write", "read"], None).await;
    let refused = app
        .client
        .delete(app.url("/api/v1/sensors/s-1?purge=true"))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let (status, error) = error_of(
        send(
            &app,
            Method::DELETE,
            "/api/v1/locations/pier?purge=true",
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a sensor still names it: {error}"
    );

    // Soft-delete first: the record is still there when asked for.
    let deleted = send(&app, Method::DELETE, "/api/v1/sensors/s-1", None, &[]).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/sensors/s-1?include_deleted=true")
            .await
            .status(),
        StatusCode::OK
    );
    let purged = send(
        &app,
        Method::DELETE,
        "/api/v1/sensors/s-1?purge=true",
        None,
        &[],
    )
    .await;
    assert_eq!(purged.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/sensors/s-1?include_deleted=true")
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a purged sensor is gone even with include_deleted"
    );
    let listed = app.get_json("/api/v1/sensors?include_deleted=true").await;
    assert_eq!(listed["count"], 0);

    let purged = send(
        &app,
        Method::DELETE,
        "/api/v1/locations/pier?purge=true",
        None,
        &[],
    )
    .await;
    assert_eq!(
        purged.status(),
        StatusCode::NO_CONTENT,
        "no sensor names it any more"
    );
    assert_eq!(
        app.get("/api/v1/locations/pier?include_deleted=true")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let again = send(
        &app,
        Method::PUT,
        "/api/v1/locations/pier",
        Some(&place("Pier")),
        &[],
    )
    .await;
    assert_eq!(again.status(), StatusCode::CREATED, "the id is free again");
    app.stop().await;
}

#[tokio::test]
async fn soft_deleted_records_are_hidden_unless_include_deleted() {
    let app = TestApp::spawn().await;
    app.put_sensor("s-1", "pier", json!([])).await;
    app.put_sensor("s-2", "pier", json!([])).await;
    send(&app, Method::DELETE, "/api/v1/sensors/s-1", None, &[]).await;

    assert_eq!(
        app.get("/api/v1/sensors/s-1").await.status(),
        StatusCode::NOT_FOUND
    );
    let shown = app
        .get_json("/api/v1/sensors/s-1?include_deleted=true")
        .await;
    assert!(shown["deleted_at"].is_string());
    let listed = app.get_json("/api/v1/sensors").await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s-2"]);
    let listed = app.get_json("/api/v1/sensors?include_deleted=true").await;
    assert_eq!(listed["count"], 2);

    // Tokens: revoking is their soft delete.
    let created: Value = send(
        &app,
        Method::POST,
        "/api/v1/tokens",
        Some(&json!({"scopes": ["read"]})),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/tokens/{id}");
    assert_eq!(app.get(&path).await.status(), StatusCode::OK);
    send(&app, Method::DELETE, &path, None, &[]).await;
    assert_eq!(app.get(&path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&format!("{path}?include_deleted=true"))
            .await
            .status(),
        StatusCode::OK
    );
    let listed = app.get_json("/api/v1/tokens").await;
    assert!(
        !listed.to_string().contains(id),
        "revoked tokens are hidden"
    );
    let listed = app.get_json("/api/v1/tokens?include_deleted=true").await;
    assert!(listed.to_string().contains(id));
    let purged = send(
        &app,
        Method::DELETE,
        &format!("{path}?purge=true"),
        None,
        &[],
    )
    .await;
    assert_eq!(purged.status(), StatusCode::NO_CONTENT);
    let listed = app.get_json("/api/v1/tokens?include_deleted=true").await;
    assert!(!listed.to_string().contains(id), "a purged token is gone");
    app.stop().await;
}

#[tokio::test]
async fn etags_answer_304_to_if_none_match_and_412_to_a_lost_update() {
    let app = TestApp::spawn().await;
    let created = send(
        &app,
        Method::PUT,
        "/api/v1/locations/pier",
        Some(&place("Pier")),
        &[],
    )
    .await;
    let first = etag(&created);
    assert!(
        first.starts_with('"') && first.ends_with('"'),
        "a strong tag: {first}"
    );
    let read = app.get("/api/v1/locations/pier").await;
    assert_eq!(etag(&read), first, "GET answers the tag the write answered");

    let unchanged = send(
        &app,
        Method::GET,
        "/api/v1/locations/pier",
        None,
        &[("if-none-match", &first)],
    )
    .await;
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&unchanged), first);

    // Two clients read the same version; the first write wins, the second is refused.
    let winner = send(
        &app,
        Method::PATCH,
        "/api/v1/locations/pier",
        Some(&json!({"name": "A"})),
        &[("if-match", &first)],
    )
    .await;
    assert_eq!(winner.status(), StatusCode::OK);
    let second = etag(&winner);
    assert_ne!(second, first, "a change changes the tag");
    let (status, error) = error_of(
        send(
            &app,
            Method::PUT,
            "/api/v1/locations/pier",
            Some(&place("B")),
            &[("if-match", &first)],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(error["code"], "precondition_failed");
    let (status, _) = error_of(
        send(
            &app,
            Method::PATCH,
            "/api/v1/locations/pier",
            Some(&json!({"name": "B"})),
            &[("if-match", &first)],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _) = error_of(
        send(
            &app,
            Method::DELETE,
            "/api/v1/locations/pier",
            None,
            &[("if-match", &first)],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        app.get_json("/api/v1/locations/pier").await["name"],
        "A",
        "refused writes changed nothing"
    );

    let changed = send(
        &app,
        Method::GET,
        "/api/v1/locations/pier",
        None,
        &[("if-none-match", &first)],
    )
    .await;
    assert_eq!(
        changed.status(),
        StatusCode::OK,
        "an old tag gets the new record"
    );
    let deleted = send(
        &app,
        Method::DELETE,
        "/api/v1/locations/pier",
        None,
        &[("if-match", &second)],
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let (status, _) = error_of(
        send(
            &app,
            Method::PUT,
            "/api/v1/locations/new",
            Some(&place("N")),
            &[("if-match", "*")],
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::PRECONDITION_FAILED,
        "If-Match: * needs an existing record"
    );
    app.stop().await;
}

async fn follow(app: &TestApp, method: Method, link: &str) -> reqwest::Response {
    send(app, method, link, None, &[]).await
}

#[tokio::test]
async fn a_staged_delete_changes_nothing_until_its_link_is_followed_once() {
    let app = TestApp::spawn().await;
    app.put_location("pier").await;
    let staged = app.get("/api/v1/locations/pier/delete").await;
    assert_eq!(staged.status(), StatusCode::ACCEPTED);
    let staged: Value = staged.json().await.unwrap();
    let link = staged["confirm_url"].as_str().unwrap().to_string();
    assert!(link.starts_with("/api/v1/staged/confirm/"), "{link}");
    assert_eq!(staged["staged"]["action"], "delete");

    assert_eq!(
        app.get("/api/v1/locations/pier").await.status(),
        StatusCode::OK,
        "not yet deleted"
    );
    let pending = app.get_json("/api/v1/staged").await;
    assert_eq!(pending["count"], 1);
    assert_eq!(pending["items"][0]["id"], staged["staged"]["id"]);
    let preview = follow(&app, Method::GET, &link).await;
    assert_eq!(preview.status(), StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/locations/pier").await.status(),
        StatusCode::OK,
        "a GET on the link changes nothing"
    );

    let applied = follow(&app, Method::POST, &link).await;
    assert_eq!(applied.status(), StatusCode::OK);
    let applied: Value = applied.json().await.unwrap();
    assert_eq!(applied["staged"]["status"], "applied");
    assert_eq!(
        app.get("/api/v1/locations/pier").await.status(),
        StatusCode::NOT_FOUND,
        "deleted now"
    );

    let (status, error) = error_of(follow(&app, Method::POST, &link).await).await;
    assert_eq!(status, StatusCode::GONE, "a link works once: {error}");
    assert_eq!(app.get_json("/api/v1/staged").await["count"], 0);
    let (status, _) =
        error_of(follow(&app, Method::POST, "/api/v1/staged/confirm/stg_made_up").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn staged_creates_replaces_and_patches_apply_only_when_confirmed() {
    let app = TestApp::spawn().await;
    let mut body = place("Quay");
    body["id"] = json!("quay");
    let staged = send(
        &app,
        Method::POST,
        "/api/v1/locations?stage=true",
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(staged.status(), StatusCode::ACCEPTED);
    let create: Value = staged.json().await.unwrap();
    assert_eq!(
        app.get("/api/v1/locations/quay").await.status(),
        StatusCode::NOT_FOUND
    );
    let applied = follow(&app, Method::POST, create["confirm_url"].as_str().unwrap()).await;
    assert_eq!(applied.status(), StatusCode::OK);
    assert_eq!(
        applied.json::<Value>().await.unwrap()["result"]["name"],
        "Quay"
    );
    assert_eq!(app.get_json("/api/v1/locations/quay").await["name"], "Quay");

    let replace: Value = send(
        &app,
        Method::PUT,
        "/api/v1/locations/quay?stage=true",
        Some(&place("Quay 2")),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    let patch: Value = send(
        &app,
        Method::PATCH,
        "/api/v1/locations/quay?stage=true",
        Some(&json!({"city": "Bergen"})),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(app.get_json("/api/v1/staged").await["count"], 2);
    assert_eq!(
        app.get_json("/api/v1/locations/quay").await["name"],
        "Quay",
        "nothing applied yet"
    );
    follow(&app, Method::POST, replace["confirm_url"].as_str().unwrap()).await;
    follow(&app, Method::POST, patch["confirm_url"].as_str().unwrap()).await;
    let now = app.get_json("/api/v1/locations/quay").await;
    assert_eq!(
        (now["name"].as_str(), now["city"].as_str()),
        (Some("Quay 2"), Some("Bergen"))
    );

    let (status, error) = error_of(
        send(
            &app,
            Method::POST,
            "/api/v1/locations?stage=true",
            Some(&json!({"name": "x", "latitude": 91, "longitude": 0})),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a staged change is validated when staged: {error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_staged_change_is_gone_and_its_link_answers_410() {
    let app = TestApp::spawn().await;
    app.put_location("pier").await;
    let staged: Value = app
        .get("/api/v1/locations/pier/delete")
        .await
        .json()
        .await
        .unwrap();
    let id = staged["staged"]["id"].as_str().unwrap();
    let cancelled = send(
        &app,
        Method::DELETE,
        &format!("/api/v1/staged/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_json("/api/v1/staged").await["count"], 0);
    let (status, _) =
        error_of(follow(&app, Method::POST, staged["confirm_url"].as_str().unwrap()).await).await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        app.get("/api/v1/locations/pier").await.status(),
        StatusCode::OK
    );
    let (status, _) = error_of(
        send(
            &app,
            Method::DELETE,
            &format!("/api/v1/staged/{id}"),
            None,
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "only a pending change can be cancelled"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_expired_link_answers_410_and_changes_nothing() {
    // The expiry is configuration: zero makes every link expire at once, no waiting needed.
    let app = TestApp::spawn_with(audrey_server::HttpOptions {
        staged_change_ttl: Duration::ZERO,
        ..Default::default()
    })
    .await;
    app.put_location("pier").await;
    let staged: Value = app
        .get("/api/v1/locations/pier/delete")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.get_json("/api/v1/staged").await["count"],
        0,
        "expired changes are not pending"
    );
    let (status, error) =
        error_of(follow(&app, Method::POST, staged["confirm_url"].as_str().unwrap()).await).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(
        error["message"].as_str().unwrap().contains("expired"),
        "{error}"
    );
    assert_eq!(
        app.get("/api/v1/locations/pier").await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn only_admins_stage_and_confirm() {
    let app = TestApp::spawn().await;
    app.put_location("pier").await;
    let reader = app.create_token(&["read", "write"], None).await;
    let refused = app.get_as(&reader, "/api/v1/locations/pier/delete").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let staged: Value = app
        .get("/api/v1/locations/pier/delete")
        .await
        .json()
        .await
        .unwrap();
    let refused = app
        .client
        .post(app.url(staged["confirm_url"].as_str().unwrap()))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/locations/pier").await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn put_creates_a_token_with_its_secret_then_replaces_its_scopes_keeping_the_secret() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "gateway", "scopes": ["read"]});
    let created = send(
        &app,
        Method::PUT,
        "/api/v1/tokens/gateway-1",
        Some(&body),
        &[],
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["id"], "gateway-1");
    let secret = created["token"].as_str().unwrap().to_string();
    assert_eq!(
        app.get_as(&secret, "/api/v1/readings").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_as(&secret, "/api/v1/locations/x/delete")
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "read only so far"
    );

    let read = app.get("/api/v1/tokens/gateway-1").await;
    let tag = etag(&read);
    let body = json!({"name": "gateway", "scopes": ["admin"]});
    let replaced = send(
        &app,
        Method::PUT,
        "/api/v1/tokens/gateway-1",
        Some(&body),
        &[("if-match", &tag)],
    )
    .await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let replaced: Value = replaced.json().await.unwrap();
    assert!(
        replaced.get("token").is_none(),
        "a replace never shows the secret again"
    );
    assert_eq!(replaced["scopes"], json!(["admin"]));
    assert_eq!(
        app.get_as(&secret, "/api/v1/staged").await.status(),
        StatusCode::OK,
        "the same secret now has the new scopes"
    );
    let (status, _) = error_of(
        send(
            &app,
            Method::PUT,
            "/api/v1/tokens/gateway-1",
            Some(&body),
            &[("if-match", &tag)],
        )
        .await,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::PRECONDITION_FAILED,
        "the old tag is stale"
    );

    // The token in hand cannot revoke or rewrite itself (the fuzzer once locked itself out).
    let mine = app
        .client
        .delete(app.url("/api/v1/tokens/gateway-1"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), StatusCode::CONFLICT);
    let (status, error) = error_of(
        send(
            &app,
            Method::PUT,
            "/api/v1/tokens/bad%20id",
            Some(&body),
            &[],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["details"][0]["path"], "id");
    app.stop().await;
}
