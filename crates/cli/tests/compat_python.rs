//! Wire compatibility of the compatibility `SensorService` with a client Audrey did not
//! generate: Python stubs made by grpcio-tools at run time (`compat/sensor_service_client_test.py`)
//! talk to the real `audrey serve`.
//!
//! The Python packages live in a virtualenv cached under the target directory and keyed by the
//! Python version and `compat/requirements.txt`, so only the first run pays for the install.
//! Without python3 or PyPI the test prints `SKIPPED: <reason>` and passes, so a laptop without
//! Python is not blocked; when `CI` is set the same situation fails instead, so CI never
//! passes by skipping.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "support/python_venv.rs"]
mod python_venv;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use python_venv::{Requirements, python_with};

const REQUIREMENTS: &str = include_str!("compat/requirements.txt");
const REQUIREMENTS_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/requirements.txt");
const CLIENT_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/compat/sensor_service_client_test.py"
);
const PROTO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../proto/compat/sensor_service.proto"
);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn a_client_generated_by_python_grpcio_tools_speaks_to_the_compatibility_sensor_service() {
    let started = Instant::now();
    let python = match python_with_grpc() {
        Ok(python) => python,
        // Without `CI` a missing toolchain is the machine's business; under CI it is a failure.
        Err(reason) if std::env::var_os("CI").is_none() => {
            println!("SKIPPED: {reason}");
            return;
        }
        Err(reason) => panic!("{reason} (CI is set, so this fails instead of being skipped)"),
    };
    println!(
        "Python gRPC environment ready after {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        python.display()
    );

    let data_dir = tempfile::tempdir().unwrap();
    let server = AudreyServer::start(data_dir.path());
    println!("{}", server.startup_lines.join("\n"));
    let output = Command::new(&python)
        .arg(CLIENT_TEST)
        .args(["--compat-addr", &server.compat_addr])
        .args(["--http-url", &server.http_url])
        .arg("--token-file")
        .arg(data_dir.path().join("admin.token"))
        .args(["--proto", PROTO])
        .output()
        .unwrap();
    let report = describe(&output);
    println!("{report}");
    assert!(
        output.status.success(),
        "the Python SensorService client failed against {}:\n{report}",
        server.compat_addr
    );
}

fn describe(output: &Output) -> String {
    let mut text = output.status.to_string();
    for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        let content = String::from_utf8_lossy(bytes);
        if !content.trim().is_empty() {
            text.push_str(&format!("\n--- {name} ---\n{}", content.trim_end()));
        }
    }
    text
}

/// `audrey serve` with all three listeners on port 0; killed when dropped, even by a panic.
struct AudreyServer {
    child: Child,
    http_url: String,
    compat_addr: String,
    /// What `audrey serve` printed up to the last address.
    startup_lines: Vec<String>,
}

impl AudreyServer {
    fn start(data_dir: &Path) -> AudreyServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_audrey"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--grpc-addr", "127.0.0.1:0"])
            .args(["--compat-addr", "127.0.0.1:0"])
            .env("AUDREY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start audrey serve");
        // A thread reads stdout to its end, so the child never blocks on a full pipe.
        let stdout = child.stdout.take().unwrap();
        let (lines_sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = AudreyServer {
            child,
            http_url: String::new(),
            compat_addr: String::new(),
            startup_lines: Vec::new(),
        };
        let mut grpc_url = String::new();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut printed = Vec::new();
        while server.http_url.is_empty() || grpc_url.is_empty() || server.compat_addr.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let line = match lines.recv_timeout(remaining) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "audrey serve did not print all three addresses within {STARTUP_TIMEOUT:?}; \
                     it printed:\n{}",
                    printed.join("\n")
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "audrey serve exited before printing all three addresses; it printed:\n{}",
                    printed.join("\n")
                ),
            };
            if let Some(address) = word_after(&line, "serving HTTP on ") {
                server.http_url = address;
            } else if let Some(address) = word_after(&line, "serving gRPC on ") {
                grpc_url = address;
            } else if let Some(address) = word_after(
                &line,
                "serving the compatibility SensorService without authentication on ",
            ) {
                server.compat_addr = address
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string();
            }
            printed.push(line);
        }
        server.startup_lines = printed;
        server
    }
}

impl Drop for AudreyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn word_after(line: &str, marker: &str) -> Option<String> {
    let rest = line.split(marker).nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

/// The virtualenv's interpreter, with the pinned grpcio and grpcio-tools importable; `Err`
/// says why no such environment can be had here.
fn python_with_grpc() -> Result<PathBuf, String> {
    python_with(&Requirements {
        cache: "compat-venv",
        text: REQUIREMENTS,
        path: REQUIREMENTS_PATH,
        import_check: "import grpc, grpc_tools",
        // Wheels only: building grpcio from C++ source would take tens of minutes here.
        pip_args: &["--only-binary=:all:"],
    })
}
