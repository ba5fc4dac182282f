//! Thread counts: `compare` gives byte-identical reports, files, progress
//! lines and errors on one thread and on several.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fedcore_host::compare::{self, CompareConfig, CompareError};
use fedcore_host::data::{self, CsvOptions, Source};
use fedcore_host::{json, parallel, report};

fn threads(count: usize) -> NonZeroUsize {
    NonZeroUsize::new(count).unwrap()
}

fn repository_data(folder: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data")).join(folder)
}

/// Everything a run shows users: the progress lines, the text report, the
/// JSON report and the saved model, or the error.
#[derive(Debug, PartialEq)]
struct UserOutput {
    lines: Vec<String>,
    text: Result<String, CompareError>,
    json: Option<String>,
    model: Option<Vec<u8>>,
}

fn user_output(source: &Source, config: &CompareConfig, count: usize) -> UserOutput {
    let mut lines = Vec::new();
    let result = compare::run_with_threads(source, config, threads(count), &mut |line| {
        lines.push(line.to_owned())
    });
    match result {
        Ok(comparison) => UserOutput {
            lines,
            text: Ok(report::render(&comparison)),
            json: Some(json::render(&comparison)),
            model: Some(comparison.model),
        },
        Err(error) => UserOutput {
            lines,
            text: Err(error),
            json: None,
            model: None,
        },
    }
}

fn assert_same_at_every_thread_count(source: &Source, config: &CompareConfig) {
    let sequential = user_output(source, config, 1);
    for count in [2, 3, 8] {
        let parallel = user_output(source, config, count);
        assert_eq!(sequential.lines, parallel.lines, "{count} threads");
        assert_eq!(sequential.text, parallel.text, "{count} threads");
        assert_eq!(sequential.json, parallel.json, "{count} threads");
        assert_eq!(sequential.model, parallel.model, "{count} threads");
    }
}

#[test]
fn builtin_report_same_any_threads() {
    for seed in [0, 3] {
        let source = data::builtin_hospitals(seed, 0.2);
        let config = CompareConfig {
            seed,
            ..CompareConfig::default()
        };
        assert_same_at_every_thread_count(&source, &config);
    }
}

#[test]
fn five_hospitals_same_any_threads() {
    let source = data::builtin_hospitals_n(5, 0, 0.2);
    assert_same_at_every_thread_count(&source, &CompareConfig::default());
}

#[test]
fn heart_disease_same_any_threads() {
    let options = CsvOptions {
        missing: Some("?".to_owned()),
        ..CsvOptions::default()
    };
    let source = data::load(&[repository_data("heart-disease")], &options).unwrap();
    assert_same_at_every_thread_count(&source, &CompareConfig::default());
}

#[test]
fn keras_split_same_any_threads() {
    let options = CsvOptions {
        header: true,
        ..CsvOptions::default()
    };
    let source = data::load(&[repository_data("three-hospitals")], &options).unwrap();
    assert_same_at_every_thread_count(&source, &CompareConfig::default());
}

#[test]
fn later_divergence_same_any_threads() {
    // Each case was found by trying learning rates on the built-in data:
    // seed, learning rate, baseline epochs, local epochs per client-dropout
    // round, and the phase and site that diverge first.
    for (seed, learning_rate, baseline_epochs, dropout_local_epochs, phase, site) in [
        (2, 3e8, 100, 1, "isolated", "hospital 2"),
        (4, 4e8, 100, 1, "centralized", "the pooled rows"),
        (0, 3e8, 1, 30, "client-dropout", "hospital 1"),
    ] {
        let source = data::builtin_hospitals(seed, 0.2);
        let mut config = CompareConfig {
            rounds: 1,
            local_epochs: 1,
            baseline_epochs,
            dropout_local_epochs,
            seed,
            ..CompareConfig::default()
        };
        config.train.adam.learning_rate = learning_rate;
        let sequential = user_output(&source, &config, 1);
        match &sequential.text {
            Err(CompareError::Diverged {
                phase: got_phase,
                site: got_site,
                ..
            }) => {
                assert_eq!(*got_phase, phase, "seed {seed}");
                assert_eq!(got_site, site, "seed {seed}");
            }
            other => panic!("seed {seed}: expected {phase} to diverge, got {other:?}"),
        }
        assert_eq!(sequential, user_output(&source, &config, 2), "seed {seed}");
        assert_eq!(sequential, user_output(&source, &config, 8), "seed {seed}");
    }
}

/// What [`reversed_jobs`] observed.
struct Observed {
    lines: Vec<String>,
    result: Result<(u32, Vec<usize>), String>,
    started: usize,
}

/// Runs six jobs that finish in the reverse of their order, each with one
/// progress line, on `count` threads. Job `failing` returns an error.
fn reversed_jobs(count: usize, failing: Option<usize>) -> Observed {
    let jobs: Vec<usize> = (0..6).collect();
    let started = AtomicUsize::new(0);
    let mut lines = Vec::new();
    let result = parallel::run_in_order(
        threads(count),
        |progress| {
            std::thread::sleep(Duration::from_millis(30));
            progress("first");
            Ok(7)
        },
        &jobs,
        |&job| job as u64,
        |&job, progress| {
            started.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5 * (6 - job as u64)));
            progress(&format!("job {job}"));
            if Some(job) == failing {
                return Err(format!("job {job} failed"));
            }
            Ok(job * 10)
        },
        &mut |line| lines.push(line.to_owned()),
    );
    Observed {
        lines,
        result,
        started: started.into_inner(),
    }
}

#[test]
fn run_in_order_replays_in_job_order() {
    for count in [1, 2, 4, 16] {
        let Observed {
            lines,
            result,
            started,
        } = reversed_jobs(count, None);
        assert_eq!(
            lines,
            ["first", "job 0", "job 1", "job 2", "job 3", "job 4", "job 5"],
            "{count} threads"
        );
        assert_eq!(
            result,
            Ok((7, vec![0, 10, 20, 30, 40, 50])),
            "{count} threads"
        );
        assert_eq!(started, 6, "{count} threads");
    }
}

#[test]
fn run_in_order_stops_at_first_failure() {
    for count in [1, 2, 4, 16] {
        let Observed {
            lines,
            result,
            started,
        } = reversed_jobs(count, Some(2));
        assert_eq!(
            lines,
            ["first", "job 0", "job 1", "job 2"],
            "{count} threads"
        );
        assert_eq!(result, Err("job 2 failed".to_owned()), "{count} threads");
        if count == 1 {
            assert_eq!(started, 3, "jobs after the failed one started");
        }
    }
}

fn run_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedcore-host"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Replaces the run time that the "comparison finished" log line carries,
/// the one part of the log that differs between runs.
fn without_seconds(log: &[u8]) -> String {
    String::from_utf8_lossy(log)
        .lines()
        .map(|line| match line.find("seconds=") {
            Some(start) => format!("{}seconds=…", &line[..start]),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cli_threads_one_matches_default() {
    let folder = tempfile::tempdir().unwrap();
    let run = |name: &str, threads: &[&str]| {
        let json = folder.path().join(format!("{name}.json"));
        let model = folder.path().join(format!("{name}.model"));
        let mut args = vec!["-vv", "compare", "--hospitals", "4", "--seed", "9"];
        args.extend_from_slice(threads);
        args.extend_from_slice(&["--json", json.to_str().unwrap()]);
        args.extend_from_slice(&["--save-model", model.to_str().unwrap()]);
        let output = run_cli(&args);
        assert!(output.status.success(), "{name}: {output:?}");
        let json = std::fs::read(json).unwrap();
        let model = std::fs::read(model).unwrap();
        (output, json, model)
    };
    let (sequential, sequential_json, sequential_model) = run("one", &["--threads", "1"]);
    for (name, threads) in [("default", &[][..]), ("three", &["-j", "3"][..])] {
        let (parallel, parallel_json, parallel_model) = run(name, threads);
        assert_eq!(sequential.stdout, parallel.stdout, "{name}");
        assert_eq!(
            without_seconds(&sequential.stderr),
            without_seconds(&parallel.stderr),
            "{name}"
        );
        assert_eq!(sequential_json, parallel_json, "{name}");
        assert_eq!(sequential_model, parallel_model, "{name}");
    }
    let log = String::from_utf8_lossy(&sequential.stderr);
    assert!(log.contains("frame exchanged"), "{log}");
}

#[test]
fn cli_zero_threads_is_usage_error() {
    let output = run_cli(&["compare", "--threads", "0"]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("use 1 or more threads"), "{message}");
    assert!(output.stdout.is_empty());
}
