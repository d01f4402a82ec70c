// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

//! Runs the real `audrey` binary as a child process, for tests that must kill it.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    pub child: Child,
    pub base_url: String,
    pub grpc_url: String,
    pub token: String,
}

impl ServerProcess {
    /// Starts `audrey serve` on an ephemeral port and waits until it says where it listens.
    pub async fn start(data_dir: &Path) -> ServerProcess {
        ServerProcess::start_with(data_dir, &[]).await
    }

    /// Like [`ServerProcess::start`], with more `serve` arguments (`--store URL`, ...).
    pub async fn start_with(data_dir: &Path, extra_args: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(data_dir, extra_args, &[]).await
    }

    /// Like [`ServerProcess::start_with`], with environment variables (test failpoints).
    pub async fn start_with_env(
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_audrey"))
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra_args)
            .env("AUDREY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start audrey serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut http, mut grpc) = (None, None);
        let (base_url, grpc_url) = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line.split("serving HTTP on ").nth(1) {
                    http = Some(rest.split_whitespace().next().expect("address").to_string());
                }
                if let Some(rest) = line.split("serving gRPC on ").nth(1) {
                    grpc = Some(rest.split_whitespace().next().expect("address").to_string());
                }
                if let (Some(http), Some(grpc)) = (&http, &grpc) {
                    return (http.clone(), grpc.clone());
                }
            }
            panic!("audrey serve exited before listening");
        })
        .await
        .expect("audrey serve did not start within 60 s");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token = std::fs::read_to_string(data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string();
        ServerProcess {
            child,
            base_url,
            grpc_url,
            token,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill_hard(mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("wait");
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("pid");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "sending SIGTERM");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("audrey did not stop within 30 s of SIGTERM")
            .expect("wait")
    }
}
