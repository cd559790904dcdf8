//! Training and inference runs over a data set: the sample loop, the sequential schedule and
//! the measurements that go into the [`Report`].
//!
//! Schedule (sequential): every `target_refresh` training samples the `targets` phase runs; each
//! training sample then runs `forward` followed, on each core, by `learn` (a layer starts
//! learning as soon as its own forward work is done, while later layers still compute: no update
//! locking); a barrier (`costs.sync`) separates samples. With mini-batches (`batch` > 1) the
//! `apply` phase ends every batch of `batch` samples, and each epoch's last, partial batch; with
//! a batch-contrastive loss the `batch` phase starts each batch (the input port sends its labels).
//! Inference runs `forward` only.

use crate::data::{Dataset, Split};
use crate::machine::{Counters, EmuError, Machine, Phase};
use crate::report::{self, Report};
use crate::timing::Cycles;
use sigchip_isa::rng::SplitMix64;
use sigchip_isa::{Program, QFormat};
use std::time::Instant;

/// Options of a training run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: u32,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
}

/// Progress callback: (samples done, samples total, phase name).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64, &str);

/// The order of the training samples in `epoch`: a Fisher-Yates shuffle driven by SplitMix64
/// seeded `seed ^ epoch * 0x9E37_79B9_7F4A_7C15`. The software references use it too, so every
/// backend sees the samples in the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// Converts raw pixels to the input port's format: `round(p / max * max_raw)`, so the full
/// scale maps to the format's largest value and nothing saturates (pixels above the data set's
/// `max` are clamped to it).
pub fn encode_input(pixels: &[u8], max: u8, fmt: QFormat, out: &mut Vec<i32>) {
    out.clear();
    let max = max.max(1) as i64;
    let top = fmt.max_raw();
    out.extend(
        pixels
            .iter()
            .map(|&p| (((p as i64).min(max) * top + max / 2) / max) as i32),
    );
}

/// Checks that a data set fits the program's input port and classes.
pub fn check_shapes(program: &Program, data: &Dataset) -> Result<(), EmuError> {
    let net = &program.network;
    if data.input_len != net.input_len as usize {
        return Err(EmuError::Shape(format!(
            "{} has {} values per sample, program `{}` expects {} inputs",
            data.name, data.input_len, program.name, net.input_len
        )));
    }
    if data.classes > net.classes as usize {
        return Err(EmuError::Shape(format!(
            "{} has {} classes, program `{}` has {}",
            data.name, data.classes, program.name, net.classes
        )));
    }
    Ok(())
}

/// Accuracy and timing of an inference pass over a split.
#[derive(Clone, Debug, Default)]
pub struct EvalResult {
    pub correct: u64,
    /// Per layer: samples whose nearest class target was the label (`None` for layers without
    /// targets).
    pub layer_correct: Vec<Option<u64>>,
    pub samples: u64,
    pub cycles: Cycles,
    pub latency: Cycles,
}

impl EvalResult {
    pub fn accuracy(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.correct as f64 / self.samples as f64
        }
    }
}

/// Refreshes the class targets (when any layer keeps targets) and returns the cycles it took.
fn refresh_targets(m: &mut Machine) -> Result<Cycles, EmuError> {
    if m.program().layers.iter().any(|l| l.keeps_targets) {
        Ok(m.run(&[Phase::Targets], 0, None, None)?.end)
    } else {
        Ok(0)
    }
}

/// Ends a mini-batch (the `apply` phase). Returns its cycles.
fn apply_batch(m: &mut Machine) -> Result<Cycles, EmuError> {
    Ok(m.run(&[Phase::Apply], 0, None, None)?.end)
}

/// Inference over a split: the targets are refreshed first, then each sample runs `forward`.
pub fn evaluate(
    m: &mut Machine,
    split: &Split,
    max: u8,
    progress: Progress,
) -> Result<EvalResult, EmuError> {
    refresh_targets(m)?;
    let fmt = m.program().network.input_format;
    let sync = m.program().chip.costs.sync as u64;
    let mut x = Vec::new();
    let mut r = EvalResult::default();
    for i in 0..split.len() {
        encode_input(split.image(i), max, fmt, &mut x);
        let res = m.run(&[Phase::Forward], 0, Some(&x), None)?;
        r.samples += 1;
        r.correct += (res.prediction == Some(split.label(i))) as u64;
        let layers = m.layer_predictions();
        r.layer_correct.resize(layers.len(), None);
        for (c, p) in r.layer_correct.iter_mut().zip(layers) {
            if let Some(p) = p {
                *c = Some(c.unwrap_or(0) + (p == split.label(i)) as u64);
            }
        }
        r.cycles += res.end + sync;
        r.latency += res.output_at.unwrap_or(res.end);
        if i % 256 == 0 {
            progress(i as u64, split.len() as u64, "inference");
        }
    }
    Ok(r)
}

/// One epoch of the training log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochLog {
    pub epoch: u32,
    /// Fraction of training samples predicted right by the forward pass before their update.
    pub train_online: f64,
    pub test: f64,
}

/// Trains on the data set's training split and evaluates on both splits.
pub fn train(
    program: Program,
    data: &Dataset,
    opts: &TrainOptions,
    progress: Progress,
) -> Result<(Program, Report), EmuError> {
    check_shapes(&program, data)?;
    let started = Instant::now();
    let mut m = Machine::new(program)?;
    let net = m.program().network.clone();
    let sync = m.program().chip.costs.sync as u64;
    let n = data.train.len();
    let total = opts.epochs as u64 * n as u64;
    let mut x = Vec::new();
    let mut train_cycles: Cycles = 0;
    let mut target_cycles: Cycles = 0;
    let mut epochs = Vec::new();
    let mut step = 0u64;
    let mut train_counters = Counters::default();
    let contrastive = m.program().layers.iter().any(|l| l.loss.is_contrastive());
    for epoch in 0..opts.epochs {
        let before = m.counters.clone();
        let order = epoch_order(n, opts.seed, epoch);
        let mut correct = 0u64;
        for (j, &i) in order.iter().enumerate() {
            if step.is_multiple_of(net.target_refresh as u64) {
                let t = refresh_targets(&mut m)?;
                target_cycles += t;
                train_cycles += t + sync;
            }
            if contrastive && (j as u64).is_multiple_of(net.batch as u64) {
                let end = (j + net.batch as usize).min(n);
                let labels: Vec<usize> =
                    order[j..end].iter().map(|&i| data.train.label(i)).collect();
                train_cycles += m.begin_batch(&labels)? + sync;
            }
            encode_input(
                data.train.image(i),
                data.max_value,
                net.input_format,
                &mut x,
            );
            let label = data.train.label(i);
            let res = m.run(&[Phase::Forward, Phase::Learn], 0, Some(&x), Some(label))?;
            m.next_update_step();
            correct += (res.prediction == Some(label)) as u64;
            train_cycles += res.end + sync;
            step += 1;
            // Batches start with each epoch.
            if net.batch > 1 && (j as u64 + 1).is_multiple_of(net.batch as u64) {
                train_cycles += apply_batch(&mut m)? + sync;
            }
            if j % 256 == 0 {
                progress(epoch as u64 * n as u64 + j as u64, total, "training");
            }
        }
        // An epoch ends its last, partial mini-batch.
        if net.batch > 1 && !(n as u64).is_multiple_of(net.batch as u64) {
            train_cycles += apply_batch(&mut m)? + sync;
        }
        train_counters.add(&m.counters.since(&before));
        let test = evaluate(&mut m, &data.test, data.max_value, progress)?;
        epochs.push(EpochLog {
            epoch: epoch + 1,
            train_online: correct as f64 / n.max(1) as f64,
            test: test.accuracy(),
        });
    }
    progress(total, total, "training");
    let train_eval = evaluate(&mut m, &data.train, data.max_value, progress)?;
    let before = m.counters.clone();
    let test_eval = evaluate(&mut m, &data.test, data.max_value, progress)?;
    let test_counters = m.counters.since(&before);
    let trained = m.trained_program();
    let runs = report::Runs {
        train_samples: step,
        train_cycles,
        target_cycles,
        train_eval,
        test_eval,
        epochs,
        epochs_run: opts.epochs,
        shuffle_seed: opts.seed,
        seconds: started.elapsed().as_secs_f64(),
        synaptic_ops: m.counters.synaptic_ops,
    };
    let report = Report::new(&trained, &data.name, &train_counters, &test_counters, runs);
    Ok((trained, report))
}

/// Inference only, over both splits.
pub fn run(program: Program, data: &Dataset, progress: Progress) -> Result<Report, EmuError> {
    check_shapes(&program, data)?;
    let started = Instant::now();
    let mut m = Machine::new(program)?;
    let train_eval = evaluate(&mut m, &data.train, data.max_value, progress)?;
    let before = m.counters.clone();
    let test_eval = evaluate(&mut m, &data.test, data.max_value, progress)?;
    let test_counters = m.counters.since(&before);
    let runs = report::Runs {
        train_samples: 0,
        train_cycles: 0,
        target_cycles: 0,
        train_eval,
        test_eval,
        epochs: Vec::new(),
        epochs_run: 0,
        shuffle_seed: 0,
        seconds: started.elapsed().as_secs_f64(),
        synaptic_ops: m.counters.synaptic_ops,
    };
    let program = m.trained_program();
    Ok(Report::new(
        &program,
        &data.name,
        &Counters::default(),
        &test_counters,
        runs,
    ))
}
