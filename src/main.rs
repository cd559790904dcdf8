//! The `sigchip` command line.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sigchip::compiler;
use sigchip::emulator::data::{self, DataSource};
use sigchip::emulator::{self as emu, Report};
use sigchip::isa::{disasm::disassemble, ChipDescription, Program};
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
    },
    /// Print the disassembly of a program.
    Disasm { program: PathBuf },
    /// Train a network (compiled first) or a program on the chip, then evaluate it.
    Train {
        /// A network description or a compiled program (RON).
        input: PathBuf,
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
        #[arg(long, short)]
        quiet: bool,
    },
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

fn finish(report: &Report, json: Option<&Path>) -> Result<()> {
    println!("{report}");
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
    match Cli::parse().command {
        Command::Compile { net, chip, output } => {
            let chip = load_chip(chip.as_deref())?;
            let compiled = compiler::compile_str(&read(&net)?, &net.display().to_string(), &chip)?;
            println!("{}", compiled.summary);
            if let Some(o) = output {
                write(&o, &compiled.program.to_ron())?;
                println!("program written to {}", o.display());
            }
        }
        Command::Disasm { program } => {
            let p = Program::from_ron(&read(&program)?, &program.display().to_string())?;
            print!("{}", disassemble(&p));
        }
        Command::Train {
            input,
            chip,
            data,
            epochs,
            seed,
            train_limit,
            test_limit,
            report,
            output,
            quiet,
        } => {
            let program = load_program(&input, chip.as_deref(), quiet)?;
            let data = load_data(&data, train_limit, test_limit)?;
            let bar = progress_bar(quiet);
            let mut progress = |done: u64, total: u64, what: &str| {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(what.to_string());
            };
            let opts = emu::TrainOptions { epochs, seed };
            let (trained, rep) = emu::train(program, &data, &opts, &mut progress)?;
            bar.finish_and_clear();
            // Save the trained program before anything else can fail.
            if let Some(o) = output {
                write(&o, &trained.to_ron())?;
                eprintln!("trained program written to {}", o.display());
            }
            finish(&rep, report.as_deref())?;
        }
        Command::Run {
            program,
            data,
            test_limit,
            train_limit,
            report,
            quiet,
        } => {
            let p = load_program(&program, None, quiet)?;
            let data = load_data(&data, train_limit, test_limit)?;
            let bar = progress_bar(quiet);
            let mut progress = |done: u64, total: u64, what: &str| {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(what.to_string());
            };
            let rep = emu::run(p, &data, &mut progress)?;
            bar.finish_and_clear();
            finish(&rep, report.as_deref())?;
        }
    }
    Ok(())
}
