//! The `sigchip` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sigchip::compiler;
use sigchip::emulator::data::{self, DataSource};
use sigchip::emulator::{self as emu, Report};
use sigchip::isa::{disasm::disassemble, ChipDescription, Program};
use sigchip::reference::{self, Algorithm, F32Options};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "sigchip",
    version,
    about = "Compile sigprop networks to a forward-only learning chip and emulate it, bit and cycle exact"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Host threads for the emulator (with more than one, training replays its timing on this
    /// many threads beside the one computing values, and inferences run in parallel chunks);
    /// every thread count gives the same bits, cycles and reports. Default: one per CPU.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Do not use SIMD instructions in the emulator's kernels (the same bits, slower).
    #[arg(long, global = true)]
    no_simd: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a network description (RON) into a chip program.
    Compile {
        net: PathBuf,
        /// Chip description (RON); the default chip when absent.
        #[arg(long)]
        chip: Option<PathBuf>,
        /// Where to write the program (RON).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The learning algorithm to lower. Only `sigprop` runs on the forward-only chip;
        /// `backprop` is refused with what it would need (backward routes, transposed reads).
        #[arg(long, value_enum, default_value_t = Algorithm::Sigprop)]
        algorithm: Algorithm,
    },
    /// Train one network with every local loss and readout on the chip, in f32 sigprop and in
    /// f32 backprop, and print (or write into a Markdown file) the table of test accuracies.
    Accuracy {
        net: PathBuf,
        #[arg(long)]
        chip: Option<PathBuf>,
        #[arg(long, default_value = "digits")]
        data: String,
        #[arg(long, default_value_t = 10)]
        epochs: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the table into this Markdown file, replacing its section for this data set.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check sigprop's hardware-learning claims on a chip: forward path only, memory, time and
    /// energy against backprop, feedback alignment, direct feedback alignment and local
    /// classifiers, layer-parallel training, accuracy, and spiking and continuous-time learning.
    Claims {
        #[arg(long)]
        chip: Option<PathBuf>,
        /// The network (default: examples/digits.ron); data: the embedded digits set.
        #[arg(long)]
        net: Option<PathBuf>,
        /// Fewer samples and epochs (under a minute).
        #[arg(long)]
        quick: bool,
        /// Write the claims as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Measure the emulator's speed on a fixed workload (training, then inference) against a
    /// dense integer matrix-vector kernel of the same shapes on this machine.
    Bench {
        /// The network (default: examples/fashion_mlp.ron with --data fashion-mnist, else
        /// examples/digits.ron).
        #[arg(long)]
        net: Option<PathBuf>,
        #[arg(long)]
        chip: Option<PathBuf>,
        #[arg(long, default_value = "digits")]
        data: String,
        /// Training samples of the workload.
        #[arg(long, default_value_t = 2000)]
        train: usize,
        /// Inference samples of the workload.
        #[arg(long, default_value_t = 1000)]
        test: usize,
        /// The engine to measure (`tick`: the slow reference).
        #[arg(long, default_value = "event")]
        engine: emu::engine::EngineKind,
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Print the disassembly of a program.
    Disasm { program: PathBuf },
    /// Train a network (compiled first) or a program on the chip, then evaluate it; or train a
    /// network in f32 software (`--backend f32`, `--algorithm backprop`) as a reference.
    Train {
        /// A network description or a compiled program (RON); the f32 backend needs a
        /// network description.
        input: PathBuf,
        /// `chip`: the emulated chip, bit and cycle exact. `f32`: the same network in 32-bit
        /// float software with no hardware model. Default: `chip`, or `f32` with
        /// `--algorithm backprop`.
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        /// `sigprop` (forward passes, local losses) or `backprop` (plain backpropagation of
        /// the output's cross-entropy, f32 backend only: the accuracy baseline).
        #[arg(long, value_enum, default_value_t = Algorithm::Sigprop)]
        algorithm: Algorithm,
        #[arg(long)]
        chip: Option<PathBuf>,
        /// `digits`, `fashion-mnist[:DIR]` or `idx:DIR`.
        #[arg(long, default_value = "digits")]
        data: String,
        #[arg(long, default_value_t = 1)]
        epochs: u32,
        /// Seed of the sample shuffle.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Use only the first N training samples.
        #[arg(long)]
        train_limit: Option<usize>,
        /// Use only the first N test samples.
        #[arg(long)]
        test_limit: Option<usize>,
        /// Write the report as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the trained program.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The engine that steps the chip: `event` (jumps between events) or `tick` (every
        /// cycle; the slow reference). Both give the same bits and cycles.
        #[arg(long, default_value = "event")]
        engine: emu::engine::EngineKind,
        /// `sequential` (a barrier between training samples) or `pipelined` (each layer takes
        /// the next sample once it has updated for the current one; the same weights).
        #[arg(long, default_value = "sequential")]
        schedule: emu::train::Schedule,
        /// Write a waveform (VCD, for GTKWave) of the training time line: per-core phase,
        /// program counter, busy and waiting, a probed neuron's accumulator and output, router
        /// buffers and link traffic.
        #[arg(long)]
        vcd: Option<PathBuf>,
        /// The cycles of the waveform, FROM..TO.
        #[arg(long, default_value = "0..20000")]
        window: emu::vcd::Window,
        /// Networks with time: after training, plot the first test sample's spike raster and
        /// membrane potentials as SVG files into this directory.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run inference with a program over a data set.
    Run {
        program: PathBuf,
        #[arg(long, default_value = "digits")]
        data: String,
        #[arg(long)]
        test_limit: Option<usize>,
        #[arg(long)]
        train_limit: Option<usize>,
        #[arg(long)]
        report: Option<PathBuf>,
        /// The engine that steps the chip: `event` or `tick` (the slow reference).
        #[arg(long, default_value = "event")]
        engine: emu::engine::EngineKind,
        /// Write a waveform (VCD) of the test split's inference time line.
        #[arg(long)]
        vcd: Option<PathBuf>,
        /// The cycles of the waveform, FROM..TO.
        #[arg(long, default_value = "0..20000")]
        window: emu::vcd::Window,
        #[arg(long, short)]
        quiet: bool,
    },
}

/// Where `train` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Backend {
    /// The emulated chip, in fixed point.
    Chip,
    /// Software in 32-bit float, no hardware model.
    F32,
}

/// Writes to standard output; a closed pipe (`sigchip disasm p.ron | head`) ends the program
/// quietly instead of panicking as `print!` would.
fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

macro_rules! out {
    ($($t:tt)*) => { write_stdout(format_args!($($t)*)) };
}

macro_rules! outln {
    ($($t:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($t)*))) };
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn load_chip(path: Option<&Path>) -> Result<ChipDescription> {
    match path {
        None => Ok(ChipDescription::default()),
        Some(p) => Ok(ChipDescription::from_ron(
            &read(p)?,
            &p.display().to_string(),
        )?),
    }
}

/// Program files open with their format version (`(format_version: 1, ...`); network
/// descriptions open with their name.
fn is_program(text: &str) -> bool {
    let mut rest = text.trim_start();
    // Skip leading `//` comments.
    while let Some(after) = rest.strip_prefix("//") {
        rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
    }
    rest.strip_prefix('(')
        .is_some_and(|r| r.trim_start().starts_with("format_version"))
}

/// A program file, or a network description compiled on the spot.
fn load_program(path: &Path, chip: Option<&Path>, quiet: bool) -> Result<Program> {
    let text = read(path)?;
    let origin = path.display().to_string();
    if is_program(&text) {
        if chip.is_some() {
            bail!("--chip applies to network descriptions; {origin} is a compiled program for its own chip");
        }
        return Ok(Program::from_ron(&text, &origin)?);
    }
    let compiled = compiler::compile_str(&text, &origin, &load_chip(chip)?)?;
    if !quiet {
        eprintln!("{}", compiled.summary);
    }
    Ok(compiled.program)
}

/// A network description for the f32 backend, parsed and validated; programs are refused.
fn load_network(path: &Path) -> Result<compiler::ValidNetwork> {
    let text = read(path)?;
    let origin = path.display().to_string();
    if is_program(&text) {
        bail!(
            "{origin} is a compiled chip program, but the f32 backend trains a network description \
             (the .ron file you compile) from its initial weights, with no chip; pass the network \
             description, or use --backend chip to train the program"
        );
    }
    Ok(compiler::validate(
        compiler::parse(&text, &origin)?,
        &origin,
    )?)
}

/// The backend a `train` command runs on: `--algorithm backprop` implies (and needs) `f32`.
fn resolve_backend(backend: Option<Backend>, algorithm: Algorithm) -> Result<Backend> {
    match (backend, algorithm) {
        (Some(Backend::Chip), Algorithm::Backprop) => bail!(
            "backpropagation cannot run on the chip: it needs a backward pass (errors routed from \
             each layer back to the one before, through transposed weights) and the chip is \
             forward-only; use --backend f32 (or leave --backend out) to train it in software, \
             and `sigchip compile NET --algorithm backprop` to see what it would need from the chip"
        ),
        (Some(b), _) => Ok(b),
        (None, Algorithm::Backprop) => Ok(Backend::F32),
        (None, Algorithm::Sigprop) => Ok(Backend::Chip),
    }
}

fn load_data(
    spec: &str,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
) -> Result<data::Dataset> {
    let source: DataSource = spec.parse()?;
    let mut d = data::load(&source)?;
    if let Some(n) = train_limit {
        d.train.truncate(n);
    }
    if let Some(n) = test_limit {
        d.test.truncate(n);
    }
    Ok(d)
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} samples ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// A progress callback that moves `bar`.
fn report_to(bar: &ProgressBar) -> impl FnMut(u64, u64, &str) + '_ {
    move |done, total, what| {
        bar.set_length(total);
        bar.set_position(done);
        bar.set_message(what.to_string());
    }
}

fn finish(report: &Report, json: Option<&Path>) -> Result<()> {
    outln!("{report}");
    if let Some(p) = json {
        write(p, &report.to_json())?;
        eprintln!("report written to {}", p.display());
    }
    Ok(())
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("could not start the emulator's threads")?;
    }
    emu::kernels::set_simd(!cli.no_simd);
    match cli.command {
        Command::Compile {
            net,
            chip,
            output,
            algorithm,
        } => {
            let chip = load_chip(chip.as_deref())?;
            let origin = net.display().to_string();
            let desc = compiler::parse(&read(&net)?, &origin)?;
            let compiled = match compiler::compile_algorithm(desc, &origin, &chip, algorithm.into())
            {
                Err(e @ compiler::CompileError::NotForwardOnly(_)) => bail!(
                    "{e}\n  to train it in software instead: sigchip train {origin} --algorithm backprop (f32 backend)"
                ),
                r => r?,
            };
            outln!("{}", compiled.summary);
            if let Some(o) = output {
                write(&o, &compiled.program.to_ron())?;
                outln!("program written to {}", o.display());
            }
        }
        Command::Accuracy {
            net,
            chip,
            data,
            epochs,
            seed,
            out,
        } => {
            let origin = net.display().to_string();
            let desc = compiler::parse(&read(&net)?, &origin)?;
            let chip_desc = load_chip(chip.as_deref())?;
            let dataset = load_data(&data, None, None)?;
            let table =
                sigchip::accuracy::table(&desc, &chip_desc, &dataset, epochs, seed, &mut |what| {
                    eprintln!("training {what}");
                })?;
            let mut command =
                format!("sigchip accuracy {origin} --data {data} --epochs {epochs} --seed {seed}");
            if let Some(c) = &chip {
                command += &format!(" --chip {}", c.display());
            }
            if let Some(o) = &out {
                command += &format!(" --out {}", o.display());
            }
            let section = table.markdown(&command);
            out!("{section}");
            if let Some(o) = out {
                let doc = std::fs::read_to_string(&o).unwrap_or_default();
                let key = format!("{}:{}", table.network, table.data);
                write(&o, &sigchip::accuracy::splice(&doc, &key, &section))?;
                eprintln!("table written to {}", o.display());
            }
        }
        Command::Claims {
            chip,
            net,
            quick,
            report,
        } => {
            let chip_desc = load_chip(chip.as_deref())?;
            let desc = match &net {
                Some(p) => compiler::parse(&read(p)?, &p.display().to_string())?,
                None => compiler::parse(
                    include_str!("../examples/digits.ron"),
                    "examples/digits.ron",
                )?,
            };
            let temporal = [
                (
                    "examples/digits_snn_voltage.ron",
                    include_str!("../examples/digits_snn_voltage.ron"),
                ),
                (
                    "examples/digits_snn_surrogate.ron",
                    include_str!("../examples/digits_snn_surrogate.ron"),
                ),
                (
                    "examples/digits_ct_hebbian.ron",
                    include_str!("../examples/digits_ct_hebbian.ron"),
                ),
            ]
            .iter()
            .map(|(o, t)| compiler::parse(t, o))
            .collect::<Result<Vec<_>, _>>()?;
            let opts = sigchip::claims::ClaimsOptions {
                chip: chip_desc,
                net: desc,
                temporal,
                data: emu::data::digits(),
                quick,
            };
            let claims = sigchip::claims::claims(&opts, &mut |what| eprintln!("measuring {what}"))?;
            out!("{}", claims.table());
            if let Some(p) = report {
                write(&p, &serde_json::to_string_pretty(&claims)?)?;
                eprintln!("claims written to {}", p.display());
            }
        }
        Command::Bench {
            net,
            chip,
            data,
            train,
            test,
            engine,
            report,
        } => {
            let dataset = load_data(&data, None, None)?;
            let (text, origin) = match &net {
                Some(p) => (read(p)?, p.display().to_string()),
                None if data.starts_with("fashion") => (
                    include_str!("../examples/fashion_mlp.ron").to_string(),
                    "examples/fashion_mlp.ron".into(),
                ),
                None => (
                    include_str!("../examples/digits.ron").to_string(),
                    "examples/digits.ron".into(),
                ),
            };
            let chip_desc = load_chip(chip.as_deref())?;
            let program = compiler::compile_str(&text, &origin, &chip_desc)?.program;
            let b = sigchip::bench::bench(program, &dataset, train, test, engine)?;
            out!("{b}");
            if let Some(p) = report {
                write(&p, &serde_json::to_string_pretty(&b)?)?;
                eprintln!("bench written to {}", p.display());
            }
        }
        Command::Disasm { program } => {
            let p = Program::from_ron(&read(&program)?, &program.display().to_string())?;
            out!("{}", disassemble(&p));
        }
        Command::Train {
            input,
            backend,
            algorithm,
            chip,
            data,
            epochs,
            seed,
            train_limit,
            test_limit,
            report,
            output,
            engine,
            schedule,
            vcd,
            window,
            plot,
            quiet,
        } => {
            if resolve_backend(backend, algorithm)? == Backend::F32 {
                if output.is_some() {
                    bail!(
                        "-o/--output writes a trained chip program, and the f32 backend trains no \
                         program; use --report FILE.json to keep its results"
                    );
                }
                if chip.is_some() {
                    bail!("--chip describes the chip, and the f32 backend has no hardware model; leave it out or use --backend chip");
                }
                let net = load_network(&input)?;
                let data = load_data(&data, train_limit, test_limit)?;
                let bar = progress_bar(quiet);
                let mut progress = report_to(&bar);
                let opts = F32Options { epochs, seed };
                let rep = reference::train_f32(&net, &data, algorithm, &opts, &mut progress)?;
                bar.finish_and_clear();
                outln!("{rep}");
                if let Some(p) = report {
                    write(&p, &rep.to_json())?;
                    eprintln!("report written to {}", p.display());
                }
                return Ok(());
            }
            let program = load_program(&input, chip.as_deref(), quiet)?;
            let data = load_data(&data, train_limit, test_limit)?;
            let bar = progress_bar(quiet);
            let mut progress = report_to(&bar);
            let opts = emu::TrainOptions {
                epochs,
                seed,
                schedule,
                engine,
                vcd: vcd.map(|p| (p, window)),
                plot: plot.clone(),
            };
            let (trained, rep) = emu::train(program, &data, &opts, &mut progress)?;
            bar.finish_and_clear();
            // Save the trained program before anything else can fail.
            if let Some(o) = output {
                write(&o, &trained.to_ron())?;
                eprintln!("trained program written to {}", o.display());
            }
            if let Some(dir) = plot {
                eprintln!(
                    "plots of the first test sample written to {}",
                    dir.join("raster.svg").display()
                );
            }
            finish(&rep, report.as_deref())?;
        }
        Command::Run {
            program,
            data,
            test_limit,
            train_limit,
            report,
            engine,
            vcd,
            window,
            quiet,
        } => {
            let p = load_program(&program, None, quiet)?;
            let data = load_data(&data, train_limit, test_limit)?;
            let bar = progress_bar(quiet);
            let mut progress = report_to(&bar);
            let rep =
                emu::train::run_on(p, &data, engine, vcd.map(|p| (p, window)), &mut progress)?;
            bar.finish_and_clear();
            finish(&rep, report.as_deref())?;
        }
    }
    Ok(())
}
