//! Seeded random numbers for the generator and the train/test split.
//!
//! Everything is built on `ChaCha8Rng::next_u64`, so a seed gives the same
//! integers on every platform. The normal deviates go through std's `ln`,
//! `sqrt` and `cos`, which call the platform's math library.
// NOTE: the last bits of a normal deviate, and so of the generated features,
// may differ between platforms whose math libraries round `ln` or `cos`
// differently. Integer draws (shuffles, splits) do not depend on them.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Purpose of a seed made by [`derive_seed`]. Each purpose reads its own
/// ChaCha8 stream, so a hospital's generator seed and split seed are
/// unrelated even though both come from one run seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedStream {
    /// Seed of a built-in hospital's data generator.
    Generator = 1,
    /// Seed of a built-in hospital's train/test split.
    Split = 2,
    /// Seed of a CSV hospital's train/test split, chosen by the hospital's
    /// name as [`derive_split_seed`] describes.
    SplitByName = 3,
}

/// Derives the seed for hospital `index` (0-based) and one `purpose` from the
/// run seed.
///
/// The result is the `index`-th 64-bit output of
/// `ChaCha8Rng::seed_from_u64(seed)` on stream `purpose as u64`.
pub fn derive_seed(seed: u64, purpose: SeedStream, index: usize) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose as u64);
    // The word position counts 32-bit words, and one u64 output takes two.
    rng.set_word_pos(2 * index as u128);
    rng.next_u64()
}

/// Derives the split seed of the CSV hospital called `hospital_name` from
/// the run seed.
///
/// The result is the output of `ChaCha8Rng::seed_from_u64(seed)` on stream
/// [`SeedStream::SplitByName`] at the position given by the FNV-1a 64-bit
/// hash of the name's UTF-8 bytes. It depends on the run seed and the name
/// only, so a hospital keeps its split when other files are added, removed
/// or reordered.
pub fn derive_split_seed(seed: u64, hospital_name: &str) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(SeedStream::SplitByName as u64);
    // Two 32-bit words per u64 output, as in `derive_seed`.
    rng.set_word_pos(2 * u128::from(fnv1a_64(hospital_name.as_bytes())));
    rng.next_u64()
}

/// Hashes `bytes` with 64-bit FNV-1a, using the standard 64-bit offset
/// basis and prime.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// ChaCha8 generator with the few distributions the data layer needs.
pub(crate) struct Random {
    rng: ChaCha8Rng,
}

impl Random {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Draws a uniform f64 in [0, 1) from the top 53 bits of one u64.
    pub(crate) fn uniform(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.rng.next_u64() >> 11) as f64 * SCALE
    }

    /// Draws a standard normal deviate with the Box–Muller transform. It uses
    /// the cosine branch only and discards the sine branch.
    ///
    /// The logarithm and cosine come from `libm`, not the platform's math
    /// library, so a seed gives the same data bits on every machine.
    pub(crate) fn normal(&mut self) -> f64 {
        // 1 - uniform lies in (0, 1], so the logarithm is finite.
        let radius_source = 1.0 - self.uniform();
        let angle = std::f64::consts::TAU * self.uniform();
        (-2.0 * libm::log(radius_source)).sqrt() * libm::cos(angle)
    }

    /// Draws an integer uniformly from `0..bound` without modulo bias:
    /// outputs below `2^64 mod bound` are rejected and drawn again.
    ///
    /// # Panics
    /// Panics if `bound` is 0.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "bound of a random integer must be positive");
        let bound = bound as u64;
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let value = self.rng.next_u64();
            if value >= threshold {
                return (value % bound) as usize;
            }
        }
    }

    /// Shuffles `items` in place with the Fisher–Yates algorithm.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let other = self.below(last + 1);
            items.swap(last, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_unit_interval() {
        let mut random = Random::new(7);
        let draws: Vec<f64> = (0..100_000).map(|_| random.uniform()).collect();

        assert!(draws.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut random = Random::new(11);
        let draws: Vec<f64> = (0..100_000).map(|_| random.normal()).collect();
        let n = draws.len() as f64;
        let mean = draws.iter().sum::<f64>() / n;
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;

        assert!(draws.iter().all(|x| x.is_finite()));
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.02, "variance {variance}");
    }

    #[test]
    fn below_covers_range_evenly() {
        let mut random = Random::new(3);
        let mut counts = [0usize; 6];
        for _ in 0..60_000 {
            counts[random.below(6)] += 1;
        }

        for (value, &count) in counts.iter().enumerate() {
            assert!(
                (9_500..10_500).contains(&count),
                "value {value} drawn {count} times"
            );
        }
    }

    #[test]
    fn shuffle_is_seeded_permutation() {
        let mut first: Vec<usize> = (0..50).collect();
        let mut second = first.clone();
        Random::new(5).shuffle(&mut first);
        Random::new(5).shuffle(&mut second);

        assert_eq!(first, second);
        assert_ne!(first, (0..50).collect::<Vec<_>>());
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn derive_split_seed_uses_name_and_seed() {
        let seed = derive_split_seed(42, "cleveland");

        assert_eq!(seed, derive_split_seed(42, "cleveland"));
        assert_ne!(seed, derive_split_seed(42, "hungarian"));
        assert_ne!(seed, derive_split_seed(43, "cleveland"));
        assert_ne!(seed, derive_seed(42, SeedStream::Split, 0));
    }

    #[test]
    fn derive_seed_separates_purpose_and_index() {
        let generator = derive_seed(42, SeedStream::Generator, 0);

        assert_eq!(generator, derive_seed(42, SeedStream::Generator, 0));
        assert_ne!(generator, derive_seed(42, SeedStream::Split, 0));
        assert_ne!(generator, derive_seed(42, SeedStream::Generator, 1));
        assert_ne!(generator, derive_seed(43, SeedStream::Generator, 0));
    }
}
