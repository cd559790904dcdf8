//! The hardware-learning claims of sigprop (sigprop.md section 8), measured on one chip
//! description and one network: `sigchip claims`. Each claim is a row with sigprop's figure,
//! each baseline's, the ratio and whether the claim holds on this chip; docs/claims.md says how
//! each is measured and what would change it.
//!
//! Baselines (backprop, feedback alignment, direct feedback alignment, local auxiliary
//! classifiers) are lowered onto the same program by `sigchip_compiler::baseline::lower` so that
//! the verifier counts what breaks the forward-only invariant. Their memory, time and energy are
//! a cost model ([`BaselineCost`]) on the same cost and energy tables: the forward pass (which
//! every algorithm shares) is the emulator's, measured on the same samples, and the backward
//! work is added per layer as the chip would do it with the extensions each needs.

use crate::compiler::{self, baseline::Algorithm, NetworkDesc};
use crate::emulator::{self, data::Dataset, train::Schedule, TrainOptions};
use crate::isa::memory::{memory_use, CoreMemory};
use crate::isa::{ChipDescription, Program};
use crate::reference::{self, F32Options};
use serde::Serialize;
use std::fmt::Write;

/// One claim's measurement.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimRow {
    /// `1` .. `6`, as sigprop.md section 8 and docs/claims.md number them.
    pub claim: String,
    pub metric: String,
    pub unit: String,
    pub sigprop: f64,
    /// Each baseline's figure, by name (empty where the claim has no baseline).
    pub baselines: Vec<(String, f64)>,
    /// The best baseline's figure over sigprop's (lower is better for costs).
    pub ratio: Option<f64>,
    pub holds: bool,
}

/// The claims table and how it was made.
#[derive(Clone, Debug, Serialize)]
pub struct Claims {
    pub chip: String,
    pub network: String,
    pub data: String,
    pub training_samples: usize,
    pub epochs: u32,
    pub rows: Vec<ClaimRow>,
}

/// What to measure on.
pub struct ClaimsOptions {
    pub chip: ChipDescription,
    pub net: NetworkDesc,
    /// The spiking and continuous-time networks of claim 6.
    pub temporal: Vec<NetworkDesc>,
    pub data: Dataset,
    /// Fewer samples and epochs (`--quick`).
    pub quick: bool,
}

/// A baseline's costs per training sample, from the cost model.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BaselineCost {
    /// Memory for training, bits: weights, buffers (as sigprop's), stored activations,
    /// feedback or auxiliary weights, gradient accumulators.
    pub memory_bits: u64,
    pub stored_activation_bits: u64,
    pub feedback_weight_bits: u64,
    pub cycles_per_train_sample: f64,
    pub pj_per_train_sample: f64,
}

/// The cost model of `algorithm` for `p` (the sigprop program of the network), given the
/// emulator's forward pass: `forward_cycles` and `forward_pj` per sample.
///
/// Per chip layer `l` with tiles of at most `r` rows and `c` columns (tiles work in parallel):
/// - backprop and feedback alignment, layer by layer from the last down (each layer waits for
///   the error from above): an error product over the crossbar (`mvm_row x c`, transposed or
///   through the feedback matrix), the error to the layer below (`r + 1` packets at
///   `send_packet`, one hop, `recv_packet` each), the neuron-wide derivative
///   (`ceil(c / neuron_lanes)`) and the update (`update_row x r`), each with `issue`;
/// - direct feedback alignment: the output error, then every hidden layer at once: `classes + 1`
///   packets, a feedback product over `classes` rows, the derivative and the update;
/// - local auxiliary classifiers: every hidden layer at once: the classifier's forward
///   (`mvm_row x c`), its error product back (`mvm_row x classes`), the derivative and the
///   updates of the layer and the classifier.
///
/// Stored activations: every layer's input (`rows x bits.activation`) and pre-activation
/// (`cols x bits.accumulator`) kept from the forward pass until the error arrives (backprop,
/// feedback alignment, direct feedback alignment). Feedback weights at `bits.weight`: a matrix
/// the size of each layer's weights above the first (feedback alignment), `classes x width` per
/// hidden layer (direct feedback alignment), and the classifiers, `width x classes` per hidden
/// layer (local). With mini-batches every weight (feedback and classifier weights that learn
/// included) has a gradient accumulator as wide as sigprop's. Energy: the forward pass's, plus
/// a synaptic operation per product term, a weight update per updated synapse, a router hop per
/// packet and hop, and an instruction per step.
pub fn baseline_cost(
    p: &Program,
    algorithm: Algorithm,
    forward_cycles: f64,
    forward_pj: f64,
) -> BaselineCost {
    let chip = &p.chip;
    let (c, e) = (&chip.costs, &chip.energy);
    let classes = p.network.classes as u64;
    let bits = &chip.bits;
    let lanes = |n: u64| n.div_ceil(c.neuron_lanes as u64);
    let issue = c.issue as u64;
    // Per layer: (rows incl. bias, cols, largest tile rows, largest tile cols).
    let layers: Vec<(u64, u64, u64, u64)> = p
        .layers
        .iter()
        .map(|l| {
            let tiles = p.cores.iter().filter(|k| k.layer == l.id);
            let (mr, mc) = tiles.fold((0, 0), |a, k| {
                (a.0.max(k.tile.rows as u64), a.1.max(k.tile.cols as u64))
            });
            (l.rows() as u64, l.width as u64, mr, mc)
        })
        .collect();
    let hidden = if p.network.readout.is_nearest() {
        layers.len()
    } else {
        layers.len() - 1
    };
    let message = |packets: u64| {
        issue
            + c.send_packet as u64 * packets
            + c.hop as u64
            + issue
            + c.recv_packet as u64 * packets
    };
    let update = |r: u64| issue + c.update_row as u64 * r;
    let (mut cycles, mut synops, mut updates, mut packets) = (0u64, 0u64, 0u64, 0u64);
    match algorithm {
        Algorithm::Backprop | Algorithm::FeedbackAlignment => {
            for (i, &(rows, cols, r, k)) in layers.iter().enumerate().rev() {
                cycles += lanes(k) + issue + update(r);
                updates += rows * cols;
                if i > 0 {
                    cycles += issue + c.mvm_row as u64 * k + message(r + 1);
                    synops += rows * cols;
                    packets += rows + 1;
                }
            }
        }
        Algorithm::DirectFeedbackAlignment => {
            let (rows, cols, r, k) = layers[layers.len() - 1];
            cycles += lanes(k) + issue + update(r);
            updates += rows * cols;
            let mut slowest = 0;
            for &(rows, cols, r, k) in &layers[..layers.len() - 1] {
                slowest = slowest.max(
                    message(classes + 1)
                        + issue
                        + c.mvm_row as u64 * classes
                        + lanes(k)
                        + issue
                        + update(r),
                );
                synops += classes * cols;
                updates += rows * cols;
                packets += classes + 1;
            }
            cycles += slowest;
        }
        Algorithm::LocalAux => {
            let mut slowest = 0;
            for &(rows, cols, r, k) in &layers[..hidden] {
                slowest = slowest.max(
                    issue
                        + c.mvm_row as u64 * k
                        + issue
                        + c.mvm_row as u64 * classes
                        + lanes(k)
                        + issue
                        + update(r)
                        + update(k),
                );
                synops += 2 * cols * classes;
                updates += rows * cols + cols * classes;
            }
            cycles += slowest;
        }
        Algorithm::Sigprop => {}
    }
    let act_store: u64 = match algorithm {
        Algorithm::LocalAux | Algorithm::Sigprop => 0,
        _ => layers
            .iter()
            .map(|&(rows, cols, _, _)| {
                rows * bits.activation as u64 + cols * bits.accumulator as u64
            })
            .sum(),
    };
    let feedback: u64 = match algorithm {
        Algorithm::FeedbackAlignment => layers[1..].iter().map(|&(r, c, _, _)| r * c).sum::<u64>(),
        // As the time model: every layer below the last gets the output error.
        Algorithm::DirectFeedbackAlignment => layers[..layers.len() - 1]
            .iter()
            .map(|&(_, c, _, _)| classes * c)
            .sum(),
        Algorithm::LocalAux => layers[..hidden]
            .iter()
            .map(|&(_, c, _, _)| (c + 1) * classes)
            .sum(),
        _ => 0,
    } * bits.weight as u64;
    // Weights, buffers and routing as sigprop's program has them, without its class targets
    // and learning registers, plus what the algorithm keeps.
    let mem = memory_use(p);
    // Every neuron keeps an error register, as sigprop's learning unit does.
    let errors: u64 = p
        .cores
        .iter()
        .map(|k| k.tile.cols as u64 * crate::isa::memory::ERROR_BITS)
        .sum();
    let base: u64 = mem
        .iter()
        .map(|m| m.weights + m.buffers + m.routing + m.instructions)
        .sum::<u64>()
        + errors;
    let batched = p.network.batch > 1;
    let gradient = crate::isa::memory::gradient_bits(p);
    let grads: u64 = if batched {
        p.cores
            .iter()
            .map(|k| k.tile.rows as u64 * k.tile.cols as u64 * gradient)
            .sum()
    } else {
        0
    };
    // Learned classifier weights need their own accumulators.
    let feedback_grads = if batched && algorithm == Algorithm::LocalAux {
        feedback / bits.weight as u64 * gradient
    } else {
        0
    };
    BaselineCost {
        memory_bits: base + act_store + feedback + grads + feedback_grads,
        stored_activation_bits: act_store,
        feedback_weight_bits: feedback,
        cycles_per_train_sample: forward_cycles + cycles as f64,
        pj_per_train_sample: forward_pj
            + synops as f64 * e.synaptic_op.value
            + updates as f64 * e.weight_update.value
            // One hop per backward message; about six instructions per layer's backward step.
            + packets as f64 * e.router_hop.value
            + (layers.len() as f64 * 6.0) * e.instruction.value,
    }
}

/// Sigprop's training memory, bits: everything its cores hold.
fn sigprop_memory(p: &Program) -> (u64, CoreMemory) {
    let mut total = CoreMemory::default();
    for m in memory_use(p) {
        total.add(&m);
    }
    (total.total(), total)
}

fn row(
    claim: &str,
    metric: &str,
    unit: &str,
    sigprop: f64,
    baselines: Vec<(String, f64)>,
    lower_is_better: bool,
) -> ClaimRow {
    let best = baselines
        .iter()
        .map(|b| b.1)
        .fold(None, |a: Option<f64>, v| {
            Some(a.map_or(v, |a| if lower_is_better { a.min(v) } else { a.max(v) }))
        });
    let ratio = best.map(|b| {
        if sigprop == 0.0 {
            f64::INFINITY
        } else {
            b / sigprop
        }
    });
    let holds = match best {
        Some(b) if lower_is_better => sigprop < b,
        Some(b) => sigprop > b,
        None => true,
    };
    ClaimRow {
        claim: claim.into(),
        metric: metric.into(),
        unit: unit.into(),
        sigprop,
        baselines,
        ratio: ratio.filter(|r| r.is_finite()),
        holds,
    }
}

/// Measures every claim.
pub fn claims(o: &ClaimsOptions, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Claims> {
    let mut quiet = |_: u64, _: u64, _: &str| {};
    let name = o.net.name.clone();
    // Timing and memory on a few hundred samples; accuracy on the whole set.
    let full = o.data.clone();
    let mut data = o.data.clone();
    let (samples, epochs) = if o.quick {
        (400, 3)
    } else {
        (data.train.len(), 10)
    };
    data.train.truncate(samples);
    data.test.truncate(200);
    let program = compiler::compile(o.net.clone(), &name, &o.chip)?.program;
    let mut rows = Vec::new();

    // 1. Forward path only.
    progress("forward path");
    let counts = |a: Algorithm| -> (usize, usize, usize) {
        match crate::isa::verify(&compiler::baseline::lower(&program, a)) {
            Ok(()) => (0, 0, 0),
            Err(e) => e.forward_only_counts(),
        }
    };
    let sig = counts(Algorithm::Sigprop);
    let base: Vec<(Algorithm, (usize, usize, usize))> = Algorithm::BASELINES
        .iter()
        .map(|&a| (a, counts(a)))
        .collect();
    for (k, metric) in [
        "backward routes",
        "transposed crossbar reads",
        "cross-layer state reads",
    ]
    .iter()
    .enumerate()
    {
        let pick = |c: (usize, usize, usize)| [c.0, c.1, c.2][k] as f64;
        let mut r = row(
            "1 forward path only",
            metric,
            "count",
            pick(sig),
            base.iter()
                .map(|(a, c)| (a.to_string(), pick(*c)))
                .collect(),
            true,
        );
        r.holds = pick(sig) == 0.0;
        rows.push(r);
    }

    // The forward pass all algorithms share, and sigprop's own training, from the emulator.
    progress("sigprop on the chip, sequential and pipelined");
    let mut train = |p: Program, schedule: Schedule| {
        let mut opts = TrainOptions::new(1, 1);
        opts.schedule = schedule;
        emulator::train(p, &data, &opts, &mut quiet)
    };
    let (_, seq) = train(program.clone(), Schedule::Sequential)?;
    let (_, pipe) = train(program.clone(), Schedule::Pipelined)?;
    let fwd_cycles = seq.timing.cycles_per_inference;
    let fwd_pj = seq.energy.pj_per_inference;
    let cost = |p: &Program, a: Algorithm| baseline_cost(p, a, fwd_cycles, fwd_pj);

    // 2. Memory, online and with mini-batches of 8 (on a chip with room for accumulators).
    progress("memory");
    let (mem, _) = sigprop_memory(&program);
    rows.push(row(
        "2 memory",
        "training memory, online",
        "bits",
        mem as f64,
        Algorithm::BASELINES
            .iter()
            .map(|&a| (a.to_string(), cost(&program, a).memory_bits as f64))
            .collect(),
        true,
    ));
    let mut batched = o.net.clone();
    batched.learning.batch = 8;
    let mut big = o.chip.clone();
    big.memory.data_sram_bits = big.memory.data_sram_bits.max(1 << 22);
    let bprog = compiler::compile(batched, &name, &big)?.program;
    let (bmem, _) = sigprop_memory(&bprog);
    rows.push(row(
        "2 memory",
        "training memory, mini-batches of 8",
        "bits",
        bmem as f64,
        Algorithm::BASELINES
            .iter()
            .map(|&a| (a.to_string(), cost(&bprog, a).memory_bits as f64))
            .collect(),
        true,
    ));

    // 3. Time and energy per training sample: pipelined sigprop against baselines that wait
    // for their backward pass.
    rows.push(row(
        "3 time",
        "cycles per training sample (sigprop pipelined)",
        "cycles",
        pipe.timing.cycles_per_train_sample,
        Algorithm::BASELINES
            .iter()
            .map(|&a| (a.to_string(), cost(&program, a).cycles_per_train_sample))
            .collect(),
        true,
    ));
    // The same with class targets refreshed every 100 samples instead of every sample.
    let mut relaxed = o.net.clone();
    relaxed.target_refresh = 100;
    let rprog = compiler::compile(relaxed, &name, &o.chip)?.program;
    let (_, rpipe) = train(rprog, Schedule::Pipelined)?;
    rows.push(row(
        "3 time",
        "cycles per training sample, targets every 100 samples (sigprop pipelined)",
        "cycles",
        rpipe.timing.cycles_per_train_sample,
        Algorithm::BASELINES
            .iter()
            .map(|&a| (a.to_string(), cost(&program, a).cycles_per_train_sample))
            .collect(),
        true,
    ));
    rows.push(row(
        "3 time",
        "energy per training sample",
        "pJ",
        seq.energy.pj_per_train_sample,
        Algorithm::BASELINES
            .iter()
            .map(|&a| (a.to_string(), cost(&program, a).pj_per_train_sample))
            .collect(),
        true,
    ));

    // 4. Layer-parallel training: throughput against depth, pipelined over sequential.
    progress("layer-parallel training");
    let mut short = data.clone();
    short.train.truncate(if o.quick { 100 } else { 400 });
    short.test.truncate(20);
    for depth in 1..=4usize {
        let mut net = o.net.clone();
        let width = net.layers.first().map_or(64, |l| l.width);
        net.layers = (0..depth).map(|_| net.layers[0].clone()).collect();
        net.layers.iter_mut().for_each(|l| l.width = width.min(128));
        let p = compiler::compile(net, &name, &o.chip)?.program;
        let mut run = |s: Schedule| -> anyhow::Result<f64> {
            let mut opts = TrainOptions::new(1, 1);
            opts.schedule = s;
            Ok(emulator::train(p.clone(), &short, &opts, &mut quiet)?
                .1
                .timing
                .samples_per_cycle)
        };
        let (s, q) = (run(Schedule::Sequential)?, run(Schedule::Pipelined)?);
        let mut r = row(
            "4 layer-parallel",
            &format!("pipelined speed-up, {depth} hidden layers"),
            "x",
            q / s,
            Vec::new(),
            false,
        );
        r.holds = q / s > 1.0;
        rows.push(r);
    }

    // 5. A useful learning signal.
    progress("accuracy");
    let (_, chip_run) = emulator::train(
        program.clone(),
        &full,
        &TrainOptions::new(epochs, 1),
        &mut quiet,
    )?;
    let valid = compiler::validate(o.net.clone(), &name)?;
    let opts = F32Options { epochs, seed: 1 };
    let f32_sig = reference::train_f32(
        &valid,
        &full,
        reference::Algorithm::Sigprop,
        &opts,
        &mut quiet,
    )?;
    let f32_bp = reference::train_f32(
        &valid,
        &full,
        reference::Algorithm::Backprop,
        &opts,
        &mut quiet,
    )?;
    let mut r = row(
        "5 learning signal",
        &format!("test accuracy, chip sigprop ({epochs} epochs)"),
        "fraction",
        chip_run.accuracy.test,
        vec![
            ("f32 sigprop".into(), f32_sig.accuracy.test),
            ("f32 backprop".into(), f32_bp.accuracy.test),
        ],
        false,
    );
    r.holds = chip_run.accuracy.test >= f32_bp.accuracy.test - 0.02;
    rows.push(r);

    // 6. Spiking and continuous-time networks learn on the chip.
    for net in &o.temporal {
        progress(&net.name);
        let p = compiler::compile(net.clone(), &net.name, &o.chip)?.program;
        let (_, rep) = emulator::train(p, &full, &TrainOptions::new(epochs.min(3), 1), &mut quiet)?;
        let mut r = row(
            "6 time-based neurons",
            &format!("test accuracy, {} on chip", net.name),
            "fraction",
            rep.accuracy.test,
            Vec::new(),
            false,
        );
        // Learns: well above chance.
        r.holds = rep.accuracy.test > 2.0 / net.classes as f64;
        rows.push(r);
    }
    Ok(Claims {
        chip: o.chip.name.clone(),
        network: name,
        data: data.name.clone(),
        training_samples: samples,
        epochs,
        rows,
    })
}

impl Claims {
    /// The table as text.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "claims of sigprop on chip `{}`, network `{}`, {} ({} training samples, {} epochs)\n",
            self.chip, self.network, self.data, self.training_samples, self.epochs
        );
        let _ = writeln!(
            s,
            "{:<22} {:<48} {:>12}  {:<72} {:>8}  holds",
            "claim", "metric", "sigprop", "baselines", "ratio"
        );
        for r in &self.rows {
            let base = r
                .baselines
                .iter()
                .map(|(n, v)| format!("{}: {}", short(n), fmt(*v)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                s,
                "{:<22} {:<48} {:>12}  {:<72} {:>8}  {}",
                r.claim,
                format!("{} ({})", r.metric, r.unit),
                fmt(r.sigprop),
                base,
                r.ratio.map_or("-".into(), |x| format!("{x:.2}")),
                if r.holds { "yes" } else { "NO" }
            );
        }
        s
    }
}

fn short(name: &str) -> &str {
    match name {
        "backprop" => "BP",
        "feedback alignment" => "FA",
        "direct feedback alignment" => "DFA",
        "local auxiliary classifiers" => "local",
        other => other,
    }
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}
