//! Seeded train/test split of one hospital's rows.

use super::random::Random;
use super::{DataError, Table};

/// Checks a user-supplied test fraction, which must be greater than 0 and
/// less than 1 so that a split can give both sets rows.
///
/// # Errors
/// Returns [`DataError::InvalidTestFraction`] for any other value, NaN
/// included.
pub fn check_test_fraction(test_fraction: f64) -> Result<(), DataError> {
    if test_fraction > 0.0 && test_fraction < 1.0 {
        Ok(())
    } else {
        Err(DataError::InvalidTestFraction {
            value: test_fraction,
        })
    }
}

/// Returns the number of test rows for `rows` rows: `ceil(test_fraction *
/// rows)`, capped at `rows`. scikit-learn's `train_test_split` sizes a
/// fractional test set the same way, so 0.2 of 1000 rows gives 200.
pub fn test_size(rows: usize, test_fraction: f64) -> usize {
    let size = (test_fraction * rows as f64).ceil() as usize;
    size.min(rows)
}

/// Returns the smallest row count that [`split`] divides into at least one
/// training row and one test row at `test_fraction`, which is in (0, 1).
///
/// # Panics
/// Panics if `test_fraction` is not in (0, 1).
pub fn min_rows_to_split(test_fraction: f64) -> usize {
    assert!(
        test_fraction > 0.0 && test_fraction < 1.0,
        "test fraction {test_fraction} is outside (0, 1)"
    );
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

/// Splits rows into a training table and a test table, returned in that
/// order.
///
/// The row indices `0..n` are shuffled with a Fisher–Yates shuffle seeded
/// by `seed`. The first [`test_size`] shuffled indices are the test rows and
/// the rest are the training rows, each kept in shuffled order. The same
/// input and seed always give the same split.
///
/// Either table is empty when the fraction leaves it no rows. For example,
/// one row and any positive fraction give no training rows, so callers that
/// need both tables check their sizes.
///
/// # Panics
/// Panics if `features` and `labels` differ in length, or if
/// `test_fraction` is not in `[0, 1]`.
pub fn split(
    features: Vec<Vec<f64>>,
    labels: Vec<u8>,
    test_fraction: f64,
    seed: u64,
) -> (Table, Table) {
    assert_eq!(
        features.len(),
        labels.len(),
        "every row needs exactly one label"
    );
    assert!(
        (0.0..=1.0).contains(&test_fraction),
        "test fraction {test_fraction} is outside [0, 1]"
    );

    let rows = labels.len();
    let mut order: Vec<usize> = (0..rows).collect();
    Random::new(seed).shuffle(&mut order);
    let test_rows = test_size(rows, test_fraction);

    // Each index appears once in `order`, so every row is taken exactly once.
    let mut slots: Vec<Option<Vec<f64>>> = features.into_iter().map(Some).collect();
    let mut take = |indices: &[usize]| Table {
        features: indices
            .iter()
            .map(|&index| slots[index].take().expect("row taken twice"))
            .collect(),
        labels: indices.iter().map(|&index| labels[index]).collect(),
    };
    let test = take(&order[..test_rows]);
    let train = take(&order[test_rows..]);
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `rows` one-feature rows whose value is the row index, with
    /// labels alternating 0 and 1.
    fn numbered_rows(rows: usize) -> (Vec<Vec<f64>>, Vec<u8>) {
        let features = (0..rows).map(|index| vec![index as f64]).collect();
        let labels = (0..rows).map(|index| (index % 2) as u8).collect();
        (features, labels)
    }

    #[test]
    fn test_fraction_open_interval() {
        for valid in [0.2, 1e-9, 0.999] {
            assert!(check_test_fraction(valid).is_ok(), "{valid}");
        }
        for invalid in [0.0, 1.0, -0.5, 2.0, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(
                    check_test_fraction(invalid),
                    Err(DataError::InvalidTestFraction { .. })
                ),
                "{invalid}"
            );
        }
    }

    #[test]
    fn test_size_rounds_up() {
        assert_eq!(test_size(1000, 0.2), 200);
        assert_eq!(test_size(800, 0.2), 160);
        assert_eq!(test_size(600, 0.2), 120);
        assert_eq!(test_size(303, 0.2), 61);
        assert_eq!(test_size(11, 0.25), 3);
        assert_eq!(test_size(1, 0.2), 1);
        assert_eq!(test_size(5, 0.0), 0);
        assert_eq!(test_size(5, 1.0), 5);
    }

    #[test]
    fn min_rows_matches_split_sizes() {
        for fraction in [0.01, 0.2, 0.5, 0.75, 0.9, 0.999] {
            let min_rows = min_rows_to_split(fraction);
            let splits = |rows: usize| {
                let test_rows = test_size(rows, fraction);
                test_rows >= 1 && test_rows < rows
            };

            assert!(splits(min_rows), "fraction {fraction}: {min_rows} rows");
            assert!(
                !splits(min_rows - 1),
                "fraction {fraction}: {min_rows} rows"
            );
        }
    }

    #[test]
    fn min_rows_for_builtin_fraction() {
        // At 0.999 every hospital smaller than 1000 rows, such as the
        // built-in one of 600, gets no training row.
        assert_eq!(min_rows_to_split(0.999), 1000);
        assert_eq!(min_rows_to_split(0.2), 2);
    }

    #[test]
    fn split_sizes_follow_ceil() {
        for (rows, fraction, expected_test) in [(10, 0.2, 2), (11, 0.2, 3), (123, 0.3, 37)] {
            let (features, labels) = numbered_rows(rows);
            let (train, test) = split(features, labels, fraction, 1);

            assert_eq!(test.len(), expected_test, "{rows} rows at {fraction}");
            assert_eq!(test.features.len(), expected_test);
            assert_eq!(train.len(), rows - expected_test);
            assert_eq!(train.features.len(), rows - expected_test);
        }
    }

    #[test]
    fn split_uses_every_row_once() {
        let (features, labels) = numbered_rows(97);
        let (train, test) = split(features, labels, 0.2, 9);

        let mut seen: Vec<usize> = train
            .features
            .iter()
            .chain(&test.features)
            .map(|row| row[0] as usize)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..97).collect::<Vec<_>>());
    }

    #[test]
    fn split_keeps_labels_with_rows() {
        let (features, labels) = numbered_rows(50);
        let (train, test) = split(features, labels, 0.2, 4);

        for table in [&train, &test] {
            for (row, &label) in table.features.iter().zip(&table.labels) {
                assert_eq!(label, (row[0] as usize % 2) as u8);
            }
        }
    }

    #[test]
    fn split_is_deterministic() {
        let (features, labels) = numbered_rows(40);
        let first = split(features.clone(), labels.clone(), 0.2, 17);
        let second = split(features.clone(), labels.clone(), 0.2, 17);
        let other_seed = split(features, labels, 0.2, 18);

        assert_eq!(first, second);
        assert_ne!(first, other_seed);
    }

    #[test]
    fn split_shuffles_rows() {
        let (features, labels) = numbered_rows(40);
        let (train, _) = split(features, labels, 0.2, 2);

        let values: Vec<f64> = train.features.iter().map(|row| row[0]).collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert_ne!(values, sorted, "training rows kept their file order");
    }
}
