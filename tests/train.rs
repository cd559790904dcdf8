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
    let (_, report) = emulator::train(
        program,
        &d,
        &TrainOptions { epochs: 1, seed },
        &mut |_, _, _| {},
    )
    .unwrap();
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
