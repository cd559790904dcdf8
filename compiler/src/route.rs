//! The `route` pass: every route the schedule will use, keyed by what it carries.
//!
//! All routes are dimension-ordered (x first, then y) and go forward (to a deeper layer or the
//! output port) or laterally (between cores of one layer). Nothing in this pass can create a
//! route to an earlier layer; the verifier proves it anyway.

use crate::place::Placement;
use crate::tile::LayerTiling;
use sigchip_isa::{Buf, CoreId, Endpoint, LocalLoss, Readout, Route, RouteId, TargetMode};
use std::collections::HashMap;

/// What a route is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Layer inputs (data and target streams) from the input port or a previous layer's reducer.
    Inputs {
        src: Endpoint,
        dst: CoreId,
    },
    Label {
        dst: CoreId,
    },
    /// Partial sums from a row tile to its reducer.
    Psum {
        src: CoreId,
    },
    /// Partial scores from a column reducer to the layer leader.
    Scores {
        src: CoreId,
    },
    /// Class errors from the leader to a column reducer.
    Err {
        dst: CoreId,
    },
    /// Neuron errors from a reducer to a row tile.
    Delta {
        dst: CoreId,
    },
    DeltaT {
        dst: CoreId,
    },
    /// Predictions to the output port.
    Output {
        src: CoreId,
    },
    /// The mini-batch's labels from the input port to a batch-contrastive layer's leader.
    Batch {
        dst: CoreId,
    },
    /// A reducer's partial class similarities to the next (batch-contrastive) layer's leader.
    Gram {
        src: CoreId,
    },
}

/// The routes of a program, found by purpose.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
    by_purpose: HashMap<Purpose, RouteId>,
}

impl RouteTable {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        purpose: Purpose,
        src: Endpoint,
        src_buf: Buf,
        src_start: u32,
        len: u32,
        dst: Endpoint,
        dst_buf: Buf,
        dst_start: u32,
    ) {
        let id = RouteId(self.routes.len() as u16);
        self.routes.push(Route {
            id,
            src,
            dst,
            src_buf,
            src_start,
            len,
            dst_buf,
            dst_start,
        });
        self.by_purpose.insert(purpose, id);
    }

    /// The route for a purpose, if the program has one.
    pub fn get(&self, purpose: Purpose) -> Option<RouteId> {
        self.by_purpose.get(&purpose).copied()
    }

    /// Input routes into `dst`, in source order.
    pub fn inputs_to(&self, dst: CoreId) -> Vec<RouteId> {
        self.routes
            .iter()
            .filter(|r| r.dst == Endpoint::Core(dst) && r.dst_buf == Buf::In)
            .map(|r| r.id)
            .collect()
    }
}

/// Facts about the network the routes depend on.
pub struct RouteInputs<'a> {
    /// Layer 1's targets come through its crossbar from the input port (`to_input`).
    pub to_input: bool,
    /// Local loss of each layer.
    pub losses: &'a [LocalLoss],
    pub tilings: &'a [LayerTiling],
    pub placement: &'a Placement,
    /// Input width of each layer (without bias).
    pub inputs: &'a [u32],
    pub classes: u32,
    pub readout: Readout,
    pub targets: TargetMode,
    /// Samples per weight update.
    pub batch: u32,
    /// Spiking layers send their spikes (`spk`) onward instead of their outputs.
    pub neuron: sigchip_isa::NeuronModel,
}

/// The `route` pass.
pub fn route(x: &RouteInputs) -> RouteTable {
    let mut t = RouteTable::default();
    let core = Endpoint::Core;
    let layers = x.tilings.len();
    for l in 0..layers {
        let tiling = &x.tilings[l];
        let cores = &x.placement.cores[l];
        let inputs = x.inputs[l];
        // Inputs: each core receives the part of its row range that is not the bias row.
        for (rt, &(r0, rn)) in tiling.row_ranges.iter().enumerate() {
            let r1 = (r0 + rn).min(inputs);
            for &dst in &cores[rt] {
                if l == 0 {
                    if r1 > r0 {
                        t.add(
                            Purpose::Inputs {
                                src: Endpoint::Input,
                                dst,
                            },
                            Endpoint::Input,
                            Buf::In,
                            r0,
                            r1 - r0,
                            core(dst),
                            Buf::In,
                            0,
                        );
                    }
                    continue;
                }
                let prev = &x.tilings[l - 1];
                for (pct, &(c0, cn)) in prev.col_ranges.iter().enumerate() {
                    let (lo, hi) = (r0.max(c0), r1.min(c0 + cn));
                    if lo < hi {
                        let src = x.placement.cores[l - 1][0][pct];
                        t.add(
                            Purpose::Inputs {
                                src: core(src),
                                dst,
                            },
                            core(src),
                            x.sent_buf(),
                            lo - c0,
                            hi - lo,
                            core(dst),
                            Buf::In,
                            lo - r0,
                        );
                    }
                }
            }
        }
        let leader = cores[0][0];
        if x.losses[l].is_contrastive() {
            // A batch-contrastive leader needs the batch's labels and, beyond layer 1, the class
            // similarities of its target inputs: partial ones from each reducer of the layer
            // before (a forward route), the first written in place, the others added.
            t.add(
                Purpose::Batch { dst: leader },
                Endpoint::Input,
                Buf::Batch,
                0,
                x.batch,
                core(leader),
                Buf::Batch,
                0,
            );
            if l > 0 {
                for (pct, &src) in x.placement.cores[l - 1][0].iter().enumerate() {
                    t.add(
                        Purpose::Gram { src },
                        core(src),
                        Buf::GramPart,
                        0,
                        x.classes * x.classes,
                        core(leader),
                        if pct == 0 { Buf::Gram } else { Buf::GramIn },
                        0,
                    );
                }
            }
        }
        // The label goes to the core that runs the softmax, or to every core for the per-neuron
        // losses (each compares its neurons with the label's target).
        for row in cores {
            for &c in row {
                if c == leader || x.losses[l].label_on_every_core() {
                    t.add(
                        Purpose::Label { dst: c },
                        Endpoint::Input,
                        Buf::Label,
                        0,
                        1,
                        core(c),
                        Buf::Label,
                        0,
                    );
                }
            }
        }
        for (ct, &(c0, cn)) in tiling.col_ranges.iter().enumerate() {
            let reducer = cores[0][ct];
            for row in cores.iter().skip(1) {
                let peer = row[ct];
                t.add(
                    Purpose::Psum { src: peer },
                    core(peer),
                    Buf::Acc,
                    0,
                    cn,
                    core(reducer),
                    Buf::Psum,
                    0,
                );
                t.add(
                    Purpose::Delta { dst: peer },
                    core(reducer),
                    Buf::Delta,
                    0,
                    cn,
                    core(peer),
                    Buf::Delta,
                    0,
                );
                if x.targets == TargetMode::Learned
                    && (l > 0 || x.to_input)
                    && l < x.keeps_targets_until()
                {
                    t.add(
                        Purpose::DeltaT { dst: peer },
                        core(reducer),
                        Buf::DeltaT,
                        0,
                        cn,
                        core(peer),
                        Buf::DeltaT,
                        0,
                    );
                }
            }
            // Column tiles exchange class scores and errors only where a softmax spans the
            // layer (and, for a nearest-target readout, to reduce the last layer's scores).
            let last = l + 1 == layers;
            let softmax = !x.losses[l].label_on_every_core();
            if ct > 0 && (softmax || (last && x.readout.is_nearest())) {
                let c = x.classes;
                t.add(
                    Purpose::Scores { src: reducer },
                    core(reducer),
                    Buf::Score,
                    0,
                    c,
                    core(leader),
                    Buf::ScoreIn,
                    0,
                );
            }
            if ct > 0 && softmax {
                t.add(
                    Purpose::Err { dst: reducer },
                    core(leader),
                    Buf::Err,
                    0,
                    x.classes,
                    core(reducer),
                    Buf::Err,
                    0,
                );
            }
            if last && !x.readout.is_nearest() {
                // A spiking output layer reports its spikes for a spike-count readout, its
                // learning signal for a membrane readout.
                let buf = match x.neuron {
                    sigchip_isa::NeuronModel::Lif {
                        readout: sigchip_isa::SpikeReadout::SpikeCount,
                        ..
                    } => Buf::Spike,
                    _ => Buf::Out,
                };
                t.add(
                    Purpose::Output { src: reducer },
                    core(reducer),
                    buf,
                    0,
                    cn,
                    Endpoint::Output,
                    Buf::Out,
                    c0,
                );
            }
        }
        if l + 1 == layers && x.readout.is_nearest() {
            t.add(
                Purpose::Output { src: leader },
                core(leader),
                Buf::Score,
                0,
                x.classes,
                Endpoint::Output,
                Buf::Score,
                0,
            );
        }
    }
    t
}

impl RouteInputs<'_> {
    /// What a layer sends to the next: spikes for spiking layers, outputs otherwise.
    pub fn sent_buf(&self) -> Buf {
        if self.neuron.is_lif() {
            Buf::Spike
        } else {
            Buf::Out
        }
    }

    /// Layers `0..n` (0-based) keep class targets: every hidden layer.
    pub fn keeps_targets_until(&self) -> usize {
        match self.readout {
            Readout::OutputLayer => self.tilings.len() - 1,
            Readout::NearestTarget | Readout::NearestTargetL2 => self.tilings.len(),
        }
    }
}
