//! Batch processing: the job that runs one slice of a batch's objects.
//!
//! A submitted batch is split into slices of positions, each a durable job. A job takes the
//! slice's pending objects a group at a time: it resolves each object's blobs to local files,
//! verifies them (size, hash, and the sniffed type against the declared one), runs the
//! namespace's feature extractors, and then records the group's outcomes and documents in one
//! transaction. An object whose outcome is recorded is never pending again, so a job that runs
//! a second time (its worker died, its lease ran out) carries on with what is left, and a
//! document is never written twice: its id follows from its object, collection and position.
//!
//! The job that records the last outcome of a batch ends it, with a status that only one
//! writer can set; a batch whose every slice ran therefore always ends.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::blob::BlobError;
use crate::error::{Error, Result};
use crate::extract::{self, BlobInput, Failure};
use crate::model::{TaskStatus, new_id, now};
use crate::service::batches::{
    self, CANCELED, COMPLETED, COMPLETED_WITH_ERRORS, FAILED, PROCESSING, QUEUED,
};
use crate::service::tasks;
use crate::store::{
    ClaimedJob, ITEM_DONE, ITEM_FAILED, ITEM_SKIPPED, ItemOutcome, NewDocument, Scope, Table,
};

/// Objects taken from the store, processed and recorded together.
const GROUP: i64 = 64;
/// Times an extractor that failed for a passing reason is tried again within one job.
const TRANSIENT_RETRIES: u32 = 2;
const TRANSIENT_PAUSE: Duration = Duration::from_millis(200);

/// What one processing job needs of its batch.
struct BatchCtx {
    id: String,
    org_id: String,
    internal_id: String,
    namespace_id: String,
    bucket_id: String,
    dedup: String,
    collections: Vec<Value>,
}

/// Processes the pending objects of one slice of a batch.
///
/// # Errors
///
/// A store failure; the job engine retries the job, which resumes where it stopped.
pub async fn run_slice(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let batch_id = job.payload["batch_id"].as_str().unwrap_or_default().to_string();
    let from = job.payload["from"].as_i64().unwrap_or(0);
    let to = job.payload["to"].as_i64().unwrap_or(i64::MAX);
    let scope = Scope::org(&job.org_id);
    let Some(row) = state.store.get(Table::Batches, scope, &batch_id).await? else {
        return Ok(());
    };
    let mut doc = row.doc;
    match doc["status"].as_str().unwrap_or_default() {
        QUEUED => {
            let at = now();
            doc["status"] = json!(PROCESSING);
            doc["lifecycle"] = json!("extracting");
            doc["lifecycle_reason"] = Value::Null;
            doc["started_at"] = json!(at);
            doc["updated_at"] = json!(at);
            batches::set_tier_status(&mut doc, PROCESSING, &at);
            if state.store.update_batch_if(&batch_id, &[QUEUED], &doc).await?
                && let Some(task_id) = doc["task_id"].as_str()
            {
                tasks::set_status_of(state, task_id, TaskStatus::Processing, None).await?;
            }
        }
        PROCESSING => {}
        _ => return Ok(()),
    }

    let ctx = batch_ctx(state, &job.org_id, &doc).await?;
    loop {
        let ids = state.store.pending_batch_items(&batch_id, from, to, GROUP).await?;
        if ids.is_empty() {
            break;
        }
        if state.store.batch_status(&batch_id).await?.as_deref() != Some(PROCESSING) {
            tracing::info!(batch.id = %batch_id, "batch no longer processing; the slice stops");
            return Ok(());
        }
        process_group(state, &ctx, &ids).await?;
    }
    finish_if_done(state, &job.org_id, &batch_id).await
}

async fn batch_ctx(state: &AppState, org_id: &str, doc: &Value) -> Result<BatchCtx> {
    let namespace_id = doc["namespace_id"].as_str().unwrap_or_default().to_string();
    let wanted: HashSet<&str> =
        doc["collection_ids"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let collections = state
        .store
        .namespace_collections(&namespace_id)
        .await?
        .into_iter()
        .filter(|c| c["collection_id"].as_str().is_some_and(|id| wanted.contains(id)))
        .collect();
    let org = state
        .store
        .get_organization(org_id)
        .await?
        .ok_or_else(|| Error::not_found("organization", org_id))?;
    Ok(BatchCtx {
        id: doc["batch_id"].as_str().unwrap_or_default().to_string(),
        org_id: org_id.to_string(),
        internal_id: org.internal_id,
        namespace_id,
        bucket_id: doc["bucket_id"].as_str().unwrap_or_default().to_string(),
        dedup: doc["dedup_strategy"].as_str().unwrap_or("skip").to_string(),
        collections,
    })
}

/// Processes a group of objects and records their outcomes together.
async fn process_group(state: &AppState, ctx: &BatchCtx, ids: &[String]) -> Result<()> {
    let objects = state.store.objects_by_ids(&ctx.bucket_id, ids).await?;
    let mut by_id: HashMap<String, Value> = objects
        .into_iter()
        .filter_map(|o| o["object_id"].as_str().map(String::from).map(|id| (id, o)))
        .collect();
    let skipped = already_processed(state, ctx, ids).await?;

    let mut work: Vec<futures::future::BoxFuture<'_, (ItemOutcome, Vec<NewDocument>)>> =
        Vec::with_capacity(ids.len());
    for id in ids {
        let object = by_id.remove(id);
        let skip = skipped.contains(id);
        work.push(Box::pin(async move {
            let Some(object) = object else {
                return (
                    failed(id, &Failure::Permanent("the object no longer exists".into())),
                    vec![],
                );
            };
            if skip {
                return (outcome(id, ITEM_SKIPPED, 0), vec![]);
            }
            match process_object(state, ctx, &object).await {
                Ok(docs) => (outcome(id, ITEM_DONE, docs.len() as i64), docs),
                Err(failure) => (failed(id, &failure), vec![]),
            }
        }));
    }
    let results: Vec<(ItemOutcome, Vec<NewDocument>)> =
        futures::stream::iter(work).buffer_unordered(state.processing.concurrency).collect().await;
    let mut outcomes = Vec::with_capacity(results.len());
    let mut documents = Vec::new();
    for (o, docs) in results {
        outcomes.push(o);
        documents.extend(docs);
    }
    let collection_ids: Vec<String> = ctx
        .collections
        .iter()
        .filter_map(|c| c["collection_id"].as_str().map(String::from))
        .collect();
    state
        .store
        .record_batch_outcomes(&ctx.id, &collection_ids, &outcomes, &documents, &now())
        .await?;
    Ok(())
}

/// With the `skip` strategy, the objects that earlier batches already wrote documents for in
/// every collection of this one.
///
/// An object changed after it was processed is skipped too; the `replace` and `force`
/// strategies process it again.
async fn already_processed(
    state: &AppState,
    ctx: &BatchCtx,
    ids: &[String],
) -> Result<HashSet<String>> {
    if ctx.dedup != "skip" || ctx.collections.is_empty() {
        return Ok(HashSet::new());
    }
    let mut common: Option<HashSet<String>> = None;
    for collection in &ctx.collections {
        let id = collection["collection_id"].as_str().unwrap_or_default();
        let found: HashSet<String> =
            state.store.objects_with_documents(id, &ctx.id, ids).await?.into_iter().collect();
        common = Some(match common {
            None => found,
            Some(seen) => seen.intersection(&found).cloned().collect(),
        });
    }
    Ok(common.unwrap_or_default())
}

fn outcome(id: &str, state: &'static str, documents: i64) -> ItemOutcome {
    ItemOutcome { object_id: id.to_string(), state, error: None, error_type: None, documents }
}

fn failed(id: &str, failure: &Failure) -> ItemOutcome {
    ItemOutcome {
        object_id: id.to_string(),
        state: ITEM_FAILED,
        error: Some(failure.to_string()),
        error_type: Some(failure.kind().to_string()),
        documents: 0,
    }
}

/// One blob of an object, as a local file.
struct LocalBlob {
    property: String,
    blob_type: String,
    path: PathBuf,
    size: u64,
    mime: Option<String>,
    /// Set when the file is a download that must be removed after use.
    _scratch: Option<Scratch>,
}

/// A temporary file, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// Resolves, verifies and extracts one object; the documents it produced, or why it failed.
async fn process_object(
    state: &AppState,
    ctx: &BatchCtx,
    object: &Value,
) -> std::result::Result<Vec<NewDocument>, Failure> {
    let started = Instant::now();
    let object_id = object["object_id"].as_str().unwrap_or_default();
    let mut blobs = Vec::new();
    for blob in object["blobs"].as_array().into_iter().flatten() {
        let local = resolve_blob(state, blob).await?;
        verify_recorded(blob, &local).await?;
        blobs.push(local);
    }
    let inputs: Vec<BlobInput<'_>> = blobs
        .iter()
        .map(|b| BlobInput {
            property: &b.property,
            blob_type: &b.blob_type,
            path: &b.path,
            size: b.size,
            declared_mime: b.mime.as_deref(),
        })
        .collect();
    for input in &inputs {
        extract::verify(input)?;
    }

    let mut documents = Vec::new();
    for collection in &ctx.collections {
        let extractor = &collection["feature_extractor"];
        let name = extractor["feature_extractor_name"].as_str().unwrap_or_default();
        let version = extractor["version"].as_str().unwrap_or_default();
        let params = extractor["params"].as_object();
        let produced = run_extractor(state, name, version, params, object, &inputs).await?;
        let collection_id = collection["collection_id"].as_str().unwrap_or_default();
        for produced in produced {
            let id = document_id(collection_id, object_id, &produced.position);
            let mut internal = json!({
                "lineage": {
                    "source_object_id": object_id,
                    "bucket_id": ctx.bucket_id,
                    "namespace_id": ctx.namespace_id,
                    "batch_id": ctx.id,
                    "source_type": "bucket",
                },
                "feature_extractor": extractor["feature_extractor_id"],
                "position": produced.position,
                "processed_at": now(),
                "processing_ms": started.elapsed().as_millis() as u64,
            });
            if let Some(thumbnail) = produced.thumbnail {
                let key = format!(
                    "{}/{}/collections/{collection_id}/{id}/thumbnail",
                    ctx.internal_id, ctx.namespace_id
                );
                state
                    .blobs
                    .put(&key, thumbnail.bytes.into(), Some(thumbnail.content_type))
                    .await
                    .map_err(|e| Failure::Transient(format!("could not store a thumbnail: {e}")))?;
                internal["thumbnail"] =
                    json!({"storage_key": key, "content_type": thumbnail.content_type});
            }
            let mut doc = Map::new();
            doc.insert("document_id".into(), json!(id));
            doc.insert("collection_id".into(), json!(collection_id));
            doc.insert("source_object_id".into(), json!(object_id));
            for (k, v) in produced.fields {
                if !matches!(k.as_str(), "document_id" | "collection_id" | "_internal") {
                    doc.insert(k, v);
                }
            }
            let at = now();
            doc.insert("_internal".into(), internal);
            doc.insert("created_at".into(), json!(at));
            doc.insert("updated_at".into(), json!(at));
            documents.push(NewDocument {
                id,
                org_id: ctx.org_id.clone(),
                namespace_id: ctx.namespace_id.clone(),
                collection_id: collection_id.to_string(),
                bucket_id: ctx.bucket_id.clone(),
                object_id: object_id.to_string(),
                batch_id: ctx.id.clone(),
                doc: Value::Object(doc),
            });
        }
    }
    Ok(documents)
}

/// Runs one extractor, trying again a few times when it fails for a passing reason.
async fn run_extractor(
    state: &AppState,
    name: &str,
    version: &str,
    params: Option<&Map<String, Value>>,
    object: &Value,
    inputs: &[BlobInput<'_>],
) -> std::result::Result<Vec<extract::Document>, Failure> {
    let mut attempt = 0;
    loop {
        match extract::run(&state.extract, name, version, params, object, inputs).await {
            Err(Failure::Transient(_)) if attempt < TRANSIENT_RETRIES => {
                attempt += 1;
                tokio::time::sleep(TRANSIENT_PAUSE * attempt).await;
            }
            other => return other,
        }
    }
}

/// A document's id: the same object, collection and position always give the same id.
fn document_id(collection_id: &str, object_id: &str, position: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [collection_id, object_id, position] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("doc_{hex}")
}

/// Finds a blob's bytes as a local file: the managed file itself on local storage, or a
/// download of the managed copy or of the URL.
async fn resolve_blob(state: &AppState, blob: &Value) -> std::result::Result<LocalBlob, Failure> {
    let property = blob["property"].as_str().unwrap_or_default().to_string();
    let blob_type = blob["type"].as_str().unwrap_or_default().to_string();
    let mime = blob["details"]["mime_type"].as_str().map(String::from);
    let make = |path: PathBuf, size: u64, scratch: Option<Scratch>| LocalBlob {
        property: property.clone(),
        blob_type: blob_type.clone(),
        path,
        size,
        mime: mime.clone(),
        _scratch: scratch,
    };
    if let Some(key) = blob["properties"]["storage_key"].as_str() {
        if let Some(path) = state.blobs.local_file(key) {
            let size = tokio::fs::metadata(&path)
                .await
                .map_err(|e| blob_failure(&property, &BlobError::Io(e)))?
                .len();
            return Ok(make(path, size, None));
        }
        let (_, stream) =
            state.blobs.open_read(key).await.map_err(|e| blob_failure(&property, &e))?;
        let (path, size) = download(stream).await?;
        return Ok(make(path.0.clone(), size, Some(path)));
    }
    let url = blob["properties"]["url"].as_str().unwrap_or_default();
    if blob["properties"]["mirror"] == "pending" {
        return Err(Failure::Transient(format!(
            "blob {property} is still being copied into managed storage; retry the batch"
        )));
    }
    let fetched = state.fetcher.get(url).await.map_err(|e| match e {
        crate::fetch::FetchError::Network(_)
        | crate::fetch::FetchError::Timeout
        | crate::fetch::FetchError::Status(500..) => {
            Failure::Transient(format!("blob {property}: {e}"))
        }
        other => Failure::Permanent(format!("blob {property}: {other}")),
    })?;
    let (path, size) = download(fetched.stream).await?;
    Ok(make(path.0.clone(), size, Some(path)))
}

fn blob_failure(property: &str, e: &BlobError) -> Failure {
    match e {
        BlobError::NotFound(_) => {
            Failure::Permanent(format!("blob {property}: its stored bytes are missing"))
        }
        BlobError::Archived(_) => Failure::Permanent(format!(
            "blob {property} is in an archive storage class and must be restored before it can \
             be processed"
        )),
        other => Failure::Transient(format!("blob {property}: {other}")),
    }
}

/// Streams bytes into a temporary file that is removed when the returned guard drops.
async fn download<S>(stream: S) -> std::result::Result<(Scratch, u64), Failure>
where
    S: futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Unpin,
{
    let path = std::env::temp_dir().join(format!("sluice-{}", new_id("", 16)));
    let guard = Scratch(path.clone());
    let io = |e: std::io::Error| Failure::Transient(format!("could not download a blob: {e}"));
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut size = 0u64;
    let mut stream = stream;
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        match crate::fetch::FetchError::from_body_error(&e) {
            crate::fetch::FetchError::TooLarge(limit) => {
                Failure::Permanent(format!("the blob is larger than the limit of {limit} bytes"))
            }
            other => Failure::Transient(format!("could not download a blob: {other}")),
        }
    })? {
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok((guard, size))
}

/// Checks a blob's file against the size and SHA-256 its record holds.
async fn verify_recorded(blob: &Value, local: &LocalBlob) -> std::result::Result<(), Failure> {
    let property = &local.property;
    if let Some(size) = blob["details"]["size_bytes"].as_u64()
        && size != local.size
    {
        return Err(Failure::Permanent(format!(
            "blob {property} holds {} bytes, but its record says {size}",
            local.size
        )));
    }
    let Some(expected) = blob["details"]["hash"].as_str().and_then(|h| h.strip_prefix("sha256:"))
    else {
        return Ok(());
    };
    let path = local.path.clone();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|e| Failure::Transient(format!("hashing failed: {e}")))?
        .map_err(|e| Failure::Transient(format!("could not read blob {property}: {e}")))?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(Failure::Permanent(format!(
            "blob {property} does not match its recorded SHA-256; it changed after it was stored"
        )));
    }
    Ok(())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Ends a batch whose objects all have an outcome: `COMPLETED`, `COMPLETED_WITH_ERRORS` or
/// `FAILED`. Only one caller wins the change of status, so the end is announced once.
///
/// # Errors
///
/// Fails on a store error.
pub async fn finish_if_done(state: &AppState, org_id: &str, batch_id: &str) -> Result<()> {
    let counts = state.store.batch_item_counts(batch_id).await?;
    if counts.pending > 0 {
        return Ok(());
    }
    let Some(row) = state.store.get(Table::Batches, Scope::org(org_id), batch_id).await? else {
        return Ok(());
    };
    let mut doc = row.doc;
    if doc["status"] != PROCESSING {
        return Ok(());
    }
    let succeeded = counts.done + counts.skipped;
    let (status, lifecycle) = match (counts.failed, succeeded) {
        (0, _) => (COMPLETED, "indexed"),
        (_, 0) => (FAILED, "failed"),
        _ => (COMPLETED_WITH_ERRORS, "indexed"),
    };
    let at = now();
    doc["status"] = json!(status);
    doc["lifecycle"] = json!(lifecycle);
    doc["completed_at"] = json!(at);
    doc["updated_at"] = json!(at);
    doc["documents_written"] = json!(counts.documents);
    let reason = match status {
        FAILED => {
            let (failures, _) = state.store.batch_failures(batch_id, 1).await?;
            let first = failures.first().map(|f| f.error.clone()).unwrap_or_default();
            Some(format!("all {} objects failed; the first: {first}", counts.failed))
        }
        COMPLETED_WITH_ERRORS => {
            Some(format!("{} of {} objects failed", counts.failed, counts.total()))
        }
        _ => None,
    };
    doc["failure_reason"] = json!(reason.as_deref().filter(|_| status == FAILED));
    doc["error"] = doc["failure_reason"].clone();
    doc["failure_category"] = if status == FAILED { json!("pipeline") } else { Value::Null };
    doc["lifecycle_reason"] = json!(reason);
    batches::set_tier_status(&mut doc, status, &at);
    if !state.store.update_batch_if(batch_id, &[PROCESSING], &doc).await? {
        return Ok(());
    }
    tracing::info!(batch.id = %batch_id, status, documents = counts.documents, "batch finished");
    if let Some(task_id) = doc["task_id"].as_str() {
        let (task_status, error) = match status {
            FAILED => (TaskStatus::Failed, reason.as_deref()),
            _ => (TaskStatus::Completed, None),
        };
        tasks::set_status_of(state, task_id, task_status, error).await?;
    }
    announce_end(state, org_id, &doc).await;
    Ok(())
}

/// Tells the world a batch ended: a `batch.completed` or `batch.failed` event for the feed and
/// the organization's webhooks, and one call of the batch's own callback URL, when it has one,
/// for those and for a cancel.
pub async fn announce_end(state: &AppState, org_id: &str, doc: &Value) {
    let status = doc["status"].as_str().unwrap_or_default();
    if ![COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELED].contains(&status) {
        return;
    }
    let batch_id = doc["batch_id"].as_str().unwrap_or_default();
    let counts = match state.store.batch_item_counts(batch_id).await {
        Ok(counts) => counts,
        Err(e) => {
            tracing::error!(error = %e, batch.id = %batch_id, "could not count a batch's outcome");
            return;
        }
    };
    let progress = json!({
        "processed": counts.finished(),
        "total": counts.total() - counts.canceled,
        "errors": counts.failed,
        "objects_skipped": counts.skipped,
    });
    let event_type = match status {
        FAILED => "batch.failed",
        CANCELED => "batch.canceled",
        _ => "batch.completed",
    };
    let payload = json!({
        "batch_id": batch_id,
        "bucket_id": doc["bucket_id"],
        "namespace_id": doc["namespace_id"],
        "collection_ids": doc["collection_ids"],
        "status": status,
        "failure_reason": doc["failure_reason"],
        "documents_written": counts.documents,
        "failed_object_count": counts.failed,
        "progress": progress,
        "completed_at": doc["completed_at"],
    });
    // The feed and webhooks know no cancel event; only the callback hears of a cancel.
    if status != CANCELED {
        let namespace_id = doc["namespace_id"].as_str();
        let payload = payload.clone();
        crate::service::events::record_logged(state, org_id, namespace_id, event_type, payload)
            .await;
    }
    if let Some(url) = doc["webhook_url"].as_str() {
        let mut body = payload;
        body["event_type"] = json!(event_type);
        if let Err(e) = crate::service::webhooks::callback(state, org_id, url, body).await {
            tracing::warn!(error = %e, batch.id = %batch_id, "could not queue the batch callback");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_stable_and_distinct() {
        let a = document_id("col_1", "obj_1", "content#0");
        assert_eq!(a, document_id("col_1", "obj_1", "content#0"));
        assert_ne!(a, document_id("col_1", "obj_1", "content#1"));
        assert_ne!(a, document_id("col_2", "obj_1", "content#0"));
        assert!(a.starts_with("doc_") && a.len() == 28);
    }

    #[test]
    fn failures_carry_their_kind() {
        let o = failed("obj_1", &Failure::Permanent("not an image".into()));
        assert_eq!(o.state, ITEM_FAILED);
        assert_eq!(o.error_type.as_deref(), Some("permanent"));
        assert_eq!(o.error.as_deref(), Some("not an image"));
    }
}
