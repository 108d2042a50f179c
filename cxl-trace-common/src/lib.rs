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

/// Event kinds, the `kind` field of [`EventHeader`], as numbers (what the programs write).
pub mod kind {
    /// A [`FaultEvent`](super::FaultEvent) from `exceptions:page_fault_user`.
    pub const FAULT_USER: u16 = 1;
    /// A [`FaultEvent`](super::FaultEvent) from `exceptions:page_fault_kernel`.
    pub const FAULT_KERNEL: u16 = 2;
    /// A [`MigrateStartEvent`](super::MigrateStartEvent) from `migrate:mm_migrate_pages_start`.
    pub const MIGRATE_START: u16 = 3;
    /// A [`MigrateEvent`](super::MigrateEvent) from `migrate:mm_migrate_pages`.
    pub const MIGRATE: u16 = 4;
    /// A [`FaultLatencyEvent`](super::FaultLatencyEvent) from fexit `handle_mm_fault`.
    pub const FAULT_LATENCY: u16 = 5;
    /// A [`FolioMigrateEvent`](super::FolioMigrateEvent) from fexit `move_to_new_folio`.
    pub const FOLIO_MIGRATE: u16 = 6;
    /// A [`NumaFaultEvent`](super::NumaFaultEvent) from fentry `task_numa_fault`.
    pub const NUMA_FAULT: u16 = 7;
    /// A [`RawTpEvent`](super::RawTpEvent): the raw record of a rare tracepoint.
    pub const RAW_TP: u16 = 8;
    /// A [`PromoteDecisionEvent`](super::PromoteDecisionEvent): fexit
    /// `should_numa_migrate_memory` or `migrate_misplaced_folio_prepare`.
    pub const PROMOTE_DECISION: u16 = 9;
    /// A [`DemoteBatchEvent`](super::DemoteBatchEvent) from fexit `demote_folio_list`.
    pub const DEMOTE_BATCH: u16 = 10;
    /// A [`MigrationPteEvent`](super::MigrationPteEvent) from `migrate:remove_migration_pte`
    /// or `thp:remove_migration_pmd`: the per-folio fallback where `move_to_new_folio` cannot
    /// be hooked.
    pub const MIGRATION_PTE: u16 = 11;
    /// One past the highest kind; sizes the per-kind stat slots.
    pub const MAX: u16 = 12;
}

/// Every kind of record in the ring buffer, the table userspace dispatches on: a kind's
/// number, name and wire size live here and nowhere else, and a `match` over it is checked
/// for completeness by the compiler (decoding, redaction).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// [`FaultEvent`], user mode.
    FaultUser = kind::FAULT_USER,
    /// [`FaultEvent`], kernel mode.
    FaultKernel = kind::FAULT_KERNEL,
    /// [`MigrateStartEvent`].
    MigrateStart = kind::MIGRATE_START,
    /// [`MigrateEvent`].
    Migrate = kind::MIGRATE,
    /// [`FaultLatencyEvent`].
    FaultLatency = kind::FAULT_LATENCY,
    /// [`FolioMigrateEvent`].
    FolioMigrate = kind::FOLIO_MIGRATE,
    /// [`NumaFaultEvent`].
    NumaFault = kind::NUMA_FAULT,
    /// [`RawTpEvent`].
    RawTp = kind::RAW_TP,
    /// [`PromoteDecisionEvent`].
    PromoteDecision = kind::PROMOTE_DECISION,
    /// [`DemoteBatchEvent`].
    DemoteBatch = kind::DEMOTE_BATCH,
    /// [`MigrationPteEvent`].
    MigrationPte = kind::MIGRATION_PTE,
}

impl Kind {
    /// Every kind, in number order.
    pub const ALL: [Kind; 11] = [
        Kind::FaultUser,
        Kind::FaultKernel,
        Kind::MigrateStart,
        Kind::Migrate,
        Kind::FaultLatency,
        Kind::FolioMigrate,
        Kind::NumaFault,
        Kind::RawTp,
        Kind::PromoteDecision,
        Kind::DemoteBatch,
        Kind::MigrationPte,
    ];

    /// The kind of a record's `kind` number (`None`: a newer object than this build).
    pub const fn from_u16(k: u16) -> Option<Kind> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i] as u16 == k {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// Its name in drop and production counts (`fault_user`, `migrate`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::FaultUser => "fault_user",
            Kind::FaultKernel => "fault_kernel",
            Kind::MigrateStart => "migrate_start",
            Kind::Migrate => "migrate",
            Kind::FaultLatency => "fault_latency",
            Kind::FolioMigrate => "folio_migrate",
            Kind::NumaFault => "numa_fault",
            Kind::RawTp => "rare",
            Kind::PromoteDecision => "promote_decision",
            Kind::DemoteBatch => "demote_batch",
            Kind::MigrationPte => "migration_pte",
        }
    }

    /// Bytes of its record on the wire (for [`Kind::RawTp`], the fixed part before `data`).
    pub const fn wire_size(self) -> usize {
        match self {
            Kind::FaultUser | Kind::FaultKernel => core::mem::size_of::<FaultEvent>(),
            Kind::MigrateStart => core::mem::size_of::<MigrateStartEvent>(),
            Kind::Migrate => core::mem::size_of::<MigrateEvent>(),
            Kind::FaultLatency => core::mem::size_of::<FaultLatencyEvent>(),
            Kind::FolioMigrate => core::mem::size_of::<FolioMigrateEvent>(),
            Kind::NumaFault => core::mem::size_of::<NumaFaultEvent>(),
            Kind::RawTp => core::mem::offset_of!(RawTpEvent, data),
            Kind::PromoteDecision => core::mem::size_of::<PromoteDecisionEvent>(),
            Kind::DemoteBatch => core::mem::size_of::<DemoteBatchEvent>(),
            Kind::MigrationPte => core::mem::size_of::<MigrationPteEvent>(),
        }
    }
}

/// Indexes into the per-CPU `STATS` array.
///
/// Slots `[STAT_PRODUCED + kind]` count records successfully submitted per kind,
/// `[STAT_DROPPED + kind]` records lost because the ring buffer had no room (a failed
/// reservation). `produced = received + dropped` holds for every kind.
pub mod stat {
    use super::kind;
    /// Base of the "submitted" counters, one per event kind.
    pub const PRODUCED: u32 = 0;
    /// Base of the "dropped" counters, one per event kind.
    pub const DROPPED: u32 = kind::MAX as u32;
    /// Forks whose child could not be added to the follow map (map full).
    pub const FOLLOW_FULL: u32 = 2 * kind::MAX as u32;
    /// Tracepoint fields that could not be read (bpf_probe_read failed).
    pub const READ_ERRORS: u32 = 2 * kind::MAX as u32 + 1;
    /// Number of slots.
    pub const NR: u32 = 2 * kind::MAX as u32 + 2;
}

/// Flag bits of [`Config::flags`].
pub mod config_flags {
    /// Only emit events of processes in the follow map.
    pub const FILTER: u32 = 1;
    /// Do not emit fault events (they are still counted in `STATS`).
    pub const NO_FAULT_EVENTS: u32 = 2;
    /// Only emit events of tasks in the cgroup v2 [`Config::cgroup_id`](super::Config) or below.
    pub const CGROUP: u32 = 4;
    /// Only emit events of threads whose `comm` is [`Config::comm`](super::Config).
    pub const COMM: u32 = 8;
}

/// Runtime configuration handed to the programs as a global at load time.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `config_flags::*` bits.
    pub flags: u32,
    /// Depth of the cgroup below the cgroup v2 root (the root is 0).
    pub cgroup_level: u32,
    /// Id (kernfs inode number) of the cgroup v2 directory to follow.
    pub cgroup_id: u64,
    /// Thread name to follow, NUL-padded as the kernel stores it.
    pub comm: [u8; COMM_LEN],
    /// Unread ring-buffer bytes from which a submit wakes the reader (1/32 of the ring, set
    /// once at load so the hot path does not ask the ring its size for every record).
    pub wake_bytes: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// Offsets of the fields of `exceptions:page_fault_{user,kernel}` (from the tracefs format).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultLayout {
    /// `unsigned long address`.
    pub address: u32,
    /// `unsigned long ip`.
    pub ip: u32,
    /// `unsigned long error_code`.
    pub error_code: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

impl FaultLayout {
    /// The layout every x86 kernel since 4.x has used.
    pub const DEFAULT: Self = Self {
        address: 8,
        ip: 16,
        error_code: 24,
        _reserved: 0,
    };
}

/// Offsets of the fields of `sched:sched_process_fork` the follow filter needs.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkLayout {
    /// `pid_t child_pid` (44 up to 6.17, 20 from 6.18 where the comms became `__data_loc`).
    pub child_pid: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

impl ForkLayout {
    /// The layout of kernels before 6.18 (`char parent_comm[16]` inline).
    pub const DEFAULT: Self = Self {
        child_pid: 44,
        _reserved: 0,
    };
}

/// Offsets of the fields of `migrate:mm_migrate_pages` and `mm_migrate_pages_start`.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrateLayout {
    /// `unsigned long succeeded`.
    pub succeeded: u32,
    /// `unsigned long failed`.
    pub failed: u32,
    /// `unsigned long thp_succeeded`.
    pub thp_succeeded: u32,
    /// `unsigned long thp_failed`.
    pub thp_failed: u32,
    /// `unsigned long thp_split`.
    pub thp_split: u32,
    /// `unsigned long large_folio_split` (6.7+); `u32::MAX` when the kernel has no such field.
    pub large_folio_split: u32,
    /// `enum migrate_mode mode`.
    pub mode: u32,
    /// `int reason` (52 up to 6.6, 60 from 6.7).
    pub reason: u32,
    /// `enum migrate_mode mode` of `mm_migrate_pages_start`.
    pub start_mode: u32,
    /// `int reason` of `mm_migrate_pages_start`.
    pub start_reason: u32,
}

impl MigrateLayout {
    /// Marks a field the running kernel does not have.
    pub const ABSENT: u32 = u32::MAX;
    /// The 6.7+ layout.
    pub const DEFAULT: Self = Self {
        succeeded: 8,
        failed: 16,
        thp_succeeded: 24,
        thp_failed: 32,
        thp_split: 40,
        large_folio_split: 48,
        mode: 56,
        reason: 60,
        start_mode: 8,
        start_reason: 12,
    };
}

/// Addresses and layout facts of the running kernel for the function hooks.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// Address of the `vmemmap_base` variable (from /proc/kallsyms), or 0 when the kernel has a
    /// fixed vmemmap (then [`KernelLayout::vmemmap`] is the base itself).
    pub vmemmap_base_addr: u64,
    /// The vmemmap base when it is fixed.
    pub vmemmap: u64,
    /// `sizeof(struct page)`.
    pub page_struct_size: u64,
    /// Offset of `pfn` in `kmem:mm_page_alloc`.
    pub alloc_pfn: u32,
    /// Offset of `gfp_flags` in `kmem:mm_page_alloc`.
    pub alloc_gfp: u32,
    /// Address of the kernel's `node_data` array of `struct pglist_data *` (kallsyms), 0 if
    /// unknown; a pgdat pointer is turned into its node id by finding it in this array.
    pub node_data_addr: u64,
    /// Entries of `node_data` to search (possible node ids, at most 64).
    pub nr_node_ids: u32,
    /// Byte offset, in a large folio's first tail `struct page`, of the byte holding the
    /// folio's order: 0 (`_flags_1 & 0xff`) from 6.6, 17 (`_folio_order`/`compound_order`)
    /// before; `u32::MAX` where the layout is not known to hold (then no folio size is
    /// recorded at all: not even small vs large).
    pub folio_order_offset: u32,
}

impl KernelLayout {
    /// x86_64 with 4-level paging and no memory randomisation.
    pub const DEFAULT: Self = Self {
        vmemmap_base_addr: 0,
        vmemmap: 0xffff_ea00_0000_0000,
        page_struct_size: 64,
        alloc_pfn: 8,
        alloc_gfp: 20,
        node_data_addr: 0,
        nr_node_ids: 0,
        folio_order_offset: u32::MAX,
    };

    /// [`KernelLayout::folio_order_offset`] for a kernel release such as `6.12.48+deb13-amd64`,
    /// used only when the kernel has no BTF to read the layout from.
    pub fn folio_order_offset_for(release: &str) -> u32 {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next().and_then(|p| p.parse::<u32>().ok());
        let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
        // Without BTF nothing tells the layout: trusted up to 6.12 (checked in the VM), not
        // after (7.x changed the tail word).
        match (major, minor) {
            (Some(ma), Some(mi)) if (ma, mi) > (6, 12) => u32::MAX,
            (Some(ma), Some(mi)) if (ma, mi) >= (6, 6) => 0,
            (Some(ma), Some(_)) if ma >= 4 => 17,
            _ => u32::MAX,
        }
    }
}

/// Rare tracepoints captured raw ([`RawTpEvent`]) and decoded in userspace with the field
/// offsets of their tracefs format.
pub mod raw {
    /// `sched:sched_move_numa`.
    pub const SCHED_MOVE_NUMA: u16 = 0;
    /// `sched:sched_stick_numa`.
    pub const SCHED_STICK_NUMA: u16 = 1;
    /// `sched:sched_swap_numa`.
    pub const SCHED_SWAP_NUMA: u16 = 2;
    /// `vmscan:mm_vmscan_kswapd_wake`.
    pub const KSWAPD_WAKE: u16 = 3;
    /// `ras:memory_failure_event`.
    pub const MEMORY_FAILURE: u16 = 4;
    /// `mce:mce_record`.
    pub const MCE_RECORD: u16 = 5;
    /// `cxl:cxl_general_media`.
    pub const CXL_GENERAL_MEDIA: u16 = 6;
    /// `cxl:cxl_dram`.
    pub const CXL_DRAM: u16 = 7;
    /// `cxl:cxl_memory_module`.
    pub const CXL_MEMORY_MODULE: u16 = 8;
    /// `cxl:cxl_poison`.
    pub const CXL_POISON: u16 = 9;
    /// Number of raw tracepoints.
    pub const NR: usize = 10;
    /// Bytes of a record kept (longer records are cut).
    pub const DATA: usize = 256;
}

/// Where each function hook finds the arguments it reads: the index of the parameter in the
/// function's prototype (fentry/fexit context slot, or kprobe argument register), and for an
/// exit the slot of the return value, which follows the last parameter.
///
/// Userspace finds them by name and type in the kernel's BTF, so a parameter added or moved
/// between kernels (`demote_folio_list` gained `memcg` as its third parameter) shifts the
/// slots instead of making the programs read a pointer as a page count. The defaults are the
/// 6.12 prototypes.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookArgs {
    /// `handle_mm_fault`: `address`, `regs`, return slot.
    pub fault_address: u8,
    pub fault_regs: u8,
    pub fault_ret: u8,
    /// `task_numa_fault`: `last_cpupid`, `mem_node`, `pages`, `flags`.
    pub numa_last_cpupid: u8,
    pub numa_mem_node: u8,
    pub numa_pages: u8,
    pub numa_flags: u8,
    /// `move_to_new_folio`: `dst`, `src`, return slot.
    pub folio_dst: u8,
    pub folio_src: u8,
    pub folio_ret: u8,
    /// `should_numa_migrate_memory`: `src_nid`, `dst_cpu`, return slot.
    pub should_src_nid: u8,
    pub should_dst_cpu: u8,
    pub should_ret: u8,
    /// `mod_node_page_state`: `delta`.
    pub node_stat_delta: u8,
    /// `mod_node_page_state`: `item`.
    pub node_stat_item: u8,
    /// `migrate_misplaced_folio_prepare`: `node`, return slot.
    pub prepare_node: u8,
    pub prepare_ret: u8,
    /// `folio_isolate_lru`: return slot.
    pub isolate_ret: u8,
    /// `demote_folio_list`: `pgdat`, return slot.
    pub demote_pgdat: u8,
    pub demote_ret: u8,
    /// The value of `PGPROMOTE_CANDIDATE` in `enum node_stat_item` (from BTF; `u16::MAX`:
    /// unknown, count every item). 7.x also counts `PGPROMOTE_CANDIDATE_NRL` inside the
    /// decision, which must not be taken for rate-limited candidates.
    pub promote_candidate_item: u16,
    /// Reserved, zero.
    pub _reserved: [u8; 2],
}

impl HookArgs {
    /// The prototypes of 6.12.
    pub const DEFAULT: Self = Self {
        fault_address: 1,
        fault_regs: 3,
        fault_ret: 4,
        numa_last_cpupid: 0,
        numa_mem_node: 1,
        numa_pages: 2,
        numa_flags: 3,
        folio_dst: 0,
        folio_src: 1,
        folio_ret: 3,
        should_src_nid: 2,
        should_dst_cpu: 3,
        should_ret: 4,
        node_stat_delta: 2,
        node_stat_item: 1,
        prepare_node: 2,
        prepare_ret: 3,
        isolate_ret: 1,
        demote_pgdat: 1,
        demote_ret: 2,
        promote_candidate_item: u16::MAX,
        _reserved: [0; 2],
    };
}

/// Bytes to copy of each raw tracepoint's record (from its format; at most [`raw::DATA`]).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLayout {
    /// Indexed by the `raw::*` ids.
    pub size: [u32; raw::NR],
    /// Reserved, zero.
    pub _reserved: [u32; 2],
}

impl RawLayout {
    /// Copies nothing until userspace says how long the records are.
    pub const DEFAULT: Self = Self {
        size: [0; raw::NR],
        _reserved: [0; 2],
    };
}

/// Flag bits of [`FaultLatencyEvent::flags`].
pub mod fault_flags {
    /// `handle_mm_fault` was called without registers: a get_user_pages fault.
    pub const GUP: u32 = 1;
    /// A movable page was allocated during the fault (its pfn is in `alloc_pfn`).
    pub const ALLOC: u32 = 2;
    /// `task_numa_fault` ran during the fault: a NUMA hinting fault.
    pub const NUMA_HINT: u32 = 4;
    /// The hinting fault migrated the page (`TNF_MIGRATED`).
    pub const NUMA_MIGRATED: u32 = 8;
    /// The hinting fault tried and failed to migrate (`TNF_MIGRATE_FAIL`).
    pub const NUMA_MIGRATE_FAIL: u32 = 16;
    /// The page was local to the faulting CPU (`TNF_FAULT_LOCAL`).
    pub const NUMA_LOCAL: u32 = 32;
    /// Some round of the fault returned `VM_FAULT_MAJOR` (I/O), even if a retry followed.
    pub const MAJOR: u32 = 64;
    /// Internal: the last exit returned `VM_FAULT_RETRY`; the next entry continues this fault.
    pub const RETRY_PENDING: u32 = 1 << 31;
}

/// A page fault with its latency (fentry/fexit `handle_mm_fault`; retries are folded in).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultLatencyEvent {
    /// Common header; `kind` is `FAULT_LATENCY`; `ts_ns` is the end of the fault.
    pub hdr: EventHeader,
    /// Faulting address.
    pub address: u64,
    /// From the first entry to the last exit, ns.
    pub latency_ns: u64,
    /// pfn of the last movable page allocated during the fault, or `u64::MAX`.
    pub alloc_pfn: u64,
    /// `vm_fault_t` returned by the last call.
    pub ret: u32,
    /// [`fault_flags`] bits.
    pub flags: u32,
    /// `mem_node` of `task_numa_fault`, or `u32::MAX`.
    pub numa_node: u32,
    /// Times the fault was retried (`VM_FAULT_RETRY`).
    pub retries: u32,
    /// `comm` of the current thread.
    pub comm: [u8; COMM_LEN],
}

/// One folio migrated (fentry/fexit `move_to_new_folio`).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioMigrateEvent {
    /// Common header; `kind` is `FOLIO_MIGRATE`.
    pub hdr: EventHeader,
    /// pfn of the source folio.
    pub src_pfn: u64,
    /// pfn of the destination folio.
    pub dst_pfn: u64,
    /// `folio->mapping` (anon_vma or address_space, with its tag bits): with `index`, names the
    /// page independently of where it lives.
    pub mapping: u64,
    /// `folio->index`.
    pub index: u64,
    /// Time spent in `move_to_new_folio` (the copy), ns, or [`COPY_UNKNOWN`].
    pub copy_ns: u64,
    /// Its return value: 0 on success, a negative errno otherwise.
    pub rc: i32,
    /// Bits 0..16: `enum migrate_reason` of the batch in progress on this thread (`0xffff`
    /// when none); bits 24..32: the folio's size, a [`folio_size`] code. `u32::MAX` (written
    /// before sizes were recorded) means neither is known.
    pub reason: u32,
}

/// Folio size codes in the top byte of [`FolioMigrateEvent::reason`].
pub mod folio_size {
    /// Not recorded.
    pub const UNKNOWN: u32 = 0;
    /// One base page (the folio is not large: its next `struct page` is no tail of it).
    pub const SMALL: u32 = 1;
    /// A large folio whose order was not read (or not plausible). Codes 2 to 0xfd are
    /// `order + 1` of a large folio whose order was read.
    pub const LARGE: u32 = 0xfe;

    /// Base pages of a folio of this code, when known.
    pub const fn pages(code: u32) -> Option<u64> {
        if code >= SMALL && code < LARGE && code <= 21 {
            Some(1u64 << (code - 1))
        } else {
            None
        }
    }
    /// Bit position of the code.
    pub const SHIFT: u32 = 24;
    /// The reason bits.
    pub const REASON_MASK: u32 = 0xffff;

    /// Packs a reason (`u32::MAX` for none) and a size code.
    pub const fn pack(reason: u32, size: u32) -> u32 {
        (reason & REASON_MASK) | (size << SHIFT)
    }

    /// (reason or `None`, size code) of a packed field.
    pub const fn unpack(v: u32) -> (Option<u32>, u32) {
        if v == u32::MAX {
            return (None, UNKNOWN);
        }
        let r = v & REASON_MASK;
        (if r == REASON_MASK { None } else { Some(r) }, v >> SHIFT)
    }
}

/// A folio mapped again after migration, from the tracepoints alone: the migration entry
/// `set_migration_pte`/`set_migration_pmd` wrote (it encodes the source pfn) and the entry
/// `remove_migration_pte`/`remove_migration_pmd` wrote in its place (the destination pfn, or
/// the source again when the folio stayed). One event per folio: further mappings of the same
/// folio by the same thread are not sent. Only emitted inside a migration batch.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationPteEvent {
    /// Common header; `kind` is `MIGRATION_PTE`.
    pub hdr: EventHeader,
    /// User virtual address of the mapping.
    pub addr: u64,
    /// The migration entry written at unmap time, or `u64::MAX` when it was not seen.
    pub old_entry: u64,
    /// The page table entry written back.
    pub new_entry: u64,
    /// From unmap (set) to remap (remove), ns; 0 when the set was not seen.
    pub unmapped_ns: u64,
    /// Folio order (`order` field; 9 for a PMD).
    pub order: u32,
    /// `enum migrate_reason` of the batch in progress on this thread.
    pub reason: u32,
    /// 1 for a PMD entry (`thp:*_migration_pmd`), 0 for a PTE.
    pub pmd: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// Stages of [`PromoteDecisionEvent::stage`].
pub mod decision_stage {
    /// `should_numa_migrate_memory` returned: `result` is 1 (migrate) or 0 (refused),
    /// `target` is the destination CPU.
    pub const SHOULD_MIGRATE: u32 = 0;
    /// `migrate_misplaced_folio_prepare` returned: `result` is its return code (0 or a
    /// negative errno), `target` is the destination node.
    pub const PREPARE: u32 = 1;
}

/// What `folio_isolate_lru` did inside `migrate_misplaced_folio_prepare`
/// ([`PromoteDecisionEvent::isolate`]).
pub mod isolate {
    /// Not called: the target node was refused before isolation.
    pub const NOT_CALLED: u32 = 0;
    /// Called and the folio was isolated.
    pub const OK: u32 = 1;
    /// Called and isolation failed.
    pub const FAILED: u32 = 2;
}

/// One step of the NUMA balancing migration decision of a hinting fault.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromoteDecisionEvent {
    /// Common header; `kind` is `PROMOTE_DECISION`.
    pub hdr: EventHeader,
    /// `decision_stage::*`.
    pub stage: u32,
    /// See [`decision_stage`].
    pub result: i32,
    /// Node of the folio (`SHOULD_MIGRATE`), -1 for `PREPARE`.
    pub src_nid: i32,
    /// Destination CPU (`SHOULD_MIGRATE`) or node (`PREPARE`).
    pub target: i32,
    /// Pages added to the node's `pgpromote_candidate` counter during the decision: the folio
    /// passed the hot threshold and went to the promotion rate limiter.
    pub candidate_pages: i64,
    /// `isolate::*` (`PREPARE` only).
    pub isolate: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// A demotion batch (fexit `demote_folio_list`).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoteBatchEvent {
    /// Common header; `kind` is `DEMOTE_BATCH`.
    pub hdr: EventHeader,
    /// Node reclaimed (the source of the demotion), -1 if its pgdat was not found.
    pub src_nid: i32,
    /// Pages demoted.
    pub nr_succeeded: u32,
}

/// A NUMA hinting fault (fentry `task_numa_fault`).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumaFaultEvent {
    /// Common header; `kind` is `NUMA_FAULT`.
    pub hdr: EventHeader,
    /// Node the page is on after the fault.
    pub mem_node: i32,
    /// Pages covered.
    pub pages: i32,
    /// `TNF_*` flags.
    pub flags: i32,
    /// `last_cpupid` of the page.
    pub last_cpupid: i32,
}

/// The raw record of a rare tracepoint (see [`raw`]), decoded in userspace.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawTpEvent {
    /// Common header; `kind` is `RAW_TP`.
    pub hdr: EventHeader,
    /// `raw::*` id.
    pub tp: u16,
    /// Bytes of `data` that hold the record.
    pub len: u16,
    /// Reserved, zero.
    pub _reserved: u32,
    /// The record, from its common header on.
    pub data: [u8; raw::DATA],
}

/// The common start of every record in the ring buffer.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Process id (kernel tgid) of the current task.
    pub pid: u32,
    /// Thread id (kernel pid) of the current task.
    pub tid: u32,
    /// One of [`kind`].
    pub kind: u16,
    /// CPU the event happened on.
    pub cpu: u16,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// A page fault exception (`exceptions:page_fault_user` / `page_fault_kernel`).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultEvent {
    /// Common header; `kind` is `FAULT_USER` or `FAULT_KERNEL`.
    pub hdr: EventHeader,
    /// Faulting address (CR2).
    pub address: u64,
    /// Instruction pointer of the faulting instruction (a kernel address for kernel faults).
    pub ip: u64,
    /// x86 page fault error code (`X86_PF_*` bits).
    pub error_code: u64,
    /// `comm` of the current thread.
    pub comm: [u8; COMM_LEN],
}

/// Start of a migration batch (`migrate:mm_migrate_pages_start`).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrateStartEvent {
    /// Common header; `kind` is `MIGRATE_START`.
    pub hdr: EventHeader,
    /// `enum migrate_mode`.
    pub mode: u32,
    /// `enum migrate_reason`.
    pub reason: u32,
    /// `comm` of the current thread.
    pub comm: [u8; COMM_LEN],
}

/// End of a migration batch (`migrate:mm_migrate_pages`).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrateEvent {
    /// Common header; `kind` is `MIGRATE`.
    pub hdr: EventHeader,
    /// Pages migrated (base pages; a THP counts as its number of pages).
    pub succeeded: u64,
    /// Pages that failed to migrate.
    pub failed: u64,
    /// THPs migrated.
    pub thp_succeeded: u64,
    /// THPs that failed.
    pub thp_failed: u64,
    /// THPs split.
    pub thp_split: u64,
    /// Large folios split (6.7+, 0 before).
    pub large_folio_split: u64,
    /// `enum migrate_mode`.
    pub mode: u32,
    /// `enum migrate_reason`.
    pub reason: u32,
    /// `comm` of the current thread.
    pub comm: [u8; COMM_LEN],
}

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
    assert!(size_of::<FaultLayout>() == 16);
    assert!(size_of::<ForkLayout>() == 8);
    assert!(size_of::<MigrateLayout>() == 40);
    assert!(size_of::<KernelLayout>() == 48);
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
