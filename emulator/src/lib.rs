//! # sigchip-emulator: bit- and cycle-accurate emulation of sigchip programs
//!
//! The central type is [`Machine`]: a chip loaded with a verified [`sigchip_isa::Program`]. An
//! engine ([`engine`]: event-driven, or the cycle-by-cycle tick reference) runs each core's
//! instruction streams in global time, moving messages packet by packet through the network
//! ([`router`]), computing every value with the chip's fixed-point kernels ([`kernels`]) and
//! charging every instruction through the timing model ([`timing`]). The arithmetic and the timing are separate
//! so the arithmetic can be vectorized without changing a cycle.
//!
//! [`train`](mod@train) drives training and inference over a [`data::Dataset`] and produces a
//! [`report::Report`]. With more than one thread, sequential training computes every run's
//! values on the calling thread and replays its timing from a script on other threads
//! ([`decoupled`]; not when recording waveforms);
//! evaluations run in fixed chunks of samples on copies of the machine over rayon's threads.
//! Every thread count gives the same result.
//! The emulator does not depend on the compiler; they meet in `sigchip-isa`.

pub mod data;
pub mod decoupled;
pub mod engine;
pub mod kernels;
pub mod machine;
pub mod plot;
pub mod report;
pub mod router;
pub mod timing;
pub mod train;
pub mod vcd;

pub use machine::{Counters, EmuError, Machine, Phase, RunResult};
pub use report::Report;
pub use train::{evaluate, run, train, TrainOptions};
