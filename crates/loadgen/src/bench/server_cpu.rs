//! The server's CPU time, read from `/proc/<pid>/stat` before and after a timed run.
//!
//! Throughput alone hides cost: a server that ingests 100k readings/s on both cores is worse than
//! one that does it on half a core. The generator runs on the same machine, so the server's own
//! CPU seconds are the only honest figure for "what did this load cost". Linux only; elsewhere
//! the figure is simply absent.

use anyhow::{Context, bail};

/// User plus system CPU seconds the process has used so far, all threads included.
pub fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ticks = cpu_ticks_from_stat(&stat).with_context(|| format!("parsing {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// Reads the whole-process CPU for a pid the caller gave, or nothing if it was not given.
pub fn optional_cpu_seconds(pid: Option<u32>) -> anyhow::Result<Option<f64>> {
    pid.map(process_cpu_seconds).transpose()
}

/// The CPU used between two readings; absent when either is (for example, the server died).
pub fn cpu_used(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// `utime + stime`, the 14th and 15th fields. The command name (field 2) is in parentheses and
/// may itself contain spaces and parentheses, so fields are counted from its last `)`.
fn cpu_ticks_from_stat(stat: &str) -> anyhow::Result<u64> {
    let Some((_, after_command)) = stat.rsplit_once(')') else {
        bail!("no command name in {stat:?}");
    };
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field n sits at index n - 3.
    let field = |number: usize| -> anyhow::Result<u64> {
        fields
            .get(number - 3)
            .with_context(|| format!("field {number} is missing"))?
            .parse::<u64>()
            .with_context(|| format!("field {number} is not a number"))
    };
    Ok(field(14)? + field(15)?)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the tick counts in `/proc`. It is 100 on every common
/// Linux build, which is also the fallback if the call fails.
#[allow(unsafe_code)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value; it takes no pointers and has no
    // preconditions beyond a valid name constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_found_after_a_command_name_with_spaces() {
        let stat = "4242 (audrey (serve) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    700 300 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks_from_stat(stat).unwrap(), 1000);
    }

    #[test]
    fn a_truncated_stat_line_is_an_error_not_a_zero() {
        assert!(cpu_ticks_from_stat("4242 (audrey) S 1 2").is_err());
        assert!(cpu_ticks_from_stat("garbage").is_err());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let seconds = process_cpu_seconds(std::process::id()).unwrap();
        assert!(seconds >= 0.0);
    }

    #[test]
    fn cpu_used_needs_both_readings() {
        assert_eq!(cpu_used(Some(1.0), Some(3.5)), Some(2.5));
        assert_eq!(cpu_used(Some(1.0), None), None);
    }
}
