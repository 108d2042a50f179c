use super::*;

fn comm(s: &str) -> Comm {
    let mut c = [0u8; 16];
    c[..s.len()].copy_from_slice(s.as_bytes());
    Comm(c)
}

fn slot(cpu: u32, slot: u32, pid: u32, name: &str, user_reads: u64, kernel: u64) -> SlotRead {
    let mut counts = [0; COUNTERS];
    counts[0] = user_reads;
    counts[KINDS + 2] = kernel;
    SlotRead {
        cpu,
        slot,
        pid,
        comm: comm(name),
        counts,
    }
}

fn snap(totals_user: u64, slots: Vec<SlotRead>) -> FaultSnapshot {
    let mut totals = [0; COUNTERS];
    totals[0] = totals_user;
    FaultSnapshot { totals, slots }
}

#[test]
fn only_what_follows_the_base_counts() {
    let base = snap(100, vec![slot(0, 5, 5, "a", 100, 0)]);
    let mut t = FaultTracker::new(&base);
    let d = t.advance(&snap(
        130,
        vec![slot(0, 5, 5, "a", 120, 0), slot(1, 5, 5, "a", 10, 0)],
    ));
    assert_eq!(d.totals[0], 30);
    assert_eq!(
        d.by_pid[&5].1[0], 30,
        "both CPUs' slots of one process add up"
    );
    assert_eq!(d.by_pid[&5].0, comm("a"));
    // Nothing new: an empty delta.
    let d = t.advance(&snap(
        130,
        vec![slot(0, 5, 5, "a", 120, 0), slot(1, 5, 5, "a", 10, 0)],
    ));
    assert_eq!(d, FaultDelta::default());
}

#[test]
fn a_new_holder_counts_from_zero_and_overflow_is_unattributed() {
    let mut t = FaultTracker::new(&snap(0, vec![slot(0, 7, 7, "old", 50, 0)]));
    let d = t.advance(&snap(
        14,
        vec![slot(0, 7, 1031, "new", 4, 0), slot(0, OTHER, 0, "", 10, 0)],
    ));
    assert_eq!(d.by_pid[&1031].1[0], 4);
    assert!(!d.by_pid.contains_key(&7));
    assert_eq!(d.unattributed[0], 10);
    let attributed: u64 = d.by_pid.values().map(|(_, c)| c.iter().sum::<u64>()).sum();
    let unattributed: u64 = d.unattributed.iter().sum();
    assert_eq!(attributed + unattributed, d.totals.iter().sum::<u64>());
}

#[test]
fn kernel_mode_counters_stay_apart() {
    let mut t = FaultTracker::new(&FaultSnapshot::default());
    let d = t.advance(&snap(0, vec![slot(1, 3, 3, "k", 0, 9)]));
    let rows: Vec<_> = split(&d.by_pid[&3].1).filter(|r| r.1 + r.2 > 0).collect();
    assert_eq!(rows, vec![(FaultKind::WriteProtection, 0, 9)]);
}

#[test]
fn slots_are_released_only_when_every_holder_is_gone() {
    let mut t = FaultTracker::new(&snap(
        0,
        vec![
            slot(0, 1, 1, "a", 1, 0),
            slot(1, 1, 1025, "b", 1, 0),
            slot(0, 2, 2, "c", 1, 0),
            slot(1, 2, 1026, "c", 1, 0),
            slot(0, OTHER, 0, "", 1, 0),
        ],
    ));
    // 1025 lives on CPU 1 in slot 1: slot 1 stays. Slot 2 is found dead, and released the
    // next time (its last faults read in between).
    assert!(t.releasable(|pid| pid == 1025).is_empty());
    let r = t.releasable(|pid| pid == 1025);
    assert_eq!(r, vec![(2, vec![(0, 2), (1, 1026)])]);
    t.released(&r);
    // Asked once: not again while the same holders keep it.
    assert!(t.releasable(|pid| pid == 1025).is_empty());
    // The kernel handed slot 2 over on CPU 0: the new holder counts from zero.
    let d = t.advance(&snap(
        3,
        vec![
            slot(0, 1, 1, "a", 1, 0),
            slot(1, 1, 1025, "b", 1, 0),
            slot(0, 2, 2050, "d", 3, 0),
            slot(1, 2, 1026, "c", 1, 0),
        ],
    ));
    assert_eq!(d.by_pid[&2050].1[0], 3);
    assert_eq!(d.by_pid.len(), 1);
    // CPU 1's dead holder of slot 2 is still asked for; 2050 lives, so slot 2 is not free.
    assert!(t.releasable(|pid| pid == 1025 || pid == 2050).is_empty());
}

#[test]
fn a_counter_that_went_down_restarts() {
    let mut t = FaultTracker::new(&snap(0, vec![slot(0, 4, 4, "a", 90, 0)]));
    // Freed and retaken by the same pid (reused) between two reads.
    let d = t.advance(&snap(0, vec![slot(0, 4, 4, "a", 6, 0)]));
    assert_eq!(d.by_pid[&4].1[0], 6);
}

#[test]
fn error_codes_classify_as_the_x86_bits_say() {
    // PROT 1, WRITE 2, USER 4, RSVD 8, INSTR 16, PK 32.
    for (code, kind) in [
        (0x4, FaultKind::ReadNotPresent),
        (0x6, FaultKind::WriteNotPresent),
        (0x7, FaultKind::WriteProtection),
        (0x5, FaultKind::ReadProtection),
        (0x14, FaultKind::InstructionFetch),
        (0x15, FaultKind::InstructionFetch),
        (0x9, FaultKind::ReservedBit),
        (0x3f, FaultKind::ReservedBit),
        (0x27, FaultKind::ProtectionKey),
    ] {
        assert_eq!(FaultKind::from_x86_error_code(code), kind, "{code:#x}");
    }
}
