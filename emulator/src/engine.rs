//! The two engines that step a loaded chip: the plain **tick** engine, which visits every core,
//! the input port and the network on every clock cycle, and the **event** engine, which jumps
//! from one event to the next. They share the instruction semantics ([`Machine`]'s `exec`), the
//! cost table ([`crate::timing`]) and the network ([`crate::router`]), and produce the same cycle
//! for every event (a property test checks it against a trace of both).
//!
//! ## The rules both engines follow
//!
//! - In every cycle the input port acts first, then the cores in ID order, then the network
//!   steps. A core whose next instruction can issue at cycle `n` issues it, applies its effect
//!   and is busy for the instruction's cycles; instructions of zero cycles issue back to back.
//! - A `recv` issues once its route's message has been delivered: its tail left the network in
//!   an earlier cycle's step.
//! - A `send` issues once its route is free: the route's previous message has been received
//!   (one message in flight or waiting per route, a credit the receiving interface returns; it
//!   carries no data). Routes to the output port are always free. Packet `k` (from 0) of the
//!   message enters the source router at `issue + costs.issue + (k + 1) * send_packet - 1`.
//! - The input port sends its messages in order per route, the first whose route is free,
//!   one packet per `send_packet` cycles, the next message after the last packet.
//! - A core's jobs (phase streams, one after the other) run back to back; an empty stream takes
//!   no time.

use crate::decoupled::{Script, Step};
use crate::kernels::Activity;
use crate::machine::{EmuError, Machine, Phase};
use crate::router::Delivery;
use crate::timing::{self, Cycles};
use sigchip_isa::{CoreId, Endpoint, Instr, RouteId};
use std::collections::VecDeque;

/// Which engine steps the chip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// Jumps from event to event (the default).
    #[default]
    Event,
    /// Steps every cycle: the plain reference.
    Tick,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "event" => Ok(EngineKind::Event),
            "tick" => Ok(EngineKind::Tick),
            _ => Err(format!("unknown engine `{s}`: expected `event` or `tick`")),
        }
    }
}

/// One phase stream every core runs, for one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub phase: Phase,
    /// The update step its weight updates draw random bits for (and anneal by).
    pub step: u64,
    /// The sample it belongs to (outputs are collected per sample).
    pub sample: u32,
    /// The time step within the sample (neurons with time; 0 otherwise).
    pub tau: u16,
}

/// A message the input port sends.
#[derive(Clone, Debug)]
pub struct PortMessage {
    pub route: RouteId,
    pub values: Vec<i64>,
    pub sample: u32,
}

/// Where the input port's messages come from: called with a sample number, it appends that
/// sample's messages (in order); `false` when there are no more samples.
pub type PortFeed<'a> = &'a mut dyn FnMut(u32, &mut Vec<PortMessage>) -> bool;

/// What the output port received for one sample.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleOutput {
    pub output: Vec<i64>,
    /// The cycle the last of its messages could be read at the port.
    pub at: Option<Cycles>,
}

/// The result of running a list of jobs.
#[derive(Clone, Debug, Default)]
pub struct Execution {
    /// The cycle the last core finished (or the last output arrived).
    pub end: Cycles,
    /// Per sample (by number), what reached the output port.
    pub outputs: Vec<SampleOutput>,
    /// Per sample: the cycle its first job started on some core and its last job ended.
    pub spans: Vec<(Cycles, Cycles)>,
}

/// One instruction as it ran, for traces and waveforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceInstr {
    pub core: CoreId,
    pub job: u32,
    pub phase: Phase,
    pub pc: u32,
    pub instr: Instr,
    pub start: Cycles,
    pub cycles: Cycles,
    /// When it could not issue earlier: the cycle it started waiting (on a message or a route).
    pub waited_from: Option<Cycles>,
    /// What it was charged for (see [`crate::timing::instr_cycles`]).
    pub activity: Activity,
    /// The probed neuron's accumulator and output after the instruction (waveforms).
    pub probe: (i64, i32),
}

/// A message as it crossed the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceMessage {
    pub route: RouteId,
    /// The sending core (`None`: the input port) and the cycle its send issued.
    pub from: Option<CoreId>,
    pub sent: Cycles,
    /// The cycle it could be read at the destination.
    pub arrival: Cycles,
    pub packets: u64,
}

/// Everything that happened in a run, in issue order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub instrs: Vec<TraceInstr>,
    pub messages: Vec<TraceMessage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// May issue at `ready`.
    Ready,
    Recv(RouteId),
    Route(RouteId),
    Done,
}

#[derive(Clone, Copy, Debug)]
struct CoreRun {
    job: usize,
    pc: usize,
    ready: Cycles,
    wait: Wait,
    waited_from: Option<Cycles>,
}

/// A message queued at the input port: its values, or only its packets when the run replays a
/// [`Script`] (the values went to the cores when the script was computed).
struct Queued {
    route: RouteId,
    sample: u32,
    packets: u64,
    values: Vec<i64>,
}

/// Where a run's port messages and instruction effects come from.
enum Source<'f> {
    /// Computed as the run goes: the port's messages from a feed, every instruction executed.
    Live(PortFeed<'f>),
    /// Replayed from a [`Script`]: the cycles and packets the arithmetic decided.
    Script(Script),
}

/// A message in the network or waiting at its destination.
struct InFlight {
    route: RouteId,
    values: Vec<i64>,
    sample: u32,
    from: Option<CoreId>,
    sent: Cycles,
    packets: u64,
}

/// The run state shared by both engines.
struct Run<'f> {
    jobs: Vec<Job>,
    cores: Vec<CoreRun>,
    /// Per route: whether a message is in the network or waiting to be received.
    busy: Vec<bool>,
    /// Per route: the delivered message waiting for its `recv`, and when it can be read.
    mailbox: Vec<Option<(u32, Cycles)>>,
    /// Message slab, by ID.
    messages: Vec<Option<InFlight>>,
    free: Vec<u32>,
    port_queue: VecDeque<Queued>,
    port_ready: Cycles,
    port_waiting: bool,
    /// `None` once the feed has no more samples.
    source: Option<Source<'f>>,
    next_sample: u32,
    out: Execution,
    trace: Option<Trace>,
    /// The tick engine polls blocked cores and the port every cycle; the event engine wakes
    /// them when what they wait for happens.
    polling: bool,
}

impl Machine {
    /// Runs `jobs` on every core from cycle `start`, with the input port sending what `feed`
    /// gives (sample by sample, on demand), on the machine's engine.
    pub fn execute(
        &mut self,
        jobs: &[Job],
        start: Cycles,
        feed: PortFeed,
    ) -> Result<Execution, EmuError> {
        self.execute_from(jobs, start, Source::Live(feed))
    }

    /// Replays the timing of a run whose arithmetic [`Machine::compute`] did: the same cycles,
    /// waits, network traffic and timing counters as [`Machine::execute`] of the same jobs, with
    /// no value computed (the cores' memories are not touched; outputs are all zero).
    pub(crate) fn replay(
        &mut self,
        jobs: &[Job],
        start: Cycles,
        script: Script,
    ) -> Result<Execution, EmuError> {
        self.execute_from(jobs, start, Source::Script(script))
    }

    fn execute_from(
        &mut self,
        jobs: &[Job],
        start: Cycles,
        source: Source,
    ) -> Result<Execution, EmuError> {
        let n = self.core_count();
        let routes = self.program().routes.len();
        let mut run = Run {
            jobs: jobs.to_vec(),
            cores: vec![
                CoreRun {
                    job: 0,
                    pc: 0,
                    ready: start,
                    wait: Wait::Ready,
                    waited_from: None,
                };
                n
            ],
            busy: vec![false; routes],
            mailbox: vec![None; routes],
            messages: Vec::new(),
            free: Vec::new(),
            port_queue: VecDeque::new(),
            port_ready: start,
            port_waiting: false,
            source: Some(source),
            next_sample: 0,
            out: Execution::default(),
            trace: self.tracing.then(Trace::default),
            polling: self.engine == EngineKind::Tick,
        };
        let samples = jobs.iter().map(|j| j.sample + 1).max().unwrap_or(0) as usize;
        run.out.outputs = vec![SampleOutput::default(); samples];
        run.out.spans = vec![(Cycles::MAX, 0); samples];
        run.out.end = start;
        self.refill_port(&mut run, 0);
        match self.engine {
            EngineKind::Event => self.run_events(&mut run, start)?,
            EngineKind::Tick => self.run_ticks(&mut run, start)?,
        }
        if let Some(t) = run.trace.take() {
            self.last_trace = Some(t);
        }
        Ok(run.out)
    }

    /// Keeps the port's queue holding the messages of at least two samples past `sample`.
    fn refill_port(&mut self, run: &mut Run, sample: u32) {
        while run.next_sample <= sample + 1 {
            match run.source.as_mut() {
                None => return,
                Some(Source::Live(feed)) => {
                    let mut v = Vec::new();
                    if !feed(run.next_sample, &mut v) {
                        run.source = None;
                        return;
                    }
                    run.port_queue.extend(v.into_iter().map(|m| Queued {
                        route: m.route,
                        sample: m.sample,
                        packets: timing::packets(&m.values),
                        values: m.values,
                    }));
                }
                Some(Source::Script(s)) => {
                    while let Some(&(route, sample, packets)) = s.port.get(s.port_at) {
                        if sample != run.next_sample {
                            break;
                        }
                        s.port_at += 1;
                        run.port_queue.push_back(Queued {
                            route,
                            sample,
                            packets,
                            values: Vec::new(),
                        });
                    }
                }
            }
            run.next_sample += 1;
        }
    }

    // -----------------------------------------------------------------------------------------
    // The event engine.

    fn run_events(&mut self, run: &mut Run, start: Cycles) -> Result<(), EmuError> {
        let mut net_now = start;
        // The next actor (the port: 0, core `ci`: `ci + 1`) and when, if any; `None` when it
        // must be chosen again.
        let mut chosen: Option<Option<(Cycles, usize)>> = None;
        loop {
            // The next actor: the port (order 0), then cores by ID (order 1 + id).
            // Only an actor or a delivery changes who acts next: network steps without a
            // delivery (most of them) reuse the last choice.
            let best = *chosen.get_or_insert_with(|| {
                let mut best: Option<(Cycles, usize)> = None;
                if !run.port_waiting && !run.port_queue.is_empty() {
                    best = Some((run.port_ready, 0));
                }
                for (ci, c) in run.cores.iter().enumerate() {
                    if c.wait == Wait::Ready && best.is_none_or(|b| (c.ready, ci + 1) < b) {
                        best = Some((c.ready, ci + 1));
                    }
                }
                best
            });
            let net = self.network.next_event(net_now);
            match (best, net) {
                (Some((t, who)), n) if n.is_none_or(|n| t <= n) => {
                    if who == 0 {
                        self.port_act(run, t);
                    } else {
                        self.core_act(run, who - 1, t)?;
                    }
                    chosen = None;
                }
                (_, Some(n)) => {
                    let d = self.network.step(n);
                    net_now = n + 1;
                    if !d.is_empty() {
                        self.deliver(run, d);
                        chosen = None;
                    }
                }
                _ => break,
            }
        }
        self.finish(run)
    }

    // -----------------------------------------------------------------------------------------
    // The tick engine.

    fn run_ticks(&mut self, run: &mut Run, start: Cycles) -> Result<(), EmuError> {
        let mut now = start;
        loop {
            let port_idle = run.port_queue.is_empty();
            let cores_done = run.cores.iter().all(|c| c.wait == Wait::Done);
            if port_idle && cores_done && self.network.is_empty() {
                break;
            }
            if !port_idle && now >= run.port_ready {
                run.port_waiting = false;
                self.port_act(run, now);
            }
            for ci in 0..run.cores.len() {
                // Retry a blocked instruction every cycle; issue while the core is free.
                while run.cores[ci].wait != Wait::Done && run.cores[ci].ready <= now {
                    let before = run.cores[ci];
                    if matches!(before.wait, Wait::Recv(_) | Wait::Route(_)) {
                        run.cores[ci].wait = Wait::Ready;
                    }
                    self.core_act(run, ci, now)?;
                    let after = run.cores[ci];
                    if matches!(after.wait, Wait::Recv(_) | Wait::Route(_)) {
                        // Still blocked: try again next cycle.
                        run.cores[ci].ready = now + 1;
                        break;
                    }
                }
            }
            let d = self.network.step(now);
            self.deliver(run, d);
            // Stuck: every unfinished core waits for what cannot come, nothing is in the
            // network, and the port has nothing it can send.
            let blocked = |c: &CoreRun| match c.wait {
                Wait::Recv(r) => run.mailbox[r.index()].is_none(),
                Wait::Route(r) => run.busy[r.index()],
                _ => false,
            };
            let port_stuck = run.port_queue.iter().all(|m| run.busy[m.route.index()]);
            if self.network.is_empty()
                && port_stuck
                && run.cores.iter().all(|c| c.wait == Wait::Done || blocked(c))
                && (run.cores.iter().any(blocked) || !run.port_queue.is_empty())
            {
                return Err(self.deadlock(run));
            }
            now += 1;
        }
        self.finish(run)
    }

    // -----------------------------------------------------------------------------------------
    // Shared steps.

    fn finish(&mut self, run: &mut Run) -> Result<(), EmuError> {
        if run.cores.iter().any(|c| c.wait != Wait::Done) || !run.port_queue.is_empty() {
            return Err(self.deadlock(run));
        }
        // A message nobody received: the streams do not match their routes.
        if let Some(r) = run.mailbox.iter().position(Option::is_some) {
            return Err(EmuError::Unreceived {
                route: RouteId(r as u16),
            });
        }
        let end = run.cores.iter().map(|c| c.ready).max().unwrap_or(0);
        run.out.end = run.out.end.max(end);
        Ok(())
    }

    fn deadlock(&self, run: &Run) -> EmuError {
        let mut waiting: Vec<(CoreId, RouteId)> = run
            .cores
            .iter()
            .enumerate()
            .filter_map(|(ci, c)| match c.wait {
                Wait::Recv(r) | Wait::Route(r) => Some((CoreId(ci as u16), r)),
                _ => None,
            })
            .collect();
        if let Some(r) = run.mailbox.iter().position(Option::is_some) {
            // The input port (shown as core65535) waits on a route whose last message was
            // never received.
            if !run.port_queue.is_empty() {
                waiting.push((CoreId(u16::MAX), RouteId(r as u16)));
            }
        }
        let job = run.cores.iter().map(|c| c.job).min().unwrap_or(0);
        EmuError::Deadlock {
            phase: run
                .jobs
                .get(job)
                .map_or("end".into(), |j| format!("{:?}", j.phase)),
            cycle: run.cores.iter().map(|c| c.ready).max().unwrap_or(0),
            waiting,
        }
    }

    /// The input port at cycle `t`: sends the first queued message whose route is free.
    fn port_act(&mut self, run: &mut Run, t: Cycles) {
        let Some(i) = run
            .port_queue
            .iter()
            .position(|m| !run.busy[m.route.index()])
        else {
            run.port_waiting = true;
            return;
        };
        let m = run.port_queue.remove(i).expect("found");
        let sp = self.program().chip.costs.send_packet as Cycles;
        let packets = m.packets;
        self.count_packets(m.route, packets);
        self.inject(
            run,
            m.values,
            packets,
            m.route,
            m.sample,
            None,
            t,
            t + sp.max(1) - 1,
        );
        run.port_ready = t + packets * sp;
        run.port_waiting = false;
        self.refill_port(run, m.sample);
    }

    /// Puts a message into the network and the slab.
    #[allow(clippy::too_many_arguments)]
    fn inject(
        &mut self,
        run: &mut Run,
        values: Vec<i64>,
        packets: u64,
        route: RouteId,
        sample: u32,
        from: Option<CoreId>,
        sent: Cycles,
        first: Cycles,
    ) {
        let msg = InFlight {
            route,
            values,
            sample,
            from,
            sent,
            packets,
        };
        let id = match run.free.pop() {
            Some(id) => {
                run.messages[id as usize] = Some(msg);
                id
            }
            None => {
                run.messages.push(Some(msg));
                (run.messages.len() - 1) as u32
            }
        };
        if self.program().routes[route.index()].dst != Endpoint::Output {
            run.busy[route.index()] = true;
        }
        let sp = self.program().chip.costs.send_packet as Cycles;
        self.network.inject(route.0, id, packets, first, sp.max(1));
    }

    /// Messages whose tails left the network in this step.
    fn deliver(&mut self, run: &mut Run, delivered: Vec<Delivery>) {
        for d in delivered {
            let arrival = d.cycle + 1;
            let m = run.messages[d.msg as usize]
                .as_ref()
                .expect("a live message");
            let keep = self
                .trace_window
                .is_none_or(|(a, b)| (a..b).contains(&arrival) || (a..b).contains(&m.sent));
            if let Some(t) = run.trace.as_mut().filter(|_| keep) {
                t.messages.push(TraceMessage {
                    route: m.route,
                    from: m.from,
                    sent: m.sent,
                    arrival,
                    packets: m.packets,
                });
            }
            let route = &self.program().routes[m.route.index()];
            if route.dst == Endpoint::Output {
                let m = run.messages[d.msg as usize].take().expect("a live message");
                run.free.push(d.msg);
                let out = &mut run.out.outputs[m.sample as usize];
                let classes = self.program().network.classes as usize;
                if out.output.is_empty() {
                    out.output = vec![0; classes];
                }
                // A sample's outputs add up over its time steps (spike counts, summed
                // potentials); a sample without time sends each value once.
                let at = route.dst_start as usize;
                for (o, v) in out.output[at..at + m.values.len()]
                    .iter_mut()
                    .zip(&m.values)
                {
                    *o += v;
                }
                out.at = Some(out.at.map_or(arrival, |o| o.max(arrival)));
                run.out.end = run.out.end.max(arrival);
                continue;
            }
            let ri = m.route.index();
            run.mailbox[ri] = Some((d.msg, arrival));
            if run.polling {
                continue;
            }
            // A core waiting for this message can take it from the next cycle on.
            for c in run.cores.iter_mut() {
                if c.wait == Wait::Recv(m.route) {
                    c.wait = Wait::Ready;
                    c.ready = c.ready.max(arrival);
                }
            }
        }
    }

    fn count_packets(&mut self, route: RouteId, packets: u64) {
        let hops = self.hops_of(route) as u64;
        let c = &mut self.counters;
        c.packets += packets;
        c.packet_hops += packets * hops;
    }

    /// Core `ci` at cycle `t`: issues its next instruction, or blocks.
    fn core_act(&mut self, run: &mut Run, ci: usize, t: Cycles) -> Result<(), EmuError> {
        // Skip finished and empty streams (no time).
        let (job, pc) = loop {
            let c = &mut run.cores[ci];
            let Some(job) = run.jobs.get(c.job).copied() else {
                c.wait = Wait::Done;
                return Ok(());
            };
            let len = self.stream(ci, job.phase).len();
            if c.pc < len {
                break (job, c.pc);
            }
            c.job += 1;
            c.pc = 0;
        };
        let instr = self.stream(ci, job.phase)[pc];
        let mut halt = false;
        let mut activity = Activity::default();
        let cycles = match instr {
            Instr::Recv { route } => {
                let ri = route.index();
                match run.mailbox[ri] {
                    Some((id, arrival)) if arrival <= t => {
                        run.mailbox[ri] = None;
                        run.busy[ri] = false;
                        let m = run.messages[id as usize].take().expect("a live message");
                        run.free.push(id);
                        let cycles = match run.source {
                            Some(Source::Script(_)) => timing::instr_cycles(
                                &instr,
                                &Activity::default(),
                                m.packets,
                                &self.program().chip.costs,
                            ),
                            _ => self.recv_message(ci, route, &m.values),
                        };
                        activity.packets = m.packets;
                        // The route is free again: a sender waiting on it may send, in this
                        // cycle if it acts after this core, else in the next.
                        let wake = !run.polling;
                        for (cj, c) in run.cores.iter_mut().enumerate().filter(|_| wake) {
                            if c.wait == Wait::Route(route) {
                                c.wait = Wait::Ready;
                                c.ready = c.ready.max(if cj > ci { t } else { t + 1 });
                            }
                        }
                        if wake && run.port_waiting {
                            run.port_waiting = false;
                            run.port_ready = run.port_ready.max(t + 1);
                        }
                        cycles
                    }
                    _ => {
                        let c = &mut run.cores[ci];
                        c.wait = Wait::Recv(route);
                        c.waited_from.get_or_insert(t);
                        return Ok(());
                    }
                }
            }
            Instr::Send { route } => {
                let ri = route.index();
                if run.busy[ri] {
                    let c = &mut run.cores[ci];
                    c.wait = Wait::Route(route);
                    c.waited_from.get_or_insert(t);
                    return Ok(());
                }
                let (values, packets) = match run.source.as_mut() {
                    Some(Source::Script(s)) => match s.next(ci) {
                        Step::Send { packets } => (Vec::new(), packets),
                        step => unreachable!("core {ci}: a script step {step:?} for a send"),
                    },
                    _ => {
                        let values = self.send_values(ci, route);
                        let packets = timing::packets(&values);
                        (values, packets)
                    }
                };
                self.count_packets(route, packets);
                activity.packets = packets;
                let costs = self.program().chip.costs;
                let spacing = (costs.send_packet as Cycles).max(1);
                let first = t + costs.issue as Cycles + spacing - 1;
                self.inject(
                    run,
                    values,
                    packets,
                    route,
                    job.sample,
                    Some(CoreId(ci as u16)),
                    t,
                    first,
                );
                timing::instr_cycles(&instr, &Default::default(), packets, &costs)
            }
            _ => match run.source.as_mut() {
                Some(Source::Script(s)) => match s.next(ci) {
                    Step::Exec { cycles, halt: h } => {
                        halt = h;
                        cycles
                    }
                    step => unreachable!("core {ci}: a script step {step:?} for {instr:?}"),
                },
                _ => {
                    let (c, a, h) = self.exec(ci, instr, job.phase, job.step, job.tau)?;
                    halt = h;
                    activity = a;
                    c
                }
            },
        };
        let span = &mut run.out.spans[job.sample as usize];
        span.0 = span.0.min(t);
        span.1 = span.1.max(t + cycles);
        let c = &mut run.cores[ci];
        let waited_from = c.waited_from.take();
        if let Some(from) = waited_from {
            match instr {
                Instr::Send { .. } => self.counters.send_wait_cycles[ci] += t - from,
                _ => self.counters.recv_wait_cycles[ci] += t - from,
            }
        }
        let keep = self.trace_window.is_none_or(|(a, b)| (a..b).contains(&t));
        if let Some(tr) = run.trace.as_mut().filter(|_| keep) {
            let probe = self.probe(ci);
            tr.instrs.push(TraceInstr {
                core: CoreId(ci as u16),
                job: c.job as u32,
                phase: job.phase,
                pc: pc as u32,
                instr,
                start: t,
                cycles,
                waited_from,
                activity,
                probe,
            });
        }
        c.ready = t + cycles;
        c.wait = Wait::Ready;
        if halt {
            c.job += 1;
            c.pc = 0;
        } else {
            c.pc += 1;
        }
        self.counters.busy_cycles[ci] += cycles;
        self.counters.instructions += 1;
        Ok(())
    }
}

/// One stretch of a critical path: a core working through consecutive instructions, or a
/// message crossing the network.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PathStep {
    /// `core3 learn: recv route7 .. upd data (5 instructions)` or `route7 (12 packets)`.
    pub what: String,
    pub from: Cycles,
    pub to: Cycles,
}

impl Trace {
    /// The chain of work that decided when the run ended: from the instruction that ended
    /// last, back through each instruction's predecessor on its core, or, where a core waited,
    /// through the message it waited for (to its `send`) or the `recv` that freed the route it
    /// waited on. Earliest first.
    pub fn critical_path(&self) -> Vec<PathStep> {
        enum Node {
            Instr(usize),
            Msg(TraceMessage),
        }
        let Some(mut at) = (0..self.instrs.len()).max_by_key(|&i| {
            let x = &self.instrs[i];
            (x.start + x.cycles, std::cmp::Reverse(i))
        }) else {
            return Vec::new();
        };
        let mut path = Vec::new();
        // A message read after every instruction ended went to the output port: the path ends
        // with it.
        let end = self.instrs[at].start + self.instrs[at].cycles;
        if let Some(m) = self
            .messages
            .iter()
            .filter(|m| m.arrival > end)
            .max_by_key(|m| m.arrival)
        {
            let sender = m.from.and_then(|c| {
                (0..self.instrs.len()).rev().find(|&k| {
                    let x = &self.instrs[k];
                    x.core == c && x.start == m.sent && x.instr == Instr::Send { route: m.route }
                })
            });
            path.push(Node::Msg(*m));
            match sender {
                Some(k) => at = k,
                None => {
                    return vec![PathStep {
                        what: format!("{} ({} packets)", m.route, m.packets),
                        from: m.sent,
                        to: m.arrival,
                    }]
                }
            }
        }
        loop {
            path.push(Node::Instr(at));
            let i = self.instrs[at];
            let before =
                |cond: &dyn Fn(&TraceInstr) -> bool| (0..at).rev().find(|&k| cond(&self.instrs[k]));
            let next = match (i.waited_from, i.instr) {
                (Some(_), Instr::Recv { route }) => {
                    let msg = self
                        .messages
                        .iter()
                        .filter(|m| m.route == route && m.arrival <= i.start)
                        .max_by_key(|m| m.arrival)
                        .copied();
                    msg.and_then(|m| {
                        path.push(Node::Msg(m));
                        let c = m.from?;
                        before(&|k: &TraceInstr| {
                            k.core == c && k.start == m.sent && k.instr == Instr::Send { route }
                        })
                    })
                }
                (Some(_), Instr::Send { route }) => {
                    before(&|k: &TraceInstr| k.instr == Instr::Recv { route } && k.start <= i.start)
                }
                _ => before(&|k: &TraceInstr| k.core == i.core),
            };
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        path.reverse();
        let mut steps: Vec<PathStep> = Vec::new();
        let mut run: Option<(TraceInstr, TraceInstr, usize)> = None;
        let flush = |run: &mut Option<(TraceInstr, TraceInstr, usize)>,
                     steps: &mut Vec<PathStep>| {
            if let Some((a, b, n)) = run.take() {
                steps.push(PathStep {
                    what: format!(
                        "{} {:?}: {} .. {} ({n} instructions)",
                        a.core, a.phase, a.instr, b.instr
                    ),
                    from: a.start,
                    to: b.start + b.cycles,
                });
            }
        };
        for node in path {
            match node {
                Node::Instr(k) => {
                    let x = self.instrs[k];
                    match &mut run {
                        Some((a, b, n)) if a.core == x.core && a.job == x.job => {
                            *b = x;
                            *n += 1;
                        }
                        _ => {
                            flush(&mut run, &mut steps);
                            run = Some((x, x, 1));
                        }
                    }
                }
                Node::Msg(m) => {
                    flush(&mut run, &mut steps);
                    steps.push(PathStep {
                        what: format!("{} ({} packets)", m.route, m.packets),
                        from: m.sent,
                        to: m.arrival,
                    });
                }
            }
        }
        flush(&mut run, &mut steps);
        steps
    }
}
