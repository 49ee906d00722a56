//! Placeholder until the filter compiler lands.
use serde_json::Value;

use crate::model::filter::{Filter, Sort};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

#[derive(Debug, Clone)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Json(Value),
}

#[derive(Debug, Clone, Default)]
pub struct SqlFragment {
    pub sql: String,
    pub binds: Vec<SqlValue>,
}

#[derive(Debug, Clone)]
pub struct Cursor {
    pub seq: i64,
    pub value: Option<Value>,
}

pub fn compile_filter(_f: &Filter, _d: Dialect, _doc: &str, _n: &mut usize) -> SqlFragment {
    SqlFragment { sql: "TRUE".into(), binds: vec![] }
}

pub fn order_by(_s: Option<&Sort>, _d: Dialect, _doc: &str, seq: &str) -> String {
    format!("{seq} ASC")
}

pub fn sort_key(_s: Option<&Sort>, _doc: &Value) -> Option<Value> {
    None
}

pub fn keyset_after(
    _s: Option<&Sort>,
    c: &Cursor,
    _d: Dialect,
    _doc: &str,
    seq: &str,
    n: &mut usize,
) -> SqlFragment {
    let sql = format!("{seq} > ${n}");
    *n += 1;
    SqlFragment { sql, binds: vec![SqlValue::Int(c.seq)] }
}
