//! The JSON lines of `cxl-trace top --no-tui`, read through the tool's own types: the VM
//! checks and the benchmarks find the start and summary lines here.

use anyhow::{Context as _, Result};
use cxl_trace::model::schema::{Line, LineKind, Start, Window};

/// The summary window, if `line` is the summary line.
pub(crate) fn summary_line(line: &str) -> Option<Window> {
    match serde_json::from_str::<Line>(line).ok()? {
        Line::Window(w) if w.kind == LineKind::Summary => Some(*w),
        _ => None,
    }
}

/// The summary line of a run's output (other lines, the command's among them, are skipped).
pub(crate) fn summary(out: &str) -> Result<Window> {
    // The last line of a run: read from the end, not every interval line parsed first.
    out.lines()
        .rev()
        .find_map(summary_line)
        .context("cxl-trace printed no summary line")
}

/// The start line of a run's output.
pub(crate) fn start(out: &str) -> Result<Start> {
    out.lines()
        .find_map(|l| match serde_json::from_str::<Line>(l).ok()? {
            Line::Start(s) => Some(*s),
            Line::Window(_) => None,
        })
        .context("cxl-trace printed no start line")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary is found among other lines (the command's own output included), read
    /// through the tool's types; a run without one is an error.
    #[test]
    fn the_summary_line_is_found_and_typed() {
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../cxl-trace/tests/fixtures/recordings/v1-small.cxlt");
        let mut w = cxl_trace::model::playback::summarize(&golden, 5).expect("golden recording");
        w.kind = LineKind::Summary;
        let line = cxl_trace::model::schema::to_line(&w).expect("serialises");
        let out = format!("not json\n{{\"calls\": 3}}\n{line}");
        assert_eq!(summary(&out).expect("found"), w);
        assert_eq!(summary_line(line.trim()), Some(w));
        assert!(summary("not json\n").is_err());
        assert!(start(&out).is_err());
    }
}
