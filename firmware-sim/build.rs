//! Puts one hospital's rows into the firmware image, gives cortex-m-rt
//! the board's memory map and sets `cfg(armv6m)` for a thumbv6m build.
//!
//! The rows come from the host library, so the firmware gets exactly the
//! rows that the host simulation gives the same hospital:
//!
//! - `FEDCORE_DATA` unset: the built-in synthetic hospitals,
//!   `builtin_hospitals(FEDCORE_SEED, FEDCORE_TEST_FRACTION)`.
//! - `FEDCORE_DATA` set: CSV files or folders, separated like `PATH`, read
//!   with the host's CSV loader and the options `FEDCORE_HEADER`,
//!   `FEDCORE_LABEL`, `FEDCORE_MISSING`, `FEDCORE_TEST_FRACTION` and
//!   `FEDCORE_SEED`, which mean what the `compare` options of the same
//!   names mean.
//!
//! `FEDCORE_HOSPITAL` picks the hospital, counted from 1 (default 1).
//! Feature values are stored raw, as `f64` bit patterns with NaN for a
//! missing value, so that the firmware can standardise them exactly as the
//! host does once the federation's statistics arrive.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use fedcore_host::compare::input_width;
use fedcore_host::data::{self, CsvOptions, HospitalData, LabelColumn, Source, Table};
use fedcore_host::qemu::firmware::DATA_VARIABLES;

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("memory.x", out_dir.join("memory.x")).expect("failed to copy memory.x to OUT_DIR");
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rerun-if-changed=memory.x");
    // `armv6m` marks the Cortex-M0 build, which main.rs makes trap
    // unaligned accesses.
    println!("cargo:rustc-check-cfg=cfg(armv6m)");
    if env::var("TARGET").is_ok_and(|target| target.starts_with("thumbv6m-")) {
        println!("cargo:rustc-cfg=armv6m");
    }
    println!("cargo:rerun-if-changed=build.rs");
    // The host's list, which it also clears before building an image.
    for name in DATA_VARIABLES {
        println!("cargo:rerun-if-env-changed={name}");
    }

    let hospital: usize = parse_env("FEDCORE_HOSPITAL", 1);
    let seed: u64 = parse_env("FEDCORE_SEED", 0);
    let test_fraction: f64 = parse_env("FEDCORE_TEST_FRACTION", 0.2);
    let (source, origin) = load_source(seed, test_fraction);
    let count = source.hospitals.len();
    if hospital == 0 || hospital > count {
        panic!("FEDCORE_HOSPITAL={hospital} is invalid; the data has hospitals 1 to {count}");
    }
    let features = source.feature_count();
    let inputs = input_width(features).unwrap_or_else(|| {
        panic!("{features} features are not supported; the model takes 1 to 64")
    });
    let data = &source.hospitals[hospital - 1];
    let code = generate(data, hospital, seed, &origin, features, inputs);
    fs::write(out_dir.join("hospital.rs"), code).expect("failed to write hospital.rs to OUT_DIR");
}

fn parse_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Err(_) => default,
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is invalid; give a number")),
    }
}

/// Loads the hospitals and describes where they came from.
fn load_source(seed: u64, test_fraction: f64) -> (Source, String) {
    let Some(paths) = env::var_os("FEDCORE_DATA") else {
        let origin = format!("built-in hospitals, seed {seed}, test fraction {test_fraction}");
        return (data::builtin_hospitals(seed, test_fraction), origin);
    };
    let paths: Vec<PathBuf> = env::split_paths(&paths).collect();
    for path in &paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let header = match env::var("FEDCORE_HEADER").as_deref() {
        Err(_) | Ok("" | "0" | "false") => false,
        Ok("1" | "true") => true,
        Ok(other) => panic!("FEDCORE_HEADER={other:?} is invalid; use 1 or 0"),
    };
    let label = match env::var("FEDCORE_LABEL") {
        Err(_) => LabelColumn::Last,
        Ok(text) => match text.parse::<usize>() {
            Ok(index) => LabelColumn::Index(index),
            Err(_) => LabelColumn::Name(text),
        },
    };
    let options = CsvOptions {
        header,
        label,
        missing: env::var("FEDCORE_MISSING").ok(),
        test_fraction,
        seed,
        ..CsvOptions::default()
    };
    let source = data::load(&paths, &options)
        .unwrap_or_else(|error| panic!("FEDCORE_DATA could not be loaded: {error}"));
    let names: Vec<String> = paths.iter().map(|path| display(path)).collect();
    (source, format!("CSV {}", names.join(", ")))
}

fn display(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// Writes the Rust source of the `hospital` module.
fn generate(
    data: &HospitalData,
    hospital: usize,
    seed: u64,
    origin: &str,
    features: usize,
    inputs: usize,
) -> String {
    let constants = [
        (
            "Display name of the hospital.",
            format!("NAME: &str = {:?}", data.name),
        ),
        (
            "Position of the hospital in its data, from 1.",
            format!("HOSPITAL: u32 = {hospital}"),
        ),
        (
            "Seed the rows were generated or split with.",
            format!("DATA_SEED: u64 = {seed}"),
        ),
        ("Source of the rows.", format!("ORIGIN: &str = {origin:?}")),
        (
            "Feature columns of each raw row.",
            format!("FEATURES: usize = {features}"),
        ),
        (
            "Model inputs: the features, then zero padding.",
            format!("INPUTS: usize = {inputs}"),
        ),
        (
            "Units of the first hidden layer, as in the host.",
            format!("HIDDEN1: usize = {}", fedcore_host::HIDDEN1),
        ),
        (
            "Units of the second hidden layer, as in the host.",
            format!("HIDDEN2: usize = {}", fedcore_host::HIDDEN2),
        ),
    ];
    let mut code = format!("// Generated by build.rs from the {origin}.\n");
    for (doc, declaration) in constants {
        let _ = writeln!(code, "/// {doc}\npub const {declaration};");
    }

    write_table(&mut code, "TRAIN", &data.train, features);
    write_table(&mut code, "TEST", &data.test, features);
    code
}

fn write_table(code: &mut String, prefix: &str, table: &Table, features: usize) {
    let rows = table.len();
    let _ = writeln!(code, "/// Rows of the {} set.", prefix.to_lowercase());
    let _ = writeln!(code, "pub const {prefix}_ROWS: usize = {rows};");
    let _ = writeln!(code, "/// Raw feature values as `f64` bit patterns.");
    let _ = writeln!(
        code,
        "pub static {prefix}_FEATURES: [[u64; FEATURES]; {prefix}_ROWS] = ["
    );
    for row in &table.features {
        assert_eq!(
            row.len(),
            features,
            "every row has the source's feature count"
        );
        code.push('[');
        for value in row {
            let _ = write!(code, "{:#x},", value.to_bits());
        }
        code.push_str("],\n");
    }
    code.push_str("];\n");
    let _ = writeln!(code, "/// Labels, 0 or 1.");
    let _ = writeln!(code, "pub static {prefix}_LABELS: [u8; {prefix}_ROWS] = [");
    for label in &table.labels {
        let _ = write!(code, "{label},");
    }
    code.push_str("];\n");
}
