//! `cargo xtask vm-test`: boots a tiered-memory QEMU guest and runs a scenario in it.
//!
//! The guest is a Debian kernel (6.12 unless `--kernel` names others; see `kernels.rs`),
//! unpacked into `target/vm/kernel/<release>` and reused, with a busybox initramfs. The
//! initramfs mounts the host's `/` read-only over
//! virtio-9p under a tmpfs overlay and chroots into it, so the guest runs the binaries built on
//! the host (cxl-trace, its workload, this xtask as the scenario driver) and the host's numactl,
//! ndctl, cxl, daxctl and bpftrace. A read-write share carries results and the exit code back.
//!
//! Two machines: `hmat` (node 1 is CPU-less and slower by HMAT, so the kernel puts it in a lower
//! memory tier) and `cxl` (an emulated CXL Type-3 device that the guest turns into a NUMA node
//! through the CXL, nvdimm and dax drivers).

use std::{io::BufRead as _, path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::target_dir;

mod qemu;
pub use qemu::*;
mod kernel;
pub use kernel::*;
mod matrix;
pub use matrix::*;
mod qmp;

/// The guest machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// Two NUMA nodes, node 1 CPU-less and slower by HMAT: two memory tiers.
    Hmat,
    /// An emulated CXL Type-3 memory device, onlined as a NUMA node inside the guest.
    Cxl,
    /// The `cxl` machine, with memory errors and device events injected (through QMP).
    CxlRas,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Hmat => "hmat",
            Machine::Cxl => "cxl",
            Machine::CxlRas => "cxl-ras",
        }
    }
}

/// Options of one guest run.
pub struct VmRun {
    pub machine: Machine,
    /// A user's script to run instead of the built-in scenario.
    pub script: Option<PathBuf>,
    /// Keep the run directory (results, console log) even on success.
    pub keep: bool,
    /// Kill the guest after this long.
    pub timeout: Duration,
}

/// A Debian kernel unpacked for the guest.
pub struct GuestKernel {
    /// `6.12.N+deb12-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// Directory holding `<release>/modules.dep` etc.
    pub modules_dir: PathBuf,
}

fn vm_dir() -> PathBuf {
    target_dir().join("vm")
}

impl GuestKernel {
    /// The kernel's series, `6.12`: short enough for the run directory's QMP socket path.
    pub fn series(&self) -> String {
        crate::kernels::Release::parse(&self.release).map_or_else(
            || self.release.clone(),
            |r| {
                let (a, b) = r.series();
                format!("{a}.{b}")
            },
        )
    }
}

/// Where a guest of `machine` on kernel `k` keeps its results and console log (shared as
/// /results): one directory per machine and kernel, so guests can run side by side.
fn run_dir(machine: Machine, k: &GuestKernel) -> PathBuf {
    vm_dir().join(format!("run-{}-{}", machine.name(), k.series()))
}

#[cfg(test)]
mod tests;
