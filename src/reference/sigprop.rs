//! Sigprop in f32: the chip's algorithm with no quantization, no saturation and an exact softmax.
//!
//! Per training sample (online, batch 1), with `h_0 = x` and `h_i = f(W_i^T h_{i-1} + b_i)` all
//! computed with the weights before this sample's updates, every layer learns from its own loss:
//!
//! - hidden layer `i` (`label_direct`): scores `s_k = h_i . t_i^k` against the stored class
//!   targets, `err = softmax(s) - onehot(y)`, `delta_j = f'(h_j) sum_k err_k t_i^k_j`,
//!   `W_i -= lr_i delta h_{i-1}^T` (bias row input 1). With `targets: learned`, also per class
//!   `deltat^k_j = f'(t^k_j) err_k h_j` and `W_i -= lr_i deltat^k (t_{i-1}^k)^T` for `i > 1`; at
//!   layer 1 the projection rows `S[k]` and `S[classes]` take `-= lr_1 deltat^k` when
//!   `projection: learned`.
//! - hidden layer `i` with a per-neuron loss, against the label's target `t = t_i^y`:
//!   `l2`: `delta_j = f'(h_j) (h_j - t_j)`, `W_i -= lr_i delta h_{i-1}^T`;
//!   `hebbian(pre)`: `delta_j = h_j - t_j` (no derivative), `W_i -= lr_i delta pre^T` with `pre`
//!   the target stream's input `t_{i-1}^y` for `pre: target` (layer 1, whose target does not
//!   pass through its weights, uses its data input) or `h_{i-1}` for `pre: data`. With
//!   `targets: learned`, `l2` also updates the label's target stream: `deltat_j = f'(t_j)
//!   (t_j - h_j)`, applied as `label_direct`'s `deltat^k` for `k = y`; `hebbian` has constant
//!   targets only.
//! - hidden layer `i` with a batch-contrastive loss (`target_max`, `target_max_all`,
//!   `target_topk(k)`), literally over the batch's `B` entries with labels `L_j` (no class
//!   aggregation, unlike the chip): `t_j = t_i^{L_j}`, `p_j = softmax_j(h . t_j)`,
//!   `Y_j = [L_j = y]` at layer 1 and `t_{i-1}^y . t_{i-1}^{L_j}` beyond; the chosen entries are
//!   the first maximum (`target_max`), every maximum (`target_max_all`) or the first `k` in the
//!   order (`Y` descending, `j` ascending) (`target_topk`), `q_j = 1 / (chosen count)` on them;
//!   `delta = f'(h) sum_j (p_j - q_j) t_j`, `W_i -= lr_i delta h_{i-1}^T`.
//! - output layer (`output_layer` readout): `err = softmax(h_out) - onehot(y)`,
//!   `W_out -= lr_out err h_N^T`.
//!
//! Class targets of every hidden layer, `t_1^k = f_1(S[k] + S[classes])`,
//! `t_i^k = f_i(W_i^T t_{i-1}^k + b_i)`, are recomputed before the first training sample, every
//! `target_refresh` training samples and before every evaluation, as on the chip.

use super::{activate, anneal_scale, argmax, derivative, lr, lr_shifts, softmax_err, Dense, Model};
use sigchip_compiler::quantize::initial_weights;
use sigchip_compiler::validate::Node;
use sigchip_compiler::{LossKind, ValidNetwork};
use sigchip_isa::rng::fixed_projection_row;
use sigchip_isa::{Activation, Pre, ProjectionMode, Readout, TargetMode};

/// A sigprop network in f32.
#[derive(Clone, Debug)]
pub struct SigpropF32 {
    pub classes: usize,
    /// The local loss of the hidden layers.
    pub loss: LossKind,
    /// Hidden layers in depth order.
    pub hidden: Vec<Dense>,
    /// Learning rate of each hidden layer.
    pub hidden_lr: Vec<f32>,
    /// Every this many samples every learning rate halves (`learning.anneal_every`).
    pub anneal_every: Option<u64>,
    /// The current factor of the learning rates, `2^-(step / anneal_every)`.
    pub lr_scale: f32,
    /// The `output_layer` readout (identity, `classes` wide) and its learning rate.
    pub output: Option<(Dense, f32)>,
    /// The layer-1 target projection, `(classes + 1) x width_1`, the last row its bias.
    pub projection: Vec<f32>,
    /// The `nearest_target_l2` readout.
    pub l2_readout: bool,
    /// `to_input`: the projected target of each class, `classes x inputs`.
    pub input_projection: Option<Vec<f32>>,
    pub projection_learned: bool,
    pub targets_learned: bool,
    /// Refresh the class targets every this many training samples.
    pub target_refresh: u64,
    /// Class targets of each hidden layer: `classes x width`, row `k` is `t_i^k`.
    pub targets: Vec<Vec<f32>>,
    /// The labels of the current mini-batch (batch-contrastive losses).
    pub batch_labels: Vec<usize>,
}

impl SigpropF32 {
    /// The network with the chip's initial weights (`initial_weights`, f64 to f32).
    pub fn new(net: &ValidNetwork) -> Self {
        let desc = net.desc();
        let (hidden_shifts, out_shift) = lr_shifts(net);
        let mut hidden = Vec::new();
        let mut output = None;
        let mut projection = Vec::new();
        for (node, fl) in net.layers().zip(initial_weights(net)) {
            let to_f32 = |v: &[f64]| v.iter().map(|&w| w as f32).collect::<Vec<f32>>();
            let activation = match node {
                Node::Hidden { index, .. } => desc.layers[*index].activation,
                _ => Activation::Identity,
            };
            let dense = Dense {
                inputs: fl.inputs as usize,
                width: fl.width as usize,
                bias: fl.bias,
                activation,
                weights: to_f32(&fl.weights),
                pending: None,
            }
            .batched(desc.learning.batch > 1);
            if let Some(p) = &fl.projection {
                projection = to_f32(p);
            }
            match node {
                Node::Output { .. } => output = Some((dense, lr(out_shift))),
                _ => hidden.push(dense),
            }
        }
        debug_assert_eq!(output.is_some(), !desc.readout.is_nearest());
        let targets = hidden
            .iter()
            .map(|l| vec![0.0; desc.classes as usize * l.width])
            .collect();
        SigpropF32 {
            classes: desc.classes as usize,
            loss: desc.loss,
            hidden,
            hidden_lr: hidden_shifts.into_iter().map(lr).collect(),
            anneal_every: desc.learning.anneal_every,
            lr_scale: 1.0,
            output,
            projection,
            projection_learned: desc.projection == ProjectionMode::Learned,
            l2_readout: desc.readout == Readout::NearestTargetL2,
            // The chip's input port regenerates the same LFSR rows, truncated to its format.
            input_projection: (desc.projection == ProjectionMode::ToInput).then(|| {
                (0..desc.classes)
                    .flat_map(|k| fixed_projection_row(desc.seed, k, 0, desc.input, 16))
                    .map(|v| v as f32 / (1 << 14) as f32)
                    .collect()
            }),
            targets_learned: desc.targets == TargetMode::Learned,
            target_refresh: desc.target_refresh.max(1) as u64,
            targets,
            batch_labels: Vec::new(),
        }
    }

    /// Class target `k` of hidden layer `i`.
    pub fn target(&self, i: usize, k: usize) -> &[f32] {
        let w = self.hidden[i].width;
        &self.targets[i][k * w..(k + 1) * w]
    }

    /// Recomputes the class targets of every hidden layer from the current weights.
    pub fn refresh_targets(&mut self) {
        let w1 = self.hidden[0].width;
        let f1 = self.hidden[0].activation;
        let mut t = Vec::new();
        for k in 0..self.classes {
            if let Some(c) = &self.input_projection {
                // `to_input`: the projected target goes through W1 like data.
                let n = self.hidden[0].inputs;
                self.hidden[0].forward(&c[k * n..(k + 1) * n], &mut t);
                self.targets[0][k * w1..(k + 1) * w1].copy_from_slice(&t);
            } else {
                let s = &self.projection;
                for (c, dst) in self.targets[0][k * w1..(k + 1) * w1].iter_mut().enumerate() {
                    *dst = activate(f1, s[k * w1 + c] + s[self.classes * w1 + c]);
                }
            }
            for i in 1..self.hidden.len() {
                let (below, here) = self.targets.split_at_mut(i);
                let wp = self.hidden[i - 1].width;
                self.hidden[i].forward(&below[i - 1][k * wp..(k + 1) * wp], &mut t);
                let w = self.hidden[i].width;
                here[0][k * w..(k + 1) * w].copy_from_slice(&t);
            }
        }
    }

    /// The forward pass: the output of every hidden layer, then the output layer's (if any).
    pub fn forward(&self, x: &[f32]) -> Vec<Vec<f32>> {
        let mut hs: Vec<Vec<f32>> = Vec::with_capacity(self.hidden.len() + 1);
        for (i, l) in self.hidden.iter().enumerate() {
            let mut h = Vec::new();
            l.forward(if i == 0 { x } else { &hs[i - 1] }, &mut h);
            hs.push(h);
        }
        if let Some((o, _)) = &self.output {
            let mut h = Vec::new();
            o.forward(&hs[self.hidden.len() - 1], &mut h);
            hs.push(h);
        }
        hs
    }

    /// Scores of hidden layer `i`'s output against its class targets: `s_k = h . t_i^k`.
    pub fn scores(&self, i: usize, h: &[f32]) -> Vec<f32> {
        (0..self.classes)
            .map(|k| h.iter().zip(self.target(i, k)).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// The prediction from a forward pass: argmax of the output layer, or the nearest target
    /// (largest dot product) of the last hidden layer.
    pub fn prediction(&self, hs: &[Vec<f32>]) -> usize {
        match &self.output {
            Some(_) => argmax(&hs[self.hidden.len()]),
            None if self.l2_readout => {
                // The nearest target in L2 distance: the largest negated distance.
                let last = self.hidden.len() - 1;
                let d: Vec<f32> = (0..self.classes)
                    .map(|k| {
                        -hs[last]
                            .iter()
                            .zip(self.target(last, k))
                            .map(|(h, t)| (h - t) * (h - t))
                            .sum::<f32>()
                    })
                    .collect();
                argmax(&d)
            }
            None => {
                let last = self.hidden.len() - 1;
                argmax(&self.scores(last, &hs[last]))
            }
        }
    }

    /// One online step on `x` with label `y`, targets as they are (no refresh). Returns the
    /// prediction of the forward pass before the update.
    pub fn step(&mut self, x: &[f32], y: usize) -> usize {
        let hs = self.forward(x);
        let prediction = self.prediction(&hs);
        let mut err = Vec::new();
        for i in 0..self.hidden.len() {
            let h = &hs[i];
            let input = if i == 0 { x } else { &hs[i - 1] };
            let f = self.hidden[i].activation;
            let lr = self.hidden_lr[i] * self.lr_scale;
            let w = self.hidden[i].width;
            if let LossKind::L2 | LossKind::Hebbian { .. } = self.loss {
                // Per-neuron mismatch with the label's target.
                let t = self.target(i, y);
                let delta: Vec<f32> = match self.loss {
                    LossKind::L2 => h
                        .iter()
                        .zip(t)
                        .map(|(&hj, &tj)| derivative(f, hj) * (hj - tj))
                        .collect(),
                    _ => h.iter().zip(t).map(|(&hj, &tj)| hj - tj).collect(),
                };
                // `l2` with learned targets: the label's target learns from the mismatch too,
                // `deltat_j = f'(t_j) (t_j - h_j)`.
                if self.loss == LossKind::L2
                    && self.targets_learned
                    && (i > 0 || self.projection_learned || self.input_projection.is_some())
                {
                    let deltat: Vec<f32> = t
                        .iter()
                        .zip(h)
                        .map(|(&tj, &hj)| derivative(f, tj) * (tj - hj))
                        .collect();
                    self.update_target_stream(i, y, &deltat, lr);
                }
                if self.loss == (LossKind::Hebbian { pre: Pre::Target })
                    && (i > 0 || self.input_projection.is_some())
                {
                    let tin = if i > 0 {
                        let wp = self.hidden[i - 1].width;
                        &self.targets[i - 1][y * wp..(y + 1) * wp]
                    } else {
                        let n = self.hidden[0].inputs;
                        &self.input_projection.as_ref().expect("checked")[y * n..(y + 1) * n]
                    };
                    self.hidden[i].update(tin, &delta, lr);
                } else {
                    self.hidden[i].update(input, &delta, lr);
                }
                continue;
            }
            if self.loss.local_loss().is_contrastive() {
                let delta = self.contrastive_delta(i, h, y);
                self.hidden[i].update(input, &delta, lr);
                continue;
            }
            softmax_err(&self.scores(i, h), y, &mut err);
            // Data stream: delta_j = f'(h_j) sum_k err_k t^k_j.
            let mut delta = vec![0.0f32; w];
            for (k, &e) in err.iter().enumerate() {
                for (d, &t) in delta.iter_mut().zip(self.target(i, k)) {
                    *d += e * t;
                }
            }
            for (d, &hj) in delta.iter_mut().zip(h) {
                *d *= derivative(f, hj);
            }
            // Target stream: deltat^k_j = f'(t^k_j) err_k h_j, on the stored targets.
            if self.targets_learned
                && (i > 0 || self.projection_learned || self.input_projection.is_some())
            {
                for (k, &e) in err.iter().enumerate() {
                    let deltat: Vec<f32> = self
                        .target(i, k)
                        .iter()
                        .zip(h)
                        .map(|(&t, &hj)| derivative(f, t) * e * hj)
                        .collect();
                    self.update_target_stream(i, k, &deltat, lr);
                }
            }
            self.hidden[i].update(input, &delta, lr);
        }
        if let Some((o, lr)) = &mut self.output {
            let n = hs.len() - 1;
            softmax_err(&hs[n], y, &mut err);
            o.update(&hs[n - 1], &err, *lr * self.lr_scale);
        }
        prediction
    }
}

impl SigpropF32 {
    /// The target stream's update of class `k` at hidden layer `i` with error `deltat`: through
    /// `W_i` from the previous layer's target (`i > 1`) or the projected input (`to_input`), or
    /// into the projection rows `S[k]` and `S[classes]`.
    fn update_target_stream(&mut self, i: usize, k: usize, deltat: &[f32], lr: f32) {
        let w = self.hidden[i].width;
        if i > 0 {
            let wp = self.hidden[i - 1].width;
            let tin = self.targets[i - 1][k * wp..(k + 1) * wp].to_vec();
            self.hidden[i].update(&tin, deltat, lr);
        } else if let Some(c) = &self.input_projection {
            let n = self.hidden[0].inputs;
            self.hidden[0].update(&c[k * n..(k + 1) * n], deltat, lr);
        } else {
            for row in [k, self.classes] {
                for (s, &d) in self.projection[row * w..(row + 1) * w]
                    .iter_mut()
                    .zip(deltat)
                {
                    *s -= lr * d;
                }
            }
        }
    }

    /// The batch-contrastive error of hidden layer `i` for a sample of class `y` with output `h`,
    /// literally over the batch entries (module docs).
    pub fn contrastive_delta(&self, i: usize, h: &[f32], y: usize) -> Vec<f32> {
        let labels = &self.batch_labels;
        assert!(
            labels.contains(&y),
            "the sample's label is in its batch (begin_batch ran)"
        );
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(&x, &z)| x as f64 * z as f64).sum()
        };
        // Exact softmax over the batch entries' similarities.
        let sims: Vec<f64> = labels.iter().map(|&l| dot(h, self.target(i, l))).collect();
        let m = sims.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = sims.iter().map(|&s| (s - m).exp()).collect();
        let total: f64 = e.iter().sum();
        // Target similarities and the chosen entries.
        let yv: Vec<f64> = labels
            .iter()
            .map(|&l| {
                if i == 0 {
                    (l == y) as u8 as f64
                } else {
                    dot(self.target(i - 1, y), self.target(i - 1, l))
                }
            })
            .collect();
        let best = yv.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let chosen: Vec<usize> = match self.loss {
            LossKind::TargetMax => vec![yv.iter().position(|&v| v == best).expect("non-empty")],
            LossKind::TargetMaxAll => (0..labels.len()).filter(|&j| yv[j] == best).collect(),
            LossKind::TargetTopK { k } => {
                let mut idx: Vec<usize> = (0..labels.len()).collect();
                // A stable sort keeps equal similarities in batch order.
                idx.sort_by(|&a, &b| yv[b].total_cmp(&yv[a]));
                idx.truncate((k as usize).min(labels.len()));
                idx
            }
            _ => unreachable!("only batch-contrastive losses reach here"),
        };
        let mut q = vec![0.0f64; labels.len()];
        for &j in &chosen {
            q[j] += 1.0 / chosen.len() as f64;
        }
        let f = self.hidden[i].activation;
        let mut delta = vec![0.0f64; h.len()];
        for (j, &l) in labels.iter().enumerate() {
            let g = e[j] / total - q[j];
            for (d, &t) in delta.iter_mut().zip(self.target(i, l)) {
                *d += g * t as f64;
            }
        }
        delta
            .iter()
            .zip(h)
            .map(|(&d, &hj)| derivative(f, hj) * d as f32)
            .collect()
    }
}

impl Model for SigpropF32 {
    fn begin_batch(&mut self, labels: &[usize]) {
        self.batch_labels = labels.to_vec();
    }

    fn end_batch(&mut self, scale: f32) {
        for l in self
            .hidden
            .iter_mut()
            .chain(self.output.iter_mut().map(|(o, _)| o))
        {
            l.flush(scale);
        }
    }

    fn finite(&self) -> bool {
        self.hidden
            .iter()
            .chain(self.output.iter().map(|(o, _)| o))
            .all(|l| l.weights.iter().all(|w| w.is_finite()))
            && self.projection.iter().all(|w| w.is_finite())
    }

    fn train_sample(&mut self, step: u64, x: &[f32], label: usize) -> usize {
        if step.is_multiple_of(self.target_refresh) {
            self.refresh_targets();
        }
        // With mini-batches the rate of the batch's end applies (`end_batch`).
        self.lr_scale = if self.hidden[0].pending.is_some() {
            1.0
        } else {
            anneal_scale(self.anneal_every, step)
        };
        self.step(x, label)
    }

    fn begin_eval(&mut self) {
        self.refresh_targets();
    }

    fn predict(&mut self, x: &[f32]) -> usize {
        let hs = self.forward(x);
        self.prediction(&hs)
    }
}
