//! Decoded kernel events (pure): bytes from the ring buffer to typed values.

use std::mem::size_of;

use cxl_trace_common::{
    decision_stage, fault_flags, isolate, DemoteBatchEvent, EventHeader, FaultEvent,
    FaultLatencyEvent, FolioMigrateEvent, Kind, MigrateEvent, MigrateStartEvent, MigrationPteEvent,
    NumaFaultEvent, PromoteDecisionEvent, RawTpEvent, COMM_LEN,
};
use serde::Serialize;

/// A task command name, as the kernel stores it: up to 16 bytes, NUL-padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Comm(pub [u8; COMM_LEN]);

impl Comm {
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
        const PROT: u64 = 1;
        const WRITE: u64 = 2;
        const RSVD: u64 = 8;
        const INSTR: u64 = 16;
        const PK: u64 = 32;
        if code & RSVD != 0 {
            Self::ReservedBit
        } else if code & PK != 0 {
            Self::ProtectionKey
        } else if code & INSTR != 0 {
            Self::InstructionFetch
        } else {
            match (code & WRITE != 0, code & PROT != 0) {
                (true, true) => Self::WriteProtection,
                (true, false) => Self::WriteNotPresent,
                (false, true) => Self::ReadProtection,
                (false, false) => Self::ReadNotPresent,
            }
        }
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

/// `enum migrate_reason`, as numbered since 6.11 (9 `DAMON` is new in 6.11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MigrateReason {
    /// 0 MR_COMPACTION.
    Compaction,
    /// 1 MR_MEMORY_FAILURE.
    MemoryFailure,
    /// 2 MR_MEMORY_HOTPLUG.
    MemoryHotplug,
    /// 3 MR_SYSCALL (move_pages, migrate_pages, cpuset).
    Syscall,
    /// 4 MR_MEMPOLICY_MBIND.
    MempolicyMbind,
    /// 5 MR_NUMA_MISPLACED (NUMA balancing, including tiering promotion).
    NumaMisplaced,
    /// 6 MR_CONTIG_RANGE.
    ContigRange,
    /// 7 MR_LONGTERM_PIN.
    LongtermPin,
    /// 8 MR_DEMOTION.
    Demotion,
    /// 9 MR_DAMON.
    Damon,
    /// A value this build does not know.
    Unknown(u32),
}

impl MigrateReason {
    /// From the kernel's numeric value.
    pub fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::Compaction,
            1 => Self::MemoryFailure,
            2 => Self::MemoryHotplug,
            3 => Self::Syscall,
            4 => Self::MempolicyMbind,
            5 => Self::NumaMisplaced,
            6 => Self::ContigRange,
            7 => Self::LongtermPin,
            8 => Self::Demotion,
            9 => Self::Damon,
            other => Self::Unknown(other),
        }
    }

    /// The name the kernel's `mm_migrate_pages` print format gives it.
    pub fn kernel_name(self) -> Option<&'static str> {
        Some(match self {
            Self::Compaction => "compaction",
            Self::MemoryFailure => "memory_failure",
            Self::MemoryHotplug => "memory_hotplug",
            Self::Syscall => "syscall_or_cpuset",
            Self::MempolicyMbind => "mempolicy_mbind",
            Self::NumaMisplaced => "numa_misplaced",
            Self::ContigRange => "contig_range",
            Self::LongtermPin => "longterm_pin",
            Self::Demotion => "demotion",
            Self::Damon => "damon",
            Self::Unknown(_) => return None,
        })
    }

    /// Where a kernel numbers its reasons differently from this build, from the `reason`
    /// table of its `mm_migrate_pages` format: one line per value whose name differs. Values
    /// this build does not know are not drift (they are shown as `reason_N`).
    pub fn numbering_drift(table: &std::collections::BTreeMap<i64, String>) -> Vec<String> {
        table
            .iter()
            .filter_map(|(&v, name)| {
                let ours = Self::from_raw(u32::try_from(v).ok()?).kernel_name()?;
                (ours != name).then(|| format!("{v} is `{name}` on this kernel, `{ours}` here"))
            })
            .collect()
    }

    /// The name used in JSON and text output (the kernel's own names, `syscall_or_cpuset`
    /// shortened).
    pub fn name(self) -> String {
        match self {
            Self::Compaction => "compaction".into(),
            Self::MemoryFailure => "memory_failure".into(),
            Self::MemoryHotplug => "memory_hotplug".into(),
            Self::Syscall => "syscall".into(),
            Self::MempolicyMbind => "mempolicy_mbind".into(),
            Self::NumaMisplaced => "numa_misplaced".into(),
            Self::ContigRange => "contig_range".into(),
            Self::LongtermPin => "longterm_pin".into(),
            Self::Demotion => "demotion".into(),
            Self::Damon => "damon".into(),
            Self::Unknown(v) => format!("reason_{v}"),
        }
    }

    /// Every named reason's [`MigrateReason::name`], in kernel order.
    pub const NAMES: [&'static str; 10] = [
        "compaction",
        "memory_failure",
        "memory_hotplug",
        "syscall",
        "mempolicy_mbind",
        "numa_misplaced",
        "contig_range",
        "longterm_pin",
        "demotion",
        "damon",
    ];

    /// The name of a value this build does not know.
    pub const UNKNOWN_PATTERN: &'static str = "^reason_[0-9]+$";

    /// From [`MigrateReason::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        if let Some(i) = Self::NAMES.iter().position(|n| *n == s) {
            return Some(Self::from_raw(u32::try_from(i).ok()?));
        }
        let v: u32 = s.strip_prefix("reason_")?.parse().ok()?;
        Some(Self::from_raw(v))
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

/// Classifies a decision record (pure: the rules are documented in `cxl-trace-ebpf/src/promote.rs`).
pub fn verdict(e: &PromoteDecisionEvent) -> Verdict {
    match e.stage {
        decision_stage::SHOULD_MIGRATE if e.result != 0 => Verdict::Approved,
        decision_stage::SHOULD_MIGRATE if e.candidate_pages > 0 => Verdict::RefusedRateLimit,
        decision_stage::SHOULD_MIGRATE => Verdict::RefusedThreshold,
        _ if e.result == 0 => Verdict::Prepared,
        _ if e.result == -libc::EACCES => Verdict::RefusedSharedExec,
        _ if e.isolate == isolate::FAILED => Verdict::RefusedIsolation,
        _ => Verdict::RefusedTargetFull,
    }
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

fn some_unless<T: PartialEq>(v: T, none: T) -> Option<T> {
    (v != none).then_some(v)
}

/// Why a record could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than the struct its kind names.
    #[error("record of kind {kind} is {len} bytes, expected at least {need}")]
    Short {
        /// Kind from the header (0 when even the header is cut).
        kind: u16,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// An unknown kind (a newer eBPF object than this decoder).
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
    /// A count no kernel can produce (a damaged or crafted file): left out rather than summed.
    #[error("record of kind {kind}: {field} = {value} pages is beyond any machine")]
    Implausible {
        /// Kind from the header.
        kind: u16,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Most pages one record can count: 2^40 pages of 4 KiB are 4 PiB, beyond any machine. Larger
/// counts come only from damaged or crafted files, and summing them could overflow.
pub const MAX_PAGES: u64 = 1 << 40;

fn plausible(kind: u16, fields: &[(&'static str, u64)]) -> Result<(), DecodeError> {
    match fields.iter().find(|(_, v)| *v > MAX_PAGES) {
        Some(&(field, value)) => Err(DecodeError::Implausible { kind, field, value }),
        None => Ok(()),
    }
}

/// Reads a `T` from the start of `bytes`, which must hold at least `size_of::<T>()` bytes.
fn read<T: bytemuck::AnyBitPattern>(bytes: &[u8], kind: u16) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    let head = bytes.get(..need).ok_or(DecodeError::Short {
        kind,
        len: bytes.len(),
        need,
    })?;
    Ok(bytemuck::pod_read_unaligned(head))
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    let hdr: EventHeader = read(bytes, 0)?;
    let Some(k) = Kind::from_u16(hdr.kind) else {
        return Err(DecodeError::UnknownKind(hdr.kind));
    };
    match k {
        Kind::FaultUser | Kind::FaultKernel => fault(&hdr, bytes, k),
        Kind::MigrateStart => migrate_start(&hdr, bytes),
        Kind::Migrate => migrate(&hdr, bytes),
        Kind::FaultLatency => fault_latency(&hdr, bytes),
        Kind::FolioMigrate => folio_migrate(&hdr, bytes),
        Kind::MigrationPte => migration_pte(&hdr, bytes),
        Kind::NumaFault => numa_fault(&hdr, bytes),
        Kind::RawTp => raw_tp(&hdr, bytes),
        Kind::PromoteDecision => promote_decision(&hdr, bytes),
        Kind::DemoteBatch => demote_batch(&hdr, bytes),
    }
}

fn fault(hdr: &EventHeader, bytes: &[u8], k: Kind) -> Result<Event, DecodeError> {
    let e: FaultEvent = read(bytes, hdr.kind)?;
    Ok(Event::Fault(Fault {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        mode: if k == Kind::FaultUser {
            FaultMode::User
        } else {
            FaultMode::Kernel
        },
        address: e.address,
        ip: e.ip,
        error_code: e.error_code,
    }))
}

fn migrate_start(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: MigrateStartEvent = read(bytes, hdr.kind)?;
    Ok(Event::MigrateStart(MigrateStart {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        mode: e.mode,
        reason: MigrateReason::from_raw(e.reason),
    }))
}

fn migrate(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: MigrateEvent = read(bytes, hdr.kind)?;
    plausible(
        hdr.kind,
        &[
            ("succeeded", e.succeeded),
            ("failed", e.failed),
            ("thp_succeeded", e.thp_succeeded),
            ("thp_failed", e.thp_failed),
            ("thp_split", e.thp_split),
            ("large_folio_split", e.large_folio_split),
        ],
    )?;
    Ok(Event::Migrate(MigrateBatch {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        succeeded: e.succeeded,
        failed: e.failed,
        thp_succeeded: e.thp_succeeded,
        thp_failed: e.thp_failed,
        thp_split: e.thp_split,
        large_folio_split: e.large_folio_split,
        mode: e.mode,
        reason: MigrateReason::from_raw(e.reason),
    }))
}

fn fault_latency(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: FaultLatencyEvent = read(bytes, hdr.kind)?;
    Ok(Event::FaultLatency(FaultLatency {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        comm: Comm(e.comm),
        address: e.address,
        latency_ns: e.latency_ns,
        alloc_pfn: some_unless(e.alloc_pfn, u64::MAX),
        ret: e.ret,
        flags: e.flags,
        numa_node: some_unless(e.numa_node, u32::MAX),
        retries: e.retries,
    }))
}

fn folio_migrate(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: FolioMigrateEvent = read(bytes, hdr.kind)?;
    let (reason, size) = cxl_trace_common::folio_size::unpack(e.reason);
    Ok(Event::FolioMigrate(FolioMigrate {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        src_pfn: some_unless(e.src_pfn, u64::MAX),
        dst_pfn: some_unless(e.dst_pfn, u64::MAX),
        mapping: e.mapping,
        index: e.index,
        copy_ns: some_unless(e.copy_ns, cxl_trace_common::COPY_UNKNOWN),
        pages: cxl_trace_common::folio_size::pages(size),
        rc: e.rc,
        reason: reason.map(MigrateReason::from_raw),
    }))
}

fn migration_pte(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: MigrationPteEvent = read(bytes, hdr.kind)?;
    Ok(Event::MigrationPte(MigrationPte {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        addr: e.addr,
        old_entry: some_unless(e.old_entry, u64::MAX),
        new_entry: e.new_entry,
        unmapped_ns: e.unmapped_ns,
        order: e.order,
        reason: some_unless(e.reason, u32::MAX).map(MigrateReason::from_raw),
        pmd: e.pmd != 0,
    }))
}

fn numa_fault(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: NumaFaultEvent = read(bytes, hdr.kind)?;
    Ok(Event::NumaFault(NumaFault {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        tid: hdr.tid,
        cpu: hdr.cpu,
        mem_node: e.mem_node,
        pages: e.pages,
        flags: e.flags,
    }))
}

fn raw_tp(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    // The record may be cut to `len` bytes of data; decode the fixed part only.
    let fixed = Kind::RawTp.wire_size();
    let short = |need| DecodeError::Short {
        kind: hdr.kind,
        len: bytes.len(),
        need,
    };
    let head = bytes.get(..fixed).ok_or(short(fixed))?;
    let u16_at = |off: usize| {
        head.get(off..off + 2)
            .map(bytemuck::pod_read_unaligned::<u16>)
            .ok_or(short(fixed))
    };
    let tp = u16_at(std::mem::offset_of!(RawTpEvent, tp))?;
    let len = usize::from(u16_at(std::mem::offset_of!(RawTpEvent, len))?);
    let data = bytes
        .get(fixed..fixed + len)
        .ok_or(short(fixed + len))?
        .to_vec();
    Ok(Event::Raw(RawRecord {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        cpu: hdr.cpu,
        tp,
        data,
    }))
}

fn promote_decision(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: PromoteDecisionEvent = read(bytes, hdr.kind)?;
    plausible(
        hdr.kind,
        &[("candidate_pages", e.candidate_pages.unsigned_abs())],
    )?;
    let should = e.stage == decision_stage::SHOULD_MIGRATE;
    Ok(Event::Decision(PromoteDecision {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        src_nid: u32::try_from(e.src_nid).ok(),
        dst_cpu: should.then(|| u32::try_from(e.target).ok()).flatten(),
        dst_nid: (!should).then(|| u32::try_from(e.target).ok()).flatten(),
        candidate_pages: e.candidate_pages,
        verdict: verdict(&e),
    }))
}

fn demote_batch(hdr: &EventHeader, bytes: &[u8]) -> Result<Event, DecodeError> {
    let e: DemoteBatchEvent = read(bytes, hdr.kind)?;
    Ok(Event::Demote(DemoteBatch {
        ts_ns: hdr.ts_ns,
        pid: hdr.pid,
        src_nid: u32::try_from(e.src_nid).ok(),
        pages: e.nr_succeeded,
    }))
}

/// Byte images of wire structs, for tests and fixtures.
pub fn as_bytes<T: bytemuck::NoUninit>(value: &T) -> &[u8] {
    bytemuck::bytes_of(value)
}

#[cfg(test)]
mod tests;
