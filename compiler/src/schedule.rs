//! The `schedule` pass: the instruction streams of every core, phase by phase.
//!
//! Per layer, a column's first row tile is its *reducer* (it gathers partial sums, runs the
//! neuron unit and the learning unit's neuron-wide steps) and the layer's first reducer is its
//! *leader* (it reduces the per-class scores and runs the softmax). See docs/compiler.md for the
//! dataflow of each phase.

use crate::place::Placement;
use crate::route::{Purpose, RouteTable};
use sigchip_isa::{
    Buf, Class, CoreId, DeltaMode, Endpoint, Instr, LocalLoss, Pre, Readout, ScoreMode, Streams,
    TargetMode,
};

/// What the schedule needs to know.
pub struct ScheduleInputs<'a> {
    /// Layer 1's projection learns (`projection: learned`); a fixed one gives its target
    /// stream nothing to update.
    pub projection_learned: bool,
    /// Samples per weight update.
    pub batch: u32,
    /// Layer 1's targets come through its crossbar from the input port (`to_input`).
    pub to_input: bool,
    /// Local loss of each layer.
    pub losses: &'a [LocalLoss],
    pub placement: &'a Placement,
    pub routes: &'a RouteTable,
    pub classes: u32,
    pub readout: Readout,
    pub targets: TargetMode,
    /// Layers `0..keeps_targets_until` keep class targets.
    pub keeps_targets_until: usize,
    /// Neurons with time replace `act` with `nstep` (a time step) and class targets build up
    /// over the steps of the targets phase (`nstept`).
    pub neuron: sigchip_isa::NeuronModel,
}

/// The `schedule` pass: streams for every core, indexed by core ID.
pub fn schedule(x: &ScheduleInputs) -> Vec<Streams> {
    let mut out = vec![Streams::default(); x.placement.positions.len()];
    for (l, layer) in x.placement.cores.iter().enumerate() {
        for (rt, row) in layer.iter().enumerate() {
            for (ct, &me) in row.iter().enumerate() {
                let s = &mut out[me.index()];
                let at = At { l, rt, ct, me };
                s.forward = forward(x, at);
                s.learn = learn(x, at);
                if x.batch > 1 || x.neuron.sums_updates() {
                    // Mini-batches (or a sample's summed time steps): updates accumulate per
                    // synapse and apply at the batch's (sample's) end.
                    for i in s.learn.iter_mut() {
                        if let Instr::Upd { pre } = *i {
                            *i = Instr::GAcc { pre };
                        }
                    }
                    s.apply = vec![Instr::GApply {}, Instr::Halt {}];
                }
                if l < x.keeps_targets_until {
                    s.targets = targets(x, at);
                }
                if x.losses[l].is_contrastive() && rt == 0 && ct == 0 {
                    s.batch = vec![
                        Instr::Recv {
                            route: x.route(Purpose::Batch { dst: me }),
                        },
                        Instr::Halt {},
                    ];
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
struct At {
    l: usize,
    rt: usize,
    ct: usize,
    me: CoreId,
}

impl ScheduleInputs<'_> {
    fn route(&self, p: Purpose) -> sigchip_isa::RouteId {
        self.routes
            .get(p)
            .unwrap_or_else(|| panic!("the route pass made no route for {p:?}"))
    }

    fn layer(&self, l: usize) -> &Vec<Vec<CoreId>> {
        &self.placement.cores[l]
    }

    fn is_last(&self, l: usize) -> bool {
        l + 1 == self.placement.cores.len()
    }

    /// Sends of this reducer's outputs to the next layer.
    fn send_outputs(&self, me: CoreId, s: &mut Vec<Instr>) {
        for r in &self.routes.routes {
            if r.src == Endpoint::Core(me)
                && matches!(r.src_buf, Buf::Out | Buf::Spike)
                && r.dst_buf == Buf::In
            {
                s.push(Instr::Send { route: r.id });
            }
        }
    }

    /// Receive the layer inputs, multiply, and (reducer) gather the partial sums.
    fn multiply_and_reduce(&self, at: At, s: &mut Vec<Instr>, store_target_input: Option<u8>) {
        for route in self.routes.inputs_to(at.me) {
            s.push(Instr::Recv { route });
        }
        if let Some(k) = store_target_input {
            s.push(Instr::TInStore { class: Class(k) });
        }
        s.push(Instr::Mvm { src: Buf::In });
        if at.rt > 0 {
            s.push(Instr::Send {
                route: self.route(Purpose::Psum { src: at.me }),
            });
            return;
        }
        for row in self.layer(at.l).iter().skip(1) {
            s.push(Instr::Recv {
                route: self.route(Purpose::Psum { src: row[at.ct] }),
            });
            s.push(Instr::AddPs {});
        }
        s.push(if self.neuron.has_time() {
            Instr::NStep {}
        } else {
            Instr::Act {}
        });
    }

    /// Partial scores to the leader, or (leader) gather them.
    fn reduce_scores(&self, at: At, s: &mut Vec<Instr>) {
        let reducers = &self.layer(at.l)[0];
        if at.ct > 0 {
            s.push(Instr::Send {
                route: self.route(Purpose::Scores { src: at.me }),
            });
        } else {
            for &r in reducers.iter().skip(1) {
                s.push(Instr::Recv {
                    route: self.route(Purpose::Scores { src: r }),
                });
                s.push(Instr::AddSc {});
            }
        }
    }
}

fn forward(x: &ScheduleInputs, at: At) -> Vec<Instr> {
    let mut s = Vec::new();
    x.multiply_and_reduce(at, &mut s, None);
    if at.rt == 0 {
        if !x.is_last(at.l) {
            x.send_outputs(at.me, &mut s);
        } else if !x.readout.is_nearest() {
            s.push(Instr::Send {
                route: x.route(Purpose::Output { src: at.me }),
            });
        } else {
            s.push(Instr::Score {
                mode: if x.readout == Readout::NearestTargetL2 {
                    ScoreMode::TargetsL2
                } else {
                    ScoreMode::Targets
                },
            });
            x.reduce_scores(at, &mut s);
            if at.ct == 0 {
                s.push(Instr::Send {
                    route: x.route(Purpose::Output { src: at.me }),
                });
            }
        }
    }
    s.push(Instr::Halt {});
    s
}

fn learn(x: &ScheduleInputs, at: At) -> Vec<Instr> {
    let mut s = Vec::new();
    let keeps = at.l < x.keeps_targets_until;
    let learned = keeps && x.targets == TargetMode::Learned;
    let classes = x.classes as u8;
    let peers: Vec<CoreId> = x.layer(at.l).iter().skip(1).map(|row| row[at.ct]).collect();
    let loss = x.losses[at.l];
    if loss.label_on_every_core() {
        // Per-neuron losses: every core compares its neurons with the label's target; no scores,
        // no softmax, no exchange but the reducer's errors to its row tiles.
        let (mode, pre) = match loss {
            // Layer 1's target stream does not pass through its weights: it learns from its data.
            LocalLoss::Hebbian { pre } if at.l > 0 || x.to_input => (DeltaMode::Hebbian, pre),
            LocalLoss::Hebbian { .. } => (DeltaMode::Hebbian, Pre::Data),
            _ => (DeltaMode::L2, Pre::Data),
        };
        s.push(Instr::Recv {
            route: x.route(Purpose::Label { dst: at.me }),
        });
        if at.rt > 0 {
            s.push(Instr::Recv {
                route: x.route(Purpose::Delta { dst: at.me }),
            });
        } else {
            s.push(Instr::Delta { mode });
            for &p in &peers {
                s.push(Instr::Send {
                    route: x.route(Purpose::Delta { dst: p }),
                });
            }
        }
        s.push(Instr::Upd { pre });
        // `l2` with learned targets: the label's target learns too (its mismatch through the
        // target's activation), where the target stream passes through weights that learn.
        if learned && (at.l > 0 || x.to_input || x.projection_learned) {
            if at.rt > 0 {
                // Layer 1's projection lives on its reducers: row tiles learn only where the
                // target stream passes through the crossbar.
                if at.l == 0 && !x.to_input {
                    s.push(Instr::Halt {});
                    return s;
                }
                s.push(Instr::Recv {
                    route: x.route(Purpose::DeltaT { dst: at.me }),
                });
                s.push(Instr::UpdT {
                    class: Class::LABEL,
                });
            } else {
                s.push(Instr::DeltaT {
                    class: Class::LABEL,
                });
                if at.l == 0 && !x.to_input {
                    s.push(Instr::UpdP {
                        class: Class::LABEL,
                    });
                } else {
                    for &p in &peers {
                        s.push(Instr::Send {
                            route: x.route(Purpose::DeltaT { dst: p }),
                        });
                    }
                    s.push(Instr::UpdT {
                        class: Class::LABEL,
                    });
                }
            }
        }
        s.push(Instr::Halt {});
        return s;
    }
    if at.rt > 0 {
        s.push(Instr::Recv {
            route: x.route(Purpose::Delta { dst: at.me }),
        });
        s.push(Instr::Upd { pre: Pre::Data });
        // Peers learn from the target stream where it passes through the crossbar.
        if learned && (at.l > 0 || x.to_input) {
            for k in 0..classes {
                s.push(Instr::Recv {
                    route: x.route(Purpose::DeltaT { dst: at.me }),
                });
                s.push(Instr::UpdT { class: Class(k) });
            }
        }
        s.push(Instr::Halt {});
        return s;
    }
    let (mode, delta_mode) = if keeps {
        (ScoreMode::Targets, DeltaMode::Targets)
    } else {
        (ScoreMode::Direct, DeltaMode::Direct)
    };
    // With a nearest-target readout the last layer's scores were reduced in the forward phase.
    // (The L2 readout's scores are distances: the loss recomputes dot products.)
    let scores_done = x.is_last(at.l) && x.readout == Readout::NearestTarget;
    if !scores_done {
        s.push(Instr::Score { mode });
        x.reduce_scores(at, &mut s);
    }
    if at.ct == 0 {
        s.push(Instr::Recv {
            route: x.route(Purpose::Label { dst: at.me }),
        });
        s.push(Instr::Smax {});
        for &r in x.layer(at.l)[0].iter().skip(1) {
            s.push(Instr::Send {
                route: x.route(Purpose::Err { dst: r }),
            });
        }
    } else {
        s.push(Instr::Recv {
            route: x.route(Purpose::Err { dst: at.me }),
        });
    }
    s.push(Instr::Delta { mode: delta_mode });
    for &p in &peers {
        s.push(Instr::Send {
            route: x.route(Purpose::Delta { dst: p }),
        });
    }
    s.push(Instr::Upd { pre: Pre::Data });
    // Layer 1's target stream only learns through a learned projection or (to_input) its
    // crossbar; with a fixed projection it has nothing to update.
    let learned = learned && (at.l > 0 || x.to_input || x.projection_learned);
    if learned {
        for k in 0..classes {
            s.push(Instr::DeltaT { class: Class(k) });
            if at.l == 0 && !x.to_input {
                s.push(Instr::UpdP { class: Class(k) });
            } else {
                for &p in &peers {
                    s.push(Instr::Send {
                        route: x.route(Purpose::DeltaT { dst: p }),
                    });
                }
                s.push(Instr::UpdT { class: Class(k) });
            }
        }
    }
    s.push(Instr::Halt {});
    s
}

fn targets(x: &ScheduleInputs, at: At) -> Vec<Instr> {
    let mut s = Vec::new();
    let learned = x.targets == TargetMode::Learned || x.losses[at.l].needs_target_inputs();
    let next_keeps = at.l + 1 < x.keeps_targets_until;
    let time = x.neuron.has_time();
    for k in 0..x.classes as u8 {
        if at.l == 0 && !x.to_input {
            // Layer 1 looks its targets up in the projection: only reducers hold one.
            if at.rt > 0 {
                continue;
            }
            s.push(Instr::Proj { class: Class(k) });
            if !time {
                s.push(Instr::Act {});
            }
        } else {
            x.multiply_and_reduce(at, &mut s, learned.then_some(k));
            if at.rt > 0 {
                continue;
            }
            if time {
                // `multiply_and_reduce` ended with the data stream's `nstep`.
                s.pop();
            }
        }
        // With time the class's own neuron state steps and its target builds up over the
        // targets phase's steps.
        s.push(if time {
            Instr::NStepT { class: Class(k) }
        } else {
            Instr::TStore { class: Class(k) }
        });
        if next_keeps {
            x.send_outputs(at.me, &mut s);
        }
    }
    // Batch-contrastive layers beyond the first compare batch entries by the similarity of
    // their target inputs: each reducer of the layer before sends its share, the leader sums.
    if at.rt == 0 && x.losses.get(at.l + 1).is_some_and(|l| l.is_contrastive()) {
        s.push(Instr::Gram {});
        s.push(Instr::Send {
            route: x.route(Purpose::Gram { src: at.me }),
        });
    }
    if at.l > 0 && at.rt == 0 && at.ct == 0 && x.losses[at.l].is_contrastive() {
        for (i, &src) in x.layer(at.l - 1)[0].iter().enumerate() {
            s.push(Instr::Recv {
                route: x.route(Purpose::Gram { src }),
            });
            if i > 0 {
                s.push(Instr::AddG {});
            }
        }
    }
    s.push(Instr::Halt {});
    s
}
