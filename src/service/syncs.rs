//! Bucket syncs: a connection's files kept in step with a bucket.
//!
//! A run lists the source page by page, compares each page with the sync's ledger (key, ETag,
//! size, modification time of every file it copied), copies new and changed files into the
//! bucket's managed storage in the bucket's storage class, creates or updates their objects,
//! and submits the new objects as batches of `batch_size`. Files that disappeared from the
//! source are deleted from the bucket when `reconcile.on_delete` says so, unless that would
//! delete more than [`DELETE_GUARD`] of what the sync holds in one run.
//!
//! Each run is a durable job. It holds the sync's lock for as long as it runs, so no two runs
//! of one sync overlap, on any process; a run that dies leaves the lock to expire, and its job
//! is run again. A rerun repeats no work: copied files are in the ledger, and each object is
//! created with an idempotency key derived from the file, so a file copied just before a crash
//! is answered by its object instead of being created twice. Files modified after the run
//! started are left for the next run.
//!
//! `continuous` syncs schedule their next run when a run ends; `initial_only` syncs run once.
//! A run that fails is recorded and the schedule goes on; [`SUSPEND_AFTER`] failed runs in a
//! row suspend the sync with the reason.

use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::auth::NamespacedCaller;
use crate::api::extract::from_value;
use crate::api::pagination::{MAX_LIMIT, PageParams};
use crate::blob::ListedBlob;
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
use crate::model::blob::guess_mime;
use crate::model::{format_time, hex, new_id, now, parse_time};
use crate::service::objects::SyncedFile;
use crate::service::sync_mapping::{self, FieldRules, FileFacts};
use crate::service::{batches, buckets, connections, events, list_filter, objects, tasks};
use crate::source::Source;
use crate::store::{ClaimedJob, LedgerEntry, Scope, Table};

/// Providers a sync can read from.
const SYNCABLE: [&str; 8] =
    ["s3", "tigris", "backblaze", "supabase", "gcs", "azure_blob", "rss", "http_api"];
/// How many listed files are compared with the ledger at once.
const PAGE: usize = 500;
/// The largest share of a sync's files one run may delete.
const DELETE_GUARD: f64 = 0.5;
/// Failed runs in a row after which a sync is suspended.
const SUSPEND_AFTER: i64 = 5;
/// Failed runs after which a file is quarantined: left out of runs until requeued.
const MAX_RETRIES: i64 = 3;
/// Errors kept on a run's record.
const ERRORS_KEPT: usize = 20;
/// How long a run's lock lasts without renewal; a run renews it after every page.
const LOCK_TTL: Duration = Duration::from_secs(300);
/// How often a run asked for by hand looks again whether the run under way has ended.
const WAIT_FOR_LOCK: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
struct CreateInput {
    connection_id: String,
    source_path: String,
    sync_mode: Option<String>,
    polling_interval_seconds: Option<i64>,
    batch_size: Option<i64>,
    file_filters: Option<Map<String, Value>>,
    schema_mapping: Option<Value>,
    skip_duplicates: Option<bool>,
    skip_batch_submission: Option<bool>,
    reconcile: Option<Map<String, Value>>,
    description: Option<String>,
    max_objects_per_run: Option<i64>,
    sync_concurrency: Option<i64>,
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct UpdateInput {
    description: Option<String>,
    metadata: Option<Map<String, Value>>,
    status: Option<String>,
    is_active: Option<bool>,
    polling_interval_seconds: Option<i64>,
    batch_size: Option<i64>,
    schema_mapping: Option<Value>,
    skip_batch_submission: Option<bool>,
    max_objects_per_run: Option<i64>,
    sync_concurrency: Option<i64>,
    reconcile: Option<Map<String, Value>>,
}

/// The filters of a sync list.
#[derive(Debug, Default, Deserialize)]
pub struct ListSyncs {
    pub connection_id: Option<String>,
    pub status: Option<String>,
    pub is_active: Option<bool>,
}

/// The filter of a sync's run list.
#[derive(Debug, Default, Deserialize)]
pub struct ListRuns {
    pub status: Option<String>,
}

/// Creates a sync of a bucket from a connection; a `continuous` or `initial_only` sync runs for
/// the first time at once.
///
/// # Errors
///
/// 404 for the bucket or connection, 422 for invalid fields or a provider syncs cannot read.
pub async fn create(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    body: Value,
) -> Result<Value> {
    let bucket = buckets::resolve_shared(state, caller, bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default().to_string();
    let input: CreateInput = from_value(body, "")?;
    let (connection, _, _) =
        connections::for_sync(state, &caller.caller, &input.connection_id).await?;
    let provider = connection["provider_type"].as_str().unwrap_or_default().to_string();
    if !SYNCABLE.contains(&provider.as_str()) {
        return Err(Error::Unprocessable {
            code: "provider_not_supported",
            field: "connection_id".into(),
            message: format!(
                "syncs cannot read from {provider} connections yet; supported: {}",
                SYNCABLE.join(", ")
            ),
        });
    }
    let source_path = input.source_path.trim().to_string();
    if matches!(provider.as_str(), "s3" | "tigris" | "backblaze" | "supabase")
        && source_path.trim_matches('/').is_empty()
    {
        return Err(Error::invalid("source_path", "expected bucket or bucket/prefix"));
    }
    if matches!(provider.as_str(), "rss" | "http_api") {
        state.fetcher.policy().check_url(&source_path).map_err(|e| {
            Error::invalid(
                "source_path",
                format!(
                    "expected the URL of the {}: {e}",
                    if provider == "rss" { "feed" } else { "API" }
                ),
            )
        })?;
    }
    let sync_mode = input.sync_mode.unwrap_or_else(|| "continuous".into());
    if !matches!(sync_mode.as_str(), "continuous" | "initial_only") {
        return Err(Error::invalid("sync_mode", "expected continuous or initial_only"));
    }
    let schema = buckets::schema_of(state, &bucket)?;
    let mapping = sync_mapping::check(input.schema_mapping, &schema, &provider)?;
    let filters = check_filters(input.file_filters.unwrap_or_default())?;

    let id = new_id("sync_", 20);
    let at = now();
    let mut doc = json!({
        "sync_config_id": id,
        "bucket_id": bucket_id,
        "connection_id": connection["connection_id"],
        "internal_id": caller.caller.internal_id,
        "namespace_id": caller.namespace_id,
        "source_path": source_path,
        "source_type": provider,
        "file_filters": filters,
        "schema_mapping": mapping,
        "sync_mode": sync_mode,
        "polling_interval_seconds": ranged("polling_interval_seconds",
            input.polling_interval_seconds, 300, 30, 86_400)?,
        "batch_size": ranged("batch_size", input.batch_size, 50, 1, 100)?,
        "skip_duplicates": input.skip_duplicates.unwrap_or(true),
        "skip_batch_submission": input.skip_batch_submission.unwrap_or(false),
        "reconcile": check_reconcile(input.reconcile)?,
        "max_objects_per_run": ranged("max_objects_per_run", input.max_objects_per_run,
            100_000, 1, i64::MAX)?,
        "sync_concurrency": ranged("sync_concurrency", input.sync_concurrency, 8, 1, 100)?,
        "description": input.description,
        "metadata": input.metadata.unwrap_or_default(),
        "status": "ACTIVE",
        "is_active": true,
        "paused": false,
        "pause_reason": null,
        "paused_at": null,
        "locked": false,
        "total_files_discovered": 0,
        "total_files_synced": 0,
        "total_files_failed": 0,
        "total_bytes_synced": 0,
        "last_sync_at": null,
        "next_sync_at": at,
        "last_error": null,
        "consecutive_failures": 0,
        "batch_ids": [],
        "task_ids": [],
        "batches_created": 0,
        "sync_run_counter": 0,
        "schedule_generation": 1,
        "created_by_user_id": connection["created_by_user_id"],
        "created_at": at,
        "updated_at": at,
    });
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, &bucket_id);
    state.store.insert_sync_record(Table::Syncs, scope, &id, None, &doc).await?;
    schedule(state, &caller.caller.org_id, &doc, &at).await?;
    tracing::info!(sync.id = %id, bucket.id = %bucket_id, "sync created");
    doc["locked"] = json!(false);
    Ok(response(doc))
}

/// Reads a sync of a bucket.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn get(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    render(state, doc).await
}

/// Lists a bucket's syncs, newest first.
///
/// # Errors
///
/// 404 for the bucket, 422 for invalid filters or pagination.
pub async fn list(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    req: ListSyncs,
    query: &PageParams,
) -> Result<Value> {
    let bucket = buckets::resolve_shared(state, caller, bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let paging = query.resolve(100, MAX_LIMIT)?;
    let mut conditions = Vec::new();
    for (field, value) in [("connection_id", req.connection_id), ("status", req.status)] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            conditions.push(json!({"field": field, "operator": "eq", "value": value}));
        }
    }
    if let Some(active) = req.is_active {
        conditions.push(json!({"field": "is_active", "operator": "eq", "value": active}));
    }
    let always = (!conditions.is_empty()).then(|| json!({"AND": conditions}));
    let sort = json!({"field": "created_at", "direction": "desc"});
    let (filter, sort) = list_filter(None, None, always, Some(&sort))?;
    let spec = paging.spec(filter, sort, true);
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);
    let page = state.store.list(Table::Syncs, scope, &spec).await?;
    let next = crate::service::next_cursor(&spec, &page);
    let mut results = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        results.push(render(state, row.doc.clone()).await?);
    }
    let total = page.total.unwrap_or(results.len() as i64);
    Ok(json!({"results": results, "pagination": paging.response(&page, next), "total": total}))
}

/// Changes a sync's settings. A new polling interval, or a status that makes the sync active
/// again, restarts its schedule.
///
/// # Errors
///
/// 404, 422 for invalid fields.
pub async fn update(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    body: Value,
) -> Result<Value> {
    let mut doc = load(state, caller, bucket, id).await?;
    let input: UpdateInput = from_value(body, "")?;
    let was_active = runs_on_schedule(&doc);
    if let Some(description) = input.description {
        doc["description"] = json!(Some(description).filter(|d| !d.is_empty()));
    }
    if let Some(metadata) = input.metadata {
        doc["metadata"] = Value::Object(metadata);
    }
    let mut reschedule = false;
    if let Some(seconds) = input.polling_interval_seconds {
        doc["polling_interval_seconds"] =
            json!(ranged("polling_interval_seconds", Some(seconds), 300, 30, 86_400)?);
        reschedule = true;
    }
    if let Some(size) = input.batch_size {
        doc["batch_size"] = json!(ranged("batch_size", Some(size), 50, 1, 100)?);
    }
    if let Some(most) = input.max_objects_per_run {
        doc["max_objects_per_run"] =
            json!(ranged("max_objects_per_run", Some(most), 100_000, 1, i64::MAX)?);
    }
    if let Some(concurrency) = input.sync_concurrency {
        doc["sync_concurrency"] = json!(ranged("sync_concurrency", Some(concurrency), 8, 1, 100)?);
    }
    if let Some(skip) = input.skip_batch_submission {
        doc["skip_batch_submission"] = json!(skip);
    }
    if let Some(given) = input.reconcile {
        // Settings left out keep their current values.
        let mut merged = doc["reconcile"].as_object().cloned().unwrap_or_default();
        merged.extend(given);
        doc["reconcile"] = check_reconcile(Some(merged))?;
    }
    if let Some(mapping) = input.schema_mapping {
        let bucket = buckets::resolve_shared(state, caller, bucket).await?;
        let schema = buckets::schema_of(state, &bucket)?;
        let provider = doc["source_type"].as_str().unwrap_or_default().to_string();
        doc["schema_mapping"] = sync_mapping::check(Some(mapping), &schema, &provider)?;
    }
    let status = match (input.status.as_deref(), input.is_active) {
        (Some(status), _) => Some(check_status(status)?),
        (None, Some(true)) => Some("ACTIVE"),
        (None, Some(false)) => Some("SUSPENDED"),
        (None, None) => None,
    };
    if let Some(status) = status {
        doc["status"] = json!(status);
        doc["is_active"] = json!(status == "ACTIVE");
        if status == "ACTIVE" {
            doc["consecutive_failures"] = json!(0);
        }
    }
    doc["updated_at"] = json!(now());
    if runs_on_schedule(&doc) && (reschedule || !was_active) {
        restart_schedule(state, caller, &mut doc).await?;
    } else {
        save(state, &doc).await?;
    }
    render(state, doc).await
}

/// Deletes a sync, its runs and its ledger; the objects it created stay.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn delete(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    let id = doc["sync_config_id"].as_str().unwrap_or_default().to_string();
    state.store.delete_sync(&id).await?;
    tracing::info!(sync.id = %id, "sync deleted");
    Ok(json!({"message": "sync configuration deleted", "sync_config_id": id}))
}

/// Runs a sync now (also a paused one); answers the run's id. `full_sync` compares every file
/// with the source again, ignoring what the ledger says was copied.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn trigger(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    full_sync: bool,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    let run_id = new_id("syncjob_", 20);
    let at = now();
    let run = new_run(&doc, &run_id, "manual", &at);
    let scope = scope_of(&doc, &caller.caller.org_id);
    let sync_id = doc["sync_config_id"].as_str().unwrap_or_default();
    state.store.insert_sync_record(Table::SyncJobs, scope, &run_id, Some(sync_id), &run).await?;
    let payload = json!({"sync_config_id": sync_id, "sync_job_id": run_id, "trigger": "manual",
                         "full_sync": full_sync});
    jobs::enqueue(state, JobKind::SyncRun, &caller.caller.org_id, payload, None).await?;
    Ok(json!({"sync_job_id": run_id, "sync_config_id": sync_id, "status": "queued",
              "full_sync": full_sync, "message": "the sync will run now"}))
}

/// Pauses a sync's schedule; a run under way finishes.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn pause(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<Value> {
    let mut doc = load(state, caller, bucket, id).await?;
    if doc["paused"] != true {
        doc["paused"] = json!(true);
        doc["paused_at"] = json!(now());
        doc["pause_reason"] = json!("paused by request");
        doc["next_sync_at"] = Value::Null;
        doc["updated_at"] = json!(now());
        save(state, &doc).await?;
    }
    render(state, doc).await
}

/// Resumes a paused sync: its schedule starts again with a run now.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn resume(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<Value> {
    let mut doc = load(state, caller, bucket, id).await?;
    if doc["paused"] == true {
        doc["paused"] = json!(false);
        doc["paused_at"] = Value::Null;
        doc["pause_reason"] = Value::Null;
        if runs_on_schedule(&doc) {
            restart_schedule(state, caller, &mut doc).await?;
        } else {
            save(state, &doc).await?;
        }
    }
    render(state, doc).await
}

/// Releases a sync's lock, for a run that can no longer release it itself.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn unlock(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    let id = doc["sync_config_id"].as_str().unwrap_or_default();
    let released = state.store.unlock_sync(id, None).await?;
    Ok(json!({"sync_config_id": id, "unlocked": released,
              "message": if released { "the lock was released" } else { "the sync was not locked" }}))
}

/// Lists the runs of a sync, newest first.
///
/// # Errors
///
/// 404 for the bucket or the sync, 422 for invalid pagination.
pub async fn runs(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    req: ListRuns,
    query: &PageParams,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    let paging = query.resolve(100, MAX_LIMIT)?;
    let mut conditions =
        vec![json!({"field": "sync_config_id", "operator": "eq", "value": doc["sync_config_id"]})];
    if let Some(status) = req.status.filter(|s| !s.is_empty()) {
        conditions.push(json!({"field": "status", "operator": "eq", "value": status}));
    }
    let sort = json!({"field": "started_at", "direction": "desc"});
    let (filter, sort) = list_filter(None, None, Some(json!({"AND": conditions})), Some(&sort))?;
    let spec = paging.spec(filter, sort, true);
    let page =
        state.store.list(Table::SyncJobs, scope_of(&doc, &caller.caller.org_id), &spec).await?;
    let next = crate::service::next_cursor(&spec, &page);
    let results: Vec<Value> = page.rows.iter().map(|r| with_lag(r.doc.clone())).collect();
    let total = page.total.unwrap_or(results.len() as i64);
    Ok(json!({"results": results, "pagination": paging.response(&page, next), "total": total}))
}

/// Reads one run of a sync.
///
/// # Errors
///
/// 404 for the bucket, the sync or the run.
pub async fn run_record(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    run_id: &str,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    let row =
        state.store.get(Table::SyncJobs, scope_of(&doc, &caller.caller.org_id), run_id).await?;
    row.map(|r| with_lag(r.doc))
        .filter(|run| run["sync_config_id"] == doc["sync_config_id"])
        .ok_or_else(|| Error::not_found("sync_job", run_id))
}

/// A run record as answered: a running run says how many seconds ago it last recorded
/// progress (`lag_seconds`), so that a stalled run shows.
fn with_lag(mut run: Value) -> Value {
    let lag = (run["status"] == "running")
        .then(|| run["updated_at"].as_str().and_then(parse_time))
        .flatten()
        .map(|at| (time::OffsetDateTime::now_utc() - at).whole_seconds().max(0));
    run["lag_seconds"] = json!(lag);
    run
}

/// A sync's totals, health and latest run.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn metrics(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<Value> {
    let doc = render(state, load(state, caller, bucket, id).await?).await?;
    let scope = scope_of(&doc, &caller.caller.org_id);
    let sort = json!({"field": "started_at", "direction": "desc"});
    let always = json!({"field": "sync_config_id", "operator": "eq",
                        "value": doc["sync_config_id"]});
    let (filter, sort) = list_filter(None, None, Some(always), Some(&sort))?;
    let spec = PageParams::default().resolve(1, 1)?.spec(filter, sort, false);
    let last =
        state.store.list(Table::SyncJobs, scope, &spec).await?.rows.first().map(|r| r.doc.clone());
    let sync_id = doc["sync_config_id"].as_str().unwrap_or_default();
    let dead = state.store.sync_failures(sync_id, &["quarantined"], &[], DEAD_LETTER_LIMIT).await?;
    let mut by_error = Map::new();
    for entry in &dead {
        let kind = entry["error_type"].as_str().unwrap_or("unknown").to_string();
        let count = by_error.get(&kind).and_then(Value::as_i64).unwrap_or(0) + 1;
        by_error.insert(kind, json!(count));
    }
    let interval = doc["polling_interval_seconds"].as_i64().unwrap_or(300);
    let since = doc["last_sync_at"]
        .as_str()
        .and_then(parse_time)
        .map(|at| (time::OffsetDateTime::now_utc() - at).whole_seconds());
    let stale = doc["sync_mode"] == "continuous"
        && doc["paused"] != true
        && since.is_some_and(|seconds| seconds > 3 * interval.max(60));
    Ok(json!({
        "sync_config_id": doc["sync_config_id"],
        "status": doc["status"],
        "is_active": doc["is_active"],
        "paused": doc["paused"],
        "total_files_discovered": doc["total_files_discovered"],
        "total_files_synced": doc["total_files_synced"],
        "total_files_failed": doc["total_files_failed"],
        "total_bytes_synced": doc["total_bytes_synced"],
        "batches_created": doc["batches_created"],
        "sync_run_counter": doc["sync_run_counter"],
        "last_sync_at": doc["last_sync_at"],
        "seconds_since_last_sync": since,
        "next_sync_at": doc["next_sync_at"],
        "running_job": last.as_ref().is_some_and(|run| run["status"] == "running"),
        "consecutive_failures": doc["consecutive_failures"],
        "last_error": doc["last_error"],
        "is_stale": stale,
        "healthy": doc["consecutive_failures"].as_i64().unwrap_or(0) == 0 && !stale,
        "dlq_total": dead.len(),
        "dlq_by_error": by_error,
        "last_job": last,
    }))
}

/// The filter of a dead-letter list.
#[derive(Debug, Default, Deserialize)]
pub struct ListDeadLetters {
    pub only_max_retries: Option<bool>,
    pub error_types: Option<Vec<String>>,
}

/// Which dead-letter entries a requeue or a bulk mark applies to.
#[derive(Debug, Default, Deserialize)]
pub struct DeadLetterSelection {
    pub error_types: Option<Vec<String>>,
}

/// The largest dead-letter page, and the most entries one requeue or mark changes.
const DEAD_LETTER_LIMIT: i64 = 10_000;

/// Lists the files of a sync whose copies failed: those still retried, quarantined ones
/// (`max_retries_reached`) and those marked as failed for good.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn dead_letters(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    req: ListDeadLetters,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    let sync_id = doc["sync_config_id"].as_str().unwrap_or_default();
    let states: &[&str] = if req.only_max_retries == Some(true) {
        &["quarantined", "failed"]
    } else {
        &["retrying", "quarantined", "failed"]
    };
    let types = req.error_types.unwrap_or_default();
    let entries = state.store.sync_failures(sync_id, states, &types, DEAD_LETTER_LIMIT).await?;
    let total = entries.len();
    Ok(json!({"results": entries, "total": total}))
}

/// Returns quarantined files (of `error_types`, or all) to the next runs.
///
/// # Errors
///
/// 404 for the bucket or the sync.
pub async fn requeue(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    req: DeadLetterSelection,
) -> Result<Value> {
    let doc = load(state, caller, bucket, id).await?;
    let sync_id = doc["sync_config_id"].as_str().unwrap_or_default();
    let types = req.error_types.unwrap_or_default();
    let entries =
        state.store.sync_failures(sync_id, &["quarantined"], &types, DEAD_LETTER_LIMIT).await?;
    let at = now();
    for mut entry in entries.iter().cloned() {
        entry["state"] = json!("retrying");
        entry["retry_count"] = json!(0);
        entry["max_retries_reached"] = json!(false);
        entry["requeued_at"] = json!(at);
        let key = entry["source_object_id"].as_str().unwrap_or_default().to_string();
        state.store.put_sync_failure(sync_id, &key, &entry).await?;
    }
    Ok(json!({"requeued": entries.len()}))
}

/// Marks quarantined and retried files of `error_types` as failed for good: runs skip them.
///
/// # Errors
///
/// 404 for the bucket or the sync, 422 without error types.
pub async fn mark_failed(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    req: DeadLetterSelection,
) -> Result<Value> {
    let types = req.error_types.unwrap_or_default();
    if types.is_empty() {
        return Err(Error::invalid("error_types", "expected at least one error type"));
    }
    let doc = load(state, caller, bucket, id).await?;
    let sync_id = doc["sync_config_id"].as_str().unwrap_or_default();
    let states = ["retrying", "quarantined"];
    let entries = state.store.sync_failures(sync_id, &states, &types, DEAD_LETTER_LIMIT).await?;
    for mut entry in entries.iter().cloned() {
        entry["state"] = json!("failed");
        entry["max_retries_reached"] = json!(true);
        entry["disposal_reason"] = json!("marked_permanently_failed");
        let key = entry["source_object_id"].as_str().unwrap_or_default().to_string();
        state.store.put_sync_failure(sync_id, &key, &entry).await?;
    }
    Ok(json!({"updated": entries.len()}))
}

// Runs.

/// Runs a sync: the job of [`JobKind::SyncRun`]. Never fails: a failed run is recorded on the
/// run and the sync, and the schedule goes on.
///
/// # Errors
///
/// Fails only on a store error while recording the outcome; the job engine retries then.
pub async fn run(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let sync_id = job.payload["sync_config_id"].as_str().unwrap_or_default().to_string();
    let trigger = job.payload["trigger"].as_str().unwrap_or("scheduled").to_string();
    let Some(row) = state.store.get(Table::Syncs, Scope::org(&job.org_id), &sync_id).await? else {
        return Ok(());
    };
    let doc = row.doc;
    let scheduled = trigger == "scheduled";
    if scheduled
        && (doc["schedule_generation"] != job.payload["generation"] || !runs_on_schedule(&doc))
    {
        return Ok(());
    }
    let run_id = match job.payload["sync_job_id"].as_str() {
        Some(id) => id.to_string(),
        None => format!("syncjob_{}", &hex(&Sha256::digest(job.id.as_bytes()))[..20]),
    };
    let scope = scope_of(&doc, &job.org_id);
    let started = now();
    let existing = state.store.get(Table::SyncJobs, scope, &run_id).await?;
    let mut record = match existing {
        Some(row) => {
            let mut record = row.doc;
            if record["status"] == "running" && record["phase"] != "queued" {
                // Started by a worker that died: its lease expired and this worker took it.
                record["resumed_via"] = json!("lease_expired");
            }
            record
        }
        None => {
            let record = new_run(&doc, &run_id, &trigger, &started);
            state
                .store
                .insert_sync_record(Table::SyncJobs, scope, &run_id, Some(&sync_id), &record)
                .await?;
            record
        }
    };

    let until = format_time(time::OffsetDateTime::now_utc() + LOCK_TTL);
    if !state.store.lock_sync(&sync_id, &job.id, &until, &started).await? {
        if trigger == "manual" {
            // A run asked for by hand waits for the run under way rather than being dropped;
            // the lock is held no longer than its lease, so the wait ends.
            let again = jobs::after(WAIT_FOR_LOCK);
            jobs::enqueue_at(state, JobKind::SyncRun, &job.org_id, job.payload.clone(), &again)
                .await?;
            return Ok(());
        }
        record["status"] = json!("skipped");
        record["phase"] = json!("done");
        record["error"] = json!("another run of this sync was under way");
        record["completed_at"] = json!(now());
        save_run(state, &record).await?;
        if scheduled {
            schedule_next(state, &job.org_id, &sync_id).await?;
        }
        return Ok(());
    }
    record["status"] = json!("running");
    record["phase"] = json!("listing");
    if record["resumed_via"].is_null() {
        // A triggered run was recorded when it was asked for; it starts now.
        record["started_at"] = json!(started);
    }
    save_run(state, &record).await?;

    let full = job.payload["full_sync"] == true;
    let outcome = sync_files(state, job, &doc, &mut record, full).await;
    finish(state, job, &sync_id, &mut record, outcome).await?;
    if scheduled || doc["sync_mode"] == "initial_only" {
        schedule_next(state, &job.org_id, &sync_id).await?;
    }
    Ok(())
}

/// What one run did.
#[derive(Debug, Default)]
struct Tally {
    found: i64,
    synced: i64,
    failed: i64,
    bytes: i64,
    deleted: i64,
    quarantined: i64,
    batch_ids: Vec<String>,
    task_ids: Vec<String>,
    errors: Vec<Value>,
    note: Option<String>,
}

async fn sync_files(
    state: &AppState,
    job: &ClaimedJob,
    doc: &Value,
    record: &mut Value,
    full: bool,
) -> std::result::Result<Tally, String> {
    let sync_id = doc["sync_config_id"].as_str().unwrap_or_default();
    let namespace_id = doc["namespace_id"].as_str().unwrap_or_default();
    let bucket_id = doc["bucket_id"].as_str().unwrap_or_default().to_string();
    let caller =
        tasks::caller_for(state, &job.org_id, namespace_id).await.map_err(|e| e.to_string())?;
    let connection_id = doc["connection_id"].as_str().unwrap_or_default();
    let (connection, settings, credentials) =
        connections::for_sync(state, &caller.caller, connection_id)
            .await
            .map_err(|e| e.to_string())?;
    let provider = connection["provider_type"].as_str().unwrap_or_default();
    let path = doc["source_path"].as_str().unwrap_or_default();
    let source =
        Source::open(&state.fetcher, &state.aws_identity, provider, &settings, &credentials, path)
            .await?;
    let bucket =
        buckets::resolve_shared(state, &caller, &bucket_id).await.map_err(|e| e.to_string())?;
    let schema = buckets::schema_of(state, &bucket).map_err(|e| e.to_string())?;
    let mapping = sync_mapping::check(Some(doc["schema_mapping"].clone()), &schema, provider)
        .map_err(|e| e.to_string())?;
    let fields = FieldRules::of(&mapping, provider).map_err(|e| e.to_string())?;
    let filters = Filters::of(&doc["file_filters"]);

    // A run taken over after its process died goes on after the last page it finished, under
    // its own run number, so that the files it saw before count as seen when reconciling.
    let resume_after = match (record["current_cursor"].as_str(), record["run_number"].as_i64()) {
        (Some(key), Some(_)) if source.resumable() => Some(key.to_string()),
        _ => None,
    };
    let run_number = match (&resume_after, record["run_number"].as_i64()) {
        (Some(_), Some(number)) => number,
        _ => doc["sync_run_counter"].as_i64().unwrap_or(0) + 1,
    };
    record["run_number"] = json!(run_number);
    record["resumed_after"] = json!(resume_after);
    let mut fresh = load_by_id(state, &job.org_id, sync_id).await.map_err(|e| e.to_string())?;
    fresh["sync_run_counter"] = json!(run_number);
    fresh["current_sync_run_id"] = record["sync_job_id"].clone();
    save(state, &fresh).await.map_err(|e| e.to_string())?;

    let started = record["started_at"].as_str().unwrap_or_default().to_string();
    let run_id = record["sync_job_id"].as_str().unwrap_or_default().to_string();
    let most = doc["max_objects_per_run"].as_i64().unwrap_or(100_000);
    let batch_size = usize::try_from(doc["batch_size"].as_i64().unwrap_or(50)).unwrap_or(50);
    let submit = doc["skip_batch_submission"] != true;
    let ctx = RunCtx {
        state,
        caller: &caller,
        bucket_id: &bucket_id,
        sync_id,
        source: &source,
        mapping: &mapping,
        fields: &fields,
        skip_duplicates: doc["skip_duplicates"] == true,
        on_update: doc["reconcile"]["on_update"] != false,
        run: run_number,
        run_id: &run_id,
        job_id: &job.id,
        concurrency: usize::try_from(doc["sync_concurrency"].as_i64().unwrap_or(1)).unwrap_or(1),
    };

    let mut tally = Tally::default();
    let mut pending_batch: Vec<String> = Vec::new();
    if resume_after.is_some() {
        let count = |key: &str| record[key].as_i64().unwrap_or(0);
        tally.found = count("total_files");
        tally.synced = count("files_synced");
        tally.failed = count("files_failed");
        tally.quarantined = count("files_quarantined");
        tally.bytes = count("bytes_synced");
        let unsubmitted = record["unsubmitted_object_ids"].as_array().into_iter().flatten();
        pending_batch.extend(unsubmitted.filter_map(Value::as_str).map(String::from));
    }
    // Limitation: objects created in a page that a crash interrupts are in the ledger but in no
    // batch: the run that takes over finds their files unchanged and does not submit them.
    let mut listing = source.list_after(resume_after.as_deref());
    let mut page: Vec<ListedBlob> = Vec::with_capacity(PAGE);
    let mut complete = true;
    let mut late: Vec<String> = Vec::new();
    loop {
        let next = listing.next().await;
        let done = next.is_none();
        if let Some(entry) = next {
            let entry = entry.map_err(|e| format!("listing the source failed: {e}"))?;
            // The media type is worked out only for a sync that filters by it.
            let mime = filters.wants_mime().then(|| {
                let (filename, announced) = source.file_of(&entry.key);
                announced.or_else(|| guess_mime(&filename).map(String::from))
            });
            if entry.key.ends_with('/') || !filters.admit(&entry, mime.flatten().as_deref()) {
                continue;
            }
            if entry.last_modified > started {
                // Written after the run began: left for the next run, as if not yet listed,
                // but seen, so that reconciling does not take it for a deleted file.
                late.push(entry.key);
                continue;
            }
            tally.found += 1;
            page.push(entry);
            if page.len() < PAGE {
                continue;
            }
        }
        if !page.is_empty() {
            let last_key = page.last().map(|e| e.key.clone());
            let budget = most - tally.synced - tally.failed;
            let created =
                ctx.sync_page(std::mem::take(&mut page), full, budget, &mut tally).await?;
            if submit {
                pending_batch.extend(created);
            }
            while submit && pending_batch.len() >= batch_size {
                let chunk: Vec<String> = pending_batch.drain(..batch_size).collect();
                submit_batch(&ctx, chunk, &mut tally).await;
            }
            let late_keys: Vec<&str> = late.iter().map(String::as_str).collect();
            let store = &state.store;
            store
                .ledger_mark_seen(sync_id, &late_keys, run_number)
                .await
                .map_err(|e| e.to_string())?;
            late.clear();
            if let Some(last) = last_key {
                record["current_cursor"] = json!(last);
            }
            // Fewer than `batch_size` ids: the record stays small.
            record["unsubmitted_object_ids"] = json!(pending_batch);
            progress(state, record, &tally).await;
            let until = format_time(time::OffsetDateTime::now_utc() + LOCK_TTL);
            let held = state.store.lock_sync(sync_id, &job.id, &until, &now()).await;
            if !held.map_err(|e| e.to_string())? {
                return Err("the run lost the sync's lock".into());
            }
            if tally.synced + tally.failed >= most {
                tally.note = Some(format!("stopped at max_objects_per_run ({most})"));
                complete = false;
                break;
            }
        }
        if done {
            let late_keys: Vec<&str> = late.iter().map(String::as_str).collect();
            let store = &state.store;
            store
                .ledger_mark_seen(sync_id, &late_keys, run_number)
                .await
                .map_err(|e| e.to_string())?;
            break;
        }
    }
    if submit && !pending_batch.is_empty() {
        submit_batch(&ctx, pending_batch, &mut tally).await;
    }
    if complete && doc["reconcile"]["on_delete"] != false {
        record["phase"] = json!("reconciling");
        progress(state, record, &tally).await;
        ctx.remove_deleted(&mut tally).await?;
    }
    Ok(tally)
}

/// A copied file's object id and whether it is new, or the kind of failure and why.
type CopyOutcome = std::result::Result<(String, bool), (&'static str, String)>;

/// What a run needs while it copies files.
struct RunCtx<'a> {
    state: &'a AppState,
    caller: &'a NamespacedCaller,
    bucket_id: &'a str,
    sync_id: &'a str,
    source: &'a Source,
    mapping: &'a Value,
    fields: &'a FieldRules,
    skip_duplicates: bool,
    on_update: bool,
    run: i64,
    run_id: &'a str,
    job_id: &'a str,
    concurrency: usize,
}

impl RunCtx<'_> {
    /// Compares a page of listed files with the ledger and copies the new and changed ones, at
    /// most `budget`; answers the ids of the objects created.
    async fn sync_page(
        &self,
        page: Vec<ListedBlob>,
        full: bool,
        budget: i64,
        tally: &mut Tally,
    ) -> std::result::Result<Vec<String>, String> {
        let keys: Vec<&str> = page.iter().map(|e| e.key.as_str()).collect();
        let known = self
            .state
            .store
            .ledger_entries(self.sync_id, &keys)
            .await
            .map_err(|e| e.to_string())?;
        let failing = self
            .state
            .store
            .sync_failure_states(self.sync_id, &keys)
            .await
            .map_err(|e| e.to_string())?;
        let mut unchanged = Vec::new();
        let mut work = Vec::new();
        for entry in &page {
            if failing.get(&entry.key).is_some_and(|state| state != "retrying") {
                // Quarantined or given up: seen, so that its object is not deleted, not copied.
                tally.quarantined += 1;
                unchanged.push(entry.key.as_str());
                continue;
            }
            let before = known.get(&entry.key);
            let same = before.is_some_and(|b| {
                b.size == i64::try_from(entry.size).unwrap_or(i64::MAX)
                    && b.etag == entry.etag
                    && b.last_modified == entry.last_modified
            });
            if same && !full {
                unchanged.push(entry.key.as_str());
            } else if before.is_some() && !self.on_update && !full {
                // Changed, but the sync does not take updates (reconcile.on_update): the object
                // keeps the copy it has.
                unchanged.push(entry.key.as_str());
            } else if (work.len() as i64) < budget {
                work.push((entry, before));
            }
        }
        // Up to `sync_concurrency` files are copied at once.
        type Copy<'c> = futures::future::BoxFuture<'c, (&'c ListedBlob, CopyOutcome)>;
        let copies: Vec<Copy<'_>> = work
            .into_iter()
            .map(|(entry, before)| -> Copy<'_> {
                Box::pin(async move { (entry, self.copy(entry, before).await) })
            })
            .collect();
        let outcomes: Vec<_> =
            futures::stream::iter(copies).buffer_unordered(self.concurrency).collect().await;
        let mut created = Vec::new();
        for (entry, outcome) in outcomes {
            match outcome {
                Ok((object_id, is_new)) => {
                    tally.synced += 1;
                    tally.bytes += i64::try_from(entry.size).unwrap_or(0);
                    if is_new {
                        created.push(object_id);
                    }
                    if failing.contains_key(&entry.key) {
                        let store = &self.state.store;
                        store
                            .clear_sync_failure(self.sync_id, &entry.key)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Err((error_type, message)) => {
                    tally.failed += 1;
                    if tally.errors.len() < ERRORS_KEPT {
                        tally.errors.push(json!({"key": entry.key, "error": message}));
                    }
                    self.record_failure(entry, error_type, &message).await?;
                }
            }
        }
        self.state
            .store
            .ledger_mark_seen(self.sync_id, &unchanged, self.run)
            .await
            .map_err(|e| e.to_string())?;
        Ok(created)
    }

    /// Records a failed copy of a file; the last allowed failure quarantines it.
    async fn record_failure(
        &self,
        entry: &ListedBlob,
        error_type: &str,
        message: &str,
    ) -> std::result::Result<(), String> {
        let store = &self.state.store;
        let earlier =
            store.sync_failure(self.sync_id, &entry.key).await.map_err(|e| e.to_string())?;
        let at = now();
        let mut doc = earlier.unwrap_or_else(|| {
            json!({
                "dlq_id": new_id("dlq_", 20),
                "sync_config_id": self.sync_id,
                "source_object_id": entry.key,
                "source_path": entry.key,
                "first_seen_at": at,
                "retry_count": 0,
                "internal_id": self.caller.caller.internal_id,
                "namespace_id": self.caller.namespace_id,
                "bucket_id": self.bucket_id,
            })
        });
        let count = doc["retry_count"].as_i64().unwrap_or(0) + 1;
        let exhausted = count >= MAX_RETRIES;
        doc["retry_count"] = json!(count);
        doc["sync_job_id"] = json!(self.run_id);
        doc["error_type"] = json!(error_type);
        doc["error_message"] = json!(message);
        doc["last_seen_at"] = json!(at);
        doc["max_retries_reached"] = json!(exhausted);
        doc["state"] = json!(if exhausted { "quarantined" } else { "retrying" });
        store.put_sync_failure(self.sync_id, &entry.key, &doc).await.map_err(|e| e.to_string())
    }

    /// Copies one file into managed storage and creates its object, or points the existing
    /// object at the new copy; answers the object id and whether it is new, or the kind of
    /// failure and why.
    async fn copy(&self, entry: &ListedBlob, before: Option<&LedgerEntry>) -> CopyOutcome {
        let state = self.state;
        let version = hex(&Sha256::digest(
            format!("{}\n{}\n{:?}\n{}", entry.key, entry.size, entry.etag, entry.last_modified)
                .as_bytes(),
        ));
        let (filename, announced) = self.source.file_of(&entry.key);
        let facts = FileFacts {
            key: &entry.key,
            filename: &filename,
            item: self.source.fields_of(&entry.key),
        };
        let fields = self.fields.apply(&facts).map_err(|e| ("mapping_failed", e))?;
        let storage_key = format!(
            "{}/{}/{}/sync/{}/{}/{}",
            self.caller.caller.internal_id,
            self.caller.namespace_id,
            self.bucket_id,
            self.sync_id,
            &version[..24],
            sanitize(&filename)
        );
        let class = StorageClassOf::bucket(state, self.caller, self.bucket_id)
            .await
            .map_err(|e| ("bucket_unavailable", e))?;
        let mime = self.mapping["mime_type_override"]
            .as_str()
            .map(String::from)
            .or(announced)
            .or_else(|| guess_mime(&filename).map(String::from))
            .unwrap_or_else(|| "application/octet-stream".into());
        let (_, stream) = self
            .source
            .open_read(&state.fetcher, &entry.key)
            .await
            .map_err(|e| ("download_failed", e))?;
        let stored = state
            .blobs
            .put_stream(&storage_key, stream, Some(&mime), class, None)
            .await
            .map_err(|e| ("download_failed", format!("copying the file failed: {e}")))?;
        let source_key = self.source.source_key(&entry.key);
        let file = SyncedFile {
            sync_id: self.sync_id.to_string(),
            source_key,
            storage_key,
            size: stored.size,
            mime,
            filename,
            sha256: stored.sha256.unwrap_or_default(),
            blob_property: self.mapping["blob_property"].as_str().unwrap_or_default().to_string(),
            blob_type: self.mapping["blob_type"].as_str().unwrap_or_default().to_string(),
        };
        let (object_id, is_new) = match before {
            Some(before) => {
                let replaced = objects::replace_synced_blob(
                    state,
                    self.caller,
                    self.bucket_id,
                    &before.object_id,
                    &file,
                    fields.clone(),
                )
                .await;
                match replaced {
                    Ok(_) => (before.object_id.clone(), false),
                    Err(Error::NotFound { .. }) => self
                        .create_object(&file, &version, fields)
                        .await
                        .map_err(|e| ("object_rejected", e))?,
                    Err(e) => return Err(("object_rejected", e.to_string())),
                }
            }
            None => self
                .create_object(&file, &version, fields)
                .await
                .map_err(|e| ("object_rejected", e))?,
        };
        let ledger = LedgerEntry {
            key: entry.key.clone(),
            etag: entry.etag.clone(),
            size: i64::try_from(entry.size).unwrap_or(i64::MAX),
            last_modified: entry.last_modified.clone(),
            object_id: object_id.clone(),
        };
        state
            .store
            .ledger_put(self.sync_id, &ledger, self.run)
            .await
            .map_err(|e| ("ledger_write_failed", e.to_string()))?;
        Ok((object_id, is_new))
    }

    /// Creates the object of a copied file with its mapped `fields`; a file created before a
    /// crash is answered by its object through the idempotency key. With `skip_duplicates`, a
    /// file whose bytes an object of the bucket already holds is answered by that object, and
    /// the copy is deleted.
    // Limitation: two files with the same bytes copied at once, in one page of one run, may
    // both become objects: neither sees the other's object when it looks for a duplicate.
    async fn create_object(
        &self,
        file: &SyncedFile,
        version: &str,
        mut fields: Map<String, Value>,
    ) -> std::result::Result<(String, bool), String> {
        fields.insert("idempotency_key".into(), json!(format!("sync:{}:{version}", self.sync_id)));
        fields.insert("skip_duplicates".into(), json!(self.skip_duplicates));
        let (object, replayed_by) =
            objects::create_from_sync(self.state, self.caller, self.bucket_id, file, fields)
                .await
                .map_err(|e| e.to_string())?;
        let id = object["object_id"].as_str().unwrap_or_default().to_string();
        if replayed_by == Some("skip_duplicates") {
            if let Err(e) = self.state.blobs.delete(&file.storage_key).await {
                tracing::warn!(error = %e, "could not delete the copy of a duplicate synced file");
            }
            return Ok((id, false));
        }
        Ok((id, true))
    }

    /// Deletes the objects of files the run did not see, unless that is more than
    /// [`DELETE_GUARD`] of what the sync holds.
    async fn remove_deleted(&self, tally: &mut Tally) -> std::result::Result<(), String> {
        let store = &self.state.store;
        let (gone, total) =
            store.ledger_unseen(self.sync_id, self.run, 10_000).await.map_err(|e| e.to_string())?;
        if gone.is_empty() {
            return Ok(());
        }
        let share = gone.len() as f64 / total.max(1) as f64;
        if gone.len() > 1 && share > DELETE_GUARD {
            tally.note = Some(format!(
                "{} of {total} files are gone from the source; more than {:.0}% at once, so \
                 none was deleted (check source_path, or delete them by hand)",
                gone.len(),
                DELETE_GUARD * 100.0
            ));
            return Ok(());
        }
        for entry in gone {
            match objects::delete(self.state, self.caller, self.bucket_id, &entry.object_id).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
            store.ledger_forget(self.sync_id, &entry.key).await.map_err(|e| e.to_string())?;
            tally.deleted += 1;
        }
        Ok(())
    }
}

/// The bucket's storage class, read fresh for each file so that a re-tiering takes effect.
struct StorageClassOf;

impl StorageClassOf {
    async fn bucket(
        state: &AppState,
        caller: &NamespacedCaller,
        bucket_id: &str,
    ) -> std::result::Result<crate::model::StorageClass, String> {
        let bucket =
            buckets::resolve_shared(state, caller, bucket_id).await.map_err(|e| e.to_string())?;
        Ok(bucket["storage_class"]
            .as_str()
            .and_then(crate::model::StorageClass::parse)
            .unwrap_or_default())
    }
}

async fn submit_batch(ctx: &RunCtx<'_>, object_ids: Vec<String>, tally: &mut Tally) {
    match batches::create_submitted(ctx.state, ctx.caller, ctx.bucket_id, object_ids).await {
        Ok(batch) => {
            if let Some(id) = batch["batch_id"].as_str() {
                tally.batch_ids.push(id.to_string());
            }
            if let Some(id) = batch["task_id"].as_str() {
                tally.task_ids.push(id.to_string());
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, sync.job = ctx.job_id, "a sync could not submit a batch");
            if tally.errors.len() < ERRORS_KEPT {
                tally.errors.push(json!({"error": format!("submitting a batch failed: {e}")}));
            }
        }
    }
}

/// Writes a run's progress; a failure to write it is logged, not fatal.
async fn progress(state: &AppState, record: &mut Value, tally: &Tally) {
    fill(record, tally);
    if let Err(e) = save_run(state, record).await {
        tracing::warn!(error = %e, "could not record a sync run's progress");
    }
}

fn fill(record: &mut Value, tally: &Tally) {
    record["total_files"] = json!(tally.found);
    record["files_synced"] = json!(tally.synced);
    record["files_failed"] = json!(tally.failed);
    record["files_deleted"] = json!(tally.deleted);
    record["files_quarantined"] = json!(tally.quarantined);
    record["bytes_synced"] = json!(tally.bytes);
    record["errors"] = json!(tally.errors);
    let done = tally.synced + tally.failed;
    record["progress_percent"] = json!(if tally.found > 0 {
        (done as f64 * 100.0 / tally.found as f64).min(100.0)
    } else {
        0.0
    });
    let elapsed = record["started_at"]
        .as_str()
        .and_then(parse_time)
        .map(|at| (time::OffsetDateTime::now_utc() - at).as_seconds_f64())
        .unwrap_or(0.0);
    let throughput = if elapsed > 0.0 { done as f64 * 60.0 / elapsed } else { 0.0 };
    record["throughput_files_per_min"] = json!(throughput);
    record["progress"] = json!({
        "files_found": tally.found,
        "files_synced": tally.synced,
        "files_failed": tally.failed,
        "files_deleted": tally.deleted,
        "bytes_synced": tally.bytes,
        "percent": record["progress_percent"],
        "files_per_second": throughput / 60.0,
        "bytes_per_second": if elapsed > 0.0 { tally.bytes as f64 / elapsed } else { 0.0 },
    });
    record["updated_at"] = json!(now());
}

/// Records a run's outcome on the sync, releases the sync's lock, and records it on the run.
async fn finish(
    state: &AppState,
    job: &ClaimedJob,
    sync_id: &str,
    record: &mut Value,
    outcome: std::result::Result<Tally, String>,
) -> Result<()> {
    let mut doc = load_by_id(state, &job.org_id, sync_id).await?;
    let at = now();
    match outcome {
        Ok(tally) => {
            fill(record, &tally);
            record["status"] = json!("completed");
            record["error"] = json!(tally.note);
            let add = |doc: &mut Value, key: &str, n: i64| {
                doc[key] = json!(doc[key].as_i64().unwrap_or(0) + n);
            };
            add(&mut doc, "total_files_discovered", tally.found);
            add(&mut doc, "total_files_synced", tally.synced);
            add(&mut doc, "total_files_failed", tally.failed);
            add(&mut doc, "total_bytes_synced", tally.bytes);
            add(&mut doc, "batches_created", tally.batch_ids.len() as i64);
            for (key, ids) in [("batch_ids", &tally.batch_ids), ("task_ids", &tally.task_ids)] {
                let list = doc[key].as_array_mut();
                if let Some(list) = list {
                    list.extend(ids.iter().map(|id| json!(id)));
                } else {
                    doc[key] = json!(ids);
                }
            }
            doc["last_sync_at"] = json!(at);
            doc["last_error"] = json!(tally.note);
            doc["consecutive_failures"] = json!(0);
            if doc["sync_mode"] == "initial_only" {
                doc["status"] = json!("COMPLETED");
                doc["is_active"] = json!(false);
            }
        }
        Err(message) => {
            record["status"] = json!("failed");
            record["error"] = json!(message);
            let failures = doc["consecutive_failures"].as_i64().unwrap_or(0) + 1;
            doc["consecutive_failures"] = json!(failures);
            doc["last_error"] = json!(message.chars().take(1000).collect::<String>());
            if failures >= SUSPEND_AFTER {
                doc["status"] = json!("SUSPENDED");
                doc["is_active"] = json!(false);
                doc["pause_reason"] =
                    json!(format!("suspended after {failures} failed runs in a row: {message}"));
            }
            tracing::warn!(sync.id = sync_id, error = %message, "a sync run failed");
        }
    }
    record["phase"] = json!("done");
    record["unsubmitted_object_ids"] = json!([]);
    record["completed_at"] = json!(at);
    record["updated_at"] = json!(at);
    doc["updated_at"] = json!(at);
    save(state, &doc).await?;
    // Released before the run reads as finished, so that whoever sees it finished can run
    // the sync again at once.
    state.store.unlock_sync(sync_id, Some(&job.id)).await?;
    save_run(state, record).await?;
    let event_type = if record["status"] == "completed" { "sync.completed" } else { "sync.failed" };
    let payload = json!({
        "sync_config_id": sync_id,
        "sync_job_id": record["sync_job_id"],
        "bucket_id": doc["bucket_id"],
        "status": record["status"],
        "trigger": record["trigger"],
        "files_synced": record["files_synced"],
        "files_failed": record["files_failed"],
        "files_deleted": record["files_deleted"],
        "bytes_synced": record["bytes_synced"],
        "error": record["error"],
        "completed_at": record["completed_at"],
    });
    let namespace_id = doc["namespace_id"].as_str();
    events::record_logged(state, &job.org_id, namespace_id, event_type, payload).await;
    Ok(())
}

// Scheduling.

/// Whether a sync runs on its own schedule now.
fn runs_on_schedule(doc: &Value) -> bool {
    doc["status"] == "ACTIVE" && doc["paused"] != true
}

/// Enqueues a sync's scheduled run at `at`, for its current schedule generation.
async fn schedule(state: &AppState, org_id: &str, doc: &Value, at: &str) -> Result<()> {
    let sync_id = doc["sync_config_id"].as_str().unwrap_or_default();
    let generation = doc["schedule_generation"].clone();
    let payload = json!({"sync_config_id": sync_id, "trigger": "scheduled",
                         "generation": generation});
    let key = format!("sync:{sync_id}:{generation}:{at}");
    jobs::enqueue_once_at(state, JobKind::SyncRun, org_id, payload, key, at).await
}

/// Starts a new schedule generation (so that runs scheduled by the old one do nothing) with a
/// run now, and saves the sync.
async fn restart_schedule(
    state: &AppState,
    caller: &NamespacedCaller,
    doc: &mut Value,
) -> Result<()> {
    let generation = doc["schedule_generation"].as_i64().unwrap_or(0) + 1;
    let at = now();
    doc["schedule_generation"] = json!(generation);
    doc["next_sync_at"] = json!(at);
    save(state, doc).await?;
    schedule(state, &caller.caller.org_id, doc, &at).await
}

/// Schedules the run after the one that just ended, when the sync runs continuously.
async fn schedule_next(state: &AppState, org_id: &str, sync_id: &str) -> Result<()> {
    let mut doc = load_by_id(state, org_id, sync_id).await?;
    if doc["sync_mode"] != "continuous" || !runs_on_schedule(&doc) {
        doc["next_sync_at"] = Value::Null;
        return save(state, &doc).await;
    }
    let interval = doc["polling_interval_seconds"].as_i64().unwrap_or(300);
    let at = format_time(time::OffsetDateTime::now_utc() + time::Duration::seconds(interval));
    doc["next_sync_at"] = json!(at);
    save(state, &doc).await?;
    schedule(state, org_id, &doc, &at).await
}

// Records.

async fn load(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<Value> {
    let bucket = buckets::resolve_shared(state, caller, bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);
    let row = state.store.get(Table::Syncs, scope, id).await?;
    row.map(|r| r.doc).ok_or_else(|| Error::not_found("sync_configuration", id))
}

async fn load_by_id(state: &AppState, org_id: &str, id: &str) -> Result<Value> {
    let row = state.store.get(Table::Syncs, Scope::org(org_id), id).await?;
    row.map(|r| r.doc).ok_or_else(|| Error::not_found("sync_configuration", id))
}

async fn save(state: &AppState, doc: &Value) -> Result<()> {
    let id = doc["sync_config_id"].as_str().unwrap_or_default();
    state.store.update_doc(Table::Syncs, id, None, doc).await?;
    Ok(())
}

async fn save_run(state: &AppState, record: &Value) -> Result<()> {
    let id = record["sync_job_id"].as_str().unwrap_or_default();
    state.store.update_doc(Table::SyncJobs, id, None, record).await?;
    Ok(())
}

/// A sync record as answers show it, with its lock read fresh.
async fn render(state: &AppState, mut doc: Value) -> Result<Value> {
    let id = doc["sync_config_id"].as_str().unwrap_or_default().to_string();
    let lock = state.store.sync_lock(&id).await?;
    let held = lock.as_ref().is_some_and(|(_, until)| until.as_str() > now().as_str());
    doc["locked"] = json!(held);
    doc["locked_by_worker_id"] = json!(lock.as_ref().filter(|_| held).map(|(by, _)| by));
    doc["lock_expires_at"] = json!(lock.as_ref().filter(|_| held).map(|(_, until)| until));
    Ok(response(doc))
}

fn response(mut doc: Value) -> Value {
    if let Some(map) = doc.as_object_mut() {
        map.remove("schedule_generation");
    }
    doc
}

fn scope_of<'a>(doc: &'a Value, org_id: &'a str) -> Scope<'a> {
    Scope::bucket(
        org_id,
        doc["namespace_id"].as_str().unwrap_or_default(),
        doc["bucket_id"].as_str().unwrap_or_default(),
    )
}

fn new_run(doc: &Value, run_id: &str, trigger: &str, at: &str) -> Value {
    json!({
        "sync_job_id": run_id,
        "sync_config_id": doc["sync_config_id"],
        "internal_id": doc["internal_id"],
        "namespace_id": doc["namespace_id"],
        "status": "running",
        "trigger": trigger,
        "phase": "queued",
        "total_files": 0,
        "files_synced": 0,
        "files_failed": 0,
        "files_verified": 0,
        "files_deleted": 0,
        "bytes_synced": 0,
        "errors": [],
        "started_at": at,
        "completed_at": null,
        "updated_at": at,
        "error": null,
        "progress_percent": 0.0,
        "throughput_files_per_min": 0.0,
        "metadata": {},
    })
}

// Checks.

fn ranged(field: &str, value: Option<i64>, default: i64, low: i64, high: i64) -> Result<i64> {
    let value = value.unwrap_or(default);
    if value < low || value > high {
        let range =
            if high == i64::MAX { format!("at least {low}") } else { format!("{low} to {high}") };
        return Err(Error::invalid(field, format!("expected {range}")));
    }
    Ok(value)
}

fn check_status(status: &str) -> Result<&'static str> {
    ["ACTIVE", "SUSPENDED"]
        .into_iter()
        .find(|s| *s == status)
        .ok_or_else(|| Error::invalid("status", "expected ACTIVE or SUSPENDED"))
}

fn check_reconcile(given: Option<Map<String, Value>>) -> Result<Value> {
    let mut out = json!({"on_delete": true, "on_update": true, "on_filter_drift": true,
                         "re_extract_on_update": true, "re_extract_fields": null});
    for (key, value) in given.unwrap_or_default() {
        match key.as_str() {
            "on_delete" | "on_update" | "on_filter_drift" | "re_extract_on_update" => {
                let flag = value.as_bool().ok_or_else(|| {
                    Error::invalid(format!("reconcile.{key}"), "expected a boolean")
                })?;
                out[key.as_str()] = json!(flag);
            }
            "re_extract_fields" => out["re_extract_fields"] = value,
            other => {
                return Err(Error::invalid(
                    format!("reconcile.{other}"),
                    "not a reconcile setting",
                ));
            }
        }
    }
    Ok(out)
}

/// Which filter keys are applied; others are refused rather than ignored.
const FILTER_KEYS: [&str; 8] = [
    "include_patterns",
    "mime_types",
    "exclude_patterns",
    "extensions",
    "min_size_bytes",
    "max_size_bytes",
    "modified_after",
    "modified_before",
];

fn check_filters(given: Map<String, Value>) -> Result<Value> {
    for (key, value) in &given {
        let field = format!("file_filters.{key}");
        if value.is_null() {
            continue;
        }
        let valid = match key.as_str() {
            "include_patterns" | "exclude_patterns" | "extensions" => {
                value.as_array().is_some_and(|a| a.iter().all(Value::is_string))
            }
            "mime_types" => value
                .as_array()
                .is_some_and(|a| a.iter().all(|m| m.as_str().is_some_and(|m| m.contains('/')))),
            "min_size_bytes" | "max_size_bytes" => value.as_i64().is_some_and(|n| n >= 0),
            "modified_after" | "modified_before" => value.as_str().and_then(parse_time).is_some(),
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("not applied by this server; supported: {}", FILTER_KEYS.join(", ")),
                ));
            }
        };
        if !valid {
            return Err(Error::invalid(field, "invalid value"));
        }
    }
    Ok(Value::Object(given))
}

/// The checked `file_filters` of a sync.
struct Filters {
    include: Vec<String>,
    exclude: Vec<String>,
    extensions: Vec<String>,
    min_size: Option<u64>,
    max_size: Option<u64>,
    after: Option<String>,
    before: Option<String>,
    /// Media types, exact or `type/*`, lower-case.
    mime_types: Vec<String>,
}

impl Filters {
    fn of(value: &Value) -> Self {
        let list = |key: &str| -> Vec<String> {
            value[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        };
        let time = |key: &str| value[key].as_str().and_then(parse_time).map(format_time);
        Self {
            include: list("include_patterns"),
            exclude: list("exclude_patterns"),
            extensions: list("extensions")
                .into_iter()
                .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            min_size: value["min_size_bytes"].as_u64(),
            max_size: value["max_size_bytes"].as_u64(),
            after: time("modified_after"),
            before: time("modified_before"),
            mime_types: list("mime_types").into_iter().map(|m| m.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `admit` needs a file's media type.
    fn wants_mime(&self) -> bool {
        !self.mime_types.is_empty()
    }

    /// Whether a listed file of media type `mime` passes: globs without `/` match the file
    /// name, with `/` the path.
    fn admit(&self, entry: &ListedBlob, mime: Option<&str>) -> bool {
        let name = entry.key.rsplit('/').next().unwrap_or(&entry.key);
        let matches = |pattern: &String| {
            let subject = if pattern.contains('/') { entry.key.as_str() } else { name };
            glob(pattern, subject)
        };
        if !self.include.is_empty() && !self.include.iter().any(matches) {
            return false;
        }
        if self.exclude.iter().any(matches) {
            return false;
        }
        if !self.extensions.is_empty() {
            let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if !extension.is_some_and(|e| self.extensions.contains(&e)) {
                return false;
            }
        }
        if !self.mime_types.is_empty() {
            let mime = mime.unwrap_or("application/octet-stream").to_ascii_lowercase();
            let family = mime.split('/').next().unwrap_or_default();
            let admitted = self.mime_types.iter().any(|m| match m.strip_suffix("/*") {
                Some(wanted) => wanted == family,
                None => *m == mime,
            });
            if !admitted {
                return false;
            }
        }
        self.min_size.is_none_or(|min| entry.size >= min)
            && self.max_size.is_none_or(|max| entry.size <= max)
            && self.after.as_ref().is_none_or(|after| entry.last_modified >= *after)
            && self.before.as_ref().is_none_or(|before| entry.last_modified <= *before)
    }
}

/// Glob matching: `*` any run of characters except `/`, `**` any run including `/`, `?` one
/// character.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') if p.get(1) == Some(&'*') => {
                let rest = &p[2..];
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some('*') => {
                let rest = &p[1..];
                for i in 0..=t.len() {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    if t.get(i) == Some(&'/') {
                        break;
                    }
                }
                false
            }
            Some('?') => !t.is_empty() && t[0] != '/' && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    if cleaned.is_empty() { "file".into() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_and_paths() {
        assert!(glob("*.jpg", "cat.jpg"));
        assert!(!glob("*.jpg", "cat.png"));
        assert!(glob("img_??.png", "img_01.png"));
        assert!(!glob("a/*.txt", "a/b/c.txt"));
        assert!(glob("a/**/*.txt", "a/b/c.txt"));
        assert!(glob("**", "x/y/z"));
    }

    #[test]
    fn filters_admit_by_name_size_and_time() {
        let filters = Filters::of(&json!({
            "include_patterns": ["*.jpg", "raw/**"],
            "exclude_patterns": ["*_draft.jpg"],
            "min_size_bytes": 10,
            "modified_after": "2026-01-01T00:00:00Z",
        }));
        let entry = |key: &str, size: u64, at: &str| ListedBlob {
            key: key.into(),
            size,
            etag: None,
            last_modified: at.into(),
        };
        let late = "2026-06-01T00:00:00.000000Z";
        assert!(filters.admit(&entry("a/cat.jpg", 20, late), None));
        assert!(filters.admit(&entry("raw/x/file.bin", 20, late), None));
        assert!(!filters.admit(&entry("a/cat_draft.jpg", 20, late), None));
        assert!(!filters.admit(&entry("a/cat.png", 20, late), None));
        assert!(!filters.admit(&entry("a/cat.jpg", 5, late), None));
        assert!(!filters.admit(&entry("a/cat.jpg", 20, "2025-06-01T00:00:00.000000Z"), None));

        let by_type = Filters::of(&json!({"mime_types": ["image/*", "Application/PDF"]}));
        let file = entry("a/x", 1, late);
        assert!(by_type.admit(&file, Some("image/jpeg")));
        assert!(by_type.admit(&file, Some("application/pdf")));
        assert!(!by_type.admit(&file, Some("application/json")));
        assert!(!by_type.admit(&file, None), "an unknown type is application/octet-stream");
    }
}
