//! Inputs shared by the benchmarks in `benches/`: rows shaped like the
//! built-in hospitals' standardised features, and client updates with the
//! magnitudes of trained weights.
//!
//! Run the benchmarks with `cargo bench -p fedcore-benches`; BENCHMARKS.md
//! at the repository root records their figures.

use fedcore::{model, Dataset, Params, TrainConfig, Trainer};

/// Input features of the default model.
pub const INPUTS: usize = 20;

/// The default 20 → 64 → 32 → 1 model.
pub type Model = Params<INPUTS, 64, 32>;

/// SplitMix64, a small deterministic generator for benchmark inputs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a uniform value in `[-1, 1)`.
    fn symmetric(&mut self) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        2.0 * unit - 1.0
    }

    /// Returns a roughly normal value (a sum of four uniforms, variance 1).
    fn normal(&mut self) -> f32 {
        let sum: f32 = (0..4).map(|_| self.symmetric()).sum();
        sum * 0.866
    }
}

/// Returns `count` rows of standardised features with labels from a noisy
/// linear rule, so that about half the labels are positive.
pub fn rows(count: usize, seed: u64) -> (Vec<[f32; INPUTS]>, Vec<f32>) {
    let mut generator = SplitMix64(seed);
    let mut features = Vec::with_capacity(count);
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let row: [f32; INPUTS] = core::array::from_fn(|_| generator.normal());
        let score = row[0] - 0.7 * row[1] + 0.4 * row[2] + 0.5 * generator.normal();
        features.push(row);
        labels.push(if score > 0.0 { 1.0 } else { 0.0 });
    }
    (features, labels)
}

/// Returns a model trained for two epochs on 400 rows, whose weights have
/// the spread of magnitudes that real updates carry.
pub fn trained_model(seed: u64) -> Model {
    let (features, labels) = rows(400, seed);
    let data = Dataset::new(&features, &labels).expect("generated rows are valid");
    let mut trainer = Trainer::new(TrainConfig::default(), model::glorot_uniform(seed), seed, 1)
        .expect("the default configuration is valid");
    let mut order = vec![0u32; data.len()];
    for _ in 0..2 {
        trainer
            .train_epoch(&data, &mut order)
            .expect("the order buffer fits the rows");
    }
    *trainer.params()
}

/// Returns `count` client updates with their row counts: copies of a few
/// trained models, each parameter moved by a relative step of up to 1%, as
/// clients that started from one global model would send.
pub fn updates(count: usize, seed: u64) -> Vec<(u32, Model)> {
    let bases: Vec<Model> = (0..4).map(|k| trained_model(seed + k)).collect();
    let mut generator = SplitMix64(seed ^ 0x00C0_FFEE);
    (0..count)
        .map(|index| {
            let mut params = bases[index % bases.len()];
            for value in params.iter_mut() {
                *value *= 1.0 + 0.01 * generator.symmetric();
            }
            let rows = 200 + (generator.next_u64() % 1000) as u32;
            (rows, params)
        })
        .collect()
}
