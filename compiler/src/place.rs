//! The `place` pass: puts every tile on a core of the grid.
//!
//! Cores are filled column by column (x grows east, the forward direction), layer after layer,
//! so a layer's cores are contiguous and every later layer lies at the same x or further east:
//! forward routes run east or along a column, never back west past their source's layer.

use crate::tile::LayerTiling;
use sigchip_isa::{ChipDescription, CoreId};

/// Where each layer's tiles went.
#[derive(Clone, Debug)]
pub struct Placement {
    /// `cores[layer][row_tile][col_tile]`, layer 0 being network layer 1.
    pub cores: Vec<Vec<Vec<CoreId>>>,
    /// Grid position of each core.
    pub positions: Vec<(u16, u16)>,
}

/// The network needs more cores than the grid has.
#[derive(Debug, thiserror::Error)]
#[error(
    "the network does not fit: it needs {needed} cores, the {width}x{height} grid has {available}\n{}\n  \
     what to change: a larger grid (grid.width x grid.height >= {needed}), a larger crossbar \
     (fewer tiles per layer), or fewer neurons in {largest}",
    .per_layer.iter().map(|(l, n, why)| format!("  - {l}: {n} cores ({why})")).collect::<Vec<_>>().join("\n")
)]
pub struct PlaceError {
    pub needed: usize,
    pub available: usize,
    pub width: u16,
    pub height: u16,
    /// (layer, cores, why tiled)
    pub per_layer: Vec<(String, usize, String)>,
    /// The layer with the most cores.
    pub largest: String,
}

/// The `place` pass.
pub fn place(tilings: &[LayerTiling], chip: &ChipDescription) -> Result<Placement, PlaceError> {
    let needed: usize = tilings.iter().map(LayerTiling::core_count).sum();
    let available = chip.core_count();
    if needed > available {
        let per_layer: Vec<_> = tilings
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("layer{}", i + 1), t.core_count(), t.reason.clone()))
            .collect();
        let largest = per_layer
            .iter()
            .max_by_key(|(_, n, _)| *n)
            .map(|(l, _, _)| l.clone())
            .unwrap_or_default();
        return Err(PlaceError {
            needed,
            available,
            width: chip.grid.width,
            height: chip.grid.height,
            per_layer,
            largest,
        });
    }
    let h = chip.grid.height as usize;
    let mut next = 0usize;
    let mut positions = Vec::with_capacity(needed);
    let mut cores = Vec::new();
    for t in tilings {
        let mut layer = Vec::new();
        for _ in &t.row_ranges {
            let mut row = Vec::new();
            for _ in &t.col_ranges {
                positions.push(((next / h) as u16, (next % h) as u16));
                row.push(CoreId(next as u16));
                next += 1;
            }
            layer.push(row);
        }
        cores.push(layer);
    }
    Ok(Placement { cores, positions })
}
