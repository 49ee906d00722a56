//! A sync's `schema_mapping`: which blob property a synced file fills, and which of the
//! bucket's fields each file fills, and from what.
//!
//! Field values come from a constant, from the file's name (`filename_regex`), from its folders
//! under the sync's source path (`folder_path`), from a feed entry (`rss_field`) or from a
//! JSON API's item (`column`, a dot-separated path into the item). Object tags and user
//! metadata of cloud stores, drive properties and stream fields are refused at create with a
//! clear error rather than accepted and left empty.

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::model::schema::BucketSchema;
use crate::source::feed::lookup;

/// Sources a field mapping may name, per provider, and those sluice does not read.
const FEED_FIELDS: [&str; 6] = ["title", "author", "link", "categories", "summary", "published"];
const TRANSFORMS: [&str; 4] = ["lowercase", "uppercase", "trim", "json_parse"];

/// What a file brings to a field mapping.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts<'a> {
    /// The file's key relative to the sync's source path (a feed item's id).
    pub key: &'a str,
    pub filename: &'a str,
    /// A feed item's fields.
    pub item: Option<&'a Map<String, Value>>,
}

/// One field mapping, ready to apply.
#[derive(Debug)]
struct FieldRule {
    target: String,
    source: FieldSource,
    transform: Option<String>,
    required: bool,
}

#[derive(Debug)]
enum FieldSource {
    Constant(Value),
    FilenameRegex { pattern: Regex, default: Option<String> },
    FolderPath { segment: Option<i64>, full_path: bool },
    Item(String),
}

/// The field mappings of a sync, compiled.
#[derive(Debug, Default)]
pub struct FieldRules {
    rules: Vec<FieldRule>,
}

impl FieldRules {
    /// Compiles the field mappings of a checked `schema_mapping`.
    ///
    /// # Errors
    ///
    /// As [`check`].
    pub fn of(mapping: &Value, provider: &str) -> Result<Self> {
        let mut rules = Vec::new();
        let Some(entries) = mapping.get("mappings").and_then(Value::as_object) else {
            return Ok(Self { rules });
        };
        for (target, entry) in entries {
            if entry.get("target_type").and_then(Value::as_str).unwrap_or("field") == "blob" {
                continue;
            }
            rules.push(field_rule(target, entry, provider)?);
        }
        Ok(Self { rules })
    }

    /// The fields a file fills.
    ///
    /// # Errors
    ///
    /// A message naming the field when a required value is missing or a transform fails.
    pub fn apply(&self, file: &FileFacts<'_>) -> std::result::Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for rule in &self.rules {
            let value = match (rule.source.extract(file), &rule.transform) {
                (Some(value), Some(transform)) => Some(
                    apply_transform(value, transform)
                        .map_err(|e| format!("schema_mapping {}: {e}", rule.target))?,
                ),
                (value, _) => value,
            };
            match value {
                Some(value) if !value.is_null() => {
                    out.insert(rule.target.clone(), value);
                }
                _ if rule.required => {
                    return Err(format!(
                        "schema_mapping {}: the file {:?} gives no value for this required field",
                        rule.target, file.key
                    ));
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

impl FieldSource {
    fn extract(&self, file: &FileFacts<'_>) -> Option<Value> {
        match self {
            Self::Constant(value) => Some(value.clone()),
            Self::FilenameRegex { pattern, default } => pattern
                .captures(file.filename)
                .and_then(|c| c.get(1))
                .map(|m| json!(m.as_str()))
                .or_else(|| default.as_ref().map(|d| json!(d))),
            Self::FolderPath { segment, full_path } => {
                let folders: Vec<&str> =
                    file.key.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>();
                let folders = &folders[..folders.len().saturating_sub(1)];
                if *full_path {
                    return (!folders.is_empty()).then(|| json!(folders.join("/")));
                }
                let index = match segment {
                    Some(i) if *i < 0 => folders.len().checked_sub(i.unsigned_abs() as usize),
                    Some(i) => Some(*i as usize),
                    None => folders.len().checked_sub(1),
                };
                index.and_then(|i| folders.get(i)).map(|s| json!(s))
            }
            Self::Item(path) => {
                let item = Value::Object(file.item?.clone());
                lookup(&item, path).cloned()
            }
        }
    }
}

/// Applies a transform to a text value; text transforms apply to each text of a list too
/// (a feed entry's categories). Other values pass unchanged.
fn apply_transform(value: Value, transform: &str) -> std::result::Result<Value, String> {
    match value {
        Value::String(text) => Ok(match transform {
            "lowercase" => json!(text.to_lowercase()),
            "uppercase" => json!(text.to_uppercase()),
            "trim" => json!(text.trim()),
            _ => serde_json::from_str(&text).map_err(|e| format!("json_parse failed: {e}"))?,
        }),
        Value::Array(items) if transform != "json_parse" => Ok(Value::Array(
            items.into_iter().map(|v| apply_transform(v, transform)).collect::<Result<_, _>>()?,
        )),
        other => Ok(other),
    }
}

fn field_rule(target: &str, entry: &Value, provider: &str) -> Result<FieldRule> {
    let at = |key: &str| format!("schema_mapping.mappings.{target}.{key}");
    let source = entry
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid(at("source"), "expected an object with a type"))?;
    let kind = source.get("type").and_then(Value::as_str).unwrap_or_default();
    let text = |key: &str| source.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let source = match kind {
        "constant" => FieldSource::Constant(source.get("value").cloned().unwrap_or(Value::Null)),
        "filename_regex" => {
            let pattern =
                text("pattern").ok_or_else(|| Error::invalid(at("source.pattern"), "required"))?;
            let pattern = Regex::new(pattern)
                .map_err(|e| Error::invalid(at("source.pattern"), format!("not a regex: {e}")))?;
            if pattern.captures_len() != 2 {
                return Err(Error::invalid(
                    at("source.pattern"),
                    "expected exactly one capture group",
                ));
            }
            FieldSource::FilenameRegex { pattern, default: text("default").map(String::from) }
        }
        "folder_path" => {
            let segment =
                match source.get("segment") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().ok_or_else(|| {
                        Error::invalid(at("source.segment"), "expected an integer")
                    })?),
                };
            let full_path = source.get("full_path").and_then(Value::as_bool).unwrap_or(false);
            FieldSource::FolderPath { segment, full_path }
        }
        "rss_field" if provider == "rss" => {
            let field = text("field").unwrap_or_default();
            if !FEED_FIELDS.contains(&field) {
                return Err(Error::invalid(
                    at("source.field"),
                    format!("expected one of {}", FEED_FIELDS.join(", ")),
                ));
            }
            FieldSource::Item(field.to_string())
        }
        "column" if provider == "http_api" => {
            let name = text("name").ok_or_else(|| Error::invalid(at("source.name"), "required"))?;
            FieldSource::Item(name.to_string())
        }
        "rss_field" | "column" | "tag" | "metadata" | "drive_property" | "rtsp_field" => {
            return Err(Error::Unprocessable {
                code: "mapping_not_supported",
                field: at("source.type"),
                message: format!(
                    "a {kind} source is not read from {provider} syncs; use constant, \
                     filename_regex or folder_path{}",
                    match provider {
                        "rss" => ", or rss_field",
                        "http_api" => ", or column (a field of the API's item)",
                        _ => "",
                    }
                ),
            });
        }
        other => {
            return Err(Error::invalid(at("source.type"), format!("unknown source {other:?}")));
        }
    };
    let transform = match entry.get("transform") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if TRANSFORMS.contains(&t.as_str()) => Some(t.clone()),
        Some(_) => {
            return Err(Error::invalid(
                at("transform"),
                format!("expected one of {}", TRANSFORMS.join(", ")),
            ));
        }
    };
    let required = entry.get("required").and_then(Value::as_bool).unwrap_or(false);
    Ok(FieldRule { target: target.to_string(), source, transform, required })
}

/// Checks a `schema_mapping` against the bucket's schema and the sync's provider, and answers
/// it with the blob mapping a run uses added: `blob_property`, `blob_type` and an optional
/// `mime_type_override`. Without a blob mapping, the file fills the schema's first blob
/// property.
///
/// # Errors
///
/// 422 for a mapping onto a property the schema lacks, a blob mapping onto a field that is not
/// a blob, a source that the provider does not offer, or a malformed source.
pub fn check(given: Option<Value>, schema: &BucketSchema, provider: &str) -> Result<Value> {
    let given = given.filter(|g| !g.is_null());
    let entries = match &given {
        Some(mapping) => mapping
            .get("mappings")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| Error::invalid("schema_mapping.mappings", "expected an object"))?,
        None => Map::new(),
    };
    let mut blob = None;
    for (target, entry) in &entries {
        let field = format!("schema_mapping.mappings.{target}");
        match entry.get("target_type").and_then(Value::as_str).unwrap_or("field") {
            "blob" => {
                let property = entry.get("blob_property").and_then(Value::as_str).unwrap_or(target);
                if blob.is_some() {
                    return Err(Error::invalid(field, "a sync's file fills one blob property"));
                }
                blob = Some((property.to_string(), entry.clone()));
            }
            "field" => {
                let known = schema.property(target).is_some_and(|p| !p.field_type.is_blob());
                if !known {
                    return Err(Error::invalid(
                        field,
                        format!("{target:?} is not a field of the bucket's schema"),
                    ));
                }
                field_rule(target, entry, provider)?;
            }
            other => {
                return Err(Error::invalid(
                    format!("{field}.target_type"),
                    format!("expected blob or field, not {other:?}"),
                ));
            }
        }
    }
    let (property, entry) = match blob {
        Some(found) => found,
        None => {
            let first = schema.blob_properties().next().map(|(name, _)| name.to_string());
            let property = first.ok_or_else(|| {
                Error::invalid("schema_mapping", "the bucket's schema has no blob property to fill")
            })?;
            (property, Value::Null)
        }
    };
    let field_type = schema.blob_property(&property).ok_or_else(|| {
        Error::invalid(
            "schema_mapping",
            format!("{property:?} is not a blob property of the bucket"),
        )
    })?;
    let blob_type = entry
        .get("blob_type")
        .and_then(Value::as_str)
        .filter(|t| *t != "auto")
        .map_or_else(|| field_type.as_str().to_string(), String::from);
    let mut out = given.unwrap_or_else(|| json!({"mappings": {}}));
    out["blob_property"] = json!(property);
    out["blob_type"] = json!(blob_type);
    out["mime_type_override"] = entry.get("mime_type_override").cloned().unwrap_or(Value::Null);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(mappings: Value, provider: &str) -> FieldRules {
        FieldRules::of(&json!({ "mappings": mappings }), provider).unwrap()
    }

    #[test]
    fn fills_fields_from_names_folders_and_constants() {
        let rules = rules(
            json!({
                "team": {"source": {"type": "folder_path", "segment": 0},
                         "transform": "uppercase"},
                "parent": {"source": {"type": "folder_path"}},
                "folders": {"source": {"type": "folder_path", "full_path": true}},
                "day": {"source": {"type": "filename_regex", "pattern": "^(\\d{4}-\\d{2}-\\d{2})_",
                                   "default": "unknown"}},
                "origin": {"source": {"type": "constant", "value": {"env": "prod"}}},
            }),
            "s3",
        );
        let file = FileFacts {
            key: "sales/q4/2026-12-01_notes.txt",
            filename: "2026-12-01_notes.txt",
            item: None,
        };
        let fields = rules.apply(&file).unwrap();
        assert_eq!(fields["team"], "SALES");
        assert_eq!(fields["parent"], "q4");
        assert_eq!(fields["folders"], "sales/q4");
        assert_eq!(fields["day"], "2026-12-01");
        assert_eq!(fields["origin"], json!({"env": "prod"}));

        let flat = FileFacts { key: "x.txt", filename: "x.txt", item: None };
        let fields = rules.apply(&flat).unwrap();
        assert_eq!(fields["day"], "unknown");
        assert!(!fields.contains_key("team"), "{fields:?}");
    }

    #[test]
    fn a_required_field_without_a_value_fails_the_file() {
        let rules = rules(
            json!({"day": {"source": {"type": "filename_regex", "pattern": "^(\\d+)_"},
                           "required": true}}),
            "gcs",
        );
        let file = FileFacts { key: "a.txt", filename: "a.txt", item: None };
        assert!(rules.apply(&file).unwrap_err().contains("required"));
    }

    #[test]
    fn reads_feed_and_api_items() {
        let item = json!({"title": "  Hello ", "meta": {"tags": "[1, 2]"}});
        let item = item.as_object().unwrap();
        let file = FileFacts { key: "1", filename: "1.json", item: Some(item) };
        let rss = rules(
            json!({"t": {"source": {"type": "rss_field", "field": "title"},
                                     "transform": "trim"}}),
            "rss",
        );
        assert_eq!(rss.apply(&file).unwrap()["t"], "Hello");
        let api = rules(
            json!({"tags": {"source": {"type": "column", "name": "meta.tags"},
                                        "transform": "json_parse"}}),
            "http_api",
        );
        assert_eq!(api.apply(&file).unwrap()["tags"], json!([1, 2]));
    }

    #[test]
    fn refuses_sources_the_provider_does_not_offer() {
        for (source, provider) in [
            (json!({"type": "tag", "key": "k"}), "s3"),
            (json!({"type": "rss_field", "field": "title"}), "s3"),
            (json!({"type": "column", "name": "n"}), "rss"),
        ] {
            let mapping = json!({"mappings": {"f": {"source": source}}});
            let err = FieldRules::of(&mapping, provider).unwrap_err();
            assert!(matches!(err, Error::Unprocessable { code: "mapping_not_supported", .. }));
        }
        let two_groups = json!({"mappings": {"f": {"source": {"type": "filename_regex",
                                                               "pattern": "(a)(b)"}}}});
        assert!(matches!(FieldRules::of(&two_groups, "s3"), Err(Error::Invalid(_))));
    }
}
