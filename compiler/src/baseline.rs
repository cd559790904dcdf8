//! Lowerings of learning algorithms that need a backward path, so that the verifier can say
//! exactly what they would need from the chip. None of them can run here: [`compile_algorithm`]
//! refuses them with the counts.
//!
//! Backpropagation, lowered onto the sigprop program of the same network, adds per core of
//! every layer `l >= 2`: a transposed crossbar read (`mvmt`: `W_l^T delta_l`, weight transport)
//! and a route back to every reducer of layer `l - 1` whose neurons feed the core's rows, with
//! the `send` that carries the error down and the `recv` that takes it.

use crate::{compile, CompileError, Compiled, NetworkDesc};
use sigchip_isa::{
    verify, Buf, ChipDescription, Endpoint, Instr, Program, Route, RouteId, Violation,
};

/// A learning algorithm a network can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Signal propagation: forward passes only.
    Sigprop,
    /// Backpropagation: needs backward routes and transposed crossbar reads.
    Backprop,
    /// Feedback alignment: backprop's backward routes, with fixed random feedback matrices
    /// (stored) instead of the transposed weights.
    FeedbackAlignment,
    /// Direct feedback alignment: the output error sent straight back to every hidden layer
    /// through its own fixed random feedback matrix.
    DirectFeedbackAlignment,
    /// Local learning with an auxiliary classifier per hidden layer: each layer backpropagates
    /// through its own classifier (a transposed read of the classifier's weights).
    LocalAux,
}

impl Algorithm {
    /// The baselines the claims compare sigprop with.
    pub const BASELINES: [Algorithm; 4] = [
        Algorithm::Backprop,
        Algorithm::FeedbackAlignment,
        Algorithm::DirectFeedbackAlignment,
        Algorithm::LocalAux,
    ];
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Sigprop => "sigprop",
            Algorithm::Backprop => "backprop",
            Algorithm::FeedbackAlignment => "feedback alignment",
            Algorithm::DirectFeedbackAlignment => "direct feedback alignment",
            Algorithm::LocalAux => "local auxiliary classifiers",
        })
    }
}

/// What an algorithm would need that the forward-only chip forbids.
#[derive(Debug, thiserror::Error)]
#[error(
    "{algorithm} cannot be lowered to this forward-only chip: it needs {backward_routes} backward \
     routes and {transposed_reads} transposed crossbar reads (weight transport){}\n{}",
    if *.cross_layer_reads > 0 { format!(" and {} reads of another layer's state", .cross_layer_reads) } else { String::new() },
    .examples.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n")
)]
pub struct NotForwardOnly {
    pub algorithm: Algorithm,
    pub backward_routes: usize,
    pub transposed_reads: usize,
    pub cross_layer_reads: usize,
    /// The first violations as the verifier words them (the rest are counted above).
    pub examples: Vec<String>,
}

/// Compiles `desc` for `algorithm`; anything but sigprop is refused with what it would need.
pub fn compile_algorithm(
    desc: NetworkDesc,
    origin: &str,
    chip: &ChipDescription,
    algorithm: Algorithm,
) -> Result<Compiled, CompileError> {
    let compiled = compile(desc, origin, chip)?;
    match algorithm {
        Algorithm::Sigprop => Ok(compiled),
        _ => {
            let lowered = lower(&compiled.program, algorithm);
            let err = match verify(&lowered) {
                Ok(()) => unreachable!("a backward lowering always breaks the invariant"),
                Err(e) => e,
            };
            let (backward_routes, transposed_reads, cross_layer_reads) = err.forward_only_counts();
            // A few of each kind, as the verifier words them.
            let mut examples: Vec<String> = Vec::new();
            for kind in 0..3 {
                examples.extend(
                    err.violations
                        .iter()
                        .filter(|v| match kind {
                            0 => matches!(v, Violation::BackwardRoute { .. }),
                            1 => matches!(v, Violation::TransposedRead { .. }),
                            _ => matches!(v, Violation::CrossLayerRead { .. }),
                        })
                        .take(3)
                        .map(|v| v.to_string()),
                );
            }
            let shown = examples.len();
            let total = backward_routes + transposed_reads + cross_layer_reads;
            if total > shown {
                examples.push(format!("... and {} more", total - shown));
            }
            Err(CompileError::NotForwardOnly(NotForwardOnly {
                algorithm,
                backward_routes,
                transposed_reads,
                cross_layer_reads,
                examples,
            }))
        }
    }
}

/// The sigprop program of a network with `algorithm`'s backward path added (the program itself
/// for sigprop); what the verifier then finds is what the algorithm needs from the chip.
pub fn lower(sigprop: &Program, algorithm: Algorithm) -> Program {
    match algorithm {
        Algorithm::Sigprop => sigprop.clone(),
        Algorithm::Backprop => lower_backprop(sigprop),
        // The feedback product runs in a feedback unit with its own matrix: the same routes
        // as backprop, no transposed read.
        Algorithm::FeedbackAlignment => {
            let mut p = lower_backprop(sigprop);
            for c in &mut p.cores {
                c.streams.learn.retain(|i| !matches!(i, Instr::MvmT { .. }));
            }
            p
        }
        Algorithm::DirectFeedbackAlignment => lower_dfa(sigprop),
        Algorithm::LocalAux => lower_local_aux(sigprop),
    }
}

/// DFA: every reducer of the output (last) layer sends its slice of the output error to every
/// reducer of every hidden layer.
fn lower_dfa(sigprop: &Program) -> Program {
    let mut p = sigprop.clone();
    let last = p.layers.len() as u16;
    let outputs: Vec<_> = p
        .cores
        .iter()
        .filter(|c| c.layer.0 == last && c.tile.is_reducer())
        .map(|c| (c.id, c.tile.cols))
        .collect();
    let hidden: Vec<_> = p
        .cores
        .iter()
        .filter(|c| c.layer.0 < last && c.tile.is_reducer())
        .map(|c| c.id)
        .collect();
    for &(src, cols) in &outputs {
        for &dst in &hidden {
            let route = RouteId(p.routes.len() as u16);
            p.routes.push(Route {
                id: route,
                src: Endpoint::Core(src),
                dst: Endpoint::Core(dst),
                src_buf: Buf::Delta,
                src_start: 0,
                len: cols.min(p.network.classes as u32),
                dst_buf: Buf::Err,
                dst_start: 0,
            });
            let at = p.cores[src.index()].streams.learn.len().saturating_sub(1);
            p.cores[src.index()]
                .streams
                .learn
                .insert(at, Instr::Send { route });
            p.cores[dst.index()]
                .streams
                .learn
                .insert(0, Instr::Recv { route });
        }
    }
    p
}

/// Local auxiliary classifiers: every hidden layer's reducers backpropagate their classifier's
/// error through the classifier's weights (a transposed read); nothing crosses layers.
fn lower_local_aux(sigprop: &Program) -> Program {
    let mut p = sigprop.clone();
    let last = p.layers.len() as u16;
    for c in p.cores.iter_mut() {
        if c.layer.0 < last && c.tile.is_reducer() {
            let at = c.streams.learn.len().saturating_sub(1);
            c.streams.learn.insert(at, Instr::MvmT { src: Buf::Err });
        }
    }
    p
}

/// The sigprop program of a network with backpropagation's backward pass added.
pub fn lower_backprop(sigprop: &Program) -> Program {
    let mut p = sigprop.clone();
    let n = p.cores.len();
    for ci in 0..n {
        let (layer, tile, id) = (p.cores[ci].layer, p.cores[ci].tile, p.cores[ci].id);
        if layer.0 < 2 {
            continue;
        }
        // The error for the layer below: W^T delta over this core's rows.
        let mut added = vec![Instr::MvmT { src: Buf::Delta }];
        let below: Vec<_> = p
            .cores
            .iter()
            .filter(|c| c.layer.0 == layer.0 - 1 && c.tile.is_reducer())
            .map(|c| (c.id, c.tile))
            .collect();
        let inputs = p.layer(layer).inputs;
        for (dst, t) in below {
            let (lo, hi) = (
                tile.row_start.max(t.col_start),
                (tile.row_start + tile.rows)
                    .min(t.col_start + t.cols)
                    .min(inputs),
            );
            if lo >= hi {
                continue;
            }
            let route = RouteId(p.routes.len() as u16);
            p.routes.push(Route {
                id: route,
                src: Endpoint::Core(id),
                dst: Endpoint::Core(dst),
                src_buf: Buf::In,
                src_start: lo - tile.row_start,
                len: hi - lo,
                dst_buf: Buf::Delta,
                dst_start: lo - t.col_start,
            });
            added.push(Instr::Send { route });
            let receiver = &mut p.cores[dst.index()].streams.learn;
            receiver.insert(0, Instr::Recv { route });
        }
        let learn = &mut p.cores[ci].streams.learn;
        let at = learn.len().saturating_sub(1); // before `halt`
        learn.splice(at..at, added);
    }
    p
}
