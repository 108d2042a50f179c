//! The `cxl-ras` scenario: memory errors and device events on the CXL node, injected for real
//! (the kernel's poison debugfs, QEMU's event injection through QMP, madvise) while the tool
//! runs, each checked to appear once, decoded, on the right device, node and tier; then the
//! CXL memory taken offline under a process.

use std::{fs, io::Write as _, process::Command, thread::sleep, time::Duration};

use anyhow::{bail, Result};
use cxl_trace::model::{
    rare::FieldValue,
    schema::{LogEntry, RasEntry},
};

use super::*;

/// The QMP path of the emulated Type-3 device (its `id=`).
const DEVICE: &str = "/machine/peripheral/cxl-pmem0";

/// Sends one QMP command through the host's relay (`/results/qmp.in` → `qmp.out`); its answer.
fn qmp(command: &str) -> Result<String> {
    let answers = || {
        fs::read_to_string("/results/qmp.out")
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let before = answers().len();
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/results/qmp.in")
        .context("/results/qmp.in")?;
    writeln!(f, "{command}")?;
    drop(f);
    for _ in 0..200 {
        if let Some(a) = answers().get(before) {
            return Ok(a.clone());
        }
        sleep(Duration::from_millis(100));
    }
    bail!("no QMP answer to {command} within 20 s")
}

/// The RAS entries of a window's event log.
fn ras(s: &Window) -> Vec<&RasEntry> {
    s.events_log.ras().collect()
}

fn field<'a>(r: &'a RasEntry, name: &str) -> Option<&'a FieldValue> {
    r.fields.get(name)
}

fn text(r: &RasEntry, name: &str) -> String {
    match field(r, name) {
        Some(FieldValue::Str(s)) => s.clone(),
        Some(FieldValue::UInt(v)) => v.to_string(),
        Some(FieldValue::Int(v)) => v.to_string(),
        None => "-".into(),
    }
}

fn num(r: &RasEntry, name: &str) -> Option<u64> {
    field(r, name).and_then(FieldValue::as_u64)
}

pub(crate) fn scenario_cxl_ras(c: &mut Checks) -> Result<()> {
    cxl_prepare()?;
    write("/proc/sys/kernel/numa_balancing", "0")?;
    cxl_online()?;
    sleep(Duration::from_secs(1));
    let topo = topology()?;
    let Some(node) = topo.nodes.iter().find(|n| n.cxl).map(|n| n.id) else {
        c.truth("CXL node onlined", "no".into(), false);
        return Ok(());
    };
    let tier = topo
        .nodes
        .iter()
        .find(|n| n.id == node)
        .and_then(|n| n.tier);
    let region = topo.cxl.region_ranges.first().cloned();
    c.truth(
        "region0's address range read",
        format!("{region:?}"),
        region.is_some(),
    );
    let session = start_session()?;
    // A bystander on the CXL node, in a cgroup of its own: every memory error there is in
    // its blast radius, and it must come out unaffected (or migrated, by the offline).
    let held_cg = make_cgroup("cxltrace-held")?;
    let held = hold(
        &["--mib", "16", "--node", &node.to_string(), "--unbind"],
        Some(&held_cg),
    )?;
    let held_pid = held.pid();
    // A page the bystander holds, found by its address (numa_maps, then pagemap): its DPA is
    // its offset in the region (one device, no interleave).
    let held_page = region
        .as_ref()
        .and_then(|r| super::blast::page_of(held_pid, node, r.start));
    say(&format!("the bystander's page (pfn, DPA): {held_page:x?}"));
    let poisoned = poison_steps(c, held_page.map(|(_, dpa)| dpa))?;
    event_steps(c)?;
    say("madvise: one page of the CXL node soft-offlined, one hard-poisoned, then read");
    let victim = super::blast::victim(c, node)?;
    // Its incident settles 2 s after the error, at the next interval, before the offline.
    sleep(Duration::from_secs(3));
    say("daxctl offline-memory dax0.0 with 16 MiB held on the CXL node");
    let offline = sh(Command::new("daxctl").args(["offline-memory", "dax0.0"]));
    let offline_ok = offline.is_ok();
    c.truth(
        "the CXL memory went offline under a process",
        format!("{offline:?}").chars().take(120).collect(),
        offline_ok,
    );
    // The incident settles 2 s after the offline, at the next interval: the holder must
    // still run then, its pages moved.
    sleep(Duration::from_secs(4));
    held.end()?;
    let (s, _start, bt) = stop_session_full(session)?;
    super::blast::check(
        c,
        &s,
        &super::blast::Expect {
            node,
            victim,
            held: held_pid,
            held_pfn: held_page.filter(|_| poisoned).map(|(pfn, _)| pfn),
            held_cgroup: "/cxltrace-held",
            offline: offline_ok,
        },
    );
    let processing = match has_device_event_tracepoints() {
        false => Err("this kernel has no cxl:cxl_general_media tracepoint".to_string()),
        true => event_processing(&s),
    };
    check_events(c, &s, node, tier, processing);
    check_migrations(c, &s, &bt, &["memory_failure", "memory_hotplug"]);
    let hotplug = by_reason(&s, MigrateReason::MemoryHotplug).pages_succeeded;
    c.truth(
        "the offline evacuated the held pages (reason memory_hotplug)",
        hotplug.to_string(),
        hotplug >= 16 * 256,
    );
    let topo_changes = s
        .events_log
        .log
        .iter()
        .filter(|e| matches!(e, LogEntry::Topology(_)))
        .count();
    c.truth(
        "the offline is a topology change in the log",
        topo_changes.to_string(),
        topo_changes >= 1,
    );
    aer_steps(c)?;
    say("skipped: dynamic capacity (the test bed's device has no dynamic capacity regions)");
    Ok(())
}

/// AER correctable and uncorrectable errors through QMP. The kernel counts what its AER
/// service receives per device (`aer_dev_correctable`, `aer_dev_nonfatal`, `aer_dev_fatal`);
/// where those files are absent it handles no AER for the device, and the step says so.
fn aer_steps(c: &mut Checks) -> Result<()> {
    let answers = [
        qmp(&format!(
            r#"{{"execute":"cxl-inject-correctable-error","arguments":{{"path":"{DEVICE}","type":"mem-data-ecc"}}}}"#
        ))?,
        qmp(&format!(
            r#"{{"execute":"cxl-inject-uncorrectable-errors","arguments":{{"path":"{DEVICE}","errors":[{{"type":"mem-data-ecc","header":[1,2,3]}}]}}}}"#
        ))?,
    ];
    c.truth(
        "QMP accepts a correctable and an uncorrectable CXL AER error",
        answers
            .iter()
            .map(|a| a.trim())
            .collect::<Vec<_>>()
            .join(" "),
        answers.iter().all(|a| a.contains("\"return\"")),
    );
    sleep(Duration::from_secs(2));
    let dev = fs::canonicalize("/sys/bus/cxl/devices/mem0")
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let counters = dev
        .as_ref()
        .and_then(|d| fs::read_to_string(d.join("aer_dev_correctable")).ok());
    let total = counters.as_deref().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("TOTAL_ERR_COR "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let dev = dev.as_ref().map_or("the memdev's PCI device".into(), |d| {
        d.display().to_string()
    });
    match total {
        Some(n) if n > 0 => say(&format!(
            "AER: the kernel counted {n} correctable errors on {dev}; cxl-trace does not trace ras:aer_event yet"
        )),
        Some(_) => say(&format!(
            "skipped: AER events: the kernel's AER counters of {dev} stayed at 0 after both injections: no AER interrupt reached the root port in this test bed (pci=nomsi)"
        )),
        None => say(&format!(
            "skipped: AER events: the kernel's AER service does not handle {dev} (no aer_dev_correctable)"
        )),
    }
    Ok(())
}

/// Whether this kernel has the device event tracepoints.
fn has_device_event_tracepoints() -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|t| {
            std::path::Path::new(t)
                .join("events/cxl/cxl_general_media")
                .is_dir()
        })
}

/// Poison at DPA 0 (the region's devdax reserve) and at a page of system RAM on the CXL node
/// that a process holds, through the kernel's debugfs, then the poison list read.
/// False where the kernel cannot inject poison.
fn poison_steps(c: &mut Checks, ram_dpa: Option<u64>) -> Result<bool> {
    let inject = "/sys/kernel/debug/cxl/mem0/inject_poison";
    if !std::path::Path::new(inject).exists() {
        say(&format!(
            "skipped: poison injection ({inject} absent on this kernel)"
        ));
        return Ok(false);
    }
    let mut dpas = vec![0u64];
    dpas.extend(ram_dpa);
    for dpa in &dpas {
        say(&format!("poison injected at DPA {dpa:#x}"));
        write(inject, &format!("{dpa:#x}"))?;
    }
    write("/sys/bus/cxl/devices/mem0/trigger_poison_list", "1")?;
    sleep(Duration::from_secs(1));
    c.truth("poison injected", format!("{} DPAs", dpas.len()), true);
    Ok(true)
}

/// General media, DRAM and memory module events at each severity, through QMP.
fn event_steps(c: &mut Checks) -> Result<()> {
    for (i, log) in ["informational", "warning", "failure", "fatal"]
        .iter()
        .enumerate()
    {
        let dpa = 0x1000 * (i as u64 + 1);
        let answers = [
            qmp(&format!(
                r#"{{"execute":"cxl-inject-general-media-event","arguments":{{"path":"{DEVICE}","log":"{log}","flags":8,"dpa":{dpa},"descriptor":1,"type":0,"transaction-type":1}}}}"#
            ))?,
            qmp(&format!(
                r#"{{"execute":"cxl-inject-dram-event","arguments":{{"path":"{DEVICE}","log":"{log}","flags":8,"dpa":{dpa},"descriptor":1,"type":0,"transaction-type":1}}}}"#
            ))?,
            qmp(&format!(
                r#"{{"execute":"cxl-inject-memory-module-event","arguments":{{"path":"{DEVICE}","log":"{log}","flags":8,"type":3,"health-status":1,"media-status":0,"additional-status":0,"life-used":7,"temperature":45,"dirty-shutdown-count":0,"corrected-volatile-error-count":1,"corrected-persistent-error-count":0}}}}"#
            ))?,
        ];
        for a in answers {
            c.truth(
                &format!("QMP accepts a {log} event"),
                a.chars().take(100).collect(),
                a.contains("\"return\""),
            );
        }
    }
    sleep(Duration::from_secs(2));
    Ok(())
}

/// Whether the kernel read the device's event logs, and why not: `cxl_pci` processes event
/// records only with native CXL error control and an event interrupt (this test bed boots
/// with `pci=nomsi`, without which no memdev appears). Judged from the kernel's own message,
/// else from whether any of the injected records arrived at all.
fn event_processing(s: &Window) -> std::result::Result<(), String> {
    let dmesg = sh(&mut Command::new("dmesg")).unwrap_or_default();
    if let Some(line) = dmesg
        .lines()
        .find(|l| l.contains("disable event processing"))
    {
        return Err(line
            .split_once(']')
            .map_or(line, |(_, rest)| rest)
            .trim()
            .to_string());
    }
    let device_events = ras(s)
        .iter()
        .filter(|e| {
            matches!(
                e.event.as_str(),
                "cxl:cxl_general_media" | "cxl:cxl_dram" | "cxl:cxl_memory_module"
            )
        })
        .count();
    if device_events == 0 {
        return Err("none of the 12 records QEMU accepted reached the kernel: it reads no event log on this machine (no event interrupt under pci=nomsi, or CXL error reporting left to firmware)".into());
    }
    Ok(())
}

/// Each injected event appears once, decoded, on its device; poison is placed.
fn check_events(
    c: &mut Checks,
    s: &Window,
    node: u32,
    tier: Option<u32>,
    processing: std::result::Result<(), String>,
) {
    let events = ras(s);
    for e in &events {
        say(&format!(
            "event: {} node={:?} tier={:?} placement={:?} {:?}",
            e.event, e.node, e.tier, e.placement, e.fields
        ));
    }
    let of = |name: &str| {
        events
            .iter()
            .filter(|e| e.event == name)
            .copied()
            .collect::<Vec<_>>()
    };
    let poison: Vec<_> = of("cxl:cxl_poison")
        .into_iter()
        .filter(|e| text(e, "trace_type") == "List")
        .collect();
    if !poison.is_empty() {
        let reserve = poison.iter().find(|e| num(e, "dpa") == Some(0));
        c.truth(
            "poison at DPA 0: region0's devdax reserve, not system RAM",
            format!("{:?}", reserve.map(|e| &e.placement)),
            reserve.is_some_and(|e| {
                e.placement.as_deref() == Some("region0, in the devdax reserve, not system RAM")
            }),
        );
        let ram = poison.iter().find(|e| num(e, "dpa") != Some(0));
        c.truth(
            "poison in system RAM: on the CXL node and its tier",
            format!("{:?}", ram.map(|e| (e.node, e.tier))),
            ram.is_some_and(|e| e.node == Some(node) && e.tier == tier),
        );
        c.truth(
            "poison decoded: memdev mem0, source Injected, UUID formatted",
            poison
                .first()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        text(e, "memdev"),
                        text(e, "source"),
                        text(e, "uuid")
                    )
                })
                .unwrap_or_default(),
            poison
                .iter()
                .all(|e| text(e, "memdev") == "mem0" && text(e, "source") == "Injected"),
        );
    }
    for name in [
        "cxl:cxl_general_media",
        "cxl:cxl_dram",
        "cxl:cxl_memory_module",
    ] {
        let got = of(name);
        if let Err(why) = &processing {
            // Accepted by the device (QMP said so above), never read by the kernel.
            c.truth(
                &format!("{name}: skipped, the kernel reads no event log here"),
                format!("{} seen; {why}", got.len()),
                got.is_empty(),
            );
            continue;
        }
        let logs: Vec<String> = got.iter().map(|e| text(e, "log")).collect();
        c.truth(
            &format!("{name}: once at each severity, named"),
            logs.join(","),
            ["Informational", "Warning", "Failure", "Fatal"]
                .iter()
                .all(|l| logs.iter().filter(|x| x == l).count() == 1),
        );
    }
    let failures = of("ras:memory_failure_event");
    c.truth(
        "memory_failure_event of the hard-poisoned page, named",
        failures
            .iter()
            .map(|e| format!("{} {}", text(e, "type"), text(e, "result")))
            .collect::<Vec<_>>()
            .join("; "),
        failures.len() == 1
            && !text(failures[0], "result")
                .chars()
                .all(|ch| ch.is_ascii_digit()),
    );
}
