//! Builds the eBPF programs (cxl-trace-ebpf) for the BPF target with aya-build and places the
//! object in OUT_DIR, where `src/probe` embeds it.
//!
//! Without the `ebpf` feature (on by default; xtask turns it off) the object is empty. When
//! `bpf-linker` is missing (a plain `cargo check` or clippy on a machine that has not run
//! `cargo xtask setup`), or `AYA_BUILD_SKIP=1` is set, an empty object is written instead and a
//! warning printed: the binary then builds, and refuses to trace with a message that says how
//! to get the real programs.

use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-changed=../cxl-trace-ebpf/rust-toolchain.toml");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    if env::var_os("CARGO_FEATURE_EBPF").is_none() {
        // Built as a library of types (xtask): no programs wanted, nothing to warn about.
        fs::write(out_dir.join("cxl-trace"), b"").context("writing stub eBPF object")?;
        return Ok(());
    }
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let have_linker = env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join("bpf-linker").is_file()))
        .unwrap_or(false);
    if skip || !have_linker {
        let why = if skip {
            "AYA_BUILD_SKIP is set"
        } else {
            "bpf-linker is not on PATH (run `cargo xtask setup`)"
        };
        println!("cargo:warning=building cxl-trace WITHOUT its eBPF programs: {why}");
        fs::write(out_dir.join("cxl-trace"), b"").context("writing stub eBPF object")?;
        return Ok(());
    }
    let package = aya_build::Package {
        name: "cxl-trace-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../cxl-trace-ebpf"),
        ..Default::default()
    };
    let toolchain = ebpf_toolchain()?;
    // aya-build always builds the programs in release, into a target directory under OUT_DIR,
    // which differs between the test and the release build of cxl-trace: the same programs
    // were compiled twice (about 80 s each on 2 cores). One shared directory under the
    // workspace's target makes the second build a no-op; the object is then copied here.
    let shared = shared_dir(&out_dir);
    fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    // aya-build reads OUT_DIR from the environment to place its target directory and the
    // built object; the build script is single-threaded here.
    env::set_var("OUT_DIR", &shared);
    let built = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain));
    env::set_var("OUT_DIR", &out_dir);
    built?;
    // The eBPF crate's binary is named `cxl-trace`.
    fs::copy(shared.join("cxl-trace"), out_dir.join("cxl-trace"))
        .with_context(|| format!("copying the eBPF object from {}", shared.display()))?;
    Ok(())
}

/// `<target>/ebpf`, `<target>` being the directory cargo tagged as a build directory above
/// OUT_DIR (`CACHEDIR.TAG`); OUT_DIR itself when there is none.
fn shared_dir(out_dir: &std::path::Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| out_dir.join("ebpf-shared"), |t| t.join("ebpf"))
}

/// The nightly pinned for the eBPF crate: the `channel` of its rust-toolchain.toml.
fn ebpf_toolchain() -> anyhow::Result<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cxl-trace-ebpf/rust-toolchain.toml"
    );
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_string())
        .find(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("no channel in {path}"))
}
