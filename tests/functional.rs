//! The emulator against an independent functional model (tests/common/functional_model.rs):
//! whole layers, no tiles, no cycles, written from the instruction semantics. Random small
//! networks are compiled for random (often tiny) crossbars, so layers are split by rows and by
//! columns, and the emulator must agree with the model bit for bit: predictions, output vectors
//! and every weight after every training sample.
//!

mod common;

use common::functional_model::{self as fm, Matrix, Model};
use proptest::prelude::*;
use proptest::test_runner::Config;
use sigchip::compiler::{compile, LayerDesc, LearningDesc, LossKind, NetworkDesc};
use sigchip::emulator::decoupled::TimingThreads;
use sigchip::emulator::engine::{EngineKind, Trace};
use sigchip::emulator::{Machine, Phase, RunResult};
use sigchip::isa::chip::{BitWidths, Crossbar, Grid};
use sigchip::isa::rng::mix64;
use sigchip::isa::Pre;
use sigchip::isa::{
    Activation, ChipDescription, Program, ProjectionMode, QFormat, Readout, Rounding, TargetMode,
};

// ---------------------------------------------------------------------------------------------
// Networks, chips and programs.

/// A random small network.
#[derive(Clone, Debug)]
struct Net {
    input: u32,
    /// (width, activation, per-layer lr_shift)
    hidden: Vec<(u32, Activation, Option<u8>)>,
    classes: u32,
    readout: Readout,
    /// The hidden layers' local loss.
    loss: LossKind,
    /// Layer 1's target projection (`learned` only with learned targets).
    projection: ProjectionMode,
    /// Learned targets (`label_direct` and `l2`, online only) or constant ones.
    targets: TargetMode,
    rounding: Rounding,
    lr_shift: u8,
    readout_lr_shift: Option<u8>,
    /// Learning-rate annealing period, in samples.
    anneal_every: Option<u64>,
    /// Samples per weight update.
    batch: u32,
    target_refresh: u32,
    bias: bool,
    seed: u64,
    /// The chip's datapath widths.
    bits: BitWidths,
    /// When set, the compiled initial weights and projection are replaced by values drawn over
    /// their formats' whole range from this seed (by layer-global position, so every tiling
    /// gets the same matrix): activations and weight updates then saturate often.
    full_range: Option<u64>,
}

impl Net {
    fn desc(&self) -> NetworkDesc {
        NetworkDesc {
            name: "functional".into(),
            input: self.input,
            classes: self.classes,
            layers: self
                .hidden
                .iter()
                .map(|&(width, activation, lr_shift)| LayerDesc {
                    width,
                    activation,
                    lr_shift,
                })
                .collect(),
            projection: self.projection,
            loss: self.loss,
            targets: self.targets,
            target_refresh: self.target_refresh,
            readout: self.readout,
            learning: LearningDesc {
                lr_shift: self.lr_shift,
                readout_lr_shift: self.readout_lr_shift,
                rounding: self.rounding,
                anneal_every: self.anneal_every,
                batch: self.batch,
            },
            bias: self.bias,
            seed: self.seed,
            neuron: Default::default(),
        }
    }

    /// (crossbar rows incl. bias, columns) of every chip layer.
    fn shapes(&self) -> Vec<(u32, u32)> {
        let mut widths: Vec<u32> = self.hidden.iter().map(|h| h.0).collect();
        if !self.readout.is_nearest() {
            widths.push(self.classes);
        }
        let mut prev = self.input;
        widths
            .into_iter()
            .map(|w| {
                let s = (prev + self.bias as u32, w);
                prev = w;
                s
            })
            .collect()
    }
}

/// A chip with a `rows x cols` crossbar, a grid just large enough for the network's tiles and
/// memories large enough that nothing else limits the compile.
fn chip_for(net: &Net, rows: u32, cols: u32) -> ChipDescription {
    let cores: u32 = net
        .shapes()
        .iter()
        .map(|&(r, c)| r.div_ceil(rows) * c.div_ceil(cols))
        .sum();
    let height = if cores <= 16 * 256 { 16u32 } else { 256 };
    let mut chip = ChipDescription {
        grid: Grid {
            width: cores.div_ceil(height).max(1) as u16,
            height: height as u16,
        },
        crossbar: Crossbar { rows, cols },
        bits: net.bits,
        ..Default::default()
    };
    chip.memory.instruction_words = 1 << 16;
    chip.memory.data_sram_bits = 1 << 24;
    chip.memory.route_table_entries = 1 << 16;
    chip
}

fn compile_for(net: &Net, rows: u32, cols: u32) -> Program {
    let chip = chip_for(net, rows, cols);
    match compile(net.desc(), "functional", &chip) {
        Ok(c) => c.program,
        Err(e) => panic!("compiling {net:?} for a {rows}x{cols} crossbar: {e}"),
    }
}

/// The program a test runs: the compiled one, with full-range weights when the net asks.
fn program_for(net: &Net, rows: u32, cols: u32) -> Program {
    let mut p = compile_for(net, rows, cols);
    if let Some(seed) = net.full_range {
        let draw = |fmt: QFormat, what: u64, layer: u64, r: u32, c: u32| -> i32 {
            let h = mix64(mix64(seed ^ what << 56 ^ layer << 48) ^ (r as u64) << 24 ^ c as u64);
            let span = (fmt.max_raw() - fmt.min_raw() + 1) as u64;
            (fmt.min_raw() + (h % span) as i64) as i32
        };
        for core in &mut p.cores {
            let t = core.tile;
            let l = core.layer.0 as u64;
            let w = &mut core.weights;
            for r in 0..t.rows {
                for c in 0..t.cols {
                    w.data[(r * t.cols + c) as usize] =
                        draw(w.format, 0, l, t.row_start + r, t.col_start + c);
                }
            }
            if let Some(s) = &mut core.projection {
                for r in 0..s.rows {
                    for c in 0..s.cols {
                        s.data[(r * s.cols + c) as usize] =
                            draw(s.format, 1, l, r, t.col_start + c);
                    }
                }
            }
        }
    }
    p
}

/// A crossbar big enough to hold every layer of every generated network whole.
const WHOLE: u32 = 64;

// ---------------------------------------------------------------------------------------------
// The emulator, driven the way `sigchip_emulator::train` drives it.

struct Emu {
    m: Machine,
    steps: u64,
    /// The trace of every run, when the machine traces.
    traces: Vec<Trace>,
}

impl Emu {
    fn new(program: Program) -> Emu {
        Emu {
            m: Machine::new(program).expect("the compiler's program verifies"),
            steps: 0,
            traces: Vec::new(),
        }
    }

    /// Keeps the last run's trace.
    fn record(&mut self) {
        if let Some(t) = self.m.last_trace.take() {
            self.traces.push(t);
        }
    }

    fn begin_batch(&mut self, labels: &[usize]) {
        self.m.begin_batch(labels).expect("batch phase runs");
        self.record();
    }

    fn refresh_targets(&mut self) {
        if self.m.program().layers.iter().any(|l| l.keeps_targets) {
            self.m
                .run(&[Phase::Targets], 0, None, None)
                .expect("targets phase runs");
            self.record();
        }
    }

    /// One training sample, as `train::train` runs it.
    fn train_sample(&mut self, x: &[i32], label: usize) -> RunResult {
        if self
            .steps
            .is_multiple_of(self.m.program().network.target_refresh as u64)
        {
            self.refresh_targets();
        }
        let r = self
            .m
            .run(&[Phase::Forward, Phase::Learn], 0, Some(x), Some(label))
            .expect("training sample runs");
        self.record();
        self.m.next_update_step();
        self.steps += 1;
        if self.m.program().network.batch > 1
            && self
                .steps
                .is_multiple_of(self.m.program().network.batch as u64)
        {
            self.apply();
        }
        r
    }

    /// The end of a mini-batch.
    fn apply(&mut self) {
        self.m
            .run(&[Phase::Apply], 0, None, None)
            .expect("apply phase runs");
        self.record();
    }

    fn infer(&mut self, x: &[i32]) -> RunResult {
        let r = self
            .m
            .run(&[Phase::Forward], 0, Some(x), None)
            .expect("inference runs");
        self.record();
        r
    }

    fn weights(&self) -> Vec<Matrix> {
        fm::assemble_weights(&self.m.trained_program())
    }
}

/// The first differing weight, as a readable message.
fn weight_diff(a: &[Matrix], b: &[Matrix], what: (&str, &str)) -> Option<String> {
    for (l, (ma, mb)) in a.iter().zip(b).enumerate() {
        for (r, (ra, rb)) in ma.iter().zip(mb).enumerate() {
            for (c, (va, vb)) in ra.iter().zip(rb).enumerate() {
                if va != vb {
                    return Some(format!(
                        "layer{} W[{r}][{c}]: {} {va} != {} {vb}",
                        l + 1,
                        what.0,
                        what.1
                    ));
                }
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Relu),
        (1u8..=4).prop_map(|shift| Activation::LeakyRelu { shift }),
        Just(Activation::Identity),
    ]
}

fn net() -> impl Strategy<Value = Net> {
    (
        3u32..=40,
        prop::collection::vec(
            (
                2u32..=40,
                activation(),
                prop::option::weighted(0.25, 2u8..=8),
            ),
            1..=3,
        ),
        2u32..=6,
        prop_oneof![
            Just(Readout::OutputLayer),
            Just(Readout::NearestTarget),
            Just(Readout::NearestTargetL2)
        ],
        (
            prop_oneof![Just(Rounding::Nearest), Just(Rounding::Stochastic)],
            prop_oneof![
                2 => Just(LossKind::LabelDirect),
                1 => Just(LossKind::L2),
                1 => Just(LossKind::Hebbian { pre: Pre::Target }),
                1 => Just(LossKind::Hebbian { pre: Pre::Data }),
                1 => Just(LossKind::TargetMax),
                1 => Just(LossKind::TargetMaxAll),
                1 => (1u16..=4).prop_map(|k| LossKind::TargetTopK { k }),
            ],
            prop_oneof![
                Just(ProjectionMode::FixedRandom),
                Just(ProjectionMode::ToInput),
                Just(ProjectionMode::Learned),
            ],
            prop::bool::weighted(0.3),
        ),
        0u8..=8,
        (
            prop::option::weighted(0.25, 0u8..=8),
            prop::option::weighted(0.3, 1u64..=4),
            prop_oneof![3 => Just(1u32), 1 => Just(2u32), 1 => Just(4u32)],
        ),
        1u32..=3,
        any::<bool>(),
        any::<u64>(),
        bit_widths(),
        prop::option::weighted(0.35, any::<u64>()),
    )
        .prop_map(
            |(
                input,
                hidden,
                classes,
                readout,
                (rounding, loss, projection, learned),
                lr_shift,
                (readout_lr_shift, anneal_every, batch),
                target_refresh,
                bias,
                seed,
                bits,
                full_range,
            )| {
                // Learned targets: `label_direct` and `l2`, online; a learned projection needs them.
                let learned =
                    learned && matches!(loss, LossKind::LabelDirect | LossKind::L2) && batch == 1;
                let projection = match projection {
                    ProjectionMode::Learned if !learned => ProjectionMode::FixedRandom,
                    p => p,
                };
                Net {
                    input,
                    hidden,
                    classes,
                    readout,
                    targets: if learned {
                        TargetMode::Learned
                    } else {
                        TargetMode::Constant
                    },
                    // The batch-contrastive losses need a batch of at least 2, and top-k at most it.
                    loss: match loss {
                        LossKind::TargetTopK { k } => LossKind::TargetTopK {
                            k: k.min(batch.max(2) as u16),
                        },
                        other => other,
                    },
                    projection,
                    rounding,
                    lr_shift,
                    readout_lr_shift,
                    anneal_every,
                    batch: if loss.local_loss().is_contrastive() {
                        batch.max(2)
                    } else {
                        batch
                    },
                    target_refresh,
                    bias,
                    seed,
                    bits,
                    full_range,
                }
            },
        )
}

/// Datapath widths: the default chip half of the time, else narrower or wider weights and
/// activations and narrower probabilities. The accumulator is always wide enough that no
/// partial sum of a generated network can saturate (see `check_against_model`).
fn bit_widths() -> impl Strategy<Value = BitWidths> {
    prop_oneof![
        Just(BitWidths::default()),
        (4u8..=12, 4u8..=12, 8u8..=16).prop_map(|(weight, activation, probability)| BitWidths {
            weight,
            activation,
            accumulator: (weight + activation + 6).min(32),
            probability,
            ..BitWidths::default()
        }),
    ]
}

/// One encoded input value in the input port's format `s{a}.{a-1}`: drawn in Q0.15 and shifted
/// down to `a` bits. Many zeros, mostly positive, some full scale.
fn input_value(activation_bits: u8) -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        4 => Just(0),
        5 => 1i32..=32767,
        1 => -32768i32..=-1,
        1 => Just(32767),
        1 => Just(-32768),
    ]
    .prop_map(move |v| v >> (16 - activation_bits))
}

/// A crossbar side that often forces tiling.
fn side(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![4u32..=12, 4u32..=max]
}

#[derive(Clone, Debug)]
struct Case {
    net: Net,
    rows: u32,
    cols: u32,
    /// Training samples: (encoded input, label).
    train: Vec<(Vec<i32>, usize)>,
    /// Inference inputs after training.
    probes: Vec<Vec<i32>>,
}

fn case(
    rows: impl Strategy<Value = u32>,
    cols: impl Strategy<Value = u32>,
) -> impl Strategy<Value = Case> {
    (net(), rows, cols, 3usize..=8, 1usize..=4).prop_flat_map(|(net, rows, cols, n, probes)| {
        let x = prop::collection::vec(input_value(net.bits.activation), net.input as usize);
        let label = 0..net.classes as usize;
        (
            Just(net),
            Just(rows),
            Just(cols),
            prop::collection::vec((x.clone(), label), n),
            prop::collection::vec(x, probes),
        )
            .prop_map(|(net, rows, cols, train, probes)| Case {
                net,
                rows,
                cols,
                train,
                probes,
            })
    })
}

/// `cases` cases, or `FUNCTIONAL_CASES` of them when that is set (for a longer soak run).
fn config(cases: u32) -> Config {
    let cases = std::env::var("FUNCTIONAL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        // No regression files: this test owns only its source files.
        failure_persistence: None,
        ..Config::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// The properties.

/// Trains the emulator and the model side by side and compares everything observable.
fn check_against_model(program: Program, c: &Case) -> Result<(), TestCaseError> {
    let mut model = Model::from_program(&program);
    let mut emu = Emu::new(program);
    for (i, (x, label)) in c.train.iter().enumerate() {
        if let Some(labels) = batch_starting_at(c, i) {
            model.begin_batch(&labels);
            emu.begin_batch(&labels);
        }
        let pass = model.train_sample(x, *label);
        let res = emu.train_sample(x, *label);
        prop_assert_eq!(
            &res.output,
            &pass.output,
            "sample {}: output port (emulator left, model right)",
            i
        );
        prop_assert_eq!(res.prediction, Some(pass.prediction), "sample {}", i);
        if let Some(d) = weight_diff(
            &emu.weights(),
            &model_weights(&model),
            ("emulator", "model"),
        ) {
            return Err(TestCaseError::fail(format!(
                "after training sample {i} (label {label}): {d}"
            )));
        }
    }
    model.refresh_targets();
    emu.refresh_targets();
    for (i, x) in c.probes.iter().enumerate() {
        let pass = model.forward(x);
        let res = emu.infer(x);
        prop_assert_eq!(&res.output, &pass.output, "probe {}", i);
        prop_assert_eq!(res.prediction, Some(pass.prediction), "probe {}", i);
    }
    // The model saturates each whole-layer sum once; the chip saturates partial sums too. They
    // agree as long as no partial sum saturates, which `bit_widths` guarantees (41 rows x
    // 2^(w-1) x 2^(a-1) < 2^(w+a+4)).
    prop_assert_eq!(emu.m.counters.saturations.accumulator, 0);
    Ok(())
}

/// The labels of the mini-batch that starts at training sample `i`, if one does.
fn batch_starting_at(c: &Case, i: usize) -> Option<Vec<usize>> {
    let batch = c.net.batch as usize;
    (batch > 1 && i.is_multiple_of(batch)).then(|| {
        let end = (i + batch).min(c.train.len());
        c.train[i..end].iter().map(|s| s.1).collect()
    })
}

fn model_weights(m: &Model) -> Vec<Matrix> {
    m.layers.iter().map(|l| l.w.clone()).collect()
}

proptest! {
    #![proptest_config(config(32))]

    /// Bit-exact agreement of the emulator with the functional model on random networks,
    /// crossbar sizes (tiling by rows and columns), inputs and labels.
    #[test]
    fn emulator_equals_functional_model(c in case(side(48), side(48))) {
        let program = program_for(&c.net, c.rows, c.cols);
        check_against_model(program, &c)?;
    }

    /// The same network and seed, tiled over small crossbars and held whole on a big one,
    /// trains to identical weights and gives identical outputs (cycle counts may differ).
    #[test]
    fn tiled_layer_equals_whole_layer(c in case(2u32..=10, 2u32..=10)) {
        let tiled = program_for(&c.net, c.rows, c.cols);
        let whole = program_for(&c.net, WHOLE, WHOLE);
        prop_assume!(tiled.layers.iter().any(|l| l.row_tiles * l.col_tiles > 1));
        prop_assert!(whole.layers.iter().all(|l| l.row_tiles == 1 && l.col_tiles == 1));
        prop_assert_eq!(fm::assemble_weights(&tiled), fm::assemble_weights(&whole));
        let (mut a, mut b) = (Emu::new(tiled), Emu::new(whole));
        for (i, (x, label)) in c.train.iter().enumerate() {
            if let Some(labels) = batch_starting_at(&c, i) {
                a.begin_batch(&labels);
                b.begin_batch(&labels);
            }
            let (ra, rb) = (a.train_sample(x, *label), b.train_sample(x, *label));
            prop_assert_eq!(&ra.output, &rb.output, "sample {} (tiled left, whole right)", i);
            prop_assert_eq!(ra.prediction, rb.prediction, "sample {}", i);
        }
        if let Some(d) = weight_diff(&a.weights(), &b.weights(), ("tiled", "whole")) {
            return Err(TestCaseError::fail(format!("after training: {d}")));
        }
        a.refresh_targets();
        b.refresh_targets();
        for (i, x) in c.probes.iter().enumerate() {
            let (ra, rb) = (a.infer(x), b.infer(x));
            prop_assert_eq!(&ra.output, &rb.output, "probe {}", i);
            prop_assert_eq!(ra.prediction, rb.prediction, "probe {}", i);
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Every (row, col) of every layer is held by exactly one core, with the weight the
    /// whole-layer compile of the same seed has there; layer 1's reducers hold the projection.
    #[test]
    fn tiling_places_every_weight_exactly_once(net in net(), rows in 2u32..=48, cols in 2u32..=48) {
        let tiled = compile_for(&net, rows, cols);
        let whole = compile_for(&net, WHOLE, WHOLE);
        for (l, m) in fm::coverage(&tiled).iter().enumerate() {
            for (r, row) in m.iter().enumerate() {
                for (c, &n) in row.iter().enumerate() {
                    prop_assert_eq!(n, 1, "layer{} ({}, {}) is held {} times", l + 1, r, c, n);
                }
            }
        }
        let w = fm::assemble_weights(&whole);
        for core in &tiled.cores {
            let t = &core.tile;
            let layer = tiled.layer(core.layer);
            prop_assert!(t.rows <= rows && t.cols <= cols, "{} exceeds the crossbar", core.id);
            prop_assert_eq!(core.weights.format, layer.weight_format);
            for r in 0..t.rows {
                for c in 0..t.cols {
                    prop_assert_eq!(
                        core.weights.get(r, c),
                        w[core.layer.index() - 1][(t.row_start + r) as usize][(t.col_start + c) as usize],
                        "{} tile ({}, {})", core.id, r, c
                    );
                }
            }
        }
        prop_assert_eq!(fm::assemble_projection(&tiled), fm::assemble_projection(&whole));
        prop_assert_eq!(&tiled.layers, &{
            // Same layers but for the tile counts.
            let mut l = whole.layers.clone();
            for (a, b) in l.iter_mut().zip(&tiled.layers) {
                a.row_tiles = b.row_tiles;
                a.col_tiles = b.col_tiles;
            }
            l
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The model's own softmax, checked from first principles (not against the emulator).

#[test]
fn model_softmax_of_equal_scores_is_uniform_minus_the_label() {
    let prob = QFormat::new(16, 15);
    assert_eq!(
        fm::softmax_err(&[5, 5, 5, 5], 0, 2, prob),
        vec![8192, 8192, 8192 - 32768, 8192]
    );
    // Frac bits at and above the five table-index bits take the other branch of the index.
    assert_eq!(
        fm::softmax_err(&[-7, -7], 10, 0, prob),
        vec![16384 - 32768, 16384]
    );
}

#[test]
fn model_softmax_tracks_the_float_softmax() {
    let prob = QFormat::new(16, 15);
    for frac in [4, 9, 10] {
        let scale = (1i64 << frac) as f64;
        let scores = [0i64, 300, -200, 1000, 512].map(|s| s * (1 << frac) / 512);
        let err = fm::softmax_err(&scores, frac, 1, prob);
        let z: Vec<f64> = scores.iter().map(|&s| (s as f64 / scale).exp()).collect();
        let total: f64 = z.iter().sum();
        for k in 0..scores.len() {
            let p = prob.to_f64(err[k]) + (k == 1) as u8 as f64;
            assert!(
                (p - z[k] / total).abs() < 0.03,
                "frac {frac} class {k}: {p} vs {}",
                z[k] / total
            );
        }
    }
}

/// Random cycle costs and network parameters, so that links contend, buffers fill and
/// instructions take zero cycles.
fn timing_params() -> impl Strategy<Value = (sigchip::isa::chip::Costs, sigchip::isa::chip::Router)>
{
    (
        (0u32..=2, 1u32..=3, 1u32..=3, 1u32..=16, 0u32..=4, 0u32..=2),
        (1u32..=2, 0u32..=2, 1u32..=3, 0u32..=2),
        (1u32..=2, 1u32..=4),
    )
        .prop_map(
            |(
                (issue, mvm_row, update_row, neuron_lanes, softmax_class, select_entry),
                (send_packet, recv_packet, hop, sync),
                (link_bandwidth, buffer_depth),
            )| {
                (
                    sigchip::isa::chip::Costs {
                        issue,
                        mvm_row,
                        update_row,
                        neuron_lanes,
                        softmax_class,
                        select_entry,
                        send_packet,
                        recv_packet,
                        hop,
                        sync,
                    },
                    sigchip::isa::chip::Router {
                        link_bandwidth,
                        buffer_depth,
                    },
                )
            },
        )
}

proptest! {
    #![proptest_config(config(24))]

    /// The tick engine (every cycle, every core and router) and the event engine agree on the
    /// issue cycle and charged activity of every instruction, the arrival of every message, the
    /// outputs, every counter and every weight, on random networks, tilings, cycle costs and
    /// network parameters.
    #[test]
    fn tick_and_event_engines_agree(c in case(side(24), side(24)), (costs, router) in timing_params()) {
        let mut program = program_for(&c.net, c.rows, c.cols);
        program.chip.costs = costs;
        program.chip.router = router;
        let (mut a, mut b) = (Emu::new(program.clone()), Emu::new(program));
        a.m.engine = EngineKind::Tick;
        b.m.engine = EngineKind::Event;
        a.m.tracing = true;
        b.m.tracing = true;
        let mut results = Vec::new();
        for (i, (x, label)) in c.train.iter().enumerate() {
            if let Some(labels) = batch_starting_at(&c, i) {
                a.begin_batch(&labels);
                b.begin_batch(&labels);
            }
            results.push((a.train_sample(x, *label), b.train_sample(x, *label)));
        }
        a.refresh_targets();
        b.refresh_targets();
        for x in &c.probes {
            results.push((a.infer(x), b.infer(x)));
        }
        for (i, (ra, rb)) in results.iter().enumerate() {
            prop_assert_eq!(
                (ra.end, ra.output_at, &ra.output),
                (rb.end, rb.output_at, &rb.output),
                "run {} (tick left, event right)", i
            );
        }
        prop_assert_eq!(a.traces.len(), b.traces.len());
        for (i, (ta, tb)) in a.traces.iter().zip(&b.traces).enumerate() {
            let first = ta.instrs.iter().zip(&tb.instrs).position(|(x, y)| x != y);
            prop_assert!(
                first.is_none() && ta.instrs.len() == tb.instrs.len(),
                "run {}: instruction {:?} differs: tick {:?}, event {:?}",
                i, first, first.map(|f| ta.instrs[f]), first.map(|f| tb.instrs[f])
            );
            prop_assert_eq!(&ta.messages, &tb.messages, "run {}: messages", i);
        }
        prop_assert_eq!(&a.m.counters, &b.m.counters);
        prop_assert_eq!(a.m.link_stats(), b.m.link_stats());
        if let Some(d) = weight_diff(&a.weights(), &b.weights(), ("tick", "event")) {
            return Err(TestCaseError::fail(d));
        }
        prop_assert!(a.traces.iter().map(|t| t.instrs.len()).sum::<usize>() > 0);
    }
}

proptest! {
    #![proptest_config(config(24))]

    /// Pipelined training (every core runs its streams sample after sample, no barrier) gives
    /// the same predictions and weights as the sequential schedule, on both engines, and never
    /// takes more cycles.
    #[test]
    fn pipelined_training_equals_sequential(c in case(side(24), side(24)), tick in any::<bool>()) {
        let program = program_for(&c.net, c.rows, c.cols);
        let engine = if tick { EngineKind::Tick } else { EngineKind::Event };
        // Sequential, as `train::train` runs it: barrier-separated samples.
        let mut seq = Emu::new(program.clone());
        seq.m.engine = engine;
        let sync = program.chip.costs.sync as u64;
        let mut seq_cycles = 0;
        let mut seq_predictions = Vec::new();
        for (i, (x, label)) in c.train.iter().enumerate() {
            if let Some(labels) = batch_starting_at(&c, i) {
                seq_cycles += seq.m.begin_batch(&labels).unwrap() + sync;
            }
            if (i as u64).is_multiple_of(program.network.target_refresh as u64)
                && program.layers.iter().any(|l| l.keeps_targets)
            {
                seq_cycles += seq.m.run(&[Phase::Targets], 0, None, None).unwrap().end + sync;
            }
            let r = seq.m.run(&[Phase::Forward, Phase::Learn], 0, Some(x), Some(*label)).unwrap();
            seq.m.next_update_step();
            seq_cycles += r.end + sync;
            seq_predictions.push(r.prediction);
            if program.network.batch > 1
                && ((i + 1) % program.network.batch as usize == 0 || i + 1 == c.train.len())
            {
                seq_cycles += seq.m.run(&[Phase::Apply], 0, None, None).unwrap().end + sync;
            }
        }
        let mut pipe = Machine::new(program).unwrap();
        pipe.engine = engine;
        let run = sigchip::emulator::train::train_pipelined(
            &mut pipe,
            c.train.len(),
            &mut |j, x| x.clone_from(&c.train[j].0),
            &|j| c.train[j].1,
        )
        .unwrap();
        prop_assert_eq!(&run.predictions, &seq_predictions);
        let pw = fm::assemble_weights(&pipe.trained_program());
        if let Some(d) = weight_diff(&pw, &seq.weights(), ("pipelined", "sequential")) {
            return Err(TestCaseError::fail(d));
        }
        prop_assert!(run.cycles <= seq_cycles, "pipelined {} > sequential {}", run.cycles, seq_cycles);
        prop_assert_eq!(pipe.update_step(), seq.m.update_step());
    }
}

/// A run's output vector and prediction.
type RunOut = (Vec<i64>, Option<usize>);

/// Drives `m` the way `train::train` does (batches, refreshes, samples, applies), then
/// refreshes and infers the probes: every run's output and prediction, and the runs' cycles
/// (their ends, 0 while the timing is on other threads) summed, all runs and the target
/// refreshes alone.
fn drive(m: &mut Machine, c: &Case) -> (Vec<RunOut>, u64, u64) {
    let p = m.program().clone();
    let refresh = |m: &mut Machine| {
        if p.layers.iter().any(|l| l.keeps_targets) {
            m.run(&[Phase::Targets], 0, None, None).unwrap().end
        } else {
            0
        }
    };
    let (mut outs, mut cycles, mut refreshes) = (Vec::new(), 0, 0);
    for (i, (x, label)) in c.train.iter().enumerate() {
        if let Some(labels) = batch_starting_at(c, i) {
            cycles += m.begin_batch(&labels).unwrap();
        }
        if (i as u64).is_multiple_of(p.network.target_refresh as u64) {
            let t = refresh(m);
            cycles += t;
            refreshes += t;
        }
        let r = m
            .run(&[Phase::Forward, Phase::Learn], 0, Some(x), Some(*label))
            .unwrap();
        m.next_update_step();
        cycles += r.end.max(r.output_at.unwrap_or(0));
        outs.push((r.output, r.prediction));
        if p.network.batch > 1
            && ((i + 1) % p.network.batch as usize == 0 || i + 1 == c.train.len())
        {
            cycles += m.run(&[Phase::Apply], 0, None, None).unwrap().end;
        }
    }
    let t = refresh(m);
    cycles += t;
    refreshes += t;
    for x in &c.probes {
        let r = m.run(&[Phase::Forward], 0, Some(x), None).unwrap();
        cycles += r.end.max(r.output_at.unwrap_or(0));
        outs.push((r.output, r.prediction));
    }
    (outs, cycles, refreshes)
}

proptest! {
    #![proptest_config(config(24))]

    /// The arithmetic computed on one thread while timing threads replay each run's script
    /// (`emulator::decoupled`) gives what one thread doing both gives: every output and
    /// prediction, every weight, the summed cycles, every counter, every link's load and stalls
    /// and the largest buffer occupancies, on random networks, tilings, cycle costs, network
    /// parameters, engines and numbers of timing threads.
    #[test]
    fn split_timing_equals_one_thread(
        c in case(side(24), side(24)),
        (costs, router) in timing_params(),
        tick in any::<bool>(),
        threads in 1usize..=3,
    ) {
        let mut program = program_for(&c.net, c.rows, c.cols);
        program.chip.costs = costs;
        program.chip.router = router;
        let engine = if tick { EngineKind::Tick } else { EngineKind::Event };
        let mut one = Machine::new(program.clone()).unwrap();
        one.engine = engine;
        let (one_outs, one_cycles, one_refreshes) = drive(&mut one, &c);
        let mut split = Machine::new(program).unwrap();
        split.engine = engine;
        let timing = TimingThreads::start(&mut split, threads).unwrap();
        let (split_outs, zero, zero_refreshes) = drive(&mut split, &c);
        let timed = timing.settle(&mut split).unwrap();
        prop_assert_eq!((zero, zero_refreshes), (0, 0));
        prop_assert_eq!(timed.refresh_cycles, one_refreshes);
        prop_assert_eq!(&split_outs, &one_outs);
        prop_assert_eq!(timed.cycles, one_cycles);
        prop_assert_eq!(&split.counters, &one.counters);
        prop_assert_eq!(split.all_link_stats(), one.all_link_stats());
        prop_assert_eq!(&split.network().max_occupancy, &one.network().max_occupancy);
        let w = fm::assemble_weights(&split.trained_program());
        if let Some(d) = weight_diff(&w, &fm::assemble_weights(&one.trained_program()), ("split", "one")) {
            return Err(TestCaseError::fail(d));
        }
        prop_assert!(one.counters.instructions > 0 && one.counters.packets > 0);
    }
}
