//! Privileged end-to-end tests: real kernel events, compared with the kernel's own counters.
//! They run as root (the README test command runs them); see `common::require_root`.

mod common;

use std::process::Command;

use common::*;

/// `top --no-tui -- workload` counts the faults of the command and its children only, and
/// agrees with the command's own getrusage(2) count.
#[test]
fn faults_of_a_command_match_its_own_count() {
    if !require_root("faults_of_a_command_match_its_own_count") {
        return;
    }
    const PAGES: u64 = 50_000;
    let pages = PAGES.to_string();
    let out = cxl_trace(&[
        "top",
        "--no-tui",
        "--interval",
        "0.5",
        "--",
        WORKLOAD,
        "touch",
        "--pages",
        &pages,
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    let start = of_type(&lines, "start");
    let summary = of_type(&lines, "summary");
    assert_eq!(start.len(), 1, "one start line");
    assert_eq!(summary.len(), 1, "one summary line");
    let (start, summary) = (start[0], summary[0]);
    let pid = u(&start["pid"]);

    // The workload printed its own rusage on stdout too.
    let own: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("minflt").is_some())
        .expect("workload rusage line");
    let minflt = u(&own["minflt"]);

    let total = u(&summary["faults"]["total"]);
    let user = u(&summary["faults"]["user"]);
    assert!(user >= PAGES, "user faults {user} < {PAGES} pages touched");
    assert!(
        total <= PAGES + PAGES / 100,
        "total faults {total} > {PAGES} + 1%"
    );
    // Only the followed process appears.
    let procs = summary["processes"].as_array().expect("processes");
    assert_eq!(procs.len(), 1, "only the command is followed: {procs:?}");
    assert_eq!(u(&procs[0]["pid"]), pid);
    // Exceptions that reach handle_mm_fault are what rusage counts; a handful of spurious or
    // pre-exec faults may differ.
    let diff = total.abs_diff(minflt);
    assert!(diff <= 50, "tool {total} vs getrusage minflt {minflt}");
    // Interval lines add up to the summary.
    let sum: u64 = of_type(&lines, "interval")
        .iter()
        .map(|v| u(&v["faults"]["total"]))
        .sum();
    assert_eq!(sum, total, "intervals add up to the summary");
    assert_eq!(u(&summary["drops"]["total"]), 0, "no drops");
    assert_eq!(u(&summary["errors"]["decode"]), 0);
    assert_eq!(u(&summary["exit_code"]), 0);
}

/// System-wide fault totals agree with the pgfault delta of /proc/vmstat over the same window.
#[test]
fn system_wide_faults_agree_with_vmstat() {
    if !require_root("system_wide_faults_agree_with_vmstat") {
        return;
    }
    // Long enough to cover the tool's whole window however slowly it attaches; killed after.
    let mut load = Command::new(WORKLOAD)
        .args(["touch", "--pages", "20000", "--rounds", "100000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("workload");
    let out = cxl_trace(&["top", "--no-tui", "--duration", "2"]);
    let _ = load.kill();
    let _ = load.wait();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    let summary = of_type(&lines, "summary")[0];
    let tool = u(&summary["faults"]["total"]);
    let pgfault = u(&summary["vmstat_delta"]["pgfault"]);
    assert!(
        pgfault > 50_000,
        "the workload should have faulted a lot: pgfault {pgfault}"
    );
    // pgfault counts completed handle_mm_fault calls, including get_user_pages faults that
    // take no exception; the exception tracepoints also see faults that never reach
    // handle_mm_fault. Both are rare next to page touches: allow 2%.
    let diff = tool.abs_diff(pgfault);
    assert!(
        diff <= pgfault / 50,
        "tool {tool} vs vmstat pgfault {pgfault}: differ by {diff} (> 2%)"
    );
    assert_eq!(u(&summary["drops"]["total"]), 0);
    // Runs the kernel skipped are reported (read from bpf_prog_info), none on an idle machine
    // for the fault programs.
    let skipped = summary["kernel_skipped_runs"]
        .as_object()
        .expect("kernel_skipped_runs");
    assert!(skipped.values().all(|v| v.is_u64()), "{skipped:?}");
    assert!(!skipped.contains_key("page_fault_user"), "{skipped:?}");
    // Interval windows are real windows and add up to the summary.
    let intervals = of_type(&lines, "interval");
    assert!(
        intervals.len() >= 2,
        "2 s at 1 s intervals: {}",
        intervals.len()
    );
    for iv in &intervals {
        assert!(
            iv["interval_s"].as_f64().unwrap_or(0.0) > 0.0,
            "empty window: {iv}"
        );
    }
    let sum: u64 = intervals.iter().map(|v| u(&v["faults"]["total"])).sum();
    assert_eq!(sum, tool);
    // Counted in the kernel: no fault record was produced.
    let produced = u(&summary["produced"]["fault_user"]) + u(&summary["produced"]["fault_kernel"]);
    assert_eq!(produced, 0, "the live mode counts faults in the kernel");
}

/// The live modes count faults in the kernel; `--fault-events` streams a record per fault as
/// `record` does. Both attached at once over one workload: the same count for it, exactly,
/// which is its own getrusage count (plus its exec and exit); system-wide both agree with
/// vmstat's pgfault; and on the per-event path produced = received + dropped.
#[test]
fn kernel_counts_agree_with_the_per_event_path_and_vmstat() {
    use std::io::{BufRead, BufReader};
    if !require_root("kernel_counts_agree_with_the_per_event_path_and_vmstat") {
        return;
    }
    let start = |extra: &[&str]| {
        let mut c = Command::new(CXL_TRACE)
            .args(["top", "--no-tui", "--interval", "1", "--duration", "6"])
            .args(["--top", "1000"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn cxl-trace");
        let mut lines = BufReader::new(c.stdout.take().expect("stdout")).lines();
        assert!(
            lines
                .by_ref()
                .map_while(Result::ok)
                .any(|l| l.contains("\"type\":\"start\"")),
            "no start line"
        );
        (c, lines)
    };
    let (mut kernel, kernel_lines) = start(&[]);
    let (mut events, event_lines) = start(&["--fault-events"]);
    let child = Command::new(WORKLOAD)
        .args(["touch", "--pages", "30000", "--rounds", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("workload");
    let pid = u64::from(child.id());
    let out = child.wait_with_output().expect("workload");
    assert!(out.status.success());
    let own: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the workload's JSON line");
    let own_faults = u(&own["minflt"]) + u(&own["majflt"]);
    let summary = |lines: std::io::Lines<BufReader<std::process::ChildStdout>>| {
        lines
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .find(|v| v["type"] == "summary")
            .expect("summary line")
    };
    let (k, e) = (summary(kernel_lines), summary(event_lines));
    assert!(kernel.wait().expect("wait").success());
    assert!(events.wait().expect("wait").success());
    let faults_of = |s: &serde_json::Value, pid: u64| {
        s["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| u(&p["pid"]) == pid)
            .map(|p| u(&p["faults"]))
    };
    let (kf, ef) = (faults_of(&k, pid), faults_of(&e, pid));
    assert_eq!(kf, ef, "kernel-side and per-event counts of pid {pid}");
    let kf = kf.unwrap_or(0);
    assert!(
        kf >= own_faults && kf - own_faults <= 50,
        "pid {pid}: {kf} counted vs its own getrusage {own_faults}"
    );
    for (what, s) in [("kernel-side", &k), ("per-event", &e)] {
        let tool = u(&s["faults"]["total"]);
        let pgfault = u(&s["vmstat_delta"]["pgfault"]);
        assert!(
            tool.abs_diff(pgfault) <= pgfault / 50,
            "{what}: {tool} faults vs vmstat pgfault {pgfault} (> 2% apart)"
        );
    }
    let produced = u(&e["produced"]["fault_user"]) + u(&e["produced"]["fault_kernel"]);
    let received = u(&e["faults"]["total"]);
    let dropped =
        u(&e["drops"]["by_kind"]["fault_user"]) + u(&e["drops"]["by_kind"]["fault_kernel"]);
    assert!(
        produced >= received + dropped && received > 90_000,
        "per-event path: produced {produced}, received {received}, dropped {dropped}"
    );
}

/// The command's exit status is cxl-trace's exit status, like `perf stat -- CMD`.
#[test]
fn exit_status_of_the_command_is_propagated() {
    if !require_root("exit_status_of_the_command_is_propagated") {
        return;
    }
    let out = cxl_trace(&["top", "--no-tui", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(u(&of_type(&lines, "summary")[0]["exit_code"]), 7);
    let out = cxl_trace(&["top", "--no-tui", "--", "/nonexistent/command"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot start `/nonexistent/command`"),
        "{}",
        stderr(&out)
    );
}

/// Children of the command are followed (fork hook), and the command's own output is kept.
#[test]
fn children_of_the_command_are_followed() {
    if !require_root("children_of_the_command_are_followed") {
        return;
    }
    let script = format!(
        "{WORKLOAD} touch --pages 10000 >/dev/null; {WORKLOAD} touch --pages 10000 >/dev/null"
    );
    let out = cxl_trace(&["top", "--no-tui", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    let summary = of_type(&lines, "summary")[0];
    let procs = summary["processes"].as_array().expect("processes");
    let workers: Vec<_> = procs
        .iter()
        .filter(|p| p["comm"] == "cxl-trace-workl")
        .collect();
    assert_eq!(workers.len(), 2, "both children followed: {procs:?}");
    for w in workers {
        assert!(u(&w["faults"]) >= 10_000, "{w}");
    }
}

/// Compaction migrates pages even on one node: the tool's per-reason page counts equal the
/// pgmigrate_success / pgmigrate_fail deltas it read over the same window.
#[test]
fn compaction_migrations_match_vmstat_exactly() {
    if !require_root("compaction_migrations_match_vmstat_exactly") {
        return;
    }
    // Fragment memory first so compaction has something to move.
    let _ = Command::new(WORKLOAD)
        .args(["touch", "--pages", "50000"])
        .output();
    let out = cxl_trace(&[
        "top",
        "--no-tui",
        "--",
        "sh",
        "-c",
        "echo 1 > /proc/sys/vm/compact_memory; sleep 0.2",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    let s = of_type(&lines, "summary")[0];
    let m = &s["migrations"];
    let ok = u(&m["pages_succeeded"]);
    let failed = u(&m["pages_failed"]);
    assert_eq!(
        ok,
        u(&s["vmstat_delta"]["pgmigrate_success"]),
        "succeeded vs pgmigrate_success: {s}"
    );
    assert_eq!(
        failed,
        u(&s["vmstat_delta"]["pgmigrate_fail"]),
        "failed vs pgmigrate_fail: {s}"
    );
    if ok + failed > 0 {
        assert!(
            m["by_reason"]["compaction"]["batches"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{m}"
        );
    }
    assert_eq!(u(&s["drops"]["total"]), 0);
}

/// With tracepoints only (what this host allows anyway), per-folio moves come from the
/// migration-entry tracepoints: compaction of a process's mapped memory is seen folio by folio,
/// every decoded source and destination pfn lies in a known memory block, and there are never
/// more folios than pages migrated.
#[test]
fn migration_entries_give_per_folio_moves() {
    if !require_root("migration_entries_give_per_folio_moves") {
        return;
    }
    let script = format!(
        "{WORKLOAD} hold --mib 256 --seconds 2 & sleep 0.7; \
         echo 1 > /proc/sys/vm/compact_memory; wait"
    );
    // Compaction moves what lies below its free scanner: retry until mapped pages were moved.
    let mut last = String::new();
    for _ in 0..4 {
        let out = cxl_trace(&[
            "top",
            "--no-tui",
            "--tracepoints-only",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        let lines = json_lines(&out);
        let start = of_type(&lines, "start")[0];
        let live = |n: &str| {
            start["probes"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["name"] == n && p["status"] == "live"))
        };
        assert!(live("tracepoint:migrate:set_migration_pte"), "{start}");
        assert!(live("tracepoint:migrate:remove_migration_pte"), "{start}");
        let s = of_type(&lines, "summary")[0];
        let m = &s["migrations"];
        let pf = &m["per_folio"];
        assert_eq!(pf["available"], true, "{pf}");
        assert_eq!(pf["copy_ns"]["available"], false, "{pf}");
        let folios = u(&pf["folios"]);
        let pages = u(&m["pages_succeeded"]) + u(&m["pages_failed"]);
        assert!(folios + u(&pf["failures"]) <= pages, "{m}");
        assert_eq!(
            u(&pf["unmapped_pfns"]),
            0,
            "a decoded pfn is outside every node: {pf}"
        );
        assert_eq!(u(&s["drops"]["total"]), 0);
        if folios > 0 {
            assert_eq!(
                u(&m["pages_succeeded"]),
                u(&s["vmstat_delta"]["pgmigrate_success"])
            );
            return;
        }
        last = m.to_string();
    }
    panic!("compaction never moved a mapped page in 4 tries: {last}");
}

/// Starts `cxl-trace top --no-tui` with `args` for `secs` seconds, runs `work` once the probes
/// are attached, and returns the summary line.
fn top_around(args: &[&str], secs: &str, work: impl FnOnce()) -> serde_json::Value {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(CXL_TRACE)
        .args(["top", "--no-tui", "--interval", secs, "--duration", secs])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cxl-trace");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("\"type\":\"start\""));
    assert!(started, "cxl-trace printed no start line");
    work();
    let rest: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let status = child.wait().expect("wait");
    assert!(status.success(), "cxl-trace exited with {status}");
    rest.into_iter()
        .find(|v| v["type"] == "summary")
        .expect("summary line")
}

/// Fault counts per comm of the summary's process rows that have faults (rows without come from
/// migrations, which are system-wide: another test's compaction shows up there).
fn faults_by_comm(s: &serde_json::Value) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for p in s["processes"].as_array().into_iter().flatten() {
        if u(&p["faults"]) == 0 {
            continue;
        }
        *m.entry(p["comm"].as_str().unwrap_or("").to_string())
            .or_default() += u(&p["faults"]);
    }
    m
}

/// `--comm` keeps the faults of threads with that name (cut to 15 bytes like the kernel) and
/// drops those of the same program under another name. Copies of the workload with names of
/// their own keep other tests' workloads (run in parallel) out.
#[test]
fn comm_filter_keeps_only_that_name() {
    if !require_root("comm_filter_keeps_only_that_name") {
        return;
    }
    let dir = std::env::temp_dir();
    let yes = dir.join("cxlt-comm-yes-longer-than-15");
    let no = dir.join("cxlt-comm-no");
    std::fs::copy(WORKLOAD, &yes).expect("copy the workload");
    std::fs::copy(WORKLOAD, &no).expect("copy the workload");
    let s = top_around(&["--comm", "cxlt-comm-yes-longer-than-15"], "3", || {
        let a = Command::new(&yes)
            .args(["touch", "--pages", "30000"])
            .spawn()
            .expect("workload");
        let b = Command::new(&no)
            .args(["touch", "--pages", "20000"])
            .output()
            .expect("other");
        assert!(b.status.success());
        assert!(a.wait_with_output().expect("workload").status.success());
    });
    let by = faults_by_comm(&s);
    assert_eq!(by.keys().collect::<Vec<_>>(), ["cxlt-comm-yes-l"], "{by:?}");
    let n = by["cxlt-comm-yes-l"];
    assert!((30_000..30_000 + 300).contains(&n), "faults {n}");
    assert_eq!(u(&s["faults"]["total"]), n);
}

/// `--cgroup` keeps the faults of tasks in that cgroup v2 directory and below it.
#[test]
fn cgroup_filter_keeps_only_that_subtree() {
    if !require_root("cgroup_filter_keeps_only_that_subtree") {
        return;
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let Some(root) = cxl_trace::model::filter::cgroup2_mount(&info) else {
        eprintln!("skipping cgroup_filter_keeps_only_that_subtree: no cgroup v2 hierarchy");
        return;
    };
    let parent = root.join("cxlt-filter-test");
    let child = parent.join("inner");
    std::fs::create_dir_all(&child).expect("create cgroups");
    let procs = child.join("cgroup.procs");
    let script = format!(
        "echo $$ > {}; exec {WORKLOAD} touch --pages 30000",
        procs.display()
    );
    let arg = parent.to_string_lossy().to_string();
    let s = top_around(&["--cgroup", &arg], "3", || {
        let inside = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh");
        assert!(inside.status.success(), "{inside:?}");
        let outside = Command::new(WORKLOAD)
            .args(["touch", "--pages", "20000"])
            .output()
            .expect("workload");
        assert!(outside.status.success());
    });
    let _ = std::fs::remove_dir(&child);
    let _ = std::fs::remove_dir(&parent);
    let by = faults_by_comm(&s);
    assert_eq!(by.len(), 1, "only the process in the cgroup: {by:?}");
    let n = by.values().sum::<u64>();
    assert!((30_000..30_000 + 300).contains(&n), "faults {n}");
}

/// doctor as root attaches every tracepoint this tool uses and reports each attach kind.
#[test]
fn doctor_as_root_reports_live_probes() {
    if !require_root("doctor_as_root_reports_live_probes") {
        return;
    }
    let out = cxl_trace(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let probes = v["probes"].as_array().expect("probes");
    let status = |n: &str| {
        probes
            .iter()
            .find(|p| p["name"] == n)
            .map(|p| p["status"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("probe {n} missing: {probes:?}"))
    };
    assert_eq!(status("tracepoint:exceptions:page_fault_user"), "live");
    assert_eq!(status("tracepoint:migrate:mm_migrate_pages"), "live");
    // Each attach kind is reported one way or the other, with a reason when unavailable.
    for kind in [
        "attach:tp_btf",
        "attach:raw_tracepoint",
        "attach:fentry/fexit",
        "attach:kprobe/kretprobe",
    ] {
        let p = probes.iter().find(|p| p["name"] == kind).expect(kind);
        if p["status"] == "unavailable" {
            assert!(!p["reason"].as_str().unwrap_or("").is_empty(), "{p}");
        }
    }
}

/// The pfn-to-node map built from memory blocks places a real page of this process on the
/// node the kernel says it is on (pagemap gives the pfn as root; get_mempolicy the node).
#[test]
fn pfn_map_places_a_real_page_on_its_node() {
    if !require_root("pfn_map_places_a_real_page_on_its_node") {
        return;
    }
    use std::io::{Read, Seek, SeekFrom};
    let topo = cxl_trace::model::topology::Topology::live();
    assert!(!topo.nodes.is_empty(), "no NUMA nodes in sysfs");
    let map = topo.pfn_map();
    let mut page = vec![0u8; 4096 * 4];
    for b in page.iter_mut().step_by(4096) {
        *b = 1;
    }
    let addr = page.as_ptr() as u64 & !4095;
    let mut pagemap = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
    pagemap
        .seek(SeekFrom::Start(addr / 4096 * 8))
        .expect("seek");
    let mut entry = [0u8; 8];
    pagemap.read_exact(&mut entry).expect("read pagemap");
    let entry = u64::from_le_bytes(entry);
    assert!(entry & (1 << 63) != 0, "page not present");
    let pfn = entry & ((1 << 55) - 1);
    assert!(pfn != 0, "pfn hidden: not root?");
    let mut node: libc::c_int = -1;
    const MPOL_F_NODE: libc::c_ulong = 1;
    const MPOL_F_ADDR: libc::c_ulong = 2;
    // SAFETY: get_mempolicy writes one int to `node`; addr is a mapped address of this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut node as *mut libc::c_int,
            std::ptr::null_mut::<libc::c_ulong>(),
            0 as libc::c_ulong,
            addr as *mut libc::c_void,
            MPOL_F_NODE | MPOL_F_ADDR,
        )
    };
    assert_eq!(rc, 0, "get_mempolicy: {}", std::io::Error::last_os_error());
    assert_eq!(map.node_of(pfn), Some(node as u32), "pfn {pfn:#x}");
    drop(page);
}

/// The fault total `record` printed when it finished (its last stderr line).
fn recorded_faults(stderr_text: &str) -> u64 {
    stderr_text
        .lines()
        .rev()
        .find_map(|l| {
            let rest = l.split("): ").nth(1)?;
            rest.split(" faults").next()?.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no `recorded ...: N faults` line in: {stderr_text}"))
}

fn report_json(path: &std::path::Path) -> serde_json::Value {
    let out = cxl_trace(&["report", "--format", "json", path.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(0), "report: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("report json")
}

/// `record -- CMD` exits with CMD's status, writes a 0600 file, and `report` gives the fault
/// total the live run printed (and the command's own count).
#[test]
fn record_then_report_gives_the_live_totals() {
    if !require_root("record_then_report_gives_the_live_totals") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cxlt-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("run.cxlt");
    let script = format!("{WORKLOAD} touch --pages 60000 && exit 3");
    let out = cxl_trace(&[
        "record",
        "-o",
        file.to_str().unwrap_or(""),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    let live = recorded_faults(&stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let v = report_json(&file);
    assert_eq!(u(&v["faults"]["total"]), live, "report vs live run");
    assert!((60_000..61_000).contains(&live), "faults {live}");
    assert_eq!(v["recording"]["clean_end"], true);
    assert_eq!(v["recording"]["exit_code"], 3);
    assert!(v["host"]["kernel"].is_string());
    // Compact: a fault-heavy recording at under 8 bytes per event.
    let size = std::fs::metadata(&file).expect("file").len();
    let per = size as f64 / u(&v["recording"]["events"]) as f64;
    assert!(per <= 8.0, "{per:.2} bytes per event");
    let _ = std::fs::remove_dir_all(&dir);
}

/// kill -9 during `record`: the file still reports everything up to its last complete chunk.
#[test]
fn kill_9_during_record_keeps_what_was_written() {
    if !require_root("kill_9_during_record_keeps_what_was_written") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cxlt-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("killed.cxlt");
    let name = dir.join("cxlt-killtest");
    std::fs::copy(WORKLOAD, &name).expect("copy the workload");
    let mut rec = Command::new(CXL_TRACE)
        .args([
            "record",
            "--comm",
            "cxlt-killtest",
            "--duration",
            "60",
            "-o",
        ])
        .arg(&file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("record");
    // Wait for the probes (the live-probes line), then make 40k faults.
    wait_for_stderr_line(&mut rec, "live probes");
    let w = Command::new(&name)
        .args(["touch", "--pages", "40000"])
        .output()
        .expect("workload");
    assert!(w.status.success());
    // Two snapshots later everything up to the workload's end is in complete chunks.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(rec.id() as i32, libc::SIGKILL) };
    let _ = rec.wait();
    let v = report_json(&file);
    assert_eq!(v["recording"]["clean_end"], false);
    let faults = u(&v["faults"]["total"]);
    assert!(
        (40_000..40_300).contains(&faults),
        "faults {faults}: {} drops {}",
        v["recording"],
        v["drops"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `Uid`, `CapEff`, `CapBnd` and `NoNewPrivs` of a `/proc/PID/status`.
fn privileges_of(status: &str) -> (String, String, String, String) {
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (
        field("Uid:"),
        field("CapEff:"),
        field("CapBnd:"),
        field("NoNewPrivs:"),
    )
}

/// After attaching, `record` under sudo becomes the invoking user with no capabilities and
/// `no_new_privs`, hands the recording to that user, and still records every fault; with a
/// command after `--` (started as root, as perf does) it stays uid 0 without capabilities.
#[test]
fn privileges_are_dropped_after_attach() {
    if !require_root("privileges_are_dropped_after_attach") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("cxlt-privs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("sudo.cxlt");
    let name = dir.join("cxlt-privtest");
    std::fs::copy(WORKLOAD, &name).expect("copy the workload");
    let mut rec = Command::new(CXL_TRACE)
        .args([
            "record",
            "--comm",
            "cxlt-privtest",
            "--duration",
            "60",
            "-o",
        ])
        .arg(&file)
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("record");
    let line = wait_for_stderr_line(&mut rec, "privileges:");
    assert!(line.contains("sudo user (uid 65534)"), "{line}");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", rec.id())).expect("recorder status");
    let (uid, eff, bnd, nnp) = privileges_of(&status);
    assert_eq!(uid.split_whitespace().collect::<Vec<_>>(), ["65534"; 4]);
    assert_eq!(eff, "0000000000000000", "{status}");
    assert_eq!(bnd, "0000000000000000", "{status}");
    assert_eq!(nnp, "1");
    let w = Command::new(&name)
        .args(["touch", "--pages", "30000"])
        .output()
        .expect("workload");
    assert!(w.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill(2) on the child we spawned; root may signal it whatever its uid.
    unsafe { libc::kill(rec.id() as i32, libc::SIGTERM) };
    let st = rec.wait().expect("record exits");
    assert_eq!(st.code(), Some(0), "SIGTERM finishes the file cleanly");
    let meta = std::fs::metadata(&file).expect("recording");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "handed to the sudo user"
    );
    let v = report_json(&file);
    assert_eq!(v["recording"]["clean_end"], true);
    let faults = u(&v["faults"]["total"]);
    assert!((30_000..30_300).contains(&faults), "faults {faults}");
    assert_eq!(v["host"]["privileges"]["uid"], 65534);
    assert_eq!(v["host"]["privileges"]["capabilities"], 0);

    // With a command: it runs as root; the recorder stays uid 0, without capabilities.
    let file2 = dir.join("cmd.cxlt");
    let out = Command::new(CXL_TRACE)
        .args(["record", "-o"])
        .arg(&file2)
        .args([
            "--",
            "sh",
            "-c",
            "id -u; grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs):' /proc/$PPID/status; exit 4",
        ])
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .output()
        .expect("record -- sh");
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().next(),
        Some("0"),
        "the command runs as root:\n{text}"
    );
    let (uid, eff, bnd, nnp) = privileges_of(&text);
    assert_eq!(uid.split_whitespace().next(), Some("0"), "{text}");
    assert_eq!(
        (eff.as_str(), bnd.as_str()),
        ("0000000000000000", "0000000000000000")
    );
    assert_eq!(nnp, "1");
    assert_eq!(std::fs::metadata(&file2).expect("file").uid(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Beyond capacity nothing is lost silently: with the reader stopped (SIGSTOP) right after it
/// attached, a 1 MiB ring fills during 500k faults; every fault is then received or counted
/// as dropped, and the kernel's produced count equals what was received. (This caught drops
/// between attaching and the event loop being left out of the summary.)
#[test]
fn a_full_ring_buffer_counts_every_drop() {
    if !require_root("a_full_ring_buffer_counts_every_drop") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("cxlt-full-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let name = dir.join("cxlt-fulltest");
    std::fs::copy(WORKLOAD, &name).expect("copy the workload");
    let mut top = Command::new(CXL_TRACE)
        .args([
            "top",
            "--no-tui",
            "--ringbuf-mib",
            "1",
            // A record per fault (the live mode would count them in the kernel).
            "--fault-events",
            "--comm",
            "cxlt-fulltest",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("top");
    wait_for_stderr_line(&mut top, "privileges:");
    let pid = top.id() as i32;
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let w = Command::new(&name)
        .args(["touch", "--pages", "100000", "--rounds", "5"])
        .output()
        .expect("workload");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(w.status.success());
    let v: serde_json::Value = serde_json::from_slice(&w.stdout).expect("workload JSON");
    let faults = u(&v["minflt"]) + u(&v["majflt"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = top.wait_with_output().expect("top exits");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["type"] == "summary")
        .expect("summary line");
    let received = u(&summary["faults"]["total"]);
    let dropped = u(&summary["drops"]["total"]);
    let produced: u64 = summary["produced"]
        .as_object()
        .expect("produced")
        .values()
        .map(u)
        .sum();
    assert!(
        dropped > 100_000,
        "the ring must overflow: {dropped} dropped"
    );
    // A few faults of exec happen before the new name is set (the --comm filter misses them).
    assert!(
        (faults - 16..faults + 200).contains(&(received + dropped)),
        "received {received} + dropped {dropped} vs {faults} faults"
    );
    assert_eq!(
        produced,
        u(&summary["events"]["received"]) + u(&summary["before_window"]),
        "produced vs received"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ring buffer at a rate page faults cannot reach here: with `--ring-bench`, every
/// getpgid(2) of the command writes 16 fault records through the real `emit`; at 500k records/s
/// for 2 s into the default 16 MiB ring nothing is dropped, and every record the kernel wrote
/// (16 per call, plus the workload's own page faults) is received exactly once.
#[test]
fn the_ring_drains_a_million_records_exactly() {
    if !require_root("the_ring_drains_a_million_records_exactly") {
        return;
    }
    let out = cxl_trace(&[
        "top",
        "--no-tui",
        "--ring-bench",
        "--",
        WORKLOAD,
        "getpgid",
        "--rate",
        "31250",
        "--seconds",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let lines = json_lines(&out);
    let summary = of_type(&lines, "summary");
    assert_eq!(summary.len(), 1, "one summary line");
    let summary = summary[0];
    let load: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("calls").is_some())
        .expect("the workload's line");
    let calls = u(&load["calls"]);
    assert!(calls > 50_000, "{calls} calls in 2 s");
    let expected =
        calls * cxl_trace_common::RING_BENCH_BATCH + u(&load["minflt"]) + u(&load["majflt"]);
    let received = u(&summary["faults"]["total"]);
    assert_eq!(u(&summary["drops"]["total"]), 0, "{summary}");
    // The workload reads its fault count just before printing; printing and exiting fault a
    // few more times.
    assert!(
        (expected..expected + 64).contains(&received),
        "received {received}, the kernel wrote {expected}"
    );
}

/// `doctor --capture` writes this kernel's facts the same way twice, and what it wrote reads
/// back into the same prototypes and layouts the tool uses at start: on this 6.18 kernel,
/// `demote_folio_list` has the `memcg` parameter, so its return is in slot 3.
#[test]
fn doctor_capture_is_stable_and_reads_back() {
    if !require_root("doctor_capture_is_stable_and_reads_back") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for d in [&a, &b] {
        let out = cxl_trace(&["doctor", "--capture", &d.display().to_string()]);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    }
    let listing = |d: &std::path::Path| {
        let mut files = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).expect("dir") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(d).expect("under").to_path_buf();
                    files.push((rel, std::fs::read(&p).expect("read")));
                }
            }
        }
        files.sort();
        files
    };
    let (la, lb) = (listing(&a), listing(&b));
    assert!(la.len() > 10, "{} files", la.len());
    assert_eq!(la, lb, "two captures of one kernel differ");
    let f = cxl_trace::probe::facts::Facts::load(&a).expect("reads back");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    assert_eq!(f.release, release.trim());
    let fmt = f.format("migrate", "mm_migrate_pages").expect("format");
    assert_eq!(
        fmt.symbols["reason"].get(&8).map(String::as_str),
        Some("demotion")
    );
    let (args, drift) = cxl_trace::probe::signature::resolve_all(
        |func| f.prototypes.get(func).cloned(),
        |s| f.kallsyms.contains(s),
    );
    assert!(drift.is_empty(), "{drift:?}");
    if let Some(sig) = f.prototypes.get("demote_folio_list") {
        assert_eq!(usize::from(args.demote_ret), sig.params.len(), "{sig}");
    }
}

/// `stat -- CMD`: the command's exit status is stat's; the summary on stderr counts the
/// command's faults (at least the pages it touched) beside a kernel column; `--json -o FILE`
/// writes the schema's summary line to a new file; an existing `-o` file is refused before
/// anything is traced, and left as it was.
#[test]
fn stat_summarises_a_command() {
    if !require_root("stat_summarises_a_command") {
        return;
    }
    let script = format!("{WORKLOAD} touch --pages 30000 >/dev/null; exit 3");
    let out = cxl_trace(&["stat", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    let faults_line = err
        .lines()
        .find(|l| l.trim_end().ends_with("page faults"))
        .unwrap_or_else(|| panic!("no faults line in\n{err}"));
    let counted: u64 = faults_line
        .split_whitespace()
        .next()
        .map(|n| n.replace(',', ""))
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!((30_000..31_000).contains(&counted), "{faults_line}");
    assert!(err.contains("(pgmigrate_success)"), "kernel column:\n{err}");
    assert!(err.contains("sh -c"), "the scope names the command:\n{err}");

    let dir = std::env::temp_dir().join(format!("cxlt-stat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("stat.json");
    let f = file.to_str().expect("path");
    let out = cxl_trace(&[
        "stat", "--json", "-o", f, "--", WORKLOAD, "touch", "--pages", "20000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).expect("summary file");
    let w: cxl_trace::model::schema::Window = serde_json::from_str(text.trim()).expect("typed");
    assert_eq!(w.kind, cxl_trace::model::schema::LineKind::Summary);
    assert!(
        (20_000..21_000).contains(&w.faults.total),
        "{}",
        w.faults.total
    );
    assert_eq!(w.exit_code, Some(0));

    let out = cxl_trace(&["stat", "-o", f, "--duration", "1"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("not replacing it"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("live probes"),
        "refused before attaching"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("kept"), text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--promotion-decisions auto` (the default) leaves the decision hooks off while NUMA
/// balancing has no tiering mode, and says why; `always` tries them (here the kernel's own
/// refusal of function hooks is the reason, when it refuses).
#[test]
fn decision_hooks_stay_off_without_tiering_mode() {
    if !require_root("decision_hooks_stay_off_without_tiering_mode") {
        return;
    }
    let mode: u32 = std::fs::read_to_string("/proc/sys/kernel/numa_balancing")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if mode & 2 != 0 {
        eprintln!("skipped: NUMA balancing is in tiering mode here ({mode})");
        return;
    }
    let reason = |extra: &[&str]| {
        let mut args = vec!["top", "--no-tui", "--duration", "0.5"];
        args.extend_from_slice(extra);
        let out = cxl_trace(&args);
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        let lines = json_lines(&out);
        let start = of_type(&lines, "start")[0];
        start["probes"]
            .as_array()
            .expect("probes")
            .iter()
            .find(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("should_numa_migrate_memory"))
            })
            .map(|p| {
                (
                    p["status"].clone(),
                    p["reason"].as_str().unwrap_or("").to_string(),
                )
            })
            .expect("a status for the decision hook")
    };
    let (status, why) = reason(&[]);
    assert_eq!(status, "unavailable");
    assert!(
        why.contains(&format!("kernel.numa_balancing is {mode}")),
        "auto: {why}"
    );
    let (_, why) = reason(&["--promotion-decisions", "always"]);
    assert!(!why.contains("kernel.numa_balancing"), "always: {why}");
}
