//! The f32 software references (`sigchip::reference`): they learn the digits, backpropagation's
//! gradient is the loss's, one sigprop step is the documented formulas, shapes are checked,
//! runs are deterministic, the report speaks the chip report's keys, and the command line wires
//! `--backend` and `--algorithm`.

use sigchip::compiler::{self, ValidNetwork};
use sigchip::emulator::{self, data, TrainOptions};
use sigchip::isa::ChipDescription;
use sigchip::reference::{
    self, Algorithm, BackpropF32, F32Options, F32Report, ReferenceError, SigpropF32,
};
use std::process::Command;

fn net(text: &str) -> ValidNetwork {
    compiler::validate(compiler::parse(text, "test").unwrap(), "test").unwrap()
}

fn digits_net() -> ValidNetwork {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    net(&text)
}

fn train(net: &ValidNetwork, d: &data::Dataset, a: Algorithm, epochs: u32, seed: u64) -> F32Report {
    reference::train_f32(net, d, a, &F32Options { epochs, seed }, &mut |_, _, _| {}).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

// Measured (examples/digits.ron, seed 1, 3 epochs): test accuracy 0.9167 (per epoch 0.5083,
// 0.8861, 0.9167); the chip reaches 0.886 (fixed point, stochastic rounding). Threshold a little
// below. (Before the compiler drew the fixed projection from the chip's LFSR: 0.9083.)
#[test]
fn f32_sigprop_learns_the_digits() {
    let r = train(&digits_net(), &data::digits(), Algorithm::Sigprop, 3, 1);
    assert_eq!(
        (r.backend.as_str(), r.algorithm.as_str()),
        ("f32", "sigprop")
    );
    assert_eq!(r.train_samples, 3 * 1437);
    assert_eq!(r.accuracy.per_epoch.len(), 3);
    assert!(r.accuracy.test > 0.88, "{r}");
    assert!(r.accuracy.train > 0.88, "{r}");
}

// Measured (same network and learning rates, 2^-8 in online SGD, seed 1): test accuracy 0.8000
// after 3 epochs (per epoch 0.4278, 0.6889, 0.8000, 0.9083, 0.9250, 0.9417): at this small
// learning rate backpropagation is still climbing after 3 epochs (0.8583 with the earlier
// initial weights; with lr_shift 5 it reaches 0.94 in 3). So: > 0.75 after 3 epochs, > 0.9
// after 6.
#[test]
fn f32_backprop_learns_the_digits() {
    let r = train(&digits_net(), &data::digits(), Algorithm::Backprop, 6, 1);
    assert_eq!(
        (r.backend.as_str(), r.algorithm.as_str()),
        ("f32", "backprop")
    );
    let e = &r.accuracy.per_epoch;
    assert!(e[2].test > 0.75, "{r}");
    assert!(r.accuracy.test > 0.9, "{r}");
    // Learning, epoch after epoch.
    assert!(e[0].test < e[2].test && e[2].test < e[5].test, "{r}");
}

const GRAD_NET: &str = r#"(
    name: "grad", input: 5, classes: 3,
    layers: [
        (width: 4, activation: leaky_relu(shift: 2), lr_shift: 3),
        (width: 3, activation: relu),
    ],
    readout: nearest_target,
    learning: (lr_shift: 4, readout_lr_shift: 5),
    seed: 7,
)"#;

/// Pre-activations of every layer and the loss, in f64 from the model's weights, written
/// independently of the implementation.
fn forward_f64(
    weights: &[Vec<f64>],
    shapes: &[(usize, usize)],
    x: &[f64],
    y: usize,
) -> (Vec<Vec<f64>>, f64) {
    let f = |l: usize, a: f64| match l {
        0 if a < 0.0 => a / 4.0,
        1 => a.max(0.0),
        _ => a,
    };
    let mut pre = Vec::new();
    let mut h = x.to_vec();
    for (l, (w, &(inputs, width))) in weights.iter().zip(shapes).enumerate() {
        let a: Vec<f64> = (0..width)
            .map(|c| {
                (0..inputs).map(|r| w[r * width + c] * h[r]).sum::<f64>() + w[inputs * width + c]
            })
            .collect();
        h = a.iter().map(|&v| f(l, v)).collect();
        pre.push(a);
    }
    let m = h.iter().copied().fold(f64::MIN, f64::max);
    let loss = m + h.iter().map(|z| (z - m).exp()).sum::<f64>().ln() - h[y];
    (pre, loss)
}

fn loss_f64(weights: &[Vec<f64>], shapes: &[(usize, usize)], x: &[f64], y: usize) -> f64 {
    forward_f64(weights, shapes, x, y).1
}

/// Backpropagation's gradient against central differences of an independent f64 loss.
///
/// Tolerance: the analytic gradient is computed in f32 (relative error a few 1e-7 on values of
/// order 1); the central difference with eps = 1e-3 in f64 has a truncation error of order
/// eps^2 |L'''| ~ 1e-6 and a rounding error of order 1e-16 / eps. Every pre-activation is at least
/// 0.02 from the kinks of relu and leaky relu while a weight moves by 1e-3 (inputs and weights
/// below 1), so no difference straddles a kink. 1e-4 + 1e-3 |g| bounds all of that with room,
/// and is orders of magnitude below a wrong derivative, a transposed index or a missed bias.
#[test]
fn backprop_gradient_matches_finite_differences() {
    let n = net(GRAD_NET);
    let model = BackpropF32::new(&n);
    // Hidden layers, then the output layer backprop adds to a nearest_target network.
    let shapes: Vec<(usize, usize)> = model.layers.iter().map(|l| (l.inputs, l.width)).collect();
    assert_eq!(shapes, [(5, 4), (4, 3), (3, 3)]);
    // The added output layer: drawn from seed ^ 0xBAC0, within +-1/sqrt(3).
    assert!(model.layers[2]
        .weights
        .iter()
        .all(|w| w.abs() <= 1.0 / 3f32.sqrt()));
    assert_eq!(model.lr, [0.125, 0.0625, 0.03125]);

    let x32 = [0.9f32, 0.1, 0.6, 0.3, 0.75];
    let x: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let y = 2;
    let weights: Vec<Vec<f64>> = model
        .layers
        .iter()
        .map(|l| l.weights.iter().map(|&w| w as f64).collect())
        .collect();
    // Precondition: no pre-activation near a kink (relu's and leaky relu's at 0).
    let (pre, _) = forward_f64(&weights, &shapes, &x, y);
    for (l, a) in pre.iter().take(2).enumerate() {
        assert!(a.iter().all(|v| v.abs() > 0.02), "layer {l}: {a:?}");
    }
    assert!(pre[1].iter().any(|&v| v > 0.0), "layer 2 all dead: {pre:?}");
    assert!(close(
        model.loss(&x32, y) as f64,
        loss_f64(&weights, &shapes, &x, y),
        1e-5
    ));

    let grad = model.gradient(&x32, y);
    let eps = 1e-3;
    let mut nonzero = 0;
    for l in 0..weights.len() {
        assert_eq!(grad[l].len(), weights[l].len());
        for i in 0..weights[l].len() {
            let mut w = weights.clone();
            w[l][i] += eps;
            let up = loss_f64(&w, &shapes, &x, y);
            w[l][i] -= 2.0 * eps;
            let down = loss_f64(&w, &shapes, &x, y);
            let numeric = (up - down) / (2.0 * eps);
            let analytic = grad[l][i] as f64;
            assert!(
                close(analytic, numeric, 1e-4 + 1e-3 * numeric.abs()),
                "layer {l} weight {i}: analytic {analytic} numeric {numeric}"
            );
            nonzero += (numeric.abs() > 1e-3) as u32;
        }
    }
    assert!(
        nonzero > 30,
        "too few non-zero gradients to test: {nonzero}"
    );

    // One SGD step is W -= lr_l * gradient, with each layer's own learning rate.
    let mut stepped = model.clone();
    let prediction = stepped.step(&x32, y);
    assert_eq!(
        prediction,
        reference::argmax(&model.forward(&x32)[2]),
        "prediction before the update"
    );
    for (l, g) in grad.iter().enumerate() {
        for (i, &g) in g.iter().enumerate() {
            let want = model.layers[l].weights[i] - model.lr[l] * g;
            assert!(
                (stepped.layers[l].weights[i] - want).abs() <= 1e-6,
                "layer {l} weight {i}"
            );
        }
    }
}

/// One sigprop step on a hand-sized network, against the formulas worked out by hand.
///
/// Input 2, one hidden layer of 2 leaky-relu (shift 1) neurons, 2 classes, learned targets and
/// projection, an output layer; weights set by hand to dyadic values so everything but the
/// softmax is exact in f32.
#[test]
fn sigprop_step_matches_a_hand_computation() {
    let n = net(r#"(
        name: "hand", input: 2, classes: 2,
        layers: [(width: 2, activation: leaky_relu(shift: 1))],
        projection: learned, targets: learned,
        readout: output_layer,
        learning: (lr_shift: 2, readout_lr_shift: 3),
    )"#);
    let mut m = SigpropF32::new(&n);
    // Rows: input 0, input 1, bias.
    m.hidden[0].weights = vec![0.5, -1.0, 1.0, 0.5, 0.25, -0.5];
    // Rows: class 0, class 1, bias.
    m.projection = vec![1.0, -1.0, -0.5, 1.0, 0.5, 0.0];
    let out = &mut m.output.as_mut().unwrap().0;
    assert_eq!((out.inputs, out.width, out.bias), (2, 2, true));
    out.weights = vec![1.0, -0.5, 0.25, 0.75, 0.0, 0.5];
    m.refresh_targets();
    // t^0 = f(S0 + S2) = f(1.5, -1) = (1.5, -0.5); t^1 = f(S1 + S2) = f(0, 1) = (0, 1).
    assert_eq!(m.target(0, 0), [1.5, -0.5]);
    assert_eq!(m.target(0, 1), [0.0, 1.0]);

    let (x, y) = ([1.0f32, 0.5], 1);
    // a = (0.5 + 0.5 + 0.25, -1 + 0.25 - 0.5) = (1.25, -1.25); h = (1.25, -0.625).
    // Scores s0 = h.t^0 = 1.875 + 0.3125 = 2.1875, s1 = h.t^1 = -0.625.
    let p0 = 1.0 / (1.0 + (-2.8125f64).exp());
    // err = (p0, p1 - 1) = (p0, -p0); sum_k err_k t^k = p0 (1.5, -1.5);
    // delta = (f'(1.25) 1.5 p0, f'(-0.625) (-1.5) p0) = (1.5 p0, -0.75 p0).
    let delta = [1.5 * p0, -0.75 * p0];
    let lr = 0.25;
    let (xs, w0) = ([1.0, 0.5, 1.0], [0.5, -1.0, 1.0, 0.5, 0.25, -0.5]);
    // Target stream: deltat^k_j = f'(t^k_j) err_k h_j.
    // k = 0: f'(t^0) = (1, 0.5): (1.25 p0, -0.3125 p0); k = 1: f'(t^1) = (1, 1): (-1.25 p0, 0.625 p0).
    let dt = [[1.25 * p0, -0.3125 * p0], [-1.25 * p0, 0.625 * p0]];
    let s0 = [1.0, -1.0, -0.5, 1.0, 0.5, 0.0];
    let s_want = [
        s0[0] - lr * dt[0][0],
        s0[1] - lr * dt[0][1],
        s0[2] - lr * dt[1][0],
        s0[3] - lr * dt[1][1],
        s0[4] - lr * (dt[0][0] + dt[1][0]),
        s0[5] - lr * (dt[0][1] + dt[1][1]),
    ];
    // Output layer: z = h0 (1, -0.5) + h1 (0.25, 0.75) + (0, 0.5) = (1.09375, -0.59375).
    let z: [f64; 2] = [1.25 - 0.625 * 0.25, -0.625 - 0.625 * 0.75 + 0.5];
    let q0 = 1.0 / (1.0 + (z[1] - z[0]).exp());
    let err_out = [q0, -q0]; // softmax(z) - onehot(1)
    let (h_in, o0) = ([1.25, -0.625, 1.0], [1.0, -0.5, 0.25, 0.75, 0.0, 0.5]);

    let prediction = m.step(&x, y);
    assert_eq!(prediction, 0, "argmax of z before the update");
    for r in 0..3 {
        for c in 0..2 {
            let i = r * 2 + c;
            let w = w0[i] - lr * delta[c] * xs[r];
            assert!(
                close(m.hidden[0].weights[i] as f64, w, 1e-6),
                "W1[{r}][{c}]: {} vs {w}",
                m.hidden[0].weights[i]
            );
            let o = o0[i] - 0.125 * err_out[c] * h_in[r];
            let got = m.output.as_ref().unwrap().0.weights[i] as f64;
            assert!(close(got, o, 1e-6), "Wout[{r}][{c}]: {got} vs {o}");
            assert!(
                close(m.projection[i] as f64, s_want[i], 1e-6),
                "S[{r}][{c}]: {} vs {}",
                m.projection[i],
                s_want[i]
            );
        }
    }
}

/// Learned targets in a deeper layer, a fixed projection and the nearest-target readout, on the
/// initial weights, against the formulas in f64.
#[test]
fn sigprop_step_learned_targets_in_layer_two() {
    let n = net(r#"(
        name: "deep", input: 3, classes: 3,
        layers: [(width: 4, activation: relu), (width: 3, activation: identity, lr_shift: 1)],
        projection: fixed_random, targets: learned,
        readout: nearest_target,
        learning: (lr_shift: 2),
        seed: 5,
    )"#);
    let mut m = SigpropF32::new(&n);
    assert!(m.output.is_none());
    m.refresh_targets();
    let before = m.clone();
    let (x, y) = ([0.25f32, 1.0, 0.5], 2);
    let prediction = m.step(&x, y);

    let f64v = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let (w1, w2) = (
        f64v(&before.hidden[0].weights),
        f64v(&before.hidden[1].weights),
    );
    let s = f64v(&before.projection);
    let dense = |w: &[f64], x: &[f64], width: usize, relu: bool| -> Vec<f64> {
        (0..width)
            .map(|c| {
                let a = x
                    .iter()
                    .enumerate()
                    .map(|(r, &xr)| w[r * width + c] * xr)
                    .sum::<f64>()
                    + w[x.len() * width + c];
                if relu {
                    a.max(0.0)
                } else {
                    a
                }
            })
            .collect()
    };
    let xd = f64v(&x);
    let h1 = dense(&w1, &xd, 4, true);
    let h2 = dense(&w2, &h1, 3, false);
    let t1: Vec<Vec<f64>> = (0..3)
        .map(|k| {
            (0..4)
                .map(|c| (s[k * 4 + c] + s[12 + c]).max(0.0))
                .collect()
        })
        .collect();
    let t2: Vec<Vec<f64>> = t1.iter().map(|t| dense(&w2, t, 3, false)).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let err = |h: &[f64], t: &[Vec<f64>]| -> Vec<f64> {
        let sc: Vec<f64> = t.iter().map(|tk| dot(h, tk)).collect();
        let m = sc.iter().copied().fold(f64::MIN, f64::max);
        let z: f64 = sc.iter().map(|v| (v - m).exp()).sum();
        (0..3)
            .map(|k| (sc[k] - m).exp() / z - (k == y) as u8 as f64)
            .collect()
    };
    let sc2: Vec<f64> = t2.iter().map(|t| dot(&h2, t)).collect();
    let want_pred = (0..3).fold(0, |b, k| if sc2[k] > sc2[b] { k } else { b });
    assert_eq!(prediction, want_pred, "nearest target before the update");

    // Layer 1: data stream only (the projection is fixed, so the target stream changes nothing).
    let e1 = err(&h1, &t1);
    let d1: Vec<f64> = (0..4)
        .map(|j| {
            let g: f64 = (0..3).map(|k| e1[k] * t1[k][j]).sum();
            if h1[j] > 0.0 {
                g
            } else {
                0.0
            }
        })
        .collect();
    let xb = [xd[0], xd[1], xd[2], 1.0];
    for r in 0..4 {
        for c in 0..4 {
            let want = w1[r * 4 + c] - 0.25 * d1[c] * xb[r];
            let got = m.hidden[0].weights[r * 4 + c] as f64;
            assert!(close(got, want, 1e-5), "W1[{r}][{c}]: {got} vs {want}");
        }
    }
    assert_eq!(m.projection, before.projection, "a fixed projection");

    // Layer 2 (identity, lr 1/2): data stream plus, per class, deltat^k = err_k h2 on t1^k.
    let e2 = err(&h2, &t2);
    let d2: Vec<f64> = (0..3)
        .map(|j| (0..3).map(|k| e2[k] * t2[k][j]).sum())
        .collect();
    let hb = [h1[0], h1[1], h1[2], h1[3], 1.0];
    for r in 0..5 {
        for c in 0..3 {
            let mut want = w2[r * 3 + c] - 0.5 * d2[c] * hb[r];
            for k in 0..3 {
                let tin = if r < 4 { t1[k][r] } else { 1.0 };
                want -= 0.5 * e2[k] * h2[c] * tin;
            }
            let got = m.hidden[1].weights[r * 3 + c] as f64;
            assert!(close(got, want, 1e-5), "W2[{r}][{c}]: {got} vs {want}");
        }
    }
}

/// The per-neuron losses (`l2`, `hebbian` with either pre-synaptic operand) on two hidden layers,
/// against the formulas in f64: each layer compares its output with the label's target.
#[test]
fn sigprop_step_per_neuron_losses() {
    for (loss, name) in [
        ("l2", "l2"),
        ("hebbian(pre: target)", "target"),
        ("hebbian(pre: data)", "data"),
    ] {
        let n = net(&format!(
            r#"(
            name: "pn", input: 3, classes: 3,
            layers: [(width: 4, activation: relu), (width: 3, activation: leaky_relu(shift: 2))],
            loss: {loss}, readout: output_layer, learning: (lr_shift: 2), seed: 11,
        )"#
        ));
        let mut m = SigpropF32::new(&n);
        m.refresh_targets();
        let before = m.clone();
        let (x, y) = ([0.5f32, 0.25, 1.0], 1);
        m.step(&x, y);

        let f64v = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (w1, w2, s) = (
            f64v(&before.hidden[0].weights),
            f64v(&before.hidden[1].weights),
            f64v(&before.projection),
        );
        let leaky = |a: f64| if a < 0.0 { a / 4.0 } else { a };
        let dense = |w: &[f64], x: &[f64], width: usize, f: &dyn Fn(f64) -> f64| -> Vec<f64> {
            (0..width)
                .map(|c| {
                    f(x.iter()
                        .enumerate()
                        .map(|(r, &xr)| w[r * width + c] * xr)
                        .sum::<f64>()
                        + w[x.len() * width + c])
                })
                .collect()
        };
        let xd = f64v(&x);
        let relu = |a: f64| a.max(0.0);
        let h1 = dense(&w1, &xd, 4, &relu);
        let h2 = dense(&w2, &h1, 3, &leaky);
        let t1: Vec<f64> = (0..4)
            .map(|c| (s[y * 4 + c] + s[12 + c]).max(0.0))
            .collect();
        let t2 = dense(&w2, &t1, 3, &leaky);
        // Layer 1: its target does not pass through W1, so it learns from its data input.
        let d1: Vec<f64> = (0..4)
            .map(|j| {
                let e = h1[j] - t1[j];
                match name {
                    "l2" if h1[j] > 0.0 => e,
                    "l2" => 0.0,
                    _ => e,
                }
            })
            .collect();
        let d2: Vec<f64> = (0..3)
            .map(|j| {
                let e = h2[j] - t2[j];
                match name {
                    "l2" if h2[j] < 0.0 => e / 4.0,
                    _ => e,
                }
            })
            .collect();
        let pre2: Vec<f64> = if name == "target" {
            t1.clone()
        } else {
            h1.clone()
        };
        let xb = [xd[0], xd[1], xd[2], 1.0];
        for r in 0..4 {
            for c in 0..4 {
                let want = w1[r * 4 + c] - 0.25 * d1[c] * xb[r];
                let got = m.hidden[0].weights[r * 4 + c] as f64;
                assert!(
                    close(got, want, 1e-5),
                    "{loss}: W1[{r}][{c}]: {got} vs {want}"
                );
            }
        }
        for r in 0..5 {
            for c in 0..3 {
                let p = if r < 4 { pre2[r] } else { 1.0 };
                let want = w2[r * 3 + c] - 0.25 * d2[c] * p;
                let got = m.hidden[1].weights[r * 3 + c] as f64;
                assert!(
                    close(got, want, 1e-5),
                    "{loss}: W2[{r}][{c}]: {got} vs {want}"
                );
            }
        }
        assert!(
            m.hidden[1].weights != before.hidden[1].weights,
            "{loss}: layer 2 learned nothing"
        );
    }
}

#[test]
fn shape_errors_give_the_documented_message() {
    let d = data::digits();
    let wide = net(r#"(name: "wide", input: 784, classes: 10, layers: [(width: 8)])"#);
    let e = reference::train_f32(
        &wide,
        &d,
        Algorithm::Sigprop,
        &F32Options { epochs: 1, seed: 1 },
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, ReferenceError::InputLength { .. }));
    assert_eq!(
        e.to_string(),
        "the data set does not fit the network: digits has 64 values per sample, \
         network `wide` expects 784 inputs"
    );
    let few = net(r#"(name: "few", input: 64, classes: 5, layers: [(width: 8)])"#);
    let e = reference::train_f32(
        &few,
        &d,
        Algorithm::Backprop,
        &F32Options { epochs: 1, seed: 1 },
        &mut |_, _, _| {},
    )
    .unwrap_err();
    assert!(matches!(e, ReferenceError::Classes { .. }));
    assert_eq!(
        e.to_string(),
        "the data set does not fit the network: digits has 10 classes, network `few` has 5"
    );
    // More classes in the network than in the data is fine.
    let more = net(r#"(name: "more", input: 64, classes: 12, layers: [(width: 8)])"#);
    let mut small = d.clone();
    small.train.truncate(20);
    small.test.truncate(20);
    train(&more, &small, Algorithm::Sigprop, 1, 1);
}

fn without_host(r: &F32Report) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    v.as_object_mut().unwrap().remove("host");
    v
}

#[test]
fn same_seed_same_accuracies() {
    let n = digits_net();
    let mut d = data::digits();
    d.train.truncate(400);
    d.test.truncate(100);
    for a in [Algorithm::Sigprop, Algorithm::Backprop] {
        let r1 = train(&n, &d, a, 2, 3);
        let r2 = train(&n, &d, a, 2, 3);
        assert_eq!(without_host(&r1), without_host(&r2), "{a}");
        // Another shuffle seed gives another sample order, hence other accuracies.
        let r3 = train(&n, &d, a, 2, 4);
        let acc = |r: &F32Report| {
            let mut v: Vec<f64> = r
                .accuracy
                .per_epoch
                .iter()
                .flat_map(|e| [e.train_online, e.test])
                .collect();
            v.extend([r.accuracy.train, r.accuracy.test]);
            v
        };
        assert_ne!(acc(&r1), acc(&r3), "{a}");
    }
}

/// The keys of a JSON value, as pointers (array elements: the first only).
fn keys(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                keys(x, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            if let Some(x) = a.first() {
                keys(x, format!("{at}/0"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn report_uses_the_chip_reports_keys() {
    let mut d = data::digits();
    d.train.truncate(60);
    d.test.truncate(30);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/digits.ron"))
        .unwrap();
    let program = compiler::compile_str(&text, "digits", &ChipDescription::default())
        .unwrap()
        .program;
    let (_, chip) =
        emulator::train(program, &d, &TrainOptions::new(1, 1), &mut |_, _, _| {}).unwrap();
    let chip: serde_json::Value = serde_json::from_str(&chip.to_json()).unwrap();
    let f32r = train(&digits_net(), &d, Algorithm::Sigprop, 1, 1);
    let f32j: serde_json::Value = serde_json::from_str(&f32r.to_json()).unwrap();
    let mut ks = Vec::new();
    keys(&f32j, String::new(), &mut ks);
    for k in &ks {
        // `diverged` is the float-only flag (the chip saturates instead).
        if k != "/backend" && k != "/algorithm" && k != "/diverged" {
            assert!(chip.pointer(k).is_some(), "{k} is not a chip report key");
        }
    }
    for k in [
        "/accuracy/per_epoch/0/train_online",
        "/accuracy/test",
        "/host/train_samples_per_second",
        "/shuffle_seed",
    ] {
        assert!(ks.iter().any(|x| x == k), "missing {k}");
    }
    assert_eq!(f32j["backend"], "f32");
    assert_eq!(f32j["train_samples"], chip["train_samples"]);
    assert_eq!(f32j["network"], chip["network"]);
    assert_eq!(f32j["data"], chip["data"]);
    let text = f32r.to_string();
    assert!(
        text.contains("epoch   1   train (online)") && text.contains("final"),
        "{text}"
    );
}

fn sigchip(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sigchip"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let (ok, _, err) = sigchip(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing `{n}` in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn command_line_backends_and_algorithms() {
    let dir = std::env::temp_dir().join(format!("sigchip-ref-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("f32.json");
    let prog = dir.join("digits.prog.ron");
    let limits = ["--train-limit", "100", "--test-limit", "50", "-q"];

    // --algorithm backprop implies the f32 backend.
    let mut args = vec![
        "train",
        "examples/digits.ron",
        "--algorithm",
        "backprop",
        "--report",
        json.to_str().unwrap(),
    ];
    args.extend(limits);
    let (ok, out, err) = sigchip(&args);
    assert!(ok, "{err}");
    assert!(out.contains("f32 (backprop"), "{out}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        (r["backend"].as_str(), r["algorithm"].as_str()),
        (Some("f32"), Some("backprop"))
    );
    assert_eq!(r["train_samples"], 100);

    let mut args = vec!["train", "examples/digits.ron", "--backend", "f32"];
    args.extend(limits);
    let (ok, out, err) = sigchip(&args);
    assert!(ok && out.contains("f32 (sigprop"), "{out}{err}");

    fails_with(
        &[
            "train",
            "examples/digits.ron",
            "--backend",
            "chip",
            "--algorithm",
            "backprop",
        ],
        &["backpropagation cannot run on the chip", "--backend f32"],
    );
    fails_with(
        &[
            "train",
            "examples/digits.ron",
            "--backend",
            "f32",
            "-o",
            "x.ron",
        ],
        &["f32 backend trains no program"],
    );
    fails_with(
        &["compile", "examples/digits.ron", "--algorithm", "backprop"],
        &[
            "backprop cannot be lowered",
            "backward routes",
            "--algorithm backprop",
        ],
    );
    let (ok, _, err) = sigchip(&[
        "compile",
        "examples/digits.ron",
        "-o",
        prog.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    fails_with(
        &["train", prog.to_str().unwrap(), "--backend", "f32"],
        &["compiled chip program", "network description"],
    );
}

/// The literal batch formula of the f32 reference reduces to known cases: with each class
/// exactly once in the batch, layer 1's `target_max` is `label_direct` (the batch softmax is the
/// class softmax and the target is the sample itself); with constant targets `target_max` and
/// `target_max_all` give the same error (every chosen entry has the same target); and top-1 is
/// `target_max` (the first entry of the order is the first maximum).
#[test]
fn contrastive_reference_reduces_to_known_cases() {
    let text = |loss: &str| {
        format!(
            r#"(
            name: "c", input: 4, classes: 3,
            layers: [(width: 5, activation: relu), (width: 4, activation: leaky_relu(shift: 2))],
            loss: {loss}, readout: nearest_target, learning: (lr_shift: 2, batch: 4), seed: 5,
        )"#
        )
    };
    let model = |loss: &str| {
        let mut m = SigpropF32::new(&net(&text(loss)));
        m.refresh_targets();
        m
    };
    let (x, y) = ([0.5f32, 0.25, 1.0, 0.75], 1);
    let direct = model("label_direct");
    let hs = direct.forward(&x);
    let mut err = Vec::new();
    reference::softmax_err(&direct.scores(0, &hs[0]), y, &mut err);
    let f = direct.hidden[0].activation;
    let expected: Vec<f32> = (0..5)
        .map(|j| {
            let d: f32 = (0..3).map(|k| err[k] * direct.target(0, k)[j]).sum();
            d * reference::derivative(f, hs[0][j])
        })
        .collect();
    let mut max = model("target_max");
    max.batch_labels = vec![2, 1, 0];
    let got = max.contrastive_delta(0, &hs[0], y);
    for j in 0..5 {
        assert!(
            close(got[j] as f64, expected[j] as f64, 1e-5),
            "{got:?} vs {expected:?}"
        );
    }
    let mut all = model("target_max_all");
    for labels in [vec![1, 0, 1, 2], vec![0, 1, 1, 1]] {
        max.batch_labels = labels.clone();
        all.batch_labels = labels;
        for (layer, h) in max.forward(&x).iter().enumerate() {
            assert_eq!(
                max.contrastive_delta(layer, h, y),
                all.contrastive_delta(layer, h, y)
            );
        }
    }
    let mut top1 = model("target_topk(k: 1)");
    top1.batch_labels = max.batch_labels.clone();
    assert_eq!(
        top1.contrastive_delta(0, &hs[0], y),
        max.contrastive_delta(0, &hs[0], y)
    );
}
