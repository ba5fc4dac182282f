//! Parameter storage shared by the model, the optimizer, the gradients and
//! the aggregator.
//!
//! [`Layers`] lays out one value per trainable parameter of the
//! `INPUTS → HIDDEN1 → HIDDEN2 → 1` network. With `T = f32` it holds weights,
//! gradients or Adam's moments; the aggregator instantiates it with its own
//! exact accumulator type. Kernels are stored input-major, `kernel[input][output]`,
//! as Keras stores them, so that a forward pass walks each row contiguously.

/// One value of type `T` per parameter of the network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layers<T, const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize> {
    /// First dense kernel, `[input][hidden1]`.
    pub kernel1: [[T; HIDDEN1]; INPUTS],
    /// First dense bias.
    pub bias1: [T; HIDDEN1],
    /// Second dense kernel, `[hidden1][hidden2]`.
    pub kernel2: [[T; HIDDEN2]; HIDDEN1],
    /// Second dense bias.
    pub bias2: [T; HIDDEN2],
    /// Output kernel, one weight per second-layer unit.
    pub kernel3: [T; HIDDEN2],
    /// Output bias (one value, kept as an array so every tensor is a slice).
    pub bias3: [T; 1],
}

/// Model parameters, gradients or optimizer moments as `f32`.
pub type Params<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize> =
    Layers<f32, INPUTS, HIDDEN1, HIDDEN2>;

/// Number of tensors in a [`Layers`] value, in wire and iteration order.
pub const TENSORS: usize = 6;

impl<T: Copy, const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>
    Layers<T, INPUTS, HIDDEN1, HIDDEN2>
{
    /// Number of parameters: 3,457 for the default 20 → 64 → 32 → 1 network.
    pub const COUNT: usize = INPUTS * HIDDEN1 + HIDDEN1 + HIDDEN1 * HIDDEN2 + HIDDEN2 + HIDDEN2 + 1;

    /// Creates a value with every parameter set to `value`.
    pub const fn splat(value: T) -> Self {
        Self {
            kernel1: [[value; HIDDEN1]; INPUTS],
            bias1: [value; HIDDEN1],
            kernel2: [[value; HIDDEN2]; HIDDEN1],
            bias2: [value; HIDDEN2],
            kernel3: [value; HIDDEN2],
            bias3: [value; 1],
        }
    }

    /// Returns the six tensors as flat slices, in wire order.
    pub fn tensors(&self) -> [&[T]; TENSORS] {
        [
            self.kernel1.as_flattened(),
            &self.bias1,
            self.kernel2.as_flattened(),
            &self.bias2,
            &self.kernel3,
            &self.bias3,
        ]
    }

    /// Returns the six tensors as mutable flat slices, in wire order.
    pub fn tensors_mut(&mut self) -> [&mut [T]; TENSORS] {
        [
            self.kernel1.as_flattened_mut(),
            &mut self.bias1,
            self.kernel2.as_flattened_mut(),
            &mut self.bias2,
            &mut self.kernel3,
            &mut self.bias3,
        ]
    }

    /// Iterates over every parameter in wire order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.tensors().into_iter().flatten()
    }

    /// Iterates mutably over every parameter in wire order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.tensors_mut().into_iter().flatten()
    }
}

impl<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>
    Layers<f32, INPUTS, HIDDEN1, HIDDEN2>
{
    /// All-zero parameters.
    pub const fn zeros() -> Self {
        Self::splat(0.0)
    }

    /// Returns the wire-order index of the first NaN or infinite value, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.iter().position(|value| !value.is_finite())
    }

    /// Returns the model's fingerprint: its layer widths.
    pub const fn fingerprint() -> Fingerprint {
        Fingerprint::of::<INPUTS, HIDDEN1, HIDDEN2>()
    }
}

/// The layer widths of a network, carried in every frame so that parameters
/// are never loaded into a model of another shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Input features.
    pub inputs: u16,
    /// Units of the first hidden layer.
    pub hidden1: u16,
    /// Units of the second hidden layer.
    pub hidden2: u16,
}

impl Fingerprint {
    /// Returns the fingerprint of the `INPUTS → HIDDEN1 → HIDDEN2 → 1` network.
    ///
    /// Widths above `u16::MAX` do not fit a microcontroller's memory, so they
    /// are rejected at compile time.
    pub const fn of<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>() -> Self {
        assert!(INPUTS <= u16::MAX as usize);
        assert!(HIDDEN1 <= u16::MAX as usize);
        assert!(HIDDEN2 <= u16::MAX as usize);
        Self {
            inputs: INPUTS as u16,
            hidden1: HIDDEN1 as u16,
            hidden2: HIDDEN2 as u16,
        }
    }
}

impl core::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} → {} → {} → 1",
            self.inputs, self.hidden1, self.hidden2
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_counts() {
        assert_eq!(Params::<20, 64, 32>::COUNT, 3457);
        assert_eq!(core::mem::size_of::<Params<20, 64, 32>>(), 13_828);
        assert_eq!(Params::<20, 64, 32>::zeros().iter().count(), 3457);
    }

    #[test]
    fn tensors_follow_wire_order() {
        let mut params = Params::<2, 3, 2>::zeros();
        for (index, value) in params.iter_mut().enumerate() {
            *value = index as f32;
        }
        assert_eq!(params.kernel1[0], [0.0, 1.0, 2.0]);
        assert_eq!(params.kernel1[1], [3.0, 4.0, 5.0]);
        assert_eq!(params.bias1, [6.0, 7.0, 8.0]);
        assert_eq!(params.kernel2[2], [13.0, 14.0]);
        assert_eq!(params.bias2, [15.0, 16.0]);
        assert_eq!(params.kernel3, [17.0, 18.0]);
        assert_eq!(params.bias3, [19.0]);
    }
}
