//! `enum migrate_reason`: the kernel's numbering, names, and drift between kernels.

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
