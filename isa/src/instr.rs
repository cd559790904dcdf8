//! The core instruction set.
//!
//! One table (`define_instructions!` below) generates the [`Instr`] enum, its opcodes, the binary
//! encoder and decoder and the disassembler, so they cannot drift apart.
//!
//! ## Binary layout
//!
//! Every instruction is one 32-bit word, least significant bit first:
//!
//! ```text
//!  bit 0..5   opcode
//!  bit 5..    operands, in the order the table lists them, each as wide as its type:
//!             route id 16, core id 16, buffer 4, class 8, score mode 2, delta mode 2,
//!             pre-synaptic factor 1
//!  rest       zero (the decoder rejects a word with stray bits)
//! ```

use crate::ids::{CoreId, RouteId};
use bitvec::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One encoded instruction word.
pub type InstrWord = BitArray<[u32; 1], Lsb0>;

/// Width of the opcode field.
pub const OPCODE_BITS: usize = 5;

/// A core-local buffer that instructions and routes name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Buf {
    /// The layer's input slice (data or target stream); its last row may be the bias axon.
    In,
    /// Column accumulators.
    Acc,
    /// Partial sums received from another row tile of the same layer.
    Psum,
    /// Neuron outputs.
    Out,
    /// Per-class scores (partial or reduced dot products, or logits).
    Score,
    /// Partial scores received from another column tile of the same layer.
    #[serde(rename = "scorein")]
    ScoreIn,
    /// Per-class error of the local loss: softmax minus one-hot label.
    Err,
    /// Per-neuron error of the data stream.
    Delta,
    /// Per-neuron error of the target stream for one class.
    #[serde(rename = "deltat")]
    DeltaT,
    /// The sample's label.
    Label,
    /// The labels of the current mini-batch, in sample order (batch-contrastive losses).
    Batch,
    /// The class-similarity matrix `Y` of the layer's target inputs, `classes x classes`:
    /// `t_{i-1}^a . t_{i-1}^b` (batch-contrastive losses beyond layer 1).
    Gram,
    /// A partial class-similarity matrix received from another core, added into `gram`.
    #[serde(rename = "gramin")]
    GramIn,
    /// This core's share of the class-similarity matrix of its own targets, over its columns.
    #[serde(rename = "grampart")]
    GramPart,
    /// Spikes of the current time step (spiking layers): 1.0 in the output format, or 0.
    #[serde(rename = "spk")]
    Spike,
}

impl Buf {
    pub const ALL: [Buf; 15] = [
        Buf::In,
        Buf::Acc,
        Buf::Psum,
        Buf::Out,
        Buf::Score,
        Buf::ScoreIn,
        Buf::Err,
        Buf::Delta,
        Buf::DeltaT,
        Buf::Label,
        Buf::Batch,
        Buf::Gram,
        Buf::GramIn,
        Buf::GramPart,
        Buf::Spike,
    ];

    /// The buffer as listings and program files write it.
    pub fn name(self) -> &'static str {
        match self {
            Buf::In => "in",
            Buf::Acc => "acc",
            Buf::Psum => "psum",
            Buf::Out => "out",
            Buf::Score => "score",
            Buf::ScoreIn => "scorein",
            Buf::Err => "err",
            Buf::Delta => "delta",
            Buf::DeltaT => "deltat",
            Buf::Label => "label",
            Buf::Batch => "batch",
            Buf::Gram => "gram",
            Buf::GramIn => "gramin",
            Buf::GramPart => "grampart",
            Buf::Spike => "spk",
        }
    }
}

impl fmt::Display for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How `score` and `delta` relate neuron outputs to classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMode {
    /// Against the class targets in target memory (`label_direct`, `nearest_target`).
    Targets,
    /// The outputs are the class logits themselves (`output_layer` readout).
    Direct,
    /// Negated squared distance to each class target, up to a per-sample constant:
    /// `2 out . tgt[k] - |tgt[k]|^2` (`nearest_target_l2` readout).
    TargetsL2,
}

impl fmt::Display for ScoreMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScoreMode::Targets => "targets",
            ScoreMode::Direct => "direct",
            ScoreMode::TargetsL2 => "targets_l2",
        })
    }
}

/// What the learning unit's `delta` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaMode {
    /// `f'(out) * sum_k err[k] tgt[k]`: softmax over the class targets (`label_direct`).
    Targets,
    /// `f'(out) * err`: the outputs are logits (`output_layer` readout).
    Direct,
    /// `f'(out) * (out - tgt[label])`: the `l2` loss against the label's target.
    L2,
    /// `out - tgt[label]`: the `hebbian` rule's mismatch (no derivative).
    Hebbian,
}

impl fmt::Display for DeltaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeltaMode::Targets => "targets",
            DeltaMode::Direct => "direct",
            DeltaMode::L2 => "l2",
            DeltaMode::Hebbian => "hebbian",
        })
    }
}

/// The pre-synaptic factor of a weight update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pre {
    /// The data stream's input `in` (the delta rule).
    Data,
    /// The target stream's input for the label's class, `tgtin[label]`.
    Target,
}

impl fmt::Display for Pre {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pre::Data => "data",
            Pre::Target => "target",
        })
    }
}

/// A class index operand. [`Class::LABEL`] (255, never a class: a network has at most 255
/// classes, 0..=254) names the sample's label instead, for the target-stream instructions of a
/// per-neuron loss, which learn only the label's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Class(pub u8);

impl Class {
    /// The sample's label (the `label` register), not a fixed class.
    pub const LABEL: Class = Class(255);

    /// The class this operand names for a sample of class `label`.
    pub fn resolve(self, label: usize) -> usize {
        if self == Class::LABEL {
            label
        } else {
            self.0 as usize
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Class::LABEL {
            f.write_str("label")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// An operand type: how wide it is in the instruction word and how it maps to bits.
pub trait Operand: Sized + Copy + fmt::Display {
    const BITS: usize;
    fn to_bits(self) -> u32;
    fn from_bits(bits: u32) -> Option<Self>;
}

impl Operand for RouteId {
    const BITS: usize = 16;
    fn to_bits(self) -> u32 {
        self.0 as u32
    }
    fn from_bits(bits: u32) -> Option<Self> {
        Some(RouteId(bits as u16))
    }
}

impl Operand for CoreId {
    const BITS: usize = 16;
    fn to_bits(self) -> u32 {
        self.0 as u32
    }
    fn from_bits(bits: u32) -> Option<Self> {
        Some(CoreId(bits as u16))
    }
}

impl Operand for Buf {
    const BITS: usize = 4;
    fn to_bits(self) -> u32 {
        Buf::ALL
            .iter()
            .position(|b| *b == self)
            .expect("every buffer is listed") as u32
    }
    fn from_bits(bits: u32) -> Option<Self> {
        Buf::ALL.get(bits as usize).copied()
    }
}

impl Operand for Class {
    const BITS: usize = 8;
    fn to_bits(self) -> u32 {
        self.0 as u32
    }
    fn from_bits(bits: u32) -> Option<Self> {
        Some(Class(bits as u8))
    }
}

impl Operand for DeltaMode {
    const BITS: usize = 2;
    fn to_bits(self) -> u32 {
        match self {
            DeltaMode::Targets => 0,
            DeltaMode::Direct => 1,
            DeltaMode::L2 => 2,
            DeltaMode::Hebbian => 3,
        }
    }
    fn from_bits(bits: u32) -> Option<Self> {
        [
            DeltaMode::Targets,
            DeltaMode::Direct,
            DeltaMode::L2,
            DeltaMode::Hebbian,
        ]
        .get(bits as usize)
        .copied()
    }
}

impl Operand for Pre {
    const BITS: usize = 1;
    fn to_bits(self) -> u32 {
        matches!(self, Pre::Target) as u32
    }
    fn from_bits(bits: u32) -> Option<Self> {
        Some(if bits == 0 { Pre::Data } else { Pre::Target })
    }
}

impl Operand for ScoreMode {
    const BITS: usize = 2;
    fn to_bits(self) -> u32 {
        match self {
            ScoreMode::Targets => 0,
            ScoreMode::Direct => 1,
            ScoreMode::TargetsL2 => 2,
        }
    }
    fn from_bits(bits: u32) -> Option<Self> {
        [ScoreMode::Targets, ScoreMode::Direct, ScoreMode::TargetsL2]
            .get(bits as usize)
            .copied()
    }
}

/// Why a word is not an instruction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("word {word:#010x}: unknown opcode {opcode}")]
    UnknownOpcode { word: u32, opcode: u32 },
    #[error("word {word:#010x}: operand `{operand}` of `{mnemonic}` has invalid value {value}")]
    BadOperand {
        word: u32,
        mnemonic: &'static str,
        operand: &'static str,
        value: u32,
    },
    #[error("word {word:#010x}: bits above the operands of `{mnemonic}` are not zero")]
    StrayBits { word: u32, mnemonic: &'static str },
}

macro_rules! define_instructions {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $opcode:literal, $mnemonic:literal { $($field:ident : $fty:ty),* };
    )*) => {
        /// One core instruction. See the table in the source and docs/isa.md.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Instr {
            // The RON spelling is the mnemonic, so program files and listings read alike.
            $( $(#[$doc])* #[serde(rename = $mnemonic)] $variant { $($field: $fty),* }, )*
        }

        /// The opcode of an instruction.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Opcode {
            $( $variant = $opcode, )*
        }

        impl Opcode {
            /// Every opcode, in table order.
            pub const ALL: &'static [Opcode] = &[$(Opcode::$variant),*];

            pub fn mnemonic(self) -> &'static str {
                match self { $(Opcode::$variant => $mnemonic,)* }
            }

            pub fn from_number(n: u32) -> Option<Opcode> {
                match n { $($opcode => Some(Opcode::$variant),)* _ => None }
            }

            /// Operand names, in encoding order.
            pub fn operands(self) -> &'static [&'static str] {
                match self { $(Opcode::$variant => &[$(stringify!($field)),*],)* }
            }
        }

        impl Instr {
            pub fn opcode(&self) -> Opcode {
                match self { $(Instr::$variant { .. } => Opcode::$variant,)* }
            }

            /// Packs the instruction into one word (layout in the module docs).
            #[allow(unused_assignments, unused_mut)]
            pub fn encode(&self) -> InstrWord {
                let mut word = InstrWord::ZERO;
                word[..OPCODE_BITS].store_le::<u32>(self.opcode() as u32);
                let mut at = OPCODE_BITS;
                match *self {
                    $(Instr::$variant { $($field),* } => {
                        $(
                            word[at..at + <$fty as Operand>::BITS].store_le::<u32>($field.to_bits());
                            at += <$fty as Operand>::BITS;
                        )*
                    })*
                }
                word
            }

            /// Unpacks one word; every bit must be accounted for.
            #[allow(unused_assignments, unused_mut)]
            pub fn decode(raw: u32) -> Result<Instr, DecodeError> {
                let word = InstrWord::new([raw]);
                let number = word[..OPCODE_BITS].load_le::<u32>();
                let opcode = Opcode::from_number(number)
                    .ok_or(DecodeError::UnknownOpcode { word: raw, opcode: number })?;
                let mut at = OPCODE_BITS;
                let instr = match opcode {
                    $(Opcode::$variant => {
                        $(
                            let bits = word[at..at + <$fty as Operand>::BITS].load_le::<u32>();
                            let $field = <$fty as Operand>::from_bits(bits).ok_or(
                                DecodeError::BadOperand {
                                    word: raw,
                                    mnemonic: $mnemonic,
                                    operand: stringify!($field),
                                    value: bits,
                                },
                            )?;
                            at += <$fty as Operand>::BITS;
                        )*
                        Instr::$variant { $($field),* }
                    })*
                };
                if word[at..].any() {
                    return Err(DecodeError::StrayBits { word: raw, mnemonic: opcode.mnemonic() });
                }
                Ok(instr)
            }
        }

        impl fmt::Display for Instr {
            /// The disassembly: mnemonic, then operands separated by commas.
            #[allow(unused_mut)]
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Instr::$variant { $($field),* } => {
                        f.write_str($mnemonic)?;
                        let mut sep = " ";
                        $( write!(f, "{sep}{}", $field)?; sep = ", "; )*
                        let _ = sep;
                        Ok(())
                    })*
                }
            }
        }
    };
}

define_instructions! {
    /// Does nothing for one issue slot.
    Nop = 0, "nop" {};
    /// Waits for the message of `route` (this core is its destination) and writes it into the
    /// route's destination buffer.
    Recv = 1, "recv" { route: RouteId };
    /// Sends the route's source buffer range; only non-zero entries become packets, plus one tail.
    Send = 2, "send" { route: RouteId };
    /// Crossbar multiply, forward: `acc[c] = sum_r W[r][c] * src[r]` over non-zero `src[r]`.
    Mvm = 3, "mvm" { src: Buf };
    /// Crossbar multiply through the transposed array (weight transport). Exists for baseline
    /// algorithms; the forward-only verifier rejects it.
    MvmT = 4, "mvmt" { src: Buf };
    /// Target projection lookup: `acc = S[class] + S[bias]` (a one-hot input is a row read).
    Proj = 5, "proj" { class: Class };
    /// Adds received partial sums: `acc += psum`.
    AddPs = 6, "addps" {};
    /// Neuron unit: `out = f(requantize(acc))`, saturating.
    Act = 7, "act" {};
    /// Stores the outputs as the target of `class`: `tgt[class] = out`.
    TStore = 8, "tstore" { class: Class };
    /// Stores the inputs as the target input of `class`: `tgtin[class] = in`.
    TInStore = 9, "tinstore" { class: Class };
    /// Per-class scores of this core's neurons (partial dot products, or logits).
    Score = 10, "score" { mode: ScoreMode };
    /// Adds partial scores from another column tile: `score += scorein`.
    AddSc = 11, "addsc" {};
    /// Softmax unit: `err = softmax(score) - onehot(label)`; for the layer's batch-contrastive
    /// loss, the batch softmax by class counts minus the target distribution (docs/isa.md).
    Smax = 12, "smax" {};
    /// Data-stream error of the local loss, by [`DeltaMode`].
    Delta = 13, "delta" { mode: DeltaMode };
    /// Weight update: `W[r][c] -= round(delta[c] * pre[r] >> lr)`, `pre` = `in` or `tgtin[label]`.
    Upd = 14, "upd" { pre: Pre };
    /// Target-stream error of one class: `deltat = f'(tgt[class]) * err[class] * out`; on a layer
    /// with the `l2` loss, `deltat = f'(tgt[class]) * (tgt[class] - out)`.
    DeltaT = 15, "deltat" { class: Class };
    /// Weight update from the target stream: `W[r][c] -= round(deltat[c] * tgtin[class][r] >> lr)`.
    UpdT = 16, "updt" { class: Class };
    /// Projection update: `S[class] -= round(deltat >> lr)`, and the same for the bias row.
    UpdP = 17, "updp" { class: Class };
    /// Reads a buffer of another core directly. Exists for baseline algorithms; the verifier
    /// rejects it when the other core belongs to another layer.
    LdRem = 18, "ldrem" { core: CoreId, buf: Buf };
    /// Waits at the barrier that ends a phase.
    Sync = 19, "sync" {};
    /// Ends the stream.
    Halt = 20, "halt" {};
    /// Gradient accumulation (mini-batches): `G[r][c] -= delta[c] * pre[r]`, exact and wide.
    GAcc = 21, "gacc" { pre: Pre };
    /// Applies the batch mean: `W[r][c] += round(G[r][c] >> (lr + log2 batch))`, then `G = 0`.
    GApply = 22, "gapply" {};
    /// This core's share of its class targets' similarity matrix:
    /// `grampart[a][b] = sum_c tgt[a][c] * tgt[b][c]` over its columns.
    Gram = 23, "gram" {};
    /// Adds a received partial similarity matrix: `gram += gramin`.
    AddG = 24, "addg" {};
    /// Neuron unit, one time step of neurons with time, from `acc`: a LIF step (`spk` = the
    /// spikes, `out` = the learning signal) or a continuous-time step (`out` = the state). The
    /// state is reset at the sample's first step. See docs/isa.md, "Time steps".
    NStep = 25, "nstep" {};
    /// The same step for the target stream of `class` (its own state), adding the learning
    /// signal into the class's target sum; at the last step the class target becomes its mean
    /// (LIF) or last value (continuous time). `spk` and `out` carry the class's step onward.
    NStepT = 26, "nstept" { class: Class };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn any_instr() -> impl Strategy<Value = Instr> {
        let buf = proptest::sample::select(Buf::ALL.to_vec());
        let mode = prop_oneof![
            Just(ScoreMode::Targets),
            Just(ScoreMode::Direct),
            Just(ScoreMode::TargetsL2)
        ];
        let mode2 = mode.clone();
        prop_oneof![
            Just(Instr::Nop {}),
            any::<u16>().prop_map(|r| Instr::Recv { route: RouteId(r) }),
            any::<u16>().prop_map(|r| Instr::Send { route: RouteId(r) }),
            buf.clone().prop_map(|src| Instr::Mvm { src }),
            buf.clone().prop_map(|src| Instr::MvmT { src }),
            any::<u8>().prop_map(|c| Instr::Proj { class: Class(c) }),
            Just(Instr::AddPs {}),
            Just(Instr::Act {}),
            any::<u8>().prop_map(|c| Instr::TStore { class: Class(c) }),
            any::<u8>().prop_map(|c| Instr::TInStore { class: Class(c) }),
            mode2.prop_map(|mode| Instr::Score { mode }),
            Just(Instr::AddSc {}),
            Just(Instr::Smax {}),
            proptest::sample::select(vec![
                DeltaMode::Targets,
                DeltaMode::Direct,
                DeltaMode::L2,
                DeltaMode::Hebbian
            ])
            .prop_map(|mode| Instr::Delta { mode }),
            prop_oneof![Just(Pre::Data), Just(Pre::Target)].prop_map(|pre| Instr::Upd { pre }),
            any::<u8>().prop_map(|c| Instr::DeltaT { class: Class(c) }),
            any::<u8>().prop_map(|c| Instr::UpdT { class: Class(c) }),
            any::<u8>().prop_map(|c| Instr::UpdP { class: Class(c) }),
            (any::<u16>(), buf).prop_map(|(c, buf)| Instr::LdRem {
                core: CoreId(c),
                buf
            }),
            Just(Instr::Sync {}),
            Just(Instr::Halt {}),
            prop_oneof![Just(Pre::Data), Just(Pre::Target)].prop_map(|pre| Instr::GAcc { pre }),
            Just(Instr::GApply {}),
            Just(Instr::Gram {}),
            Just(Instr::AddG {}),
            Just(Instr::NStep {}),
            any::<u8>().prop_map(|c| Instr::NStepT { class: Class(c) }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(instr in any_instr()) {
            let word = instr.encode().into_inner()[0];
            prop_assert_eq!(Instr::decode(word), Ok(instr));
        }

        #[test]
        fn decode_never_panics_and_reencodes_exactly(word: u32) {
            if let Ok(instr) = Instr::decode(word) {
                prop_assert_eq!(instr.encode().into_inner()[0], word);
            }
        }
    }

    #[test]
    fn every_opcode_is_distinct_and_fits() {
        let mut seen = std::collections::HashSet::new();
        for op in Opcode::ALL {
            assert!((*op as u32) < (1 << OPCODE_BITS));
            assert!(seen.insert(*op as u32), "duplicate opcode {}", *op as u32);
        }
    }

    #[test]
    fn disassembly_reads_like_the_docs() {
        assert_eq!(Instr::Recv { route: RouteId(3) }.to_string(), "recv route3");
        assert_eq!(Instr::Mvm { src: Buf::In }.to_string(), "mvm in");
        assert_eq!(
            Instr::LdRem {
                core: CoreId(2),
                buf: Buf::Out
            }
            .to_string(),
            "ldrem core2, out"
        );
        assert_eq!(Instr::Halt {}.to_string(), "halt");
    }

    #[test]
    fn decoder_rejects_bad_words() {
        assert!(matches!(
            Instr::decode(31),
            Err(DecodeError::UnknownOpcode { opcode: 31, .. })
        ));
        // `mvm` with buffer number 15.
        let word = 3 | (15 << OPCODE_BITS);
        assert!(matches!(
            Instr::decode(word),
            Err(DecodeError::BadOperand { operand: "src", .. })
        ));
        // `halt` with a stray bit.
        assert!(matches!(
            Instr::decode(20 | 1 << 30),
            Err(DecodeError::StrayBits { .. })
        ));
    }
}
