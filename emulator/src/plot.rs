//! Plots of one sample of a network with time, as SVG: a spike raster of every layer and the
//! membrane potentials (or continuous-time states) of a few neurons, step by step.

use crate::machine::{EmuError, Machine, Phase};
use crate::timing::Cycles;
use std::fmt::Write;
use std::path::Path;

/// One neuron step of one core, as the chip computed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    pub layer: usize,
    /// The core's first column in its layer.
    pub col_start: usize,
    pub tau: u16,
    pub cycle: Cycles,
    /// Per column: spiked, and the state (raw, in the layer's state format).
    pub spikes: Vec<bool>,
    pub state: Vec<i64>,
}

/// Runs inference on one encoded input with the neuron steps recorded, and writes
/// `raster.svg` and `membrane.svg` into `dir`. Returns the two paths.
pub fn plot_sample(
    m: &mut Machine,
    input: &[i32],
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>, EmuError> {
    let io = |e: std::io::Error| {
        EmuError::Output(format!("cannot write plots to {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    m.step_log = Some(Vec::new());
    let res = m.run(&[Phase::Forward], 0, Some(input), None);
    let log = m.step_log.take().unwrap_or_default();
    res?;
    let steps = m.program().network.neuron.steps() as usize;
    let layers = &m.program().layers;
    let widths: Vec<usize> = layers.iter().map(|l| l.width as usize).collect();
    let fracs: Vec<i8> = layers.iter().map(|l| l.state_format.frac).collect();
    let threshold = match m.program().network.neuron {
        sigchip_isa::NeuronModel::Lif { threshold, .. } => Some(threshold),
        _ => None,
    };
    let raster = raster_svg(&log, &widths, steps);
    let membrane = membrane_svg(&log, &widths, &fracs, steps, threshold);
    let mut out = Vec::new();
    for (name, svg) in [("raster.svg", raster), ("membrane.svg", membrane)] {
        let p = dir.join(name);
        std::fs::write(&p, svg).map_err(io)?;
        out.push(p);
    }
    Ok(out)
}

const W: f64 = 720.0;

fn raster_svg(log: &[StepRecord], widths: &[usize], steps: usize) -> String {
    let total: usize = widths.iter().sum();
    let row = (480.0 / total.max(1) as f64).clamp(0.5, 6.0);
    let height = 60.0 + row * total as f64 + 20.0 * widths.len() as f64;
    let col = (W - 120.0) / steps.max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="13">Spike raster: one row per neuron, one column per time step</text>"#
    );
    let mut y0 = 40.0;
    let mut offsets = Vec::new();
    for (l, &w) in widths.iter().enumerate() {
        offsets.push(y0);
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}">layer{}</text>"#,
            y0 + 10.0,
            l + 1
        );
        let _ = writeln!(
            s,
            r#"<rect x="100" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="gray"/>"#,
            col * steps as f64,
            row * w as f64
        );
        y0 += row * w as f64 + 20.0;
    }
    for r in log {
        for (c, &spiked) in r.spikes.iter().enumerate() {
            if spiked {
                let y = offsets[r.layer] + row * (r.col_start + c) as f64;
                let x = 100.0 + col * r.tau as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="black"/>"#,
                    col.max(1.0) - 0.5,
                    row.max(0.5)
                );
            }
        }
    }
    for t in 0..steps {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t}</text>"#,
            100.0 + col * (t as f64 + 0.5),
            height - 8.0
        );
    }
    s.push_str("</svg>\n");
    s
}

fn membrane_svg(
    log: &[StepRecord],
    widths: &[usize],
    fracs: &[i8],
    steps: usize,
    threshold: Option<i32>,
) -> String {
    // The first four neurons of the last layer with states.
    let layer = log.iter().map(|r| r.layer).max().unwrap_or(0);
    let frac = fracs.get(layer).copied().unwrap_or(10) as i32;
    let real = |v: i64| v as f64 / (1i64 << frac.max(0)) as f64;
    let shown = widths.get(layer).copied().unwrap_or(0).min(4);
    let mut series = vec![vec![0.0f64; steps]; shown];
    for r in log.iter().filter(|r| r.layer == layer) {
        for (c, &u) in r.state.iter().enumerate() {
            let n = r.col_start + c;
            if n < shown && (r.tau as usize) < steps {
                series[n][r.tau as usize] = real(u);
            }
        }
    }
    let th = threshold.map(|t| real(t as i64));
    let lo = series
        .iter()
        .flatten()
        .copied()
        .chain(th)
        .fold(0.0f64, f64::min);
    let hi = series
        .iter()
        .flatten()
        .copied()
        .chain(th)
        .fold(1e-9f64, f64::max);
    let (h, left, top) = (300.0, 60.0, 40.0);
    let xs = |t: usize| left + (W - left - 40.0) * t as f64 / (steps.max(2) - 1) as f64;
    let ys = |v: f64| top + h * (hi - v) / (hi - lo);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{:.0}" font-family="sans-serif" font-size="11">"#,
        top + h + 50.0
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="13">layer{} state of neurons 0..{shown} per time step</text>"#,
        layer + 1
    );
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="gray"/>"#,
        ys(0.0),
        W - 40.0,
        ys(0.0)
    );
    if let Some(t) = th {
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="dimgray" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}">threshold {t}</text>"#,
            ys(t),
            W - 40.0,
            ys(t),
            W - 120.0,
            ys(t) - 4.0
        );
    }
    for (n, v) in series.iter().enumerate() {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(t, &u)| format!("{:.1},{:.1}", xs(t), ys(u)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            colors[n % 4],
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{}">neuron {n}</text>"#,
            left + 4.0,
            top + h + 20.0 + 12.0 * n as f64 - 12.0 * shown as f64 + 12.0,
            colors[n % 4]
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="{:.1}">{lo:.2}</text><text x="10" y="{:.1}">{hi:.2}</text>"#,
        top + h + 14.0,
        top + 10.0
    );
    s.push_str("</svg>\n");
    s
}
