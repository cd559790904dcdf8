//! The compile summary: cores, tiles and why, routes by kind, memory by kind against capacity,
//! and the quantization error. Printed by `sigchip compile` and pinned by snapshot tests.

use crate::quantize::QuantError;
use crate::tile::LayerTiling;
use serde::Serialize;
use sigchip_isa::memory::{core_capacity, memory_use, CoreMemory};
use sigchip_isa::{Program, RouteCounts};
use std::fmt;

#[derive(Clone, Debug, Serialize)]
pub struct LayerSummary {
    pub layer: String,
    pub shape: String,
    pub activation: String,
    pub loss: String,
    pub formats: String,
    pub tiles: String,
    pub cores: Vec<String>,
    pub why: String,
}

/// What `sigchip compile` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub name: String,
    pub chip: String,
    pub cores_used: usize,
    pub cores_available: usize,
    pub layers: Vec<LayerSummary>,
    pub routes: RouteCounts,
    /// Used bits by kind, summed over cores.
    pub memory_used: CoreMemory,
    /// Capacity by kind, summed over the used cores (data SRAM reported under `buffers`).
    pub memory_capacity: CoreMemory,
    pub quantization: Vec<QuantError>,
    pub instructions: usize,
}

impl Summary {
    pub fn new(p: &Program, tilings: &[LayerTiling], quantization: Vec<QuantError>) -> Self {
        let mut used = CoreMemory::default();
        for m in memory_use(p) {
            used.add(&m);
        }
        let cap1 = core_capacity(p);
        let mut capacity = CoreMemory::default();
        for _ in &p.cores {
            capacity.add(&cap1);
        }
        let layers = p
            .layers
            .iter()
            .zip(tilings)
            .map(|(l, t)| LayerSummary {
                layer: format!("{} {}", l.id, l.name),
                shape: format!("{} (+bias: {}) -> {}", l.inputs, l.bias, l.width),
                activation: l.activation.to_string(),
                loss: l.loss.to_string(),
                formats: format!(
                    "w {} in {} out {}",
                    l.weight_format, l.in_format, l.out_format
                ),
                tiles: format!("{} x {}", t.row_ranges.len(), t.col_ranges.len()),
                cores: p
                    .cores
                    .iter()
                    .filter(|c| c.layer == l.id)
                    .map(|c| c.id.to_string())
                    .collect(),
                why: t.reason.clone(),
            })
            .collect();
        Summary {
            name: p.name.clone(),
            chip: p.chip.name.clone(),
            cores_used: p.cores.len(),
            cores_available: p.chip.core_count(),
            layers,
            routes: p.route_counts(),
            memory_used: used,
            memory_capacity: capacity,
            quantization,
            instructions: p.cores.iter().map(|c| c.streams.total_len()).sum(),
        }
    }
}

fn kib(bits: u64) -> String {
    format!("{:.1} KiB", bits as f64 / 8192.0)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "compiled `{}` for chip `{}`", self.name, self.chip)?;
        writeln!(
            f,
            "cores: {} of {} used",
            self.cores_used, self.cores_available
        )?;
        writeln!(f, "\nlayers:")?;
        for l in &self.layers {
            writeln!(
                f,
                "  {:<16} {:<24} {:<16} {}",
                l.layer, l.shape, l.activation, l.loss
            )?;
            writeln!(f, "  {:<16} {}", "", l.formats)?;
            writeln!(
                f,
                "  {:<16} tiles {} on {}: {}",
                "",
                l.tiles,
                l.cores.join(" "),
                l.why
            )?;
        }
        writeln!(
            f,
            "\nroutes: {} forward, {} lateral, {} backward",
            self.routes.forward, self.routes.lateral, self.routes.backward
        )?;
        writeln!(f, "\nmemory (used / capacity of the used cores):")?;
        let (u, c) = (&self.memory_used, &self.memory_capacity);
        writeln!(
            f,
            "  {:<14} {:>12} / {:>12}",
            "weights",
            kib(u.weights),
            kib(c.weights)
        )?;
        writeln!(
            f,
            "  {:<14} {:>12} / {:>12}  (projection {}, buffers {}, targets {}, learning {})",
            "data SRAM",
            kib(u.data_sram()),
            kib(c.buffers),
            kib(u.projection),
            kib(u.buffers),
            kib(u.targets),
            kib(u.learning)
        )?;
        writeln!(
            f,
            "  {:<14} {:>12} / {:>12}",
            "routing tables",
            kib(u.routing),
            kib(c.routing)
        )?;
        writeln!(
            f,
            "  {:<14} {:>12} / {:>12}  ({} words)",
            "instructions",
            kib(u.instructions),
            kib(c.instructions),
            self.instructions
        )?;
        writeln!(f, "\nquantization (initial weights):")?;
        for q in &self.quantization {
            writeln!(
                f,
                "  {:<20} {:<7} max |error| {:.5} (half LSB {:.5}), rms {:.5}, saturated {}",
                q.layer, q.format, q.max_abs_error, q.half_lsb, q.rms_error, q.saturated
            )?;
        }
        Ok(())
    }
}
