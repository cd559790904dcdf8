//! The compiled `examples/digits.ron`, the verifier's refusals, and bad network descriptions.

use sigchip::compiler::{self, CompileError};
use sigchip::isa::{
    self, disasm::disassemble, Buf, ChipDescription, Endpoint, Instr, Program, Route, RouteId,
};

fn digits() -> compiler::Compiled {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    compiler::compile_str(&text, "examples/digits.ron", &ChipDescription::default()).unwrap()
}

fn fashion() -> compiler::Compiled {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fashion_mlp.ron"
    ))
    .unwrap();
    compiler::compile_str(
        &text,
        "examples/fashion_mlp.ron",
        &ChipDescription::default(),
    )
    .unwrap()
}

#[test]
fn digits_summary_snapshot() {
    insta::assert_snapshot!("digits_summary", digits().summary.to_string());
}

#[test]
fn digits_disassembly_snapshot() {
    insta::assert_snapshot!("digits_disassembly", disassemble(&digits().program));
}

#[test]
fn fashion_is_tiled_by_rows_and_columns() {
    let c = fashion();
    let l1 = &c.program.layers[0];
    assert!(
        l1.row_tiles > 1 && l1.col_tiles > 1,
        "layer1 is {}x{} tiles",
        l1.row_tiles,
        l1.col_tiles
    );
    assert_eq!(c.program.route_counts().backward, 0);
    assert!(
        c.program.route_counts().lateral > 0,
        "tiled layers exchange partial sums laterally"
    );
    insta::assert_snapshot!("fashion_summary", c.summary.to_string());
}

#[test]
fn program_ron_round_trips_and_every_instruction_word_decodes() {
    for c in [digits(), fashion()] {
        let p = &c.program;
        let back = Program::from_ron(&p.to_ron(), "round trip").unwrap();
        assert_eq!(&back, p);
        for core in &p.cores {
            for (_, stream) in core.streams.phases() {
                for instr in stream {
                    let word = instr.encode().into_inner()[0];
                    assert_eq!(Instr::decode(word).unwrap(), *instr);
                }
            }
        }
    }
}

#[test]
fn verifier_names_a_backward_route_and_a_transposed_read() {
    let mut p = digits().program;
    // A route from layer 2 back to layer 1, as backpropagation would need, and a send on it.
    let back = RouteId(p.routes.len() as u16);
    let (l2, l1) = (p.cores[1].id, p.cores[0].id);
    p.routes.push(Route {
        id: back,
        src: Endpoint::Core(l2),
        dst: Endpoint::Core(l1),
        src_buf: Buf::Delta,
        src_start: 0,
        len: 4,
        dst_buf: Buf::Delta,
        dst_start: 0,
    });
    p.cores[1]
        .streams
        .learn
        .insert(0, Instr::Send { route: back });
    // Weight transport: layer 1 reads its crossbar transposed.
    p.cores[0]
        .streams
        .learn
        .insert(0, Instr::MvmT { src: Buf::Delta });
    // And layer 1 reads layer 2's state directly.
    p.cores[0].streams.learn.insert(
        1,
        Instr::LdRem {
            core: l2,
            buf: Buf::Out,
        },
    );
    let err = isa::verify(&p).unwrap_err();
    assert_eq!(err.forward_only_counts(), (1, 1, 1), "{err}");
    let text = err.to_string();
    for needle in [
        "backward route: route",
        "from core1 (depth 2) to core0 (depth 1)",
        "transposed crossbar read: core0 learn[0] `mvmt delta`",
        "cross-layer state read: core0 learn[1] `ldrem core1, out` reads the state of a layer2 core",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
    // The emulator refuses it too.
    assert!(matches!(
        sigchip::emulator::Machine::new(p),
        Err(sigchip::emulator::EmuError::Verify(_))
    ));
}

#[test]
fn verifier_checks_capacity_and_structure() {
    let mut p = digits().program;
    p.cores[0].weights.data[0] = 1000; // outside s8
    p.cores[1].x = p.cores[0].x;
    p.cores[1].y = p.cores[0].y;
    p.chip.memory.instruction_words = 4;
    let text = isa::verify(&p).unwrap_err().to_string();
    for needle in [
        "core0: weight row 0 column 0 holds 1000",
        "both sit at",
        "instruction words needs",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

fn compile_err(text: &str, chip: &ChipDescription) -> String {
    match compiler::compile_str(text, "net.ron", chip) {
        Ok(_) => panic!("compiled: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_ron_names_line_and_column() {
    let e = compile_err(
        "(name: \"x\",\n input: 64,\n classes: ten)",
        &ChipDescription::default(),
    );
    assert!(e.starts_with("net.ron:3:"), "{e}");
}

#[test]
fn bad_values_are_all_listed() {
    let text = r#"(name: "x", input: 0, classes: 1, layers: [(width: 0), (width: 8, activation: leaky_relu(shift: 40))],
                  target_refresh: 0, projection: learned)"#;
    let e = compile_err(text, &ChipDescription::default());
    for needle in [
        "input: is 0",
        "classes: is 1",
        "layers[0].width: is 0",
        "layers[1].activation",
        "target_refresh: is 0",
        "projection: is `learned`",
    ] {
        assert!(e.contains(needle), "missing `{needle}` in:\n{e}");
    }
}

#[test]
fn absurd_sizes_are_refused() {
    let e = compile_err(
        r#"(name: "x", input: 65536, classes: 10, layers: [(width: 65536)])"#,
        &ChipDescription::default(),
    );
    assert!(e.contains("synapses"), "{e}");
}

#[test]
fn a_network_that_does_not_fit_says_where_and_what_to_change() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fashion_mlp.ron"
    ))
    .unwrap();
    let chip = ChipDescription::from_ron("(grid: (width: 2, height: 2))", "small.ron").unwrap();
    let err = compiler::compile_str(&text, "fashion", &chip).unwrap_err();
    assert!(matches!(err, CompileError::Place(_)));
    let e = err.to_string();
    for needle in [
        "needs",
        "cores, the 2x2 grid has 4",
        "layer1:",
        "what to change",
    ] {
        assert!(e.contains(needle), "missing `{needle}` in:\n{e}");
    }
    // A core whose data SRAM is too small for its buffers and targets.
    let chip = ChipDescription::from_ron("(memory: (data_sram_bits: 1000))", "tiny.ron").unwrap();
    let err = compiler::compile_str(&text, "fashion", &chip).unwrap_err();
    let e = err.to_string();
    assert!(matches!(err, CompileError::Fit(_)), "{e}");
    assert!(
        e.contains("data SRAM bits") && e.contains("layer1") && e.contains("a core has 1000"),
        "{e}"
    );
}

mod properties {
    use proptest::prelude::*;
    use sigchip::compiler::{self, LayerDesc, LearningDesc, LossKind, NetworkDesc};
    use sigchip::isa::{
        Activation, ChipDescription, Instr, Program, ProjectionMode, Readout, Rounding, TargetMode,
    };

    fn network() -> impl Strategy<Value = NetworkDesc> {
        (
            1u32..100,
            prop::collection::vec((1u32..80, 0usize..3), 1..4),
            2u32..12,
            any::<bool>(),
            any::<bool>(),
            1u32..4,
            any::<u64>(),
        )
            .prop_map(
                |(input, layers, classes, nearest, learned, refresh, seed)| NetworkDesc {
                    name: "random".into(),
                    input,
                    classes,
                    layers: layers
                        .into_iter()
                        .map(|(width, a)| LayerDesc {
                            width,
                            activation: [
                                Activation::Relu,
                                Activation::LeakyRelu { shift: 3 },
                                Activation::Identity,
                            ][a],
                            lr_shift: None,
                        })
                        .collect(),
                    projection: if learned {
                        ProjectionMode::Learned
                    } else {
                        ProjectionMode::FixedRandom
                    },
                    loss: LossKind::LabelDirect,
                    targets: if learned {
                        TargetMode::Learned
                    } else {
                        TargetMode::Constant
                    },
                    target_refresh: refresh,
                    readout: if nearest {
                        Readout::NearestTarget
                    } else {
                        Readout::OutputLayer
                    },
                    learning: LearningDesc {
                        lr_shift: 5,
                        readout_lr_shift: None,
                        rounding: Rounding::Stochastic,
                        anneal_every: None,
                        batch: 1,
                    },
                    bias: true,
                    seed,
                    neuron: Default::default(),
                },
            )
    }

    fn chip(rows: u32, cols: u32) -> ChipDescription {
        let mut chip = ChipDescription::default();
        chip.grid.width = 32;
        chip.grid.height = 32;
        chip.crossbar.rows = rows;
        chip.crossbar.cols = cols;
        chip.memory.instruction_words = 1 << 16;
        chip.memory.data_sram_bits = 1 << 24;
        chip.memory.route_table_entries = 1 << 12;
        chip
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// decode(encode(program)) == program, for the RON text and for every instruction word;
        /// and every compiled program is forward-only.
        #[test]
        fn compiled_programs_round_trip_and_are_forward_only(net in network(), rows in 4u32..64, cols in 4u32..64) {
            let compiled = compiler::compile(net, "random", &chip(rows, cols)).unwrap();
            let p = &compiled.program;
            prop_assert_eq!(p.route_counts().backward, 0);
            prop_assert!(sigchip::isa::verify(p).is_ok());
            let back = Program::from_ron(&p.to_ron(), "round trip").unwrap();
            prop_assert_eq!(&back, p);
            for core in &p.cores {
                for (_, stream) in core.streams.phases() {
                    for instr in stream {
                        prop_assert_eq!(Instr::decode(instr.encode().into_inner()[0]).unwrap(), *instr);
                        let backward_only = matches!(instr, Instr::MvmT { .. } | Instr::LdRem { .. });
                        prop_assert!(!backward_only, "{} emits {}", core.id, instr);
                    }
                }
            }
        }
    }
}

#[test]
fn backprop_is_refused_with_what_it_would_need() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fashion_mlp.ron"
    ))
    .unwrap();
    let desc = compiler::parse(&text, "fashion").unwrap();
    let err = compiler::compile_algorithm(
        desc,
        "fashion",
        &ChipDescription::default(),
        compiler::Algorithm::Backprop,
    )
    .unwrap_err();
    let CompileError::NotForwardOnly(n) = &err else {
        panic!("{err}")
    };
    // Layer 2 is 3 row tiles over layer 1's 2 column tiles: rows 0..171 meet one, 171..342 both,
    // 342..512 one: 4 routes. Each of layer 2's 3 cores reads its crossbar transposed.
    assert_eq!(
        (n.backward_routes, n.transposed_reads, n.cross_layer_reads),
        (4, 3, 0)
    );
    let text = err.to_string();
    assert!(text.starts_with("backprop cannot be lowered to this forward-only chip: it needs 4 backward routes and 3 transposed crossbar reads"), "{text}");
    assert!(
        text.contains("backward route: route") && text.contains("transposed crossbar read: core"),
        "{text}"
    );
    // Sigprop itself compiles.
    let desc = compiler::parse(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/fashion_mlp.ron"
        ))
        .unwrap(),
        "f",
    )
    .unwrap();
    assert!(compiler::compile_algorithm(
        desc,
        "f",
        &ChipDescription::default(),
        compiler::Algorithm::Sigprop
    )
    .is_ok());
}

#[test]
fn memory_report_follows_the_options() {
    use sigchip::isa::memory::{memory_use, LFSR_BITS};
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let chip = ChipDescription::default();
    let fixed = compiler::compile_str(&text, "fixed", &chip)
        .unwrap()
        .program;
    let learned_text = text
        .replace("projection: fixed_random", "projection: learned")
        .replace("targets: constant", "targets: learned");
    let learned = compiler::compile_str(&learned_text, "learned", &chip)
        .unwrap()
        .program;
    let (mf, ml) = (memory_use(&fixed), memory_use(&learned));
    // Layer 1 (128 neurons, 10 classes): a fixed projection is 11 LFSR states, a learned one
    // 11 x 128 weights of 8 bits.
    assert_eq!(mf[0].projection, 11 * LFSR_BITS);
    assert_eq!(ml[0].projection, 11 * 128 * 8);
    assert!(fixed.cores[0].projection.is_none() && learned.cores[0].projection.is_some());
    // Learned targets keep the target stream's inputs (layer 2: 10 x 129 activations) and a
    // per-neuron target error (64 x 32 bits).
    assert_eq!(ml[1].targets - mf[1].targets, 10 * 129 * 8);
    assert_eq!(ml[1].learning - mf[1].learning, 64 * 32);
    // The readout keeps no targets either way.
    assert_eq!((mf[2].targets, ml[2].targets), (0, 0));
}

#[test]
fn mini_batches_add_gradient_accumulators_and_check_their_options() {
    use sigchip::isa::memory::{gradient_bits, memory_use};
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let chip = ChipDescription::from_ron("(memory: (data_sram_bits: 1048576))", "big.ron").unwrap();
    let online = compiler::compile_str(&text, "online", &chip)
        .unwrap()
        .program;
    let batched_text = text.replace("rounding: stochastic,", "rounding: stochastic, batch: 8,");
    let batched = compiler::compile_str(&batched_text, "batched", &chip)
        .unwrap()
        .program;
    let (mo, mb) = (memory_use(&online), memory_use(&batched));
    // One accumulator per synapse, 32 (error) + 8 (input) + 3 (log2 batch) = 43 bits wide:
    // layer 1 holds 65 x 128 of them.
    assert_eq!(gradient_bits(&batched), 43);
    assert_eq!(mb[0].learning - mo[0].learning, 65 * 128 * 43);
    assert!(batched
        .cores
        .iter()
        .all(|c| c.streams.apply == vec![Instr::GApply {}, Instr::Halt {}]));
    assert!(batched.cores.iter().all(|c| !c
        .streams
        .learn
        .iter()
        .any(|i| matches!(i, Instr::Upd { .. }))));
    // On the default chip they do not fit, and the error says what to change.
    let e = compiler::compile_str(&batched_text, "batched", &ChipDescription::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data SRAM bits")
            && e.contains("accumulators and the batch's labels take 357760 bits")
            && e.contains("a smaller learning.batch (8 now; 1 = online"),
        "{e}"
    );
    // A batch must be a power of two, and needs constant targets.
    for (batch, needle) in [
        ("0", "is 0, must be a power of two"),
        ("6", "is 6, must be a power of two"),
        ("8192", "is 8192"),
    ] {
        let t = text.replace(
            "rounding: stochastic,",
            &format!("rounding: stochastic, batch: {batch},"),
        );
        let e = compile_err(&t, &chip);
        assert!(e.contains("learning.batch") && e.contains(needle), "{e}");
    }
    let t = batched_text.replace("targets: constant", "targets: learned");
    assert!(
        compile_err(&t, &chip).contains("mini-batches are supported with `targets: constant` only")
    );
}

#[test]
fn verifier_refuses_instructions_whose_state_does_not_exist() {
    let mut p = digits().program;
    p.cores[0].streams.learn.insert(
        0,
        Instr::GAcc {
            pre: sigchip::isa::Pre::Data,
        },
    );
    p.cores[0]
        .streams
        .learn
        .insert(0, Instr::Mvm { src: Buf::Acc });
    p.cores[2].streams.learn.insert(
        0,
        Instr::TStore {
            class: sigchip::isa::Class(0),
        },
    );
    p.cores[1].streams.learn.insert(
        0,
        Instr::Upd {
            pre: sigchip::isa::Pre::Target,
        },
    );
    p.network.lr_anneal_every = Some(0);
    let text = isa::verify(&p).unwrap_err().to_string();
    for needle in [
        "gradient accumulators exist only with mini-batches",
        "the crossbar reads only `in`",
        "core2 learn[0] `tstore 0`: the layer keeps no class targets",
        "core1 learn[0] `upd target`: the layer keeps no target-stream inputs",
        "lr_anneal_every is 0",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn contrastive_losses_add_batch_buffers() {
    use sigchip::isa::memory::{memory_use, SCORE_BITS};
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/examples/digits_target_max.ron")).unwrap();
    let chip = ChipDescription::from_ron("(memory: (data_sram_bits: 1048576))", "big.ron").unwrap();
    let contrastive = compiler::compile_str(&text, "c", &chip).unwrap().program;
    let direct_text = text.replace("loss: target_max,", "loss: label_direct,");
    let direct = compiler::compile_str(&direct_text, "d", &chip)
        .unwrap()
        .program;
    let (mc, md) = (memory_use(&contrastive), memory_use(&direct));
    // Layer 1's leader: the batch's 16 labels (8 bits each) and its share of the 10 x 10 class
    // similarities it sends to layer 2. Layer 2's leader: 16 labels and the similarities.
    assert_eq!(mc[0].learning - md[0].learning, 16 * 8 + 100 * SCORE_BITS);
    assert_eq!(mc[1].learning - md[1].learning, 16 * 8 + 100 * SCORE_BITS);
    assert_eq!(mc[2], md[2]);
    // The routes: the input port sends the batch's labels to both leaders; the similarities go
    // forward from layer 1 to layer 2.
    let batch_routes: Vec<_> = contrastive
        .routes
        .iter()
        .filter(|r| {
            r.src_buf == sigchip::isa::Buf::Batch || r.src_buf == sigchip::isa::Buf::GramPart
        })
        .map(|r| (r.src.to_string(), r.dst.to_string(), r.len))
        .collect();
    assert_eq!(
        batch_routes,
        [
            ("input".to_string(), "core0".to_string(), 16),
            ("input".to_string(), "core1".to_string(), 16),
            ("core0".to_string(), "core1".to_string(), 100),
        ]
    );
}

/// Every network in `examples/` compiles on the chip its header names (`--chip
/// examples/NAME.ron`, else the default chip) and verifies, and every chip example parses.
#[test]
fn every_example_compiles() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut networks = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        if name.starts_with("chip_") {
            ChipDescription::from_ron(&text, &name).unwrap_or_else(|e| panic!("{name}: {e}"));
            continue;
        }
        let chip = match text.split("--chip examples/").nth(1) {
            Some(rest) => {
                let chip_file = rest.split_whitespace().next().unwrap();
                let chip_text = std::fs::read_to_string(format!("{dir}/{chip_file}")).unwrap();
                ChipDescription::from_ron(&chip_text, chip_file).unwrap()
            }
            None => ChipDescription::default(),
        };
        let compiled =
            compiler::compile_str(&text, &name, &chip).unwrap_or_else(|e| panic!("{name}: {e}"));
        isa::verify(&compiled.program).unwrap_or_else(|e| panic!("{name}: {e}"));
        networks += 1;
    }
    assert!(networks >= 8, "only {networks} example networks found");
}
