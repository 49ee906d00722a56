//! Batches: the unit of processing.
//!
//! A batch is created as a `DRAFT` holding a list of a bucket's objects. Submitting it queues
//! its processing as durable jobs, one per slice of its objects, which any worker of any sluice
//! process may run (see `service::processing`). The batch then moves `QUEUED → PROCESSING` and
//! ends `COMPLETED`, `COMPLETED_WITH_ERRORS` (some objects failed), `FAILED` (every object
//! failed) or `CANCELED`. Every batch reaches one of those, so a client polling for a terminal
//! status never waits forever.
//!
//! Progress, failures and document counts are not kept in the batch's record: they are counted
//! from its items when the batch is read, so they are always current.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::api::auth::{Caller, NamespacedCaller};
use crate::api::pagination::PageParams;
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
use crate::model::{TaskStatus, TaskType, new_id, now, parse_time};
use crate::service::{buckets, collections, list_filter, namespaces, next_cursor, tasks};
use crate::store::{ITEM_CANCELED, ITEM_FAILED, ITEM_PENDING, ItemCounts, Scope, Table};

/// Most objects one batch holds.
pub const MAX_OBJECTS: usize = 50_000;
/// Most failed objects a batch lists; `failed_object_count` counts them all.
const MAX_LISTED_FAILURES: i64 = 1000;
const NAME_MAX: usize = 256;
const DEDUP_STRATEGIES: [&str; 3] = ["skip", "replace", "force"];

pub const DRAFT: &str = "DRAFT";
pub const QUEUED: &str = "QUEUED";
pub const PROCESSING: &str = "PROCESSING";
pub const COMPLETED: &str = "COMPLETED";
pub const COMPLETED_WITH_ERRORS: &str = "COMPLETED_WITH_ERRORS";
pub const FAILED: &str = "FAILED";
pub const CANCELED: &str = "CANCELED";
/// The statuses a batch can still leave.
pub const ACTIVE: [&str; 3] = [DRAFT, QUEUED, PROCESSING];

/// The body of `POST …/batches`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateBatch {
    pub object_ids: Option<Vec<String>>,
    pub filters: Option<Value>,
    pub collection_ids: Option<Vec<String>>,
    pub limit: Option<i64>,
    pub dedup_strategy: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub batch_name: Option<String>,
    pub auto_submit: Option<bool>,
    pub trigger_processing: Option<bool>,
}

/// The query of `POST …/batches`; its values win over the body's.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateBatchQuery {
    pub skip_validation: Option<bool>,
    pub auto_submit: Option<bool>,
    pub trigger_processing: Option<bool>,
}

/// The body of `POST …/batches/{id}/submit`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubmitBatch {
    pub include_processing_history: Option<bool>,
    pub collection_ids: Option<Vec<String>>,
    pub webhook_url: Option<String>,
}

/// The body of `POST …/batches/list` and `POST /v1/batches/list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListBatches {
    pub status: Option<String>,
    pub collection_id: Option<String>,
    pub bucket_id: Option<String>,
    pub namespace_id: Option<String>,
    pub offset: Option<i64>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The body of `PATCH …/batches/{id}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PatchBatch {
    pub metadata: Option<Map<String, Value>>,
    pub batch_name: Option<String>,
}

/// Creates a batch of a bucket's objects, and submits it when asked to.
///
/// # Errors
///
/// 404 for an unknown bucket, 422 for invalid fields or objects the bucket does not hold.
pub async fn create(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    query: CreateBatchQuery,
    req: CreateBatch,
) -> Result<Value> {
    let bucket = buckets::resolve_shared(state, caller, bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default().to_string();
    if let Some(name) = &req.batch_name
        && name.chars().count() > NAME_MAX
    {
        return Err(Error::invalid("batch_name", "expected at most 256 characters"));
    }
    let dedup = req.dedup_strategy.clone().unwrap_or_else(|| "skip".into());
    if !DEDUP_STRATEGIES.contains(&dedup.as_str()) {
        return Err(Error::invalid("dedup_strategy", "expected one of skip, replace, force"));
    }
    let object_ids = match (&req.object_ids, &req.filters) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid("object_ids", "send object_ids or filters, not both"));
        }
        (None, None) => {
            return Err(Error::invalid("object_ids", "send object_ids or filters"));
        }
        (Some(ids), None) => {
            let ids = distinct_ids(ids)?;
            if query.skip_validation != Some(true) {
                check_objects_exist(state, &bucket_id, &ids).await?;
            }
            ids
        }
        (None, Some(filters)) => {
            let limit = req.limit.unwrap_or(MAX_OBJECTS as i64);
            if !(1..=MAX_OBJECTS as i64).contains(&limit) {
                return Err(Error::invalid("limit", "expected 1 to 50000"));
            }
            matching_objects(state, caller, &bucket_id, filters, limit).await?
        }
    };
    let collection_ids =
        collections::resolve_scope(state, &caller.namespace_id, req.collection_ids.as_deref())
            .await?;

    let at = now();
    let id = new_id("btch_", 12);
    let mut metadata = req.metadata.unwrap_or_default();
    for key in ["campaign_id", "source", "tags", "notes"] {
        metadata.entry(key).or_insert(Value::Null);
    }
    let doc = json!({
        "batch_id": id,
        "bucket_id": bucket_id,
        "namespace_id": caller.namespace_id,
        "batch_name": req.batch_name,
        "status": DRAFT,
        "lifecycle": "accepted",
        "lifecycle_reason": null,
        "collection_ids": collection_ids,
        "dedup_strategy": dedup,
        "metadata": metadata,
        "type": "BUCKET",
        "task_id": null,
        "tier_tasks": [],
        "total_tiers": 1,
        "dag_tiers": [collection_ids],
        "submitted_by_key_id": caller.caller.key_id,
        "retry_count": 0,
        "max_retries": 3,
        "max_node_death_resubmits": 0,
        "max_deploy_resubmits": 0,
        "webhook_url": null,
        "created_at": at,
        "updated_at": at,
    });
    let scope = (caller.caller.org_id.as_str(), caller.namespace_id.as_str(), bucket_id.as_str());
    state.store.insert_batch(scope, &doc, &object_ids).await?;
    tracing::info!(batch.id = %id, objects = object_ids.len(), "batch created");
    let ttl = state.processing.draft_ttl;
    let expires = crate::jobs::after(ttl);
    let payload = json!({"batch_id": id});
    jobs::enqueue_at(state, JobKind::BatchExpireDraft, &caller.caller.org_id, payload, &expires)
        .await?;

    let auto_submit = query
        .auto_submit
        .or(query.trigger_processing)
        .or(req.auto_submit)
        .or(req.trigger_processing)
        .unwrap_or(false);
    if auto_submit {
        submit_doc(state, &caller.caller, doc, SubmitBatch::default()).await?;
        return get_by_id(state, &caller.caller, &id).await;
    }
    render(state, doc).await
}

/// Creates a batch of objects known to exist and submits it at once; answers the batch.
///
/// # Errors
///
/// Fails on a store error.
pub async fn create_submitted(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket_id: &str,
    object_ids: Vec<String>,
) -> Result<Value> {
    let query = CreateBatchQuery {
        skip_validation: Some(true),
        auto_submit: Some(true),
        trigger_processing: None,
    };
    let req = CreateBatch { object_ids: Some(object_ids), ..CreateBatch::default() };
    create(state, caller, bucket_id, query, req).await
}

/// Reads a batch of a bucket.
///
/// # Errors
///
/// 404 when the bucket or the batch is unknown.
pub async fn get(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    batch_id: &str,
) -> Result<Value> {
    let doc = find_in_bucket(state, caller, bucket, batch_id).await?;
    render(state, doc).await
}

/// Reads a batch of the organization by id.
///
/// # Errors
///
/// 404 when there is none.
pub async fn get_by_id(state: &AppState, caller: &Caller, batch_id: &str) -> Result<Value> {
    let doc = find(state, caller, batch_id).await?;
    render(state, doc).await
}

/// Lists batches, newest first: of one bucket, of a namespace, or of the organization.
///
/// # Errors
///
/// 422 for invalid paging or filters.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    namespace_id: Option<&str>,
    bucket_id: Option<&str>,
    req: ListBatches,
) -> Result<Value> {
    let params = PageParams {
        limit: req.limit,
        offset: req.offset,
        cursor: req.cursor.clone(),
        ..PageParams::default()
    };
    let page_req = params.resolve(100, 1000)?;
    let mut conditions = Vec::new();
    if let Some(status) = &req.status {
        if !crate::model::TASK_STATUS_VALUES.contains(&status.as_str()) {
            return Err(Error::invalid("status", "expected a TaskStatusEnum value"));
        }
        conditions.push(json!({"field": "status", "operator": "eq", "value": status}));
    }
    if let Some(collection) = &req.collection_id {
        conditions
            .push(json!({"field": "collection_ids", "operator": "contains", "value": collection}));
    }
    let filter = if conditions.is_empty() { None } else { Some(json!({"AND": conditions})) };
    let sort = json!({"field": "created_at", "direction": "desc"});
    let (filter, sort) = list_filter(filter.as_ref(), None, None, Some(&sort))?;
    let spec = page_req.spec(filter, sort, true);
    let bucket_id = bucket_id.or(req.bucket_id.as_deref());
    let scope = Scope { org_id: &caller.org_id, namespace_id, bucket_id, collection_id: None };
    let page = state.store.list(Table::Batches, scope, &spec).await?;
    let cursor = next_cursor(&spec, &page);
    let mut results = Vec::with_capacity(page.rows.len());
    for row in page.rows.iter() {
        results.push(render(state, row.doc.clone()).await?);
    }
    Ok(json!({
        "results": results,
        "total_count": page.total.unwrap_or(results.len() as i64),
        "pagination": {
            "next_cursor": cursor,
            "has_more": page.has_more,
            "offset": page_req.offset,
            "limit": page_req.limit,
        },
    }))
}

/// Finds the namespace an organization-wide batch list is narrowed to: `X-Namespace` or the
/// body's `namespace_id`, which must agree when both are sent.
///
/// # Errors
///
/// 400 when the two disagree, 404 for an unknown namespace.
pub async fn list_namespace(
    state: &AppState,
    caller: &Caller,
    header: Option<&str>,
    body: Option<&str>,
) -> Result<Option<String>> {
    let header = match header {
        Some(ident) => Some(namespaces::resolve_shared(state, caller, ident).await?),
        None => None,
    };
    let body = match body {
        Some(ident) => Some(namespaces::resolve_shared(state, caller, ident).await?),
        None => None,
    };
    let id = |ns: &Value| ns["namespace_id"].as_str().unwrap_or_default().to_string();
    match (header, body) {
        (Some(h), Some(b)) if id(&h) != id(&b) => Err(Error::bad_request(
            "namespace_conflict",
            "X-Namespace and namespace_id name different namespaces",
        )),
        (Some(ns), _) | (None, Some(ns)) => Ok(Some(id(&ns))),
        (None, None) => Ok(None),
    }
}

/// Replaces a batch's metadata or name.
///
/// # Errors
///
/// 404 when the batch is unknown, 422 for an over-long name.
pub async fn patch(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    batch_id: &str,
    req: PatchBatch,
) -> Result<Value> {
    let mut doc = find_in_bucket(state, caller, bucket, batch_id).await?;
    if let Some(name) = &req.batch_name {
        if name.chars().count() > NAME_MAX {
            return Err(Error::invalid("batch_name", "expected at most 256 characters"));
        }
        doc["batch_name"] = json!(name);
    }
    if let Some(metadata) = req.metadata {
        doc["metadata"] = Value::Object(metadata);
    }
    doc["updated_at"] = json!(now());
    let status = doc["status"].as_str().unwrap_or_default().to_string();
    if !state.store.update_batch_if(batch_id, &[status.as_str()], &doc).await? {
        return Err(busy(batch_id));
    }
    render(state, doc).await
}

/// Deletes a batch that is not being processed.
///
/// # Errors
///
/// 404 when the batch is unknown, 409 while it is queued or processing.
pub async fn delete(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    batch_id: &str,
) -> Result<Value> {
    let doc = find_in_bucket(state, caller, bucket, batch_id).await?;
    let status = doc["status"].as_str().unwrap_or_default();
    if status == QUEUED || status == PROCESSING {
        return Err(Error::conflict(
            "batch_in_progress",
            format!("batch {batch_id} is {status}; cancel it before deleting it"),
        ));
    }
    if !state.store.delete_batch_if(batch_id, &[status]).await? {
        return Err(busy(batch_id));
    }
    Ok(json!({"message": "Successfully deleted", "success": true}))
}

/// Adds objects to a draft batch.
///
/// # Errors
///
/// 404 when the batch is unknown, 409 when it is no longer a draft, 422 for unknown objects.
pub async fn add_objects(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    batch_id: &str,
    object_ids: &[String],
    skip_validation: bool,
) -> Result<Value> {
    let mut doc = find_in_bucket(state, caller, bucket, batch_id).await?;
    if doc["status"] != DRAFT {
        return Err(not_draft(batch_id, &doc));
    }
    let held: HashSet<String> =
        state.store.batch_object_ids(batch_id, MAX_OBJECTS as i64).await?.into_iter().collect();
    let ids: Vec<String> =
        distinct_ids(object_ids)?.into_iter().filter(|id| !held.contains(id)).collect();
    let bucket_id = doc["bucket_id"].as_str().unwrap_or_default().to_string();
    if !skip_validation {
        check_objects_exist(state, &bucket_id, &ids).await?;
    }
    if held.len() + ids.len() > MAX_OBJECTS {
        return Err(Error::invalid("object_ids", "a batch holds at most 50000 objects"));
    }
    doc["updated_at"] = json!(now());
    if !state.store.add_batch_items(batch_id, DRAFT, &doc, &ids).await? {
        return Err(not_draft(batch_id, &doc));
    }
    render(state, doc).await
}

/// Submits a draft batch for processing and answers its task.
///
/// # Errors
///
/// 404 when the batch is unknown, 409 when it is not a draft, 400 when it holds no objects,
/// 422 for a webhook URL sluice may not call.
pub async fn submit(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    batch_id: &str,
    req: SubmitBatch,
) -> Result<Value> {
    let doc = find_in_bucket(state, caller, bucket, batch_id).await?;
    submit_doc(state, &caller.caller, doc, req).await
}

async fn submit_doc(
    state: &AppState,
    caller: &Caller,
    mut doc: Value,
    req: SubmitBatch,
) -> Result<Value> {
    let batch_id = doc["batch_id"].as_str().unwrap_or_default().to_string();
    if doc["status"] != DRAFT {
        return Err(not_draft(&batch_id, &doc));
    }
    if let Some(url) = &req.webhook_url {
        crate::service::webhooks::check_callback_url(state, url)?;
    }
    if let Some(ids) = &req.collection_ids {
        let scope: HashSet<&str> = doc["collection_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if ids.iter().any(|id| !scope.contains(id.as_str())) {
            return Err(Error::invalid(
                "collection_ids",
                "must match the collections the batch was created for",
            ));
        }
    }
    let counts = state.store.batch_item_counts(&batch_id).await?;
    if counts.total() == 0 {
        return Err(Error::bad_request(
            "batch_empty",
            format!("batch {batch_id} holds no objects"),
        ));
    }

    let inputs = json!({
        "batch_id": batch_id,
        "bucket_id": doc["bucket_id"],
        "namespace_id": doc["namespace_id"],
        "object_count": counts.total(),
    });
    let task = tasks::create(state, &caller.org_id, TaskType::BatchProcess, inputs).await?;
    let task_id = task["task_id"].as_str().unwrap_or_default().to_string();
    let at = now();
    doc["status"] = json!(QUEUED);
    doc["lifecycle"] = json!("queued");
    doc["lifecycle_reason"] = json!("waiting for a worker");
    doc["task_id"] = json!(task_id);
    doc["tier_tasks"] = json!([{
        "tier_num": 0,
        "source_type": "bucket",
        "task_id": task_id,
        "status": QUEUED,
        "collection_ids": non_empty(&doc["collection_ids"]),
        "started_at": null,
        "completed_at": null,
        "errors": [],
    }]);
    doc["current_tier"] = json!(0);
    doc["webhook_url"] = json!(req.webhook_url);
    doc["submitted_at"] = json!(at);
    doc["updated_at"] = json!(at);
    if !state.store.update_batch_if(&batch_id, &[DRAFT], &doc).await? {
        return Err(busy(&batch_id));
    }
    schedule(state, &caller.org_id, &batch_id).await?;
    tracing::info!(batch.id = %batch_id, objects = counts.total(), "batch submitted");
    Ok(tasks::response(task))
}

/// Queues the processing of a batch's objects, one job per slice of positions.
async fn schedule(state: &AppState, org_id: &str, batch_id: &str) -> Result<()> {
    let slice = state.processing.slice_size.max(1);
    let span = state.store.batch_position_span(batch_id).await?;
    let mut from = 0;
    while from < span {
        let to = from + slice;
        let payload = json!({"batch_id": batch_id, "from": from, "to": to});
        jobs::enqueue(state, JobKind::BatchProcess, org_id, payload, None).await?;
        from = to;
    }
    Ok(())
}

/// Cancels a batch that has not finished; pending objects are not processed.
///
/// # Errors
///
/// 404 when the batch is unknown, 409 when it already finished otherwise.
pub async fn cancel(
    state: &AppState,
    caller: &Caller,
    namespace: Option<&NamespacedCaller>,
    bucket: Option<&str>,
    batch_id: &str,
    reason: Option<&str>,
) -> Result<Value> {
    let mut doc = match (namespace, bucket) {
        (Some(ns), Some(bucket)) => find_in_bucket(state, ns, bucket, batch_id).await?,
        _ => find(state, caller, batch_id).await?,
    };
    let status = doc["status"].as_str().unwrap_or_default().to_string();
    if status == CANCELED && doc["task_id"].is_string() {
        return task_of(state, caller, &doc).await;
    }
    if !ACTIVE.contains(&status.as_str()) && status != CANCELED {
        return Err(Error::conflict(
            "batch_finished",
            format!("batch {batch_id} already finished as {status}"),
        ));
    }
    let at = now();
    let reason = reason.unwrap_or("canceled by the caller").to_string();
    let task = match doc["task_id"].as_str() {
        Some(_) => task_of(state, caller, &doc).await?,
        None => {
            let inputs = json!({"batch_id": batch_id, "namespace_id": doc["namespace_id"]});
            tasks::create(state, &caller.org_id, TaskType::BatchProcess, inputs).await?
        }
    };
    doc["task_id"] = task["task_id"].clone();
    doc["status"] = json!(CANCELED);
    doc["lifecycle"] = json!("canceled");
    doc["lifecycle_reason"] = json!(reason);
    doc["completed_at"] = json!(at);
    doc["updated_at"] = json!(at);
    set_tier_status(&mut doc, CANCELED, &at);
    if !state.store.update_batch_if(batch_id, &[status.as_str()], &doc).await? {
        return Err(busy(batch_id));
    }
    let stopped = state.store.move_batch_items(batch_id, ITEM_PENDING, ITEM_CANCELED).await?;
    tracing::info!(batch.id = %batch_id, stopped, "batch canceled");

    let slices = if status == DRAFT {
        0
    } else {
        (stopped as i64 + state.processing.slice_size - 1) / state.processing.slice_size
    };
    let cancellation = json!({
        "ray_jobs_requested": slices,
        "ray_jobs_accepted": slices,
        "ray_jobs_refused": 0,
    });
    let mut task = task;
    task["status"] = json!(TaskStatus::Canceled.as_str());
    task["updated_at"] = json!(at);
    task["outputs"] = json!([{"canceled_objects": stopped}]);
    state
        .store
        .update_doc(Table::Tasks, task["task_id"].as_str().unwrap_or_default(), None, &task)
        .await?;
    crate::service::processing::announce_end(state, &caller.org_id, &doc).await;
    task["cancellation"] = cancellation;
    Ok(tasks::response(task))
}

/// Processes the failed objects of a finished batch again.
///
/// # Errors
///
/// 404 when the batch is unknown, 409 when it has no failed objects or has not finished.
pub async fn retry(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    batch_id: &str,
) -> Result<Value> {
    let mut doc = find_in_bucket(state, caller, bucket, batch_id).await?;
    let status = doc["status"].as_str().unwrap_or_default().to_string();
    if status != COMPLETED_WITH_ERRORS && status != FAILED {
        return Err(Error::conflict(
            "nothing_to_retry",
            format!(
                "batch {batch_id} is {status}; only a batch that ended with failed objects can be retried"
            ),
        ));
    }
    let at = now();
    doc["status"] = json!(QUEUED);
    doc["lifecycle"] = json!("queued");
    doc["lifecycle_reason"] = json!("retrying failed objects");
    doc["retry_count"] = json!(doc["retry_count"].as_i64().unwrap_or(0) + 1);
    doc["last_retry_at"] = json!(at);
    doc["retry_reason"] = json!("retry requested");
    doc["completed_at"] = Value::Null;
    doc["failure_reason"] = Value::Null;
    doc["updated_at"] = json!(at);
    set_tier_status(&mut doc, QUEUED, &at);
    if !state.store.update_batch_if(batch_id, &[status.as_str()], &doc).await? {
        return Err(busy(batch_id));
    }
    let retried = state.store.move_batch_items(batch_id, ITEM_FAILED, ITEM_PENDING).await?;
    if let Some(task_id) = doc["task_id"].as_str() {
        tasks::set_status_of(state, task_id, TaskStatus::Pending, None).await?;
    }
    schedule(state, &caller.caller.org_id, batch_id).await?;
    tracing::info!(batch.id = %batch_id, retried, "batch retried");
    Ok(json!({
        "batch_id": batch_id,
        "status": QUEUED,
        "retried_objects": retried,
        "task_id": doc["task_id"],
        "message": format!("retrying {retried} failed objects"),
    }))
}

/// Cancels a draft that was never submitted, once its time to live ran out.
///
/// # Errors
///
/// A store failure; the job engine retries.
pub async fn run_draft_expiry(state: &AppState, job: &crate::store::ClaimedJob) -> Result<()> {
    let batch_id = job.payload["batch_id"].as_str().unwrap_or_default();
    let Some(row) = state.store.get(Table::Batches, Scope::org(&job.org_id), batch_id).await?
    else {
        return Ok(());
    };
    let mut doc = row.doc;
    if doc["status"] != DRAFT {
        return Ok(());
    }
    let at = now();
    doc["status"] = json!(CANCELED);
    doc["lifecycle"] = json!("canceled");
    doc["lifecycle_reason"] = json!("the draft was not submitted in time");
    doc["completed_at"] = json!(at);
    doc["updated_at"] = json!(at);
    if state.store.update_batch_if(batch_id, &[DRAFT], &doc).await? {
        state.store.move_batch_items(batch_id, ITEM_PENDING, ITEM_CANCELED).await?;
        tracing::info!(batch.id = %batch_id, "unsubmitted draft canceled");
    }
    Ok(())
}

/// A batch record with its live progress, failures and counts, as the API answers it.
///
/// # Errors
///
/// Fails on a store error.
pub async fn render(state: &AppState, mut doc: Value) -> Result<Value> {
    let id = doc["batch_id"].as_str().unwrap_or_default().to_string();
    let counts = state.store.batch_item_counts(&id).await?;
    let object_ids = state.store.batch_object_ids(&id, MAX_OBJECTS as i64).await?;
    let (failed, summary) = if counts.failed > 0 {
        state.store.batch_failures(&id, MAX_LISTED_FAILURES).await?
    } else {
        Default::default()
    };
    let status = doc["status"].as_str().unwrap_or_default().to_string();
    let failed_objects: Vec<Value> = failed
        .iter()
        .map(|f| {
            json!({"object_id": f.object_id, "error": f.error, "error_type": f.error_type,
                   "timestamp": f.at})
        })
        .collect();
    doc["object_ids"] = json!(object_ids);
    doc["loaded_object_ids"] = json!(object_ids);
    doc["progress"] = progress(&doc, &counts, failed.first().map(|f| f.error.as_str()));
    doc["failed_objects"] = json!(failed_objects);
    doc["failed_object_count"] = json!(counts.failed);
    doc["error_summary"] = json!(summary);
    let drafted = status == DRAFT;
    doc["documents_written"] = if drafted { Value::Null } else { json!(counts.documents) };
    doc["unaccounted_object_count"] = json!(0);
    doc["status_message"] = json!(status_message(&status, &counts));
    doc["health"] = if status == PROCESSING { json!("healthy") } else { Value::Null };
    if let Some(tiers) = doc["tier_tasks"].as_array_mut() {
        for tier in tiers {
            tier["documents_written"] = json!(counts.documents);
        }
    }
    if let Some(map) = doc.as_object_mut() {
        map.remove("submitted_by_key_id");
    }
    Ok(doc)
}

fn progress(doc: &Value, counts: &ItemCounts, first_error: Option<&str>) -> Value {
    let total = counts.total() - counts.canceled;
    let processed = counts.finished();
    let percent = if total > 0 { processed as f64 * 100.0 / total as f64 } else { 0.0 };
    let started = doc["started_at"].as_str().and_then(parse_time);
    let rate = started.and_then(|s| {
        let end = doc["completed_at"]
            .as_str()
            .and_then(parse_time)
            .unwrap_or_else(time::OffsetDateTime::now_utc);
        let secs = (end - s).as_seconds_f64();
        (secs > 0.0 && processed > 0).then(|| processed as f64 / secs)
    });
    let eta = rate.filter(|_| counts.pending > 0).map(|r| (counts.pending as f64 / r).ceil());
    json!({
        "processed": processed,
        "total": total,
        "percent": (percent * 10.0).round() / 10.0,
        "items_per_second": rate,
        "eta_seconds": eta,
        "errors": counts.failed,
        "first_error": first_error,
        "objects_extracted": counts.done,
        "objects_skipped": counts.skipped,
        "objects_failed": counts.failed,
        "documents_written": counts.documents,
        "current_stage": current_stage(doc),
    })
}

/// The stage a batch is in, as the contract's `BatchStageInfo`: dispatch while queued,
/// extraction while processing, write once done; `None` before submit.
fn current_stage(doc: &Value) -> Value {
    let (name, index) = match doc["status"].as_str().unwrap_or_default() {
        QUEUED => ("dispatch", 1),
        PROCESSING => ("extraction", 2),
        COMPLETED | COMPLETED_WITH_ERRORS | FAILED => ("write", 3),
        _ => return Value::Null,
    };
    json!({"name": name, "index": index, "total": 3})
}

fn status_message(status: &str, counts: &ItemCounts) -> String {
    let total = counts.total() - counts.canceled;
    match status {
        DRAFT => format!("Draft with {} objects; submit it to process them", counts.total()),
        QUEUED => format!("Queued: {total} objects wait for a worker"),
        PROCESSING => format!("Processing {}/{total} objects", counts.finished()),
        COMPLETED => {
            format!("Completed: {} objects, {} documents", counts.finished(), counts.documents)
        }
        COMPLETED_WITH_ERRORS => format!(
            "Completed with errors: {} of {total} objects failed; the rest wrote {} documents",
            counts.failed, counts.documents
        ),
        FAILED => format!("Failed: all {} objects failed", counts.failed),
        CANCELED => format!("Canceled after {} of {} objects", counts.finished(), counts.total()),
        other => other.to_string(),
    }
}

/// Sets the status of the batch's only tier.
pub fn set_tier_status(doc: &mut Value, status: &str, at: &str) {
    if let Some(tiers) = doc["tier_tasks"].as_array_mut() {
        for tier in tiers {
            tier["status"] = json!(status);
            match status {
                PROCESSING => tier["started_at"] = json!(at),
                QUEUED => tier["completed_at"] = Value::Null,
                _ => tier["completed_at"] = json!(at),
            }
        }
    }
}

/// A list, or null when it is empty: the contract refuses some lists without items.
pub fn non_empty(list: &Value) -> Value {
    match list.as_array() {
        Some(items) if !items.is_empty() => list.clone(),
        _ => Value::Null,
    }
}

async fn task_of(state: &AppState, caller: &Caller, doc: &Value) -> Result<Value> {
    let task_id = doc["task_id"].as_str().unwrap_or_default();
    tasks::get(state, caller, task_id).await
}

async fn find(state: &AppState, caller: &Caller, batch_id: &str) -> Result<Value> {
    let row = state.store.get(Table::Batches, caller.scope(), batch_id).await?;
    row.map(|r| r.doc).ok_or_else(|| Error::not_found("batch", batch_id))
}

async fn find_in_bucket(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    batch_id: &str,
) -> Result<Value> {
    let bucket = buckets::resolve_shared(state, caller, bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);
    let row = state.store.get(Table::Batches, scope, batch_id).await?;
    row.map(|r| r.doc).ok_or_else(|| Error::not_found("batch", batch_id))
}

fn distinct_ids(ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Err(Error::invalid("object_ids", "expected at least one object id"));
    }
    if ids.len() > MAX_OBJECTS {
        return Err(Error::invalid("object_ids", "a batch holds at most 50000 objects"));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if id.is_empty() || id.len() > 128 {
            return Err(Error::invalid(format!("object_ids[{i}]"), "expected an object id"));
        }
        if seen.insert(id.as_str()) {
            out.push(id.clone());
        }
    }
    Ok(out)
}

async fn check_objects_exist(state: &AppState, bucket_id: &str, ids: &[String]) -> Result<()> {
    let found: HashSet<String> =
        state.store.existing_object_ids(bucket_id, ids).await?.into_iter().collect();
    let missing: Vec<&str> =
        ids.iter().filter(|id| !found.contains(*id)).map(String::as_str).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = missing.iter().take(10).copied().collect();
    let more = if missing.len() > shown.len() {
        format!(" and {} more", missing.len() - shown.len())
    } else {
        String::new()
    };
    Err(Error::invalid(
        "object_ids",
        format!("the bucket holds no object {}{more}", shown.join(", ")),
    ))
}

async fn matching_objects(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket_id: &str,
    filters: &Value,
    limit: i64,
) -> Result<Vec<String>> {
    let (filter, _) = list_filter(Some(filters), None, None, None)?;
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);
    let ids = state.store.matching_object_ids(scope, filter.as_ref(), limit).await?;
    if ids.is_empty() {
        return Err(Error::invalid("filters", "no object of the bucket matches"));
    }
    Ok(ids)
}

fn not_draft(batch_id: &str, doc: &Value) -> Error {
    let status = doc["status"].as_str().unwrap_or_default();
    Error::conflict("batch_not_draft", format!("batch {batch_id} is {status}, not DRAFT"))
}

fn busy(batch_id: &str) -> Error {
    Error::conflict("batch_changed", format!("batch {batch_id} changed meanwhile; try again"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ids_keep_order_and_refuse_empties() {
        let ids = vec!["obj_b".to_string(), "obj_a".into(), "obj_b".into()];
        assert_eq!(distinct_ids(&ids).unwrap(), vec!["obj_b", "obj_a"]);
        assert!(distinct_ids(&[]).is_err());
        assert!(distinct_ids(&[String::new()]).is_err());
    }

    #[test]
    fn status_messages_name_the_counts() {
        let counts = ItemCounts { done: 3, failed: 1, documents: 9, ..ItemCounts::default() };
        assert_eq!(
            status_message(COMPLETED_WITH_ERRORS, &counts),
            "Completed with errors: 1 of 4 objects failed; the rest wrote 9 documents"
        );
        let counts = ItemCounts { pending: 2, done: 2, ..ItemCounts::default() };
        assert_eq!(status_message(PROCESSING, &counts), "Processing 2/4 objects");
    }
}
