//! The run report: accuracy, timing, memory, routes, saturations, events and energy, printed as
//! tables and written as JSON (`--report`). Everything but the `host` section is a pure function
//! of the program, the data and the seeds, so two runs give identical reports outside `host`.

use crate::engine::{EngineKind, PathStep};
use crate::machine::{Counters, Saturations};
use crate::router::LinkStats;
use crate::timing::Cycles;
use crate::train::Schedule;
use crate::train::{EpochLog, EvalResult};
use serde::Serialize;
use sigchip_isa::memory::{core_capacity, memory_use, CoreMemory};
use sigchip_isa::{Program, RouteCounts};
use std::fmt;

/// What a run measured, handed to [`Report::new`].
pub struct Runs {
    pub train_samples: u64,
    pub train_cycles: Cycles,
    pub target_cycles: Cycles,
    pub train_eval: EvalResult,
    pub test_eval: EvalResult,
    pub epochs: Vec<EpochLog>,
    pub epochs_run: u32,
    pub shuffle_seed: u64,
    pub seconds: f64,
    /// The training alone: samples, target refreshes and batch steps, not the evaluations.
    pub train_seconds: f64,
    /// The evaluations (inference runs and their target refreshes).
    pub eval_seconds: f64,
    /// See [`Host::train_arithmetic_seconds`].
    pub train_arithmetic_seconds: Option<f64>,
    /// Synaptic operations of the whole run (for the host's rate).
    pub synaptic_ops: u64,
    pub engine: EngineKind,
    pub schedule: Schedule,
    /// The most training samples in flight at once (1 when sequential).
    pub max_in_flight: usize,
    /// Link load and stalls while training (inference for `run`).
    pub links: Vec<LinkStats>,
    /// The critical paths of one training sample and one inference.
    pub critical_paths: CriticalPaths,
}

/// What decided the end of one sample (see [`crate::engine::Trace::critical_path`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CriticalPaths {
    pub train_sample: Vec<PathStep>,
    pub inference: Vec<PathStep>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub network: String,
    pub chip: String,
    pub data: String,
    pub epochs: u32,
    pub shuffle_seed: u64,
    pub train_samples: u64,
    pub accuracy: Accuracy,
    pub timing: Timing,
    pub memory: Memory,
    pub routes: RouteCounts,
    /// Per layer, over the final test inference.
    pub activity: Vec<LayerActivity>,
    /// Total saturations (training and the final test inference).
    pub saturations: u64,
    pub saturations_by_kind: Saturations,
    pub events: Events,
    pub energy: Energy,
    /// Load and stalls of every link that carried traffic, while training (inference for
    /// `run`).
    pub links: Vec<LinkStats>,
    pub critical_paths: CriticalPaths,
    /// Wall-clock figures of the host: the only part that differs between identical runs.
    pub host: Host,
}

#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    /// Inference accuracy on the training split after training.
    pub train: f64,
    /// Inference accuracy on the test split after training.
    pub test: f64,
    pub per_epoch: Vec<EpochLog>,
    /// Test accuracy of each hidden layer's nearest class target (what each layer has learned).
    pub nearest_target_per_layer: Vec<LayerAccuracy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerAccuracy {
    pub layer: String,
    pub test: f64,
}

/// How many of a layer's neurons respond, over the final test inference.
#[derive(Clone, Debug, Serialize)]
pub struct LayerActivity {
    pub layer: String,
    /// Fraction of non-zero outputs.
    pub active_fraction: f64,
    /// Whether the layer has collapsed: fewer than [`COLLAPSE_THRESHOLD`] of its outputs are
    /// non-zero (as `l2` with both streams learning does in float: every activation goes to 0).
    pub collapsed: bool,
    /// Spiking layers: spikes per inference, over all its neurons and time steps.
    pub spikes_per_sample: f64,
}

/// Below this fraction of active outputs a layer counts as collapsed.
pub const COLLAPSE_THRESHOLD: f64 = 0.01;

#[derive(Clone, Debug, Serialize)]
pub struct Timing {
    pub clock_mhz: f64,
    /// Mean cycles of one inference on the test split (sample start to barrier).
    pub cycles_per_inference: f64,
    /// Mean cycles from sample start to the prediction at the output port.
    pub latency_cycles: f64,
    /// Mean cycles of one training sample, target refreshes included.
    pub cycles_per_train_sample: f64,
    /// Training cycles plus the final test inference cycles.
    pub total_cycles: u64,
    pub train_cycles: u64,
    pub target_refresh_cycles: u64,
    pub test_inference_cycles: u64,
    /// At the chip clock.
    pub inferences_per_second: f64,
    pub train_samples_per_second: f64,
    /// Busy cycles / elapsed cycles of each core during training (inference for `run`).
    pub utilization: Vec<f64>,
    /// Time steps per sample (1 without time).
    pub time_steps: u16,
    /// The engine that ran (both give the same cycles).
    pub engine: EngineKind,
    /// How training samples followed each other.
    pub schedule: Schedule,
    /// Training throughput: training samples per cycle, target refreshes included.
    pub samples_per_cycle: f64,
    pub pipeline: Pipeline,
    /// Per core, while training (inference for `run`): busy cycles and stalls by cause.
    pub cores: Vec<CoreTiming>,
}

/// The training pipeline: one stage per chip layer.
#[derive(Clone, Debug, Serialize)]
pub struct Pipeline {
    pub stages: usize,
    /// The most samples being trained at once (1 when sequential).
    pub max_samples_in_flight: usize,
    /// Mean cycles between the starts of consecutive training samples.
    pub initiation_interval_cycles: f64,
}

/// One core's time.
#[derive(Clone, Debug, Serialize)]
pub struct CoreTiming {
    pub core: String,
    pub layer: String,
    pub busy_cycles: u64,
    /// Waiting for a message to arrive.
    pub recv_wait_cycles: u64,
    /// Waiting for a route to be free (its destination had not taken the previous message).
    pub send_wait_cycles: u64,
    pub utilization: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CoreMemoryReport {
    pub core: String,
    pub layer: String,
    pub used: CoreMemory,
    pub used_bits: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub used_bits: u64,
    pub capacity_bits: u64,
    pub by_kind: CoreMemory,
    /// Capacity of the used cores by kind (data SRAM reported under `buffers`).
    pub capacity_by_kind: CoreMemory,
    pub per_core: Vec<CoreMemoryReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Events {
    pub train: Counters,
    pub test_inference: Counters,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct EnergyBreakdown {
    pub synaptic_ops: f64,
    pub neuron_updates: f64,
    pub weight_updates: f64,
    pub router: f64,
    pub sram: f64,
    pub instructions: f64,
    pub total: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Energy {
    pub pj_per_inference: f64,
    pub pj_per_train_sample: f64,
    /// Per training sample, by kind, in pJ.
    pub train_breakdown: EnergyBreakdown,
    /// Per inference, by kind, in pJ.
    pub inference_breakdown: EnergyBreakdown,
}

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// The whole run: training, the per-epoch test inference and the final evaluation of the
    /// training split.
    pub seconds: f64,
    /// The training alone (samples, target refreshes, batch steps), without the evaluations.
    pub train_seconds: f64,
    /// The evaluations alone: the inference runs and their target refreshes.
    pub eval_seconds: f64,
    /// Training samples over `train_seconds`.
    pub train_samples_per_second: f64,
    /// With the timing of training on other threads (`emulator::decoupled`): the seconds the
    /// computing thread spent in the arithmetic of training, what training would take if the
    /// exact timing cost nothing. `None` on one thread or with waveforms.
    pub train_arithmetic_seconds: Option<f64>,
    /// Every emulated synaptic operation (multiply-accumulate) of the run over `seconds`.
    pub emulated_macs_per_second: f64,
}

fn per(x: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x as f64 / n as f64
    }
}

fn energy(p: &Program, c: &Counters, n: u64) -> EnergyBreakdown {
    let e = &p.chip.energy;
    let scale = |events: u64, pj: f64| per(events, n) * pj;
    let mut b = EnergyBreakdown {
        synaptic_ops: scale(c.synaptic_ops, e.synaptic_op.value),
        neuron_updates: scale(c.neuron_updates, e.neuron_update.value),
        weight_updates: scale(c.weight_updates, e.weight_update.value),
        router: scale(c.packet_hops, e.router_hop.value),
        sram: scale(c.sram_bits_read, e.sram_read_bit.value)
            + scale(c.sram_bits_written, e.sram_write_bit.value),
        instructions: scale(c.instructions, e.instruction.value),
        total: 0.0,
    };
    b.total =
        b.synaptic_ops + b.neuron_updates + b.weight_updates + b.router + b.sram + b.instructions;
    b
}

impl Report {
    pub fn new(p: &Program, data: &str, train: &Counters, test: &Counters, r: Runs) -> Report {
        let mem = memory_use(p);
        let cap1 = core_capacity(p);
        let mut by_kind = CoreMemory::default();
        let mut capacity_by_kind = CoreMemory::default();
        for m in &mem {
            by_kind.add(m);
            capacity_by_kind.add(&cap1);
        }
        let per_core = p
            .cores
            .iter()
            .zip(&mem)
            .map(|(c, m)| CoreMemoryReport {
                core: c.id.to_string(),
                layer: c.layer.to_string(),
                used: *m,
                used_bits: m.total(),
            })
            .collect();
        let clock_hz = p.chip.clock_mhz * 1e6;
        let (busy, elapsed) = if r.train_samples > 0 {
            (&train.busy_cycles, r.train_cycles)
        } else {
            (&test.busy_cycles, r.test_eval.cycles)
        };
        let cpi = per(r.test_eval.cycles, r.test_eval.samples);
        let cpt = per(r.train_cycles, r.train_samples);
        let train_energy = energy(p, train, r.train_samples);
        let test_energy = energy(p, test, r.test_eval.samples);
        let mut sat = train.saturations.clone();
        sat.add(&test.saturations);
        Report {
            network: p.name.clone(),
            chip: p.chip.name.clone(),
            data: data.into(),
            epochs: r.epochs_run,
            shuffle_seed: r.shuffle_seed,
            train_samples: r.train_samples,
            accuracy: Accuracy {
                train: r.train_eval.accuracy(),
                test: r.test_eval.accuracy(),
                per_epoch: r.epochs,
                nearest_target_per_layer: p
                    .layers
                    .iter()
                    .zip(&r.test_eval.layer_correct)
                    .filter_map(|(l, c)| {
                        c.map(|c| LayerAccuracy {
                            layer: l.id.to_string(),
                            test: per(c, r.test_eval.samples),
                        })
                    })
                    .collect(),
            },
            activity: p
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let f = per(
                        test.active_outputs.get(i).copied().unwrap_or(0),
                        test.outputs.get(i).copied().unwrap_or(0),
                    );
                    LayerActivity {
                        layer: l.id.to_string(),
                        active_fraction: f,
                        collapsed: f < COLLAPSE_THRESHOLD,
                        spikes_per_sample: per(
                            test.spikes.get(i).copied().unwrap_or(0),
                            r.test_eval.samples,
                        ),
                    }
                })
                .collect(),
            timing: Timing {
                clock_mhz: p.chip.clock_mhz,
                cycles_per_inference: cpi,
                latency_cycles: per(r.test_eval.latency, r.test_eval.samples),
                cycles_per_train_sample: cpt,
                total_cycles: r.train_cycles + r.test_eval.cycles,
                train_cycles: r.train_cycles,
                target_refresh_cycles: r.target_cycles,
                test_inference_cycles: r.test_eval.cycles,
                inferences_per_second: if cpi > 0.0 { clock_hz / cpi } else { 0.0 },
                train_samples_per_second: if cpt > 0.0 { clock_hz / cpt } else { 0.0 },
                utilization: busy.iter().map(|&b| per(b, elapsed)).collect(),
                time_steps: p.network.neuron.steps(),
                engine: r.engine,
                schedule: r.schedule,
                samples_per_cycle: per(r.train_samples, r.train_cycles),
                pipeline: Pipeline {
                    stages: p.layers.len(),
                    max_samples_in_flight: r.max_in_flight,
                    initiation_interval_cycles: cpt,
                },
                cores: {
                    let c = if r.train_samples > 0 { train } else { test };
                    p.cores
                        .iter()
                        .map(|core| {
                            let i = core.id.index();
                            let get = |v: &[u64]| v.get(i).copied().unwrap_or(0);
                            CoreTiming {
                                core: core.id.to_string(),
                                layer: core.layer.to_string(),
                                busy_cycles: get(&c.busy_cycles),
                                recv_wait_cycles: get(&c.recv_wait_cycles),
                                send_wait_cycles: get(&c.send_wait_cycles),
                                utilization: per(get(&c.busy_cycles), elapsed),
                            }
                        })
                        .collect()
                },
            },
            memory: Memory {
                used_bits: by_kind.total(),
                capacity_bits: capacity_by_kind.total(),
                by_kind,
                capacity_by_kind,
                per_core,
            },
            routes: p.route_counts(),
            saturations: sat.total(),
            saturations_by_kind: sat,
            events: Events {
                train: train.clone(),
                test_inference: test.clone(),
            },
            links: r.links,
            critical_paths: r.critical_paths,
            energy: Energy {
                pj_per_inference: test_energy.total,
                pj_per_train_sample: train_energy.total,
                train_breakdown: train_energy,
                inference_breakdown: test_energy,
            },
            host: Host {
                seconds: r.seconds,
                train_seconds: r.train_seconds,
                eval_seconds: r.eval_seconds,
                train_samples_per_second: r.train_samples as f64 / r.train_seconds.max(1e-9),
                train_arithmetic_seconds: r.train_arithmetic_seconds,
                emulated_macs_per_second: r.synaptic_ops as f64 / r.seconds.max(1e-9),
            },
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

fn kib(bits: u64) -> String {
    format!("{:.1} KiB", bits as f64 / 8192.0)
}

/// The accuracy table of a run, as the chip's and the software references' reports print it.
pub fn write_accuracy(
    f: &mut fmt::Formatter<'_>,
    per_epoch: &[EpochLog],
    train: f64,
    test: f64,
) -> fmt::Result {
    writeln!(f, "\naccuracy")?;
    for e in per_epoch {
        writeln!(
            f,
            "  epoch {:>3}   train (online) {:.4}   test {:.4}",
            e.epoch, e.train_online, e.test
        )?;
    }
    writeln!(
        f,
        "  final       train {:.4}            test {:.4}",
        train, test
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} on {} ({}), {} epochs, {} training samples",
            self.network, self.chip, self.data, self.epochs, self.train_samples
        )?;
        write_accuracy(
            f,
            &self.accuracy.per_epoch,
            self.accuracy.train,
            self.accuracy.test,
        )?;
        writeln!(f, "\nlayers")?;
        for a in &self.activity {
            let nearest = self
                .accuracy
                .nearest_target_per_layer
                .iter()
                .find(|n| n.layer == a.layer);
            write!(
                f,
                "  {:<8} active {:>6.1}%",
                a.layer,
                100.0 * a.active_fraction
            )?;
            if let Some(n) = nearest {
                write!(f, "   nearest-target test accuracy {:.4}", n.test)?;
            }
            if a.spikes_per_sample > 0.0 {
                write!(f, "   {:.1} spikes per sample", a.spikes_per_sample)?;
            }
            if a.collapsed {
                write!(f, "   COLLAPSED: almost every output is 0")?;
            }
            writeln!(f)?;
        }
        let t = &self.timing;
        writeln!(f, "\ntiming (clock {} MHz)", t.clock_mhz)?;
        writeln!(
            f,
            "  cycles per inference      {:>12.1}   latency {:.1} cycles, {:.0} inferences/s",
            t.cycles_per_inference, t.latency_cycles, t.inferences_per_second
        )?;
        writeln!(
            f,
            "  cycles per train sample   {:>12.1}   {:.0} samples/s",
            t.cycles_per_train_sample, t.train_samples_per_second
        )?;
        writeln!(
            f,
            "  total cycles              {:>12}   (target refresh {})",
            t.total_cycles, t.target_refresh_cycles
        )?;
        if t.time_steps > 1 {
            writeln!(f, "  time steps per sample     {:>12}", t.time_steps)?;
        }
        writeln!(
            f,
            "  schedule {:?}, {} stages, {:.3e} samples/cycle, up to {} samples in flight ({:?} engine)",
            t.schedule,
            t.pipeline.stages,
            t.samples_per_cycle,
            t.pipeline.max_samples_in_flight,
            t.engine
        )?;
        let stalls: (u64, u64) = self.links.iter().fold((0, 0), |a, l| {
            (a.0 + l.stall_contention, a.1 + l.stall_backpressure)
        });
        let busiest = self.links.iter().max_by_key(|l| l.packets);
        writeln!(
            f,
            "  network: {} links used, stalls {} packet-cycles of contention, {} of backpressure{}",
            self.links.len(),
            stalls.0,
            stalls.1,
            busiest.map_or(String::new(), |l| format!(
                "; busiest link ({}, {}) {} with {} packets",
                l.from.0, l.from.1, l.dir, l.packets
            ))
        )?;
        let waits: (u64, u64) = t.cores.iter().fold((0, 0), |a, c| {
            (a.0 + c.recv_wait_cycles, a.1 + c.send_wait_cycles)
        });
        writeln!(
            f,
            "  cores: waiting for messages {} cycles, for free routes {} cycles (all cores)",
            waits.0, waits.1
        )?;
        let m = &self.memory;
        writeln!(
            f,
            "\nmemory  {} used of {}",
            kib(m.used_bits),
            kib(m.capacity_bits)
        )?;
        let (u, c) = (&m.by_kind, &m.capacity_by_kind);
        writeln!(f, "  weights {} / {}, data SRAM {} / {} (projection {}, buffers {}, targets {}, learning {}), routing {} / {}, instructions {} / {}",
            kib(u.weights), kib(c.weights), kib(u.data_sram()), kib(c.buffers), kib(u.projection), kib(u.buffers), kib(u.targets), kib(u.learning),
            kib(u.routing), kib(c.routing), kib(u.instructions), kib(c.instructions))?;
        writeln!(
            f,
            "\nroutes  forward {}, lateral {}, backward {}",
            self.routes.forward, self.routes.lateral, self.routes.backward
        )?;
        let s = &self.saturations_by_kind;
        writeln!(
            f,
            "saturations {} (accumulator {}, activation {}, probability {}, error {}, weight {}, score {})",
            self.saturations, s.accumulator, s.activation, s.probability, s.error, s.weight, s.score
        )?;
        writeln!(
            f,
            "energy  {:.1} nJ per inference, {:.1} nJ per training sample",
            self.energy.pj_per_inference / 1e3,
            self.energy.pj_per_train_sample / 1e3
        )?;
        writeln!(
            f,
            "host    {:.2} s ({:.2} s training, {:.0} training samples/s), {:.2e} emulated MAC/s",
            self.host.seconds,
            self.host.train_seconds,
            self.host.train_samples_per_second,
            self.host.emulated_macs_per_second
        )
    }
}
