//! Waveforms: a Value Change Dump (IEEE 1364 VCD) of a window of a run, for GTKWave.
//!
//! Signals, one time unit per core clock cycle:
//!
//! - per core (`chip.coreN`): `phase` (0 idle, 1 targets, 2 batch, 3 forward, 4 learn, 5 apply),
//!   `pc` (index in the phase's stream of the instruction issuing), `busy` (executing an
//!   instruction), `waiting` (blocked on a message or a route), and the probed neuron's
//!   accumulator `acc` and output `out` after each instruction;
//! - per router (`chip.router_X_Y`, and `chip.input_port`, `chip.output_port`): the occupancy
//!   of each input buffer (`q_local`, `q_west`, ...) and, per output link, the packets it has
//!   carried since the window opened (`sent_east`, ...).
//!
//! Runs are placed one after the other on a global time line (`offset`), as training runs them.

use crate::engine::Trace;
use crate::machine::Phase;
use crate::router::Network;
use crate::timing::Cycles;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The cycles a waveform keeps: `from..to` of the global time line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: Cycles,
    pub to: Cycles,
}

impl std::str::FromStr for Window {
    type Err = String;
    /// `FROM..TO` in cycles, `TO` > `FROM`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("window `{s}` must be FROM..TO in cycles, with FROM < TO (e.g. 0..5000)");
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let (from, to) = (
            a.trim().parse::<Cycles>().map_err(|_| bad())?,
            b.trim().parse::<Cycles>().map_err(|_| bad())?,
        );
        if from >= to {
            return Err(bad());
        }
        Ok(Window { from, to })
    }
}

impl Default for Window {
    fn default() -> Self {
        Window {
            from: 0,
            to: 20_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Signal {
    Phase(usize),
    Pc(usize),
    Busy(usize),
    Waiting(usize),
    Acc(usize),
    Out(usize),
    Queue(usize, usize),
    Sent(usize, usize),
}

/// A waveform being collected.
pub struct Waveform {
    pub window: Window,
    cores: usize,
    /// (time, signal, value), in any order.
    changes: Vec<(Cycles, Signal, i64)>,
    /// Per (router, direction): packets so far, for the `sent_*` counters.
    sent: BTreeMap<(usize, usize), i64>,
    routers: Vec<(i32, i32)>,
}

fn phase_code(p: Phase) -> i64 {
    match p {
        Phase::Targets => 1,
        Phase::Batch => 2,
        Phase::Forward => 3,
        Phase::Learn => 4,
        Phase::Apply => 5,
    }
}

impl Waveform {
    pub fn new(cores: usize, network: &Network, window: Window) -> Waveform {
        Waveform {
            window,
            cores,
            changes: Vec::new(),
            sent: BTreeMap::new(),
            routers: (0..network.routers())
                .map(|r| network.position(r))
                .collect(),
        }
    }

    /// The run-local window of a run that starts at `offset` on the global time line, if the
    /// run can reach into the window at all.
    pub fn local_window(&self, offset: Cycles) -> Option<(Cycles, Cycles)> {
        (offset < self.window.to).then(|| {
            (
                self.window.from.saturating_sub(offset),
                self.window.to - offset,
            )
        })
    }

    /// Adds a run that started at `offset`: its trace and the network's buffer and link events.
    pub fn add(&mut self, offset: Cycles, trace: &Trace, network: &mut Network) {
        let keep = |t: Cycles| (self.window.from..self.window.to).contains(&(t + offset));
        let mut changes = Vec::new();
        for i in &trace.instrs {
            let c = i.core.index();
            if let Some(w) = i.waited_from {
                if keep(w) {
                    changes.push((w + offset, Signal::Waiting(c), 1));
                }
            }
            if !keep(i.start) {
                continue;
            }
            let t = i.start + offset;
            changes.push((t, Signal::Waiting(c), 0));
            changes.push((t, Signal::Phase(c), phase_code(i.phase)));
            changes.push((t, Signal::Pc(c), i.pc as i64));
            changes.push((t, Signal::Busy(c), (i.cycles > 0) as i64));
            changes.push((t, Signal::Acc(c), i.probe.0));
            changes.push((t, Signal::Out(c), i.probe.1 as i64));
            // Idle after the stream's `halt` until the next phase starts.
            if matches!(i.instr, sigchip_isa::Instr::Halt {}) {
                changes.push((t + i.cycles, Signal::Busy(c), 0));
                changes.push((t + i.cycles, Signal::Phase(c), 0));
            }
        }
        for (t, router, dir, occ) in network.trace.take().unwrap_or_default() {
            if keep(t) {
                changes.push((t + offset, Signal::Queue(router, dir), occ as i64));
            }
        }
        for (t, router, dir) in network.link_trace.take().unwrap_or_default() {
            let n = self.sent.entry((router, dir)).or_insert(0);
            *n += 1;
            if keep(t) {
                changes.push((t + offset, Signal::Sent(router, dir), *n));
            }
        }
        network.trace = Some(Vec::new());
        network.link_trace = Some(Vec::new());
        self.changes.extend(changes);
    }

    /// Rows of routers (the grid's height).
    fn height(&self) -> usize {
        self.routers
            .iter()
            .map(|r| r.1 as usize + 1)
            .max()
            .unwrap_or(1)
    }

    /// The VCD text.
    pub fn to_vcd(&self) -> String {
        // Every signal that changes gets an identifier; core signals exist for every core.
        let mut signals: Vec<Signal> = (0..self.cores)
            .flat_map(|c| {
                [
                    Signal::Phase(c),
                    Signal::Pc(c),
                    Signal::Busy(c),
                    Signal::Waiting(c),
                    Signal::Acc(c),
                    Signal::Out(c),
                ]
            })
            .collect();
        let mut net: Vec<Signal> = self
            .changes
            .iter()
            .filter(|c| matches!(c.1, Signal::Queue(..) | Signal::Sent(..)))
            .map(|c| c.1)
            .collect();
        net.sort();
        net.dedup();
        signals.extend(net);
        let id = |i: usize| -> String {
            // Base-94 over the printable characters `!`..`~`.
            let mut n = i;
            let mut s = String::new();
            loop {
                s.push((b'!' + (n % 94) as u8) as char);
                n /= 94;
                if n == 0 {
                    break s;
                }
            }
        };
        let index: BTreeMap<Signal, String> = signals
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, id(i)))
            .collect();
        let dirs = ["local", "west", "east", "north", "south"];
        let mut out = String::new();
        let _ = writeln!(out, "$version sigchip $end");
        let _ = writeln!(
            out,
            "$comment one time unit is one core clock cycle; cycles {}..{} $end",
            self.window.from, self.window.to
        );
        let _ = writeln!(out, "$timescale 1ns $end");
        let _ = writeln!(out, "$scope module chip $end");
        for c in 0..self.cores {
            let _ = writeln!(out, "$scope module core{c} $end");
            for (s, width, name) in [
                (Signal::Phase(c), 3, "phase"),
                (Signal::Pc(c), 16, "pc"),
                (Signal::Busy(c), 1, "busy"),
                (Signal::Waiting(c), 1, "waiting"),
                (Signal::Acc(c), 64, "acc"),
                (Signal::Out(c), 32, "out"),
            ] {
                let _ = writeln!(out, "$var wire {width} {} {name} $end", index[&s]);
            }
            let _ = writeln!(out, "$upscope $end");
        }
        let mut current_router = None;
        for s in signals.iter().skip(self.cores * 6) {
            let (r, name) = match *s {
                Signal::Queue(r, d) => (r, format!("q_{}", dirs[d])),
                Signal::Sent(r, d) => (r, format!("sent_{}", dirs[d])),
                _ => unreachable!("only network signals follow the cores"),
            };
            if current_router != Some(r) {
                if current_router.is_some() {
                    let _ = writeln!(out, "$upscope $end");
                }
                let (x, y) = self.routers[r];
                let name = match x {
                    -1 => "input_port".to_string(),
                    x if x as usize + 2 == self.routers.len() / self.height() => {
                        "output_port".to_string()
                    }
                    x => format!("router_{x}_{y}"),
                };
                let _ = writeln!(out, "$scope module {name} $end");
                current_router = Some(r);
            }
            let _ = writeln!(out, "$var wire 32 {} {name} $end", index[s]);
        }
        if current_router.is_some() {
            let _ = writeln!(out, "$upscope $end");
        }
        let _ = writeln!(out, "$upscope $end");
        let _ = writeln!(out, "$enddefinitions $end");
        let width = |s: &Signal| match s {
            Signal::Phase(_) => 3,
            Signal::Pc(_) => 16,
            Signal::Busy(_) | Signal::Waiting(_) => 1,
            Signal::Acc(_) => 64,
            _ => 32,
        };
        let bits = |v: i64, w: u32| -> String {
            let v = if w == 64 {
                v as u64
            } else {
                (v as u64) & ((1u64 << w) - 1)
            };
            format!("{v:b}")
        };
        let _ = writeln!(out, "#{}", self.window.from);
        let _ = writeln!(out, "$dumpvars");
        for s in &signals {
            let w = width(s);
            if w == 1 {
                let _ = writeln!(out, "0{}", index[s]);
            } else {
                let _ = writeln!(out, "b0 {}", index[s]);
            }
        }
        let _ = writeln!(out, "$end");
        let mut changes = self.changes.clone();
        // Stable: at one time, later events of the same signal win.
        changes.sort_by_key(|c| c.0);
        let mut last: BTreeMap<Signal, i64> = BTreeMap::new();
        let mut time = self.window.from;
        for (t, s, v) in changes {
            if last.get(&s) == Some(&v) {
                continue;
            }
            last.insert(s, v);
            if t != time {
                let _ = writeln!(out, "#{t}");
                time = t;
            }
            let w = width(&s);
            if w == 1 {
                let _ = writeln!(out, "{}{}", v & 1, index[&s]);
            } else {
                let _ = writeln!(out, "b{} {}", bits(v, w), index[&s]);
            }
        }
        let _ = writeln!(out, "#{}", self.window.to);
        out
    }
}
