//! The benchmark table: one measured figure per row with its target, as printed and as
//! written to `target/bench/latest.json` (typed both ways: the VM's benchmark writes rows the
//! host reads back).

use std::{borrow::Cow, fs};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One measured figure and its target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) name: String,
    /// NaN when it could not be measured (`null` in JSON).
    #[serde(deserialize_with = "nan_if_null", default = "nan")]
    pub(crate) value: f64,
    #[serde(default)]
    pub(crate) unit: Cow<'static, str>,
    /// (comparison, bound): "<" or ">"; written as `"< 8"`.
    #[serde(with = "target", default)]
    pub(crate) target: Option<(&'static str, f64)>,
    #[serde(default)]
    pub(crate) note: String,
}

fn nan() -> f64 {
    f64::NAN
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

mod target {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<(&'static str, f64)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some((op, b)) => s.serialize_some(&format!("{op} {b}")),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(&'static str, f64)>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let (op, b) = text
            .split_once(' ')
            .ok_or_else(|| D::Error::custom("target without bound"))?;
        let op = match op {
            "<" => "<",
            ">" => ">",
            _ => return Err(D::Error::custom(format!("unknown target relation {op:?}"))),
        };
        let b = b
            .parse::<f64>()
            .map_err(|e| D::Error::custom(format!("target bound: {e}")))?;
        Ok(Some((op, b)))
    }
}

impl Row {
    /// `ok`, `MISSED`, or empty without a target.
    pub(crate) fn verdict(&self) -> &'static str {
        match self.target {
            None => "",
            Some(("<", b)) if self.value < b => "ok",
            Some((">", b)) if self.value > b => "ok",
            Some(_) => "MISSED",
        }
    }
}

/// A row as `latest.json` carries it: with its verdict.
struct Judged<'a>(&'a Row);

impl Serialize for Judged<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            row: &'a Row,
            verdict: &'static str,
        }
        Out {
            row: self.0,
            verdict: self.0.verdict(),
        }
        .serialize(s)
    }
}

/// The machine the figures were measured on.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cpus: usize,
    pub(crate) mem_gib: u64,
    pub(crate) kernel: String,
    pub(crate) virtualised: bool,
}

impl Machine {
    /// This machine, from /proc.
    pub(crate) fn this() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mem_kib = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        Self {
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
                .unwrap_or_default(),
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            mem_gib: mem_kib / (1 << 20),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            virtualised: cpuinfo.contains(" hypervisor"),
        }
    }
}

/// `target/bench/latest.json`.
pub(crate) fn latest_json(
    machine: &Machine,
    quick: bool,
    rows: &[Row],
) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Latest<'a> {
        machine: &'a Machine,
        quick: bool,
        results: Vec<Judged<'a>>,
    }
    serde_json::to_string_pretty(&Latest {
        machine,
        quick,
        results: rows.iter().map(Judged).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_as_written() {
        let rows = vec![
            Row {
                name: "added per migrated page: cxl-trace record".into(),
                value: 3731.5,
                unit: "ns/migrated page".into(),
                target: Some(("<", 3630.7)),
                note: "+23.5% of the run time".into(),
            },
            Row {
                name: "no tracer".into(),
                value: 1041.6,
                unit: "ms".into(),
                target: None,
                note: String::new(),
            },
        ];
        let text = latest_json(&Machine::this(), true, &rows).expect("json");
        #[derive(Deserialize)]
        struct Back {
            results: Vec<Row>,
        }
        let back: Back = serde_json::from_str(&text).expect("read back");
        assert_eq!(back.results, rows);
        assert!(text.contains("\"verdict\": \"MISSED\""), "{text}");
        let bad = |s: &str| serde_json::from_str::<Row>(s).is_err();
        assert!(bad(r#"{"name": "x", "target": "~ 3"}"#));
        assert!(bad(r#"{"value": 1.0}"#));
        let nan: Row = serde_json::from_str(r#"{"name": "x", "value": null}"#).expect("null");
        assert!(nan.value.is_nan());
    }
}
