// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

//! A cached Python virtualenv with pinned requirements, for the tests driven by Python
//! clients (schemathesis, grpcio), and `run`, which runs a command to its end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a test needs installed: the requirements file's text and path, the modules whose
/// import proves the venv works, and pip arguments of its own.
pub struct Requirements<'a> {
    /// The folder under `CARGO_TARGET_TMPDIR` holding this test's venvs.
    pub cache: &'a str,
    pub text: &'a str,
    pub path: &'a str,
    pub import_check: &'a str,
    pub pip_args: &'a [&'a str],
}

/// The virtualenv's interpreter with the requirements importable, made once per Python
/// version and requirements text; `Err` says why no such environment can be had here.
pub fn python_with(requirements: &Requirements) -> Result<PathBuf, String> {
    let version = run(Command::new("python3").arg("--version"))
        .map_err(|problem| format!("python3 is not usable: {problem}"))?;
    // "Python 3.11.7" -> "python-3.11.7"
    let version = version.trim().replace(' ', "-").to_lowercase();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(requirements.cache)
        .join(format!(
            "{version}-{:016x}",
            fnv1a(requirements.text.as_bytes())
        ));
    let python = if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    };
    let ready = venv.join("requirements-installed.txt");
    // The marker is written last, so a run killed half-way through installs again; the import
    // check catches a venv whose base interpreter has since gone.
    if ready.exists() && run(Command::new(&python).args(["-c", requirements.import_check])).is_ok()
    {
        return Ok(python);
    }
    if venv.exists() {
        std::fs::remove_dir_all(&venv).unwrap();
    }
    std::fs::create_dir_all(&venv).unwrap();
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))
        .map_err(|problem| format!("python3 -m venv failed: {problem}"))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(requirements.pip_args)
        .args(["--retries", "1", "--timeout", "30"])
        .args(["--requirement", requirements.path]))
    .map_err(|problem| format!("pip could not install {}: {problem}", requirements.path))?;
    std::fs::write(&ready, requirements.text).unwrap();
    Ok(python)
}

/// Runs a command to its end; its stdout when it succeeded, else one line saying what failed.
pub fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{:?} could not start: {error}", command.get_program()))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last_line = stderr.lines().rfind(|line| !line.trim().is_empty());
    Err(format!(
        "{} ({})",
        last_line.unwrap_or("no message"),
        output.status
    ))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
