//! Errors of the data layer, each with the path, position and fix.

use std::path::{Path, PathBuf};

use super::delimiter::delimiter_argument;
use super::{MAX_ABS_VALUE, MAX_FEATURES};

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
        "{}, line {line}, column {column}: the field is not valid UTF-8 text; save the file as UTF-8",
        .path.display()
    )]
    InvalidUtf8 {
        path: PathBuf,
        line: u64,
        column: usize,
    },

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

    /// Two input paths name the same file or folder. `first` is the earlier
    /// spelling, which equals `path` when the same text is given twice.
    #[error("{}", repeated_path_message(.path, .first))]
    RepeatedPath { path: PathBuf, first: PathBuf },

    /// A file is reached through two different input paths, such as a folder
    /// and a file inside it.
    #[error(
        "file {} is given twice, through both {} and {}; pass it once",
        .path.display(), .first.display(), .second.display()
    )]
    RepeatedFile {
        path: PathBuf,
        first: PathBuf,
        second: PathBuf,
    },

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
        "{}, line {line}, column {column}: '{value}' is larger in magnitude than {MAX_ABS_VALUE:e}, the limit that keeps the federated statistics from overflowing; rescale the column, e.g. to other units",
        .path.display()
    )]
    ValueTooLarge {
        path: PathBuf,
        line: u64,
        column: usize,
        value: String,
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

    /// The label is the last field, and it is empty because the row ends
    /// with the delimiter.
    #[error(
        "{}, line {line}, column {column}: the label is empty because the line ends with a {}; remove trailing delimiters, or fill in the label",
        .path.display(), delimiter_argument(*.delimiter)
    )]
    TrailingDelimiter {
        path: PathBuf,
        line: u64,
        column: usize,
        delimiter: u8,
    },

    /// The first row has one field. `suggested_delimiter` is a common
    /// delimiter that the row contains, if any.
    #[error("{}", no_feature_columns_message(.path, *.suggested_delimiter))]
    NoFeatureColumns {
        path: PathBuf,
        suggested_delimiter: Option<u8>,
    },

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
    /// No missing-value marker is set, and the value is not a category
    /// name, so it may be meant as a marker.
    SetMarker,
    /// A missing-value marker is set, and the value is not it.
    UseMarker(String),
    /// The value contains letters and is not a usual missing-value marker,
    /// so it is probably a category name. `marker` is the missing-value
    /// marker, if one is set.
    Category { marker: Option<String> },
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
        NonNumericHint::Category { marker: None } => format!(
            "the column must be numeric, so encode categories as numbers such as 0 and 1, or pass --missing '{value}' if '{value}' marks a missing value"
        ),
        NonNumericHint::Category {
            marker: Some(marker),
        } => format!(
            "the column must be numeric, so encode categories as numbers such as 0 and 1, and write a missing value as the marker '{marker}'"
        ),
        NonNumericHint::Label => {
            "a label must be 0 (negative) or another number (positive), so fix the value or remove the row".to_owned()
        }
    };
    format!("{problem}; {advice}")
}

/// Builds the message of [`DataError::RepeatedPath`].
fn repeated_path_message(path: &Path, first: &Path) -> String {
    // `Path` equality ignores `.` components, so compare the text.
    if path.as_os_str() == first.as_os_str() {
        format!("input path {} is given twice; pass it once", path.display())
    } else {
        format!(
            "input paths {} and {} are the same file or folder, so it is given twice; pass it once",
            first.display(),
            path.display()
        )
    }
}

/// Builds the message of [`DataError::NoFeatureColumns`].
fn no_feature_columns_message(path: &Path, suggested_delimiter: Option<u8>) -> String {
    let problem = format!(
        "{} has only the label column and no feature columns",
        path.display()
    );
    match suggested_delimiter {
        Some(delimiter) => {
            let argument = delimiter_argument(delimiter);
            format!("{problem}, but its first row contains a {argument}; pass --delimiter {argument} if the file uses that delimiter")
        }
        None => format!("{problem}; add feature columns or check the delimiter"),
    }
}

/// Formats names as `'a', 'b', 'c'`.
fn quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("'{name}'")).collect();
    quoted.join(", ")
}
