//! `cargo xtask test`: the whole suite, phase by phase (fmt, clippy, the one build, the tests
//! with the fuzz corpus replay, the lock files, the VM matrix), with the table of where the
//! time went printed at the end of every run.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, is_root, phases, root, run, setup, step, target_dir, vm, ScenarioArg};

/// The profile of the suite's one build (Cargo.toml's `[profile.ci]`): the tests and the VM
/// guests run what it builds.
pub(crate) const SUITE_PROFILE: &str = "ci";

/// Where the suite's build puts the binaries: `target/ci`.
pub(crate) fn suite_bin_dir() -> PathBuf {
    target_dir().join(SUITE_PROFILE)
}

/// The suite's binaries: the same `cargo test --workspace --no-run` as the suite's build, a
/// no-op after it. A plain `cargo build -p cxl-trace --bins` would not be: without the other
/// workspace members and the dev-dependencies, cargo unifies the dependencies' features
/// differently and rebuilds the whole graph (4 minutes on 2 cores, measured).
pub(crate) fn build_suite() -> Result<()> {
    step(&format!(
        "cargo test --workspace --profile {SUITE_PROFILE} --no-run (the suite's one build)"
    ));
    run(cargo().args([
        "test",
        "--workspace",
        "--profile",
        SUITE_PROFILE,
        "--no-run",
    ]))
}

pub(crate) fn test(no_vm: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let result = test_phases(no_vm);
    // Where the time went, passed or failed: a slower phase shows in every CI log.
    println!(
        "\ncxl-trace suite: where the time went\n{}",
        phases::table(&phases::all(), started.elapsed())
    );
    result
}

fn test_phases(no_vm: bool) -> Result<()> {
    if !is_root() {
        bail!("the test suite includes privileged tests that attach BPF programs: run it as root");
    }
    phases::time("setup (packages, toolchains, bpf-linker)", setup)?;
    // The guests' kernels are downloaded and unpacked while the workspace compiles (network
    // and disk against CPU), and waited for before the tests run.
    let fetching = (!no_vm).then(|| std::thread::spawn(|| vm::fetch_kernels(&vm::MATRIX)));
    step("cargo fmt --check");
    phases::time("fmt --check", || {
        run(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    step("cargo clippy --workspace --all-targets -- -D warnings");
    // Lints need no eBPF object: skipping it here saves the suite a third build of the
    // programs (about 80 s on 2 cores); the test and release builds embed the real one.
    phases::time("clippy (check build)", || {
        run(cargo().env("AYA_BUILD_SKIP", "1").args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // One build for everything that runs: the tests and, through the binaries it leaves in
    // target/ci, the VM guests.
    phases::time(
        &format!("build (profile {SUITE_PROFILE}: tests and guests)"),
        build_suite,
    )?;
    let fetched = match fetching.map(std::thread::JoinHandle::join) {
        Some(Ok(f)) => Some(f),
        Some(Err(_)) => bail!("fetching the guest kernels panicked"),
        None => None,
    };
    step("cargo test --workspace (unit, CLI and privileged kernel tests)");
    let t0 = std::time::Instant::now();
    // Every test binary runs even after one fails, so a red run lists every failure.
    let (passed, failed) = cargo_test(&[
        "test",
        "--workspace",
        "--no-fail-fast",
        "--profile",
        SUITE_PROFILE,
    ])?;
    phases::record(
        "cargo test (unit, CLI, privileged)",
        t0.elapsed(),
        format!("{passed} passed, {failed} failed"),
    );
    let lock_failed = phases::time("lock files", stale_locks).err();
    let mut vm_failed = None;
    if let Some(fetched) = fetched {
        step("vm-test --scenario all --kernel 6.1,6.12,newest (tiered-memory QEMU guests)");
        if let Err(e) = vm::run_matrix(
            fetched,
            &ScenarioArg::machines(&[ScenarioArg::All]),
            None,
            false,
            vm::DEFAULT_JOBS,
        ) {
            eprintln!("xtask: {e:#}");
            vm_failed = Some(e);
        }
    }
    // One closing line for the whole suite (cargo's last line is the last crate's doc-tests).
    println!(
        "cxl-trace suite: {passed} passed, {failed} failed; fuzz corpus: replayed in the tests; vm scenarios: {}",
        match (&vm_failed, no_vm) {
            (_, true) => "not run (--no-vm)",
            (None, false) => "passed",
            (Some(_), false) => "FAILED",
        }
    );
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    if let Some(e) = vm_failed {
        return Err(e);
    }
    if let Some(e) = lock_failed {
        return Err(e);
    }
    step("all tests passed");
    Ok(())
}

/// Runs cargo test, echoing its stdout, and adds up its `test result:` lines.
fn cargo_test(args: &[&str]) -> Result<(u64, u64)> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cargo()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let num = |word: &str| {
                    rest.split(';')
                        .map(str::trim)
                        .find_map(|part| {
                            part.strip_suffix(word)?
                                .trim()
                                .rsplit(' ')
                                .next()?
                                .parse::<u64>()
                                .ok()
                        })
                        .unwrap_or(0)
                };
                passed += num("passed");
                failed += num("failed");
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() && failed == 0 {
        bail!("cargo test failed with {status} (build error or crash)");
    }
    Ok((passed, failed))
}

/// The suite must leave a clean tree: a lock file it rewrites was committed stale. The fuzz
/// crate is not built by the suite: cargo resolves it against its committed lock file, which
/// fails when that lock is stale.
fn stale_locks() -> Result<()> {
    let locks = ["Cargo.lock", "cxl-trace/fuzz/Cargo.lock"];
    let mut stale: Vec<&str> = locks
        .into_iter()
        .filter(|l| {
            Command::new("git")
                .current_dir(root())
                .args(["diff", "--quiet", "--", l])
                .status()
                .is_ok_and(|s| s.code() == Some(1))
        })
        .collect();
    let fuzz_lock_ok = cargo()
        .args(["metadata", "--format-version", "1", "--locked"])
        .arg("--manifest-path")
        .arg(root().join("cxl-trace/fuzz/Cargo.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !fuzz_lock_ok {
        stale.push("cxl-trace/fuzz/Cargo.lock (cargo metadata --locked fails)");
    }
    if stale.is_empty() {
        return Ok(());
    }
    let msg = format!(
        "the suite rewrote {}: the committed lock file is stale (commit the update)",
        stale.join(" and ")
    );
    eprintln!("xtask: {msg}");
    bail!(msg)
}
