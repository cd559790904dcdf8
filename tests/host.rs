//! The host does not change the results: the same report (outside `host`) and the same trained
//! weights with 1, 2 or 3 emulator threads, and with or without SIMD kernels.

use sigchip::compiler;
use sigchip::emulator::{self, data, kernels, TrainOptions};
use sigchip::isa::{ChipDescription, Program};

fn program(example: &str) -> Program {
    let path = format!("{}/examples/{example}.ron", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    compiler::compile_str(&text, example, &ChipDescription::default())
        .unwrap()
        .program
}

/// A short training run of `example` on `threads` threads: the report without `host`, and the
/// trained weights of every core.
fn run(example: &str, train: usize, test: usize, threads: usize) -> (serde_json::Value, String) {
    let program = program(example);
    let mut d = data::digits();
    d.train.truncate(train);
    d.test.truncate(test);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (trained, report) = pool.install(|| {
        emulator::train(program, &d, &TrainOptions::new(1, 3), &mut |_, _, _| {}).unwrap()
    });
    let mut json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    json.as_object_mut().unwrap().remove("host");
    let weights = trained
        .cores
        .iter()
        .map(|c| format!("{:?}", c.weights))
        .collect::<Vec<_>>()
        .join("\n");
    (json, weights)
}

#[test]
fn every_thread_count_gives_the_same_report_and_weights() {
    // Evaluations of 200 samples split into chunks of different sizes for 2 and 3 threads.
    for (example, train, test) in [
        ("digits", 300, 200),
        ("digits_snn_surrogate", 60, 200),
        ("digits_ct_hebbian", 60, 200),
    ] {
        let one = run(example, train, test, 1);
        for threads in [2, 3] {
            let other = run(example, train, test, threads);
            assert_eq!(one.0, other.0, "{example}: report with {threads} threads");
            assert_eq!(one.1, other.1, "{example}: weights with {threads} threads");
        }
    }
}

#[test]
fn simd_kernels_give_the_same_report_and_weights() {
    if !kernels::simd() {
        eprintln!("no SIMD on this CPU: nothing to compare");
        return;
    }
    let with = run("digits", 300, 200, 2);
    kernels::set_simd(false);
    let without = run("digits", 300, 200, 2);
    kernels::set_simd(true);
    assert_eq!(with, without);
}
