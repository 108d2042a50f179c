//! Decoded kernel events (pure): bytes from the ring buffer to typed values.

use cxl_trace_common::{fault_flags, COMM_LEN};
use serde::Serialize;

/// A task command name, as the kernel stores it: up to 16 bytes, NUL-padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm(pub [u8; COMM_LEN]);

impl Comm {
    /// A name from its bytes (as /proc/PID/comm has it, without the newline), cut to 16.
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut c = [0u8; COMM_LEN];
        let n = b.len().min(COMM_LEN);
        c[..n].copy_from_slice(&b[..n]);
        Self(c)
    }

    /// The name as text (lossy, up to the first NUL).
    pub fn as_string(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_string())
    }
}

/// Where a page fault was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// In user mode (`exceptions:page_fault_user`).
    User,
    /// In kernel mode (`exceptions:page_fault_kernel`), e.g. copy_to_user.
    Kernel,
}

/// Kind of access that faulted, from the x86 error code.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Read of a page not present (first touch, swap-in, file read, NUMA hinting).
    ReadNotPresent,
    /// Write to a page not present.
    WriteNotPresent,
    /// Write to a present read-only page (copy-on-write, dirty tracking, NUMA hinting).
    WriteProtection,
    /// Read of a present page that faulted (PROT_NONE, NUMA hinting).
    ReadProtection,
    /// Instruction fetch.
    InstructionFetch,
    /// Reserved bit set in a page table entry.
    ReservedBit,
    /// Protection key violation.
    ProtectionKey,
}

impl FaultKind {
    /// All kinds, in report order.
    pub const ALL: [FaultKind; 7] = [
        Self::ReadNotPresent,
        Self::WriteNotPresent,
        Self::WriteProtection,
        Self::ReadProtection,
        Self::InstructionFetch,
        Self::ReservedBit,
        Self::ProtectionKey,
    ];

    /// The name used in JSON and text output.
    pub fn name(self) -> &'static str {
        match self {
            Self::ReadNotPresent => "read_not_present",
            Self::WriteNotPresent => "write_not_present",
            Self::WriteProtection => "write_protection",
            Self::ReadProtection => "read_protection",
            Self::InstructionFetch => "instruction_fetch",
            Self::ReservedBit => "reserved_bit",
            Self::ProtectionKey => "protection_key",
        }
    }

    /// Classifies an x86 page fault error code (`X86_PF_PROT` 1, `WRITE` 2, `USER` 4,
    /// `RSVD` 8, `INSTR` 16, `PK` 32).
    pub fn from_x86_error_code(code: u64) -> Self {
        // One classification for the kernel's counters and the records.
        Self::ALL[cxl_trace_common::fault_kind_index(code)]
    }
}

impl schemars::JsonSchema for Comm {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Comm".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(g)
    }
}

impl Serialize for Comm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_string())
    }
}

/// A decoded page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Fault {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU.
    pub cpu: u16,
    /// Thread name.
    pub comm: Comm,
    /// User or kernel mode.
    pub mode: FaultMode,
    /// Faulting address.
    pub address: u64,
    /// Instruction pointer.
    pub ip: u64,
    /// Raw x86 error code.
    pub error_code: u64,
}

impl Fault {
    /// The access kind from the error code.
    pub fn kind(&self) -> FaultKind {
        FaultKind::from_x86_error_code(self.error_code)
    }
}

/// Start of a migration batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MigrateStart {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Process id (tgid) of the migrating task.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU.
    pub cpu: u16,
    /// Thread name.
    pub comm: Comm,
    /// `enum migrate_mode`.
    pub mode: u32,
    /// Why.
    pub reason: MigrateReason,
}

/// End of a migration batch with its page counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MigrateBatch {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Process id (tgid) of the migrating task.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU.
    pub cpu: u16,
    /// Thread name.
    pub comm: Comm,
    /// Base pages migrated.
    pub succeeded: u64,
    /// Base pages that failed.
    pub failed: u64,
    /// THPs migrated.
    pub thp_succeeded: u64,
    /// THPs failed.
    pub thp_failed: u64,
    /// THPs split.
    pub thp_split: u64,
    /// Large folios split.
    pub large_folio_split: u64,
    /// `enum migrate_mode`.
    pub mode: u32,
    /// Why.
    pub reason: MigrateReason,
}

/// What kind of fault a timed fault was.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    /// A new page was allocated for it (first touch, or copy-on-write).
    FirstTouch,
    /// Resolved without allocation or I/O (page already present: page cache, swap cache).
    Minor,
    /// Needed I/O (`VM_FAULT_MAJOR`).
    Major,
    /// A NUMA hinting fault on a page local to the faulting CPU.
    HintLocal,
    /// A NUMA hinting fault on a remote page (the kind NUMA balancing may migrate).
    HintRemote,
}

impl FaultClass {
    /// Every class, in display order.
    pub const ALL: [FaultClass; 5] = [
        Self::FirstTouch,
        Self::Minor,
        Self::Major,
        Self::HintLocal,
        Self::HintRemote,
    ];

    /// Name used in JSON and on screen.
    pub fn name(self) -> &'static str {
        match self {
            Self::FirstTouch => "first_touch",
            Self::Minor => "minor",
            Self::Major => "major",
            Self::HintLocal => "hint_local",
            Self::HintRemote => "hint_remote",
        }
    }
}

/// `VM_FAULT_MAJOR`.
pub const VM_FAULT_MAJOR: u32 = 0x4;

/// A fault timed from `handle_mm_fault` entry to its last exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FaultLatency {
    /// End of the fault, CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU.
    pub cpu: u16,
    /// Thread name.
    pub comm: Comm,
    /// Faulting address.
    pub address: u64,
    /// Duration including retries, ns.
    pub latency_ns: u64,
    /// pfn of the movable page allocated during the fault.
    pub alloc_pfn: Option<u64>,
    /// `vm_fault_t` of the last call.
    pub ret: u32,
    /// `fault_flags` bits.
    pub flags: u32,
    /// Node of the page after a NUMA hinting fault.
    pub numa_node: Option<u32>,
    /// `VM_FAULT_RETRY` rounds folded in.
    pub retries: u32,
}

impl FaultLatency {
    /// The class of the fault.
    pub fn class(&self) -> FaultClass {
        if self.flags & fault_flags::NUMA_HINT != 0 {
            if self.flags & fault_flags::NUMA_LOCAL != 0 {
                FaultClass::HintLocal
            } else {
                FaultClass::HintRemote
            }
        } else if self.ret & VM_FAULT_MAJOR != 0 || self.flags & fault_flags::MAJOR != 0 {
            FaultClass::Major
        } else if self.flags & fault_flags::ALLOC != 0 {
            FaultClass::FirstTouch
        } else {
            FaultClass::Minor
        }
    }

    /// Whether it came from get_user_pages (no registers).
    pub fn gup(&self) -> bool {
        self.flags & fault_flags::GUP != 0
    }
}

/// One folio moved by `move_to_new_folio`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FolioMigrate {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Migrating task (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU.
    pub cpu: u16,
    /// Source pfn.
    pub src_pfn: Option<u64>,
    /// Destination pfn.
    pub dst_pfn: Option<u64>,
    /// `folio->mapping` (names the page with `index`, whatever its pfn).
    pub mapping: u64,
    /// `folio->index`.
    pub index: u64,
    /// Copy time, ns (`None` when seen through the migration-PTE tracepoints).
    pub copy_ns: Option<u64>,
    /// Base pages in the folio, when known (the migration-PTE tracepoints give the order;
    /// `move_to_new_folio`'s record does not carry it).
    pub pages: Option<u64>,
    /// 0 on success, a negative errno otherwise.
    pub rc: i32,
    /// Reason of the batch it belongs to.
    pub reason: Option<MigrateReason>,
}

/// A folio remapped after migration, from the migration-PTE tracepoints (the fallback where
/// `move_to_new_folio` cannot be hooked); [`crate::model::pte::PteFormat::folio`] decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MigrationPte {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Migrating task (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU.
    pub cpu: u16,
    /// User virtual address of the mapping.
    pub addr: u64,
    /// The migration entry written at unmap time, when it was seen.
    pub old_entry: Option<u64>,
    /// The entry written back.
    pub new_entry: u64,
    /// Unmap to remap, ns (0 when the unmap was not seen).
    pub unmapped_ns: u64,
    /// Folio order.
    pub order: u32,
    /// Reason of the batch it belongs to.
    pub reason: Option<MigrateReason>,
    /// A PMD entry (2 MiB THP) rather than a PTE.
    pub pmd: bool,
}

/// A NUMA hinting fault from `task_numa_fault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NumaFault {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// CPU.
    pub cpu: u16,
    /// Node of the page after the fault.
    pub mem_node: i32,
    /// Pages covered.
    pub pages: i32,
    /// `TNF_*` flags.
    pub flags: i32,
}

impl NumaFault {
    /// `TNF_MIGRATED`.
    pub fn migrated(&self) -> bool {
        self.flags & 0x01 != 0
    }
    /// `TNF_FAULT_LOCAL`.
    pub fn local(&self) -> bool {
        self.flags & 0x08 != 0
    }
    /// `TNF_MIGRATE_FAIL`.
    pub fn migrate_failed(&self) -> bool {
        self.flags & 0x10 != 0
    }
}

/// The outcome of one step of the NUMA balancing migration decision.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// `should_numa_migrate_memory` said migrate.
    Approved,
    /// Refused before the rate limiter: the folio was not hot enough (tiering mode, slow
    /// node) or the placement heuristics said no (normal NUMA balancing).
    RefusedThreshold,
    /// The folio passed the hot threshold but the promotion rate limit was reached.
    RefusedRateLimit,
    /// `migrate_misplaced_folio_prepare`: the target node is short of free pages (kswapd is
    /// woken) or the folio is a dirty file folio.
    RefusedTargetFull,
    /// `migrate_misplaced_folio_prepare`: the folio could not be isolated from its LRU.
    RefusedIsolation,
    /// `migrate_misplaced_folio_prepare`: a shared executable file folio (-EACCES).
    RefusedSharedExec,
    /// `migrate_misplaced_folio_prepare` succeeded (the migration itself follows).
    Prepared,
}

impl Verdict {
    /// Name used in JSON (export rows) and on screen: the same everywhere.
    pub fn name(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::RefusedThreshold => "refused_threshold",
            Self::RefusedRateLimit => "refused_rate_limit",
            Self::RefusedTargetFull => "refused_target_full",
            Self::RefusedIsolation => "refused_isolation",
            Self::RefusedSharedExec => "refused_shared_exec",
            Self::Prepared => "prepared",
        }
    }

    /// Whether this outcome stops the migration.
    pub fn is_refusal(self) -> bool {
        !matches!(self, Self::Approved | Self::Prepared)
    }
}

/// One step of a NUMA balancing migration decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PromoteDecision {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Node of the folio (`None` for the prepare step, which does not know it).
    pub src_nid: Option<u32>,
    /// Destination CPU (decision step).
    pub dst_cpu: Option<u32>,
    /// Destination node (prepare step).
    pub dst_nid: Option<u32>,
    /// Pages counted in `pgpromote_candidate`.
    pub candidate_pages: i64,
    /// Outcome.
    pub verdict: Verdict,
}

/// A demotion batch from `demote_folio_list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DemoteBatch {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Task (tgid) that reclaimed: kswapd, a direct reclaimer or a memory.reclaim writer.
    pub pid: u32,
    /// Source node, `None` if its pgdat was not found.
    pub src_nid: Option<u32>,
    /// Pages demoted.
    pub pages: u32,
}

/// The raw record of a rare tracepoint, decoded by [`crate::model::rare`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RawRecord {
    /// CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Current task (tgid) when it fired.
    pub pid: u32,
    /// CPU.
    pub cpu: u16,
    /// `cxl_trace_common::raw::*` id.
    pub tp: u16,
    /// The record bytes.
    pub data: Vec<u8>,
}

/// Any decoded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A page fault.
    Fault(Fault),
    /// A migration batch started.
    MigrateStart(MigrateStart),
    /// A migration batch ended.
    Migrate(MigrateBatch),
    /// A timed fault.
    FaultLatency(FaultLatency),
    /// One folio migrated.
    FolioMigrate(FolioMigrate),
    /// One folio remapped after migration (tracepoint fallback).
    MigrationPte(MigrationPte),
    /// A NUMA hinting fault.
    NumaFault(NumaFault),
    /// A rare tracepoint's raw record.
    Raw(RawRecord),
    /// A step of a NUMA balancing migration decision.
    Decision(PromoteDecision),
    /// A demotion batch.
    Demote(DemoteBatch),
}

impl Event {
    /// Timestamp (CLOCK_MONOTONIC ns).
    pub fn ts_ns(&self) -> u64 {
        match self {
            Self::Fault(e) => e.ts_ns,
            Self::MigrateStart(e) => e.ts_ns,
            Self::Migrate(e) => e.ts_ns,
            Self::FaultLatency(e) => e.ts_ns,
            Self::FolioMigrate(e) => e.ts_ns,
            Self::MigrationPte(e) => e.ts_ns,
            Self::NumaFault(e) => e.ts_ns,
            Self::Raw(e) => e.ts_ns,
            Self::Decision(e) => e.ts_ns,
            Self::Demote(e) => e.ts_ns,
        }
    }
}

mod decode;
mod reason;
pub use decode::{as_bytes, decode, verdict, DecodeError, MAX_PAGES};
pub use reason::MigrateReason;

#[cfg(test)]
mod tests;
