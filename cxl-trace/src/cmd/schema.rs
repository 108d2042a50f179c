//! `cxl-trace schema [COMMAND]`: the JSON Schema of a command's output, or of all of them.

use crate::{error::Result, model::schema, output::write_stdout};

pub fn run(o: &crate::cli::SchemaOpts) -> Result<i32> {
    let out = match o.command {
        Some(d) => schema::to_pretty(&d.schema())?,
        None => {
            let all: serde_json::Map<String, serde_json::Value> = schema::Document::ALL
                .iter()
                .map(|d| (d.name().to_string(), d.schema().to_value()))
                .collect();
            schema::to_pretty(&all)?
        }
    };
    write_stdout(out.as_bytes())?;
    Ok(0)
}
