//! Built-in synthetic hospitals.
//!
//! [`Classification`] follows the algorithm of scikit-learn's
//! `make_classification` with two classes and hypercube centroids. It draws
//! from ChaCha8 instead of NumPy's generator, so it reproduces that
//! function's distribution, not its values.

use super::random::{derive_seed, Random, SeedStream};
use super::split::split;
use super::{default_feature_names, HospitalData, Source, Table, MAX_FEATURES};

/// Patients at each built-in hospital.
pub const BUILTIN_SIZES: [usize; 3] = [1000, 800, 600];

/// Shift added to feature 0 at each built-in hospital, which makes the
/// hospitals' feature distributions differ.
pub const BUILTIN_SHIFTS: [f64; 3] = [2.5, 0.0, -2.5];

/// Settings of a two-class synthetic classification problem.
///
/// The columns are built in this order, then shuffled: informative features,
/// redundant features, repeated features, then noise features.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Total number of features, 1 to [`MAX_FEATURES`].
    pub features: usize,
    /// Features that carry the class signal: each class's clusters sit on
    /// vertices of a hypercube in this space.
    pub informative: usize,
    /// Features that are random linear combinations of the informative ones.
    pub redundant: usize,
    /// Features that copy informative or redundant columns, each chosen
    /// uniformly at random.
    pub repeated: usize,
    /// Gaussian clusters per class.
    pub clusters_per_class: usize,
    /// Half the edge length of the hypercube: centroid coordinates are
    /// `±class_sep`.
    pub class_sep: f64,
    /// Fraction of rows whose label is replaced by a random class (which
    /// leaves about half of them unchanged).
    pub flip_y: f64,
    /// Whether to shuffle the rows and the feature columns.
    pub shuffle: bool,
}

impl Default for Classification {
    /// Returns the settings of the built-in hospitals: 20 features (2
    /// informative, 2 redundant, 16 noise), one cluster per class,
    /// `class_sep` 1, `flip_y` 0.01, shuffled.
    fn default() -> Self {
        Self {
            features: 20,
            informative: 2,
            redundant: 2,
            repeated: 0,
            clusters_per_class: 1,
            class_sep: 1.0,
            flip_y: 0.01,
            shuffle: true,
        }
    }
}

impl Classification {
    /// Generates `rows` labelled rows from `seed`.
    ///
    /// The clusters get `rows / clusters` rows each, and the first
    /// `rows % clusters` clusters one more. Cluster `k` has class `k % 2`, so
    /// with one cluster per class, class 0 gets the odd row. Each cluster's
    /// informative part is a standard normal sample multiplied by its own
    /// random matrix (entries uniform in [-1, 1)) and moved to a distinct
    /// hypercube vertex. Redundant columns multiply the informative part by
    /// one shared random matrix, and noise columns are standard normal.
    /// Finally `flip_y` of the labels are redrawn, and the rows and the
    /// columns are shuffled.
    ///
    /// # Panics
    /// Panics if the settings are inconsistent: no informative feature, more
    /// informative, redundant and repeated columns than `features`, more than
    /// [`MAX_FEATURES`] features, more clusters than hypercube vertices, a
    /// `class_sep` that is not finite, or `flip_y` outside [0, 1].
    pub fn generate(&self, rows: usize, seed: u64) -> Table {
        self.validate();
        let mut random = Random::new(seed);
        let informative = self.informative;
        let clusters = 2 * self.clusters_per_class;

        let centroids = self.hypercube_vertices(&mut random, clusters);
        let mut features: Vec<Vec<f64>> = (0..rows)
            .map(|_| {
                let mut row = vec![0.0; self.features];
                for value in &mut row[..informative] {
                    *value = random.normal();
                }
                row
            })
            .collect();
        let mut labels = vec![0u8; rows];

        // Give every cluster its rows, its covariance and its centroid.
        let mut start = 0;
        for (cluster, centroid) in centroids.iter().enumerate() {
            let size = rows / clusters + usize::from(cluster < rows % clusters);
            let mixing = random_matrix(&mut random, informative, informative);
            for row in start..start + size {
                labels[row] = (cluster % 2) as u8;
                let normal = features[row][..informative].to_vec();
                for (column, value) in features[row][..informative].iter_mut().enumerate() {
                    *value = centroid[column] + dot_column(&normal, &mixing, column);
                }
            }
            start += size;
        }

        let redundant_end = informative + self.redundant;
        let mixing = random_matrix(&mut random, informative, self.redundant);
        for row in &mut features {
            for column in 0..self.redundant {
                row[informative + column] = dot_column(&row[..informative], &mixing, column);
            }
        }

        let repeated_end = redundant_end + self.repeated;
        let sources: Vec<usize> = (0..self.repeated)
            .map(|_| random.below(redundant_end))
            .collect();
        for row in &mut features {
            for (offset, &source) in sources.iter().enumerate() {
                row[redundant_end + offset] = row[source];
            }
        }

        for row in &mut features {
            for value in &mut row[repeated_end..] {
                *value = random.normal();
            }
        }

        for label in &mut labels {
            if random.uniform() < self.flip_y {
                *label = random.below(2) as u8;
            }
        }

        if self.shuffle {
            let mut order: Vec<usize> = (0..rows).collect();
            random.shuffle(&mut order);
            features = order.iter().map(|&row| features[row].clone()).collect();
            labels = order.iter().map(|&row| labels[row]).collect();

            let mut columns: Vec<usize> = (0..self.features).collect();
            random.shuffle(&mut columns);
            for row in &mut features {
                *row = columns.iter().map(|&column| row[column]).collect();
            }
        }

        Table { features, labels }
    }

    fn validate(&self) {
        let special = self.informative + self.redundant + self.repeated;
        assert!(self.informative >= 1, "informative must be at least 1");
        assert!(
            special <= self.features,
            "{special} informative, redundant and repeated features exceed {} features",
            self.features
        );
        assert!(
            (1..=MAX_FEATURES).contains(&self.features),
            "feature count {} is outside 1..={MAX_FEATURES}",
            self.features
        );
        assert!(
            self.clusters_per_class >= 1,
            "clusters_per_class must be at least 1"
        );
        let clusters = 2 * self.clusters_per_class;
        assert!(
            self.informative >= usize::BITS as usize || clusters <= 1 << self.informative,
            "{clusters} clusters need distinct vertices of a {}-dimensional hypercube",
            self.informative
        );
        assert!(self.class_sep.is_finite(), "class_sep must be finite");
        assert!(
            (0.0..=1.0).contains(&self.flip_y),
            "flip_y {} is outside [0, 1]",
            self.flip_y
        );
    }

    /// Draws `count` distinct vertices of the hypercube `[-class_sep,
    /// class_sep]^informative`, rejecting a vertex equal to an earlier one.
    fn hypercube_vertices(&self, random: &mut Random, count: usize) -> Vec<Vec<f64>> {
        let mut vertices: Vec<Vec<f64>> = Vec::with_capacity(count);
        while vertices.len() < count {
            let vertex: Vec<f64> = (0..self.informative)
                .map(|_| {
                    if random.below(2) == 1 {
                        self.class_sep
                    } else {
                        -self.class_sep
                    }
                })
                .collect();
            if !vertices.contains(&vertex) {
                vertices.push(vertex);
            }
        }
        vertices
    }
}

/// Draws a `rows` x `columns` matrix with entries uniform in [-1, 1).
fn random_matrix(random: &mut Random, rows: usize, columns: usize) -> Vec<Vec<f64>> {
    (0..rows)
        .map(|_| (0..columns).map(|_| 2.0 * random.uniform() - 1.0).collect())
        .collect()
}

/// Returns entry `column` of the row vector `vector` times `matrix`.
fn dot_column(vector: &[f64], matrix: &[Vec<f64>], column: usize) -> f64 {
    vector
        .iter()
        .zip(matrix)
        .map(|(value, matrix_row)| value * matrix_row[column])
        .sum()
}

/// Generates the three built-in hospitals.
///
/// They are named "hospital 1" to "hospital 3" and have [`BUILTIN_SIZES`]
/// patients, with feature 0 shifted by [`BUILTIN_SHIFTS`]. Each is split
/// with `test_fraction`; see [`generate_hospitals`] for the seeds.
///
/// # Panics
/// Panics if `test_fraction` is outside [0, 1]. Check a user-supplied
/// fraction with [`check_test_fraction`](super::check_test_fraction) first.
// NOTE: a fraction that passes that check can still leave a hospital without
// training rows (0.999 gives all 600 rows of hospital 3 to its test set).
// This function returns such a split without an error.
pub fn builtin_hospitals(seed: u64, test_fraction: f64) -> Source {
    generate_hospitals(
        BUILTIN_SIZES.len(),
        &BUILTIN_SIZES,
        &BUILTIN_SHIFTS,
        seed,
        test_fraction,
    )
}

/// Maximum number of built-in hospitals.
pub const MAX_BUILTIN_HOSPITALS: usize = 64;

/// Returns the patients per hospital and the feature-0 shifts of `count`
/// built-in hospitals.
///
/// Three hospitals are exactly [`BUILTIN_SIZES`] and [`BUILTIN_SHIFTS`].
/// For any count the shifts spread evenly from +2.5 at the first hospital to
/// −2.5 at the last (0 for one hospital). Sizes start 1000, 800, 600 and
/// then vary between 300 and 1300 patients, as real sites of one network
/// vary.
pub fn builtin_plan(count: usize) -> (Vec<usize>, Vec<f64>) {
    let sizes = (0..count)
        .map(|index| match BUILTIN_SIZES.get(index) {
            Some(&size) => size,
            None => 300 + (index * 7) % 11 * 100,
        })
        .collect();
    let shifts = (0..count)
        .map(|index| {
            if count == 1 {
                0.0
            } else {
                2.5 - 5.0 * index as f64 / (count - 1) as f64
            }
        })
        .collect();
    (sizes, shifts)
}

/// Generates `count` built-in hospitals, laid out by [`builtin_plan`].
/// `count` must be from 1 to [`MAX_BUILTIN_HOSPITALS`].
pub fn builtin_hospitals_n(count: usize, seed: u64, test_fraction: f64) -> Source {
    let (sizes, shifts) = builtin_plan(count);
    generate_hospitals(count, &sizes, &shifts, seed, test_fraction)
}

/// Generates `count` independent hospitals with the default
/// [`Classification`] settings.
///
/// Hospital `i` (0-based) is named "hospital {i + 1}", has `sizes[i]`
/// patients and adds `shifts[i]` to feature 0 of every row. Its generator
/// seed is `derive_seed(seed, SeedStream::Generator, i)` and its split seed
/// is `derive_seed(seed, SeedStream::Split, i)`; see [`derive_seed`]. No
/// values are missing, and the feature names are `f0` to `f19`.
///
/// # Panics
/// Panics if `sizes` or `shifts` does not have `count` entries, or if
/// `test_fraction` is outside [0, 1].
pub fn generate_hospitals(
    count: usize,
    sizes: &[usize],
    shifts: &[f64],
    seed: u64,
    test_fraction: f64,
) -> Source {
    assert_eq!(sizes.len(), count, "one size per hospital");
    assert_eq!(shifts.len(), count, "one shift per hospital");

    let settings = Classification::default();
    let hospitals = (0..count)
        .map(|index| {
            let generator_seed = derive_seed(seed, SeedStream::Generator, index);
            let mut table = settings.generate(sizes[index], generator_seed);
            for row in &mut table.features {
                row[0] += shifts[index];
            }

            let split_seed = derive_seed(seed, SeedStream::Split, index);
            let (train, test) = split(table.features, table.labels, test_fraction, split_seed);
            HospitalData {
                name: format!("hospital {}", index + 1),
                train,
                test,
            }
        })
        .collect();

    Source {
        hospitals,
        feature_names: default_feature_names(settings.features),
        missing: vec![0; count],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns every row and label of a hospital, training rows first.
    fn all_rows(hospital: &HospitalData) -> (Vec<&Vec<f64>>, Vec<u8>) {
        let rows = hospital
            .train
            .features
            .iter()
            .chain(&hospital.test.features)
            .collect();
        let labels = hospital
            .train
            .labels
            .iter()
            .chain(&hospital.test.labels)
            .copied()
            .collect();
        (rows, labels)
    }

    fn mean(values: impl Iterator<Item = f64>) -> f64 {
        let (sum, count) = values.fold((0.0, 0usize), |(sum, count), x| (sum + x, count + 1));
        sum / count as f64
    }

    fn feature_mean(hospital: &HospitalData, column: usize) -> f64 {
        let (rows, _) = all_rows(hospital);
        mean(rows.iter().map(|row| row[column]))
    }

    /// Returns the largest difference of class means over all features,
    /// measured in standard deviations of that feature.
    fn best_separation(hospital: &HospitalData) -> f64 {
        let (rows, labels) = all_rows(hospital);
        let features = rows[0].len();
        (0..features)
            .map(|column| {
                let values: Vec<f64> = rows.iter().map(|row| row[column]).collect();
                let overall = mean(values.iter().copied());
                let variance = mean(values.iter().map(|x| (x - overall).powi(2)));
                let class_mean = |class: u8| {
                    mean(
                        values
                            .iter()
                            .zip(&labels)
                            .filter(|(_, &label)| label == class)
                            .map(|(x, _)| *x),
                    )
                };
                (class_mean(1) - class_mean(0)).abs() / variance.sqrt()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn builtin_plan_keeps_three_and_spreads_more() {
        let (sizes, shifts) = builtin_plan(3);
        assert_eq!(sizes, BUILTIN_SIZES);
        assert_eq!(shifts, BUILTIN_SHIFTS);
        let (sizes, shifts) = builtin_plan(5);
        assert_eq!(sizes[..3], BUILTIN_SIZES);
        assert_eq!(shifts, [2.5, 1.25, 0.0, -1.25, -2.5]);
        let (sizes, _) = builtin_plan(16);
        assert!(
            sizes.iter().all(|&size| (300..=1300).contains(&size)),
            "{sizes:?}"
        );
        let distinct: std::collections::BTreeSet<_> = sizes.iter().collect();
        assert!(distinct.len() >= 8, "{sizes:?}");
        assert_eq!(builtin_plan(1).1, [0.0]);
    }

    #[test]
    fn builtin_sizes_and_names() {
        let source = builtin_hospitals(42, 0.2);

        assert_eq!(source.hospitals.len(), 3);
        assert_eq!(source.missing, vec![0, 0, 0]);
        assert_eq!(source.feature_count(), 20);
        assert_eq!(source.feature_names[0], "f0");
        assert_eq!(source.feature_names[19], "f19");
        let expected = [
            ("hospital 1", 800, 200),
            ("hospital 2", 640, 160),
            ("hospital 3", 480, 120),
        ];
        for (hospital, (name, train, test)) in source.hospitals.iter().zip(expected) {
            assert_eq!(hospital.name, name);
            assert_eq!(hospital.train.len(), train, "{name} training rows");
            assert_eq!(hospital.test.len(), test, "{name} test rows");
        }
    }

    #[test]
    fn builtin_rows_are_valid() {
        let source = builtin_hospitals(42, 0.2);

        for hospital in &source.hospitals {
            for table in [&hospital.train, &hospital.test] {
                assert_eq!(table.features.len(), table.labels.len());
                assert!(table.features.iter().all(|row| row.len() == 20));
                assert!(table.features.iter().flatten().all(|x| x.is_finite()));
                assert!(table.labels.iter().all(|&label| label <= 1));
            }
        }
    }

    #[test]
    fn builtin_labels_roughly_balanced() {
        let source = builtin_hospitals(42, 0.2);

        for hospital in &source.hospitals {
            let (_, labels) = all_rows(hospital);
            let share =
                labels.iter().filter(|&&label| label == 1).count() as f64 / labels.len() as f64;
            assert!(
                (0.45..=0.55).contains(&share),
                "{}: positive share {share}",
                hospital.name
            );
        }
    }

    #[test]
    fn builtin_same_seed_same_values() {
        assert_eq!(builtin_hospitals(42, 0.2), builtin_hospitals(42, 0.2));
    }

    #[test]
    fn builtin_seed_changes_values() {
        let first = builtin_hospitals(42, 0.2);
        let second = builtin_hospitals(43, 0.2);

        for (a, b) in first.hospitals.iter().zip(&second.hospitals) {
            assert_ne!(a.train.features, b.train.features, "{}", a.name);
            assert_ne!(a.test.features, b.test.features, "{}", a.name);
        }
    }

    #[test]
    fn builtin_hospitals_are_independent() {
        let source = builtin_hospitals(42, 0.2);
        let first = &source.hospitals[0].train.features;
        let second = &source.hospitals[1].train.features;

        // Feature 0 is shifted, so compare one of the other columns.
        assert_ne!(first[0][1], second[0][1]);
    }

    /// Feature 0 is a random column of each hospital, and the shift adds to
    /// that column's own mean. For seed 42 that mean is near 0 at all three
    /// hospitals. Over seeds 0 to 299, 46 seeds put an informative or
    /// redundant column there, and its mean closed the gap to as little as
    /// 1.16. `shift_applies_to_every_row` checks the shift for any seed.
    #[test]
    fn builtin_shift_moves_feature_zero() {
        let source = builtin_hospitals(42, 0.2);
        let means: Vec<f64> = source
            .hospitals
            .iter()
            .map(|hospital| feature_mean(hospital, 0))
            .collect();

        assert!(means[0] >= means[1] + 2.0, "feature 0 means {means:?}");
        assert!(means[2] <= means[1] - 2.0, "feature 0 means {means:?}");
    }

    #[test]
    fn shift_applies_to_every_row() {
        let shifted = builtin_hospitals(42, 0.2);
        let unshifted = generate_hospitals(3, &BUILTIN_SIZES, &[0.0; 3], 42, 0.2);

        for (index, shift) in BUILTIN_SHIFTS.iter().enumerate() {
            let moved = &shifted.hospitals[index].train.features;
            let plain = &unshifted.hospitals[index].train.features;
            for (moved_row, plain_row) in moved.iter().zip(plain) {
                assert_eq!(moved_row[0], plain_row[0] + shift);
                assert_eq!(moved_row[1..], plain_row[1..]);
            }
        }
    }

    #[test]
    fn builtin_data_is_learnable() {
        let source = builtin_hospitals(42, 0.2);

        for hospital in &source.hospitals {
            let separation = best_separation(hospital);
            assert!(
                separation > 0.5,
                "{}: best class-mean difference {separation} standard deviations",
                hospital.name
            );
        }
    }

    #[test]
    fn generate_hospitals_takes_count() {
        let source = generate_hospitals(5, &[30, 40, 50, 60, 70], &[0.0; 5], 1, 0.2);

        assert_eq!(source.hospitals.len(), 5);
        assert_eq!(source.missing.len(), 5);
        assert_eq!(source.hospitals[4].name, "hospital 5");
        assert_eq!(source.hospitals[4].train.len(), 56);
        assert_eq!(source.hospitals[4].test.len(), 14);
    }

    /// Settings without flipped labels or shuffling, so the column layout and
    /// the class order are known.
    fn unshuffled() -> Classification {
        Classification {
            flip_y: 0.0,
            shuffle: false,
            ..Classification::default()
        }
    }

    #[test]
    fn classes_balanced_with_odd_row() {
        let table = unshuffled().generate(7, 1);

        assert_eq!(table.labels, vec![0, 0, 0, 0, 1, 1, 1]);
    }

    #[test]
    fn class_means_sit_on_distinct_vertices() {
        let table = unshuffled().generate(20_000, 2);
        let class_mean = |class: u8, column: usize| {
            mean(
                table
                    .features
                    .iter()
                    .zip(&table.labels)
                    .filter(|(_, &label)| label == class)
                    .map(|(row, _)| row[column]),
            )
        };
        let centroids: Vec<[f64; 2]> = (0..2)
            .map(|class| [class_mean(class, 0), class_mean(class, 1)])
            .collect();

        for centroid in &centroids {
            for coordinate in centroid {
                assert!(
                    (coordinate.abs() - 1.0).abs() < 0.1,
                    "class centroids {centroids:?}"
                );
            }
        }
        let distance =
            (centroids[0][0] - centroids[1][0]).abs() + (centroids[0][1] - centroids[1][1]).abs();
        assert!(distance > 1.5, "class centroids {centroids:?}");
    }

    #[test]
    fn redundant_columns_combine_informative() {
        let table = unshuffled().generate(50, 3);
        let rows = &table.features;

        // Solve for the 2 x 2 mixing matrix from the first two rows, then
        // check that it reproduces the redundant columns of every row.
        let determinant = rows[0][0] * rows[1][1] - rows[0][1] * rows[1][0];
        for redundant in 2..4 {
            let weight_0 =
                (rows[0][redundant] * rows[1][1] - rows[1][redundant] * rows[0][1]) / determinant;
            let weight_1 =
                (rows[0][0] * rows[1][redundant] - rows[1][0] * rows[0][redundant]) / determinant;
            for row in rows {
                let predicted = weight_0 * row[0] + weight_1 * row[1];
                assert!(
                    (predicted - row[redundant]).abs() < 1e-9,
                    "column {redundant}: {predicted} vs {}",
                    row[redundant]
                );
            }
        }
    }

    #[test]
    fn repeated_columns_copy_earlier_ones() {
        let settings = Classification {
            repeated: 3,
            ..unshuffled()
        };
        let table = settings.generate(20, 4);

        for repeated in 4..7 {
            let copies_some_column = (0..4).any(|source| {
                table
                    .features
                    .iter()
                    .all(|row| row[repeated] == row[source])
            });
            assert!(copies_some_column, "column {repeated} copies no column");
        }
    }

    #[test]
    fn flip_y_changes_some_labels() {
        let exact = unshuffled().generate(10_000, 5);
        let flipped = Classification {
            flip_y: 0.01,
            ..unshuffled()
        }
        .generate(10_000, 5);

        let changed = exact
            .labels
            .iter()
            .zip(&flipped.labels)
            .filter(|(a, b)| a != b)
            .count();
        // About 1% are redrawn and half of those change: expect about 50.
        assert!((10..=120).contains(&changed), "{changed} labels changed");
    }

    #[test]
    fn shuffle_moves_informative_columns() {
        let table = Classification::default().generate(2_000, 6);
        let labels = &table.labels;
        let separation = |column: usize| {
            let class_mean = |class: u8| {
                mean(
                    table
                        .features
                        .iter()
                        .zip(labels)
                        .filter(|(_, &label)| label == class)
                        .map(|(row, _)| row[column]),
                )
            };
            (class_mean(1) - class_mean(0)).abs()
        };
        let informative_columns: Vec<usize> = (0..20).filter(|&c| separation(c) > 0.3).collect();

        assert!(
            informative_columns.iter().any(|&column| column >= 4),
            "class signal only in columns {informative_columns:?}, where it is built"
        );
        let first_labels = &labels[..20];
        assert!(
            first_labels.windows(2).any(|pair| pair[0] != pair[1]),
            "rows not shuffled"
        );
    }
}
