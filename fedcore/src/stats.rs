//! Per-feature statistics for federated standardisation.
//!
//! Each site summarises its training rows as a count, a mean and a sum of
//! squared deviations from that mean per feature (Welford's streaming
//! update), and the server merges the summaries with the pairwise formula
//! of Chan, Golub and LeVeque. Unlike sums of squares, these stay accurate
//! when a feature's mean is large against its spread, and adding a
//! constant to a feature leaves its standard deviation unchanged.

/// Per-feature statistics of training rows, over the values that are
/// present (missing values are not counted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeatureStats<const INPUTS: usize> {
    /// Values present per feature.
    pub count: [u32; INPUTS],
    /// Mean of the present values, 0 without any.
    pub mean: [f64; INPUTS],
    /// Sum of squared deviations of the present values from `mean`.
    pub m2: [f64; INPUTS],
}

impl<const INPUTS: usize> Default for FeatureStats<INPUTS> {
    fn default() -> Self {
        Self {
            count: [0; INPUTS],
            mean: [0.0; INPUTS],
            m2: [0.0; INPUTS],
        }
    }
}

/// The federation's standardisation: `z = (x − mean) / scale` per feature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Standardization<const INPUTS: usize> {
    /// Mean of each feature over all sites' training rows.
    pub mean: [f64; INPUTS],
    /// Standard deviation of each feature, or 1 for a constant feature.
    pub scale: [f64; INPUTS],
}

/// A feature without any present value, which cannot be standardised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoValues {
    /// Zero-based feature column.
    pub column: usize,
}

impl core::fmt::Display for NoValues {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "feature column {} has no value in any training row, so it cannot be standardised or imputed; drop that column",
            self.column + 1
        )
    }
}

impl core::error::Error for NoValues {}

impl<const INPUTS: usize> FeatureStats<INPUTS> {
    /// Adds one row: `row[column]` for each column below `INPUTS`, where NaN
    /// marks a missing value, which is skipped.
    pub fn add_row(&mut self, row: &[f64]) {
        for (column, &value) in row.iter().enumerate().take(INPUTS) {
            if !value.is_nan() {
                self.add_value(column, value);
            }
        }
    }

    /// Adds one present value of feature `column` with Welford's update.
    /// A column at or past `INPUTS` is ignored.
    pub fn add_value(&mut self, column: usize, value: f64) {
        if column >= INPUTS {
            return;
        }
        self.count[column] = self.count[column].saturating_add(1);
        let delta = value - self.mean[column];
        self.mean[column] += delta / f64::from(self.count[column]);
        self.m2[column] += delta * (value - self.mean[column]);
    }

    /// Merges another site's statistics into these, as if all rows had been
    /// added here. The result depends on the order of merges only in its
    /// last bits, so a server merges sites in a fixed order.
    pub fn merge(&mut self, other: &Self) {
        for column in 0..INPUTS {
            let ours = f64::from(self.count[column]);
            let theirs = f64::from(other.count[column]);
            if theirs == 0.0 {
                continue;
            }
            if ours == 0.0 {
                self.count[column] = other.count[column];
                self.mean[column] = other.mean[column];
                self.m2[column] = other.m2[column];
                continue;
            }
            let total = ours + theirs;
            let delta = other.mean[column] - self.mean[column];
            self.mean[column] += delta * (theirs / total);
            self.m2[column] += other.m2[column] + delta * delta * (ours * theirs / total);
            self.count[column] = self.count[column].saturating_add(other.count[column]);
        }
    }

    /// Returns the index, in wire order (counts, means, then `m2`), of the
    /// first value a correct summary cannot have: a non-finite float, a
    /// negative `m2`, or a non-zero mean or `m2` with a count of 0.
    pub fn first_invalid(&self) -> Option<usize> {
        for column in 0..INPUTS {
            let empty = self.count[column] == 0;
            let mean = self.mean[column];
            if !mean.is_finite() || (empty && mean != 0.0) {
                return Some(INPUTS + column);
            }
            let m2 = self.m2[column];
            if !m2.is_finite() || m2 < 0.0 || (empty && m2 != 0.0) {
                return Some(2 * INPUTS + column);
            }
        }
        None
    }

    /// Derives the standardisation of the first `features` features: the
    /// mean and the population standard deviation. A feature whose
    /// deviation is 0, or too small to divide by safely, keeps scale 1, so
    /// it is only centred. Inputs past `features` are zero padding and get
    /// mean 0 and scale 1.
    pub fn standardization(&self, features: usize) -> Result<Standardization<INPUTS>, NoValues> {
        let mut result = Standardization {
            mean: [0.0; INPUTS],
            scale: [1.0; INPUTS],
        };
        for column in 0..features.min(INPUTS) {
            let count = f64::from(self.count[column]);
            if count == 0.0 {
                return Err(NoValues { column });
            }
            let mean = self.mean[column];
            let deviation = libm::sqrt(self.m2[column].max(0.0) / count);
            result.mean[column] = mean;
            result.scale[column] = if deviation > 1e-12 * mean.abs().max(1.0) {
                deviation
            } else {
                1.0
            };
        }
        Ok(result)
    }
}

impl<const INPUTS: usize> Standardization<INPUTS> {
    /// Returns the index, in wire order (means, then scales), of the first
    /// invalid value: a non-finite mean, or a scale that is not a positive
    /// finite number.
    pub fn first_invalid(&self) -> Option<usize> {
        if let Some(column) = self.mean.iter().position(|mean| !mean.is_finite()) {
            return Some(column);
        }
        let bad_scale = |scale: &f64| !(scale.is_finite() && *scale >= f64::MIN_POSITIVE);
        self.scale
            .iter()
            .position(bad_scale)
            .map(|column| INPUTS + column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(rows: &[[f64; 2]]) -> FeatureStats<2> {
        let mut stats = FeatureStats::default();
        for row in rows {
            stats.add_row(row);
        }
        stats
    }

    #[test]
    fn merged_sites_match_pooled_rows() {
        let first = [[1.0, 10.0], [3.0, f64::NAN]];
        let second = [[5.0, 30.0], [7.0, 20.0]];
        let mut merged = stats_of(&first);
        merged.merge(&stats_of(&second));
        let pooled = stats_of(&[first[0], first[1], second[0], second[1]]);
        assert_eq!(merged.count, [4, 3]);
        assert_eq!(merged.mean, [4.0, 20.0]);
        assert!((merged.m2[0] - 20.0).abs() < 1e-12, "{}", merged.m2[0]);
        assert!((merged.m2[1] - 200.0).abs() < 1e-12, "{}", merged.m2[1]);
        assert!((merged.m2[0] - pooled.m2[0]).abs() < 1e-12);
        let result = merged.standardization(2).unwrap();
        assert!((result.scale[0] - 5.0f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn large_offset_keeps_deviation() {
        // Sums of squares lose every digit of this spread at offset 1e9.
        let offset = 1e9;
        let rows = [
            [offset + 1.0, 0.0],
            [offset + 2.0, 0.0],
            [offset + 3.0, 0.0],
        ];
        let shifted = stats_of(&rows).standardization(1).unwrap();
        let plain = stats_of(&[[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
            .standardization(1)
            .unwrap();
        assert!(
            (shifted.scale[0] - plain.scale[0]).abs() < 1e-9,
            "{} vs {}",
            shifted.scale[0],
            plain.scale[0]
        );
    }

    #[test]
    fn constant_and_empty_columns() {
        let stats = stats_of(&[[2.0, f64::NAN], [2.0, f64::NAN]]);
        assert_eq!(
            stats.standardization(2).unwrap_err(),
            NoValues { column: 1 }
        );
        let result = stats.standardization(1).unwrap();
        assert_eq!((result.mean[0], result.scale[0]), (2.0, 1.0));
        assert_eq!(result.scale[1], 1.0);
    }

    #[test]
    fn invalid_summaries_are_found() {
        let mut stats = stats_of(&[[1.0, 2.0]]);
        assert_eq!(stats.first_invalid(), None);
        stats.m2[1] = -1.0;
        assert_eq!(stats.first_invalid(), Some(5));
        let mut empty = FeatureStats::<2>::default();
        empty.mean[0] = 3.0;
        assert_eq!(empty.first_invalid(), Some(2));

        let mut standardization = stats_of(&[[1.0, 2.0], [3.0, 5.0]])
            .standardization(2)
            .unwrap();
        assert_eq!(standardization.first_invalid(), None);
        standardization.scale[1] = 0.0;
        assert_eq!(standardization.first_invalid(), Some(3));
        standardization.scale[1] = -1.0;
        assert_eq!(standardization.first_invalid(), Some(3));
    }
}
