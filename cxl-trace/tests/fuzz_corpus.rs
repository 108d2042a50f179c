//! Every input the fuzzers ever kept, replayed through the entry points the fuzz targets call,
//! in the ordinary test build: the committed corpus (`cxl-trace/fuzz/corpus/<target>/`), the
//! crashes they found (`tests/fixtures/fuzz-regressions/<target>-<name>`) and the golden
//! recordings (the reader's seeds). Each must end without a panic. Real fuzzing, with
//! sanitizers and libFuzzer, is `cargo xtask fuzz`, which adds what it finds to the corpus.

use std::path::{Path, PathBuf};

use cxl_trace::model::{
    recording::fuzzing::{payload_in_frame, read_everything},
    redact::fuzzing::redact_invariants,
};

const TARGETS: [&str; 3] = ["reader", "payload", "redact"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Feeds `data` to `target`'s entry point.
fn feed(target: &str, data: &[u8]) {
    match target {
        "reader" => {
            read_everything(data);
        }
        "payload" => {
            payload_in_frame(data);
        }
        "redact" => {
            redact_invariants(data);
        }
        other => panic!("no fuzz target {other}"),
    }
}

/// The inputs of one target: its corpus, its regressions, and for the reader the recordings.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut all = files(&root().join("fuzz/corpus").join(target));
    all.extend(
        files(&root().join("tests/fixtures/fuzz-regressions"))
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{target}-")))
            }),
    );
    if target == "reader" {
        all.extend(
            files(&root().join("tests/fixtures/recordings"))
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "cxlt")),
        );
    }
    all
}

fn replay(target: &str) {
    let all = inputs(target);
    // A corpus that went missing must fail, not pass on nothing.
    assert!(
        all.len() >= 10,
        "{target}: only {} inputs; the committed corpus is fuzz/corpus/{target}",
        all.len()
    );
    for p in &all {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // The name of the input that panics is the first thing a reader of the log needs.
        let r = std::panic::catch_unwind(|| feed(target, &data));
        assert!(r.is_ok(), "{target}: {} panicked", p.display());
    }
    eprintln!("{target}: {} inputs replayed", all.len());
}

#[test]
fn reader_corpus_replays_without_panic() {
    replay("reader");
}

#[test]
fn payload_corpus_replays_without_panic() {
    replay("payload");
}

#[test]
fn redact_corpus_replays_without_panic() {
    replay("redact");
}

/// The corpus directories are the fuzz targets' own: one per target, no strays.
#[test]
fn corpus_has_a_directory_per_target_and_no_other() {
    let mut dirs: Vec<String> = std::fs::read_dir(root().join("fuzz/corpus"))
        .expect("fuzz/corpus")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut want: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(dirs, want);
}

/// The replay reaches the decoders: a golden recording yields records through the reader.
#[test]
fn the_replay_reaches_the_decoder() {
    let golden = files(&root().join("tests/fixtures/recordings"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "cxlt"))
        .expect("a golden recording");
    let data = std::fs::read(&golden).expect("readable");
    assert!(read_everything(&data) > 0, "{}", golden.display());
}
