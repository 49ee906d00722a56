//! What Google Cloud Storage needs beyond `object_store`: the storage class read back from the
//! object's JSON metadata, changed in place with `rewrite`, and signed URLs that bind the
//! content type. The JSON API requests carry the bearer token of `object_store`'s own
//! credential provider.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::gcp::GoogleCloudStorage;
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::{BlobError, BlobMeta, wire};
use crate::model::StorageClass;

/// `rewrite` answers in steps for large objects; this bounds the loop should a store never
/// say it is done.
const MAX_REWRITE_STEPS: usize = 10_000;

/// The object fields a rewrite must carry over: a rewrite request body names the destination's
/// metadata, and what it leaves out is not guaranteed to survive.
const KEPT_FIELDS: [&str; 6] = [
    "contentType",
    "contentEncoding",
    "contentDisposition",
    "contentLanguage",
    "cacheControl",
    "metadata",
];

/// A GCS bucket, with the client for sluice's own JSON API requests to it.
#[derive(Clone)]
pub(super) struct GcsTarget {
    store: Arc<GoogleCloudStorage>,
    base_url: String,
    bucket: String,
    http: reqwest::Client,
}

impl GcsTarget {
    pub(super) fn new(
        store: Arc<GoogleCloudStorage>,
        base_url: &str,
        bucket: &str,
        http: reqwest::Client,
    ) -> Self {
        let base_url = base_url.trim_end_matches('/').to_string();
        Self { store, base_url, bucket: bucket.to_string(), http }
    }

    /// The object's metadata. Size, ETag and time come from the XML API, as every other
    /// `object_store` answer does (the JSON API's `etag` is another value altogether); the
    /// class and content type come from the JSON API, the only one that reports the class.
    pub(super) async fn head(&self, location: &Path) -> Result<Option<BlobMeta>, BlobError> {
        let meta = match self.store.head(location).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(object) = self.object_resource(location).await? else {
            return Ok(None);
        };
        let text = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_string);
        Ok(Some(BlobMeta {
            size: meta.size,
            etag: meta.e_tag,
            content_type: text("contentType"),
            storage_class: text("storageClass").and_then(|c| StorageClass::from_gcs_name(&c)),
            last_modified: wire::format_timestamp_micros(meta.last_modified.timestamp_micros()),
        }))
    }

    /// Rewrites the object onto itself with a new `storageClass`, carrying its content type
    /// and metadata over.
    pub(super) async fn set_storage_class(
        &self,
        location: &Path,
        class: StorageClass,
    ) -> Result<(), BlobError> {
        let Some(object) = self.object_resource(location).await? else {
            return Err(BlobError::NotFound(location.to_string()));
        };
        let mut body = Map::new();
        for field in KEPT_FIELDS {
            if let Some(value) = object.get(field) {
                body.insert(field.to_string(), value.clone());
            }
        }
        body.insert("storageClass".to_string(), json!(class.gcs_name()));
        let body = Value::Object(body).to_string();

        let object_url = self.object_url(location);
        let name = object_url.rsplit_once("/o/").map_or("", |(_, name)| name);
        let url = format!("{object_url}/rewriteTo/b/{}/o/{name}", self.bucket_segment());
        let mut token: Option<String> = None;
        for _ in 0..MAX_REWRITE_STEPS {
            let step_url = match &token {
                Some(token) => {
                    format!("{url}?rewriteToken={}", utf8_percent_encode(token, NON_ALPHANUMERIC))
                }
                None => url.clone(),
            };
            let request = self
                .http
                .post(step_url)
                .timeout(wire::COPY_TIMEOUT)
                .header("content-type", "application/json")
                .body(body.clone());
            let response =
                wire::check(wire::send(self.authorize(request).await?).await?, "GCS rewrite")
                    .await?;
            let answer: Value = serde_json::from_str(&wire::body_text(response).await?)
                .map_err(|e| BlobError::Request(format!("GCS rewrite answered no JSON: {e}")))?;
            if answer["done"].as_bool() == Some(true) {
                return Ok(());
            }
            token = answer["rewriteToken"].as_str().map(str::to_string);
            if token.is_none() {
                return Err(BlobError::Request("GCS rewrite is not done and gave no token".into()));
            }
        }
        Err(BlobError::Request("GCS rewrite did not finish".to_string()))
    }

    /// A V4 signed PUT that only accepts `content_type`.
    pub(super) async fn presign_put(
        &self,
        location: &Path,
        content_type: &str,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        let value = HeaderValue::from_str(content_type).map_err(|_| {
            BlobError::Request(format!("not a valid content type: {content_type:?}"))
        })?;
        let options = SignedUrlOptions::default()
            .with_signed_header(HeaderName::from_static("content-type"), value);
        Ok(self.store.signed_url_opts(Method::PUT, location, ttl, &options).await?.to_string())
    }

    pub(super) async fn presign_get(
        &self,
        location: &Path,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        Ok(self.store.signed_url(Method::GET, location, ttl).await?.to_string())
    }

    /// The object's JSON resource; `None` when it does not exist.
    async fn object_resource(&self, location: &Path) -> Result<Option<Value>, BlobError> {
        let request = self.http.get(self.object_url(location)).timeout(wire::METADATA_TIMEOUT);
        let response = wire::send(self.authorize(request).await?).await?;
        if wire::is_missing(response.status()) {
            return Ok(None);
        }
        let response = wire::check(response, "GCS object metadata").await?;
        let object = serde_json::from_str(&wire::body_text(response).await?)
            .map_err(|e| BlobError::Request(format!("GCS object metadata is not JSON: {e}")))?;
        Ok(Some(object))
    }

    /// `{base}/storage/v1/b/{bucket}/o/{name}`, with the name as one encoded segment.
    fn object_url(&self, location: &Path) -> String {
        let name = utf8_percent_encode(location.as_ref(), NON_ALPHANUMERIC);
        format!("{}/storage/v1/b/{}/o/{name}", self.base_url, self.bucket_segment())
    }

    fn bucket_segment(&self) -> String {
        utf8_percent_encode(&self.bucket, NON_ALPHANUMERIC).to_string()
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, BlobError> {
        let credential = self.store.credentials().get_credential().await?;
        // An emulator set up without OAuth gets an empty token, and no header at all.
        if credential.bearer.is_empty() {
            return Ok(request);
        }
        Ok(request.bearer_auth(&credential.bearer))
    }
}
