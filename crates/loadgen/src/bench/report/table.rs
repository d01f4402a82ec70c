//! Reports as plain text: an aligned table for the end of a run, one line for a log.

use std::time::Duration;

use super::BenchReport;

/// One column: its header and how a report fills it.
struct Column {
    header: &'static str,
    cell: fn(&BenchReport) -> String,
}

const COLUMNS: &[Column] = &[
    Column {
        header: "scenario",
        cell: |report| report.scenario.clone(),
    },
    Column {
        header: "workers",
        cell: |report| report.workers.to_string(),
    },
    Column {
        header: "req/worker",
        cell: |report| {
            report
                .requests_per_worker
                .map_or_else(|| "-".to_string(), |requests| requests.to_string())
        },
    },
    Column {
        header: "requests",
        cell: |report| report.requests.to_string(),
    },
    Column {
        header: "readings",
        cell: |report| report.readings.to_string(),
    },
    Column {
        header: "errors",
        cell: |report| report.errors.to_string(),
    },
    Column {
        header: "retries",
        cell: |report| report.retries.to_string(),
    },
    Column {
        header: "rejected",
        cell: |report| report.rejected_readings.to_string(),
    },
    Column {
        header: "elapsed s",
        cell: |report| format!("{:.2}", report.elapsed.as_secs_f64()),
    },
    Column {
        header: "requests/s",
        cell: |report| format!("{:.1}", report.requests_per_second),
    },
    Column {
        header: "readings/s",
        cell: |report| format!("{:.0}", report.readings_per_second),
    },
    Column {
        header: "p50 ms",
        cell: |report| format_milliseconds(report.p50),
    },
    Column {
        header: "p90 ms",
        cell: |report| format_milliseconds(report.p90),
    },
    Column {
        header: "p99 ms",
        cell: |report| format_milliseconds(report.p99),
    },
    Column {
        header: "max ms",
        cell: |report| format_milliseconds(report.max),
    },
    Column {
        header: "server cpu s",
        cell: |report| {
            report
                .server_cpu_seconds
                .map_or_else(|| "-".to_string(), |seconds| format!("{seconds:.2}"))
        },
    },
    Column {
        header: "readings/cpu s",
        cell: |report| {
            report
                .readings_per_server_cpu_second
                .map_or_else(|| "-".to_string(), |rate| format!("{rate:.0}"))
        },
    },
];

impl BenchReport {
    /// A plain-text table, one row per report, numbers right-aligned, followed by any first
    /// errors so a failing run cannot be mistaken for a fast one. The `req/worker` column is
    /// left out when no report fixes it.
    pub fn table(reports: &[BenchReport]) -> String {
        let show_requests_per_worker = reports
            .iter()
            .any(|report| report.requests_per_worker.is_some());
        let columns: Vec<&Column> = COLUMNS
            .iter()
            .filter(|column| show_requests_per_worker || column.header != "req/worker")
            .collect();
        let mut rows = vec![
            columns
                .iter()
                .map(|column| column.header.to_string())
                .collect::<Vec<_>>(),
        ];
        rows.extend(
            reports
                .iter()
                .map(|report| columns.iter().map(|column| (column.cell)(report)).collect()),
        );
        let widths: Vec<usize> = (0..columns.len())
            .map(|column| {
                rows.iter()
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut table = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(column, (cell, width))| {
                    // The scenario name reads best left-aligned, numbers right-aligned.
                    if column == 0 {
                        format!("{cell:<width$}")
                    } else {
                        format!("{cell:>width$}")
                    }
                })
                .collect();
            table.push_str(cells.join("  ").trim_end());
            table.push('\n');
        }
        for report in reports {
            if let Some(error) = &report.first_error {
                table.push_str(&format!("{}: first error: {error}\n", report.scenario));
            }
        }
        table
    }

    /// The table under a title line and a rule as long as the title, for output that holds
    /// several tables (the matrix, then the query scenarios).
    pub fn table_with_title(title: &str, reports: &[BenchReport]) -> String {
        let rule = "=".repeat(title.chars().count());
        format!("{title}\n{rule}\n{}", BenchReport::table(reports))
    }

    /// One line for a log: what ran, how fast, and how many errors.
    pub fn one_line_summary(&self) -> String {
        let mut line = format!(
            "{}: {} requests, {:.0} readings/s, p50 {} ms, p99 {} ms, {} errors",
            self.scenario,
            self.requests,
            self.readings_per_second,
            format_milliseconds(self.p50),
            format_milliseconds(self.p99),
            self.errors
        );
        if let Some(error) = &self.first_error {
            line.push_str(&format!(" (first: {error})"));
        }
        line
    }
}

fn format_milliseconds(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::Tally;

    fn sample_report() -> BenchReport {
        let mut tally = Tally::new().unwrap();
        for millis in 1..=100 {
            tally.record_latency(Duration::from_millis(millis));
        }
        tally.requests = 100;
        tally.readings = 100_000;
        tally.into_report("http-ingest", 8, Duration::from_secs(2), Some(1.5))
    }

    #[test]
    fn the_table_has_every_column_and_one_row_per_report() {
        let table = BenchReport::table(&[sample_report(), sample_report()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        for column in [
            "scenario",
            "workers",
            "requests",
            "readings",
            "errors",
            "retries",
            "requests/s",
            "readings/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "server cpu s",
            "readings/cpu s",
        ] {
            assert!(lines[0].contains(column), "missing {column}: {}", lines[0]);
        }
        assert!(!lines[0].contains("req/worker"));
        assert!(lines[1].starts_with("http-ingest"));
        assert!(lines[1].contains("50000"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells[cells.len() - 2..], ["1.50", "66667"], "{}", lines[1]);
    }

    #[test]
    fn requests_per_worker_appear_when_a_report_fixes_them() {
        let mut matrix_report = sample_report();
        matrix_report.requests_per_worker = Some(12_345);
        let table = BenchReport::table(&[sample_report(), matrix_report]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("req/worker"));
        assert!(lines[2].contains("12345"));
        assert!(lines[1].contains(" - "));
    }

    #[test]
    fn the_first_error_is_printed_under_the_table() {
        let mut tally = Tally::new().unwrap();
        tally.record_error(|| "HTTP 401: no token".to_string());
        tally.record_error(|| "a later error".to_string());
        let report = tally.into_report("query-newest", 1, Duration::from_secs(1), None);
        assert_eq!(report.errors, 2);
        let table = BenchReport::table(&[report]);
        assert!(table.contains("query-newest: first error: HTTP 401: no token"));
        assert!(!table.contains("a later error"));
    }

    #[test]
    fn a_titled_table_starts_with_its_title_and_a_rule() {
        let table = BenchReport::table_with_title("gRPC queries", &[sample_report()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "gRPC queries");
        assert_eq!(lines[1], "============");
        assert!(lines[2].starts_with("scenario"));
    }

    #[test]
    fn the_one_line_summary_names_the_scenario_and_its_errors() {
        let line = sample_report().one_line_summary();
        assert!(line.starts_with("http-ingest: 100 requests, 50000 readings/s"));
        assert!(line.ends_with("0 errors"));
    }
}
