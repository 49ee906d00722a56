//! Task records, and the long operations they report on (namespace and bucket
//! deletion) in the background while the caller polls the task.
//!
//! A task is written before its work starts, and a durable job carries the work out, updating
//! the task as it goes. Every step is safe to repeat, so a job that runs twice (after a lost
//! lease or a restart) ends the same way.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::auth::{Caller, NamespacedCaller};
use crate::api::pagination::PageParams;
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
use crate::model::{TaskStatus, TaskType, now};
use crate::service::{buckets, list_filter, namespaces};
use crate::store::{ClaimedJob, ListSpec, Scope, StoreError, Table};

/// How many objects one deletion step removes.
const DELETE_CHUNK: i64 = 500;
/// How often a deletion empties a bucket that keeps receiving objects before it gives up.
const REMOVE_ATTEMPTS: usize = 10;

/// The body of `POST /v1/tasks/list`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListTasks {
    pub status: Option<String>,
    pub task_type: Option<String>,
    pub filters: Option<Value>,
    pub sort: Option<Value>,
    pub search: Option<String>,
}

/// Writes a new PENDING task record and returns it.
///
/// # Errors
///
/// Fails on a store error.
pub async fn create(
    state: &AppState,
    org_id: &str,
    task_type: TaskType,
    inputs: Value,
) -> Result<Value> {
    let at = now();
    let task = json!({
        "task_id": uuid::Uuid::new_v4().to_string(),
        "task_type": task_type.as_str(),
        "status": TaskStatus::Pending.as_str(),
        "inputs": [inputs],
        "outputs": [],
        "additional_data": inputs,
        "namespace_id": inputs.get("namespace_id"),
        "error": null,
        "created_at": at,
        "updated_at": at,
    });
    state.store.insert_task(org_id, &task).await?;
    Ok(task)
}

/// Sets a task's status, and its error when it failed.
///
/// # Errors
///
/// Fails on a store error.
pub async fn set_status_of(
    state: &AppState,
    task_id: &str,
    status: TaskStatus,
    error: Option<&str>,
) -> Result<()> {
    let Some(org_id) = state.store.task_org(task_id).await? else {
        return Ok(());
    };
    if let Some(row) = state.store.get(Table::Tasks, Scope::org(&org_id), task_id).await? {
        set_status(state, row.doc, status, error).await?;
    }
    Ok(())
}

/// Queues the work of a task as a durable job.
///
/// # Errors
///
/// Fails on a store error.
pub async fn start(state: &AppState, org_id: &str, kind: JobKind, task: &Value) -> Result<()> {
    let task_id = task["task_id"].as_str().unwrap_or_default().to_string();
    let payload = json!({"task_id": task_id});
    jobs::enqueue(state, kind, org_id, payload, Some(format!("task:{task_id}"))).await
}

/// Whether the namespace has deletion work still running.
///
/// # Errors
///
/// Fails on a store error.
pub async fn has_active(state: &AppState, org_id: &str, namespace_id: &str) -> Result<bool> {
    let filter = json!({"AND": [
        {"field": "namespace_id", "operator": "eq", "value": namespace_id},
        {"field": "status", "operator": "in", "value": ["PENDING", "IN_PROGRESS", "PROCESSING"]},
    ]});
    let (filter, _) = list_filter(Some(&filter), None, None, None)?;
    let spec = ListSpec { filter, limit: 1, ..ListSpec::default() };
    let page = state.store.list(Table::Tasks, Scope::org(org_id), &spec).await?;
    Ok(!page.rows.is_empty())
}

/// Reads a task of the caller's organization.
///
/// # Errors
///
/// 404 when there is none.
pub async fn get(state: &AppState, caller: &Caller, task_id: &str) -> Result<Value> {
    let row = state.store.get(Table::Tasks, caller.scope(), task_id).await?;
    row.map(|r| response(r.doc)).ok_or_else(|| Error::not_found("task", task_id))
}

/// Lists the organization's tasks, newest first unless sorted otherwise.
///
/// # Errors
///
/// 422 for invalid filters, enum values or pagination.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    req: ListTasks,
    query: &PageParams,
) -> Result<Value> {
    let paging = query.resolve(100, crate::api::pagination::MAX_LIMIT)?;
    let mut conditions = Vec::new();
    if let Some(status) = &req.status {
        if !crate::model::TASK_STATUS_VALUES.contains(&status.as_str()) {
            return Err(Error::invalid("status", format!("{status:?} is not a task status")));
        }
        conditions.push(json!({"field": "status", "operator": "eq", "value": status}));
    }
    if let Some(task_type) = &req.task_type {
        if !crate::model::TASK_TYPE_VALUES.contains(&task_type.as_str()) {
            return Err(Error::invalid("task_type", format!("{task_type:?} is not a task type")));
        }
        conditions.push(json!({"field": "task_type", "operator": "eq", "value": task_type}));
    }
    let always = (!conditions.is_empty()).then(|| json!({"AND": conditions}));
    let default_sort = json!({"field": "created_at", "direction": "desc"});
    let sort = req.sort.clone().unwrap_or(default_sort);
    let search = req.search.as_deref().map(|s| ("task_type", s, None));
    let (filter, sort) = list_filter(req.filters.as_ref(), search, always, Some(&sort))?;

    let spec = paging.spec(filter, sort, false);
    let page = state.store.list(Table::Tasks, caller.scope(), &spec).await?;
    let next = crate::service::next_cursor(&spec, &page);
    let results: Vec<Value> = page.rows.iter().map(|r| response(r.doc.clone())).collect();
    Ok(json!({"results": results, "pagination": paging.response(&page, next)}))
}

/// Cancels a running task or forgets a finished one. Unknown tasks succeed too.
///
/// # Errors
///
/// Fails on a store error.
pub async fn kill(state: &AppState, caller: &Caller, task_id: &str) -> Result<Value> {
    if let Some(row) = state.store.get(Table::Tasks, caller.scope(), task_id).await? {
        let status = row.doc["status"].as_str().and_then(TaskStatus::parse);
        if status.is_some_and(TaskStatus::is_terminal) {
            state.store.delete_task(&caller.org_id, task_id).await?;
        } else {
            set_status(state, row.doc, TaskStatus::Canceled, None).await?;
        }
    }
    Ok(json!({"message": "Successfully deleted", "success": true}))
}

/// Carries out the deletion a task describes; the job engine calls it, perhaps more than once.
/// The task is marked FAILED only when the job's last attempt fails.
///
/// # Errors
///
/// The step that failed; the job engine retries it.
pub async fn run_deletion(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let org_id = job.org_id.as_str();
    let task_id = job.payload["task_id"].as_str().unwrap_or_default();
    let Some(task) = state.store.get(Table::Tasks, Scope::org(org_id), task_id).await? else {
        return Ok(());
    };
    let task = task.doc;
    if task["status"].as_str().and_then(TaskStatus::parse).is_some_and(TaskStatus::is_terminal) {
        return Ok(());
    }
    let task = set_status(state, task, TaskStatus::InProgress, None).await?;
    let outcome = match task["task_type"].as_str().and_then(TaskType::parse) {
        Some(TaskType::NamespaceDelete) => delete_namespace(state, org_id, &task).await,
        Some(TaskType::BucketDelete) => delete_bucket(state, org_id, &task).await,
        _ => Err(Error::Internal("not a deletion task".into())),
    };

    let Some(task) = current(state, org_id, &task).await? else {
        return Ok(());
    };
    match outcome {
        Ok(Step::Done(outputs)) => {
            let mut task = task;
            task["outputs"] = json!([outputs]);
            set_status(state, task, TaskStatus::Completed, None).await?;
            tracing::info!(task.id = %task_id, "task completed");
            Ok(())
        }
        Ok(Step::Canceled) => {
            tracing::info!(task.id = %task_id, "task canceled");
            Ok(())
        }
        Err(e) if job.attempts >= job.max_attempts => {
            let message = "the task failed inside sluice; the server log has the cause";
            set_status(state, task, TaskStatus::Failed, Some(message)).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// How a task's work ended.
enum Step {
    Done(Value),
    Canceled,
}

async fn delete_namespace(state: &AppState, org_id: &str, task: &Value) -> Result<Step> {
    let namespace_id = task["additional_data"]["namespace_id"].as_str().unwrap_or_default();
    let mut objects = 0;
    let bucket_ids = state.store.bucket_ids(namespace_id).await?;
    for bucket_id in &bucket_ids {
        match empty_and_remove(state, org_id, task, bucket_id).await? {
            Some(n) => objects += n,
            None => return cancel(state, Table::Namespaces, org_id, namespace_id).await,
        }
    }
    namespaces::remove(state, org_id, namespace_id).await?;
    Ok(Step::Done(json!({"namespace_id": namespace_id, "buckets_deleted": bucket_ids.len(),
                         "objects_deleted": objects})))
}

async fn delete_bucket(state: &AppState, org_id: &str, task: &Value) -> Result<Step> {
    let bucket_id = task["additional_data"]["bucket_id"].as_str().unwrap_or_default();
    let Some(objects) = empty_and_remove(state, org_id, task, bucket_id).await? else {
        return cancel(state, Table::Buckets, org_id, bucket_id).await;
    };
    Ok(Step::Done(json!({"bucket_id": bucket_id, "objects_deleted": objects})))
}

/// Empties a bucket and deletes it; `None` when the task was canceled in between. An object
/// written by a request that resolved the bucket just before its deletion started can land
/// after the bucket was emptied; the bucket is then emptied again.
async fn empty_and_remove(
    state: &AppState,
    org_id: &str,
    task: &Value,
    bucket_id: &str,
) -> Result<Option<u64>> {
    let mut deleted = 0;
    for _ in 0..REMOVE_ATTEMPTS {
        match empty_bucket(state, org_id, task, bucket_id).await? {
            Some(n) => deleted += n,
            None => return Ok(None),
        }
        match buckets::remove(state, bucket_id).await {
            Ok(()) => return Ok(Some(deleted)),
            Err(Error::Store(StoreError::StillReferenced)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Internal(format!("bucket {bucket_id} kept receiving objects while being deleted")))
}

/// Deletes a bucket's objects and their blobs chunk by chunk; `None` when the task was
/// canceled in between.
async fn empty_bucket(
    state: &AppState,
    org_id: &str,
    task: &Value,
    bucket_id: &str,
) -> Result<Option<u64>> {
    let mut deleted = 0;
    loop {
        let status = current(state, org_id, task)
            .await?
            .and_then(|t| t["status"].as_str().and_then(TaskStatus::parse));
        if status == Some(TaskStatus::Canceled) {
            return Ok(None);
        }
        let uploads = state.store.delete_uploads_chunk(bucket_id, DELETE_CHUNK).await?;
        for doc in &uploads {
            crate::service::uploads::delete_bytes(state, doc).await;
        }
        let docs = state.store.delete_objects_chunk(bucket_id, DELETE_CHUNK).await?;
        if docs.is_empty() && uploads.is_empty() {
            return Ok(Some(deleted));
        }
        deleted += docs.len() as u64;
        for doc in &docs {
            crate::service::objects::delete_blobs(state, doc).await;
        }
    }
}

/// Undoes the deletion mark of a namespace or bucket whose deletion task was canceled, so that
/// what is left of it can be seen and deleted again.
async fn cancel(state: &AppState, table: Table, org_id: &str, id: &str) -> Result<Step> {
    let rows = state.store.get(table, Scope::org(org_id), id).await?;
    if let Some(row) = rows {
        let mut doc = row.doc;
        if let Some(map) = doc.as_object_mut() {
            map.remove("deleting");
            if table == Table::Buckets {
                map.insert("status".into(), json!("ACTIVE"));
            }
        }
        state.store.update_doc(table, id, None, &doc).await?;
    }
    state.namespace_cache.clear();
    state.bucket_cache.clear();
    Ok(Step::Canceled)
}

async fn current(state: &AppState, org_id: &str, task: &Value) -> Result<Option<Value>> {
    let id = task["task_id"].as_str().unwrap_or_default();
    Ok(state.store.get(Table::Tasks, Scope::org(org_id), id).await?.map(|r| r.doc))
}

pub(crate) async fn set_status(
    state: &AppState,
    mut task: Value,
    status: TaskStatus,
    error: Option<&str>,
) -> Result<Value> {
    task["status"] = json!(status.as_str());
    task["updated_at"] = json!(now());
    if let Some(error) = error {
        task["error"] = json!(error);
        task["additional_data"]["error"] = json!(error);
    }
    let id = task["task_id"].as_str().unwrap_or_default().to_string();
    state.store.update_doc(Table::Tasks, &id, None, &task).await?;
    Ok(task)
}

/// The caller a background job acts as: the organization's, scoped to one namespace.
///
/// # Errors
///
/// 404 when the organization or namespace is gone.
pub(crate) async fn caller_for(
    state: &AppState,
    org_id: &str,
    namespace_id: &str,
) -> Result<NamespacedCaller> {
    let org = state
        .store
        .get_organization(org_id)
        .await?
        .ok_or_else(|| Error::not_found("organization", org_id))?;
    let caller = Caller {
        org_id: org.id,
        org_name: org.name,
        internal_id: org.internal_id,
        key_id: "job".into(),
        key_name: "background job".into(),
    };
    let namespace = namespaces::resolve_shared(state, &caller, namespace_id).await?;
    Ok(NamespacedCaller { caller, namespace_id: namespace_id.to_string(), namespace })
}

/// A task record as the API answers it.
pub fn response(mut doc: Value) -> Value {
    if let Some(map) = doc.as_object_mut() {
        map.remove("namespace_id");
    }
    doc
}
