//! Deterministic pseudo-random numbers that never change with a crate version.
//!
//! The compiler draws initial weights from [`SplitMix64`]; the emulator's stochastic rounding uses
//! [`stochastic_bits`], a counter-based generator: the random bits for a synapse update are a
//! pure function of (seed, layer, row, column, update count). That makes the result independent
//! of how a layer is tiled over cores and of the order in which cores are emulated.

/// Steele, Lea and Flood's SplitMix64 generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// A float uniformly distributed in [0, 1), from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A float uniformly distributed in [-bound, bound).
    pub fn uniform(&mut self, bound: f64) -> f64 {
        (self.next_f64() * 2.0 - 1.0) * bound
    }

    /// An index uniformly distributed in 0..n (n > 0), by rejection so it is unbiased.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// The SplitMix64 finalizer: a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The per-row key of the stochastic-rounding generator (computed once per crossbar row).
#[inline]
pub fn stochastic_row_key(seed: u64, layer: u16, row: u32, step: u64) -> u64 {
    mix64(
        seed ^ ((layer as u64) << 48)
            ^ ((row as u64) << 24)
            ^ step.wrapping_mul(0xD6E8_FEB8_6659_FD93),
    )
}

/// Random bits for the synapse at global column `col` of a row keyed by [`stochastic_row_key`].
#[inline]
pub fn stochastic_bits(row_key: u64, col: u32) -> u32 {
    (mix64(row_key.wrapping_add((col as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))) >> 32) as u32
}

/// A 32-bit Galois LFSR (polynomial x^32 + x^22 + x^2 + x + 1, taps `0x8020_0003`): the
/// generator a `fixed_random` target projection is regenerated from on chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lfsr32(u32);

impl Lfsr32 {
    pub const TAPS: u32 = 0x8020_0003;

    /// A zero seed would lock the register; it is replaced by 1.
    pub fn new(seed: u32) -> Self {
        Lfsr32(if seed == 0 { 1 } else { seed })
    }

    /// Shifts once and returns the new state.
    pub fn step(&mut self) -> u32 {
        let lsb = self.0 & 1;
        self.0 >>= 1;
        if lsb != 0 {
            self.0 ^= Self::TAPS;
        }
        self.0
    }
}

/// The seed of row `row` of the fixed random projection of a network with seed `seed`.
pub fn projection_row_seed(seed: u64, row: u32) -> u32 {
    (mix64(seed ^ 0x0050_4A00_0000_0000 ^ row as u64) >> 32) as u32
}

/// Row `row` of the fixed random projection, columns `col_start..col_start + cols`, as raw
/// values of a `bits`-wide format: each value is the top `bits - 1` bits of the row's LFSR
/// after `col + 1` steps, minus `2^(bits-2)`, so values are uniform in [-1, 1) when the format
/// has `bits - 2` fraction bits.
pub fn fixed_projection_row(seed: u64, row: u32, col_start: u32, cols: u32, bits: u8) -> Vec<i32> {
    let mut lfsr = Lfsr32::new(projection_row_seed(seed, row));
    for _ in 0..col_start {
        lfsr.step();
    }
    let half = 1i32 << (bits - 2);
    (0..cols)
        .map(|_| (lfsr.step() >> (33 - bits as u32)) as i32 - half)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_published_sequence() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn lfsr_does_not_repeat_early_and_projection_rows_tile() {
        let mut l = Lfsr32::new(1);
        let first = l.step();
        assert!((0..100_000).all(|_| l.step() != first));
        let whole = fixed_projection_row(5, 3, 0, 40, 8);
        let mut parts = fixed_projection_row(5, 3, 0, 17, 8);
        parts.extend(fixed_projection_row(5, 3, 17, 23, 8));
        assert_eq!(whole, parts);
        assert!(whole.iter().all(|&v| (-64..64).contains(&v)));
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(9);
        for n in 1..50 {
            assert!(r.below(n) < n);
        }
    }
}
