//! Fixed-point formats and the only three ways the chip turns a wide value into a narrow one:
//! round-to-nearest shift, stochastic shift, and saturation. Every kernel in the emulator and the
//! functional reference model calls these, so rounding is defined in exactly one place.

use fixed::types::I32F32;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A signed two's-complement fixed-point format: `bits` wide with `frac` fractional bits
/// (the value of raw integer `v` is `v * 2^-frac`). `frac` may exceed `bits` or be negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QFormat {
    pub bits: u8,
    pub frac: i8,
}

impl QFormat {
    pub const fn new(bits: u8, frac: i8) -> Self {
        Self { bits, frac }
    }

    /// The smallest raw value, `-2^(bits-1)`.
    pub fn min_raw(self) -> i64 {
        -(1i64 << (self.bits - 1))
    }

    /// The largest raw value, `2^(bits-1) - 1`.
    pub fn max_raw(self) -> i64 {
        (1i64 << (self.bits - 1)) - 1
    }

    /// The value of one least significant bit.
    pub fn lsb(self) -> f64 {
        (-(self.frac as f64)).exp2()
    }

    /// Clamps a raw value into range; the flag says whether it saturated.
    #[inline]
    pub fn saturate(self, v: i64) -> (i32, bool) {
        let (lo, hi) = (self.min_raw(), self.max_raw());
        if v < lo {
            (lo as i32, true)
        } else if v > hi {
            (hi as i32, true)
        } else {
            (v as i32, false)
        }
    }

    /// Converts a real number to this format, rounding to nearest (ties towards +infinity, as
    /// [`round_shift`] rounds) and saturating; the flag says whether it saturated.
    pub fn quantize(self, x: f64) -> (i32, bool) {
        // I32F32 holds every value a <= 32-bit format can take with exact rounding headroom.
        let wide = I32F32::saturating_from_num(x);
        let raw = round_shift(wide.to_bits(), 32 - self.frac as i32);
        let (v, sat) = self.saturate(raw);
        (v, sat || wide == I32F32::MAX || wide == I32F32::MIN)
    }

    /// The real value of a raw integer in this format.
    pub fn to_f64(self, raw: i32) -> f64 {
        raw as f64 * self.lsb()
    }
}

impl fmt::Display for QFormat {
    /// `s8.5` = signed, 8 bits, 5 fractional bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}.{}", self.bits, self.frac)
    }
}

/// `v * 2^-shift`, rounded to nearest with ties towards +infinity (add half, then arithmetic
/// shift: one adder and a shifter in hardware). A negative shift multiplies exactly.
#[inline]
pub fn round_shift(v: i64, shift: i32) -> i64 {
    if shift <= 0 {
        v << (-shift)
    } else if shift >= 63 {
        0
    } else {
        (v + (1i64 << (shift - 1))) >> shift
    }
}

/// `v * 2^-shift`, rounded stochastically: `random` supplies the dropped bits' threshold, so the
/// result rounds up with probability equal to the dropped fraction (unbiased on average).
#[inline]
pub fn stochastic_shift(v: i64, shift: i32, random: u32) -> i64 {
    if shift <= 0 {
        v << (-shift)
    } else if shift >= 32 {
        // Fewer random bits than dropped bits: use all 32 as the top of the threshold.
        let s = shift.min(62);
        (v + (((random as i64) << (s - 32)) & ((1i64 << s) - 1))) >> s
    } else {
        (v + (random as i64 & ((1i64 << shift) - 1))) >> shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_shift_ties_go_up() {
        assert_eq!(round_shift(3, 1), 2); // 1.5 -> 2
        assert_eq!(round_shift(-3, 1), -1); // -1.5 -> -1
        assert_eq!(round_shift(5, 2), 1); // 1.25 -> 1
        assert_eq!(round_shift(7, -2), 28);
    }

    #[test]
    fn quantize_saturates_and_flags() {
        let q = QFormat::new(8, 5);
        assert_eq!(q.quantize(1.0), (32, false));
        assert_eq!(q.quantize(100.0), (127, true));
        assert_eq!(q.quantize(-100.0), (-128, true));
        assert_eq!(q.quantize(-4.0), (-128, false));
        assert_eq!(format!("{q}"), "s8.5");
    }

    proptest! {
        #[test]
        fn quantize_error_is_at_most_half_an_lsb(x in -3.9f64..3.9, frac in 0i8..6) {
            let q = QFormat::new(8, frac);
            let (v, sat) = q.quantize(x);
            if !sat {
                prop_assert!((q.to_f64(v) - x).abs() <= q.lsb() / 2.0 + 1e-12);
            }
        }

        #[test]
        fn stochastic_shift_brackets_the_exact_value(v in -1_000_000i64..1_000_000, s in 1i32..20, r: u32) {
            let lo = v >> s;
            let got = stochastic_shift(v, s, r);
            prop_assert!(got == lo || got == lo + 1);
        }

        #[test]
        fn stochastic_shift_is_unbiased_over_all_thresholds(v in -5000i64..5000) {
            // Averaged over every threshold of a 4-bit shift the result equals v / 16 exactly.
            let total: i64 = (0u32..16).map(|r| stochastic_shift(v, 4, r)).sum();
            prop_assert_eq!(total, v);
        }
    }
}
