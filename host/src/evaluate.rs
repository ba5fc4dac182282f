//! Scoring new patients with a model saved by `compare --save-model`.

use std::fmt::Write as _;

use fedcore::train::{self, Dataset};
use fedcore::wire::{self, DecodeError, Frame, FrameKind};
use fedcore::{Fingerprint, Metrics, Params};

use crate::compare::INPUT_WIDTHS;
use crate::data::{Source, Table};
use crate::preprocess;
use crate::{HIDDEN1, HIDDEN2};

/// Error from scoring rows with a saved model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvaluateError {
    /// The file is not a valid fedcore frame.
    #[error("model file is invalid: {0}")]
    Decode(#[from] DecodeError),
    /// The file is a valid frame of another kind.
    #[error("the file holds a {0} frame, not a saved model; pass a file written by compare --save-model")]
    NotAModel(FrameKind),
    /// The model's layer widths are not the ones this build runs.
    #[error(
        "the model is a {0} network, which this build cannot run; it runs {HIDDEN1} and {HIDDEN2} hidden units and input widths {INPUT_WIDTHS:?}"
    )]
    Architecture(Fingerprint),
    /// The rows have another feature count than the model was trained on.
    #[error("the model was trained on {model} features but the data has {data}; give rows with the same columns, in the same order")]
    FeatureCount {
        /// Features the model expects.
        model: usize,
        /// Features in the data.
        data: usize,
    },
    /// Standardised rows could not form a dataset.
    #[error("{0}")]
    Rows(String),
}

/// Scores of a saved model: one entry per hospital file, then all rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Federated rounds that trained the model.
    pub rounds: u32,
    /// Features the model reads.
    pub features: usize,
    /// Name and metrics per hospital, in input order.
    pub hospitals: Vec<(String, Metrics)>,
    /// Missing values imputed with the model's means.
    pub imputed: usize,
}

/// Scores every row of `source`, training and test rows alike, with the
/// model in `file`.
pub fn evaluate(file: &[u8], source: &Source) -> Result<Evaluation, EvaluateError> {
    let header = wire::peek_header(file)?;
    if header.kind != FrameKind::Model {
        return Err(EvaluateError::NotAModel(header.kind));
    }
    let fingerprint = header.fingerprint;
    if usize::from(fingerprint.hidden1) != HIDDEN1 || usize::from(fingerprint.hidden2) != HIDDEN2 {
        return Err(EvaluateError::Architecture(fingerprint));
    }
    match usize::from(fingerprint.inputs) {
        8 => evaluate_with::<8>(file, source),
        16 => evaluate_with::<16>(file, source),
        20 => evaluate_with::<20>(file, source),
        24 => evaluate_with::<24>(file, source),
        32 => evaluate_with::<32>(file, source),
        40 => evaluate_with::<40>(file, source),
        48 => evaluate_with::<48>(file, source),
        56 => evaluate_with::<56>(file, source),
        64 => evaluate_with::<64>(file, source),
        _ => Err(EvaluateError::Architecture(fingerprint)),
    }
}

fn evaluate_with<const INPUTS: usize>(
    file: &[u8],
    source: &Source,
) -> Result<Evaluation, EvaluateError> {
    let mut params = Box::new(Params::<INPUTS, HIDDEN1, HIDDEN2>::zeros());
    let Frame::Model {
        header,
        features,
        standardization,
    } = wire::decode(file, &mut params)?
    else {
        return Err(EvaluateError::Architecture(Params::<
            INPUTS,
            HIDDEN1,
            HIDDEN2,
        >::fingerprint()));
    };
    let features = usize::from(features);
    if source.feature_count() != features {
        return Err(EvaluateError::FeatureCount {
            model: features,
            data: source.feature_count(),
        });
    }

    let mut hospitals = Vec::with_capacity(source.hospitals.len());
    let mut imputed = 0;
    for hospital in &source.hospitals {
        let mut rows = Table::default();
        for table in [&hospital.train, &hospital.test] {
            rows.features.extend(table.features.iter().cloned());
            rows.labels.extend(&table.labels);
        }
        let prepared = preprocess::prepare(&rows, &standardization);
        imputed += prepared.imputed;
        let data = Dataset::new(&prepared.features, &prepared.labels)
            .map_err(|error| EvaluateError::Rows(format!("{}: {error}", hospital.name)))?;
        hospitals.push((
            hospital.name.clone(),
            train::evaluate(params.as_ref(), &data),
        ));
    }
    Ok(Evaluation {
        rounds: header.round,
        features,
        hospitals,
        imputed,
    })
}

/// Renders the scores as a table: accuracy, loss, sensitivity and
/// specificity per hospital file and over all rows.
pub fn render(evaluation: &Evaluation) -> String {
    let value =
        |number: Option<f64>| number.map_or_else(|| "n/a".to_owned(), |n| format!("{n:.3}"));
    let width = evaluation
        .hospitals
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(14);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model: {} features, trained for {} federated rounds; {} missing values imputed with its means",
        evaluation.features, evaluation.rounds, evaluation.imputed
    );
    let _ = writeln!(
        out,
        "  {:<width$} {:>6} {:>8} {:>7} {:>11} {:>11}",
        "hospital", "rows", "accuracy", "loss", "sensitivity", "specificity"
    );
    let mut total = Metrics::default();
    let row = |out: &mut String, name: &str, metrics: &Metrics| {
        let _ = writeln!(
            out,
            "  {name:<width$} {:>6} {:>8} {:>7} {:>11} {:>11}",
            metrics.rows,
            value(metrics.accuracy()),
            value(metrics.mean_loss()),
            value(metrics.sensitivity()),
            value(metrics.specificity()),
        );
    };
    for (name, metrics) in &evaluation.hospitals {
        row(&mut out, name, metrics);
        total.merge(metrics);
    }
    row(&mut out, "all rows", &total);
    out
}
