//! Project tasks: `cargo xtask setup|build|run|test|vm-test|bench|fuzz`.
//!
//! `setup` installs, only when missing, everything that building the eBPF programs and running
//! the test suite needs on Debian 12: Debian packages, the nightly `rust-src` component and
//! `bpf-linker` built against LLVM 22. `run` and `test` call it themselves, so a fresh clone
//! needs nothing but the README's two commands.

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

mod bench;
mod fuzz;
mod guest;
mod install;
mod kernels;
mod lines;
mod overhead;
mod phases;
mod scrape;
mod suite;
mod table;
mod vm;

#[derive(Parser)]
#[command(name = "xtask", about = "cxl-trace project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: Debian packages, nightly rust-src, bpf-linker (LLVM 22).
    Setup,
    /// Set up, then build cxl-trace (with its eBPF programs).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build (release), then run cxl-trace as root with ARGS.
    Run {
        /// Arguments for cxl-trace, e.g. `-- top --no-tui`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build (release), then install cxl-trace, its shell completions (bash, zsh,
    /// fish) and its man pages under PREFIX.
    Install {
        /// Installation prefix: PREFIX/bin, PREFIX/share/man/man1, PREFIX/share/...completions.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
    },
    /// Set up, then run the whole suite: fmt, clippy, unit tests, privileged tests, VM tests.
    Test {
        /// Leave out the VM scenarios (`vm-test`).
        #[arg(long)]
        no_vm: bool,
    },
    /// Boot tiered-memory QEMU guests and check cxl-trace against the kernel in them.
    VmTest {
        /// Which scenarios, comma-separated (each boots its own guest).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
        scenario: Vec<ScenarioArg>,
        /// Run this shell script in the guest instead of the built-in scenario
        /// (`$CXL_TRACE` and `$CXL_TRACE_WORKLOAD` name the binaries).
        #[arg(long)]
        script: Option<PathBuf>,
        /// Keep the run directories under target/vm even when everything passed.
        #[arg(long)]
        keep: bool,
        /// Guest kernels from Debian's archive, comma-separated: a series (6.1, 6.12, 7.3),
        /// `newest`, or a full release (6.12.117+deb12-amd64). Each is cached in target/vm.
        /// Default: the suite's matrix, 6.1, 6.12 and newest.
        #[arg(long, value_delimiter = ',', default_value = "6.1,6.12,newest", value_parser = parse_kernel)]
        kernel: Vec<kernels::Selector>,
        /// Guests booted side by side (each machine on each kernel is one guest).
        #[arg(long, default_value_t = vm::DEFAULT_JOBS, value_parser = clap::value_parser!(u16).range(1..=8))]
        jobs: u16,
    },
    /// Measure performance (criterion benchmarks, the tool's idle CPU) and write a table to
    /// stdout and JSON to target/bench/latest.json.
    Bench {
        /// Shorter measurement windows (for a quick look; the numbers are noisier).
        #[arg(long)]
        quick: bool,
        /// Run only these parts (default: all).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<bench::Part>,
    },
    /// Fuzz the recording reader (cargo fuzz, nightly): every target for SECONDS; crashing
    /// inputs are kept in cxl-trace/tests/fixtures/fuzz-regressions and the task fails.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Only these targets (reader, payload, redact); default all, one after another.
        #[arg(long, value_delimiter = ',')]
        target: Vec<String>,
    },
    /// (Inside the VM) prepare the machine and run a scenario or script.
    #[command(hide = true)]
    VmGuest {
        #[arg(long, value_enum)]
        machine: vm::Machine,
        #[arg(long)]
        script: Option<PathBuf>,
        /// Run the migration-bound overhead benchmark and write its rows to /results/bench.json.
        #[arg(long, conflicts_with = "script")]
        bench: bool,
        /// With --bench: fewer rounds.
        #[arg(long)]
        quick: bool,
        /// Also run the checks of cxl-trace's own userspace logic (exporter against Prometheus,
        /// redaction, `diff` statistics): the host asks for them on the newest kernel of a run
        /// only, since they test the tool's code, not the kernel's.
        #[arg(long)]
        userspace_checks: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScenarioArg {
    Hmat,
    Cxl,
    /// Memory errors and device events injected on the CXL machine.
    CxlRas,
    All,
}

impl ScenarioArg {
    /// The machines to boot for these scenarios, each once, in the suite's order.
    fn machines(list: &[ScenarioArg]) -> Vec<vm::Machine> {
        let has = |a: ScenarioArg| list.contains(&a) || list.contains(&ScenarioArg::All);
        [
            (ScenarioArg::Hmat, vm::Machine::Hmat),
            (ScenarioArg::Cxl, vm::Machine::Cxl),
            (ScenarioArg::CxlRas, vm::Machine::CxlRas),
        ]
        .into_iter()
        .filter(|(a, _)| has(*a))
        .map(|(_, m)| m)
        .collect()
    }
}

/// Debian packages: LLVM 22 and the libraries bpf-linker links against, plus the peers and
/// tools the test suite uses (bpftrace to compare counts, tmux to drive the dashboard,
/// Prometheus and promtool to scrape the exporter and check the fleet files, a Python venv
/// for DuckDB to read the Parquet export).
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libxml2-dev",
    "bpftrace",
    "tmux",
    "prometheus",
    "python3-venv",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The DuckDB (PyPI) the Parquet test reads with.
const DUCKDB_VERSION: &str = "1.4.4";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The eBPF crate's pinned toolchain file; its nightly also runs the fuzzers.
const EBPF_TOOLCHAIN_FILE: &str = include_str!("../../cxl-trace-ebpf/rust-toolchain.toml");

/// The nightly pinned in `cxl-trace-ebpf/rust-toolchain.toml` (`channel = "nightly-…"`).
pub(crate) fn nightly() -> &'static str {
    EBPF_TOOLCHAIN_FILE
        .lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"'))
        .find(|v| !v.is_empty())
        .unwrap_or("nightly")
}

fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the workspace root, as
/// xtask runs cargo there), else `target/` in the workspace. The guest gets it passed along.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => root().join(d),
        _ => root().join("target"),
    }
}

fn parse_kernel(s: &str) -> std::result::Result<kernels::Selector, String> {
    kernels::Selector::parse(s).map_err(|e| format!("{e:#}"))
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

pub(crate) fn output_ok(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// PATH with cargo's bin directory in front, so a freshly installed bpf-linker is found.
fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths = vec![cargo_bin_dir()];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    env::join_paths(paths).unwrap_or_default()
}

pub(crate) fn is_root() -> bool {
    output_ok(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

/// Installs the Debian packages of `pkgs` that are not installed yet.
fn ensure_apt(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| {
            output_ok(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        step(&format!("debian packages: present ({})", pkgs.join(" ")));
        return Ok(());
    }
    step(&format!(
        "debian packages: installing {}",
        missing.join(" ")
    ));
    if !is_root() {
        bail!(
            "installing Debian packages needs root: run as root, or `sudo apt-get install -y {}` first",
            missing.join(" ")
        );
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn setup() -> Result<()> {
    // 1. Debian packages.
    ensure_apt(APT_PACKAGES)?;

    // 2. Nightly toolchain with rust-src (the eBPF crate builds core from source).
    let toolchains =
        output_ok(Command::new("rustup").args(["toolchain", "list"])).unwrap_or_default();
    let nightly = nightly();
    if !toolchains.lines().any(|l| l.starts_with(nightly)) {
        step(&format!("rust {nightly}: installing (minimal profile)"));
        run(Command::new("rustup").args(["toolchain", "install", nightly, "--profile", "minimal"]))
            .context("the eBPF programs need a nightly toolchain")?;
    }
    let components = output_ok(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        nightly,
    ]))
    .unwrap_or_default();
    if components.lines().any(|l| l.starts_with("rust-src")) {
        step(&format!("rust {nightly} rust-src: present"));
    } else {
        step(&format!("rust {nightly} rust-src: installing"));
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", nightly]))?;
    }

    // 3. bpf-linker against LLVM 22 (the LLVM of the nightly rustc). LLVM_PREFIX makes its build
    //    script use LLVM 22 even when an older llvm-config is first on PATH.
    let linker = cargo_bin_dir().join("bpf-linker");
    let have = output_ok(Command::new(&linker).arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION));
    if have {
        step(&format!("bpf-linker {BPF_LINKER_VERSION}: present"));
    } else {
        step(&format!(
            "bpf-linker {BPF_LINKER_VERSION}: building against LLVM 22 (about 1.5 min)"
        ));
        run(Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX))?;
    }
    // 4. DuckDB, for the test that reads `export --format parquet` the way fleets do.
    let py = root().join("target/py");
    let has_duckdb = Command::new(py.join("bin/python"))
        .args([
            "-c",
            &format!("import duckdb; assert duckdb.__version__ == '{DUCKDB_VERSION}'"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if has_duckdb {
        step(&format!("duckdb {DUCKDB_VERSION} (target/py): present"));
    } else {
        step(&format!(
            "duckdb {DUCKDB_VERSION}: installing into target/py (PyPI)"
        ));
        run(Command::new("/usr/bin/python3")
            .arg("-m")
            .arg("venv")
            .arg(&py))?;
        run(Command::new(py.join("bin/pip")).args([
            "install",
            "--quiet",
            &format!("duckdb=={DUCKDB_VERSION}"),
        ]))?;
    }
    step("setup complete");
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root()).env("PATH", path_with_cargo_bin());
    c
}

pub(crate) fn build(release: bool) -> Result<()> {
    step(&format!(
        "building cxl-trace ({})",
        if release { "release" } else { "debug" }
    ));
    let mut c = cargo();
    c.args(["build", "--package", "cxl-trace", "--bins"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Task::Setup => setup(),
        Task::Build { release } => setup().and_then(|()| build(release)),
        Task::Run { args } => setup().and_then(|()| build(true)).and_then(|()| {
            let bin = target_dir().join("release/cxl-trace");
            let mut c = if is_root() {
                Command::new(&bin)
            } else {
                step("not root: running cxl-trace through sudo");
                let mut s = Command::new("sudo");
                s.arg(&bin);
                s
            };
            let status = c.args(&args).status().context("cannot start cxl-trace")?;
            std::process::exit(status.code().unwrap_or(1));
        }),
        Task::Install { prefix } => setup().and_then(|()| build(true)).and_then(|()| {
            let files = install::install(&target_dir().join("release"), &prefix)?;
            for f in &files {
                println!("{}", f.display());
            }
            step(&format!(
                "installed {} files under {}; `man cxl-trace-top` needs {} in MANPATH unless it is a standard prefix",
                files.len(),
                prefix.display(),
                prefix.join("share/man").display()
            ));
            Ok(())
        }),
        Task::Test { no_vm } => suite::test(no_vm),
        Task::VmTest {
            scenario,
            script,
            keep,
            kernel,
            jobs,
        } => {
            let started = std::time::Instant::now();
            let r = setup().and_then(|()| {
                vm::vm_test(
                    &kernel,
                    &ScenarioArg::machines(&scenario),
                    script,
                    keep,
                    jobs,
                )
            });
            println!(
                "\nvm-test: where the time went\n{}",
                phases::table(&phases::all(), started.elapsed())
            );
            r
        }
        Task::VmGuest {
            machine,
            script: _,
            bench: true,
            quick,
            ..
        } => guest::bench(machine, quick),
        Task::VmGuest {
            machine,
            script,
            userspace_checks,
            ..
        } => guest::guest(machine, script, userspace_checks),
        Task::Bench { quick, only } => setup().and_then(|()| bench::bench(quick, &only)),
        Task::Fuzz { seconds, target } => setup().and_then(|()| fuzz::fuzz(seconds, &target)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cxl-trace diff ARGS` with `tool`: its exit code and stdout (stderr passes through).
pub(crate) fn run_diff<S: AsRef<std::ffi::OsStr>>(
    tool: &std::path::Path,
    args: &[S],
) -> Result<(Option<i32>, String)> {
    let out = std::process::Command::new(tool)
        .arg("diff")
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start cxl-trace diff")?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::{vm::Machine, ScenarioArg};

    #[test]
    fn scenarios_map_to_machines_once_each() {
        use ScenarioArg::*;
        assert_eq!(
            ScenarioArg::machines(&[All]),
            [Machine::Hmat, Machine::Cxl, Machine::CxlRas]
        );
        assert_eq!(
            ScenarioArg::machines(&[CxlRas, Cxl]),
            [Machine::Cxl, Machine::CxlRas]
        );
        assert_eq!(ScenarioArg::machines(&[CxlRas]), [Machine::CxlRas]);
        assert_eq!(
            ScenarioArg::machines(&[Hmat, All]),
            [Machine::Hmat, Machine::Cxl, Machine::CxlRas]
        );
    }
}
