//! The accuracy table of `docs/accuracy.md`: one network on one data set, trained with every
//! local loss and readout on the chip, in f32 sigprop, and in f32 backpropagation, with the
//! same initial weights, sample order, epochs and seed.

use crate::compiler::{self, LossKind, NetworkDesc};
use crate::emulator::{self, data::Dataset, TrainOptions};
use crate::isa::{ChipDescription, Pre, Readout};
use crate::reference::{self, Algorithm, F32Options};
use serde::Serialize;
use std::fmt::Write;

/// One row: a loss and readout, and its test accuracy on each backend.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub data: String,
    pub loss: String,
    pub readout: String,
    /// The chip's weight and activation widths.
    pub precision: String,
    pub chip: f64,
    pub f32_sigprop: f64,
    /// Backpropagation has no local loss: the same figure on every row of a table.
    pub f32_backprop: f64,
}

/// The table with how it was made.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub network: String,
    pub data: String,
    pub epochs: u32,
    pub seed: u64,
    pub rows: Vec<Row>,
}

/// The local losses the table covers for a network trained in batches of `batch`: the
/// batch-contrastive ones only with mini-batches (top-k with `k = min(6, batch)`, the sigprop
/// reference example's 6).
pub fn losses(batch: u32) -> Vec<LossKind> {
    let mut v = vec![
        LossKind::LabelDirect,
        LossKind::L2,
        LossKind::Hebbian { pre: Pre::Target },
        LossKind::Hebbian { pre: Pre::Data },
    ];
    if batch > 1 {
        v.extend([
            LossKind::TargetMax,
            LossKind::TargetMaxAll,
            LossKind::TargetTopK {
                k: batch.min(6) as u16,
            },
        ]);
    }
    v
}

fn loss_name(l: LossKind) -> String {
    l.to_string()
}

fn readout_name(r: Readout) -> &'static str {
    match r {
        Readout::OutputLayer => "output_layer",
        Readout::NearestTarget => "nearest_target",
        Readout::NearestTargetL2 => "nearest_target_l2",
    }
}

/// Trains every (loss, readout) variant of `base` on the chip and in f32, plus f32 backprop.
pub fn table(
    base: &NetworkDesc,
    chip: &ChipDescription,
    data: &Dataset,
    epochs: u32,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Table> {
    let origin = base.name.clone();
    let opts = F32Options { epochs, seed };
    let mut quiet = |_: u64, _: u64, _: &str| {};
    progress("f32 backprop");
    let valid = compiler::validate(base.clone(), &origin)?;
    let backprop = reference::train_f32(&valid, data, Algorithm::Backprop, &opts, &mut quiet)?
        .accuracy
        .test;
    let mut rows = Vec::new();
    for loss in losses(base.learning.batch) {
        for readout in [
            Readout::OutputLayer,
            Readout::NearestTarget,
            Readout::NearestTargetL2,
        ] {
            let mut desc = base.clone();
            desc.loss = loss;
            desc.readout = readout;
            if loss != LossKind::LabelDirect {
                // Learned targets (and so a learned projection) are label_direct's only.
                desc.targets = crate::isa::TargetMode::Constant;
                if desc.projection == crate::isa::ProjectionMode::Learned {
                    desc.projection = crate::isa::ProjectionMode::FixedRandom;
                }
            }
            let what = format!("{} / {}", loss_name(loss), readout_name(readout));
            progress(&format!("chip {what}"));
            let program = compiler::compile(desc.clone(), &origin, chip)?.program;
            let (_, report) =
                emulator::train(program, data, &TrainOptions::new(epochs, seed), &mut quiet)?;
            progress(&format!("f32 {what}"));
            let valid = compiler::validate(desc, &origin)?;
            let f32 = reference::train_f32(&valid, data, Algorithm::Sigprop, &opts, &mut quiet)?;
            rows.push(Row {
                data: data.name.clone(),
                loss: loss_name(loss),
                readout: readout_name(readout).into(),
                precision: format!("w{} a{}", chip.bits.weight, chip.bits.activation),
                chip: report.accuracy.test,
                f32_sigprop: f32.accuracy.test,
                f32_backprop: backprop,
            });
        }
    }
    Ok(Table {
        network: base.name.clone(),
        data: data.name.clone(),
        epochs,
        seed,
        rows,
    })
}

impl Table {
    /// The table as a Markdown section, with the command that regenerates it.
    pub fn markdown(&self, command: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### `{}` on {} ({} epochs, seed {})\n",
            self.network, self.data, self.epochs, self.seed
        );
        let _ = writeln!(s, "Regenerate: `{command}`\n");
        let _ = writeln!(
            s,
            "| data | loss | readout | precision | chip | f32 sigprop | f32 backprop |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.4} | {:.4} | {:.4} |",
                r.data, r.loss, r.readout, r.precision, r.chip, r.f32_sigprop, r.f32_backprop
            );
        }
        s
    }
}

/// Replaces the section between `<!-- BEGIN key -->` and `<!-- END key -->` of `doc` with
/// `section`, or appends it with its markers.
pub fn splice(doc: &str, key: &str, section: &str) -> String {
    let (begin, end) = (
        format!("<!-- BEGIN {key} -->"),
        format!("<!-- END {key} -->"),
    );
    let block = format!("{begin}\n{section}{end}");
    match (doc.find(&begin), doc.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &doc[..b], &doc[e + end.len()..]),
        _ => format!("{}\n{block}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn splice_replaces_or_appends() {
        let doc = "# t\n<!-- BEGIN a -->\nold\n<!-- END a -->\ntail\n";
        assert_eq!(
            super::splice(doc, "a", "new\n"),
            "# t\n<!-- BEGIN a -->\nnew\n<!-- END a -->\ntail\n"
        );
        assert_eq!(
            super::splice("# t\n", "b", "x\n"),
            "# t\n<!-- BEGIN b -->\nx\n<!-- END b -->\n"
        );
    }
}
