//! Federated standardisation and imputation.
//!
//! Each hospital computes per-feature counts, sums and sums of squares over
//! its own training rows and sends only those. The server adds them up in
//! hospital order and sends back one mean and one scale per feature, which
//! every hospital applies to its training and test rows. A missing value is
//! replaced by the federation's mean, so it becomes exactly 0 after
//! standardisation.

use fedcore::wire::{FeatureStats, Standardization};

use crate::data::Table;

/// Computes the statistics of the present (non-NaN) values of `table`
/// with fedcore's streaming update, so that a device computing them on
/// its own rows gets the same bits.
pub fn feature_stats<const INPUTS: usize>(table: &Table) -> FeatureStats<INPUTS> {
    let mut stats = FeatureStats::<INPUTS>::default();
    for row in &table.features {
        stats.add_row(row);
    }
    stats
}

/// Merges `other` into `total`.
pub fn add_stats<const INPUTS: usize>(
    total: &mut FeatureStats<INPUTS>,
    other: &FeatureStats<INPUTS>,
) {
    total.merge(other);
}

/// Why no standardisation could be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandardizeError {
    /// A feature has no present value in any hospital's training rows.
    #[error(
        "feature column {} has no value in any hospital's training rows, so it cannot be imputed; drop that column",
        .column + 1
    )]
    NoValues {
        /// Zero-based feature column.
        column: usize,
    },
}

/// Derives the mean and population standard deviation of each of the first
/// `features` features from merged statistics; see
/// [`FeatureStats::standardization`].
pub fn standardization<const INPUTS: usize>(
    total: &FeatureStats<INPUTS>,
    features: usize,
) -> Result<Standardization<INPUTS>, StandardizeError> {
    total
        .standardization(features)
        .map_err(|error| StandardizeError::NoValues {
            column: error.column,
        })
}

/// Rows ready for fedcore: standardised `f32` features and 0/1 labels.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRows<const INPUTS: usize> {
    /// Standardised features.
    pub features: Vec<[f32; INPUTS]>,
    /// Labels as 0.0 or 1.0.
    pub labels: Vec<f32>,
    /// Missing values replaced by the federation's mean.
    pub imputed: usize,
}

/// Imputes and standardises `table` with the federation's `standardization`.
/// Inputs past a row's last feature are zero padding and count as neither
/// missing nor imputed.
pub fn prepare<const INPUTS: usize>(
    table: &Table,
    standardization: &Standardization<INPUTS>,
) -> PreparedRows<INPUTS> {
    let mut imputed = 0;
    let features = table
        .features
        .iter()
        .map(|row| {
            core::array::from_fn(|column| {
                let Some(&value) = row.get(column) else {
                    return 0.0;
                };
                if value.is_nan() {
                    imputed += 1;
                    0.0
                } else {
                    ((value - standardization.mean[column]) / standardization.scale[column]) as f32
                }
            })
        })
        .collect();
    let labels = table.labels.iter().map(|&label| f32::from(label)).collect();
    PreparedRows {
        features,
        labels,
        imputed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[[f64; 2]]) -> Table {
        Table {
            features: rows.iter().map(|row| row.to_vec()).collect(),
            labels: vec![0; rows.len()],
        }
    }

    #[test]
    fn pooled_statistics_match_direct_ones() {
        let first = table(&[[1.0, 10.0], [3.0, f64::NAN]]);
        let second = table(&[[5.0, 30.0], [7.0, 20.0]]);
        let mut total = feature_stats::<2>(&first);
        add_stats(&mut total, &feature_stats::<2>(&second));
        assert_eq!(total.count, [4, 3]);
        let result = standardization(&total, 2).unwrap();
        assert_eq!(result.mean, [4.0, 20.0]);
        assert!((result.scale[0] - 5.0f64.sqrt()).abs() < 1e-12);
        assert!((result.scale[1] - (200.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn constant_column_is_only_centred() {
        let rows = table(&[[2.0, 1.0], [2.0, 3.0]]);
        let result = standardization(&feature_stats::<2>(&rows), 2).unwrap();
        assert_eq!(result.scale[0], 1.0);
        let prepared = prepare(&rows, &result);
        assert_eq!(prepared.features[0][0], 0.0);
        assert!(prepared
            .features
            .iter()
            .flatten()
            .all(|value| value.is_finite()));
    }

    #[test]
    fn missing_values_become_zero_and_are_counted() {
        let rows = table(&[[1.0, f64::NAN], [3.0, 4.0], [f64::NAN, 8.0]]);
        let result = standardization(&feature_stats::<2>(&rows), 2).unwrap();
        let prepared = prepare(&rows, &result);
        assert_eq!(prepared.imputed, 2);
        assert_eq!(prepared.features[0][1], 0.0);
        assert_eq!(prepared.features[2][0], 0.0);
        assert_eq!(prepared.features[1][0], 1.0);
    }

    #[test]
    fn padding_inputs_are_zero_and_not_imputed() {
        let rows = table(&[[1.0, 2.0], [3.0, 6.0]]);
        let result = standardization(&feature_stats::<4>(&rows), 2).unwrap();
        assert_eq!(result.mean[2..], [0.0, 0.0]);
        assert_eq!(result.scale[2..], [1.0, 1.0]);
        let prepared = prepare(&rows, &result);
        assert_eq!(prepared.imputed, 0);
        assert_eq!(prepared.features[1], [1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn all_missing_column_is_an_error() {
        let rows = table(&[[1.0, f64::NAN], [3.0, f64::NAN]]);
        assert_eq!(
            standardization(&feature_stats::<2>(&rows), 2).unwrap_err(),
            StandardizeError::NoValues { column: 1 }
        );
    }
}
