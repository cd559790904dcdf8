//! The verifier: proves a program keeps the forward-only invariant and fits the chip.
//!
//! It checks, and collects every violation of:
//!
//! 1. **No backward route**: no route ends at a smaller depth than it starts (input = 0,
//!    layer n = n, output = layers + 1). Routes within one depth are lateral and allowed.
//! 2. **No weight transport**: no instruction reads a crossbar transposed (`mvmt`).
//! 3. **No cross-layer state read**: no instruction reads another layer's core (`ldrem`).
//! 4. **Local learning**: a core only sends on routes that start at it and only receives on
//!    routes that end at it, so its learning unit sees only its layer's inputs, outputs and
//!    targets (whatever reaches it came over a checked route).
//! 5. **Capacity**: cores fit the grid at distinct positions; tiles fit the crossbar; weights fit
//!    their format and the chip's weight width; data SRAM, instruction memory and routing tables
//!    fit; every route's buffer ranges exist; class operands name a class.

use crate::ids::CoreId;
use crate::instr::{Buf, DeltaMode, Instr, Pre, ScoreMode};
use crate::memory::{buffer_len, memory_use};
use crate::program::{Endpoint, Program, Route, RouteKind};
use std::fmt;

/// One broken rule, naming the core, route or instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    BackwardRoute {
        route: Route,
        from_depth: u16,
        to_depth: u16,
    },
    TransposedRead {
        core: CoreId,
        phase: &'static str,
        index: usize,
        instr: Instr,
    },
    CrossLayerRead {
        core: CoreId,
        phase: &'static str,
        index: usize,
        instr: Instr,
        other_layer: u16,
    },
    Structure {
        what: String,
    },
    Capacity {
        core: Option<CoreId>,
        resource: &'static str,
        needed: u64,
        available: u64,
    },
}

impl Violation {
    /// Whether this violation breaks the forward-only invariant (as opposed to a capacity or
    /// structural problem).
    pub fn is_forward_only(&self) -> bool {
        matches!(
            self,
            Violation::BackwardRoute { .. }
                | Violation::TransposedRead { .. }
                | Violation::CrossLayerRead { .. }
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::BackwardRoute { route, from_depth, to_depth } => write!(
                f,
                "backward route: {} goes from {} (depth {from_depth}) to {} (depth {to_depth})",
                route.id, route.src, route.dst
            ),
            Violation::TransposedRead { core, phase, index, instr } => write!(
                f,
                "transposed crossbar read: {core} {phase}[{index}] `{instr}` reads weights transposed (weight transport)"
            ),
            Violation::CrossLayerRead { core, phase, index, instr, other_layer } => write!(
                f,
                "cross-layer state read: {core} {phase}[{index}] `{instr}` reads the state of a layer{other_layer} core"
            ),
            Violation::Structure { what } => write!(f, "malformed program: {what}"),
            Violation::Capacity { core, resource, needed, available } => {
                if let Some(c) = core {
                    write!(f, "{c}: {resource} needs {needed}, the chip has {available}")
                } else {
                    write!(f, "{resource} needs {needed}, the chip has {available}")
                }
            }
        }
    }
}

/// Every violation found in a program.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the program fails verification ({} violation{}):\n{}",
    .violations.len(),
    if .violations.len() == 1 { "" } else { "s" },
    .violations.iter().map(|v| format!("  - {v}")).collect::<Vec<_>>().join("\n"))]
pub struct VerifyError {
    pub violations: Vec<Violation>,
}

impl VerifyError {
    /// Counts of forward-only violations: (backward routes, transposed reads, cross-layer reads).
    pub fn forward_only_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for v in &self.violations {
            match v {
                Violation::BackwardRoute { .. } => counts.0 += 1,
                Violation::TransposedRead { .. } => counts.1 += 1,
                Violation::CrossLayerRead { .. } => counts.2 += 1,
                _ => {}
            }
        }
        counts
    }
}

/// Checks every rule in the module docs; `Ok` only when none is broken.
pub fn verify(program: &Program) -> Result<(), VerifyError> {
    let mut v = Vec::new();
    let structure_ok = check_structure(program, &mut v);
    check_network(program, &mut v);
    if structure_ok {
        check_routes(program, &mut v);
        check_instructions(program, &mut v);
        check_capacity(program, &mut v);
    }
    if v.is_empty() {
        Ok(())
    } else {
        Err(VerifyError { violations: v })
    }
}

fn structural(v: &mut Vec<Violation>, what: String) {
    v.push(Violation::Structure { what });
}

/// IDs and references; later checks index by them, so they only run when this passes.
fn check_structure(p: &Program, v: &mut Vec<Violation>) -> bool {
    let before = v.len();
    let problems = p.chip.problems();
    for problem in problems {
        structural(v, format!("chip description: {problem}"));
    }
    for (i, l) in p.layers.iter().enumerate() {
        if l.id.index() != i + 1 {
            structural(
                v,
                format!("layers[{i}] has id {}, expected layer{}", l.id, i + 1),
            );
        }
    }
    for (i, c) in p.cores.iter().enumerate() {
        if c.id.index() != i {
            structural(v, format!("cores[{i}] has id {}, expected core{i}", c.id));
        }
        if c.layer.0 == 0 || c.layer.index() > p.layers.len() {
            structural(
                v,
                format!("{} belongs to {}, which does not exist", c.id, c.layer),
            );
        }
    }
    for (i, r) in p.routes.iter().enumerate() {
        if r.id.index() != i {
            structural(v, format!("routes[{i}] has id {}, expected route{i}", r.id));
        }
        for e in [r.src, r.dst] {
            if let Endpoint::Core(c) = e {
                if c.index() >= p.cores.len() {
                    structural(v, format!("{} names {c}, which does not exist", r.id));
                }
            }
        }
    }
    if !(2..=255).contains(&p.network.classes) {
        structural(
            v,
            format!("network has {} classes, must be 2..=255", p.network.classes),
        );
    }
    v.len() == before
}

/// Network-wide parameters the emulator divides or shifts by.
fn check_network(p: &Program, v: &mut Vec<Violation>) {
    let n = &p.network;
    if n.batch == 0 || !n.batch.is_power_of_two() {
        structural(
            v,
            format!("network batch is {}, must be a power of two", n.batch),
        );
    }
    if n.target_refresh == 0 {
        structural(v, "network target_refresh is 0, must be at least 1".into());
    }
    for l in &p.layers {
        if l.loss.is_contrastive() && n.batch < 2 {
            structural(
                v,
                format!(
                    "{}: loss {} needs mini-batches (network batch is {})",
                    l.id, l.loss, n.batch
                ),
            );
        }
        if let crate::program::LocalLoss::TargetTopK { k } = l.loss {
            if k == 0 || k as u32 > n.batch {
                structural(
                    v,
                    format!(
                        "{}: loss {} needs 1 <= k <= batch ({})",
                        l.id, l.loss, n.batch
                    ),
                );
            }
        }
    }
    match n.neuron {
        crate::program::NeuronModel::Rate => {}
        crate::program::NeuronModel::Lif {
            threshold,
            leak_shift,
            steps,
            ..
        } => {
            if steps == 0 {
                structural(
                    v,
                    "network neuron has 0 time steps, must be at least 1".into(),
                );
            }
            for l in &p.layers {
                let f = l.state_format;
                if threshold <= 0 || threshold as i64 > f.max_raw() {
                    structural(
                        v,
                        format!(
                            "{}: threshold {threshold} (raw) is outside its state format {f} (1..={})",
                            l.id,
                            f.max_raw()
                        ),
                    );
                }
                if leak_shift == 0 || leak_shift >= f.bits {
                    structural(
                        v,
                        format!(
                            "{}: leak shift {leak_shift} must be in 1..{} (the state is {} bits wide)",
                            l.id, f.bits, f.bits
                        ),
                    );
                }
            }
        }
        crate::program::NeuronModel::Continuous { tau_shift, steps } => {
            if steps == 0 {
                structural(
                    v,
                    "network neuron has 0 time steps, must be at least 1".into(),
                );
            }
            for l in &p.layers {
                if tau_shift >= l.state_format.bits {
                    structural(
                        v,
                        format!(
                            "{}: tau shift {tau_shift} is as wide as its {}-bit state",
                            l.id, l.state_format.bits
                        ),
                    );
                }
            }
        }
    }
    if n.lr_anneal_every == Some(0) {
        structural(v, "network lr_anneal_every is 0, must be at least 1".into());
    }
    if !(2..=16).contains(&n.input_format.bits) {
        structural(
            v,
            format!("input format {} must be 2..=16 bits wide", n.input_format),
        );
    }
}

fn check_routes(p: &Program, v: &mut Vec<Violation>) {
    for r in &p.routes {
        let (s, d) = (p.depth(r.src).unwrap_or(0), p.depth(r.dst).unwrap_or(0));
        if p.route_kind(r) == RouteKind::Backward {
            v.push(Violation::BackwardRoute {
                route: r.clone(),
                from_depth: s,
                to_depth: d,
            });
        }
        if r.src == Endpoint::Output || r.dst == Endpoint::Input {
            structural(
                v,
                format!(
                    "{} runs from {} to {}: ports are one-way",
                    r.id, r.src, r.dst
                ),
            );
        }
        let available = |e: Endpoint, buf: Buf| -> usize {
            match e {
                Endpoint::Input => match buf {
                    Buf::In => p.network.input_len as usize,
                    Buf::Label => 1,
                    Buf::Batch => p.network.batch as usize,
                    _ => 0,
                },
                Endpoint::Output => match buf {
                    Buf::Out | Buf::Score => p.network.classes as usize,
                    _ => 0,
                },
                Endpoint::Core(c) => buffer_len(p, p.core(c), buf),
            }
        };
        let src_end = r.src_start as u64 + r.len as u64;
        let dst_end = r.dst_start as u64 + r.len as u64;
        if src_end > available(r.src, r.src_buf) as u64 {
            structural(
                v,
                format!(
                    "{} reads {}[{}..{src_end}] of {}, which has {} entries",
                    r.id,
                    r.src_buf,
                    r.src_start,
                    r.src,
                    available(r.src, r.src_buf)
                ),
            );
        }
        if dst_end > available(r.dst, r.dst_buf) as u64 {
            structural(
                v,
                format!(
                    "{} writes {}[{}..{dst_end}] of {}, which has {} entries",
                    r.id,
                    r.dst_buf,
                    r.dst_start,
                    r.dst,
                    available(r.dst, r.dst_buf)
                ),
            );
        }
    }
}

fn check_instructions(p: &Program, v: &mut Vec<Violation>) {
    let classes = p.network.classes;
    for core in &p.cores {
        for (phase, stream) in core.streams.phases() {
            for (index, &instr) in stream.iter().enumerate() {
                let at = || format!("{} {phase}[{index}] `{instr}`", core.id);
                match instr {
                    Instr::MvmT { .. } => v.push(Violation::TransposedRead {
                        core: core.id,
                        phase,
                        index,
                        instr,
                    }),
                    Instr::LdRem { core: other, .. } => match p.cores.get(other.index()) {
                        Some(o) if o.layer != core.layer => v.push(Violation::CrossLayerRead {
                            core: core.id,
                            phase,
                            index,
                            instr,
                            other_layer: o.layer.0,
                        }),
                        Some(_) => {}
                        None => {
                            structural(v, format!("{} names {other}, which does not exist", at()))
                        }
                    },
                    Instr::Send { route } | Instr::Recv { route } => {
                        let Some(r) = p.routes.get(route.index()) else {
                            structural(v, format!("{} names {route}, which does not exist", at()));
                            continue;
                        };
                        let (end, side) = match instr {
                            Instr::Send { .. } => (r.src, "start"),
                            _ => (r.dst, "end"),
                        };
                        if end != Endpoint::Core(core.id) {
                            structural(
                                v,
                                format!(
                                    "{}: {route} does not {side} at {} but at {end}",
                                    at(),
                                    core.id
                                ),
                            );
                        }
                    }
                    Instr::DeltaT { class } | Instr::UpdT { class } | Instr::UpdP { class }
                        if class.0 as u16 >= classes && class != crate::instr::Class::LABEL =>
                    {
                        structural(
                            v,
                            format!("{}: class {class} but the network has {classes}", at()),
                        )
                    }
                    Instr::Proj { class } | Instr::TStore { class } | Instr::TInStore { class }
                        if class.0 as u16 >= classes =>
                    {
                        structural(
                            v,
                            format!("{}: class {class} but the network has {classes}", at()),
                        )
                    }
                    Instr::GAcc { .. } | Instr::GApply {}
                        if p.network.batch < 2 && !p.network.neuron.sums_updates() =>
                    {
                        structural(
                            v,
                            format!(
                                "{}: gradient accumulators exist only with mini-batches or summed time steps",
                                at()
                            ),
                        )
                    }
                    Instr::NStep {} | Instr::NStepT { .. }
                        if !p.network.neuron.has_time() || !core.tile.is_reducer() =>
                    {
                        structural(
                            v,
                            format!(
                                "{}: only a reducer of a network with time steps has neuron state",
                                at()
                            ),
                        )
                    }
                    Instr::NStepT { class } if class.0 as u16 >= classes => structural(
                        v,
                        format!("{}: class {class} but the network has {classes}", at()),
                    ),
                    Instr::NStepT { .. } if !p.layer(core.layer).keeps_targets => structural(
                        v,
                        format!("{}: the layer keeps no class targets", at()),
                    ),
                    Instr::Upd { pre: Pre::Target }
                    | Instr::GAcc { pre: Pre::Target }
                    | Instr::UpdT { .. }
                    | Instr::TInStore { .. }
                        if !p.keeps_target_inputs(p.layer(core.layer)) =>
                    {
                        structural(
                            v,
                            format!("{}: the layer keeps no target-stream inputs", at()),
                        )
                    }
                    Instr::Mvm { src } if src != Buf::In => {
                        structural(v, format!("{}: the crossbar reads only `in`", at()))
                    }
                    Instr::TStore { .. }
                    | Instr::Score {
                        mode: ScoreMode::Targets | ScoreMode::TargetsL2,
                    }
                    | Instr::Delta {
                        mode: DeltaMode::Targets | DeltaMode::L2 | DeltaMode::Hebbian,
                    }
                    | Instr::DeltaT { .. }
                        if !p.layer(core.layer).keeps_targets =>
                    {
                        structural(v, format!("{}: the layer keeps no class targets", at()))
                    }
                    Instr::Delta {
                        mode: DeltaMode::Direct,
                    } if p.layer(core.layer).keeps_targets => structural(
                        v,
                        format!("{}: `delta direct` is for a readout layer's logits", at()),
                    ),
                    Instr::Proj { .. } if !p.has_projection(core) => {
                        structural(v, format!("{}: the core holds no target projection", at()))
                    }
                    Instr::Gram {} if buffer_len(p, core, Buf::GramPart) == 0 => structural(
                        v,
                        format!(
                            "{}: only a reducer of a layer whose next layer is batch-contrastive computes class similarities",
                            at()
                        ),
                    ),
                    Instr::AddG {} if buffer_len(p, core, Buf::GramIn) == 0 => structural(
                        v,
                        format!("{}: the core receives no partial class similarities", at()),
                    ),
                    Instr::Smax {}
                        if p.layer(core.layer).loss.is_contrastive()
                            && (buffer_len(p, core, Buf::Batch) == 0
                                || (core.layer.0 > 1 && buffer_len(p, core, Buf::Gram) == 0)) =>
                    {
                        structural(
                            v,
                            format!(
                                "{}: a batch-contrastive softmax runs on the layer's leader only",
                                at()
                            ),
                        )
                    }
                    Instr::UpdP { .. } if core.projection.is_none() => structural(
                        v,
                        format!(
                            "{}: the core holds no stored (learnable) target projection",
                            at()
                        ),
                    ),
                    _ => {}
                }
            }
        }
    }
}

fn check_capacity(p: &Program, v: &mut Vec<Violation>) {
    let chip = &p.chip;
    let grid = chip.core_count() as u64;
    if p.cores.len() as u64 > grid {
        v.push(Violation::Capacity {
            core: None,
            resource: "cores",
            needed: p.cores.len() as u64,
            available: grid,
        });
    }
    let mut taken = std::collections::HashMap::new();
    for core in &p.cores {
        if core.x >= chip.grid.width || core.y >= chip.grid.height {
            structural(
                v,
                format!(
                    "{} sits at ({}, {}), outside the {}x{} grid",
                    core.id, core.x, core.y, chip.grid.width, chip.grid.height
                ),
            );
        }
        if let Some(other) = taken.insert((core.x, core.y), core.id) {
            structural(
                v,
                format!(
                    "{} and {other} both sit at ({}, {})",
                    core.id, core.x, core.y
                ),
            );
        }
        let mut cap = |resource, needed: u64, available: u64| {
            if needed > available {
                v.push(Violation::Capacity {
                    core: Some(core.id),
                    resource,
                    needed,
                    available,
                });
            }
        };
        cap(
            "crossbar rows",
            core.tile.rows as u64,
            chip.crossbar.rows as u64,
        );
        cap(
            "crossbar columns",
            core.tile.cols as u64,
            chip.crossbar.cols as u64,
        );
        let w = &core.weights;
        if w.rows != core.tile.rows
            || w.cols != core.tile.cols
            || w.data.len() != (w.rows * w.cols) as usize
        {
            structural(
                v,
                format!(
                    "{}: weight image is {}x{} with {} values, the tile is {}x{}",
                    core.id,
                    w.rows,
                    w.cols,
                    w.data.len(),
                    core.tile.rows,
                    core.tile.cols
                ),
            );
        }
        // The emulator bounds its sums by the layer's weight format.
        if core.layer.index() >= 1
            && core.layer.index() <= p.layers.len()
            && w.format != p.layer(core.layer).weight_format
        {
            structural(
                v,
                format!(
                    "{}: weight image format {} differs from {}'s weight format {}",
                    core.id,
                    w.format,
                    core.layer,
                    p.layer(core.layer).weight_format
                ),
            );
        }
        for (what, img) in [
            ("weight", Some(w)),
            ("projection", core.projection.as_ref()),
        ] {
            let Some(img) = img else { continue };
            if img.format.bits > chip.bits.weight {
                structural(
                    v,
                    format!(
                        "{}: {what} format {} is wider than the chip's {}-bit weights",
                        core.id, img.format, chip.bits.weight
                    ),
                );
            }
            if let Some(pos) = img.data.iter().position(|&x| {
                (x as i64) < img.format.min_raw() || (x as i64) > img.format.max_raw()
            }) {
                structural(
                    v,
                    format!(
                        "{}: {what} row {} column {} holds {}, outside {}",
                        core.id,
                        pos / img.cols.max(1) as usize,
                        pos % img.cols.max(1) as usize,
                        img.data[pos],
                        img.format
                    ),
                );
            }
        }
    }
    let memory = memory_use(p);
    let entries = p.route_table_entries();
    for core in &p.cores {
        let m = &memory[core.id.index()];
        let mut cap = |resource, needed: u64, available: u64| {
            if needed > available {
                v.push(Violation::Capacity {
                    core: Some(core.id),
                    resource,
                    needed,
                    available,
                });
            }
        };
        cap("data SRAM bits", m.data_sram(), chip.memory.data_sram_bits);
        cap(
            "instruction words",
            core.streams.total_len() as u64,
            chip.memory.instruction_words as u64,
        );
        cap(
            "routing-table entries",
            entries[core.id.index()] as u64,
            chip.memory.route_table_entries as u64,
        );
    }
}
