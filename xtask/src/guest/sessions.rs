//! cxl-trace sessions inside the guest: started, stopped, and what their start lines say about the probes.

use super::*;
use std::{process::Command, thread::sleep, time::Duration};

use anyhow::Result;

pub(crate) struct Session {
    bpftrace: Background,
    tool: Background,
}

pub(crate) fn start_session() -> Result<Session> {
    start_session_with(&[])
}

pub(crate) fn start_session_with(extra: &[&str]) -> Result<Session> {
    let bpftrace = Background::start(
        "bpftrace",
        Command::new("bpftrace").args(["-f", "json", "-e", BPFTRACE_MIGRATE]),
        "attached_probes",
    )?;
    // Each session's output stays in its own file in the run directory, for diagnosis.
    let name = match extra.first() {
        Some(flag) => format!("cxl-trace-{}", flag.trim_start_matches('-')),
        None => "cxl-trace".to_string(),
    };
    let tool = Background::start(
        &name,
        Command::new(bin("cxl-trace"))
            // Tiering mode is turned on during the run: decisions from the start.
            .args(["top", "--no-tui", "--interval", "1"])
            .args(["--promotion-decisions", "always"])
            .args(extra),
        "\"type\":\"start\"",
    )?;
    say("cxl-trace and bpftrace are attached");
    Ok(Session { bpftrace, tool })
}

/// The summary line, the start line (probes) and bpftrace's output.
pub(crate) fn stop_session_full(s: Session) -> Result<(Window, Start, String)> {
    // Let in-flight work (kswapd, deferred frees) settle inside both windows: bpftrace stops
    // after the tool (its detach takes up to 20 s under TCG), so migrations still running
    // then count for it only (6.1 cxl: kswapd demoted 2,074 pages more after the tool's
    // window had closed).
    settle_migrations();
    let tool = s.tool.stop()?;
    let bt = s.bpftrace.stop()?;
    Ok((
        crate::lines::summary(&tool)?,
        crate::lines::start(&tool)?,
        bt,
    ))
}

/// Waits until no page migrated for two seconds in a row (at most 30 s), so that stopping the
/// tracers one after the other does not cut migrations in flight differently.
fn settle_migrations() {
    let moved = || {
        vmstat().map_or(0, |v| {
            ["pgmigrate_success", "pgmigrate_fail"]
                .iter()
                .map(|k| v.get(*k).copied().unwrap_or(0))
                .sum::<u64>()
        })
    };
    let (mut last, mut still) = (moved(), 0);
    for waited in 1..=30 {
        sleep(Duration::from_secs(1));
        let now = moved();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        if still >= 2 {
            return;
        }
        if waited == 30 {
            say("migrations did not settle within 30 s: stopping the tracers anyway");
        }
    }
}

/// The same hooks attached as kprobe/kretprobe (`--kprobes`): syscall moves, demotion by
/// memory.reclaim and faults, checked like the fentry session.
pub(crate) fn kprobe_session(c: &mut Checks, fast: Option<u64>, slow: Option<u64>) -> Result<()> {
    say("kprobe fallback: the same hooks as kprobe/kretprobe (--kprobes)");
    let session = start_session_with(&["--kprobes"])?;
    workload(&["move", "--mib", "16", "--from", "0", "--to", "1"])?;
    let cg = make_cgroup("cxltrace-kprobe")?;
    let h = hold(&["--mib", "64", "--node", "0", "--unbind"], Some(&cg))?;
    if let Err(e) = write(&format!("{cg}/memory.reclaim"), "48M") {
        say(&format!("memory.reclaim: {e:#}"));
    }
    h.end()?;
    let (s, start, bt) = stop_session_full(session)?;
    let live = live_probes(&start);
    for want in [
        "kprobe:handle_mm_fault",
        "kretprobe:handle_mm_fault",
        "kprobe:task_numa_fault",
        "kprobe:move_to_new_folio",
        "kretprobe:move_to_new_folio",
        "kprobe:should_numa_migrate_memory",
        "kretprobe:migrate_misplaced_folio_prepare",
        "kretprobe:folio_isolate_lru",
        "kretprobe:demote_folio_list",
    ] {
        let on = live.iter().any(|l| l == want);
        c.truth(&format!("[kprobe] {want} live"), on.to_string(), on);
    }
    check_migrations(c, &s, &bt, &["syscall", "demotion"]);
    let (Some(fast), Some(slow)) = (fast, slow) else {
        return Ok(());
    };
    let pair = |a: u64, b: u64| tier_pair(&s, a, b);
    let all = s.migrations.pages_succeeded;
    c.truth(
        &format!("[kprobe] moves are tier{fast}->tier{slow} (per-folio kretprobe)"),
        format!("{} of {all}", pair(fast, slow)),
        all > 0 && pair(fast, slow) * 1000 >= all * 999,
    );
    c.eq(
        "[kprobe] demote_folio_list pages from node 0",
        s.demotion_batches
            .by_source_node
            .get("node0")
            .map_or(0, |n| n.pages),
        pgdemote_direct(&s) + vm(&s, "pgdemote_kswapd"),
    );
    c.truth(
        "[kprobe] fault latency on tier of node 0",
        tier_latency(&s, fast).count.to_string(),
        tier_latency(&s, fast).count > 0,
    );
    Ok(())
}

/// Names of the probes the start line reports live.
pub(crate) fn live_probes(start: &Start) -> Vec<String> {
    start
        .probes
        .iter()
        .filter(|p| p.is_live())
        .map(|p| p.name.clone())
        .collect()
}

/// Tracepoints only (`--tracepoints-only`), as on a kernel that refuses fentry and kprobes:
/// per-folio moves come from the migration-entry tracepoints and must attribute the same
/// pages to the same tier pair as the function hooks do.
pub(crate) fn tracepoint_session(
    c: &mut Checks,
    fast: Option<u64>,
    slow: Option<u64>,
) -> Result<()> {
    say("tracepoints only: per-folio moves from set/remove_migration_pte (--tracepoints-only)");
    let session = start_session_with(&["--tracepoints-only"])?;
    workload(&["move", "--mib", "16", "--from", "0", "--to", "1"])?;
    let cg = make_cgroup("cxltrace-tp")?;
    let h = hold(&["--mib", "64", "--node", "0", "--unbind"], Some(&cg))?;
    if let Err(e) = write(&format!("{cg}/memory.reclaim"), "48M") {
        say(&format!("memory.reclaim: {e:#}"));
    }
    h.end()?;
    let (s, start, bt) = stop_session_full(session)?;
    let names = live_probes(&start);
    let live = |name: &str| names.iter().any(|l| l == name);
    for want in [
        "tracepoint:migrate:set_migration_pte",
        "tracepoint:migrate:remove_migration_pte",
    ] {
        c.truth(
            &format!("[tracepoints] {want} live"),
            live(want).to_string(),
            live(want),
        );
    }
    c.truth(
        "[tracepoints] no function hook attached",
        live("fentry:move_to_new_folio").to_string(),
        !live("fentry:move_to_new_folio") && !live("kprobe:move_to_new_folio"),
    );
    check_migrations(c, &s, &bt, &["syscall", "demotion"]);
    c.eq(
        "[tracepoints] folios seen = pages moved (small anonymous pages, all mapped)",
        s.migrations.per_folio.folios,
        s.migrations.pages_succeeded,
    );
    c.eq(
        "[tracepoints] decoded pfns outside every node",
        s.migrations.per_folio.unmapped_pfns,
        0,
    );
    let (Some(fast), Some(slow)) = (fast, slow) else {
        return Ok(());
    };
    let pair = |a: u64, b: u64| tier_pair(&s, a, b);
    let all = s.migrations.pages_succeeded;
    c.truth(
        &format!("[tracepoints] moves are tier{fast}->tier{slow} (migration entries)"),
        format!("{} of {all}", pair(fast, slow)),
        all > 0 && pair(fast, slow) * 1000 >= all * 999,
    );
    c.eq(
        "[tracepoints] demotions by kswapd + direct = pgdemote",
        by_cause(&s.migrations.demotions, Cause::Kswapd)
            + by_cause(&s.migrations.demotions, Cause::Direct),
        pgdemote_direct(&s) + vm(&s, "pgdemote_kswapd"),
    );
    c.eq(
        "[tracepoints] move_pages(2) pages demoted by cause syscall",
        by_cause(
            &s.migrations.demotions,
            Cause::Other(MigrateReason::Syscall),
        ),
        4096,
    );
    Ok(())
}

/// `(status, reason)` of a probe in the start line.
pub(crate) fn probe_status(start: &Start, name: &str) -> Option<(Status, String)> {
    start
        .probes
        .iter()
        .find(|p| p.name == name)
        .map(|p| (p.status, p.reason.clone()))
}

/// Every function hook is live where the kernel has the function, and unavailable with the
/// kernel's own reason where it does not (`migrate_misplaced_folio_prepare` is new in 6.11;
/// before it, `folio_isolate_lru` returned an errno-style int, which the hook refuses).
pub(crate) fn expect_hooks(c: &mut Checks, start: &Start) {
    let v = kernel_version();
    let since_6_11 = v >= (6, 11);
    let table: [(&str, bool, &str); 6] = [
        ("fexit:handle_mm_fault", true, ""),
        ("fentry:task_numa_fault", true, ""),
        ("fexit:move_to_new_folio", true, ""),
        ("fexit:should_numa_migrate_memory", true, ""),
        (
            "fexit:migrate_misplaced_folio_prepare",
            since_6_11,
            "no symbol migrate_misplaced_folio_prepare in /proc/kallsyms",
        ),
        ("fexit:demote_folio_list", true, ""),
    ];
    for (name, live, why) in table {
        let st = probe_status(start, name);
        let shown = st
            .as_ref()
            .map_or("not listed".to_string(), |(s, r)| format!("{s:?}: {r}"));
        let ok = match &st {
            Some((s, _)) if live => *s == Status::Live,
            Some((s, r)) => *s == Status::Unavailable && r.contains(why),
            None => false,
        };
        let what = if live {
            format!("{name} live on {}.{}", v.0, v.1)
        } else {
            format!("{name} unavailable on {}.{} ({why})", v.0, v.1)
        };
        c.truth(&what, shown.chars().take(60).collect(), ok);
    }
}
