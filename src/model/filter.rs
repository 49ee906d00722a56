//! Object filters and sort options, as `ListObjectsRequest` carries them.
//!
//! The wire shape is Mixpeek's `LogicalOperatorInput`: an object whose `AND`, `OR` and `NOT`
//! keys hold lists of conditions (`{field, operator, value, case_sensitive}`) or nested groups,
//! plus shorthand keys (`{"metadata.title": "x"}` means equality). Parsing validates the whole
//! tree once, so the SQL layer (`crate::store::filter_sql`) can trust what it is given.
//!
//! Decisions a client can observe:
//! - Several keys in one object (groups and shorthands) are ANDed together.
//! - An empty group (`{"OR": []}`, `{}`) constrains nothing and is dropped, so `{}` alone is no
//!   filter.
//! - An object with a `field` key is a condition; any other object is a group. A condition takes
//!   only `field`, `operator`, `value` and `case_sensitive`, so a misspelt key is an error rather
//!   than a silently ignored one.
//! - `case_sensitive` on a condition wins; otherwise the nearest enclosing group's applies;
//!   otherwise matching is case-sensitive. The upstream schema defaults the group flag to
//!   `false`, and the official SDK writes `"case_sensitive": false` into every group and
//!   condition, so SDK callers get case-insensitive matching, as upstream does. A request built
//!   by hand without the key gets exact matching, which keeps identifier lookups exact.
//! - `eq null` matches a missing field or a JSON null (as `is_null`); `ne null` is its negation.
//! - Operators that need a search index upstream (`text`, `phrase`, `words`, `geo_*`) are refused.

use serde_json::{Map, Value};

use crate::model::FieldError;

/// How many groups may nest inside each other, counting the outermost object.
pub const MAX_DEPTH: usize = 16;
/// How many conditions (shorthands included) one filter may hold in total.
pub const MAX_CONDITIONS: usize = 256;
/// Longest accepted field path, in bytes.
pub const MAX_FIELD_LEN: usize = 256;
/// Most items an `in`/`nin` list may hold.
pub const MAX_LIST_ITEMS: usize = 1000;
/// Longest accepted `regex` pattern, in characters.
pub const MAX_REGEX_LEN: usize = 1000;

/// Case sensitivity when neither the condition nor any enclosing group says.
const DEFAULT_CASE_SENSITIVE: bool = true;
const CASE_KEY: &str = "case_sensitive";
const CONDITION_KEYS: [&str; 4] = ["field", "operator", "value", CASE_KEY];

/// A validated filter tree.
///
/// [`Filter::parse`] never produces an empty group. Built by hand, an empty `And` or `Not`
/// matches every row and an empty `Or` matches none.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every child matches.
    And(Vec<Filter>),
    /// At least one child matches.
    Or(Vec<Filter>),
    /// No child matches ("neither a nor b").
    Not(Vec<Filter>),
    /// A single test on one field.
    Condition(Condition),
}

/// One test of a document field against a literal value.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Dotted path into the object document, e.g. `metadata.title`.
    pub field: String,
    /// The comparison to apply.
    pub operator: Operator,
    /// The operand. For `exists` and `is_null` it is always a boolean after parsing.
    pub value: Value,
    /// When false, string comparisons fold ASCII letters to lower case (regex ignores case).
    pub case_sensitive: bool,
}

/// The contract's `FilterOperator` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// Equal.
    Eq,
    /// Not equal; also matches a missing field.
    Ne,
    /// Greater than, same JSON type only.
    Gt,
    /// Less than, same JSON type only.
    Lt,
    /// Greater than or equal, same JSON type only.
    Gte,
    /// Less than or equal, same JSON type only.
    Lte,
    /// Equal to one of a list.
    In,
    /// Equal to none of a list; also matches a missing field.
    Nin,
    /// Substring of a string field, or element of an array field.
    Contains,
    /// String prefix.
    StartsWith,
    /// String suffix.
    EndsWith,
    /// Regular-expression match on a string field.
    Regex,
    /// The key is present (a JSON null counts as present).
    Exists,
    /// The key is missing or holds JSON null.
    IsNull,
    /// Full-text search; needs a search index, refused here.
    Text,
    /// Phrase search; needs a search index, refused here.
    Phrase,
    /// Whole-word search; needs a search index, refused here.
    Words,
    /// Geo radius; needs a geo index, refused here.
    GeoRadius,
    /// Geo bounding box; needs a geo index, refused here.
    GeoBoundingBox,
    /// Geo polygon; needs a geo index, refused here.
    GeoPolygon,
}

impl Operator {
    /// Every operator with its wire name, in the contract's order.
    pub const ALL: [(Operator, &'static str); 20] = [
        (Operator::Eq, "eq"),
        (Operator::Ne, "ne"),
        (Operator::Gt, "gt"),
        (Operator::Lt, "lt"),
        (Operator::Gte, "gte"),
        (Operator::Lte, "lte"),
        (Operator::In, "in"),
        (Operator::Nin, "nin"),
        (Operator::Contains, "contains"),
        (Operator::StartsWith, "starts_with"),
        (Operator::EndsWith, "ends_with"),
        (Operator::Regex, "regex"),
        (Operator::Exists, "exists"),
        (Operator::IsNull, "is_null"),
        (Operator::Text, "text"),
        (Operator::Phrase, "phrase"),
        (Operator::Words, "words"),
        (Operator::GeoRadius, "geo_radius"),
        (Operator::GeoBoundingBox, "geo_bounding_box"),
        (Operator::GeoPolygon, "geo_polygon"),
    ];

    /// The wire name, e.g. `starts_with`.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(op, _)| *op == self).map_or("", |(_, name)| name)
    }

    /// Looks an operator up by its exact (lower-case) wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(op, _)| *op)
    }

    /// Whether upstream serves this operator from a search or geo index that objects lack.
    pub fn needs_search_index(self) -> bool {
        matches!(
            self,
            Self::Text
                | Self::Phrase
                | Self::Words
                | Self::GeoRadius
                | Self::GeoBoundingBox
                | Self::GeoPolygon
        )
    }
}

/// A validated `SortOption`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    /// Dotted path into the object document.
    pub field: String,
    /// True for `direction: "desc"`.
    pub descending: bool,
}

impl Filter {
    /// Parses and validates the `filters` value of a list request.
    ///
    /// `path` names the value in errors (normally `filters`). Returns `None` when the value is
    /// `null` or holds no conditions.
    ///
    /// # Errors
    ///
    /// A [`FieldError`] naming the first offending element by its path, e.g.
    /// `filters.AND[1].operator`; callers answer it with a 4xx.
    pub fn parse(v: &Value, path: &str) -> Result<Option<Filter>, FieldError> {
        match v {
            Value::Null => Ok(None),
            Value::Object(obj) => Parser::default().node(obj, path, 1, DEFAULT_CASE_SENSITIVE),
            _ => Err(FieldError::new(path, "must be an object such as {\"AND\": [...]}")),
        }
    }
}

impl Sort {
    /// Parses and validates a `SortOption` (`{field, direction}`; direction defaults to `asc`).
    ///
    /// # Errors
    ///
    /// A [`FieldError`] for a missing or malformed field, an unknown direction or an unknown key.
    pub fn parse(v: &Value, path: &str) -> Result<Option<Sort>, FieldError> {
        let obj = match v {
            Value::Null => return Ok(None),
            Value::Object(obj) => obj,
            _ => return Err(FieldError::new(path, "must be an object such as {\"field\": ...}")),
        };

        if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "field" | "direction")) {
            return Err(FieldError::new(format!("{path}.{key}"), "unknown key in a sort option"));
        }
        let field = field_at(obj.get("field"), &format!("{path}.field"))?;

        let descending = match obj.get("direction") {
            None | Some(Value::Null) => false,
            Some(Value::String(d)) if d == "asc" => false,
            Some(Value::String(d)) if d == "desc" => true,
            Some(_) => {
                return Err(FieldError::new(format!("{path}.direction"), "must be asc or desc"));
            }
        };
        Ok(Some(Sort { field, descending }))
    }
}

/// Walks one filter tree, counting conditions across all of it.
#[derive(Default)]
struct Parser {
    conditions: usize,
}

impl Parser {
    /// Parses an object that is either a condition or a group.
    fn node(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        depth: usize,
        case_sensitive: bool,
    ) -> Result<Option<Filter>, FieldError> {
        if obj.contains_key("field") {
            return self.condition(obj, path, case_sensitive).map(Some);
        }
        if depth > MAX_DEPTH {
            let message = format!("groups may nest at most {MAX_DEPTH} levels deep");
            return Err(FieldError::new(path, message));
        }
        let case_sensitive = case_flag(obj, path)?.unwrap_or(case_sensitive);

        let mut parts = Vec::new();
        for (key, value) in obj {
            let key_path = format!("{path}.{key}");
            let part = match key.as_str() {
                CASE_KEY => None,
                "AND" => self.list(value, &key_path, depth, case_sensitive)?.map(Filter::And),
                "OR" => self.list(value, &key_path, depth, case_sensitive)?.map(Filter::Or),
                "NOT" => self.list(value, &key_path, depth, case_sensitive)?.map(Filter::Not),
                field => Some(self.shorthand(field, value, &key_path, case_sensitive)?),
            };
            parts.extend(part);
        }

        Ok(match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(Filter::And(parts)),
        })
    }

    /// Parses the list under `AND`/`OR`/`NOT`; `None` when it holds nothing.
    fn list(
        &mut self,
        v: &Value,
        path: &str,
        depth: usize,
        case_sensitive: bool,
    ) -> Result<Option<Vec<Filter>>, FieldError> {
        let items = match v {
            Value::Null => return Ok(None),
            Value::Array(items) => items,
            _ => return Err(FieldError::new(path, "must be a list of conditions or groups")),
        };

        let mut children = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Value::Object(obj) = item else {
                return Err(FieldError::new(item_path, "must be a condition or a group object"));
            };
            children.extend(self.node(obj, &item_path, depth + 1, case_sensitive)?);
        }
        Ok((!children.is_empty()).then_some(children))
    }

    /// Parses `{"metadata.title": "x"}` as an equality condition.
    fn shorthand(
        &mut self,
        field: &str,
        value: &Value,
        path: &str,
        case_sensitive: bool,
    ) -> Result<Filter, FieldError> {
        check_field(field).map_err(|message| FieldError::new(path, message))?;
        let value = check_value(Operator::Eq, Some(value), path)?;
        self.count(path)?;
        let field = field.to_owned();
        Ok(Filter::Condition(Condition { field, operator: Operator::Eq, value, case_sensitive }))
    }

    /// Parses `{field, operator, value, case_sensitive}`.
    fn condition(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        inherited_case: bool,
    ) -> Result<Filter, FieldError> {
        if let Some(key) = obj.keys().find(|k| !CONDITION_KEYS.contains(&k.as_str())) {
            let message = "unknown key in a filter condition (expected field, operator, value, \
                           case_sensitive)";
            return Err(FieldError::new(format!("{path}.{key}"), message));
        }

        let field = field_at(obj.get("field"), &format!("{path}.field"))?;
        let operator = operator_at(obj.get("operator"), &format!("{path}.operator"))?;
        let case_sensitive = case_flag(obj, path)?.unwrap_or(inherited_case);
        let value = check_value(operator, obj.get("value"), &format!("{path}.value"))?;
        self.count(path)?;

        Ok(Filter::Condition(Condition { field, operator, value, case_sensitive }))
    }

    fn count(&mut self, path: &str) -> Result<(), FieldError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            let message = format!("a filter may hold at most {MAX_CONDITIONS} conditions");
            return Err(FieldError::new(path, message));
        }
        Ok(())
    }
}

/// Reads an optional `case_sensitive` flag of a group or condition object.
fn case_flag(obj: &Map<String, Value>, path: &str) -> Result<Option<bool>, FieldError> {
    match obj.get(CASE_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(FieldError::new(format!("{path}.{CASE_KEY}"), "must be true or false")),
    }
}

/// Reads and validates a field path given as a JSON value.
fn field_at(v: Option<&Value>, path: &str) -> Result<String, FieldError> {
    match v {
        None | Some(Value::Null) => Err(FieldError::new(path, "is required")),
        Some(Value::String(field)) => {
            check_field(field).map_err(|message| FieldError::new(path, message))?;
            Ok(field.clone())
        }
        Some(_) => Err(FieldError::new(path, "must be a string")),
    }
}

/// Checks that a field is a dotted path of `[A-Za-z0-9_]` segments.
///
/// The SQL layer inlines these names into JSON paths, so this check is what keeps them inert.
fn check_field(field: &str) -> Result<(), String> {
    if field.is_empty() {
        return Err("must not be empty".into());
    }
    if field.len() > MAX_FIELD_LEN {
        return Err(format!("must be at most {MAX_FIELD_LEN} characters"));
    }
    let segment_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !field.split('.').all(segment_ok) {
        return Err(format!(
            "'{field}' is not a field path: use letters, digits and underscores, with dots \
             between nested keys (e.g. metadata.title)"
        ));
    }
    Ok(())
}

/// Reads an operator name; a missing or null operator means `eq`.
fn operator_at(v: Option<&Value>, path: &str) -> Result<Operator, FieldError> {
    let name = match v {
        None | Some(Value::Null) => return Ok(Operator::Eq),
        Some(Value::String(name)) => name,
        Some(_) => return Err(FieldError::new(path, "must be a string")),
    };

    let Some(operator) = Operator::from_name(name) else {
        let known: Vec<&str> = Operator::ALL.iter().map(|(_, n)| *n).collect();
        let message = format!("unknown operator '{name}'; expected one of {}", known.join(", "));
        return Err(FieldError::new(path, message));
    };
    if operator.needs_search_index() {
        return Err(FieldError::new(path, unsupported_message(operator)));
    }
    Ok(operator)
}

fn unsupported_message(operator: Operator) -> String {
    format!(
        "operator '{}' needs a search index and is not supported for object filters",
        operator.name()
    )
}

/// Checks the operand's shape for `operator` and returns it, with defaults filled in.
fn check_value(operator: Operator, v: Option<&Value>, path: &str) -> Result<Value, FieldError> {
    if v.is_some_and(is_dynamic) {
        return Err(FieldError::new(path, "dynamic values are not supported in object filters"));
    }
    let required = || {
        let message = format!("is required for operator '{}'", operator.name());
        v.ok_or_else(|| FieldError::new(path, message))
    };

    match operator {
        Operator::Eq | Operator::Ne => scalar(required()?, path, operator),
        Operator::Gt | Operator::Lt | Operator::Gte | Operator::Lte => {
            number_or_string(required()?, path, operator)
        }
        Operator::In | Operator::Nin => list(required()?, path),
        Operator::Contains => scalar(required()?, path, operator),
        Operator::StartsWith | Operator::EndsWith => string(required()?, path, operator),
        Operator::Regex => pattern(required()?, path),
        Operator::Exists | Operator::IsNull => flag(v, path, operator),
        _ => Err(FieldError::new(path, unsupported_message(operator))),
    }
}

/// Recognises the generated SDK's `DynamicValue` (`{"type": "dynamic", "field": ...}`).
fn is_dynamic(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("dynamic")
}

fn scalar(v: &Value, path: &str, operator: Operator) -> Result<Value, FieldError> {
    if v.is_array() || v.is_object() {
        let message = format!(
            "operator '{}' takes a string, number, boolean or null (use 'in' for a list)",
            operator.name()
        );
        return Err(FieldError::new(path, message));
    }
    Ok(v.clone())
}

fn number_or_string(v: &Value, path: &str, operator: Operator) -> Result<Value, FieldError> {
    if !(v.is_number() || v.is_string()) {
        let message = format!("operator '{}' takes a number or a string", operator.name());
        return Err(FieldError::new(path, message));
    }
    Ok(v.clone())
}

fn string(v: &Value, path: &str, operator: Operator) -> Result<Value, FieldError> {
    if !v.is_string() {
        let message = format!("operator '{}' takes a string", operator.name());
        return Err(FieldError::new(path, message));
    }
    Ok(v.clone())
}

fn pattern(v: &Value, path: &str) -> Result<Value, FieldError> {
    let Some(p) = v.as_str() else {
        return Err(FieldError::new(path, "operator 'regex' takes a string pattern"));
    };
    if p.chars().count() > MAX_REGEX_LEN {
        let message = format!("a regex pattern may be at most {MAX_REGEX_LEN} characters");
        return Err(FieldError::new(path, message));
    }
    Ok(v.clone())
}

fn list(v: &Value, path: &str) -> Result<Value, FieldError> {
    let Some(items) = v.as_array() else {
        return Err(FieldError::new(path, "operators 'in' and 'nin' take a list"));
    };
    if items.len() > MAX_LIST_ITEMS {
        let message = format!("a list may hold at most {MAX_LIST_ITEMS} values");
        return Err(FieldError::new(path, message));
    }

    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        if is_dynamic(item) {
            let message = "dynamic values are not supported in object filters";
            return Err(FieldError::new(item_path, message));
        }
        if item.is_array() || item.is_object() {
            let message = "list items must be strings, numbers, booleans or null";
            return Err(FieldError::new(item_path, message));
        }
    }
    Ok(v.clone())
}

/// `exists`/`is_null` take a boolean; absent or null means `true`.
fn flag(v: Option<&Value>, path: &str, operator: Operator) -> Result<Value, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(Value::Bool(true)),
        Some(Value::Bool(b)) => Ok(Value::Bool(*b)),
        Some(_) => {
            let message = format!("operator '{}' takes true or false", operator.name());
            Err(FieldError::new(path, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Option<Filter>, FieldError> {
        Filter::parse(&v, "filters")
    }

    fn cond(field: &str, operator: Operator, value: Value, case_sensitive: bool) -> Filter {
        Filter::Condition(Condition { field: field.into(), operator, value, case_sensitive })
    }

    fn err(v: Value) -> FieldError {
        match parse(v) {
            Err(e) => e,
            Ok(f) => panic!("expected an error, got {f:?}"),
        }
    }

    #[test]
    fn null_and_empty_objects_are_no_filter() {
        assert_eq!(parse(Value::Null), Ok(None));
        assert_eq!(parse(json!({})), Ok(None));
        assert_eq!(parse(json!({"case_sensitive": false})), Ok(None));
        assert_eq!(parse(json!({"AND": [], "OR": [], "NOT": null})), Ok(None));
        assert_eq!(parse(json!({"AND": [{}, {"OR": []}]})), Ok(None));
    }

    #[test]
    fn top_level_must_be_an_object() {
        for bad in [json!([]), json!("x"), json!(1), json!(true)] {
            assert_eq!(err(bad).field, "filters");
        }
    }

    #[test]
    fn groups_hold_conditions_and_nested_groups() {
        let f = parse(json!({"AND": [
            {"field": "status", "operator": "eq", "value": "COMPLETED"},
            {"OR": [{"field": "rank", "operator": "gt", "value": 3}]}
        ]}));
        let expected = Filter::And(vec![
            cond("status", Operator::Eq, json!("COMPLETED"), true),
            Filter::Or(vec![cond("rank", Operator::Gt, json!(3), true)]),
        ]);
        assert_eq!(f, Ok(Some(expected)));
    }

    #[test]
    fn operator_defaults_to_eq() {
        let f = parse(json!({"AND": [{"field": "a", "value": 1}]}));
        assert_eq!(f, Ok(Some(Filter::And(vec![cond("a", Operator::Eq, json!(1), true)]))));
        let f = parse(json!({"AND": [{"field": "a", "operator": null, "value": 1}]}));
        assert_eq!(f, Ok(Some(Filter::And(vec![cond("a", Operator::Eq, json!(1), true)]))));
    }

    #[test]
    fn several_group_keys_are_anded() {
        let f = parse(json!({
            "OR": [{"field": "a", "value": 1}],
            "NOT": [{"field": "b", "value": 2}],
            "metadata.title": "x"
        }));
        let expected = Filter::And(vec![
            Filter::Or(vec![cond("a", Operator::Eq, json!(1), true)]),
            Filter::Not(vec![cond("b", Operator::Eq, json!(2), true)]),
            cond("metadata.title", Operator::Eq, json!("x"), true),
        ]);
        assert_eq!(f, Ok(Some(expected)));
    }

    #[test]
    fn shorthand_is_equality() {
        let f = parse(json!({"metadata.title": "x"}));
        assert_eq!(f, Ok(Some(cond("metadata.title", Operator::Eq, json!("x"), true))));
        let f = parse(json!({"AND": [{"rank": null}]}));
        assert_eq!(f, Ok(Some(Filter::And(vec![cond("rank", Operator::Eq, Value::Null, true)]))));
    }

    #[test]
    fn shorthand_rejects_bad_keys_and_values() {
        let e = err(json!({"bad key": 1}));
        assert_eq!(e.field, "filters.bad key");
        let e = err(json!({"AND": [{"metadata": {"title": "x"}}]}));
        assert_eq!(e.field, "filters.AND[0].metadata");
        assert!(e.message.contains("'in'"), "{}", e.message);
    }

    #[test]
    fn a_bare_condition_is_accepted_at_the_top() {
        let f = parse(json!({"field": "a", "operator": "ne", "value": "x"}));
        assert_eq!(f, Ok(Some(cond("a", Operator::Ne, json!("x"), true))));
    }

    #[test]
    fn case_sensitive_is_inherited_and_overridden() {
        let f = parse(json!({
            "case_sensitive": false,
            "AND": [
                {"field": "a", "value": "x"},
                {"field": "b", "value": "y", "case_sensitive": true},
                {"OR": [{"field": "c", "value": "z"}], "case_sensitive": true},
                {"OR": [{"field": "d", "value": "w"}]}
            ]
        }));
        let expected = Filter::And(vec![
            cond("a", Operator::Eq, json!("x"), false),
            cond("b", Operator::Eq, json!("y"), true),
            Filter::Or(vec![cond("c", Operator::Eq, json!("z"), true)]),
            Filter::Or(vec![cond("d", Operator::Eq, json!("w"), false)]),
        ]);
        assert_eq!(f, Ok(Some(expected)));
    }

    #[test]
    fn sdk_style_filters_parse() {
        // What `LogicalOperatorInput.from_dict(...).to_dict()` sends.
        let f = parse(json!({
            "AND": [{"field": "status", "operator": "in", "value": ["A", "B"],
                     "case_sensitive": false}],
            "case_sensitive": false
        }));
        let expected = Filter::And(vec![cond("status", Operator::In, json!(["A", "B"]), false)]);
        assert_eq!(f, Ok(Some(expected)));
    }

    #[test]
    fn case_sensitive_must_be_boolean() {
        assert_eq!(err(json!({"case_sensitive": "no"})).field, "filters.case_sensitive");
        let e = err(json!({"AND": [{"field": "a", "value": 1, "case_sensitive": 0}]}));
        assert_eq!(e.field, "filters.AND[0].case_sensitive");
    }

    #[test]
    fn unknown_operator_names_its_path() {
        let e = err(json!({"AND": [
            {"field": "a", "value": 1},
            {"field": "b", "operator": "like", "value": "x"}
        ]}));
        assert_eq!(e.field, "filters.AND[1].operator");
        assert!(e.message.contains("unknown operator 'like'"), "{}", e.message);
        assert!(e.message.contains("starts_with"), "{}", e.message);

        let e = err(json!({"AND": [{"field": "a", "operator": "EQ", "value": 1}]}));
        assert_eq!(e.field, "filters.AND[0].operator");
        let e = err(json!({"AND": [{"field": "a", "operator": 3, "value": 1}]}));
        assert_eq!(e.field, "filters.AND[0].operator");
    }

    #[test]
    fn search_operators_are_refused() {
        for name in ["text", "phrase", "words", "geo_radius", "geo_bounding_box", "geo_polygon"] {
            let e = err(json!({"OR": [{"field": "a", "operator": name, "value": "x"}]}));
            assert_eq!(e.field, "filters.OR[0].operator");
            assert!(e.message.contains("needs a search index"), "{}", e.message);
            assert!(e.message.contains("not supported for object filters"), "{}", e.message);
        }
    }

    #[test]
    fn field_paths_are_validated() {
        let long = "a".repeat(MAX_FIELD_LEN + 1);
        let exact = "a".repeat(MAX_FIELD_LEN);
        for bad in [
            json!(""),
            json!("a..b"),
            json!(".a"),
            json!("a."),
            json!("a-b"),
            json!("a b"),
            json!("$where"),
            json!("é"),
            json!(long),
        ] {
            let e = err(json!({"AND": [{"field": bad, "value": 1}]}));
            assert_eq!(e.field, "filters.AND[0].field", "{bad}");
        }
        for bad in [json!(null), json!(3)] {
            let e = err(json!({"AND": [{"field": bad, "value": 1}]}));
            assert_eq!(e.field, "filters.AND[0].field", "{bad}");
        }
        assert!(parse(json!({"AND": [{"field": exact, "value": 1}]})).is_ok());
        assert!(parse(json!({"AND": [{"field": "blobs.0.type_2", "value": 1}]})).is_ok());
    }

    #[test]
    fn unknown_condition_keys_are_refused() {
        let e = err(json!({"AND": [{"field": "a", "opertor": "eq", "value": 1}]}));
        assert_eq!(e.field, "filters.AND[0].opertor");
    }

    #[test]
    fn groups_must_be_lists_of_objects() {
        assert_eq!(err(json!({"AND": {"field": "a"}})).field, "filters.AND");
        assert_eq!(err(json!({"OR": ["a"]})).field, "filters.OR[0]");
        assert_eq!(err(json!({"NOT": [{"AND": [1]}]})).field, "filters.NOT[0].AND[0]");
    }

    #[test]
    fn nesting_is_limited() {
        fn nest(levels: usize) -> Value {
            let mut v = json!({"field": "a", "value": 1});
            for _ in 0..levels {
                v = json!({"AND": [v]});
            }
            v
        }
        assert!(parse(nest(MAX_DEPTH)).is_ok());
        let e = err(nest(MAX_DEPTH + 1));
        assert!(e.message.contains("16 levels"), "{}", e.message);
        assert!(e.field.starts_with("filters.AND[0].AND[0]"), "{}", e.field);
    }

    #[test]
    fn condition_count_is_limited() {
        let many = |n: usize| {
            let items: Vec<Value> = (0..n).map(|i| json!({"field": "a", "value": i})).collect();
            json!({"OR": items})
        };
        assert!(parse(many(MAX_CONDITIONS)).is_ok());
        let e = err(many(MAX_CONDITIONS + 1));
        assert_eq!(e.field, format!("filters.OR[{MAX_CONDITIONS}]"));

        // Shorthands count too.
        let mut obj = Map::new();
        for i in 0..=MAX_CONDITIONS {
            obj.insert(format!("f{i}"), json!(i));
        }
        assert!(err(Value::Object(obj)).message.contains("256"));
    }

    #[test]
    fn dynamic_values_are_refused() {
        let dynamic = json!({"type": "dynamic", "field": "inputs.user_id"});
        let e = err(json!({"AND": [{"field": "a", "operator": "eq", "value": dynamic}]}));
        assert_eq!(e.field, "filters.AND[0].value");
        assert_eq!(e.message, "dynamic values are not supported in object filters");

        let e = err(json!({"AND": [{"field": "a", "operator": "exists", "value": dynamic}]}));
        assert_eq!(e.message, "dynamic values are not supported in object filters");
        let e = err(json!({"AND": [{"field": "a", "operator": "in", "value": [1, dynamic]}]}));
        assert_eq!(e.field, "filters.AND[0].value[1]");
        assert_eq!(err(json!({"a": dynamic})).message, e.message);
    }

    fn value_error(operator: &str, value: Option<Value>) -> FieldError {
        let mut c = json!({"field": "a", "operator": operator});
        if let (Some(v), Some(obj)) = (value, c.as_object_mut()) {
            obj.insert("value".into(), v);
        }
        err(json!({"AND": [c]}))
    }

    fn value_ok(operator: &str, value: Value) -> Value {
        let f = parse(json!({"field": "a", "operator": operator, "value": value}));
        match f {
            Ok(Some(Filter::Condition(c))) => c.value,
            other => panic!("{operator}: {other:?}"),
        }
    }

    #[test]
    fn eq_and_ne_take_scalars() {
        for op in ["eq", "ne"] {
            for v in [json!("x"), json!(1), json!(1.5), json!(true), Value::Null] {
                assert_eq!(value_ok(op, v.clone()), v);
            }
            for v in [json!([1]), json!({"a": 1})] {
                assert_eq!(value_error(op, Some(v)).field, "filters.AND[0].value");
            }
            assert!(value_error(op, None).message.contains("is required"));
        }
    }

    #[test]
    fn ordering_operators_take_numbers_or_strings() {
        for op in ["gt", "lt", "gte", "lte"] {
            assert_eq!(value_ok(op, json!(2)), json!(2));
            assert_eq!(value_ok(op, json!("2026-01-01")), json!("2026-01-01"));
            for v in [json!(true), Value::Null, json!([1]), json!({})] {
                let e = value_error(op, Some(v));
                assert!(e.message.contains("number or a string"), "{}", e.message);
            }
            assert!(value_error(op, None).message.contains("is required"));
        }
    }

    #[test]
    fn in_and_nin_take_bounded_scalar_lists() {
        for op in ["in", "nin"] {
            assert_eq!(value_ok(op, json!([])), json!([]));
            assert_eq!(value_ok(op, json!(["a", 1, true, null])), json!(["a", 1, true, null]));
            assert!(value_error(op, Some(json!("a"))).message.contains("take a list"));
            assert_eq!(value_error(op, Some(json!([1, [2]]))).field, "filters.AND[0].value[1]");
            let too_many: Vec<Value> = (0..=MAX_LIST_ITEMS).map(|i| json!(i)).collect();
            assert!(value_error(op, Some(json!(too_many))).message.contains("1000"));
            let max: Vec<Value> = (0..MAX_LIST_ITEMS).map(|i| json!(i)).collect();
            assert!(value_ok(op, json!(max)).is_array());
        }
    }

    #[test]
    fn string_operators_take_strings() {
        for op in ["starts_with", "ends_with", "regex"] {
            assert_eq!(value_ok(op, json!("x")), json!("x"));
            for v in [json!(1), json!(true), Value::Null, json!(["x"])] {
                assert_eq!(value_error(op, Some(v)).field, "filters.AND[0].value");
            }
            assert!(value_error(op, None).message.contains("is required"));
        }
    }

    #[test]
    fn contains_takes_a_string_or_an_array_element() {
        for v in [json!("x"), json!(3), json!(true), Value::Null] {
            assert_eq!(value_ok("contains", v.clone()), v);
        }
        for v in [json!(["x"]), json!({"a": 1})] {
            assert_eq!(value_error("contains", Some(v)).field, "filters.AND[0].value");
        }
    }

    #[test]
    fn regex_length_is_limited() {
        let ok = "a".repeat(MAX_REGEX_LEN);
        assert_eq!(value_ok("regex", json!(ok)), json!(ok));
        let e = value_error("regex", Some(json!("é".repeat(MAX_REGEX_LEN + 1))));
        assert!(e.message.contains("1000"), "{}", e.message);
    }

    #[test]
    fn exists_and_is_null_take_booleans_defaulting_to_true() {
        for op in ["exists", "is_null"] {
            assert_eq!(value_ok(op, json!(false)), json!(false));
            assert_eq!(value_ok(op, Value::Null), json!(true));
            let f = parse(json!({"field": "a", "operator": op}));
            assert_eq!(
                f.map(|f| matches!(f, Some(Filter::Condition(c)) if c.value == json!(true))),
                Ok(true)
            );
            assert!(value_error(op, Some(json!("yes"))).message.contains("true or false"));
        }
    }

    #[test]
    fn operator_names_round_trip() {
        for (op, name) in Operator::ALL {
            assert_eq!(op.name(), name);
            assert_eq!(Operator::from_name(name), Some(op));
        }
        assert_eq!(Operator::from_name("Eq"), None);
    }

    #[test]
    fn sort_parses() {
        let s = |v: Value| Sort::parse(&v, "sort");
        assert_eq!(s(Value::Null), Ok(None));
        let asc = Sort { field: "rank".into(), descending: false };
        assert_eq!(s(json!({"field": "rank"})), Ok(Some(asc.clone())));
        assert_eq!(s(json!({"field": "rank", "direction": null})), Ok(Some(asc.clone())));
        assert_eq!(s(json!({"field": "rank", "direction": "asc"})), Ok(Some(asc)));
        let desc = Sort { field: "metadata.n".into(), descending: true };
        assert_eq!(s(json!({"field": "metadata.n", "direction": "desc"})), Ok(Some(desc)));
    }

    #[test]
    fn sort_errors_name_their_field() {
        let s = |v: Value| Sort::parse(&v, "sort").err().map(|e| e.field);
        assert_eq!(s(json!("rank")), Some("sort".into()));
        assert_eq!(s(json!({})), Some("sort.field".into()));
        assert_eq!(s(json!({"field": "a b"})), Some("sort.field".into()));
        assert_eq!(s(json!({"field": 1})), Some("sort.field".into()));
        assert_eq!(s(json!({"field": "a", "direction": "DESC"})), Some("sort.direction".into()));
        assert_eq!(s(json!({"field": "a", "order": "asc"})), Some("sort.order".into()));
    }
}
