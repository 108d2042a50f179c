//! Privileged end-to-end tests of sharing and of recording onto a failing disk: real kernel
//! events, real files on real (small) filesystems, read back with `report` and `export`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on purpose"
)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cxlt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn report(path: &Path) -> Value {
    let out = cxl_trace(&["report", "--format", "json", path.to_str().unwrap_or("")]);
    assert_eq!(out.status.code(), Some(0), "report: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("report json")
}

/// The report without what redaction changes by design: names, the host, the file name.
fn normalised(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in ["comm", "host", "file"] {
                    m.remove(k);
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Everything a reader of the file can see: its raw bytes, every event as JSON lines, and the
/// report (less `recording.file`, the path the reader was given).
fn everything(path: &Path) -> Vec<u8> {
    let mut all = std::fs::read(path).expect("read");
    let out = cxl_trace(&["export", path.to_str().unwrap_or(""), "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "export: {}", stderr(&out));
    all.extend_from_slice(&out.stdout);
    let mut v = report(path);
    if let Some(r) = v.get_mut("recording").and_then(Value::as_object_mut) {
        r.remove("file");
    }
    all.extend_from_slice(&serde_json::to_vec(&v).unwrap());
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `record --redact` and `redact` of a plain recording: no process name, argument or host name
/// of the run in the file, and the redacted copy reports what the plain file reports.
#[test]
fn redacted_recordings_leak_no_names_and_report_the_same() {
    if !require_root("redacted_recordings_leak_no_names_and_report_the_same") {
        return;
    }
    let dir = tempdir("redact");
    // A workload whose name and path are the secrets.
    let secret = dir.join("alicesecretwl");
    std::fs::copy(WORKLOAD, &secret).expect("copy the workload");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let plain = dir.join("plain.cxlt");
    let red = dir.join("red.cxlt");
    let copy = dir.join("copy.cxlt");
    for (file, redact) in [(&plain, false), (&red, true)] {
        let mut args = vec!["record", "-o", file.to_str().unwrap()];
        if redact {
            args.push("--redact");
        }
        args.extend(["--", secret.to_str().unwrap(), "touch", "--pages", "20000"]);
        let out = cxl_trace(&args);
        assert_eq!(out.status.code(), Some(0), "record: {}", stderr(&out));
    }
    let out = cxl_trace(&[
        "redact",
        plain.to_str().unwrap(),
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "redact: {}", stderr(&out));
    assert!(stderr(&out).contains("redacted"), "{}", stderr(&out));

    // The plain file does name the workload (so the check below can fail).
    assert!(contains(&everything(&plain), "alicesecretwl"));
    for file in [&red, &copy] {
        let all = everything(file);
        assert!(
            !contains(&all, "alicesecret"),
            "{}: process name or path leaked",
            file.display()
        );
        assert!(
            !contains(&all, dir.to_str().unwrap()),
            "{}: a path leaked",
            file.display()
        );
        let v = report(file);
        assert_eq!(v["host"]["redacted"], true);
        if host.len() >= 4 {
            assert_ne!(v["host"]["hostname"], Value::String(host.clone()));
            assert!(!contains(&serde_json::to_vec(&v["host"]).unwrap(), &host));
        }
    }
    // Redacting a file changes no derived number.
    let (a, b) = (report(&plain), report(&copy));
    assert_eq!(normalised(a.clone()), normalised(b));
    let faults = u(&a["faults"]["total"]);
    assert!(faults >= 20_000, "the plain run saw {faults} faults");
    // The redacted recording counts the workload's faults under a hashed name.
    let r = report(&red);
    let procs = r["processes"].as_array().cloned().unwrap_or_default();
    assert!(
        procs
            .iter()
            .any(|p| p["comm"].as_str().is_some_and(|c| c.starts_with('h'))
                && u(&p["faults"]) >= 20_000),
        "no hashed process with the workload's faults: {procs:?}"
    );
    // An existing output is never replaced; bad input is exit 2 and leaves nothing behind.
    let out = cxl_trace(&[
        "redact",
        plain.to_str().unwrap(),
        "-o",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let junk = dir.join("junk");
    std::fs::write(&junk, b"not a recording").unwrap();
    let out2 = dir.join("out2.cxlt");
    let out = cxl_trace(&[
        "redact",
        junk.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a cxl-trace recording"),
        "{}",
        stderr(&out)
    );
    assert!(!out2.exists(), "no output for bad input");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mounts (and on drop unmounts) filesystems and loop devices for a test.
struct Mounts(Vec<String>, Option<String>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        if let Some(dev) = &self.1 {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Records system-wide while a workload loops, into `file`, until the recording fails; returns
/// the exit code, stderr and how long it ran.
fn record_until_failure(file: &Path) -> (Option<i32>, String, Duration) {
    let script = format!("while true; do {WORKLOAD} touch --pages 400000 || exit 9; done");
    let t0 = Instant::now();
    let out = Command::new(CXL_TRACE)
        .args(["record", "--duration", "120", "-o"])
        .arg(file)
        .args(["--", "sh", "-c", &script])
        .output()
        .expect("record");
    (out.status.code(), stderr(&out), t0.elapsed())
}

/// What a stopped recording must look like: one error line naming the file and the cause,
/// exit 1 well before --duration, and a file that reads back as cut (no clean end).
fn check_stopped(file: &Path, code: Option<i32>, err: &str, took: Duration, cause: &str) {
    assert_eq!(code, Some(1), "stderr: {err}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cxl-trace: error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(
        errors[0].contains(file.to_str().unwrap()),
        "names the file: {}",
        errors[0]
    );
    assert!(
        errors[0].contains(cause),
        "says why ({cause}): {}",
        errors[0]
    );
    assert!(
        took < Duration::from_secs(100),
        "stopped at the failure, not at --duration: {took:?}"
    );
    let v = report(file);
    assert_eq!(v["recording"]["clean_end"], false, "{}", v["recording"]);
    assert!(u(&v["faults"]["total"]) > 0, "what was written reads back");
}

/// ENOSPC: `record` onto a 1 MiB tmpfs stops with one line naming the file and the error,
/// detaches (exits) at once, and the file reads back up to its last complete chunk.
#[test]
fn a_full_disk_stops_the_recording_and_keeps_what_was_written() {
    if !require_root("a_full_disk_stops_the_recording_and_keeps_what_was_written") {
        return;
    }
    let dir = tempdir("enospc");
    let mnt = dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=1m tmpfs {}",
        mnt.display()
    ));
    let _m = Mounts(vec![mnt.display().to_string()], None);
    let file = mnt.join("full.cxlt");
    let (code, err, took) = record_until_failure(&file);
    check_stopped(&file, code, &err, took, "No space left on device");
    drop(_m);
    let _ = std::fs::remove_dir_all(&dir);
}

/// EIO at writeback: ext4 on a loop device whose backing file lives on a 3 MiB tmpfs. Writes
/// land in the page cache; writeback fails once the tmpfs is full, which only `fdatasync`
/// reports. The host kernel has no device-mapper, so a `dm-error` target cannot be built here;
/// this is the same failure seen from the filesystem.
#[test]
fn an_io_error_at_writeback_stops_the_recording() {
    if !require_root("an_io_error_at_writeback_stops_the_recording") {
        return;
    }
    let dir = tempdir("eio");
    let back = dir.join("back");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&back).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=3m tmpfs {}",
        back.display()
    ));
    let mut m = Mounts(vec![back.display().to_string()], None);
    let img = back.join("disk.img");
    sh(&format!(
        "truncate -s 64M {0} && mkfs.ext4 -q -F -O ^has_journal {0}",
        img.display()
    ));
    let dev = sh(&format!("losetup -f --show {}", img.display()));
    m.1 = Some(dev.clone());
    sh(&format!("mount {dev} {}", mnt.display()));
    m.0.push(mnt.display().to_string());
    let file = mnt.join("eio.cxlt");
    let (code, err, took) = record_until_failure(&file);
    // The loop driver passes the backing file's ENOSPC up as such, or as EIO: either way it
    // surfaces only at writeback.
    let cause = if err.contains("Input/output error") {
        "Input/output error"
    } else {
        "No space left on device"
    };
    check_stopped(&file, code, &err, took, cause);
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
}
