//! The kinds of records in the ring buffer, and the per-kind stat slots.

use crate::*;

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
    /// (A `match`, not a search of [`Kind::ALL`]: it runs once per decoded record.)
    pub const fn from_u16(k: u16) -> Option<Kind> {
        Some(match k {
            kind::FAULT_USER => Kind::FaultUser,
            kind::FAULT_KERNEL => Kind::FaultKernel,
            kind::MIGRATE_START => Kind::MigrateStart,
            kind::MIGRATE => Kind::Migrate,
            kind::FAULT_LATENCY => Kind::FaultLatency,
            kind::FOLIO_MIGRATE => Kind::FolioMigrate,
            kind::NUMA_FAULT => Kind::NumaFault,
            kind::RAW_TP => Kind::RawTp,
            kind::PROMOTE_DECISION => Kind::PromoteDecision,
            kind::DEMOTE_BATCH => Kind::DemoteBatch,
            kind::MIGRATION_PTE => Kind::MigrationPte,
            _ => return None,
        })
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
