//! A loaded chip: the state of every core, the semantics of every instruction ([`Machine`]'s
//! `exec`), and runs of phases for one sample ([`Machine::run`]) with the jobs and input-port
//! messages they expand to ([`sample_work`], time steps included). The engines that step it in
//! time are in [`crate::engine`], the network in [`crate::router`], the arithmetic in
//! [`crate::kernels`] and the cycles in [`crate::timing`].

use crate::engine::{EngineKind, Job, PortMessage, Trace};
use crate::kernels::{self, Activity, UpdateKey};
use crate::router::Network;
use crate::timing::{self, Cycles};
use serde::Serialize;
use sigchip_isa::instr::{DeltaMode, Pre, ScoreMode};
use sigchip_isa::memory::{buffer_len, ERROR_BITS};
use sigchip_isa::{
    verify, Activation, Buf, CoreId, Endpoint, Instr, LocalLoss, Program, QFormat, Rounding,
    RouteId, VerifyError,
};

/// Why the emulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    #[error("refusing to run the program: {0}")]
    Verify(VerifyError),
    #[error("deadlock in the {phase} phase at cycle {cycle}: {}", .waiting.iter().map(|(c, r)| format!("{c} waits on {r}")).collect::<Vec<_>>().join(", "))]
    Deadlock {
        phase: String,
        cycle: Cycles,
        waiting: Vec<(CoreId, RouteId)>,
    },
    #[error("the data set does not fit the program: {0}")]
    Shape(String),
    #[error(
        "a message on {route} was never received: the program's streams do not match its routes"
    )]
    Unreceived { route: RouteId },
    #[error("{0}")]
    Output(String),
    /// The thread replaying the timing stopped (its own error says why).
    #[error("the timing thread stopped")]
    TimingStopped,
}

impl From<VerifyError> for EmuError {
    fn from(e: VerifyError) -> Self {
        EmuError::Verify(e)
    }
}

/// A phase stream of every core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Targets,
    Forward,
    Learn,
    /// The end of a mini-batch: gradient accumulators into weights.
    Apply,
    /// The start of a mini-batch: the input port sends the batch's labels (batch-contrastive
    /// losses).
    Batch,
}

/// Saturation counts by where they happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Saturations {
    pub accumulator: u64,
    pub activation: u64,
    pub probability: u64,
    pub error: u64,
    pub weight: u64,
    /// Class-score registers (`SCORE_BITS` wide).
    pub score: u64,
}

impl Saturations {
    /// `self - earlier`, kind by kind.
    pub fn since(&self, e: &Saturations) -> Saturations {
        Saturations {
            accumulator: self.accumulator - e.accumulator,
            activation: self.activation - e.activation,
            probability: self.probability - e.probability,
            error: self.error - e.error,
            weight: self.weight - e.weight,
            score: self.score - e.score,
        }
    }

    /// Adds another count into this one.
    pub fn add(&mut self, o: &Saturations) {
        self.accumulator += o.accumulator;
        self.activation += o.activation;
        self.probability += o.probability;
        self.error += o.error;
        self.weight += o.weight;
        self.score += o.score;
    }

    pub fn total(&self) -> u64 {
        self.accumulator
            + self.activation
            + self.probability
            + self.error
            + self.weight
            + self.score
    }
}

/// Event counts, for the energy model and the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub instructions: u64,
    pub synaptic_ops: u64,
    pub weight_updates: u64,
    pub neuron_updates: u64,
    pub packets: u64,
    pub packet_hops: u64,
    pub sram_bits_read: u64,
    pub sram_bits_written: u64,
    pub saturations: Saturations,
    /// Cycles each core spent executing (not waiting), by core ID.
    pub busy_cycles: Vec<Cycles>,
    /// Cycles each core waited for a message to arrive (`recv`), by core ID.
    pub recv_wait_cycles: Vec<Cycles>,
    /// Cycles each core waited for a route to be free (`send`: the destination had not yet
    /// received the route's previous message), by core ID.
    pub send_wait_cycles: Vec<Cycles>,
    /// Non-zero neuron outputs of the data stream, by layer (layer 1 first).
    pub active_outputs: Vec<u64>,
    /// Neuron outputs of the data stream, by layer.
    pub outputs: Vec<u64>,
    /// Spikes of the data stream, by layer (spiking networks).
    pub spikes: Vec<u64>,
}

#[derive(Clone)]
struct LayerRt {
    index: u16,
    act: Activation,
    acc_fmt: QFormat,
    out_fmt: QFormat,
    prob_fmt: QFormat,
    weight_fmt: QFormat,
    proj_fmt: Option<QFormat>,
    act_shift: i32,
    proj_shift: i32,
    score_frac: [i32; 2],
    /// Fraction bits of `delta`, by the layer's loss.
    delta_frac: i32,
    deltat_frac: i32,
    in_frac: i32,
    lr: i32,
    rounding: Rounding,
    /// Neurons with time: the state format and the shift from the accumulator into it.
    state_fmt: QFormat,
    state_shift: i32,
    /// The continuous-time neuron function (the layer's activation).
    act_time: Activation,
    /// `surrogate` learning: the shift of `g'(U) = 1 / (2 threshold)`, rounded to a power of two.
    surrogate_shift: Option<i32>,
}

/// The state of one core: its memories, as struct-of-arrays buffers.
#[derive(Clone)]
struct Core {
    layer: usize,
    cols: usize,
    row_start: u32,
    col_start: u32,
    w: Vec<i32>,
    proj: Option<Vec<i32>>,
    inb: Vec<i32>,
    acc: Vec<i64>,
    psum: Vec<i64>,
    out: Vec<i32>,
    score: Vec<i64>,
    score_in: Vec<i64>,
    err: Vec<i32>,
    delta: Vec<i64>,
    deltat: Vec<i64>,
    label: usize,
    tgt: Vec<i32>,
    tgtin: Vec<i32>,
    /// Neurons with time: the state of each column and its spike (1.0 in the output format) of
    /// the current step; per class, the target stream's state, spikes and running sum.
    state: Vec<i64>,
    spk: Vec<i32>,
    tstate: Vec<i64>,
    tspk: Vec<i32>,
    tsum: Vec<i64>,
    /// Per-synapse gradient accumulators (mini-batches only).
    grad: Vec<i64>,
    /// The mini-batch's labels (a batch-contrastive leader).
    batch: Vec<i64>,
    /// Class similarities of the target inputs, a received share, and this core's share.
    gram: Vec<i64>,
    gram_in: Vec<i64>,
    gram_part: Vec<i64>,
}

/// What one run of phases produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// When the last core finished.
    pub end: Cycles,
    /// When the prediction reached the output port (if one did).
    pub output_at: Option<Cycles>,
    /// The output port's vector (logits or scores) and its argmax.
    pub output: Vec<i64>,
    pub prediction: Option<usize>,
}

/// A chip loaded with a program.
#[derive(Clone)]
pub struct Machine {
    /// Shared by copies (evaluation chunks, timing threads): never changed after loading.
    program: std::sync::Arc<Program>,
    layers: Vec<LayerRt>,
    cores: Vec<Core>,
    hops: Vec<u32>,
    pub(crate) network: Network,
    /// The engine that steps the chip.
    pub engine: EngineKind,
    /// When set, runs record a [`Trace`] (kept in `last_trace`).
    pub tracing: bool,
    pub last_trace: Option<Trace>,
    /// When set, a trace keeps only what happens in these run-local cycles.
    pub trace_window: Option<(Cycles, Cycles)>,
    /// The neuron (column of each core) whose accumulator and output traces record.
    pub probe_neuron: usize,
    /// The input encoder's key of the next sample (spiking inputs); the update step when unset.
    pub sample_key: Option<u64>,
    /// When set, every data-stream neuron step is recorded (plots).
    pub step_log: Option<Vec<crate::plot::StepRecord>>,
    pub counters: Counters,
    /// Counts updates, so every update of a synapse draws fresh random bits.
    update_step: u64,
    /// When set, runs compute their values here and hand their timing to these threads
    /// ([`crate::decoupled::TimingThreads`]).
    pub(crate) timing: crate::decoupled::Dispatch,
    /// Host seconds spent computing runs whose timing went to the timing threads.
    pub(crate) compute_seconds: f64,
}

/// A batch-label slot with no sample (a short last batch): not a class.
const EMPTY_SLOT: i64 = 255;

impl Machine {
    /// Loads a program, refusing one that fails the verifier.
    pub fn new(program: Program) -> Result<Self, EmuError> {
        verify(&program)?;
        let chip = &program.chip;
        let classes = program.network.classes as usize;
        let prob_fmt = chip.probability_format();
        let acc_fmt = QFormat::new(chip.bits.accumulator, 0);
        let layers: Vec<LayerRt> = program
            .layers
            .iter()
            .map(|l| {
                let (wf, inf, outf) = (
                    l.weight_format.frac as i32,
                    l.in_format.frac as i32,
                    l.out_format.frac as i32,
                );
                let pf = prob_fmt.frac as i32;
                let pjf = l.projection.map(|p| p.format.frac as i32).unwrap_or(0);
                LayerRt {
                    index: l.id.0,
                    act: l.activation,
                    acc_fmt,
                    out_fmt: l.out_format,
                    prob_fmt,
                    weight_fmt: l.weight_format,
                    proj_fmt: l.projection.map(|p| p.format),
                    act_shift: wf + inf - outf,
                    // The projection enters the accumulator at its fraction, wf + inf.
                    proj_shift: wf + inf - pjf,
                    score_frac: [2 * outf, outf],
                    delta_frac: match l.loss {
                        LocalLoss::LabelDirect
                        | LocalLoss::TargetMax
                        | LocalLoss::TargetMaxAll
                        | LocalLoss::TargetTopK { .. } => pf + outf,
                        LocalLoss::CrossEntropy => pf,
                        LocalLoss::L2 | LocalLoss::Hebbian { .. } => outf,
                    },
                    // `l2`'s target-stream error is a mismatch of outputs, not a class error.
                    deltat_frac: if l.loss == LocalLoss::L2 {
                        outf
                    } else {
                        pf + outf
                    },
                    in_frac: inf,
                    lr: l.lr_shift as i32,
                    rounding: l.rounding,
                    state_fmt: l.state_format,
                    act_time: l.activation,
                    state_shift: wf + inf - l.state_format.frac as i32,
                    surrogate_shift: match program.network.neuron {
                        sigchip_isa::NeuronModel::Lif {
                            learning: sigchip_isa::SpikeLearning::Surrogate,
                            threshold,
                            ..
                        } => Some(
                            ((2.0 * threshold as f64).log2() - l.state_format.frac as f64).round()
                                as i32,
                        ),
                        _ => None,
                    },
                }
            })
            .collect();
        let cores = program
            .cores
            .iter()
            .map(|c| {
                let l = program.layer(c.layer);
                let (rows, cols) = (c.tile.rows as usize, c.tile.cols as usize);
                let mut inb = vec![0; rows];
                // The bias axon: a constant one in the input format.
                if l.bias && c.tile.row_start + c.tile.rows == l.rows() {
                    inb[rows - 1] = 1 << l.in_format.frac;
                }
                let reducer = c.tile.is_reducer();
                let time = program.network.neuron.has_time();
                Core {
                    layer: c.layer.index() - 1,
                    cols,
                    row_start: c.tile.row_start,
                    col_start: c.tile.col_start,
                    w: c.weights.data.clone(),
                    proj: program.projection_values(c),
                    inb,
                    acc: vec![0; cols],
                    psum: vec![0; cols],
                    out: vec![0; cols],
                    score: vec![0; classes],
                    score_in: vec![0; classes],
                    err: vec![0; classes],
                    delta: vec![0; cols],
                    deltat: vec![0; cols],
                    label: 0,
                    tgt: if l.keeps_targets && reducer {
                        vec![0; classes * cols]
                    } else {
                        Vec::new()
                    },
                    tgtin: if program.keeps_target_inputs(l) {
                        vec![0; classes * rows]
                    } else {
                        Vec::new()
                    },
                    grad: if program.network.batch > 1 || program.network.neuron.sums_updates() {
                        vec![0; rows * cols]
                    } else {
                        Vec::new()
                    },
                    batch: vec![EMPTY_SLOT; buffer_len(&program, c, Buf::Batch)],
                    gram: vec![0; buffer_len(&program, c, Buf::Gram)],
                    gram_in: vec![0; buffer_len(&program, c, Buf::GramIn)],
                    gram_part: vec![0; buffer_len(&program, c, Buf::GramPart)],
                    state: vec![0; if time && reducer { cols } else { 0 }],
                    spk: vec![0; if time && reducer { cols } else { 0 }],
                    tstate: vec![
                        0;
                        if time && reducer && l.keeps_targets {
                            classes * cols
                        } else {
                            0
                        }
                    ],
                    tspk: vec![
                        0;
                        if time && reducer && l.keeps_targets {
                            classes * cols
                        } else {
                            0
                        }
                    ],
                    tsum: vec![
                        0;
                        if time && reducer && l.keeps_targets {
                            classes * cols
                        } else {
                            0
                        }
                    ],
                }
            })
            .collect();
        let hops = program.routes.iter().map(|r| program.hops(r)).collect();
        let network = Network::new(&program);
        let counters = Counters {
            busy_cycles: vec![0; program.cores.len()],
            recv_wait_cycles: vec![0; program.cores.len()],
            send_wait_cycles: vec![0; program.cores.len()],
            active_outputs: vec![0; program.layers.len()],
            outputs: vec![0; program.layers.len()],
            spikes: vec![0; program.layers.len()],
            ..Default::default()
        };
        Ok(Machine {
            program: std::sync::Arc::new(program),
            layers,
            cores,
            hops,
            network,
            engine: EngineKind::Event,
            tracing: false,
            last_trace: None,
            trace_window: None,
            probe_neuron: 0,
            sample_key: None,
            step_log: None,
            counters,
            update_step: 0,
            timing: crate::decoupled::Dispatch::NONE,
            compute_seconds: 0.0,
        })
    }

    /// Starts a mini-batch: the input port sends `labels` (the batch's labels in sample order)
    /// to every batch-contrastive leader (the `batch` phase). Returns when it ended.
    pub fn begin_batch(&mut self, labels: &[usize]) -> Result<Cycles, EmuError> {
        let b = self.program.network.batch as usize;
        if labels.len() > b {
            return Err(EmuError::Shape(format!(
                "a mini-batch of {} labels, the program's batch is {b}",
                labels.len()
            )));
        }
        Ok(self
            .run_sample(&[Phase::Batch], 0, None, None, Some(labels))?
            .end)
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The program with the chip's current weights and projections written back.
    pub fn trained_program(&self) -> Program {
        let mut p = (*self.program).clone();
        for (cp, core) in p.cores.iter_mut().zip(&self.cores) {
            cp.weights.data.clone_from(&core.w);
            if let (Some(img), Some(s)) = (cp.projection.as_mut(), core.proj.as_ref()) {
                img.data.clone_from(s);
            }
        }
        p
    }

    /// Raw crossbar weights of a core (row-major, `tile.rows x tile.cols`).
    pub fn weights(&self, core: CoreId) -> &[i32] {
        &self.cores[core.index()].w
    }

    /// Runs the given phases of every core back to back, starting at cycle `start`.
    /// `input` is the sample (in the input format) for the forward phase, `label` its class for
    /// the learn phase. While the machine's timing runs on other threads
    /// ([`crate::decoupled::TimingThreads`]) the result has the outputs but no cycles (`end` 0,
    /// `output_at` `None`): they come with `TimingThreads::settle`.
    pub fn run(
        &mut self,
        phases: &[Phase],
        start: Cycles,
        input: Option<&[i32]>,
        label: Option<usize>,
    ) -> Result<RunResult, EmuError> {
        self.run_sample(phases, start, input, label, None)
    }

    fn run_sample(
        &mut self,
        phases: &[Phase],
        start: Cycles,
        input: Option<&[i32]>,
        label: Option<usize>,
        batch: Option<&[usize]>,
    ) -> Result<RunResult, EmuError> {
        let step = self.update_step;
        let key = self.sample_key.unwrap_or(step);
        let (jobs, messages) =
            sample_work(&self.program, phases, step, 0, key, input, label, batch);
        let mut messages = Some(messages);
        let mut feed = |s: u32, out: &mut Vec<PortMessage>| match (s, messages.take()) {
            (0, Some(m)) => {
                out.extend(m);
                true
            }
            _ => false,
        };
        let classes = self.program.network.classes as usize;
        if self.timing.is_split() {
            // A timing thread replays this run; its cycles come with `TimingThreads::settle`.
            let started = std::time::Instant::now();
            let c = self.compute(&jobs, &mut feed)?;
            self.compute_seconds += started.elapsed().as_secs_f64();
            let output = c.outputs.into_iter().next().flatten();
            self.submit(start, jobs, c.script, phases == [Phase::Targets])?;
            return Ok(RunResult {
                end: 0,
                output_at: None,
                prediction: output.as_deref().map(argmax),
                output: output.unwrap_or_else(|| vec![0; classes]),
            });
        }
        let ex = self.execute(&jobs, start, &mut feed)?;
        let o = ex.outputs.into_iter().next().unwrap_or_default();
        let output = if o.output.is_empty() {
            vec![0; classes]
        } else {
            o.output
        };
        Ok(RunResult {
            end: ex.end.max(o.at.unwrap_or(0)),
            output_at: o.at,
            prediction: o.at.map(|_| argmax(&output)),
            output,
        })
    }

    /// What the input port sends for one sample (see [`port_messages`]).
    pub fn port_messages(
        &self,
        phases: &[Phase],
        input: Option<&[i32]>,
        label: Option<usize>,
        batch: Option<&[usize]>,
        sample: u32,
    ) -> Vec<PortMessage> {
        port_messages(&self.program, phases, input, label, batch, sample)
    }

    /// Load and stalls of every link used so far.
    pub fn link_stats(&self) -> Vec<crate::router::LinkStats> {
        self.network.link_stats()
    }

    /// Load and stalls of every link (used or not), in a fixed order, for differences.
    pub fn all_link_stats(&self) -> &[crate::router::LinkStats] {
        self.network.all_link_stats()
    }

    /// The probed neuron's accumulator and output on core `ci` (0 where the core has none).
    pub(crate) fn probe(&self, ci: usize) -> (i64, i32) {
        let c = &self.cores[ci];
        let acc = c
            .acc
            .get(self.probe_neuron.min(c.acc.len().saturating_sub(1)));
        let out = c
            .out
            .get(self.probe_neuron.min(c.out.len().saturating_sub(1)));
        (acc.copied().unwrap_or(0), out.copied().unwrap_or(0))
    }

    /// The network, for waveforms.
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// Puts every core's memories back to `from`'s (a copy of this machine), keeping the
    /// counters and the network's statistics: inference chunks start from the same state.
    pub(crate) fn restore_cores(&mut self, from: &Machine) {
        self.cores.clone_from(&from.cores);
    }

    /// The network model (its statistics).
    pub fn network(&self) -> &Network {
        &self.network
    }

    pub(crate) fn core_count(&self) -> usize {
        self.program.cores.len()
    }

    /// A copy for replaying timing ([`Machine::replay`]): everything but the cores' memories,
    /// which a replay never reads.
    pub(crate) fn timing_copy(&mut self) -> Machine {
        let cores = std::mem::take(&mut self.cores);
        let copy = self.clone();
        self.cores = cores;
        copy
    }

    pub(crate) fn hops_of(&self, route: RouteId) -> u32 {
        self.hops[route.index()]
    }

    pub(crate) fn stream(&self, ci: usize, phase: Phase) -> &[Instr] {
        stream_of(&self.program, ci, phase)
    }

    /// The values a `send` on `route` reads from core `ci`, with the SRAM read counted.
    pub(crate) fn send_values(&mut self, ci: usize, route: RouteId) -> Vec<i64> {
        let r = &self.program.routes[route.index()];
        let values = read_buf(
            &self.cores[ci],
            r.src_buf,
            r.src_start as usize,
            r.len as usize,
        );
        self.counters.sram_bits_read += timing::packets(&values) * ERROR_BITS;
        values
    }

    /// A `recv` of `values` on `route` into core `ci`; returns its cycles.
    pub(crate) fn recv_message(&mut self, ci: usize, route: RouteId, values: &[i64]) -> Cycles {
        let r = &self.program.routes[route.index()];
        let packets = timing::packets(values);
        write_buf(&mut self.cores[ci], r.dst_buf, r.dst_start as usize, values);
        self.counters.sram_bits_written += packets * ERROR_BITS;
        timing::instr_cycles(
            &Instr::Recv { route },
            &Activity::default(),
            packets,
            &self.program.chip.costs,
        )
    }

    /// Executes one instruction other than `send` and `recv` (the engine moves messages) on
    /// core `ci` in a job of `phase` whose updates use random-bit step `step`. Returns its cycles,
    /// the activity they were charged for, and whether it ends the stream.
    pub(crate) fn exec(
        &mut self,
        ci: usize,
        instr: Instr,
        phase: Phase,
        step: u64,
        tau: u16,
    ) -> Result<(Cycles, Activity, bool), EmuError> {
        let costs = self.program.chip.costs;
        let classes = self.program.network.classes as usize;
        // Every time step's updates draw fresh random bits; the learning rate anneals by sample.
        let neuron = self.program.network.neuron;
        let key_step = if neuron.has_time() {
            step * neuron.steps() as u64 + tau as u64
        } else {
            step
        };
        let core = &mut self.cores[ci];
        let layer = &self.layers[core.layer];
        let mut a = Activity::default();
        let mut halt = false;
        match instr {
            Instr::Nop {} | Instr::Sync {} | Instr::LdRem { .. } | Instr::MvmT { .. } => {}
            Instr::Halt {} => halt = true,
            Instr::Recv { .. } | Instr::Send { .. } => {
                unreachable!("the engine moves messages")
            }
            Instr::NStep {} | Instr::NStepT { .. } => {
                let net = &self.program.network;
                let params = kernels::NeuronParams {
                    model: net.neuron,
                    act: layer.act_time,
                    state_fmt: layer.state_fmt,
                    state_shift: layer.state_shift,
                    out_fmt: layer.out_fmt,
                };
                let (first, last) = (tau == 0, tau + 1 == net.neuron.steps());
                let cols = core.cols;
                if let Instr::NStepT { class } = instr {
                    let k = class.0 as usize;
                    let r = k * cols..(k + 1) * cols;
                    a = kernels::neuron_step(
                        &params,
                        first,
                        &core.acc,
                        &mut core.tstate[r.clone()],
                        &mut core.tspk[r.clone()],
                        &mut core.out,
                    );
                    if !core.spk.is_empty() {
                        core.spk.copy_from_slice(&core.tspk[r.clone()]);
                    }
                    // The class target: the mean of the signal over the steps (LIF), or the
                    // stream's state at this step (continuous time).
                    let sum = &mut core.tsum[r.clone()];
                    if first {
                        sum.fill(0);
                    }
                    for (s, &o) in sum.iter_mut().zip(&core.out) {
                        *s += o as i64;
                    }
                    if !net.neuron.is_lif() {
                        // Continuous time: the class target is the stream's current state.
                        core.tgt[r].copy_from_slice(&core.out);
                    } else if last {
                        let n = net.neuron.steps() as i64;
                        for (j, t) in core.tgt[r].iter_mut().enumerate() {
                            *t = if net.neuron.is_lif() {
                                (sum[j] + n / 2).div_euclid(n) as i32
                            } else {
                                core.out[j]
                            };
                        }
                    }
                } else {
                    a = kernels::neuron_step(
                        &params,
                        first,
                        &core.acc,
                        &mut core.state,
                        &mut core.spk,
                        &mut core.out,
                    );
                    if let Some(log) = self.step_log.as_mut() {
                        log.push(crate::plot::StepRecord {
                            layer: core.layer,
                            col_start: core.col_start as usize,
                            tau,
                            cycle: 0,
                            spikes: core.spk.iter().map(|&s| s != 0).collect(),
                            state: core.state.clone(),
                        });
                    }
                    if phase == Phase::Forward {
                        let active = if net.neuron.is_lif() {
                            a.spikes
                        } else {
                            core.out.iter().filter(|&&o| o != 0).count() as u64
                        };
                        self.counters.active_outputs[core.layer] += active;
                        self.counters.outputs[core.layer] += cols as u64;
                        self.counters.spikes[core.layer] += a.spikes;
                    }
                }
                self.counters.saturations.activation += a.saturations;
                self.counters.neuron_updates += a.neurons;
            }
            Instr::Mvm { .. } => {
                a = kernels::mvm(
                    &core.w,
                    core.cols,
                    &core.inb,
                    &mut core.acc,
                    layer.acc_fmt,
                    layer.weight_fmt.min_raw().unsigned_abs(),
                );
                self.counters.saturations.accumulator += a.saturations;
                self.counters.synaptic_ops += a.synapses;
            }
            Instr::Proj { class } => {
                let s = core
                    .proj
                    .as_ref()
                    .expect("verified: proj only on projection cores");
                a = kernels::proj(
                    s,
                    core.cols,
                    class.0 as usize,
                    classes,
                    layer.proj_shift,
                    &mut core.acc,
                    layer.acc_fmt,
                );
                self.counters.saturations.accumulator += a.saturations;
            }
            Instr::AddPs {} => {
                a = kernels::add_sat(&mut core.acc, &core.psum, layer.acc_fmt);
                self.counters.saturations.accumulator += a.saturations;
            }
            Instr::Act {} => {
                a = kernels::act(
                    &core.acc,
                    layer.act_shift,
                    layer.act,
                    &mut core.out,
                    layer.out_fmt,
                );
                self.counters.saturations.activation += a.saturations;
                self.counters.neuron_updates += a.neurons;
                if phase == Phase::Forward {
                    let active = core.out.iter().filter(|&&o| o != 0).count() as u64;
                    self.counters.active_outputs[core.layer] += active;
                    self.counters.outputs[core.layer] += core.cols as u64;
                }
            }
            Instr::TStore { class } => {
                let k = class.0 as usize;
                core.tgt[k * core.cols..(k + 1) * core.cols].copy_from_slice(&core.out);
                a.neurons = core.cols as u64;
            }
            Instr::TInStore { class } => {
                let (k, rows) = (class.0 as usize, core.inb.len());
                core.tgtin[k * rows..(k + 1) * rows].copy_from_slice(&core.inb);
                a.neurons = rows as u64;
            }
            Instr::Score { mode } => {
                a = match mode {
                    ScoreMode::Targets => {
                        kernels::score_targets(&core.out, &core.tgt, &mut core.score)
                    }
                    ScoreMode::Direct => {
                        kernels::score_direct(&core.out, core.col_start as usize, &mut core.score)
                    }
                    ScoreMode::TargetsL2 => {
                        kernels::score_targets_l2(&core.out, &core.tgt, &mut core.score)
                    }
                };
                self.counters.saturations.score += saturate_scores(&mut core.score);
            }
            Instr::AddSc {} => {
                for (s, &x) in core.score.iter_mut().zip(&core.score_in) {
                    *s += x;
                }
                a.neurons = classes as u64;
                self.counters.saturations.score += saturate_scores(&mut core.score);
            }
            Instr::Smax {} => {
                let info = &self.program.layers[core.layer];
                let mode = if info.keeps_targets { 0 } else { 1 };
                a = if info.loss.is_contrastive() {
                    let gram = (core.layer > 0).then_some(&core.gram[..]);
                    let sel = kernels::contrastive_select(
                        info.loss,
                        core.label,
                        &core.batch,
                        gram,
                        classes,
                    )
                    .ok_or_else(|| {
                        EmuError::Shape(format!(
                            "label {} is not among the labels of its mini-batch at {} ({}): \
                             the batch phase must run before the batch's samples learn",
                            core.label,
                            CoreId(ci as u16),
                            info.id
                        ))
                    })?;
                    kernels::softmax_err_contrastive(
                        &core.score,
                        layer.score_frac[mode],
                        &sel,
                        layer.prob_fmt,
                        &mut core.err,
                    )
                } else {
                    kernels::softmax_err(
                        &core.score,
                        layer.score_frac[mode],
                        core.label,
                        layer.prob_fmt,
                        &mut core.err,
                    )
                };
                self.counters.saturations.probability += a.saturations;
            }
            Instr::Gram {} => {
                a = kernels::gram(&core.tgt, core.cols, classes, &mut core.gram_part);
                self.counters.saturations.score += saturate_scores(&mut core.gram_part);
            }
            Instr::AddG {} => {
                for (g, &x) in core.gram.iter_mut().zip(&core.gram_in) {
                    *g += x;
                }
                a.neurons = core.gram.len() as u64;
                self.counters.saturations.score += saturate_scores(&mut core.gram);
            }
            Instr::Delta { mode } => {
                a = match mode {
                    DeltaMode::Targets => kernels::delta_targets(
                        &core.err,
                        &core.tgt,
                        &core.out,
                        layer.act,
                        &mut core.delta,
                    ),
                    DeltaMode::Direct => kernels::delta_direct(
                        &core.err,
                        core.col_start as usize,
                        &core.out,
                        layer.act,
                        &mut core.delta,
                    ),
                    DeltaMode::L2 | DeltaMode::Hebbian => {
                        let k = core.label;
                        let f = (mode == DeltaMode::L2).then_some(layer.act);
                        kernels::delta_mismatch(
                            &core.out,
                            &core.tgt[k * core.cols..(k + 1) * core.cols],
                            f,
                            &mut core.delta,
                        )
                    }
                };
                if let (Some(shift), DeltaMode::Targets | DeltaMode::Direct) =
                    (layer.surrogate_shift, mode)
                {
                    let one = (1i32 << layer.out_fmt.frac).min(layer.out_fmt.max_raw() as i32);
                    kernels::surrogate_gate(&core.out, one, shift, &mut core.delta);
                }
                self.counters.saturations.error += saturate_errors(&mut core.delta);
            }
            Instr::DeltaT { class } => {
                let k = class.resolve(core.label);
                let tgt_k = &core.tgt[k * core.cols..(k + 1) * core.cols];
                a = if self.program.layers[core.layer].loss == LocalLoss::L2 {
                    kernels::delta_target_mismatch(&core.out, tgt_k, layer.act, &mut core.deltat)
                } else {
                    kernels::delta_target_stream(
                        core.err[k],
                        &core.out,
                        tgt_k,
                        layer.act,
                        &mut core.deltat,
                    )
                };
                self.counters.saturations.error += saturate_errors(&mut core.deltat);
            }
            Instr::GAcc { pre } => {
                let rows = core.inb.len();
                let x = match pre {
                    Pre::Target => &core.tgtin[core.label * rows..(core.label + 1) * rows],
                    Pre::Data => &core.inb[..],
                };
                let fmt = QFormat::new(sigchip_isa::memory::gradient_bits(&self.program) as u8, 0);
                a = kernels::accumulate(&mut core.grad, core.cols, x, &core.delta, fmt);
                self.counters.saturations.weight += a.saturations;
                // An accumulator read-modify-write, charged as data SRAM traffic.
                let bits = a.synapses * fmt.bits as u64;
                self.counters.sram_bits_read += bits;
                self.counters.sram_bits_written += bits;
            }
            Instr::GApply {} => {
                // The batch mean is one more shift by log2(batch).
                let batch = self.program.network.batch;
                let shift = layer.delta_frac + layer.in_frac - layer.weight_fmt.frac as i32
                    + layer.lr
                    + self.program.network.lr_anneal(step)
                    + batch.trailing_zeros() as i32;
                let key = UpdateKey {
                    seed: self.program.network.seed,
                    layer: layer.index,
                    row_start: core.row_start,
                    col_start: core.col_start,
                    step: key_step * 512 + 511,
                };
                a = kernels::apply(
                    &mut core.w,
                    core.cols,
                    &mut core.grad,
                    shift,
                    layer.rounding,
                    key,
                    layer.weight_fmt,
                );
                self.counters.saturations.weight += a.saturations;
                self.counters.weight_updates += a.synapses;
            }
            Instr::Upd { .. } | Instr::UpdT { .. } => {
                let (x, delta, frac, sub) = match instr {
                    Instr::UpdT { class } => {
                        let (k, rows) = (class.resolve(core.label), core.inb.len());
                        (
                            &core.tgtin[k * rows..(k + 1) * rows],
                            &core.deltat,
                            layer.deltat_frac,
                            1 + k as u64,
                        )
                    }
                    Instr::Upd { pre: Pre::Target } => {
                        let (k, rows) = (core.label, core.inb.len());
                        (
                            &core.tgtin[k * rows..(k + 1) * rows],
                            &core.delta,
                            layer.delta_frac,
                            0,
                        )
                    }
                    _ => (&core.inb[..], &core.delta, layer.delta_frac, 0),
                };
                let shift = frac + layer.in_frac - layer.weight_fmt.frac as i32
                    + layer.lr
                    + self.program.network.lr_anneal(step);
                let key = UpdateKey {
                    seed: self.program.network.seed,
                    layer: layer.index,
                    row_start: core.row_start,
                    col_start: core.col_start,
                    step: key_step * 512 + sub,
                };
                a = kernels::update(
                    &mut core.w,
                    core.cols,
                    x,
                    delta,
                    shift,
                    layer.rounding,
                    key,
                    layer.weight_fmt,
                );
                self.counters.saturations.weight += a.saturations;
                self.counters.weight_updates += a.synapses;
            }
            Instr::UpdP { class } => {
                let fmt = layer
                    .proj_fmt
                    .expect("verified: updp only on projection cores");
                let s = core
                    .proj
                    .as_mut()
                    .expect("verified: updp only on projection cores");
                // The target stream's input is one-hot: row `class` and the bias row see a 1.
                let shift = layer.deltat_frac - fmt.frac as i32
                    + layer.lr
                    + self.program.network.lr_anneal(step);
                let k = class.resolve(core.label);
                for (row, sub) in [(k, 1 + k as u64), (classes, 300 + k as u64)] {
                    let key = UpdateKey {
                        seed: self.program.network.seed,
                        layer: 0,
                        row_start: row as u32,
                        col_start: core.col_start,
                        step: key_step * 512 + sub,
                    };
                    let r = &mut s[row * core.cols..(row + 1) * core.cols];
                    let u = kernels::update(
                        r,
                        core.cols,
                        &[1],
                        &core.deltat,
                        shift,
                        layer.rounding,
                        key,
                        fmt,
                    );
                    a.rows += u.rows;
                    a.synapses += u.synapses;
                    self.counters.saturations.weight += u.saturations;
                }
                self.counters.weight_updates += a.synapses;
            }
        }
        Ok((timing::instr_cycles(&instr, &a, 0, &costs), a, halt))
    }

    /// Marks the end of one training sample's updates (the next ones draw new random bits).
    pub fn next_update_step(&mut self) {
        self.update_step += 1;
    }

    /// The update step the next training sample's updates use.
    pub fn update_step(&self) -> u64 {
        self.update_step
    }

    /// Advances the update step by `n` samples (after a pipelined run of `n` samples).
    pub fn advance_update_step(&mut self, n: u64) {
        self.update_step += n;
    }
}

fn stream_of(p: &Program, ci: usize, phase: Phase) -> &[Instr] {
    let s = &p.cores[ci].streams;
    match phase {
        Phase::Targets => &s.targets,
        Phase::Forward => &s.forward,
        Phase::Learn => &s.learn,
        Phase::Apply => &s.apply,
        Phase::Batch => &s.batch,
    }
}

/// Index of the largest value; ties go to the first.
pub fn argmax(v: &[i64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Score registers are `SCORE_BITS` wide.
fn saturate_scores(s: &mut [i64]) -> u64 {
    kernels::saturate_all(s, QFormat::new(sigchip_isa::memory::SCORE_BITS as u8, 0))
}

/// Error registers are `ERROR_BITS` wide.
fn saturate_errors(d: &mut [i64]) -> u64 {
    kernels::saturate_all(d, QFormat::new(ERROR_BITS as u8, 0))
}

fn read_buf(c: &Core, buf: Buf, start: usize, len: usize) -> Vec<i64> {
    let r = start..start + len;
    match buf {
        Buf::In => c.inb[r].iter().map(|&v| v as i64).collect(),
        Buf::Out => c.out[r].iter().map(|&v| v as i64).collect(),
        Buf::Err => c.err[r].iter().map(|&v| v as i64).collect(),
        Buf::Acc => c.acc[r].to_vec(),
        Buf::Psum => c.psum[r].to_vec(),
        Buf::Score => c.score[r].to_vec(),
        Buf::ScoreIn => c.score_in[r].to_vec(),
        Buf::Delta => c.delta[r].to_vec(),
        Buf::DeltaT => c.deltat[r].to_vec(),
        Buf::Label => vec![c.label as i64],
        Buf::Batch => c.batch[r].to_vec(),
        Buf::Gram => c.gram[r].to_vec(),
        Buf::GramIn => c.gram_in[r].to_vec(),
        Buf::GramPart => c.gram_part[r].to_vec(),
        Buf::Spike => c.spk[r].iter().map(|&v| v as i64).collect(),
    }
}

fn write_buf(c: &mut Core, buf: Buf, start: usize, values: &[i64]) {
    fn narrow(dst: &mut [i32], v: &[i64]) {
        for (d, &x) in dst.iter_mut().zip(v) {
            *d = x as i32;
        }
    }
    let r = start..start + values.len();
    match buf {
        Buf::In => narrow(&mut c.inb[r], values),
        Buf::Out => narrow(&mut c.out[r], values),
        Buf::Err => narrow(&mut c.err[r], values),
        Buf::Acc => c.acc[r].copy_from_slice(values),
        Buf::Psum => c.psum[r].copy_from_slice(values),
        Buf::Score => c.score[r].copy_from_slice(values),
        Buf::ScoreIn => c.score_in[r].copy_from_slice(values),
        Buf::Delta => c.delta[r].copy_from_slice(values),
        Buf::DeltaT => c.deltat[r].copy_from_slice(values),
        Buf::Label => c.label = values.first().copied().unwrap_or(0) as usize,
        Buf::Batch => c.batch[r].copy_from_slice(values),
        Buf::Gram => c.gram[r].copy_from_slice(values),
        Buf::GramIn => c.gram_in[r].copy_from_slice(values),
        Buf::GramPart => c.gram_part[r].copy_from_slice(values),
        Buf::Spike => narrow(&mut c.spk[r], values),
    }
}

impl Counters {
    /// `self - earlier`, field by field: the events between two snapshots.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            instructions: self.instructions - earlier.instructions,
            synaptic_ops: self.synaptic_ops - earlier.synaptic_ops,
            weight_updates: self.weight_updates - earlier.weight_updates,
            neuron_updates: self.neuron_updates - earlier.neuron_updates,
            packets: self.packets - earlier.packets,
            packet_hops: self.packet_hops - earlier.packet_hops,
            sram_bits_read: self.sram_bits_read - earlier.sram_bits_read,
            sram_bits_written: self.sram_bits_written - earlier.sram_bits_written,
            saturations: self.saturations.since(&earlier.saturations),
            busy_cycles: sub(&self.busy_cycles, &earlier.busy_cycles),
            recv_wait_cycles: sub(&self.recv_wait_cycles, &earlier.recv_wait_cycles),
            send_wait_cycles: sub(&self.send_wait_cycles, &earlier.send_wait_cycles),
            active_outputs: sub(&self.active_outputs, &earlier.active_outputs),
            outputs: sub(&self.outputs, &earlier.outputs),
            spikes: sub(&self.spikes, &earlier.spikes),
        }
    }

    /// Adds another count into this one.
    pub fn add(&mut self, o: &Counters) {
        self.instructions += o.instructions;
        self.synaptic_ops += o.synaptic_ops;
        self.weight_updates += o.weight_updates;
        self.neuron_updates += o.neuron_updates;
        self.packets += o.packets;
        self.packet_hops += o.packet_hops;
        self.sram_bits_read += o.sram_bits_read;
        self.sram_bits_written += o.sram_bits_written;
        self.saturations.add(&o.saturations);
        add(&mut self.busy_cycles, &o.busy_cycles);
        add(&mut self.recv_wait_cycles, &o.recv_wait_cycles);
        add(&mut self.send_wait_cycles, &o.send_wait_cycles);
        add(&mut self.active_outputs, &o.active_outputs);
        add(&mut self.outputs, &o.outputs);
        add(&mut self.spikes, &o.spikes);
    }
}

fn sub(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter()
        .zip(b.iter().chain(std::iter::repeat(&0)))
        .map(|(x, y)| x - y)
        .collect()
}

fn add(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl Machine {
    /// The nearest-target prediction of every layer that keeps class targets (`None` for the
    /// others): the class whose target has the largest dot product with the layer's current
    /// output. A diagnostic read of the cores' state, outside the chip's time.
    pub fn layer_predictions(&self) -> Vec<Option<usize>> {
        let classes = self.program.network.classes as usize;
        let mut scores = vec![vec![0i64; classes]; self.program.layers.len()];
        for (core, cp) in self.cores.iter().zip(&self.program.cores) {
            if core.tgt.is_empty() || !cp.tile.is_reducer() {
                continue;
            }
            let mut s = vec![0i64; classes];
            kernels::score_targets(&core.out, &core.tgt, &mut s);
            for (a, b) in scores[core.layer].iter_mut().zip(s) {
                *a += b;
            }
        }
        self.program
            .layers
            .iter()
            .zip(scores)
            .map(|(l, s)| l.keeps_targets.then(|| argmax(&s)))
            .collect()
    }
}

/// What the input port sends for one sample running `phases`, in order: the projected class
/// targets (`to_input`, targets phase, class by class), the batch's labels (batch phase,
/// empty slots past a short batch's end), the sample's slices (forward phase) and the label
/// (learn phase), route by route.
pub fn port_messages(
    program: &Program,
    phases: &[Phase],
    input: Option<&[i32]>,
    label: Option<usize>,
    batch: Option<&[usize]>,
    sample: u32,
) -> Vec<PortMessage> {
    let classes = program.network.classes as usize;
    let mut out = Vec::new();
    let slice = |r: &sigchip_isa::Route, x: &[i32]| -> Vec<i64> {
        x[r.src_start as usize..(r.src_start + r.len) as usize]
            .iter()
            .map(|&v| v as i64)
            .collect()
    };
    let mut push = |route: RouteId, values: Vec<i64>| {
        out.push(PortMessage {
            route,
            values,
            sample,
        })
    };
    if phases.contains(&Phase::Targets) && program.projects_to_input() {
        for k in 0..classes as u32 {
            let projected = program.input_projection(k);
            for r in &program.routes {
                if r.src == Endpoint::Input && r.src_buf == Buf::In {
                    push(r.id, slice(r, &projected));
                }
            }
        }
    }
    for r in &program.routes {
        if let (Endpoint::Input, Buf::Batch, Some(b)) = (r.src, r.src_buf, batch) {
            if phases.contains(&Phase::Batch) {
                let mut v: Vec<i64> = b.iter().map(|&l| l as i64).collect();
                v.resize(r.len as usize, EMPTY_SLOT);
                push(r.id, v);
            }
        }
    }
    for r in &program.routes {
        match (r.src, r.src_buf, input, label) {
            (Endpoint::Input, Buf::In, Some(x), _) if phases.contains(&Phase::Forward) => {
                push(r.id, slice(r, x))
            }
            (Endpoint::Input, Buf::Label, _, Some(y)) if phases.contains(&Phase::Learn) => {
                push(r.id, vec![y as i64])
            }
            _ => {}
        }
    }
    out
}

/// The jobs every core runs for one sample running `phases` (in the order given), and what the
/// input port sends for them, in order. Without time a phase is one job. With time (`lif`,
/// `continuous`) `targets` is one job per time step, `forward` and `learn` alternate step by
/// step (`forward` alone when inferring), each step with its own input (the encoder's spikes,
/// or the image again) and label, and a sample that learns with summed updates ends with
/// `apply`.
#[allow(clippy::too_many_arguments)]
pub fn sample_work(
    program: &Program,
    phases: &[Phase],
    step: u64,
    sample: u32,
    key: u64,
    input: Option<&[i32]>,
    label: Option<usize>,
    batch: Option<&[usize]>,
) -> (Vec<Job>, Vec<PortMessage>) {
    let neuron = program.network.neuron;
    let job = |phase, tau| Job {
        phase,
        step,
        sample,
        tau,
    };
    if !neuron.has_time() {
        let jobs = phases.iter().map(|&p| job(p, 0)).collect();
        return (
            jobs,
            port_messages(program, phases, input, label, batch, sample),
        );
    }
    let steps = neuron.steps();
    let mut jobs = Vec::new();
    let mut messages = Vec::new();
    // Continuous time: the target stream runs alongside the data stream, step by step, so the
    // rule compares states of the same moment.
    let alongside = !neuron.is_lif() && phases.contains(&Phase::Forward);
    if phases.contains(&Phase::Targets) && !alongside {
        for tau in 0..steps {
            jobs.push(job(Phase::Targets, tau));
            messages.extend(port_messages(
                program,
                &[Phase::Targets],
                None,
                None,
                None,
                sample,
            ));
        }
    }
    if phases.contains(&Phase::Batch) {
        jobs.push(job(Phase::Batch, 0));
        messages.extend(port_messages(
            program,
            &[Phase::Batch],
            None,
            None,
            batch,
            sample,
        ));
    }
    let learn = phases.contains(&Phase::Learn);
    if phases.contains(&Phase::Forward) {
        let inputs = step_inputs(program, input, key);
        for (tau, x) in inputs.iter().enumerate() {
            if alongside && phases.contains(&Phase::Targets) {
                jobs.push(job(Phase::Targets, tau as u16));
                messages.extend(port_messages(
                    program,
                    &[Phase::Targets],
                    None,
                    None,
                    None,
                    sample,
                ));
            }
            jobs.push(job(Phase::Forward, tau as u16));
            let mut p = vec![Phase::Forward];
            if learn {
                jobs.push(job(Phase::Learn, tau as u16));
                p.push(Phase::Learn);
            }
            messages.extend(port_messages(
                program,
                &p,
                x.as_deref(),
                label,
                None,
                sample,
            ));
        }
        if learn && neuron.sums_updates() {
            jobs.push(job(Phase::Apply, 0));
        }
    }
    if phases.contains(&Phase::Apply) {
        jobs.push(job(Phase::Apply, 0));
    }
    (jobs, messages)
}

/// The input port's input at every time step of a sample: the encoder's spikes (LIF: a spike is
/// the input format's largest value) or the same input again (continuous time).
fn step_inputs(program: &Program, input: Option<&[i32]>, key: u64) -> Vec<Option<Vec<i32>>> {
    let neuron = program.network.neuron;
    let steps = neuron.steps() as u32;
    let Some(x) = input else {
        return vec![None; steps as usize];
    };
    match neuron {
        sigchip_isa::NeuronModel::Lif { encoding, .. } => {
            let max = program.network.input_format.max_raw();
            let values: Vec<u32> = x.iter().map(|&v| v.max(0) as u32).collect();
            let spikes = match encoding {
                sigchip_isa::Encoding::Rate => {
                    sigchip_isa::encode::rate(program.network.seed, key, &values, max as u32, steps)
                }
                sigchip_isa::Encoding::Latency => {
                    sigchip_isa::encode::latency(&values, max as u32, steps)
                }
            };
            spikes
                .iter()
                .map(|s| Some(s.iter().map(|b| if *b { max as i32 } else { 0 }).collect()))
                .collect()
        }
        _ => vec![Some(x.to_vec()); steps as usize],
    }
}
