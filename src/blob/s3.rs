//! What S3 and S3-compatible stores need beyond `object_store`: the storage class read back
//! (HEAD `x-amz-storage-class`), changed in place (CopyObject onto itself), and presigned URLs
//! that bind the content type. Each request is presigned by `object_store`'s own signer, so
//! credentials, session tokens and endpoints work exactly as for its reads and writes.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{BlobError, BlobMeta, wire};
use crate::model::StorageClass;

/// How long the URLs sluice presigns for its own requests stay valid.
const OWN_REQUEST_TTL: Duration = Duration::from_secs(15 * 60);

/// Characters kept as they are in `x-amz-copy-source`: the unreserved ones and `/`.
const COPY_SOURCE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// An S3 bucket, with the client for sluice's own requests to it.
#[derive(Clone)]
pub(super) struct S3Target {
    store: Arc<AmazonS3>,
    bucket: String,
    http: reqwest::Client,
}

impl S3Target {
    pub(super) fn new(store: Arc<AmazonS3>, bucket: &str, http: reqwest::Client) -> Self {
        Self { store, bucket: bucket.to_string(), http }
    }

    /// HEAD, with the class the store reports; S3 leaves the header out for STANDARD.
    pub(super) async fn head(&self, location: &Path) -> Result<Option<BlobMeta>, BlobError> {
        let url = self.store.signed_url(Method::HEAD, location, OWN_REQUEST_TTL).await?;
        let request = self.http.head(url.as_str()).timeout(wire::METADATA_TIMEOUT);
        let response = wire::send(request).await?;
        if wire::is_missing(response.status()) {
            return Ok(None);
        }
        let response = wire::check(response, "S3 HEAD").await?;
        Ok(Some(wire::meta_from_headers(
            response.headers(),
            "x-amz-storage-class",
            StorageClass::from_s3_name,
            Some(StorageClass::Standard),
        )))
    }

    /// Copies the object onto itself with a new class, keeping its content type and
    /// metadata (`x-amz-metadata-directive: COPY`).
    ///
    /// Limitation: one CopyObject copies at most 5 GB; larger objects would need a multipart
    /// copy (UploadPartCopy), which is not written yet, so re-tiering them fails with S3's
    /// error and the object keeps its class.
    pub(super) async fn set_storage_class(
        &self,
        key: &str,
        location: &Path,
        class: StorageClass,
    ) -> Result<(), BlobError> {
        let source =
            format!("{}/{}", self.bucket, utf8_percent_encode(location.as_ref(), COPY_SOURCE));
        let options = SignedUrlOptions::default()
            .with_signed_header(
                HeaderName::from_static("x-amz-copy-source"),
                header_value(&source)?,
            )
            .with_signed_header(
                HeaderName::from_static("x-amz-storage-class"),
                HeaderValue::from_static(class.s3_name()),
            )
            .with_signed_header(
                HeaderName::from_static("x-amz-metadata-directive"),
                HeaderValue::from_static("COPY"),
            );
        let url =
            self.store.signed_url_opts(Method::PUT, location, OWN_REQUEST_TTL, &options).await?;

        // The copy has no body, and S3 refuses a PUT that does not say so (411).
        let mut request = self
            .http
            .put(url.as_str())
            .timeout(wire::COPY_TIMEOUT)
            .header("content-length", "0")
            .body("");
        for (name, value) in &options.signed_headers {
            request = request.header(name.as_str(), value.as_bytes());
        }
        let response = wire::send(request).await?;
        let status = response.status();
        let body = wire::body_text(response).await?;
        if body.contains("InvalidObjectState") {
            return Err(BlobError::Archived(key.to_string()));
        }
        // A copy can fail after S3 has sent 200, in which case the body is an <Error>.
        if !status.is_success() || body.contains("<Error>") {
            return Err(BlobError::Request(format!(
                "S3 CopyObject answered {status}: {}",
                wire::truncate(&body, 500)
            )));
        }
        Ok(())
    }

    /// A presigned PUT that only accepts `content_type`.
    pub(super) async fn presign_put(
        &self,
        location: &Path,
        content_type: &str,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        let options = SignedUrlOptions::default().with_signed_header(
            HeaderName::from_static("content-type"),
            header_value(content_type)?,
        );
        Ok(self.store.signed_url_opts(Method::PUT, location, ttl, &options).await?.to_string())
    }

    pub(super) async fn presign(
        &self,
        method: Method,
        location: &Path,
        ttl: Duration,
    ) -> Result<String, BlobError> {
        Ok(self.store.signed_url(method, location, ttl).await?.to_string())
    }

    /// Whether a failed GET failed because the object is archived: S3 answers 403
    /// `InvalidObjectState` for a GLACIER object that has not been restored. Should the body be
    /// missing from the error, the class read back decides.
    pub(super) async fn is_archived(&self, error: &object_store::Error, location: &Path) -> bool {
        if wire::error_text(error).contains("InvalidObjectState") {
            return true;
        }
        matches!(
            self.head(location).await,
            Ok(Some(BlobMeta { storage_class: Some(StorageClass::Archive), .. }))
        )
    }
}

fn header_value(value: &str) -> Result<HeaderValue, BlobError> {
    HeaderValue::from_str(value)
        .map_err(|_| BlobError::Request(format!("not a valid header value: {value:?}")))
}
