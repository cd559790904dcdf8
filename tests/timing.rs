//! Cycle accounting: every instruction kind costs exactly what the chip description's cost table
//! says for the activity it reports, instructions on a core follow each other without gaps
//! unless the core waited, and the worked example of docs/timing-model.md is what the emulator
//! does.

use sigchip::compiler;
use sigchip::emulator::decoupled::TimingThreads;
use sigchip::emulator::engine::{EngineKind, Trace};
use sigchip::emulator::train::encode_input;
use sigchip::emulator::{data, Machine, Phase};
use sigchip::isa::chip::Costs;
use sigchip::isa::{ChipDescription, Instr, Opcode, Program};
use std::collections::BTreeSet;

/// The cost of an instruction from the cost table, written out per instruction kind.
fn expected_cycles(i: &Instr, a: &sigchip::emulator::kernels::Activity, c: &Costs) -> u64 {
    let lanes = |n: u64| n.div_ceil(c.neuron_lanes as u64);
    c.issue as u64
        + match i {
            Instr::Nop {} | Instr::Halt {} | Instr::Sync {} | Instr::LdRem { .. } => 0,
            Instr::Recv { .. } => c.recv_packet as u64 * a.packets,
            Instr::Send { .. } => c.send_packet as u64 * a.packets,
            Instr::Mvm { .. } | Instr::MvmT { .. } => c.mvm_row as u64 * a.rows,
            Instr::Upd { .. }
            | Instr::UpdT { .. }
            | Instr::UpdP { .. }
            | Instr::GAcc { .. }
            | Instr::GApply {} => c.update_row as u64 * a.rows,
            Instr::Smax {} => {
                c.softmax_class as u64 * a.neurons + c.select_entry as u64 * a.entries
            }
            Instr::Proj { .. }
            | Instr::AddPs {}
            | Instr::Act {}
            | Instr::TStore { .. }
            | Instr::TInStore { .. }
            | Instr::Score { .. }
            | Instr::AddSc {}
            | Instr::Delta { .. }
            | Instr::DeltaT { .. }
            | Instr::Gram {}
            | Instr::AddG {}
            | Instr::NStep {}
            | Instr::NStepT { .. } => lanes(a.neurons),
        }
}

/// A chip with every cost distinct, so a cost charged to the wrong instruction shows.
fn odd_chip(data_sram_bits: u64) -> ChipDescription {
    let mut chip = ChipDescription::from_ron(
        "(crossbar: (rows: 40, cols: 48), memory: (data_sram_bits: 4194304))",
        "odd.ron",
    )
    .unwrap();
    chip.memory.data_sram_bits = data_sram_bits;
    chip.costs = Costs {
        issue: 2,
        mvm_row: 3,
        update_row: 5,
        neuron_lanes: 7,
        softmax_class: 11,
        select_entry: 13,
        send_packet: 2,
        recv_packet: 3,
        hop: 4,
        sync: 1,
    };
    chip
}

/// Trains a few samples with tracing on and returns every run's trace.
fn traced_training(p: Program, samples: usize) -> (Machine, Vec<Trace>) {
    let d = data::digits();
    let mut m = Machine::new(p).unwrap();
    m.tracing = true;
    let mut traces = Vec::new();
    let fmt = m.program().network.input_format;
    let batch = m.program().network.batch as usize;
    let mut x = Vec::new();
    for i in 0..samples {
        if batch > 1 && i % batch == 0 {
            let labels: Vec<usize> = (i..i + batch).map(|j| d.train.label(j)).collect();
            m.begin_batch(&labels).unwrap();
            traces.push(m.last_trace.take().unwrap());
        }
        // Continuous time runs its target stream inside the sample.
        let neuron = m.program().network.neuron;
        let alongside = neuron.has_time() && !neuron.is_lif();
        if !alongside {
            m.run(&[Phase::Targets], 0, None, None).unwrap();
            traces.push(m.last_trace.take().unwrap());
        }
        encode_input(d.train.image(i), d.max_value, fmt, &mut x);
        let phases: &[Phase] = if alongside {
            &[Phase::Targets, Phase::Forward, Phase::Learn]
        } else {
            &[Phase::Forward, Phase::Learn]
        };
        m.run(phases, 0, Some(&x), Some(d.train.label(i))).unwrap();
        traces.push(m.last_trace.take().unwrap());
        m.next_update_step();
        if batch > 1 && (i + 1) % batch == 0 {
            m.run(&[Phase::Apply], 0, None, None).unwrap();
            traces.push(m.last_trace.take().unwrap());
        }
    }
    (m, traces)
}

#[test]
fn every_instruction_costs_what_the_cost_table_says() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let mut seen = BTreeSet::new();
    // Tiled layers (40 x 48 crossbars), the label_direct learner with learned targets and the
    // batch-contrastive one in mini-batches, so that every instruction kind the compiler emits
    // runs.
    let digits = std::fs::read_to_string(format!("{dir}/examples/digits.ron")).unwrap();
    let learned = digits
        .replace("targets: constant", "targets: learned")
        .replace("projection: fixed_random", "projection: learned");
    let contrastive =
        std::fs::read_to_string(format!("{dir}/examples/digits_target_max.ron")).unwrap();
    let example =
        |name: &str| std::fs::read_to_string(format!("{dir}/examples/{name}.ron")).unwrap();
    let summed = example("digits_snn_surrogate").replace("update: per_step", "update: summed");
    for (text, samples) in [
        (learned, 2),
        (contrastive, 16),
        (example("digits_snn_voltage"), 2),
        (summed, 2),
        (example("digits_ct_hebbian"), 2),
    ] {
        let chip = odd_chip(1 << 24);
        let p = compiler::compile_str(&text, "t", &chip).unwrap().program;
        let costs = p.chip.costs;
        let (m, traces) = traced_training(p, samples);
        let mut busy = vec![0u64; m.program().cores.len()];
        for t in &traces {
            let mut last_end = vec![0u64; busy.len()];
            for i in &t.instrs {
                assert_eq!(
                    i.cycles,
                    expected_cycles(&i.instr, &i.activity, &costs),
                    "{} {:?}[{}] `{}` with {:?}",
                    i.core,
                    i.phase,
                    i.pc,
                    i.instr,
                    i.activity
                );
                // A core issues right after its previous instruction unless it waited.
                let c = i.core.index();
                match i.waited_from {
                    None => assert_eq!(i.start, last_end[c], "{} `{}` has a gap", i.core, i.instr),
                    Some(w) => assert!(w == last_end[c] && i.start > w, "{} `{}`", i.core, i.instr),
                }
                last_end[c] = i.start + i.cycles;
                busy[c] += i.cycles;
                seen.insert(i.instr.opcode());
            }
            // Messages arrive no sooner than their last packet can cross the hops.
            for msg in &t.messages {
                let r = &m.program().routes[msg.route.index()];
                let hops = m.program().hops(r) as u64;
                let first_packet = match msg.from {
                    Some(_) => costs.issue as u64 + costs.send_packet as u64,
                    None => costs.send_packet as u64,
                };
                assert!(
                    msg.arrival
                        >= msg.sent
                            + first_packet
                            + (msg.packets - 1) * costs.send_packet as u64
                            + hops * costs.hop as u64,
                    "{:?}",
                    msg
                );
            }
        }
        assert_eq!(busy, m.counters.busy_cycles);
    }
    // Everything but the baseline-only instructions (`mvmt`, `ldrem`) and the unemitted `nop`,
    // `sync`, `upd`/`tinstore`-with-target variants ran.
    for op in Opcode::ALL {
        let unemitted = matches!(
            op,
            Opcode::MvmT | Opcode::LdRem | Opcode::Nop | Opcode::Sync
        );
        assert_eq!(
            seen.contains(op),
            !unemitted,
            "{}: ran {}",
            op.mnemonic(),
            seen.contains(op)
        );
    }
}

/// One inference of examples/digits.ron on the default chip, instruction by instruction, as
/// docs/timing-model.md shows it ("Worked example").
fn worked_example() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/digits.ron")).unwrap();
    let p = compiler::compile_str(&text, "digits", &ChipDescription::default())
        .unwrap()
        .program;
    let d = data::digits();
    let mut m = Machine::new(p).unwrap();
    m.run(&[Phase::Targets], 0, None, None).unwrap();
    m.tracing = true;
    m.engine = EngineKind::Tick;
    let mut x = Vec::new();
    encode_input(
        d.test.image(0),
        d.max_value,
        m.program().network.input_format,
        &mut x,
    );
    let r = m.run(&[Phase::Forward], 0, Some(&x), None).unwrap();
    let t = m.last_trace.take().unwrap();
    let mut s = String::from("| core | instruction | activity | waits from | starts | cycles |\n|---|---|---|---|---|---|\n");
    for i in &t.instrs {
        let a = &i.activity;
        let activity = match i.instr {
            Instr::Recv { .. } | Instr::Send { .. } => format!("{} packets", a.packets),
            Instr::Mvm { .. } => format!("{} rows", a.rows),
            Instr::Act {} => format!("{} neurons", a.neurons),
            _ => String::new(),
        };
        s += &format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            i.core,
            i.instr,
            activity,
            i.waited_from.map_or(String::new(), |w| w.to_string()),
            i.start,
            i.cycles
        );
    }
    s += &format!(
        "\nThe prediction (class {}) reaches the output port at cycle {}; the last core halts at \
         cycle {}.\n",
        r.prediction.unwrap(),
        r.output_at.unwrap(),
        r.end
    );
    s
}

#[test]
fn the_worked_example_in_the_docs_is_what_the_emulator_does() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/timing-model.md"))
        .unwrap();
    let (b, e) = (
        "<!-- BEGIN worked-example -->\n",
        "<!-- END worked-example -->",
    );
    let start = doc.find(b).expect("the worked example's markers") + b.len();
    let end = doc.find(e).expect("the worked example's end marker");
    let expected = worked_example();
    if doc[start..end] != expected {
        panic!("docs/timing-model.md's worked example is out of date; it should read:\n{expected}");
    }
}

/// Signal names (`scope.name`) to VCD identifiers.
type Ids = std::collections::HashMap<String, String>;

/// A minimal VCD reader: signal names (scope.name) to identifiers, and every value change as
/// (time, identifier, value).
fn parse_vcd(text: &str) -> (Ids, Vec<(u64, String, u64)>) {
    let mut ids = std::collections::HashMap::new();
    let mut scopes: Vec<String> = Vec::new();
    let mut changes = Vec::new();
    let mut time = None;
    let mut defs = true;
    let mut last_time = 0;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if defs {
            match w.as_slice() {
                ["$scope", "module", name, "$end"] => scopes.push(name.to_string()),
                ["$upscope", "$end"] => {
                    scopes.pop();
                }
                ["$var", "wire", _, id, name, "$end"] => {
                    ids.insert(format!("{}.{name}", scopes.join(".")), id.to_string());
                }
                ["$enddefinitions", "$end"] => defs = false,
                _ => {}
            }
            continue;
        }
        if let Some(t) = line.strip_prefix('#') {
            let t: u64 = t.parse().expect("a time");
            assert!(t >= last_time, "time goes back at #{t}");
            last_time = t;
            time = Some(t);
        } else if let Some(rest) = line.strip_prefix('b') {
            let (v, id) = rest.split_once(' ').expect("bVALUE ID");
            changes.push((
                time.unwrap(),
                id.to_string(),
                u64::from_str_radix(v, 2).unwrap(),
            ));
        } else if let Some(v) = line.strip_prefix(['0', '1']) {
            changes.push((time.unwrap(), v.to_string(), line[..1].parse().unwrap()));
        }
    }
    let known: std::collections::HashSet<&String> = ids.values().collect();
    for (t, id, _) in &changes {
        assert!(known.contains(id), "#{t}: undefined signal {id}");
    }
    (ids, changes)
}

#[test]
fn the_waveform_shows_the_worked_example() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/digits.ron")).unwrap();
    let p = compiler::compile_str(&text, "digits", &ChipDescription::default())
        .unwrap()
        .program;
    // The waveform's time line starts with the target refresh; the first sample follows.
    let offset = Machine::new(p.clone())
        .unwrap()
        .run(&[Phase::Targets], 0, None, None)
        .unwrap()
        .end;
    let mut d = data::digits();
    d.train.truncate(1);
    d.test.truncate(1);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("worked.vcd");
    let window = sigchip::emulator::vcd::Window {
        from: 0,
        to: offset + 1000,
    };
    sigchip::emulator::train::run_on(
        p,
        &d,
        EngineKind::Event,
        Some((path.clone(), window)),
        &mut |_, _, _| {},
    )
    .unwrap();
    let (ids, changes) = parse_vcd(&std::fs::read_to_string(&path).unwrap());
    let values = |name: &str| -> Vec<(u64, u64)> {
        let id = ids
            .get(&format!("chip.{name}"))
            .unwrap_or_else(|| panic!("no signal {name}"));
        changes
            .iter()
            .filter(|c| &c.1 == id)
            .map(|c| (c.0, c.2))
            .collect()
    };
    let at =
        |name: &str, t: u64| -> u64 { values(name).iter().rfind(|c| c.0 <= t).map_or(0, |c| c.1) };
    // docs/timing-model.md, "Worked example": core0 waits for the input until 37, then runs
    // recv (pc 0) at 37, mvm (pc 1) at 74, act at 111, send at 120, halt at 176.
    let o = offset;
    assert_eq!(at("core0.waiting", o + 36), 1);
    assert_eq!(
        (at("core0.waiting", o + 37), at("core0.busy", o + 37)),
        (0, 1)
    );
    assert_eq!((at("core0.phase", o + 40), at("core0.pc", o + 40)), (3, 0));
    assert_eq!(at("core0.pc", o + 74), 1);
    assert_eq!(at("core0.pc", o + 73), 0);
    assert_eq!(at("core0.pc", o + 120), 3);
    assert_eq!(
        values("core0.pc")
            .iter()
            .filter(|c| c.0 > o)
            .map(|c| c.0 - o)
            .collect::<Vec<_>>(),
        [37, 74, 111, 120, 176]
    );
    // Idle after the halt; core2 receives at 320.
    assert_eq!(
        (at("core0.busy", o + 177), at("core0.phase", o + 177)),
        (0, 0)
    );
    assert_eq!(
        (at("core2.phase", o + 320), at("core2.waiting", o + 319)),
        (3, 1)
    );
    // The input port's buffer fills from the sample's start; the first link carries its 36
    // packets; the probed neuron's output appears at the `act`.
    assert!(at("input_port.q_local", o + 1) > 0);
    assert_eq!(at("input_port.sent_east", o + 40), 36);
    assert_ne!(values("core0.out").len(), 0);
}

/// A program whose streams do not match its routes stops with an error on both engines
/// instead of running forever or losing the message: here core0 never takes its label.
#[test]
fn a_message_nobody_receives_is_an_error_on_both_engines() {
    let mut p = digits();
    let label_route = p
        .routes
        .iter()
        .find(|r| {
            r.src_buf == sigchip::isa::Buf::Label
                && r.dst == sigchip::isa::Endpoint::Core(p.cores[0].id)
        })
        .unwrap()
        .id;
    p.cores[0]
        .streams
        .learn
        .retain(|i| *i != Instr::Recv { route: label_route });
    let x = first_image(&p);
    for engine in [EngineKind::Event, EngineKind::Tick] {
        let mut m = Machine::new(p.clone()).unwrap();
        m.engine = engine;
        m.run(&[Phase::Targets], 0, None, None).unwrap();
        let e = m
            .run(&[Phase::Forward, Phase::Learn], 0, Some(&x), Some(3))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("a message on {label_route} was never received")),
            "{engine:?}: {e}"
        );
    }
    // Computed on this thread and timed on another, the run reports the same error.
    assert_eq!(split_error(&p, &x), live_error(&p, &x));
    // A chip whose cores inject no packet per cycle is refused.
    let e = ChipDescription::from_ron("(costs: (send_packet: 0))", "c.ron")
        .unwrap_err()
        .to_string();
    assert!(e.contains("costs.send_packet: is 0"), "{e}");
}

/// `examples/digits.ron` compiled for the default chip.
fn digits() -> Program {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/digits.ron")).unwrap();
    compiler::compile_str(&text, "digits", &ChipDescription::default())
        .unwrap()
        .program
}

/// The first training image of the digits, in `p`'s input format.
fn first_image(p: &Program) -> Vec<i32> {
    let d = data::digits();
    let mut x = Vec::new();
    encode_input(
        d.train.image(0),
        d.max_value,
        p.network.input_format,
        &mut x,
    );
    x
}

/// The error of a training sample of `x` (label 3) after a target refresh, on one thread.
fn live_error(p: &Program, x: &[i32]) -> String {
    let mut m = Machine::new(p.clone()).unwrap();
    m.run(&[Phase::Targets], 0, None, None).unwrap();
    m.run(&[Phase::Forward, Phase::Learn], 0, Some(x), Some(3))
        .unwrap_err()
        .to_string()
}

/// The same, with the timing replayed on another thread: the computation cannot see the error
/// (it has no time), the replay reports it when the threads settle.
fn split_error(p: &Program, x: &[i32]) -> String {
    let mut m = Machine::new(p.clone()).unwrap();
    let timing = TimingThreads::start(&mut m, 2).unwrap();
    m.run(&[Phase::Targets], 0, None, None).unwrap();
    m.run(&[Phase::Forward, Phase::Learn], 0, Some(x), Some(3))
        .unwrap();
    timing.settle(&mut m).unwrap_err().to_string()
}

/// A core that waits for a message nobody sends deadlocks, with the same cycle and waiting
/// cores whether the timing runs with the arithmetic or on another thread.
#[test]
fn a_deadlock_is_the_same_error_with_the_timing_on_another_thread() {
    let mut p = digits();
    // The first core that sends in its forward stream stops sending: its receiver waits.
    let core = p
        .cores
        .iter()
        .position(|c| {
            c.streams
                .forward
                .iter()
                .any(|i| matches!(i, Instr::Send { .. }))
        })
        .unwrap();
    p.cores[core]
        .streams
        .forward
        .retain(|i| !matches!(i, Instr::Send { .. }));
    let x = first_image(&p);
    let live = live_error(&p, &x);
    assert!(live.starts_with("deadlock in the "), "{live}");
    assert!(live.contains(" waits on "), "{live}");
    assert_eq!(split_error(&p, &x), live);
}
