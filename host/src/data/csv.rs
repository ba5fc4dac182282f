//! Loading hospitals from CSV files, one hospital per file or per
//! `_train`/`_test` file pair.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{DataError, NonNumericHint};
use super::random::{derive_seed, SeedStream};
use super::split::{check_test_fraction, split, test_size};
use super::{default_feature_names, HospitalData, Source, Table, MAX_FEATURES};

/// Column that contains the label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LabelColumn {
    /// The last field of each row.
    #[default]
    Last,
    /// The field at this 0-based index.
    Index(usize),
    /// The field whose header name (after trimming spaces) equals this name.
    /// It requires `CsvOptions::header`.
    Name(String),
}

/// Settings for [`load`].
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// Whether the first row of each file is a header row of column names.
    pub header: bool,
    pub label: LabelColumn,
    /// Missing-value marker, such as `?`. A field equal to it after trimming
    /// becomes `NaN`. With `None`, every feature field must be a number.
    pub missing: Option<String>,
    /// Field delimiter byte.
    pub delimiter: u8,
    /// Fraction of rows that go to the test set when a file is split, in
    /// (0, 1).
    pub test_fraction: f64,
    /// Run seed from which each split hospital's split seed is derived.
    pub seed: u64,
}

impl Default for CsvOptions {
    /// Returns options for headerless, comma-separated files with the label
    /// last, no missing-value marker, a test fraction of 0.2 and seed 0.
    fn default() -> Self {
        Self {
            header: false,
            label: LabelColumn::Last,
            missing: None,
            delimiter: b',',
            test_fraction: 0.2,
            seed: 0,
        }
    }
}

/// Loads one hospital per input file, or per `_train`/`_test` file pair.
///
/// Each path is a file or a folder. A folder contributes its files whose
/// names end in `.csv` or `.data` (ignoring case), sorted by file name, and
/// other files in it are skipped.
///
/// Files `<stem>_train.<ext>` and `<stem>_test.<ext>` in one folder form one
/// hospital named `<stem>` that keeps that split, with rows in file order.
/// Every other file is one hospital named after its file stem and split with
/// [`split`]. The split seed of hospital `i` (0-based, in load order) is
/// `derive_seed(options.seed, SeedStream::Split, i)`; see [`derive_seed`].
/// Hospitals are ordered by their first file in input order.
///
/// A label field that parses as 0 is label 0, and any other number is
/// label 1. Feature fields that equal `options.missing` become `NaN` and are
/// counted in [`Source::missing`].
///
/// # Errors
/// Returns a [`DataError`] that names the file, and the line and column
/// where they apply, for:
/// - a test fraction outside (0, 1), or no paths;
/// - a missing or unreadable path, or a folder without data files;
/// - a `_train` or `_test` file without its partner, or a repeated
///   hospital name;
/// - a file without data rows, or a row with a different number of fields;
/// - a field that is not a finite number, or a missing label;
/// - a label column that is out of range, not in the header, or named
///   without a header;
/// - no feature column, more than [`MAX_FEATURES`], or a feature count or
///   header that differs between files;
/// - a hospital too small to split into training and test rows.
pub fn load(paths: &[PathBuf], options: &CsvOptions) -> Result<Source, DataError> {
    let fraction = options.test_fraction;
    check_test_fraction(fraction)?;
    if paths.is_empty() {
        return Err(DataError::NoPaths);
    }
    if let LabelColumn::Name(name) = &options.label {
        if !options.header {
            return Err(DataError::LabelNameWithoutHeader { name: name.clone() });
        }
    }

    let files = list_files(paths)?;
    let plans = plan_hospitals(&files)?;

    let mut reference: Option<Layout> = None;
    let mut hospitals = Vec::with_capacity(plans.len());
    let mut missing = Vec::with_capacity(plans.len());
    for (index, plan) in plans.into_iter().enumerate() {
        let (train, test, missing_cells) = match plan.files {
            HospitalFiles::Single(path) => {
                let parsed = read_file(&path, options)?;
                check_layout(&mut reference, &parsed.layout)?;
                let rows = parsed.table.len();
                let test_rows = test_size(rows, fraction);
                if test_rows == 0 || test_rows == rows {
                    return Err(DataError::TooFewRows {
                        name: plan.name,
                        path,
                        rows,
                        min_rows: min_rows_to_split(fraction),
                        test_fraction: fraction,
                    });
                }
                let seed = derive_seed(options.seed, SeedStream::Split, index);
                let (train, test) =
                    split(parsed.table.features, parsed.table.labels, fraction, seed);
                (train, test, parsed.missing)
            }
            HospitalFiles::Pair { train, test } => {
                let train = read_file(&train, options)?;
                check_layout(&mut reference, &train.layout)?;
                let test = read_file(&test, options)?;
                check_layout(&mut reference, &test.layout)?;
                (train.table, test.table, train.missing + test.missing)
            }
        };
        hospitals.push(HospitalData {
            name: plan.name,
            train,
            test,
        });
        missing.push(missing_cells);
    }

    let reference = reference.expect("list_files returns at least one file");
    let feature_names = reference
        .header
        .unwrap_or_else(|| default_feature_names(reference.feature_columns.len()));
    Ok(Source {
        hospitals,
        feature_names,
        missing,
    })
}

/// Returns the smallest row count that `split` divides into at least one
/// training row and one test row at `test_fraction`, which is in (0, 1).
fn min_rows_to_split(test_fraction: f64) -> usize {
    // Both sets are non-empty once rows * (1 - fraction) >= 1, and that
    // condition only gets easier as rows grow, so search upward from just
    // below the bound. The margin of 2 absorbs rounding in the division.
    let bound = (1.0 / (1.0 - test_fraction)).floor() as usize;
    (bound.saturating_sub(2).max(2)..)
        .find(|&rows| {
            let test_rows = test_size(rows, test_fraction);
            test_rows >= 1 && test_rows < rows
        })
        .expect("a large enough row count always splits")
}

/// Expands `paths` into the list of input files, in input order.
fn list_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        if !metadata.is_dir() {
            files.push(path.clone());
            continue;
        }

        let entries = std::fs::read_dir(path).map_err(|source| io_error(path, source))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry_path = entry.map_err(|source| io_error(path, source))?.path();
            if entry_path.is_file() && has_data_extension(&entry_path) {
                found.push(entry_path);
            }
        }
        if found.is_empty() {
            return Err(DataError::NoInputFiles { path: path.clone() });
        }
        found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files.extend(found);
    }
    Ok(files)
}

fn has_data_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            extension.eq_ignore_ascii_case("csv") || extension.eq_ignore_ascii_case("data")
        })
}

fn io_error(path: &Path, source: std::io::Error) -> DataError {
    if source.kind() == std::io::ErrorKind::NotFound {
        DataError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Wraps an error of the csv crate. The reader reads from memory, so the
/// error is malformed input such as invalid UTF-8, never an I/O failure.
fn csv_error(path: &Path, source: csv::Error) -> DataError {
    DataError::Csv {
        path: path.to_path_buf(),
        source,
    }
}

/// Files of one hospital.
enum HospitalFiles {
    /// One file, split by `split`.
    Single(PathBuf),
    /// A `_train` and `_test` file pair that keeps its split.
    Pair { train: PathBuf, test: PathBuf },
}

struct HospitalPlan {
    name: String,
    files: HospitalFiles,
}

/// Groups the files into hospitals, pairing `_train` and `_test` files, and
/// rejects duplicate hospital names.
fn plan_hospitals(files: &[PathBuf]) -> Result<Vec<HospitalPlan>, DataError> {
    // Canonical paths let a partner match although the two files were
    // reached through differently spelled paths.
    let canonical: Vec<PathBuf> = files
        .iter()
        .map(|path| std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()))
        .collect();
    let position: HashMap<&PathBuf, usize> = canonical
        .iter()
        .enumerate()
        .map(|(index, path)| (path, index))
        .collect();

    let mut used = vec![false; files.len()];
    let mut plans = Vec::new();
    for (index, path) in files.iter().enumerate() {
        if used[index] {
            continue;
        }
        used[index] = true;
        let stem = file_stem(path);
        let Some((base, role, partner_role)) = split_role(&stem) else {
            plans.push(HospitalPlan {
                name: stem,
                files: HospitalFiles::Single(path.clone()),
            });
            continue;
        };

        let mut partner_name = format!("{base}_{partner_role}");
        if let Some(extension) = path.extension() {
            partner_name.push('.');
            partner_name.push_str(&extension.to_string_lossy());
        }
        let partner = path.with_file_name(&partner_name);
        let partner_canonical = canonical[index].with_file_name(&partner_name);
        let Some(&partner_index) = position.get(&partner_canonical) else {
            return Err(DataError::MissingPartner {
                path: path.clone(),
                partner,
            });
        };
        used[partner_index] = true;
        let partner = files[partner_index].clone();
        let (train, test) = if role == "train" {
            (path.clone(), partner)
        } else {
            (partner, path.clone())
        };
        plans.push(HospitalPlan {
            name: base.to_owned(),
            files: HospitalFiles::Pair { train, test },
        });
    }

    let mut first_use: HashMap<&str, &HospitalPlan> = HashMap::new();
    for plan in &plans {
        if let Some(first) = first_use.insert(&plan.name, plan) {
            return Err(DataError::DuplicateHospital {
                name: plan.name.clone(),
                first: naming_path(first).to_path_buf(),
                second: naming_path(plan).to_path_buf(),
            });
        }
    }
    Ok(plans)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Splits `name_train` into `("name", "train", "test")` and `name_test` into
/// `("name", "test", "train")`. Other stems, and a bare `_train` or `_test`,
/// return `None`.
fn split_role(stem: &str) -> Option<(&str, &'static str, &'static str)> {
    if let Some(base) = stem.strip_suffix("_train") {
        (!base.is_empty()).then_some((base, "train", "test"))
    } else if let Some(base) = stem.strip_suffix("_test") {
        (!base.is_empty()).then_some((base, "test", "train"))
    } else {
        None
    }
}

/// Returns the file that a duplicate-name error names for `plan`.
fn naming_path(plan: &HospitalPlan) -> &Path {
    match &plan.files {
        HospitalFiles::Single(path) => path,
        HospitalFiles::Pair { train, .. } => train,
    }
}

/// Rows of one file.
struct ParsedFile {
    table: Table,
    layout: Layout,
    /// Number of missing feature cells.
    missing: usize,
}

/// Feature columns of one file, compared across files.
#[derive(Clone)]
struct Layout {
    path: PathBuf,
    /// Feature column names from the header row, when there is one.
    header: Option<Vec<String>>,
    /// 1-based column number of each feature in the file.
    feature_columns: Vec<usize>,
}

/// Checks that `layout` has the features of the first file read, which
/// becomes the reference when there is none yet.
fn check_layout(reference: &mut Option<Layout>, layout: &Layout) -> Result<(), DataError> {
    let Some(first) = reference else {
        *reference = Some(layout.clone());
        return Ok(());
    };

    let expected = first.feature_columns.len();
    let found = layout.feature_columns.len();
    if found != expected {
        return Err(DataError::FeatureCountMismatch {
            path: layout.path.clone(),
            found,
            first: first.path.clone(),
            expected,
        });
    }
    if let (Some(expected_names), Some(found_names)) = (&first.header, &layout.header) {
        for (feature, (expected, found)) in expected_names.iter().zip(found_names).enumerate() {
            if expected != found {
                return Err(DataError::HeaderMismatch {
                    path: layout.path.clone(),
                    column: layout.feature_columns[feature],
                    found: found.clone(),
                    first: first.path.clone(),
                    expected: expected.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Positions of the label and feature fields, fixed by a file's first row.
struct Columns {
    fields: usize,
    label: usize,
}

impl Columns {
    /// Resolves the label column against the first row of `path`, which is
    /// the header row when `options.header` is set.
    fn resolve(path: &Path, first_row: &[&str], options: &CsvOptions) -> Result<Self, DataError> {
        let fields = first_row.len();
        let label = match &options.label {
            LabelColumn::Last => fields - 1,
            LabelColumn::Index(index) => {
                if *index >= fields {
                    return Err(DataError::LabelIndexOutOfRange {
                        path: path.to_path_buf(),
                        index: *index,
                        fields,
                    });
                }
                *index
            }
            LabelColumn::Name(name) => first_row
                .iter()
                .position(|field| *field == name.trim())
                .ok_or_else(|| DataError::LabelNameNotFound {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    header: first_row.iter().map(|field| field.to_string()).collect(),
                })?,
        };

        let features = fields - 1;
        if features == 0 {
            return Err(DataError::NoFeatureColumns {
                path: path.to_path_buf(),
            });
        }
        if features > MAX_FEATURES {
            return Err(DataError::TooManyFeatures {
                path: path.to_path_buf(),
                found: features,
            });
        }
        Ok(Self { fields, label })
    }

    /// Returns the 0-based field indices of the features, in file order.
    fn features(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.fields).filter(move |&index| index != self.label)
    }
}

/// Trims spaces and a UTF-8 byte order mark from a field.
fn clean(field: &str) -> &str {
    field.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// Reads and parses one hospital file.
fn read_file(path: &Path, options: &CsvOptions) -> Result<ParsedFile, DataError> {
    let bytes = std::fs::read(path).map_err(|source| io_error(path, source))?;
    let lines = LineIndex::new(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(options.delimiter)
        // Ragged rows are reported below with their line number and counts.
        .flexible(true)
        .from_reader(bytes.as_slice());
    let marker = options.missing.as_deref().map(str::trim);

    let mut columns: Option<Columns> = None;
    let mut header = None;
    let mut table = Table::default();
    let mut missing = 0;
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|source| csv_error(path, source))?
    {
        let line = lines.line_of(record.position().map_or(0, csv::Position::byte));
        let fields: Vec<&str> = record.iter().map(clean).collect();

        let first_row = columns.is_none();
        if first_row {
            let resolved = Columns::resolve(path, &fields, options)?;
            if options.header {
                header = Some(resolved.features().map(|i| fields[i].to_owned()).collect());
                columns = Some(resolved);
                continue;
            }
            columns = Some(resolved);
        }
        let columns = columns.as_ref().expect("the first row sets the columns");

        if fields.len() != columns.fields {
            return Err(DataError::RaggedRow {
                path: path.to_path_buf(),
                line,
                expected: columns.fields,
                found: fields.len(),
            });
        }
        let row = RowContext {
            path,
            line,
            marker,
            // A header row never gets here, so the first row is data.
            first_row_of_headerless_file: first_row,
        };
        parse_row(&row, columns, &fields, &mut table, &mut missing)?;
    }

    if table.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let columns = columns.expect("a data row sets the columns");
    Ok(ParsedFile {
        table,
        layout: Layout {
            path: path.to_path_buf(),
            header,
            feature_columns: columns.features().map(|index| index + 1).collect(),
        },
        missing,
    })
}

/// Physical line numbers of byte offsets in a file.
///
/// The csv crate (checked with 1.4) skips empty lines without counting them
/// in its line numbers, and the position it gives for a record is where the
/// skipped lines begin. This index counts every line break, `\n`, `\r\n` or a lone
/// `\r`, so line numbers match what an editor shows.
struct LineIndex<'a> {
    bytes: &'a [u8],
    /// Byte offset at which each line starts. Line 1 starts at 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut starts = vec![0];
        for (offset, &byte) in bytes.iter().enumerate() {
            let lone_return = byte == b'\r' && bytes.get(offset + 1) != Some(&b'\n');
            if byte == b'\n' || lone_return {
                starts.push(offset + 1);
            }
        }
        Self { bytes, starts }
    }

    /// Returns the 1-based line of the record that the csv crate reports at
    /// `offset`, skipping the empty lines in front of it.
    fn line_of(&self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while matches!(self.bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        self.starts
            .partition_point(|&line_start| line_start <= start) as u64
    }
}

/// Location of a row for error messages, and the missing-value marker.
struct RowContext<'a> {
    path: &'a Path,
    line: u64,
    marker: Option<&'a str>,
    first_row_of_headerless_file: bool,
}

/// Parses one data row into `table`, adding its missing cells to `missing`.
fn parse_row(
    row: &RowContext<'_>,
    columns: &Columns,
    fields: &[&str],
    table: &mut Table,
    missing: &mut usize,
) -> Result<(), DataError> {
    // A headerless file whose first row has no number at all probably starts
    // with a header row.
    let looks_like_header = row.first_row_of_headerless_file
        && fields.iter().all(|field| field.parse::<f64>().is_err());
    let non_numeric = |index: usize, hint: NonNumericHint| DataError::NonNumeric {
        path: row.path.to_path_buf(),
        line: row.line,
        column: index + 1,
        value: fields[index].to_owned(),
        hint: if looks_like_header {
            NonNumericHint::HeaderRow
        } else {
            hint
        },
    };

    // Fields are checked left to right, so an error names the first bad one.
    let mut label = 0;
    let mut values = Vec::with_capacity(columns.fields - 1);
    for (index, &field) in fields.iter().enumerate() {
        let is_marker = row.marker == Some(field);
        if index == columns.label {
            if is_marker {
                return Err(DataError::MissingLabel {
                    path: row.path.to_path_buf(),
                    line: row.line,
                    column: index + 1,
                });
            }
            label = match field.parse::<f64>() {
                Ok(value) if value.is_finite() => u8::from(value != 0.0),
                _ => return Err(non_numeric(index, NonNumericHint::Label)),
            };
            continue;
        }

        if is_marker {
            values.push(f64::NAN);
            *missing += 1;
            continue;
        }
        match field.parse::<f64>() {
            Ok(value) if value.is_finite() => values.push(value),
            _ => {
                let hint = match row.marker {
                    Some(marker) => NonNumericHint::UseMarker(marker.to_owned()),
                    None => NonNumericHint::SetMarker,
                };
                return Err(non_numeric(index, hint));
            }
        }
    }

    table.features.push(values);
    table.labels.push(label);
    Ok(())
}

#[cfg(test)]
mod tests;
