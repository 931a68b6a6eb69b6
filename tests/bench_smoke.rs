//! CI smoke run of the benchmark (`src/bin/cronhook-bench.rs`): a few seconds of 100
//! every-second jobs on SQLite through a real `cronhook serve` process and an SDK
//! executor. Checks that the summary line is there and parses, and that no instant was
//! delivered twice or never. Timing figures are printed, not asserted: the full runs
//! (docs/performance.md) are by hand.

use std::collections::HashMap;
use std::process::Command;

fn bench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cronhook-bench"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CRONHOOK_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The `key=value` pairs of the `scenario=` line of `stdout`.
fn summary(stdout: &str) -> HashMap<String, String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("scenario="))
        .unwrap_or_else(|| panic!("no summary line in the output:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(fields: &HashMap<String, String>, key: &str) -> f64 {
    let value = fields
        .get(key)
        .unwrap_or_else(|| panic!("summary has no {key}: {fields:?}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("{key}={value} is not a number: {e}"))
}

/// A finished bench run: its summary fields and everything it printed.
struct Run {
    fields: HashMap<String, String>,
    output: String,
    status: std::process::ExitStatus,
}

fn run_bench(args: &[&str]) -> Run {
    let out = bench().args(args).output().expect("cronhook-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let output = format!("{stdout}\n{stderr}");
    // Shown on failure, and with --nocapture.
    println!("{output}");
    Run {
        fields: summary(&stdout),
        output,
        status: out.status,
    }
}

#[test]
fn a_short_sqlite_run_delivers_every_instant_exactly_once() {
    let run = run_bench(&[
        "--jobs",
        "100",
        "--duration",
        "5",
        "--warmup",
        "2",
        "--drain",
        "15",
    ]);
    let (fields, output) = (&run.fields, &run.output);
    assert_eq!(fields["scenario"], "throughput");
    assert_eq!(fields["backend"], "sqlite");
    assert_eq!(number(fields, "jobs"), 100.0);
    assert_eq!(number(fields, "dup"), 0.0, "{output}");
    assert_eq!(number(fields, "missing"), 0.0, "{output}");
    assert_eq!(number(fields, "expected_fps"), 100.0);
    // A loose sanity bound, not a performance target: the arrivals counted in the
    // window are the instants scheduled in it, give or take the edges.
    let achieved = number(fields, "achieved_fps");
    assert!(
        (50.0..=150.0).contains(&achieved),
        "achieved_fps={achieved} for 100 expected\n{output}"
    );
    for key in [
        "lag_p50_ms",
        "lag_p99_ms",
        "completion_p50_ms",
        "cpu_s",
        "rss_peak_mb",
    ] {
        number(fields, key);
    }
    assert!(number(fields, "rss_peak_mb") > 0.0, "{output}");
    assert!(run.status.success(), "exit {:?}\n{output}", run.status);
}

#[test]
fn a_spread_sync_run_delivers_every_instant_exactly_once() {
    let run = run_bench(&[
        "--jobs",
        "50",
        "--duration",
        "3",
        "--warmup",
        "2",
        "--drain",
        "10",
        "--sink",
        "sync",
        "--create",
        "bulk",
        "--spread",
    ]);
    let (fields, output) = (&run.fields, &run.output);
    assert_eq!(fields["spread"], "true");
    assert_eq!(fields["sink"], "sync");
    assert_eq!(number(fields, "expected_fps"), 50.0);
    assert_eq!(number(fields, "dup"), 0.0, "{output}");
    assert_eq!(number(fields, "missing"), 0.0, "{output}");
    assert!(run.status.success(), "exit {:?}\n{output}", run.status);
}

#[test]
fn an_app_target_run_through_executor_selection_delivers_every_instant_exactly_once() {
    let run = run_bench(&[
        "--jobs",
        "100",
        "--duration",
        "3",
        "--warmup",
        "2",
        "--drain",
        "15",
        "--create",
        "bulk",
        "--target",
        "app",
    ]);
    let (fields, output) = (&run.fields, &run.output);
    assert_eq!(fields["target"], "app");
    assert_eq!(fields["sink"], "callback");
    assert_eq!(number(fields, "expected_fps"), 100.0);
    assert_eq!(number(fields, "dup"), 0.0, "{output}");
    assert_eq!(number(fields, "missing"), 0.0, "{output}");
    assert_eq!(number(fields, "not_succeeded"), 0.0, "{output}");
    assert!(run.status.success(), "exit {:?}\n{output}", run.status);
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let out = bench()
        .args(["--nodes", "2"])
        .output()
        .expect("cronhook-bench runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--postgres"), "{stderr}");

    let out = bench()
        .args(["--schedule", "every tuesday"])
        .output()
        .expect("cronhook-bench runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--schedule"), "{stderr}");

    let out = bench()
        .args(["--spread"])
        .output()
        .expect("cronhook-bench runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--spread"), "{stderr}");

    let out = bench()
        .args(["--target", "app", "--sink", "sync"])
        .output()
        .expect("cronhook-bench runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--target app"), "{stderr}");
}
