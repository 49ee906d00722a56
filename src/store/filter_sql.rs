//! Compiles object filters, sorts and keyset cursors to SQL over the JSON `doc` column.
//!
//! The same [`Filter`] gives the same rows on PostgreSQL (`doc JSONB`) and SQLite (`doc TEXT`
//! holding JSON), and the same order for the same [`Sort`]. The rules both dialects follow:
//!
//! - A dotted field addresses nested object keys only; a segment never indexes an array, and a
//!   path through a non-object is missing.
//! - Values compare only within their JSON type: numbers numerically (`1 == 1.0`), strings by
//!   code point, booleans as booleans. A type mismatch is "no match", never an SQL error.
//! - Every condition yields TRUE or FALSE, never SQL NULL, so `NOT`, `ne` and `nin` keep rows
//!   whose field is missing.
//! - `case_sensitive: false` folds ASCII letters (A–Z) on both sides before comparing, the
//!   only folding SQLite's `lower()` does; PostgreSQL is made to match by applying `lower()`
//!   under `COLLATE "C"`. `regex` instead uses each engine's own case-insensitive mode.
//! - Sorting ranks values by JSON type (numbers, strings, booleans, arrays, objects, then
//!   missing or null), orders numbers, strings and booleans by value within their rank, and
//!   breaks ties by `seq` in the same direction. Descending reverses the whole order, so
//!   missing and null come last ascending and first descending.
//!
//! Placeholders are `$N` in both dialects, numbered from the caller's counter. The SQL text
//! alone decides each placeholder's type (numbers bind as text on PostgreSQL for that reason),
//! so sqlx's per-connection statement cache, keyed by text, can never pair a cached statement
//! with binds of another type. Field names are inlined as SQL string literals (escaped, and
//! [`Filter::parse`] only lets `[A-Za-z0-9_.]` through), which keeps [`order_by`] bind-free.
//!
//! Caller requirements:
//! - Columns: PostgreSQL `doc JSONB`; SQLite `doc TEXT` holding valid JSON (SQLite's JSON
//!   functions raise on a malformed document, so one bad row would fail every filtered listing:
//!   a `CHECK (json_valid(doc))` is worth having). `seq` is a unique `BIGINT` in both.
//! - SQLite connections need the `regexp` function: `SqliteConnectOptions::with_regexp()`
//!   (sqlx's `regexp` feature); without it a `regex` filter fails with "no such function".
//! - Bind each [`SqlValue`] in order: `Text` as `String`, `Int` as `i64`, `Float` as `f64`,
//!   `Bool` as `bool`, and `Json` as `sqlx::types::Json(value)` (JSONB on PostgreSQL, TEXT on
//!   SQLite) or as `value.to_string()`; the SQL casts it where the type matters.
//! - The `doc` and `seq` expressions should be qualified (`o.doc`) or at least not be named like
//!   a column of `json_each` (`key`, `value`, `type`, `atom`, `id`, `parent`, `fullkey`, `path`,
//!   `json`, `root`), since array tests read elements through a sub-select.
//! - A pattern the database's regex engine rejects fails the query: PostgreSQL SQLSTATE `2201B`,
//!   SQLite extended code `1043` (`SQLITE_CONSTRAINT_FUNCTION`). Answer it with a 400.
//!
//! Limitation: `regex` runs PostgreSQL's ARE engine on one side and Rust's `regex` crate on the
//! other. Common syntax (classes, anchors, alternation, repetition) agrees; backreferences and
//! lookaround exist only in PostgreSQL and fail on SQLite.
//!
//! Limitation: the expressions are not shaped for indexes, so a filter or sort reads every row
//! that the caller's other conditions (such as the bucket) leave; a very large bucket needs
//! expression indexes matched to these expressions.

use serde_json::{Map, Number, Value};

use crate::model::filter::{Condition, Filter, Operator, Sort};

/// The SQL flavour to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL with `doc JSONB`.
    Postgres,
    /// SQLite with `doc TEXT` holding JSON.
    Sqlite,
}

/// A value to bind to the next placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// Bind as a string.
    Text(String),
    /// Bind as a 64-bit integer.
    Int(i64),
    /// Bind as a double.
    Float(f64),
    /// Bind as a boolean. Not produced by this module today; kept so binders stay total.
    Bool(bool),
    /// Bind as JSON: `sqlx::types::Json(value)`, or `value.to_string()` as text.
    Json(Value),
}

/// A boolean SQL expression and the values for its placeholders, in placeholder order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlFragment {
    /// The expression, parenthesized so it can be ANDed into a larger WHERE clause.
    pub sql: String,
    /// Values for `$start`, `$start + 1`, ... where `start` was `*next_bind` on entry.
    pub binds: Vec<SqlValue>,
}

/// A keyset position: the last row of the previous page.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// The `seq` of that row.
    pub seq: i64,
    /// Its sort key as [`sort_key`] gave it (JSON null when the field was missing); `None`
    /// when the listing is unsorted.
    pub value: Option<Value>,
}

/// Compiles `filter` to a WHERE expression over the JSON column `doc`.
///
/// Placeholders start at `*next_bind`, which is advanced past the last one used. Operators
/// that [`Filter::parse`] refuses (search and geo) and operands of the wrong shape compile to
/// `FALSE`, so a hand-built filter can never produce invalid SQL.
pub fn compile_filter(
    filter: &Filter,
    dialect: Dialect,
    doc: &str,
    next_bind: &mut usize,
) -> SqlFragment {
    let mut compiler = Compiler { dialect, doc, binds: Binds::new(dialect, next_bind) };
    let sql = compiler.filter(filter);
    SqlFragment { sql, binds: compiler.binds.values }
}

/// The ORDER BY list (without the `ORDER BY` keyword) for `sort`, ending with `seq`.
///
/// Without a sort the order is `seq ASC`, i.e. creation order.
pub fn order_by(sort: Option<&Sort>, dialect: Dialect, doc: &str, seq: &str) -> String {
    let Some(sort) = sort else {
        return format!("{seq} ASC");
    };
    let dir = if sort.descending { "DESC" } else { "ASC" };
    let json = Json::field(dialect, doc, &sort.field);
    format!(
        "{} {dir}, {} {dir}, {} {dir}, {seq} {dir}",
        json.rank(),
        json.sort_number(),
        json.text()
    )
}

/// The value to store in a [`Cursor`] for the row `doc`, or `None` when unsorted.
///
/// Arrays and objects sort by type alone, so they are reduced to `[]` and `{}` to keep
/// cursors small.
pub fn sort_key(sort: Option<&Sort>, doc: &Value) -> Option<Value> {
    let sort = sort?;
    let value = lookup(doc, &sort.field);
    Some(match value {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(_)) => Value::Array(Vec::new()),
        Some(Value::Object(_)) => Value::Object(Map::new()),
        Some(scalar) => scalar.clone(),
    })
}

/// The condition for rows strictly after `cursor` in the order of [`order_by`].
///
/// `cursor.value` may come back from a client, so any JSON is handled: it is ranked and
/// compared by the same rules as the column.
pub fn keyset_after(
    sort: Option<&Sort>,
    cursor: &Cursor,
    dialect: Dialect,
    doc: &str,
    seq: &str,
    next_bind: &mut usize,
) -> SqlFragment {
    let mut binds = Binds::new(dialect, next_bind);
    let seq_bind = binds.push(SqlValue::Int(cursor.seq));
    let Some(sort) = sort else {
        return SqlFragment { sql: format!("({seq} > {seq_bind})"), binds: binds.values };
    };

    let cmp = if sort.descending { "<" } else { ">" };
    let json = Json::field(dialect, doc, &sort.field);
    let value = cursor.value.as_ref().unwrap_or(&Value::Null);
    let tie = format!("{seq} {cmp} {seq_bind}");

    // Within the cursor's rank, only the key column of that rank varies between rows.
    let within_rank = match value {
        Value::Number(n) => keyed(&json.sort_number(), &binds.number(n), cmp, &tie),
        Value::Bool(b) => keyed(&json.sort_number(), if *b { "1" } else { "0" }, cmp, &tie),
        Value::String(s) => keyed(&json.text(), &binds.text(s.clone()), cmp, &tie),
        _ => tie,
    };
    let rank = json.rank();
    let cursor_rank = rank_of(value);
    let sql =
        format!("(({rank} {cmp} {cursor_rank}) OR ({rank} = {cursor_rank} AND {within_rank}))");
    SqlFragment { sql, binds: binds.values }
}

/// `key` past `bound`, or equal to it and past on `seq`.
fn keyed(key: &str, bound: &str, cmp: &str, tie: &str) -> String {
    format!("(({key} {cmp} {bound}) OR ({key} = {bound} AND {tie}))")
}

/// The sort rank of a JSON value; must agree with [`Json::rank`].
fn rank_of(v: &Value) -> u8 {
    match v {
        Value::Number(_) => 0,
        Value::String(_) => 1,
        Value::Bool(_) => 2,
        Value::Array(_) => 3,
        Value::Object(_) => 4,
        Value::Null => 5,
    }
}

/// Follows a dotted path through nested objects, as the SQL does.
fn lookup<'v>(doc: &'v Value, field: &str) -> Option<&'v Value> {
    field.split('.').try_fold(doc, |v, key| v.as_object()?.get(key))
}

/// Collects bind values and hands out their placeholders.
struct Binds<'n> {
    dialect: Dialect,
    next: &'n mut usize,
    values: Vec<SqlValue>,
}

impl<'n> Binds<'n> {
    fn new(dialect: Dialect, next: &'n mut usize) -> Self {
        Self { dialect, next, values: Vec::new() }
    }

    fn push(&mut self, value: SqlValue) -> String {
        let placeholder = format!("${}", *self.next);
        *self.next += 1;
        self.values.push(value);
        placeholder
    }

    fn text(&mut self, s: String) -> String {
        self.push(SqlValue::Text(s))
    }

    /// A numeric operand, typed so it compares exactly with the column's numbers.
    fn number(&mut self, n: &Number) -> String {
        match (self.dialect, n.as_i64()) {
            // Always text on PostgreSQL: the decimal converts to numeric exactly (a float8 bind
            // would round to 15 digits), and one SQL text must always mean one parameter type,
            // because sqlx caches the prepared statement by its text.
            (Dialect::Postgres, _) => {
                format!("CAST({} AS numeric)", self.push(SqlValue::Text(n.to_string())))
            }
            (Dialect::Sqlite, Some(i)) => self.push(SqlValue::Int(i)),
            (Dialect::Sqlite, None) => self.push(SqlValue::Float(n.as_f64().unwrap_or(f64::NAN))),
        }
    }

    /// A JSON array operand; PostgreSQL gets an explicit cast so a text bind works too.
    fn json_array(&mut self, items: Vec<Value>) -> String {
        let placeholder = self.push(SqlValue::Json(Value::Array(items)));
        match self.dialect {
            Dialect::Postgres => format!("CAST({placeholder} AS jsonb)"),
            Dialect::Sqlite => placeholder,
        }
    }
}

/// Where a LIKE-style test anchors its operand.
#[derive(Clone, Copy)]
enum Anchor {
    Anywhere,
    Start,
    End,
}

/// JSON value kinds a condition tests for.
#[derive(Clone, Copy)]
enum Kind {
    String,
    Number,
    True,
    False,
    Array,
}

/// SQL expressions for one JSON value: a document field or an array element.
///
/// `kind` is the engine's type name for the value (SQL NULL when missing); `value` is the
/// value itself (PostgreSQL: jsonb; SQLite: the SQL value `json_extract` gives).
struct Json {
    dialect: Dialect,
    kind: String,
    value: String,
}

impl Json {
    fn field(dialect: Dialect, doc: &str, field: &str) -> Self {
        let keys = field.split('.');
        match dialect {
            Dialect::Postgres => {
                let chain: String = keys.map(|k| format!(" -> {}", sql_literal(k))).collect();
                let value = format!("({doc}{chain})");
                Self { dialect, kind: format!("jsonb_typeof({value})"), value }
            }
            Dialect::Sqlite => {
                let path: String = keys.map(|k| format!(".\"{k}\"")).collect();
                let path = sql_literal(&format!("${path}"));
                let kind = format!("json_type({doc}, {path})");
                Self { dialect, kind, value: format!("json_extract({doc}, {path})") }
            }
        }
    }

    /// An element produced by [`Json::elements`] under `alias`.
    fn element(dialect: Dialect, alias: &str) -> Self {
        match dialect {
            Dialect::Postgres => {
                let value = format!("{alias}.v");
                Self { dialect, kind: format!("jsonb_typeof({value})"), value }
            }
            Dialect::Sqlite => {
                Self { dialect, kind: format!("{alias}.type"), value: format!("{alias}.value") }
            }
        }
    }

    /// A FROM item listing the elements of this value when it is an array, else no rows.
    ///
    /// The CASE keeps PostgreSQL from ever calling `jsonb_array_elements` on a scalar (an
    /// error) and SQLite from walking an object's members as if they were elements.
    fn elements(&self, alias: &str) -> String {
        let (array, value) = (self.is(Kind::Array), &self.value);
        match self.dialect {
            Dialect::Postgres => format!(
                "jsonb_array_elements(CASE WHEN {array} THEN {value} ELSE '[]'::jsonb END) \
                 AS {alias}(v)"
            ),
            Dialect::Sqlite => {
                format!("json_each(CASE WHEN {array} THEN {value} ELSE '[]' END) AS {alias}")
            }
        }
    }

    fn is(&self, kind: Kind) -> String {
        let k = &self.kind;
        match (self.dialect, kind) {
            (Dialect::Postgres, Kind::String) => format!("({k} = 'string')"),
            (Dialect::Postgres, Kind::Number) => format!("({k} = 'number')"),
            (Dialect::Postgres, Kind::True) => format!("({} = 'true'::jsonb)", self.value),
            (Dialect::Postgres, Kind::False) => format!("({} = 'false'::jsonb)", self.value),
            (Dialect::Sqlite, Kind::String) => format!("({k} = 'text')"),
            (Dialect::Sqlite, Kind::Number) => format!("({k} IN ('integer', 'real'))"),
            (Dialect::Sqlite, Kind::True) => format!("({k} = 'true')"),
            (Dialect::Sqlite, Kind::False) => format!("({k} = 'false')"),
            (_, Kind::Array) => format!("({k} = 'array')"),
        }
    }

    fn present(&self) -> String {
        format!("({} IS NOT NULL)", self.kind)
    }

    fn missing_or_null(&self) -> String {
        format!("(COALESCE({}, 'null') = 'null')", self.kind)
    }

    /// The number, or NULL for anything else.
    fn number(&self) -> String {
        format!("(CASE WHEN {} THEN {} END)", self.is(Kind::Number), self.numeric())
    }

    /// The value as a number, valid only under a number test. The test must guard it through
    /// CASE: PostgreSQL raises on casting a non-number and does not promise AND's order.
    fn numeric(&self) -> String {
        match self.dialect {
            Dialect::Postgres => format!("CAST({} AS numeric)", self.value),
            Dialect::Sqlite => self.value.clone(),
        }
    }

    /// The string in code-point order, or NULL for anything else.
    fn text(&self) -> String {
        match self.dialect {
            Dialect::Postgres => format!("({} COLLATE \"C\")", self.text_default_collation()),
            Dialect::Sqlite => {
                format!("(CASE WHEN {} THEN {} END)", self.is(Kind::String), self.value)
            }
        }
    }

    /// PostgreSQL's string under the database collation, for regex: under "C" its classes and
    /// case folding would stop at ASCII, unlike the Rust engine SQLite uses.
    fn text_default_collation(&self) -> String {
        format!("(CASE WHEN {} THEN {} #>> '{{}}' END)", self.is(Kind::String), self.value)
    }

    /// Numbers by value and booleans as 0/1; NULL for other types, which rank apart anyway.
    fn sort_number(&self) -> String {
        let (number, yes, no) = (self.is(Kind::Number), self.is(Kind::True), self.is(Kind::False));
        format!(
            "(CASE WHEN {number} THEN {} WHEN {yes} THEN 1 WHEN {no} THEN 0 END)",
            self.numeric()
        )
    }

    /// The type rank of [`rank_of`], computed in SQL.
    fn rank(&self) -> String {
        let names: &[(&str, u8)] = match self.dialect {
            Dialect::Postgres => {
                &[("number", 0), ("string", 1), ("boolean", 2), ("array", 3), ("object", 4)]
            }
            Dialect::Sqlite => &[
                ("integer", 0),
                ("real", 0),
                ("text", 1),
                ("true", 2),
                ("false", 2),
                ("array", 3),
                ("object", 4),
            ],
        };
        let arms: String =
            names.iter().map(|(name, rank)| format!(" WHEN '{name}' THEN {rank}")).collect();
        format!("(CASE {}{arms} ELSE 5 END)", self.kind)
    }
}

/// Turns a filter tree into SQL, collecting binds as it goes.
struct Compiler<'a, 'n> {
    dialect: Dialect,
    doc: &'a str,
    binds: Binds<'n>,
}

impl Compiler<'_, '_> {
    fn filter(&mut self, filter: &Filter) -> String {
        match filter {
            Filter::And(items) => self.join(items, "AND", "TRUE"),
            Filter::Or(items) => self.join(items, "OR", "FALSE"),
            Filter::Not(items) => format!("(NOT {})", self.join(items, "OR", "FALSE")),
            // COALESCE turns "unknown" into "no match", so an enclosing NOT keeps such rows.
            Filter::Condition(c) => format!("COALESCE({}, FALSE)", self.condition(c)),
        }
    }

    fn join(&mut self, items: &[Filter], op: &str, empty: &str) -> String {
        if items.is_empty() {
            return empty.to_owned();
        }
        let parts: Vec<String> = items.iter().map(|f| self.filter(f)).collect();
        format!("({})", parts.join(&format!(" {op} ")))
    }

    fn condition(&mut self, c: &Condition) -> String {
        let json = Json::field(self.dialect, self.doc, &c.field);
        let (value, cs) = (&c.value, c.case_sensitive);
        match c.operator {
            Operator::Eq => self.equals(&json, value, cs),
            Operator::Ne => negate(&self.equals(&json, value, cs)),
            Operator::Gt => self.compare(&json, ">", value),
            Operator::Lt => self.compare(&json, "<", value),
            Operator::Gte => self.compare(&json, ">=", value),
            Operator::Lte => self.compare(&json, "<=", value),
            Operator::In => self.one_of(&json, value, cs),
            Operator::Nin => negate(&self.one_of(&json, value, cs)),
            Operator::Contains => self.contains(&json, value, cs),
            Operator::StartsWith => self.affix(&json, value, cs, Anchor::Start),
            Operator::EndsWith => self.affix(&json, value, cs, Anchor::End),
            Operator::Regex => self.regex(&json, value, cs),
            Operator::Exists if value == &Value::Bool(false) => negate(&json.present()),
            Operator::Exists => json.present(),
            Operator::IsNull if value == &Value::Bool(false) => negate(&json.missing_or_null()),
            Operator::IsNull => json.missing_or_null(),
            _ => "FALSE".to_owned(),
        }
    }

    fn equals(&mut self, json: &Json, value: &Value, case_sensitive: bool) -> String {
        match value {
            Value::Null => json.missing_or_null(),
            Value::Bool(true) => json.is(Kind::True),
            Value::Bool(false) => json.is(Kind::False),
            Value::Number(n) => format!("({} = {})", json.number(), self.binds.number(n)),
            Value::String(s) if case_sensitive => {
                format!("({} = {})", json.text(), self.binds.text(s.clone()))
            }
            Value::String(s) => {
                let folded = self.binds.text(s.to_ascii_lowercase());
                format!("(lower({}) = {folded})", json.text())
            }
            Value::Array(_) | Value::Object(_) => "FALSE".to_owned(),
        }
    }

    /// gt/lt/gte/lte: only values of the operand's JSON type can match.
    fn compare(&mut self, json: &Json, op: &str, value: &Value) -> String {
        match value {
            Value::Number(n) => format!("({} {op} {})", json.number(), self.binds.number(n)),
            Value::String(s) => format!("({} {op} {})", json.text(), self.binds.text(s.clone())),
            _ => "FALSE".to_owned(),
        }
    }

    /// `in`: strings and numbers go in one JSON-array bind each, so a 1000-item list costs two
    /// placeholders, not a thousand.
    fn one_of(&mut self, json: &Json, value: &Value, case_sensitive: bool) -> String {
        let Some(items) = value.as_array() else {
            return "FALSE".to_owned();
        };
        let (mut strings, mut numbers, mut tests) = (Vec::new(), Vec::new(), Vec::new());
        for item in items {
            match item {
                Value::String(s) if case_sensitive => strings.push(Value::String(s.clone())),
                Value::String(s) => strings.push(Value::String(s.to_ascii_lowercase())),
                Value::Number(_) => numbers.push(item.clone()),
                other => {
                    let test = self.equals(json, other, case_sensitive);
                    if !tests.contains(&test) {
                        tests.push(test);
                    }
                }
            }
        }

        if !strings.is_empty() {
            let column =
                if case_sensitive { json.text() } else { format!("lower({})", json.text()) };
            tests.push(self.in_array(&column, strings, false));
        }
        if !numbers.is_empty() {
            tests.push(self.in_array(&json.number(), numbers, true));
        }

        match tests.len() {
            0 => "FALSE".to_owned(),
            _ => format!("({})", tests.join(" OR ")),
        }
    }

    /// `column IN (elements of a bound JSON array)`.
    fn in_array(&mut self, column: &str, items: Vec<Value>, numeric: bool) -> String {
        let array = self.binds.json_array(items);
        let elements = match (self.dialect, numeric) {
            (Dialect::Postgres, false) => {
                format!("SELECT e FROM jsonb_array_elements_text({array}) AS e")
            }
            (Dialect::Postgres, true) => {
                format!("SELECT CAST(e AS numeric) FROM jsonb_array_elements_text({array}) AS e")
            }
            (Dialect::Sqlite, _) => format!("SELECT value FROM json_each({array})"),
        };
        format!("({column} IN ({elements}))")
    }

    /// `contains`: a string operand matches a substring of a string field or an equal element
    /// of an array field; any other scalar matches an equal array element.
    fn contains(&mut self, json: &Json, value: &Value, case_sensitive: bool) -> String {
        let has_element = self.has_element(json, value, case_sensitive);
        match value {
            Value::String(_) => {
                let substring = self.affix(json, value, case_sensitive, Anchor::Anywhere);
                format!("({substring} OR {has_element})")
            }
            _ => has_element,
        }
    }

    fn has_element(&mut self, json: &Json, value: &Value, case_sensitive: bool) -> String {
        const ALIAS: &str = "sluice_elem";
        let element = Json::element(self.dialect, ALIAS);
        let test = self.equals(&element, value, case_sensitive);
        format!("EXISTS (SELECT 1 FROM {} WHERE {test})", json.elements(ALIAS))
    }

    /// starts_with / ends_with / substring. Case-sensitive SQLite uses GLOB because its LIKE
    /// ignores ASCII case whatever the pattern says.
    fn affix(
        &mut self,
        json: &Json,
        value: &Value,
        case_sensitive: bool,
        anchor: Anchor,
    ) -> String {
        let Some(s) = value.as_str() else {
            return "FALSE".to_owned();
        };
        let text = json.text();
        match (self.dialect, case_sensitive) {
            (Dialect::Sqlite, true) => {
                let pattern = self.binds.text(wrap(&glob_escape(s), anchor, "*"));
                format!("({text} GLOB {pattern})")
            }
            (_, true) => {
                let pattern = self.binds.text(wrap(&like_escape(s), anchor, "%"));
                format!("({text} LIKE {pattern} ESCAPE {})", self.backslash())
            }
            (_, false) => {
                let folded = like_escape(&s.to_ascii_lowercase());
                let pattern = self.binds.text(wrap(&folded, anchor, "%"));
                format!("(lower({text}) LIKE {pattern} ESCAPE {})", self.backslash())
            }
        }
    }

    /// A one-backslash literal. PostgreSQL's E'' form does not depend on
    /// `standard_conforming_strings`.
    fn backslash(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => r"E'\\'",
            Dialect::Sqlite => r"'\'",
        }
    }

    fn regex(&mut self, json: &Json, value: &Value, case_sensitive: bool) -> String {
        let Some(pattern) = value.as_str() else {
            return "FALSE".to_owned();
        };
        match self.dialect {
            Dialect::Postgres => {
                let op = if case_sensitive { "~" } else { "~*" };
                let p = self.binds.text(pattern.to_owned());
                format!("({} {op} {p})", json.text_default_collation())
            }
            Dialect::Sqlite => {
                let flags = if case_sensitive { "" } else { "(?i)" };
                let p = self.binds.text(format!("{flags}{pattern}"));
                format!("({} REGEXP {p})", json.text())
            }
        }
    }
}

fn negate(condition: &str) -> String {
    format!("(NOT COALESCE({condition}, FALSE))")
}

fn wrap(escaped: &str, anchor: Anchor, any: &str) -> String {
    match anchor {
        Anchor::Anywhere => format!("{any}{escaped}{any}"),
        Anchor::Start => format!("{escaped}{any}"),
        Anchor::End => format!("{any}{escaped}"),
    }
}

/// Escapes LIKE's wildcards with backslash, the escape character the SQL declares.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// GLOB has no escape character; a special character is matched literally inside brackets.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(ch);
                out.push(']');
            }
            _ => out.push(ch),
        }
    }
    out
}

/// A single-quoted SQL string literal.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(filter: Value, dialect: Dialect) -> (SqlFragment, usize) {
        let parsed = Filter::parse(&filter, "filters");
        let Ok(Some(filter)) = parsed else { panic!("{parsed:?}") };
        let mut next = 3;
        let fragment = compile_filter(&filter, dialect, "o.doc", &mut next);
        (fragment, next)
    }

    #[test]
    fn placeholders_start_at_the_counter_and_advance() {
        for dialect in [Dialect::Postgres, Dialect::Sqlite] {
            let (f, next) = compile(json!({"AND": [{"a": "x"}, {"b": 2}]}), dialect);
            assert_eq!(next, 5);
            let two = match dialect {
                Dialect::Postgres => SqlValue::Text("2".into()),
                Dialect::Sqlite => SqlValue::Int(2),
            };
            assert_eq!(f.binds, vec![SqlValue::Text("x".into()), two]);
            assert!(f.sql.contains("$3") && f.sql.contains("$4") && !f.sql.contains("$5"));
        }
    }

    #[test]
    fn postgres_numbers_keep_their_digits() {
        let (f, _) = compile(json!({"a": 0.30000000000000004}), Dialect::Postgres);
        assert_eq!(f.binds, vec![SqlValue::Text("0.30000000000000004".into())]);
        let (f, _) = compile(json!({"a": 0.5}), Dialect::Sqlite);
        assert_eq!(f.binds, vec![SqlValue::Float(0.5)]);
    }

    #[test]
    fn paths_address_nested_keys() {
        let pg = Json::field(Dialect::Postgres, "doc", "metadata.title");
        assert_eq!(pg.value, "(doc -> 'metadata' -> 'title')");
        let lite = Json::field(Dialect::Sqlite, "doc", "metadata.title");
        assert_eq!(lite.value, "json_extract(doc, '$.\"metadata\".\"title\"')");
    }

    #[test]
    fn hand_built_fields_cannot_break_out_of_the_literal() {
        let pg = Json::field(Dialect::Postgres, "doc", "a'b");
        assert_eq!(pg.value, "(doc -> 'a''b')");
        let lite = Json::field(Dialect::Sqlite, "doc", "a'b");
        assert_eq!(lite.value, "json_extract(doc, '$.\"a''b\"')");
    }

    #[test]
    fn in_lists_use_one_bind_per_type() {
        let items: Vec<Value> = (0..1000).map(|i| json!(format!("s{i}"))).collect();
        let (f, next) =
            compile(json!({"field": "a", "operator": "in", "value": items}), Dialect::Postgres);
        assert_eq!((f.binds.len(), next), (1, 4));
        let (f, _) = compile(
            json!({"field": "a", "operator": "in", "value": ["A", 1, true, null]}),
            Dialect::Sqlite,
        );
        assert_eq!(f.binds, vec![SqlValue::Json(json!(["A"])), SqlValue::Json(json!([1]))]);
    }

    #[test]
    fn case_folding_happens_on_the_operand_too() {
        let filter = json!({"case_sensitive": false, "AND": [
            {"field": "a", "operator": "starts_with", "value": "AB%_\\"},
            {"field": "a", "operator": "regex", "value": "^X"}
        ]});
        let (pg, _) = compile(filter.clone(), Dialect::Postgres);
        assert_eq!(
            pg.binds,
            vec![SqlValue::Text("ab\\%\\_\\\\%".into()), SqlValue::Text("^X".into())]
        );
        assert!(pg.sql.contains("~*"));
        let (lite, _) = compile(filter, Dialect::Sqlite);
        assert_eq!(lite.binds[1], SqlValue::Text("(?i)^X".into()));
    }

    #[test]
    fn glob_and_like_escaping() {
        assert_eq!(like_escape(r"5%_\x"), r"5\%\_\\x");
        assert_eq!(glob_escape("a*b?c[d]"), "a[*]b[?]c[[]d]");
    }

    #[test]
    fn unsupported_shapes_compile_to_false() {
        let cond = |operator, value| {
            Filter::Condition(Condition {
                field: "a".into(),
                operator,
                value,
                case_sensitive: true,
            })
        };
        for (op, v) in [
            (Operator::Text, json!("x")),
            (Operator::Eq, json!([1])),
            (Operator::Gt, json!(true)),
            (Operator::In, json!("x")),
            (Operator::Regex, json!(1)),
        ] {
            let mut next = 1;
            let f = compile_filter(&cond(op, v), Dialect::Postgres, "doc", &mut next);
            assert_eq!(f.sql, "COALESCE(FALSE, FALSE)");
            assert_eq!(next, 1);
        }
    }

    #[test]
    fn empty_groups_built_by_hand() {
        let mut next = 1;
        let sql =
            |f: Filter, next: &mut usize| compile_filter(&f, Dialect::Sqlite, "doc", next).sql;
        assert_eq!(sql(Filter::And(vec![]), &mut next), "TRUE");
        assert_eq!(sql(Filter::Or(vec![]), &mut next), "FALSE");
        assert_eq!(sql(Filter::Not(vec![]), &mut next), "(NOT FALSE)");
    }

    #[test]
    fn sort_keys_follow_the_field() {
        let sort = Sort { field: "m.n".into(), descending: false };
        let doc = json!({"m": {"n": 3}, "tags": [1]});
        assert_eq!(sort_key(Some(&sort), &doc), Some(json!(3)));
        assert_eq!(sort_key(None, &doc), None);
        assert_eq!(
            sort_key(Some(&Sort { field: "x".into(), descending: true }), &doc),
            Some(Value::Null)
        );
        assert_eq!(
            sort_key(Some(&Sort { field: "tags".into(), descending: true }), &doc),
            Some(json!([]))
        );
        assert_eq!(
            sort_key(Some(&Sort { field: "m".into(), descending: true }), &doc),
            Some(json!({}))
        );
        assert_eq!(
            sort_key(Some(&Sort { field: "tags.0".into(), descending: true }), &doc),
            Some(Value::Null)
        );
    }

    #[test]
    fn order_by_always_ends_with_seq() {
        assert_eq!(order_by(None, Dialect::Postgres, "doc", "seq"), "seq ASC");
        let sort = Sort { field: "rank".into(), descending: true };
        let sql = order_by(Some(&sort), Dialect::Sqlite, "doc", "o.seq");
        assert!(sql.ends_with("o.seq DESC"), "{sql}");
        assert_eq!(sql.matches("DESC").count(), 4);
    }

    #[test]
    fn keyset_without_sort_is_seq() {
        let mut next = 2;
        let cursor = Cursor { seq: 7, value: None };
        let f = keyset_after(None, &cursor, Dialect::Sqlite, "doc", "seq", &mut next);
        assert_eq!(f.sql, "(seq > $2)");
        assert_eq!((f.binds, next), (vec![SqlValue::Int(7)], 3));
    }
}
