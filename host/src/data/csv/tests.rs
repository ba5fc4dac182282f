use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

const HEART_DISEASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/heart-disease");
const THREE_HOSPITALS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/three-hospitals");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write test file");
    path
}

/// Loads `text` as the single file `h.csv` with `options`.
fn load_text(text: &str, options: &CsvOptions) -> Result<Source, DataError> {
    let dir = TempDir::new().expect("create temporary folder");
    let path = write(dir.path(), "h.csv", text);
    load(&[path], options)
}

fn with_marker(marker: &str) -> CsvOptions {
    CsvOptions {
        missing: Some(marker.to_owned()),
        ..CsvOptions::default()
    }
}

fn with_header() -> CsvOptions {
    CsvOptions {
        header: true,
        ..CsvOptions::default()
    }
}

/// Returns all rows and labels of a hospital, training rows first.
fn all_rows(hospital: &HospitalData) -> (Vec<Vec<f64>>, Vec<u8>) {
    let mut rows = hospital.train.features.clone();
    rows.extend(hospital.test.features.iter().cloned());
    let mut labels = hospital.train.labels.clone();
    labels.extend(&hospital.test.labels);
    (rows, labels)
}

// Real data sets.

#[test]
fn heart_disease_folder_loads() {
    let options = CsvOptions {
        missing: Some("?".to_owned()),
        ..CsvOptions::default()
    };
    let source = load(&[PathBuf::from(HEART_DISEASE)], &options).expect("load heart disease");

    let names: Vec<&str> = source.hospitals.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "processed.cleveland",
            "processed.hungarian",
            "processed.switzerland",
            "processed.va"
        ]
    );
    assert_eq!(source.feature_count(), 13);
    assert_eq!(source.feature_names[12], "f12");
    assert_eq!(source.missing, vec![6, 782, 273, 698]);

    let rows: Vec<usize> = source
        .hospitals
        .iter()
        .map(|h| h.train.len() + h.test.len())
        .collect();
    assert_eq!(rows, vec![303, 294, 123, 200]);
    assert_eq!(rows.iter().sum::<usize>(), 920);
    let test_rows: Vec<usize> = source.hospitals.iter().map(|h| h.test.len()).collect();
    assert_eq!(test_rows, vec![61, 59, 25, 40]);
    let positives: Vec<usize> = source
        .hospitals
        .iter()
        .map(|h| h.train.positives() + h.test.positives())
        .collect();
    assert_eq!(positives, vec![139, 106, 115, 149]);
}

#[test]
fn heart_disease_values_parse() {
    let options = with_marker("?");
    let path = PathBuf::from(HEART_DISEASE).join("processed.switzerland.data");
    let source = load(&[path], &options).expect("load switzerland");
    let (rows, labels) = all_rows(&source.hospitals[0]);

    // Line 1 is `32,1,1,95,0,?,0,127,0,.7,1,?,?,1`.
    let index = rows
        .iter()
        .position(|row| row[0] == 32.0 && row[3] == 95.0 && row[7] == 127.0)
        .expect("row of line 1");
    let row = &rows[index];
    assert_eq!(row[9], 0.7);
    assert!(row[5].is_nan());
    assert!(row[11].is_nan());
    assert!(row[12].is_nan());
    assert_eq!(labels[index], 1);

    let nan_cells = rows.iter().flatten().filter(|x| x.is_nan()).count();
    assert_eq!(nan_cells, 273);
    assert!(rows.iter().flatten().all(|x| x.is_nan() || x.is_finite()));
}

#[test]
fn three_hospitals_folder_keeps_split() {
    let source = load(&[PathBuf::from(THREE_HOSPITALS)], &with_header()).expect("load");

    let names: Vec<&str> = source.hospitals.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["hospital_1", "hospital_2", "hospital_3"]);
    assert_eq!(source.feature_count(), 20);
    assert_eq!(source.feature_names[0], "f0");
    assert_eq!(source.feature_names[19], "f19");
    assert_eq!(source.missing, vec![0, 0, 0]);

    let sizes: Vec<(usize, usize)> = source
        .hospitals
        .iter()
        .map(|h| (h.train.len(), h.test.len()))
        .collect();
    assert_eq!(sizes, vec![(800, 200), (640, 160), (480, 120)]);
    let test_positives: Vec<usize> = source
        .hospitals
        .iter()
        .map(|h| h.test.positives())
        .collect();
    assert_eq!(test_positives, vec![97, 84, 55]);
    let train_positives: Vec<usize> = source
        .hospitals
        .iter()
        .map(|h| h.train.positives())
        .collect();
    assert_eq!(train_positives, vec![403, 316, 245]);
}

#[test]
fn three_hospitals_values_bit_exact() {
    let source = load(&[PathBuf::from(THREE_HOSPITALS)], &with_header()).expect("load");
    let train = &source.hospitals[0].train;

    // First data row of hospital_1_train.csv, so the file order is kept.
    assert_eq!(
        train.features[0][0].to_bits(),
        2.119544095833649f64.to_bits()
    );
    assert_eq!(
        train.features[0][1].to_bits(),
        (-0.023769126619321613f64).to_bits()
    );
}

// Folders, pairs and names.

#[test]
fn folder_takes_data_files_sorted() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "b.data", "1,2,0\n3,4,1\n");
    write(dir.path(), "a.csv", "5,6,0\n7,8,1\n");
    write(dir.path(), "README.md", "not data\n");
    write(dir.path(), "notes.txt", "not data\n");

    let source = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap();

    let names: Vec<&str> = source.hospitals.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn explicit_file_any_extension() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "clinic.txt", "1,2,0\n3,4,1\n");

    let source = load(&[path], &CsvOptions::default()).unwrap();

    assert_eq!(source.hospitals[0].name, "clinic");
}

#[test]
fn pair_keeps_file_order() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "site_train.csv", "1,10,0\n2,20,1\n3,30,1\n");
    write(dir.path(), "site_test.csv", "4,40,1\n");

    let source = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap();

    assert_eq!(source.hospitals.len(), 1);
    let hospital = &source.hospitals[0];
    assert_eq!(hospital.name, "site");
    assert_eq!(
        hospital.train.features,
        vec![vec![1.0, 10.0], vec![2.0, 20.0], vec![3.0, 30.0]]
    );
    assert_eq!(hospital.train.labels, vec![0, 1, 1]);
    assert_eq!(hospital.test.features, vec![vec![4.0, 40.0]]);
    assert_eq!(hospital.test.labels, vec![1]);
}

#[test]
fn pair_from_explicit_files() {
    let dir = TempDir::new().unwrap();
    let test = write(dir.path(), "site_test.csv", "4,40,1\n");
    let train = write(dir.path(), "site_train.csv", "1,10,0\n");

    let source = load(&[test, train], &CsvOptions::default()).unwrap();

    assert_eq!(source.hospitals.len(), 1);
    assert_eq!(source.hospitals[0].train.labels, vec![0]);
    assert_eq!(source.hospitals[0].test.labels, vec![1]);
}

#[test]
fn train_without_test_rejected() {
    let dir = TempDir::new().unwrap();
    let train = write(dir.path(), "site_train.csv", "1,2,0\n3,4,1\n");

    let error = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::MissingPartner { path, partner } => {
            assert_eq!(path, &train);
            assert_eq!(partner, &dir.path().join("site_test.csv"));
        }
        other => panic!("expected MissingPartner, got {other:?}"),
    }
    assert!(error.to_string().contains("site_test.csv"), "{error}");
}

#[test]
fn test_without_train_rejected() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "site_test.csv", "1,2,0\n3,4,1\n");

    let error = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::MissingPartner { partner, .. } => {
            assert_eq!(partner, &dir.path().join("site_train.csv"));
        }
        other => panic!("expected MissingPartner, got {other:?}"),
    }
}

#[test]
fn duplicate_hospital_name_rejected() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "site.csv", "1,2,0\n3,4,1\n");
    write(dir.path(), "site.data", "1,2,0\n3,4,1\n");

    let error = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::DuplicateHospital {
            name,
            first,
            second,
        } => {
            assert_eq!(name, "site");
            assert_eq!(first, &dir.path().join("site.csv"));
            assert_eq!(second, &dir.path().join("site.data"));
        }
        other => panic!("expected DuplicateHospital, got {other:?}"),
    }
}

#[test]
fn same_file_twice_rejected() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "site.csv", "1,2,0\n3,4,1\n");

    let error = load(&[path.clone(), path.clone()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::RepeatedPath {
            path: reported,
            first,
        } => {
            assert_eq!(reported, &path);
            assert_eq!(first, &path);
        }
        other => panic!("expected RepeatedPath, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("site.csv is given twice"), "{message}");
    assert!(message.contains("pass it once"), "{message}");
    assert!(!message.contains("rename"), "{message}");
}

#[test]
fn same_folder_twice_rejected() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "site.csv", "1,2,0\n3,4,1\n");
    let folder = dir.path().to_path_buf();

    let error = load(&[folder.clone(), folder.clone()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::RepeatedPath { path, .. } => assert_eq!(path, &folder),
        other => panic!("expected RepeatedPath, got {other:?}"),
    }
    assert!(error.to_string().contains("is given twice"), "{error}");
}

#[test]
fn same_file_two_spellings_rejected() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "site.csv", "1,2,0\n3,4,1\n");
    let other_spelling = dir.path().join(".").join("site.csv");

    let error = load(
        &[path.clone(), other_spelling.clone()],
        &CsvOptions::default(),
    )
    .unwrap_err();

    match &error {
        DataError::RepeatedPath {
            path: reported,
            first,
        } => {
            assert_eq!(reported, &other_spelling);
            assert_eq!(first, &path);
        }
        other => panic!("expected RepeatedPath, got {other:?}"),
    }
    assert!(
        error.to_string().contains("the same file or folder"),
        "{error}"
    );
}

#[test]
fn file_inside_given_folder_rejected() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "site.csv", "1,2,0\n3,4,1\n");
    let folder = dir.path().to_path_buf();

    let error = load(&[folder.clone(), path.clone()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::RepeatedFile {
            path: reported,
            first,
            second,
        } => {
            assert_eq!(reported, &path);
            assert_eq!(first, &folder);
            assert_eq!(second, &path);
        }
        other => panic!("expected RepeatedFile, got {other:?}"),
    }
    assert!(error.to_string().contains("pass it once"), "{error}");
}

#[test]
fn folder_without_data_files_rejected() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "README.md", "nothing here\n");

    let error = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::NoInputFiles { path } => assert_eq!(path, dir.path()),
        other => panic!("expected NoInputFiles, got {other:?}"),
    }
}

#[test]
fn missing_path_rejected() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("absent.csv");

    let error = load(std::slice::from_ref(&path), &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::NotFound { path: reported } => assert_eq!(reported, &path),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(error.to_string().contains("absent.csv"), "{error}");
}

#[test]
fn no_paths_rejected() {
    let error = load(&[], &CsvOptions::default()).unwrap_err();

    assert!(matches!(error, DataError::NoPaths), "{error:?}");
}

#[test]
fn invalid_test_fraction_rejected() {
    for fraction in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
        let options = CsvOptions {
            test_fraction: fraction,
            ..CsvOptions::default()
        };
        let error = load_text("1,2,0\n3,4,1\n", &options).unwrap_err();

        assert!(
            matches!(error, DataError::InvalidTestFraction { .. }),
            "fraction {fraction}: {error:?}"
        );
    }
}

// Splitting.

#[test]
fn split_is_seeded() {
    let text: String = (0..30).map(|i| format!("{i},{}\n", i % 2)).collect();
    let options = |seed| CsvOptions {
        seed,
        ..CsvOptions::default()
    };

    let first = load_text(&text, &options(1)).unwrap();
    let again = load_text(&text, &options(1)).unwrap();
    let other = load_text(&text, &options(2)).unwrap();

    assert_eq!(first, again);
    assert_ne!(first.hospitals[0].test, other.hospitals[0].test);
    assert_eq!(first.hospitals[0].test.len(), 6);
    assert_eq!(first.hospitals[0].train.len(), 24);
}

#[test]
fn hospitals_split_with_own_seeds() {
    let dir = TempDir::new().unwrap();
    let text: String = (0..30).map(|i| format!("{i},{}\n", i % 2)).collect();
    write(dir.path(), "a.csv", &text);
    write(dir.path(), "b.csv", &text);

    let source = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap();

    assert_ne!(source.hospitals[0].test, source.hospitals[1].test);
}

#[test]
fn split_ignores_other_files() {
    let dir = TempDir::new().unwrap();
    let text: String = (0..30).map(|i| format!("{i},{}\n", i % 2)).collect();
    let a = write(dir.path(), "a.csv", &text);
    let b = write(dir.path(), "b.csv", &text);
    let options = CsvOptions {
        seed: 7,
        ..CsvOptions::default()
    };
    let hospital_a = |paths: &[PathBuf]| {
        let source = load(paths, &options).unwrap();
        let hospital = source.hospitals.iter().find(|h| h.name == "a").unwrap();
        hospital.clone()
    };

    let alone = hospital_a(std::slice::from_ref(&a));
    let first = hospital_a(&[a.clone(), b.clone()]);
    let second = hospital_a(&[b, a]);

    assert_eq!(first, alone);
    assert_eq!(second, alone);
}

#[test]
fn one_row_hospital_rejected() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "tiny.csv", "1,2,1\n");

    let error = load(std::slice::from_ref(&path), &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::TooFewRows {
            name,
            path: reported,
            rows,
            min_rows,
            ..
        } => {
            assert_eq!(name, "tiny");
            assert_eq!(reported, &path);
            assert_eq!(*rows, 1);
            assert_eq!(*min_rows, 2);
        }
        other => panic!("expected TooFewRows, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("has 1 row,"), "{message}");
    assert!(message.contains("at least 2 rows"), "{message}");
}

#[test]
fn too_few_rows_at_large_fraction() {
    let options = CsvOptions {
        test_fraction: 0.75,
        ..CsvOptions::default()
    };

    let error = load_text("1,0\n2,1\n3,0\n", &options).unwrap_err();

    match error {
        DataError::TooFewRows { rows, min_rows, .. } => {
            assert_eq!(rows, 3);
            assert_eq!(min_rows, 4);
        }
        other => panic!("expected TooFewRows, got {other:?}"),
    }
    assert!(load_text("1,0\n2,1\n3,0\n4,1\n", &options).is_ok());
}

// Parsing.

#[test]
fn marker_gives_nan_and_count() {
    let source = load_text("1, ? ,0\n?,4,1\n5,6,1\n", &with_marker("?")).unwrap();
    let (rows, _) = all_rows(&source.hospitals[0]);

    assert_eq!(source.missing, vec![2]);
    assert_eq!(rows.iter().flatten().filter(|x| x.is_nan()).count(), 2);
}

#[test]
fn numbers_parse_exactly() {
    let options = CsvOptions {
        test_fraction: 0.5,
        ..CsvOptions::default()
    };
    let source = load_text(" .7 ,-.1,1e-3,0\n0.1,+2,3.,1\n", &options).unwrap();
    let (mut rows, _) = all_rows(&source.hospitals[0]);
    rows.sort_by(|a, b| a[0].total_cmp(&b[0]));

    assert_eq!(rows[0], vec![0.1, 2.0, 3.0]);
    assert_eq!(rows[1], vec![0.7, -0.1, 0.001]);
}

#[test]
fn labels_nonzero_are_positive() {
    let text = "1,0\n2,2\n3,-1\n4,0.0\n5,0.5\n6,1\n7,-0\n";
    let options = CsvOptions {
        test_fraction: 0.5,
        ..CsvOptions::default()
    };
    let source = load_text(text, &options).unwrap();
    let (rows, labels) = all_rows(&source.hospitals[0]);

    let mut pairs: Vec<(i64, u8)> = rows
        .iter()
        .zip(labels)
        .map(|(row, label)| (row[0] as i64, label))
        .collect();
    pairs.sort_unstable();
    assert_eq!(
        pairs,
        vec![(1, 0), (2, 1), (3, 1), (4, 0), (5, 1), (6, 1), (7, 0)]
    );
}

#[test]
fn label_index_selects_column() {
    let options = CsvOptions {
        label: LabelColumn::Index(0),
        test_fraction: 0.5,
        ..CsvOptions::default()
    };
    let source = load_text("1,10,20\n0,30,40\n", &options).unwrap();
    let (mut rows, labels) = all_rows(&source.hospitals[0]);
    rows.sort_by(|a, b| a[0].total_cmp(&b[0]));

    assert_eq!(rows, vec![vec![10.0, 20.0], vec![30.0, 40.0]]);
    assert_eq!(labels.iter().map(|&l| l as usize).sum::<usize>(), 1);
}

#[test]
fn label_name_selects_column() {
    let options = CsvOptions {
        header: true,
        label: LabelColumn::Name("target".to_owned()),
        ..CsvOptions::default()
    };
    let source = load_text("age, target ,bp\n50,1,120\n60,0,130\n", &options).unwrap();

    assert_eq!(source.feature_names, vec!["age", "bp"]);
    let (rows, _) = all_rows(&source.hospitals[0]);
    assert!(rows.contains(&vec![50.0, 120.0]));
}

#[test]
fn whitespace_lines_skipped() {
    let text = "1,2,0\n   \n3,4,1\n \t\n";

    let source = load_text(text, &CsvOptions::default()).unwrap();

    let (rows, _) = all_rows(&source.hospitals[0]);
    assert_eq!(rows.len(), 2);
}

#[test]
fn values_at_magnitude_limit_load() {
    let options = CsvOptions {
        test_fraction: 0.5,
        ..CsvOptions::default()
    };

    let source = load_text("1e100,0\n-1e100,1\n", &options).unwrap();

    let (rows, _) = all_rows(&source.hospitals[0]);
    assert!(rows.contains(&vec![MAX_ABS_VALUE]));
    assert!(rows.contains(&vec![-MAX_ABS_VALUE]));
}

#[test]
fn huge_label_is_positive() {
    let options = CsvOptions {
        test_fraction: 0.5,
        ..CsvOptions::default()
    };

    let source = load_text("1,1e200\n2,0\n", &options).unwrap();

    let (_, labels) = all_rows(&source.hospitals[0]);
    assert_eq!(labels.iter().filter(|&&label| label == 1).count(), 1);
}

#[test]
fn other_delimiter_and_line_endings() {
    let options = CsvOptions {
        delimiter: b';',
        ..CsvOptions::default()
    };
    let source = load_text("\u{feff}1;2;0\r\n3;4;1\r\n", &options).unwrap();

    assert_eq!(source.feature_count(), 2);
    let (rows, _) = all_rows(&source.hospitals[0]);
    assert!(rows.contains(&vec![1.0, 2.0]));
}

// Parse errors. Each checks the variant and its position.

#[test]
fn question_mark_without_marker() {
    let error = load_text("1,2,0\n3,?,1\n", &CsvOptions::default()).unwrap_err();

    match error {
        DataError::NonNumeric {
            line,
            column,
            value,
            hint,
            ..
        } => {
            assert_eq!(line, 2);
            assert_eq!(column, 2);
            assert_eq!(value, "?");
            assert_eq!(hint, NonNumericHint::SetMarker);
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
}

#[test]
fn question_mark_message_suggests_marker() {
    let error = load_text("1,2,0\n3,?,1\n", &CsvOptions::default()).unwrap_err();
    let message = error.to_string();

    assert!(message.contains("h.csv, line 2, column 2"), "{message}");
    assert!(message.contains("'?' is not a number"), "{message}");
    assert!(message.contains("--missing '?'"), "{message}");
}

#[test]
fn text_field_with_marker() {
    let error = load_text("1,2,0\n3,4,1\n5,6,1\n7,high,0\n", &with_marker("?")).unwrap_err();

    match &error {
        DataError::NonNumeric {
            line,
            column,
            value,
            hint,
            ..
        } => {
            assert_eq!(*line, 4);
            assert_eq!(*column, 2);
            assert_eq!(value, "high");
            assert_eq!(
                *hint,
                NonNumericHint::Category {
                    marker: Some("?".to_owned())
                }
            );
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("'high' is not a number"), "{message}");
    assert!(message.contains("must be numeric"), "{message}");
    assert!(message.contains("marker '?'"), "{message}");
}

#[test]
fn unmarked_symbol_with_marker() {
    let error = load_text("1,2,0\n3,-,1\n", &with_marker("?")).unwrap_err();

    match &error {
        DataError::NonNumeric { value, hint, .. } => {
            assert_eq!(value, "-");
            assert_eq!(*hint, NonNumericHint::UseMarker("?".to_owned()));
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
}

#[test]
fn category_text_suggests_encoding() {
    let error = load_text("1,2,0\n3,male,1\n", &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::NonNumeric {
            line,
            column,
            value,
            hint,
            ..
        } => {
            assert_eq!((*line, *column), (2, 2));
            assert_eq!(value, "male");
            assert_eq!(*hint, NonNumericHint::Category { marker: None });
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
    let message = error.to_string();
    let encode = message.find("encode categories as numbers such as 0 and 1");
    let marker = message.find("--missing 'male' if 'male' marks a missing value");
    assert!(message.contains("must be numeric"), "{message}");
    assert!(encode.is_some(), "{message}");
    assert!(marker.is_some(), "{message}");
    assert!(encode < marker, "{message}");
}

#[test]
fn marker_like_values_suggest_marker() {
    for value in ["?", "NA", "na", "N/A", "-", "", ".", "NULL", "NaN"] {
        let text = format!("1,2,0\n3,{value},1\n");
        let error = load_text(&text, &CsvOptions::default()).unwrap_err();

        match &error {
            DataError::NonNumeric { hint, .. } => {
                assert_eq!(*hint, NonNumericHint::SetMarker, "{value:?}");
            }
            other => panic!("{value:?}: expected NonNumeric, got {other:?}"),
        }
        let expected = format!("pass --missing '{value}'");
        assert!(error.to_string().contains(&expected), "{error}");
    }
}

#[test]
fn header_row_without_flag() {
    let error = load_text("age,bp,label\n1,2,0\n3,4,1\n", &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::NonNumeric {
            line,
            column,
            value,
            hint,
            ..
        } => {
            assert_eq!(*line, 1);
            assert_eq!(*column, 1);
            assert_eq!(value, "age");
            assert_eq!(*hint, NonNumericHint::HeaderRow);
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
    assert!(error.to_string().contains("--header"), "{error}");
}

#[test]
fn first_row_with_one_number_is_data() {
    let error = load_text("1,x,0\n3,4,1\n", &CsvOptions::default()).unwrap_err();

    match error {
        DataError::NonNumeric { line, hint, .. } => {
            assert_eq!(line, 1);
            assert_eq!(hint, NonNumericHint::Category { marker: None });
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
}

#[test]
fn line_numbers_count_header_and_blanks() {
    let error = load_text("a,b,y\n1,2,0\n\n3,x,1\n", &with_header()).unwrap_err();

    match error {
        DataError::NonNumeric { line, column, .. } => {
            assert_eq!(line, 4);
            assert_eq!(column, 2);
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
}

#[test]
fn line_numbers_with_crlf_and_blanks() {
    let text = "\r\n1,2,0\r\n\r\n\r\n3,4,1\r\n5,x,1\r\n";

    let error = load_text(text, &CsvOptions::default()).unwrap_err();

    match error {
        DataError::NonNumeric { line, column, .. } => {
            assert_eq!(line, 6);
            assert_eq!(column, 2);
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
}

#[test]
fn line_index_counts_breaks() {
    let bytes = b"a\nb\r\nc\rd\n\ne";
    let lines = LineIndex::new(bytes);

    // Offset 8 ends line 4 and offset 9 is the empty line 5, so both move on
    // to the record on line 6.
    let expected = [(0, 1), (2, 2), (5, 3), (7, 4), (8, 6), (9, 6), (10, 6)];
    for (offset, line) in expected {
        assert_eq!(lines.line_of(offset), line, "offset {offset}");
    }
}

#[test]
fn non_finite_text_rejected() {
    for value in ["inf", "-inf", "NaN", "nan", "infinity", "1e400"] {
        let text = format!("1,2,0\n3,{value},1\n");
        let error = load_text(&text, &CsvOptions::default()).unwrap_err();

        match &error {
            DataError::NonNumeric {
                line,
                column,
                value: reported,
                ..
            } => {
                assert_eq!((*line, *column), (2, 2), "{value}");
                assert_eq!(reported, value);
            }
            other => panic!("{value}: expected NonNumeric, got {other:?}"),
        }
        assert!(
            error.to_string().contains("is not a finite number"),
            "{error}"
        );
    }
}

#[test]
fn missing_label_rejected() {
    let error = load_text("1,2,0\n3,4,?\n", &with_marker("?")).unwrap_err();

    match error {
        DataError::MissingLabel { line, column, .. } => {
            assert_eq!(line, 2);
            assert_eq!(column, 3);
        }
        other => panic!("expected MissingLabel, got {other:?}"),
    }
}

#[test]
fn text_label_rejected() {
    let error = load_text("1,2,0\n3,4,yes\n", &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::NonNumeric {
            line, column, hint, ..
        } => {
            assert_eq!((*line, *column), (2, 3));
            assert_eq!(*hint, NonNumericHint::Label);
        }
        other => panic!("expected NonNumeric, got {other:?}"),
    }
    assert!(error.to_string().contains("a label must be 0"), "{error}");
}

#[test]
fn huge_feature_value_rejected() {
    let error = load_text("1,2,0\n3,-2e100,1\n", &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::ValueTooLarge {
            line,
            column,
            value,
            ..
        } => {
            assert_eq!((*line, *column), (2, 2));
            assert_eq!(value, "-2e100");
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("h.csv, line 2, column 2"), "{message}");
    assert!(message.contains("'-2e100'"), "{message}");
    assert!(message.contains("1e100"), "{message}");
    assert!(message.contains("rescale the column"), "{message}");
}

#[test]
fn trailing_delimiter_rejected() {
    let error = load_text("1,2,0,\n3,4,1,\n", &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::TrailingDelimiter {
            line,
            column,
            delimiter,
            ..
        } => {
            assert_eq!((*line, *column), (1, 4));
            assert_eq!(*delimiter, b',');
        }
        other => panic!("expected TrailingDelimiter, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("h.csv, line 1, column 4"), "{message}");
    assert!(message.contains("ends with a ','"), "{message}");
    assert!(message.contains("remove trailing delimiters"), "{message}");
    assert!(!message.contains("is not a number"), "{message}");
}

#[test]
fn trailing_tab_named_in_message() {
    let options = CsvOptions {
        header: true,
        delimiter: b'\t',
        ..CsvOptions::default()
    };

    let error = load_text("a\tb\ty\t\n1\t2\t0\t\n", &options).unwrap_err();

    match &error {
        DataError::TrailingDelimiter { line, column, .. } => {
            assert_eq!((*line, *column), (2, 4));
        }
        other => panic!("expected TrailingDelimiter, got {other:?}"),
    }
    assert!(error.to_string().contains("ends with a tab"), "{error}");
}

#[test]
fn ragged_row_rejected() {
    let error = load_text("1,2,0\n3,4,1\n5,1\n", &CsvOptions::default()).unwrap_err();

    match error {
        DataError::RaggedRow {
            line,
            expected,
            found,
            ..
        } => {
            assert_eq!(line, 3);
            assert_eq!(expected, 3);
            assert_eq!(found, 2);
        }
        other => panic!("expected RaggedRow, got {other:?}"),
    }
}

#[test]
fn empty_file_rejected() {
    let dir = TempDir::new().unwrap();
    let path = write(dir.path(), "blank.csv", "");

    let error = load(std::slice::from_ref(&path), &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::EmptyFile { path: reported } => assert_eq!(reported, &path),
        other => panic!("expected EmptyFile, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("blank.csv has no data rows"), "{message}");
    assert!(message.contains("remove it or add rows"), "{message}");
}

#[test]
fn whitespace_only_file_is_empty() {
    let error = load_text("   \n \t \n\n\u{feff}\n", &CsvOptions::default()).unwrap_err();

    assert!(matches!(error, DataError::EmptyFile { .. }), "{error:?}");
    assert!(error.to_string().contains("has no data rows"), "{error}");
}

#[test]
fn header_only_file_is_empty() {
    let error = load_text("a,b,label\n\n", &with_header()).unwrap_err();

    assert!(matches!(error, DataError::EmptyFile { .. }), "{error:?}");
}

#[test]
fn empty_test_file_of_pair_rejected() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "site_train.csv", "1,2,0\n3,4,1\n");
    let test = write(dir.path(), "site_test.csv", "");

    let error = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::EmptyFile { path } => assert_eq!(path, &test),
        other => panic!("expected EmptyFile, got {other:?}"),
    }
}

#[test]
fn invalid_utf8_rejected() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latin1.csv");
    fs::write(&path, b"1,2,0\n3,\xe9,1\n").unwrap();

    let error = load(std::slice::from_ref(&path), &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::InvalidUtf8 {
            path: reported,
            line,
            column,
        } => {
            assert_eq!(reported, &path);
            assert_eq!((*line, *column), (2, 2));
        }
        other => panic!("expected InvalidUtf8, got {other:?}"),
    }
    assert!(
        error.to_string().contains("save the file as UTF-8"),
        "{error}"
    );
}

#[test]
fn invalid_utf8_position_is_one_based() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latin1.csv");
    fs::write(&path, b"1,2,0\n\n3,4,1\n5,6,1\n7,8,\xe9\n").unwrap();

    let error = load(std::slice::from_ref(&path), &CsvOptions::default()).unwrap_err();

    let message = error.to_string();
    assert!(
        message.contains("latin1.csv, line 5, column 3"),
        "{message}"
    );
    assert!(!message.contains("record"), "{message}");
}

// Column layout errors.

#[test]
fn label_only_file_rejected() {
    let error = load_text("1\n0\n", &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::NoFeatureColumns {
            suggested_delimiter,
            ..
        } => assert_eq!(*suggested_delimiter, None),
        other => panic!("expected NoFeatureColumns, got {other:?}"),
    }
    assert!(error.to_string().contains("check the delimiter"), "{error}");
}

#[test]
fn semicolon_file_suggests_delimiter() {
    let error = load_text("1;2;0\n3;4;1\n", &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::NoFeatureColumns {
            suggested_delimiter,
            ..
        } => assert_eq!(*suggested_delimiter, Some(b';')),
        other => panic!("expected NoFeatureColumns, got {other:?}"),
    }
    assert!(error.to_string().contains("--delimiter ';'"), "{error}");
}

#[test]
fn tab_file_suggests_delimiter() {
    let error = load_text("age\tbp\ty\n1\t2\t0\n", &with_header()).unwrap_err();

    match &error {
        DataError::NoFeatureColumns {
            suggested_delimiter,
            ..
        } => assert_eq!(*suggested_delimiter, Some(b'\t')),
        other => panic!("expected NoFeatureColumns, got {other:?}"),
    }
    assert!(error.to_string().contains("--delimiter tab"), "{error}");
}

#[test]
fn one_field_before_label_index() {
    let options = CsvOptions {
        label: LabelColumn::Index(2),
        ..CsvOptions::default()
    };

    let error = load_text("1;2;0\n3;4;1\n", &options).unwrap_err();

    assert!(
        matches!(
            error,
            DataError::NoFeatureColumns {
                suggested_delimiter: Some(b';'),
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn feature_limit_enforced() {
    let row = |features: usize| {
        let mut fields = vec!["1"; features];
        fields.push("0");
        fields.join(",") + "\n"
    };

    let at_limit = load_text(&row(MAX_FEATURES).repeat(2), &CsvOptions::default()).unwrap();
    assert_eq!(at_limit.feature_count(), MAX_FEATURES);

    let error = load_text(&row(MAX_FEATURES + 1).repeat(2), &CsvOptions::default()).unwrap_err();
    match &error {
        DataError::TooManyFeatures { found, .. } => assert_eq!(*found, MAX_FEATURES + 1),
        other => panic!("expected TooManyFeatures, got {other:?}"),
    }
    assert!(error.to_string().contains("maximum is 64"), "{error}");
}

#[test]
fn label_index_out_of_range() {
    let options = CsvOptions {
        label: LabelColumn::Index(3),
        ..CsvOptions::default()
    };

    let error = load_text("1,2,0\n3,4,1\n", &options).unwrap_err();

    match error {
        DataError::LabelIndexOutOfRange { index, fields, .. } => {
            assert_eq!(index, 3);
            assert_eq!(fields, 3);
        }
        other => panic!("expected LabelIndexOutOfRange, got {other:?}"),
    }
}

#[test]
fn label_name_not_in_header() {
    let options = CsvOptions {
        header: true,
        label: LabelColumn::Name("outcome".to_owned()),
        ..CsvOptions::default()
    };

    let error = load_text("age,bp,num\n1,2,0\n3,4,1\n", &options).unwrap_err();

    assert!(
        matches!(&error, DataError::LabelNameNotFound { name, header, .. }
            if name == "outcome" && header == &["age", "bp", "num"]),
        "{error:?}"
    );
    assert!(error.to_string().contains("'age', 'bp', 'num'"), "{error}");
}

#[test]
fn label_name_needs_header() {
    let options = CsvOptions {
        label: LabelColumn::Name("num".to_owned()),
        ..CsvOptions::default()
    };

    let error = load_text("1,2,0\n3,4,1\n", &options).unwrap_err();

    assert!(
        matches!(&error, DataError::LabelNameWithoutHeader { name } if name == "num"),
        "{error:?}"
    );
    assert!(error.to_string().contains("--header"), "{error}");
}

#[test]
fn feature_count_mismatch_names_files() {
    let dir = TempDir::new().unwrap();
    let first = write(dir.path(), "a.csv", "1,2,0\n3,4,1\n");
    let second = write(dir.path(), "b.csv", "1,2,3,0\n3,4,5,1\n");

    let error = load(&[dir.path().to_path_buf()], &CsvOptions::default()).unwrap_err();

    match &error {
        DataError::FeatureCountMismatch {
            path,
            found,
            first: reported_first,
            expected,
        } => {
            assert_eq!(path, &second);
            assert_eq!(*found, 3);
            assert_eq!(reported_first, &first);
            assert_eq!(*expected, 2);
        }
        other => panic!("expected FeatureCountMismatch, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("a.csv") && message.contains("b.csv"),
        "{message}"
    );
}

#[test]
fn header_mismatch_rejected() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.csv", "age,bp,y\n1,2,0\n3,4,1\n");
    let second = write(dir.path(), "b.csv", "bp,age,y\n1,2,0\n3,4,1\n");

    let error = load(&[dir.path().to_path_buf()], &with_header()).unwrap_err();

    match error {
        DataError::HeaderMismatch {
            path,
            column,
            found,
            expected,
            ..
        } => {
            assert_eq!(path, second);
            assert_eq!(column, 1);
            assert_eq!(found, "bp");
            assert_eq!(expected, "age");
        }
        other => panic!("expected HeaderMismatch, got {other:?}"),
    }
}
