//! Page faults: the exception tracepoints (every fault, its kind and address) and, where
//! function hooks are allowed, fault latency (`handle_mm_fault`) and NUMA hinting faults
//! (`task_numa_fault`), with the page allocation tracepoint naming the node of pages
//! allocated during a fault.

use aya::maps::{Array, MapData, PerCpuArray, PerCpuValues};
use cxl_trace_common::{
    fault_agg, lat_agg, FaultLayout, FaultTotals, LatHist, PfnRanges, SlotPage,
};

use crate::{
    error::{Error, Result},
    model::{
        event::Comm,
        fault_counts::{FaultSnapshot, SlotRead},
        kernel_latency::{empty_hist, TierSlots},
        tiers::Availability,
        tracefs::Format,
    },
    probe::{
        attach::{unavailable_reason, Attach, FnHooks, Hook, TpSpec},
        take_map,
    },
};

pub(crate) const FAULT_TPS: [TpSpec; 2] = [
    TpSpec {
        program: "page_fault_user",
        category: "exceptions",
        name: "page_fault_user",
    },
    TpSpec {
        program: "page_fault_kernel",
        category: "exceptions",
        name: "page_fault_kernel",
    },
];
/// The node of pages allocated during a fault.
pub(crate) const ALLOC_TP: TpSpec = TpSpec {
    program: "mm_page_alloc",
    category: "kmem",
    name: "mm_page_alloc",
};

pub(crate) const HOOK_FAULT: Hook<'static> = Hook {
    func: "handle_mm_fault",
    tracing: (Some("handle_mm_fault_entry"), Some("handle_mm_fault_exit")),
    kprobe: (
        Some("handle_mm_fault_kprobe"),
        Some("handle_mm_fault_kretprobe"),
    ),
};
pub(crate) const HOOK_NUMA_FAULT: Hook<'static> = Hook {
    func: "task_numa_fault",
    tracing: (Some("task_numa_fault"), None),
    kprobe: (Some("task_numa_fault_kprobe"), None),
};

/// Fault latency, the allocation tracepoint with it, and NUMA hinting faults.
pub(crate) fn attach_hooks(at: &mut Attach, hooks: &FnHooks, avail: &mut Availability) {
    let st = at.hook(hooks, HOOK_FAULT, None);
    avail.latency = unavailable_reason(&st);
    at.statuses.extend(st);
    if avail.latency.is_none() {
        let st = at.tracepoint(&ALLOC_TP);
        at.statuses.push(st);
    }
    let st = at.hook(hooks, HOOK_NUMA_FAULT, None);
    avail.numa = unavailable_reason(&st);
    at.statuses.extend(st);
}

/// Offsets for the fault programs from the tracefs format.
pub fn fault_layout(f: &Format) -> std::result::Result<FaultLayout, String> {
    Ok(FaultLayout {
        address: f.offset("address", 8)?,
        ip: f.offset("ip", 8)?,
        error_code: f.offset("error_code", 8)?,
        _reserved: 0,
    })
}

/// The in-kernel fault counters of the live modes.
pub(crate) struct FaultAggMaps {
    pages: PerCpuArray<MapData, SlotPage>,
    totals: PerCpuArray<MapData, FaultTotals>,
    release: PerCpuArray<MapData, u32>,
    exit_comm: aya::maps::HashMap<MapData, u32, [u8; cxl_trace_common::COMM_LEN]>,
}

impl FaultAggMaps {
    /// Takes the maps out of the loaded object.
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self> {
        Ok(Self {
            pages: take_map(ebpf, fault_agg::PROC_MAP, PerCpuArray::try_from)?,
            totals: take_map(ebpf, fault_agg::TOTALS_MAP, PerCpuArray::try_from)?,
            release: take_map(ebpf, fault_agg::RELEASE_MAP, PerCpuArray::try_from)?,
            exit_comm: take_map(ebpf, fault_agg::EXIT_COMM_MAP, aya::maps::HashMap::try_from)?,
        })
    }

    /// The thread name `pid` exited with.
    pub(crate) fn exit_comm(&self, pid: u32) -> Option<[u8; cxl_trace_common::COMM_LEN]> {
        self.exit_comm.get(&pid, 0).ok()
    }

    /// Everything counted so far: one lookup for the totals and one per page of slots (each
    /// returns every CPU's value).
    pub(crate) fn read(&self) -> Result<FaultSnapshot> {
        let err = |e: aya::maps::MapError| Error::Runtime(format!("fault counters: {e}"));
        let mut snap = FaultSnapshot::default();
        let mut other = [0u64; fault_agg::COUNTERS];
        for t in self.totals.get(&0, 0).map_err(err)?.iter() {
            for (a, b) in snap.totals.iter_mut().zip(t.counts) {
                *a = a.saturating_add(b);
            }
            for (a, b) in other.iter_mut().zip(t.other) {
                *a = a.saturating_add(b);
            }
        }
        if other.iter().any(|&c| c > 0) {
            snap.slots.push(SlotRead {
                cpu: 0,
                slot: fault_agg::OTHER,
                pid: 0,
                comm: Comm::default(),
                counts: other,
            });
        }
        for page in 0..fault_agg::PAGES {
            let values = self.pages.get(&page, 0).map_err(err)?;
            for (cpu, p) in values.iter().enumerate() {
                for (i, v) in p.slots.iter().enumerate() {
                    if v.pid == 0 {
                        continue;
                    }
                    snap.slots.push(SlotRead {
                        cpu: cpu as u32,
                        slot: page * fault_agg::SLOTS_PER_PAGE + i as u32,
                        pid: v.pid,
                        comm: Comm(v.comm),
                        counts: v.counts,
                    });
                }
            }
        }
        Ok(snap)
    }

    /// Lets the kernel hand `slots` over, each `(slot, [(cpu, exited holder)])`.
    pub(crate) fn release(&mut self, slots: &[(u32, Vec<(u32, u32)>)]) -> Result<()> {
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| Error::Runtime(format!("cannot count CPUs: {e}")))?
            .get() as usize;
        for (slot, holders) in slots {
            let mut v = vec![0u32; cpus];
            for &(cpu, pid) in holders {
                if let Some(x) = v.get_mut(cpu as usize) {
                    *x = pid;
                }
            }
            let values = PerCpuValues::try_from(v)
                .map_err(|e| Error::Runtime(format!("fault slot {slot}: {e}")))?;
            self.release
                .set(*slot, values, 0)
                .map_err(|e| Error::Runtime(format!("cannot release fault slot {slot}: {e}")))?;
        }
        Ok(())
    }
}

/// The in-kernel fault-latency histograms of the live modes and the tables that place a
/// fault's page in a tier.
pub(crate) struct LatencyAggMaps {
    hists: PerCpuArray<MapData, LatHist>,
    node_tier: Array<MapData, u32>,
    ranges: Array<MapData, PfnRanges>,
}

impl LatencyAggMaps {
    /// Takes the three maps out of the loaded object.
    pub(crate) fn take(ebpf: &mut aya::Ebpf) -> Result<Self> {
        Ok(Self {
            hists: take_map(ebpf, lat_agg::HIST_MAP, PerCpuArray::try_from)?,
            node_tier: take_map(ebpf, lat_agg::NODE_TIER_MAP, Array::try_from)?,
            ranges: take_map(ebpf, lat_agg::RANGES_MAP, Array::try_from)?,
        })
    }

    /// Hands the kernel the node-to-slot and pfn-to-node tables.
    pub(crate) fn set_tables(&mut self, slots: &TierSlots, ranges: &PfnRanges) -> Result<()> {
        let err = |e: aya::maps::MapError| Error::Runtime(format!("tier tables: {e}"));
        for (node, slot) in slots.node_slot.iter().enumerate() {
            self.node_tier.set(node as u32, slot, 0).map_err(err)?;
        }
        self.ranges.set(0, ranges, 0).map_err(err)
    }

    /// The histograms, each summed over CPUs.
    pub(crate) fn read(&self) -> Result<Vec<LatHist>> {
        let err = |e: aya::maps::MapError| Error::Runtime(format!("latency histograms: {e}"));
        (0..lat_agg::TIER_SLOTS * lat_agg::CLASSES)
            .map(|i| {
                let mut sum = empty_hist();
                for h in self.hists.get(&i, 0).map_err(err)?.iter() {
                    sum.n = sum.n.saturating_add(h.n);
                    sum.sum_ns = sum.sum_ns.saturating_add(h.sum_ns);
                    sum.retried = sum.retried.saturating_add(h.retried);
                    sum.gup = sum.gup.saturating_add(h.gup);
                    for (a, b) in sum.counts.iter_mut().zip(h.counts) {
                        *a = a.saturating_add(b);
                    }
                }
                Ok(sum)
            })
            .collect()
    }
}
