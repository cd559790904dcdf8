//! The `tile` pass: splits each layer's weight matrix over crossbars.
//!
//! A layer with more neurons than crossbar columns is split by output columns; a layer with more
//! input rows (inputs plus the bias row) than crossbar rows is also split by rows, and the row
//! tiles' partial sums are accumulated by the column's first row tile (its reducer) over lateral
//! routes. Splits are balanced: tile sizes differ by at most one.

use serde::Serialize;
use sigchip_isa::ChipDescription;

/// How one layer is split.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTiling {
    pub rows: u32,
    pub cols: u32,
    /// (start, len) of each row tile and each column tile.
    pub row_ranges: Vec<(u32, u32)>,
    pub col_ranges: Vec<(u32, u32)>,
    /// Why the layer is split as it is, for the compile summary.
    pub reason: String,
}

impl LayerTiling {
    pub fn core_count(&self) -> usize {
        self.row_ranges.len() * self.col_ranges.len()
    }
}

/// Balanced split of `n` into the fewest parts of at most `max`.
fn split(n: u32, max: u32) -> Vec<(u32, u32)> {
    let parts = n.div_ceil(max).max(1);
    let (base, extra) = (n / parts, n % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = base + (i < extra) as u32;
            let r = (start, len);
            start += len;
            r
        })
        .collect()
}

/// Tiles a `rows x cols` layer (rows include the bias row) for `chip`.
pub fn tile_layer(rows: u32, cols: u32, chip: &ChipDescription) -> LayerTiling {
    let (xr, xc) = (chip.crossbar.rows, chip.crossbar.cols);
    let row_ranges = split(rows, xr);
    let col_ranges = split(cols, xc);
    let mut why = Vec::new();
    if col_ranges.len() > 1 {
        why.push(format!(
            "{cols} neurons > {xc} crossbar columns: split by output columns into {}",
            col_ranges.len()
        ));
    }
    if row_ranges.len() > 1 {
        why.push(format!(
            "{rows} input rows > {xr} crossbar rows: split by input rows into {}, partial sums accumulated",
            row_ranges.len()
        ));
    }
    let reason = if why.is_empty() {
        format!("fits one {xr}x{xc} crossbar")
    } else {
        why.join("; ")
    };
    LayerTiling {
        rows,
        cols,
        row_ranges,
        col_ranges,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn split_covers_exactly_once(n in 1u32..5000, max in 1u32..600) {
            let parts = split(n, max);
            let mut next = 0;
            for &(start, len) in &parts {
                prop_assert_eq!(start, next);
                prop_assert!(len >= 1 && len <= max);
                next += len;
            }
            prop_assert_eq!(next, n);
            prop_assert_eq!(parts.len() as u32, n.div_ceil(max));
        }
    }
}
