//! The command line: exit statuses and the messages users see.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedcore-host"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn question_mark_without_marker_names_the_fix() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("site.csv");
    std::fs::write(&path, "1,2,0\n3,?,1\n5,6,0\n").unwrap();
    let output = run(&["compare", "--data", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("line 2, column 2"), "{message}");
    assert!(message.contains("--missing '?'"), "{message}");
    assert!(
        output.stdout.is_empty(),
        "nothing is printed before the input is checked"
    );
}

#[test]
fn missing_file_is_a_data_error() {
    let output = run(&["compare", "--data", "/nonexistent/fedcore.csv"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(stderr(&output).contains("/nonexistent/fedcore.csv"));
}

#[test]
fn invalid_settings_are_usage_errors() {
    for (args, expected) in [
        (&["compare", "--batch-size", "0"][..], "batch size 0"),
        (&["compare", "--dropout-rate", "1"][..], "dropout rate 1"),
        (
            &["compare", "--learning-rate", "-1"][..],
            "learning rate -1",
        ),
        (
            &["compare", "--offline-probability", "2"][..],
            "offline probability 2",
        ),
        (
            &["compare", "--test-fraction", "1.5"][..],
            "--test-fraction 1.5",
        ),
        (&["compare", "--seed", "abc"][..], "abc"),
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

#[test]
fn small_run_succeeds_and_prints_verdict() {
    let output = run(&[
        "compare",
        "--rounds",
        "2",
        "--local-epochs",
        "1",
        "--epochs",
        "2",
        "--dropout-rounds",
        "1",
        "--dropout-local-epochs",
        "1",
        "--seed",
        "9",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("fedcore compare: 3 hospitals, 20 features, seed 9\n"),
        "{text}"
    );
    assert!(text.contains("federated round  2/2"), "{text}");
    assert!(text.contains("\nverdict\n"), "{text}");
}

#[test]
fn zero_counts_are_usage_errors() {
    for option in [
        "--rounds",
        "--local-epochs",
        "--epochs",
        "--dropout-rounds",
        "--dropout-local-epochs",
    ] {
        let output = run(&["compare", option, "0"]);
        assert_eq!(output.status.code(), Some(2), "{option}");
        assert!(
            stderr(&output).contains(&format!("{option} 0 is invalid")),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn diverged_training_is_a_training_failure() {
    let output = run(&["compare", "--learning-rate", "1e30", "--rounds", "2"]);
    assert_eq!(output.status.code(), Some(4));
    let message = stderr(&output);
    assert!(message.contains("diverged"), "{message}");
    assert!(message.contains("--learning-rate"), "{message}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("NaN"), "{text}");
}

#[test]
fn full_disk_is_an_output_error() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_fedcore-host"))
        .args([
            "compare",
            "--rounds",
            "1",
            "--epochs",
            "1",
            "--dropout-rounds",
            "1",
        ])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert!(stderr(&output).contains("failed to write the report"));
}

#[test]
fn hospitals_option_sets_the_count() {
    let output = run(&[
        "compare",
        "--hospitals",
        "5",
        "--rounds",
        "1",
        "--epochs",
        "1",
        "--dropout-rounds",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("fedcore compare: 5 hospitals"), "{text}");
    let output = run(&["compare", "--hospitals", "65"]);
    assert_eq!(output.status.code(), Some(2));
    let output = run(&["compare", "--hospitals", "2", "--data", "x.csv"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn column_without_values_is_a_data_error() {
    let folder = tempfile::tempdir().unwrap();
    for name in ["a.csv", "b.csv"] {
        std::fs::write(folder.path().join(name), "?,1,0\n?,2,1\n?,3,0\n?,4,1\n").unwrap();
    }
    let output = run(&[
        "compare",
        "--data",
        folder.path().to_str().unwrap(),
        "--missing",
        "?",
    ]);
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(message.contains("feature column 1 (f0)"), "{message}");
    assert!(output.stdout.is_empty());
}

#[test]
fn weak_settings_are_warned_about() {
    let folder = tempfile::tempdir().unwrap();
    for name in ["a.csv", "b.csv"] {
        std::fs::write(
            folder.path().join(name),
            "1,2,1\n3,4,1\n5,6,1\n7,8,1\n9,1,0\n",
        )
        .unwrap();
    }
    let path = folder.path().to_str().unwrap();
    let args = [
        "compare",
        "--data",
        path,
        "--rounds",
        "1",
        "--epochs",
        "1",
        "--dropout-rounds",
        "1",
    ];
    let output = run(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("a has only 1 test row,"), "{message}");
    assert!(message.contains("specificity is undefined"), "{message}");
    assert!(
        !message.contains('\u{1b}'),
        "no colour codes when piped: {message}"
    );

    let quiet = run(&[&["-q"][..], &args[..]].concat());
    assert_eq!(quiet.status.code(), Some(0));
    assert!(stderr(&quiet).is_empty(), "{}", stderr(&quiet));

    let verbose = run(&[&["-v"][..], &args[..]].concat());
    assert!(
        stderr(&verbose).contains("comparison started"),
        "{}",
        stderr(&verbose)
    );
}
