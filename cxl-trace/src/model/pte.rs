//! Page table entries of the migration tracepoints, decoded to pfns.
//!
//! `set_migration_pte` reports the migration entry that replaced a mapping (a swap-format
//! entry whose offset is the source pfn, plus the young/dirty bits above the pfn);
//! `remove_migration_pte` reports the present entry written back (destination pfn, or the
//! source pfn when the folio stayed). The encodings are architecture-specific; x86_64 is
//! decoded here and every other architecture decodes to `None` (moves are then counted
//! without tiers, and the tool says so).

use crate::model::event::{FolioMigrate, MigrationPte};

/// `FolioMigrate::mapping` of a move seen through the migration-PTE tracepoints: the page is
/// named by its virtual page alone (no kernel pointer is a valid `folio->mapping` here, and a
/// nonzero value lets the ping-pong detector follow it).
pub const VIRTUAL_PAGE: u64 = u64::MAX;

/// x86_64 bits.
const PRESENT: u64 = 1;
/// `_PAGE_PSE`: a huge PMD.
const PSE: u64 = 1 << 7;
/// `_PAGE_PROTNONE` (the global bit, reused when not present).
const PROTNONE: u64 = 1 << 8;
/// The pfn field of a PTE (bits 12..51).
const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The pfn field of a huge PMD (bits 21..51).
const PMD_PFN_MASK: u64 = 0x000f_ffff_ffe0_0000;
/// Swap entries: 5 type bits at the top, the inverted offset from bit 9 (L1TF mitigation).
const SWP_TYPE_BITS: u32 = 5;
const SWP_OFFSET_SHIFT: u32 = 9 + SWP_TYPE_BITS;

/// How the running kernel encodes entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PteFormat {
    /// Whether entries can be decoded at all (x86_64 only).
    pub decodable: bool,
    /// Bits of the pfn in a migration entry's offset (`MAX_PHYSMEM_BITS - PAGE_SHIFT`: 34 with
    /// 4-level paging, 40 with 5-level); the young and dirty bits sit just above.
    pub swap_pfn_bits: u32,
}

impl Default for PteFormat {
    fn default() -> Self {
        Self::x86_64(false)
    }
}

impl PteFormat {
    /// x86_64 with 4- or 5-level paging.
    pub const fn x86_64(five_level: bool) -> Self {
        Self {
            decodable: true,
            swap_pfn_bits: if five_level { 40 } else { 34 },
        }
    }

    /// The format of the machine this runs on (`five_level`: the `la57` CPU flag, which the
    /// kernel clears when it does not use 5-level paging).
    pub fn native(five_level: bool) -> Self {
        if cfg!(target_arch = "x86_64") {
            Self::x86_64(five_level)
        } else {
            Self {
                decodable: false,
                swap_pfn_bits: 0,
            }
        }
    }

    /// The pfn a present PTE or huge PMD maps; `None` for an entry that is not present.
    pub fn present_pfn(&self, entry: u64, pmd: bool) -> Option<u64> {
        if !self.decodable {
            return None;
        }
        let present_bits = PRESENT | PROTNONE | if pmd { PSE } else { 0 };
        if entry & present_bits == 0 {
            return None;
        }
        // PROT_NONE entries (NUMA hinting) store the pfn inverted.
        let raw = if entry & (PRESENT | PROTNONE) == PROTNONE {
            !entry
        } else {
            entry
        };
        let mask = if pmd { PMD_PFN_MASK } else { PTE_PFN_MASK };
        Some((raw & mask) >> 12)
    }

    /// The pfn a migration entry points to; `None` for anything that is not a swap-format
    /// entry.
    pub fn migration_pfn(&self, entry: u64) -> Option<u64> {
        if !self.decodable || entry == 0 || entry & (PRESENT | PROTNONE) != 0 {
            return None;
        }
        if entry >> (64 - SWP_TYPE_BITS) == 0 {
            // Type 0 is the first swap file, never a migration entry.
            return None;
        }
        let offset = (!entry << SWP_TYPE_BITS) >> SWP_OFFSET_SHIFT;
        Some(offset & ((1u64 << self.swap_pfn_bits.min(63)) - 1))
    }

    /// A migration-PTE event as a folio move: source and destination pfn, identified by the
    /// virtual page (`mapping` [`VIRTUAL_PAGE`], `index` = address / 4096), without copy time. A folio whose
    /// entry points back to where it was stayed (failed, or split in place): `rc` is -EAGAIN.
    pub fn folio(&self, m: &MigrationPte) -> FolioMigrate {
        let src = m.old_entry.and_then(|e| self.migration_pfn(e));
        let dst = self.present_pfn(m.new_entry, m.pmd);
        let first = |p: u64| p & !((1u64 << m.order.min(31)) - 1);
        let stayed = matches!((src, dst), (Some(s), Some(d)) if first(s) == first(d));
        FolioMigrate {
            ts_ns: m.ts_ns,
            pid: m.pid,
            tid: m.tid,
            cpu: m.cpu,
            src_pfn: src,
            dst_pfn: dst,
            mapping: VIRTUAL_PAGE,
            index: m.addr >> 12,
            copy_ns: None,
            pages: Some(1u64 << m.order.min(20)),
            rc: if stayed { -11 } else { 0 },
            reason: m.reason,
        }
    }
}

/// Whether /proc/cpuinfo's flags include `la57` (5-level paging in use).
pub fn cpuinfo_la57(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .is_some_and(|(_, f)| f.split_whitespace().any(|x| x == "la57"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::MigrateReason;

    /// The kernel's x86_64 encoding of a swap entry (type, offset), written independently of
    /// the decoder: `(~offset << 14 >> 5) | (type << 59)`.
    fn swap_entry(ty: u64, offset: u64) -> u64 {
        ((!offset) << SWP_OFFSET_SHIFT >> SWP_TYPE_BITS) | (ty << 59)
    }

    #[test]
    fn migration_entries_decode_to_their_pfn() {
        let f = PteFormat::x86_64(false);
        for pfn in [0u64, 1, 0x1234, 0x4_0000, (1 << 34) - 1] {
            for flags in [0u64, 1 << 34, 1 << 35, 3 << 34] {
                let e = swap_entry(30, pfn | flags);
                assert_eq!(
                    f.migration_pfn(e),
                    Some(pfn),
                    "pfn {pfn:#x} flags {flags:#x}"
                );
                // Soft-dirty, exclusive and uffd-wp live below bit 9 and do not disturb it.
                assert_eq!(f.migration_pfn(e | 0b110), Some(pfn));
            }
        }
        let five = PteFormat::x86_64(true);
        let big = (1u64 << 38) + 7;
        assert_eq!(five.migration_pfn(swap_entry(29, big | 1 << 40)), Some(big));
    }

    #[test]
    fn non_migration_entries_are_refused() {
        let f = PteFormat::x86_64(false);
        assert_eq!(f.migration_pfn(0), None);
        assert_eq!(f.migration_pfn(0x8000_0000_1234_5067), None, "present");
        assert_eq!(f.migration_pfn(swap_entry(0, 5)), None, "swap file 0");
    }

    #[test]
    fn present_entries_decode_including_prot_none() {
        let f = PteFormat::x86_64(false);
        // A writable, dirty, accessed, NX user page at pfn 0x12345.
        let pte = 0x8000_0000_1234_5067u64;
        assert_eq!(f.present_pfn(pte, false), Some(0x12345));
        // PROT_NONE (NUMA hinting): present clear, protnone set, pfn inverted.
        let protnone = !(0x12345u64 << 12) & PTE_PFN_MASK | PROTNONE;
        assert_eq!(f.present_pfn(protnone, false), Some(0x12345));
        assert_eq!(f.present_pfn(0, false), None);
        // A 2 MiB PMD at pfn 0x40000.
        let pmd = (0x40000u64 << 12) | PSE | 0x67;
        assert_eq!(f.present_pfn(pmd, true), Some(0x40000));
    }

    #[test]
    fn other_architectures_decode_nothing() {
        let f = PteFormat {
            decodable: false,
            swap_pfn_bits: 0,
        };
        assert_eq!(f.present_pfn(0x1067, false), None);
        assert_eq!(f.migration_pfn(swap_entry(30, 9)), None);
    }

    fn event(old: Option<u64>, new: u64, order: u32) -> MigrationPte {
        MigrationPte {
            ts_ns: 10,
            pid: 1,
            tid: 2,
            cpu: 0,
            addr: 0x7f00_0000_3000,
            old_entry: old,
            new_entry: new,
            unmapped_ns: 100,
            order,
            reason: Some(MigrateReason::Syscall),
            pmd: false,
        }
    }

    #[test]
    fn events_become_folio_moves() {
        let f = PteFormat::x86_64(false);
        let moved = f.folio(&event(Some(swap_entry(30, 0x100)), 0x200_067, 0));
        assert_eq!(
            (moved.src_pfn, moved.dst_pfn, moved.rc),
            (Some(0x100), Some(0x200), 0)
        );
        assert_eq!(
            (moved.mapping, moved.index),
            (VIRTUAL_PAGE, 0x0007_f000_0003)
        );
        assert_eq!(moved.copy_ns, None);
        // Back to a subpage of the same order-2 folio: it stayed.
        let stayed = f.folio(&event(Some(swap_entry(30, 0x101)), 0x103_067, 2));
        assert_eq!(stayed.rc, -11);
        // The unmap was not seen: destination only.
        let half = f.folio(&event(None, 0x200_067, 0));
        assert_eq!(
            (half.src_pfn, half.dst_pfn, half.rc),
            (None, Some(0x200), 0)
        );
    }

    #[test]
    fn la57_is_read_from_the_flags_line() {
        assert!(cpuinfo_la57("processor\t: 0\nflags\t\t: fpu la57 sse\n"));
        assert!(!cpuinfo_la57("flags\t\t: fpu sse\nbugs\t: la57\n"));
        assert!(!cpuinfo_la57(""));
    }
}
