//! The embedded 8x8 digits set and its fixed train/test split (documented in
//! the parent module).

use std::io::Read;

use super::{DataError, Dataset, Split};

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");
const WHAT: &str = "embedded digits.csv.gz";

const SAMPLES: usize = 1797;
const TRAIN: usize = 1437;
const INPUT_LEN: usize = 64;
const MAX_VALUE: u8 = 16;
const CLASSES: usize = 10;
const SPLIT_SEED: u64 = 0x5EED_D161_7500_0001;

/// The embedded digits set: 1437 training and 360 test samples of 64 pixels
/// in `0..=16`, 10 classes.
pub fn digits() -> Dataset {
    let (images, labels) = decode_embedded()
        .expect("the embedded digits.csv.gz is valid (checked by the data module's tests)");
    assert_eq!(
        labels.len(),
        SAMPLES,
        "embedded digits set has {SAMPLES} rows"
    );
    let order = split_order(SAMPLES);
    let (train, test) = order.split_at(TRAIN);
    Dataset {
        name: "digits".to_string(),
        input_len: INPUT_LEN,
        classes: CLASSES,
        max_value: MAX_VALUE,
        train: gather(&images, &labels, train),
        test: gather(&images, &labels, test),
    }
}

fn decode_embedded() -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|source| DataError::CorruptGzip {
            what: WHAT.to_string(),
            source,
        })?;
    parse_csv(&text, WHAT)
}

/// Parses rows of 64 pixels in `0..=16` and a label in `0..=9`; blank lines
/// are skipped. Returns the pixels (row after row) and the labels.
fn parse_csv(text: &str, what: &str) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let mut images = Vec::with_capacity(SAMPLES * INPUT_LEN);
    let mut labels = Vec::with_capacity(SAMPLES);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| DataError::Csv {
            what: what.to_string(),
            line: n + 1,
            message,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != INPUT_LEN + 1 {
            return Err(bad(format!(
                "expected {} comma-separated values (64 pixels and a label), found {}",
                INPUT_LEN + 1,
                fields.len()
            )));
        }
        for (col, field) in fields.iter().enumerate() {
            let (kind, max) = if col < INPUT_LEN {
                ("pixel", MAX_VALUE)
            } else {
                ("label", (CLASSES - 1) as u8)
            };
            let value = field
                .parse::<u8>()
                .ok()
                .filter(|&v| v <= max)
                .ok_or_else(|| {
                    bad(format!(
                        "{kind} {field:?} (column {}) is not an integer in 0..={max}",
                        col + 1
                    ))
                })?;
            if col < INPUT_LEN {
                images.push(value);
            } else {
                labels.push(value);
            }
        }
    }
    Ok((images, labels))
}

/// Vigna's splitmix64: tiny, well-mixed, and fixed here forever.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` by multiply-shift (bias below 2^-50 for our sizes).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}

/// The seeded Fisher-Yates shuffle of `0..n`; its first 1437 entries are the
/// training rows.
fn split_order(n: usize) -> Vec<usize> {
    let mut rng = SplitMix64(SPLIT_SEED);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        order.swap(i, j);
    }
    order
}

fn gather(images: &[u8], labels: &[u8], rows: &[usize]) -> Split {
    Split {
        images: rows
            .iter()
            .flat_map(|&r| &images[r * INPUT_LEN..(r + 1) * INPUT_LEN])
            .copied()
            .collect(),
        labels: rows.iter().map(|&r| labels[r]).collect(),
        input_len: INPUT_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_csv_is_valid() {
        let (images, labels) = decode_embedded().unwrap();
        assert_eq!(labels.len(), SAMPLES);
        assert_eq!(images.len(), SAMPLES * INPUT_LEN);
    }

    #[test]
    fn digits_shape_and_value_ranges() {
        let d = digits();
        assert_eq!(d.name, "digits");
        assert_eq!((d.input_len, d.classes, d.max_value), (64, 10, 16));
        assert_eq!(d.train.len(), 1437);
        assert_eq!(d.test.len(), 360);
        assert_eq!(d.train.len() + d.test.len(), 1797);
        for split in [&d.train, &d.test] {
            assert_eq!(split.input_len, 64);
            assert_eq!(split.images.len(), split.len() * 64);
            assert!(split.images.iter().all(|&p| p <= 16));
            assert!(split.labels.iter().all(|&l| l < 10));
            // Digits use the full range, so a scaling bug would show here.
            assert_eq!(split.images.iter().max(), Some(&16));
            let mut seen = [false; 10];
            for i in 0..split.len() {
                seen[split.label(i)] = true;
            }
            assert!(seen.iter().all(|&s| s), "every class in every split");
        }
    }

    #[test]
    fn digits_split_is_deterministic() {
        assert!(digits() == digits());
    }

    #[test]
    fn digits_split_is_a_partition_of_the_rows() {
        // Multiset of whole rows (pixels + label): train + test must equal
        // the CSV exactly, so no row is lost, duplicated or altered.
        let (images, labels) = decode_embedded().unwrap();
        let row = |pixels: &[u8], label: u8| {
            let mut r = pixels.to_vec();
            r.push(label);
            r
        };
        let mut all: Vec<Vec<u8>> = (0..SAMPLES)
            .map(|i| row(&images[i * 64..(i + 1) * 64], labels[i]))
            .collect();
        let d = digits();
        let mut split: Vec<Vec<u8>> = [&d.train, &d.test]
            .iter()
            .flat_map(|s| (0..s.len()).map(|i| row(s.image(i), s.labels[i])))
            .collect();
        all.sort();
        split.sort();
        assert!(all == split, "train + test is not the multiset of CSV rows");
        // And the index sets are disjoint and complete.
        let mut order = split_order(SAMPLES);
        order.sort_unstable();
        assert_eq!(order, (0..SAMPLES).collect::<Vec<_>>());
    }

    #[test]
    fn split_is_shuffled_not_file_order() {
        let order = split_order(SAMPLES);
        let in_place = order.iter().enumerate().filter(|(i, &r)| *i == r).count();
        assert!(in_place < 10, "{in_place} rows did not move");
        // Test rows come from all over the file, not just its end.
        assert!(order[TRAIN..].iter().any(|&r| r < SAMPLES / 4));
    }

    #[test]
    fn splitmix64_matches_reference_outputs() {
        // Reference values of splitmix64 seeded with 1234567 (Vigna's C code).
        let mut rng = SplitMix64(1234567);
        let got: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
                4593380528125082431,
                16408922859458223821,
            ]
        );
    }

    #[test]
    fn split_order_is_pinned() {
        // The documented split must never change. These values were checked
        // against an independent Python implementation of the documented
        // procedure.
        let order = split_order(SAMPLES);
        assert_eq!(&order[..8], [487, 1578, 924, 1228, 907, 912, 1375, 381]);
        assert_eq!(
            &order[TRAIN..TRAIN + 8],
            [446, 374, 764, 84, 1077, 773, 794, 163]
        );
        assert_eq!(&order[SAMPLES - 4..], [882, 666, 1539, 1789]);
    }

    #[test]
    fn malformed_csv_lines_are_reported_with_line_numbers() {
        let good = format!("{}0", "1,".repeat(64));
        let cases = [
            (format!("{good}\n1,2,3\n"), 2, "65 comma-separated"),
            (
                format!("{good}\n\n{}", good.replace("1,", "17,")),
                3,
                "pixel \"17\"",
            ),
            (format!("{}10", "0,".repeat(64)), 1, "label \"10\""),
            (format!("{}x", "0,".repeat(64)), 1, "label \"x\""),
            (format!("-1,{}0", "0,".repeat(63)), 1, "pixel \"-1\""),
        ];
        for (text, line, needle) in cases {
            let err = parse_csv(&text, "test.csv").unwrap_err();
            assert!(
                matches!(err, DataError::Csv { line: l, .. } if l == line),
                "{err}"
            );
            let msg = err.to_string();
            assert!(msg.contains("test.csv") && msg.contains(needle), "{msg}");
        }
        let (images, labels) = parse_csv(&format!("{good}\r\n{good}\n"), "ok").unwrap();
        assert_eq!((images.len(), labels), (128, vec![0, 0]));
    }
}
