//! The passthrough extractor: the object's own fields as one document, no blob read.

use serde_json::{Map, Value, json};

use super::Document;
use super::text::optional_bool;

/// Keys of an object record that are sluice's bookkeeping rather than the caller's data.
const SYSTEM_KEYS: [&str; 16] = [
    "object_id",
    "bucket_id",
    "blobs",
    "status",
    "error",
    "created_at",
    "updated_at",
    "source_details",
    "document_count",
    "consistency",
    "auto_process",
    "key_prefix",
    "edges",
    "metadata",
    "idempotency_key",
    "skip_duplicates",
];

/// One document positioned `"object"`: the object's custom root fields, its `metadata`
/// (unless `preserve_metadata` is false), and a reference to each blob.
pub fn document(object: &Value, params: &Map<String, Value>) -> Document {
    let empty = Map::new();
    let record = object.as_object().unwrap_or(&empty);
    let mut fields: Map<String, Value> = record
        .iter()
        .filter(|(key, _)| !SYSTEM_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();

    let preserve = optional_bool(params, "preserve_metadata").ok().flatten().unwrap_or(true);
    if preserve {
        let metadata = record.get("metadata").filter(|m| m.is_object()).cloned();
        fields.insert("metadata".into(), metadata.unwrap_or_else(|| json!({})));
    }
    let blobs =
        record.get("blobs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    fields.insert("blobs".into(), Value::Array(blobs.iter().map(blob_reference).collect()));
    Document { position: "object".into(), fields, thumbnail: None }
}

/// Where a blob is and what it holds. The URL is the source URL for blobs that came from
/// one; blobs sent inline or uploaded have none, and the caller resolves them by `blob_id`.
fn blob_reference(blob: &Value) -> Value {
    let details = &blob["details"];
    json!({
        "property": blob["property"],
        "type": blob["type"],
        "blob_id": blob["blob_id"],
        "url": blob["properties"]["url"],
        "mime_type": details["mime_type"],
        "filename": details["filename"],
        "size_bytes": details["size_bytes"],
    })
}
