//! The Adam optimizer, in the form Keras 3 implements it.

use crate::params::Params;

/// Adam's hyperparameters. The defaults are Keras' (`keras.optimizers.Adam`).
///
/// They are `f64`, as Keras keeps them as Python floats: Keras computes
/// `1 − β1` in double precision before the step rounds it to `f32`, which
/// gives `0.1f32` where `1.0f32 − 0.9f32` would give `0.100000024`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Step size; Keras' default is 0.001.
    pub learning_rate: f64,
    /// Decay of the first moment; Keras' default is 0.9.
    pub beta1: f64,
    /// Decay of the second moment; Keras' default is 0.999.
    pub beta2: f64,
    /// Added to the root of the second moment; Keras' default is 1e-7.
    pub epsilon: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            learning_rate: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Adam's state: the two moment estimates and the step count.
#[derive(Clone, Debug)]
pub struct Adam<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize> {
    /// First moment (mean of gradients).
    pub m: Params<INPUTS, HIDDEN1, HIDDEN2>,
    /// Second moment (mean of squared gradients).
    pub v: Params<INPUTS, HIDDEN1, HIDDEN2>,
    /// Steps taken so far.
    pub step: u32,
}

impl<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize> Default
    for Adam<INPUTS, HIDDEN1, HIDDEN2>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>
    Adam<INPUTS, HIDDEN1, HIDDEN2>
{
    /// Fresh state: zero moments, no step taken.
    pub const fn new() -> Self {
        Self {
            m: Params::zeros(),
            v: Params::zeros(),
            step: 0,
        }
    }

    /// Forgets the moments and the step count.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Applies one step with gradient `grads` to `params`.
    ///
    /// With `t` the new step count, as Keras computes it:
    /// `α = lr·sqrt(1 − β2^t) / (1 − β1^t)`, `m += (g − m)(1 − β1)`,
    /// `v += (g² − v)(1 − β2)`, `p −= m·α / (sqrt(v) + ε)`.
    pub fn step(
        &mut self,
        config: &AdamConfig,
        params: &mut Params<INPUTS, HIDDEN1, HIDDEN2>,
        grads: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    ) {
        let constants = self.advance(config);
        let tensors = params
            .tensors_mut()
            .into_iter()
            .zip(grads.tensors())
            .zip(self.m.tensors_mut())
            .zip(self.v.tensors_mut());
        for (((param, grad), m), v) in tensors {
            update_tensor(param, grad, m, v, constants);
        }
    }

    /// [`Adam::step`] for gradients whose first kernel is stored unit-major,
    /// as `model::backward_unit_major` accumulates it: the flat storage of
    /// `grads.kernel1` contains `HIDDEN1` rows of `INPUTS` values.
    ///
    /// Each row of the first kernel's gradient is gathered into parameter
    /// order before the update, so every value takes the same operations
    /// as in [`Adam::step`] and the results are the same bits.
    pub(crate) fn step_unit_major(
        &mut self,
        config: &AdamConfig,
        params: &mut Params<INPUTS, HIDDEN1, HIDDEN2>,
        grads: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    ) {
        let constants = self.advance(config);
        let unit_major = grads.kernel1.as_flattened();
        let rows = params
            .kernel1
            .iter_mut()
            .zip(self.m.kernel1.iter_mut())
            .zip(self.v.kernel1.iter_mut());
        for (input, ((param, m), v)) in rows.enumerate() {
            let mut grad = [0.0f32; HIDDEN1];
            for (unit, value) in grad.iter_mut().enumerate() {
                *value = unit_major[unit * INPUTS + input];
            }
            update_tensor(param, &grad, m, v, constants);
        }

        // The other five tensors, in wire order after the first kernel.
        let tensors = params
            .tensors_mut()
            .into_iter()
            .zip(grads.tensors())
            .zip(self.m.tensors_mut())
            .zip(self.v.tensors_mut())
            .skip(1);
        for (((param, grad), m), v) in tensors {
            update_tensor(param, grad, m, v, constants);
        }
    }

    /// Counts one more step and returns the constants of its update:
    /// `[1 − β1, 1 − β2, α, ε]` as `f32`.
    fn advance(&mut self, config: &AdamConfig) -> [f32; 4] {
        self.step = self.step.saturating_add(1);
        // Keras casts the step and the betas to f32 before the powers, and
        // takes the complements of the betas in f64.
        let t = self.step as f32;
        let beta1_power = libm::powf(config.beta1 as f32, t);
        let beta2_power = libm::powf(config.beta2 as f32, t);
        let learning_rate = config.learning_rate as f32;
        let alpha = learning_rate * libm::sqrtf(1.0 - beta2_power) / (1.0 - beta1_power);
        let keep1 = (1.0 - config.beta1) as f32;
        let keep2 = (1.0 - config.beta2) as f32;
        let epsilon = config.epsilon as f32;
        [keep1, keep2, alpha, epsilon]
    }
}

/// Applies Adam's update to one tensor. The slices are cut to one length
/// first so that the loop has no bounds checks and the compiler can
/// vectorise it. Square root and division are correctly rounded in every
/// lane, so vector code gives the same bits as scalar code.
fn update_tensor(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    constants: [f32; 4],
) {
    let [keep1, keep2, alpha, epsilon] = constants;
    let len = param.len().min(grad.len()).min(m.len()).min(v.len());
    let (param, grad, m, v) = (
        &mut param[..len],
        &grad[..len],
        &mut m[..len],
        &mut v[..len],
    );
    for index in 0..len {
        let g = grad[index];
        m[index] += (g - m[index]) * keep1;
        v[index] += (g * g - v[index]) * keep2;
        param[index] -= (m[index] * alpha) / (crate::math::sqrt(v[index]) + epsilon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f32, expected: f64, tolerance: f64) -> bool {
        (f64::from(actual) - expected).abs() <= tolerance
    }

    #[test]
    fn two_steps_match_hand_computation() {
        let config = AdamConfig::default();
        let mut adam = Adam::<1, 1, 1>::new();
        let mut params = Params::<1, 1, 1>::splat(1.0);
        let mut grads = Params::<1, 1, 1>::splat(0.5);

        // Step 1, g = 0.5: m = 0.05, v = 0.00025,
        // α = 0.001·sqrt(0.001)/0.1 = 3.16227766e-4,
        // Δ = 0.05·α / (sqrt(0.00025) + 1e-7) = 9.99993675e-4.
        adam.step(&config, &mut params, &grads);
        assert_eq!(adam.step, 1);
        assert!(close(adam.m.bias3[0], 0.05, 1e-8), "{}", adam.m.bias3[0]);
        assert!(
            close(adam.v.bias3[0], 0.00025, 1e-10),
            "{}",
            adam.v.bias3[0]
        );
        assert!(
            close(params.bias3[0], 1.0 - 9.99993675e-4, 2e-7),
            "{}",
            params.bias3[0]
        );

        // Step 2, g = −0.25: m = 0.045 − 0.025 = 0.02,
        // v = 0.00024975 + 0.0000625 = 0.00031225,
        // α = 0.001·sqrt(1 − 0.998001)/(1 − 0.81) = 2.353167e-4,
        // Δ = 0.02·α / (sqrt(0.00031225) + 1e-7) = 2.663355e-4.
        grads = Params::splat(-0.25);
        adam.step(&config, &mut params, &grads);
        assert!(close(adam.m.bias3[0], 0.02, 1e-8), "{}", adam.m.bias3[0]);
        assert!(
            close(adam.v.bias3[0], 0.00031225, 1e-10),
            "{}",
            adam.v.bias3[0]
        );
        let expected = 1.0 - 9.99993675e-4 - 2.663355e-4;
        assert!(
            close(params.bias3[0], expected, 3e-7),
            "{}",
            params.bias3[0]
        );
    }

    #[test]
    fn zero_gradient_leaves_fresh_params() {
        let config = AdamConfig::default();
        let mut adam = Adam::<2, 3, 2>::new();
        let mut params = Params::<2, 3, 2>::splat(0.25);
        adam.step(&config, &mut params, &Params::zeros());
        assert!(params.iter().all(|&p| p == 0.25));
    }

    #[test]
    fn reset_clears_moments_and_steps() {
        let config = AdamConfig::default();
        let mut adam = Adam::<1, 1, 1>::new();
        let mut params = Params::<1, 1, 1>::splat(1.0);
        adam.step(&config, &mut params, &Params::splat(1.0));
        adam.reset();
        assert_eq!(adam.step, 0);
        assert!(adam.m.iter().chain(adam.v.iter()).all(|&x| x == 0.0));
    }
}
