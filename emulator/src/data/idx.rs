//! IDX files (the MNIST format), raw or gzipped, and IDX data-set directories.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use super::{DataError, Dataset, Split};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_HEADER: usize = 16;
const LABELS_HEADER: usize = 8;
const FASHION_MNIST_HINT: &str =
    "; Fashion-MNIST is installed by `apt-get install -y dataset-fashion-mnist`";

/// Parses an IDX images file (magic `0x00000803`: unsigned bytes, 3
/// dimensions). Returns the image count, the pixels per image (rows * cols)
/// and the pixels, image after image. `what` names the file in errors.
///
/// # Errors
///
/// [`DataError::BadMagic`], or [`DataError::Truncated`] /
/// [`DataError::TrailingBytes`] when the length disagrees with the header
/// (checked before allocating).
pub fn parse_idx_images(bytes: &[u8], what: &str) -> Result<(usize, usize, Vec<u8>), DataError> {
    let (count, input_len) = images_header(bytes, what)?;
    Ok((count, input_len, bytes[IMAGES_HEADER..].to_vec()))
}

/// Parses an IDX labels file (magic `0x00000801`: unsigned bytes, 1
/// dimension). `what` names the file in errors.
///
/// # Errors
///
/// [`DataError::BadMagic`], or [`DataError::Truncated`] /
/// [`DataError::TrailingBytes`] when the length disagrees with the header
/// (checked before allocating).
pub fn parse_idx_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>, DataError> {
    labels_header(bytes, what)?;
    Ok(bytes[LABELS_HEADER..].to_vec())
}

/// Checks an images file completely; on success the pixels are exactly
/// `bytes[IMAGES_HEADER..]`.
fn images_header(bytes: &[u8], what: &str) -> Result<(usize, usize), DataError> {
    check_magic(
        bytes,
        IMAGES_MAGIC,
        IMAGES_HEADER,
        "unsigned-byte images",
        what,
    )?;
    let [count, rows, cols] = [be_u32(bytes, 4), be_u32(bytes, 8), be_u32(bytes, 12)];
    // At most 2^96: u128 cannot overflow, and comparing with the real length
    // first means a lying header never causes an allocation.
    let body = u128::from(count) * u128::from(rows) * u128::from(cols);
    check_len(bytes.len(), IMAGES_HEADER as u128 + body, what)?;
    let input_len =
        usize::try_from(u64::from(rows) * u64::from(cols)).map_err(|_| DataError::Empty {
            what: what.to_string(),
            detail: format!("{rows}x{cols} images are too large for this platform"),
        })?;
    // The body fits in memory (it is in memory), so the count does too.
    Ok((count as usize, input_len))
}

/// Checks a labels file completely; on success the labels are exactly
/// `bytes[LABELS_HEADER..]`.
fn labels_header(bytes: &[u8], what: &str) -> Result<usize, DataError> {
    check_magic(
        bytes,
        LABELS_MAGIC,
        LABELS_HEADER,
        "unsigned-byte labels",
        what,
    )?;
    let count = be_u32(bytes, 4);
    check_len(bytes.len(), LABELS_HEADER as u128 + u128::from(count), what)?;
    Ok(count as usize)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks the magic number and that the whole header is present.
fn check_magic(
    bytes: &[u8],
    expected: u32,
    header: usize,
    kind: &'static str,
    what: &str,
) -> Result<(), DataError> {
    let truncated = || DataError::Truncated {
        what: what.to_string(),
        expected: header as u128,
        actual: bytes.len(),
    };
    if bytes.len() < 4 {
        return Err(truncated());
    }
    let found = be_u32(bytes, 0);
    if found != expected {
        return Err(DataError::BadMagic {
            what: what.to_string(),
            expected,
            found,
            kind,
        });
    }
    if bytes.len() < header {
        return Err(truncated());
    }
    Ok(())
}

fn check_len(actual: usize, expected: u128, what: &str) -> Result<(), DataError> {
    match expected.cmp(&(actual as u128)) {
        std::cmp::Ordering::Greater => Err(DataError::Truncated {
            what: what.to_string(),
            expected,
            actual,
        }),
        std::cmp::Ordering::Less => Err(DataError::TrailingBytes {
            what: what.to_string(),
            // Smaller than `actual`, so it fits.
            expected: expected as usize,
            actual,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Loads the four IDX files of `dir`. With `fixed_classes`, every label must
/// be below it; without, the classes are the largest label + 1 (at least 2).
pub(super) fn load_dir(
    dir: &Path,
    name: String,
    fixed_classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let mut hint = String::new();
    if !dir.is_dir() {
        hint = format!("; the directory {} does not exist", dir.display());
    }
    if fixed_classes.is_some() {
        hint.push_str(FASHION_MNIST_HINT);
    }
    let (train, train_images, train_labels) = load_split(dir, "train", &hint)?;
    let (test, test_images, test_labels) = load_split(dir, "t10k", &hint)?;
    if train.input_len != test.input_len {
        return Err(DataError::SizeMismatch {
            train: train_images,
            train_len: train.input_len,
            test: test_images,
            test_len: test.input_len,
        });
    }
    let classes = match fixed_classes {
        Some(classes) => {
            for (split, what) in [(&train, train_labels), (&test, test_labels)] {
                if let Some(index) = split.labels.iter().position(|&l| usize::from(l) >= classes) {
                    return Err(DataError::LabelOutOfRange {
                        what,
                        index,
                        label: split.labels[index],
                        classes,
                    });
                }
            }
            classes
        }
        None => {
            let max = train.labels.iter().chain(&test.labels).max().copied();
            (usize::from(max.unwrap_or(0)) + 1).max(2)
        }
    };
    Ok(Dataset {
        name,
        input_len: train.input_len,
        classes,
        max_value: u8::MAX,
        train,
        test,
    })
}

/// Loads `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte`;
/// returns the split and the two file paths for later messages.
fn load_split(dir: &Path, prefix: &str, hint: &str) -> Result<(Split, String, String), DataError> {
    let (images_what, mut images) = read_file(dir, &format!("{prefix}-images-idx3-ubyte"), hint)?;
    let (count, input_len) = images_header(&images, &images_what)?;
    images.drain(..IMAGES_HEADER);
    if count == 0 {
        return Err(DataError::Empty {
            what: images_what,
            detail: "no samples (the header says 0 images)".to_string(),
        });
    }
    if input_len == 0 {
        return Err(DataError::Empty {
            what: images_what,
            detail: "images have 0 pixels (the header says 0 rows or 0 columns)".to_string(),
        });
    }
    let (labels_what, mut labels) = read_file(dir, &format!("{prefix}-labels-idx1-ubyte"), hint)?;
    let label_count = labels_header(&labels, &labels_what)?;
    labels.drain(..LABELS_HEADER);
    if label_count != count {
        return Err(DataError::CountMismatch {
            images: images_what,
            image_count: count,
            labels: labels_what,
            label_count,
        });
    }
    let split = Split {
        images,
        labels,
        input_len,
    };
    Ok((split, images_what, labels_what))
}

/// Reads `dir/base.gz` (gunzipped) or else `dir/base`; returns the path read
/// and the bytes.
fn read_file(dir: &Path, base: &str, hint: &str) -> Result<(String, Vec<u8>), DataError> {
    let gz = dir.join(format!("{base}.gz"));
    let raw = dir.join(base);
    let gz_what = gz.display().to_string();
    match fs::read(&gz) {
        Ok(compressed) => {
            let bytes = gunzip(&compressed, &gz_what)?;
            return Ok((gz_what, bytes));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DataError::Io {
                what: gz_what,
                source,
            })
        }
    }
    let raw_what = raw.display().to_string();
    match fs::read(&raw) {
        Ok(bytes) => Ok((raw_what, bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DataError::Missing {
            tried: vec![gz_what, raw_what.clone()],
            what: raw_what,
            hint: hint.to_string(),
        }),
        Err(source) => Err(DataError::Io {
            what: raw_what,
            source,
        }),
    }
}

fn gunzip(compressed: &[u8], what: &str) -> Result<Vec<u8>, DataError> {
    if !compressed.starts_with(&[0x1f, 0x8b]) {
        return Err(DataError::NotGzip {
            what: what.to_string(),
        });
    }
    // The trailer's ISIZE (size mod 2^32, little-endian) avoids regrowing a
    // 47 MB buffer. A corrupt trailer must not reserve absurd amounts, so cap
    // it by deflate's maximum expansion ratio and by 256 MiB.
    let size_hint = compressed
        .last_chunk::<4>()
        .map_or(0, |b| u32::from_le_bytes(*b) as usize);
    let cap = compressed.len().saturating_mul(1032).min(1 << 28);
    let mut out = Vec::with_capacity(size_hint.min(cap));
    flate2::read::MultiGzDecoder::new(compressed)
        .read_to_end(&mut out)
        .map_err(|source| DataError::CorruptGzip {
            what: what.to_string(),
            source,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{load, DataSource};
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn encode_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [IMAGES_MAGIC, count, rows, cols] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(pixels);
        out
    }

    fn encode_labels(labels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        out.extend_from_slice(labels);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "sigchip-data-test-{}-{n}-{tag}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        fn write(&self, name: &str, bytes: &[u8]) {
            fs::write(self.0.join(name), bytes).unwrap();
        }

        fn source(&self) -> DataSource {
            DataSource::Idx(self.0.clone())
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// 3 train and 2 test images of 2x3 pixels; pixel values encode
    /// (split, sample, pixel) so any mix-up shows.
    fn sample_set() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let train: Vec<u8> = (0..18).map(|i| 100 + i).collect();
        let test: Vec<u8> = (0..12).map(|i| 200 + i).collect();
        (train, vec![4, 0, 7], test, vec![1, 2])
    }

    /// Writes the sample set: train files raw, test files gzipped.
    fn write_sample_set(dir: &TempDir) {
        let (train, train_labels, test, test_labels) = sample_set();
        dir.write("train-images-idx3-ubyte", &encode_images(3, 2, 3, &train));
        dir.write("train-labels-idx1-ubyte", &encode_labels(&train_labels));
        dir.write(
            "t10k-images-idx3-ubyte.gz",
            &gzip(&encode_images(2, 2, 3, &test)),
        );
        dir.write(
            "t10k-labels-idx1-ubyte.gz",
            &gzip(&encode_labels(&test_labels)),
        );
    }

    fn load_err(dir: &TempDir) -> DataError {
        load(&dir.source()).expect_err("loading should fail")
    }

    fn assert_mentions(err: &DataError, needles: &[&str]) {
        let msg = err.to_string();
        for needle in needles {
            assert!(msg.contains(needle), "{needle:?} not in: {msg}");
        }
    }

    #[test]
    fn idx_raw_and_gzipped_files_round_trip() {
        let dir = TempDir::new("roundtrip");
        write_sample_set(&dir);
        let d = load(&dir.source()).unwrap();
        let (train, train_labels, test, test_labels) = sample_set();
        assert_eq!(d.name, format!("idx:{}", dir.0.display()));
        assert_eq!((d.input_len, d.max_value), (6, 255));
        assert_eq!(d.classes, 8, "largest label 7 + 1");
        assert_eq!((d.train.len(), d.test.len()), (3, 2));
        assert_eq!(
            (d.train.images.clone(), d.train.labels.clone()),
            (train, train_labels)
        );
        assert_eq!(
            (d.test.images.clone(), d.test.labels.clone()),
            (test, test_labels)
        );
        assert_eq!(d.test.image(1), &[206, 207, 208, 209, 210, 211]);
        assert_eq!(d.train.label(2), 7);
    }

    #[test]
    fn gz_file_is_preferred_over_raw() {
        let dir = TempDir::new("prefer-gz");
        write_sample_set(&dir);
        // A raw test file that disagrees with the gzipped one must be ignored.
        dir.write("t10k-images-idx3-ubyte", &encode_images(2, 2, 3, &[0; 12]));
        let d = load(&dir.source()).unwrap();
        assert_eq!(d.test.images, sample_set().2);
    }

    #[test]
    fn idx_classes_are_at_least_two() {
        let dir = TempDir::new("one-class");
        dir.write("train-images-idx3-ubyte", &encode_images(1, 1, 1, &[9]));
        dir.write("train-labels-idx1-ubyte", &encode_labels(&[0]));
        dir.write("t10k-images-idx3-ubyte", &encode_images(1, 1, 1, &[8]));
        dir.write("t10k-labels-idx1-ubyte", &encode_labels(&[0]));
        assert_eq!(load(&dir.source()).unwrap().classes, 2);
    }

    #[test]
    fn truncated_images_file() {
        let dir = TempDir::new("trunc-images");
        write_sample_set(&dir);
        let full = encode_images(3, 2, 3, &sample_set().0);
        dir.write("train-images-idx3-ubyte", &full[..full.len() - 1]);
        let err = load_err(&dir);
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 34,
                    actual: 33,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_mentions(&err, &["train-images-idx3-ubyte", "34", "33"]);
    }

    #[test]
    fn truncated_labels_file() {
        let dir = TempDir::new("trunc-labels");
        write_sample_set(&dir);
        let full = gzip(&encode_labels(&[1, 2])[..9]);
        dir.write("t10k-labels-idx1-ubyte.gz", &full);
        let err = load_err(&dir);
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 10,
                    actual: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_mentions(&err, &["t10k-labels-idx1-ubyte.gz"]);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let dir = TempDir::new("trailing");
        write_sample_set(&dir);
        let mut labels = encode_labels(&sample_set().1);
        labels.push(0);
        dir.write("train-labels-idx1-ubyte", &labels);
        let err = load_err(&dir);
        assert!(
            matches!(
                err,
                DataError::TrailingBytes {
                    expected: 11,
                    actual: 12,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_mentions(&err, &["train-labels-idx1-ubyte", "1 unexpected trailing"]);
    }

    #[test]
    fn wrong_magic() {
        let dir = TempDir::new("magic");
        write_sample_set(&dir);
        // Images and labels swapped: each file is valid IDX but the wrong kind.
        dir.write(
            "train-labels-idx1-ubyte",
            &encode_images(3, 2, 3, &sample_set().0),
        );
        let err = load_err(&dir);
        assert!(
            matches!(
                err,
                DataError::BadMagic {
                    expected: LABELS_MAGIC,
                    found: IMAGES_MAGIC,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_mentions(
            &err,
            &["train-labels-idx1-ubyte", "0x00000801", "0x00000803"],
        );
    }

    #[test]
    fn image_and_label_counts_must_match() {
        let dir = TempDir::new("count");
        write_sample_set(&dir);
        dir.write(
            "t10k-labels-idx1-ubyte.gz",
            &gzip(&encode_labels(&[1, 2, 3])),
        );
        let err = load_err(&dir);
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    image_count: 2,
                    label_count: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_mentions(
            &err,
            &["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
        );
    }

    #[test]
    fn train_and_test_image_sizes_must_match() {
        let dir = TempDir::new("size");
        write_sample_set(&dir);
        dir.write(
            "t10k-images-idx3-ubyte.gz",
            &gzip(&encode_images(2, 3, 3, &[0; 18])),
        );
        let err = load_err(&dir);
        assert!(
            matches!(
                err,
                DataError::SizeMismatch {
                    train_len: 6,
                    test_len: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_mentions(
            &err,
            &["train-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"],
        );
    }

    #[test]
    fn zero_samples_and_zero_pixels_are_rejected() {
        let dir = TempDir::new("empty");
        write_sample_set(&dir);
        dir.write("train-images-idx3-ubyte", &encode_images(0, 2, 3, &[]));
        dir.write("train-labels-idx1-ubyte", &encode_labels(&[]));
        let err = load_err(&dir);
        assert!(matches!(err, DataError::Empty { .. }), "{err:?}");
        assert_mentions(&err, &["train-images-idx3-ubyte", "no samples"]);

        dir.write("train-images-idx3-ubyte", &encode_images(3, 0, 3, &[]));
        let err = load_err(&dir);
        assert_mentions(&err, &["train-images-idx3-ubyte", "0 pixels"]);
    }

    #[test]
    fn missing_directory() {
        let dir = TempDir::new("missing");
        let gone = dir.0.join("no-such-dir");
        let err = load(&DataSource::Idx(gone.clone())).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err:?}");
        assert_mentions(
            &err,
            &[
                "train-images-idx3-ubyte.gz",
                "does not exist",
                &gone.display().to_string(),
            ],
        );
        assert!(!err.to_string().contains("apt-get"));

        let err = load(&DataSource::FashionMnist(gone)).unwrap_err();
        assert_mentions(
            &err,
            &[
                "train-images-idx3-ubyte",
                "apt-get install -y dataset-fashion-mnist",
            ],
        );
    }

    #[test]
    fn missing_file_lists_names_tried() {
        let dir = TempDir::new("missing-file");
        write_sample_set(&dir);
        fs::remove_file(dir.0.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        let err = load_err(&dir);
        let gz = dir.0.join("t10k-labels-idx1-ubyte.gz");
        let raw = dir.0.join("t10k-labels-idx1-ubyte");
        let tried = vec![gz.display().to_string(), raw.display().to_string()];
        assert!(
            matches!(&err, DataError::Missing { tried: t, .. } if *t == tried),
            "{err:?}"
        );
        assert_mentions(&err, &[&tried[0], &format!("{})", tried[1])]);
    }

    #[test]
    fn bad_gzip_files() {
        let dir = TempDir::new("gzip");
        write_sample_set(&dir);
        dir.write(
            "t10k-images-idx3-ubyte.gz",
            &encode_images(2, 2, 3, &sample_set().2),
        );
        let err = load_err(&dir);
        assert!(matches!(err, DataError::NotGzip { .. }), "{err:?}");
        assert_mentions(&err, &["t10k-images-idx3-ubyte.gz", "gzip"]);

        let good = gzip(&encode_images(2, 2, 3, &sample_set().2));
        dir.write("t10k-images-idx3-ubyte.gz", &good[..good.len() / 2]);
        let err = load_err(&dir);
        assert!(matches!(err, DataError::CorruptGzip { .. }), "{err:?}");
        assert_mentions(&err, &["t10k-images-idx3-ubyte.gz", "corrupt"]);
    }

    #[test]
    fn unreadable_path_is_an_io_error() {
        let dir = TempDir::new("io");
        write_sample_set(&dir);
        // A directory where the file should be cannot be read as a file.
        fs::create_dir(dir.0.join("train-labels-idx1-ubyte.gz")).unwrap();
        let err = load_err(&dir);
        assert!(matches!(err, DataError::Io { .. }), "{err:?}");
        assert_mentions(&err, &["train-labels-idx1-ubyte.gz", "cannot read"]);
    }

    #[test]
    fn fashion_mnist_labels_must_be_below_ten() {
        let dir = TempDir::new("fashion-labels");
        write_sample_set(&dir);
        dir.write("t10k-labels-idx1-ubyte.gz", &gzip(&encode_labels(&[3, 10])));
        let err = load(&DataSource::FashionMnist(dir.0.clone())).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    classes: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_mentions(&err, &["t10k-labels-idx1-ubyte.gz", "10"]);
        // A generic IDX set simply has more classes.
        assert_eq!(load(&dir.source()).unwrap().classes, 11);
        write_sample_set(&dir);
        let d = load(&DataSource::FashionMnist(dir.0.clone())).unwrap();
        assert_eq!((d.name.as_str(), d.classes), ("fashion-mnist", 10));
    }

    #[test]
    fn absurd_header_is_rejected_without_allocating() {
        // 4 billion images of 65535x65535 pixels would need ~1.8e19 bytes.
        let bytes = encode_images(u32::MAX, 65535, 65535, &[1, 2, 3]);
        let err = parse_idx_images(&bytes, "huge").unwrap_err();
        let expected = 16 + u128::from(u32::MAX) * 65535 * 65535;
        assert!(
            matches!(err, DataError::Truncated { expected: e, actual: 19, .. } if e == expected),
            "{err:?}"
        );
        assert_mentions(&err, &["huge", &expected.to_string()]);
        let mut labels = encode_labels(&[]);
        labels[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = parse_idx_labels(&labels, "huge labels").unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { actual: 8, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn short_headers_are_truncated_errors() {
        for len in 0..16 {
            let bytes = &encode_images(1, 1, 1, &[0])[..len];
            let err = parse_idx_images(bytes, "short").unwrap_err();
            assert!(
                matches!(err, DataError::Truncated { expected: 16, .. }),
                "{len}: {err:?}"
            );
        }
        let err = parse_idx_labels(&[0, 0, 8], "short").unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 8,
                    actual: 3,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic(
            prefix in prop_oneof![
                Just(vec![]),
                Just(IMAGES_MAGIC.to_be_bytes().to_vec()),
                Just(LABELS_MAGIC.to_be_bytes().to_vec()),
            ],
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let bytes = [prefix, rest].concat();
            let _ = parse_idx_images(&bytes, "fuzz");
            let _ = parse_idx_labels(&bytes, "fuzz");
        }

        #[test]
        fn valid_idx_round_trips(
            (count, rows, cols, pixels) in (0u32..6, 0u32..6, 0u32..6).prop_flat_map(|(n, r, c)| {
                let len = (n * r * c) as usize;
                (Just(n), Just(r), Just(c), proptest::collection::vec(any::<u8>(), len))
            }),
            labels in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let parsed = parse_idx_images(&encode_images(count, rows, cols, &pixels), "p").unwrap();
            prop_assert_eq!(parsed, (count as usize, (rows * cols) as usize, pixels));
            prop_assert_eq!(parse_idx_labels(&encode_labels(&labels), "l").unwrap(), labels);
        }
    }

    #[test]
    #[ignore = "needs the dataset-fashion-mnist Debian package"]
    fn fashion_mnist_installed() {
        let d = load(&"fashion-mnist".parse().unwrap()).unwrap();
        assert_eq!(d.name, "fashion-mnist");
        assert_eq!((d.train.len(), d.test.len()), (60000, 10000));
        assert_eq!((d.input_len, d.classes, d.max_value), (784, 10, 255));
        assert!(d.train.labels.iter().chain(&d.test.labels).all(|&l| l < 10));
        let mut per_class = [0usize; 10];
        for &l in &d.test.labels {
            per_class[usize::from(l)] += 1;
        }
        assert_eq!(
            per_class, [1000; 10],
            "Fashion-MNIST's test set is balanced"
        );
    }
}
