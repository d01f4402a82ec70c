// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

//! A private PostgreSQL instance for one test: `initdb` into a temporary directory, its own
//! free port on 127.0.0.1, started and stopped by the test with the installed server binaries
//! (so the test can cause a real database outage). Without the binaries the test is skipped
//! with a printed notice, unless `CI` is set, where it fails.

use std::path::PathBuf;
use std::process::Command;

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PrivatePostgres {
    bin: PathBuf,
    /// Holds `data/`, the socket and the log; removed on drop.
    root: tempfile::TempDir,
    pub port: u16,
}

impl PrivatePostgres {
    /// Creates (initdb) and starts an instance, or answers None (after printing why) when
    /// the PostgreSQL binaries are not installed and `CI` is not set.
    pub fn start_new(test: &str) -> Option<PrivatePostgres> {
        let bin = PathBuf::from(
            std::env::var("AUDREY_PG_BIN").unwrap_or_else(|_| DEFAULT_BIN.to_string()),
        );
        if !bin.join("initdb").exists() {
            let notice = format!(
                "{test}: skipped, no PostgreSQL server binaries in {} (set AUDREY_PG_BIN)",
                bin.display()
            );
            assert!(std::env::var_os("CI").is_none(), "{notice}; CI must run it");
            eprintln!("{notice}");
            return None;
        }
        let root = tempfile::Builder::new()
            .prefix("audrey-private-pg-")
            .tempdir()
            .expect("temporary directory");
        let instance = PrivatePostgres {
            bin,
            port: free_port(),
            root,
        };
        instance.hand_to_postgres_user();
        instance.run(
            "initdb",
            &[
                "-D",
                instance.data_dir().to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        instance.start();
        Some(instance)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.root.path().display()
        );
        let log = self.root.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().expect("utf-8 path"),
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8 path"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server (fast: open connections are cut, as in a real outage).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().expect("utf-8 path"),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }

    /// Runs one SQL statement with psql and answers its unaligned output lines.
    pub fn query(&self, sql: &str) -> Vec<String> {
        let output = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// PostgreSQL refuses to run as root: when we are root, its files belong to `postgres`
    /// and its commands run as that user.
    fn hand_to_postgres_user(&self) {
        if !running_as_root() {
            return;
        }
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(self.root.path())
            .status()
            .expect("run chown");
        assert!(
            status.success(),
            "chown of the private PostgreSQL directory"
        );
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(self.root.path())
            .output()
            .unwrap_or_else(|error| panic!("run {program}: {error}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}\nlog: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.root.path().join("postgres.log")).unwrap_or_default()
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Immediate: the directory is thrown away, nothing needs a clean shutdown.
        let path = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let _ = command
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port nothing listens on right now (the OS picks it; it is released before use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local address")
        .port()
}
