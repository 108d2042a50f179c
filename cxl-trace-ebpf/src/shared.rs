//! Maps, globals and helpers shared by every program.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        bpf_probe_read_kernel,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_task_btf},
    },
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
    EbpfContext, Global,
};
use cxl_trace_common::{config_flags, stat, Config, EventHeader, HookArgs, COMM_LEN, FOLLOW_MAX};

/// Default ring buffer size; userspace resizes it with `EbpfLoader::set_max_entries`.
const EVENTS_BYTES: u32 = 16 << 20;

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::NR, 0);

#[map]
pub static FOLLOW: HashMap<u32, u8> = HashMap::with_max_entries(FOLLOW_MAX, 0);

#[unsafe(no_mangle)]
pub static CONFIG: Global<Config> = Global::new(Config {
    flags: 0,
    cgroup_level: 0,
    cgroup_id: 0,
    comm: [0; COMM_LEN],
    wake_bytes: EVENTS_BYTES / 32,
    _reserved: 0,
});

/// Adds one to the per-CPU counter `idx`.
#[inline(always)]
pub fn bump(idx: u32) {
    if let Some(slot) = STATS.get_ptr_mut(idx) {
        // SAFETY: the pointer comes from a successful per-CPU array lookup, so it points to
        // this CPU's u64 slot; BPF programs are not preempted on one CPU by another program
        // that touches the same per-CPU slot, so the plain increment does not race.
        unsafe { *slot += 1 };
    }
}

/// CLOCK_MONOTONIC now, ns (the clock of every event timestamp).
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without pointer arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// The current thread's name. Where userspace found `task_struct.comm` in the kernel's BTF,
/// two loads from the current task (the verifier types the helper's result from BTF and
/// allows reads inside the `comm` array); else `bpf_get_current_comm`, a helper call that
/// copies and pads the name.
#[inline(always)]
pub fn current_comm() -> [u8; COMM_LEN] {
    let off = KERNEL_LAYOUT.load().task_comm;
    if off != u32::MAX {
        // SAFETY: `bpf_get_current_task_btf` returns the current task, valid for the whole run
        // of the program; `off` is where this kernel's BTF puts the 16-byte `comm` in it, so
        // both loads stay inside the array, and the verifier turns them into loads that
        // cannot fault.
        let words = unsafe {
            let task = bpf_get_current_task_btf() as *const u8;
            let p = task.add(off as usize) as *const u64;
            [
                core::ptr::read_volatile(p),
                core::ptr::read_volatile(p.add(1)),
            ]
        };
        let mut comm = [0u8; COMM_LEN];
        comm[..8].copy_from_slice(&words[0].to_ne_bytes());
        comm[8..].copy_from_slice(&words[1].to_ne_bytes());
        return comm;
    }
    bpf_get_current_comm().unwrap_or([0u8; COMM_LEN])
}

/// Current (pid = tgid, tid).
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

/// Whether events of process `pid` (the current task's tgid) should be emitted: every
/// configured filter (followed pids, cgroup subtree, thread name) must accept it.
#[inline(always)]
pub fn followed(pid: u32) -> bool {
    let c = CONFIG.load();
    if c.flags & config_flags::FILTER != 0 {
        // SAFETY: the value is a u8 that is only read, never held across a helper call that
        // could free it.
        if unsafe { FOLLOW.get(&pid) }.is_none() {
            return false;
        }
    }
    if c.flags & config_flags::CGROUP != 0 {
        // SAFETY: helper without pointer arguments; it returns 0 when the task's cgroup is
        // shallower than the level asked for.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(c.cgroup_level as i32) };
        if id != c.cgroup_id {
            return false;
        }
    }
    if c.flags & config_flags::COMM != 0 && current_comm() != c.comm {
        return false;
    }
    true
}

/// Whether a config flag is set.
#[inline(always)]
pub fn flag(bit: u32) -> bool {
    CONFIG.load().flags & bit != 0
}

/// A filled-in header for an event of `kind` of the current task.
#[inline(always)]
pub fn header(kind: u16, pid: u32, tid: u32) -> EventHeader {
    header_at(kind, pid, tid, now())
}

/// The same with a timestamp already taken (one clock read fewer on a hot path).
#[inline(always)]
pub fn header_at(kind: u16, pid: u32, tid: u32, ts_ns: u64) -> EventHeader {
    EventHeader {
        ts_ns,
        pid,
        tid,
        kind,
        // SAFETY: as above.
        cpu: unsafe { bpf_get_smp_processor_id() } as u16,
        _reserved: 0,
    }
}

/// Submit flags with adaptive wake-ups: waking the reader costs an irq_work (a self-interrupt)
/// on the producing CPU, which at one per record more than tripled the cost of a page fault.
/// Records are submitted without a wake-up until the unread data reaches `Config::wake_bytes`
/// (1/32 of the ring), then every submit wakes the reader; userspace also drains on a 50 ms
/// timer, so a quiet ring is never left unread for long.
#[inline(always)]
pub fn submit_flags() -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let avail = EVENTS.query(u64::from(BPF_RB_AVAIL_DATA));
    if avail >= u64::from(CONFIG.load().wake_bytes) {
        u64::from(BPF_RB_FORCE_WAKEUP)
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    }
}

/// Reserves room for a `T` in the ring buffer, writes it and submits it, counting the record
/// as produced or dropped for `kind`.
#[inline(always)]
pub fn emit<T: 'static>(kind: u16, value: T) {
    emit_with(kind, value, false)
}

/// [`emit`], waking the reader at once when `urgent`: a memory error or an offline, whose
/// blast radius userspace reads from /proc while it is still true.
#[inline(always)]
pub fn emit_with<T: 'static>(kind: u16, value: T, urgent: bool) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(value);
            entry.submit(if urgent {
                u64::from(aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP)
            } else {
                submit_flags()
            });
            bump(stat::PRODUCED + u32::from(kind));
        }
        None => bump(stat::DROPPED + u32::from(kind)),
    }
}

/// Argument `n` of a fentry/fexit context as a scalar (not a typed pointer): the verifier types
/// pointer arguments from BTF and refuses arithmetic on them, a plain number it accepts.
#[inline(always)]
fn raw_arg<C: EbpfContext>(ctx: &C, n: usize) -> u64 {
    let slot = (ctx.as_ptr() as *const u64).wrapping_add(n);
    // SAFETY: a fentry/fexit context is an array of u64 argument slots (plus the return value
    // for fexit); `n` is within it, and bpf_probe_read_kernel fails cleanly rather than faulting.
    unsafe { bpf_probe_read_kernel(slot) }.unwrap_or(0)
}

/// Argument (or return) slot `n` of a fentry/fexit context, `n` from [`HOOK_ARGS`]: each arm
/// has a constant offset, as the verifier wants for context reads.
#[inline(always)]
pub fn arg_at<C: EbpfContext>(ctx: &C, n: u8) -> u64 {
    match n {
        0 => raw_arg(ctx, 0),
        1 => raw_arg(ctx, 1),
        2 => raw_arg(ctx, 2),
        3 => raw_arg(ctx, 3),
        4 => raw_arg(ctx, 4),
        5 => raw_arg(ctx, 5),
        6 => raw_arg(ctx, 6),
        _ => 0,
    }
}

/// Argument `n` of a kprobe, `n` from [`HOOK_ARGS`] (the first six are in registers).
///
/// All six argument registers are read at their fixed offsets first: picking the register by
/// `n` would let the compiler fold the choice into one context load at a variable offset,
/// which the verifier refuses ("dereference of modified ctx ptr"). Volatile reads cannot be
/// merged that way.
#[inline(always)]
pub fn kprobe_arg(ctx: &aya_ebpf::programs::ProbeContext, n: u8) -> u64 {
    let r = ctx.regs;
    // SAFETY: a kprobe's context is the probed task's `pt_regs`, valid and readable for the
    // whole run of the program; each read is at a constant offset into it.
    let regs = unsafe {
        [
            core::ptr::read_volatile(&(*r).rdi),
            core::ptr::read_volatile(&(*r).rsi),
            core::ptr::read_volatile(&(*r).rdx),
            core::ptr::read_volatile(&(*r).rcx),
            core::ptr::read_volatile(&(*r).r8),
            core::ptr::read_volatile(&(*r).r9),
        ]
    };
    let mut v = 0;
    for (i, reg) in regs.iter().enumerate() {
        if usize::from(n) == i {
            v = *reg;
        }
    }
    v
}

/// Where the hooked functions' arguments are on this kernel (set by userspace from BTF).
#[unsafe(no_mangle)]
pub static HOOK_ARGS: Global<HookArgs> = Global::new(HookArgs::DEFAULT);

/// Addresses and struct layouts of this kernel (set by userspace before load).
#[unsafe(no_mangle)]
pub static KERNEL_LAYOUT: Global<cxl_trace_common::KernelLayout> =
    Global::new(cxl_trace_common::KernelLayout::DEFAULT);

/// A pfn or address that is not known.
pub const NONE: u64 = u64::MAX;
