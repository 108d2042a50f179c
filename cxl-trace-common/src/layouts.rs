//! What userspace tells the programs before they load: filters, tracepoint offsets, struct
//! layouts and hooked functions' argument slots of the running kernel.

use crate::*;

/// Flag bits of [`Config::flags`].
pub mod config_flags {
    /// Only emit events of processes in the follow map.
    pub const FILTER: u32 = 1;
    /// Only emit events of tasks in the cgroup v2 [`Config::cgroup_id`](super::Config) or below.
    pub const CGROUP: u32 = 4;
    /// Only emit events of threads whose `comm` is [`Config::comm`](super::Config).
    pub const COMM: u32 = 8;
    /// Count faults in the kernel ([`fault_agg`](super::fault_agg)) instead of sending a
    /// record per fault: the live modes, which show counts, not single faults.
    pub const FAULT_AGG: u32 = 16;
    /// Add timed faults to per-tier, per-class histograms in the kernel
    /// ([`lat_agg`](super::lat_agg)) instead of sending a record per timed fault.
    pub const LATENCY_AGG: u32 = 32;
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
    /// Offset of `comm` in `struct task_struct` (kernel BTF): the programs then load the
    /// thread name from the current task directly instead of calling `bpf_get_current_comm`
    /// (which costs 45-70 ns a call here); `u32::MAX` when unknown (then the helper).
    pub task_comm: u32,
    /// Padding (zero).
    pub _pad: u32,
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
        task_comm: u32::MAX,
        _pad: 0,
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
/// `enum migrate_reason` values the kernel side acts on (the same since 3.x).
pub const MR_MEMORY_FAILURE: u32 = 1;
/// `MR_MEMORY_HOTPLUG`.
pub const MR_MEMORY_HOTPLUG: u32 = 2;

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
    /// `ras:memory_failure_event` and every id after it are memory errors or their kills.
    pub const FIRST_URGENT: u16 = MEMORY_FAILURE;
    /// `signal:signal_generate`, kept only for SIGBUS (the kernel's memory-error kill).
    pub const SIGNAL_GENERATE: u16 = 10;
    /// Number of raw tracepoints.
    pub const NR: usize = 11;
    /// Offset of `int sig` in `signal:signal_generate` (the same on every kernel since the
    /// tracepoint was added in 3.x; userspace checks it against the format before attaching).
    pub const SIGNAL_SIG_OFFSET: usize = 8;
    /// The signal kept.
    pub const SIGBUS: i32 = 7;
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
    pub _reserved: [u32; 1],
}

impl RawLayout {
    /// Copies nothing until userspace says how long the records are.
    pub const DEFAULT: Self = Self {
        size: [0; raw::NR],
        _reserved: [0; 1],
    };
}

/// In-kernel aggregation of page faults for the live modes (`top`, `stat`, the exporter): the
/// fault programs count into per-CPU arrays instead of sending a record per fault.
pub mod fault_agg {
    /// Counters per slot: `mode * KINDS + kind`, mode 0 user and 1 kernel, kind the index in
    /// [`fault_kind_index`](super::fault_kind_index)'s order.
    pub const KINDS: usize = 8;
    /// Modes (user, kernel).
    pub const MODES: usize = 2;
    /// Counters per slot.
    pub const COUNTERS: usize = KINDS * MODES;
    /// Per-process slots per CPU; a process takes slot `pid % SLOTS` on the CPUs it faults on.
    pub const SLOTS: u32 = 1024;
    /// Slots per entry of the map (one lookup reads 128 slots: 19 KiB per CPU).
    pub const SLOTS_PER_PAGE: u32 = 128;
    /// Entries of the map.
    pub const PAGES: u32 = SLOTS / SLOTS_PER_PAGE;
    /// Faults whose process found its slot taken by another (`FaultTotals::other`), as a slot
    /// number in userspace's reads.
    pub const OTHER: u32 = SLOTS;
    /// Name of the per-CPU array of [`SlotPage`](super::SlotPage), `PAGES` entries.
    pub const PROC_MAP: &str = "PROC_FAULTS";
    /// Name of the per-CPU array of one [`FaultTotals`](super::FaultTotals): every fault.
    pub const TOTALS_MAP: &str = "FAULT_TOTALS";
    /// Name of the per-CPU array of `u32`, `SLOTS` entries: the pid (exited) whose slot the
    /// next process that finds it taken may take over; userspace sets it, the kernel clears.
    pub const RELEASE_MAP: &str = "FAULT_RELEASE";
    /// Name of the LRU hash map of pid to the thread name it exited with.
    pub const EXIT_COMM_MAP: &str = "EXIT_COMM";
    /// Its size.
    pub const EXIT_COMMS: u32 = 8192;
}

/// One process's fault counts on one CPU (a slot of [`fault_agg::PROC_MAP`]).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcFaults {
    /// The process (tgid) that holds the slot; 0: free.
    pub pid: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// Its thread name when it took the slot.
    pub comm: [u8; COMM_LEN],
    /// Faults by mode and kind, see [`fault_agg::COUNTERS`].
    pub counts: [u64; fault_agg::COUNTERS],
}

/// `SLOTS_PER_PAGE` slots of [`fault_agg::PROC_MAP`] on one CPU.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPage {
    /// Slots `page * SLOTS_PER_PAGE ..`.
    pub slots: [ProcFaults; fault_agg::SLOTS_PER_PAGE as usize],
}

/// Fault totals on one CPU (the single entry of [`fault_agg::TOTALS_MAP`]).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultTotals {
    /// Faults by mode and kind, see [`fault_agg::COUNTERS`].
    pub counts: [u64; fault_agg::COUNTERS],
    /// Of those, faults of processes that found their slot taken (counted by no process).
    pub other: [u64; fault_agg::COUNTERS],
}

/// The access kind of an x86 page-fault error code, as an index: 0 read of a page not present,
/// 1 write to a page not present, 2 write to a present read-only page, 3 read of a present
/// page, 4 instruction fetch, 5 reserved bit, 6 protection key. One function for the kernel's
/// counters and userspace's decoding, so both classify alike.
#[inline(always)]
pub const fn fault_kind_index(code: u64) -> usize {
    const PROT: u64 = 1;
    const WRITE: u64 = 2;
    const RSVD: u64 = 8;
    const INSTR: u64 = 16;
    const PK: u64 = 32;
    if code & RSVD != 0 {
        5
    } else if code & PK != 0 {
        6
    } else if code & INSTR != 0 {
        4
    } else {
        match (code & WRITE != 0, code & PROT != 0) {
            (false, false) => 0,
            (true, false) => 1,
            (true, true) => 2,
            (false, true) => 3,
        }
    }
}

/// In-kernel fault-latency histograms of the live modes: log-linear buckets (16 linear
/// sub-buckets per power of two, under 6.25% wide) per tier slot and fault class.
pub mod lat_agg {
    /// Linear sub-buckets per power of two (as bits).
    pub const SUB_BITS: u32 = 4;
    /// Buckets: exact below 16 ns, then 16 per power of two up to 2^40 ns (18 minutes).
    pub const BUCKETS: usize = 592;
    /// The largest latency counted; longer ones count in the last bucket.
    pub const MAX_NS: u64 = (1 << 40) - 1;
    /// Tier slots: the tiers in rank order, `UNKNOWN_TIER` for a page of no known node.
    pub const TIER_SLOTS: u32 = 8;
    /// The slot of faults whose page's tier is unknown.
    pub const UNKNOWN_TIER: u32 = TIER_SLOTS - 1;
    /// Fault classes (first touch, minor, major, hint local, hint remote).
    pub const CLASSES: u32 = 5;
    /// Nodes the node-to-tier table covers.
    pub const NODES: u32 = 64;
    /// pfn ranges the pfn-to-node table holds.
    pub const RANGES: usize = 64;
    /// Name of the per-CPU array of [`LatHist`](super::LatHist), `TIER_SLOTS * CLASSES`.
    pub const HIST_MAP: &str = "FAULT_LAT";
    /// Name of the array of node to tier slot (`u32`, `NODES` entries).
    pub const NODE_TIER_MAP: &str = "NODE_TIER";
    /// Name of the one-entry array of [`PfnRanges`](super::PfnRanges).
    pub const RANGES_MAP: &str = "PFN_RANGES";
}

/// One tier slot and class of fault latencies on one CPU.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatHist {
    /// Faults.
    pub n: u64,
    /// Their latencies added up (each clamped to `MAX_NS`), ns.
    pub sum_ns: u64,
    /// Faults that took more than one round (`VM_FAULT_RETRY`).
    pub retried: u64,
    /// get_user_pages faults.
    pub gup: u64,
    /// Faults per bucket of [`latency_bucket`].
    pub counts: [u64; lat_agg::BUCKETS],
}

/// A range of pfns of one node.
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PfnRange {
    /// First pfn.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// Its node.
    pub node: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// The pfn-to-node table (the online memory blocks, merged).
#[repr(C)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PfnRanges {
    /// Ranges used.
    pub len: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// The ranges, `len` of them.
    pub ranges: [PfnRange; lat_agg::RANGES],
}

/// floor(log2(v)) for v >= 1, by halving (the BPF target has no count-leading-zeros).
#[inline(always)]
pub const fn log2_floor(mut v: u64) -> u32 {
    let mut r = 0;
    if v >= 1 << 32 {
        v >>= 32;
        r += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        r += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        r += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        r += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        r += 2;
    }
    if v >= 1 << 1 {
        r += 1;
    }
    r
}

/// The bucket of a latency: `v` itself below 16, then 16 linear sub-buckets per power of two.
#[inline(always)]
pub const fn latency_bucket(v: u64) -> usize {
    if v < 16 {
        return v as usize;
    }
    let v = if v > lat_agg::MAX_NS {
        lat_agg::MAX_NS
    } else {
        v
    };
    let k = log2_floor(v);
    let sub = (v >> (k - lat_agg::SUB_BITS)) & 15;
    ((k - 3) as usize) * 16 + sub as usize
}

/// The lowest latency of bucket `i` and its width, ns.
pub const fn bucket_bounds(i: usize) -> (u64, u64) {
    if i < 16 {
        return (i as u64, 1);
    }
    let k = (i / 16) as u32 + 3;
    let sub = (i % 16) as u64;
    (
        (16 + sub) << (k - lat_agg::SUB_BITS),
        1 << (k - lat_agg::SUB_BITS),
    )
}

/// The class of a timed fault, as an index in the order first touch, minor, major, hint
/// local, hint remote (userspace's `FaultClass::ALL`).
#[inline(always)]
pub const fn fault_class_index(flags: u32, ret: u32) -> u32 {
    const VM_FAULT_MAJOR: u32 = 4;
    if flags & fault_flags::NUMA_HINT != 0 {
        if flags & fault_flags::NUMA_LOCAL != 0 {
            3
        } else {
            4
        }
    } else if ret & VM_FAULT_MAJOR != 0 || flags & fault_flags::MAJOR != 0 {
        2
    } else if flags & fault_flags::ALLOC != 0 {
        0
    } else {
        1
    }
}
