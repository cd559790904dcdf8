//! The `quantize` pass: draws the initial float weights from the seed, chooses a fixed-point
//! format per layer and converts, reporting the quantization error.
//!
//! Formats (documented in docs/compiler.md):
//! - input: `s{a}.{a-1}`, pixels scaled to [0, 1);
//! - hidden outputs: `s{a}.{a-3}` (range [-4, 4)); output-layer logits: `s{a}.{a-4}` ([-8, 8));
//! - weights: the most fractional bits that still hold `HEADROOM` times the initial bound, so
//!   learning can grow weights before they saturate;
//! - projection: `s{w}.{w-2}` ([-2, 2)); a `fixed_random` one is the LFSR sequence the chip
//!   regenerates (`sigchip_isa::rng::fixed_projection_row`), truncated to the format.

use crate::validate::{Node, ValidNetwork};
use serde::Serialize;
use sigchip_isa::rng::{fixed_projection_row, SplitMix64};
use sigchip_isa::{ChipDescription, ProjectionMode, QFormat};

/// How many times the initial weight bound the weight format can hold.
pub const HEADROOM: f64 = 4.0;

/// One layer's quantized parameters.
#[derive(Clone, Debug)]
pub struct QuantLayer {
    pub inputs: u32,
    pub width: u32,
    pub bias: bool,
    pub weight_format: QFormat,
    pub in_format: QFormat,
    pub out_format: QFormat,
    /// `(inputs + bias) x width`, row-major; the bias is the last row.
    pub weights: Vec<i32>,
    /// Layer 1 only: `(classes + 1) x width`, the last row the projection's bias.
    pub projection: Option<(QFormat, Vec<i32>)>,
}

/// The quantization error of one layer.
#[derive(Clone, Debug, Serialize)]
pub struct QuantError {
    pub layer: String,
    pub format: String,
    pub max_abs_error: f64,
    pub rms_error: f64,
    /// Largest error allowed by rounding: half a least significant bit.
    pub half_lsb: f64,
    pub saturated: u64,
}

/// The whole quantized network.
#[derive(Clone, Debug)]
pub struct Quantized {
    pub input_format: QFormat,
    pub layers: Vec<QuantLayer>,
    pub errors: Vec<QuantError>,
}

/// Chooses the weight format for weights drawn from `U(-bound, bound)`.
pub fn weight_format(bits: u8, bound: f64) -> QFormat {
    let max = ((1i64 << (bits - 1)) - 1) as f64;
    let frac = (max / (HEADROOM * bound)).log2().floor();
    QFormat::new(bits, frac.clamp(-8.0, 30.0) as i8)
}

/// The initial weights of one layer, in floating point, before quantization.
#[derive(Clone, Debug)]
pub struct FloatLayer {
    pub inputs: u32,
    pub width: u32,
    pub bias: bool,
    /// Bound of the uniform initialization, `1/sqrt(inputs)`.
    pub bound: f64,
    /// `(inputs + bias) x width`, row-major; the bias is the last row.
    pub weights: Vec<f64>,
    /// Layer 1 only: the target projection, `(classes + 1) x width`, last row its bias.
    pub projection: Option<Vec<f64>>,
}

/// The network's initial weights in floating point, drawn from its seed. The chip's weights
/// are these, quantized; software references start from the same values.
pub fn initial_weights(net: &ValidNetwork) -> Vec<FloatLayer> {
    let desc = net.desc();
    let mut rng = SplitMix64::new(desc.seed ^ 0x51C0_1417);
    let mut layers = Vec::new();
    for (i, (node, inputs)) in net.layers().zip(net.layer_inputs()).enumerate() {
        let width = node.width();
        // PyTorch's default initialization for a linear layer: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        let bound = 1.0 / (inputs as f64).sqrt();
        let rows = inputs + desc.bias as u32;
        let weights = (0..rows as usize * width as usize)
            .map(|_| rng.uniform(bound))
            .collect();
        let projection = (i == 0 && desc.projection != ProjectionMode::ToInput).then(|| match desc
            .projection
        {
            // The chip regenerates a fixed projection from the seed with an LFSR; in float it
            // is the same sequence at 16-bit resolution.
            ProjectionMode::FixedRandom => (0..desc.classes + 1)
                .flat_map(|r| fixed_projection_row(desc.seed, r, 0, width, 16))
                .map(|v| v as f64 / (1 << 14) as f64)
                .collect(),
            ProjectionMode::Learned | ProjectionMode::ToInput => (0..(desc.classes + 1) as usize
                * width as usize)
                .map(|_| rng.uniform(1.0))
                .collect(),
        });
        layers.push(FloatLayer {
            inputs,
            width,
            bias: desc.bias,
            bound,
            weights,
            projection,
        });
    }
    layers
}

/// The `quantize` pass.
pub fn quantize(net: &ValidNetwork, chip: &ChipDescription) -> Quantized {
    let a = chip.bits.activation;
    let input_format = QFormat::new(a, a as i8 - 1);
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    let mut in_format = input_format;
    for (i, (node, float)) in net.layers().zip(initial_weights(net)).enumerate() {
        let voltage = matches!(
            net.desc().neuron,
            crate::network::NeuronDesc::Lif(crate::network::LifDesc {
                learning: sigchip_isa::SpikeLearning::Voltage,
                ..
            })
        );
        let out_format = match node {
            // A membrane potential as a learning signal swings well beyond an activation.
            _ if voltage => QFormat::new(a, a as i8 - 5),
            Node::Output { .. } => QFormat::new(a, a as i8 - 4),
            _ => QFormat::new(a, a as i8 - 3),
        };
        let wf = weight_format(chip.bits.weight, float.bound);
        let name = format!("layer{}", i + 1);
        let (weights, err) = convert(&name, wf, &float.weights);
        errors.push(err);
        let projection = float.projection.as_ref().map(|p| {
            let pf = QFormat::new(chip.bits.weight, chip.bits.weight as i8 - 2);
            let label = format!("{name} projection");
            let (values, err) = match net.desc().projection {
                // Exactly what the chip's LFSR regenerates: the 16-bit values truncated.
                ProjectionMode::FixedRandom => {
                    let values: Vec<i32> = (0..net.desc().classes + 1)
                        .flat_map(|r| {
                            fixed_projection_row(net.desc().seed, r, 0, float.width, pf.bits)
                        })
                        .collect();
                    let err = error_of(&label, pf, p, &values, 0);
                    (values, err)
                }
                ProjectionMode::Learned | ProjectionMode::ToInput => convert(&label, pf, p),
            };
            errors.push(err);
            (pf, values)
        });
        layers.push(QuantLayer {
            inputs: float.inputs,
            width: float.width,
            bias: float.bias,
            weight_format: wf,
            in_format,
            out_format,
            weights,
            projection,
        });
        in_format = out_format;
    }
    Quantized {
        input_format,
        layers,
        errors,
    }
}

fn convert(name: &str, format: QFormat, float: &[f64]) -> (Vec<i32>, QuantError) {
    let mut saturated = 0;
    let values: Vec<i32> = float
        .iter()
        .map(|&x| {
            let (v, sat) = format.quantize(x);
            saturated += sat as u64;
            v
        })
        .collect();
    let err = error_of(name, format, float, &values, saturated);
    (values, err)
}

/// The error of `values` (raw, in `format`) against `float`.
fn error_of(
    name: &str,
    format: QFormat,
    float: &[f64],
    values: &[i32],
    saturated: u64,
) -> QuantError {
    let mut max_abs: f64 = 0.0;
    let mut sum_sq = 0.0;
    for (&x, &v) in float.iter().zip(values) {
        let e = (format.to_f64(v) - x).abs();
        max_abs = max_abs.max(e);
        sum_sq += e * e;
    }
    QuantError {
        layer: name.into(),
        format: format.to_string(),
        max_abs_error: max_abs,
        rms_error: (sum_sq / float.len().max(1) as f64).sqrt(),
        half_lsb: format.lsb() / 2.0,
        saturated,
    }
}
