//! The claims suite (`sigchip claims --quick`): every claim's figures on the default chip with
//! examples/digits.ron and the spiking and continuous-time digits examples, pinned as a
//! snapshot so any change in a figure shows up in review.

use sigchip::claims::{claims, ClaimsOptions};
use sigchip::compiler;
use sigchip::emulator::data;
use sigchip::isa::ChipDescription;

fn example(name: &str) -> compiler::NetworkDesc {
    let path = format!("{}/examples/{name}.ron", env!("CARGO_MANIFEST_DIR"));
    compiler::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap()
}

#[test]
fn claims_quick_snapshot() {
    let opts = ClaimsOptions {
        chip: ChipDescription::default(),
        net: example("digits"),
        temporal: vec![
            example("digits_snn_voltage"),
            example("digits_snn_surrogate"),
            example("digits_ct_hebbian"),
        ],
        data: data::digits(),
        quick: true,
    };
    let c = claims(&opts, &mut |_| {}).unwrap();
    // The forward-only claim holds by construction; every baseline breaks it somewhere.
    let forward: Vec<_> = c.rows.iter().filter(|r| r.claim.starts_with('1')).collect();
    assert!(forward.iter().all(|r| r.sigprop == 0.0 && r.holds));
    for b in [
        "backprop",
        "feedback alignment",
        "direct feedback alignment",
        "local auxiliary classifiers",
    ] {
        let broken: f64 = forward
            .iter()
            .flat_map(|r| r.baselines.iter().filter(|x| x.0 == b).map(|x| x.1))
            .sum();
        assert!(broken > 0.0, "{b} breaks nothing");
    }
    insta::assert_snapshot!("claims_quick", c.table());
}
