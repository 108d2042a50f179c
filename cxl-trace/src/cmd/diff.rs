//! `cxl-trace diff BASE NEW`: did tiering get worse, where, and is it real?
//!
//! The comparison is `crate::model::diff` (profile, statistics, comparison); the text is
//! `crate::output::diff`, the SVG `crate::output::svg`.

use std::io::Write;

use crate::{
    cli::{DiffFormat, DiffOpts},
    error::{Error, Result},
    model::diff::{
        compare::{compare, evaluate, parse_fail_on, pct_str, to_doc, FailOn},
        profile::{self, Profile},
    },
    output::{diff::to_text, svg},
};

/// `cxl-trace diff`: exit 0 (nothing crossed), 1 (a `--fail-on` crossed), 2 (bad input).
pub fn run(o: &DiffOpts) -> Result<i32> {
    let conds: Vec<FailOn> = o
        .fail_on
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_fail_on(s).map_err(Error::Usage))
        .collect::<Result<_>>()?;
    let b = profile::read(&o.base)?;
    let n = profile::read(&o.new)?;
    let version = |p: &Profile| p.summary.recording.as_ref().map(|r| r.format_version);
    if version(&b) != version(&n) {
        // Every version this build reads is comparable; say it anyway.
        eprintln!(
            "cxl-trace: note: format versions differ ({:?} and {:?})",
            version(&b),
            version(&n)
        );
    }
    let d = compare(&b, &n, o.min_change);
    let verdicts = evaluate(&d, &conds)?;
    let out: Vec<u8> = match o.format {
        DiffFormat::Text => to_text(&b, &n, &d, &verdicts).into_bytes(),
        DiffFormat::Json => {
            crate::model::schema::to_pretty(&to_doc(&b, &n, &d, &verdicts))?.into_bytes()
        }
        DiffFormat::Svg => svg::render(&b, &n)?.into_bytes(),
    };
    match &o.output {
        Some(p) => {
            let mut f = crate::model::recording::create_new_file(p)?;
            f.write_all(&out).map_err(|e| Error::io(p, e))?;
        }
        None => {
            crate::output::write_stdout(&out)?;
        }
    }
    let crossed = verdicts.iter().any(|(_, r)| !r.is_empty());
    if crossed {
        for (spec, rows) in &verdicts {
            for r in rows {
                eprintln!(
                    "cxl-trace: --fail-on {spec}: crossed by {} ({})",
                    r.id,
                    pct_str(r.change.pct)
                );
            }
        }
    }
    Ok(i32::from(crossed))
}

#[cfg(test)]
mod tests;
