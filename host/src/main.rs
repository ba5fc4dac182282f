//! `fedcore-host`: simulates hospitals that train one model together and
//! compares federated training with centralized and isolated training.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fedcore::{AdamConfig, MomentPolicy, TrainConfig};
use fedcore_host::compare::{self, CompareConfig, CompareError};
use fedcore_host::data::{self, CsvOptions, LabelColumn, Source};
use fedcore_host::report;

/// Exit status for invalid input data.
const EXIT_DATA: u8 = 3;
/// Exit status for a training failure.
const EXIT_TRAINING: u8 = 4;

#[derive(Parser)]
#[command(
    name = "fedcore-host",
    version,
    about = "Federated learning across hospitals that keep their rows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train centralized, federated, isolated and client-dropout models on the
    /// same hospitals and compare them on each hospital's test rows.
    Compare(CompareArgs),
}

#[derive(clap::Args)]
struct CompareArgs {
    /// CSV files or folders of them, one hospital per file. Files named
    /// NAME_train.csv and NAME_test.csv form one hospital with that split.
    /// Without this option, three built-in synthetic hospitals are used.
    #[arg(long, num_args = 1.., value_name = "PATH")]
    data: Vec<PathBuf>,

    /// The first line of every file is a header.
    #[arg(long)]
    header: bool,

    /// Label column: a 0-based index, or a header name with --header.
    /// Any non-zero label is positive. [default: the last column]
    #[arg(long, value_name = "COLUMN")]
    label: Option<String>,

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
    dropout_rate: f32,

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
}

fn load_source(args: &CompareArgs) -> Result<Source, data::DataError> {
    if args.data.is_empty() {
        return Ok(data::builtin_hospitals(args.seed, args.test_fraction));
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
        ..CsvOptions::default()
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
            dropout: args.dropout_rate,
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
    };

    if let Err(error) = compare::check(&source, &config) {
        eprintln!("error: {error}");
        return ExitCode::from(exit_code(&error));
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let header = report::header(&report::HeaderInputs {
        config: &config,
        hospitals: source.hospitals.len(),
        features: source.feature_count(),
    });
    let _ = write!(out, "{header}");
    let mut progress = |line: &str| {
        let _ = writeln!(out, "{line}");
    };
    match compare::run(&source, &config, &mut progress) {
        Ok(comparison) => {
            let _ = write!(std::io::stdout().lock(), "{}", report::render(&comparison));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Maps an error to the exit status: 2 for an invalid setting, as for
/// other usage errors, 3 for unusable input data, 4 for a training failure.
fn exit_code(error: &CompareError) -> u8 {
    match error {
        CompareError::Config(_) | CompareError::OfflineProbability(_) => 2,
        CompareError::FeatureCount(_)
        | CompareError::NoHospitals
        | CompareError::EmptyHospital { .. } => EXIT_DATA,
        CompareError::Setup(_) | CompareError::Training(_) => EXIT_TRAINING,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Compare(args) => run_compare(args),
    }
}
