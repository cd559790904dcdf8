//! Training and inference runs over a data set: the sample loop, the sequential schedule and
//! the measurements that go into the [`Report`].
//!
//! Schedule (sequential): every `target_refresh` training samples the `targets` phase runs; each
//! training sample then runs `forward` followed, on each core, by `learn` (a layer starts
//! learning as soon as its own forward work is done, while later layers still compute: no update
//! locking); a barrier (`costs.sync`) separates samples. With mini-batches (`batch` > 1) the
//! `apply` phase ends every batch of `batch` samples, and each epoch's last, partial batch; with
//! a batch-contrastive loss the `batch` phase starts each batch (the input port sends its labels).
//! Inference runs `forward` only.

use crate::data::{Dataset, Split};
use crate::decoupled::TimingThreads;
use crate::engine::{EngineKind, Job, PortMessage};
use crate::machine::{argmax, sample_work, Counters, EmuError, Machine, Phase};
use crate::report::{self, CriticalPaths, Report};
use crate::router::LinkStats;
use crate::timing::Cycles;
use crate::vcd::{Waveform, Window};
use rayon::prelude::*;
use sigchip_isa::rng::SplitMix64;
use sigchip_isa::{Program, QFormat};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The input encoder's sample key of evaluation sample `i` is `EVAL_KEY | i`; training
/// samples use their training step (spiking inputs are encoded per sample key).
pub const EVAL_KEY: u64 = 1 << 48;

/// Options of a training run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: u32,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
    /// How training samples follow each other (inference is always sequential).
    pub schedule: Schedule,
    /// The engine that steps the chip.
    pub engine: EngineKind,
    /// Write a waveform of this window of the training time line (all runs back to back).
    pub vcd: Option<(std::path::PathBuf, Window)>,
    /// Networks with time: after training, plot the first test sample (spike raster and
    /// membrane potentials, SVG) into this directory.
    pub plot: Option<std::path::PathBuf>,
}

impl TrainOptions {
    /// `epochs` with shuffle `seed`, sequential, on the event engine.
    pub fn new(epochs: u32, seed: u64) -> TrainOptions {
        TrainOptions {
            epochs,
            seed,
            schedule: Schedule::Sequential,
            engine: EngineKind::Event,
            vcd: None,
            plot: None,
        }
    }
}

/// How training samples follow each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Every sample starts when the previous one has finished on every core, after a barrier.
    #[default]
    Sequential,
    /// A layer takes the next sample as soon as it has updated for the current one: every core
    /// runs its streams sample after sample with no barrier, so the layers work on different
    /// samples at once. Each core runs the same streams in the same order as sequentially and
    /// data only flows forward, so every update is the same: the weights are bit-identical.
    Pipelined,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sequential" => Ok(Schedule::Sequential),
            "pipelined" => Ok(Schedule::Pipelined),
            _ => Err(format!(
                "unknown schedule `{s}`: expected `sequential` or `pipelined`"
            )),
        }
    }
}

/// What a pipelined run of training samples measured.
#[derive(Clone, Debug, Default)]
pub struct PipelineRun {
    /// From the first cycle to the last core's halt.
    pub cycles: Cycles,
    /// The prediction of each sample's forward pass (before its update).
    pub predictions: Vec<Option<usize>>,
    /// The most samples being worked on (started, not finished) at one time.
    pub max_in_flight: usize,
}

/// Trains `n` samples as one pipelined run, starting a mini-batch at the first. `input(j, x)`
/// writes sample `j`'s encoded input into `x`; `label(j)` is its class.
pub fn train_pipelined(
    m: &mut Machine,
    n: usize,
    input: &mut dyn FnMut(usize, &mut Vec<i32>),
    label: &dyn Fn(usize) -> usize,
) -> Result<PipelineRun, EmuError> {
    let net = m.program().network.clone();
    let batch = net.batch as usize;
    let contrastive = m.program().layers.iter().any(|l| l.loss.is_contrastive());
    let keeps_targets = m.program().layers.iter().any(|l| l.keeps_targets);
    let first = m.update_step();
    // Every core's jobs, sample by sample, and the phases of each sample.
    let mut jobs = Vec::new();
    let mut phases_of = Vec::with_capacity(n);
    for j in 0..n {
        let step = first + j as u64;
        let mut phases = Vec::new();
        if keeps_targets && step.is_multiple_of(net.target_refresh as u64) {
            phases.push(Phase::Targets);
        }
        if contrastive && j % batch == 0 {
            phases.push(Phase::Batch);
        }
        phases.extend([Phase::Forward, Phase::Learn]);
        let (sample_jobs, _) =
            sample_work(m.program(), &phases, step, j as u32, step, None, None, None);
        jobs.extend(sample_jobs);
        if batch > 1 && ((j + 1) % batch == 0 || j + 1 == n) {
            jobs.push(Job {
                phase: Phase::Apply,
                step: step + 1,
                sample: j as u32,
                tau: 0,
            });
        }
        phases_of.push(phases);
    }
    let program = m.program().clone();
    let mut x = Vec::new();
    let mut feed = |j: u32, out: &mut Vec<PortMessage>| -> bool {
        let j = j as usize;
        if j >= n {
            return false;
        }
        input(j, &mut x);
        let labels: Vec<usize> = if j.is_multiple_of(batch) {
            (j..(j + batch).min(n)).map(label).collect()
        } else {
            Vec::new()
        };
        let step = first + j as u64;
        let (_, messages) = sample_work(
            &program,
            &phases_of[j],
            step,
            j as u32,
            step,
            Some(&x),
            Some(label(j)),
            Some(&labels),
        );
        out.extend(messages);
        true
    };
    let ex = m.execute(&jobs, 0, &mut feed)?;
    m.advance_update_step(n as u64);
    let predictions = ex
        .outputs
        .iter()
        .map(|o| o.at.map(|_| argmax(&o.output)))
        .collect();
    // The most overlapping sample spans.
    let mut edges: Vec<(Cycles, i32)> = ex
        .spans
        .iter()
        .filter(|s| s.0 <= s.1)
        .flat_map(|&(a, b)| [(a, 1), (b, -1)])
        .collect();
    edges.sort_unstable_by_key(|&(t, d)| (t, d));
    let (mut now, mut max_in_flight) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max_in_flight = max_in_flight.max(now);
    }
    Ok(PipelineRun {
        cycles: ex.end,
        predictions,
        max_in_flight: max_in_flight as usize,
    })
}

/// Progress callback: (samples done, samples total, phase name).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64, &str);

/// The order of the training samples in `epoch`: a Fisher-Yates shuffle driven by SplitMix64
/// seeded `seed ^ epoch * 0x9E37_79B9_7F4A_7C15`. The software references use it too, so every
/// backend sees the samples in the same order.
pub fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// Converts raw pixels to the input port's format: `round(p / max * max_raw)`, so the full
/// scale maps to the format's largest value and nothing saturates (pixels above the data set's
/// `max` are clamped to it).
pub fn encode_input(pixels: &[u8], max: u8, fmt: QFormat, out: &mut Vec<i32>) {
    out.clear();
    let max = max.max(1) as i64;
    let top = fmt.max_raw();
    out.extend(
        pixels
            .iter()
            .map(|&p| (((p as i64).min(max) * top + max / 2) / max) as i32),
    );
}

/// Checks that a data set fits the program's input port and classes.
pub fn check_shapes(program: &Program, data: &Dataset) -> Result<(), EmuError> {
    let net = &program.network;
    if data.input_len != net.input_len as usize {
        return Err(EmuError::Shape(format!(
            "{} has {} values per sample, program `{}` expects {} inputs",
            data.name, data.input_len, program.name, net.input_len
        )));
    }
    if data.classes > net.classes as usize {
        return Err(EmuError::Shape(format!(
            "{} has {} classes, program `{}` has {}",
            data.name, data.classes, program.name, net.classes
        )));
    }
    Ok(())
}

/// Accuracy and timing of an inference pass over a split.
#[derive(Clone, Debug, Default)]
pub struct EvalResult {
    pub correct: u64,
    /// Per layer: samples whose nearest class target was the label (`None` for layers without
    /// targets).
    pub layer_correct: Vec<Option<u64>>,
    pub samples: u64,
    pub cycles: Cycles,
    pub latency: Cycles,
}

impl EvalResult {
    /// Adds the counts of another part of the same split.
    fn add(&mut self, o: &EvalResult) {
        self.correct += o.correct;
        self.samples += o.samples;
        self.cycles += o.cycles;
        self.latency += o.latency;
        if self.layer_correct.len() < o.layer_correct.len() {
            self.layer_correct.resize(o.layer_correct.len(), None);
        }
        for (c, o) in self.layer_correct.iter_mut().zip(&o.layer_correct) {
            if let Some(o) = o {
                *c = Some(c.unwrap_or(0) + o);
            }
        }
    }

    pub fn accuracy(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.correct as f64 / self.samples as f64
        }
    }
}

/// Refreshes the class targets (when any layer keeps targets) and returns the cycles it took.
fn refresh_targets(m: &mut Machine) -> Result<Cycles, EmuError> {
    if m.program().layers.iter().any(|l| l.keeps_targets) {
        Ok(m.run(&[Phase::Targets], 0, None, None)?.end)
    } else {
        Ok(0)
    }
}

/// Ends a mini-batch (the `apply` phase). Returns its cycles.
fn apply_batch(m: &mut Machine) -> Result<Cycles, EmuError> {
    Ok(m.run(&[Phase::Apply], 0, None, None)?.end)
}

/// Inference over a split: the targets are refreshed first, then each sample runs `forward`.
pub fn evaluate(
    m: &mut Machine,
    split: &Split,
    max: u8,
    progress: Progress,
) -> Result<EvalResult, EmuError> {
    evaluate_traced(m, split, max, progress, &mut None)
}

/// Samples per evaluation chunk. Every chunk of an evaluation starts from the chip as the target
/// refresh left it, so chunks are independent and can run on copies of the machine in parallel.
/// The chunk size is fixed, so results are the same for every thread count, even for a program
/// whose inference reads a buffer the previous sample left behind (compiled programs never do).
pub const EVAL_CHUNK: usize = 256;

/// What evaluation chunks run on copies of the machine leave to merge, merged as they finish
/// (so memory does not grow with the number of chunks). Every merge is a sum or a maximum of
/// integers, so the order chunks finish in changes nothing.
#[derive(Default)]
struct ChunkOut {
    result: EvalResult,
    counters: Counters,
    /// A chunk's network, with the link statistics and largest occupancies of the chunks
    /// merged into it.
    network: Option<crate::router::Network>,
    /// The last chunk's machine: the state the evaluation ends in.
    machine: Option<Machine>,
    /// The error of the earliest failed chunk, by chunk number.
    error: Option<(usize, EmuError)>,
}

impl ChunkOut {
    /// `self` and `o` merged; `links` are the statistics every chunk's network started from.
    fn merge(mut self, o: ChunkOut, links: &[LinkStats]) -> ChunkOut {
        self.result.add(&o.result);
        self.counters.add(&o.counters);
        self.network = match (self.network, o.network) {
            (Some(mut a), Some(b)) => {
                a.absorb(&b, links);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        self.machine = self.machine.or(o.machine);
        self.error = match (self.error, o.error) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        self
    }
}

/// [`evaluate`], recording the window of `rec` (the refresh, then the samples back to back).
///
/// Every inference starts from an empty network at cycle 0 and changes neither weights nor
/// targets. The samples run in chunks of [`EVAL_CHUNK`], each from the state after the refresh:
/// on copies of the machine in parallel when the pool has more than one thread and nothing is
/// recorded, else one after the other on the machine itself. Counts, cycles, saturations and
/// link statistics are sums over the chunks, and the machine ends as its last chunk left it.
fn evaluate_traced(
    m: &mut Machine,
    split: &Split,
    max: u8,
    progress: Progress,
    rec: &mut Option<Waveform>,
) -> Result<EvalResult, EmuError> {
    let offset = traced(rec, m, 0, refresh_targets)?;
    let n = split.len();
    let chunks: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(EVAL_CHUNK)
        .map(|a| a..(a + EVAL_CHUNK).min(n))
        .collect();
    if chunks.len() <= 1 {
        return Ok(eval_range(m, split, 0..n, max, offset, rec, progress)?.0);
    }
    let base = m.clone();
    let serial =
        rec.is_some() || m.tracing || m.step_log.is_some() || rayon::current_num_threads() == 1;
    let mut r = EvalResult::default();
    if serial {
        let mut offset = offset;
        for (k, range) in chunks.iter().enumerate() {
            if k > 0 {
                m.restore_cores(&base);
            }
            let (part, end) = eval_range(m, split, range.clone(), max, offset, rec, progress)?;
            r.add(&part);
            offset = end;
        }
        return Ok(r);
    }
    let done = std::sync::atomic::AtomicU64::new(0);
    let (finished, wait) = std::sync::mpsc::channel::<()>();
    let last = chunks.len() - 1;
    let links = base.all_link_stats().to_vec();
    let mut out = ChunkOut::default();
    rayon::in_place_scope(|s| {
        let (base, done, chunks, out, links) = (&base, &done, &chunks, &mut out, &links);
        s.spawn(move |_| {
            *out = chunks
                .par_iter()
                .enumerate()
                .map(|(k, range)| {
                    let mut copy = base.clone();
                    let ran = eval_range(
                        &mut copy,
                        split,
                        range.clone(),
                        max,
                        0,
                        &mut None,
                        &mut |_, _, _| {},
                    );
                    done.fetch_add(range.len() as u64, Ordering::Relaxed);
                    let (result, _) = match ran {
                        Ok(r) => r,
                        Err(e) => {
                            return ChunkOut {
                                error: Some((k, e)),
                                ..Default::default()
                            }
                        }
                    };
                    let counters = copy.counters.since(&base.counters);
                    let last = k == last;
                    ChunkOut {
                        result,
                        counters,
                        network: (!last).then(|| copy.network().clone()),
                        machine: last.then_some(copy),
                        error: None,
                    }
                })
                .reduce(ChunkOut::default, |a, b| a.merge(b, links));
            // The receiver may be gone only if this thread panicked.
            let _ = finished.send(());
        });
        // This thread reports progress while the pool works, and wakes when it is done.
        let tick = std::time::Duration::from_millis(50);
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(tick) {
            progress(done.load(Ordering::Relaxed), n as u64, "inference");
        }
    });
    if let Some((_, e)) = out.error {
        return Err(e);
    }
    r.add(&out.result);
    m.counters.add(&out.counters);
    for network in out
        .network
        .iter()
        .chain(out.machine.as_ref().map(|l| l.network()))
    {
        m.network_mut().absorb(network, &links);
    }
    if let Some(last) = out.machine {
        m.restore_cores(&last);
    }
    Ok(r)
}

/// Inference of the samples `range` of a split, back to back from cycle `offset` (the
/// recording's time line).
fn eval_range(
    m: &mut Machine,
    split: &Split,
    range: std::ops::Range<usize>,
    max: u8,
    mut offset: Cycles,
    rec: &mut Option<Waveform>,
    progress: Progress,
) -> Result<(EvalResult, Cycles), EmuError> {
    let fmt = m.program().network.input_format;
    let sync = m.program().chip.costs.sync as u64;
    let mut x = Vec::new();
    let mut r = EvalResult::default();
    for i in range {
        encode_input(split.image(i), max, fmt, &mut x);
        m.sample_key = Some(EVAL_KEY | i as u64);
        let res = traced(rec, m, offset, |m| {
            m.run(&[Phase::Forward], 0, Some(&x), None)
        })?;
        offset += res.end + sync;
        r.samples += 1;
        r.correct += (res.prediction == Some(split.label(i))) as u64;
        let layers = m.layer_predictions();
        r.layer_correct.resize(layers.len(), None);
        for (c, p) in r.layer_correct.iter_mut().zip(layers) {
            if let Some(p) = p {
                *c = Some(c.unwrap_or(0) + (p == split.label(i)) as u64);
            }
        }
        m.sample_key = None;
        r.cycles += res.end + sync;
        r.latency += res.output_at.unwrap_or(res.end);
        if i.is_multiple_of(256) {
            progress(i as u64, split.len() as u64, "inference");
        }
    }
    Ok((r, offset))
}

/// One epoch of the training log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochLog {
    pub epoch: u32,
    /// Fraction of training samples predicted right by the forward pass before their update.
    /// With time steps and per-step updates the prediction comes from the sample's own run,
    /// during which the layers already learn from its label: an optimistic figure.
    pub train_online: f64,
    pub test: f64,
}

/// Trains on the data set's training split and evaluates on both splits.
pub fn train(
    program: Program,
    data: &Dataset,
    opts: &TrainOptions,
    progress: Progress,
) -> Result<(Program, Report), EmuError> {
    check_shapes(&program, data)?;
    let started = Instant::now();
    let mut m = Machine::new(program)?;
    m.engine = opts.engine;
    let net = m.program().network.clone();
    let sync = m.program().chip.costs.sync as u64;
    let n = data.train.len();
    let mut max_in_flight = 1;
    let total = opts.epochs as u64 * n as u64;
    let mut x = Vec::new();
    let mut train_cycles: Cycles = 0;
    let mut target_cycles: Cycles = 0;
    let mut epochs = Vec::new();
    let mut step = 0u64;
    let mut train_counters = Counters::default();
    let contrastive = m.program().layers.iter().any(|l| l.loss.is_contrastive());
    let critical_paths = critical_paths(m.program(), data, opts.engine)?;
    let mut rec = opts
        .vcd
        .as_ref()
        .map(|(_, w)| Waveform::new(m.program().cores.len(), m.network_mut(), *w));
    let mut links: Vec<LinkStats> = m.all_link_stats().to_vec();
    links.iter_mut().for_each(|l| {
        *l = LinkStats {
            from: l.from,
            dir: l.dir,
            ..Default::default()
        }
    });
    // Wall time of the training itself (samples, target refreshes, batch steps), without the
    // evaluations.
    let mut train_seconds = 0.0;
    let mut eval_seconds = 0.0;
    let mut last_test: Option<(EvalResult, Counters)> = None;
    for epoch in 0..opts.epochs {
        let epoch_started = Instant::now();
        let before = m.counters.clone();
        let links_before = m.all_link_stats().to_vec();
        let order = epoch_order(n, opts.seed, epoch);
        let mut correct = 0u64;
        if opts.schedule == Schedule::Pipelined {
            let fmt = net.input_format;
            let run = traced(&mut rec, &mut m, train_cycles, |m| {
                train_pipelined(
                    m,
                    n,
                    &mut |j, x| encode_input(data.train.image(order[j]), data.max_value, fmt, x),
                    &|j| data.train.label(order[j]),
                )
            })?;
            for (j, p) in run.predictions.iter().enumerate() {
                correct += (*p == Some(data.train.label(order[j]))) as u64;
            }
            train_cycles += run.cycles + sync;
            step += n as u64;
            max_in_flight = max_in_flight.max(run.max_in_flight);
        }
        // With a second thread and nothing recorded, each run's timing is replayed on it while
        // this thread computes the next runs (`decoupled`): the same bits and cycles.
        let split = opts.schedule == Schedule::Sequential
            && rec.is_none()
            && rayon::current_num_threads() > 1;
        let timing = split
            .then(|| TimingThreads::start(&mut m, rayon::current_num_threads()).ok())
            .flatten();
        let mut sequential = || -> Result<(), EmuError> {
            for (j, &i) in order
                .iter()
                .enumerate()
                .filter(|_| opts.schedule == Schedule::Sequential)
            {
                // Continuous time runs the target stream inside the sample, alongside the data.
                let due = step.is_multiple_of(net.target_refresh as u64);
                let alongside = net.neuron.has_time() && !net.neuron.is_lif();
                if due && !alongside {
                    let t = traced(&mut rec, &mut m, train_cycles, refresh_targets)?;
                    target_cycles += t;
                    train_cycles += t + sync;
                }
                if contrastive && (j as u64).is_multiple_of(net.batch as u64) {
                    let end = (j + net.batch as usize).min(n);
                    let labels: Vec<usize> =
                        order[j..end].iter().map(|&i| data.train.label(i)).collect();
                    train_cycles +=
                        traced(&mut rec, &mut m, train_cycles, |m| m.begin_batch(&labels))? + sync;
                }
                encode_input(
                    data.train.image(i),
                    data.max_value,
                    net.input_format,
                    &mut x,
                );
                let label = data.train.label(i);
                let phases: &[Phase] = if due && alongside {
                    &[Phase::Targets, Phase::Forward, Phase::Learn]
                } else {
                    &[Phase::Forward, Phase::Learn]
                };
                let res = traced(&mut rec, &mut m, train_cycles, |m| {
                    m.run(phases, 0, Some(&x), Some(label))
                })?;
                m.next_update_step();
                correct += (res.prediction == Some(label)) as u64;
                train_cycles += res.end + sync;
                step += 1;
                // Batches start with each epoch.
                if net.batch > 1 && (j as u64 + 1).is_multiple_of(net.batch as u64) {
                    train_cycles += traced(&mut rec, &mut m, train_cycles, apply_batch)? + sync;
                }
                if j % 256 == 0 {
                    progress(epoch as u64 * n as u64 + j as u64, total, "training");
                }
            }
            // An epoch ends its last, partial mini-batch.
            if net.batch > 1 && !(n as u64).is_multiple_of(net.batch as u64) {
                train_cycles += traced(&mut rec, &mut m, train_cycles, apply_batch)? + sync;
            }
            Ok(())
        };
        let computed = sequential();
        if let Some(t) = timing {
            // A replay's error comes from an earlier run than any error of the computation.
            let timed = t.settle(&mut m)?;
            train_cycles += timed.cycles;
            target_cycles += timed.refresh_cycles;
        }
        computed?;
        train_counters.add(&m.counters.since(&before));
        train_seconds += epoch_started.elapsed().as_secs_f64();
        for ((acc, now), was) in links.iter_mut().zip(m.all_link_stats()).zip(&links_before) {
            acc.packets += now.packets - was.packets;
            acc.stall_contention += now.stall_contention - was.stall_contention;
            acc.stall_backpressure += now.stall_backpressure - was.stall_backpressure;
        }
        let before = m.counters.clone();
        let eval_started = Instant::now();
        let test = evaluate(&mut m, &data.test, data.max_value, progress)?;
        eval_seconds += eval_started.elapsed().as_secs_f64();
        epochs.push(EpochLog {
            epoch: epoch + 1,
            train_online: correct as f64 / n.max(1) as f64,
            test: test.accuracy(),
        });
        last_test = Some((test, m.counters.since(&before)));
    }
    progress(total, total, "training");
    // Inference changes nothing on the chip, so the last epoch's test evaluation is the final
    // one.
    let (test_eval, test_counters) = match last_test {
        Some(t) => t,
        None => {
            let before = m.counters.clone();
            let eval_started = Instant::now();
            let t = evaluate(&mut m, &data.test, data.max_value, progress)?;
            eval_seconds += eval_started.elapsed().as_secs_f64();
            (t, m.counters.since(&before))
        }
    };
    let eval_started = Instant::now();
    let train_eval = evaluate(&mut m, &data.train, data.max_value, progress)?;
    eval_seconds += eval_started.elapsed().as_secs_f64();
    if let (Some(w), Some((path, _))) = (rec, &opts.vcd) {
        write_vcd(&w, path)?;
    }
    if let Some(dir) = &opts.plot {
        plot_first_test_sample(&mut m, data, dir)?;
    }
    let trained = m.trained_program();
    let runs = report::Runs {
        train_samples: step,
        train_cycles,
        target_cycles,
        train_eval,
        test_eval,
        epochs,
        epochs_run: opts.epochs,
        shuffle_seed: opts.seed,
        seconds: started.elapsed().as_secs_f64(),
        train_seconds,
        train_arithmetic_seconds: (m.compute_seconds > 0.0).then_some(m.compute_seconds),
        eval_seconds,
        synaptic_ops: m.counters.synaptic_ops,
        engine: opts.engine,
        schedule: opts.schedule,
        max_in_flight,
        links: used(links),
        critical_paths,
    };
    let report = Report::new(&trained, &data.name, &train_counters, &test_counters, runs);
    Ok((trained, report))
}

/// Inference only, over both splits.
pub fn run(program: Program, data: &Dataset, progress: Progress) -> Result<Report, EmuError> {
    run_on(program, data, EngineKind::Event, None, progress)
}

/// Inference only, over both splits, on the given engine; `vcd` writes a waveform of a window
/// of the test split's inference.
pub fn run_on(
    program: Program,
    data: &Dataset,
    engine: EngineKind,
    vcd: Option<(std::path::PathBuf, Window)>,
    progress: Progress,
) -> Result<Report, EmuError> {
    check_shapes(&program, data)?;
    let started = Instant::now();
    let mut critical_paths = critical_paths(&program, data, engine)?;
    critical_paths.train_sample.clear();
    let mut m = Machine::new(program)?;
    m.engine = engine;
    let eval_started = Instant::now();
    let train_eval = evaluate(&mut m, &data.train, data.max_value, progress)?;
    let before = m.counters.clone();
    let mut rec = vcd
        .as_ref()
        .map(|(_, w)| Waveform::new(m.program().cores.len(), m.network_mut(), *w));
    let test_eval = evaluate_traced(&mut m, &data.test, data.max_value, progress, &mut rec)?;
    let eval_seconds = eval_started.elapsed().as_secs_f64();
    if let (Some(w), Some((path, _))) = (rec, &vcd) {
        write_vcd(&w, path)?;
    }
    let test_counters = m.counters.since(&before);
    let runs = report::Runs {
        train_samples: 0,
        train_cycles: 0,
        target_cycles: 0,
        train_eval,
        test_eval,
        epochs: Vec::new(),
        epochs_run: 0,
        shuffle_seed: 0,
        seconds: started.elapsed().as_secs_f64(),
        train_seconds: 0.0,
        train_arithmetic_seconds: None,
        eval_seconds,
        synaptic_ops: m.counters.synaptic_ops,
        engine,
        schedule: Schedule::Sequential,
        max_in_flight: 1,
        links: m.link_stats(),
        critical_paths,
    };
    let program = m.trained_program();
    Ok(Report::new(
        &program,
        &data.name,
        &Counters::default(),
        &test_counters,
        runs,
    ))
}

/// The links that carried or stalled a packet.
fn used(links: Vec<LinkStats>) -> Vec<LinkStats> {
    links
        .into_iter()
        .filter(|l| l.packets > 0 || l.stall_contention > 0 || l.stall_backpressure > 0)
        .collect()
}

/// The critical paths of the first training sample (after a target refresh, from the initial
/// weights) and of the first test inference, traced on a separate machine so training is not
/// affected.
pub fn critical_paths(
    program: &Program,
    data: &Dataset,
    engine: EngineKind,
) -> Result<CriticalPaths, EmuError> {
    let mut m = Machine::new(program.clone())?;
    m.engine = engine;
    let fmt = program.network.input_format;
    let mut x = Vec::new();
    let mut paths = CriticalPaths::default();
    if !data.train.is_empty() {
        refresh_targets(&mut m)?;
        if program.network.batch > 1 && m.program().layers.iter().any(|l| l.loss.is_contrastive()) {
            let b = (program.network.batch as usize).min(data.train.len());
            let labels: Vec<usize> = (0..b).map(|i| data.train.label(i)).collect();
            m.begin_batch(&labels)?;
        }
        encode_input(data.train.image(0), data.max_value, fmt, &mut x);
        m.tracing = true;
        m.run(
            &[Phase::Forward, Phase::Learn],
            0,
            Some(&x),
            Some(data.train.label(0)),
        )?;
        paths.train_sample = m
            .last_trace
            .take()
            .map(|t| t.critical_path())
            .unwrap_or_default();
        m.tracing = false;
    }
    if !data.test.is_empty() {
        refresh_targets(&mut m)?;
        encode_input(data.test.image(0), data.max_value, fmt, &mut x);
        m.tracing = true;
        m.run(&[Phase::Forward], 0, Some(&x), None)?;
        paths.inference = m
            .last_trace
            .take()
            .map(|t| t.critical_path())
            .unwrap_or_default();
    }
    Ok(paths)
}

/// Runs `f` on `m`, recording it into the waveform when it starts before the window's end.
fn traced<T>(
    rec: &mut Option<Waveform>,
    m: &mut Machine,
    offset: Cycles,
    f: impl FnOnce(&mut Machine) -> Result<T, EmuError>,
) -> Result<T, EmuError> {
    let window = rec.as_ref().and_then(|w| w.local_window(offset));
    if let Some(w) = window {
        m.tracing = true;
        m.trace_window = Some(w);
        let net = m.network_mut();
        net.trace_window = Some(w);
        net.trace = Some(Vec::new());
        net.link_trace = Some(Vec::new());
    }
    let out = f(m)?;
    if window.is_some() {
        m.tracing = false;
        let trace = m.last_trace.take().unwrap_or_default();
        if let Some(w) = rec.as_mut() {
            w.add(offset, &trace, m.network_mut());
        }
        let net = m.network_mut();
        net.trace = None;
        net.link_trace = None;
        net.trace_window = None;
    }
    Ok(out)
}

fn write_vcd(w: &Waveform, path: &std::path::Path) -> Result<(), EmuError> {
    std::fs::write(path, w.to_vcd())
        .map_err(|e| EmuError::Output(format!("cannot write {}: {e}", path.display())))
}

/// Plots the first test sample (a network with time) into `dir`, after a target refresh.
pub fn plot_first_test_sample(
    m: &mut Machine,
    data: &Dataset,
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, EmuError> {
    if !m.program().network.neuron.has_time() {
        return Err(EmuError::Output(
            "--plot draws spikes and membrane potentials over time steps: it needs a network \
             with `neuron: lif(..)` or `neuron: continuous(..)`"
                .into(),
        ));
    }
    if data.test.is_empty() {
        return Err(EmuError::Output(
            "--plot needs at least one test sample".into(),
        ));
    }
    refresh_targets(m)?;
    let mut x = Vec::new();
    encode_input(
        data.test.image(0),
        data.max_value,
        m.program().network.input_format,
        &mut x,
    );
    m.sample_key = Some(EVAL_KEY);
    let out = crate::plot::plot_sample(m, &x, dir);
    m.sample_key = None;
    out
}
