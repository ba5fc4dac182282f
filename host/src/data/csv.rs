//! Loading hospitals from CSV files, one hospital per file or per
//! `_train`/`_test` file pair.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::delimiter::suggest_delimiter;
use super::error::{DataError, NonNumericHint};
use super::random::derive_split_seed;
use super::split::{check_test_fraction, min_rows_to_split, split, test_size};
use super::{default_feature_names, HospitalData, Source, Table, MAX_ABS_VALUE, MAX_FEATURES};

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
    /// Field delimiter byte. [`parse_delimiter`](super::parse_delimiter)
    /// parses its command-line spelling.
    pub delimiter: u8,
    /// Fraction of rows that go to the test set when a file is split, in
    /// (0, 1).
    pub test_fraction: f64,
    /// Run seed from which each split hospital's split seed is derived,
    /// together with the hospital's name.
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
/// [`split`], with the split seed `derive_split_seed(options.seed, name)`
/// (see [`derive_split_seed`]). Its test rows therefore depend on its rows,
/// its name, the run seed and the test fraction, but not on the other input
/// files or their order. Hospitals are ordered by their first file in input
/// order.
///
/// Lines that are empty or contain only whitespace are skipped. A label
/// field that parses as 0 is label 0, and any other number is label 1.
/// Feature fields that equal `options.missing` become `NaN` and are counted
/// in [`Source::missing`]. A feature value must not exceed
/// [`MAX_ABS_VALUE`] in magnitude.
///
/// # Errors
/// Returns a [`DataError`] that names the file, and the line and column
/// where they apply, for:
/// - a test fraction outside (0, 1), or no paths;
/// - a missing or unreadable path, or a folder without data files;
/// - a file or folder given twice, also through different spellings or a
///   folder that contains a given file;
/// - a `_train` or `_test` file without its partner, or a repeated
///   hospital name;
/// - a file without data rows, a field that is not UTF-8, or a row with a
///   different number of fields;
/// - a field that is not a finite number, a feature value above
///   [`MAX_ABS_VALUE`] in magnitude, or a missing or empty label;
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
    for plan in plans {
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
                // The seed comes from the name, not the position, so that
                // other input files cannot change this hospital's split.
                let seed = derive_split_seed(options.seed, &plan.name);
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

/// Expands `paths` into the list of input files, in input order, and
/// rejects a file or folder that is given twice.
fn list_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    // Keys are canonical paths, so that differently spelled paths to one
    // file or folder count as the same. Values are the input paths.
    let mut inputs: HashMap<PathBuf, &PathBuf> = HashMap::new();
    let mut file_inputs: HashMap<PathBuf, &PathBuf> = HashMap::new();
    let mut files = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        if let Some(first) = inputs.insert(canonical(path), path) {
            return Err(DataError::RepeatedPath {
                path: path.clone(),
                first: first.clone(),
            });
        }

        let listed = if metadata.is_dir() {
            list_folder(path)?
        } else {
            vec![path.clone()]
        };
        for file in listed {
            if let Some(first) = file_inputs.insert(canonical(&file), path) {
                return Err(DataError::RepeatedFile {
                    path: file,
                    first: first.clone(),
                    second: path.clone(),
                });
            }
            files.push(file);
        }
    }
    Ok(files)
}

/// Lists the data files of the folder `path`, sorted by file name.
fn list_folder(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(path).map_err(|source| io_error(path, source))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry_path = entry.map_err(|source| io_error(path, source))?.path();
        if entry_path.is_file() && has_data_extension(&entry_path) {
            found.push(entry_path);
        }
    }
    if found.is_empty() {
        return Err(DataError::NoInputFiles {
            path: path.to_path_buf(),
        });
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found)
}

/// Returns the canonical form of `path`, or `path` itself when it cannot be
/// resolved.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
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

/// Wraps an error of the csv crate. With byte records read from memory and
/// `flexible` set, csv 1.4 raises none, so this only guards against other
/// versions. `decode_fields` reports invalid UTF-8.
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
    let canonical_paths: Vec<PathBuf> = files.iter().map(|path| canonical(path)).collect();
    let position: HashMap<&PathBuf, usize> = canonical_paths
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
        let partner_canonical = canonical_paths[index].with_file_name(&partner_name);
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
        // One field leaves no room for a feature, whatever the label column.
        // It usually means that the file uses another delimiter.
        if fields == 1 {
            return Err(DataError::NoFeatureColumns {
                path: path.to_path_buf(),
                suggested_delimiter: suggest_delimiter(first_row[0], options.delimiter),
            });
        }

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
    // Byte records let invalid UTF-8 be reported with its line and column.
    let mut record = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|source| csv_error(path, source))?
    {
        let line = lines.line_of(record.position().map_or(0, csv::Position::byte));
        let fields = decode_fields(path, line, &record)?;
        // The csv crate skips empty lines, and whitespace-only lines are
        // skipped here like them.
        if fields.len() == 1 && fields[0].is_empty() {
            continue;
        }

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
            delimiter: options.delimiter,
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

/// Decodes the fields of `record` as UTF-8 and trims them with [`clean`].
fn decode_fields<'a>(
    path: &Path,
    line: u64,
    record: &'a csv::ByteRecord,
) -> Result<Vec<&'a str>, DataError> {
    record
        .iter()
        .enumerate()
        .map(|(index, field)| match std::str::from_utf8(field) {
            Ok(text) => Ok(clean(text)),
            Err(_) => Err(DataError::InvalidUtf8 {
                path: path.to_path_buf(),
                line,
                column: index + 1,
            }),
        })
        .collect()
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
    delimiter: u8,
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
            // A trailing delimiter adds an empty last field, which becomes
            // the label when the label is the last column.
            if field.is_empty() && index + 1 == fields.len() {
                return Err(DataError::TrailingDelimiter {
                    path: row.path.to_path_buf(),
                    line: row.line,
                    column: index + 1,
                    delimiter: row.delimiter,
                });
            }
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
            Ok(value) if value.abs() <= MAX_ABS_VALUE => values.push(value),
            Ok(value) if value.is_finite() => {
                return Err(DataError::ValueTooLarge {
                    path: row.path.to_path_buf(),
                    line: row.line,
                    column: index + 1,
                    value: field.to_owned(),
                });
            }
            // Infinities and NaN get here, and so does text.
            _ => return Err(non_numeric(index, feature_hint(field, row.marker))),
        }
    }

    table.features.push(values);
    table.labels.push(label);
    Ok(())
}

/// Chooses the advice for a feature value that is not a finite number.
fn feature_hint(value: &str, marker: Option<&str>) -> NonNumericHint {
    // Text with letters that parses as a float is "inf" or "NaN", which may
    // mark missing values, so only other text counts as a category.
    let is_category = value.chars().any(char::is_alphabetic)
        && value.parse::<f64>().is_err()
        && !looks_like_marker(value);
    match (is_category, marker) {
        (true, marker) => NonNumericHint::Category {
            marker: marker.map(str::to_owned),
        },
        (false, Some(marker)) => NonNumericHint::UseMarker(marker.to_owned()),
        (false, None) => NonNumericHint::SetMarker,
    }
}

/// Returns true for common missing-value markers. These are text without
/// letters or digits, such as `?`, `-`, `.` or an empty field, and `NA`,
/// `N/A` and `NULL` in any case.
fn looks_like_marker(value: &str) -> bool {
    let words = ["na", "n/a", "null"];
    !value.chars().any(char::is_alphanumeric)
        || words.iter().any(|word| value.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests;
