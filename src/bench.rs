//! `sigchip bench`: how fast the emulator runs a fixed training and inference workload, against
//! the practical ceiling measured in the same run on the same machine: a plain dense integer
//! matrix-vector kernel of the network's shapes and bit widths (every row driven, no timing
//! model, no events), which is what this CPU does with the same multiply-accumulates.

use crate::emulator::{self, data::Dataset, engine::EngineKind, train::Schedule, TrainOptions};
use crate::isa::Program;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// What a bench run measured (all rates per second of host time).
#[derive(Clone, Debug, Serialize)]
pub struct Bench {
    pub network: String,
    pub data: String,
    pub engine: EngineKind,
    /// Host threads the emulator (timing threads of training, inference chunks) and the ceiling
    /// kernel ran on.
    pub threads: usize,
    /// Whether the kernels used SIMD instructions.
    pub simd: bool,
    pub train_samples: usize,
    /// Inference samples: the test samples, then the training samples again (the final
    /// evaluation of `sigchip train`).
    pub inference_samples: usize,
    /// Emulated synaptic operations (multiply-accumulates) per second over the whole workload.
    pub emulated_macs_per_s: f64,
    /// The dense integer kernel's multiply-accumulates per second on the same shapes, run on
    /// every thread at once.
    pub ceiling_macs_per_s: f64,
    /// `emulated_macs_per_s / ceiling_macs_per_s`.
    pub ratio: f64,
    /// Training alone: emulated synaptic operations per second, and that over the ceiling.
    pub train_macs_per_s: f64,
    pub train_ratio: f64,
    /// With more than one thread, training computes on one thread and replays the timing on
    /// the others: the training's synaptic operations per second of the computing thread's
    /// arithmetic alone, and that over one thread's share of the ceiling. What training would
    /// reach if the exact timing cost nothing (`None` on one thread).
    pub arithmetic_macs_per_s: Option<f64>,
    pub arithmetic_ratio: Option<f64>,
    /// Training samples per second of training time.
    pub samples_per_s: f64,
    /// Emulated chip cycles of training per second of training time.
    pub emulated_cycles_per_s: f64,
    /// Inferences per second of evaluation time (the inference runs and their target
    /// refreshes).
    pub inferences_per_s: f64,
    /// Wall time: the whole workload, and its training part.
    pub seconds: f64,
    pub train_seconds: f64,
    /// Peak resident memory of this process (Linux; `None` elsewhere), against the bound it
    /// should stay under: twice the modelled chip's SRAM (every core's crossbar, data SRAM,
    /// route table and instruction memory) plus the data set as loaded (the full data set, not
    /// the workload's part).
    pub peak_rss_bytes: Option<u64>,
    pub chip_sram_bytes: u64,
    pub data_bytes: u64,
}

/// The process's peak resident memory (`VmHWM` of /proc/self/status), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs the workload on `engine`: `train` samples of training (one epoch, sequential schedule),
/// the inference of `test` samples and of the `train` samples, then the ceiling kernel.
pub fn bench(
    program: Program,
    data: &Dataset,
    train: usize,
    test: usize,
    engine: EngineKind,
) -> anyhow::Result<Bench> {
    // Copies of the workload's samples only, not of the whole data set.
    let d = Dataset {
        name: data.name.clone(),
        input_len: data.input_len,
        classes: data.classes,
        max_value: data.max_value,
        train: data.train.head(train),
        test: data.test.head(test),
    };
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
    let mut opts = TrainOptions::new(1, 1);
    opts.schedule = Schedule::Sequential;
    opts.engine = engine;
    let (_, report) = emulator::train(program.clone(), &d, &opts, &mut |_, _, _| {})?;
    let (seconds, train_seconds) = (report.host.seconds, report.host.train_seconds.max(1e-9));
    let macs = report.host.emulated_macs_per_second * seconds;
    let train_macs = report.events.train.synaptic_ops as f64;
    let inferences = d.test.len() + d.train.len();
    let core = crate::isa::memory::core_capacity(&program).total();
    let chip_sram_bytes = core * program.chip.core_count() as u64 / 8;
    let data_bytes = [&data.train, &data.test]
        .iter()
        .map(|s| (s.images.len() + s.labels.len()) as u64)
        .sum();
    let threads = rayon::current_num_threads();
    // Every thread at once: the multiply-accumulates of all of them over the wall time.
    let started = Instant::now();
    let ceiling_macs: u64 = (0..threads)
        .into_par_iter()
        .map(|_| dense_macs(&shapes, 200))
        .sum();
    let ceiling = ceiling_macs as f64 / started.elapsed().as_secs_f64();
    let arithmetic = report
        .host
        .train_arithmetic_seconds
        .map(|s| train_macs / s.max(1e-9));
    Ok(Bench {
        network: program.name.clone(),
        data: d.name.clone(),
        engine,
        threads,
        simd: emulator::kernels::simd(),
        train_samples: d.train.len(),
        inference_samples: inferences,
        emulated_macs_per_s: macs / seconds,
        ceiling_macs_per_s: ceiling,
        ratio: macs / seconds / ceiling,
        train_macs_per_s: train_macs / train_seconds,
        train_ratio: train_macs / train_seconds / ceiling,
        arithmetic_macs_per_s: arithmetic,
        arithmetic_ratio: arithmetic.map(|a| a / (ceiling / threads as f64)),
        samples_per_s: d.train.len() as f64 / train_seconds,
        emulated_cycles_per_s: report.timing.train_cycles as f64 / train_seconds,
        inferences_per_s: inferences as f64 / report.host.eval_seconds.max(1e-9),
        seconds,
        train_seconds,
        peak_rss_bytes: peak_rss_bytes(),
        chip_sram_bytes,
        data_bytes,
    })
}

/// The multiply-accumulates of a dense integer matrix-vector product over the layers' shapes
/// (`rows x cols`), run at least `samples` times and for at least a tenth of a second: the
/// practical ceiling for the emulator's synaptic work, over the time it took. Weights and inputs
/// are random within their bit widths, held as `i16` (column-major, so each output is one
/// contiguous dot product), accumulated in `i32`, with AVX2 when the kernels may use it (see
/// `--no-simd`).
fn dense_macs(shapes: &[(usize, usize, u8, u8)], samples: usize) -> u64 {
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
    std::hint::black_box(sink);
    macs
}

/// `out[c] = sum_r w[c][r] * x[r]` with `w` column-major (`cols x rows`).
fn dense_mvm(w: &[i16], x: &[i16], rows: usize, out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if emulator::kernels::simd() {
        // SAFETY: the CPU supports AVX2 (`simd` checks it).
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
            "bench: {} on {}, {:?} engine, {} threads{}: {} training samples, {} inferences, {:.2} s",
            self.network,
            self.data,
            self.engine,
            self.threads,
            if self.simd { ", SIMD" } else { ", no SIMD" },
            self.train_samples,
            self.inference_samples,
            self.seconds
        )?;
        writeln!(
            f,
            "  training   {:.2} s: {:.0} samples/s, {:.3e} chip cycles/s, {:.3e} MAC/s",
            self.train_seconds,
            self.samples_per_s,
            self.emulated_cycles_per_s,
            self.train_macs_per_s
        )?;
        writeln!(
            f,
            "  inference  {:.2} s: {:.0} inferences/s",
            self.inference_samples as f64 / self.inferences_per_s.max(1e-9),
            self.inferences_per_s
        )?;
        writeln!(
            f,
            "  emulated   {:.3e} MAC/s over the whole workload",
            self.emulated_macs_per_s
        )?;
        writeln!(
            f,
            "  ceiling    {:.3e} MAC/s (dense i16 matrix-vector kernel, same shapes, on every thread)",
            self.ceiling_macs_per_s
        )?;
        writeln!(
            f,
            "  ratio      {:.3} (training alone {:.3})",
            self.ratio, self.train_ratio
        )?;
        if let (Some(a), Some(r)) = (self.arithmetic_macs_per_s, self.arithmetic_ratio) {
            writeln!(
                f,
                "  arithmetic {a:.3e} MAC/s of training on the computing thread alone: {r:.3} of one thread's ceiling (the bound with free timing)"
            )?;
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let bound = 2 * (self.chip_sram_bytes + self.data_bytes);
        match self.peak_rss_bytes {
            Some(rss) => writeln!(
                f,
                "  memory     peak {:.1} MiB resident; bound {:.1} MiB = 2 x ({:.1} MiB chip SRAM + {:.1} MiB data){}",
                mib(rss),
                mib(bound),
                mib(self.chip_sram_bytes),
                mib(self.data_bytes),
                if rss <= bound { "" } else { ": OVER" }
            ),
            None => writeln!(f, "  memory     peak resident memory unknown on this system"),
        }
    }
}
