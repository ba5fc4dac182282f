//! Square root with one contract on every target.
//!
//! IEEE 754 requires `sqrt` to be correctly rounded, so every
//! implementation returns the same bits. With the `std` feature the
//! standard library's `f32::sqrt` compiles to the hardware instruction,
//! which the compiler can vectorise; without it `libm::sqrtf` is used.

/// Returns the correctly rounded square root of `x`.
#[inline(always)]
pub fn sqrt(x: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        x.sqrt()
    }
    #[cfg(not(feature = "std"))]
    {
        libm::sqrtf(x)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqrt_matches_libm_bit_for_bit() {
        let mut bits = 0x0000_0001u32;
        while bits < 0x7f80_0000 {
            let x = f32::from_bits(bits);
            assert_eq!(super::sqrt(x).to_bits(), libm::sqrtf(x).to_bits(), "{x}");
            bits = bits.wrapping_mul(3).wrapping_add(0x1234_5677) & 0x7fff_ffff;
            if bits == 1 {
                break;
            }
        }
    }
}
