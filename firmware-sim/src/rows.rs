//! The hospital's rows in flash and their standardisation on the fly.
//!
//! Rows stay raw in flash as `f64` bit patterns. Standardised `f32` copies
//! of the 800 training rows of the default hospital would take 64,000 bytes
//! of RAM beside the trainer's 56 KB, so each row is standardised when
//! training or evaluation reads it. The arithmetic is the host's
//! (`preprocess::prepare`): `((value - mean) / scale) as f32` in `f64`, a
//! missing value becomes 0, and inputs past the features are 0 padding.
//! Soft-float `f64` on the Cortex-M4F is correctly rounded like the host's
//! hardware `f64`, so both give the same bits.

use fedcore::wire::{FeatureStats, Standardization};
use fedcore::Samples;

/// The generated constants and rows: `NAME`, `FEATURES`, `INPUTS`,
/// `TRAIN_FEATURES`, `TRAIN_LABELS`, `TEST_FEATURES` and so on.
pub mod hospital {
    include!(concat!(env!("OUT_DIR"), "/hospital.rs"));
}

use hospital::{FEATURES, INPUTS};

/// Raw rows: feature bit patterns and 0/1 labels.
#[derive(Clone, Copy)]
pub struct RawRows {
    features: &'static [[u64; FEATURES]],
    labels: &'static [u8],
}

impl RawRows {
    /// Returns the training rows.
    pub const fn train() -> Self {
        Self {
            features: &hospital::TRAIN_FEATURES,
            labels: &hospital::TRAIN_LABELS,
        }
    }

    /// Returns the test rows.
    pub const fn test() -> Self {
        Self {
            features: &hospital::TEST_FEATURES,
            labels: &hospital::TEST_LABELS,
        }
    }

    /// Returns the number of rows. `build.rs` writes far fewer than
    /// `u32::MAX`.
    pub fn len(&self) -> u32 {
        self.labels.len() as u32
    }

    /// Computes the statistics of the present values of each feature with
    /// fedcore's streaming update, in row order and skipping NaN, as the
    /// host's `preprocess::feature_stats` does.
    pub fn feature_stats(&self) -> FeatureStats<INPUTS> {
        let mut stats = FeatureStats::<INPUTS>::default();
        for row in self.features {
            for (column, &bits) in row.iter().enumerate() {
                let value = f64::from_bits(bits);
                if !value.is_nan() {
                    stats.add_value(column, value);
                }
            }
        }
        stats
    }

    /// Returns these rows as model inputs under `standardization`.
    pub fn standardized(self, standardization: &Standardization<INPUTS>) -> Standardized<'_> {
        Standardized {
            rows: self,
            standardization,
        }
    }
}

/// Raw rows read through the federation's standardisation.
pub struct Standardized<'a> {
    rows: RawRows,
    standardization: &'a Standardization<INPUTS>,
}

impl Standardized<'_> {
    /// Returns the first (row, column) whose standardised value is NaN or
    /// infinite, which the host's `Dataset::new` would reject.
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        let mut features = [0.0f32; INPUTS];
        for row in 0..self.rows.labels.len() {
            self.sample(row, &mut features);
            if let Some(column) = features.iter().position(|value| !value.is_finite()) {
                return Some((row, column));
            }
        }
        None
    }

    /// Computes the statistics of the standardised rows over all inputs,
    /// padding included, which the host's hospital sends to acknowledge the
    /// standardisation.
    pub fn prepared_stats(&self) -> FeatureStats<INPUTS> {
        let mut stats = FeatureStats::<INPUTS>::default();
        let mut features = [0.0f32; INPUTS];
        for row in 0..self.rows.labels.len() {
            self.sample(row, &mut features);
            for (column, &value) in features.iter().enumerate() {
                stats.add_value(column, f64::from(value));
            }
        }
        stats
    }
}

impl Samples<INPUTS> for Standardized<'_> {
    fn rows(&self) -> u32 {
        self.rows.len()
    }

    fn sample(&self, index: usize, features: &mut [f32; INPUTS]) -> f32 {
        let raw = &self.rows.features[index];
        let mean = &self.standardization.mean;
        let scale = &self.standardization.scale;
        for (column, slot) in features.iter_mut().enumerate() {
            *slot = match raw.get(column) {
                None => 0.0,
                Some(&bits) => {
                    let value = f64::from_bits(bits);
                    if value.is_nan() {
                        0.0
                    } else {
                        ((value - mean[column]) / scale[column]) as f32
                    }
                }
            };
        }
        f32::from(self.rows.labels[index])
    }
}
