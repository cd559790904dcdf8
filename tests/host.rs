//! The host does not change the results: the same report (outside `host`) and the same trained
//! weights with 1, 2 or 3 emulator threads, and with or without SIMD kernels.

use sigchip::compiler;
use sigchip::emulator::{self, data, kernels, TrainOptions};
use sigchip::isa::{ChipDescription, Instr, Program};

fn program(example: &str) -> Program {
    let path = format!("{}/examples/{example}.ron", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    compiler::compile_str(&text, example, &ChipDescription::default())
        .unwrap()
        .program
}

fn without_host(report: &emulator::Report) -> serde_json::Value {
    let mut json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    json.as_object_mut().unwrap().remove("host");
    json
}

/// Two epochs of training of `example` on `threads` threads (so the second epoch trains after
/// a parallel evaluation), then an inference-only run of the trained program: both reports
/// without `host`, and the trained weights of every core.
fn run(example: &str, train: usize, test: usize, threads: usize) -> (serde_json::Value, String) {
    let program = program(example);
    let mut d = data::digits();
    d.train.truncate(train);
    d.test.truncate(test);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let (trained, report, inference) = pool.install(|| {
        let (trained, report) =
            emulator::train(program, &d, &TrainOptions::new(2, 3), &mut |_, _, _| {}).unwrap();
        let inference = emulator::run(trained.clone(), &d, &mut |_, _, _| {}).unwrap();
        (trained, report, inference)
    });
    let json = serde_json::json!({
        "train": without_host(&report),
        "run": without_host(&inference),
    });
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
    // Every evaluation has more than one chunk of `EVAL_CHUNK` (256) samples.
    for (example, train, test) in [
        ("digits", 600, 360),
        ("digits_snn_surrogate", 300, 300),
        ("digits_ct_hebbian", 300, 300),
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
    let with = run("digits", 600, 360, 2);
    kernels::set_simd(false);
    let without = run("digits", 600, 360, 2);
    kernels::set_simd(true);
    assert_eq!(with, without);
}

#[test]
fn a_program_reading_the_previous_samples_buffers_is_still_thread_count_invariant() {
    // The output core applies its activation before its crossbar product: every inference
    // reads the accumulators the previous sample left. Evaluation chunks all start from the
    // state after the target refresh, so the result still cannot depend on how they are
    // spread over threads.
    let mut program = program("digits");
    let last = program.cores.len() - 1;
    let forward = &mut program.cores[last].streams.forward;
    let mvm = forward
        .iter()
        .position(|i| matches!(i, Instr::Mvm { .. }))
        .unwrap();
    assert_eq!(forward[mvm + 1], Instr::Act {});
    forward.swap(mvm, mvm + 1);
    let d = data::digits();
    let reports: Vec<serde_json::Value> = [1, 2, 3]
        .iter()
        .map(|&threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let report = pool
                .install(|| emulator::run(program.clone(), &d, &mut |_, _, _| {}))
                .unwrap();
            without_host(&report)
        })
        .collect();
    assert_eq!(reports[0], reports[1]);
    assert_eq!(reports[0], reports[2]);
}
