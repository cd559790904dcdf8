//! Labelled data sets for training and evaluating chip programs.
//!
//! # The [`Dataset`] type
//!
//! A [`Dataset`] is a fixed train/test split ([`Split`]) of labelled images.
//! Pixels stay raw unsigned bytes in `0..=max_value`, exactly as stored in the
//! source file: the input format of a chip (fixed-point width, scaling, sign)
//! is decided by the compiler's chip program, not here, so this module never
//! normalises or converts to floats. `max_value` tells the program what full
//! scale is (16 for digits, 255 for IDX sets).
//!
//! # Data sets and the digits split
//!
//! * `digits`: the 8x8 optical digits set (UCI "Optical Recognition of
//!   Handwritten Digits", Alpaydin & Kaynak 1998, CC BY 4.0; see
//!   `emulator/data/NOTICE.md`), 1797 samples of 64 pixels in `0..=16`,
//!   embedded in the binary. It is split into 1437 training and 360 test
//!   samples by a fixed seeded shuffle, which is the documented split of the
//!   project and must never change:
//!   1. a splitmix64 generator (Vigna's constants) seeded with
//!      `0x5EED_D161_7500_0001`;
//!   2. a Fisher-Yates shuffle of the row indices `0..1797` (in file order):
//!      for `i` from 1796 down to 1, `j = (x * (i + 1)) >> 64` with `x` the
//!      next generator output (as 128-bit product), then swap `i` and `j`;
//!   3. the first 1437 shuffled indices are the training set, in shuffled
//!      order; the remaining 360 the test set, in shuffled order.
//!
//!   The generator is written here by hand, not taken from a crate, so that no
//!   dependency update can change the split.
//! * IDX sets (the MNIST file format): four files in one directory,
//!   `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//!   `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each either gzipped
//!   with a `.gz` suffix (preferred when both exist) or raw. The `train-*`
//!   files are the training split and the `t10k-*` files the test split, in
//!   file order. Fashion-MNIST (Zalando Research, MIT) is such a set with 10
//!   classes; for any other IDX directory the number of classes is the largest
//!   label plus one (at least 2).
//!
//! # The `--data` forms ([`DataSource`])
//!
//! * `digits`: the embedded digits set;
//! * `fashion-mnist`: Fashion-MNIST from [`FASHION_MNIST_DEFAULT_DIR`], where
//!   Debian's `dataset-fashion-mnist` package installs it;
//! * `fashion-mnist:DIR`: Fashion-MNIST from `DIR`;
//! * `idx:DIR`: any IDX set in `DIR`.
//!
//! # Errors
//!
//! Loading never panics on bad files: each failure is a [`DataError`] naming
//! the file and what is wrong with it (missing, unreadable, not gzip or corrupt
//! gzip, wrong magic number, truncated or with trailing bytes, image and label
//! counts that differ, train and test images of different sizes, no samples,
//! a label out of range, a malformed CSV line). A header that claims absurd
//! dimensions is checked against the actual file length before anything is
//! allocated for it.

mod digits;
mod idx;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use digits::digits;
pub use idx::{parse_idx_images, parse_idx_labels};

/// Where Debian's `dataset-fashion-mnist` package installs the IDX files.
pub const FASHION_MNIST_DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A labelled data set with a fixed train/test split. Pixels are raw unsigned
/// bytes in `0..=max_value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// `"digits"`, `"fashion-mnist"`, or `"idx:<dir>"`.
    pub name: String,
    /// Pixels per sample (64 for digits, 784 for Fashion-MNIST).
    pub input_len: usize,
    /// Number of classes; every label is below it.
    pub classes: usize,
    /// Largest possible pixel value (16 for digits, 255 for IDX sets).
    pub max_value: u8,
    /// The training samples.
    pub train: Split,
    /// The held-out test samples.
    pub test: Split,
}

/// Samples stored contiguously: sample `i` is
/// `images[i * input_len..(i + 1) * input_len]` with label `labels[i]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Split {
    /// `len() * input_len` pixels, sample after sample.
    pub images: Vec<u8>,
    /// One class per sample.
    pub labels: Vec<u8>,
    /// Pixels per sample.
    pub input_len: usize,
}

impl Split {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The `i`-th sample's pixels. Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len(),
            "sample {i} out of range (len {})",
            self.len()
        );
        &self.images[i * self.input_len..(i + 1) * self.input_len]
    }

    /// The `i`-th sample's class. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> usize {
        usize::from(self.labels[i])
    }

    /// A copy of the first `n` samples (all of them if `n >= len()`).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            images: self.images[..n * self.input_len].to_vec(),
            labels: self.labels[..n].to_vec(),
            input_len: self.input_len,
        }
    }

    /// Keeps the first `n` samples (no-op if `n >= len()`).
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.images.truncate(n * self.input_len);
        }
    }
}

// Printing megabytes of pixels in a failed assertion helps nobody.
impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split")
            .field("len", &self.len())
            .field("input_len", &self.input_len)
            .finish_non_exhaustive()
    }
}

/// Where a data set comes from; parsed from the command-line `--data` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// The embedded 8x8 digits set.
    Digits,
    /// Fashion-MNIST IDX files in this directory.
    FashionMnist(PathBuf),
    /// Any IDX set in this directory.
    Idx(PathBuf),
}

const ACCEPTED_FORMS: &str = "`digits`, `fashion-mnist` (from /usr/share/datasets/fashion-mnist), \
                              `fashion-mnist:DIR` or `idx:DIR`";

impl FromStr for DataSource {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        let unknown = || DataError::UnknownSource {
            given: s.to_string(),
        };
        match s {
            "digits" => return Ok(DataSource::Digits),
            "fashion-mnist" => {
                return Ok(DataSource::FashionMnist(FASHION_MNIST_DEFAULT_DIR.into()))
            }
            _ => {}
        }
        let (kind, dir) = s.split_once(':').ok_or_else(unknown)?;
        if dir.is_empty() {
            return Err(unknown());
        }
        match kind {
            "fashion-mnist" => Ok(DataSource::FashionMnist(dir.into())),
            "idx" => Ok(DataSource::Idx(dir.into())),
            _ => Err(unknown()),
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Digits => f.write_str("digits"),
            DataSource::FashionMnist(dir) if dir.as_os_str() == FASHION_MNIST_DEFAULT_DIR => {
                f.write_str("fashion-mnist")
            }
            DataSource::FashionMnist(dir) => write!(f, "fashion-mnist:{}", dir.display()),
            DataSource::Idx(dir) => write!(f, "idx:{}", dir.display()),
        }
    }
}

/// Why a data set could not be loaded. `what` is the file (or source) the
/// message is about.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("unknown data source `{given}`: expected {ACCEPTED_FORMS}")]
    UnknownSource { given: String },

    #[error("{what}: file not found (tried {}){hint}", .tried.join(", "))]
    Missing {
        what: String,
        tried: Vec<String>,
        /// Empty, or a sentence starting with "; " telling how to get the file.
        hint: String,
    },

    #[error("{what}: cannot read: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },

    #[error("{what}: not a gzip file (a `.gz` file must start with bytes 1f 8b)")]
    NotGzip { what: String },

    #[error("{what}: corrupt gzip data: {source}")]
    CorruptGzip {
        what: String,
        source: std::io::Error,
    },

    #[error("{what}: wrong magic number: expected {expected:#010x} ({kind}), found {found:#010x}")]
    BadMagic {
        what: String,
        expected: u32,
        found: u32,
        kind: &'static str,
    },

    #[error("{what}: truncated: the IDX header and data need {expected} bytes but the file has only {actual}")]
    Truncated {
        what: String,
        expected: u128,
        actual: usize,
    },

    #[error("{what}: {} unexpected trailing byte(s): the IDX header and data need {expected} bytes but the file has {actual}", .actual - .expected)]
    TrailingBytes {
        what: String,
        expected: usize,
        actual: usize,
    },

    #[error("{images} has {image_count} images but {labels} has {label_count} labels")]
    CountMismatch {
        images: String,
        image_count: usize,
        labels: String,
        label_count: usize,
    },

    #[error(
        "train images ({train}) have {train_len} pixels but test images ({test}) have {test_len}"
    )]
    SizeMismatch {
        train: String,
        train_len: usize,
        test: String,
        test_len: usize,
    },

    #[error("{what}: {detail}")]
    Empty { what: String, detail: String },

    #[error("{what}: label {label} of sample {index} is not below the {classes} classes")]
    LabelOutOfRange {
        what: String,
        index: usize,
        label: u8,
        classes: usize,
    },

    #[error("{what}: line {line}: {message}")]
    Csv {
        what: String,
        line: usize,
        message: String,
    },
}

/// Loads the data set `source` names.
///
/// # Errors
///
/// Any [`DataError`] but `UnknownSource`, naming the file at fault.
pub fn load(source: &DataSource) -> Result<Dataset, DataError> {
    match source {
        DataSource::Digits => Ok(digits()),
        DataSource::FashionMnist(dir) => idx::load_dir(dir, "fashion-mnist".to_string(), Some(10)),
        DataSource::Idx(dir) => idx::load_dir(dir, format!("idx:{}", dir.display()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_round_trips_through_display() {
        let forms = [
            ("digits", DataSource::Digits),
            (
                "fashion-mnist",
                DataSource::FashionMnist(FASHION_MNIST_DEFAULT_DIR.into()),
            ),
            (
                "fashion-mnist:/data/fm",
                DataSource::FashionMnist("/data/fm".into()),
            ),
            ("idx:rel/dir", DataSource::Idx("rel/dir".into())),
            // A colon inside the directory belongs to the directory.
            ("idx:/a:b", DataSource::Idx("/a:b".into())),
        ];
        for (text, source) in forms {
            let parsed: DataSource = text.parse().unwrap();
            assert_eq!(parsed, source, "parsing {text:?}");
            assert_eq!(source.to_string(), text);
            assert_eq!(source.to_string().parse::<DataSource>().unwrap(), source);
        }
        // The default directory spelled out parses to the same source.
        let explicit: DataSource = format!("fashion-mnist:{FASHION_MNIST_DEFAULT_DIR}")
            .parse()
            .unwrap();
        assert_eq!(explicit.to_string(), "fashion-mnist");
    }

    #[test]
    fn unknown_source_lists_accepted_forms() {
        for bad in [
            "mnist",
            "",
            "idx:",
            "fashion-mnist:",
            "digits:x",
            "Digits",
            "csv:a",
        ] {
            let err = bad.parse::<DataSource>().unwrap_err();
            assert!(matches!(&err, DataError::UnknownSource { given } if given == bad));
            let msg = err.to_string();
            for form in ["digits", "fashion-mnist", "fashion-mnist:DIR", "idx:DIR"] {
                assert!(msg.contains(&format!("`{form}`")), "{msg}");
            }
        }
    }

    #[test]
    fn split_accessors_and_truncate() {
        let mut split = Split {
            images: (0..12).collect(),
            labels: vec![3, 1, 4],
            input_len: 4,
        };
        assert_eq!(split.len(), 3);
        assert!(!split.is_empty());
        assert_eq!(split.image(1), &[4, 5, 6, 7]);
        assert_eq!(split.label(2), 4);
        split.truncate(5);
        assert_eq!(split.len(), 3);
        split.truncate(2);
        assert_eq!(split.len(), 2);
        assert_eq!(split.images, (0..8).collect::<Vec<u8>>());
        assert_eq!(split.image(1), &[4, 5, 6, 7]);
        split.truncate(0);
        assert!(split.is_empty());
        assert!(split.images.is_empty());
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn image_out_of_range_panics() {
        let split = Split {
            images: vec![0; 4],
            labels: vec![0, 0],
            input_len: 2,
        };
        split.image(2);
    }
}
