//! What each core stores, by kind, in bits. The compiler's summary, the verifier's capacity
//! checks and the emulator's report all count memory here, so they agree.

use crate::instr::Buf;
use crate::program::{CoreProgram, Program, TargetMode};
use serde::{Deserialize, Serialize};

/// Width of a score register (a dot product of two activation vectors).
pub const SCORE_BITS: u64 = 32;
/// Width of a per-neuron error register of the learning unit.
pub const ERROR_BITS: u64 = 32;
/// Width of a label register.
pub const LABEL_BITS: u64 = 8;
/// Width of one routing-table entry (route id, output port, buffer and range).
pub const ROUTE_ENTRY_BITS: u64 = 32;
/// Width of one per-synapse gradient accumulator (mini-batches, or a sample's summed time
/// steps): wide enough that a batch (of steps) of products of a full error register and an
/// input never saturates.
pub fn gradient_bits(program: &Program) -> u64 {
    let steps = program.network.neuron.steps().max(1) as u32;
    ERROR_BITS
        + program.chip.bits.activation as u64
        + program.network.batch.max(1).trailing_zeros() as u64
        + (32 - (steps - 1).leading_zeros()) as u64
}
/// Width of one LFSR state of a regenerated projection row.
pub const LFSR_BITS: u64 = 32;
/// Width of one instruction word.
pub const INSTRUCTION_BITS: u64 = 32;

/// Length in elements of a core buffer (0 when the core has no such buffer).
pub fn buffer_len(program: &Program, core: &CoreProgram, buf: Buf) -> usize {
    let layer = program.layer(core.layer);
    let t = &core.tile;
    let classes = program.network.classes as usize;
    let reducer = t.is_reducer();
    match buf {
        Buf::In => t.rows as usize,
        Buf::Acc => t.cols as usize,
        Buf::Psum if reducer && layer.row_tiles > 1 => t.cols as usize,
        Buf::Out if reducer => t.cols as usize,
        Buf::Score | Buf::Err if reducer => classes,
        Buf::ScoreIn if t.is_leader() && layer.col_tiles > 1 => classes,
        Buf::Delta => t.cols as usize,
        Buf::DeltaT if program.network.targets == TargetMode::Learned && layer.keeps_targets => {
            t.cols as usize
        }
        Buf::Label if t.is_leader() || layer.loss.label_on_every_core() => 1,
        Buf::Batch if t.is_leader() && layer.loss.is_contrastive() => {
            program.network.batch as usize
        }
        Buf::Gram if t.is_leader() && needs_gram(program, layer.id.index()) => classes * classes,
        Buf::GramIn
            if t.is_leader()
                && needs_gram(program, layer.id.index())
                && program.layers[layer.id.index() - 2].col_tiles > 1 =>
        {
            classes * classes
        }
        Buf::GramPart if reducer && needs_gram(program, layer.id.index() + 1) => classes * classes,
        Buf::Spike if reducer && program.network.neuron.is_lif() => t.cols as usize,
        _ => 0,
    }
}

/// Whether layer `number` (1-based) takes the class similarity of its target inputs: a
/// batch-contrastive layer beyond the first.
pub fn needs_gram(program: &Program, number: usize) -> bool {
    number > 1
        && program
            .layers
            .get(number - 1)
            .is_some_and(|l| l.loss.is_contrastive())
}

/// Neuron state of a core (layers with time): on reducers, the state of each column and its
/// last spike, and with class targets the same per class plus, for LIF layers, a running sum of
/// the class's signal over the steps (output-format bits plus `ceil(log2 steps)`, so it cannot
/// overflow).
fn state_memory(program: &Program, core: &CoreProgram) -> u64 {
    let n = &program.network.neuron;
    if !n.has_time() || !core.tile.is_reducer() {
        return 0;
    }
    let layer = program.layer(core.layer);
    let cols = core.tile.cols as u64;
    let per_neuron = layer.state_format.bits as u64 + n.is_lif() as u64;
    let mut bits = cols * per_neuron;
    if layer.keeps_targets {
        let steps = n.steps().max(1) as u32;
        let sum = if n.is_lif() {
            layer.out_format.bits as u64 + (32 - (steps - 1).leading_zeros()) as u64
        } else {
            0
        };
        bits += program.network.classes as u64 * cols * (per_neuron + sum);
    }
    bits
}

/// Gradient accumulators of a core: one per synapse when training in mini-batches or summing
/// a sample's time steps.
fn gradient_memory(program: &Program, core: &CoreProgram) -> u64 {
    if program.network.batch > 1 || program.network.neuron.sums_updates() {
        core.tile.rows as u64 * core.tile.cols as u64 * gradient_bits(program)
    } else {
        0
    }
}

/// Bits per element of a buffer.
pub fn buffer_bits(program: &Program, buf: Buf) -> u64 {
    let b = &program.chip.bits;
    match buf {
        Buf::In | Buf::Out => b.activation as u64,
        Buf::Acc | Buf::Psum => b.accumulator as u64,
        Buf::Score | Buf::ScoreIn => SCORE_BITS,
        Buf::Err => b.probability as u64,
        Buf::Delta | Buf::DeltaT => ERROR_BITS,
        Buf::Label | Buf::Batch => LABEL_BITS,
        Buf::Gram | Buf::GramIn | Buf::GramPart => SCORE_BITS,
        Buf::Spike => 1,
    }
}

/// Memory of one core by kind, in bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreMemory {
    /// Crossbar weights (weight SRAM).
    pub weights: u64,
    /// Layer-1 target projection.
    pub projection: u64,
    /// Input, accumulator, partial-sum and output buffers.
    pub buffers: u64,
    /// Class targets and target inputs kept for the local loss.
    pub targets: u64,
    /// Learning-unit registers and state: scores, class errors, neuron errors, label, the
    /// batch's labels and class similarities (batch-contrastive losses) and the per-synapse
    /// gradient accumulators (mini-batches).
    pub learning: u64,
    /// Neuron state of layers with time: each reducer's membrane potentials (or continuous-time
    /// states) and last spikes, and, for layers that keep class targets, the same per class for
    /// the target stream plus its running sums.
    #[serde(default)]
    pub state: u64,
    /// Routing-table entries.
    pub routing: u64,
    /// Instruction memory.
    pub instructions: u64,
}

impl CoreMemory {
    /// Everything that lives in the data SRAM (all but weights, routing and instructions).
    pub fn data_sram(&self) -> u64 {
        self.projection + self.buffers + self.targets + self.learning + self.state
    }

    pub fn total(&self) -> u64 {
        self.weights + self.data_sram() + self.routing + self.instructions
    }

    pub fn add(&mut self, o: &CoreMemory) {
        self.weights += o.weights;
        self.projection += o.projection;
        self.buffers += o.buffers;
        self.targets += o.targets;
        self.learning += o.learning;
        self.state += o.state;
        self.routing += o.routing;
        self.instructions += o.instructions;
    }
}

/// Capacity of one core by the same kinds, in bits.
pub fn core_capacity(program: &Program) -> CoreMemory {
    let chip = &program.chip;
    CoreMemory {
        weights: chip.weight_sram_bits(),
        // Projection, buffers, targets and learning share the data SRAM; report it once.
        projection: 0,
        buffers: chip.memory.data_sram_bits,
        targets: 0,
        learning: 0,
        state: 0,
        routing: chip.memory.route_table_entries as u64 * ROUTE_ENTRY_BITS,
        instructions: chip.memory.instruction_words as u64 * INSTRUCTION_BITS,
    }
}

/// Memory used by every core, indexed by core ID.
pub fn memory_use(program: &Program) -> Vec<CoreMemory> {
    let entries = program.route_table_entries();
    program
        .cores
        .iter()
        .map(|core| core_memory(program, core, entries[core.id.index()]))
        .collect()
}

fn core_memory(program: &Program, core: &CoreProgram, route_entries: u32) -> CoreMemory {
    let layer = program.layer(core.layer);
    let chip = &program.chip;
    let classes = program.network.classes as u64;
    let bits = |buf| buffer_len(program, core, buf) as u64 * buffer_bits(program, buf);
    let act = chip.bits.activation as u64;
    let mut targets = 0;
    if layer.keeps_targets && core.tile.is_reducer() {
        targets += classes * core.tile.cols as u64 * act;
    }
    if program.keeps_target_inputs(layer) {
        targets += classes * core.tile.rows as u64 * act;
    }
    CoreMemory {
        weights: core.tile.rows as u64 * core.tile.cols as u64 * chip.bits.weight as u64,
        // A stored projection takes weight-format bits; a regenerated one only the LFSR start
        // state of each of its rows for this tile's first column.
        projection: match &core.projection {
            Some(p) => p.rows as u64 * p.cols as u64 * chip.bits.weight as u64,
            None if program.has_projection(core) => (classes + 1) * LFSR_BITS,
            None => 0,
        },
        buffers: bits(Buf::In) + bits(Buf::Acc) + bits(Buf::Psum) + bits(Buf::Out),
        targets,
        learning: gradient_memory(program, core)
            + bits(Buf::Score)
            + bits(Buf::ScoreIn)
            + bits(Buf::Err)
            + bits(Buf::Delta)
            + bits(Buf::DeltaT)
            + bits(Buf::Label)
            + bits(Buf::Batch)
            + bits(Buf::Gram)
            + bits(Buf::GramIn)
            + bits(Buf::GramPart),
        state: state_memory(program, core),
        routing: route_entries as u64 * ROUTE_ENTRY_BITS,
        instructions: core.streams.total_len() as u64 * INSTRUCTION_BITS,
    }
}
