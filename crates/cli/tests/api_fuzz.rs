//! API fuzz: schemathesis (PyPI) generates requests from the served OpenAPI document and runs
//! them against a real `audrey serve`, checking that no answer is a server error and that
//! every answer's status and body are the ones the document describes.
//!
//! The run is bounded: at most `MAX_EXAMPLES` generated cases per operation and a hard stop
//! after `TIME_LIMIT`. schemathesis lives in a virtualenv cached under the target directory,
//! keyed by the Python version and `api_fuzz/requirements.txt`. Without python3 or PyPI the
//! test prints `SKIPPED: <reason>` and passes; with `CI` set it fails instead.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/python_venv.rs"]
mod python_venv;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use python_venv::{Requirements, python_with};

const REQUIREMENTS: &str = include_str!("api_fuzz/requirements.txt");
const REQUIREMENTS_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api_fuzz/requirements.txt"
);
/// Holds `hooks.py` (a serializer for NDJSON bodies).
const HOOKS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api_fuzz");
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const TIME_LIMIT: Duration = Duration::from_secs(170);
const MAX_EXAMPLES: &str = "25";

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_document() {
    let python = match python_with_schemathesis() {
        Ok(python) => python,
        Err(reason) if std::env::var_os("CI").is_none() => {
            println!("SKIPPED: {reason}");
            return;
        }
        Err(reason) => panic!("{reason} (CI is set, so this fails instead of being skipped)"),
    };
    let data_dir = tempfile::tempdir().unwrap();
    let server = AudreyServer::start(data_dir.path());
    let token = std::fs::read_to_string(data_dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    seed(&server.http_url, &token);

    let schemathesis = python.parent().unwrap().join("schemathesis");
    let report = tempfile::tempdir().unwrap();
    let mut child = Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.http_url))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
        ])
        .args(["--mode", "all", "--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES, "--request-timeout", "10"])
        .args(["--seed", &seed_value().to_string(), "--workers", "2"])
        .args(["--no-color", "--report-dir"])
        .arg(report.path())
        // schemathesis keeps a cache in its working directory: keep it out of the source tree.
        .current_dir(report.path())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", HOOKS_DIR)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");
    let output = wait_bounded(&mut child, TIME_LIMIT);
    println!("{output}");
    let status = output_status(&output);
    assert!(
        status == Some(true),
        "schemathesis found answers outside the document or server errors (or ran out of \
         time) against {}:\n{output}",
        server.http_url
    );
    // Every request went somewhere: the run covered the whole document.
    assert!(
        output.contains("Operations:") && !output.contains("0 selected"),
        "{output}"
    );
}

/// A seed from the environment to reproduce a run, else a fresh one (printed in the output).
fn seed_value() -> u64 {
    std::env::var("AUDREY_FUZZ_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        })
}

/// Gives the run records to find: the ids in the document's examples exist.
fn seed(http_url: &str, token: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let requests = [
            (
                "/api/v1/locations/hangar-1",
                r#"{"name": "Hangar 1", "city": "Berlin", "country": "DE", "latitude": 52.36,
                    "longitude": 13.5, "timezone": "Europe/Berlin"}"#,
            ),
            (
                "/api/v1/sensors/th-0001",
                r#"{"kind": "climate", "location_id": "hangar-1",
                    "metrics": [{"name": "temperature", "unit": "C", "min": -40, "max": 85}]}"#,
            ),
        ];
        for (path, body) in requests {
            let response = client
                .put(format!("{http_url}{path}"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "seeding {path}");
        }
        let reading = format!(
            r#"{{"sensor_id": "th-0001", "read_at": {}, "values": {{"temperature": 21.5}}}}"#,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let response = client
            .post(format!("{http_url}/api/v1/readings"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(reading)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "seeding a reading");
    });
}

/// Waits for the child at most `limit`, killing it after; answers its exit and output.
fn wait_bounded(child: &mut Child, limit: Duration) -> String {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break format!("exit: {status}");
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break format!("exit: killed after {limit:?} (time limit)");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    format!("{status}\n--- stdout ---\n{out}\n--- stderr ---\n{err}")
}

fn output_status(output: &str) -> Option<bool> {
    let first = output.lines().next()?;
    Some(first == "exit: exit status: 0")
}

/// `audrey serve` over HTTP only, on port 0; killed when dropped, even by a panic.
struct AudreyServer {
    child: Child,
    http_url: String,
}

impl AudreyServer {
    fn start(data_dir: &Path) -> AudreyServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_audrey"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "off"])
            .env("AUDREY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start audrey serve");
        let stdout = child.stdout.take().unwrap();
        let (lines_sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_sender.send(line).is_err() {
                    break;
                }
            }
        });
        // Owned before anything can panic, so a failed start still kills and reaps the child.
        let mut server = AudreyServer {
            child,
            http_url: String::new(),
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while server.http_url.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(remaining)
                .expect("audrey serve printed its HTTP address in time");
            if let Some(rest) = line.split("serving HTTP on ").nth(1) {
                server.http_url = rest.split_whitespace().next().unwrap().to_string();
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || while lines.recv().is_ok() {});
        server
    }
}

impl Drop for AudreyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The virtualenv's interpreter with the pinned schemathesis importable; `Err` says why no
/// such environment can be had here.
fn python_with_schemathesis() -> Result<PathBuf, String> {
    python_with(&Requirements {
        cache: "api-fuzz-venv",
        text: REQUIREMENTS,
        path: REQUIREMENTS_PATH,
        import_check: "import schemathesis",
        pip_args: &[],
    })
}
