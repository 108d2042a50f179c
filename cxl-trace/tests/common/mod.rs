//! Helpers for the end-to-end tests: run the built binaries, parse their JSON lines.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

use std::process::{Command, Output};

use serde_json::Value;

pub const CXL_TRACE: &str = env!("CARGO_BIN_EXE_cxl-trace");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_cxl-trace-workload");

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Privileged tests need root; without it they fail (never skip silently) unless the caller
/// explicitly opted out with CXL_TRACE_SKIP_PRIVILEGED=1, and then they say so.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CXL_TRACE_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: not root and CXL_TRACE_SKIP_PRIVILEGED=1");
        return false;
    }
    panic!("{test} attaches BPF programs and must run as root (set CXL_TRACE_SKIP_PRIVILEGED=1 to skip explicitly)");
}

pub fn cxl_trace(args: &[&str]) -> Output {
    Command::new(CXL_TRACE)
        .args(args)
        .output()
        .expect("run cxl-trace")
}

/// The JSON lines of stdout that have a "type" field (a traced command may print its own).
pub fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("type").is_some())
        .collect()
}

pub fn of_type<'a>(lines: &'a [Value], ty: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["type"] == ty).collect()
}

pub fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Reads the child's stderr until a line contains `needle` (its readiness line, say) and
/// returns that line (empty if stderr closed first); the rest is drained in the background so
/// the child never blocks on a full pipe.
pub fn wait_for_stderr_line(child: &mut std::process::Child, needle: &str) -> String {
    use std::io::{BufRead, BufReader};
    let mut err = BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut line = String::new();
    while err.read_line(&mut line).unwrap_or(0) > 0 && !line.contains(needle) {
        line.clear();
    }
    std::thread::spawn(move || for _ in err.lines() {});
    line
}
