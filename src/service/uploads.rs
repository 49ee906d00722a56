//! Presigned uploads: a client asks for a URL, PUTs the bytes straight to storage (or to
//! sluice's own signed URL), then confirms; confirming checks the bytes and creates the object.
//!
//! An upload is PENDING until confirmed (COMPLETED), canceled (CANCELED), or expired: a job
//! scheduled for its expiry time cancels it and deletes whatever bytes arrived.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::api::auth::NamespacedCaller;
use crate::blob::signed::SignedQuery;
use crate::blob::{BlobError, BlobStream, StoredBlob};
use crate::error::{Error, Result};
use crate::jobs::{self, JobKind};
use crate::model::schema::{BucketSchema, FieldType};
use crate::model::{StorageClass, TaskType, new_id, now, parse_time};
use crate::service::{buckets, objects, tasks};
use crate::store::{ClaimedJob, ListSpec, Scope, Table};

/// The most uploads one batch may create or confirm.
pub const MAX_BATCH: usize = 100;
const EXPIRATION_MIN: i64 = 60;
const EXPIRATION_MAX: i64 = 86_400;
const EXPIRATION_DEFAULT: i64 = 3600;
const FILENAME_MAX: usize = 255;

/// The body of `POST …/uploads`, and each entry of a batch.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateUpload {
    pub filename: String,
    pub content_type: String,
    pub file_size_bytes: Option<i64>,
    pub presigned_url_expiration: Option<i64>,
    pub metadata: Option<Map<String, Value>>,
    pub create_object_on_confirm: Option<bool>,
    pub object_metadata: Option<Map<String, Value>>,
    pub blob_property: Option<String>,
    pub blob_type: Option<String>,
    pub file_hash: Option<String>,
    pub skip_duplicates: Option<bool>,
}

/// The body of `POST …/uploads/batch`.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateUploads {
    pub uploads: Vec<CreateUpload>,
    pub shared_metadata: Option<Map<String, Value>>,
    pub shared_object_metadata: Option<Map<String, Value>>,
}

/// The body of a confirmation, alone or in a batch (where it also names the upload).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Confirm {
    pub upload_id: Option<String>,
    pub etag: Option<String>,
    pub file_size_bytes: Option<i64>,
    pub auto_submit_batch: Option<bool>,
}

/// The body of `POST …/uploads/list`; the body's `limit` and `offset` win over the query's.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListUploads {
    pub filters: Option<Value>,
    pub sort: Option<Value>,
    pub search: Option<String>,
    pub return_presigned_urls: Option<bool>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Creates one upload and its presigned PUT URL.
///
/// # Errors
///
/// 404 for the bucket, 422 for invalid fields.
pub async fn create(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    req: CreateUpload,
) -> Result<Value> {
    let bucket = buckets::resolve(state, caller, bucket).await?;
    create_one(state, caller, &bucket, req, "").await
}

/// Creates up to [`MAX_BATCH`] uploads; the request succeeds or fails as a whole.
///
/// # Errors
///
/// 404 for the bucket, 422 naming the first invalid entry.
pub async fn create_batch(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    req: CreateUploads,
) -> Result<Value> {
    if req.uploads.is_empty() || req.uploads.len() > MAX_BATCH {
        return Err(Error::invalid("uploads", format!("expected 1 to {MAX_BATCH} uploads")));
    }
    let bucket = buckets::resolve(state, caller, bucket).await?;
    for (i, upload) in req.uploads.iter().enumerate() {
        check_request(state, &bucket, upload, &format!("uploads[{i}]"))?;
    }
    let mut created = Vec::with_capacity(req.uploads.len());
    for (i, mut upload) in req.uploads.into_iter().enumerate() {
        upload.metadata = merged(req.shared_metadata.as_ref(), upload.metadata);
        upload.object_metadata =
            merged(req.shared_object_metadata.as_ref(), upload.object_metadata);
        created.push(create_one(state, caller, &bucket, upload, &format!("uploads[{i}]")).await?);
    }
    Ok(json!({"total": created.len(), "uploads": created}))
}

fn merged(
    shared: Option<&Map<String, Value>>,
    own: Option<Map<String, Value>>,
) -> Option<Map<String, Value>> {
    match (shared, own) {
        (None, own) => own,
        (Some(shared), own) => {
            let mut all = shared.clone();
            all.extend(own.unwrap_or_default());
            Some(all)
        }
    }
}

async fn create_one(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &Value,
    req: CreateUpload,
    path: &str,
) -> Result<Value> {
    let (blob_property, blob_type) = check_request(state, bucket, &req, path)?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);

    let skip_duplicates = req.skip_duplicates.unwrap_or(true);
    if let (true, Some(hash)) = (skip_duplicates, req.file_hash.as_deref()) {
        let hash = hash.to_ascii_lowercase();
        if let Some(original) =
            state.store.uploads_with_hash(bucket_id, &hash).await?.into_iter().next()
        {
            return Ok(duplicate_of(original.doc));
        }
    }

    let upload_id = new_id("upl_", 16);
    let key = storage_key(caller, &upload_id, &req.filename);
    let expiration = req.presigned_url_expiration.unwrap_or(EXPIRATION_DEFAULT);
    let at = now();
    let expires_at = crate::model::format_time(
        time::OffsetDateTime::now_utc() + time::Duration::seconds(expiration),
    );
    let class = storage_class(bucket);
    let max_size = req.file_size_bytes.map_or(state.limits.max_upload_bytes, |n| n as u64);
    let url =
        presigned_put(state, &key, &req.content_type, max_size, &upload_id, expiration, class)
            .await?;

    let doc = json!({
        "upload_id": upload_id,
        "bucket_id": bucket_id,
        "filename": req.filename,
        "content_type": req.content_type,
        "file_size_bytes": req.file_size_bytes,
        "presigned_url": url,
        "presigned_url_expiration": expiration,
        "s3_key": key,
        "status": "PENDING",
        "metadata": req.metadata,
        "create_object_on_confirm": req.create_object_on_confirm.unwrap_or(true),
        "object_metadata": req.object_metadata,
        "blob_property": blob_property,
        "blob_type": blob_type.map(FieldType::as_str),
        "file_hash": req.file_hash.map(|h| h.to_ascii_lowercase()),
        "skip_duplicates": skip_duplicates,
        "is_duplicate": false,
        "created_at": at,
        "expires_at": expires_at,
        "storage_class": class.as_str(),
    });
    state.store.insert_upload(scope, &doc).await?;
    let payload = json!({"upload_id": upload_id, "namespace_id": caller.namespace_id, "bucket_id": bucket_id});
    jobs::enqueue_at(state, JobKind::UploadExpire, &caller.caller.org_id, payload, &expires_at)
        .await?;
    tracing::info!(upload.id = %upload_id, bucket.id = %bucket_id, "upload created");
    Ok(response(doc))
}

/// Checks an upload request against the bucket; returns the blob property and type it fills.
fn check_request(
    state: &AppState,
    bucket: &Value,
    req: &CreateUpload,
    path: &str,
) -> Result<(String, Option<FieldType>)> {
    let at = |f: &str| if path.is_empty() { f.to_string() } else { format!("{path}.{f}") };
    let name = &req.filename;
    let bad_name = name.is_empty()
        || name.len() > FILENAME_MAX
        || name.contains(['/', '\\'])
        || name == "."
        || name.contains("..")
        || name.chars().any(char::is_control);
    if bad_name {
        return Err(Error::invalid(
            at("filename"),
            "expected a plain file name of 1 to 255 characters",
        ));
    }
    let ct = &req.content_type;
    let valid_mime = ct.split_once('/').is_some_and(|(t, s)| {
        !t.is_empty() && !s.is_empty() && !ct.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if !valid_mime {
        return Err(Error::invalid(at("content_type"), "expected a MIME type such as image/png"));
    }
    if let Some(size) = req.file_size_bytes {
        let limit = state.limits.max_upload_bytes;
        if size < 1 || size as u64 > limit {
            return Err(Error::invalid(
                at("file_size_bytes"),
                format!("expected 1 to {limit} bytes"),
            ));
        }
    }
    let expiration = req.presigned_url_expiration.unwrap_or(EXPIRATION_DEFAULT);
    if !(EXPIRATION_MIN..=EXPIRATION_MAX).contains(&expiration) {
        return Err(Error::invalid(
            at("presigned_url_expiration"),
            format!("expected {EXPIRATION_MIN} to {EXPIRATION_MAX} seconds"),
        ));
    }
    if let Some(hash) = &req.file_hash
        && !(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(Error::invalid(at("file_hash"), "expected 64 hex digits (SHA-256)"));
    }
    blob_target(bucket, req).map_err(|e| Error::invalid(at(&e.0), e.1))
}

/// Which blob property of the schema the upload fills, and its type.
fn blob_target(
    bucket: &Value,
    req: &CreateUpload,
) -> std::result::Result<(String, Option<FieldType>), (String, String)> {
    let schema = BucketSchema::parse(&bucket["bucket_schema"]).map_err(|e| (e.field, e.message))?;
    let blobs: Vec<(&str, FieldType)> = schema.blob_properties().collect();
    let property = match &req.blob_property {
        Some(p) if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            return Err(("blob_property".into(), "expected letters, digits or '_'".into()));
        }
        Some(p) => p.clone(),
        None if blobs.len() == 1 => blobs[0].0.to_string(),
        None => stem(&req.filename),
    };
    let declared = req.blob_type.as_deref().map(|t| {
        FieldType::parse(t)
            .filter(|f| f.is_blob())
            .ok_or_else(|| ("blob_type".to_string(), format!("{t:?} is not a blob type")))
    });
    let declared = declared.transpose()?;
    let inferred = declared.or_else(|| crate::model::blob::field_type_for_mime(&req.content_type));
    if req.create_object_on_confirm.unwrap_or(true) {
        let Some(expected) = schema.blob_property(&property) else {
            return Err((
                "blob_property".into(),
                format!("{property:?} is not a blob property of the bucket schema"),
            ));
        };
        if let Some(given) = declared
            && given != expected
        {
            return Err(("blob_type".into(), format!("the schema says {expected}, not {given}")));
        }
        return Ok((property, Some(expected)));
    }
    Ok((property, inferred))
}

fn stem(filename: &str) -> String {
    let stem = filename.rsplit_once('.').map_or(filename, |(s, _)| s);
    let cleaned: String = stem.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if cleaned.is_empty() { "file".into() } else { cleaned }
}

/// The storage key of an upload's bytes, laid out like the hosted service's.
fn storage_key(caller: &NamespacedCaller, upload_id: &str, filename: &str) -> String {
    let safe: String = filename
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    format!(
        "{}/{}/api_buckets_uploads_create/{upload_id}/{safe}",
        caller.caller.internal_id, caller.namespace_id
    )
}

fn storage_class(bucket: &Value) -> StorageClass {
    bucket["storage_class"].as_str().and_then(StorageClass::parse).unwrap_or_default()
}

/// The URL the client PUTs to: the store's own presigned URL where it has one, else a
/// one-time URL sluice signs and serves.
async fn presigned_put(
    state: &AppState,
    key: &str,
    content_type: &str,
    max_size: u64,
    nonce: &str,
    expiration: i64,
    class: StorageClass,
) -> Result<String> {
    let ttl = Duration::from_secs(expiration.unsigned_abs());
    // A store whose uploads need headers beyond Content-Type (Azure's x-ms-blob-type) would
    // refuse what Mixpeek clients send, so sluice receives those uploads itself.
    if !state.sluice_signs_urls && state.blobs.upload_headers().is_empty() {
        let native = state.blobs.presign_put(key, content_type, ttl, class).await;
        if let Some(url) = native.map_err(|e| Error::Internal(format!("presigning failed: {e}")))? {
            return Ok(url);
        }
    }
    Ok(state.signer.put_url(key, content_type, max_size, nonce, ttl))
}

fn duplicate_of(original: Value) -> Value {
    let mut doc = original.clone();
    doc["is_duplicate"] = json!(true);
    doc["duplicate_of_upload_id"] = original["upload_id"].clone();
    doc["presigned_url"] = Value::Null;
    doc["existing_object_id"] = original["object_id"].clone();
    doc["message"] = json!("a file with this hash was uploaded already; nothing to upload");
    response(doc)
}

/// Receives the bytes of a verified one-time signed PUT URL: marks its nonce used, streams the
/// body to the blob store (hashing it only when the upload declared a hash to check, and
/// keeping that hash for the confirmation), and frees the nonce again when the write fails.
///
/// # Errors
///
/// 403 for a URL used already, 413 past the declared size, 400 for a broken body.
pub async fn receive_signed(
    state: &AppState,
    key: &str,
    query: &SignedQuery,
    stream: BlobStream,
) -> Result<StoredBlob> {
    let expires = crate::model::format_time(
        time::OffsetDateTime::from_unix_timestamp(query.expires)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    );
    if query.nonce.is_empty() || !state.store.use_nonce(&query.nonce, &expires).await? {
        return Err(Error::Forbidden("this upload URL was used already".into()));
    }

    let upload = state.store.find_upload(&query.nonce).await?;
    let hash = upload.as_ref().is_some_and(|row| row.doc["file_hash"].is_string());
    let max = (query.max > 0).then_some(query.max);
    let class = StorageClass::default();
    let blobs = &state.blobs;
    let stored = match blobs.put_stream_hashed(key, stream, Some(&query.ct), class, max, hash).await
    {
        Ok(stored) => stored,
        Err(e) => {
            state.store.release_nonce(&query.nonce).await?;
            return Err(match e {
                BlobError::TooLarge { limit } => {
                    Error::TooLarge(format!("the upload is larger than the {limit} bytes declared"))
                }
                BlobError::Io(e) => Error::bad_request(
                    "upload_interrupted",
                    format!("the body could not be read: {e}"),
                ),
                other => Error::Internal(format!("blob write failed: {other}")),
            });
        }
    };
    tracing::info!(size = stored.size, "signed upload received");

    if let (Some(sha), Some(row)) = (&stored.sha256, upload) {
        let mut doc = row.doc;
        doc["received_sha256"] = json!(sha);
        state.store.update_upload_if(&query.nonce, "PENDING", &doc).await?;
    }
    Ok(stored)
}

/// Reads one upload; with `presign`, a completed upload carries a GET URL for its bytes.
///
/// # Errors
///
/// 404 for the bucket or the upload.
pub async fn get(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    presign: bool,
) -> Result<Value> {
    let (_, doc) = load(state, caller, bucket, id).await?;
    Ok(if presign { with_download_url(state, doc).await? } else { response(doc) })
}

async fn with_download_url(state: &AppState, doc: Value) -> Result<Value> {
    let mut doc = response(doc);
    if doc["status"] == "COMPLETED"
        && let Some(key) = doc["s3_key"].as_str()
    {
        let ttl = Duration::from_secs(3600);
        let url =
            crate::service::download_url(state, key, doc["content_type"].as_str(), ttl).await?;
        doc["presigned_url"] = json!(url);
    }
    Ok(doc)
}

async fn load(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<(Value, Value)> {
    let bucket = buckets::resolve(state, caller, bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);
    let row = state.store.get(Table::Uploads, scope, id).await?;
    let doc = row.ok_or_else(|| Error::not_found("upload", id))?.doc;
    Ok((bucket, doc))
}

/// Lists a bucket's uploads, newest first unless sorted otherwise, with statistics of all
/// the bucket's uploads.
///
/// # Errors
///
/// 404 for the bucket, 422 for invalid filters or pagination.
pub async fn list(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    req: ListUploads,
) -> Result<Value> {
    let bucket = buckets::resolve(state, caller, bucket).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let limit = req.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Error::invalid("limit", "expected 1 to 100"));
    }
    let offset = req.offset.unwrap_or(0);
    if !(0..=crate::api::pagination::MAX_OFFSET).contains(&offset) {
        return Err(Error::invalid("offset", "expected 0 to 10000"));
    }
    let default_sort = json!({"field": "created_at", "direction": "desc"});
    let sort = req.sort.clone().unwrap_or(default_sort);
    let search = req.search.as_deref().map(|s| ("filename", s, None));
    let (filter, sort) =
        crate::service::list_filter(req.filters.as_ref(), search, None, Some(&sort))?;
    let spec = ListSpec { filter, sort, after: None, offset, limit, include_total: true };
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);
    let page = state.store.list(Table::Uploads, scope, &spec).await?;

    let mut results = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        let doc = row.doc.clone();
        results.push(if req.return_presigned_urls == Some(true) {
            with_download_url(state, doc).await?
        } else {
            response(doc)
        });
    }
    let stats = state.store.upload_stats(bucket_id).await?;
    let total_uploads: i64 = stats.iter().map(|(_, n, _)| n).sum();
    let total_size: i64 = stats.iter().map(|(_, _, s)| s).sum();
    let by_status: Map<String, Value> =
        stats.iter().map(|(s, n, _)| (s.clone(), json!(n))).collect();
    let avg = if total_uploads > 0 { total_size as f64 / total_uploads as f64 } else { 0.0 };
    Ok(json!({
        "results": results,
        "pagination": {
            "total": page.total,
            "page": offset / limit + 1,
            "page_size": limit,
            "total_pages": page.total.map(|t| (t + limit - 1) / limit),
            "has_more": page.has_more,
            "offset": offset,
            "limit": limit,
        },
        "stats": {
            "total_uploads": total_uploads,
            "total_size_bytes": total_size,
            "uploads_by_status": by_status,
            "avg_file_size_bytes": avg,
            "unique_buckets": i64::from(total_uploads > 0),
        },
    }))
}

/// Cancels a pending upload and deletes any bytes it received. A completed upload stays.
///
/// # Errors
///
/// 404, or 409 for a completed upload.
pub async fn delete(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    delete_bytes: bool,
) -> Result<()> {
    let (_, doc) = load(state, caller, bucket, id).await?;
    if doc["status"] == "COMPLETED" {
        return Err(Error::conflict(
            "upload_completed",
            "a completed upload cannot be deleted; delete its object instead",
        ));
    }
    cancel(state, id, doc, delete_bytes, "upload canceled").await
}

/// Marks an upload CANCELED with `message`, deleting its bytes when asked.
async fn cancel(
    state: &AppState,
    id: &str,
    mut doc: Value,
    delete_bytes: bool,
    message: &str,
) -> Result<()> {
    if delete_bytes && let Some(key) = doc["s3_key"].as_str() {
        let deleted = state.blobs.delete(key).await;
        deleted.map_err(|e| Error::Internal(format!("blob delete failed: {e}")))?;
    }
    doc["status"] = json!("CANCELED");
    doc["presigned_url"] = Value::Null;
    doc["message"] = json!(message);
    state.store.update_doc(Table::Uploads, id, None, &doc).await?;
    Ok(())
}

/// Confirms one upload. With `run_async`, the check runs as a background task and the answer
/// is PROCESSING with the task's id.
///
/// # Errors
///
/// 404, 409 for an expired or canceled upload, 400 when the bytes are missing or differ from
/// what the client says, and the object-creation errors.
pub async fn confirm(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    req: Confirm,
    policy: Option<&str>,
    run_async: bool,
) -> Result<Value> {
    let (bucket, doc) = load(state, caller, bucket, id).await?;
    if run_async && doc["status"] == "PENDING" {
        let confirmations = vec![Confirm { upload_id: Some(id.to_string()), ..req }];
        let task = start_confirm_task(
            state,
            caller,
            &bucket,
            confirmations,
            policy,
            TaskType::UploadConfirm,
        )
        .await?;
        return Ok(json!({"upload_id": id, "status": "PROCESSING", "task_id": task["task_id"],
                         "message": "confirmation is running in the background"}));
    }
    let confirmed = confirm_doc(state, caller, &bucket, doc, &req, policy).await?;
    let confirmed = if req.auto_submit_batch == Some(true) {
        let mut submitted = submit_batch(state, caller, &bucket, vec![confirmed]).await?;
        submitted.pop().unwrap_or_default()
    } else {
        confirmed
    };
    Ok(confirm_response(&confirmed))
}

/// Creates and submits one batch holding the objects of confirmed uploads that have none yet,
/// and records it on each upload, so that confirming again does not submit a second batch.
async fn submit_batch(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &Value,
    mut uploads: Vec<Value>,
) -> Result<Vec<Value>> {
    let object_ids: Vec<String> = uploads
        .iter()
        .filter(|u| u["batch_id"].is_null())
        .filter_map(|u| u["object_id"].as_str().map(String::from))
        .collect();
    if object_ids.is_empty() {
        return Ok(uploads);
    }
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let batch =
        crate::service::batches::create_submitted(state, caller, bucket_id, object_ids).await?;
    for upload in uploads.iter_mut().filter(|u| u["batch_id"].is_null()) {
        if upload["object_id"].is_null() {
            continue;
        }
        upload["batch_id"] = batch["batch_id"].clone();
        upload["task_id"] = batch["task_id"].clone();
        let id = upload["upload_id"].as_str().unwrap_or_default().to_string();
        state.store.update_doc(Table::Uploads, &id, None, upload).await?;
    }
    Ok(uploads)
}

/// Confirms up to [`MAX_BATCH`] uploads in a background task.
///
/// # Errors
///
/// 404 for the bucket, 422 for a malformed list.
pub async fn confirm_batch(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    confirmations: Vec<Confirm>,
    policy: Option<&str>,
) -> Result<Value> {
    if confirmations.is_empty() || confirmations.len() > MAX_BATCH {
        return Err(Error::invalid("confirmations", format!("expected 1 to {MAX_BATCH} entries")));
    }
    for (i, c) in confirmations.iter().enumerate() {
        if c.upload_id.as_deref().is_none_or(str::is_empty) {
            return Err(Error::invalid(format!("confirmations[{i}].upload_id"), "required"));
        }
    }
    let bucket = buckets::resolve(state, caller, bucket).await?;
    let count = confirmations.len();
    let task = start_confirm_task(
        state,
        caller,
        &bucket,
        confirmations,
        policy,
        TaskType::UploadBatchConfirm,
    )
    .await?;
    Ok(json!({
        "task_id": task["task_id"],
        "status": task["status"],
        "confirmations_count": count,
        "task": tasks::response(task.clone()),
        "message": "Batch confirmation is being processed in the background.",
    }))
}

async fn start_confirm_task(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &Value,
    confirmations: Vec<Confirm>,
    policy: Option<&str>,
    kind: TaskType,
) -> Result<Value> {
    let items: Vec<Value> = confirmations
        .iter()
        .map(|c| {
            json!({"upload_id": c.upload_id, "etag": c.etag, "file_size_bytes": c.file_size_bytes,
                   "auto_submit_batch": c.auto_submit_batch})
        })
        .collect();
    let inputs = json!({
        "namespace_id": caller.namespace_id,
        "bucket_id": bucket["bucket_id"],
        "confirmations": items,
        "policy": policy,
    });
    let task = tasks::create(state, &caller.caller.org_id, kind, inputs).await?;
    let payload = json!({"task_id": task["task_id"]});
    jobs::enqueue(state, JobKind::UploadConfirm, &caller.caller.org_id, payload, None).await?;
    Ok(task)
}

/// Runs a confirmation task; each upload's outcome goes into the task's outputs.
///
/// # Errors
///
/// A store failure; the job engine retries, and confirmed uploads stay confirmed.
pub async fn run_confirm_task(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let org_id = job.org_id.as_str();
    let task_id = job.payload["task_id"].as_str().unwrap_or_default();
    let Some(row) = state.store.get(Table::Tasks, Scope::org(org_id), task_id).await? else {
        return Ok(());
    };
    let task =
        tasks::set_status(state, row.doc, crate::model::TaskStatus::InProgress, None).await?;
    let inputs = &task["additional_data"];
    let namespace_id = inputs["namespace_id"].as_str().unwrap_or_default().to_string();
    let caller = tasks::caller_for(state, org_id, &namespace_id).await?;
    let bucket_id = inputs["bucket_id"].as_str().unwrap_or_default();
    let bucket = buckets::resolve(state, &caller, bucket_id).await?;
    let policy = inputs["policy"].as_str();

    let mut outputs = Vec::new();
    let mut to_submit = Vec::new();
    let mut failures = 0;
    for item in inputs["confirmations"].as_array().into_iter().flatten() {
        let id = item["upload_id"].as_str().unwrap_or_default();
        let req = Confirm {
            upload_id: Some(id.to_string()),
            etag: item["etag"].as_str().map(String::from),
            file_size_bytes: item["file_size_bytes"].as_i64(),
            auto_submit_batch: item["auto_submit_batch"].as_bool(),
        };
        let scope = Scope::bucket(org_id, &namespace_id, bucket_id);
        let outcome = match state.store.get(Table::Uploads, scope, id).await? {
            None => Err(Error::not_found("upload", id)),
            Some(row) => confirm_doc(state, &caller, &bucket, row.doc, &req, policy).await,
        };
        match outcome {
            Ok(doc) if req.auto_submit_batch == Some(true) => to_submit.push(doc),
            Ok(doc) => outputs.push(confirm_response(&doc)),
            Err(Error::Store(e)) => return Err(Error::Store(e)),
            Err(e) => {
                failures += 1;
                outputs
                    .push(json!({"upload_id": id, "status": "FAILED", "message": e.to_string()}));
            }
        }
    }
    for doc in submit_batch(state, &caller, &bucket, to_submit).await? {
        outputs.push(confirm_response(&doc));
    }
    let mut task = task;
    task["outputs"] = Value::Array(outputs);
    let status = if failures == 0 {
        crate::model::TaskStatus::Completed
    } else {
        crate::model::TaskStatus::Failed
    };
    let error = (failures > 0).then(|| format!("{failures} confirmation(s) failed; see outputs"));
    tasks::set_status(state, task, status, error.as_deref()).await?;
    Ok(())
}

/// Checks the uploaded bytes and, unless that happened already, completes the upload and
/// creates its object. Confirming a completed upload again answers the same.
async fn confirm_doc(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &Value,
    doc: Value,
    req: &Confirm,
    policy: Option<&str>,
) -> Result<Value> {
    let id = doc["upload_id"].as_str().unwrap_or_default().to_string();
    match doc["status"].as_str().unwrap_or_default() {
        "COMPLETED" => return Ok(doc),
        "PROCESSING" => {
            return settled(state, caller, bucket, doc["upload_id"].as_str().unwrap_or_default())
                .await;
        }
        "PENDING" => {}
        "CANCELED" if doc["expired"] == true => {
            return Err(Error::conflict(
                "upload_expired",
                "the upload expired before it was confirmed",
            ));
        }
        other => {
            return Err(Error::conflict("upload_not_pending", format!("the upload is {other}")));
        }
    }
    let expired = doc["expires_at"]
        .as_str()
        .and_then(parse_time)
        .is_some_and(|t| t < time::OffsetDateTime::now_utc());
    if expired {
        return Err(Error::conflict(
            "upload_expired",
            "the upload expired before it was confirmed",
        ));
    }

    let key = doc["s3_key"].as_str().unwrap_or_default().to_string();
    let meta = state
        .blobs
        .head(&key)
        .await
        .map_err(|e| Error::Internal(format!("blob head failed: {e}")))?;
    let meta = meta.ok_or_else(|| {
        Error::bad_request("upload_missing", "no bytes were uploaded to the presigned URL yet")
    })?;
    verify(&doc, req, &meta)?;
    // Only one confirmation creates the object: the others wait for it to finish and then
    // answer what it did, or are told it is still running.
    let mut processing = doc.clone();
    processing["status"] = json!("PROCESSING");
    if !state.store.update_upload_if(&id, "PENDING", &processing).await? {
        return settled(state, caller, bucket, &id).await;
    }
    let outcome = complete(state, caller, bucket, doc, &key, &meta, policy).await;
    if outcome.is_err() {
        // Put the upload back so that the client can fix the cause and confirm again.
        state.store.update_upload_if(&id, "PROCESSING", &pending_again(&processing)).await?;
    }
    outcome
}

fn pending_again(doc: &Value) -> Value {
    let mut doc = doc.clone();
    doc["status"] = json!("PENDING");
    doc
}

/// The answer for a confirmation that lost the race to another one.
async fn settled(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &Value,
    id: &str,
) -> Result<Value> {
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default();
    let scope = Scope::bucket(&caller.caller.org_id, &caller.namespace_id, bucket_id);
    for _ in 0..100 {
        let row = state.store.get(Table::Uploads, scope, id).await?;
        let doc = row.ok_or_else(|| Error::not_found("upload", id))?.doc;
        match doc["status"].as_str() {
            Some("COMPLETED") => return Ok(doc),
            Some("PROCESSING") => tokio::time::sleep(Duration::from_millis(50)).await,
            other => {
                let status = other.unwrap_or("unknown");
                return Err(Error::conflict(
                    "upload_not_pending",
                    format!("the upload is {status}"),
                ));
            }
        }
    }
    Err(Error::conflict("upload_confirming", "another confirmation of this upload is running"))
}

/// Verifies the hash, applies the storage class, creates the object and completes the upload.
async fn complete(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &Value,
    mut doc: Value,
    key: &str,
    meta: &crate::blob::BlobMeta,
    policy: Option<&str>,
) -> Result<Value> {
    let id = doc["upload_id"].as_str().unwrap_or_default().to_string();
    let sha256 = match doc["file_hash"].as_str() {
        Some(expected) => {
            let known = doc["received_sha256"].as_str().map(String::from);
            let actual = match known {
                Some(hash) => hash,
                None => objects::hash_blob(state, key).await?,
            };
            if actual != expected {
                return Err(Error::bad_request(
                    "file_hash_mismatch",
                    "the uploaded bytes do not match file_hash",
                ));
            }
            Some(actual)
        }
        None => None,
    };

    let class = storage_class(bucket);
    if meta.storage_class.unwrap_or_default() != class {
        state
            .blobs
            .set_storage_class(key, class)
            .await
            .map_err(|e| Error::Internal(format!("setting the storage class failed: {e}")))?;
    }

    let at = now();
    if doc["create_object_on_confirm"] != false {
        let object = objects::create_from_upload(
            state,
            caller,
            bucket,
            &doc,
            meta.size,
            sha256.as_deref(),
            policy,
        )
        .await?;
        doc["object_id"] = object["object_id"].clone();
    }
    doc["status"] = json!("COMPLETED");
    doc["etag"] = json!(meta.etag);
    doc["file_size_bytes"] = json!(meta.size);
    doc["verified_at"] = json!(at);
    doc["completed_at"] = json!(at);
    doc["presigned_url"] = Value::Null;
    state.store.update_doc(Table::Uploads, &id, None, &doc).await?;
    tracing::info!(upload.id = %id, "upload confirmed");
    let payload = json!({
        "upload_id": id,
        "bucket_id": bucket["bucket_id"],
        "object_id": doc["object_id"],
        "filename": doc["filename"],
        "file_size_bytes": doc["file_size_bytes"],
    });
    let org = &caller.caller.org_id;
    let namespace = Some(caller.namespace_id.as_str());
    crate::service::events::record_logged(state, org, namespace, "upload.confirmed", payload).await;
    Ok(doc)
}

fn verify(doc: &Value, req: &Confirm, meta: &crate::blob::BlobMeta) -> Result<()> {
    let unquote = |s: &str| s.trim().trim_start_matches("W/").trim_matches('"').to_string();
    if let (Some(given), Some(actual)) = (&req.etag, &meta.etag)
        && unquote(given) != unquote(actual)
    {
        return Err(Error::bad_request(
            "etag_mismatch",
            "the ETag does not match the uploaded bytes",
        ));
    }
    for expected in [req.file_size_bytes, doc["file_size_bytes"].as_i64()].into_iter().flatten() {
        if expected as u64 != meta.size {
            return Err(Error::bad_request(
                "size_mismatch",
                format!("expected {expected} bytes, {} were uploaded", meta.size),
            ));
        }
    }
    if let (Some(stored), Some(declared)) = (&meta.content_type, doc["content_type"].as_str())
        && !stored.eq_ignore_ascii_case(declared)
    {
        return Err(Error::bad_request(
            "content_type_mismatch",
            format!("the bytes were uploaded as {stored}, not {declared}"),
        ));
    }
    Ok(())
}

fn confirm_response(doc: &Value) -> Value {
    json!({
        "upload_id": doc["upload_id"],
        "status": doc["status"],
        "etag": doc["etag"],
        "file_size_bytes": doc["file_size_bytes"],
        "file_hash": doc["file_hash"],
        "verified_at": doc["verified_at"],
        "completed_at": doc["completed_at"],
        "object_id": doc["object_id"],
        "batch_id": doc["batch_id"],
        "task_id": doc["task_id"],
        "message": "upload confirmed",
    })
}

/// Expires an upload that was never confirmed: cancels it and deletes its bytes. Runs as a
/// job at the upload's expiry time; an upload confirmed or canceled meanwhile is left alone.
///
/// # Errors
///
/// A store or blob failure; the job engine retries.
pub async fn run_expiry(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let payload = &job.payload;
    let scope = Scope {
        org_id: &job.org_id,
        namespace_id: payload["namespace_id"].as_str(),
        bucket_id: payload["bucket_id"].as_str(),
        collection_id: None,
    };
    let id = payload["upload_id"].as_str().unwrap_or_default();
    let Some(row) = state.store.get(Table::Uploads, scope, id).await? else {
        return Ok(());
    };
    let mut doc = row.doc;
    if doc["status"] != "PENDING" {
        return Ok(());
    }
    doc["expired"] = json!(true);
    cancel(state, id, doc, true, "the upload expired before it was confirmed").await?;
    tracing::info!(upload.id = %id, "upload expired");
    Ok(())
}

/// Removes the bytes of an upload record whose bucket is being deleted.
pub async fn delete_bytes(state: &AppState, doc: &Value) {
    if doc["status"] != "COMPLETED"
        && let Some(key) = doc["s3_key"].as_str()
        && let Err(e) = state.blobs.delete(key).await
    {
        tracing::warn!(error = %e, "could not remove an upload's bytes");
    }
}

fn response(mut doc: Value) -> Value {
    if let Some(map) = doc.as_object_mut() {
        map.remove("expired");
    }
    doc
}
