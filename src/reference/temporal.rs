//! Sigprop in f32 for neurons with time: leaky integrate-and-fire (`neuron: lif(..)`) and
//! continuous time (`neuron: continuous(..)`), over `steps` time steps per sample, with the
//! chip's input encoders (`sigchip_isa::encode`) and its initial weights.
//!
//! Every layer (hidden layers and the `output_layer` readout's output layer) starts each sample
//! at rest and, at every step `t`, takes its input `x[t]`: layer 1 the input spikes (`lif`, 1 for
//! a spike) or the image (`continuous`), deeper layers the previous layer's spikes or state.
//!
//! - LIF: `U = U - U * 2^-leak + W^T x + b - threshold * S` (reset `zero`: `U = 0` instead of the
//!   subtraction after a spike), `S = [U > threshold]`. The learning signal is `v = U`
//!   (`voltage`, `v' = 1`) or `v = g(U) = clamp(U / (2 threshold), 0, 1)` (`surrogate`,
//!   `v' = 1 / (2 threshold)` inside, 0 outside).
//! - Continuous time: `h = h + (f(W^T x + b) - h) * 2^-tau_shift`; the learning signal is `h`.
//!
//! Learning at every step (the local losses of sigprop.md, on the signal `v` and its class
//! targets): `label_direct` (LIF) `delta = v' * sum_k (softmax(v . t^k)_k - [k = y]) t^k`,
//! `W -= lr delta x^T`; `hebbian(pre)` (continuous time) `delta = h - t^y`, `W -= lr delta pre^T`
//! with `pre = t_{i-1}^y` (`pre: target`; layer 1 its input) or `x`; `l2` (continuous time)
//! `delta = f'(h) (h - t^y)` with the data input. The output layer learns the cross-entropy of
//! `softmax(v)` against the label. With `update: summed` the step updates are summed and applied
//! at the sample's end.
//!
//! Class targets: the target stream of class `k` runs from rest for `steps` steps (layer 1's
//! input current is the projection row `S[k] + S[classes]` at every step); `t^k` is the mean of
//! the signal over the steps (LIF) or its last value (continuous time). When a continuous-time
//! network learns, the label's target stream runs alongside the data stream instead, and the
//! rule at step `t` compares with its state at step `t` (as on the chip). Prediction: `output_layer`
//! by spike count or summed membrane potential (LIF, `readout`) or the last state (continuous
//! time); `nearest_target` by the largest `v . t^k` (the signal's mean over the steps for LIF, its
//! last value for continuous time).

use super::{activate, derivative, lr, lr_shifts, softmax_err, Dense, Model};
use sigchip_compiler::quantize::initial_weights;
use sigchip_compiler::validate::Node;
use sigchip_compiler::{
    ContinuousDesc, Encoding, LifDesc, LossKind, NeuronDesc, Reset, SpikeLearning, SpikeReadout,
    UpdateTiming, ValidNetwork,
};
use sigchip_isa::{encode, Activation, Pre, Readout};

/// A network of neurons with time, in f32.
#[derive(Clone, Debug)]
pub struct TemporalF32 {
    pub neuron: NeuronDesc,
    pub classes: usize,
    pub loss: LossKind,
    /// The chip layers in depth order (the output layer last, with `output_layer`); their
    /// `activation` field is identity, the neuron function is applied here.
    pub layers: Vec<Dense>,
    /// `f` of each layer (continuous time).
    pub activations: Vec<Activation>,
    pub lrs: Vec<f32>,
    pub has_output: bool,
    pub nearest: bool,
    pub projection: Vec<f32>,
    pub targets: Vec<Vec<f32>>,
    pub target_refresh: u64,
    pub seed: u64,
    /// Every this many samples every learning rate halves (`learning.anneal_every`).
    pub anneal_every: Option<u64>,
    lr_scale: f32,
    /// The pixels of the sample to come, with the data set's `max` and the encoder's key.
    pixels: Vec<u8>,
    max: u8,
    key: u64,
}

impl TemporalF32 {
    pub fn new(net: &ValidNetwork) -> Self {
        let desc = net.desc();
        let (hidden_shifts, out_shift) = lr_shifts(net);
        let mut layers = Vec::new();
        let mut activations = Vec::new();
        let mut lrs = Vec::new();
        let mut projection = Vec::new();
        let mut has_output = false;
        for (node, fl) in net.layers().zip(initial_weights(net)) {
            let (f, rate) = match node {
                Node::Hidden { index, .. } => {
                    (desc.layers[*index].activation, lr(hidden_shifts[*index]))
                }
                _ => {
                    has_output = true;
                    (Activation::Identity, lr(out_shift))
                }
            };
            if let Some(p) = &fl.projection {
                projection = p.iter().map(|&w| w as f32).collect();
            }
            let summed = matches!(
                desc.neuron,
                NeuronDesc::Lif(LifDesc {
                    update: UpdateTiming::Summed,
                    ..
                })
            );
            layers.push(
                Dense {
                    inputs: fl.inputs as usize,
                    width: fl.width as usize,
                    bias: fl.bias,
                    activation: Activation::Identity,
                    weights: fl.weights.iter().map(|&w| w as f32).collect(),
                    pending: None,
                }
                .batched(summed),
            );
            activations.push(f);
            lrs.push(rate);
        }
        let hidden = layers.len() - has_output as usize;
        TemporalF32 {
            neuron: desc.neuron,
            classes: desc.classes as usize,
            loss: desc.loss,
            targets: layers[..hidden]
                .iter()
                .map(|l| vec![0.0; desc.classes as usize * l.width])
                .collect(),
            layers,
            activations,
            lrs,
            has_output,
            nearest: desc.readout != Readout::OutputLayer,
            projection,
            target_refresh: desc.target_refresh.max(1) as u64,
            seed: desc.seed,
            anneal_every: desc.learning.anneal_every,
            lr_scale: 1.0,
            pixels: Vec::new(),
            max: 1,
            key: 0,
        }
    }

    fn steps(&self) -> usize {
        self.neuron.steps() as usize
    }

    fn hidden(&self) -> usize {
        self.layers.len() - self.has_output as usize
    }

    fn target(&self, i: usize, k: usize) -> &[f32] {
        let w = self.layers[i].width;
        &self.targets[i][k * w..(k + 1) * w]
    }

    /// The input of layer 1 at every step: spikes (LIF) or the scaled image (continuous time).
    fn inputs(&self) -> Vec<Vec<f32>> {
        let steps = self.neuron.steps();
        match self.neuron {
            NeuronDesc::Lif(l) => {
                let v: Vec<u32> = self.pixels.iter().map(|&p| p as u32).collect();
                let s = match l.encoding {
                    Encoding::Rate => encode::rate(self.seed, self.key, &v, self.max as u32, steps),
                    Encoding::Latency => encode::latency(&v, self.max as u32, steps),
                };
                s.iter()
                    .map(|v| v.iter().map(|b| *b as u8 as f32).collect())
                    .collect()
            }
            _ => {
                let max = self.max.max(1) as f32;
                let x: Vec<f32> = self.pixels.iter().map(|&p| p as f32 / max).collect();
                vec![x; steps as usize]
            }
        }
    }

    /// One step of a layer's neurons from its input current `a` (bias included); returns the
    /// layer's output to the next layer (spikes, or the state).
    fn neuron_step(
        &self,
        f: Activation,
        a: &[f32],
        state: &mut [f32],
        spikes: &mut [f32],
    ) -> Vec<f32> {
        match self.neuron {
            NeuronDesc::Lif(l) => {
                let (theta, beta) = (l.threshold as f32, (-(l.leak_shift as f32)).exp2());
                for ((u, s), &i) in state.iter_mut().zip(spikes.iter_mut()).zip(a) {
                    let fired = *s > 0.0;
                    *u = match l.reset {
                        Reset::Subtract => *u - *u * beta + i - if fired { theta } else { 0.0 },
                        Reset::Zero if fired => i,
                        Reset::Zero => *u - *u * beta + i,
                    };
                    *s = (*u > theta) as u8 as f32;
                }
                spikes.to_vec()
            }
            NeuronDesc::Continuous(ContinuousDesc { tau_shift, .. }) => {
                let k = (-(tau_shift as f32)).exp2();
                for (h, &i) in state.iter_mut().zip(a) {
                    *h += (activate(f, i) - *h) * k;
                }
                state.to_vec()
            }
            NeuronDesc::Rate => unreachable!("rate networks use SigpropF32"),
        }
    }

    /// The learning signal of a layer's state and its derivative.
    fn signal(&self, u: f32) -> (f32, f32) {
        match self.neuron {
            NeuronDesc::Lif(LifDesc {
                learning: SpikeLearning::Surrogate,
                threshold,
                ..
            }) => {
                let w = 2.0 * threshold as f32;
                let inside = u > 0.0 && u < w;
                ((u / w).clamp(0.0, 1.0), if inside { 1.0 / w } else { 0.0 })
            }
            _ => (u, 1.0),
        }
    }

    /// Recomputes the class targets: each class's target stream from rest.
    pub fn refresh_targets(&mut self) {
        let (steps, hidden) = (self.steps(), self.hidden());
        let lif = matches!(self.neuron, NeuronDesc::Lif(_));
        for k in 0..self.classes {
            let mut states: Vec<Vec<f32>> = (0..hidden)
                .map(|i| vec![0.0; self.layers[i].width])
                .collect();
            let mut spikes = states.clone();
            let mut sums = states.clone();
            for t in 0..steps {
                let mut x: Vec<f32> = Vec::new();
                for i in 0..hidden {
                    let w = self.layers[i].width;
                    let a: Vec<f32> = if i == 0 {
                        (0..w)
                            .map(|c| {
                                self.projection[k * w + c] + self.projection[self.classes * w + c]
                            })
                            .collect()
                    } else {
                        let mut a = Vec::new();
                        self.layers[i].forward(&x, &mut a);
                        a
                    };
                    x = self.neuron_step(self.activations[i], &a, &mut states[i], &mut spikes[i]);
                    for (s, &u) in sums[i].iter_mut().zip(&states[i]) {
                        let v = self.signal(u).0;
                        *s = if lif {
                            *s + v / steps as f32
                        } else if t + 1 == steps {
                            v
                        } else {
                            *s
                        };
                    }
                }
            }
            for (i, s) in sums.into_iter().enumerate() {
                let w = self.layers[i].width;
                self.targets[i][k * w..(k + 1) * w].copy_from_slice(&s);
            }
        }
    }

    /// Runs one sample; with `label` it learns at every step. Returns the prediction.
    fn run(&mut self, label: Option<usize>) -> usize {
        let (steps, hidden, n) = (self.steps(), self.hidden(), self.layers.len());
        let inputs = self.inputs();
        let lif = matches!(self.neuron, NeuronDesc::Lif(_));
        let mut states: Vec<Vec<f32>> = (0..n).map(|i| vec![0.0; self.layers[i].width]).collect();
        let mut spikes = states.clone();
        let mut counts = vec![0.0f32; self.layers[n - 1].width];
        let mut mean_last = vec![0.0f32; self.layers[hidden - 1].width];
        let mut err = Vec::new();
        // Continuous time: the label's target stream advances alongside the data stream.
        let alongside = !lif && label.is_some();
        let mut tstates: Vec<Vec<f32>> = (0..hidden)
            .map(|i| vec![0.0; self.layers[i].width])
            .collect();
        let mut tspikes = tstates.clone();
        for (t, input) in inputs.iter().enumerate() {
            let mut x = input.clone();
            // This step's target of every hidden layer (continuous time).
            let mut now_targets: Vec<Vec<f32>> = Vec::new();
            if let (true, Some(y)) = (alongside, label) {
                let mut tx: Vec<f32> = Vec::new();
                for i in 0..hidden {
                    let w = self.layers[i].width;
                    let a: Vec<f32> = if i == 0 {
                        (0..w)
                            .map(|c| {
                                self.projection[y * w + c] + self.projection[self.classes * w + c]
                            })
                            .collect()
                    } else {
                        let mut a = Vec::new();
                        self.layers[i].forward(&tx, &mut a);
                        a
                    };
                    tx =
                        self.neuron_step(self.activations[i], &a, &mut tstates[i], &mut tspikes[i]);
                    now_targets.push(tstates[i].clone());
                }
            }
            for i in 0..n {
                let mut a = Vec::new();
                self.layers[i].forward(&x, &mut a);
                let out = self.neuron_step(self.activations[i], &a, &mut states[i], &mut spikes[i]);
                let sig: Vec<(f32, f32)> = states[i].iter().map(|&u| self.signal(u)).collect();
                if i == hidden - 1 {
                    for (m, s) in mean_last.iter_mut().zip(&sig) {
                        *m = if lif { *m + s.0 } else { s.0 };
                    }
                }
                if i == n - 1 && self.has_output {
                    for (c, (&s, &u)) in counts.iter_mut().zip(spikes[i].iter().zip(&states[i])) {
                        *c += match self.neuron {
                            NeuronDesc::Lif(LifDesc {
                                readout: SpikeReadout::SpikeCount,
                                ..
                            }) => s,
                            NeuronDesc::Lif(_) => u,
                            _ => 0.0,
                        };
                        if !lif && t + 1 == steps {
                            *c = u;
                        }
                    }
                }
                if let Some(y) = label {
                    let rate = self.lrs[i] * self.lr_scale;
                    let v: Vec<f32> = sig.iter().map(|s| s.0).collect();
                    let delta: Vec<f32> = if i < hidden {
                        match self.loss {
                            LossKind::Hebbian { .. } | LossKind::L2 => {
                                let f = self.activations[i];
                                let ty: &[f32] = if alongside {
                                    &now_targets[i]
                                } else {
                                    self.target(i, y)
                                };
                                ty.iter()
                                    .zip(&v)
                                    .map(|(&ty, &h)| {
                                        let d = h - ty;
                                        if self.loss == LossKind::L2 {
                                            derivative(f, h) * d
                                        } else {
                                            d
                                        }
                                    })
                                    .collect()
                            }
                            _ => {
                                let scores: Vec<f32> = (0..self.classes)
                                    .map(|k| {
                                        v.iter().zip(self.target(i, k)).map(|(a, b)| a * b).sum()
                                    })
                                    .collect();
                                softmax_err(&scores, y, &mut err);
                                (0..v.len())
                                    .map(|j| {
                                        let d: f32 = (0..self.classes)
                                            .map(|k| err[k] * self.target(i, k)[j])
                                            .sum();
                                        d * sig[j].1
                                    })
                                    .collect()
                            }
                        }
                    } else {
                        softmax_err(&v, y, &mut err);
                        err.iter().zip(&sig).map(|(e, s)| e * s.1).collect()
                    };
                    let pre = match self.loss {
                        LossKind::Hebbian { pre: Pre::Target } if i > 0 && i < hidden => {
                            if alongside {
                                now_targets[i - 1].clone()
                            } else {
                                self.target(i - 1, y).to_vec()
                            }
                        }
                        _ => x.clone(),
                    };
                    self.layers[i].update(&pre, &delta, rate);
                }
                x = out;
            }
        }
        if label.is_some() {
            for l in &mut self.layers {
                l.flush(1.0);
            }
        }
        if self.nearest {
            let last = hidden - 1;
            let scores: Vec<f32> = (0..self.classes)
                .map(|k| {
                    mean_last
                        .iter()
                        .zip(self.target(last, k))
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect();
            super::argmax(&scores)
        } else {
            super::argmax(&counts)
        }
    }
}

impl Model for TemporalF32 {
    fn observe_pixels(&mut self, pixels: &[u8], max: u8, key: u64) {
        self.pixels.clear();
        self.pixels.extend_from_slice(pixels);
        self.max = max;
        self.key = key;
    }

    fn train_sample(&mut self, step: u64, _x: &[f32], label: usize) -> usize {
        if step.is_multiple_of(self.target_refresh) {
            self.refresh_targets();
        }
        self.lr_scale = super::anneal_scale(self.anneal_every, step);
        self.run(Some(label))
    }

    fn begin_eval(&mut self) {
        self.refresh_targets();
    }

    fn predict(&mut self, _x: &[f32]) -> usize {
        self.run(None)
    }

    fn end_batch(&mut self, _scale: f32) {}

    fn finite(&self) -> bool {
        self.layers
            .iter()
            .all(|l| l.weights.iter().all(|w| w.is_finite()))
    }
}
