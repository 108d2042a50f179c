//! `cxl-trace report`: the whole-run summary of a recording, as text or JSON.

use crate::{
    cli::{ReportFormat, ReportOpts},
    error::Result,
};

pub fn run(o: &ReportOpts) -> Result<i32> {
    let v = crate::model::playback::summarize(&o.file, o.top)?;
    let out = match o.format {
        ReportFormat::Json => crate::model::schema::to_pretty(&v)?,
        ReportFormat::Text => crate::output::report::to_text(&v),
    };
    crate::output::write_stdout(out.as_bytes())?;
    if v.recording.as_ref().is_some_and(|r| r.truncated) {
        eprintln!(
            "cxl-trace: warning: {} ends inside a chunk (cut off by a crash or kill): reported up to the last complete chunk",
            o.file.display()
        );
    }
    Ok(0)
}
