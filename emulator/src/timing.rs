//! The timing model: cycles of each instruction from the chip's cost table and the activity the
//! kernels report. The engine charges every instruction through [`instr_cycles`]; messages take
//! the time the network ([`crate::router`]) gives them; nothing else advances a core's clock,
//! except waiting for a message or a free route. See docs/timing-model.md.

use crate::kernels::Activity;
use sigchip_isa::chip::Costs;
use sigchip_isa::Instr;

/// A cycle count or a point in time, in core clock cycles.
pub type Cycles = u64;

fn lanes(n: u64, c: &Costs) -> u64 {
    n.div_ceil(c.neuron_lanes as u64)
}

/// Cycles an instruction occupies its core (excluding any wait for a message).
/// `packets` is the message size for `send` and `recv`.
pub fn instr_cycles(instr: &Instr, activity: &Activity, packets: u64, c: &Costs) -> Cycles {
    let issue = c.issue as u64;
    issue
        + match instr {
            Instr::Nop {} | Instr::Halt {} | Instr::Sync {} | Instr::LdRem { .. } => 0,
            Instr::Recv { .. } => c.recv_packet as u64 * packets,
            Instr::Send { .. } => c.send_packet as u64 * packets,
            Instr::Mvm { .. } | Instr::MvmT { .. } => c.mvm_row as u64 * activity.rows,
            Instr::Upd { .. }
            | Instr::UpdT { .. }
            | Instr::UpdP { .. }
            | Instr::GAcc { .. }
            | Instr::GApply {} => c.update_row as u64 * activity.rows,
            Instr::Smax {} => {
                c.softmax_class as u64 * activity.neurons + c.select_entry as u64 * activity.entries
            }
            Instr::Proj { .. }
            | Instr::AddPs {}
            | Instr::Act {}
            | Instr::TStore { .. }
            | Instr::TInStore { .. }
            | Instr::Score { .. }
            | Instr::AddSc {}
            | Instr::Gram {}
            | Instr::AddG {}
            | Instr::NStep {}
            | Instr::NStepT { .. }
            | Instr::Delta { .. }
            | Instr::DeltaT { .. } => lanes(activity.neurons, c),
        }
}

/// Packets of a message: its non-zero entries plus one tail packet that closes it.
pub fn packets(values: &[i64]) -> u64 {
    values.iter().filter(|&&v| v != 0).count() as u64 + 1
}
