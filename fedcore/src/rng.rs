//! Seeded random streams.
//!
//! Every random draw in fedcore comes from a ChaCha8 generator whose seed is
//! the run's seed and whose stream number names the purpose and the client,
//! so that changing how often one purpose draws never shifts another's
//! numbers. ChaCha8 produces the same words on every target, which is part of
//! what makes a host run and a microcontroller run agree bit for bit.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator used throughout fedcore.
pub type Rng = ChaCha8Rng;

/// What a random stream is used for. Each purpose gets its own stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// Initial weights of a model.
    Init = 1,
    /// Dropout masks during training.
    Dropout = 2,
    /// Per-epoch shuffles of the training rows.
    Shuffle = 3,
}

/// Creates the generator for `purpose` of client `client` under `seed`.
///
/// The stream number is `purpose << 32 | client`, so streams never overlap.
pub fn stream(seed: u64, purpose: Purpose, client: u32) -> Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((purpose as u64) << 32) | u64::from(client));
    rng
}

/// Draws a uniform `f32` in `[0, 1)` from the top 24 bits of one word.
pub fn uniform_f32(rng: &mut Rng) -> f32 {
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    (rng.next_u32() >> 8) as f32 * SCALE
}

/// Draws a uniform integer in `0..bound` without modulo bias, using
/// Lemire's multiply-and-reject method. `bound` must not be zero.
pub fn below(rng: &mut Rng, bound: u32) -> u32 {
    debug_assert!(bound > 0);
    let bound = bound.max(1);
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = u64::from(rng.next_u32()) * u64::from(bound);
        if (product as u32) >= threshold {
            return (product >> 32) as u32;
        }
    }
}

/// Shuffles `items` in place with the Fisher–Yates algorithm.
pub fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for last in (1..items.len()).rev() {
        // Slices longer than u32::MAX are impossible for a training set here:
        // a dataset's row count is checked to fit in u32.
        let pick = below(rng, (last + 1) as u32) as usize;
        items.swap(last, pick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_independent() {
        let mut init = stream(7, Purpose::Init, 0);
        let mut dropout = stream(7, Purpose::Dropout, 0);
        let mut other_client = stream(7, Purpose::Init, 1);
        let first = init.next_u64();
        assert_ne!(first, dropout.next_u64());
        assert_ne!(first, other_client.next_u64());
        assert_eq!(first, stream(7, Purpose::Init, 0).next_u64());
    }

    #[test]
    fn uniform_stays_in_unit_interval() {
        let mut rng = stream(1, Purpose::Init, 0);
        for _ in 0..10_000 {
            let value = uniform_f32(&mut rng);
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }

    #[test]
    fn below_covers_range_evenly() {
        let mut rng = stream(3, Purpose::Shuffle, 0);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[below(&mut rng, 5) as usize] += 1;
        }
        for count in counts {
            assert!((9_500..10_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = stream(9, Purpose::Shuffle, 2);
        let mut items = [0u32; 100];
        for (index, item) in items.iter_mut().enumerate() {
            *item = index as u32;
        }
        shuffle(&mut rng, &mut items);
        let mut sorted = items;
        sorted.sort_unstable();
        assert!(sorted.iter().enumerate().all(|(i, &v)| v == i as u32));
        assert_ne!(items[..10], sorted[..10]);
    }
}
