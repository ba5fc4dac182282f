//! The `compare` job: centralized, federated, isolated and client-dropout
//! training on the same hospitals, evaluated on the same test rows.

mod phases;

use std::num::NonZeroUsize;

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

use fedcore::train::{self, ConfigError, Dataset, Trainer};
use fedcore::wire::{FeatureStats, Standardization};
use fedcore::{model, Metrics, Params, TrainConfig};

use crate::data::Source;
use crate::device::{Device, Hospital};
use crate::parallel;
use crate::preprocess;
use crate::server::{Participation, RoundOutcome, Server, SetupError};
use crate::{HIDDEN1, HIDDEN2};

use self::phases::{JobResult, Phases};

/// Settings of one comparison. Defaults are those of the Keras workflow
/// that fedcore reproduces.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareConfig {
    /// Federated rounds (default 10).
    pub rounds: u32,
    /// Local epochs per federated round (default 3).
    pub local_epochs: u16,
    /// Epochs of the centralized and isolated baselines (default 30, the
    /// same total as 10 rounds × 3 local epochs).
    pub baseline_epochs: u16,
    /// Rounds of the client-dropout phase (default 5).
    pub dropout_rounds: u32,
    /// Local epochs per client-dropout round (default 5).
    pub dropout_local_epochs: u16,
    /// Probability that a hospital is offline in a client-dropout round
    /// (default 0.3).
    pub offline_probability: f64,
    /// Model and optimizer settings.
    pub train: TrainConfig,
    /// Seed of every random choice in training: initial weights, dropout
    /// masks, shuffles and offline draws.
    pub seed: u64,
    /// Devices of the federated phase's hospitals (default in-process).
    /// The other phases always run in-process.
    pub devices: Devices,
}

/// The kind of device a hospital runs as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Devices {
    /// In this process, as [`Hospital`] values.
    #[default]
    InProcess,
    /// Each as Cortex-M4F firmware in its own QEMU process; see
    /// [`crate::qemu`].
    Qemu,
}

impl std::str::FromStr for Devices {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "in-process" => Ok(Self::InProcess),
            "qemu" => Ok(Self::Qemu),
            other => Err(format!(
                "{other:?} is not a device kind; use in-process or qemu"
            )),
        }
    }
}

impl Default for CompareConfig {
    fn default() -> Self {
        Self {
            rounds: 10,
            local_epochs: 3,
            baseline_epochs: 30,
            dropout_rounds: 5,
            dropout_local_epochs: 5,
            offline_probability: 0.3,
            train: TrainConfig::default(),
            seed: 0,
            devices: Devices::InProcess,
        }
    }
}

/// Why a comparison could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// The training settings are invalid.
    #[error("invalid training setting: {0}")]
    Config(#[from] ConfigError),
    /// A count of rounds or epochs is zero.
    #[error("{option} 0 is invalid; use at least 1")]
    ZeroCount {
        /// The command-line option that sets the count.
        option: &'static str,
    },
    /// The offline probability is outside [0, 1].
    #[error("offline probability {0} is invalid; use a value from 0 to 1")]
    OfflineProbability(f64),
    /// There are no hospitals.
    #[error("no hospitals to compare; give at least one data file")]
    NoHospitals,
    /// A hospital has no training or no test rows.
    #[error(
        "{hospital} has no {part} rows; choose a --test-fraction that leaves both training and test rows, or give it more rows"
    )]
    EmptyHospital {
        /// The hospital's name.
        hospital: String,
        /// "training" or "test".
        part: &'static str,
    },
    /// A feature has no value in any hospital's training rows.
    #[error(
        "feature column {column} ({name}) has no value in any hospital's training rows, so it cannot be imputed; drop that column"
    )]
    EmptyColumn {
        /// One-based feature column.
        column: usize,
        /// The feature's name.
        name: String,
    },
    /// The feature count is outside what the model supports.
    #[error("{0} features are not supported; use 1 to {max}", max = crate::data::MAX_FEATURES)]
    FeatureCount(usize),
    /// The federation could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The QEMU devices could not be built or started.
    #[error("QEMU devices could not start: {0}")]
    Qemu(String),
    /// A baseline failed to train.
    #[error("{0}")]
    Training(String),
    /// Training made a model's parameters NaN or infinite.
    #[error(
        "{phase} training diverged at {site}: the parameters became NaN or infinite; lower --learning-rate (now {learning_rate:?}), for example to 0.001"
    )]
    Diverged {
        /// "federated", "isolated", "centralized" or "client-dropout".
        phase: &'static str,
        /// The hospital, or "the pooled rows" for centralized training.
        site: String,
        /// The learning rate in use.
        learning_rate: f64,
    },
}

/// Facts about one hospital that the report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct HospitalSummary {
    /// Display name.
    pub name: String,
    /// Training rows.
    pub train_rows: usize,
    /// Test rows.
    pub test_rows: usize,
    /// Positive test rows.
    pub test_positives: usize,
    /// Positive training rows.
    pub train_positives: usize,
    /// Missing values imputed, over training and test rows.
    pub imputed: usize,
    /// The feature whose training mean here is furthest from the
    /// federation's, in the federation's standard deviations.
    pub largest_shift: Option<(usize, f64)>,
}

/// One round's outcome with the global model's metrics at each hospital
/// after the round (`None` where evaluation failed).
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    /// Which hospitals took part and what became of their updates.
    pub outcome: RoundOutcome,
    /// Global-model metrics per hospital.
    pub metrics: Vec<Option<Metrics>>,
}

/// Everything a comparison measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The settings used.
    pub config: CompareConfig,
    /// Feature names.
    pub feature_names: Vec<String>,
    /// One entry per hospital.
    pub hospitals: Vec<HospitalSummary>,
    /// Federated rounds with all hospitals online.
    pub federated_rounds: Vec<RoundRecord>,
    /// The centralized model at each hospital's test rows.
    pub centralized: Vec<Metrics>,
    /// Each hospital's own model at its test rows.
    pub isolated: Vec<Option<Metrics>>,
    /// Rounds of the client-dropout phase.
    pub dropout_rounds: Vec<RoundRecord>,
    /// The final federated model as a fedcore `Model` frame, with the
    /// standardisation and feature count that raw rows need.
    pub model: Vec<u8>,
}

impl Comparison {
    /// The final federated metrics per hospital.
    pub fn federated(&self) -> Vec<Option<Metrics>> {
        final_metrics(&self.federated_rounds, self.hospitals.len())
    }

    /// The final client-dropout metrics per hospital.
    pub fn dropout(&self) -> Vec<Option<Metrics>> {
        final_metrics(&self.dropout_rounds, self.hospitals.len())
    }
}

fn final_metrics(rounds: &[RoundRecord], hospitals: usize) -> Vec<Option<Metrics>> {
    rounds
        .last()
        .map(|record| record.metrics.clone())
        .unwrap_or_else(|| vec![None; hospitals])
}

/// Checks that `config` is valid and that every hospital of `source` can
/// take part, without training anything.
pub fn check(source: &Source, config: &CompareConfig) -> Result<(), CompareError> {
    config.train.validate()?;
    let counts = [
        ("--rounds", config.rounds),
        ("--local-epochs", u32::from(config.local_epochs)),
        ("--epochs", u32::from(config.baseline_epochs)),
        ("--dropout-rounds", config.dropout_rounds),
        (
            "--dropout-local-epochs",
            u32::from(config.dropout_local_epochs),
        ),
    ];
    if let Some((option, _)) = counts.iter().find(|(_, count)| *count == 0) {
        return Err(CompareError::ZeroCount { option });
    }
    if !(0.0..=1.0).contains(&config.offline_probability) {
        return Err(CompareError::OfflineProbability(config.offline_probability));
    }
    if source.hospitals.is_empty() {
        return Err(CompareError::NoHospitals);
    }
    for hospital in &source.hospitals {
        for (part, table) in [("training", &hospital.train), ("test", &hospital.test)] {
            if table.is_empty() {
                return Err(CompareError::EmptyHospital {
                    hospital: hospital.name.clone(),
                    part,
                });
            }
        }
    }
    for column in 0..source.feature_count() {
        let present = source
            .hospitals
            .iter()
            .flat_map(|hospital| &hospital.train.features)
            .any(|row| row.get(column).is_some_and(|value| !value.is_nan()));
        if !present {
            return Err(CompareError::EmptyColumn {
                column: column + 1,
                name: source
                    .feature_names
                    .get(column)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
    }
    if input_width(source.feature_count()).is_none() {
        return Err(CompareError::FeatureCount(source.feature_count()));
    }
    Ok(())
}

/// Fewest test rows at which a hospital's accuracy is worth comparing: with
/// fewer, one row moves it by more than 5 percentage points.
pub const MIN_TEST_ROWS: usize = 20;

/// Returns warnings about settings that make the comparison weak or
/// partly meaningless, one sentence each, without failing the run.
pub fn warnings(source: &Source) -> Vec<String> {
    let mut warnings = Vec::new();
    for hospital in &source.hospitals {
        let rows = hospital.test.len();
        if rows > 0 && rows < MIN_TEST_ROWS {
            warnings.push(format!(
                "{} has only {rows} test row{}, so one row moves its accuracy by {:.1} percentage points; treat its figures as rough",
                hospital.name,
                if rows == 1 { "" } else { "s" },
                100.0 / rows as f64
            ));
        }
        let positives = hospital.test.positives();
        if rows > 0 && (positives == 0 || positives == rows) {
            let class = if positives == 0 {
                "negative"
            } else {
                "positive"
            };
            let undefined = if positives == 0 {
                "sensitivity"
            } else {
                "specificity"
            };
            warnings.push(format!(
                "every test row of {} is {class}, so its {undefined} is undefined and the report shows n/a",
                hospital.name
            ));
        }
    }
    warnings
}

/// Runs the comparison on `source` on up to
/// [`parallel::default_threads`] threads. `progress` receives one line per
/// phase and per round, in the same order at every thread count.
pub fn run(
    source: &Source,
    config: &CompareConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Comparison, CompareError> {
    run_with_threads(source, config, parallel::default_threads(), progress)
}

/// Runs the comparison on `source` on up to `threads` threads, the calling
/// thread included. The result, the progress lines and their order are the
/// same for every thread count. With one thread the phases run one after
/// another. With more, the federated phase runs on the calling thread and
/// the isolated training of each hospital, the centralized baseline and the
/// client-dropout phase run beside it. Logs of phases that run ahead are
/// held back until their turn when the `tracing` subscriber writes through
/// [`parallel::LogWriter`].
pub fn run_with_threads(
    source: &Source,
    config: &CompareConfig,
    threads: NonZeroUsize,
    progress: &mut dyn FnMut(&str),
) -> Result<Comparison, CompareError> {
    check(source, config)?;
    let features = source.feature_count();
    match input_width(features) {
        Some(8) => run_with::<8>(source, config, threads, progress),
        Some(16) => run_with::<16>(source, config, threads, progress),
        Some(20) => run_with::<20>(source, config, threads, progress),
        Some(24) => run_with::<24>(source, config, threads, progress),
        Some(32) => run_with::<32>(source, config, threads, progress),
        Some(40) => run_with::<40>(source, config, threads, progress),
        Some(48) => run_with::<48>(source, config, threads, progress),
        Some(56) => run_with::<56>(source, config, threads, progress),
        Some(64) => run_with::<64>(source, config, threads, progress),
        _ => Err(CompareError::FeatureCount(features)),
    }
}

/// Model input widths compiled into the host. Each width is its own
/// monomorphised copy of the training code, so the host keeps a few
/// rather than all 64.
pub const INPUT_WIDTHS: [usize; 9] = [8, 16, 20, 24, 32, 40, 48, 56, 64];

/// Returns the model input width for `features` features: the smallest
/// compiled width that fits them. Inputs past the features are zero
/// padding, which leaves training exactly as a model of `features` inputs
/// would do it (see `fedcore::model::glorot_uniform_padded`).
pub fn input_width(features: usize) -> Option<usize> {
    if features == 0 {
        return None;
    }
    INPUT_WIDTHS
        .iter()
        .copied()
        .find(|&width| width >= features)
}

type Model<const INPUTS: usize> = Params<INPUTS, HIDDEN1, HIDDEN2>;

/// Creates the hospitals as devices, each with its own rows.
fn hospitals<const INPUTS: usize>(
    source: &Source,
    config: &CompareConfig,
) -> Result<Vec<Box<dyn Device>>, CompareError> {
    let mut devices: Vec<Box<dyn Device>> = Vec::with_capacity(source.hospitals.len());
    for (index, data) in source.hospitals.iter().enumerate() {
        let hospital =
            Hospital::<INPUTS>::new(index as u32 + 1, data.clone(), config.train, config.seed)?;
        devices.push(Box::new(hospital));
    }
    Ok(devices)
}

/// Creates a server over fresh hospitals and sends them the federation's
/// standardisation.
fn federation<const INPUTS: usize>(
    source: &Source,
    config: &CompareConfig,
    initial: &Model<INPUTS>,
) -> Result<Federation<INPUTS>, CompareError> {
    let devices = hospitals::<INPUTS>(source, config)?;
    standardized_federation(devices, source, initial)
}

/// A server with its hospitals, the federation's standardisation and each
/// hospital's feature statistics.
type Federation<const INPUTS: usize> = (
    Server<INPUTS>,
    Standardization<INPUTS>,
    Vec<FeatureStats<INPUTS>>,
);

/// Creates a server over `devices` and sends them the federation's
/// standardisation.
fn standardized_federation<const INPUTS: usize>(
    devices: Vec<Box<dyn Device>>,
    source: &Source,
    initial: &Model<INPUTS>,
) -> Result<Federation<INPUTS>, CompareError> {
    let mut server = Server::new(devices, source.feature_count(), *initial);
    let (standardization, stats) = server.standardize()?;
    Ok((server, standardization, stats))
}

/// Like [`federation`], but each hospital runs as firmware in its own QEMU
/// process. `progress` receives one line per hospital started.
fn qemu_federation<const INPUTS: usize>(
    source: &Source,
    config: &CompareConfig,
    initial: &Model<INPUTS>,
    progress: &mut dyn FnMut(&str),
) -> Result<Federation<INPUTS>, CompareError> {
    let devices = crate::qemu::hospitals::<INPUTS>(source, config, progress)
        .map_err(|error| CompareError::Qemu(error.to_string()))?;
    standardized_federation(devices, source, initial)
}

fn run_with<const INPUTS: usize>(
    source: &Source,
    config: &CompareConfig,
    threads: NonZeroUsize,
    progress: &mut dyn FnMut(&str),
) -> Result<Comparison, CompareError> {
    let initial: Model<INPUTS> = model::glorot_uniform_padded(config.seed, source.feature_count());

    tracing::info!(
        hospitals = source.hospitals.len(),
        features = source.feature_count(),
        input_width = INPUTS,
        seed = config.seed,
        "comparison started"
    );
    let started = std::time::Instant::now();

    let (mut server, standardization, stats) = match config.devices {
        Devices::InProcess => federation::<INPUTS>(source, config, &initial)?,
        Devices::Qemu => qemu_federation::<INPUTS>(source, config, &initial, progress)?,
    };
    let names = server.names();
    let phases = Phases {
        source,
        config,
        initial: &initial,
        standardization: &standardization,
        names: &names,
    };
    let (federated_rounds, results) = phases.run_all(&mut server, threads, progress)?;
    let federated_model = *server.global();

    let mut isolated = Vec::with_capacity(names.len());
    let mut centralized = Vec::new();
    let mut dropout_rounds = Vec::new();
    for result in results {
        match result {
            JobResult::Isolated(metrics) => isolated.extend(metrics),
            JobResult::Centralized(metrics) => centralized = metrics,
            JobResult::Dropout(rounds) => dropout_rounds = rounds,
        }
    }

    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "comparison finished"
    );
    let hospitals = summaries(source, &standardization, &stats);
    let model = model_frame(
        &federated_model,
        config.rounds,
        source.feature_count(),
        &standardization,
    )?;
    Ok(Comparison {
        config: config.clone(),
        feature_names: source.feature_names.clone(),
        hospitals,
        federated_rounds,
        centralized,
        isolated,
        dropout_rounds,
        model,
    })
}

/// Encodes the final federated model for `--save-model`.
fn model_frame<const INPUTS: usize>(
    params: &Model<INPUTS>,
    rounds: u32,
    features: usize,
    standardization: &Standardization<INPUTS>,
) -> Result<Vec<u8>, CompareError> {
    let mut buffer = vec![0u8; fedcore::wire::frame_capacity::<INPUTS, HIDDEN1, HIDDEN2>()];
    // The feature count is at most 64, checked before training.
    let features = features as u16;
    let length =
        fedcore::wire::encode_model(&mut buffer, rounds, features, standardization, params)
            .map_err(|error| {
                CompareError::Training(format!("the final model could not be encoded: {error}"))
            })?;
    buffer.truncate(length);
    Ok(buffer)
}

/// Stops the comparison when a hospital's training diverged in `record`:
/// its update is missing, and the results would compare a broken model.
fn check_diverged(
    phase: &'static str,
    record: &RoundRecord,
    names: &[String],
    config: &CompareConfig,
) -> Result<(), CompareError> {
    let diverged = record
        .outcome
        .participation
        .iter()
        .position(|state| matches!(state, Participation::Diverged(_)));
    match diverged {
        Some(index) => Err(CompareError::Diverged {
            phase,
            site: names[index].clone(),
            learning_rate: config.train.adam.learning_rate,
        }),
        None => Ok(()),
    }
}

/// Stream of the offline draws, apart from every fedcore stream.
const OFFLINE_STREAM: u64 = 0x0ff1_1e00_0000_0000;

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn evaluate_round<const INPUTS: usize>(
    server: &mut Server<INPUTS>,
    outcome: RoundOutcome,
) -> RoundRecord {
    let metrics = server
        .evaluate_all(outcome.round)
        .into_iter()
        .map(Result::ok)
        .collect();
    RoundRecord { outcome, metrics }
}

fn round_line(phase: &str, rounds: u32, record: &RoundRecord, names: &[String]) -> String {
    let mut pooled = Metrics::default();
    for metrics in record.metrics.iter().flatten() {
        pooled.merge(metrics);
    }
    let accuracy = pooled
        .accuracy()
        .map_or_else(|| "n/a".to_owned(), |value| format!("{value:.3}"));
    let mut line = format!(
        "{phase} round {:>2}/{rounds}: accuracy {accuracy}",
        record.outcome.round
    );
    let per_hospital: Vec<String> = record
        .metrics
        .iter()
        .zip(names)
        .map(|(metrics, name)| {
            let value = metrics
                .and_then(|m| m.accuracy())
                .map_or_else(|| "n/a".to_owned(), |value| format!("{value:.3}"));
            format!("{name} {value}")
        })
        .collect();
    line.push_str(&format!(" ({})", per_hospital.join(", ")));
    let offline: Vec<&str> = record
        .outcome
        .participation
        .iter()
        .zip(names)
        .filter(|(state, _)| **state == Participation::Offline)
        .map(|(_, name)| name.as_str())
        .collect();
    if !offline.is_empty() {
        line.push_str(&format!("; offline: {}", offline.join(", ")));
    }
    for (state, name) in record.outcome.participation.iter().zip(names) {
        match state {
            Participation::Failed(reason) => line.push_str(&format!("; {name} left out: {reason}")),
            Participation::Diverged(_) => line.push_str(&format!("; {name} diverged")),
            _ => {}
        }
    }
    if record.outcome.kept_previous {
        line.push_str("; no update arrived, so the previous global model was kept");
    }
    line
}

fn centralized<const INPUTS: usize>(
    source: &Source,
    config: &CompareConfig,
    initial: &Model<INPUTS>,
    standardization: &Standardization<INPUTS>,
) -> Result<Vec<Metrics>, CompareError> {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for hospital in &source.hospitals {
        let prepared = preprocess::prepare(&hospital.train, standardization);
        features.extend(prepared.features);
        labels.extend(prepared.labels);
    }
    let pooled = Dataset::new(&features, &labels)
        .map_err(|error| CompareError::Training(error.to_string()))?;
    // Client id 0 is never a hospital's, so this trainer's streams are its own.
    let mut trainer = Trainer::new(config.train, *initial, config.seed, 0)?;
    let mut order = vec![0u32; pooled.len()];
    for _ in 0..config.baseline_epochs {
        trainer
            .train_epoch(&pooled, &mut order)
            .map_err(|error| CompareError::Training(error.to_string()))?;
    }
    if trainer.params().first_non_finite().is_some() {
        return Err(CompareError::Diverged {
            phase: "centralized",
            site: "the pooled rows".to_owned(),
            learning_rate: config.train.adam.learning_rate,
        });
    }

    let mut results = Vec::with_capacity(source.hospitals.len());
    for hospital in &source.hospitals {
        let prepared = preprocess::prepare(&hospital.test, standardization);
        let test = Dataset::new(&prepared.features, &prepared.labels)
            .map_err(|error| CompareError::Training(error.to_string()))?;
        results.push(train::evaluate(trainer.params(), &test));
    }
    Ok(results)
}

fn summaries<const INPUTS: usize>(
    source: &Source,
    standardization: &Standardization<INPUTS>,
    stats: &[FeatureStats<INPUTS>],
) -> Vec<HospitalSummary> {
    source
        .hospitals
        .iter()
        .zip(stats)
        .enumerate()
        .map(|(index, (hospital, stats))| HospitalSummary {
            name: hospital.name.clone(),
            train_rows: hospital.train.len(),
            test_rows: hospital.test.len(),
            test_positives: hospital.test.positives(),
            train_positives: hospital.train.positives(),
            imputed: source.missing.get(index).copied().unwrap_or(0),
            largest_shift: largest_shift(standardization, stats),
        })
        .collect()
}

/// Finds the feature whose mean in `stats` lies furthest from the
/// federation's mean, measured in the federation's standard deviations.
fn largest_shift<const INPUTS: usize>(
    standardization: &Standardization<INPUTS>,
    stats: &FeatureStats<INPUTS>,
) -> Option<(usize, f64)> {
    (0..INPUTS)
        .filter(|&column| stats.count[column] > 0)
        .map(|column| {
            let shift =
                (stats.mean[column] - standardization.mean[column]) / standardization.scale[column];
            (column, shift)
        })
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
}
