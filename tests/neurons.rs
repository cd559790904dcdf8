//! Neurons with time: the chip's LIF and continuous-time units against a fixed-point model
//! written from the formulas of docs/isa.md, the description's errors, and short training runs
//! of the spiking and continuous-time examples (snapshots).

use proptest::prelude::*;
use sigchip::compiler;
use sigchip::emulator::kernels::{neuron_step, NeuronParams};
use sigchip::emulator::{self, data, TrainOptions};
use sigchip::isa::{
    Activation, ChipDescription, Encoding, NeuronModel, QFormat, Reset, SpikeLearning,
    SpikeReadout, UpdateTiming,
};

/// One LIF step of one neuron, spelled out: returns (state, spiked, learning signal).
#[allow(clippy::too_many_arguments)]
fn lif_model(
    acc: i64,
    u: i64,
    spiked: bool,
    theta: i64,
    leak: u8,
    zero_reset: bool,
    surrogate: bool,
    acc_to_state: i32,
    state: QFormat,
    out: QFormat,
) -> (i64, bool, i32) {
    let shift = |v: i64, s: i32| -> i64 {
        if s <= 0 {
            v * (1i64 << -s)
        } else {
            // Round half up: floor(v / 2^s + 1/2).
            (v + (1i64 << (s - 1))).div_euclid(1i64 << s)
        }
    };
    let input = shift(acc, acc_to_state);
    let decayed = u - u.div_euclid(1i64 << leak);
    let next = if spiked && zero_reset {
        input
    } else if spiked {
        decayed + input - theta
    } else {
        decayed + input
    };
    let next = next.clamp(state.min_raw(), state.max_raw());
    let one = (1i64 << out.frac).min(out.max_raw());
    let signal = if surrogate {
        // clamp(U / (2 theta), 0, 1) in the output format, rounded to nearest.
        ((next * (1i64 << out.frac) + theta).div_euclid(2 * theta)).clamp(0, one)
    } else {
        shift(next, state.frac as i32 - out.frac as i32).clamp(out.min_raw(), out.max_raw())
    };
    (next, next > theta, signal as i32)
}

proptest! {
    /// The LIF unit equals the model neuron by neuron over several steps, for every reset,
    /// learning signal, leak and threshold.
    #[test]
    fn lif_unit_equals_the_model(
        accs in prop::collection::vec(prop::collection::vec(-40_000i64..40_000, 1..12), 1..6),
        theta in 1i32..20_000,
        leak in 1u8..15,
        zero_reset: bool,
        surrogate: bool,
        acc_to_state in -2i32..6,
    ) {
        let (state, out) = (QFormat::new(16, 10), QFormat::new(8, 3));
        let n = accs[0].len();
        let model = NeuronModel::Lif {
            threshold: theta,
            leak_shift: leak,
            reset: if zero_reset { Reset::Zero } else { Reset::Subtract },
            steps: accs.len() as u16,
            encoding: Encoding::Rate,
            learning: if surrogate { SpikeLearning::Surrogate } else { SpikeLearning::Voltage },
            update: UpdateTiming::PerStep,
            readout: SpikeReadout::SpikeCount,
        };
        let p = NeuronParams { model, act: Activation::Identity, state_fmt: state, state_shift: acc_to_state, out_fmt: out };
        let (mut u, mut spk, mut o) = (vec![123; n], vec![9; n], vec![0; n]);
        let mut m: Vec<(i64, bool)> = vec![(0, false); n];
        for (t, acc) in accs.iter().enumerate() {
            let acc: Vec<i64> = (0..n).map(|c| acc.get(c).copied().unwrap_or(0)).collect();
            let a = neuron_step(&p, t == 0, &acc, &mut u, &mut spk, &mut o);
            let mut spikes = 0;
            for c in 0..n {
                let (next, fired, signal) = lif_model(
                    acc[c], m[c].0, m[c].1, theta as i64, leak, zero_reset, surrogate, acc_to_state, state, out,
                );
                m[c] = (next, fired);
                spikes += fired as u64;
                prop_assert_eq!(u[c], next, "step {} neuron {}: state", t, c);
                prop_assert_eq!(spk[c] != 0, fired, "step {} neuron {}: spike", t, c);
                prop_assert_eq!(o[c], signal, "step {} neuron {}: signal", t, c);
            }
            prop_assert_eq!(a.spikes, spikes);
        }
    }

    /// The continuous-time unit equals `h += (f(a) - h) >> tau` with `a` in the state format.
    #[test]
    fn continuous_unit_equals_the_model(
        accs in prop::collection::vec(prop::collection::vec(-60_000i64..60_000, 1..12), 1..6),
        tau in 0u8..6,
        leaky in 0u8..4,
        acc_to_state in 0i32..6,
    ) {
        let (state, out) = (QFormat::new(16, 10), QFormat::new(8, 5));
        let n = accs[0].len();
        let act = if leaky == 0 { Activation::Relu } else { Activation::LeakyRelu { shift: leaky } };
        let p = NeuronParams {
            model: NeuronModel::Continuous { tau_shift: tau, steps: accs.len() as u16 },
            act,
            state_fmt: state,
            state_shift: acc_to_state,
            out_fmt: out,
        };
        let (mut h, mut spk, mut o) = (vec![77; n], vec![0; n], vec![0; n]);
        let mut m = vec![0i64; n];
        for (t, acc) in accs.iter().enumerate() {
            let acc: Vec<i64> = (0..n).map(|c| acc.get(c).copied().unwrap_or(0)).collect();
            neuron_step(&p, t == 0, &acc, &mut h, &mut spk, &mut o);
            for c in 0..n {
                let a = if acc_to_state == 0 { acc[c] } else { (acc[c] + (1 << (acc_to_state - 1))).div_euclid(1 << acc_to_state) };
                let f = if a >= 0 { a } else if leaky == 0 { 0 } else { a.div_euclid(1 << leaky) };
                m[c] = (m[c] + (f - m[c]).div_euclid(1 << tau)).clamp(state.min_raw(), state.max_raw());
                prop_assert_eq!(h[c], m[c], "step {} neuron {}", t, c);
                let expect = ((m[c] + 16).div_euclid(32)).clamp(out.min_raw(), out.max_raw()) as i32;
                prop_assert_eq!(o[c], expect);
            }
        }
    }
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/examples/{name}.ron",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn compile_err(text: &str) -> String {
    compiler::compile_str(text, "net.ron", &ChipDescription::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_neuron_parameters_are_named() {
    let voltage = example("digits_snn_voltage");
    // A threshold the 16-bit state (s16.10) cannot hold.
    let e = compile_err(&voltage.replace("threshold: 1.0", "threshold: 100.0"));
    assert!(
        e.contains("neuron.threshold: 100 is outside the neuron state's range")
            && e.contains("s16.10"),
        "{e}"
    );
    let e = compile_err(&voltage.replace("threshold: 1.0", "threshold: 0.0"));
    assert!(
        e.contains("neuron.threshold: is 0, must be a positive number"),
        "{e}"
    );
    // Zero time steps.
    let e = compile_err(&voltage.replace("steps: 16", "steps: 0"));
    assert!(e.contains("neuron.steps: is 0, must be in 1..=1024"), "{e}");
    // A leak as wide as the state.
    let e = compile_err(&voltage.replace("leak_shift: 3", "leak_shift: 16"));
    assert!(
        e.contains("neuron.leak_shift: 16 is wider than the chip's 16-bit neuron state"),
        "{e}"
    );
    let e = compile_err(&voltage.replace("leak_shift: 3", "leak_shift: 0"));
    assert!(e.contains("neuron.leak_shift: is 0"), "{e}");
    // Spiking layers learn with label_direct; continuous time with the Hebbian rule.
    let e = compile_err(&voltage.replace("loss: label_direct", "loss: l2"));
    assert!(
        e.contains("spiking layers learn with `label_direct`"),
        "{e}"
    );
    let ct = example("digits_ct_hebbian");
    let e = compile_err(&ct.replace("tau_shift: 1", "tau_shift: 16"));
    assert!(e.contains("neuron.tau_shift: 16 is wider"), "{e}");
    let e = compile_err(&ct.replace("target_refresh: 1", "target_refresh: 10"));
    assert!(e.contains("target_refresh: is 10"), "{e}");
    // An unknown neuron model lists the known ones.
    let e = compile_err(&voltage.replace("neuron: lif(", "neuron: izhikevich("));
    assert!(e.contains("lif") && e.contains("continuous"), "{e}");
}

/// Short deterministic runs of the spiking (voltage, surrogate) and continuous-time Hebbian
/// examples: accuracy, spikes, cycles, events and memory by kind.
#[test]
fn neurons_with_time_short_training_snapshots() {
    let mut d = data::digits();
    d.train.truncate(300);
    d.test.truncate(100);
    for name in [
        "digits_snn_voltage",
        "digits_snn_surrogate",
        "digits_ct_hebbian",
    ] {
        let program = compiler::compile_str(&example(name), name, &ChipDescription::default())
            .unwrap()
            .program;
        let (_, report) =
            emulator::train(program, &d, &TrainOptions::new(2, 3), &mut |_, _, _| {}).unwrap();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let summary = serde_json::json!({
            "accuracy": json["accuracy"],
            "activity": json["activity"],
            "time_steps": json["timing"]["time_steps"],
            "cycles_per_train_sample": json["timing"]["cycles_per_train_sample"],
            "cycles_per_inference": json["timing"]["cycles_per_inference"],
            "saturations_by_kind": json["saturations_by_kind"],
            "train_events": {
                "synaptic_ops": json["events"]["train"]["synaptic_ops"],
                "weight_updates": json["events"]["train"]["weight_updates"],
                "packets": json["events"]["train"]["packets"],
                "spikes": json["events"]["train"]["spikes"],
            },
            "energy": {
                "pj_per_inference": json["energy"]["pj_per_inference"],
                "pj_per_train_sample": json["energy"]["pj_per_train_sample"],
            },
            "memory_by_kind": json["memory"]["by_kind"],
        });
        insta::assert_json_snapshot!(name, summary);
    }
}

#[test]
fn plots_show_the_first_test_sample() {
    let mut d = data::digits();
    d.train.truncate(50);
    d.test.truncate(5);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plots");
    let program = compiler::compile_str(
        &example("digits_snn_voltage"),
        "snn",
        &ChipDescription::default(),
    )
    .unwrap()
    .program;
    let mut m = emulator::Machine::new(program.clone()).unwrap();
    let paths = emulator::train::plot_first_test_sample(&mut m, &d, &dir).unwrap();
    let raster = std::fs::read_to_string(&paths[0]).unwrap();
    let membrane = std::fs::read_to_string(&paths[1]).unwrap();
    // One black mark per spike of the sample, across both layers and 16 steps.
    let marks = raster.matches(r#"fill="black""#).count();
    let spikes: u64 = m.counters.spikes.iter().sum();
    assert!(
        marks > 0 && marks as u64 == spikes,
        "{marks} marks, {spikes} spikes"
    );
    // Four neurons of layer 2, a point per step (16), and the threshold line.
    assert_eq!(membrane.matches("<polyline").count(), 4);
    assert!(membrane.contains("threshold 1"));
    for line in membrane.lines().filter(|l| l.starts_with("<polyline")) {
        assert_eq!(line.matches(',').count(), 16, "{line}");
    }
    // Without time steps there is nothing to plot.
    let rate = compiler::compile_str(&example("digits"), "d", &ChipDescription::default())
        .unwrap()
        .program;
    let mut m = emulator::Machine::new(rate).unwrap();
    let e = emulator::train::plot_first_test_sample(&mut m, &d, &dir).unwrap_err();
    assert!(
        e.to_string()
            .contains("needs a network with `neuron: lif(..)`"),
        "{e}"
    );
}
