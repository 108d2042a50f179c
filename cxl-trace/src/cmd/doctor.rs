//! `cxl-trace doctor`: what this kernel and these privileges allow.

use crate::{
    model::schema::{Doctor, DoctorCxl, DoctorTier},
    model::topology::{format_list, Topology},
    probe::tracefs::Tracefs,
    probe::{self, caps, ProbeStatus, TraceConfig, Tracer},
};

/// Tracepoints the tool uses or will use, checked for presence.
/// Runs `doctor`: the report as text or JSON, or with `--capture DIR` the kernel's facts.
pub fn run(o: &crate::cli::DoctorCmdOpts) -> crate::error::Result<i32> {
    if let Some(dir) = &o.capture {
        let n = probe::facts::capture(dir)?;
        eprintln!(
            "cxl-trace: {n} files of kernel facts written to {}",
            dir.display()
        );
        return Ok(0);
    }
    let report = gather();
    let out = if o.base.json {
        crate::model::schema::to_pretty(&to_doc(&report))?
    } else {
        to_text(&report, o.verbose)
    };
    crate::output::write_stdout(out.as_bytes())?;
    Ok(0)
}

pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("exceptions", "page_fault_user"),
    ("exceptions", "page_fault_kernel"),
    ("migrate", "mm_migrate_pages_start"),
    ("migrate", "mm_migrate_pages"),
    ("migrate", "set_migration_pte"),
    ("migrate", "remove_migration_pte"),
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exit"),
    ("sched", "sched_move_numa"),
    ("sched", "sched_stick_numa"),
    ("sched", "sched_swap_numa"),
    ("kmem", "mm_page_alloc"),
    ("vmscan", "mm_vmscan_kswapd_wake"),
    ("ras", "memory_failure_event"),
    ("mce", "mce_record"),
];

/// The doctor's findings.
#[derive(Debug)]
pub struct Report {
    /// Kernel release.
    pub kernel: String,
    /// Capabilities (privileges, BTF, tracefs, ring buffer, memlock).
    pub capabilities: Vec<ProbeStatus>,
    /// Probes: attached programs and attach kinds.
    pub probes: Vec<ProbeStatus>,
    /// Tracepoints present or absent in tracefs.
    pub tracepoints: Vec<ProbeStatus>,
    /// Settings: name to value.
    pub settings: Vec<(String, String)>,
    /// Memory tiers (name, nodelist).
    pub tiers: Vec<(String, String)>,
    /// CXL memory devices, or None when /sys/bus/cxl is absent.
    pub cxl: Option<Vec<String>>,
}

/// Gathers the report. Never fails: everything that cannot be checked is reported as such.
pub fn gather() -> Report {
    let kernel =
        caps::read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    let tracefs = Tracefs::locate_or_mount();
    let (mut capabilities, privileged) = capabilities(&tracefs);
    let probes = probes(privileged, &mut capabilities);
    let topo = Topology::live();
    let tiers = topo
        .tiers
        .iter()
        .map(|t| (format!("memory_tier{}", t.id), format_list(&t.nodes)))
        .collect();
    let cxl = topo
        .cxl
        .bus
        .then(|| topo.cxl.memdevs.iter().map(|m| m.name.clone()).collect());
    Report {
        kernel,
        capabilities,
        probes,
        tracepoints: tracepoints(&tracefs),
        settings: settings(),
        tiers,
        cxl,
    }
}

/// Privileges, BTF, tracefs and the embedded object; whether the privileges suffice.
fn capabilities(
    tracefs: &std::result::Result<Tracefs, crate::error::Error>,
) -> (Vec<ProbeStatus>, bool) {
    let mut capabilities = Vec::new();
    let privileged = match caps::require_bpf_privileges() {
        Ok(()) => {
            let mask = caps::effective_caps().unwrap_or(0);
            capabilities.push(ProbeStatus::live("privileges", caps::describe_mask(mask)));
            true
        }
        Err(e) => {
            capabilities.push(ProbeStatus::unavailable("privileges", e.to_string()));
            false
        }
    };
    capabilities.push(match caps::btf_status() {
        Ok(size) => ProbeStatus::live("btf", format!("/sys/kernel/btf/vmlinux ({size} bytes)")),
        Err(e) => ProbeStatus::unavailable("btf", e),
    });
    capabilities.push(match tracefs {
        Ok(t) => ProbeStatus::live(
            "tracefs",
            format!(
                "{}{}",
                t.root.display(),
                if t.mounted_by_us {
                    " (mounted by cxl-trace)"
                } else {
                    ""
                }
            ),
        ),
        Err(e) => ProbeStatus::unavailable("tracefs", e.to_string()),
    });
    capabilities.push(if probe::has_bpf_object() {
        ProbeStatus::live("bpf_object", "eBPF programs embedded in this binary")
    } else {
        ProbeStatus::unavailable("bpf_object", crate::error::Error::NoEbpfObject.to_string())
    });

    (capabilities, privileged)
}

/// Every tracepoint the probes use, present or not, and the CXL ones this kernel has.
fn tracepoints(tracefs: &std::result::Result<Tracefs, crate::error::Error>) -> Vec<ProbeStatus> {
    TRACEPOINTS
        .iter()
        .map(|(cat, name)| {
            let n = format!("tracepoint:{cat}:{name}");
            match tracefs {
                Ok(t) if t.has_event(cat, name) => ProbeStatus::live(n, "present"),
                Ok(_) => {
                    ProbeStatus::unavailable(n, "not in this kernel (or its module is not loaded)")
                }
                Err(_) => ProbeStatus::unavailable(n, "tracefs unavailable"),
            }
        })
        .chain(match tracefs {
            Ok(t) => {
                let cxl = t.events_of("cxl");
                if cxl.is_empty() {
                    vec![ProbeStatus::unavailable(
                        "tracepoint:cxl:*",
                        "no cxl events (cxl_core not loaded or no CXL support)",
                    )]
                } else {
                    vec![ProbeStatus::live("tracepoint:cxl:*", cxl.join(","))]
                }
            }
            Err(_) => vec![ProbeStatus::unavailable(
                "tracepoint:cxl:*",
                "tracefs unavailable",
            )],
        })
        .collect()
}

/// Every probe attached once (then detached), with the ring buffer and memlock it needed.
fn probes(privileged: bool, capabilities: &mut Vec<ProbeStatus>) -> Vec<ProbeStatus> {
    let mut probes = Vec::new();
    if privileged && probe::has_bpf_object() {
        let cfg = TraceConfig {
            probe_attach_kinds: true,
            ringbuf_bytes: 1 << 16,
            ..TraceConfig::default()
        };
        match Tracer::start(&cfg) {
            Ok(t) => {
                capabilities.push(ProbeStatus::live("ringbuf", "BPF_MAP_TYPE_RINGBUF created"));
                capabilities.push(match t.warnings.iter().find(|w| w.contains("MEMLOCK")) {
                    Some(w) => ProbeStatus::unavailable("memlock", w.clone()),
                    None => ProbeStatus::live("memlock", "RLIMIT_MEMLOCK raised"),
                });
                probes = t.statuses.clone();
                // Dropping the tracer detaches everything.
            }
            Err(e) => {
                capabilities.push(ProbeStatus::unavailable(
                    "ringbuf",
                    format!("object not loaded: {e}"),
                ));
            }
        }
    } else {
        let why = if privileged {
            crate::error::Error::NoEbpfObject.to_string()
        } else {
            "not checked: insufficient privileges".to_string()
        };
        probes.push(ProbeStatus::unavailable("probes", why));
    }

    probes
}

/// The tiering settings of this kernel, as (name, value).
fn settings() -> Vec<(String, String)> {
    let mut settings = Vec::new();
    let nb = caps::read_trimmed("/proc/sys/kernel/numa_balancing");
    settings.push((
        "numa_balancing".into(),
        nb.as_deref()
            .map(|v| format!("{v} ({})", caps::numa_balancing_mode(v)))
            .unwrap_or_else(|| "absent (kernel without CONFIG_NUMA_BALANCING)".into()),
    ));
    for (name, path) in [
        (
            "numa_balancing_promote_rate_limit_MBps",
            "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",
        ),
        ("demotion_enabled", "/sys/kernel/mm/numa/demotion_enabled"),
        (
            "hot_threshold_ms",
            "/sys/kernel/debug/sched/numa_balancing/hot_threshold_ms",
        ),
        ("nodes_online", "/sys/devices/system/node/online"),
        ("nodes_with_cpus", "/sys/devices/system/node/has_cpu"),
        ("nodes_with_memory", "/sys/devices/system/node/has_memory"),
    ] {
        settings.push((
            name.into(),
            caps::read_trimmed(path).unwrap_or_else(|| "absent".into()),
        ));
    }
    settings
}

/// The `doctor --json` document.
pub fn to_doc(r: &Report) -> Doctor {
    Doctor {
        schema_version: crate::model::schema::SCHEMA_VERSION,
        kernel: r.kernel.clone(),
        capabilities: r.capabilities.clone(),
        probes: r.probes.clone(),
        tracepoints: r.tracepoints.clone(),
        settings: r.settings.iter().cloned().collect(),
        tiers: r
            .tiers
            .iter()
            .map(|(tier, nodes)| DoctorTier {
                tier: tier.clone(),
                nodes: nodes.clone(),
            })
            .collect(),
        cxl: DoctorCxl {
            bus: r.cxl.is_some(),
            memdevs: r.cxl.clone().unwrap_or_default(),
        },
    }
}

/// Text form: one line per capability and probe.
/// The report as text: probes and tracepoints grouped by what is lost, or with `verbose` one
/// line each with its full reason.
pub fn to_text(r: &Report, verbose: bool) -> String {
    let mut out = format!("cxl-trace doctor: kernel {}\n", r.kernel);
    let line = |out: &mut String, s: &ProbeStatus| {
        let tag = if s.is_live() {
            "live       "
        } else {
            "unavailable"
        };
        out.push_str(&format!("  [{tag}] {:<42} {}\n", s.name, s.reason));
    };
    let section = |out: &mut String, title: &str, list: &[ProbeStatus]| {
        if verbose {
            out.push_str(&format!("{title}:\n"));
            list.iter().for_each(|s| line(out, s));
            return;
        }
        let live = list.iter().filter(|s| s.is_live()).count();
        out.push_str(&format!(
            "{title}: {live} live, {} unavailable{}\n",
            list.len() - live,
            if live < list.len() {
                " (--verbose: each one and its full reason)"
            } else {
                ""
            }
        ));
        for l in crate::model::status::lost_lines(list) {
            out.push_str(&format!("  {l}\n"));
        }
    };
    out.push_str("capabilities:\n");
    r.capabilities.iter().for_each(|s| line(&mut out, s));
    section(&mut out, "probes", &r.probes);
    section(&mut out, "tracepoints", &r.tracepoints);
    out.push_str("settings:\n");
    for (k, v) in &r.settings {
        out.push_str(&format!("  {k:<42} {v}\n"));
    }
    out.push_str("memory tiers:\n");
    if r.tiers.is_empty() {
        out.push_str(
            "  none (no /sys/devices/virtual/memory_tiering: kernel < 6.1 or CONFIG_NUMA off)\n",
        );
    }
    for (t, n) in &r.tiers {
        out.push_str(&format!("  {t:<42} nodes {n}\n"));
    }
    out.push_str("cxl:\n");
    match &r.cxl {
        None => out.push_str(
            "  no CXL bus (/sys/bus/cxl absent: no CXL hardware or cxl_core not loaded)\n",
        ),
        Some(d) if d.is_empty() => out.push_str("  CXL bus present, no memory devices\n"),
        Some(d) => out.push_str(&format!("  memory devices: {}\n", d.join(", "))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            kernel: "6.18.0".into(),
            capabilities: vec![ProbeStatus::live("btf", "ok")],
            probes: vec![
                ProbeStatus::live("tracepoint:exceptions:page_fault_user", "attached"),
                ProbeStatus::unavailable("attach:fentry/fexit", "BPF_PROG_LOAD refused: EPERM"),
            ],
            tracepoints: vec![],
            settings: vec![("numa_balancing".into(), "0 (disabled)".into())],
            tiers: vec![("memory_tier4".into(), "0".into())],
            cxl: None,
        }
    }

    #[test]
    fn json_has_probe_array_with_status_and_reason() {
        let v = serde_json::to_value(to_doc(&sample())).expect("serialises");
        let probes = v["probes"].as_array().expect("array");
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0]["status"], "live");
        assert_eq!(probes[1]["status"], "unavailable");
        assert_eq!(probes[1]["reason"], "BPF_PROG_LOAD refused: EPERM");
        assert_eq!(v["tiers"][0]["nodes"], "0");
        assert_eq!(v["cxl"]["bus"], false);
    }

    #[test]
    fn text_marks_each_line_when_verbose() {
        let t = to_text(&sample(), true);
        assert!(t.contains("[live       ] tracepoint:exceptions:page_fault_user"));
        assert!(t.contains("[unavailable] attach:fentry/fexit"));
        assert!(t.contains("no CXL bus"));
    }

    /// Without `--verbose`: counts, then what is lost and why, once per cause.
    #[test]
    fn text_says_what_is_lost() {
        let t = to_text(&sample(), false);
        assert!(
            t.contains("probes: 1 live, 1 unavailable (--verbose: each one and its full reason)\n  attach:fentry/fexit: unavailable: BPF_PROG_LOAD refused: EPERM\n"),
            "{t}"
        );
        assert!(!t.contains("[live       ]  tracepoint"), "{t}");
        assert!(t.contains("tracepoints: 0 live, 0 unavailable\n"), "{t}");
    }
}
