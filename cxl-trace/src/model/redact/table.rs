//! The redaction table: every record kind, every field, and what redaction does to it.

use std::mem::{offset_of, size_of};

use cxl_trace_common::{
    raw, DemoteBatchEvent, EventHeader, FaultEvent, FaultLatencyEvent, FolioMigrateEvent, Kind,
    MigrateEvent, MigrateStartEvent, MigrationPteEvent, NumaFaultEvent, PromoteDecisionEvent,
    RawTpEvent, COMM_LEN,
};

/// What happens to one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Copied unchanged.
    Keep,
    /// A process name: kernel threads keep it, others are hashed.
    Name,
    /// A 64-bit identity: keyed hash (0 stays 0).
    Id,
    /// `folio->index`: keyed hash of (mapping, index), so the pair stays unique.
    Index,
    /// A user virtual address: keyed hash of the page number, page offset dropped.
    Page,
    /// Zeroed.
    Drop,
    /// Raw tracepoint bytes: one rule per field of the tracepoint's format ([`raw_rule`]).
    RawData,
}

impl Action {
    /// The word used in the documentation.
    pub fn word(self) -> &'static str {
        match self {
            Self::Keep => "kept",
            Self::Name => "name (kernel threads kept, others keyed-hashed)",
            Self::Id => "keyed hash (64 bit, 0 stays 0)",
            Self::Index => "keyed hash of (mapping, index)",
            Self::Page => "keyed hash of the page number, offset dropped",
            Self::Drop => "dropped (zeroed)",
            Self::RawData => "per field of the tracepoint format (raw rules)",
        }
    }
}

/// One field of a record kind.
#[derive(Clone, Copy, Debug)]
pub struct FieldRule {
    /// Field name, as in `cxl-trace-common`.
    pub name: &'static str,
    /// Byte offset in the record.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
    /// What redaction does to it.
    pub action: Action,
}

/// The rules of one record kind.
#[derive(Clone, Copy, Debug)]
pub struct KindRule {
    /// The kinds whose records have this layout.
    pub kinds: &'static [Kind],
    /// Name of the record struct.
    pub name: &'static str,
    /// Size of the record struct.
    pub size: usize,
    /// Every field past the common header, in order.
    pub fields: &'static [FieldRule],
}

macro_rules! field {
    ($t:ty, $f:ident, $len:expr, $a:ident) => {
        FieldRule {
            name: stringify!($f),
            offset: offset_of!($t, $f),
            len: $len,
            action: Action::$a,
        }
    };
}

/// The common header of every record: all kept.
pub const HEADER_FIELDS: &[FieldRule] = &[
    field!(EventHeader, ts_ns, 8, Keep),
    field!(EventHeader, pid, 4, Keep),
    field!(EventHeader, tid, 4, Keep),
    field!(EventHeader, kind, 2, Keep),
    field!(EventHeader, cpu, 2, Keep),
    field!(EventHeader, _reserved, 4, Keep),
];

/// Every record kind and what redaction does to each of its fields.
pub const TABLE: &[KindRule] = &[
    KindRule {
        kinds: &[Kind::FaultUser, Kind::FaultKernel],
        name: "FaultEvent",
        size: size_of::<FaultEvent>(),
        fields: &[
            field!(FaultEvent, address, 8, Drop),
            field!(FaultEvent, ip, 8, Drop),
            field!(FaultEvent, error_code, 8, Keep),
            field!(FaultEvent, comm, COMM_LEN, Name),
        ],
    },
    KindRule {
        kinds: &[Kind::MigrateStart],
        name: "MigrateStartEvent",
        size: size_of::<MigrateStartEvent>(),
        fields: &[
            field!(MigrateStartEvent, mode, 4, Keep),
            field!(MigrateStartEvent, reason, 4, Keep),
            field!(MigrateStartEvent, comm, COMM_LEN, Name),
        ],
    },
    KindRule {
        kinds: &[Kind::Migrate],
        name: "MigrateEvent",
        size: size_of::<MigrateEvent>(),
        fields: &[
            field!(MigrateEvent, succeeded, 8, Keep),
            field!(MigrateEvent, failed, 8, Keep),
            field!(MigrateEvent, thp_succeeded, 8, Keep),
            field!(MigrateEvent, thp_failed, 8, Keep),
            field!(MigrateEvent, thp_split, 8, Keep),
            field!(MigrateEvent, large_folio_split, 8, Keep),
            field!(MigrateEvent, mode, 4, Keep),
            field!(MigrateEvent, reason, 4, Keep),
            field!(MigrateEvent, comm, COMM_LEN, Name),
        ],
    },
    KindRule {
        kinds: &[Kind::FaultLatency],
        name: "FaultLatencyEvent",
        size: size_of::<FaultLatencyEvent>(),
        fields: &[
            field!(FaultLatencyEvent, address, 8, Drop),
            field!(FaultLatencyEvent, latency_ns, 8, Keep),
            field!(FaultLatencyEvent, alloc_pfn, 8, Keep),
            field!(FaultLatencyEvent, ret, 4, Keep),
            field!(FaultLatencyEvent, flags, 4, Keep),
            field!(FaultLatencyEvent, numa_node, 4, Keep),
            field!(FaultLatencyEvent, retries, 4, Keep),
            field!(FaultLatencyEvent, comm, COMM_LEN, Name),
        ],
    },
    KindRule {
        kinds: &[Kind::FolioMigrate],
        name: "FolioMigrateEvent",
        size: size_of::<FolioMigrateEvent>(),
        fields: &[
            field!(FolioMigrateEvent, src_pfn, 8, Keep),
            field!(FolioMigrateEvent, dst_pfn, 8, Keep),
            field!(FolioMigrateEvent, mapping, 8, Id),
            field!(FolioMigrateEvent, index, 8, Index),
            field!(FolioMigrateEvent, copy_ns, 8, Keep),
            field!(FolioMigrateEvent, rc, 4, Keep),
            field!(FolioMigrateEvent, reason, 4, Keep),
        ],
    },
    KindRule {
        kinds: &[Kind::NumaFault],
        name: "NumaFaultEvent",
        size: size_of::<NumaFaultEvent>(),
        fields: &[
            field!(NumaFaultEvent, mem_node, 4, Keep),
            field!(NumaFaultEvent, pages, 4, Keep),
            field!(NumaFaultEvent, flags, 4, Keep),
            field!(NumaFaultEvent, last_cpupid, 4, Keep),
        ],
    },
    KindRule {
        kinds: &[Kind::RawTp],
        name: "RawTpEvent",
        size: size_of::<RawTpEvent>(),
        fields: &[
            field!(RawTpEvent, tp, 2, Keep),
            field!(RawTpEvent, len, 2, Keep),
            field!(RawTpEvent, _reserved, 4, Keep),
            field!(RawTpEvent, data, raw::DATA, RawData),
        ],
    },
    KindRule {
        kinds: &[Kind::PromoteDecision],
        name: "PromoteDecisionEvent",
        size: size_of::<PromoteDecisionEvent>(),
        fields: &[
            field!(PromoteDecisionEvent, stage, 4, Keep),
            field!(PromoteDecisionEvent, result, 4, Keep),
            field!(PromoteDecisionEvent, src_nid, 4, Keep),
            field!(PromoteDecisionEvent, target, 4, Keep),
            field!(PromoteDecisionEvent, candidate_pages, 8, Keep),
            field!(PromoteDecisionEvent, isolate, 4, Keep),
            field!(PromoteDecisionEvent, _reserved, 4, Keep),
        ],
    },
    KindRule {
        kinds: &[Kind::DemoteBatch],
        name: "DemoteBatchEvent",
        size: size_of::<DemoteBatchEvent>(),
        fields: &[
            field!(DemoteBatchEvent, src_nid, 4, Keep),
            field!(DemoteBatchEvent, nr_succeeded, 4, Keep),
        ],
    },
    KindRule {
        kinds: &[Kind::MigrationPte],
        name: "MigrationPteEvent",
        size: size_of::<MigrationPteEvent>(),
        fields: &[
            field!(MigrationPteEvent, addr, 8, Page),
            field!(MigrationPteEvent, old_entry, 8, Keep),
            field!(MigrationPteEvent, new_entry, 8, Keep),
            field!(MigrationPteEvent, unmapped_ns, 8, Keep),
            field!(MigrationPteEvent, order, 4, Keep),
            field!(MigrationPteEvent, reason, 4, Keep),
            field!(MigrationPteEvent, pmd, 4, Keep),
            field!(MigrationPteEvent, _reserved, 4, Keep),
        ],
    },
];

/// The rule of a record kind.
pub fn rule_of(k: u16) -> Option<&'static KindRule> {
    let k = Kind::from_u16(k)?;
    TABLE.iter().find(|r| r.kinds.contains(&k))
}

/// The table as Markdown, as docs/recording-format.md carries it (a test keeps them equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| record | field | bytes | redaction |\n|---|---|---|---|\n");
    out.push_str(
        "| every record | `ts_ns`, `pid`, `tid`, `kind`, `cpu`, `_reserved` | 0..24 | kept |\n",
    );
    for r in TABLE {
        for f in r.fields {
            out.push_str(&format!(
                "| {} | `{}` | {}..{} | {} |\n",
                r.name,
                f.name,
                f.offset,
                f.offset + f.len,
                f.action.word()
            ));
        }
    }
    out
}
