//! The text listing of a program: routes, then every core's streams, one instruction a line,
//! prefixed by the core as the text format writes it (`core3: mvm in`).

use crate::program::Program;
use std::fmt::Write;

/// Disassembles a whole program.
pub fn disassemble(p: &Program) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "; program {} for chip {}", p.name, p.chip.name);
    for l in &p.layers {
        let _ = writeln!(
            s,
            "; {} {}: {} -> {} {}, weights {}, in {}, out {}, loss {}, lr >>{}",
            l.id,
            l.name,
            l.inputs,
            l.width,
            l.activation,
            l.weight_format,
            l.in_format,
            l.out_format,
            l.loss,
            l.lr_shift
        );
    }
    for r in &p.routes {
        let _ = writeln!(
            s,
            "{}: {} {}[{}..{}] -> {} {}[{}..] ({:?}, {} hops)",
            r.id,
            r.src,
            r.src_buf,
            r.src_start,
            r.src_start + r.len,
            r.dst,
            r.dst_buf,
            r.dst_start,
            p.route_kind(r),
            p.hops(r)
        );
    }
    for c in &p.cores {
        let t = &c.tile;
        let _ = writeln!(
            s,
            "\n; {} at ({}, {}): {} rows {}..{} x cols {}..{} (tile r{} c{})",
            c.id,
            c.x,
            c.y,
            c.layer,
            t.row_start,
            t.row_start + t.rows,
            t.col_start,
            t.col_start + t.cols,
            t.row_tile,
            t.col_tile
        );
        for (phase, stream) in c.streams.phases() {
            let _ = writeln!(s, "{}.{phase}:", c.id);
            for (i, instr) in stream.iter().enumerate() {
                let word = instr.encode().into_inner()[0];
                let _ = writeln!(s, "{}: {i:4}  {word:08x}  {instr}", c.id);
            }
        }
    }
    s
}
