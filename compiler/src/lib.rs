//! # sigchip-compiler: sigprop network descriptions to forward-only chip programs
//!
//! The central type is [`ValidNetwork`]: a [`NetworkDesc`] that passed validation, as a
//! `petgraph` graph. Every pass after validation takes it (or what a pass made from it), so no
//! pass sees an unchecked network. [`compile`] runs the passes in order:
//!
//! 1. [`network::parse`]: RON text to a [`NetworkDesc`] ([`ParseError`]);
//! 2. [`validate::validate`]: build the graph and check it ([`ValidateError`]);
//! 3. [`quantize::quantize`]: initial weights from the seed, fixed-point formats, error report;
//! 4. [`tile::tile_layer`]: split layers over crossbars, with the reason;
//! 5. [`place::place`]: tiles to grid positions ([`PlaceError`] when the grid is too small);
//! 6. [`route::route`]: forward and lateral routes, keyed by purpose;
//! 7. [`schedule::schedule`]: per-core instruction streams for each phase;
//! 8. emit and [`sigchip_isa::verify()`]: assemble the [`Program`] and prove it forward-only and
//!    within capacity ([`FitError`] names the layer, resource and what to change).
//!
//! [`compile_algorithm`] lowers backpropagation onto the same chip to show, through the verifier,
//! why it cannot run there: the error counts its backward routes and transposed reads.
//!
//! The compiler does not depend on the emulator; they meet in `sigchip-isa`.

pub mod baseline;
pub mod network;
pub mod place;
pub mod quantize;
pub mod route;
pub mod schedule;
pub mod summary;
pub mod tile;
pub mod validate;

pub use baseline::{compile_algorithm, Algorithm, NotForwardOnly};
pub use network::{
    parse, ContinuousDesc, Encoding, LayerDesc, LearningDesc, LifDesc, LossKind, NetworkDesc,
    NeuronDesc, ParseError, Reset, SpikeLearning, SpikeReadout, UpdateTiming,
};
pub use place::PlaceError;
pub use summary::Summary;
pub use validate::{validate, ValidNetwork, ValidateError};

use sigchip_isa::program::PROGRAM_FORMAT_VERSION;
use sigchip_isa::{
    ChipDescription, CoreProgram, LayerId, LayerInfo, LocalLoss, NetworkInfo, Program,
    ProjectionInfo, ProjectionMode, Tile, VerifyError, Violation, WeightImage,
};

/// A compiled network: the program and what the compiler has to say about it.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub program: Program,
    pub summary: Summary,
}

/// A network that does not fit a core's memories.
#[derive(Debug, thiserror::Error)]
#[error(
    "the network does not fit: {layer} needs {needed} {resource} on {core}, a core has {available}{}\n  what to change: {advice}",
    if *.other_cores > 0 { format!(" (and {} more cores overflow)", .other_cores) } else { String::new() }
)]
pub struct FitError {
    pub layer: String,
    pub core: String,
    pub resource: String,
    pub needed: u64,
    pub available: u64,
    pub advice: String,
    /// Further cores that overflow a memory.
    pub other_cores: usize,
}

/// Why compilation failed; each variant comes from one pass.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Place(#[from] PlaceError),
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error(transparent)]
    NotForwardOnly(#[from] NotForwardOnly),
    /// The neuron model's parameters do not fit the chip's neuron state.
    #[error("{0}")]
    Neuron(String),
    /// The emitted program broke an invariant: a compiler bug, reported in full.
    #[error("internal compiler error: {0}")]
    Verify(VerifyError),
}

impl From<VerifyError> for CompileError {
    fn from(e: VerifyError) -> Self {
        CompileError::Verify(e)
    }
}

/// Parses, validates and compiles a RON network description for `chip`.
pub fn compile_str(
    text: &str,
    origin: &str,
    chip: &ChipDescription,
) -> Result<Compiled, CompileError> {
    let desc = parse(text, origin)?;
    compile(desc, origin, chip)
}

/// Validates and compiles a network description for `chip`.
pub fn compile(
    desc: NetworkDesc,
    origin: &str,
    chip: &ChipDescription,
) -> Result<Compiled, CompileError> {
    let net = validate(desc, origin)?;
    compile_valid(&net, chip)
}

/// Compiles a validated network.
pub fn compile_valid(net: &ValidNetwork, chip: &ChipDescription) -> Result<Compiled, CompileError> {
    let desc = net.desc();
    let quant = quantize::quantize(net, chip);
    let (neuron, state_format) = neuron_model(desc, chip)?;
    let tilings: Vec<_> = quant
        .layers
        .iter()
        .map(|l| tile::tile_layer(l.inputs + l.bias as u32, l.width, chip))
        .collect();
    let placement = place::place(&tilings, chip)?;
    let inputs: Vec<u32> = quant.layers.iter().map(|l| l.inputs).collect();
    let hidden = desc.layers.len();
    let losses: Vec<LocalLoss> = (0..quant.layers.len())
        .map(|l| {
            if l < hidden {
                desc.loss.local_loss()
            } else {
                LocalLoss::CrossEntropy
            }
        })
        .collect();
    let route_inputs = route::RouteInputs {
        to_input: desc.projection == ProjectionMode::ToInput,
        losses: &losses,
        tilings: &tilings,
        placement: &placement,
        inputs: &inputs,
        classes: desc.classes,
        readout: desc.readout,
        targets: desc.targets,
        batch: desc.learning.batch,
        neuron,
    };
    let routes = route::route(&route_inputs);
    // Route operands are 16 bits wide.
    if routes.routes.len() > 1 << 16 {
        return Err(FitError {
            layer: "the network".into(),
            core: "the chip".into(),
            resource: "routes".into(),
            needed: routes.routes.len() as u64,
            available: 1 << 16,
            advice: "a larger crossbar (fewer tiles, fewer routes between them)".into(),
            other_cores: 0,
        }
        .into());
    }
    let keeps_targets_until = route_inputs.keeps_targets_until();
    let streams = schedule::schedule(&schedule::ScheduleInputs {
        projection_learned: desc.projection == ProjectionMode::Learned,
        batch: desc.learning.batch,
        to_input: desc.projection == ProjectionMode::ToInput,
        losses: &losses,
        placement: &placement,
        routes: &routes,
        classes: desc.classes,
        readout: desc.readout,
        targets: desc.targets,
        keeps_targets_until,
        neuron,
    });

    // Emit.
    let mut layers = Vec::new();
    let mut cores = Vec::new();
    for (l, q) in quant.layers.iter().enumerate() {
        let id = LayerId(l as u16 + 1);
        let is_output = l >= hidden;
        let lr_shift = if is_output {
            desc.learning
                .readout_lr_shift
                .unwrap_or(desc.learning.lr_shift)
        } else {
            desc.layers[l].lr_shift.unwrap_or(desc.learning.lr_shift)
        };
        let tiling = &tilings[l];
        layers.push(LayerInfo {
            id,
            name: if is_output {
                "output".into()
            } else {
                format!("hidden{}", l + 1)
            },
            inputs: q.inputs,
            width: q.width,
            bias: q.bias,
            // A spiking layer's neuron function is the LIF unit; its learning signal is the
            // potential itself (or the surrogate, handled by the learning unit).
            activation: if is_output || neuron.is_lif() {
                sigchip_isa::Activation::Identity
            } else {
                desc.layers[l].activation
            },
            weight_format: q.weight_format,
            in_format: q.in_format,
            out_format: q.out_format,
            state_format,
            loss: losses[l],
            lr_shift,
            rounding: desc.learning.rounding,
            projection: match (&q.projection, desc.projection) {
                (Some((format, _)), mode) => Some(ProjectionInfo {
                    mode,
                    format: *format,
                }),
                // The input port projects the targets, in the input's format.
                (None, ProjectionMode::ToInput) if l == 0 => Some(ProjectionInfo {
                    mode: ProjectionMode::ToInput,
                    format: quant.input_format,
                }),
                (None, _) => None,
            },
            keeps_targets: l < keeps_targets_until,
            row_tiles: tiling.row_ranges.len() as u32,
            col_tiles: tiling.col_ranges.len() as u32,
        });
        for (rt, &(r0, rn)) in tiling.row_ranges.iter().enumerate() {
            for (ct, &(c0, cn)) in tiling.col_ranges.iter().enumerate() {
                let core = placement.cores[l][rt][ct];
                let mut weights = WeightImage::zeros(rn, cn, q.weight_format);
                for r in 0..rn {
                    for c in 0..cn {
                        weights.data[(r * cn + c) as usize] =
                            q.weights[((r0 + r) * q.width + c0 + c) as usize];
                    }
                }
                // Only a learned projection is stored; a fixed one is regenerated on chip.
                let projection = match &q.projection {
                    Some((format, values))
                        if rt == 0 && desc.projection == ProjectionMode::Learned =>
                    {
                        let rows = desc.classes + 1;
                        let mut img = WeightImage::zeros(rows, cn, *format);
                        for r in 0..rows {
                            for c in 0..cn {
                                img.data[(r * cn + c) as usize] =
                                    values[(r * q.width + c0 + c) as usize];
                            }
                        }
                        Some(img)
                    }
                    _ => None,
                };
                let (x, y) = placement.positions[core.index()];
                cores.push(CoreProgram {
                    id: core,
                    layer: id,
                    x,
                    y,
                    tile: Tile {
                        row_start: r0,
                        rows: rn,
                        col_start: c0,
                        cols: cn,
                        row_tile: rt as u32,
                        col_tile: ct as u32,
                    },
                    weights,
                    projection,
                    streams: streams[core.index()].clone(),
                });
            }
        }
    }
    cores.sort_by_key(|c| c.id);
    let program = Program {
        format_version: PROGRAM_FORMAT_VERSION,
        name: desc.name.clone(),
        chip: chip.clone(),
        network: NetworkInfo {
            input_len: desc.input,
            classes: desc.classes as u16,
            input_format: quant.input_format,
            readout: desc.readout,
            seed: desc.seed,
            target_refresh: desc.target_refresh,
            targets: desc.targets,
            lr_anneal_every: desc.learning.anneal_every,
            batch: desc.learning.batch,
            neuron,
        },
        layers,
        cores,
        routes: routes.routes,
    };
    if let Err(e) = sigchip_isa::verify(&program) {
        return Err(fit_error(&program, e));
    }
    let summary = Summary::new(&program, &tilings, quant.errors);
    Ok(Compiled { program, summary })
}

/// Turns a capacity violation into advice; anything else is a compiler bug.
/// Data SRAM bits of a core that exist because of mini-batches: gradient accumulators and the
/// batch-label buffer.
fn batch_bits(p: &Program, core: sigchip_isa::CoreId) -> u64 {
    use sigchip_isa::memory::{buffer_bits, buffer_len, gradient_bits};
    let c = p.core(core);
    c.tile.rows as u64 * c.tile.cols as u64 * gradient_bits(p)
        + buffer_len(p, c, sigchip_isa::Buf::Batch) as u64 * buffer_bits(p, sigchip_isa::Buf::Batch)
}

fn fit_error(p: &Program, e: VerifyError) -> CompileError {
    let fit = e.violations.iter().find_map(|v| match v {
        Violation::Capacity { core: Some(core), resource, needed, available } => {
            let layer = p.core(*core).layer;
            let advice = match *resource {
                "data SRAM bits" => format!(
                    "a larger memory.data_sram_bits (>= {needed}), a larger crossbar (fewer, larger tiles \
                     need fewer buffers), fewer classes, or fewer neurons in {layer}{}",
                    if p.network.batch > 1 {
                        format!(
                            "; with mini-batches the per-synapse gradient accumulators and the \
                             batch's labels take {} bits of it: a smaller crossbar (smaller \
                             tiles) or a smaller learning.batch ({} now; 1 = online, for the \
                             losses that allow it)",
                            batch_bits(p, *core),
                            p.network.batch
                        )
                    } else {
                        String::new()
                    }
                ),
                "instruction words" => format!(
                    "a larger memory.instruction_words (>= {needed}), or fewer classes (the target phase \
                     has one block per class)"
                ),
                "routing-table entries" => format!(
                    "a larger memory.route_table_entries (>= {needed}), or a larger crossbar (fewer tiles, \
                     fewer routes)"
                ),
                _ => "a larger chip".to_string(),
            };
            Some(FitError {
                layer: format!("{layer} ({})", p.layer(layer).name),
                core: core.to_string(),
                resource: resource.to_string(),
                needed: *needed,
                available: *available,
                advice,
                other_cores: 0,
            })
        }
        _ => None,
    });
    let mut overflowing: Vec<_> = e
        .violations
        .iter()
        .filter_map(|v| match v {
            Violation::Capacity { core: Some(c), .. } => Some(*c),
            _ => None,
        })
        .collect();
    overflowing.dedup();
    match fit {
        Some(mut f)
            if e.violations
                .iter()
                .all(|v| matches!(v, Violation::Capacity { .. })) =>
        {
            f.other_cores = overflowing.len().saturating_sub(1);
            f.into()
        }
        _ => e.into(),
    }
}

/// The chip's neuron model and the state format of every layer: `bits.state` wide with five
/// integer bits (a 16-bit state is `s16.10`, range -32..32), so a threshold must lie in it.
fn neuron_model(
    desc: &NetworkDesc,
    chip: &ChipDescription,
) -> Result<(sigchip_isa::NeuronModel, sigchip_isa::QFormat), CompileError> {
    use crate::network::NeuronDesc;
    let bits = chip.bits.state;
    let format = sigchip_isa::QFormat::new(bits, bits.saturating_sub(6).max(1) as i8);
    let steps = |s: u32| -> Result<u16, CompileError> {
        u16::try_from(s).map_err(|_| {
            CompileError::Neuron(format!(
                "neuron.steps: {s} time steps do not fit the chip's 16-bit step counter"
            ))
        })
    };
    let model = match desc.neuron {
        NeuronDesc::Rate => sigchip_isa::NeuronModel::Rate,
        NeuronDesc::Lif(l) => {
            let raw = (l.threshold * (1u64 << format.frac) as f64).round();
            if !(raw >= 1.0 && raw <= format.max_raw() as f64) {
                return Err(CompileError::Neuron(format!(
                    "neuron.threshold: {} is outside the neuron state's range: the chip's \
                     {bits}-bit state ({format}) holds thresholds from {} to {}",
                    l.threshold,
                    format.to_f64(1),
                    format.to_f64(format.max_raw() as i32)
                )));
            }
            if l.leak_shift >= bits {
                return Err(CompileError::Neuron(format!(
                    "neuron.leak_shift: {} is wider than the chip's {bits}-bit neuron state; \
                     must be in 1..{bits}",
                    l.leak_shift
                )));
            }
            sigchip_isa::NeuronModel::Lif {
                threshold: raw as i32,
                leak_shift: l.leak_shift,
                reset: l.reset,
                steps: steps(l.steps)?,
                encoding: l.encoding,
                learning: l.learning,
                update: l.update,
                readout: l.readout,
            }
        }
        NeuronDesc::Continuous(c) => {
            if c.tau_shift >= bits {
                return Err(CompileError::Neuron(format!(
                    "neuron.tau_shift: {} is wider than the chip's {bits}-bit neuron state; \
                     must be in 0..{bits}",
                    c.tau_shift
                )));
            }
            sigchip_isa::NeuronModel::Continuous {
                tau_shift: c.tau_shift,
                steps: steps(c.steps)?,
            }
        }
    };
    Ok((model, format))
}
