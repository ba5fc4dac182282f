//! The network: Glorot initialisation and hand-written forward and backward
//! passes for `INPUTS → HIDDEN1 (ReLU) → dropout → HIDDEN2 (ReLU) → dropout →
//! 1 (sigmoid)`.
//!
//! Every sum runs in an order fixed by this code, and no operation is fused,
//! so the same inputs give the same bits on every target. Dense layers are
//! written as "add input times kernel row" loops over the outputs: each
//! output still sums its inputs in index order, and the compiler can
//! vectorise across outputs without reordering any sum.

use crate::params::Params;
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
    let mut hidden1 = params.bias1;
    for (&x, row) in input.iter().zip(&params.kernel1) {
        for (unit, &weight) in hidden1.iter_mut().zip(row) {
            *unit += x * weight;
        }
    }

    let mut hidden2 = params.bias2;
    match dropout {
        Some((dropout, rng)) if !dropout.is_identity() => {
            activations.scale = dropout.scale;
            relu_dropout(&mut hidden1, dropout, rng);
            dense_accumulate(&hidden1, &params.kernel2, &mut hidden2);
            relu_dropout(&mut hidden2, dropout, rng);
        }
        _ => {
            activations.scale = 1.0;
            relu(&mut hidden1);
            dense_accumulate(&hidden1, &params.kernel2, &mut hidden2);
            relu(&mut hidden2);
        }
    }

    activations.hidden1 = hidden1;
    activations.hidden2 = hidden2;
    params.bias3[0] + dot(&hidden2, &params.kernel3)
}

fn dense_accumulate<const IN: usize, const OUT: usize>(
    input: &[f32; IN],
    kernel: &[[f32; OUT]; IN],
    output: &mut [f32; OUT],
) {
    for (&x, row) in input.iter().zip(kernel) {
        for (unit, &weight) in output.iter_mut().zip(row) {
            *unit += x * weight;
        }
    }
}

fn relu(units: &mut [f32]) {
    for unit in units {
        *unit = unit.max(0.0);
    }
}

/// Applies ReLU and dropout, one 32-bit draw per unit in unit order.
///
/// Draws are taken 16 at a time with `fill_bytes`, which consumes the
/// generator's words in the same order as `next_u32` would, so the masks do
/// not depend on the block size. The select below has no branch, so the
/// compiler can vectorise it.
fn relu_dropout(units: &mut [f32], dropout: &Dropout, rng: &mut Rng) {
    const BLOCK: usize = 16;
    let mut bytes = [0u8; 4 * BLOCK];
    for block in units.chunks_mut(BLOCK) {
        let bytes = &mut bytes[..4 * block.len()];
        rand_core::RngCore::fill_bytes(rng, bytes);
        for (unit, draw) in block.iter_mut().zip(bytes.chunks_exact(4)) {
            let draw = u32::from_le_bytes([draw[0], draw[1], draw[2], draw[3]]);
            let kept = unit.max(0.0) * dropout.scale;
            *unit = if draw >= dropout.threshold { kept } else { 0.0 };
        }
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

    let mut d_hidden1 = [0.0f32; HIDDEN1];
    for (grad, &delta) in grads.bias2.iter_mut().zip(&d_hidden2) {
        *grad += delta;
    }
    for (index, (&activation, row)) in activations.hidden1.iter().zip(&params.kernel2).enumerate() {
        for (grad, &delta) in grads.kernel2[index].iter_mut().zip(&d_hidden2) {
            *grad += activation * delta;
        }
        d_hidden1[index] = if activation > 0.0 {
            dot(row, &d_hidden2) * scale
        } else {
            0.0
        };
    }

    for (grad, &delta) in grads.bias1.iter_mut().zip(&d_hidden1) {
        *grad += delta;
    }
    for (&x, grad_row) in input.iter().zip(&mut grads.kernel1) {
        for (grad, &delta) in grad_row.iter_mut().zip(&d_hidden1) {
            *grad += x * delta;
        }
    }
}
