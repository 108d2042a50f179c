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

/// A native Perfetto trace decoded back, checked for what trace_processor needs: one packet
/// sequence and every track declared before its first event. Slices are checked the way
/// trace_processor reads them: each track's events sorted by time (packet order among equal
/// times), every end closing the latest open begin. The writer puts a slice's end right
/// after its begin, so that pairing is what it meant; the check is that sorting by time
/// gives back exactly those pairs.
pub fn decode_perfetto(bytes: &[u8]) -> perfetto_protos::trace::Trace {
    use perfetto_protos::track_event::track_event::Type;
    use protobuf::Message;
    let t = perfetto_protos::trace::Trace::parse_from_bytes(bytes).expect("a perfetto Trace");
    let mut declared = std::collections::HashSet::new();
    // Per track: (time, packet index, begin?, index of the slice it belongs to).
    let mut slices: std::collections::HashMap<u64, Vec<(u64, usize, bool, usize)>> =
        Default::default();
    let mut open: std::collections::HashMap<u64, usize> = Default::default();
    for (i, p) in t.packet.iter().enumerate() {
        assert_eq!(p.trusted_packet_sequence_id(), 1, "one sequence");
        if p.has_track_descriptor() {
            declared.insert(p.track_descriptor().uuid());
        }
        if !p.has_track_event() {
            continue;
        }
        let e = p.track_event();
        let track = e.track_uuid();
        assert!(
            declared.contains(&track),
            "track {track:#x} used before its descriptor"
        );
        match e.type_() {
            Type::TYPE_SLICE_BEGIN => {
                assert!(
                    open.insert(track, i).is_none(),
                    "packet {i}: begin after begin"
                );
                slices
                    .entry(track)
                    .or_default()
                    .push((p.timestamp(), i, true, i));
            }
            Type::TYPE_SLICE_END => {
                let b = open.remove(&track).expect("an end follows its begin");
                slices
                    .entry(track)
                    .or_default()
                    .push((p.timestamp(), i, false, b));
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "slices never ended: {open:?}");
    for (track, mut s) in slices {
        s.sort_by_key(|&(ts, i, ..)| (ts, i));
        let mut stack = Vec::new();
        for (ts, _, begin, slice) in s {
            if begin {
                stack.push(slice);
            } else {
                assert_eq!(
                    stack.pop(),
                    Some(slice),
                    "track {track:#x} at {ts}: an end that closes another slice"
                );
            }
        }
    }
    t
}

/// The track events of a decoded trace, with their timestamps.
pub fn track_events(
    t: &perfetto_protos::trace::Trace,
) -> Vec<(u64, &perfetto_protos::track_event::TrackEvent)> {
    t.packet
        .iter()
        .filter(|p| p.has_track_event())
        .map(|p| (p.timestamp(), p.track_event()))
        .collect()
}
