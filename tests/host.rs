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

/// `example` compiled for `chip` (an example chip's name; the default chip when `None`).
fn program_on(example: &str, chip: Option<&str>) -> Program {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/{example}.ron")).unwrap();
    let chip = chip.map_or_else(ChipDescription::default, example_chip);
    compiler::compile_str(&text, example, &chip)
        .unwrap()
        .program
}

/// An example chip description, by name.
fn example_chip(name: &str) -> ChipDescription {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/{name}.ron")).unwrap();
    ChipDescription::from_ron(&text, name).unwrap()
}

/// Runs `f` on a pool of `threads` threads.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Two epochs of training of `example` on `threads` threads (so the second epoch trains after
/// a parallel evaluation), then an inference-only run of the trained program: both reports
/// without `host`, and the trained weights of every core.
fn run(example: &str, train: usize, test: usize, threads: usize) -> (serde_json::Value, String) {
    run_program(program(example), train, test, threads)
}

fn run_program(
    program: Program,
    train: usize,
    test: usize,
    threads: usize,
) -> (serde_json::Value, String) {
    let mut d = data::digits();
    d.train.truncate(train);
    d.test.truncate(test);
    let (trained, report, inference) = on_threads(threads, || {
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
        ("digits_snn_voltage", 200, 100),
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

#[test]
fn mini_batches_and_a_batch_contrastive_loss_are_thread_count_invariant() {
    let program = program_on("digits_target_max", Some("chip_batch"));
    let one = run_program(program.clone(), 300, 300, 1);
    for threads in [2, 3] {
        assert_eq!(one, run_program(program.clone(), 300, 300, threads));
    }
}

/// A `halt` inside a stream ends it there: the instructions after it never run, with the
/// timing on other threads as on one.
#[test]
fn a_halt_inside_a_stream_is_thread_count_invariant() {
    let mut program = program("digits");
    // Halt the last core's learn stream after its last message, before its updates.
    let learn = &mut program.cores.last_mut().unwrap().streams.learn;
    let last_message = learn
        .iter()
        .rposition(|i| matches!(i, Instr::Send { .. } | Instr::Recv { .. }))
        .unwrap();
    assert!(learn[last_message + 1..]
        .iter()
        .any(|i| matches!(i, Instr::Upd { .. })));
    learn.insert(last_message + 1, Instr::Halt {});
    let one = run_program(program.clone(), 300, 100, 1);
    assert_ne!(
        one,
        run("digits", 300, 100, 1),
        "the halt skips the last layer's updates"
    );
    for threads in [2, 3] {
        assert_eq!(one, run_program(program.clone(), 300, 100, threads));
    }
}

/// A program whose `apply` stream waits for a message nobody sends, after a crossbar pass
/// whose length depends on the data: every mini-batch's apply deadlocks, at a cycle that
/// depends on the batch. Training stops at the first one, with the same error (cycle
/// included) for every thread count, however the runs are spread over the timing threads.
/// (A deadlock in the other phases is found earlier, by the critical-path trace.)
#[test]
fn an_error_in_training_is_the_same_for_every_thread_count() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/digits.ron"))
        .unwrap()
        .replace("target_refresh: 1,", "target_refresh: 100,")
        .replace(
            "rounding: stochastic,\n    ),",
            "rounding: stochastic,\n        batch: 2,\n    ),",
        );
    assert!(text.contains("batch: 2") && text.contains("target_refresh: 100"));
    let mut p = compiler::compile_str(&text, "digits_b2", &example_chip("chip_batch"))
        .unwrap()
        .program;
    let core = 1;
    let into = p
        .routes
        .iter()
        .find(|r| r.dst == sigchip::isa::Endpoint::Core(p.cores[core].id))
        .unwrap()
        .id;
    let apply = &mut p.cores[core].streams.apply;
    let at = apply.len() - 1;
    apply.insert(at, Instr::Recv { route: into });
    apply.insert(
        at,
        Instr::Mvm {
            src: sigchip::isa::Buf::In,
        },
    );
    let mut d = data::digits();
    d.train.truncate(200);
    d.test.truncate(50);
    let train = |threads: usize| {
        on_threads(threads, || {
            emulator::train(p.clone(), &d, &TrainOptions::new(1, 5), &mut |_, _, _| {})
                .map(|_| ())
                .unwrap_err()
                .to_string()
        })
    };
    let one = train(1);
    assert!(
        one.starts_with("deadlock in the Apply phase at cycle "),
        "{one}"
    );
    for threads in [2, 3, 4, 2, 3, 4] {
        assert_eq!(train(threads), one, "{threads} threads");
    }
}
