//! The JSON report and the plots.

use fedcore_host::compare::{self, CompareConfig, Comparison};
use fedcore_host::{data, json, plot};

fn small_comparison(hospitals: usize, seed: u64) -> Comparison {
    let source = data::builtin_hospitals_n(hospitals, seed, 0.2);
    let config = CompareConfig {
        rounds: 3,
        local_epochs: 1,
        baseline_epochs: 3,
        dropout_rounds: 2,
        dropout_local_epochs: 1,
        seed,
        ..CompareConfig::default()
    };
    compare::run(&source, &config, &mut |_| {}).unwrap()
}

#[test]
fn json_report_matches_comparison() {
    let comparison = small_comparison(3, 2);
    let text = json::render(&comparison);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();

    assert_eq!(value["format"], "fedcore-compare");
    assert_eq!(value["version"], 1);
    assert_eq!(value["seed"], 2);
    assert_eq!(value["config"]["rounds"], 3);
    assert_eq!(value["config"]["moments"], "keep");
    assert_eq!(value["features"]["count"], 20);
    assert_eq!(value["hospitals"].as_array().unwrap().len(), 3);
    assert_eq!(value["hospitals"][0]["train_rows"], 800);
    assert_eq!(value["rounds"]["federated"].as_array().unwrap().len(), 3);
    assert_eq!(
        value["rounds"]["client_dropout"].as_array().unwrap().len(),
        2
    );

    let first = &value["rounds"]["federated"][0]["hospitals"][0];
    assert_eq!(first["status"], "averaged");
    assert_eq!(first["rows"], 800);
    let metrics = comparison.federated_rounds[0].metrics[0].unwrap();
    assert_eq!(first["metrics"]["true_positives"], metrics.true_positives);
    assert_eq!(first["metrics"]["accuracy"], metrics.accuracy().unwrap());

    let overall = &value["final"]["federated"]["overall"];
    let rows: u64 = comparison
        .hospitals
        .iter()
        .map(|h| h.test_rows as u64)
        .sum();
    assert_eq!(overall["rows"], rows);
    assert!(overall["sensitivity"].is_number());
}

#[test]
fn json_report_is_reproducible() {
    let first = json::render(&small_comparison(2, 4));
    assert_eq!(first, json::render(&small_comparison(2, 4)));
    assert_ne!(first, json::render(&small_comparison(2, 5)));
}

#[test]
fn plots_are_written_as_png_and_svg() {
    let comparison = small_comparison(5, 1);
    let folder = tempfile::tempdir().unwrap();

    let png = folder.path().join("compare.png");
    plot::draw(&comparison, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let svg = folder.path().join("compare.SVG");
    plot::draw(&comparison, &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg"), "{}", &text[..100.min(text.len())]);
    assert!(text.contains("federated round"));
    assert!(text.contains("hospital 5"));

    let error = plot::draw(&comparison, &folder.path().join("compare.jpg")).unwrap_err();
    assert!(error.to_string().contains(".png or .svg"), "{error}");
    let error = plot::draw(&comparison, &folder.path().join("missing/compare.png")).unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn five_hospitals_vary_in_size_and_shift() {
    let source = data::builtin_hospitals_n(5, 0, 0.2);
    let sizes: Vec<usize> = source
        .hospitals
        .iter()
        .map(|h| h.train.len() + h.test.len())
        .collect();
    assert_eq!(sizes[..3], [1000, 800, 600]);
    assert_eq!(sizes.len(), 5);
    let comparison = small_comparison(5, 0);
    assert_eq!(comparison.hospitals.len(), 5);
    assert_eq!(comparison.federated_rounds[0].metrics.len(), 5);
}

#[test]
fn saved_model_scores_like_the_final_round() {
    use fedcore_host::evaluate::{self, EvaluateError};

    let source = data::builtin_hospitals_n(3, 6, 0.2);
    let config = CompareConfig {
        rounds: 2,
        local_epochs: 1,
        baseline_epochs: 1,
        dropout_rounds: 1,
        dropout_local_epochs: 1,
        seed: 6,
        ..CompareConfig::default()
    };
    let comparison = compare::run(&source, &config, &mut |_| {}).unwrap();

    // Scoring only the test rows gives the final round's metrics exactly.
    let mut test_only = source.clone();
    for hospital in &mut test_only.hospitals {
        hospital.train = data::Table::default();
    }
    let evaluation = evaluate::evaluate(&comparison.model, &test_only).unwrap();
    assert_eq!(evaluation.rounds, 2);
    assert_eq!(evaluation.features, 20);
    let federated = comparison.federated();
    for (index, (name, metrics)) in evaluation.hospitals.iter().enumerate() {
        assert_eq!(name, &comparison.hospitals[index].name);
        assert_eq!(Some(*metrics), federated[index], "{name}");
    }

    let mut corrupted = comparison.model.clone();
    corrupted[100] ^= 1;
    assert!(matches!(
        evaluate::evaluate(&corrupted, &source),
        Err(EvaluateError::Decode(
            fedcore::wire::DecodeError::Checksum { .. }
        ))
    ));
    let narrow = data::generate_hospitals(1, &[50], &[0.0], 1, 0.2);
    let mut narrow = narrow;
    for hospital in &mut narrow.hospitals {
        for row in hospital
            .train
            .features
            .iter_mut()
            .chain(&mut hospital.test.features)
        {
            row.truncate(5);
        }
    }
    narrow.feature_names.truncate(5);
    assert_eq!(
        evaluate::evaluate(&comparison.model, &narrow).unwrap_err(),
        EvaluateError::FeatureCount { model: 20, data: 5 }
    );
    let mut buffer = [0u8; 64];
    let length = fedcore::wire::encode_stats_request::<20, 64, 32>(&mut buffer, 1).unwrap();
    assert_eq!(
        evaluate::evaluate(&buffer[..length], &source).unwrap_err(),
        EvaluateError::NotAModel(fedcore::wire::FrameKind::StatsRequest)
    );
}
