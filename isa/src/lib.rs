//! # sigchip-isa: the contract between the sigchip compiler and emulator
//!
//! The central type is [`Program`]: a compiled network for one [`ChipDescription`], holding for
//! every used core its tile of the weight matrix, its [`WeightImage`] and its instruction
//! [`Streams`], plus every [`Route`] between cores and the chip's ports. The compiler emits a
//! `Program`, the emulator runs one, and neither depends on the other: they meet here.
//!
//! What a program may do is fixed by the forward-only invariant, which [`verify()`] proves:
//! no route to a smaller depth, no transposed crossbar read, no read of another layer's state.
//! See `docs/ARCHITECTURE.md` and `docs/isa.md`.
//!
//! - [`chip`]: the chip description (grid, crossbar, bit widths, memories, costs, energies).
//! - [`instr`]: the instruction table, encoder, decoder and disassembler.
//! - [`program`]: the program format, routes and layer metadata.
//! - [`fixed_point`]: formats, rounding and saturation used by every kernel.
//! - [`memory`]: memory accounting by kind.
//! - [`verify`](mod@verify): the verifier.
//! - [`disasm`]: the text listing of a program.
//! - [`ids`]: typed IDs that print as the text format writes them (`core3`).
//! - [`rng`]: deterministic generators: initial weights, stochastic rounding, the LFSR projection.

pub mod chip;
pub mod disasm;
pub mod encode;
pub mod fixed_point;
pub mod ids;
pub mod instr;
pub mod memory;
pub mod program;
pub mod rng;
pub mod verify;

pub use chip::{ChipDescription, ChipError};
pub use fixed_point::QFormat;
pub use ids::{CoreId, LayerId, RouteId};
pub use instr::{Buf, Class, DeltaMode, Instr, Opcode, Pre, ScoreMode};
pub use program::{
    Activation, CoreProgram, Encoding, Endpoint, LayerInfo, LocalLoss, NetworkInfo, NeuronModel,
    Program, ProgramError, ProjectionInfo, ProjectionMode, Readout, Reset, Rounding, Route,
    RouteCounts, RouteKind, SpikeLearning, SpikeReadout, Streams, TargetMode, Tile, UpdateTiming,
    WeightImage,
};
pub use verify::{verify, VerifyError, Violation};
