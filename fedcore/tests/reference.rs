//! The optimised training code against a plain scalar reference, bit for bit.
//!
//! The reference below is written in the obvious loops, one multiply and one
//! add at a time, in the summation order that fedcore's numeric contract
//! fixes:
//!
//! - a dense layer starts each output at its bias and adds `input · weight`
//!   for every input in index order;
//! - `model::dot` (the output logit and the backward pass into the first
//!   hidden layer) keeps four partial sums. Lane `k` takes the terms whose
//!   index is `k` modulo 4, the lanes combine as `(s0 + s1) + (s2 + s3)`, and
//!   the terms past the last multiple of 4 follow in order;
//! - gradients start at zero and take one sample's terms at a time, in batch
//!   order;
//! - a dropout mask takes one 32-bit draw per unit, first-layer units first.
//!
//! The optimised code skips terms that are exactly zero (inputs that are
//! zero padding, units cut by ReLU or dropout) and vectorises across
//! outputs. Adding an exact zero to a sum that started at `+0.0` leaves it
//! unchanged, so those shortcuts must not change one bit, and these tests
//! check that they do not.

// The reference indexes arrays the way the formulas are written, which is
// the point of a reference.
#![allow(clippy::needless_range_loop)]

use fedcore::adam::{Adam, AdamConfig};
use fedcore::model::{self, Activations, Dropout};
use fedcore::rng::{self, Purpose, Rng};
use fedcore::{Dataset, Params, TrainConfig, Trainer};
use rand_core::RngCore;

// --- The reference ------------------------------------------------------

fn reference_dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let mut partial = [0.0f32; 4];
    let whole = len - len % 4;
    for index in 0..whole {
        partial[index % 4] += a[index] * b[index];
    }
    let mut sum = (partial[0] + partial[1]) + (partial[2] + partial[3]);
    for index in whole..len {
        sum += a[index] * b[index];
    }
    sum
}

fn reference_sigmoid(logit: f32) -> f32 {
    if logit >= 0.0 {
        1.0 / (1.0 + libm::expf(-logit))
    } else {
        let exp = libm::expf(logit);
        exp / (1.0 + exp)
    }
}

fn reference_bce(logit: f32, label: f32) -> f32 {
    let positive_part = if logit > 0.0 { logit } else { 0.0 };
    positive_part - logit * label + libm::log1pf(libm::expf(-logit.abs()))
}

/// Dropout drawn unit by unit with `next_u32`, as the numeric contract
/// describes it.
struct ReferenceDropout {
    threshold: u32,
    scale: f32,
}

impl ReferenceDropout {
    fn new(rate: f32) -> Self {
        Self {
            threshold: libm::round(f64::from(rate) * 4_294_967_296.0) as u32,
            scale: 1.0 / (1.0 - rate),
        }
    }

    fn apply(&self, units: &mut [f32], rng: &mut Rng) {
        for unit in units {
            let draw = rng.next_u32();
            let relu = if *unit > 0.0 { *unit } else { 0.0 };
            *unit = if draw >= self.threshold {
                relu * self.scale
            } else {
                0.0
            };
        }
    }
}

struct ReferencePass<const H1: usize, const H2: usize> {
    hidden1: [f32; H1],
    hidden2: [f32; H2],
    scale: f32,
    logit: f32,
}

fn reference_forward<const I: usize, const H1: usize, const H2: usize>(
    params: &Params<I, H1, H2>,
    input: &[f32; I],
    dropout: Option<(&ReferenceDropout, &mut Rng)>,
) -> ReferencePass<H1, H2> {
    let mut hidden1 = [0.0f32; H1];
    for j in 0..H1 {
        let mut sum = params.bias1[j];
        for i in 0..I {
            sum += input[i] * params.kernel1[i][j];
        }
        hidden1[j] = sum;
    }
    let relu = |units: &mut [f32]| {
        for unit in units {
            *unit = if *unit > 0.0 { *unit } else { 0.0 };
        }
    };

    let mut scale = 1.0;
    let mut hidden2 = [0.0f32; H2];
    let layer2 = |hidden1: &[f32; H1], hidden2: &mut [f32; H2]| {
        for j in 0..H2 {
            let mut sum = params.bias2[j];
            for i in 0..H1 {
                sum += hidden1[i] * params.kernel2[i][j];
            }
            hidden2[j] = sum;
        }
    };
    match dropout {
        Some((dropout, rng)) if dropout.threshold != 0 => {
            scale = dropout.scale;
            dropout.apply(&mut hidden1, rng);
            layer2(&hidden1, &mut hidden2);
            dropout.apply(&mut hidden2, rng);
        }
        _ => {
            relu(&mut hidden1);
            layer2(&hidden1, &mut hidden2);
            relu(&mut hidden2);
        }
    }
    let logit = params.bias3[0] + reference_dot(&hidden2, &params.kernel3);
    ReferencePass {
        hidden1,
        hidden2,
        scale,
        logit,
    }
}

fn reference_backward<const I: usize, const H1: usize, const H2: usize>(
    params: &Params<I, H1, H2>,
    input: &[f32; I],
    pass: &ReferencePass<H1, H2>,
    d_logit: f32,
    grads: &mut Params<I, H1, H2>,
) {
    grads.bias3[0] += d_logit;
    let mut d_hidden2 = [0.0f32; H2];
    for j in 0..H2 {
        grads.kernel3[j] += d_logit * pass.hidden2[j];
        if pass.hidden2[j] > 0.0 {
            d_hidden2[j] = d_logit * params.kernel3[j] * pass.scale;
        }
    }
    for j in 0..H2 {
        grads.bias2[j] += d_hidden2[j];
    }
    let mut d_hidden1 = [0.0f32; H1];
    for i in 0..H1 {
        for j in 0..H2 {
            grads.kernel2[i][j] += pass.hidden1[i] * d_hidden2[j];
        }
        if pass.hidden1[i] > 0.0 {
            d_hidden1[i] = reference_dot(&params.kernel2[i], &d_hidden2) * pass.scale;
        }
    }
    for i in 0..H1 {
        grads.bias1[i] += d_hidden1[i];
    }
    for i in 0..I {
        for j in 0..H1 {
            grads.kernel1[i][j] += input[i] * d_hidden1[j];
        }
    }
}

fn reference_adam<const I: usize, const H1: usize, const H2: usize>(
    config: &AdamConfig,
    step: u32,
    params: &mut Params<I, H1, H2>,
    grads: &Params<I, H1, H2>,
    m: &mut Params<I, H1, H2>,
    v: &mut Params<I, H1, H2>,
) {
    let t = step as f32;
    let beta1_power = libm::powf(config.beta1 as f32, t);
    let beta2_power = libm::powf(config.beta2 as f32, t);
    let alpha = config.learning_rate as f32 * (1.0 - beta2_power).sqrt() / (1.0 - beta1_power);
    let keep1 = (1.0 - config.beta1) as f32;
    let keep2 = (1.0 - config.beta2) as f32;
    let epsilon = config.epsilon as f32;
    let all = params
        .iter_mut()
        .zip(grads.iter())
        .zip(m.iter_mut())
        .zip(v.iter_mut());
    for (((param, &g), m), v) in all {
        *m += (g - *m) * keep1;
        *v += (g * g - *v) * keep2;
        *param -= (*m * alpha) / (v.sqrt() + epsilon);
    }
}

/// Trains `epochs` epochs the way `Trainer::train_epoch` is specified and
/// returns the parameters, Adam's moments and each epoch's mean loss.
#[allow(clippy::type_complexity)]
fn reference_training<const I: usize, const H1: usize, const H2: usize>(
    config: &TrainConfig,
    initial: &Params<I, H1, H2>,
    seed: u64,
    client: u32,
    features: &[[f32; I]],
    labels: &[f32],
    epochs: usize,
) -> (
    Params<I, H1, H2>,
    Params<I, H1, H2>,
    Params<I, H1, H2>,
    Vec<f32>,
) {
    let dropout = ReferenceDropout::new(config.dropout);
    let mut dropout_rng = rng::stream(seed, Purpose::Dropout, client);
    let mut shuffle_rng = rng::stream(seed, Purpose::Shuffle, client);
    let mut params = *initial;
    let mut m = Params::zeros();
    let mut v = Params::zeros();
    let mut step = 0;
    let mut losses = Vec::new();
    for _ in 0..epochs {
        let mut order: Vec<u32> = (0..features.len() as u32).collect();
        rng::shuffle(&mut shuffle_rng, &mut order);
        let mut epoch_loss = 0.0f64;
        for batch in order.chunks(config.batch_size as usize) {
            let mut grads = Params::zeros();
            let mut batch_loss = 0.0f32;
            let inverse_size = 1.0 / batch.len() as f32;
            for &row in batch {
                let input = &features[row as usize];
                let label = labels[row as usize];
                let pass = reference_forward(&params, input, Some((&dropout, &mut dropout_rng)));
                batch_loss += reference_bce(pass.logit, label);
                let d_logit = (reference_sigmoid(pass.logit) - label) * inverse_size;
                reference_backward(&params, input, &pass, d_logit, &mut grads);
            }
            step += 1;
            reference_adam(&config.adam, step, &mut params, &grads, &mut m, &mut v);
            epoch_loss += f64::from(batch_loss);
        }
        losses.push((epoch_loss / features.len() as f64) as f32);
    }
    (params, m, v, losses)
}

// --- Test data ----------------------------------------------------------

/// SplitMix64, a small deterministic generator for test data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Returns a value in `[-spread, spread)`.
    fn symmetric(&mut self, spread: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * spread
    }
}

/// Rows of `active` standard-looking features followed by zero padding,
/// with labels from a noisy linear rule so that training has work to do.
fn rows<const I: usize>(count: usize, active: usize, seed: u64) -> (Vec<[f32; I]>, Vec<f32>) {
    let mut generator = SplitMix64(seed);
    let mut features = Vec::with_capacity(count);
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let mut row = [0.0f32; I];
        for value in row.iter_mut().take(active) {
            *value = generator.symmetric(2.5);
        }
        let score = row[0] - 0.5 * row[active.min(I) - 1] + generator.symmetric(0.5);
        features.push(row);
        labels.push(if score > 0.0 { 1.0 } else { 0.0 });
    }
    (features, labels)
}

/// Parameters with every bias non-zero, so no test passes only because a
/// bias is zero.
fn params_with_biases<const I: usize, const H1: usize, const H2: usize>(
    seed: u64,
    active: usize,
) -> Params<I, H1, H2> {
    let mut params = model::glorot_uniform_padded(seed, active);
    let mut generator = SplitMix64(seed ^ 0xB1A5);
    for bias in params
        .bias1
        .iter_mut()
        .chain(&mut params.bias2)
        .chain(&mut params.bias3)
    {
        *bias = generator.symmetric(0.2);
    }
    params
}

fn bits<const I: usize, const H1: usize, const H2: usize>(params: &Params<I, H1, H2>) -> Vec<u32> {
    params.iter().map(|value| value.to_bits()).collect()
}

fn slice_bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|value| value.to_bits()).collect()
}

// --- Checks -------------------------------------------------------------

/// Runs forward and backward for every row through both implementations,
/// with and without dropout, and compares logits, activations and the
/// accumulated gradients bit for bit.
fn check_passes<const I: usize, const H1: usize, const H2: usize>(active: usize, seed: u64) {
    let params: Params<I, H1, H2> = params_with_biases(seed, active);
    let (features, labels) = rows::<I>(40, active, seed + 1);
    for rate in [0.0f32, 0.3, 0.5] {
        let dropout = Dropout::new(rate);
        let reference_dropout = ReferenceDropout::new(rate);
        let mut rng = rng::stream(seed, Purpose::Dropout, 3);
        let mut reference_rng = rng::stream(seed, Purpose::Dropout, 3);
        let mut grads = Params::<I, H1, H2>::zeros();
        let mut reference_grads = Params::<I, H1, H2>::zeros();
        let mut activations = Activations::new();
        for (row, (input, &label)) in features.iter().zip(&labels).enumerate() {
            let training = row % 3 != 2;
            let logit = if training {
                model::forward(&params, input, Some((&dropout, &mut rng)), &mut activations)
            } else {
                model::forward(&params, input, None, &mut activations)
            };
            let pass = if training {
                reference_forward(
                    &params,
                    input,
                    Some((&reference_dropout, &mut reference_rng)),
                )
            } else {
                reference_forward(&params, input, None)
            };
            let context = format!("{I}-{H1}-{H2}, rate {rate}, row {row}");
            assert_eq!(logit.to_bits(), pass.logit.to_bits(), "logit, {context}");
            assert_eq!(
                slice_bits(&activations.hidden1),
                slice_bits(&pass.hidden1),
                "hidden1, {context}"
            );
            assert_eq!(
                slice_bits(&activations.hidden2),
                slice_bits(&pass.hidden2),
                "hidden2, {context}"
            );

            let d_logit = (model::sigmoid(logit) - label) * 0.25;
            model::backward(&params, input, &activations, d_logit, &mut grads);
            reference_backward(&params, input, &pass, d_logit, &mut reference_grads);
            assert_eq!(bits(&grads), bits(&reference_grads), "gradients, {context}");
        }
    }
}

fn check_training<const I: usize, const H1: usize, const H2: usize>(
    active: usize,
    config: TrainConfig,
    seed: u64,
) {
    let initial: Params<I, H1, H2> = params_with_biases(seed, active);
    let (features, labels) = rows::<I>(90, active, seed + 7);
    let data = Dataset::new(&features, &labels).unwrap();
    let epochs = 3;

    let mut trainer = Trainer::new(config, initial, seed, 4).unwrap();
    let mut order = vec![0u32; data.len()];
    let mut losses = Vec::new();
    for _ in 0..epochs {
        losses.push(trainer.train_epoch(&data, &mut order).unwrap().mean_loss);
    }
    let (params, m, v, reference_losses) =
        reference_training(&config, &initial, seed, 4, &features, &labels, epochs);

    let context = format!("{I}-{H1}-{H2}, {config:?}");
    assert_eq!(
        bits(trainer.params()),
        bits(&params),
        "parameters, {context}"
    );
    assert_eq!(bits(&trainer.adam().m), bits(&m), "first moment, {context}");
    assert_eq!(
        bits(&trainer.adam().v),
        bits(&v),
        "second moment, {context}"
    );
    assert_eq!(
        slice_bits(&losses),
        slice_bits(&reference_losses),
        "losses, {context}"
    );
}

#[test]
fn dot_matches_reference() {
    let mut generator = SplitMix64(17);
    for len in 0..40 {
        let a: Vec<f32> = (0..len).map(|_| generator.symmetric(3.0)).collect();
        let b: Vec<f32> = (0..len).map(|_| generator.symmetric(3.0)).collect();
        assert_eq!(
            model::dot(&a, &b).to_bits(),
            reference_dot(&a, &b).to_bits(),
            "length {len}"
        );
    }
}

#[test]
fn loss_functions_match_reference() {
    let mut logits = vec![0.0f32, -0.0, 1e-30, -1e-30, 88.0, -88.0, 104.0, -104.0];
    let mut generator = SplitMix64(23);
    logits.extend((0..2000).map(|_| generator.symmetric(30.0)));
    for logit in logits {
        assert_eq!(
            model::sigmoid(logit).to_bits(),
            reference_sigmoid(logit).to_bits(),
            "sigmoid({logit})"
        );
        for label in [0.0f32, 1.0] {
            assert_eq!(
                model::bce_with_logit(logit, label).to_bits(),
                reference_bce(logit, label).to_bits(),
                "bce({logit}, {label})"
            );
        }
    }
}

#[test]
fn passes_match_reference_default_model() {
    check_passes::<20, 64, 32>(20, 1);
}

#[test]
fn passes_match_reference_padded_model() {
    // Thirteen features in a 16-input model, as the heart-disease data runs.
    check_passes::<16, 64, 32>(13, 2);
}

#[test]
fn passes_match_reference_odd_widths() {
    // Widths that are not multiples of the vector tiles exercise every tail.
    check_passes::<5, 7, 3>(5, 3);
    check_passes::<3, 4, 2>(3, 4);
    check_passes::<1, 1, 1>(1, 5);
    check_passes::<9, 37, 19>(7, 6);
    check_passes::<24, 96, 40>(24, 7);
}

#[test]
fn adam_matches_reference() {
    let config = AdamConfig::default();
    let mut generator = SplitMix64(31);
    let mut params = params_with_biases::<20, 64, 32>(8, 20);
    let mut reference_params = params;
    let mut adam = Adam::<20, 64, 32>::new();
    let mut m = Params::zeros();
    let mut v = Params::zeros();
    for step in 1..=25 {
        let mut grads = Params::<20, 64, 32>::zeros();
        for (index, grad) in grads.iter_mut().enumerate() {
            // Every seventh gradient is zero, as for a unit cut by ReLU.
            if index % 7 != 0 {
                *grad = generator.symmetric(0.05);
            }
        }
        adam.step(&config, &mut params, &grads);
        reference_adam(&config, step, &mut reference_params, &grads, &mut m, &mut v);
        assert_eq!(bits(&params), bits(&reference_params), "step {step}");
        assert_eq!(bits(&adam.m), bits(&m), "step {step}");
        assert_eq!(bits(&adam.v), bits(&v), "step {step}");
    }
}

#[test]
fn training_matches_reference_default_model() {
    check_training::<20, 64, 32>(20, TrainConfig::default(), 11);
}

#[test]
fn training_matches_reference_other_settings() {
    let odd_batches = TrainConfig {
        batch_size: 7,
        ..TrainConfig::default()
    };
    check_training::<20, 64, 32>(20, odd_batches, 12);
    let no_dropout = TrainConfig {
        dropout: 0.0,
        ..TrainConfig::default()
    };
    check_training::<16, 64, 32>(13, no_dropout, 13);
    let one_row_batches = TrainConfig {
        batch_size: 1,
        dropout: 0.5,
        ..TrainConfig::default()
    };
    check_training::<9, 37, 19>(7, one_row_batches, 14);
}

/// FNV-1a over the parameters' bit patterns.
fn digest<const I: usize, const H1: usize, const H2: usize>(params: &Params<I, H1, H2>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for value in params.iter() {
        for byte in value.to_bits().to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[test]
fn default_training_result_is_pinned() {
    // The digest of the parameters after three epochs on fixed rows. It
    // changes only when a summation order, a generator or a formula changes.
    // Such a change must be deliberate and stated, because every trained
    // model and every report changes with it.
    let (features, labels) = rows::<20>(800, 20, 99);
    let data = Dataset::new(&features, &labels).unwrap();
    let mut trainer: Trainer<20, 64, 32> =
        Trainer::new(TrainConfig::default(), model::glorot_uniform(0), 0, 1).unwrap();
    let mut order = vec![0u32; data.len()];
    for _ in 0..3 {
        trainer.train_epoch(&data, &mut order).unwrap();
    }
    assert_eq!(digest(trainer.params()), 0x690f_8fd9_fd0c_6a8b);
}
