//! Errors of the data layer, each with the path, position and fix.

use std::path::PathBuf;

use super::MAX_FEATURES;

/// Error raised while loading hospital data.
///
/// Line and column numbers are 1-based. Lines are physical lines of the file,
/// counting the header line and empty lines. Columns count every field, the
/// label included.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("test fraction {value} is invalid; use a number greater than 0 and less than 1, such as 0.2")]
    InvalidTestFraction { value: f64 },

    #[error("no input paths given; pass at least one CSV file or folder")]
    NoPaths,

    #[error("input path {} not found; check the spelling", .path.display())]
    NotFound { path: PathBuf },

    #[error("failed to read {}: {source}; check that it is a readable file or folder", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("failed to parse {} as CSV: {source}; save it as UTF-8 delimited text", .path.display())]
    Csv { path: PathBuf, source: csv::Error },

    #[error(
        "folder {} contains no .csv or .data files; add hospital files to it or pass the files directly",
        .path.display()
    )]
    NoInputFiles { path: PathBuf },

    #[error(
        "{} needs its partner file {} among the inputs; add that file, or rename {} without the _train or _test suffix so it is split automatically",
        .path.display(), .partner.display(), .path.display()
    )]
    MissingPartner { path: PathBuf, partner: PathBuf },

    #[error(
        "hospital name '{name}' comes from both {} and {}; rename one of the files",
        .first.display(), .second.display()
    )]
    DuplicateHospital {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error("hospital file {} has no data rows; remove it or add rows", .path.display())]
    EmptyFile { path: PathBuf },

    #[error(
        "{}, line {line}: expected {expected} fields, found {found}; every row needs as many fields as the first row",
        .path.display()
    )]
    RaggedRow {
        path: PathBuf,
        line: u64,
        expected: usize,
        found: usize,
    },

    #[error(
        "{}, line {line}, column {column}: {}",
        .path.display(), non_numeric_message(.value, .hint)
    )]
    NonNumeric {
        path: PathBuf,
        line: u64,
        column: usize,
        value: String,
        hint: NonNumericHint,
    },

    #[error(
        "{}, line {line}, column {column}: the label is missing; fill it in or remove the row",
        .path.display()
    )]
    MissingLabel {
        path: PathBuf,
        line: u64,
        column: usize,
    },

    #[error(
        "{} has only the label column and no feature columns; add feature columns or check the delimiter",
        .path.display()
    )]
    NoFeatureColumns { path: PathBuf },

    #[error(
        "{} has {found} feature columns, but the maximum is {MAX_FEATURES}; remove columns",
        .path.display()
    )]
    TooManyFeatures { path: PathBuf, found: usize },

    #[error(
        "label column index {index} is out of range for {}, which has {fields} fields; use a 0-based index below {fields}",
        .path.display()
    )]
    LabelIndexOutOfRange {
        path: PathBuf,
        index: usize,
        fields: usize,
    },

    #[error(
        "label column '{name}' is not in the header of {}; the header has {}",
        .path.display(), quoted_list(.header)
    )]
    LabelNameNotFound {
        path: PathBuf,
        name: String,
        header: Vec<String>,
    },

    #[error(
        "label column '{name}' is given by name, which needs a header row; pass --header, or give the label column by index"
    )]
    LabelNameWithoutHeader { name: String },

    #[error(
        "{}, column {column}: header name '{found}' differs from '{expected}' in {}; all hospital files need the same columns in the same order",
        .path.display(), .first.display()
    )]
    HeaderMismatch {
        path: PathBuf,
        column: usize,
        found: String,
        first: PathBuf,
        expected: String,
    },

    #[error(
        "{} has {found} feature columns, but {} has {expected}; all hospital files need the same features",
        .path.display(), .first.display()
    )]
    FeatureCountMismatch {
        path: PathBuf,
        found: usize,
        first: PathBuf,
        expected: usize,
    },

    #[error(
        "hospital '{name}' ({}) has {rows} {}, too few for both a training and a test row at test fraction {test_fraction}; it needs at least {min_rows} rows, so add rows or remove the file",
        .path.display(), if *.rows == 1 { "row" } else { "rows" }
    )]
    TooFewRows {
        name: String,
        path: PathBuf,
        rows: usize,
        min_rows: usize,
        test_fraction: f64,
    },
}

/// Advice attached to [`DataError::NonNumeric`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonNumericHint {
    /// The first row of a file read without a header has no numeric field,
    /// so it is probably a header row.
    HeaderRow,
    /// No missing-value marker is set, and the value may be meant as one.
    SetMarker,
    /// A missing-value marker is set, and the value is not it.
    UseMarker(String),
    /// The value is in the label column, where missing values are not allowed.
    Label,
}

/// Builds the description of a value that is not a finite number, with the
/// fix that `hint` selects.
fn non_numeric_message(value: &str, hint: &NonNumericHint) -> String {
    // `str::parse` accepts "inf" and "NaN", so a value that parses here is
    // one that is not finite.
    let problem = if value.parse::<f64>().is_ok() {
        format!("'{value}' is not a finite number, and values must be finite")
    } else {
        format!("'{value}' is not a number")
    };
    let advice = match hint {
        NonNumericHint::HeaderRow => {
            "the first row looks like a header row, so pass --header to skip it".to_owned()
        }
        NonNumericHint::SetMarker => {
            format!("fix the value, or pass --missing '{value}' if it marks a missing value")
        }
        NonNumericHint::UseMarker(marker) => {
            format!("fix the value, or write a missing value as the marker '{marker}'")
        }
        NonNumericHint::Label => {
            "a label must be 0 (negative) or another number (positive), so fix the value or remove the row".to_owned()
        }
    };
    format!("{problem}; {advice}")
}

/// Formats names as `'a', 'b', 'c'`.
fn quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
    quoted.join(", ")
}
