//! Command-line behaviour that needs no privileges: bad input gets a clear message and a
//! non-zero exit, never a panic.

mod common;

use common::*;

fn assert_clean_failure(args: &[&str], code: i32, needle: &str) {
    let out = cxl_trace(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected `{needle}` in stderr: {err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

#[test]
fn bad_intervals_are_usage_errors() {
    assert_clean_failure(&["top", "--no-tui", "--interval", "0"], 2, "positive");
    assert_clean_failure(&["top", "--no-tui", "--interval", "abc"], 2, "not a number");
    assert_clean_failure(&["top", "--no-tui", "--duration", "-3"], 2, "");
    assert_clean_failure(&["top", "--ringbuf-mib", "3"], 2, "power of two");
}

#[test]
fn unknown_subcommand_and_conflicts() {
    assert_clean_failure(&["frobnicate"], 2, "unrecognized subcommand");
    assert_clean_failure(
        &["top", "--pid", "1", "--", "true"],
        2,
        "cannot be used with",
    );
}

#[test]
fn bad_filters_are_reported() {
    assert_clean_failure(
        &["top", "--no-tui", "--cgroup", "no-such-cgroup-xyz"],
        2,
        "--cgroup no-such-cgroup-xyz",
    );
    assert_clean_failure(
        &["top", "--no-tui", "--comm", ""],
        2,
        "--comm: the name is empty",
    );
    assert_clean_failure(
        &["top", "--comm", "a", "--pid", "1"],
        2,
        "cannot be used with",
    );
    assert_clean_failure(
        &["top", "--cgroup", "/", "--", "true"],
        2,
        "cannot be used with",
    );
}

#[test]
fn missing_pid_is_reported() {
    // pid_max is at most 4194304, so this pid cannot exist.
    assert_clean_failure(
        &["top", "--no-tui", "--pid", "999999999"],
        1,
        "no process with pid 999999999",
    );
}

#[test]
fn doctor_json_is_valid_whatever_the_privileges() {
    let out = cxl_trace(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json is JSON");
    let probes = v["probes"].as_array().expect("probes array");
    assert!(!probes.is_empty());
    for p in probes {
        assert!(p["status"] == "live" || p["status"] == "unavailable", "{p}");
        assert!(p["name"].is_string() && p["reason"].is_string(), "{p}");
    }
    assert!(v["capabilities"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["name"] == "btf")));
}

#[test]
fn version_and_help() {
    let out = cxl_trace(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cxl-trace "));
    let out = cxl_trace(&["top", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--no-tui"));
}
