//! `export --format parquet`: a recording as two Parquet files for the engines fleets already
//! run (DuckDB, Spark, Trino): `events.parquet`, one typed row per event, and
//! `intervals.parquet`, one row per recorded interval. Every row carries `host` and `kernel`,
//! so many recordings union into one table; the recording's header is the files' key-value
//! metadata (`cxl_trace.header`, JSON).
//!
//! Columns are typed (unsigned, signed, float, UTF-8). A field with no column, or whose value
//! does not fit its column's type, goes to the `extra` column as JSON: nothing is dropped.

use std::{io::Write, sync::Arc};

use parquet::{
    basic::{Compression, ZstdLevel},
    data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type},
    file::{metadata::KeyValue, properties::WriterProperties, writer::SerializedFileWriter},
    schema::{parser::parse_message_type, types::Type},
};
use serde_json::{Map, Value};

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// `UINT64` (INT64 with the unsigned annotation).
    U64,
    /// `INT64`.
    I64,
    /// `DOUBLE`.
    F64,
    /// UTF-8 string.
    Str,
}

impl ColType {
    fn parquet(self) -> &'static str {
        match self {
            Self::U64 => "INT64 {name} (INTEGER(64,false))",
            Self::I64 => "INT64 {name}",
            Self::F64 => "DOUBLE {name}",
            Self::Str => "BYTE_ARRAY {name} (UTF8)",
        }
    }
}

/// The event columns besides `host` and `kernel` (always set) and `extra`.
pub const EVENT_COLUMNS: &[(&str, ColType)] = &[
    ("ts_ns", ColType::U64),
    ("type", ColType::Str),
    ("pid", ColType::U64),
    ("tid", ColType::U64),
    ("cpu", ColType::U64),
    ("comm", ColType::Str),
    ("address", ColType::U64),
    ("ip", ColType::U64),
    ("error_code", ColType::U64),
    ("latency_ns", ColType::U64),
    ("alloc_pfn", ColType::U64),
    ("ret", ColType::I64),
    ("flags", ColType::U64),
    ("numa_node", ColType::I64),
    ("retries", ColType::U64),
    ("src_pfn", ColType::U64),
    ("dst_pfn", ColType::U64),
    ("mapping", ColType::U64),
    ("index", ColType::U64),
    ("copy_ns", ColType::U64),
    ("rc", ColType::I64),
    ("reason", ColType::Str),
    ("succeeded", ColType::U64),
    ("failed", ColType::U64),
    ("thp_succeeded", ColType::U64),
    ("thp_failed", ColType::U64),
    ("thp_split", ColType::U64),
    ("large_folio_split", ColType::U64),
    ("src_nid", ColType::I64),
    ("dst_nid", ColType::I64),
    ("dst_cpu", ColType::I64),
    ("mem_node", ColType::I64),
    ("candidate_pages", ColType::I64),
    ("verdict", ColType::Str),
    ("pages", ColType::U64),
    ("event", ColType::Str),
];

/// The interval columns besides `host` and `kernel` and `document` (the interval's whole
/// window document, JSON, as `replay --no-tui` prints it).
pub const INTERVAL_COLUMNS: &[(&str, ColType)] = &[
    ("t_s", ColType::F64),
    ("interval_s", ColType::F64),
    ("events", ColType::U64),
    ("faults", ColType::U64),
    ("faults_user", ColType::U64),
    ("faults_kernel", ColType::U64),
    ("migrated_pages", ColType::U64),
    ("migration_failed_pages", ColType::U64),
    ("promoted_pages", ColType::U64),
    ("demoted_pages", ColType::U64),
    ("pingpong_bounces", ColType::U64),
    ("numa_hint_faults", ColType::U64),
    ("dropped", ColType::U64),
];

/// An interval's typed columns from its totals.
pub fn interval_row(
    t: &crate::model::aggregate::Totals,
    t_s: f64,
    interval_s: f64,
    dropped: u64,
) -> Map<String, Value> {
    let c = crate::model::sample::Churn::of(t);
    let m = t.migrations.total();
    let vals: [(&str, Value); 13] = [
        ("t_s", t_s.into()),
        ("interval_s", interval_s.into()),
        ("events", t.events.into()),
        ("faults", t.faults.total.into()),
        ("faults_user", t.faults.user.into()),
        ("faults_kernel", t.faults.kernel.into()),
        ("migrated_pages", m.pages_succeeded.into()),
        ("migration_failed_pages", m.pages_failed.into()),
        ("promoted_pages", t.tiers.moves.promoted().into()),
        ("demoted_pages", t.tiers.moves.demoted().into()),
        ("pingpong_bounces", c.bounces.into()),
        ("numa_hint_faults", c.hint_faults.into()),
        ("dropped", dropped.into()),
    ];
    vals.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// One column's values.
#[derive(Debug)]
enum Values {
    Int(Vec<i64>),
    Float(Vec<f64>),
    Str(Vec<ByteArray>),
}

#[derive(Debug)]
struct Column {
    name: String,
    ty: ColType,
    values: Values,
    /// 1 where the row has a value.
    defined: Vec<i16>,
}

impl Column {
    fn new(name: &str, ty: ColType) -> Self {
        let values = match ty {
            ColType::U64 | ColType::I64 => Values::Int(Vec::new()),
            ColType::F64 => Values::Float(Vec::new()),
            ColType::Str => Values::Str(Vec::new()),
        };
        Self {
            name: name.into(),
            ty,
            values,
            defined: Vec::new(),
        }
    }

    /// Takes `v` when it fits the type; `false` (and nothing stored) when it does not.
    fn push(&mut self, v: Option<&Value>) -> bool {
        let fits = match (v, &mut self.values, self.ty) {
            (None | Some(Value::Null), _, _) => {
                self.defined.push(0);
                return true;
            }
            (Some(Value::Number(n)), Values::Int(out), ColType::U64) => {
                // Stored as the two's complement bits, as Parquet's UINT64 wants.
                n.as_u64().map(|x| out.push(x as i64))
            }
            (Some(Value::Number(n)), Values::Int(out), _) => n.as_i64().map(|x| out.push(x)),
            (Some(Value::Number(n)), Values::Float(out), _) => n.as_f64().map(|x| out.push(x)),
            (Some(Value::String(s)), Values::Str(out), _) => {
                out.push(ByteArray::from(s.as_str()));
                Some(())
            }
            _ => None,
        };
        self.defined.push(i16::from(fits.is_some()));
        fits.is_some()
    }

    fn clear(&mut self) {
        self.defined.clear();
        match &mut self.values {
            Values::Int(v) => v.clear(),
            Values::Float(v) => v.clear(),
            Values::Str(v) => v.clear(),
        }
    }
}

/// Rows written per row group.
const ROW_GROUP: usize = 65_536;

/// A Parquet file written row by row from JSON objects, a row group at a time.
pub struct ParquetTable<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    cols: Vec<Column>,
    rows: usize,
}

fn err(e: parquet::errors::ParquetError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The schema: `host`, `kernel`, the typed columns, then `rest`.
fn schema(name: &str, typed: &[(&str, ColType)], rest: &str) -> std::io::Result<Arc<Type>> {
    let mut msg = format!(
        "message {name} {{\n  REQUIRED BYTE_ARRAY host (UTF8);\n  REQUIRED BYTE_ARRAY kernel (UTF8);\n"
    );
    for (c, t) in typed {
        msg.push_str(&format!(
            "  OPTIONAL {};\n",
            t.parquet().replace("{name}", c)
        ));
    }
    msg.push_str(&format!("  OPTIONAL BYTE_ARRAY {rest} (UTF8);\n}}\n"));
    Ok(Arc::new(parse_message_type(&msg).map_err(err)?))
}

impl<W: Write + Send> ParquetTable<W> {
    /// A table named `name` with `typed` columns; `header` goes to the key-value metadata.
    pub fn new(
        out: W,
        name: &str,
        typed: &[(&str, ColType)],
        rest: &'static str,
        header: &str,
    ) -> std::io::Result<Self> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_size(ROW_GROUP)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "cxl_trace.header".into(),
                header.to_string(),
            )]))
            .build();
        let writer = SerializedFileWriter::new(out, schema(name, typed, rest)?, Arc::new(props))
            .map_err(err)?;
        let mut cols = vec![
            Column::new("host", ColType::Str),
            Column::new("kernel", ColType::Str),
        ];
        cols.extend(typed.iter().map(|(c, t)| Column::new(c, *t)));
        cols.push(Column::new(rest, ColType::Str));
        Ok(Self {
            writer,
            cols,
            rows: 0,
        })
    }

    /// Adds a row: `host` and `kernel`, then each typed column's field of `obj`; the fields
    /// left over (no column, or a value of another type) become the `rest` column's JSON,
    /// or `rest_json` when given.
    pub fn row(
        &mut self,
        host: &str,
        kernel: &str,
        obj: &Map<String, Value>,
        rest_json: Option<String>,
    ) -> std::io::Result<()> {
        let n = self.cols.len();
        let mut left = Map::new();
        let (fixed, typed) = self.cols.split_at_mut(2);
        fixed[0].push(Some(&Value::String(host.into())));
        fixed[1].push(Some(&Value::String(kernel.into())));
        for c in &mut typed[..n - 3] {
            let v = obj.get(&c.name);
            if !c.push(v) {
                if let Some(v) = v {
                    left.insert(c.name.clone(), v.clone());
                }
            }
        }
        for (k, v) in obj {
            if !typed[..n - 3].iter().any(|c| &c.name == k) {
                left.insert(k.clone(), v.clone());
            }
        }
        let rest = match rest_json {
            Some(j) => Some(Value::String(j)),
            None if left.is_empty() => None,
            None => Some(Value::String(Value::Object(left).to_string())),
        };
        typed[n - 3].push(rest.as_ref());
        self.rows += 1;
        if self.rows >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut rg = self.writer.next_row_group().map_err(err)?;
        for c in &mut self.cols {
            let Some(mut w) = rg.next_column().map_err(err)? else {
                return Err(std::io::Error::other(format!("no column for {}", c.name)));
            };
            let def = Some(c.defined.as_slice());
            match &c.values {
                Values::Int(v) => w.typed::<Int64Type>().write_batch(v, def, None),
                Values::Float(v) => w.typed::<DoubleType>().write_batch(v, def, None),
                Values::Str(v) => w.typed::<ByteArrayType>().write_batch(v, def, None),
            }
            .map_err(err)?;
            w.close().map_err(err)?;
            c.clear();
        }
        rg.close().map_err(err)?;
        self.rows = 0;
        Ok(())
    }

    /// Writes what is buffered and the footer; returns the sink.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush()?;
        self.writer.into_inner().map_err(err)
    }
}

#[cfg(test)]
mod tests;
