//! # sigchip: a compiler and cycle-accurate emulator for forward-only learning chips
//!
//! This package is the `sigchip` command line; as a library it re-exports the three crates:
//! [`isa`] (the chip description, instruction set, program format and verifier), [`compiler`]
//! (sigprop network descriptions to programs) and [`emulator`] (bit- and cycle-accurate runs of
//! programs, training included). [`reference`](mod@reference) holds the software references in f32 (sigprop with
//! no hardware model, and plain backpropagation) on the same network descriptions and data.
//! See `docs/ARCHITECTURE.md`.

pub use sigchip_compiler as compiler;
pub use sigchip_emulator as emulator;
pub use sigchip_isa as isa;

pub mod accuracy;
pub mod bench;
pub mod claims;
pub mod reference;
