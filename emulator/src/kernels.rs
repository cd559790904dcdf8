//! The arithmetic of the chip: one function per datapath operation, on plain slices.
//!
//! Kernels compute values and return activity counts (active rows, updates, saturations); they
//! know nothing about cycles. The timing model ([`crate::timing`]) turns activity into cycles, so
//! the arithmetic can become vectorized without touching the timing. All rounding goes through
//! `sigchip_isa::fixed_point`.

use sigchip_isa::fixed_point::{round_shift, stochastic_shift};
use sigchip_isa::rng::{stochastic_bits, stochastic_row_key};
use sigchip_isa::{Activation, QFormat, Rounding};
use std::sync::atomic::{AtomicBool, Ordering};

/// Activity of one kernel call: what the timing and energy models charge for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Crossbar rows driven (non-zero inputs), or rows rewritten by an update.
    pub rows: u64,
    /// Synaptic operations or synaptic updates.
    pub synapses: u64,
    /// Neurons (or classes) processed by the neuron / learning unit.
    pub neurons: u64,
    pub saturations: u64,
    /// Batch entries scanned by the softmax unit's target selection (batch-contrastive losses).
    pub entries: u64,
    /// Packets of a message sent or received (set by the engine for `send` and `recv`).
    pub packets: u64,
    /// Spikes emitted by a spiking neuron step.
    pub spikes: u64,
}

/// Whether the kernels may use SIMD instructions the CPU has (see [`set_simd`]).
static SIMD_ALLOWED: AtomicBool = AtomicBool::new(true);

/// Allows or forbids SIMD instructions in the kernels, for the whole process. Every kernel
/// gives the same bits either way (integer sums are exact); this exists to show that, and to
/// measure what SIMD buys.
pub fn set_simd(allowed: bool) {
    SIMD_ALLOWED.store(allowed, Ordering::Relaxed);
}

/// Whether the kernels use AVX2: allowed and present on this CPU.
pub fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        SIMD_ALLOWED.load(Ordering::Relaxed) && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `acc[c] = sat(sum_r w[r][c] * x[r])` over non-zero `x[r]` (a zero input sends no event).
///
/// `w_bound` bounds every `|w|` (the weight format's range). When no partial sum can leave
/// `i32` (active rows x `w_bound` x largest |input| below 2^31, true for 8-bit weights and
/// activations up to 131,072 rows) the sums run in `i32` lanes, with AVX2 where the CPU has it;
/// otherwise in `i64`. Integer sums are exact, so every path gives the same bits.
pub fn mvm(
    w: &[i32],
    cols: usize,
    x: &[i32],
    acc: &mut [i64],
    acc_fmt: QFormat,
    w_bound: u64,
) -> Activity {
    let rows = x.iter().filter(|&&v| v != 0).count() as u64;
    let wmax = w_bound;
    let xmax = x.iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
    if rows.saturating_mul(wmax).saturating_mul(xmax) < (1u64 << 31) {
        mvm_i32(w, cols, x, acc);
    } else {
        acc.iter_mut().for_each(|a| *a = 0);
        for (r, &xr) in x.iter().enumerate() {
            if xr == 0 {
                continue;
            }
            let row = &w[r * cols..(r + 1) * cols];
            for (a, &wv) in acc.iter_mut().zip(row) {
                *a += wv as i64 * xr as i64;
            }
        }
    }
    let saturations = saturate_all(acc, acc_fmt);
    Activity {
        rows,
        synapses: rows * cols as u64,
        neurons: 0,
        saturations,
        entries: 0,
        packets: 0,
        spikes: 0,
    }
}

/// [`mvm`]'s sums in `i32` lanes (the caller checked they cannot overflow).
fn mvm_i32(w: &[i32], cols: usize, x: &[i32], acc: &mut [i64]) {
    #[cfg(target_arch = "x86_64")]
    if simd() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { mvm_i32_avx2(w, cols, x, acc) };
        return;
    }
    mvm_i32_portable(w, cols, x, acc)
}

#[inline(always)]
fn mvm_i32_portable(w: &[i32], cols: usize, x: &[i32], acc: &mut [i64]) {
    let mut sums = [0i32; 256];
    for chunk in 0..cols.div_ceil(256) {
        let (c0, c1) = (chunk * 256, ((chunk + 1) * 256).min(cols));
        let s = &mut sums[..c1 - c0];
        s.fill(0);
        for (r, &xr) in x.iter().enumerate() {
            if xr == 0 {
                continue;
            }
            for (a, &wv) in s.iter_mut().zip(&w[r * cols + c0..r * cols + c1]) {
                *a += wv * xr;
            }
        }
        for (a, &v) in acc[c0..c1].iter_mut().zip(s.iter()) {
            *a = v as i64;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mvm_i32_avx2(w: &[i32], cols: usize, x: &[i32], acc: &mut [i64]) {
    mvm_i32_portable(w, cols, x, acc)
}

/// Saturates every accumulator to its format; returns how many saturated.
pub fn saturate_all(acc: &mut [i64], fmt: QFormat) -> u64 {
    let mut n = 0;
    for a in acc.iter_mut() {
        let (v, sat) = fmt.saturate(*a);
        *a = v as i64;
        n += sat as u64;
    }
    n
}

/// `acc += psum`, saturating.
pub fn add_sat(acc: &mut [i64], psum: &[i64], fmt: QFormat) -> Activity {
    let mut saturations = 0;
    for (a, &p) in acc.iter_mut().zip(psum) {
        let (v, sat) = fmt.saturate(*a + p);
        *a = v as i64;
        saturations += sat as u64;
    }
    Activity {
        neurons: acc.len() as u64,
        saturations,
        ..Default::default()
    }
}

/// Target projection lookup: `acc[c] = (S[class][c] + S[bias][c]) << shift`.
pub fn proj(
    s: &[i32],
    cols: usize,
    class: usize,
    bias_row: usize,
    shift: i32,
    acc: &mut [i64],
    fmt: QFormat,
) -> Activity {
    let mut saturations = 0;
    for (c, a) in acc.iter_mut().enumerate() {
        let v = round_shift(
            s[class * cols + c] as i64 + s[bias_row * cols + c] as i64,
            -shift,
        );
        let (v, sat) = fmt.saturate(v);
        *a = v as i64;
        saturations += sat as u64;
    }
    Activity {
        rows: 2,
        neurons: cols as u64,
        saturations,
        ..Default::default()
    }
}

/// The neuron unit: `out = sat(f(round(acc >> shift)))`.
pub fn act(acc: &[i64], shift: i32, f: Activation, out: &mut [i32], fmt: QFormat) -> Activity {
    let mut saturations = 0;
    for (o, &a) in out.iter_mut().zip(acc) {
        let v = round_shift(a, shift);
        let v = match f {
            Activation::Relu => v.max(0),
            // An arithmetic shift (rounds towards minus infinity), as a shifter does.
            Activation::LeakyRelu { shift } if v < 0 => v >> shift,
            _ => v,
        };
        let (v, sat) = fmt.saturate(v);
        *o = v;
        saturations += sat as u64;
    }
    Activity {
        neurons: out.len() as u64,
        saturations,
        ..Default::default()
    }
}

/// The activation's derivative applied to an error, as a function of the neuron's output:
/// ReLU passes where the output is positive, leaky ReLU shifts where it is negative.
#[inline]
pub fn derivative(f: Activation, out: i32, err: i64) -> i64 {
    match f {
        Activation::Relu => {
            if out > 0 {
                err
            } else {
                0
            }
        }
        Activation::LeakyRelu { shift } if out < 0 => err >> shift,
        _ => err,
    }
}

/// Partial scores against the class targets: `score[k] = sum_j out[j] * tgt[k][j]`.
pub fn score_targets(out: &[i32], tgt: &[i32], score: &mut [i64]) -> Activity {
    let n = out.len();
    for (k, s) in score.iter_mut().enumerate() {
        *s = out
            .iter()
            .zip(&tgt[k * n..(k + 1) * n])
            .map(|(&o, &t)| o as i64 * t as i64)
            .sum();
    }
    Activity {
        neurons: (n * score.len()) as u64,
        ..Default::default()
    }
}

/// Partial L2 scores: `score[k] = sum_j (2 out[j] tgt[k][j] - tgt[k][j]^2)`, which is
/// `|out|^2 - |out - tgt[k]|^2`: the largest score is the nearest target.
pub fn score_targets_l2(out: &[i32], tgt: &[i32], score: &mut [i64]) -> Activity {
    let n = out.len();
    for (k, s) in score.iter_mut().enumerate() {
        *s = out
            .iter()
            .zip(&tgt[k * n..(k + 1) * n])
            .map(|(&o, &t)| 2 * o as i64 * t as i64 - t as i64 * t as i64)
            .sum();
    }
    Activity {
        neurons: (n * score.len()) as u64,
        ..Default::default()
    }
}

/// Logits as scores: `score = 0; score[col_start + j] = out[j]`.
pub fn score_direct(out: &[i32], col_start: usize, score: &mut [i64]) -> Activity {
    score.iter_mut().for_each(|s| *s = 0);
    for (j, &o) in out.iter().enumerate() {
        score[col_start + j] = o as i64;
    }
    Activity {
        neurons: out.len() as u64,
        ..Default::default()
    }
}

/// `2^(-i/32)` in Q0.16 for i in 0..32: the table of the `exp2-lut32` softmax.
pub const EXP2_LUT: [u32; 32] = {
    // Computed at compile time from a fixed-point series so the table never depends on a
    // platform's libm: 2^(-i/32) = exp(-i ln2 / 32), Taylor series to 12 terms in Q0.40.
    let mut t = [0u32; 32];
    let ln2_q40: i128 = 762_123_384_786; // ln 2 * 2^40
    let one: i128 = 1 << 40;
    let mut i = 0;
    while i < 32 {
        let x: i128 = -(ln2_q40 * i as i128) / 32;
        let mut term: i128 = one;
        let mut sum: i128 = one;
        let mut n = 1;
        while n < 14 {
            term = term * x / one / n as i128;
            sum += term;
            n += 1;
        }
        t[i] = ((sum + (1 << 23)) >> 24) as u32;
        i += 1;
    }
    t
};

/// `log2(e)` in Q2.14.
const LOG2E_Q14: i64 = 23637;

/// The softmax unit (`exp2-lut32`): `err[k] = softmax(score)[k] - [k == label]` in `prob`.
///
/// `exp(d)` for `d = score - max <= 0` is `2^(d log2 e)`: the integer part of the exponent is a
/// right shift, its top five fraction bits index [`EXP2_LUT`]; the probabilities are one divider
/// pass with round-to-nearest. The approximation and its measured error are in docs/timing-model.md.
pub fn softmax_err(
    score: &[i64],
    frac: i32,
    label: usize,
    prob: QFormat,
    err: &mut [i32],
) -> Activity {
    let mut target = [0i64; 256];
    target[label] = 1 << prob.frac;
    softmax_err_weighted(score, frac, None, &target[..score.len()], prob, err)
}

/// The softmax unit in general: `err[k] = p[k] - target[k]` with
/// `p[k] = n[k] 2^((s[k] - m) log2 e) / sum_j n[j] 2^((s[j] - m) log2 e)`, the `exp2-lut32`
/// exponentials of [`softmax_err`] weighted by the class counts `n` (all 1 when `None`), `m`
/// the largest score of a class with `n > 0`. `target` is in the probability format. A class
/// with `n = 0` gets `p = 0`.
pub fn softmax_err_weighted(
    score: &[i64],
    frac: i32,
    counts: Option<&[u32]>,
    target: &[i64],
    prob: QFormat,
    err: &mut [i32],
) -> Activity {
    let n = |k: usize| counts.map_or(1, |c| c[k] as u64);
    let m = (0..score.len())
        .filter(|&k| n(k) > 0)
        .map(|k| score[k])
        .max()
        .unwrap_or(0);
    let mut e = [0u64; 256];
    let mut sum = 0u64;
    for (k, &s) in score.iter().enumerate() {
        if n(k) == 0 {
            continue;
        }
        // The base-2 exponent with five fraction bits: (m - s) * log2(e), from Q(frac) x Q14.
        let shift = 14 + frac - 5;
        let d = (m - s) * LOG2E_Q14;
        let a = if shift >= 0 { d >> shift } else { d << -shift };
        let (i, idx) = (a >> 5, a & 31);
        e[k] = if i >= 17 {
            0
        } else {
            n(k) * (EXP2_LUT[idx as usize] >> i) as u64
        };
        sum += e[k];
    }
    // The class with the largest score has a non-zero exponential, so `sum` is 0 only when
    // every count is.
    let sum = sum.max(1);
    let mut saturations = 0;
    for (k, out) in err.iter_mut().enumerate() {
        let p = ((e[k] << prob.frac) + sum / 2) / sum;
        let (v, sat) = prob.saturate(p as i64 - target[k]);
        *out = v;
        saturations += sat as u64;
    }
    Activity {
        neurons: score.len() as u64,
        saturations,
        ..Default::default()
    }
}

/// The batch entries a batch-contrastive loss targets for one sample, counted by class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Batch entries of each class, `n[k]`.
    pub counts: Vec<u32>,
    /// Chosen target entries of each class, `c[k]`.
    pub chosen: Vec<u32>,
    /// Chosen entries in all, `sum_k c[k]` (the target distribution is `c[k] / m`).
    pub m: u32,
    /// Entries scanned by the selection: valid batch entries times passes.
    pub scanned: u64,
}

/// Target selection of the batch-contrastive losses for a sample of class `label`.
///
/// `batch` holds the batch's labels in sample order (entries outside `0..classes` are empty
/// slots of a short batch). The similarity of the sample to entry `j` is `Y[j] = [L_j = label]`
/// at layer 1 (`gram` is `None`) and `gram[label][L_j]` beyond. Then:
///
/// - `target_max`: the first `j` (lowest index) with the largest `Y[j]`; one pass;
/// - `target_max_all`: every `j` with the largest `Y[j]`; two passes;
/// - `target_topk(k)`: the first `min(k, entries)` entries in the order (`Y` descending, `j`
///   ascending); `k` passes to find the `k`-th value, one to mark.
///
/// Returns `None` when the batch does not contain the sample's own label (the batch phase did
/// not run).
pub fn contrastive_select(
    loss: sigchip_isa::LocalLoss,
    label: usize,
    batch: &[i64],
    gram: Option<&[i64]>,
    classes: usize,
) -> Option<Selection> {
    use sigchip_isa::LocalLoss;
    let valid: Vec<usize> = batch
        .iter()
        .filter(|&&l| (0..classes as i64).contains(&l))
        .map(|&l| l as usize)
        .collect();
    let mut counts = vec![0u32; classes];
    for &l in &valid {
        counts[l] += 1;
    }
    if counts.get(label).copied().unwrap_or(0) == 0 {
        return None;
    }
    let y = |l: usize| match gram {
        Some(g) => g[label * classes + l],
        None => (l == label) as i64,
    };
    let mut chosen = vec![0u32; classes];
    let max = valid.iter().map(|&l| y(l)).max()?;
    let (m, passes) = match loss {
        LocalLoss::TargetMax => {
            let first = valid.iter().find(|&&l| y(l) == max)?;
            chosen[*first] = 1;
            (1, 1)
        }
        LocalLoss::TargetMaxAll => {
            let mut m = 0;
            for &l in valid.iter().filter(|&&l| y(l) == max) {
                chosen[l] += 1;
                m += 1;
            }
            (m, 2)
        }
        LocalLoss::TargetTopK { k } => {
            let k = (k as usize).min(valid.len());
            // The k-th largest value; all larger entries are chosen, then equal ones by index.
            let mut values: Vec<i64> = valid.iter().map(|&l| y(l)).collect();
            values.sort_unstable_by(|a, b| b.cmp(a));
            let kth = values[k - 1];
            let mut left_at_kth = k - values.iter().filter(|&&v| v > kth).count();
            for &l in &valid {
                let v = y(l);
                if v > kth || (v == kth && left_at_kth > 0) {
                    if v == kth {
                        left_at_kth -= 1;
                    }
                    chosen[l] += 1;
                }
            }
            (k as u32, k as u64 + 1)
        }
        _ => return None,
    };
    Some(Selection {
        counts,
        chosen,
        m,
        scanned: valid.len() as u64 * passes,
    })
}

/// The batch-contrastive softmax unit: [`softmax_err_weighted`] with the batch's class counts
/// against the selection's target distribution `c[k] / m` (rounded to nearest).
pub fn softmax_err_contrastive(
    score: &[i64],
    frac: i32,
    sel: &Selection,
    prob: QFormat,
    err: &mut [i32],
) -> Activity {
    let m = sel.m.max(1) as i64;
    let target: Vec<i64> = sel
        .chosen
        .iter()
        .map(|&c| ((c as i64) << prob.frac) + m / 2)
        .map(|v| v / m)
        .collect();
    let mut a = softmax_err_weighted(score, frac, Some(&sel.counts), &target, prob, err);
    a.entries = sel.scanned;
    a
}

/// This core's share of its class targets' similarity matrix: `gram[a][b] = tgt[a] . tgt[b]`
/// over its `cols` columns, saturated to the score registers.
pub fn gram(tgt: &[i32], cols: usize, classes: usize, gram: &mut [i64]) -> Activity {
    for a in 0..classes {
        for b in 0..classes {
            let (ta, tb) = (
                &tgt[a * cols..(a + 1) * cols],
                &tgt[b * cols..(b + 1) * cols],
            );
            gram[a * classes + b] = ta.iter().zip(tb).map(|(&x, &y)| x as i64 * y as i64).sum();
        }
    }
    Activity {
        neurons: (classes * classes * cols) as u64,
        ..Default::default()
    }
}

/// Data-stream error against class targets: `delta[j] = f'(out[j]) * sum_k err[k] tgt[k][j]`.
pub fn delta_targets(
    err: &[i32],
    tgt: &[i32],
    out: &[i32],
    f: Activation,
    delta: &mut [i64],
) -> Activity {
    let n = out.len();
    for (j, d) in delta.iter_mut().enumerate() {
        let mut s = 0i64;
        for (k, &e) in err.iter().enumerate() {
            s += e as i64 * tgt[k * n + j] as i64;
        }
        *d = derivative(f, out[j], s);
    }
    Activity {
        neurons: (n * err.len()) as u64,
        ..Default::default()
    }
}

/// Data-stream error of logits: `delta[j] = f'(out[j]) * err[col_start + j]`.
pub fn delta_direct(
    err: &[i32],
    col_start: usize,
    out: &[i32],
    f: Activation,
    delta: &mut [i64],
) -> Activity {
    for (j, d) in delta.iter_mut().enumerate() {
        *d = derivative(f, out[j], err[col_start + j] as i64);
    }
    Activity {
        neurons: out.len() as u64,
        ..Default::default()
    }
}

/// Per-neuron mismatch with the label's target: `delta[j] = f'(out[j]) * (out[j] - tgt[j])`
/// (`l2`), or without the derivative when `f` is `None` (`hebbian`).
pub fn delta_mismatch(
    out: &[i32],
    tgt: &[i32],
    f: Option<Activation>,
    delta: &mut [i64],
) -> Activity {
    for ((d, &o), &t) in delta.iter_mut().zip(out).zip(tgt) {
        let e = o as i64 - t as i64;
        *d = match f {
            Some(f) => derivative(f, o, e),
            None => e,
        };
    }
    Activity {
        neurons: out.len() as u64,
        ..Default::default()
    }
}

/// Target-stream error of one class: `deltat[j] = f'(tgt[j]) * err_k * out[j]`.
pub fn delta_target_stream(
    err_k: i32,
    out: &[i32],
    tgt_k: &[i32],
    f: Activation,
    deltat: &mut [i64],
) -> Activity {
    for ((d, &o), &t) in deltat.iter_mut().zip(out).zip(tgt_k) {
        *d = derivative(f, t, err_k as i64 * o as i64);
    }
    Activity {
        neurons: out.len() as u64,
        ..Default::default()
    }
}

/// Target-stream error of the `l2` loss for the label's target:
/// `deltat[j] = f'(tgt[j]) * (tgt[j] - out[j])` (the gradient of `1/2 |h - t|^2` with respect to
/// `t`, through the target's activation).
pub fn delta_target_mismatch(
    out: &[i32],
    tgt_k: &[i32],
    f: Activation,
    deltat: &mut [i64],
) -> Activity {
    for ((d, &o), &t) in deltat.iter_mut().zip(out).zip(tgt_k) {
        *d = derivative(f, t, t as i64 - o as i64);
    }
    Activity {
        neurons: out.len() as u64,
        ..Default::default()
    }
}

/// What a neuron step needs to know about its layer.
#[derive(Clone, Copy, Debug)]
pub struct NeuronParams {
    pub model: sigchip_isa::NeuronModel,
    /// The activation `f` (continuous time).
    pub act: Activation,
    pub state_fmt: QFormat,
    /// From the accumulator's fraction bits to the state's.
    pub state_shift: i32,
    pub out_fmt: QFormat,
}

/// One time step of neurons with time, from the accumulators: the state of each column
/// (`state`, reset at the sample's first step with the spikes), the spikes (`spk`, 1.0 in the
/// output format) and the learning signal or output (`out`).
///
/// - LIF: `I = acc` in the state format; `U = U - (U >> leak) + I - threshold * [spiked]`
///   (reset `zero`: `U = I` after a spike), saturated; spike when `U > threshold`;
///   `out = U` in the output format (`voltage`) or `clamp(U / (2 threshold), 0, 1)` rounded to
///   nearest (`surrogate`).
/// - Continuous time: `a = acc` in the state format, `h += (f(a) - h) >> tau_shift` (an
///   arithmetic shift), saturated; `out = h` in the output format.
pub fn neuron_step(
    p: &NeuronParams,
    first: bool,
    acc: &[i64],
    state: &mut [i64],
    spk: &mut [i32],
    out: &mut [i32],
) -> Activity {
    use sigchip_isa::{NeuronModel, Reset, SpikeLearning};
    let mut a = Activity {
        neurons: acc.len() as u64,
        ..Default::default()
    };
    if first {
        state.fill(0);
        spk.fill(0);
    }
    let (sf, of) = (p.state_fmt.frac as i32, p.out_fmt.frac as i32);
    let to_out = |v: i64| p.out_fmt.saturate(round_shift(v, sf - of));
    match p.model {
        NeuronModel::Lif {
            threshold,
            leak_shift,
            reset,
            learning,
            ..
        } => {
            let theta = threshold as i64;
            let one = (1i64 << of).min(p.out_fmt.max_raw());
            for c in 0..acc.len() {
                let i = round_shift(acc[c], p.state_shift);
                let u = state[c];
                let leaked = u - (u >> leak_shift) + i;
                let u = match (reset, spk[c] != 0) {
                    (Reset::Subtract, true) => leaked - theta,
                    (Reset::Zero, true) => i,
                    (_, false) => leaked,
                };
                let (u, sat) = p.state_fmt.saturate(u);
                a.saturations += sat as u64;
                state[c] = u as i64;
                let fired = u as i64 > theta;
                spk[c] = if fired { one as i32 } else { 0 };
                a.spikes += fired as u64;
                out[c] = match learning {
                    SpikeLearning::Voltage => {
                        let (v, sat) = to_out(u as i64);
                        a.saturations += sat as u64;
                        v
                    }
                    SpikeLearning::Surrogate => {
                        let v = ((u as i64) << of) + theta;
                        (v.div_euclid(2 * theta)).clamp(0, one) as i32
                    }
                };
            }
        }
        NeuronModel::Continuous { tau_shift, .. } => {
            for c in 0..acc.len() {
                let x = round_shift(acc[c], p.state_shift);
                let fx = match p.act {
                    Activation::Relu => x.max(0),
                    Activation::LeakyRelu { shift } if x < 0 => x >> shift,
                    _ => x,
                };
                let h = state[c];
                let (h, sat) = p.state_fmt.saturate(h + ((fx - h) >> tau_shift));
                a.saturations += sat as u64;
                state[c] = h as i64;
                let (v, sat) = to_out(h as i64);
                a.saturations += sat as u64;
                out[c] = v;
            }
        }
        NeuronModel::Rate => unreachable!("rate neurons use `act`"),
    }
    a
}

/// `surrogate` learning: the derivative of the hard sigmoid, `1 / (2 threshold)` (a shift)
/// where `0 < out < 1` and 0 elsewhere, applied to the errors `delta`.
pub fn surrogate_gate(out: &[i32], one: i32, shift: i32, delta: &mut [i64]) {
    for (d, &o) in delta.iter_mut().zip(out) {
        *d = if o > 0 && o < one {
            if shift >= 0 {
                *d >> shift
            } else {
                *d << -shift
            }
        } else {
            0
        };
    }
}

/// Where an update's random bits come from.
#[derive(Clone, Copy, Debug)]
pub struct UpdateKey {
    pub seed: u64,
    pub layer: u16,
    /// Layer-global index of the tile's first row and column.
    pub row_start: u32,
    pub col_start: u32,
    /// Distinct for every update of the same synapse.
    pub step: u64,
}

/// `v * 2^-shift` rounded as the layer rounds weight updates; stochastic bits come from the
/// synapse's (row key, layer-global column).
#[inline]
fn round_update(v: i64, shift: i32, rounding: Rounding, row_key: u64, col: u32) -> i64 {
    match rounding {
        Rounding::Nearest => round_shift(v, shift),
        Rounding::Stochastic => stochastic_shift(v, shift, stochastic_bits(row_key, col)),
    }
}

/// Outer-product weight update: `w[r][c] = sat(w[r][c] - round(delta[c] * x[r] >> shift))`,
/// skipping zero inputs and zero errors (they change nothing under either rounding).
///
/// Panics if `cols` exceeds 4096, the largest crossbar a chip description allows.
#[allow(clippy::too_many_arguments)]
pub fn update(
    w: &mut [i32],
    cols: usize,
    x: &[i32],
    delta: &[i64],
    shift: i32,
    rounding: Rounding,
    key: UpdateKey,
    fmt: QFormat,
) -> Activity {
    let mut act = Activity::default();
    if delta.iter().all(|&d| d == 0) {
        return act;
    }
    let (lo, hi) = (fmt.min_raw(), fmt.max_raw());
    if rounding == Rounding::Nearest && (1..63).contains(&shift) {
        // Branch-free rows (a zero error rounds to a zero change), which the compiler
        // vectorizes; the same arithmetic as the general loop below.
        let nonzero = delta.iter().filter(|&&d| d != 0).count() as u64;
        let half = 1i64 << (shift - 1);
        for (r, &xr) in x.iter().enumerate() {
            if xr == 0 {
                continue;
            }
            act.rows += 1;
            act.synapses += nonzero;
            let row = &mut w[r * cols..(r + 1) * cols];
            let xr = xr as i64;
            let mut sat = 0u64;
            for (wv, &d) in row.iter_mut().zip(delta) {
                let nv = *wv as i64 + ((-(d * xr) + half) >> shift);
                sat += (nv < lo || nv > hi) as u64;
                *wv = nv.clamp(lo, hi) as i32;
            }
            act.saturations += sat;
        }
        return act;
    }
    let nonzero = delta.iter().filter(|&&d| d != 0).count();
    if rounding == Rounding::Stochastic && (1..32).contains(&shift) && nonzero * 2 >= cols {
        // Mostly non-zero errors: branch-free rows again. A zero error adds random bits below
        // the shift and rounds to a zero change. The same arithmetic as `stochastic_shift` with
        // 32 random bits.
        let nonzero = nonzero as u64;
        let mask = (1i64 << shift) - 1;
        for (r, &xr) in x.iter().enumerate() {
            if xr == 0 {
                continue;
            }
            act.rows += 1;
            act.synapses += nonzero;
            let row_key =
                stochastic_row_key(key.seed, key.layer, key.row_start + r as u32, key.step);
            let row = &mut w[r * cols..(r + 1) * cols];
            let xr = xr as i64;
            let mut sat = 0u64;
            for (c, (wv, &d)) in row.iter_mut().zip(delta).enumerate() {
                let bits = stochastic_bits(row_key, key.col_start + c as u32) as i64;
                let nv = *wv as i64 + ((-(d * xr) + (bits & mask)) >> shift);
                sat += (nv < lo || nv > hi) as u64;
                *wv = nv.clamp(lo, hi) as i32;
            }
            act.saturations += sat;
        }
        return act;
    }
    // Mostly zero errors (inactive neurons): visit only the columns with one. A crossbar has
    // at most 4096 columns (the chip description's limit); the list lives on the stack.
    assert!(
        cols <= 4096,
        "a crossbar tile has at most 4096 columns, not {cols}"
    );
    let mut columns = [0u16; 4096];
    let mut n = 0;
    for (c, &d) in delta.iter().enumerate() {
        columns[n] = c as u16;
        n += (d != 0) as usize;
    }
    let active = &columns[..n];
    for (r, &xr) in x.iter().enumerate() {
        if xr == 0 {
            continue;
        }
        act.rows += 1;
        let row_key = stochastic_row_key(key.seed, key.layer, key.row_start + r as u32, key.step);
        let row = &mut w[r * cols..(r + 1) * cols];
        for &c in active {
            let c = c as usize;
            let (wv, d) = (&mut row[c], delta[c]);
            act.synapses += 1;
            let v = -(d * xr as i64);
            let dv = round_update(v, shift, rounding, row_key, key.col_start + c as u32);
            let nv = *wv as i64 + dv;
            if nv < lo || nv > hi {
                act.saturations += 1;
            }
            *wv = nv.clamp(lo, hi) as i32;
        }
    }
    act
}

/// Gradient accumulation: `g[r][c] = sat(g[r][c] - delta[c] * x[r])` in `fmt`, skipping zero
/// inputs and errors.
pub fn accumulate(g: &mut [i64], cols: usize, x: &[i32], delta: &[i64], fmt: QFormat) -> Activity {
    let mut act = Activity::default();
    if delta.iter().all(|&d| d == 0) {
        return act;
    }
    let (lo, hi) = (fmt.min_raw(), fmt.max_raw());
    for (r, &xr) in x.iter().enumerate() {
        if xr == 0 {
            continue;
        }
        act.rows += 1;
        for (gv, &d) in g[r * cols..(r + 1) * cols].iter_mut().zip(delta) {
            if d != 0 {
                act.synapses += 1;
                let v = *gv - d * xr as i64;
                act.saturations += (v < lo || v > hi) as u64;
                *gv = v.clamp(lo, hi);
            }
        }
    }
    act
}

/// Applies accumulated updates: `w = sat(w + round(g >> shift))`, then `g = 0`.
pub fn apply(
    w: &mut [i32],
    cols: usize,
    g: &mut [i64],
    shift: i32,
    rounding: Rounding,
    key: UpdateKey,
    fmt: QFormat,
) -> Activity {
    let mut act = Activity::default();
    let (lo, hi) = (fmt.min_raw(), fmt.max_raw());
    for (r, (wrow, grow)) in w.chunks_mut(cols).zip(g.chunks_mut(cols)).enumerate() {
        act.rows += 1;
        let row_key = stochastic_row_key(key.seed, key.layer, key.row_start + r as u32, key.step);
        for (c, (wv, gv)) in wrow.iter_mut().zip(grow.iter_mut()).enumerate() {
            if *gv == 0 {
                continue;
            }
            act.synapses += 1;
            let dv = round_update(*gv, shift, rounding, row_key, key.col_start + c as u32);
            let nv = *wv as i64 + dv;
            act.saturations += (nv < lo || nv > hi) as u64;
            *wv = nv.clamp(lo, hi) as i32;
            *gv = 0;
        }
    }
    act
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_table_matches_float_within_one_lsb() {
        for (i, &v) in EXP2_LUT.iter().enumerate() {
            let exact = (-(i as f64) / 32.0).exp2() * 65536.0;
            assert!((v as f64 - exact).abs() <= 1.0, "entry {i}: {v} vs {exact}");
        }
        assert_eq!(EXP2_LUT[0], 65536);
    }

    #[test]
    fn softmax_of_equal_scores_is_uniform_and_label_subtracts_one() {
        let prob = QFormat::new(16, 15);
        let mut err = [0; 4];
        softmax_err(&[5, 5, 5, 5], 0, 2, prob, &mut err);
        assert_eq!(err, [8192, 8192, 8192 - 32768, 8192]);
    }

    #[test]
    fn softmax_tracks_float_softmax() {
        let prob = QFormat::new(16, 15);
        let scores = [0i64, 300, -200, 1000, 512];
        let frac = 9;
        let mut err = [0; 5];
        softmax_err(&scores, frac, 0, prob, &mut err);
        let z: Vec<f64> = scores.iter().map(|&s| (s as f64 / 512.0).exp()).collect();
        let total: f64 = z.iter().sum();
        for k in 0..5 {
            let p = prob.to_f64(err[k]) + if k == 0 { 1.0 } else { 0.0 };
            assert!(
                (p - z[k] / total).abs() < 0.03,
                "class {k}: {p} vs {}",
                z[k] / total
            );
        }
    }

    proptest::proptest! {
        /// The documented bound of `exp2-lut32`: each probability within 0.025 of the exact
        /// softmax (the table truncates the exponent to 1/32, a relative error below 2.2 %).
        #[test]
        fn softmax_error_is_within_the_documented_bound(
            scores in proptest::collection::vec(-4000i64..4000, 2..12),
            frac in 0i32..12,
        ) {
            let prob = QFormat::new(16, 15);
            let mut err = vec![0; scores.len()];
            softmax_err(&scores, frac, 0, prob, &mut err);
            let scale = (frac as f64).exp2();
            let m = scores.iter().map(|&s| s as f64 / scale).fold(f64::MIN, f64::max);
            let z: Vec<f64> = scores.iter().map(|&s| (s as f64 / scale - m).exp()).collect();
            let total: f64 = z.iter().sum();
            for k in 0..scores.len() {
                let p = prob.to_f64(err[k]) + if k == 0 { 1.0 } else { 0.0 };
                proptest::prop_assert!((p - z[k] / total).abs() <= 0.025, "class {}: {} vs {}", k, p, z[k] / total);
            }
        }
    }

    proptest::proptest! {
        /// `label_direct`'s error signal against the same formula in float with the exact
        /// softmax: `|delta - delta_float| <= (0.025 + 2^-15) * sum_k |t_kj|` (the softmax bound
        /// of each class error, carried through the sum over classes).
        #[test]
        fn label_direct_delta_is_within_the_softmax_bound(
            classes in 2usize..8,
            n in 1usize..16,
            seed in proptest::prelude::any::<u64>(),
            label_pick in 0usize..8,
        ) {
            let mut rng = sigchip_isa::rng::SplitMix64::new(seed);
            let out: Vec<i32> = (0..n).map(|_| rng.below(128) as i32).collect();
            let tgt: Vec<i32> = (0..classes * n).map(|_| rng.below(128) as i32).collect();
            let label = label_pick % classes;
            let (outf, prob) = (5, QFormat::new(16, 15));
            let mut score = vec![0i64; classes];
            score_targets(&out, &tgt, &mut score);
            let mut err = vec![0i32; classes];
            softmax_err(&score, 2 * outf, label, prob, &mut err);
            let mut delta = vec![0i64; n];
            delta_targets(&err, &tgt, &out, Activation::Identity, &mut delta);
            let real = |raw: i32| raw as f64 / 32.0;
            let s: Vec<f64> = (0..classes)
                .map(|k| (0..n).map(|j| real(out[j]) * real(tgt[k * n + j])).sum())
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let total: f64 = z.iter().sum();
            for j in 0..n {
                let exact: f64 = (0..classes)
                    .map(|k| (z[k] / total - (k == label) as u8 as f64) * real(tgt[k * n + j]))
                    .sum();
                let got = delta[j] as f64 / (1u64 << (15 + outf)) as f64;
                let bound: f64 = (0.025 + 1.0 / 32768.0) * (0..classes).map(|k| real(tgt[k * n + j]).abs()).sum::<f64>();
                proptest::prop_assert!((got - exact).abs() <= bound + 1e-12, "neuron {}: {} vs {} (bound {})", j, got, exact, bound);
            }
        }

        /// `l2` and `hebbian`'s error signals are exact: `f'(h) (h - t)` and `h - t` in the
        /// output format.
        #[test]
        fn per_neuron_deltas_are_exact(h in proptest::collection::vec(-128i32..128, 1..20), shift in 1u8..4, seed in proptest::prelude::any::<u64>()) {
            let mut rng = sigchip_isa::rng::SplitMix64::new(seed);
            let t: Vec<i32> = h.iter().map(|_| rng.below(256) as i32 - 128).collect();
            let mut d = vec![0i64; h.len()];
            delta_mismatch(&h, &t, None, &mut d);
            for j in 0..h.len() {
                proptest::prop_assert_eq!(d[j], (h[j] - t[j]) as i64);
            }
            let f = Activation::LeakyRelu { shift };
            delta_mismatch(&h, &t, Some(f), &mut d);
            for j in 0..h.len() {
                let e = (h[j] - t[j]) as i64;
                proptest::prop_assert_eq!(d[j], if h[j] < 0 { e >> shift } else { e });
            }
        }
    }

    /// [`update`] spelled out synapse by synapse: skip zero inputs and errors, round, saturate.
    #[allow(clippy::too_many_arguments)]
    fn update_reference(
        w: &mut [i32],
        cols: usize,
        x: &[i32],
        delta: &[i64],
        shift: i32,
        rounding: Rounding,
        key: UpdateKey,
        fmt: QFormat,
    ) -> (u64, u64) {
        let (mut synapses, mut saturations) = (0, 0);
        for (r, &xr) in x.iter().enumerate() {
            let row_key =
                stochastic_row_key(key.seed, key.layer, key.row_start + r as u32, key.step);
            for (c, &d) in delta.iter().enumerate() {
                if xr == 0 || d == 0 {
                    continue;
                }
                synapses += 1;
                let v = -(d * xr as i64);
                let dv = match rounding {
                    Rounding::Nearest => round_shift(v, shift),
                    Rounding::Stochastic => stochastic_shift(
                        v,
                        shift,
                        stochastic_bits(row_key, key.col_start + c as u32),
                    ),
                };
                let nv = w[r * cols + c] as i64 + dv;
                saturations += (nv < fmt.min_raw() || nv > fmt.max_raw()) as u64;
                w[r * cols + c] = nv.clamp(fmt.min_raw(), fmt.max_raw()) as i32;
            }
        }
        (synapses, saturations)
    }

    proptest::proptest! {
        /// The branch-free update rows equal the synapse-by-synapse rule on random shapes,
        /// weight widths, shifts (including those outside the fast paths), sparsity and both
        /// roundings.
        #[test]
        fn fast_update_equals_the_synapse_by_synapse_rule(
            rows in 1usize..12,
            cols in 1usize..40,
            bits in 2u8..17,
            shift in 0i32..40,
            stochastic in proptest::bool::ANY,
            sparsity in 0u32..4,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let mut rng = sigchip_isa::rng::SplitMix64::new(seed);
            let fmt = QFormat::new(bits, bits as i8 - 1);
            let span = (fmt.max_raw() - fmt.min_raw() + 1) as u64;
            let mut w: Vec<i32> = (0..rows * cols)
                .map(|_| (fmt.min_raw() + rng.below(span) as i64) as i32)
                .collect();
            let mut draw = |span: u64| {
                let v = rng.below(span) as i64 - (span / 2) as i64;
                if rng.below(4) < sparsity as u64 { 0 } else { v }
            };
            let x: Vec<i32> = (0..rows).map(|_| draw(256) as i32).collect();
            let delta: Vec<i64> = (0..cols).map(|_| draw(1 << 20)).collect();
            let rounding = if stochastic { Rounding::Stochastic } else { Rounding::Nearest };
            let key = UpdateKey { seed, layer: 2, row_start: 7, col_start: 300, step: seed >> 7 };
            let mut expect = w.clone();
            let (synapses, saturations) =
                update_reference(&mut expect, cols, &x, &delta, shift, rounding, key, fmt);
            let act = update(&mut w, cols, &x, &delta, shift, rounding, key, fmt);
            proptest::prop_assert_eq!(&w, &expect);
            proptest::prop_assert_eq!(act.synapses, synapses);
            proptest::prop_assert_eq!(act.saturations, saturations);
        }
    }

    proptest::proptest! {
        /// The fast `mvm` (i32 lanes, AVX2 when present) equals the plain `i64` sum on random
        /// shapes, bit widths and sparsity, including bounds where it must fall back to `i64`.
        #[test]
        fn fast_mvm_equals_the_scalar_sum(
            rows in 1usize..300,
            cols in 1usize..300,
            wbits in 2u32..17,
            xbits in 2u32..17,
            zeros in 0u32..100,
            seed: u64,
        ) {
            let mut rng = sigchip_isa::rng::SplitMix64::new(seed);
            let mut draw = |bits: u32, zero: bool| {
                if zero && rng.below(100) < zeros as u64 {
                    0
                } else {
                    (rng.below(1 << bits) as i64 - (1 << (bits - 1))) as i32
                }
            };
            let w: Vec<i32> = (0..rows * cols).map(|_| draw(wbits, false)).collect();
            let x: Vec<i32> = (0..rows).map(|_| draw(xbits, true)).collect();
            let fmt = QFormat::new(40, 0);
            let mut fast = vec![0i64; cols];
            mvm(&w, cols, &x, &mut fast, fmt, 1 << (wbits - 1));
            let mut plain = vec![0i64; cols];
            for r in 0..rows {
                for c in 0..cols {
                    plain[c] += w[r * cols + c] as i64 * x[r] as i64;
                }
            }
            saturate_all(&mut plain, fmt);
            proptest::prop_assert_eq!(fast, plain);
        }
    }

    #[test]
    fn mvm_skips_zero_inputs_and_saturates() {
        let w = [1, 2, 3, 4, 5, 6];
        let mut acc = [0i64; 2];
        let a = mvm(&w, 2, &[0, 10, 0], &mut acc, QFormat::new(16, 0), 8);
        assert_eq!(acc, [30, 40]);
        assert_eq!((a.rows, a.synapses, a.saturations), (1, 2, 0));
        let a = mvm(&w, 2, &[100, 100, 100], &mut acc, QFormat::new(8, 0), 8);
        assert_eq!(acc, [127, 127]);
        assert_eq!(a.saturations, 2);
    }

    #[test]
    fn update_saturates_and_counts() {
        let mut w = [120, -120];
        let key = UpdateKey {
            seed: 0,
            layer: 1,
            row_start: 0,
            col_start: 0,
            step: 0,
        };
        let a = update(
            &mut w,
            2,
            &[1],
            &[-100, 100],
            0,
            Rounding::Nearest,
            key,
            QFormat::new(8, 0),
        );
        assert_eq!(w, [127, -128]);
        assert_eq!(a.saturations, 2);
    }

    use sigchip_isa::LocalLoss;

    /// The batch-contrastive losses under test, `k` for top-k.
    fn contrastive_loss(pick: u8, k: u16) -> LocalLoss {
        match pick % 3 {
            0 => LocalLoss::TargetMax,
            1 => LocalLoss::TargetMaxAll,
            _ => LocalLoss::TargetTopK { k },
        }
    }

    /// The chosen batch entries, literally: indices sorted by similarity (descending) with ties
    /// to the lower index, then the first one, all maxima, or the first `k`.
    fn literal_choice(loss: LocalLoss, y: &[i64]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..y.len()).collect();
        order.sort_by(|&a, &b| y[b].cmp(&y[a]).then(a.cmp(&b)));
        match loss {
            LocalLoss::TargetMax => vec![order[0]],
            LocalLoss::TargetMaxAll => order
                .into_iter()
                .filter(|&j| y[j] == y[order_max(y)])
                .collect(),
            LocalLoss::TargetTopK { k } => order.into_iter().take(k as usize).collect(),
            _ => unreachable!(),
        }
    }

    fn order_max(y: &[i64]) -> usize {
        (0..y.len()).fold(0, |b, j| if y[j] > y[b] { j } else { b })
    }

    proptest::proptest! {
        /// The class-level selection chooses, class by class, exactly the entries the literal
        /// batch-level rule chooses (ties to the lower batch index), on random batches and
        /// similarity matrices with many ties.
        #[test]
        fn contrastive_selection_matches_the_literal_rule(
            classes in 2usize..6,
            labels in proptest::collection::vec(0usize..6, 2..12),
            gram in proptest::collection::vec(-2i64..3, 36),
            layer1 in proptest::bool::ANY,
            pick in 0u8..3,
            k in 1u16..12,
        ) {
            let labels: Vec<usize> = labels.iter().map(|&l| l % classes).collect();
            let label = labels[0];
            let loss = contrastive_loss(pick, k.min(labels.len() as u16));
            let g: Vec<i64> = gram[..classes * classes].to_vec();
            let y: Vec<i64> = labels
                .iter()
                .map(|&l| if layer1 { (l == label) as i64 } else { g[label * classes + l] })
                .collect();
            let batch: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            let sel = contrastive_select(loss, label, &batch, (!layer1).then_some(&g[..]), classes)
                .expect("the label is in the batch");
            let chosen = literal_choice(loss, &y);
            for k in 0..classes {
                let n = labels.iter().filter(|&&l| l == k).count() as u32;
                let c = chosen.iter().filter(|&&j| labels[j] == k).count() as u32;
                proptest::prop_assert_eq!(sel.counts[k], n, "count of class {}", k);
                proptest::prop_assert_eq!(sel.chosen[k], c, "chosen of class {}", k);
            }
            proptest::prop_assert_eq!(sel.m as usize, chosen.len());
        }

        /// The batch-contrastive error signal against the literal batch formula in float with
        /// the exact softmax, `delta_j = f'(h_j) sum_b (p_b - q_b) t_{L_b, j}`, within
        /// `(0.025 + 2^-15) * sum_k |t_kj|` (the softmax bound of each class error, carried
        /// through the sum over classes).
        #[test]
        fn contrastive_delta_is_within_the_softmax_bound(
            classes in 2usize..6,
            labels in proptest::collection::vec(0usize..6, 2..16),
            n in 1usize..12,
            seed in proptest::prelude::any::<u64>(),
            pick in 0u8..3,
            k in 1u16..16,
            layer1 in proptest::bool::ANY,
        ) {
            let labels: Vec<usize> = labels.iter().map(|&l| l % classes).collect();
            let label = labels[labels.len() / 2];
            let loss = contrastive_loss(pick, k.min(labels.len() as u16));
            let mut rng = sigchip_isa::rng::SplitMix64::new(seed);
            let out: Vec<i32> = (0..n).map(|_| rng.below(128) as i32).collect();
            let tgt: Vec<i32> = (0..classes * n).map(|_| rng.below(128) as i32).collect();
            let g: Vec<i64> = (0..classes * classes).map(|_| rng.below(4) as i64).collect();
            let (outf, prob) = (5, QFormat::new(16, 15));
            let mut score = vec![0i64; classes];
            score_targets(&out, &tgt, &mut score);
            let batch: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            let sel = contrastive_select(loss, label, &batch, (!layer1).then_some(&g[..]), classes)
                .expect("the label is in the batch");
            let mut err = vec![0i32; classes];
            softmax_err_contrastive(&score, 2 * outf, &sel, prob, &mut err);
            let mut delta = vec![0i64; n];
            delta_targets(&err, &tgt, &out, Activation::Identity, &mut delta);
            // The literal formula over the batch entries.
            let real = |raw: i32| raw as f64 / 32.0;
            let sim = |l: usize| -> f64 { (0..n).map(|j| real(out[j]) * real(tgt[l * n + j])).sum() };
            let s: Vec<f64> = labels.iter().map(|&l| sim(l)).collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let total: f64 = z.iter().sum();
            let y: Vec<i64> = labels
                .iter()
                .map(|&l| if layer1 { (l == label) as i64 } else { g[label * classes + l] })
                .collect();
            let chosen = literal_choice(loss, &y);
            for j in 0..n {
                let exact: f64 = (0..labels.len())
                    .map(|b| {
                        let q = chosen.iter().filter(|&&c| c == b).count() as f64 / chosen.len() as f64;
                        (z[b] / total - q) * real(tgt[labels[b] * n + j])
                    })
                    .sum();
                let got = delta[j] as f64 / (1u64 << (15 + outf)) as f64;
                let bound: f64 = (0.025 + 1.0 / 32768.0) * (0..classes).map(|k| real(tgt[k * n + j]).abs()).sum::<f64>();
                proptest::prop_assert!((got - exact).abs() <= bound + 1e-12, "neuron {}: {} vs {} (bound {})", j, got, exact, bound);
            }
        }
    }

    #[test]
    fn target_max_breaks_ties_to_the_first_batch_entry() {
        // Classes 1 and 2 are equally similar to class 0's target input (similarity 5, more
        // than class 0 itself); the batch lists a 2 before a 1, so class 2 is the target.
        let g = [1, 5, 5, 5, 0, 0, 5, 0, 0];
        let sel = contrastive_select(LocalLoss::TargetMax, 0, &[0, 2, 1, 2], Some(&g), 3).unwrap();
        assert_eq!((sel.chosen, sel.m), (vec![0, 0, 1], 1));
        assert_eq!(sel.counts, vec![1, 1, 2]);
        let sel =
            contrastive_select(LocalLoss::TargetMaxAll, 0, &[0, 2, 1, 2], Some(&g), 3).unwrap();
        assert_eq!((sel.chosen, sel.m), (vec![0, 1, 2], 3));
        // Top-2 of similarities [1, 5, 5, 5]: entries 1 and 2 (classes 2 and 1).
        let sel = contrastive_select(
            LocalLoss::TargetTopK { k: 2 },
            0,
            &[0, 2, 1, 2],
            Some(&g),
            3,
        )
        .unwrap();
        assert_eq!((sel.chosen, sel.m), (vec![0, 1, 1], 2));
        // At layer 1 the sample's own class is the target; empty slots (255) are skipped.
        let sel = contrastive_select(LocalLoss::TargetMax, 1, &[0, 1, 255, 1], None, 3).unwrap();
        assert_eq!(
            (sel.chosen, sel.counts, sel.scanned),
            (vec![0, 1, 0], vec![1, 2, 0], 3)
        );
        // A batch without the sample's label is refused.
        assert!(contrastive_select(LocalLoss::TargetMax, 2, &[0, 1], None, 3).is_none());
    }
}
