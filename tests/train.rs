//! Training on the embedded digits: a snapshot of a short run's report, determinism, and
//! data-shape errors.

use sigchip::compiler;
use sigchip::emulator::{self, data, TrainOptions};
use sigchip::isa::ChipDescription;

fn short_run(seed: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let program = compiler::compile_str(&text, "digits", &ChipDescription::default())
        .unwrap()
        .program;
    let mut d = data::digits();
    d.test.truncate(120);
    let (_, report) =
        emulator::train(program, &d, &TrainOptions::new(1, seed), &mut |_, _, _| {}).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    json.as_object_mut().unwrap().remove("host");
    json
}

#[test]
fn short_training_report_snapshot() {
    let json = short_run(1);
    // The documented keys exist.
    for key in [
        "/accuracy/train",
        "/accuracy/test",
        "/timing/cycles_per_inference",
        "/timing/cycles_per_train_sample",
        "/timing/total_cycles",
        "/memory/used_bits",
        "/memory/capacity_bits",
        "/routes/forward",
        "/routes/lateral",
        "/routes/backward",
        "/saturations",
    ] {
        assert!(json.pointer(key).is_some(), "report lacks {key}");
    }
    assert_eq!(json.pointer("/routes/backward").unwrap(), 0);
    // Learning happened: far above chance (0.1) after one epoch.
    assert!(json.pointer("/accuracy/test").unwrap().as_f64().unwrap() > 0.3);
    let mut summary = json.clone();
    summary.as_object_mut().unwrap().remove("memory");
    insta::assert_json_snapshot!("digits_short_training", summary);
}

#[test]
fn same_seed_same_report_other_seed_other_order() {
    assert_eq!(short_run(7), short_run(7));
    assert_ne!(
        short_run(7).pointer("/timing/total_cycles"),
        short_run(8).pointer("/timing/total_cycles")
    );
}

#[test]
fn a_data_set_of_the_wrong_shape_is_refused() {
    let text = r#"(name: "x", input: 10, classes: 10, layers: [(width: 8)])"#;
    let program = compiler::compile_str(text, "x", &ChipDescription::default())
        .unwrap()
        .program;
    let err = emulator::run(program, &data::digits(), &mut |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("64 values per sample") && err.contains("expects 10 inputs"),
        "{err}"
    );
}

/// A short deterministic run of each on-chip local loss: accuracy, activity, cycles and events.
#[test]
fn each_loss_short_training_snapshot() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let mut d = data::digits();
    d.train.truncate(600);
    d.test.truncate(120);
    for loss in [
        "label_direct",
        "l2",
        "hebbian(pre: target)",
        "hebbian(pre: data)",
    ] {
        let net = text.replace("loss: label_direct,", &format!("loss: {loss},"));
        let program = compiler::compile_str(&net, "digits", &ChipDescription::default())
            .unwrap()
            .program;
        let (_, report) =
            emulator::train(program, &d, &TrainOptions::new(2, 3), &mut |_, _, _| {}).unwrap();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let summary = serde_json::json!({
            "accuracy": json["accuracy"],
            "activity": json["activity"],
            "cycles_per_train_sample": json["timing"]["cycles_per_train_sample"],
            "cycles_per_inference": json["timing"]["cycles_per_inference"],
            "saturations_by_kind": json["saturations_by_kind"],
            "train_events": {
                "synaptic_ops": json["events"]["train"]["synaptic_ops"],
                "weight_updates": json["events"]["train"]["weight_updates"],
                "packets": json["events"]["train"]["packets"],
            },
            "memory_by_kind": json["memory"]["by_kind"],
        });
        insta::assert_json_snapshot!(
            format!("loss_{}", loss.replace(['(', ')', ':', ' '], "_")),
            summary
        );
    }
}

/// A short deterministic run of each batch-contrastive loss (examples/digits_target_max.ron,
/// batches of 16): accuracy, activity, cycles and events.
#[test]
fn each_contrastive_loss_short_training_snapshot() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/digits_target_max.ron")).unwrap();
    let chip_path = format!("{dir}/examples/chip_batch.ron");
    let chip = ChipDescription::from_ron(&std::fs::read_to_string(&chip_path).unwrap(), &chip_path)
        .unwrap();
    let mut d = data::digits();
    d.train.truncate(600);
    d.test.truncate(120);
    for loss in ["target_max", "target_max_all", "target_topk(k: 3)"] {
        // A short run: 2 epochs of 600 samples are 75 batch updates, so the readout learns
        // faster than the example's (2^-1).
        let net = text
            .replace("loss: target_max,", &format!("loss: {loss},"))
            .replace("// readout_lr_shift: 8,", "readout_lr_shift: 1,");
        let program = compiler::compile_str(&net, "digits", &chip)
            .unwrap()
            .program;
        let (_, report) =
            emulator::train(program, &d, &TrainOptions::new(2, 3), &mut |_, _, _| {}).unwrap();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        let summary = serde_json::json!({
            "accuracy": json["accuracy"],
            "activity": json["activity"],
            "cycles_per_train_sample": json["timing"]["cycles_per_train_sample"],
            "saturations_by_kind": json["saturations_by_kind"],
            "train_events": {
                "synaptic_ops": json["events"]["train"]["synaptic_ops"],
                "weight_updates": json["events"]["train"]["weight_updates"],
                "packets": json["events"]["train"]["packets"],
            },
            "memory_by_kind": json["memory"]["by_kind"],
        });
        insta::assert_json_snapshot!(
            format!("loss_{}", loss.replace(['(', ')', ':', ' '], "_")),
            summary
        );
    }
}

#[test]
fn contrastive_losses_refuse_bad_batches() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/digits_target_max.ron")).unwrap();
    let chip_path = format!("{dir}/examples/chip_batch.ron");
    let chip = ChipDescription::from_ron(&std::fs::read_to_string(&chip_path).unwrap(), &chip_path)
        .unwrap();
    let err = |net: &str, c: &ChipDescription| {
        compiler::compile_str(net, "net.ron", c)
            .unwrap_err()
            .to_string()
    };
    for (loss, needle) in [
        ("target_topk(k: 0)", "k must be in 1..=learning.batch (16)"),
        ("target_topk(k: 17)", "k must be in 1..=learning.batch (16)"),
    ] {
        let e = err(
            &text.replace("loss: target_max,", &format!("loss: {loss},")),
            &chip,
        );
        assert!(
            e.contains("loss: is `target_topk") && e.contains(needle),
            "{e}"
        );
    }
    // Online learning has no batch to contrast.
    let e = err(&text.replace("batch: 16,", "batch: 1,"), &chip);
    assert!(
        e.contains("learning.batch: is 1") && e.contains("`loss: target_max` contrasts"),
        "{e}"
    );
    // A batch whose state (accumulators and labels) outgrows the data SRAM is a fit error that
    // names the batch; 450,000 bits hold a batch of 16 but not one of 4096.
    let small =
        ChipDescription::from_ron("(memory: (data_sram_bits: 450000))", "small.ron").unwrap();
    assert!(compiler::compile_str(&text, "net.ron", &small).is_ok());
    let e = err(&text.replace("batch: 16,", "batch: 4096,"), &small);
    assert!(
        e.contains("needs 488400 data SRAM bits on core0, a core has 450000")
            && e.contains("a smaller learning.batch (4096 now"),
        "{e}"
    );
    // Learned targets are not supported with a contrastive loss.
    let e = err(
        &text.replace("targets: constant", "targets: learned"),
        &chip,
    );
    assert!(e.contains("targets: is `learned`"), "{e}");
}

#[test]
fn an_unknown_loss_is_named_with_the_known_ones() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let net = text.replace("loss: label_direct,", "loss: label_directo,");
    let err = compiler::compile_str(&net, "net.ron", &ChipDescription::default())
        .unwrap_err()
        .to_string();
    for needle in [
        "net.ron:",
        "label_directo",
        "label_direct",
        "l2",
        "hebbian",
        "target_max",
        "target_max_all",
        "target_topk",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
    let net = text
        .replace("loss: label_direct,", "loss: hebbian(pre: data),")
        .replace("targets: constant", "targets: learned");
    let err = compiler::compile_str(&net, "net.ron", &ChipDescription::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("targets: is `learned`")
            && err.contains("`loss: label_direct` or `l2` only")
            && err.contains("no loss to differentiate"),
        "{err}"
    );
}

/// `l2` with both streams learning collapses on the chip as sigprop.md reports it does in float:
/// the last hidden layer's outputs all go to 0, and the report says so.
#[test]
fn l2_with_learned_targets_collapses_and_the_report_says_so() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let net = text
        .replace("loss: label_direct,", "loss: l2,")
        .replace("targets: constant", "targets: learned");
    let program = compiler::compile_str(&net, "digits", &ChipDescription::default())
        .unwrap()
        .program;
    // Layer 2 learns its label's target through its crossbar: `deltat label`, `updt label`.
    let learn: Vec<String> = program.cores[1]
        .streams
        .learn
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert!(
        learn.contains(&"deltat label".to_string()) && learn.contains(&"updt label".to_string()),
        "{learn:?}"
    );
    let mut d = data::digits();
    d.train.truncate(600);
    d.test.truncate(120);
    let (_, report) = emulator::train(
        program.clone(),
        &d,
        &TrainOptions::new(3, 1),
        &mut |_, _, _| {},
    )
    .unwrap();
    let layer2 = &report.activity[1];
    assert!(
        layer2.collapsed && layer2.active_fraction < 0.01,
        "{:?}",
        report.activity
    );
    // With constant targets the same network does not collapse.
    let constant = compiler::compile_str(
        &net.replace("targets: learned", "targets: constant"),
        "digits",
        &ChipDescription::default(),
    )
    .unwrap()
    .program;
    let (_, report) =
        emulator::train(constant, &d, &TrainOptions::new(3, 1), &mut |_, _, _| {}).unwrap();
    assert!(
        report.activity.iter().all(|a| !a.collapsed),
        "{:?}",
        report.activity
    );
}

#[test]
fn learned_targets_with_a_fixed_projection_train() {
    // Layer 1's target stream has nothing to learn (its projection is fixed); deeper layers do.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let net = text.replace("targets: constant", "targets: learned");
    let program = compiler::compile_str(&net, "digits", &ChipDescription::default())
        .unwrap()
        .program;
    assert!(!program.cores[0]
        .streams
        .learn
        .iter()
        .any(|i| matches!(i, sigchip::isa::Instr::UpdP { .. })));
    assert!(program.cores[1]
        .streams
        .learn
        .iter()
        .any(|i| matches!(i, sigchip::isa::Instr::UpdT { .. })));
    let mut d = data::digits();
    d.train.truncate(200);
    d.test.truncate(50);
    emulator::train(program, &d, &TrainOptions::new(1, 1), &mut |_, _, _| {}).unwrap();
}
