//! Thread names in fault records, read by the programs straight from the current task where
//! the kernel's BTF places `task_struct.comm` (else through `bpf_get_current_comm`): each
//! record carries the name the thread had at that fault. Runs as root.

mod common;

use common::*;

/// `record -- workload`: the command's faults before its exec carry the forked tracer's name,
/// every one after it the workload's, and the names never go back; the start line says
/// nothing was refused.
#[test]
fn each_fault_record_has_the_name_its_thread_had_then() {
    if !require_root("each_fault_record_has_the_name_its_thread_had_then") {
        return;
    }
    const PAGES: u64 = 5_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("names.cxlt");
    let file = file.to_str().expect("utf-8 path");
    let pages = PAGES.to_string();
    let out = cxl_trace(&[
        "record", "-o", file, "--", WORKLOAD, "touch", "--pages", &pages,
    ]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(
        !stderr(&out).contains("the verifier refused reading thread names"),
        "{}",
        stderr(&out)
    );
    let out = cxl_trace(&["export", file, "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let faults: Vec<serde_json::Value> = json_lines(&out)
        .into_iter()
        .filter(|v| v["type"] == "fault")
        .collect();
    let pid = faults
        .iter()
        .find(|f| f["comm"] == "cxl-trace-workl")
        .map(|f| u(&f["pid"]))
        .expect("a fault of the workload under its own name");
    let names: Vec<&str> = faults
        .iter()
        .filter(|f| u(&f["pid"]) == pid)
        .map(|f| f["comm"].as_str().unwrap_or(""))
        .collect();
    let first_own = names
        .iter()
        .position(|n| *n == "cxl-trace-workl")
        .unwrap_or(names.len());
    assert!(
        names[..first_own].iter().all(|n| *n == "cxl-trace"),
        "before the exec: {:?}",
        &names[..first_own]
    );
    assert!(
        names[first_own..].iter().all(|n| *n == "cxl-trace-workl"),
        "after the exec, a record with another name"
    );
    assert!(
        (names.len() - first_own) as u64 >= PAGES,
        "{} faults under the workload's name, {PAGES} pages touched",
        names.len() - first_own
    );
}
