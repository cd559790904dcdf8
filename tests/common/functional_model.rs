//! An independent functional model of a sigprop network on the chip: whole layers, no tiles,
//! no routes, no cycles.
//!
//! It is written from the documented semantics of the instructions (isa/src/instr.rs) and the
//! training loop (emulator/src/train.rs), not from the emulator's kernels. The only primitives it
//! shares with the emulator are the rounding and saturation of `sigchip_isa::fixed_point`, the
//! counter-based random bits of `sigchip_isa::rng` and the `exp2-lut32` table
//! `sigchip_emulator::kernels::EXP2_LUT`; everything else (matrix products, activations, the
//! softmax, errors, updates) is spelled out here in plain `i64` arithmetic.
//!
//! Learned targets (`deltat`, `updt`, `updp`) are modelled for `label_direct` and `l2`.

#![allow(dead_code)]

use sigchip::emulator::kernels::EXP2_LUT;
use sigchip::isa::fixed_point::{round_shift, stochastic_shift};
use sigchip::isa::rng::{fixed_projection_row, stochastic_bits, stochastic_row_key};
use sigchip::isa::Pre;
use sigchip::isa::{
    Activation, LocalLoss, Program, ProjectionMode, QFormat, Readout, Rounding, TargetMode,
};

/// `log2(e)` in Q2.14, the constant of the `exp2-lut32` softmax.
const LOG2E_Q14: i64 = 23637;

/// A matrix as rows of raw values.
pub type Matrix = Vec<Vec<i32>>;

/// How many times each (row, col) of each layer is held by a core, `[layer][row][col]`.
pub fn coverage(p: &Program) -> Vec<Vec<Vec<u32>>> {
    let mut cov: Vec<Vec<Vec<u32>>> = p
        .layers
        .iter()
        .map(|l| vec![vec![0; l.width as usize]; l.rows() as usize])
        .collect();
    for core in &p.cores {
        let t = &core.tile;
        let m = &mut cov[core.layer.index() - 1];
        for r in t.row_start..t.row_start + t.rows {
            for c in t.col_start..t.col_start + t.cols {
                // A tile outside its layer is a coverage error too: count it where it cannot hide.
                match m
                    .get_mut(r as usize)
                    .and_then(|row| row.get_mut(c as usize))
                {
                    Some(n) => *n += 1,
                    None => panic!(
                        "{} holds ({r}, {c}) outside its {}x{} layer",
                        core.id,
                        m.len(),
                        m.first().map_or(0, Vec::len)
                    ),
                }
            }
        }
    }
    cov
}

/// Every layer's whole weight matrix (`rows() x width`, the bias row last), assembled from the
/// cores' tiles. Panics unless every weight is held by exactly one core.
pub fn assemble_weights(p: &Program) -> Vec<Matrix> {
    let mut out: Vec<Vec<Vec<Option<i32>>>> = p
        .layers
        .iter()
        .map(|l| vec![vec![None; l.width as usize]; l.rows() as usize])
        .collect();
    for core in &p.cores {
        let t = &core.tile;
        let img = &core.weights;
        assert_eq!((img.rows, img.cols), (t.rows, t.cols), "{}", core.id);
        for r in 0..t.rows {
            for c in 0..t.cols {
                let cell = &mut out[core.layer.index() - 1][(t.row_start + r) as usize]
                    [(t.col_start + c) as usize];
                assert!(
                    cell.is_none(),
                    "weight ({}, {}) of {} is held twice",
                    t.row_start + r,
                    t.col_start + c,
                    core.layer
                );
                *cell = Some(img.data[(r * t.cols + c) as usize]);
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(l, m)| {
            m.into_iter()
                .enumerate()
                .map(|(r, row)| {
                    row.into_iter()
                        .enumerate()
                        .map(|(c, v)| {
                            v.unwrap_or_else(|| {
                                panic!("weight ({r}, {c}) of layer{} is held by no core", l + 1)
                            })
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Layer 1's target projection `(classes + 1) x width` (last row: its bias) and its fraction
/// bits, assembled from layer 1's column reducers (`row_tile == 0`).
pub fn assemble_projection(p: &Program) -> Option<(i32, Matrix)> {
    let l1 = p.layers.first()?;
    let info = l1
        .projection
        .filter(|i| i.mode != ProjectionMode::ToInput)?;
    let rows = p.network.classes as usize + 1;
    let mut s: Vec<Vec<Option<i32>>> = vec![vec![None; l1.width as usize]; rows];
    for core in p.cores.iter().filter(|c| c.layer.0 == 1) {
        let t = &core.tile;
        match (&core.projection, t.row_tile == 0) {
            (Some(img), true) => {
                assert_eq!((img.rows as usize, img.cols), (rows, t.cols), "{}", core.id);
                for (r, row) in s.iter_mut().enumerate() {
                    for c in 0..t.cols {
                        let cell = &mut row[(t.col_start + c) as usize];
                        assert!(cell.is_none(), "projection ({r}, {c}) held twice");
                        *cell = Some(img.data[r * t.cols as usize + c as usize]);
                    }
                }
            }
            (None, false) => {}
            (Some(_), false) => panic!("{} holds a projection but is no reducer", core.id),
            (None, true) => {
                assert_eq!(
                    info.mode,
                    ProjectionMode::FixedRandom,
                    "{} has no learned projection",
                    core.id
                );
                // A fixed projection is regenerated: row r's LFSR, stepped to this tile's columns.
                for (r, row) in s.iter_mut().enumerate() {
                    let values = fixed_projection_row(
                        p.network.seed,
                        r as u32,
                        t.col_start,
                        t.cols,
                        info.format.bits,
                    );
                    for (c, v) in values.into_iter().enumerate() {
                        let cell = &mut row[t.col_start as usize + c];
                        assert!(cell.is_none(), "projection ({r}, {c}) held twice");
                        *cell = Some(v);
                    }
                }
            }
        }
    }
    let s = s
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| v.expect("every projection column is held by a reducer"))
                .collect()
        })
        .collect();
    Some((info.format.frac as i32, s))
}

/// One whole layer.
#[derive(Clone, Debug)]
pub struct Layer {
    /// 1-based, as the random-bit keys use it.
    pub number: u16,
    pub inputs: usize,
    pub width: usize,
    pub bias: bool,
    pub activation: Activation,
    pub weight_format: QFormat,
    pub out_format: QFormat,
    pub wf: i32,
    pub inf: i32,
    pub outf: i32,
    pub loss: LocalLoss,
    pub keeps_targets: bool,
    pub lr_shift: i32,
    pub rounding: Rounding,
    /// `(inputs + bias) x width`.
    pub w: Matrix,
    /// `classes x width`: the class targets, when the layer keeps them.
    pub targets: Matrix,
    /// Mini-batches: the per-synapse sums of `-delta * x` since the last apply, and the
    /// fraction bits of the deltas they sum.
    pub grad: Option<Vec<Vec<i64>>>,
    pub grad_frac: i32,
}

/// The whole network and its training state.
#[derive(Clone, Debug)]
pub struct Model {
    pub layers: Vec<Layer>,
    /// Layer 1's projection: fraction bits and `(classes + 1) x width` values.
    pub projection: Option<(i32, Matrix)>,
    pub classes: usize,
    pub readout: Readout,
    pub seed: u64,
    pub target_refresh: u64,
    pub acc: QFormat,
    pub prob: QFormat,
    /// Training samples processed so far.
    pub steps: u64,
    /// Every this many samples the learning-rate shifts grow by one.
    pub anneal_every: Option<u64>,
    /// Samples per weight update.
    pub batch: u32,
    /// `to_input`: the projected target of each class, an input-shaped vector (LFSR row
    /// `class` over the inputs, uniform in [-1, 1) in the input format).
    pub input_projection: Option<Matrix>,
    /// The labels of the current mini-batch, in sample order (batch-contrastive losses).
    pub batch_labels: Vec<usize>,
    /// `targets: learned`: the target stream's error updates weights too.
    pub targets_learned: bool,
    /// Layer 1's projection is stored and learns, in this format.
    pub projection_learned: bool,
    pub projection_format: Option<QFormat>,
}

/// What one forward pass gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    /// `xs[l]` is layer `l`'s input (without the bias), `hs[l]` its output.
    pub xs: Vec<Vec<i32>>,
    pub hs: Vec<Vec<i32>>,
    /// What the output port sees: the output layer's outputs, or the last layer's scores.
    pub output: Vec<i64>,
    pub prediction: usize,
}

/// Index of the largest value; ties go to the first.
pub fn argmax(v: &[i64]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

impl Layer {
    /// The layer's crossbar input: `x` followed by the bias axon (a one in the input format).
    fn with_bias(&self, x: &[i32]) -> Vec<i64> {
        assert_eq!(x.len(), self.inputs, "layer{} input length", self.number);
        let mut v: Vec<i64> = x.iter().map(|&x| x as i64).collect();
        if self.bias {
            v.push(1i64 << self.inf);
        }
        v
    }

    /// `f(v)`: relu, leaky relu (arithmetic shift of negatives) or identity.
    fn f(&self, v: i64) -> i64 {
        match self.activation {
            Activation::Relu => v.max(0),
            Activation::LeakyRelu { shift } => {
                if v < 0 {
                    v >> shift
                } else {
                    v
                }
            }
            Activation::Identity => v,
        }
    }

    /// `f'` applied to an error, by the neuron's output `h`.
    fn f_prime(&self, h: i32, d: i64) -> i64 {
        match self.activation {
            Activation::Relu => {
                if h > 0 {
                    d
                } else {
                    0
                }
            }
            Activation::LeakyRelu { shift } => {
                if h < 0 {
                    d >> shift
                } else {
                    d
                }
            }
            Activation::Identity => d,
        }
    }

    /// The neuron unit on an accumulator value (already saturated to the accumulator format).
    fn neuron(&self, a: i64) -> i32 {
        let v = round_shift(a, self.wf + self.inf - self.outf);
        self.out_format.saturate(self.f(v)).0
    }

    fn forward(&self, x: &[i32], acc: QFormat) -> Vec<i32> {
        let xin = self.with_bias(x);
        (0..self.width)
            .map(|c| {
                let sum: i64 = xin
                    .iter()
                    .enumerate()
                    .map(|(r, &xr)| self.w[r][c] as i64 * xr)
                    .sum();
                self.neuron(acc.saturate(sum).0 as i64)
            })
            .collect()
    }

    /// The local loss's scores and their fraction bits.
    fn scores(&self, h: &[i32]) -> (Vec<i64>, i32) {
        match self.loss {
            // Every layer that keeps targets scores them by dot product (the nearest-target
            // readout reads these).
            LocalLoss::LabelDirect
            | LocalLoss::L2
            | LocalLoss::Hebbian { .. }
            | LocalLoss::TargetMax
            | LocalLoss::TargetMaxAll
            | LocalLoss::TargetTopK { .. } => (
                self.targets
                    .iter()
                    .map(|t| h.iter().zip(t).map(|(&h, &t)| h as i64 * t as i64).sum())
                    .collect(),
                2 * self.outf,
            ),
            LocalLoss::CrossEntropy => (h.iter().map(|&h| h as i64).collect(), self.outf),
        }
    }
}

/// `exp2-lut32`: `2^((s - m) log2 e)` for a score `s` at most the maximum `m`, both with `frac`
/// fraction bits, as a table value.
fn exp_lut(m: i64, s: i64, frac: i32) -> i64 {
    // The base-2 exponent with five fraction bits: (m - s) * log2(e), from Q(frac) x Q14.
    let shift = 14 + frac - 5;
    let d = (m - s) * LOG2E_Q14;
    let a = if shift >= 0 { d >> shift } else { d << -shift };
    let (n, idx) = (a >> 5, a & 31);
    if n >= 17 {
        0
    } else {
        (EXP2_LUT[idx as usize] >> n) as i64
    }
}

/// The batch-contrastive class errors, entry by entry over the batch: the softmax over the
/// entries' scores `s[L_j]`, summed per class, minus the chosen entries' share per class.
/// `similarity(k)` is `Y` of an entry of class `k`.
pub fn contrastive_err(
    loss: LocalLoss,
    s: &[i64],
    frac: i32,
    label: usize,
    batch: &[usize],
    similarity: impl Fn(usize) -> i64,
    prob: QFormat,
) -> Vec<i32> {
    assert!(batch.contains(&label), "the sample is in its batch");
    let m = batch
        .iter()
        .map(|&l| s[l])
        .max()
        .expect("a non-empty batch");
    let e: Vec<i64> = batch.iter().map(|&l| exp_lut(m, s[l], frac)).collect();
    let sum: i64 = e.iter().sum();
    let y: Vec<i64> = batch.iter().map(|&l| similarity(l)).collect();
    let best = *y.iter().max().expect("a non-empty batch");
    let chosen: Vec<usize> = match loss {
        LocalLoss::TargetMax => vec![y.iter().position(|&v| v == best).expect("a maximum")],
        LocalLoss::TargetMaxAll => (0..batch.len()).filter(|&j| y[j] == best).collect(),
        LocalLoss::TargetTopK { k } => {
            let mut order: Vec<usize> = (0..batch.len()).collect();
            order.sort_by_key(|&j| (std::cmp::Reverse(y[j]), j));
            order.truncate((k as usize).min(batch.len()));
            order
        }
        other => panic!("{other} is not batch-contrastive"),
    };
    let pf = prob.frac as i32;
    let n = chosen.len() as i64;
    (0..s.len())
        .map(|k| {
            let ek: i64 = (0..batch.len())
                .filter(|&j| batch[j] == k)
                .map(|j| e[j])
                .sum();
            let p = ((ek << pf) + sum / 2) / sum;
            let c = chosen.iter().filter(|&&j| batch[j] == k).count() as i64;
            let q = ((c << pf) + n / 2) / n;
            prob.saturate(p - q).0
        })
        .collect()
}

/// `exp2-lut32` softmax minus the one-hot label, in the probability format.
pub fn softmax_err(s: &[i64], frac: i32, label: usize, prob: QFormat) -> Vec<i32> {
    let m = *s.iter().max().expect("at least one class");
    let e: Vec<i64> = s.iter().map(|&sk| exp_lut(m, sk, frac)).collect();
    let sum: i64 = e.iter().sum();
    let pf = prob.frac as i32;
    e.iter()
        .enumerate()
        .map(|(k, &ek)| {
            let p = ((ek << pf) + sum / 2) / sum;
            let one_hot = if k == label { 1i64 << pf } else { 0 };
            prob.saturate(p - one_hot).0
        })
        .collect()
}

impl Model {
    /// The model of a compiled program, with the program's (initial or trained) weights.
    pub fn from_program(p: &Program) -> Model {
        let classes = p.network.classes as usize;
        for l in &p.layers {
            assert_eq!(
                l.keeps_targets,
                l.loss != LocalLoss::CrossEntropy,
                "{}: the hidden layers (every loss but the readout's) keep targets",
                l.id
            );
        }
        let weights = assemble_weights(p);
        let layers = p
            .layers
            .iter()
            .zip(weights)
            .map(|(l, w)| Layer {
                number: l.id.0,
                inputs: l.inputs as usize,
                width: l.width as usize,
                bias: l.bias,
                activation: l.activation,
                weight_format: l.weight_format,
                out_format: l.out_format,
                wf: l.weight_format.frac as i32,
                inf: l.in_format.frac as i32,
                outf: l.out_format.frac as i32,
                loss: l.loss,
                keeps_targets: l.keeps_targets,
                lr_shift: l.lr_shift as i32,
                rounding: l.rounding,
                grad: (p.network.batch > 1).then(|| vec![vec![0; l.width as usize]; w.len()]),
                grad_frac: 0,
                w,
                targets: vec![vec![0; l.width as usize]; classes],
            })
            .collect();
        Model {
            layers,
            projection: assemble_projection(p),
            classes,
            readout: p.network.readout,
            seed: p.network.seed,
            target_refresh: p.network.target_refresh as u64,
            acc: QFormat::new(p.chip.bits.accumulator, 0),
            prob: p.chip.probability_format(),
            steps: 0,
            anneal_every: p.network.lr_anneal_every,
            batch: p.network.batch,
            input_projection: p.layers[0]
                .projection
                .filter(|i| i.mode == ProjectionMode::ToInput)
                .map(|i| {
                    (0..classes as u32)
                        .map(|k| {
                            fixed_projection_row(
                                p.network.seed,
                                k,
                                0,
                                p.network.input_len,
                                i.format.frac as u8 + 2,
                            )
                        })
                        .collect()
                }),
            batch_labels: Vec::new(),
            targets_learned: p.network.targets == TargetMode::Learned,
            projection_learned: p.layers[0]
                .projection
                .is_some_and(|i| i.mode == ProjectionMode::Learned),
            projection_format: p.layers[0].projection.map(|i| i.format),
        }
    }

    /// `targets: learned`: after the data stream's updates, each hidden layer whose target stream
    /// passes through weights that learn (layers > 1, layer 1 under `to_input` or a learned
    /// projection) updates them from the target stream's error: per class `k` (`label_direct`,
    /// `deltat_j = sat(f'(t^k_j) err_k h_j)`) or for the label only (`l2`,
    /// `deltat_j = sat(f'(t^y_j) (t^y_j - h_j))`), through `W` with the class's target input
    /// (random-bit step `512 step + 1 + k`), or into the projection rows `k` and `classes`
    /// (steps `+ 1 + k` and `+ 300 + k`, layer key 0).
    fn learn_targets(
        &mut self,
        pass: &Pass,
        label: usize,
        errs: &[Vec<i32>],
        inputs: &[Option<Matrix>],
    ) {
        let (pf, step, seed) = (self.prob.frac as i32, self.steps, self.seed);
        let anneal = self.anneal_every.map_or(0, |n| (step / n) as i32);
        let err32 = QFormat::new(32, 0);
        for i in 0..self.layers.len() {
            let l = &self.layers[i];
            let through_weights = i > 0 || self.input_projection.is_some();
            if !l.keeps_targets || !(through_weights || self.projection_learned) {
                continue;
            }
            let h = &pass.hs[i];
            let (classes, deltat_frac): (Vec<usize>, i32) = match l.loss {
                LocalLoss::LabelDirect => ((0..self.classes).collect(), pf + l.outf),
                LocalLoss::L2 => (vec![label], l.outf),
                other => panic!("{other} has no learned targets"),
            };
            let targets = l.targets.clone();
            for k in classes {
                let t = &targets[k];
                let l = &self.layers[i];
                let deltat: Vec<i64> = (0..l.width)
                    .map(|j| {
                        let e = match l.loss {
                            LocalLoss::L2 => t[j] as i64 - h[j] as i64,
                            _ => errs[i][k] as i64 * h[j] as i64,
                        };
                        err32.saturate(l.f_prime(t[j], e)).0 as i64
                    })
                    .collect();
                let l = &mut self.layers[i];
                if through_weights {
                    let x = l.with_bias(&inputs[i].as_ref().expect("a target input")[k]);
                    let shift = deltat_frac + l.inf - l.wf + l.lr_shift + anneal;
                    let (fmt, rounding, number) = (l.weight_format, l.rounding, l.number);
                    let key = (seed, number, step * 512 + 1 + k as u64);
                    outer_update(&mut l.w, fmt, &x, &deltat, shift, rounding, key);
                } else {
                    let fmt = self.projection_format.expect("a learned projection");
                    let (pjf, s) = self.projection.as_mut().expect("a learned projection");
                    let shift = deltat_frac - *pjf + l.lr_shift + anneal;
                    for (row, sub) in [(k, 1 + k as u64), (self.classes, 300 + k as u64)] {
                        // The projection's input is one-hot: the row sees a 1. Its random bits
                        // are keyed by layer 0 and the projection row.
                        let mut one_row = vec![s[row].clone()];
                        let key = (seed, 0u16, step * 512 + sub);
                        outer_update_row(
                            &mut one_row,
                            fmt,
                            row as u32,
                            &deltat,
                            shift,
                            l.rounding,
                            key,
                        );
                        s[row] = one_row.pop().expect("one row");
                    }
                }
            }
        }
    }

    /// The start of a mini-batch with these labels.
    pub fn begin_batch(&mut self, labels: &[usize]) {
        self.batch_labels = labels.to_vec();
    }

    /// Recomputes the class targets of every layer that keeps them: layer 1 from the
    /// projection, layer `i > 1` as layer `i`'s forward pass of layer `i - 1`'s targets.
    pub fn refresh_targets(&mut self) {
        let acc = self.acc;
        for i in 0..self.layers.len() {
            if !self.layers[i].keeps_targets {
                continue;
            }
            let new: Matrix = (0..self.classes)
                .map(|k| {
                    if let (0, Some(c)) = (i, &self.input_projection) {
                        // `to_input`: the projected target is an input, through W1.
                        self.layers[0].forward(&c[k], acc)
                    } else if i == 0 {
                        let l = &self.layers[0];
                        let (pjf, s) = self
                            .projection
                            .as_ref()
                            .expect("layer 1 keeps targets, so it has a projection");
                        (0..l.width)
                            .map(|c| {
                                let v = s[k][c] as i64 + s[self.classes][c] as i64;
                                let a = round_shift(v, -(l.wf + l.inf - pjf));
                                l.neuron(acc.saturate(a).0 as i64)
                            })
                            .collect()
                    } else {
                        let prev = &self.layers[i - 1];
                        assert!(
                            prev.keeps_targets,
                            "targets flow from a layer that keeps them"
                        );
                        self.layers[i].forward(&prev.targets[k], acc)
                    }
                })
                .collect();
            self.layers[i].targets = new;
        }
    }

    /// Inference of one encoded sample with the current weights and targets.
    pub fn forward(&self, x: &[i32]) -> Pass {
        let mut xs = Vec::new();
        let mut hs = Vec::new();
        let mut cur = x.to_vec();
        for l in &self.layers {
            let h = l.forward(&cur, self.acc);
            xs.push(std::mem::replace(&mut cur, h.clone()));
            hs.push(h);
        }
        let last = self.layers.last().expect("at least one layer");
        let output: Vec<i64> = match self.readout {
            Readout::OutputLayer => cur.iter().map(|&h| h as i64).collect(),
            Readout::NearestTarget => last.scores(&cur).0,
            // Negated squared distance to each target (plus |h|^2, the same for every class).
            Readout::NearestTargetL2 => last
                .targets
                .iter()
                .map(|t| {
                    cur.iter()
                        .zip(t)
                        .map(|(&h, &t)| 2 * h as i64 * t as i64 - t as i64 * t as i64)
                        .sum()
                })
                .collect(),
        };
        let prediction = argmax(&output);
        Pass {
            xs,
            hs,
            output,
            prediction,
        }
    }

    /// One training sample: targets refreshed when due, forward, then every layer's local
    /// update from its own input and output. Returns the forward pass (before the updates).
    /// The end of a mini-batch: every layer adds the batch mean of its summed updates.
    pub fn apply(&mut self) {
        let anneal = self.anneal_every.map_or(0, |n| (self.steps / n) as i32);
        let log2_batch = self.batch.trailing_zeros() as i32;
        let (seed, steps) = (self.seed, self.steps);
        for l in &mut self.layers {
            let Some(g) = l.grad.as_mut() else { continue };
            let shift = l.grad_frac + l.inf - l.wf + l.lr_shift + anneal + log2_batch;
            let (lo, hi) = (l.weight_format.min_raw(), l.weight_format.max_raw());
            for (r, grow) in g.iter_mut().enumerate() {
                let key = stochastic_row_key(seed, l.number, r as u32, steps * 512 + 511);
                for (c, gv) in grow.iter_mut().enumerate() {
                    if *gv == 0 {
                        continue;
                    }
                    let dv = match l.rounding {
                        Rounding::Nearest => round_shift(*gv, shift),
                        Rounding::Stochastic => {
                            stochastic_shift(*gv, shift, stochastic_bits(key, c as u32))
                        }
                    };
                    l.w[r][c] = (l.w[r][c] as i64 + dv).clamp(lo, hi) as i32;
                    *gv = 0;
                }
            }
        }
    }

    pub fn train_sample(&mut self, x: &[i32], label: usize) -> Pass {
        if self.steps.is_multiple_of(self.target_refresh) {
            self.refresh_targets();
        }
        let pass = self.forward(x);
        let (pf, step, seed) = (self.prob.frac as i32, self.steps, self.seed);
        // The target stream's input of each layer for the label's class: the previous layer's
        // target (used by `hebbian(pre: target)` beyond layer 1).
        let prev_targets: Vec<Option<Vec<i32>>> = (0..self.layers.len())
            .map(|i| match (i, &self.input_projection) {
                (0, Some(c)) => Some(c[label].clone()),
                (0, None) => None,
                _ => self.layers[i - 1].targets.get(label).cloned(),
            })
            .collect();
        // The target stream's inputs of every class, for learned targets: the previous layer's
        // targets, or the projected inputs under `to_input` (layer 1 otherwise has none).
        let target_inputs: Vec<Option<Matrix>> = (0..self.layers.len())
            .map(|i| match (i, &self.input_projection) {
                (0, Some(c)) => Some(c.clone()),
                (0, None) => None,
                _ => Some(self.layers[i - 1].targets.clone()),
            })
            .collect();
        let mut errs = Vec::new();
        // Batch-contrastive class errors need the previous layer's targets (their similarity).
        let contrastive: Vec<Option<Vec<i32>>> = (0..self.layers.len())
            .map(|i| {
                let l = &self.layers[i];
                l.loss.is_contrastive().then(|| {
                    let (s, frac) = l.scores(&pass.hs[i]);
                    let similarity = |k: usize| -> i64 {
                        if i == 0 {
                            return (k == label) as i64;
                        }
                        let t = &self.layers[i - 1].targets;
                        let dot: i64 = t[label]
                            .iter()
                            .zip(&t[k])
                            .map(|(&a, &b)| a as i64 * b as i64)
                            .sum();
                        QFormat::new(32, 0).saturate(dot).0 as i64
                    };
                    contrastive_err(
                        l.loss,
                        &s,
                        frac,
                        label,
                        &self.batch_labels,
                        similarity,
                        self.prob,
                    )
                })
            })
            .collect();
        for (((l, (x, h)), prev_t), err) in self
            .layers
            .iter_mut()
            .zip(pass.xs.iter().zip(&pass.hs))
            .zip(prev_targets)
            .zip(contrastive)
        {
            let pre = match l.loss {
                LocalLoss::Hebbian { pre: Pre::Target } => prev_t.unwrap_or_else(|| x.clone()),
                _ => x.clone(),
            };
            let anneal = self.anneal_every.map_or(0, |n| (step / n) as i32);
            errs.push(learn(
                l, &pre, h, label, err, pf, self.prob, seed, step, anneal,
            ));
        }
        if self.targets_learned {
            self.learn_targets(&pass, label, &errs, &target_inputs);
        }
        self.steps += 1;
        if self.batch > 1 && self.steps.is_multiple_of(self.batch as u64) {
            self.apply();
        }
        pass
    }
}

/// The local learning of one layer.
#[allow(clippy::too_many_arguments)]
fn learn(
    l: &mut Layer,
    x: &[i32],
    h: &[i32],
    label: usize,
    contrastive_err: Option<Vec<i32>>,
    pf: i32,
    prob: QFormat,
    seed: u64,
    step: u64,
    anneal: i32,
) -> Vec<i32> {
    // Only the softmax losses use class errors; the per-neuron ones compare with t[label].
    let err = match (l.loss, contrastive_err) {
        (_, Some(err)) => err,
        (LocalLoss::LabelDirect | LocalLoss::CrossEntropy, None) => {
            let (s, frac) = l.scores(h);
            softmax_err(&s, frac, label, prob)
        }
        _ => Vec::new(),
    };
    let err32 = QFormat::new(32, 0);
    let (delta, delta_frac): (Vec<i64>, i32) = match l.loss {
        LocalLoss::LabelDirect
        | LocalLoss::TargetMax
        | LocalLoss::TargetMaxAll
        | LocalLoss::TargetTopK { .. } => (
            (0..l.width)
                .map(|j| {
                    let d: i64 = (0..err.len())
                        .map(|k| err[k] as i64 * l.targets[k][j] as i64)
                        .sum();
                    err32.saturate(l.f_prime(h[j], d)).0 as i64
                })
                .collect(),
            pf + l.outf,
        ),
        LocalLoss::CrossEntropy => (
            (0..l.width)
                .map(|j| err32.saturate(l.f_prime(h[j], err[j] as i64)).0 as i64)
                .collect(),
            pf,
        ),
        // l2: f'(h) (h - t_label); hebbian: h - t_label, no derivative.
        LocalLoss::L2 => (
            (0..l.width)
                .map(|j| {
                    err32
                        .saturate(l.f_prime(h[j], h[j] as i64 - l.targets[label][j] as i64))
                        .0 as i64
                })
                .collect(),
            l.outf,
        ),
        LocalLoss::Hebbian { .. } => (
            (0..l.width)
                .map(|j| err32.saturate(h[j] as i64 - l.targets[label][j] as i64).0 as i64)
                .collect(),
            l.outf,
        ),
    };
    let shift = delta_frac + l.inf - l.wf + l.lr_shift + anneal;
    let xin = l.with_bias(x);
    if let Some(g) = &mut l.grad {
        // Mini-batch: sum exactly (in 40 bits) and apply at the batch's end.
        l.grad_frac = delta_frac;
        // 32-bit errors times inputs, summed over the batch, never saturate.
        let limit = 1i64 << 62;
        for (r, &xr) in xin.iter().enumerate() {
            for (c, &d) in delta.iter().enumerate() {
                g[r][c] = (g[r][c] - d * xr).clamp(-limit, limit - 1);
            }
        }
        return err;
    }
    let (fmt, rounding, number) = (l.weight_format, l.rounding, l.number);
    outer_update(
        &mut l.w,
        fmt,
        &xin,
        &delta,
        shift,
        rounding,
        (seed, number, step * 512),
    );
    err
}

/// [`outer_update`] of a single row `w[0]` with input 1, its random bits keyed as row `row`.
fn outer_update_row(
    w: &mut Matrix,
    fmt: QFormat,
    row: u32,
    delta: &[i64],
    shift: i32,
    rounding: Rounding,
    key: (u64, u16, u64),
) {
    let (seed, layer, step) = key;
    let (lo, hi) = (fmt.min_raw(), fmt.max_raw());
    let rk = stochastic_row_key(seed, layer, row, step);
    for (c, &d) in delta.iter().enumerate() {
        if d == 0 {
            continue;
        }
        let dv = match rounding {
            Rounding::Nearest => round_shift(-d, shift),
            Rounding::Stochastic => stochastic_shift(-d, shift, stochastic_bits(rk, c as u32)),
        };
        w[0][c] = (w[0][c] as i64 + dv).clamp(lo, hi) as i32;
    }
}

/// `w[r][c] = sat(w[r][c] + round(-(delta[c] * x[r]) >> shift))` over non-zero `x[r]` and
/// `delta[c]`, with random bits keyed by `(seed, layer, r, step)` and column `c` (`key`).
#[allow(clippy::too_many_arguments)]
fn outer_update(
    w: &mut Matrix,
    fmt: QFormat,
    x: &[i64],
    delta: &[i64],
    shift: i32,
    rounding: Rounding,
    key: (u64, u16, u64),
) {
    let (seed, layer, step) = key;
    let (lo, hi) = (fmt.min_raw(), fmt.max_raw());
    for (r, &xr) in x.iter().enumerate() {
        if xr == 0 {
            continue;
        }
        let key = stochastic_row_key(seed, layer, r as u32, step);
        for (c, &d) in delta.iter().enumerate() {
            if d == 0 {
                continue;
            }
            let v = -(d * xr);
            let dv = match rounding {
                Rounding::Nearest => round_shift(v, shift),
                Rounding::Stochastic => stochastic_shift(v, shift, stochastic_bits(key, c as u32)),
            };
            w[r][c] = (w[r][c] as i64 + dv).clamp(lo, hi) as i32;
        }
    }
}
