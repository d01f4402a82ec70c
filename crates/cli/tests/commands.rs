//! The `audrey` commands besides the crash test: tokens from the command line, settings from
//! audrey.toml and the environment, migrate, simulate, and serve --demo.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/server_process.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use support::ServerProcess;

fn audrey(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_audrey"))
        .args(args)
        .env("AUDREY_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs an `audrey` command to its end; it must succeed, or its stderr is the failure.
async fn succeeds(command: &mut tokio::process::Command) -> std::process::Output {
    let output = command.env("AUDREY_LOG", "warn").output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_token_created_on_the_command_line_works_over_http_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let created = audrey(&[
        "token",
        "create",
        "--scope",
        "read",
        "--name",
        "dashboard",
        "--data-dir",
        data_dir,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let output = text(&created);
    let secret = output.lines().last().unwrap().trim().to_string();
    assert!(secret.starts_with("aud_"), "{output}");
    let client = reqwest::Client::new();
    let read = client
        .get(format!("{}/api/v1/readings", server.base_url))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let write = client
        .post(format!("{}/api/v1/readings", server.base_url))
        .bearer_auth(&secret)
        .json(&json!({"sensor_id": "x", "read_at": 1, "values": {"t": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 403, "a read token cannot write");

    let listed = text(&audrey(&["token", "list", "--data-dir", data_dir]));
    assert!(
        listed.contains("dashboard") && !listed.contains(&secret),
        "{listed}"
    );
    let id = output.split_whitespace().nth(2).unwrap().to_string();
    assert!(
        audrey(&["token", "revoke", &id, "--data-dir", data_dir])
            .status
            .success()
    );
    let listed = text(&audrey(&["token", "list", "--data-dir", data_dir]));
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&id) && line.contains("revoked")),
        "{listed}"
    );
    server.terminate().await;
}

#[test]
fn an_unknown_scope_on_the_command_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = audrey(&[
        "token",
        "create",
        "--scope",
        "root",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("root"));
}

#[test]
fn migrate_reports_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let output = audrey(&["migrate", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success());
    assert!(
        text(&output).starts_with("schema version 11"),
        "{}",
        text(&output)
    );
}

async fn admin(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await.unwrap();
    drop(client);
    let _ = driver.await;
}

#[tokio::test]
async fn migrate_applies_the_postgresql_schema_once_and_reports_its_version() {
    let Ok(admin_url) = std::env::var("AUDREY_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs AUDREY_TEST_POSTGRES_URL"
        );
        eprintln!("skipping PostgreSQL migrate test: AUDREY_TEST_POSTGRES_URL not set");
        return;
    };
    let database = format!("audrey_cli_{}", std::process::id());
    admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    )
    .await;
    admin(&admin_url, &format!("CREATE DATABASE {database}")).await;
    let base = admin_url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{database}");
    for _ in 0..2 {
        let output = audrey(&["migrate", "--store", &url]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            text(&output).starts_with("schema version 4 (this Audrey knows 4) in postgres://"),
            "{}",
            text(&output)
        );
    }
    let bad = audrey(&[
        "migrate",
        "--store",
        &format!("{base}/no_such_database_here"),
    ]);
    assert!(!bad.status.success(), "a missing database is an error");
    admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    )
    .await;
}

#[tokio::test]
async fn settings_come_from_audrey_toml_and_the_environment_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let data_dir = dir.path().join("from-file");
    let config = dir.path().join("audrey.toml");
    std::fs::write(
        &config,
        format!(
            "http_addr = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n",
            data_dir
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audrey"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--grpc-addr",
            "off",
        ])
        .env("AUDREY_MAX_BODY_BYTES", "1000")
        .env("AUDREY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut alive = false;
    for _ in 0..100 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            alive = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(alive, "the server listens on the address from audrey.toml");
    let token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
    let big = json!([{"sensor_id": "x".repeat(2000), "read_at": 1, "values": {"t": 1}}]);
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/v1/readings"))
        .bearer_auth(token.trim())
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413, "AUDREY_MAX_BODY_BYTES applies");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn import_locations_uploads_a_csv_and_prints_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let file = dir.path().join("places.csv");
    std::fs::write(
        &file,
        "icao,name,lat,lon,tz\nEDDB,Berlin,52.36,13.50,Europe/Berlin\nLFPG,Paris,48.0,2.5,Mars/Base\n",
    )
    .unwrap();
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_audrey"))
            .args(["import", "locations"])
            .arg(&file)
            .args([
                "--server",
                &server.base_url,
                "--token",
                &server.token,
                "--quiet",
            ])
            .output()
    };
    let output = run().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = text(&output);
    assert!(
        report.starts_with("2 rows: 1 inserted, 0 updated, 0 unchanged, 1 rejected"),
        "{report}"
    );
    assert!(report.contains("row 2 (line 3) tz"), "{report}");
    let again = text(&run().await.unwrap());
    assert!(
        again.starts_with("2 rows: 0 inserted, 0 updated, 1 unchanged"),
        "{again}"
    );
    let stored = get_json(&server, "/api/v1/locations/EDDB").await;
    assert_eq!(stored["name"], "Berlin");
    server.terminate().await;
}

#[tokio::test]
async fn simulate_registers_a_fleet_and_its_readings_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let output = succeeds(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_audrey"))
            .args([
                "simulate",
                "--url",
                &server.base_url,
                "--token",
                &server.token,
            ])
            .args([
                "--sensors",
                "20",
                "--locations",
                "4",
                "--rate",
                "200",
                "--seconds",
                "3",
                "--batch",
                "20",
            ]),
    )
    .await;
    let sensors = get_json(&server, "/api/v1/sensors?limit=100").await;
    assert_eq!(sensors["count"], 20);
    let stored = readings_stored(&server).await;
    assert!(
        stored >= 300,
        "about 600 readings in 3 s at 200/s, {stored} stored"
    );
    let summary = text(&output);
    assert!(summary.contains("accepted"), "{summary}");
    server.terminate().await;
}

#[tokio::test]
async fn serve_demo_shows_data_flowing_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_audrey"))
        .args([
            "serve",
            "--demo",
            "--demo-sensors",
            "10",
            "--demo-rate",
            "50",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("AUDREY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base_url = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(rest) = line.split("serving HTTP on ").nth(1) {
            base_url = Some(rest.split_whitespace().next().unwrap().to_string());
            break;
        }
    }
    let base_url = base_url.expect("the demo server says where it listens");
    let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let client = reqwest::Client::new();
    let mut stored = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let page: Value = client
            .get(format!("{base_url}/api/v1/readings?limit=100"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stored = page["count"].as_u64().unwrap();
        if stored >= 20 {
            break;
        }
    }
    assert!(
        stored >= 20,
        "the demo simulator's readings arrive; {stored} stored"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// Runs `audrey bench matrix` against `server` with `args` and returns its JSON reports.
async fn bench_matrix(server: &ServerProcess, args: &[&str]) -> Vec<Value> {
    let output = succeeds(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_audrey"))
            .args(["bench", "matrix", "--json", "--url", &server.base_url])
            .args(["--grpc-url", &server.grpc_url, "--token", &server.token])
            .args(["--server-pid", &server.child.id().unwrap().to_string()])
            .args(args),
    )
    .await;
    let reports: Value = serde_json::from_slice(&output.stdout).unwrap();
    reports.as_array().unwrap().clone()
}

/// `GET path` on the server's HTTP API as its admin, answered with JSON.
async fn get_json(server: &ServerProcess, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", server.base_url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every reading the server holds, counted from one page (the tests store fewer than a page).
async fn readings_stored(server: &ServerProcess) -> u64 {
    let page = get_json(server, "/api/v1/readings?limit=10000").await;
    let count = page["count"].as_u64().unwrap();
    assert!(count < 10_000, "more readings than one page holds");
    count
}

#[tokio::test]
async fn bench_matrix_stores_every_reading_it_reports_over_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let reports = bench_matrix(
        &server,
        &["--cells", "3x4", "--transports", "all", "--batch", "5"],
    )
    .await;
    assert_eq!(reports.len(), 5, "{reports:?}");
    let mut reported = 0;
    for report in &reports {
        let per_request = if report["scenario"].as_str().unwrap().contains("single")
            || report["scenario"].as_str().unwrap().contains("unary")
        {
            1
        } else {
            5
        };
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["requests"], 12, "{report}");
        assert_eq!(report["readings"], 12 * per_request, "{report}");
        assert!(report["server_cpu_seconds"].as_f64().is_some(), "{report}");
        assert!(report.get("target_requests_per_second").is_none());
        reported += report["readings"].as_u64().unwrap();
    }
    assert_eq!(reported, 12 * (1 + 1 + 5 + 5 + 5));
    assert_eq!(readings_stored(&server).await, reported);
    server.terminate().await;
}

#[tokio::test]
async fn bench_matrix_with_a_rate_keeps_to_its_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    // 4 workers x 25 requests at 200 a second: the last request is due 99 / 200 s after the
    // start, so no scenario can end sooner; unpaced, 100 small requests take a few ms.
    let reports = bench_matrix(
        &server,
        &[
            "--cells",
            "4x25",
            "--transports",
            "grpc-unary,grpc-stream,http-batch",
            "--batch",
            "10",
            "--rate",
            "200",
        ],
    )
    .await;
    assert_eq!(reports.len(), 3, "{reports:?}");
    for report in &reports {
        let scenario = report["scenario"].as_str().unwrap();
        assert!(scenario.ends_with("4x25 @200/s"), "{scenario}");
        assert_eq!(report["target_requests_per_second"], 200.0);
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["requests"], 100, "{report}");
        let elapsed = report["elapsed_seconds"].as_f64().unwrap();
        assert!(elapsed >= 0.495, "{scenario} ended after {elapsed} s");
        let requests_per_second = report["requests_per_second"].as_f64().unwrap();
        assert!(
            requests_per_second <= 203.0,
            "{scenario}: {requests_per_second}/s"
        );
    }
    assert_eq!(readings_stored(&server).await, 100 + 1000 + 1000);
    server.terminate().await;
}
