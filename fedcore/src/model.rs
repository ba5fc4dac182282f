//! The network: Glorot initialisation and hand-written forward and backward
//! passes for `INPUTS → HIDDEN1 (ReLU) → dropout → HIDDEN2 (ReLU) → dropout →
//! 1 (sigmoid)`.
//!
//! Every sum runs in an order fixed by this code, and no operation is fused,
//! so the same inputs give the same bits on every target:
//!
//! - a dense layer starts each output at its bias and adds `input · weight`
//!   for the inputs in index order;
//! - [`dot`] keeps four partial sums in a fixed pattern;
//! - gradients start at zero and take one sample's terms at a time.
//!
//! Dense layers are written as "add input times kernel row" loops over the
//! outputs, and the outputs are processed in tiles that stay in registers,
//! so the compiler can vectorise across outputs without reordering any sum.
//!
//! The passes skip every term whose input is exactly zero: zero-padding
//! inputs, and hidden units cut by ReLU or dropout (about two thirds of them
//! in training). Such a term adds `±0.0`, which leaves a sum that started at
//! `+0.0` unchanged, so skipping it gives the same bits as adding it. The
//! one sum that may start at `−0.0` is a pre-activation whose bias is
//! `−0.0`. Skipping may leave it at `−0.0` where adding would give `+0.0`,
//! but ReLU maps both to `+0.0`. `tests/reference.rs` checks the passes against
//! a plain implementation that adds every term. These arguments assume
//! finite parameters: with an infinite weight, `0 · ∞` is NaN where a
//! skipped term is not.

use crate::params::Params;
use rand_core::RngCore;

use crate::rng::{self, Purpose, Rng};

/// Activations of one sample after ReLU and dropout, kept for its backward
/// pass. They are the only per-sample state of training, so memory does not
/// grow with the batch size.
#[derive(Clone, Copy, Debug)]
pub struct Activations<const HIDDEN1: usize, const HIDDEN2: usize> {
    /// First hidden layer after ReLU and dropout.
    pub hidden1: [f32; HIDDEN1],
    /// Second hidden layer after ReLU and dropout.
    pub hidden2: [f32; HIDDEN2],
    /// The inverted-dropout scale applied to kept units (1 in evaluation).
    pub scale: f32,
}

impl<const HIDDEN1: usize, const HIDDEN2: usize> Activations<HIDDEN1, HIDDEN2> {
    /// Zeroed activations.
    pub const fn new() -> Self {
        Self {
            hidden1: [0.0; HIDDEN1],
            hidden2: [0.0; HIDDEN2],
            scale: 1.0,
        }
    }
}

impl<const HIDDEN1: usize, const HIDDEN2: usize> Default for Activations<HIDDEN1, HIDDEN2> {
    fn default() -> Self {
        Self::new()
    }
}

/// Indices of the non-zero inputs and first-layer units of one sample: the
/// rows of the kernels that its passes read.
///
/// Indices are `u16` because [`crate::Fingerprint`] limits every width to
/// `u16::MAX`, which keeps this state at two bytes per unit.
pub(crate) struct NonZero<const INPUTS: usize, const HIDDEN1: usize> {
    inputs: [u16; INPUTS],
    input_count: usize,
    hidden1: [u16; HIDDEN1],
    hidden1_count: usize,
}

impl<const INPUTS: usize, const HIDDEN1: usize> NonZero<INPUTS, HIDDEN1> {
    pub(crate) const fn new() -> Self {
        Self {
            inputs: [0; INPUTS],
            input_count: 0,
            hidden1: [0; HIDDEN1],
            hidden1_count: 0,
        }
    }

    fn inputs(&self) -> &[u16] {
        &self.inputs[..self.input_count]
    }

    fn hidden1(&self) -> &[u16] {
        &self.hidden1[..self.hidden1_count]
    }
}

/// Writes the indices of the non-zero `values` to the front of `indices` and
/// returns their count. A NaN counts as non-zero, so it still spreads.
///
/// Each block of 64 values becomes a bit mask first, and the loop over its
/// set bits has no data-dependent branch but its exit.
fn collect_non_zero(values: &[f32], indices: &mut [u16]) -> usize {
    let mut count = 0;
    for (block_index, block) in values.chunks(64).enumerate() {
        let mut mask = 0u64;
        let mut quads = block.chunks_exact(4);
        for (quad_index, quad) in (&mut quads).enumerate() {
            // Four values become four bits with compares, shifts and ORs,
            // and no branch.
            let bits = u64::from(quad[0] != 0.0)
                | u64::from(quad[1] != 0.0) << 1
                | u64::from(quad[2] != 0.0) << 2
                | u64::from(quad[3] != 0.0) << 3;
            mask |= bits << (4 * quad_index);
        }
        let whole = block.len() - quads.remainder().len();
        for (offset, &value) in quads.remainder().iter().enumerate() {
            mask |= u64::from(value != 0.0) << (whole + offset);
        }
        let base = block_index * 64;
        while mask != 0 {
            let bit = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            // `count` stays below `values.len() <= indices.len()`, and every
            // width fits in u16 (see `NonZero`).
            if let Some(slot) = indices.get_mut(count) {
                *slot = (base + bit) as u16;
            }
            count += 1;
        }
    }
    count
}

/// Inverted dropout: a unit is kept when a 32-bit draw is at least
/// `threshold`, and kept units are multiplied by `scale = 1 / (1 − rate)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    threshold: u32,
    scale: f32,
}

impl Dropout {
    /// Dropout that drops each unit with probability `rate`, in `[0, 1)`.
    ///
    /// The rate is rounded to a multiple of 2^-32.
    pub fn new(rate: f32) -> Self {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 0.999)
        } else {
            0.0
        };
        let threshold = libm::round(f64::from(rate) * 4_294_967_296.0) as u32;
        Self {
            threshold,
            scale: 1.0 / (1.0 - rate),
        }
    }

    /// Returns true when this dropout never drops a unit.
    pub fn is_identity(&self) -> bool {
        self.threshold == 0
    }
}

/// Returns parameters with Keras' default initialisation: Glorot-uniform
/// kernels, limit `sqrt(6 / (fan_in + fan_out))`, and zero biases. Kernels
/// are drawn in wire order from the `Init` stream of `seed`.
pub fn glorot_uniform<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    seed: u64,
) -> Params<INPUTS, HIDDEN1, HIDDEN2> {
    glorot_uniform_padded(seed, INPUTS)
}

/// Returns Glorot-uniform parameters for a model whose first `active`
/// inputs carry data and whose other inputs are always zero padding.
///
/// The kernel rows of padding inputs are zero and the first layer's fan-in
/// is `active`. A zero input adds nothing to the forward pass and gets a
/// zero gradient, which Adam turns into a zero step, so the padded model
/// computes exactly what an `active`-input model with the same draws
/// computes. `active` is clamped to `1..=INPUTS`.
pub fn glorot_uniform_padded<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    seed: u64,
    active: usize,
) -> Params<INPUTS, HIDDEN1, HIDDEN2> {
    let active = active.clamp(1, INPUTS.max(1)).min(INPUTS);
    let mut rng = rng::stream(seed, Purpose::Init, 0);
    let mut params = Params::zeros();
    let kernel1 = &mut params.kernel1.as_flattened_mut()[..active * HIDDEN1];
    fill_glorot(&mut rng, kernel1, active, HIDDEN1);
    fill_glorot(
        &mut rng,
        params.kernel2.as_flattened_mut(),
        HIDDEN1,
        HIDDEN2,
    );
    fill_glorot(&mut rng, &mut params.kernel3, HIDDEN2, 1);
    params
}

fn fill_glorot(rng: &mut Rng, kernel: &mut [f32], fan_in: usize, fan_out: usize) {
    let limit = libm::sqrtf(6.0 / (fan_in + fan_out) as f32);
    for weight in kernel {
        *weight = (2.0 * rng::uniform_f32(rng) - 1.0) * limit;
    }
}

/// Returns the logistic sigmoid of `logit`, computed without overflow.
pub fn sigmoid(logit: f32) -> f32 {
    if logit >= 0.0 {
        1.0 / (1.0 + libm::expf(-logit))
    } else {
        let exp = libm::expf(logit);
        exp / (1.0 + exp)
    }
}

/// Returns the binary cross-entropy of label `label` (0 or 1) for `logit`,
/// as `max(z, 0) − z·y + ln(1 + e^(−|z|))`. It stays finite for every
/// finite logit, where the probability form reaches `ln 0`.
pub fn bce_with_logit(logit: f32, label: f32) -> f32 {
    logit.max(0.0) - logit * label + libm::log1pf(libm::expf(-logit.abs()))
}

/// Returns `(bce_with_logit(logit, label), sigmoid(logit))` with one
/// exponential instead of three.
///
/// Both functions need `e^(−|z|)`: the sigmoid takes `e^(−z)` for `z >= 0`
/// and `e^z` below, which is the same value, so the results are the same
/// bits as the two calls.
pub(crate) fn bce_and_sigmoid(logit: f32, label: f32) -> (f32, f32) {
    let exp = libm::expf(-logit.abs());
    let probability = if logit >= 0.0 {
        1.0 / (1.0 + exp)
    } else {
        exp / (1.0 + exp)
    };
    let loss = logit.max(0.0) - logit * label + libm::log1pf(exp);
    (loss, probability)
}

/// Returns `Σ a[i]·b[i]` summed in four interleaved partial sums combined as
/// `(s0 + s1) + (s2 + s3)`, then the tail in order. The order is part of the
/// numeric contract: every target computes the same bits.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut partial = [0.0f32; 4];
    let mut a_chunks = a.chunks_exact(4);
    let mut b_chunks = b.chunks_exact(4);
    for (x, y) in (&mut a_chunks).zip(&mut b_chunks) {
        for lane in 0..4 {
            partial[lane] += x[lane] * y[lane];
        }
    }
    let mut sum = (partial[0] + partial[1]) + (partial[2] + partial[3]);
    for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        sum += x * y;
    }
    sum
}

/// Returns `[dot(rows[0], vector), …, dot(rows[3], vector)]`, each summed in
/// exactly the order [`dot`] uses, with the four rows' partial sums
/// interleaved so that they do not wait on each other.
fn dot4<const N: usize>(rows: [&[f32; N]; 4], vector: &[f32; N]) -> [f32; 4] {
    let whole = N - N % 4;
    let mut partial = [[0.0f32; 4]; 4];
    for (chunk, start) in vector[..whole].chunks_exact(4).zip((0..whole).step_by(4)) {
        for (sums, row) in partial.iter_mut().zip(&rows) {
            let row = &row[start..start + 4];
            for lane in 0..4 {
                sums[lane] += row[lane] * chunk[lane];
            }
        }
    }
    let mut out = [0.0f32; 4];
    for ((result, sums), row) in out.iter_mut().zip(&partial).zip(&rows) {
        let mut sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
        for (x, y) in row[whole..].iter().zip(&vector[whole..]) {
            sum += x * y;
        }
        *result = sum;
    }
    out
}

/// Runs the forward pass of one sample and returns the output logit.
///
/// With `dropout` set (training), each hidden unit is dropped or scaled with
/// draws from `rng`, `HIDDEN1` draws then `HIDDEN2` draws. Without it
/// (evaluation), no draw is made and the pass is deterministic.
pub fn forward<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    input: &[f32; INPUTS],
    dropout: Option<(&Dropout, &mut Rng)>,
    activations: &mut Activations<HIDDEN1, HIDDEN2>,
) -> f32 {
    forward_sparse(params, input, dropout, activations, &mut NonZero::new())
}

/// [`forward`] that also records which inputs and first-layer units are
/// non-zero, for [`backward_unit_major`].
pub(crate) fn forward_sparse<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    input: &[f32; INPUTS],
    dropout: Option<(&Dropout, &mut Rng)>,
    activations: &mut Activations<HIDDEN1, HIDDEN2>,
    non_zero: &mut NonZero<INPUTS, HIDDEN1>,
) -> f32 {
    non_zero.input_count = collect_non_zero(input, &mut non_zero.inputs);
    let mut hidden1 = params.bias1;
    accumulate_rows(&mut hidden1, &params.kernel1, input, non_zero.inputs());

    let mut hidden2 = params.bias2;
    match dropout {
        Some((dropout, rng)) if !dropout.is_identity() => {
            // A layer's draws are taken in one call: `fill_bytes` consumes
            // the generator's words in the order `next_u32` would, and
            // copies them out in one piece.
            activations.scale = dropout.scale;
            {
                let mut draws = [[0u8; 4]; HIDDEN1];
                rng.fill_bytes(draws.as_flattened_mut());
                relu_dropout(&mut hidden1, dropout, &draws);
            }
            non_zero.hidden1_count = collect_non_zero(&hidden1, &mut non_zero.hidden1);
            accumulate_rows(&mut hidden2, &params.kernel2, &hidden1, non_zero.hidden1());
            {
                let mut draws = [[0u8; 4]; HIDDEN2];
                rng.fill_bytes(draws.as_flattened_mut());
                relu_dropout(&mut hidden2, dropout, &draws);
            }
        }
        _ => {
            activations.scale = 1.0;
            relu(&mut hidden1);
            non_zero.hidden1_count = collect_non_zero(&hidden1, &mut non_zero.hidden1);
            accumulate_rows(&mut hidden2, &params.kernel2, &hidden1, non_zero.hidden1());
            relu(&mut hidden2);
        }
    }

    activations.hidden1 = hidden1;
    activations.hidden2 = hidden2;
    params.bias3[0] + dot(&hidden2, &params.kernel3)
}

/// Output units that [`accumulate_rows`] keeps in registers at once: eight
/// 4-lane SSE registers on x86_64. Where there are fewer registers the
/// compiler spills some, which is slower but computes the same bits.
const TILE: usize = 32;

/// Adds `values[row] · kernel[row]` to `output` for each row in `rows`, in
/// list order.
///
/// Each output takes its terms in the order of `rows`, which is the index
/// order, whatever the tiling. A tile of outputs stays in registers while
/// every row is added, so the outputs are loaded and stored once.
fn accumulate_rows<const OUT: usize>(
    output: &mut [f32; OUT],
    kernel: &[[f32; OUT]],
    values: &[f32],
    rows: &[u16],
) {
    let split = OUT - OUT % TILE;
    let (tiles, tail) = output.split_at_mut(split);
    for (tile_index, tile) in tiles.chunks_exact_mut(TILE).enumerate() {
        let start = tile_index * TILE;
        let mut sum = [0.0f32; TILE];
        sum.copy_from_slice(tile);
        for &row in rows {
            let row = usize::from(row);
            let x = values[row];
            let weights = &kernel[row][start..start + TILE];
            for (unit, &weight) in sum.iter_mut().zip(weights) {
                *unit += x * weight;
            }
        }
        tile.copy_from_slice(&sum);
    }
    if tail.is_empty() {
        return;
    }
    for &row in rows {
        let row = usize::from(row);
        let x = values[row];
        for (unit, &weight) in tail.iter_mut().zip(&kernel[row][split..]) {
            *unit += x * weight;
        }
    }
}

/// Returns `value` if it is positive and `+0.0` otherwise, NaN included.
#[inline(always)]
fn relu_value(value: f32) -> f32 {
    if value > 0.0 {
        value
    } else {
        0.0
    }
}

fn relu(units: &mut [f32]) {
    for unit in units {
        *unit = relu_value(*unit);
    }
}

/// Applies ReLU and dropout to `units`, with one 32-bit little-endian draw
/// per unit in `draws`. The select has no branch, so the compiler can
/// vectorise it.
fn relu_dropout(units: &mut [f32], dropout: &Dropout, draws: &[[u8; 4]]) {
    for (unit, &draw) in units.iter_mut().zip(draws) {
        let kept = relu_value(*unit) * dropout.scale;
        *unit = if u32::from_le_bytes(draw) >= dropout.threshold {
            kept
        } else {
            0.0
        };
    }
}

/// Adds the gradient of one sample's loss to `grads`, given `d_logit`, the
/// derivative of that loss with respect to the output logit.
///
/// A hidden unit passes gradient back only when its stored activation is
/// positive: a dropped unit and a unit cut by ReLU both store zero. That
/// rule avoids keeping a dropout mask; ReLU's derivative at 0 is taken as 0.
pub fn backward<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    input: &[f32; INPUTS],
    activations: &Activations<HIDDEN1, HIDDEN2>,
    d_logit: f32,
    grads: &mut Params<INPUTS, HIDDEN1, HIDDEN2>,
) {
    let mut non_zero = NonZero::new();
    non_zero.input_count = collect_non_zero(input, &mut non_zero.inputs);
    non_zero.hidden1_count = collect_non_zero(&activations.hidden1, &mut non_zero.hidden1);
    let d_hidden1 = backward_hidden(params, activations, d_logit, grads, &non_zero);
    for &index in non_zero.inputs() {
        let index = usize::from(index);
        let x = input[index];
        for (grad, &delta) in grads.kernel1[index].iter_mut().zip(&d_hidden1) {
            *grad += x * delta;
        }
    }
}

/// [`backward`] given the non-zero inputs and first-layer units that
/// [`forward_sparse`] recorded for this sample, with the first kernel's
/// gradient stored unit-major: the flat storage of `grads.kernel1` contains
/// `HIDDEN1` rows of `INPUTS` values, the transpose of the parameters'
/// layout. Only the rows of non-zero units take terms, and each row is
/// contiguous, which makes this the cheapest layout to accumulate.
/// [`crate::adam::Adam`] reads it back in parameter order.
pub(crate) fn backward_unit_major<
    const INPUTS: usize,
    const HIDDEN1: usize,
    const HIDDEN2: usize,
>(
    params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    input: &[f32; INPUTS],
    activations: &Activations<HIDDEN1, HIDDEN2>,
    d_logit: f32,
    grads: &mut Params<INPUTS, HIDDEN1, HIDDEN2>,
    non_zero: &NonZero<INPUTS, HIDDEN1>,
) {
    let d_hidden1 = backward_hidden(params, activations, d_logit, grads, non_zero);
    let kernel1 = grads.kernel1.as_flattened_mut();
    for &unit in non_zero.hidden1() {
        let unit = usize::from(unit);
        let delta = d_hidden1[unit];
        let row = &mut kernel1[unit * INPUTS..(unit + 1) * INPUTS];
        for (grad, &x) in row.iter_mut().zip(input) {
            *grad += x * delta;
        }
    }
}

/// Adds every gradient term but the first kernel's to `grads` and returns
/// the deltas of the first hidden layer.
///
/// Gradient rows of zero first-layer units would only take `±0.0` terms, so
/// they are skipped.
fn backward_hidden<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    activations: &Activations<HIDDEN1, HIDDEN2>,
    d_logit: f32,
    grads: &mut Params<INPUTS, HIDDEN1, HIDDEN2>,
    non_zero: &NonZero<INPUTS, HIDDEN1>,
) -> [f32; HIDDEN1] {
    let scale = activations.scale;

    grads.bias3[0] += d_logit;
    let mut d_hidden2 = [0.0f32; HIDDEN2];
    let second = activations.hidden2.iter().zip(&params.kernel3);
    for ((delta, grad), (&activation, &weight)) in
        d_hidden2.iter_mut().zip(&mut grads.kernel3).zip(second)
    {
        *grad += d_logit * activation;
        *delta = if activation > 0.0 {
            d_logit * weight * scale
        } else {
            0.0
        };
    }
    for (grad, &delta) in grads.bias2.iter_mut().zip(&d_hidden2) {
        *grad += delta;
    }

    // The gradient rows of the second kernel, then the deltas of the first
    // layer, four units at a time so that four dot products run side by side.
    let mut d_hidden1 = [0.0f32; HIDDEN1];
    for &index in non_zero.hidden1() {
        let index = usize::from(index);
        let activation = activations.hidden1[index];
        for (grad, &delta) in grads.kernel2[index].iter_mut().zip(&d_hidden2) {
            *grad += activation * delta;
        }
    }
    let mut groups = non_zero.hidden1().chunks_exact(4);
    for group in &mut groups {
        let units = [group[0], group[1], group[2], group[3]].map(usize::from);
        let rows = units.map(|unit| &params.kernel2[unit]);
        let sums = dot4(rows, &d_hidden2);
        for (&unit, sum) in units.iter().zip(sums) {
            if activations.hidden1[unit] > 0.0 {
                d_hidden1[unit] = sum * scale;
            }
        }
    }
    for &unit in groups.remainder() {
        let unit = usize::from(unit);
        if activations.hidden1[unit] > 0.0 {
            d_hidden1[unit] = dot(&params.kernel2[unit], &d_hidden2) * scale;
        }
    }
    for (grad, &delta) in grads.bias1.iter_mut().zip(&d_hidden1) {
        *grad += delta;
    }
    d_hidden1
}
