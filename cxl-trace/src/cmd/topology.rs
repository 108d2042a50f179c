//! `cxl-trace topology`: the machine's nodes, tiers and CXL devices.

use crate::{
    error::Result,
    model::{schema, topology},
    output::write_stdout,
};

pub fn run(o: &crate::cli::DoctorOpts) -> Result<i32> {
    let t = topology::Topology::live();
    let out = if o.json {
        schema::to_pretty(&schema::TopologyDoc {
            schema_version: schema::SCHEMA_VERSION,
            topology: t,
        })?
    } else {
        crate::output::topology::to_text(&t)
    };
    write_stdout(out.as_bytes())?;
    Ok(0)
}
