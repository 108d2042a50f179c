//! `xtask vm-guest`: the scenario driver that runs inside the test VM (see `vm.rs`).
//!
//! It prepares the machine (for `cxl`: drivers, region, namespace, onlining), then either runs
//! a user's script or the built-in scenario: cxl-trace runs headless while the project's own
//! workload causes each kind of migration, and bpftrace sums `migrate:mm_migrate_pages` beside
//! it. At the end the tool's counts are checked against the /proc/vmstat deltas it read over
//! its own window and against bpftrace, and a table of tool versus kernel is printed.

use std::{fs, io::BufRead as _, path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::vm::Machine;
/// The tool's output types, which every check reads its JSON through.
pub(crate) use cxl_trace::model::{
    event::MigrateReason,
    schema::{Cause, DiffDoc, Doctor, RefusalCause, Start, TopologyDoc, Window},
    status::Status,
    topology::Topology,
};

mod util;
use util::*;
mod checks;
use checks::*;
mod sessions;
use sessions::*;
mod tiers;
use tiers::*;
mod recordings;
use recordings::*;
mod cxl;
use cxl::*;
mod blast;
mod fleet;
use fleet::*;
mod ras;
use ras::*;

/// For a script or the benchmark: the `cxl` machine's memory onlined as a node, as the
/// built-in scenario does for itself.
fn machine_ready(machine: Machine) -> Result<()> {
    if matches!(machine, Machine::Cxl | Machine::CxlRas) {
        cxl_prepare()?;
        cxl_online()?;
    }
    Ok(())
}

/// `vm-guest --bench`: the migration-bound overhead benchmark (the host has one NUMA node, so
/// move_pages has nowhere to move to there); its rows go to /results/bench.json.
pub fn bench(machine: Machine, quick: bool) -> Result<()> {
    machine_ready(machine)?;
    // Which per-folio hook cxl-trace uses here decides which bpftrace is its equivalent.
    let doctor: Doctor = serde_json::from_str(&sh(
        Command::new(bin("cxl-trace")).args(["doctor", "--json"])
    )?)
    .context("doctor --json")?;
    let fentry = doctor
        .probes
        .iter()
        .any(|p| p.name == "fentry:move_to_new_folio" && p.is_live());
    say(&format!(
        "per-folio hook: {}",
        if fentry {
            "fentry/fexit move_to_new_folio"
        } else {
            "migration-entry tracepoints"
        }
    ));
    let mut rows = Vec::new();
    crate::overhead::overhead(&mut rows, &crate::overhead::migration_target(fentry), quick)?;
    fs::write("/results/bench.json", serde_json::to_string(&rows)?)
        .context("cannot write /results/bench.json")?;
    say(&format!("{} benchmark rows written", rows.len()));
    Ok(())
}

/// Entry point inside the guest.
pub fn guest(machine: Machine, script: Option<PathBuf>, userspace_checks: bool) -> Result<()> {
    let before = vmstat()?;
    if let Some(script) = script {
        machine_ready(machine)?;
        say(&format!("running {}", script.display()));
        let status = Command::new("sh")
            .arg(&script)
            .env("CXL_TRACE", bin("cxl-trace"))
            .env("CXL_TRACE_WORKLOAD", bin("cxl-trace-workload"))
            .status()?;
        if !status.success() {
            bail!("{} failed with {status}", script.display());
        }
        return Ok(());
    }
    let mut checks = Checks::default();
    let result = match machine {
        Machine::Hmat => scenario_hmat(&mut checks, userspace_checks),
        Machine::Cxl => scenario_cxl(&mut checks),
        Machine::CxlRas => scenario_cxl_ras(&mut checks),
    };
    let after = vmstat()?;
    let delta: Vec<String> = [
        "pgmigrate_success",
        "pgmigrate_fail",
        "pgpromote_success",
        "pgdemote_kswapd",
        "pgdemote_direct",
        "pgdemote_proactive",
        "numa_hint_faults",
    ]
    .iter()
    .map(|k| {
        let d = after
            .get(*k)
            .unwrap_or(&0)
            .saturating_sub(*before.get(*k).unwrap_or(&0));
        format!("{k} +{d}")
    })
    .collect();
    say(&format!("whole guest run: {}", delta.join(", ")));
    let ok = checks.print();
    result?;
    if !ok {
        bail!("some counters did not match");
    }
    say("all checks passed");
    Ok(())
}
