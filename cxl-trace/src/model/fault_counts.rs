//! Fault counts aggregated in the kernel (the live modes): the per-CPU counters read each
//! interval, turned into per-interval deltas by total and by process. Pure; the reads are in
//! the probe layer.
//!
//! The kernel keeps, per CPU, exact totals by mode and kind, and a bounded table of
//! per-process slots (`pid % SLOTS`; a process that finds its slot held by another counts in
//! the totals' `other`). Counters only grow while a process holds a slot. Once every process
//! holding a slot on any CPU has exited (and its last counts were read), userspace tells the
//! kernel it may hand the slot over; the next process to fault there takes it from zero.

use std::collections::{BTreeMap, HashMap};

use cxl_trace_common::fault_agg::{COUNTERS, KINDS, OTHER};

use crate::model::event::{Comm, FaultKind};

/// One non-empty slot on one CPU, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRead {
    /// CPU.
    pub cpu: u32,
    /// Slot index (`OTHER` for the overflow slot).
    pub slot: u32,
    /// The holder (0 for the overflow slot).
    pub pid: u32,
    /// The holder's thread name when it took the slot.
    pub comm: Comm,
    /// Counters, cumulative since the slot was taken.
    pub counts: [u64; COUNTERS],
}

/// Everything the kernel counted, as read at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSnapshot {
    /// Totals over CPUs, cumulative since attach.
    pub totals: [u64; COUNTERS],
    /// The slots that hold counts.
    pub slots: Vec<SlotRead>,
}

/// What the kernel counted between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultDelta {
    /// Every fault, by counter.
    pub totals: [u64; COUNTERS],
    /// Per process: its name and its counters.
    pub by_pid: BTreeMap<u32, (Comm, [u64; COUNTERS])>,
    /// Faults of processes that found their slot taken (counted in `totals`, not by process).
    pub unattributed: [u64; COUNTERS],
}

/// The counters of one mode and kind: `(user, kernel)` by [`FaultKind::ALL`] index.
pub fn split(c: &[u64; COUNTERS]) -> impl Iterator<Item = (FaultKind, u64, u64)> + '_ {
    FaultKind::ALL
        .iter()
        .enumerate()
        .map(move |(k, kind)| (*kind, c[k], c[KINDS + k]))
}

/// Turns successive snapshots into deltas.
#[derive(Clone, Debug, Default)]
pub struct FaultTracker {
    totals: [u64; COUNTERS],
    slots: HashMap<(u32, u32), (u32, [u64; COUNTERS])>,
    /// (cpu, slot, pid) the kernel may hand over.
    requested: std::collections::HashSet<(u32, u32, u32)>,
    /// (cpu, slot) whose counters moved in the last read.
    active: std::collections::HashSet<(u32, u32)>,
    /// Slots found with every holder gone at the last call of `releasable`.
    dead_before: BTreeMap<u32, Vec<(u32, u32)>>,
}

impl FaultTracker {
    /// Starts from `base` (the instant the window opened): only what comes after counts.
    pub fn new(base: &FaultSnapshot) -> Self {
        let mut t = Self::default();
        let _ = t.advance(base);
        // What the base holds is all history, not recent activity.
        t.active.clear();
        t
    }

    /// The delta since the last snapshot. A slot whose holder changed (freed and taken again)
    /// counts from zero; a counter that went down (a slot freed and retaken in between) too.
    pub fn advance(&mut self, snap: &FaultSnapshot) -> FaultDelta {
        let mut d = FaultDelta::default();
        for (i, t) in d.totals.iter_mut().enumerate() {
            *t = snap.totals[i].saturating_sub(self.totals[i]);
        }
        self.totals = snap.totals;
        let mut seen = HashMap::with_capacity(snap.slots.len());
        let mut active = std::collections::HashSet::new();
        for s in &snap.slots {
            let key = (s.cpu, s.slot);
            let prev = self
                .slots
                .get(&key)
                .filter(|(pid, _)| *pid == s.pid)
                .map(|(_, c)| *c);
            let mut delta = [0u64; COUNTERS];
            for (i, v) in delta.iter_mut().enumerate() {
                let before = prev.map_or(0, |p| p[i]);
                *v = if s.counts[i] >= before {
                    s.counts[i] - before
                } else {
                    s.counts[i]
                };
            }
            seen.insert(key, (s.pid, s.counts));
            if delta.iter().all(|&v| v == 0) {
                continue;
            }
            active.insert(key);
            let into = if s.slot == OTHER || s.pid == 0 {
                &mut d.unattributed
            } else {
                let e = d.by_pid.entry(s.pid).or_insert((s.comm, [0; COUNTERS]));
                &mut e.1
            };
            for (a, b) in into.iter_mut().zip(delta) {
                *a = a.saturating_add(b);
            }
        }
        self.slots = seen;
        self.active = active;
        // A request is done once the slot has another holder (or none).
        let slots = &self.slots;
        self.requested
            .retain(|(cpu, slot, pid)| slots.get(&(*cpu, *slot)).is_some_and(|(p, _)| p == pid));
        d
    }

    /// Slots every holder of which is gone (`alive` says no), on every CPU, and was gone
    /// already at the call before (so its last faults are in the counts read since), not yet
    /// handed back: `(slot, [(cpu, pid)])`, for the kernel to let the next process take them.
    pub fn releasable(&mut self, alive: impl Fn(u32) -> bool) -> Vec<(u32, Vec<(u32, u32)>)> {
        let dead = self.dead_slots(alive);
        let before = std::mem::replace(&mut self.dead_before, dead.clone());
        dead.into_iter()
            .filter(|(slot, holders)| before.get(slot) == Some(holders))
            .filter_map(|(slot, mut holders)| {
                holders.retain(|&(cpu, pid)| !self.requested.contains(&(cpu, slot, pid)));
                (!holders.is_empty()).then_some((slot, holders))
            })
            .collect()
    }

    /// Slots every holder of which is gone, with their holders.
    fn dead_slots(&self, alive: impl Fn(u32) -> bool) -> BTreeMap<u32, Vec<(u32, u32)>> {
        let mut by_slot: BTreeMap<u32, (bool, Vec<(u32, u32)>)> = BTreeMap::new();
        for (&(cpu, slot), &(pid, _)) in &self.slots {
            if slot == OTHER {
                continue;
            }
            let e = by_slot.entry(slot).or_insert((true, Vec::new()));
            // A holder that faulted since the last read lives: no need to ask.
            e.0 = e.0 && pid != 0 && !self.active.contains(&(cpu, slot)) && !alive(pid);
            e.1.push((cpu, pid));
        }
        by_slot
            .into_iter()
            .filter(|(_, (dead, _))| *dead)
            .map(|(slot, (_, mut holders))| {
                holders.sort_unstable();
                (slot, holders)
            })
            .collect()
    }

    /// The kernel was told it may hand these slots over.
    pub fn released(&mut self, slots: &[(u32, Vec<(u32, u32)>)]) {
        for (slot, holders) in slots {
            for &(cpu, pid) in holders {
                self.requested.insert((cpu, *slot, pid));
            }
        }
    }
}

#[cfg(test)]
mod tests;
