//! The records the programs write into the ring buffer, one `#[repr(C)]` struct per kind.

use crate::*;

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
