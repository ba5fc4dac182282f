//! One-pass FedAvg of updates that are all in memory at once.
//!
//! [`average_updates`] gives the same bits as adding every update to a
//! [`FedAvg`](super::FedAvg) and calling `finish`, without FedAvg's 96-byte
//! accumulator per parameter. It sums the parameters over all updates in
//! blocks of [`BLOCK`] kept in registers, or with more than
//! [`REGISTER_UPDATES`] updates in tiles of [`TILE`] kept in 5 KiB of stack,
//! and rounds each mean once.
//!
//! # Fast path
//!
//! Each block sums `rows · value` in a single `f64` per parameter. That sum
//! is exact when a parameter's non-zero values span few binades: with
//! `2^e_min <= |value| < 2^(e_max + 1)` and row total `T <= 2^c`, every term
//! is a multiple of `2^(e_min − 23)` and every partial sum is below
//! `T · 2^(e_max + 1)`. That is at most 53 significant bits, so no addition
//! rounds, when `e_max − e_min <= 29 − c`. The block tracks the smallest and
//! largest magnitude of each parameter with four-lane `f32` compares and
//! tests `largest < smallest · 2^(29 − c)`, which implies that bound.
//!
//! The exact sum times the `f64` nearest `1 / T` is within two roundings of
//! the exact mean, and rounding it to `f32` is correct unless it lies near a
//! halfway point, which [`near_halfway`] tests as `FedAvg::finish` does.
//! That test assumes a normal `f32` mean, so a mean of `f32::MIN_POSITIVE`
//! or less takes the exact path too.
//!
//! # Exact path
//!
//! A parameter that fails any test is summed again in an exact integer sum
//! over all updates and divided by long division, as `FedAvg` does for
//! values outside its window. Zeros, non-finite values and values far apart
//! all fail. The exact path costs far more per parameter, so the one pass
//! pays off for updates whose parameters have similar magnitudes, as trained
//! weights from one global model do.

use core::fmt;
use core::num::NonZeroU32;

use super::{
    near_halfway, AggregateError, AggregateSummary, ExactSum, F64_DIGITS, NORMALISE_AFTER,
};
use crate::params::Params;

/// Parameters that one block sums in registers: eight `f64` sums and eight
/// `f32` minima and maxima fill eight of the sixteen SSE2 registers.
const BLOCK: usize = 8;

/// Number of updates up to which a block's sums stay in registers. With
/// more, the sums stay in a buffer on the stack, and each update's values
/// are read in contiguous runs of [`TILE`] rather than 32 bytes at a time.
/// The value was chosen by timing on one x86-64 machine.
const REGISTER_UPDATES: usize = 8;

/// Parameters summed together when a batch has more than
/// [`REGISTER_UPDATES`] updates: 4 KiB of sums and magnitudes.
const TILE: usize = 256;

/// Largest row total for which `rows · value` is exact in an `f64`.
const FAST_ROWS_MAX: u32 = 1 << 29;

/// Bit pattern of the smallest `f32` above `f32::MIN_POSITIVE`.
const ABOVE_MIN_POSITIVE: u32 = 0x0080_0001;

/// Bit pattern of `f32::INFINITY`.
const INFINITY_BITS: u32 = 0x7F80_0000;

/// Reason why [`average_updates`] rejected a batch of updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchError {
    /// Position in the batch of the first rejected update, or `None` when
    /// the batch is empty.
    pub update: Option<usize>,
    /// Error of that update, or of the empty batch.
    pub reason: AggregateError,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.update {
            Some(position) => write!(f, "batch update {position}: {}", self.reason),
            None => f.write_str(
                "empty batch: there is no mean to write; pass at least one update to average_updates",
            ),
        }
    }
}

impl core::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.reason)
    }
}

/// Writes the row-weighted mean of `updates`, pairs of training rows and
/// parameters, into `out` in one pass.
///
/// The result is bit for bit what [`FedAvg::add`](super::FedAvg::add) of
/// every update and [`FedAvg::finish`](super::FedAvg::finish) give: each
/// parameter correctly rounded to nearest, ties to even, for any order of
/// `updates`. The model shape is fixed by the type, so no fingerprint is
/// checked.
///
/// The batch is rejected as a whole when an update has zero rows, pushes the
/// row total above `u32::MAX` or contains a NaN or infinite parameter. The
/// error names the first such update in slice order and the first of its
/// checks that failed, in the order `FedAvg::add` applies them, or
/// [`AggregateError::NoUpdates`] for an empty slice. Row errors and an empty
/// slice leave `out` untouched. A non-finite value is found during the
/// pass, so after [`AggregateError::NonFinite`] `out` contains an
/// unspecified mix of old and new values. Average into a scratch buffer
/// where the old model must survive a rejected batch.
pub fn average_updates<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    updates: &[(u32, Params<INPUTS, HIDDEN1, HIDDEN2>)],
    out: &mut Params<INPUTS, HIDDEN1, HIDDEN2>,
) -> Result<AggregateSummary, BatchError> {
    let total = check_rows(updates)?;
    let batch = Batch::new(total);

    let finite = batch.average_tensor(
        updates,
        |p| p.kernel1.as_flattened(),
        out.kernel1.as_flattened_mut(),
    ) & batch.average_tensor(updates, |p| &p.bias1, &mut out.bias1)
        & batch.average_tensor(
            updates,
            |p| p.kernel2.as_flattened(),
            out.kernel2.as_flattened_mut(),
        )
        & batch.average_tensor(updates, |p| &p.bias2, &mut out.bias2)
        & batch.average_tensor(updates, |p| &p.kernel3, &mut out.kernel3)
        & batch.average_tensor(updates, |p| &p.bias3, &mut out.bias3);
    if !finite {
        let error = first_non_finite(updates).unwrap_or(BatchError {
            update: None,
            reason: AggregateError::NoUpdates,
        });
        return Err(error);
    }

    // Every update has at least one row, so the count fits a u32 as the
    // row total does.
    Ok(AggregateSummary {
        updates: updates.len() as u32,
        rows: total.get(),
    })
}

/// Returns the row total, or the first row error in slice order. A
/// non-finite value in an update before the one with the row error is
/// reported instead, because `FedAvg::add` would reject that update first.
fn check_rows<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    updates: &[(u32, Params<INPUTS, HIDDEN1, HIDDEN2>)],
) -> Result<NonZeroU32, BatchError> {
    let mut total = 0_u32;
    for (position, &(rows, _)) in updates.iter().enumerate() {
        let reason = if rows == 0 {
            AggregateError::NoRows
        } else if let Some(sum) = total.checked_add(rows) {
            total = sum;
            continue;
        } else {
            AggregateError::RowTotalOverflow { total, rows }
        };
        if let Some(error) = first_non_finite(&updates[..position]) {
            return Err(error);
        }
        return Err(BatchError {
            update: Some(position),
            reason,
        });
    }
    NonZeroU32::new(total).ok_or(BatchError {
        update: None,
        reason: AggregateError::NoUpdates,
    })
}

/// Returns the error for the first NaN or infinite value, by update and
/// then by wire-order index.
fn first_non_finite<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    updates: &[(u32, Params<INPUTS, HIDDEN1, HIDDEN2>)],
) -> Option<BatchError> {
    updates
        .iter()
        .enumerate()
        .find_map(|(position, (_, params))| {
            let index = params.first_non_finite()?;
            let value = params.iter().nth(index).copied().unwrap_or(f32::NAN);
            Some(BatchError {
                update: Some(position),
                reason: AggregateError::NonFinite { index, value },
            })
        })
}

/// Constants of one batch, shared by all of its blocks.
struct Batch {
    total: NonZeroU32,
    /// The `f64` nearest `1 / total`.
    inverse: f64,
    /// `2^(29 − c)` for a row total `T <= 2^c`, the largest ratio of a
    /// parameter's magnitudes for which its `f64` sum is exact. Zero, which
    /// no ratio passes, when the row total exceeds `2^29` or the `f64`
    /// arithmetic of the target is not trusted.
    spread: f32,
}

impl Batch {
    fn new(total: NonZeroU32) -> Self {
        let spread = if F64_DIGITS && total.get() <= FAST_ROWS_MAX {
            // c = ceil(log2(T)), 0 for T = 1.
            let bits = u32::BITS - (total.get() - 1).leading_zeros();
            (1_u32 << (29 - bits)) as f32
        } else {
            0.0
        };
        Self {
            total,
            inverse: 1.0 / f64::from(total.get()),
            spread,
        }
    }

    /// Writes the mean of one tensor into `out` and returns false when a
    /// value of it is NaN or infinite. `values_of` selects the tensor.
    fn average_tensor<P>(
        &self,
        updates: &[(u32, P)],
        values_of: impl Fn(&P) -> &[f32],
        out: &mut [f32],
    ) -> bool {
        if updates.len() > REGISTER_UPDATES {
            return self.average_tensor_tiled(updates, values_of, out);
        }
        let mut finite = true;
        let mut blocks = out.chunks_exact_mut(BLOCK);
        for (block, means) in (&mut blocks).enumerate() {
            let start = block * BLOCK;
            let (rounded, unsettled) = self.average_block(updates, |params| {
                let values = &values_of(params)[start..start + BLOCK];
                values.try_into().expect("a full block")
            });
            means.copy_from_slice(&rounded);
            if unsettled.iter().fold(0, |any, &lane| any | lane) != 0 {
                finite &= self.settle(updates, &values_of, start, means, &unsettled);
            }
        }

        // The last, partial block is padded with zeros, which the fast path
        // leaves unsettled, and only its real lanes are written.
        let tail = blocks.into_remainder();
        if !tail.is_empty() {
            let start = values_len(updates, &values_of) - tail.len();
            let (rounded, unsettled) = self.average_block(updates, |params| {
                let mut block = [0.0; BLOCK];
                for (slot, &value) in block.iter_mut().zip(&values_of(params)[start..]) {
                    *slot = value;
                }
                block
            });
            tail.copy_from_slice(&rounded[..tail.len()]);
            finite &= self.settle(updates, &values_of, start, tail, &unsettled);
        }
        finite
    }

    /// Returns the rounded fast-path means of one block, whose values
    /// `load` returns for each update, and 1 for each of them that is not
    /// settled, 0 for the others.
    #[inline(always)]
    fn average_block<P>(
        &self,
        updates: &[(u32, P)],
        load: impl Fn(&P) -> [f32; BLOCK],
    ) -> ([f32; BLOCK], [u32; BLOCK]) {
        let Some(((rows, first), rest)) = updates.split_first() else {
            return ([0.0; BLOCK], [1; BLOCK]);
        };

        let factor = f64::from(*rows);
        let values = load(first);
        let mut sum = [0.0_f64; BLOCK];
        let mut smallest = [0.0_f32; BLOCK];
        let mut largest = [0.0_f32; BLOCK];
        for lane in 0..BLOCK {
            sum[lane] = factor * f64::from(values[lane]);
            smallest[lane] = values[lane].abs();
            largest[lane] = values[lane].abs();
        }

        for (rows, params) in rest {
            let factor = f64::from(*rows);
            let values = load(params);
            for lane in 0..BLOCK {
                accumulate_lane(
                    &mut sum[lane],
                    &mut smallest[lane],
                    &mut largest[lane],
                    values[lane],
                    factor,
                );
            }
        }

        let mut rounded = [0.0_f32; BLOCK];
        let mut unsettled = [0_u32; BLOCK];
        for lane in 0..BLOCK {
            (rounded[lane], unsettled[lane]) = self.round(sum[lane], smallest[lane], largest[lane]);
        }
        (rounded, unsettled)
    }

    /// Writes the mean of one tensor into `out`, as
    /// [`Batch::average_tensor`] does, for batches of more than
    /// [`REGISTER_UPDATES`] updates.
    fn average_tensor_tiled<P>(
        &self,
        updates: &[(u32, P)],
        values_of: impl Fn(&P) -> &[f32],
        out: &mut [f32],
    ) -> bool {
        // check_rows rejects an empty batch.
        let Some(((rows, first), rest)) = updates.split_first() else {
            return true;
        };
        let mut finite = true;
        let mut sum_buffer = [0.0_f64; TILE];
        let mut smallest_buffer = [0.0_f32; TILE];
        let mut largest_buffer = [0.0_f32; TILE];
        let mut unsettled_buffer = [0_u32; TILE];
        for (tile, means) in out.chunks_mut(TILE).enumerate() {
            let start = tile * TILE;
            let width = means.len();
            let sum = &mut sum_buffer[..width];
            let smallest = &mut smallest_buffer[..width];
            let largest = &mut largest_buffer[..width];
            let unsettled = &mut unsettled_buffer[..width];

            let factor = f64::from(*rows);
            let values = &values_of(first)[start..start + width];
            for lane in 0..width {
                sum[lane] = factor * f64::from(values[lane]);
                smallest[lane] = values[lane].abs();
                largest[lane] = values[lane].abs();
            }
            for (rows, params) in rest {
                let values = &values_of(params)[start..start + width];
                accumulate(sum, smallest, largest, values, f64::from(*rows));
            }

            for lane in 0..width {
                (means[lane], unsettled[lane]) =
                    self.round(sum[lane], smallest[lane], largest[lane]);
            }
            for (lane, mean) in means.iter_mut().enumerate() {
                if unsettled[lane] == 0 {
                    continue;
                }
                match self.exact_mean(updates, &values_of, start + lane) {
                    Some(exact) => *mean = exact,
                    None => finite = false,
                }
            }
        }
        finite
    }

    /// Returns the fast-path mean of one parameter from its sum and the
    /// smallest and largest magnitude of its values, and 1 if it is not
    /// settled, 0 if it is.
    #[inline(always)]
    fn round(&self, sum: f64, smallest: f32, largest: f32) -> (f32, u32) {
        let mean = sum * self.inverse;
        let rounded = mean as f32;
        // A zero smallest magnitude fails here, so zeros, and with them the
        // sign of a zero mean, are left to the exact path.
        let exact = largest < smallest * self.spread;
        // Above f32::MIN_POSITIVE and finite, which also rejects NaN.
        let magnitude = rounded.to_bits() & 0x7FFF_FFFF;
        let normal =
            magnitude.wrapping_sub(ABOVE_MIN_POSITIVE) < INFINITY_BITS - ABOVE_MIN_POSITIVE;
        (rounded, u32::from(!exact | !normal | near_halfway(mean)))
    }

    /// Computes again exactly every mean of `means`, the block from `start`,
    /// that is `unsettled`. Returns false if a value of one of them is NaN
    /// or infinite.
    #[cold]
    #[inline(never)]
    fn settle<P>(
        &self,
        updates: &[(u32, P)],
        values_of: &impl Fn(&P) -> &[f32],
        start: usize,
        means: &mut [f32],
        unsettled: &[u32; BLOCK],
    ) -> bool {
        let mut finite = true;
        for (lane, mean) in means.iter_mut().enumerate() {
            if unsettled[lane] == 0 {
                continue;
            }
            match self.exact_mean(updates, values_of, start + lane) {
                Some(exact) => *mean = exact,
                None => finite = false,
            }
        }
        finite
    }

    /// Returns the exact mean of the parameter at `index` of the selected
    /// tensor, or `None` if a value of it is NaN or infinite.
    fn exact_mean<P>(
        &self,
        updates: &[(u32, P)],
        values_of: &impl Fn(&P) -> &[f32],
        index: usize,
    ) -> Option<f32> {
        let mut sum = ExactSum::ZERO;
        for (count, (rows, params)) in updates.iter().enumerate() {
            let value = values_of(params)[index];
            if !value.is_finite() {
                return None;
            }
            if count > 0 && count % NORMALISE_AFTER as usize == 0 {
                sum.normalise();
            }
            sum.add(*rows, value);
        }
        Some(sum.mean(self.total))
    }
}

/// Adds `factor · value` to `sum` and folds each magnitude into `smallest`
/// and `largest`, lane by lane.
#[inline(always)]
fn accumulate(
    sum: &mut [f64],
    smallest: &mut [f32],
    largest: &mut [f32],
    values: &[f32],
    factor: f64,
) {
    let lanes = sum
        .iter_mut()
        .zip(smallest.iter_mut())
        .zip(largest.iter_mut())
        .zip(values);
    for (((sum, smallest), largest), &value) in lanes {
        accumulate_lane(sum, smallest, largest, value, factor);
    }
}

/// Adds `factor · value` to `sum` and folds its magnitude into `smallest`
/// and `largest`.
#[inline(always)]
fn accumulate_lane(sum: &mut f64, smallest: &mut f32, largest: &mut f32, value: f32, factor: f64) {
    // Written so, with the running value first, the selects compile to
    // `minps` and `maxps` in place. A NaN may be lost here, and the check of
    // the rounded mean catches it.
    let magnitude = value.abs();
    *smallest = if *smallest < magnitude {
        *smallest
    } else {
        magnitude
    };
    *largest = if *largest > magnitude {
        *largest
    } else {
        magnitude
    };
    *sum += factor * f64::from(value);
}

/// Returns the length of the selected tensor.
fn values_len<P>(updates: &[(u32, P)], values_of: &impl Fn(&P) -> &[f32]) -> usize {
    updates
        .first()
        .map_or(0, |(_, params)| values_of(params).len())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::boxed::Box;
    use std::string::ToString;
    use std::vec::Vec;

    use super::super::tests::{assert_correctly_rounded, params_from, Small, SplitMix64, HARD};
    use super::super::FedAvg;
    use super::*;

    type Default = Params<20, 64, 32>;

    /// Returns the bit patterns of the mean that `FedAvg::add` and
    /// `FedAvg::finish` give, the reference for the batch.
    fn streaming_bits<const I: usize, const H1: usize, const H2: usize>(
        updates: &[(u32, Params<I, H1, H2>)],
    ) -> Vec<u32> {
        let mut avg = Box::new(FedAvg::<I, H1, H2>::new());
        for (rows, params) in updates {
            avg.add(Params::<I, H1, H2>::fingerprint(), *rows, params)
                .expect("valid update");
        }
        let mut out = Params::<I, H1, H2>::zeros();
        avg.finish(&mut out).expect("at least one update");
        out.iter().map(|value| value.to_bits()).collect()
    }

    fn batch_bits<const I: usize, const H1: usize, const H2: usize>(
        updates: &[(u32, Params<I, H1, H2>)],
    ) -> Vec<u32> {
        let mut out = Params::<I, H1, H2>::zeros();
        let summary = average_updates(updates, &mut out).expect("valid batch");
        assert_eq!(summary.updates as usize, updates.len());
        assert_eq!(
            summary.rows,
            updates.iter().map(|(rows, _)| rows).sum::<u32>()
        );
        out.iter().map(|value| value.to_bits()).collect()
    }

    /// Counts the parameters that the fast path settles, without the exact
    /// path, so that tests can show they exercise it.
    fn settled_count(updates: &[(u32, Small)]) -> usize {
        let total: u32 = updates.iter().map(|(rows, _)| rows).sum();
        let batch = Batch::new(NonZeroU32::new(total).unwrap());
        let mut count = 0;
        let selectors: [fn(&Small) -> &[f32]; 6] = [
            |p| p.kernel1.as_flattened(),
            |p| &p.bias1,
            |p| p.kernel2.as_flattened(),
            |p| &p.bias2,
            |p| &p.kernel3,
            |p| &p.bias3,
        ];
        for values_of in selectors {
            let len = values_of(&updates[0].1).len();
            for start in (0..len).step_by(BLOCK) {
                let width = (len - start).min(BLOCK);
                let (_, unsettled) = batch.average_block(updates, |params| {
                    let mut block = [0.0; BLOCK];
                    block[..width].copy_from_slice(&values_of(params)[start..start + width]);
                    block
                });
                count += unsettled[..width].iter().filter(|&&lane| lane == 0).count();
            }
        }
        count
    }

    /// Asserts that the batch gives the streaming mean of `updates`, in the
    /// given order and shuffled.
    fn assert_batch_matches_streaming(updates: &mut [(u32, Default)], rng: &mut SplitMix64) {
        let expected = streaming_bits(updates);
        let count = updates.len();
        assert_eq!(batch_bits(updates), expected, "{count} updates");
        rng.shuffle(updates);
        assert_eq!(batch_bits(updates), expected, "{count} updates shuffled");
    }

    /// Returns `base` with each value moved by a relative step of up to 1%,
    /// or with odds of one in `hard_odds` replaced by a hard value.
    fn perturbed(rng: &mut SplitMix64, base: &[f32], hard_odds: Option<u64>) -> Default {
        let mut params = Default::zeros();
        for (slot, &value) in params.iter_mut().zip(base) {
            let hard = hard_odds.is_some_and(|odds| rng.range(1, odds) == 1);
            *slot = if hard {
                HARD[rng.range(0, 17) as usize]
            } else {
                value * (1.0 + (rng.range(0, 2000) as f32 - 1000.0) * 1e-5)
            };
        }
        params
    }

    /// Averages one update per `(value, rows)` term, each with every
    /// parameter set to the value, and asserts that the batch gives the
    /// streaming bits and the correctly rounded mean. Returns the updates
    /// and the mean.
    fn check_splat_terms(terms: &[(f32, u32)]) -> (Vec<(u32, Small)>, f32) {
        let updates: Vec<(u32, Small)> = terms
            .iter()
            .map(|&(value, rows)| (rows, Small::splat(value)))
            .collect();
        let bits = batch_bits(&updates);
        assert_eq!(bits, streaming_bits(&updates), "{terms:?}");
        let mean = f32::from_bits(bits[0]);
        assert_correctly_rounded(terms, mean);
        (updates, mean)
    }

    /// Returns a value with a random sign and mantissa whose magnitude lies
    /// within `binades` binades below `2^exponent`, for unbiased `exponent`.
    fn near(rng: &mut SplitMix64, exponent: i32, binades: u32) -> f32 {
        let biased = (exponent + 127 - 1) as u32;
        rng.finite(biased.saturating_sub(binades - 1).max(1)..=biased)
    }

    #[test]
    fn batch_matches_streaming_on_random_inputs() {
        let mut rng = SplitMix64(0xBA7C);
        let mut settled = 0;
        for case in 0..1500 {
            let count = rng.range(1, 12) as usize;
            let base = rng.range(0, 250) as i32 - 149 + 24;
            let style = rng.range(0, 5);
            let mut updates: Vec<(u32, Small)> = (0..count)
                .map(|_| {
                    let rows = match rng.range(0, 3) {
                        0 => rng.range(1, 40) as u32,
                        1 => rng.range(1, 1 << 20) as u32,
                        2 => rng.range(1, (1 << 29) / 12) as u32,
                        _ => rng.range(1, u64::from(u32::MAX) / 12) as u32,
                    };
                    let values: Vec<f32> = (0..Small::COUNT)
                        .map(|_| match style {
                            // Similar magnitudes, as trained weights have.
                            0 | 1 => near(&mut rng, base.clamp(-100, 100), 3),
                            // Spreads around the fast path's limit.
                            2 => near(&mut rng, base.clamp(-100, 100), 34),
                            // Anything finite, from subnormals to f32::MAX.
                            3 => rng.finite(0..=254),
                            // Hard values and zeros among ordinary ones.
                            _ => match rng.range(0, 3) {
                                0 => HARD[rng.range(0, 17) as usize],
                                _ => near(&mut rng, 0, 6),
                            },
                        })
                        .collect();
                    (rows, params_from(|j| values[j]))
                })
                .collect();
            let expected = streaming_bits(&updates);
            assert_eq!(batch_bits(&updates), expected, "case {case}");
            settled += settled_count(&updates);
            rng.shuffle(&mut updates);
            assert_eq!(batch_bits(&updates), expected, "case {case} shuffled");
            updates.reverse();
            assert_eq!(batch_bits(&updates), expected, "case {case} reversed");
        }
        // Two fifths of the cases have values of similar magnitude, which the
        // fast path settles unless the row total is past 2^29. About one
        // parameter in five is settled so.
        assert!(settled > 1500 * Small::COUNT / 8, "{settled} settled");
    }

    #[test]
    fn batch_matches_streaming_at_spread_limit() {
        // For a row total T <= 2^c the fast path takes magnitudes whose
        // ratio is below 2^(29 − c). Pairs of values straddle that ratio.
        let mut rng = SplitMix64(0x5B4D);
        for (rows, other_rows) in [
            (1, 2),
            (2, 1),
            (700, 900),
            (1 << 20, 3),
            ((1 << 28) + 5, (1 << 28) - 5),
            (1 << 28, 1 << 28),
            ((1 << 28) + 1, 1 << 28),
        ] {
            let total: u32 = rows + other_rows;
            let c = u32::BITS - (total - 1).leading_zeros();
            let limit = 29_i32 - c as i32;
            for shift in [limit - 2, limit - 1, limit, limit + 1, limit + 2] {
                let large: Vec<f32> = (0..Small::COUNT).map(|_| rng.finite(120..=130)).collect();
                let small: Vec<f32> = large
                    .iter()
                    .map(|&value| {
                        let nudge = rng.range(0, 2) as i32 - 1;
                        let scale = 2.0_f32.powi(-(shift.max(0)) + nudge);
                        let sign = if rng.range(0, 1) == 0 { 1.0 } else { -1.0 };
                        value * scale * sign
                    })
                    .collect();
                let updates = [
                    (rows, params_from(|j| large[j])),
                    (other_rows, params_from(|j| small[j])),
                ];
                assert_eq!(
                    batch_bits(&updates),
                    streaming_bits(&updates),
                    "rows {rows} + {other_rows}, shift {shift}"
                );
            }
        }
    }

    #[test]
    fn batch_spread_check_catches_rounded_sums() {
        // 3 · 1.5 and 4 · −1.125 cancel, so the mean is (e + 0) / 8 with
        // e = 2^−28 · (1.5 + 2^−23), an f32. An f64 sum in slice order
        // rounds 4.5 + e to a multiple of 2^−50 and loses e's last bit,
        // which would give 1.5 · 2^−31 without the check. The magnitudes
        // span a ratio of about 2^28, above the 2^26 allowed for 8 rows.
        let e = 2.0_f32.powi(-28) * f32::from_bits(1.5_f32.to_bits() + 1);
        let expected = e / 8.0;
        let updates = [
            (3, Small::splat(1.5)),
            (1, Small::splat(e)),
            (4, Small::splat(-1.125)),
        ];
        let bits = batch_bits(&updates);
        assert!(bits.iter().all(|&b| b == expected.to_bits()), "{bits:x?}");
        assert_eq!(bits, streaming_bits(&updates));
        assert_eq!(settled_count(&updates), 0);
    }

    #[test]
    fn batch_settles_means_near_halfway_exactly() {
        // (1 + (1 + 2^−23) + x − 2^−32) / 4 with x = 2^−32 · (1 + 2^−23)
        // lies a hair above the halfway point between 0.5 and its
        // successor, closer than the f64 mean can tell.
        let x = f32::from_bits((2.0_f32.powi(-32)).to_bits() + 1);
        let y = 2.0_f32.powi(-32);
        let next_after_half = f32::from_bits(0.5_f32.to_bits() + 1);
        let cases: [(&[(f32, u32)], f32); 5] = [
            (
                &[(1.0, 1), (1.0 + f32::EPSILON, 1), (x, 1), (-y, 1)],
                next_after_half,
            ),
            (
                &[(-1.0, 1), (-1.0 - f32::EPSILON, 1), (-x, 1), (y, 1)],
                -next_after_half,
            ),
            (&[(1.0, 1), (1.0 + f32::EPSILON, 1), (y, 1), (-x, 1)], 0.5),
            // An exact tie, which rounds to even.
            (&[(1.0, 1), (1.0 + f32::EPSILON, 1)], 1.0),
            (
                &[(1.0 + f32::EPSILON, 3), (1.0 + 2.0 * f32::EPSILON, 3)],
                1.0 + 2.0 * f32::EPSILON,
            ),
        ];
        for (terms, expected) in cases {
            let (_, mean) = check_splat_terms(terms);
            assert_eq!(mean.to_bits(), expected.to_bits(), "{terms:?}");
        }

        // (0.5 + 5 · 2^−24 + 4 · 1.125) / 5 = 1 + 2^−24 is an exact tie
        // that rounds to 1.0. The fast path sums it exactly, but 1/5 is
        // inexact in f64, so the tie must go to the exact path.
        let updates = [
            (1, Small::splat(0.5 + 5.0 * f32::EPSILON / 2.0)),
            (4, Small::splat(1.125)),
        ];
        let bits = batch_bits(&updates);
        assert!(bits.iter().all(|&b| b == 1.0_f32.to_bits()), "{bits:x?}");
        assert_eq!(bits, streaming_bits(&updates));
        assert_eq!(settled_count(&updates), 0);
    }

    #[test]
    fn batch_matches_streaming_for_tiny_means() {
        // Means at and below f32::MIN_POSITIVE, from subnormal values and
        // from normal values that nearly cancel.
        let min = f32::MIN_POSITIVE;
        let cases: [&[(f32, u32)]; 8] = [
            &[(min, 1), (min, 1)],
            &[(min, 1), (f32::from_bits(0x0080_0002), 1)],
            &[(min, 1), (f32::from_bits(0x007F_FFFF), 1)],
            &[(f32::from_bits(1), 3), (f32::from_bits(2), 1)],
            &[(2.0 * min, 1), (-min, 1)],
            &[(2.0 * min, 1), (-min, 3)],
            &[(1.0, 1), (-1.0, 1), (min, 1)],
            &[(3.0 * min, 2), (-min, 1), (-min, 1)],
        ];
        for terms in cases {
            let (updates, mean) = check_splat_terms(terms);
            // The halfway test of the fast path does not apply at or below
            // f32::MIN_POSITIVE, so such means must take the exact path.
            if mean.abs() <= min {
                assert_eq!(settled_count(&updates), 0, "{terms:?}");
            }
        }
    }

    #[test]
    fn batch_zero_means_and_signs() {
        let cases: [&[(f32, u32)]; 5] = [
            &[(-0.0, 3), (-0.0, 4)],
            &[(0.0, 1), (-0.0, 1)],
            &[(0.5, 2), (-0.5, 2)],
            &[(-f32::from_bits(1), 1), (0.0, 3)],
            &[(0.25, 1), (0.0, 1), (-0.0, 1)],
        ];
        for terms in cases {
            check_splat_terms(terms);
        }
    }

    #[test]
    fn batch_matches_streaming_on_default_model() {
        // Perturbed copies of a few base models, as clients of one global
        // model send, with some exact zeros and a few outliers.
        let mut rng = SplitMix64(0xDEF);
        let bases: Vec<Vec<f32>> = (0..3)
            .map(|_| {
                (0..Default::COUNT)
                    .map(|_| match rng.range(0, 200) {
                        0 => 0.0,
                        1 => rng.finite(0..=254),
                        _ => rng.finite(110..=127),
                    })
                    .collect()
            })
            .collect();
        for count in [1_usize, 2, 3, 7, 40] {
            let mut updates: Vec<(u32, Default)> = (0..count)
                .map(|index| {
                    let rows = rng.range(200, 1200) as u32;
                    (rows, perturbed(&mut rng, &bases[index % bases.len()], None))
                })
                .collect();
            assert_batch_matches_streaming(&mut updates, &mut rng);
        }
    }

    #[test]
    fn batch_of_many_updates_matches_streaming() {
        // More than REGISTER_UPDATES updates take the tiled loop. Values
        // within 1% of a per-parameter base settle there. Hard values and
        // large row totals send parameters to the exact path.
        let mut rng = SplitMix64(0x7113);
        for (count, max_rows) in [(REGISTER_UPDATES + 1, 1000), (300, 5000), (300, 1 << 22)] {
            let base: Vec<f32> = (0..Default::COUNT).map(|_| rng.finite(112..=127)).collect();
            let mut updates: Vec<(u32, Default)> = (0..count)
                .map(|_| {
                    let rows = rng.range(1, max_rows) as u32;
                    (rows, perturbed(&mut rng, &base, Some(500)))
                })
                .collect();
            assert_batch_matches_streaming(&mut updates, &mut rng);
        }
    }

    #[test]
    fn batch_is_order_independent() {
        let mut rng = SplitMix64(0x0DE5);
        let mut updates: Vec<(u32, Small)> = (0..5)
            .map(|index| {
                let rows = [1, 3, 1000, 1 << 20, 77][index];
                let values: Vec<f32> = (0..Small::COUNT)
                    .map(|_| match rng.range(0, 3) {
                        0 => HARD[rng.range(0, 17) as usize],
                        _ => rng.finite(100..=130),
                    })
                    .collect();
                (rows, params_from(|j| values[j]))
            })
            .collect();
        let expected = streaming_bits(&updates);
        let mut orders = 0;
        // Heap's algorithm over the five updates: all 120 orders.
        let mut counters = [0_usize; 5];
        assert_eq!(batch_bits(&updates), expected);
        let mut i = 0;
        while i < updates.len() {
            if counters[i] < i {
                let other = if i % 2 == 0 { 0 } else { counters[i] };
                updates.swap(other, i);
                assert_eq!(batch_bits(&updates), expected, "order {orders}");
                orders += 1;
                counters[i] += 1;
                i = 0;
            } else {
                counters[i] = 0;
                i += 1;
            }
        }
        assert_eq!(orders, 119);
    }

    #[test]
    fn batch_row_errors_leave_output() {
        let mut out = Small::splat(7.0);
        let untouched = Small::splat(7.0);
        let empty: [(u32, Small); 0] = [];
        assert_eq!(
            average_updates(&empty, &mut out),
            Err(BatchError {
                update: None,
                reason: AggregateError::NoUpdates
            })
        );
        assert_eq!(out, untouched);

        let zero_rows = [(3, Small::splat(1.0)), (0, Small::splat(2.0))];
        assert_eq!(
            average_updates(&zero_rows, &mut out),
            Err(BatchError {
                update: Some(1),
                reason: AggregateError::NoRows
            })
        );
        assert_eq!(out, untouched);

        let overflow = [
            (u32::MAX - 10, Small::splat(1.0)),
            (10, Small::splat(1.0)),
            (1, Small::splat(1.0)),
        ];
        assert_eq!(
            average_updates(&overflow, &mut out),
            Err(BatchError {
                update: Some(2),
                reason: AggregateError::RowTotalOverflow {
                    total: u32::MAX,
                    rows: 1
                }
            })
        );
        assert_eq!(out, untouched);
    }

    #[test]
    fn batch_reports_first_rejected_update() {
        let mut out = Small::zeros();
        let mut bad = Small::splat(1.0);
        bad.bias1[1] = f32::NAN; // wire index 3·4 + 1 = 13
        bad.kernel3[0] = f32::INFINITY; // a later one, not reported
        let mut later = Small::splat(1.0);
        later.kernel1[0][0] = f32::NEG_INFINITY;

        let batch = [(2, Small::splat(1.0)), (5, bad), (1, later)];
        match average_updates(&batch, &mut out) {
            Err(BatchError {
                update: Some(1),
                reason: AggregateError::NonFinite { index: 13, value },
            }) => assert!(value.is_nan()),
            other => panic!("expected NonFinite in update 1, got {other:?}"),
        }

        // A non-finite value before an update with zero rows comes first.
        let batch = [(2, later), (0, Small::splat(1.0))];
        assert_eq!(
            average_updates(&batch, &mut out),
            Err(BatchError {
                update: Some(0),
                reason: AggregateError::NonFinite {
                    index: 0,
                    value: f32::NEG_INFINITY
                }
            })
        );
        // After it, the zero rows come first.
        let batch = [(2, Small::splat(1.0)), (0, Small::splat(1.0)), (1, later)];
        assert_eq!(
            average_updates(&batch, &mut out),
            Err(BatchError {
                update: Some(1),
                reason: AggregateError::NoRows
            })
        );
    }

    #[test]
    fn batch_error_messages_name_update() {
        let error = BatchError {
            update: Some(4),
            reason: AggregateError::NoRows,
        };
        let message = error.to_string();
        assert!(message.contains("update 4"), "{message}");
        assert!(message.contains("0 training rows"), "{message}");
        let source = core::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source, Some(AggregateError::NoRows.to_string()));

        let empty = BatchError {
            update: None,
            reason: AggregateError::NoUpdates,
        };
        assert!(empty.to_string().contains("empty batch"));
    }

    #[test]
    fn batch_spread_follows_row_total() {
        let spread = |total: u32| Batch::new(NonZeroU32::new(total).unwrap()).spread;
        assert_eq!(spread(1), (1 << 29) as f32);
        assert_eq!(spread(2), (1 << 28) as f32);
        assert_eq!(spread(3), (1 << 27) as f32);
        assert_eq!(spread(4), (1 << 27) as f32);
        assert_eq!(spread(1 << 29), 1.0);
        assert_eq!(spread((1 << 29) + 1), 0.0);
        assert_eq!(spread(u32::MAX), 0.0);
    }
}
