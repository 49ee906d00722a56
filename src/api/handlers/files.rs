//! `/v1/files/{key}`: blobs served through sluice's own signed URLs.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;

use super::AppStateRef;
use crate::api::extract::PathParams;
use crate::blob::BlobError;
use crate::blob::signed::SignedQuery;
use crate::error::{Error, Result};

/// Streams the blob a signed GET URL names.
pub async fn get(
    state: AppStateRef,
    PathParams(key): PathParams<String>,
    uri: axum::http::Uri,
) -> Result<Response> {
    let query: SignedQuery = serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|_| Error::Forbidden("missing or malformed URL signature".into()))?;
    state.signer.verify("GET", &key, &query).map_err(|e| Error::Forbidden(e.to_string()))?;

    let (size, stream) = state.blobs.open_read(&key).await.map_err(|e| match e {
        BlobError::Store(object_store::Error::NotFound { .. }) => Error::not_found("file", &key),
        other => Error::Internal(format!("blob read failed: {other}")),
    })?;
    let content_type = if query.ct.is_empty() { "application/octet-stream" } else { &query.ct };
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}
