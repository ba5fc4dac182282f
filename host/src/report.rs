//! The text report of a comparison.

use std::fmt::Write as _;

use fedcore::Metrics;

use crate::compare::Comparison;

/// How far federated accuracy may fall below isolated accuracy at a
/// hospital before the report calls it a loss; smaller differences are
/// within what one test row or two can swing.
const LOSS_MARGIN: f64 = 0.005;

/// A hospital's share of positive training rows is called out as a cause
/// when it differs from the federation's by more than this.
const LABEL_BALANCE_MARGIN: f64 = 0.10;

/// A feature mean this many of the federation's standard deviations away
/// from the federation's mean is called out as a cause.
const FEATURE_SHIFT_MARGIN: f64 = 0.5;

/// Rounds to the three decimals the report prints.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

fn value(number: Option<f64>) -> String {
    number.map_or_else(|| "n/a".to_owned(), |number| format!("{number:.3}"))
}

fn metrics_row(out: &mut String, label: &str, metrics: Option<&Metrics>) {
    let Some(metrics) = metrics else {
        let _ = writeln!(out, "  {label:<15} no result (the hospital did not reply)");
        return;
    };
    let _ = writeln!(
        out,
        "  {label:<15} {:>8} {:>7} {:>11} {:>11}",
        value(metrics.accuracy()),
        value(metrics.mean_loss()),
        value(metrics.sensitivity()),
        value(metrics.specificity()),
    );
}

fn pooled(metrics: &[Option<Metrics>]) -> Option<Metrics> {
    let mut total = Metrics::default();
    for entry in metrics {
        total.merge(entry.as_ref()?);
    }
    Some(total)
}

fn mean_accuracy(metrics: &[Option<Metrics>]) -> Option<f64> {
    let values: Option<Vec<f64>> = metrics.iter().map(|m| m.as_ref()?.accuracy()).collect();
    let values = values?;
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Renders the setup lines printed before training starts.
pub fn header(comparison_inputs: &HeaderInputs<'_>) -> String {
    let config = comparison_inputs.config;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fedcore compare: {} {}, {} features, seed {}",
        comparison_inputs.hospitals,
        if comparison_inputs.hospitals == 1 {
            "hospital"
        } else {
            "hospitals"
        },
        comparison_inputs.features,
        config.seed
    );
    let features = comparison_inputs.features;
    let width = crate::compare::input_width(features).unwrap_or(features);
    let padding = if width > features {
        format!(" (zero-padded to {width} inputs)")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "model {features}{padding} → {} → {} → 1, dropout {}, Adam learning rate {:?}, batch {}",
        crate::HIDDEN1,
        crate::HIDDEN2,
        config.train.dropout,
        config.train.adam.learning_rate,
        config.train.batch_size
    );
    let _ = writeln!(
        out,
        "federated {} rounds × {} local epochs; centralized and isolated {} epochs; client dropout {} rounds × {} local epochs, offline probability {}",
        config.rounds,
        config.local_epochs,
        config.baseline_epochs,
        config.dropout_rounds,
        config.dropout_local_epochs,
        config.offline_probability
    );
    out
}

/// What [`header`] prints.
pub struct HeaderInputs<'a> {
    /// The settings.
    pub config: &'a crate::compare::CompareConfig,
    /// Number of hospitals.
    pub hospitals: usize,
    /// Number of features.
    pub features: usize,
}

/// Renders the final report: the hospitals, a table per hospital and
/// overall, and the verdict on federated training.
pub fn render(comparison: &Comparison) -> String {
    let mut out = String::new();
    let names = &comparison.feature_names;

    let _ = writeln!(
        out,
        "\nhospitals (rows stay at each hospital; only frames travel)"
    );
    let name_width = comparison
        .hospitals
        .iter()
        .map(|hospital| hospital.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(22);
    let _ = writeln!(
        out,
        "  {:<name_width$} {:>6} {:>6} {:>15} {:>8}  largest feature shift",
        "hospital", "train", "test", "positive (test)", "imputed"
    );
    for hospital in &comparison.hospitals {
        let positive = if hospital.test_rows == 0 {
            "n/a".to_owned()
        } else {
            format!(
                "{:.1}%",
                100.0 * hospital.test_positives as f64 / hospital.test_rows as f64
            )
        };
        let shift = hospital.largest_shift.map_or_else(
            || "n/a".to_owned(),
            |(column, sd)| {
                format!(
                    "{} {sd:+.2} SD",
                    names.get(column).map_or("?", String::as_str)
                )
            },
        );
        let _ = writeln!(
            out,
            "  {:<name_width$} {:>6} {:>6} {:>15} {:>8}  {shift}",
            hospital.name, hospital.train_rows, hospital.test_rows, positive, hospital.imputed
        );
    }

    let federated = comparison.federated();
    let isolated = &comparison.isolated;
    let centralized: Vec<Option<Metrics>> =
        comparison.centralized.iter().copied().map(Some).collect();
    let dropout = comparison.dropout();

    let _ = writeln!(out, "\nresults on each hospital's test rows");
    let _ = writeln!(
        out,
        "  {:<15} {:>8} {:>7} {:>11} {:>11}",
        "", "accuracy", "loss", "sensitivity", "specificity"
    );
    for (index, hospital) in comparison.hospitals.iter().enumerate() {
        let _ = writeln!(out, "{}", hospital.name);
        metrics_row(&mut out, "centralized", centralized[index].as_ref());
        metrics_row(&mut out, "federated", federated[index].as_ref());
        metrics_row(&mut out, "isolated", isolated[index].as_ref());
        metrics_row(&mut out, "client dropout", dropout[index].as_ref());
    }
    let _ = writeln!(out, "overall (all test rows pooled)");
    metrics_row(&mut out, "centralized", pooled(&centralized).as_ref());
    metrics_row(&mut out, "federated", pooled(&federated).as_ref());
    metrics_row(&mut out, "isolated", pooled(isolated).as_ref());
    metrics_row(&mut out, "client dropout", pooled(&dropout).as_ref());
    let _ = writeln!(
        out,
        "mean accuracy over hospitals: centralized {}, federated {}, isolated {}, client dropout {}",
        value(mean_accuracy(&centralized)),
        value(mean_accuracy(&federated)),
        value(mean_accuracy(isolated)),
        value(mean_accuracy(&dropout)),
    );
    if comparison
        .hospitals
        .iter()
        .any(|h| h.test_positives == 0 || h.test_positives == h.test_rows)
    {
        let _ = writeln!(
            out,
            "n/a: a hospital whose test rows are all one class has no defined sensitivity or specificity"
        );
    }

    verdict(&mut out, comparison, &federated, &centralized);
    out
}

fn verdict(
    out: &mut String,
    comparison: &Comparison,
    federated: &[Option<Metrics>],
    centralized: &[Option<Metrics>],
) {
    let _ = writeln!(out, "\nverdict");
    let accuracy = |metrics: &[Option<Metrics>]| pooled(metrics).and_then(|m| m.accuracy());
    let (Some(fed), Some(iso), Some(central)) = (
        accuracy(federated),
        accuracy(&comparison.isolated),
        accuracy(centralized),
    ) else {
        let _ = writeln!(
            out,
            "  incomplete: some hospital returned no metrics, so no verdict is drawn"
        );
        return;
    };
    // Differences are taken between the rounded figures, so that they match
    // what the report shows.
    let (fed, iso, central) = (round3(fed), round3(iso), round3(central));
    let relative = if iso > 0.0 {
        format!("{:+.1}%", 100.0 * (fed - iso) / iso)
    } else {
        "relative change undefined at 0".to_owned()
    };
    let _ = writeln!(
        out,
        "  federated vs isolated: {fed:.3} vs {iso:.3} ({:+.3}, {relative})",
        fed - iso
    );
    let _ = writeln!(
        out,
        "  federated vs centralized: {fed:.3} vs {central:.3} (gap {:+.3})",
        fed - central
    );

    let mut losses = Vec::new();
    for (index, hospital) in comparison.hospitals.iter().enumerate() {
        let fed = federated[index]
            .as_ref()
            .and_then(Metrics::accuracy)
            .map(round3);
        let iso = comparison.isolated[index]
            .as_ref()
            .and_then(Metrics::accuracy)
            .map(round3);
        if let (Some(fed), Some(iso)) = (fed, iso) {
            if fed + LOSS_MARGIN < iso {
                losses.push((hospital, fed, iso));
            }
        }
    }

    if fed + LOSS_MARGIN < iso {
        let _ = writeln!(
            out,
            "  FEDERATED LOSES to isolated training overall by {:.3} accuracy.",
            iso - fed
        );
    } else if fed > iso + LOSS_MARGIN {
        let _ = writeln!(
            out,
            "  federated training beats isolated training overall by {:.3} accuracy.",
            fed - iso
        );
    } else {
        let _ = writeln!(
            out,
            "  federated and isolated training are level overall (within {LOSS_MARGIN})."
        );
    }
    if losses.is_empty() {
        let _ = writeln!(
            out,
            "  no hospital does worse with federated training than alone."
        );
    } else {
        let _ = writeln!(
            out,
            "  federated training loses at {} of {} hospitals:",
            losses.len(),
            comparison.hospitals.len()
        );
    }
    let train_rows: usize = comparison.hospitals.iter().map(|h| h.train_rows).sum();
    let train_positives: usize = comparison.hospitals.iter().map(|h| h.train_positives).sum();
    let federation_positive = train_positives as f64 / train_rows.max(1) as f64;
    for (hospital, fed, iso) in &losses {
        let _ = write!(
            out,
            "  - {}: federated {fed:.3} vs isolated {iso:.3} ({:+.3})",
            hospital.name,
            fed - iso
        );
        let positive = hospital.train_positives as f64 / hospital.train_rows.max(1) as f64;
        let label_shift = (positive - federation_positive).abs() > LABEL_BALANCE_MARGIN;
        let shift = hospital.largest_shift.map(|(column, sd)| {
            let name = comparison
                .feature_names
                .get(column)
                .map_or("?", String::as_str);
            (name, sd)
        });
        match shift {
            Some((name, sd)) if sd.abs() >= FEATURE_SHIFT_MARGIN => {
                let _ = write!(
                    out,
                    "; its {name} mean lies {:.2} SD {} the federation's",
                    sd.abs(),
                    if sd < 0.0 { "below" } else { "above" }
                );
            }
            Some((name, sd)) if !label_shift => {
                let _ = write!(
                    out,
                    "; its feature means and label balance match the federation's (largest shift {name} {sd:+.2} SD), \
                     so its rows likely follow another relation between features and label"
                );
            }
            _ => {}
        }
        if label_shift {
            let _ = write!(
                out,
                "; {:.0}% of its training rows are positive against {:.0}% across the federation",
                100.0 * positive,
                100.0 * federation_positive
            );
        }
        let _ = writeln!(out);
    }
    if !losses.is_empty() {
        let _ = writeln!(
            out,
            "  why: one shared model must fit every hospital, and hospitals whose rows differ from the rest\n  (shifted features, other label balance) are fitted better by a model of their own."
        );
    }
}
