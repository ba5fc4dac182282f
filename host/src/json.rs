//! The comparison as JSON, for notebooks and dashboards.
//!
//! The document is one object; every number is a JSON number and every
//! undefined rate is `null`. Its shape:
//!
//! ```text
//! {
//!   "format": "fedcore-compare", "version": 1,
//!   "seed": u64,
//!   "config": { "rounds", "local_epochs", "baseline_epochs", "dropout_rounds",
//!               "dropout_local_epochs", "offline_probability", "batch_size",
//!               "dropout_rate", "learning_rate", "moments": "keep" | "reset" },
//!   "features": { "count", "input_width", "names": [string] },
//!   "hospitals": [ { "name", "train_rows", "test_rows", "train_positives",
//!                    "test_positives", "imputed",
//!                    "largest_shift": { "feature", "standard_deviations" } | null } ],
//!   "rounds": { "federated": [Round], "client_dropout": [Round] },
//!   "final": { "centralized" | "federated" | "isolated" | "client_dropout":
//!              { "hospitals": [Metrics | null], "overall": Metrics | null } }
//! }
//! Round   = { "round", "kept_previous",
//!             "hospitals": [ { "status": "averaged" | "offline" | "failed" | "diverged",
//!                              "rows": u32 | null, "error": string | null,
//!                              "metrics": Metrics | null } ] }
//! Metrics = { "rows", "loss_sum", "true_positives", "false_positives",
//!             "true_negatives", "false_negatives",
//!             "accuracy", "loss", "sensitivity", "specificity" }
//! ```
//!
//! Lists of hospitals are in the order of `hospitals`. `overall` pools the
//! test rows of every hospital. A hospital's metrics in a round are those of
//! the global model after that round.

use serde::Serialize;

use fedcore::{Metrics, MomentPolicy};

use crate::compare::{self, Comparison, RoundRecord};
use crate::server::Participation;

/// Format version of the document; it changes when a field changes meaning
/// or disappears.
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    version: u32,
    seed: u64,
    config: Config,
    features: Features<'a>,
    hospitals: Vec<Hospital<'a>>,
    rounds: Rounds<'a>,
    #[serde(rename = "final")]
    results: Final,
}

#[derive(Serialize)]
struct Config {
    rounds: u32,
    local_epochs: u16,
    baseline_epochs: u16,
    dropout_rounds: u32,
    dropout_local_epochs: u16,
    offline_probability: f64,
    batch_size: u32,
    dropout_rate: f32,
    learning_rate: f64,
    moments: &'static str,
}

#[derive(Serialize)]
struct Features<'a> {
    count: usize,
    input_width: usize,
    names: &'a [String],
}

#[derive(Serialize)]
struct Shift<'a> {
    feature: &'a str,
    standard_deviations: f64,
}

#[derive(Serialize)]
struct Hospital<'a> {
    name: &'a str,
    train_rows: usize,
    test_rows: usize,
    train_positives: usize,
    test_positives: usize,
    imputed: usize,
    largest_shift: Option<Shift<'a>>,
}

#[derive(Serialize)]
struct Rounds<'a> {
    federated: Vec<Round<'a>>,
    client_dropout: Vec<Round<'a>>,
}

#[derive(Serialize)]
struct Round<'a> {
    round: u32,
    kept_previous: bool,
    hospitals: Vec<RoundHospital<'a>>,
}

#[derive(Serialize)]
struct RoundHospital<'a> {
    status: &'static str,
    rows: Option<u32>,
    error: Option<&'a str>,
    metrics: Option<MetricsView>,
}

#[derive(Serialize)]
struct MetricsView {
    rows: u32,
    loss_sum: f64,
    true_positives: u32,
    false_positives: u32,
    true_negatives: u32,
    false_negatives: u32,
    accuracy: Option<f64>,
    loss: Option<f64>,
    sensitivity: Option<f64>,
    specificity: Option<f64>,
}

impl From<&Metrics> for MetricsView {
    fn from(metrics: &Metrics) -> Self {
        Self {
            rows: metrics.rows,
            loss_sum: metrics.loss_sum,
            true_positives: metrics.true_positives,
            false_positives: metrics.false_positives,
            true_negatives: metrics.true_negatives,
            false_negatives: metrics.false_negatives,
            accuracy: metrics.accuracy(),
            loss: metrics.mean_loss(),
            sensitivity: metrics.sensitivity(),
            specificity: metrics.specificity(),
        }
    }
}

#[derive(Serialize)]
struct Approach {
    hospitals: Vec<Option<MetricsView>>,
    overall: Option<MetricsView>,
}

#[derive(Serialize)]
struct Final {
    centralized: Approach,
    federated: Approach,
    isolated: Approach,
    client_dropout: Approach,
}

fn approach(metrics: &[Option<Metrics>]) -> Approach {
    let mut pooled = Some(Metrics::default());
    for entry in metrics {
        match (pooled.as_mut(), entry) {
            (Some(total), Some(metrics)) => total.merge(metrics),
            _ => pooled = None,
        }
    }
    Approach {
        hospitals: metrics
            .iter()
            .map(|m| m.as_ref().map(MetricsView::from))
            .collect(),
        overall: pooled.as_ref().map(MetricsView::from),
    }
}

fn round(record: &RoundRecord) -> Round<'_> {
    let hospitals = record
        .outcome
        .participation
        .iter()
        .zip(&record.metrics)
        .map(|(state, metrics)| {
            let (status, rows, error) = match state {
                Participation::Averaged { rows } => ("averaged", Some(*rows), None),
                Participation::Offline => ("offline", None, None),
                Participation::Failed(reason) => ("failed", None, Some(reason.as_str())),
                Participation::Diverged(reason) => ("diverged", None, Some(reason.as_str())),
            };
            RoundHospital {
                status,
                rows,
                error,
                metrics: metrics.as_ref().map(MetricsView::from),
            }
        })
        .collect();
    Round {
        round: record.outcome.round,
        kept_previous: record.outcome.kept_previous,
        hospitals,
    }
}

/// Renders `comparison` as a pretty-printed JSON document ending in a
/// newline. The same comparison always gives the same bytes.
pub fn render(comparison: &Comparison) -> String {
    let config = &comparison.config;
    let names = &comparison.feature_names;
    let hospitals = comparison
        .hospitals
        .iter()
        .map(|hospital| Hospital {
            name: &hospital.name,
            train_rows: hospital.train_rows,
            test_rows: hospital.test_rows,
            train_positives: hospital.train_positives,
            test_positives: hospital.test_positives,
            imputed: hospital.imputed,
            largest_shift: hospital.largest_shift.map(|(column, sd)| Shift {
                feature: names.get(column).map_or("?", String::as_str),
                standard_deviations: sd,
            }),
        })
        .collect();
    let centralized: Vec<Option<Metrics>> =
        comparison.centralized.iter().copied().map(Some).collect();
    let document = Document {
        format: "fedcore-compare",
        version: VERSION,
        seed: config.seed,
        config: Config {
            rounds: config.rounds,
            local_epochs: config.local_epochs,
            baseline_epochs: config.baseline_epochs,
            dropout_rounds: config.dropout_rounds,
            dropout_local_epochs: config.dropout_local_epochs,
            offline_probability: config.offline_probability,
            batch_size: config.train.batch_size,
            dropout_rate: config.train.dropout,
            learning_rate: config.train.adam.learning_rate,
            moments: match config.train.moments {
                MomentPolicy::Keep => "keep",
                MomentPolicy::Reset => "reset",
            },
        },
        features: Features {
            count: names.len(),
            input_width: compare::input_width(names.len()).unwrap_or(names.len()),
            names,
        },
        hospitals,
        rounds: Rounds {
            federated: comparison.federated_rounds.iter().map(round).collect(),
            client_dropout: comparison.dropout_rounds.iter().map(round).collect(),
        },
        results: Final {
            centralized: approach(&centralized),
            federated: approach(&comparison.federated()),
            isolated: approach(&comparison.isolated),
            client_dropout: approach(&comparison.dropout()),
        },
    };
    // Serialising plain structs of numbers, strings and options cannot fail.
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}
