//! Tests of the parent module.

use parquet::{
    file::reader::{FileReader, SerializedFileReader},
    record::Field,
};
use serde_json::json;

use super::*;

fn rows_of(path: &std::path::Path) -> (Vec<Vec<(String, Field)>>, Option<String>) {
    let r = SerializedFileReader::new(std::fs::File::open(path).expect("open")).expect("parquet");
    let meta = r
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "cxl_trace.header"))
        .and_then(|k| k.value.clone());
    let rows = r
        .get_row_iter(None)
        .expect("rows")
        .map(|row| {
            row.expect("a row")
                .get_column_iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect()
        })
        .collect();
    (rows, meta)
}

fn field<'a>(row: &'a [(String, Field)], name: &str) -> &'a Field {
    &row.iter().find(|(n, _)| n == name).expect(name).1
}

#[test]
fn rows_read_back_typed_with_the_rest_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.parquet");
    let file = std::fs::File::create(&path).expect("create");
    let mut t = ParquetTable::new(
        file,
        "cxl_trace",
        EVENT_COLUMNS,
        "extra",
        "{\"kernel\":\"6.18\"}",
    )
    .expect("new");
    let big = u64::MAX - 5;
    let rows = [
        json!({"ts_ns": 10, "type": "fault", "pid": 7, "address": big, "mode": "user"}),
        json!({"ts_ns": 11, "type": "migrate", "reason": "compaction", "succeeded": 3, "rc": -11}),
        // A value of another type than its column keeps its place in `extra`.
        json!({"ts_ns": 12, "type": "odd", "pid": "not a number"}),
    ];
    for r in &rows {
        t.row("host1", "6.18.0", r.as_object().expect("object"), None)
            .expect("row");
    }
    t.finish().expect("finish");
    let (got, meta) = rows_of(&path);
    assert_eq!(meta.as_deref(), Some("{\"kernel\":\"6.18\"}"));
    assert_eq!(got.len(), 3);
    assert_eq!(field(&got[0], "host"), &Field::Str("host1".into()));
    assert_eq!(field(&got[0], "address"), &Field::ULong(big));
    assert_eq!(
        field(&got[0], "extra"),
        &Field::Str("{\"mode\":\"user\"}".into())
    );
    assert_eq!(field(&got[1], "rc"), &Field::Long(-11));
    assert_eq!(field(&got[1], "reason"), &Field::Str("compaction".into()));
    assert_eq!(field(&got[1], "extra"), &Field::Null);
    assert_eq!(field(&got[2], "pid"), &Field::Null);
    assert_eq!(
        field(&got[2], "extra"),
        &Field::Str("{\"pid\":\"not a number\"}".into())
    );
}

#[test]
fn many_rows_span_row_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("i.parquet");
    let file = std::fs::File::create(&path).expect("create");
    let mut t =
        ParquetTable::new(file, "cxl_trace", INTERVAL_COLUMNS, "document", "{}").expect("new");
    let n = ROW_GROUP + 10;
    for i in 0..n {
        let row = json!({"t_s": i as f64, "faults": i});
        t.row(
            "h",
            "k",
            row.as_object().expect("object"),
            Some("{}".into()),
        )
        .expect("row");
    }
    t.finish().expect("finish");
    let r = SerializedFileReader::new(std::fs::File::open(&path).expect("open")).expect("read");
    assert_eq!(r.metadata().num_row_groups(), 2);
    assert_eq!(r.metadata().file_metadata().num_rows(), n as i64);
    let (rows, _) = rows_of(&path);
    assert_eq!(field(&rows[n - 1], "faults"), &Field::ULong((n - 1) as u64));
    assert_eq!(field(&rows[n - 1], "t_s"), &Field::Double((n - 1) as f64));
}
