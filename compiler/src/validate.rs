//! The `build` and `validate` passes: the network as a `petgraph` graph, checked.

use crate::network::NetworkDesc;
use petgraph::graph::{DiGraph, NodeIndex};
use sigchip_isa::Activation;
use std::fmt;

/// Largest input, width or class count the compiler accepts; anything larger is surely a typo.
pub const MAX_WIDTH: u32 = 1 << 16;
/// Largest number of synapses in a network (weights of all layers).
pub const MAX_SYNAPSES: u64 = 1 << 28;
/// Largest mini-batch.
pub const MAX_BATCH: u32 = 1 << 12;
/// Largest class count: class operands are 8 bits wide (classes 0..=254 plus headroom for the
/// projection's bias row index).
pub const MAX_CLASSES: u32 = 255;

/// A node of the network graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Input {
        width: u32,
    },
    /// A hidden layer (index into `NetworkDesc::layers`).
    Hidden {
        index: usize,
        width: u32,
    },
    /// The `output_layer` readout.
    Output {
        width: u32,
    },
}

impl Node {
    pub fn width(&self) -> u32 {
        match self {
            Node::Input { width } | Node::Hidden { width, .. } | Node::Output { width } => *width,
        }
    }
}

/// A network that passed validation. Later passes take this type, so they never see an
/// unchecked description.
#[derive(Clone, Debug)]
pub struct ValidNetwork {
    desc: NetworkDesc,
    graph: DiGraph<Node, ()>,
    /// Layer nodes in depth order (input excluded).
    order: Vec<NodeIndex>,
}

impl ValidNetwork {
    pub fn desc(&self) -> &NetworkDesc {
        &self.desc
    }

    pub fn graph(&self) -> &DiGraph<Node, ()> {
        &self.graph
    }

    /// The chip layers in depth order: hidden layers, then the output layer if any.
    pub fn layers(&self) -> impl Iterator<Item = &Node> {
        self.order.iter().map(|&n| &self.graph[n])
    }

    /// Input width of each chip layer, in depth order.
    pub fn layer_inputs(&self) -> Vec<u32> {
        self.order
            .iter()
            .map(|&n| {
                let pred = self
                    .graph
                    .neighbors_directed(n, petgraph::Direction::Incoming)
                    .next()
                    .expect("validated: every layer has one predecessor");
                self.graph[pred].width()
            })
            .collect()
    }
}

/// One problem with a network description, naming where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where, as the description writes it (`layers[1].width`).
    pub at: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem found in a network description.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: invalid network description:\n{}",
    .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ValidateError {
    pub origin: String,
    pub problems: Vec<Problem>,
}

/// The `build` + `validate` passes.
pub fn validate(desc: NetworkDesc, origin: &str) -> Result<ValidNetwork, ValidateError> {
    let mut problems = Vec::new();
    let mut bad = |at: String, message: String| problems.push(Problem { at, message });

    if desc.input == 0 || desc.input > MAX_WIDTH {
        bad(
            "input".into(),
            format!("is {}, must be in 1..={MAX_WIDTH}", desc.input),
        );
    }
    if desc.classes < 2 || desc.classes > MAX_CLASSES {
        bad(
            "classes".into(),
            format!("is {}, must be in 2..={MAX_CLASSES}", desc.classes),
        );
    }
    if desc.layers.is_empty() {
        bad(
            "layers".into(),
            "is empty: sigprop needs at least one hidden layer".into(),
        );
    }
    if desc.target_refresh == 0 {
        bad(
            "target_refresh".into(),
            "is 0, must be at least 1 (1 = refresh every sample)".into(),
        );
    }
    if desc.projection == sigchip_isa::ProjectionMode::Learned
        && desc.targets == sigchip_isa::TargetMode::Constant
    {
        bad(
            "projection".into(),
            "is `learned` but `targets` is `constant`: a constant target stream gives the projection \
             no error to learn from; use `targets: learned` or `projection: fixed_random`"
                .into(),
        );
    }
    if desc.targets == sigchip_isa::TargetMode::Learned
        && !matches!(
            desc.loss,
            crate::LossKind::LabelDirect | crate::LossKind::L2
        )
    {
        let why = if desc.loss.local_loss().is_contrastive() {
            "its softmax spans the mini-batch, and the chip holds the class targets constant \
             within a batch"
        } else {
            "the rule has no loss to differentiate with respect to the target stream"
        };
        bad(
            "targets".into(),
            format!(
                "is `learned`, which the chip supports with `loss: label_direct` or `l2` only; \
                 `{}` learns with constant targets (`targets: constant`): {why}",
                desc.loss
            ),
        );
    }
    if desc.learning.anneal_every == Some(0) {
        bad(
            "learning.anneal_every".into(),
            "is 0, must be at least 1 sample (or left out)".into(),
        );
    }
    let b = desc.learning.batch;
    if b == 0 || !b.is_power_of_two() || b > MAX_BATCH {
        bad(
            "learning.batch".into(),
            format!(
                "is {b}, must be a power of two in 1..={MAX_BATCH} (the batch mean is a shift)"
            ),
        );
    }
    if desc.loss.local_loss().is_contrastive() && b < 2 {
        bad(
            "learning.batch".into(),
            format!(
                "is {b}, but `loss: {}` contrasts the samples of a mini-batch: it needs a batch of \
                 at least 2 (for example `learning: (batch: 32)`)",
                desc.loss
            ),
        );
    }
    if let crate::LossKind::TargetTopK { k } = desc.loss {
        if k == 0 || k as u32 > b {
            bad(
                "loss".into(),
                format!(
                    "is `target_topk(k: {k})`: k must be in 1..=learning.batch ({b}), the number of \
                     batch entries it can pick"
                ),
            );
        }
    }
    if b > 1 && desc.targets == sigchip_isa::TargetMode::Learned {
        bad(
            "learning.batch".into(),
            format!("is {b}: mini-batches are supported with `targets: constant` only"),
        );
    }
    check_neuron(&desc, &mut bad);
    let lr_ok = |s: u8| s <= 30;
    if !lr_ok(desc.learning.lr_shift) {
        bad(
            "learning.lr_shift".into(),
            format!("is {}, must be in 0..=30", desc.learning.lr_shift),
        );
    }
    if let Some(s) = desc.learning.readout_lr_shift {
        if !lr_ok(s) {
            bad(
                "learning.readout_lr_shift".into(),
                format!("is {s}, must be in 0..=30"),
            );
        }
    }
    let mut synapses = 0u64;
    let mut prev = desc.input as u64;
    for (i, l) in desc.layers.iter().enumerate() {
        if l.width == 0 || l.width > MAX_WIDTH {
            bad(
                format!("layers[{i}].width"),
                format!("is {}, must be in 1..={MAX_WIDTH}", l.width),
            );
        }
        if let Activation::LeakyRelu { shift } = l.activation {
            if !(1..=15).contains(&shift) {
                bad(
                    format!("layers[{i}].activation"),
                    format!("leaky_relu shift is {shift}, must be in 1..=15"),
                );
            }
        }
        if let Some(s) = l.lr_shift {
            if !lr_ok(s) {
                bad(
                    format!("layers[{i}].lr_shift"),
                    format!("is {s}, must be in 0..=30"),
                );
            }
        }
        synapses += prev * l.width as u64;
        prev = l.width as u64;
    }
    if !desc.readout.is_nearest() {
        synapses += prev * desc.classes as u64;
    }
    if synapses > MAX_SYNAPSES {
        bad(
            "layers".into(),
            format!("the network has {synapses} synapses, more than the {MAX_SYNAPSES} the compiler accepts"),
        );
    }
    if !problems.is_empty() {
        return Err(ValidateError {
            origin: origin.into(),
            problems,
        });
    }

    // Build: input -> hidden layers -> output layer (when the readout needs one).
    let mut graph = DiGraph::new();
    let mut at = graph.add_node(Node::Input { width: desc.input });
    let mut order = Vec::new();
    for (index, l) in desc.layers.iter().enumerate() {
        let n = graph.add_node(Node::Hidden {
            index,
            width: l.width,
        });
        graph.add_edge(at, n, ());
        order.push(n);
        at = n;
    }
    if !desc.readout.is_nearest() {
        let n = graph.add_node(Node::Output {
            width: desc.classes,
        });
        graph.add_edge(at, n, ());
        order.push(n);
    }

    // Graph-level checks: these hold by construction today and guard future graph shapes.
    if petgraph::algo::is_cyclic_directed(&graph) {
        problems.push(Problem {
            at: "layers".into(),
            message: "the network graph has a cycle".into(),
        });
    }
    for &n in &order {
        if graph
            .neighbors_directed(n, petgraph::Direction::Incoming)
            .count()
            != 1
        {
            problems.push(Problem {
                at: format!("{:?}", graph[n]),
                message: "a dense layer needs exactly one input".into(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ValidateError {
            origin: origin.into(),
            problems,
        });
    }
    Ok(ValidNetwork { desc, graph, order })
}

/// Largest number of time steps per sample.
pub const MAX_STEPS: u32 = 1024;

/// The neuron model's parameters and what it combines with.
fn check_neuron(desc: &NetworkDesc, bad: &mut dyn FnMut(String, String)) {
    use crate::network::{LossKind, NeuronDesc};
    let steps = desc.neuron.steps();
    if desc.neuron != NeuronDesc::Rate && !(1..=MAX_STEPS).contains(&steps) {
        bad(
            "neuron.steps".into(),
            format!("is {steps}, must be in 1..={MAX_STEPS} time steps per sample"),
        );
    }
    match desc.neuron {
        NeuronDesc::Rate => {}
        NeuronDesc::Lif(l) => {
            if !(l.threshold.is_finite() && l.threshold > 0.0) {
                bad(
                    "neuron.threshold".into(),
                    format!("is {}, must be a positive number", l.threshold),
                );
            }
            if l.leak_shift == 0 {
                bad(
                    "neuron.leak_shift".into(),
                    "is 0, which would drop the whole potential every step; must be at least 1"
                        .into(),
                );
            }
            if desc.loss != LossKind::LabelDirect {
                bad(
                    "loss".into(),
                    format!(
                        "is `{}`; spiking layers learn with `label_direct` (on the membrane \
                         potential or its surrogate)",
                        desc.loss
                    ),
                );
            }
        }
        NeuronDesc::Continuous(_) => {
            if desc.target_refresh != 1 {
                bad(
                    "target_refresh".into(),
                    format!(
                        "is {}; continuous-time layers run the target stream alongside the data \
                         stream at every step: use target_refresh: 1",
                        desc.target_refresh
                    ),
                );
            }
            if !matches!(desc.loss, LossKind::Hebbian { .. } | LossKind::L2) {
                bad(
                    "loss".into(),
                    format!(
                        "is `{}`; continuous-time layers learn with the `hebbian` rule (or `l2`) \
                         at every step",
                        desc.loss
                    ),
                );
            }
        }
    }
    if desc.neuron != NeuronDesc::Rate {
        if desc.learning.batch != 1 {
            bad(
                "learning.batch".into(),
                format!(
                    "is {}; neurons with time learn at every step (or summed over a sample's \
                     steps): use learning.batch: 1",
                    desc.learning.batch
                ),
            );
        }
        if desc.projection != sigchip_isa::ProjectionMode::FixedRandom
            || desc.targets != sigchip_isa::TargetMode::Constant
        {
            bad(
                "projection".into(),
                "neurons with time take their class targets from a `fixed_random` projection \
                 with `targets: constant`"
                    .into(),
            );
        }
    }
}
