//! The chip description: everything about the hardware that a program is compiled for and that
//! the emulator charges time and energy by. Written in RON; every field has a default, so a
//! description only names what differs from the default chip.

use crate::fixed_point::QFormat;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The version of the chip-description format this build reads and writes.
pub const CHIP_FORMAT_VERSION: u32 = 1;

/// A chip: a grid of identical cores, each with a crossbar, buffers, a neuron unit, a local
/// learning unit and a router, plus an input port west of core (0, 0) and an output port east of
/// the last column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChipDescription {
    pub format_version: u32,
    pub name: String,
    pub grid: Grid,
    pub crossbar: Crossbar,
    pub bits: BitWidths,
    pub memory: Memory,
    /// Core clock in MHz; only used to turn cycles into seconds in reports.
    pub clock_mhz: f64,
    pub costs: Costs,
    pub router: Router,
    pub energy: EnergyTable,
}

/// The on-chip network: dimension-ordered routing (x, then y), one router per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Router {
    /// Packets a link carries per cycle (its latency is `costs.hop`).
    pub link_bandwidth: u32,
    /// Packets each router input buffer holds (credit flow control: a link forwards only while
    /// the buffer at its far end has room).
    pub buffer_depth: u32,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            link_bandwidth: 1,
            buffer_depth: 4,
        }
    }
}

/// The core grid; cores are addressed by (x, y), x growing east (the forward direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub width: u16,
    pub height: u16,
}

/// Crossbar size: rows are input axons, columns are output neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crossbar {
    pub rows: u32,
    pub cols: u32,
}

/// Bit widths of the datapath. All values are signed two's complement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BitWidths {
    /// Synaptic weights in the crossbar SRAM.
    pub weight: u8,
    /// Neuron outputs, inputs and stored targets.
    pub activation: u8,
    /// Saturating accumulators of the crossbar columns.
    pub accumulator: u8,
    /// Neuron state (membrane potential, continuous-time state).
    pub state: u8,
    /// Softmax probabilities and class errors in the learning unit (fraction bits = width - 1).
    pub probability: u8,
}

/// Per-core memories besides the crossbar (whose size is rows x cols x weight bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Memory {
    /// Data SRAM for buffers, target memories, projections and learning state, in bits.
    pub data_sram_bits: u64,
    /// Instruction memory, in 32-bit words.
    pub instruction_words: u32,
    /// Routing-table entries per core.
    pub route_table_entries: u32,
}

/// Cycle costs of every operation. See docs/timing-model.md for how the emulator charges them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Costs {
    /// Issuing any instruction.
    pub issue: u32,
    /// One active (non-zero) input row driven through the crossbar, all columns in parallel.
    pub mvm_row: u32,
    /// One read-modify-write of a crossbar row by the learning unit.
    pub update_row: u32,
    /// Neurons the neuron and learning units process per cycle (activation, scores, deltas).
    pub neuron_lanes: u32,
    /// Per class in the softmax unit.
    pub softmax_class: u32,
    /// Per batch entry and pass of the softmax unit's target selection (batch-contrastive
    /// losses).
    pub select_entry: u32,
    /// Injecting one packet into the router.
    pub send_packet: u32,
    /// Writing one received packet into a buffer.
    pub recv_packet: u32,
    /// Latency of one router hop.
    pub hop: u32,
    /// A barrier between samples.
    pub sync: u32,
}

/// One per-event energy: its value, its unit and the published source of the default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnergyCost {
    pub value: f64,
    pub unit: String,
    pub source: String,
}

/// Per-event energies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyTable {
    /// One synaptic operation (one weight times one input, accumulated).
    pub synaptic_op: EnergyCost,
    /// One neuron update (activation, or a neuron-wide learning-unit step).
    pub neuron_update: EnergyCost,
    /// One synaptic weight update by the learning unit.
    pub weight_update: EnergyCost,
    /// One packet crossing one router hop.
    pub router_hop: EnergyCost,
    /// Reading one bit of data SRAM (buffers, targets).
    pub sram_read_bit: EnergyCost,
    /// Writing one bit of data SRAM.
    pub sram_write_bit: EnergyCost,
    /// Fetching and decoding one instruction.
    pub instruction: EnergyCost,
}

impl Default for ChipDescription {
    fn default() -> Self {
        Self {
            format_version: CHIP_FORMAT_VERSION,
            name: "sigchip-default".into(),
            grid: Grid {
                width: 8,
                height: 8,
            },
            crossbar: Crossbar {
                rows: 256,
                cols: 256,
            },
            bits: BitWidths::default(),
            memory: Memory::default(),
            clock_mhz: 200.0,
            costs: Costs::default(),
            router: Router::default(),
            energy: EnergyTable::default(),
        }
    }
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            width: 8,
            height: 8,
        }
    }
}

impl Default for Crossbar {
    fn default() -> Self {
        Crossbar {
            rows: 256,
            cols: 256,
        }
    }
}

impl Default for BitWidths {
    fn default() -> Self {
        Self {
            weight: 8,
            activation: 8,
            accumulator: 24,
            state: 16,
            probability: 16,
        }
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            data_sram_bits: 128 * 1024,
            instruction_words: 1024,
            route_table_entries: 64,
        }
    }
}

impl Default for Costs {
    fn default() -> Self {
        Self {
            issue: 1,
            mvm_row: 1,
            update_row: 2,
            neuron_lanes: 16,
            softmax_class: 4,
            select_entry: 1,
            send_packet: 1,
            recv_packet: 1,
            hop: 1,
            sync: 2,
        }
    }
}

fn cost(value: f64, unit: &str, source: &str) -> EnergyCost {
    EnergyCost {
        value,
        unit: unit.into(),
        source: source.into(),
    }
}

impl Default for EnergyTable {
    fn default() -> Self {
        const LOIHI: &str = "Davies et al., Loihi, IEEE Micro 38(1) 2018, Table 1 (14 nm FinFET)";
        const HOROWITZ: &str =
            "Horowitz, Computing's energy problem, ISSCC 2014 (45 nm; 8 KB SRAM, 64-bit access 10 pJ)";
        Self {
            synaptic_op: cost(
                12.7,
                "pJ/SOP",
                "Frenkel et al., ODIN, IEEE TBioCAS 13(1) 2019 (28 nm FDSOI)",
            ),
            neuron_update: cost(81.0, "pJ/neuron update", LOIHI),
            weight_update: cost(120.0, "pJ/synaptic update", LOIHI),
            router_hop: cost(3.0, "pJ/packet hop", LOIHI),
            sram_read_bit: cost(0.16, "pJ/bit", HOROWITZ),
            sram_write_bit: cost(0.16, "pJ/bit", HOROWITZ),
            instruction: cost(
                70.0,
                "pJ/instruction",
                "Horowitz, ISSCC 2014 (45 nm; instruction overhead of a RISC core)",
            ),
        }
    }
}

/// Limits that the emulator's datapath supports; a chip outside them is rejected with the limit
/// named (see docs/chip.md).
pub mod limits {
    pub const MAX_GRID_SIDE: u16 = 256;
    pub const MAX_CROSSBAR_SIDE: u32 = 4096;
    pub const WEIGHT_BITS: (u8, u8) = (2, 16);
    /// Hidden outputs keep three integer bits, so at least one fraction bit needs four.
    pub const ACTIVATION_BITS: (u8, u8) = (4, 16);
    pub const ACCUMULATOR_BITS: (u8, u8) = (8, 32);
    pub const STATE_BITS: (u8, u8) = (4, 32);
    pub const PROBABILITY_BITS: (u8, u8) = (8, 16);
}

/// One problem found while validating a chip description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChipProblem {
    /// The field, as written in RON (`bits.weight`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for ChipProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a chip description could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ChipError {
    #[error("{origin}:{line}:{col}: malformed chip description: {message}")]
    Parse {
        origin: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{origin}: invalid chip description:\n{}", list(.problems))]
    Invalid {
        origin: String,
        problems: Vec<ChipProblem>,
    },
}

fn list(problems: &[ChipProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ChipDescription {
    /// Parses and validates a RON chip description; `origin` names it in errors (a file path).
    pub fn from_ron(text: &str, origin: &str) -> Result<Self, ChipError> {
        let chip: ChipDescription = ron::from_str(text).map_err(|e| ChipError::Parse {
            origin: origin.into(),
            line: e.span.start.line,
            col: e.span.start.col,
            message: e.code.to_string(),
        })?;
        let problems = chip.problems();
        if problems.is_empty() {
            Ok(chip)
        } else {
            Err(ChipError::Invalid {
                origin: origin.into(),
                problems,
            })
        }
    }

    /// Serializes to commented-free pretty RON.
    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .expect("a chip description always serializes")
    }

    /// Every problem with this description (empty when it is valid).
    pub fn problems(&self) -> Vec<ChipProblem> {
        use limits::*;
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String| {
            out.push(ChipProblem {
                field: field.into(),
                message,
            })
        };
        if self.format_version != CHIP_FORMAT_VERSION {
            bad(
                "format_version",
                format!(
                    "is {}, this build reads version {CHIP_FORMAT_VERSION}",
                    self.format_version
                ),
            );
        }
        for (field, v) in [
            ("grid.width", self.grid.width),
            ("grid.height", self.grid.height),
        ] {
            if v == 0 || v > MAX_GRID_SIDE {
                bad(field, format!("is {v}, must be in 1..={MAX_GRID_SIDE}"));
            }
        }
        for (field, v) in [
            ("crossbar.rows", self.crossbar.rows),
            ("crossbar.cols", self.crossbar.cols),
        ] {
            if v == 0 || v > MAX_CROSSBAR_SIDE {
                bad(field, format!("is {v}, must be in 1..={MAX_CROSSBAR_SIDE}"));
            }
        }
        let b = &self.bits;
        for (field, v, (lo, hi)) in [
            ("bits.weight", b.weight, WEIGHT_BITS),
            ("bits.activation", b.activation, ACTIVATION_BITS),
            ("bits.accumulator", b.accumulator, ACCUMULATOR_BITS),
            ("bits.state", b.state, STATE_BITS),
            ("bits.probability", b.probability, PROBABILITY_BITS),
        ] {
            if v < lo || v > hi {
                bad(field, format!("is {v}, must be in {lo}..={hi}"));
            }
        }
        if b.accumulator < b.weight.saturating_add(b.activation) {
            bad(
                "bits.accumulator",
                format!(
                    "is {}, must hold one product: at least bits.weight + bits.activation = {}",
                    b.accumulator,
                    b.weight as u32 + b.activation as u32
                ),
            );
        }
        if !(self.clock_mhz.is_finite() && self.clock_mhz > 0.0) {
            bad(
                "clock_mhz",
                format!("is {}, must be a positive number", self.clock_mhz),
            );
        }
        if self.memory.instruction_words == 0 {
            bad(
                "memory.instruction_words",
                "is 0, a core needs at least one instruction".into(),
            );
        }
        if self.costs.send_packet == 0 {
            bad(
                "costs.send_packet",
                "is 0, a router takes at most one packet per cycle from a core".into(),
            );
        }
        if self.costs.hop == 0 {
            bad("costs.hop", "is 0, a link takes at least one cycle".into());
        }
        for (field, v) in [
            ("router.link_bandwidth", self.router.link_bandwidth),
            ("router.buffer_depth", self.router.buffer_depth),
        ] {
            if v == 0 {
                bad(field, "is 0, must be at least 1 packet".into());
            }
        }
        if self.costs.neuron_lanes == 0 {
            bad(
                "costs.neuron_lanes",
                "is 0, the neuron unit needs at least one lane".into(),
            );
        }
        let e = &self.energy;
        for (field, c) in [
            ("energy.synaptic_op", &e.synaptic_op),
            ("energy.neuron_update", &e.neuron_update),
            ("energy.weight_update", &e.weight_update),
            ("energy.router_hop", &e.router_hop),
            ("energy.sram_read_bit", &e.sram_read_bit),
            ("energy.sram_write_bit", &e.sram_write_bit),
            ("energy.instruction", &e.instruction),
        ] {
            if !(c.value.is_finite() && c.value >= 0.0) {
                bad(
                    field,
                    format!("is {}, must be a finite non-negative energy", c.value),
                );
            }
        }
        out
    }

    /// Number of cores on the grid.
    pub fn core_count(&self) -> usize {
        self.grid.width as usize * self.grid.height as usize
    }

    /// Crossbar SRAM of one core, in bits.
    pub fn weight_sram_bits(&self) -> u64 {
        self.crossbar.rows as u64 * self.crossbar.cols as u64 * self.bits.weight as u64
    }

    /// The format of probabilities and class errors: all bits but the sign are fraction.
    pub fn probability_format(&self) -> QFormat {
        QFormat::new(self.bits.probability, self.bits.probability as i8 - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chip_is_valid_and_round_trips() {
        let chip = ChipDescription::default();
        assert!(chip.problems().is_empty(), "{:?}", chip.problems());
        let back = ChipDescription::from_ron(&chip.to_ron(), "default").unwrap();
        assert_eq!(back, chip);
    }

    #[test]
    fn partial_description_takes_defaults() {
        let chip = ChipDescription::from_ron("(crossbar: (rows: 64, cols: 32))", "x.ron").unwrap();
        assert_eq!(chip.crossbar.rows, 64);
        assert_eq!(chip.bits.weight, 8);
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let text =
            "(grid: (width: 0, height: 4), bits: (weight: 20, accumulator: 9), clock_mhz: -1.0)";
        let err = ChipDescription::from_ron(text, "bad.ron")
            .unwrap_err()
            .to_string();
        for needle in [
            "bad.ron",
            "grid.width",
            "bits.weight",
            "bits.accumulator",
            "clock_mhz",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn malformed_ron_names_the_position() {
        let err = ChipDescription::from_ron("(grid: (width: 4,\n height: ))", "c.ron").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("c.ron:2:"), "{text}");
    }

    #[test]
    fn unknown_field_is_an_error() {
        let err =
            ChipDescription::from_ron("(crossbars: (rows: 4, cols: 4))", "c.ron").unwrap_err();
        assert!(err.to_string().contains("crossbars"), "{err}");
    }
}
