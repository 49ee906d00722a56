//! Collections and documents: where processing writes its results.
//!
//! Every feature extractor of a namespace writes into one collection, created with the
//! extractor and fed by every bucket of the namespace. Collections and documents are read-only
//! through the API; batches write them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::auth::NamespacedCaller;
use crate::api::pagination::PageParams;
use crate::error::{Error, Result};
use crate::model::{new_id, now};
use crate::service::{download_url, list_filter, next_cursor};
use crate::store::{Scope, StoreError, Table};

/// How long the thumbnail URLs in a document answer stay valid.
const THUMBNAIL_URL_TTL: Duration = Duration::from_secs(3600);

/// The body of `POST /v1/collections/list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListCollections {
    #[serde(flatten)]
    pub page: PageParams,
    pub filters: Option<Value>,
    pub sort: Option<Value>,
    pub search: Option<String>,
    pub case_sensitive: Option<bool>,
}

/// The body of `POST /v1/collections/{id}/documents/list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListDocuments {
    pub filters: Option<Value>,
    pub sort: Option<Value>,
    pub search: Option<String>,
    #[serde(flatten)]
    pub page: PageParams,
}

/// The query of the document routes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DocumentQuery {
    pub return_presigned_urls: Option<bool>,
    pub return_vectors: Option<bool>,
}

/// Creates the collection of every feature extractor of a namespace that has none yet.
///
/// # Errors
///
/// Fails on a store error.
pub async fn ensure_for_namespace(state: &AppState, org_id: &str, namespace: &Value) -> Result<()> {
    let namespace_id = namespace["namespace_id"].as_str().unwrap_or_default();
    let existing = state.store.namespace_collections(namespace_id).await?;
    let mut taken: Vec<String> =
        existing.iter().filter_map(|c| c["collection_name"].as_str().map(String::from)).collect();
    let extractors = namespace["feature_extractors"].as_array().cloned().unwrap_or_default();
    for (i, extractor) in extractors.iter().enumerate() {
        let already = existing.iter().filter(|c| c["feature_extractor"]["position"] == json!(i));
        if already.count() > 0 {
            continue;
        }
        let base = extractor["feature_extractor_id"].as_str().unwrap_or("collection").to_string();
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        let described = crate::extract::describe(&base).unwrap_or(Value::Null);
        let at = now();
        let params = extractor["params"].clone();
        let doc = json!({
            "collection_id": new_id("col_", 10),
            "collection_name": name,
            "description": format!("Documents written by {base} for namespace {namespace_id}"),
            "namespace_id": namespace_id,
            "feature_extractor": {
                "feature_extractor_name": extractor["feature_extractor_name"],
                "version": extractor["version"],
                "feature_extractor_id": base,
                "params": params,
                "parameters": params,
                "input_mappings": {},
                "field_passthrough": [],
                "include_all_source_fields": false,
                "position": i,
            },
            "source": {"type": "bucket", "bucket_ids": []},
            "input_schema": schema_of(&described, "input_schema"),
            "output_schema": schema_of(&described, "output_schema"),
            "enabled": true,
            "metadata": {},
            "created_at": at,
            "updated_at": at,
        });
        match state.store.insert_collection(org_id, namespace_id, &doc).await {
            Ok(()) | Err(StoreError::Duplicate) => {}
            Err(e) => return Err(e.into()),
        }
        taken.push(name);
    }
    Ok(())
}

/// An extractor's input or output schema, always with `properties`.
fn schema_of(described: &Value, key: &str) -> Value {
    match described.get(key) {
        Some(schema) if schema.get("properties").is_some() => schema.clone(),
        _ => json!({"type": "object", "properties": {}}),
    }
}

/// The collections a batch writes into: those named (by id or name), or every collection of
/// the namespace.
///
/// # Errors
///
/// 422 when a named collection is not one of the namespace's.
pub async fn resolve_scope(
    state: &AppState,
    namespace_id: &str,
    named: Option<&[String]>,
) -> Result<Vec<String>> {
    let all = state.store.namespace_collections(namespace_id).await?;
    let id_of = |c: &Value| c["collection_id"].as_str().unwrap_or_default().to_string();
    let Some(named) = named.filter(|n| !n.is_empty()) else {
        return Ok(all.iter().map(id_of).collect());
    };
    let mut out = Vec::with_capacity(named.len());
    for (i, ident) in named.iter().enumerate() {
        let found =
            all.iter().find(|c| c["collection_id"] == *ident || c["collection_name"] == *ident);
        match found {
            Some(c) => {
                let id = id_of(c);
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            None => {
                return Err(Error::Unprocessable {
                    code: "collection_not_found",
                    field: format!("collection_ids[{i}]"),
                    message: format!("the namespace has no collection {ident}"),
                });
            }
        }
    }
    Ok(out)
}

/// Lists a namespace's collections.
///
/// # Errors
///
/// 422 for invalid paging or filters.
pub async fn list(
    state: &AppState,
    caller: &NamespacedCaller,
    params: &PageParams,
    req: ListCollections,
) -> Result<Value> {
    let page_req = req.page.clone().or(params).resolve(100, 1000)?;
    let search = req.search.as_deref().map(|s| ("collection_name", s, req.case_sensitive));
    let (filter, sort) = list_filter(req.filters.as_ref(), search, None, req.sort.as_ref())?;
    let spec = page_req.spec(filter, sort, true);
    let page = state.store.list(Table::Collections, caller.scope(), &spec).await?;
    let cursor = next_cursor(&spec, &page);
    let buckets = state.store.bucket_ids(&caller.namespace_id).await?;
    let mut results = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        results.push(render(state, row.doc.clone(), &buckets).await?);
    }
    let total = page.total.unwrap_or(results.len() as i64);
    Ok(json!({
        "results": results,
        "pagination": page_req.response(&page, cursor),
        "total_count": total,
        "stats": {"total_collections": total},
        "warnings": [],
    }))
}

/// Reads a collection by id or name.
///
/// # Errors
///
/// 404 when the namespace has none.
pub async fn get(state: &AppState, caller: &NamespacedCaller, ident: &str) -> Result<Value> {
    let doc = find(state, caller, ident).await?;
    let buckets = state.store.bucket_ids(&caller.namespace_id).await?;
    render(state, doc, &buckets).await
}

/// Lists the documents of a collection.
///
/// # Errors
///
/// 404 for an unknown collection, 422 for invalid paging or filters.
pub async fn list_documents(
    state: &AppState,
    caller: &NamespacedCaller,
    ident: &str,
    params: &PageParams,
    query: &DocumentQuery,
    req: ListDocuments,
) -> Result<Value> {
    let collection = find(state, caller, ident).await?;
    let collection_id = collection["collection_id"].as_str().unwrap_or_default();
    let params = req.page.clone().or(params);
    let page_req = params.resolve(100, 1000)?;
    let search = req.search.as_deref().map(|s| ("text", s, None));
    let (filter, sort) = list_filter(req.filters.as_ref(), search, None, req.sort.as_ref())?;
    let spec = page_req.spec(filter, sort, true);
    let scope = Scope::collection(&caller.caller.org_id, &caller.namespace_id, collection_id);
    let page = state.store.list(Table::Documents, scope, &spec).await?;
    let cursor = next_cursor(&spec, &page);
    let mut results = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        results.push(render_document(state, row.doc.clone(), query).await?);
    }
    Ok(json!({
        "results": results,
        "pagination": page_req.response(&page, cursor),
        "total_documents": page.total,
        "stats": {},
        "warnings": [],
    }))
}

/// Reads one document of a collection.
///
/// # Errors
///
/// 404 when the collection or the document is unknown.
pub async fn get_document(
    state: &AppState,
    caller: &NamespacedCaller,
    ident: &str,
    document_id: &str,
    query: &DocumentQuery,
) -> Result<Value> {
    let collection = find(state, caller, ident).await?;
    let collection_id = collection["collection_id"].as_str().unwrap_or_default();
    let scope = Scope::collection(&caller.caller.org_id, &caller.namespace_id, collection_id);
    let row = state.store.get(Table::Documents, scope, document_id).await?;
    let doc = row.map(|r| r.doc).ok_or_else(|| Error::not_found("document", document_id))?;
    render_document(state, doc, query).await
}

/// Counts the documents of a collection.
///
/// # Errors
///
/// 404 for an unknown collection.
pub async fn count_documents(
    state: &AppState,
    caller: &NamespacedCaller,
    ident: &str,
) -> Result<Value> {
    let collection = find(state, caller, ident).await?;
    let id = collection["collection_id"].as_str().unwrap_or_default();
    let count = state.store.collection_document_count(id).await?;
    Ok(json!({"collection_id": id, "count": count}))
}

/// The built-in feature extractors.
pub fn extractors() -> Value {
    Value::Array(crate::extract::catalog())
}

/// One built-in feature extractor by id (`{name}_{version}`).
///
/// # Errors
///
/// 404 when there is none.
pub fn extractor(id: &str) -> Result<Value> {
    crate::extract::describe(id).ok_or_else(|| Error::not_found("feature_extractor", id))
}

async fn find(state: &AppState, caller: &NamespacedCaller, ident: &str) -> Result<Value> {
    let row = state.store.get(Table::Collections, caller.scope(), ident).await?;
    row.map(|r| r.doc).ok_or_else(|| Error::not_found("collection", ident))
}

async fn render(state: &AppState, mut doc: Value, bucket_ids: &[String]) -> Result<Value> {
    let id = doc["collection_id"].as_str().unwrap_or_default().to_string();
    doc["document_count"] = json!(state.store.collection_document_count(&id).await?);
    doc["source"]["bucket_ids"] =
        if bucket_ids.is_empty() { Value::Null } else { json!(bucket_ids) };
    if let Some(extractor) = doc["feature_extractor"].as_object_mut() {
        extractor.remove("position");
    }
    if let Some(map) = doc.as_object_mut() {
        map.remove("namespace_id");
    }
    Ok(doc)
}

/// A document as the API answers it: vectors only when asked for, and a fresh URL for its
/// thumbnail.
async fn render_document(state: &AppState, mut doc: Value, query: &DocumentQuery) -> Result<Value> {
    if query.return_vectors != Some(true)
        && let Some(map) = doc.as_object_mut()
    {
        map.remove("embedding");
    }
    let key = doc["_internal"]["thumbnail"]["storage_key"].as_str().map(String::from);
    if let Some(key) = key {
        let content_type = doc["_internal"]["thumbnail"]["content_type"].as_str().map(String::from);
        let url = download_url(state, &key, content_type.as_deref(), THUMBNAIL_URL_TTL).await?;
        doc["thumbnail_url"] = json!(url);
        if query.return_presigned_urls == Some(true) {
            let blob = json!({"field": "thumbnail", "role": "thumbnail", "type": "image",
                              "url": url, "presigned_url": url, "content_type": content_type});
            doc["document_blobs"] = json!([blob]);
        }
    }
    if let Some(internal) = doc["_internal"].as_object_mut() {
        internal.remove("thumbnail");
    }
    Ok(doc)
}
