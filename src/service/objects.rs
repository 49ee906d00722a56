//! Objects: the records of a bucket, each with custom fields, `metadata` and blobs.
//!
//! Creation validates everything first, writes inline blob bytes to the blob store, then
//! inserts every row of the request in one transaction. A row the database refuses because its
//! idempotency key is taken is answered with the object that holds the key; its fresh blobs are
//! removed again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::api::auth::NamespacedCaller;
use crate::api::pagination::{MAX_LIMIT, PageParams};
use crate::error::{Error, Result};
use crate::model::blob::{BlobData, ParsedBlob, guess_mime, parse_blob};
use crate::model::schema::{BucketSchema, FieldType};
use crate::model::{FieldError, StorageClass, hex, new_id, now};
use crate::service::{buckets, events, list_filter, next_cursor};
use crate::store::{NewObject, ObjectKey, Row, Scope, StoreError, Table};

/// The most objects one batch request may create.
pub const MAX_BATCH: usize = 100;
/// The most ids one bulk soft delete may name.
pub const MAX_SOFT_DELETE: usize = 5000;
const IDEMPOTENCY_KEY_MAX: usize = 255;
const KEY_PREFIX_MAX: usize = 1024;

/// Request keys of object creation that are not custom fields.
const CREATE_KEYS: [&str; 8] = [
    "key_prefix",
    "blobs",
    "skip_duplicates",
    "canonicalize_source",
    "force_remirror",
    "edges",
    "idempotency_key",
    "metadata",
];

/// Response keys that sluice owns; no custom field may take their names.
const RESERVED_KEYS: [&str; 11] = [
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
];

/// How a unique-key collision is resolved, from `?policy=` or the bucket's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Insert,
    Update,
    Upsert,
}

impl Policy {
    fn parse(s: &str) -> Result<Policy> {
        match s {
            "insert" => Ok(Policy::Insert),
            "update" => Ok(Policy::Update),
            "upsert" => Ok(Policy::Upsert),
            other => Err(Error::invalid(
                "policy",
                format!("{other:?} is not a policy; expected insert, update or upsert"),
            )),
        }
    }
}

/// The body of `POST …/objects/list`. Unknown keys are refused, as the contract says; the
/// pagination keys are accepted too, because the official wrapper sends them in the body, and
/// the query string wins over them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListObjects {
    pub limit: Option<i64>,
    pub page_size: Option<i64>,
    pub offset: Option<i64>,
    pub page: Option<i64>,
    pub cursor: Option<String>,
    pub next_cursor: Option<String>,
    pub after: Option<String>,
    pub include_total: Option<bool>,
    pub filters: Option<Value>,
    pub sort: Option<Value>,
    pub search: Option<String>,
    pub select: Option<Vec<String>>,
    pub return_presigned_urls: Option<bool>,
}

/// The body of `POST …/objects/bulk-soft-delete`.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkSoftDelete {
    pub object_ids: Vec<String>,
    pub reason: String,
    pub lifecycle_state: Option<String>,
    pub source: Option<String>,
}

/// A bucket resolved for an object operation.
struct BucketCtx<'a> {
    caller: &'a NamespacedCaller,
    bucket: Arc<Value>,
    bucket_id: String,
    schema: Arc<BucketSchema>,
    class: StorageClass,
    /// Uploads the request's blobs name, by upload id.
    uploads: HashMap<String, UploadedBlob>,
}

impl BucketCtx<'_> {
    fn scope(&self) -> Scope<'_> {
        Scope::bucket(&self.caller.caller.org_id, &self.caller.namespace_id, &self.bucket_id)
    }
}

async fn bucket_ctx<'a>(
    state: &AppState,
    caller: &'a NamespacedCaller,
    ident: &str,
) -> Result<BucketCtx<'a>> {
    let bucket = buckets::resolve_shared(state, caller, ident).await?;
    let bucket_id = bucket["bucket_id"].as_str().unwrap_or_default().to_string();
    let schema = buckets::schema_of(state, &bucket)?;
    let class = bucket["storage_class"].as_str().and_then(StorageClass::parse).unwrap_or_default();
    Ok(BucketCtx { caller, bucket, bucket_id, schema, class, uploads: HashMap::new() })
}

/// The error code of a unique-key collision.
const UNIQUE_KEY_TAKEN: &str = "unique_key_exists";

/// An object validated and ready to insert.
#[derive(Clone)]
struct Prepared {
    row: Arc<NewObject>,
    blobs: Vec<PendingBlob>,
    skip_duplicates: bool,
}

/// Bytes to write to the blob store before the row is inserted.
#[derive(Clone)]
struct PendingBlob {
    key: String,
    bytes: Bytes,
    mime_type: String,
}

/// The outcome of creating one object.
struct Created {
    doc: Value,
    replayed_by: Option<&'static str>,
}

/// Creates one object.
///
/// # Errors
///
/// 422 for invalid input, 409/404/400 for unique-key policy outcomes, 404 for the bucket.
pub async fn create(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    body: Map<String, Value>,
    policy: Option<&str>,
) -> Result<Value> {
    let mut ctx = bucket_ctx(state, caller, bucket).await?;
    ctx.uploads = referenced_uploads(state, &ctx, &body).await?;
    let object = create_in(state, &ctx, body, policy).await?;
    for upload_id in ctx.uploads.keys() {
        claim_upload(state, &ctx, upload_id, &object["object_id"]).await?;
    }
    Ok(object)
}

/// Creates the object of a confirmed upload: its `object_metadata` become the object's fields
/// and its bytes the blob, where they already are.
///
/// # Errors
///
/// 422 when the fields break the schema; the unique-key policy outcomes.
pub(crate) async fn create_from_upload(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &Value,
    upload: &Value,
    size: u64,
    sha256: Option<&str>,
    policy: Option<&str>,
) -> Result<Value> {
    let mut ctx =
        bucket_ctx(state, caller, bucket["bucket_id"].as_str().unwrap_or_default()).await?;
    let upload_id = upload["upload_id"].as_str().unwrap_or_default().to_string();
    ctx.uploads.insert(upload_id.clone(), UploadedBlob::of(upload, size, sha256));
    let mut body = upload["object_metadata"].as_object().cloned().unwrap_or_default();
    let blob = json!({"property": upload["blob_property"], "type": upload["blob_type"],
                      "upload_id": upload_id});
    body.insert("blobs".into(), json!([blob]));
    create_in(state, &ctx, body, policy).await
}

/// Creates the object of a file a sync copied: the file becomes its blob where it is, with
/// `fields` as its custom fields (and creation settings such as `idempotency_key`). Answers
/// the object, and what answered instead of a new one: `idempotency_key` or `skip_duplicates`.
///
/// # Errors
///
/// 422 when the fields break the schema; 409 for a taken unique key.
pub(crate) async fn create_from_sync(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket_id: &str,
    file: &SyncedFile,
    mut fields: Map<String, Value>,
) -> Result<(Value, Option<&'static str>)> {
    let mut ctx = bucket_ctx(state, caller, bucket_id).await?;
    let digest = Sha256::digest(file.source_key.as_bytes());
    let reference = format!("upl_sync_{}", &hex(&digest)[..16]);
    ctx.uploads.insert(reference.clone(), UploadedBlob::synced(file));
    let blob = json!({"property": file.blob_property, "type": file.blob_type,
                      "upload_id": reference});
    fields.insert("blobs".into(), json!([blob]));
    let created = create_outcome(state, &ctx, fields, None).await?;
    Ok((response(created.doc), created.replayed_by))
}

/// Points an object's blob of `file.blob_property` at a newer copy of its source file, sets
/// the custom `fields` the new copy maps to, and deletes the bytes of the copy it replaces.
///
/// # Errors
///
/// 404 when the object is gone; 422 when the fields break the schema.
pub(crate) async fn replace_synced_blob(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket_id: &str,
    object_id: &str,
    file: &SyncedFile,
    fields: Map<String, Value>,
) -> Result<Value> {
    let ctx = bucket_ctx(state, caller, bucket_id).await?;
    let row = state.store.get(Table::Objects, ctx.scope(), object_id).await?;
    let mut doc = row.ok_or_else(|| Error::not_found("object", object_id))?.doc;
    if let Value::Object(map) = &mut doc {
        map.extend(fields);
        let present: Vec<&str> = map
            .get("blobs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| b["property"].as_str())
            .collect();
        ctx.schema.validate_object(map, &present)?;
    }
    let blobs = doc["blobs"].as_array_mut().ok_or_else(|| Error::not_found("blob", object_id))?;
    let Some(blob) = blobs.iter_mut().find(|b| b["property"] == json!(file.blob_property)) else {
        return Err(Error::not_found("blob", &file.blob_property));
    };
    let previous = blob["properties"]["storage_key"].as_str().map(String::from);
    blob["properties"]["storage_key"] = json!(file.storage_key);
    blob["properties"]["storage_class"] = json!(ctx.class.as_str());
    blob["details"] = json!({"filename": file.filename, "size_bytes": file.size,
                             "mime_type": file.mime, "hash": format!("sha256:{}", file.sha256)});
    doc["updated_at"] = json!(now());
    let size = doc["blobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["details"]["size_bytes"].as_i64())
        .sum();
    let unique_key = match buckets::unique_key(&ctx.bucket) {
        Some((fields, _)) => Some(unique_value(&doc, &fields)?),
        None => None,
    };
    state.store.update_object(object_id, &doc, unique_key.as_deref(), size).await?;
    if let Some(previous) = previous.filter(|p| *p != file.storage_key)
        && let Err(e) = state.blobs.delete(&previous).await
    {
        tracing::warn!(error = %e, "could not delete the bytes of a replaced synced file");
    }
    emit(state, &ctx, "object.updated", doc.clone()).await;
    Ok(response(doc))
}

async fn create_in(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    body: Map<String, Value>,
    policy: Option<&str>,
) -> Result<Value> {
    create_outcome(state, ctx, body, policy).await.map(|created| response(created.doc))
}

/// Creates one object in a bucket, and says whether an earlier object answered instead.
async fn create_outcome(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    body: Map<String, Value>,
    policy: Option<&str>,
) -> Result<Created> {
    let mut prepared = prepare(state, ctx, body, "")?;

    if let Some((fields, default_policy)) = buckets::unique_key(&ctx.bucket) {
        let policy = policy.map(String::from).or(default_policy).ok_or_else(|| {
            Error::bad_request(
                "policy_required",
                format!(
                    "bucket has a unique key on {}; pass ?policy=insert|update|upsert",
                    fields.join(", ")
                ),
            )
        })?;
        let doc = create_with_policy(state, ctx, prepared, Policy::parse(&policy)?).await?;
        return Ok(Created { doc, replayed_by: None });
    }
    if let Some(policy) = policy {
        Policy::parse(policy)?;
    }
    // The event is written with the row unless a webhook's delivery must be queued with it.
    let org = &ctx.caller.caller.org_id;
    let row_event = events::row_event(state, org, "object.created").await?;
    let event_written = match (row_event, Arc::get_mut(&mut prepared.row)) {
        (Some(event), Some(row)) => {
            row.created_event = Some(event);
            true
        }
        _ => false,
    };
    let mut created = insert_prepared(state, ctx, vec![prepared]).await?;
    let created = created.pop().ok_or_else(|| Error::Internal("insert returned no row".into()))?;
    if created.replayed_by.is_none() && !event_written {
        emit(state, ctx, "object.created", created.doc.clone()).await;
    }
    Ok(created)
}

/// Records a change event of the bucket's namespace.
async fn emit(state: &AppState, ctx: &BucketCtx<'_>, event_type: &str, payload: Value) {
    let caller = ctx.caller;
    let (org, namespace) = (&caller.caller.org_id, Some(caller.namespace_id.as_str()));
    events::record_logged(state, org, namespace, event_type, payload).await;
}

/// Bytes already in managed storage (sent to an upload URL, or copied by a sync) that become a
/// blob where they are.
#[derive(Debug, Clone)]
pub(crate) struct UploadedBlob {
    key: String,
    size: u64,
    mime: String,
    filename: String,
    sha256: Option<String>,
    /// For a sync's copy: the sync and the file's key in the source.
    synced_from: Option<(String, String)>,
}

/// A file a sync copied into managed storage, to become an object's blob.
#[derive(Debug, Clone)]
pub struct SyncedFile {
    pub sync_id: String,
    pub source_key: String,
    pub storage_key: String,
    pub size: u64,
    pub mime: String,
    pub filename: String,
    pub sha256: String,
    pub blob_property: String,
    pub blob_type: String,
}

impl UploadedBlob {
    fn synced(file: &SyncedFile) -> Self {
        UploadedBlob {
            key: file.storage_key.clone(),
            size: file.size,
            mime: file.mime.clone(),
            filename: file.filename.clone(),
            sha256: Some(file.sha256.clone()),
            synced_from: Some((file.sync_id.clone(), file.source_key.clone())),
        }
    }

    fn of(upload: &Value, size: u64, sha256: Option<&str>) -> Self {
        let text = |k: &str| upload[k].as_str().unwrap_or_default().to_string();
        UploadedBlob {
            synced_from: None,
            key: text("s3_key"),
            size,
            mime: text("content_type"),
            filename: text("filename"),
            sha256: sha256
                .map(String::from)
                .or_else(|| upload["file_hash"].as_str().map(String::from)),
        }
    }
}

/// The uploads that the blobs of a create request name by `upload_id`. Each must be a
/// completed upload of this bucket that no object holds yet.
async fn referenced_uploads(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    body: &Map<String, Value>,
) -> Result<HashMap<String, UploadedBlob>> {
    let mut found = HashMap::new();
    let blobs = body.get("blobs").and_then(Value::as_array).into_iter().flatten();
    for (i, blob) in blobs.enumerate() {
        let Some(id) = blob.get("upload_id").and_then(Value::as_str) else { continue };
        let row = state.store.get(Table::Uploads, ctx.scope(), id).await?;
        let field = format!("blobs[{i}].upload_id");
        let upload = row
            .ok_or_else(|| Error::invalid(field.clone(), format!("no upload {id} in this bucket")))?
            .doc;
        if upload["status"] != "COMPLETED" {
            return Err(Error::invalid(field, format!("upload {id} is not confirmed")));
        }
        if !upload["object_id"].is_null() {
            return Err(Error::invalid(field, format!("upload {id} belongs to another object")));
        }
        let size = upload["file_size_bytes"].as_u64().unwrap_or(0);
        found.insert(id.to_string(), UploadedBlob::of(&upload, size, None));
    }
    Ok(found)
}

/// Records on an upload which object now holds its bytes.
async fn claim_upload(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    upload_id: &str,
    object_id: &Value,
) -> Result<()> {
    if let Some(row) = state.store.get(Table::Uploads, ctx.scope(), upload_id).await? {
        let mut doc = row.doc;
        doc["object_id"] = object_id.clone();
        state.store.update_doc(Table::Uploads, upload_id, None, &doc).await?;
    }
    Ok(())
}

/// The SHA-256 of a stored blob, read as a stream.
///
/// # Errors
///
/// Fails when the blob cannot be read.
pub(crate) async fn hash_blob(state: &AppState, key: &str) -> Result<String> {
    use futures::StreamExt;
    let (_, mut stream) = state
        .blobs
        .open_read(key)
        .await
        .map_err(|e| Error::Internal(format!("blob read failed: {e}")))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Internal(format!("blob read failed: {e}")))?;
        hasher.update(&chunk);
    }
    Ok(hex(&hasher.finalize()))
}

/// Creates up to [`MAX_BATCH`] objects; each succeeds or fails on its own. When every object
/// fails, the answer is a 422 with the same shape.
///
/// # Errors
///
/// 404 for the bucket, 422 when the bucket has a unique key or the request is malformed.
pub async fn create_batch(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    objects: Vec<Value>,
) -> Result<(bool, Value)> {
    let ctx = bucket_ctx(state, caller, bucket).await?;
    if buckets::unique_key(&ctx.bucket).is_some() {
        return Err(Error::invalid(
            "objects",
            "this bucket has a unique key; create its objects one at a time with ?policy=",
        ));
    }
    if objects.len() > MAX_BATCH {
        return Err(Error::invalid("objects", format!("expected at most {MAX_BATCH} objects")));
    }

    let total = objects.len();
    let mut failed = Vec::new();
    let mut prepared = Vec::new();
    let mut indexes = Vec::new();
    for (i, object) in objects.into_iter().enumerate() {
        let outcome = match object {
            Value::Object(map) => prepare(state, &ctx, map, &format!("objects[{i}]")),
            _ => Err(Error::invalid(format!("objects[{i}]"), "expected an object")),
        };
        match outcome {
            Ok(p) => {
                prepared.push(p);
                indexes.push(i);
            }
            Err(e) => failed.push(failure(i, &e)),
        }
    }

    let created = insert_prepared(state, &ctx, prepared).await?;
    let fresh: Vec<&Value> =
        created.iter().filter(|c| c.replayed_by.is_none()).map(|c| &c.doc["object_id"]).collect();
    if !fresh.is_empty() {
        let payload =
            json!({"bucket_id": ctx.bucket_id, "object_ids": fresh, "count": fresh.len()});
        emit(state, &ctx, "objects.created.batch", payload).await;
    }
    let succeeded: Vec<Value> = created
        .into_iter()
        .zip(indexes)
        .map(|(c, i)| {
            let mut doc = response(c.doc);
            doc["object_index"] = json!(i);
            doc["replayed"] = json!(c.replayed_by.is_some());
            doc["replayed_by"] = json!(c.replayed_by);
            doc
        })
        .collect();
    let all_failed = succeeded.is_empty() && total > 0;
    let body = json!({
        "succeeded_count": succeeded.len(),
        "failed_count": failed.len(),
        "total_requested": total,
        "succeeded": succeeded,
        "failed": failed,
    });
    Ok((all_failed, body))
}

fn failure(index: usize, e: &Error) -> Value {
    let kind = match e {
        Error::Invalid(_) => "ValidationError",
        Error::NotFound { .. } => "NotFoundError",
        Error::Conflict { .. } => "ConflictError",
        Error::BadRequest { .. } => "BadRequestError",
        _ => "InternalServerError",
    };
    let message = match e {
        Error::Store(_) | Error::Internal(_) => "internal error".to_string(),
        other => other.to_string(),
    };
    json!({"object_index": index, "error": message, "error_type": kind})
}

/// Validates one create body and turns it into a row and the blob bytes to write.
fn prepare(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    mut body: Map<String, Value>,
    path: &str,
) -> Result<Prepared> {
    let at =
        |field: &str| if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
    let prefixed = |e: FieldError| Error::Invalid(FieldError::new(at(&e.field), e.message));

    if body.contains_key("auto_process") {
        return Err(Error::invalid(at("auto_process"), "pass auto_process as a query parameter"));
    }
    let key_prefix = take_string(&mut body, "key_prefix").map_err(prefixed)?;
    if let Some(prefix) = &key_prefix {
        check_key_prefix(prefix).map_err(|m| Error::invalid(at("key_prefix"), m))?;
    }
    let idempotency_key = take_string(&mut body, "idempotency_key").map_err(prefixed)?;
    if idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > IDEMPOTENCY_KEY_MAX) {
        return Err(Error::invalid(at("idempotency_key"), "expected 1 to 255 characters"));
    }
    let skip_duplicates =
        take_bool(&mut body, "skip_duplicates").map_err(prefixed)?.unwrap_or(false);
    for flag in ["canonicalize_source", "force_remirror"] {
        take_bool(&mut body, flag).map_err(prefixed)?;
    }
    let metadata = match body.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::invalid(at("metadata"), "expected an object")),
    };
    let edges = check_edges(body.remove("edges")).map_err(prefixed)?;
    let blobs_json = match body.remove("blobs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Error::invalid(at("blobs"), "expected a list")),
    };

    if let Some(key) = body.keys().find(|k| RESERVED_KEYS.contains(&k.as_str())) {
        return Err(Error::invalid(at(key), "is set by sluice and cannot be written"));
    }

    let limit = state.limits.max_inline_blob_bytes;
    let mut parsed = Vec::with_capacity(blobs_json.len());
    for (i, blob) in blobs_json.iter().enumerate() {
        let blob = parse_blob(blob, i, &ctx.schema, limit).map_err(prefixed)?;
        check_source(state, &blob)
            .map_err(|m| Error::invalid(at(&format!("blobs[{i}].data")), m))?;
        parsed.push(blob);
    }
    let present: Vec<&str> = parsed.iter().map(|b| b.property.as_str()).collect();
    ctx.schema.validate_object(&body, &present).map_err(prefixed)?;

    let object_id = new_id("obj_", 20);
    let mut pending = Vec::new();
    let mut blob_docs = Vec::with_capacity(parsed.len());
    let mut size = 0i64;
    for blob in parsed {
        let (doc, bytes) = blob_doc(ctx, &object_id, blob, key_prefix.as_deref())?;
        size += doc["details"]["size_bytes"].as_i64().unwrap_or(0);
        pending.extend(bytes);
        blob_docs.push(doc);
    }
    let hashes =
        blob_docs.iter().filter_map(|b| b["details"]["hash"].as_str().map(String::from)).collect();

    let created_at = now();
    let mut doc = Map::new();
    doc.insert("object_id".into(), json!(object_id));
    doc.insert("bucket_id".into(), json!(ctx.bucket_id));
    doc.insert("key_prefix".into(), json!(key_prefix));
    doc.insert("blobs".into(), Value::Array(blob_docs));
    doc.insert("source_details".into(), json!([]));
    doc.insert("edges".into(), edges);
    doc.insert("status".into(), json!("PENDING"));
    doc.insert("error".into(), Value::Null);
    doc.insert("created_at".into(), json!(created_at));
    doc.insert("updated_at".into(), json!(created_at));
    doc.insert("metadata".into(), Value::Object(metadata));
    doc.extend(body);
    let doc = Value::Object(doc);

    let unique_key = match buckets::unique_key(&ctx.bucket) {
        Some((fields, _)) => Some(unique_value(&doc, &fields).map_err(prefixed)?),
        None => None,
    };
    let row = NewObject {
        id: object_id,
        org_id: ctx.caller.caller.org_id.clone(),
        namespace_id: ctx.caller.namespace_id.clone(),
        bucket_id: ctx.bucket_id.clone(),
        doc,
        size_bytes: size,
        idempotency_key,
        unique_key,
        blob_hashes: hashes,
        created_event: None,
    };
    Ok(Prepared { row: Arc::new(row), blobs: pending, skip_duplicates })
}

/// Refuses at once a URL that mirroring would refuse for its form alone (a literal private
/// address, credentials in the URL); host names are checked when the mirror job resolves them.
fn check_source(state: &AppState, blob: &ParsedBlob) -> std::result::Result<(), String> {
    let BlobData::Url { url } = &blob.data else { return Ok(()) };
    let http = url.starts_with("http://") || url.starts_with("https://");
    if !http || blob.canonicalize_source == Some(false) {
        return Ok(());
    }
    state.fetcher.policy().check_url(url).map(|_| ()).map_err(|e| e.to_string())
}

/// The blob record of one parsed blob, and the bytes to write when it carries inline data.
fn blob_doc(
    ctx: &BucketCtx<'_>,
    object_id: &str,
    blob: ParsedBlob,
    key_prefix: Option<&str>,
) -> Result<(Value, Option<PendingBlob>)> {
    let blob_id = new_id("blob_", 16);
    let checksum = blob.checksum.as_ref().map(|c| format!("sha256:{c}"));
    let key_prefix = blob.key_prefix.clone().or_else(|| key_prefix.map(String::from));
    let (properties, details, pending) = match blob.data {
        BlobData::Url { url } => {
            let mirror = if blob.canonicalize_source == Some(false) { "off" } else { "pending" };
            let filename = url_filename(&url);
            let mime = filename.as_deref().and_then(guess_mime);
            let details = json!({"filename": filename, "size_bytes": null, "mime_type": mime,
                                 "hash": checksum});
            (json!({"url": url, "source": "url", "mirror": mirror}), details, None)
        }
        BlobData::Inline { bytes, mime_type, filename } => {
            let filename = filename.unwrap_or_else(|| default_filename(blob.field_type));
            let mime = mime_type
                .or_else(|| guess_mime(&filename).map(String::from))
                .unwrap_or_else(|| "application/octet-stream".into());
            stored_blob(ctx, object_id, &blob_id, filename, mime, Bytes::from(bytes), checksum)?
        }
        BlobData::Text { text } => {
            let filename = default_filename(FieldType::Text);
            let bytes = Bytes::from(text.into_bytes());
            stored_blob(ctx, object_id, &blob_id, filename, "text/plain".into(), bytes, checksum)?
        }
        BlobData::Upload { upload_id } => {
            let uploaded = ctx
                .uploads
                .get(&upload_id)
                .ok_or_else(|| Error::not_found("upload", &upload_id))?;
            let hash = uploaded.sha256.as_ref().map(|h| format!("sha256:{h}"));
            let properties = match &uploaded.synced_from {
                Some((sync_id, source_key)) => json!({"storage_key": uploaded.key,
                    "source": "sync", "sync_config_id": sync_id, "source_key": source_key,
                    "storage_class": ctx.class.as_str()}),
                None => json!({"storage_key": uploaded.key, "source": "upload",
                    "upload_id": upload_id, "storage_class": ctx.class.as_str()}),
            };
            let details = json!({"filename": uploaded.filename, "size_bytes": uploaded.size,
                                 "mime_type": uploaded.mime, "hash": hash});
            (properties, details, None)
        }
    };
    let doc = json!({
        "blob_id": blob_id,
        "property": blob.property,
        "type": blob.field_type.as_str(),
        "key_prefix": key_prefix,
        "properties": properties,
        "presigned_url": null,
        "details": details,
    });
    Ok((doc, pending))
}

type BlobParts = (Value, Value, Option<PendingBlob>);

fn stored_blob(
    ctx: &BucketCtx<'_>,
    object_id: &str,
    blob_id: &str,
    filename: String,
    mime: String,
    bytes: Bytes,
    checksum: Option<String>,
) -> Result<BlobParts> {
    let hash = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    if let Some(expected) = &checksum
        && expected != &hash
    {
        return Err(Error::invalid("blobs.checksum", "does not match the blob's bytes"));
    }
    let key = format!(
        "{}/{}/{}/{object_id}/{blob_id}/{}",
        ctx.caller.caller.internal_id,
        ctx.caller.namespace_id,
        ctx.bucket_id,
        safe_filename(&filename)
    );
    let properties = json!({"storage_key": key, "source": "inline",
                            "storage_class": ctx.class.as_str()});
    let details = json!({"filename": filename, "size_bytes": bytes.len(), "mime_type": mime,
                         "hash": hash});
    Ok((properties, details, Some(PendingBlob { key, bytes, mime_type: mime })))
}

/// Writes blob bytes, inserts the rows and answers each one, replaying earlier objects for
/// taken idempotency keys and, with `skip_duplicates`, for blobs already stored.
async fn insert_prepared(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    prepared: Vec<Prepared>,
) -> Result<Vec<Created>> {
    let mut outcomes: Vec<Option<Created>> = Vec::with_capacity(prepared.len());
    let mut to_insert = Vec::new();
    for p in &prepared {
        let duplicate = if p.skip_duplicates && !p.row.blob_hashes.is_empty() {
            state.store.find_object_by_blob_hash(&ctx.bucket_id, &p.row.blob_hashes).await?
        } else {
            None
        };
        match duplicate {
            Some(row) => {
                outcomes.push(Some(Created { doc: row.doc, replayed_by: Some("skip_duplicates") }))
            }
            None => {
                outcomes.push(None);
                to_insert.push(p);
            }
        }
    }

    write_blobs(state, ctx.class, to_insert.iter().flat_map(|p| &p.blobs)).await?;
    // Rows that need no transaction of their own share a statement with other requests'.
    let inserted = if to_insert.iter().all(|p| p.row.blob_hashes.is_empty()) {
        let rows = to_insert.iter().map(|p| p.row.clone()).collect();
        state.object_writer.insert(rows).await
    } else {
        let rows: Vec<&NewObject> = to_insert.iter().map(|p| &*p.row).collect();
        state.store.insert_objects(&rows).await
    };
    let inserted = match inserted {
        Ok(inserted) => inserted,
        Err(e) => {
            delete_pending(state, to_insert.iter().flat_map(|p| &p.blobs)).await;
            return Err(e.into());
        }
    };

    let mut results = inserted.into_iter().zip(to_insert);
    let mut out = Vec::with_capacity(outcomes.len());
    let mut fresh = Vec::new();
    for outcome in outcomes {
        if let Some(created) = outcome {
            out.push(created);
            continue;
        }
        let Some((was_inserted, p)) = results.next() else { break };
        if was_inserted {
            out.push(Created { doc: p.row.doc.clone(), replayed_by: None });
            fresh.push(&p.row.doc);
            continue;
        }
        delete_pending(state, p.blobs.iter()).await;
        out.push(replay(state, ctx, &p.row).await?);
    }
    crate::service::mirror::enqueue_for(state, ctx.scope(), &fresh).await?;
    if !out.is_empty() {
        tracing::debug!(bucket.id = %ctx.bucket_id, objects = out.len(), "objects created");
    }
    Ok(out)
}

/// Answers a row the database refused: the object holding its idempotency key.
async fn replay(state: &AppState, ctx: &BucketCtx<'_>, row: &NewObject) -> Result<Created> {
    if let Some(key) = &row.idempotency_key
        && let Some(existing) =
            state.store.find_object_by(&ctx.bucket_id, ObjectKey::Idempotency, key).await?
    {
        return Ok(Created { doc: existing.doc, replayed_by: Some("idempotency_key") });
    }
    Err(Error::conflict(UNIQUE_KEY_TAKEN, "an object with the same unique key already exists"))
}

async fn create_with_policy(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    prepared: Prepared,
    policy: Policy,
) -> Result<Value> {
    let key = prepared.row.unique_key.clone().unwrap_or_default();
    let existing = state.store.find_object_by(&ctx.bucket_id, ObjectKey::Unique, &key).await?;
    match (existing, policy) {
        (Some(_), Policy::Insert) => Err(Error::conflict(
            UNIQUE_KEY_TAKEN,
            format!("an object with unique key {key} already exists"),
        )),
        (None, Policy::Update) => Err(Error::not_found("object", format!("unique key {key}"))),
        (Some(row), Policy::Update | Policy::Upsert) => replace(state, ctx, row, prepared).await,
        (None, Policy::Insert | Policy::Upsert) => {
            let inserted = insert_prepared(state, ctx, vec![prepared.clone()]).await;
            match inserted {
                // Another request inserted the same key in between: an upsert updates it.
                Err(Error::Conflict { code: UNIQUE_KEY_TAKEN, .. }) if policy == Policy::Upsert => {
                    let existing =
                        state.store.find_object_by(&ctx.bucket_id, ObjectKey::Unique, &key).await?;
                    let existing = existing.ok_or_else(|| {
                        Error::conflict(UNIQUE_KEY_TAKEN, "the unique key changed hands; retry")
                    })?;
                    replace(state, ctx, existing, prepared).await
                }
                Err(e) => Err(e),
                Ok(mut created) => {
                    let created = created
                        .pop()
                        .ok_or_else(|| Error::Internal("insert returned no row".into()))?;
                    if created.replayed_by.is_none() {
                        emit(state, ctx, "object.created", created.doc.clone()).await;
                    }
                    Ok(response(created.doc))
                }
            }
        }
    }
}

/// Replaces the content of an existing object with a newly prepared one, keeping its id and
/// creation time.
async fn replace(
    state: &AppState,
    ctx: &BucketCtx<'_>,
    existing: Row,
    prepared: Prepared,
) -> Result<Value> {
    let mut doc = prepared.row.doc.clone();
    let old_id = existing.doc["object_id"].clone();
    doc["object_id"] = old_id.clone();
    doc["created_at"] = existing.doc["created_at"].clone();
    let blobs = rekey_blobs(&mut doc, &prepared, old_id.as_str().unwrap_or_default());

    write_blobs(state, ctx.class, blobs.iter()).await?;
    let id = old_id.as_str().unwrap_or_default();
    let saved = state
        .store
        .update_object(id, &doc, prepared.row.unique_key.as_deref(), prepared.row.size_bytes)
        .await;
    if let Err(e) = saved {
        delete_pending(state, blobs.iter()).await;
        return Err(e.into());
    }
    delete_blobs(state, &existing.doc).await;
    crate::service::mirror::enqueue_for(state, ctx.scope(), &[&doc]).await?;
    emit(state, ctx, "object.updated", doc.clone()).await;
    Ok(response(doc))
}

/// Moves freshly prepared blob keys under the id of the object they replace.
fn rekey_blobs(doc: &mut Value, prepared: &Prepared, object_id: &str) -> Vec<PendingBlob> {
    let from = format!("/{}/", prepared.row.id);
    let to = format!("/{object_id}/");
    for blob in doc["blobs"].as_array_mut().into_iter().flatten() {
        if let Some(key) = blob["properties"]["storage_key"].as_str() {
            blob["properties"]["storage_key"] = json!(key.replacen(&from, &to, 1));
        }
    }
    prepared
        .blobs
        .iter()
        .map(|b| PendingBlob {
            key: b.key.replacen(&from, &to, 1),
            bytes: b.bytes.clone(),
            mime_type: b.mime_type.clone(),
        })
        .collect()
}

/// Writes inline blob bytes in the bucket's storage class; on a failure, removes what it wrote.
async fn write_blobs(
    state: &AppState,
    class: StorageClass,
    blobs: impl Iterator<Item = &PendingBlob>,
) -> Result<()> {
    let mut written: Vec<&PendingBlob> = Vec::new();
    for blob in blobs {
        let bytes = blob.bytes.clone();
        let put = state.blobs.put_with_class(&blob.key, bytes, Some(&blob.mime_type), class).await;
        if let Err(e) = put {
            delete_pending(state, written.into_iter()).await;
            return Err(Error::Internal(format!("blob write failed: {e}")));
        }
        written.push(blob);
    }
    Ok(())
}

async fn delete_pending(state: &AppState, blobs: impl Iterator<Item = &PendingBlob>) {
    for blob in blobs {
        if let Err(e) = state.blobs.delete(&blob.key).await {
            tracing::warn!(error = %e, "could not remove an unused blob");
        }
    }
}

/// Removes the stored bytes of every blob of an object record. Failures are logged: the
/// record is gone already, and a leftover file is harmless.
pub async fn delete_blobs(state: &AppState, doc: &Value) {
    for blob in doc["blobs"].as_array().into_iter().flatten() {
        if let Some(key) = blob["properties"]["storage_key"].as_str()
            && let Err(e) = state.blobs.delete(key).await
        {
            tracing::warn!(error = %e, "could not remove a blob of a deleted object");
        }
    }
}

/// Reads one object.
///
/// # Errors
///
/// 404 for the bucket or the object.
pub async fn get(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    presign: bool,
) -> Result<Value> {
    let ctx = bucket_ctx(state, caller, bucket).await?;
    let row = state.store.get(Table::Objects, ctx.scope(), id).await?;
    let doc = row.map(|r| response(r.doc)).ok_or_else(|| Error::not_found("object", id))?;
    if presign { with_presigned_urls(state, doc).await } else { Ok(doc) }
}

/// How long a presigned URL in an object answer stays valid.
const PRESIGNED_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Fills each blob's `presigned_url` (mirrored into `properties`): a signed URL for stored
/// bytes, the source itself for a blob that is an http(s) URL.
async fn with_presigned_urls(state: &AppState, mut doc: Value) -> Result<Value> {
    for blob in doc["blobs"].as_array_mut().into_iter().flatten() {
        let url = if let Some(key) = blob["properties"]["storage_key"].as_str() {
            let mime = blob["details"]["mime_type"].as_str();
            Some(crate::service::download_url(state, key, mime, PRESIGNED_TTL).await?)
        } else {
            blob["properties"]["url"]
                .as_str()
                .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                .map(String::from)
        };
        if let Some(url) = url {
            blob["presigned_url"] = json!(url);
            blob["properties"]["presigned_url"] = json!(url);
        }
    }
    Ok(doc)
}

/// Lists the objects of a bucket, oldest first unless sorted otherwise.
///
/// # Errors
///
/// 404 for the bucket, 422 for invalid filters, sort, select or pagination.
pub async fn list(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    req: ListObjects,
    query: &PageParams,
) -> Result<Value> {
    let ctx = bucket_ctx(state, caller, bucket).await?;
    let body_paging = PageParams {
        limit: req.limit,
        page_size: req.page_size,
        offset: req.offset,
        page: req.page,
        cursor: req.cursor.clone(),
        next_cursor: req.next_cursor.clone(),
        after: req.after.clone(),
        include_total: req.include_total,
    };
    let paging = query.clone().or(&body_paging).resolve(100, MAX_LIMIT)?;
    let search = req.search.as_deref().filter(|s| !s.is_empty()).map(|s| {
        json!({"OR": [
            {"field": "key_prefix", "operator": "contains", "value": s, "case_sensitive": false},
            {"field": "object_id", "operator": "contains", "value": s, "case_sensitive": false},
        ]})
    });
    let (filter, sort) = list_filter(req.filters.as_ref(), None, search, req.sort.as_ref())?;
    let select = check_select(req.select)?;

    let spec = paging.spec(filter, sort, false);
    let page = state.store.list(Table::Objects, ctx.scope(), &spec).await?;
    let next = next_cursor(&spec, &page);

    let mut by_status: Map<String, Value> = Map::new();
    let mut blobs = 0;
    let mut results = Vec::with_capacity(page.rows.len());
    for row in &page.rows {
        let status = row.doc["status"].as_str().unwrap_or("PENDING").to_string();
        let count = by_status.get(&status).and_then(Value::as_i64).unwrap_or(0);
        by_status.insert(status, json!(count + 1));
        blobs += row.doc["blobs"].as_array().map_or(0, Vec::len);
        let mut doc = response(row.doc.clone());
        if req.return_presigned_urls == Some(true) {
            doc = with_presigned_urls(state, doc).await?;
        }
        results.push(match &select {
            Some(fields) => project(&doc, fields),
            None => doc,
        });
    }
    let n = results.len();
    Ok(json!({
        "results": results,
        "pagination": paging.response(&page, next),
        "stats": {
            "total_objects": n,
            "total_blobs": blobs,
            "avg_blobs_per_object": if n > 0 { blobs as f64 / n as f64 } else { 0.0 },
            "objects_by_status": by_status,
        },
    }))
}

/// Applies a PUT: `key_prefix`, `metadata` (keys already in the object's metadata are updated
/// there, others go to the root) and other root fields.
///
/// # Errors
///
/// 404, 409 for a unique-key collision, 422 for invalid fields.
pub async fn update(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    mut body: Map<String, Value>,
) -> Result<Value> {
    let metadata = match body.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::invalid("metadata", "expected an object")),
    };
    modify(state, caller, bucket, id, body, |doc, root| {
        for (key, value) in metadata {
            if doc["metadata"].get(&key).is_some() {
                doc["metadata"][&key] = value;
            } else {
                root.insert(key, value);
            }
        }
    })
    .await
}

/// Applies a PATCH: custom fields flat at the root, and `key_prefix`.
///
/// # Errors
///
/// 404, 409 for a unique-key collision, 422 for reserved or invalid fields.
pub async fn patch(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    body: Map<String, Value>,
) -> Result<Value> {
    if body.contains_key("metadata") {
        return Err(Error::invalid("metadata", "PATCH sets root fields; change metadata with PUT"));
    }
    modify(state, caller, bucket, id, body, |_, _| {}).await
}

async fn modify(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
    mut body: Map<String, Value>,
    route_metadata: impl FnOnce(&mut Value, &mut Map<String, Value>),
) -> Result<Value> {
    let ctx = bucket_ctx(state, caller, bucket).await?;
    let row = state.store.get(Table::Objects, ctx.scope(), id).await?;
    let mut doc = row.ok_or_else(|| Error::not_found("object", id))?.doc;

    if let Some(key) =
        body.keys().find(|k| RESERVED_KEYS.contains(&k.as_str()) || k.as_str() == "edges")
    {
        return Err(Error::invalid(key.clone(), "is set by sluice and cannot be changed here"));
    }
    if let Some(prefix) = take_string(&mut body, "key_prefix")? {
        check_key_prefix(&prefix).map_err(|m| Error::invalid("key_prefix", m))?;
        doc["key_prefix"] = json!(prefix);
    }
    for flag in ["skip_duplicates", "canonicalize_source", "force_remirror"] {
        take_bool(&mut body, flag)?;
    }
    for key in ["idempotency_key"] {
        if body.remove(key).is_some() {
            return Err(Error::invalid(key, "can only be set when the object is created"));
        }
    }
    route_metadata(&mut doc, &mut body);
    for (key, value) in body {
        doc[key.as_str()] = value;
    }

    let custom = custom_fields(&doc);
    let present: Vec<&str> = doc["blobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["property"].as_str())
        .collect();
    ctx.schema.validate_object(&custom, &present)?;
    let unique_key = match buckets::unique_key(&ctx.bucket) {
        Some((fields, _)) => Some(unique_value(&doc, &fields)?),
        None => None,
    };
    doc["updated_at"] = json!(now());

    let size = doc["blobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["details"]["size_bytes"].as_i64())
        .sum();
    let saved = state.store.update_object(id, &doc, unique_key.as_deref(), size).await;
    saved.map_err(|e| match e {
        StoreError::Duplicate => {
            Error::conflict(UNIQUE_KEY_TAKEN, "another object has the same unique key")
        }
        other => other.into(),
    })?;
    emit(state, &ctx, "object.updated", doc.clone()).await;
    Ok(response(doc))
}

/// Deletes an object and its stored blobs.
///
/// # Errors
///
/// 404 for the bucket or the object.
pub async fn delete(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    id: &str,
) -> Result<()> {
    let ctx = bucket_ctx(state, caller, bucket).await?;
    if state.store.get(Table::Objects, ctx.scope(), id).await?.is_none() {
        return Err(Error::not_found("object", id));
    }
    if let Some(doc) = state.store.delete_object(&ctx.bucket_id, id).await? {
        delete_blobs(state, &doc).await;
        let payload = json!({"object_id": id, "bucket_id": ctx.bucket_id});
        emit(state, &ctx, "object.deleted", payload).await;
    }
    Ok(())
}

/// Hides many objects at once; their rows are kept until the bucket is deleted.
///
/// # Errors
///
/// 404 for the bucket, 422 for an empty or oversized list.
pub async fn bulk_soft_delete(
    state: &AppState,
    caller: &NamespacedCaller,
    bucket: &str,
    req: BulkSoftDelete,
) -> Result<Value> {
    let ctx = bucket_ctx(state, caller, bucket).await?;
    if req.object_ids.is_empty() || req.object_ids.len() > MAX_SOFT_DELETE {
        return Err(Error::invalid("object_ids", format!("expected 1 to {MAX_SOFT_DELETE} ids")));
    }
    if req.reason.len() > 500 {
        return Err(Error::invalid("reason", "expected at most 500 characters"));
    }
    let unique: Vec<String> = {
        let mut seen = HashSet::new();
        req.object_ids.iter().filter(|id| seen.insert(id.as_str())).cloned().collect()
    };
    let done = state.store.soft_delete_objects(&ctx.bucket_id, &unique, &now()).await?;
    for id in &done {
        let payload = json!({"object_id": id, "bucket_id": ctx.bucket_id, "soft_deleted": true});
        emit(state, &ctx, "object.deleted", payload).await;
    }
    tracing::info!(bucket.id = %ctx.bucket_id, objects = done.len(), reason = %req.reason,
                   "objects soft-deleted");
    Ok(json!({"soft_deleted": done.len(), "requested": req.object_ids.len(), "collections": 0}))
}

/// The answer for an object record: the record plus its write-consistency note.
fn response(mut doc: Value) -> Value {
    // Processing writes the count; an object never processed has none.
    if !doc["document_count"].is_i64() {
        doc["document_count"] = json!(0);
    }
    doc["consistency"] = json!({
        "retriever_visible": "after_processing",
        "write_token_available": false,
    });
    doc
}

/// The fields of a record that are custom: everything not owned by sluice.
fn custom_fields(doc: &Value) -> Map<String, Value> {
    let owned = |k: &str| RESERVED_KEYS.contains(&k) || CREATE_KEYS.contains(&k);
    doc.as_object()
        .map(|m| m.iter().filter(|(k, _)| !owned(k)).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The unique-key value of a record: its key fields, read from the root or `metadata`, as one
/// JSON string.
fn unique_value(doc: &Value, fields: &[String]) -> std::result::Result<String, FieldError> {
    let mut values = Vec::with_capacity(fields.len());
    for field in fields {
        let value = lookup(doc, field)
            .or_else(|| lookup(&doc["metadata"], field))
            .filter(|v| !v.is_null())
            .ok_or_else(|| FieldError::new(field.clone(), "required by the bucket's unique key"))?;
        values.push(value.clone());
    }
    Ok(Value::Array(values).to_string())
}

fn lookup<'a>(doc: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(doc, |v, part| v.get(part))
}

fn check_select(select: Option<Vec<String>>) -> Result<Option<Vec<String>>> {
    let Some(fields) = select else { return Ok(None) };
    for (i, f) in fields.iter().enumerate() {
        let ok = !f.is_empty() && f.split('.').all(|p| !p.is_empty()) && f.len() <= 256;
        if !ok {
            return Err(Error::invalid(format!("select[{i}]"), "expected a dotted field name"));
        }
    }
    Ok(Some(fields))
}

/// Keeps only the selected (dotted) fields of a record, and always its ids.
fn project(doc: &Value, fields: &[String]) -> Value {
    let mut out = json!({"object_id": doc["object_id"], "bucket_id": doc["bucket_id"]});
    for field in fields {
        if let Some(value) = lookup(doc, field) {
            let mut target = &mut out;
            let parts: Vec<&str> = field.split('.').collect();
            for part in &parts[..parts.len() - 1] {
                if !target.get(*part).is_some_and(Value::is_object) {
                    target[*part] = json!({});
                }
                target = &mut target[*part];
            }
            target[parts[parts.len() - 1]] = value.clone();
        }
    }
    out
}

fn take_string(
    body: &mut Map<String, Value>,
    key: &str,
) -> std::result::Result<Option<String>, FieldError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FieldError::new(key, "expected a string")),
    }
}

fn take_bool(
    body: &mut Map<String, Value>,
    key: &str,
) -> std::result::Result<Option<bool>, FieldError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(FieldError::new(key, "expected true or false")),
    }
}

fn check_key_prefix(prefix: &str) -> std::result::Result<(), String> {
    let bad = prefix.len() > KEY_PREFIX_MAX
        || prefix.starts_with('/')
        || prefix.split('/').any(|p| p == "..")
        || prefix.chars().any(char::is_control);
    if bad {
        Err(format!("expected a relative path of at most {KEY_PREFIX_MAX} characters without '..'"))
    } else {
        Ok(())
    }
}

fn check_edges(edges: Option<Value>) -> std::result::Result<Value, FieldError> {
    let items = match edges {
        None | Some(Value::Null) => return Ok(Value::Null),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(FieldError::new("edges", "expected a list")),
    };
    for (i, edge) in items.iter().enumerate() {
        for key in ["type", "target_object_id"] {
            if edge.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                return Err(FieldError::new(format!("edges[{i}].{key}"), "required"));
            }
        }
        if let Some(direction) = edge.get("direction").and_then(Value::as_str)
            && direction != "out"
            && direction != "in"
        {
            return Err(FieldError::new(format!("edges[{i}].direction"), "expected out or in"));
        }
    }
    Ok(Value::Array(items))
}

fn url_filename(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
    let name = after_scheme.split_once('/').map(|(_, p)| p)?.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

fn default_filename(field_type: FieldType) -> String {
    let ext = match field_type {
        FieldType::Text => "txt",
        FieldType::Image => "img",
        FieldType::Audio => "audio",
        FieldType::Video => "video",
        FieldType::Pdf => "pdf",
        FieldType::Excel => "xlsx",
        _ => "bin",
    };
    format!("blob.{ext}")
}

fn safe_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(200)
        .collect();
    if cleaned.trim_matches('.').is_empty() { "blob".into() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_keeps_ids_and_nested_fields() {
        let doc = json!({"object_id": "obj_1", "bucket_id": "bkt_1", "metadata": {"a": 1, "b": 2},
                         "rank": 3});
        let out = project(&doc, &["metadata.a".into(), "missing".into()]);
        assert_eq!(out, json!({"object_id": "obj_1", "bucket_id": "bkt_1", "metadata": {"a": 1}}));
    }

    #[test]
    fn unique_values_read_root_then_metadata() {
        let doc = json!({"sku": "A1", "metadata": {"region": "eu"}});
        let value = unique_value(&doc, &["sku".into(), "region".into()]).unwrap();
        assert_eq!(value, r#"["A1","eu"]"#);
        assert!(unique_value(&doc, &["missing".into()]).is_err());
    }

    #[test]
    fn filenames_and_prefixes_are_made_safe() {
        assert_eq!(url_filename("https://x.org/a/b/cat.jpg?x=1"), Some("cat.jpg".into()));
        assert_eq!(url_filename("https://x.org"), None);
        assert_eq!(safe_filename("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_filename(".."), "blob");
        assert!(check_key_prefix("a/b/").is_ok());
        assert!(check_key_prefix("a/../b").is_err());
        assert!(check_key_prefix("/abs").is_err());
    }
}
