//! The emulator's hot kernels: the crossbar multiply (sparse inputs, as on the chip), the
//! stochastic-rounding weight update and one network step under load.
//!
//!   cargo bench -p sigchip-emulator

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sigchip_emulator::kernels::{mvm, update, UpdateKey};
use sigchip_emulator::router::Network;
use sigchip_isa::rng::SplitMix64;
use sigchip_isa::{QFormat, Rounding};
use std::hint::black_box;

fn data(rows: usize, cols: usize, active: u64) -> (Vec<i32>, Vec<i32>) {
    let mut rng = SplitMix64::new(7);
    let w = (0..rows * cols)
        .map(|_| rng.below(256) as i32 - 128)
        .collect();
    let x = (0..rows)
        .map(|_| {
            if rng.below(100) < active {
                rng.below(128) as i32
            } else {
                0
            }
        })
        .collect();
    (w, x)
}

fn kernels(c: &mut Criterion) {
    let (rows, cols) = (256, 256);
    let mut g = c.benchmark_group("crossbar 256x256");
    for active in [10u64, 50, 100] {
        let (w, x) = data(rows, cols, active);
        let nz = x.iter().filter(|&&v| v != 0).count() as u64;
        g.throughput(Throughput::Elements(nz * cols as u64));
        let mut acc = vec![0i64; cols];
        g.bench_function(format!("mvm, {active}% inputs active"), |b| {
            b.iter(|| {
                mvm(
                    black_box(&w),
                    cols,
                    black_box(&x),
                    &mut acc,
                    QFormat::new(24, 0),
                    128,
                )
            })
        });
    }
    let (mut w, x) = data(rows, cols, 50);
    let delta: Vec<i64> = (0..cols as i64).map(|c| (c * 37) % 2001 - 1000).collect();
    let key = UpdateKey {
        seed: 1,
        layer: 1,
        row_start: 0,
        col_start: 0,
        step: 0,
    };
    let active_rows = x.iter().filter(|&&v| v != 0).count() as u64;
    g.throughput(Throughput::Elements(active_rows * cols as u64));
    for rounding in [Rounding::Nearest, Rounding::Stochastic] {
        g.bench_function(format!("update, {rounding:?} rounding"), |b| {
            b.iter(|| {
                update(
                    &mut w,
                    cols,
                    black_box(&x),
                    black_box(&delta),
                    12,
                    rounding,
                    key,
                    QFormat::new(8, 7),
                )
            })
        });
    }
    // Mostly zero errors, as with ReLU layers where most neurons are inactive.
    let sparse: Vec<i64> = delta
        .iter()
        .enumerate()
        .map(|(c, &d)| if c % 5 == 0 { d } else { 0 })
        .collect();
    g.throughput(Throughput::Elements(active_rows * cols.div_ceil(5) as u64));
    g.bench_function("update, Stochastic rounding, 20% errors non-zero", |b| {
        b.iter(|| {
            update(
                &mut w,
                cols,
                black_box(&x),
                black_box(&sparse),
                12,
                Rounding::Stochastic,
                key,
                QFormat::new(8, 7),
            )
        })
    });
    g.finish();
}

/// The partial sums of a layer tiled over four row tiles stacked in one column of the grid:
/// three 256-packet messages converge on the first tile, contending on the shared links,
/// drained to the last delivery.
fn network(c: &mut Criterion) {
    let paths: Vec<Vec<(i32, i32)>> = (1..4)
        .map(|y| (0..=y).rev().map(|y| (0, y)).collect())
        .collect();
    let hops: u64 = paths.iter().map(|p| p.len() as u64 * 256).sum();
    let router = sigchip_isa::chip::Router {
        link_bandwidth: 1,
        buffer_depth: 4,
    };
    let mut g = c.benchmark_group("network");
    g.throughput(Throughput::Elements(hops));
    g.bench_function("three converging 256-packet messages", |b| {
        b.iter(|| {
            let mut n = Network::with_paths((8, 8), 1, router, paths.clone());
            for route in 0..3u16 {
                n.inject(route, route as u32, 256, 0, 1);
            }
            let mut now = 0;
            let mut last = 0;
            while let Some(t) = n.next_event(now) {
                if let Some(d) = n.step(t).last() {
                    last = d.cycle;
                }
                now = t + 1;
            }
            black_box(last)
        })
    });
    g.finish();
}

criterion_group!(benches, kernels, network);
criterion_main!(benches);
