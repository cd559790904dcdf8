//! The chip program: what the compiler emits and the emulator runs.

use crate::chip::ChipDescription;
use crate::fixed_point::QFormat;
use crate::ids::{CoreId, LayerId, RouteId};
use crate::instr::{Buf, Instr};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of the program format this build reads and writes.
pub const PROGRAM_FORMAT_VERSION: u32 = 1;

/// A compiled program: the chip it targets, what the network is, and for every used core its
/// weights and instruction streams, plus every route between cores and ports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    pub format_version: u32,
    pub name: String,
    pub chip: ChipDescription,
    pub network: NetworkInfo,
    /// Layer `n` is `layers[n - 1]`.
    pub layers: Vec<LayerInfo>,
    /// Core `n` is `cores[n]`.
    pub cores: Vec<CoreProgram>,
    /// Route `n` is `routes[n]`.
    pub routes: Vec<Route>,
}

/// Network-wide facts the chip needs at run time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInfo {
    /// Input values per sample.
    pub input_len: u32,
    pub classes: u16,
    /// Format of the input port's values: a pixel `p` of a data set whose pixels go up to `max`
    /// enters as `round(p / max * max_raw)`: full scale is the format's largest value.
    pub input_format: QFormat,
    pub readout: Readout,
    /// Seed of the stochastic-rounding generator.
    pub seed: u64,
    /// The class targets are recomputed every `target_refresh` training samples (1 = exact).
    pub target_refresh: u32,
    /// Whether the target stream also learns (`learned`) or is held constant (`constant`).
    pub targets: TargetMode,
    /// Every this many training samples every learning-rate shift grows by one (a counter and
    /// an adder in the learning unit); `None` keeps the rates constant.
    #[serde(default)]
    pub lr_anneal_every: Option<u64>,
    /// Samples per weight update (a power of two). Above 1, `gacc` accumulates each synapse's
    /// updates and the `apply` phase's `gapply` applies their mean.
    #[serde(default = "one")]
    pub batch: u32,
    /// How neurons evolve within a sample (time steps, spiking or continuous time).
    #[serde(default)]
    pub neuron: NeuronModel,
}

/// How every layer's neurons evolve within a sample. With time (`lif`, `continuous`) every
/// sample runs `steps` time steps: each is one `forward` (and, when training, one `learn`) job
/// of every core, and each target refresh is `steps` `targets` jobs (docs/isa.md, "Time steps").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeuronModel {
    /// One activation per sample.
    #[default]
    Rate,
    /// Leaky integrate-and-fire; `threshold` is raw in each layer's state format.
    Lif {
        threshold: i32,
        leak_shift: u8,
        reset: Reset,
        steps: u16,
        encoding: Encoding,
        learning: SpikeLearning,
        update: UpdateTiming,
        readout: SpikeReadout,
    },
    /// Continuous time by forward Euler: `h += (f(a) - h) >> tau_shift`.
    Continuous { tau_shift: u8, steps: u16 },
}

impl NeuronModel {
    /// Time steps per sample (1 for rate neurons).
    pub fn steps(&self) -> u16 {
        match self {
            NeuronModel::Rate => 1,
            NeuronModel::Lif { steps, .. } | NeuronModel::Continuous { steps, .. } => *steps,
        }
    }

    /// Whether neurons keep a state across time steps.
    pub fn has_time(&self) -> bool {
        *self != NeuronModel::Rate
    }

    pub fn is_lif(&self) -> bool {
        matches!(self, NeuronModel::Lif { .. })
    }

    /// Whether weight updates are summed over a sample's steps (gradient accumulators).
    pub fn sums_updates(&self) -> bool {
        matches!(
            self,
            NeuronModel::Lif {
                update: UpdateTiming::Summed,
                ..
            }
        )
    }
}

/// What a spike does to the membrane potential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reset {
    /// `U -= threshold` at the next step.
    #[default]
    Subtract,
    /// `U = 0` at the next step, before the input is added.
    Zero,
}

/// Input spike encoders of the input port ([`crate::encode`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Each step a pixel spikes with probability `p / max`.
    #[default]
    Rate,
    /// A pixel spikes once, the brightest first.
    Latency,
}

/// The learning signal of a spiking layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeLearning {
    /// The local loss on the membrane potential `U` (no surrogate).
    #[default]
    Voltage,
    /// The local loss on `g(U) = clamp(U / (2 threshold), 0, 1)`, a hard sigmoid.
    Surrogate,
}

/// When the weights of a layer with time change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateTiming {
    /// After every time step.
    #[default]
    PerStep,
    /// Summed over the sample's steps and applied at its end.
    Summed,
}

/// How a spiking output layer predicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeReadout {
    /// The class whose output neuron spiked most.
    #[default]
    SpikeCount,
    /// The class whose output neuron's learning signal, summed over the steps, is largest.
    Membrane,
}

fn one() -> u32 {
    1
}

fn default_state_format() -> QFormat {
    QFormat::new(16, 10)
}

impl NetworkInfo {
    /// What the learning-rate shifts grow by before training sample `step` (0-based).
    pub fn lr_anneal(&self, step: u64) -> i32 {
        self.lr_anneal_every
            .map_or(0, |n| (step / n).min(31) as i32)
    }
}

/// How the network's prediction is read out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// A final layer trained by cross-entropy against the label; prediction = argmax of its outputs.
    OutputLayer,
    /// Prediction = the class whose target in the last layer's target memory has the largest dot
    /// product with the last layer's output.
    NearestTarget,
    /// Prediction = the class whose target is nearest to the last layer's output in L2 distance.
    NearestTargetL2,
}

impl Readout {
    /// Whether the prediction is a nearest class target (no output layer).
    pub fn is_nearest(self) -> bool {
        matches!(self, Readout::NearestTarget | Readout::NearestTargetL2)
    }
}

/// Whether gradients also flow through the target stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetMode {
    /// Targets are constants for the loss: only the data stream's error updates weights.
    Constant,
    /// Both streams learn: the target stream's error updates the same weights (and a learned
    /// projection).
    Learned,
}

/// Neuron activation functions of the neuron unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    /// Negative inputs are scaled by `2^-shift` (an arithmetic shift).
    LeakyRelu {
        shift: u8,
    },
    Identity,
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu { shift } => write!(f, "leaky_relu(>>{shift})"),
            Activation::Identity => f.write_str("identity"),
        }
    }
}

/// The local loss a layer's learning unit computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalLoss {
    /// Sigprop `label_direct`: cross-entropy of the softmax over the dot products of the output
    /// with the C class targets.
    LabelDirect,
    /// Cross-entropy of the outputs (logits) against the label: the `output_layer` readout.
    CrossEntropy,
    /// Sigprop `l2`: `1/2 |h - t_label|^2`, per neuron.
    L2,
    /// The `hebbian` rule: `dW = lr (t - h) pre^T`, with `pre` the target stream's input
    /// (as the sigprop authors write it) or the data stream's (the delta rule).
    Hebbian { pre: crate::instr::Pre },
    /// Sigprop `target_max` (`v14`): the batch softmax over `h_b . t_j`, cross-entropy against
    /// the first batch index `j` maximizing `Y_bj` (`Y = [y_b = y_j]` at layer 1, the class
    /// similarity of the target inputs beyond).
    TargetMax,
    /// Sigprop `target_max_all` (`v9`): as `target_max`, against the uniform distribution over
    /// every `j` that reaches the row maximum of `Y_b`.
    TargetMaxAll,
    /// Sigprop `target_topk` (`v15`): as `target_max_all`, over the `k` largest `Y_bj` (ties to
    /// the lower batch index).
    #[serde(rename = "target_topk")]
    TargetTopK { k: u16 },
}

impl LocalLoss {
    /// Whether the loss is one of the batch-contrastive ones (`target_max`, `target_max_all`,
    /// `target_topk`), whose softmax spans the mini-batch.
    pub fn is_contrastive(self) -> bool {
        matches!(
            self,
            LocalLoss::TargetMax | LocalLoss::TargetMaxAll | LocalLoss::TargetTopK { .. }
        )
    }

    /// Whether the layer's leader runs a softmax over class scores against its class targets.
    pub fn uses_class_softmax(self) -> bool {
        self == LocalLoss::LabelDirect || self.is_contrastive()
    }

    /// Whether every core of the layer needs the label (per-neuron losses against `t[label]`).
    pub fn label_on_every_core(self) -> bool {
        matches!(self, LocalLoss::L2 | LocalLoss::Hebbian { .. })
    }

    /// Whether the layer's cores keep their inputs of the target stream, `tgtin`.
    pub fn needs_target_inputs(self) -> bool {
        matches!(
            self,
            LocalLoss::Hebbian {
                pre: crate::instr::Pre::Target
            }
        )
    }
}

impl fmt::Display for LocalLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalLoss::LabelDirect => f.write_str("label_direct"),
            LocalLoss::CrossEntropy => f.write_str("cross_entropy"),
            LocalLoss::L2 => f.write_str("l2"),
            LocalLoss::Hebbian { pre } => write!(f, "hebbian(pre: {pre})"),
            LocalLoss::TargetMax => f.write_str("target_max"),
            LocalLoss::TargetMaxAll => f.write_str("target_max_all"),
            LocalLoss::TargetTopK { k } => write!(f, "target_topk(k: {k})"),
        }
    }
}

/// Rounding of weight updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    Nearest,
    /// Unbiased stochastic rounding with counter-based random bits (see `rng`).
    Stochastic,
}

/// The layer-1 target projection `S1`, held on layer 1's column-reducing cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionMode {
    Learned,
    FixedRandom,
    /// `c` is projected to the input's shape by a fixed random matrix the input port regenerates
    /// with an LFSR ([`Program::input_projection`]), and layer 1's crossbar processes it like
    /// data: the target stream goes through `W1`.
    ToInput,
}

/// Per-layer facts: shape, formats, activation, loss, learning parameters and its cores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerInfo {
    pub id: LayerId,
    pub name: String,
    /// Input values (without the bias axon).
    pub inputs: u32,
    /// Neurons.
    pub width: u32,
    /// Whether the crossbar has a bias row driven by a constant-one axon.
    pub bias: bool,
    pub activation: Activation,
    pub weight_format: QFormat,
    pub in_format: QFormat,
    pub out_format: QFormat,
    /// Format of the neuron state (membrane potential or continuous-time state) of layers
    /// with time.
    #[serde(default = "default_state_format")]
    pub state_format: QFormat,
    pub loss: LocalLoss,
    /// Learning rate `2^-lr_shift`.
    pub lr_shift: u8,
    pub rounding: Rounding,
    /// Present on layer 1 of a network that trains with class targets.
    pub projection: Option<ProjectionInfo>,
    /// Whether this layer keeps class targets in target memory.
    pub keeps_targets: bool,
    /// Row tiles x column tiles of the layer's crossbar.
    pub row_tiles: u32,
    pub col_tiles: u32,
}

/// The target projection of layer 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionInfo {
    pub mode: ProjectionMode,
    pub format: QFormat,
}

impl LayerInfo {
    /// Crossbar rows of the whole layer: inputs plus the bias axon.
    pub fn rows(&self) -> u32 {
        self.inputs + self.bias as u32
    }
}

/// Where a route starts or ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// The input port, west of core (0, 0), at depth 0.
    Input,
    /// The output port, east of the grid's last column on row 0, at depth layers + 1.
    Output,
    Core(CoreId),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Input => f.write_str("input"),
            Endpoint::Output => f.write_str("output"),
            Endpoint::Core(c) => write!(f, "{c}"),
        }
    }
}

/// A route: a fixed, dimension-ordered (x first, then y) path that carries a slice of a source
/// buffer into a destination buffer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: RouteId,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub src_buf: Buf,
    pub src_start: u32,
    pub len: u32,
    pub dst_buf: Buf,
    pub dst_start: u32,
}

/// Whether a route moves forward, stays in a layer, or goes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    Forward,
    Lateral,
    Backward,
}

/// The part of a layer's weight matrix a core holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    /// First layer row (input index; the bias row is `inputs`) and row count, bias row included.
    pub row_start: u32,
    pub rows: u32,
    pub col_start: u32,
    pub cols: u32,
    pub row_tile: u32,
    pub col_tile: u32,
}

impl Tile {
    /// The core that finishes the columns: it gathers the other row tiles' partial sums.
    pub fn is_reducer(&self) -> bool {
        self.row_tile == 0
    }

    /// The core that reduces the layer's scores and runs its softmax.
    pub fn is_leader(&self) -> bool {
        self.row_tile == 0 && self.col_tile == 0
    }
}

/// Instruction streams of one core, one per phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Streams {
    /// Recomputes the class targets (run every `target_refresh` training samples).
    pub targets: Vec<Instr>,
    /// Inference of one sample.
    pub forward: Vec<Instr>,
    /// Local learning of one sample; runs right after `forward` on a training sample.
    pub learn: Vec<Instr>,
    /// Applies the gradient accumulators at the end of a mini-batch (empty when online).
    #[serde(default)]
    pub apply: Vec<Instr>,
    /// Takes the mini-batch's labels at its start (batch-contrastive losses only).
    #[serde(default)]
    pub batch: Vec<Instr>,
}

impl Streams {
    pub fn total_len(&self) -> usize {
        self.targets.len()
            + self.forward.len()
            + self.learn.len()
            + self.apply.len()
            + self.batch.len()
    }

    /// The phases with their names, for listings, in the order a mini-batch runs them.
    pub fn phases(&self) -> [(&'static str, &[Instr]); 5] {
        [
            ("targets", &self.targets),
            ("batch", &self.batch),
            ("forward", &self.forward),
            ("learn", &self.learn),
            ("apply", &self.apply),
        ]
    }
}

/// One used core.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreProgram {
    pub id: CoreId,
    pub layer: LayerId,
    /// Grid position (x, y).
    pub x: u16,
    pub y: u16,
    pub tile: Tile,
    /// `tile.rows x tile.cols` crossbar weights.
    pub weights: WeightImage,
    /// `(classes + 1) x tile.cols` learned target projection (last row: its bias), on layer 1's
    /// reducers. A `fixed_random` projection is not stored: the core regenerates it with an LFSR
    /// ([`crate::rng::fixed_projection_row`]).
    pub projection: Option<WeightImage>,
    pub streams: Streams,
}

/// A matrix of raw fixed-point values, written in RON as one hexadecimal string per row
/// (two's complement, `ceil(bits / 4)` digits per value) so large crossbars stay readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WeightImageText", into = "WeightImageText")]
pub struct WeightImage {
    pub rows: u32,
    pub cols: u32,
    pub format: QFormat,
    /// Row-major raw values.
    pub data: Vec<i32>,
}

impl WeightImage {
    pub fn zeros(rows: u32, cols: u32, format: QFormat) -> Self {
        Self {
            rows,
            cols,
            format,
            data: vec![0; rows as usize * cols as usize],
        }
    }

    pub fn get(&self, row: u32, col: u32) -> i32 {
        self.data[row as usize * self.cols as usize + col as usize]
    }

    pub fn bits(&self) -> u64 {
        self.data.len() as u64 * self.format.bits as u64
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightImageText {
    rows: u32,
    cols: u32,
    format: QFormat,
    hex: Vec<String>,
}

impl From<WeightImage> for WeightImageText {
    fn from(w: WeightImage) -> Self {
        let digits = (w.format.bits as usize).div_ceil(4);
        let mask = (1u64 << w.format.bits) - 1;
        let hex = w
            .data
            .chunks(w.cols.max(1) as usize)
            .map(|row| {
                row.iter()
                    .map(|&v| format!("{:0digits$x}", (v as i64 as u64) & mask))
                    .collect::<String>()
            })
            .collect();
        WeightImageText {
            rows: w.rows,
            cols: w.cols,
            format: w.format,
            hex,
        }
    }
}

impl TryFrom<WeightImageText> for WeightImage {
    type Error = String;

    fn try_from(t: WeightImageText) -> Result<Self, String> {
        let bits = t.format.bits;
        if !(2..=32).contains(&bits) {
            return Err(format!(
                "weight image format has {bits} bits, must be 2..=32"
            ));
        }
        if t.hex.len() != t.rows as usize {
            return Err(format!(
                "weight image declares {} rows but has {}",
                t.rows,
                t.hex.len()
            ));
        }
        let digits = (bits as usize).div_ceil(4);
        let mut data = Vec::with_capacity(t.rows as usize * t.cols as usize);
        for (r, line) in t.hex.iter().enumerate() {
            if line.len() != digits * t.cols as usize || !line.is_ascii() {
                return Err(format!(
                    "weight image row {r}: expected {} hex digits ({} values of {digits}), found {}",
                    digits * t.cols as usize,
                    t.cols,
                    line.len()
                ));
            }
            for c in 0..t.cols as usize {
                let s = &line[c * digits..(c + 1) * digits];
                let raw = u64::from_str_radix(s, 16)
                    .map_err(|_| format!("weight image row {r} column {c}: `{s}` is not hex"))?;
                if raw >> bits != 0 {
                    return Err(format!(
                        "weight image row {r} column {c}: `{s}` does not fit in {bits} bits"
                    ));
                }
                // Sign-extend from `bits`.
                let v = ((raw << (64 - bits)) as i64) >> (64 - bits);
                data.push(v as i32);
            }
        }
        Ok(WeightImage {
            rows: t.rows,
            cols: t.cols,
            format: t.format,
            data,
        })
    }
}

/// Why a program file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("{origin}:{line}:{col}: malformed program: {message}")]
    Parse {
        origin: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{origin}: program format version {found}, this build reads version {PROGRAM_FORMAT_VERSION}")]
    Version { origin: String, found: u32 },
}

impl Program {
    /// Parses a RON program. Structural checks are the verifier's job ([`crate::verify()`]).
    pub fn from_ron(text: &str, origin: &str) -> Result<Self, ProgramError> {
        let program: Program = ron::from_str(text).map_err(|e| ProgramError::Parse {
            origin: origin.into(),
            line: e.span.start.line,
            col: e.span.start.col,
            message: e.code.to_string(),
        })?;
        if program.format_version != PROGRAM_FORMAT_VERSION {
            return Err(ProgramError::Version {
                origin: origin.into(),
                found: program.format_version,
            });
        }
        Ok(program)
    }

    pub fn to_ron(&self) -> String {
        let config = ron::ser::PrettyConfig::default().struct_names(false);
        ron::ser::to_string_pretty(self, config).expect("a program always serializes")
    }

    /// Whether a layer's cores keep the target stream's inputs (`tgtin`): where the target
    /// stream passes through the crossbar and something learns from it.
    pub fn keeps_target_inputs(&self, layer: &LayerInfo) -> bool {
        layer.keeps_targets
            && (layer.id.0 > 1 || self.projects_to_input())
            && (self.network.targets == TargetMode::Learned || layer.loss.needs_target_inputs())
    }

    /// Whether the input port projects the targets to the input's shape (`to_input`).
    pub fn projects_to_input(&self) -> bool {
        self.layers
            .first()
            .and_then(|l| l.projection)
            .is_some_and(|p| p.mode == ProjectionMode::ToInput)
    }

    /// The input port's projected target of `class` (`to_input`), in the input format: the
    /// class's LFSR row over the input values, uniform in [-1, 1).
    pub fn input_projection(&self, class: u32) -> Vec<i32> {
        let f = self.network.input_format;
        let raw = crate::rng::fixed_projection_row(
            self.network.seed,
            class,
            0,
            self.network.input_len,
            f.frac as u8 + 2,
        );
        raw.into_iter().map(|v| f.saturate(v as i64).0).collect()
    }

    /// Whether a core can look targets up in a projection (stored or regenerated).
    pub fn has_projection(&self, core: &CoreProgram) -> bool {
        core.projection.is_some()
            || (core.tile.is_reducer()
                && self
                    .layers
                    .get(core.layer.index().wrapping_sub(1))
                    .is_some_and(|l| {
                        l.projection
                            .is_some_and(|p| p.mode == ProjectionMode::FixedRandom)
                    }))
    }

    /// The raw values of a core's projection: the stored image, or the regenerated fixed one.
    pub fn projection_values(&self, core: &CoreProgram) -> Option<Vec<i32>> {
        if let Some(img) = &core.projection {
            return Some(img.data.clone());
        }
        if !self.has_projection(core) {
            return None;
        }
        let info = self.layer(core.layer).projection?;
        let rows = self.network.classes as u32 + 1;
        Some(
            (0..rows)
                .flat_map(|r| {
                    crate::rng::fixed_projection_row(
                        self.network.seed,
                        r,
                        core.tile.col_start,
                        core.tile.cols,
                        info.format.bits,
                    )
                })
                .collect(),
        )
    }

    pub fn layer(&self, id: LayerId) -> &LayerInfo {
        &self.layers[id.index() - 1]
    }

    pub fn core(&self, id: CoreId) -> &CoreProgram {
        &self.cores[id.index()]
    }

    /// Depth of an endpoint: input 0, a core its layer's number, output one past the last layer.
    /// `None` for a core ID that is not in the program.
    pub fn depth(&self, e: Endpoint) -> Option<u16> {
        match e {
            Endpoint::Input => Some(0),
            Endpoint::Output => Some(self.layers.len() as u16 + 1),
            Endpoint::Core(c) => self.cores.get(c.index()).map(|c| c.layer.depth()),
        }
    }

    /// Grid position of an endpoint (ports sit just outside the grid).
    pub fn position(&self, e: Endpoint) -> Option<(i32, i32)> {
        match e {
            Endpoint::Input => Some((-1, 0)),
            Endpoint::Output => Some((self.chip.grid.width as i32, 0)),
            Endpoint::Core(c) => self.cores.get(c.index()).map(|c| (c.x as i32, c.y as i32)),
        }
    }

    /// Router hops of a route (Manhattan distance under dimension-ordered routing).
    pub fn hops(&self, route: &Route) -> u32 {
        match (self.position(route.src), self.position(route.dst)) {
            (Some(a), Some(b)) => (a.0 - b.0).unsigned_abs() + (a.1 - b.1).unsigned_abs(),
            _ => 0,
        }
    }

    /// The grid positions a route passes through, source first, destination last (x, then y).
    pub fn path(&self, route: &Route) -> Vec<(i32, i32)> {
        let (Some(mut at), Some(to)) = (self.position(route.src), self.position(route.dst)) else {
            return Vec::new();
        };
        // The output port hangs off the east side of core (width - 1, 0): route to that router
        // first, so the path never leaves the grid, then take the last hop out.
        let exit = (route.dst == Endpoint::Output).then_some(to);
        let to = if exit.is_some() { (to.0 - 1, to.1) } else { to };
        let mut path = vec![at];
        while at.0 != to.0 {
            at.0 += (to.0 - at.0).signum();
            path.push(at);
        }
        while at.1 != to.1 {
            at.1 += (to.1 - at.1).signum();
            path.push(at);
        }
        path.extend(exit);
        path
    }

    /// Forward, lateral or backward, by the depths of the two ends.
    pub fn route_kind(&self, route: &Route) -> RouteKind {
        let (s, d) = (
            self.depth(route.src).unwrap_or(0),
            self.depth(route.dst).unwrap_or(0),
        );
        match d.cmp(&s) {
            std::cmp::Ordering::Greater => RouteKind::Forward,
            std::cmp::Ordering::Equal => RouteKind::Lateral,
            std::cmp::Ordering::Less => RouteKind::Backward,
        }
    }

    /// Number of routes of each kind.
    pub fn route_counts(&self) -> RouteCounts {
        let mut counts = RouteCounts::default();
        for r in &self.routes {
            match self.route_kind(r) {
                RouteKind::Forward => counts.forward += 1,
                RouteKind::Lateral => counts.lateral += 1,
                RouteKind::Backward => counts.backward += 1,
            }
        }
        counts
    }

    /// Routing-table entries each core needs: one per route that leaves from or passes through it.
    pub fn route_table_entries(&self) -> Vec<u32> {
        let mut entries = vec![0u32; self.cores.len()];
        let mut at = std::collections::HashMap::new();
        for c in &self.cores {
            at.insert((c.x as i32, c.y as i32), c.id.index());
        }
        for r in &self.routes {
            let path = self.path(r);
            // Every router on the path but the destination's forwards the packet.
            for p in path.iter().take(path.len().saturating_sub(1)) {
                if let Some(&i) = at.get(p) {
                    entries[i] += 1;
                }
            }
        }
        entries
    }
}

/// Routes by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCounts {
    pub forward: u32,
    pub lateral: u32,
    pub backward: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_image_text_round_trips_negative_values() {
        let w = WeightImage {
            rows: 2,
            cols: 3,
            format: QFormat::new(8, 6),
            data: vec![-128, -1, 0, 1, 127, -77],
        };
        let text = WeightImageText::from(w.clone());
        assert_eq!(text.hex, vec!["80ff00", "017fb3"]);
        assert_eq!(WeightImage::try_from(text).unwrap(), w);
    }

    #[test]
    fn weight_image_rejects_short_rows() {
        let text = WeightImageText {
            rows: 1,
            cols: 2,
            format: QFormat::new(8, 6),
            hex: vec!["80f".into()],
        };
        let err = WeightImage::try_from(text).unwrap_err();
        assert!(err.contains("row 0"), "{err}");
    }
}
