//! Plain backpropagation in f32 on the same architecture: the accuracy baseline.
//!
//! The hidden layers of the description, then an output layer of `classes` identity neurons
//! (whatever the readout), all from the chip's initial weights. For the `nearest_target` readout
//! the output layer is not among them: it is drawn from `SplitMix64::new(seed ^ 0xBAC0)`, uniform
//! in `±1/sqrt(fan_in)`, row-major with the bias row last, like the others.
//!
//! Loss: softmax cross-entropy of the output, `L = logsumexp(z) - z_y`. Per training sample
//! (online SGD, batch 1), with every output of the forward pass kept:
//! `delta_out = softmax(z) - onehot(y)`, `delta_l = f_l'(a_l) ⊙ (W_{l+1} delta_{l+1})` (the bias
//! row excluded), then `W_l -= lr_l delta_l h_{l-1}^T` for every layer, with the learning rates of
//! the description (`2^-lr_shift` per layer; the output layer `readout_lr_shift` or `lr_shift`).

use super::{argmax, derivative, lr, lr_shifts, softmax_err, Dense, Model};
use sigchip_compiler::quantize::initial_weights;
use sigchip_compiler::validate::Node;
use sigchip_compiler::ValidNetwork;
use sigchip_isa::rng::SplitMix64;
use sigchip_isa::Activation;

/// Seed offset of the output layer backpropagation adds to a `nearest_target` network.
pub const OUTPUT_SEED: u64 = 0xBAC0;

/// A feed-forward network trained by backpropagation in f32.
#[derive(Clone, Debug)]
pub struct BackpropF32 {
    /// Hidden layers, then the output layer.
    pub layers: Vec<Dense>,
    /// Learning rate of each layer.
    pub lr: Vec<f32>,
    /// Every this many samples every learning rate halves (`learning.anneal_every`).
    pub anneal_every: Option<u64>,
    /// The current factor of the learning rates.
    pub lr_scale: f32,
}

impl BackpropF32 {
    pub fn new(net: &ValidNetwork) -> Self {
        let desc = net.desc();
        let (hidden_shifts, out_shift) = lr_shifts(net);
        let mut layers: Vec<Dense> = net
            .layers()
            .zip(initial_weights(net))
            .map(|(node, fl)| {
                Dense {
                    inputs: fl.inputs as usize,
                    width: fl.width as usize,
                    bias: fl.bias,
                    activation: match node {
                        Node::Hidden { index, .. } => desc.layers[*index].activation,
                        _ => Activation::Identity,
                    },
                    weights: fl.weights.iter().map(|&w| w as f32).collect(),
                    pending: None,
                }
                .batched(desc.learning.batch > 1)
            })
            .collect();
        if desc.readout.is_nearest() {
            let inputs = layers.last().expect("validated: a hidden layer").width;
            let width = desc.classes as usize;
            let bound = 1.0 / (inputs as f64).sqrt();
            let mut rng = SplitMix64::new(desc.seed ^ OUTPUT_SEED);
            let rows = inputs + desc.bias as usize;
            layers.push(
                Dense {
                    inputs,
                    width,
                    bias: desc.bias,
                    activation: Activation::Identity,
                    weights: (0..rows * width)
                        .map(|_| rng.uniform(bound) as f32)
                        .collect(),
                    pending: None,
                }
                .batched(desc.learning.batch > 1),
            );
        }
        let mut lrs: Vec<f32> = hidden_shifts.into_iter().map(lr).collect();
        lrs.push(lr(out_shift));
        debug_assert_eq!(lrs.len(), layers.len());
        BackpropF32 {
            layers,
            lr: lrs,
            anneal_every: desc.learning.anneal_every,
            lr_scale: 1.0,
        }
    }

    /// Every layer's output, the logits last.
    pub fn forward(&self, x: &[f32]) -> Vec<Vec<f32>> {
        let mut hs: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.iter().enumerate() {
            let mut h = Vec::new();
            l.forward(if i == 0 { x } else { &hs[i - 1] }, &mut h);
            hs.push(h);
        }
        hs
    }

    /// The cross-entropy loss of one sample, `logsumexp(z) - z_y`.
    pub fn loss(&self, x: &[f32], y: usize) -> f32 {
        let hs = self.forward(x);
        let z = hs.last().expect("an output layer");
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        m + z.iter().map(|&v| (v - m).exp()).sum::<f32>().ln() - z[y]
    }

    /// The forward pass and every layer's error `dL/da` (pre-activation), all from the current
    /// weights.
    pub fn backward(&self, x: &[f32], y: usize) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let hs = self.forward(x);
        let n = self.layers.len();
        let mut deltas = vec![Vec::new(); n];
        softmax_err(&hs[n - 1], y, &mut deltas[n - 1]);
        for l in (0..n - 1).rev() {
            let above = &self.layers[l + 1];
            let d: Vec<f32> = (0..above.inputs)
                .map(|r| {
                    let g: f32 = above
                        .row(r)
                        .iter()
                        .zip(&deltas[l + 1])
                        .map(|(w, d)| w * d)
                        .sum();
                    derivative(self.layers[l].activation, hs[l][r]) * g
                })
                .collect();
            deltas[l] = d;
        }
        (hs, deltas)
    }

    /// The gradient of [`Self::loss`] with respect to every layer's weights, in their layout:
    /// `dL/dW[r][c] = h_{l-1}[r] delta[c]`, the bias row `delta[c]`.
    pub fn gradient(&self, x: &[f32], y: usize) -> Vec<Vec<f32>> {
        let (hs, deltas) = self.backward(x, y);
        self.layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let input = if l == 0 { x } else { &hs[l - 1] };
                let mut g = Vec::with_capacity(layer.weights.len());
                for &xr in input.iter().chain(layer.bias.then_some(&1.0)) {
                    g.extend(deltas[l].iter().map(|&d| xr * d));
                }
                g
            })
            .collect()
    }

    /// One online SGD step; returns the prediction of the forward pass before the update.
    pub fn step(&mut self, x: &[f32], y: usize) -> usize {
        let (hs, deltas) = self.backward(x, y);
        let prediction = argmax(hs.last().expect("an output layer"));
        for l in 0..self.layers.len() {
            let input = if l == 0 { x } else { &hs[l - 1] };
            let lr = self.lr[l] * self.lr_scale;
            self.layers[l].update(input, &deltas[l], lr);
        }
        prediction
    }
}

impl Model for BackpropF32 {
    fn end_batch(&mut self, scale: f32) {
        for l in &mut self.layers {
            l.flush(scale);
        }
    }

    fn finite(&self) -> bool {
        self.layers
            .iter()
            .all(|l| l.weights.iter().all(|w| w.is_finite()))
    }

    fn train_sample(&mut self, step: u64, x: &[f32], label: usize) -> usize {
        self.lr_scale = if self.layers[0].pending.is_some() {
            1.0
        } else {
            super::anneal_scale(self.anneal_every, step)
        };
        self.step(x, label)
    }

    fn begin_eval(&mut self) {}

    fn predict(&mut self, x: &[f32]) -> usize {
        argmax(self.forward(x).last().expect("an output layer"))
    }
}
