//! Training on several threads: the arithmetic of each run on the calling thread, its timing on
//! others, with the same bits, cycles and counts as one thread doing both.
//!
//! The central type is [`Script`]: what the arithmetic of one run decided that its timing
//! needs, per core in issue order: the cycles of every executed instruction (and whether it
//! ended its stream) and the packets of every `send`, plus the input port's messages by route
//! and size.
//!
//! Why it is exact: the cores and the ports form a network of processes that talk only over
//! routes, each route carrying its messages first in, first out (one sender, credit flow
//! control). The values a core computes therefore depend on the order of its own instructions
//! and of each route's messages, never on when anything happens, so `Machine::compute` may run
//! the cores one after another, each until it waits for a message, and get the bits the engines
//! get. What the timing needs of those bits (an instruction's activity, a message's non-zero
//! entries) goes into the script, and `Machine::replay` steps the engine over it with the
//! rules of [`crate::engine`]: the same code, with the values left out. Nothing in the
//! arithmetic reads a cycle (update steps, time steps and random bits are counted per sample).
//!
//! A training run of one sample (the sequential schedule) leaves the network empty, so its
//! timing can trail its arithmetic: [`TimingThreads`] replay the scripts on copies of the
//! machine while the calling thread computes the next samples; [`TimingThreads::settle`]
//! hands back the network's statistics, the timing counters and the cycles. The arithmetic
//! counters (synaptic operations, updates, saturations, memory traffic) stay with the computing
//! machine, the timing counters (instructions, packets, busy and waiting cycles) come from the
//! replaying ones, so every count is made once. `split_timing_equals_one_thread`
//! (`tests/functional.rs`) checks runs on random networks against one thread, `tests/host.rs`
//! whole training reports.

use crate::engine::{Job, PortFeed, PortMessage};
use crate::machine::{EmuError, Machine};
use crate::timing::{self, Cycles};
use sigchip_isa::{Endpoint, Instr, RouteId};
use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread;

/// What one executed instruction (other than `recv`, whose cycles follow from its message's
/// packets) decided for the timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// An instruction the core executes: its cycles, and whether it ends the stream.
    Exec { cycles: Cycles, halt: bool },
    /// A `send`: the packets of its message.
    Send { packets: u64 },
}

/// What the timing of one run needs of its arithmetic (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Per core, in issue order.
    pub(crate) steps: Vec<Vec<Step>>,
    /// The replay's position in each core's steps.
    pub(crate) at: Vec<usize>,
    /// The input port's messages in the feed's order: route, sample, packets.
    pub(crate) port: Vec<(RouteId, u32, u64)>,
    pub(crate) port_at: usize,
}

impl Script {
    /// Core `ci`'s next step. The replay issues exactly the instructions the computation
    /// executed, in the same order, so a missing step is a bug, not a user error.
    pub(crate) fn next(&mut self, ci: usize) -> Step {
        let at = self.at[ci];
        self.at[ci] += 1;
        *self.steps[ci]
            .get(at)
            .unwrap_or_else(|| panic!("core {ci}: the script ends after {at} steps"))
    }
}

/// The arithmetic of one run: the script, and per sample the vector the output port received
/// (`None`: nothing reached it).
pub(crate) struct Computed {
    pub script: Script,
    pub outputs: Vec<Option<Vec<i64>>>,
}

impl Machine {
    /// Runs the arithmetic of `jobs` (with the port's messages from `feed`) without time: each
    /// core in ID order runs until it waits for a message or for a route's credit, the port
    /// fills every free route, and so on until every core is done or none can go on. A run
    /// that cannot finish (a deadlock, a message nobody receives) returns the script so far:
    /// its replay stops where the engines stop and reports the error with its cycle.
    pub(crate) fn compute(&mut self, jobs: &[Job], feed: PortFeed) -> Result<Computed, EmuError> {
        let n = self.core_count();
        let routes = self.program().routes.len();
        let classes = self.program().network.classes as usize;
        let samples = jobs
            .iter()
            .map(|j| j.sample as usize + 1)
            .max()
            .unwrap_or(0);
        let mut queue: VecDeque<PortMessage> = VecDeque::new();
        let mut sample = 0;
        loop {
            let mut v = Vec::new();
            if !feed(sample, &mut v) {
                break;
            }
            queue.extend(v);
            sample += 1;
        }
        let mut script = Script {
            steps: vec![Vec::new(); n],
            at: vec![0; n],
            port: queue
                .iter()
                .map(|m| (m.route, m.sample, timing::packets(&m.values)))
                .collect(),
            port_at: 0,
        };
        let mut outputs: Vec<Option<Vec<i64>>> = vec![None; samples];
        // Per route: the message sent and not yet received (one at a time: the credit).
        let mut slots: Vec<Option<Vec<i64>>> = vec![None; routes];
        let mut job = vec![0usize; n];
        let mut pc = vec![0usize; n];
        loop {
            let mut progressed = false;
            // The port sends, in queue order, every message whose route is free.
            let mut i = 0;
            while i < queue.len() {
                let r = queue[i].route.index();
                if slots[r].is_none() {
                    slots[r] = queue.remove(i).map(|m| m.values);
                    progressed = true;
                } else {
                    i += 1;
                }
            }
            for ci in 0..n {
                while let Some(&j) = jobs.get(job[ci]) {
                    let stream = self.stream(ci, j.phase);
                    let Some(&instr) = stream.get(pc[ci]) else {
                        job[ci] += 1;
                        pc[ci] = 0;
                        continue;
                    };
                    match instr {
                        Instr::Recv { route } => {
                            let Some(values) = slots[route.index()].take() else {
                                break;
                            };
                            self.recv_message(ci, route, &values);
                        }
                        Instr::Send { route } => {
                            let r = &self.program().routes[route.index()];
                            let (to_output, at) = (r.dst == Endpoint::Output, r.dst_start as usize);
                            if !to_output && slots[route.index()].is_some() {
                                break;
                            }
                            let values = self.send_values(ci, route);
                            let packets = timing::packets(&values);
                            script.steps[ci].push(Step::Send { packets });
                            if to_output {
                                // Summed as the engines sum a sample's output messages.
                                let out =
                                    outputs[j.sample as usize].get_or_insert(vec![0; classes]);
                                for (o, v) in out[at..at + values.len()].iter_mut().zip(&values) {
                                    *o += v;
                                }
                            } else {
                                slots[route.index()] = Some(values);
                            }
                        }
                        _ => {
                            let (cycles, _, halt) = self.exec(ci, instr, j.phase, j.step, j.tau)?;
                            script.steps[ci].push(Step::Exec { cycles, halt });
                            if halt {
                                job[ci] += 1;
                                pc[ci] = 0;
                                progressed = true;
                                continue;
                            }
                        }
                    }
                    pc[ci] += 1;
                    progressed = true;
                }
            }
            let done = job.iter().all(|&j| j >= jobs.len()) && queue.is_empty();
            if done || !progressed {
                return Ok(Computed { script, outputs });
            }
        }
    }
}

/// One run whose timing is due: its number (in submission order), start cycle, jobs and script,
/// and whether it is a target refresh.
pub(crate) struct Work {
    run: u64,
    start: Cycles,
    jobs: Vec<Job>,
    script: Script,
    refresh: bool,
}

/// The cycles of the runs the timing threads replayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timed {
    /// Every run's end (or its output's arrival, if later), summed: what [`Machine::run`]
    /// returns as `end` on one thread.
    pub cycles: Cycles,
    /// The same, of the target refreshes alone.
    pub refresh_cycles: Cycles,
}

impl Timed {
    fn add(&mut self, o: &Timed) {
        self.cycles += o.cycles;
        self.refresh_cycles += o.refresh_cycles;
    }
}

/// Where a machine whose timing is split off sends its runs: one channel per timing thread,
/// taken in turn. A copy of the machine is not split (it computes and times its own runs), so
/// cloning gives `None`.
pub(crate) struct Dispatch(Option<(Vec<mpsc::SyncSender<Work>>, u64)>);

impl Dispatch {
    pub(crate) const NONE: Dispatch = Dispatch(None);

    pub(crate) fn is_split(&self) -> bool {
        self.0.is_some()
    }
}

impl Clone for Dispatch {
    fn clone(&self) -> Self {
        Dispatch::NONE
    }
}

/// Why [`TimingThreads::start`] refused.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("the machine's timing already runs on other threads")]
    AlreadySplit,
    #[error("a machine that records traces or neuron steps computes and times its runs together")]
    Recording,
}

/// What one timing thread leaves: its copy of the machine and its cycles, or the first run
/// it could not replay and why.
type ThreadResult = Result<(Machine, Timed), (u64, EmuError)>;

/// Threads that replay the timing of a machine's runs while the machine computes the next
/// ones (see the module docs). Runs of one sample start and end with an empty network and
/// idle cores, so their timings are independent: each thread replays every `threads`-th run
/// on its own copy of the machine, and the cycles, counters and link statistics are sums.
/// While they run, the machine's runs return their outputs but not their cycles (`end` is 0,
/// `output_at` is `None`); [`TimingThreads::settle`] must follow.
#[must_use = "the runs' cycles and statistics come back with `settle`"]
pub struct TimingThreads {
    handles: Vec<thread::JoinHandle<ThreadResult>>,
    /// The machine's link statistics when the threads took their copies.
    since: Vec<crate::router::LinkStats>,
}

/// Runs computed ahead of their timing, at most (a bound on memory), plus the one each thread
/// is replaying.
const AHEAD: usize = 256;

impl TimingThreads {
    /// Starts `threads` threads replaying `m`'s runs of one sample each (what [`Machine::run`]
    /// does) on copies of `m`, from the next run on. A machine that records traces or neuron
    /// steps, or is already split, is refused.
    pub fn start(m: &mut Machine, threads: usize) -> Result<TimingThreads, SplitError> {
        if m.timing.is_split() {
            return Err(SplitError::AlreadySplit);
        }
        if m.tracing || m.step_log.is_some() {
            return Err(SplitError::Recording);
        }
        let threads = threads.max(1);
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..threads {
            let mut timing = m.timing_copy();
            timing.counters = m.counters.since(&m.counters);
            let (tx, rx) = mpsc::sync_channel::<Work>((AHEAD / threads).max(1));
            senders.push(tx);
            handles.push(thread::spawn(move || {
                let mut t = Timed::default();
                for w in rx {
                    // A thread stops at its first error; the runs after it are not replayed.
                    let ex = timing
                        .replay(&w.jobs, w.start, w.script)
                        .map_err(|e| (w.run, e))?;
                    let at = ex.outputs.first().and_then(|o| o.at).unwrap_or(0);
                    let end = ex.end.max(at);
                    t.cycles += end;
                    if w.refresh {
                        t.refresh_cycles += end;
                    }
                }
                Ok((timing, t))
            }));
        }
        m.timing = Dispatch(Some((senders, 0)));
        Ok(TimingThreads {
            handles,
            since: m.all_link_stats().to_vec(),
        })
    }

    /// Waits for every run submitted so far to be replayed and gives `m` the link statistics
    /// and timing counters of those runs. If replays failed, the error of the earliest failed
    /// run: the one a single thread would have stopped at (every run before it was replayed,
    /// whichever thread it went to).
    pub fn settle(self, m: &mut Machine) -> Result<Timed, EmuError> {
        m.timing = Dispatch::NONE;
        let mut total = Timed::default();
        let mut first: Option<(u64, EmuError)> = None;
        for h in self.handles {
            let failed = match h.join() {
                Ok(Ok((timing, t))) => {
                    m.network.absorb(&timing.network, &self.since);
                    m.counters.add(&timing.counters);
                    total.add(&t);
                    continue;
                }
                Ok(Err(failed)) => failed,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("no message");
                    (
                        0,
                        EmuError::Output(format!("a timing thread panicked: {why}")),
                    )
                }
            };
            if first.as_ref().is_none_or(|(run, _)| failed.0 < *run) {
                first = Some(failed);
            }
        }
        match first {
            Some((_, e)) => Err(e),
            None => Ok(total),
        }
    }
}

impl Machine {
    /// Hands a computed run to the next timing thread.
    pub(crate) fn submit(
        &mut self,
        start: Cycles,
        jobs: Vec<Job>,
        script: Script,
        refresh: bool,
    ) -> Result<(), EmuError> {
        let (senders, run) = self.timing.0.as_mut().expect("timing threads");
        let tx = &senders[(*run % senders.len() as u64) as usize];
        let w = Work {
            run: *run,
            start,
            jobs,
            script,
            refresh,
        };
        *run += 1;
        tx.send(w).map_err(|_| EmuError::TimingStopped)
    }
}
