//! The bucket schema: the properties a bucket's objects carry, which of them are blobs,
//! and the checks that hold objects and schema updates to it.
//!
//! Parsing is written by hand rather than derived, for two reasons. The official SDK
//! sends every unset key of a field as an explicit `null`, which must read as "absent".
//! And every rejection has to name the offending field by its dotted path under
//! `bucket_schema`, so a client can tell which of several nested properties is wrong.
//!
//! Properties keep the order the client sent them in, so [`BucketSchema::to_json`] echoes
//! a schema back the way it arrived (with unset keys dropped).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

use super::FieldError;

/// The most properties one `properties` map may declare, at the top level or nested.
pub const MAX_PROPERTIES: usize = 256;

/// The deepest a field may sit: a top-level property is at depth 1, and each `properties`
/// or `items` step goes one level down.
pub const MAX_DEPTH: usize = 8;

/// The longest a property name may be, in characters.
pub const MAX_PROPERTY_NAME_LEN: usize = 128;

/// How many enum values an error message lists before it stops.
const ENUM_VALUES_SHOWN: usize = 10;

/// The type of a schema field, as the wire spells it (`BucketSchemaFieldType`,
/// lowercase).
///
/// The first nine are metadata types, stored as JSON on the object. The last six are blob
/// types, filled by the object's `blobs` and processed by extractors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Float,
    Boolean,
    Object,
    Array,
    Date,
    Datetime,
    Text,
    Image,
    Audio,
    Video,
    Pdf,
    Excel,
}

impl FieldType {
    /// Every type, metadata types first, in the order the contract lists them.
    pub const ALL: [FieldType; 15] = [
        Self::String,
        Self::Number,
        Self::Integer,
        Self::Float,
        Self::Boolean,
        Self::Object,
        Self::Array,
        Self::Date,
        Self::Datetime,
        Self::Text,
        Self::Image,
        Self::Audio,
        Self::Video,
        Self::Pdf,
        Self::Excel,
    ];

    /// The wire name, e.g. `"datetime"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Pdf => "pdf",
            Self::Excel => "excel",
        }
    }

    /// Reads a wire name. The match is exact: `"VIDEO"` is not a type, as in the SDK.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether values of this type are files sent as blobs rather than JSON metadata.
    pub fn is_blob(self) -> bool {
        matches!(
            self,
            Self::Text | Self::Image | Self::Audio | Self::Video | Self::Pdf | Self::Excel
        )
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lists type names for an error message, e.g. `string, number, integer`.
pub(super) fn type_names(types: impl IntoIterator<Item = FieldType>) -> String {
    types.into_iter().map(FieldType::as_str).collect::<Vec<_>>().join(", ")
}

/// One declared property of a bucket schema, possibly with nested properties or array
/// items.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaField {
    pub field_type: FieldType,
    pub description: Option<String>,
    pub default: Option<Value>,
    pub required: bool,
    pub enum_values: Option<Vec<Value>>,
    pub examples: Option<Vec<Value>>,
    /// The schema of each element, for `array` fields only.
    pub items: Option<Box<SchemaField>>,
    /// Nested properties in the order they were declared, for `object` fields only.
    pub properties: Option<Vec<(String, SchemaField)>>,
}

impl SchemaField {
    /// A field of the given type with every optional key unset.
    pub fn new(field_type: FieldType) -> Self {
        Self {
            field_type,
            description: None,
            default: None,
            required: false,
            enum_values: None,
            examples: None,
            items: None,
            properties: None,
        }
    }

    /// A nested property of an `object` field, by name.
    pub fn property(&self, name: &str) -> Option<&SchemaField> {
        self.properties.as_deref().and_then(|props| lookup(props, name))
    }

    /// The field as the server returns it: `type` and `required` always, the rest when
    /// set.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), self.field_type.as_str().into());
        out.insert("required".into(), self.required.into());

        if let Some(description) = &self.description {
            out.insert("description".into(), description.clone().into());
        }
        if let Some(default) = &self.default {
            out.insert("default".into(), default.clone());
        }
        if let Some(values) = &self.enum_values {
            out.insert("enum".into(), Value::Array(values.clone()));
        }
        if let Some(examples) = &self.examples {
            out.insert("examples".into(), Value::Array(examples.clone()));
        }

        if let Some(items) = &self.items {
            out.insert("items".into(), items.to_json());
        }
        if let Some(properties) = &self.properties {
            out.insert("properties".into(), properties_json(properties));
        }
        Value::Object(out)
    }
}

/// A bucket's schema: its top-level properties in the order they were declared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BucketSchema {
    pub properties: Vec<(String, SchemaField)>,
}

impl BucketSchema {
    /// Parses and validates a `bucket_schema` request value.
    ///
    /// # Errors
    ///
    /// The first rule the value breaks, named by its path, e.g.
    /// `bucket_schema.properties.title.type`.
    pub fn parse(value: &Value) -> Result<Self, FieldError> {
        const ROOT: &str = "bucket_schema";
        let object = value.as_object().ok_or_else(|| FieldError::new(ROOT, "must be an object"))?;

        let path = format!("{ROOT}.properties");
        let Some(properties) = present(object, "properties") else {
            return Err(FieldError::new(path, "is required"));
        };
        Ok(Self { properties: parse_properties(properties, &path, 1)? })
    }

    /// The normalised schema as the server returns it.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("properties".into(), properties_json(&self.properties));
        Value::Object(out)
    }

    /// A top-level property by name.
    pub fn property(&self, name: &str) -> Option<&SchemaField> {
        lookup(&self.properties, name)
    }

    /// The type of a blob property, or `None` when the name is absent or not a blob type.
    pub fn blob_property(&self, name: &str) -> Option<FieldType> {
        self.property(name).map(|field| field.field_type).filter(|t| t.is_blob())
    }

    /// Every blob property with its type, in declaration order.
    pub fn blob_properties(&self) -> impl Iterator<Item = (&str, FieldType)> {
        self.properties
            .iter()
            .filter(|(_, field)| field.field_type.is_blob())
            .map(|(name, field)| (name.as_str(), field.field_type))
    }

    /// Checks an object's custom root fields, and which blob properties it fills, against
    /// the schema.
    ///
    /// `fields` holds the object's root keys other than the reserved ones. Root fields
    /// the schema does not declare are allowed and left unchecked.
    /// `blob_properties_present` names the blob properties the object's blobs fill.
    ///
    /// # Errors
    ///
    /// The first violation, named by its JSON path from the object root (`tags[2]`,
    /// `address.city`), or `blobs` for a required blob property that no blob fills.
    pub fn validate_object(
        &self,
        fields: &Map<String, Value>,
        blob_properties_present: &[&str],
    ) -> Result<(), FieldError> {
        for (name, field) in &self.properties {
            if !field.field_type.is_blob() {
                check_property(fields, name, field, "")?;
            } else if field.required && !blob_properties_present.contains(&name.as_str()) {
                let message = format!("blob property \"{name}\" is required");
                return Err(FieldError::new("blobs", message));
            }
        }
        Ok(())
    }

    /// Checks that replacing this schema with `new` breaks no existing object.
    ///
    /// A change is breaking when it removes a property, changes a property's type, makes
    /// an optional property required, or adds a required property; the rules apply to
    /// nested properties and array items too. Other changes (descriptions, defaults,
    /// enums, examples, new optional properties) are compatible.
    ///
    /// # Errors
    ///
    /// The first breaking change, named by the property's path under `bucket_schema`.
    pub fn is_compatible_change(&self, new: &BucketSchema) -> Result<(), FieldError> {
        compare_properties(&self.properties, &new.properties, "bucket_schema.properties")
    }
}

fn lookup<'a>(properties: &'a [(String, SchemaField)], name: &str) -> Option<&'a SchemaField> {
    properties.iter().find(|(key, _)| key == name).map(|(_, field)| field)
}

fn properties_json(properties: &[(String, SchemaField)]) -> Value {
    let map = properties.iter().map(|(name, field)| (name.clone(), field.to_json())).collect();
    Value::Object(map)
}

fn parse_properties(
    value: &Value,
    path: &str,
    depth: usize,
) -> Result<Vec<(String, SchemaField)>, FieldError> {
    let map = value.as_object().ok_or_else(|| FieldError::new(path, "must be an object"))?;
    if map.len() > MAX_PROPERTIES {
        let message =
            format!("declares {} properties; at most {MAX_PROPERTIES} are allowed", map.len());
        return Err(FieldError::new(path, message));
    }

    map.iter()
        .map(|(name, field)| {
            let field_path = format!("{path}.{name}");
            check_property_name(name).map_err(|message| FieldError::new(&field_path, message))?;
            Ok((name.clone(), parse_field(field, &field_path, depth)?))
        })
        .collect()
}

fn check_property_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("property name must not be empty".into());
    };

    if name.chars().count() > MAX_PROPERTY_NAME_LEN {
        return Err(format!("property name is longer than {MAX_PROPERTY_NAME_LEN} characters"));
    }
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(format!("property name \"{name}\" must start with a letter or '_'"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("property name \"{name}\" may contain only letters, digits and '_'"));
    }
    Ok(())
}

fn parse_field(value: &Value, path: &str, depth: usize) -> Result<SchemaField, FieldError> {
    if depth > MAX_DEPTH {
        let message = format!("the schema nests deeper than {MAX_DEPTH} levels");
        return Err(FieldError::new(path, message));
    }
    let object = value.as_object().ok_or_else(|| FieldError::new(path, "must be an object"))?;

    let field_type = parse_type(object, path, depth)?;
    let mut field = SchemaField {
        field_type,
        description: optional_string(object, "description", path)?,
        default: None,
        required: optional_bool(object, "required", path)?.unwrap_or(false),
        enum_values: None,
        examples: optional_array(object, "examples", path)?,
        items: parse_items(object, field_type, path, depth)?,
        properties: parse_nested(object, field_type, path, depth)?,
    };

    field.enum_values = parse_enum(object, &field, path)?;
    field.default = parse_default(object, &field, path)?;
    Ok(field)
}

fn parse_type(
    object: &Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<FieldType, FieldError> {
    let path = format!("{path}.type");
    let name = match present(object, "type") {
        None => return Err(FieldError::new(path, "is required")),
        Some(Value::String(name)) => name,
        Some(_) => return Err(FieldError::new(path, "must be a string")),
    };

    let Some(field_type) = FieldType::parse(name) else {
        let expected = type_names(FieldType::ALL);
        let message = format!("unknown field type \"{name}\"; expected one of {expected}");
        return Err(FieldError::new(path, message));
    };
    if field_type.is_blob() && depth > 1 {
        let message = format!("blob type \"{name}\" is only allowed on top-level properties");
        return Err(FieldError::new(path, message));
    }
    Ok(field_type)
}

fn parse_items(
    object: &Map<String, Value>,
    field_type: FieldType,
    path: &str,
    depth: usize,
) -> Result<Option<Box<SchemaField>>, FieldError> {
    let Some(items) = present(object, "items") else {
        return Ok(None);
    };

    let path = format!("{path}.items");
    if field_type != FieldType::Array {
        let message = format!("is only allowed on array fields, not on {field_type} fields");
        return Err(FieldError::new(path, message));
    }
    Ok(Some(Box::new(parse_field(items, &path, depth + 1)?)))
}

fn parse_nested(
    object: &Map<String, Value>,
    field_type: FieldType,
    path: &str,
    depth: usize,
) -> Result<Option<Vec<(String, SchemaField)>>, FieldError> {
    let Some(properties) = present(object, "properties") else {
        return Ok(None);
    };

    let path = format!("{path}.properties");
    if field_type != FieldType::Object {
        let message = format!("is only allowed on object fields, not on {field_type} fields");
        return Err(FieldError::new(path, message));
    }
    Ok(Some(parse_properties(properties, &path, depth + 1)?))
}

/// Reads `enum`. Each value must itself be a valid value of the field's type.
fn parse_enum(
    object: &Map<String, Value>,
    field: &SchemaField,
    path: &str,
) -> Result<Option<Vec<Value>>, FieldError> {
    let Some(values) = optional_array(object, "enum", path)? else {
        return Ok(None);
    };

    let path = format!("{path}.enum");
    if field.field_type.is_blob() {
        return Err(FieldError::new(path, "is not allowed on blob properties"));
    }
    if values.is_empty() {
        return Err(FieldError::new(path, "must list at least one value"));
    }
    for (index, value) in values.iter().enumerate() {
        check_value(field, value, &format!("{path}[{index}]"))?;
    }
    Ok(Some(values))
}

/// Reads `default`, which must be a valid value of the field, enum included.
fn parse_default(
    object: &Map<String, Value>,
    field: &SchemaField,
    path: &str,
) -> Result<Option<Value>, FieldError> {
    let Some(default) = present(object, "default") else {
        return Ok(None);
    };

    let path = format!("{path}.default");
    if field.field_type.is_blob() {
        return Err(FieldError::new(path, "is not allowed on blob properties"));
    }
    check_value(field, default, &path)?;
    Ok(Some(default.clone()))
}

/// Checks one declared property of `fields`; `parent` is the path of the enclosing
/// object.
fn check_property(
    fields: &Map<String, Value>,
    name: &str,
    field: &SchemaField,
    parent: &str,
) -> Result<(), FieldError> {
    let path = if parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") };
    match present(fields, name) {
        Some(value) => check_value(field, value, &path),
        None if field.required => Err(FieldError::new(path, "is required")),
        None => Ok(()),
    }
}

/// Checks a value against a field: its type, its nested properties or items, and its
/// enum.
fn check_value(field: &SchemaField, value: &Value, path: &str) -> Result<(), FieldError> {
    check_type(field.field_type, value).map_err(|message| FieldError::new(path, message))?;

    if let (Some(properties), Value::Object(map)) = (&field.properties, value) {
        for (name, nested) in properties {
            check_property(map, name, nested, path)?;
        }
    }
    if let (Some(items), Value::Array(list)) = (&field.items, value) {
        for (index, item) in list.iter().enumerate() {
            check_value(items, item, &format!("{path}[{index}]"))?;
        }
    }

    match &field.enum_values {
        Some(allowed) if !allowed.iter().any(|candidate| json_equal(candidate, value)) => {
            Err(FieldError::new(path, format!("must be one of {}", list_values(allowed))))
        }
        _ => Ok(()),
    }
}

fn check_type(field_type: FieldType, value: &Value) -> Result<(), String> {
    let matches = match field_type {
        FieldType::String => value.is_string(),
        FieldType::Number | FieldType::Float => value.is_number(),
        FieldType::Integer => matches!(value, Value::Number(n) if is_integral(n)),
        FieldType::Boolean => value.is_boolean(),
        FieldType::Object => value.is_object(),
        FieldType::Array => value.is_array(),
        FieldType::Date => return check_date(value),
        FieldType::Datetime => return check_datetime(value),
        blob => return Err(format!("is a {blob} blob property; send it in blobs")),
    };

    if matches {
        Ok(())
    } else {
        Err(format!("must be {}, got {}", describe(field_type), json_kind(value)))
    }
}

fn check_date(value: &Value) -> Result<(), String> {
    let Value::String(text) = value else {
        return Err(format!("must be a date (YYYY-MM-DD), got {}", json_kind(value)));
    };
    match parse_date(text) {
        Some(_) => Ok(()),
        None => Err(format!("\"{text}\" is not a valid date (YYYY-MM-DD)")),
    }
}

fn check_datetime(value: &Value) -> Result<(), String> {
    let Value::String(text) = value else {
        return Err(format!("must be an RFC 3339 datetime, got {}", json_kind(value)));
    };
    match parse_datetime(text) {
        Some(_) => Ok(()),
        None => Err(format!("\"{text}\" is not a valid RFC 3339 datetime")),
    }
}

/// Reads a `YYYY-MM-DD` calendar date, refusing impossible days such as February 30.
fn parse_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }

    let year = digits(text.get(0..4)?)?;
    let month = Month::try_from(u8::try_from(digits(text.get(5..7)?)?).ok()?).ok()?;
    let day = u8::try_from(digits(text.get(8..10)?)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

fn digits(text: &str) -> Option<i32> {
    if text.bytes().all(|b| b.is_ascii_digit()) { text.parse().ok() } else { None }
}

/// Reads an RFC 3339 datetime with a `T` (or space) between date and time and an offset.
fn parse_datetime(text: &str) -> Option<OffsetDateTime> {
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Whether a number is a whole number, including a float such as `5.0`.
fn is_integral(number: &Number) -> bool {
    number.is_i64()
        || number.is_u64()
        || number.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// JSON equality where numbers compare by value, so `1` matches an enum value `1.0`.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.as_f64() == y.as_f64()
        }
        _ => a == b,
    }
}

fn list_values(values: &[Value]) -> String {
    let mut shown: Vec<String> =
        values.iter().take(ENUM_VALUES_SHOWN).map(Value::to_string).collect();
    if values.len() > ENUM_VALUES_SHOWN {
        shown.push(format!("… ({} in all)", values.len()));
    }
    shown.join(", ")
}

fn describe(field_type: FieldType) -> &'static str {
    match field_type {
        FieldType::String => "a string",
        FieldType::Number | FieldType::Float => "a number",
        FieldType::Integer => "an integer",
        FieldType::Boolean => "true or false",
        FieldType::Object => "an object",
        FieldType::Array => "an array",
        FieldType::Date => "a date (YYYY-MM-DD)",
        FieldType::Datetime => "an RFC 3339 datetime",
        _ => "a blob",
    }
}

fn compare_properties(
    old: &[(String, SchemaField)],
    new: &[(String, SchemaField)],
    path: &str,
) -> Result<(), FieldError> {
    for (name, old_field) in old {
        let field_path = format!("{path}.{name}");
        let Some(new_field) = lookup(new, name) else {
            let message = format!("removing property \"{name}\" is a breaking change");
            return Err(FieldError::new(field_path, message));
        };
        compare_field(name, old_field, new_field, &field_path)?;
    }

    for (name, new_field) in new {
        if new_field.required && lookup(old, name).is_none() {
            let message = format!("adding required property \"{name}\" is a breaking change");
            return Err(FieldError::new(format!("{path}.{name}"), message));
        }
    }
    Ok(())
}

fn compare_field(
    name: &str,
    old: &SchemaField,
    new: &SchemaField,
    path: &str,
) -> Result<(), FieldError> {
    if old.field_type != new.field_type {
        let (from, to) = (old.field_type, new.field_type);
        let message =
            format!("changing the type of \"{name}\" from {from} to {to} is a breaking change");
        return Err(FieldError::new(path, message));
    }
    if !old.required && new.required {
        let message = format!("making \"{name}\" required is a breaking change");
        return Err(FieldError::new(path, message));
    }

    if let (Some(old_items), Some(new_items)) = (&old.items, &new.items) {
        compare_field(name, old_items, new_items, &format!("{path}.items"))?;
    }
    if let Some(old_properties) = &old.properties {
        let new_properties = new.properties.as_deref().unwrap_or_default();
        compare_properties(old_properties, new_properties, &format!("{path}.properties"))?;
    }
    Ok(())
}

/// The value of `key`, treating an explicit `null` as absent.
pub(super) fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|value| !value.is_null())
}

/// Reads an optional string at `key`; errors name `<parent>.<key>`.
pub(super) fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<String>, FieldError> {
    match present(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(FieldError::new(format!("{parent}.{key}"), "must be a string")),
    }
}

/// Reads an optional boolean at `key`; errors name `<parent>.<key>`.
pub(super) fn optional_bool(
    object: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<bool>, FieldError> {
    match present(object, key) {
        None => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(FieldError::new(format!("{parent}.{key}"), "must be true or false")),
    }
}

fn optional_array(
    object: &Map<String, Value>,
    key: &str,
    parent: &str,
) -> Result<Option<Vec<Value>>, FieldError> {
    match present(object, key) {
        None => Ok(None),
        Some(Value::Array(values)) => Ok(Some(values.clone())),
        Some(_) => Err(FieldError::new(format!("{parent}.{key}"), "must be an array")),
    }
}

/// The JSON kind of a value for error messages, e.g. `string`.
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema(value: Value) -> BucketSchema {
        match BucketSchema::parse(&value) {
            Ok(schema) => schema,
            Err(err) => panic!("schema rejected: {err:?}"),
        }
    }

    fn rejection(value: Value) -> FieldError {
        match BucketSchema::parse(&value) {
            Ok(schema) => panic!("schema accepted: {schema:?}"),
            Err(err) => err,
        }
    }

    fn field_rejection(field: Value) -> FieldError {
        rejection(json!({"properties": {"f": field}}))
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn check(schema: &BucketSchema, fields: Value) -> Result<(), FieldError> {
        schema.validate_object(&object(fields), &[])
    }

    fn check_err(schema: &BucketSchema, fields: Value) -> FieldError {
        match check(schema, fields) {
            Ok(()) => panic!("object accepted"),
            Err(err) => err,
        }
    }

    fn sdk_field(field_type: &str) -> Value {
        json!({
            "type": field_type, "description": null, "default": null, "required": false,
            "enum": null, "examples": null, "items": null, "properties": null
        })
    }

    #[test]
    fn field_types_round_trip_their_wire_names() {
        for field_type in FieldType::ALL {
            assert_eq!(FieldType::parse(field_type.as_str()), Some(field_type));
            assert_eq!(field_type.to_string(), field_type.as_str());
            assert_eq!(serde_json::to_value(field_type).ok(), Some(json!(field_type.as_str())));
        }
        assert_eq!(FieldType::parse("VIDEO"), None);
        assert_eq!(FieldType::parse("keyword"), None);

        let blobs: Vec<_> = FieldType::ALL.into_iter().filter(|t| t.is_blob()).collect();
        let expected = [
            FieldType::Text,
            FieldType::Image,
            FieldType::Audio,
            FieldType::Video,
            FieldType::Pdf,
            FieldType::Excel,
        ];
        assert_eq!(blobs, expected);
    }

    #[test]
    fn accepts_the_sdk_shape_with_every_key_null() {
        let parsed = schema(json!({"properties": {"title": sdk_field("string")}}));
        assert_eq!(parsed.property("title"), Some(&SchemaField::new(FieldType::String)));
        assert_eq!(
            parsed.to_json(),
            json!({"properties": {"title": {"type": "string", "required": false}}})
        );
    }

    #[test]
    fn accepts_what_the_sdk_serialises_for_nested_fields() {
        let sent = json!({"properties": {
            "tags": {"type": "array", "items": {"type": "string", "required": false},
                     "required": false},
            "clip": {"type": "video", "required": true},
            "addr": {"type": "object", "required": false,
                     "properties": {"city": {"type": "string", "required": false, "default": null}}}
        }});
        let parsed = schema(sent);

        let expected = json!({"properties": {
            "tags": {"type": "array", "required": false,
                     "items": {"type": "string", "required": false}},
            "clip": {"type": "video", "required": true},
            "addr": {"type": "object", "required": false,
                     "properties": {"city": {"type": "string", "required": false}}}
        }});
        assert_eq!(parsed.to_json(), expected);
    }

    #[test]
    fn accepts_an_empty_schema_and_ignores_unknown_keys() {
        assert_eq!(schema(json!({"properties": {}})), BucketSchema::default());

        let parsed = schema(json!({
            "properties": {"title": {"type": "string", "x-ui": {"widget": "input"}}},
            "additional": true
        }));
        assert_eq!(parsed.property("title"), Some(&SchemaField::new(FieldType::String)));
    }

    #[test]
    fn echoes_a_full_schema_in_declaration_order() {
        let input = json!({"properties": {
            "zeta": {"type": "string", "required": true, "description": "last letter",
                     "default": "a", "enum": ["a", "b"], "examples": ["a"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {"type": "object", "properties": {"city": {"type": "string"}}},
            "video": {"type": "video", "required": true}
        }});
        let parsed = schema(input);

        let expected = json!({"properties": {
            "zeta": {"type": "string", "required": true, "description": "last letter",
                     "default": "a", "enum": ["a", "b"], "examples": ["a"]},
            "tags": {"type": "array", "required": false,
                     "items": {"type": "string", "required": false}},
            "address": {"type": "object", "required": false,
                        "properties": {"city": {"type": "string", "required": false}}},
            "video": {"type": "video", "required": true}
        }});
        let echoed = parsed.to_json();
        assert_eq!(echoed.to_string(), expected.to_string());
        assert_eq!(schema(echoed), parsed);
    }

    #[test]
    fn requires_an_object_with_properties() {
        let err = rejection(json!([]));
        assert_eq!(err, FieldError::new("bucket_schema", "must be an object"));

        let err = rejection(json!({}));
        assert_eq!(err, FieldError::new("bucket_schema.properties", "is required"));
        let err = rejection(json!({"properties": null}));
        assert_eq!(err, FieldError::new("bucket_schema.properties", "is required"));

        let err = rejection(json!({"properties": ["title"]}));
        assert_eq!(err, FieldError::new("bucket_schema.properties", "must be an object"));
    }

    #[test]
    fn requires_each_field_to_be_an_object_with_a_known_type() {
        let err = rejection(json!({"properties": {"title": "string"}}));
        assert_eq!(err, FieldError::new("bucket_schema.properties.title", "must be an object"));

        for field in [json!({}), json!({"type": null, "required": true})] {
            let err = field_rejection(field);
            assert_eq!(err, FieldError::new("bucket_schema.properties.f.type", "is required"));
        }
        let err = field_rejection(json!({"type": 3}));
        assert_eq!(err.message, "must be a string");

        let err = rejection(json!({"properties": {"title": {"type": "VIDEO"}}}));
        assert_eq!(err.field, "bucket_schema.properties.title.type");
        assert_eq!(
            err.message,
            "unknown field type \"VIDEO\"; expected one of string, number, integer, float, \
             boolean, object, array, date, datetime, text, image, audio, video, pdf, excel"
        );
    }

    #[test]
    fn checks_the_types_of_optional_keys() {
        let err = field_rejection(json!({"type": "string", "description": 1}));
        assert_eq!(
            err,
            FieldError::new("bucket_schema.properties.f.description", "must be a string")
        );

        let err = field_rejection(json!({"type": "string", "required": "yes"}));
        assert_eq!(
            err,
            FieldError::new("bucket_schema.properties.f.required", "must be true or false")
        );

        let err = field_rejection(json!({"type": "string", "examples": "a"}));
        assert_eq!(err, FieldError::new("bucket_schema.properties.f.examples", "must be an array"));

        let err = field_rejection(json!({"type": "string", "enum": "a"}));
        assert_eq!(err, FieldError::new("bucket_schema.properties.f.enum", "must be an array"));
    }

    #[test]
    fn validates_property_names() {
        for name in ["title", "_private", "a1_B", &"x".repeat(MAX_PROPERTY_NAME_LEN)] {
            schema(json!({"properties": {name: {"type": "string"}}}));
        }

        for name in ["", "1st", "bad-name", "with space", "émoji", &"x".repeat(129)] {
            let err = rejection(json!({"properties": {name: {"type": "string"}}}));
            assert_eq!(err.field, format!("bucket_schema.properties.{name}"), "{name}");
        }

        let err = rejection(json!({"properties": {
            "address": {"type": "object", "properties": {"zip-code": {"type": "string"}}}
        }}));
        assert_eq!(err.field, "bucket_schema.properties.address.properties.zip-code");
        assert!(err.message.contains("only letters, digits and '_'"), "{}", err.message);
    }

    #[test]
    fn allows_items_only_on_arrays_and_properties_only_on_objects() {
        let err = field_rejection(json!({"type": "string", "items": {"type": "string"}}));
        assert_eq!(err.field, "bucket_schema.properties.f.items");
        assert_eq!(err.message, "is only allowed on array fields, not on string fields");

        let err = field_rejection(json!({"type": "array", "properties": {}}));
        assert_eq!(err.field, "bucket_schema.properties.f.properties");
        assert_eq!(err.message, "is only allowed on object fields, not on array fields");

        let parsed = schema(json!({"properties": {"f": sdk_field("integer")}}));
        assert_eq!(parsed.property("f").map(|f| f.field_type), Some(FieldType::Integer));

        let err = field_rejection(json!({"type": "array", "items": {"type": "bogus"}}));
        assert_eq!(err.field, "bucket_schema.properties.f.items.type");
    }

    #[test]
    fn parses_nested_fields_recursively() {
        let parsed = schema(json!({"properties": {"people": {
            "type": "array",
            "items": {"type": "object", "properties": {
                "name": sdk_field("string"),
                "born": {"type": "date", "required": true}
            }}
        }}}));

        let people = parsed.property("people");
        let item = people.and_then(|f| f.items.as_deref());
        assert_eq!(
            item.and_then(|i| i.property("name")),
            Some(&SchemaField::new(FieldType::String))
        );
        assert_eq!(item.and_then(|i| i.property("born")).map(|f| f.required), Some(true));
    }

    #[test]
    fn keeps_blob_types_at_the_top_level() {
        let parsed = schema(json!({"properties": {"photo": sdk_field("image")}}));
        assert_eq!(parsed.blob_property("photo"), Some(FieldType::Image));

        let err = rejection(json!({"properties": {
            "gallery": {"type": "object", "properties": {"photo": {"type": "image"}}}
        }}));
        assert_eq!(err.field, "bucket_schema.properties.gallery.properties.photo.type");
        assert_eq!(err.message, "blob type \"image\" is only allowed on top-level properties");

        let err = field_rejection(json!({"type": "array", "items": {"type": "video"}}));
        assert_eq!(err.field, "bucket_schema.properties.f.items.type");
    }

    #[test]
    fn validates_defaults_against_the_field() {
        let parsed = schema(json!({"properties": {
            "rank": {"type": "integer", "default": 3},
            "when": {"type": "date", "default": "2024-02-29"},
            "size": {"type": "string", "enum": ["s", "m"], "default": "m"}
        }}));
        assert_eq!(parsed.property("rank").and_then(|f| f.default.clone()), Some(json!(3)));

        let err = field_rejection(json!({"type": "string", "default": 5}));
        assert_eq!(
            err,
            FieldError::new("bucket_schema.properties.f.default", "must be a string, got number")
        );

        let err = field_rejection(json!({"type": "integer", "default": 1.5}));
        assert_eq!(err.message, "must be an integer, got number");

        let err = field_rejection(json!({"type": "date", "default": "2023-02-29"}));
        assert_eq!(err.message, "\"2023-02-29\" is not a valid date (YYYY-MM-DD)");

        let err = field_rejection(json!({"type": "string", "enum": ["s", "m"], "default": "xl"}));
        assert_eq!(err.message, "must be one of \"s\", \"m\"");

        let err = field_rejection(json!({"type": "text", "default": "hello"}));
        assert_eq!(
            err,
            FieldError::new(
                "bucket_schema.properties.f.default",
                "is not allowed on blob properties"
            )
        );
    }

    #[test]
    fn validates_nested_defaults_with_their_paths() {
        let err = field_rejection(json!({
            "type": "object",
            "properties": {"city": {"type": "string", "required": true}},
            "default": {"zip": "1000"}
        }));
        assert_eq!(err, FieldError::new("bucket_schema.properties.f.default.city", "is required"));

        let err = field_rejection(json!({
            "type": "array", "items": {"type": "integer"}, "default": [1, 2, "3"]
        }));
        assert_eq!(err.field, "bucket_schema.properties.f.default[2]");
    }

    #[test]
    fn validates_enum_values_against_the_type() {
        let err = field_rejection(json!({"type": "integer", "enum": [1, "2"]}));
        assert_eq!(
            err,
            FieldError::new("bucket_schema.properties.f.enum[1]", "must be an integer, got string")
        );

        let err = field_rejection(json!({"type": "string", "enum": []}));
        assert_eq!(err.message, "must list at least one value");

        let err = field_rejection(json!({"type": "pdf", "enum": ["a"]}));
        assert_eq!(err.message, "is not allowed on blob properties");
    }

    #[test]
    fn enforces_the_property_and_depth_limits() {
        let many = |n: usize| -> Value {
            let properties: Map<String, Value> =
                (0..n).map(|i| (format!("p{i}"), json!({"type": "string"}))).collect();
            json!({"properties": properties})
        };
        assert_eq!(schema(many(MAX_PROPERTIES)).properties.len(), MAX_PROPERTIES);
        let err = rejection(many(MAX_PROPERTIES + 1));
        assert_eq!(err.field, "bucket_schema.properties");
        assert_eq!(err.message, "declares 257 properties; at most 256 are allowed");

        let nested = |levels: usize| -> Value {
            let mut field = json!({"type": "string"});
            for _ in 1..levels {
                field = json!({"type": "object", "properties": {"n": field}});
            }
            json!({"properties": {"n": field}})
        };
        schema(nested(MAX_DEPTH));
        let err = rejection(nested(MAX_DEPTH + 1));
        let expected_path = format!("bucket_schema.properties.n{}", ".properties.n".repeat(8));
        assert_eq!(err.field, expected_path);
        assert_eq!(err.message, "the schema nests deeper than 8 levels");
    }

    #[test]
    fn lists_blob_properties() {
        let parsed = schema(json!({"properties": {
            "title": {"type": "string"}, "clip": {"type": "video"}, "notes": {"type": "text"}
        }}));

        assert_eq!(parsed.blob_property("clip"), Some(FieldType::Video));
        assert_eq!(parsed.blob_property("title"), None);
        assert_eq!(parsed.blob_property("missing"), None);

        let blobs: Vec<_> = parsed.blob_properties().collect();
        assert_eq!(blobs, [("clip", FieldType::Video), ("notes", FieldType::Text)]);
    }

    fn typed_schema() -> BucketSchema {
        schema(json!({"properties": {
            "title": {"type": "string"},
            "score": {"type": "number"},
            "ratio": {"type": "float"},
            "rank": {"type": "integer"},
            "public": {"type": "boolean"},
            "day": {"type": "date"},
            "at": {"type": "datetime"},
            "extra": {"type": "object"},
            "list": {"type": "array"}
        }}))
    }

    #[test]
    fn accepts_values_of_the_declared_types() {
        let parsed = typed_schema();
        let fields = json!({
            "title": "t", "score": 1.5, "ratio": 2, "rank": 7, "public": false,
            "day": "2024-02-29", "at": "2026-01-01T00:00:00Z", "extra": {"any": 1},
            "list": [1, "two"], "undeclared": {"kept": true}
        });
        assert_eq!(check(&parsed, fields), Ok(()));

        assert_eq!(
            check(&parsed, json!({"rank": 5.0, "at": "2026-01-01T10:20:30.123+02:00"})),
            Ok(())
        );
        assert_eq!(check(&parsed, json!({"title": null, "rank": -3})), Ok(()));
        assert_eq!(check(&parsed, json!({})), Ok(()));
    }

    #[test]
    fn rejects_values_of_other_types() {
        let parsed = typed_schema();
        let cases = [
            (json!({"title": 1}), "title", "must be a string, got number"),
            (json!({"score": "1"}), "score", "must be a number, got string"),
            (json!({"ratio": true}), "ratio", "must be a number, got boolean"),
            (json!({"rank": 1.5}), "rank", "must be an integer, got number"),
            (json!({"rank": "5"}), "rank", "must be an integer, got string"),
            (json!({"public": "true"}), "public", "must be true or false, got string"),
            (json!({"extra": []}), "extra", "must be an object, got array"),
            (json!({"list": {}}), "list", "must be an array, got object"),
            (json!({"day": 20240101}), "day", "must be a date (YYYY-MM-DD), got number"),
            (json!({"at": 0}), "at", "must be an RFC 3339 datetime, got number"),
        ];
        for (fields, field, message) in cases {
            assert_eq!(check_err(&parsed, fields), FieldError::new(field, message));
        }
    }

    #[test]
    fn checks_calendar_dates_and_rfc3339_datetimes() {
        let parsed = typed_schema();
        for day in ["2023-02-29", "2024-13-01", "2024-1-01", "24-01-01", "2024-01-01T00:00:00Z"] {
            let err = check_err(&parsed, json!({"day": day}));
            assert_eq!(err.field, "day", "{day}");
        }
        assert_eq!(check(&parsed, json!({"day": "0001-12-31"})), Ok(()));

        for at in ["2026-01-01", "2026-01-01T00:00:00", "2026-01-01X00:00:00Z", "yesterday"] {
            let err = check_err(&parsed, json!({"at": at}));
            assert_eq!(err.message, format!("\"{at}\" is not a valid RFC 3339 datetime"));
        }
        assert_eq!(check(&parsed, json!({"at": "2026-01-01 00:00:00z"})), Ok(()));
    }

    #[test]
    fn checks_nested_objects_and_array_items_with_paths() {
        let parsed = schema(json!({"properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {"type": "object", "properties": {
                "city": {"type": "string", "required": true},
                "geo": {"type": "object", "properties": {"lat": {"type": "number"}}}
            }},
            "people": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}
            }}}
        }}));

        let err = check_err(&parsed, json!({"tags": ["a", "b", 3]}));
        assert_eq!(err, FieldError::new("tags[2]", "must be a string, got number"));

        let err = check_err(&parsed, json!({"tags": ["a", null]}));
        assert_eq!(err, FieldError::new("tags[1]", "must be a string, got null"));

        let err = check_err(&parsed, json!({"address": {"zip": "1000"}}));
        assert_eq!(err, FieldError::new("address.city", "is required"));

        let err = check_err(&parsed, json!({"address": {"city": "Bern", "geo": {"lat": "46"}}}));
        assert_eq!(err.field, "address.geo.lat");

        let err = check_err(&parsed, json!({"people": [{"name": "a"}, {"name": 2}]}));
        assert_eq!(err.field, "people[1].name");

        let fields = json!({"address": {"city": "Bern", "extra": 1}, "people": [{"age": 3}]});
        assert_eq!(check(&parsed, fields), Ok(()));
    }

    #[test]
    fn checks_enum_membership_comparing_numbers_by_value() {
        let parsed = schema(json!({"properties": {
            "size": {"type": "string", "enum": ["s", "m", "l"]},
            "level": {"type": "number", "enum": [1, 2.5]},
            "many": {"type": "integer", "enum": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
        }}));

        assert_eq!(check(&parsed, json!({"size": "m", "level": 1.0})), Ok(()));
        assert_eq!(check(&parsed, json!({"level": 2.5})), Ok(()));

        let err = check_err(&parsed, json!({"size": "xl"}));
        assert_eq!(err, FieldError::new("size", "must be one of \"s\", \"m\", \"l\""));

        let err = check_err(&parsed, json!({"level": 2}));
        assert_eq!(err.message, "must be one of 1, 2.5");

        let err = check_err(&parsed, json!({"many": 11}));
        assert_eq!(err.message, "must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, … (11 in all)");
    }

    #[test]
    fn requires_required_metadata_and_blob_properties() {
        let parsed = schema(json!({"properties": {
            "title": {"type": "string", "required": true},
            "clip": {"type": "video", "required": true},
            "cover": {"type": "image"}
        }}));

        let err = check_err(&parsed, json!({}));
        assert_eq!(err, FieldError::new("title", "is required"));
        let err = check_err(&parsed, json!({"title": null}));
        assert_eq!(err, FieldError::new("title", "is required"));

        let fields = object(json!({"title": "t"}));
        let err = parsed.validate_object(&fields, &["cover"]);
        assert_eq!(err, Err(FieldError::new("blobs", "blob property \"clip\" is required")));
        assert_eq!(parsed.validate_object(&fields, &["clip"]), Ok(()));
    }

    fn change(old: Value, new: Value) -> Result<(), FieldError> {
        schema(old).is_compatible_change(&schema(new))
    }

    #[test]
    fn allows_compatible_schema_changes() {
        let old = json!({"properties": {
            "title": {"type": "string", "required": true},
            "tags": {"type": "array", "items": {"type": "string"}}
        }});
        assert_eq!(change(old.clone(), old.clone()), Ok(()));

        let new = json!({"properties": {
            "title": {"type": "string", "description": "now documented"},
            "tags": {"type": "array"},
            "added": {"type": "integer"}
        }});
        assert_eq!(change(old, new), Ok(()));
    }

    #[test]
    fn names_the_first_breaking_change() {
        let old = json!({"properties": {"title": {"type": "string"}, "rank": {"type": "integer"}}});

        let err = change(old.clone(), json!({"properties": {"rank": {"type": "integer"}}}));
        let message = "removing property \"title\" is a breaking change";
        assert_eq!(err, Err(FieldError::new("bucket_schema.properties.title", message)));

        let new = json!({"properties": {"title": {"type": "string"}, "rank": {"type": "number"}}});
        let err = change(old.clone(), new);
        let message = "changing the type of \"rank\" from integer to number is a breaking change";
        assert_eq!(err, Err(FieldError::new("bucket_schema.properties.rank", message)));

        let new = json!({"properties": {
            "title": {"type": "string", "required": true}, "rank": {"type": "integer"}
        }});
        let err = change(old.clone(), new);
        let message = "making \"title\" required is a breaking change";
        assert_eq!(err, Err(FieldError::new("bucket_schema.properties.title", message)));

        let mut new = old.clone();
        new["properties"]["clip"] = json!({"type": "video", "required": true});
        let err = change(old, new);
        let message = "adding required property \"clip\" is a breaking change";
        assert_eq!(err, Err(FieldError::new("bucket_schema.properties.clip", message)));
    }

    #[test]
    fn finds_breaking_changes_in_nested_fields() {
        let old = json!({"properties": {
            "address": {"type": "object", "properties": {"city": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "string"}}
        }});

        let mut new = old.clone();
        new["properties"]["address"]["properties"] = json!({"town": {"type": "string"}});
        let err = change(old.clone(), new).err().map(|e| e.field);
        assert_eq!(err.as_deref(), Some("bucket_schema.properties.address.properties.city"));

        let mut new = old.clone();
        new["properties"]["tags"]["items"] = json!({"type": "integer"});
        let err = change(old, new).err().map(|e| e.field);
        assert_eq!(err.as_deref(), Some("bucket_schema.properties.tags.items"));
    }
}
