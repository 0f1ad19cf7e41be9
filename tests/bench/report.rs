//! Collected figures, medians, and the Markdown and JSON reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

/// Linear-interpolated percentile of sorted values.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let x = (sorted.len() - 1) as f64 * p / 100.0;
    let lo = x.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo as f64)
}

pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    pct(&v, 50.0)
}

/// Percentiles of latencies given in ns, returned in µs.
pub fn lat_us(ns: &[u64], p: f64) -> f64 {
    let mut v: Vec<f64> = ns.iter().map(|&x| x as f64 / 1e3).collect();
    v.sort_by(f64::total_cmp);
    pct(&v, p)
}

/// Every figure: (group, system, metric) -> one value per repetition.
#[derive(Default)]
pub struct Results {
    pub values: BTreeMap<(String, String, String), Vec<f64>>,
}

impl Results {
    pub fn add(&mut self, group: &str, system: &str, metric: &str, v: f64) {
        self.values
            .entry((group.into(), system.into(), metric.into()))
            .or_default()
            .push(v);
    }

    pub fn get(&self, group: &str, system: &str, metric: &str) -> Option<f64> {
        let v = self
            .values
            .get(&(group.to_string(), system.to_string(), metric.to_string()))?;
        let m = median(v);
        m.is_finite().then_some(m)
    }

    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .values
            .iter()
            .map(|((g, s, m), v)| {
                let med = median(v);
                json!({"group": g, "system": s, "metric": m, "reps": v,
                       "median": if med.is_finite() { json!(med) } else { Value::Null }})
            })
            .collect();
        Value::Array(rows)
    }
}

/// Formats a number with a sensible number of digits.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if !v.is_finite() => "-".into(),
        Some(v) if v.abs() >= 1000.0 => {
            let s = format!("{:.0}", v);
            // thousands separators for readability
            let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            format!("{sign}{out}")
        }
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

pub fn ratio(v: Option<f64>, base: Option<f64>) -> String {
    match (v, base) {
        (Some(v), Some(b)) if b != 0.0 && v.is_finite() && b.is_finite() => {
            format!("{:.2}x", v / b)
        }
        _ => "-".into(),
    }
}

/// A Markdown table.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| {} |", self.header.join(" | "));
        let aligns: Vec<&str> = self
            .header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(s, "|{}|", aligns.join("|"));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}
