//! The network description format (RON) and its parser: the `parse` pass.
//!
//! See `docs/network-format.md` and `examples/digits.ron` for the format.

use serde::{Deserialize, Serialize};
use sigchip_isa::{Activation, ProjectionMode, Readout, Rounding, TargetMode};
pub use sigchip_isa::{Encoding, Reset, SpikeLearning, SpikeReadout, UpdateTiming};

/// A sigprop network as the user writes it. Construction only: [`crate::validate()`] turns it into
/// a [`crate::ValidNetwork`], which later passes require.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDesc {
    pub name: String,
    /// Input values per sample.
    pub input: u32,
    pub classes: u32,
    /// Hidden layers, in order from the input.
    pub layers: Vec<LayerDesc>,
    /// How layer 1 turns the one-hot label into its target: `fixed_random` or `learned`.
    #[serde(default = "default_projection")]
    pub projection: ProjectionMode,
    #[serde(default)]
    pub loss: LossKind,
    /// `constant`: targets do not learn (only the data stream's error updates weights);
    /// `learned`: both streams learn.
    #[serde(default = "default_targets")]
    pub targets: TargetMode,
    /// Recompute the class targets every this many training samples (1 = exact).
    #[serde(default = "one")]
    pub target_refresh: u32,
    #[serde(default = "default_readout")]
    pub readout: Readout,
    #[serde(default)]
    pub learning: LearningDesc,
    /// Whether every layer has a bias (a crossbar row driven by a constant one).
    #[serde(default = "yes")]
    pub bias: bool,
    /// Seed of the initial weights and of the chip's stochastic rounding.
    #[serde(default)]
    pub seed: u64,
    /// How neurons evolve within a sample: one activation (`rate`, the default), leaky
    /// integrate-and-fire over time steps (`lif`), or continuous time (`continuous`).
    #[serde(default)]
    pub neuron: NeuronDesc,
}

/// How every layer's neurons evolve within a sample (sigprop.md sections 6 and 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuronDesc {
    /// One activation `f(W x + b)` per sample.
    #[default]
    Rate,
    /// Leaky integrate-and-fire over `steps` time steps:
    /// `U[t] = U[t-1] - U[t-1] >> leak_shift + W s[t] + b - threshold * S[t-1]` (reset by
    /// subtraction; `reset: zero` sets `U` to 0 after a spike instead), `S[t] = [U[t] > threshold]`.
    Lif(LifDesc),
    /// Continuous time, by forward Euler over `steps` time steps:
    /// `h[t] = h[t-1] + (f(W x[t] + b) - h[t-1]) >> tau_shift` (`tau = 2^tau_shift` steps).
    Continuous(ContinuousDesc),
}

/// Leaky integrate-and-fire neurons.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifDesc {
    /// Firing threshold, in the neuron-state format's units (a real number, e.g. 1.0).
    pub threshold: f64,
    /// The leak: `U -= U >> leak_shift` every step (`beta = 1 - 2^-leak_shift`).
    pub leak_shift: u8,
    #[serde(default)]
    pub reset: Reset,
    /// Time steps per sample.
    pub steps: u32,
    /// How pixels become input spikes.
    #[serde(default)]
    pub encoding: Encoding,
    /// What the local loss compares.
    #[serde(default)]
    pub learning: SpikeLearning,
    /// When weights change.
    #[serde(default)]
    pub update: UpdateTiming,
    /// How the output layer's activity becomes a prediction (`output_layer` readout).
    #[serde(default)]
    pub readout: SpikeReadout,
}

/// Continuous-time neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinuousDesc {
    /// `tau = 2^tau_shift` time steps.
    pub tau_shift: u8,
    /// Time steps per sample.
    pub steps: u32,
}

impl NeuronDesc {
    /// Time steps per sample (1 for rate neurons).
    pub fn steps(&self) -> u32 {
        match self {
            NeuronDesc::Rate => 1,
            NeuronDesc::Lif(l) => l.steps,
            NeuronDesc::Continuous(c) => c.steps,
        }
    }
}

/// One hidden layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerDesc {
    pub width: u32,
    #[serde(default = "default_activation")]
    pub activation: Activation,
    /// This layer's learning rate shift, overriding `learning.lr_shift`.
    #[serde(default)]
    pub lr_shift: Option<u8>,
}

/// The local loss of the hidden layers (sigprop.md section 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Cross-entropy of the softmax over the dot products with the C class targets (sigprop `v1`).
    #[default]
    LabelDirect,
    /// `1/2 |h - t_label|^2` per neuron; collapses in float when both streams learn.
    L2,
    /// `dW = lr (t - h) pre^T`: `pre: target` as the sigprop authors write it (the target
    /// stream's input; layer 1, whose target does not pass through its weights, uses its data
    /// input), `pre: data` for the delta rule.
    Hebbian { pre: sigchip_isa::Pre },
    /// Batch-contrastive (sigprop `v14`): the softmax over the batch's targets, against the first
    /// batch entry most similar to the sample's (its own class at layer 1). Needs mini-batches.
    TargetMax,
    /// Batch-contrastive (sigprop `v9`): against every batch entry tied for most similar.
    TargetMaxAll,
    /// Batch-contrastive (sigprop `v15`): against the `k` most similar batch entries.
    #[serde(rename = "target_topk")]
    TargetTopK { k: u16 },
}

impl std::fmt::Display for LossKind {
    /// As the network description writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossKind::LabelDirect => f.write_str("label_direct"),
            LossKind::L2 => f.write_str("l2"),
            LossKind::Hebbian { pre } => write!(f, "hebbian(pre: {pre})"),
            LossKind::TargetMax => f.write_str("target_max"),
            LossKind::TargetMaxAll => f.write_str("target_max_all"),
            LossKind::TargetTopK { k } => write!(f, "target_topk(k: {k})"),
        }
    }
}

impl LossKind {
    /// The loss the learning unit of a hidden layer computes.
    pub fn local_loss(self) -> sigchip_isa::LocalLoss {
        match self {
            LossKind::LabelDirect => sigchip_isa::LocalLoss::LabelDirect,
            LossKind::L2 => sigchip_isa::LocalLoss::L2,
            LossKind::Hebbian { pre } => sigchip_isa::LocalLoss::Hebbian { pre },
            LossKind::TargetMax => sigchip_isa::LocalLoss::TargetMax,
            LossKind::TargetMaxAll => sigchip_isa::LocalLoss::TargetMaxAll,
            LossKind::TargetTopK { k } => sigchip_isa::LocalLoss::TargetTopK { k },
        }
    }
}

/// Learning hyper-parameters shared by all layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearningDesc {
    /// Learning rate `2^-lr_shift`.
    pub lr_shift: u8,
    /// Learning rate shift of the output layer (`output_layer` readout); defaults to `lr_shift`.
    pub readout_lr_shift: Option<u8>,
    pub rounding: Rounding,
    /// Every this many training samples, every learning-rate shift grows by one (the rate
    /// halves); unset = a constant rate.
    pub anneal_every: Option<u64>,
    /// Samples per weight update. 1 = online; a larger power of two accumulates each synapse's
    /// updates in a gradient accumulator and applies their mean (a shift) at the end of the batch.
    pub batch: u32,
}

impl Default for LearningDesc {
    fn default() -> Self {
        Self {
            lr_shift: 6,
            readout_lr_shift: None,
            rounding: Rounding::Stochastic,
            anneal_every: None,
            batch: 1,
        }
    }
}

fn default_projection() -> ProjectionMode {
    ProjectionMode::FixedRandom
}
fn default_targets() -> TargetMode {
    TargetMode::Constant
}
fn default_readout() -> Readout {
    Readout::OutputLayer
}
fn default_activation() -> Activation {
    Activation::Relu
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// A network description that is not well-formed RON of the right shape.
#[derive(Debug, thiserror::Error)]
#[error("{origin}:{line}:{col}: malformed network description: {message}")]
pub struct ParseError {
    pub origin: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The `parse` pass: RON text to a [`NetworkDesc`]; `origin` names the text in errors.
pub fn parse(text: &str, origin: &str) -> Result<NetworkDesc, ParseError> {
    ron::Options::default()
        .with_default_extension(
            ron::extensions::Extensions::IMPLICIT_SOME
                | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES,
        )
        .from_str(text)
        .map_err(|e| ParseError {
            origin: origin.into(),
            line: e.span.start.line,
            col: e.span.start.col,
            message: e.code.to_string(),
        })
}
