//! `cargo xtask fuzz`: the recording reader under libFuzzer (cargo fuzz, nightly, ASan).
//!
//! Three targets in `cxl-trace/fuzz`: `reader` (any bytes as a file), `payload` (any bytes as
//! a chunk payload inside a valid frame, past the checksum and zstd layers) and `redact`. The
//! corpus is committed, `cxl-trace/fuzz/corpus/<target>/`: libFuzzer reads it and writes every
//! new input that reaches new code into it (commit them). The golden recordings and the
//! regression inputs are read-only seeds beside it. A crashing input is copied to
//! `cxl-trace/tests/fixtures/fuzz-regressions/<target>-<name>` and the task fails. The test
//! suite replays the corpus, the regressions and the recordings through the same entry points
//! in its ordinary build (`cxl-trace/tests/fuzz_corpus.rs`), without sanitizers or libFuzzer.

use std::{fs, path::Path, time::Instant};

use anyhow::{bail, Context as _, Result};

use crate::{cargo_bin_dir, root, run, step, target_dir};

/// The fuzz targets.
pub const TARGETS: [&str; 3] = ["reader", "payload", "redact"];
const CARGO_FUZZ_VERSION: &str = "0.13.1";

/// Installs cargo-fuzz when missing.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let bin = cargo_bin_dir().join("cargo-fuzz");
    let have = crate::output_ok(std::process::Command::new(&bin).arg("--version"))
        .is_some_and(|v| v.contains(CARGO_FUZZ_VERSION));
    if have {
        step(&format!("cargo-fuzz {CARGO_FUZZ_VERSION}: present"));
        return Ok(());
    }
    step(&format!(
        "cargo-fuzz {CARGO_FUZZ_VERSION}: installing (about 30 s)"
    ));
    run(std::process::Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--force",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

fn copy_dir_files(from: &Path, to: &Path) -> Result<()> {
    if let Ok(entries) = fs::read_dir(from) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                if let Some(name) = p.file_name() {
                    fs::copy(&p, to.join(name))
                        .with_context(|| format!("seeding {}", p.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Runs every target (or those named) for `seconds` each.
pub fn fuzz(seconds: u64, only: &[String]) -> Result<()> {
    if let Some(bad) = only.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        bail!(
            "no fuzz target {bad:?}: the targets are {}",
            TARGETS.join(", ")
        );
    }
    ensure_cargo_fuzz()?;
    let root = root();
    let fuzz_dir = root.join("cxl-trace/fuzz");
    let regressions = root.join("cxl-trace/tests/fixtures/fuzz-regressions");
    let mut crashed = Vec::new();
    for target in TARGETS
        .into_iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == t))
    {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeds = target_dir().join("fuzz-seeds").join(target);
        let artifacts = target_dir().join("fuzz-artifacts").join(target);
        fs::create_dir_all(&corpus).context("corpus directory")?;
        let _ = fs::remove_dir_all(&seeds);
        fs::create_dir_all(&seeds).context("seeds directory")?;
        let _ = fs::remove_dir_all(&artifacts);
        fs::create_dir_all(&artifacts).context("artifacts directory")?;
        if target == "reader" {
            copy_dir_files(&root.join("cxl-trace/tests/fixtures/recordings"), &seeds)?;
        }
        copy_dir_files(&regressions, &seeds)?;
        step(&format!("fuzz {target}: {seconds} s"));
        let t0 = Instant::now();
        let status = std::process::Command::new("cargo")
            .current_dir(&fuzz_dir)
            .env("PATH", crate::path_with_cargo_bin())
            // The reader needs no eBPF programs: skip building them with sanitizer flags.
            .env("AYA_BUILD_SKIP", "1")
            .arg(format!("+{}", crate::nightly()))
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .args(["-max_len=131072", "-rss_limit_mb=2048", "-timeout=10"])
            .args(["-print_final_stats=1"])
            .status()
            .context("cannot start cargo fuzz")?;
        step(&format!(
            "fuzz {target}: {} after {:.0} s",
            if status.success() { "clean" } else { "FAILED" },
            t0.elapsed().as_secs_f64()
        ));
        if !status.success() {
            fs::create_dir_all(&regressions).context("regressions directory")?;
            for e in fs::read_dir(&artifacts).into_iter().flatten().flatten() {
                let name = format!("{target}-{}", e.file_name().to_string_lossy());
                fs::copy(e.path(), regressions.join(&name)).context("keeping the crash")?;
                crashed.push(name);
            }
            if crashed.is_empty() {
                bail!("cargo fuzz run {target} failed without a crashing input (build error?)");
            }
        }
    }
    if !crashed.is_empty() {
        bail!(
            "crashing inputs kept as regression tests in {}: {}",
            regressions.display(),
            crashed.join(", ")
        );
    }
    Ok(())
}
