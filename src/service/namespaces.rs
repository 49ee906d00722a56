//! Namespaces: an organization's top-level containers of buckets.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::api::auth::Caller;
use crate::api::pagination::PageParams;
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
use crate::model::{TaskType, now, parse_time};
use crate::service::{Lookup, list_filter, tasks};
use crate::store::{ClaimedJob, Scope, StoreError, Table};

const NAME_MIN: usize = 3;
const NAME_MAX: usize = 64;
const DESCRIPTION_MAX: usize = 2000;
const PAYLOAD_INDEX_TYPES: [&str; 8] =
    ["keyword", "integer", "float", "bool", "geo", "datetime", "text", "uuid"];

/// A feature extractor as a request names it.
#[derive(Debug, Clone, Deserialize)]
pub struct FeatureExtractorInput {
    pub feature_extractor_name: String,
    pub version: String,
    pub params: Option<Map<String, Value>>,
}

/// A payload index as a request names it.
#[derive(Debug, Clone, Deserialize)]
pub struct PayloadIndexInput {
    pub field_name: String,
    #[serde(rename = "type")]
    pub index_type: String,
    pub field_schema: Option<Value>,
    pub is_protected: Option<bool>,
}

/// The body of `POST /v1/namespaces`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateNamespace {
    pub namespace_id: Option<String>,
    pub namespace_name: String,
    pub mode: Option<String>,
    pub namespace_type: Option<String>,
    pub scope: Option<String>,
    pub description: Option<String>,
    pub features: Option<Vec<String>>,
    pub feature_extractors: Option<Vec<FeatureExtractorInput>>,
    pub vector_configs: Option<Vec<Value>>,
    pub payload_indexes: Option<Vec<PayloadIndexInput>>,
    pub auto_create_indexes: Option<bool>,
    pub adaptive_indexing: Option<bool>,
    pub ttl_seconds: Option<i64>,
    pub infrastructure: Option<Value>,
    pub trusted_issuers: Option<Vec<Value>>,
    pub tiering: Option<Value>,
    pub spend_budget: Option<Value>,
    pub cost_cap_override: Option<Value>,
}

/// The body of `PUT` and `PATCH /v1/namespaces/{id}`; PUT reads only its first two fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UpdateNamespace {
    pub namespace_name: Option<String>,
    pub payload_indexes: Option<Vec<PayloadIndexInput>>,
    pub description: Option<String>,
    pub feature_extractors: Option<Vec<FeatureExtractorInput>>,
    pub auto_create_indexes: Option<bool>,
    pub adaptive_indexing: Option<bool>,
    pub infrastructure: Option<Value>,
    pub trusted_issuers: Option<Vec<Value>>,
    pub spend_budget: Option<Value>,
    pub pinned: Option<Value>,
    pub tiering: Option<Value>,
    pub cost_cap_override: Option<Value>,
    #[serde(default, deserialize_with = "crate::service::present")]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::service::present")]
    pub ttl_seconds: Option<Option<i64>>,
}

/// The body of `POST /v1/namespaces/list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListNamespaces {
    #[serde(flatten)]
    pub page: PageParams,
    pub filters: Option<Value>,
    pub sort: Option<Value>,
    pub sorts: Option<Vec<Value>>,
    pub search: Option<String>,
    pub case_sensitive: Option<bool>,
}

/// Creates a namespace.
///
/// # Errors
///
/// 422 for invalid fields, 409 when the name or a forced id is taken.
pub async fn create(state: &AppState, caller: &Caller, req: CreateNamespace) -> Result<Value> {
    check_name(&req.namespace_name)?;
    let id = match &req.namespace_id {
        Some(id) => check_forced_id(id)?,
        None => crate::model::new_id("ns_", 12),
    };
    check_optional_enum("mode", req.mode.as_deref(), &["managed"])?;
    check_optional_enum("namespace_type", req.namespace_type.as_deref(), &["standard"])?;
    check_optional_enum("scope", req.scope.as_deref(), &["org"])?;
    check_description(req.description.as_deref())?;
    if let Some(ttl) = req.ttl_seconds
        && ttl < 60
    {
        return Err(Error::invalid("ttl_seconds", "expected at least 60"));
    }

    let created_at = now();
    let expires_at = req.ttl_seconds.map(expiry_after);
    let doc = json!({
        "object": "namespace",
        "namespace_id": id,
        "namespace_name": req.namespace_name,
        "description": req.description,
        "namespace_type": req.namespace_type.unwrap_or_else(|| "standard".into()),
        "scope": req.scope.unwrap_or_else(|| "org".into()),
        "mode": req.mode.unwrap_or_else(|| "managed".into()),
        "features": req.features,
        "feature_extractors": feature_extractors(req.feature_extractors.unwrap_or_default())?,
        "payload_indexes": payload_indexes(req.payload_indexes.unwrap_or_default())?,
        "auto_create_indexes": req.auto_create_indexes.unwrap_or(false),
        "adaptive_indexing": req.adaptive_indexing.unwrap_or(false),
        "vector_configs": req.vector_configs,
        "infrastructure": req.infrastructure,
        "trusted_issuers": req.trusted_issuers,
        "tiering": req.tiering,
        "spend_budget": req.spend_budget,
        "cost_cap_override": req.cost_cap_override,
        "namespace_ready": true,
        "created_at": created_at,
        "updated_at": created_at,
        "expires_at": expires_at,
    });

    let name = doc["namespace_name"].as_str().unwrap_or_default();
    state.store.insert_named(Table::Namespaces, &caller.org_id, &id, name, &doc).await.map_err(
        |e| match e {
            StoreError::Duplicate => name_taken(name),
            other => other.into(),
        },
    )?;
    tracing::info!(namespace.id = %id, "namespace created");
    crate::service::collections::ensure_for_namespace(state, &caller.org_id, &doc).await?;
    schedule_expiry(state, &caller.org_id, &doc).await?;
    with_counts(state, doc).await
}

/// Finds a namespace of the caller's organization by name or id.
///
/// # Errors
///
/// 404 when there is none.
pub async fn resolve(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    Ok(Value::clone(&*resolve_shared(state, caller, ident).await?))
}

/// Like [`resolve`], without copying the record: for the many requests that only read it.
///
/// # Errors
///
/// 404 when there is none.
pub async fn resolve_shared(state: &AppState, caller: &Caller, ident: &str) -> Result<Arc<Value>> {
    let cache = &state.namespace_cache;
    let lookup = Lookup { table: Table::Namespaces, resource: "namespace", cache };
    lookup.live(state, caller.scope(), &caller.org_id, ident).await
}

/// Writes a changed namespace record and forgets cached lookups.
async fn save(state: &AppState, id: &str, name: &str, doc: &Value) -> Result<()> {
    let saved = state.store.update_doc(Table::Namespaces, id, Some(name), doc).await;
    state.namespace_cache.clear();
    saved.map_err(|e| match e {
        StoreError::Duplicate => name_taken(name),
        other => other.into(),
    })?;
    Ok(())
}

/// Reads a namespace with its counts.
///
/// # Errors
///
/// 404 when there is none.
pub async fn get(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    let doc = resolve(state, caller, ident).await?;
    with_counts(state, doc).await
}

/// Lists the organization's namespaces.
///
/// # Errors
///
/// 422 for invalid filters or pagination.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    req: ListNamespaces,
    query: &PageParams,
) -> Result<Value> {
    let paging = req.page.clone().or(query).resolve(100, crate::api::pagination::MAX_LIMIT)?;
    let sort = req.sort.clone().or_else(|| req.sorts.as_ref().and_then(|s| s.first().cloned()));
    let search = req.search.as_deref().map(|s| ("namespace_name", s, req.case_sensitive));
    let deleting = Some(json!({"field": "deleting", "operator": "exists", "value": false}));
    let (filter, sort) = list_filter(req.filters.as_ref(), search, deleting, sort.as_ref())?;

    let spec = paging.spec(filter, sort, true);
    let page = state.store.list(Table::Namespaces, caller.scope(), &spec).await?;

    let mut results = Vec::with_capacity(page.rows.len());
    let (mut total_buckets, mut total_objects) = (0, 0);
    for row in &page.rows {
        let doc = with_counts(state, row.doc.clone()).await?;
        total_buckets += doc["bucket_count"].as_i64().unwrap_or(0);
        total_objects += doc["object_count"].as_i64().unwrap_or(0);
        results.push(doc);
    }
    let next = crate::service::next_cursor(&spec, &page);
    Ok(json!({
        "results": results,
        "pagination": paging.response(&page, next),
        "total_count": page.total.unwrap_or(0),
        "stats": {"total_namespaces": page.total, "total_buckets": total_buckets,
                  "total_objects": total_objects},
    }))
}

/// Replaces the fields that PUT may change: the name and the payload indexes.
///
/// # Errors
///
/// 404, 409 for a taken name, 422 for invalid fields.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    ident: &str,
    req: UpdateNamespace,
) -> Result<Value> {
    let req = UpdateNamespace {
        namespace_name: req.namespace_name,
        payload_indexes: req.payload_indexes,
        ..UpdateNamespace::default()
    };
    patch(state, caller, ident, req).await
}

/// Changes the fields a PATCH names; feature extractors are appended, not replaced.
///
/// # Errors
///
/// 404, 409 for a taken name, 422 for invalid fields.
pub async fn patch(
    state: &AppState,
    caller: &Caller,
    ident: &str,
    req: UpdateNamespace,
) -> Result<Value> {
    let mut doc = resolve(state, caller, ident).await?;
    let id = doc["namespace_id"].as_str().unwrap_or_default().to_string();

    if let Some(name) = &req.namespace_name {
        check_name(name)?;
        doc["namespace_name"] = json!(name);
    }
    if let Some(description) = &req.description {
        check_description(Some(description))?;
        doc["description"] = json!(description);
    }
    if let Some(indexes) = req.payload_indexes {
        doc["payload_indexes"] = payload_indexes(indexes)?;
    }
    if let Some(extractors) = req.feature_extractors {
        let mut all = doc["feature_extractors"].as_array().cloned().unwrap_or_default();
        for added in feature_extractors(extractors)?.as_array().into_iter().flatten() {
            if !all.iter().any(|e| e["feature_extractor_id"] == added["feature_extractor_id"]) {
                all.push(added.clone());
            }
        }
        doc["feature_extractors"] = Value::Array(all);
    }
    set_if_some(&mut doc, "auto_create_indexes", req.auto_create_indexes.map(Value::Bool));
    set_if_some(&mut doc, "adaptive_indexing", req.adaptive_indexing.map(Value::Bool));
    set_if_some(&mut doc, "infrastructure", req.infrastructure);
    set_if_some(&mut doc, "trusted_issuers", req.trusted_issuers.map(Value::Array));
    set_if_some(&mut doc, "spend_budget", req.spend_budget);
    set_if_some(&mut doc, "pinned", req.pinned);
    set_if_some(&mut doc, "tiering", req.tiering);
    set_if_some(&mut doc, "cost_cap_override", req.cost_cap_override);
    let old_expiry = doc["expires_at"].clone();
    apply_expiry(&mut doc, req.expires_at, req.ttl_seconds)?;
    doc["updated_at"] = json!(now());

    let name = doc["namespace_name"].as_str().unwrap_or_default().to_string();
    save(state, &id, &name, &doc).await?;
    crate::service::collections::ensure_for_namespace(state, &caller.org_id, &doc).await?;
    // Scheduled only once the new expiry is stored, so that the job reads it.
    if doc["expires_at"] != old_expiry {
        schedule_expiry(state, &caller.org_id, &doc).await?;
    }
    with_counts(state, doc).await
}

/// Starts deleting a namespace with everything in it, as a task the caller can poll.
///
/// # Errors
///
/// 404, or 409 while a bucket of the namespace is still being deleted and `force` is unset.
pub async fn delete(state: &AppState, caller: &Caller, ident: &str, force: bool) -> Result<Value> {
    let mut doc = resolve(state, caller, ident).await?;
    let id = doc["namespace_id"].as_str().unwrap_or_default().to_string();
    let name = doc["namespace_name"].as_str().unwrap_or_default().to_string();
    if !force && tasks::has_active(state, &caller.org_id, &id).await? {
        return Err(Error::conflict(
            "namespace_busy",
            format!("namespace {name} has work in progress; retry later or pass force=true"),
        ));
    }

    let inputs = json!({"namespace_id": id, "namespace_name": name});
    let task = tasks::create(state, &caller.org_id, TaskType::NamespaceDelete, inputs).await?;
    doc["deleting"] = json!(task["task_id"]);
    save(state, &id, &name, &doc).await?;
    tasks::start(state, &caller.org_id, JobKind::NamespaceDelete, &task).await?;

    Ok(json!({
        "task_id": task["task_id"],
        "status": "PENDING",
        "namespace_id": id,
        "namespace_name": name,
        "message": "namespace deletion started; poll the task for progress",
    }))
}

/// Schedules the deletion of a namespace that has an expiry time.
async fn schedule_expiry(state: &AppState, org_id: &str, doc: &Value) -> Result<()> {
    let Some(at) = doc["expires_at"].as_str() else { return Ok(()) };
    let payload = json!({"namespace_id": doc["namespace_id"]});
    jobs::enqueue_at(state, JobKind::NamespaceExpire, org_id, payload, at).await
}

/// Deletes a namespace whose expiry time has come. A namespace whose expiry was moved later or
/// cleared is left alone; the job scheduled for its new time handles it.
///
/// # Errors
///
/// A store failure; the job engine retries.
pub async fn run_expiry(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let id = job.payload["namespace_id"].as_str().unwrap_or_default();
    let row = state.store.get(Table::Namespaces, Scope::org(&job.org_id), id).await?;
    let Some(doc) = row.map(|r| r.doc).filter(|d| d.get("deleting").is_none()) else {
        return Ok(());
    };
    let due = doc["expires_at"].as_str().and_then(parse_time);
    if due.is_none_or(|t| t > time::OffsetDateTime::now_utc()) {
        return Ok(());
    }
    let caller = tasks::caller_for(state, &job.org_id, id).await?.caller;
    tracing::info!(namespace.id = %id, "namespace expired; deleting it");
    delete(state, &caller, id, true).await.map(|_| ())
}

/// Counts of a namespace.
///
/// # Errors
///
/// 404 when there is none.
pub async fn stats(state: &AppState, caller: &Caller, ident: &str) -> Result<Value> {
    let doc = resolve(state, caller, ident).await?;
    let id = doc["namespace_id"].as_str().unwrap_or_default();
    let (buckets, objects) = state.store.namespace_stats(id).await?;
    let (collections, documents) = state.store.namespace_processing_counts(id).await?;
    Ok(json!({
        "namespace_id": id,
        "document_count": documents,
        "document_count_complete": true,
        "bucket_count": buckets,
        "collection_count": collections,
        "object_count": objects.count,
        "total_size_bytes": objects.total_size,
    }))
}

async fn with_counts(state: &AppState, mut doc: Value) -> Result<Value> {
    let id = doc["namespace_id"].as_str().unwrap_or_default().to_string();
    let (buckets, objects) = state.store.namespace_stats(&id).await?;
    let index_count = doc["payload_indexes"].as_array().map_or(0, Vec::len);
    doc["bucket_count"] = json!(buckets);
    doc["object_count"] = json!(objects.count);
    let (collections, documents) = state.store.namespace_processing_counts(&id).await?;
    doc["document_count"] = json!(documents);
    doc["document_count_complete"] = json!(true);
    doc["collection_count"] = json!(collections);
    doc["payload_index_count"] = json!(index_count);
    if let Some(map) = doc.as_object_mut() {
        map.remove("deleting");
    }
    Ok(doc)
}

/// Deletes the namespace row once its buckets are gone; called by the deletion task.
pub(crate) async fn remove(state: &AppState, org_id: &str, namespace_id: &str) -> Result<()> {
    let scope = Scope::org(org_id);
    if state.store.get(Table::Namespaces, scope, namespace_id).await?.is_some() {
        // Thumbnails that documents stored stay in the blob store; only their records go.
        state.store.delete_namespace_processing(namespace_id).await?;
        state.store.delete_namespace_row(namespace_id).await?;
    }
    state.namespace_cache.clear();
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !(NAME_MIN..=NAME_MAX).contains(&name.len()) {
        return Err(Error::invalid(
            "namespace_name",
            format!("expected {NAME_MIN} to {NAME_MAX} characters"),
        ));
    }
    if !valid_chars || name.starts_with("ns_") {
        return Err(Error::invalid(
            "namespace_name",
            "expected letters, digits, '_' or '-', not starting with ns_",
        ));
    }
    Ok(())
}

fn check_forced_id(id: &str) -> Result<String> {
    let tail = id.strip_prefix("ns_").unwrap_or("");
    if tail.is_empty() || tail.len() > 64 || !tail.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            "namespace_id",
            "expected ns_ followed by 1 to 64 letters or digits",
        ));
    }
    Ok(id.to_string())
}

fn check_description(description: Option<&str>) -> Result<()> {
    match description {
        Some(d) if d.len() > DESCRIPTION_MAX => Err(Error::invalid(
            "description",
            format!("expected at most {DESCRIPTION_MAX} characters"),
        )),
        _ => Ok(()),
    }
}

fn check_optional_enum(field: &str, value: Option<&str>, allowed: &[&str]) -> Result<()> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(Error::invalid(
            field,
            format!("{v:?} is not supported; expected one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn feature_extractors(inputs: Vec<FeatureExtractorInput>) -> Result<Value> {
    let mut out = Vec::with_capacity(inputs.len());
    for (i, e) in inputs.into_iter().enumerate() {
        let name_ok = !e.feature_extractor_name.is_empty()
            && e.feature_extractor_name.len() <= 100
            && e.feature_extractor_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            return Err(Error::invalid(
                format!("feature_extractors[{i}].feature_extractor_name"),
                "expected 1 to 100 letters, digits or '_'",
            ));
        }
        if e.version.is_empty() || e.version.len() > 20 {
            return Err(Error::invalid(
                format!("feature_extractors[{i}].version"),
                "expected 1 to 20 characters",
            ));
        }
        if let Err(message) =
            crate::extract::check(&e.feature_extractor_name, &e.version, e.params.as_ref())
        {
            return Err(Error::Unprocessable {
                code: "feature_extractor_not_found",
                field: format!("feature_extractors[{i}]"),
                message,
            });
        }
        let id = format!("{}_{}", e.feature_extractor_name, e.version);
        out.push(json!({
            "feature_extractor_name": e.feature_extractor_name,
            "version": e.version,
            "params": e.params,
            "feature_extractor_id": id,
        }));
    }
    Ok(Value::Array(out))
}

fn payload_indexes(inputs: Vec<PayloadIndexInput>) -> Result<Value> {
    let mut out = Vec::with_capacity(inputs.len());
    for (i, index) in inputs.into_iter().enumerate() {
        if index.field_name.is_empty() || index.field_name.len() > 255 {
            return Err(Error::invalid(
                format!("payload_indexes[{i}].field_name"),
                "expected 1 to 255 characters",
            ));
        }
        if !PAYLOAD_INDEX_TYPES.contains(&index.index_type.as_str()) {
            return Err(Error::invalid(
                format!("payload_indexes[{i}].type"),
                format!("expected one of {}", PAYLOAD_INDEX_TYPES.join(", ")),
            ));
        }
        out.push(json!({
            "field_name": index.field_name,
            "type": index.index_type,
            "field_schema": index.field_schema,
            "is_protected": index.is_protected.unwrap_or(false),
        }));
    }
    Ok(Value::Array(out))
}

fn apply_expiry(
    doc: &mut Value,
    expires_at: Option<Option<String>>,
    ttl: Option<Option<i64>>,
) -> Result<()> {
    match (expires_at, ttl) {
        (Some(_), Some(_)) => {
            Err(Error::invalid("ttl_seconds", "send expires_at or ttl_seconds, not both"))
        }
        (Some(Some(at)), None) => {
            if parse_time(&at).is_none() {
                return Err(Error::invalid("expires_at", "expected an RFC 3339 timestamp"));
            }
            doc["expires_at"] = json!(at);
            Ok(())
        }
        (None, Some(Some(ttl))) if ttl < 60 => {
            Err(Error::invalid("ttl_seconds", "expected at least 60"))
        }
        (None, Some(Some(ttl))) => {
            doc["expires_at"] = json!(expiry_after(ttl));
            Ok(())
        }
        (Some(None), None) | (None, Some(None)) => {
            doc["expires_at"] = Value::Null;
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

fn expiry_after(ttl_seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(ttl_seconds);
    crate::model::format_time(at)
}

fn set_if_some(doc: &mut Value, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        doc[key] = value;
    }
}

fn name_taken(name: &str) -> Error {
    Error::conflict("namespace_name_taken", format!("a namespace named {name} already exists"))
}
