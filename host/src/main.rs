//! `fedcore-host`: simulates hospitals that train one model together and
//! compares federated training with centralized and isolated training.

use std::io::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fedcore::{AdamConfig, MomentPolicy, TrainConfig};
use fedcore_host::compare::{self, CompareConfig, CompareError, Devices};
use fedcore_host::data::{self, CsvOptions, LabelColumn, Source};
use fedcore_host::report;

/// Exit status for invalid input data.
const EXIT_DATA: u8 = 3;
/// Exit status for a training failure.
const EXIT_TRAINING: u8 = 4;
/// Exit status when the JSON report or the plot could not be written.
const EXIT_OUTPUT: u8 = 5;

#[derive(Parser)]
#[command(
    name = "fedcore-host",
    version,
    about = "Federated learning across hospitals that keep their rows"
)]
struct Cli {
    /// Log more detail to standard error: -v for the comparison's settings
    /// and duration, -vv for each frame exchanged.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Log errors only; warnings about the comparison are not shown.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

/// Sends tracing's events to standard error at the level that -v and -q set:
/// warnings by default, errors only with -q, more with each -v.
fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, _) => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        // Standard error, with the logs of phases that run ahead on other
        // threads held back and written in phase order.
        .with_writer(fedcore_host::parallel::LogWriter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

#[derive(Subcommand)]
enum Command {
    /// Train centralized, federated, isolated and client-dropout models on the
    /// same hospitals and compare them on each hospital's test rows.
    Compare(CompareArgs),
    /// Score rows with a model saved by `compare --save-model`: every row of
    /// every file, standardised and imputed with the model's statistics.
    Evaluate(EvaluateArgs),
}

#[derive(clap::Args)]
struct EvaluateArgs {
    /// The model file written by `compare --save-model`.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,

    /// CSV files or folders of them with the patients to score, one
    /// hospital per file, with the model's feature columns and a label.
    #[arg(long, num_args = 1.., required = true, value_name = "PATH")]
    data: Vec<PathBuf>,

    /// The first line of every file is a header.
    #[arg(long)]
    header: bool,

    /// Label column: a 0-based index, or a header name with --header.
    /// [default: the last column]
    #[arg(long, value_name = "COLUMN")]
    label: Option<String>,

    /// Text that marks a missing value, such as '?'.
    #[arg(long, value_name = "MARKER")]
    missing: Option<String>,

    /// Field delimiter: one character, or tab, comma or semicolon. [default: ,]
    #[arg(long, value_name = "CHAR", value_parser = data::parse_delimiter)]
    delimiter: Option<u8>,
}

fn label_column(label: &Option<String>) -> LabelColumn {
    match label {
        None => LabelColumn::Last,
        Some(text) => match text.parse::<usize>() {
            Ok(index) => LabelColumn::Index(index),
            Err(_) => LabelColumn::Name(text.clone()),
        },
    }
}

fn run_evaluate(args: &EvaluateArgs) -> ExitCode {
    let file = match std::fs::read(&args.model) {
        Ok(file) => file,
        Err(error) => {
            eprintln!(
                "error: failed to read the model file {}: {error}; check the path",
                args.model.display()
            );
            return ExitCode::from(EXIT_DATA);
        }
    };
    let options = CsvOptions {
        header: args.header,
        label: label_column(&args.label),
        missing: args.missing.clone(),
        delimiter: args.delimiter.unwrap_or(b','),
        ..CsvOptions::default()
    };
    let source = match data::load(&args.data, &options) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_DATA);
        }
    };
    match fedcore_host::evaluate::evaluate(&file, &source) {
        Ok(evaluation) => {
            let mut output = Output::default();
            output.write(&fedcore_host::evaluate::render(&evaluation));
            match output.failure {
                Some(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: failed to write to standard output: {error}");
                    ExitCode::from(EXIT_OUTPUT)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(error) => {
            eprintln!("error: {} ({})", error, args.model.display());
            ExitCode::from(EXIT_DATA)
        }
    }
}

#[derive(clap::Args)]
struct CompareArgs {
    /// CSV files or folders of them, one hospital per file. Files named
    /// NAME_train.csv and NAME_test.csv form one hospital with that split.
    /// Without this option, three built-in synthetic hospitals are used.
    #[arg(long, num_args = 1.., value_name = "PATH")]
    data: Vec<PathBuf>,

    /// Number of built-in synthetic hospitals, from 1 to 64. Three are the
    /// Keras workflow's 1000, 800 and 600 patients with feature 0 shifted
    /// by +2.5, 0 and −2.5; more spread the shift from +2.5 to −2.5 and vary
    /// the sizes from 300 to 1300 patients. Not with --data.
    #[arg(
        long,
        default_value_t = 3,
        value_name = "COUNT",
        conflicts_with = "data"
    )]
    hospitals: usize,

    /// The first line of every file is a header.
    #[arg(long)]
    header: bool,

    /// Label column: a 0-based index, or a header name with --header.
    /// Any non-zero label is positive. [default: the last column]
    #[arg(long, value_name = "COLUMN")]
    label: Option<String>,

    /// Field delimiter of the files: one character, or tab, comma or
    /// semicolon. [default: ,]
    #[arg(long, value_name = "CHAR", value_parser = data::parse_delimiter)]
    delimiter: Option<u8>,

    /// Text that marks a missing value, such as '?'. Missing values are
    /// imputed with the federated mean of the training rows.
    #[arg(long, value_name = "MARKER")]
    missing: Option<String>,

    /// Fraction of each hospital's rows held out for testing, for files
    /// without a given split and for the built-in hospitals.
    #[arg(
        long,
        default_value_t = 0.2,
        value_name = "FRACTION",
        allow_negative_numbers = true
    )]
    test_fraction: f64,

    /// Federated rounds.
    #[arg(long, default_value_t = 10)]
    rounds: u32,

    /// Local epochs each hospital trains per federated round.
    #[arg(long, default_value_t = 3, value_name = "EPOCHS")]
    local_epochs: u16,

    /// Epochs of the centralized and isolated baselines.
    #[arg(long, default_value_t = 30)]
    epochs: u16,

    /// Probability of dropping each hidden unit during training, in [0, 1).
    #[arg(
        long,
        default_value_t = 0.3,
        value_name = "RATE",
        allow_negative_numbers = true
    )]
    dropout_rate: f64,

    /// Rows per mini-batch.
    #[arg(long, default_value_t = 32, value_name = "ROWS")]
    batch_size: u32,

    /// Adam's learning rate.
    #[arg(
        long,
        default_value_t = 0.001,
        value_name = "RATE",
        allow_negative_numbers = true
    )]
    learning_rate: f64,

    /// Reset Adam's moments whenever a hospital receives a new global model,
    /// instead of keeping them across rounds as Keras does.
    #[arg(long)]
    reset_moments: bool,

    /// Seed of every random choice: data generation, splits, initial
    /// weights, dropout, shuffles and offline draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Probability that a hospital is offline in a client-dropout round.
    #[arg(
        long,
        default_value_t = 0.3,
        value_name = "PROBABILITY",
        allow_negative_numbers = true
    )]
    offline_probability: f64,

    /// Rounds of the client-dropout phase.
    #[arg(long, default_value_t = 5)]
    dropout_rounds: u32,

    /// Local epochs per client-dropout round.
    #[arg(long, default_value_t = 5, value_name = "EPOCHS")]
    dropout_local_epochs: u16,

    /// Devices of the federated phase: in-process, or qemu to run each
    /// hospital as Cortex-M4F firmware in its own qemu-system-arm process
    /// (needs qemu-system-arm, and builds firmware-sim/ with cargo).
    #[arg(long, default_value = "in-process", value_name = "KIND")]
    devices: Devices,

    /// Draw the federated learning curve and a bar chart of the final
    /// accuracies into this file: PNG or SVG, chosen by its extension.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,

    /// Save the final federated model, with the standardisation that raw
    /// rows need, to this file as a fedcore frame for `evaluate`.
    #[arg(long, value_name = "FILE")]
    save_model: Option<PathBuf>,

    /// Write the whole report, with every round's metrics per hospital, to
    /// this file as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Maximum number of threads that train at once. With 1, the phases run
    /// one after another. With more, the isolated, centralized and
    /// client-dropout phases run beside the federated one. The report, the
    /// files and the log are the same for every count, apart from the
    /// duration that -v logs. [default: the number of CPUs this process
    /// may use]
    #[arg(short = 'j', long, value_name = "COUNT", value_parser = parse_threads)]
    threads: Option<NonZeroUsize>,
}

fn parse_threads(text: &str) -> Result<NonZeroUsize, String> {
    match text.parse::<usize>() {
        Ok(count) => {
            NonZeroUsize::new(count).ok_or_else(|| "0 is invalid; use 1 or more threads".to_owned())
        }
        Err(error) => Err(format!("{error}; use a whole number of threads, such as 2")),
    }
}

fn load_source(args: &CompareArgs) -> Result<Source, data::DataError> {
    if args.data.is_empty() {
        return Ok(data::builtin_hospitals_n(
            args.hospitals,
            args.seed,
            args.test_fraction,
        ));
    }
    let label = match &args.label {
        None => LabelColumn::Last,
        Some(text) => match text.parse::<usize>() {
            Ok(index) => LabelColumn::Index(index),
            Err(_) => LabelColumn::Name(text.clone()),
        },
    };
    let options = CsvOptions {
        header: args.header,
        label,
        missing: args.missing.clone(),
        test_fraction: args.test_fraction,
        seed: args.seed,
        delimiter: args.delimiter.unwrap_or(b','),
    };
    data::load(&args.data, &options)
}

fn run_compare(args: &CompareArgs) -> ExitCode {
    if !(args.test_fraction > 0.0 && args.test_fraction < 1.0) {
        eprintln!(
            "error: --test-fraction {} is invalid; use a fraction between 0 and 1, such as 0.2",
            args.test_fraction
        );
        return ExitCode::from(2);
    }
    if !(1..=data::MAX_BUILTIN_HOSPITALS).contains(&args.hospitals) {
        eprintln!(
            "error: --hospitals {} is invalid; use 1 to {} built-in hospitals",
            args.hospitals,
            data::MAX_BUILTIN_HOSPITALS
        );
        return ExitCode::from(2);
    }
    // Settings are f32 in the model; a value that rounds to an invalid one
    // is named as the user typed it.
    if args.dropout_rate < 1.0 && args.dropout_rate as f32 >= 1.0 {
        eprintln!(
            "error: --dropout-rate {:?} rounds to 1 in single precision; use at most 0.9999999",
            args.dropout_rate
        );
        return ExitCode::from(2);
    }
    if args.learning_rate > 0.0 && (args.learning_rate as f32) == 0.0 {
        eprintln!(
            "error: --learning-rate {:?} rounds to 0 in single precision; use at least 1e-38",
            args.learning_rate
        );
        return ExitCode::from(2);
    }
    let source = match load_source(args) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_DATA);
        }
    };

    let config = CompareConfig {
        rounds: args.rounds,
        local_epochs: args.local_epochs,
        baseline_epochs: args.epochs,
        dropout_rounds: args.dropout_rounds,
        dropout_local_epochs: args.dropout_local_epochs,
        offline_probability: args.offline_probability,
        train: TrainConfig {
            batch_size: args.batch_size,
            dropout: args.dropout_rate as f32,
            adam: AdamConfig {
                learning_rate: args.learning_rate,
                ..AdamConfig::default()
            },
            moments: if args.reset_moments {
                MomentPolicy::Reset
            } else {
                MomentPolicy::Keep
            },
        },
        seed: args.seed,
        devices: args.devices,
    };

    if let Err(error) = compare::check(&source, &config) {
        eprintln!("error: {error}");
        return ExitCode::from(exit_code(&error));
    }

    let header = report::header(&report::HeaderInputs {
        config: &config,
        hospitals: source.hospitals.len(),
        features: source.feature_count(),
    });
    let mut output = Output::default();
    output.write(&header);
    for warning in compare::warnings(&source) {
        tracing::warn!("{warning}");
    }
    // One step per federated round, client-dropout round and baseline. The
    // bar draws on standard error only when that is a terminal.
    let steps = u64::from(config.rounds) + u64::from(config.dropout_rounds) + 2;
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let threads = args
        .threads
        .unwrap_or_else(fedcore_host::parallel::default_threads);
    let result = compare::run_with_threads(&source, &config, threads, &mut |line: &str| {
        bar.suspend(|| output.write_line(line));
        bar.inc(1);
        let phase = line.split(':').next().unwrap_or_default();
        bar.set_message(phase.to_owned());
    });
    bar.finish_and_clear();
    let status = match result {
        Ok(comparison) => {
            output.write(&report::render(&comparison));
            write_outputs(args, &comparison)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(exit_code(&error))
        }
    };
    match output.failure {
        // A reader that stopped early, such as `head`, is not an error.
        Some(error) if error.kind() == std::io::ErrorKind::BrokenPipe => status,
        Some(error) => {
            eprintln!("error: failed to write the report to standard output: {error}");
            ExitCode::from(EXIT_OUTPUT)
        }
        None => status,
    }
}

/// Standard output that remembers its first write error, so that a report
/// lost to a full disk changes the exit status.
#[derive(Default)]
struct Output {
    failure: Option<std::io::Error>,
}

impl Output {
    fn write(&mut self, text: &str) {
        if self.failure.is_some() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            self.failure = Some(error);
        }
    }

    fn write_line(&mut self, line: &str) {
        self.write(&format!("{line}\n"));
    }
}

/// Writes the optional JSON report and plot. A failure to write one still
/// writes the other, and the text report is already printed.
fn write_outputs(args: &CompareArgs, comparison: &fedcore_host::compare::Comparison) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    if let Some(path) = &args.json {
        if let Err(error) = std::fs::write(path, fedcore_host::json::render(comparison)) {
            eprintln!(
                "error: failed to write the JSON report to {}: {error}; check that its folder exists and is writable",
                path.display()
            );
            status = ExitCode::from(EXIT_OUTPUT);
        }
    }
    if let Some(path) = &args.save_model {
        if let Err(error) = std::fs::write(path, &comparison.model) {
            eprintln!(
                "error: failed to write the model to {}: {error}; check that its folder exists and is writable",
                path.display()
            );
            status = ExitCode::from(EXIT_OUTPUT);
        }
    }
    if let Some(path) = &args.plot {
        if let Err(error) = fedcore_host::plot::draw(comparison, path) {
            eprintln!("error: {error}");
            status = ExitCode::from(EXIT_OUTPUT);
        }
    }
    status
}

/// Maps an error to the exit status: 2 for an invalid setting, as for
/// other usage errors, 3 for unusable input data, 4 for a training failure.
fn exit_code(error: &CompareError) -> u8 {
    match error {
        CompareError::Config(_)
        | CompareError::OfflineProbability(_)
        | CompareError::ZeroCount { .. } => 2,
        CompareError::FeatureCount(_)
        | CompareError::NoHospitals
        | CompareError::EmptyHospital { .. }
        | CompareError::EmptyColumn { .. } => EXIT_DATA,
        CompareError::Setup(_)
        | CompareError::Training(_)
        | CompareError::Diverged { .. }
        | CompareError::Qemu(_) => EXIT_TRAINING,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match &cli.command {
        Command::Compare(args) => run_compare(args),
        Command::Evaluate(args) => run_evaluate(args),
    }
}
