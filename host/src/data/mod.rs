//! Raw per-hospital data: the built-in synthetic hospitals and CSV files.
//!
//! Each simulated hospital gets its own training and test rows, which never
//! leave it. The values here are raw: a later stage standardises them and
//! imputes the missing ones (`NaN`) with federated statistics.
//!
//! Every [`Source`] returned by this module keeps three invariants. All rows
//! of all hospitals have the same number of features, between 1 and
//! [`MAX_FEATURES`]. Every feature value is finite and at most
//! [`MAX_ABS_VALUE`] in magnitude unless it is missing, and then it is `NaN`.
//! Every label is 0 or 1.

mod csv;
mod delimiter;
mod error;
mod generator;
mod random;
mod split;

pub use self::csv::{load, CsvOptions, LabelColumn};
pub use self::delimiter::parse_delimiter;
pub use self::error::{DataError, NonNumericHint};
pub use self::generator::{
    builtin_hospitals, builtin_hospitals_n, builtin_plan, generate_hospitals, Classification,
    BUILTIN_SHIFTS, BUILTIN_SIZES, MAX_BUILTIN_HOSPITALS,
};
pub use self::random::{derive_seed, derive_split_seed, SeedStream};
pub use self::split::{check_test_fraction, min_rows_to_split, split, test_size};

/// Maximum number of feature columns, fixed by the model's input width.
pub const MAX_FEATURES: usize = 64;

/// Maximum magnitude of a feature value. [`load`] rejects a CSV feature
/// value above it, and leaves labels unbounded.
///
/// The federated statistics square deviations from the mean. Two values
/// within this bound differ by at most 2e100, whose square is 4e200, so
/// even summed over 2^32 rows (the largest count the statistics keep) the
/// result stays far below `f64::MAX`, about 1.8e308.
pub const MAX_ABS_VALUE: f64 = 1e100;

/// Rows of raw features with one binary label per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// One row per patient. A missing value is `f64::NAN`, and only a
    /// missing-value marker in a CSV file produces one.
    pub features: Vec<Vec<f64>>,
    /// One label per row: 1 for positive, 0 for negative.
    pub labels: Vec<u8>,
}

impl Table {
    /// Returns the number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns true when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Counts the rows labelled 1.
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&label| label == 1).count()
    }
}

/// One hospital's raw data before standardisation.
#[derive(Debug, Clone, PartialEq)]
pub struct HospitalData {
    /// Display name: "hospital 1" for the built-in data, the file stem for
    /// CSV input.
    pub name: String,
    pub train: Table,
    pub test: Table,
}

/// All hospitals of one run, with the metadata shared by their rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub hospitals: Vec<HospitalData>,
    /// One name per feature column: the header names of a CSV file read with
    /// a header, otherwise `f0`, `f1`, and so on.
    pub feature_names: Vec<String>,
    /// Number of missing feature cells at each hospital, in the order of
    /// `hospitals`, counting training and test rows.
    pub missing: Vec<usize>,
}

impl Source {
    /// Returns the number of features in every row.
    pub fn feature_count(&self) -> usize {
        self.feature_names.len()
    }
}

/// Builds the default feature names `f0`, `f1`, ... for `count` columns.
fn default_feature_names(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("f{index}")).collect()
}
