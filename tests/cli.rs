//! The command line: the README's main command, and clear errors (never a panic) on bad input.

use std::path::PathBuf;
use std::process::Command;

fn sigchip(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sigchip"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn scratch(name: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sigchip-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = sigchip(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "missing `{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn compile_writes_a_program_that_disasm_and_run_read() {
    let prog = std::env::temp_dir().join(format!("sigchip-cli-prog-{}.ron", std::process::id()));
    let p = prog.to_str().unwrap();
    let (ok, out, err) = sigchip(&["compile", "examples/digits.ron", "-o", p]);
    assert!(ok, "{err}");
    assert!(
        out.contains("routes: ") && out.contains("0 backward"),
        "{out}"
    );
    let (ok, out, _) = sigchip(&["disasm", p]);
    assert!(ok && out.contains("core0: "), "{out}");
    let (ok, out, err) = sigchip(&[
        "run",
        p,
        "--data",
        "digits",
        "--test-limit",
        "50",
        "--train-limit",
        "50",
        "-q",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("cycles per inference"), "{out}");
}

#[test]
fn bad_inputs_give_clear_errors() {
    fails_with(&["--threads", "0", "bench"], "--threads must be at least 1");
    fails_with(
        &["compile", "no/such/net.ron"],
        "cannot read no/such/net.ron",
    );
    let bad = scratch("bad.ron", b"(name: \"x\", input: 64,");
    fails_with(
        &["compile", bad.to_str().unwrap()],
        "malformed network description",
    );
    let zero = scratch(
        "zero.ron",
        b"(name: \"x\", input: 64, classes: 10, layers: [(width: 0)])",
    );
    fails_with(
        &["compile", zero.to_str().unwrap()],
        "layers[0].width: is 0",
    );
    let chip = scratch("chip.ron", b"(bits: (weight: 1))");
    fails_with(
        &[
            "compile",
            "examples/digits.ron",
            "--chip",
            chip.to_str().unwrap(),
        ],
        "bits.weight: is 1",
    );
    fails_with(
        &["train", "examples/digits.ron", "--data", "mnist-ish", "-q"],
        "mnist-ish",
    );
    // A truncated IDX set.
    let dir = std::env::temp_dir().join(format!("sigchip-cli-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 2, 0, 0, 0, 2];
    images.extend([1u8; 7]); // 10 images of 4 pixels need 40 bytes
    std::fs::write(dir.join("train-images-idx3-ubyte"), &images).unwrap();
    let spec = format!("idx:{}", dir.display());
    fails_with(
        &["train", "examples/digits.ron", "--data", &spec, "-q"],
        "train-images-idx3-ubyte",
    );
    let garbage = scratch("garbage.prog.ron", b"(format_version: 1, cores: [");
    fails_with(&["disasm", garbage.to_str().unwrap()], "malformed program");
}
