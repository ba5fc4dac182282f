//! Building firmware-sim images, one per hospital.
//!
//! The firmware's `build.rs` puts one hospital's rows into flash. It reads
//! them either from the host's built-in generator or from CSV files, as
//! `FEDCORE_*` environment variables select, so building an image is a
//! `cargo build --release` inside `firmware-sim/` with those variables set.
//! Each image is copied out of cargo's target folder to
//! `firmware-sim/target/hospitals/<name>-<build>/firmware-sim-<target
//! triple>.elf`, because the next build overwrites cargo's copy. `<build>`
//! counts this process's builds, so that two devices of one process never
//! share a folder, and the counting restarts with each process.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::data::{HospitalData, Table};

/// Missing-value marker in the CSV files handed to the firmware build.
const MISSING: &str = "?";

/// Every variable the firmware's `build.rs` reads. A build clears them all
/// and sets only its own, so the caller's environment cannot leak in.
pub const DATA_VARIABLES: [&str; 7] = [
    "FEDCORE_HOSPITAL",
    "FEDCORE_SEED",
    "FEDCORE_TEST_FRACTION",
    "FEDCORE_DATA",
    "FEDCORE_HEADER",
    "FEDCORE_LABEL",
    "FEDCORE_MISSING",
];

/// Variables of an outer cargo that would redirect or break the firmware
/// build: `RUSTFLAGS` replaces the linker script flag of the firmware's own
/// cargo config, and the others move its output.
const CARGO_VARIABLES: [&str; 5] = [
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
];

/// A processor firmware-sim is built for, with the QEMU board that runs it.
/// `firmware-sim/.cargo/config.toml` sets the linker flags of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// Cortex-M4F with FPU (`thumbv7em-none-eabihf`) on QEMU's `mps2-an386`
    /// board: the firmware's default target.
    #[default]
    CortexM4F,
    /// Cortex-M0 with soft float (`thumbv6m-none-eabi`). QEMU 7.2 has no
    /// Cortex-M0 board, so the Cortex-M3 of `mps2-an385` runs it. That
    /// board has `mps2-an386`'s memory map.
    CortexM0,
}

impl Target {
    /// Returns the Rust target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Self::CortexM4F => "thumbv7em-none-eabihf",
            Self::CortexM0 => "thumbv6m-none-eabi",
        }
    }

    /// Returns QEMU's `-cpu` and `-machine` values for this target.
    pub fn qemu_board(self) -> (&'static str, &'static str) {
        match self {
            Self::CortexM4F => ("cortex-m4", "mps2-an386"),
            Self::CortexM0 => ("cortex-m3", "mps2-an385"),
        }
    }
}

/// A firmware image and the target it was built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The ELF file.
    pub path: PathBuf,
    /// The target, which picks the QEMU board.
    pub target: Target,
}

/// Serialises the builds of this process, from writing the CSV files to
/// copying the image, because they share one cargo target folder. Its
/// value is the number of builds so far, which names each build's folder.
static BUILD_LOCK: Mutex<usize> = Mutex::new(0);

/// A failure to build or start a firmware image.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    /// The firmware-sim folder is not where it was looked for.
    #[error(
        "firmware sources not found in {0}; set FEDCORE_FIRMWARE_DIR to the firmware-sim folder"
    )]
    NotFound(PathBuf),
    /// A file could not be written or copied.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `cargo build` failed.
    #[error("building the firmware for {hospital} failed ({status}):\n{output}")]
    Build {
        /// The hospital whose image failed.
        hospital: String,
        /// Cargo's exit status, or why it did not run.
        status: String,
        /// The end of cargo's output.
        output: String,
    },
    /// QEMU did not start.
    #[error(transparent)]
    Spawn(io::Error),
}

/// The firmware-sim sources and the cargo that builds them.
#[derive(Debug, Clone)]
pub struct Firmware {
    dir: PathBuf,
    cargo: OsString,
    target: Target,
}

impl Firmware {
    /// Finds the firmware-sim folder: `FEDCORE_FIRMWARE_DIR` if set, else
    /// the one beside this host crate's sources.
    pub fn locate() -> Result<Self, FirmwareError> {
        let dir = std::env::var_os("FEDCORE_FIRMWARE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-sim"));
        Self::at(dir)
    }

    /// Uses the firmware-sim folder `dir`, building for the default target.
    pub fn at(dir: PathBuf) -> Result<Self, FirmwareError> {
        if !dir.join("Cargo.toml").is_file() {
            return Err(FirmwareError::NotFound(dir));
        }
        // Cargo passes its own path to the programs it runs; elsewhere the
        // one on PATH is used.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Ok(Self {
            dir,
            cargo,
            target: Target::default(),
        })
    }

    /// Returns this firmware set to build its images for `target`.
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Returns the target that images are built for.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Returns the firmware-sim folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Builds an image holding `data`, the rows of hospital `number`
    /// (counted from 1), and returns it. The rows go to the build as
    /// a `_train`/`_test` CSV pair, which the CSV loader reads back in
    /// file order. Every float is written as the shortest decimal that
    /// parses back to the same bits.
    pub fn build_from_rows(
        &self,
        number: usize,
        data: &HospitalData,
    ) -> Result<Image, FirmwareError> {
        let mut builds = BUILD_LOCK.lock().unwrap_or_else(|error| error.into_inner());
        *builds += 1;
        let folder = self.output_folder(&format!("hospital-{number}-{builds}"))?;
        let train = folder.join(format!("hospital-{number}_train.csv"));
        let test = folder.join(format!("hospital-{number}_test.csv"));
        write_csv(&train, &data.train)?;
        write_csv(&test, &data.test)?;
        let paths = std::env::join_paths([&train, &test]).map_err(|error| FirmwareError::Io {
            path: folder.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, error),
        })?;
        let variables = [
            ("FEDCORE_DATA", paths),
            ("FEDCORE_MISSING", MISSING.into()),
            ("FEDCORE_HOSPITAL", "1".into()),
        ];
        self.build(&data.name, &variables, &folder)
    }

    /// Builds an image holding built-in hospital `number` (counted from 1)
    /// of `builtin_hospitals(seed, test_fraction)`, generated inside the
    /// firmware's `build.rs`, and returns it.
    pub fn build_builtin(
        &self,
        number: usize,
        seed: u64,
        test_fraction: f64,
    ) -> Result<Image, FirmwareError> {
        let mut builds = BUILD_LOCK.lock().unwrap_or_else(|error| error.into_inner());
        *builds += 1;
        let folder =
            self.output_folder(&format!("builtin-{seed}-{test_fraction}-{number}-{builds}"))?;
        let variables = [
            ("FEDCORE_HOSPITAL", number.to_string().into()),
            ("FEDCORE_SEED", seed.to_string().into()),
            ("FEDCORE_TEST_FRACTION", test_fraction.to_string().into()),
        ];
        self.build(&format!("built-in hospital {number}"), &variables, &folder)
    }

    fn output_folder(&self, name: &str) -> Result<PathBuf, FirmwareError> {
        let folder = self.dir.join("target").join("hospitals").join(name);
        fs::create_dir_all(&folder).map_err(|source| FirmwareError::Io {
            path: folder.clone(),
            source,
        })?;
        Ok(folder)
    }

    /// Runs `cargo build --release` for the target in the firmware folder
    /// with `variables`, then copies the image into `folder`. The caller
    /// must have locked `BUILD_LOCK`.
    // NOTE: builds share one cargo target folder. BUILD_LOCK serialises
    // builds within this process, but two host processes building at once
    // can each copy the other's image.
    fn build(
        &self,
        hospital: &str,
        variables: &[(&str, OsString)],
        folder: &Path,
    ) -> Result<Image, FirmwareError> {
        let target_dir = self.dir.join("target");
        let mut command = Command::new(&self.cargo);
        command
            .current_dir(&self.dir)
            .args(["build", "--release", "--target", self.target.triple()])
            .arg("--target-dir")
            .arg(&target_dir);
        for name in DATA_VARIABLES.iter().chain(&CARGO_VARIABLES) {
            command.env_remove(name);
        }
        for (name, value) in variables {
            command.env(name, value);
        }
        let failed = |status: String, output: String| FirmwareError::Build {
            hospital: hospital.to_owned(),
            status,
            output,
        };
        let output = command
            .output()
            .map_err(|error| failed(format!("cargo did not start: {error}"), String::new()))?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            return Err(failed(output.status.to_string(), tail));
        }

        let triple = self.target.triple();
        let built = target_dir.join(triple).join("release").join("firmware-sim");
        let path = folder.join(format!("firmware-sim-{triple}.elf"));
        fs::copy(&built, &path).map_err(|source| FirmwareError::Io {
            path: built.clone(),
            source,
        })?;
        Ok(Image {
            path,
            target: self.target,
        })
    }
}

/// Writes `table` as headerless CSV with the label last and
/// [`MISSING`] for a missing value.
fn write_csv(path: &Path, table: &Table) -> Result<(), FirmwareError> {
    let mut text = String::new();
    for (row, label) in table.features.iter().zip(&table.labels) {
        for value in row {
            if value.is_nan() {
                text.push_str(MISSING);
            } else {
                // Debug formatting is the shortest round-trip decimal and
                // switches to exponent notation for very large or small
                // values, which the CSV loader parses.
                let _ = write!(text, "{value:?}");
            }
            text.push(',');
        }
        let _ = writeln!(text, "{label}");
    }
    fs::write(path, text).map_err(|source| FirmwareError::Io {
        path: path.to_path_buf(),
        source,
    })
}
