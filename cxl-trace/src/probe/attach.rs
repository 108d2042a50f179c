//! Attaching programs: tracepoints, and function hooks in the best form the kernel allows
//! (fentry/fexit, else kprobe/kretprobe), each with a status that says why when it is not live.

use std::collections::BTreeMap;

use aya::{
    programs::{BtfTracePoint, FEntry, FExit, KProbe, TracePoint},
    Btf, Ebpf,
};
use aya_obj::btf::BtfKind;

use crate::probe::{tracefs::Tracefs, ProbeStatus};

/// Attaching after the object is loaded: the object, tracefs, and what was said so far.
pub(crate) struct Attach<'a> {
    pub(crate) ebpf: Ebpf,
    pub(crate) tracefs: &'a Tracefs,
    /// Per-probe status, in attach order.
    pub(crate) statuses: Vec<ProbeStatus>,
    /// Warnings that do not stop tracing.
    pub(crate) warnings: Vec<String>,
}

impl Attach<'_> {
    /// Attaches one tracepoint; its status.
    pub(crate) fn tracepoint(&mut self, tp: &TpSpec) -> ProbeStatus {
        attach_tracepoint(&mut self.ebpf, self.tracefs, tp)
    }

    /// Attaches tracepoints, keeping their statuses.
    pub(crate) fn tracepoints(&mut self, tps: &[TpSpec]) {
        for tp in tps {
            let st = self.tracepoint(tp);
            self.statuses.push(st);
        }
    }

    /// Attaches a function hook; one status per program (not kept: the family decides).
    pub(crate) fn hook(
        &mut self,
        hooks: &FnHooks,
        hook: Hook<'_>,
        note: Option<&str>,
    ) -> Vec<ProbeStatus> {
        hooks.attach(&mut self.ebpf, hook, note)
    }
}

/// A tracepoint program and where it attaches.
pub(crate) struct TpSpec {
    pub(crate) program: &'static str,
    pub(crate) category: &'static str,
    pub(crate) name: &'static str,
}

/// A function hook: its programs in each form. A hook is attached whole in one form, since the
/// entry half of one form keeps state the exit half of another does not read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hook<'a> {
    pub(crate) func: &'a str,
    /// (fentry program, fexit program).
    pub(crate) tracing: (Option<&'a str>, Option<&'a str>),
    /// (kprobe program, kretprobe program).
    pub(crate) kprobe: (Option<&'a str>, Option<&'a str>),
}

/// Attaches function hooks: fentry/fexit when the kernel allows them, else kprobe/kretprobe.
pub(crate) struct FnHooks<'a> {
    pub(crate) btf: &'a std::result::Result<Btf, String>,
    pub(crate) syms: &'a std::collections::HashMap<String, u64>,
    /// Hooked functions whose prototype no longer has what their programs read, and why.
    pub(crate) drift: &'a BTreeMap<&'static str, String>,
    /// Skip fentry/fexit (`--kprobes`).
    pub(crate) prefer_kprobes: bool,
}

/// What an attached program must be detached with if its partner fails.
pub(crate) enum Attached {
    Entry(String, aya::programs::fentry::FEntryLinkId),
    Exit(String, aya::programs::fexit::FExitLinkId),
    Probe(String, aya::programs::kprobe::KProbeLinkId),
}

impl FnHooks<'_> {
    /// Attaches `hook` in the best form available; one status per program of the hook, named
    /// after the form that is live, or after the preferred form with every form's refusal.
    pub(crate) fn attach(
        &self,
        ebpf: &mut Ebpf,
        hook: Hook<'_>,
        note: Option<&str>,
    ) -> Vec<ProbeStatus> {
        let func = hook.func;
        let names = |entry: &str, exit: &str| -> Vec<String> {
            let mut v = Vec::new();
            if hook.tracing.0.is_some() || hook.kprobe.0.is_some() {
                v.push(format!("{entry}:{func}"));
            }
            if hook.tracing.1.is_some() || hook.kprobe.1.is_some() {
                v.push(format!("{exit}:{func}"));
            }
            v
        };
        if !self.syms.contains_key(func) {
            let why = format!(
                "no symbol {func} in /proc/kallsyms (inlined or renamed, e.g. .isra/.constprop)"
            );
            return names("fentry", "fexit")
                .into_iter()
                .map(|n| ProbeStatus::unavailable(n, why.clone()))
                .collect();
        }
        if let Some(why) = self.drift.get(func) {
            return names("fentry", "fexit")
                .into_iter()
                .map(|n| ProbeStatus::unavailable(n, why.clone()))
                .collect();
        }
        let mut refusals = Vec::new();
        if self.prefer_kprobes {
            refusals.push("fentry/fexit: not tried (--kprobes)".to_string());
        } else {
            match self.attach_tracing(ebpf, hook) {
                Ok(()) => {
                    return names("fentry", "fexit")
                        .into_iter()
                        .map(|n| ProbeStatus::live(n, note.unwrap_or("attached")))
                        .collect()
                }
                Err(e) => refusals.push(format!("fentry/fexit: {e}")),
            }
        }
        match self.attach_kprobes(ebpf, hook) {
            Ok(()) => names("kprobe", "kretprobe")
                .into_iter()
                .map(|n| ProbeStatus::live(n, note.unwrap_or("attached")))
                .collect(),
            Err(e) => {
                refusals.push(format!("kprobe: {e}"));
                let why = refusals.join("; ");
                names("fentry", "fexit")
                    .into_iter()
                    .map(|n| ProbeStatus::unavailable(n, why.clone()))
                    .collect()
            }
        }
    }

    pub(crate) fn attach_tracing(
        &self,
        ebpf: &mut Ebpf,
        hook: Hook<'_>,
    ) -> std::result::Result<(), String> {
        let func = hook.func;
        let btf = self.btf.as_ref().map_err(Clone::clone)?;
        btf.id_by_type_name_kind(func, BtfKind::Func).map_err(|_| {
            format!("no BTF FUNC {func} in the kernel's BTF (inlined, or built without it)")
        })?;
        let mut done = Vec::new();
        let r = (|| -> std::result::Result<(), String> {
            if let Some(prog) = hook.tracing.0 {
                let p: &mut FEntry = program(ebpf, prog)?;
                p.load(func, btf)
                    .map_err(|e| format!("BPF_PROG_LOAD refused: {}", flatten_error(&e)))?;
                let link = p
                    .attach()
                    .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
                done.push(Attached::Entry(prog.to_string(), link));
            }
            if let Some(prog) = hook.tracing.1 {
                let p: &mut FExit = program(ebpf, prog)?;
                p.load(func, btf).map_err(|e| {
                    log::debug!("fexit:{func}: {e:?}");
                    format!("BPF_PROG_LOAD refused: {}", flatten_error(&e))
                })?;
                let link = p
                    .attach()
                    .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
                done.push(Attached::Exit(prog.to_string(), link));
            }
            Ok(())
        })();
        if r.is_err() {
            detach_all(ebpf, done);
        }
        r
    }

    pub(crate) fn attach_kprobes(
        &self,
        ebpf: &mut Ebpf,
        hook: Hook<'_>,
    ) -> std::result::Result<(), String> {
        if !std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            return Err("this kernel has no kprobes (no kprobe PMU in /sys/bus/event_source/devices; CONFIG_KPROBES is off)".into());
        }
        let mut done = Vec::new();
        let r = (|| -> std::result::Result<(), String> {
            for prog in [hook.kprobe.0, hook.kprobe.1].into_iter().flatten() {
                let p: &mut KProbe = program(ebpf, prog)?;
                p.load()
                    .map_err(|e| format!("BPF_PROG_LOAD refused: {}", flatten_error(&e)))?;
                let link = p
                    .attach(hook.func, 0)
                    .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
                done.push(Attached::Probe(prog.to_string(), link));
            }
            Ok(())
        })();
        if r.is_err() {
            detach_all(ebpf, done);
        }
        r
    }
}

/// Detaches the halves of a hook that did attach when another half did not.
pub(crate) fn detach_all(ebpf: &mut Ebpf, done: Vec<Attached>) {
    for a in done {
        let r = match a {
            Attached::Entry(prog, link) => program::<FEntry>(ebpf, &prog)
                .and_then(|p| p.detach(link).map_err(|e| flatten_error(&e))),
            Attached::Exit(prog, link) => program::<FExit>(ebpf, &prog)
                .and_then(|p| p.detach(link).map_err(|e| flatten_error(&e))),
            Attached::Probe(prog, link) => program::<KProbe>(ebpf, &prog)
                .and_then(|p| p.detach(link).map_err(|e| flatten_error(&e))),
        };
        if let Err(e) = r {
            log::warn!("could not detach a half-attached hook: {e}");
        }
    }
}

pub(crate) fn tp_name(tp: &TpSpec) -> String {
    format!("tracepoint:{}:{}", tp.category, tp.name)
}

/// The program `name` of the object as its concrete type (`TracePoint`, `FEntry`, ...).
pub(crate) fn program<'a, T>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> std::result::Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| flatten_error(&e))
}

pub(crate) fn attach_tracepoint(ebpf: &mut Ebpf, tracefs: &Tracefs, tp: &TpSpec) -> ProbeStatus {
    let name = tp_name(tp);
    if !tracefs.has_event(tp.category, tp.name) {
        return ProbeStatus::unavailable(
            name,
            format!("this kernel has no {}:{} tracepoint", tp.category, tp.name),
        );
    }
    let result = (|| -> std::result::Result<(), String> {
        let prog: &mut TracePoint = program(ebpf, tp.program)?;
        // The fault program may be loaded already (the loader's check of its comm read).
        if prog.fd().is_err() {
            prog.load()
                .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        }
        prog.attach(tp.category, tp.name)
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        Ok(())
    })();
    match result {
        Ok(()) => ProbeStatus::live(name, "attached"),
        Err(e) => ProbeStatus::unavailable(name, e),
    }
}

/// Programs the capability probes of `doctor` load.
pub(crate) const CAP_PROGRAMS: [&str; 3] = ["cap_tp_btf", "cap_raw_tp", "cap_fentry"];

/// Tries each attach kind with a do-nothing program, then detaches it.
pub(crate) fn probe_attach_kinds(
    ebpf: &mut Ebpf,
    btf: &std::result::Result<Btf, String>,
) -> Vec<ProbeStatus> {
    let mut out = Vec::new();

    let tp_btf = (|| -> std::result::Result<(), String> {
        let btf = btf.as_ref().map_err(Clone::clone)?;
        let prog: &mut BtfTracePoint = program(ebpf, CAP_PROGRAMS[0])?;
        prog.load("sched_process_fork", btf)
            .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        let link = prog
            .attach()
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:tp_btf",
        tp_btf,
        "BTF tracepoint on sched_process_fork",
    ));

    let raw = (|| -> std::result::Result<(), String> {
        let prog: &mut aya::programs::RawTracePoint = program(ebpf, CAP_PROGRAMS[1])?;
        prog.load()
            .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        let link = prog
            .attach("sched_process_fork")
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:raw_tracepoint",
        raw,
        "raw tracepoint on sched_process_fork",
    ));

    let fentry = (|| -> std::result::Result<(), String> {
        let btf = btf.as_ref().map_err(Clone::clone)?;
        let prog: &mut FEntry = program(ebpf, CAP_PROGRAMS[2])?;
        prog.load("handle_mm_fault", btf)
            .map_err(|e| format!("BPF_PROG_LOAD refused: {}", flatten_error(&e)))?;
        let link = prog
            .attach()
            .map_err(|e| format!("attach refused: {}", flatten_error(&e)))?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:fentry/fexit",
        fentry,
        "fentry on handle_mm_fault",
    ));

    let kprobe = (|| -> std::result::Result<(), String> {
        let prog: &mut KProbe = program(ebpf, "cap_kprobe")?;
        prog.load()
            .map_err(|e| format!("load refused: {}", flatten_error(&e)))?;
        let link = prog.attach("handle_mm_fault", 0).map_err(|e| {
            let pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
            if pmu {
                format!("attach refused: {}", flatten_error(&e))
            } else {
                format!(
                    "kprobes are not built into this kernel (no kprobe PMU, CONFIG_KPROBES unset): {}",
                    flatten_error(&e)
                )
            }
        })?;
        prog.detach(link).map_err(|e| flatten_error(&e))
    })();
    out.push(result_status(
        "attach:kprobe/kretprobe",
        kprobe,
        "kprobe on handle_mm_fault",
    ));
    out
}

pub(crate) fn result_status(
    name: &str,
    r: std::result::Result<(), String>,
    detail: &str,
) -> ProbeStatus {
    match r {
        Ok(()) => ProbeStatus::live(name, format!("{detail}: loaded and attached")),
        Err(e) => ProbeStatus::unavailable(name, e),
    }
}

/// `None` when every status is live, else the first reason.
pub(crate) fn unavailable_reason(sts: &[ProbeStatus]) -> Option<String> {
    sts.iter()
        .find(|s| !s.is_live())
        .map(|s| format!("{}: {}", s.name, s.reason))
}

/// One line from an error and its sources, cut to a readable length (verifier logs are long).
pub fn flatten_error(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    let s = s.replace('\n', " ");
    // aya appends "Verifier output: <log>"; an empty log is noise.
    let s = match s.trim_end().strip_suffix("Verifier output:") {
        Some(head) => head.trim_end().trim_end_matches('.').to_string(),
        None => s,
    };
    const MAX: usize = 240;
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// The kernel symbols the hooks need: the hooked functions and the variables they read.
pub(crate) const KALLSYMS: &[&str] = &[
    "vmemmap_base",
    "handle_mm_fault",
    "task_numa_fault",
    "move_to_new_folio",
    "node_data",
    "should_numa_migrate_memory",
    "mod_node_page_state",
    "migrate_misplaced_folio_prepare",
    "folio_isolate_lru",
    "demote_folio_list",
    "demote_page_list",
];
