//! Buckets: schema-checked containers of objects inside a namespace.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::api::auth::NamespacedCaller;
use crate::api::pagination::{MAX_LIMIT, PageParams};
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
use crate::model::schema::BucketSchema;
use crate::model::{StorageClass, TaskStatus, TaskType, now};
use crate::service::{Lookup, list_filter, next_cursor, tasks};
use crate::store::{ClaimedJob, ListSpec, ObjectStats, Scope, StoreError, Table};

const NAME_MAX: usize = 100;
const UNIQUE_KEY_FIELDS_MAX: usize = 8;
const POLICIES: [&str; 3] = ["insert", "update", "upsert"];

/// The body of `POST /v1/buckets`, and of PUT and PATCH, where every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BucketInput {
    pub bucket_name: Option<String>,
    pub description: Option<String>,
    pub bucket_schema: Option<Value>,
    pub storage_class: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub unique_key: Option<Value>,
    pub destination: Option<Value>,
    pub ingest_filter: Option<Value>,
    pub source_adapter: Option<Value>,
}

/// The body of `POST /v1/buckets/list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListBuckets {
    #[serde(flatten)]
    pub page: PageParams,
    pub filters: Option<Value>,
    pub sort: Option<Value>,
    pub sorts: Option<Vec<Value>>,
    pub search: Option<String>,
    pub case_sensitive: Option<bool>,
}

/// Which update a request is; they differ in what they may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Put,
    Patch,
}

/// Creates a bucket in the caller's namespace.
///
/// # Errors
///
/// 422 for invalid fields, 409 when the name is taken.
pub async fn create(
    state: &AppState,
    caller: &NamespacedCaller,
    req: BucketInput,
) -> Result<Value> {
    let name = req.bucket_name.clone().ok_or_else(|| Error::invalid("bucket_name", "required"))?;
    check_name(&name)?;
    let schema_json =
        req.bucket_schema.as_ref().ok_or_else(|| Error::invalid("bucket_schema", "required"))?;
    let schema = BucketSchema::parse(schema_json)?;
    let storage_class = parse_storage_class(req.storage_class.as_deref())?;
    let unique_key = match &req.unique_key {
        Some(v) if !v.is_null() => Some(parse_unique_key(v, &schema)?),
        _ => None,
    };
    check_object("destination", req.destination.as_ref(), &["connection_id"])?;
    check_object("ingest_filter", req.ingest_filter.as_ref(), &["retriever_id"])?;
    check_object("source_adapter", req.source_adapter.as_ref(), &["adapter_type"])?;

    let id = crate::model::new_id("bkt_", 12);
    let at = now();
    let doc = json!({
        "bucket_id": id,
        "bucket_name": name,
        "namespace_id": caller.namespace_id,
        "description": req.description,
        "bucket_schema": schema.to_json(),
        "unique_key": unique_key,
        "metadata": req.metadata.unwrap_or_default(),
        "storage_class": storage_class.as_str(),
        "destination": req.destination,
        "ingest_filter": req.ingest_filter,
        "source_adapter": req.source_adapter,
        "status": "ACTIVE",
        "is_locked": false,
        "created_at": at,
        "updated_at": at,
        "last_upload_at": null,
    });
    state.store.insert_bucket(caller.scope(), &id, &name, &doc).await.map_err(|e| match e {
        StoreError::Duplicate => name_taken(&name),
        other => other.into(),
    })?;
    tracing::info!(bucket.id = %id, "bucket created");
    Ok(with_stats(doc, ObjectStats::default()))
}

/// Finds a live bucket of the caller's namespace by id or name.
///
/// # Errors
///
/// 404 when there is none.
pub async fn resolve(state: &AppState, caller: &NamespacedCaller, ident: &str) -> Result<Value> {
    Ok(Value::clone(&*resolve_shared(state, caller, ident).await?))
}

/// Like [`resolve`], without copying the record: for the many requests that only read it.
///
/// # Errors
///
/// 404 when there is none.
pub async fn resolve_shared(
    state: &AppState,
    caller: &NamespacedCaller,
    ident: &str,
) -> Result<Arc<Value>> {
    let lookup = Lookup { table: Table::Buckets, resource: "bucket", cache: &state.bucket_cache };
    lookup.live(state, caller.scope(), &caller.namespace_id, ident).await
}

/// The parsed schema of a bucket record, cached by bucket and version.
///
/// # Errors
///
/// Fails only for a stored schema that no longer parses.
pub fn schema_of(state: &AppState, bucket: &Value) -> Result<Arc<BucketSchema>> {
    let key = format!("{}@{}", bucket["bucket_id"], bucket["updated_at"]);
    if let Some(schema) = state.schema_cache.get(&key) {
        return Ok(schema);
    }
    let schema = Arc::new(BucketSchema::parse(&bucket["bucket_schema"])?);
    state.schema_cache.insert(key, schema.clone());
    Ok(schema)
}

/// Reads a bucket with its statistics.
///
/// # Errors
///
/// 404 when there is none.
pub async fn get(state: &AppState, caller: &NamespacedCaller, ident: &str) -> Result<Value> {
    let doc = resolve(state, caller, ident).await?;
    let stats = state.store.bucket_stats(doc["bucket_id"].as_str().unwrap_or_default()).await?;
    Ok(with_stats(doc, stats))
}

/// Lists the namespace's buckets.
///
/// # Errors
///
/// 422 for invalid filters or pagination.
pub async fn list(
    state: &AppState,
    caller: &NamespacedCaller,
    req: ListBuckets,
    query: &PageParams,
) -> Result<Value> {
    let paging = req.page.clone().or(query).resolve(100, MAX_LIMIT)?;
    let sort = req.sort.clone().or_else(|| req.sorts.as_ref().and_then(|s| s.first().cloned()));
    let search = req.search.as_deref().map(|s| ("bucket_name", s, req.case_sensitive));
    let live = Some(json!({"field": "deleting", "operator": "exists", "value": false}));
    let (filter, sort) = list_filter(req.filters.as_ref(), search, live, sort.as_ref())?;

    let spec = paging.spec(filter, sort, true);
    let page = state.store.list(Table::Buckets, caller.scope(), &spec).await?;
    let mut results = Vec::with_capacity(page.rows.len());
    let (mut objects, mut bytes) = (0, 0);
    for row in &page.rows {
        let stats =
            state.store.bucket_stats(row.doc["bucket_id"].as_str().unwrap_or_default()).await?;
        objects += stats.count;
        bytes += stats.total_size;
        results.push(with_stats(row.doc.clone(), stats));
    }
    let n = results.len().max(1) as f64;
    let next = next_cursor(&spec, &page);
    Ok(json!({
        "results": results,
        "total_count": page.total.unwrap_or(0),
        "pagination": paging.response(&page, next),
        "stats": {
            "total_objects": objects,
            "total_size_bytes": bytes,
            "avg_objects_per_bucket": objects as f64 / n,
            "avg_size_per_bucket": bytes as f64 / n,
        },
    }))
}

/// Applies a PUT or PATCH. A schema change that would break stored objects (a removed
/// property, a changed type, a newly required property) needs `force_schema_break`.
///
/// # Errors
///
/// 404, 409 for a taken name or an unforced breaking change, 422 for invalid fields.
pub async fn update(
    state: &AppState,
    caller: &NamespacedCaller,
    ident: &str,
    req: BucketInput,
    kind: UpdateKind,
    force_schema_break: bool,
) -> Result<Value> {
    let mut doc = resolve(state, caller, ident).await?;
    let id = doc["bucket_id"].as_str().unwrap_or_default().to_string();

    if let Some(name) = &req.bucket_name {
        check_name(name)?;
        doc["bucket_name"] = json!(name);
    }
    if let Some(description) = req.description {
        doc["description"] = json!(description);
    }
    if let Some(metadata) = req.metadata {
        doc["metadata"] = Value::Object(metadata);
    }
    if let Some(schema_json) = &req.bucket_schema {
        let new = BucketSchema::parse(schema_json)?;
        let old = BucketSchema::parse(&doc["bucket_schema"])?;
        if !force_schema_break && let Err(e) = old.is_compatible_change(&new) {
            return Err(Error::conflict(
                "schema_break",
                format!("{}: {}; pass force_schema_break=true to apply it", e.field, e.message),
            ));
        }
        doc["bucket_schema"] = new.to_json();
    }
    let old_class = doc["storage_class"].clone();
    apply_storage_class(&mut doc, req.storage_class.as_deref(), kind)?;
    let retier = doc["storage_class"] != old_class;
    if let Some(unique_key) = &req.unique_key {
        apply_unique_key_change(&mut doc, unique_key)?;
    }
    for (key, value) in [
        ("destination", req.destination),
        ("ingest_filter", req.ingest_filter),
        ("source_adapter", req.source_adapter.filter(|_| kind == UpdateKind::Patch)),
    ] {
        if let Some(value) = value {
            check_object(key, Some(&value), &[])?;
            doc[key] = value;
        }
    }
    doc["updated_at"] = json!(now());

    let name = doc["bucket_name"].as_str().unwrap_or_default().to_string();
    let saved = state.store.update_doc(Table::Buckets, &id, Some(&name), &doc).await;
    state.bucket_cache.clear();
    saved.map_err(|e| match e {
        StoreError::Duplicate => name_taken(&name),
        other => other.into(),
    })?;
    let stats = state.store.bucket_stats(&id).await?;
    let mut answer = with_stats(doc, stats);
    if retier {
        let inputs = json!({"bucket_id": id, "namespace_id": caller.namespace_id,
                            "storage_class": answer["storage_class"]});
        let org_id = &caller.caller.org_id;
        let task = tasks::create(state, org_id, TaskType::Retier, inputs).await?;
        jobs::enqueue(
            state,
            JobKind::BucketRetier,
            org_id,
            json!({"task_id": task["task_id"]}),
            None,
        )
        .await?;
        answer["retier_task_id"] = task["task_id"].clone();
    }
    Ok(answer)
}

/// How many objects a re-tiering step handles before it records its progress.
const RETIER_PAGE: i64 = 200;

/// Moves every stored blob of a bucket to the bucket's current storage class, page by page,
/// recording after each page how far it got, so that a restarted job goes on from there.
/// Blobs already in the class are left as they are, so running it twice changes nothing.
///
/// # Errors
///
/// A store or blob failure; the job engine retries from the last recorded page.
pub async fn run_retier(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let org_id = job.org_id.as_str();
    let task_id = job.payload["task_id"].as_str().unwrap_or_default();
    let Some(row) = state.store.get(Table::Tasks, Scope::org(org_id), task_id).await? else {
        return Ok(());
    };
    let mut task = tasks::set_status(state, row.doc, TaskStatus::InProgress, None).await?;
    let inputs = task["inputs"][0].clone();
    let namespace_id = inputs["namespace_id"].as_str().unwrap_or_default();
    let bucket_id = inputs["bucket_id"].as_str().unwrap_or_default();
    let bucket = match tasks::caller_for(state, org_id, namespace_id).await {
        Ok(caller) => resolve(state, &caller, bucket_id).await.ok(),
        Err(_) => None,
    };
    let Some(bucket) = bucket else {
        tasks::set_status(state, task, TaskStatus::Completed, None).await?;
        return Ok(());
    };
    let class = bucket["storage_class"].as_str().and_then(StorageClass::parse).unwrap_or_default();

    let scope = Scope::bucket(org_id, namespace_id, bucket_id);
    loop {
        let after = task["additional_data"]["after_seq"].as_i64().unwrap_or(0);
        let cursor = crate::store::filter_sql::Cursor { seq: after, value: None };
        let spec = ListSpec { after: Some(cursor), limit: RETIER_PAGE, ..ListSpec::default() };
        let page = state.store.list(Table::Objects, scope, &spec).await?;
        let Some(last) = page.rows.last().map(|r| r.seq) else { break };
        let mut moved = task["additional_data"]["blobs_moved"].as_i64().unwrap_or(0);
        for row in page.rows {
            moved += retier_object(state, row.doc, class).await?;
        }
        task["additional_data"]["after_seq"] = json!(last);
        task["additional_data"]["blobs_moved"] = json!(moved);
        task["updated_at"] = json!(now());
        state.store.update_doc(Table::Tasks, task_id, None, &task).await?;
    }
    task["outputs"] = json!([{"bucket_id": bucket_id, "storage_class": class.as_str(),
                              "blobs_moved": task["additional_data"]["blobs_moved"]}]);
    tasks::set_status(state, task, TaskStatus::Completed, None).await?;
    tracing::info!(bucket.id = %bucket_id, storage_class = class.as_str(), "bucket re-tiered");
    Ok(())
}

/// Moves the stored blobs of one object to `class`; returns how many moved.
async fn retier_object(state: &AppState, mut doc: Value, class: StorageClass) -> Result<i64> {
    let mut moved = 0;
    for blob in doc["blobs"].as_array_mut().into_iter().flatten() {
        let Some(key) = blob["properties"]["storage_key"].as_str() else { continue };
        if blob["properties"]["storage_class"] == class.as_str() {
            continue;
        }
        state
            .blobs
            .set_storage_class(key, class)
            .await
            .map_err(|e| Error::Internal(format!("setting the storage class failed: {e}")))?;
        blob["properties"]["storage_class"] = json!(class.as_str());
        moved += 1;
    }
    if moved > 0 {
        let id = doc["object_id"].as_str().unwrap_or_default().to_string();
        state.store.update_doc(Table::Objects, &id, None, &doc).await?;
    }
    Ok(moved)
}

/// Starts deleting a bucket with its objects and blobs, as a task the caller can poll.
///
/// # Errors
///
/// 404 when there is none.
pub async fn delete(state: &AppState, caller: &NamespacedCaller, ident: &str) -> Result<Value> {
    let mut doc = resolve(state, caller, ident).await?;
    let id = doc["bucket_id"].as_str().unwrap_or_default().to_string();
    let name = doc["bucket_name"].as_str().unwrap_or_default().to_string();
    let stats = state.store.bucket_stats(&id).await?;

    let inputs = json!({"bucket_id": id, "bucket_name": name, "namespace_id": caller.namespace_id});
    let org_id = &caller.caller.org_id;
    let task = tasks::create(state, org_id, TaskType::BucketDelete, inputs).await?;
    doc["deleting"] = task["task_id"].clone();
    doc["status"] = json!("IN_PROGRESS");
    state.store.update_doc(Table::Buckets, &id, None, &doc).await?;
    state.bucket_cache.clear();
    tasks::start(state, org_id, JobKind::BucketDelete, &task).await?;

    Ok(json!({
        "task_id": task["task_id"],
        "status": "PENDING",
        "bucket_id": id,
        "bucket_name": name,
        "object_count": stats.count,
    }))
}

/// Deletes the bucket row once its objects are gone; called by the deletion task.
pub(crate) async fn remove(state: &AppState, bucket_id: &str) -> Result<()> {
    state.store.delete_bucket_processing(bucket_id).await?;
    state.store.delete_bucket_row(bucket_id).await?;
    state.bucket_cache.clear();
    Ok(())
}

/// The bucket's unique-key fields and default policy, when it has a unique key.
pub fn unique_key(doc: &Value) -> Option<(Vec<String>, Option<String>)> {
    let key = doc.get("unique_key").filter(|v| !v.is_null())?;
    let fields = key["fields"].as_array()?.iter().filter_map(|f| f.as_str().map(String::from));
    let policy = key["default_policy"].as_str().map(String::from);
    Some((fields.collect(), policy))
}

fn with_stats(mut doc: Value, stats: ObjectStats) -> Value {
    let avg = if stats.count > 0 { stats.total_size / stats.count } else { 0 };
    doc["object_count"] = json!(stats.count);
    doc["total_size_bytes"] = json!(stats.total_size);
    doc["failed_object_count"] = json!(0);
    doc["storage_stats"] = json!({
        "total_size_bytes": stats.total_size,
        "avg_size_bytes": avg,
        "max_size_bytes": stats.max_size,
        "min_size_bytes": stats.min_size,
    });
    doc["batch_stats"] = json!({"total": 0, "active": 0, "completed": 0, "failed": 0});
    doc["stats_updated_at"] = json!(now());
    if let Some(map) = doc.as_object_mut() {
        map.remove("deleting");
    }
    doc
}

fn check_name(name: &str) -> Result<()> {
    let chars_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || name.len() > NAME_MAX || !chars_ok || name.starts_with("bkt_") {
        return Err(Error::invalid(
            "bucket_name",
            format!("expected 1 to {NAME_MAX} letters, digits, '_' or '-', not starting with bkt_"),
        ));
    }
    Ok(())
}

fn parse_storage_class(value: Option<&str>) -> Result<StorageClass> {
    match value {
        None => Ok(StorageClass::default()),
        Some(v) => StorageClass::parse(v).ok_or_else(|| {
            Error::invalid(
                "storage_class",
                format!(
                    "{v:?} is not a storage class; expected standard, nearline, coldline or archive"
                ),
            )
        }),
    }
}

fn apply_storage_class(doc: &mut Value, value: Option<&str>, kind: UpdateKind) -> Result<()> {
    let Some(value) = value else {
        return Ok(());
    };
    if kind == UpdateKind::Patch {
        return Err(Error::invalid("storage_class", "change the storage class with PUT"));
    }
    doc["storage_class"] = json!(parse_storage_class(Some(value))?.as_str());
    Ok(())
}

fn parse_unique_key(value: &Value, schema: &BucketSchema) -> Result<Value> {
    let fields = value
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("unique_key.fields", "expected a list of field names"))?;
    if fields.is_empty() || fields.len() > UNIQUE_KEY_FIELDS_MAX {
        return Err(Error::invalid(
            "unique_key.fields",
            format!("expected 1 to {UNIQUE_KEY_FIELDS_MAX} field names"),
        ));
    }
    let mut names = Vec::with_capacity(fields.len());
    for (i, field) in fields.iter().enumerate() {
        let name = field.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
            Error::invalid(format!("unique_key.fields[{i}]"), "expected a field name")
        })?;
        match schema.property(name) {
            None => {
                return Err(Error::invalid(
                    format!("unique_key.fields[{i}]"),
                    format!("{name} is not a property of the bucket schema"),
                ));
            }
            Some(field) if field.field_type.is_blob() => {
                return Err(Error::invalid(
                    format!("unique_key.fields[{i}]"),
                    format!("{name} is a blob property; unique keys use metadata fields"),
                ));
            }
            Some(_) => {}
        }
        names.push(name.to_string());
    }
    let policy = parse_policy(value.get("default_policy"))?;
    Ok(json!({"fields": names, "default_policy": policy}))
}

fn parse_policy(value: Option<&Value>) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(p)) if POLICIES.contains(&p.as_str()) => Ok(Some(p.clone())),
        Some(_) => {
            Err(Error::invalid("unique_key.default_policy", "expected insert, update or upsert"))
        }
    }
}

/// A unique key is fixed at creation; only its default policy may change later.
fn apply_unique_key_change(doc: &mut Value, value: &Value) -> Result<()> {
    if value.is_null() {
        return Ok(());
    }
    if doc["unique_key"].is_null() {
        return Err(Error::invalid(
            "unique_key",
            "a unique key can only be set when the bucket is created",
        ));
    }
    if let Some(fields) = value.get("fields")
        && !fields.is_null()
        && fields != &doc["unique_key"]["fields"]
    {
        return Err(Error::invalid(
            "unique_key.fields",
            "the fields of a unique key cannot change",
        ));
    }
    doc["unique_key"]["default_policy"] = json!(parse_policy(value.get("default_policy"))?);
    Ok(())
}

fn check_object(field: &str, value: Option<&Value>, required: &[&str]) -> Result<()> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let object = value.as_object().ok_or_else(|| Error::invalid(field, "expected an object"))?;
    for key in required {
        if object.get(*key).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Error::invalid(format!("{field}.{key}"), "required"));
        }
    }
    Ok(())
}

fn name_taken(name: &str) -> Error {
    Error::conflict(
        "bucket_name_taken",
        format!("a bucket named {name} already exists in this namespace"),
    )
}
