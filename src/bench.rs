//! `sigchip bench`: how fast the emulator runs a fixed training and inference workload, against
//! the practical ceiling measured in the same run on the same machine: a plain dense integer
//! matrix-vector kernel of the network's shapes and bit widths (every row driven, no timing
//! model, no events), which is what this CPU does with the same multiply-accumulates.

use crate::emulator::{self, data::Dataset, train::Schedule, TrainOptions};
use crate::isa::Program;
use serde::Serialize;
use std::time::Instant;

/// What a bench run measured (all rates per second of host time).
#[derive(Clone, Debug, Serialize)]
pub struct Bench {
    pub network: String,
    pub data: String,
    pub train_samples: usize,
    pub inference_samples: usize,
    /// Emulated synaptic operations (multiply-accumulates) per second, training and inference.
    pub emulated_macs_per_s: f64,
    /// The dense integer kernel's multiply-accumulates per second on the same shapes.
    pub ceiling_macs_per_s: f64,
    /// `emulated_macs_per_s / ceiling_macs_per_s`.
    pub ratio: f64,
    /// Training samples per second.
    pub samples_per_s: f64,
    /// Emulated chip cycles per second (training).
    pub emulated_cycles_per_s: f64,
    pub seconds: f64,
}

/// Runs the workload: `train` samples of training (one epoch, sequential schedule) and the
/// inference of `test` samples, then the ceiling kernel.
pub fn bench(program: Program, data: &Dataset, train: usize, test: usize) -> anyhow::Result<Bench> {
    let mut d = data.clone();
    d.train.truncate(train);
    d.test.truncate(test);
    let shapes: Vec<(usize, usize, u8, u8)> = program
        .layers
        .iter()
        .map(|l| {
            (
                l.rows() as usize,
                l.width as usize,
                l.weight_format.bits,
                l.in_format.bits,
            )
        })
        .collect();
    let started = Instant::now();
    let mut opts = TrainOptions::new(1, 1);
    opts.schedule = Schedule::Sequential;
    let (_, report) = emulator::train(program.clone(), &d, &opts, &mut |_, _, _| {})?;
    let seconds = started.elapsed().as_secs_f64();
    let macs = report.events.train.synaptic_ops + report.events.test_inference.synaptic_ops;
    // The ceiling: the same number of samples through every layer, dense.
    let ceiling = ceiling_macs_per_s(&shapes, 200);
    let emulated = macs as f64 / seconds;
    Ok(Bench {
        network: program.name.clone(),
        data: d.name.clone(),
        train_samples: d.train.len(),
        inference_samples: d.test.len(),
        emulated_macs_per_s: emulated,
        ceiling_macs_per_s: ceiling,
        ratio: emulated / ceiling,
        samples_per_s: d.train.len() as f64 / seconds,
        emulated_cycles_per_s: report.timing.train_cycles as f64 / seconds,
        seconds,
    })
}

/// Multiply-accumulates per second of a dense integer matrix-vector product over the layers'
/// shapes (`rows x cols`), `samples` times, on this machine: the practical ceiling for the
/// emulator's synaptic work. Weights and inputs are random within their bit widths, held as
/// `i16` (column-major, so each output is one contiguous dot product), accumulated in `i32`,
/// with AVX2 when the CPU has it.
pub fn ceiling_macs_per_s(shapes: &[(usize, usize, u8, u8)], samples: usize) -> f64 {
    let mut rng = crate::isa::rng::SplitMix64::new(1);
    let mut draw = |bits: u8| {
        let b = bits.clamp(2, 15);
        (rng.below(1 << b) as i64 - (1 << (b - 1))) as i16
    };
    let layers: Vec<(Vec<i16>, Vec<i16>, usize, usize)> = shapes
        .iter()
        .map(|&(rows, cols, wb, ab)| {
            let w = (0..rows * cols).map(|_| draw(wb)).collect();
            let x = (0..rows).map(|_| draw(ab)).collect();
            (w, x, rows, cols)
        })
        .collect();
    let mut out = vec![0i32; shapes.iter().map(|s| s.1).max().unwrap_or(0)];
    let mut sink = 0i64;
    let start = Instant::now();
    let mut macs = 0u64;
    let mut reps = 0;
    // At least `samples` passes and a tenth of a second, so the clock is meaningful.
    while reps < samples || start.elapsed().as_secs_f64() < 0.1 {
        for (w, x, rows, cols) in &layers {
            dense_mvm(w, x, *rows, &mut out[..*cols]);
            sink = sink.wrapping_add(out[0] as i64);
            macs += (*rows * *cols) as u64;
        }
        reps += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    macs as f64 / secs
}

/// `out[c] = sum_r w[c][r] * x[r]` with `w` column-major (`cols x rows`).
fn dense_mvm(w: &[i16], x: &[i16], rows: usize, out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { dense_mvm_avx2(w, x, rows, out) };
        return;
    }
    dense_mvm_portable(w, x, rows, out);
}

#[inline(always)]
fn dense_mvm_portable(w: &[i16], x: &[i16], rows: usize, out: &mut [i32]) {
    for (c, o) in out.iter_mut().enumerate() {
        *o = w[c * rows..(c + 1) * rows]
            .iter()
            .zip(x)
            .map(|(&a, &b)| a as i32 * b as i32)
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dense_mvm_avx2(w: &[i16], x: &[i16], rows: usize, out: &mut [i32]) {
    dense_mvm_portable(w, x, rows, out)
}

impl std::fmt::Display for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bench: {} on {}, {} training and {} inference samples, {:.2} s",
            self.network, self.data, self.train_samples, self.inference_samples, self.seconds
        )?;
        writeln!(
            f,
            "  emulated   {:.3e} MAC/s, {:.0} training samples/s, {:.3e} chip cycles/s",
            self.emulated_macs_per_s, self.samples_per_s, self.emulated_cycles_per_s
        )?;
        writeln!(
            f,
            "  ceiling    {:.3e} MAC/s (dense i16 matrix-vector kernel, same shapes, this machine)",
            self.ceiling_macs_per_s
        )?;
        writeln!(f, "  ratio      {:.3}", self.ratio)
    }
}
