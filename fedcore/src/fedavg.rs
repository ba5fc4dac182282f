//! Exact, order-independent federated averaging (FedAvg).
//!
//! [`FedAvg`] combines client updates into the mean of their parameters,
//! weighted by each client's training-row count. Updates reach the server in
//! whatever order the network delivers them, and floating-point addition is
//! not associative, so a running `f32` or `f64` sum would make the model depend
//! on that order. Instead each parameter's sum is kept exactly, and the mean
//! is rounded once, to nearest with ties to even. The same updates therefore
//! give bit-identical parameters in any order.
//!
//! # Two exact representations
//!
//! Trained weights lie almost always between `2^−32` and `2^8` in magnitude.
//! A term `rows · value` with `value` in that window is a multiple of
//! `2^−55` below `2^40`. Such terms are summed exactly in two `f64` digits
//! per parameter, a high digit on the grid `2^−11` and a low digit on the
//! grid `2^−55`. Splitting a term between the digits and adding to them
//! are plain `f64` operations whose results are exactly representable, so
//! nothing is rounded, and the loop vectorises. Every 512 terms the low
//! digit's multiple of `2^−11` moves to the high digit, which keeps both far
//! from the 53 bits an `f64` holds. Rows of `2^29` or more are split into
//! two factors below `2^32` with at most 16 significant bits each, so that
//! every product `factor · value` is exact in an `f64` too.
//!
//! Values outside the window (zero aside) go to an exact fixed-point integer
//! sum in units of `2^−149`, 80 bytes per parameter, which covers every
//! finite `f32`. It is zeroed lazily, so an aggregate that never receives
//! such a value never writes it after it is created.
//!
//! [`FedAvg::finish`] divides `high + low` by the row total in `f64`, which
//! is within 4 units in the last place of the exact mean. Where that leaves
//! the rounding to `f32` in doubt, within 8 units of a halfway point, and for
//! every parameter with terms outside the window, the mean is computed again
//! from the exact integer sum by long division.
//!
//! The accumulator takes 96 bytes per parameter, about 332 kB for the
//! default 20 → 64 → 32 → 1 model.

use core::fmt;
use core::num::{NonZeroU32, NonZeroU64};

use crate::params::{Fingerprint, Layers, Params};

mod batch;

pub use batch::{average_updates, BatchError};

/// Number of radix-2^32 digits in an [`ExactSum`].
///
/// A finite `f32` is `m · 2^(e − 149)` with integer `m < 2^24` and
/// `e` in `0..=253`. The row total is capped at `u32::MAX`, so the magnitude
/// of any sum is below `2^32 · 2^24 · 2^253 = 2^309` units of `2^−149`.
/// Ten digits give 320 bits, enough for that magnitude and its sign.
const LIMBS: usize = 10;

/// Bits per digit of an [`ExactSum`].
const DIGIT_BITS: u32 = 32;

/// Mask of the low [`DIGIT_BITS`] bits of a limb.
const DIGIT_MASK: i64 = 0xFFFF_FFFF;

/// Number of additions after which [`FedAvg::add`] propagates the carries.
///
/// After carry propagation every limb has a magnitude below `2^32`, and each
/// addition changes a limb by less than `2^32`. After `2^30` additions a limb
/// is therefore below `2^32 + 2^62 < 2^63` and cannot overflow an `i64`.
const NORMALISE_AFTER: u32 = 1 << 30;

/// Lowest biased exponent of a value that the `f64` digits take: `2^−32`.
///
/// A term `factor · value` with an integer factor is then a multiple of
/// `2^(95 − 150) = 2^−55`, the grid of the low digit.
const WINDOW_EXPONENT_MIN: u32 = 95;

/// Number of biased exponents the `f64` digits take, from
/// [`WINDOW_EXPONENT_MIN`]: values below `2^(95 + 40 − 127) = 2^8`.
///
/// With factors below `2^32`, every term is below `2^40`, which keeps
/// [`SPLIT`] exact and the high digit below `2^41`, far from the `2^42` at
/// which its grid of `2^−11` would stop being exact.
const WINDOW_EXPONENTS: u32 = 40;

/// `1.5 · 2^41`: adding and then subtracting it rounds any `|x| < 2^40` to
/// the nearest multiple of `2^−11`, the unit in the last place of numbers
/// between `2^41` and `2^42`. Both operations are exact apart from that
/// rounding, which is the point.
const SPLIT: f64 = 3.0 * (1u64 << 40) as f64;

/// Terms added to the low digits between two carries into the high digits.
///
/// After a carry the low digit is at most `2^−12` in magnitude, and each
/// term adds at most `2^−12` more. It stays exact below `2^(−55 + 53) =
/// 2^−2`, that is for up to 1023 terms; 512 leaves a margin.
const CARRY_AFTER: u32 = 512;

/// Rows from which an update's weight is split into two factors, so that
/// `factor · value` keeps within the 53 bits of an `f64`.
const SPLIT_ROWS_FROM: u32 = 1 << 29;

/// Whether the `f64` digits may be used. They rely on every `f64` operation
/// rounding once to 53 bits. x87 arithmetic (32-bit x86 without SSE2) does
/// not, so there every term goes to the exact integer sum.
const F64_DIGITS: bool = !cfg!(all(target_arch = "x86", not(target_feature = "sse2")));

/// Exact sum of `rows · value` terms in units of `2^−149`, the spacing of
/// the smallest subnormal `f32`.
///
/// The value is `Σ limbs[i] · 2^(32·i)`. Carries are deferred, so a limb may
/// hold more than 32 bits until [`ExactSum::normalise`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ExactSum {
    limbs: [i64; LIMBS],
}

impl ExactSum {
    const ZERO: Self = Self { limbs: [0; LIMBS] };

    /// Adds `rows · value` exactly. `value` must be finite.
    ///
    /// It has no branch and no division because it runs once per parameter
    /// of every update.
    #[inline]
    fn add(&mut self, rows: u32, value: f32) {
        let bits = value.to_bits();

        // Decompose |value| = mantissa · 2^(exponent − 149). A subnormal has
        // biased exponent 0, mantissa = fraction and exponent 0. A normal number
        // has the implicit bit set and exponent = biased exponent − 1.
        let biased = (bits >> 23) & 0xFF;
        let is_normal = u32::from(biased != 0);
        let mantissa = (bits & 0x007F_FFFF) | (is_normal << 23);
        let exponent = biased - is_normal;

        // rows < 2^32 and mantissa < 2^24, so the product is below 2^56.
        let scaled = i64::from(rows) * i64::from(mantissa);
        self.add_scaled(scaled, exponent, bits >> 31 == 1);
    }

    /// Adds `value` exactly, for a finite `value` that is a multiple of
    /// `2^−55` below `2^42` in magnitude, as the `f64` digits of [`FedAvg`]
    /// are.
    fn add_f64(&mut self, value: f64) {
        if value == 0.0 {
            return;
        }
        // |value| = significand · 2^(biased − 1075) with a 53-bit significand.
        // A multiple of 2^−55 has biased >= 1075 − 55 − 52 = 968, so the
        // position in units of 2^−149, biased − 926, is at least 42; below
        // 2^42 it is at most 42 − 53 + 1075 − 926 = 138.
        let bits = value.to_bits();
        let biased = ((bits >> 52) & 0x7FF) as u32;
        let significand = (bits & 0x000F_FFFF_FFFF_FFFF) | (1 << 52);
        debug_assert!((968..=1064).contains(&biased), "{value:e}");
        self.add_scaled(significand as i64, biased - 926, value < 0.0);
    }

    /// Adds `±scaled · 2^position` units of `2^−149`, for `0 <= scaled <
    /// 2^56` and `position <= 255`.
    #[inline]
    fn add_scaled(&mut self, scaled: i64, position: u32, negative: bool) {
        // Place the product at bit `position` of the sum, split into three
        // digits. Each digit is below 2^32, and the highest is below 2^23.
        let shift = position % DIGIT_BITS;
        let low = (scaled << shift) & DIGIT_MASK;
        let high = scaled >> (DIGIT_BITS - shift);
        let middle = high & DIGIT_MASK;
        let top = high >> DIGIT_BITS;

        // `position / 32 <= 7` for every caller, and the mask changes
        // nothing then. It lets the compiler drop the bounds checks.
        let limb = ((position / DIGIT_BITS) & 7) as usize;

        // `sign` is 0 or −1, and `(x ^ sign) - sign` is then x or −x, without
        // a branch.
        let sign = -i64::from(negative);
        self.limbs[limb] += (low ^ sign) - sign;
        self.limbs[limb + 1] += (middle ^ sign) - sign;
        self.limbs[limb + 2] += (top ^ sign) - sign;
    }

    /// Propagates the carries without changing the value.
    ///
    /// Afterwards limbs `0..9` are in `0..2^32` and the last limb carries the
    /// sign. For any reachable sum the last limb's magnitude is below `2^21`.
    fn normalise(&mut self) {
        let mut carry = 0;
        for limb in &mut self.limbs[..LIMBS - 1] {
            let value = *limb + carry;
            // Arithmetic shift: the carry is floor(value / 2^32), also for
            // negative values, and the digit left behind is value mod 2^32.
            carry = value >> DIGIT_BITS;
            *limb = value & DIGIT_MASK;
        }
        self.limbs[LIMBS - 1] += carry;
    }

    /// Returns `self / total`, correctly rounded to the nearest `f32` with
    /// ties to even.
    ///
    /// An exact zero gives `+0.0`. A negative quotient that rounds to zero gives
    /// `−0.0`.
    fn mean(&self, total: NonZeroU32) -> f32 {
        let mut sum = *self;
        sum.normalise();
        let negative = sum.limbs[LIMBS - 1] < 0;
        if negative {
            for limb in &mut sum.limbs {
                *limb = -*limb;
            }
            sum.normalise();
        }

        // Long division of the magnitude, most significant digit first. The
        // remainder is below the divisor < 2^32, so `remainder · 2^32 + digit`
        // fits a u64. Every limb is non-negative after the negation above.
        let divisor = NonZeroU64::from(total);
        let mut quotient = [0_u64; LIMBS];
        let mut remainder = 0_u64;
        for (digit, &limb) in quotient.iter_mut().zip(&sum.limbs).rev() {
            let current = (remainder << DIGIT_BITS) | limb as u64;
            *digit = current / divisor;
            remainder = current % divisor;
        }

        let magnitude = round_to_f32_bits(&quotient, remainder, divisor.get());
        f32::from_bits(magnitude | (u32::from(negative) << 31))
    }
}

/// Rounds `(Q + remainder / divisor) · 2^−149` to the nearest `f32`, ties to
/// even, and returns its bit pattern without a sign.
///
/// `Q` is the quotient in radix-2^32 digits, least significant first, and
/// `remainder < divisor`.
fn round_to_f32_bits(quotient: &[u64; LIMBS], remainder: u64, divisor: u64) -> u32 {
    // Gather up to three digits from the most significant non-zero one. When
    // Q has three or more digits the window contains more than 64 significant
    // bits, which covers the 24-bit mantissa and the rounding bit.
    let top = quotient.iter().rposition(|&digit| digit != 0).unwrap_or(0);
    let low = top.saturating_sub(2);
    let mut window: u128 = 0;
    for &digit in quotient[low..=top].iter().rev() {
        window = (window << DIGIT_BITS) | u128::from(digit);
    }
    let window_bits = 128 - window.leading_zeros();

    if window_bits <= 24 {
        // Q < 2^24 (and low = 0). Subnormals and the lowest normal binade
        // both have spacing 2^−149, and there the f32 bit pattern of
        // Q · 2^−149 is Q itself. Only the remainder decides the rounding.
        let twice_remainder = 2 * remainder;
        let round_up = twice_remainder > divisor || (twice_remainder == divisor && window & 1 == 1);
        return window as u32 + u32::from(round_up);
    }

    // Keep the top 24 bits as the mantissa. The first dropped bit is the
    // rounding bit. The sticky bit is set when any lower bit of Q or the
    // remainder is non-zero. With both set, the exact value lies above the
    // halfway point. With only the rounding bit set, it is a tie.
    let dropped = window_bits - 24;
    let mantissa = (window >> dropped) as u32;
    let half = (window >> (dropped - 1)) & 1 == 1;
    let sticky = window & ((1 << (dropped - 1)) - 1) != 0
        || quotient[..low].iter().any(|&digit| digit != 0)
        || remainder != 0;
    let round_up = half && (sticky || mantissa & 1 == 1);

    // The value is mantissa · 2^(shift − 149) with mantissa in 2^23..2^24, so
    // the biased exponent is shift + 1 and the pattern is
    // ((shift + 1) << 23) + mantissa − 2^23 = (shift << 23) + mantissa.
    // Rounding the mantissa up to 2^24 carries into the exponent field.
    // The mean of finite values is at most f32::MAX in magnitude, so the
    // result never reaches the infinity pattern.
    let shift = dropped + DIGIT_BITS * low as u32;
    (shift << 23) + mantissa + u32::from(round_up)
}

/// Counts of accepted updates and rows, returned by [`FedAvg::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggregateSummary {
    /// Number of accepted updates.
    pub updates: u32,
    /// Sum of the training rows of the accepted updates.
    pub rows: u32,
}

/// Reason why [`FedAvg::add`] or [`FedAvg::finish`] rejected a request.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum AggregateError {
    /// The update contains a NaN or infinite parameter.
    NonFinite {
        /// Wire-order index of the first non-finite parameter.
        index: usize,
        /// The non-finite value at `index`.
        value: f32,
    },
    /// The update was trained for a model of other layer widths.
    ModelMismatch {
        /// Fingerprint of the model this aggregate averages.
        expected: Fingerprint,
        /// Fingerprint sent with the update.
        found: Fingerprint,
    },
    /// The update reports zero training rows, so it would have no weight.
    NoRows,
    /// The update's rows would push the row total above `u32::MAX`.
    RowTotalOverflow {
        /// Row total before the update.
        total: u32,
        /// Rows reported by the update.
        rows: u32,
    },
    /// [`FedAvg::finish`] was called before any update was accepted.
    NoUpdates,
}

impl fmt::Display for AggregateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NonFinite { index, value } => write!(
                f,
                "update rejected because parameter {index} (wire order) is {value}, \
                 not a finite number. Discard the update and check that client's \
                 training for divergence."
            ),
            Self::ModelMismatch { expected, found } => write!(
                f,
                "update rejected because it was trained for the {found} model, but \
                 this aggregate averages the {expected} model. Send only updates \
                 from clients that train the {expected} model."
            ),
            Self::NoRows => write!(
                f,
                "update rejected because it reports 0 training rows, so it would \
                 have no weight. Send an update only after training on at least one row."
            ),
            Self::RowTotalOverflow { total, rows } => write!(
                f,
                "update rejected because adding its row count, {rows}, would raise \
                 the row total of {total} above the maximum of {max}. Finish this aggregate and \
                 start a new one for the remaining updates.",
                max = u32::MAX
            ),
            Self::NoUpdates => write!(
                f,
                "no update has been accepted, so there is no mean to write. Add at \
                 least one update before calling finish."
            ),
        }
    }
}

impl core::error::Error for AggregateError {}

/// Exact FedAvg aggregator: the row-weighted mean of client parameters,
/// bit-identical for any arrival order of the same updates.
///
/// Each parameter's sum `Σ rows_i · p_i` is kept exactly (see the module
/// documentation for how), and [`FedAvg::finish`] rounds
/// `Σ rows_i · p_i / Σ rows_i` once, to the nearest `f32` with ties to even.
/// Adding an update costs a handful of `f64` operations per parameter and no
/// division.
#[derive(Clone, Debug)]
pub struct FedAvg<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize> {
    /// High `f64` digits, multiples of `2^−11`. Stale while `updates` is 0:
    /// the first accepted update overwrites them.
    high: Layers<f64, INPUTS, HIDDEN1, HIDDEN2>,
    /// Low `f64` digits, multiples of `2^−55`, stale like `high`.
    low: Layers<f64, INPUTS, HIDDEN1, HIDDEN2>,
    /// Exact sums of the terms outside the digits' window. All zero while
    /// `outside_window` is false.
    sums: Layers<ExactSum, INPUTS, HIDDEN1, HIDDEN2>,
    /// Whether any term went to `sums` since the last reset.
    outside_window: bool,
    updates: u32,
    total_rows: u32,
    adds_since_normalise: u32,
    terms_since_carry: u32,
}

impl<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>
    FedAvg<INPUTS, HIDDEN1, HIDDEN2>
{
    /// Fingerprint of the model, evaluated at compile time so that widths
    /// above `u16::MAX` fail the build rather than panic.
    const FINGERPRINT: Fingerprint = Params::<INPUTS, HIDDEN1, HIDDEN2>::fingerprint();

    /// Creates an empty aggregate.
    pub const fn new() -> Self {
        Self {
            high: Layers::splat(0.0),
            low: Layers::splat(0.0),
            sums: Layers::splat(ExactSum::ZERO),
            outside_window: false,
            updates: 0,
            total_rows: 0,
            adds_since_normalise: 0,
            terms_since_carry: 0,
        }
    }

    /// Discards every accepted update.
    ///
    /// It writes only the counters, and the exact sums if any update used
    /// them, so that a server can reuse one aggregate every round cheaply.
    pub fn reset(&mut self) {
        if self.outside_window {
            self.sums = Layers::splat(ExactSum::ZERO);
            self.outside_window = false;
        }
        self.updates = 0;
        self.total_rows = 0;
        self.adds_since_normalise = 0;
        self.terms_since_carry = 0;
    }

    /// Adds one update weighted by its training-row count.
    ///
    /// The checks run in this order, and the first failure is returned:
    /// [`AggregateError::ModelMismatch`] if `fingerprint` is not this model's,
    /// [`AggregateError::NoRows`] if `rows` is 0,
    /// [`AggregateError::RowTotalOverflow`] if the row total would exceed
    /// `u32::MAX`, and [`AggregateError::NonFinite`] for a NaN or infinite
    /// parameter. A rejected update leaves the aggregate unchanged.
    pub fn add(
        &mut self,
        fingerprint: Fingerprint,
        rows: u32,
        params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
    ) -> Result<(), AggregateError> {
        if fingerprint != Self::FINGERPRINT {
            return Err(AggregateError::ModelMismatch {
                expected: Self::FINGERPRINT,
                found: fingerprint,
            });
        }
        if rows == 0 {
            return Err(AggregateError::NoRows);
        }
        let Some(total_rows) = self.total_rows.checked_add(rows) else {
            return Err(AggregateError::RowTotalOverflow {
                total: self.total_rows,
                rows,
            });
        };
        let scan = scan(params);
        if let Some(index) = scan.first_non_finite {
            let value = params.iter().nth(index).copied().unwrap_or(f32::NAN);
            return Err(AggregateError::NonFinite { index, value });
        }

        // Rows below 2^29 are one exact factor. Larger counts become
        // (rows >> 16) · 2^16 and rows & 0xFFFF, each with at most 16
        // significant bits, so that every product with a 24-bit mantissa
        // stays within 53 bits.
        let factors = if rows < SPLIT_ROWS_FROM {
            [f64::from(rows), 0.0]
        } else {
            [f64::from(rows & 0xFFFF_0000), f64::from(rows & 0xFFFF)]
        };
        for factor in factors {
            if factor == 0.0 || !F64_DIGITS {
                continue;
            }
            if self.terms_since_carry >= CARRY_AFTER {
                self.carry();
            }
            let first = self.updates == 0 && self.terms_since_carry == 0;
            self.add_window(factor, params, first, scan.outside_window);
            self.terms_since_carry += 1;
        }
        if scan.outside_window || !F64_DIGITS {
            self.add_outside(rows, params);
        }

        // Every accepted update has at least one row, so updates <= total_rows
        // and neither counter can overflow.
        self.total_rows = total_rows;
        self.updates += 1;
        self.adds_since_normalise += 1;
        Ok(())
    }

    /// Adds `factor · value` to the `f64` digits for every value inside the
    /// window, or writes it when `first` is set. `outside` is true when a
    /// non-zero value lies outside the window, and only then does each value
    /// need the window check.
    fn add_window(
        &mut self,
        factor: f64,
        params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
        first: bool,
        outside: bool,
    ) {
        let tensors = self
            .high
            .tensors_mut()
            .into_iter()
            .zip(self.low.tensors_mut())
            .zip(params.tensors());
        for ((high, low), values) in tensors {
            match (first, outside) {
                (true, false) => add_window_tensor::<true, false>(high, low, values, factor),
                (false, false) => add_window_tensor::<false, false>(high, low, values, factor),
                (true, true) => add_window_tensor::<true, true>(high, low, values, factor),
                (false, true) => add_window_tensor::<false, true>(high, low, values, factor),
            }
        }
    }

    /// Adds every non-zero value outside the digits' window to the exact sums.
    fn add_outside(&mut self, rows: u32, params: &Params<INPUTS, HIDDEN1, HIDDEN2>) {
        self.outside_window = true;
        if self.adds_since_normalise >= NORMALISE_AFTER {
            for sum in self.sums.iter_mut() {
                sum.normalise();
            }
            self.adds_since_normalise = 0;
        }
        for (sums, values) in self.sums.tensors_mut().into_iter().zip(params.tensors()) {
            for (sum, &value) in sums.iter_mut().zip(values) {
                if value != 0.0 && (!F64_DIGITS || !in_window(value)) {
                    sum.add(rows, value);
                }
            }
        }
    }

    /// Moves the multiple of `2^−11` in each low digit to its high digit.
    /// The value of each sum stays the same.
    fn carry(&mut self) {
        let tensors = self
            .high
            .tensors_mut()
            .into_iter()
            .zip(self.low.tensors_mut());
        for (high, low) in tensors {
            for (high, low) in high.iter_mut().zip(low.iter_mut()) {
                let carried = (*low + SPLIT) - SPLIT;
                *high += carried;
                *low -= carried;
            }
        }
        self.terms_since_carry = 0;
    }

    /// Writes the row-weighted mean of the accepted updates into `out`.
    ///
    /// Each parameter is correctly rounded to nearest, ties to even. An exact
    /// zero mean gives `+0.0`, also when every update sent `−0.0`. A negative
    /// mean whose magnitude is at most half the smallest subnormal rounds to
    /// `−0.0`. The aggregate is not consumed, so more updates can follow.
    ///
    /// Returns [`AggregateError::NoUpdates`] and leaves `out` untouched if no
    /// update has been accepted.
    pub fn finish(
        &self,
        out: &mut Params<INPUTS, HIDDEN1, HIDDEN2>,
    ) -> Result<AggregateSummary, AggregateError> {
        // Each accepted update adds at least one row, so a zero total means
        // no update.
        let Some(total) = NonZeroU32::new(self.total_rows) else {
            return Err(AggregateError::NoUpdates);
        };

        let mut in_doubt = !F64_DIGITS;
        if F64_DIGITS {
            let inverse = 1.0 / f64::from(total.get());
            let tensors = self
                .high
                .tensors()
                .into_iter()
                .zip(self.low.tensors())
                .zip(out.tensors_mut());
            for ((high, low), values) in tensors {
                in_doubt |= mean_window_tensor(high, low, values, inverse);
            }
        }
        if in_doubt || self.outside_window {
            self.finish_exactly(total, out);
        }
        Ok(AggregateSummary {
            updates: self.updates,
            rows: self.total_rows,
        })
    }

    /// Recomputes, by exact long division, every mean that
    /// [`mean_window_tensor`] left in doubt or that has terms outside the
    /// window.
    fn finish_exactly(&self, total: NonZeroU32, out: &mut Params<INPUTS, HIDDEN1, HIDDEN2>) {
        let tensors = self
            .high
            .tensors()
            .into_iter()
            .zip(self.low.tensors())
            .zip(self.sums.tensors())
            .zip(out.tensors_mut());
        for (((high, low), sums), values) in tensors {
            let parameters = high.iter().zip(low).zip(sums).zip(values.iter_mut());
            for (((&high, &low), sum), value) in parameters {
                let outside = self.outside_window && *sum != ExactSum::ZERO;
                if !outside && F64_DIGITS && !in_doubt(high + low, total) {
                    continue;
                }
                let mut exact = if self.outside_window {
                    *sum
                } else {
                    ExactSum::ZERO
                };
                if F64_DIGITS {
                    exact.add_f64(high);
                    exact.add_f64(low);
                }
                *value = exact.mean(total);
            }
        }
    }

    /// Returns the number of accepted updates.
    pub fn updates(&self) -> u32 {
        self.updates
    }

    /// Returns the sum of the training rows of the accepted updates.
    pub fn total_rows(&self) -> u32 {
        self.total_rows
    }
}

/// Facts about an update that [`FedAvg::add`] checks before adding it.
struct Scan {
    /// Wire-order index of the first NaN or infinite value.
    first_non_finite: Option<usize>,
    /// Whether a non-zero value lies outside the window of the `f64` digits.
    outside_window: bool,
}

/// Scans an update for non-finite values and values outside the window.
///
/// The common pass computes one flag with float compares, four to a vector:
/// whether a value is non-zero and not inside the window. Infinity lies past
/// the window and NaN is tested for, so both raise the flag too.
/// Only then does a second pass tell them apart and find the index of the
/// first non-finite value.
fn scan<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize>(
    params: &Params<INPUTS, HIDDEN1, HIDDEN2>,
) -> Scan {
    let mut unusual = false;
    for values in params.tensors() {
        for &value in values {
            let magnitude = value.abs();
            let past_end = (magnitude >= WINDOW_END) | magnitude.is_nan();
            let below_start = (magnitude < WINDOW_START) & (magnitude > 0.0);
            unusual |= past_end | below_start;
        }
    }
    if !unusual {
        return Scan {
            first_non_finite: None,
            outside_window: false,
        };
    }
    Scan {
        first_non_finite: params.iter().position(|value| !value.is_finite()),
        outside_window: true,
    }
}

/// Smallest magnitude inside the window: `2^(95 − 127)`.
const WINDOW_START: f32 = 1.0 / (1u64 << (127 - WINDOW_EXPONENT_MIN)) as f32;

/// Smallest magnitude past the window: `2^(95 + 40 − 127)`.
const WINDOW_END: f32 = (1u64 << (WINDOW_EXPONENT_MIN + WINDOW_EXPONENTS - 127)) as f32;

/// Returns true when `value`'s magnitude lies in `[2^−32, 2^8)`, the window
/// of the `f64` digits: when its biased exponent lies in `95..135`.
#[inline(always)]
fn in_window(value: f32) -> bool {
    let magnitude = value.abs();
    (WINDOW_START..WINDOW_END).contains(&magnitude)
}

/// Adds (or with `FIRST`, writes) `factor · value` to the digits of one
/// tensor. With `MASKED`, a value outside the window adds zero here; without
/// it, every value must lie inside the window or be zero.
///
/// `factor · value` is exact: the factor has at most 29 significant bits
/// (16 when rows were split) and the value 24. Splitting it at `2^−11` with
/// [`SPLIT`] and adding the parts to the digits is exact as well, by the
/// bounds given with the constants. The loop has no branch, so it
/// vectorises.
#[inline]
fn add_window_tensor<const FIRST: bool, const MASKED: bool>(
    high: &mut [f64],
    low: &mut [f64],
    values: &[f32],
    factor: f64,
) {
    let len = high.len().min(low.len()).min(values.len());
    let (high, low, values) = (&mut high[..len], &mut low[..len], &values[..len]);
    for index in 0..len {
        let value = values[index];
        let term = if !MASKED || in_window(value) {
            factor * f64::from(value)
        } else {
            0.0
        };
        let term_high = (term + SPLIT) - SPLIT;
        let term_low = term - term_high;
        if FIRST {
            high[index] = term_high;
            low[index] = term_low;
        } else {
            high[index] += term_high;
            low[index] += term_low;
        }
    }
}

/// Bits of an `f64` significand that rounding to `f32` drops.
const DROPPED_BITS: u32 = 52 - 23;

/// Half a unit in the last place of an `f32`, in units of the `f64`
/// significand's last place.
const HALF_F32_ULP: u32 = 1 << (DROPPED_BITS - 1);

/// Distance from a halfway point, in units in the last place of an `f64`,
/// below which a mean computed in `f64` is in doubt. Twice the error bound.
const DOUBT_MARGIN: u32 = 8;

/// Writes `(high + low) · inverse` rounded to `f32` for every parameter of
/// one tensor, and returns whether any of them is in doubt.
///
/// With `inverse` the `f64` nearest `1 / total`, the computed quotient is
/// within three roundings of `2^−53` each of the exact mean: less than 4
/// units in its last place. Rounding it to `f32` gives the correctly rounded
/// mean unless a halfway point between two `f32` values lies within that
/// distance; [`in_doubt`] checks for twice that. Every mean inside the
/// window is a normal `f32` (it lies between `2^−87` and `2^8`), so the
/// halfway points are where the 29 dropped bits equal `2^28`.
#[inline]
fn mean_window_tensor(high: &[f64], low: &[f64], out: &mut [f32], inverse: f64) -> bool {
    let len = high.len().min(low.len()).min(out.len());
    let (high, low, out) = (&high[..len], &low[..len], &mut out[..len]);
    let mut doubt = false;
    for index in 0..len {
        let mean = (high[index] + low[index]) * inverse;
        doubt |= near_halfway(mean);
        out[index] = mean as f32;
    }
    doubt
}

/// Returns true when `mean` lies within [`DOUBT_MARGIN`] units of an `f32`
/// halfway point.
#[inline(always)]
fn near_halfway(mean: f64) -> bool {
    // The dropped bits are the low 29 of the pattern, so 32-bit arithmetic
    // suffices, which SSE2 has for vectors and 64-bit compares it lacks.
    let dropped = (mean.to_bits() as u32) & ((1 << DROPPED_BITS) - 1);
    dropped.wrapping_sub(HALF_F32_ULP - DOUBT_MARGIN) <= 2 * DOUBT_MARGIN
}

/// Returns true when the mean of `sum` over `total` rows, computed as
/// [`mean_window_tensor`] does, is in doubt.
fn in_doubt(sum: f64, total: NonZeroU32) -> bool {
    near_halfway(sum * (1.0 / f64::from(total.get())))
}

impl<const INPUTS: usize, const HIDDEN1: usize, const HIDDEN2: usize> Default
    for FedAvg<INPUTS, HIDDEN1, HIDDEN2>
{
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::cmp::Ordering;
    use std::string::ToString;
    use std::vec::Vec;

    use super::*;

    pub(super) type Small = Params<3, 4, 2>;
    type SmallAvg = FedAvg<3, 4, 2>;

    const SMALL: Fingerprint = Small::fingerprint();

    /// Values that break floating-point summation: huge terms that cancel,
    /// subnormals, the extremes of the range and neighbours one ulp apart.
    pub(super) const HARD: [f32; 18] = [
        1e30,
        -1e30,
        1e-30,
        -1e-30,
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::MAX,
        -f32::MAX,
        1.0,
        1.0 + f32::EPSILON,
        1.0 - f32::EPSILON / 2.0,
        -1.0,
        0.0,
        -0.0,
        f32::from_bits(0x007F_FFFF),
        3.0e-39,
    ];

    /// SplitMix64, a small deterministic generator for test data.
    pub(super) struct SplitMix64(pub(super) u64);

    impl SplitMix64 {
        pub(super) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Returns a value in `low..=high`.
        pub(super) fn range(&mut self, low: u64, high: u64) -> u64 {
            low + self.next_u64() % (high - low + 1)
        }

        /// Returns a finite value with a random sign, mantissa and biased exponent.
        pub(super) fn finite(&mut self, exponents: core::ops::RangeInclusive<u32>) -> f32 {
            let bits = self.next_u64();
            let sign = (bits as u32) & 0x8000_0000;
            let fraction = (bits >> 32) as u32 & 0x007F_FFFF;
            let exponent = self.range(u64::from(*exponents.start()), u64::from(*exponents.end()));
            f32::from_bits(sign | ((exponent as u32) << 23) | fraction)
        }

        pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                let j = self.range(0, i as u64) as usize;
                items.swap(i, j);
            }
        }
    }

    pub(super) fn params_from(value: impl Fn(usize) -> f32) -> Small {
        let mut params = Small::zeros();
        for (index, slot) in params.iter_mut().enumerate() {
            *slot = value(index);
        }
        params
    }

    fn bits_of<const I: usize, const H1: usize, const H2: usize>(
        params: &Params<I, H1, H2>,
    ) -> Vec<u32> {
        params.iter().map(|value| value.to_bits()).collect()
    }

    /// Aggregates `updates` in the given order and returns the mean's bit patterns.
    fn mean_bits(updates: &[(u32, Small)]) -> Vec<u32> {
        let mut avg = SmallAvg::new();
        for (rows, params) in updates {
            avg.add(SMALL, *rows, params).expect("valid update");
        }
        let mut out = Small::zeros();
        avg.finish(&mut out).expect("at least one update");
        bits_of(&out)
    }

    /// Asserts that two aggregates hold the same state, bit for bit.
    fn assert_same_state(actual: &SmallAvg, expected: &SmallAvg) {
        let digits = |avg: &SmallAvg| -> Vec<u64> {
            avg.high
                .iter()
                .chain(avg.low.iter())
                .map(|digit| digit.to_bits())
                .collect()
        };
        assert_eq!(digits(actual), digits(expected));
        assert_eq!(actual.sums, expected.sums);
        assert_eq!(actual.outside_window, expected.outside_window);
        assert_eq!(actual.updates, expected.updates);
        assert_eq!(actual.total_rows, expected.total_rows);
        assert_eq!(actual.adds_since_normalise, expected.adds_since_normalise);
        assert_eq!(actual.terms_since_carry, expected.terms_since_carry);
    }

    fn finish_bits(avg: &SmallAvg) -> Vec<u32> {
        let mut out = Small::zeros();
        avg.finish(&mut out).expect("at least one update");
        bits_of(&out)
    }

    // --- Independent reference for correct rounding ---------------------
    //
    // The reference checks the defining property of a correctly rounded mean
    // with a separate big-integer representation: unsigned 384-bit numbers
    // in 64-bit words, with positive and negative terms summed apart.

    type Wide = [u64; 6];

    /// Returns `value · 2^shift`.
    fn wide_shifted(value: u64, shift: u32) -> Wide {
        let mut out = [0; 6];
        let word = (shift / 64) as usize;
        let placed = u128::from(value) << (shift % 64);
        out[word] = placed as u64;
        if word + 1 < out.len() {
            out[word + 1] = (placed >> 64) as u64;
        } else {
            assert_eq!(placed >> 64, 0, "reference overflow");
        }
        out
    }

    fn wide_add(a: &Wide, b: &Wide) -> Wide {
        let mut out = [0; 6];
        let mut carry = 0_u128;
        for i in 0..6 {
            let sum = u128::from(a[i]) + u128::from(b[i]) + carry;
            out[i] = sum as u64;
            carry = sum >> 64;
        }
        assert_eq!(carry, 0, "reference overflow");
        out
    }

    /// Returns `a − b` for `a >= b`.
    fn wide_sub(a: &Wide, b: &Wide) -> Wide {
        let mut out = [0; 6];
        let mut borrow = false;
        for i in 0..6 {
            let (difference, borrow1) = a[i].overflowing_sub(b[i]);
            let (difference, borrow2) = difference.overflowing_sub(u64::from(borrow));
            out[i] = difference;
            borrow = borrow1 || borrow2;
        }
        assert!(!borrow, "reference underflow");
        out
    }

    fn wide_mul(a: &Wide, factor: u64) -> Wide {
        let mut out = [0; 6];
        let mut carry = 0_u128;
        for i in 0..6 {
            let product = u128::from(a[i]) * u128::from(factor) + carry;
            out[i] = product as u64;
            carry = product >> 64;
        }
        assert_eq!(carry, 0, "reference overflow");
        out
    }

    fn wide_cmp(a: &Wide, b: &Wide) -> Ordering {
        a.iter().rev().cmp(b.iter().rev())
    }

    /// Returns the value of a non-negative f32 bit pattern in units of 2^−149.
    /// Pattern 0x7F80_0000 gives 2^128, the value just above f32::MAX.
    fn units(magnitude_bits: u32) -> Wide {
        let biased = magnitude_bits >> 23;
        let fraction = magnitude_bits & 0x007F_FFFF;
        let (mantissa, exponent) = if biased == 0 {
            (fraction, 0)
        } else {
            (fraction | 0x0080_0000, biased - 1)
        };
        if biased < 0xFF {
            let value = f64::from(f32::from_bits(magnitude_bits));
            let rebuilt = f64::from(mantissa) * 2_f64.powi(exponent as i32 - 149);
            assert_eq!(
                rebuilt, value,
                "reference decomposition of {magnitude_bits:#x}"
            );
        }
        wide_shifted(u64::from(mantissa), exponent)
    }

    /// Asserts that `mean` is `Σ rows·value / Σ rows` rounded to nearest, ties
    /// to even, with +0.0 for an exact zero.
    pub(super) fn assert_correctly_rounded(terms: &[(f32, u32)], mean: f32) {
        let mut positive: Wide = [0; 6];
        let mut negative: Wide = [0; 6];
        let mut total = 0_u64;
        for &(value, rows) in terms {
            let term = wide_mul(&units(value.abs().to_bits()), u64::from(rows));
            if value.is_sign_negative() {
                negative = wide_add(&negative, &term);
            } else {
                positive = wide_add(&positive, &term);
            }
            total += u64::from(rows);
        }

        let (sum, sum_is_negative) = match wide_cmp(&positive, &negative) {
            Ordering::Equal => {
                assert_eq!(mean.to_bits(), 0, "zero sum of {terms:?} must give +0.0");
                return;
            }
            Ordering::Greater => (wide_sub(&positive, &negative), false),
            Ordering::Less => (wide_sub(&negative, &positive), true),
        };
        assert_eq!(
            mean.is_sign_negative(),
            sum_is_negative,
            "sign of {mean:e} for {terms:?}"
        );

        // With a = |mean| as a bit pattern, the exact mean S/T must lie
        // between the midpoints (V(a−1) + V(a))/2 and (V(a) + V(a+1))/2.
        // Comparing 2S with (V + V')·T keeps everything in integers.
        let twice_sum = wide_add(&sum, &sum);
        let a = mean.abs().to_bits();
        assert!(a < 0x7F80_0000, "mean {mean} of {terms:?} is not finite");
        let upper = wide_mul(&wide_add(&units(a), &units(a + 1)), total);
        match wide_cmp(&twice_sum, &upper) {
            Ordering::Less => {}
            Ordering::Equal => assert_eq!(a & 1, 0, "tie must round to even for {terms:?}"),
            Ordering::Greater => panic!("mean {mean:e} of {terms:?} is rounded too low"),
        }
        if a > 0 {
            let lower = wide_mul(&wide_add(&units(a - 1), &units(a)), total);
            match wide_cmp(&twice_sum, &lower) {
                Ordering::Greater => {}
                Ordering::Equal => {
                    assert_eq!(a & 1, 0, "tie must round to even for {terms:?}")
                }
                Ordering::Less => panic!("mean {mean:e} of {terms:?} is rounded too high"),
            }
        }
    }

    /// Checks every parameter of `mean` against the reference.
    fn assert_all_correctly_rounded(updates: &[(u32, Small)], mean: &Small) {
        for (index, &result) in mean.iter().enumerate() {
            let terms: Vec<(f32, u32)> = updates
                .iter()
                .map(|(rows, params)| (*params.iter().nth(index).unwrap(), *rows))
                .collect();
            assert_correctly_rounded(&terms, result);
        }
    }

    /// Seven updates that mix the hard values, with row counts up to 2^31 − 1.
    fn hard_updates() -> Vec<(u32, Small)> {
        let rows = [1, 2, 3, 7, 1 << 16, (1 << 31) - 1, 1 << 30];
        rows.iter()
            .enumerate()
            .map(|(i, &rows)| (rows, params_from(|j| HARD[(i * 5 + j * 3) % HARD.len()])))
            .collect()
    }

    /// Calls `visit` with every permutation of `items` (Heap's algorithm).
    fn for_each_permutation<T>(items: &mut [T], mut visit: impl FnMut(&[T])) {
        let n = items.len();
        let mut counters = std::vec![0_usize; n];
        visit(items);
        let mut i = 0;
        while i < n {
            if counters[i] < i {
                if i % 2 == 0 {
                    items.swap(0, i);
                } else {
                    items.swap(counters[i], i);
                }
                visit(items);
                counters[i] += 1;
                i = 0;
            } else {
                counters[i] = 0;
                i += 1;
            }
        }
    }

    // --- Tests ----------------------------------------------------------

    #[test]
    fn weighted_mean_of_two_updates() {
        let mut avg = SmallAvg::new();
        avg.add(SMALL, 10, &Small::splat(1.0)).unwrap();
        avg.add(SMALL, 30, &Small::splat(3.0)).unwrap();
        let mut out = Small::zeros();
        let summary = avg.finish(&mut out).unwrap();
        assert_eq!(
            summary,
            AggregateSummary {
                updates: 2,
                rows: 40
            }
        );
        assert_eq!(avg.updates(), 2);
        assert_eq!(avg.total_rows(), 40);
        for value in out.iter() {
            assert_eq!(value.to_bits(), 2.5_f32.to_bits());
        }
    }

    #[test]
    fn default_model_mean_and_size() {
        type Default = FedAvg<20, 64, 32>;
        assert_eq!(core::mem::size_of::<Default>(), 331_896);
        assert_eq!(core::mem::size_of::<ExactSum>(), 80);

        let fingerprint = Params::<20, 64, 32>::fingerprint();
        let mut avg = Default::default();
        avg.add(fingerprint, 10, &Params::splat(1.0)).unwrap();
        avg.add(fingerprint, 30, &Params::splat(3.0)).unwrap();
        let mut out = Params::<20, 64, 32>::zeros();
        avg.finish(&mut out).unwrap();
        assert_eq!(out.iter().count(), 3457);
        assert!(out.iter().all(|value| value.to_bits() == 2.5_f32.to_bits()));
    }

    #[test]
    fn cancelling_large_values_keep_small_terms() {
        // A float sum loses the 1.0 terms next to 1e30. The exact sum is 2.0
        // over 4 rows.
        let mut updates = [
            (1, Small::splat(1e30)),
            (1, Small::splat(-1e30)),
            (2, Small::splat(1.0)),
        ];
        for_each_permutation(&mut updates, |order| {
            let bits = mean_bits(order);
            assert!(bits.iter().all(|&b| b == 0.5_f32.to_bits()), "{bits:x?}");
        });
    }

    #[test]
    fn hard_values_in_every_order() {
        let mut updates = hard_updates();
        let expected = mean_bits(&updates);
        let mut mean = Small::zeros();
        for (slot, &bits) in mean.iter_mut().zip(&expected) {
            *slot = f32::from_bits(bits);
        }
        assert_all_correctly_rounded(&updates, &mean);

        let mut orders = 0;
        for_each_permutation(&mut updates, |order| {
            assert_eq!(mean_bits(order), expected);
            orders += 1;
        });
        assert_eq!(orders, 5040);
    }

    #[test]
    fn hard_values_mixed_per_parameter() {
        // Unlike hard_updates, each parameter gets its own seeded selection of
        // hard values and row counts up to 2^31, in many random orders.
        let mut rng = SplitMix64(7);
        for _ in 0..20 {
            let count = rng.range(2, 9) as usize;
            let mut updates: Vec<(u32, Small)> = (0..count)
                .map(|_| {
                    let rows = if rng.range(0, 1) == 0 {
                        rng.range(1, 5) as u32
                    } else {
                        rng.range(1, (1 << 31) / count as u64) as u32
                    };
                    let choices: Vec<usize> = (0..Small::COUNT)
                        .map(|_| rng.range(0, 17) as usize)
                        .collect();
                    (rows, params_from(|j| HARD[choices[j]]))
                })
                .collect();
            let expected = mean_bits(&updates);
            let mut mean = Small::zeros();
            for (slot, &bits) in mean.iter_mut().zip(&expected) {
                *slot = f32::from_bits(bits);
            }
            assert_all_correctly_rounded(&updates, &mean);
            for _ in 0..50 {
                rng.shuffle(&mut updates);
                assert_eq!(mean_bits(&updates), expected);
            }
        }
    }

    #[test]
    fn exact_known_means() {
        let cases: [(&[(f32, u32)], f32); 9] = [
            // Subnormal spacing: the mean of the smallest subnormal and zero is
            // half a unit, a tie that rounds to even (zero).
            (&[(f32::from_bits(1), 1), (0.0, 1)], 0.0),
            (&[(f32::from_bits(3), 1), (0.0, 1)], f32::from_bits(2)),
            (&[(f32::from_bits(1), 1), (0.0, 2)], 0.0),
            (&[(f32::from_bits(2), 1), (0.0, 2)], f32::from_bits(1)),
            // 1 + ulp/2 is a tie between 1.0 (even) and 1 + ulp (odd).
            (&[(1.0, 1), (1.0 + f32::EPSILON, 1)], 1.0),
            // 1 + 1.5 ulp is a tie between 1 + ulp (odd) and 1 + 2 ulp (even).
            (
                &[(1.0 + f32::EPSILON, 1), (1.0 + 2.0 * f32::EPSILON, 1)],
                1.0 + 2.0 * f32::EPSILON,
            ),
            // The top of the range, with the largest possible row total.
            (&[(f32::MAX, u32::MAX)], f32::MAX),
            (&[(f32::MAX, u32::MAX - 1), (f32::MAX, 1)], f32::MAX),
            // (2^23 + 2^23 − 1) / 2 units of 2^−149 is a tie between the
            // largest subnormal (odd) and f32::MIN_POSITIVE (even).
            (
                &[(f32::MIN_POSITIVE, 1), (f32::from_bits(0x007F_FFFF), 1)],
                f32::MIN_POSITIVE,
            ),
        ];
        for (terms, expected) in cases {
            let updates: Vec<(u32, Small)> = terms
                .iter()
                .map(|&(value, rows)| (rows, Small::splat(value)))
                .collect();
            let bits = mean_bits(&updates);
            assert_eq!(bits[0], expected.to_bits(), "{terms:?}");
            assert_correctly_rounded(terms, f32::from_bits(bits[0]));
        }
    }

    #[test]
    fn sticky_bits_break_ties() {
        let next_after_half = f32::from_bits(0.5_f32.to_bits() + 1);
        let cases: [(&[(f32, u32)], f32); 4] = [
            // (3 + 3·2^−24 + 2^−149) / 3 = 1 + 2^−24 + 2^−149/3. The kept bits
            // end in an exact tie, and only the division remainder shows that
            // the value lies above it.
            (
                &[
                    (3.0, 1),
                    (3.0 * f32::EPSILON / 2.0, 1),
                    (f32::from_bits(1), 1),
                ],
                1.0 + f32::EPSILON,
            ),
            (
                &[
                    (-3.0, 1),
                    (-3.0 * f32::EPSILON / 2.0, 1),
                    (-f32::from_bits(1), 1),
                ],
                -1.0 - f32::EPSILON,
            ),
            // (2 + 2^−23 + 2·2^−100) / 4 = 0.5 + 2^−25 + 2^−101. Again a tie in
            // the kept bits, broken only by a bit about 75 places lower.
            (
                &[(1.0, 1), (1.0 + f32::EPSILON, 1), (2.0_f32.powi(-100), 2)],
                next_after_half,
            ),
            // Without the small term it is an exact tie and rounds to even.
            (&[(1.0, 1), (1.0 + f32::EPSILON, 1), (0.0, 2)], 0.5),
        ];
        for (terms, expected) in cases {
            let updates: Vec<(u32, Small)> = terms
                .iter()
                .map(|&(value, rows)| (rows, Small::splat(value)))
                .collect();
            let bits = mean_bits(&updates);
            assert_eq!(bits[0], expected.to_bits(), "{terms:?}");
            assert_correctly_rounded(terms, f32::from_bits(bits[0]));
        }
    }

    #[test]
    fn signed_zero_results() {
        // Every update sends −0.0: the exact sum is zero, which gives +0.0.
        let bits = mean_bits(&[(3, Small::splat(-0.0)), (4, Small::splat(-0.0))]);
        assert!(bits.iter().all(|&b| b == 0), "{bits:x?}");

        // A negative mean below half the smallest subnormal rounds to −0.0.
        let bits = mean_bits(&[
            (1, Small::splat(-f32::from_bits(1))),
            (3, Small::splat(0.0)),
        ]);
        assert!(bits.iter().all(|&b| b == 0x8000_0000), "{bits:x?}");

        // Exact cancellation gives +0.0 too.
        let bits = mean_bits(&[(5, Small::splat(-f32::MAX)), (5, Small::splat(f32::MAX))]);
        assert!(bits.iter().all(|&b| b == 0), "{bits:x?}");
    }

    #[test]
    fn extreme_magnitudes_round_correctly() {
        let cases: [&[(f32, u32)]; 5] = [
            &[(f32::MAX, 1 << 31), (-f32::MAX, (1 << 31) - 1)],
            &[(-f32::MAX, u32::MAX - 1), (f32::from_bits(1), 1)],
            &[(f32::MAX, u32::MAX - 2), (-f32::MAX, 1), (1e-30, 1)],
            &[(f32::from_bits(1), u32::MAX - 1), (f32::MAX, 1)],
            &[(f32::from_bits(1), 1), (-0.0, u32::MAX - 1)],
        ];
        for terms in cases {
            let updates: Vec<(u32, Small)> = terms
                .iter()
                .map(|&(value, rows)| (rows, Small::splat(value)))
                .collect();
            let bits = mean_bits(&updates);
            assert_correctly_rounded(terms, f32::from_bits(bits[0]));
            let mut reversed = updates.clone();
            reversed.reverse();
            assert_eq!(mean_bits(&reversed), bits, "{terms:?}");
        }
    }

    #[test]
    fn random_cases_match_exact_f64() {
        // With at most 6 updates of at most 1000 rows, each term rows·p has
        // at most 34 significant bits, and exponents within ±3 of a common
        // base keep the sum within 43 bits, so the f64 sum is exact. The f64
        // quotient rounded to f32 is then the correctly rounded mean, because
        // binary64 has more than twice the precision of binary32, which makes
        // double rounding of a quotient harmless (P. Roux, "Innocuous Double
        // Rounding of Basic Arithmetic Operations", J. Formalized Reasoning
        // 7(1), 2014). The reference check of the other tests does not rely on
        // this.
        let mut rng = SplitMix64(0x5EED);
        for case in 0..3000 {
            let base = rng.range(50, 200) as u32;
            let count = rng.range(1, 6) as usize;
            let updates: Vec<(u32, Small)> = (0..count)
                .map(|_| {
                    let rows = rng.range(1, 1000) as u32;
                    let values: Vec<f32> = (0..Small::COUNT)
                        .map(|_| rng.finite(base - 3..=base + 3))
                        .collect();
                    (rows, params_from(|j| values[j]))
                })
                .collect();

            let bits = mean_bits(&updates);
            let total: u32 = updates.iter().map(|(rows, _)| rows).sum();
            for (index, &result) in bits.iter().enumerate() {
                let sum: f64 = updates
                    .iter()
                    .map(|(rows, params)| {
                        f64::from(*rows) * f64::from(*params.iter().nth(index).unwrap())
                    })
                    .sum();
                let expected = (sum / f64::from(total)) as f32;
                assert_eq!(
                    result,
                    expected.to_bits(),
                    "case {case}, parameter {index}: {} vs {expected:e}",
                    f32::from_bits(result)
                );
            }
        }
    }

    #[test]
    fn many_updates_any_order() {
        let mut rng = SplitMix64(42);
        for count in [3_usize, 1000] {
            let mut updates: Vec<(u32, Small)> = (0..count)
                .map(|_| {
                    let rows = rng.range(1, 1 << 20) as u32;
                    let values: Vec<f32> = (0..Small::COUNT)
                        .map(|_| {
                            if rng.range(0, 9) == 0 {
                                HARD[rng.range(0, 17) as usize]
                            } else {
                                rng.finite(0..=254)
                            }
                        })
                        .collect();
                    (rows, params_from(|j| values[j]))
                })
                .collect();

            let forward = mean_bits(&updates);
            let mut mean = Small::zeros();
            for (slot, &bits) in mean.iter_mut().zip(&forward) {
                *slot = f32::from_bits(bits);
            }
            assert_all_correctly_rounded(&updates, &mean);

            updates.reverse();
            assert_eq!(mean_bits(&updates), forward, "{count} updates reversed");
            rng.shuffle(&mut updates);
            assert_eq!(mean_bits(&updates), forward, "{count} updates shuffled");
        }
    }

    #[test]
    fn finish_is_repeatable_and_streaming() {
        let first = Small::splat(1.0);
        let second = Small::splat(4.0);
        let mut avg = SmallAvg::new();
        avg.add(SMALL, 1, &first).unwrap();
        let once = finish_bits(&avg);
        assert_eq!(finish_bits(&avg), once);
        assert!(once.iter().all(|&b| b == 1.0_f32.to_bits()));

        avg.add(SMALL, 2, &second).unwrap();
        let both = finish_bits(&avg);
        assert!(both.iter().all(|&b| b == 3.0_f32.to_bits()));
    }

    #[test]
    fn normalisation_keeps_the_value() {
        // Force the periodic carry propagation in the middle of a stream and
        // compare with a stream that never propagates.
        let updates = hard_updates();
        let expected = mean_bits(&updates);

        let mut avg = SmallAvg::new();
        for (step, (rows, params)) in updates.iter().enumerate() {
            if step == 3 {
                avg.adds_since_normalise = NORMALISE_AFTER;
            }
            avg.add(SMALL, *rows, params).unwrap();
        }
        assert_eq!(avg.adds_since_normalise, 4);
        assert_eq!(finish_bits(&avg), expected);
    }

    /// Returns `Σ limbs[i] · 2^(32·i)` as separate positive and negative parts.
    fn limb_value(sum: &ExactSum) -> (Wide, Wide) {
        let mut positive: Wide = [0; 6];
        let mut negative: Wide = [0; 6];
        for (i, &limb) in sum.limbs.iter().enumerate() {
            let term = wide_shifted(limb.unsigned_abs(), 32 * i as u32);
            if limb < 0 {
                negative = wide_add(&negative, &term);
            } else {
                positive = wide_add(&positive, &term);
            }
        }
        (positive, negative)
    }

    #[test]
    fn normalise_at_carry_bound() {
        // Limbs at the largest magnitude that deferred carries can reach,
        // 2^62 + 2^32 − 1, with mixed signs.
        let bound = (1_i64 << 62) + DIGIT_MASK;
        for signs in [
            0_u32,
            0b10_1010_1010,
            0b01_0101_0101,
            0b11_1111_1111,
            0b11_0000_0001,
        ] {
            let mut sum = ExactSum::ZERO;
            for (i, limb) in sum.limbs.iter_mut().enumerate() {
                *limb = if signs >> i & 1 == 1 { -bound } else { bound };
            }
            let (positive_before, negative_before) = limb_value(&sum);
            sum.normalise();
            for &limb in &sum.limbs[..LIMBS - 1] {
                assert!((0..1 << 32).contains(&limb), "{limb:#x}");
            }
            let (positive_after, negative_after) = limb_value(&sum);
            // before == after  ⇔  P_b + N_a == P_a + N_b
            assert_eq!(
                wide_add(&positive_before, &negative_after),
                wide_add(&positive_after, &negative_before),
                "signs {signs:#b}"
            );
        }
    }

    /// Computes the mean with the exact integer sums alone, bypassing the
    /// `f64` digits, as a reference for them.
    fn exact_mean_bits(updates: &[(u32, Small)]) -> Vec<u32> {
        let mut sums = [ExactSum::ZERO; Small::COUNT];
        let mut total = 0_u32;
        for (rows, params) in updates {
            for (sum, &value) in sums.iter_mut().zip(params.iter()) {
                sum.add(*rows, value);
            }
            total += rows;
        }
        let total = NonZeroU32::new(total).expect("at least one row");
        sums.iter().map(|sum| sum.mean(total).to_bits()).collect()
    }

    /// Returns a value whose biased exponent is drawn from `exponents`, so
    /// that the window's edges, 95 and 134, are crossed often.
    fn near_window_edges(rng: &mut SplitMix64) -> f32 {
        let exponents = if rng.range(0, 1) == 0 {
            90..=100
        } else {
            129..=139
        };
        rng.finite(exponents)
    }

    #[test]
    fn window_bounds_match_exponents() {
        assert_eq!(WINDOW_START.to_bits() >> 23, WINDOW_EXPONENT_MIN);
        assert_eq!(
            WINDOW_END.to_bits() >> 23,
            WINDOW_EXPONENT_MIN + WINDOW_EXPONENTS
        );
        for biased in 0..=254_u32 {
            for fraction in [0, 1, 0x40_0000, 0x7F_FFFF] {
                let value = f32::from_bits(biased << 23 | fraction);
                let expected =
                    (WINDOW_EXPONENT_MIN..WINDOW_EXPONENT_MIN + WINDOW_EXPONENTS).contains(&biased);
                assert_eq!(in_window(value), expected, "{value:e}");
                assert_eq!(in_window(-value), expected, "{:e}", -value);
            }
        }
    }

    #[test]
    fn window_digits_match_exact_sums() {
        let mut rng = SplitMix64(0xD161);
        for case in 0..400 {
            let count = rng.range(1, 12) as usize;
            let mut updates: Vec<(u32, Small)> = (0..count)
                .map(|_| {
                    let rows = match rng.range(0, 3) {
                        0 => rng.range(1, 40) as u32,
                        1 => rng.range(1, 1 << 20) as u32,
                        _ => rng.range(1, (1 << 32) / 12) as u32,
                    };
                    let values: Vec<f32> = (0..Small::COUNT)
                        .map(|_| match rng.range(0, 4) {
                            0 => near_window_edges(&mut rng),
                            1 => HARD[rng.range(0, 17) as usize],
                            _ => rng.finite(110..=127),
                        })
                        .collect();
                    (rows, params_from(|j| values[j]))
                })
                .collect();
            let expected = exact_mean_bits(&updates);
            assert_eq!(mean_bits(&updates), expected, "case {case}");
            rng.shuffle(&mut updates);
            assert_eq!(mean_bits(&updates), expected, "case {case} shuffled");
        }
    }

    #[test]
    fn split_row_counts_match_exact_sums() {
        // Row counts from 2^29 up are split into two factors. Values inside
        // the window only, so that the digits carry the whole sum.
        let mut rng = SplitMix64(0x5B1);
        for rows in [1 << 29, (1 << 29) + 1, 0xFFFF_0000, u32::MAX - 1, u32::MAX] {
            let values: Vec<f32> = (0..Small::COUNT).map(|_| rng.finite(96..=133)).collect();
            let update = (rows, params_from(|j| values[j]));
            let mut updates = std::vec![update];
            if rows < u32::MAX {
                let other: Vec<f32> = (0..Small::COUNT).map(|_| rng.finite(96..=133)).collect();
                updates.push((1, params_from(|j| other[j])));
            }
            assert_eq!(
                mean_bits(&updates),
                exact_mean_bits(&updates),
                "rows {rows}"
            );
        }
    }

    #[test]
    fn carries_keep_the_value() {
        // 1500 updates take the low digits through two carries on their own,
        // and a forced carry after the third update adds one more.
        let mut rng = SplitMix64(0xCA77);
        let updates: Vec<(u32, Small)> = (0..1500)
            .map(|_| {
                let rows = rng.range(1, 2_000_000) as u32;
                let values: Vec<f32> = (0..Small::COUNT).map(|_| rng.finite(96..=133)).collect();
                (rows, params_from(|j| values[j]))
            })
            .collect();
        let expected = exact_mean_bits(&updates);
        assert_eq!(mean_bits(&updates), expected);

        let mut avg = SmallAvg::new();
        for (step, (rows, params)) in updates.iter().enumerate() {
            if step == 3 {
                avg.terms_since_carry = CARRY_AFTER;
            }
            avg.add(SMALL, *rows, params).unwrap();
        }
        assert!(!avg.outside_window);
        assert_eq!(finish_bits(&avg), expected);
    }

    #[test]
    fn means_near_halfway_are_settled_exactly() {
        // (1 + (1 + 2^−23) + x − 2^−32) / 4 with x = 2^−32 · (1 + 2^−23)
        // is 0.5 + 2^−25 + 2^−57: a hair above the halfway point between 0.5
        // and its successor, closer to it than the f64 mean can tell. Every
        // value lies inside the window.
        let x = f32::from_bits((2.0_f32.powi(-32)).to_bits() + 1);
        let y = 2.0_f32.powi(-32);
        let next_after_half = f32::from_bits(0.5_f32.to_bits() + 1);
        let cases: [(&[(f32, u32)], f32); 3] = [
            (
                &[(1.0, 1), (1.0 + f32::EPSILON, 1), (x, 1), (-y, 1)],
                next_after_half,
            ),
            (
                &[(-1.0, 1), (-1.0 - f32::EPSILON, 1), (-x, 1), (y, 1)],
                -next_after_half,
            ),
            // Below the halfway point by the same hair: rounds down.
            (&[(1.0, 1), (1.0 + f32::EPSILON, 1), (y, 1), (-x, 1)], 0.5),
        ];
        for (terms, expected) in cases {
            let updates: Vec<(u32, Small)> = terms
                .iter()
                .map(|&(value, rows)| (rows, Small::splat(value)))
                .collect();
            let mut avg = SmallAvg::new();
            for (rows, params) in &updates {
                avg.add(SMALL, *rows, params).unwrap();
            }
            assert!(!avg.outside_window, "{terms:?}");
            let total = NonZeroU32::new(avg.total_rows()).unwrap();
            let sum = avg.high.bias3[0] + avg.low.bias3[0];
            assert!(in_doubt(sum, total), "{terms:?} must take the exact path");
            let bits = finish_bits(&avg);
            assert_eq!(bits[0], expected.to_bits(), "{terms:?}");
            assert_correctly_rounded(terms, f32::from_bits(bits[0]));
        }
    }

    #[test]
    fn reset_after_outside_values_clears_exact_sums() {
        let mut avg = SmallAvg::new();
        avg.add(SMALL, 2, &Small::splat(1e30)).unwrap();
        assert!(avg.outside_window);
        avg.reset();
        assert!(!avg.outside_window);
        assert_eq!(avg.sums, SmallAvg::new().sums);
        avg.add(SMALL, 3, &Small::splat(0.75)).unwrap();
        assert!(finish_bits(&avg).iter().all(|&b| b == 0.75_f32.to_bits()));
    }

    #[test]
    fn rejects_nan_and_infinity_at_index() {
        let mut avg = SmallAvg::new();
        avg.add(SMALL, 3, &Small::splat(0.25)).unwrap();
        let before = avg.clone();
        let mean_before = finish_bits(&avg);

        let mut params = Small::splat(1.0);
        params.bias1[1] = f32::NAN; // wire index 3·4 + 1 = 13
        params.kernel3[0] = f32::INFINITY; // a later one, not reported
        match avg.add(SMALL, 5, &params) {
            Err(AggregateError::NonFinite { index, value }) => {
                assert_eq!(index, 13);
                assert!(value.is_nan());
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
        assert_same_state(&avg, &before);
        assert_eq!(finish_bits(&avg), mean_before);

        let mut params = Small::splat(1.0);
        params.kernel2[1][0] = f32::INFINITY; // wire index 16 + 2 = 18
        assert_eq!(
            avg.add(SMALL, 5, &params),
            Err(AggregateError::NonFinite {
                index: 18,
                value: f32::INFINITY
            })
        );
        let mut params = Small::splat(1.0);
        params.bias3[0] = f32::NEG_INFINITY; // last of 29 parameters
        assert_eq!(
            avg.add(SMALL, 5, &params),
            Err(AggregateError::NonFinite {
                index: 28,
                value: f32::NEG_INFINITY
            })
        );

        assert_same_state(&avg, &before);
        assert_eq!(avg.updates(), 1);
        assert_eq!(avg.total_rows(), 3);
        assert_eq!(finish_bits(&avg), mean_before);
    }

    #[test]
    fn rejects_model_mismatch() {
        let mut avg = SmallAvg::new();
        avg.add(SMALL, 3, &Small::splat(0.25)).unwrap();
        let before = avg.clone();
        let mean_before = finish_bits(&avg);

        let other = Fingerprint::of::<3, 4, 3>();
        assert_eq!(
            avg.add(other, 5, &Small::splat(1.0)),
            Err(AggregateError::ModelMismatch {
                expected: SMALL,
                found: other
            })
        );
        assert_same_state(&avg, &before);
        assert_eq!(avg.updates(), 1);
        assert_eq!(avg.total_rows(), 3);
        assert_eq!(finish_bits(&avg), mean_before);
    }

    #[test]
    fn rejects_zero_rows() {
        let mut avg = SmallAvg::new();
        avg.add(SMALL, 3, &Small::splat(0.25)).unwrap();
        let before = avg.clone();
        let mean_before = finish_bits(&avg);

        assert_eq!(
            avg.add(SMALL, 0, &Small::splat(1.0)),
            Err(AggregateError::NoRows)
        );
        assert_same_state(&avg, &before);
        assert_eq!(avg.updates(), 1);
        assert_eq!(avg.total_rows(), 3);
        assert_eq!(finish_bits(&avg), mean_before);
    }

    #[test]
    fn rejects_row_total_overflow() {
        let mut avg = SmallAvg::new();
        avg.add(SMALL, u32::MAX - 10, &Small::splat(0.25)).unwrap();
        let before = avg.clone();
        let mean_before = finish_bits(&avg);

        assert_eq!(
            avg.add(SMALL, 11, &Small::splat(1.0)),
            Err(AggregateError::RowTotalOverflow {
                total: u32::MAX - 10,
                rows: 11
            })
        );
        assert_same_state(&avg, &before);
        assert_eq!(avg.updates(), 1);
        assert_eq!(avg.total_rows(), u32::MAX - 10);
        assert_eq!(finish_bits(&avg), mean_before);

        // Exactly u32::MAX is still accepted.
        avg.add(SMALL, 10, &Small::splat(1.0)).unwrap();
        assert_eq!(avg.total_rows(), u32::MAX);
    }

    #[test]
    fn finish_without_updates_leaves_output() {
        let mut out = Small::splat(7.0);
        let mut avg = SmallAvg::new();
        assert_eq!(avg.finish(&mut out), Err(AggregateError::NoUpdates));
        assert_eq!(out, Small::splat(7.0));

        // Rejected updates do not count.
        assert!(avg.add(SMALL, 0, &Small::splat(1.0)).is_err());
        assert_eq!(avg.finish(&mut out), Err(AggregateError::NoUpdates));
        assert_eq!(out, Small::splat(7.0));

        avg.add(SMALL, 2, &Small::splat(1.0)).unwrap();
        avg.reset();
        assert_eq!(avg.updates(), 0);
        assert_eq!(avg.total_rows(), 0);
        assert_eq!(avg.finish(&mut out), Err(AggregateError::NoUpdates));
        assert_eq!(out, Small::splat(7.0));
    }

    #[test]
    fn reset_matches_new() {
        let mut avg = SmallAvg::new();
        avg.add(SMALL, 9, &Small::splat(-3.5)).unwrap();
        avg.reset();
        let fresh = SmallAvg::new();
        assert_eq!(avg.sums, fresh.sums);
        assert!(!avg.outside_window);
        assert_eq!(avg.adds_since_normalise, 0);
        assert_eq!(avg.terms_since_carry, 0);
        avg.add(SMALL, 2, &Small::splat(1.5)).unwrap();
        assert!(finish_bits(&avg).iter().all(|&b| b == 1.5_f32.to_bits()));
    }

    #[test]
    fn error_messages_name_values() {
        let messages = [
            (
                AggregateError::NonFinite {
                    index: 13,
                    value: f32::NAN,
                },
                ["parameter 13", "NaN"].as_slice(),
            ),
            (
                AggregateError::ModelMismatch {
                    expected: SMALL,
                    found: Fingerprint::of::<5, 4, 2>(),
                },
                ["3 → 4 → 2 → 1", "5 → 4 → 2 → 1"].as_slice(),
            ),
            (AggregateError::NoRows, ["0 training rows"].as_slice()),
            (
                AggregateError::RowTotalOverflow {
                    total: 4_000_000_000,
                    rows: 300_000_000,
                },
                ["row count, 300000000", "4000000000", "4294967295"].as_slice(),
            ),
            (AggregateError::NoUpdates, ["no update"].as_slice()),
        ];
        for (error, fragments) in messages {
            let message = error.to_string();
            for fragment in fragments {
                assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            }
            let source: &dyn core::error::Error = &error;
            assert!(source.source().is_none());
        }
    }
}
