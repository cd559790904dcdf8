//! Software references in 32-bit float, with no hardware model: the same network description
//! ([`sigchip_compiler::ValidNetwork`]), the same initial weights
//! ([`sigchip_compiler::quantize::initial_weights`]), the same data sets
//! ([`sigchip_emulator::data::Dataset`]) and the same sample order as the chip.
//!
//! - [`Algorithm::Sigprop`] ([`sigprop::SigpropF32`]): the chip's algorithm, formula for formula,
//!   in f32 with no quantization, no saturation and an exact softmax: the algorithmic reference
//!   the chip's fixed-point results are measured against.
//! - [`Algorithm::Backprop`] ([`backprop::BackpropF32`]): plain backpropagation with online SGD
//!   on the same architecture: the accuracy baseline. It cannot run on the forward-only chip
//!   (`sigchip compile --algorithm backprop` says why).
//!
//! [`train_f32`] drives either over a data set like `sigchip_emulator::train` drives the chip:
//! per epoch the same seeded shuffle, online (batch 1) training with the prediction of each
//! sample's forward pass counted before its update, then a test evaluation; at the end the
//! accuracy on both splits. Its [`F32Report`] uses the chip report's key names where they overlap.

pub mod backprop;
pub mod sigprop;
pub mod temporal;

use serde::Serialize;
use sigchip_compiler::ValidNetwork;
use sigchip_emulator::data::{Dataset, Split};
use sigchip_emulator::train::EpochLog;
use sigchip_isa::Activation;
use std::fmt;
use std::time::Instant;

pub use backprop::BackpropF32;
pub use sigprop::SigpropF32;
pub use temporal::TemporalF32;

/// A learning algorithm of the software references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// Signal propagation: forward passes only, each layer trained by its own local loss.
    Sigprop,
    /// Backpropagation of the output layer's cross-entropy through every layer.
    Backprop,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sigprop => "sigprop",
            Algorithm::Backprop => "backprop",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Algorithm> for sigchip_compiler::Algorithm {
    fn from(a: Algorithm) -> Self {
        match a {
            Algorithm::Sigprop => sigchip_compiler::Algorithm::Sigprop,
            Algorithm::Backprop => sigchip_compiler::Algorithm::Backprop,
        }
    }
}

/// Options of an f32 training run.
#[derive(Clone, Debug)]
pub struct F32Options {
    pub epochs: u32,
    /// Seed of the per-epoch shuffle (the chip's `TrainOptions::seed`).
    pub seed: u64,
}

/// A data set that does not fit the network.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("the data set does not fit the network: {data} has {data_len} values per sample, network `{network}` expects {network_input} inputs")]
    InputLength {
        data: String,
        data_len: usize,
        network: String,
        network_input: u32,
    },
    #[error("the data set does not fit the network: {data} has {data_classes} classes, network `{network}` has {network_classes}")]
    Classes {
        data: String,
        data_classes: usize,
        network: String,
        network_classes: u32,
    },
}

/// Checks that a data set fits the network's input and classes.
pub fn check_shapes(net: &ValidNetwork, data: &Dataset) -> Result<(), ReferenceError> {
    let desc = net.desc();
    if data.input_len != desc.input as usize {
        return Err(ReferenceError::InputLength {
            data: data.name.clone(),
            data_len: data.input_len,
            network: desc.name.clone(),
            network_input: desc.input,
        });
    }
    if data.classes > desc.classes as usize {
        return Err(ReferenceError::Classes {
            data: data.name.clone(),
            data_classes: data.classes,
            network: desc.name.clone(),
            network_classes: desc.classes,
        });
    }
    Ok(())
}

/// The f32 report: the chip report's key names where they overlap.
#[derive(Clone, Debug, Serialize)]
pub struct F32Report {
    pub network: String,
    pub data: String,
    /// Always `"f32"`.
    pub backend: String,
    /// `"sigprop"` or `"backprop"`.
    pub algorithm: String,
    pub epochs: u32,
    pub shuffle_seed: u64,
    pub train_samples: u64,
    pub accuracy: Accuracy,
    /// Whether training diverged: some parameter is no longer finite.
    pub diverged: bool,
    /// Wall-clock figures of the host: the only part that differs between identical runs.
    pub host: Host,
}

#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    /// Inference accuracy on the training split after training.
    pub train: f64,
    /// Inference accuracy on the test split after training.
    pub test: f64,
    pub per_epoch: Vec<EpochLog>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub seconds: f64,
    pub train_samples_per_second: f64,
}

impl F32Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

impl fmt::Display for F32Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} in {} ({}, no hardware model) on {}, {} epochs, {} training samples",
            self.network, self.backend, self.algorithm, self.data, self.epochs, self.train_samples
        )?;
        sigchip_emulator::report::write_accuracy(
            f,
            &self.accuracy.per_epoch,
            self.accuracy.train,
            self.accuracy.test,
        )?;
        if self.diverged {
            writeln!(
                f,
                "\nDIVERGED: parameters are no longer finite (activations grew without bound)"
            )?;
        }
        writeln!(
            f,
            "\nhost    {:.2} s, {:.0} training samples/s",
            self.host.seconds, self.host.train_samples_per_second
        )
    }
}

/// A model the training loop can drive: one online step, one inference.
pub trait Model {
    /// Trains on one sample (input already scaled to [0, 1]) and returns the prediction of the
    /// forward pass before the update.
    fn train_sample(&mut self, step: u64, x: &[f32], label: usize) -> usize;
    /// Called once before an evaluation pass (sigprop refreshes its class targets).
    fn begin_eval(&mut self);
    /// The prediction for one input.
    fn predict(&mut self, x: &[f32]) -> usize;
    /// The end of a mini-batch: pending updates join the weights, times `scale`.
    fn end_batch(&mut self, scale: f32);
    /// The start of a mini-batch with these labels, in sample order (the batch-contrastive
    /// losses see the whole batch).
    fn begin_batch(&mut self, _labels: &[usize]) {}
    /// The raw pixels of the sample about to be trained on or predicted, with the data set's
    /// maximum and the input encoder's sample key (networks with spiking inputs encode them as
    /// the chip's input port does).
    fn observe_pixels(&mut self, _pixels: &[u8], _max: u8, _key: u64) {}
    /// Whether every parameter is still a finite number (float has no saturation: a loss whose
    /// activations grow without bound ends in infinities and NaN).
    fn finite(&self) -> bool;
}

/// Trains `net` in f32 with `algorithm` on the training split of `data`, then evaluates it.
pub fn train_f32(
    net: &ValidNetwork,
    data: &Dataset,
    algorithm: Algorithm,
    opts: &F32Options,
    progress: &mut dyn FnMut(u64, u64, &str),
) -> Result<F32Report, ReferenceError> {
    check_shapes(net, data)?;
    match algorithm {
        Algorithm::Sigprop if net.desc().neuron != sigchip_compiler::NeuronDesc::Rate => {
            let mut m = TemporalF32::new(net);
            Ok(train_model(&mut m, net, data, algorithm, opts, progress))
        }
        Algorithm::Sigprop => {
            let mut m = SigpropF32::new(net);
            Ok(train_model(&mut m, net, data, algorithm, opts, progress))
        }
        Algorithm::Backprop => {
            let mut m = BackpropF32::new(net);
            Ok(train_model(&mut m, net, data, algorithm, opts, progress))
        }
    }
}

/// The training loop shared by both references (shapes already checked).
pub fn train_model(
    m: &mut dyn Model,
    net: &ValidNetwork,
    data: &Dataset,
    algorithm: Algorithm,
    opts: &F32Options,
    progress: &mut dyn FnMut(u64, u64, &str),
) -> F32Report {
    let started = Instant::now();
    let n = data.train.len();
    let total = opts.epochs as u64 * n as u64;
    let mut x = Vec::new();
    let mut step = 0u64;
    let (batch, anneal) = (
        net.desc().learning.batch as u64,
        net.desc().learning.anneal_every,
    );
    let mut per_epoch = Vec::new();
    for epoch in 0..opts.epochs {
        let mut correct = 0u64;
        let order = epoch_order(n, opts.seed, epoch);
        for (j, &i) in order.iter().enumerate() {
            if batch > 1 && (j as u64).is_multiple_of(batch) {
                let end = (j + batch as usize).min(n);
                let labels: Vec<usize> =
                    order[j..end].iter().map(|&i| data.train.label(i)).collect();
                m.begin_batch(&labels);
            }
            encode_input(data.train.image(i), data.max_value, &mut x);
            m.observe_pixels(data.train.image(i), data.max_value, step);
            let label = data.train.label(i);
            correct += (m.train_sample(step, &x, label) == label) as u64;
            step += 1;
            // Mini-batches end as on the chip: every `batch` samples of an epoch and with the
            // epoch, over `batch`, at the learning rate of that moment.
            if batch > 1 && (j as u64 + 1).is_multiple_of(batch) {
                m.end_batch(anneal_scale(anneal, step) / batch as f32);
            }
            if j % 256 == 0 {
                progress(epoch as u64 * n as u64 + j as u64, total, "training");
            }
        }
        if batch > 1 && !(n as u64).is_multiple_of(batch) {
            m.end_batch(anneal_scale(anneal, step) / batch as f32);
        }
        let test = evaluate(m, &data.test, data.max_value, progress);
        per_epoch.push(EpochLog {
            epoch: epoch + 1,
            train_online: correct as f64 / n.max(1) as f64,
            test,
        });
    }
    progress(total, total, "training");
    let train = evaluate(m, &data.train, data.max_value, progress);
    let test = evaluate(m, &data.test, data.max_value, progress);
    let seconds = started.elapsed().as_secs_f64();
    F32Report {
        network: net.desc().name.clone(),
        data: data.name.clone(),
        backend: "f32".into(),
        algorithm: algorithm.name().into(),
        epochs: opts.epochs,
        shuffle_seed: opts.seed,
        train_samples: step,
        accuracy: Accuracy {
            train,
            test,
            per_epoch,
        },
        diverged: !m.finite(),
        host: Host {
            seconds,
            train_samples_per_second: step as f64 / seconds.max(1e-9),
        },
    }
}

/// Accuracy of `m` over a split.
pub fn evaluate(
    m: &mut dyn Model,
    split: &Split,
    max: u8,
    progress: &mut dyn FnMut(u64, u64, &str),
) -> f64 {
    m.begin_eval();
    let mut x = Vec::new();
    let mut correct = 0u64;
    for i in 0..split.len() {
        encode_input(split.image(i), max, &mut x);
        m.observe_pixels(split.image(i), max, EVAL_KEY | i as u64);
        correct += (m.predict(&x) == split.label(i)) as u64;
        if i % 256 == 0 {
            progress(i as u64, split.len() as u64, "inference");
        }
    }
    if split.is_empty() {
        0.0
    } else {
        correct as f64 / split.len() as f64
    }
}

/// The input encoder's key of evaluation sample `i` is `EVAL_KEY | i` (training samples use
/// their training step), as on the chip.
pub use sigchip_emulator::train::EVAL_KEY;

/// The order of the training samples in `epoch`: the chip's own shuffle.
pub use sigchip_emulator::train::epoch_order;

/// Raw pixels to floats: `p / max` (a `max` of 0 counts as 1, as on the chip).
pub fn encode_input(pixels: &[u8], max: u8, out: &mut Vec<f32>) {
    let max = max.max(1) as f32;
    out.clear();
    out.extend(pixels.iter().map(|&p| p as f32 / max));
}

/// A dense layer: `out[c] = f(sum_r x[r] w[r][c] + b[c])`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub inputs: usize,
    pub width: usize,
    pub bias: bool,
    pub activation: Activation,
    /// `(inputs + bias) x width`, row-major; the bias is the last row (its input is 1).
    pub weights: Vec<f32>,
    /// Mini-batches: the updates summed since the last [`Dense::flush`] (`None` online).
    pub pending: Option<Vec<f32>>,
}

impl Dense {
    /// `out = W^T x + b`, then the activation; skips zero inputs (they add nothing).
    pub fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        debug_assert_eq!(x.len(), self.inputs);
        out.clear();
        if self.bias {
            out.extend_from_slice(self.row(self.inputs));
        } else {
            out.resize(self.width, 0.0);
        }
        for (r, &xr) in x.iter().enumerate() {
            if xr != 0.0 {
                for (o, &w) in out.iter_mut().zip(self.row(r)) {
                    *o += xr * w;
                }
            }
        }
        for o in out.iter_mut() {
            *o = activate(self.activation, *o);
        }
    }

    /// `W[r][c] -= lr * delta[c] * x[r]`, the bias row with input 1.
    /// With mini-batches the update goes into `pending` instead.
    pub fn update(&mut self, x: &[f32], delta: &[f32], lr: f32) {
        let width = self.width;
        let target = match &mut self.pending {
            Some(p) => p,
            None => &mut self.weights,
        };
        let mut apply = |r: usize, xr: f32| {
            let s = lr * xr;
            for (w, &d) in target[r * width..(r + 1) * width].iter_mut().zip(delta) {
                *w -= s * d;
            }
        };
        for (r, &xr) in x.iter().enumerate() {
            if xr != 0.0 {
                apply(r, xr);
            }
        }
        if self.bias {
            apply(self.inputs, 1.0);
        }
    }

    /// Adds `scale` times the pending updates to the weights and clears them (the end of a
    /// mini-batch: `scale` is the learning-rate factor over the batch size).
    pub fn flush(&mut self, scale: f32) {
        if let Some(p) = &mut self.pending {
            for (w, g) in self.weights.iter_mut().zip(p.iter_mut()) {
                *w += *g * scale;
                *g = 0.0;
            }
        }
    }

    /// Keeps updates pending until [`Dense::flush`] when `batched`.
    pub fn batched(mut self, batched: bool) -> Self {
        self.pending = batched.then(|| vec![0.0; self.weights.len()]);
        self
    }

    /// Row `r` of the weights (row `inputs` is the bias).
    pub fn row(&self, r: usize) -> &[f32] {
        &self.weights[r * self.width..(r + 1) * self.width]
    }
}

/// The activation: relu, `leaky_relu(shift)` (`x < 0 ? x * 2^-shift : x`) or identity.
#[inline]
pub fn activate(f: Activation, a: f32) -> f32 {
    match f {
        Activation::Relu => a.max(0.0),
        Activation::LeakyRelu { shift } if a < 0.0 => a * (-(shift as f32)).exp2(),
        _ => a,
    }
}

/// The activation's derivative as a function of its output `h`, as the chip evaluates it: relu
/// `h > 0 ? 1 : 0`, leaky `h < 0 ? 2^-shift : 1`, identity 1. For these activations the sign of
/// the output is the sign of the pre-activation, so this is the true derivative (at 0, relu's is
/// taken as 0 and leaky's as 1).
#[inline]
pub fn derivative(f: Activation, h: f32) -> f32 {
    match f {
        Activation::Relu => {
            if h > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu { shift } if h < 0.0 => (-(shift as f32)).exp2(),
        _ => 1.0,
    }
}

/// `p = softmax(s)` (exact, max-subtracted) minus the one-hot of `label`, into `err`.
pub fn softmax_err(s: &[f32], label: usize, err: &mut Vec<f32>) {
    let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    err.clear();
    err.extend(s.iter().map(|&v| (v - m).exp()));
    let sum: f32 = err.iter().sum();
    for (k, e) in err.iter_mut().enumerate() {
        *e = *e / sum - if k == label { 1.0 } else { 0.0 };
    }
}

/// Index of the largest value; ties go to the first (as the chip's output port).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// The learning-rate factor before training sample `step`: halved every `every` samples, as
/// the chip's shifts grow by one.
pub fn anneal_scale(every: Option<u64>, step: u64) -> f32 {
    every.map_or(1.0, |n| 0.5f32.powi((step / n).min(31) as i32))
}

/// Learning rate `2^-shift`.
pub fn lr(shift: u8) -> f32 {
    (-(shift as f32)).exp2()
}

/// The learning rate shifts of the chip layers in depth order: hidden layer `i` uses
/// `layers[i].lr_shift` or `learning.lr_shift`; the output layer `learning.readout_lr_shift` or
/// `learning.lr_shift`.
pub fn lr_shifts(net: &ValidNetwork) -> (Vec<u8>, u8) {
    let d = net.desc();
    let hidden = d
        .layers
        .iter()
        .map(|l| l.lr_shift.unwrap_or(d.learning.lr_shift))
        .collect();
    (
        hidden,
        d.learning.readout_lr_shift.unwrap_or(d.learning.lr_shift),
    )
}
