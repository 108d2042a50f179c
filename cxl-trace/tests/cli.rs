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

const GOLDEN_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/recordings/v1-small.cxlt"
);

/// A recording written by format version 1 stays readable with the same numbers forever.
#[test]
fn golden_v1_recording_reports_the_same_numbers() {
    let out = cxl_trace(&["report", "--format", "json", GOLDEN_V1]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["recording"]["format_version"], 1);
    assert_eq!(v["recording"]["events"], 3253);
    assert_eq!(v["recording"]["clean_end"], true);
    assert_eq!(v["faults"]["total"], 3159);
    assert_eq!(v["migrations"]["pages_succeeded"], 990);
    assert_eq!(v["host"]["redacted"], true);
    assert!(v["topology"]["nodes"].is_array());
    assert!(v["vmstat_delta"]["pgfault"].as_u64().unwrap_or(0) >= 3159);
    let text = cxl_trace(&["report", GOLDEN_V1]);
    assert_eq!(text.status.code(), Some(0));
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(t.contains("3159 total"), "{t}");
}

#[test]
fn export_writes_every_event() {
    let out = cxl_trace(&["export", "--format", "jsonl", GOLDEN_V1]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3253);
    let faults = lines.iter().filter(|v| v["type"] == "fault").count();
    assert_eq!(faults, 3159);
    let out = cxl_trace(&["export", "--format", "csv", GOLDEN_V1]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = text.lines();
    assert!(rows.next().is_some_and(|h| h.starts_with("ts_ns,type,pid")));
    assert_eq!(rows.count(), 3253);
}

const TIMED_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/recordings/v1-timed.cxlt"
);

/// The Chrome JSON export is a trace in the trace event format: every event on its CPU's track (named), slices
/// with a duration, counter tracks once per recorded interval that add up to the report.
#[test]
fn export_chrome_json_is_a_chrome_trace_of_every_event() {
    let report = cxl_trace(&["report", "--format", "json", TIMED_V1]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).expect("report json");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("trace.json");
    let p = path.to_str().expect("utf-8 path");
    let out = cxl_trace(&["export", "--format", "chrome-json", TIMED_V1, "-o", p]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("written")).expect("one JSON object");
    assert_eq!(trace["displayTimeUnit"], "ns");
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let mut named = std::collections::HashSet::new();
    let (mut faults, mut slices, mut intervals) = (0u64, 0u64, 0u64);
    let mut counted = 0.0;
    let mut cpu_tracks = std::collections::HashSet::new();
    for e in events {
        let ph = e["ph"].as_str().expect("ph");
        assert!(e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
        if ph == "M" {
            if e["name"] == "thread_name" {
                named.insert(u(&e["tid"]));
            }
            continue;
        }
        let ts = e["ts"].as_f64().expect("ts");
        assert!((0.0..1e8).contains(&ts), "ts in us since the start: {e}");
        match ph {
            "i" => {
                assert_eq!(e["s"], "t");
                cpu_tracks.insert(u(&e["tid"]));
                if e["cat"] == "fault" {
                    faults += 1;
                }
            }
            "X" => {
                assert!(e["dur"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
                cpu_tracks.insert(u(&e["tid"]));
                slices += 1;
            }
            "C" => {
                if e["name"] == "faults/s" {
                    intervals += 1;
                    counted += e["args"]["faults"].as_f64().expect("rate");
                }
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    assert_eq!(
        faults,
        u(&report["faults"]["total"]),
        "one instant per fault"
    );
    assert_eq!(
        slices,
        u(&report["migrations"]["batches"]),
        "one slice per batch"
    );
    assert!(
        cpu_tracks.iter().all(|t| named.contains(t)),
        "every CPU track named"
    );
    assert!(intervals >= 5, "6 s recorded: {intervals} counter samples");
    // Rates over ~1 s intervals add up to (nearly) every fault: the tail after the last
    // snapshot has no interval.
    let total = u(&report["faults"]["total"]) as f64;
    assert!(
        counted > 0.8 * total && counted < 1.2 * total,
        "{counted} vs {total}"
    );
    // An existing output is kept.
    let again = cxl_trace(&["export", "--format", "chrome-json", TIMED_V1, "-o", p]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
}

#[test]
fn bad_recordings_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("cxlt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let not = dir.join("not.cxlt");
    std::fs::write(&not, b"just some text, not a recording\n").expect("write");
    assert_clean_failure(
        &["report", not.to_str().unwrap_or("")],
        2,
        "not a cxl-trace recording",
    );
    assert_clean_failure(&["report", "/nonexistent/x.cxlt"], 2, "/nonexistent/x.cxlt");
    let golden = std::fs::read(GOLDEN_V1).expect("golden");
    // From a newer format version.
    let mut newer = golden.clone();
    newer[8] = 2;
    let p = dir.join("newer.cxlt");
    std::fs::write(&p, &newer).expect("write");
    assert_clean_failure(&["report", p.to_str().unwrap_or("")], 2, "format version 2");
    // Corrupted in the middle: the chunk is named.
    let mut bad = golden.clone();
    let n = bad.len();
    bad[n - 100] ^= 0xff;
    let p = dir.join("corrupt.cxlt");
    std::fs::write(&p, &bad).expect("write");
    assert_clean_failure(
        &["report", p.to_str().unwrap_or("")],
        2,
        "damaged chunk at byte",
    );
    // Cut short: reported up to the last complete chunk, with a warning.
    let p = dir.join("cut.cxlt");
    std::fs::write(&p, &golden[..golden.len() - 50]).expect("write");
    let out = cxl_trace(&["report", "--format", "json", p.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ends inside a chunk"),
        "{}",
        stderr(&out)
    );
    // An existing output is never replaced without --force.
    assert_clean_failure(
        &["record", "-o", GOLDEN_V1, "--duration", "1"],
        2,
        "not replacing a recording",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `replay --no-tui` prints what `top --no-tui` printed: a start line, the intervals (which add
/// up to the whole run) and a summary equal to the report.
#[test]
fn replay_adds_up_to_the_report() {
    let out = cxl_trace(&["replay", "--no-tui", GOLDEN_V1]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(of_type(&lines, "start").len(), 1);
    let intervals = of_type(&lines, "interval");
    assert!(!intervals.is_empty());
    let sum: u64 = intervals.iter().map(|v| u(&v["faults"]["total"])).sum();
    let summary = of_type(&lines, "summary")[0];
    assert_eq!(sum, 3159);
    assert_eq!(u(&summary["faults"]["total"]), 3159);
    assert_eq!(u(&summary["migrations"]["pages_succeeded"]), 990);
    assert!(u(&summary["vmstat_delta"]["pgfault"]) >= 3159, "{summary}");
    // Not a terminal: the dashboard falls back to the same JSON lines.
    let piped = cxl_trace(&["replay", GOLDEN_V1]);
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert_eq!(piped.stdout, out.stdout);
}

/// `diff` of a recording with itself: every line "no change", exit 0, also with `--fail-on`;
/// SVG and JSON carry the same rows.
#[test]
fn diff_of_identical_recordings_is_no_change() {
    let out = cxl_trace(&[
        "diff",
        TIMED_V1,
        TIMED_V1,
        "--fail-on",
        "promotions:-20%,faults:+10%",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Configuration: the same"), "{text}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ") && (l.ends_with("no change") || l.contains("SIGNIFICANT")))
        .collect();
    assert!(rows.len() >= 8, "{text}");
    assert!(rows.iter().all(|l| l.ends_with("no change")), "{text}");
    assert!(
        text.contains("--fail-on promotions:-20%: not crossed"),
        "{text}"
    );

    let out = cxl_trace(&["diff", "--format", "json", TIMED_V1, TIMED_V1]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rows = v["rows"].as_array().expect("rows");
    assert!(rows
        .iter()
        .all(|r| r["significant"] == false && r["change_pct"] == 0.0));
    assert_eq!(v["base"]["intervals"], v["new"]["intervals"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("diff.svg");
    let p = svg.to_str().expect("utf-8");
    let out = cxl_trace(&["diff", "--format", "svg", "-o", p, GOLDEN_V1, TIMED_V1]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        doc.starts_with("<svg") && doc.contains("tier churn"),
        "{}",
        &doc[..200]
    );
}

#[test]
fn diff_bad_input_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.cxlt");
    let m = missing.to_str().expect("utf-8");
    assert_clean_failure(&["diff", m, TIMED_V1], 2, "missing.cxlt");
    let junk = dir.path().join("junk.cxlt");
    std::fs::write(&junk, b"not a recording at all").expect("write");
    let j = junk.to_str().expect("utf-8");
    assert_clean_failure(&["diff", TIMED_V1, j], 2, "not a cxl-trace recording");
    // A newer format version than this build reads.
    let mut bytes = std::fs::read(TIMED_V1).expect("fixture");
    bytes[8] = 2;
    let newer = dir.path().join("v2.cxlt");
    std::fs::write(&newer, &bytes).expect("write");
    let n = newer.to_str().expect("utf-8");
    assert_clean_failure(&["diff", TIMED_V1, n], 2, "version 2");
    assert_clean_failure(
        &["diff", TIMED_V1, TIMED_V1, "--fail-on", "p98:+1%"],
        2,
        "unknown metric",
    );
    assert_clean_failure(
        &["diff", TIMED_V1, TIMED_V1, "--fail-on", "promotions:20%"],
        2,
        "sign",
    );
    // Latency is not measured on this host's recordings: a condition on it cannot pass silently.
    assert_clean_failure(
        &[
            "diff",
            TIMED_V1,
            TIMED_V1,
            "--fail-on",
            "p99:tier=slow:+10%",
        ],
        2,
        "no such measurement",
    );
    assert_clean_failure(&["diff", TIMED_V1], 2, "NEW");
}

/// `redact` of the golden recordings (one of them cut short) as an unprivileged user: the copy
/// reports the same numbers; the cut copy says so and keeps what was complete.
#[test]
fn redact_keeps_every_number_of_a_recording_and_of_a_cut_one() {
    let dir = std::env::temp_dir().join(format!("cxlt-cli-redact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let timed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/recordings/v1-timed.cxlt"
    );
    let bytes = std::fs::read(timed).expect("fixture");
    let cut = dir.join("cut.cxlt");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let report = |p: &str| -> serde_json::Value {
        let out = cxl_trace(&["report", "--format", "json", p]);
        assert_eq!(out.status.code(), Some(0), "{p}: {}", stderr(&out));
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        for k in ["host", "recording"] {
            v.as_object_mut().expect("object").remove(k);
        }
        if let Some(ps) = v["processes"].as_array_mut() {
            ps.iter_mut().for_each(|p| {
                p.as_object_mut().expect("row").remove("comm");
            });
        }
        v
    };
    for (i, input) in [GOLDEN_V1, timed, cut.to_str().expect("path")]
        .iter()
        .enumerate()
    {
        let out_path = dir.join(format!("red{i}.cxlt"));
        let out = cxl_trace(&["redact", input, "-o", out_path.to_str().expect("path")]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{input}: {err}");
        if i == 2 {
            assert!(err.contains("cut off"), "the cut input is reported: {err}");
        }
        let (a, b) = (report(input), report(out_path.to_str().expect("path")));
        assert_eq!(a, b, "{input}: redaction changed a derived number");
        assert!(
            b["faults"]["total"].as_u64().unwrap_or(0) > 0,
            "{input}: empty report"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every program, map and global that userspace names exists in the embedded BPF object
/// (unprivileged: the object is only parsed, nothing is loaded).
#[test]
fn every_name_userspace_uses_is_in_the_bpf_object() {
    let missing = cxl_trace::probe::missing_from_bpf_object().expect("the object parses");
    assert!(
        missing.is_empty(),
        "missing from the BPF object: {missing:?}"
    );
}

/// `completions`: a script per shell naming every visible subcommand (bash's loads in bash,
/// and completes `cxl-trace re` to the three commands that start so); an unknown shell is a
/// usage error.
#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cxl_trace(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in [
            "top", "record", "report", "replay", "diff", "redact", "export", "doctor",
        ] {
            assert!(text.contains(sub), "{shell}: {sub}");
        }
        assert!(
            !text.contains("proc-reader"),
            "{shell}: the hidden helper is offered"
        );
    }
    let out = cxl_trace(&["completions", "bash"]);
    let dir = std::env::temp_dir().join(format!("cxlt-compl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("cxl-trace.bash");
    std::fs::write(&script, &out.stdout).expect("script");
    let probe = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}'; COMP_WORDS=(cxl-trace re); COMP_CWORD=1; COMP_LINE='cxl-trace re'; COMP_POINT=12; _cxl__trace cxl-trace re cxl-trace; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .expect("bash");
    let mut words: Vec<String> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    words.sort();
    assert_eq!(
        words,
        ["record", "redact", "replay", "report"],
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_clean_failure(&["completions", "tcsh"], 2, "invalid value 'tcsh'");
}
