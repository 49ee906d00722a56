//! Mirroring: a blob given as an http(s) URL is copied into managed storage in the background,
//! so that the object keeps its bytes when the source changes or disappears.
//!
//! The fetch goes through [`crate::fetch::Fetcher`], which refuses private and metadata
//! addresses unless the operator allows them and bounds size, time and redirects. A source that
//! answers with a refusal (a bad address, a 4xx, too large) is recorded on the blob and not
//! tried again; a network failure is retried by the job engine.

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{Error, Result};
use crate::fetch::{FetchError, sniff_mime};
use crate::jobs::{self, JobKind};
use crate::model::{StorageClass, now};
use crate::store::{ClaimedJob, Scope, Table};

/// Whether a blob record is a URL this server mirrors: http(s), not yet stored, and not opted
/// out with `canonicalize_source: false`.
///
/// Limitation: `s3://`, `gs://` and `az://` sources need credentials for the source's store,
/// which objects do not carry; such blobs stay references to their source.
pub fn wants_mirror(blob: &Value) -> bool {
    let url = blob["properties"]["url"].as_str().unwrap_or_default();
    let http = url.starts_with("http://") || url.starts_with("https://");
    http && blob["properties"]["storage_key"].is_null() && blob["properties"]["mirror"] == "pending"
}

/// Queues the mirroring of the URL blobs of these objects (all of one bucket), as one job.
///
/// # Errors
///
/// Fails on a store error.
pub async fn enqueue_for(state: &AppState, scope: Scope<'_>, docs: &[&Value]) -> Result<()> {
    let ids: Vec<&Value> = docs
        .iter()
        .filter(|doc| doc["blobs"].as_array().into_iter().flatten().any(wants_mirror))
        .map(|doc| &doc["object_id"])
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let payload = json!({
        "object_ids": ids,
        "namespace_id": scope.namespace_id,
        "bucket_id": scope.bucket_id,
    });
    jobs::enqueue(state, JobKind::BlobMirror, scope.org_id, payload, None).await
}

/// Mirrors every pending URL blob of the job's objects, one object after another.
///
/// # Errors
///
/// A network, store or blob failure; the job engine retries, and blobs mirrored already are
/// not fetched again.
pub async fn run(state: &AppState, job: &ClaimedJob) -> Result<()> {
    let p = &job.payload;
    let bucket_id = p["bucket_id"].as_str().unwrap_or_default();
    let bucket = state.store.get(Table::Buckets, Scope::org(&job.org_id), bucket_id).await?;
    let class = bucket
        .and_then(|b| b.doc["storage_class"].as_str().and_then(StorageClass::parse))
        .unwrap_or_default();
    let internal_id =
        state.store.get_organization(&job.org_id).await?.map(|o| o.internal_id).unwrap_or_default();
    let target = Target { class, internal_id };

    let ids = p["object_ids"].as_array().cloned().unwrap_or_default();
    for id in ids.iter().filter_map(Value::as_str) {
        mirror_object(state, job, &target, id).await?;
    }
    Ok(())
}

/// Where a job's mirrored copies go: the bucket's class, under the organization's prefix.
struct Target {
    class: StorageClass,
    internal_id: String,
}

async fn mirror_object(
    state: &AppState,
    job: &ClaimedJob,
    target: &Target,
    object_id: &str,
) -> Result<()> {
    let p = &job.payload;
    let scope = Scope {
        org_id: &job.org_id,
        namespace_id: p["namespace_id"].as_str(),
        bucket_id: p["bucket_id"].as_str(),
        collection_id: None,
    };
    let Some(row) = state.store.get(Table::Objects, scope, object_id).await? else {
        return Ok(());
    };
    if !row.doc["blobs"].as_array().into_iter().flatten().any(wants_mirror) {
        return Ok(());
    }
    let (class, internal_id) = (target.class, &target.internal_id);

    let mut doc = row.doc;
    let prefix = format!(
        "{internal_id}/{}/{}/{object_id}",
        p["namespace_id"].as_str().unwrap_or_default(),
        p["bucket_id"].as_str().unwrap_or_default()
    );
    for blob in doc["blobs"].as_array_mut().into_iter().flatten() {
        if wants_mirror(blob) {
            mirror_blob(state, blob, &prefix, class).await?;
        }
    }
    doc["updated_at"] = json!(now());

    // The object may have been deleted while its blobs were fetched; then the copies go too.
    let saved = state.store.update_object(object_id, &doc, None, size_of(&doc)).await?;
    if !saved {
        crate::service::objects::delete_blobs(state, &doc).await;
    }
    Ok(())
}

fn size_of(doc: &Value) -> i64 {
    doc["blobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["details"]["size_bytes"].as_i64())
        .sum()
}

/// Fetches one blob's source into managed storage and records the outcome on the blob.
async fn mirror_blob(
    state: &AppState,
    blob: &mut Value,
    prefix: &str,
    class: StorageClass,
) -> Result<()> {
    let url = blob["properties"]["url"].as_str().unwrap_or_default().to_string();
    let blob_id = blob["blob_id"].as_str().unwrap_or_default().to_string();
    let fetched = match state.fetcher.get(&url).await {
        Ok(fetched) => fetched,
        Err(e) => return give_up_or_retry(blob, e),
    };

    // The first chunk decides the MIME type when the source does not say or says too little.
    let mut stream = fetched.stream;
    let first = match stream.next().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return give_up_or_retry(blob, FetchError::from_body_error(&e)),
        None => Bytes::new(),
    };
    let declared = fetched
        .content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    let mime = match declared.as_deref() {
        Some(m) if m != "application/octet-stream" && !m.is_empty() => m.to_string(),
        _ => sniff_mime(&first).unwrap_or("application/octet-stream").to_string(),
    };
    let filename = blob["details"]["filename"].as_str().unwrap_or("source").to_string();
    let safe: String = filename
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    let key = format!("{prefix}/{blob_id}/{safe}");
    let body = futures::stream::once(async move { Ok(first) }).chain(stream);
    let max = Some(state.fetcher.policy().max_bytes);
    let stored = state.blobs.put_stream(&key, Box::pin(body), Some(&mime), class, max).await;
    let stored = match stored {
        Ok(stored) => stored,
        Err(crate::blob::BlobError::TooLarge { limit }) => {
            return give_up_or_retry(blob, FetchError::TooLarge(limit));
        }
        Err(crate::blob::BlobError::Io(e)) => {
            return give_up_or_retry(blob, FetchError::from_body_error(&e));
        }
        Err(e) => return Err(Error::Internal(format!("mirroring write failed: {e}"))),
    };

    let props = &mut blob["properties"];
    props["storage_key"] = json!(key);
    props["storage_class"] = json!(class.as_str());
    props["mirror"] = json!("done");
    props["mirrored_at"] = json!(now());
    let details = &mut blob["details"];
    details["size_bytes"] = json!(stored.size);
    details["mime_type"] = json!(mime);
    if let Some(sha) = stored.sha256 {
        details["hash"] = json!(format!("sha256:{sha}"));
    }
    tracing::info!(blob.id = %blob_id, size = stored.size, "blob mirrored");
    Ok(())
}

/// Records a refusal on the blob (it is not retried), or asks the job engine to retry.
fn give_up_or_retry(blob: &mut Value, error: FetchError) -> Result<()> {
    match error {
        FetchError::Timeout | FetchError::Network(_) => {
            Err(Error::Internal(format!("fetching the source failed: {error}")))
        }
        FetchError::Status(code) if code >= 500 || code == 429 => {
            Err(Error::Internal(format!("the source answered {code}")))
        }
        refusal => {
            blob["properties"]["mirror"] = json!("failed");
            blob["properties"]["mirror_error"] = json!(refusal.to_string());
            tracing::warn!(error = %refusal, "a blob's source cannot be mirrored");
            Ok(())
        }
    }
}
