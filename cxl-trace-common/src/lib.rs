//! Wire types shared by the cxl-trace eBPF programs (`cxl-trace-ebpf`) and userspace (`cxl-trace`).
//!
//! Every record the kernel side puts into the `EVENTS` ring buffer starts with an [`EventHeader`];
//! its `kind` says which `#[repr(C)]` struct the whole record is. All structs are plain old data
//! with explicit padding, so their layout is the same on the BPF target and on the host; the
//! size tests at the bottom of this file pin it.
//!
//! Field offsets of tracepoints move between kernel versions (the `reason` of
//! `migrate:mm_migrate_pages` went from 52 to 60 in 6.7, `sched:sched_process_fork` switched to
//! `__data_loc` strings in 6.18). Rust eBPF has no CO-RE, so userspace reads the tracefs `format`
//! files and hands the offsets to the programs as globals of the `*Layout` types below.
#![no_std]

/// Length of a task command name, as in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Name of the ring buffer map that carries all events.
pub const EVENTS_MAP: &str = "EVENTS";
/// Name of the per-CPU array of `u64` counters indexed by the `STAT_*` constants.
pub const STATS_MAP: &str = "STATS";
/// Name of the hash map of followed process ids (tgid -> 1), used when [`Config::filter`] is set.
pub const FOLLOW_MAP: &str = "FOLLOW";
/// Name of the [`Config`] global.
pub const CONFIG_GLOBAL: &str = "CONFIG";
/// Name of the [`FaultLayout`] global.
pub const FAULT_LAYOUT_GLOBAL: &str = "FAULT_LAYOUT";
/// Name of the [`ForkLayout`] global.
pub const FORK_LAYOUT_GLOBAL: &str = "FORK_LAYOUT";
/// Name of the [`MigrateLayout`] global.
pub const MIGRATE_LAYOUT_GLOBAL: &str = "MIGRATE_LAYOUT";
/// Name of the [`KernelLayout`] global.
pub const KERNEL_LAYOUT_GLOBAL: &str = "KERNEL_LAYOUT";
/// Name of the [`RawLayout`] global.
pub const RAW_LAYOUT_GLOBAL: &str = "RAW_LAYOUT";
/// Name of the [`HookArgs`] global.
pub const HOOK_ARGS_GLOBAL: &str = "HOOK_ARGS";

/// Maximum number of followed processes (size of [`FOLLOW_MAP`]).
pub const FOLLOW_MAX: u32 = 16_384;

/// Records the ring-buffer benchmark's program writes per `getpgid(2)` of a followed process
/// (attached only for `--ring-bench`).
pub const RING_BENCH_BATCH: u64 = 16;

/// `FolioMigrateEvent::copy_ns` when the entry of the copy was not seen (the thread slept and
/// resumed on another CPU, or another thread took this CPU's slot meanwhile).
pub const COPY_UNKNOWN: u64 = u64::MAX;

mod events;
mod kinds;
mod layouts;
pub use events::*;
pub use kinds::*;
pub use layouts::*;

/// `aya::Pod` for the globals userspace sets, proven by `bytemuck::Pod` (derived above, which
/// checks at compile time that the type has no padding and only plain fields).
#[cfg(feature = "user")]
macro_rules! aya_pod {
    ($($t:ty),* $(,)?) => {$(
        const _: () = {
            const fn proof<T: bytemuck::Pod>() {}
            proof::<$t>()
        };
        // SAFETY: `$t` is `bytemuck::Pod` (checked by the `proof` above): `#[repr(C)]`,
        // `Copy`, no padding, every bit pattern valid; that is what `aya::Pod` requires.
        unsafe impl aya::Pod for $t {}
    )*};
}

#[cfg(feature = "user")]
aya_pod!(
    Config,
    FaultLayout,
    ForkLayout,
    MigrateLayout,
    KernelLayout,
    RawLayout,
    HookArgs,
    ProcFaults,
    SlotPage,
    FaultTotals,
    LatHist,
    PfnRange,
    PfnRanges,
);

// Layout checks, evaluated at compile time on both targets.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<EventHeader>() == 24);
    assert!(align_of::<EventHeader>() == 8);
    assert!(offset_of!(EventHeader, kind) == 16);
    assert!(offset_of!(EventHeader, cpu) == 18);
    assert!(size_of::<FaultEvent>() == 64);
    assert!(offset_of!(FaultEvent, address) == 24);
    assert!(offset_of!(FaultEvent, error_code) == 40);
    assert!(offset_of!(FaultEvent, comm) == 48);
    assert!(size_of::<MigrateStartEvent>() == 48);
    assert!(size_of::<MigrateEvent>() == 96);
    assert!(offset_of!(MigrateEvent, mode) == 72);
    assert!(size_of::<Config>() == 40);
    assert!(size_of::<ProcFaults>() == 152);
    assert!(size_of::<FaultTotals>() == 256);
    assert!(size_of::<SlotPage>() == 152 * fault_agg::SLOTS_PER_PAGE as usize);
    assert!(size_of::<LatHist>() == 32 + 8 * lat_agg::BUCKETS);
    assert!(size_of::<PfnRanges>() == 8 + 24 * lat_agg::RANGES);
    // The largest latency lands in the last bucket.
    assert!(latency_bucket(lat_agg::MAX_NS) == lat_agg::BUCKETS - 1);
    assert!(size_of::<FaultLayout>() == 16);
    assert!(size_of::<ForkLayout>() == 8);
    assert!(size_of::<MigrateLayout>() == 40);
    assert!(size_of::<KernelLayout>() == 56);
    assert!(size_of::<RawLayout>() == 48);
    assert!(size_of::<HookArgs>() == 24);
    assert!(size_of::<FaultLatencyEvent>() == 80);
    assert!(size_of::<FolioMigrateEvent>() == 72);
    assert!(size_of::<NumaFaultEvent>() == 40);
    assert!(size_of::<RawTpEvent>() == 288);
    assert!(size_of::<PromoteDecisionEvent>() == 56);
    assert!(size_of::<DemoteBatchEvent>() == 32);
    assert!(size_of::<MigrationPteEvent>() == 72);
    assert!(offset_of!(RawTpEvent, data) == 32);
};

#[cfg(test)]
mod tests;
