//! Input spike encoders of the input port (spiking networks): input values (`0..=max`) to one
//! bit vector per time step. The port regenerates the random bits with a 32-bit LFSR per sample, so an encoding is
//! a pure function of (seed, sample key, pixels, steps); the software references call these
//! same functions.

use crate::rng::{mix64, Lfsr32};
use bitvec::prelude::*;

/// Rate coding: at every step each pixel `p` spikes with probability `p / max`. The draws come
/// from one LFSR per sample, seeded by `(seed, sample)`, 16 shifts per draw (step by step, pixel
/// by pixel): a draw is the register's top 16 bits, and the pixel spikes when it is below
/// `round(p / max * 65536)`.
pub fn rate(seed: u64, sample: u64, pixels: &[u32], max: u32, steps: u32) -> Vec<BitVec> {
    let max = max.max(1) as u64;
    let thresholds: Vec<u64> = pixels
        .iter()
        .map(|&p| ((p as u64).min(max) * 65536 + max / 2) / max)
        .collect();
    let mut lfsr = Lfsr32::new((mix64(seed ^ 0x5049_4B45_0000_0000 ^ sample) >> 32) as u32);
    (0..steps)
        .map(|_| {
            thresholds
                .iter()
                .map(|&t| {
                    let mut s = 0;
                    for _ in 0..16 {
                        s = lfsr.step();
                    }
                    ((s >> 16) as u64) < t
                })
                .collect()
        })
        .collect()
}

/// Latency coding: a pixel `p > 0` spikes once, at step `round((1 - p / max) * (steps - 1))`
/// (the brightest first); a zero pixel never spikes.
pub fn latency(pixels: &[u32], max: u32, steps: u32) -> Vec<BitVec> {
    let max = max.max(1) as u64;
    let last = steps.saturating_sub(1) as u64;
    let mut out = vec![bitvec![0; pixels.len()]; steps as usize];
    for (i, &p) in pixels.iter().enumerate() {
        let p = (p as u64).min(max);
        if p == 0 {
            continue;
        }
        let t = ((max - p) * last + max / 2) / max;
        out[t as usize].set(i, true);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Deterministic per seed and sample; a full pixel always spikes, a zero pixel never;
        /// over many steps a pixel spikes at about its rate.
        #[test]
        fn rate_coding_is_deterministic_and_follows_the_rate(
            seed: u64, sample: u64, p in 0u8..=16, steps in 1u32..64,
        ) {
            let pixels = [0u32, 16, p as u32];
            let a = rate(seed, sample, &pixels, 16, steps);
            prop_assert_eq!(&a, &rate(seed, sample, &pixels, 16, steps));
            prop_assert_eq!(a.len(), steps as usize);
            prop_assert!(a.iter().all(|s| !s[0] && s[1]));
            let other = rate(seed.wrapping_add(1), sample, &[8u32; 64], 16, 4);
            prop_assert_ne!(&other, &rate(seed, sample, &[8; 64], 16, 4));
        }

        /// Exactly one spike for a non-zero pixel, at the documented step; none for zero.
        #[test]
        fn latency_coding_spikes_once_at_its_step(p in 0u8..=255, steps in 1u32..32) {
            let s = latency(&[p as u32], 255, steps);
            let count: usize = s.iter().map(|v| v.count_ones()).sum();
            prop_assert_eq!(count, (p > 0) as usize);
            if p > 0 {
                let t = s.iter().position(|v| v[0]).unwrap() as u64;
                let expect = ((255 - p as u64) * (steps as u64 - 1) + 127) / 255;
                prop_assert_eq!(t, expect);
            }
        }
    }

    #[test]
    fn rate_coding_spike_counts_match_the_rates() {
        // 4096 draws at rate 1/4: within 5 standard deviations of 1024.
        let pixels = vec![4u32; 64];
        let s = rate(7, 3, &pixels, 16, 64);
        let n: usize = s.iter().map(|v| v.count_ones()).sum();
        assert!((n as i64 - 1024).abs() < 5 * 28, "{n}");
    }
}
